#!/bin/bash
# Exact counts on jemalloc, tcmalloc and mimalloc (LD_PRELOAD, as a server
# linked with one gets it), through the fast paths the agent opens for them
# (src/agent/interpose.c, "other allocators") and through the slow path
# (MEMTAP_SLOW_PATH=1): the exact-count fixtures of 10-counts.t, every figure
# compared between the two paths and against the known numbers, in-use at
# the end against what the runtime alone leaves in use (a fixture run that
# does nothing).  A fast path that let a call of the allocator's back into
# the agent (no recursion guard) would show here as a count the slow path
# does not have: the large blocks make the allocators map memory inside
# malloc and free, through the PLT, which must not count as mmap calls.
. "$(dirname "$0")/../lib.sh"
PER=23
plan $((3 * PER))

LIBDIR=/usr/lib/x86_64-linux-gnu
# The figures that must not depend on the path (the dump time, pid and the
# agent's own memory are left out).
strip() { jq -c '.processes[0] | {functions, totals: (.totals | del(.agent_bytes))}' "$1"; }
# run NAME [env...] -- FIXTURE ARGS: memtap run under $LIB, JSON in $TMP/NAME.json
run() {
	local name=$1
	shift
	local envs=()
	while [ "$1" != -- ]; do envs+=("$1"); shift; done
	shift
	local fx=$1
	shift
	env LD_PRELOAD="$LIB" "${envs[@]}" $MEMTAP run -q "${OPTS[@]}" -o "$TMP/$name" -- "$FIX/$fx" "$@"
	local rc=$?
	$MEMTAP report --format=json "$TMP/$name".*.mtp > "$TMP/$name.json"
	return $rc
}
calls() { fn_field "$TMP/$1.json" "$2" calls; }
inuse() { jq '.processes[0].totals.in_use_bytes' "$TMP/$1.json"; }

