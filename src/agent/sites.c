/*
 * Call sites (--stacks): sampling by bytes, stack capture, the interned site
 * table, the live table of sampled allocations, and the sites at the peak.
 *
 * Sampling works as jemalloc's and tcmalloc's: each thread counts down the
 * bytes until its next sample (struct mt_thread.sample_left, decremented on
 * every allocation by the wrappers); when it goes negative the allocation is
 * sampled and a new distance is drawn from an exponential distribution with
 * mean mt_g.sample_period.  A period of 1 samples every allocation.
 *
 * Stacks come from libunwind (unw_backtrace, its fast path with a per-thread
 * cache of frame descriptions; its cursor API where the stack cache needs to
 * know where each return address was), dlopen'd with RTLD_LOCAL only when
 * stacks are asked for:
 * linked in, its `backtrace` and `_Unwind_Backtrace` would interpose the
 * program's.  A stack cache in front of it makes a repeated stack cost a
 * hash lookup and one load per frame instead of an unwind: see "the stack
 * cache" below.
 *
 * Sites are interned in a lock-free hash table (append-only chains); their
 * counters are updated with relaxed atomics.  Sampled live allocations sit in
 * a chained hash table with striped spinlocks, fronted by a counting filter
 * that answers "certainly not sampled" for most frees without a lock.
 */
#include <dlfcn.h>
#include <link.h>
#include <errno.h>
#include <math.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>

#define UNW_LOCAL_ONLY
#include <libunwind.h>

#include "agent.h"

#define SITE_BUCKETS (1u << 16)
#define CACHE_BUCKETS (1u << 14) /* the stack cache's */
/* 2 MiB of bucket heads: with 8 MiB (2^20) every insert and lookup of
 * --sample=1 missed the TLB (churn: 3.2x untraced, 2.5x with 2^18); a
 * million live allocations make chains of four. */
#define LIVE_BUCKETS (1u << 18)
#define LIVE_STRIPES 1024u
#define FILTER_SLOTS (LIVE_BUCKETS >> 2)

struct mt_live {
	struct mt_live *next;
	uintptr_t ptr;
	struct mt_sitex *site;
	uint64_t size;
};

static struct mt_sitex **site_buckets;
static struct mt_sitex *all_sites; /* newest first, through ->all (the header mirrors it) */
static struct mt_stackc **stack_cache;
static int stack_cache_on;
static struct mt_live **live_buckets;
static uint8_t *live_filter; /* per slot: sampled allocations, saturating at 255 */
uint64_t *mt_live_bits;       /* per slot: live_filter[slot] != 0 (agent.h) */
static struct {
	int lock;
	struct mt_live *free;
} __attribute__((aligned(64))) stripes[LIVE_STRIPES];

static int (*unw_bt)(void **, int); /* unw_backtrace: the fast path, no offsets */
static int (*unw_getctx)(unw_context_t *);
static int (*unw_init)(unw_cursor_t *, unw_context_t *);
static int (*unw_stp)(unw_cursor_t *);
static int (*unw_reg)(unw_cursor_t *, unw_regnum_t, unw_word_t *);
static uintptr_t self_start, self_end; /* the agent's own text: frames to skip */

/* ---- set-up ---- */

static int load_unwinder(void)
{
	void *h = dlopen("libunwind.so.8", RTLD_NOW | RTLD_LOCAL);
	if (!h) {
		mt_log("--stacks needs libunwind (Debian package libunwind8): %s", dlerror());
		return -ENOENT;
	}
	unw_getctx = (int (*)(unw_context_t *))dlsym(h, "_Ux86_64_getcontext");
	unw_init = (int (*)(unw_cursor_t *, unw_context_t *))dlsym(h, "_ULx86_64_init_local");
	unw_stp = (int (*)(unw_cursor_t *))dlsym(h, "_ULx86_64_step");
	unw_reg = (int (*)(unw_cursor_t *, unw_regnum_t, unw_word_t *))dlsym(h, "_ULx86_64_get_reg");
	unw_bt = (int (*)(void **, int))dlsym(h, "unw_backtrace");
	int (*policy)(unw_addr_space_t, unw_caching_policy_t) =
		(int (*)(unw_addr_space_t, unw_caching_policy_t))dlsym(h, "_ULx86_64_set_caching_policy");
	unw_addr_space_t *as = dlsym(h, "_ULx86_64_local_addr_space");
	if (!unw_getctx || !unw_init || !unw_stp || !unw_reg) {
		mt_log("--stacks: libunwind.so.8 lacks the local cursor API");
		return -ENOENT;
	}
	if (policy && as)
		policy(*as, UNW_CACHE_PER_THREAD);
	return 0;
}

