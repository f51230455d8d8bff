#!/bin/bash
# Call sites: --leaks / --sample=1 exact in-use by site (checked against
# valgrind's memcheck), the sampling estimator, periodic dumps, the sites at
# the peak.
. "$(dirname "$0")/../lib.sh"
plan 35
S="$FIX/stacks"

# --leaks: every allocation; what is left at exit, by call site.
$MEMTAP run --leaks -o "$TMP/l" -- "$S" lost 2> "$TMP/l.txt"
ok $? "run --leaks"
like "$(cat "$TMP/l.txt")" "Top call sites by bytes in use" "the summary lists what is still allocated, by site"
grep -A1 -E '^  #1 +432100 requested bytes in use' "$TMP/l.txt" | grep -q 'leaky_site .*stacks.c:'
ok $? "the first site in use is leaky_site with exactly 432100 bytes, with file:line"
$MEMTAP report --format=json "$TMP"/l.*.mtp > "$TMP/l.json"
is "$(jq '[.processes[0].sites[] | select(.inuse_bytes > 0)] | length' "$TMP/l.json")" 1 "exactly one site holds memory"
is "$(jq '.processes[0].sites[] | select(.inuse_bytes > 0) | .inuse_objects' "$TMP/l.json")" 100 "100 objects"
is "$(jq '.processes[0].sample_period' "$TMP/l.json")" 1 "every allocation recorded"
is "$(jq '.processes[0].unknown_frees' "$TMP/l.json")" 0 "no free of a pointer memtap never saw"
is "$($MEMTAP report --format=collapsed "$TMP"/l.*.mtp | grep -c ';leaky_site 432100$')" 1 \
	"collapsed stacks: ...;main;leaky_site 432100"

# valgrind memcheck on the same program: the same record.
# valgrind itself sometimes dies on this CPU (SIGTRAP inside its JIT, seen
# here): try again, and skip, saying so, if it never completes.
vg_ok=0
if command -v valgrind >/dev/null; then
	for try in 1 2 3; do
		valgrind --leak-check=full "$S" lost 2> "$TMP/vg.txt" && grep -q 'ERROR SUMMARY' "$TMP/vg.txt" &&
			{ vg_ok=1; break; }
		diag "valgrind did not complete (try $try): $(grep -m1 -iE 'terminating|trap|signal' "$TMP/vg.txt")"
	done
