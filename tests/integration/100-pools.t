#!/bin/bash
# --pools on Debian's libapr (tests/fixtures/apr_conn.c, seeds/002 in
# miniature): a long-lived connection pool that allocates on every read is
# flagged as growing, the per-request pools made and destroyed are not;
# exact calls and bytes per tag, by run, with libapr arriving by dlopen, and
# by attach (inject); the report's text, JSON and pool-debug log.
. "$(dirname "$0")/../lib.sh"

[ -x "$FIX/apr_conn" ] || skip_all "the APR fixture is not built: libapr1-dev is missing (sh scripts/deps.sh test)"
command -v jq >/dev/null || skip_all "jq is missing (apt-get install jq)"
plan 33

READS=150
# Expected from the fixture's own arithmetic: a request pool gets 20
# apr_palloc of 64..83 bytes and one apr_pcalloc of 512.
REQ_CALLS=$((READS * 21))
REQ_BYTES=$((READS * (1470 + 512)))

# tag_field JSON TAG FIELD: FIELD of TAG's destroyed pools.
tag_field() { jq -r --arg t "$2" ".processes[0].pool_summary.destroyed_by_tag[] | select(.tag == \$t) | .$3" "$1"; }
# pool_field JSON TAG FIELD: FIELD of the (first) pool tagged TAG in the list.
pool_field() { jq -r --arg t "$2" "[.processes[0].pools[] | select(.tag == \$t)][0].$3" "$1"; }

# 1. memtap run --pools
out=$($MEMTAP run --pools -q -o "$TMP/r" -- "$FIX/apr_conn" $READS -8 2>&1)
ok $? "memtap run --pools runs the fixture"
like "$out" "conn $((READS)) $((READS * 96))" "the fixture made its $READS reads"
f=$(ls "$TMP"/r.*.mtp)
$MEMTAP report --format=json $f > "$TMP/r.json"
is "$(jq -r '.processes[0].pool_summary.hooked' "$TMP/r.json")" true "libapr's pool functions were hooked"
is "$(tag_field "$TMP/r.json" request pools)" $READS "$READS request pools destroyed"
is "$(tag_field "$TMP/r.json" request calls)" $REQ_CALLS "their apr_palloc + apr_pcalloc calls, pcalloc counted once"
is "$(tag_field "$TMP/r.json" request bytes)" $REQ_BYTES "and their bytes"
is "$(pool_field "$TMP/r.json" connection calls)" $READS "the connection pool: one allocation per read"
is "$(pool_field "$TMP/r.json" connection bytes)" $((READS * 96)) "... of 96 bytes"
is "$(pool_field "$TMP/r.json" connection growing)" true "the connection pool is flagged as growing"
is "$(pool_field "$TMP/r.json" connection destroyed_ns)" null "... and is live"
is "$(pool_field "$TMP/r.json" ptrans clears)" $READS "the transaction pool was cleared $READS times"
is "$(pool_field "$TMP/r.json" ptrans growing)" false "a pool cleared per request does not grow"
is "$(pool_field "$TMP/r.json" pconf growing)" false "a pool that allocated only at start does not grow"
is "$(jq -r '[.processes[0].pools[] | select(.growing)] | length' "$TMP/r.json")" 1 "only the connection pool grows"
conn=$(pool_field "$TMP/r.json" connection pool)
pchild=$(pool_field "$TMP/r.json" pchild pool)
is "$(pool_field "$TMP/r.json" connection parent)" "$pchild" "its parent is pchild"
is "$(pool_field "$TMP/r.json" pchild parent)" "$(pool_field "$TMP/r.json" pconf pool)" "whose parent is pconf"
created=$(pool_field "$TMP/r.json" connection created_ns)
start=$(jq -r '.processes[0].start_ns' "$TMP/r.json")
[ "$created" -ge "$start" ] 2>/dev/null
ok $? "created_ns is a time after the process started ($created >= $start)"
last=$(jq -r '[.processes[0].pools[] | select(.tag == "request")] | sort_by(.destroyed_ns) | last' "$TMP/r.json")
[ "$(jq -r '.destroyed_ns > .created_ns' <<<"$last")" = true ]
ok $? "a destroyed request pool has destroyed_ns after created_ns"