/* The executable segment that holds this function is the agent's text. */
static int self_cb(struct dl_phdr_info *info, size_t size, void *arg)
{
	(void)size;
	uintptr_t me = (uintptr_t)arg;
	for (int i = 0; i < info->dlpi_phnum; i++) {
		const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
		uintptr_t lo = info->dlpi_addr + ph->p_vaddr, hi = lo + ph->p_memsz;
		if (ph->p_type == PT_LOAD && (ph->p_flags & PF_X) && me >= lo && me < hi) {
			self_start = lo;
			self_end = hi;
			return 1;
		}
	}
	return 0;
}

static void find_self(void)
{
	dl_iterate_phdr(self_cb, (void *)(uintptr_t)find_self);
}

/* Once per process: a later `ctl attach` with stacks finds the tables made
 * (threads of the session before may still be reading them). */
int mt_sites_init(void)
{
	if (__atomic_load_n(&site_buckets, __ATOMIC_ACQUIRE))
		return 0;
	if (!(unw_getctx && unw_init && unw_stp && unw_reg) && load_unwinder())
		return -ENOENT;
	find_self();
	if (!live_buckets)
		live_buckets = mt_arena_alloc(LIVE_BUCKETS * sizeof(*live_buckets));
	if (!live_filter)
		live_filter = mt_arena_alloc(FILTER_SLOTS);
	if (!mt_live_bits)
		mt_live_bits = mt_arena_alloc(FILTER_SLOTS / 8);
	if (!stack_cache)
		stack_cache = mt_arena_alloc(CACHE_BUCKETS * sizeof(*stack_cache));
	/* MEMTAP_STACK_CACHE=0: unwind every sample (tests compare the two). */
	const char *sc = getenv("MEMTAP_STACK_CACHE");
	stack_cache_on = !(sc && *sc == '0');
	struct mt_sitex **sb = mt_arena_alloc(SITE_BUCKETS * sizeof(*sb));
	if (!sb || !stack_cache || !live_buckets || !live_filter || !mt_live_bits)
		return -ENOMEM;
	/* Published last: site_buckets set means every table is made. */
	__atomic_store_n(&site_buckets, sb, __ATOMIC_RELEASE);
	return 0;
}

/* ---- sampling ---- */

static uint64_t rng_next(struct mt_thread *t)
{
	/* xorshift64*: plenty for sampling distances. */
	uint64_t x = MT_LOAD(t->rng);
	if (!x)
		x = (uint64_t)(uintptr_t)t ^ mt_now_ns() ^ 0x9e3779b97f4a7c15ull;
	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	MT_STORE(t->rng, x);
	return x * 0x2545f4914f6cdd1dull;
}

int64_t mt_sample_interval(struct mt_thread *t)
{
	uint64_t period = MT_OPT(sample_period);
	if (!MT_OPT(stacks))
		return INT64_MAX;
	if (period <= 1)
		return -1; /* every allocation, malloc(0) included */
	/* u in (0, 1]: -log(u) * period is exponential with mean period. */
	double u = ((double)(rng_next(t) >> 11) + 1.0) / 9007199254740992.0;
	double d = -log(u) * (double)period;
	return d > 4e18 ? INT64_MAX : (int64_t)d;
}

/* ---- the site table ---- */

static uint64_t hash_frames(const uint64_t *f, uint32_t n, uint32_t fn)
{
	uint64_t h = 0xcbf29ce484222325ull ^ fn;
	for (uint32_t i = 0; i < n; i++) {
		h ^= f[i];
		h *= 0x100000001b3ull;
		h ^= h >> 29;
	}
	return h;
}

