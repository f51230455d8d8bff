/* Unit tests: the Prometheus exposition writer (memtap/prom.h) in both
 * formats: label and help escaping, histogram buckets against _count and
 * _sum, OpenMetrics' family names, units and # EOF, and the Accept header's
 * choice of format. */
#include <inttypes.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "memtap/prom.h"

static char *render(enum mt_prom_format fmt, void (*body)(struct mt_prom *w))
{
	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);
	struct mt_prom w;
	mt_prom_begin(&w, f, fmt);
	body(&w);
	assert_int_equal(mt_prom_end(&w), 0);
	fclose(f);
	return buf;
}

static void escaping_body(struct mt_prom *w)
{
	struct mt_prom_label l[2] = {{"command", "a\\b\"c\nd\xc3\xa9"}, {"function", "operator new[]"}};
	mt_prom_family(w, "memtap_allocations_total", MT_PROM_COUNTER, NULL, "Calls \"quoted\" a\\b\nc.");
	mt_prom_u64(w, l, 2, 18446744073709551615ull);
}

static void label_escaping(void **state)
{
	(void)state;
	char *t = render(MT_PROM_TEXT, escaping_body);
	assert_string_equal(t, "# HELP memtap_allocations_total Calls \"quoted\" a\\\\b\\nc.\n"
			       "# TYPE memtap_allocations_total counter\n"
			       "memtap_allocations_total{command=\"a\\\\b\\\"c\\nd??\",function=\"operator new[]\"} "
			       "18446744073709551615\n");
	free(t);
	char *o = render(MT_PROM_OPENMETRICS, escaping_body);
	assert_string_equal(o, "# TYPE memtap_allocations counter\n"
			       "# HELP memtap_allocations Calls \\\"quoted\\\" a\\\\b\\nc.\n"
			       "memtap_allocations_total{command=\"a\\\\b\\\"c\\nd??\",function=\"operator new[]\"} "
			       "18446744073709551615\n"
			       "# EOF\n");
	free(o);
}

static void units_body(struct mt_prom *w)
{
	struct mt_prom_label v = {"version", "0.1"};
	mt_prom_family(w, "memtap_info", MT_PROM_INFO, NULL, "Version.");
	mt_prom_u64(w, &v, 1, 1);
	mt_prom_family(w, "memtap_in_use_bytes", MT_PROM_GAUGE, "bytes", "In use.");
	mt_prom_i64(w, NULL, 0, -42);
	mt_prom_family(w, "memtap_freed_bytes_total", MT_PROM_COUNTER, "bytes", "Freed.");
	mt_prom_u64(w, NULL, 0, 7);
}

static void families_and_units(void **state)
{
	(void)state;
	char *t = render(MT_PROM_TEXT, units_body);
	assert_string_equal(t, "# HELP memtap_info Version.\n# TYPE memtap_info gauge\nmemtap_info{version=\"0.1\"} 1\n"
			       "# HELP memtap_in_use_bytes In use.\n# TYPE memtap_in_use_bytes gauge\n"
			       "memtap_in_use_bytes -42\n"
			       "# HELP memtap_freed_bytes_total Freed.\n# TYPE memtap_freed_bytes_total counter\n"
			       "memtap_freed_bytes_total 7\n");
	free(t);
	char *o = render(MT_PROM_OPENMETRICS, units_body);
	assert_string_equal(o, "# TYPE memtap info\n# HELP memtap Version.\nmemtap_info{version=\"0.1\"} 1\n"
			       "# TYPE memtap_in_use_bytes gauge\n# UNIT memtap_in_use_bytes bytes\n"
			       "# HELP memtap_in_use_bytes In use.\nmemtap_in_use_bytes -42\n"
			       "# TYPE memtap_freed_bytes counter\n# UNIT memtap_freed_bytes bytes\n"
			       "# HELP memtap_freed_bytes Freed.\nmemtap_freed_bytes_total 7\n# EOF\n");
	free(o);
}

static uint64_t hist[MT_HIST_BUCKETS];

static void hist_body(struct mt_prom *w)
{
	struct mt_prom_label l = {"function", "malloc"};
	mt_prom_family(w, "memtap_allocation_size_bytes", MT_PROM_HISTOGRAM, "bytes", "Sizes.");
	mt_prom_histogram(w, &l, 1, hist, 123456);
}

