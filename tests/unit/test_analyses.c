/* Unit tests: the analyses (src/render/analyses.c): stacks trimmed below
 * main and thread entry, the run time, rate and temporary totals, their
 * text and JSON, and the file records that carry them (tags 15 and 16).
 * Stacks use this program's own functions and libc's exported ones, with
 * the mappings read from /proc/self/maps. */
#include <inttypes.h>
#include <sched.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cmocka.h>

#include "memtap/format.h"
#include "memtap/render.h"
#include "memtap/symbolize.h"
#include "render/export.h"

int main(void);
extern int __libc_start_main(void);
extern void _start(void);

volatile int sink;
__attribute__((noinline)) void analyses_leaf(void)
{
	for (int i = 0; i < 8; i++)
		sink += i;
}
__attribute__((noinline)) void analyses_thread_fn(void)
{
	for (int i = 0; i < 8; i++)
		sink += i * 3;
	analyses_leaf();
}

#define RET(fn) ((uint64_t)(uintptr_t)(fn) + 8)

static void add_self_maps(struct mt_profile *p)
{
	FILE *f = fopen("/proc/self/maps", "r");
	assert_non_null(f);
	char line[2048];
	while (fgets(line, sizeof(line), f)) {
		unsigned long long start, end, off;
		char perms[8], path[1024] = "";
		if (sscanf(line, "%llx-%llx %7s %llx %*s %*s %1023s", &start, &end, perms, &off, path) < 4 ||
		    path[0] != '/')
			continue;
		struct mt_mapping *m = mt_profile_add_mapping(p);
		assert_non_null(m);
		*m = (struct mt_mapping){.start = start, .end = end, .offset = off};
		m->prot = (perms[0] == 'r' ? PROT_READ : 0) | (perms[1] == 'w' ? PROT_WRITE : 0) |
			  (perms[2] == 'x' ? PROT_EXEC : 0);
		snprintf(m->path, sizeof(m->path), "%s", path);
	}
	fclose(f);
}

static struct mt_site *site(struct mt_profile *p, const uint64_t *frames, uint32_t n, uint64_t objects,
			    uint64_t bytes)
{
	struct mt_func *f = mt_profile_func(p, "malloc", MT_KIND_ALLOC);
	assert_non_null(f);
	uint32_t fn = (uint32_t)(f - p->funcs);
	struct mt_site *s = mt_profile_add_site(p, frames, n);
	assert_non_null(s);
	s->fn = fn;
	s->alloc_objects = objects;
	s->alloc_bytes = bytes;
	return s;
}

/* A main-thread stack (leaf, main, __libc_start_main, _start) and a
 * thread's (leaf, its routine, clone). */
static struct mt_profile *stacks_profile(void)
{
	struct mt_profile *p = mt_profile_new();
	assert_non_null(p);
	p->sample_period = 1;
	add_self_maps(p);
	uint64_t a[] = {RET(analyses_leaf), RET(main), RET(__libc_start_main), RET(_start)};
	uint64_t t[] = {RET(analyses_leaf), RET(analyses_thread_fn), RET(clone)};
	site(p, a, 4, 1, 100);
	site(p, t, 3, 2, 200);
	return p;
}

static void trims_below_main_and_thread_entry(void **state)
{
	(void)state;
	struct mt_profile *p = stacks_profile();
	struct mt_symbolizer *sym = mt_symbolizer_new(p);
	assert_non_null(sym);
	/* These frames must symbolize for the test to mean anything. */
	struct mt_frame f[MT_INLINE_MAX];
	int n = mt_symbolize(sym, RET(main), 1, f, MT_INLINE_MAX);
	assert_true(n >= 1);
	assert_string_equal(f[n - 1].function, "main");
	mt_render_full_stacks = 0;
	assert_int_equal(mt_site_depth(sym, &p->sites[0]), 2);
	assert_int_equal(mt_site_depth(sym, &p->sites[1]), 2);
	mt_render_full_stacks = 1;
	assert_int_equal(mt_site_depth(sym, &p->sites[0]), 4);
	assert_int_equal(mt_site_depth(sym, &p->sites[1]), 3);
	mt_render_full_stacks = 0;
	/* A stack with only runtime frames is kept whole, not emptied. */
	uint64_t r[] = {RET(clone)};
	struct mt_site *s = site(p, r, 1, 1, 1);
	assert_int_equal(mt_site_depth(sym, s), 1);
	mt_symbolizer_free(sym);
	mt_profile_free(p);
}

