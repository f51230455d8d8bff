#!/bin/bash
# Timelines (--interval): memtap samples every process of the session from
# outside and puts the series into each final profile.  seeds/002 in
# miniature (stream_leak: a streaming child whose memory grows on every
# read, request children whose memory comes back): one rising line, flat
# ones, each child linked to its parent; the points add up exactly to the
# final counts; a child killed by SIGKILL keeps its series; the same under
# attach --via=inject and --via=ebpf.
. "$(dirname "$0")/../lib.sh"
plan 23
command -v jq >/dev/null || skip_all "jq is missing"

export MEMTAP_RUNDIR="$TMP/run"
mkdir -p "$MEMTAP_RUNDIR"
chmod 1777 "$MEMTAP_RUNDIR"

# 3 children, 20 reads 50 ms apart: about 1 s, points every 0.1 s.
$MEMTAP run -q --interval=0.1 -o "$TMP/s" -- "$FIX/stream_leak" 3 20 50
ok $? "stream_leak runs under memtap run --interval=0.1"
$MEMTAP report --format=json "$TMP"/s.*.mtp > "$TMP/s.json"
final='[.processes[] | select(.reason == "exit")]'
is "$(jq "$final | map(select(.timeline.points | length >= 6)) | length" "$TMP/s.json")" 4 \
	"each of the 4 processes' final profile carries its timeline (6 points or more)"
is "$(jq '[.processes[] | select(.reason != "exit") | select(.timeline)] | length' "$TMP/s.json")" 0 \
	"the periodic profiles do not repeat the series"
parent=$(jq "$final | map(select(.timeline.parent == null))[0]" "$TMP/s.json")
ppid=$(echo "$parent" | jq .pid)
pstart=$(echo "$parent" | jq .start_ns)
is "$(jq --argjson p "$ppid" --argjson s "$pstart" "$final | map(select(.timeline.parent.pid == \$p and .timeline.parent.start_ns == \$s)) | length" "$TMP/s.json")" 3 \
	"the 3 children name their parent (pid $ppid and its start)"
# The streaming child: in use rises by 4 KiB per read, never comes down.
rising="$final | map(select(.timeline.points[-1].in_use_bytes - .timeline.points[0].in_use_bytes > 40000))"
is "$(jq "$rising | length" "$TMP/s.json")" 1 "one line rises (the streaming child: > 40 kB more at the end)"
is "$(jq "$rising | map(.timeline.points | [range(1; length) as \$i | select(.[\$i].in_use_bytes < .[\$i-1].in_use_bytes)] | length)[0]" "$TMP/s.json")" 0 \
	"and never comes down"
flat="$final | map(select(.timeline.parent != null) | select(([.timeline.points[].in_use_bytes] | max) - ([.timeline.points[].in_use_bytes] | min) < 4096))"
is "$(jq "$flat | length" "$TMP/s.json")" 2 "two lines are flat (the request children: their memory comes back)"
is "$(jq "$flat | map([.timeline.points[].alloc_calls] | add)[] " "$TMP/s.json" | sort -u)" 1280 \
	"and they allocated all along (1280 mallocs each, in the points)"
is "$(jq "$final | map(select(([.timeline.points[].alloc_bytes] | add) == .totals.allocated_bytes and ([.timeline.points[].free_bytes] | add) == .totals.freed_bytes)) | length" "$TMP/s.json")" 4 \
	"every process's points add up to its final allocated and freed bytes"
