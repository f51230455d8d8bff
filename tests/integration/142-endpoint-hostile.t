#!/bin/bash
# The endpoint's refusals (non-loopback without --prometheus-allow-remote,
# a port in use, bad values, options that go together), its HTTP answers
# (400, 404, 405, 413, HEAD, keep-alive), and hostile clients: a request
# flood and a slowloris (hundreds of half-open connections sending a byte a
# second) leave the session and the target unharmed: the target's own work
# rate holds and /metrics still answers in time.
. "$(dirname "$0")/../lib.sh"
plan 29

# Refusals: said before anything starts.
P=$(free_port)
"$MEMTAP" run --prometheus=0.0.0.0:$P -o "$TMP/r" -- touch "$TMP/ran" 2> "$TMP/e1"
is "$?" 2 "a non-loopback address is refused (exit 2)"
like "$(cat "$TMP/e1")" "'0.0.0.0:$P' is not a loopback address.*--prometheus-allow-remote" \
	"saying why and what to add"
ok $([ ! -e "$TMP/ran" ]; echo $?) "and the command did not run"
"$MEMTAP" run --prometheus=0.0.0.0:$P --prometheus-allow-remote -o "$TMP/r" -q -- true 2> "$TMP/e2"
is "$?" 0 "with --prometheus-allow-remote it is served"
"$MEMTAP" attach -p $$ --prometheus=[::]:$P -d 1 2> "$TMP/e3"
is "$?" 2 "attach refuses a non-loopback address too, before attaching"
"$MEMTAP" run --prometheus=127.0.0.1:x9 -- true 2> "$TMP/e4"
like "$(cat "$TMP/e4")" "expected ADDR:PORT" "a bad port: expected ADDR:PORT"
"$MEMTAP" run --pprof-dir="$TMP/pp" --stacks -- true 2> "$TMP/e5"
like "$(cat "$TMP/e5")" "--pprof-dir .*add --interval" "--pprof-dir without --interval: add --interval"
"$MEMTAP" run --prometheus-per-pid -- true 2> "$TMP/e6"
like "$(cat "$TMP/e6")" "--prometheus-per-pid goes with --prometheus" "--prometheus-per-pid alone is refused"

# The target, traced, with the endpoint.
MP=$(free_port)
"$MEMTAP" run --prometheus=127.0.0.1:$MP -o "$TMP/p" -q -- "$FIX/fleet_target" "$TMP/stop" \
	> "$TMP/rounds" 2> "$TMP/memtap.err" &
MPID=$!
at_exit "touch $TMP/stop; kill $MPID"
wait_for "curl -sf -o /dev/null http://127.0.0.1:$MP/metrics" 300
up=$?
ok $up "memtap serves on 127.0.0.1:$MP"
[ $up = 0 ] || diag "memtap: $(cat "$TMP/memtap.err")"
# The session finds the fixture a moment after the endpoint is up.
wait_for "curl -s http://127.0.0.1:$MP/metrics | grep -q '^memtap_allocations_total{command=\"fleet_target\",function=\"malloc\"}'" 300
"$MEMTAP" run --prometheus=127.0.0.1:$MP -o "$TMP/r" -- true 2> "$TMP/e7"
like "$(cat "$TMP/e7")" "cannot listen on 127.0.0.1:$MP: Address already in use" "a port in use: said so"

# Raw HTTP: what each request gets (python: exact bytes on the wire).
cat > "$TMP/raw.py" <<'PY'
import socket, sys
def ask(data, port):
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    s.sendall(data)
    out = b""
    try:
        while True:
            b = s.recv(65536)
            if not b: break
            out += b
    except socket.timeout:
        pass
    s.close()
    return out
port = int(sys.argv[1]); what = sys.argv[2]
req = {
    "post": b"POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n",
    "garbage": b"HELLO\r\n\r\n",
    "big": b"GET /metrics HTTP/1.1\r\nX-Big: " + b"a" * 9000 + b"\r\n\r\n",
    "nope": b"GET /nope HTTP/1.1\r\nConnection: close\r\n\r\n",
    "head": b"HEAD /metrics HTTP/1.1\r\nConnection: close\r\n\r\n",
    "two": b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    "http10": b"GET / HTTP/1.0\r\n\r\n",
}[what]
out = ask(req, port)
sys.stdout.write(out.decode("utf-8", "replace"))
PY
raw() { timeout 20 python3 "$TMP/raw.py" $MP "$1"; }
like "$(raw post | head -3 | tr -d '\r' | tr '\n' '|')" "^HTTP/1.1 405 Method Not Allowed\|.*" "POST: 405"
like "$(raw post | tr -d '\r')" "Allow: GET, HEAD" "with Allow: GET, HEAD"
like "$(raw garbage | head -1)" "^HTTP/1.1 400 " "a bad request line: 400"
like "$(raw big | head -1)" "^HTTP/1.1 413 " "9000 bytes of headers: 413"
like "$(raw nope | head -1)" "^HTTP/1.1 404 " "an unknown path: 404"
head_out=$(raw head | tr -d '\r')
ok $(printf '%s' "$head_out" | grep -q '^Content-Length: [1-9]' && [ -z "$(printf '%s' "$head_out" | sed '1,/^$/d')" ]; echo $?) \
	"HEAD: the length of the body, no body"
is "$(raw two | grep -c '^HTTP/1.1 200')" 2 "keep-alive: two requests on one connection, two answers"
like "$(raw http10 | tr -d '\r' | grep '^Connection:')" "^Connection: close$" "HTTP/1.0: Connection: close"

