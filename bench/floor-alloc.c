/*
 * floor-alloc: a reference row for bench/run.sh, not a product.  The least
 * an LD_PRELOAD interposer pays on jemalloc (-DJE), tcmalloc (-DTC) or
 * mimalloc (-DMI) for the figures memtap's counting mode keeps: calls, bytes
 * and power-of-two histograms per function in thread-local counters, every
 * block's usable size, in-use bytes and their peak -- from each allocator's
 * cheapest exact sources, the ones memtap's fast paths use (its pure size
 * computation when allocating; when freeing, jemalloc's per-thread
 * deallocated counter, tcmalloc's GetAllocatedSize and sized free,
 * mimalloc's mi_usable_size).  No thread registry, no control, no output:
 * bench/floor.c's floor-inuse for other allocators.
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
extern size_t nallocx(size_t, int), malloc_usable_size(void *);
extern int mallctl(const char *, void *, size_t *, void *, size_t);
static __thread uint64_t *freed;
#define SIZE_OF(n) nallocx((n) ? (n) : 1, 0)
#define USABLE(p) malloc_usable_size(p)
/* free, and what it released: the thread's deallocated counter. */
static inline uint64_t release(void *p)
{
	if (!freed) { size_t l = sizeof(freed); mallctl("thread.deallocatedp", &freed, &l, NULL, 0); }
	uint64_t b = *freed;
	nf(p);
	return *freed - b;
}
#elif defined(TC)
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

static void resolve(void)
{
	nm = dlsym(RTLD_NEXT, "malloc"), nf = dlsym(RTLD_NEXT, "free");
	nc = dlsym(RTLD_NEXT, "calloc"), nr = dlsym(RTLD_NEXT, "realloc");
}
#define R() do { if (__builtin_expect(!nr, 0)) resolve(); } while (0)

void *malloc(size_t n) { R(); C(0, n); void *p = nm(n); if (p) up(SIZE_OF(n)); return p; }
void free(void *p) { R(); if (!p) { C(1, 0); nf(p); return; } uint64_t u = release(p); C(1, u); inuse -= (int64_t)u; }
void *calloc(size_t n, size_t m) { R(); size_t s = n * m; C(2, s); void *p = nc(n, m); if (p) up(USABLE(p)); return p; }
void *realloc(void *p, size_t n) { R(); C(3, n); if (p) inuse -= (int64_t)USABLE(p); void *q = nr(p, n); if (q) up(USABLE(q)); return q; }
