#!/bin/bash
# Call sites on an attached process (issue 4: --stacks, --leaks, dumps and
# reports work attached as under memtap run): every allocation recorded with
# its stack, blocks allocated before the attach freed after it (counted apart,
# never in the sites or in-use), the leak view at detach, then a second
# session with sampled stacks that starts from nothing.  Then non-PIE
# programs: the fixture built -no-pie, and Debian's python3 (non-PIE, and it
# takes malloc's address).
. "$(dirname "$0")/../lib.sh"
plan 21

coproc TGT { exec "$FIX/ctl_target"; }
TPID=$TGT_PID
at_exit "kill $TPID"
send() { echo "$1" >&"${TGT[1]}"; local l; read -r -t 10 -u "${TGT[0]}" l; [ "$l" = done ]; }

send "alloc 5 100" # before the attach: memtap never sees these allocated
$MEMTAP attach -p $TPID --stacks --sample=1 --leaks -o "$TMP/a" --report-file "$TMP/a.txt" 2> "$TMP/a.err" &
APID=$!
wait_for "grep -q attached $TMP/a.err"
like "$(cat "$TMP/a.err")" "attached: " "attach --stacks --sample=1 --leaks"

send "alloc 20 3000"
send "free" # the 20, and the 5 from before the attach
send "alloc 6 200"
D=$($MEMTAP ctl $TPID dump)
$MEMTAP report --format=json "$D" > "$TMP/d.json"
is "$(json "$TMP/d.json" '[.processes[0].sites[].alloc_objects] | add')" 26 \
	"ctl dump while attached: every allocation since the attach is in a site"
is "$(json "$TMP/d.json" '[.processes[0].sites[].inuse_objects] | add') $(json "$TMP/d.json" '[.processes[0].sites[].inuse_bytes] | add')" \
	"6 1200" "in use: the 6 blocks of 200 bytes not freed"
is "$(json "$TMP/d.json" '.processes[0].unknown_frees')" 5 \
	"the 5 blocks allocated before the attach: counted as unknown frees"
is "$(json "$TMP/d.json" '.processes[0].totals.freed_bytes')" 60000 \
	"and kept out of the freed bytes (20 x 3000 only)"
like "$($MEMTAP report --format=collapsed "$D")" "(^|;)main 1200$" \
	"collapsed stacks (in use) end in the fixture's main"

kill -INT $APID
wait $APID
is "$?" 0 "Ctrl-C detaches"
like "$(cat "$TMP/a.txt")" "1200 requested bytes in use \(100.0%\) in 6 blocks, from malloc" \
	"the summary at detach lists what is still allocated by call site"
like "$(cat "$TMP/a.txt")" "main +[^ ]*ctl_target.c:[0-9]+" "symbolized to the fixture's source line"
like "$(cat "$TMP/a.txt")" "5 frees of blocks allocated before recording began" \
	"and says how many frees it could not match"
send "alloc 1 10"
ok $? "the program runs on after detach"

# A second session, sampled (the default 512 KiB): a new start.
$MEMTAP attach -p $TPID --stacks -o "$TMP/b" 2> "$TMP/b.err" &
APID=$!
wait_for "grep -q attached $TMP/b.err"
send "alloc 10000 4096" # 40 MiB: about 80 samples
D=$($MEMTAP ctl $TPID dump)
$MEMTAP report --format=json "$D" > "$TMP/e.json"
is "$(json "$TMP/e.json" '.processes[0].sample_period')" 524288 "second session: sampled once per 512 KiB"
est=$(json "$TMP/e.json" '[.processes[0].sites[].estimated.alloc_bytes] | add | floor')
# 80 samples: the estimate is within 50% of 40960000 by a wide margin.
[ "${est:-0}" -gt 20480000 ] && [ "$est" -lt 61440000 ]
ok $? "the estimate of bytes allocated is near the 40960000 allocated ($est)"
is "$(json "$TMP/e.json" '[.processes[0].sites[].inuse_objects] | add')" \
	"$(json "$TMP/e.json" '[.processes[0].sites[].alloc_objects] | add')" \
	"nothing freed this session: every sample is in use (the first session's live blocks are gone from the table)"
kill -INT $APID
wait $APID
is "$?" 0 "the second session detaches"

# Non-PIE: the same fixture linked at a fixed address.
if cc -no-pie -fno-pie -O1 -o "$TMP/ctl_nopie" tests/fixtures/ctl_target.c -lpthread -ldl 2>/dev/null; then
	coproc NP { exec "$TMP/ctl_nopie"; }
	NPID=$NP_PID
	at_exit "kill $NPID"
	nsend() { echo "$1" >&"${NP[1]}"; local l; read -r -t 10 -u "${NP[0]}" l; [ "$l" = done ]; }
	nsend "alloc 3 10"
	$MEMTAP attach -p $NPID -o "$TMP/n" --report-file "$TMP/n.txt" 2> "$TMP/n.err" &
	APID=$!
	wait_for "grep -q attached $TMP/n.err"
	nsend "alloc 33 700"
	nsend "free"
	$MEMTAP report --format=json "$($MEMTAP ctl $NPID dump)" > "$TMP/n.json"
	is "$(fn_field "$TMP/n.json" malloc calls) $(fn_field "$TMP/n.json" free calls)" "33 36" \
		"non-PIE program attached: exactly its 33 mallocs and 36 frees since the attach"
	kill -INT $APID
	wait $APID
	is "$?" 0 "non-PIE program: detached"
	nsend "alloc 1 10"
	ok $? "non-PIE program: runs on"
else
	skip "cannot build a non-PIE program"; skip "no -no-pie"; skip "no -no-pie"
fi

# Debian's python3 (non-PIE): attached while it allocates, then left alone.
PY=/usr/bin/python3
if [ -x $PY ] && file -L $PY | grep -q "LSB executable"; then
	$PY -c "
import os, sys, time
open(sys.argv[2], 'w').write(str(os.getpid()))
t0 = time.time()
n = 0
while not os.path.exists(sys.argv[1]) and time.time() - t0 < 30:
    x = [str(i) * 40 for i in range(2000)]; n += len(x); time.sleep(0.005)
print('py ok', n > 0)
" "$TMP/py.stop" "$TMP/py.pid" > "$TMP/py.out" &
	PYJOB=$!
	at_exit "touch $TMP/py.stop"
	# Its own pid: the job's may be a shell that forked it (bash keeps a
	# subshell for a background command while traps are set).
	wait_for "test -s $TMP/py.pid"
	PYPID=$(cat "$TMP/py.pid")
	timeout 30 $MEMTAP attach -p $PYPID -d 1 -o "$TMP/py" --report-file "$TMP/py.txt" 2> "$TMP/py.err"
	is "$?" 0 "Debian's python3 (non-PIE): attach for 1 s and detach"
	m=$(awk '$1 == "malloc" && NF == 2 {print $2; exit}' "$TMP/py.txt")
	[ "${m:-0}" -gt 100 ]
	ok $? "python3's mallocs counted while attached (${m:-none})"
	touch "$TMP/py.stop"
	wait $PYJOB
	is "$? $(cat "$TMP/py.out")" "0 py ok True" "python3 runs on and finishes normally"
else
	skip "no non-PIE /usr/bin/python3"; skip "no python3"; skip "no python3"
fi
