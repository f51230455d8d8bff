#!/bin/bash
# Live sessions (issue 9), measured: `bash bench/live.sh` (make bench runs it
# after bench/run.sh, whose build/bench/churn and floor-inuse.so it uses).
#
# 1. The hot path before and after the live counter file, in one interleaved
#    run (bench/compare.py): churn untraced, the floor that keeps counting
#    mode's figures (floor-inuse), counting and --stacks with the agent of
#    commit $BEFORE (built here from git into a temporary worktree) and with
#    this one, and this one with the live file off (MEMTAP_NO_LIVE=1: the same
#    arena in private memory).
# 2. The time `memtap ctl PID dump` takes (copy the live file, snapshot,
#    write) on a process with 1, 100 and 1000 threads, and the memory its
#    counter file takes (the file's allocated blocks on tmpfs).
#
# Knobs: BEFORE=<commit> (default: the last commit before the live files),
# LIVE_REPS=9, CHURN_ITERS=8000000.
set -eu
cd "$(dirname "$0")/.."
ROOT=$(pwd)
OUT=$ROOT/build/bench
BEFORE=${BEFORE:-0edf88e}
REPS=${LIVE_REPS:-9}
CHURN_ITERS=${CHURN_ITERS:-8000000}
CHURN=$OUT/churn
[ -x "$CHURN" ] && [ -f "$OUT/floor-inuse.so" ] || { echo "live.sh: run bench/run.sh first (churn, floor-inuse.so)" >&2; exit 1; }
TMP=$(mktemp -d /tmp/memtap-live-bench.XXXXXX)
trap 'git -C "$ROOT" worktree remove --force "$TMP/before" >/dev/null 2>&1 || true; rm -rf "$TMP"' EXIT
mkdir -p "$TMP/scratch"

echo "live.sh: building the agent of $BEFORE in a temporary worktree"
OLD=""
if git -C "$ROOT" worktree add --detach "$TMP/before" "$BEFORE" >/dev/null 2>&1 &&
	make -C "$TMP/before" -s build/memtap build/libmemtap.so >"$TMP/before.log" 2>&1; then
	OLD=$TMP/before/build/memtap
else
	echo "live.sh: cannot build $BEFORE (see $TMP/before.log): the 'before' rows are left out" >&2
fi
NEW=$ROOT/build/memtap
SPEC=$TMP/spec
CALLS=$((2 * CHURN_ITERS - CHURN_ITERS / 64 + 8192))
{
	echo "group live churn, 1 thread, $CHURN_ITERS iterations: the hot path before and after the live counter file"
	echo "cfg live untraced $REPS $CHURN $CHURN_ITERS"
	echo "cfg live floor-inuse $REPS env LD_PRELOAD=$OUT/floor-inuse.so $CHURN $CHURN_ITERS"
	[ -n "$OLD" ] && echo "cfg live before-counting $REPS $OLD run -q -o $TMP/scratch/o -- $CHURN $CHURN_ITERS"
	echo "cfg live after-counting $REPS $NEW run -q -o $TMP/scratch/n -- $CHURN $CHURN_ITERS"
	echo "cfg live after-nolive $REPS env MEMTAP_NO_LIVE=1 $NEW run -q -o $TMP/scratch/x -- $CHURN $CHURN_ITERS"
	[ -n "$OLD" ] && echo "cfg live before-stacks $REPS $OLD run -q --stacks -o $TMP/scratch/o -- $CHURN $CHURN_ITERS"
	echo "cfg live after-stacks $REPS $NEW run -q --stacks -o $TMP/scratch/n -- $CHURN $CHURN_ITERS"
	echo "check live ^churn: .*checksum"
	echo "warmup live untraced after-counting"
	echo "events live $CALLS"
	echo "note live before-* is memtap at $BEFORE (counters in private memory, the agent writes its profiles); after-* is this build (counters in the live file on tmpfs, memtap writes the profiles); after-nolive is this build with the arena in private memory (MEMTAP_NO_LIVE=1)"
} > "$SPEC"
python3 bench/compare.py "$SPEC" "$TMP/scratch" "$OUT/live.md"

echo
echo "## A live snapshot (memtap ctl PID dump) of a process with N threads"
echo
echo "| threads | dump ms (median of 5) | counter file: bytes used | tmpfs bytes allocated |"
echo "| ---: | ---: | ---: | ---: |"
cc -O2 -Wall -o "$TMP/threads_live" bench/threads_live.c -lpthread
export MEMTAP_RUNDIR=$TMP/run
mkdir -p "$MEMTAP_RUNDIR"
for n in 1 100 1000; do
	coproc T { "$NEW" run -q -o "$TMP/scratch/t$n" -- "$TMP/threads_live" "$n"; }
	read -r ready <&"${T[0]}"
	pid=$(pgrep -n -f "$TMP/threads_live $n")
	f=$(ls "$MEMTAP_RUNDIR"/memtap-*/"$pid"-*.mtl)
	times=""
	for i in 1 2 3 4 5; do
		t0=$(date +%s%N)
		"$NEW" ctl "$pid" dump "$TMP/scratch/d.mtp" >/dev/null
		t1=$(date +%s%N)
		times="$times $(( (t1 - t0) / 1000 ))"
	done
	med=$(printf '%s\n' $times | sort -n | sed -n 3p)
	used=$(stat -c %s "$TMP/scratch/d.mtp" >/dev/null; python3 - "$f" <<'PY'
import struct, sys
h = open(sys.argv[1], "rb").read(64)
print(struct.unpack_from("<Q", h, 56)[0])
PY
)
	alloc=$(( $(stat -c %b "$f") * $(stat -c %B "$f") ))
	printf '| %d | %d.%03d | %d | %d |\n' "$n" $((med / 1000)) $((med % 1000)) "$used" "$alloc"
	echo >&"${T[1]}"
	wait "$T_PID" 2>/dev/null || true
done
