#!/bin/bash
# The ptrace injector (src/inject, docs/INJECT.md) through its test driver
# build/tests/fixtures/inject_tool: registers survive 20 injections in a row,
# threads blocked in system calls carry on, memtap's own agent loads into a
# running process, and every refusal leaves its target untouched.
. "$(dirname "$0")/../lib.sh"

TOOL=$FIX/inject_tool
PROBE=$FIX/libinject_probe.so
yama=$(cat /proc/sys/kernel/yama/ptrace_scope 2>/dev/null || echo 0)
[ "$yama" = 3 ] && skip_all "kernel.yama.ptrace_scope is 3: no ptrace attach at all on this kernel"
[ "$yama" != 0 ] && [ "$(id -u)" != 0 ] &&
	skip_all "kernel.yama.ptrace_scope is $yama: attaching to a sibling process needs root"
plan 67

# spawn NAME CMD...: CMD with stdin from a FIFO (fd FD_NAME) and its output in
# $TMP/NAME.out; PID_NAME is its pid.  Waits for "ready" unless NOWAIT=1.
spawn() {
	local name=$1 fd pid
	shift
	mkfifo "$TMP/$name.in"
	"$@" < "$TMP/$name.in" > "$TMP/$name.out" 2>&1 &
	pid=$!
	exec {fd}> "$TMP/$name.in"
	eval "PID_$name=$pid FD_$name=$fd"
	at_exit "kill -9 $pid; wait $pid"
	at_exit "rm -f /tmp/inject_probe.$pid"
	[ "${NOWAIT:-0}" = 1 ] || wait_for "grep -q ready '$TMP/$name.out'"
}
# ask NAME LINE: sends LINE, prints the next line of output (10 s at most).
ask() {
	local fd n
	eval "fd=\$FD_$1"
	n=$(wc -l < "$TMP/$1.out")
	echo "$2" >&"$fd"
	wait_for "[ \$(wc -l < '$TMP/$1.out') -gt $n ]" 100
	sed -n "$((n + 1))p" "$TMP/$1.out"
}
tracer_of() { awk '/^TracerPid:/ {print $2}' "/proc/$1/status" 2>/dev/null; }
state_of() { awk '/^State:/ {print $2}' "/proc/$1/status" 2>/dev/null; }
# untouched NAME: alive, not traced, not stopped, and still answering.
untouched() {
	local pid tok=$RANDOM$RANDOM
	eval "pid=\$PID_$1"
	[ "$(tracer_of "$pid")" = 0 ] && [ "$(state_of "$pid")" != T ] && [ "$(state_of "$pid")" != t ] &&
		[ "$(ask "$1" "$tok")" = "echo $tok" ]
}
# syscall_of PID TID: the system call the thread is blocked in.
syscall_of() { cut -d' ' -f1 "/proc/$1/task/$2/syscall" 2>/dev/null; }
# holding PID: a holdstdout thread sleeps with stdout's lock, main waits for it.
holding() { [ "$(syscall_of "$1" "$T_MAIN")" = 202 ] && cut -d' ' -f1 /proc/"$1"/task/*/syscall 2>/dev/null | grep -qx 230; }
inject() { $TOOL "$@" 2> "$TMP/inject.err"; }

# ---- (a) register state: 20 injections while a thread spins on known values
rm -f "$TMP/vec.stop"
NOWAIT=1 spawn vec "$FIX/inject_vec" "$TMP/vec.stop"
wait_for "grep -q ready '$TMP/vec.out'"
mode=$(awk '/^ready/ {print $2}' "$TMP/vec.out")
if grep -qw avx512f /proc/cpuinfo; then want=avx512; else want=avx2; fi
is "$mode" "$want" "the register fixture checks $want registers (the CPU's widest)"
diag "registers kept and checked: $([ "$mode" = avx512 ] && echo 'zmm0-31, k1-k7' || echo 'ymm0-15'), x87 st0-2, MXCSR, 11 general registers"
inject -n 20 -c inject_probe_clobber "$PID_vec" "$PROBE" > "$TMP/vec.inj"
ok $? "20 injections in a row into the spinning thread"
is "$(grep -c '^inject [0-9]* handle 0x[0-9a-f]* .* ret 42$' "$TMP/vec.inj")" 20 \
	"each loaded the library and ran a call that trashes every register (returned 42)"
spin=$(awk '$8 == -1' "$TMP/vec.inj" | wc -l)
[ "$spin" -ge 15 ]
ok $? "the thread was stopped while running user code (not in a system call) $spin times of 20"
is "$(cat /tmp/inject_probe.$PID_vec 2>/dev/null)" "loaded $PID_vec 1" \
	"the library's constructor ran once (later dlopens return the same handle)"
is "$(awk '{print $4}' "$TMP/vec.inj" | sort -u | wc -l)" 1 "every injection returned the same handle"
touch "$TMP/vec.stop"
wait "$PID_vec"
is "$?" 0 "the fixture exits 0: no register changed across any injection"
like "$(tail -1 "$TMP/vec.out")" "^rounds [0-9]+ errors 0$" "and says so: $(tail -1 "$TMP/vec.out")"
[ "$(grep -c changed "$TMP/vec.out")" = 0 ]
ok $? "no register reported changed"
xs=$(awk '{print $12}' "$TMP/vec.inj" | head -1)
ms=$(awk '{print $14}' "$TMP/vec.inj" | sort -n)
diag "time to inject (check, stop the thread, dlopen + a call, restore, resume), 20 runs:" \
	"median $(echo "$ms" | sed -n 10p) ms, min $(echo "$ms" | head -1) ms," \
	"max $(echo "$ms" | tail -1) ms (the first loads the file); XSAVE area: $xs bytes"

# ---- (b) threads blocked in epoll_wait, futex, accept, nanosleep
spawn blk "$FIX/inject_block" "$TMP/blk.sock"
read -r _ T_EPOLL _ T_COND _ T_ACCEPT _ T_SLEEP _ T_MAIN <<< "$(ask blk tids)"
P=$PID_blk
wait_for "[ \"\$(syscall_of $P $T_EPOLL)\" = 232 ] && [ \"\$(syscall_of $P $T_COND)\" = 202 ] && [ -n \"\$(syscall_of $P $T_ACCEPT)\" ]"
a_nr=$(syscall_of $P $T_ACCEPT)
out=$(inject "$P" "$PROBE")
like "$out" "tid $T_MAIN syscall 0 threads 5 " \
	"default choice: the main thread, blocked in read (not a futex), out of 5 stopped threads"
for t in EPOLL:232 COND:202 ACCEPT:$a_nr; do
	eval "tid=\$T_${t%%:*}"
	out=$(inject -t "$tid" "$P" "$PROBE")
	like "$out" "tid $tid syscall ${t#*:} " "injected into the ${t%%:*} thread while it sat in system call ${t#*:}"
done
like "$(ask blk epoll)" "^epoll ok events=1 " "epoll_wait still receives an event sent after injection"
like "$(ask blk cond)" "^cond ok wakes=1$" "pthread_cond_wait still wakes on a signal after injection"
like "$(ask blk accept)" "^accept ok conns=1$" "accept still takes a connection after injection"
eintr=$(ask blk epoll | sed 's/.*eintr=//')
diag "epoll_wait returned EINTR $eintr times over 4 injections (as after any ptrace stop or SIGSTOP/SIGCONT; it is never restarted)"

is "$(ask blk 'sleep 1500')" sleeping "a 1.5 s nanosleep starts"
wait_for "[ \"\$(syscall_of $P $T_SLEEP)\" = 230 ]"
nr=""
for i in 1 2 3; do
	out=$(inject -t "$T_SLEEP" "$P" "$PROBE") && nr="$nr $(echo "$out" | awk '{print $8}')"
	sleep 0.2
done
like "$nr" "^ (230|219) (230|219) (230|219)$" \
	"3 injections into the sleeping thread (clock_nanosleep, then restart_syscall:$nr)"
slept=$(ask blk slept)
ms=$(echo "$slept" | awk '{print $2}')
[ "$ms" -ge 1500 ] && [ "$ms" -lt 3000 ]
ok $? "nanosleep still slept its full time: $slept"
like "$slept" "eintr=0$" "and was restarted by the kernel, without EINTR"

# Signals that arrive during a call wait until the thread is back.
inject -g -1 -c inject_probe_sleep -a 800 "$P" "$PROBE" > "$TMP/sig.inj" &
ipid=$!
sleep 0.3
kill -USR1 "$P"
wait $ipid
ok $? "a call that sleeps 0.8 s while SIGUSR1 arrives"
like "$(cat "$TMP/sig.inj")" " ret 0$" "the call was not interrupted by the signal (it is blocked during calls)"
is "$(ask blk usr1)" "usr1 1" "the signal was delivered once, after the injection"

# A call that needs a lock another (stopped) thread holds.
ask blk "holdstdout 1500" > /dev/null &
hold=$!
wait_for "holding $P"
out=$(inject -t "$T_EPOLL" -c inject_probe_stdout "$P" "$PROBE")
ok $? "a call waiting for a lock held by another thread completes"
like "$out" " released ret 0$" "because the other threads run again after the grace period"
wait $hold
ask blk "holdstdout 2500" > /dev/null &
hold=$!
wait_for "holding $P"
inject -t "$T_EPOLL" -g -1 -T 700 -c inject_probe_stdout "$P" "$PROBE"
is "$?" 1 "with the others kept stopped, the same call times out"
like "$(cat "$TMP/inject.err")" "did not return within 700 ms in thread $T_EPOLL .* abandoned the call and put the thread back .*\(ETIMEDOUT\)" \
	"the timeout is reported: what happened and what it leaves behind"
wait $hold
like "$(ask blk epoll)" "^epoll ok events=3 " "the thread whose call was abandoned works on"

inject -c inject_probe_crash "$P" "$PROBE"
is "$?" 1 "a call that crashes fails"
like "$(cat "$TMP/inject.err")" "crashed in thread [0-9]+ of pid $P with SIGSEGV at 0x[0-9a-f]+ \(address 0x8\).*\(EFAULT\)" \
	"and says where; the signal is suppressed"
like "$(ask blk cond)" "^cond ok wakes=2$" "the process lives on after a crashed call"

# Threads that start and end while the injector stops them.
is "$(ask blk churn)" churning "a thread starts creating and joining threads nonstop"
before=$(ask blk churned | awk '{print $2}')
inject -n 10 "$P" "$PROBE" > "$TMP/churn.inj"
ok $? "10 injections while threads come and go"
is "$(grep -c '^inject ' "$TMP/churn.inj")" 10 "all 10 succeeded"
sleep 0.2
after=$(ask blk churned | awk '{print $2}')
[ "$after" -gt "$before" ]
ok $? "the churning thread carries on ($before, then $after threads created)"
like "$(ask blk accept)" "^accept ok conns=2$" "accept works after all of it"
like "$(ask blk epoll)" "^epoll ok events=4 " "epoll_wait works after all of it"
echo quit >&"$FD_blk"
wait "$P"
is "$?" 0 "the blocked-threads fixture exits normally"

# ---- (c) memtap's own agent, loaded into a running process
spawn agent "$FIX/inject_block" "$TMP/agent.sock"
out=$(inject "$PID_agent" "$ROOT/build/libmemtap.so")
ok $? "build/libmemtap.so injected into a running process"
wait_for "test -S /tmp/memtap-$(id -u)/$PID_agent.sock" 50
st=$($MEMTAP ctl "$PID_agent" status 2>&1)
like "$st" "pid: $PID_agent" "its control thread answers memtap ctl status"
like "$(ask agent epoll)" "^epoll ok " "the process keeps running with the agent loaded"
echo quit >&"$FD_agent"
wait "$PID_agent"
is "$?" 0 "and exits normally"

# A process whose main thread has exited (pthread_exit) while another runs.
spawn lone "$FIX/inject_sleeper" leader-exits
wait_for "[ \"\$(state_of $PID_lone)\" = Z ]"
out=$(inject "$PID_lone" "$PROBE")
ok $? "injected into a process whose main thread has exited (a zombie while the others run)"
is "$(cat /tmp/inject_probe.$PID_lone 2>/dev/null)" "loaded $PID_lone 1" "the constructor ran there too"
is "$(ask lone hello)" "echo hello" "and the process runs on"

# ---- (d) refusals: each with its message, the target untouched
inject 2147483646 "$PROBE"
like "$(cat "$TMP/inject.err")" "no process with pid 2147483646 .*\(ESRCH\)" "a pid that does not exist"
spawn gone "$FIX/inject_sleeper"
kill "$PID_gone"
wait "$PID_gone" 2>/dev/null
inject "$PID_gone" "$PROBE"
like "$(cat "$TMP/inject.err")" "no process with pid $PID_gone .*\(ESRCH\)" "a process that has exited"

sh -c 'sleep 0.1 & exec sleep 30' &
zparent=$!
at_exit "kill $zparent"
wait_for "pgrep -P $zparent" && zpid=$(pgrep -P $zparent)
wait_for "[ \"\$(state_of $zpid)\" = Z ]"
inject "$zpid" "$PROBE"
like "$(cat "$TMP/inject.err")" "pid $zpid \(sleep\) is a zombie.*\(ESRCH\)" "a zombie"

spawn tr "$FIX/inject_sleeper"
# strace if there is one, else a helper that only attaches
if command -v strace > /dev/null; then tracer=strace; else tracer=inject_tool; fi
if [ $tracer = strace ]; then strace -o /dev/null -p "$PID_tr" 2>/dev/null & else $TOOL -H "$PID_tr" > /dev/null & fi
st_pid=$!
at_exit "kill $st_pid"
wait_for "[ \"\$(tracer_of $PID_tr)\" != 0 ]"
inject "$PID_tr" "$PROBE"
like "$(cat "$TMP/inject.err")" "pid $PID_tr \(inject_sleeper\) is already traced by pid $st_pid \($tracer\).*\(EBUSY\)" \
	"a process already traced (by $tracer)"
is "$(tracer_of "$PID_tr")" "$st_pid" "$tracer still traces it, undisturbed"
kill "$st_pid"
wait "$st_pid" 2>/dev/null
untouched tr
ok $? "the target answers, untraced, once $tracer is gone"

kill -STOP "$PID_tr"
wait_for "[ \"\$(state_of $PID_tr)\" = T ]"
inject "$PID_tr" "$PROBE"
like "$(cat "$TMP/inject.err")" "is stopped \(job control.*kill -CONT $PID_tr.*\(EAGAIN\)" "a stopped process"
kill -CONT "$PID_tr"
untouched tr
ok $? "it answers once continued"

spawn thr "$FIX/inject_block" "$TMP/thr.sock"
tid=$(ls "/proc/$PID_thr/task" | grep -v "^$PID_thr$" | head -1)
inject "$tid" "$PROBE"
like "$(cat "$TMP/inject.err")" "$tid is a thread of process $PID_thr .*give the process id $PID_thr.*\(EINVAL\)" \
	"a thread id instead of a process id"

if [ "$(cat /proc/2/comm 2>/dev/null)" = kthreadd ]; then
	inject 2 "$PROBE"
	like "$(cat "$TMP/inject.err")" "pid 2 \(kthreadd\) is a kernel thread.*\(EPERM\)" "a kernel thread"
else
	skip "pid 2 is not kthreadd here (a container?)"
fi

if cc -static -O2 -o "$TMP/sleeper_static" tests/fixtures/inject_sleeper.c 2>/dev/null; then
	spawn st "$TMP/sleeper_static"
	inject "$PID_st" "$PROBE"
	like "$(cat "$TMP/inject.err")" "pid $PID_st \(sleeper_static\) is statically linked.*\(ENOEXEC\)" \
		"a statically linked program"
	untouched st
	ok $? "the static program answers, untouched"
else
	skip "cc -static does not work here (no libc.a)"
	skip "cc -static does not work here (no libc.a)"
fi

# 32-bit: a multilib compiler if there is one, else the assembler alone.
how=""
if cc -m32 -O2 -o "$TMP/sleeper32" tests/fixtures/inject_sleeper.c 2>/dev/null; then
	how="cc -m32"
elif printf '.globl _start\n_start:\n1: mov $162, %%eax\n lea ts, %%ebx\n xor %%ecx, %%ecx\n int $0x80\n jmp 1b\n.data\nts: .long 1, 0\n' > "$TMP/s32.s" &&
	as --32 "$TMP/s32.s" -o "$TMP/s32.o" 2>/dev/null && ld -m elf_i386 "$TMP/s32.o" -o "$TMP/sleeper32" 2>/dev/null; then
	how="as --32: there is no multilib compiler here"
fi
if [ -n "$how" ]; then
	NOWAIT=1 spawn s32 "$TMP/sleeper32"
	sleep 0.2
	kill -0 "$PID_s32" 2>/dev/null || how=""
fi
if [ -n "$how" ]; then
	inject "$PID_s32" "$PROBE"
	like "$(cat "$TMP/inject.err")" "pid $PID_s32 \(sleeper32\) is 32-bit \(ELFCLASS32\).*\(ENOEXEC\)" \
		"a 32-bit process (built with $how)"
	[ "$(tracer_of "$PID_s32")" = 0 ] && [ "$(state_of "$PID_s32")" = S ]
	ok $? "the 32-bit process runs on, untraced"
else
	skip "no 32-bit program can be built or run here (no multilib compiler or as --32, or no IA32 emulation); tests/unit/test_inject checks the ELF class on a patched header"
	skip "no 32-bit program"
fi

if [ "$(id -u)" = 0 ] && command -v setpriv > /dev/null; then
	spawn root "$FIX/inject_sleeper"
	setpriv --reuid=65534 --regid=65534 --clear-groups "$TOOL" "$PID_root" "$PROBE" 2> "$TMP/inject.err"
	like "$(cat "$TMP/inject.err")" "permission denied: pid $PID_root \(inject_sleeper\) runs as uid 0 and memtap as uid 65534.*\(EPERM\)" \
		"another user's process (nobody injecting into root's)"
	untouched root
	ok $? "root's process answers, untouched"
	spawn nob setpriv --reuid=65534 --regid=65534 --clear-groups "$FIX/inject_sleeper"
	out=$(inject "$PID_nob" "$PROBE")
	ok $? "root (CAP_SYS_PTRACE) may inject into nobody's process"
	is "$(stat -c %U "/tmp/inject_probe.$PID_nob" 2>/dev/null)" nobody "the constructor ran as nobody"
else
	skip "needs root and setpriv to act as another uid"
	skip "needs root and setpriv to act as another uid"
	skip "needs root and setpriv to act as another uid"
	skip "needs root and setpriv to act as another uid"
fi

# Libraries the target cannot load: refused before, or reported with dlerror.
inject "$PID_tr" "$TMP/no-such-lib.so"
like "$(cat "$TMP/inject.err")" "no-such-lib.so: No such file" "a library that does not exist is refused before attaching"
inject "$PID_tr" /etc/passwd
like "$(cat "$TMP/inject.err")" "/etc/passwd is not an ELF file" "so is a file that is not a library"
printf 'extern int memtap_no_such_function(void);\nint f(void) { return memtap_no_such_function(); }\n' > "$TMP/bad.c"
cc -shared -fPIC -o "$TMP/libbad.so" "$TMP/bad.c"
inject "$PID_tr" "$TMP/libbad.so"
like "$(cat "$TMP/inject.err")" "dlopen\(\"$TMP/libbad.so\"\) failed in pid $PID_tr: .*undefined symbol: memtap_no_such_function" \
	"a library dlopen refuses: the target's dlerror() is reported"
untouched tr
ok $? "the target answers after the failed dlopen"
