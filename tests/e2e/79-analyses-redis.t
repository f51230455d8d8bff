#!/bin/bash
# End to end: the analyses on Debian's redis-server (jemalloc), traced from
# its start with every allocation recorded, on 127.0.0.1 with its own
# configuration, under a bounded redis-benchmark: a live dump has the run
# time so far and the peak RSS from /proc; the final profile has the
# temporary allocations of the request path (the reply list nodes made and
# freed for each request), symbolized stacks that end at main, and the
# server's peak RSS; the server stops cleanly.
. "$(dirname "$0")/../lib.sh"

REQUESTS=${REDIS_REQUESTS:-20000}
for t in redis-server redis-benchmark redis-cli; do
	command -v $t >/dev/null || skip_all "$t is missing (apt-get install redis-server redis-tools; scripts/deps.sh peers)"
done
plan 10

D="$TMP/redis"
mkdir -p "$D"
PORT=$(free_port)
printf 'bind 127.0.0.1\nport %s\nprotected-mode yes\ndaemonize no\nsave ""\nappendonly no\ndir %s\nlogfile %s/redis.log\n' \
	"$PORT" "$D" "$D" > "$D/redis.conf"
cli() { redis-cli -h 127.0.0.1 -p "$PORT" "$@"; }

$MEMTAP run --sample=1 -o "$D/p" --report-file "$D/summary.txt" -- redis-server "$D/redis.conf" &
RUN=$!
at_exit "kill -KILL $RUN; pkill -KILL -f 'redis-server 127.0.0.1:$PORT'"
wait_for "cli ping | grep -q PONG"
ok $? "redis-server answers under memtap run --sample=1"
SPID=$(pgrep -f "redis-server 127.0.0.1:$PORT" | head -1)

live=$($MEMTAP ctl "$SPID" dump)
an=$($MEMTAP report --format=json "$live" | jq -c .processes[0].analyses)
[ "$(jq .run_time_ns <<<"$an")" -gt 0 ] && [ "$(jq .peak_rss_bytes <<<"$an")" -gt 1000000 ]
ok $? "a live dump: run time so far and the peak RSS read from /proc ($an)"

redis-benchmark -h 127.0.0.1 -p "$PORT" -n "$REQUESTS" -c 4 -t set,get -q > /dev/null 2>&1
ok $? "redis-benchmark: $REQUESTS SETs and GETs"
cli shutdown nosave > /dev/null 2>&1
wait "$RUN"
ok $? "the server stops cleanly, memtap run with it"

P=$(ls "$D"/p.*.mtp | tail -1)
$MEMTAP report --format=json "$P" > "$D/p.json"
an=$(jq -c .processes[0].analyses "$D/p.json")
diag "final: $an"
t=$(jq .temporary_allocations <<<"$an")
ok $([ "$t" -gt "$REQUESTS" ]; echo $?) "temporary allocations: $t, more than one per request"
top=$(jq -c '[.processes[0].sites[] | select(.temporary_objects > 0)] | max_by(.temporary_objects)' "$D/p.json")
is "$(jq -r '[.stack[].function] | index("processCommand") != null' <<<"$top")" true \
	"the site with the most temporaries is on the request path (processCommand in its symbolized stack)"
is "$(jq -r '.stack[-1].function' <<<"$top")" main "its stack ends at main"
is "$(jq '[.processes[0].sites[].stack[].function | select(. != null) | select(startswith("__libc_start") or . == "_start")] | length' "$D/p.json")" 0 \
	"no stack shows libc's start-up frames"
[ "$(jq .peak_rss_bytes <<<"$an")" -gt 1000000 ] && [ "$(jq .allocations <<<"$an")" -gt "$REQUESTS" ]
ok $? "peak RSS and allocations in the final profile"
like "$(cat "$D/summary.txt")" "Top call sites by temporary allocations:" "the summary lists the sites by temporary allocations"
