/*
 * APR pools (--pools) in reports: the text section (tree of live pools,
 * totals by tag, quantize of lifetimes and of bytes per pool, the pools
 * that only grow), the JSON keys `pools` and `pool_summary`, and the event
 * log in APR's pool-debug line format (docs/POOLS.md).
 */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "memtap/pools.h"
#include "memtap/render.h"
#include "memtap/symbolize.h"

#define TREE_MAX 200 /* live pools shown in the tree; the rest are counted */

static const char *tag_of(const struct mt_apr_pool *p)
{
	return p->tag[0] ? p->tag : "-";
}

/* "1.5 s", "320 ms", "45 us" */
static void fmt_age(char *out, size_t len, uint64_t ns)
{
	if (ns >= 10000000000ull)
		snprintf(out, len, "%" PRIu64 " s", ns / 1000000000u);
	else if (ns >= 1000000000u)
		snprintf(out, len, "%.1f s", (double)ns / 1e9);
	else if (ns >= 1000000u)
		snprintf(out, len, "%" PRIu64 " ms", ns / 1000000u);
	else
		snprintf(out, len, "%" PRIu64 " us", ns / 1000u);
}

/* Where a pool was created: function (file:line) from the profile's
 * mappings, or the address. */
static void fmt_caller(struct mt_symbolizer *sy, uint64_t addr, char *out, size_t len)
{
	struct mt_frame f[MT_INLINE_MAX];
	int n = sy && addr ? mt_symbolize(sy, addr, 1, f, MT_INLINE_MAX) : 0;
	if (n <= 0) {
		snprintf(out, len, "0x%" PRIx64, addr);
		return;
	}
	const struct mt_frame *o = &f[n - 1]; /* the outermost: the function that made the call */
	const char *file = o->file ? strrchr(o->file, '/') : NULL;
	file = file ? file + 1 : o->file;
	if (file && o->line)
		snprintf(out, len, "%s (%s:%u)", o->function, file, o->line);
	else
		snprintf(out, len, "%s", o->function);
}

/* Indices of the live pools, and for each its children, by bytes. */
struct tree {
	const struct mt_apr *a;
	uint32_t *live, nlive;
	int shown;
};

static int by_bytes_desc(const void *x, const void *y, void *ctx)
{
	const struct mt_apr *a = ctx;
	const struct mt_apr_pool *p = &a->pools[*(const uint32_t *)x], *q = &a->pools[*(const uint32_t *)y];
	if (p->bytes != q->bytes)
		return p->bytes > q->bytes ? -1 : 1;
	return p->created_ns < q->created_ns ? -1 : p->created_ns > q->created_ns;
}

static int is_live_pool(const struct mt_apr *a, uint64_t addr)
{
	for (uint32_t i = 0; i < a->npools; i++)
		if (!a->pools[i].destroyed_ns && a->pools[i].pool == addr)
			return 1;
	return 0;
}

/* Live pool K (an index into t->live) and its live children, by bytes. */
static void tree_node(FILE *out, struct tree *t, uint32_t k, int depth, uint64_t now, struct mt_symbolizer *sy)
{
	const struct mt_apr_pool *p = &t->a->pools[t->live[k]];
	if (t->shown++ < TREE_MAX) {
		char age[32], key[128], where[256];
		fmt_age(age, sizeof(age), now > p->created_ns ? now - p->created_ns : 0);
		snprintf(key, sizeof(key), "%*s%s", 2 * depth, "", tag_of(p));
		fmt_caller(sy, p->caller, where, sizeof(where));
		fprintf(out, "  %-28s %12" PRIu64 " %12" PRIu64 " %9" PRIu64 " %7" PRIu64 " %8s%s  %s\n", key,
			p->cur_bytes, p->bytes, p->calls, p->clears, age,
			mt_apr_growing(p, now) ? "  GROWS" : "", where);
	}
	if (depth > 32)
		return;
	for (uint32_t c = 0; c < t->nlive; c++)
		if (c != k && t->a->pools[t->live[c]].parent == p->pool)
			tree_node(out, t, c, depth + 1, now, sy);
}

/* Tags of live and destroyed pools together. */
struct tag_row {
	char tag[MT_APR_TAG_MAX];
	uint64_t pools, live, calls, bytes, live_bytes, clears, life_us, destroyed;
};

static int row_cmp(const void *x, const void *y)
{
	const struct tag_row *a = x, *b = y;
	if (a->bytes != b->bytes)
		return a->bytes > b->bytes ? -1 : 1;
	return strcmp(a->tag, b->tag);
}

