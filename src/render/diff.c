/* Growth between two snapshots of one process, per call site. */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "export.h"

#define DIFF_FRAMES 8

struct keyed {
	uint64_t hash;
	uint32_t site;
};

/* Sites match by the function they called and their frames. */
static uint64_t site_hash(const struct mt_profile *p, const struct mt_site *s)
{
	uint64_t h = 0xcbf29ce484222325ULL;
	for (const char *c = mt_site_func(p, s); *c; c++)
		h = (h ^ (unsigned char)*c) * 0x100000001b3ULL;
	for (uint32_t i = 0; i < s->nframes; i++)
		h = (h ^ s->frames[i]) * 0x100000001b3ULL;
	return h ^ s->nframes;
}

static int same_site(const struct mt_profile *a, const struct mt_site *x, const struct mt_profile *b,
		     const struct mt_site *y)
{
	return x->nframes == y->nframes && !strcmp(mt_site_func(a, x), mt_site_func(b, y)) &&
	       !memcmp(x->frames, y->frames, x->nframes * sizeof(*x->frames));
}

static int keyed_cmp(const void *a, const void *b)
{
	const struct keyed *x = a, *y = b;
	if (x->hash != y->hash)
		return x->hash < y->hash ? -1 : 1;
	return x->site < y->site ? -1 : x->site > y->site;
}

static int diff_cmp(const void *a, const void *b)
{
	const struct mt_diff_site *x = a, *y = b;
	if (x->inuse_bytes != y->inuse_bytes)
		return x->inuse_bytes > y->inuse_bytes ? -1 : 1;
	if (x->alloc_bytes != y->alloc_bytes)
		return x->alloc_bytes > y->alloc_bytes ? -1 : 1;
	if (x->alloc_objects != y->alloc_objects)
		return x->alloc_objects > y->alloc_objects ? -1 : 1;
	/* Stable: sites of NEWER in their order, then those gone from it. */
	const struct mt_site *sx = x->newer ? x->newer : x->base, *sy = y->newer ? y->newer : y->base;
	if (!x->newer != !y->newer)
		return x->newer ? -1 : 1;
	return sx < sy ? -1 : sx > sy;
}

static void set_delta(struct mt_diff_site *d, const struct mt_diff *diff)
{
	struct mt_site_est b = {0}, n = {0};
	if (d->base)
		mt_site_estimate(diff->base, d->base, &b);
	if (d->newer)
		mt_site_estimate(diff->newer, d->newer, &n);
	d->alloc_objects = (int64_t)n.alloc_objects - (int64_t)b.alloc_objects;
	d->alloc_bytes = (int64_t)n.alloc_bytes - (int64_t)b.alloc_bytes;
	d->inuse_objects = (int64_t)n.inuse_objects - (int64_t)b.inuse_objects;
	d->inuse_bytes = (int64_t)n.inuse_bytes - (int64_t)b.inuse_bytes;
}

int mt_diff_new(const struct mt_profile *base, const struct mt_profile *newer, struct mt_diff **out)
{
	struct mt_diff *d = calloc(1, sizeof(*d));
	struct keyed *bk = calloc(base->nsites ? base->nsites : 1, sizeof(*bk));
	char *matched = calloc(base->nsites ? base->nsites : 1, 1);
	if (d)
		d->sites = calloc((size_t)base->nsites + newer->nsites + 1, sizeof(*d->sites));
	if (!d || !bk || !matched || !d->sites) {
		free(bk);
		free(matched);
		mt_diff_free(d);
		return -ENOMEM;
	}
	d->base = base;
	d->newer = newer;
	for (uint32_t i = 0; i < base->nsites; i++)
		bk[i] = (struct keyed){site_hash(base, &base->sites[i]), i};
	qsort(bk, base->nsites, sizeof(*bk), keyed_cmp);
	for (uint32_t i = 0; i < newer->nsites; i++) {
		const struct mt_site *s = &newer->sites[i];
		struct mt_diff_site *ds = &d->sites[d->n];
		*ds = (struct mt_diff_site){NULL, s, 0, 0, 0, 0};
		uint64_t h = site_hash(newer, s);
		size_t lo = 0, hi = base->nsites;
		while (lo < hi) {
			size_t mid = (lo + hi) / 2;
			if (bk[mid].hash < h)
				lo = mid + 1;
			else
				hi = mid;
		}
		for (; lo < base->nsites && bk[lo].hash == h; lo++) {
			if (!matched[bk[lo].site] && same_site(base, &base->sites[bk[lo].site], newer, s)) {
				matched[bk[lo].site] = 1;
				ds->base = &base->sites[bk[lo].site];
				break;
			}
		}
		set_delta(ds, d);
		if (ds->alloc_objects || ds->alloc_bytes || ds->inuse_objects || ds->inuse_bytes)
			d->n++;
	}
	for (uint32_t i = 0; i < base->nsites; i++) {
		if (matched[i])
			continue;
		struct mt_diff_site *ds = &d->sites[d->n];
		*ds = (struct mt_diff_site){&base->sites[i], NULL, 0, 0, 0, 0};
		set_delta(ds, d);
		if (ds->alloc_objects || ds->alloc_bytes || ds->inuse_objects || ds->inuse_bytes)
			d->n++;
	}
	if (d->n > 1)
		qsort(d->sites, d->n, sizeof(*d->sites), diff_cmp);
	free(bk);
	free(matched);
	*out = d;
	return 0;
}

