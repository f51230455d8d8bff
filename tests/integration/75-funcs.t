#!/bin/bash
# -f FUNC[:size=argN]: any exported function called across modules, counted
# with a size histogram of one argument (seeds/000 in one command).
. "$(dirname "$0")/../lib.sh"
plan 17

# A pool allocator in a shared library and a program that calls it 671
# times; the program also does floating-point work across the calls (the
# trampoline must keep xmm registers).
cat > "$TMP/pool.c" <<'C'
#include <stdlib.h>
struct pool { char *base; size_t used, cap; };
void *pool_palloc(struct pool *p, size_t n)
{
	if (!p->base || p->used + n > p->cap) {
		p->cap = n > 8192 ? n : 8192;
		p->base = malloc(p->cap);
		p->used = 0;
	}
	void *r = p->base + p->used;
	p->used += n;
	return r;
}
double pool_scale(struct pool *p, double x, double y) { return (double)p->used * x + y; }
C
cat > "$TMP/main.c" <<'C'
#include <stdio.h>
#include <stddef.h>
struct pool { char *base; size_t used, cap; };
void *pool_palloc(struct pool *p, size_t n);
double pool_scale(struct pool *p, double x, double y);
int main(void)
{
	struct pool p = {0};
	double acc = 0;
	for (int i = 0; i < 671; i++) {
		char *q = pool_palloc(&p, 1 + (size_t)(i * 37) % 300);
		q[0] = 1;
		acc += pool_scale(&p, 0.5, 0.25);
	}
	printf("acc %.2f\n", acc);
	return 0;
}
C
cc -O1 -shared -fPIC -o "$TMP/libpool.so" "$TMP/pool.c" &&
	cc -O1 -o "$TMP/main" "$TMP/main.c" -L"$TMP" -lpool -Wl,-rpath,"$TMP"
ok $? "build the pool fixture"
want=$("$TMP/main")
got=$($MEMTAP run -q -o "$TMP/p" -f pool_palloc:size=arg1 -f pool_scale -- "$TMP/main")
ok $? "the program runs with two functions hooked"
is "$got" "$want" "and computes the same result (float arguments survive the trampoline)"
$MEMTAP report --format=json "$TMP"/p.*.mtp > "$TMP/p.json"
is "$(fn_field "$TMP/p.json" pool_palloc calls)" 671 "pool_palloc: 671 calls"
is "$(jq -r '.processes[0].functions.pool_palloc.kind' "$TMP/p.json")" other "reported as a traced function"
# sizes 1 + (i*37 % 300): the histogram of arg1 matches the sizes requested.
want_bytes=$(awk 'BEGIN { for (i = 0; i < 671; i++) s += 1 + (i * 37) % 300; print s }')
is "$(fn_field "$TMP/p.json" pool_palloc bytes)" "$want_bytes" "bytes = sum of argument 1"
is "$(bucket "$TMP/p.json" pool_palloc 128)" \
   "$(awk 'BEGIN { for (i = 0; i < 671; i++) { v = 1 + (i * 37) % 300; if (v >= 128 && v < 256) n++ } print n }')" \
   "the 128 bucket holds the sizes in [128, 256)"
is "$(fn_field "$TMP/p.json" pool_scale calls)" 671 "a function without size= is counted too"
is "$(fn_field "$TMP/p.json" malloc calls)" "$(fn_field "$TMP/p.json" malloc calls)" "malloc is still counted"
[ "$(fn_field "$TMP/p.json" malloc calls)" -lt 671 ]
ok $? "the pool serves most requests without malloc"

$MEMTAP run -q -o "$TMP/bad" -f 'pool_palloc:size=arg9' -- "$TMP/main" 2> "$TMP/err.txt"
is "$?" 2 "a bad -f spec is refused"
like "$(cat "$TMP/err.txt")" "size=argN or pool=argM" "saying what is expected"

