#!/bin/bash
# Live sessions, end to end: root attaches (by injection) to a running
# apache2 whose children run as www-data, from a directory only root can
# write; the profiles land there, written by memtap as root (the children
# could not write there themselves); and a child killed by SIGKILL while
# attached still gets its final profile, recovered from its live counter
# file, with the calls it made up to the end.
. "$(dirname "$0")/../lib.sh"

[ "$(id -u)" = 0 ] || skip_all "needs root (apache's children switch to www-data)"
id www-data >/dev/null 2>&1 || skip_all "no user www-data"
[ -x "$APACHE" ] || skip_all "$APACHE is missing (apt-get install apache2)"
[ -f "$APACHE_MODULES/mod_mpm_prefork.so" ] || skip_all "mod_mpm_prefork is missing"
command -v curl >/dev/null || skip_all "curl is missing (apt-get install curl)"
plan 10

D="$TMP/httpd"
PORT=$(free_port)
apache_conf "$D" "$PORT" prefork "StartServers 1
MinSpareServers 1
MaxSpareServers 1
ServerLimit 1
MaxRequestWorkers 1" "hello from the attach-as-root e2e test"
MTPID=""
at_exit 'kill -KILL $MTPID; apache_stop "$D"'
apache_start "$D" "$PORT"
ok $? "apache (prefork, children as www-data) answers on 127.0.0.1:$PORT"
PARENT=$(cat "$D/httpd.pid" 2>/dev/null)
wait_for "pgrep -P ${PARENT:-0}" 50
CHILD=$(pgrep -P "${PARENT:-0}" | head -1)
is "$(ps -o user= -p "${CHILD:-0}" | tr -d ' ')" www-data "its child $CHILD runs as www-data"

OUT="$TMP/rootonly"
mkdir -m 0700 "$OUT"
cd "$OUT" || exit 1
$MEMTAP attach -p "$CHILD" -f apr_palloc:size=arg1 -o "$OUT/p" -q 2> "$TMP/att.err" &
MTPID=$!
wait_for "grep -q attached $TMP/att.err" 100
ok $? "root attached to the www-data child from a directory only root can write"
codes=""
for i in 1 2 3; do codes="$codes$(curl -s --max-time 5 -o /dev/null -w '%{http_code}' "http://127.0.0.1:$PORT/") "; done
is "$codes" "200 200 200 " "3 GETs served while attached"
d=$($MEMTAP ctl "$CHILD" dump)
ok $? "ctl dump while attached: $d"
is "$(stat -c %U "$d" 2>/dev/null)" root "the dump is in the root-only directory, written by memtap as root"
curl -s --max-time 5 -o /dev/null "http://127.0.0.1:$PORT/"  # one more, after the dump
sleep 0.3
kill -KILL "$CHILD"
wait "$MTPID"
ok $? "memtap attach ends when the child is killed"
MTPID=""
$MEMTAP report --format=json "$OUT"/p.*.mtp > "$TMP/all.json"
# SIGKILL leaves no trace in the file; memtap knows it when it sees the
# zombie before the parent reaps it, else says the process vanished.
like "$(jq -r '[.processes[] | select(.ended) | "\(.ended.how) \(.ended.signal // "")"] | join(",")' "$TMP/all.json")" \
	'^(signal SIGKILL|vanished )$' "the killed child's final profile says how it ended"
calls=$(jq '[.processes[] | select(.ended) | .functions.apr_palloc.calls // 0] | add // 0' "$TMP/all.json")
dump_calls=$(jq '[.processes[] | select(.reason == "ctl") | .functions.apr_palloc.calls // 0] | add // 0' "$TMP/all.json")
ok $([ "$dump_calls" -gt 0 ] && [ "$calls" -gt "$dump_calls" ]; echo $?) \
	"and its calls up to the end: $calls apr_palloc, more than the $dump_calls of the dump before the last GET"
grep -q "profile recovered" "$TMP/att.err"
ok $? "memtap says the profile was recovered"
