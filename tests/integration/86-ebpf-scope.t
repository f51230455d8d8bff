#!/bin/bash
# The eBPF backend harms nothing outside its session: its uprobes are in the
# traced processes only (a malloc loop next to a session runs at its
# untraced speed), children are followed from their first instruction (fork,
# exec after fork, a fork by a thread that existed before the attach: exact
# counts, as under the agent), and no uprobe event is left behind (normal
# end, SIGINT, SIGTERM; after SIGKILL the next session removes it).
. "$(dirname "$0")/../lib.sh"

[ "$(id -u)" = 0 ] || skip_all "the eBPF backend needs root"
[ -r /sys/kernel/btf/vmlinux ] || skip_all "no BTF (/sys/kernel/btf/vmlinux): the eBPF backend needs it"
command -v jq >/dev/null || skip_all "jq is missing"
command -v unshare >/dev/null || skip_all "unshare (util-linux) is missing: it shows the uprobe events"
$MEMTAP attach --help | grep -q -- --via=ebpf || skip_all "build/memtap was built without the eBPF backend"
plan 28

# The machine's uprobe events (tracefs is global; it is mounted here in a
# private mount namespace, so nothing changes for anyone else).
uprobe_events() {
	unshare -m sh -c 'mount -t tracefs tracefs /sys/kernel/tracing 2>/dev/null; cat /sys/kernel/tracing/uprobe_events'
}
# Events of the session of memtap process $1.
session_events() { uprobe_events | grep -c "^[pr]:memtap_$1/" ; }
# ms CMD...: wall-clock milliseconds of one run (a run over 30 s is killed
# and counts as 30000: the system-wide probes of old took that long).
ms() {
	local s e
	s=$(date +%s%N)
	timeout 30 "$@" > /dev/null 2>&1
	e=$(date +%s%N)
	echo $(( (e - s) / 1000000 ))
}
median() { sort -n | awk '{v[NR] = $1} END {print v[int((NR + 1) / 2)]}'; }
# start_session OUT ARGS...: memtap attach --via=ebpf ARGS in the background
# (MPID), waiting until it says it is tracing.
start_session() {
	local out=$1
	shift
	$MEMTAP attach --via=ebpf "$@" > "$out.out" 2> "$out.err" &
	MPID=$!
	at_exit "kill -9 $MPID"
	wait_for "grep -q tracing $out.err" 300
}

# --- an unrelated process pays nothing ------------------------------------------
# threads_malloc 1 N 64: N mallocs and frees in one thread, about 0.1 s
# untraced here; with a breakpoint on malloc and free (the system-wide
# uprobes of old) it took 30 times longer.
N=8000000
sleep 1000 &
spid=$!
at_exit "kill $spid"
wait_for "[ \"\$(readlink /proc/$spid/exe)\" != \"$(readlink /proc/$$/exe)\" ]" 50
: > "$TMP/without"
: > "$TMP/with"
started=0
for round in 1 2 3; do
	for i in 1 2; do ms "$FIX/threads_malloc" 1 $N 64 >> "$TMP/without"; done
	start_session "$TMP/u$round" -p $spid -q -o "$TMP/u$round" && started=$((started + 1))
	for i in 1 2; do ms "$FIX/threads_malloc" 1 $N 64 >> "$TMP/with"; done
	kill -INT $MPID
	wait $MPID
done
is "$started" 3 "three sessions on sleep ($spid), following children (the default)"
w=$(median < "$TMP/with")
wo=$(median < "$TMP/without")
diag "malloc loop next to a session: median $w ms, without: $wo ms (runs: $(tr '\n' ' ' < "$TMP/with")/ $(tr '\n' ' ' < "$TMP/without"))"
ok $([ $((w * 2)) -lt $((wo * 3)) ]; echo $?) \
   "an unrelated malloc loop runs as fast next to a session: median ${w} ms, without ${wo} ms (< 1.5x)"
