/*
 * The interposed allocation functions.  Each wrapper asks mt_enter() for the
 * calling thread's counter block (NULL: pass straight through), calls the
 * real function with the recursion guard set, then counts.
 *
 * Until the real functions are resolved, allocations (made by dlsym itself)
 * are served from a static bootstrap buffer; frees of those are ignored.
 *
 * malloc and free have fast paths without the recursion guard: on glibc
 * (usable sizes from its chunk headers) and on jemalloc, tcmalloc and
 * mimalloc (usable sizes from their own queries: "other allocators" below).
 */
#include <cpuid.h>
#include <dlfcn.h>
#include <errno.h>
#include <immintrin.h>
#include <link.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "agent.h"

typedef void *(*new_fn)(size_t);
typedef void *(*new_nt_fn)(size_t, const void *);
typedef void *(*new_al_fn)(size_t, size_t);
typedef void *(*new_al_nt_fn)(size_t, size_t, const void *);

static struct {
	void *(*malloc)(size_t);
	void (*free)(void *);
	void *(*calloc)(size_t, size_t);
	void *(*realloc)(void *, size_t);
	void *(*reallocarray)(void *, size_t, size_t);
	int (*posix_memalign)(void **, size_t, size_t);
	void *(*aligned_alloc)(size_t, size_t);
	void *(*memalign)(size_t, size_t);
	void *(*valloc)(size_t);
	void *(*pvalloc)(size_t);
	size_t (*usable)(void *);
	void *(*mmap)(void *, size_t, int, int, int, off_t);
	int (*munmap)(void *, size_t);
	void *(*mremap)(void *, size_t, size_t, int, ...);
	int (*brk)(void *);
	void *(*sbrk)(intptr_t);
	/* C++ operators, indexed by MT_FN_<id> - MT_FN_NEW; resolved lazily
	 * because libstdc++ may be loaded after the agent starts. */
	void *cxx[MT_FN_DELETEA_ALIGN_NOTHROW - MT_FN_NEW + 1];
} real;

/* Every traced function's symbol, from the one list (memtap/funcs.def);
 * the C++ operators' are looked up late. */
static const char *const fn_symbols[MT_FN_COUNT] = {
#define MT_FN(id, sym, name, kind, size, fail, ret) #sym,
#include "memtap/funcs.def"
#undef MT_FN
};
#define cxx_symbols (fn_symbols + MT_FN_NEW)
#define NCXX (MT_FN_DELETEA_ALIGN_NOTHROW - MT_FN_NEW + 1)

/* ---- bootstrap allocations (made while dlsym runs) ---- */

static uint8_t boot_buf[256 * 1024] __attribute__((aligned(64)));
static size_t boot_used;

static inline int is_boot(const void *p)
{
	return (uintptr_t)p - (uintptr_t)boot_buf < sizeof(boot_buf); /* one compare */
}

static void *boot_alloc(size_t n, size_t align)
{
	if (align < 16)
		align = 16;
	size_t need = ((n + 15) & ~(size_t)15) + align;
	size_t at = __atomic_fetch_add(&boot_used, need, __ATOMIC_RELAXED);
	if (at + need > sizeof(boot_buf)) {
		errno = ENOMEM;
		return NULL;
	}
	uintptr_t p = ((uintptr_t)(boot_buf + at) + 16 + align - 1) & ~(uintptr_t)(align - 1);
	((size_t *)p)[-1] = n; /* remembered for realloc */
	return (void *)p;
}

static size_t boot_size(const void *p)
{
	return ((const size_t *)p)[-1];
}

struct load_order {
	uintptr_t self;
	int index, self_at, libc_at;
};

static int load_order_cb(struct dl_phdr_info *info, size_t size, void *arg)
{
	(void)size;
	struct load_order *o = arg;
	if (info->dlpi_addr == o->self)
		o->self_at = o->index;
	if (o->libc_at < 0 && info->dlpi_name && strstr(info->dlpi_name, "/libc.so"))
		o->libc_at = o->index;
	o->index++;
	return 0;
}

static int loaded_after_libc(void)
{
	Dl_info self;
	if (!dladdr((void *)loaded_after_libc, &self))
		return 0;
	struct load_order o = {(uintptr_t)self.dli_fbase, 0, -1, -1};
	dl_iterate_phdr(load_order_cb, &o);
	return o.libc_at >= 0 && o.self_at > o.libc_at;
}

/* The real NAME: the next definition after the agent when preloaded, the
 * program's global one when loaded into it (never a PLT stub of the
 * program's that our GOT hooks would send back to us). */
static void *real_lookup(void *scope, const char *name)
{
	return scope == RTLD_NEXT ? dlsym(RTLD_NEXT, name) : mt_global_sym(name);
}

int mt_resolve(void)
{
	/* Preloaded, the agent is the global definition of malloc and the real
	 * one is the next; loaded into a running process (attach), the agent is
	 * a local object and the real one is the global definition. */
	/* `memtap run` says so in the environment.  Otherwise (attach, or a
	 * hand-made LD_PRELOAD) look at the load order: a preloaded library is
	 * loaded before the C library, one dlopen'd by the injector after it.
	 * (Comparing dlsym("malloc") with our own would be wrong in a non-PIE
	 * program that takes malloc's address: the canonical address is then the
	 * program's own PLT stub.) */
	void *scope = RTLD_NEXT;
	if (!getenv("MEMTAP_AGENT") && loaded_after_libc()) {
		mt_g.attached_mode = 1;
		scope = RTLD_DEFAULT;
	}
#define R(field, sym) real.field = (__typeof__(real.field))real_lookup(scope, sym)
	R(malloc, "malloc");
	R(free, "free");
	R(calloc, "calloc");
	R(realloc, "realloc");
	R(reallocarray, "reallocarray");
	R(posix_memalign, "posix_memalign");
	R(aligned_alloc, "aligned_alloc");
	R(memalign, "memalign");
	R(valloc, "valloc");
	R(pvalloc, "pvalloc");
	R(usable, "malloc_usable_size");
	R(mmap, "mmap");
	R(munmap, "munmap");
	R(mremap, "mremap");
	R(brk, "brk");
	R(sbrk, "sbrk");
#undef R
	if (!real.malloc || !real.free || !real.calloc || !real.realloc)
		return -ENOENT;
	/* A "real" function that is our own wrapper would call itself forever:
	 * refuse to start rather than hang the program. */
	if ((void *)real.malloc == (void *)malloc || (void *)real.calloc == (void *)calloc ||
	    (void *)real.free == (void *)free || (void *)real.realloc == (void *)realloc) {
		memset(&real, 0, sizeof(real));
		return -ELOOP;
	}
	for (size_t i = 0; i < NCXX; i++)
		real.cxx[i] = real_lookup(scope, cxx_symbols[i]);
	return 0;
}

