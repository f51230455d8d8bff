#!/bin/bash
# /debug/pprof/heap and /debug/pprof/allocs read by `go tool pprof` from the
# URL (merged, and one process with ?pid=), the clear answer without
# --stacks, and --pprof-dir's periodic files (atomic, bounded by
# --pprof-keep, read by go tool pprof).
. "$(dirname "$0")/../lib.sh"
command -v go >/dev/null || skip_all "go is not installed (golang-go: sh scripts/deps.sh peers)"
plan 22
export HOME="$TMP/home" GOCACHE="$TMP/gocache" GOFLAGS= GOPROXY=off
mkdir -p "$HOME"
# The first row of go tool pprof -top's table.
top1() { awk '/ flat%/ { getline; print; exit }' "$1"; }

MP=$(free_port)
"$MEMTAP" run --stacks --sample=4096 --prometheus=127.0.0.1:$MP --interval=0.5 --pprof-dir="$TMP/pp" \
	--pprof-keep=3 -o "$TMP/p" -q -- "$FIX/fleet_target" "$TMP/stop" > "$TMP/rounds" 2> "$TMP/memtap.err" &
MPID=$!
at_exit "touch $TMP/stop; kill $MPID"
wait_for "curl -sf -o /dev/null http://127.0.0.1:$MP/metrics" 300
up=$?
ok $up "memtap serves on 127.0.0.1:$MP"
[ $up = 0 ] || diag "memtap: $(cat "$TMP/memtap.err")"
# The session finds the fixture a moment after the endpoint is up.
wait_for "curl -s http://127.0.0.1:$MP/metrics | grep -q '^memtap_allocations_total{command=\"fleet_target\",function=\"malloc\"}'" 300
TPID=$(pgrep -P $MPID -f fleet_target)
sleep 1
timeout 120 go tool pprof -top "http://127.0.0.1:$MP/debug/pprof/heap" > "$TMP/heap.top" 2> "$TMP/heap.err"
ok $? "go tool pprof -top reads /debug/pprof/heap from the URL"
like "$(cat "$TMP/heap.top")" "Type: inuse_space" "in use by default, as Go's heap profiles"
like "$(top1 "$TMP/heap.top")" "fleet_keep$" \
	"the fixture's kept blocks lead the heap profile (fleet_keep)"
timeout 120 go tool pprof -raw "http://127.0.0.1:$MP/debug/pprof/heap" > "$TMP/heap.raw" 2>/dev/null
like "$(grep -A1 '^Samples:' "$TMP/heap.raw" | tail -1)" \
	"alloc_objects/count alloc_space/bytes inuse_objects/count inuse_space/bytes" \
	"with Go's four heap sample types"
timeout 120 go tool pprof -top "http://127.0.0.1:$MP/debug/pprof/allocs" > "$TMP/allocs.top" 2>/dev/null
like "$(cat "$TMP/allocs.top")" "Type: alloc_space" "/debug/pprof/allocs: allocated space by default"
like "$(top1 "$TMP/allocs.top")" "fleet_churn$" \
	"where the churn leads (fleet_churn)"
timeout 120 go tool pprof -top "http://127.0.0.1:$MP/debug/pprof/heap?pid=$TPID" > "$TMP/pid.top" 2>/dev/null
like "$(cat "$TMP/pid.top")" "memtap: pid $TPID" "?pid=$TPID: that process's profile"
code=$(curl -s -o "$TMP/nopid.txt" -w '%{http_code}' "http://127.0.0.1:$MP/debug/pprof/heap?pid=1")
is "$code" 404 "?pid= of a process outside the session: 404"
like "$(cat "$TMP/nopid.txt")" "process 1 is not a running process of this session" "saying so"

