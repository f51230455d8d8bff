#!/bin/bash
# Live sessions: memtap reads the traced processes' counters from their live
# files and writes the profiles itself, so a process that ends in any way
# (SIGKILL, SIGSEGV, abort, _exit) still gets its final profile, with the
# exact counts made before the end and how it ended; forked children's
# in-use starts from their parent's; profiles land where the user asked even
# when the traced process cannot write there; a process that scribbles over
# its own counters cannot crash memtap; nothing is left behind.
. "$(dirname "$0")/../lib.sh"
plan 54

export MEMTAP_RUNDIR="$TMP/run"
mkdir -p "$MEMTAP_RUNDIR"
chmod 1777 "$MEMTAP_RUNDIR"  # like /dev/shm: every uid makes its own directory
N=40   # blocks of 3000 bytes (the 2048 bucket) before the end; every other one freed

check_end() { # MODE WANT_STATUS HOW SIGNAL
	local mode=$1 st=$2 how=$3 sig=$4
	$MEMTAP run -o "$TMP/$mode" --format json --report-file "$TMP/$mode.json" -- "$FIX/ends" "$mode" $N \
		2> "$TMP/$mode.err"
	is "$?" "$st" "$mode: memtap run returns the program's status ($st)"
	is "$(ls "$TMP/$mode".*.mtp 2>/dev/null | wc -l)" 1 "$mode: its final profile was written"
	is "$(bucket "$TMP/$mode.json" malloc 2048)" $N "$mode: exactly the $N mallocs made before the end"
	is "$(jq -r '.processes[0].ended.how' "$TMP/$mode.json")" "$how" "$mode: the profile says how it ended ($how)"
	if [ -n "$sig" ]; then
		is "$(jq -r '.processes[0].ended.signal' "$TMP/$mode.json")" "$sig" "$mode: by $sig"
		grep -q "killed by $sig; profile recovered" "$TMP/$mode.err"
		ok $? "$mode: the summary says 'killed by $sig; profile recovered'"
	fi
}
check_end kill 137 signal SIGKILL
check_end segv 139 signal SIGSEGV
check_end abort 134 signal SIGABRT
check_end _exit 3 _exit ""
is "$(jq -r '.processes[0].ended.code' "$TMP/_exit.json")" 3 "_exit: its status, 3"
check_end exit 4 exit ""

# Prefork: children that end with _exit each have their profile; their
# in-use starts from the parent's (the parent's heap is theirs too).
$MEMTAP run -q -o "$TMP/pf" -- "$FIX/ends" prefork 3 $N
ok $? "prefork: 3 children ending with _exit(0)"
$MEMTAP report --format=json "$TMP"/pf.*.mtp > "$TMP/pf.json"
is "$(jq '.processes | length' "$TMP/pf.json")" 4 "prefork: parent and 3 children, each its own profile"
is "$(jq '[.processes[] | select(.ended.how == "_exit")] | length' "$TMP/pf.json")" 3 \
	"prefork: the children are known to have ended with _exit"
is "$(jq '[.processes[] | select(.totals.in_use_bytes < 0)] | length' "$TMP/pf.json")" 0 \
	"prefork: no process's in-use goes below zero"
parent_inuse=$(jq '[.processes[] | select(.ended.how == "exit")][0].totals.in_use_bytes' "$TMP/pf.json")
is "$(jq --argjson p "$parent_inuse" '[.processes[] | select(.ended.how == "_exit") |
	select(.totals.allocated_bytes - .totals.freed_bytes == .totals.in_use_bytes - $p)] | length' "$TMP/pf.json")" 3 \
	"prefork: each child's in-use is its parent's ($parent_inuse) plus its own allocated minus freed"
is "$(jq '[.processes[] | select(.ended.how == "_exit") | .functions.malloc.hist[] | select(.[0] == 2048) | .[1]] | add' \
	"$TMP/pf.json")" $((3 * N)) "prefork: the children's mallocs add up ($N each)"

# The traced process runs as a user that cannot write where the profiles go:
# memtap writes them, with its own permissions.
if id nobody >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
	mkdir -m 0700 "$TMP/rootonly"
	$MEMTAP run -o "$TMP/rootonly/p" --format json --report-file "$TMP/ro.json" -- \
		chroot --userspec=65534:65534 --skip-chdir / "$FIX/ends" exit $N 2> "$TMP/ro.err"
	is "$?" 4 "a process running as nobody, profiles into a directory only root can write"
	f=$(ls "$TMP"/rootonly/p.*.mtp 2>/dev/null | head -1)
	[ -n "$f" ] && [ "$(stat -c %U "$f")" = root ]
	ok $? "its profile is there, written by memtap as root ($f)"
	is "$(jq '[.processes[] | select(.exe | endswith("/ends")) | .functions.malloc.hist[]? |
		select(.[0] == 2048) | .[1]] | add' "$TMP/ro.json")" $N "with its exact counts"
else
	skip "needs root and the user nobody"; skip "(same)"; skip "(same)"
fi

