#!/bin/bash
# Exact counts: fixtures with known allocation patterns, run under memtap run.
. "$(dirname "$0")/../lib.sh"
plan 55

# 4 threads x 25,000 malloc(12345): exactly 100,000 in malloc's 8192 bucket.
$MEMTAP run -q -o "$TMP/t" -- "$FIX/threads_malloc" 4 25000 12345
ok $? "threads_malloc runs and exits 0 under memtap"
f=$(ls "$TMP"/t.*.mtp)
$MEMTAP report --format=json $f > "$TMP/t.json"
ok $? "report --format=json reads the profile"
is "$(fn_field "$TMP/t.json" malloc calls)" 100000 "malloc calls: 4 x 25000"
is "$(bucket "$TMP/t.json" malloc 8192)" 100000 "all 100000 in the 8192 bucket"
is "$(jq '.processes[0].functions.malloc.hist | length' "$TMP/t.json")" 1 "no other malloc bucket"
is "$(fn_field "$TMP/t.json" malloc bytes)" $((100000 * 12345)) "malloc bytes requested"
# Thread creation and exit add a few frees of glibc's own; the fixture's are
# the ones of usable size 12360.
is "$(bucket "$TMP/t.json" free 8192)" 100000 "100000 frees of the 12345-byte blocks"
is "$(jq '.processes[0].totals.in_use_bytes' "$TMP/t.json")" \
   "$(jq '.processes[0].totals.allocated_bytes - .processes[0].totals.freed_bytes' "$TMP/t.json")" \
   "in use = allocated - freed"
peak=$(jq '.processes[0].totals.peak_in_use_bytes' "$TMP/t.json")
[ "$peak" -ge 12345 ] && [ "$peak" -le $((4 * 12345 + 4 * 65536 + 100000)) ]
ok $? "peak in use ($peak) is at least one block and at most 4 threads' worth plus slack"

# Every C function, each a distinct known number of times (see the fixture).
$MEMTAP run -q -o "$TMP/e" -- "$FIX/every_func"
ok $? "every_func exits 0 under memtap"
$MEMTAP report --format=json "$TMP"/e.*.mtp > "$TMP/e.json"
for pair in malloc:4 calloc:5 realloc:7 reallocarray:2 posix_memalign:4 aligned_alloc:6 \
            memalign:8 valloc:9 pvalloc:10 free:51 mmap:3 munmap:2 mremap:1 sbrk:3 brk:1; do
	is "$(fn_field "$TMP/e.json" "${pair%%:*}" calls)" "${pair#*:}" "${pair%%:*} called ${pair#*:} times"
done
is "$(fn_field "$TMP/e.json" malloc failed)" 1 "the impossible malloc is counted as failed"
is "$(fn_field "$TMP/e.json" mmap failed)" 1 "mmap on a bad fd is counted as failed"
is "$(fn_field "$TMP/e.json" free failed)" 0 "free never fails"
is "$(bucket "$TMP/e.json" free 0)" 3 "free(NULL) x3 in bucket 0"
is "$(bucket "$TMP/e.json" calloc 64)" 5 "calloc(10, 10) x5 in the 64 bucket"
is "$(bucket "$TMP/e.json" pvalloc 4096)" 10 "pvalloc(4097) x10 in the 4096 bucket"
is "$(bucket "$TMP/e.json" mremap 131072)" 1 "mremap to 128 KiB in the 131072 bucket"
is "$(fn_field "$TMP/e.json" munmap bytes)" $((131072 + 4096)) "munmap bytes"
is "$(jq '.processes[0].totals.in_use_bytes' "$TMP/e.json")" 0 "everything allocated was freed"

# The fast paths (malloc and free on glibc, LZCNT histogram bucket) and the
# general path must agree on every figure: MEMTAP_SLOW_PATH=1 closes the
# fast paths.  Figures that differ by path: none (the dump time, pid and the
# agent's own memory are left out).
strip() { jq -c '.processes[0] | {functions, totals: (.totals | del(.agent_bytes))}' "$1"; }
MEMTAP_SLOW_PATH=1 $MEMTAP run -q -o "$TMP/es" -- "$FIX/every_func"
$MEMTAP report --format=json "$TMP"/es.*.mtp > "$TMP/es.json"
is "$(strip "$TMP/es.json")" "$(strip "$TMP/e.json")" "every_func: the general path gives the fast paths' figures"
$MEMTAP run -q -o "$TMP/tf" -- "$FIX/threads_malloc" 3 2000 777
MEMTAP_SLOW_PATH=1 $MEMTAP run -q -o "$TMP/ts" -- "$FIX/threads_malloc" 3 2000 777
$MEMTAP report --format=json "$TMP"/tf.*.mtp > "$TMP/tf.json"
$MEMTAP report --format=json "$TMP"/ts.*.mtp > "$TMP/ts.json"
is "$(strip "$TMP/ts.json")" "$(strip "$TMP/tf.json")" "threads_malloc: the general path gives the fast paths' figures"
like "$(strip "$TMP/tf.json")" '"malloc":\{[^}]*"calls":6000' "... and those are 3 x 2000 mallocs"

# C++ operators, including a std::bad_alloc thrown through the agent.
$MEMTAP run -q -o "$TMP/c" -- "$FIX/cxx_ops"
ok $? "cxx_ops exits 0 under memtap (bad_alloc caught by the program)"
$MEMTAP report --format=json "$TMP"/c.*.mtp > "$TMP/c.json"
for pair in "operator new:5" "operator new[]:4" "operator new(nothrow):2" "operator new(align):4" \
            "operator new[](align):1" "operator delete(sized):5" "operator delete[]:3" \
            "operator delete:2" "operator delete(sized, align):4" "operator delete[](align):1"; do
	is "$(fn_field "$TMP/c.json" "${pair%%:*}" calls)" "${pair#*:}" "${pair%%:*} called ${pair#*:} times"
done
is "$(fn_field "$TMP/c.json" "operator new[]" failed)" 1 "the throwing operator new[] is counted as failed"
is "$(bucket "$TMP/c.json" "operator new(align)" 64)" 4 "aligned new of a 64-byte type in the 64 bucket"

# The summary at exit, in DTrace's layout, on stderr (or --report-file).
$MEMTAP run -o "$TMP/s" -- "$FIX/threads_malloc" 1 20 100 2> "$TMP/stderr.txt"
ok $? "run with the summary on stderr"
grep -q '^Calls per function:$' "$TMP/stderr.txt"
ok $? "summary has the count() table"
row=$(grep -E '^  malloc +[0-9]+$' "$TMP/stderr.txt" | head -1)
is "$row" "$(printf '  %-50s %16d' malloc 20)" "count() row layout: key in 50, count in 16"
grep -q '^           value  ------------- Distribution ------------- count    $' "$TMP/stderr.txt"
ok $? "summary has the quantize() header"
grep -q '^              64 |@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@ 20       $' "$TMP/stderr.txt"
ok $? "quantize row: malloc(100) x20 fills the 64 bucket"
