#!/bin/bash
# Runtime control of a live process: memtap ctl PID activate|deactivate|dump|
# stats|reset|status, permissions, and processes without an agent.
. "$(dirname "$0")/../lib.sh"
plan 42

# start_target NAME [run options...]: ctl_target under memtap run as a
# coprocess; sets TPID (the traced process) and RUNPID (memtap run).
start_target() {
	local name=$1
	shift
	coproc TGT { exec "$@" -- "$FIX/ctl_target"; }
	RUNPID=$TGT_PID
	at_exit "kill $RUNPID"
	wait_for "pgrep -P $RUNPID" && TPID=$(pgrep -P $RUNPID)
	wait_for "test -S /tmp/memtap-$(id -u)/$TPID.sock"
}
send() { echo "$1" >&"${TGT[1]}"; local l; read -r -t 10 -u "${TGT[0]}" l; [ "$l" = done ]; }
calls_in() { $MEMTAP report --format=json "$1" | jq '.processes[0].functions.malloc.calls // 0'; }

start_target a $MEMTAP run -q --inactive -o "$TMP/c"
[ -n "$TPID" ]
ok $? "target started under memtap run --inactive (pid $TPID)"
out=$($MEMTAP ctl $TPID status)
like "$out" "state: inactive" "status: inactive at start"
like "$out" "prefix: $TMP/c" "status shows the output prefix"
send "alloc 10 1000"
d=$($MEMTAP ctl $TPID dump)
ok $? "dump while inactive"
is "$d" "$TMP/c.$TPID.0.mtp" "dump prints the new file's path (PREFIX.pid.seq.mtp)"
is "$(calls_in "$d")" 0 "nothing counted while inactive"

is "$($MEMTAP ctl $TPID activate)" "active" "activate"
send "alloc 20 3000"
d=$($MEMTAP ctl $TPID dump)
is "$d" "$TMP/c.$TPID.1.mtp" "the sequence number advances"
is "$(calls_in "$d")" 20 "exactly the 20 mallocs made while active"
$MEMTAP report --format=json "$d" > "$TMP/d.json"
is "$(bucket "$TMP/d.json" malloc 2048)" 20 "malloc(3000) x20 in the 2048 bucket"
is "$(jq -r '.processes[0].reason' "$TMP/d.json")" ctl "the dump says why it was written"
inuse=$(jq '.processes[0].totals.in_use_bytes' "$TMP/d.json")
[ "$inuse" -ge 60000 ] && [ "$inuse" -le 70000 ]
ok $? "in use ($inuse) covers the 20 x 3000 bytes kept"
like "$($MEMTAP ctl $TPID status)" "calls: 20" "status shows the totals"

is "$($MEMTAP ctl $TPID deactivate)" "inactive" "deactivate"
send "alloc 5 3000"
is "$(calls_in "$($MEMTAP ctl $TPID dump)")" 20 "nothing counted after deactivate"
is "$($MEMTAP ctl $TPID reset)" "reset" "reset"
$MEMTAP ctl $TPID activate >/dev/null
send "alloc 3 100"
is "$(calls_in "$($MEMTAP ctl $TPID dump)")" 3 "counters start again from zero after reset"

stats=$($MEMTAP ctl $TPID stats)
ok $? "stats"
like "$stats" "memtap counters:" "stats: memtap's counters"
like "$stats" "glibc \(mallinfo2\):" "stats: glibc mallinfo2"
like "$stats" "<malloc version=" "stats: glibc malloc_info XML"
like "$stats" "allocator: glibc" "stats names the allocator"

(cd "$TMP" && $MEMTAP ctl $TPID dump rel.mtp) > "$TMP/rel.out"
is "$(cat "$TMP/rel.out")" "$TMP/rel.mtp" "dump PATH: a relative path is taken from ctl's directory"
$MEMTAP ctl $TPID explode 2> "$TMP/err.txt"
is "$?" 2 "an unknown command is refused before contacting the process"
like "$(cat "$TMP/err.txt")" "unknown command 'explode'" "and named in the message"

