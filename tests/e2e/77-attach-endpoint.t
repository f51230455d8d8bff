#!/bin/bash
# End to end: the endpoint on a running server, Debian's redis-server on
# 127.0.0.1 with its own configuration, under bounded redis-benchmark runs:
# memtap attach --via=inject --stacks --prometheus (its counters increase,
# go tool pprof reads its heap profile from the URL, the server runs on
# after the detach), then --via=ebpf (root and BTF: the same counters with
# collector="ebpf", no in-use gauges, since that backend does not collect
# the totals).
. "$(dirname "$0")/../lib.sh"
for t in redis-server redis-benchmark redis-cli; do
	command -v $t >/dev/null || skip_all "$t is missing (apt-get install redis-server redis-tools; scripts/deps.sh peers)"
done
plan 14
export HOME="$TMP/home" GOCACHE="$TMP/gocache" GOFLAGS= GOPROXY=off
mkdir -p "$HOME"

D="$TMP/redis"
mkdir -p "$D"
PORT=$(free_port)
cat > "$D/redis.conf" <<CONF
bind 127.0.0.1
port $PORT
daemonize no
save ""
appendonly no
dir $D
logfile $D/redis.log
CONF
cli() { redis-cli -h 127.0.0.1 -p "$PORT" "$@"; }
redis-server "$D/redis.conf" &
RPID=$!
at_exit "redis-cli -h 127.0.0.1 -p $PORT shutdown nosave; kill $RPID"
wait_for "[ \"\$(cli ping 2>/dev/null)\" = PONG ]"
bench() { redis-benchmark -h 127.0.0.1 -p "$PORT" -n 20000 -c 4 -t set,get,lpush -q > /dev/null 2>&1; }
series() { # series PORT: redis-server's malloc counter
	curl -s --max-time 5 "http://127.0.0.1:$1/metrics" |
		awk '/^memtap_allocations_total\{command="redis-server",function="malloc"\}/ { print $2 }'
}

MP=$(free_port)
"$MEMTAP" attach -p $RPID --stacks --sample=4096 --prometheus=127.0.0.1:$MP -o "$D/p" -q 2> "$TMP/attach.err" &
APID=$!
at_exit "kill -INT $APID"
wait_for "curl -sf -o /dev/null http://127.0.0.1:$MP/metrics" 200
ok $? "memtap attach --via=inject serves /metrics for redis-server"
bench
v1=$(series $MP)
bench
v2=$(series $MP)
ok $([ -n "$v1" ] && [ "$v2" -gt "$v1" ]; echo $?) "its malloc counter increases under load ($v1 -> $v2)"
like "$(curl -s "http://127.0.0.1:$MP/metrics" | grep '^memtap_in_use_bytes')" '^memtap_in_use_bytes\{command="redis-server"\} -?[0-9]+$' \
	"with the in-use gauge"
timeout 120 go tool pprof -top "http://127.0.0.1:$MP/debug/pprof/heap" > "$TMP/heap.top" 2> "$TMP/heap.err"
ok $? "go tool pprof reads redis-server's heap profile from the URL"
like "$(cat "$TMP/heap.top")" "Type: inuse_space" "in use"
like "$(awk '/ flat%/ { getline; print; exit }' "$TMP/heap.top")" "[0-9.]+[kMG]?B" "with call sites in it"
kill -INT $APID
wait $APID
is "$?" 0 "Ctrl-C detaches"
is "$(cli ping)" PONG "redis-server runs on"
ok $(curl -s -o /dev/null --max-time 2 "http://127.0.0.1:$MP/metrics"; [ $? -ne 0 ]; echo $?) \
	"and the endpoint is gone with memtap"

# eBPF.
if [ "$(id -u)" != 0 ] || [ ! -r /sys/kernel/btf/vmlinux ]; then
	for i in 1 2 3 4 5; do skip "--via=ebpf needs root and BTF"; done
	exit 0
fi
MP=$(free_port)
"$MEMTAP" attach -p $RPID --via=ebpf --prometheus=127.0.0.1:$MP -o "$D/e" -q > "$TMP/ebpf.out" 2> "$TMP/ebpf.err" &
EPID=$!
at_exit "kill -INT $EPID"
wait_for "curl -sf -o /dev/null http://127.0.0.1:$MP/metrics" 300
ok $? "memtap attach --via=ebpf serves /metrics"
bench
v1=$(series $MP)
bench
v2=$(series $MP)
ok $([ -n "$v1" ] && [ "$v2" -gt "$v1" ]; echo $?) "its malloc counter increases under load ($v1 -> $v2)"
curl -s "http://127.0.0.1:$MP/metrics" > "$TMP/e.txt"
like "$(grep '^memtap_info' "$TMP/e.txt")" 'collector="ebpf"' "memtap_info says collector=\"ebpf\""
is "$(grep -c '^memtap_in_use_bytes' "$TMP/e.txt")" 0 "no in-use gauge (the eBPF backend does not collect totals)"
kill -INT $EPID
wait $EPID
is "$(cli ping)" PONG "redis-server runs on after the eBPF session"
