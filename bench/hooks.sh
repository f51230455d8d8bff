#!/bin/bash
# -f hooks: what one call of a hooked function costs, on the same function
# (bench/hooks_fn.c, called through the PLT from bench/hooks_main.c), with
# memtap attached by injection as an entry hook (-f bench_fn, the default),
# as a GOT hook (-f bench_fn:got), as an entry and return hook
# (-f bench_fn:fail=null: the shadow stack), and with the eBPF backend (attach
# --via=ebpf -f bench_fn, a uprobe); plus the unhooked call.  The program
# times its own loop once memtap is attached, so attaching is not counted.
# Configurations interleaved in each of ROUNDS rounds; medians.  Cost per
# call = hooked ns/call - unhooked ns/call.  Prints a markdown table (also
# build/bench/hooks.md).
#   ROUNDS=5 CALLS=20000000 EBPF_CALLS=200000 bash bench/hooks.sh   (make bench runs it)
set -u
cd "$(dirname "$0")/.."
ROOT=$(pwd)
MEMTAP=$ROOT/build/memtap
ROUNDS=${ROUNDS:-5}
CALLS=${CALLS:-20000000}
EBPF_CALLS=${EBPF_CALLS:-200000}
OUT=$ROOT/build/bench
mkdir -p "$OUT"
TMP=$(mktemp -d /tmp/memtap-bench-hooks.XXXXXX)
chmod 0755 "$TMP"
trap 'rm -rf "$TMP"' EXIT
${CC:-cc} -O2 -shared -fPIC -o "$TMP/libbenchfn.so" bench/hooks_fn.c &&
	${CC:-cc} -O2 -o "$TMP/hooks_main" bench/hooks_main.c -L"$TMP" -lbenchfn -Wl,-rpath,"$TMP" || exit 1
median() { sort -n | awk '{v[NR] = $1} END {print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2}'; }
EBPF=1
{ [ "$(id -u)" = 0 ] && [ -r /sys/kernel/btf/vmlinux ]; } || EBPF=0

# one CONFIG: ns per call in one run
one() {
	local go=$TMP/go.$1 n=$CALLS apid="" r
	rm -f "$go" "$TMP"/p.*
	[ "$1" = ebpf ] && n=$EBPF_CALLS
	rm -f "$TMP/ready"
	"$TMP/hooks_main" "$n" "$go" > "$TMP/out.$1" 2> "$TMP/ready" &
	local pid=$!
	for _ in $(seq 1 200); do grep -q ready "$TMP/ready" 2>/dev/null && break; sleep 0.01; done
	case $1 in
	entry) "$MEMTAP" attach -p $pid -q -o "$TMP/p" -f bench_fn:size=arg1 2> "$TMP/err" & apid=$! ;;
	got) "$MEMTAP" attach -p $pid -q -o "$TMP/p" -f bench_fn:size=arg1:got 2> "$TMP/err" & apid=$! ;;
	ret) "$MEMTAP" attach -p $pid -q -o "$TMP/p" -f bench_fn:size=arg1:fail=null 2> "$TMP/err" & apid=$! ;;
	ebpf) "$MEMTAP" attach --via=ebpf -p $pid -q -o "$TMP/p" -f bench_fn:size=arg1 2> "$TMP/err" > /dev/null & apid=$! ;;
	esac
	if [ -n "$apid" ]; then
		for _ in $(seq 1 200); do grep -qE 'counting active|tracing' "$TMP/err" 2>/dev/null && break; sleep 0.05; done
	fi
	touch "$go"
	wait $pid
	[ -n "$apid" ] && { kill -INT $apid 2>/dev/null; wait $apid 2>/dev/null; }
	r=$(awk '{print $1}' "$TMP/out.$1")
	echo "${r:-nan}"
}

CONFIGS="none entry got ret"
[ $EBPF = 1 ] && CONFIGS="$CONFIGS ebpf"
for r in $(seq 1 "$ROUNDS"); do
	for c in $CONFIGS; do one $c >> "$TMP/ns.$c"; done
done
base=$(median < "$TMP/ns.none")
{
echo "### -f hooks: cost per call of a hooked function ($(date -u +%Y-%m-%d), $(uname -r), $(nproc) CPUs)"
echo
echo "Command: \`bash bench/hooks.sh\` (ROUNDS=$ROUNDS, $CALLS calls a run, $EBPF_CALLS under eBPF; medians of interleaved runs)."
echo
echo "| hook | ns per call (median) | cost per call | runs |"
echo "|---|---:|---:|---|"
for c in $CONFIGS; do
	m=$(median < "$TMP/ns.$c")
	case $c in
	none) name="unhooked" ;;
	entry) name="entry hook (\`attach -f bench_fn:size=arg1\`)" ;;
	got) name="GOT hook (\`attach -f bench_fn:size=arg1:got\`)" ;;
	ret) name="entry + return hook (\`attach -f bench_fn:size=arg1:fail=null\`)" ;;
	ebpf) name="eBPF uprobe (\`attach --via=ebpf -f bench_fn:size=arg1\`)" ;;
	esac
	echo "| $name | $m | $(awk -v a="$m" -v b="$base" 'BEGIN { printf "%.2f ns", a - b }') | $(tr '\n' ' ' < "$TMP/ns.$c") |"
done
[ $EBPF = 1 ] || echo "| eBPF uprobe | skipped: needs root and /sys/kernel/btf/vmlinux | | |"
} | tee "$OUT/hooks.md"