if [ "$(id -u)" = 0 ] && command -v setpriv >/dev/null; then
	setpriv --reuid=65534 --regid=65534 --clear-groups $MEMTAP ctl $TPID status > /dev/null 2> "$TMP/err.txt"
	is "$?" 1 "another uid is refused"
	like "$(cat "$TMP/err.txt")" "permission denied" "with a message saying so"
else
	skip "needs root and setpriv to act as another uid"
	skip "needs root and setpriv to act as another uid"
fi
send "alloc 1 10"
ok $? "the target runs on after the refused request"

# exit() from a non-main thread: the exit profile is still written.
echo "exit 7" >&"${TGT[1]}"
wait $RUNPID
is "$?" 7 "memtap run returns the exit status given to exit() on another thread"
last=$(ls "$TMP"/c.$TPID.*.mtp | sort -t. -k3 -n | tail -1)
is "$(jq -r '.processes[0].reason' <($MEMTAP report --format=json "$last"))" exit "exit profile written"
[ ! -e "/tmp/memtap-$(id -u)/$TPID.sock" ]
ok $? "the control socket is removed at exit"

# A process without the agent, a bad pid, a pid that does not exist.
sleep 30 & plain=$!
at_exit "kill $plain"
$MEMTAP ctl $plain status 2> "$TMP/err.txt"
is "$?" 1 "ctl on a process without the agent fails"
like "$(cat "$TMP/err.txt")" "has no memtap agent" "and says the process has no agent"
$MEMTAP ctl abc status 2> "$TMP/err.txt"
is "$?" 2 "ctl with a non-numeric pid fails"
$MEMTAP ctl 2147483646 status 2> "$TMP/err.txt"
like "$(cat "$TMP/err.txt")" "no process with pid 2147483646" "ctl on a pid that does not exist says so"

# A process using jemalloc: stats come from mallctl.
je=$(ls /usr/lib/x86_64-linux-gnu/libjemalloc.so.2 2>/dev/null)
if [ -n "$je" ]; then
	LD_PRELOAD=$je start_target j $MEMTAP run -q -o "$TMP/j"
	send "alloc 50 100"
	stats=$($MEMTAP ctl $TPID stats)
	like "$stats" "allocator: jemalloc" "a jemalloc process is recognised"
	like "$stats" "stats.allocated +[0-9]+" "stats: jemalloc's mallctl counters"
	# (libjemalloc loads libstdc++, whose start-up malloc(72704) is counted too.)
	$MEMTAP report --format=json "$($MEMTAP ctl $TPID dump)" > "$TMP/j.json"
	is "$(bucket "$TMP/j.json" malloc 64)" 50 "jemalloc's malloc calls are counted exactly"
	send quit
else
	skip "libjemalloc2 is not installed"; skip "libjemalloc2 is not installed"; skip "libjemalloc2 is not installed"
fi

# reset with call sites: allocations count again from zero, what is in use
# stays in use (and leaves the site when freed).
start_target s $MEMTAP run -q --stacks --sample=1 -o "$TMP/s"
send "alloc 40 5000"
is "$($MEMTAP ctl $TPID reset)" "reset" "reset with --stacks"
send "alloc 10 5000"
$MEMTAP report --format=json "$($MEMTAP ctl $TPID dump)" > "$TMP/s1.json"
site5k() { jq -c "[.processes[0].sites[] | select(.inuse_bytes > 0 and .alloc_bytes % 5000 == 0 and .inuse_bytes % 5000 == 0)] | map({alloc_objects, inuse_objects}) | .[0]" "$1"; }
is "$(site5k "$TMP/s1.json")" '{"alloc_objects":10,"inuse_objects":50}' \
	"after reset: the site's 10 new allocations, and all 50 of its blocks still in use"
send "free"
$MEMTAP report --format=json "$($MEMTAP ctl $TPID dump)" > "$TMP/s2.json"
is "$(jq '[.processes[0].sites[] | .inuse_objects] | add' "$TMP/s2.json")" 0 "after free: nothing in use at any site"
is "$(jq '[.processes[0].sites[] | .alloc_objects] | add' "$TMP/s2.json")" \
   "$(jq '[.processes[0].sites[] | .alloc_objects] | add' "$TMP/s1.json")" "... and the allocation counts did not move"
send quit
