/*
 * The profile file reader and writer (see include/memtap/format.h and
 * docs/FORMAT.md).  The writer never allocates except through the buffer's
 * grow function; the reader validates every length before it reads, so a
 * truncated or corrupt file yields an error naming the offset, never a crash.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "memtap/pools.h"
#include "memtap/format.h"
#include "memtap/glibc.h"
#include "memtap/leaks.h"

/* The bytes of one timeline point as this writer encodes it; a reader takes
 * the fields it knows from the front of longer ones (a newer writer's). */
#define TL_POINT_LEN (11 * 8 + 2 * 4)

void *mt_buf_grow_libc(void *old, size_t len, size_t newcap)
{
	(void)len;
	return realloc(old, newcap);
}

static void buf_put(struct mt_buf *b, const void *p, size_t n)
{
	if (b->err)
		return;
	if (b->len + n > b->cap) {
		size_t cap = b->cap ? b->cap : 4096;
		while (cap < b->len + n)
			cap *= 2;
		uint8_t *d = b->grow(b->data, b->len, cap);
		if (!d) {
			b->err = -ENOMEM;
			return;
		}
		b->data = d;
		b->cap = cap;
	}
	memcpy(b->data + b->len, p, n);
	b->len += n;
}

void mt_buf_put(struct mt_buf *b, const void *p, size_t n)
{
	buf_put(b, p, n);
}

/* x86-64 is little-endian, which is the file's byte order. */
static void put_u32(struct mt_buf *b, uint32_t v) { buf_put(b, &v, 4); }
static void put_u64(struct mt_buf *b, uint64_t v) { buf_put(b, &v, 8); }

void mt_buf_u32(struct mt_buf *b, uint32_t v)
{
	put_u32(b, v);
}

void mt_buf_u64(struct mt_buf *b, uint64_t v)
{
	put_u64(b, v);
}

static void put_str(struct mt_buf *b, const char *s, size_t max)
{
	size_t n = strnlen(s, max);
	put_u32(b, (uint32_t)n);
	buf_put(b, s, n);
}

/* Starts a record; returns the offset of its length field. */
size_t mt_rec_begin(struct mt_buf *b, uint32_t tag)
{
	put_u32(b, tag);
	size_t at = b->len;
	put_u32(b, 0);
	return at;
}

void mt_rec_end(struct mt_buf *b, size_t at)
{
	if (b->err)
		return;
	uint32_t n = (uint32_t)(b->len - at - 4);
	memcpy(b->data + at, &n, 4);
}

/* STATS (tag 12) and GLIBC (tag 11): docs/FORMAT.md. */
static void encode_stats(struct mt_buf *b, const struct mt_alloc_stats *s)
{
	size_t r = mt_rec_begin(b, MT_TAG_STATS);
	put_str(b, s->allocator, sizeof(s->allocator));
	put_str(b, s->source, sizeof(s->source));
	put_u64(b, s->taken_ns);
	uint32_t n = s->n < MT_STATS_MAX ? s->n : MT_STATS_MAX;
	put_u32(b, n);
	for (uint32_t i = 0; i < n; i++) {
		put_str(b, s->v[i].key, sizeof(s->v[i].key));
		put_u64(b, s->v[i].value);
	}
	mt_rec_end(b, r);
}

static void encode_glibc(struct mt_buf *b, const struct mt_glibc *g)
{
	size_t r = mt_rec_begin(b, MT_TAG_GLIBC);
	put_u32(b, g->flags);
	const uint64_t head[] = {g->taken_ns, g->sbrk_base, g->brk, g->sbrk_bytes, g->sbrk_grow_bytes,
				 g->sbrk_shrink_bytes, g->sbrk_grows, g->sbrk_shrinks, g->mmap_threshold,
				 g->trim_threshold, g->mmapped_bytes, g->mmapped_chunks, g->arena_max,
				 g->samples, g->sample_ms};
	for (size_t i = 0; i < sizeof(head) / sizeof(head[0]); i++)
		put_u64(b, head[i]);
	put_u32(b, g->changes_dropped);
	put_u32(b, g->agent_tid);
	uint32_t n = g->narenas < MT_GLIBC_ARENAS ? g->narenas : MT_GLIBC_ARENAS;
	put_u32(b, n);
	for (uint32_t i = 0; i < n; i++) {
		const struct mt_glibc_arena *a = &g->arenas[i];
		put_u64(b, a->addr);
		put_u32(b, a->main);
		put_u32(b, a->heaps);
		put_u64(b, a->heap_bytes);
		put_u64(b, a->system_bytes);
		put_u64(b, a->attached_threads);
		put_u64(b, a->lock_waits);
	}
	n = g->nheaps < MT_GLIBC_HEAPS ? g->nheaps : MT_GLIBC_HEAPS;
	put_u32(b, n);
	for (uint32_t i = 0; i < n; i++) {
		put_u64(b, g->heaps[i].addr);
		put_u64(b, g->heaps[i].arena);
		put_u64(b, g->heaps[i].size);
		put_u64(b, g->heaps[i].mprotect_size);
	}
	n = g->nthreads < MT_GLIBC_THREADS ? g->nthreads : MT_GLIBC_THREADS;
	put_u32(b, n);
	for (uint32_t i = 0; i < n; i++) {
		put_u32(b, g->threads[i].tid);
		put_u32(b, g->threads[i].alive);
		put_u64(b, g->threads[i].arena);
		put_u64(b, g->threads[i].arenas_used);
		put_u64(b, g->threads[i].lock_waits);
	}
	n = g->nchanges < MT_GLIBC_CHANGES ? g->nchanges : MT_GLIBC_CHANGES;
	put_u32(b, n);
	for (uint32_t i = 0; i < n; i++) {
		put_u64(b, g->changes[i].ns);
		put_u64(b, g->changes[i].mmap_threshold);
		put_u64(b, g->changes[i].trim_threshold);
	}
	mt_rec_end(b, r);
}

