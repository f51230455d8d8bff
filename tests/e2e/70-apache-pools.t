#!/bin/bash
# End to end: Debian's Apache (event MPM: threads create and destroy pools
# at once) with --pools while curl sends requests, traced from its start by
# `memtap run` and attached to a running child by `memtap attach` (inject):
# httpd's own tags (pconf, pchild, request, transaction) with non-zero
# bytes and calls, the request pools destroyed, and a server that answers
# before, during and after.
. "$(dirname "$0")/../lib.sh"

MODDIR=$APACHE_MODULES
[ -x "$MEMTAP" ] || skip_all "build/memtap is missing (run make)"
[ -x "$APACHE" ] || skip_all "$APACHE is missing (apt-get install apache2)"
command -v curl >/dev/null || skip_all "curl is missing (apt-get install curl)"
command -v jq >/dev/null || skip_all "jq is missing (apt-get install jq)"
command -v setsid >/dev/null || skip_all "setsid is missing (util-linux)"
for m in mpm_event authz_core dir mime; do
	[ -f "$MODDIR/mod_$m.so" ] || skip_all "$MODDIR/mod_$m.so is missing"
done
plan 16
REQUESTS=40
TUNING="StartServers 1
ServerLimit 1
ThreadsPerChild 4
MinSpareThreads 1
MaxSpareThreads 4
MaxRequestWorkers 4"

# tag_sum JSON TAG FIELD: FIELD summed over the destroyed pools of TAG and
# the live ones, over every process of the file.
tag_sum() {
	jq -r --arg t "$2" --arg f "$3" '[.processes[] | ((.pool_summary.destroyed_by_tag // [])[] | select(.tag == $t) | .[$f]),
		((.pools // [])[] | select(.tag == $t and .destroyed_ns == null) | .[$f])] | add // 0' "$1"
}
requests() { # requests PORT N: N GETs, each on a connection of its own; the count that succeeded
	local i n=0
	for i in $(seq "$2"); do curl -sf -o /dev/null --max-time 5 "http://127.0.0.1:$1/" && n=$((n + 1)); done
	echo $n
}

# 1. memtap run --pools
PORT=$(free_port)
D=$TMP/run
apache_conf "$D" $PORT event "$TUNING"
apache_start "$D" $PORT $MEMTAP run -q --pools -o "$D/prof/httpd" --
ok $? "apache (event MPM) answers under memtap run --pools"
is "$(requests $PORT $REQUESTS)" $REQUESTS "$REQUESTS requests served"
apache_stop "$D"
wait_for "! kill -0 $APACHE_PID" 100
$MEMTAP report --format=json "$D"/prof/httpd.*.mtp > "$D/all.json"
ok $? "its profiles read ($(ls "$D"/prof/httpd.*.mtp | wc -l) processes)"
for t in pconf pchild request; do
	b=$(tag_sum "$D/all.json" $t bytes)
	[ "$b" -gt 0 ] 2>/dev/null
	ok $? "run: pools tagged '$t' have bytes ($b)"
done
r=$(tag_sum "$D/all.json" request pools)
[ "$r" -ge $REQUESTS ] 2>/dev/null
ok $? "run: at least one request pool per request, destroyed ($r for $REQUESTS)"
c=$(tag_sum "$D/all.json" request calls)
[ "$c" -ge $((REQUESTS * 20)) ] 2>/dev/null
ok $? "run: tens of allocations per request pool ($c calls)"
$MEMTAP report --pools "$D"/prof/httpd.*.mtp > "$D/pools.txt"
like "$(cat "$D/pools.txt")" "request +[0-9]+ +0 +[0-9]+ +[1-9][0-9]*" "report --pools lists the request tag"

# 2. memtap attach --pools -p CHILD (inject), requests while attached
PORT=$(free_port)
D=$TMP/att
apache_conf "$D" $PORT event "$TUNING"
apache_start "$D" $PORT
ok $? "apache (event MPM) answers, untraced"
wait_for "pgrep -P \$(cat $D/httpd.pid)"
CHILD=$(pgrep -P "$(cat "$D/httpd.pid")" | head -1)
$MEMTAP attach -p "$CHILD" --pools -d 6 -q -o "$D/prof/att" 2> "$D/attach.err" &
ATT=$!
at_exit "kill $ATT"
wait_for "grep -q attached $D/attach.err" 100
is "$(requests $PORT $REQUESTS)" $REQUESTS "$REQUESTS requests served while attached"
wait $ATT
ok $? "memtap attach -p $CHILD --pools -d 6 ends cleanly"
$MEMTAP report --format=json "$D"/prof/att.*.mtp > "$D/att.json"
b=$(tag_sum "$D/att.json" request bytes)
[ "$b" -gt 0 ] 2>/dev/null
ok $? "attach: request pools have bytes ($b)"
r=$(tag_sum "$D/att.json" request pools)
[ "$r" -ge $REQUESTS ] 2>/dev/null
ok $? "attach: a request pool per request ($r for $REQUESTS)"
is "$(requests $PORT 5)" 5 "the child serves on after the detach"
kill -0 "$CHILD"
ok $? "and is the same process ($CHILD)"
apache_stop "$D"
