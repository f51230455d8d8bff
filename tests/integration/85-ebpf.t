#!/bin/bash
# The eBPF backend (memtap run/attach --via=ebpf): the exact-count fixtures
# give the agent's counts, bpftrace on the same probes at the same time gives
# the same malloc count and histogram, -f/--within/--heap-events on fixtures
# with known patterns, and the refusals.
. "$(dirname "$0")/../lib.sh"

[ "$(id -u)" = 0 ] || skip_all "the eBPF backend needs root"
[ -r /sys/kernel/btf/vmlinux ] || skip_all "no BTF (/sys/kernel/btf/vmlinux): the eBPF backend needs it"
command -v jq >/dev/null || skip_all "jq is missing"
$MEMTAP attach --help | grep -q -- --via=ebpf || skip_all "build/memtap was built without the eBPF backend"
plan 99

LIBC=$(ldd "$FIX/threads_malloc" | awk '$1 ~ /^libc\.so/ {print $3}')
calls() { jq -c '.processes[0].functions | with_entries(.value = .value.calls)' "$1"; }
# same_hist EBPF.json AGENT.json FUNC STDERR: FUNC's histogram equals the
# agent's.  A probe cannot fault in a page, so a free whose chunk header was
# not resident at that instant is counted without a size (and said on
# stderr); then every bucket is at most the agent's and the difference is
# exactly the number of such calls.
same_hist() {
	local e a u
	e=$(jq -c ".processes[0].functions[\"$3\"].hist" "$1")
	a=$(jq -c ".processes[0].functions[\"$3\"].hist" "$2")
	u=$(sed -n "s/.* \([0-9]*\) $3 call(s) counted without a size.*/\1/p" "$4" | head -1)
	if [ -z "$u" ] || [ "$e" = "$a" ]; then
		echo "$e"
		return
	fi
	echo "# $u $3 call(s) without a size: checking the agent's histogram covers the eBPF one by exactly $u" >&2
	jq -n -c --argjson e "$e" --argjson a "$a" --argjson u "$u" \
		'def m(h): h | map({key: (.[0]|tostring), value: .[1]}) | from_entries;
		 if ([m($e) | to_entries[] | select(.value > (m($a)[.key] // 0))] | length) == 0
		    and (($a | map(.[1]) | add) - ($e | map(.[1]) | add)) == $u then $a else $e end'
}

# --- exact counts, and the same as the agent's ------------------------------
$MEMTAP run --via=ebpf -q -o "$TMP/t" -- "$FIX/threads_malloc" 4 25000 12345 2> "$TMP/t.err"
ok $? "threads_malloc runs and exits 0 under run --via=ebpf"
$MEMTAP report --format=json "$TMP"/t.*.mtp > "$TMP/t.json"
ok $? "the eBPF profile is a valid profile file"
is "$(fn_field "$TMP/t.json" malloc calls)" 100000 "malloc calls: 4 x 25000"
is "$(bucket "$TMP/t.json" malloc 8192)" 100000 "all 100000 in the 8192 bucket"
is "$(jq '.processes[0].functions.malloc.hist | length' "$TMP/t.json")" 1 "no other malloc bucket"
is "$(fn_field "$TMP/t.json" malloc bytes)" $((100000 * 12345)) "malloc bytes requested"
$MEMTAP run -q -o "$TMP/ta" -- "$FIX/threads_malloc" 4 25000 12345
$MEMTAP report --format=json "$TMP"/ta.*.mtp > "$TMP/ta.json"
is "$(calls "$TMP/t.json")" "$(calls "$TMP/ta.json")" "calls per function equal the agent's (incl. glibc's thread-exit frees left out)"
is "$(jq -c '.processes[0].functions | del(.free) | with_entries(.value = .value.hist)' "$TMP/t.json")" \
   "$(jq -c '.processes[0].functions | del(.free) | with_entries(.value = .value.hist)' "$TMP/ta.json")" \
   "histograms of the allocating functions equal the agent's"
is "$(same_hist "$TMP/t.json" "$TMP/ta.json" free "$TMP/t.err")" "$(jq -c '.processes[0].functions.free.hist' "$TMP/ta.json")" \
   "free's histogram: 100000 frees of usable size 12360 (glibc's chunk header), as under the agent"

$MEMTAP run --via=ebpf -q -o "$TMP/e" -- "$FIX/every_func" 2> "$TMP/e.err"
ok $? "every_func exits 0 under run --via=ebpf"
$MEMTAP report --format=json "$TMP"/e.*.mtp > "$TMP/e.json"
$MEMTAP run -q -o "$TMP/ea" -- "$FIX/every_func"
$MEMTAP report --format=json "$TMP"/ea.*.mtp > "$TMP/ea.json"
for f in malloc calloc realloc reallocarray posix_memalign valloc pvalloc free mmap munmap mremap brk sbrk; do
	is "$(fn_field "$TMP/e.json" "$f" calls)" "$(fn_field "$TMP/ea.json" "$f" calls)" \
	   "$f: $(fn_field "$TMP/ea.json" "$f" calls) calls, as under the agent"
done
# glibc's memalign and aligned_alloc are one function: one probe, one entry.
is "$(fn_field "$TMP/e.json" 'aligned_alloc|memalign' calls)" \
   "$(( $(fn_field "$TMP/ea.json" aligned_alloc calls) + $(fn_field "$TMP/ea.json" memalign calls) ))" \
   "aligned_alloc|memalign (aliases in glibc): the agent's two counts summed"
# memalign(32, 48)'s usable size is 56 or 88 depending on where the heap
# top happens to sit modulo 32 (glibc splits off the slack before the
# aligned block only when it is large enough for a chunk), and the agent's
# own start-up moves the heap: those 8 frees may fall in the 32 or the 64
# bucket under either collector.  The two buckets are compared summed; every
# other bucket exactly.
fold3264() { jq -c '[.[] | if .[0] == 32 then [64, .[1]] else . end] | group_by(.[0]) | map([.[0][0], (map(.[1]) | add)])'; }
is "$(same_hist "$TMP/e.json" "$TMP/ea.json" free "$TMP/e.err" | fold3264)" \
   "$(jq -c '.processes[0].functions.free.hist' "$TMP/ea.json" | fold3264)" \
   "free histogram (usable sizes) equals the agent's (buckets 32 and 64 summed: memalign's slack)"
is "$(fn_field "$TMP/e.json" mmap failed)" 1 "mmap on a bad fd counted as failed (return probe)"
is "$(fn_field "$TMP/e.json" malloc failed)" 0 "no return probe on malloc without --failures"
$MEMTAP run --via=ebpf --failures -q -o "$TMP/ef" -- "$FIX/every_func"
$MEMTAP report --format=json "$TMP"/ef.*.mtp > "$TMP/ef.json"
is "$(fn_field "$TMP/ef.json" malloc failed)" 1 "--failures: the impossible malloc is counted as failed"
is "$(fn_field "$TMP/ef.json" malloc calls)" 4 "--failures: still 4 malloc calls"

$MEMTAP run --via=ebpf -q -o "$TMP/c" -- "$FIX/cxx_ops"
ok $? "cxx_ops exits 0 under run --via=ebpf"
$MEMTAP report --format=json "$TMP"/c.*.mtp > "$TMP/c.json"
$MEMTAP run -q -o "$TMP/ca" -- "$FIX/cxx_ops"
$MEMTAP report --format=json "$TMP"/ca.*.mtp > "$TMP/ca.json"
for f in "operator new" "operator new[]" "operator new(nothrow)" "operator new(align)" \
         "operator new[](align)" "operator delete(sized)" "operator delete[]" "operator delete" \
         "operator delete(sized, align)" "operator delete[](align)"; do
	is "$(fn_field "$TMP/c.json" "$f" calls)" "$(fn_field "$TMP/ca.json" "$f" calls)" \
	   "$f: the agent's count (libstdc++'s nested calls recognized)"
done

# --- bpftrace on the same probe, attached at the same time -------------------
# The gate says it has started (a file), then waits for another before
# allocating anything, so that both tools are attached when the first malloc
# happens.
cat > "$TMP/gate.c" <<'EOF'
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <unistd.h>
static unsigned long count, size;
static void *work(void *a) {
	(void)a;
	for (unsigned long i = 0; i < count; i++) { volatile char *p = malloc(size); p[0] = 1; free((void *)p); }
	return NULL;
}
int main(int argc, char **argv) {
	if (argc != 6) return 2;
	close(open(argv[5], O_CREAT | O_WRONLY, 0644)); /* started: libc is loaded */
	while (access(argv[1], F_OK)) usleep(20000);
	unsigned long n = strtoul(argv[2], 0, 10);
	count = strtoul(argv[3], 0, 10), size = strtoul(argv[4], 0, 10);
	pthread_t t[64];
	for (unsigned long i = 0; i < n; i++) pthread_create(&t[i], 0, work, 0);
	for (unsigned long i = 0; i < n; i++) pthread_join(t[i], 0);
	return 0;
}
EOF
cc -O2 -o "$TMP/gate" "$TMP/gate.c" -lpthread
if ! command -v bpftrace >/dev/null; then
	for i in 1 2 3 4 5; do skip "bpftrace is not installed"; done
else
	"$TMP/gate" "$TMP/go" 4 25000 12345 "$TMP/ready" &
	gpid=$!
	at_exit "kill $gpid"
	# attached before the dynamic linker has loaded libc, there is no malloc
	wait_for "[ -e $TMP/ready ]" 100
	bpftrace -p $gpid -e "uprobe:$LIBC:malloc /pid == $gpid/ { @calls = count(); @sizes = hist(arg0); }" \
		> "$TMP/bt.out" 2> "$TMP/bt.err" &
	btpid=$!
	$MEMTAP attach --via=ebpf -p $gpid -o "$TMP/g" --format=json --report-file "$TMP/g.json" 2> "$TMP/g.err" &
	mpid=$!
	wait_for "grep -q Attaching $TMP/bt.out && grep -q tracing $TMP/g.err" 300
	attached=$?
	ok $attached "bpftrace and memtap attach are both attached to the gate ($gpid)"
	if [ $attached -ne 0 ]; then
		diag "bpftrace:"; sed 's/^/#   /' "$TMP/bt.out" "$TMP/bt.err"
		diag "memtap:"; sed 's/^/#   /' "$TMP/g.err"
	fi
	touch "$TMP/go"
	wait $gpid
	wait $mpid
	ok $? "memtap attach ends when the process exits, with status 0"
	wait $btpid
	bt_calls=$(awk '/^@calls:/ {print $2}' "$TMP/bt.out")
	bt_8k=$(awk '/^\[8K, 16K\)/ {print $3}' "$TMP/bt.out")
	is "$(fn_field "$TMP/g.json" malloc calls)" "$bt_calls" "malloc calls: memtap = bpftrace ($bt_calls)"
	is "$(bucket "$TMP/g.json" malloc 8192)" "$bt_8k" "malloc 8192 bucket: memtap = bpftrace's [8K, 16K)"
	is "$(grep -c '^\[' "$TMP/bt.out")" "$(jq '.processes[0].functions.malloc.hist | length' "$TMP/g.json")" \
	   "as many histogram rows in both"
fi

# --- -f and --within on a fixture with a known per-call pattern ---------------
# handle(i) mallocs (i % 4 + 1) blocks of 100 bytes: per call 1, 2, 3, 4
# allocations, 100..400 bytes.
cat > "$TMP/within.c" <<'EOF'
#include <stdlib.h>
__attribute__((noinline)) void handle(unsigned long i) {
	void *p[4];
	unsigned n = i % 4 + 1;
	for (unsigned k = 0; k < n; k++) p[k] = malloc(100);
	for (unsigned k = 0; k < n; k++) free(p[k]);
	__asm__ volatile("" ::: "memory");
}
int main(void) { for (unsigned long i = 0; i < 400; i++) handle(i); return 0; }
EOF
cc -O1 -o "$TMP/within" "$TMP/within.c"
$MEMTAP run --via=ebpf -q -o "$TMP/w" -f handle:size=arg0 --within handle -- "$TMP/within"
ok $? "run --via=ebpf -f handle:size=arg0 --within handle"
$MEMTAP report --format=json "$TMP"/w.*.mtp > "$TMP/w.json"
is "$(fn_field "$TMP/w.json" handle calls)" 400 "-f handle: 400 calls"
is "$(bucket "$TMP/w.json" handle 256)" 144 "-f handle:size=arg0: 144 calls with i in [256, 400)"
wa="within handle: allocations per call"
wb="within handle: bytes per call"
is "$(fn_field "$TMP/w.json" "$wa" calls)" 400 "--within: 400 invocations"
is "$(jq -c ".processes[0].functions[\"$wa\"].hist" "$TMP/w.json")" "[[1,100],[2,200],[4,100]]" \
   "--within: allocations per call 1, 2-3, 4 (x100, x200, x100)"
is "$(jq -c ".processes[0].functions[\"$wb\"].hist" "$TMP/w.json")" "[[64,100],[128,100],[256,200]]" \
   "--within: bytes per call 100, 200, 300-400"
is "$(fn_field "$TMP/w.json" "$wb" bytes)" 100000 "--within: 100000 bytes in all"

# --- -f FUNC:size=argN:pool=argM: per-pool tables -----------------------------
# The fixture prints, after its calls, "FUNC POOL CALLS BYTES" for every
# (function, pool) it used: pool_alloc(pool, size) on four pools, and
# pool_calloc(size, pool) on two (the pool in another argument).
$MEMTAP run --via=ebpf -o "$TMP/pl" --report-file "$TMP/pl.txt" -f pool_alloc:size=arg1:pool=arg0 \
	-f pool_calloc:size=arg0:pool=arg1 -- "$FIX/pools" > "$TMP/pl.want" 2> "$TMP/pl.err"
ok $? "run --via=ebpf -f pool_alloc:size=arg1:pool=arg0 -f pool_calloc:size=arg0:pool=arg1"
$MEMTAP report --format=json "$TMP"/pl.*.mtp > "$TMP/pl.json"
is "$(jq -r '.processes[0].pools | to_entries[] | .key as $f | .value[] | "\($f) \(.pool) \(.calls) \(.bytes)"' \
	"$TMP/pl.json" | sort)" "$(sort "$TMP/pl.want")" \
   "every (function, pool): calls and bytes as the fixture made them ($(wc -l < "$TMP/pl.want") pools)"
is "$(jq '.processes[0].pools.pool_alloc | map(.calls) | add' "$TMP/pl.json")" \
   "$(fn_field "$TMP/pl.json" pool_alloc calls)" "pool_alloc: the pools' calls add up to the function's calls"
top_bytes=$(awk '$1 == "pool_alloc" {print $4, $2}' "$TMP/pl.want" | sort -rn | head -1 | cut -d' ' -f2)
top_calls=$(awk '$1 == "pool_alloc" {print $3, $2}' "$TMP/pl.want" | sort -rn | head -1 | cut -d' ' -f2)
ok $([ "$top_bytes" != "$top_calls" ]; echo $?) "the fixture's top pool by bytes ($top_bytes) is not its top by calls ($top_calls)"
is "$(sed -n '/^Pools of pool_alloc by bytes/{n;p}' "$TMP/pl.txt" | awk '{print $1}')" "$top_bytes" \
   "the report's 'Pools of pool_alloc by bytes' starts with the pool that got the most bytes"
is "$(sed -n '/^Pools of pool_alloc by calls/{n;p}' "$TMP/pl.txt" | awk '{print $1}')" "$top_calls" \
   "the report's 'Pools of pool_alloc by calls' starts with the pool that got the most calls"
# More pools than the table holds: the rest are summed as "other pools".
$MEMTAP run --via=ebpf -q -o "$TMP/pm" -f pool_note:size=arg1:pool=arg0 -- "$FIX/pools" many 70000 2> "$TMP/pm.err"
$MEMTAP report --format=json "$TMP"/pm.*.mtp > "$TMP/pm.json"
n=$(jq '.processes[0].pools.pool_note | length' "$TMP/pm.json")
other=$(jq '.processes[0].pools.pool_note | map(select(.pool == "other") | .calls) | add // 0' "$TMP/pm.json")
is "$(jq '.processes[0].pools.pool_note | map(.calls) | add' "$TMP/pm.json")" 70000 \
   "70000 pools: every call is in a pool or in 'other' ($((n - 1)) pools + $other other)"
ok $([ "$other" -gt 0 ] && [ $((n - 1 + other)) -eq 70000 ]; echo $?) "... the calls beyond the table are one 'other' entry"
like "$(cat "$TMP/pm.err")" "$other pool_note call\(s\) in pools .*beyond the table's [0-9]+ entries \(it was full\)" \
   "... and stderr says the table was full"

# --- --stacks: frame-pointer call sites ----------------------------------------
# fp_stacks (built with -fno-omit-frame-pointer) mallocs N x SIZE through
# main -> fp_outer -> fp_middle -> fp_leaf, and once 2 x SIZE from main.
N=1000; SZ=100
$MEMTAP run --via=ebpf --stacks -o "$TMP/fp" --report-file "$TMP/fp.txt" -- "$FIX/fp_stacks" $N $SZ
ok $? "run --via=ebpf --stacks fp_stacks $N $SZ"
$MEMTAP report --format=json "$TMP"/fp.*.mtp > "$TMP/fp.json"
is "$(jq -r '.processes[0].stacks' "$TMP/fp.json")" frame-pointer "the profile says its sites are frame-pointer stacks"
is "$(jq '[.processes[0].sites[] | select(.function == "malloc") | .alloc_objects] | add' "$TMP/fp.json")" \
   "$(fn_field "$TMP/fp.json" malloc calls)" "every malloc call is in a call site (sites sum to the malloc count)"
$MEMTAP report --format=collapsed --value=alloc "$TMP"/fp.*.mtp > "$TMP/fp.collapsed"
grep -q "main;fp_outer;fp_middle;fp_leaf $((N * SZ))\$" "$TMP/fp.collapsed"
ok $? "collapsed stacks: main;fp_outer;fp_middle;fp_leaf with $((N * SZ)) bytes, symbolized from the profile's mappings"
grep -q "main $((2 * SZ))\$" "$TMP/fp.collapsed"
ok $? "... and main's own malloc of $((2 * SZ)) bytes as a stack of its own"
like "$(cat "$TMP/fp.txt")" "Call sites: .*frame-pointer stacks from the kernel" "the text report labels them frame-pointer stacks"
like "$(sed -n '/^Top call sites by calls/,$p' "$TMP/fp.txt")" "#1  $N calls .*
 +fp_leaf .*fp_stacks.c" "top call site by calls: $N calls, from fp_leaf (file and line)"

# Through Debian's libraries (no frame pointers) the kernel's walk goes on
# through whatever %rbp holds: every frame kept must be a return address,
# inside an executable mapping of the process, and memtap says how many
# stacks it cut.
# (sort runs long enough for its mappings to be read: 20 ms)
seq 1 300000 | sort -R > "$TMP/lines"
$MEMTAP run --via=ebpf --stacks -q -o "$TMP/ls" -- sort -n "$TMP/lines" > /dev/null 2> "$TMP/ls.err"
$MEMTAP report --format=json "$TMP"/ls.*.mtp > "$TMP/ls.json"
bad=$(jq -r '.processes[0] | [.mappings[] | select(.perms | test("x")) | [(.start | ltrimstr("0x")), (.end | ltrimstr("0x"))]] as $x
	| [.sites[].frames[] | ltrimstr("0x")] | unique[] as $f
	| select([$x[] | select(($f | length) == (.[0] | length) and $f >= .[0] and $f < .[1])] | length == 0) | $f' "$TMP/ls.json" | head -3)
ok $([ "$(jq '.processes[0].mappings | length' "$TMP/ls.json")" -gt 0 ] && [ -z "$bad" ]; echo $?) \
   "--stacks through libraries without frame pointers: every frame is inside an executable mapping${bad:+ (not: $bad)}"
like "$(cat "$TMP/ls.err")" "process [0-9]+: [0-9]+ of [0-9]+ call stacks were cut at a frame outside its executable mappings" \
   "... and memtap says how many stacks it cut there"

# --- --heap-events: threads make arenas, the main thread grows the brk heap --
$MEMTAP run --via=ebpf -q --heap-events -o "$TMP/h" -- "$FIX/threads_malloc" 4 2000 100
$MEMTAP report --format=json "$TMP"/h.*.mtp > "$TMP/h.json"
r=$(fn_field "$TMP/h.json" "heap: mmap PROT_NONE NORESERVE (arena reserve)" calls)
[ "$r" -ge 1 ]
ok $? "--heap-events: arena reservations seen ($r)"
g=$(fn_field "$TMP/h.json" "heap: mprotect read-write (arena grow)" calls)
[ "$g" -ge 1 ]
ok $? "--heap-events: arena growth by mprotect seen ($g)"
b=$(fn_field "$TMP/h.json" "heap: brk grow" calls)
[ "$b" -ge 1 ]
ok $? "--heap-events: the main heap grew by brk ($b)"
# Per thread: every event is some thread's, the worker threads reserve their
# arenas, and only the main thread (tid = pid) moves the break.
hp=$(jq '.processes[0].pid' "$TMP/h.json")
is "$(jq -c '.processes[0] | [.functions | to_entries[] | select(.key | startswith("heap: ")) | .value.calls]' "$TMP/h.json")" \
   "$(jq -c '.processes[0] | [.functions | to_entries[] | select(.key | startswith("heap: ")) | .key as $k | $k] as $ks
	| [$ks[] as $k | .threads[$k] | map(.calls) | add]' "$TMP/h.json")" \
   "--heap-events per thread: each event's per-thread calls add up to its count"
rt=$(jq -r '.processes[0].threads["heap: mmap PROT_NONE NORESERVE (arena reserve)"] | map(.tid) | join(" ")' "$TMP/h.json")
ok $([ -n "$rt" ] && ! echo " $rt " | grep -q " $hp "; echo $?) \
   "--heap-events per thread: arenas reserved by worker threads ($rt), not the main thread ($hp)"
is "$(jq -r '.processes[0].threads["heap: brk grow"] | map(.tid) | join(" ")' "$TMP/h.json")" "$hp" \
   "--heap-events per thread: the break moved by the main thread only"
like "$($MEMTAP report "$TMP"/h.*.mtp)" "Threads of heap: brk grow by bytes" "the text report has the per-thread tables"
# Arena heaps are told from thread stacks by their reserved 64 MiB ranges.
m=$(fn_field "$TMP/h.json" "heap: mprotect read-write (arena grow)" calls)
is "$(jq -r '.processes[0].threads["heap: mprotect read-write (arena grow)"] | map(.tid) | sort | join(" ")' "$TMP/h.json")" \
   "$(echo $rt | tr ' ' '\n' | sort | tr '\n' ' ' | sed 's/ $//')" \
   "--heap-events: arena growth ($m) by the threads that reserved the arenas"
is "$(jq -r '.processes[0].threads["heap: mprotect rw, not an arena (thread stack)"] | map(.tid) | join(" ")' "$TMP/h.json")" \
   "$hp" "--heap-events: the 4 thread stacks' mprotect, by the main thread, not an arena"
# Attached to a process whose arena exists already: the loader finds it in
# /proc/PID/maps.  Thread A makes its arena, says so, waits, then grows it;
# thread B (no malloc, so no new arena) is started after the attach.
cat > "$TMP/arena.c" <<'EOF2'
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
static char **av;
static void *a(void *x) {
	(void)x;
	volatile char *p = malloc(1000); p[0] = 1;
	close(open(av[1], O_CREAT | O_WRONLY, 0644));
	while (access(av[2], F_OK)) usleep(20000);
	for (int i = 0; i < 400; i++) { char *q = malloc(4096); memset(q, 1, 4096); }
	return NULL;
}
static void *b(void *x) { return x; }
int main(int argc, char **argv) {
	pthread_t ta, tb;
	if (argc != 3) return 2;
	av = argv;
	pthread_create(&ta, 0, a, 0);
	while (access(argv[2], F_OK)) usleep(20000);
	pthread_create(&tb, 0, b, 0);
	pthread_join(tb, 0);
	pthread_join(ta, 0);
	return 0;
}
EOF2
cc -O1 -o "$TMP/arena" "$TMP/arena.c" -lpthread
"$TMP/arena" "$TMP/aready" "$TMP/ago" &
apid=$!
at_exit "kill $apid"
wait_for "[ -e $TMP/aready ]" 100
$MEMTAP attach --via=ebpf --heap-events -p $apid -o "$TMP/ar" --format=json --report-file "$TMP/ar.json" 2> "$TMP/ar.err" &
mpid=$!
wait_for "grep -q tracing $TMP/ar.err" 200
touch "$TMP/ago"
wait $apid
wait $mpid
ok $? "attach --heap-events to a process whose arena exists, until it exits"
g=$(fn_field "$TMP/ar.json" "heap: mprotect read-write (arena grow)" calls)
ok $([ "$g" -ge 1 ]; echo $?) "the arena made before the attach is known: its growth counted as arena grow ($g)"
is "$(fn_field "$TMP/ar.json" "heap: mmap PROT_NONE NORESERVE (arena reserve)" calls)" 0 "... with no reservation seen"
is "$(fn_field "$TMP/ar.json" "heap: mprotect rw, not an arena (thread stack)" calls)" 1 \
   "thread B's stack: one mprotect, not an arena"
# A forked child inherits its parent's arenas: the parent's thread makes one
# and exits (the arena goes to glibc's free list); the child's thread reuses
# it and grows it, with no reservation of its own.
cat > "$TMP/forkarena.c" <<'EOF2'
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
static void *make(void *x) { volatile char *p = malloc(1000); p[0] = 1; return x; }
static void *grow(void *x) {
	for (int i = 0; i < 400; i++) { char *q = malloc(4096); memset(q, 1, 4096); }
	return x;
}
int main(void) {
	pthread_t t;
	pthread_create(&t, 0, make, 0);
	pthread_join(t, 0);
	pid_t c = fork();
	if (c == 0) {
		pthread_create(&t, 0, grow, 0);
		pthread_join(t, 0);
		_exit(0);
	}
	waitpid(c, 0, 0);
	return 0;
}
EOF2
cc -O1 -o "$TMP/forkarena" "$TMP/forkarena.c" -lpthread
$MEMTAP run --via=ebpf -q --heap-events -o "$TMP/fa" -- "$TMP/forkarena"
$MEMTAP report --format=json "$TMP"/fa.*.mtp > "$TMP/fa.json"
# the child: the process whose parent is in the profile too
kid='.processes | map(.pid) as $pids | map(select(.ppid as $pp | $pids | index($pp))) | .[0]'
cg=$(jq -r "$kid"'.functions["heap: mprotect read-write (arena grow)"].calls // 0' "$TMP/fa.json")
cr=$(jq -r "$kid"'.functions["heap: mmap PROT_NONE NORESERVE (arena reserve)"].calls // 0' "$TMP/fa.json")
ok $([ "$cg" -ge 1 ] && [ "$cr" = 0 ]; echo $?) \
   "the forked child's growth of the arena it inherited is arena grow ($cg), with no reservation ($cr)"

# No heap event at all: the text report says so.
sleep 1000 &
hspid=$!
at_exit "kill $hspid"
wait_for "[ \"\$(readlink /proc/$hspid/exe)\" != \"$(readlink /proc/$$/exe)\" ]" 50
$MEMTAP attach --via=ebpf --heap-events -p $hspid -d 0.3 -o "$TMP/hn" > "$TMP/hn.txt" 2>&1
like "$(cat "$TMP/hn.txt")" "Heap events \(--heap-events\): none" "--heap-events with no heap event: the report says none happened"
# The snapshots' reasons: the end of the attach (-d), the process's exit.
like "$(cat "$TMP/hn.txt")" "snapshot #0 at .* \(detach\)" "a process still running at the end of attach -d: reason detach"
is "$(jq -r '.processes[0].reason' "$TMP/ar.json")" exit "a process that exited while attached: reason exit"
is "$(jq -r '.processes[0].reason' "$TMP/t.json")" exit "run --via=ebpf: the command exited: reason exit"

# --- the summary and where the probes went ------------------------------------
$MEMTAP run --via=ebpf -v -o "$TMP/s" -- "$FIX/threads_malloc" 1 20 100 2> "$TMP/s.txt"
ok $? "run --via=ebpf -v with the summary on stderr"
like "$(cat "$TMP/s.txt")" "probe free +.*$LIBC \+3: after test" "free is probed at +3, after its test (not single-stepped)"
grep -q '^              64 |@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@ 20       $' "$TMP/s.txt"
ok $? "quantize row in DTrace's layout: malloc(100) x20 fills the 64 bucket"

# --- refusals -----------------------------------------------------------------
out=$($MEMTAP attach -p $$ --heap-events 2>&1)
is "$?" 2 "an eBPF-only option without --via=ebpf exits 2"
like "$out" "--heap-events.* need --via=ebpf" "... saying which --via it needs"
out=$($MEMTAP attach --via=ebpf -p 999999999 2>&1)
is "$?" 1 "attach to a process that does not exist fails"
like "$out" "process 999999999 does not exist" "... saying so"
sleep 1000 &
spid=$!
at_exit "kill $spid"
# until it has exec'd sleep, the child is a copy of this shell (other symbols)
wait_for "[ \"\$(readlink /proc/$spid/exe)\" != \"$(readlink /proc/$$/exe)\" ]" 50
out=$($MEMTAP attach --via=ebpf -p $spid -f mallok 2>&1)
is "$?" 1 "-f with an unknown function fails"
like "$out" "function mallok not found .*near: .*malloc" "... listing near matches"
out=$(setpriv --reuid=65534 --regid=65534 --clear-groups $MEMTAP attach --via=ebpf -p $spid 2>&1)
like "$out" "needs root.*run as root" "not root: says to run as root"
out=$($MEMTAP run --via=ebpf --leaks -- true 2>&1)
like "$out" "needs the agent" "run --via=ebpf refuses agent-only options"
