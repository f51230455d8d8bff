/*
 * Timelines for reports (include/memtap/render.h): the series of a set of
 * profiles, and the SVG of bytes in use over time.  The SVG is plain: lines,
 * axes, a legend and <title> tooltips; it needs no script and no fonts
 * beyond a generic family, so any browser or image viewer shows it.
 */
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "memtap/render.h"

static int later(const struct mt_profile *a, const struct mt_profile *b)
{
	int ae = a->reason == MT_REASON_EXIT || a->reason == MT_REASON_DETACH;
	int be = b->reason == MT_REASON_EXIT || b->reason == MT_REASON_DETACH;
	return ae != be ? ae > be : a->dump_ns > b->dump_ns;
}

static int same_process(const struct mt_profile *a, const struct mt_profile *b)
{
	return a->pid == b->pid && a->start_ns == b->start_ns;
}

static int by_dump(const void *x, const void *y)
{
	const struct mt_profile *a = *(const struct mt_profile *const *)x, *b = *(const struct mt_profile *const *)y;
	return a->dump_ns < b->dump_ns ? -1 : a->dump_ns > b->dump_ns;
}

/* A process without a recorded timeline: one point per snapshot. */
static int from_snapshots(const struct mt_report_item *items, size_t n, const struct mt_profile *p,
			  struct mt_timeline *tl)
{
	const struct mt_profile **v = calloc(n, sizeof(*v));
	size_t k = 0;
	if (!v)
		return -ENOMEM;
	for (size_t i = 0; i < n; i++)
		if (same_process(items[i].profile, p))
			v[k++] = items[i].profile;
	qsort(v, k, sizeof(*v), by_dump);
	uint64_t last_ns = 0, last_a = 0, last_f = 0;
	int ret = 0;
	for (size_t i = 0; i < k && !ret; i++) {
		const struct mt_profile *q = v[i];
		if (i && q->dump_ns == last_ns)
			continue;
		struct mt_tl_point pt = {
			.t_ns = q->dump_ns,
			.span_ns = i ? q->dump_ns - last_ns : (q->start_ns < q->dump_ns ? q->dump_ns - q->start_ns : 0),
			.in_use_bytes = q->totals.in_use_bytes,
			.alloc_bytes = q->totals.allocated_bytes >= last_a ? q->totals.allocated_bytes - last_a : 0,
			.free_bytes = q->totals.freed_bytes >= last_f ? q->totals.freed_bytes - last_f : 0,
		};
		for (uint32_t f = 0; f < q->nfuncs; f++)
			if (q->funcs[f].kind == MT_KIND_ALLOC)
				pt.alloc_calls += q->funcs[f].calls;
			else if (q->funcs[f].kind == MT_KIND_FREE)
				pt.free_calls += q->funcs[f].calls;
		/* calls are running totals here: made deltas below */
		ret = mt_timeline_append(tl, &pt);
		last_ns = q->dump_ns;
		last_a = q->totals.allocated_bytes;
		last_f = q->totals.freed_bytes;
	}
	for (uint32_t i = tl->n; i-- > 1;) {
		tl->pts[i].alloc_calls -= tl->pts[i].alloc_calls >= tl->pts[i - 1].alloc_calls ? tl->pts[i - 1].alloc_calls : tl->pts[i].alloc_calls;
		tl->pts[i].free_calls -= tl->pts[i].free_calls >= tl->pts[i - 1].free_calls ? tl->pts[i - 1].free_calls : tl->pts[i].free_calls;
	}
	free(v);
	return ret;
}

static int series_cmp(const void *x, const void *y)
{
	const struct mt_tl_series *a = x, *b = y;
	if (a->p->start_ns != b->p->start_ns)
		return a->p->start_ns < b->p->start_ns ? -1 : 1;
	return a->p->pid < b->p->pid ? -1 : a->p->pid > b->p->pid;
}

