#!/bin/bash
# --glibc, measured: `bash bench/glibc.sh` (make bench runs it).
#
# --glibc adds nothing to malloc's or free's path; what it costs is its
# control thread: a lock-wait sample every 10 ms or more (one read of
# /proc/self/task/TID/syscall per thread; the period grows so that a sample
# takes at most 1 % of it), a full look every 10 samples (maps, heap_info,
# glibc's variables) and the allocator statistics once at the start.  One interleaved run (bench/compare.py) of the churn
# workload untraced, under `memtap run` and under `memtap run --glibc`, with
# 4 threads and with 64 threads (the per-thread sampling), medians of wall
# and CPU time.
#
# Knobs: GLIBC_REPS=7, GLIBC_ITERS=2000000 (per thread, 4 threads),
# GLIBC_ITERS64=150000 (per thread, 64 threads).
set -eu
cd "$(dirname "$0")/.."
ROOT=$(pwd)
OUT=$ROOT/build/bench
MEMTAP=$ROOT/build/memtap
REPS=${GLIBC_REPS:-7}
ITERS=${GLIBC_ITERS:-2000000}
ITERS64=${GLIBC_ITERS64:-150000}
PY=${PYTHON:-python3}
mkdir -p "$OUT"
[ -x "$MEMTAP" ] || { echo "glibc.sh: build/memtap is missing: run make" >&2; exit 1; }
CHURN=$OUT/churn
[ -x "$CHURN" ] || ${CC:-cc} -O2 -Wall -Wextra -o "$CHURN" bench/churn.c -lpthread
TMP=$(mktemp -d /tmp/memtap-glibc-bench.XXXXXX)
trap 'rm -rf "$TMP"' EXIT
SPEC=$TMP/spec
{
	for t in 4 64; do
		n=$ITERS
		[ $t = 64 ] && n=$ITERS64
		echo "group glibc$t churn, $t threads, $n iterations each, 4096 live blocks per thread"
		echo "cfg glibc$t untraced $REPS $CHURN $n $t"
		echo "cfg glibc$t memtap-run $REPS $MEMTAP run -q -o $TMP/p -- $CHURN $n $t"
		echo "cfg glibc$t memtap-run-glibc $REPS $MEMTAP run -q --glibc -o $TMP/g -- $CHURN $n $t"
		echo "check glibc$t checksum"
		echo "note glibc$t --glibc against memtap run: the control thread's sampling, looks and statistics"
	done
} > "$SPEC"
mkdir -p "$TMP/scratch"
$PY bench/compare.py "$SPEC" "$TMP/scratch" "$OUT/glibc.md"
# The control thread's work per call, in one process with fragmented arenas
# (bench/glibc_cost.c): the deterministic side of the figures above.
${CC:-cc} -O2 -Wall -Wextra -D_GNU_SOURCE -Iinclude bench/glibc_cost.c src/core/glibc.c -o "$OUT/glibc_cost" -lpthread
for t in 1 4 16 64; do "$OUT/glibc_cost" $t | tee -a "$OUT/glibc.md"; done
echo "glibc.sh: results in build/bench/glibc.md"
