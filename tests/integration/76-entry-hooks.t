#!/bin/bash
# -f FUNC as an entry hook: functions called inside their own module (an
# executable's exported function, a static one), counted exactly by memtap
# run and memtap attach, on a PIE and a non-PIE (endbr64) program; return
# hooks (fail=null, fail=nonzero, out=argK) through longjmp and C++
# exceptions; unknown or unpatchable functions refused by name with the
# target untouched; hooks gone after the session (entry bytes restored byte
# for byte, counts stop); 20 attach/detach cycles on threads that check
# every result.
. "$(dirname "$0")/../lib.sh"
plan 55

EH="$FIX/entry_hooks"
N=300
sum_sizes=$(awk -v n=$N 'BEGIN { for (i = 0; i < n; i++) s += 1 + (i * 37) % 300; print s }')
in_128=$(awk -v n=$N 'BEGIN { for (i = 0; i < n; i++) { v = 1 + (i * 37) % 300; if (v >= 128 && v < 256) c++ } print c }')
fails5=$(awk -v n=$N 'BEGIN { for (i = 0; i < n; i++) c += i % 5 == 0; print c }')
fails4=$(awk -v n=$N 'BEGIN { for (i = 0; i < n; i++) c += i % 4 == 0; print c }')
FUNCS=(-f arena_alloc:size=arg1 -f small_alloc:size=arg0 -f obj_make:size=arg0:out=arg1 -f maybe_alloc:fail=null)

# counts JSON: "arena_alloc calls bytes failed / ..." for the -f functions
counts() {
	jq -r '.processes[0].functions | to_entries[] | select(.key | test("^(arena_alloc|small_alloc|obj_make|maybe_alloc|jumper|may_throw)$")) |
		"\(.key) \(.value.calls) \(.value.bytes) \(.value.failed)"' "$1" | sort | tr '\n' '/'
}
want_counts="arena_alloc $N $sum_sizes 0/maybe_alloc $N 0 $fails4/obj_make $N $(awk -v n=$N 'BEGIN { print n * (n - 1) / 2 }') $fails5/small_alloc $((N / 2)) $((N / 2 * 8)) 0/"

# memtap run, PIE and -no-pie with endbr64.
for prog in entry_hooks entry_hooks_nopie; do
	want=$("$FIX/$prog" count $N)
	got=$($MEMTAP run -o "$TMP/r-$prog" --format json --report-file "$TMP/r-$prog.json" "${FUNCS[@]}" -- "$FIX/$prog" count $N)
	is "$?/$got" "0/$want" "run $prog with four entry hooks: same output"
	is "$(counts "$TMP/r-$prog.json")" "$want_counts" \
		"$prog: calls inside the executable counted exactly, a static function too, failures from the result and through out="
	is "$(bucket "$TMP/r-$prog.json" arena_alloc 128)" "$in_128" "$prog: arena_alloc's size histogram (bucket 128)"
done
$MEMTAP run -o "$TMP/nz" --format json --report-file "$TMP/nz.json" -f obj_make:fail=nonzero -- "$EH" count $N > /dev/null
is "$(fn_field "$TMP/nz.json" obj_make failed)" "$fails5" "fail=nonzero counts the int results that are not 0"

# A stripped program whose symbols are in a separate debug file.
[ -z "$(nm "$FIX/stripped/entry_hooks" 2>/dev/null)" ]
ok $? "the stripped copy has no symbol table"
$MEMTAP run -o "$TMP/st" --format json --report-file "$TMP/st.json" -f small_alloc:size=arg0 -- "$FIX/stripped/entry_hooks" count $N > /dev/null
is "$(counts "$TMP/st.json")" "small_alloc $((N / 2)) $((N / 2 * 8)) 0/" "a static function found through the debug file (.gnu_debuglink), counted exactly"
$MEMTAP run -o "$TMP/g" -f arena_alloc:got -- "$EH" count 1 > /dev/null 2> "$TMP/err"
like "$?:$(cat "$TMP/err")" "^2:.*arena_alloc is in no dynamic symbol table, so no GOT slot names it" \
	":got on a function no GOT slot can name is refused"

# Return hooks through longjmp and C++ exceptions.
got=$($MEMTAP run -o "$TMP/j" --format json --report-file "$TMP/j.json" -f jumper:fail=null -- "$EH" jump 1000)
is "$?/$got" "0/jumped 334 nulls 333 bad 0" "longjmp out of a return-hooked function, 334 times: every result right"
is "$(counts "$TMP/j.json")" "jumper 1000 0 333/" "and its 333 NULL results counted exactly"
want=$("$FIX/hook_throw" 300)
got=$($MEMTAP run -o "$TMP/x" --format json --report-file "$TMP/x.json" -f may_throw:fail=null -- "$FIX/hook_throw" 300)
is "$?/$got" "0/$want" "C++ exceptions thrown through a return-hooked function, caught, rethrown: the program is unharmed"
is "$(counts "$TMP/x.json")" "may_throw 600 0 200/" "all 600 calls counted, the 200 NULL returns failed (thrown ones are not)"