int mt_file_encode(const struct mt_profile *p, struct mt_buf *b)
{
	size_t start = b->len;
	buf_put(b, MT_FILE_MAGIC, MT_FILE_MAGIC_LEN);
	put_u32(b, MT_FILE_VERSION);
	put_u32(b, MT_FILE_HEADER_LEN);

	size_t r = mt_rec_begin(b, MT_TAG_PROCESS);
	put_u32(b, p->pid);
	put_u32(b, p->ppid);
	put_u32(b, p->uid);
	put_u32(b, p->seq);
	put_u32(b, p->reason);
	put_u32(b, p->flags);
	put_u64(b, p->run_id);
	put_u64(b, p->start_ns);
	put_u64(b, p->dump_ns);
	put_str(b, p->command, sizeof(p->command) - 1);
	put_str(b, p->exe, sizeof(p->exe) - 1);
	mt_rec_end(b, r);

	for (uint32_t i = 0; i < p->nfuncs; i++) {
		const struct mt_func *f = &p->funcs[i];
		uint32_t nonempty = 0;
		for (int k = 0; k < MT_HIST_BUCKETS; k++)
			nonempty += f->hist[k] != 0;
		r = mt_rec_begin(b, MT_TAG_FUNCTION);
		put_str(b, f->name, sizeof(f->name) - 1);
		put_u32(b, f->kind);
		put_u64(b, f->calls);
		put_u64(b, f->bytes);
		put_u64(b, f->failed);
		put_u32(b, nonempty);
		for (uint32_t k = 0; k < MT_HIST_BUCKETS; k++) {
			if (!f->hist[k])
				continue;
			put_u32(b, k);
			put_u64(b, f->hist[k]);
		}
		mt_rec_end(b, r);
	}

	r = mt_rec_begin(b, MT_TAG_TOTALS);
	put_u64(b, p->totals.allocated_bytes);
	put_u64(b, p->totals.freed_bytes);
	put_u64(b, (uint64_t)p->totals.in_use_bytes);
	put_u64(b, p->totals.peak_in_use_bytes);
	mt_rec_end(b, r);

	if (p->sample_period || p->nsites) {
		r = mt_rec_begin(b, MT_TAG_SAMPLING);
		put_u64(b, p->sample_period);
		put_u64(b, p->unknown_frees);
		mt_rec_end(b, r);
	}
	for (uint32_t i = 0; i < p->nmaps; i++) {
		const struct mt_mapping *m = &p->maps[i];
		r = mt_rec_begin(b, MT_TAG_MAPPING);
		put_u64(b, m->start);
		put_u64(b, m->end);
		put_u64(b, m->offset);
		put_u32(b, m->prot);
		put_u32(b, m->build_id_len);
		buf_put(b, m->build_id, m->build_id_len);
		put_str(b, m->path, sizeof(m->path) - 1);
		mt_rec_end(b, r);
	}
	for (uint32_t i = 0; i < p->nsites; i++) {
		const struct mt_site *st = &p->sites[i];
		r = mt_rec_begin(b, MT_TAG_SITE);
		put_u32(b, st->fn);
		put_u64(b, st->alloc_objects);
		put_u64(b, st->alloc_bytes);
		put_u64(b, st->inuse_objects);
		put_u64(b, st->inuse_bytes);
		put_u64(b, st->peak_objects);
		put_u64(b, st->peak_bytes);
		put_u32(b, st->nframes);
		for (uint32_t k = 0; k < st->nframes; k++)
			put_u64(b, st->frames[k]);
		mt_rec_end(b, r);
	}

	uint32_t ntemp = 0;
	for (uint32_t i = 0; i < p->nsites; i++)
		ntemp += p->sites[i].temp_objects != 0;
	if (ntemp) {
		r = mt_rec_begin(b, MT_TAG_SITE_TEMP);
		put_u32(b, p->nsites);
		for (uint32_t i = 0; i < p->nsites; i++) {
			put_u64(b, p->sites[i].temp_objects);
			put_u64(b, p->sites[i].temp_bytes);
		}
		mt_rec_end(b, r);
	}
	if (p->peak_rss_bytes) {
		r = mt_rec_begin(b, MT_TAG_RUSAGE);
		put_u64(b, p->peak_rss_bytes);
		mt_rec_end(b, r);
	}

	for (uint32_t i = 0; i < p->npools; i++) {
		const struct mt_pool *pl = &p->pools[i];
		r = mt_rec_begin(b, MT_TAG_POOL);
		put_u32(b, pl->fn);
		put_u64(b, pl->pool);
		put_u64(b, pl->calls);
		put_u64(b, pl->bytes);
		put_u32(b, pl->by);
		mt_rec_end(b, r);
	}

	if (p->apr && mt_apr_encode(p->apr, b))
		return b->err ? b->err : -ENOMEM;
	if (p->leaks) {
		/* leaks: one record, the check's figures then its sites */
		const struct mt_leaks *l = p->leaks;
		r = mt_rec_begin(b, MT_TAG_LEAKS);
		put_u64(b, l->check_ns);
		put_u64(b, l->pause_ns);
		put_u64(b, l->roots_bytes);
		put_u32(b, l->threads);
		put_u32(b, l->unstopped);
		put_u32(b, l->flags);
		put_u64(b, l->unreachable_bytes);
		put_u64(b, l->unreachable_blocks);
		put_u64(b, l->reachable_bytes);
		put_u64(b, l->reachable_blocks);
		put_u32(b, l->nsites);
		for (uint32_t i = 0; i < l->nsites; i++) {
			const struct mt_leak_site *ls = &l->sites[i];
			put_u32(b, ls->fn);
			put_u32(b, ls->nframes);
			put_u64(b, ls->lost_objects);
			put_u64(b, ls->lost_bytes);
			put_u64(b, ls->reach_objects);
			put_u64(b, ls->reach_bytes);
			for (uint32_t k = 0; k < ls->nframes && k < MT_STACK_MAX; k++)
				put_u64(b, ls->frames[k]);
		}
		mt_rec_end(b, r);
	}

	if (p->end) {
		r = mt_rec_begin(b, MT_TAG_ENDING);
		put_u32(b, p->end);
		put_u32(b, (uint32_t)p->end_code);
		mt_rec_end(b, r);
	}

	if (p->glibc)
		encode_glibc(b, p->glibc);
	if (p->stats)
		encode_stats(b, p->stats);
	if (p->timeline.n) {
		r = mt_rec_begin(b, MT_TAG_TIMELINE);
		put_u64(b, p->timeline.interval_ns);
		put_u64(b, p->parent_start_ns);
		put_u32(b, p->timeline.decimations);
		put_u32(b, p->timeline.n);
		put_u32(b, TL_POINT_LEN);
		for (uint32_t i = 0; i < p->timeline.n; i++) {
			const struct mt_tl_point *t = &p->timeline.pts[i];
			put_u64(b, t->t_ns);
			put_u64(b, t->span_ns);
			put_u64(b, (uint64_t)t->in_use_bytes);
			put_u64(b, (uint64_t)t->in_use_max);
			put_u64(b, t->alloc_bytes);
			put_u64(b, t->alloc_calls);
			put_u64(b, t->free_bytes);
			put_u64(b, t->free_calls);
			put_u64(b, t->rss_bytes);
			put_u64(b, t->pool_bytes);
			put_u64(b, t->heap_bytes);
			put_u32(b, t->have);
			put_u32(b, t->merged);
		}
		mt_rec_end(b, r);
	}

	if (b->err)
		return b->err;
	uint32_t crc = (uint32_t)crc32(0L, b->data + start, (uInt)(b->len - start));
	r = mt_rec_begin(b, MT_TAG_END);
	put_u32(b, crc);
	mt_rec_end(b, r);
	return b->err;
}

