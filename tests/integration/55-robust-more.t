#!/bin/bash
# More ways a traced program can live and die, each checked for the
# program's own result and for consistent memtap figures; other allocators;
# a full disk while dumping.
. "$(dirname "$0")/../lib.sh"
plan 32
R="$FIX/robust"

out=$($MEMTAP run -q -o "$TMP/f" -- "$R" forkmt)
ok $? "fork from a process with 4 allocating threads, 20 times"
is "$out" "ok 20" "every child exited 0"
is "$(ls "$TMP"/f.*.mtp | wc -l)" 21 "the parent and each child wrote a profile"
$MEMTAP report --format=json "$TMP"/f.*.mtp > "$TMP/f.json"
is "$(jq '[.processes[] | select(.functions.malloc.calls == 100)] | length' "$TMP/f.json")" 20 \
	"each child counted exactly its own 100 mallocs"

out=$($MEMTAP run -q -o "$TMP/s" -- "$R" spawn)
ok $? "vfork+exec and posix_spawn"
is "$out" "ok 20" "all 20 spawned programs ran and exited 0"
# /bin/true is traced too (follow): 20 more processes.
is "$(ls "$TMP"/s.*.mtp | wc -l)" 21 "each spawned program wrote its own profile"

out=$($MEMTAP run -q -o "$TMP/j" -- "$R" longjmp)
ok $? "longjmp out of a qsort callback that allocates, 1000 times"
is "$out" "ok 1000" "every jump landed"
$MEMTAP report --format=json "$TMP"/j.*.mtp > "$TMP/j.json"
is "$(bucket "$TMP/j.json" malloc 32)" 50000 "all 50 x 1000 malloc(32) in the callbacks counted"

out=$($MEMTAP run -q -o "$TMP/m" -- "$R" memalign)
ok $? "malloc_usable_size and realloc on memalign'd blocks"
is "$out" "ok 400" "all 400 checks of the program hold"
$MEMTAP report --format=json "$TMP"/m.*.mtp > "$TMP/m.json"
is "$(fn_field "$TMP/m.json" memalign calls)" 100 "memalign x100"
inuse=$(jq '.processes[0].totals.in_use_bytes' "$TMP/m.json")
[ "$inuse" -ge 0 ] && [ "$inuse" -le 8192 ]
ok $? "nothing left in use but stdout's buffer ($inuse bytes)"

out=$(ulimit -v 400000; $MEMTAP run -q -o "$TMP/n" -- "$R" nullmalloc)
ok $? "malloc returning NULL under ulimit -v"
like "$out" "^ok [1-9]" "the program saw NULLs and carried on"
$MEMTAP report --format=json "$TMP"/n.*.mtp > "$TMP/n.json"
is "$(fn_field "$TMP/n.json" malloc failed)" "${out#ok }" "memtap counts exactly the failed mallocs the program saw"

cat > "$TMP/dl.c" <<'C'
#include <stdlib.h>
#include <string.h>
static char *held;
__attribute__((constructor)) static void init(void) { held = malloc(1000); memset(held, 1, 1000); }
__attribute__((destructor)) static void fini(void) { free(held); }
long alloc_something(int i) { char *p = malloc(100 + i); p[0] = 2; long v = p[0] + held[0]; free(p); return v; }
C
cc -O1 -shared -fPIC -o "$TMP/libdl.so" "$TMP/dl.c"
out=$($MEMTAP run -q -o "$TMP/d" -- "$R" dlopen "$TMP/libdl.so")
ok $? "dlopen/dlclose of a library that allocates, 50 times"
is "$out" "ok 150" "its function returned the right values"
$MEMTAP report --format=json "$TMP"/d.*.mtp > "$TMP/d.json"
is "$(bucket "$TMP/d.json" malloc 512)" 50 "its constructor's malloc(1000) counted at each load"

# SIGSEGV: the dump written before the crash survives intact.
$MEMTAP run -q --interval=0.2 -o "$TMP/v" -- sh -c "sleep 0.5; exec $R segv" 2>/dev/null
is "$?" $((128 + 11)) "a SIGSEGV: memtap run exits 128 + 11"
dumps=$(ls "$TMP"/v.*.mtp 2>/dev/null | wc -l)
[ "$dumps" -ge 1 ]
ok $? "periodic dumps written before the crash are there ($dumps)"
$MEMTAP report "$TMP"/v.*.mtp > /dev/null
ok $? "and every one of them reads back"

# Other allocators, preloaded after the agent: exact counts, and stats name them.
for lib in libjemalloc.so.2 libtcmalloc_minimal.so.4 libmimalloc.so.2; do
	path=/usr/lib/x86_64-linux-gnu/$lib
	if [ ! -e "$path" ]; then
		skip "$lib is not installed"; skip "$lib is not installed"; continue
	fi
	LD_PRELOAD=$path $MEMTAP run -q -o "$TMP/$lib" -- "$FIX/threads_malloc" 4 25000 12345
	ok $? "threads_malloc under $lib"
	$MEMTAP report --format=json "$TMP/$lib".*.mtp > "$TMP/$lib.json"
	is "$(bucket "$TMP/$lib.json" malloc 8192)" 100000 "$lib: 100000 malloc(12345) counted exactly"
done

# A full disk while dumping: the dump fails cleanly, the process runs on and
# the previous dump is intact.
if [ "$(id -u)" = 0 ] && mkdir -p "$TMP/small" && mount -t tmpfs -o size=64k tmpfs "$TMP/small" 2>/dev/null; then
	at_exit "umount $TMP/small"
	coproc TGT { exec $MEMTAP run -q -o "$TMP/small/p" -- "$FIX/ctl_target"; }
	at_exit "kill $TGT_PID"
	wait_for "pgrep -P $TGT_PID" && TPID=$(pgrep -P $TGT_PID)
	wait_for "test -S /tmp/memtap-0/$TPID.sock"
	first=$($MEMTAP ctl $TPID dump)
	sum=$(md5sum < "$first")
	head -c 200000 /dev/zero > "$TMP/small/filler" 2>/dev/null
	$MEMTAP ctl $TPID dump > /dev/null 2> "$TMP/err.txt"
	like "$(cat "$TMP/err.txt")" "No space left on device" "a dump on a full disk fails with the reason"
	echo "alloc 1 10" >&"${TGT[1]}"; read -r -t 5 -u "${TGT[0]}" line
	is "$line" done "the process runs on"
	is "$(md5sum < "$first")" "$sum" "the previous dump is intact"
	echo quit >&"${TGT[1]}"
else
	skip "needs root to mount a small tmpfs"; skip "needs root"; skip "needs root"
fi
