#!/bin/bash
# Fleet benchmark (issue 13): Apache's throughput under wrk while memtap
# serves its metrics endpoint and a scraper asks for /metrics every second,
# as a ratio of the same traced Apache without the endpoint; with --stacks
# too, the scraper also fetching /debug/pprof/heap every second.  Each
# configuration is its own Apache (event MPM, one child x 16 threads) started
# under `memtap run` once; rounds interleave the configurations (order
# rotated each round); medians.  The scraper runs only while its own
# configuration is measured.
#   bash bench/fleet.sh            (make bench runs it)
#   ROUNDS=3 WRK_SECONDS=3 bash bench/fleet.sh
set -u
cd "$(dirname "$0")/.."
ROOT=$(pwd)
. bench/lib.sh
MEMTAP=$ROOT/build/memtap
ROUNDS=${ROUNDS:-5}
SECS=${WRK_SECONDS:-4}
OUT=$ROOT/build/bench/fleet.md
TMP=$(mktemp -d /tmp/memtap-bench-fleet.XXXXXX)
chmod 0755 "$TMP"
PIDS=()
cleanup() {
	for d in "$TMP"/h.*; do [ -f "$d/httpd.pid" ] && kill "$(cat "$d/httpd.pid")" 2>/dev/null; done
	for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done
	sleep 1
	rm -rf "$TMP"
}
trap cleanup EXIT
median() { sort -n | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}'; }
mkdir -p "$(dirname "$OUT")"
if [ ! -x /usr/sbin/apache2 ] || ! command -v wrk >/dev/null; then
	echo "fleet bench: apache2 or wrk missing: skipped" | tee "$OUT"
	exit 0
fi

# start NAME MEMTAP-OPTIONS...: an Apache of its own under memtap run (or
# untraced when the first option is "none"); sets PORT_<NAME>, MP_<NAME>.
start() {
	local name=$1 D=$TMP/h.$1 P MP
	shift
	P=$(port); MP=$(port)
	apache_bench_conf "$D" "$P"
	mkdir -p "$D/prof" && chmod 0777 "$D/prof"
	local opts=("$@")
	[ "${opts[0]}" = none ] && opts=()
	local wrap=()
	[ ${#opts[@]} -gt 0 ] && wrap=("$MEMTAP" run -q -o "$D/prof/p" "${opts[@]/@MP@/$MP}" --)
	setsid "${wrap[@]}" /usr/sbin/apache2 -f "$D/httpd.conf" -DFOREGROUND > "$D/out" 2>&1 < /dev/null &
	PIDS+=($!)
	apache_bench_ready "$P"
	eval "PORT_$name=$P MP_$name=$MP"
}
CONFIGS="untraced count count_ep stacks stacks_ep"
start untraced none
start count --via=preload
start count_ep --prometheus=127.0.0.1:@MP@
start stacks --stacks
start stacks_ep --stacks --prometheus=127.0.0.1:@MP@

# measure NAME: requests/s of wrk on its Apache, its scraper running.
measure() {
	local name=$1 P MP S=""
	eval "P=\$PORT_$name MP=\$MP_$name"
	case $name in
	*_ep)
		( while :; do
			curl -s -o /dev/null --max-time 2 "http://127.0.0.1:$MP/metrics"
			[ "${name#stacks}" != "$name" ] && curl -s -o /dev/null --max-time 2 "http://127.0.0.1:$MP/debug/pprof/heap"
			sleep 1
		  done ) &
		S=$!
		;;
	esac
	wrk -t1 -c8 -d${SECS}s "http://127.0.0.1:$P/" 2>/dev/null | awk '/Requests\/sec/ {print $2}' >> "$TMP/r.$name"
	[ -n "$S" ] && { kill "$S"; wait "$S" 2>/dev/null; }
}
for c in $CONFIGS; do : > "$TMP/r.$c"; done
set -- $CONFIGS
n=$#
for r in $(seq 1 "$ROUNDS"); do
	i=0
	for c in $CONFIGS; do order[$(( (i + r) % n ))]=$c; i=$((i + 1)); done
	for c in "${order[@]}"; do measure "$c"; done
done
# the cost of one scrape, measured once at the end
t_metrics=$(curl -s -o /dev/null -w '%{time_total}' "http://127.0.0.1:$MP_count_ep/metrics")
t_heap=$(curl -s -o /dev/null -w '%{time_total}' "http://127.0.0.1:$MP_stacks_ep/debug/pprof/heap")
m() { median < "$TMP/r.$1"; }
ratio() { awk -v a="$(m "$1")" -v b="$(m "$2")" 'BEGIN {printf "%.3f", a / b}'; }
{
echo "## Fleet: Apache under wrk with the endpoint scraped every second ($(date -u +%Y-%m-%d), $(uname -r), $(nproc) CPUs)"
echo
echo "Command: \`bash bench/fleet.sh\` (ROUNDS=$ROUNDS, ${SECS}s of \`wrk -t1 -c8\` per measurement, 2 KiB"
echo "static page, Apache 2.4 event MPM 1 child x 16 threads, each configuration its own Apache under"
echo "\`memtap run\`; configurations interleaved, order rotated each round; medians)."
echo
echo "| configuration | requests/s | ratio to untraced | ratio to the same without the endpoint |"
echo "|---|---|---|---|"
echo "| untraced | $(m untraced) | 1.000 | |"
echo "| memtap run, counting | $(m count) | $(ratio count untraced) | |"
echo "| counting, --prometheus, /metrics every 1 s | $(m count_ep) | $(ratio count_ep untraced) | $(ratio count_ep count) |"
echo "| memtap run --stacks | $(m stacks) | $(ratio stacks untraced) | |"
echo "| --stacks, --prometheus, /metrics + /debug/pprof/heap every 1 s | $(m stacks_ep) | $(ratio stacks_ep untraced) | $(ratio stacks_ep stacks) |"
echo
echo "One scrape after the runs: /metrics ${t_metrics} s, /debug/pprof/heap ${t_heap} s (curl's time_total)."
for c in $CONFIGS; do echo "Runs $c: $(tr '\n' ' ' < "$TMP/r.$c")"; echo; done
} | tee "$OUT"
