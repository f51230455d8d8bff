#!/bin/bash
# End to end, issue 5: Debian's apache2 (prefork) on 127.0.0.1, its one child
# traced at the same time by `memtap attach --via=ebpf -f apr_palloc:size=arg1`
# and by a bpftrace script on the same function; exactly 3 GETs; both stopped;
# memtap's apr_palloc count and quantize() histogram must equal bpftrace's
# count() and hist().
. "$(dirname "$0")/../lib.sh"

[ "$(id -u)" = 0 ] || skip_all "the eBPF backend and bpftrace need root"
[ -r /sys/kernel/btf/vmlinux ] || skip_all "no BTF (/sys/kernel/btf/vmlinux): the eBPF backend needs it"
[ -x "$MEMTAP" ] || skip_all "build/memtap is missing (run make)"
$MEMTAP attach --help | grep -q -- --via=ebpf || skip_all "build/memtap was built without the eBPF backend"
command -v bpftrace >/dev/null || skip_all "bpftrace is missing (apt-get install bpftrace)"
[ -x "$APACHE" ] || skip_all "$APACHE is missing (apt-get install apache2)"
[ -f "$APACHE_MODULES/mod_mpm_prefork.so" ] || skip_all "mod_mpm_prefork is missing"
command -v curl >/dev/null || skip_all "curl is missing (apt-get install curl)"
command -v jq >/dev/null || skip_all "jq is missing (apt-get install jq)"
plan 11

GETS=3
D="$TMP/httpd"
PORT=$(free_port)
# One prefork child and no more (ServerLimit 1): every GET is served by the
# process both tools trace, and the parent never starts or stops a child
# while they run.
apache_conf "$D" "$PORT" prefork "StartServers 1
MinSpareServers 1
MaxSpareServers 1
ServerLimit 1
MaxRequestWorkers 1" "hello from the eBPF e2e test"
# An access log, to know when the child has finished each request (Debian
# compiles mod_log_config in; load it when this build does not).
"$APACHE" -l | grep -q mod_log_config.c ||
	echo "LoadModule log_config_module $APACHE_MODULES/mod_log_config.so" >> "$D/httpd.conf"
echo "CustomLog \"$D/access.log\" \"%h %r %>s\"" >> "$D/httpd.conf"

# Processes this test starts; stopped (TERM, then KILL after 5 s) whatever
# happens: memtap, bpftrace, then apache and its children.
MTPID=""
BTPID=""
stop() { # stop PID: SIGINT (both tools print their results on it), bounded
	[ -n "$1" ] || return 0
	kill -INT "$1" 2>/dev/null
	wait_for "! kill -0 $1" 300 || kill -KILL "$1" 2>/dev/null
	wait "$1" 2>/dev/null
}
at_exit 'kill -KILL $MTPID $BTPID; apache_stop "$D"'

apache_start "$D" "$PORT"
ok $? "apache (prefork) answers on 127.0.0.1:$PORT"
PARENT=$(cat "$D/httpd.pid" 2>/dev/null)
wait_for "pgrep -P ${PARENT:-0}" 50
CHILD=$(pgrep -P "${PARENT:-0}" | head -1)
ok $([ -n "$CHILD" ] && [ "$(pgrep -P "$PARENT" | wc -l)" = 1 ]; echo $?) \
   "apache runs exactly one child ($CHILD) under parent $PARENT"
CHILD=${CHILD:-0}

# apr_palloc is in libapr; bpftrace's probe names the file the child really
# mapped (its path in /proc/CHILD/maps), the object memtap finds too.
LIBAPR=$(awk '$6 ~ /\/libapr-1\.so/ {print $6; exit}' "/proc/$CHILD/maps" 2>/dev/null)
like "$LIBAPR" "libapr-1\.so" "the child maps libapr ($LIBAPR)"

# Which processes count.  memtap attach --via=ebpf follows children by
# default: its uprobes are registered for every process and filtered in BPF
# by the traced set, the child plus anything it forks after the attach.  A
# prefork child forks nothing, so that set stays {CHILD}; bpftrace gets the
# same arrangement: a probe for every process and a filter on the child's
# pid.  The test checks below that memtap's profiles name only the child.
bpftrace -e "uprobe:$LIBAPR:apr_palloc /pid == $CHILD/ { @calls = count(); @sizes = hist(arg1); }" \
	> "$D/bt.out" 2> "$D/bt.err" &
