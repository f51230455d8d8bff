/*
 * The leak check's pointer-range search and marking, and its record in the
 * live counter file (include/memtap/leaks.h).  Linked into the agent:
 * nothing here allocates, and memory is only ever read through the
 * caller's readv (never a raw load of an address found in memory).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "memtap/leaks.h"

/* ---- the search ---- */

void mt_reach_sort(struct mt_reach_block *b, size_t n, struct mt_reach_block *tmp)
{
	/* LSD radix, 16 bits a pass over the 48 bits of a user address (a
	 * pass whose digit is the same everywhere is skipped). */
	static const unsigned shifts[] = {0, 16, 32, 48};
	/* 512 KiB: not on a stack (the agent's control thread has 256 KiB).
	 * One sort at a time: the agent serializes its checks. */
	static size_t count[65537];
	struct mt_reach_block *src = b, *dst = tmp;
	for (unsigned p = 0; p < 4; p++) {
		memset(count, 0, sizeof(count));
		unsigned sh = shifts[p];
		for (size_t i = 0; i < n; i++)
			count[((src[i].start >> sh) & 0xffff) + 1]++;
		int trivial = 0;
		for (size_t d = 1; d <= 65536; d++)
			if (count[d] == n)
				trivial = 1;
		if (trivial || n < 2)
			continue;
		for (size_t d = 1; d <= 65536; d++)
			count[d] += count[d - 1];
		for (size_t i = 0; i < n; i++)
			dst[count[(src[i].start >> sh) & 0xffff]++] = src[i];
		struct mt_reach_block *t = src;
		src = dst;
		dst = t;
	}
	if (src != b)
		memcpy(b, src, n * sizeof(*b));
}

long mt_reach_find(const struct mt_reach *r, uint64_t addr)
{
	if (!r->n || addr < r->b[0].start)
		return -1;
	/* The last block that starts at or below ADDR. */
	size_t lo = 0, hi = r->n;
	while (hi - lo > 1) {
		size_t mid = lo + (hi - lo) / 2;
		if (r->b[mid].start <= addr)
			lo = mid;
		else
			hi = mid;
	}
	const struct mt_reach_block *k = &r->b[lo];
	uint64_t size = k->size ? k->size : 1;
	return addr - k->start < size ? (long)lo : -1;
}

/* Whether W is the chunk header right after block K (glibc: the next
 * chunk starts 16 bytes before its user memory, so its header lies in the
 * last 8 usable bytes of K, which the requested size may cover).  Only
 * then is K's own chunk header read. */
static int next_chunk_header(struct mt_reach *r, const struct mt_reach_block *k, uint64_t w)
{
	if (!r->glibc_headers || (w & 15) || k->size < 8 || w < k->start + k->size - 8)
		return 0;
	uint64_t sz = 0;
	struct mt_reach_io io = {k->start - 8, 8};
	if (r->readv(r->arg, &io, 1, &sz) != 8 || (sz & 2)) /* mmapped chunks have no neighbour */
		return 0;
	return w == k->start - 16 + (sz & ~(uint64_t)7);
}

void mt_reach_words(struct mt_reach *r, const uint64_t *w, size_t n)
{
	if (!r->n)
		return;
	uint64_t lo = r->b[0].start;
	uint64_t hi = r->b[r->n - 1].start + (r->b[r->n - 1].size ? r->b[r->n - 1].size : 1);
	for (size_t i = 0; i < n; i++) {
		uint64_t v = w[i];
		if (v < lo || v >= hi)
			continue;
		long k = mt_reach_find(r, v);
		if (k < 0 || r->b[k].reached)
			continue;
		if (next_chunk_header(r, &r->b[k], v))
			continue;
		r->b[k].reached = 1;
		r->stack[r->depth++] = (uint32_t)k;
	}
}

/* ---- reading: a cache of windows ----
 *
 * Reading block by block costs a system call's page lookups per block
 * (process_vm_readv pins the pages of every remote range: about 2 us a
 * block, 2 s for a million).  Blocks that point at each other mostly sit
 * near each other, so memory is read in aligned windows of WIN bytes kept
 * in a direct-mapped cache carved from r->buf; a window that cannot be
 * read whole is read page by page, and its unreadable pages are skipped. */

#define WIN 32768u
#define WIN_PAGES (WIN / 4096u)

static size_t slots(const struct mt_reach *r)
{
	size_t n = r->buflen / (WIN + sizeof(uint64_t) + sizeof(uint32_t));
	return n ? n : 1;
}