$MEMTAP run --via=ebpf -q -o "$TMP/loop" -- "$FIX/threads_malloc" 1 200000 64
$MEMTAP report --format=json "$TMP"/loop.*.mtp > "$TMP/loop.json"
is "$(fn_field "$TMP/loop.json" malloc calls)" 200000 "the same loop is traced when it is the target: 200000 mallocs"

# --- children from their first instruction ----------------------------------------
# fork_threads: a thread exists before the attach; after the gate main
# mallocs 11, child A (fork) 100, child B 7 then exec 200, child C (forked
# by the second thread) 103.
"$FIX/fork_threads" "$TMP/ready" "$TMP/go" "$TMP/roles" &
fpid=$!
at_exit "kill $fpid"
wait_for "[ -e $TMP/ready ]" 100
start_session "$TMP/f" -p $fpid -o "$TMP/f" --format=json --report-file "$TMP/f.json"
ok $? "attached to fork_threads ($fpid, 2 threads)"
touch "$TMP/go"
wait $fpid
is "$?" 0 "fork_threads and its children exit 0 (every fork succeeded)"
wait $MPID
ok $? "memtap attach ends with the process, status 0"
pid_of() { awk -v r="$1" '$1 == r {print $2}' "$2"; }
# calls FILE PID FUNC
calls_of() { jq -r --argjson p "$2" --arg f "$3" '[.processes[] | select(.pid == $p) | .functions[$f].calls // 0] | add // 0' "$1"; }
A=$(pid_of A "$TMP/roles"); B=$(pid_of B "$TMP/roles"); C=$(pid_of C "$TMP/roles")
is "$(calls_of "$TMP/f.json" $fpid malloc)" 11 "the root: 11 mallocs"
is "$(calls_of "$TMP/f.json" "$A" malloc)" 100 "child A: its 100 mallocs right after fork, none lost"
is "$(calls_of "$TMP/f.json" "$A" free)" 100 "child A: 100 frees"
is "$(calls_of "$TMP/f.json" "$B" malloc)" 207 "child B: 7 mallocs after fork + 200 after exec"
is "$(calls_of "$TMP/f.json" "$C" malloc)" 103 "child C, forked by a thread that existed before the attach: 103 mallocs"
is "$(calls_of "$TMP/f.json" "$C" free)" 103 "child C: 103 frees"
is "$(jq -r --argjson p "$C" '.processes[] | select(.pid == $p) | .ppid' "$TMP/f.json")" $fpid "child C's parent is the root"
# The agent on the same program (no gate): the same counts per child (B's
# image before its exec has a profile of its own under the agent, ended by
# exec: summed over B's profiles).
$MEMTAP run -q -o "$TMP/ag" -- "$FIX/fork_threads" - - "$TMP/roles_ag"
$MEMTAP report --format=json "$TMP"/ag.*.mtp > "$TMP/ag.json"
aA=$(pid_of A "$TMP/roles_ag"); aB=$(pid_of B "$TMP/roles_ag"); aC=$(pid_of C "$TMP/roles_ag")
aroot=$(jq -r --argjson k "[$aA, $aB, $aC]" '.processes[] | select(.pid as $p | $k | index($p) | not) | .pid' "$TMP/ag.json")
for f in malloc free; do
	is "$(calls_of "$TMP/f.json" $fpid $f) $(calls_of "$TMP/f.json" "$A" $f) $(calls_of "$TMP/f.json" "$C" $f)" \
	   "$(calls_of "$TMP/ag.json" "$aroot" $f) $(calls_of "$TMP/ag.json" "$aA" $f) $(calls_of "$TMP/ag.json" "$aC" $f)" \
	   "$f calls of the root, A and C equal the agent's"
done
is "$(calls_of "$TMP/f.json" "$B" malloc)" "$(calls_of "$TMP/ag.json" "$aB" malloc)" \
   "B: its mallocs before and after its exec, as under the agent"
