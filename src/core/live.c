/*
 * The live counter file's one reader (include/memtap/live.h): header checks
 * and the snapshot that turns counter blocks, sites and pool tables into a
 * struct mt_profile.  The agent runs it on its own mapping for the dumps it
 * writes itself; the memtap command runs it on a copy of a traced process's
 * file.  Allocates nothing (the agent links it too); every address read
 * from the view goes through mt_live_at(), every list is bounded by what
 * the view can hold, so a file full of garbage gives garbage figures,
 * never a fault or a loop.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "memtap/live.h"

const char *mt_live_rundir(void)
{
	const char *d = getenv("MEMTAP_RUNDIR");
	struct stat st;
	if (d && d[0] == '/')
		return d;
	return stat("/dev/shm", &st) == 0 && S_ISDIR(st.st_mode) ? "/dev/shm" : "/tmp";
}


static const struct mt_live_hdr *hdr_of(const struct mt_live_view *v)
{
	return (const struct mt_live_hdr *)v->data;
}

int mt_live_check(const struct mt_live_view *v, char *err, size_t errlen)
{
	const struct mt_live_hdr *h = hdr_of(v);
	if (v->len < sizeof(*h) || memcmp(h->magic, MT_LIVE_MAGIC, sizeof(h->magic))) {
		snprintf(err, errlen, "not a memtap live counter file (bad magic or shorter than its header)");
		return -EINVAL;
	}
	if (h->version != MT_LIVE_VERSION) {
		snprintf(err, errlen, "live counter file version %u; this memtap reads version %d (use the "
			 "memtap that started the process)", h->version, MT_LIVE_VERSION);
		return -EPROTO;
	}
	size_t block = offsetof(struct mt_live_block, c) + (size_t)h->nfuncs * sizeof(struct mt_live_counter);
	if (h->hdr_size != sizeof(*h) || h->hist_buckets != MT_HIST_BUCKETS || !h->nfuncs ||
	    h->nfuncs > MT_LIVE_FUNCS_MAX || h->nbuiltin > h->nfuncs ||
	    h->nbuiltin + MT_LIVE_CUSTOM_MAX < h->nfuncs || h->block_size != block ||
	    h->site_size != sizeof(struct mt_live_site) || h->pool_slots != MT_LIVE_POOL_SLOTS) {
		snprintf(err, errlen, "live counter file with an unexpected layout (header %u bytes, %u "
			 "functions, block %u bytes): written by another memtap build?", h->hdr_size, h->nfuncs,
			 h->block_size);
		return -EPROTO;
	}
	if (v->base != h->base || h->base & 7) {
		snprintf(err, errlen, "live counter file: base address 0x%llx is not the view's",
			 (unsigned long long)h->base);
		return -EINVAL;
	}
	return 0;
}

/* At most how many objects of SIZE bytes the view can hold: the bound on
 * any list a reader walks. */
static uint64_t room(const struct mt_live_view *v, size_t size)
{
	return v->len / size + 1;
}

void mt_live_bounds(const struct mt_live_view *v, uint32_t *funcs, uint32_t *sites, uint32_t *pools)
{
	const struct mt_live_hdr *h = hdr_of(v);
	uint32_t ns = __atomic_load_n(&h->nsites, __ATOMIC_RELAXED);
	uint64_t max_sites = room(v, sizeof(struct mt_live_site));
	*funcs = h->nfuncs;
	/* sites added while the caller sizes its arrays wait for the next snapshot */
	*sites = (uint32_t)(ns + 64 < max_sites ? ns + 64 : max_sites);
	uint64_t np = 0;
	for (uint32_t i = 0; i < MT_LIVE_CUSTOM_MAX; i++) {
		uint64_t a = __atomic_load_n(&h->custom[i].pools, __ATOMIC_ACQUIRE);
		const struct mt_live_pools *t = a ? mt_live_at(v, a, sizeof(*t)) : NULL;
		for (size_t k = 0; t && k < MT_LIVE_POOL_SLOTS; k++)
			np += __atomic_load_n(&t->slot[k].key, __ATOMIC_RELAXED) != 0;
		np += t != NULL; /* "other" */
	}
	*pools = (uint32_t)(np + 64);
}

