/*
 * The single-file HTML report (include/memtap/render.h): the profiles'
 * figures as one JSON object inside the page, and the page itself
 * (src/render/report.html: markup, CSS and a hand-written script, turned
 * into a C string at build time) drawing every section from it in the
 * browser.  Nothing is loaded from anywhere: the file works offline.
 *
 * Size: the figures of each process (functions, histograms, the timeline's
 * points, the top pools) are small; call sites dominate.  Frame names are
 * written once (a string table) and each site as its numbers and the
 * indices of its frames, so 10,000 sites of 20 frames make about 1.5 MB.
 * Past MT_HTML_SITES sites (by bytes allocated) the rest are summed into
 * one "(other sites)" entry per process.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "export.h"
#include "report_html.h"

#define MT_HTML_SITES 20000
#define MT_HTML_POOLS 50

static void js_str(FILE *out, const char *s)
{
	fputc('"', out);
	for (const unsigned char *c = (const unsigned char *)(s ? s : ""); *c; c++) {
		switch (*c) {
		case '"': fputs("\\\"", out); break;
		case '\\': fputs("\\\\", out); break;
		case '\n': fputs("\\n", out); break;
		case '\t': fputs("\\t", out); break;
		/* "</script>" must not end the data early; nor "<!--" start a comment. */
		case '<': fputs("\\u003c", out); break;
		case '>': fputs("\\u003e", out); break;
		case '&': fputs("\\u0026", out); break;
		default:
			if (*c < 0x20 || *c == 0x7f)
				fprintf(out, "\\u%04x", *c);
			else
				fputc(*c, out);
		}
	}
	fputc('"', out);
}

/* Frame names, each once. */
struct names {
	char **v;
	size_t n, cap;
	/* open addressing over V's indices + 1 */
	uint32_t *h;
	size_t hcap;
};

static uint64_t hash(const char *s)
{
	uint64_t h = 1469598103934665603ull;
	while (*s)
		h = (h ^ (unsigned char)*s++) * 1099511628211ull;
	return h;
}

static long name_id(struct names *t, const char *s)
{
	if (t->n * 2 >= t->hcap) {
		size_t cap = t->hcap ? t->hcap * 2 : 1024;
		uint32_t *h = calloc(cap, sizeof(*h));
		if (!h)
			return -ENOMEM;
		for (size_t i = 0; i < t->n; i++) {
			size_t k = hash(t->v[i]) & (cap - 1);
			while (h[k])
				k = (k + 1) & (cap - 1);
			h[k] = (uint32_t)i + 1;
		}
		free(t->h);
		t->h = h;
		t->hcap = cap;
	}
	size_t k = hash(s) & (t->hcap - 1);
	while (t->h[k]) {
		if (!strcmp(t->v[t->h[k] - 1], s))
			return t->h[k] - 1;
		k = (k + 1) & (t->hcap - 1);
	}
	if (t->n == t->cap) {
		size_t cap = t->cap ? t->cap * 2 : 1024;
		char **v = realloc(t->v, cap * sizeof(*v));
		if (!v)
			return -ENOMEM;
		t->v = v;
		t->cap = cap;
	}
	if (!(t->v[t->n] = strdup(s)))
		return -ENOMEM;
	t->h[k] = (uint32_t)++t->n;
	return (long)t->n - 1;
}

static void names_free(struct names *t)
{
	for (size_t i = 0; i < t->n; i++)
		free(t->v[i]);
	free(t->v);
	free(t->h);
}

struct progress {
	void (*fn)(double, void *);
	void *arg;
	size_t done, total;
};

static void step(struct progress *pr)
{
	pr->done++;
	if (pr->fn && (pr->done & 63) == 0)
		pr->fn((double)pr->done / (double)(pr->total ? pr->total : 1), pr->arg);
}

static int site_cmp_alloc(const void *a, const void *b, void *arg)
{
	const struct mt_site *s = arg;
	const struct mt_site *x = &s[*(const uint32_t *)a], *y = &s[*(const uint32_t *)b];
	uint64_t vx = x->alloc_bytes + x->inuse_bytes, vy = y->alloc_bytes + y->inuse_bytes;
	return vx > vy ? -1 : vx < vy;
}

/* The sites of series I: [proc, fn, inuse_b, alloc_b, inuse_o, alloc_o,
 * peak_b, peak_o, [frames, root first]], estimates (un-sampled). */
