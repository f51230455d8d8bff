#!/bin/bash
# memtap run --prometheus: a real Prometheus server (Debian's) scrapes a
# traced fixture every second; its HTTP API finds the allocation counter
# increasing and the histogram's +Inf bucket equal to _count; promtool
# accepts the text exposition; the OpenMetrics one is what the format says.
. "$(dirname "$0")/../lib.sh"
command -v prometheus >/dev/null || skip_all "prometheus is not installed (sh scripts/deps.sh peers)"
plan 17

MP=$(free_port)
"$MEMTAP" run --prometheus=127.0.0.1:$MP -o "$TMP/p" -q -- "$FIX/fleet_target" "$TMP/stop" \
	> "$TMP/rounds" 2> "$TMP/memtap.err" &
MPID=$!
at_exit "touch $TMP/stop; kill $MPID"
wait_for "curl -sf -o /dev/null http://127.0.0.1:$MP/metrics" 300
up=$?
ok $up "memtap serves /metrics on 127.0.0.1:$MP"
[ $up = 0 ] || diag "memtap: $(cat "$TMP/memtap.err")"
# The session finds the fixture a moment after the endpoint is up.
wait_for "curl -s http://127.0.0.1:$MP/metrics | grep -q '^memtap_allocations_total{command=\"fleet_target\",function=\"malloc\"}'" 300
like "$(cat "$TMP/memtap.err")" "serving http://127.0.0.1:$MP/metrics" "and says where"

# The text format.
curl -s -D "$TMP/h.txt" -o "$TMP/m.txt" http://127.0.0.1:$MP/metrics
like "$(cat "$TMP/h.txt")" "Content-Type: text/plain; version=0.0.4; charset=utf-8" "text format 0.0.4 by default"
promtool check metrics < "$TMP/m.txt" > "$TMP/promtool.out" 2>&1
ok $? "promtool check metrics accepts it$( [ -s "$TMP/promtool.out" ] && echo ": $(head -c 300 "$TMP/promtool.out")")"
like "$(grep '^memtap_allocations_total' "$TMP/m.txt")" \
	'^memtap_allocations_total\{command="fleet_target",function="malloc"\} [1-9][0-9]*$' \
	"one malloc series for the command, no pid label"
# Buckets cumulative and increasing, +Inf == _count, for every series.
check_hist() {
	awk '
	/^memtap_allocation_size_bytes_bucket/ {
		key = $1; sub(/,?le="[^"]*"/, "", key); sub(/_bucket/, "", key)
		match($1, /le="[^"]*"/); le = substr($1, RSTART + 4, RLENGTH - 5)
		if (key in last && $2 < last[key]) bad = bad " non-cumulative " key
		if (le != "+Inf" && (key in lastle) && le + 0 <= lastle[key]) bad = bad " bounds " key
		last[key] = $2; lastle[key] = le + 0
		if (le == "+Inf") inf[key] = $2
	}
	/^memtap_allocation_size_bytes_count/ { key = $1; sub(/_count/, "", key); cnt[key] = $2; n++ }
	END {
		for (k in cnt) if (inf[k] != cnt[k]) bad = bad " +Inf!=count " k
		if (!n) bad = "no histogram"
		print bad ? bad : "consistent"
	}' "$1"
}
is "$(check_hist "$TMP/m.txt")" consistent "histogram buckets cumulative, +Inf equal to _count"
count=$(awk '/^memtap_allocation_size_bytes_count\{command="fleet_target",function="malloc"\}/ {print $2}' "$TMP/m.txt")
sum=$(awk '/^memtap_allocation_size_bytes_sum\{command="fleet_target",function="malloc"\}/ {print $2}' "$TMP/m.txt")
calls=$(awk '/^memtap_allocations_total\{command="fleet_target",function="malloc"\}/ {print $2}' "$TMP/m.txt")
bytes=$(awk '/^memtap_allocated_bytes_total\{command="fleet_target",function="malloc"\}/ {print $2}' "$TMP/m.txt")
ok $([ -n "$count" ] && [ "$count" = "$calls" ] && [ "$sum" = "$bytes" ]; echo $?) \
	"_count is the calls and _sum the bytes of the same snapshot ($count, $sum)"

