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
# Then, with memtap's probes on the allocators of Debian's jemalloc, tcmalloc
# and mimalloc (LD_PRELOAD), the same per-event cost; the slowdown of an
# unrelated process (churn, untraced) while a session runs on another
# (sleep), which must be within noise; and the fixed costs of the scoped
# probes: attach and detach times against a process with 1, 16 and 64
# threads, and the cost of a thread's creation in a traced process (it
# inherits one perf event per probe).
# Needs root.  Prints markdown tables (also build/bench/ebpf.md).
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
THREADS=$OUT/threads
[ -x "$THREADS" ] && [ "$THREADS" -nt bench/threads.c ] || ${CC:-cc} -O2 -o "$THREADS" bench/threads.c -lpthread
LIBC=$(ldd "$CHURN" | awk '$1 ~ /^libc\.so/ {print $3}')
TMP=$(mktemp -d /tmp/memtap-ebpf-bench.XXXXXX)
SPID=""
trap 'rm -rf "$TMP"; [ -z "$SPID" ] || kill $SPID 2>/dev/null' EXIT
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

# --- per event, on each allocator ------------------------------------------------
LIBDIR=/usr/lib/x86_64-linux-gnu
ALLOCS=""
for a in jemalloc:libjemalloc.so.2 tcmalloc:libtcmalloc_minimal.so.4 mimalloc:libmimalloc.so.2; do
	[ -e "$LIBDIR/${a#*:}" ] && ALLOCS="$ALLOCS $a"
