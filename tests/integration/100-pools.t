#!/bin/bash
# --pools on Debian's libapr (tests/fixtures/apr_conn.c, seeds/002 in
# miniature): a long-lived connection pool that allocates on every read is
# flagged as growing, the per-request pools made and destroyed are not;
# exact calls and bytes per tag, by run, with libapr arriving by dlopen, and
# by attach (inject) and by attach --via=ebpf (root); the report's text,
# JSON and pool-debug log.
. "$(dirname "$0")/../lib.sh"

[ -x "$FIX/apr_conn" ] || skip_all "the APR fixture is not built: libapr1-dev is missing (sh scripts/deps.sh test)"
command -v jq >/dev/null || skip_all "jq is missing (apt-get install jq)"
plan 59

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

# 3b. snapshots every 0.4 s: the log draws the connection pool's growth,
# one PALLOC line per snapshot with what it allocated since the one before
$MEMTAP run --pools -q --interval=0.4 -o "$TMP/iv" -- "$FIX/apr_conn" $READS -8 >/dev/null 2>&1
$MEMTAP report --format=pool-log "$TMP"/iv.*.mtp | grep ' PALLOC .*"connection"' > "$TMP/iv.log"
n=$(wc -l < "$TMP/iv.log")
[ "$n" -ge 3 ]
ok $? "pool-log over $(ls "$TMP"/iv.*.mtp | wc -l) snapshots: $n PALLOC lines for the connection pool"
is "$(awk -F'[(/]' '{s += $3 + 0} END {print s}' "$TMP/iv.log")/$(tail -1 "$TMP/iv.log" | awk -F'[(/]' '{print $4 + 0}')" \
	"$((READS * 96))/$((READS * 96))" "their sizes add up to the pool's bytes, its last POOL SIZE"

like "$($MEMTAP report --pools "$TMP"/iv.*.mtp | grep -A1 'rose in every snapshot' | tail -1)" \
	"pid [0-9]+ connection +0x[0-9a-f]+: [0-9 ]+ bytes over [3-9] snapshots" \
	"report --pools over the series: the connection pool's bytes rose in every snapshot"

last=$(ls "$TMP"/iv.*.mtp | sort -t. -k3 -n | tail -1)
$MEMTAP report --format=json "$last" > "$TMP/iv.json"
is "$(jq -r '[.processes[0].timeline.points[].pool_bytes] | . == sort and length >= 3' "$TMP/iv.json")" true \
	"the timeline's pool bytes rise point by point"
is "$(jq -r '.processes[0].timeline.points[-1].pool_bytes' "$TMP/iv.json")" \
	"$(jq -r '[.processes[0].pools[] | select(.destroyed_ns == null) | .bytes_since_clear] | add' "$TMP/iv.json")" \
	"its last point is what the live pools hold"

# 3c. with --stacks, the creating call site a few callers deep, symbolized
$MEMTAP run --pools --stacks -q -o "$TMP/st" -- "$FIX/apr_conn" $READS -8 >/dev/null 2>&1
$MEMTAP report --format=json "$TMP"/st.*.mtp > "$TMP/st.json"
n=$(jq -r '[.processes[0].pools[] | select(.tag == "connection")][0].created_stack | length' "$TMP/st.json")
[ "$n" -ge 2 ]
ok $? "--stacks: the connection pool's creating stack has $n frames"
like "$($MEMTAP report --pools "$TMP"/st.*.mtp | grep -A1 'only grow' | tail -1)" \
	"created by [a-z_]+ \(apr_conn.c:[0-9]+\) < .*libc" "and the report names the fixture's line and its callers"

# 3d. 8 threads making and destroying pools at once: exact counts, and the
# children APR destroys by its direct recursion (no GOT hook sees those)
$MEMTAP run --pools -q -o "$TMP/th" -- "$FIX/apr_conn" threads 8 2000 >/dev/null 2>&1
$MEMTAP report --format=json "$TMP"/th.*.mtp > "$TMP/th.json"
is "$(tag_field "$TMP/th.json" request pools)/$(tag_field "$TMP/th.json" request calls)" "16000/160000" \
	"8 threads: 16000 request pools destroyed, 160000 allocations"
