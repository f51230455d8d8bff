/*
 * Internals shared by the heap-profile exports (pprof.c, jeprof.c,
 * collapsed.c, flamegraph.c, sites_table.c, diff.c); the public entry points are in
 * include/memtap/render.h.
 *
 * Sites' frames are return addresses, leaf first: frames[0] returns into the
 * caller of malloc.  Every frame is therefore symbolized with RETURN_ADDR=1
 * (the call instruction), while exports that carry raw addresses (pprof,
 * jeprof) write them unchanged, since their readers subtract 1 themselves.
 */
#ifndef MEMTAP_RENDER_EXPORT_H
#define MEMTAP_RENDER_EXPORT_H

#include <stdint.h>
#include <stdio.h>

#include "memtap/render.h"
#include "memtap/symbolize.h"

/* One folded stack: "root;...;leaf" (no ';' inside names) and its value. */
struct mt_stack {
	char *key;
	uint64_t value;
};

/* The sites of every item folded into symbolized stacks (root first, inlined
 * frames expanded), identical stacks summed, sorted by key; sites whose value
 * is 0 are left out.  0 or -ENOMEM. */
int mt_stacks_collect(const struct mt_report_item *items, size_t n, enum mt_value v,
		      struct mt_stack **out, size_t *nout);
void mt_stacks_free(struct mt_stack *s, size_t n);

/* Whether the symbolizer found nothing better than "module+0x..." or an
 * address for this frame. */
int mt_frame_unknown(const struct mt_frame *f);

/* How many of a site's frames (leaf first) renderers show: up to main, or
 * up to thread entry (start_thread, clone3), the C runtime's frames below
 * left out; all of them with mt_render_full_stacks (--full-stacks) or when
 * no frame names main or a runtime entry. */
uint32_t mt_site_depth(struct mt_symbolizer *sym, const struct mt_site *s);

/* The allocation function a site called ("?" when unknown). */
const char *mt_site_func(const struct mt_profile *p, const struct mt_site *s);

/* Writes a site's symbolized stack, one line per frame (inlined ones
 * marked), innermost first, at most MAXFRAMES frames, each line starting with
 * INDENT. */
void mt_render_stack(FILE *out, struct mt_symbolizer *sym, const struct mt_site *s,
		     const char *indent, unsigned maxframes);

/* One pprof sample: a site of profile P with its four values
 * (alloc_objects, alloc_space, inuse_objects, inuse_space). */
struct mt_pprof_sample {
	const struct mt_profile *p;
	const struct mt_site *s;
	int64_t v[4];
};

/* Writes a gzip-compressed pprof Profile of SAMPLES.  PROFS (NPROFS) are the
 * profiles the samples come from: their mappings are united and each one's
 * sites are symbolized with its own mappings.  IDENT gives the time, the
 * period and the comment; DURATION_NS the profile's duration. */
int mt_pprof_write(FILE *out, const struct mt_profile *ident, const struct mt_profile *const *profs,
		   size_t nprofs, const struct mt_pprof_sample *samples, size_t nsamples,
		   int64_t duration_ns, const char *comment);
/* The same with DEFAULT_TYPE (an index of the four sample types) as the one
 * pprof shows first: 3 (inuse_space) for a heap profile, 1 (alloc_space)
 * for Go's /debug/pprof/allocs; SYMS, when not NULL, the caller's
 * symbolizers for PROFS (a NULL entry: one made and freed here), which
 * must be for the same mappings (a server's endpoint keeps them between
 * requests). */
int mt_pprof_write_typed(FILE *out, const struct mt_profile *ident, const struct mt_profile *const *profs,
			 size_t nprofs, const struct mt_pprof_sample *samples, size_t nsamples,
			 int64_t duration_ns, const char *comment, unsigned default_type,
			 struct mt_symbolizer *const *syms);

#endif
