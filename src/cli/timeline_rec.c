/* The session's timeline recorder (timeline_rec.h). */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "session.h"
#include "timeline_rec.h"

/* One image of one process (an exec starts a new series). */
struct series {
	int pid;
	uint64_t image_ns;
	uint64_t start_ns;   /* its profiles' start_ns */
	struct mt_totals last;
	uint64_t last_alloc_calls, last_free_calls, last_ns;
	int have_last, done;
	struct mt_timeline tl;
};

struct mt_tl_rec {
	uint64_t interval_ns;
	struct series *v;
	size_t n;
};

static struct series *series_of(struct mt_tl_rec *r, const struct mt_member *m, int add)
{
	for (size_t i = 0; i < r->n; i++)
		if (r->v[i].pid == m->pid && r->v[i].image_ns == m->image_ns)
			return &r->v[i];
	if (!add)
		return NULL;
	struct series *v = realloc(r->v, (r->n + 1) * sizeof(*v));
	if (!v)
		return NULL;
	r->v = v;
	memset(&v[r->n], 0, sizeof(*v));
	v[r->n].pid = m->pid;
	v[r->n].image_ns = m->image_ns;
	v[r->n].tl.interval_ns = r->interval_ns;
	return &v[r->n++];
}

/* The resident set of PID from /proc/PID/statm (its second field, in
 * pages): one small read, none of smaps' page walk.  0 when gone. */
static uint64_t rss_of(int pid)
{
	char path[64], buf[128];
	snprintf(path, sizeof(path), "/proc/%d/statm", pid);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return 0;
	ssize_t n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return 0;
	buf[n] = '\0';
	unsigned long long size, res;
	if (sscanf(buf, "%llu %llu", &size, &res) != 2)
		return 0;
	return (uint64_t)res * (uint64_t)sysconf(_SC_PAGESIZE);
}

/* What grew since the last point; a counter that went down was reset (ctl
 * reset): its value is what happened since. */
static uint64_t since(uint64_t now, uint64_t before)
{
	return now >= before ? now - before : now;
}

static void add_point(struct series *se, const struct mt_profile *p, int final)
{
	uint64_t ac = 0, fc = 0, ab = 0, fb = 0;
	for (uint32_t i = 0; i < p->nfuncs; i++) {
		if (p->funcs[i].kind == MT_KIND_ALLOC) {
			ac += p->funcs[i].calls;
			ab += p->funcs[i].bytes;
		} else if (p->funcs[i].kind == MT_KIND_FREE) {
			fc += p->funcs[i].calls;
			fb += p->funcs[i].bytes;
		}
	}
	/* The eBPF collector keeps no usable-size totals: its bytes are the
	 * functions' (requested by allocations, released by frees), and in
	 * use is their difference (off by the allocator's rounding). */
	struct mt_totals tot = p->totals;
	if (!tot.allocated_bytes && !tot.freed_bytes && !tot.in_use_bytes && (ab || fb)) {
		tot.allocated_bytes = ab;
		tot.freed_bytes = fb;
		tot.in_use_bytes = (int64_t)(ab - fb);
	}
	uint64_t t = p->dump_ns;
	/* A dump the agent spooled may be older than the last point. */
	if (se->have_last && t <= se->last_ns)
		return;
	if (!se->start_ns)
		se->start_ns = p->start_ns;
	struct mt_tl_point pt = {
		.t_ns = t,
		.span_ns = se->have_last ? t - se->last_ns : (p->start_ns && p->start_ns < t ? t - p->start_ns : 0),
		.in_use_bytes = tot.in_use_bytes,
		.alloc_bytes = since(tot.allocated_bytes, se->last.allocated_bytes),
		.free_bytes = since(tot.freed_bytes, se->last.freed_bytes),
		.alloc_calls = since(ac, se->last_alloc_calls),
		.free_calls = since(fc, se->last_free_calls),
	};
	if (!final || p->end == MT_END_NONE) {
		pt.rss_bytes = rss_of((int)p->pid);
		if (pt.rss_bytes)
			pt.have |= MT_TL_HAVE_RSS;
	}
	if (mt_timeline_append(&se->tl, &pt))
		return;
	se->last = tot;
	se->last_alloc_calls = ac;
	se->last_free_calls = fc;
	se->last_ns = t;
	se->have_last = 1;
}

/* The start of M's parent's profiles, when the session traces it. */
static uint64_t parent_start(struct mt_tl_rec *r, struct mt_session *s, const struct mt_member *m)
{
	size_t n;
	const struct mt_member *all = mt_session_members(s, &n);
	const struct mt_member *parent = NULL;
	for (size_t i = 0; i < n; i++)
		if (all[i].pid == m->ppid && all[i].image_ns <= m->image_ns &&
		    (!parent || all[i].image_ns > parent->image_ns))
			parent = &all[i];
	if (!parent)
		return 0;
	struct series *se = series_of(r, parent, 0);
	return se && se->start_ns ? se->start_ns : parent->image_ns;
}

static void annotate(struct mt_session *s, const struct mt_member *m, struct mt_profile *p, void *arg)
{
	struct mt_tl_rec *r = arg;
	struct series *se = series_of(r, m, 1);
	if (!p->parent_start_ns && m->ppid)
		p->parent_start_ns = parent_start(r, s, m);
	if (!se)
		return;
	int final = p->reason == MT_REASON_EXIT || p->reason == MT_REASON_DETACH;
	add_point(se, p, final);
	if (!final)
		return;
	/* The final profile carries the series (copied: a failed write
	 * leaves it here, and an attach that ends in detach may come back). */
	if (mt_timeline_copy(&p->timeline, &se->tl))
		mt_timeline_clear(&p->timeline);
	p->timeline.interval_ns = r->interval_ns;
}

static void ended(struct mt_session *s, const struct mt_member *m, void *arg)
{
	(void)s;
	struct series *se = series_of(arg, m, 0);
	if (se)
		mt_timeline_clear(&se->tl); /* its start stays, for its children */
}

int mt_tl_rec_new(struct mt_session *s, uint64_t interval_ms, struct mt_tl_rec **out)
{
	struct mt_tl_rec *r = calloc(1, sizeof(*r));
	if (!r)
		return -ENOMEM;
	r->interval_ns = interval_ms * 1000000u;
	struct mt_session_observer o = {.ended = ended, .annotate = annotate, .arg = r};
	int ret = mt_session_observe(s, &o);
	if (ret) {
		free(r);
		return ret;
	}
	*out = r;
	return 0;
}

void mt_tl_rec_free(struct mt_tl_rec *r)
{
	if (!r)
		return;
	for (size_t i = 0; i < r->n; i++)
		mt_timeline_clear(&r->v[i].tl);
	free(r->v);
	free(r);
}