int mt_tl_series_of(const struct mt_report_item *items, size_t n, struct mt_tl_series **out, size_t *nout)
{
	struct mt_tl_series *v = calloc(n ? n : 1, sizeof(*v));
	size_t k = 0;
	int ret = 0;
	*out = NULL;
	*nout = 0;
	if (!v)
		return -ENOMEM;
	for (size_t i = 0; i < n; i++) {
		const struct mt_profile *p = items[i].profile;
		size_t j = 0;
		while (j < k && !same_process(v[j].p, p))
			j++;
		if (j == k)
			v[k++].p = p;
		else if (p->timeline.n > v[j].p->timeline.n ||
			 (p->timeline.n == v[j].p->timeline.n && later(p, v[j].p)))
			v[j].p = p;
	}
	for (size_t j = 0; j < k && !ret; j++)
		ret = v[j].p->timeline.n ? mt_timeline_copy(&v[j].tl, &v[j].p->timeline)
					 : from_snapshots(items, n, v[j].p, &v[j].tl);
	if (ret) {
		mt_tl_series_free(v, k);
		return ret;
	}
	qsort(v, k, sizeof(*v), series_cmp);
	for (size_t j = 0; j < k; j++) {
		const struct mt_profile *p = v[j].p;
		v[j].parent = -1;
		for (size_t q = 0; q < k; q++) {
			const struct mt_profile *pp = v[q].p;
			if (q == j || pp->pid != p->ppid)
				continue;
			/* The parent's start when the child's profile names it; else the
			 * latest process with that pid that started before the child. */
			if (p->parent_start_ns ? pp->start_ns == p->parent_start_ns
					       : pp->start_ns <= p->start_ns &&
						 (v[j].parent < 0 || pp->start_ns > v[v[j].parent].p->start_ns))
				v[j].parent = (int)q;
		}
	}
	*out = v;
	*nout = k;
	return 0;
}

void mt_tl_series_free(struct mt_tl_series *s, size_t n)
{
	if (!s)
		return;
	for (size_t i = 0; i < n; i++)
		mt_timeline_clear(&s[i].tl);
	free(s);
}