static struct mt_sitex *site_intern(const uint64_t *frames, uint32_t n, uint32_t fn)
{
	uint64_t h = hash_frames(frames, n, fn);
	struct mt_sitex **head = &site_buckets[h & (SITE_BUCKETS - 1)];
	struct mt_sitex *first = __atomic_load_n(head, __ATOMIC_ACQUIRE), *s;
	for (;;) {
		for (s = first; s && mt_in_arena(s, sizeof(*s)); s = s->next)
			if (s->hash == h && s->fn == fn && s->nframes == n &&
			    memcmp(s->frames, frames, n * sizeof(*frames)) == 0)
				return s;
		struct mt_sitex *x = mt_shared_alloc(sizeof(*x) + n * sizeof(*frames));
		if (!x)
			return NULL;
		x->hash = h;
		x->fn = fn;
		x->nframes = n;
		memcpy(x->frames, frames, n * sizeof(*frames));
		x->next = first;
		if (__atomic_compare_exchange_n(head, &first, x, 0, __ATOMIC_RELEASE, __ATOMIC_ACQUIRE)) {
			__atomic_fetch_add(&mt_sh->nsites, 1, __ATOMIC_RELAXED);
			x->all = __atomic_load_n(&all_sites, __ATOMIC_RELAXED);
			while (!__atomic_compare_exchange_n(&all_sites, &x->all, x, 1, __ATOMIC_RELEASE,
							    __ATOMIC_RELAXED))
				;
			/* The readers' copy of the head (the list itself is in the
			 * live file). */
			__atomic_store_n(&mt_sh->sites, (uint64_t)(uintptr_t)__atomic_load_n(&all_sites, __ATOMIC_ACQUIRE),
					 __ATOMIC_RELEASE);
			return x;
		}
		/* Lost a race: FIRST now holds the new head; look again (the arena
		 * block is not reclaimed, a rare and bounded waste). */
	}
}

/* Every site, through the list (not the 65536 buckets: the sites at the
 * peak are copied often). */
void mt_sites_foreach(void (*fn)(struct mt_sitex *, void *), void *arg)
{
	for (struct mt_sitex *s = __atomic_load_n(&all_sites, __ATOMIC_ACQUIRE); s && mt_in_arena(s, sizeof(*s));
	     s = s->all)
		fn(s, arg);
}

uint32_t mt_sites_count(void)
{
	return __atomic_load_n(&mt_sh->nsites, __ATOMIC_RELAXED);
}

/* ---- temporary allocations ----
 *
 * heaptrack's definition: an allocation freed with no other allocation in
 * between; here per thread (heaptrack orders every thread's events in one
 * trace), and among the sampled allocations (all of them with
 * --sample=1).  A thread remembers its last allocation when it was sampled
 * and its event countdown right after; the free of that pointer, on that
 * thread, with the countdown unchanged is a temporary one.  Every
 * allocation of a thread moves its countdown by its size (or, sampled,
 * replaces the pointer), so the only allocation that can slip in between
 * unseen is a malloc(0) left unsampled.  Nothing is added to the fast
 * paths: both ends of the check are on slow paths (a sample, the free of a
 * sampled block). */
static __thread uintptr_t tmp_ptr; /* complemented: the leak check, which scans every
				      thread's TLS, must not see it as a pointer */
static __thread int64_t tmp_left;
static __thread struct mt_sitex *tmp_site;

static void temp_check(uintptr_t p, struct mt_sitex *site, uint64_t size)
{
	struct mt_thread *t = mt_tls_thread;
	if (~p != tmp_ptr || site != tmp_site || !t || MT_LOAD(t->event_left) != tmp_left)
		return;
	tmp_ptr = 0;
	__atomic_fetch_add(&site->temp_objects, 1, __ATOMIC_RELAXED);
	__atomic_fetch_add(&site->temp_bytes, size, __ATOMIC_RELAXED);
}

/* ---- the live table ---- */

static inline uint32_t live_bucket(uintptr_t p)
{
	return mt_live_bucket(p);
}

static void stripe_lock(uint32_t s)
{
	while (__atomic_exchange_n(&stripes[s].lock, 1, __ATOMIC_ACQUIRE))
		while (__atomic_load_n(&stripes[s].lock, __ATOMIC_RELAXED))
			sched_yield();
}

static void stripe_unlock(uint32_t s)
{
	__atomic_store_n(&stripes[s].lock, 0, __ATOMIC_RELEASE);
}