# :pool=argM: calls and bytes per pool.  Three pools get 50, 5 and 20 calls
# of 16, 1000 and 8 bytes (top by calls and top by bytes differ); the
# program prints "pool_palloc POOL CALLS BYTES" for each after its calls.
cat > "$TMP/pools.c" <<'C'
#include <stdio.h>
#include <stddef.h>
struct pool { char *base; size_t used, cap; };
void *pool_palloc(struct pool *p, size_t n);
int main(void)
{
	static struct pool p[3];
	static const int calls[3] = {50, 5, 20}, size[3] = {16, 1000, 8};
	for (int k = 0; k < 3; k++)
		for (int i = 0; i < calls[k]; i++)
			pool_palloc(&p[k], (size_t)size[k]);
	for (int k = 0; k < 3; k++)
		printf("pool_palloc %p %d %d\n", (void *)&p[k], calls[k], calls[k] * size[k]);
	return 0;
}
C
cc -O1 -o "$TMP/pools" "$TMP/pools.c" -L"$TMP" -lpool -Wl,-rpath,"$TMP"
$MEMTAP run -q -o "$TMP/pl" -f pool_palloc:size=arg1:pool=arg0 -- "$TMP/pools" > "$TMP/pl.want"
$MEMTAP report --format=json "$TMP"/pl.*.mtp > "$TMP/pl.json"
is "$(jq -r '.processes[0].pools.pool_palloc[] | "pool_palloc \(.pool) \(.calls) \(.bytes)"' "$TMP/pl.json" | sort)" \
   "$(sort "$TMP/pl.want")" "-f pool_palloc:size=arg1:pool=arg0: calls and bytes per pool, as the program made them"
$MEMTAP report "$TMP"/pl.*.mtp > "$TMP/pl.txt"
is "$(sed -n '/^Pools of pool_palloc by calls/{n;p}' "$TMP/pl.txt" | awk '{print $1}')" \
   "$(awk '{print $3, $2}' "$TMP/pl.want" | sort -rn | head -1 | cut -d' ' -f2)" "the text report's top pool by calls"
is "$(sed -n '/^Pools of pool_palloc by bytes/{n;p}' "$TMP/pl.txt" | awk '{print $1}')" \
   "$(awk '{print $4, $2}' "$TMP/pl.want" | sort -rn | head -1 | cut -d' ' -f2)" "the text report's top pool by bytes"

# Apache: apr_palloc against malloc per request, as in seeds/000.
if [ ! -x $APACHE ] || ! command -v curl >/dev/null; then
	skip "apache2 or curl is not installed"; skip "apache2 or curl is not installed"
	exit 0
fi
D="$TMP/httpd"
PORT=$(free_port)
apache_conf "$D" $PORT prefork "StartServers 1
MinSpareServers 1
MaxSpareServers 1
MaxRequestWorkers 1"
mkdir -p "$D/run" && chmod 1777 "$D/run"
export MEMTAP_RUNDIR="$D/run"
apache_start "$D" $PORT $MEMTAP run -q -o "$D/prof/httpd" -f apr_palloc:size=arg1 --
# Warm up the single child, zero its counters, then three GETs.
for i in 1 2 3 4 5; do curl -s --max-time 5 -o /dev/null http://127.0.0.1:$PORT/; done
child=$(pgrep -P "$(cat "$D/httpd.pid")" | head -1)
$MEMTAP ctl "$child" reset > /dev/null
for i in 1 2 3; do curl -s --max-time 5 -o /dev/null http://127.0.0.1:$PORT/; done
$MEMTAP report --format=json "$($MEMTAP ctl "$child" dump)" > "$D/dump.json"
palloc=$(fn_field "$D/dump.json" apr_palloc calls)
malloc=$(fn_field "$D/dump.json" malloc calls)
diag "3 GETs: apr_palloc $palloc calls, malloc $malloc calls"
[ "$palloc" -ge 100 ] && [ "$palloc" -lt 1000 ]
ok $? "three GETs: apr_palloc calls in the hundreds ($palloc)"
[ "$malloc" -lt $((palloc / 10)) ]
ok $? "and malloc calls far fewer ($malloc)"