# Refusals, naming the function and why.
$MEMTAP run -o "$TMP/e" -f zmaloc -- "$EH" count 1 > /dev/null 2> "$TMP/err"
is "$?" 2 "run -f zmaloc is refused"
like "$(cat "$TMP/err")" "function zmaloc not found in .*entry_hooks or its [0-9]+ libraries .*\(near: .*malloc.*\?\)" \
	"saying where it looked and what is near ($(cat "$TMP/err"))"
$MEMTAP run -o "$TMP/e" -f arena_aloc -- "$EH" count 1 > /dev/null 2> "$TMP/err"
like "$(cat "$TMP/err")" "near: arena_alloc" "a typo of an executable's own function gets its name"
$MEMTAP run -o "$TMP/e" -f tiny_fn -- "$EH" count 1 > /dev/null 2> "$TMP/err"
like "$?:$(cat "$TMP/err")" "^2:.*cannot hook tiny_fn at its entry: it is 3 bytes long; an entry hook needs 5" "a 3-byte function is refused"
$MEMTAP run -o "$TMP/e" -f loop_fn -- "$EH" count 1 > /dev/null 2> "$TMP/err"
like "$?:$(cat "$TMP/err")" "^2:.*cannot hook loop_fn at its entry: a jump at loop_fn\+0x7 lands inside its first 7 bytes" \
	"a function with a jump back into its first bytes is refused"