# The target's work rate: rounds per 3 s, from its own progress lines.
last_rounds() { awk '{ n = $2 } END { print n + 0 }' "$TMP/rounds"; }
rate3() { local a b; a=$(last_rounds); sleep 3; b=$(last_rounds); echo $((b - a)); }
base=$(rate3)
diag "target: $base rounds in 3 s, undisturbed"

# A flood: 3000 requests, 8 at a time.
command -v ab >/dev/null && {
	ab -q -l -n 3000 -c 8 "http://127.0.0.1:$MP/metrics" > "$TMP/ab.out" 2>&1 &
	AB=$!
	at_exit "kill $AB"
}
flood=$(rate3)
if [ -n "${AB:-}" ]; then
	wait $AB
	like "$(grep -E '^(Complete|Failed) requests' "$TMP/ab.out" | tr -s ' ' | tr '\n' '|')" \
		"^Complete requests: 3000\|Failed requests: 0\|$" "a flood of 3000 requests: every one answered"
	diag "$(grep -E 'Requests per second|Time per request' "$TMP/ab.out" | head -2 | tr -s ' ')"
else
	skip "ab (apache2-utils) is not installed"
fi
diag "target: $flood rounds in 3 s during the flood"
ok $([ "$flood" -ge $((base / 2)) ]; echo $?) "the target's work rate held during the flood ($flood vs $base)"

# A slowloris: 300 connections, each sending a byte a second (reconnecting
# when dropped), for 12 s; meanwhile /metrics is asked once a second.
cat > "$TMP/slow.py" <<'PY'
import socket, sys, time
port, n, secs = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
end = time.time() + secs
conns, dropped = [], 0
def open_one():
    try:
        s = socket.create_connection(("127.0.0.1", port), timeout=1)
        s.setblocking(False)
        s.send(b"GET /metrics HTTP/1.1\r\nX-Slow: ")
        return s
    except OSError:
        return None
for i in range(n):
    c = open_one()
    if c: conns.append(c)
while time.time() < end:
    for i, c in enumerate(conns):
        try:
            if c is None: raise OSError
            c.send(b"a")
        except OSError:
            dropped += 1
            if c: c.close()
            conns[i] = open_one()
    time.sleep(1)
print("dropped", dropped)
PY
timeout 30 python3 "$TMP/slow.py" $MP 300 12 > "$TMP/slow.out" 2>&1 &
SLOW=$!
at_exit "kill $SLOW"
sleep 1
worst=0 fails=0
a=$(last_rounds)
t0=$(date +%s.%N)
for i in $(seq 1 8); do
	t=$(curl -s -o "$TMP/m$i" -w '%{time_total}' --max-time 3 "http://127.0.0.1:$MP/metrics")
	grep -q '^memtap_allocations_total{command="fleet_target",function="malloc"}' "$TMP/m$i" || fails=$((fails + 1))
	worst=$(awk -v a="$worst" -v b="$t" 'BEGIN { print (b > a ? b : a) }')
	sleep 0.5
done
b=$(last_rounds)
slow=$(awk -v a="$a" -v b="$b" -v t0="$t0" -v t1="$(date +%s.%N)" 'BEGIN { printf "%d", (b - a) * 3 / (t1 - t0) }')
is "$fails" 0 "during the slowloris, /metrics answered 8 times out of 8"
ok $(awk -v w="$worst" 'BEGIN { exit !(w < 2) }'; echo $?) "each in under 2 s (the slowest: ${worst} s)"
diag "target: about $slow rounds per 3 s during the slowloris"
ok $([ "$slow" -ge $((base / 2)) ]; echo $?) "the target's work rate held during the slowloris ($slow vs $base)"
wait $SLOW
diag "slowloris: $(cat "$TMP/slow.out") (connections the endpoint dropped)"
like "$(cat "$TMP/slow.out")" "^dropped [1-9]" "the endpoint dropped slow connections instead of holding them"
ok $(kill -0 $MPID; echo $?) "memtap is still running"

# memtap ctl PID reset zeroes the process's counters; the series keep
# what was counted before.
malloc_now() { curl -s --max-time 5 "http://127.0.0.1:$MP/metrics" |
	awk '/^memtap_allocations_total\{command="fleet_target",function="malloc"\}/ { print $2 }'; }
TPID=$(pgrep -P $MPID -f fleet_target)
before=$(malloc_now)
"$MEMTAP" ctl $TPID reset > /dev/null
"$MEMTAP" report --format=json "$("$MEMTAP" ctl $TPID dump)" > "$TMP/after-reset.json"
after=$(malloc_now)
ok $([ "$(fn_field "$TMP/after-reset.json" malloc calls)" -lt "$before" ]; echo $?) \
	"memtap ctl reset: the process's own count starts again ($(fn_field "$TMP/after-reset.json" malloc calls) < $before)"
ok $([ -n "$after" ] && [ "$after" -ge "$before" ]; echo $?) "but the series does not go down ($before -> $after)"
touch "$TMP/stop"
wait $MPID
is "$?" 0 "the target ended normally (exit 0) and memtap with it"
"$MEMTAP" report --format=json "$(ls -v "$TMP"/p.*.mtp | tail -1)" > "$TMP/final.json"
is "$(json "$TMP/final.json" '.processes[0].reason')" exit "its final (exit) profile was written"
