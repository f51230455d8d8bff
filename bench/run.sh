#!/bin/sh
# memtap benchmarks: `make bench` (or `sh bench/run.sh` after `make`).
#
# Measures whole-process wall time, CPU time and peak RSS of workloads run
# untraced, under `memtap run` (counting mode) and under the peer tools
# (heaptrack, valgrind massif, bpftrace uprobes).  Runs are interleaved: in
# repetition i every configuration runs once, in an order rotated by i.  The
# table goes to stdout and to build/bench/results.md (+ results.json).
#
# Knobs (environment):
#   BENCH_REPS=11        runs of the cheap configurations (untraced, memtap)
#   BENCH_PEER_REPS=5    runs of heaptrack
#   BENCH_SLOW_REPS=3    runs of massif and bpftrace
#   CHURN_ITERS=8000000  churn iterations (about 0.65 s untraced here)
#   BPF_ITERS=200000     churn iterations for the bpftrace group
#   BENCH_QUICK=1        tiny sizes and 2 runs each: checks the harness only
#   BENCH_ONLY=allocators   only the named groups (comma-separated: churn,
#                        allocators, churnfill, churn2, bpftrace, perl, python)
set -eu

cd "$(dirname "$0")/.."
ROOT=$(pwd)
OUT=$ROOT/build/bench
MEMTAP=$ROOT/build/memtap

sh scripts/deps.sh bench

if [ ! -x "$MEMTAP" ] || [ ! -f "$ROOT/build/libmemtap.so" ]; then
	echo "bench: build/memtap or build/libmemtap.so missing; run make first" >&2
	exit 1
fi

REPS=${BENCH_REPS:-11}
PEER_REPS=${BENCH_PEER_REPS:-5}
SLOW_REPS=${BENCH_SLOW_REPS:-3}
CHURN_ITERS=${CHURN_ITERS:-8000000}
BPF_ITERS=${BPF_ITERS:-200000}
PERL_KEYS=250000
PY_KEYS=150000
if [ "${BENCH_QUICK:-0}" = 1 ]; then
	REPS=2 PEER_REPS=2 SLOW_REPS=1
	CHURN_ITERS=200000 BPF_ITERS=20000 PERL_KEYS=20000 PY_KEYS=10000
fi

mkdir -p "$OUT"
rm -f "$OUT"/fail-*
CC=${CC:-cc}
echo "bench: $CC -O2 bench/churn.c -> build/bench/churn"
$CC -O2 -Wall -Wextra -o "$OUT/churn" bench/churn.c -lpthread
CHURN=$OUT/churn

# The floor: the smallest useful LD_PRELOAD counter (calls and power-of-two
# size histograms in thread-local counters, no in-use bytes, no control, no
# output).  Its overhead is what any interposing agent pays at the least.
cat > "$OUT/floor.c" <<'EOF'
#include <stddef.h>
#include <stdint.h>
extern void *__libc_malloc(size_t), *__libc_calloc(size_t, size_t), *__libc_realloc(void *, size_t);
extern void __libc_free(void *);
static __thread uint64_t calls[4], bytes[4], hist[4][65];
#define B(n) ((n) ? 64 - __builtin_clzl(n) : 0)
#define C(f, n) (calls[f]++, bytes[f] += (n), hist[f][B(n)]++)
void *malloc(size_t n) { C(0, n); return __libc_malloc(n); }
void free(void *p) { calls[1]++; __libc_free(p); }
void *calloc(size_t n, size_t m) { C(2, n * m); return __libc_calloc(n, m); }
void *realloc(void *p, size_t n) { C(3, n); return __libc_realloc(p, n); }
EOF
$CC -O2 -fPIC -shared -ftls-model=initial-exec -o "$OUT/floor.so" "$OUT/floor.c"
FLOOR="env LD_PRELOAD=$OUT/floor.so"

