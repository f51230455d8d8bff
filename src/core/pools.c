/*
 * The APR pool model (memtap/pools.h): building it from a live file,
 * merging, the "only grows" rule, and its two file records.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "memtap/format.h"
#include "memtap/live.h"
#include "memtap/pools.h"

struct mt_apr *mt_apr_new(void)
{
	return calloc(1, sizeof(struct mt_apr));
}

void mt_apr_free(struct mt_apr *a)
{
	if (!a)
		return;
	free(a->pools);
	free(a->tags);
	free(a);
}

/* Arrays grow by doubling when their count reaches a power of two (8 at
 * first). */
static void *grow(const struct mt_apr *a, void *v, uint32_t n, size_t size)
{
	if (n & (n - 1) || (n && n < 8))
		return v;
	size_t cap = (n ? 2 * (size_t)n : 8) * size;
	return a->grow ? a->grow(v, n * size, cap) : realloc(v, cap);
}

struct mt_apr_pool *mt_apr_add_pool(struct mt_apr *a)
{
	struct mt_apr_pool *v = grow(a, a->pools, a->npools, sizeof(*v));
	if (!v)
		return NULL;
	a->pools = v;
	memset(&v[a->npools], 0, sizeof(*v));
	return &v[a->npools++];
}

struct mt_apr_tag *mt_apr_add_tag(struct mt_apr *a)
{
	struct mt_apr_tag *v = grow(a, a->tags, a->ntags, sizeof(*v));
	if (!v)
		return NULL;
	a->tags = v;
	memset(&v[a->ntags], 0, sizeof(*v));
	return &v[a->ntags++];
}

struct mt_apr_tag *mt_apr_tag_of(struct mt_apr *a, const char *tag)
{
	for (uint32_t i = 0; i < a->ntags; i++)
		if (!strncmp(a->tags[i].tag, tag, MT_APR_TAG_MAX))
			return &a->tags[i];
	struct mt_apr_tag *t = mt_apr_add_tag(a);
	if (t)
		snprintf(t->tag, sizeof(t->tag), "%s", tag);
	return t;
}

static void tag_add(struct mt_apr_tag *d, const struct mt_apr_tag *s)
{
	d->pools += s->pools;
	d->calls += s->calls;
	d->bytes += s->bytes;
	d->clears += s->clears;
	d->life_us += s->life_us;
	for (int k = 0; k < MT_HIST_BUCKETS; k++) {
		d->life_hist[k] += s->life_hist[k];
		d->bytes_hist[k] += s->bytes_hist[k];
	}
}

int mt_apr_merge(struct mt_apr *dst, const struct mt_apr *src)
{
	dst->hooked |= src->hooked;
	dst->created += src->created;
	dst->destroyed += src->destroyed;
	dst->dropped += src->dropped;
	dst->untracked_calls += src->untracked_calls;
	dst->untracked_bytes += src->untracked_bytes;
	dst->tags_full += src->tags_full;
	for (uint32_t i = 0; i < src->npools; i++) {
		struct mt_apr_pool *d = mt_apr_add_pool(dst);
		if (!d)
			return -ENOMEM;
		*d = src->pools[i];
	}
	for (uint32_t i = 0; i < src->ntags; i++) {
		struct mt_apr_tag *d = mt_apr_tag_of(dst, src->tags[i].tag);
		if (!d)
			return -ENOMEM;
		tag_add(d, &src->tags[i]);
	}
	return 0;
}

int mt_apr_growing(const struct mt_apr_pool *p, uint64_t now_ns)
{
	if (p->destroyed_ns || !p->cur_bytes || now_ns <= p->mark_ns)
		return 0;
	uint64_t age_ms = (now_ns - p->mark_ns) / 1000000;
	if (age_ms < MT_APR_GROW_MIN_MS)
		return 0;
	unsigned last = mt_apr_span(age_ms);
	/* The spans its age covers are 0..last; it must have allocated in
	 * enough of them and in one of the last two (it still allocates). */
	uint32_t covered = last >= 31 ? UINT32_MAX : (2u << last) - 1;
	uint32_t m = p->marks & covered;
	uint32_t late = (1u << last) | (last ? 1u << (last - 1) : 0);
	return __builtin_popcount(m) >= MT_APR_GROW_SPANS && (m & late);
}

/* ---- from the live file ---- */

