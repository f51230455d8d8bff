#!/bin/bash
# memtap top -- CMD with a forking fixture, on a terminal (tmux): one row per
# process with its parent, p picks a process (its own rates), past the last
# every process together; q stops the program as Ctrl-C would under memtap
# run, every process gets its final profile, nothing is left running.
. "$(dirname "$0")/../lib.sh"
command -v tmux >/dev/null || skip_all "tmux is missing (scripts/deps.sh peers)"
command -v jq >/dev/null || skip_all "jq is missing"
plan 14

CHURN="$FIX/top_churn"
S="memtap-top-$$"
TM="tmux -L $S -f /dev/null"
at_exit "$TM kill-server"
PARENT= K1= K2=
at_exit 'kill $PARENT $K1 $K2'
cap() { $TM capture-pane -p -t top; }
screen_has() { wait_for "cap | grep -Eq -- '$1'" 50; }
# malloc's calls/s on the screen.
mrate() { cap | awk '$1 == "malloc" {print $2}'; }
near() { [ "$1" -ge $(($2 * 6 / 10)) ] && [ "$1" -le $(($2 * 14 / 10)) ]; }

# The parent churns 300 pairs a second, child 1 600, child 2 900.
$TM new-session -d -s top -x 80 -y 24 "cd $TMP && $MEMTAP top -o $TMP/f -- $CHURN -k 2 -r 300 2> $TMP/err; echo EXIT=\$? > $TMP/exit; sleep 60"
# Until every row has a rate (a process seen once has "-").
wait_for "[ \$(cap | grep 'top_churn -k 2' | awk '\$5 ~ /^[0-9]/' | wc -l) -ge 3 ]" 80
sleep 1.1
rows=$(cap | grep 'top_churn -k 2')
is "$(printf '%s\n' "$rows" | wc -l)" 3 "three process rows: the program and its two children"
PARENT=$(printf '%s\n' "$rows" | awk 'NR == 1 {print $1}')
K1=$(printf '%s\n' "$rows" | awk 'NR == 2 {print $1}')
K2=$(printf '%s\n' "$rows" | awk 'NR == 3 {print $1}')
is "$(printf '%s\n' "$rows" | awk 'NR > 1 {print $2}' | sort -u)" "$PARENT" "the children's PPID is the program's pid"
all=$(mrate)
near "$all" 1800
ok $? "every process together: malloc near 300 + 600 + 900 a second ($all)"

$TM send-keys -t top p
screen_has "^memtap top - process $PARENT "
ok $? "p picks the first process (the program)"
like "$(cap | grep -E "^> +$PARENT ")" "top_churn" "its row is marked"
sleep 1.2
r=$(mrate); near "$r" 300
ok $? "its own rate: near 300 a second ($r)"
$TM send-keys -t top p
screen_has "^memtap top - process $K1 "
sleep 1.2
r=$(mrate); near "$r" 600
ok $? "p again: the first child, near 600 a second ($r)"
$TM send-keys -t top p p
screen_has "^memtap top - all 3 processes"
ok $? "past the last: every process again"

$TM send-keys -t top q
wait_for "[ -s $TMP/exit ]" 150
is "$(cat "$TMP/exit")" "EXIT=0" "q: top exits 0"
like "$(cat "$TMP/err")" "stopped, as asked, by signal 2" "the program got SIGINT, as Ctrl-C would give it"
# (A zombie is gone: its parent died first, and whoever reaps orphans here may not.)
for p in $PARENT $K1 $K2; do
	st=$(awk '{print $3}' /proc/$p/stat 2>/dev/null)
	[ -n "$st" ] && [ "$st" != Z ] && echo "still running: $p"
done > "$TMP/left"
is "$(cat "$TMP/left")" "" "no process of the program is left running"
n=0
for p in $PARENT $K1 $K2; do
	f=$(ls "$TMP"/f.$p.*.mtp 2>/dev/null | tail -1)
	[ -n "$f" ] && $MEMTAP report --format=json "$f" > "$TMP/$p.json" && [ "$(json "$TMP/$p.json" '.processes[0].reason')" = exit ] && n=$((n + 1))
done
is "$n" 3 "every process has its final profile"
c1=$(fn_field "$TMP/$K1.json" malloc calls); c0=$(fn_field "$TMP/$PARENT.json" malloc calls)
ok $([ "$c1" -gt "$c0" ]; echo $?) "the first child did more than its parent ($c1 > $c0 malloc calls)"
ls /dev/shm/memtap-$(id -u)/ 2>/dev/null | grep -E "^($PARENT|$K1|$K2)-" > "$TMP/shm"
is "$(cat "$TMP/shm")" "" "no live file of theirs is left in /dev/shm"