# 2. the text report
$MEMTAP report --pools $f > "$TMP/r.txt"
ok $? "memtap report --pools"
like "$(grep -A2 'Pools that only grow' "$TMP/r.txt")" "connection +$conn: $((READS * 96)) bytes in $READS calls" \
	"the text names the growing pool with its bytes and calls"
like "$(cat "$TMP/r.txt")" "Lifetimes of destroyed pools" "with a quantize of lifetimes"
like "$(grep -E '^ +(pconf|  pchild|    connection) ' "$TMP/r.txt" | tr '\n' '|')" \
	"^ +pconf .*\| +pchild .*\| +connection .*GROWS" "and the tree: pconf > pchild > connection"

# 3. the pool-debug log, as scripts for --enable-pool-debug read it
$MEMTAP report --format=pool-log $f > "$TMP/r.log"
n=$(grep -cE '^POOL DEBUG: \[[0-9]+/[0-9]+\] +CREATE \( +[0-9]+/ +[0-9]+/ +[0-9]+\) 0x[0-9a-f]+ "[^"]*" <[^>]*> \([0-9]+/[0-9]+/[0-9]+\)$' "$TMP/r.log")
[ "$n" -ge $((READS + 5)) ]
ok $? "pool-log: a CREATE line in APR's format per pool ($n)"
is "$(grep -c ' DESTROY .*"request"' "$TMP/r.log")" $READS "and a DESTROY per request pool"

# 4. libapr arriving by dlopen (a library that links it, RTLD_LOCAL)
$MEMTAP run --pools -q -o "$TMP/dl" -- "$FIX/apr_conn_dl" $READS -8 >/dev/null 2>&1
$MEMTAP report --format=json "$TMP"/dl.*.mtp > "$TMP/dl.json"
is "$(tag_field "$TMP/dl.json" request calls)" $REQ_CALLS "dlopened libapr: request pools counted exactly"
is "$(pool_field "$TMP/dl.json" connection growing)" true "and the connection pool grows"

# 5. without --pools: nothing, and report --pools says how to get them
$MEMTAP run -q -o "$TMP/np" -- "$FIX/apr_conn" 5 -1 >/dev/null 2>&1
is "$($MEMTAP report --format=json "$TMP"/np.*.mtp | jq -r '.processes[0].pools // "none"')" none \
	"without --pools a profile has no pools"
err=$($MEMTAP report --pools "$TMP"/np.*.mtp 2>&1)
is "$?" 1 "report --pools on it fails"
like "$err" "no APR pools: record with .memtap run --pools" "saying how to record them"

# 6. memtap attach --pools (inject): the fixture waits, memtap attaches, then it works
mkfifo "$TMP/in"
"$FIX/apr_conn" $READS 8 first < "$TMP/in" > "$TMP/out" &
TPID=$!
exec 7>"$TMP/in"
at_exit "kill $TPID"
wait_for "grep -q ready $TMP/out"
$MEMTAP attach -p $TPID --pools -d 3 -q -o "$TMP/at" 2> "$TMP/at.err" &
APID=$!
wait_for "grep -q attached $TMP/at.err" 50 || wait_for "ls /tmp/memtap-$(id -u)/$TPID.sock" 50
sleep 0.3
echo go >&7
wait $APID
ok $? "memtap attach -p PID --pools -d 3"
$MEMTAP report --format=json "$TMP"/at.*.mtp > "$TMP/at.json"
is "$(tag_field "$TMP/at.json" request calls)" $REQ_CALLS "attached: request pools counted exactly"
is "$(pool_field "$TMP/at.json" connection growing)" true "attached: the connection pool grows"
echo done >&7
exec 7>&-
wait $TPID
ok $? "the fixture ran to its end after the detach"