/* A bounds-checked cursor over one record's payload. */
struct cur {
	const uint8_t *base; /* start of the file, for offsets in messages */
	const uint8_t *p, *end;
	const char *what; /* the record being read */
	char *err;
	size_t errlen;
	int bad;
};

static int need(struct cur *c, size_t n)
{
	if (c->bad)
		return 0;
	if ((size_t)(c->end - c->p) < n) {
		snprintf(c->err, c->errlen,
			 "%s record truncated at offset %zu (needs %zu more bytes, %zu left)",
			 c->what, (size_t)(c->p - c->base), n, (size_t)(c->end - c->p));
		c->bad = 1;
		return 0;
	}
	return 1;
}

static uint32_t get_u32(struct cur *c)
{
	uint32_t v = 0;
	if (need(c, 4)) {
		memcpy(&v, c->p, 4);
		c->p += 4;
	}
	return v;
}

static uint64_t get_u64(struct cur *c)
{
	uint64_t v = 0;
	if (need(c, 8)) {
		memcpy(&v, c->p, 8);
		c->p += 8;
	}
	return v;
}

static void get_str(struct cur *c, char *dst, size_t dstlen)
{
	size_t at = (size_t)(c->p - c->base);
	uint32_t n = get_u32(c);
	dst[0] = '\0';
	if (c->bad)
		return;
	if (n >= dstlen) {
		snprintf(c->err, c->errlen, "%s record: string of %u bytes at offset %zu exceeds %zu",
			 c->what, n, at, dstlen - 1);
		c->bad = 1;
		return;
	}
	if (!need(c, n))
		return;
	memcpy(dst, c->p, n);
	dst[n] = '\0';
	if (strlen(dst) != n) {
		snprintf(c->err, c->errlen, "%s record: string at offset %zu contains a NUL byte",
			 c->what, at);
		c->bad = 1;
	}
	c->p += n;
}

