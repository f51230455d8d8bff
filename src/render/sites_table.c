/* The text report's call-site tables (not `memtap top`, whose live view is
 * top_view.c): top sites by bytes in use, by bytes allocated, by calls, at
 * the peak and by temporary allocations, each with its symbolized stack. */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "export.h"

#define TOP_FRAMES 8
#define PL(n) ((n) == 1 ? "" : "s")

enum top_key { TOP_INUSE = MT_TABLE_INUSE, TOP_ALLOC = MT_TABLE_ALLOC, TOP_CALLS = MT_TABLE_CALLS,
	       TOP_PEAK = MT_TABLE_PEAK, TOP_TEMP = MT_TABLE_TEMP };

struct top_ctx {
	const struct mt_site_est *est;
	enum top_key key;
};

static uint64_t top_value(const struct mt_site_est *e, enum top_key key)
{
	switch (key) {
	case TOP_INUSE: return e->inuse_bytes;
	case TOP_ALLOC: return e->alloc_bytes;
	case TOP_CALLS: return e->alloc_objects;
	case TOP_PEAK: return e->peak_bytes;
	case TOP_TEMP: return e->temp_objects;
	}
	return 0;
}

/* Largest first; ties by site index, so the output is stable. */
static int top_cmp(const void *a, const void *b, void *arg)
{
	const struct top_ctx *c = arg;
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
	uint64_t vx = top_value(&c->est[x], c->key), vy = top_value(&c->est[y], c->key);
	if (vx != vy)
		return vx > vy ? -1 : 1;
	return x < y ? -1 : x > y;
}

static void top_table(FILE *out, const struct mt_profile *p, struct mt_symbolizer *sym,
		      const struct mt_site_est *est, uint32_t *order, enum top_key key, unsigned ntop,
		      unsigned nframes)
{
	static const char *const titles[] = {"bytes in use", "bytes allocated", "calls",
					     "bytes in use at the peak", "temporary allocations"};
	struct top_ctx c = {est, key};
	uint64_t total = 0;
	for (uint32_t i = 0; i < p->nsites; i++) {
		order[i] = i;
		total += top_value(&est[i], key);
	}
	qsort_r(order, p->nsites, sizeof(*order), top_cmp, &c);
	fprintf(out, "\nTop call sites by %s:\n", titles[key]);
	unsigned shown = 0;
	for (uint32_t i = 0; i < p->nsites && shown < ntop; i++) {
		const struct mt_site *s = &p->sites[order[i]];
		const struct mt_site_est *e = &est[order[i]];
		uint64_t v = top_value(e, key);
		if (!v)
			break;
		double pct = 100.0 * (double)v / (double)total;
		shown++;
		/* Sites count the bytes asked for (the totals, usable bytes). */
		switch (key) {
		case TOP_INUSE:
			fprintf(out, "  #%u  %" PRIu64 " requested byte%s in use (%.1f%%) in %" PRIu64 " block%s, from %s\n",
				shown, v, PL(v), pct, e->inuse_objects, PL(e->inuse_objects), mt_site_func(p, s));
			break;
		case TOP_ALLOC:
			fprintf(out, "  #%u  %" PRIu64 " requested byte%s allocated (%.1f%%) in %" PRIu64 " call%s, from %s\n",
				shown, v, PL(v), pct, e->alloc_objects, PL(e->alloc_objects), mt_site_func(p, s));
			break;
		case TOP_CALLS:
			fprintf(out, "  #%u  %" PRIu64 " call%s (%.1f%%) allocating %" PRIu64 " requested byte%s, to %s\n",
				shown, v, PL(v), pct, e->alloc_bytes, PL(e->alloc_bytes), mt_site_func(p, s));
			break;
		case TOP_PEAK:
			fprintf(out, "  #%u  %" PRIu64 " requested byte%s (%.1f%%) in %" PRIu64 " block%s at the peak, from %s\n",
				shown, v, PL(v), pct, e->peak_objects, PL(e->peak_objects), mt_site_func(p, s));
			break;
		case TOP_TEMP:
			fprintf(out, "  #%u  %" PRIu64 " temporary allocation%s (%.1f%% of its %" PRIu64 " call%s), %" PRIu64
				" requested byte%s, from %s\n", shown, v, PL(v),
				e->alloc_objects ? 100.0 * (double)v / (double)e->alloc_objects : 0.0, e->alloc_objects,
				PL(e->alloc_objects), e->temp_bytes, PL(e->temp_bytes), mt_site_func(p, s));
			break;
		}
		mt_render_stack(out, sym, s, "        ", nframes);
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
		fprintf(out, "\nCall sites: %" PRIu32 " stack%s, sampled once per %" PRIu64
			" bytes allocated on average (counts below are estimates)\n", p->nsites, PL(p->nsites),
			p->sample_period);
	else if (p->flags & MT_PROFILE_FP_STACKS)
		fprintf(out, "\nCall sites: %" PRIu32 " stacks, every allocation call recorded; frame-pointer "
			"stacks from the kernel (eBPF): a caller built without frame pointers cuts a stack "
			"short or garbles it above that caller; nothing is in use (frees are not matched)\n",
			p->nsites);
	else
		fprintf(out, "\nCall sites: %" PRIu32 " stack%s, every allocation recorded\n", p->nsites, PL(p->nsites));
	if (p->unknown_frees)
		fprintf(out, "  %" PRIu64 " frees of blocks allocated before recording began (before an attach or "
			"activate): counted, kept out of the sites and of in-use\n", p->unknown_frees);
	top_table(out, p, sym, est, order, TOP_INUSE, ntop, TOP_FRAMES);
	top_table(out, p, sym, est, order, TOP_ALLOC, ntop, TOP_FRAMES);
	top_table(out, p, sym, est, order, TOP_CALLS, ntop, TOP_FRAMES);
	/* analyses: eBPF's frame-pointer sites have no frees, so neither a
	 * peak nor temporaries. */
	if (!(p->flags & MT_PROFILE_FP_STACKS)) {
		top_table(out, p, sym, est, order, TOP_PEAK, ntop, TOP_FRAMES);
		uint64_t temp = 0;
		for (uint32_t i = 0; i < p->nsites; i++)
			temp += est[i].temp_objects;
		if (temp)
			top_table(out, p, sym, est, order, TOP_TEMP, ntop, TOP_FRAMES);
	}
	err = ferror(out) ? -EIO : 0;
out:
	mt_symbolizer_free(sym);
	free(order);
	free(est);
	return err;
}

int mt_render_sites_table_by(FILE *out, const struct mt_profile *p, enum mt_table_by by, unsigned ntop, unsigned nframes)
{
	if (!p->nsites)
		return 0;
	struct mt_site_est *est = calloc(p->nsites, sizeof(*est));
	uint32_t *order = calloc(p->nsites, sizeof(*order));
	struct mt_symbolizer *sym = mt_symbolizer_new(p);
	int err = -ENOMEM;
	if (est && order && sym) {
		for (uint32_t i = 0; i < p->nsites; i++)
			mt_site_estimate(p, &p->sites[i], &est[i]);
		top_table(out, p, sym, est, order, (enum top_key)by, ntop, nframes);
		err = ferror(out) ? -EIO : 0;
	}
	mt_symbolizer_free(sym);
	free(order);
	free(est);
	return err;
}
