#!/bin/bash
# The agent loaded into a running process (as `memtap attach` does by
# injection; here the program dlopen()s it itself): nothing is counted until
# `ctl attach`, GOT hooks then redirect the allocation functions, and
# `ctl detach` restores them and writes a last dump.
. "$(dirname "$0")/../lib.sh"
plan 18

coproc TGT { exec "$FIX/ctl_target"; }
TPID=$TGT_PID
at_exit "kill $TPID"
send() { echo "$1" >&"${TGT[1]}"; local l; read -r -t 10 -u "${TGT[0]}" l; [ "$l" = done ]; }

send "alloc 5 100"
ok $? "the target runs untraced"
send "dlopen $ROOT/build/libmemtap.so"
ok $? "it loads the agent with dlopen(RTLD_LOCAL)"
wait_for "test -S /tmp/memtap-$(id -u)/$TPID.sock"
like "$($MEMTAP ctl $TPID status)" "mode: loaded, not attached" "the agent is loaded but not attached"
like "$($MEMTAP ctl $TPID status)" "state: inactive" "and counts nothing yet"
send "alloc 3 100"

out=$($MEMTAP ctl $TPID attach "prefix=$TMP/a")
ok $? "ctl attach"
like "$out" "attached: [0-9]+ call slots redirected" "reports how many GOT slots it redirected"
$MEMTAP ctl $TPID attach "prefix=$TMP/a" 2> "$TMP/err.txt"
like "$(cat "$TMP/err.txt")" "already attached" "a second attach is refused"
send "alloc 20 3000"
send "calloc 4 50"
send "free"
d=$($MEMTAP ctl $TPID dump)
$MEMTAP report --format=json "$d" > "$TMP/a.json"
is "$(fn_field "$TMP/a.json" malloc calls)" 20 "exactly the mallocs made after attach"
is "$(bucket "$TMP/a.json" malloc 2048)" 20 "in the 2048 bucket"
is "$(fn_field "$TMP/a.json" calloc calls)" 4 "calloc too"
# free: the 24 blocks allocated after attach and the 8 from before it.
is "$(fn_field "$TMP/a.json" free calls)" 32 "frees of blocks allocated before attach are counted as calls"

last=$($MEMTAP ctl $TPID detach)
ok $? "ctl detach"
is "$(jq -r '.processes[0].reason' <($MEMTAP report --format=json "$last"))" detach "detach writes a last dump"
send "alloc 7 100"
ok $? "the target runs on after detach"
like "$($MEMTAP ctl $TPID status)" "mode: loaded, not attached" "the agent is detached"
d=$($MEMTAP ctl $TPID dump)
is "$($MEMTAP report --format=json "$d" | jq '.processes[0].functions.malloc.calls // 0')" 20 \
	"nothing is counted after detach"
out=$($MEMTAP ctl $TPID activate 2>&1)
is "$?" 1 "ctl activate on a detached agent fails"
like "$out" "detached: the agent is inert" "... saying it is detached, not 'active'"
send quit
