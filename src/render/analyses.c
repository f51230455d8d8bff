/*
 * The analyses heaptrack users look for, over the profile model: stacks
 * trimmed below main and thread entry, and the per-process figures of
 * docs/ANALYSES.md (temporary allocations, run time, allocation rate, peak
 * RSS).  Renderers call these; the model keeps everything it was given.
 */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "export.h"

int mt_render_full_stacks;

/* Frames that are the C runtime's, not the program's: what runs main and
 * what starts a thread.  A stack is cut where they begin. */
static int runtime_entry(const char *fn)
{
	static const char *const names[] = {
		"_start", "__libc_start_main", "__libc_start_call_main", "__libc_start_main_impl",
		"start_thread", "clone", "clone3", "__clone", "__clone3", "__clone_internal", "thread_start",
	};
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		if (!strcmp(fn, names[i]))
			return 1;
	/* Versioned aliases (__libc_start_main@GLIBC_2.34, __libc_start_main_alias_2). */
	return !strncmp(fn, "__libc_start_main", 17);
}

uint32_t mt_site_depth(struct mt_symbolizer *sym, const struct mt_site *s)
{
	if (mt_render_full_stacks || !sym)
		return s->nframes;
	/* Leaf first: keep up to and including main; else cut at the first
	 * runtime frame (a thread's stack: start_thread, clone3 above its
	 * routine).  A stack that would be left empty is kept whole. */
	for (uint32_t i = 0; i < s->nframes; i++) {
		struct mt_frame f[MT_INLINE_MAX];
		int n = mt_symbolize(sym, s->frames[i], 1, f, MT_INLINE_MAX);
		for (int k = 0; k < n; k++) {
			if (!f[k].function || !f[k].symbolized)
				continue;
			if (!strcmp(f[k].function, "main"))
				return i + 1;
			if (runtime_entry(f[k].function))
				return i ? i : s->nframes;
		}
	}
	return s->nframes;
}

void mt_analyses_of(const struct mt_profile *p, struct mt_analyses *a)
{
	memset(a, 0, sizeof(*a));
	for (uint32_t i = 0; i < p->nfuncs; i++)
		if (p->funcs[i].kind == MT_KIND_ALLOC)
			a->allocations += p->funcs[i].calls;
	if (p->start_ns && p->dump_ns > p->start_ns)
		a->run_ns = p->dump_ns - p->start_ns;
	if (a->run_ns)
		a->per_second = (double)a->allocations * 1e9 / (double)a->run_ns;
	/* Frame-pointer sites (eBPF) see no frees: no temporaries to tell. */
	a->have_temp = p->nsites && !(p->flags & MT_PROFILE_FP_STACKS);
	for (uint32_t i = 0; i < p->nsites && a->have_temp; i++) {
		struct mt_site_est e;
		mt_site_estimate(p, &p->sites[i], &e);
		a->temp_objects += e.temp_objects;
		a->temp_bytes += e.temp_bytes;
	}
	a->peak_rss_bytes = p->peak_rss_bytes;
}

/* N bytes as "14.50 MiB (15204352 bytes)": the unit named, the exact count kept. */
static void human_bytes(char *out, size_t len, uint64_t n)
{
	static const char *const units[] = {"KiB", "MiB", "GiB", "TiB"};
	double v = (double)n;
	int u = -1;
	while (v >= 1024 && u < 3) {
		v /= 1024;
		u++;
	}
	if (u < 0)
		snprintf(out, len, "%" PRIu64 " byte%s", n, n == 1 ? "" : "s");
	else
		snprintf(out, len, "%.2f %s (%" PRIu64 " bytes)", v, units[u], n);
}

static void row(FILE *out, const char *key, const char *value)
{
	fprintf(out, "  %-26s %s\n", key, value);
}

void mt_render_analyses_text(FILE *out, const struct mt_profile *p, int merged)
{
	fprintf(out, "\nRun time, allocation rate, peak RSS%s:\n",
		p->nsites && !(p->flags & MT_PROFILE_FP_STACKS) ? " and temporary allocations" : "");
	mt_render_analyses_rows(out, p, merged);
}

void mt_render_analyses_rows(FILE *out, const struct mt_profile *p, int merged)
{
	struct mt_analyses a;
	char v[160], b[96];
	mt_analyses_of(p, &a);
	if (a.run_ns && !merged)
		snprintf(v, sizeof(v), "%.3f s%s", (double)a.run_ns / 1e9,
			 p->end ? "" : " (traced so far: the process was running)");
	else
		snprintf(v, sizeof(v), "unknown%s", merged ? " (several processes)" : "");
	row(out, "run time", v);
	if (a.run_ns && !merged)
		snprintf(v, sizeof(v), "%" PRIu64 " call%s, %.0f per second", a.allocations, a.allocations == 1 ? "" : "s",
			 a.per_second);
	else
		snprintf(v, sizeof(v), "%" PRIu64 " call%s", a.allocations, a.allocations == 1 ? "" : "s");
	row(out, "allocations", v);
	if (a.peak_rss_bytes) {
		human_bytes(b, sizeof(b), a.peak_rss_bytes);
		snprintf(v, sizeof(v), "%s%s", b, merged ? ", sum of the processes' peaks" : "");
	} else {
		snprintf(v, sizeof(v), "unknown (the process ended before memtap could read it)");
	}
	row(out, "peak RSS", v);
	if (a.have_temp) {
		human_bytes(b, sizeof(b), a.temp_bytes);
		snprintf(v, sizeof(v), "%s%" PRIu64 " (%.1f%% of allocations), %s requested",
			 p->sample_period > 1 ? "~" : "", a.temp_objects,
			 a.allocations ? 100.0 * (double)a.temp_objects / (double)a.allocations : 0.0, b);
		row(out, "temporary allocations", v);
		fprintf(out, "  (freed by the thread that made them, no other allocation of that thread in\n"
			"  between%s)\n", p->sample_period > 1 ? "; estimated from the sampled ones" : "");
	}
}

void mt_render_analyses_json(FILE *out, const struct mt_profile *p)
{
	struct mt_analyses a;
	mt_analyses_of(p, &a);
	fprintf(out, ",\"analyses\":{\"run_time_ns\":%" PRIu64 ",\"allocations\":%" PRIu64
		",\"allocations_per_second\":%.1f,\"peak_rss_bytes\":%" PRIu64, a.run_ns, a.allocations,
		a.per_second, a.peak_rss_bytes);
	if (a.have_temp)
		fprintf(out, ",\"temporary_allocations\":%" PRIu64 ",\"temporary_bytes\":%" PRIu64
			",\"temporary_estimated\":%s", a.temp_objects, a.temp_bytes,
			p->sample_period > 1 ? "true" : "false");
	fputc('}', out);
}
