#!/bin/bash
# End to end: a prefork Apache (Debian's apache2) under memtap run
# --prometheus, its children exiting every 3 connections
# (MaxConnectionsPerChild) while curl asks for pages: scraped after every
# batch, the counters for the command (apache2) never go down, ended
# children's counts stay in them, and one series per command and function
# (no pid label); with --prometheus-per-pid, per-pid series and the ended
# children under pid="exited", their sum never going down either.
. "$(dirname "$0")/../lib.sh"
[ -x "$APACHE" ] || skip_all "$APACHE is missing (apt-get install apache2)"
[ -f "$APACHE_MODULES/mod_mpm_prefork.so" ] || skip_all "mod_mpm_prefork is missing"
plan 12

TUNING="StartServers 2
MinSpareServers 1
MaxSpareServers 2
MaxRequestWorkers 4
MaxConnectionsPerChild 3"

# scrape PORT OUT: /metrics into OUT; prints the sum over apache2's
# memtap_allocations_total series and its exited-processes count.
scrape() {
	curl -s --max-time 5 "http://127.0.0.1:$1/metrics" > "$2"
	awk '/^memtap_allocations_total\{command="apache2"/ { s += $2 }
	     /^memtap_exited_processes_total\{command="apache2"/ { e += $2 }
	     END { printf "%d %d\n", s, e }' "$2"
}

# run_rounds PORT MP TAG: 15 rounds of 8 requests, a scrape after each;
# prints "monotonic|decreased first last exited".
run_rounds() {
	local port=$1 mp=$2 tag=$3 prev=-1 first="" bad=0 i s e
	for i in $(seq 1 15); do
		for r in 1 2 3 4 5 6 7 8; do curl -s -o /dev/null --max-time 5 "http://127.0.0.1:$port/"; done
		read -r s e < <(scrape "$mp" "$TMP/$tag.$i")
		[ -z "$first" ] && first=$s
		[ "$s" -lt "$prev" ] && { bad=1; diag "$tag: round $i: $s after $prev"; }
		# every series, line by line, against the previous scrape
		if [ "$i" -gt 1 ]; then
			join <(grep -E '^memtap_(allocations|frees|allocated_bytes|freed_bytes)_total' "$TMP/$tag.$((i - 1))" | sort) \
			     <(grep -E '^memtap_(allocations|frees|allocated_bytes|freed_bytes)_total' "$TMP/$tag.$i" | sort) |
				awk '$3 < $2 { print; bad = 1 } END { exit bad }' > "$TMP/$tag.down.$i" || bad=1
		fi
		prev=$s
	done
	echo "$([ $bad = 0 ] && echo monotonic || echo decreased) $first $prev $e"
}

# Default: per command.
PORT=$(free_port)
MP=$(free_port)
apache_conf "$TMP/a" "$PORT" prefork "$TUNING"
apache_start "$TMP/a" "$PORT" "$MEMTAP" run --prometheus=127.0.0.1:$MP -o "$TMP/a/prof/p" -q --
ok $? "prefork Apache answers under memtap run --prometheus"
read -r verdict first last exited < <(run_rounds "$PORT" "$MP" a)
diag "per command: $verdict $first -> $last, $exited ended"
is "$verdict" monotonic "120 requests, 15 scrapes: no counter of apache2 ever went down"
ok $([ "$last" -gt "$first" ]; echo $?) "the allocation counters grew ($first -> $last calls)"
ok $([ "$exited" -gt 0 ]; echo $?) "while children ended and were replaced ($exited ended)"
like "$(grep '^memtap_processes{command="apache2"}' "$TMP/a.15")" '^memtap_processes\{command="apache2"\} [1-9]' \
	"memtap_processes counts the running ones"
is "$(grep -c 'pid="' "$TMP/a.15")" 0 "no pid label by default"
malloc_series=$(grep -c '^memtap_allocations_total{command="apache2",function="malloc"}' "$TMP/a.15")
is "$malloc_series" 1 "one malloc series for all of apache2's processes"
apache_stop "$TMP/a"
wait $APACHE_PID
is "$?" 0 "memtap run ends with Apache"

# --prometheus-per-pid.
PORT=$(free_port)
MP=$(free_port)
apache_conf "$TMP/b" "$PORT" prefork "$TUNING"
apache_start "$TMP/b" "$PORT" "$MEMTAP" run --prometheus=127.0.0.1:$MP --prometheus-per-pid -o "$TMP/b/prof/p" -q --
ok $? "and again with --prometheus-per-pid"
read -r verdict first last exited < <(run_rounds "$PORT" "$MP" b)
diag "per-pid: $verdict $first -> $last, $exited ended"
like "$(grep -c '^memtap_allocations_total{command="apache2",function="malloc",pid="[0-9]*"}' "$TMP/b.15")" \
	'^[1-9]' "per-pid series for the running processes"
like "$(grep '^memtap_allocations_total{command="apache2",function="malloc",pid="exited"}' "$TMP/b.15")" \
	' [1-9][0-9]*$' "the ended children's counts under pid=\"exited\""
# Per-pid series come and go; their sum by command does not go down.
is "$(awk -v f="$first" -v l="$last" 'BEGIN { print (l > f ? "grew" : "not") }')$( [ "$verdict" = monotonic ] || echo ', went down' )" \
	grew "the sum over pids never went down and grew ($first -> $last)"
apache_stop "$TMP/b"
wait $APACHE_PID
