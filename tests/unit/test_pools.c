/* Unit tests: the APR pool model (memtap/pools.h): file records round trip
 * and refuse damage, the "only grows" rule, merging, the live-file reader
 * (a table built by hand the way the agent lays it out), and the text and
 * JSON renderers. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "memtap/format.h"
#include "memtap/live.h"
#include "memtap/pools.h"
#include "memtap/render.h"

#define S 1000000000ull

static struct mt_profile *sample(void)
{
	struct mt_profile *p = mt_profile_new();
	p->pid = 4551;
	p->dump_ns = 100 * S;
	strcpy(p->command, "httpd");
	p->apr = mt_apr_new();
	struct mt_apr *a = p->apr;
	a->hooked = 1;
	a->created = 7;
	a->destroyed = 3;
	a->dropped = 1;
	a->untracked_calls = 11;
	a->untracked_bytes = 1100;
	struct mt_apr_pool *q = mt_apr_add_pool(a);
	q->pool = 0x1000;
	q->created_ns = 90 * S;
	q->mark_ns = 90 * S;
	q->calls = 300;
	q->bytes = q->cur_bytes = 28800;
	q->marks = 0x3ff8; /* allocated at ages 8 ms .. 16 s: every span up to 10 s */
	q->caller = 0x401234;
	strcpy(q->tag, "connection");
	q = mt_apr_add_pool(a);
	q->pool = 0x2000;
	q->parent = 0x1000;
	q->created_ns = 91 * S;
	q->destroyed_ns = 91 * S + 250000;
	q->calls = 21;
	q->bytes = 1982;
	strcpy(q->tag, "request");
	struct mt_apr_tag *t = mt_apr_tag_of(a, "request");
	t->pools = 3;
	t->calls = 63;
	t->bytes = 5946;
	t->life_us = 750;
	t->life_hist[mt_hist_bucket(250)] = 3;
	t->bytes_hist[mt_hist_bucket(1982)] = 3;
	return p;
}

static struct mt_profile *through_file(const struct mt_profile *p)
{
	struct mt_buf b = {NULL, 0, 0, 0, mt_buf_grow_libc};
	assert_int_equal(mt_file_encode(p, &b), 0);
	struct mt_profile *q = NULL;
	char err[256];
	assert_int_equal(mt_file_decode(b.data, b.len, &q, err, sizeof(err)), 0);
	free(b.data);
	return q;
}

static void round_trip(void **state)
{
	(void)state;
	struct mt_profile *p = sample(), *q = through_file(p);
	assert_non_null(q->apr);
	struct mt_apr *a = q->apr;
	assert_int_equal(a->hooked, 1);
	assert_int_equal(a->created, 7);
	assert_int_equal(a->destroyed, 3);
	assert_int_equal(a->dropped, 1);
	assert_int_equal(a->untracked_calls, 11);
	assert_int_equal(a->untracked_bytes, 1100);
	assert_int_equal(a->npools, 2);
	assert_memory_equal(&a->pools[0], &p->apr->pools[0], sizeof(a->pools[0]));
	assert_memory_equal(&a->pools[1], &p->apr->pools[1], sizeof(a->pools[1]));
	assert_int_equal(a->ntags, 1);
	assert_memory_equal(&a->tags[0], &p->apr->tags[0], sizeof(a->tags[0]));
	mt_profile_free(p);
	mt_profile_free(q);
}

static void no_pools_no_records(void **state)
{
	(void)state;
	struct mt_profile *p = sample();
	mt_apr_free(p->apr);
	p->apr = NULL;
	struct mt_profile *q = through_file(p);
	assert_null(q->apr);
	mt_profile_free(p);
	mt_profile_free(q);
}

/* A record cut short is refused, naming it. */
static void damaged_record(void **state)
{
	(void)state;
	struct mt_profile *p = mt_profile_new();
	char err[256];
	uint8_t pool[20] = {0};
	assert_int_equal(mt_apr_decode(MT_TAG_APR_POOL, pool, sizeof(pool), p, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "APR pool record of 20 bytes"));
	/* a tag longer than a tag can be */
	uint8_t tag[64] = {1, 0, 0, 0, 200, 0, 0, 0};
	assert_int_equal(mt_apr_decode(MT_TAG_APR_TAG, tag, sizeof(tag), p, err, sizeof(err)), -EINVAL);
	/* a newer writer's kind of tag record is skipped */
	uint8_t newer[8] = {9, 0, 0, 0};
	assert_int_equal(mt_apr_decode(MT_TAG_APR_TAG, newer, sizeof(newer), p, err, sizeof(err)), 0);
	mt_profile_free(p);
}

static void growing_rule(void **state)
{
	(void)state;
	struct mt_apr_pool q = {0};
	q.mark_ns = 10 * S;
	q.cur_bytes = 100;
	q.marks = 0x7ff; /* every span up to 2 s */
	assert_true(mt_apr_growing(&q, 10 * S + 1500000000ull)); /* 1.5 s: span 10 is the last */
	assert_false(mt_apr_growing(&q, 10 * S + 500000000ull)); /* 0.5 s: too young */
	assert_false(mt_apr_growing(&q, 10 * S + 9 * S));        /* 9 s: stopped at 2 s */
	q.marks = 0x401;                                          /* at start and lately, nothing between */
	assert_false(mt_apr_growing(&q, 10 * S + 1500000000ull));
	q.marks = 0x7ff;
	q.destroyed_ns = 12 * S;
	assert_false(mt_apr_growing(&q, 10 * S + 1500000000ull)); /* destroyed */
	q.destroyed_ns = 0;
	q.cur_bytes = 0;
	assert_false(mt_apr_growing(&q, 10 * S + 1500000000ull)); /* just cleared */
	assert_int_equal(mt_apr_span(0), 0);
	assert_int_equal(mt_apr_span(1), 0);
	assert_int_equal(mt_apr_span(1024), 10);
	assert_int_equal(mt_apr_span(UINT64_MAX), 31);
}

