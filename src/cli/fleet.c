/*
 * Fleet scale (fleet.h): the metrics endpoint, the pprof endpoints and the
 * pprof directory, all from the session's members.
 *
 * Counting model: every member has an accumulator (struct acc) that holds
 * the last counts seen for it (a live snapshot at a scrape, or a profile the
 * session wrote) and, when a snapshot ever showed less than the one before
 * (`memtap ctl PID reset`), what it had counted before that; a member that
 * ends is folded into its command's group (struct group).  A series is
 * always group + the running members' accumulators, so it never goes down.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "fleet.h"
#include "http.h"
#include "memtap/glibc.h"
#include "memtap/pools.h"
#include "memtap/proc.h"
#include "memtap/prom.h"
#include "options.h"
#include "render/export.h"
#include "session.h"

#define MT_VERSION MEMTAP_VERSION /* cli.h: the one version */
/* Distinct command labels kept; later commands are counted as "other". */
#define GROUPS_MAX 256
/* Layouts whose symbolizers are kept. */
#define SYM_CACHE 4

/* The sections' gauges of one process, or of a row's processes summed
 * (--pools, --glibc, the allocator's own statistics); HAVE says which
 * sections were there. */
#define G_APR 0x1u
#define G_GLIBC 0x2u
struct stat_sum {
	char allocator[32], key[MT_STATS_KEY];
	uint64_t value;
};
struct gauges {
	unsigned have;
	uint64_t apr_pools, apr_bytes, apr_growing;
	uint64_t arenas, heaps, sbrk_bytes, mmapped_bytes, mmap_threshold;
	struct stat_sum *stats;
	size_t nstats;
};

struct acc {
	int pid;
	uint64_t image_ns;
	char command[128];     /* the label, fixed once the process has counted calls */
	int fixed;
	struct mt_profile *prev; /* the last counts seen */
	struct mt_profile *base; /* counts from before a reset */
	struct mt_totals totals;
	int have_totals;
	struct gauges g;
};

struct group {
	char command[128];
	struct mt_profile *exited; /* the counts of its members that ended */
	uint64_t nexited;
};

struct mt_fleet {
	struct mt_fleet_opts o;
	int stacks, ebpf;
	struct mt_http *http;
	struct mt_session *sess;
	struct acc *a;
	size_t na;
	struct group *g;
	size_t ng;
	char dir[PATH_MAX];
	unsigned keep;
	/* Symbolizers of the layouts profiled last, kept between requests:
	 * symbolizing a server's modules afresh costs tens of ms each time. */
	struct {
		struct mt_profile *maps; /* the layout (mappings only) */
		struct mt_symbolizer *sym;
		uint64_t used;
	} sym[SYM_CACHE];
	uint64_t requests;
};

/* ---- options ---- */

int mt_fleet_opt(struct mt_fleet_opts *f, int id, const char *v, const char *cmd)
{
	char *end;
	switch (id) {
	case MT_O_PROMETHEUS:
		if (!v[0])
			return mt_error("%s: --prometheus=ADDR:PORT: expected e.g. 127.0.0.1:9464", cmd);
		f->listen = v;
		return 0;
	case MT_O_PROMETHEUS_ALLOW_REMOTE: f->allow_remote = 1; return 0;
	case MT_O_PROMETHEUS_PER_PID: f->per_pid = 1; return 0;
	case MT_O_PPROF_DIR:
		if (!v[0])
			return mt_error("%s: --pprof-dir=DIR: expected a directory", cmd);
		f->pprof_dir = v;
		return 0;
	case MT_O_PPROF_KEEP: {
		unsigned long n = strtoul(v, &end, 10);
		if (!v[0] || *end || n < 1 || n > 1000000)
			return mt_error("%s: --pprof-keep=%s: expected how many files to keep (1 or more)", cmd, v);
		f->keep = (unsigned)n;
		return 0;
	}
	}
	return 0;
}

int mt_fleet_check(const struct mt_cli_opts *o)
{
	const struct mt_fleet_opts *f = &o->fleet;
	const char *cmd = o->cmd == MT_CMD_RUN ? "run" : "attach";
	if ((f->allow_remote || f->per_pid) && !f->listen)
		return mt_error("%s: --prometheus-%s goes with --prometheus=ADDR:PORT", cmd,
				f->allow_remote ? "allow-remote" : "per-pid");
	if (f->keep && !f->pprof_dir)
		return mt_error("%s: --pprof-keep goes with --pprof-dir=DIR", cmd);
	if (f->pprof_dir && !o->interval_ms)
		return mt_error("%s: --pprof-dir writes a profile of each process every --interval=SECONDS: "
				"add --interval (e.g. --interval=60)", cmd);
	if (f->pprof_dir && !o->stacks)
		return mt_error("%s: --pprof-dir writes heap profiles of call sites: add --stacks (or "
				"--sample=BYTES)", cmd);
	return 0;
}

/* ---- accumulators ---- */

/* The label of a command line: its program's name ("/usr/sbin/apache2 -k
 * start" is apache2, "nginx: worker process" nginx). */
static void command_label(const char *cmdline, char *out, size_t outlen)
{
	size_t n = strcspn(cmdline, " ");
	const char *w = cmdline;
	for (size_t i = 0; i < n; i++)
		if (cmdline[i] == '/' && i + 1 < n)
			w = cmdline + i + 1;
	n -= (size_t)(w - cmdline);
	while (n && (w[n - 1] == ':' || w[n - 1] == '/'))
		n--;
	if (n)
		snprintf(out, outlen, "%.*s", (int)n, w);
	else
		snprintf(out, outlen, "unknown");
}

/* The label of member M: its command line as the session read it, else
 * (a process found after it ended: a zombie's cmdline is empty) its comm. */
