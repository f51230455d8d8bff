/* Unit tests: the DTrace-layout and JSON renderers, against golden files
 * (tests/golden/seed000_*.txt are real DTrace output from seeds/000). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "memtap/render.h"

static char *render_to_string(void (*fn)(FILE *, void *), void *arg)
{
	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);
	fn(f, arg);
	fclose(f);
	return buf;
}

static char *slurp(const char *path)
{
	FILE *f = fopen(path, "r");
	assert_non_null(f);
	char *buf = calloc(1, 65536);
	size_t n = fread(buf, 1, 65535, f);
	buf[n] = '\0';
	fclose(f);
	return buf;
}

/* Compares line by line with trailing blanks removed (the seed was copied
 * from a web page, which trimmed some of them). */
static void assert_same_lines(const char *got, const char *want)
{
	while (*got || *want) {
		size_t gl = strcspn(got, "\n"), wl = strcspn(want, "\n");
		size_t g = gl, w = wl;
		while (g && got[g - 1] == ' ')
			g--;
		while (w && want[w - 1] == ' ')
			w--;
		if (g != w || memcmp(got, want, g) != 0)
			fail_msg("got  '%.*s'\nwant '%.*s'", (int)g, got, (int)w, want);
		got += gl + (got[gl] == '\n');
		want += wl + (want[wl] == '\n');
	}
}

struct qarg {
	const char *title;
	uint64_t hist[MT_HIST_BUCKETS];
};

static void quantize_fn(FILE *f, void *arg)
{
	struct qarg *q = arg;
	mt_render_quantize(f, q->title, q->hist);
}

static void quantize_matches_dtrace_malloc(void **state)
{
	(void)state;
	struct qarg q = {.title = "malloc"};
	q.hist[mt_hist_bucket(64)] = 20;
	q.hist[mt_hist_bucket(8192)] = 2;
	char *got = render_to_string(quantize_fn, &q);
	char *want = slurp("tests/golden/seed000_malloc.txt");
	assert_same_lines(got, want);
	/* Exact widths, trailing blanks included: %16s |%s%s %-9d */
	assert_non_null(strstr(got, "\n              64 |@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@     20       \n"));
	assert_non_null(strstr(got, "\n           value  ------------- Distribution ------------- count    \n"));
	free(got);
	free(want);
}

static void quantize_matches_dtrace_apr_palloc(void **state)
{
	(void)state;
	static const uint64_t counts[][2] = {{1, 1},    {2, 68},  {4, 26},  {8, 142},   {16, 219}, {32, 72},
					     {64, 33},  {128, 10}, {256, 54}, {512, 3}, {2048, 1}, {4096, 1}};
	struct qarg q = {.title = "apr_palloc"};
	for (size_t i = 0; i < sizeof(counts) / sizeof(counts[0]); i++)
		q.hist[mt_hist_bucket(counts[i][0])] = counts[i][1];
	char *got = render_to_string(quantize_fn, &q);
	char *want = slurp("tests/golden/seed000_apr_palloc.txt");
	assert_same_lines(got, want);
	free(got);
	free(want);
}

static void quantize_bucket_zero_and_empty(void **state)
{
	(void)state;
	struct qarg q = {.title = "free"};
	char *got = render_to_string(quantize_fn, &q);
	assert_string_equal(got, ""); /* nothing for a function without calls */
	free(got);
	q.hist[0] = 4; /* free(NULL): no bucket below 0 */
	got = render_to_string(quantize_fn, &q);
	assert_non_null(strstr(got, "count    \n               0 |@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@ 4        \n"
				    "               1 |                                         0        \n\n"));
	free(got);
}

/* Counts that add up past 2^64 (a damaged or hostile file: the live file
 * fuzzer found it) draw bars of at most 40, never past the buffer. */
static void quantize_counts_past_2_64(void **state)
{
	(void)state;
	struct qarg q = {.title = "malloc"};
	q.hist[3] = UINT64_MAX;
	q.hist[5] = 2; /* the sum wraps to 1 in 64 bits */
	char *got = render_to_string(quantize_fn, &q);
	assert_non_null(strstr(got, "               4 |@@@@@@@@@@@@@@@@@@@@"));
	assert_null(strstr(got, "@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@")); /* 41 */
	free(got);
}