static void merge(void **state)
{
	(void)state;
	struct mt_profile *a = sample(), *b = sample();
	assert_int_equal(mt_profile_merge(a, b), 0);
	assert_int_equal(a->apr->npools, 4);
	assert_int_equal(a->apr->ntags, 1);
	assert_int_equal(a->apr->tags[0].pools, 6);
	assert_int_equal(a->apr->tags[0].life_hist[mt_hist_bucket(250)], 6);
	assert_int_equal(a->apr->created, 14);
	struct mt_profile *c = mt_profile_new();
	assert_int_equal(mt_profile_merge(c, b), 0); /* into a profile without pools */
	assert_int_equal(c->apr->npools, 2);
	mt_profile_free(a);
	mt_profile_free(b);
	mt_profile_free(c);
}

/* The reader over a live file holding a table laid out as the agent does:
 * live slots, freed ones, a ring entry being rewritten (key 0). */
static void live_reader(void **state)
{
	(void)state;
	size_t len = sizeof(struct mt_live_hdr) + sizeof(struct mt_live_apr);
	uint8_t *m = calloc(1, len);
	struct mt_live_hdr *h = (struct mt_live_hdr *)m;
	struct mt_live_apr *t = (struct mt_live_apr *)(h + 1);
	uint64_t base = 0x7f0000000000ull;
	struct mt_live_view v = {m, len, base};
	struct mt_apr *a = NULL;
	assert_int_equal(mt_live_apr_read(&v, &a), 0);
	assert_null(a); /* no --pools */
	h->apr = base + sizeof(*h);
	t->slots = MT_APR_SLOTS;
	t->nring = MT_APR_RING;
	t->hooked = 1;
	t->created = 3;
	t->slot[5].key = 0x5000;
	t->slot[5].calls = 4;
	strcpy(t->slot[5].tag, "pchild");
	t->slot[6].key = MT_APR_FREED;
	t->slot[6].calls = 99;
	t->ring[0].key = 0x6000;
	t->ring[0].destroyed_ns = 5;
	t->ring[1].key = 0;
	t->ring[1].destroyed_ns = 6;
	t->ntags = 1;
	strcpy(t->tags[0].tag, "request");
	t->tags[0].pools = 2;
	assert_int_equal(mt_live_apr_read(&v, &a), 0);
	assert_non_null(a);
	assert_int_equal(a->npools, 2);
	assert_int_equal(a->pools[0].pool, 0x5000);
	assert_int_equal(a->pools[0].calls, 4);
	assert_string_equal(a->pools[0].tag, "pchild");
	assert_int_equal(a->pools[1].pool, 0x6000);
	assert_int_equal(a->ntags, 1);
	assert_int_equal(a->tags[0].pools, 2);
	mt_apr_free(a);
	/* a table that is not where the header says */
	h->apr = base + len;
	assert_int_equal(mt_live_apr_read(&v, &a), -EINVAL);
	free(m);
}

static void renderers(void **state)
{
	(void)state;
	struct mt_profile *p = sample();
	char *buf = NULL;
	size_t n = 0;
	FILE *f = open_memstream(&buf, &n);
	assert_int_equal(mt_render_pools_text(f, p, 1), 0);
	fclose(f);
	assert_non_null(strstr(buf, "Pools that only grow"));
	assert_non_null(strstr(buf, "connection           0x1000: 28800 bytes in 300 calls over 10 s"));
	assert_non_null(strstr(buf, "11 allocations (1100 bytes) on pools made before tracing began"));
	assert_non_null(strstr(buf, "Lifetimes of destroyed pools (us)"));
	free(buf);
	struct mt_report_item it = {p, NULL, NULL, 0};
	f = open_memstream(&buf, &n);
	assert_int_equal(mt_render_json(f, &it, 1), 0);
	fclose(f);
	assert_non_null(strstr(buf, "\"pools\":[{\"pool\":\"0x1000\",\"tag\":\"connection\",\"parent\":null,"
				    "\"created_ns\":90000000000,\"destroyed_ns\":null,\"calls\":300,\"bytes\":28800"));
	assert_non_null(strstr(buf, "\"growing\":true"));
	assert_non_null(strstr(buf, "\"parent\":\"0x1000\""));
	assert_non_null(strstr(buf, "\"destroyed_by_tag\":[{\"tag\":\"request\",\"pools\":3"));
	free(buf);
	f = open_memstream(&buf, &n);
	assert_int_equal(mt_render_pools_log(f, &it, 1), 0);
	fclose(f);
	assert_non_null(strstr(buf, "POOL DEBUG: [4551/0]  CREATE (         0/         0/         0) "
				    "0x0000000000001000 \"connection\" <0x401234> (0/0/0)\n"));
	assert_non_null(strstr(buf, " DESTROY "));
	free(buf);
	mt_profile_free(p);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(round_trip),   cmocka_unit_test(no_pools_no_records), cmocka_unit_test(damaged_record),
		cmocka_unit_test(growing_rule), cmocka_unit_test(merge),               cmocka_unit_test(live_reader),
		cmocka_unit_test(renderers),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