# OpenMetrics, when asked as Prometheus asks.
ACCEPT='application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1'
curl -s -H "Accept: $ACCEPT" -D "$TMP/h.om" -o "$TMP/m.om" http://127.0.0.1:$MP/metrics
like "$(cat "$TMP/h.om")" "Content-Type: application/openmetrics-text; version=1.0.0; charset=utf-8" \
	"OpenMetrics 1.0 when the Accept header asks for it"
is "$(tail -n 1 "$TMP/m.om")" "# EOF" "it ends with # EOF"
like "$(grep -E '^# (TYPE|UNIT) memtap_allocated_bytes ' "$TMP/m.om" | tr '\n' '|')" \
	'^# TYPE memtap_allocated_bytes counter\|# UNIT memtap_allocated_bytes bytes\|$' \
	"counter families without _total, with their unit"
like "$(grep -E '^memtap_info' "$TMP/m.om")" '^memtap_info\{version="[0-9.]+",collector="agent"\} 1$' \
	"memtap_info (type info) with the version"

# A real Prometheus scrapes it every second.
PP=$(free_port)
mkdir -p "$TMP/prom"
cat > "$TMP/prometheus.yml" <<YML
global:
  scrape_interval: 1s
  evaluation_interval: 1s
scrape_configs:
  - job_name: memtap
    scrape_interval: 1s
    scrape_timeout: 900ms
    static_configs:
      - targets: ['127.0.0.1:$MP']
YML
prometheus --config.file="$TMP/prometheus.yml" --storage.tsdb.path="$TMP/prom/data" \
	--web.listen-address=127.0.0.1:$PP > "$TMP/prom/log" 2>&1 &
PROM=$!
at_exit "kill $PROM; wait $PROM"
q() { # q PROMQL: the first result's value, or nothing
	curl -s --max-time 5 "http://127.0.0.1:$PP/api/v1/query" --data-urlencode "query=$1" |
		jq -r '.data.result[0].value[1] // empty'
}
SER='memtap_allocations_total{command="fleet_target",function="malloc",job="memtap"}'
wait_for "[ -n \"\$(q '$SER')\" ]" 300
v1=$(q "$SER")
ok $([ -n "$v1" ]; echo $?) "Prometheus scraped the malloc counter ($v1)"
health=$(curl -s "http://127.0.0.1:$PP/api/v1/targets" | jq -r '.data.activeTargets[0] | .health + " " + .lastError')
is "$health" "up " "the target is up, no scrape error (Prometheus asks for OpenMetrics first)"
sleep 3
wait_for "[ \"\$(q '$SER')\" != '$v1' ]" 50
v2=$(q "$SER")
ok $(awk -v a="$v1" -v b="$v2" 'BEGIN { exit !(b > a) }'; echo $?) "and finds it increasing ($v1 -> $v2)"
ok $(awk -v r="$(q "rate(${SER}[5s])")" 'BEGIN { exit !(r > 0) }'; echo $?) "rate() over it is positive"
diff=$(q 'sum(memtap_allocation_size_bytes_count{command="fleet_target"}) - sum(memtap_allocation_size_bytes_bucket{command="fleet_target",le="+Inf"})')
is "$diff" 0 "in Prometheus too, the +Inf bucket equals _count"
med=$(q 'histogram_quantile(0.5, sum by (le) (memtap_allocation_size_bytes_bucket{command="fleet_target",function="malloc"}))')
ok $(awk -v m="$med" 'BEGIN { exit !(m >= 16 && m < 65536) }'; echo $?) \
	"histogram_quantile over the buckets gives a median within the fixture's sizes ($med)"
kill $PROM
wait $PROM 2>/dev/null
touch "$TMP/stop"
wait $MPID
diag "$(grep -c '' "$TMP/rounds") progress lines from the fixture"
