#!/bin/bash
# Per-event cost of the eBPF backend against bpftrace, same probes, same run
# conditions: `memtap run --via=ebpf` (every malloc-family probe; free probed
# past its first instruction) vs a bpftrace script counting malloc (with a
# hist of the size) and free, both on bench/churn (one free + one malloc per
# iteration).  Also memtap with every probe at offset 0 (MEMTAP_BPF_OFFSET0),
# which is bpftrace's placement, to show what the offset choice is worth,
# and memtap with --stacks (a frame-pointer walk and a site update per
# malloc; churn keeps no frame pointers, so the walks are short).
#
# Cost per event = ((traced - untraced) - (traced - untraced for one
# iteration: the tool's fixed cost of loading, attaching, detaching)) divided
# by the malloc + free calls.  Configurations are interleaved, REPS runs each; medians.
# Needs root.  Prints a markdown table (also build/bench/ebpf.md).
#   EBPF_ITERS=200000 EBPF_REPS=3 sh bench/ebpf.sh
set -eu
cd "$(dirname "$0")/.."
ROOT=$(pwd)
OUT=$ROOT/build/bench
MEMTAP=$ROOT/build/memtap
ITERS=${EBPF_ITERS:-200000}
REPS=${EBPF_REPS:-3}
[ "$(id -u)" = 0 ] || { echo "bench/ebpf.sh: needs root (uprobes)" >&2; exit 1; }
command -v bpftrace >/dev/null || { echo "bench/ebpf.sh: bpftrace is not installed" >&2; exit 1; }
[ -x "$MEMTAP" ] || { echo "bench/ebpf.sh: run make first" >&2; exit 1; }
mkdir -p "$OUT"
CHURN=$OUT/churn
[ -x "$CHURN" ] || ${CC:-cc} -O2 -o "$CHURN" bench/churn.c -lpthread
LIBC=$(ldd "$CHURN" | awk '$1 ~ /^libc\.so/ {print $3}')
TMP=$(mktemp -d /tmp/memtap-ebpf-bench.XXXXXX)
trap 'rm -rf "$TMP"' EXIT
ulimit -l unlimited 2>/dev/null || true
BT="uprobe:$LIBC:malloc /pid == cpid/ { @m = count(); @h = hist(arg0); } uprobe:$LIBC:free /pid == cpid/ { @f = count(); }"

# secs CMD...: wall-clock seconds of one run.
secs() {
	local s e
	s=$(date +%s%N)
	"$@" >/dev/null 2>&1
	e=$(date +%s%N)
	echo "$(( (e - s) / 1000 ))" | awk '{printf "%.4f", $1 / 1e6}'
}
run_cfg() { # CONFIG ITERATIONS
	case $1 in
	untraced) secs "$CHURN" "$2" ;;
	memtap) secs "$MEMTAP" run --via=ebpf -q -o "$TMP/p" -- "$CHURN" "$2" ;;
	memtap-stacks) secs "$MEMTAP" run --via=ebpf --stacks -q -o "$TMP/p" -- "$CHURN" "$2" ;;
	memtap-offset0) secs env MEMTAP_BPF_OFFSET0=1 "$MEMTAP" run --via=ebpf -q -o "$TMP/p" -- "$CHURN" "$2" ;;
	bpftrace) secs bpftrace -e "$BT" -c "$CHURN $2" ;;
	esac
}
median() { sort -n | awk '{v[NR] = $1} END {print v[int((NR + 1) / 2)]}'; }

# Events in one traced run: malloc + free (+ the few calloc/realloc).
rm -f "$TMP"/p.*
"$MEMTAP" run --via=ebpf -q -o "$TMP/p" --format=json -- "$CHURN" "$ITERS" >/dev/null
EVENTS=$("$MEMTAP" report --format=json "$TMP"/p.*.mtp | jq '[.processes[0].functions[] | .calls] | add')
MF=$("$MEMTAP" report --format=json "$TMP"/p.*.mtp | jq '.processes[0].functions.malloc.calls + .processes[0].functions.free.calls')

CONFIGS="untraced memtap memtap-stacks memtap-offset0 bpftrace"
for r in $(seq 1 "$REPS"); do
	for c in $CONFIGS; do
		echo "$(run_cfg "$c" "$ITERS")" >> "$TMP/$c.full"
		echo "$(run_cfg "$c" 1)" >> "$TMP/$c.fixed"
	done
done
base=$(median < "$TMP/untraced.full")
base1=$(median < "$TMP/untraced.fixed")
{
	echo "churn $ITERS iterations: $EVENTS probe hits ($MF malloc + free), $REPS runs each, medians;"
	echo "kernel $(uname -r), $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')"
	echo
	echo "| configuration | wall s | fixed cost s | per event µs |"
	echo "| --- | ---: | ---: | ---: |"
	for c in $CONFIGS; do
		full=$(median < "$TMP/$c.full")
		fixed=$(median < "$TMP/$c.fixed")
		if [ "$c" = untraced ]; then
			echo "| $c | $full | - | - |"
		else
			per=$(awk -v f="$full" -v x="$fixed" -v b="$base" -v b1="$base1" -v n="$MF" \
				'BEGIN {printf "%.2f", ((f - b) - (x - b1)) * 1e6 / n}')
			echo "| $c | $full | $fixed | $per |"
		fi
	done
} | tee "$OUT/ebpf.md"
