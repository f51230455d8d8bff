#!/bin/bash
# memtap report --format=svg|timeline|html on fixed profiles (written by
# tests/golden/timeline/mkprofiles.py from docs/FORMAT.md): golden files
# for the timeline SVG and the HTML report; svg picks the flame graph when
# the files have no timeline; the HTML names no network resource and keeps
# markup in the data from ending its script; a large profile (10,000 sites)
# stays under 4 MB; the progress bar shows on a terminal only.
# MEMTAP_GOLDEN_UPDATE=1 rewrites the golden files.
. "$(dirname "$0")/../lib.sh"
plan 17
G="$ROOT/tests/golden/timeline"
python3 "$G/mkprofiles.py" "$TMP" || skip_all "python3 could not write the fixed profiles"

golden() { # NAME FILE
	if [ -n "${MEMTAP_GOLDEN_UPDATE:-}" ]; then cp "$2" "$G/$1"; fi
	diff -u "$G/$1" "$2" > "$TMP/$1.diff"
	ok $? "$1 matches tests/golden/timeline/$1"
	[ -s "$TMP/$1.diff" ] && head -40 "$TMP/$1.diff" | sed 's/^/# /'
}

$MEMTAP report --format=svg -o "$TMP/timeline.svg" "$TMP"/golden.*.mtp
ok $? "--format=svg on profiles with timelines"
golden timeline.svg "$TMP/timeline.svg"
$MEMTAP report --format=timeline "$TMP"/golden.*.mtp | cmp -s - "$TMP/timeline.svg"
ok $? "--format=timeline draws the same"
xmllint --noout "$TMP/timeline.svg" 2>/dev/null || python3 -c 'import sys, xml.dom.minidom; xml.dom.minidom.parse(sys.argv[1])' "$TMP/timeline.svg"
ok $? "the SVG is well-formed XML"
is "$(grep -c '<polyline' "$TMP/timeline.svg")" 4 "one line per process (4; process 200 from its two dumps)"
like "$(cat "$TMP/timeline.svg")" "101 ← 100 httpd" "the legend links a child to its parent"
like "$(cat "$TMP/timeline.svg")" ">700 KiB<" "the y axis has units"

(cd "$TMP" && $MEMTAP report --format=html -o report.html golden.*.mtp)  # the page names its files
ok $? "--format=html"
golden report.html "$TMP/report.html"
is "$(grep -Eci '(src|href)="(https?:)?//|@import|url\((https?:)?//' "$TMP/report.html")" 0 \
	"the HTML loads nothing from the network"
python3 "$G/mkprofiles.py" "$TMP" evil
$MEMTAP report --format=html "$TMP/evil.mtp" > "$TMP/evil.html"
is "$(grep -c '</script>' "$TMP/evil.html")" 2 "markup in a command or a path cannot end the data's script early"

# svg without timelines: the flame graph, as before.
$MEMTAP report --format=svg -o "$TMP/flame.svg" "$TMP/golden.101.0.mtp" "$TMP/golden.102.0.mtp" 2>/dev/null
$MEMTAP report --format=svg -o "$TMP/flame2.svg" "$TMP/golden.200.1.mtp" 2> "$TMP/flame2.err"
like "$(cat "$TMP/flame2.err")" "needs call sites" "svg of a profile with neither a timeline nor call sites says what is missing"
$MEMTAP report --format=flamegraph -o "$TMP/flame.svg" "$TMP/golden.101.0.mtp"
like "$(cat "$TMP/flame.svg")" "Heap: bytes in use" "--format=flamegraph is the flame graph whatever the files hold"

# A large profile: 10,000 sites of 20 frames, 2048 points.
python3 "$G/mkprofiles.py" "$TMP" large
start=$(date +%s%N)
$MEMTAP report --format=html -o "$TMP/large.html" "$TMP/large.mtp" 2> "$TMP/large.err"
ok $? "--format=html on 10,000 sites ($(( ($(date +%s%N) - start) / 1000000 )) ms)"
size=$(stat -c %s "$TMP/large.html")
ok $(( size < 4000000 ? 0 : 1 )) "and the report stays under 4 MB ($size bytes)"
is "$(cat "$TMP/large.err")" "" "no progress bar when stderr is not a terminal"
if command -v script >/dev/null; then
	MEMTAP_PROGRESS_DELAY=0 script -qec "$MEMTAP report --format=html -o $TMP/large2.html $TMP/large.mtp" /dev/null > "$TMP/tty.out"
	like "$(tr '\r' '\n' < "$TMP/tty.out")" "memtap: report: \[#+ *\] +[0-9]+%" "on a terminal: a progress bar with the share done"
else
	skip "script(1) is missing: no terminal to try the progress bar on"
fi
