#!/bin/bash
# --glibc under memtap run: a threaded fixture makes several arenas (one per
# thread), grows their heaps past 64 MiB (a second heap each), grows the
# program break and frees a 200 KiB mmapped chunk.  In the same process,
# glibc's own malloc_info is taken; the profile memtap writes right after
# must agree with it: the arena count, every arena's bytes from the system,
# the heaps per arena, the sbrk total; and the mmap threshold must have
# moved to at least 200 KiB (glibc's dynamic threshold), with the change in
# its history.  Each worker thread is seen on an arena of its own.
. "$(dirname "$0")/../lib.sh"
DBG=/usr/lib/debug/.build-id
plan 15

send() { echo "$1" >&"${TGT[1]}"; local l; read -r -t 20 -u "${TGT[0]}" l; [ "$l" = done ]; }
coproc TGT { exec $MEMTAP run -q --glibc -o "$TMP/g" -- "$FIX/glibc_arenas" 2>"$TMP/err"; }
RUNPID=$TGT_PID
at_exit "kill $RUNPID 2>/dev/null"
wait_for "pgrep -P $RUNPID" && TPID=$(pgrep -P $RUNPID)
wait_for "test -S /tmp/memtap-$(id -u)/$TPID.sock"

send "threads 3"
ok $? "three threads started"
send "heap 70000000"   # each thread's arena: past one 64 MiB heap
send "grow 2000000"    # the main arena: the program break
send "big 204800"      # a 200 KiB chunk is mmapped, then freed
# glibc's own view, from inside the same process: lines up to "done"
echo info >&"${TGT[1]}"
: > "$TMP/info.xml"
while read -r -t 20 -u "${TGT[0]}" l && [ "$l" != done ]; do echo "$l" >> "$TMP/info.xml"; done
d=$($MEMTAP ctl $TPID dump | head -1)
ok $? "dump with --glibc"
$MEMTAP report --format=json "$d" > "$TMP/g.json"
G='.processes[0].glibc'

# malloc_info: <heap nr="N"> per arena, its <system type="current">, the
# <aspace type="subheaps"> of the non-main ones.
mi_arenas=$(grep -c '<heap nr=' "$TMP/info.xml")
mi_system=$(awk '/<heap nr=/{h=1} /<\/heap>/{h=0} h && /<system type="current"/ { match($0, /size="[0-9]+"/); printf "%s ", substr($0, RSTART+6, RLENGTH-7) }' "$TMP/info.xml")
mi_subheaps=$(awk '/<aspace type="subheaps"/ { match($0, /size="[0-9]+"/); s += substr($0, RSTART+6, RLENGTH-7) } END { print s+0 }' "$TMP/info.xml")
mi_main=$(awk '/<heap nr="0"/{h=1} /<\/heap>/{h=0} h && /<system type="current"/ { match($0, /size="[0-9]+"/); print substr($0, RSTART+6, RLENGTH-7); exit }' "$TMP/info.xml")
diag "malloc_info: $mi_arenas arenas, system bytes: $mi_system, subheaps $mi_subheaps"

is "$(jq "$G.arenas | length" "$TMP/g.json")" "$mi_arenas" "arena count agrees with malloc_info ($mi_arenas)"
[ "$mi_arenas" -ge 4 ]
ok $? "the main arena, three threads' and the agent's own control thread's: at least 4 ($mi_arenas)"
is "$(jq "$G.heaps | length" "$TMP/g.json")" "$mi_subheaps" "heap count agrees with malloc_info's subheaps ($mi_subheaps)"
[ "$mi_subheaps" -ge 7 ]
ok $? "each grown arena has two heaps: at least 3 x 2 + 1 ($mi_subheaps)"
is "$(jq "$G.sbrk_bytes" "$TMP/g.json")" "$mi_main" "sbrk total agrees with the main arena's system bytes ($mi_main)"
[ "${mi_main:-0}" -ge 2000000 ]
ok $? "and covers the 2 MB grown through the break"
heaps_ok=$(jq "[$G.arenas[] | select(.main | not) | .heaps] | add" "$TMP/g.json")
is "$heaps_ok" "$mi_subheaps" "heaps per arena add up to the same"

if [ -z "$(ls $DBG 2>/dev/null)" ]; then
	for _ in 1 2 3 4 5 6; do skip "libc6-dbg is not installed: no thresholds or thread arenas (sh scripts/deps.sh test)"; done
	exit 0
fi
ours=$(jq -r "[$G.arenas[].system_bytes] | map(tostring) | join(\" \")" "$TMP/g.json")
is "$ours " "$mi_system" "every arena's bytes from the system, in glibc's order, agree with malloc_info"
thr=$(jq "$G.mmap_threshold" "$TMP/g.json")
[ "$thr" -ge 204800 ] && [ "$thr" -le $((32 << 20)) ]
ok $? "the mmap threshold moved to at least 200 KiB ($thr) after the 200 KiB chunk was freed"
is "$(jq "$G.trim_threshold" "$TMP/g.json")" $((2 * thr)) "the trim threshold is twice it (glibc's rule)"
is "$(jq "[$G.threshold_changes[] | select(.mmap_threshold == $thr)] | length" "$TMP/g.json")" 1 \
	"the change is in the threshold history"
is "$(jq "$G.threshold_changes[0].mmap_threshold" "$TMP/g.json")" 131072 "which starts at glibc's default, 128 KiB"
workers=$(jq "[$G.threads[] | select(.alive and .arena != null)] | map(.arena) | unique | length" "$TMP/g.json")
[ "$workers" -ge 4 ]
ok $? "the main thread and the three workers are each seen on their own arena ($workers distinct)"
echo quit >&"${TGT[1]}"
wait $RUNPID
