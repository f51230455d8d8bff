/* The profile model: construction, lookup, merging and ordering. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <signal.h>
#include <string.h>
#include <sys/mman.h>

#include "memtap/pools.h"
#include "memtap/leaks.h"
#include "memtap/profile.h"

struct mt_profile *mt_profile_new(void)
{
	return calloc(1, sizeof(struct mt_profile));
}

void mt_profile_free(struct mt_profile *p)
{
	if (!p)
		return;
	free(p->funcs);
	for (uint32_t i = 0; i < p->nsites; i++)
		free(p->sites[i].frames);
	free(p->sites);
	free(p->maps);
	free(p->pools);
	mt_apr_free(p->apr);
	free(p->stats);
	free(p->glibc);
	mt_leaks_free(p->leaks);
	mt_timeline_clear(&p->timeline);
	free(p);
}

void mt_profile_forget(struct mt_profile *p)
{
	p->funcs = NULL;
	p->nfuncs = 0;
	p->sites = NULL;
	p->nsites = 0;
	p->maps = NULL;
	p->nmaps = 0;
	p->pools = NULL;
	p->npools = 0;
	p->apr = NULL;
	p->stats = NULL;
	p->glibc = NULL;
	p->leaks = NULL;
	memset(&p->timeline, 0, sizeof(p->timeline));
}

double mt_site_scale(uint64_t period, uint64_t objects, uint64_t bytes)
{
	if (period <= 1 || objects == 0)
		return 1.0;
	double mean = (double)bytes / (double)objects;
	return 1.0 / (1.0 - exp(-mean / (double)period));
}

struct mt_site *mt_profile_add_site(struct mt_profile *p, const uint64_t *frames, uint32_t n)
{
	struct mt_site *s = realloc(p->sites, (p->nsites + 1) * sizeof(*s));
	if (!s)
		return NULL;
	p->sites = s;
	s = &p->sites[p->nsites];
	memset(s, 0, sizeof(*s));
	s->fn = UINT32_MAX;
	s->frames = malloc((n ? n : 1) * sizeof(*frames));
	if (!s->frames)
		return NULL;
	memcpy(s->frames, frames, n * sizeof(*frames));
	s->nframes = n;
	p->nsites++;
	return s;
}

struct mt_mapping *mt_profile_add_mapping(struct mt_profile *p)
{
	struct mt_mapping *m = realloc(p->maps, (p->nmaps + 1) * sizeof(*m));
	if (!m)
		return NULL;
	p->maps = m;
	m = &p->maps[p->nmaps++];
	memset(m, 0, sizeof(*m));
	return m;
}

struct mt_pool *mt_profile_pool(struct mt_profile *p, uint32_t fn, uint64_t pool)
{
	for (uint32_t i = 0; i < p->npools; i++)
		if (p->pools[i].fn == fn && p->pools[i].pool == pool)
			return &p->pools[i];
	return mt_profile_add_pool(p, fn, pool);
}

struct mt_pool *mt_profile_add_pool(struct mt_profile *p, uint32_t fn, uint64_t pool)
{
	/* Double the array: Apache makes a pool per request. */
	if (!(p->npools & (p->npools - 1))) {
		struct mt_pool *v = realloc(p->pools, (p->npools ? 2 * p->npools : 1) * sizeof(*v));
		if (!v)
			return NULL;
		p->pools = v;
	}
	struct mt_pool *t = &p->pools[p->npools++];
	memset(t, 0, sizeof(*t));
	t->fn = fn;
	t->pool = pool;
	return t;
}

static const struct mt_pool *pools_base;
static int pools_by_bytes;

static int pool_cmp(const void *a, const void *b)
{
	const struct mt_pool *x = &pools_base[*(const uint32_t *)a];
	const struct mt_pool *y = &pools_base[*(const uint32_t *)b];
	uint64_t vx = pools_by_bytes ? x->bytes : x->calls, vy = pools_by_bytes ? y->bytes : y->calls;
	if (vx != vy)
		return vx > vy ? -1 : 1;
	if (x->calls != y->calls)
		return x->calls > y->calls ? -1 : 1;
	return x->pool < y->pool ? -1 : x->pool > y->pool;
}

