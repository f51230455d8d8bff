#!/bin/bash
# What `memtap top` costs the program it watches (issue 11): the churn
# workload (bench/churn.c) run by `memtap run` alone, and by `memtap top`
# on a pipe with its default 1 s refresh and with a 0.1 s refresh (a
# snapshot is a copy of the live counter file, read from outside: the
# program does nothing for it); counting mode and --stacks.  Rounds
# interleave the configurations; medians of wall time, ratios to
# `memtap run` of the same mode.
#   bash bench/top.sh             (make bench runs it)
#   TOP_ROUNDS=7 CHURN_ITERS=8000000 bash bench/top.sh
set -eu
cd "$(dirname "$0")/.."
ROOT=$(pwd)
MEMTAP=$ROOT/build/memtap
ROUNDS=${TOP_ROUNDS:-5}
ITERS=${CHURN_ITERS:-8000000}
OUT=$ROOT/build/bench/top.md
CHURN=$ROOT/build/bench/churn
mkdir -p "$ROOT/build/bench"
[ -x "$CHURN" ] || cc -O2 -o "$CHURN" bench/churn.c -lpthread
TMP=$(mktemp -d /tmp/memtap-bench-top.XXXXXX)
trap 'rm -rf "$TMP"' EXIT
median() { sort -n | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}'; }
now() { date +%s%N; }

configs="run run+top1s run+top0.1s stacks stacks+top1s stacks+top0.1s"
cmd_of() {
	local s=""
	case $1 in stacks*) s=--stacks ;; esac
	case $1 in
	*top1s) echo "$MEMTAP top -b $s -o $TMP/p --program-output=$TMP/out -- $CHURN $ITERS" ;;
	*top0.1s) echo "$MEMTAP top -b --interval=0.1 $s -o $TMP/p --program-output=$TMP/out -- $CHURN $ITERS" ;;
	*) echo "$MEMTAP run -q $s -o $TMP/p -- $CHURN $ITERS" ;;
	esac
}
for r in $(seq 1 "$ROUNDS"); do
	for c in $configs; do
		t0=$(now)
		$(cmd_of $c) > "$TMP/screens" 2>/dev/null
		t1=$(now)
		echo $(( (t1 - t0) / 1000000 )) >> "$TMP/$c.ms"
		[ "$c" = run+top0.1s ] && grep -c '^memtap top - ' "$TMP/screens" >> "$TMP/snaps"
		rm -f "$TMP"/p.*
	done
done
{
	echo "# memtap top's cost to the program ($(date -u +%Y-%m-%d), $(uname -r), $(nproc) CPUs)"
	echo
	echo "Command: \`bash bench/top.sh\` (TOP_ROUNDS=$ROUNDS, churn $ITERS iterations, 1 thread;"
	echo "configurations interleaved in each round; medians of wall time)."
	echo
	echo "| configuration | median ms | ratio to memtap run (same mode) |"
	echo "| --- | ---: | ---: |"
	for c in $configs; do
		m=$(median < "$TMP/$c.ms")
		base=$(median < "$TMP/${c%%+*}.ms")
		echo "| $c | $m | $(awk -v a="$m" -v b="$base" 'BEGIN {printf "%.3f", a / b}') |"
	done
	echo
	echo "Snapshots printed by the 0.1 s top per run (median): $(median < "$TMP/snaps")"
} | tee "$OUT"
