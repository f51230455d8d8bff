#!/bin/bash
# Leak check benchmark (issue 14): how long the threads of a process with N
# live blocks (1 in 100 lost) stay stopped by `memtap ctl PID leaks`, by
# phase, and how long LeakSanitizer's own check at exit takes on the same
# program rebuilt with -fsanitize=leak (the difference of its wall time
# with detect_leaks=1 and =0).  Interleaved rounds, medians.
#   bash bench/leaks.sh                 (make bench runs it)
#   ROUNDS=3 SIZES="100000 1000000" bash bench/leaks.sh
set -u
cd "$(dirname "$0")/.."
ROOT=$(pwd)
MEMTAP=$ROOT/build/memtap
FIX=$ROOT/build/tests/fixtures/leak_patterns
ROUNDS=${ROUNDS:-5}
SIZES=${SIZES:-10000 100000 1000000}
OUT=$ROOT/build/bench/leaks.md
TMP=$(mktemp -d /tmp/memtap-bench-leaks.XXXXXX)
cleanup() { [ -n "${RPID:-}" ] && kill "$RPID" 2>/dev/null; rm -rf "$TMP"; }
trap cleanup EXIT
median() { sort -n | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}'; }
mkdir -p "$(dirname "$OUT")"
LSAN=$TMP/leak_patterns_lsan
gcc -O2 -g -fsanitize=leak -D_GNU_SOURCE -Itests/fixtures tests/fixtures/leak_patterns.c -o "$LSAN" -lpthread 2>/dev/null ||
	LSAN=

now() { date +%s%N; }
lsan_once() { # lsan_once N DETECT: wall ms of the whole run
	local t0 t1
	t0=$(now)
	echo quit | LSAN_OPTIONS=detect_leaks=$2:exitcode=0:symbolize=0 "$LSAN" million "$1" > /dev/null 2>&1
	t1=$(now)
	echo $(((t1 - t0) / 1000))
}

{
echo "# Leak check benchmark ($(date -u +%Y-%m-%d), $(uname -r), $(nproc) CPUs)"
echo
echo "Command: \`bash bench/leaks.sh\` (ROUNDS=$ROUNDS; one memtap check and one LeakSanitizer"
echo "run of each kind per round, interleaved; medians).  Fixture: tests/fixtures/leak_patterns.c"
echo "\`million N\`: N blocks of 32 bytes, pointers in one array, 1 in 100 dropped; 4 threads."
echo
echo "| live blocks | memtap pause ms | stop | collect+sort | roots | reached blocks | LSan check ms (at exit) |"
echo "| ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
for n in $SIZES; do
	mkfifo "$TMP/in.$n"
	$MEMTAP run --leaks -q -o "$TMP/p" -- "$FIX" million "$n" < "$TMP/in.$n" > "$TMP/out.$n" 2>/dev/null &
	RPID=$!
	exec 3> "$TMP/in.$n"
	for i in $(seq 600); do grep -q ready "$TMP/out.$n" 2>/dev/null && break; sleep 0.1; done
	TPID=$(pgrep -x leak_patterns -P $RPID)
	: > "$TMP/m.$n"
	: > "$TMP/l.$n"
	for r in $(seq "$ROUNDS"); do
		$MEMTAP ctl "$TPID" leaks | sed -n 's/^pause: \([0-9.]*\) ms (stop \([0-9.]*\), blocks \([0-9.]*\), roots \([0-9.]*\), blocks reached \([0-9.]*\) ms.*/\1 \2 \3 \4 \5/p' >> "$TMP/m.$n"
		if [ -n "$LSAN" ]; then
			on=$(lsan_once "$n" 1)
			off=$(lsan_once "$n" 0)
			echo "$(((on - off)))" >> "$TMP/l.$n"
		fi
	done
	echo quit >&3
	exec 3>&-
	wait $RPID
	RPID=
	col() { awk -v c="$1" '{print $c}' "$TMP/m.$n" | median; }
	lsan=$([ -n "$LSAN" ] && awk '{printf "%.1f\n", $1 / 1000}' "$TMP/l.$n" | median || echo "n/a")
	echo "| $n | $(col 1) | $(col 2) | $(col 3) | $(col 4) | $(col 5) | $lsan |"
done
echo
echo "The machine is shared (other builds and tests run at the same time): figures are noisy;"
echo "the LSan column is a difference of two wall times and noisier still."
} | tee "$OUT"
