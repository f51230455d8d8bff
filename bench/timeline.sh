#!/bin/bash
# Timelines: what --interval=0.1 costs the traced program, and how long
# `memtap report --format=html` takes on a large profile.
#   1. churn (bench/churn.c) untraced, under memtap run, and under memtap run
#      --interval=0.1, interleaved, ROUNDS rounds: wall-time medians, ratios.
#   2. Apache 2.4 (event MPM, 1 child x 16 threads) under wrk, the child
#      attached (--via=inject) without and with --interval=0.1, interleaved
#      with untraced runs: requests/s medians.
#   3. memtap report --format=html on a profile of 10,000 call sites (20
#      frames each) and 2048 timeline points (tests/golden/timeline/
#      mkprofiles.py large): median time and the report's size.
# Knobs: ROUNDS=5, CHURN_ITERS=4000000, SECS=3 (each wrk run).
# Output: build/bench/timeline.md (and stdout).
set -u
cd "$(dirname "$0")/.."
ROOT=$(pwd)
. bench/lib.sh
MEMTAP=$ROOT/build/memtap
OUTDIR=$ROOT/build/bench
OUT=$OUTDIR/timeline.md
ROUNDS=${ROUNDS:-5}
ITERS=${CHURN_ITERS:-4000000}
SECS=${SECS:-3}
mkdir -p "$OUTDIR"
TMP=$(mktemp -d /tmp/memtap-bench-tl.XXXXXX)
APID=""
trap '[ -n "$APID" ] && kill $APID 2>/dev/null; rm -rf "$TMP"' EXIT
mkdir -p "$TMP/prof"
median() { sort -g | awk '{v[NR] = $1} END {print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2}'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.3f", a / b}'; }
wall() { local t0; t0=$(date +%s%N); "$@" > /dev/null 2>&1; echo "$(( ($(date +%s%N) - t0) / 1000 ))e-6" | awk '{printf "%.4f\n", $1}'; }
cc -O2 -o "$OUTDIR/churn" bench/churn.c -lpthread || exit 1
CHURN=$OUTDIR/churn
{
echo "## Timelines (--interval=0.1) and the HTML report"
echo
echo "Machine: $(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //')), $(uname -r);"
echo "\`bash bench/timeline.sh\` (ROUNDS=$ROUNDS), $(date -u +%Y-%m-%d)."
echo
} > "$OUT"

# --- 1. churn ----------------------------------------------------------------
: > "$TMP/c.u"; : > "$TMP/c.m"; : > "$TMP/c.i"
for r in $(seq "$ROUNDS"); do
	wall "$CHURN" "$ITERS" >> "$TMP/c.u"
	wall "$MEMTAP" run -q -o "$TMP/prof/c" -- "$CHURN" "$ITERS" >> "$TMP/c.m"
	wall "$MEMTAP" run -q --interval=0.1 -o "$TMP/prof/i" -- "$CHURN" "$ITERS" >> "$TMP/c.i"
	rm -f "$TMP"/prof/*
done
u=$(median < "$TMP/c.u"); m=$(median < "$TMP/c.m"); i=$(median < "$TMP/c.i")
{
echo "churn, 1 thread, $ITERS iterations, wall seconds (median of $ROUNDS, interleaved):"
echo
echo "| configuration | seconds | vs untraced | vs memtap run |"
echo "|---|---:|---:|---:|"
echo "| untraced | $u | 1.000 | |"
echo "| memtap run | $m | $(ratio "$m" "$u") | 1.000 |"
echo "| memtap run --interval=0.1 | $i | $(ratio "$i" "$u") | $(ratio "$i" "$m") |"
echo
echo "Runs: untraced $(tr '\n' ' ' < "$TMP/c.u"); run $(tr '\n' ' ' < "$TMP/c.m"); interval $(tr '\n' ' ' < "$TMP/c.i")."
echo
} >> "$OUT"

# --- 2. Apache under wrk -----------------------------------------------------
if [ -x /usr/sbin/apache2 ] && command -v wrk >/dev/null; then
	D=$TMP/httpd
	P=$(port)
	apache_bench_conf "$D" "$P"
	setsid /usr/sbin/apache2 -f "$D/httpd.conf" -DFOREGROUND > "$D/out" 2>&1 < /dev/null &
	APID=$!
	apache_bench_ready "$P"
	CHILD=$(pgrep -P "$(cat "$D/httpd.pid")" | head -1)
	rps() { wrk -t1 -c8 -d"${SECS}"s "http://127.0.0.1:$P/" 2>/dev/null | awk '/Requests\/sec/ {print $2}'; }
	: > "$TMP/a.u"; : > "$TMP/a.0"; : > "$TMP/a.i"; : > "$TMP/cpu.0"; : > "$TMP/cpu.i"
	for r in $(seq "$ROUNDS"); do
		rps >> "$TMP/a.u"
		for mode in 0 i; do
			opt=""; [ $mode = i ] && opt=--interval=0.1
			$MEMTAP attach -p "$CHILD" -q -o "$TMP/prof/a" $opt 2> "$TMP/att.err" &
			AT=$!
			for _ in $(seq 1 100); do grep -q attached "$TMP/att.err" 2>/dev/null && break; sleep 0.05; done
			grep -q attached "$TMP/att.err" || { echo "bench: attach failed: $(cat "$TMP/att.err")" >&2; exit 1; }
			rps >> "$TMP/a.$mode"
			# memtap's own CPU while it watched (utime + stime, ms)
			awk -v hz="$(getconf CLK_TCK)" '{sub(/.*\) /, ""); print ($12 + $13) * 1000 / hz}' "/proc/$AT/stat" >> "$TMP/cpu.$mode"
			$MEMTAP detach -p "$CHILD" -q 2>/dev/null
			kill -TERM "$AT" 2>/dev/null; wait "$AT" 2>/dev/null
			rm -f "$TMP"/prof/*
		done
	done
	u=$(median < "$TMP/a.u"); z=$(median < "$TMP/a.0"); i=$(median < "$TMP/a.i")
	{
	echo "Apache 2.4 (event MPM, 1 child x 16 threads), the child attached, wrk -t1 -c8 -d${SECS}s, 2 KiB page,"
	echo "requests/s (median of $ROUNDS, interleaved):"
	echo
	echo "| configuration | requests/s | vs untraced | vs attached |"
	echo "|---|---:|---:|---:|"
	echo "| untraced | $u | 1.000 | |"
	echo "| attached | $z | $(ratio "$z" "$u") | 1.000 |"
	echo "| attached --interval=0.1 | $i | $(ratio "$i" "$u") | $(ratio "$i" "$z") |"
	echo
	echo "Runs: untraced $(tr '\n' ' ' < "$TMP/a.u"); attached $(tr '\n' ' ' < "$TMP/a.0"); interval $(tr '\n' ' ' < "$TMP/a.i")."
	echo
	echo "The memtap attach command's own CPU over each ${SECS} s run (utime + stime, median): $(median < "$TMP/cpu.0") ms"
	echo "without --interval, $(median < "$TMP/cpu.i") ms with --interval=0.1 (a profile of the child read and written"
	echo "every 0.1 s, and a timeline point)."
	echo
	} >> "$OUT"
	kill "$APID"; APID=""
else
	echo "Apache or wrk missing: the Apache group was skipped." >> "$OUT"
fi

# --- 3. the HTML report of 10,000 sites --------------------------------------
python3 tests/golden/timeline/mkprofiles.py "$TMP" large
: > "$TMP/h"
for r in $(seq "$ROUNDS"); do wall "$MEMTAP" report --format=html -o "$TMP/large.html" "$TMP/large.mtp" >> "$TMP/h"; done
{
echo "\`memtap report --format=html\` on 10,000 call sites of 20 frames and 2048 timeline points (a"
echo "$(stat -c %s "$TMP/large.mtp")-byte profile): median $(median < "$TMP/h") s of $ROUNDS; the report is"
echo "$(stat -c %s "$TMP/large.html") bytes.  Its frames are in libraries that do not exist (the same"
echo "result everywhere), so this is the renderer's time, not symbolization's."
echo
} >> "$OUT"
cat "$OUT"