static int decode_function(struct cur *c, struct mt_profile *p)
{
	char name[MT_NAME_MAX];
	size_t start = (size_t)(c->p - c->base);
	get_str(c, name, sizeof(name));
	uint32_t kind = get_u32(c);
	uint64_t calls = get_u64(c), bytes = get_u64(c), failed = get_u64(c);
	uint32_t n = get_u32(c);
	if (c->bad)
		return -EINVAL;
	if (!name[0] || mt_profile_find(p, name)) {
		snprintf(c->err, c->errlen, "function record at offset %zu: %s function name",
			 start, name[0] ? "duplicate" : "empty");
		return -EINVAL;
	}
	struct mt_func *f = mt_profile_func(p, name, kind);
	if (!f)
		return -ENOMEM;
	f->calls = calls;
	f->bytes = bytes;
	f->failed = failed;
	if (n > MT_HIST_BUCKETS) {
		snprintf(c->err, c->errlen, "function %s at offset %zu: %u histogram buckets (at most %d)",
			 name, start, n, MT_HIST_BUCKETS);
		return -EINVAL;
	}
	for (uint32_t i = 0; i < n; i++) {
		size_t at = (size_t)(c->p - c->base);
		uint32_t k = get_u32(c);
		uint64_t v = get_u64(c);
		if (c->bad)
			return -EINVAL;
		if (k >= MT_HIST_BUCKETS) {
			snprintf(c->err, c->errlen, "function %s: bucket index %u at offset %zu out of range",
				 name, k, at);
			return -EINVAL;
		}
		f->hist[k] = v;
	}
	return 0;
}

static int decode_site(struct cur *c, struct mt_profile *p)
{
	size_t start = (size_t)(c->p - c->base);
	struct mt_site s = {0};
	s.fn = get_u32(c);
	s.alloc_objects = get_u64(c);
	s.alloc_bytes = get_u64(c);
	s.inuse_objects = get_u64(c);
	s.inuse_bytes = get_u64(c);
	s.peak_objects = get_u64(c);
	s.peak_bytes = get_u64(c);
	uint32_t n = get_u32(c);
	if (c->bad)
		return -EINVAL;
	if (n > MT_STACK_MAX || (s.fn != UINT32_MAX && s.fn >= p->nfuncs)) {
		snprintf(c->err, c->errlen, "site record at offset %zu: %u frames (at most %d), "
			 "function %u of %u", start, n, MT_STACK_MAX, s.fn, p->nfuncs);
		return -EINVAL;
	}
	uint64_t frames[MT_STACK_MAX];
	for (uint32_t i = 0; i < n; i++)
		frames[i] = get_u64(c);
	if (c->bad)
		return -EINVAL;
	struct mt_site *d = mt_profile_add_site(p, frames, n);
	if (!d)
		return -ENOMEM;
	uint64_t *keep = d->frames;
	*d = s;
	d->frames = keep;
	d->nframes = n;
	return 0;
}

/* leaks: the sites refer to functions by index, like site records. */
static int decode_leaks(struct cur *c, struct mt_profile *p)
{
	size_t start = (size_t)(c->p - c->base);
	struct mt_leaks l = {0};
	l.check_ns = get_u64(c);
	l.pause_ns = get_u64(c);
	l.roots_bytes = get_u64(c);
	l.threads = get_u32(c);
	l.unstopped = get_u32(c);
	l.flags = get_u32(c);
	l.unreachable_bytes = get_u64(c);
	l.unreachable_blocks = get_u64(c);
	l.reachable_bytes = get_u64(c);
	l.reachable_blocks = get_u64(c);
	uint32_t n = get_u32(c);
	if (c->bad)
		return -EINVAL;
	/* Each site takes at least 40 bytes: N is bounded by the record. */
	if ((uint64_t)n * 40 > (uint64_t)(c->end - c->p)) {
		snprintf(c->err, c->errlen, "leaks record at offset %zu: %u sites do not fit in %zu bytes", start, n,
			 (size_t)(c->end - c->p));
		return -EINVAL;
	}
	struct mt_leaks *d = mt_leaks_dup(&l);
	if (!d || (n && !(d->sites = calloc(n, sizeof(*d->sites))))) {
		mt_leaks_free(d);
		return -ENOMEM;
	}
	for (uint32_t i = 0; i < n; i++) {
		struct mt_leak_site *s = &d->sites[i];
		s->fn = get_u32(c);
		s->nframes = get_u32(c);
		s->lost_objects = get_u64(c);
		s->lost_bytes = get_u64(c);
		s->reach_objects = get_u64(c);
		s->reach_bytes = get_u64(c);
		if (c->bad || s->nframes > MT_STACK_MAX || (s->fn != UINT32_MAX && s->fn >= p->nfuncs)) {
			if (!c->bad)
				snprintf(c->err, c->errlen, "leaks record at offset %zu: site %u has %u frames "
					 "(at most %d) or function %u of %u", start, i, s->nframes, MT_STACK_MAX, s->fn,
					 p->nfuncs);
			mt_leaks_free(d);
			return -EINVAL;
		}
		for (uint32_t k = 0; k < s->nframes; k++)
			s->frames[k] = get_u64(c);
		d->nsites = i + 1;
	}
	if (c->bad) {
		mt_leaks_free(d);
		return -EINVAL;
	}
	mt_leaks_free(p->leaks);
	p->leaks = d;
	return 0;
}