static void live_insert(uintptr_t p, struct mt_sitex *site, uint64_t size)
{
	uint32_t b = live_bucket(p), slot = b >> 2, s = slot & (LIVE_STRIPES - 1);
	stripe_lock(s);
	struct mt_live *e = stripes[s].free;
	if (e) {
		stripes[s].free = e->next;
	} else if (!(e = mt_arena_alloc(sizeof(*e)))) {
		stripe_unlock(s);
		return;
	}
	e->ptr = p;
	e->site = site;
	e->size = size;
	e->next = live_buckets[b];
	live_buckets[b] = e;
	if (live_filter[slot] != 255)
		__atomic_store_n(&live_filter[slot], live_filter[slot] + 1, __ATOMIC_RELAXED);
	if (live_filter[slot] == 1)
		__atomic_fetch_or(&mt_live_bits[slot >> 6], 1ull << (slot & 63), __ATOMIC_RELAXED);
	stripe_unlock(s);
}

/* Removes P if it is a sampled live allocation, updating its site. */
int mt_live_forget(void *ptr)
{
	uintptr_t p = (uintptr_t)ptr;
	uint32_t b = live_bucket(p), slot = b >> 2, s = slot & (LIVE_STRIPES - 1);
	if (!mt_live_maybe(ptr)) {
		if (MT_OPT(sample_period) <= 1)
			__atomic_fetch_add(&mt_sh->unknown_frees, 1, __ATOMIC_RELAXED);
		return 0;
	}
	stripe_lock(s);
	struct mt_live **pp = &live_buckets[b], *e;
	struct mt_sitex *site = NULL;
	uint64_t size = 0;
	while ((e = *pp) && e->ptr != p)
		pp = &e->next;
	if (e) {
		*pp = e->next;
		if (live_filter[slot] != 255) {
			__atomic_store_n(&live_filter[slot], live_filter[slot] - 1, __ATOMIC_RELAXED);
			if (!live_filter[slot])
				__atomic_fetch_and(&mt_live_bits[slot >> 6], ~(1ull << (slot & 63)), __ATOMIC_RELAXED);
		}
		/* Read the entry before it goes on the free list: once the stripe
		 * is unlocked another thread may take it for a new allocation. */
		site = e->site;
		size = e->size;
		e->next = stripes[s].free;
		stripes[s].free = e;
	}
	stripe_unlock(s);
	if (site) {
		temp_check(p, site, size);
		__atomic_fetch_add(&site->freed_objects, 1, __ATOMIC_RELAXED);
		__atomic_fetch_add(&site->freed_bytes, size, __ATOMIC_RELAXED);
	} else if (MT_OPT(sample_period) <= 1) {
		/* Every allocation is recorded, so this one predates tracking. */
		__atomic_fetch_add(&mt_sh->unknown_frees, 1, __ATOMIC_RELAXED);
	}
	return site != NULL;
}

/* ---- the stack cache ----
 *
 * An unwind costs a few hundred nanoseconds; most samples repeat a stack
 * already seen.  The first unwind of a stack records, next to its frames,
 * where each return address was found: as an offset from the allocation
 * function's CFA (its caller's stack pointer at the call).  A later sample
 * whose first return address (read at CFA - 8) matches looks up those
 * entries and compares, frame by frame, the word at CFA + offset with the
 * recorded return address.  All equal: the same chain of call sites, so the
 * same stack, without unwinding.
 *
 * Why that is sound: frame 0 is the same function at the same call site, so
 * its frame has the same size and the next return address sits at the same
 * offset; equal there, frame 1 is the same function at the same call site,
 * and so on.  Every word compared lies in a frame the previous comparisons
 * proved present.  A frame whose size varies (alloca, a realigned stack) or
 * a stack switch (a signal handler's alternate stack) moves the words: the
 * comparison fails and the sample is unwound.  A stale word equal to the
 * recorded return address at exactly the recorded place is the one way to
 * be wrong, on such frames only.
 *
 * Entries are immutable once published (lock-free, append-only chains, as
 * the site table); a site gets at most CACHE_PER_SITE entries (one per frame
 * layout), so a stack that keeps missing does not grow the cache. */

#define CACHE_PER_SITE 4
#define CACHE_WALK 16

struct mt_stackc {
	struct mt_stackc *next;
	uint64_t ra0;
	uint32_t fn, nframes;
	struct mt_sitex *site;
	int32_t off[]; /* off[i]: frames[i] is at CFA + off[i] (off[0] = -8) */
};

static inline uint32_t cache_bucket(uint64_t ra0, uint32_t fn)
{
	return (uint32_t)(((ra0 ^ ((uint64_t)fn << 56)) * 0x9e3779b97f4a7c15ull) >> 50);
}