static void slot_to_pool(const struct mt_live_apr_slot *s, uint64_t key, struct mt_apr_pool *d)
{
	d->pool = key;
	d->parent = __atomic_load_n(&s->parent, __ATOMIC_RELAXED);
	d->created_ns = __atomic_load_n(&s->created_ns, __ATOMIC_RELAXED);
	d->destroyed_ns = __atomic_load_n(&s->destroyed_ns, __ATOMIC_RELAXED);
	d->mark_ns = __atomic_load_n(&s->mark_ns, __ATOMIC_RELAXED);
	d->caller = __atomic_load_n(&s->caller, __ATOMIC_RELAXED);
	for (int i = 0; i < MT_APR_UP; i++)
		d->up[i] = __atomic_load_n(&s->up[i], __ATOMIC_RELAXED);
	d->calls = __atomic_load_n(&s->calls, __ATOMIC_RELAXED);
	d->bytes = __atomic_load_n(&s->bytes, __ATOMIC_RELAXED);
	d->cur_bytes = __atomic_load_n(&s->cur_bytes, __ATOMIC_RELAXED);
	d->clears = __atomic_load_n(&s->clears, __ATOMIC_RELAXED);
	d->marks = __atomic_load_n(&s->marks, __ATOMIC_RELAXED);
	d->flags = __atomic_load_n(&s->flags, __ATOMIC_RELAXED);
	for (int i = 0; i < MT_APR_TAG_MAX; i++)
		d->tag[i] = __atomic_load_n(&s->tag[i], __ATOMIC_RELAXED);
	d->tag[MT_APR_TAG_MAX - 1] = '\0';
}

/* One slot of the table or the ring into A, unless empty or rewritten while
 * it was read. */
static int take_slot(struct mt_apr *a, const struct mt_live_apr_slot *s, int ring)
{
	uint64_t key = __atomic_load_n(&s->key, __ATOMIC_ACQUIRE);
	if (key <= MT_APR_FREED)
		return 0;
	struct mt_apr_pool tmp;
	slot_to_pool(s, key, &tmp);
	if (__atomic_load_n(&s->key, __ATOMIC_ACQUIRE) != key || (!ring && tmp.destroyed_ns))
		return 0;
	if (ring && !tmp.destroyed_ns)
		return 0;
	struct mt_apr_pool *d = mt_apr_add_pool(a);
	if (!d)
		return -ENOMEM;
	*d = tmp;
	return 0;
}

int mt_live_apr_read(const struct mt_live_view *v, struct mt_apr **out)
{
	*out = NULL;
	struct mt_apr *a = mt_apr_new();
	if (!a)
		return -ENOMEM;
	int ret = mt_live_apr_fill(v, a);
	if (ret <= 0) {
		mt_apr_free(a);
		return ret;
	}
	*out = a;
	return 0;
}

int mt_live_apr_fill(const struct mt_live_view *v, struct mt_apr *a)
{
	const struct mt_live_hdr *h = (const struct mt_live_hdr *)v->data;
	uint64_t at = __atomic_load_n(&h->apr, __ATOMIC_ACQUIRE);
	if (!at)
		return 0;
	const struct mt_live_apr *t = mt_live_at(v, at, sizeof(*t));
	if (!t || t->slots != MT_APR_SLOTS || t->nring != MT_APR_RING)
		return -EINVAL;
	int ret = 0;
	a->hooked = __atomic_load_n(&t->hooked, __ATOMIC_RELAXED);
	a->created = __atomic_load_n(&t->created, __ATOMIC_RELAXED);
	a->destroyed = __atomic_load_n(&t->destroyed, __ATOMIC_RELAXED);
	a->dropped = __atomic_load_n(&t->dropped, __ATOMIC_RELAXED);
	a->untracked_calls = __atomic_load_n(&t->untracked_calls, __ATOMIC_RELAXED);
	a->untracked_bytes = __atomic_load_n(&t->untracked_bytes, __ATOMIC_RELAXED);
	a->tags_full = __atomic_load_n(&t->tags_full, __ATOMIC_RELAXED);
	for (size_t i = 0; i < MT_APR_SLOTS && !ret; i++)
		ret = take_slot(a, &t->slot[i], 0);
	for (size_t i = 0; i < MT_APR_RING && !ret; i++)
		ret = take_slot(a, &t->ring[i], 1);
	uint32_t nt = __atomic_load_n(&t->ntags, __ATOMIC_ACQUIRE);
	for (uint32_t i = 0; i < nt && i < MT_APR_TAGS && !ret; i++) {
		const struct mt_live_apr_tag *s = &t->tags[i];
		char name[MT_APR_TAG_MAX];
		memcpy(name, s->tag, sizeof(name));
		name[sizeof(name) - 1] = '\0';
		if (!name[0])
			continue;
		struct mt_apr_tag *d = mt_apr_tag_of(a, name);
		if (!d) {
			ret = -ENOMEM;
			break;
		}
		struct mt_apr_tag x;
		memset(&x, 0, sizeof(x));
		x.pools = __atomic_load_n(&s->pools, __ATOMIC_RELAXED);
		x.calls = __atomic_load_n(&s->calls, __ATOMIC_RELAXED);
		x.bytes = __atomic_load_n(&s->bytes, __ATOMIC_RELAXED);
		x.clears = __atomic_load_n(&s->clears, __ATOMIC_RELAXED);
		x.life_us = __atomic_load_n(&s->life_us, __ATOMIC_RELAXED);
		for (int k = 0; k < MT_HIST_BUCKETS; k++) {
			x.life_hist[k] = __atomic_load_n(&s->life_hist[k], __ATOMIC_RELAXED);
			x.bytes_hist[k] = __atomic_load_n(&s->bytes_hist[k], __ATOMIC_RELAXED);
		}
		tag_add(d, &x);
	}
	return ret ? ret : 1;
}