/* Pools follow the function records they refer to (the writer puts every
 * function first). */
static int decode_pool(struct cur *c, struct mt_profile *p)
{
	size_t start = (size_t)(c->p - c->base);
	uint32_t fn = get_u32(c);
	uint64_t pool = get_u64(c), calls = get_u64(c), bytes = get_u64(c);
	uint32_t by = get_u32(c);
	if (c->bad)
		return -EINVAL;
	if (by > MT_POOL_BY_THREAD) {
		snprintf(c->err, c->errlen, "pool record at offset %zu: unknown key kind %u", start, by);
		return -EINVAL;
	}
	if (fn >= p->nfuncs) {
		snprintf(c->err, c->errlen, "pool record at offset %zu: function %u of %u", start, fn, p->nfuncs);
		return -EINVAL;
	}
	struct mt_pool *d = mt_profile_add_pool(p, fn, pool);
	if (!d)
		return -ENOMEM;
	d->calls = calls;
	d->bytes = bytes;
	d->by = by;
	return 0;
}

static int decode_timeline(struct cur *c, struct mt_profile *p)
{
	size_t start = (size_t)(c->p - c->base);
	uint64_t interval = get_u64(c), parent = get_u64(c);
	uint32_t decim = get_u32(c), n = get_u32(c), len = get_u32(c);
	if (c->bad)
		return -EINVAL;
	if (p->timeline.n) {
		snprintf(c->err, c->errlen, "timeline record at offset %zu: a second one", start);
		return -EINVAL;
	}
	if (len < TL_POINT_LEN || (uint64_t)n * len != (uint64_t)(c->end - c->p)) {
		snprintf(c->err, c->errlen, "timeline record at offset %zu: %u points of %u bytes (at least %d) "
			 "do not fill its %zu bytes", start, n, len, TL_POINT_LEN, (size_t)(c->end - c->p));
		return -EINVAL;
	}
	if (n && !(p->timeline.pts = calloc(n, sizeof(*p->timeline.pts))))
		return -ENOMEM;
	p->timeline.n = p->timeline.cap = n;
	p->timeline.interval_ns = interval;
	p->timeline.decimations = decim;
	p->parent_start_ns = parent;
	for (uint32_t i = 0; i < n; i++) {
		struct mt_tl_point *t = &p->timeline.pts[i];
		const uint8_t *next = c->p + len;
		t->t_ns = get_u64(c);
		t->span_ns = get_u64(c);
		t->in_use_bytes = (int64_t)get_u64(c);
		t->in_use_max = (int64_t)get_u64(c);
		t->alloc_bytes = get_u64(c);
		t->alloc_calls = get_u64(c);
		t->free_bytes = get_u64(c);
		t->free_calls = get_u64(c);
		t->rss_bytes = get_u64(c);
		t->pool_bytes = get_u64(c);
		t->heap_bytes = get_u64(c);
		t->have = get_u32(c);
		t->merged = get_u32(c);
		c->p = next;
	}
	return c->bad ? -EINVAL : 0;
}

static int decode_mapping(struct cur *c, struct mt_profile *p)
{
	size_t start = (size_t)(c->p - c->base);
	struct mt_mapping *m = mt_profile_add_mapping(p);
	if (!m)
		return -ENOMEM;
	m->start = get_u64(c);
	m->end = get_u64(c);
	m->offset = get_u64(c);
	m->prot = get_u32(c);
	m->build_id_len = get_u32(c);
	if (!c->bad && m->build_id_len > sizeof(m->build_id)) {
		snprintf(c->err, c->errlen, "mapping record at offset %zu: build-id of %u bytes", start,
			 m->build_id_len);
		return -EINVAL;
	}
	if (need(c, m->build_id_len)) {
		memcpy(m->build_id, c->p, m->build_id_len);
		c->p += m->build_id_len;
	}
	get_str(c, m->path, sizeof(m->path));
	if (!c->bad && m->end < m->start) {
		snprintf(c->err, c->errlen, "mapping record at offset %zu: ends before it starts", start);
		return -EINVAL;
	}
	return c->bad ? -EINVAL : 0;
}

