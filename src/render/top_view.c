/* The live view's data (memtap/top_view.h): rates from successive
 * snapshots, the rows of the process picked, its top call sites. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "memtap/top_view.h"
#include "memtap/render.h"
#include "memtap/symbolize.h"

/* One symbolizer per process image, over a copy of its mappings (a
 * symbolizer needs them unchanged while it lives); made again when the
 * process maps more (dlopen). */
struct mt_tv_sym {
	int pid;
	uint64_t start_ns;
	uint32_t nmaps;
	struct mt_profile *maps;
	struct mt_symbolizer *sym;
};
struct mt_tv_syms {
	struct mt_tv_sym *v;
	size_t n;
};

static const char *const sort_names[MT_TV_SORT_COUNT] = {"bytes", "calls", "failed", "total", "name"};

const char *mt_tv_sort_name(enum mt_tv_sort s)
{
	return s < MT_TV_SORT_COUNT ? sort_names[s] : "?";
}

int mt_tv_sort_parse(const char *name, enum mt_tv_sort *out)
{
	for (int i = 0; i < MT_TV_SORT_COUNT; i++)
		if (!strcmp(name, sort_names[i])) {
			*out = (enum mt_tv_sort)i;
			return 0;
		}
	return -EINVAL;
}

struct mt_top_view *mt_top_view_new(void)
{
	struct mt_top_view *v = calloc(1, sizeof(*v));
	if (v && !(v->syms = calloc(1, sizeof(*v->syms)))) {
		free(v);
		return NULL;
	}
	if (v)
		v->interval_s = 1;
	return v;
}

static void sym_clear(struct mt_tv_sym *s)
{
	mt_symbolizer_free(s->sym);
	mt_profile_free(s->maps);
	s->sym = NULL;
	s->maps = NULL;
}

void mt_top_view_free(struct mt_top_view *v)
{
	if (!v)
		return;
	for (size_t i = 0; i < v->nprocs; i++) {
		mt_profile_free(v->procs[i].cur);
		mt_profile_free(v->procs[i].prev);
	}
	free(v->procs);
	free(v->funcs);
	if (v->syms) {
		for (size_t i = 0; i < v->syms->n; i++)
			sym_clear(&v->syms->v[i]);
		free(v->syms->v);
		free(v->syms);
	}
	free(v);
}

static struct mt_tv_proc *proc_of(const struct mt_top_view *v, int pid)
{
	for (size_t i = v->nprocs; i-- > 0;)
		if (v->procs[i].pid == pid)
			return &v->procs[i];
	return NULL;
}

const struct mt_tv_proc *mt_top_view_proc(const struct mt_top_view *v, int pid)
{
	return proc_of(v, pid);
}

static double seconds_between(const struct mt_profile *a, const struct mt_profile *b)
{
	return b->dump_ns > a->dump_ns ? (double)(b->dump_ns - a->dump_ns) / 1e9 : 0;
}

/* NEW - OLD for a counter; a counter that went down was reset: all of NEW
 * is since then. */
static uint64_t delta(uint64_t old, uint64_t now)
{
	return now >= old ? now - old : now;
}

static void proc_figures(struct mt_tv_proc *r)
{
	const struct mt_profile *p = r->cur, *q = r->prev;
	r->in_use = p->totals.in_use_bytes;
	r->peak = p->totals.peak_in_use_bytes;
	r->sample_period = p->nsites || p->sample_period > 0 ? p->sample_period : 0;
	r->flags = p->flags;
	r->calls = 0;
	for (uint32_t i = 0; i < p->nfuncs; i++)
		r->calls += p->funcs[i].calls;
	double dt = q ? seconds_between(q, p) : 0;
	r->has_rate = dt > 0;
	r->calls_s = r->bytes_s = r->growth_s = 0;
	if (!r->has_rate)
		return;
	for (uint32_t i = 0; i < p->nfuncs; i++) {
		const struct mt_func *f = &p->funcs[i], *g = mt_profile_find(q, f->name);
		r->calls_s += (double)delta(g ? g->calls : 0, f->calls) / dt;
		if (f->kind == MT_KIND_ALLOC)
			r->bytes_s += (double)delta(g ? g->bytes : 0, f->bytes) / dt;
	}
	r->growth_s = (double)(p->totals.in_use_bytes - q->totals.in_use_bytes) / dt;
}