/* ---- file records ----
 *
 * MT_TAG_APR_TAG, u32 what: 0 the counters (u32 hooked, u64 created,
 * destroyed, dropped, untracked_calls, untracked_bytes, tags_full; always
 * the first APR record), 1 one tag (u32 length + tag, u64 pools, calls,
 * bytes, clears, life_us, then for life_hist and bytes_hist: u32 count of
 * non-empty buckets, then u32 bucket + u64 value each).
 * MT_TAG_APR_POOL: u64 pool, parent, created_ns, destroyed_ns, mark_ns,
 * caller, calls, bytes, cur_bytes, clears; u32 marks, flags; u32 length +
 * tag; u64 up[MT_APR_UP]. */


static void put_tag(struct mt_buf *b, const char *tag)
{
	uint32_t n = (uint32_t)strnlen(tag, MT_APR_TAG_MAX - 1);
	mt_buf_u32(b, n);
	mt_buf_put(b, tag, n);
}

static void put_hist(struct mt_buf *b, const uint64_t *h)
{
	uint32_t n = 0;
	for (int k = 0; k < MT_HIST_BUCKETS; k++)
		n += h[k] != 0;
	mt_buf_u32(b, n);
	for (uint32_t k = 0; k < MT_HIST_BUCKETS; k++)
		if (h[k]) {
			mt_buf_u32(b, k);
			mt_buf_u64(b, h[k]);
		}
}

int mt_apr_encode(const struct mt_apr *a, struct mt_buf *b)
{
	size_t r = mt_rec_begin(b, MT_TAG_APR_TAG);
	mt_buf_u32(b, 0);
	mt_buf_u32(b, a->hooked);
	mt_buf_u64(b, a->created);
	mt_buf_u64(b, a->destroyed);
	mt_buf_u64(b, a->dropped);
	mt_buf_u64(b, a->untracked_calls);
	mt_buf_u64(b, a->untracked_bytes);
	mt_buf_u64(b, a->tags_full);
	mt_rec_end(b, r);
	for (uint32_t i = 0; i < a->ntags; i++) {
		const struct mt_apr_tag *t = &a->tags[i];
		r = mt_rec_begin(b, MT_TAG_APR_TAG);
		mt_buf_u32(b, 1);
		put_tag(b, t->tag);
		mt_buf_u64(b, t->pools);
		mt_buf_u64(b, t->calls);
		mt_buf_u64(b, t->bytes);
		mt_buf_u64(b, t->clears);
		mt_buf_u64(b, t->life_us);
		put_hist(b, t->life_hist);
		put_hist(b, t->bytes_hist);
		mt_rec_end(b, r);
	}
	for (uint32_t i = 0; i < a->npools; i++) {
		const struct mt_apr_pool *p = &a->pools[i];
		r = mt_rec_begin(b, MT_TAG_APR_POOL);
		mt_buf_u64(b, p->pool);
		mt_buf_u64(b, p->parent);
		mt_buf_u64(b, p->created_ns);
		mt_buf_u64(b, p->destroyed_ns);
		mt_buf_u64(b, p->mark_ns);
		mt_buf_u64(b, p->caller);
		mt_buf_u64(b, p->calls);
		mt_buf_u64(b, p->bytes);
		mt_buf_u64(b, p->cur_bytes);
		mt_buf_u64(b, p->clears);
		mt_buf_u32(b, p->marks);
		mt_buf_u32(b, p->flags);
		put_tag(b, p->tag);
		for (int k = 0; k < MT_APR_UP; k++)
			mt_buf_u64(b, p->up[k]);
		mt_rec_end(b, r);
	}
	return b->err;
}

