/* The JSON report: {"processes":[...]} (docs/FORMAT.md lists every key). */
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <string.h>
#include <stdlib.h>
#include <sys/mman.h>

#include "export.h"
#include "memtap/render.h"

static void json_str(FILE *out, const char *s)
{
	fputc('"', out);
	for (const unsigned char *c = (const unsigned char *)s; *c; c++) {
		switch (*c) {
		case '"': fputs("\\\"", out); break;
		case '\\': fputs("\\\\", out); break;
		case '\n': fputs("\\n", out); break;
		case '\r': fputs("\\r", out); break;
		case '\t': fputs("\\t", out); break;
		default:
			if (*c < 0x20 || *c == 0x7f)
				fprintf(out, "\\u%04x", *c);
			else
				fputc(*c, out);
		}
	}
	fputc('"', out);
}

void mt_render_json_str(FILE *out, const char *s)
{
	json_str(out, s);
}

static void json_func(FILE *out, const struct mt_func *f)
{
	json_str(out, f->name);
	fprintf(out, ":{\"kind\":\"%s\",\"calls\":%" PRIu64 ",\"bytes\":%" PRIu64 ",\"failed\":%" PRIu64
		",\"hist\":[", mt_kind_name(f->kind), f->calls, f->bytes, f->failed);
	int first = 1;
	for (unsigned k = 0; k < MT_HIST_BUCKETS; k++) {
		if (!f->hist[k])
			continue;
		fprintf(out, "%s[%" PRIu64 ",%" PRIu64 "]", first ? "" : ",", mt_hist_lower(k), f->hist[k]);
		first = 0;
	}
	fputs("]}", out);
}

/* A site's stack symbolized (analyses): one object per frame, inlined
 * calls expanded (innermost first, as "frames"), cut below main and thread
 * entry unless --full-stacks. */
static void json_stack(FILE *out, struct mt_symbolizer *sym, const struct mt_site *s)
{
	uint32_t depth = mt_site_depth(sym, s);
	int first = 1;
	fputs(",\"stack\":[", out);
	for (uint32_t k = 0; k < depth; k++) {
		struct mt_frame f[MT_INLINE_MAX];
		int n = sym ? mt_symbolize(sym, s->frames[k], 1, f, MT_INLINE_MAX) : 0;
		for (int i = 0; i < (n > 0 ? n : 1); i++) {
			fprintf(out, "%s{\"address\":\"0x%" PRIx64 "\"", first ? "" : ",", s->frames[k]);
			first = 0;
			if (n > 0 && f[i].function && f[i].symbolized) {
				fputs(",\"function\":", out);
				json_str(out, f[i].function);
			} else {
				fputs(",\"function\":null", out);
			}
			if (n > 0 && f[i].file) {
				fputs(",\"file\":", out);
				json_str(out, f[i].file);
				fprintf(out, ",\"line\":%" PRIu32, f[i].line);
			} else {
				fputs(",\"file\":null,\"line\":null", out);
			}
			if (n > 0 && f[i].module) {
				fputs(",\"module\":", out);
				json_str(out, f[i].module);
			}
			if (n > 0 && f[i].inlined)
				fputs(",\"inlined\":true", out);
			fputc('}', out);
		}
	}
	fputc(']', out);
}

/* Call sites (--stacks): raw sampled counts, their estimates, and the
 * mappings needed to symbolize the frames. */