static struct tag_row *tag_rows(const struct mt_apr *a, uint32_t *n)
{
	struct tag_row *r = calloc((size_t)a->ntags + a->npools + 1, sizeof(*r));
	*n = 0;
	if (!r)
		return NULL;
	for (uint32_t i = 0; i < a->ntags + a->npools; i++) {
		const struct mt_apr_tag *t = i < a->ntags ? &a->tags[i] : NULL;
		const struct mt_apr_pool *p = t ? NULL : &a->pools[i - a->ntags];
		if (p && p->destroyed_ns)
			continue; /* in its tag's aggregate already */
		const char *name = t ? t->tag : tag_of(p);
		uint32_t k = 0;
		while (k < *n && strcmp(r[k].tag, name))
			k++;
		if (k == *n)
			snprintf(r[(*n)++].tag, MT_APR_TAG_MAX, "%s", name);
		if (t) {
			r[k].pools += t->pools;
			r[k].destroyed += t->pools;
			r[k].calls += t->calls;
			r[k].bytes += t->bytes;
			r[k].clears += t->clears;
			r[k].life_us += t->life_us;
		} else {
			r[k].pools++;
			r[k].live++;
			r[k].calls += p->calls;
			r[k].bytes += p->bytes;
			r[k].live_bytes += p->cur_bytes;
			r[k].clears += p->clears;
		}
	}
	qsort(r, *n, sizeof(*r), row_cmp);
	return r;
}

int mt_render_pools_text(FILE *out, const struct mt_profile *p, int full)
{
	const struct mt_apr *a = p->apr;
	if (!a)
		return 0;
	uint64_t now = p->dump_ns;
	fprintf(out, "\nAPR pools (--pools):");
	if (!a->hooked) {
		fprintf(out, " none: the process had no libapr pool functions while traced\n");
		return ferror(out) ? -EIO : 0;
	}
	uint32_t nlive = 0;
	for (uint32_t i = 0; i < a->npools; i++)
		nlive += !a->pools[i].destroyed_ns;
	fprintf(out, " %" PRIu32 " live, %" PRIu64 " created and %" PRIu64 " destroyed while traced\n", nlive,
		a->created, a->destroyed);
	if (a->untracked_calls)
		fprintf(out, "  %" PRIu64 " allocations (%" PRIu64 " bytes) on pools made before tracing began (or "
			"not tracked)\n", a->untracked_calls, a->untracked_bytes);
	if (a->dropped)
		fprintf(out, "  %" PRIu64 " pools not tracked: the table of %d live pools had no free slot near "
			"theirs\n", a->dropped, MT_APR_SLOTS);
	if (a->tags_full)
		fprintf(out, "  %" PRIu64 " destroyed pools summed under \"(other tags)\": more than %d tags\n",
			a->tags_full, MT_APR_TAGS - 1);

	struct mt_symbolizer *sy = p->nmaps ? mt_symbolizer_new(p) : NULL;
	uint32_t *live = calloc(nlive + 1, sizeof(*live));
	uint32_t nrows = 0;
	struct tag_row *rows = tag_rows(a, &nrows);
	int ret = 0;
	if (!live || !rows) {
		ret = -ENOMEM;
		goto out;
	}
	nlive = 0;
	for (uint32_t i = 0; i < a->npools; i++)
		if (!a->pools[i].destroyed_ns)
			live[nlive++] = i;
	qsort_r(live, nlive, sizeof(*live), by_bytes_desc, (void *)a);

	/* Pools that only grow, first: they are why one looks. */
	int growing = 0;
	for (uint32_t k = 0; k < nlive; k++) {
		const struct mt_apr_pool *q = &a->pools[live[k]];
		if (!mt_apr_growing(q, now))
			continue;
		if (!growing++)
			fprintf(out, "\nPools that only grow (allocating all their life, never cleared since; "
				"docs/POOLS.md):\n");
		char age[32], where[256];
		fmt_age(age, sizeof(age), now - q->mark_ns);
		fmt_caller(sy, q->caller, where, sizeof(where));
		fprintf(out, "  %-20s 0x%" PRIx64 ": %" PRIu64 " bytes in %" PRIu64 " calls over %s, created by %s\n",
			tag_of(q), q->pool, q->cur_bytes, q->calls, age, where);
	}
	if (!growing)
		fprintf(out, "\nPools that only grow: none\n");

	fprintf(out, "\nPools by tag (live and destroyed):\n");
	fprintf(out, "  %-28s %8s %6s %10s %14s %14s %8s %10s\n", "tag", "pools", "live", "calls", "bytes",
		"live bytes", "clears", "mean life");
	for (uint32_t i = 0; i < nrows; i++) {
		char life[32] = "-";
		if (rows[i].destroyed)
			fmt_age(life, sizeof(life), rows[i].life_us / rows[i].destroyed * 1000);
		fprintf(out, "  %-28s %8" PRIu64 " %6" PRIu64 " %10" PRIu64 " %14" PRIu64 " %14" PRIu64 " %8" PRIu64
			" %10s\n", rows[i].tag, rows[i].pools, rows[i].live, rows[i].calls, rows[i].bytes,
			rows[i].live_bytes, rows[i].clears, life);
	}

	if (full) {
		struct tree t = {a, live, nlive, 0};
		fprintf(out, "\nLive pools (tree by parent; bytes since the last clear, bytes in all):\n");
		fprintf(out, "  %-28s %12s %12s %9s %7s %8s  %s\n", "tag", "bytes now", "bytes", "calls", "clears",
			"age", "created by");
		/* Roots: pools whose parent is not a live pool we know. */
		for (uint32_t k = 0; k < nlive; k++) {
			const struct mt_apr_pool *q = &a->pools[live[k]];
			if (!q->parent || !is_live_pool(a, q->parent))
				tree_node(out, &t, k, 0, now, sy);
		}
		if (t.shown > TREE_MAX)
			fprintf(out, "  ... and %d more live pools (memtap report --format=json lists them all)\n",
				t.shown - TREE_MAX);

		uint64_t life[MT_HIST_BUCKETS] = {0}, bytes[MT_HIST_BUCKETS] = {0};
		for (uint32_t i = 0; i < a->ntags; i++)
			for (int k = 0; k < MT_HIST_BUCKETS; k++) {
				life[k] += a->tags[i].life_hist[k];
				bytes[k] += a->tags[i].bytes_hist[k];
			}
		fputc('\n', out);
		mt_render_quantize(out, "Lifetimes of destroyed pools (us)", life);
		mt_render_quantize(out, "Bytes allocated per destroyed pool", bytes);
		for (uint32_t i = 0; i < a->ntags && a->ntags > 1; i++) {
			char title[96];
			snprintf(title, sizeof(title), "Lifetimes of destroyed \"%s\" pools (us)", a->tags[i].tag);
			mt_render_quantize(out, title, a->tags[i].life_hist);
		}
	} else {
		fprintf(out, "  (memtap report --pools FILE: the tree of live pools, lifetimes and bytes per pool)\n");
	}
out:
	free(live);
	free(rows);
	mt_symbolizer_free(sy);
	if (ret)
		return ret;
	return ferror(out) ? -EIO : 0;
}