static void member_label(const struct mt_member *m, char *out, size_t outlen)
{
	char comm[64] = "", path[64];
	if (!m->command[0]) {
		snprintf(path, sizeof(path), "/proc/%d/comm", m->pid);
		FILE *c = fopen(path, "re");
		if (c) {
			if (fgets(comm, sizeof(comm), c))
				comm[strcspn(comm, "\n")] = '\0';
			fclose(c);
		}
	}
	command_label(m->command[0] ? m->command : comm, out, outlen);
}

static struct acc *acc_of(struct mt_fleet *f, const struct mt_member *m, int add)
{
	for (size_t i = 0; i < f->na; i++)
		if (f->a[i].pid == m->pid && f->a[i].image_ns == m->image_ns) {
			/* Until it counts anything its command may still change
			 * (a child seen before its exec): read it afresh. */
			if (!f->a[i].fixed && m->state == MT_MEMBER_RUNNING) {
				char cmd[sizeof(m->command)];
				mt_proc_cmdline(m->pid, cmd, sizeof(cmd));
				if (cmd[0])
					command_label(cmd, f->a[i].command, sizeof(f->a[i].command));
				else
					member_label(m, f->a[i].command, sizeof(f->a[i].command));
			}
			return &f->a[i];
		}
	if (!add)
		return NULL;
	struct acc *v = realloc(f->a, (f->na + 1) * sizeof(*v));
	if (!v)
		return NULL;
	f->a = v;
	struct acc *a = &v[f->na];
	memset(a, 0, sizeof(*a));
	a->pid = m->pid;
	a->image_ns = m->image_ns;
	member_label(m, a->command, sizeof(a->command));
	if (!(a->prev = mt_profile_new()) || !(a->base = mt_profile_new())) {
		mt_profile_free(a->prev);
		return NULL;
	}
	f->na++;
	return a;
}

static void func_set(struct mt_func *d, const struct mt_func *s)
{
	d->calls = s->calls;
	d->bytes = s->bytes;
	d->failed = s->failed;
	memcpy(d->hist, s->hist, sizeof(d->hist));
}

static void gauges_free(struct gauges *g)
{
	free(g->stats);
	memset(g, 0, sizeof(*g));
}

static void stat_add(struct gauges *g, const char *allocator, const char *key, uint64_t v)
{
	for (size_t i = 0; i < g->nstats; i++)
		if (!strcmp(g->stats[i].key, key) && !strcmp(g->stats[i].allocator, allocator)) {
			g->stats[i].value += v;
			return;
		}
	struct stat_sum *n = realloc(g->stats, (g->nstats + 1) * sizeof(*n));
	if (!n)
		return;
	g->stats = n;
	snprintf(n[g->nstats].allocator, sizeof(n->allocator), "%s", allocator);
	snprintf(n[g->nstats].key, sizeof(n->key), "%s", key);
	n[g->nstats++].value = v;
}

/* P's sections as gauges into G (what G had is dropped). */
static void gauges_of(const struct mt_profile *p, struct gauges *g)
{
	gauges_free(g);
	if (p->apr && p->apr->hooked) {
		g->have |= G_APR;
		for (uint32_t i = 0; i < p->apr->npools; i++) {
			const struct mt_apr_pool *q = &p->apr->pools[i];
			if (q->destroyed_ns)
				continue;
			g->apr_pools++;
			g->apr_bytes += q->cur_bytes;
			g->apr_growing += mt_apr_growing(q, p->dump_ns) != 0;
		}
	}
	if (p->glibc) {
		g->have |= G_GLIBC;
		g->arenas = p->glibc->narenas;
		g->heaps = p->glibc->nheaps;
		g->sbrk_bytes = p->glibc->sbrk_bytes;
		g->mmapped_bytes = p->glibc->mmapped_bytes;
		g->mmap_threshold = p->glibc->mmap_threshold;
	}
	for (uint32_t i = 0; p->stats && i < p->stats->n && i < MT_STATS_MAX; i++)
		stat_add(g, p->stats->allocator, p->stats->v[i].key, p->stats->v[i].value);
}

/* Adds S into the row's D: sums, and the largest threshold. */
static void gauges_add(struct gauges *d, const struct gauges *s)
{
	d->have |= s->have;
	d->apr_pools += s->apr_pools;
	d->apr_bytes += s->apr_bytes;
	d->apr_growing += s->apr_growing;
	d->arenas += s->arenas;
	d->heaps += s->heaps;
	d->sbrk_bytes += s->sbrk_bytes;
	d->mmapped_bytes += s->mmapped_bytes;
	if (s->mmap_threshold > d->mmap_threshold)
		d->mmap_threshold = s->mmap_threshold;
	for (size_t i = 0; i < s->nstats; i++)
		stat_add(d, s->stats[i].allocator, s->stats[i].key, s->stats[i].value);
}

/* The counts of P become A's; a function that went down was reset: what
 * it had counted moves to A's base. */
static void acc_update(struct acc *a, const struct mt_profile *p)
{
	for (uint32_t i = 0; i < p->nfuncs; i++) {
		const struct mt_func *s = &p->funcs[i];
		struct mt_func *d = mt_profile_func(a->prev, s->name, s->kind);
		if (!d)
			continue;
		if (s->calls < d->calls || s->bytes < d->bytes || s->failed < d->failed) {
			struct mt_func *b = mt_profile_func(a->base, s->name, s->kind);
			if (b)
				mt_func_add(b, d);
		}
		func_set(d, s);
		a->fixed |= s->calls != 0;
	}
	a->totals = p->totals;
	a->have_totals = 1;
	gauges_of(p, &a->g);
}

