/* Timelines (include/memtap/timeline.h): appending and decimating points. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "memtap/timeline.h"

static void merge_into(struct mt_tl_point *a, const struct mt_tl_point *b)
{
	/* A is the earlier point, B the later: the levels are B's. */
	int64_t max = a->in_use_max > b->in_use_max ? a->in_use_max : b->in_use_max;
	uint64_t span = a->span_ns + b->span_ns;
	uint64_t ab = a->alloc_bytes + b->alloc_bytes, ac = a->alloc_calls + b->alloc_calls;
	uint64_t fb = a->free_bytes + b->free_bytes, fc = a->free_calls + b->free_calls;
	uint32_t merged = a->merged + b->merged;
	*a = *b;
	a->in_use_max = max;
	a->span_ns = span;
	a->alloc_bytes = ab;
	a->alloc_calls = ac;
	a->free_bytes = fb;
	a->free_calls = fc;
	a->merged = merged;
}

void mt_timeline_decimate(struct mt_timeline *tl)
{
	uint32_t half = tl->n / 2 & ~1u, out = 0;
	if (half < 2)
		return;
	for (uint32_t i = 0; i < half; i += 2) {
		struct mt_tl_point p = tl->pts[i];
		merge_into(&p, &tl->pts[i + 1]);
		tl->pts[out++] = p;
	}
	memmove(&tl->pts[out], &tl->pts[half], (tl->n - half) * sizeof(*tl->pts));
	tl->n -= half - out;
	tl->decimations++;
}

int mt_timeline_append(struct mt_timeline *tl, const struct mt_tl_point *pt)
{
	if (tl->n >= MT_TL_MAX)
		mt_timeline_decimate(tl);
	if (tl->n == tl->cap) {
		uint32_t cap = tl->cap ? tl->cap * 2 : 64;
		if (cap > MT_TL_MAX)
			cap = MT_TL_MAX;
		struct mt_tl_point *v = realloc(tl->pts, cap * sizeof(*v));
		if (!v)
			return -ENOMEM;
		tl->pts = v;
		tl->cap = cap;
	}
	struct mt_tl_point *d = &tl->pts[tl->n++];
	*d = *pt;
	if (!d->merged)
		d->merged = 1;
	if (d->in_use_max < d->in_use_bytes)
		d->in_use_max = d->in_use_bytes;
	return 0;
}

int mt_timeline_copy(struct mt_timeline *dst, const struct mt_timeline *src)
{
	mt_timeline_clear(dst);
	*dst = *src;
	dst->pts = NULL;
	dst->cap = 0;
	if (!src->n)
		return 0;
	if (!(dst->pts = malloc(src->n * sizeof(*dst->pts)))) {
		dst->n = 0;
		return -ENOMEM;
	}
	memcpy(dst->pts, src->pts, src->n * sizeof(*dst->pts));
	dst->cap = src->n;
	return 0;
}

void mt_timeline_clear(struct mt_timeline *tl)
{
	if (!tl)
		return;
	free(tl->pts);
	tl->pts = NULL;
	tl->n = tl->cap = 0;
}