static void json_tag(FILE *out, const char *s)
{
	fputc('"', out);
	for (const unsigned char *c = (const unsigned char *)s; *c; c++) {
		if (*c == '"' || *c == '\\')
			fprintf(out, "\\%c", *c);
		else if (*c < 0x20 || *c >= 0x7f)
			fprintf(out, "\\u%04x", *c);
		else
			fputc(*c, out);
	}
	fputc('"', out);
}

static void json_hist(FILE *out, const uint64_t *h)
{
	int first = 1;
	fputc('[', out);
	for (unsigned k = 0; k < MT_HIST_BUCKETS; k++)
		if (h[k]) {
			fprintf(out, "%s[%" PRIu64 ",%" PRIu64 "]", first ? "" : ",", mt_hist_lower(k), h[k]);
			first = 0;
		}
	fputc(']', out);
}

void mt_render_pools_json(FILE *out, const struct mt_profile *p)
{
	const struct mt_apr *a = p->apr;
	if (!a)
		return;
	fputs(",\"pools\":[", out);
	for (uint32_t i = 0; i < a->npools; i++) {
		const struct mt_apr_pool *q = &a->pools[i];
		fprintf(out, "%s{\"pool\":\"0x%" PRIx64 "\",\"tag\":", i ? "," : "", q->pool);
		if (q->tag[0])
			json_tag(out, q->tag);
		else
			fputs("null", out);
		if (q->parent)
			fprintf(out, ",\"parent\":\"0x%" PRIx64 "\"", q->parent);
		else
			fputs(",\"parent\":null", out);
		fprintf(out, ",\"created_ns\":%" PRIu64 ",\"destroyed_ns\":", q->created_ns);
		if (q->destroyed_ns)
			fprintf(out, "%" PRIu64, q->destroyed_ns);
		else
			fputs("null", out);
		fprintf(out, ",\"calls\":%" PRIu64 ",\"bytes\":%" PRIu64 ",\"bytes_since_clear\":%" PRIu64
			",\"clears\":%" PRIu64 ",\"unmanaged\":%s,\"growing\":%s,\"created_by\":\"0x%" PRIx64 "\"}",
			q->calls, q->bytes, q->cur_bytes, q->clears, q->flags & MT_APR_F_UNMANAGED ? "true" : "false",
			mt_apr_growing(q, p->dump_ns) ? "true" : "false", q->caller);
	}
	fprintf(out, "],\"pool_summary\":{\"hooked\":%s,\"created\":%" PRIu64 ",\"destroyed\":%" PRIu64
		",\"dropped\":%" PRIu64 ",\"untracked_calls\":%" PRIu64 ",\"untracked_bytes\":%" PRIu64
		",\"tags_full\":%" PRIu64 ",\"destroyed_by_tag\":[", a->hooked ? "true" : "false", a->created,
		a->destroyed, a->dropped, a->untracked_calls, a->untracked_bytes, a->tags_full);
	for (uint32_t i = 0; i < a->ntags; i++) {
		const struct mt_apr_tag *t = &a->tags[i];
		fputs(i ? ",{\"tag\":" : "{\"tag\":", out);
		json_tag(out, t->tag);
		fprintf(out, ",\"pools\":%" PRIu64 ",\"calls\":%" PRIu64 ",\"bytes\":%" PRIu64 ",\"clears\":%" PRIu64
			",\"life_us\":%" PRIu64 ",\"life_us_hist\":", t->pools, t->calls, t->bytes, t->clears,
			t->life_us);
		json_hist(out, t->life_hist);
		fputs(",\"bytes_hist\":", out);
		json_hist(out, t->bytes_hist);
		fputc('}', out);
	}
	fputs("]}", out);
}