uint32_t mt_profile_pools_of(const struct mt_profile *p, uint32_t fn, int by_bytes, uint32_t *order)
{
	uint32_t n = 0;
	for (uint32_t i = 0; i < p->npools; i++)
		if (p->pools[i].fn == fn)
			order[n++] = i;
	pools_base = p->pools; /* qsort has no context argument; the CLI is single-threaded */
	pools_by_bytes = by_bytes;
	if (n > 1)
		qsort(order, n, sizeof(*order), pool_cmp);
	return n;
}

const struct mt_mapping *mt_profile_mapping_of(const struct mt_profile *p, uint64_t addr)
{
	for (uint32_t i = 0; i < p->nmaps; i++)
		if (addr >= p->maps[i].start && addr < p->maps[i].end)
			return &p->maps[i];
	return NULL;
}

const struct mt_func *mt_profile_find(const struct mt_profile *p, const char *name)
{
	for (uint32_t i = 0; i < p->nfuncs; i++)
		if (strcmp(p->funcs[i].name, name) == 0)
			return &p->funcs[i];
	return NULL;
}

struct mt_func *mt_profile_func(struct mt_profile *p, const char *name, uint32_t kind)
{
	struct mt_func *f = (struct mt_func *)mt_profile_find(p, name);
	if (f)
		return f;
	/* Grow one at a time: profiles hold tens of functions, not thousands. */
	f = realloc(p->funcs, (p->nfuncs + 1) * sizeof(*f));
	if (!f)
		return NULL;
	p->funcs = f;
	f = &p->funcs[p->nfuncs++];
	memset(f, 0, sizeof(*f));
	strncpy(f->name, name, sizeof(f->name) - 1);
	f->kind = kind;
	return f;
}

void mt_func_add(struct mt_func *dst, const struct mt_func *src)
{
	dst->calls += src->calls;
	dst->bytes += src->bytes;
	dst->failed += src->failed;
	for (int i = 0; i < MT_HIST_BUCKETS; i++)
		dst->hist[i] += src->hist[i];
}

uint64_t mt_func_hist_total(const struct mt_func *f)
{
	uint64_t t = 0;
	for (int i = 0; i < MT_HIST_BUCKETS; i++)
		t += f->hist[i];
	return t;
}

static int merge_sites(struct mt_profile *dst, const struct mt_profile *src);

/* An open-addressing index of DST's pools by (function, address), so that
 * merging tens of thousands of pools (Apache makes one per request) is not
 * quadratic.  Slots hold pool index + 1; 0 is empty. */
struct pool_index {
	uint32_t *slot;
	size_t mask;
};

static size_t pool_hash(uint32_t fn, uint64_t pool)
{
	uint64_t h = (pool ^ ((uint64_t)fn << 56)) * 0x9e3779b97f4a7c15ull;
	return (size_t)(h >> 17);
}

static uint32_t *pool_slot(const struct pool_index *ix, const struct mt_profile *p, uint32_t fn, uint64_t pool)
{
	size_t i = pool_hash(fn, pool) & ix->mask;
	while (ix->slot[i] && !(p->pools[ix->slot[i] - 1].fn == fn && p->pools[ix->slot[i] - 1].pool == pool))
		i = (i + 1) & ix->mask;
	return &ix->slot[i];
}

/* Pools are matched by function name and address: the processes of one
 * server (forked children) may well have a pool at the same address, and
 * the sum is then that address's total over them. */