static const uint8_t *window(struct mt_reach *r, uint64_t w, uint32_t *mask)
{
	size_t n = slots(r), slot = (size_t)(w % n);
	uint64_t *tags = (uint64_t *)(r->buf + n * WIN);
	uint32_t *masks = (uint32_t *)(tags + n);
	uint8_t *d = r->buf + slot * WIN;
	if (tags[slot] != w + 1) {
		struct mt_reach_io io = {w * WIN, WIN};
		uint32_t m = 0;
		if (r->readv(r->arg, &io, 1, d) == (ssize_t)WIN) {
			m = (1u << WIN_PAGES) - 1;
		} else {
			for (unsigned pg = 0; pg < WIN_PAGES; pg++) {
				struct mt_reach_io one = {w * WIN + pg * 4096u, 4096};
				if (r->readv(r->arg, &one, 1, d + pg * 4096u) == 4096)
					m |= 1u << pg;
			}
		}
		tags[slot] = w + 1;
		masks[slot] = m;
	}
	*mask = masks[slot];
	return d;
}

/* The aligned words of [ADDR, END), both multiples of 8. */
static void scan_span(struct mt_reach *r, uint64_t addr, uint64_t end)
{
	while (addr < end) {
		uint64_t w = addr / WIN, wend = (w + 1) * WIN < end ? (w + 1) * WIN : end;
		uint32_t mask;
		const uint8_t *d = window(r, w, &mask);
		for (uint64_t a = addr; a < wend;) {
			uint64_t pend = (a | 4095) + 1 < wend ? (a | 4095) + 1 : wend;
			unsigned pg = (unsigned)((a % WIN) / 4096u);
			if (mask & (1u << pg)) {
				r->scanned_bytes += pend - a;
				mt_reach_words(r, (const uint64_t *)(d + a % WIN), (size_t)(pend - a) / 8);
			} else {
				r->unreadable_bytes += pend - a;
			}
			a = pend;
		}
		addr = wend;
	}
}

void mt_reach_range(struct mt_reach *r, uint64_t addr, uint64_t len)
{
	uint64_t end = (addr + len) & ~(uint64_t)7;
	addr = (addr + 7) & ~(uint64_t)7;
	if (addr < end)
		scan_span(r, addr, end);
}

void mt_reach_drain(struct mt_reach *r)
{
	while (r->depth) {
		const struct mt_reach_block *k = &r->b[r->stack[--r->depth]];
		mt_reach_range(r, k->start, k->size);
	}
}

/* ---- the live file's record ---- */

static const struct mt_live_leaks *leaks_of(const struct mt_live_view *v)
{
	const struct mt_live_hdr *h = (const struct mt_live_hdr *)v->data;
	uint64_t a = __atomic_load_n(&h->leaks, __ATOMIC_ACQUIRE);
	const struct mt_live_leaks *l = a ? mt_live_at(v, a, sizeof(*l)) : NULL;
	if (!l)
		return NULL;
	uint32_t cap = __atomic_load_n(&l->cap, __ATOMIC_RELAXED);
	if (!mt_live_at(v, a, sizeof(*l) + (size_t)cap * sizeof(l->s[0])))
		return NULL;
	return l;
}

uint32_t mt_live_leak_count(const struct mt_live_view *v)
{
	const struct mt_live_leaks *l = leaks_of(v);
	if (!l)
		return 0;
	uint32_t n = __atomic_load_n(&l->nsites, __ATOMIC_RELAXED), cap = __atomic_load_n(&l->cap, __ATOMIC_RELAXED);
	return n < cap ? n : cap;
}

static uint32_t fn_of(const struct mt_live_view *v, const struct mt_profile *p, uint32_t fn)
{
	const struct mt_live_hdr *h = (const struct mt_live_hdr *)v->data;
	if (!p || fn >= h->nbuiltin)
		return UINT32_MAX;
	char name[MT_NAME_MAX];
	size_t n = strnlen(h->names[fn], sizeof(h->names[fn]));
	if (n >= sizeof(name))
		n = sizeof(name) - 1;
	memcpy(name, h->names[fn], n);
	name[n] = '\0';
	for (uint32_t i = 0; i < p->nfuncs; i++)
		if (!strcmp(p->funcs[i].name, name))
			return i;
	return UINT32_MAX;
}