static int write_sites(FILE *out, size_t proc, const struct mt_profile *p, struct names *names,
		       struct progress *pr, int *first)
{
	if (!p->nsites)
		return 0;
	struct mt_symbolizer *sym = mt_symbolizer_new(p);
	uint32_t *order = calloc(p->nsites, sizeof(*order));
	long *fr = calloc(MT_STACK_MAX * MT_INLINE_MAX, sizeof(*fr));
	int err = 0;
	if (!sym || !order || !fr) {
		err = -ENOMEM;
		goto out;
	}
	for (uint32_t i = 0; i < p->nsites; i++)
		order[i] = i;
	qsort_r(order, p->nsites, sizeof(*order), site_cmp_alloc, p->sites);
	struct mt_site_est rest = {0};
	uint64_t rest_peak = 0;
	for (uint32_t r = 0; r < p->nsites && !err; r++) {
		const struct mt_site *s = &p->sites[order[r]];
		struct mt_site_est e;
		mt_site_estimate(p, s, &e);
		double ps = mt_site_scale(p->sample_period, s->peak_objects, s->peak_bytes);
		uint64_t peak_b = (uint64_t)((double)s->peak_bytes * ps), peak_o = (uint64_t)((double)s->peak_objects * ps);
		step(pr);
		if (r >= MT_HTML_SITES) {
			rest.alloc_bytes += e.alloc_bytes;
			rest.alloc_objects += e.alloc_objects;
			rest.inuse_bytes += e.inuse_bytes;
			rest.inuse_objects += e.inuse_objects;
			rest_peak += peak_b;
			continue;
		}
		size_t nf = 0;
		for (uint32_t i = s->nframes; i-- > 0 && !err;) {
			struct mt_frame f[MT_INLINE_MAX];
			int n = mt_symbolize(sym, s->frames[i], 1, f, MT_INLINE_MAX);
			if (n < 0) {
				err = n;
				break;
			}
			for (int k = n; k-- > 0;) {
				long id = name_id(names, f[k].function && f[k].function[0] ? f[k].function : "??");
				if (id < 0) {
					err = (int)id;
					break;
				}
				fr[nf++] = id;
			}
		}
		if (err)
			break;
		fprintf(out, "%s[%zu,", *first ? "" : ",\n", proc);
		js_str(out, mt_site_func(p, s));
		fprintf(out, ",%" PRIu64 ",%" PRIu64 ",%" PRIu64 ",%" PRIu64 ",%" PRIu64 ",%" PRIu64 ",[",
			e.inuse_bytes, e.alloc_bytes, e.inuse_objects, e.alloc_objects, peak_b, peak_o);
		for (size_t k = 0; k < nf; k++)
			fprintf(out, "%s%ld", k ? "," : "", fr[k]);
		fputs("]]", out);
		*first = 0;
	}
	if (!err && p->nsites > MT_HTML_SITES) {
		long id = name_id(names, "(other sites)");
		if (id < 0)
			err = (int)id;
		else
			fprintf(out, ",\n[%zu,\"\",%" PRIu64 ",%" PRIu64 ",%" PRIu64 ",%" PRIu64 ",%" PRIu64 ",0,[%ld]]",
				proc, rest.inuse_bytes, rest.alloc_bytes, rest.inuse_objects, rest.alloc_objects,
				rest_peak, id);
	}
out:
	free(fr);
	free(order);
	mt_symbolizer_free(sym);
	return err;
}

static void write_col(FILE *out, const char *key, const struct mt_timeline *tl, int which)
{
	fprintf(out, ",\"%s\":[", key);
	for (uint32_t k = 0; k < tl->n; k++) {
		const struct mt_tl_point *t = &tl->pts[k];
		int64_t v = 0;
		switch (which) {
		case 0: v = t->in_use_bytes; break;
		case 1: v = t->in_use_max; break;
		case 2: v = (int64_t)t->alloc_bytes; break;
		case 3: v = (int64_t)t->alloc_calls; break;
		case 4: v = (int64_t)t->free_bytes; break;
		case 5: v = (int64_t)t->free_calls; break;
		case 6: v = t->have & MT_TL_HAVE_RSS ? (int64_t)t->rss_bytes : -1; break;
		case 7: v = t->have & MT_TL_HAVE_POOLS ? (int64_t)t->pool_bytes : -1; break;
		case 8: v = t->have & MT_TL_HAVE_HEAP ? (int64_t)t->heap_bytes : -1; break;
		case 9: v = (int64_t)(t->span_ns / 1000); break;
		}
		fprintf(out, "%s%" PRId64, k ? "," : "", v);
	}
	fputc(']', out);
}

