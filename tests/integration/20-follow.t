#!/bin/bash
# fork and exec following, --no-follow, and the run's summary across processes.
. "$(dirname "$0")/../lib.sh"
plan 16

mkdir "$TMP/a" "$TMP/b"
$MEMTAP run -o "$TMP/a/f" --format json --report-file "$TMP/a.json" -- \
	"$FIX/forker" "$FIX/threads_malloc" 2 10 100
ok $? "forker exits 0 under memtap"
is "$(ls "$TMP"/a/f.*.mtp | wc -l)" 5 "one profile per process: parent, 3 forked children, 1 exec'd"
$MEMTAP report --format=json "$TMP"/a/f.*.mtp > "$TMP/all.json"
root=$(jq -r '.processes[] | select(.functions.malloc.calls == 11) | .pid' "$TMP/all.json")
[ -n "$root" ]
ok $? "the parent's profile has exactly its 11 mallocs (pid $root)"
is "$(jq --argjson r "$root" '[.processes[] | select(.ppid == $r)] | length' "$TMP/all.json")" 4 \
	"four children name the parent as ppid"
is "$(jq -c '[.processes[].functions.malloc.calls] | sort' "$TMP/all.json")" "[11,20,100,101,102]" \
	"each child starts from zero: 100, 101, 102 mallocs; the exec'd program 2 x 10"
is "$(jq -r '.processes[] | select(.functions.malloc.calls == 20) | .exe' "$TMP/all.json")" \
	"$FIX/threads_malloc" "the exec'd program is traced under its own name"
is "$(jq '[.processes[] | select(.functions.malloc.calls == 100)] | .[0].totals.in_use_bytes' "$TMP/all.json")" 0 \
	"a child's totals are its own"
is "$(jq '.processes | length' "$TMP/a.json")" 5 "run's JSON summary lists all five processes"
$MEMTAP report --format=json --merge "$TMP"/a/f.*.mtp > "$TMP/merged.json"
is "$(jq '.processes[0].functions.malloc.calls' "$TMP/merged.json")" 334 "--merge sums the processes"
is "$(jq '.processes[0].merged_pids | length' "$TMP/merged.json")" 5 "--merge lists the pids it summed"

$MEMTAP run -o "$TMP/a/g" -- "$FIX/forker" 2> "$TMP/text.txt"
grep -q '^memtap: 4 processes traced; calls per process:$' "$TMP/text.txt"
ok $? "the text summary counts the traced processes"
grep -qE '^  malloc +314$' "$TMP/text.txt"
ok $? "and merges them: 11 + 100 + 101 + 102 = 314 mallocs"

$MEMTAP run -q --no-follow -o "$TMP/b/f" -- "$FIX/forker" "$FIX/threads_malloc" 2 10 100
ok $? "forker exits 0 under --no-follow"
is "$(ls "$TMP"/b/f.*.mtp | wc -l)" 1 "--no-follow: only the started process writes a profile"
$MEMTAP report --format=json "$TMP"/b/f.*.mtp > "$TMP/b.json"
is "$(fn_field "$TMP/b.json" malloc calls)" 11 "--no-follow: the parent's own counts"

# Exit status: the command's, or 128+signal.
$MEMTAP run -q -o "$TMP/x" -- sh -c 'kill -USR1 $$' 2>/dev/null
is "$?" $((128 + 10)) "killed by SIGUSR1: memtap run exits 138"
