#!/bin/bash
# End to end: Debian's redis-server, which is linked with jemalloc, on
# 127.0.0.1 with its own configuration in a temporary directory, under
# redis-benchmark (a bounded number of requests): untraced, traced from its
# start by `memtap run`, and with memtap injected into the running server
# (`memtap attach --via=inject`).  memtap takes jemalloc's fast paths there
# (ctl status); the diagnostics show the throughput traced and untraced; the
# traced runs' counts must be plausible (mallocs and frees, in-use >= 0), and
# the server stops cleanly at the end.
. "$(dirname "$0")/../lib.sh"

REQUESTS=${REDIS_REQUESTS:-50000}
[ -x "$MEMTAP" ] || skip_all "build/memtap is missing (run make)"
for t in redis-server redis-benchmark redis-cli; do
	command -v $t >/dev/null || skip_all "$t is missing (apt-get install redis-server redis-tools; scripts/deps.sh peers)"
done
command -v jq >/dev/null || skip_all "jq is missing"
REDIS=$(command -v redis-server)
ldd "$REDIS" | grep -q libjemalloc || skip_all "$REDIS is not linked with jemalloc here"
plan 16

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
# requests/s of SET and GET together
bench() {
	redis-benchmark -h 127.0.0.1 -p "$PORT" -n "$REQUESTS" -c 8 -t set,get -q 2>/dev/null | tr '\r' '\n' |
		awk -F'[: ]+' '/^SET/ {s = $2} /^GET/ {g = $2} END {printf "%d\n", s + g}'
}
# stop: SHUTDOWN NOSAVE, then wait for PID (KILL after 10 s)
stop() {
	local pid=$1 i
	cli shutdown nosave > /dev/null 2>&1
	for i in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
	kill -KILL "$pid" 2>/dev/null
	wait "$pid" 2>/dev/null
}
plausible() { # plausible JSON WHAT
	local m f u
	m=$(fn_field "$1" malloc calls) f=$(fn_field "$1" free calls) u=$(jq '.processes[0].totals.in_use_bytes' "$1")
	diag "$2: malloc $m, free $f, calloc $(fn_field "$1" calloc calls), realloc $(fn_field "$1" realloc calls), in use $u bytes"
	[ "$m" -gt "$REQUESTS" ] && [ "$f" -gt "$REQUESTS" ] && [ "$u" -ge 0 ]
}

# Untraced.
"$REDIS" "$D/redis.conf" &
SPID=$!
at_exit "kill -KILL $SPID"
wait_for "cli ping | grep -q PONG"
ok $? "redis-server answers on 127.0.0.1:$PORT"
like "$(cli info memory | tr -d '\r' | grep mem_allocator)" "mem_allocator:jemalloc" "INFO memory: mem_allocator is jemalloc"
untraced=$(bench)
stop $SPID

# memtap run, from the start.
$MEMTAP run -o "$D/p" --format json --report-file "$D/run.json" -- "$REDIS" "$D/redis.conf" &
RPID=$!
at_exit "kill -KILL $RPID"
wait_for "cli ping | grep -q PONG"
ok $? "redis-server under memtap run answers"
SPID=$(pgrep -P $RPID)
at_exit "kill -KILL $SPID"
st=$($MEMTAP ctl "$SPID" status)
like "$st" "allocator: jemalloc" "memtap sees jemalloc as the allocator"
like "$st" "fast_paths: jemalloc" "malloc and free take jemalloc's fast paths"
traced=$(bench)
[ "${traced:-0}" -gt 0 ]
ok $? "redis-benchmark ran under memtap run ($REQUESTS SET + $REQUESTS GET)"
stop $SPID
wait $RPID
is "$?" 0 "memtap run returns redis-server's exit status 0 after SHUTDOWN"
plausible "$D/run.json" "memtap run"
ok $? "memtap run: mallocs and frees counted (more than one a request), in-use >= 0"

# memtap attach --via=inject, into the running server.
"$REDIS" "$D/redis.conf" &
SPID=$!
at_exit "kill -KILL $SPID"
wait_for "cli ping | grep -q PONG"
ok $? "redis-server started again, untraced"
$MEMTAP attach --via=inject -p "$SPID" -o "$D/a" --format json --report-file "$D/attach.json" 2> "$D/attach.err" &
APID=$!
at_exit "kill -KILL $APID"
wait_for "grep -q 'counting active' $D/attach.err"
ok $? "memtap attach --via=inject: counting active"
like "$($MEMTAP ctl "$SPID" status)" "fast_paths: jemalloc" "attached: jemalloc's fast paths"
attached=$(bench)
[ "${attached:-0}" -gt 0 ]
ok $? "redis-benchmark ran while attached"
kill -INT $APID
wait $APID
is "$?" 0 "detach"
plausible "$D/attach.json" "memtap attach"
ok $? "attach: mallocs and frees counted, in-use >= 0"
like "$(cli ping)" PONG "redis-server serves on after detach"
stop $SPID
kill -0 $SPID 2>/dev/null
is "$?" 1 "redis-server stopped"

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.3f", a / b; else print "-" }'; }
diag "redis-benchmark -n $REQUESTS -c 8 -t set,get (SET + GET requests/s): untraced $untraced," \
	"memtap run $traced (ratio $(ratio "$traced" "$untraced")), attached $attached (ratio $(ratio "$attached" "$untraced"))"