int mt_top_view_update(struct mt_top_view *v, int pid, int ppid, const char *command, struct mt_profile *p)
{
	struct mt_tv_proc *r = proc_of(v, pid);
	/* A new process with a pid seen before is a row of its own. */
	if (r && p && r->ended && r->cur && r->cur->start_ns != p->start_ns)
		r = NULL;
	if (!r) {
		if (!p)
			return 0;
		struct mt_tv_proc *n = realloc(v->procs, (v->nprocs + 1) * sizeof(*n));
		if (!n) {
			mt_profile_free(p);
			return -ENOMEM;
		}
		v->procs = n;
		/* Rows by pid, as ps and top list them (a parent before the
		 * children it forks, whichever the session found first), a
		 * pid seen again after its row. */
		size_t at = v->nprocs;
		while (at > 0 && v->procs[at - 1].pid > pid)
			at--;
		memmove(&v->procs[at + 1], &v->procs[at], (v->nprocs - at) * sizeof(*v->procs));
		v->nprocs++;
		r = &v->procs[at];
		memset(r, 0, sizeof(*r));
		r->pid = pid;
	}
	if (ppid >= 0)
		r->ppid = ppid;
	if (command && command[0])
		snprintf(r->command, sizeof(r->command), "%s", command);
	if (!p)
		return 0;
	if (!r->command[0])
		snprintf(r->command, sizeof(r->command), "%s", p->command);
	if (ppid < 0 && p->ppid)
		r->ppid = (int)p->ppid;
	mt_profile_free(r->prev);
	r->prev = r->cur;
	r->cur = p;
	/* A new image (exec) starts its counters again. */
	if (r->prev && r->prev->start_ns != p->start_ns) {
		mt_profile_free(r->prev);
		r->prev = NULL;
	}
	r->ended = 0;
	proc_figures(r);
	if (p->dump_ns > v->last_ns)
		v->last_ns = p->dump_ns;
	return 0;
}

void mt_top_view_end(struct mt_top_view *v, int pid)
{
	struct mt_tv_proc *r = proc_of(v, pid);
	if (!r || r->ended)
		return;
	r->ended = 1;
	r->has_rate = 0;
	r->calls_s = r->bytes_s = r->growth_s = 0;
}

void mt_top_view_pick(struct mt_top_view *v, int dir)
{
	if (!v->nprocs) {
		v->selected = 0;
		return;
	}
	/* Positions: -1 is "every process", 0..n-1 the rows. */
	long at = -1, n = (long)v->nprocs;
	for (long i = 0; i < n; i++)
		if (v->procs[i].pid == v->selected)
			at = i;
	at += dir > 0 ? 1 : -1;
	if (at >= n)
		at = -1;
	else if (at < -1)
		at = n - 1;
	v->selected = at < 0 ? 0 : v->procs[at].pid;
}

static int selected(const struct mt_top_view *v, const struct mt_tv_proc *r)
{
	return !v->selected || v->selected == r->pid;
}

static struct mt_tv_func *func_row(struct mt_top_view *v, const struct mt_func *f, size_t *cap)
{
	for (size_t i = 0; i < v->nfuncs; i++)
		if (!strcmp(v->funcs[i].name, f->name))
			return &v->funcs[i];
	if (v->nfuncs == *cap) {
		size_t nc = *cap ? *cap * 2 : 32;
		struct mt_tv_func *n = realloc(v->funcs, nc * sizeof(*n));
		if (!n)
			return NULL;
		v->funcs = n;
		*cap = nc;
	}
	struct mt_tv_func *r = &v->funcs[v->nfuncs++];
	memset(r, 0, sizeof(*r));
	snprintf(r->name, sizeof(r->name), "%s", f->name);
	r->kind = f->kind;
	return r;
}

