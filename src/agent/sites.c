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
 * Stacks come from libunwind's unw_backtrace with its per-thread cache.  The
 * library is dlopen'd with RTLD_LOCAL only when stacks are asked for: linked
 * in, its `backtrace` and `_Unwind_Backtrace` would interpose the program's.
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
#include <string.h>

#define UNW_LOCAL_ONLY
#include <libunwind.h>

#include "agent.h"

#define SITE_BUCKETS (1u << 16)
#define LIVE_BUCKETS (1u << 20)
#define LIVE_STRIPES 1024u
#define FILTER_SLOTS (LIVE_BUCKETS >> 2)

struct mt_live {
	struct mt_live *next;
	uintptr_t ptr;
	struct mt_sitex *site;
	uint64_t size;
};

static struct mt_sitex **site_buckets;
static uint32_t nsites;
static struct mt_live **live_buckets;
uint8_t *mt_live_filter;
#define live_filter mt_live_filter
static struct {
	int lock;
	struct mt_live *free;
} __attribute__((aligned(64))) stripes[LIVE_STRIPES];

static int (*unw_bt)(void **, int);
static uintptr_t self_start, self_end; /* the agent's own text: frames to skip */

/* ---- set-up ---- */

static int load_unwinder(void)
{
	void *h = dlopen("libunwind.so.8", RTLD_NOW | RTLD_LOCAL);
	if (!h) {
		mt_log("--stacks needs libunwind (Debian package libunwind8): %s", dlerror());
		return -ENOENT;
	}
	unw_bt = (int (*)(void **, int))dlsym(h, "unw_backtrace");
	int (*policy)(unw_addr_space_t, unw_caching_policy_t) =
		(int (*)(unw_addr_space_t, unw_caching_policy_t))dlsym(h, "_ULx86_64_set_caching_policy");
	unw_addr_space_t *as = dlsym(h, "_ULx86_64_local_addr_space");
	if (!unw_bt)
		return -ENOENT;
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
	if (!unw_bt && load_unwinder())
		return -ENOENT;
	find_self();
	if (!live_buckets)
		live_buckets = mt_arena_alloc(LIVE_BUCKETS * sizeof(*live_buckets));
	if (!live_filter)
		live_filter = mt_arena_alloc(FILTER_SLOTS);
	struct mt_sitex **sb = mt_arena_alloc(SITE_BUCKETS * sizeof(*sb));
	if (!sb || !live_buckets || !live_filter)
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
		for (s = first; s; s = s->next)
			if (s->hash == h && s->fn == fn && s->nframes == n &&
			    memcmp(s->frames, frames, n * sizeof(*frames)) == 0)
				return s;
		struct mt_sitex *x = mt_arena_alloc(sizeof(*x) + n * sizeof(*frames));
		if (!x)
			return NULL;
		x->hash = h;
		x->fn = fn;
		x->nframes = n;
		memcpy(x->frames, frames, n * sizeof(*frames));
		x->next = first;
		if (__atomic_compare_exchange_n(head, &first, x, 0, __ATOMIC_RELEASE, __ATOMIC_ACQUIRE)) {
			__atomic_fetch_add(&nsites, 1, __ATOMIC_RELAXED);
			return x;
		}
		/* Lost a race: FIRST now holds the new head; look again (the arena
		 * block is not reclaimed, a rare and bounded waste). */
	}
}

void mt_sites_foreach(void (*fn)(struct mt_sitex *, void *), void *arg)
{
	struct mt_sitex **sb = __atomic_load_n(&site_buckets, __ATOMIC_ACQUIRE);
	if (!sb)
		return;
	for (uint32_t b = 0; b < SITE_BUCKETS; b++)
		for (struct mt_sitex *s = __atomic_load_n(&sb[b], __ATOMIC_ACQUIRE); s; s = s->next)
			fn(s, arg);
}

uint32_t mt_sites_count(void)
{
	return __atomic_load_n(&nsites, __ATOMIC_RELAXED);
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
	stripe_unlock(s);
}

/* Removes P if it is a sampled live allocation, updating its site. */
int mt_live_forget(void *ptr)
{
	uintptr_t p = (uintptr_t)ptr;
	uint32_t b = live_bucket(p), slot = b >> 2, s = slot & (LIVE_STRIPES - 1);
	if (!__atomic_load_n(&live_filter[slot], __ATOMIC_RELAXED)) {
		if (MT_OPT(sample_period) <= 1)
			__atomic_fetch_add(&mt_g.unknown_frees, 1, __ATOMIC_RELAXED);
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
		if (live_filter[slot] != 255)
			__atomic_store_n(&live_filter[slot], live_filter[slot] - 1, __ATOMIC_RELAXED);
		/* Read the entry before it goes on the free list: once the stripe
		 * is unlocked another thread may take it for a new allocation. */
		site = e->site;
		size = e->size;
		e->next = stripes[s].free;
		stripes[s].free = e;
	}
	stripe_unlock(s);
	if (site) {
		__atomic_fetch_sub(&site->live_objects, 1, __ATOMIC_RELAXED);
		__atomic_fetch_sub(&site->live_bytes, size, __ATOMIC_RELAXED);
	} else if (MT_OPT(sample_period) <= 1) {
		/* Every allocation is recorded, so this one predates tracking. */
		__atomic_fetch_add(&mt_g.unknown_frees, 1, __ATOMIC_RELAXED);
	}
	return site != NULL;
}

