#!/bin/bash
# Heap-profile exports of real call sites (memtap run --stacks), checked with
# the real readers: go tool pprof (golang-go) for pprof and the gperftools
# text, jeprof (libjemalloc-dev) for the gperftools text; collapsed stacks,
# the flame graph SVG, the text tables, and memtap diff of two dumps of one
# live process.  The fixture leaks 100 x malloc(4321) from leaky_site().
. "$(dirname "$0")/../lib.sh"

$MEMTAP run --help 2>&1 | grep -q -- --stacks ||
	skip_all "memtap run has no --stacks yet (call sites come from the agent)"
plan 43

LEAK=432100
# go tool pprof keeps nothing, but wants a home and a temporary directory.
gopprof() { HOME=$TMP PPROF_TMPDIR=$TMP go tool pprof "$@" 2>"$TMP/pprof.err"; }
have_go=0; command -v go >/dev/null && have_go=1
have_jeprof=0; command -v jeprof >/dev/null && command -v objdump >/dev/null && have_jeprof=1

$MEMTAP run -q --stacks --sample=1 -o "$TMP/l" -- "$FIX/leaky"
ok $? "leaky runs under memtap run --stacks --sample=1"
P=$(ls "$TMP"/l.*.mtp | head -1)
[ -n "$P" ] && [ "$(ls "$TMP"/l.*.mtp | wc -l)" = 1 ]
ok $? "one profile written ($P)"

# Text: the DTrace sections, then the call-site tables.
txt=$($MEMTAP report "$P")
like "$txt" "Calls per function:" "text report keeps its count() table"
like "$txt" "Top call sites by bytes in use:" "text report lists call sites by bytes in use"
first=$(printf '%s\n' "$txt" | grep -A1 -m1 '^  #1 .* bytes in use')
like "$first" "#1  $LEAK requested bytes in use \(100.0%\) in 100 blocks, from malloc" "the leak leads, exactly"
like "$first" "leaky_site  .*tests/fixtures/leaky.c:[0-9]+" "symbolized to leaky_site with file:line"

# JSON: the sites with their frames.
$MEMTAP report --format=json "$P" > "$TMP/p.json"
is "$(jq "[.processes[0].sites[] | select(.inuse_bytes == $LEAK)] | length" "$TMP/p.json")" 1 \
	"json has the leaking site"
is "$(jq -r "[.processes[0].sites[] | select(.inuse_bytes == $LEAK)][0] | \"\(.function) \(.inuse_objects) \(.estimated.inuse_bytes) \(.frames[0] | test(\"^0x[0-9a-f]+$\"))\"" "$TMP/p.json")" \
	"malloc 100 $LEAK true" "json site: function, counts, estimate, hex frames"
is "$(jq '.processes[0].sample_period' "$TMP/p.json")" 1 "json sample_period"

# Collapsed stacks, root first.
col=$($MEMTAP report --format=collapsed "$P")
like "$col" "(^|;)main;leaky_site $LEAK$" "collapsed: a line ending in main;leaky_site $LEAK (trimmed below main)"
printf '%s\n' "$col" | grep -Evq '^[^ ]+( [^ ]+)* [0-9]+$'
ok $((! $?)) "collapsed: every line is 'frames VALUE'"
like "$($MEMTAP report --format=collapsed --value=alloc "$P")" ";churn [0-9]+" \
	"collapsed --value=alloc includes the freed allocations"

# Flame graph.
$MEMTAP report --format=svg -o "$TMP/f.svg" "$P"
ok $? "svg written with -o"
head -c 5 "$TMP/f.svg" | grep -q '^<?xml'
ok $? "svg starts with <?xml"
grep -q 'leaky_site' "$TMP/f.svg"
ok $? "svg names leaky_site"
python3 -c 'import sys, xml.etree.ElementTree as E; r = E.parse(sys.argv[1]).getroot(); sys.exit(r.tag != "{http://www.w3.org/2000/svg}svg")' "$TMP/f.svg"
ok $? "svg is well-formed XML with an <svg> root"

