/* Unit tests: timelines (include/memtap/timeline.h): appending, the bound
 * and its decimation (no count lost, time order kept, the maximum kept),
 * the TIMELINE record's round trip and its checks, the report's series
 * (parent links, a series from snapshots without a timeline) and the SVG. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include <cmocka.h>

#include "memtap/format.h"
#include "memtap/render.h"
#include "memtap/timeline.h"

static struct mt_tl_point pt(uint64_t k)
{
	struct mt_tl_point p = {
		.t_ns = 1000 + k * 100, .span_ns = 100, .in_use_bytes = (int64_t)(k % 7 == 3 ? 1000000 : k),
		.alloc_bytes = 10, .alloc_calls = 1, .free_bytes = 5, .free_calls = 1,
		.rss_bytes = 4096, .have = MT_TL_HAVE_RSS,
	};
	return p;
}

static void bounded_and_lossless(void **state)
{
	(void)state;
	struct mt_timeline tl = {.interval_ns = 100};
	const uint64_t N = 100000;
	for (uint64_t k = 0; k < N; k++) {
		struct mt_tl_point p = pt(k);
		assert_int_equal(mt_timeline_append(&tl, &p), 0);
		assert_true(tl.n <= MT_TL_MAX);
	}
	assert_true(tl.decimations > 0);
	uint64_t ab = 0, calls = 0, merged = 0, span = 0;
	int64_t max = 0;
	for (uint32_t i = 0; i < tl.n; i++) {
		ab += tl.pts[i].alloc_bytes;
		calls += tl.pts[i].alloc_calls;
		merged += tl.pts[i].merged;
		span += tl.pts[i].span_ns;
		if (tl.pts[i].in_use_max > max)
			max = tl.pts[i].in_use_max;
		if (i)
			assert_true(tl.pts[i].t_ns > tl.pts[i - 1].t_ns);
	}
	assert_int_equal(ab, N * 10);
	assert_int_equal(calls, N);
	assert_int_equal(merged, N);
	assert_int_equal(span, N * 100);
	assert_int_equal(max, 1000000); /* a spike survives decimation in the maximum */
	/* The last points are raw, at full resolution. */
	assert_int_equal(tl.pts[tl.n - 1].merged, 1);
	assert_int_equal(tl.pts[tl.n - 1].t_ns, 1000 + (N - 1) * 100);
	assert_true(tl.pts[0].merged > 1);
	mt_timeline_clear(&tl);
	mt_timeline_clear(NULL);
}

static struct mt_profile *with_timeline(uint32_t pid, uint32_t ppid, uint64_t start, uint64_t parent_start, uint32_t n)
{
	struct mt_profile *p = mt_profile_new();
	p->pid = pid;
	p->ppid = ppid;
	p->start_ns = start;
	p->dump_ns = start + 10000;
	p->parent_start_ns = parent_start;
	snprintf(p->command, sizeof(p->command), "server <%u> & \"x\"", pid);
	p->timeline.interval_ns = 100;
	for (uint32_t k = 0; k < n; k++) {
		struct mt_tl_point q = pt(k);
		q.t_ns += start;
		assert_int_equal(mt_timeline_append(&p->timeline, &q), 0);
	}
	return p;
}

static void round_trip(void **state)
{
	(void)state;
	struct mt_profile *p = with_timeline(7, 1, 5000, 4000, 300), *q;
	struct mt_buf b = {.grow = mt_buf_grow_libc};
	char err[256];
	assert_int_equal(mt_file_encode(p, &b), 0);
	assert_int_equal(mt_file_decode(b.data, b.len, &q, err, sizeof(err)), 0);
	assert_int_equal(q->timeline.n, 300);
	assert_int_equal(q->timeline.interval_ns, 100);
	assert_int_equal(q->parent_start_ns, 4000);
	assert_memory_equal(q->timeline.pts, p->timeline.pts, 300 * sizeof(struct mt_tl_point));
	mt_profile_free(q);
	/* A point length that does not fill the record is refused, naming it. */
	uint8_t *rec = NULL;
	for (size_t off = 16; off + 8 <= b.len;) {
		uint32_t tag, len;
		memcpy(&tag, b.data + off, 4);
		memcpy(&len, b.data + off + 4, 4);
		if (tag == MT_TAG_TIMELINE) {
			rec = b.data + off;
			break;
		}
		off += 8 + len;
	}
	assert_non_null(rec);
	uint32_t bad = 95;
	memcpy(rec + 8 + 8 + 8 + 4 + 4, &bad, 4);
	/* fix the CRC so only the record's content is wrong */
	size_t endrec = b.len - 12;
	uint32_t crc = (uint32_t)crc32(0L, b.data, (uInt)endrec);
	memcpy(b.data + endrec + 8, &crc, 4);
	assert_int_equal(mt_file_decode(b.data, b.len, &q, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "timeline record at offset"));
	free(b.data);
	mt_profile_free(p);
}

static void series_and_svg(void **state)
{
	(void)state;
	struct mt_report_item items[4] = {
		{with_timeline(10, 1, 1000, 0, 20), NULL, NULL, 0},
		{with_timeline(11, 10, 2000, 1000, 15), NULL, NULL, 0},
		/* a pid reused later by another process: not 11's parent */
		{with_timeline(10, 1, 3000, 0, 5), NULL, NULL, 0},
		{mt_profile_new(), NULL, NULL, 0},
	};
	/* no timeline: drawn from its snapshot */
	items[3].profile->pid = 12;
	items[3].profile->start_ns = 1500;
	items[3].profile->dump_ns = 2500;
	items[3].profile->totals.in_use_bytes = 77;
	struct mt_tl_series *s;
	size_t n;
	assert_int_equal(mt_tl_series_of(items, 4, &s, &n), 0);
	assert_int_equal(n, 4);
	assert_int_equal(s[0].p->pid, 10); /* in start order */
	assert_int_equal(s[1].p->pid, 12);
	assert_int_equal(s[1].tl.n, 1);
	assert_int_equal(s[1].tl.pts[0].in_use_bytes, 77);
	assert_int_equal(s[2].p->pid, 11);
	assert_int_equal(s[2].parent, 0);
	assert_int_equal(s[3].parent, -1);
	mt_tl_series_free(s, n);
	char *buf;
	size_t len;
	FILE *f = open_memstream(&buf, &len);
	assert_int_equal(mt_render_timeline_svg(f, items, 4), 0);
	fclose(f);
	assert_non_null(strstr(buf, "<svg"));
	assert_non_null(strstr(buf, "&lt;11&gt; &amp; &quot;x&quot;")); /* escaped */
	assert_null(strstr(buf, "<11>"));
	size_t lines = 0;
	for (char *c = buf; (c = strstr(c, "<polyline")); c++)
		lines++;
	assert_int_equal(lines, 4);
	free(buf);
	/* nothing to draw */
	struct mt_report_item none = {items[3].profile, NULL, NULL, 0};
	items[3].profile->dump_ns = 0;
	f = open_memstream(&buf, &len);
	int ret = mt_render_timeline_svg(f, &none, 0);
	fclose(f);
	free(buf);
	assert_int_equal(ret, -ENODATA);
	for (int i = 0; i < 4; i++)
		mt_profile_free(items[i].profile);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(bounded_and_lossless),
		cmocka_unit_test(round_trip),
		cmocka_unit_test(series_and_svg),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