/* A C++ operator not found at start-up: libstdc++ may have been loaded since,
 * possibly with RTLD_LOCAL (a plugin), where RTLD_NEXT cannot see it. */
static void *cxx_real(int fn)
{
	int i = fn - MT_FN_NEW;
	void *f = __atomic_load_n(&real.cxx[i], __ATOMIC_RELAXED);
	if (likely(f))
		return f;
	int busy = mt_tls_busy;
	mt_tls_busy = 1;
	f = real_lookup(mt_g.attached_mode ? RTLD_DEFAULT : RTLD_NEXT, cxx_symbols[i]);
	if (!f) {
		void *h = dlopen("libstdc++.so.6", RTLD_NOW | RTLD_NOLOAD);
		if (h) {
			f = dlsym(h, cxx_symbols[i]);
			dlclose(h);
		}
	}
	mt_tls_busy = busy;
	__atomic_store_n(&real.cxx[i], f, __ATOMIC_RELAXED);
	return f;
}

const char *mt_allocator_name(char *path, size_t pathlen)
{
	Dl_info info;
	path[0] = '\0';
	if (!real.malloc || !dladdr((void *)real.malloc, &info) || !info.dli_fname)
		return "unknown";
	snprintf(path, pathlen, "%s", info.dli_fname);
	if (strstr(info.dli_fname, "jemalloc"))
		return "jemalloc";
	if (strstr(info.dli_fname, "tcmalloc"))
		return "tcmalloc";
	if (strstr(info.dli_fname, "mimalloc"))
		return "mimalloc";
	if (strstr(info.dli_fname, "libc.so"))
		return "glibc";
	return "other";
}

/* glibc's malloc_usable_size without the call: a chunk's size word sits
 * just before the user pointer, with flags in its low three bits; an
 * mmapped chunk (IS_MMAPPED, 0x2) has a 16-byte header, others use 8 bytes
 * of the next chunk.  Used only when the real allocator is glibc and a
 * self-test at start-up agrees with malloc_usable_size (mt_usable_check):
 * mt_g.usable_fast. */
#define glibc_layout mt_g.usable_fast

static inline size_t glibc_usable(const void *p)
{
	size_t sz = ((const size_t *)p)[-1];
	return (sz & ~(size_t)7) - 8 - ((sz & 2) << 2); /* IS_MMAPPED: 8 more */
}

#define USABLE(p) (likely(glibc_layout) ? glibc_usable(p) : other_usable(p))

static void alt_check(void);

void mt_usable_check(void)
{
	char path[512];
	if (strcmp(mt_allocator_name(path, sizeof(path)), "glibc") == 0 && real.usable) {
		/* The mmapped sizes are above DEFAULT_MMAP_THRESHOLD_MAX (32 MiB):
		 * freeing a smaller mmapped chunk would raise the program's
		 * mmap threshold to its size (glibc's dynamic threshold). */
		static const size_t sizes[] = {0, 1, 24, 25, 100, 1000, 4000, 70000, 33 << 20, 40 << 20};
		int ok = 1;
		for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]) && ok; i++) {
			void *p = real.malloc(sizes[i]);
			void *q = real.memalign(4096, sizes[i] + 1);
			ok = p && q && glibc_usable(p) == real.usable(p) && glibc_usable(q) == real.usable(q);
			real.free(p);
			real.free(q);
		}
		glibc_layout = ok; /* the gate is updated when options are read, just after */
	} else {
		alt_check();
	}
	unsigned a, b, c, d;
	mt_g.lzcnt = __get_cpuid(0x80000001, &a, &b, &c, &d) && (c & bit_LZCNT);
	/* MEMTAP_SLOW_PATH=1 keeps the fast paths closed: tests compare the two
	 * paths' figures, benchmarks measure what the fast paths save. */
	const char *slow = getenv("MEMTAP_SLOW_PATH");
	if (slow && *slow == '1')
		mt_g.lzcnt = 0;
}

/* The fast paths' histogram bucket: 64 - lzcnt(v) is mt_hist_bucket(v) for
 * every v (lzcnt(0) = 64), in one instruction and a subtraction.  The gate
 * is closed on CPUs without LZCNT, where the instruction would run as BSR. */
#define MT_FAST_TARGET __attribute__((target("lzcnt")))

static inline MT_FAST_TARGET unsigned fast_bucket(uint64_t v)
{
	return 64 - (unsigned)_lzcnt_u64(v);
}