static struct group *group_of(struct mt_fleet *f, const char *command)
{
	for (size_t i = 0; i < f->ng; i++)
		if (!strcmp(f->g[i].command, command))
			return &f->g[i];
	if (f->ng >= GROUPS_MAX)
		command = "other";
	for (size_t i = 0; i < f->ng; i++)
		if (!strcmp(f->g[i].command, command))
			return &f->g[i];
	struct group *v = realloc(f->g, (f->ng + 1) * sizeof(*v));
	if (!v)
		return NULL;
	f->g = v;
	struct group *g = &v[f->ng];
	memset(g, 0, sizeof(*g));
	snprintf(g->command, sizeof(g->command), "%s", command);
	if (!(g->exited = mt_profile_new()))
		return NULL;
	f->ng++;
	return g;
}

static void add_funcs(struct mt_profile *dst, const struct mt_profile *src)
{
	for (uint32_t i = 0; i < src->nfuncs; i++) {
		struct mt_func *d = mt_profile_func(dst, src->funcs[i].name, src->funcs[i].kind);
		if (d)
			mt_func_add(d, &src->funcs[i]);
	}
}

/* A member that ended: its counts join its command's group. */
static void acc_retire(struct mt_fleet *f, struct acc *a)
{
	struct group *g = group_of(f, a->command);
	if (g) {
		add_funcs(g->exited, a->base);
		add_funcs(g->exited, a->prev);
		g->nexited++;
	}
	mt_profile_free(a->base);
	mt_profile_free(a->prev);
	gauges_free(&a->g);
	*a = f->a[--f->na];
}

static void on_wrote(struct mt_session *s, const struct mt_member *m, const struct mt_profile *p, const char *path,
		     void *arg);

static void on_ended(struct mt_session *s, const struct mt_member *m, void *arg)
{
	struct mt_fleet *f = arg;
	struct acc *a = acc_of(f, m, 0);
	(void)s;
	if (a) {
		acc_retire(f, a);
	} else if (m->end != MT_END_EXEC) {
		/* (an image replaced by exec before any call is no process) */
		/* Never seen and no final profile: only counted as ended. */
		char label[128];
		member_label(m, label, sizeof(label));
		struct group *g = group_of(f, label);
		if (g)
			g->nexited++;
	}
}

/* Every running member's counts, now. */
static void refresh(struct mt_fleet *f)
{
	size_t n;
	const struct mt_member *m = mt_session_members(f->sess, &n);
	for (size_t i = 0; i < n; i++) {
		if (m[i].state != MT_MEMBER_RUNNING)
			continue;
		struct acc *a = acc_of(f, &m[i], 1);
		struct mt_profile *p;
		char err[512];
		if (!a || mt_session_snapshot(f->sess, m[i].pid, &p, err, sizeof(err)))
			continue; /* its last counts stand */
		acc_update(a, p);
		mt_profile_free(p);
	}
	/* Members the session is done with but observers were not told yet. */
	for (size_t i = 0; i < f->na;) {
		int running = 0;
		for (size_t k = 0; k < n && !running; k++)
			running = m[k].pid == f->a[i].pid && m[k].image_ns == f->a[i].image_ns &&
				  m[k].state == MT_MEMBER_RUNNING;
		if (running)
			i++;
		else
			acc_retire(f, &f->a[i]);
	}
}

/* ---- /metrics ---- */

/* One set of label values: a command (and a pid) and its counts. */
struct row {
	const char *command;
	char pid[24];           /* "" unless --prometheus-per-pid */
	struct mt_profile *funcs;
	int64_t in_use;
	uint64_t peak, running, exited;
	int have_totals;
	struct gauges g;
};

static int row_cmp(const void *x, const void *y)
{
	const struct row *a = x, *b = y;
	int c = strcmp(a->command, b->command);
	if (c)
		return c;
	/* "exited" after the pids */
	if (!a->pid[0] || !b->pid[0] || a->pid[0] == 'e' || b->pid[0] == 'e')
		return strcmp(a->pid, b->pid);
	return atoi(a->pid) - atoi(b->pid);
}

static struct row *row_of(struct row **rows, size_t *n, const char *command, const char *pid)
{
	for (size_t i = 0; i < *n; i++)
		if (!strcmp((*rows)[i].command, command) && !strcmp((*rows)[i].pid, pid))
			return &(*rows)[i];
	struct row *v = realloc(*rows, (*n + 1) * sizeof(*v));
	if (!v)
		return NULL;
	*rows = v;
	struct row *r = &v[*n];
	memset(r, 0, sizeof(*r));
	r->command = command;
	snprintf(r->pid, sizeof(r->pid), "%s", pid);
	if (!(r->funcs = mt_profile_new()))
		return NULL;
	(*n)++;
	return r;
}

static int is_alloc(uint32_t kind)
{
	return kind != MT_KIND_FREE && kind != MT_KIND_UNMAP;
}

static int name_cmp(const void *x, const void *y)
{
	const struct mt_func *a = *(const struct mt_func *const *)x, *b = *(const struct mt_func *const *)y;
	return strcmp(a->name, b->name);
}

enum fam_value { V_CALLS, V_BYTES, V_FAILED };

/* The current family's series: every row's functions of one side (ALLOC:
 * the allocating ones, else the releasing ones) that were ever called. */
