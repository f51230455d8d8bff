#!/bin/bash
# Leak check by reachability at exit (--leaks), against valgrind memcheck on
# the same fixture: a list whose head was dropped, a tree whose root was
# dropped (lost); a global cache, an interior pointer, pointers held only in
# TLS (the main thread's and another thread's), on another thread's stack,
# in a spinning thread's register (reachable).  memtap's unreachable bytes
# are valgrind's definitely + indirectly lost.
. "$(dirname "$0")/../lib.sh"
plan 19
F="$FIX/leak_patterns"

$MEMTAP run --leaks -o "$TMP/l" -- "$F" exit > "$TMP/l.txt" 2>&1
ok $? "run --leaks: the fixture exits 0"
read -r _ _ want_bytes want_blocks < <(grep '^expect lost' "$TMP/l.txt")
like "$want_bytes $want_blocks" '^[0-9]+ [0-9]+$' "the fixture says what it lost ($want_bytes bytes, $want_blocks blocks)"
$MEMTAP report --format=json "$TMP"/l.*.mtp > "$TMP/l.json"
L='.processes[0].leaks'
is "$(json "$TMP/l.json" "$L.unreachable_bytes") $(json "$TMP/l.json" "$L.unreachable_blocks")" \
	"$want_bytes $want_blocks" "unreachable: exactly the list and the tree"
is "$(json "$TMP/l.json" "$L.at_exit")" true "the check was made at exit"
is "$(json "$TMP/l.json" "$L.threads")" 4 "with the 4 threads of the program (3 still waiting)"
is "$(json "$TMP/l.json" "$L.unstopped")" 0 "every thread stopped"
reach() { # reach FUNCTION: reachable bytes of the sites whose stack has FUNCTION
	jq --arg f "$1" "[$L.sites[] | select(.symbols | index(\$f)) | .reachable_bytes] | add // 0" "$TMP/l.json"
}
lost() {
	jq --arg f "$1" "[$L.sites[] | select(.symbols | index(\$f)) | .unreachable_bytes] | add // 0" "$TMP/l.json"
}
is "$(lost make_list) $(lost make_tree)" "4800 2520" "lost per site: the list (100 x 48) and the tree (63 x 40)"
is "$(reach reg_thread)" 600 "a block held only in a register of a spinning thread: reachable"
is "$(reach stack_thread)" 500 "a block held only on another thread's stack: reachable"
is "$(reach tls_thread)" 400 "a block held only in another thread's TLS: reachable"
is "$(jq "[$L.sites[] | select(.reachable_bytes == 300 or .reachable_bytes == 200 or .reachable_bytes == 10000)] | length" "$TMP/l.json")" 3 \
	"the main thread's TLS (300), an interior pointer (200), the global cache (10 x 1000): reachable"
r=$(json "$TMP/l.json" "$L.reachable_bytes")
[ "$r" -ge 12000 ]
ok $? "still reachable ($r bytes) covers every block the fixture keeps"
like "$(cat "$TMP/l.txt")" "definitely lost: $want_bytes bytes in $want_blocks blocks" "text: definitely lost"
grep -A1 -E '^  4800 bytes in 100 blocks are definitely lost, allocated by malloc from:' "$TMP/l.txt" |
	grep -qE 'make_list +.*leak_patterns.c:[0-9]+'
ok $? "text: the list's site, symbolized to file:line"
like "$(cat "$TMP/l.txt")" "10000 bytes in 10 blocks are still reachable" "text: the cache is still reachable"
like "$($MEMTAP report "$TMP"/l.*.mtp)" "Leak check by reachability \(at exit" "memtap report shows the check again"

# valgrind memcheck on the same program.  valgrind itself sometimes dies on
# this CPU (SIGTRAP in its JIT): try again, and skip, saying so.
vg_ok=0
if command -v valgrind >/dev/null; then
	for try in 1 2 3; do
		valgrind --leak-check=full "$F" exit 2> "$TMP/vg.txt" && grep -q 'LEAK SUMMARY' "$TMP/vg.txt" &&
			{ vg_ok=1; break; }
		diag "valgrind did not complete (try $try)"
	done
fi
if [ $vg_ok = 1 ]; then
	# ==PID==    definitely lost: 88 bytes in 2 blocks
	vg() { awk -v k="$1 lost:" -v f="$2" 'index($0, k) { gsub(/,/, ""); n = split($0, w, " ");
		for (i = 1; i <= n; i++) if (w[i] == "lost:") { print (f == "bytes" ? w[i + 1] : w[i + 4]); exit } }' "$TMP/vg.txt"; }
	vdef=$(vg definitely bytes) vind=$(vg indirectly bytes)
	diag "valgrind: definitely lost $vdef bytes in $(vg definitely blocks) blocks, indirectly lost $vind in $(vg indirectly blocks)"
	is "$(json "$TMP/l.json" "$L.unreachable_bytes")" "$((vdef + vind))" \
		"memtap's unreachable bytes = valgrind's definitely + indirectly lost"
	is "$(json "$TMP/l.json" "$L.unreachable_blocks")" "$(($(vg definitely blocks) + $(vg indirectly blocks)))" \
		"and the same number of blocks"
else
	skip "valgrind is not installed or never completed"
	skip "valgrind is not installed or never completed"
fi

# The check needs every allocation: sampled call sites are refused, saying so.
$MEMTAP run --leaks --sample=4096 -o "$TMP/s" -- "$F" exit > "$TMP/s.txt" 2>&1
like "$(cat "$TMP/s.txt")" "leak check needs every allocation tracked.*--leaks" \
	"--leaks --sample=4096: the check is refused with the reason"