# run --via=ebpf: the child is stopped before its exec and covered there.
$MEMTAP run --via=ebpf -q -o "$TMP/r" -- "$FIX/fork_threads" - - "$TMP/roles_r"
ok $? "run --via=ebpf fork_threads exits 0"
$MEMTAP report --format=json "$TMP"/r.*.mtp > "$TMP/r.json"
rA=$(pid_of A "$TMP/roles_r"); rB=$(pid_of B "$TMP/roles_r"); rC=$(pid_of C "$TMP/roles_r")
is "$(jq -c '[.processes[] | .functions.malloc.calls] | sort' "$TMP/r.json")" "[11,100,103,207]" \
   "run --via=ebpf: 11, 100, 103 and 207 mallocs, one profile per process"
is "$(calls_of "$TMP/r.json" "$rA" malloc) $(calls_of "$TMP/r.json" "$rB" malloc) $(calls_of "$TMP/r.json" "$rC" malloc)" \
   "100 207 103" "... A, B and C by their pids"
# --no-follow: new threads inherit the probes, children do not.
$MEMTAP run --via=ebpf --no-follow -q -o "$TMP/n" -- "$FIX/fork_threads" - - "$TMP/roles_n"
$MEMTAP report --format=json "$TMP"/n.*.mtp > "$TMP/n.json"
is "$(jq -c '[.processes[] | .functions.malloc.calls]' "$TMP/n.json")" "[11]" "--no-follow: the root only, 11 mallocs"

# Threads that exit do not take the probes with them (an inherited copy of
# the event that carries the BPF program would detach it for everyone when
# it goes): 3 threads made and joined, then 1000 mallocs, then a child's 500.
cat > "$TMP/thexit.c" <<'EOF2'
#include <pthread.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>
static void *nothing(void *a) { return a; }
static void allocate(int n) { for (int i = 0; i < n; i++) { volatile char *p = malloc(100); p[0] = 1; free((void *)p); } }
int main(void) {
	pthread_t t;
	for (int i = 0; i < 3; i++) { pthread_create(&t, 0, nothing, 0); pthread_join(t, 0); }
	allocate(1000);
	pid_t c = fork();
	if (c == 0) { allocate(500); _exit(0); }
	waitpid(c, 0, 0);
	return 0;
}
EOF2
cc -O1 -o "$TMP/thexit" "$TMP/thexit.c" -lpthread
$MEMTAP run --via=ebpf -q -o "$TMP/x" -- "$TMP/thexit"
$MEMTAP report --format=json "$TMP"/x.*.mtp > "$TMP/x.json"
is "$(jq -c '[.processes[] | .functions.malloc.calls] | sort' "$TMP/x.json")" "[500,1000]" \
   "after 3 threads came and went: the root's 1000 mallocs and its child's 500"

# --- nothing left behind ----------------------------------------------------------
start_session "$TMP/k" -p $spid -q -o "$TMP/k"
m=$MPID
n=$(session_events $m)
ok $([ "$n" -gt 0 ]; echo $?) "while attached: the session's uprobe events exist ($n in group memtap_$m)"
kill -INT $m
wait $m
is "$?" 0 "SIGINT: memtap attach ends with status 0"
is "$(session_events $m)" 0 "... and its uprobe events are gone"
start_session "$TMP/t" -p $spid -q -o "$TMP/t"
m=$MPID
kill -TERM $m
wait $m
is "$(session_events $m)" 0 "SIGTERM: its uprobe events are gone"
# killed while attaching: the events it had made are removed all the same
$MEMTAP attach --via=ebpf -p $spid -q -o "$TMP/ki" 2> "$TMP/ki.err" &
m=$!
sleep 0.3
kill -INT $m
wait $m
is "$(session_events $m)" 0 "SIGINT while attaching: no uprobe event left"
start_session "$TMP/9" -p $spid -q -o "$TMP/9"
m=$MPID
kill -9 $m
wait $m 2>/dev/null
ok $([ "$(session_events $m)" -gt 0 ]; echo $?) "SIGKILL: the session's uprobe events are left ($(session_events $m))"
$MEMTAP run --via=ebpf -q -o "$TMP/next" -- true
is "$(session_events $m)" 0 "... and the next session removes them"
