#!/bin/bash
# memtap demo, and `make install PREFIX=...`: the installed CLI finds its
# agent without any environment variable.
. "$(dirname "$0")/../lib.sh"
plan 8

out=$($MEMTAP demo 2>&1)
ok $? "memtap demo exits 0"
dir=$(sed -n 's|^\$ memtap run .* -o \(/tmp/memtap-demo\.[^/]*\)/demo -- .*|\1|p' <<<"$out")
[ -n "$dir" ] && at_exit "rm -rf '$dir'"
like "$out" "served 300 requests" "the demo workload ran"
like "$out" "Calls per function:" "and its report is printed"
# The workload's pool takes one 8 KiB block per request from malloc.
row=$(printf '%s\n' "$out" | awk '/^  malloc +$/ {m = 1} m && /^ +8192 \|/ {print; exit}')
like "$row" "^            8192 \|@+ +300 +$" "malloc's quantize table: the pool's 300 blocks in the 8192 bucket"

make -s -C "$ROOT" install PREFIX="$TMP/inst" >/dev/null
ok $? "make install PREFIX=..."
[ -x "$TMP/inst/bin/memtap" ] && [ -f "$TMP/inst/lib/memtap/libmemtap.so" ]
ok $? "installs bin/memtap and lib/memtap/libmemtap.so"
env -u LD_PRELOAD "$TMP/inst/bin/memtap" run -q -o "$TMP/i" -- "$FIX/threads_malloc" 1 5 10
ok $? "the installed memtap runs a program"
is "$("$TMP/inst/bin/memtap" report --format=json "$TMP"/i.*.mtp | jq '.processes[0].functions.malloc.calls')" 5 \
	"and its agent counted it"
