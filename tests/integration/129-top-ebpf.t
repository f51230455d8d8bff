#!/bin/bash
# memtap top --via=ebpf -p PID: the same view from the BPF maps (nothing
# loaded into the process); q or -n ends it, the probes go, the process runs
# on.  Needs root and BTF.
. "$(dirname "$0")/../lib.sh"
[ "$(id -u)" = 0 ] || skip_all "the eBPF backend needs root"
[ -r /sys/kernel/btf/vmlinux ] || skip_all "no BTF (/sys/kernel/btf/vmlinux): the eBPF backend needs it"
$MEMTAP attach --help | grep -q -- --via=ebpf || skip_all "build/memtap was built without the eBPF backend"
plan 8

CHURN="$FIX/top_churn"
"$CHURN" -r 800 -b "$TMP/beat" &
CPID=$!
at_exit "kill $CPID"
wait_for "[ -s $TMP/beat ]"

$MEMTAP top --via=ebpf -b -n 2 --interval=0.5 -o "$TMP/e" -p $CPID > "$TMP/out" 2> "$TMP/err"
is "$?" 0 "top --via=ebpf -b -n 2 exits 0"
is "$(grep -c '^memtap top - ' "$TMP/out")" 2 "2 snapshots"
like "$(head -1 "$TMP/out")" "attached with eBPF" "the title says eBPF"
last=$(awk '/^memtap top - /{n++} n==2' "$TMP/out")
rate=$(printf '%s\n' "$last" | awk '$1 == "malloc" {print $2}')
ok $([ "$rate" -ge 500 ] && [ "$rate" -le 1100 ]; echo $?) "malloc calls/s near the fixture's 800 ($rate)"
c1=$(awk '/^memtap top - /{n++} n==1 && $1 == "malloc" {print $5}' "$TMP/out")
c2=$(printf '%s\n' "$last" | awk '$1 == "malloc" {print $5}')
ok $([ "$c2" -gt "$c1" ]; echo $?) "its calls grow between snapshots ($c1, then $c2)"
is "$(cat "$TMP/err")" "" "nothing on stderr: no probe failed, the summary is left out"
beats=$(wc -l < "$TMP/beat")
wait_for "[ \$(wc -l < $TMP/beat) -ge $((beats + 1)) ]" 30
ok $? "the process runs on"
grep -q libmemtap /proc/$CPID/maps
is "$?" 1 "nothing was loaded into it"