# pprof posts addresses it could not symbolize to /debug/pprof/symbol
# (net/http/pprof's protocol) and fails on an error: "none" lets it go on.
code=$(curl -s -o "$TMP/sym.txt" -w '%{http_code}' --data-binary '0x401000+0x401010' "http://127.0.0.1:$MP/debug/pprof/symbol")
is "$code:$(cat "$TMP/sym.txt")" "200:" "POST /debug/pprof/symbol: 200, no symbols (pprof symbolizes locally)"
is "$(curl -s "http://127.0.0.1:$MP/debug/pprof/symbol")" "num_symbols: 0" "GET /debug/pprof/symbol: num_symbols: 0"

# --pprof-dir: periodic files, atomically renamed, the newest 3 kept.
sleep 2.5
ls "$TMP/pp" > "$TMP/pp.ls"
like "$(head -1 "$TMP/pp.ls")" "^memtap-fleet_target-$TPID-[0-9]{8}T[0-9]{6}\.[0-9]{3}Z\.pb\.gz$" \
	"--pprof-dir: memtap-CMD-PID-UTCTIME.pb.gz"
is "$(grep -c '' "$TMP/pp.ls")" 3 "--pprof-keep=3: the newest 3 are kept"
is "$(ls -a "$TMP/pp" | grep -c '\.tmp')" 0 "no temporary file is left behind"
last=$(tail -1 "$TMP/pp.ls")
timeout 120 go tool pprof -top "$TMP/pp/$last" > "$TMP/file.top" 2>/dev/null
like "$(top1 "$TMP/file.top")" "fleet_keep$" \
	"go tool pprof reads a file from the directory"
touch "$TMP/stop"
wait $MPID
is "$?" 0 "the session ends normally"

# Without --stacks: a clear answer.
MP2=$(free_port)
rm -f "$TMP/stop"
"$MEMTAP" run --prometheus=127.0.0.1:$MP2 -o "$TMP/q" -q -- "$FIX/fleet_target" "$TMP/stop" > /dev/null 2>&1 &
M2=$!
at_exit "touch $TMP/stop; kill $M2"
wait_for "curl -sf -o /dev/null http://127.0.0.1:$MP2/metrics" 300
code=$(curl -s -o "$TMP/nostacks.txt" -w '%{http_code}' "http://127.0.0.1:$MP2/debug/pprof/heap")
is "$code" 404 "without --stacks, /debug/pprof/heap is 404"
like "$(cat "$TMP/nostacks.txt")" "without --stacks; start it again with --stacks" "saying to add --stacks"
touch "$TMP/stop"
wait $M2

# run --via=ebpf: the same endpoint and directory, the command named as
# it is after its exec.
if [ "$(id -u)" != 0 ] || [ ! -r /sys/kernel/btf/vmlinux ]; then
	for i in 1 2 3; do skip "--via=ebpf needs root and BTF"; done
	exit 0
fi
MP3=$(free_port)
rm -f "$TMP/stop"
"$MEMTAP" run --via=ebpf --stacks --interval=0.5 --pprof-dir="$TMP/epp" --prometheus=127.0.0.1:$MP3 -o "$TMP/e" -q \
	-- "$FIX/fleet_target" "$TMP/stop" > /dev/null 2> "$TMP/ebpf.err" &
M3=$!
at_exit "touch $TMP/stop; kill $M3"
wait_for "curl -s http://127.0.0.1:$MP3/metrics | grep -q '^memtap_allocations_total{command=\"fleet_target\",function=\"malloc\"}'" 300
ok $? "run --via=ebpf --prometheus: the malloc series of fleet_target (named after its exec)"
sleep 1.5
like "$(ls "$TMP/epp" | head -1)" "^memtap-fleet_target-[0-9]+-" "run --via=ebpf --interval --pprof-dir: its files"
timeout 120 go tool pprof -top "http://127.0.0.1:$MP3/debug/pprof/allocs" > "$TMP/eallocs.top" 2>/dev/null
like "$(top1 "$TMP/eallocs.top")" "fleet_churn$" "the eBPF backend's allocs profile, read by go tool pprof"
touch "$TMP/stop"
wait $M3
