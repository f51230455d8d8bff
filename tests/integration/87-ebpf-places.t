#!/bin/bash
# Where the eBPF backend puts its probes, for each allocator on this machine
# (glibc with libstdc++, and Debian's jemalloc, tcmalloc and mimalloc when
# installed): the instruction at every probe memtap says is emulated is read
# from the file and must be one the kernel emulates (push, jmp/call rel, jcc,
# nop: arch/x86/kernel/uprobes.c); no hot function (malloc, calloc,
# realloc, free, plain and sized new/delete) is single-stepped; counts and
# sizes are right where an argument was found in another register; and
# memtap's own inert agent is never taken for the allocator.
. "$(dirname "$0")/../lib.sh"

[ "$(id -u)" = 0 ] || skip_all "the eBPF backend needs root"
[ -r /sys/kernel/btf/vmlinux ] || skip_all "no BTF (/sys/kernel/btf/vmlinux): the eBPF backend needs it"
command -v jq >/dev/null || skip_all "jq is missing"
$MEMTAP attach --help | grep -q -- --via=ebpf || skip_all "build/memtap was built without the eBPF backend"
plan 19

LIBDIR=/usr/lib/x86_64-linux-gnu
# kind BYTE0 BYTE1: the class of the instruction, as the kernel's
# branch_setup_xol_ops / push_setup_xol_ops would emulate it, or "other".
kind() {
	local a=$((16#$1)) b=$((16#$2))
	if [ $a -ge $((16#50)) ] && [ $a -le $((16#57)) ]; then echo push
	elif [ $a = $((16#41)) ] && [ $b -ge $((16#50)) ] && [ $b -le $((16#57)) ]; then echo push
	elif [ $a = $((16#e8)) ]; then echo call
	elif [ $a = $((16#e9)) ] || [ $a = $((16#eb)) ]; then echo jmp
	elif [ $a -ge $((16#70)) ] && [ $a -le $((16#7f)) ]; then echo jcc
	elif [ $a = $((16#0f)) ] && [ $b -ge $((16#80)) ] && [ $b -le $((16#8f)) ]; then echo jcc
	elif [ $a = $((16#90)) ]; then echo nop
	else echo other; fi
}
# check NAME [PRELOAD]: the probes of cxx_ops (C++ operators and the malloc
# family) under allocator NAME.
check() {
	local name=$1 pre=${2:-} bad=0 n=0 hot=""
	env ${pre:+LD_PRELOAD=$pre} $MEMTAP run --via=ebpf -v -q -o "$TMP/$name" -- "$FIX/cxx_ops" 2> "$TMP/$name.v"
	while read -r sym obj why; do
		off=$(printf '%s' "$why" | sed -n 's/.*(file offset \(0x[0-9a-f]*\))$/\1/p')
		case $why in
		*single-stepped*)
			case " malloc calloc realloc free _Znwm _Znam _ZdlPv _ZdlPvm _ZdaPv _ZdaPvm " in
			*" $sym "*) hot="$hot $sym" ;;
			esac
			continue ;;
		esac
		set -- $(od -An -tx1 -j $((off)) -N 2 "$obj")
		k=$(kind "$1" "$2")
		n=$((n + 1))
		if [ "$k" = other ]; then
			bad=$((bad + 1))
			diag "$name: $sym in $obj at $off: bytes $1 $2 are not emulated ($why)"
		fi
	done < <(sed -n 's/^memtap: probe //p' "$TMP/$name.v")
	ok $([ $n -gt 0 ] && [ $bad = 0 ]; echo $?) "$name: the $n probes said to be emulated are on push/jmp/call/jcc/nop"
	is "$hot" "" "$name: no hot function is single-stepped"
}
check glibc
for a in jemalloc:libjemalloc.so.2 tcmalloc:libtcmalloc_minimal.so.4 mimalloc:libmimalloc.so.2; do
	name=${a%%:*} lib=$LIBDIR/${a#*:}
	if [ ! -e "$lib" ]; then
		skip "$name is not installed ($lib; scripts/deps.sh peers)"
		skip "$name is not installed"
		skip "$name is not installed"
		skip "$name is not installed"
		continue
	fi
	check "$name" "$lib"
	grep -q "probe malloc  *$lib" "$TMP/$name.v"
	ok $? "$name: malloc is probed in $name"
	# sizes read from wherever the argument is at the probe (mimalloc's
	# malloc moves it to %rsi before its first branch)
	LD_PRELOAD=$lib $MEMTAP run --via=ebpf -q -o "$TMP/$name.t" -- "$FIX/threads_malloc" 2 1000 12345
	$MEMTAP report --format=json "$TMP/$name".t.*.mtp > "$TMP/$name.json"
	is "$(bucket "$TMP/$name.json" malloc 8192)" 2000 "$name: 2000 mallocs of 12345 bytes in the 8192 bucket"
done

# A malloc of the program's own that starts with a load, an add and a store
# has no sound place but its entry: memtap says what that costs.
cat > "$TMP/own.c" <<'EOF2'
#include <stddef.h>
extern void *__libc_malloc(size_t);
volatile unsigned long counter;
void *malloc(size_t n) { counter++; return __libc_malloc(n); }
int main(void) { for (int i = 0; i < 10; i++) { volatile char *p = malloc(10); p[0] = 1; } return 0; }
EOF2
cc -O2 -o "$TMP/own" "$TMP/own.c"
$MEMTAP run --via=ebpf -q -o "$TMP/own" -- "$TMP/own" 2> "$TMP/own.err"
like "$(cat "$TMP/own.err")" "warning: malloc in .*own is probed on an instruction the kernel single-steps .*about 10 to 30 us .*use --via=inject" \
   "a hot function with no emulated place: a warning with the cost per call, suggesting --via=inject"

# memtap's agent, left loaded and inert by attach --via=inject, exports every
# allocation function: it must not be probed.
sleep 1000 &
spid=$!
at_exit "kill $spid"
wait_for "[ \"\$(readlink /proc/$spid/exe)\" != \"$(readlink /proc/$$/exe)\" ]" 50
$MEMTAP attach -p $spid -q -d 0.3 -o "$TMP/inj" 2> "$TMP/inj.err"
grep -q libmemtap "/proc/$spid/maps"
ok $? "attach --via=inject left the agent loaded in sleep ($spid)"
$MEMTAP attach --via=ebpf -p $spid -v -q -d 0.3 -o "$TMP/eb" 2> "$TMP/eb.err"
ok $? "attach --via=ebpf to it"
ok $(! grep -q libmemtap "$TMP/eb.err"; echo $?) "no probe in libmemtap.so ($(grep -c libmemtap "$TMP/eb.err") lines name it)"
like "$(cat "$TMP/eb.err")" "probe malloc .*libc\.so" "malloc is probed in libc"
