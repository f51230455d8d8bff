#!/bin/bash
# memtap attach (--via=inject, the default) and detach on running programs:
# exact counts, 20 attach/detach cycles on a program that checks itself,
# ctl while attached, Apache's apr_palloc per request, redis on jemalloc,
# and the refusals.
. "$(dirname "$0")/../lib.sh"
plan 32

# Exact counts on a live process, then detach.
coproc TGT { exec "$FIX/ctl_target"; }
TPID=$TGT_PID
at_exit "kill $TPID"
send() { echo "$1" >&"${TGT[1]}"; local l; read -r -t 10 -u "${TGT[0]}" l; [ "$l" = done ]; }
send "alloc 5 100"
$MEMTAP attach -p $TPID -o "$TMP/a" --report-file "$TMP/a.txt" 2> "$TMP/attach.err" &
APID=$!
wait_for "grep -q attached $TMP/attach.err"
like "$(cat "$TMP/attach.err")" "attached: [0-9]+ call slots redirected, counting active in [0-9]+ ms" \
	"attach says how many call slots it redirected and how long it took"
like "$($MEMTAP ctl $TPID status)" "mode: attached" "memtap ctl works while attached"
send "alloc 20 3000"
send "calloc 4 50"
$MEMTAP report --format=json "$($MEMTAP ctl $TPID dump)" > "$TMP/d.json"
is "$(fn_field "$TMP/d.json" malloc calls)" 20 "ctl dump while attached: exactly the 20 mallocs made since"
$MEMTAP attach -p $TPID -o "$TMP/b" -d 1 2> "$TMP/err.txt"
is "$?" 1 "a second attach is refused"
like "$(cat "$TMP/err.txt")" "attached already" "saying so"
kill -INT $APID
wait $APID
is "$?" 0 "Ctrl-C ends attach: it detaches"
grep -qE '^  malloc +20$' "$TMP/a.txt"
ok $? "and prints the DTrace-layout summary (malloc 20)"
send "alloc 1 10"
ok $? "the program runs on after detach"
like "$($MEMTAP ctl $TPID status)" "mode: loaded, not attached" "the agent stays loaded, detached"
# Attach again to the same process: the agent is not injected twice.
$MEMTAP attach -p $TPID -o "$TMP/c" -d 0.5 --report-file "$TMP/c.txt" 2> "$TMP/c.err" &
APID=$!
wait_for "grep -q attached $TMP/c.err"
send "alloc 7 100"
wait $APID
is "$?" 0 "attach again, -d 0.5"
grep -qE '^  malloc +7$' "$TMP/c.txt"
ok $? "the second attach counts only its own calls"
is "$(grep -c 'libmemtap' /proc/$TPID/maps | xargs test 0 -lt && grep libmemtap /proc/$TPID/maps | awk '{print $6}' | sort -u | wc -l)" 1 \
	"one copy of the agent in the process"

# 20 attach/detach cycles on a program that checks its own data.
"$FIX/checker" "$TMP/stop" > "$TMP/checker.out" &
CPID=$!
at_exit "touch $TMP/stop; kill $CPID"
wait_for "grep -q ready $TMP/checker.out"
fails=0
for i in $(seq 1 20); do
	$MEMTAP attach -p $CPID -q -o "$TMP/cy" -d 0.1 2>/dev/null || fails=$((fails + 1))
done
is "$fails" 0 "20 attach/detach cycles in a row succeed"
kill -0 $CPID
ok $? "the program is still running"
touch "$TMP/stop"
wait $CPID
is "$?" 0 "and exits 0"
like "$(cat "$TMP/checker.out")" "errors 0$" "having found no corruption in its data ($(tail -1 "$TMP/checker.out"))"
n=$(ls "$TMP"/cy.$CPID.*.mtp 2>/dev/null | wc -l)
is "$n" 20 "one profile per cycle"

# Refusals: a process that does not exist, a static program.
$MEMTAP attach -p 2147483646 -d 1 2> "$TMP/err.txt"
is "$?" 1 "a pid that does not exist"
like "$(cat "$TMP/err.txt")" "(no process|does not exist|gone)" "is refused with a clear message"
if printf '#include <unistd.h>\nint main(void) { for (;;) pause(); }\n' > "$TMP/static.c" &&
   cc -static -o "$TMP/static" "$TMP/static.c" 2>/dev/null; then
	"$TMP/static" > /dev/null 2>&1 &
	SPID=$!
	at_exit "kill $SPID"
	sleep 0.2
	$MEMTAP attach -p $SPID -d 1 2> "$TMP/err.txt"
	is "$?" 1 "a statically linked program"
	like "$(cat "$TMP/err.txt")" "static" "is refused, saying it is static"