static int merge_pools(struct mt_profile *dst, const struct mt_profile *src)
{
	struct pool_index ix;
	size_t cap = 16;
	int ret = 0;
	if (!src->npools)
		return 0;
	while (cap < 2 * ((size_t)dst->npools + src->npools))
		cap *= 2;
	ix.mask = cap - 1;
	if (!(ix.slot = calloc(cap, sizeof(*ix.slot))))
		return -ENOMEM;
	for (uint32_t i = 0; i < dst->npools; i++)
		*pool_slot(&ix, dst, dst->pools[i].fn, dst->pools[i].pool) = i + 1;
	for (uint32_t i = 0; i < src->npools && !ret; i++) {
		const struct mt_pool *s = &src->pools[i];
		if (s->fn >= src->nfuncs)
			continue;
		const struct mt_func *f = &src->funcs[s->fn];
		if (!mt_profile_func(dst, f->name, f->kind)) {
			ret = -ENOMEM;
			break;
		}
		uint32_t fn = (uint32_t)(mt_profile_find(dst, f->name) - dst->funcs);
		uint32_t *slot = pool_slot(&ix, dst, fn, s->pool);
		if (!*slot) {
			if (!mt_profile_add_pool(dst, fn, s->pool)) {
				ret = -ENOMEM;
				break;
			}
			*slot = dst->npools;
		}
		dst->pools[*slot - 1].by = s->by;
		dst->pools[*slot - 1].calls += s->calls;
		dst->pools[*slot - 1].bytes += s->bytes;
	}
	free(ix.slot);
	return ret;
}

int mt_profile_merge(struct mt_profile *dst, const struct mt_profile *src)
{
	for (uint32_t i = 0; i < src->nfuncs; i++) {
		struct mt_func *f = mt_profile_func(dst, src->funcs[i].name, src->funcs[i].kind);
		if (!f)
			return -ENOMEM;
		mt_func_add(f, &src->funcs[i]);
	}
	if (merge_sites(dst, src) || merge_pools(dst, src))
		return -ENOMEM;
	if (src->apr && ((!dst->apr && !(dst->apr = mt_apr_new())) || mt_apr_merge(dst->apr, src->apr)))
		return -ENOMEM;
	dst->totals.allocated_bytes += src->totals.allocated_bytes;
	dst->totals.freed_bytes += src->totals.freed_bytes;
	dst->totals.in_use_bytes += src->totals.in_use_bytes;
	/* Peaks of different processes need not coincide: the sum bounds the
	 * combined peak from above. */
	dst->totals.peak_in_use_bytes += src->totals.peak_in_use_bytes;
	dst->peak_rss_bytes += src->peak_rss_bytes;
	return 0;
}

static const struct mt_func *order_base;

static int order_cmp(const void *a, const void *b)
{
	const struct mt_func *x = &order_base[*(const uint32_t *)a];
	const struct mt_func *y = &order_base[*(const uint32_t *)b];
	if (x->calls != y->calls)
		return x->calls < y->calls ? -1 : 1;
	return strcmp(x->name, y->name);
}

void mt_profile_order(const struct mt_profile *p, uint32_t *order)
{
	for (uint32_t i = 0; i < p->nfuncs; i++)
		order[i] = i;
	order_base = p->funcs; /* qsort has no context argument; the CLI is single-threaded */
	if (p->nfuncs > 1)
		qsort(order, p->nfuncs, sizeof(*order), order_cmp);
}

static int same_site(const struct mt_profile *a, const struct mt_site *x, const struct mt_profile *b,
		     const struct mt_site *y)
{
	if (x->nframes != y->nframes || (x->fn == UINT32_MAX) != (y->fn == UINT32_MAX))
		return 0;
	if (x->fn != UINT32_MAX && strcmp(a->funcs[x->fn].name, b->funcs[y->fn].name) != 0)
		return 0;
	return memcmp(x->frames, y->frames, x->nframes * sizeof(*x->frames)) == 0;
}

/* Sites are matched by function and frames; mappings are united.  Profiles
 * of one program (a server and its forked children) share their layout, so
 * the merged addresses stay meaningful; processes of different programs may
 * not, and their sites are best rendered apart. */
