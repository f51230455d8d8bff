#!/bin/bash
# memtap top -p on processes another memtap traces (memtap run, memtap
# attach): top watches their live counter files, writes nothing, takes
# nothing from their session; with --stacks the top call sites are
# symbolized; the other memtap ends its session as it would have.
. "$(dirname "$0")/../lib.sh"
command -v jq >/dev/null || skip_all "jq is missing"
plan 16

CHURN="$FIX/top_churn"
cd "$TMP"
# memtap run traces the fixture: 500 pairs a second, 20 blocks of 1000 kept.
$MEMTAP run -q --stacks --sample=1 -o "$TMP/r" -- "$CHURN" -r 500 -H 20 &
RPID=$!
at_exit "kill $RPID"
wait_for "pgrep -P $RPID" 50
FPID=$(pgrep -P $RPID)
at_exit "kill $FPID"
wait_for "ls /dev/shm/memtap-$(id -u)/$FPID-*.mtl" 50

$MEMTAP top -b -n 2 --interval=0.5 -o "$TMP/w" -p $FPID > "$TMP/out" 2> "$TMP/err"
is "$?" 0 "top -b -n 2 -p PID of a memtap run exits 0"
is "$(grep -c '^memtap top - ' "$TMP/out")" 2 "2 snapshots"
like "$(head -1 "$TMP/out")" "watching \(another memtap traces them\)" "it says it watches"
last=$(awk '/^memtap top - /{n++} n==2' "$TMP/out")
rate=$(printf '%s\n' "$last" | awk '$1 == "malloc" {print $2}')
ok $([ "$rate" -ge 300 ] && [ "$rate" -le 700 ]; echo $?) "malloc calls/s near the fixture's 500 ($rate)"
like "$(printf '%s\n' "$last" | grep -A12 'TOP CALL SITES')" "20000 +20 .* malloc +main \(top_churn\.c:[0-9]+\)" "the top call site: main's 20 blocks in use, symbolized"
like "$(printf '%s\n' "$last" | grep -A12 'TOP CALL SITES')" "malloc +churn \(top_churn\.c:[0-9]+\) < main" "and the churning one, with its caller"
is "$(ls "$TMP"/w.* "$TMP"/r.* 2>/dev/null)" "" "top wrote no profile, nor made the run write one"
kill -0 $FPID
ok $? "the fixture runs on"
kill -0 $RPID
ok $? "and so does memtap run"
kill -TERM $FPID
wait $RPID
is "$?" 143 "memtap run ends as its program does (SIGTERM: 143)"
n=$(ls "$TMP"/r.$FPID.*.mtp 2>/dev/null | wc -l)
is "$n" 1 "memtap run wrote the final profile itself"
$MEMTAP report --format=json "$TMP"/r.$FPID.*.mtp > "$TMP/r.json"
is "$(json "$TMP/r.json" '.processes[0].ended.signal')" SIGTERM "with how it ended"

# A process attached to by another memtap attach: watched too; the attach
# goes on, and ends as it would have.
"$CHURN" -r 200 &
APID=$!
at_exit "kill $APID"
$MEMTAP attach -p $APID -d 4 -q -o "$TMP/a" 2> "$TMP/attach.err" &
ATT=$!
at_exit "kill $ATT"
wait_for "$MEMTAP ctl $APID status 2>/dev/null | grep -q 'mode: attached'" 50
$MEMTAP top -b -n 1 --interval=0.3 -p $APID > "$TMP/out2" 2>&1
like "$(head -1 "$TMP/out2")" "watching" "top -p on a process memtap attach traces watches it"
like "$($MEMTAP ctl $APID status 2>&1)" "mode: attached" "the attach goes on"
wait $ATT
is "$?" 0 "memtap attach ends by itself after -d"
like "$(cat "$TMP/attach.err")" "detached from $APID; its last profile is $TMP/a.$APID.0.mtp" "with its last profile, written by it"
