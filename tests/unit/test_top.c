/* Unit tests: memtap top's data side (rates, selection, order, call sites)
 * and its screen layout (fits the terminal, the same lines for a pipe). */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "memtap/profile.h"
#include "memtap/top_view.h"

#define SEC 1000000000ull

/* A snapshot of process PID at T seconds: malloc and free with CALLS calls
 * of 100 bytes each, FAILED failed mallocs, IN_USE bytes in use. */
static struct mt_profile *snap(int pid, double t, uint64_t calls, uint64_t failed, int64_t in_use)
{
	struct mt_profile *p = mt_profile_new();
	assert_non_null(p);
	p->pid = (uint32_t)pid;
	p->start_ns = 1000 * SEC;
	p->dump_ns = p->start_ns + (uint64_t)(t * 1e9);
	snprintf(p->command, sizeof(p->command), "/usr/bin/fixture -x %d", pid);
	struct mt_func *m = mt_profile_func(p, "malloc", MT_KIND_ALLOC);
	m->calls = calls + failed;
	m->bytes = calls * 100;
	m->failed = failed;
	struct mt_func *f = mt_profile_func(p, "free", MT_KIND_FREE);
	f->calls = calls / 2;
	f->bytes = calls / 2 * 100;
	p->totals.in_use_bytes = in_use;
	p->totals.peak_in_use_bytes = (uint64_t)(in_use > 0 ? in_use : 0);
	return p;
}

static const struct mt_tv_func *row(const struct mt_top_view *v, const char *name)
{
	for (size_t i = 0; i < v->nfuncs; i++)
		if (!strcmp(v->funcs[i].name, name))
			return &v->funcs[i];
	return NULL;
}

static void rates_from_two_snapshots(void **state)
{
	(void)state;
	struct mt_top_view *v = mt_top_view_new();
	assert_int_equal(mt_top_view_update(v, 10, 1, NULL, snap(10, 1, 1000, 0, 5000)), 0);
	assert_int_equal(mt_top_view_compute(v), 0);
	assert_false(v->has_rate); /* one snapshot: totals, no rates */
	assert_int_equal(row(v, "malloc")->calls, 1000);
	assert_false(row(v, "malloc")->has_rate);
	/* Two seconds later: 4000 more calls, 6 failed, 2000 more bytes in use. */
	assert_int_equal(mt_top_view_update(v, 10, 1, NULL, snap(10, 3, 5000, 6, 7000)), 0);
	assert_int_equal(mt_top_view_compute(v), 0);
	const struct mt_tv_func *m = row(v, "malloc");
	assert_true(m->has_rate);
	assert_true(m->calls_s == 2003.0);   /* (4000 + 6) / 2 */
	assert_true(m->bytes_s == 200000.0); /* 4000 * 100 / 2 */
	assert_true(m->failed_s == 3.0);
	assert_int_equal(m->calls, 5006);
	assert_true(row(v, "free")->calls_s == 1000.0);
	const struct mt_tv_proc *r = mt_top_view_proc(v, 10);
	assert_true(r->growth_s == 1000.0);
	assert_int_equal(r->in_use, 7000);
	assert_true(v->calls_s == 3003.0);
	assert_true(v->bytes_s == 200000.0); /* allocations only */
	/* A reset: counters went down; the rate is what was counted since. */
	assert_int_equal(mt_top_view_update(v, 10, 1, NULL, snap(10, 4, 300, 0, 7000)), 0);
	assert_int_equal(mt_top_view_compute(v), 0);
	assert_true(row(v, "malloc")->calls_s == 300.0);
	mt_top_view_free(v);
}

static void pick_and_sum(void **state)
{
	(void)state;
	struct mt_top_view *v = mt_top_view_new();
	/* Parent 10 at 1000 calls/s, child 11 at 3000/s. */
	mt_top_view_update(v, 10, 1, NULL, snap(10, 1, 1000, 0, 100));
	mt_top_view_update(v, 11, 10, NULL, snap(11, 1, 0, 0, 0));
	mt_top_view_update(v, 10, 1, NULL, snap(10, 2, 2000, 0, 100));
	mt_top_view_update(v, 11, 10, NULL, snap(11, 2, 3000, 0, 400));
	assert_int_equal(mt_top_view_compute(v), 0);
	assert_int_equal(v->selected, 0);
	assert_true(row(v, "malloc")->calls_s == 4000.0);
	assert_int_equal(v->in_use, 500);
	mt_top_view_pick(v, 1);
	assert_int_equal(v->selected, 10);
	mt_top_view_compute(v);
	assert_true(row(v, "malloc")->calls_s == 1000.0);
	assert_int_equal(v->in_use, 100);
	mt_top_view_pick(v, 1);
	assert_int_equal(v->selected, 11);
	mt_top_view_compute(v);
	assert_true(row(v, "malloc")->calls_s == 3000.0);
	assert_int_equal(mt_top_view_proc(v, 11)->ppid, 10);
	mt_top_view_pick(v, 1); /* past the last: every process */
	assert_int_equal(v->selected, 0);
	mt_top_view_pick(v, -1);
	assert_int_equal(v->selected, 11);
	/* An ended process keeps its row, without rates or in-use. */
	mt_top_view_end(v, 11);
	v->selected = 0;
	mt_top_view_compute(v);
	assert_true(mt_top_view_proc(v, 11)->ended);
	assert_false(mt_top_view_proc(v, 11)->has_rate);
	assert_true(row(v, "malloc")->calls_s == 1000.0);
	assert_int_equal(v->in_use, 100);
	mt_top_view_free(v);
}

