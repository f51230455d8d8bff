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

/* Call-site stacks are shown from the allocation up to main (or a thread's
 * start routine); 1 keeps the C runtime's frames below it too (_start,
 * __libc_start_main, start_thread, clone3): --full-stacks.  A setting of
 * every renderer, made once by the CLI. */
extern int mt_render_full_stacks;

/* DTrace's count() table: two spaces, key in 50 columns, count in 16. */
void mt_render_count_row(FILE *out, const char *key, uint64_t value);
/* DTrace's quantize() table for one function (nothing when it has no calls). */
void mt_render_quantize(FILE *out, const char *title, const uint64_t hist[MT_HIST_BUCKETS]);

/* The default report: per profile, a count() table of calls, a sum table of
 * bytes, one quantize() table per function, and the totals. */
int mt_render_text(FILE *out, const struct mt_report_item *items, size_t n);
/* leaks: the leak check's text section ("definitely lost" / "still
 * reachable" per site, NTOP lost sites) and its JSON member (",\"leaks\":{..}");
 * nothing when P has no check.  0 or -errno. */
int mt_render_leaks_text(FILE *out, const struct mt_profile *p, unsigned ntop);
int mt_render_leaks_json(FILE *out, const struct mt_profile *p);
/* {"processes":[...]} as documented in docs/FORMAT.md. */
int mt_render_json(FILE *out, const struct mt_report_item *items, size_t n);
/* A JSON string with escapes. */
void mt_render_json_str(FILE *out, const char *s);
/* The glibc part (src/render/glibc.c): the allocator's statistics and
 * --glibc's internals of P, when it has them; JSON: ,"stats":{...},
 * "glibc":{...} inside a process object. */
void mt_render_glibc_text(FILE *out, const struct mt_profile *p);
void mt_render_glibc_json(FILE *out, const struct mt_profile *p);

/* APR pools (--pools, memtap/pools.h): the text section (FULL: with the
 * tree of live pools and the quantize tables; else the tags and the pools
 * that only grow), the JSON keys "pools" and "pool_summary" (each with its
 * leading comma), and the event log in APR's pool-debug line format over
 * every item.  Nothing for a profile without pools. */
int mt_render_pools_text(FILE *out, const struct mt_profile *p, int full);
void mt_render_pools_json(FILE *out, const struct mt_profile *p);
int mt_render_pools_log(FILE *out, const struct mt_report_item *items, size_t n);

/*
 * Heap-profile exports of the call sites recorded with --stacks.  Site
 * counts are raw samples; exports that carry estimates un-sample them with
 * mt_site_scale() (in-use and allocated each by their own mean size).
 * Symbolization (memtap/symbolize.h) uses each profile's own mappings.
 */

/* What a one-value export (collapsed stacks, flame graph) measures. */
enum mt_value {
	MT_VALUE_INUSE = 0, /* bytes still allocated at the snapshot (default) */
	MT_VALUE_ALLOC = 1, /* bytes allocated, freed since or not */
};

/* A site's estimated counts (all allocations, not just the sampled ones). */
struct mt_site_est {
	uint64_t alloc_objects, alloc_bytes, inuse_objects, inuse_bytes;
	/* analyses: at the peak in use, and the temporary allocations */
	uint64_t peak_objects, peak_bytes, temp_objects, temp_bytes;
};
void mt_site_estimate(const struct mt_profile *p, const struct mt_site *s, struct mt_site_est *e);

/* pprof's profile.proto, gzip-compressed: sample types alloc_objects/count,
 * alloc_space/bytes, inuse_objects/count, inuse_space/bytes (estimates),
 * period_type space/bytes, period = sample_period, one location per address
 * with its (inlined) functions and lines.  For `go tool pprof`. */
int mt_render_pprof(FILE *out, const struct mt_profile *p);
/* gperftools' heap profile text (`heap profile: ... @ heap_v2/PERIOD` with raw
 * sampled counts, or `@ heapprofile` when every allocation was recorded),
 * then MAPPED_LIBRARIES: in /proc/PID/maps layout.  For jeprof and pprof. */
int mt_render_jeprof(FILE *out, const struct mt_profile *p);
/* Collapsed stacks, `root;caller;leaf VALUE` per line (flamegraph.pl,
 * speedscope, inferno), summed over the items. */
int mt_render_collapsed(FILE *out, const struct mt_report_item *items, size_t n, enum mt_value v);
/* A self-contained flame graph SVG (tooltips, click to zoom) of the same
 * stacks. */
int mt_render_flamegraph(FILE *out, const struct mt_report_item *items, size_t n, enum mt_value v);
/* The text report's call-site tables: the NTOP sites with the most bytes in
 * use, bytes allocated and calls, with symbolized frames; with them the
 * sites at the peak and by temporary allocations.  Nothing when P has no
 * sites. */