BTPID=$!
$MEMTAP attach --via=ebpf -p "$CHILD" -f apr_palloc:size=arg1 -o "$D/m" --format=json \
	--report-file "$D/m.json" 2> "$D/m.err" &
MTPID=$!
wait_for "grep -q Attaching $D/bt.out && grep -q 'tracing $CHILD' $D/m.err" 300
attached=$?
ok $attached "bpftrace and memtap attach are both attached to child $CHILD"
if [ $attached -ne 0 ]; then
	diag "bpftrace:"; sed 's/^/#   /' "$D/bt.out" "$D/bt.err"
	diag "memtap:"; sed 's/^/#   /' "$D/m.err"
fi

before=$(grep -c 'GET / HTTP' "$D/access.log" 2>/dev/null)
codes=""
for i in $(seq $GETS); do
	codes="$codes$(curl -s --max-time 5 -o /dev/null -w '%{http_code}' "http://127.0.0.1:$PORT/") "
done
is "$codes" "$(printf '200 %.0s' $(seq $GETS))" "$GETS GETs, each answered 200"
# The child finishes a request (access log, pool cleanup) after curl has its
# answer: wait until the access log has all of them, then a moment more,
# while both tools are still attached, so neither misses the tail.
wait_for "[ \$(grep -c 'GET / HTTP' $D/access.log) -ge $((${before:-0} + GETS)) ]" 50
sleep 0.5

stop "$MTPID"; MTPID=""
stop "$BTPID"; BTPID=""
like "$(cat "$D/bt.out")" "@calls: [0-9]+" "bpftrace printed its count at SIGINT"
ok $([ -s "$D/m.json" ]; echo $?) "memtap attach wrote its JSON summary at SIGINT"

is "$(jq -r '[.processes[].pid] | map(tostring) | join(" ")' "$D/m.json" 2>/dev/null)" "$CHILD" \
   "memtap traced exactly the child (follow added no process)"

bt_calls=$(awk '/^@calls:/ {print $2}' "$D/bt.out")
mt_calls=$(jq -r '.processes[0].functions.apr_palloc.calls // 0' "$D/m.json" 2>/dev/null)
diag "$GETS GETs: apr_palloc calls memtap $mt_calls, bpftrace $bt_calls"
ok $([ "${mt_calls:-0}" -ge $((GETS * 10)) ]; echo $?) \
   "memtap counted apr_palloc calls for $GETS GETs (${mt_calls:-0}, at least 10 per GET)"
is "$mt_calls" "$bt_calls" "apr_palloc calls: memtap = bpftrace"

# Both histograms as "lower:count" for the non-empty buckets.  bpftrace
# writes a row's lower bound as [0], [1], [2, 4), ..., [1K, 2K), [1M, 2M).
bt_hist=$(sed -n '/^@sizes:/,$p' "$D/bt.out" | awk '
	/^\[/ {
		lo = $1; sub(/^\[/, "", lo); sub(/[],]$/, "", lo)
		m = 1
		if (lo ~ /K$/) m = 1024; else if (lo ~ /M$/) m = 1048576; else if (lo ~ /G$/) m = 1073741824
		sub(/[KMG]$/, "", lo)
		n = $0; sub(/^[^)\]]*[)\]] */, "", n); split(n, f, " ")
		if (f[1] > 0) printf "%d:%d ", lo * m, f[1]
	}' | sed "s/ $//")
mt_hist=$(jq -r '.processes[0].functions.apr_palloc.hist // [] | map(select(.[1] > 0) | "\(.[0]):\(.[1])") | join(" ")' \
	"$D/m.json" 2>/dev/null)
diag "memtap   apr_palloc size buckets (lower:count): $mt_hist"
diag "bpftrace apr_palloc size buckets (lower:count): $bt_hist"
is "$mt_hist" "$bt_hist" "apr_palloc size histogram: memtap's quantize() = bpftrace's hist(arg1), bucket by bucket"
