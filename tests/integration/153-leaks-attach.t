#!/bin/bash
# The leak check on a process memtap attaches to (by injection): blocks
# allocated before the attach are not tracked, and may hold the only pointer
# to tracked ones; they are scanned as roots, so a block chained from one is
# reachable, not lost.  ctl leaks while attached; attach --leaks checks again
# at detach, and the program runs on.
. "$(dirname "$0")/../lib.sh"
plan 9
F="$FIX/leak_patterns"
[ "$(id -u)" = 0 ] || [ "$(cat /proc/sys/kernel/yama/ptrace_scope 2>/dev/null || echo 0)" = 0 ] ||
	skip_all "attach needs ptrace: run as root or with kernel.yama.ptrace_scope=0"

coproc TGT { exec "$F" serve 2>/dev/null; }
TPID=$TGT_PID
at_exit "kill $TPID 2>/dev/null"
cmd() { echo "$1" >&"${TGT[1]}"; local l; read -r -t 20 -u "${TGT[0]}" l; echo "$l"; }
read -r -t 20 -u "${TGT[0]}" first
$MEMTAP attach -p $TPID --leaks -o "$TMP/a" 2> "$TMP/a.err" &
APID=$!
at_exit "kill $APID 2>/dev/null"
wait_for "grep -q attached $TMP/a.err"
like "$(cat "$TMP/a.err")" "attached: " "attach --leaks"

cmd "leak 777" > /dev/null
cmd "chain 3333" > /dev/null # its only pointer: inside a block from before the attach
cmd "keep 5000" > /dev/null
out=$($MEMTAP ctl $TPID leaks)
ok $? "ctl leaks while attached"
diag "$(grep '^pause' <<< "$out")"
like "$out" "^definitely lost: 777 bytes in 1 blocks" "only the leak made after the attach is lost"
like "$out" "attached: memory allocated before the attach was scanned as roots" "the report says how it scanned"
reach=$(sed -n 's/^still reachable: \([0-9]*\) bytes.*/\1/p' <<< "$out")
[ "${reach:-0}" -ge 8333 ]
ok $? "the chained block (3333) and the kept one (5000) are reachable ($reach bytes)"

cmd "leak 111" > /dev/null # after the ctl check: only the check at detach sees it
kill -INT $APID
wait $APID
is "$?" 0 "Ctrl-C detaches"
f=$(ls "$TMP"/a.*.mtp | tail -1)
is "$($MEMTAP report --format=json "$f" | jq -r '.processes[0].leaks | "\(.attached) \(.unreachable_bytes)"')" \
	"true 888" "the detach profile carries a check made at detach (the 111 bytes lost since, too)"
like "$(cmd check)" "^ok [0-9]+$" "the program's structures are intact"
is "$(cmd 'leak 10')" "leaked 10" "and it serves on"
echo quit >&"${TGT[1]}"