is "$(tag_field "$TMP/th.json" request bytes)" 16000000 "... of 16000000 bytes"
is "$(tag_field "$TMP/th.json" sub pools)/$(tag_field "$TMP/th.json" sub calls)" "16000/16000" \
	"their children, destroyed inside apr_pool_destroy, ended with them"
is "$(jq -r '.processes[0].pool_summary | "\(.dropped) \(.untracked_calls)"' "$TMP/th.json")" "0 0" \
	"nothing dropped or untracked"

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

# 5b. a profile the agent writes itself (no session reads its file: a daemon
# that outlived its memtap run) has the pools too
LD_PRELOAD="$ROOT/$BUILDDIR/libmemtap.so" MEMTAP_POOLS=1 MEMTAP_PREFIX="$TMP/self" "$FIX/apr_conn" 10 -1 >/dev/null
is "$($MEMTAP report --format=json "$TMP"/self.*.mtp | jq -r '.processes[0].pool_summary.destroyed_by_tag[] | select(.tag == "request") | .calls')" \
	210 "the agent's own exit profile has the pools (10 request pools, 210 calls)"

# 5c. -f on a pool function: an entry hook counts alongside, :got is refused
$MEMTAP run --pools -q -f apr_palloc:size=arg1 -o "$TMP/fp" -- "$FIX/apr_conn" 20 -1 >/dev/null 2>&1
is "$($MEMTAP report --format=json "$TMP"/fp.*.mtp | jq -r '.processes[0].functions.apr_palloc.calls')" 512 \
	"-f apr_palloc with --pools: every apr_palloc counted (20 x 21 + 92 outside request pools)"
err=$($MEMTAP run --pools -f apr_palloc:got -- true 2>&1)
like "$err" "with --pools: --pools hooks apr_palloc's GOT slots itself; drop :got" "-f apr_palloc:got with --pools is refused, saying why"

# 5d. killed by SIGKILL while it waits: the final profile, recovered from its
# live counter file, still has its pools
mkfifo "$TMP/in9"
$MEMTAP run --pools -q -o "$TMP/kill" -- "$FIX/apr_conn" 40 2 < "$TMP/in9" > "$TMP/kill.out" 2>&1 &
RPID=$!
exec 6>"$TMP/in9"
at_exit "kill $RPID"
wait_for "grep -q '^pid ' $TMP/kill.out"
kill -KILL "$(awk '/^pid / {print $2}' "$TMP/kill.out")"
wait $RPID
exec 6>&-
f=$(ls "$TMP"/kill.*.mtp)
$MEMTAP report --format=json $f > "$TMP/kill.json"
is "$(jq -r '.processes[0].ended.how' "$TMP/kill.json")" "signal" "SIGKILL: the final profile says it was killed"
is "$(tag_field "$TMP/kill.json" request calls)" $((40 * 21)) "and keeps the request pools, exact"
is "$(pool_field "$TMP/kill.json" connection calls)" 40 "and the live connection pool"

# 6. memtap attach --pools (inject): the fixture waits, memtap attaches, then it works
mkfifo "$TMP/in"
"$FIX/apr_conn" $READS 8 first < "$TMP/in" > "$TMP/out" &
TPID=$!
exec 7>"$TMP/in"
at_exit "kill $TPID"
wait_for "grep -q ready $TMP/out"
# Stopped by Ctrl-C (SIGINT) once the fixture is done, so the last profile
# comes while the connection pool's last allocations are recent (-d 30: a
# limit only).
$MEMTAP attach -p $TPID --pools -d 30 -q -o "$TMP/at" 2> "$TMP/at.err" &
APID=$!
wait_for "grep -q attached $TMP/at.err" 50 || wait_for "ls /tmp/memtap-$(id -u)/$TPID.sock" 50
sleep 0.3
like "$($MEMTAP ctl $TPID status)" "pools: on, libapr hooked" "ctl status: pools on, libapr hooked"
echo go >&7
wait_for "grep -q '^pid ' $TMP/out" 150
kill -INT $APID
wait $APID
ok $? "memtap attach -p PID --pools, stopped by SIGINT"
$MEMTAP report --format=json "$TMP"/at.*.mtp > "$TMP/at.json"
is "$(tag_field "$TMP/at.json" request calls)" $REQ_CALLS "attached: request pools counted exactly"
is "$(pool_field "$TMP/at.json" connection growing)" true "attached: the connection pool grows"
echo done >&7
exec 7>&-
wait $TPID
ok $? "the fixture ran to its end after the detach"

