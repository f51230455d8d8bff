#!/bin/bash
# memtap top on a pipe: one plain snapshot per interval, -n COUNT of them,
# figures that agree with what the fixture does (top_churn: HOLD blocks kept,
# RATE malloc/free pairs a second, FAILS failing callocs a second); the
# program it started is stopped at the end; errors say what was wrong.
. "$(dirname "$0")/../lib.sh"
command -v jq >/dev/null || skip_all "jq is missing"
plan 22

CHURN="$FIX/top_churn"
cd "$TMP"

# -- CMD: 3 snapshots half a second apart.
t0=$(date +%s%N)
$MEMTAP top -n 3 --interval=0.5 -o "$TMP/p" -- "$CHURN" -H 50 -r 2000 -e 4 > "$TMP/out" 2> "$TMP/err"
rc=$?
t1=$(date +%s%N)
is "$rc" 0 "top -n 3 -- CMD exits 0 (the program stopped as asked)"
is "$(grep -c '^memtap top - ' "$TMP/out")" 3 "prints exactly 3 snapshots"
el=$(( (t1 - t0) / 1000000 ))
ok $([ "$el" -ge 1000 ] && [ "$el" -lt 8000 ]; echo $?) "at the interval asked for (3 snapshots in ${el} ms)"
like "$(head -1 "$TMP/out")" "all 1 process, running top_churn" "the title names the program"
# The last snapshot's rows.
last=$(awk '/^memtap top - /{n++} n==3' "$TMP/out")
mrow=$(printf '%s\n' "$last" | awk '$1 == "malloc"')
crow=$(printf '%s\n' "$last" | awk '$1 == "calloc"')
diag "malloc: $mrow"
diag "calloc: $crow"
mrate=$(echo "$mrow" | awk '{print $2}')
ok $([ "$mrate" -ge 1400 ] && [ "$mrate" -le 2600 ]; echo $?) "malloc calls/s near the fixture's 2000 ($mrate)"
frate=$(echo "$crow" | awk '{print $4}')
ok $([ "$frate" -ge 1 ] && [ "$frate" -le 9 ]; echo $?) "calloc failures/s near the fixture's 4 ($frate)"
cfail=$(echo "$crow" | awk '{print $7}'); ccalls=$(echo "$crow" | awk '{print $5}')
is "$cfail" "$ccalls" "every calloc of the fixture failed, and top says so"
inuse=$(printf '%s\n' "$last" | awk '/^in use /{print $3}')
is "$inuse" 50000 "in use: the 50 blocks of 1000 bytes the fixture keeps"
# The totals grow from one snapshot to the next; rates are over the interval.
c1=$(awk '/^memtap top - /{n++} n==1 && $1 == "malloc" {print $5}' "$TMP/out")
c3=$(echo "$mrow" | awk '{print $5}')
ok $([ "$c3" -gt "$c1" ]; echo $?) "malloc calls so far grow between snapshots ($c1, then $c3)"
# The final profile of the run agrees with the last snapshot.
prof=$(ls "$TMP"/p.*.mtp | head -1)
$MEMTAP report --format=json "$prof" > "$TMP/p.json"
fc=$(fn_field "$TMP/p.json" malloc calls)
ok $([ "$fc" -ge "$c3" ] && [ "$fc" -le $((c3 + 2000)) ]; echo $?) "the final profile has the calls top showed last, and at most a second more ($c3, then $fc)"
is "$(json "$TMP/p.json" '.processes[0].ended.signal')" SIGINT "the final profile says it ended by the SIGINT top sent"
like "$(cat "$TMP/err")" "stopped, as asked, by signal 2" "says the program was stopped by SIGINT"
pgrep -f "$CHURN -H 50 -r 2000" > /dev/null
is "$?" 1 "the program is gone"
like "$(cat "$TMP/err")" "output is in $TMP/p.out" "says where the program's output went"

# --sort=calls on a pipe: free (as many calls as malloc) before calloc.
$MEMTAP top -n 1 --interval=0.3 --sort=calls -o "$TMP/q" -- "$CHURN" -r 1000 -e 50 > "$TMP/out2" 2>/dev/null
order=$(awk '$1 == "malloc" || $1 == "free" || $1 == "calloc" {printf "%s ", $1}' "$TMP/out2")
like "$order" "^(malloc free|free malloc) calloc $" "--sort=calls: calloc's 50 calls/s after the 1000/s"
$MEMTAP top -n 1 --interval=0.3 --sort=name -o "$TMP/q2" -- "$CHURN" -r 1000 -e 50 > "$TMP/out3" 2>/dev/null
order=$(awk '$1 == "malloc" || $1 == "free" || $1 == "calloc" {printf "%s ", $1}' "$TMP/out3")
is "$order" "calloc free malloc " "--sort=name"

# Errors.
$MEMTAP top -b -n 1 -p 2147483646 > /dev/null 2> "$TMP/err"
is "$?" 1 "a pid that does not exist"
like "$(cat "$TMP/err")" "no process with pid 2147483646" "is refused, naming it"
$MEMTAP top > /dev/null 2> "$TMP/err"
is "$?" 2 "no process and no command"
like "$(head -1 "$TMP/err")" "which processes\? pass -p PID, or a command" "says what to pass"
$MEMTAP top --sort=size -- true > /dev/null 2> "$TMP/err"
like "$(cat "$TMP/err")" "--sort=size: expected bytes, calls, failed, total or name" "an unknown sort key lists the keys"
$MEMTAP top -n 0 -- true > /dev/null 2> "$TMP/err"
like "$(cat "$TMP/err")" "-n 0: expected a number of screens" "-n 0 is refused"