is "$(jq "$final | map(select(([.timeline.points[].alloc_calls] | add) == ([.functions[] | select(.kind == \"alloc\") | .calls] | add // 0))) | length" "$TMP/s.json")" 4 \
	"and to its final allocation calls"
is "$(jq "$final | map(.timeline.points[:-1][] | select((.rss_bytes // 0) < 100000)) | length" "$TMP/s.json")" 0 \
	"every point taken while the process ran has its RSS"
is "$(jq "$final | map(.timeline.points | [range(1; length) as \$i | select(.[\$i].t_ns <= .[\$i-1].t_ns)] | length) | add" "$TMP/s.json")" 0 \
	"points are in time order"
span=$(jq "$final | map(.timeline.points[1:-1][].span_ns) | sort | .[length / 2 | floor]" "$TMP/s.json")
ok $(( span > 80000000 && span < 200000000 ? 0 : 1 )) "points are about 0.1 s apart (median $span ns)"

# A child killed by SIGKILL keeps every point up to its end.
$MEMTAP run -q --interval=0.1 -o "$TMP/k" -- "$FIX/stream_leak" 2 100 20 &
RUN=$!
at_exit "kill $RUN"
wait_for "pgrep -x stream_leak | wc -l | grep -qx 3"
sleep 1
victim=$(pgrep -x stream_leak | sort -n | sed -n 2p)  # the first child: the streaming one
kill -9 "$victim"
wait $RUN
$MEMTAP report --format=json "$TMP"/k.$victim.*.mtp > "$TMP/k.json"
killed=$(jq '.processes[] | select(.reason == "exit")' "$TMP/k.json")
like "$(echo "$killed" | jq -r '.ended.how + " " + (.ended.signal // "")')" "^(signal SIGKILL|vanished )$" \
	"the streaming child's final profile says it was killed (its parent reaped it: 'vanished')"
ok $(( $(echo "$killed" | jq '.timeline.points | length') >= 7 ? 0 : 1 )) "its final profile has its timeline ($(echo "$killed" | jq '.timeline.points | length') points)"
is "$(echo "$killed" | jq '([.timeline.points[].alloc_bytes] | add) == .totals.allocated_bytes')" true \
	"with every byte it allocated up to its end"

# attach --via=inject: a running streaming process, 1.5 s at --interval=0.2.
"$FIX/stream_leak" 1 200 20 &
PARENT=$!
at_exit "kill $PARENT; pkill -P $PARENT"
wait_for "pgrep -P $PARENT"
CHILD=$(pgrep -P $PARENT)
$MEMTAP attach -p "$CHILD" -q -d 1.5 --interval=0.2 -o "$TMP/a" 2> "$TMP/a.err"
ok $? "attach --via=inject -d 1.5 --interval=0.2"
$MEMTAP report --format=json "$TMP"/a.$CHILD.*.mtp > "$TMP/a.json"
last=$(jq '.processes[] | select(.reason == "detach")' "$TMP/a.json")
n=$(echo "$last" | jq '.timeline.points | length')
ok $(( n >= 5 && n <= 9 ? 0 : 1 )) "its detach profile has the timeline ($n points for 1.5 s)"
is "$(echo "$last" | jq '.timeline.points[-1].in_use_bytes > .timeline.points[0].in_use_bytes and ([.timeline.points[].alloc_bytes] | add) == .totals.allocated_bytes')" true \
	"rising, and adding up to what the attach counted"
kill -0 "$CHILD"
ok $? "the attached process runs on"

# eBPF: the same series from the BPF maps.
if [ "$(id -u)" != 0 ] || [ ! -r /sys/kernel/btf/vmlinux ] || ! $MEMTAP attach --help | grep -q -- --via=ebpf; then
	for i in 1 2 3; do skip "eBPF needs root, BTF and a build with the eBPF backend"; done
else
	$MEMTAP run --via=ebpf -q --interval=0.2 -o "$TMP/e" -- "$FIX/stream_leak" 2 30 50 2> "$TMP/e.err"
	ok $? "run --via=ebpf --interval=0.2"
	$MEMTAP report --format=json "$TMP"/e.*.mtp > "$TMP/e.json" 2>/dev/null
	is "$(jq "$final | map(select(.timeline.points | length >= 4)) | length" "$TMP/e.json")" 3 \
		"every process's final profile has its timeline"
	is "$(jq "$final | map(select(.timeline.points[-1].in_use_bytes - .timeline.points[0].in_use_bytes > 40000)) | length" "$TMP/e.json")" 1 \
		"one of them rises (in use from the functions' bytes: eBPF keeps no usable-size totals)"
fi
kill $PARENT 2>/dev/null