static void func_series(struct mt_prom *w, const struct row *rows, size_t nrows, int alloc, enum fam_value v)
{
	for (size_t i = 0; i < nrows; i++) {
		const struct mt_profile *p = rows[i].funcs;
		const struct mt_func **order = calloc(p->nfuncs ? p->nfuncs : 1, sizeof(*order));
		uint32_t n = 0;
		if (!order)
			continue;
		for (uint32_t k = 0; k < p->nfuncs; k++)
			if (p->funcs[k].calls && is_alloc(p->funcs[k].kind) == alloc)
				order[n++] = &p->funcs[k];
		qsort(order, n, sizeof(*order), name_cmp);
		for (uint32_t k = 0; k < n; k++) {
			struct mt_prom_label l[3] = {{"command", rows[i].command}, {"function", order[k]->name},
						     {"pid", rows[i].pid}};
			uint64_t x = v == V_CALLS ? order[k]->calls : v == V_BYTES ? order[k]->bytes : order[k]->failed;
			if (w->type == MT_PROM_HISTOGRAM)
				mt_prom_histogram(w, l, rows[i].pid[0] ? 3 : 2, order[k]->hist, order[k]->bytes);
			else
				mt_prom_u64(w, l, rows[i].pid[0] ? 3 : 2, x);
		}
		free(order);
	}
}

static void counter_family(struct mt_prom *w, const struct row *rows, size_t nrows, const char *name,
			   const char *unit, const char *help, int alloc, enum fam_value v)
{
	mt_prom_family(w, name, MT_PROM_COUNTER, unit, help);
	func_series(w, rows, nrows, alloc, v);
}

static void metrics(struct mt_fleet *f, FILE *out, enum mt_prom_format fmt)
{
	struct row *rows = NULL;
	size_t nrows = 0;
	refresh(f);
	/* Rows: a command's exited members and running ones (each its own with
	 * --prometheus-per-pid). */
	for (size_t i = 0; i < f->ng; i++) {
		struct row *r = row_of(&rows, &nrows, f->g[i].command, f->o.per_pid ? "exited" : "");
		if (!r)
			continue;
		add_funcs(r->funcs, f->g[i].exited);
		r->exited += f->g[i].nexited;
	}
	for (size_t i = 0; i < f->na; i++) {
		struct acc *a = &f->a[i];
		char pid[24] = "";
		if (f->o.per_pid)
			snprintf(pid, sizeof(pid), "%d", a->pid);
		struct row *r = row_of(&rows, &nrows, a->command, pid);
		if (!r)
			continue;
		add_funcs(r->funcs, a->base);
		add_funcs(r->funcs, a->prev);
		r->running++;
		gauges_add(&r->g, &a->g);
		if (a->have_totals) {
			r->in_use += a->totals.in_use_bytes;
			r->peak += a->totals.peak_in_use_bytes;
			r->have_totals = 1;
		}
	}
	if (nrows)
		qsort(rows, nrows, sizeof(*rows), row_cmp);

	struct mt_prom w;
	mt_prom_begin(&w, out, fmt);
	struct mt_prom_label info[2] = {{"version", MT_VERSION}, {"collector", f->ebpf ? "ebpf" : "agent"}};
	mt_prom_family(&w, "memtap_info", MT_PROM_INFO, NULL, "memtap's version and collector (always 1).");
	mt_prom_u64(&w, info, 2, 1);
	mt_prom_family(&w, "memtap_processes", MT_PROM_GAUGE, NULL, "Traced processes running now.");
	for (size_t i = 0; i < nrows; i++) {
		struct mt_prom_label l[2] = {{"command", rows[i].command}, {"pid", rows[i].pid}};
		if (strcmp(rows[i].pid, "exited"))
			mt_prom_u64(&w, l, rows[i].pid[0] ? 2 : 1, rows[i].running);
	}
	mt_prom_family(&w, "memtap_exited_processes_total", MT_PROM_COUNTER, NULL,
		       "Traced processes that ended (their counts stay in the counters).");
	for (size_t i = 0; i < nrows; i++) {
		struct mt_prom_label l[2] = {{"command", rows[i].command}, {"pid", rows[i].pid}};
		if (!rows[i].pid[0] || !strcmp(rows[i].pid, "exited"))
			mt_prom_u64(&w, l, rows[i].pid[0] ? 2 : 1, rows[i].exited);
	}
	counter_family(&w, rows, nrows, "memtap_allocations_total", NULL,
		       "Calls of each allocating function (malloc, operator new, mmap, -f functions).", 1, V_CALLS);
	counter_family(&w, rows, nrows, "memtap_allocated_bytes_total", "bytes",
		       "Bytes asked of each allocating function (its size argument).", 1, V_BYTES);
	counter_family(&w, rows, nrows, "memtap_failed_allocations_total", NULL,
		       "Calls of each allocating function that failed (NULL, MAP_FAILED).", 1, V_FAILED);
	counter_family(&w, rows, nrows, "memtap_frees_total", NULL,
		       "Calls of each releasing function (free, operator delete, munmap).", 0, V_CALLS);
	counter_family(&w, rows, nrows, "memtap_freed_bytes_total", "bytes",
		       "Bytes released through each releasing function (usable sizes).", 0, V_BYTES);
	/* The totals: the agent's (the eBPF backend does not collect them). */
	if (!f->ebpf) {
		mt_prom_family(&w, "memtap_in_use_bytes", MT_PROM_GAUGE, "bytes",
			       "Bytes allocated and not freed by the running processes (usable sizes).");
		for (size_t i = 0; i < nrows; i++) {
			struct mt_prom_label l[2] = {{"command", rows[i].command}, {"pid", rows[i].pid}};
			if (rows[i].have_totals)
				mt_prom_i64(&w, l, rows[i].pid[0] ? 2 : 1, rows[i].in_use);
		}
		mt_prom_family(&w, "memtap_peak_in_use_bytes", MT_PROM_GAUGE, "bytes",
			       "The running processes' peaks of in-use bytes, summed.");
		for (size_t i = 0; i < nrows; i++) {
			struct mt_prom_label l[2] = {{"command", rows[i].command}, {"pid", rows[i].pid}};
			if (rows[i].have_totals)
				mt_prom_u64(&w, l, rows[i].pid[0] ? 2 : 1, rows[i].peak);
		}
	}
	mt_prom_family(&w, "memtap_allocation_size_bytes", MT_PROM_HISTOGRAM, "bytes",
		       "Sizes asked of each allocating function, in power-of-two buckets.");
	func_series(&w, rows, nrows, 1, V_CALLS);
	/* The sections' gauges, for the rows that have them. */
	static const struct {
		const char *name, *unit, *help;
		unsigned have;
		size_t off;
	} gf[] = {
		{"memtap_apr_pools", NULL, "Live APR pools of the running processes (--pools).", G_APR,
		 offsetof(struct gauges, apr_pools)},
		{"memtap_apr_pool_bytes", "bytes", "Bytes allocated from the live APR pools since their last clear "
		 "(--pools).", G_APR, offsetof(struct gauges, apr_bytes)},
		{"memtap_apr_growing_pools", NULL, "Live APR pools that only grow (docs/POOLS.md: a leak like "
		 "seeds/002's).", G_APR, offsetof(struct gauges, apr_growing)},
		{"memtap_glibc_arenas", NULL, "glibc malloc arenas (--glibc).", G_GLIBC, offsetof(struct gauges, arenas)},
		{"memtap_glibc_heaps", NULL, "glibc's mmapped arena heaps (--glibc).", G_GLIBC,
		 offsetof(struct gauges, heaps)},
		{"memtap_glibc_sbrk_bytes", "bytes", "The program break's extent, brk - sbrk_base (--glibc).", G_GLIBC,
		 offsetof(struct gauges, sbrk_bytes)},
		{"memtap_glibc_mmapped_bytes", "bytes", "Bytes in chunks glibc mmapped on their own (--glibc).", G_GLIBC,
		 offsetof(struct gauges, mmapped_bytes)},
		{"memtap_glibc_mmap_threshold_bytes", "bytes", "glibc's dynamic mmap threshold (the largest of the "
		 "processes; --glibc).", G_GLIBC, offsetof(struct gauges, mmap_threshold)},
	};
	for (size_t k = 0; k < sizeof(gf) / sizeof(gf[0]); k++) {
		int any = 0;
		for (size_t i = 0; i < nrows && !any; i++)
			any = (rows[i].g.have & gf[k].have) != 0;
		if (!any)
			continue;
		mt_prom_family(&w, gf[k].name, MT_PROM_GAUGE, gf[k].unit, gf[k].help);
		for (size_t i = 0; i < nrows; i++) {
			struct mt_prom_label l[2] = {{"command", rows[i].command}, {"pid", rows[i].pid}};
			if (rows[i].g.have & gf[k].have)
				mt_prom_u64(&w, l, rows[i].pid[0] ? 2 : 1,
					    *(const uint64_t *)((const char *)&rows[i].g + gf[k].off));
		}
	}
	int any_stats = 0;
	for (size_t i = 0; i < nrows; i++)
		any_stats |= rows[i].g.nstats != 0;
	if (any_stats) {
		mt_prom_family(&w, "memtap_allocator_stat", MT_PROM_GAUGE, NULL,
			       "The allocator's own statistics, by its key (ctl stats; summed over the processes).");
		for (size_t i = 0; i < nrows; i++)
			for (size_t k = 0; k < rows[i].g.nstats; k++) {
				const struct stat_sum *st = &rows[i].g.stats[k];
				struct mt_prom_label l[4] = {{"command", rows[i].command}, {"allocator", st->allocator},
							     {"key", st->key}, {"pid", rows[i].pid}};
				mt_prom_u64(&w, l, rows[i].pid[0] ? 4 : 3, st->value);
			}
	}
	mt_prom_end(&w);
	for (size_t i = 0; i < nrows; i++) {
		mt_profile_free(rows[i].funcs);
		gauges_free(&rows[i].g);
	}
	free(rows);
}