# attach: the process dies while attached, in each way; the attach session
# writes its final profile from what it left, with the exact counts made
# while attached.
for mode in kill segv abort _exit; do
	coproc TGT { exec "$FIX/ends" wait $mode $N; }
	read -r ready <&"${TGT[0]}"
	TPID=$TGT_PID
	$MEMTAP attach -p "$TPID" -o "$TMP/at$mode" -q 2> "$TMP/at$mode.err" &
	APID=$!
	wait_for "grep -q attached $TMP/at$mode.err" 100
	echo go >&"${TGT[1]}"
	wait "$APID"
	st=$?
	$MEMTAP report --format=json "$TMP"/at$mode.*.mtp > "$TMP/at$mode.json" 2>/dev/null
	got="$st $(bucket "$TMP/at$mode.json" malloc 2048) $(jq -r '.processes[0].ended | "\(.how) \(.signal // .code)"' "$TMP/at$mode.json")"
	case $mode in
	kill) want_re="^0 $N (signal SIGKILL|vanished 0)$" ;;
	segv) want_re="^0 $N signal SIGSEGV$" ;;
	abort) want_re="^0 $N signal SIGABRT$" ;;
	_exit) want_re="^0 $N _exit 3$" ;;
	esac
	like "$got" "$want_re" "attach, $mode: memtap attach ends with the process; exactly the $N mallocs made while attached; how it ended"
done

coproc TGT2 { exec "$FIX/ends" wait exit $N; }
read -r ready <&"${TGT2[0]}"
T2=$TGT2_PID
$MEMTAP attach -p "$T2" -o "$TMP/dump" -q 2> "$TMP/d.err" &
A2=$!
wait_for "grep -q attached $TMP/d.err" 100
d=$($MEMTAP ctl "$T2" dump)
ok $? "ctl dump while attached: $d"
[ -f "$d" ] && [ "${d#$TMP/dump.}" != "$d" ]
ok $? "the dump is under the attach's -o prefix, written by memtap ctl"
is "$(stat -c %U "$d")" "$(id -un)" "owned by the user who ran ctl"
like "$($MEMTAP ctl "$T2" status)" "state: active" "ctl status of the attached process: active"
echo go >&"${TGT2[1]}"
wait "$A2"
$MEMTAP report --format=json "$TMP"/dump.*.mtp > "$TMP/dump.json"
is "$(jq '[.processes[] | select(.ended.how == "exit")] | length' "$TMP/dump.json")" 1 \
	"the final profile follows the dump, numbered after it"

# The eBPF collector in the same session layer: how the process ended (from
# the kernel's exit code), and periodic profiles of an attached process.
if [ "$(id -u)" = 0 ] && [ -r /sys/kernel/btf/vmlinux ]; then
	$MEMTAP run --via=ebpf -q -o "$TMP/bk" -- "$FIX/ends" kill $N 2>/dev/null
	is "$?" 137 "eBPF: memtap run --via=ebpf returns 128 + SIGKILL"
	$MEMTAP report --format=json "$TMP"/bk.*.mtp > "$TMP/bk.json"
	is "$(jq -r '.processes[0].ended.signal' "$TMP/bk.json")" SIGKILL "eBPF: the profile says killed by SIGKILL"
	is "$(bucket "$TMP/bk.json" malloc 2048)" $N "eBPF: with the $N mallocs made before the end"
	coproc TGT3 { exec "$FIX/ends" wait exit $N; }
	read -r ready <&"${TGT3[0]}"
	T3=$TGT3_PID
	$MEMTAP attach --via=ebpf -p "$T3" --interval=0.3 -q -o "$TMP/bi" 2> "$TMP/bi.err" &
	B3=$!
	wait_for "grep -q tracing $TMP/bi.err" 100
	sleep 1
	echo go >&"${TGT3[1]}"
	wait "$B3"
	n=$(for f in "$TMP"/bi.*.mtp; do $MEMTAP report --format=json "$f" | jq -r '.processes[0].reason'; done | grep -c interval)
	[ "$n" -ge 2 ]
	ok $? "eBPF: --interval=0.3 writes periodic profiles of the attached process ($n)"
	is "$(for f in "$TMP"/bi.*.mtp; do $MEMTAP report --format=json "$f" | jq -r '.processes[0].ended.how // empty'; done)" exit \
		"eBPF: and its final one says it exited"
else
	for i in 1 2 3 4 5; do skip "eBPF: needs root and BTF"; done
fi

# A process that writes garbage over its own live counter file: memtap
# reports it, flagged or refused, and never crashes.
$MEMTAP run -o "$TMP/sc" --format json --report-file "$TMP/sc.json" -- "$FIX/ends" scribble $N 2> "$TMP/sc.err"
is "$?" 0 "scribble: memtap run survives a process that overwrote its counter file"
if [ -s "$TMP/sc.json" ] && jq -e '.processes[0].suspect' "$TMP/sc.json" >/dev/null 2>&1; then
	ok 0 "scribble: the profile is flagged as suspect"
else
	grep -qiE "live|counter|trust" "$TMP/sc.err"
	ok $? "scribble: memtap says what was wrong with the counter file"
fi

# Leftovers: the next memtap command removes what died with its processes.
ls "$MEMTAP_RUNDIR"/memtap-*/*.mtl 2>/dev/null > "$TMP/left"
is "$(wc -l < "$TMP/left")" 0 "no live counter file of a finished session is left behind"
$MEMTAP run -q -o "$TMP/t" -- true
n=0
for s in "$MEMTAP_RUNDIR"/memtap-*/*.sock; do
	[ -e "$s" ] || continue
	pid=$(basename "$s" .sock)
	[ -d "/proc/$pid" ] || n=$((n + 1))
done
is "$n" 0 "no control socket of a process that is gone is left behind"