void mt_live_block_add(struct mt_live_block *dst, const struct mt_live_block *src, uint32_t nfuncs)
{
	for (uint32_t f = 0; f < nfuncs; f++) {
		const struct mt_live_counter *s = &src->c[f];
		struct mt_live_counter *d = &dst->c[f];
		d->bytes += __atomic_load_n(&s->bytes, __ATOMIC_RELAXED);
		d->failed += __atomic_load_n(&s->failed, __ATOMIC_RELAXED);
		for (int k = 0; k < MT_HIST_BUCKETS; k++)
			d->hist[k] += __atomic_load_n(&s->hist[k], __ATOMIC_RELAXED);
	}
	dst->released += __atomic_load_n(&src->released, __ATOMIC_RELAXED);
	dst->inuse_delta += __atomic_load_n(&src->inuse_delta, __ATOMIC_RELAXED);
}

/* The baseline (counters at the last reset) into BASE, and in-use at the
 * reset; 0 when there is none, -1 when it stayed torn (a writer mid-update
 * in a copy, or one that never finishes).  A seqlock: see the agent's
 * baseline_write(). */
static int baseline_read(const struct mt_live_view *v, struct mt_live_block *base, int64_t *inuse_at_reset)
{
	const struct mt_live_hdr *h = hdr_of(v);
	for (int tries = 0; tries < 1000; tries++) {
		uint32_t seq = __atomic_load_n(&h->baseline_seq, __ATOMIC_ACQUIRE);
		if (seq & 1)
			continue;
		uint64_t a = __atomic_load_n(&h->baseline, __ATOMIC_ACQUIRE);
		const struct mt_live_block *b = a ? mt_live_at(v, a, h->block_size) : NULL;
		if (b) {
			uint64_t *d = (uint64_t *)base;
			const uint64_t *s = (const uint64_t *)b;
			for (size_t i = 0; i < h->block_size / sizeof(*d); i++)
				d[i] = __atomic_load_n(&s[i], __ATOMIC_ACQUIRE);
		}
		*inuse_at_reset = __atomic_load_n(&h->inuse_at_reset, __ATOMIC_ACQUIRE);
		if (__atomic_load_n(&h->baseline_seq, __ATOMIC_RELAXED) == seq)
			return b != NULL;
	}
	*inuse_at_reset = 0;
	return -1;
}

static void fill_sites(const struct mt_live_view *v, struct mt_profile *p, const int *fn_index, unsigned *flags)
{
	const struct mt_live_hdr *h = hdr_of(v);
	uint32_t cap = p->nsites;
	uint64_t left = room(v, sizeof(struct mt_live_site));
	p->nsites = 0;
	for (uint64_t a = __atomic_load_n(&h->sites, __ATOMIC_ACQUIRE); a; left--) {
		const struct mt_live_site *s = mt_live_at(v, a, sizeof(*s));
		if (!s || !left) {
			*flags |= MT_LIVE_CUT;
			return;
		}
		uint32_t n = s->nframes, fn = s->fn;
		uint64_t frames_at = a + offsetof(struct mt_live_site, frames);
		a = __atomic_load_n(&s->all, __ATOMIC_ACQUIRE);
		if (n > MT_STACK_MAX || !mt_live_at(v, frames_at, n * sizeof(uint64_t))) {
			*flags |= MT_LIVE_BAD_SITE;
			continue;
		}
		if (p->nsites >= cap)
			return; /* sites added since the caller counted them wait for the next snapshot */
		struct mt_site *d = &p->sites[p->nsites++];
		d->nframes = n;
		d->frames = (uint64_t *)s->frames; /* in the view: copy before the view goes */
		int idx = fn < h->nfuncs ? fn_index[fn] : -1;
		d->fn = idx >= 0 ? (uint32_t)idx : UINT32_MAX;
		/* Allocated since the last reset; in use whenever allocated.  Freed
		 * is read first: every free follows its allocation, so live never
		 * goes below zero. */
		uint64_t fo = __atomic_load_n(&s->freed_objects, __ATOMIC_ACQUIRE);
		uint64_t fb = __atomic_load_n(&s->freed_bytes, __ATOMIC_ACQUIRE);
		uint64_t ao = __atomic_load_n(&s->alloc_objects, __ATOMIC_ACQUIRE);
		uint64_t ab = __atomic_load_n(&s->alloc_bytes, __ATOMIC_ACQUIRE);
		uint64_t ro = __atomic_load_n(&s->reset_objects, __ATOMIC_RELAXED);
		uint64_t rb = __atomic_load_n(&s->reset_bytes, __ATOMIC_RELAXED);
		d->alloc_objects = ao > ro ? ao - ro : 0;
		d->alloc_bytes = ab > rb ? ab - rb : 0;
		d->inuse_objects = ao > fo ? ao - fo : 0;
		d->inuse_bytes = ab > fb ? ab - fb : 0;
		d->peak_objects = __atomic_load_n(&s->peak_objects, __ATOMIC_RELAXED);
		d->peak_bytes = __atomic_load_n(&s->peak_bytes, __ATOMIC_RELAXED);
		d->temp_objects = __atomic_load_n(&s->temp_objects, __ATOMIC_RELAXED);
		d->temp_bytes = __atomic_load_n(&s->temp_bytes, __ATOMIC_RELAXED);
	}
}

