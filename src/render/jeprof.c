/*
 * gperftools' heap profile text, which both jeprof (ReadHeapProfile) and
 * `go tool pprof` (legacy_profile.go, parseHeap) read:
 *
 *   heap profile:   IN_OBJ:  IN_BYTES [ALLOC_OBJ: ALLOC_BYTES] @ heap_v2/PERIOD
 *      IN_OBJ:  IN_BYTES [ALLOC_OBJ: ALLOC_BYTES] @ 0xADDR 0xADDR ...
 *   (blank line)
 *   MAPPED_LIBRARIES:
 *   START-END PERMS OFFSET 00:00 0 PATH
 *
 * With `@ heap_v2/PERIOD` both readers un-sample each line themselves
 * (1/(1-exp(-mean/PERIOD))), so the counts are the raw samples; when every
 * allocation was recorded the tag is `@ heapprofile` (no scaling).  The tag
 * is always written: without it jeprof takes equal in-use and allocated
 * totals for old-style sampling and scales by 128 KiB.  jemalloc's own
 * `heap_v2/PERIOD` first line (with `t*:` lines per stack) is a different
 * reader in jeprof (ReadThreadedHeapProfile), which pprof does not know.
 *
 * Addresses are the raw return addresses, leaf first; readers subtract 1 from
 * caller frames.  The mappings let them symbolize: jeprof takes executable
 * lines whose path is a shared object or the program named on its command
 * line (which must then be the same file, by absolute path).
 */
#include <errno.h>
#include <inttypes.h>
#include <sys/mman.h>

#include "export.h"

int mt_render_jeprof(FILE *out, const struct mt_profile *p)
{
	uint64_t t[4] = {0, 0, 0, 0};
	for (uint32_t i = 0; i < p->nsites; i++) {
		const struct mt_site *s = &p->sites[i];
		t[0] += s->inuse_objects;
		t[1] += s->inuse_objects ? s->inuse_bytes : 0;
		t[2] += s->alloc_objects;
		t[3] += s->alloc_objects ? s->alloc_bytes : 0;
	}
	fprintf(out, "heap profile: %6" PRIu64 ": %8" PRIu64 " [%6" PRIu64 ": %8" PRIu64 "] @ ", t[0],
		t[1], t[2], t[3]);
	if (p->sample_period > 1)
		fprintf(out, "heap_v2/%" PRIu64 "\n", p->sample_period);
	else
		fputs("heapprofile\n", out);
	/* Stacks cut below main and thread entry, as every export (NULL on
	 * ENOMEM: whole stacks). */
	struct mt_symbolizer *sym = mt_symbolizer_new(p);
	for (uint32_t i = 0; i < p->nsites; i++) {
		const struct mt_site *s = &p->sites[i];
		/* Readers reject bytes without objects, and a line without
		 * addresses. */
		if ((!s->inuse_objects && !s->alloc_objects) || !s->nframes)
			continue;
		fprintf(out, "%6" PRIu64 ": %8" PRIu64 " [%6" PRIu64 ": %8" PRIu64 "] @", s->inuse_objects,
			s->inuse_objects ? s->inuse_bytes : 0, s->alloc_objects,
			s->alloc_objects ? s->alloc_bytes : 0);
		uint32_t depth = mt_site_depth(sym, s);
		for (uint32_t k = 0; k < depth; k++)
			fprintf(out, " 0x%08" PRIx64, s->frames[k]);
		fputc('\n', out);
	}
	mt_symbolizer_free(sym);
	fputs("\nMAPPED_LIBRARIES:\n", out);
	for (uint32_t i = 0; i < p->nmaps; i++) {
		const struct mt_mapping *m = &p->maps[i];
		if (!m->path[0])
			continue;
		fprintf(out, "%08" PRIx64 "-%08" PRIx64 " %c%c%cp %08" PRIx64 " 00:00 0 %s\n", m->start,
			m->end, m->prot & PROT_READ ? 'r' : '-', m->prot & PROT_WRITE ? 'w' : '-',
			m->prot & PROT_EXEC ? 'x' : '-', m->offset, m->path);
	}
	return fflush(out) || ferror(out) ? -EIO : 0;
}