/* ---- other allocators: jemalloc, tcmalloc, mimalloc ----
 *
 * Their malloc and free get fast paths like glibc's (mt_g.fast_alt), with
 * the usable sizes from each allocator's cheapest exact source:
 * - allocating, the usable size of malloc(N) for N <= ALT_SMALL from a
 *   table that the self-test fills from the allocator's own answers (every
 *   size: a size class depends on N alone), else the block's size query;
 * - freeing on jemalloc, what free released: jemalloc adds each freed
 *   block's usable size to the thread's deallocated counter on every path
 *   of free (thread_dalloc_event), and thread.deallocatedp gives its
 *   address, "useful for avoiding the overhead of repeated mallctl*()
 *   calls" (jemalloc(3)); two loads around the call, where its size query
 *   (sallocx's code) costs 40 instructions.  (A signal handler that frees
 *   on the same thread between the two loads -- free is not
 *   async-signal-safe -- would have its bytes counted twice.)  A thread
 *   whose counter cannot be had uses the size query, as below;
 * - freeing on tcmalloc and mimalloc, the block's size query (tcmalloc's
 *   GetAllocatedSize, mimalloc's mi_usable_size).  Knowing it, free hands
 *   the block to tcmalloc's tc_free_sized, which skips the lookup free
 *   would make (the usable size maps to the block's size class; past
 *   256 KiB it looks the block up as free does; callgrind: 2 instructions
 *   less a free); mimalloc's mi_free_size is mi_free.
 *
 * No recursion guard.  What malloc, free and the size queries of these
 * builds call through the PLT (readelf -r, and the call sites in objdump -d,
 * docs/BENCHMARKS.md): of the functions we interpose, only mmap, munmap and
 * sbrk, from their page allocators, plus malloc/free/aligned_alloc from
 * jemalloc's C++ operators and operator new from tcmalloc's
 * MallocExtension::instance() on its first use (the self-test makes that
 * first call, guarded) -- and our C++ operators set the guard before they
 * call the allocator's.  The mmap family does not count a call whose return
 * address lies in the allocator's code (alt_own_call), on every path, so
 * the allocator's own mappings stay out of the figures as glibc's are.  A
 * thread's allocator state (jemalloc's tsd, tcmalloc's thread cache) is
 * made on its first call, which takes the slow path (the thread has no
 * block yet), so under the guard.  tests/integration/58-allocators.t
 * compares every figure with the slow path's on each allocator. */

#define ALT_SMALL 4096

enum { ALT_NONE, ALT_JEMALLOC, ALT_TCMALLOC, ALT_MIMALLOC };
static const char *const alt_names[] = {"none", "jemalloc", "tcmalloc", "mimalloc"};

static struct {
	int kind;
	/* The block's usable size, called as usable(p, p): the allocator's
	 * malloc_usable_size(p) ignores the second argument, and tcmalloc's
	 * TCMallocImplementation::GetAllocatedSize(this, p) ignores `this'
	 * (the x86-64 calling convention passes both in registers). */
	size_t (*usable)(const void *, const void *);
	/* free of a block of known usable size: tcmalloc's tc_free_sized(p,
	 * size), else the allocator's free(p), called with arguments they
	 * ignore (as above). */
	void (*free_sized)(void *, size_t, int);
	/* jemalloc's mallctl: free reads the thread's deallocated counter. */
	int (*mallctl)(const char *, void *, size_t *, void *, size_t);
	uintptr_t text_lo, text_hi; /* the allocator's code */
	uint16_t small[ALT_SMALL / 8 + 1]; /* usable size of malloc(N) at (N + 7) / 8 */
} alt;

struct text_find {
	uintptr_t addr, lo, hi;
};

/* The executable segment that holds ADDR. */
static int text_find_cb(struct dl_phdr_info *info, size_t size, void *arg)
{
	(void)size;
	struct text_find *f = arg;
	for (int i = 0; i < info->dlpi_phnum; i++) {
		const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
		if (ph->p_type != PT_LOAD || !(ph->p_flags & PF_X))
			continue;
		uintptr_t lo = info->dlpi_addr + ph->p_vaddr;
		if (f->addr - lo < ph->p_memsz) {
			f->lo = lo;
			f->hi = lo + ph->p_memsz;
			return 1;
		}
	}
	return 0;
}

static inline int in_alt_text(const void *f)
{
	return (uintptr_t)f - alt.text_lo < alt.text_hi - alt.text_lo;
}

/* A call made by the allocator's own code: not the program's. */
static inline int alt_own_call(const void *ret)
{
	return unlikely(in_alt_text(ret));
}

/* NAME, if the object that provides malloc defines it. */
static void *alt_sym(const char *name)
{
	void *f = real_lookup(mt_g.attached_mode ? RTLD_DEFAULT : RTLD_NEXT, name);
	return f && in_alt_text(f) ? f : NULL;
}

/* The calling thread's deallocated counter in jemalloc (thread.deallocatedp),
 * or NULL until its first free on the fast path asks for it. */
static __thread uint64_t *je_freed __attribute__((tls_model("initial-exec")));

static __attribute__((noinline)) uint64_t *je_freed_get(void)
{
	uint64_t *d = NULL;
	size_t len = sizeof(d);
	int busy = mt_tls_busy;
	mt_tls_busy = 1;
	if (alt.mallctl("thread.deallocatedp", &d, &len, NULL, 0) != 0 || len != sizeof(d))
		d = NULL;
	mt_tls_busy = busy;
	return je_freed = d;
}

/* free as the fast path does it: the bytes it released, or 0 when this
 * thread's jemalloc counter could not be had. */
static size_t alt_release(void *p, size_t u)
{
	if (alt.mallctl) {
		uint64_t *d = je_freed ? je_freed : je_freed_get();
		if (!d)
			return 0;
		uint64_t before = __atomic_load_n(d, __ATOMIC_RELAXED);
		real.free(p);
		return (size_t)(__atomic_load_n(d, __ATOMIC_RELAXED) - before);
	}
	alt.free_sized(p, u, 0);
	return u;
}

/* Fills alt.small and checks what the fast paths rely on: every size up to
 * ALT_SMALL, where the size query must agree with the allocator's pure size
 * computation (NALLOC: jemalloc's and tcmalloc's nallocx, mimalloc's
 * mi_good_size), and free on each block as the fast path frees it, which on
 * jemalloc must release what the size query said.  1 when all holds. */
