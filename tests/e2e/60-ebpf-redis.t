#!/bin/bash
# End to end, issue 10: Debian's redis-server (on jemalloc) on 127.0.0.1,
# under redis-benchmark, attached by the eBPF backend.  jemalloc's malloc
# and free start with instructions the kernel would single-step (about 10
# to 30 us a call: redis fell from 115k to 5k requests/s); memtap's probes
# sit on instructions it emulates, so no warning is printed and redis keeps
# a fair part of its throughput.  Both throughputs are reported.
. "$(dirname "$0")/../lib.sh"

[ "$(id -u)" = 0 ] || skip_all "the eBPF backend needs root"
[ -r /sys/kernel/btf/vmlinux ] || skip_all "no BTF (/sys/kernel/btf/vmlinux)"
command -v redis-server >/dev/null && command -v redis-benchmark >/dev/null ||
	skip_all "redis-server or redis-benchmark is missing (apt-get install redis-server redis-tools)"
redis-server --version | grep -q malloc=jemalloc || skip_all "this redis-server does not run on jemalloc"
plan 6

D="$TMP/redis"
mkdir -p "$D"
PORT=$(free_port)
printf 'port %s\nbind 127.0.0.1\nsave ""\nappendonly no\ndir %s\ndaemonize no\nprotected-mode yes\n' \
	"$PORT" "$D" > "$D/redis.conf"
redis-server "$D/redis.conf" > "$D/out" 2>&1 &
RPID=$!
MTPID=""
at_exit 'kill -KILL $MTPID; kill -TERM $RPID; wait $RPID'
wait_for "redis-cli -p $PORT ping 2>/dev/null | grep -q PONG" 100
ok $? "redis-server (jemalloc) answers on 127.0.0.1:$PORT"

# rps: requests per second of SET and GET, 20000 requests each (bounded).
rps() { redis-benchmark -p "$PORT" -n 20000 -c 10 -t set,get -q 2>/dev/null |
	awk '/requests per second/ { for (i = 1; i <= NF; i++) if ($i ~ /^[0-9.]+$/) { s += $i; n++; break } }
	     END { printf "%d\n", n ? s / n : 0 }'; }
base=$(rps)
$MEMTAP attach --via=ebpf -p "$RPID" -o "$D/p" --format=json --report-file "$D/sum.json" 2> "$D/att.err" &
MTPID=$!
wait_for "grep -q 'tracing' $D/att.err" 150
ok $? "memtap attach --via=ebpf is attached"
traced=$(rps)
kill -INT "$MTPID"
wait_for "! kill -0 $MTPID" 300
wait "$MTPID"
MTPID=""
diag "redis-benchmark SET/GET, 20000 requests each: untraced $base requests/s, attached by eBPF $traced requests/s"
grep -q "libjemalloc" "$D/att.err"
ok $? "the probes are in jemalloc ($(grep -o 'malloc and [0-9]* more from [^;]*jemalloc[^;,]*' "$D/att.err" | head -1))"
grep -qi "single-step" "$D/att.err"
ok $((! $?)) "no warning about single-stepped probes on jemalloc's hot functions"
calls=$(jq '[.processes[] | .functions.malloc.calls // 0] | add // 0' "$D/sum.json")
ok $([ "${calls:-0}" -gt 1000 ]; echo $?) "redis's mallocs are counted ($calls)"
# Single-stepped, redis kept about 0.04 of its throughput (5k of 115k).
awk -v b="$base" -v t="$traced" 'BEGIN { exit !(b > 0 && t / b >= 0.15) }'
ok $? "redis keeps at least 0.15 of its throughput attached ($traced / $base)"
