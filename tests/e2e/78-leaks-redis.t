#!/bin/bash
# End to end: the leak check on Debian's redis-server (jemalloc), on
# 127.0.0.1 with its own configuration in a temporary directory, traced from
# its start with `memtap run --leaks`: `memtap ctl PID leaks` while
# redis-benchmark (a bounded number of requests) runs finds nothing lost and
# the keys held still reachable; redis answers as before (the keys, PING)
# and stops cleanly, and its final profile carries the check at exit.
. "$(dirname "$0")/../lib.sh"

REQUESTS=${REDIS_REQUESTS:-30000}
[ -x "$MEMTAP" ] || skip_all "build/memtap is missing (run make)"
for t in redis-server redis-benchmark redis-cli; do
	command -v $t >/dev/null || skip_all "$t is missing (apt-get install redis-server redis-tools; scripts/deps.sh peers)"
done
command -v jq >/dev/null || skip_all "jq is missing"
plan 10

D="$TMP/redis"
mkdir -p "$D"
PORT=$(free_port)
cat > "$D/redis.conf" <<CONF
bind 127.0.0.1
port $PORT
protected-mode yes
daemonize no
save ""
appendonly no
dir $D
logfile $D/redis.log
CONF
cli() { redis-cli -h 127.0.0.1 -p "$PORT" "$@"; }

$MEMTAP run --leaks -q -o "$TMP/r" -- redis-server "$D/redis.conf" 2> "$TMP/run.err" &
RUNPID=$!
at_exit "kill $RUNPID 2>/dev/null"
wait_for "cli ping 2>/dev/null | grep -q PONG"
RPID=$(pgrep -x redis-server -P $RUNPID)
[ -n "$RPID" ]
ok $? "redis-server runs under memtap run --leaks (pid $RPID)"
for i in $(seq 200); do echo "SET key:$i $(printf 'v%.0s' $(seq 50))"; done | cli > /dev/null

redis-benchmark -h 127.0.0.1 -p "$PORT" -n "$REQUESTS" -c 8 -t set,get,lpush -q > /dev/null 2>&1 &
BPID=$!
at_exit "kill $BPID 2>/dev/null"
sleep 0.5
out=$($MEMTAP ctl $RPID leaks)
ok $? "ctl leaks while redis-benchmark runs"
diag "$(grep -E '^(definitely|still|threads|pause)' <<< "$out" | tr '\n' ';')"
like "$out" "^definitely lost: 0 bytes in 0 blocks" "nothing lost in a healthy redis"
reach=$(sed -n 's/^still reachable: \([0-9]*\) bytes.*/\1/p' <<< "$out")
[ "${reach:-0}" -gt 200000 ]
ok $? "its keys and tables are still reachable ($reach bytes)"
wait $BPID
ok $? "redis-benchmark completed against the checked server"

is "$(cli get key:200 | wc -c)" 51 "the keys set before the check are intact"
is "$(cli ping)" PONG "redis answers"
cli shutdown nosave > /dev/null 2>&1
for i in $(seq 100); do kill -0 "$RPID" 2>/dev/null || break; sleep 0.1; done
wait $RUNPID
is "$?" 0 "redis stops cleanly, and memtap run with it"
f=$(ls "$TMP"/r.$RPID.*.mtp | tail -1)
$MEMTAP report --format=json "$f" > "$TMP/f.json"
is "$(jq -r '.processes[0].leaks.at_exit' "$TMP/f.json")" true "the final profile carries the check at exit"
is "$(jq -r '.processes[0].leaks.unreachable_bytes' "$TMP/f.json")" 0 "nothing lost at exit either"