static int alt_selftest(size_t (*nalloc)(size_t, int))
{
	for (size_t n = 0; n <= ALT_SMALL; n++) {
		void *p = real.malloc(n);
		if (!p)
			return 0;
		size_t u = alt.usable(p, p), k = (n + 7) / 8;
		if (u < n || u > UINT16_MAX || u != nalloc(n ? n : 1, 0)) {
			real.free(p);
			return 0;
		}
		/* The first size of each group of eight sets the entry; the
		 * others must agree (n = 0 has an entry of its own). */
		int first = n == 0 || (n & 7) == 1;
		if (first)
			alt.small[k] = (uint16_t)u;
		if (alt_release(p, u) != u || (!first && alt.small[k] != u))
			return 0;
	}
	/* A block past the table, and one the allocator maps for itself. */
	static const size_t big[] = {ALT_SMALL + 1, 70000, 5 << 20};
	for (size_t i = 0; i < sizeof(big) / sizeof(big[0]); i++) {
		void *p = real.malloc(big[i]);
		if (!p)
			return 0;
		size_t u = alt.usable(p, p);
		if (alt_release(p, u) != u || u < big[i])
			return 0;
	}
	return 1;
}

/* The slow paths' usable size on an allocator other than glibc: the fast
 * paths' size query once the self-test has passed (tcmalloc's
 * malloc_usable_size answers 0 before its module initializer has run),
 * else its malloc_usable_size. */
static inline size_t other_usable(void *p)
{
	return alt.usable ? alt.usable(p, p) : real.usable(p);
}

/* free's fast path on these allocators (free_alt_je, free_alt_query, with
 * the wrappers below), chosen by alt_check. */
static void free_alt_none(struct mt_thread *t, void *p);
static void free_alt_je(struct mt_thread *t, void *p);
static void free_alt_query(struct mt_thread *t, void *p);
static void (*free_alt)(struct mt_thread *t, void *p) = free_alt_none;

/* Which allocator provides malloc, by what its object defines (a renamed
 * library, or one linked into the program, is still recognised), and
 * whether its fast paths check out.  Called guarded, from mt_usable_check:
 * the first calls of the size queries may allocate (tcmalloc's). */
static void alt_check(void)
{
	struct text_find f = {(uintptr_t)real.malloc, 0, 0};
	if (!real.malloc || !real.usable || !dl_iterate_phdr(text_find_cb, &f))
		return;
	alt.text_lo = f.lo;
	alt.text_hi = f.hi;
	alt.free_sized = (void (*)(void *, size_t, int))(void *)real.free;
	void *usable = NULL, *sd, *na;
	if (alt_sym("sallocx") && (na = alt_sym("nallocx")) && (sd = alt_sym("mallctl"))) {
		alt.kind = ALT_JEMALLOC;
		usable = alt_sym("malloc_usable_size");
		alt.mallctl = (int (*)(const char *, void *, size_t *, void *, size_t))sd;
	} else if (alt_sym("tc_malloc_size") && (na = alt_sym("tc_nallocx")) && (sd = alt_sym("tc_free_sized"))) {
		alt.kind = ALT_TCMALLOC;
		/* tc_malloc_size asks MallocExtension::instance(), which is
		 * the base class (answering 0) until tcmalloc's module
		 * initializer has run -- after our first malloc, often -- and
		 * for ever under valgrind; the implementation's own method is
		 * also one call instead of three. */
		usable = alt_sym("_ZN22TCMallocImplementation16GetAllocatedSizeEPKv");
		alt.free_sized = (void (*)(void *, size_t, int))sd;
	} else if ((usable = alt_sym("mi_usable_size")) && (na = alt_sym("mi_good_size")) && alt_sym("mi_free")) {
		alt.kind = ALT_MIMALLOC;
	} else {
		alt.kind = ALT_NONE;
	}
	alt.usable = (size_t (*)(const void *, const void *))usable;
	if (alt.kind == ALT_NONE || !alt.usable || !alt_selftest((size_t (*)(size_t, int))na)) {
		/* The slow paths only; the mmap family still leaves out a
		 * known allocator's own calls. */
		if (alt.kind == ALT_NONE)
			alt.text_lo = alt.text_hi = 0;
		alt.mallctl = NULL;
		alt.usable = NULL;
		return;
	}
	free_alt = alt.mallctl ? free_alt_je : free_alt_query;
	mt_g.alt_fast = 1;
}

const char *mt_fast_paths(void)
{
	if (!mt_g.lzcnt)
		return "none";
	if (mt_g.usable_fast)
		return "glibc";
	return mt_g.alt_fast ? alt_names[alt.kind] : "none";
}

/* The allocator's usable size of P, asked with the recursion guard set:
 * tcmalloc's malloc_usable_size calls operator new on first use.  (The
 * hottest paths, malloc and free, ask inside their own guarded window.) */
static inline size_t usable_size(void *p)
{
	if (likely(glibc_layout))
		return glibc_usable(p);
	mt_tls_busy = 1;
	size_t u = other_usable(p);
	mt_tls_busy = 0;
	return u;
}

/* Counts an allocation call: P's usable size joins the in-use total. */
static inline void count_alloc(struct mt_thread *t, int fn, uint64_t size, void *p, const char *cfa)
{
	if (likely(p))
		mt_on_alloc(t, fn, size, usable_size(p), p, cfa);
	else
		mt_count(t, fn, size, 1);
}

static inline uint64_t mul_sat(size_t a, size_t b)
{
	size_t r;
	return __builtin_mul_overflow(a, b, &r) ? UINT64_MAX : r;
}

/* ---- the C allocation functions ---- */

static __attribute__((noinline)) void *malloc_slow(size_t n);

/* The hottest code we own.  The fast path needs a thread with its own block
 * (the thread-local pointer is never the shared orphan block), no call of
 * ours under way, and the gate open (mt_g.fast: counting on, glibc's chunk
 * headers readable).  Sampling (--stacks, --dump-every) is the event_left
 * countdown: without either it starts at INT64_MAX and never runs out. */
