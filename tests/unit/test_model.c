/* Unit tests: histogram buckets, the profile model, the control parser. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include <cmocka.h>

#include "memtap/ctl.h"
#include "memtap/glibc.h"
#include "memtap/leaks.h"
#include "memtap/pools.h"
#include "memtap/profile.h"

static void hist_buckets(void **state)
{
	(void)state;
	assert_int_equal(mt_hist_bucket(0), 0);
	assert_int_equal(mt_hist_bucket(1), 1);
	assert_int_equal(mt_hist_bucket(2), 2);
	assert_int_equal(mt_hist_bucket(3), 2);
	assert_int_equal(mt_hist_bucket(4), 3);
	assert_int_equal(mt_hist_bucket(8191), 13);
	assert_int_equal(mt_hist_bucket(8192), 14);
	assert_int_equal(mt_hist_bucket(12345), 14);
	assert_int_equal(mt_hist_bucket(UINT64_MAX), 64);
	/* Every value lies in [lower(b), lower(b+1)). */
	for (uint64_t v = 1; v < 100000; v = v * 3 + 1) {
		unsigned b = mt_hist_bucket(v);
		assert_true(mt_hist_lower(b) <= v);
		assert_true(b == 64 || v < mt_hist_lower(b + 1));
	}
	assert_int_equal(mt_hist_lower(0), 0);
	assert_int_equal(mt_hist_lower(1), 1);
	assert_int_equal(mt_hist_lower(14), 8192);
	assert_true(mt_hist_lower(64) == (uint64_t)1 << 63);
}

static void merge_sums_by_name(void **state)
{
	(void)state;
	struct mt_profile *a = mt_profile_new(), *b = mt_profile_new();
	struct mt_func *f = mt_profile_func(a, "malloc", MT_KIND_ALLOC);
	f->calls = 3;
	f->bytes = 30;
	f->hist[mt_hist_bucket(10)] = 3;
	f = mt_profile_func(b, "malloc", MT_KIND_ALLOC);
	f->calls = 2;
	f->bytes = 2000;
	f->failed = 1;
	f->hist[mt_hist_bucket(1000)] = 2;
	f = mt_profile_func(b, "free", MT_KIND_FREE);
	f->calls = 7;
	a->totals.allocated_bytes = 100;
	a->totals.peak_in_use_bytes = 60;
	b->totals.allocated_bytes = 50;
	b->totals.in_use_bytes = -5;
	b->totals.peak_in_use_bytes = 40;
	assert_int_equal(mt_profile_merge(a, b), 0);
	assert_int_equal(a->nfuncs, 2);
	const struct mt_func *m = mt_profile_find(a, "malloc");
	assert_non_null(m);
	assert_int_equal(m->calls, 5);
	assert_int_equal(m->bytes, 2030);
	assert_int_equal(m->failed, 1);
	assert_int_equal(m->hist[4], 3);
	assert_int_equal(m->hist[10], 2);
	assert_int_equal(mt_func_hist_total(m), 5);
	assert_int_equal(mt_profile_find(a, "free")->calls, 7);
	assert_int_equal(a->totals.allocated_bytes, 150);
	assert_int_equal(a->totals.in_use_bytes, -5);
	assert_int_equal(a->totals.peak_in_use_bytes, 100);
	/* DTrace order: ascending by calls; the array itself stays put. */
	uint32_t order[2];
	mt_profile_order(a, order);
	assert_string_equal(a->funcs[order[0]].name, "malloc");
	assert_string_equal(a->funcs[order[1]].name, "free");
	assert_string_equal(a->funcs[0].name, "malloc");
	mt_profile_free(a);
	mt_profile_free(b);
	mt_profile_free(NULL);
}

static void ctl_parse_valid(void **state)
{
	(void)state;
	struct mt_ctl_request r;
	char err[256];
	assert_int_equal(mt_ctl_parse("status\n", 7, &r, err, sizeof(err)), 0);
	assert_int_equal(r.cmd, MT_CTL_STATUS);
	assert_int_equal(mt_ctl_parse("dump", 4, &r, err, sizeof(err)), 0);
	assert_int_equal(r.cmd, MT_CTL_DUMP);
	assert_string_equal(r.arg, "");
	assert_int_equal(mt_ctl_parse("dump /tmp/a b\n", 14, &r, err, sizeof(err)), 0);
	assert_string_equal(r.arg, "/tmp/a b");
	assert_int_equal(mt_ctl_parse("activate", 8, &r, err, sizeof(err)), 0);
	assert_int_equal(r.cmd, MT_CTL_ACTIVATE);
	assert_int_equal(mt_ctl_parse("deactivate", 10, &r, err, sizeof(err)), 0);
	assert_int_equal(r.cmd, MT_CTL_DEACTIVATE);
	assert_int_equal(mt_ctl_parse("reset", 5, &r, err, sizeof(err)), 0);
	assert_int_equal(mt_ctl_parse("stats", 5, &r, err, sizeof(err)), 0);
	assert_int_equal(r.cmd, MT_CTL_STATS);
}

