/* The default report: DTrace's count() and quantize() layouts. */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "memtap/render.h"

/* Call sites listed per table in the default report. */
#define MT_SITES_TABLE_ROWS 10

void mt_render_count_row(FILE *out, const char *key, uint64_t value)
{
	fprintf(out, "  %-50s %16" PRIu64 "\n", key, value);
}

void mt_render_quantize(FILE *out, const char *title, const uint64_t hist[MT_HIST_BUCKETS])
{
	static const char ats[] = "@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@";
	static const char spaces[] = "                                        ";
	int first = -1, last = -1;
	double total = 0; /* a double: counts from a damaged file may add up past 2^64 */
	for (int i = 0; i < MT_HIST_BUCKETS; i++) {
		if (!hist[i])
			continue;
		if (first < 0)
			first = i;
		last = i;
		total += (double)hist[i];
	}
	if (first < 0)
		return;
	/* One empty bucket either side of the populated range, as DTrace does. */
	int lo = first > 0 ? first - 1 : 0;
	int hi = last < MT_HIST_BUCKETS - 1 ? last + 1 : last;
	fprintf(out, "  %-50s\n", title);
	fprintf(out, "%16s %41s %-9s\n", "value", "------------- Distribution -------------", "count");
	for (int i = lo; i <= hi; i++) {
		double d = (double)hist[i] * 40.0 / total + 0.5;
		unsigned depth = d >= 40 ? 40 : (unsigned)d;
		fprintf(out, "%16" PRIu64 " |%s%s %-9" PRIu64 "\n", mt_hist_lower((unsigned)i),
			ats + 40 - depth, spaces + depth, hist[i]);
	}
	fputc('\n', out);
}

static void render_header(FILE *out, const struct mt_report_item *it)
{
	const struct mt_profile *p = it->profile;
	if (it->npids > 1) {
		fprintf(out, "memtap: %zu processes merged (pids", it->npids);
		for (size_t i = 0; i < it->npids; i++)
			fprintf(out, " %u", it->pids[i]);
		fprintf(out, "), first: %s\n", p->command);
		return;
	}
	char when[64] = "";
	time_t t = (time_t)(p->dump_ns / 1000000000u);
	struct tm tm;
	if (localtime_r(&t, &tm))
		strftime(when, sizeof(when), "%Y-%m-%d %H:%M:%S", &tm);
	fprintf(out, "memtap: pid %u (ppid %u) %s\n", p->pid, p->ppid, p->command);
	fprintf(out, "memtap: snapshot #%u at %s (%s), counting %s%s%s\n", p->seq, when,
		mt_reason_name(p->reason), p->flags & MT_PROFILE_ACTIVE ? "active" : "inactive",
		it->path ? ", from " : "", it->path ? it->path : "");
	if (p->end) {
		char how[256];
		mt_end_describe(p, how, sizeof(how));
		fprintf(out, "memtap: how it ended: %s%s\n", how,
			p->flags & MT_PROFILE_RECOVERED ? "; profile recovered from its live counter file" : "");
	}
	if (p->flags & MT_PROFILE_SUSPECT)
		fprintf(out, "memtap: warning: the process wrote figures into its counter file that memtap "
			"could not trust (it may have overwritten that memory); they are shown as read\n");
}

#define TOP_POOLS 10

static void pool_key(const struct mt_pool *pl, char *key, size_t len)
{
	int thread = pl->by == MT_POOL_BY_THREAD;
	if (pl->pool == MT_POOL_OTHER)
		snprintf(key, len, "(other %s: the table was full)", thread ? "threads" : "pools");
	else if (thread)
		snprintf(key, len, "tid %" PRIu64, pl->pool);
	else
		snprintf(key, len, "0x%" PRIx64, pl->pool);
}

/* -f FUNC:pool=argM: for each such function, its top pools by bytes and by
 * calls, as count() rows (largest first, unlike DTrace's order: a top list
 * reads from the top).  --heap-events: its top threads, the same way. */