static void sort_orders(void **state)
{
	(void)state;
	struct mt_top_view *v = mt_top_view_new();
	struct mt_profile *a = snap(10, 1, 0, 0, 0), *b = snap(10, 2, 0, 0, 0);
	/* calloc: few calls, big blocks; free: many calls; malloc: failures. */
	struct mt_func *f;
	f = mt_profile_func(b, "calloc", MT_KIND_ALLOC), f->calls = 10, f->bytes = 1 << 20;
	f = mt_profile_func(b, "free", MT_KIND_FREE), f->calls = 5000, f->bytes = 1000;
	f = mt_profile_func(b, "malloc", MT_KIND_ALLOC), f->calls = 20, f->failed = 7, f->bytes = 50;
	mt_top_view_update(v, 10, 1, NULL, a);
	mt_top_view_update(v, 10, 1, NULL, b);
	const char *want[MT_TV_SORT_COUNT][3] = {
		[MT_TV_SORT_BYTES] = {"calloc", "free", "malloc"},
		[MT_TV_SORT_CALLS] = {"free", "malloc", "calloc"},
		[MT_TV_SORT_FAILED] = {"malloc", "free", "calloc"},
		[MT_TV_SORT_TOTAL] = {"free", "malloc", "calloc"},
		[MT_TV_SORT_NAME] = {"calloc", "free", "malloc"},
	};
	for (int s = 0; s < MT_TV_SORT_COUNT; s++) {
		v->sort = (enum mt_tv_sort)s;
		assert_int_equal(mt_top_view_compute(v), 0);
		assert_int_equal(v->nfuncs, 3);
		for (int i = 0; i < 3; i++)
			assert_string_equal(v->funcs[i].name, want[s][i]);
		enum mt_tv_sort back;
		assert_int_equal(mt_tv_sort_parse(mt_tv_sort_name((enum mt_tv_sort)s), &back), 0);
		assert_int_equal(back, s);
	}
	enum mt_tv_sort x;
	assert_int_equal(mt_tv_sort_parse("size", &x), -EINVAL);
	mt_top_view_free(v);
}

/* The same call site (same frames: no mappings, so both are "0x...") in two
 * processes is one row, summed. */
static void sites_merged(void **state)
{
	(void)state;
	struct mt_top_view *v = mt_top_view_new();
	uint64_t frames[2] = {0x1234, 0x5678}, other[1] = {0x9999};
	for (int pid = 10; pid <= 11; pid++) {
		for (int k = 0; k < 2; k++) {
			struct mt_profile *p = snap(pid, 1 + k, 100, 0, 0);
			p->sample_period = 1;
			struct mt_site *s = mt_profile_add_site(p, frames, 2);
			s->fn = 0;
			s->alloc_objects = 10 + 10 * (uint64_t)k;
			s->alloc_bytes = 1000 + 1000 * (uint64_t)k;
			s->inuse_objects = 3;
			s->inuse_bytes = 300;
			s = mt_profile_add_site(p, other, 1);
			s->fn = 0;
			s->alloc_objects = s->inuse_objects = 1;
			s->alloc_bytes = s->inuse_bytes = 50;
			mt_top_view_update(v, pid, 1, NULL, p);
		}
	}
	assert_int_equal(mt_top_view_compute(v), 0);
	assert_true(v->stacks);
	assert_int_equal(v->nsites, 2);
	assert_int_equal(v->sites[0].inuse_bytes, 600);
	assert_int_equal(v->sites[0].inuse_objects, 6);
	assert_int_equal(v->sites[0].pid, 0);
	assert_true(v->sites[0].alloc_bytes_s == 2000.0);
	assert_string_equal(v->sites[0].func, "malloc");
	assert_non_null(strstr(v->sites[0].where, "0x1234 < 0x5678"));
	assert_int_equal(v->sites[1].inuse_bytes, 100);
	mt_top_view_free(v);
}

struct screen {
	char lines[200][1024];
	int kinds[200];
	unsigned n;
};

static void collect(void *arg, enum mt_ts_line kind, const char *text)
{
	struct screen *s = arg;
	assert_true(s->n < 200);
	snprintf(s->lines[s->n], sizeof(s->lines[s->n]), "%s", text);
	s->kinds[s->n++] = kind;
}

