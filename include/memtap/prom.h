/*
 * The Prometheus exposition writer: metric families in the text format
 * 0.0.4 or in OpenMetrics 1.0, from the same calls, as /metrics serves them
 * (src/cli/fleet.c).  It knows the formats' rules, not memtap's metrics.
 *
 *   struct mt_prom w;
 *   mt_prom_begin(&w, out, mt_prom_wants_openmetrics(accept));
 *   mt_prom_family(&w, "memtap_allocations_total", MT_PROM_COUNTER, NULL, "Calls ...");
 *   mt_prom_u64(&w, labels, nlabels, 42);        one per series of the family
 *   mt_prom_family(&w, "memtap_allocation_size_bytes", MT_PROM_HISTOGRAM, "bytes", "...");
 *   mt_prom_histogram(&w, labels, nlabels, hist, sum);
 *   ret = mt_prom_end(&w);                        "# EOF" in OpenMetrics; 0 or -EIO
 *
 * NAME is always the sample name of the text format: a counter's ends in
 * _total, which OpenMetrics keeps for its samples and drops from its family
 * (`# TYPE memtap_allocations counter`, `memtap_allocations_total 42`); an
 * info metric is memtap_info in both (OpenMetrics' family is memtap, type
 * info; the text format has no info type: a gauge of 1).  UNIT ("bytes"),
 * when given, must be the family name's suffix: OpenMetrics writes it as
 * `# UNIT`, the text format has only the name.  No _created samples are
 * written (optional in OpenMetrics; each would be a series of its own).
 *
 * Histograms take memtap's power-of-two buckets (DTrace's quantize,
 * memtap/profile.h) and write them cumulative with exact upper bounds:
 * bucket k holds the integers [2^(k-1), 2^k - 1], so le="0", "1", "3",
 * "7", ... "2^33-1", then "+Inf" (equal to _count), _sum and _count.
 *
 * Label values and help texts are escaped as each format says (\\, \n,
 * \" in label values; \\ and \n in 0.0.4's HELP, and \" too in
 * OpenMetrics'); bytes that are not printable ASCII become '?', so the
 * output is always valid UTF-8.
 */
#ifndef MEMTAP_PROM_H
#define MEMTAP_PROM_H

#include <stdint.h>
#include <stdio.h>

#include "memtap/profile.h"

enum mt_prom_format {
	MT_PROM_TEXT = 0,        /* text/plain; version=0.0.4 */
	MT_PROM_OPENMETRICS = 1, /* application/openmetrics-text; version=1.0.0 */
};

enum mt_prom_type { MT_PROM_COUNTER, MT_PROM_GAUGE, MT_PROM_HISTOGRAM, MT_PROM_INFO };

/* Buckets written with a finite bound (quantize's 0..MT_PROM_BUCKETS-1);
 * larger values only in +Inf. */
#define MT_PROM_BUCKETS 34

struct mt_prom_label {
	const char *name, *value;
};

struct mt_prom {
	FILE *out;
	enum mt_prom_format fmt;
	enum mt_prom_type type;
	char name[128]; /* the current family's sample name */
};

/* The Content-Type of FMT's responses. */
const char *mt_prom_content_type(enum mt_prom_format fmt);
/* Whether an Accept header asks for OpenMetrics (with a q above 0). */
enum mt_prom_format mt_prom_wants_openmetrics(const char *accept);

void mt_prom_begin(struct mt_prom *w, FILE *out, enum mt_prom_format fmt);
void mt_prom_family(struct mt_prom *w, const char *name, enum mt_prom_type type, const char *unit,
		    const char *help);
/* One sample of the current family (counter, gauge or info). */
void mt_prom_u64(struct mt_prom *w, const struct mt_prom_label *l, size_t nl, uint64_t v);
void mt_prom_i64(struct mt_prom *w, const struct mt_prom_label *l, size_t nl, int64_t v);
/* One histogram of the current family: HIST are quantize buckets (counts
 * per bucket), SUM the sum of the values. */
void mt_prom_histogram(struct mt_prom *w, const struct mt_prom_label *l, size_t nl,
		       const uint64_t hist[MT_HIST_BUCKETS], uint64_t sum);
/* The end of the exposition; 0, or -EIO when OUT failed. */
int mt_prom_end(struct mt_prom *w);
/* Writes V escaped as a label value (without the quotes). */
void mt_prom_escape(FILE *out, const char *v, int help, enum mt_prom_format fmt);

#endif