MT_EXPORT MT_FAST_TARGET void *malloc(size_t n)
{
	struct mt_thread *t = mt_tls_thread;
	if (likely(t != NULL) && likely(!mt_tls_busy)) {
		if (likely(__atomic_load_n(&mt_g.fast, __ATOMIC_RELAXED))) {
			/* No recursion guard: the gate is open only on glibc, whose
			 * malloc and free never call back through the PLT. */
			void *p = real.malloc(n);
			if (likely(p != NULL))
				mt_alloc_own(t, MT_FN_MALLOC, n, fast_bucket(n), glibc_usable(p), p, MT_CFA);
			else
				mt_count(t, MT_FN_MALLOC, n, 1);
			return p;
		}
		/* jemalloc, tcmalloc, mimalloc: tested only when glibc's gate is
		 * shut, so glibc's path is what it was.  No guard either (see
		 * "other allocators"). */
		if (__atomic_load_n(&mt_g.fast_alt, __ATOMIC_RELAXED)) {
			void *p = real.malloc(n);
			if (likely(p != NULL)) {
				size_t u = likely(n <= ALT_SMALL) ? alt.small[(n + 7) / 8] : alt.usable(p, p);
				mt_alloc_own(t, MT_FN_MALLOC, n, fast_bucket(n), u, p, MT_CFA);
			} else {
				mt_count(t, MT_FN_MALLOC, n, 1);
			}
			return p;
		}
	}
	return malloc_slow(n);
}

static void *malloc_slow(size_t n)
{
	struct mt_thread *t = mt_enter();
	if (unlikely(!t))
		return real.malloc ? real.malloc(n) : boot_alloc(n, 16);
	mt_tls_busy = 1;
	void *p = real.malloc(n);
	size_t u = likely(p) ? USABLE(p) : 0;
	mt_tls_busy = 0;
	if (likely(p))
		mt_on_alloc(t, MT_FN_MALLOC, n, u, p, MT_CFA);
	else
		mt_count(t, MT_FN_MALLOC, n, 1);
	return p;
}

static __attribute__((noinline)) void free_slow(void *p);

/* free counts first and then tail-calls glibc's free: no frame, nothing to
 * keep across the call.  (The block's size is read before it is freed.)
 * With sampled call sites (MT_FAST_FILTER) a block whose filter slot is
 * empty was never sampled and needs no live-table lookup. */
MT_EXPORT MT_FAST_TARGET void free(void *p)
{
	struct mt_thread *t = mt_tls_thread;
	int gate = __atomic_load_n(&mt_g.fast, __ATOMIC_RELAXED);
	if (likely(t != NULL) && likely(!mt_tls_busy)) {
		if (likely(gate == MT_FAST_PLAIN || (gate == MT_FAST_FILTER && !mt_live_maybe(p))) &&
		    likely(p != NULL) && likely(!is_boot(p))) {
			size_t u = glibc_usable(p);
			mt_count_bucket(t, MT_FN_FREE, u, fast_bucket(u));
			mt_inuse_down(t, (int64_t)u);
			real.free(p); /* glibc: no recursion guard needed (see malloc) */
			return;
		}
		/* jemalloc, tcmalloc, mimalloc: glibc's gate is shut.  The
		 * same test on their gate, then the path out of line, so that
		 * free keeps the frame glibc's path needs. */
		if (gate == MT_FAST_OFF) {
			int alt_gate = __atomic_load_n(&mt_g.fast_alt, __ATOMIC_RELAXED);
			if ((alt_gate == MT_FAST_PLAIN || (alt_gate == MT_FAST_FILTER && !mt_live_maybe(p))) &&
			    likely(p != NULL) && likely(!is_boot(p))) {
				free_alt(t, p);
				return;
			}
		}
	}
	free_slow(p);
}

/* free on tcmalloc and mimalloc, once free has checked the gate and P:
 * glibc's fast path with the allocator's size query, then tcmalloc's sized
 * free (see "other allocators"). */
static __attribute__((noinline)) MT_FAST_TARGET void free_alt_query(struct mt_thread *t, void *p)
{
	size_t u = alt.usable(p, p);
	mt_count_bucket(t, MT_FN_FREE, u, fast_bucket(u));
	mt_inuse_down(t, (int64_t)u);
	alt.free_sized(p, u, 0);
}

/* free on jemalloc: free, then what it released, from the thread's
 * deallocated counter.  The thread's block and counter are read again after
 * the call, from thread-local storage: one load each, where keeping them
 * would cost a register save and restore each. */
static __attribute__((noinline)) MT_FAST_TARGET void free_alt_je(struct mt_thread *t, void *p)
{
	uint64_t *d = je_freed;
	if (unlikely(d == NULL) && !(d = je_freed_get())) {
		free_alt_query(t, p); /* no counter for this thread: the size query */
		return;
	}
	uint64_t before = __atomic_load_n(d, __ATOMIC_RELAXED);
	real.free(p);
	d = __atomic_load_n(&je_freed, __ATOMIC_RELAXED);
	t = __atomic_load_n(&mt_tls_thread, __ATOMIC_RELAXED);
	size_t u = (size_t)(__atomic_load_n(d, __ATOMIC_RELAXED) - before);
	mt_count_bucket(t, MT_FN_FREE, u, fast_bucket(u));
	mt_inuse_down(t, (int64_t)u);
}

static void free_alt_none(struct mt_thread *t, void *p)
{
	(void)t;
	free_slow(p);
}

static void free_slow(void *p)
{
	if (unlikely(is_boot(p)))
		return;
	struct mt_thread *t = mt_enter();
	if (unlikely(!t)) {
		if (!mt_tls_busy)
			(void)mt_before_free(p); /* counting is off; the live table stays true */
		if (real.free)
			real.free(p);
		return;
	}
	mt_tls_busy = 1;
	size_t u = p ? USABLE(p) : 0;
	int known = mt_before_free(p);
	real.free(p);
	mt_tls_busy = 0;
	mt_on_free(t, MT_FN_FREE, u, known);
}

