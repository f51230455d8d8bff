#!/bin/bash
# memtap top on a pipe: one plain snapshot per interval, -n COUNT of them,
# figures that agree with what the fixture does (top_churn: HOLD blocks kept,
# RATE malloc/free pairs a second, FAILS failing callocs a second); the
# program it started is stopped at the end; errors say what was wrong.
. "$(dirname "$0")/../lib.sh"
command -v jq >/dev/null || skip_all "jq is missing"
plan 35

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
# In use counts usable bytes: 1000 each, a little more for a block glibc
# serves from a larger free chunk (the heap's layout moves with the paths).
ok $([ "$inuse" -ge 50000 ] && [ "$inuse" -le 51600 ]; echo $?) "in use: the 50 blocks of 1000 bytes the fixture keeps ($inuse usable bytes)"
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

# Pools (-f FUNC:size=argN:pool=argM): top_palloc on pool b, 100 calls of
# 1000 bytes a second, and on pool a, 1000 calls of 64: b first by bytes/s.
$MEMTAP top -n 2 --interval=0.5 -o "$TMP/pool" -f top_palloc:size=arg1:pool=arg0 -- "$CHURN" -r 1000 -P \
	> "$TMP/out5" 2>/dev/null
last=$(awk '/^memtap top - /{n++} n==2' "$TMP/out5")
pools=$(printf '%s\n' "$last" | awk '/^POOL /{p=1; next} p && $2 == "top_palloc"')
diag "$pools"
is "$(printf '%s\n' "$pools" | wc -l)" 2 "a row per pool"
read -r _ _ c1 b1 _ <<< "$(printf '%s\n' "$pools" | sed -n 1p)"
read -r _ _ c2 b2 _ <<< "$(printf '%s\n' "$pools" | sed -n 2p)"
ok $([ "$c1" -ge 70 ] && [ "$c1" -le 130 ] && [ "$b1" -ge 70000 ] && [ "$b1" -le 130000 ]; echo $?) \
	"the busiest by bytes/s: pool b, near 100 calls and 100000 bytes a second ($c1, $b1)"
ok $([ "$c2" -ge 700 ] && [ "$c2" -le 1300 ] && [ "$b2" -ge 45000 ] && [ "$b2" -le 83000 ]; echo $?) \
	"then pool a, near 1000 calls and 64000 bytes a second ($c2, $b2)"

# Two processes attached to in one view (-p twice): rows for both, the
# functions summed; both detached at the end, running on.
"$CHURN" -r 300 & A=$!
"$CHURN" -r 700 & B=$!
at_exit "kill $A $B"
sleep 0.3
$MEMTAP top -b -n 2 --interval=0.5 -o "$TMP/two" -p $A -p $B -p $A > "$TMP/out4" 2> "$TMP/err4"
is "$?" 0 "top -p A -p B exits 0"
last=$(awk '/^memtap top - /{n++} n==2' "$TMP/out4")
like "$(printf '%s\n' "$last" | head -1)" "all 2 processes, attached" "one view of both (a pid given twice counts once)"
rate=$(printf '%s\n' "$last" | awk '$1 == "malloc" {print $2}')
ok $([ "$rate" -ge 700 ] && [ "$rate" -le 1300 ]; echo $?) "malloc calls/s: both together, near 300 + 700 ($rate)"
like "$(tr '\n' ' ' < "$TMP/err4")" "detached from $A; its last profile is $TMP/two.$A.0.mtp .*detached from $B; its last profile is $TMP/two.$B.0.mtp" "both detached, each with its last profile"
st=$($MEMTAP ctl $A status 2>&1 | grep mode; $MEMTAP ctl $B status 2>&1 | grep mode)
is "$(printf '%s\n' "$st" | sort -u)" "mode: loaded, not attached" "both untraced now"
kill -0 $A && kill -0 $B
ok $? "and both run on"

# Errors.
$MEMTAP top -b -n 1 -p 2147483646 > /dev/null 2> "$TMP/err"
is "$?" 1 "a pid that does not exist"
like "$(cat "$TMP/err")" "no process with pid 2147483646" "is refused, naming it"
if printf '#include <unistd.h>\nint main(void) { for (;;) pause(); }\n' > "$TMP/static.c" &&
   cc -static -o "$TMP/static" "$TMP/static.c" 2>/dev/null; then
	"$TMP/static" > /dev/null 2>&1 &
	SPID=$!
	at_exit "kill $SPID"
	sleep 0.2
	$MEMTAP top -b -n 1 -p $SPID > /dev/null 2> "$TMP/err"
	is "$?" 1 "a process that cannot be traced (statically linked)"
	like "$(cat "$TMP/err")" "static" "is refused, saying why"
	kill -0 $SPID
	ok $? "and is left running"
else
	skip "no static libc to build a static program"
	skip "no static libc to build a static program"
	skip "no static libc to build a static program"
fi
$MEMTAP top -p 1 -- true > /dev/null 2> "$TMP/err"
like "$(cat "$TMP/err")" "-p PID or a command to run, not both" "-p and a command: refused"
$MEMTAP top > /dev/null 2> "$TMP/err"
is "$?" 2 "no process and no command"
like "$(head -1 "$TMP/err")" "which processes\? pass -p PID, or a command" "says what to pass"
$MEMTAP top --sort=size -- true > /dev/null 2> "$TMP/err"
like "$(cat "$TMP/err")" "--sort=size: expected bytes, calls, failed, total or name" "an unknown sort key lists the keys"
$MEMTAP top -n 0 -- true > /dev/null 2> "$TMP/err"
like "$(cat "$TMP/err")" "-n 0: expected a number of screens" "-n 0 is refused"
