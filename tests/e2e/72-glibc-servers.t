#!/bin/bash
# End to end, on real servers:
# - Apache httpd with the event MPM (threads) under `memtap run --glibc`,
#   serving curl requests: the child's profile shows several arenas, its
#   worker threads on them, heaps, the program break and glibc's mmap
#   threshold, consistent with the child's own /proc (threads, heaps).
# - redis-server (Debian links it with jemalloc) under `memtap run` with
#   MALLOC_CONF=prof:true,prof_active:false: `ctl stats` gives jemalloc's
#   stats.allocated close to redis's own used_memory (INFO memory), and
#   `ctl activate` then `ctl dump` drive jemalloc's profiling, seeds/004's
#   plugin without the plugin: jeprof reads the heap file.
. "$(dirname "$0")/../lib.sh"
[ -x "$APACHE" ] || skip_all "$APACHE is missing (sh scripts/deps.sh peers)"
[ -f "$APACHE_MODULES/mod_mpm_event.so" ] || skip_all "mod_mpm_event is missing"
command -v curl >/dev/null || skip_all "curl is missing"
plan 14

# --- Apache, event MPM, --glibc ---
D="$TMP/ap"
PORT=$(free_port)
apache_conf "$D" "$PORT" event "StartServers 1
ServerLimit 1
ThreadsPerChild 8
MinSpareThreads 1
MaxSpareThreads 8"
apache_start "$D" "$PORT" $MEMTAP run -q --glibc -o "$D/prof/ap" --
curls=()
for i in $(seq 40); do curl -sf -o /dev/null --max-time 5 "http://127.0.0.1:$PORT/" & curls+=($!); done
served=0
for c in "${curls[@]}"; do wait "$c" && served=$((served + 1)); done
is "$served" 40 "Apache (event MPM) under memtap run --glibc served 40 concurrent requests"
parent=$(cat "$D/httpd.pid")
child=$(pgrep -P "$parent" | head -1)
[ -n "$child" ]
ok $? "its child process is $child"
d=$($MEMTAP ctl "$child" dump | head -1)
$MEMTAP report --format=json "$d" > "$TMP/ap.json"
G='.processes[0].glibc'
narenas=$(jq "$G.arenas | length" "$TMP/ap.json")
diag "child $child: $narenas arenas, $(jq "$G.heaps | length" "$TMP/ap.json") heaps, threshold $(jq "$G.mmap_threshold" "$TMP/ap.json")"
[ "$narenas" -ge 2 ]
ok $? "the child's threads made arenas of their own ($narenas)"
nheaps=$(jq "$G.heaps | length" "$TMP/ap.json")
inmaps=0
while read -r range perms _ _ _ name; do
	s=$((16#${range%-*}))
	[ -z "$name" ] && [ "$perms" = rw-p ] && [ $((s % 67108864)) = 0 ] && inmaps=$((inmaps + 1))
done < "/proc/$child/maps"
[ "$nheaps" -ge $((narenas - 1)) ] && [ "$nheaps" -le "$inmaps" ]
ok $? "a heap per arena but the main one at least ($nheaps), each among the 64 MiB-aligned mappings of /proc ($inmaps)"
tasks=$(ls /proc/$child/task | wc -l)
seen=$(jq "[$G.threads[] | select(.alive and .arena != null)] | length" "$TMP/ap.json")
[ "$seen" -ge 2 ] && [ "$seen" -le "$tasks" ]
ok $? "$seen of its $tasks threads are seen on an arena"
bad=$(jq "[$G.arenas[].addr] as \$a | [$G.threads[] | select(.arena != null and ([.arena] | inside(\$a) | not))] | length" "$TMP/ap.json")
is "$bad" 0 "every thread's arena is one of the arenas"
[ "$(jq "$G.sbrk_bytes" "$TMP/ap.json")" -gt 0 ] && [ "$(jq "$G.mmap_threshold // 131072" "$TMP/ap.json")" -ge 131072 ]
ok $? "the program break and glibc's mmap threshold are there"
like "$($MEMTAP report "$d")" "Active arenas \(thread -> arena" "the text report has seeds/003's sections"
apache_stop "$D"

# --- redis on jemalloc: statistics and the bridge ---
for t in redis-server redis-cli; do
	command -v $t >/dev/null || { for _ in 1 2 3 4 5 6; do skip "$t is missing (sh scripts/deps.sh peers)"; done; exit 0; }
done
REDIS=$(command -v redis-server)
if ! ldd "$REDIS" | grep -q libjemalloc || ! command -v jeprof >/dev/null; then
	for _ in 1 2 3 4 5 6; do skip "$REDIS is not linked with jemalloc here, or jeprof is missing"; done
	exit 0
fi
R="$TMP/redis"
mkdir -p "$R"
RPORT=$(free_port)
printf 'bind 127.0.0.1\nport %s\nsave ""\nappendonly no\ndir %s\nlogfile %s/redis.log\n' "$RPORT" "$R" "$R" > "$R/redis.conf"
cli() { redis-cli -h 127.0.0.1 -p "$RPORT" "$@"; }
MALLOC_CONF="prof:true,prof_active:false,prof_prefix:$R/jeprof" $MEMTAP run -q -o "$R/m" -- "$REDIS" "$R/redis.conf" &
RUN=$!
at_exit "kill $RUN 2>/dev/null"
wait_for "cli ping 2>/dev/null | grep -q PONG" 100
RPID=$(pgrep -P $RUN | head -1)
# 2000 values of 4 KB: about 8 MB in the server
for i in $(seq 0 19); do
	for k in $(seq 100); do printf 'SET k%d_%d %s\n' $i $k "$(head -c 4000 /dev/zero | tr '\0' x)"; done | cli > /dev/null
done
st=$($MEMTAP ctl $RPID stats)
used=$(cli info memory | tr -d '\r' | sed -n 's/^used_memory://p')
alloc=$(awk '$1 == "stats.allocated" { print $2; exit }' <<<"$st")
diag "redis used_memory $used, jemalloc stats.allocated $alloc"
like "$st" "allocator: jemalloc" "redis: ctl stats finds jemalloc"
awk -v a="${alloc:-0}" -v u="${used:-1}" 'BEGIN { exit !(a >= 8000000 && a >= u * 0.8 && a <= u * 1.25) }'
ok $? "jemalloc's stats.allocated ($alloc) is redis's used_memory ($used) within 25%"
out=$($MEMTAP ctl $RPID activate)
like "$out" "jemalloc: prof.active false -> true" "ctl activate turns jemalloc's profiling on"
for i in $(seq 20 29); do
	for k in $(seq 100); do printf 'SET k%d_%d %s\n' $i $k "$(head -c 4000 /dev/zero | tr '\0' y)"; done | cli > /dev/null
done
out=$($MEMTAP ctl $RPID dump)
heap=$(sed -n 's/^jemalloc: prof.dump wrote \([^ ]*\) .*/\1/p' <<<"$out")
[ -n "$heap" ] && [ -s "$heap" ]
ok $? "ctl dump runs jemalloc's prof.dump: $heap"
total=$(jeprof --text "$REDIS" "$heap" 2>/dev/null | sed -n 's/^Total: \([0-9.]*\) MB/\1/p')
diag "jeprof: Total ${total:-?} MB"
awk -v t="${total:-0}" 'BEGIN { exit !(t >= 2) }'
ok $? "jeprof reads it: $total MB allocated while active (the 4 MB of SETs, sampled)"
cli shutdown nosave > /dev/null 2>&1
wait $RUN
ok $? "redis stops cleanly under memtap"