static void json_sites(FILE *out, const struct mt_profile *p)
{
	struct mt_symbolizer *sym = mt_symbolizer_new(p); /* NULL (ENOMEM): addresses only */
	if (p->flags & MT_PROFILE_FP_STACKS)
		fputs(",\"stacks\":\"frame-pointer\"", out);
	fprintf(out, ",\"sample_period\":%" PRIu64 ",\"unknown_frees\":%" PRIu64 ",\"sites\":[",
		p->sample_period, p->unknown_frees);
	for (uint32_t i = 0; i < p->nsites; i++) {
		const struct mt_site *s = &p->sites[i];
		struct mt_site_est e;
		mt_site_estimate(p, s, &e);
		fputs(i ? ",{\"function\":" : "{\"function\":", out);
		if (s->fn < p->nfuncs)
			json_str(out, p->funcs[s->fn].name);
		else
			fputs("null", out);
		fputs(",\"frames\":[", out);
		for (uint32_t k = 0; k < s->nframes; k++)
			fprintf(out, "%s\"0x%" PRIx64 "\"", k ? "," : "", s->frames[k]);
		fprintf(out, "],\"alloc_objects\":%" PRIu64 ",\"alloc_bytes\":%" PRIu64
			",\"inuse_objects\":%" PRIu64 ",\"inuse_bytes\":%" PRIu64 ",\"peak_objects\":%" PRIu64
			",\"peak_bytes\":%" PRIu64 ",\"temporary_objects\":%" PRIu64 ",\"temporary_bytes\":%" PRIu64,
			s->alloc_objects, s->alloc_bytes, s->inuse_objects, s->inuse_bytes, s->peak_objects,
			s->peak_bytes, s->temp_objects, s->temp_bytes);
		json_stack(out, sym, s);
		fprintf(out, ",\"estimated\":{\"alloc_objects\":%" PRIu64 ",\"alloc_bytes\":%" PRIu64
			",\"inuse_objects\":%" PRIu64 ",\"inuse_bytes\":%" PRIu64 ",\"peak_objects\":%" PRIu64
			",\"peak_bytes\":%" PRIu64 ",\"temporary_objects\":%" PRIu64 ",\"temporary_bytes\":%" PRIu64
			"}}", e.alloc_objects, e.alloc_bytes, e.inuse_objects, e.inuse_bytes, e.peak_objects,
			e.peak_bytes, e.temp_objects, e.temp_bytes);
	}
	mt_symbolizer_free(sym);
	fputs("],\"mappings\":[", out);
	for (uint32_t i = 0; i < p->nmaps; i++) {
		const struct mt_mapping *m = &p->maps[i];
		fprintf(out, "%s{\"start\":\"0x%" PRIx64 "\",\"end\":\"0x%" PRIx64 "\",\"offset\":\"0x%" PRIx64
			"\",\"perms\":\"%c%c%c\",\"build_id\":\"", i ? "," : "", m->start, m->end, m->offset,
			m->prot & PROT_READ ? 'r' : '-', m->prot & PROT_WRITE ? 'w' : '-',
			m->prot & PROT_EXEC ? 'x' : '-');
		for (uint32_t b = 0; b < m->build_id_len && b < sizeof(m->build_id); b++)
			fprintf(out, "%02x", m->build_id[b]);
		fputs("\",\"path\":", out);
		json_str(out, m->path);
		fputc('}', out);
	}
	fputc(']', out);
}

/* Pools (-f FUNC:pool=argM, BY = MT_POOL_BY_ARG): per function, every pool
 * by bytes, largest first; the address as a hex string, "other" for the
 * calls the collector could not give a pool of their own.  BY =
 * MT_POOL_BY_THREAD: "threads", the same with "tid" numbers. */
static int json_pools(FILE *out, const struct mt_profile *p, uint32_t by)
{
	uint32_t *order = calloc(p->npools, sizeof(*order));
	int first_fn = 1, thread = by == MT_POOL_BY_THREAD;
	if (!order)
		return -ENOMEM;
	for (uint32_t fn = 0; fn < p->nfuncs; fn++) {
		uint32_t n = mt_profile_pools_of(p, fn, 1, order);
		if (!n || p->pools[order[0]].by != by)
			continue;
		if (first_fn)
			fprintf(out, ",\"%s\":{", thread ? "threads" : "pools");
		if (!first_fn)
			fputc(',', out);
		first_fn = 0;
		json_str(out, p->funcs[fn].name);
		fputs(":[", out);
		for (uint32_t i = 0; i < n; i++) {
			const struct mt_pool *pl = &p->pools[order[i]];
			if (pl->pool == MT_POOL_OTHER)
				fprintf(out, "%s{\"%s\":\"other\"", i ? "," : "", thread ? "tid" : "pool");
			else if (thread)
				fprintf(out, "%s{\"tid\":%" PRIu64, i ? "," : "", pl->pool);
			else
				fprintf(out, "%s{\"pool\":\"0x%" PRIx64 "\"", i ? "," : "", pl->pool);
			fprintf(out, ",\"calls\":%" PRIu64 ",\"bytes\":%" PRIu64 "}", pl->calls, pl->bytes);
		}
		fputc(']', out);
	}
	if (!first_fn)
		fputc('}', out);
	free(order);
	return 0;
}

/* The timeline (--interval, part timeline): the parent link and one object
 * per point; rss/pool/heap only when known. */