# 7. memtap attach --via=ebpf --pools (root, BTF): the same figures from uprobes
if [ "$(id -u)" != 0 ] || [ ! -r /sys/kernel/btf/vmlinux ]; then
	for i in 1 2 3 4 5 6 7 8; do skip "attach --via=ebpf --pools needs root and BTF"; done
	exit 0
fi
mkfifo "$TMP/in2"
"$FIX/apr_conn" $READS 8 first < "$TMP/in2" > "$TMP/out2" &
TPID=$!
exec 8>"$TMP/in2"
at_exit "kill $TPID"
wait_for "grep -q ready $TMP/out2"
$MEMTAP attach --via=ebpf -p $TPID --pools -d 30 -q -o "$TMP/eb" > "$TMP/eb.out" 2> "$TMP/eb.err" &
APID=$!
wait_for "grep -q 'tracing $TPID' $TMP/eb.err" 150
like "$(cat "$TMP/eb.err")" "apr_pool_create_ex and [0-9]+ more from .*libapr-1.so" "eBPF: the probes are in libapr"
echo go >&8
wait_for "grep -q '^pid ' $TMP/out2" 150
kill -INT $APID
wait $APID
ok $? "memtap attach --via=ebpf -p PID --pools, stopped by SIGINT"
$MEMTAP report --format=json "$TMP"/eb.*.mtp > "$TMP/eb.json"
is "$(tag_field "$TMP/eb.json" request calls)" $REQ_CALLS "eBPF: request pools counted exactly (pcalloc through its palloc)"
is "$(tag_field "$TMP/eb.json" request bytes)" $REQ_BYTES "eBPF: and their bytes"
is "$(pool_field "$TMP/eb.json" connection growing)" true "eBPF: the connection pool grows"
echo done >&8
exec 8>&-

# 8. memtap run --via=ebpf --pools: a process traced from its start, whose
# tag strings are not yet in memory when apr_pool_tag runs (BPF cannot page
# them in; memtap reads them from the process while it runs)
$MEMTAP run --via=ebpf --pools -q -o "$TMP/rb" -- "$FIX/apr_conn" $READS -8 >/dev/null 2>&1
$MEMTAP report --format=json "$TMP"/rb.*.mtp > "$TMP/rb.json"
is "$(tag_field "$TMP/rb.json" request calls)" $REQ_CALLS "run --via=ebpf: request pools counted exactly, by their tag"
is "$(pool_field "$TMP/rb.json" connection calls)" $READS "run --via=ebpf: the live connection pool, tagged"

# 9. eBPF with 4 threads making and destroying pools at once (addresses
# reused by one thread while another's destroy has not returned): exact
$MEMTAP run --via=ebpf --pools -q -o "$TMP/rt" -- "$FIX/apr_conn" threads 4 500 >/dev/null 2>&1
$MEMTAP report --format=json "$TMP"/rt.*.mtp > "$TMP/rt.json"
is "$(tag_field "$TMP/rt.json" request pools)/$(tag_field "$TMP/rt.json" request calls)/$(tag_field "$TMP/rt.json" sub pools)" \
	"2000/20000/2000" "run --via=ebpf, 4 threads: every request pool and child booked once"