static struct mt_sitex *cache_lookup(int fn, const char *cfa)
{
	uint64_t ra0 = *(const uint64_t *)(cfa - 8);
	struct mt_stackc *c = __atomic_load_n(&stack_cache[cache_bucket(ra0, (uint32_t)fn)], __ATOMIC_ACQUIRE);
	for (int walk = 0; c && walk < CACHE_WALK; c = c->next, walk++) {
		if (c->ra0 != ra0 || c->fn != (uint32_t)fn)
			continue;
		const uint64_t *f = c->site->frames;
		uint32_t i = 1;
		while (i < c->nframes && *(const uint64_t *)(cfa + c->off[i]) == f[i])
			i++;
		if (i == c->nframes)
			return c->site;
	}
	return NULL;
}

static void cache_add(struct mt_sitex *s, int fn, const int64_t *off)
{
	uint32_t n = s->nframes;
	for (uint32_t i = 0; i < n; i++)
		if (off[i] < INT32_MIN || off[i] > INT32_MAX)
			return; /* frames on another stack: not cacheable */
	if (__atomic_fetch_add(&s->cached, 1, __ATOMIC_RELAXED) >= CACHE_PER_SITE)
		return;
	struct mt_stackc *c = mt_arena_alloc(sizeof(*c) + n * sizeof(c->off[0]));
	if (!c)
		return;
	c->ra0 = s->frames[0];
	c->fn = (uint32_t)fn;
	c->nframes = n;
	c->site = s;
	for (uint32_t i = 0; i < n; i++)
		c->off[i] = (int32_t)off[i];
	struct mt_stackc **head = &stack_cache[cache_bucket(c->ra0, c->fn)];
	c->next = __atomic_load_n(head, __ATOMIC_RELAXED);
	while (!__atomic_compare_exchange_n(head, &c->next, c, 1, __ATOMIC_RELEASE, __ATOMIC_RELAXED))
		;
}

/* Unwinds the calling thread's stack with libunwind's cursor: the frames
 * from the caller of the allocation function on (the agent's own frames
 * dropped), and where each return address was (offsets from CFA).  Returns
 * the site; *CACHEABLE says whether CFA was confirmed by the unwinder. */
static struct mt_sitex *site_unwound(int fn, const char *cfa, int64_t *off, int *cacheable)
{
	unw_context_t uc;
	unw_cursor_t cur;
	uint64_t frames[MT_STACK_MAX];
	uint32_t n = 0;
	*cacheable = 0;
	if (unw_getctx(&uc) || unw_init(&cur, &uc))
		return NULL;
	do {
		unw_word_t ip = 0, sp = 0;
		if (unw_reg(&cur, UNW_REG_IP, &ip) || !ip)
			break;
		if (n == 0 && ip >= self_start && ip < self_end)
			continue;
		unw_reg(&cur, UNW_REG_SP, &sp);
		if (n == 0)
			*cacheable = cfa && sp == (uintptr_t)cfa && ip == *(const uint64_t *)(cfa - 8);
		frames[n] = ip;
		off[n] = (int64_t)(sp - 8 - (uintptr_t)cfa);
		n++;
	} while (n < MT_STACK_MAX && unw_stp(&cur) > 0);
	return site_intern(frames, n, (uint32_t)fn);
}

/* The same frames through unw_backtrace: libunwind's fast path, with its
 * per-thread cache of frame descriptions, several times cheaper than the
 * cursor's steps (each of which looks the frame's unwind info up again), but
 * it cannot say where each return address was. */
static struct mt_sitex *site_traced(int fn)
{
	void *raw[MT_STACK_MAX + 8];
	int n = unw_bt(raw, MT_STACK_MAX + 8), skip = 0;
	while (skip < n && (uintptr_t)raw[skip] >= self_start && (uintptr_t)raw[skip] < self_end)
		skip++;
	uint64_t frames[MT_STACK_MAX];
	uint32_t nf = 0;
	for (int i = skip; i < n && nf < MT_STACK_MAX; i++)
		frames[nf++] = (uint64_t)(uintptr_t)raw[i];
	return site_intern(frames, nf, (uint32_t)fn);
}

/* A sample the stack cache did not answer.  The stack comes from
 * unw_backtrace; only while its site may still take cache entries is it
 * unwound again with the cursor for the offsets of a new entry.  A stack
 * that keeps missing (frames that vary in size, a recursion deeper than the
 * entries a site may have) then costs one fast trace, not a cursor walk. */