# The floor with the figures memtap's counting mode keeps: free's usable
# size (glibc's chunk header), its histogram and bytes, in-use bytes and
# their peak.  Still no control, no thread registry, no output.
cat > "$OUT/floor-inuse.c" <<'EOF'
#include <stddef.h>
#include <stdint.h>
extern void *__libc_malloc(size_t), *__libc_calloc(size_t, size_t), *__libc_realloc(void *, size_t);
extern void __libc_free(void *);
static __thread uint64_t calls[4], bytes[4], hist[4][65];
static __thread int64_t inuse, peak;
#define B(n) ((n) ? 64 - __builtin_clzl(n) : 0)
#define C(f, n) (calls[f]++, bytes[f] += (n), hist[f][B(n)]++)
static inline size_t U(void *p) { size_t h = ((size_t *)p)[-1]; return (h & ~(size_t)7) - 8 - ((h & 2) << 2); }
static inline void up(void *p) { if (p && (inuse += U(p)) > peak) peak = inuse; }
void *malloc(size_t n) { C(0, n); void *p = __libc_malloc(n); up(p); return p; }
void free(void *p) { if (p) { size_t u = U(p); C(1, u); inuse -= u; } __libc_free(p); }
void *calloc(size_t n, size_t m) { C(2, n * m); void *p = __libc_calloc(n, m); up(p); return p; }
void *realloc(void *p, size_t n) { C(3, n); if (p) inuse -= U(p); void *q = __libc_realloc(p, n); up(q); return q; }
EOF
$CC -O2 -fPIC -shared -ftls-model=initial-exec -o "$OUT/floor-inuse.so" "$OUT/floor-inuse.c"
FLOOR_INUSE="env LD_PRELOAD=$OUT/floor-inuse.so"

PY=python3
[ -x /usr/bin/python3 ] && PY=/usr/bin/python3

TMP=$(mktemp -d /tmp/memtap-bench.XXXXXX)
trap 'rm -rf "$TMP"' EXIT INT TERM
SCRATCH=$TMP/scratch
mkdir -p "$SCRATCH" "$TMP/bin"

# Measure one consistent build: a rebuild of build/ during the run (make in
# another shell) must not swap the agent under the benchmark.  memtap finds
# its agent next to its own executable.
cp "$MEMTAP" "$ROOT/build/libmemtap.so" "$TMP/bin/"
AGENT_SUM=$(sha256sum "$TMP/bin/libmemtap.so" | cut -c1-12)
MEMTAP=$TMP/bin/memtap

# bpftrace loads BPF maps; older kernels charge them to RLIMIT_MEMLOCK.
ulimit -l unlimited 2>/dev/null || ulimit -l 65536 2>/dev/null || true

# --- real-program workloads (Debian's perl and python3) ---------------------
cat > "$OUT/hash.pl" <<EOF
# Builds a hash of $PERL_KEYS small records, sorts its keys, sums a field.
my %h;
for my \$i (1..$PERL_KEYS) { \$h{"key\$i"} = [\$i, "v" x (\$i % 60)]; }
my @k = sort keys %h;
my \$n = 0;
\$n += \$h{\$_}[0] for @k;
print "perl-hash: \$n\n";
EOF
cat > "$OUT/pyjson.py" <<EOF
# Builds a dict of $PY_KEYS entries (strings up to 700 bytes), JSON round trip.
import json
d = {"k%d" % i: ["v" * (i % 700), i, {"x": i}] for i in range($PY_KEYS)}
s = json.dumps(d)
e = json.loads(s)
print("py-json:", len(s), len(e))
EOF

