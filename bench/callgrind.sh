#!/bin/sh
# Instructions per churn iteration (one malloc-family call and one free) on
# glibc, jemalloc, tcmalloc and mimalloc: untraced, memtap's counting mode,
# the allocator's floor (bench/floor-alloc.c; floor-inuse for glibc), the
# slow path, --stacks, and jemalloc's own profiler.  callgrind counts are
# deterministic where timings on a shared machine are not.  `make bench`
# runs it after bench/run.sh (which builds the floors); alone:
#   sh bench/callgrind.sh        # table on stdout and in build/bench/callgrind.md
# Each figure is (Ir(churn B) - Ir(churn A)) / (B - A), A = 100000 and
# B = 300000 iterations, so start-up and exit cancel out.  Knobs: CG_A, CG_B.
set -eu
cd "$(dirname "$0")/.."
ROOT=$(pwd)
OUT=$ROOT/build/bench
AGENT=$ROOT/build/libmemtap.so
CHURN=$OUT/churn
A=${CG_A:-100000}
B=${CG_B:-300000}
LIBDIR=/usr/lib/x86_64-linux-gnu

if ! command -v valgrind >/dev/null 2>&1; then
	echo "callgrind: valgrind not installed, skipped (sh scripts/deps.sh bench)" >&2
	exit 0
fi
if [ ! -x "$CHURN" ] || [ ! -f "$OUT/floor-inuse.so" ]; then
	echo "callgrind: run bench/run.sh first (it builds churn and the floors)" >&2
	exit 1
fi
TMP=$(mktemp -d /tmp/memtap-cg.XXXXXX)
trap 'rm -rf "$TMP"' EXIT INT TERM

# ir N ENV...: instructions of `churn N` under ENV, every thread and process.
ir() {
	n=$1
	shift
	rm -f "$TMP"/cg.out*
	env "$@" valgrind --tool=callgrind --callgrind-out-file="$TMP/cg.out" "$CHURN" "$n" > /dev/null 2>&1
	cat "$TMP"/cg.out* | awk '/^summary:/ {s += $2} END {print s}'
}
per_iter() {
	a=$(ir "$A" "$@")
	b=$(ir "$B" "$@")
	echo $(((b - a) / (B - A)))
}

MT="MEMTAP_AGENT=$AGENT MEMTAP_PREFIX=$TMP/p"
{
	echo "| allocator | untraced | memtap | floor | memtap - floor | slow path | --stacks | jemalloc prof |"
	echo "|---|---:|---:|---:|---:|---:|---:|---:|"
	for a in glibc: jemalloc:libjemalloc.so.2 tcmalloc:libtcmalloc_minimal.so.4 mimalloc:libmimalloc.so.2; do
		name=${a%%:*} lib=${a#*:}
		[ -n "$lib" ] && lib=$LIBDIR/$lib
		[ -z "$lib" ] || [ -e "$lib" ] || continue
		pre=${lib:+:$lib}
		floor=$OUT/floor-$name.so
		[ $name = glibc ] && floor=$OUT/floor-inuse.so
		u=$(per_iter LD_PRELOAD="$lib")
		m=$(per_iter $MT LD_PRELOAD="$AGENT$pre")
		f=$(per_iter LD_PRELOAD="$floor$pre")
		s=$(per_iter $MT MEMTAP_SLOW_PATH=1 LD_PRELOAD="$AGENT$pre")
		k=$(per_iter $MT MEMTAP_STACKS=1 LD_PRELOAD="$AGENT$pre")
		p=-
		[ $name = jemalloc ] && p=$(per_iter MALLOC_CONF=prof:true,prof_prefix:$TMP/je LD_PRELOAD="$lib")
		echo "| $name | $u | $m (+$((m - u))) | $f (+$((f - u))) | $((m - f)) | $s (+$((s - u))) | $k (+$((k - u))) | $p$([ "$p" = - ] || echo " (+$((p - u)))") |"
	done
} | tee "$OUT/callgrind.md"
echo "callgrind: instructions per churn iteration, $(valgrind --version); written to build/bench/callgrind.md"