static void count_row_layout(void **state)
{
	(void)state;
	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);
	mt_render_count_row(f, "malloc", 22);
	fclose(f);
	assert_string_equal(buf, "  malloc                                                           22\n");
	assert_int_equal(strlen(buf), 2 + 50 + 1 + 16 + 1);
	free(buf);
}

static struct mt_profile *json_profile(void)
{
	struct mt_profile *p = mt_profile_new();
	p->pid = 10;
	p->ppid = 1;
	strcpy(p->command, "say \"hi\"\t\\");
	struct mt_func *f = mt_profile_func(p, "malloc", MT_KIND_ALLOC);
	f->calls = 3;
	f->bytes = 36;
	f->hist[mt_hist_bucket(0)] = 1;
	f->hist[mt_hist_bucket(12345)] = 2;
	p->totals = (struct mt_totals){100, 40, 60, 80};
	return p;
}

static void json_fn(FILE *f, void *arg)
{
	struct mt_report_item it = {arg, "/tmp/x.10.0.mtp", NULL, 0};
	mt_render_json(f, &it, 1);
}

static void json_shape(void **state)
{
	(void)state;
	struct mt_profile *p = json_profile();
	char *got = render_to_string(json_fn, p);
	assert_non_null(strstr(got, "{\"processes\":[{\"pid\":10,\"ppid\":1,"));
	assert_non_null(strstr(got, "\"command\":\"say \\\"hi\\\"\\t\\\\\""));
	assert_non_null(strstr(got, "\"functions\":{\"malloc\":{\"kind\":\"alloc\",\"calls\":3,\"bytes\":36,"
				    "\"failed\":0,\"hist\":[[0,1],[8192,2]]}}"));
	assert_non_null(strstr(got, "\"totals\":{\"allocated_bytes\":100,\"freed_bytes\":40,"
				    "\"in_use_bytes\":60,\"peak_in_use_bytes\":80},\"analyses\":{\"run_time_ns\":"));
	/* No call sites: no temporaries to tell. */
	assert_null(strstr(got, "temporary"));
	assert_non_null(strstr(got, "\"allocations\":3,"));
	assert_non_null(strstr(got, "\"file\":\"/tmp/x.10.0.mtp\""));
	free(got);
	mt_profile_free(p);
}

static void text_report_sections(void **state)
{
	(void)state;
	struct mt_profile *p = json_profile();
	struct mt_func *f = mt_profile_func(p, "free", MT_KIND_FREE);
	f->calls = 1;
	f->hist[5] = 1;
	char *buf = NULL;
	size_t len = 0;
	FILE *out = open_memstream(&buf, &len);
	struct mt_report_item it = {p, NULL, NULL, 0};
	assert_int_equal(mt_render_text(out, &it, 1), 0);
	fclose(out);
	/* count() order is ascending: free (1) before malloc (3). */
	const char *calls = strstr(buf, "Calls per function:\n");
	assert_non_null(calls);
	assert_true(strstr(calls, "  free ") < strstr(calls, "  malloc "));
	char row[128];
	snprintf(row, sizeof(row), "  %-50s %16d\n", "in use", 60);
	assert_non_null(strstr(buf, row));
	snprintf(row, sizeof(row), "  %-50s %16d\n", "peak in use", 80);
	assert_non_null(strstr(buf, row));
	/* 2 of 3 calls: round(2 * 40 / 3) = 27 */
	assert_non_null(strstr(buf, "            8192 |@@@@@@@@@@@@@@@@@@@@@@@@@@@              2        \n"));
	free(buf);
	mt_profile_free(p);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(quantize_matches_dtrace_malloc),
		cmocka_unit_test(quantize_matches_dtrace_apr_palloc),
		cmocka_unit_test(quantize_bucket_zero_and_empty),
		cmocka_unit_test(quantize_counts_past_2_64),
		cmocka_unit_test(count_row_layout),
		cmocka_unit_test(json_shape),
		cmocka_unit_test(text_report_sections),
	};
	return cmocka_run_group_tests_name("render", tests, NULL, NULL);
}
