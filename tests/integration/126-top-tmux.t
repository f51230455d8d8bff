#!/bin/bash
# memtap top on a terminal (tmux, 80x24), attached to a running fixture whose
# rates are known (top_churn: 1000 malloc/free pairs a second, 20 failing
# callocs of 1 PiB a second): the rows' figures move from one screen to the
# next, sort keys reorder them, ? shows the help, the screen follows a
# resize, q detaches and the fixture runs on, untraced and healthy.
. "$(dirname "$0")/../lib.sh"
command -v tmux >/dev/null || skip_all "tmux is missing (scripts/deps.sh peers)"
plan 21

CHURN="$FIX/top_churn"
S="memtap-top-$$"
TM="tmux -L $S -f /dev/null"
at_exit "$TM kill-server"
cap() { $TM capture-pane -p -t top; }
# screen_has REGEX: the screen shows REGEX, within 5 s.
screen_has() { wait_for "cap | grep -Eq -- '$1'" 50; }
# The function rows, in screen order.
funcs() { cap | awk '$1 == "malloc" || $1 == "free" || $1 == "calloc" {printf "%s ", $1}'; }

"$CHURN" -r 1000 -e 20 -b "$TMP/beat" &
CPID=$!
at_exit "kill $CPID"
wait_for "[ -s $TMP/beat ]"
$TM new-session -d -s top -x 80 -y 24 "$MEMTAP top -p $CPID -o $TMP/t 2> $TMP/err; echo EXIT=\$? > $TMP/exit; sleep 60"
screen_has '^malloc +[0-9]'
ok $? "top shows malloc's row with a rate"
a=$(cap)
sleep 1.3
b=$(cap)
ma=$(printf '%s\n' "$a" | awk '$1 == "malloc" {print $5}')
mb=$(printf '%s\n' "$b" | awk '$1 == "malloc" {print $5}')
ok $([ -n "$ma" ] && [ "$ma" != "$mb" ]; echo $?) "malloc's calls so far move between two screens ($ma, then $mb)"
rate=$(printf '%s\n' "$b" | awk '$1 == "malloc" {print $2}')
ok $([ "$rate" -ge 700 ] && [ "$rate" -le 1300 ]; echo $?) "malloc calls/s near the fixture's 1000 ($rate)"
like "$(printf '%s\n' "$b" | head -1)" "^memtap top - all 1 process, attached" "the title says top attached"
like "$(printf '%s\n' "$b" | grep -E "^ +$CPID ")" "top_churn -r 1000" "the process row names the fixture"
is "$(printf '%s\n' "$b" | wc -l)" 24 "the screen is 24 lines"
is "$(printf '%s\n' "$b" | awk 'length > 80' | wc -l)" 0 "no line is wider than 80"
like "$(printf '%s\n' "$b" | tail -1)" "^q quit +s sort \(bytes/s\)" "the keys on the last line"
like "$(funcs)" "^calloc " "by bytes/s: the failing 1 PiB callocs first"

$TM send-keys -t top c
screen_has 'sort \(calls/s\)'
like "$(funcs)" "^(malloc free|free malloc) calloc $" "c: by calls/s, the 20 callocs a second last"
$TM send-keys -t top n
screen_has 'sort \(name\)'
is "$(funcs)" "calloc free malloc " "n: by name"
$TM send-keys -t top s
screen_has 'sort \(bytes/s\)'
ok $? "s: the next order, back to bytes/s"

$TM send-keys -t top '?'
screen_has 'pick the next'
ok $? "?: the help"
$TM send-keys -t top x
screen_has '^FUNCTION '
ok $? "any key: back to the tables"

$TM resize-window -t top -x 100 -y 30 2>/dev/null
screen_has '^malloc'
c=$(cap)
is "$(printf '%s\n' "$c" | wc -l)" 30 "after a resize to 100x30: 30 lines"
like "$(printf '%s\n' "$c" | sed -n 30p)" "^q quit" "the keys still on the last line"

beats=$(wc -l < "$TMP/beat")
$TM send-keys -t top q
wait_for "[ -s $TMP/exit ]" 100
is "$(cat "$TMP/exit")" "EXIT=0" "q: top exits 0"
like "$(cat "$TMP/err")" "detached from $CPID; its last profile is $TMP/t.$CPID.0.mtp" "it detached, with a last profile"
state=$(awk '{print $3}' /proc/$CPID/stat 2>/dev/null)
like "$state" "^[RS]$" "the fixture runs on (state $state)"
like "$($MEMTAP ctl $CPID status 2>&1)" "mode: loaded, not attached" "untraced: its agent is detached"
wait_for "[ \$(wc -l < $TMP/beat) -ge $((beats + 2)) ]" 40
ok $? "and healthy: it keeps beating ($beats beats, then $(wc -l < "$TMP/beat"))"
