# Shared helpers for memtap's shell tests, which print TAP for prove.
# Source it from a test:  . "$(dirname "$0")/../lib.sh"
# Tests run from the repository root (tests/run.sh cds there).

set -u
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# MEMTAP_BUILD=build-san runs a test against the sanitizer build (make sanitize).
BUILDDIR=${MEMTAP_BUILD:-build}
MEMTAP="$ROOT/$BUILDDIR/memtap"
FIX="$ROOT/$BUILDDIR/tests/fixtures"
TMP=$(mktemp -d /tmp/memtap-test.XXXXXX)
chmod 0755 "$TMP"
_n=0
_failed=0
_cleanups=()

# At exit: run the cleanups, remove $TMP, and exit non-zero iff a test failed
# (the status of the script's last command does not matter).
cleanup() {
	local c
	for c in "${_cleanups[@]}"; do eval "$c" >/dev/null 2>&1 || true; done
	rm -rf "$TMP"
	exit $((_failed > 0))
}
trap cleanup EXIT
# Run COMMAND (a string) when the test exits, e.g. to stop a server.
at_exit() { _cleanups+=("$1"); }

plan() { echo "1..$1"; }
ok() { # ok CONDITION-EXIT-STATUS DESCRIPTION
	_n=$((_n + 1))
	if [ "$1" -eq 0 ]; then echo "ok $_n - $2"; else echo "not ok $_n - $2"; _failed=$((_failed + 1)); fi
}
# is GOT WANT DESCRIPTION
is() {
	_n=$((_n + 1))
	if [ "$1" = "$2" ]; then echo "ok $_n - $3"
	else echo "not ok $_n - $3"; printf "#   got:  '%s'\n#   want: '%s'\n" "$1" "$2" | tee /dev/stderr; _failed=$((_failed + 1)); fi
}
# like TEXT REGEX DESCRIPTION
like() {
	_n=$((_n + 1))
	if printf '%s' "$1" | grep -Eq -- "$2"; then echo "ok $_n - $3"
	else echo "not ok $_n - $3"; printf "#   '%s'\n#   does not match /%s/\n" "$1" "$2" | tee /dev/stderr; _failed=$((_failed + 1)); fi
}
skip() { _n=$((_n + 1)); echo "ok $_n # skip $1"; }
skip_all() { echo "1..0 # skip $1"; exit 0; }
diag() { echo "# $*"; }

# json FILE JQ-FILTER: query a JSON report.
json() { jq -r "$2" "$1"; }
# fn_field JSONFILE FUNCTION FIELD: a function's field in the first process.
fn_field() { jq -r --arg f "$2" ".processes[0].functions[\$f].$3 // 0" "$1"; }
# bucket JSONFILE FUNCTION LOWER: the count in the histogram bucket LOWER.
bucket() { jq -r --arg f "$2" --argjson b "$3" \
	'[.processes[0].functions[$f].hist[] | select(.[0] == $b) | .[1]] | add // 0' "$1"; }

# wait_for CMD [TRIES]: retry CMD every 0.1 s, up to TRIES (default 100) times.
wait_for() {
	local i=0 tries=${2:-100}
	while [ $i -lt "$tries" ]; do eval "$1" >/dev/null 2>&1 && return 0; sleep 0.1; i=$((i + 1)); done
	return 1
}

# A free TCP port on 127.0.0.1.
free_port() {
	python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# apache_conf DIR PORT MPM TUNING [BODY]: a minimal Apache of our own in DIR
# (DIR/httpd.conf, DIR/htdocs/index.html holding BODY, DIR/prof writable by
# the children), listening on 127.0.0.1:PORT with the prefork or event MPM
# and TUNING (its StartServers/... lines).  As root the children run as
# www-data, as Debian's do.  Start it with apache_start DIR.
APACHE=/usr/sbin/apache2
APACHE_MODULES=/usr/lib/apache2/modules
apache_conf() {
	local d=$1 port=$2 mpm=$3 tuning=$4 body=${5:-hello} ug=""
	[ "$(id -u)" = 0 ] && ug="User www-data
Group www-data"
	mkdir -p "$d/htdocs" "$d/prof"
	chmod 0755 "$d" "$d/htdocs"
	chmod 0777 "$d/prof"
	printf '%s\n' "$body" > "$d/htdocs/index.html"
	chmod 0644 "$d/htdocs/index.html"
	cat > "$d/httpd.conf" <<CONF
ServerRoot "$d"
ServerName 127.0.0.1
DefaultRuntimeDir "$d"
Listen 127.0.0.1:$port
PidFile "$d/httpd.pid"
ErrorLog "$d/error.log"
LoadModule mpm_${mpm}_module $APACHE_MODULES/mod_mpm_${mpm}.so
LoadModule authz_core_module $APACHE_MODULES/mod_authz_core.so
LoadModule dir_module $APACHE_MODULES/mod_dir.so
LoadModule mime_module $APACHE_MODULES/mod_mime.so
$ug
$tuning
TypesConfig /etc/mime.types
DocumentRoot "$d/htdocs"
<Directory "$d/htdocs">
    Require all granted
</Directory>
CONF
}
# apache_start DIR PORT [WRAPPER...]: starts it in a session of its own (on
# SIGTERM apache signals its whole process group), optionally under WRAPPER
# (e.g. memtap run ...  --), waits until it answers; sets APACHE_PID to the
# started process (apache itself, or the wrapper).
apache_start() {
	local d=$1 port=$2
	shift 2
	setsid "$@" "$APACHE" -f "$d/httpd.conf" -DFOREGROUND > "$d/out" 2>&1 < /dev/null &
	APACHE_PID=$!
	at_exit "kill \$(cat $d/httpd.pid 2>/dev/null) $APACHE_PID"
	wait_for "curl -sf -o /dev/null --max-time 2 http://127.0.0.1:$port/" 100
}
# apache_stop DIR: TERM the apache parent of DIR's PidFile (it stops its
# children); KILL it and them if it is still there after 5 s.
apache_stop() {
	local p
	p=$(cat "$1/httpd.pid" 2>/dev/null)
	[ -n "$p" ] || return 0
	kill -TERM "$p" 2>/dev/null
	wait_for "! kill -0 $p" 50 || { pkill -KILL -P "$p"; kill -KILL "$p"; }
}
