#!/bin/bash
# The traced process is never harmed: signal handlers that allocate, thread
# storms, daemons that close every descriptor, abnormal exits.
. "$(dirname "$0")/../lib.sh"
plan 24

out=$($MEMTAP run -q -o "$TMP/s" -- "$FIX/robust" signals)
ok $? "a SIGALRM handler that mallocs every 100 us: the program's checksum holds"
like "$out" "^ok [0-9]+ [0-9]+" "the program reports its own result"
handled=${out##* }
$MEMTAP report --format=json "$TMP"/s.*.mtp > "$TMP/s.json"
calls=$(fn_field "$TMP/s.json" malloc calls)
# Handler allocations that interrupt an allocation in progress pass through
# uncounted (documented); all others are counted.
# (+1: printf's stdout buffer.)
[ "$calls" -ge 200000 ] && [ "$calls" -le $((200000 + handled + 1)) ]
ok $? "malloc calls ($calls) between the main loop's 200000 and that plus the $handled handler runs"

out=$($MEMTAP run -q -o "$TMP/t" -- "$FIX/robust" storm)
ok $? "2000 short-lived threads"
is "$out" "ok 2000" "each thread's result is right"
$MEMTAP report --format=json "$TMP"/t.*.mtp > "$TMP/t.json"
is "$(bucket "$TMP/t.json" malloc 512)" 2000 "every thread's malloc(777) is counted, once"
is "$(bucket "$TMP/t.json" free 512)" 2000 "and every free"

$MEMTAP run -q -o "$TMP/c" -- "$FIX/robust" closefds > "$TMP/c.out" &
runpid=$!
wait_for "grep -q ok $TMP/c.out"
tpid=$(pgrep -P $runpid)
like "$($MEMTAP ctl $tpid status)" "state: active" "ctl still works after the program closed every descriptor"
wait $runpid
ok $? "the program exits 0"
is "$(cat "$TMP/c.out")" "ok 1000" "and computed its result"

$MEMTAP run -q -o "$TMP/a" -- "$FIX/robust" abort 2>/dev/null
is "$?" 134 "abort(): memtap run exits 128 + SIGABRT"
$MEMTAP run -o "$TMP/a2" -- "$FIX/robust" abort 2> "$TMP/err.txt"
like "$(cat "$TMP/err.txt")" "process [0-9]+ .* killed by SIGABRT; profile recovered" \
	"the summary says how the process ended, and that its profile was recovered"

# The traced program's own output is untouched.
is "$($MEMTAP run -q -o "$TMP/e" -- echo hello)" "hello" "stdout passes through unchanged"
is "$($MEMTAP run -q -o "$TMP/e2" -- sh -c 'echo err >&2' 2>&1 >/dev/null)" "err" "stderr too (with -q)"

# Programs memtap cannot preload into are refused up front, with the reason.
cp "$FIX/threads_malloc" "$TMP/suid" && chmod u+s "$TMP/suid"
if [ "$(id -u)" = 0 ]; then
	chown 65534 "$TMP/suid" && chmod u+s "$TMP/suid"
	$MEMTAP run -q -o "$TMP/u" -- "$TMP/suid" 1 1 1 2> "$TMP/err.txt"
	is "$?" 2 "a set-user-ID program of another user is refused"
	like "$(cat "$TMP/err.txt")" "set-user-ID .* ignores LD_PRELOAD" "saying why"
else
	skip "needs root to make a set-user-ID file of another user"; skip "needs root"
fi
if cc -static -o "$TMP/static" "$ROOT/tests/fixtures/threads_malloc.c" -lpthread 2>/dev/null; then
	$MEMTAP run -q -o "$TMP/st" -- "$TMP/static" 1 1 1 2> "$TMP/err.txt"
	is "$?" 2 "a statically linked program is refused"
	like "$(cat "$TMP/err.txt")" "statically linked" "saying why"
else
	skip "no static libc to build a static program"; skip "no static libc"
fi
cp "$FIX/threads_malloc" "$TMP/elf32"
printf '\x01' | dd of="$TMP/elf32" bs=1 seek=4 conv=notrunc status=none # EI_CLASS = ELFCLASS32
$MEMTAP run -q -o "$TMP/32" -- "$TMP/elf32" 1 1 1 2> "$TMP/err.txt"
is "$?" 2 "a 32-bit program is refused"
like "$(cat "$TMP/err.txt")" "32-bit|not a readable ELF" "saying why"

# A non-PIE program that takes malloc's address (Debian's python3 does, in
# its allocator table): the address is then the program's own PLT stub, and
# the agent must still know it was preloaded (it once hung here).
cat > "$TMP/fp.c" <<'C'
#include <stdio.h>
#include <stdlib.h>
void *(*volatile alloc_fn)(size_t) = malloc;
void (*volatile free_fn)(void *) = free;
int main(void) { for (int i = 0; i < 10; i++) free_fn(alloc_fn(100)); puts("fp ok"); return 0; }
C
if cc -no-pie -fno-pie -O1 -o "$TMP/fp" "$TMP/fp.c" 2>/dev/null; then
	is "$(timeout 20 $MEMTAP run -q -o "$TMP/fp" -- "$TMP/fp")" "fp ok" "a non-PIE program calling malloc through a pointer runs"
	$MEMTAP report --format=json "$TMP"/fp.*.mtp > "$TMP/fp.json"
	is "$(bucket "$TMP/fp.json" malloc 64)" 10 "and its calls through the pointer are counted"
	is "$(timeout 20 env LD_PRELOAD="$ROOT/$BUILDDIR/libmemtap.so" MEMTAP_PREFIX="$TMP/fp2" "$TMP/fp")" "fp ok" \
		"also preloaded by hand (no memtap run)"
else
	skip "cannot build a non-PIE program"; skip "no -no-pie"; skip "no -no-pie"
fi
if [ -x /usr/bin/python3 ]; then
	is "$(timeout 30 $MEMTAP run -q -o "$TMP/py" -- /usr/bin/python3 -c 'print(6 * 7)')" 42 "Debian's python3 runs under memtap"
else
	skip "/usr/bin/python3 is not installed"
fi