int mt_render_sites_table(FILE *out, const struct mt_profile *p, unsigned ntop);

/* One of those tables: the NTOP sites by BY, NFRAMES frames each. */
enum mt_table_by { MT_TABLE_INUSE, MT_TABLE_ALLOC, MT_TABLE_CALLS, MT_TABLE_PEAK, MT_TABLE_TEMP };
int mt_render_sites_table_by(FILE *out, const struct mt_profile *p, enum mt_table_by by, unsigned ntop, unsigned nframes);

/* analyses (src/render/analyses.c, docs/ANALYSES.md): the figures
 * heaptrack_print gives, per profile. */
struct mt_analyses {
	uint64_t run_ns;            /* traced for (start to snapshot or end), 0: unknown */
	uint64_t allocations;       /* calls of the allocation functions (exact) */
	double per_second;          /* allocations / run time (0: unknown) */
	uint64_t temp_objects;      /* temporary allocations (estimated when sampled) */
	uint64_t temp_bytes;        /* their requested bytes */
	int have_temp;              /* call sites were recorded: temp_* mean something */
	uint64_t peak_rss_bytes;    /* 0: unknown */
};
void mt_analyses_of(const struct mt_profile *p, struct mt_analyses *a);
/* The text section ("Run time, rate, peak RSS and temporary allocations"),
 * after the totals; MERGED: the item sums several processes. */
void mt_render_analyses_text(FILE *out, const struct mt_profile *p, int merged);
/* The same without the heading line. */
void mt_render_analyses_rows(FILE *out, const struct mt_profile *p, int merged);
/* ,"analyses":{...} inside a process object. */
void mt_render_analyses_json(FILE *out, const struct mt_profile *p);
/*
 * Timelines (part timeline, include/memtap/timeline.h).  A report's series
 * are its processes (pid and start), each from the profile of that process
 * with the most timeline points (its final profile, with --interval); a
 * process whose profiles carry no timeline gets one point per snapshot
 * (its --interval dumps), so older files still draw.  PARENT is the index
 * of the series of the process's parent (ppid and parent_start_ns), or -1.
 */
struct mt_tl_series {
	const struct mt_profile *p;
	struct mt_timeline tl; /* the series' own copy */
	int parent;
};
/* Series in pid order, a parent before its children; 0 or -ENOMEM. */
int mt_tl_series_of(const struct mt_report_item *items, size_t n, struct mt_tl_series **out, size_t *nout);
void mt_tl_series_free(struct mt_tl_series *s, size_t n);
/* "1.5 MiB": BYTES in binary units, at most 4 significant digits. */
void mt_fmt_bytes(char *out, size_t outlen, double bytes);
/* A self-contained SVG: bytes in use over time, one line per process, axes
 * with units, a legend naming each process and its parent.  -ENODATA when
 * no item has a point. */
int mt_render_timeline_svg(FILE *out, const struct mt_report_item *items, size_t n);
/* The text report's timeline lines: points, span, in use first, last and
 * highest (when), RSS first and last. */
void mt_render_timeline_text(FILE *out, const struct mt_profile *p);
/* One HTML file that works offline: every section the profiles support
 * (timelines, flame graphs, top sites, histograms, pools, ...).  PROGRESS,
 * when not NULL, is told the share done (0..1) as the report is built. */
int mt_render_html(FILE *out, const struct mt_report_item *items, size_t n,
		   void (*progress)(double done, void *arg), void *arg);

/* Growth between two snapshots of one process: sites matched by function
 * and frames, values NEWER minus BASE (estimates, negative when shrinking),
 * largest in-use growth first.  Sites whose values did not change are left
 * out. */
struct mt_diff_site {
	const struct mt_site *base;  /* NULL: the site is new in NEWER */
	const struct mt_site *newer; /* NULL: the site is gone from NEWER */
	int64_t alloc_objects, alloc_bytes, inuse_objects, inuse_bytes;
};
struct mt_diff {
	const struct mt_profile *base, *newer;
	struct mt_diff_site *sites;
	size_t n;
};
/* 0 or -ENOMEM.  Both profiles must outlive the diff. */
int mt_diff_new(const struct mt_profile *base, const struct mt_profile *newer, struct mt_diff **out);
void mt_diff_free(struct mt_diff *d);
/* The NTOP largest changes, with symbolized frames. */
int mt_render_diff_text(FILE *out, const struct mt_diff *d, unsigned ntop);
/* A pprof profile whose values are NEWER minus BASE, what `go tool pprof
 * -base BASE NEWER` shows. */
int mt_render_diff_pprof(FILE *out, const struct mt_diff *d);

#endif