done
alloc_cfg() { # LIB CONFIG ITERATIONS
	case $2 in
	untraced) secs env LD_PRELOAD="$1" "$CHURN" "$3" ;;
	memtap) secs env LD_PRELOAD="$1" "$MEMTAP" run --via=ebpf -q -o "$TMP/p" -- "$CHURN" "$3" ;;
	memtap-offset0) secs env LD_PRELOAD="$1" MEMTAP_BPF_OFFSET0=1 "$MEMTAP" run --via=ebpf -q -o "$TMP/p" -- "$CHURN" "$3" ;;
	esac
}
for r in $(seq 1 "$REPS"); do
	for a in $ALLOCS; do
		lib=$LIBDIR/${a#*:} n=${a%%:*}
		for c in untraced memtap memtap-offset0; do
			echo "$(alloc_cfg "$lib" $c "$ITERS")" >> "$TMP/$n.$c.full"
			echo "$(alloc_cfg "$lib" $c 1)" >> "$TMP/$n.$c.fixed"
		done
	done
done
{
	echo
	echo "Per event on other allocators (LD_PRELOAD; churn $ITERS iterations, $REPS runs each, medians; memtap's"
	echo "probe places, and every probe at offset 0):"
	echo
	echo "| allocator | untraced s | memtap s | per event µs | offset 0: per event µs |"
	echo "| --- | ---: | ---: | ---: | ---: |"
	for a in $ALLOCS; do
		n=${a%%:*}
		b=$(median < "$TMP/$n.untraced.full") b1=$(median < "$TMP/$n.untraced.fixed")
		row="| $n | $b"
		for c in memtap memtap-offset0; do
			full=$(median < "$TMP/$n.$c.full") fixed=$(median < "$TMP/$n.$c.fixed")
			per=$(awk -v f="$full" -v x="$fixed" -v b="$b" -v b1="$b1" -v n="$MF" \
				'BEGIN {printf "%.2f", ((f - b) - (x - b1)) * 1e6 / n}')
			[ $c = memtap ] && row="$row | $full | $per" || row="$row | $per |"
		done
		echo "$row"
	done
} | tee -a "$OUT/ebpf.md"

# --- an unrelated process while a session runs --------------------------------------
sleep 100000 &
SPID=$!
: > "$TMP/alone"
: > "$TMP/beside"
for r in $(seq 1 "$REPS"); do
	echo "$(secs "$CHURN" "$ITERS")" >> "$TMP/alone"
	"$MEMTAP" attach --via=ebpf -p $SPID -q -o "$TMP/s" 2> "$TMP/s.err" &
	mp=$!
	while ! grep -q tracing "$TMP/s.err" 2>/dev/null; do sleep 0.05; done
	echo "$(secs "$CHURN" "$ITERS")" >> "$TMP/beside"
	kill -INT $mp
	wait $mp || true
done
alone=$(median < "$TMP/alone")
beside=$(median < "$TMP/beside")
{
	echo
	echo "An unrelated process (churn $ITERS, untraced) while \`memtap attach --via=ebpf\` (following children)"
	echo "runs on another (sleep), $REPS interleaved runs, medians: alone $alone s, beside the session $beside s,"
	echo "ratio $(awk -v a="$alone" -v b="$beside" 'BEGIN {printf "%.2f", b / a}')."
} | tee -a "$OUT/ebpf.md"

# --- fixed costs of the scoped probes ------------------------------------------------
# attach: from the start of memtap to its "tracing" line; detach: from SIGINT
# to its exit (the kernel serializes one grace period per probe).
now() { date +%s%N; }
: > "$TMP/fixed.md"
for t in 1 16 64; do
	"$THREADS" idle $((t - 1)) &
	tp=$!
	sleep 0.2
	for r in $(seq 1 "$REPS"); do
		s=$(now)
		"$MEMTAP" attach --via=ebpf -p $tp -q -o "$TMP/f" 2> "$TMP/f.err" &
		mp=$!
		while ! grep -q tracing "$TMP/f.err" 2>/dev/null; do sleep 0.01; done
		a=$(now)
		events=$(ls /proc/$mp/fd | wc -l)
		kill -INT $mp
		wait $mp || true
		d=$(now)
		echo "$(( (a - s) / 1000000 )) $(( (d - a) / 1000000 )) $events" >> "$TMP/fx.$t"
	done
	kill $tp
	wait $tp 2>/dev/null || true
	echo "| $t | $(cut -d' ' -f1 "$TMP/fx.$t" | median) | $(cut -d' ' -f2 "$TMP/fx.$t" | median) | $(cut -d' ' -f3 "$TMP/fx.$t" | median) |" >> "$TMP/fixed.md"
done
# a thread's creation and exit in a traced process: N threads, made and
# joined one after the other, traced minus untraced, less one traced thread
NT=${EBPF_THREADS:-5000}
for r in $(seq 1 "$REPS"); do
	echo "$(secs "$THREADS" $NT)" >> "$TMP/th.un"
	echo "$(secs "$MEMTAP" run --via=ebpf -q -o "$TMP/t" -- "$THREADS" $NT)" >> "$TMP/th.tr"
	echo "$(secs "$MEMTAP" run --via=ebpf -q -o "$TMP/t" -- "$THREADS" 1)" >> "$TMP/th.tr1"
done
un=$(median < "$TMP/th.un") tr=$(median < "$TMP/th.tr") tr1=$(median < "$TMP/th.tr1")
{
	echo
	echo "Fixed costs ($REPS runs each, medians): attach and detach of \`memtap attach --via=ebpf\` on a process"
	echo "with T threads (open files: memtap's, mostly one perf event per probe and thread):"
	echo
	echo "| threads | attach ms | detach ms | open files |"
	echo "| ---: | ---: | ---: | ---: |"
	cat "$TMP/fixed.md"
	echo
	echo "A thread made and joined in a traced process ($NT of them, \`memtap run --via=ebpf\`): untraced $un s,"
	echo "traced $tr s (one thread: $tr1 s): $(awk -v u="$un" -v t="$tr" -v t1="$tr1" -v n=$NT \
		'BEGIN {printf "%.0f", (t - t1 - u) * 1e6 / n}') µs more per thread."
} | tee -a "$OUT/ebpf.md"
