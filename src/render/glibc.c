/*
 * The glibc part of the reports: the allocator's own statistics (any
 * allocator) and --glibc's summary, laid out as seqs/003's SystemTap script
 * printed it (contention, active arenas, heaps, total sbrk, the final mmap
 * threshold), with the arenas and the thresholds' history added.
 */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "memtap/glibc.h"
#include "memtap/render.h"

static const char *sources(uint32_t f, char *buf, size_t len)
{
	snprintf(buf, len, "%s%s%s%s%s", f & MT_GLIBC_F_MAPS ? "maps+heap_info " : "",
		 f & MT_GLIBC_F_SYMBOLS ? "libc6-dbg-symbols " : "", f & MT_GLIBC_F_THREADS ? "thread_arena " : "",
		 f & MT_GLIBC_F_WAITS ? "lock-wait-samples " : "", f & MT_GLIBC_F_SYSCALLS ? "syscalls " : "");
	size_t n = strlen(buf);
	if (n)
		buf[n - 1] = '\0';
	return buf;
}

static void text_stats(FILE *out, const struct mt_profile *p)
{
	const struct mt_alloc_stats *s = p->stats;
	fprintf(out, "\nAllocator statistics (%s, from %s", s->allocator, s->source);
	if (p->dump_ns && s->taken_ns && p->dump_ns >= s->taken_ns)
		fprintf(out, "; taken %.1f s before this profile", (double)(p->dump_ns - s->taken_ns) / 1e9);
	fprintf(out, "):\n");
	if (!s->n)
		fprintf(out, "  none: no statistics interface known to memtap for this allocator\n");
	for (uint32_t i = 0; i < s->n; i++)
		mt_render_count_row(out, s->v[i].key, s->v[i].value);
}

static void text_glibc(FILE *out, const struct mt_glibc *g)
{
	char src[128];
	fprintf(out, "\nglibc internals (--glibc; from %s):\n", sources(g->flags, src, sizeof(src)));
	if (g->flags & MT_GLIBC_F_WAITS) {
		fprintf(out, "Contention (threads blocked in futex on an arena's lock; %" PRIu64
			" samples, one every %" PRIu64 " ms):\n", g->samples, g->sample_ms);
		int any = 0;
		for (uint32_t i = 0; i < g->nthreads; i++)
			if (g->threads[i].lock_waits) {
				fprintf(out, "\t%u: %" PRIu64 " waits\n", g->threads[i].tid, g->threads[i].lock_waits);
				any = 1;
			}
		if (!any)
			fprintf(out, "\tnone seen\n");
	}
	if (g->flags & MT_GLIBC_F_THREADS) {
		fprintf(out, "Active arenas (thread -> arena, at the last look):\n");
		for (uint32_t i = 0; i < g->nthreads; i++)
			if (g->threads[i].arena && g->threads[i].alive)
				fprintf(out, "\t%u -> 0x%" PRIx64 "%s\n", g->threads[i].tid, g->threads[i].arena,
					g->threads[i].arenas_used > 1 ? " (moved arenas)" : "");
	}
	fprintf(out, "Arenas: %u\n", g->narenas);
	for (uint32_t i = 0; i < g->narenas; i++) {
		const struct mt_glibc_arena *a = &g->arenas[i];
		if (a->addr)
			fprintf(out, "\t0x%" PRIx64, a->addr);
		else
			fprintf(out, "\t(main_arena)");
		fprintf(out, "%s %u heap%s, %" PRIu64 " bytes from the system", a->main ? " main (sbrk)," : ",",
			a->heaps, a->heaps == 1 ? "" : "s", a->system_bytes);
		if (g->flags & MT_GLIBC_F_SYMBOLS)
			fprintf(out, ", %" PRIu64 " attached threads", a->attached_threads);
		if (g->flags & MT_GLIBC_F_WAITS)
			fprintf(out, ", %" PRIu64 " lock waits", a->lock_waits);
		fputc('\n', out);
	}
	fprintf(out, "Allocated heaps:\n");
	for (uint32_t i = 0; i < g->nheaps; i++)
		fprintf(out, "\t0x%" PRIx64 " -> %" PRIu64 " bytes (arena 0x%" PRIx64 ")\n", g->heaps[i].addr,
			g->heaps[i].size, g->heaps[i].arena);
	if (!g->nheaps)
		fprintf(out, "\tnone (only the main arena's sbrk heap)\n");
	fprintf(out, "Total sbrk: %" PRIu64 " bytes", g->sbrk_bytes);
	if (g->sbrk_grows || g->sbrk_shrinks)
		fprintf(out, " (grown %" PRIu64 " bytes in %" PRIu64 " steps, shrunk %" PRIu64 " in %" PRIu64 "%s)",
			g->sbrk_grow_bytes, g->sbrk_grows, g->sbrk_shrink_bytes, g->sbrk_shrinks,
			g->flags & MT_GLIBC_F_SYSCALLS ? "" : "; as seen between looks");
	fputc('\n', out);
	if (g->mmap_threshold) {
		fprintf(out, "Mmap threshold in the end: %" PRIu64 " kb (trim threshold %" PRIu64 " kb)\n",
			g->mmap_threshold / 1024, g->trim_threshold / 1024);
		for (uint32_t i = 1; i < g->nchanges; i++)
			fprintf(out, "\tchanged to mmap %" PRIu64 " bytes, trim %" PRIu64 " bytes\n",
				g->changes[i].mmap_threshold, g->changes[i].trim_threshold);
		fprintf(out, "Mmapped chunks: %" PRIu64 " (%" PRIu64 " bytes)\n", g->mmapped_chunks, g->mmapped_bytes);
	} else {
		fprintf(out, "Mmap threshold: unknown (glibc keeps it in mp_, which memtap reads with the "
			"libc6-dbg symbols: apt-get install libc6-dbg)\n");
	}
	if (g->flags & MT_GLIBC_F_TRUNC)
		fprintf(out, "(some lists were longer than memtap's tables: the rest is not listed)\n");
}