MT_EXPORT void *calloc(size_t n, size_t m)
{
	struct mt_thread *t = mt_enter();
	if (unlikely(!t)) {
		if (real.calloc)
			return real.calloc(n, m);
		uint64_t sz = mul_sat(n, m);
		return sz == UINT64_MAX ? NULL : boot_alloc(sz, 16); /* static: already zero */
	}
	mt_tls_busy = 1;
	void *p = real.calloc(n, m);
	mt_tls_busy = 0;
	count_alloc(t, MT_FN_CALLOC, mul_sat(n, m), p, MT_CFA);
	return p;
}

/* realloc and reallocarray share this: OLD's usable size must be read before
 * the call, since OLD is gone afterwards. */
static void *realloc_common(int fn, void *old, size_t n, size_t m)
{
	uint64_t size = fn == MT_FN_REALLOC ? n : mul_sat(n, m);
	if (unlikely(is_boot(old))) {
		if (size == UINT64_MAX) {
			errno = ENOMEM;
			return NULL;
		}
		void *p = malloc(size);
		if (p)
			memcpy(p, old, boot_size(old) < size ? boot_size(old) : size);
		return p;
	}
	struct mt_thread *t = mt_enter();
	if (unlikely(!t))
		return fn == MT_FN_REALLOC ? real.realloc(old, n) : real.reallocarray(old, n, m);
	size_t oldsz = old ? usable_size(old) : 0;
	/* The old block leaves the live table before it can be reused; a failed
	 * realloc leaves it allocated but no longer sampled (rare, harmless). */
	if (!mt_before_free(old))
		oldsz = 0; /* allocated before tracking: not in the totals */
	mt_tls_busy = 1;
	void *p = fn == MT_FN_REALLOC ? real.realloc(old, n) : real.reallocarray(old, n, m);
	mt_tls_busy = 0;
	/* One call, counted once: the old block's release rides along as a
	 * free of no call (glibc's realloc(p, 0) frees p and returns NULL,
	 * which is not a failure). */
	if (p) {
		if (old)
			mt_release(t, oldsz);
		mt_on_alloc(t, fn, size, usable_size(p), p, MT_CFA);
	} else {
		mt_count(t, fn, size, size != 0);
		if (old && size == 0)
			mt_release(t, oldsz);
	}
	return p;
}

MT_EXPORT void *realloc(void *old, size_t n)
{
	return realloc_common(MT_FN_REALLOC, old, n, 1);
}

MT_EXPORT void *reallocarray(void *old, size_t n, size_t m)
{
	return realloc_common(MT_FN_REALLOCARRAY, old, n, m);
}

MT_EXPORT int posix_memalign(void **out, size_t align, size_t n)
{
	struct mt_thread *t = mt_enter();
	if (unlikely(!t)) {
		if (real.posix_memalign)
			return real.posix_memalign(out, align, n);
		*out = boot_alloc(n, align);
		return *out ? 0 : ENOMEM;
	}
	mt_tls_busy = 1;
	int r = real.posix_memalign(out, align, n);
	mt_tls_busy = 0;
	count_alloc(t, MT_FN_POSIX_MEMALIGN, n, r == 0 ? *out : NULL, MT_CFA);
	return r;
}

/* aligned_alloc, memalign, valloc, pvalloc: (align, size) -> pointer. */
static void *aligned_common(int fn, size_t align, size_t n)
{
	struct mt_thread *t = mt_enter();
	void *p;
	if (unlikely(!t)) {
		switch (fn) {
		case MT_FN_ALIGNED_ALLOC: return real.aligned_alloc ? real.aligned_alloc(align, n) : boot_alloc(n, align);
		case MT_FN_MEMALIGN: return real.memalign ? real.memalign(align, n) : boot_alloc(n, align);
		case MT_FN_VALLOC: return real.valloc ? real.valloc(n) : boot_alloc(n, 4096);
		default: return real.pvalloc ? real.pvalloc(n) : boot_alloc(n, 4096);
		}
	}
	mt_tls_busy = 1;
	switch (fn) {
	case MT_FN_ALIGNED_ALLOC: p = real.aligned_alloc(align, n); break;
	case MT_FN_MEMALIGN: p = real.memalign(align, n); break;
	case MT_FN_VALLOC: p = real.valloc(n); break;
	default: p = real.pvalloc(n); break;
	}
	mt_tls_busy = 0;
	count_alloc(t, fn, n, p, MT_CFA);
	return p;
}

MT_EXPORT void *aligned_alloc(size_t align, size_t n) { return aligned_common(MT_FN_ALIGNED_ALLOC, align, n); }
MT_EXPORT void *memalign(size_t align, size_t n) { return aligned_common(MT_FN_MEMALIGN, align, n); }
MT_EXPORT void *valloc(size_t n) { return aligned_common(MT_FN_VALLOC, 4096, n); }
MT_EXPORT void *pvalloc(size_t n) { return aligned_common(MT_FN_PVALLOC, 4096, n); }

/* ---- C++ operators ---- */

/* The throwing operator new may leave by an exception (std::bad_alloc): the
 * agent is built with -fexceptions so this cleanup runs during unwinding,
 * clears the recursion guard and counts the failure. */
struct new_call {
	struct mt_thread *t;
	int fn;
	size_t size;
	void *p;
	const char *cfa;
};

static void new_call_end(struct new_call *c)
{
	mt_tls_busy = 0;
	count_alloc(c->t, c->fn, c->size, c->p, c->cfa);
}

/* Without libstdc++ to forward to (a RTLD_LOCAL plugin's), fall back to the
 * C allocator, which is what libstdc++'s operators call. */
static void *new_fallback(int fn, size_t n, size_t align)
{
	int aligned = fn == MT_FN_NEW_ALIGN || fn == MT_FN_NEW_ALIGN_NOTHROW ||
		      fn == MT_FN_NEWA_ALIGN || fn == MT_FN_NEWA_ALIGN_NOTHROW;
	return aligned ? real.aligned_alloc(align, (n + align - 1) & ~(align - 1)) : real.malloc(n ? n : 1);
}