static void ctl_parse_rejects(void **state)
{
	(void)state;
	struct mt_ctl_request r;
	char err[256];
	assert_int_equal(mt_ctl_parse("explode", 7, &r, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "unknown command 'explode'"));
	assert_int_equal(mt_ctl_parse("status now", 10, &r, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "takes no argument"));
	assert_int_equal(mt_ctl_parse("dump ", 5, &r, err, sizeof(err)), -EINVAL);
	assert_int_equal(mt_ctl_parse("dump a\nb", 8, &r, err, sizeof(err)), -EINVAL);
	assert_int_equal(mt_ctl_parse("st\0tus", 6, &r, err, sizeof(err)), -EINVAL);
	assert_int_equal(mt_ctl_parse("", 0, &r, err, sizeof(err)), -EINVAL);
	static char big[MT_CTL_MAX_REQUEST + 10];
	memset(big, 'a', sizeof(big));
	memcpy(big, "dump /", 6);
	assert_int_equal(mt_ctl_parse(big, sizeof(big), &r, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "exceeds the limit"));
}

static void ctl_peer_rule(void **state)
{
	(void)state;
	assert_true(mt_ctl_peer_allowed(1000, 1000));
	assert_true(mt_ctl_peer_allowed(0, 1000));
	assert_false(mt_ctl_peer_allowed(1001, 1000));
	assert_false(mt_ctl_peer_allowed(1000, 0));
}

/* /proc/PID/maps lines: file-backed ones parsed whole, the rest refused. */
static void mapping_parse(void **state)
{
	(void)state;
	struct mt_mapping m;
	assert_int_equal(mt_mapping_parse("7f12a000-7f12c000 r-xp 00028000 fe:01 1234   "
					  "/usr/lib/x86_64-linux-gnu/libc.so.6\n", &m), 1);
	assert_int_equal(m.start, 0x7f12a000);
	assert_int_equal(m.end, 0x7f12c000);
	assert_int_equal(m.offset, 0x28000);
	assert_int_equal(m.prot, PROT_READ | PROT_EXEC);
	assert_string_equal(m.path, "/usr/lib/x86_64-linux-gnu/libc.so.6");
	assert_int_equal(mt_mapping_parse("55d0c000-55d0e000 rw-p 00000000 00:00 0   [heap]", &m), 0);
	assert_int_equal(mt_mapping_parse("7ffd1000-7ffd3000 rw-p 00000000 00:00 0", &m), 0);
	assert_int_equal(mt_mapping_parse("not a maps line", &m), 0);
	assert_int_equal(mt_mapping_parse("", &m), 0);
}

/* A profile that starts as a copy of another's identity (the merged
 * profile of report --merge) owns none of its arrays or sections: freeing
 * both frees each once (the ASan build of this test catches a double free). */
static void forget_leaves_sections(void **state)
{
	(void)state;
	struct mt_profile *a = mt_profile_new(), *b = mt_profile_new();
	assert_non_null(a);
	assert_non_null(b);
	assert_non_null(mt_profile_func(a, "malloc", MT_KIND_ALLOC));
	uint64_t frame = 0x1234;
	assert_non_null(mt_profile_add_site(a, &frame, 1));
	assert_non_null(mt_profile_add_mapping(a));
	a->apr = mt_apr_new();
	a->stats = calloc(1, sizeof(*a->stats));
	a->glibc = calloc(1, sizeof(*a->glibc));
	struct mt_leaks l = {0};
	a->leaks = mt_leaks_dup(&l);
	assert_non_null(a->apr);
	assert_non_null(a->stats);
	assert_non_null(a->glibc);
	assert_non_null(a->leaks);
	*b = *a;
	mt_profile_forget(b);
	assert_null(b->funcs);
	assert_int_equal(b->nsites, 0);
	assert_null(b->apr);
	assert_null(b->stats);
	assert_null(b->glibc);
	assert_null(b->leaks);
	assert_int_equal(b->timeline.n, 0);
	assert_int_equal(b->pid, a->pid);
	mt_profile_free(b);
	mt_profile_free(a);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(forget_leaves_sections), cmocka_unit_test(hist_buckets),     cmocka_unit_test(merge_sums_by_name),
		cmocka_unit_test(ctl_parse_valid),  cmocka_unit_test(ctl_parse_rejects),
		cmocka_unit_test(ctl_peer_rule),    cmocka_unit_test(mapping_parse),
	};
	return cmocka_run_group_tests_name("model", tests, NULL, NULL);
}