static struct mt_sitex *site_missed(int fn, const char *cfa)
{
	struct mt_sitex *s = unw_bt ? site_traced(fn) : NULL;
	if (unw_bt && (!s || !stack_cache_on || !cfa ||
		       __atomic_load_n(&s->cached, __ATOMIC_RELAXED) >= CACHE_PER_SITE))
		return s;
	int64_t off[MT_STACK_MAX];
	int cacheable;
	struct mt_sitex *u = site_unwound(fn, cfa, off, &cacheable);
	/* The two unwinders agree on the frames (the same site) before an
	 * entry is made; without unw_backtrace the cursor's stack is it. */
	if (u && cacheable && stack_cache_on && u->nframes > 0 && (!s || u == s))
		cache_add(u, fn, off);
	return s ? s : u;
}

/* ---- recording a sample ---- */

static struct mt_sitex *record_sample(int fn, uint64_t size, void *ptr, const char *cfa)
{
	int busy = mt_tls_busy;
	mt_tls_busy = 1;
	struct mt_sitex *s = cfa && stack_cache_on ? cache_lookup(fn, cfa) : NULL;
	if (!s)
		s = site_missed(fn, cfa);
	if (s) {
		__atomic_fetch_add(&s->alloc_objects, 1, __ATOMIC_RELAXED);
		__atomic_fetch_add(&s->alloc_bytes, size, __ATOMIC_RELAXED);
		live_insert((uintptr_t)ptr, s, size);
	}
	mt_tls_busy = busy;
	return s;
}

/* ---- allocation events: samples and --dump-every ---- */

/* The countdown the allocation path runs, armed to the nearer of the next
 * sample and the next --dump-every check (an eighth of the interval, so a
 * thread notices a crossing within 1/8 of it). */
void mt_event_arm(struct mt_thread *t)
{
	int64_t next = INT64_MAX;
	if (MT_OPT(stacks))
		next = MT_LOAD(t->sample_left);
	if (MT_OPT(dump_every)) {
		int64_t chunk = (int64_t)(MT_OPT(dump_every) / 8) + 1;
		if (chunk < next)
			next = chunk;
	}
	MT_STORE(t->event_left, next);
	MT_STORE(t->event_armed, next);
}

void mt_alloc_event(struct mt_thread *t, int fn, uint64_t size, int64_t usable, void *ptr, const char *cfa)
{
	/* Bytes allocated since the countdown was armed, this one included. */
	int64_t consumed = MT_LOAD(t->event_armed) - MT_LOAD(t->event_left);
	struct mt_sitex *sampled = NULL;
	/* Acquire: the site and live tables are made before stacks is set. */
	if (__atomic_load_n(&mt_g.stacks, __ATOMIC_ACQUIRE)) {
		int64_t left = MT_LOAD(t->sample_left) - consumed;
		if (left < 0) {
			left = mt_sample_interval(t);
			if (ptr)
				sampled = record_sample(fn, size, ptr, cfa);
		}
		MT_STORE(t->sample_left, left);
	}
	mt_inuse_up(t, usable);
	if (MT_OPT(dump_every)) {
		/* jemalloc's lg_prof_interval: a dump each time another
		 * dump_every bytes have been allocated, written by the thread
		 * that crossed the line. */
		uint64_t total = __atomic_add_fetch(&mt_g.event_bytes, (uint64_t)consumed, __ATOMIC_RELAXED);
		uint64_t due = total / MT_OPT(dump_every);
		uint64_t done = __atomic_load_n(&mt_g.event_dumps, __ATOMIC_RELAXED);
		if (due > done && __atomic_compare_exchange_n(&mt_g.event_dumps, &done, due, 0,
							       __ATOMIC_RELAXED, __ATOMIC_RELAXED))
			mt_dump_request(0, MT_REASON_BYTES);
	}
	mt_event_arm(t);
	/* The last allocation of this thread, if sampled, and the countdown
	 * after it: any later allocation of the thread moves the countdown
	 * (or, with every allocation sampled, comes here). */
	tmp_site = sampled;
	tmp_ptr = sampled ? ~(uintptr_t)ptr : 0;
	tmp_left = MT_LOAD(t->event_left);
}

/* Forgets every live allocation and zeroes every site: a new process (fork)
 * or a new attach session starts from nothing.  Entries are dropped, not
 * reclaimed (the arena never shrinks). */