# pprof, read by go tool pprof.
$MEMTAP report --format=pprof -o "$TMP/p.pb.gz" "$P"
ok $? "pprof written"
is "$(head -c 2 "$TMP/p.pb.gz" | od -An -tx1 | tr -d ' ')" "1f8b" "pprof output is gzip"
if [ $have_go = 1 ]; then
	top=$(gopprof -sample_index=inuse_space -unit=B -top "$TMP/p.pb.gz")
	like "$top" "^ *${LEAK}B +100% +100% +${LEAK}B +100% +leaky_site$" \
		"go tool pprof -top: leaky_site holds ${LEAK} B in inuse_space"
	like "$(gopprof -sample_index=inuse_objects -top "$TMP/p.pb.gz")" "^ *100 +100% +100% +100 +100% +leaky_site$" \
		"go tool pprof: 100 inuse_objects"
	like "$(gopprof -sample_index=alloc_space -unit=B -top "$TMP/p.pb.gz")" " churn" \
		"go tool pprof: alloc_space has the freed allocations"
	raw=$(gopprof -raw "$TMP/p.pb.gz")
	like "$raw" "alloc_objects/count alloc_space/bytes inuse_objects/count inuse_space/bytes" \
		"sample types in Go's order"
else
	for i in 1 2 3 4; do skip "go is not installed (golang-go)"; done
fi

# gperftools heap text, read by jeprof and by go tool pprof.
$MEMTAP report --format=jeprof "$P" > "$TMP/f.heap"
like "$(head -1 "$TMP/f.heap")" "^heap profile: +100: +$LEAK \[ +[0-9]+: +[0-9]+\] @ heapprofile$" \
	"jeprof header: totals and the heapprofile tag (every allocation recorded)"
grep -q '^MAPPED_LIBRARIES:$' "$TMP/f.heap"
ok $? "jeprof text has MAPPED_LIBRARIES:"
if [ $have_jeprof = 1 ]; then
	je=$(jeprof --text "$FIX/leaky" "$TMP/f.heap" 2>/dev/null)
	like "$je" "leaky_site" "jeprof --text names leaky_site"
	like "$(jeprof --text --inuse_objects "$FIX/leaky" "$TMP/f.heap" 2>/dev/null)" \
		"^ *100 +100\.0% .*leaky_site$" "jeprof: 100 objects in use at leaky_site"
else
	skip "jeprof or objdump is not installed (libjemalloc-dev, binutils)"
	skip "jeprof or objdump is not installed (libjemalloc-dev, binutils)"
fi
if [ $have_go = 1 ]; then
	like "$(gopprof -sample_index=inuse_space -unit=B -top "$FIX/leaky" "$TMP/f.heap")" \
		" ${LEAK}B .* leaky_site" "go tool pprof reads the heap text too"
else
	skip "go is not installed (golang-go)"
fi

# Sampled (1 in 4 KiB on average): the heap_v2 text carries raw samples that
# the readers un-sample themselves; the pprof export carries memtap's
# estimates.  Both must come out the same in go tool pprof.
$MEMTAP run -q --sample=4096 -o "$TMP/r" -- "$FIX/leaky"
R=$(ls "$TMP"/r.*.mtp | head -1)
$MEMTAP report --format=jeprof "$R" > "$TMP/r.heap"
like "$(head -1 "$TMP/r.heap")" "^heap profile: .* @ heap_v2/4096$" "sampled: the heap_v2/PERIOD tag"
$MEMTAP report --format=pprof -o "$TMP/r.pb.gz" "$R"
if [ $have_go = 1 ]; then
	a=$(gopprof -sample_index=inuse_space -unit=B -top "$TMP/r.pb.gz" | awk '$NF == "leaky_site" {print $1}')
	b=$(gopprof -sample_index=inuse_space -unit=B -top "$FIX/leaky" "$TMP/r.heap" | awk '$NF == "leaky_site" {print $1}')
	[ -n "$a" ] && [ "$a" = "$b" ]
	ok $? "sampled: go tool pprof finds the same estimate in both exports ($a, $b)"
	like "$(gopprof -raw "$TMP/r.pb.gz" | grep -m1 '^Period:')" "^Period: 4096$" "sampled: pprof period"
