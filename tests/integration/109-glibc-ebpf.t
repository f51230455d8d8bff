#!/bin/bash
# --glibc with nothing loaded into the process (attach --via=ebpf): glibc's
# state read from outside agrees with malloc_info taken in the process (arena
# and heap counts, the sbrk heap), the program break's growth comes from the
# brk system calls the kernel saw (exact, not sampled), the mmap threshold
# moves after a 200 KiB chunk is freed, and the statistics are what the
# kernel says of the process (no allocator API can be called from outside).
# --heap-events, the old flag, gives the same section.
. "$(dirname "$0")/../lib.sh"
[ "$(id -u)" = 0 ] || skip_all "the eBPF backend needs root"
[ -r /sys/kernel/btf/vmlinux ] || skip_all "no BTF (/sys/kernel/btf/vmlinux): the eBPF backend needs it"
$MEMTAP attach --help | grep -q -- --via=ebpf || skip_all "build/memtap was built without the eBPF backend"
plan 12

send() { echo "$1" >&"${TGT[1]}"; local l; read -r -t 20 -u "${TGT[0]}" l; [ "$l" = done ]; }
coproc TGT { exec "$FIX/glibc_arenas"; }
TPID=$TGT_PID
at_exit "kill $TPID 2>/dev/null"
# malloc_info into stdout once first: its stdio buffer is allocated now,
# not between the profile and the malloc_info it is compared with
info() { echo info >&"${TGT[1]}"; : > "$1"; while read -r -t 20 -u "${TGT[0]}" l && [ "$l" != done ]; do echo "$l" >> "$1"; done; }
info "$TMP/first.xml"
send "threads 2"
$MEMTAP attach --via=ebpf --glibc -p $TPID -d 3 -q -o "$TMP/e" 2> "$TMP/err" &
APID=$!
wait_for "grep -q 'tracing $TPID' $TMP/err"
sleep 0.5
send "heap 2000000"
send "grow 3000000"  # the main arena grows the program break: brk calls
send "big 204800"
send "ungrow"        # and gives it back: brk shrinks
wait $APID
ok $? "attach --via=ebpf --glibc"
f=$(ls "$TMP"/e.$TPID.*.mtp | tail -1)
$MEMTAP report --format=json "$f" > "$TMP/e.json"
G='.processes[0].glibc'
info "$TMP/info.xml"
mi_arenas=$(grep -c '<heap nr=' "$TMP/info.xml")
mi_subheaps=$(awk '/<aspace type="subheaps"/ { match($0, /size="[0-9]+"/); s += substr($0, RSTART+6, RLENGTH-7) } END { print s+0 }' "$TMP/info.xml")
mi_main=$(awk '/<heap nr="0"/{h=1} /<\/heap>/{h=0} h && /<system type="current"/ { match($0, /size="[0-9]+"/); print substr($0, RSTART+6, RLENGTH-7); exit }' "$TMP/info.xml")
is "$(jq "$G.arenas | length" "$TMP/e.json")" "$mi_arenas" "arena count agrees with malloc_info ($mi_arenas: main and two threads, no agent's)"
is "$(jq "$G.heaps | length" "$TMP/e.json")" "$mi_subheaps" "heap count too ($mi_subheaps)"
is "$(jq "$G.sbrk_bytes" "$TMP/e.json")" "$mi_main" "the sbrk heap is the main arena's system bytes ($mi_main)"
like "$(jq -r "$G.source" "$TMP/e.json")" "syscalls" "the program break's growth comes from the system calls"
grow=$(jq "$G.sbrk_grow_bytes" "$TMP/e.json")
calls=$(jq '.processes[0].functions["heap: brk grow"].bytes // 0' "$TMP/e.json")
[ "$grow" -ge 2900000 ] && [ "$grow" = "$calls" ]
ok $? "sbrk growth while traced ($grow bytes) is the brk calls' (the 3 MB grown)"
shrink=$(jq "$G.sbrk_shrink_bytes" "$TMP/e.json")
calls=$(jq '.processes[0].functions["heap: brk shrink"].bytes // 0' "$TMP/e.json")
[ "$shrink" -ge 2900000 ] && [ "$shrink" = "$calls" ]
ok $? "and its shrinking ($shrink bytes) is the brk calls' too"
thr=$(jq "$G.mmap_threshold // 0" "$TMP/e.json")
if [ -z "$(ls /usr/lib/debug/.build-id 2>/dev/null)" ]; then
	skip "libc6-dbg is not installed: no threshold from outside"
else
	[ "$thr" -ge 204800 ]
	ok $? "the mmap threshold, read from outside, moved to $thr after the 200 KiB chunk was freed"
fi
is "$(jq -r '.processes[0].stats.allocator' "$TMP/e.json")" none "statistics from outside: no allocator API"
[ "$(jq '.processes[0].stats.values["smaps_rollup.Rss_bytes"] // 0' "$TMP/e.json")" -gt 0 ]
ok $? "but the kernel's figures (smaps_rollup)"

$MEMTAP attach --via=ebpf --heap-events -p $TPID -d 1 -q -o "$TMP/h" 2> "$TMP/err2"
f=$(ls "$TMP"/h.$TPID.*.mtp | tail -1)
is "$($MEMTAP report --format=json "$f" | jq "$G.arenas | length")" "$mi_arenas" "--heap-events gives the glibc section too"
send "grow 4096"
ok $? "the process runs on"
echo quit >&"${TGT[1]}"
