#!/bin/bash
# End to end: Apache httpd (prefork and event MPMs) traced from its start by
# `memtap run`, serving real HTTP requests on 127.0.0.1, inspected live with
# `memtap ctl`, stopped with SIGTERM, then checked through the run summary and
# `memtap report` (per process and --merge).
. "$(dirname "$0")/../lib.sh"

APACHE=/usr/sbin/apache2
MODDIR=/usr/lib/apache2/modules
REQUESTS=50

[ -x "$MEMTAP" ] || skip_all "build/memtap is missing (run make)"
[ -x "$ROOT/build/libmemtap.so" ] || skip_all "build/libmemtap.so is missing (run make)"
[ -x "$APACHE" ] || skip_all "$APACHE is missing (apt-get install apache2)"
command -v curl >/dev/null || skip_all "curl is missing (apt-get install curl)"
command -v jq >/dev/null || skip_all "jq is missing (apt-get install jq)"
command -v setsid >/dev/null || skip_all "setsid is missing (util-linux)"
MPMS=""
for m in prefork event; do [ -f "$MODDIR/mod_mpm_$m.so" ] && MPMS="$MPMS $m"; done
for m in authz_core dir mime; do
	[ -f "$MODDIR/mod_$m.so" ] || skip_all "$MODDIR/mod_$m.so is missing"
done
[ -n "$MPMS" ] || skip_all "neither mod_mpm_prefork nor mod_mpm_event is installed"
# unixd (User/Group) and log_config are compiled into Debian's apache2; load
# them only if this build has them as modules.
EXTRA_MODULES=""
for m in unixd log_config; do
	if ! "$APACHE" -l 2>/dev/null | grep -q "mod_$m.c"; then
		[ -f "$MODDIR/mod_$m.so" ] || skip_all "mod_$m is neither compiled in nor in $MODDIR"
		EXTRA_MODULES="$EXTRA_MODULES${m}_module $MODDIR/mod_$m.so
"
	fi
done

TESTS_PER_MPM=32
NMPM=$(echo $MPMS | wc -w)
plan $((TESTS_PER_MPM * NMPM))

# Processes this test started, stopped at exit even if an assertion aborts.
RUNPID=""
APPID=""
# stop_apache: TERM the apache parent (it stops its children); KILL it and its
# children only if it is still there after 10 s.  Then reap the memtap run.
stop_apache() {
	local i
	if [ -n "$APPID" ] && kill -0 "$APPID" 2>/dev/null; then
		kill -TERM "$APPID" 2>/dev/null
		for i in $(seq 100); do kill -0 "$APPID" 2>/dev/null || break; sleep 0.1; done
		if kill -0 "$APPID" 2>/dev/null; then
			pkill -KILL -P "$APPID" 2>/dev/null
			kill -KILL "$APPID" 2>/dev/null
		fi
	fi
	if [ -n "$RUNPID" ] && kill -0 "$RUNPID" 2>/dev/null; then
		for i in $(seq 50); do kill -0 "$RUNPID" 2>/dev/null || break; sleep 0.1; done
		kill -KILL "$RUNPID" 2>/dev/null
	fi
	[ -n "$RUNPID" ] && wait "$RUNPID" 2>/dev/null
	RUNPID=""
	APPID=""
}
at_exit 'stop_apache'

# A control-socket directory of our own (memtap run and ctl both honour
# MEMTAP_RUNDIR), so that nothing is left behind in the shared /tmp/memtap-<uid>.
# It is world-writable and sticky like /tmp: children that switch to www-data
# move their sockets to memtap-<www-data's uid> there.
export MEMTAP_RUNDIR="$TMP/run"
mkdir -p "$MEMTAP_RUNDIR"
chmod 1777 "$MEMTAP_RUNDIR"
SOCKDIR="$MEMTAP_RUNDIR/memtap-$(id -u)"

# http_code URL: the status code of a GET (000 when nothing answered).
http_code() { curl -s -o /dev/null --max-time 2 -w '%{http_code}' "$1"; }

# As root apache's children switch to www-data; memtap writes every
# profile itself, from the processes' live counter files, so the profile
# directory need only be writable by the user who runs memtap.
if [ "$(id -u)" = 0 ] && id www-data >/dev/null 2>&1; then
	USERGROUP="User www-data
Group www-data"
	RUNAS=www-data
else
	USERGROUP=""
	RUNAS=$(id -un)
fi

