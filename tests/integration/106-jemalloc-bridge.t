#!/bin/bash
# The jemalloc bridge (seeds/004's memory_profile plugin, without a plugin):
# under Debian's libjemalloc2 with MALLOC_CONF=prof:true,prof_active:false,
# `memtap ctl PID activate|deactivate|dump` also drive jemalloc's prof.active
# and prof.dump, say what jemalloc did, and the heap file jemalloc writes is
# one jeprof reads, with the fixture's allocations in it.  Without prof:true
# the same commands say nothing about jemalloc.
. "$(dirname "$0")/../lib.sh"
JE=/usr/lib/x86_64-linux-gnu/libjemalloc.so.2
[ -e "$JE" ] || skip_all "libjemalloc2 is not installed (sh scripts/deps.sh peers)"
command -v jeprof >/dev/null || skip_all "jeprof is not installed (libjemalloc-dev: sh scripts/deps.sh peers)"
plan 13

send() { echo "$1" >&"${TGT[1]}"; local l; read -r -t 10 -u "${TGT[0]}" l; [ "$l" = done ]; }
coproc TGT { MALLOC_CONF="prof:true,prof_active:false,lg_prof_sample:12,prof_prefix:$TMP/jeprof" LD_PRELOAD=$JE \
	exec $MEMTAP run -q -o "$TMP/m" -- "$FIX/glibc_arenas"; }
RUNPID=$TGT_PID
at_exit "kill $RUNPID 2>/dev/null"
wait_for "pgrep -P $RUNPID" && TPID=$(pgrep -P $RUNPID)
wait_for "test -S /tmp/memtap-$(id -u)/$TPID.sock"

st=$($MEMTAP ctl $TPID stats)
like "$st" "opt.prof +1" "stats: jemalloc was started with profiling"
like "$st" "prof.active +0" "stats: and not active yet (prof_active:false)"
out=$($MEMTAP ctl $TPID activate)
like "$out" "^active" "activate: memtap counts"
like "$out" "jemalloc: prof.active false -> true" "activate: jemalloc's profiling is on too, and the reply says so"
send "grow 8000000"
out=$($MEMTAP ctl $TPID dump)
ok $? "dump"
mtp=$(head -1 <<<"$out")
is "$mtp" "$TMP/m.$TPID.0.mtp" "dump: memtap's own profile comes first"
heap=$(sed -n 's/^jemalloc: prof.dump wrote \([^ ]*\) .*/\1/p' <<<"$out")
diag "jemalloc wrote: ${heap:-nothing}"
[ -n "$heap" ] && [ -s "$heap" ]
ok $? "dump: jemalloc's prof.dump wrote $heap, and the reply names it"
like "$heap" "^$TMP/jeprof\.$TPID\..*\.heap$" "the file is under jemalloc's prof_prefix, named for the process"
# jeprof reads it: the 8 MB the fixture keeps, allocated from main.
txt=$(jeprof --text "$FIX/glibc_arenas" "$heap" 2>/dev/null)
total=$(sed -n 's/^Total: \([0-9.]*\) MB/\1/p' <<<"$txt")
diag "jeprof: Total: ${total:-?} MB"
awk -v t="${total:-0}" 'BEGIN { exit !(t >= 6 && t <= 10) }'
ok $? "jeprof reads it: Total $total MB (the fixture keeps 8 MB, sampled every 4 KiB)"
like "$txt" "main" "jeprof attributes it to the fixture's main"
out=$($MEMTAP ctl $TPID deactivate)
like "$out" "jemalloc: prof.active true -> false" "deactivate: jemalloc's profiling is off again"
echo quit >&"${TGT[1]}"
wait $RUNPID

# Without prof:true, nothing about jemalloc: dump prints only the profile.
coproc TGT { LD_PRELOAD=$JE exec $MEMTAP run -q -o "$TMP/n" -- "$FIX/glibc_arenas"; }
RUNPID=$TGT_PID
at_exit "kill $RUNPID 2>/dev/null"
wait_for "pgrep -P $RUNPID" && TPID=$(pgrep -P $RUNPID)
wait_for "test -S /tmp/memtap-$(id -u)/$TPID.sock"
is "$($MEMTAP ctl $TPID dump)" "$TMP/n.$TPID.0.mtp" "jemalloc without prof:true: dump prints only the profile's path"
is "$($MEMTAP ctl $TPID activate)" "active" "and activate only memtap's state"
echo quit >&"${TGT[1]}"
wait $RUNPID
