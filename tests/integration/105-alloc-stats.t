#!/bin/bash
# `memtap ctl PID stats` under glibc, jemalloc, tcmalloc and mimalloc (LD_PRELOAD
# of Debian's libraries): the allocator is detected in the process, its own
# statistics are printed, one figure agrees with what the fixture reads from
# the same API in the same process, and the statistics travel in the next
# profile (record tag 12, JSON processes[].stats).  Without an agent, stats
# say what can be read from outside.
. "$(dirname "$0")/../lib.sh"
PER=7
plan $((4 * PER + 7))

LIBDIR=/usr/lib/x86_64-linux-gnu
# start LIB: glibc_arenas under memtap run with LIB preloaded (none: glibc)
start() {
	if [ "$1" = none ]; then
		coproc TGT { exec $MEMTAP run -q -o "$TMP/$2" -- "$FIX/glibc_arenas"; }
	else
		coproc TGT { LD_PRELOAD=$1 exec $MEMTAP run -q -o "$TMP/$2" -- "$FIX/glibc_arenas"; }
	fi
	RUNPID=$TGT_PID
	at_exit "kill $RUNPID 2>/dev/null"
	TPID=
	wait_for "pgrep -P $RUNPID" && TPID=$(pgrep -P $RUNPID)
	wait_for "test -S /tmp/memtap-$(id -u)/$TPID.sock"
}
send() { echo "$1" >&"${TGT[1]}"; local l; read -r -t 10 -u "${TGT[0]}" l; [ "$l" = done ]; }
# ask CMD: the fixture's one-line answer, then its "done"
ask() { echo "$1" >&"${TGT[1]}"; local l d; read -r -t 10 -u "${TGT[0]}" l; read -r -t 10 -u "${TGT[0]}" d; echo "$l"; }
stop() { echo quit >&"${TGT[1]}"; wait "$RUNPID" 2>/dev/null; }
# value STATS-TEXT KEY: the number after KEY on its line
value() { awk -v k="$2" '$1 == k { print $2; exit }' <<<"$1"; }
# near A B PERCENT: A within PERCENT % of B
near() { awk -v a="$1" -v b="$2" -v p="$3" 'BEGIN { d = a - b; if (d < 0) d = -d; exit !(b > 0 && d * 100 <= b * p) }'; }

for alloc in glibc jemalloc tcmalloc mimalloc; do
	case $alloc in
	glibc) lib=none key=mallinfo2.arena mine=mallinfo2.arena header="glibc (mallinfo2):" ;;
	jemalloc) lib=$LIBDIR/libjemalloc.so.2 key=stats.allocated mine=je:stats.allocated header="jemalloc (mallctl):" ;;
	tcmalloc) lib=$LIBDIR/libtcmalloc_minimal.so.4 key=generic.current_allocated_bytes
		mine=tc:generic.current_allocated_bytes header="tcmalloc (MallocExtension numeric properties):" ;;
	mimalloc) lib=$LIBDIR/libmimalloc.so.2 key=process.current_commit mine=mi:commit header="mimalloc (mi_process_info):" ;;
	esac
	if [ "$lib" != none ] && [ ! -e "$lib" ]; then
		for _ in $(seq $PER); do skip "$lib is not installed (sh scripts/deps.sh peers)"; done
		continue
	fi
	start "$lib" "$alloc"
	send "grow 4000000"
	st=$($MEMTAP ctl "$TPID" stats)
	ok $? "$alloc: ctl stats"
	theirs=$(ask "stat $mine") # after: memory the agent's control thread made the allocator commit counts in both
	like "$st" "allocator: $alloc" "$alloc: detected in the process"
	like "$st" "$(printf '%s' "$header" | sed 's/[()]/\\&/g')" "$alloc: its own statistics are printed"
	ours=$(value "$st" "${key#mallinfo2.}") # glibc's lines are mallinfo2's own names
	diag "$alloc: $key: memtap $ours, the fixture's own call $theirs"
	# Both were taken moments apart; the fixture allocated nothing between
	# them (the agent's own allocations are tiny), so they agree closely.
	near "${ours:-0}" "${theirs:-0}" 5
	ok $? "$alloc: $key ($ours) agrees with the allocator's API in the fixture ($theirs)"
	[ "${ours:-0}" -ge 4000000 ]
	ok $? "$alloc: $key covers the 4 MB the fixture keeps"
	d=$($MEMTAP ctl "$TPID" dump | head -1)
	$MEMTAP report --format=json "$d" > "$TMP/$alloc.json"
	is "$(jq -r '.processes[0].stats.allocator' "$TMP/$alloc.json")" "$alloc" "$alloc: the dump carries the statistics"
	inprof=$(jq -r --arg k "$key" '.processes[0].stats.values[$k] // 0' "$TMP/$alloc.json")
	near "$inprof" "${theirs:-0}" 5
	ok $? "$alloc: $key in the profile ($inprof) is that figure, refreshed for the dump"
	stop
done

# exit() while the exiting thread holds the main arena's lock (as a signal
# handler that called exit inside malloc would): the last statistics come
# from the control thread, which may wait on that lock; the exit does not.
start none xl
$MEMTAP ctl "$TPID" stats > /dev/null
t0=$(date +%s%N)
echo exitlocked >&"${TGT[1]}"
wait_for "! kill -0 $TPID 2>/dev/null" 100
gone=$?
ms=$(( ($(date +%s%N) - t0) / 1000000 ))
wait "$RUNPID"
rc=$?
ok $gone "exit inside glibc's arena lock: the process ends anyway, in $ms ms (not held up by memtap)"
is "$rc" 7 "with its exit status"
is "$($MEMTAP report --format=json "$TMP"/xl.$TPID.*.mtp | jq -r '.processes[-1].ended.how')" exit "and its final profile"

# No agent: the kernel's figures and glibc's heaps read from outside.
"$FIX/glibc_arenas" < <(echo "grow 3000000"; sleep 3) > /dev/null &
bare=$!
at_exit "kill $bare 2>/dev/null"
sleep 0.5
out=$($MEMTAP ctl $bare stats)
ok $? "ctl stats on a process without an agent"
like "$out" "no memtap agent in process $bare" "it says there is no agent"
like "$out" "smaps_rollup.Rss_bytes" "and gives the kernel's figures"
sbrk=$(value "$out" sbrk_bytes)
[ "${sbrk:-0}" -ge 3000000 ]
ok $? "and glibc's sbrk heap read from its memory ($sbrk bytes)"
kill $bare 2>/dev/null