# memtap attach: a program driven one command at a time.
# mem PID ADDR LEN: bytes of PID's memory, in hex
mem() { python3 -c "import sys; f = open('/proc/$1/mem', 'rb'); f.seek($2); sys.stdout.write(f.read($3).hex())"; }
# addr PID PROG SYM: where SYM is in PID
addr() {
	local v base
	v=$(nm "$2" | awk -v s="$3" '$3 == s { print $1 }')
	if readelf -h "$2" | grep -q 'EXEC'; then echo $((16#$v)); return; fi
	base=$(awk -v p="$2" '$6 == p && $3 == "00000000" { split($1, a, "-"); print a[1]; exit }' /proc/$1/maps)
	echo $((16#$base + 16#$v))
}
for prog in entry_hooks entry_hooks_nopie; do
	coproc TGT { exec "$FIX/$prog" serve; }
	TPID=$TGT_PID
	at_exit "kill $TPID"
	read -r -t 10 -u "${TGT[0]}" l
	send() { echo "$1" >&"${TGT[1]}"; local l; read -r -t 10 -u "${TGT[0]}" l; [ "$l" = done ]; }
	send "call 10"
	before=""
	for s in arena_alloc small_alloc obj_make maybe_alloc; do before="$before $(mem $TPID "$(addr $TPID "$FIX/$prog" $s)" 16)"; done
	$MEMTAP attach -p $TPID -o "$TMP/a-$prog" --format json --report-file "$TMP/a-$prog.json" "${FUNCS[@]}" 2> "$TMP/a.err" &
	APID=$!
	wait_for "grep -q 'counting active' $TMP/a.err"
	like "$($MEMTAP ctl $TPID status)" "entry_hooks: 4 patched" "attach $prog: four entry hooks patched"
	e9=$(mem $TPID "$(addr $TPID "$FIX/$prog" arena_alloc)" 8)
	like "$e9" "^(f30f1efa)?e9" "arena_alloc now starts with a jmp (after endbr64 if any): $e9"
	send "call $N"
	kill -INT $APID
	wait $APID
	is "$?" 0 "attach $prog: Ctrl-C detaches"
	is "$(counts "$TMP/a-$prog.json")" "$want_counts" "attach $prog: exactly the calls made while attached, with failures"
	after=""
	for s in arena_alloc small_alloc obj_make maybe_alloc; do after="$after $(mem $TPID "$(addr $TPID "$FIX/$prog" $s)" 16)"; done
	is "$after" "$before" "attach $prog: after detach every entry is byte for byte as before"
	like "$($MEMTAP ctl $TPID status)" "entry_hooks: 0 patched" "and the agent has no hook in place"
	send "call 5"
	ok $? "the program runs on"
	# A later attach without -f reports no -f function, and counts stop.
	$MEMTAP attach -p $TPID -o "$TMP/b-$prog" --format json --report-file "$TMP/b-$prog.json" -d 1 2> "$TMP/b.err" &
	APID=$!
	wait_for "grep -q 'counting active' $TMP/b.err"
	send "call 50"
	wait $APID
	is "$(counts "$TMP/b-$prog.json")" "" "attach $prog again without -f: no -f function reported"
	echo quit >&"${TGT[1]}"
	wait $TPID
	is "$?" 0 "$prog exits normally"
done

# attach -f of an unknown function: refused, nothing loaded into the target.
coproc TGT { exec "$EH" serve; }
TPID=$TGT_PID
at_exit "kill $TPID"
read -r -t 10 -u "${TGT[0]}" l
$MEMTAP attach -p $TPID -d 1 -f zmaloc 2> "$TMP/err"
is "$?" 1 "attach -f zmaloc is refused"
like "$(cat "$TMP/err")" "function zmaloc not found in .*entry_hooks or its [0-9]+ libraries.*\(near: .*malloc" "by name, with what is near"
grep -q libmemtap /proc/$TPID/maps
is "$?" 1 "and the agent was not loaded"
$MEMTAP attach -p $TPID -d 1 -f loop_fn 2> "$TMP/err"
like "$?:$(cat "$TMP/err")" "^1:.*cannot hook loop_fn at its entry" "attach -f loop_fn is refused, saying why"
send "call 3"
ok $? "the target still answers"
echo quit >&"${TGT[1]}"
wait $TPID
is "$?" 0 "and exits normally"

# A thread blocked in a system call inside the bytes an entry hook would
# replace: the patch waits for it, then gives up; nothing is left behind.
coproc TGT { exec "$EH" block; }
TPID=$TGT_PID
at_exit "kill $TPID"
read -r -t 10 -u "${TGT[0]}" l
wait_for "grep -q '^0 ' /proc/$TPID/task/*/syscall"
$MEMTAP attach -p $TPID -o "$TMP/blk" -d 1 -f blocker -f arena_alloc:size=arg1 2> "$TMP/err"
like "$?:$(cat "$TMP/err")" "^1:.*a thread of $TPID was inside the first bytes of a -f function at each of 50 stops" \
	"attach -f on a function a thread is stopped inside is refused after 50 tries"
like "$($MEMTAP ctl $TPID status | tr '\n' ' ')" "mode: loaded, not attached.*entry_hooks: 0 patched, 0 pending" "and leaves no hook, detached"
$MEMTAP attach -p $TPID -o "$TMP/bl" --format json --report-file "$TMP/bl.json" -f arena_alloc:size=arg1 2> "$TMP/bl.err" &
APID=$!
wait_for "grep -q 'counting active' $TMP/bl.err"
send "call 20"
kill -INT $APID
wait $APID
is "$(fn_field "$TMP/bl.json" arena_alloc calls)" 20 "the same process with a function no thread is inside: hooked, 20 calls"
echo quit >&"${TGT[1]}"
wait $TPID
is "$?" 0 "the blocked program exits normally"

# 20 attach/detach cycles on 4 threads that call two hooked functions in a
# tight loop and check every result.
"$EH" threads 4 "$TMP/stop" > "$TMP/threads.out" &
CPID=$!
at_exit "touch $TMP/stop; kill $CPID"
wait_for "grep -q ready $TMP/threads.out"
fails=0
for i in $(seq 1 20); do
	$MEMTAP attach -p $CPID -q -o "$TMP/cy" -d 0.2 -f arena_alloc:size=arg1 -f obj_make:out=arg1 2> "$TMP/cy.err" ||
		{ fails=$((fails + 1)); diag "cycle $i: $(cat "$TMP/cy.err")"; }
done
is "$fails" 0 "20 attach/detach cycles with entry hooks on 4 busy threads succeed"
counted=0
for f in "$TMP"/cy.$CPID.*.mtp; do
	c=$($MEMTAP report --format json "$f" | jq -r '.processes[0].functions.arena_alloc.calls // 0')
	[ "$c" -gt 0 ] && counted=$((counted + 1))
done
is "$counted" 20 "every cycle counted arena_alloc calls"
f=$(ls "$TMP"/cy.$CPID.*.mtp | tail -1)
$MEMTAP report --format json "$f" > "$TMP/cy.json"
a=$(fn_field "$TMP/cy.json" arena_alloc calls)
o=$(fn_field "$TMP/cy.json" obj_make calls)
d=$((a - o))
[ "${d#-}" -le 8 ]
ok $? "arena_alloc and obj_make, called in turn, counted alike ($a, $o)"
fm=$(fn_field "$TMP/cy.json" obj_make failed)
[ "$fm" -gt 0 ] && [ $((o / fm)) -ge 4 ] && [ $((o / fm)) -le 6 ]
ok $? "about 1 in 5 obj_make results NULL through its out-pointer ($fm of $o)"
like "$($MEMTAP ctl $CPID status)" "entry_hooks: 0 patched" "no hook left in place"
touch "$TMP/stop"
wait $CPID
is "$?" 0 "the threads end healthy"
like "$(cat "$TMP/threads.out")" "errors 0 expected ([0-9]+)$" "every result was right and the total is the one expected ($(tail -1 "$TMP/threads.out"))"
c=$(awk '/^calls/ { print $2 }' "$TMP/threads.out")
x=$(awk '/^calls/ { print $6 }' "$TMP/threads.out")
is "$c" "$x" "calls = what the functions counted themselves"