/* Counts in a record must fit their tables: a bigger one is refused. */
static uint32_t get_count(struct cur *c, uint32_t max)
{
	size_t at = (size_t)(c->p - c->base);
	uint32_t n = get_u32(c);
	if (!c->bad && n > max) {
		snprintf(c->err, c->errlen, "%s record: count %u at offset %zu exceeds %u", c->what, n, at, max);
		c->bad = 1;
	}
	return c->bad ? 0 : n;
}

static int decode_stats(struct cur *c, struct mt_profile *p)
{
	struct mt_alloc_stats *s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	get_str(c, s->allocator, sizeof(s->allocator));
	get_str(c, s->source, sizeof(s->source));
	s->taken_ns = get_u64(c);
	s->n = get_count(c, MT_STATS_MAX);
	for (uint32_t i = 0; i < s->n && !c->bad; i++) {
		get_str(c, s->v[i].key, sizeof(s->v[i].key));
		s->v[i].value = get_u64(c);
	}
	if (c->bad) {
		free(s);
		return -EINVAL;
	}
	free(p->stats);
	p->stats = s;
	return 0;
}

static int decode_glibc(struct cur *c, struct mt_profile *p)
{
	struct mt_glibc *g = calloc(1, sizeof(*g));
	if (!g)
		return -ENOMEM;
	g->flags = get_u32(c);
	uint64_t *head[] = {&g->taken_ns, &g->sbrk_base, &g->brk, &g->sbrk_bytes, &g->sbrk_grow_bytes,
			    &g->sbrk_shrink_bytes, &g->sbrk_grows, &g->sbrk_shrinks, &g->mmap_threshold,
			    &g->trim_threshold, &g->mmapped_bytes, &g->mmapped_chunks, &g->arena_max,
			    &g->samples, &g->sample_ms};
	for (size_t i = 0; i < sizeof(head) / sizeof(head[0]); i++)
		*head[i] = get_u64(c);
	g->changes_dropped = get_u32(c);
	g->agent_tid = get_u32(c);
	g->narenas = get_count(c, MT_GLIBC_ARENAS);
	for (uint32_t i = 0; i < g->narenas && !c->bad; i++) {
		struct mt_glibc_arena *a = &g->arenas[i];
		a->addr = get_u64(c);
		a->main = get_u32(c);
		a->heaps = get_u32(c);
		a->heap_bytes = get_u64(c);
		a->system_bytes = get_u64(c);
		a->attached_threads = get_u64(c);
		a->lock_waits = get_u64(c);
	}
	g->nheaps = get_count(c, MT_GLIBC_HEAPS);
	for (uint32_t i = 0; i < g->nheaps && !c->bad; i++) {
		g->heaps[i].addr = get_u64(c);
		g->heaps[i].arena = get_u64(c);
		g->heaps[i].size = get_u64(c);
		g->heaps[i].mprotect_size = get_u64(c);
	}
	g->nthreads = get_count(c, MT_GLIBC_THREADS);
	for (uint32_t i = 0; i < g->nthreads && !c->bad; i++) {
		g->threads[i].tid = get_u32(c);
		g->threads[i].alive = get_u32(c);
		g->threads[i].arena = get_u64(c);
		g->threads[i].arenas_used = get_u64(c);
		g->threads[i].lock_waits = get_u64(c);
	}
	g->nchanges = get_count(c, MT_GLIBC_CHANGES);
	for (uint32_t i = 0; i < g->nchanges && !c->bad; i++) {
		g->changes[i].ns = get_u64(c);
		g->changes[i].mmap_threshold = get_u64(c);
		g->changes[i].trim_threshold = get_u64(c);
	}
	if (c->bad) {
		free(g);
		return -EINVAL;
	}
	free(p->glibc);
	p->glibc = g;
	return 0;
}