/* Buckets are cumulative, bounds increasing and exact (2^k - 1), +Inf equals
 * _count, which is every value, also those above the last finite bound. */
static void histogram_consistent(void **state)
{
	(void)state;
	memset(hist, 0, sizeof(hist));
	hist[0] = 2;  /* size 0 */
	hist[1] = 3;  /* size 1 */
	hist[4] = 5;  /* sizes 8..15 */
	hist[13] = 7; /* 4096..8191 */
	hist[40] = 1; /* about 2^39: only in +Inf */
	for (int fmt = 0; fmt < 2; fmt++) {
		char *t = render((enum mt_prom_format)fmt, hist_body), *line = t, *next;
		double prev_le = -1;
		uint64_t prev = 0, inf = UINT64_MAX, count = UINT64_MAX, sum = 0;
		unsigned nb = 0;
		for (; *line; line = next) {
			next = strchr(line, '\n');
			assert_non_null(next);
			*next++ = '\0';
			char le[32];
			unsigned long long v;
			if (sscanf(line, "memtap_allocation_size_bytes_bucket{function=\"malloc\",le=\"%31[^\"]\"} %llu", le,
				   &v) == 2) {
				assert_true(v >= prev);
				prev = v;
				if (!strcmp(le, "+Inf")) {
					inf = v;
					continue;
				}
				double b = strtod(le, NULL);
				assert_true(b > prev_le);
				prev_le = b;
				if (nb == 2)
					assert_string_equal(le, "3");
				if (nb == 4) {
					assert_string_equal(le, "15");
					assert_int_equal(v, 10); /* 2 + 3 + 5 */
				}
				nb++;
			} else if (sscanf(line, "memtap_allocation_size_bytes_count{function=\"malloc\"} %llu", &v) == 1) {
				count = v;
			} else if (sscanf(line, "memtap_allocation_size_bytes_sum{function=\"malloc\"} %llu", &v) == 1) {
				sum = v;
			} else {
				assert_true(line[0] == '#');
			}
		}
		assert_int_equal(nb, MT_PROM_BUCKETS);
		assert_int_equal(prev_le, (double)((1ull << (MT_PROM_BUCKETS - 1)) - 1));
		assert_int_equal(inf, 18);
		assert_int_equal(count, 18);
		assert_int_equal(sum, 123456);
		assert_int_equal(prev, 18);
		free(t);
	}
}

static void accept_header(void **state)
{
	(void)state;
	/* What Prometheus 2.42 sends. */
	assert_int_equal(mt_prom_wants_openmetrics("application/openmetrics-text;version=1.0.0,application/"
						   "openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;"
						   "q=0.5,*/*;q=0.1"),
			 MT_PROM_OPENMETRICS);
	assert_int_equal(mt_prom_wants_openmetrics("text/plain;version=0.0.4;q=1,*/*;q=0.1"), MT_PROM_TEXT);
	assert_int_equal(mt_prom_wants_openmetrics("*/*"), MT_PROM_TEXT);
	assert_int_equal(mt_prom_wants_openmetrics(""), MT_PROM_TEXT);
	assert_int_equal(mt_prom_wants_openmetrics("application/openmetrics-text; q=0"), MT_PROM_TEXT);
	assert_int_equal(mt_prom_wants_openmetrics("text/plain;q=0.9, Application/OpenMetrics-Text ;q=0.5"),
			 MT_PROM_TEXT);
	assert_int_equal(mt_prom_wants_openmetrics("text/plain;q=0.4, application/openmetrics-text"),
			 MT_PROM_OPENMETRICS);
	assert_string_equal(mt_prom_content_type(MT_PROM_TEXT), "text/plain; version=0.0.4; charset=utf-8");
	assert_string_equal(mt_prom_content_type(MT_PROM_OPENMETRICS),
			    "application/openmetrics-text; version=1.0.0; charset=utf-8");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(label_escaping),
		cmocka_unit_test(families_and_units),
		cmocka_unit_test(histogram_consistent),
		cmocka_unit_test(accept_header),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
