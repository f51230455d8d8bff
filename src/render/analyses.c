/*
 * The analyses heaptrack users look for, over the profile model: stacks
 * trimmed below main and thread entry, and the per-process figures of
 * docs/ANALYSES.md (temporary allocations, run time, allocation rate, peak
 * RSS).  Renderers call these; the model keeps everything it was given.
 */
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
