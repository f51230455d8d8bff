#!/bin/bash
# End to end: nginx's pool allocator, ngx_palloc, called inside the nginx
# executable (no GOT slot names it), counted by `memtap attach -f` (an entry
# hook) in a running worker under curl load on 127.0.0.1, with nginx's own
# configuration in a temporary directory; the worker serves on after detach
# with its code as before.
. "$(dirname "$0")/../lib.sh"

NGINX=/usr/sbin/nginx
REQUESTS=40
[ -x "$MEMTAP" ] || skip_all "build/memtap is missing (run make)"
[ -x "$NGINX" ] || skip_all "$NGINX is missing (apt-get install nginx-light; scripts/deps.sh peers)"
command -v curl >/dev/null || skip_all "curl is missing (apt-get install curl)"
command -v jq >/dev/null || skip_all "jq is missing"
[ "$(id -u)" = 0 ] || skip_all "nginx's workers switch user: run as root"
plan 8

D="$TMP/nginx"
PORT=$(free_port)
mkdir -p "$D/logs" "$D/prof" && chmod 0777 "$D/prof"
cat > "$D/nginx.conf" <<CONF
daemon off;
master_process on;
worker_processes 1;
pid $D/nginx.pid;
error_log $D/logs/error.log;
events { worker_connections 64; }
http {
	access_log off;
	client_body_temp_path $D/body; proxy_temp_path $D/proxy; fastcgi_temp_path $D/fcgi;
	uwsgi_temp_path $D/uwsgi; scgi_temp_path $D/scgi;
	server { listen 127.0.0.1:$PORT; location / { return 200 "hello\n"; } }
}
CONF
"$NGINX" -p "$D" -c "$D/nginx.conf" > "$D/out" 2>&1 &
NPID=$!
at_exit "kill -QUIT $NPID"
wait_for "curl -sf -o /dev/null --max-time 2 http://127.0.0.1:$PORT/"
ok $? "nginx answers on 127.0.0.1:$PORT"
W=$(pgrep -P $NPID | head -1)
off=$(nm -D "$NGINX" | awk '$3 == "ngx_palloc" { print $1 }')
base=$(awk -v p="$NGINX" '$6 == p && $3 == "00000000" { split($1, a, "-"); print a[1]; exit }' /proc/$W/maps)
code() { python3 -c "import sys; f = open('/proc/$W/mem', 'rb'); f.seek($((16#$base + 16#$off))); print(f.read(16).hex())"; }
before=$(code)

$MEMTAP attach -p "$W" -o "$D/prof/w" --format json --report-file "$D/a.json" -f ngx_palloc:size=arg1 \
	-f ngx_pcalloc:size=arg1 2> "$D/a.err" &
APID=$!
wait_for "grep -q 'counting active' $D/a.err"
like "$($MEMTAP ctl "$W" status)" "entry_hooks: 2 patched" "attach -f ngx_palloc -f ngx_pcalloc: two entry hooks in the worker"
fails=0
for i in $(seq 1 $REQUESTS); do curl -sf -o /dev/null --max-time 5 http://127.0.0.1:$PORT/ || fails=$((fails + 1)); done
is "$fails" 0 "$REQUESTS requests served while attached"
kill -INT $APID
wait $APID
is "$?" 0 "detach"
palloc=$(fn_field "$D/a.json" ngx_palloc calls)
pcalloc=$(fn_field "$D/a.json" ngx_pcalloc calls)
diag "$REQUESTS GETs: ngx_palloc $palloc calls ($(fn_field "$D/a.json" ngx_palloc bytes) bytes), ngx_pcalloc $pcalloc, malloc $(fn_field "$D/a.json" malloc calls)"
[ "$palloc" -ge $((REQUESTS * 5)) ]
ok $? "ngx_palloc counted inside nginx: $palloc calls, at least 5 a request"
[ "$pcalloc" -ge "$REQUESTS" ]
ok $? "ngx_pcalloc too: $pcalloc calls"
is "$(code)" "$before" "ngx_palloc's first bytes are as before"
curl -sf -o /dev/null --max-time 5 http://127.0.0.1:$PORT/
ok $? "nginx serves on after detach"
