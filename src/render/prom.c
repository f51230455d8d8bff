/*
 * The Prometheus exposition writer (memtap/prom.h): text format 0.0.4 and
 * OpenMetrics 1.0.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "memtap/prom.h"

const char *mt_prom_content_type(enum mt_prom_format fmt)
{
	return fmt == MT_PROM_OPENMETRICS ? "application/openmetrics-text; version=1.0.0; charset=utf-8"
					  : "text/plain; version=0.0.4; charset=utf-8";
}

/* The q of the media range at R (up to its ','), 1 when absent. */
static double range_q(const char *r, size_t len)
{
	for (const char *p = r; p < r + len; p++) {
		if (*p != ';')
			continue;
		const char *v = p + 1;
		while (*v == ' ' || *v == '\t')
			v++;
		if ((v[0] == 'q' || v[0] == 'Q') && v[1] == '=')
			return strtod(v + 2, NULL);
	}
	return 1;
}

enum mt_prom_format mt_prom_wants_openmetrics(const char *accept)
{
	double om = -1, text = -1;
	for (const char *r = accept ? accept : ""; *r;) {
		while (*r == ' ' || *r == '\t' || *r == ',')
			r++;
		size_t len = strcspn(r, ","), tl = strcspn(r, ";,");
		while (tl && (r[tl - 1] == ' ' || r[tl - 1] == '\t'))
			tl--;
		double q = range_q(r, len);
		if (tl == 28 && !strncasecmp(r, "application/openmetrics-text", tl))
			om = q > om ? q : om;
		else if (tl == 10 && !strncasecmp(r, "text/plain", tl))
			text = q > text ? q : text;
		r += len;
	}
	return om > 0 && om >= text ? MT_PROM_OPENMETRICS : MT_PROM_TEXT;
}

void mt_prom_escape(FILE *out, const char *v, int help, enum mt_prom_format fmt)
{
	for (const unsigned char *c = (const unsigned char *)v; *c; c++) {
		if (*c == '\\')
			fputs("\\\\", out);
		else if (*c == '\n')
			fputs("\\n", out);
		else if (*c == '"' && (!help || fmt == MT_PROM_OPENMETRICS))
			fputs("\\\"", out);
		else if (*c < 0x20 || *c >= 0x7f)
			fputc('?', out);
		else
			fputc(*c, out);
	}
}

void mt_prom_begin(struct mt_prom *w, FILE *out, enum mt_prom_format fmt)
{
	memset(w, 0, sizeof(*w));
	w->out = out;
	w->fmt = fmt;
}

void mt_prom_family(struct mt_prom *w, const char *name, enum mt_prom_type type, const char *unit,
		    const char *help)
{
	static const char *const text_type[] = {"counter", "gauge", "histogram", "gauge"};
	static const char *const om_type[] = {"counter", "gauge", "histogram", "info"};
	snprintf(w->name, sizeof(w->name), "%s", name);
	w->type = type;
	/* OpenMetrics' family names lose the sample suffix. */
	char family[128];
	size_t n = strlen(name);
	if (w->fmt == MT_PROM_OPENMETRICS && type == MT_PROM_COUNTER && n > 6 && !strcmp(name + n - 6, "_total"))
		n -= 6;
	else if (w->fmt == MT_PROM_OPENMETRICS && type == MT_PROM_INFO && n > 5 && !strcmp(name + n - 5, "_info"))
		n -= 5;
	snprintf(family, sizeof(family), "%.*s", (int)n, name);
	const char *t = w->fmt == MT_PROM_OPENMETRICS ? om_type[type] : text_type[type];
	if (w->fmt == MT_PROM_OPENMETRICS) {
		fprintf(w->out, "# TYPE %s %s\n", family, t);
		if (unit)
			fprintf(w->out, "# UNIT %s %s\n", family, unit);
	}
	fprintf(w->out, "# HELP %s ", family);
	mt_prom_escape(w->out, help, 1, w->fmt);
	fputc('\n', w->out);
	if (w->fmt == MT_PROM_TEXT)
		fprintf(w->out, "# TYPE %s %s\n", family, t);
}

static void labels(struct mt_prom *w, const struct mt_prom_label *l, size_t nl, const char *le)
{
	if (!nl && !le)
		return;
	fputc('{', w->out);
	for (size_t i = 0; i < nl; i++) {
		fprintf(w->out, "%s%s=\"", i ? "," : "", l[i].name);
		mt_prom_escape(w->out, l[i].value ? l[i].value : "", 0, w->fmt);
		fputc('"', w->out);
	}
	if (le)
		fprintf(w->out, "%sle=\"%s\"", nl ? "," : "", le);
	fputc('}', w->out);
}

void mt_prom_u64(struct mt_prom *w, const struct mt_prom_label *l, size_t nl, uint64_t v)
{
	fputs(w->name, w->out);
	labels(w, l, nl, NULL);
	fprintf(w->out, " %" PRIu64 "\n", v);
}

void mt_prom_i64(struct mt_prom *w, const struct mt_prom_label *l, size_t nl, int64_t v)
{
	fputs(w->name, w->out);
	labels(w, l, nl, NULL);
	fprintf(w->out, " %" PRId64 "\n", v);
}

void mt_prom_histogram(struct mt_prom *w, const struct mt_prom_label *l, size_t nl,
		       const uint64_t hist[MT_HIST_BUCKETS], uint64_t sum)
{
	uint64_t cum = 0, total = 0;
	for (unsigned k = 0; k < MT_HIST_BUCKETS; k++)
		total += hist[k];
	for (unsigned k = 0; k < MT_PROM_BUCKETS; k++) {
		char le[32];
		cum += hist[k];
		/* Bucket k's largest integer: 0, then 2^k - 1. */
		snprintf(le, sizeof(le), "%" PRIu64, k ? ((uint64_t)1 << k) - 1 : 0);
		fprintf(w->out, "%s_bucket", w->name);
		labels(w, l, nl, le);
		fprintf(w->out, " %" PRIu64 "\n", cum);
	}
	fprintf(w->out, "%s_bucket", w->name);
	labels(w, l, nl, "+Inf");
	fprintf(w->out, " %" PRIu64 "\n", total);
	fprintf(w->out, "%s_sum", w->name);
	labels(w, l, nl, NULL);
	fprintf(w->out, " %" PRIu64 "\n", sum);
	fprintf(w->out, "%s_count", w->name);
	labels(w, l, nl, NULL);
	fprintf(w->out, " %" PRIu64 "\n", total);
}

int mt_prom_end(struct mt_prom *w)
{
	if (w->fmt == MT_PROM_OPENMETRICS)
		fputs("# EOF\n", w->out);
	return fflush(w->out) || ferror(w->out) ? -EIO : 0;
}