int mt_file_decode(const uint8_t *data, size_t len, struct mt_profile **out,
		   char *err, size_t errlen)
{
	int ret = -EINVAL;
	struct mt_profile *p = NULL;
	*out = NULL;

	if (len < MT_FILE_HEADER_LEN || memcmp(data, MT_FILE_MAGIC, MT_FILE_MAGIC_LEN) != 0) {
		snprintf(err, errlen, len < MT_FILE_MAGIC_LEN && memcmp(data, MT_FILE_MAGIC, len) == 0
			 ? "truncated at offset %zu: the header is incomplete"
			 : "not a memtap profile (bad magic at offset 0; file is %zu bytes)", len);
		return -EINVAL;
	}
	uint32_t version, hlen;
	memcpy(&version, data + 8, 4);
	memcpy(&hlen, data + 12, 4);
	if (version != MT_FILE_VERSION) {
		snprintf(err, errlen, "unsupported format version %u at offset 8 (this memtap reads version %d)",
			 version, MT_FILE_VERSION);
		return -EPROTO;
	}
	if (hlen < MT_FILE_HEADER_LEN || hlen > len) {
		snprintf(err, errlen, "bad header length %u at offset 12", hlen);
		return -EINVAL;
	}
	p = mt_profile_new();
	if (!p)
		return -ENOMEM;

	int seen_process = 0, seen_end = 0;
	size_t off = hlen;
	while (off < len && !seen_end) {
		if (len - off < 8) {
			snprintf(err, errlen, "truncated at offset %zu: record header needs 8 bytes, %zu left",
				 off, len - off);
			goto out;
		}
		uint32_t tag, rlen;
		memcpy(&tag, data + off, 4);
		memcpy(&rlen, data + off + 4, 4);
		if (rlen > len - off - 8) {
			snprintf(err, errlen, "truncated at offset %zu: record of %u bytes, %zu left",
				 off, rlen, len - off - 8);
			goto out;
		}
		struct cur c = {data, data + off + 8, data + off + 8 + rlen, "", err, errlen, 0};
		switch (tag) {
		case MT_TAG_PROCESS:
			c.what = "process";
			p->pid = get_u32(&c);
			p->ppid = get_u32(&c);
			p->uid = get_u32(&c);
			p->seq = get_u32(&c);
			p->reason = get_u32(&c);
			p->flags = get_u32(&c);
			p->run_id = get_u64(&c);
			p->start_ns = get_u64(&c);
			p->dump_ns = get_u64(&c);
			get_str(&c, p->command, sizeof(p->command));
			get_str(&c, p->exe, sizeof(p->exe));
			seen_process = 1;
			break;
		case MT_TAG_FUNCTION:
			c.what = "function";
			ret = decode_function(&c, p);
			if (ret)
				goto out;
			ret = -EINVAL;
			break;
		case MT_TAG_TOTALS:
			c.what = "totals";
			p->totals.allocated_bytes = get_u64(&c);
			p->totals.freed_bytes = get_u64(&c);
			p->totals.in_use_bytes = (int64_t)get_u64(&c);
			p->totals.peak_in_use_bytes = get_u64(&c);
			break;
		case MT_TAG_SAMPLING:
			c.what = "sampling";
			p->sample_period = get_u64(&c);
			p->unknown_frees = get_u64(&c);
			break;
		case MT_TAG_SITE:
			c.what = "site";
			ret = decode_site(&c, p);
			if (ret)
				goto out;
			ret = -EINVAL;
			break;
		case MT_TAG_MAPPING:
			c.what = "mapping";
			ret = decode_mapping(&c, p);
			if (ret)
				goto out;
			ret = -EINVAL;
			break;
		case MT_TAG_POOL:
			c.what = "pool";
			ret = decode_pool(&c, p);
			if (ret)
				goto out;
			ret = -EINVAL;
			break;
		case MT_TAG_APR_POOL:
		case MT_TAG_APR_TAG:
			c.what = "APR pool";
			ret = mt_apr_decode(tag, data + off + 8, rlen, p, err, errlen);
			if (ret)
				goto out;
			ret = -EINVAL;
			break;
		case MT_TAG_LEAKS:
			c.what = "leaks";
			ret = decode_leaks(&c, p);
			if (ret)
				goto out;
			ret = -EINVAL;
			break;
		case MT_TAG_SITE_TEMP: {
			c.what = "site temporaries";
			uint32_t n = get_u32(&c);
			if (!c.bad && n != p->nsites) {
				snprintf(err, errlen, "site temporaries record at offset %zu: %u sites, %u before it",
					 off, n, p->nsites);
				goto out;
			}
			for (uint32_t i = 0; i < n && !c.bad; i++) {
				p->sites[i].temp_objects = get_u64(&c);
				p->sites[i].temp_bytes = get_u64(&c);
			}
			break;
		}
		case MT_TAG_RUSAGE:
			c.what = "rusage";
			p->peak_rss_bytes = get_u64(&c);
			break;
		case MT_TAG_ENDING:
			c.what = "ending";
			p->end = get_u32(&c);
			p->end_code = (int32_t)get_u32(&c);
			if (p->end > MT_END_EXEC)
				p->end = MT_END_NONE; /* a newer writer's kind: unknown here */
			break;
		case MT_TAG_STATS:
		case MT_TAG_GLIBC:
			c.what = tag == MT_TAG_STATS ? "stats" : "glibc";
			ret = tag == MT_TAG_STATS ? decode_stats(&c, p) : decode_glibc(&c, p);
			if (ret)
				goto out;
			ret = -EINVAL;
			break;
		case MT_TAG_TIMELINE:
			c.what = "timeline";
			ret = decode_timeline(&c, p);
			if (ret)
				goto out;
			ret = -EINVAL;
			break;
		case MT_TAG_END: {
			c.what = "end";
			uint32_t want = get_u32(&c);
			uint32_t crc = (uint32_t)crc32(0L, data, (uInt)off);
			if (!c.bad && crc != want) {
				snprintf(err, errlen, "checksum mismatch in the end record at offset %zu "
					 "(stored %08x, computed %08x): the file is corrupt", off, want, crc);
				goto out;
			}
			seen_end = 1;
			break;
		}
		default:
			break; /* a newer writer's record: skip it */
		}
		if (c.bad)
			goto out;
		off += 8 + rlen;
	}
	if (!seen_end) {
		snprintf(err, errlen, "truncated at offset %zu: no end record (the writer was interrupted?)", off);
		goto out;
	}
	if (!seen_process) {
		snprintf(err, errlen, "no process record before offset %zu", off);
		goto out;
	}
	*out = p;
	return 0;
out:
	mt_profile_free(p);
	return ret;
}

