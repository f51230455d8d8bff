/* The text report's call-site tables (not `memtap top`, whose live view is
 * top_view.c): top sites by bytes in use, by bytes allocated and by calls,
 * each with its symbolized stack. */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "export.h"

#define TABLE_FRAMES 8

enum table_key { TABLE_INUSE, TABLE_ALLOC, TABLE_CALLS };

struct table_ctx {
	const struct mt_site_est *est;
	enum table_key key;
};

static uint64_t table_value(const struct mt_site_est *e, enum table_key key)
{
	return key == TABLE_INUSE ? e->inuse_bytes : key == TABLE_ALLOC ? e->alloc_bytes : e->alloc_objects;
}

/* Largest first; ties by site index, so the output is stable. */
static int table_cmp(const void *a, const void *b, void *arg)
{
	const struct table_ctx *c = arg;
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
	uint64_t vx = table_value(&c->est[x], c->key), vy = table_value(&c->est[y], c->key);
	if (vx != vy)
		return vx > vy ? -1 : 1;
	return x < y ? -1 : x > y;
}

static void sites_table(FILE *out, const struct mt_profile *p, struct mt_symbolizer *sym,
		      const struct mt_site_est *est, uint32_t *order, enum table_key key, unsigned ntop)
{
	static const char *const titles[] = {"bytes in use", "bytes allocated", "calls"};
	struct table_ctx c = {est, key};
	uint64_t total = 0;
	for (uint32_t i = 0; i < p->nsites; i++) {
		order[i] = i;
		total += table_value(&est[i], key);
	}
	qsort_r(order, p->nsites, sizeof(*order), table_cmp, &c);
	fprintf(out, "\nTop call sites by %s:\n", titles[key]);
	unsigned shown = 0;
	for (uint32_t i = 0; i < p->nsites && shown < ntop; i++) {
		const struct mt_site *s = &p->sites[order[i]];
		const struct mt_site_est *e = &est[order[i]];
		uint64_t v = table_value(e, key);
		if (!v)
			break;
		double pct = 100.0 * (double)v / (double)total;
		shown++;
		switch (key) {
		case TABLE_INUSE:
			fprintf(out, "  #%u  %" PRIu64 " bytes in use (%.1f%%) in %" PRIu64 " blocks, from %s\n",
				shown, v, pct, e->inuse_objects, mt_site_func(p, s));
			break;
		case TABLE_ALLOC:
			fprintf(out, "  #%u  %" PRIu64 " bytes allocated (%.1f%%) in %" PRIu64 " calls, from %s\n",
				shown, v, pct, e->alloc_objects, mt_site_func(p, s));
			break;
		case TABLE_CALLS:
			fprintf(out, "  #%u  %" PRIu64 " calls (%.1f%%) allocating %" PRIu64 " bytes, to %s\n",
				shown, v, pct, e->alloc_bytes, mt_site_func(p, s));
			break;
		}
		mt_render_stack(out, sym, s, "        ", TABLE_FRAMES);
	}
	if (!shown)
		fprintf(out, "  (none)\n");
}

int mt_render_sites_table(FILE *out, const struct mt_profile *p, unsigned ntop)
{
	if (!p->nsites)
		return 0;
	struct mt_site_est *est = calloc(p->nsites, sizeof(*est));
	uint32_t *order = calloc(p->nsites, sizeof(*order));
	struct mt_symbolizer *sym = mt_symbolizer_new(p);
	int err = -ENOMEM;
	if (!est || !order || !sym)
		goto out;
	for (uint32_t i = 0; i < p->nsites; i++)
		mt_site_estimate(p, &p->sites[i], &est[i]);
	if (p->sample_period > 1)
		fprintf(out, "\nCall sites: %" PRIu32 " stacks, sampled once per %" PRIu64
			" bytes allocated on average (counts below are estimates)\n", p->nsites,
			p->sample_period);
	else if (p->flags & MT_PROFILE_FP_STACKS)
		fprintf(out, "\nCall sites: %" PRIu32 " stacks, every allocation call recorded; frame-pointer "
			"stacks from the kernel (eBPF): a caller built without frame pointers cuts a stack "
			"short or garbles it above that caller; nothing is in use (frees are not matched)\n",
			p->nsites);
	else
		fprintf(out, "\nCall sites: %" PRIu32 " stacks, every allocation recorded\n", p->nsites);
	if (p->unknown_frees)
		fprintf(out, "  %" PRIu64 " frees of blocks allocated before recording began (before an attach or "
			"activate): counted, kept out of the sites and of in-use\n", p->unknown_frees);
	sites_table(out, p, sym, est, order, TABLE_INUSE, ntop);
	sites_table(out, p, sym, est, order, TABLE_ALLOC, ntop);
	sites_table(out, p, sym, est, order, TABLE_CALLS, ntop);
	err = ferror(out) ? -EIO : 0;
out:
	mt_symbolizer_free(sym);
	free(order);
	free(est);
	return err;
}
