#!/bin/bash
# End to end: PostgreSQL's palloc, exported but called inside the postgres
# executable, counted by `memtap attach -f palloc` (an entry hook) in the
# backend of a live psql session while it runs a few queries; a server of
# our own on 127.0.0.1 in a temporary directory, stopped at the end.
. "$(dirname "$0")/../lib.sh"

PGBIN=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
[ -x "$MEMTAP" ] || skip_all "build/memtap is missing (run make)"
[ -n "$PGBIN" ] && [ -x "$PGBIN/postgres" ] || skip_all "PostgreSQL is not installed (apt-get install postgresql; scripts/deps.sh peers)"
command -v psql >/dev/null || skip_all "psql is missing"
[ "$(id -u)" = 0 ] && id postgres >/dev/null 2>&1 || skip_all "needs root and the postgres user (to run the server as postgres)"
plan 7

D="$TMP/pg"
PORT=$(free_port)
mkdir -p "$D/prof" && chown -R postgres "$D" && chmod 0777 "$D/prof"
as_pg() { runuser -u postgres -- "$@"; }
as_pg "$PGBIN/initdb" -D "$D/data" -A trust -U postgres > "$D/initdb.log" 2>&1
ok $? "initdb in $D/data"
as_pg "$PGBIN/pg_ctl" -D "$D/data" -l "$D/log" -w -o "-k $D -p $PORT -c listen_addresses=127.0.0.1" start > /dev/null
ok $? "postgres started on 127.0.0.1:$PORT"
at_exit "runuser -u postgres -- $PGBIN/pg_ctl -D $D/data -m fast stop"
export PGHOST=127.0.0.1 PGPORT=$PORT PGUSER=postgres
coproc PSQL { exec psql -qAtX -d postgres 2>&1; }
echo "select pg_backend_pid();" >&"${PSQL[1]}"
read -r -t 10 -u "${PSQL[0]}" BPID
[ -n "$BPID" ] && kill -0 "$BPID"
ok $? "a psql session's backend: $BPID"
$MEMTAP attach -p "$BPID" -o "$D/prof/b" --format json --report-file "$D/a.json" -f palloc:size=arg0 \
	-f MemoryContextAlloc:size=arg1 2> "$D/a.err" &
APID=$!
wait_for "grep -q 'counting active' $D/a.err"
q() { echo "$1" >&"${PSQL[1]}"; local l; read -r -t 20 -u "${PSQL[0]}" l; echo "$l"; }
q "create table t (id int, v text);" > /dev/null
q "insert into t select g, md5(g::text) from generate_series(1, 1000) g;" > /dev/null
r=$(q "select count(*), count(distinct v) from t where id % 3 = 0;")
is "$r" "333|333" "queries answer right while attached"
kill -INT $APID
wait $APID
palloc=$(fn_field "$D/a.json" palloc calls)
mca=$(fn_field "$D/a.json" MemoryContextAlloc calls)
diag "3 queries: palloc $palloc calls ($(fn_field "$D/a.json" palloc bytes) bytes), MemoryContextAlloc $mca, malloc $(fn_field "$D/a.json" malloc calls)"
[ "$palloc" -ge 100 ]
ok $? "palloc counted inside postgres: $palloc calls"
[ "$mca" -ge 10 ]
ok $? "MemoryContextAlloc too: $mca calls"
is "$(q "select sum(id) from t;")" 500500 "the backend runs on after detach"
echo '\q' >&"${PSQL[1]}"