static void pool_put(struct mt_profile *p, uint32_t cap, uint32_t fn, uint64_t pool, uint64_t calls,
		     uint64_t bytes)
{
	if (!calls || p->npools >= cap)
		return;
	struct mt_pool *d = &p->pools[p->npools++];
	d->fn = fn;
	d->by = MT_POOL_BY_ARG;
	d->pool = pool;
	d->calls = calls;
	d->bytes = bytes;
}

static void fill_pools(const struct mt_live_view *v, struct mt_profile *p, const int *fn_index)
{
	const struct mt_live_hdr *h = hdr_of(v);
	uint32_t cap = p->npools;
	p->npools = 0;
	for (uint32_t i = 0; i < MT_LIVE_CUSTOM_MAX && h->nbuiltin + i < h->nfuncs; i++) {
		uint64_t a = __atomic_load_n(&h->custom[i].pools, __ATOMIC_ACQUIRE);
		const struct mt_live_pools *t = a ? mt_live_at(v, a, sizeof(*t)) : NULL;
		int fn = fn_index[h->nbuiltin + i];
		if (!t || fn < 0)
			continue;
		for (size_t k = 0; k < MT_LIVE_POOL_SLOTS; k++) {
			const struct mt_live_pool_slot *sl = &t->slot[k];
			uint64_t key = __atomic_load_n(&sl->key, __ATOMIC_ACQUIRE);
			if (key)
				pool_put(p, cap, (uint32_t)fn, key - 1, __atomic_load_n(&sl->calls, __ATOMIC_RELAXED),
					 __atomic_load_n(&sl->bytes, __ATOMIC_RELAXED));
		}
		pool_put(p, cap, (uint32_t)fn, MT_POOL_OTHER, __atomic_load_n(&t->other_calls, __ATOMIC_RELAXED),
			 __atomic_load_n(&t->other_bytes, __ATOMIC_RELAXED));
	}
}

static void copy_text(char *dst, size_t dstlen, const char *src, size_t srclen)
{
	size_t n = strnlen(src, srclen);
	if (n >= dstlen)
		n = dstlen - 1;
	memcpy(dst, src, n);
	dst[n] = '\0';
}