void mt_diff_free(struct mt_diff *d)
{
	if (!d)
		return;
	free(d->sites);
	free(d);
}

static void when(const struct mt_profile *p, char *buf, size_t len)
{
	time_t t = (time_t)(p->dump_ns / 1000000000u);
	struct tm tm;
	buf[0] = '\0';
	if (localtime_r(&t, &tm))
		strftime(buf, len, "%Y-%m-%d %H:%M:%S", &tm);
}

int mt_render_diff_text(FILE *out, const struct mt_diff *d, unsigned ntop)
{
	const struct mt_profile *b = d->base, *n = d->newer;
	struct mt_symbolizer *sb = mt_symbolizer_new(b), *sn = mt_symbolizer_new(n);
	if (!sb || !sn) {
		mt_symbolizer_free(sb);
		mt_symbolizer_free(sn);
		return -ENOMEM;
	}
	char tb[64], tn[64];
	when(b, tb, sizeof(tb));
	when(n, tn, sizeof(tn));
	fprintf(out, "memtap diff: pid %u %s\n", n->pid, n->command);
	fprintf(out, "  base:  snapshot #%u at %s (%s)\n", b->seq, tb, mt_reason_name(b->reason));
	double gap = ((double)n->dump_ns - (double)b->dump_ns) / 1e9;
	if (gap > -1 && gap < 1)
		fprintf(out, "  newer: snapshot #%u at %s (%s), %.0f ms later\n", n->seq, tn,
			mt_reason_name(n->reason), gap * 1e3);
	else
		fprintf(out, "  newer: snapshot #%u at %s (%s), %.1f s later\n", n->seq, tn,
			mt_reason_name(n->reason), gap);
	fprintf(out, "  in use: %" PRId64 " -> %" PRId64 " bytes (%+" PRId64 ")\n", b->totals.in_use_bytes,
		n->totals.in_use_bytes, n->totals.in_use_bytes - b->totals.in_use_bytes);
	fprintf(out, "\nGrowth per call site, largest first (newer minus base%s):\n",
		b->sample_period > 1 || n->sample_period > 1 ? ", estimated from samples" : "");
	size_t shown = 0;
	for (; shown < d->n && shown < ntop; shown++) {
		const struct mt_diff_site *s = &d->sites[shown];
		const struct mt_site *site = s->newer ? s->newer : s->base;
		const struct mt_profile *p = s->newer ? n : b;
#define PL1(n) ((n) == 1 || (n) == -1 ? "" : "s")
		fprintf(out, "  #%zu  %+" PRId64 " requested byte%s in use, %+" PRId64 " block%s (allocated %+" PRId64
			" byte%s in %+" PRId64 " call%s), from %s%s\n", shown + 1, s->inuse_bytes, PL1(s->inuse_bytes),
			s->inuse_objects, PL1(s->inuse_objects), s->alloc_bytes, PL1(s->alloc_bytes), s->alloc_objects,
			PL1(s->alloc_objects), mt_site_func(p, site), !s->base ? " [new site]" : !s->newer ? " [gone]" : "");
		mt_render_stack(out, s->newer ? sn : sb, site, "        ", DIFF_FRAMES);
	}
	if (!d->n)
		fprintf(out, "  (no call site changed)\n");
	else if (shown < d->n)
		fprintf(out, "  ... %zu more call sites changed (--top=N shows more)\n", d->n - shown);
	mt_symbolizer_free(sb);
	mt_symbolizer_free(sn);
	return fflush(out) || ferror(out) ? -EIO : 0;
}

int mt_render_diff_pprof(FILE *out, const struct mt_diff *d)
{
	struct mt_pprof_sample *s = calloc(d->n ? d->n : 1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	for (size_t i = 0; i < d->n; i++) {
		const struct mt_diff_site *ds = &d->sites[i];
		s[i] = (struct mt_pprof_sample){ds->newer ? d->newer : d->base, ds->newer ? ds->newer : ds->base,
			{ds->alloc_objects, ds->alloc_bytes, ds->inuse_objects, ds->inuse_bytes}};
	}
	char comment[MT_TEXT_MAX + 160];
	snprintf(comment, sizeof(comment),
		 "memtap diff: pid %u: %s: snapshot #%u minus snapshot #%u (negative values: shrank)",
		 d->newer->pid, d->newer->command, d->newer->seq, d->base->seq);
	const struct mt_profile *profs[2] = {d->newer, d->base};
	int64_t duration = d->newer->dump_ns > d->base->dump_ns
				   ? (int64_t)(d->newer->dump_ns - d->base->dump_ns) : 0;
	int err = mt_pprof_write(out, d->newer, profs, 2, s, d->n, duration, comment);
	free(s);
	return err;
}