static int render_pools(FILE *out, const struct mt_profile *p)
{
	uint32_t *order = calloc(p->npools, sizeof(*order));
	if (!order)
		return -ENOMEM;
	for (uint32_t fn = 0; fn < p->nfuncs; fn++) {
		for (int by_bytes = 1; by_bytes >= 0; by_bytes--) {
			uint32_t n = mt_profile_pools_of(p, fn, by_bytes, order);
			if (!n)
				break;
			fprintf(out, "\n%s of %s by %s (top %u of %u):\n",
				p->pools[order[0]].by == MT_POOL_BY_THREAD ? "Threads" : "Pools", p->funcs[fn].name,
				by_bytes ? "bytes" : "calls", n < TOP_POOLS ? n : TOP_POOLS, n);
			for (uint32_t i = 0; i < n && i < TOP_POOLS; i++) {
				const struct mt_pool *pl = &p->pools[order[i]];
				char key[64];
				pool_key(pl, key, sizeof(key));
				mt_render_count_row(out, key, by_bytes ? pl->bytes : pl->calls);
			}
		}
	}
	free(order);
	return 0;
}

static int render_one(FILE *out, const struct mt_report_item *it)
{
	const struct mt_profile *p = it->profile;
	uint32_t *order = calloc(p->nfuncs + 1, sizeof(*order));
	if (!order)
		return -ENOMEM;
	mt_profile_order(p, order);
	render_header(out, it);

	fprintf(out, "\nCalls per function:\n");
	for (uint32_t i = 0; i < p->nfuncs; i++)
		mt_render_count_row(out, p->funcs[order[i]].name, p->funcs[order[i]].calls);
	if (!p->nfuncs)
		fprintf(out, "  (no calls recorded)\n");

	fprintf(out, "\nBytes per function (requested; released for frees):\n");
	for (uint32_t i = 0; i < p->nfuncs; i++)
		mt_render_count_row(out, p->funcs[order[i]].name, p->funcs[order[i]].bytes);

	int failures = 0;
	for (uint32_t i = 0; i < p->nfuncs; i++)
		failures |= p->funcs[i].failed != 0;
	if (failures) {
		fprintf(out, "\nFailed calls (NULL or MAP_FAILED):\n");
		for (uint32_t i = 0; i < p->nfuncs; i++)
			if (p->funcs[order[i]].failed)
				mt_render_count_row(out, p->funcs[order[i]].name, p->funcs[order[i]].failed);
	}

	fprintf(out, "\nSize distribution per function (bytes):\n\n");
	for (uint32_t i = 0; i < p->nfuncs; i++)
		mt_render_quantize(out, p->funcs[order[i]].name, p->funcs[order[i]].hist);
	free(order);

	fprintf(out, "Totals (malloc family and C++ operators, usable bytes):\n");
	mt_render_count_row(out, "allocated", p->totals.allocated_bytes);
	mt_render_count_row(out, "freed", p->totals.freed_bytes);
	if (p->totals.in_use_bytes >= 0)
		mt_render_count_row(out, "in use", (uint64_t)p->totals.in_use_bytes);
	else
		fprintf(out, "  %-50s %16" PRId64 "\n", "in use", p->totals.in_use_bytes);
	mt_render_count_row(out, it->npids > 1 ? "peak in use (sum of peaks)" : "peak in use",
			    p->totals.peak_in_use_bytes);
	mt_render_analyses_text(out, p, it->npids > 1);
	if (p->flags & MT_PROFILE_HEAP_EVENTS) {
		int any = 0;
		for (uint32_t i = 0; i < p->nfuncs; i++)
			any |= !strncmp(p->funcs[i].name, "heap: ", 6);
		if (!any)
			fprintf(out, "\nHeap events (--heap-events): none: no brk, mmap, munmap, mremap, mprotect "
				"or madvise while traced\n");
	}
	if (p->timeline.n)
		mt_render_timeline_text(out, p);
	if (p->npools) {
		int err = render_pools(out, p);
		if (err)
			return err;
	}
	if (p->apr) {
		int err = mt_render_pools_text(out, p, 0);
		if (err)
			return err;
	}
	mt_render_glibc_text(out, p);
	/* Call sites (--stacks) come after the DTrace-layout sections, which
	 * stay as they are. */
	if (p->nsites) {
		int err = mt_render_sites_table(out, p, MT_SITES_TABLE_ROWS);
		if (err)
			return err;
	}
	if (p->leaks) { /* leaks */
		int err = mt_render_leaks_text(out, p, 10);
		if (err)
			return err;
	}
	return ferror(out) ? -EIO : 0;
}

int mt_render_text(FILE *out, const struct mt_report_item *items, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		if (i)
			fputc('\n', out);
		int err = render_one(out, &items[i]);
		if (err)
			return err;
	}
	return fflush(out) ? -errno : 0;
}