int mt_file_read(const char *path, struct mt_profile **out, char *err, size_t errlen)
{
	char msg[512];
	uint8_t *data = NULL;
	int ret;
	*out = NULL;

	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		ret = -errno;
		snprintf(err, errlen, "%s: cannot open: %s", path, strerror(errno));
		return ret;
	}
	struct stat st;
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		ret = S_ISDIR(st.st_mode) ? -EISDIR : -EINVAL;
		snprintf(err, errlen, "%s: not a regular file", path);
		goto out;
	}
	size_t len = (size_t)st.st_size;
	data = malloc(len ? len : 1);
	if (!data) {
		ret = -ENOMEM;
		snprintf(err, errlen, "%s: out of memory reading %zu bytes", path, len);
		goto out;
	}
	size_t got = 0;
	while (got < len) {
		ssize_t n = read(fd, data + got, len - got);
		if (n < 0) {
			ret = -errno;
			snprintf(err, errlen, "%s: read error at offset %zu: %s", path, got, strerror(errno));
			goto out;
		}
		if (n == 0)
			break;
		got += (size_t)n;
	}
	ret = mt_file_decode(data, got, out, msg, sizeof(msg));
	if (ret)
		snprintf(err, errlen, "%s: %s", path, msg);
out:
	free(data);
	close(fd);
	return ret;
}

/* DATA into a new temporary file next to PATH; its name in TMP.  0 or
 * -errno (nothing left behind). */
static int write_temp(const char *path, char *tmp, size_t tmplen, const uint8_t *data, size_t len,
		      unsigned mode)
{
	if (snprintf(tmp, tmplen, "%s.tmp%d", path, (int)getpid()) >= (int)tmplen)
		return -ENAMETOOLONG;
	int flags = O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC;
	int fd = open(tmp, flags, (mode_t)mode);
	if (fd < 0 && errno == EEXIST && unlink(tmp) == 0)
		fd = open(tmp, flags, (mode_t)mode);
	if (fd < 0)
		return -errno;
	int ret = 0;
	while (len && !ret) {
		ssize_t w = write(fd, data, len);
		if (w < 0)
			ret = errno == EINTR ? 0 : -errno;
		else
			data += w, len -= (size_t)w;
	}
	if (close(fd) < 0 && !ret)
		ret = -errno;
	if (ret)
		unlink(tmp);
	return ret;
}

int mt_file_write_whole(const char *path, const uint8_t *data, size_t len, unsigned mode)
{
	char tmp[PATH_MAX + 32];
	int ret = write_temp(path, tmp, sizeof(tmp), data, len, mode);
	if (!ret && rename(tmp, path) < 0) {
		ret = -errno;
		unlink(tmp);
	}
	return ret;
}

int mt_file_write_next(const char *prefix, uint32_t pid, uint32_t *seq, const uint8_t *data, size_t len,
		       unsigned mode, char *out, size_t outlen)
{
	char tmp[PATH_MAX + 32], final[PATH_MAX];
	if (snprintf(final, sizeof(final), "%s.%u", prefix, pid) >= (int)sizeof(final))
		return -ENAMETOOLONG;
	int ret = write_temp(final, tmp, sizeof(tmp), data, len, mode);
	if (ret) {
		snprintf(out, outlen, "%s.%u.%u.%s", prefix, pid, *seq, MT_FILE_EXT);
		return ret;
	}
	/* link(2) never replaces a name: the first free sequence number wins,
	 * whoever else (the agent, another memtap) writes next to us. */
	ret = -EEXIST;
	for (uint32_t s = *seq; s < *seq + 100000 && ret == -EEXIST; s++) {
		if (snprintf(final, sizeof(final), "%s.%u.%u.%s", prefix, pid, s, MT_FILE_EXT) >= (int)sizeof(final)) {
			ret = -ENAMETOOLONG;
			break;
		}
		ret = link(tmp, final) == 0 ? 0 : -errno;
		if (!ret)
			*seq = s;
	}
	unlink(tmp);
	snprintf(out, outlen, "%s", final);
	return ret;
}