/* APR's pool-debug lines (apr_pools.c, apr_pool_log_event):
 *   POOL DEBUG: [PID/TID] ACTION (SIZE/POOL SIZE/TOTAL SIZE) POOL "TAG" <FILE:LINE> (ALLOCS/TOTAL ALLOCS/CLEARS)
 * A profile holds lifetimes, not every call: each pool gives its CREATE, one
 * PALLOC line with what it allocated, its CLEARs summed into the counts, and
 * its DESTROY, in time order over every profile given; TID is 0 (not
 * recorded) and FILE:LINE the creator's address. */
struct ev {
	uint64_t ns;
	uint32_t pid, kind; /* 0 CREATE, 1 PALLOC, 2 DESTROY */
	const struct mt_apr_pool *p;
};

static int ev_cmp(const void *x, const void *y)
{
	const struct ev *a = x, *b = y;
	if (a->ns != b->ns)
		return a->ns < b->ns ? -1 : 1;
	return a->kind < b->kind ? -1 : a->kind > b->kind;
}

int mt_render_pools_log(FILE *out, const struct mt_report_item *items, size_t n)
{
	size_t nev = 0, cap = 0;
	for (size_t i = 0; i < n; i++)
		if (items[i].profile->apr)
			cap += 3 * (size_t)items[i].profile->apr->npools;
	struct ev *ev = calloc(cap + 1, sizeof(*ev));
	if (!ev)
		return -ENOMEM;
	for (size_t i = 0; i < n; i++) {
		const struct mt_profile *pr = items[i].profile;
		const struct mt_apr *a = pr->apr;
		for (uint32_t k = 0; a && k < a->npools; k++) {
			const struct mt_apr_pool *q = &a->pools[k];
			ev[nev++] = (struct ev){q->created_ns, pr->pid, 0, q};
			if (q->calls)
				ev[nev++] = (struct ev){q->destroyed_ns ? q->destroyed_ns : pr->dump_ns, pr->pid, 1, q};
			if (q->destroyed_ns)
				ev[nev++] = (struct ev){q->destroyed_ns, pr->pid, 2, q};
		}
	}
	qsort(ev, nev, sizeof(*ev), ev_cmp);
	static const char *const action[] = {"CREATE", "PALLOC", "DESTROY"};
	uint64_t total = 0;
	for (size_t i = 0; i < nev; i++) {
		const struct mt_apr_pool *q = ev[i].p;
		uint64_t size = ev[i].kind == 1 ? q->bytes : 0;
		total += size;
		fprintf(out, "POOL DEBUG: [%u/0] %7s (%10" PRIu64 "/%10" PRIu64 "/%10" PRIu64 ") 0x%016" PRIx64
			" \"%s\" <0x%" PRIx64 "> (%" PRIu64 "/%" PRIu64 "/%" PRIu64 ")\n", ev[i].pid,
			action[ev[i].kind], size, ev[i].kind ? q->cur_bytes : 0, total, q->pool, tag_of(q), q->caller,
			ev[i].kind ? q->calls : 0, ev[i].kind ? q->calls : 0, q->clears);
	}
	free(ev);
	return ferror(out) ? -EIO : 0;
}