for MPM in $MPMS; do
	D="$TMP/$MPM"
	PROFDIR="$D/prof"
	mkdir -p "$D/htdocs" "$PROFDIR"
	chmod 0755 "$D" "$D/htdocs"
	chmod 0700 "$PROFDIR"
	BODY="hello from memtap e2e ($MPM)"
	printf '%s\n' "$BODY" >"$D/htdocs/index.html"
	chmod 0644 "$D/htdocs/index.html"
	PORT=$(free_port)
	if [ "$MPM" = prefork ]; then
		MPMCONF="StartServers 2
MinSpareServers 1
MaxSpareServers 4
MaxRequestWorkers 8"
	else
		MPMCONF="StartServers 2
ServerLimit 4
ThreadsPerChild 4
MinSpareThreads 4
MaxSpareThreads 8
MaxRequestWorkers 16"
	fi
	cat >"$D/httpd.conf" <<CONF
ServerRoot "$D"
ServerName 127.0.0.1
DefaultRuntimeDir "$D"
Listen 127.0.0.1:$PORT
PidFile "$D/httpd.pid"
ErrorLog "$D/error.log"
LogLevel info
LoadModule mpm_${MPM}_module $MODDIR/mod_mpm_$MPM.so
LoadModule authz_core_module $MODDIR/mod_authz_core.so
LoadModule dir_module $MODDIR/mod_dir.so
LoadModule mime_module $MODDIR/mod_mime.so
$(printf '%s' "$EXTRA_MODULES" | sed 's/^/LoadModule /')
$USERGROUP
$MPMCONF
TypesConfig /etc/mime.types
DocumentRoot "$D/htdocs"
<Directory "$D/htdocs">
    Require all granted