void mt_fmt_bytes(char *out, size_t outlen, double b)
{
	static const char *const unit[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB"};
	unsigned u = 0;
	double a = fabs(b);
	while (a >= 1024 && u < 5) {
		a /= 1024;
		b /= 1024;
		u++;
	}
	if (u == 0)
		snprintf(out, outlen, "%.0f B", b);
	else
		snprintf(out, outlen, "%.*f %s", a >= 100 ? 0 : a >= 10 ? 1 : 2, b, unit[u]);
}

void mt_render_timeline_text(FILE *out, const struct mt_profile *p)
{
	const struct mt_timeline *tl = &p->timeline;
	const struct mt_tl_point *a = &tl->pts[0], *z = &tl->pts[tl->n - 1];
	uint32_t hi = 0;
	for (uint32_t k = 1; k < tl->n; k++)
		if (tl->pts[k].in_use_max > tl->pts[hi].in_use_max)
			hi = k;
	char first[32], last[32], top[32];
	mt_fmt_bytes(first, sizeof(first), (double)a->in_use_bytes);
	mt_fmt_bytes(last, sizeof(last), (double)z->in_use_bytes);
	mt_fmt_bytes(top, sizeof(top), (double)tl->pts[hi].in_use_max);
	fprintf(out, "\nTimeline (--interval=%g): %u points over %.1f s%s; in use %s first, %s last, "
		"highest %s at +%.1f s", (double)tl->interval_ns / 1e9, tl->n, (double)(z->t_ns - a->t_ns) / 1e9,
		tl->decimations ? " (older ones merged)" : "", first, last, top,
		(double)(tl->pts[hi].t_ns - a->t_ns) / 1e9);
	if ((a->have & MT_TL_HAVE_RSS)) {
		const struct mt_tl_point *r = z;
		while (r > a && !(r->have & MT_TL_HAVE_RSS))
			r--;
		mt_fmt_bytes(first, sizeof(first), (double)a->rss_bytes);
		mt_fmt_bytes(last, sizeof(last), (double)r->rss_bytes);
		fprintf(out, "; RSS %s first, %s last", first, last);
	}
	fputs("\n  (memtap report --format=svg or --format=html draws it)\n", out);
}

/* A step of 1, 2 or 5 times a power of ten giving about TARGET ticks over
 * RANGE. */
static double nice_step(double range, int target)
{
	if (range <= 0)
		return 1;
	double raw = range / target, p = pow(10, floor(log10(raw))), f = raw / p;
	return (f < 1.5 ? 1 : f < 3.5 ? 2 : f < 7.5 ? 5 : 10) * p;
}

static void xml_text(FILE *out, const char *s, size_t max)
{
	for (size_t i = 0; s[i] && i < max; i++) {
		switch (s[i]) {
		case '&': fputs("&amp;", out); break;
		case '<': fputs("&lt;", out); break;
		case '>': fputs("&gt;", out); break;
		case '"': fputs("&quot;", out); break;
		default:
			fputc((unsigned char)s[i] >= 0x20 ? s[i] : '?', out);
		}
	}
	if (strlen(s) > max)
		fputs("...", out);
}

/* The command without its program's directory (the legend is narrow). */
static const char *short_cmd(const struct mt_profile *p)
{
	const char *c = p->command[0] ? p->command : p->exe;
	size_t arg0 = strcspn(c, " ");
	const char *slash = memrchr(c, '/', arg0);
	return slash ? slash + 1 : c;
}

static const char *const palette[] = {
	"#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd",
	"#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf",
};
#define NPALETTE (sizeof(palette) / sizeof(palette[0]))

#define SV_W 1200
#define SV_H 560
#define SV_X0 90.0
#define SV_X1 820.0
#define SV_Y0 50.0
#define SV_Y1 480.0
#define SV_LEGEND 24 /* processes named in the legend */

int mt_render_timeline_svg(FILE *out, const struct mt_report_item *items, size_t n)
{
	struct mt_tl_series *s;
	size_t ns;
	int ret = mt_tl_series_of(items, n, &s, &ns);
	if (ret)
		return ret;
	uint64_t t0 = UINT64_MAX, t1 = 0;
	double ymin = 0, ymax = 0;
	size_t npts = 0;
	for (size_t i = 0; i < ns; i++)
		for (uint32_t k = 0; k < s[i].tl.n; k++) {
			const struct mt_tl_point *pt = &s[i].tl.pts[k];
			t0 = pt->t_ns < t0 ? pt->t_ns : t0;
			t1 = pt->t_ns > t1 ? pt->t_ns : t1;
			ymax = fmax(ymax, (double)pt->in_use_bytes);
			ymin = fmin(ymin, (double)pt->in_use_bytes);
			npts++;
		}
	if (!npts) {
		mt_tl_series_free(s, ns);
		return -ENODATA;
	}
	double span = (double)(t1 - t0) / 1e9;
	if (span <= 0)
		span = 1;
	/* The y axis in one binary unit, ticks at nice multiples of it. */
	static const char *const unit[] = {"B", "KiB", "MiB", "GiB", "TiB"};
	unsigned u = 0;
	double top = fmax(fabs(ymax), fabs(ymin)), div = 1;
	while (top / div >= 1024 * 2 && u < 4) {
		div *= 1024;
		u++;
	}
	double ystep = nice_step((ymax - ymin) / div, 6) * div;
	if (ymax <= ymin)
		ymax = ymin + ystep;
	ymax = ceil(ymax / ystep) * ystep;
	ymin = floor(ymin / ystep) * ystep;
	double xs = (SV_X1 - SV_X0) / span, ys = (SV_Y1 - SV_Y0) / (ymax - ymin);
	const struct mt_profile *first = s[0].p;

	fprintf(out, "<?xml version=\"1.0\" standalone=\"no\"?>\n"
		"<svg version=\"1.1\" width=\"%d\" height=\"%d\" viewBox=\"0 0 %d %d\" "
		"xmlns=\"http://www.w3.org/2000/svg\">\n"
		"<style type=\"text/css\">\n"
		"  text { font-family: Verdana, sans-serif; font-size: 12px; fill: #222; }\n"
		"  .title { font-size: 17px; text-anchor: middle; }\n"
		"  .axis { stroke: #444; stroke-width: 1; }\n"
		"  .grid { stroke: #ddd; stroke-width: 1; }\n"
		"  .tick { text-anchor: end; }\n"
		"  .xtick { text-anchor: middle; }\n"
		"  .line { fill: none; stroke-width: 1.8; stroke-linejoin: round; }\n"
		"  .line:hover { stroke-width: 3.5; }\n"
		"</style>\n"
		"<rect x=\"0\" y=\"0\" width=\"%d\" height=\"%d\" fill=\"#fff\"/>\n"
		"<text class=\"title\" x=\"%.0f\" y=\"28\">Bytes in use over time",
		SV_W, SV_H, SV_W, SV_H, SV_W, SV_H, (SV_X0 + SV_X1) / 2);
	int one_cmd = 1;
	for (size_t i = 1; i < ns; i++)
		one_cmd &= !strcmp(s[i].p->exe, first->exe);
	if (one_cmd && first->command[0]) {
		fputs(" \xe2\x80\x94 ", out);
		xml_text(out, first->command, 60);
	}
	fputs("</text>\n", out);
	/* Grid and ticks. */
	for (double y = ymin; y <= ymax + ystep / 2; y += ystep) {
		double py = SV_Y1 - (y - ymin) * ys;
		char lab[32];
		snprintf(lab, sizeof(lab), "%g %s", y / div, unit[u]);
		fprintf(out, "<line class=\"grid\" x1=\"%.0f\" y1=\"%.1f\" x2=\"%.0f\" y2=\"%.1f\"/>"
			"<text class=\"tick\" x=\"%.0f\" y=\"%.1f\">%s</text>\n", SV_X0, py, SV_X1, py, SV_X0 - 6,
			py + 4, lab);
	}
	double xstep = nice_step(span, 8);
	for (double x = 0; x <= span + xstep / 1000; x += xstep) {
		double px = SV_X0 + x * xs;
		fprintf(out, "<line class=\"grid\" x1=\"%.1f\" y1=\"%.0f\" x2=\"%.1f\" y2=\"%.0f\"/>"
			"<text class=\"xtick\" x=\"%.1f\" y=\"%.0f\">%g</text>\n", px, SV_Y0, px, SV_Y1, px,
			SV_Y1 + 16, x);
	}
	fprintf(out, "<line class=\"axis\" x1=\"%.0f\" y1=\"%.0f\" x2=\"%.0f\" y2=\"%.0f\"/>"
		"<line class=\"axis\" x1=\"%.0f\" y1=\"%.0f\" x2=\"%.0f\" y2=\"%.0f\"/>\n",
		SV_X0, SV_Y1, SV_X1, SV_Y1, SV_X0, SV_Y0, SV_X0, SV_Y1);
	time_t when = (time_t)(t0 / 1000000000u);
	struct tm tm;
	char date[64];
	gmtime_r(&when, &tm);
	strftime(date, sizeof(date), "%Y-%m-%d %H:%M:%S UTC", &tm);
	fprintf(out, "<text class=\"xtick\" x=\"%.0f\" y=\"%.0f\">seconds since %s</text>\n"
		"<text class=\"xtick\" transform=\"translate(18,%.0f) rotate(-90)\">bytes in use (%s)</text>\n",
		(SV_X0 + SV_X1) / 2, SV_Y1 + 40, date, (SV_Y0 + SV_Y1) / 2, unit[u]);
	/* One line per process, a dot at its last point. */
	for (size_t i = 0; i < ns; i++) {
		const struct mt_profile *p = s[i].p;
		const char *col = palette[i % NPALETTE];
		char peak[32], last[32];
		int64_t pk = 0;
		for (uint32_t k = 0; k < s[i].tl.n; k++)
			pk = s[i].tl.pts[k].in_use_max > pk ? s[i].tl.pts[k].in_use_max : pk;
		mt_fmt_bytes(peak, sizeof(peak), (double)pk);
		mt_fmt_bytes(last, sizeof(last), s[i].tl.n ? (double)s[i].tl.pts[s[i].tl.n - 1].in_use_bytes : 0);
		fprintf(out, "<g id=\"pid%u\"><title>pid %u", p->pid, p->pid);
		if (s[i].parent >= 0)
			fprintf(out, " (child of %u)", s[i].p->ppid);
		fputs(": ", out);
		xml_text(out, p->command, 200);
		fprintf(out, "\npeak %s, last %s, %u points</title>\n<polyline class=\"line%s\" stroke=\"%s\" points=\"",
			peak, last, s[i].tl.n, s[i].parent >= 0 ? " child" : "", col);
		double lx = 0, ly = 0;
		for (uint32_t k = 0; k < s[i].tl.n; k++) {
			const struct mt_tl_point *pt = &s[i].tl.pts[k];
			lx = SV_X0 + (double)(pt->t_ns - t0) / 1e9 * xs;
			ly = SV_Y1 - ((double)pt->in_use_bytes - ymin) * ys;
			fprintf(out, "%s%.1f,%.1f", k ? " " : "", lx, ly);
		}
		fprintf(out, "\"/>\n<circle cx=\"%.1f\" cy=\"%.1f\" r=\"3\" fill=\"%s\"/></g>\n", lx, ly, col);
	}
	/* The legend: processes in start order, children indented under
	 * their parent's colour. */
	double ly = SV_Y0;
	fprintf(out, "<text x=\"%.0f\" y=\"%.0f\" style=\"font-weight:bold\">processes (%zu)</text>\n", SV_X1 + 20,
		ly, ns);
	for (size_t i = 0; i < ns && i < SV_LEGEND; i++) {
		const struct mt_profile *p = s[i].p;
		char peak[32];
		int64_t pk = 0;
		for (uint32_t k = 0; k < s[i].tl.n; k++)
			pk = s[i].tl.pts[k].in_use_max > pk ? s[i].tl.pts[k].in_use_max : pk;
		mt_fmt_bytes(peak, sizeof(peak), (double)pk);
		ly += 17;
		double lx = SV_X1 + 20 + (s[i].parent >= 0 ? 12 : 0);
		fprintf(out, "<line x1=\"%.0f\" y1=\"%.0f\" x2=\"%.0f\" y2=\"%.0f\" stroke=\"%s\" stroke-width=\"3\"/>"
			"<text x=\"%.0f\" y=\"%.0f\">%u", lx, ly - 4, lx + 18, ly - 4, palette[i % NPALETTE], lx + 24,
			ly, p->pid);
		if (s[i].parent >= 0)
			fprintf(out, " \xe2\x86\x90 %u", p->ppid);
		fputc(' ', out);
		xml_text(out, short_cmd(p), s[i].parent >= 0 ? 22 : 26);
		fprintf(out, " (peak %s)</text>\n", peak);
	}
	if (ns > SV_LEGEND)
		fprintf(out, "<text x=\"%.0f\" y=\"%.0f\">... and %zu more (hover a line)</text>\n", SV_X1 + 20,
			ly + 17, ns - SV_LEGEND);
	fputs("</svg>\n", out);
	mt_tl_series_free(s, ns);
	return fflush(out) || ferror(out) ? -EIO : 0;
}