/* ---- pprof ---- */

static int same_maps(const struct mt_profile *a, const struct mt_profile *b)
{
	if (a->nmaps != b->nmaps)
		return 0;
	for (uint32_t i = 0; i < a->nmaps; i++)
		if (a->maps[i].start != b->maps[i].start || a->maps[i].end != b->maps[i].end ||
		    a->maps[i].offset != b->maps[i].offset || strcmp(a->maps[i].path, b->maps[i].path))
			return 0;
	return 1;
}

/* The kept symbolizer for P's layout (made now, in the least recently used
 * slot not in use by this request), or NULL. */
static struct mt_symbolizer *symbolizer_for(struct mt_fleet *f, const struct mt_profile *p)
{
	size_t k, lru = SYM_CACHE;
	for (k = 0; k < SYM_CACHE; k++)
		if (f->sym[k].maps && same_maps(f->sym[k].maps, p)) {
			f->sym[k].used = f->requests;
			return f->sym[k].sym;
		}
	for (k = 0; k < SYM_CACHE; k++)
		if (f->sym[k].used != f->requests && (lru == SYM_CACHE || f->sym[k].used < f->sym[lru].used))
			lru = k;
	if (lru == SYM_CACHE)
		return NULL;
	mt_symbolizer_free(f->sym[lru].sym);
	mt_profile_free(f->sym[lru].maps);
	f->sym[lru].sym = NULL;
	f->sym[lru].used = 0;
	struct mt_profile *m = f->sym[lru].maps = mt_profile_new();
	for (uint32_t i = 0; m && i < p->nmaps; i++) {
		struct mt_mapping *d = mt_profile_add_mapping(m);
		if (!d) {
			mt_profile_free(m);
			m = f->sym[lru].maps = NULL;
			break;
		}
		*d = p->maps[i];
	}
	if (!m || !(f->sym[lru].sym = mt_symbolizer_new(m))) {
		mt_profile_free(m);
		f->sym[lru].maps = NULL;
		return NULL;
	}
	f->sym[lru].used = f->requests;
	return f->sym[lru].sym;
}