fi
if [ $vg_ok = 1 ]; then
	# The loss records whose stack passes through leaky_site.  valgrind's
	# scan is conservative: a stale copy of a pointer somewhere can move a
	# block from "definitely" to "possibly" lost, so both are summed.
	sum=$(awk '/are (definitely|possibly) lost in loss record/ { b = $2; n = $5; gsub(/,/, "", b); next }
		b != "" && /leaky_site/ { bytes += b; blocks += n; b = "" }
		/^==[0-9]+== $/ { b = "" }
		END { print bytes + 0, blocks + 0 }' "$TMP/vg.txt")
	rec=$(grep -A2 'lost in loss record' "$TMP/vg.txt" | grep -B1 -A1 leaky_site)
	[ "$sum" = "432100 100" ] || sed 's/^/# vg: /' "$TMP/vg.txt" | grep -E 'lost|leaky|by 0x' | head -20
	is "$sum" "432100 100" "valgrind: 432,100 bytes in 100 blocks lost from leaky_site"
	like "$rec" "by 0x[0-9A-F]+: leaky_site \(stacks.c:[0-9]+\)" "valgrind names leaky_site"
	vline=$(printf '%s' "$rec" | sed -n 's/.*leaky_site (stacks.c:\([0-9]*\)).*/\1/p')
	grep -q "leaky_site .*stacks.c:$vline\$" "$TMP/l.txt"
	ok $? "memtap and valgrind agree on the line (stacks.c:$vline)"
else
	why="valgrind is not installed"
	command -v valgrind >/dev/null && why="valgrind did not complete here three times"
	skip "$why"; skip "$why"; skip "$why"
fi

# Sampling: 64 MiB of 1 KiB blocks estimated within 10% at --sample=65536.
$MEMTAP run -q --sample=65536 -o "$TMP/p" --dump-every=8m -- "$S" pattern 600
ok $? "run --sample=65536 --dump-every=8m"
# by_reason PREFIX REASON: the files of that reason, by sequence number.
by_reason() {
	for f in "$1".*.mtp; do
		$MEMTAP report --format=json "$f" | jq -r --arg r "$2" --arg f "$f" \
			'.processes[0] | select(.reason == $r) | "\(.seq) \($f)"'
	done | sort -n | cut -d' ' -f2-
}
# The dump written while all 64 MiB were held: the last periodic dump.
peakdump=$(by_reason "$TMP/p" bytes | tail -1)
est=$($MEMTAP report --format=json "$peakdump" | jq '[.processes[0].sites[].estimated.inuse_bytes] | add')
diag "estimated in use at the last dump: $est bytes (held: at most $((64 << 20)))"
awk -v e="$est" 'BEGIN { exit !(e > 0.9 * 56 * 1048576 && e < 1.1 * 64 * 1048576) }'
ok $? "the estimate is within 10% of what was held (56..64 MiB at the last --dump-every dump)"
n=$(for f in "$TMP"/p.*.mtp; do $MEMTAP report --format=json "$f" | jq -r '.processes[0].reason'; done | grep -c '^bytes$')
[ "$n" -ge 6 ] && [ "$n" -le 9 ]
ok $? "--dump-every=8m: about 64/8 dumps ($n)"
$MEMTAP report --format=json "$(by_reason "$TMP/p" exit)" > "$TMP/p.json"
maxseq=$(for f in "$TMP"/p.*.mtp; do $MEMTAP report --format=json "$f" | jq '.processes[0].seq'; done | sort -n | tail -1)
is "$(jq '.processes[0].seq' "$TMP/p.json")" "$maxseq" "the exit profile comes after every periodic dump"
est=$(jq '[.processes[0].sites[].estimated.alloc_bytes] | add' "$TMP/p.json")
awk -v e="$est" 'BEGIN { exit !(e > 0.9 * 64 * 1048576 && e < 1.1 * 64 * 1048576) }'
ok $? "estimated allocated bytes within 10% of 64 MiB ($est)"
is "$(jq '.processes[0].functions.malloc.calls' "$TMP/p.json")" 65536 "the counts stay exact whatever the sampling"

# --interval: dumps every 0.2 s while the program sleeps.
$MEMTAP run -q --stacks --interval=0.2 -o "$TMP/i" -- "$S" pattern 1100
n=$(for f in "$TMP"/i.*.mtp; do $MEMTAP report --format=json "$f" | jq -r '.processes[0].reason'; done | grep -c '^interval$')
[ "$n" -ge 3 ] && [ "$n" -le 8 ]
ok $? "--interval=0.2 over about 1.2 s: a few interval dumps ($n)"

# --dump-on-peak and the sites at the peak.
$MEMTAP run -q --sample=1 --dump-on-peak -o "$TMP/k" -- "$S" peak
ok $? "run --dump-on-peak"
n=$(for f in "$TMP"/k.*.mtp; do $MEMTAP report --format=json "$f" | jq -r '.processes[0].reason'; done | grep -c '^peak$')
[ "$n" -ge 1 ]
ok $? "dumps written as in-use grew ($n)"
last=$(by_reason "$TMP/k" exit)
$MEMTAP report --format=json "$last" > "$TMP/k.json"
peak=$(jq '.processes[0].totals.peak_in_use_bytes' "$TMP/k.json")
[ "$peak" -ge $((160 * 65536)) ] && [ "$peak" -le $((160 * 65536 + 300000)) ]
ok $? "peak in use is the big phase's 10 MiB ($peak)"
big=$(jq '[.processes[0].sites[] | select(.alloc_objects == 160) | .peak_bytes] | add' "$TMP/k.json")
small=$(jq '[.processes[0].sites[] | select(.alloc_objects == 80) | .peak_bytes] | add' "$TMP/k.json")
[ "$big" -ge $((150 * 65536)) ]
ok $? "the sites at the peak: big_phase's blocks ($big bytes)"
is "$small" 0 "small_phase, which came after the peak, had nothing at it"
is "$(jq '[.processes[0].sites[] | select(.alloc_objects == 80) | .inuse_bytes] | add' "$TMP/k.json")" \
	$((80 * 65536)) "small_phase's 5 MiB are what is in use at exit"

# The stack cache (a repeated stack is recognised by its return addresses
# instead of being unwound) must give exactly the stacks the unwinder gives,
# on the stacks that are hard for it: one helper reached from two callers,
# recursion to six depths, frames of varying size, two threads.
$MEMTAP run -q --stacks --sample=1 -o "$TMP/cc" -- "$S" cache
ok $? "run --sample=1 on the stack-cache fixture"
MEMTAP_STACK_CACHE=0 $MEMTAP run -q --stacks --sample=1 -o "$TMP/cu" -- "$S" cache
# --full-stacks: the unwinders' whole stacks, thread entry and libc's frames
# included (the report trims them by default).
$MEMTAP report --format=collapsed --full-stacks "$TMP"/cc.*.mtp | sort > "$TMP/cc.txt"
$MEMTAP report --format=collapsed --full-stacks "$TMP"/cu.*.mtp | sort > "$TMP/cu.txt"
is "$(cat "$TMP/cc.txt")" "$(cat "$TMP/cu.txt")" "with the cache: the same stacks and bytes as unwinding every sample"
is "$($MEMTAP report --format=json "$TMP"/cc.*.mtp | jq '.processes[0].sites | length')" \
   "$($MEMTAP report --format=json "$TMP"/cu.*.mtp | jq '.processes[0].sites | length')" "... and the same number of distinct stacks"
is "$(grep -c ';cache_work;caller_a;xalloc 3600$' "$TMP/cc.txt")" 2 "xalloc from caller_a, in both threads (200 x 16..20 bytes)"
is "$(grep -c ';cache_work;caller_b;xalloc 3400$' "$TMP/cc.txt")" 2 "xalloc from caller_b, in both threads"
for d in 1 2 3 4 5 6; do
	r=$(printf ';recurse%.0s' $(seq $d))
	c=$(grep -c ";cache_work$r;xalloc 2400\$" "$TMP/cc.txt")
	[ "$c" = 2 ] || break
done
is "$c/$d" "2/6" "recursion: each of the 6 depths is its own stack, in both threads"
is "$(grep -c ';cache_work;varying_frame;xalloc 12800$' "$TMP/cc.txt")" 2 "alloca frames of 7 sizes: one stack, all 200 x 64 bytes"
# C++ operators and every C entry point (their CFA comes by other routes).
for fx in cxx_ops every_func; do
	$MEMTAP run -q --stacks --sample=1 -o "$TMP/x$fx" -- "$FIX/$fx"
	MEMTAP_STACK_CACHE=0 $MEMTAP run -q --stacks --sample=1 -o "$TMP/y$fx" -- "$FIX/$fx"
	$MEMTAP report --format=collapsed --full-stacks --value=alloc "$TMP"/x$fx.*.mtp 2>&1 | sort > "$TMP/x$fx.txt"
	$MEMTAP report --format=collapsed --full-stacks --value=alloc "$TMP"/y$fx.*.mtp 2>&1 | sort > "$TMP/y$fx.txt"
	is "$(cat "$TMP/x$fx.txt")" "$(cat "$TMP/y$fx.txt")" "$fx: the same stacks with and without the cache"
done
like "$(cat "$TMP/xcxx_ops.txt")" "__libc_start_call_main;main [0-9]+" "... (the C++ operators' bytes, sampled from main)"
is "$(wc -l < "$TMP/xevery_func.txt")" "$(wc -l < "$TMP/yevery_func.txt")" "every_func: $(wc -l < "$TMP/xevery_func.txt") allocating stacks either way"
