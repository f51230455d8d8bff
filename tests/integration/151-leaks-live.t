#!/bin/bash
# memtap ctl PID leaks on a running program: the leak made while it runs is
# found, what it keeps is not, checks during a thread's malloc/free churn
# agree, and the program runs on healthy: its structures intact, its threads
# alive, the same exit.  Then the final profile carries the check at exit.
. "$(dirname "$0")/../lib.sh"
plan 21
F="$FIX/leak_patterns"

coproc TGT { exec $MEMTAP run --leaks -o "$TMP/s" -- "$F" serve 2> "$TMP/err"; }
RUNPID=$TGT_PID
at_exit "kill $RUNPID 2>/dev/null"
cmd() { echo "$1" >&"${TGT[1]}"; local l; read -r -t 20 -u "${TGT[0]}" l; echo "$l"; }
read -r -t 20 -u "${TGT[0]}" first
is "$first" ready "the fixture serves under memtap run --leaks"
wait_for "pgrep -x leak_patterns -P $RUNPID" && TPID=$(pgrep -x leak_patterns -P $RUNPID)
wait_for "test -S /tmp/memtap-$(id -u)/$TPID.sock"
lost_of() { sed -n 's/^definitely lost: \([0-9]*\) bytes in \([0-9]*\) blocks$/\1 \2/p' <<< "$1"; }
reach_of() { sed -n 's/^still reachable: \([0-9]*\) bytes.*/\1/p' <<< "$1"; }
threads() { ls /proc/$TPID/task | wc -l; }

sum0=$(cmd check)
nthreads=$(threads)
out=$($MEMTAP ctl $TPID leaks)
ok $? "ctl leaks"
is "$(lost_of "$out")" "7320 163" "the list and the tree are lost, nothing else"
diag "$(grep '^pause' <<< "$out")"
like "$out" "4800 bytes in 100 blocks are definitely lost, allocated by malloc from:" "per site, in valgrind's words"
like "$out" "make_list +[^ ]*leak_patterns.c:[0-9]+" "symbolized"
r0=$(reach_of "$out")

is "$(cmd 'leak 777')" "leaked 777" "a leak made while it runs"
out=$($MEMTAP ctl $TPID leaks)
is "$(lost_of "$out")" "8097 164" "found: 777 bytes more, one block"
like "$out" "777 bytes in 1 blocks are definitely lost, allocated by malloc from:" "with its own site"
grep -A1 '^  777 bytes in 1 blocks are definitely lost' <<< "$out" | grep -q ' serve '
ok $? "allocated in serve()"

is "$(cmd 'keep 5000')" "kept 5000" "a block kept in a global list"
out=$($MEMTAP ctl $TPID leaks)
is "$(lost_of "$out")" "8097 164" "kept memory is not lost"
is "$(reach_of "$out")" "$((r0 + 5000))" "it is still reachable: 5000 bytes more"

# Checks while a thread allocates and frees as fast as it can: each one
# stops it where it is, and its 64 live blocks (on its stack, in its
# registers) are never reported lost.
is "$(cmd churn)" churning "a churning thread"
agree=0
for i in 1 2 3 4 5; do
	[ "$(lost_of "$($MEMTAP ctl $TPID leaks)")" = "8097 164" ] && agree=$((agree + 1))
done
is "$agree" 5 "5 checks during the churn: the same lost bytes each time"
like "$(cmd stopchurn)" "^churned [1-9][0-9]*$" "the churn ran on between the checks and ends normally"

# The program is unharmed.
is "$(cmd check)" "ok $((${sum0#ok } + 9))" "its structures hold what they held before the checks (and the kept block)"
is "$(threads)" "$nthreads" "its threads are all alive"
state=$(awk '{print $3}' /proc/$TPID/stat)
[ "$state" != T ] && [ "$state" != t ]
ok $? "not left stopped (state $state)"

# Without every allocation tracked, ctl leaks says what to do.
coproc T2 { exec $MEMTAP run --stacks -o "$TMP/t" -- "$F" serve 2>/dev/null; }
at_exit "kill $T2_PID 2>/dev/null"
read -r -t 20 -u "${T2[0]}" l
wait_for "pgrep -x leak_patterns -P $T2_PID" && T2PID=$(pgrep -x leak_patterns -P $T2_PID)
wait_for "test -S /tmp/memtap-$(id -u)/$T2PID.sock"
like "$($MEMTAP ctl $T2PID leaks 2>&1)" "needs every allocation tracked: start the program with memtap run --leaks" \
	"ctl leaks on sampled stacks: refused, saying what to do"
echo quit >&"${T2[1]}"

echo quit >&"${TGT[1]}"
wait $RUNPID
is "$?" 0 "the program exits 0, as it does untraced"
$MEMTAP report --format=json "$TMP"/s.*.mtp > "$TMP/f.json"
is "$(jq '.processes[0].leaks | "\(.at_exit) \(.unreachable_bytes)"' -r "$TMP/f.json")" "true 8097" \
	"the final profile carries the check at exit"
