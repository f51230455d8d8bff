#!/bin/bash
# The analyses heaptrack users look for, on the program of issue 14
# (tests/fixtures/heapshape.c: 1000 x 4000 bytes lost, 100000 x 100 bytes
# allocated and freed at once, 10 x 1 MiB held by a global): temporary
# allocations by site, the per-site peak taken at the true peak, run time,
# allocation rate, peak RSS, stacks trimmed below main and thread entry
# (--full-stacks keeps them), symbolized frames in JSON; compared with
# heaptrack_print on the same program when heaptrack is installed.
. "$(dirname "$0")/../lib.sh"
plan 25
H="$FIX/heapshape"
MiB=1048576

$MEMTAP run --sample=1 -o "$TMP/a" -- "$H" 2> "$TMP/a.txt"
ok $? "heapshape under memtap run --sample=1"
$MEMTAP report --format=json "$TMP"/a.*.mtp > "$TMP/a.json"
sites() { jq -c ".processes[0].sites[] | select(.stack | map(.function) | index(\"$1\"))" "$TMP/a.json"; }
churn=$(sites churn) hold=$(sites hold) lose=$(sites lose)

# Temporary allocations: churn's 100000, nobody else's.
is "$(jq .temporary_objects <<<"$churn")" 100000 "churn's 100000 allocations are all temporary"
is "$(jq .temporary_bytes <<<"$churn")" 10000000 "... 10000000 requested bytes"
is "$(jq '[.temporary_objects] | add' <<<"$hold$lose" | paste -sd+ | bc)" 0 "hold's and lose's are not temporary"
is "$(jq .processes[0].analyses.temporary_allocations "$TMP/a.json")" 100000 "the process total: 100000"

# The true peak: all 10 of hold's blocks, lose's 1000 with them.
is "$(jq .peak_objects <<<"$hold")/$(jq .peak_bytes <<<"$hold")" "10/$((10 * MiB))" \
	"hold: 10 of 10 blocks at the peak (the allocation that made it included)"
is "$(jq .peak_objects <<<"$lose")" 1000 "lose: its 1000 blocks at the peak"
is "$(jq .peak_objects <<<"$churn")" 0 "churn: nothing at the peak"

# Run time, rate, peak RSS.
an=$(jq -c .processes[0].analyses "$TMP/a.json")
malloc=$(fn_field "$TMP/a.json" malloc calls)
allocs=$(jq '[.processes[0].functions[] | select(.kind == "alloc") | .calls] | add' "$TMP/a.json")
is "$(jq .allocations <<<"$an")" "$allocs" "allocations: every call of an allocation function ($allocs, malloc $malloc)"
rt=$(jq .run_time_ns <<<"$an")
ok $([ "$rt" -gt 0 ] && [ "$rt" -lt 60000000000 ]; echo $?) "run time: $rt ns"
rate=$(jq .allocations_per_second <<<"$an")
want=$(echo "$allocs * 1000000000 / $rt" | bc -l)
ok $(echo "r = $rate - $want; r < 1 && r > -1" | bc -l | grep -q 1; echo $?) \
	"allocation rate: allocations / run time ($rate per second)"
rss=$(jq .peak_rss_bytes <<<"$an")
ok $([ "$rss" -ge $((14 * MiB)) ] && [ "$rss" -lt $((200 * MiB)) ]; echo $?) \
	"peak RSS: $rss bytes, at least the 14 MiB the program touched"
txt=$(cat "$TMP/a.txt")
like "$txt" "run time +[0-9]+\.[0-9]{3} s" "text: run time in seconds"
like "$txt" "allocations +$allocs calls, [0-9]+ per second" "text: allocations and their rate"
like "$txt" "peak RSS +[0-9.]+ MiB \($rss bytes\)" "text: peak RSS, unit named"
like "$txt" "temporary allocations +100000 \([0-9.]+% of allocations\)" "text: temporary allocations"
like "$txt" "#1  $((10 * MiB)) requested bytes \(72\.[0-9]%\) in 10 blocks at the peak, from malloc" \
	"text: the sites at the peak, in requested bytes"

# Stacks: cut below main (no _start, no __libc_start_*), symbolized.
is "$(jq -r '.stack[-1].function' <<<"$hold")" main "hold's stack ends at main"
is "$(jq -r '[.processes[0].sites[].stack[].function] | map(select(. != null and (startswith("_start") or startswith("__libc_start")))) | length' "$TMP/a.json")" 0 \
	"no site shows _start or __libc_start_* frames"
f0=$(jq -c '.stack[0]' <<<"$hold")
[ "$(jq -r .function <<<"$f0")" = hold ] && [[ $(jq -r .file <<<"$f0") == */heapshape.c ]] &&
	[ "$(jq -r .line <<<"$f0")" -gt 0 ] && [[ $(jq -r .address <<<"$f0") == 0x* ]]
ok $? "JSON frames: function, file and line next to the address ($f0)"
full=$($MEMTAP report --format=collapsed --full-stacks --value=alloc "$TMP"/a.*.mtp)
like "$full" "__libc_start_call_main;main;hold" "--full-stacks keeps libc's frames below main"

# A thread: its stack starts at its routine, not at start_thread/clone3.
$MEMTAP run -q --sample=1 -o "$TMP/t" -- "$H" threads
col=$($MEMTAP report --format=collapsed --value=alloc "$TMP"/t.*.mtp)
grep -qx 'worker;churn 10000000' <<<"$col"
ok $? "a thread's stack starts at its routine: worker;churn, no start_thread or clone3"
is "$($MEMTAP report --format=json "$TMP"/t.*.mtp | jq .processes[0].analyses.temporary_allocations)" 200000 \
	"temporary allocations of both threads (per thread: the other thread's do not come in between)"

# Sampled: an estimate, said to be one.
$MEMTAP run -q --sample=4096 -o "$TMP/s" -- "$H"
est=$($MEMTAP report --format=json "$TMP"/s.*.mtp | jq -c .processes[0].analyses)
t=$(jq .temporary_allocations <<<"$est")
ok $([ "$(jq .temporary_estimated <<<"$est")" = true ] && [ "$t" -gt 80000 ] && [ "$t" -lt 120000 ]; echo $?) \
	"--sample=4096: temporary allocations estimated ($t, within 20% of 100000)"

# heaptrack on the same program: the same temporary count.
if command -v heaptrack >/dev/null && command -v heaptrack_print >/dev/null; then
	(cd "$TMP" && timeout 120 heaptrack -o "$TMP/ht" "$H" >/dev/null 2>&1)
	ht=$(heaptrack_print "$TMP"/ht.* 2>/dev/null | sed -n 's/^temporary memory allocations: \([0-9]*\).*/\1/p')
	is "$ht" "$(jq .processes[0].analyses.temporary_allocations "$TMP/a.json")" \
		"heaptrack_print's temporary allocations: $ht, as memtap's"
else
	skip "heaptrack is not installed (scripts/deps.sh bench)"
fi