</Directory>
DirectoryIndex index.html
LogFormat "%h \"%r\" %>s %b" common
CustomLog "$D/access.log" common
CONF

	# apache -DFOREGROUND signals its whole process group when it shuts
	# down (killpg on SIGTERM): give it a session of its own so that the
	# signal cannot reach this script or prove.
	setsid "$MEMTAP" run -o "$PROFDIR/httpd" --report-file "$D/summary.txt" -- \
		"$APACHE" -f "$D/httpd.conf" -DFOREGROUND >"$D/run.out" 2>&1 </dev/null &
	RUNPID=$!
	MTPID=$RUNPID
	T0=$(date +%s.%N)

	wait_for "[ \"\$(http_code http://127.0.0.1:$PORT/)\" = 200 ] || ! kill -0 $RUNPID" 100
	up=1
	[ "$(http_code "http://127.0.0.1:$PORT/")" = 200 ] && up=0
	ok $up "$MPM: apache under memtap run answers 200 on 127.0.0.1:$PORT"
	if [ $up -ne 0 ]; then
		diag "memtap run output:"; sed 's/^/#   /' "$D/run.out"
		diag "error log:"; sed 's/^/#   /' "$D/error.log" 2>/dev/null
	fi

	# The apache parent: the child of memtap run, and the pid in its PidFile.
	wait_for "[ -s '$D/httpd.pid' ]" 50
	APPID=$(pgrep -P "$RUNPID" | head -n1)
	is "$(cat "$D/httpd.pid" 2>/dev/null)" "$APPID" "$MPM: PidFile names the child of memtap run ($APPID)"

	# Bounded load: REQUESTS sequential GETs, 5 s each at most.
	good=0; bad=""
	for i in $(seq $REQUESTS); do
		rm -f "$D/body"
		code=$(curl -s --max-time 5 -o "$D/body" -w '%{http_code}' "http://127.0.0.1:$PORT/")
		body=$(cat "$D/body" 2>/dev/null)
		if [ "$code" = 200 ] && [ "$body" = "$BODY" ]; then good=$((good + 1))
		else bad="$bad $i:$code"; fi
	done
	is "$good" "$REQUESTS" "$MPM: all $REQUESTS GETs returned 200 with the expected body${bad:+ (failed:$bad)}"

	# The children serving now (the same set writes the exit profiles).
	CHILDREN=""
	[ -n "$APPID" ] && CHILDREN=$(pgrep -P "$APPID" | sort -n | tr '\n' ' ')
	NCHILD=$(echo $CHILDREN | wc -w)
	ok $([ "$NCHILD" -ge 2 ]; echo $?) "$MPM: apache runs $NCHILD children ($CHILDREN)"

	# Live control of the traced parent and one traced child.
	st=$("$MEMTAP" ctl "${APPID:-0}" status 2>&1)
	like "$st" "state: active" "$MPM: ctl status on the apache parent says state: active"
	like "$st" "prefix: $PROFDIR/httpd" "$MPM: ctl status reports the run's profile prefix"
	C1=$(echo $CHILDREN | cut -d' ' -f1)
	st=$("$MEMTAP" ctl "${C1:-0}" status 2>&1)
	like "$st" "state: active" "$MPM: ctl status on child $C1 (traced across fork) says state: active"
	dump=$("$MEMTAP" ctl "${APPID:-0}" dump 2>&1)
	ok $([ "$dump" = "$PROFDIR/httpd.$APPID.0.mtp" ] && [ -f "$dump" ]; echo $?) \
		"$MPM: ctl dump prints the path of the new profile, PREFIX.pid.0.mtp ($dump)"
	"$MEMTAP" report --format=json "$dump" >"$D/dump.json" 2>"$D/dump.err"
	is "$(jq -r '.processes[0].pid' "$D/dump.json" 2>/dev/null)" "$APPID" "$MPM: the dump is the parent's profile"
	m=$(fn_field "$D/dump.json" malloc calls 2>/dev/null)
	ok $([ "${m:-0}" -gt 0 ]; echo $?) "$MPM: the dump counts malloc calls ($m)"
	DUMPM=${m:-0}

	# Graceful stop: SIGTERM to the parent; memtap run must return apache's
	# own exit status (0 for apache2 -DFOREGROUND on SIGTERM).
	kill -TERM "$APPID" 2>/dev/null
	wait_for "! kill -0 $RUNPID" 100
	stopped=1
	kill -0 "$RUNPID" 2>/dev/null || stopped=0
	ok $stopped "$MPM: apache and memtap run exit within 10 s of SIGTERM"
	if [ $stopped -eq 0 ]; then wait "$RUNPID"; rc=$?; else rc=timeout; stop_apache; fi
	RUNPID=""
	is "$rc" 0 "$MPM: memtap run returns apache's exit status (0 on SIGTERM)"
	T1=$(date +%s.%N)

	# The summary written by memtap run.
	S=$(cat "$D/summary.txt" 2>/dev/null)
	like "$S" "Calls per function:" "$MPM: the summary has a Calls per function table"
	SMALLOC=$(printf '%s\n' "$S" | sed -n '/^Calls per function:/,/^$/p' | awk '$1 == "malloc" {print $2}')
	ok $([ "${SMALLOC:-0}" -gt 0 ]; echo $?) "$MPM: the summary counts malloc calls ($SMALLOC)"
	NTRACED=$(printf '%s\n' "$S" | sed -nE 's/^memtap: ([0-9]+) processes traced.*/\1/p' | head -n1)
	is "${NTRACED:-1}" "$((NCHILD + 1))" "$MPM: the summary says $((NCHILD + 1)) processes traced (parent + children)"

	# The profiles: the live dump of the parent (reason ctl) and the one
	# each process wrote at exit.
	"$MEMTAP" report --format=json "$PROFDIR"/httpd.*.mtp >"$D/all.json" 2>"$D/all.err"
	EXITS='[.processes[] | select(.reason == "exit")]'
	is "$(jq -r "$EXITS"' | map(.pid) | sort | map(tostring) | join(" ")' "$D/all.json" 2>/dev/null)" \
		"$(echo $APPID $CHILDREN | tr ' ' '\n' | sort -n | tr '\n' ' ' | sed 's/ $//')" \
		"$MPM: one exit profile per process: the parent and each child"
	is "$(jq -r '[.processes[] | select(.reason != "exit") | "\(.pid):\(.reason)"] | join(" ")' "$D/all.json" 2>/dev/null)" \
		"$APPID:ctl" "$MPM: the only other profile is the parent's ctl dump"
	is "$(jq -r --argjson p "${APPID:-0}" "$EXITS"' | map(select(.pid == $p) | .ppid) | first // empty' "$D/all.json" 2>/dev/null)" \
		"$MTPID" "$MPM: the parent's ppid is memtap run"
	nkids=$(jq -r --argjson p "${APPID:-0}" "$EXITS"' | map(select(.ppid == $p)) | length' "$D/all.json" 2>/dev/null)
	is "${nkids:-0}" "$NCHILD" "$MPM: $NCHILD exit profiles have the apache parent as ppid"
	zero=$(jq -r --argjson p "${APPID:-0}" "$EXITS"' | map(select(.ppid == $p) | select((.functions.malloc.calls // 0) == 0) | .pid) | join(" ")' "$D/all.json" 2>/dev/null)
	is "${zero-x}" "" "$MPM: every child counted malloc calls > 0"
	pm=$(jq -r --argjson p "${APPID:-0}" "$EXITS"' | map(select(.pid == $p) | .functions.malloc.calls // 0) | first // 0' "$D/all.json" 2>/dev/null)
	ok $([ "${pm:-0}" -ge "$DUMPM" ]; echo $?) "$MPM: the parent's exit profile counts at least the mallocs of its dump ($pm >= $DUMPM)"
	diag "$MPM: malloc calls per process at exit: $(jq -r "$EXITS"' | map("\(.pid) (ppid \(.ppid)): \(.functions.malloc.calls // 0)") | join(", ")' "$D/all.json" 2>/dev/null)"
	if [ -n "$USERGROUP" ]; then
		owners=$(for c in $CHILDREN; do stat -c %U "$PROFDIR/httpd.$c.0.mtp" 2>/dev/null || echo missing; done | sort -u | tr '\n' ' ')
		is "$owners" "$(id -un) " "$MPM: the $RUNAS children's profiles are there, written by memtap as $(id -un) in a directory only it can write"
	else
		skip "$MPM: not root, apache children keep our uid"
	fi

	# --merge sums the latest snapshot of each process: the parent's exit
	# profile, not also its earlier dump (a running total).
	"$MEMTAP" report --format=json --merge "$PROFDIR"/httpd.*.mtp >"$D/merged.json" 2>"$D/merged.err"
	like "$(cat "$D/merged.err")" "1 earlier snapshot" "$MPM: --merge says it left the parent's dump out"
	ALLSUM=$(jq -r "$EXITS"' | map(.functions.malloc.calls // 0) | add // 0' "$D/all.json" 2>/dev/null)
	is "$(jq -r '.processes | length' "$D/merged.json" 2>/dev/null)" 1 "$MPM: --merge gives one process entry"
	is "$(jq -r '.processes[0].functions.malloc.calls // 0' "$D/merged.json" 2>/dev/null)" "$ALLSUM" \
		"$MPM: --merge malloc calls equal the sum over the per-process entries ($ALLSUM)"
	FSUM=$(jq -r "$EXITS"' | map(.functions.free.calls // 0) | add // 0' "$D/all.json" 2>/dev/null)
	is "$(jq -r '.processes[0].functions.free.calls // 0' "$D/merged.json" 2>/dev/null)" "$FSUM" \
		"$MPM: --merge free calls equal the sum over the per-process entries ($FSUM)"
	# The run summary counts each process once (its exit profile), even
	# though the parent also left a dump under the same prefix.
	SUM=$(jq -r "$EXITS"' | map(.functions.malloc.calls // 0) | add // 0' "$D/all.json" 2>/dev/null)
	is "${SMALLOC:-0}" "$SUM" "$MPM: the run summary's malloc count equals the sum over exit profiles ($SUM)"

	# Every traced process removes its control socket when it exits.
	left=""
	for p in $APPID; do [ -e "$SOCKDIR/$p.sock" ] && left="$left $p"; done
	is "$left" "" "$MPM: the apache parent's control socket is gone after exit"
	# Children that switched to another uid moved their sockets first.
	left=""
	for p in $CHILDREN; do ls "$MEMTAP_RUNDIR"/memtap-*/"$p.sock" >/dev/null 2>&1 && left="$left $p"; done
	is "$left" "" "$MPM: the children's control sockets are gone after exit"

	# Apache itself was healthy under the agent.
	crashes=$(grep -E 'segfault|AH00052|exit signal' "$D/error.log" 2>/dev/null)
	is "$crashes" "" "$MPM: the error log reports no child crash (segfault / AH00052)"
	like "$(cat "$D/error.log" 2>/dev/null)" "caught SIGTERM, shutting down" "$MPM: apache logged a clean SIGTERM shutdown"
	hits=$(grep -c '"GET / HTTP/1.1" 200' "$D/access.log" 2>/dev/null)
	ok $([ "${hits:-0}" -ge "$REQUESTS" ]; echo $?) "$MPM: the access log has the $REQUESTS GETs ($hits)"

	diag "$MPM: $((NCHILD + 1)) processes, $SUM malloc calls in all for $REQUESTS GETs, $(awk -v a="$T0" -v b="$T1" 'BEGIN {printf "%.1f", b - a}') s"
	APPID=""
done