/* A gzipped pprof profile of PROFS (NPROFS) into OUT; DEFAULT_TYPE: which
 * sample type pprof shows first.  Processes with the same layout (a
 * server's forked children) are merged first, so each layout is
 * symbolized once, with the symbolizer kept from earlier requests. */
static int pprof_of(struct mt_fleet *f, const struct mt_profile *const *profs, size_t nprofs, unsigned default_type,
		    FILE *out)
{
	struct mt_profile **groups = calloc(nprofs, sizeof(*groups));
	const struct mt_profile **cgroups = calloc(nprofs, sizeof(*cgroups));
	struct mt_symbolizer **syms = calloc(nprofs, sizeof(*syms));
	size_t ng = 0, ns = 0, nsites = 0;
	int ret = -ENOMEM;
	struct mt_pprof_sample *s = NULL;
	f->requests++;
	if (!groups || !cgroups || !syms)
		goto out;
	for (size_t i = 0; i < nprofs; i++) {
		size_t g = 0;
		while (g < ng && !same_maps(groups[g], profs[i]))
			g++;
		if (g == ng) {
			if (!(groups[ng] = mt_profile_new()))
				goto out;
			groups[ng]->start_ns = profs[i]->start_ns;
			groups[ng]->dump_ns = profs[i]->dump_ns;
			ng++;
		}
		if ((ret = mt_profile_merge(groups[g], profs[i])))
			goto out;
		if (profs[i]->start_ns < groups[g]->start_ns)
			groups[g]->start_ns = profs[i]->start_ns;
		ret = -ENOMEM;
	}
	for (size_t g = 0; g < ng; g++)
		syms[g] = symbolizer_for(f, groups[g]);
	for (size_t g = 0; g < ng; g++)
		nsites += groups[g]->nsites;
	if (!(s = calloc(nsites ? nsites : 1, sizeof(*s))))
		goto out;
	uint64_t start = UINT64_MAX, now = 0;
	for (size_t g = 0; g < ng; g++) {
		const struct mt_profile *p = groups[g];
		cgroups[g] = p;
		start = p->start_ns < start ? p->start_ns : start;
		now = p->dump_ns > now ? p->dump_ns : now;
		for (uint32_t i = 0; i < p->nsites; i++) {
			struct mt_site_est e;
			mt_site_estimate(p, &p->sites[i], &e);
			s[ns++] = (struct mt_pprof_sample){p, &p->sites[i],
				{(int64_t)e.alloc_objects, (int64_t)e.alloc_bytes, (int64_t)e.inuse_objects,
				 (int64_t)e.inuse_bytes}};
		}
	}
	char comment[MT_TEXT_MAX + 128];
	if (nprofs == 1)
		snprintf(comment, sizeof(comment), "memtap: pid %u: %s", profs[0]->pid, profs[0]->command);
	else
		snprintf(comment, sizeof(comment), "memtap: %zu processes of one session", nprofs);
	ret = mt_pprof_write_typed(out, ng ? groups[0] : profs[0], cgroups, ng, s, ns,
				   now > start ? (int64_t)(now - start) : 0, comment, default_type, syms);
out:
	for (size_t g = 0; g < ng; g++)
		mt_profile_free(groups[g]);
	free(groups);
	free(syms);
	free(cgroups);
	free(s);
	return ret;
}

/* The value of KEY in a query string ("pid=12&gc=1"), or NULL. */
static const char *query_value(const char *q, const char *key, char *out, size_t outlen)
{
	size_t kl = strlen(key);
	for (const char *p = q; *p;) {
		size_t len = strcspn(p, "&");
		if (len > kl && !strncmp(p, key, kl) && p[kl] == '=') {
			snprintf(out, outlen, "%.*s", (int)(len - kl - 1), p + kl + 1);
			return out;
		}
		if (len == kl && !strncmp(p, key, kl)) {
			snprintf(out, outlen, "%s", "");
			return out;
		}
		p += len + (p[len] == '&');
	}
	return NULL;
}