# --- is bpftrace usable here? ------------------------------------------------
LIBC=$(ldd "$CHURN" | awk '/libc\.so\.6/ {print $3; exit}')
[ -n "$LIBC" ] || LIBC=/lib/x86_64-linux-gnu/libc.so.6
BT_PROG="uprobe:$LIBC:malloc /pid == cpid/ { @c[probe] = count(); @h = hist(arg0); } uprobe:$LIBC:free /pid == cpid/ { @f = count(); }"
BT_OK=0
BT_ERR=""
if command -v bpftrace >/dev/null 2>&1; then
	if timeout 120 bpftrace -e "$BT_PROG" -c "$CHURN 10 1 1" \
		>"$OUT/bpftrace-probe.log" 2>&1 &&
		grep -q '^@f: ' "$OUT/bpftrace-probe.log"; then
		BT_OK=1
	else
		BT_ERR=$(grep -v '^$' "$OUT/bpftrace-probe.log" | head -5 | tr '\n' ' ')
		echo "bench: bpftrace does not work here, skipped: $BT_ERR" >&2
	fi
else
	BT_ERR="bpftrace not installed"
fi

# Other allocators (Debian's, LD_PRELOAD as a program linked with one gets
# them), each with its floor: bench/floor-alloc.c built for it.
LIBDIR=/usr/lib/x86_64-linux-gnu
ALLOCS=""
for a in jemalloc:libjemalloc.so.2:JE tcmalloc:libtcmalloc_minimal.so.4:TC mimalloc:libmimalloc.so.2:MI; do
	name=${a%%:*} rest=${a#*:}
	lib=$LIBDIR/${rest%%:*}
	if [ -e "$lib" ]; then
		$CC -O2 -fPIC -shared -ftls-model=initial-exec -Wall -Wextra -D${rest#*:} \
			-o "$OUT/floor-$name.so" bench/floor-alloc.c -ldl
		ALLOCS="$ALLOCS $name:$lib"
	else
		echo "bench: $lib not installed: $name left out (sh scripts/deps.sh peers)" >&2
	fi
done

# --- the specification for compare.py ---------------------------------------
q() { printf "'%s'" "$(printf '%s' "$1" | sed "s/'/'\\\\''/g")"; }
SPEC=$TMP/spec
HALF=$((CHURN_ITERS / 2))
# allocator calls: per iteration free+malloc (62/64), free+calloc (1/64),
# realloc (1/64); plus 4096 initial mallocs and 4096 final frees.
CALLS=$((2 * CHURN_ITERS - CHURN_ITERS / 64 + 8192))
CALLS2=$((2 * (2 * HALF - HALF / 64 + 8192)))
# bpftrace probes only malloc and free: 62/64 mallocs, 63/64 frees.
BT_HITS=$((BPF_ITERS * 125 / 64 + 8192))
{
	echo "group churn malloc/free churn, 1 thread, $CHURN_ITERS iterations, 4096 live blocks"
	echo "cfg churn untraced $REPS $CHURN $CHURN_ITERS"
	echo "cfg churn memtap $REPS $MEMTAP run -q -o $SCRATCH/p -- $CHURN $CHURN_ITERS"
	echo "cfg churn counter-floor $REPS $FLOOR $CHURN $CHURN_ITERS"
	echo "cfg churn floor-inuse $REPS $FLOOR_INUSE $CHURN $CHURN_ITERS"
	echo "cfg churn memtap-slowpath $REPS env MEMTAP_SLOW_PATH=1 $MEMTAP run -q -o $SCRATCH/p -- $CHURN $CHURN_ITERS"
	echo "cfg churn memtap-stacks $REPS $MEMTAP run -q --stacks -o $SCRATCH/p -- $CHURN $CHURN_ITERS"
	echo "cfg churn memtap-sample1 $PEER_REPS $MEMTAP run -q --stacks --sample=1 -o $SCRATCH/p -- $CHURN $CHURN_ITERS"
	echo "cfg churn sample1-nocache $SLOW_REPS env MEMTAP_STACK_CACHE=0 $MEMTAP run -q --stacks --sample=1 -o $SCRATCH/p -- $CHURN $CHURN_ITERS"
	echo "cfg churn heaptrack $PEER_REPS heaptrack -o $SCRATCH/ht $CHURN $CHURN_ITERS"
	echo "cfg churn massif $SLOW_REPS valgrind --tool=massif --massif-out-file=$SCRATCH/massif.out $CHURN $CHURN_ITERS"
	echo "check churn ^churn: .*checksum"
	echo "warmup churn untraced memtap"
	echo "events churn $CALLS"
	echo "note churn counter-floor is not a product: it is build/bench/floor.c (written by bench/run.sh), a ten-line LD_PRELOAD counter (calls + size histograms in thread-local counters), the least any interposer pays"
	echo "note churn floor-inuse is counter-floor plus what counting mode must also keep (free's usable size from glibc's chunk header, its histogram and bytes, in-use bytes and their peak): the least an interposer with memtap's counting-mode figures pays"
	echo "note churn memtap-slowpath is counting mode with the malloc/free fast paths closed (MEMTAP_SLOW_PATH=1): what they save; sample1-nocache is --sample=1 unwinding every sample (MEMTAP_STACK_CACHE=0): what the stack cache saves"
	echo "note churn every configuration prints the same checksum as the untraced run (checked on every run)"
	echo "note churn massif runs the full $CHURN_ITERS iterations, $SLOW_REPS times (not scaled); heaptrack $PEER_REPS times; untraced and memtap $REPS times"
	echo "note churn peak RSS is the largest single process of the tree (wait4 rusage, as /usr/bin/time -v); for heaptrack that is the app or heaptrack_interpret, whichever is larger"

	echo "note churn memtap-stacks is --stacks at the default sampling (one sample per 512 KiB on average, with its call stack from the stack cache or libunwind); memtap-sample1 records every allocation with its stack (--stacks --sample=1)"

	if [ -n "$ALLOCS" ]; then
		# One group, every configuration interleaved with every other: each
		# allocator's ratios are against its own untraced run (base lines).
		echo "group allocators churn on glibc, jemalloc, tcmalloc and mimalloc (LD_PRELOAD): counting mode and --stacks on each, next to jemalloc's own profiler and each allocator's floor"
		echo "cfg allocators glibc $REPS $CHURN $CHURN_ITERS"
		echo "cfg allocators glibc-memtap $REPS $MEMTAP run -q -o $SCRATCH/p -- $CHURN $CHURN_ITERS"
		echo "cfg allocators glibc-floor $REPS $FLOOR_INUSE $CHURN $CHURN_ITERS"
		echo "cfg allocators glibc-stacks $REPS $MEMTAP run -q --stacks -o $SCRATCH/p -- $CHURN $CHURN_ITERS"
		for a in $ALLOCS; do
			name=${a%%:*} lib=${a#*:}
			echo "cfg allocators $name $REPS env LD_PRELOAD=$lib $CHURN $CHURN_ITERS"
			echo "cfg allocators $name-memtap $REPS env LD_PRELOAD=$lib $MEMTAP run -q -o $SCRATCH/p -- $CHURN $CHURN_ITERS"
			echo "cfg allocators $name-floor $REPS env LD_PRELOAD=$OUT/floor-$name.so:$lib $CHURN $CHURN_ITERS"
			echo "cfg allocators $name-slowpath $REPS env LD_PRELOAD=$lib MEMTAP_SLOW_PATH=1 $MEMTAP run -q -o $SCRATCH/p -- $CHURN $CHURN_ITERS"
			echo "cfg allocators $name-stacks $REPS env LD_PRELOAD=$lib $MEMTAP run -q --stacks -o $SCRATCH/p -- $CHURN $CHURN_ITERS"
			[ $name = jemalloc ] &&
				echo "cfg allocators jemalloc-prof $REPS env LD_PRELOAD=$lib MALLOC_CONF=prof:true,prof_prefix:$SCRATCH/je $CHURN $CHURN_ITERS"
			for c in memtap floor slowpath stacks prof; do
				[ $c = prof ] && [ $name != jemalloc ] && continue
				echo "base allocators $name-$c $name"
			done
		done
		echo "check allocators ^churn: .*checksum"
		echo "warmup allocators glibc glibc-memtap"
		echo "events allocators $CALLS"
		echo "note allocators each allocator's rows are against its own untraced run (column 'ratios against'); glibc's against glibc"
		echo "note allocators NAME-floor is bench/floor-alloc.c for that allocator (glibc-floor: floor-inuse above): the figures of counting mode (calls, bytes and histograms per function, usable sizes, in-use and peak) kept by an LD_PRELOAD counter from the allocator's cheapest exact sources, with no thread registry, control or output"
		echo "note allocators NAME-slowpath closes memtap's fast paths (MEMTAP_SLOW_PATH=1): what they save on that allocator"
		echo "note allocators jemalloc-prof is jemalloc's own sampling heap profiler (MALLOC_CONF=prof:true: prof.active, 512 KiB mean sampling, its own backtraces), which counts no calls"
	fi

	echo "group churnfill malloc/free churn, 1 thread, $CHURN_ITERS iterations, every new block memset in full (churn FILL=1)"
	echo "cfg churnfill untraced $REPS $CHURN $CHURN_ITERS 1 4096 1"
	echo "cfg churnfill memtap $REPS $MEMTAP run -q -o $SCRATCH/p -- $CHURN $CHURN_ITERS 1 4096 1"
	echo "cfg churnfill counter-floor $REPS $FLOOR $CHURN $CHURN_ITERS 1 4096 1"
	echo "check churnfill ^churn: .*checksum"
	echo "warmup churnfill untraced memtap"
	echo "events churnfill $CALLS"
	echo "note churnfill the same allocation sequence as churn, with more work per allocation (each new block is initialised): closer to what real code does between calls"

	echo "group churn2 malloc/free churn, 2 threads x $HALF iterations each"
	echo "cfg churn2 untraced $REPS $CHURN $HALF 2"
	echo "cfg churn2 memtap $REPS $MEMTAP run -q -o $SCRATCH/p -- $CHURN $HALF 2"
	echo "cfg churn2 counter-floor $REPS $FLOOR $CHURN $HALF 2"
	echo "check churn2 ^churn: .*checksum"
	echo "warmup churn2 untraced memtap"
	echo "events churn2 $CALLS2"

	if [ $BT_OK = 1 ]; then
		echo "group bpftrace churn under bpftrace uprobes on malloc+free (count + hist), $BPF_ITERS iterations"
		echo "cfg bpftrace untraced $SLOW_REPS $CHURN $BPF_ITERS"
		echo "cfg bpftrace bpftrace $SLOW_REPS bpftrace -e $(q "$BT_PROG") -c $(q "$CHURN $BPF_ITERS")"
		echo "cfg bpftrace bpftrace-startup $SLOW_REPS bpftrace -e $(q "$BT_PROG") -c $(q "$CHURN 0 1 1")"
		echo "check bpftrace ^churn: .*checksum"
		echo "events bpftrace $BT_HITS"
		echo "startup bpftrace bpftrace bpftrace-startup"
		echo "note bpftrace bpftrace is far too slow for $CHURN_ITERS iterations: this group uses $BPF_ITERS, with its own untraced baseline; its whole-process ratio includes bpftrace's start-up and attach (measured separately as bpftrace-startup: the same probes on a run with no churn), the ns/call column has that start-up subtracted and counts only probe hits (malloc and free)"
	fi

	echo "group perl Debian perl: hash of $PERL_KEYS records, sort keys (bench/run.sh writes build/bench/hash.pl)"
	echo "cfg perl untraced $REPS /usr/bin/perl $OUT/hash.pl"
	echo "cfg perl memtap $REPS $MEMTAP run -q -o $SCRATCH/p -- /usr/bin/perl $OUT/hash.pl"
	echo "cfg perl heaptrack $PEER_REPS heaptrack -o $SCRATCH/ht /usr/bin/perl $OUT/hash.pl"
	echo "cfg perl massif $SLOW_REPS valgrind --tool=massif --massif-out-file=$SCRATCH/massif.out /usr/bin/perl $OUT/hash.pl"
	echo "check perl ^perl-hash: "
	echo "warmup perl untraced memtap"

	echo "group python Debian python3: dict of $PY_KEYS entries, JSON dumps+loads (build/bench/pyjson.py)"
	echo "cfg python untraced $REPS /usr/bin/python3 $OUT/pyjson.py"
	echo "cfg python memtap $REPS $MEMTAP run -q -o $SCRATCH/p -- /usr/bin/python3 $OUT/pyjson.py"
	echo "cfg python heaptrack $PEER_REPS heaptrack -o $SCRATCH/ht /usr/bin/python3 $OUT/pyjson.py"
	echo "cfg python massif $SLOW_REPS valgrind --tool=massif --massif-out-file=$SCRATCH/massif.out /usr/bin/python3 $OUT/pyjson.py"
	echo "check python ^py-json: "
	echo "warmup python untraced memtap"
	echo "note python pymalloc serves small objects from its own arenas, so far fewer calls reach malloc than in perl"
} > "$SPEC"
cp "$SPEC" "$OUT/spec.txt"

# --- machine description -----------------------------------------------------
HEADER=$TMP/header
{
	echo "# memtap benchmark results"
	echo
	echo "- date: $(date -u '+%Y-%m-%d %H:%M UTC')"
	echo "- CPU: $(lscpu | sed -n 's/^Model name: *//p' | head -1)," \
		"$(nproc) online CPUs" \
		"($(lscpu | sed -n 's/^Hypervisor vendor: *//p' | head -1 | sed 's/^\(.\)/hypervisor: \1/;s/^$/bare metal/'))"
	echo "- memory: $(free -m | awk '/^Mem:/ {printf "%.1f GiB", $2 / 1024}')"
	echo "- kernel: $(uname -sr); $(. /etc/os-release && echo "$PRETTY_NAME"); glibc $(dpkg-query -W -f='${Version}' libc6 2>/dev/null)"
	echo "- memtap: commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown)$(git diff --quiet HEAD -- src include 2>/dev/null || echo ' (with uncommitted changes in src/ or include/)'), libmemtap.so sha256 $AGENT_SUM... (copied to a temporary directory before measuring)"
	echo "- peers: $(heaptrack --version 2>&1 | head -1), $(valgrind --version 2>&1), $(bpftrace --version 2>&1 | head -1), perl $(perl -e 'print $^V'), $(/usr/bin/python3 --version 2>&1)"
	echo "- churn built with: $($CC --version | head -1) -O2"
	if [ $BT_OK = 0 ]; then
		echo "- bpftrace: SKIPPED, it failed here: $BT_ERR"
	fi
	echo
	echo "Reproduce: \`make bench\` (or \`sh bench/run.sh\` after \`make\`)."
	echo "Wall ratio = median wall time of the configuration / median of the untraced run of the same group."
	echo "Runs are interleaved (repetition i runs every configuration once, in an order rotated by i)."
} > "$HEADER"

rc=0
$PY bench/compare.py "$SPEC" "$SCRATCH" "$OUT/results.md" "$HEADER" || rc=$?
# Shorter, reproducible command lines in the report: $TMP and the checkout.
for f in "$OUT/results.md" "$OUT/results.json"; do
	[ -f "$f" ] && sed -i "s#$TMP#\$TMP#g; s#$ROOT/#./#g" "$f"
done
echo "bench: results written to build/bench/results.md and build/bench/results.json"
[ $rc = 0 ] || echo "bench: some runs failed (see build/bench/results.md)" >&2
exit $rc