static int func_cmp(const void *a, const void *b, void *arg)
{
	const struct mt_tv_func *x = a, *y = b;
	enum mt_tv_sort s = *(const enum mt_tv_sort *)arg;
	double dx = 0, dy = 0;
	switch (s) {
	case MT_TV_SORT_BYTES: dx = x->bytes_s, dy = y->bytes_s; break;
	case MT_TV_SORT_CALLS: dx = x->calls_s, dy = y->calls_s; break;
	case MT_TV_SORT_FAILED: dx = x->failed_s, dy = y->failed_s; break;
	case MT_TV_SORT_TOTAL: dx = (double)x->calls, dy = (double)y->calls; break;
	default: break;
	}
	if (dx != dy)
		return dx > dy ? -1 : 1;
	/* Ties (and the first snapshot, without rates): by calls so far, so
	 * the busiest functions stay on the screen. */
	if (s != MT_TV_SORT_NAME && s != MT_TV_SORT_TOTAL && x->calls != y->calls)
		return x->calls > y->calls ? -1 : 1;
	if (s == MT_TV_SORT_FAILED && x->calls_s != y->calls_s)
		return x->calls_s > y->calls_s ? -1 : 1;
	return strcmp(x->name, y->name);
}

/* ---- call sites ---- */

static uint64_t site_hash(const struct mt_site *s)
{
	uint64_t h = 1469598103934665603ull ^ s->fn;
	for (uint32_t i = 0; i < s->nframes; i++)
		h = (h ^ s->frames[i]) * 1099511628211ull;
	return h;
}

static int site_same(const struct mt_site *a, const struct mt_site *b)
{
	return a->fn == b->fn && a->nframes == b->nframes &&
	       !memcmp(a->frames, b->frames, a->nframes * sizeof(*a->frames));
}

static struct mt_symbolizer *sym_of(struct mt_top_view *v, const struct mt_profile *p, int pid)
{
	struct mt_tv_syms *ss = v->syms;
	struct mt_tv_sym *s = NULL;
	for (size_t i = 0; i < ss->n && !s; i++)
		if (ss->v[i].pid == pid)
			s = &ss->v[i];
	if (!s) {
		struct mt_tv_sym *n = realloc(ss->v, (ss->n + 1) * sizeof(*n));
		if (!n)
			return NULL;
		ss->v = n;
		s = &n[ss->n++];
		memset(s, 0, sizeof(*s));
		s->pid = pid;
	}
	if (s->sym && s->start_ns == p->start_ns && s->nmaps == p->nmaps)
		return s->sym;
	sym_clear(s);
	if (!(s->maps = mt_profile_new()))
		return NULL;
	for (uint32_t i = 0; i < p->nmaps; i++) {
		struct mt_mapping *m = mt_profile_add_mapping(s->maps);
		if (!m)
			break;
		*m = p->maps[i];
	}
	s->start_ns = p->start_ns;
	s->nmaps = p->nmaps;
	s->sym = mt_symbolizer_new(s->maps);
	return s->sym;
}

/* "f (file.c:12) < g < h": the callers of a site, innermost first. */
static void site_where(struct mt_symbolizer *sym, const struct mt_site *s, char *out, size_t len)
{
	size_t at = 0;
	out[0] = '\0';
	for (uint32_t i = 0; i < s->nframes && at + 4 < len; i++) {
		struct mt_frame f;
		char one[MT_TV_WHERE];
		if (!sym || mt_symbolize(sym, s->frames[i], 1, &f, 1) < 1)
			snprintf(one, sizeof(one), "0x%llx", (unsigned long long)s->frames[i]);
		else if (i == 0 && f.file)
			snprintf(one, sizeof(one), "%s (%s:%u)", f.function, strrchr(f.file, '/') ? strrchr(f.file, '/') + 1 : f.file,
				 f.line);
		else
			snprintf(one, sizeof(one), "%s", f.function ? f.function : "??");
		int n = snprintf(out + at, len - at, "%s%s", i ? " < " : "", one);
		if (n < 0 || (size_t)n >= len - at) {
			out[len - 1] = '\0';
			break;
		}
		at += (size_t)n;
	}
}

struct site_cand {
	const struct mt_tv_proc *r;
	const struct mt_site *s;
	uint64_t inuse_bytes, inuse_objects;
	double rate;
	int has_rate;
};