else
	skip "no static libc"; skip "no static libc"
fi

# redis-server (jemalloc) attached while redis-benchmark runs.
if command -v redis-server >/dev/null && command -v redis-benchmark >/dev/null; then
	RPORT=$(free_port)
	mkdir -p "$TMP/redis"
	redis-server --port $RPORT --bind 127.0.0.1 --save '' --appendonly no --dir "$TMP/redis" \
		--daemonize no > "$TMP/redis/log" 2>&1 &
	RPID=$!
	at_exit "kill $RPID"
	wait_for "redis-cli -p $RPORT ping | grep -q PONG" 100
	timeout 60 redis-benchmark -p $RPORT -n 40000 -c 8 -t set,get,lpush,lpop -q > "$TMP/redis/bench" 2>&1 &
	BPID=$!
	$MEMTAP attach -p $RPID -o "$TMP/redis/p" -d 1.5 --format json --report-file "$TMP/redis/r.json" 2> "$TMP/redis/err"
	is "$?" 0 "attach to redis-server under load for 1.5 s"
	wait $BPID
	is "$?" 0 "redis-benchmark completes"
	! grep -qiE 'error|refused' "$TMP/redis/bench"
	ok $? "with no errors ($(tr '\n' ' ' < "$TMP/redis/bench" | cut -c1-120))"
	m=$(jq '[.processes[0].functions[] | .calls] | add // 0' "$TMP/redis/r.json")
	[ "$m" -gt 0 ]
	ok $? "allocation calls were counted ($m)"
	is "$(redis-cli -p $RPORT ping)" PONG "redis serves on after detach"
else
	for i in 1 2 3 4 5; do skip "redis-server is not installed"; done
fi

# Apache: apr_palloc vs malloc for three GETs, attached while it runs.
if [ ! -x $APACHE ] || ! command -v curl >/dev/null; then
	for i in 1 2 3 4 5 6; do skip "apache2 or curl is not installed"; done
	exit 0
fi
D="$TMP/httpd"
PORT=$(free_port)
apache_conf "$D" $PORT event "StartServers 1
ServerLimit 1
ThreadsPerChild 4
MinSpareThreads 1
MaxSpareThreads 4
MaxRequestWorkers 4"
mkdir -p "$D/run" && chmod 1777 "$D/run"
export MEMTAP_RUNDIR="$D/run"
apache_start "$D" $PORT
for i in 1 2 3 4 5; do curl -s --max-time 5 -o /dev/null http://127.0.0.1:$PORT/; done
child=$(pgrep -P "$(cat "$D/httpd.pid")" | head -1)
# The worker child runs as www-data: its profiles go where www-data may write.
$MEMTAP attach -p "$child" -f apr_palloc:size=arg1:pool=arg0 -o "$D/prof/w" --format json \
	--report-file "$D/w.json" 2> "$D/attach.err" &
APID=$!
wait_for "grep -q attached $D/attach.err"
like "$(cat "$D/attach.err")" "attached" "attached to Apache's worker child (event MPM, threads in epoll_wait)"
for i in 1 2 3; do curl -s --max-time 5 -o /dev/null -w '%{http_code}\n' http://127.0.0.1:$PORT/; done > "$D/codes"
kill -INT $APID
wait $APID
is "$(sort -u "$D/codes")" 200 "three GETs served while attached"
palloc=$(jq '.processes[0].functions.apr_palloc.calls // 0' "$D/w.json")
malloc=$(jq '.processes[0].functions.malloc.calls // 0' "$D/w.json")
diag "3 GETs: apr_palloc $palloc calls, malloc $malloc calls"
[ "$palloc" -ge 100 ] && [ "$palloc" -lt 2000 ]
ok $? "apr_palloc calls in the hundreds ($palloc)"
[ "$malloc" -lt $((palloc / 10)) ]
ok $? "malloc calls far fewer ($malloc)"
npools=$(jq '.processes[0].pools.apr_palloc | length' "$D/w.json")
is "$(jq '.processes[0].pools.apr_palloc | map(.calls) | add' "$D/w.json")" "$palloc" \
   "pool=arg0: the calls of the $npools pools add up to apr_palloc's"
code=$(curl -s --max-time 5 -o /dev/null -w '%{http_code}' http://127.0.0.1:$PORT/)
is "$code" 200 "Apache serves on after detach"
