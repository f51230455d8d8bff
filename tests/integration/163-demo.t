#!/bin/bash
# memtap demo: still the first command (a few seconds), now with call sites,
# the analyses, the pool view of -f, and a flame graph and a pprof file that
# open in their readers; each section introduced in one line.
. "$(dirname "$0")/../lib.sh"
plan 16

start=$(date +%s%N)
out=$($MEMTAP demo 2>&1); rc=$?
ms=$((($(date +%s%N) - start) / 1000000))
dir=$(sed -n 's|^\$ memtap run .* -o \(/tmp/memtap-demo\.[^/]*\)/demo -- .*|\1|p' <<<"$out")
[ -n "$dir" ] && at_exit "rm -rf '$dir'"
is "$rc" 0 "memtap demo exits 0"
ok $([ "$ms" -lt 10000 ]; echo $?) "in a few seconds ($ms ms)"
like "$out" "served 300 requests" "the bundled workload ran"
like "$out" "memtap run --stacks --sample=1 -f pool_alloc:size=arg1:pool=arg0" "with call sites on and its pool function counted, the command shown"
for n in 1 2 3 4 5 6; do
	grep -qE "^$n\. [A-Z].{20,}" <<<"$out"; ok $? "section $n is introduced in one line: $(grep -m1 -E "^$n\. " <<<"$out" | cut -c1-60)..."
done
# The counts, the sizes, the sites, the pools: what each section is about.
row=$(awk '/^  malloc +$/ {m = 1} m && /^ +8192 \|/ {print; exit}' <<<"$out")
like "$row" "^            8192 \|@+ +300 +$" "malloc's quantize: the pool's 300 blocks of 8 KiB"
like "$(sed -n '/^4\. /,/^5\. /p' <<<"$out")" "#1  [0-9]+ requested bytes allocated .* from realloc
 +serve .*workload.c:[0-9]+" "the top call site, symbolized: serve's growing response buffer"
pools=$(sed -n '/^5\. /,/^6\. /p' <<<"$out" | grep -cE '^  0x[0-9a-f]+ +[0-9]+ +[0-9]+$')
ok $([ "$pools" -ge 2 ]; echo $?) "the pool view lists pools with calls and bytes ($pools rows)"
svg=$(sed -n 's/^  flame graph: //p' <<<"$out")
pb=$(sed -n 's/^  pprof: *//p' <<<"$out")
[ -s "$svg" ] && grep -q "<svg" "$svg" && grep -q "pool_alloc" "$svg"
ok $? "the flame graph was written where it says ($svg), with pool_alloc in it"
if command -v go >/dev/null; then
	top=$(HOME=$TMP PPROF_TMPDIR=$TMP go tool pprof -sample_index=alloc_space -top "$pb" 2>/dev/null)
	like "$top" "serve|pool_alloc" "go tool pprof -top reads the pprof file ($pb)"
else
	[ -s "$pb" ] && [ "$(head -c2 "$pb" | od -An -tx1 | tr -d ' ')" = 1f8b ]
	ok $? "the pprof file is gzip data (go is not installed to read it)"
fi
like "$out" "man memtap" "and it ends pointing at what to do next"