static inline void *call_new(int fn, size_t n, size_t align, const void *nt)
{
	void *f = cxx_real(fn);
	if (unlikely(!f))
		return new_fallback(fn, n, align);
	switch (fn) {
	case MT_FN_NEW: case MT_FN_NEWA: return ((new_fn)f)(n);
	case MT_FN_NEW_NOTHROW: case MT_FN_NEWA_NOTHROW: return ((new_nt_fn)f)(n, nt);
	case MT_FN_NEW_ALIGN: case MT_FN_NEWA_ALIGN: return ((new_al_fn)f)(n, align);
	default: return ((new_al_nt_fn)f)(n, align, nt);
	}
}

static void *op_new(int fn, size_t n, size_t align, const void *nt)
{
	struct mt_thread *t = mt_enter();
	if (unlikely(!t))
		return call_new(fn, n, align, nt);
	struct new_call c __attribute__((cleanup(new_call_end))) = {t, fn, n, NULL, MT_CFA};
	mt_tls_busy = 1;
	c.p = call_new(fn, n, align, nt);
	return c.p;
}

typedef void (*del_fn)(void *);
typedef void (*del_2_fn)(void *, size_t); /* sized, or aligned (align_val_t is a size_t) */
typedef void (*del_3_fn)(void *, size_t, size_t);

static void op_delete(int fn, void *p, size_t a, size_t b, int nargs)
{
	struct mt_thread *t = mt_enter();
	size_t u = 0;
	int known = 1;
	if (likely(t)) {
		u = p ? usable_size(p) : 0;
		known = mt_before_free(p);
		mt_tls_busy = 1;
	}
	void *f = cxx_real(fn);
	if (unlikely(!f))
		real.free(p);
	else if (nargs == 1)
		((del_fn)f)(p);
	else if (nargs == 2)
		((del_2_fn)f)(p, a);
	else
		((del_3_fn)f)(p, a, b);
	if (likely(t)) {
		mt_tls_busy = 0;
		mt_on_free(t, fn, u, known);
	}
}

/* Signatures: align_val_t is an enum class over size_t, nothrow_t is passed
 * by reference; both are ABI-compatible with the C types used here. */
MT_EXPORT void *_Znwm(size_t n) { return op_new(MT_FN_NEW, n, 0, NULL); }
MT_EXPORT void *_ZnwmRKSt9nothrow_t(size_t n, const void *nt) { return op_new(MT_FN_NEW_NOTHROW, n, 0, nt); }
MT_EXPORT void *_ZnwmSt11align_val_t(size_t n, size_t al) { return op_new(MT_FN_NEW_ALIGN, n, al, NULL); }
MT_EXPORT void *_ZnwmSt11align_val_tRKSt9nothrow_t(size_t n, size_t al, const void *nt) { return op_new(MT_FN_NEW_ALIGN_NOTHROW, n, al, nt); }
MT_EXPORT void *_Znam(size_t n) { return op_new(MT_FN_NEWA, n, 0, NULL); }
MT_EXPORT void *_ZnamRKSt9nothrow_t(size_t n, const void *nt) { return op_new(MT_FN_NEWA_NOTHROW, n, 0, nt); }
MT_EXPORT void *_ZnamSt11align_val_t(size_t n, size_t al) { return op_new(MT_FN_NEWA_ALIGN, n, al, NULL); }
MT_EXPORT void *_ZnamSt11align_val_tRKSt9nothrow_t(size_t n, size_t al, const void *nt) { return op_new(MT_FN_NEWA_ALIGN_NOTHROW, n, al, nt); }

MT_EXPORT void _ZdlPv(void *p) { op_delete(MT_FN_DELETE, p, 0, 0, 1); }
MT_EXPORT void _ZdlPvm(void *p, size_t n) { op_delete(MT_FN_DELETE_SIZED, p, n, 0, 2); }
MT_EXPORT void _ZdlPvSt11align_val_t(void *p, size_t al) { op_delete(MT_FN_DELETE_ALIGN, p, al, 0, 2); }
MT_EXPORT void _ZdlPvmSt11align_val_t(void *p, size_t n, size_t al) { op_delete(MT_FN_DELETE_SIZED_ALIGN, p, n, al, 3); }
MT_EXPORT void _ZdlPvRKSt9nothrow_t(void *p, const void *nt) { op_delete(MT_FN_DELETE_NOTHROW, p, (size_t)nt, 0, 2); }
MT_EXPORT void _ZdlPvSt11align_val_tRKSt9nothrow_t(void *p, size_t al, const void *nt) { op_delete(MT_FN_DELETE_ALIGN_NOTHROW, p, al, (size_t)nt, 3); }
MT_EXPORT void _ZdaPv(void *p) { op_delete(MT_FN_DELETEA, p, 0, 0, 1); }
MT_EXPORT void _ZdaPvm(void *p, size_t n) { op_delete(MT_FN_DELETEA_SIZED, p, n, 0, 2); }
MT_EXPORT void _ZdaPvSt11align_val_t(void *p, size_t al) { op_delete(MT_FN_DELETEA_ALIGN, p, al, 0, 2); }
MT_EXPORT void _ZdaPvmSt11align_val_t(void *p, size_t n, size_t al) { op_delete(MT_FN_DELETEA_SIZED_ALIGN, p, n, al, 3); }
MT_EXPORT void _ZdaPvRKSt9nothrow_t(void *p, const void *nt) { op_delete(MT_FN_DELETEA_NOTHROW, p, (size_t)nt, 0, 2); }
MT_EXPORT void _ZdaPvSt11align_val_tRKSt9nothrow_t(void *p, size_t al, const void *nt) { op_delete(MT_FN_DELETEA_ALIGN_NOTHROW, p, al, (size_t)nt, 3); }

/* ---- address-space functions (calls made through the PLT) ---- */

/* The allocator's own calls (jemalloc's, tcmalloc's, mimalloc's page
 * allocators: glibc's malloc maps memory without the PLT) are not counted:
 * see "other allocators". */
#define OWN_CALL() alt_own_call(__builtin_return_address(0))

