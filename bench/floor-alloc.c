/*
 * floor-alloc: a reference row for bench/run.sh, not a product.  The least
 * an LD_PRELOAD interposer pays on jemalloc (-DJE), tcmalloc (-DTC) or
 * mimalloc (-DMI) for the figures memtap's counting mode keeps: calls, bytes
 * and power-of-two histograms per function in thread-local counters, every
 * block's usable size, in-use bytes and their peak -- from each allocator's
 * cheapest exact sources: on jemalloc its per-thread allocated and
 * deallocated counters around each call (thread.allocatedp and
 * thread.deallocatedp: two loads); on tcmalloc and mimalloc, allocating,
 * the pure size computation (tc_nallocx, mi_good_size) remembered per
 * 8-byte step up to 4 KiB, as memtap's table does, and freeing tcmalloc's
 * GetAllocatedSize and sized free, mimalloc's mi_usable_size.  No thread
 * registry, no control, no output: floor-inuse (bench/run.sh) for other
 * allocators.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stddef.h>
#include <stdint.h>

static void *(*nm)(size_t), *(*nc)(size_t, size_t), *(*nr)(void *, size_t);
static void (*nf)(void *);
static __thread uint64_t calls[4], bytes[4], hist[4][65];
static __thread int64_t inuse, peak;
#define B(n) ((n) ? 64 - __builtin_clzl(n) : 0)
#define C(f, n) (calls[f]++, bytes[f] += (n), hist[f][B(n)]++)
static inline void up(uint64_t u) { if ((inuse += (int64_t)u) > peak) peak = inuse; }

#if defined(JE)
extern size_t malloc_usable_size(void *);
extern int mallctl(const char *, void *, size_t *, void *, size_t);
static __thread uint64_t *alloced, *freed;
#define USABLE(p) malloc_usable_size(p)
static inline uint64_t *ctr(uint64_t **c, const char *name)
{
	if (!*c) { size_t l = sizeof(*c); mallctl(name, c, &l, NULL, 0); }
	return *c;
}
/* malloc, and the usable size it handed out: the allocated counter. */
static inline void *get(size_t n, uint64_t *u)
{
	uint64_t *c = ctr(&alloced, "thread.allocatedp"), b = *c;
	void *p = nm(n);
	*u = *c - b;
	return p;
}
/* free, and what it released: the deallocated counter. */
static inline uint64_t release(void *p)
{
	uint64_t *c = ctr(&freed, "thread.deallocatedp"), b = *c;
	nf(p);
	return *c - b;
}
#else
#if defined(TC)
extern size_t tc_nallocx(size_t, int), _ZN22TCMallocImplementation16GetAllocatedSizeEPKv(void *, void *);
extern void tc_free_sized(void *, size_t);
#define SIZE_OF(n) tc_nallocx((n), 0)
#define USABLE(p) _ZN22TCMallocImplementation16GetAllocatedSizeEPKv((p), (p))
static inline uint64_t release(void *p) { uint64_t u = USABLE(p); tc_free_sized(p, u); return u; }
#elif defined(MI)
extern size_t mi_good_size(size_t), mi_usable_size(void *);
#define SIZE_OF(n) mi_good_size(n)
#define USABLE(p) mi_usable_size(p)
static inline uint64_t release(void *p) { uint64_t u = USABLE(p); nf(p); return u; }
#else
#error "build with -DJE, -DTC or -DMI"
#endif
static uint16_t tab[4096 / 8 + 1];
static inline void *get(size_t n, uint64_t *u)
{
	void *p = nm(n);
	if (n > 4096) *u = SIZE_OF(n);
	else if (!(*u = tab[(n + 7) / 8])) *u = tab[(n + 7) / 8] = (uint16_t)SIZE_OF(n);
	return p;
}
#endif

static void resolve(void)
{
	nm = dlsym(RTLD_NEXT, "malloc"), nf = dlsym(RTLD_NEXT, "free");
	nc = dlsym(RTLD_NEXT, "calloc"), nr = dlsym(RTLD_NEXT, "realloc");
}
#define R() do { if (__builtin_expect(!nr, 0)) resolve(); } while (0)

void *malloc(size_t n) { R(); C(0, n); uint64_t u; void *p = get(n, &u); if (p) up(u); return p; }
void free(void *p) { R(); if (!p) { C(1, 0); nf(p); return; } uint64_t u = release(p); C(1, u); inuse -= (int64_t)u; }
void *calloc(size_t n, size_t m) { R(); size_t s = n * m; C(2, s); void *p = nc(n, m); if (p) up(USABLE(p)); return p; }
void *realloc(void *p, size_t n) { R(); C(3, n); if (p) inuse -= (int64_t)USABLE(p); void *q = nr(p, n); if (q) up(USABLE(q)); return q; }