static void text(struct mt_http_response *r, int status, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static void text(struct mt_http_response *r, int status, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	r->status = status;
	r->content_type = "text/plain; charset=utf-8";
	int n = vasprintf(&r->body, fmt, ap);
	va_end(ap);
	if (n < 0) {
		r->body = NULL;
		r->len = 0;
	} else {
		r->len = (size_t)n;
	}
}

static void pprof_endpoint(struct mt_fleet *f, const struct mt_http_request *req, struct mt_http_response *r,
			   int allocs)
{
	char v[64];
	int pid = 0;
	if (!f->stacks)
		return text(r, 404, "no call sites to profile: this memtap session runs without --stacks; start it "
			    "again with --stacks (or --sample=BYTES) to serve heap profiles here\n");
	if (query_value(req->query, "seconds", v, sizeof(v)))
		return text(r, 400, "seconds=: delta profiles are not served; ask for the cumulative profile "
			    "(/debug/pprof/%s without seconds=, e.g. Alloy's and Parca's delta = false)\n",
			    allocs ? "allocs" : "heap");
	if (query_value(req->query, "debug", v, sizeof(v)) && strcmp(v, "0"))
		return text(r, 400, "debug=%s: only the protobuf profile is served (debug=0); use go tool pprof "
			    "-raw to read it as text\n", v);
	if (query_value(req->query, "pid", v, sizeof(v))) {
		char *end;
		pid = (int)strtol(v, &end, 10);
		if (!v[0] || *end || pid <= 0)
			return text(r, 400, "pid=%s: expected a process id of this session\n", v);
	}
	size_t n, np = 0;
	const struct mt_member *m = mt_session_members(f->sess, &n);
	struct mt_profile **profs = calloc(n ? n : 1, sizeof(*profs));
	if (!profs)
		return text(r, 500, "out of memory\n");
	for (size_t i = 0; i < n; i++) {
		char err[512];
		if (m[i].state != MT_MEMBER_RUNNING || (pid && m[i].pid != pid))
			continue;
		if (mt_session_snapshot(f->sess, m[i].pid, &profs[np], err, sizeof(err)) == 0)
			np++;
	}
	if (!np) {
		free(profs);
		if (pid)
			return text(r, 404, "process %d is not a running process of this session (see /metrics with "
				    "--prometheus-per-pid, or memtap's summary)\n", pid);
		return text(r, 503, "no running process in this session yet\n");
	}
	FILE *out = open_memstream(&r->body, &r->len);
	int ret = out ? pprof_of(f, (const struct mt_profile *const *)profs, np, allocs ? 1 : 3, out) : -ENOMEM;
	if (out)
		fclose(out);
	for (size_t i = 0; i < np; i++)
		mt_profile_free(profs[i]);
	free(profs);
	if (ret) {
		free(r->body);
		r->body = NULL;
		return text(r, 500, "cannot write the profile: %s\n", strerror(-ret));
	}
	r->status = 200;
	r->content_type = "application/octet-stream";
}

static void handler(const struct mt_http_request *req, struct mt_http_response *r, void *arg)
{
	struct mt_fleet *f = arg;
	if (!strcmp(req->path, "/debug/pprof/symbol")) {
		/* pprof asks here for the addresses it could not symbolize
		 * (net/http/pprof's protocol).  memtap's profiles carry every
		 * name its symbolizer found: answer "none" so that pprof goes
		 * on with its local symbolization instead of failing. */
		return text(r, 200, "%s", !strcmp(req->method, "POST") ? "" : "num_symbols: 0\n");
	}
	if (!strcmp(req->method, "POST"))
		return text(r, 405, "only GET and HEAD are served here\n");
	if (!strcmp(req->path, "/metrics")) {
		enum mt_prom_format fmt = mt_prom_wants_openmetrics(req->accept);
		FILE *out = open_memstream(&r->body, &r->len);
		if (!out)
			return text(r, 500, "out of memory\n");
		metrics(f, out, fmt);
		fclose(out);
		r->status = 200;
		r->content_type = mt_prom_content_type(fmt);
	} else if (!strcmp(req->path, "/debug/pprof/heap")) {
		pprof_endpoint(f, req, r, 0);
	} else if (!strcmp(req->path, "/debug/pprof/allocs")) {
		pprof_endpoint(f, req, r, 1);
	} else if (!strcmp(req->path, "/") || !strcmp(req->path, "/debug/pprof/") ||
		   !strcmp(req->path, "/debug/pprof")) {
		text(r, 200, "memtap %s: the allocations of the processes this memtap command traces\n"
			     "/metrics              Prometheus (text 0.0.4, or OpenMetrics 1.0 by Accept)\n"
			     "/debug/pprof/heap     pprof heap profile, in use (?pid=N: one process)%s\n"
			     "/debug/pprof/allocs   pprof profile of every allocation since the start%s\n",
		     MT_VERSION, f->stacks ? "" : " [needs --stacks]", f->stacks ? "" : " [needs --stacks]");
	} else {
		text(r, 404, "%s: not served here; try /metrics, /debug/pprof/heap or /debug/pprof/allocs\n",
		     req->path);
	}
}

/* ---- --pprof-dir ---- */

static int pprof_file_cmp(const void *x, const void *y)
{
	const struct {
		char name[256];
		struct timespec t;
	} *a = x, *b = y;
	if (a->t.tv_sec != b->t.tv_sec)
		return a->t.tv_sec < b->t.tv_sec ? -1 : 1;
	if (a->t.tv_nsec != b->t.tv_nsec)
		return a->t.tv_nsec < b->t.tv_nsec ? -1 : 1;
	return strcmp(a->name, b->name);
}

/* Keeps the newest F->keep of memtap's profiles in the directory. */
static void prune(struct mt_fleet *f)
{
	struct ent {
		char name[256];
		struct timespec t;
	} *v = NULL;
	size_t n = 0, cap = 0;
	DIR *d = opendir(f->dir);
	struct dirent *e;
	while (d && (e = readdir(d))) {
		size_t l = strlen(e->d_name);
		if (strncmp(e->d_name, "memtap-", 7) || l < 13 || strcmp(e->d_name + l - 6, ".pb.gz"))
			continue;
		struct stat st;
		if (fstatat(dirfd(d), e->d_name, &st, AT_SYMLINK_NOFOLLOW) || !S_ISREG(st.st_mode))
			continue;
		if (n == cap) {
			struct ent *g = realloc(v, (cap = cap ? 2 * cap : 64) * sizeof(*v));
			if (!g)
				break;
			v = g;
		}
		snprintf(v[n].name, sizeof(v[n].name), "%s", e->d_name);
		v[n++].t = st.st_mtim;
	}
	if (n > f->keep) {
		qsort(v, n, sizeof(*v), pprof_file_cmp);
		for (size_t i = 0; i < n - f->keep; i++)
			unlinkat(dirfd(d), v[i].name, 0);
	}
	if (d)
		closedir(d);
	free(v);
}

/* A periodic profile of M: its pprof into the directory, atomically. */
static void write_pprof_file(struct mt_fleet *f, const struct mt_member *m, const struct mt_profile *p,
			     const char *label)
{
	char safe[64], when[32], tmp[PATH_MAX], path[PATH_MAX];
	size_t k = 0;
	for (const char *c = label; *c && k < sizeof(safe) - 1; c++)
		safe[k++] = (*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') || (*c >= '0' && *c <= '9') ||
				    *c == '.' || *c == '_'
			    ? *c
			    : '_';
	safe[k] = '\0';
	time_t sec = (time_t)(p->dump_ns / 1000000000u);
	struct tm tm;
	gmtime_r(&sec, &tm);
	strftime(when, sizeof(when), "%Y%m%dT%H%M%S", &tm);
	snprintf(path, sizeof(path), "%s/memtap-%s-%d-%s.%03uZ.pb.gz", f->dir, safe, m->pid, when,
		 (unsigned)(p->dump_ns / 1000000u % 1000u));
	snprintf(tmp, sizeof(tmp), "%s/.memtap-%d.tmp.XXXXXX", f->dir, m->pid);
	int fd = mkstemp(tmp);
	if (fd < 0) {
		mt_error("--pprof-dir: cannot write in %s: %s", f->dir, strerror(errno));
		return;
	}
	FILE *out = fdopen(fd, "w");
	int ret = out ? pprof_of(f, &p, 1, 3, out) : -errno;
	if (out ? fclose(out) : close(fd))
		ret = ret ? ret : -EIO;
	if (!ret && rename(tmp, path) < 0)
		ret = -errno;
	if (ret) {
		mt_error("--pprof-dir: cannot write %s: %s", path, strerror(-ret));
		unlink(tmp);
		return;
	}
	prune(f);
}

static void on_wrote(struct mt_session *s, const struct mt_member *m, const struct mt_profile *p, const char *path,
		     void *arg)
{
	struct mt_fleet *f = arg;
	(void)s;
	(void)path;
	/* Fresh counts for free (periodic or final profiles). */
	struct acc *a = acc_of(f, m, 1);
	if (a)
		acc_update(a, p);
	if (f->dir[0] && p->reason == MT_REASON_INTERVAL) {
		char label[128];
		command_label(m->command[0] ? m->command : p->command, label, sizeof(label));
		write_pprof_file(f, m, p, a ? a->command : label);
	}
}

/* ---- the endpoint ---- */

int mt_fleet_open(const struct mt_cli_opts *o, struct mt_fleet **out)
{
	const char *cmd = o->cmd == MT_CMD_RUN ? "run" : "attach";
	char err[1024];
	*out = NULL;
	if (!o->fleet.listen && !o->fleet.pprof_dir)
		return 0;
	struct mt_fleet *f = calloc(1, sizeof(*f));
	if (!f)
		return mt_error("%s: out of memory", cmd);
	f->o = o->fleet;
	f->stacks = o->stacks;
	f->ebpf = o->via == MT_VIA_EBPF;
	f->keep = o->fleet.keep ? o->fleet.keep : MT_FLEET_KEEP_DEFAULT;
	if (o->fleet.pprof_dir) {
		if (mkdir(o->fleet.pprof_dir, 0755) < 0 && errno != EEXIST) {
			mt_error("%s: --pprof-dir=%s: cannot create it: %s", cmd, o->fleet.pprof_dir, strerror(errno));
			free(f);
			return -1;
		}
		if (!realpath(o->fleet.pprof_dir, f->dir) || access(f->dir, W_OK | X_OK) < 0) {
			mt_error("%s: --pprof-dir=%s: %s; pass a directory you can write", cmd, o->fleet.pprof_dir,
				 strerror(errno));
			free(f);
			return -1;
		}
	}
	if (o->fleet.listen && mt_http_listen(o->fleet.listen, o->fleet.allow_remote, &f->http, err, sizeof(err))) {
		mt_error("%s: --prometheus=%s", cmd, err);
		free(f);
		return -1;
	}
	*out = f;
	return 0;
}

/* The session ends: the endpoint with it. */
static void on_done(struct mt_session *s, void *arg)
{
	(void)s;
	mt_fleet_free(arg);
}

void mt_fleet_attach(struct mt_fleet *f, struct mt_session *sess)
{
	if (!f)
		return;
	f->sess = sess;
	struct mt_session_observer o = {.wrote = on_wrote, .ended = on_ended, .done = on_done, .arg = f};
	int ret = mt_session_observe(sess, &o);
	if (ret) {
		mt_error("the metrics endpoint cannot follow this session: %s", strerror(-ret));
		mt_fleet_free(f);
		return;
	}
	if (f->http)
		ret = mt_http_serve(f->http, sess, handler, f);
	if (ret) {
		mt_error("the metrics endpoint cannot follow this session: %s", strerror(-ret));
		return;
	}
	if (f->http)
		fprintf(stderr, "memtap: serving %s/metrics and %s/debug/pprof/%s\n", mt_http_url(f->http),
			mt_http_url(f->http), f->stacks ? "" : " (heap profiles need --stacks)");
}

void mt_fleet_free(struct mt_fleet *f)
{
	if (!f)
		return;
	mt_http_free(f->http);
	for (size_t i = 0; i < f->na; i++) {
		mt_profile_free(f->a[i].prev);
		mt_profile_free(f->a[i].base);
		gauges_free(&f->a[i].g);
	}
	free(f->a);
	for (size_t i = 0; i < f->ng; i++)
		mt_profile_free(f->g[i].exited);
	free(f->g);
	for (size_t k = 0; k < SYM_CACHE; k++) {
		mt_symbolizer_free(f->sym[k].sym);
		mt_profile_free(f->sym[k].maps);
	}
	free(f);
}