static void collapsed_and_json_are_trimmed(void **state)
{
	(void)state;
	struct mt_profile *p = stacks_profile();
	struct mt_report_item it = {p, NULL, NULL, 0};
	char *buf = NULL;
	size_t len = 0;
	FILE *out = open_memstream(&buf, &len);
	assert_int_equal(mt_render_collapsed(out, &it, 1, MT_VALUE_ALLOC), 0);
	fclose(out);
	assert_non_null(strstr(buf, "main;analyses_leaf 100\n"));
	assert_non_null(strstr(buf, "analyses_thread_fn;analyses_leaf 200\n"));
	assert_null(strstr(buf, "_start"));
	assert_null(strstr(buf, "clone"));
	free(buf);
	buf = NULL;
	out = open_memstream(&buf, &len);
	assert_int_equal(mt_render_json(out, &it, 1), 0);
	fclose(out);
	/* Symbolized frames next to the raw addresses, which stay whole. */
	assert_non_null(strstr(buf, "\"function\":\"analyses_leaf\""));
	assert_non_null(strstr(buf, "\"function\":\"main\""));
	assert_null(strstr(buf, "\"function\":\"__libc_start_main"));
	char raw[64];
	snprintf(raw, sizeof(raw), "\"0x%" PRIx64 "\"]", RET(_start));
	assert_non_null(strstr(buf, raw));
	free(buf);
	mt_profile_free(p);
}

static struct mt_profile *figures_profile(void)
{
	struct mt_profile *p = mt_profile_new();
	assert_non_null(p);
	p->sample_period = 1;
	p->start_ns = 1000000000ull;
	p->dump_ns = 3000000000ull; /* 2 s */
	p->end = MT_END_EXIT;
	p->peak_rss_bytes = 3 << 20;
	struct mt_func *f = mt_profile_func(p, "malloc", MT_KIND_ALLOC);
	f->calls = 1000;
	mt_profile_func(p, "free", MT_KIND_FREE)->calls = 990;
	uint64_t a[] = {0x1000}, b[] = {0x2000};
	struct mt_site *s = site(p, a, 1, 999, 99900);
	s->temp_objects = 900;
	s->temp_bytes = 90000;
	s = site(p, b, 1, 1, 100);
	s->inuse_objects = 1;
	s->inuse_bytes = 100;
	s->peak_objects = 1;
	s->peak_bytes = 100;
	return p;
}

static void figures(void **state)
{
	(void)state;
	struct mt_profile *p = figures_profile();
	struct mt_analyses a;
	mt_analyses_of(p, &a);
	assert_int_equal(a.run_ns, 2000000000ull);
	assert_int_equal(a.allocations, 1000);
	assert_true(a.per_second > 499.9 && a.per_second < 500.1);
	assert_int_equal(a.temp_objects, 900);
	assert_int_equal(a.temp_bytes, 90000);
	assert_int_equal(a.peak_rss_bytes, 3 << 20);
	struct mt_report_item it = {p, NULL, NULL, 0};
	char *buf = NULL;
	size_t len = 0;
	FILE *out = open_memstream(&buf, &len);
	assert_int_equal(mt_render_text(out, &it, 1), 0);
	fclose(out);
	assert_non_null(strstr(buf, "  run time                   2.000 s\n"));
	assert_non_null(strstr(buf, "  allocations                1000 calls, 500 per second\n"));
	assert_non_null(strstr(buf, "  peak RSS                   3.00 MiB (3145728 bytes)\n"));
	assert_non_null(strstr(buf, "  temporary allocations      900 (90.0% of allocations), 87.89 KiB (90000 bytes) requested\n"));
	assert_non_null(strstr(buf, "\nTop call sites by temporary allocations:\n"
				    "  #1  900 temporary allocations (90.1% of its 999 calls), 90000 requested bytes, from malloc\n"));
	assert_non_null(strstr(buf, "\nTop call sites by bytes in use at the peak:\n"
				    "  #1  100 requested bytes (100.0%) in 1 block at the peak, from malloc\n"));
	free(buf);
	buf = NULL;
	out = open_memstream(&buf, &len);
	assert_int_equal(mt_render_json(out, &it, 1), 0);
	fclose(out);
	assert_non_null(strstr(buf, ",\"analyses\":{\"run_time_ns\":2000000000,\"allocations\":1000,"
				    "\"allocations_per_second\":500.0,\"peak_rss_bytes\":3145728,"
				    "\"temporary_allocations\":900,\"temporary_bytes\":90000,\"temporary_estimated\":false}"));
	free(buf);
	mt_profile_free(p);
}

static void file_records_round_trip(void **state)
{
	(void)state;
	struct mt_profile *p = figures_profile();
	struct mt_buf b = {.grow = mt_buf_grow_libc};
	assert_int_equal(mt_file_encode(p, &b), 0);
	struct mt_profile *q;
	char err[256];
	assert_int_equal(mt_file_decode(b.data, b.len, &q, err, sizeof(err)), 0);
	assert_int_equal(q->peak_rss_bytes, 3 << 20);
	assert_int_equal(q->nsites, 2);
	assert_int_equal(q->sites[0].temp_objects, 900);
	assert_int_equal(q->sites[0].temp_bytes, 90000);
	assert_int_equal(q->sites[1].temp_objects, 0);
	/* Merging sums them (the peak RSS too: an upper bound, as the peaks). */
	assert_int_equal(mt_profile_merge(q, p), 0);
	assert_int_equal(q->sites[0].temp_objects, 1800);
	assert_int_equal(q->peak_rss_bytes, 6 << 20);
	mt_profile_free(q);
	free(b.data);
	mt_profile_free(p);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(trims_below_main_and_thread_entry),
		cmocka_unit_test(collapsed_and_json_are_trimmed),
		cmocka_unit_test(figures),
		cmocka_unit_test(file_records_round_trip),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
