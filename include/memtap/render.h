/*
 * Renderers: turn profiles into text for people and programs.  They read
 * only the profile model (struct mt_profile), never a collector's state.
 *
 * A report is a list of profiles, each with the file it came from (may be
 * NULL).  Renderers write to a stdio stream and return 0 or -errno.
 */
#ifndef MEMTAP_RENDER_H
#define MEMTAP_RENDER_H

#include <stdio.h>

#include "memtap/profile.h"

struct mt_report_item {
	struct mt_profile *profile;
	const char *path;       /* source file, or NULL */
	const uint32_t *pids;   /* for a merged item: the processes summed */
	size_t npids;
};

/* DTrace's count() table: two spaces, key in 50 columns, count in 16. */
void mt_render_count_row(FILE *out, const char *key, uint64_t value);
/* DTrace's quantize() table for one function (nothing when it has no calls). */
void mt_render_quantize(FILE *out, const char *title, const uint64_t hist[MT_HIST_BUCKETS]);

/* The default report: per profile, a count() table of calls, a sum table of
 * bytes, one quantize() table per function, and the totals. */
int mt_render_text(FILE *out, const struct mt_report_item *items, size_t n);
/* {"processes":[...]} as documented in docs/FORMAT.md. */
int mt_render_json(FILE *out, const struct mt_report_item *items, size_t n);

#endif