unsigned mt_live_snapshot(const struct mt_live_view *v, struct mt_profile *p, void *scratch, int all)
{
	const struct mt_live_hdr *h = hdr_of(v);
	int fn_index[MT_LIVE_FUNCS_MAX];
	unsigned flags = 0;
	uint64_t freed = 0;
	int64_t inuse_at_reset;
	uint32_t nfuncs = h->nfuncs, cap = p->nfuncs;
	struct mt_live_block *sum = scratch, *base = (struct mt_live_block *)((uint8_t *)scratch + h->block_size);
	memset(sum, 0, h->block_size);

	/* The baseline before the counters: every counter only grows, so each
	 * one summed after the baseline was read is at least its baseline. */
	int have_base = baseline_read(v, base, &inuse_at_reset);
	if (have_base < 0)
		flags |= MT_LIVE_TORN;
	uint64_t left = room(v, h->block_size);
	for (uint64_t a = __atomic_load_n(&h->threads, __ATOMIC_ACQUIRE); a; left--) {
		const struct mt_live_block *b = mt_live_at(v, a, h->block_size);
		if (!b || !left) {
			flags |= MT_LIVE_CUT;
			break;
		}
		mt_live_block_add(sum, b, nfuncs);
		a = __atomic_load_n(&b->next, __ATOMIC_ACQUIRE);
	}

	p->nfuncs = 0;
	for (uint32_t f = 0; f < nfuncs; f++) {
		struct mt_live_counter *c = &sum->c[f];
		if (have_base > 0) {
			c->bytes -= base->c[f].bytes;
			c->failed -= base->c[f].failed;
			for (int k = 0; k < MT_HIST_BUCKETS; k++)
				c->hist[k] -= base->c[f].hist[k];
		}
		fn_index[f] = -1;
		uint64_t calls = 0;
		for (int k = 0; k < MT_HIST_BUCKETS; k++)
			calls += c->hist[k];
		if ((!calls && !all) || p->nfuncs >= cap || (f >= h->nbuiltin && f - h->nbuiltin >= h->ncustom))
			continue;
		fn_index[f] = (int)p->nfuncs;
		struct mt_func *o = &p->funcs[p->nfuncs++];
		memset(o->name, 0, sizeof(o->name));
		if (f < h->nbuiltin)
			copy_text(o->name, sizeof(o->name), h->names[f], sizeof(h->names[f]));
		else
			copy_text(o->name, sizeof(o->name), h->custom[f - h->nbuiltin].name,
				  sizeof(h->custom[0].name));
		if (!o->name[0])
			snprintf(o->name, sizeof(o->name), "function %u", f);
		o->kind = h->kinds[f] <= MT_KIND_OTHER ? h->kinds[f] : MT_KIND_OTHER;
		o->calls = calls;
		if (o->kind == MT_KIND_FREE)
			freed += c->bytes;
		o->bytes = c->bytes;
		o->failed = c->failed;
		memcpy(o->hist, c->hist, sizeof(o->hist));
	}
	int64_t inuse = __atomic_load_n(&h->inuse, __ATOMIC_RELAXED) + sum->inuse_delta;
	int64_t peak = __atomic_load_n(&h->peak, __ATOMIC_RELAXED);
	freed += sum->released - (have_base > 0 ? base->released : 0);
	p->totals.freed_bytes = freed;
	/* While threads run, the counters, in-use and in-use at the reset are
	 * each read at a slightly different moment (and in-use is folded from
	 * per-thread deltas): frees made in between can make the change in
	 * in-use outweigh the bytes freed since the reset.  Never below zero
	 * (it would wrap); exact once the threads are quiet. */
	int64_t change = inuse - inuse_at_reset;
	p->totals.allocated_bytes = change < 0 && (uint64_t)-change > freed ? 0 : freed + (uint64_t)change;
	p->totals.in_use_bytes = inuse;
	p->totals.peak_in_use_bytes = (uint64_t)(peak > inuse ? peak : inuse > 0 ? inuse : 0);

	p->sample_period = __atomic_load_n(&h->stacks, __ATOMIC_RELAXED)
				   ? __atomic_load_n(&h->sample_period, __ATOMIC_RELAXED) : 0;
	p->unknown_frees = __atomic_load_n(&h->unknown_frees, __ATOMIC_RELAXED);
	if (p->sites)
		fill_sites(v, p, fn_index, &flags);
	else
		p->nsites = 0;
	if (p->pools)
		fill_pools(v, p, fn_index);
	else
		p->npools = 0;

	p->pid = h->pid;
	p->ppid = h->ppid;
	p->uid = h->uid;
	p->run_id = __atomic_load_n(&h->run_id, __ATOMIC_RELAXED);
	p->start_ns = __atomic_load_n(&h->start_ns, __ATOMIC_RELAXED);
	p->peak_rss_bytes = (uint64_t)__atomic_load_n(&h->maxrss_kb, __ATOMIC_RELAXED) * 1024;
	p->flags = (__atomic_load_n(&h->active, __ATOMIC_RELAXED) ? MT_PROFILE_ACTIVE : 0) |
		   (__atomic_load_n(&h->flags, __ATOMIC_RELAXED) & MT_LIVE_F_FOLLOW ? MT_PROFILE_FOLLOW : 0);
	copy_text(p->command, sizeof(p->command), h->command, sizeof(h->command));
	copy_text(p->exe, sizeof(p->exe), h->exe, sizeof(h->exe));
	return flags;
}

void mt_live_end_to_profile(const struct mt_live_hdr *h, struct mt_profile *p, int gone)
{
	uint32_t end = __atomic_load_n(&h->end, __ATOMIC_ACQUIRE);
	p->end_code = (int32_t)h->end_code;
	switch (end) {
	case MT_LIVE_EXITED:
		p->end = MT_END_EXIT;
		if (!(h->flags & MT_LIVE_F_CODE_KNOWN))
			p->end_code = -1;
		break;
	case MT_LIVE__EXIT:
		p->end = MT_END__EXIT;
		break;
	case MT_LIVE_SIGNAL:
		p->end = MT_END_SIGNAL;
		break;
	default:
		p->end = gone ? MT_END_VANISHED : MT_END_NONE;
		p->end_code = 0;
	}
}

uint32_t mt_live_maps(const struct mt_live_view *v, const struct mt_mapping **out)
{
	const struct mt_live_hdr *h = hdr_of(v);
	uint64_t a = __atomic_load_n(&h->maps, __ATOMIC_ACQUIRE);
	uint32_t n = __atomic_load_n(&h->nmaps, __ATOMIC_RELAXED);
	*out = a && n && n <= 65536 ? mt_live_at(v, a, (size_t)n * sizeof(struct mt_mapping)) : NULL;
	return *out ? n : 0;
}