void mt_render_glibc_text(FILE *out, const struct mt_profile *p)
{
	if (p->stats)
		text_stats(out, p);
	if (p->glibc)
		text_glibc(out, p->glibc);
}

static void json_glibc(FILE *out, const struct mt_glibc *g)
{
	char src[128];
	fprintf(out, ",\"glibc\":{\"source\":");
	mt_render_json_str(out, sources(g->flags, src, sizeof(src)));
	fprintf(out, ",\"taken_ns\":%" PRIu64 ",\"sbrk_bytes\":%" PRIu64 ",\"sbrk_base\":\"0x%" PRIx64
		"\",\"brk\":\"0x%" PRIx64 "\",\"sbrk_grow_bytes\":%" PRIu64 ",\"sbrk_shrink_bytes\":%" PRIu64
		",\"sbrk_grows\":%" PRIu64 ",\"sbrk_shrinks\":%" PRIu64,
		g->taken_ns, g->sbrk_bytes, g->sbrk_base, g->brk, g->sbrk_grow_bytes, g->sbrk_shrink_bytes,
		g->sbrk_grows, g->sbrk_shrinks);
	if (g->mmap_threshold)
		fprintf(out, ",\"mmap_threshold\":%" PRIu64 ",\"trim_threshold\":%" PRIu64 ",\"mmapped_chunks\":%" PRIu64
			",\"mmapped_bytes\":%" PRIu64 ",\"arena_max\":%" PRIu64,
			g->mmap_threshold, g->trim_threshold, g->mmapped_chunks, g->mmapped_bytes, g->arena_max);
	else
		fprintf(out, ",\"mmap_threshold\":null");
	fprintf(out, ",\"arenas\":[");
	for (uint32_t i = 0; i < g->narenas; i++) {
		const struct mt_glibc_arena *a = &g->arenas[i];
		fprintf(out, "%s{\"addr\":", i ? "," : "");
		if (a->addr)
			fprintf(out, "\"0x%" PRIx64 "\"", a->addr);
		else
			fprintf(out, "null");
		fprintf(out, ",\"main\":%s,\"heaps\":%u,\"heap_bytes\":%" PRIu64 ",\"system_bytes\":%" PRIu64,
			a->main ? "true" : "false", a->heaps, a->heap_bytes, a->system_bytes);
		if (g->flags & MT_GLIBC_F_SYMBOLS)
			fprintf(out, ",\"attached_threads\":%" PRIu64, a->attached_threads);
		if (g->flags & MT_GLIBC_F_WAITS)
			fprintf(out, ",\"lock_waits\":%" PRIu64, a->lock_waits);
		fputc('}', out);
	}
	fprintf(out, "],\"heaps\":[");
	for (uint32_t i = 0; i < g->nheaps; i++)
		fprintf(out, "%s{\"addr\":\"0x%" PRIx64 "\",\"arena\":\"0x%" PRIx64 "\",\"size\":%" PRIu64
			",\"mprotect_size\":%" PRIu64 "}", i ? "," : "", g->heaps[i].addr, g->heaps[i].arena,
			g->heaps[i].size, g->heaps[i].mprotect_size);
	fprintf(out, "],\"threads\":[");
	for (uint32_t i = 0; i < g->nthreads; i++) {
		const struct mt_glibc_thread *t = &g->threads[i];
		fprintf(out, "%s{\"tid\":%u,\"alive\":%s,\"arena\":", i ? "," : "", t->tid, t->alive ? "true" : "false");
		if (t->arena)
			fprintf(out, "\"0x%" PRIx64 "\"", t->arena);
		else
			fprintf(out, "null");
		fprintf(out, ",\"arenas_used\":%" PRIu64 ",\"lock_waits\":%" PRIu64 "}", t->arenas_used, t->lock_waits);
	}
	fprintf(out, "],\"threshold_changes\":[");
	for (uint32_t i = 0; i < g->nchanges; i++)
		fprintf(out, "%s{\"ns\":%" PRIu64 ",\"mmap_threshold\":%" PRIu64 ",\"trim_threshold\":%" PRIu64 "}",
			i ? "," : "", g->changes[i].ns, g->changes[i].mmap_threshold, g->changes[i].trim_threshold);
	fprintf(out, "],\"lock_wait_samples\":%" PRIu64 ",\"sample_ms\":%" PRIu64 ",\"truncated\":%s}", g->samples,
		g->sample_ms, g->flags & MT_GLIBC_F_TRUNC ? "true" : "false");
}

void mt_render_glibc_json(FILE *out, const struct mt_profile *p)
{
	if (p->stats) {
		const struct mt_alloc_stats *s = p->stats;
		fprintf(out, ",\"stats\":{\"allocator\":");
		mt_render_json_str(out, s->allocator);
		fprintf(out, ",\"source\":");
		mt_render_json_str(out, s->source);
		fprintf(out, ",\"taken_ns\":%" PRIu64 ",\"values\":{", s->taken_ns);
		for (uint32_t i = 0; i < s->n; i++) {
			if (i)
				fputc(',', out);
			mt_render_json_str(out, s->v[i].key);
			fprintf(out, ":%" PRIu64, s->v[i].value);
		}
		fprintf(out, "}}");
	}
	if (p->glibc)
		json_glibc(out, p->glibc);
}
