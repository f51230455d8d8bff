#!/bin/bash
# Attach benchmark (issue 4): a real server's throughput on loopback,
# untraced vs with memtap attached by injection in counting mode vs with
# --stacks at the default sampling, interleaved rounds, medians; plus the
# time to attach and to detach.  Apache (event MPM, one child process so that
# one attach covers every request) under wrk, and redis-server (jemalloc)
# under redis-benchmark.
#   sh bench/attach.sh            (make bench runs it)
#   ROUNDS=5 WRK_SECONDS=5 sh bench/attach.sh
set -u
cd "$(dirname "$0")/.."
ROOT=$(pwd)
. bench/lib.sh
MEMTAP=$ROOT/build/memtap
ROUNDS=${ROUNDS:-5}
SECS=${WRK_SECONDS:-4}
OUT=$ROOT/build/bench/attach.md
TMP=$(mktemp -d /tmp/memtap-bench-attach.XXXXXX)
chmod 0755 "$TMP"
cleanup() { [ -n "${APID:-}" ] && kill "$APID" 2>/dev/null; [ -n "${RPID:-}" ] && kill "$RPID" 2>/dev/null; rm -rf "$TMP"; }
trap cleanup EXIT
median() { sort -n | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}'; }
mkdir -p "$TMP/run" "$TMP/prof" && chmod 1777 "$TMP/run" && chmod 0777 "$TMP/prof"
export MEMTAP_RUNDIR=$TMP/run

{
echo "# Attach benchmark ($(date -u +%Y-%m-%d), $(uname -r), $(nproc) CPUs)"
echo
echo "Command: \`sh bench/attach.sh\` (ROUNDS=$ROUNDS, ${SECS}s per measurement; configurations"
echo "interleaved in each round; medians)."
echo
} > "$OUT"

# --- Apache under wrk ---------------------------------------------------------
if [ -x /usr/sbin/apache2 ] && command -v wrk >/dev/null; then
	D=$TMP/httpd
	P=$(port)
	apache_bench_conf "$D" "$P"
	setsid /usr/sbin/apache2 -f "$D/httpd.conf" -DFOREGROUND > "$D/out" 2>&1 < /dev/null &
	APID=$!
	apache_bench_ready "$P"
	CHILD=$(pgrep -P "$(cat "$D/httpd.pid")" | head -1)
	rps() { wrk -t1 -c8 -d${SECS}s "http://127.0.0.1:$P/" 2>/dev/null | awk '/Requests\/sec/ {print $2}'; }
	: > "$TMP/a.untraced"; : > "$TMP/a.count"; : > "$TMP/a.stacks"; : > "$TMP/a.attach"; : > "$TMP/a.detach"
	for r in $(seq 1 "$ROUNDS"); do
		rps >> "$TMP/a.untraced"
		for mode in count stacks; do
			opt=""; [ $mode = stacks ] && opt=--stacks
			$MEMTAP attach -p "$CHILD" -q -o "$TMP/prof/a" $opt 2> "$TMP/att.err" &
			AT=$!
			for i in $(seq 1 100); do grep -q attached "$TMP/att.err" 2>/dev/null && break; sleep 0.05; done
			sed -n 's/.* in \([0-9]*\) ms.*/\1/p' "$TMP/att.err" >> "$TMP/a.attach"
			rps >> "$TMP/a.$mode"
			t0=$(date +%s%N)
			$MEMTAP detach -p "$CHILD" -q 2>/dev/null
			echo $(( ($(date +%s%N) - t0) / 1000000 )) >> "$TMP/a.detach"
			kill -TERM "$AT" 2>/dev/null; wait "$AT" 2>/dev/null
		done
	done
	u=$(median < "$TMP/a.untraced"); c=$(median < "$TMP/a.count"); s=$(median < "$TMP/a.stacks")
	{
	echo "## Apache 2.4 (event MPM, 1 child x 16 threads) under wrk -t1 -c8, 2 KiB static page"
	echo
	echo "| configuration | requests/s (median of $ROUNDS) | ratio |"
	echo "|---|---|---|"
	echo "| untraced | $u | 1.000 |"
	echo "| attached, counting | $c | $(awk -v a="$c" -v b="$u" 'BEGIN {printf "%.3f", a / b}') |"
	echo "| attached, --stacks (512 KiB sampling) | $s | $(awk -v a="$s" -v b="$u" 'BEGIN {printf "%.3f", a / b}') |"
	echo
	echo "Time to attach (injection + GOT hooks, as reported by memtap attach): median $(median < "$TMP/a.attach") ms;"
	echo "time for \`memtap detach\` (restore + last dump + summary): median $(median < "$TMP/a.detach") ms."
	echo "Runs: untraced $(tr '\n' ' ' < "$TMP/a.untraced"); counting $(tr '\n' ' ' < "$TMP/a.count"); stacks $(tr '\n' ' ' < "$TMP/a.stacks")."
	echo
	} >> "$OUT"
	kill "$APID"; APID=""
else
	echo "Apache or wrk missing: skipped." >> "$OUT"
fi

# --- redis-server (jemalloc) under redis-benchmark -----------------------------
if command -v redis-server >/dev/null && command -v redis-benchmark >/dev/null; then
	RP=$(port)
	mkdir -p "$TMP/redis"
	redis-server --port "$RP" --bind 127.0.0.1 --save '' --appendonly no --dir "$TMP/redis" > "$TMP/redis/log" 2>&1 &
	RPID=$!
	for i in $(seq 1 100); do redis-cli -p "$RP" ping 2>/dev/null | grep -q PONG && break; sleep 0.1; done
	rb() { redis-benchmark -p "$RP" -n 100000 -c 8 -t set,get -q 2>/dev/null | tr '\r' '\n' | awk -F'[: ]+' '/^SET/ {s=$2} /^GET/ {g=$2} END {print s + g}'; }
	: > "$TMP/r.untraced"; : > "$TMP/r.count"
	for r in $(seq 1 "$ROUNDS"); do
		rb >> "$TMP/r.untraced"
		$MEMTAP attach -p "$RPID" -q -o "$TMP/prof/r" 2> "$TMP/ratt.err" &
		AT=$!
		for i in $(seq 1 100); do grep -q attached "$TMP/ratt.err" 2>/dev/null && break; sleep 0.05; done
		rb >> "$TMP/r.count"
		$MEMTAP detach -p "$RPID" -q 2>/dev/null
		kill -TERM "$AT" 2>/dev/null; wait "$AT" 2>/dev/null
	done
	u=$(median < "$TMP/r.untraced"); c=$(median < "$TMP/r.count")
	{
	echo "## redis-server (jemalloc) under redis-benchmark -c 8 -t set,get (SET + GET requests/s)"
	echo
	echo "| configuration | requests/s (median of $ROUNDS) | ratio |"
	echo "|---|---|---|"
	echo "| untraced | $u | 1.000 |"
	echo "| attached, counting | $c | $(awk -v a="$c" -v b="$u" 'BEGIN {printf "%.3f", a / b}') |"
	echo
	} >> "$OUT"
	kill "$RPID"; RPID=""
fi
cat "$OUT"