static int cand_cmp(const struct site_cand *x, const struct site_cand *y)
{
	if (x->inuse_bytes != y->inuse_bytes)
		return x->inuse_bytes > y->inuse_bytes ? -1 : 1;
	if (x->rate != y->rate)
		return x->rate > y->rate ? -1 : 1;
	return 0;
}

/* The candidates looked at: more than are shown, since the same call site
 * in several processes (a prefork server's children) is one row. */
#define CANDS (4 * MT_TV_SITES)

/* Keeps the best CANDS candidates in TOP (sorted), N of them. */
static void cand_keep(struct site_cand *top, size_t *n, const struct site_cand *c)
{
	size_t at = *n;
	while (at > 0 && cand_cmp(c, &top[at - 1]) < 0)
		at--;
	if (at >= CANDS)
		return;
	size_t last = *n < CANDS ? *n : CANDS - 1;
	memmove(&top[at + 1], &top[at], (last - at) * sizeof(*top));
	top[at] = *c;
	if (*n < CANDS)
		(*n)++;
}

static int row_cmp(const void *a, const void *b)
{
	const struct mt_tv_site *x = a, *y = b;
	if (x->inuse_bytes != y->inuse_bytes)
		return x->inuse_bytes > y->inuse_bytes ? -1 : 1;
	if (x->alloc_bytes_s != y->alloc_bytes_s)
		return x->alloc_bytes_s > y->alloc_bytes_s ? -1 : 1;
	return strcmp(x->where, y->where);
}

static int proc_sites(const struct mt_tv_proc *r, struct site_cand *top, size_t *ntop)
{
	const struct mt_profile *p = r->cur, *q = r->has_rate ? r->prev : NULL;
	size_t cap = 0;
	uint32_t *table = NULL;
	if (q && q->nsites) {
		for (cap = 16; cap < 2 * (size_t)q->nsites; cap *= 2)
			;
		if (!(table = malloc(cap * sizeof(*table))))
			return -ENOMEM;
		memset(table, 0xff, cap * sizeof(*table));
		for (uint32_t i = 0; i < q->nsites; i++) {
			size_t h = site_hash(&q->sites[i]) & (cap - 1);
			while (table[h] != UINT32_MAX)
				h = (h + 1) & (cap - 1);
			table[h] = i;
		}
	}
	double dt = q ? seconds_between(q, p) : 0;
	for (uint32_t i = 0; i < p->nsites; i++) {
		const struct mt_site *s = &p->sites[i];
		struct mt_site_est e, o = {0};
		mt_site_estimate(p, s, &e);
		struct site_cand c = {r, s, e.inuse_bytes, e.inuse_objects, 0, dt > 0};
		if (table) {
			for (size_t h = site_hash(s) & (cap - 1); table[h] != UINT32_MAX; h = (h + 1) & (cap - 1))
				if (site_same(&q->sites[table[h]], s)) {
					mt_site_estimate(q, &q->sites[table[h]], &o);
					break;
				}
		}
		if (dt > 0)
			c.rate = (double)delta(o.alloc_bytes, e.alloc_bytes) / dt;
		if (!c.inuse_bytes && !c.rate && !(p->flags & MT_PROFILE_FP_STACKS && e.alloc_bytes))
			continue;
		cand_keep(top, ntop, &c);
	}
	free(table);
	return 0;
}