static struct mt_top_view *busy_view(int nprocs, int nfuncs)
{
	struct mt_top_view *v = mt_top_view_new();
	for (int pid = 100; pid < 100 + nprocs; pid++)
		for (int k = 0; k < 2; k++) {
			struct mt_profile *p = snap(pid, 1 + k, 1000u * (unsigned)k, 0, 1 << 20);
			for (int i = 0; i < nfuncs; i++) {
				char name[32];
				snprintf(name, sizeof(name), "function_with_a_long_name_%d", i);
				struct mt_func *f = mt_profile_func(p, name, MT_KIND_OTHER);
				f->calls = 123456789u * (unsigned)(k + 1) + (unsigned)i;
				f->bytes = 987654321000u * (unsigned)(k + 1);
			}
			mt_top_view_update(v, pid, 1, NULL, p);
		}
	mt_top_view_compute(v);
	return v;
}

static void screen_fits(void **state)
{
	(void)state;
	unsigned sizes[][2] = {{80, 24}, {40, 10}, {132, 50}, {80, 6}};
	struct mt_top_view *v = busy_view(12, 40);
	v->selected = 111; /* the last process: its row must be on the screen */
	mt_top_view_compute(v);
	for (size_t k = 0; k < sizeof(sizes) / sizeof(sizes[0]); k++) {
		struct screen *s = calloc(1, sizeof(*s));
		struct mt_screen_opts o = {.width = sizes[k][0], .height = sizes[k][1], .mode = "attached"};
		mt_top_screen(v, &o, collect, s);
		assert_int_equal(s->n, sizes[k][1]);
		for (unsigned i = 0; i < s->n; i++)
			assert_true(strlen(s->lines[i]) <= sizes[k][0]);
		assert_int_equal(s->kinds[0], MT_TS_TITLE);
		assert_int_equal(s->kinds[s->n - 1], MT_TS_KEYS);
		assert_non_null(strstr(s->lines[s->n - 1], "q quit"));
		int picked = 0;
		for (unsigned i = 0; i < s->n; i++)
			picked |= s->kinds[i] == MT_TS_PICKED && strstr(s->lines[i], "    111 ") != NULL;
		if (sizes[k][1] >= 10)
			assert_true(picked);
		free(s);
	}
	/* The help fits too. */
	struct screen *s = calloc(1, sizeof(*s));
	struct mt_screen_opts o = {.width = 80, .height = 24, .help = 1};
	mt_top_screen(v, &o, collect, s);
	assert_int_equal(s->n, 24);
	int keys = 0;
	for (unsigned i = 0; i < s->n; i++)
		keys |= strstr(s->lines[i], "q, Ctrl-C") != NULL;
	assert_true(keys);
	free(s);
	mt_top_view_free(v);
}

static void plain_has_everything(void **state)
{
	(void)state;
	struct mt_top_view *v = busy_view(3, 30);
	struct screen *s = calloc(1, sizeof(*s));
	struct mt_screen_opts o = {.exact = 1};
	mt_top_screen(v, &o, collect, s);
	/* Every process and every function, numbers in full, no keys line. */
	int procs = 0, funcs = 0;
	for (unsigned i = 0; i < s->n; i++) {
		procs += strstr(s->lines[i], "fixture -x") != NULL;
		funcs += strncmp(s->lines[i], "function_with", 13) == 0;
		assert_int_not_equal(s->kinds[i], MT_TS_KEYS);
	}
	assert_int_equal(procs, 3);
	assert_int_equal(funcs, 30);
	/* 3 processes: 3 * 2 * 123456789 + 3 * 29 calls of the last function */
	int found = 0;
	for (unsigned i = 0; i < s->n; i++)
		found |= strstr(s->lines[i], "function_with_a_long_") && strstr(s->lines[i], " 740740821 ");
	assert_true(found);
	free(s);
	mt_top_view_free(v);
}

static void numbers(void **state)
{
	(void)state;
	char b[32];
	mt_tv_bytes(b, sizeof(b), 512);
	assert_string_equal(b, "512");
	mt_tv_bytes(b, sizeof(b), 1536);
	assert_string_equal(b, "1.5K");
	mt_tv_bytes(b, sizeof(b), 12.3 * 1024 * 1024);
	assert_string_equal(b, "12M");
	mt_tv_bytes(b, sizeof(b), -3.0 * 1024 * 1024 * 1024);
	assert_string_equal(b, "-3.0G");
	mt_tv_count(b, sizeof(b), 9999);
	assert_string_equal(b, "9999");
	mt_tv_count(b, sizeof(b), 12345);
	assert_string_equal(b, "12k");
	mt_tv_count(b, sizeof(b), 2.5);
	assert_string_equal(b, "2.5");
	mt_tv_count(b, sizeof(b), 1.5e9);
	assert_string_equal(b, "1.5G");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(rates_from_two_snapshots), cmocka_unit_test(pick_and_sum),
		cmocka_unit_test(sort_orders),              cmocka_unit_test(sites_merged),
		cmocka_unit_test(screen_fits),              cmocka_unit_test(plain_has_everything),
		cmocka_unit_test(numbers),
	};
	return cmocka_run_group_tests_name("top", tests, NULL, NULL);
}