struct rd {
	const uint8_t *p, *end;
	int bad;
};

static uint32_t get32(struct rd *c)
{
	uint32_t v = 0;
	if (c->end - c->p < 4) {
		c->bad = 1;
		return 0;
	}
	memcpy(&v, c->p, 4);
	c->p += 4;
	return v;
}

static uint64_t get64(struct rd *c)
{
	uint64_t v = 0;
	if (c->end - c->p < 8) {
		c->bad = 1;
		return 0;
	}
	memcpy(&v, c->p, 8);
	c->p += 8;
	return v;
}

static void get_tag(struct rd *c, char *out)
{
	uint32_t n = get32(c);
	out[0] = '\0';
	if (c->bad || n >= MT_APR_TAG_MAX || (size_t)(c->end - c->p) < n) {
		c->bad = 1;
		return;
	}
	memcpy(out, c->p, n);
	out[n] = '\0';
	c->p += n;
}

static void get_hist(struct rd *c, uint64_t *h)
{
	uint32_t n = get32(c);
	for (uint32_t i = 0; i < n && !c->bad; i++) {
		uint32_t k = get32(c);
		uint64_t v = get64(c);
		if (k >= MT_HIST_BUCKETS)
			c->bad = 1;
		else
			h[k] += v;
	}
}

int mt_apr_decode(uint32_t tag, const uint8_t *data, size_t len, struct mt_profile *p, char *err,
		  size_t errlen)
{
	struct rd c = {data, data + len, 0};
	if (!p->apr && !(p->apr = mt_apr_new()))
		return -ENOMEM;
	struct mt_apr *a = p->apr;
	if (tag == MT_TAG_APR_TAG) {
		uint32_t what = get32(&c);
		if (what == 0) {
			a->hooked = get32(&c);
			a->created = get64(&c);
			a->destroyed = get64(&c);
			a->dropped = get64(&c);
			a->untracked_calls = get64(&c);
			a->untracked_bytes = get64(&c);
			a->tags_full = get64(&c);
		} else if (what == 1) {
			struct mt_apr_tag t;
			memset(&t, 0, sizeof(t));
			get_tag(&c, t.tag);
			t.pools = get64(&c);
			t.calls = get64(&c);
			t.bytes = get64(&c);
			t.clears = get64(&c);
			t.life_us = get64(&c);
			get_hist(&c, t.life_hist);
			get_hist(&c, t.bytes_hist);
			struct mt_apr_tag *d;
			if (!c.bad) {
				if (!(d = mt_apr_tag_of(a, t.tag)))
					return -ENOMEM;
				tag_add(d, &t);
			}
		} /* else: a newer writer's kind, skipped */
	} else {
		struct mt_apr_pool q = {0};
		q.pool = get64(&c);
		q.parent = get64(&c);
		q.created_ns = get64(&c);
		q.destroyed_ns = get64(&c);
		q.mark_ns = get64(&c);
		q.caller = get64(&c);
		q.calls = get64(&c);
		q.bytes = get64(&c);
		q.cur_bytes = get64(&c);
		q.clears = get64(&c);
		q.marks = get32(&c);
		q.flags = get32(&c);
		get_tag(&c, q.tag);
		/* up came later: a record without it has none */
		for (int k = 0; k < MT_APR_UP && c.end - c.p >= 8; k++)
			q.up[k] = get64(&c);
		if (!c.bad) {
			struct mt_apr_pool *d = mt_apr_add_pool(a);
			if (!d)
				return -ENOMEM;
			*d = q;
		}
	}
	if (c.bad) {
		snprintf(err, errlen, "APR %s record of %zu bytes is cut short or malformed",
			 tag == MT_TAG_APR_TAG ? "tag" : "pool", len);
		return -EINVAL;
	}
	return 0;
}