/* ---- recording a sample ---- */

static void record_sample(int fn, uint64_t size, void *ptr)
{
	int busy = mt_tls_busy;
	mt_tls_busy = 1;
	void *raw[MT_STACK_MAX + 8];
	int n = unw_bt(raw, MT_STACK_MAX + 8);
	/* Drop the agent's own frames: the stack starts at the return address
	 * into the caller of the allocation function. */
	int skip = 0;
	while (skip < n && (uintptr_t)raw[skip] >= self_start && (uintptr_t)raw[skip] < self_end)
		skip++;
	uint64_t frames[MT_STACK_MAX];
	uint32_t nf = 0;
	for (int i = skip; i < n && nf < MT_STACK_MAX; i++)
		frames[nf++] = (uint64_t)(uintptr_t)raw[i];
	struct mt_sitex *s = site_intern(frames, nf, (uint32_t)fn);
	if (s) {
		__atomic_fetch_add(&s->alloc_objects, 1, __ATOMIC_RELAXED);
		__atomic_fetch_add(&s->alloc_bytes, size, __ATOMIC_RELAXED);
		__atomic_fetch_add(&s->live_objects, 1, __ATOMIC_RELAXED);
		__atomic_fetch_add(&s->live_bytes, size, __ATOMIC_RELAXED);
		live_insert((uintptr_t)ptr, s, size);
	}
	mt_tls_busy = busy;
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

void mt_alloc_event(struct mt_thread *t, int fn, uint64_t size, void *ptr)
{
	/* Bytes allocated since the countdown was armed, this one included. */
	int64_t consumed = MT_LOAD(t->event_armed) - MT_LOAD(t->event_left);
	/* Acquire: the site and live tables are made before stacks is set. */
	if (__atomic_load_n(&mt_g.stacks, __ATOMIC_ACQUIRE)) {
		int64_t left = MT_LOAD(t->sample_left) - consumed;
		if (left < 0) {
			left = mt_sample_interval(t);
			if (ptr)
				record_sample(fn, size, ptr);
		}
		MT_STORE(t->sample_left, left);
	}
	if (MT_OPT(dump_every)) {
		/* jemalloc's lg_prof_interval: a dump each time another
		 * dump_every bytes have been allocated, written by the thread
		 * that crossed the line. */
		uint64_t total = __atomic_add_fetch(&mt_g.event_bytes, (uint64_t)consumed, __ATOMIC_RELAXED);
		uint64_t due = total / MT_OPT(dump_every);
		uint64_t done = __atomic_load_n(&mt_g.event_dumps, __ATOMIC_RELAXED);
		if (due > done && __atomic_compare_exchange_n(&mt_g.event_dumps, &done, due, 0,
							       __ATOMIC_RELAXED, __ATOMIC_RELAXED)) {
			char path[512];
			int err = mt_dump(NULL, MT_REASON_BYTES, path, sizeof(path));
			if (err)
				mt_log("--dump-every: %s: %s", path, strerror(-err));
		}
	}
	mt_event_arm(t);
}

/* Forgets every live allocation and zeroes every site: a new process (fork)
 * or a new attach session starts from nothing.  Entries are dropped, not
 * reclaimed (the arena never shrinks). */
static void zero_site(struct mt_sitex *s, void *arg)
{
	(void)arg;
	__atomic_store_n(&s->alloc_objects, 0, __ATOMIC_RELAXED);
	__atomic_store_n(&s->alloc_bytes, 0, __ATOMIC_RELAXED);
	__atomic_store_n(&s->live_objects, 0, __ATOMIC_RELAXED);
	__atomic_store_n(&s->live_bytes, 0, __ATOMIC_RELAXED);
	__atomic_store_n(&s->peak_objects, 0, __ATOMIC_RELAXED);
	__atomic_store_n(&s->peak_bytes, 0, __ATOMIC_RELAXED);
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
		}
		stripe_unlock(s);
	}
	mt_sites_foreach(zero_site, NULL);
}

/* In a new child the threads that held live-table locks at fork are gone. */
void mt_sites_after_fork_child(void)
{
	for (uint32_t i = 0; i < LIVE_STRIPES; i++)
		__atomic_store_n(&stripes[i].lock, 0, __ATOMIC_RELAXED);
}

/* ---- the sites at the peak ---- */

/* The peak figures are written here (by the thread that made a new peak) and
 * by `reset`, and read by any dump: relaxed atomics, each field whole.  A
 * dump that runs during a copy may pair one peak's objects with the next
 * one's bytes, as it may pair live objects and bytes. */
static void copy_live_to_peak(struct mt_sitex *s, void *arg)
{
	(void)arg;
	__atomic_store_n(&s->peak_objects, __atomic_load_n(&s->live_objects, __ATOMIC_RELAXED),
			 __ATOMIC_RELAXED);
	__atomic_store_n(&s->peak_bytes, __atomic_load_n(&s->live_bytes, __ATOMIC_RELAXED),
			 __ATOMIC_RELAXED);
}

void mt_sites_peak(void)
{
	static int busy_copying;
	if (__atomic_exchange_n(&busy_copying, 1, __ATOMIC_ACQUIRE))
		return; /* another thread is recording this peak */
	mt_sites_foreach(copy_live_to_peak, NULL);
	__atomic_store_n(&busy_copying, 0, __ATOMIC_RELEASE);
}
