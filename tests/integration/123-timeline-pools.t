#!/bin/bash
# Timelines with the pools and allocator sections (seeds/002 on Debian's
# libapr, tests/fixtures/apr_conn.c): under --pools --glibc --interval the
# points carry the bytes the live pools hold (rising with the connection
# pool that allocates on every read) and glibc's heap; the HTML report
# offers them over time and draws the pool tree and the allocator
# section, in chromium with no script error.
. "$(dirname "$0")/../lib.sh"
[ -x "$FIX/apr_conn" ] || skip_all "the APR fixture is not built: libapr1-dev is missing (sh scripts/deps.sh test)"
command -v jq >/dev/null || skip_all "jq is missing"
plan 10

READS=40
$MEMTAP run -q --pools --glibc --stacks --sample=1 --interval=0.1 -o "$TMP/a" -- "$FIX/apr_conn" $READS 25 \
	< /dev/null > "$TMP/out" 2>&1
ok $? "apr_conn: $READS reads 25 ms apart under --pools --glibc --stacks --interval=0.1"
$MEMTAP report --format=json "$TMP"/a.*.mtp > "$TMP/a.json"
last='[.processes[] | select(.reason == "exit")][0]'
n=$(jq "$last.timeline.points | length" "$TMP/a.json")
ok $(( n >= 5 ? 0 : 1 )) "its final profile has the timeline ($n points)"
is "$(jq "[$last.timeline.points[] | select(.pool_bytes == null)] | length" "$TMP/a.json")" 0 \
	"every point has the bytes the live pools hold"
grow=$(jq "$last.timeline.points | (.[-1].pool_bytes - .[0].pool_bytes)" "$TMP/a.json")
ok $(( grow >= 96 * READS / 2 ? 0 : 1 )) "they rise with the connection pool (96 bytes a read: +$grow bytes)"
is "$(jq "$last.timeline.points | [range(1; length) as \$i | select(.[\$i].pool_bytes < .[\$i-1].pool_bytes)] | length" "$TMP/a.json")" 0 \
	"and never come down"
is "$(jq "[$last.timeline.points[] | select((.heap_bytes // 0) < 4096)] | length" "$TMP/a.json")" 0 \
	"every point has glibc's heap (its arenas' and mmapped bytes)"

$MEMTAP report --format=html -o "$TMP/a.html" "$TMP"/a.*.mtp
CHROMIUM=$(command -v chromium || command -v chromium-browser)
if [ -z "$CHROMIUM" ]; then
	for i in 1 2 3 4; do skip "chromium is missing"; done
	exit 0
fi
timeout 120 "$CHROMIUM" --headless --no-sandbox --disable-gpu --user-data-dir="$TMP/chrome" --dump-dom \
	"file://$TMP/a.html#selftest" 2>/dev/null > "$TMP/dom"
like "$(grep -o '<div id="status"[^>]*>[^<]*' "$TMP/dom")" 'data-state="ok"' "the HTML report runs with no script error"
like "$(cat "$TMP/dom")" '<option value="5">bytes in pools</option><option value="6">heap size</option>' \
	"over time it offers the pools' bytes and the heap"
like "$(sed 's/<[^>]*>/ /g' "$TMP/dom" | tr -s '\n ' '  ')" "Pool tree .* pchild 0x[0-9a-f]+ .* connection 0x[0-9a-f]+" \
	"the pool tree has the connection pool under pchild"
like "$(sed 's/<[^>]*>/ /g' "$TMP/dom" | tr -s '\n ' '  ')" "Allocator internals .*glibc: program break [0-9.]+ [KM]iB" \
	"the allocator section has glibc's break"
mkdir -p "$ROOT/$BUILDDIR/test-artifacts"
timeout 120 "$CHROMIUM" --headless --no-sandbox --disable-gpu --user-data-dir="$TMP/chrome" --window-size=1200,3200 \
	--screenshot="$ROOT/$BUILDDIR/test-artifacts/123-pools.png" "file://$TMP/a.html" >/dev/null 2>&1