static int merge_sites(struct mt_profile *dst, const struct mt_profile *src)
{
	for (uint32_t i = 0; i < src->nsites; i++) {
		const struct mt_site *s = &src->sites[i];
		struct mt_site *d = NULL;
		for (uint32_t k = 0; k < dst->nsites && !d; k++)
			if (same_site(dst, &dst->sites[k], src, s))
				d = &dst->sites[k];
		if (!d) {
			if (!(d = mt_profile_add_site(dst, s->frames, s->nframes)))
				return -ENOMEM;
			d->fn = UINT32_MAX;
			if (s->fn != UINT32_MAX) {
				const struct mt_func *f = &src->funcs[s->fn];
				if (!mt_profile_func(dst, f->name, f->kind))
					return -ENOMEM;
				d = &dst->sites[dst->nsites - 1];
				d->fn = (uint32_t)(mt_profile_find(dst, f->name) - dst->funcs);
			}
		}
		d->alloc_objects += s->alloc_objects;
		d->alloc_bytes += s->alloc_bytes;
		d->inuse_objects += s->inuse_objects;
		d->inuse_bytes += s->inuse_bytes;
		d->peak_objects += s->peak_objects;
		d->peak_bytes += s->peak_bytes;
		d->temp_objects += s->temp_objects;
		d->temp_bytes += s->temp_bytes;
	}
	for (uint32_t i = 0; i < src->nmaps; i++) {
		const struct mt_mapping *m = &src->maps[i];
		int have = 0;
		for (uint32_t k = 0; k < dst->nmaps && !have; k++)
			have = dst->maps[k].start == m->start && dst->maps[k].end == m->end &&
			       strcmp(dst->maps[k].path, m->path) == 0;
		if (!have) {
			struct mt_mapping *d = mt_profile_add_mapping(dst);
			if (!d)
				return -ENOMEM;
			*d = *m;
		}
	}
	if (!dst->sample_period)
		dst->sample_period = src->sample_period;
	dst->unknown_frees += src->unknown_frees;
	return 0;
}

const char *mt_kind_name(uint32_t kind)
{
	static const char *const names[] = {"alloc", "free", "map", "unmap", "brk", "other"};
	return kind < sizeof(names) / sizeof(names[0]) ? names[kind] : "unknown";
}

const char *mt_reason_name(uint32_t reason)
{
	static const char *const names[] = {"exit", "ctl", "other", "peak", "interval", "bytes", "detach"};
	return reason < sizeof(names) / sizeof(names[0]) ? names[reason] : "unknown";
}

const char *mt_end_name(uint32_t end)
{
	static const char *const names[] = {"", "exit", "_exit", "signal", "vanished", "exec"};
	return end < sizeof(names) / sizeof(names[0]) ? names[end] : "unknown";
}

void mt_end_describe(const struct mt_profile *p, char *out, size_t outlen)
{
	const char *sig = p->end_code > 0 && p->end_code < 65 ? sigabbrev_np(p->end_code) : NULL;
	switch (p->end) {
	case MT_END_EXIT:
		if (p->end_code >= 0)
			snprintf(out, outlen, "exited with status %d", p->end_code);
		else
			snprintf(out, outlen, "exited");
		break;
	case MT_END__EXIT:
		snprintf(out, outlen, "ended with _exit(%d)", p->end_code);
		break;
	case MT_END_SIGNAL:
		snprintf(out, outlen, "killed by SIG%s", sig ? sig : "?");
		break;
	case MT_END_VANISHED:
		snprintf(out, outlen, "gone without a trace (killed by SIGKILL, e.g. the OOM killer, or exit_group)");
		break;
	case MT_END_EXEC:
		snprintf(out, outlen, "replaced by exec");
		break;
	default:
		snprintf(out, outlen, "running");
	}
}

int mt_mapping_parse(const char *line, struct mt_mapping *m)
{
	unsigned long long start, end, off;
	char perms[8];
	int at = 0;
	if (sscanf(line, "%llx-%llx %7s %llx %*s %*s %n", &start, &end, perms, &off, &at) < 4 || !at ||
	    line[at] != '/')
		return 0;
	memset(m, 0, sizeof(*m));
	m->start = start;
	m->end = end;
	m->offset = off;
	m->prot = (perms[0] == 'r' ? PROT_READ : 0) | (perms[1] == 'w' ? PROT_WRITE : 0) |
		  (perms[2] == 'x' ? PROT_EXEC : 0);
	snprintf(m->path, sizeof(m->path), "%s", line + at);
	m->path[strcspn(m->path, "\n")] = '\0';
	return 1;
}
