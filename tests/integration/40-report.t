#!/bin/bash
# memtap report: formats, merging, and bad input (corrupt, truncated, missing
# files) reported clearly without losing the good ones.
. "$(dirname "$0")/../lib.sh"
plan 18

$MEMTAP run -q -o "$TMP/p" -- "$FIX/threads_malloc" 2 50 100
good=$(ls "$TMP"/p.*.mtp)

out=$($MEMTAP report "$good")
ok $? "text report of a good file"
like "$out" "Calls per function:" "text report has the count() table"
like "$out" "from $good" "text report names its file"
$MEMTAP report --format=json "$good" | jq -e '.processes[0].functions.malloc.hist == [[64,100]]' >/dev/null
ok $? "json report is valid JSON with the histogram as [lower, count] pairs"
$MEMTAP report --format=json -o "$TMP/out.json" "$good"
is "$(jq '.processes[0].functions.malloc.calls' "$TMP/out.json")" 100 "-o writes the report to a file"

# Truncated: the error names the file and the offset; exit status 1.
size=$(stat -c %s "$good")
head -c $((size - 7)) "$good" > "$TMP/trunc.mtp"
$MEMTAP report "$TMP/trunc.mtp" > /dev/null 2> "$TMP/err.txt"
is "$?" 1 "a truncated file fails the report"
like "$(cat "$TMP/err.txt")" "$TMP/trunc.mtp: .*truncated at offset [0-9]+" "error names the file and offset"

# Corrupt: a flipped byte in the middle.
cp "$good" "$TMP/bad.mtp"
printf '\xff' | dd of="$TMP/bad.mtp" bs=1 seek=$((size / 2)) conv=notrunc status=none
$MEMTAP report "$TMP/bad.mtp" > /dev/null 2> "$TMP/err.txt"
is "$?" 1 "a corrupt file fails the report"
like "$(cat "$TMP/err.txt")" "$TMP/bad.mtp: .*offset [0-9]+" "error names the file and offset"

# Not a profile at all; an empty file; a missing file; a directory.
echo "hello" > "$TMP/text.mtp"
: > "$TMP/empty.mtp"
$MEMTAP report "$TMP/text.mtp" "$TMP/empty.mtp" "$TMP/missing.mtp" "$TMP" > /dev/null 2> "$TMP/err.txt"
is "$?" 1 "non-profiles fail the report"
like "$(cat "$TMP/err.txt")" "text.mtp: not a memtap profile" "a text file is not a profile"
like "$(cat "$TMP/err.txt")" "empty.mtp: truncated at offset 0" "an empty file is truncated at 0"
like "$(cat "$TMP/err.txt")" "missing.mtp: cannot open: No such file" "a missing file is named"
like "$(cat "$TMP/err.txt")" "$TMP: not a regular file" "a directory is refused"

# Good files are still reported when others are bad (nothing is lost).
$MEMTAP report --format=json "$TMP/trunc.mtp" "$good" "$TMP/bad.mtp" > "$TMP/mixed.json" 2>/dev/null
is "$?" 1 "a mix of good and bad files exits 1"
is "$(jq '.processes | length' "$TMP/mixed.json")" 1 "and still reports the good file"

$MEMTAP report --format=yaml "$good" 2> "$TMP/err.txt"
is "$?" 2 "an unknown format is a usage error"
$MEMTAP report 2> "$TMP/err.txt"
is "$?" 2 "no files is a usage error"