int mt_live_leaks_read(const struct mt_live_view *v, const struct mt_profile *p, struct mt_leaks *l,
		       uint32_t cap)
{
	const struct mt_live_leaks *src = leaks_of(v);
	struct mt_leak_site *sites = l->sites;
	memset(l, 0, sizeof(*l));
	l->sites = sites;
	if (!src)
		return 0;
	for (int tries = 0; tries < 1000; tries++) {
		uint32_t seq = __atomic_load_n(&src->seq, __ATOMIC_ACQUIRE);
		if (seq & 1)
			continue;
		l->check_ns = src->check_ns;
		l->pause_ns = src->pause_ns;
		l->roots_bytes = src->roots_bytes;
		l->threads = src->threads;
		l->unstopped = src->unstopped;
		l->flags = src->flags;
		l->unreachable_bytes = src->unreachable_bytes;
		l->unreachable_blocks = src->unreachable_blocks;
		l->reachable_bytes = src->reachable_bytes;
		l->reachable_blocks = src->reachable_blocks;
		uint32_t n = __atomic_load_n(&src->nsites, __ATOMIC_RELAXED);
		if (n > src->cap)
			n = src->cap;
		l->nsites = 0;
		for (uint32_t i = 0; i < n && l->nsites < cap; i++) {
			const struct mt_live_leak_site *e = &src->s[i];
			struct mt_leak_site *d = &l->sites[l->nsites];
			memset(d, 0, sizeof(*d));
			d->fn = UINT32_MAX;
			const struct mt_live_site *s = e->site ? mt_live_at(v, e->site, sizeof(*s)) : NULL;
			if (s && s->nframes <= MT_STACK_MAX &&
			    mt_live_at(v, e->site + offsetof(struct mt_live_site, frames), s->nframes * 8)) {
				d->nframes = s->nframes;
				memcpy(d->frames, s->frames, s->nframes * sizeof(uint64_t));
				d->fn = fn_of(v, p, s->fn);
			}
			d->lost_objects = e->lost_objects;
			d->lost_bytes = e->lost_bytes;
			d->reach_objects = e->reach_objects;
			d->reach_bytes = e->reach_bytes;
			l->nsites++;
		}
		if (__atomic_load_n(&src->seq, __ATOMIC_ACQUIRE) == seq) {
			mt_leaks_order(l);
			return 1;
		}
	}
	l->nsites = 0;
	return -1;
}

static int site_cmp(const void *a, const void *b)
{
	const struct mt_leak_site *x = a, *y = b;
	if (x->lost_bytes != y->lost_bytes)
		return x->lost_bytes > y->lost_bytes ? -1 : 1;
	if (x->reach_bytes != y->reach_bytes)
		return x->reach_bytes > y->reach_bytes ? -1 : 1;
	return (x->lost_objects < y->lost_objects) - (x->lost_objects > y->lost_objects);
}

static void site_swap(struct mt_leak_site *a, struct mt_leak_site *b)
{
	struct mt_leak_site t = *a;
	*a = *b;
	*b = t;
}

static void sift(struct mt_leak_site *s, uint32_t i, uint32_t n)
{
	for (;;) {
		uint32_t c = 2 * i + 1;
		if (c >= n)
			return;
		if (c + 1 < n && site_cmp(&s[c + 1], &s[c]) > 0)
			c++;
		if (site_cmp(&s[c], &s[i]) <= 0)
			return;
		site_swap(&s[c], &s[i]);
		i = c;
	}
}

void mt_leaks_order(struct mt_leaks *l)
{
	/* Heapsort: the agent links this too, and qsort may allocate. */
	struct mt_leak_site *s = l->sites;
	uint32_t n = l->nsites;
	for (uint32_t i = n / 2; i-- > 0;)
		sift(s, i, n);
	for (uint32_t end = n; end-- > 1;) {
		site_swap(&s[0], &s[end]);
		sift(s, 0, end);
	}
}

struct mt_leaks *mt_leaks_dup(const struct mt_leaks *l)
{
	struct mt_leaks *d = malloc(sizeof(*d));
	if (!d)
		return NULL;
	*d = *l;
	d->sites = NULL;
	if (l->nsites && !(d->sites = malloc(l->nsites * sizeof(*d->sites)))) {
		free(d);
		return NULL;
	}
	if (l->nsites)
		memcpy(d->sites, l->sites, l->nsites * sizeof(*d->sites));
	return d;
}

void mt_leaks_free(struct mt_leaks *l)
{
	if (!l)
		return;
	free(l->sites);
	free(l);
}