static void write_proc(FILE *out, const struct mt_tl_series *se, uint64_t t0, const char *path)
{
	const struct mt_profile *p = se->p;
	char how[256] = "";
	if (p->end)
		mt_end_describe(p, how, sizeof(how));
	fprintf(out, "{\"pid\":%u,\"ppid\":%u,\"parent\":%d,\"cmd\":", p->pid, p->ppid, se->parent);
	js_str(out, p->command);
	fputs(",\"exe\":", out);
	js_str(out, p->exe);
	fputs(",\"file\":", out);
	js_str(out, path);
	fprintf(out, ",\"reason\":\"%s\",\"ended\":", mt_reason_name(p->reason));
	js_str(out, how);
	fprintf(out, ",\"start_ns\":%" PRIu64 ",\"dump_ns\":%" PRIu64 ",\"sample_period\":%" PRIu64
		",\"nsites\":%u,\"totals\":[%" PRIu64 ",%" PRIu64 ",%" PRId64 ",%" PRIu64 "]", p->start_ns, p->dump_ns,
		p->sample_period, p->nsites, p->totals.allocated_bytes, p->totals.freed_bytes, p->totals.in_use_bytes,
		p->totals.peak_in_use_bytes);
	/* Timeline columns; times in ms since the report's first point. */
	const struct mt_timeline *tl = &se->tl;
	fprintf(out, ",\"tl\":{\"interval_ns\":%" PRIu64 ",\"decimations\":%u,\"recorded\":%s,\"t\":[", tl->interval_ns,
		tl->decimations, p->timeline.n ? "true" : "false");
	for (uint32_t k = 0; k < tl->n; k++)
		fprintf(out, "%s%.3f", k ? "," : "", (double)(tl->pts[k].t_ns - t0) / 1e6);
	fputc(']', out);
	static const char *const cols[] = {"inuse", "max", "ab", "ac", "fb", "fc", "rss", "pool", "heap", "span_us"};
	for (int c = 0; c < 10; c++)
		write_col(out, cols[c], tl, c);
	fputs("},\"funcs\":[", out);
	for (uint32_t f = 0; f < p->nfuncs; f++) {
		const struct mt_func *fn = &p->funcs[f];
		fprintf(out, "%s{\"name\":", f ? "," : "");
		js_str(out, fn->name);
		fprintf(out, ",\"kind\":\"%s\",\"calls\":%" PRIu64 ",\"bytes\":%" PRIu64 ",\"failed\":%" PRIu64 ",\"hist\":[",
			mt_kind_name(fn->kind), fn->calls, fn->bytes, fn->failed);
		int first = 1;
		for (unsigned k = 0; k < MT_HIST_BUCKETS; k++) {
			if (!fn->hist[k])
				continue;
			fprintf(out, "%s[%" PRIu64 ",%" PRIu64 "]", first ? "" : ",", mt_hist_lower(k), fn->hist[k]);
			first = 0;
		}
		fputs("]}", out);
	}
	fputs("],\"pools\":[", out);
	int first = 1;
	uint32_t *order = p->npools ? calloc(p->npools, sizeof(*order)) : NULL;
	for (uint32_t f = 0; order && f < p->nfuncs; f++) {
		uint32_t n = mt_profile_pools_of(p, f, 1, order);
		for (uint32_t i = 0; i < n && i < MT_HTML_POOLS; i++) {
			const struct mt_pool *pl = &p->pools[order[i]];
			fprintf(out, "%s{\"fn\":", first ? "" : ",");
			js_str(out, p->funcs[f].name);
			if (pl->pool == MT_POOL_OTHER)
				fprintf(out, ",\"pool\":\"other\"");
			else
				fprintf(out, ",\"pool\":\"%s%" PRIx64 "\"", pl->by == MT_POOL_BY_THREAD ? "tid " : "0x", pl->pool);
			fprintf(out, ",\"calls\":%" PRIu64 ",\"bytes\":%" PRIu64 ",\"of\":%u}", pl->calls, pl->bytes, n);
			first = 0;
		}
	}
	free(order);
	fputs("]}", out);
}

int mt_render_html(FILE *out, const struct mt_report_item *items, size_t n,
		   void (*progress)(double done, void *arg), void *arg)
{
	struct mt_tl_series *s;
	size_t ns;
	int err = mt_tl_series_of(items, n, &s, &ns);
	if (err)
		return err;
	struct names names = {0};
	struct progress pr = {progress, arg, 0, 0};
	for (size_t i = 0; i < ns; i++)
		pr.total += s[i].p->nsites;
	uint64_t t0 = UINT64_MAX;
	for (size_t i = 0; i < ns; i++)
		if (s[i].tl.n && s[i].tl.pts[0].t_ns < t0)
			t0 = s[i].tl.pts[0].t_ns;
	if (t0 == UINT64_MAX)
		t0 = 0;
	const char *marker = strstr(mt_report_html, "<!--MEMTAP-DATA-->");
	if (!marker) {
		mt_tl_series_free(s, ns);
		return -EINVAL;
	}
	fwrite(mt_report_html, 1, (size_t)(marker - mt_report_html), out);
	fprintf(out, "<script type=\"application/json\" id=\"memtap-data\">\n{\"version\":1,\"t0_ns\":%" PRIu64
		",\"procs\":[\n", t0);
	for (size_t i = 0; i < ns; i++) {
		const char *path = NULL;
		for (size_t k = 0; k < n && !path; k++)
			if (items[k].profile == s[i].p)
				path = items[k].path;
		if (i)
			fputs(",\n", out);
		write_proc(out, &s[i], t0, path);
	}
	fputs("],\n\"sites\":[", out);
	int first = 1;
	for (size_t i = 0; i < ns && !err; i++)
		err = write_sites(out, i, s[i].p, &names, &pr, &first);
	if (!err) {
		fputs("],\n\"names\":[", out);
		for (size_t i = 0; i < names.n; i++) {
			if (i)
				fputs(i % 8 ? "," : ",\n", out);
			js_str(out, names.v[i]);
		}
		fputs("]}\n</script>", out);
		fputs(marker + strlen("<!--MEMTAP-DATA-->"), out);
		if (progress)
			progress(1.0, arg);
	}
	names_free(&names);
	mt_tl_series_free(s, ns);
	if (err)
		return err;
	return fflush(out) || ferror(out) ? -EIO : 0;
}
