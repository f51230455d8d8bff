#!/bin/bash
# --glibc's lock waits, and --glibc by attach.
# - Contention: with one arena (MALLOC_ARENA_MAX=1) and no tcache, four
#   threads that malloc and free for a second and a half wait on the arena's
#   lock: memtap's samples (a thread blocked in futex on the arena's mutex)
#   see waits, by thread and for that arena; one thread alone is seen waiting
#   less.
# - attach --via=inject --glibc on a running fixture that memtap did not
#   start: the detach profile has glibc's section, whose arena and heap
#   counts agree with malloc_info taken in the process afterwards.
. "$(dirname "$0")/../lib.sh"
plan 10

send() { echo "$1" >&"${TGT[1]}"; local l; read -r -t 20 -u "${TGT[0]}" l; [ "$l" = done ]; }
# waits N: total lock waits of a run where N threads contend
waits() {
	coproc TGT { MALLOC_ARENA_MAX=1 GLIBC_TUNABLES=glibc.malloc.tcache_count=0 \
		exec $MEMTAP run -q --glibc -o "$TMP/w$1" -- "$FIX/glibc_arenas"; }
	RUNPID=$TGT_PID
	at_exit "kill $RUNPID 2>/dev/null"
	wait_for "pgrep -P $RUNPID" && TPID=$(pgrep -P $RUNPID)
	wait_for "test -S /tmp/memtap-$(id -u)/$TPID.sock"
	send "contend $1 1500"
	d=$($MEMTAP ctl $TPID dump | head -1)
	$MEMTAP report --format=json "$d" > "$TMP/w$1.json"
	$MEMTAP report "$d" > "$TMP/w$1.txt"
	echo quit >&"${TGT[1]}"
	wait $RUNPID
	jq '[.processes[0].glibc.threads[].lock_waits] | add // 0' "$TMP/w$1.json"
}
many=$(waits 4)
one=$(waits 1)
diag "lock-wait samples: 4 threads $many, 1 thread $one"
is "$(jq '.processes[0].glibc.arenas | length' "$TMP/w4.json")" 1 "MALLOC_ARENA_MAX=1: one arena"
[ "$many" -gt 0 ]
ok $? "four threads on one arena are seen waiting for its lock ($many samples)"
[ "$many" -gt "$one" ]
ok $? "more than one thread alone ($one)"
is "$(jq '.processes[0].glibc.arenas[0].lock_waits' "$TMP/w4.json")" "$many" "the arena's waits are its threads' waits"
[ "$(jq '[.processes[0].glibc.threads[] | select(.lock_waits > 0)] | length' "$TMP/w4.json")" -ge 2 ]
ok $? "several threads waited"
like "$(cat "$TMP/w4.txt")" "Contention \(threads blocked in futex on an arena's lock; [0-9]+ samples" \
	"the text report has seeds/003's contention section"

# attach: a fixture memtap did not start
coproc TGT { exec "$FIX/glibc_arenas"; }
TPID=$TGT_PID
at_exit "kill $TPID 2>/dev/null"
send "threads 2"
send "heap 1000000"
$MEMTAP attach -p $TPID --glibc -o "$TMP/a" -d 1.5 -q 2> "$TMP/attach.err"
ok $? "attach --glibc, 1.5 s"
f=$(ls "$TMP"/a.$TPID.*.mtp | tail -1)
$MEMTAP report --format=json "$f" > "$TMP/a.json"
echo info >&"${TGT[1]}"
: > "$TMP/info.xml"
while read -r -t 20 -u "${TGT[0]}" l && [ "$l" != done ]; do echo "$l" >> "$TMP/info.xml"; done
mi_arenas=$(grep -c '<heap nr=' "$TMP/info.xml")
mi_subheaps=$(awk '/<aspace type="subheaps"/ { match($0, /size="[0-9]+"/); s += substr($0, RSTART+6, RLENGTH-7) } END { print s+0 }' "$TMP/info.xml")
is "$(jq '.processes[0].glibc.arenas | length' "$TMP/a.json")" "$mi_arenas" "attach: arena count agrees with malloc_info ($mi_arenas)"
is "$(jq '.processes[0].glibc.heaps | length' "$TMP/a.json")" "$mi_subheaps" "attach: heap count too ($mi_subheaps)"
send "grow 100000"
ok $? "the process runs on after detach"
echo quit >&"${TGT[1]}"