static void json_timeline(FILE *out, const struct mt_profile *p)
{
	const struct mt_timeline *tl = &p->timeline;
	fprintf(out, ",\"timeline\":{\"interval_ns\":%" PRIu64 ",\"decimations\":%u", tl->interval_ns,
		tl->decimations);
	if (p->parent_start_ns)
		fprintf(out, ",\"parent\":{\"pid\":%u,\"start_ns\":%" PRIu64 "}", p->ppid, p->parent_start_ns);
	fputs(",\"points\":[", out);
	for (uint32_t i = 0; i < tl->n; i++) {
		const struct mt_tl_point *t = &tl->pts[i];
		fprintf(out, "%s{\"t_ns\":%" PRIu64 ",\"span_ns\":%" PRIu64 ",\"in_use_bytes\":%" PRId64
			",\"in_use_max\":%" PRId64 ",\"alloc_bytes\":%" PRIu64 ",\"alloc_calls\":%" PRIu64
			",\"free_bytes\":%" PRIu64 ",\"free_calls\":%" PRIu64, i ? "," : "", t->t_ns, t->span_ns,
			t->in_use_bytes, t->in_use_max, t->alloc_bytes, t->alloc_calls, t->free_bytes, t->free_calls);
		if (t->have & MT_TL_HAVE_RSS)
			fprintf(out, ",\"rss_bytes\":%" PRIu64, t->rss_bytes);
		if (t->have & MT_TL_HAVE_POOLS)
			fprintf(out, ",\"pool_bytes\":%" PRIu64, t->pool_bytes);
		if (t->have & MT_TL_HAVE_HEAP)
			fprintf(out, ",\"heap_bytes\":%" PRIu64, t->heap_bytes);
		fprintf(out, ",\"merged\":%u}", t->merged);
	}
	fputs("]}", out);
}

int mt_render_json(FILE *out, const struct mt_report_item *items, size_t n)
{
	fputs("{\"processes\":[", out);
	for (size_t i = 0; i < n; i++) {
		const struct mt_profile *p = items[i].profile;
		fprintf(out, "%s{\"pid\":%u,\"ppid\":%u,\"uid\":%u,\"command\":", i ? "," : "", p->pid,
			p->ppid, p->uid);
		json_str(out, p->command);
		fputs(",\"exe\":", out);
		json_str(out, p->exe);
		fprintf(out, ",\"seq\":%u,\"reason\":\"%s\",\"active\":%s,\"run_id\":%" PRIu64
			",\"start_ns\":%" PRIu64 ",\"dump_ns\":%" PRIu64, p->seq, mt_reason_name(p->reason),
			p->flags & MT_PROFILE_ACTIVE ? "true" : "false", p->run_id, p->start_ns, p->dump_ns);
		if (items[i].path) {
			fputs(",\"file\":", out);
			json_str(out, items[i].path);
		}
		if (p->end) {
			fprintf(out, ",\"ended\":{\"how\":\"%s\",\"code\":%d", mt_end_name(p->end), p->end_code);
			if (p->end == MT_END_SIGNAL && p->end_code > 0 && p->end_code < 65 && sigabbrev_np(p->end_code))
				fprintf(out, ",\"signal\":\"SIG%s\"", sigabbrev_np(p->end_code));
			fprintf(out, ",\"recovered\":%s}", p->flags & MT_PROFILE_RECOVERED ? "true" : "false");
		}
		if (p->flags & MT_PROFILE_SUSPECT)
			fputs(",\"suspect\":true", out);
		if (items[i].npids > 1) {
			fputs(",\"merged_pids\":[", out);
			for (size_t k = 0; k < items[i].npids; k++)
				fprintf(out, "%s%u", k ? "," : "", items[i].pids[k]);
			fputc(']', out);
		}
		fputs(",\"functions\":{", out);
		for (uint32_t f = 0; f < p->nfuncs; f++) {
			if (f)
				fputc(',', out);
			json_func(out, &p->funcs[f]);
		}
		fprintf(out, "},\"totals\":{\"allocated_bytes\":%" PRIu64 ",\"freed_bytes\":%" PRIu64
			",\"in_use_bytes\":%" PRId64 ",\"peak_in_use_bytes\":%" PRIu64 "}",
			p->totals.allocated_bytes, p->totals.freed_bytes, p->totals.in_use_bytes,
			p->totals.peak_in_use_bytes);
		mt_render_analyses_json(out, p);
		if (p->nsites)
			json_sites(out, p);
		if (p->npools && (json_pools(out, p, MT_POOL_BY_ARG) || json_pools(out, p, MT_POOL_BY_THREAD)))
			return -ENOMEM;
		mt_render_pools_json(out, p);
		mt_render_glibc_json(out, p);
		if (p->leaks && mt_render_leaks_json(out, p)) /* leaks */
			return -EIO;
		if (p->timeline.n)
			json_timeline(out, p);
		fputc('}', out);
	}
	fputs("]}\n", out);
	return fflush(out) || ferror(out) ? -EIO : 0;
}
