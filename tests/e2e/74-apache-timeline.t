#!/bin/bash
# End to end: Debian's Apache httpd (prefork) traced from its start with
# `memtap run --interval=0.2`, serving requests on 127.0.0.1 in bursts, then
# stopped: one series per process, each child linked to its parent (ppid and
# the parent's start), the points adding up to each final profile; then the
# SVG and the HTML report of the run (opened in chromium when installed).
. "$(dirname "$0")/../lib.sh"
[ -x "$APACHE" ] || skip_all "$APACHE is missing (apt-get install apache2)"
[ -f "$APACHE_MODULES/mod_mpm_prefork.so" ] || skip_all "mod_mpm_prefork is missing"
command -v curl >/dev/null || skip_all "curl is missing"
command -v jq >/dev/null || skip_all "jq is missing"
plan 12

export MEMTAP_RUNDIR="$TMP/run"
mkdir -p "$MEMTAP_RUNDIR"
chmod 1777 "$MEMTAP_RUNDIR"
D="$TMP/ap"
PORT=$(free_port)
apache_conf "$D" "$PORT" prefork "StartServers 3
MinSpareServers 3
MaxSpareServers 5
MaxRequestWorkers 5"
mkdir -m 0700 "$TMP/prof"
apache_start "$D" "$PORT" "$MEMTAP" run -q --interval=0.2 -o "$TMP/prof/httpd" --
ok $? "apache (prefork) answers under memtap run --interval=0.2"
# Bursts of requests for about 2 s (bounded: 8 rounds of 25).
served=0
for round in 1 2 3 4 5 6 7 8; do
	for i in $(seq 25); do
		curl -sf -o /dev/null --max-time 2 "http://127.0.0.1:$PORT/" && served=$((served + 1))
	done
	sleep 0.25
done
is "$served" 200 "200 requests served while traced"
apache_stop "$D"
wait "$APACHE_PID" 2>/dev/null
ok $? "memtap run ends with apache"
$MEMTAP report --format=json "$TMP"/prof/httpd.*.mtp > "$TMP/all.json"
final='[.processes[] | select(.reason == "exit")]'
n=$(jq "$final | length" "$TMP/all.json")
withtl=$(jq "$final | map(select(.timeline.points | length >= 3)) | length" "$TMP/all.json")
ok $(( n >= 4 && withtl == n ? 0 : 1 )) "every one of the $n processes (parent and children) has its series ($withtl)"
parent=$(jq -c "$final | map(select(.timeline.parent == null))" "$TMP/all.json")
is "$(echo "$parent" | jq length)" 1 "one series has no parent: apache's parent process"
ppid=$(echo "$parent" | jq '.[0].pid')
pstart=$(echo "$parent" | jq '.[0].start_ns')
kids=$(jq --argjson p "$ppid" --argjson s "$pstart" "$final | map(select(.timeline.parent.pid == \$p and .timeline.parent.start_ns == \$s)) | length" "$TMP/all.json")
is "$kids" $((n - 1)) "the $((n - 1)) children each name the parent (pid $ppid and its start)"
is "$(jq "$final | map(select(([.timeline.points[].alloc_bytes] | add) == .totals.allocated_bytes)) | length" "$TMP/all.json")" "$n" \
	"every series adds up to its process's final allocated bytes"
busy=$(jq "$final | map(select(.timeline.parent != null) | [.timeline.points[].alloc_calls] | add) | add" "$TMP/all.json")
ok $(( busy > 200 ? 0 : 1 )) "the children's points hold the requests' allocations ($busy calls)"
ok $(( $(jq "$final | map(.timeline.points[:-1][] | select(.rss_bytes > 1000000)) | length" "$TMP/all.json") > 0 ? 0 : 1 )) \
	"points carry the processes' RSS"

$MEMTAP report --format=svg -o "$TMP/httpd.svg" "$TMP"/prof/httpd.*.mtp
is "$(grep -c '<polyline' "$TMP/httpd.svg")" "$n" "the SVG has one line per process"
$MEMTAP report --format=html -o "$TMP/httpd.html" "$TMP"/prof/httpd.*.mtp
CHROMIUM=$(command -v chromium || command -v chromium-browser)
if [ -n "$CHROMIUM" ]; then
	st=$(timeout 120 "$CHROMIUM" --headless --no-sandbox --disable-gpu --user-data-dir="$TMP/chrome" --dump-dom \
		"file://$TMP/httpd.html" 2>/dev/null | grep -o '<div id="status"[^>]*>[^<]*')
	like "$st" "data-state=\"ok\">ok: $n processes, timeline lines $n" "the HTML report draws them in chromium"
	mkdir -p "$ROOT/$BUILDDIR/test-artifacts"
	timeout 120 "$CHROMIUM" --headless --no-sandbox --disable-gpu --user-data-dir="$TMP/chrome" --window-size=1200,1400 \
		--screenshot="$ROOT/$BUILDDIR/test-artifacts/74-apache.png" "file://$TMP/httpd.html" >/dev/null 2>&1
else
	skip "chromium is missing"
fi
is "$(ls /dev/shm/memtap-*/ "$MEMTAP_RUNDIR"/*/ 2>/dev/null | grep -c "^$ppid-")" 0 "no live file of apache's is left behind"