for lib in libjemalloc.so.2 libtcmalloc_minimal.so.4 libmimalloc.so.2; do
	LIB=$LIBDIR/$lib
	name=${lib%%.so*}
	name=${name#lib}
	name=${name%_minimal}
	if [ ! -e "$LIB" ]; then
		for _ in $(seq $PER); do skip "$lib is not installed (sh scripts/deps.sh peers)"; done
		continue
	fi
	OPTS=()
	# What each allocator leaves to glibc: its functions would hand out
	# glibc heap blocks that the allocator's free cannot take.
	case $name in
	jemalloc) missing="pvalloc reallocarray" ;;
	tcmalloc) missing="reallocarray" ;;
	*) missing="" ;;
	esac

	# The fast paths are really open on this allocator, and closed by the knob.
	coproc TGT { LD_PRELOAD=$LIB exec $MEMTAP run -q -o "$TMP/st" -- "$FIX/ctl_target"; }
	at_exit "kill $TGT_PID"
	wait_for "pgrep -P $TGT_PID" && TPID=$(pgrep -P $TGT_PID)
	wait_for "test -S /tmp/memtap-$(id -u)/$TPID.sock"
	st=$($MEMTAP ctl "$TPID" status)
	like "$st" "allocator: $name " "$name: ctl status names the allocator"
	like "$st" "fast_paths: $name" "$name: malloc and free take its fast paths"
	echo quit >&"${TGT[1]}"
	wait "$TGT_PID" 2>/dev/null
	coproc TGT { LD_PRELOAD=$LIB MEMTAP_SLOW_PATH=1 exec $MEMTAP run -q -o "$TMP/st" -- "$FIX/ctl_target"; }
	at_exit "kill $TGT_PID"
	wait_for "pgrep -P $TGT_PID" && TPID=$(pgrep -P $TGT_PID)
	wait_for "test -S /tmp/memtap-$(id -u)/$TPID.sock"
	like "$($MEMTAP ctl "$TPID" status)" "fast_paths: none" "$name: MEMTAP_SLOW_PATH=1 closes them"
	echo quit >&"${TGT[1]}"
	wait "$TGT_PID" 2>/dev/null

	# What the runtime alone leaves in use and calls (libstdc++'s emergency
	# pool where the allocator links libstdc++, tcmalloc's MallocExtension).
	run base -- threads_malloc 0 0 1
	run cbase -- cxx_ops none

	# every C function, each a known number of times.
	run e -- every_func $missing
	ok $? "$name: every_func exits 0"
	run es MEMTAP_SLOW_PATH=1 -- every_func $missing
	is "$(strip "$TMP/es.json")" "$(strip "$TMP/e.json")" "$name: every_func: the slow path gives the fast paths' figures"
	want="" got=""
	for pair in malloc:4 calloc:5 realloc:7 reallocarray:2 posix_memalign:4 aligned_alloc:6 \
		    memalign:8 valloc:9 pvalloc:10 free:51 mmap:3 munmap:2 mremap:1 sbrk:3 brk:1 \
		    "operator new:0"; do
		fn=${pair%%:*} n=${pair#*:}
		case " $missing " in *" $fn "*) n=0 ;; esac
		[ "$fn" = free ] && case " $missing " in *" pvalloc "*) n=$((n - 10)) ;; esac
		[ "$fn" = free ] && case " $missing " in *" reallocarray "*) n=$((n - 1)) ;; esac
		want="$want $fn=$((n + $(calls base "$fn")))"
		got="$got $fn=$(calls e "$fn")"
	done
	is "$got" "$want" "$name: every_func: calls of every function exact (plus the runtime's own)"
	is "$(fn_field "$TMP/e.json" malloc failed)" 1 "$name: the impossible malloc counted as failed"
	is "$(bucket "$TMP/e.json" free 0)" 3 "$name: free(NULL) x3 in bucket 0"
	is "$(bucket "$TMP/e.json" calloc 64)" 5 "$name: calloc(10, 10) x5 in the 64 bucket"
	is "$(inuse e)" "$(inuse base)" "$name: every_func: in use at the end is what the runtime alone leaves ($(inuse base) bytes)"

	# 4 threads x 25,000 malloc(12345) + free.
	run t -- threads_malloc 4 25000 12345
	ok $? "$name: threads_malloc exits 0"
	run ts MEMTAP_SLOW_PATH=1 -- threads_malloc 4 25000 12345
	is "$(strip "$TMP/ts.json")" "$(strip "$TMP/t.json")" "$name: threads_malloc: the slow path gives the fast paths' figures"
	is "$(bucket "$TMP/t.json" malloc 8192) $(bucket "$TMP/t.json" free 8192)" "100000 100000" \
		"$name: 100000 malloc(12345) and their 100000 frees, each in the 8192 bucket"
	is "$(calls t malloc)" $((100000 + $(calls base malloc))) "$name: no other malloc but the runtime's"

	# Large blocks kept, freed, kept again: the allocator maps memory inside
	# malloc (and unmaps some inside free) through the PLT; none of it is a
	# call of the program's.  (Without the agent's filter on the return
	# address, the fast paths count 12 mmaps on jemalloc, 40 sbrks on
	# tcmalloc, 19 mmaps on mimalloc here.)
	big() { # big NAME [ENV...]
		local out=$1
		shift
		printf 'alloc 20 16777216\nfree\nalloc 20 16777216\nfree\nquit\n' |
			env LD_PRELOAD="$LIB" "$@" $MEMTAP run -q -o "$TMP/$out" -- "$FIX/ctl_target" > /dev/null
	}
	big b
	ok $? "$name: 40 blocks of 16 MiB, 20 at a time"
	$MEMTAP report --format=json "$TMP"/b.*.mtp > "$TMP/b.json"
	big bs MEMTAP_SLOW_PATH=1
	$MEMTAP report --format=json "$TMP"/bs.*.mtp > "$TMP/bs.json"
	is "$(strip "$TMP/bs.json")" "$(strip "$TMP/b.json")" "$name: 16 MiB blocks: the slow path gives the fast paths' figures"
	is "$(jq -c '[.processes[0].functions | (.mmap, .munmap, .mremap, .sbrk, .brk) | .calls // 0] | add' "$TMP/b.json") $(calls b malloc) $(calls b free)" \
		"0 $((40 + $(calls base malloc))) $((40 + $(calls base free)))" \
		"$name: 40 mallocs and frees of 16 MiB, and no mmap, munmap, mremap, sbrk or brk counted"

	# The C++ operators (their own allocator's, behind the agent's).
	run c -- cxx_ops no-bad-alloc
	ok $? "$name: cxx_ops exits 0"
	run cs MEMTAP_SLOW_PATH=1 -- cxx_ops no-bad-alloc
	is "$(strip "$TMP/cs.json")" "$(strip "$TMP/c.json")" "$name: cxx_ops: the slow path gives the fast paths' figures"
	want="" got=""
	for pair in "operator new:5" "operator new[]:3" "operator new(nothrow):2" "operator new(align):4" \
		    "operator new[](align):1" "operator delete(sized):5" "operator delete[]:3" \
		    "operator delete:2" "operator delete(sized, align):4" "operator delete[](align):1"; do
		fn=${pair%%:*} n=${pair#*:}
		want="$want $n"
		got="$got $(($(calls c "$fn") - $(calls cbase "$fn")))"
	done
	is "$got" "$want" "$name: cxx_ops: calls of every operator exact"
	is "$(inuse c)" "$(inuse cbase)" "$name: cxx_ops: in use at the end is what the C++ runtime alone leaves ($(inuse cbase) bytes)"

	# Sampled call sites (free asks the live table's filter) and every
	# allocation tracked (free takes the slow path): the same counts.  Not
	# the same usable bytes: the unwinder's own allocations change which
	# blocks the program gets, and an aligned block's usable size in
	# mimalloc depends on where in its slot it lies.
	OPTS=(--stacks)
	run k -- every_func $missing
	OPTS=(--stacks --sample=1)
	run k1 -- every_func $missing
	OPTS=()
	fig() {
		jq -c '.processes[0] | {f: (.functions | map_values({calls, failed} + (if .kind == "free" then {} else {bytes} end))),
			in_use: .totals.in_use_bytes}' "$1"
	}
	is "$(fig "$TMP/k.json")" "$(fig "$TMP/e.json")" "$name: --stacks: every_func's figures are the counting mode's"
	is "$(fig "$TMP/k1.json")" "$(fig "$TMP/e.json")" "$name: --stacks --sample=1: the same"
	rm -f "$TMP"/*.mtp
done