static void zero_site(struct mt_sitex *s, void *arg)
{
	(void)arg;
	__atomic_store_n(&s->alloc_objects, 0, __ATOMIC_RELAXED);
	__atomic_store_n(&s->alloc_bytes, 0, __ATOMIC_RELAXED);
	__atomic_store_n(&s->freed_objects, 0, __ATOMIC_RELAXED);
	__atomic_store_n(&s->freed_bytes, 0, __ATOMIC_RELAXED);
	__atomic_store_n(&s->reset_objects, 0, __ATOMIC_RELAXED);
	__atomic_store_n(&s->reset_bytes, 0, __ATOMIC_RELAXED);
	__atomic_store_n(&s->peak_objects, 0, __ATOMIC_RELAXED);
	__atomic_store_n(&s->peak_bytes, 0, __ATOMIC_RELAXED);
	__atomic_store_n(&s->temp_objects, 0, __ATOMIC_RELAXED);
	__atomic_store_n(&s->temp_bytes, 0, __ATOMIC_RELAXED);
}

void mt_sites_clear(void)
{
	if (!live_buckets)
		return;
	/* Stripe by stripe under its lock: a thread still finishing a free
	 * or a sample of the session before may hold it. */
	for (uint32_t s = 0; s < LIVE_STRIPES; s++) {
		stripe_lock(s);
		for (uint32_t slot = s; slot < FILTER_SLOTS; slot += LIVE_STRIPES) {
			for (uint32_t b = slot << 2; b < (slot + 1) << 2; b++)
				live_buckets[b] = NULL;
			__atomic_store_n(&live_filter[slot], 0, __ATOMIC_RELAXED);
			__atomic_fetch_and(&mt_live_bits[slot >> 6], ~(1ull << (slot & 63)), __ATOMIC_RELAXED);
		}
		stripe_unlock(s);
	}
	mt_sites_foreach(zero_site, NULL);
}

/* In a new child the threads that held live-table locks at fork are gone,
 * and the readers' head of the site list is the child's own again. */
void mt_sites_after_fork_child(void)
{
	for (uint32_t i = 0; i < LIVE_STRIPES; i++)
		__atomic_store_n(&stripes[i].lock, 0, __ATOMIC_RELAXED);
	__atomic_store_n(&mt_sh->sites, (uint64_t)(uintptr_t)__atomic_load_n(&all_sites, __ATOMIC_ACQUIRE),
			 __ATOMIC_RELEASE);
}

/* ---- the sites at the peak ---- */

/* The peak figures are written here (by the thread that made a new peak) and
 * by `reset`, and read by any dump: relaxed atomics, each field whole.  A
 * dump that runs during a copy may pair one peak's objects with the next
 * one's bytes, as it may pair live objects and bytes. */
static void copy_live_to_peak(struct mt_sitex *s, void *arg)
{
	(void)arg;
	mt_site_peak_now(s);
}

void mt_sites_peak(void)
{
	static int busy_copying;
	if (__atomic_exchange_n(&busy_copying, 1, __ATOMIC_ACQUIRE))
		return; /* another thread is recording this peak */
	mt_sites_foreach(copy_live_to_peak, NULL);
	__atomic_store_n(&busy_copying, 0, __ATOMIC_RELEASE);
}

/* ---- for the leak check (leaks.c) ---- */

void mt_live_each(int (*fn)(uintptr_t ptr, uint64_t size, struct mt_sitex *site, void *arg), void *arg)
{
	if (!live_buckets)
		return;
	for (uint32_t b = 0; b < LIVE_BUCKETS; b++) {
		/* A stopped thread may be mid-insert or mid-remove: each chain is
		 * still whole at every instruction of those.  Bounded anyway. */
		uint32_t walk = 0;
		for (struct mt_live *e = __atomic_load_n(&live_buckets[b], __ATOMIC_ACQUIRE); e && walk < (1u << 24);
		     e = e->next, walk++)
			if (fn(e->ptr, e->size, e->site, arg))
				return;
	}
}

static void count_live(struct mt_sitex *s, void *arg)
{
	uint64_t o, b;
	mt_site_live(s, &o, &b);
	*(size_t *)arg += o;
}

size_t mt_live_count(void)
{
	size_t n = 0;
	mt_sites_foreach(count_live, &n);
	return n;
}