int mt_top_view_compute(struct mt_top_view *v)
{
	size_t cap = v->nfuncs;
	v->nfuncs = 0;
	v->in_use = 0;
	v->peak = 0;
	v->growth_s = v->calls_s = v->bytes_s = 0;
	v->has_rate = 0;
	v->stacks = 0;
	if (v->selected && !proc_of(v, v->selected))
		v->selected = 0;
	struct site_cand top[CANDS];
	size_t ntop = 0;
	for (size_t k = 0; k < v->nprocs; k++) {
		const struct mt_tv_proc *r = &v->procs[k];
		if (!selected(v, r) || !r->cur)
			continue;
		const struct mt_profile *p = r->cur, *q = r->has_rate ? r->prev : NULL;
		double dt = q ? seconds_between(q, p) : 0;
		if (!r->ended) {
			v->in_use += r->in_use;
			v->peak += r->peak;
		}
		v->growth_s += r->growth_s;
		v->calls_s += r->calls_s;
		v->bytes_s += r->bytes_s;
		v->has_rate |= r->has_rate;
		v->stacks |= p->nsites > 0 || p->sample_period > 0;
		for (uint32_t i = 0; i < p->nfuncs; i++) {
			const struct mt_func *f = &p->funcs[i];
			if (!f->calls)
				continue;
			struct mt_tv_func *row = func_row(v, f, &cap);
			if (!row)
				return -ENOMEM;
			row->calls += f->calls;
			row->bytes += f->bytes;
			row->failed += f->failed;
			if (dt > 0) {
				const struct mt_func *g = mt_profile_find(q, f->name);
				row->has_rate = 1;
				row->calls_s += (double)delta(g ? g->calls : 0, f->calls) / dt;
				row->bytes_s += (double)delta(g ? g->bytes : 0, f->bytes) / dt;
				row->failed_s += (double)delta(g ? g->failed : 0, f->failed) / dt;
			}
		}
		if (p->nsites && proc_sites(r, top, &ntop))
			return -ENOMEM;
	}
	if (v->nfuncs)
		qsort_r(v->funcs, v->nfuncs, sizeof(*v->funcs), func_cmp, &v->sort);
	/* Symbolized, the same callers in several processes summed into one
	 * row (pid: the first of them, 0 for several). */
	struct mt_tv_site rows[CANDS];
	size_t nrows = 0;
	for (size_t i = 0; i < ntop; i++) {
		struct mt_tv_site d;
		const struct site_cand *c = &top[i];
		memset(&d, 0, sizeof(d));
		d.pid = c->r->pid;
		d.inuse_bytes = c->inuse_bytes;
		d.inuse_objects = c->inuse_objects;
		d.alloc_bytes_s = c->rate;
		d.has_rate = c->has_rate;
		snprintf(d.func, sizeof(d.func), "%s", c->s->fn < c->r->cur->nfuncs ? c->r->cur->funcs[c->s->fn].name : "?");
		site_where(sym_of(v, c->r->cur, c->r->pid), c->s, d.where, sizeof(d.where));
		size_t k = 0;
		while (k < nrows && (strcmp(rows[k].where, d.where) || strcmp(rows[k].func, d.func)))
			k++;
		if (k == nrows) {
			rows[nrows++] = d;
			continue;
		}
		rows[k].inuse_bytes += d.inuse_bytes;
		rows[k].inuse_objects += d.inuse_objects;
		rows[k].alloc_bytes_s += d.alloc_bytes_s;
		rows[k].has_rate |= d.has_rate;
		if (rows[k].pid != d.pid)
			rows[k].pid = 0;
	}
	if (nrows)
		qsort(rows, nrows, sizeof(*rows), row_cmp);
	v->nsites = nrows < MT_TV_SITES ? nrows : MT_TV_SITES;
	memcpy(v->sites, rows, v->nsites * sizeof(*rows));
	return 0;
}

/* ---- numbers in six columns ---- */

void mt_tv_bytes(char *out, size_t len, double b)
{
	static const char units[] = "KMGTPE";
	double a = b < 0 ? -b : b;
	if (a < 1024) {
		snprintf(out, len, "%.0f", b);
		return;
	}
	int u = -1;
	while (a >= 1024 && u < 5) {
		a /= 1024;
		b /= 1024;
		u++;
	}
	snprintf(out, len, a < 10 ? "%.1f%c" : "%.0f%c", b, units[u]);
}

void mt_tv_count(char *out, size_t len, double n)
{
	static const char units[] = "kMGTPE";
	double a = n < 0 ? -n : n;
	if (a < 10000) {
		snprintf(out, len, a < 10 && a != (double)(long long)a ? "%.1f" : "%.0f", n);
		return;
	}
	int u = -1;
	while (a >= 1000 && u < 5) {
		a /= 1000;
		n /= 1000;
		u++;
	}
	snprintf(out, len, a < 10 ? "%.1f%c" : "%.0f%c", n, units[u]);
}
