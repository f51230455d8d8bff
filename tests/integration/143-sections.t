#!/bin/bash
# /metrics with the profile's other sections on: --glibc (glibc's arenas,
# heaps, program break, mmap threshold), the allocator's own statistics
# (memtap_allocator_stat, e.g. mallinfo2), and --pools on Apache (live APR
# pools and their bytes); absent when their sections are off; promtool
# accepts each exposition.
. "$(dirname "$0")/../lib.sh"
plan 10

val() { awk -v k="$2" 'index($0, k) == 1 { print $NF; exit }' "$1"; }

MP=$(free_port)
"$MEMTAP" run --glibc --prometheus=127.0.0.1:$MP -o "$TMP/g" -q -- "$FIX/fleet_target" "$TMP/stop" \
	> /dev/null 2> "$TMP/memtap.err" &
MPID=$!
at_exit "touch $TMP/stop; kill $MPID"
wait_for "curl -s http://127.0.0.1:$MP/metrics | grep -q '^memtap_glibc_arenas{command=\"fleet_target\"}'" 300
ok $? "--glibc: memtap_glibc_arenas for the command"
# The fixture's kept blocks top out at 16 MB after a second or so.  The
# allocator's statistics are as fresh as the agent's last look (at start,
# ctl stats or dump, exit: docs/GLIBC.md), and a scrape never asks for
# fresh ones: ask with ctl, as an operator would, until they show it.
uord_now() { "$MEMTAP" ctl "$(pgrep -n -P $MPID)" stats > /dev/null 2>&1
	curl -s "http://127.0.0.1:$MP/metrics" > "$TMP/g.txt"
	[ "$(val "$TMP/g.txt" 'memtap_allocator_stat{command="fleet_target",allocator="glibc",key="mallinfo2.uordblks"}')" -gt 10000000 ]; }
wait_for uord_now 100
promtool check metrics < "$TMP/g.txt" > "$TMP/promtool.out" 2>&1
ok $? "promtool accepts it$( [ -s "$TMP/promtool.out" ] && echo ": $(head -c 300 "$TMP/promtool.out")")"
ok $([ "$(val "$TMP/g.txt" 'memtap_glibc_arenas{command="fleet_target"}')" -ge 1 ] &&
	[ "$(val "$TMP/g.txt" 'memtap_glibc_sbrk_bytes{command="fleet_target"}')" -gt 1000000 ]; echo $?) \
	"at least one arena, and a program break past the fixture's kept megabytes"
uord=$(val "$TMP/g.txt" 'memtap_allocator_stat{command="fleet_target",allocator="glibc",key="mallinfo2.uordblks"}')
inuse=$(val "$TMP/g.txt" 'memtap_in_use_bytes{command="fleet_target"}')
ok $(awk -v u="$uord" -v i="$inuse" 'BEGIN { exit !(u > 0 && i > 0 && u >= i * 0.5 && u <= i * 2 + 4000000) }'; echo $?) \
	"glibc's own mallinfo2.uordblks ($uord) agrees with memtap's in-use bytes ($inuse) within 2x"
like "$(grep '^# TYPE memtap_glibc_sbrk_bytes' "$TMP/g.txt")" "gauge" "as gauges"
touch "$TMP/stop"
wait $MPID

# Without the sections: no such families.
MP=$(free_port)
rm -f "$TMP/stop"
"$MEMTAP" run --prometheus=127.0.0.1:$MP -o "$TMP/n" -q -- "$FIX/fleet_target" "$TMP/stop" > /dev/null 2>&1 &
M2=$!
at_exit "touch $TMP/stop; kill $M2"
wait_for "curl -s http://127.0.0.1:$MP/metrics | grep -q '^memtap_allocations_total{command=\"fleet_target\"'" 300
is "$(curl -s "http://127.0.0.1:$MP/metrics" | grep -c '^memtap_\(glibc\|apr\)_')" 0 "without --glibc or --pools, no such gauges"
touch "$TMP/stop"
wait $M2

# --pools on Apache (event MPM).
[ -x "$APACHE" ] && [ -f "$APACHE_MODULES/mod_mpm_event.so" ] || {
	for i in 1 2 3 4; do skip "apache2 with mod_mpm_event is missing"; done
	exit 0
}
PORT=$(free_port)
MP=$(free_port)
apache_conf "$TMP/a" "$PORT" event "StartServers 1
ServerLimit 1
ThreadsPerChild 4
MinSpareThreads 1
MaxSpareThreads 4
MaxRequestWorkers 4"
apache_start "$TMP/a" "$PORT" "$MEMTAP" run --pools --prometheus=127.0.0.1:$MP -o "$TMP/a/prof/p" -q --
ok $? "Apache answers under memtap run --pools --prometheus"
for i in $(seq 1 20); do curl -s -o /dev/null --max-time 5 "http://127.0.0.1:$PORT/"; done
wait_for "curl -s http://127.0.0.1:$MP/metrics | grep -q '^memtap_apr_pools{command=\"apache2\"}'" 100
curl -s "http://127.0.0.1:$MP/metrics" > "$TMP/a.txt"
ok $([ "$(val "$TMP/a.txt" 'memtap_apr_pools{command="apache2"}')" -ge 2 ]; echo $?) \
	"memtap_apr_pools: Apache's live pools ($(val "$TMP/a.txt" 'memtap_apr_pools{command="apache2"}'))"
ok $([ "$(val "$TMP/a.txt" 'memtap_apr_pool_bytes{command="apache2"}')" -gt 0 ]; echo $?) \
	"memtap_apr_pool_bytes: the bytes they hold ($(val "$TMP/a.txt" 'memtap_apr_pool_bytes{command="apache2"}'))"
promtool check metrics < "$TMP/a.txt" > "$TMP/promtool2.out" 2>&1
ok $? "promtool accepts it$( [ -s "$TMP/promtool2.out" ] && echo ": $(head -c 300 "$TMP/promtool2.out")")"
apache_stop "$TMP/a"
wait $APACHE_PID
