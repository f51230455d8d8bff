#!/bin/bash
# --pools benchmark (issue 12): Apache's throughput on loopback under wrk,
# untraced vs attached by injection in counting mode vs attached by
# injection with --pools vs attached by eBPF with --pools (root only),
# interleaved rounds, medians, as ratios of the untraced figure.  Apache:
# event MPM, one child process (one attach covers every request), 16
# threads, keep-alive connections (wrk -c8) and a 2 KiB static page.
#   bash bench/pools.sh           (make bench runs it)
#   ROUNDS=5 WRK_SECONDS=5 bash bench/pools.sh
set -u
cd "$(dirname "$0")/.."
ROOT=$(pwd)
. bench/lib.sh
MEMTAP=$ROOT/build/memtap
ROUNDS=${ROUNDS:-5}
SECS=${WRK_SECONDS:-4}
OUT=$ROOT/build/bench/pools.md
mkdir -p "$ROOT/build/bench"
TMP=$(mktemp -d /tmp/memtap-bench-pools.XXXXXX)
chmod 0755 "$TMP"
cleanup() { [ -n "${APID:-}" ] && kill "$APID" 2>/dev/null; [ -n "${AT:-}" ] && kill "$AT" 2>/dev/null; rm -rf "$TMP"; }
trap cleanup EXIT
median() { sort -n | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.3f", a / b}'; }
mkdir -p "$TMP/run" "$TMP/prof" && chmod 1777 "$TMP/run" && chmod 0777 "$TMP/prof"
export MEMTAP_RUNDIR=$TMP/run

# --- the cost per call: bench/pools_ops.c, untraced and under memtap run --pools
OPS=""
if cc -O2 $(pkg-config --cflags apr-1 2>/dev/null) bench/pools_ops.c -o "$TMP/ops" \
	$(pkg-config --libs apr-1 2>/dev/null) 2>/dev/null; then
	: > "$TMP/ops.u"; : > "$TMP/ops.p"
	for r in $(seq 1 "$ROUNDS"); do
		"$TMP/ops" >> "$TMP/ops.u"
		$MEMTAP run -q --pools -o "$TMP/prof/ops" -- "$TMP/ops" >> "$TMP/ops.p"
	done
	OPS=1
fi

if ! [ -x /usr/sbin/apache2 ] || ! command -v wrk >/dev/null; then
	echo "bench/pools.sh: apache2 or wrk missing: skipped" | tee "$OUT"
	exit 0
fi
MODES="count pools"
EBPF=""
if [ "$(id -u)" = 0 ] && [ -r /sys/kernel/btf/vmlinux ]; then
	MODES="$MODES ebpf"
	EBPF=1
fi

D=$TMP/httpd
P=$(port)
apache_bench_conf "$D" "$P"
setsid /usr/sbin/apache2 -f "$D/httpd.conf" -DFOREGROUND > "$D/out" 2>&1 < /dev/null &
APID=$!
apache_bench_ready "$P"
CHILD=$(pgrep -P "$(cat "$D/httpd.pid")" | head -1)
# Each measurement: requests/s, and the child's CPU time (user + system,
# /proc/PID/stat) per request in microseconds, which the other programs on
# a shared machine disturb less than the throughput.
ticks() { awk '{print $14 + $15}' "/proc/$CHILD/stat"; }
HZ=$(getconf CLK_TCK)
rps() {
	local t0 t1
	t0=$(ticks)
	wrk -t1 -c8 -d${SECS}s "http://127.0.0.1:$P/" 2>/dev/null > "$TMP/wrk.out"
	t1=$(ticks)
	awk -v t=$((t1 - t0)) -v hz="$HZ" '/requests in/ {n=$1} /Requests\/sec/ {r=$2} END {printf "%s %.2f\n", r, t * 1e6 / hz / n}' "$TMP/wrk.out"
}
: > "$TMP/untraced"
for m in $MODES; do : > "$TMP/$m"; done
for r in $(seq 1 "$ROUNDS"); do
	rps >> "$TMP/untraced"
	for m in $MODES; do
		case $m in
		count) opt="" ;;
		pools) opt="--pools" ;;
		ebpf) opt="--via=ebpf --pools" ;;
		esac
		# shellcheck disable=SC2086
		$MEMTAP attach -p "$CHILD" -q -o "$TMP/prof/$m" $opt > "$TMP/att.out" 2> "$TMP/att.err" &
		AT=$!
		if [ $m = ebpf ]; then
			sleep 3 # the probes are in once memtap has written their events
		else
			for i in $(seq 1 100); do grep -q attached "$TMP/att.err" 2>/dev/null && break; sleep 0.05; done
		fi
		rps >> "$TMP/$m"
		kill -INT "$AT" 2>/dev/null; wait "$AT" 2>/dev/null; AT=""
	done
done
u=$(cut -d' ' -f1 "$TMP/untraced" | median)
uc=$(cut -d' ' -f2 "$TMP/untraced" | median)
{
echo "## --pools: Apache 2.4 (event MPM, 1 child x 16 threads) under wrk -t1 -c8, 2 KiB static page"
echo
echo "Command: \`bash bench/pools.sh\` (ROUNDS=$ROUNDS, ${SECS}s per measurement, configurations"
echo "interleaved in each round, medians; $(date -u +%Y-%m-%d), $(uname -r), $(nproc) CPUs)."
echo
echo "| configuration | requests/s | ratio | child CPU per request (us) | ratio |"
echo "|---|---|---|---|---|"
echo "| untraced | $u | 1.000 | $uc | 1.000 |"
for m in $MODES; do
	v=$(cut -d' ' -f1 "$TMP/$m" | median)
	vc=$(cut -d' ' -f2 "$TMP/$m" | median)
	case $m in
	count) name="attached (inject), counting" ;;
	pools) name="attached (inject), --pools" ;;
	ebpf) name="attached (eBPF), --pools" ;;
	esac
	echo "| $name | $v | $(ratio "$v" "$u") | $vc | $(ratio "$vc" "$uc") |"
done
[ -z "$EBPF" ] && echo "| attached (eBPF), --pools | not run: needs root and BTF | | | |"
echo
if [ -n "$OPS" ]; then
	echo "Per call (bench/pools_ops.c, 5M apr_palloc of 32 bytes on one pool cleared every 128,"
	echo "then 50k create + apr_palloc + destroy of a child pool; medians of $ROUNDS, interleaved):"
	echo
	echo "| | untraced | memtap run --pools | added |"
	echo "|---|---|---|---|"
	a=$(cut -d' ' -f1 "$TMP/ops.u" | median); b=$(cut -d' ' -f1 "$TMP/ops.p" | median)
	echo "| apr_palloc, ns | $a | $b | $(awk -v a="$a" -v b="$b" 'BEGIN {printf "%.1f", b - a}') |"
	a=$(cut -d' ' -f2 "$TMP/ops.u" | median); b=$(cut -d' ' -f2 "$TMP/ops.p" | median)
	echo "| create + palloc + destroy, ns | $a | $b | $(awk -v a="$a" -v b="$b" 'BEGIN {printf "%.1f", b - a}') |"
	echo
fi
echo "Runs (requests/s, CPU us per request): untraced $(tr '\n' ',' < "$TMP/untraced")"
for m in $MODES; do echo "$m $(tr '\n' ',' < "$TMP/$m")"; done
echo
} > "$OUT"
cat "$OUT"