else
	skip "go is not installed (golang-go)"; skip "go is not installed (golang-go)"
fi

# --merge of two runs: sites of both processes summed (they fold by name).
$MEMTAP run -q --stacks --sample=1 -o "$TMP/m" -- "$FIX/leaky"
$MEMTAP run -q --stacks --sample=1 -o "$TMP/m" -- "$FIX/leaky"
col=$($MEMTAP report --merge --format=collapsed "$TMP"/m.*.mtp)
ok $? "report --merge of two profiles with call sites"
like "$col" "(^|;)main;leaky_site $((2 * LEAK))$" "merged: both processes' leaks in one stack"

# Refusals: one profile for pprof, and call sites needed.
$MEMTAP report --format=pprof -o "$TMP/x" "$P" "$P" 2> "$TMP/err.txt"
is "$?" 2 "pprof of two files without --merge is a usage error"
$MEMTAP run -q -o "$TMP/n" -- "$FIX/leaky"
$MEMTAP report --format=collapsed "$(ls "$TMP"/n.*.mtp)" > /dev/null 2> "$TMP/err.txt"
is "$?" 1 "a profile without --stacks cannot be exported"
like "$(cat "$TMP/err.txt")" "needs call sites.*--stacks" "and the message says to record with --stacks"

# memtap diff: two dumps of one live process; leaky_site grows by 50 x 4321.
coproc TGT { exec $MEMTAP run -q --stacks --sample=1 -o "$TMP/s" -- "$FIX/leaky" serve; }
RUNPID=$TGT_PID
at_exit "kill $RUNPID"
wait_for "pgrep -P $RUNPID" && TPID=$(pgrep -P $RUNPID)
wait_for "test -S /tmp/memtap-$(id -u)/$TPID.sock"
send() { echo "$1" >&"${TGT[1]}"; local l; read -r -t 10 -u "${TGT[0]}" l; [ "$l" = done ]; }
send "leak 10" && send "churn 100"
d0=$($MEMTAP ctl $TPID dump)
send "leak 50" && send "churn 20"
d1=$($MEMTAP ctl $TPID dump)
[ -f "$d0" ] && [ -f "$d1" ]
ok $? "two dumps of the live process"
dt=$($MEMTAP diff "$d0" "$d1")
ok $? "memtap diff"
first=$(printf '%s\n' "$dt" | grep -A1 -m1 '^  #1 ')
like "$first" "#1  \+216050 requested bytes in use, \+50 blocks" "diff: the growth leads, exactly 50 x 4321 bytes"
like "$first" "leaky_site" "diff names the growing site"
if [ $have_go = 1 ]; then
	$MEMTAP diff --format=pprof -o "$TMP/d.pb.gz" "$d0" "$d1"
	like "$(gopprof -sample_index=inuse_space -unit=B -top "$TMP/d.pb.gz")" " 216050B .* leaky_site" \
		"diff --format=pprof: go tool pprof shows the growth at leaky_site"
else
	skip "go is not installed (golang-go)"
fi
send quit
wait $RUNPID
$MEMTAP diff "$d0" "$P" > /dev/null 2> "$TMP/err.txt"
is "$?" 1 "diff of two different processes is refused"
like "$(cat "$TMP/err.txt")" "different processes.*--force" "saying why, and how to insist"
$MEMTAP diff --force "$d0" "$P" > /dev/null 2>&1
ok $? "diff --force compares them anyway"
