#!/bin/sh
# Runs the agent's ThreadSanitizer tests (tests/tsan/test_agent.c), one
# process per test with the options it needs in its environment, and prints
# TAP.  A data race fails the test: TSan stops at the first report and exits
# 66.  Usage: tests/tsan/run.sh [TEST]...   (make tsan builds and runs them)
cd "$(dirname "$0")/../.." || exit 1
bin=${MEMTAP_TSAN_BIN:-build-tsan/tests/tsan/test_agent}
# Each test is bounded; the whole run takes seconds.
limit=${MEMTAP_TSAN_TIMEOUT:-60}
export TSAN_OPTIONS="${TSAN_OPTIONS:-halt_on_error=1 exitcode=66 second_deadlock_stack=1}"
tests=${*:-$("$bin" --list)}
set -- $tests
echo "1..$#"
n=0
fails=0
for t in $tests; do
	n=$((n + 1))
	case $t in
	sites | sites_reset) opts="MEMTAP_STACKS=1 MEMTAP_SAMPLE=1" ;;
	sites_sampled) opts="MEMTAP_STACKS=1 MEMTAP_SAMPLE=2048" ;;
	ctl) opts="MEMTAP_INTERVAL_MS=20" ;;
	attach) opts="MEMTAP_TSAN_ATTACH=1" ;;
	*) opts= ;;
	esac
	dir=$(mktemp -d "${TMPDIR:-/tmp}/memtap-tsan.XXXXXX") || exit 1
	run() {
		# (env -i would drop TSAN_OPTIONS and PATH; unset what the
		# agent reads instead.)
		env -u LD_PRELOAD -u MEMTAP_AGENT -u MEMTAP_FUNCS -u MEMTAP_DUMP_EVERY -u MEMTAP_DUMP_ON_PEAK \
			-u MEMTAP_INACTIVE -u MEMTAP_FOLLOW \
			MEMTAP_PREFIX="$dir/p" MEMTAP_RUNDIR="$dir" MEMTAP_TSAN_DIR="$dir" $opts \
			timeout -k 5 "$limit" "$@" "$bin" "$t" >"$dir/out" 2>&1
	}
	start=$(date +%s)
	run
	rc=$?
	# Kernels with more address-space randomisation than TSan's memory layout
	# allows (vm.mmap_rnd_bits 32, e.g. Ubuntu's 6.5+) make it fail at start
	# with "unexpected memory mapping"; without randomisation it runs.
	if [ $rc != 0 ] && grep -q "unexpected memory mapping" "$dir/out"; then
		echo "# $t: TSan cannot map its shadow memory with this kernel's ASLR; again under setarch -R"
		run setarch "$(uname -m)" -R
		rc=$?
	fi
	secs=$(($(date +%s) - start))
	if [ $rc = 0 ]; then
		echo "ok $n - $t (${secs}s)"
		rm -rf "$dir"
	else
		why="exit $rc"
		[ $rc = 66 ] && why="ThreadSanitizer report"
		[ $rc = 124 ] && why="timed out after ${limit}s"
		echo "not ok $n - $t ($why; output kept in $dir)"
		sed 's/^/# /' "$dir/out" | head -80
		fails=$((fails + 1))
	fi
done
[ $fails = 0 ]
