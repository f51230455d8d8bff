#!/bin/bash
# The HTML report in a real browser: Debian's headless chromium opens the
# page of a traced run (stream_leak, --stacks --interval) and of the fixed
# and large profiles; the page's script writes what it drew into its status
# element (window.onerror turns it into the errors), and with #selftest it
# drives hover, drag-zoom, the in-use/allocated toggle, search and a frame
# zoom itself.  Screenshots are kept in build/test-artifacts/.
. "$(dirname "$0")/../lib.sh"
CHROMIUM=$(command -v chromium || command -v chromium-browser) || skip_all "chromium is missing (sh scripts/deps.sh peers)"
plan 11
ART="$ROOT/$BUILDDIR/test-artifacts"
mkdir -p "$ART"
chrome() { # URL [--screenshot=...]
	timeout 120 "$CHROMIUM" --headless --no-sandbox --disable-gpu --no-first-run --user-data-dir="$TMP/chrome" \
		--window-size=1200,2600 "$@" 2>/dev/null
}
status() { grep -o '<div id="status"[^>]*>[^<]*' | sed 's/<div id="status" //'; }

$MEMTAP run -q --stacks --sample=1 --interval=0.1 -o "$TMP/s" -- "$FIX/stream_leak" 3 20 50
$MEMTAP report --format=html -o "$TMP/run.html" "$TMP"/s.*.mtp
ok $? "an HTML report of a traced prefork-like run"
st=$(chrome --dump-dom "file://$TMP/run.html#selftest" | status)
diag "$st"
like "$st" 'data-state="ok"' "chromium runs the page's script with no error"
like "$st" "4 processes, timeline lines 4, flame graph frames [1-9][0-9]*" "it drew a line per process and a flame graph"
like "$st" "selftest: hover ok, zoom ok, reset ok, allocated ok, search ok, frame zoom ok" \
	"hover values, drag-zoom and its reset, the allocated toggle, search and frame zoom work"
chrome --screenshot="$ART/122-run.png" "file://$TMP/run.html" >/dev/null
ok $(( $(stat -c %s "$ART/122-run.png" 2>/dev/null || echo 0) > 20000 ? 0 : 1 )) \
	"a screenshot of it is kept ($BUILDDIR/test-artifacts/122-run.png)"

python3 "$ROOT/tests/golden/timeline/mkprofiles.py" "$TMP"
python3 "$ROOT/tests/golden/timeline/mkprofiles.py" "$TMP" evil
python3 "$ROOT/tests/golden/timeline/mkprofiles.py" "$TMP" large
$MEMTAP report --format=html -o "$TMP/golden.html" "$TMP"/golden.*.mtp
st=$(chrome --dump-dom "file://$TMP/golden.html#selftest" | status)
like "$st" 'data-state="ok">ok: 4 processes, timeline lines 4' "the fixed profiles: 4 lines (one drawn from snapshots)"
like "$st" "search ok, frame zoom ok" "and their frames (unsymbolized) zoom and match"
chrome --screenshot="$ART/122-golden.png" "file://$TMP/golden.html" >/dev/null
$MEMTAP report --format=html -o "$TMP/evil.html" "$TMP/evil.mtp"
page=$(chrome --dump-dom "file://$TMP/evil.html")
like "$(echo "$page" | status)" 'data-state="ok"' "markup in a command and a path is shown, not run"
like "$page" '&lt;/script&gt;&lt;script&gt;alert\(1\)' "the command is in the page as text"
$MEMTAP report --format=html -o "$TMP/large.html" "$TMP/large.mtp"
start=$(date +%s%N)
st=$(chrome --dump-dom "file://$TMP/large.html#selftest" | status)
ms=$(( ($(date +%s%N) - start) / 1000000 ))
like "$st" 'data-state="ok"' "the 10,000-site report renders in chromium ($ms ms with the browser's start)"
like "$st" "flame graph frames [0-9]{4,}" "with its flame graph"