MT_EXPORT void *mmap(void *addr, size_t len, int prot, int flags, int fd, off_t off)
{
	struct mt_thread *t = OWN_CALL() ? NULL : mt_enter();
	if (unlikely(!real.mmap)) {
		long r = syscall(SYS_mmap, addr, len, prot, flags, fd, off);
		if (r < 0 && r > -4096) {
			errno = (int)-r;
			return MAP_FAILED;
		}
		return (void *)r;
	}
	void *p = real.mmap(addr, len, prot, flags, fd, off);
	if (likely(t))
		mt_count(t, MT_FN_MMAP, len, p == MAP_FAILED);
	return p;
}

MT_EXPORT void *mmap64(void *addr, size_t len, int prot, int flags, int fd, off_t off)
	__attribute__((alias("mmap")));

MT_EXPORT int munmap(void *addr, size_t len)
{
	struct mt_thread *t = OWN_CALL() ? NULL : mt_enter();
	int r = real.munmap ? real.munmap(addr, len) : (int)syscall(SYS_munmap, addr, len);
	if (likely(t))
		mt_count(t, MT_FN_MUNMAP, len, r != 0);
	return r;
}

MT_EXPORT void *mremap(void *old, size_t oldlen, size_t newlen, int flags, ...)
{
	void *newaddr = NULL;
	if (flags & MREMAP_FIXED) {
		va_list ap;
		va_start(ap, flags);
		newaddr = va_arg(ap, void *);
		va_end(ap);
	}
	struct mt_thread *t = OWN_CALL() ? NULL : mt_enter();
	void *p = real.mremap(old, oldlen, newlen, flags, newaddr);
	if (likely(t))
		mt_count(t, MT_FN_MREMAP, newlen, p == MAP_FAILED);
	return p;
}

MT_EXPORT int brk(void *addr)
{
	struct mt_thread *t = OWN_CALL() ? NULL : mt_enter();
	void *before = t && real.sbrk ? real.sbrk(0) : NULL;
	int r = real.brk(addr);
	if (likely(t)) {
		intptr_t grow = (intptr_t)addr - (intptr_t)before;
		mt_count(t, MT_FN_BRK, before && grow > 0 ? (uint64_t)grow : 0, r != 0);
	}
	return r;
}

MT_EXPORT void *sbrk(intptr_t incr)
{
	struct mt_thread *t = OWN_CALL() ? NULL : mt_enter();
	void *p = real.sbrk(incr);
	if (likely(t))
		mt_count(t, MT_FN_SBRK, incr > 0 ? (uint64_t)incr : 0, p == (void *)-1);
	return p;
}

/* ---- user changes ----
 * A server that starts as root and switches users (Apache's children) would
 * strand its control socket in root's 0700 directory, where the new user can
 * neither reach nor remove it: move the socket across the change. */

typedef int (*setid1_fn)(uid_t);
typedef int (*setid2_fn)(uid_t, uid_t);
typedef int (*setid3_fn)(uid_t, uid_t, uid_t);

static void *real_sym(void **slot, const char *name)
{
	void *f = __atomic_load_n(slot, __ATOMIC_RELAXED);
	if (!f) {
		int busy = mt_tls_busy;
		mt_tls_busy = 1;
		f = real_lookup(mt_g.attached_mode ? RTLD_DEFAULT : RTLD_NEXT, name);
		mt_tls_busy = busy;
		__atomic_store_n(slot, f, __ATOMIC_RELAXED);
	}
	return f;
}

#define UID_WRAPPER(name, type, params, args)                                          \
	MT_EXPORT int name params                                                      \
	{                                                                              \
		static void *fn;                                                       \
		type f = (type)real_sym(&fn, #name);                                   \
		if (!f) {                                                              \
			errno = ENOSYS;                                                \
			return -1;                                                     \
		}                                                                      \
		mt_control_uid_change(0);                                              \
		int ret_ = f args;                                                     \
		int saved_ = errno;                                                    \
		mt_control_uid_change(1);                                              \
		errno = saved_;                                                        \
		return ret_;                                                           \
	}

UID_WRAPPER(setuid, setid1_fn, (uid_t u), (u))
UID_WRAPPER(seteuid, setid1_fn, (uid_t u), (u))
UID_WRAPPER(setreuid, setid2_fn, (uid_t r, uid_t e), (r, e))
UID_WRAPPER(setresuid, setid3_fn, (uid_t r, uid_t e, uid_t s), (r, e, s))

/* ---- the end of the process ----
 * How a process ends goes into the live file: _exit and _Exit run no exit
 * handlers (a prefork worker's usual end, which the destructor would never
 * see), exit() gives its status. */

typedef void (*exit_fn)(int);

static __attribute__((noreturn)) void exit_group_now(int status)
{
	for (;;)
		syscall(SYS_exit_group, status);
}

MT_EXPORT void exit(int status)
{
	static void *fn;
	exit_fn f = (exit_fn)real_sym(&fn, "exit");
	mt_note_exit(status);
	if (f)
		f(status);
	exit_group_now(status);
}

MT_EXPORT void _exit(int status)
{
	static void *fn;
	exit_fn f = (exit_fn)real_sym(&fn, "_exit");
	mt_note__exit(status);
	if (f)
		f(status);
	exit_group_now(status);
}

MT_EXPORT void _Exit(int status) __attribute__((alias("_exit")));

/* Every interposed function, for GOT hooks when the agent was loaded into a
 * running process and symbol interposition is not available. */
int mt_hook_wrappers(void)
{
	static const struct {
		const char *name;
		void *fn;
	} table[] = {
#define MT_FN(id, sym, name, kind, size, fail, ret) {#sym, (void *)sym},
#define MT_HOOK(sym) {#sym, (void *)sym},
#include "memtap/funcs.def"
#undef MT_FN
#undef MT_HOOK
	};
	for (size_t i = 0; i < sizeof(table) / sizeof(table[0]); i++)
		if (mt_got_add(table[i].name, table[i].fn) < 0)
			return -ENOSPC;
	return 0;
}
