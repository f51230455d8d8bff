/*
 * --pools: APR pool lifetimes (memtap/pools.h, docs/POOLS.md).
 *
 * GOT hooks on apr_pool_create_ex, apr_pool_create_unmanaged_ex,
 * apr_palloc, apr_pcalloc, apr_pool_clear, apr_pool_destroy and
 * apr_pool_tag, pointing at C wrappers (APR's signatures are fixed, so no
 * trampoline and no return hook are needed: a wrapper sees the create's
 * result).  GOT hooks, not entry hooks: they need no plan from the CLI (no
 * disassembly, no object named in advance), so a libapr that the process
 * dlopens later is hooked like any other (hooked_dlopen calls
 * mt_apr_resolve), and they reach every caller that matters: httpd, its
 * modules, libaprutil and libapr itself call these functions through their
 * PLTs.  The one call they miss is apr_pool_destroy's direct recursion into
 * a pool's children, which is why a destroy (and a clear, which destroys
 * the children too) takes the pool's descendants in the table with it.
 * Calls through pointers a program took with dlsym are not seen.
 *
 * apr_palloc is the hot path: a lock-free lookup of the pool's slot and
 * plain stores (an APR pool is used by one thread at a time; APR says so).
 * Creation, destroy, clear and tag change the tree and the aggregates under
 * one spin lock (a few per request).
 */
#include <dlfcn.h>
#include <errno.h>
#include <link.h>
#include <string.h>
#include <time.h>

#include "agent.h"
#include "memtap/pools.h"

enum { F_CREATE, F_CREATE_U, F_PALLOC, F_PCALLOC, F_CLEAR, F_DESTROY, F_TAG, F_N };
static const char *const names[F_N] = {
	"apr_pool_create_ex", "apr_pool_create_unmanaged_ex", "apr_palloc", "apr_pcalloc",
	"apr_pool_clear",     "apr_pool_destroy",             "apr_pool_tag",
};

static struct mt_live_apr *tab;  /* in the live file, made once */
static int on;                   /* --pools in this session */
static int hooked[F_N]; /* its GOT hook is registered */

/* apr_pcalloc's own apr_palloc (through libapr's PLT) is the same call:
 * the next apr_palloc of the thread with that pool and size is skipped. */
static __thread uint64_t skip_pool, skip_size __attribute__((tls_model("initial-exec")));

static uint64_t coarse_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME_COARSE, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void lock(void)
{
	while (__atomic_exchange_n(&tab->lock, 1, __ATOMIC_ACQUIRE))
		__builtin_ia32_pause();
}

static void unlock(void)
{
	__atomic_store_n(&tab->lock, 0, __ATOMIC_RELEASE);
}

static size_t hash(uint64_t key)
{
	return (size_t)((key * 0x9e3779b97f4a7c15ull) >> 40) & (MT_APR_SLOTS - 1);
}

/* The slot of live pool KEY, or NULL.  Lock-free: keys are published with
 * release after the fields. */
static struct mt_live_apr_slot *find(uint64_t key)
{
	size_t h = hash(key);
	for (int n = 0; n < MT_APR_PROBES; n++, h = (h + 1) & (MT_APR_SLOTS - 1)) {
		uint64_t k = __atomic_load_n(&tab->slot[h].key, __ATOMIC_ACQUIRE);
		if (k == key)
			return &tab->slot[h];
		if (k == MT_APR_EMPTY)
			return NULL;
	}
	return NULL;
}

static uint32_t index_of(const struct mt_live_apr_slot *s)
{
	return (uint32_t)(s - tab->slot);
}

static void copy_tag(char *dst, const char *src)
{
	size_t n = 0;
	for (; src && src[n] && n < MT_APR_TAG_MAX - 1; n++)
		dst[n] = src[n];
	dst[n] = '\0';
}

/* The aggregate of TAG (under the lock); the last entry takes what does not
 * fit. */
static struct mt_live_apr_tag *tag_entry(const char *tag)
{
	const char *t = tag[0] ? tag : "-";
	for (int i = 0; i < MT_APR_TAGS - 1; i++) {
		struct mt_live_apr_tag *e = &tab->tags[i];
		if (!e->tag[0]) {
			copy_tag(e->tag, t);
			__atomic_store_n(&tab->ntags, (uint32_t)i + 1, __ATOMIC_RELEASE);
			return e;
		}
		if (!strncmp(e->tag, t, MT_APR_TAG_MAX))
			return e;
	}
	struct mt_live_apr_tag *e = &tab->tags[MT_APR_TAGS - 1];
	if (!e->tag[0]) {
		copy_tag(e->tag, "(other tags)");
		__atomic_store_n(&tab->ntags, MT_APR_TAGS, __ATOMIC_RELEASE);
	}
	return e;
}

static void unlink_child(struct mt_live_apr_slot *s)
{
	uint32_t me = index_of(s) + 1;
	if (!s->parent_slot || s->parent_slot > MT_APR_SLOTS)
		return;
	uint32_t *link = &tab->slot[s->parent_slot - 1].first_child;
	for (int n = 0; *link && n < MT_APR_SLOTS; n++) {
		if (*link == me) {
			*link = s->next_sibling;
			break;
		}
		link = &tab->slot[*link - 1].next_sibling;
	}
	s->parent_slot = s->next_sibling = 0;
}

/* Pool S ends at NOW (under the lock), its descendants first: into its
 * tag's aggregate and the ring of recent pools; its slot is freed. */
static void retire(struct mt_live_apr_slot *s, uint64_t now, int depth)
{
	while (s->first_child && s->first_child <= MT_APR_SLOTS) {
		struct mt_live_apr_slot *c = &tab->slot[s->first_child - 1];
		if (depth < 64) {
			retire(c, now, depth + 1); /* unlinks it */
		} else {
			s->first_child = c->next_sibling; /* too deep: orphaned, left live */
			c->parent_slot = c->next_sibling = 0;
		}
	}
	unlink_child(s);
	struct mt_live_apr_tag *t = s->tag_ix && s->tag_ix <= MT_APR_TAGS ? &tab->tags[s->tag_ix - 1] : tag_entry(s->tag);
	if (t == &tab->tags[MT_APR_TAGS - 1])
		__atomic_fetch_add(&tab->tags_full, 1, __ATOMIC_RELAXED);
	uint64_t life_us = now > s->created_ns ? (now - s->created_ns) / 1000 : 0;
	uint64_t calls = MT_LOAD(s->calls), bytes = MT_LOAD(s->bytes);
	mt_bump(&t->pools, 1);
	mt_bump(&t->calls, calls);
	mt_bump(&t->bytes, bytes);
	mt_bump(&t->clears, MT_LOAD(s->clears));
	mt_bump(&t->life_us, life_us);
	mt_bump(&t->life_hist[mt_hist_bucket(life_us)], 1);
	mt_bump(&t->bytes_hist[mt_hist_bucket(bytes)], 1);
	uint64_t r = MT_LOAD(tab->ring_next);
	struct mt_live_apr_slot *d = &tab->ring[r % MT_APR_RING];
	/* The ring entry is invalid (key 0) while it is rewritten. */
	__atomic_store_n(&d->key, 0, __ATOMIC_RELEASE);
	uint64_t key = s->key;
	*d = *s;
	d->key = 0;
	d->destroyed_ns = now ? now : 1;
	d->parent_slot = d->first_child = d->next_sibling = 0;
	__atomic_store_n(&d->key, key, __ATOMIC_RELEASE);
	__atomic_store_n(&tab->ring_next, r + 1, __ATOMIC_RELEASE);
	__atomic_store_n(&s->key, MT_APR_FREED, __ATOMIC_RELEASE);
	s->first_child = 0;
	__atomic_fetch_add(&tab->destroyed, 1, __ATOMIC_RELAXED);
}

/* ---- the wrappers ----
 *
 * APR's signatures are known and stable (apr_pools.h), so the GOT slots
 * point at plain C wrappers that call the real functions: no trampoline,
 * no saved registers, and the creates see their result without a return
 * hook. */

typedef void *(*palloc_fn)(void *, size_t);
typedef int (*create_fn)(void **, void *, void *, void *);
typedef int (*create_u_fn)(void **, void *, void *);
typedef void (*pool_fn)(void *);
typedef void (*tag_fn)(void *, const char *);
static palloc_fn real_palloc, real_pcalloc;
static create_fn real_create;
static create_u_fn real_create_u;
static pool_fn real_clear, real_destroy;
static tag_fn real_tag;

static int hooks_live(void)
{
	return __atomic_load_n(&on, __ATOMIC_RELAXED) && mt_enter() != NULL;
}

static void created(uint64_t pool, uint64_t parent, uint64_t caller, uint32_t flags)
{
	uint64_t now = mt_now_ns();
	lock();
	/* An address still in the table is a pool whose end we missed: it
	 * ends now.  The first freed or empty slot takes the new one. */
	struct mt_live_apr_slot *old = find(pool), *free_slot = NULL;
	if (old)
		retire(old, now, 0);
	size_t h = hash(pool);
	for (int n = 0; n < MT_APR_PROBES && !free_slot; n++, h = (h + 1) & (MT_APR_SLOTS - 1)) {
		uint64_t k = tab->slot[h].key;
		if (k == MT_APR_EMPTY || k == MT_APR_FREED)
			free_slot = &tab->slot[h];
	}
	if (!free_slot) {
		unlock();
		__atomic_fetch_add(&tab->dropped, 1, __ATOMIC_RELAXED);
		return;
	}
	struct mt_live_apr_slot *s = free_slot, *ps = parent ? find(parent) : NULL;
	struct mt_live_apr_slot fresh = {
		.parent = parent,
		.created_ns = now,
		.mark_ns = now, /* the coarse clock of the marks is at most a tick behind */
		.caller = caller,
		.flags = flags,
	};
	if (ps) {
		fresh.parent_slot = index_of(ps) + 1;
		fresh.next_sibling = ps->first_child;
		ps->first_child = index_of(s) + 1;
	}
	*s = fresh; /* key 0 until published */
	__atomic_store_n(&s->key, pool, __ATOMIC_RELEASE);
	unlock();
	__atomic_fetch_add(&tab->created, 1, __ATOMIC_RELAXED);
}

/* After a successful create: *OUT is the new pool. */
static void after_create(int ret, void **out, void *parent, void *caller, uint32_t flags)
{
	if (ret != 0 || !out || !hooks_live())
		return;
	uint64_t pool = (uint64_t)(uintptr_t)*out;
	if (pool <= MT_APR_FREED)
		return;
	int busy = mt_tls_busy;
	mt_tls_busy = 1;
	created(pool, (uint64_t)(uintptr_t)parent, (uint64_t)(uintptr_t)caller, flags);
	mt_tls_busy = busy;
}

static int w_create(void **newpool, void *parent, void *abort_fn, void *allocator)
{
	int ret = real_create(newpool, parent, abort_fn, allocator);
	after_create(ret, newpool, parent, __builtin_return_address(0), 0);
	return ret;
}

static int w_create_u(void **newpool, void *abort_fn, void *allocator)
{
	int ret = real_create_u(newpool, abort_fn, allocator);
	after_create(ret, newpool, NULL, __builtin_return_address(0), MT_APR_F_UNMANAGED);
	return ret;
}

static void alloc_on(uint64_t pool, uint64_t size)
{
	struct mt_live_apr_slot *s = find(pool);
	if (!s) {
		__atomic_fetch_add(&tab->untracked_calls, 1, __ATOMIC_RELAXED);
		__atomic_fetch_add(&tab->untracked_bytes, size, __ATOMIC_RELAXED);
		return;
	}
	uint64_t calls = MT_LOAD(s->calls);
	MT_STORE(s->calls, calls + 1);
	mt_bump(&s->bytes, size);
	mt_bump(&s->cur_bytes, size);
	/* The age marks need the time, which costs more than the rest of
	 * this: every 16th allocation of the pool (and its first) is enough
	 * to see which doubling spans of its life it allocated in. */
	if (calls & 15)
		return;
	uint64_t now = coarse_ns(), mark = MT_LOAD(s->mark_ns);
	uint32_t bit = 1u << mt_apr_span(now > mark ? (now - mark) / 1000000 : 0);
	uint32_t m = MT_LOAD(s->marks);
	if (!(m & bit))
		MT_STORE(s->marks, m | bit);
}

static void *w_palloc(void *pool, size_t size)
{
	uint64_t p = (uint64_t)(uintptr_t)pool;
	if (unlikely(skip_pool)) {
		int same = skip_pool == p && skip_size == size;
		skip_pool = 0;
		if (same)
			return real_palloc(pool, size);
	}
	if (likely(hooks_live()))
		alloc_on(p, size);
	return real_palloc(pool, size);
}

static void *w_pcalloc(void *pool, size_t size)
{
	if (likely(hooks_live())) {
		alloc_on((uint64_t)(uintptr_t)pool, size);
		/* its own apr_palloc, through libapr's PLT, is this call */
		skip_pool = (uint64_t)(uintptr_t)pool;
		skip_size = size;
	}
	void *r = real_pcalloc(pool, size);
	skip_pool = 0;
	return r;
}

/* Destroy and clear: the pool's descendants end now (APR destroys them);
 * destroy ends the pool, clear empties it. */
static void pool_end(void *pool, int destroy)
{
	if (!hooks_live())
		return;
	uint64_t now = mt_now_ns();
	lock();
	struct mt_live_apr_slot *s = find((uint64_t)(uintptr_t)pool);
	if (s && destroy) {
		retire(s, now, 0);
	} else if (s) {
		while (s->first_child && s->first_child <= MT_APR_SLOTS)
			retire(&tab->slot[s->first_child - 1], now, 1);
		mt_bump(&s->clears, 1);
		MT_STORE(s->cur_bytes, 0);
		MT_STORE(s->marks, 0);
		MT_STORE(s->mark_ns, coarse_ns());
	}
	unlock();
}

static void w_clear(void *pool)
{
	pool_end(pool, 0);
	real_clear(pool);
}

static void w_destroy(void *pool)
{
	pool_end(pool, 1);
	real_destroy(pool);
}

static void w_tag(void *pool, const char *tag)
{
	real_tag(pool, tag);
	if (!hooks_live())
		return;
	lock();
	struct mt_live_apr_slot *s = find((uint64_t)(uintptr_t)pool);
	if (s) {
		char t[MT_APR_TAG_MAX];
		copy_tag(t, tag);
		for (size_t i = 0; i < sizeof(t); i++)
			__atomic_store_n(&s->tag[i], t[i], __ATOMIC_RELAXED);
		/* Its aggregate now, once, rather than by name at every destroy. */
		s->tag_ix = (uint32_t)(tag_entry(s->tag) - tab->tags) + 1;
	}
	unlock();
}

/* ---- start, stop ---- */

/* libapr loaded by dlopen with RTLD_LOCAL (a module that links it) is not
 * in the global scope dlsym(RTLD_DEFAULT) searches: its own handle is. */
struct apr_find {
	const char *name;
	void *found;
};

static int apr_cb(struct dl_phdr_info *info, size_t size, void *arg)
{
	(void)size;
	struct apr_find *f = arg;
	const char *n = info->dlpi_name;
	if (f->found || !n || !strstr(n, "libapr-1.so"))
		return 0;
	void *h = dlopen(n, RTLD_LAZY | RTLD_NOLOAD);
	if (h) {
		f->found = dlsym(h, f->name);
		dlclose(h);
	}
	return f->found != NULL;
}

static void *apr_sym(const char *name)
{
	void *f = mt_global_sym(name);
	if (!f) {
		struct apr_find a = {name, NULL};
		dl_iterate_phdr(apr_cb, &a);
		f = a.found;
	}
	return f;
}

void mt_apr_resolve(void)
{
	void **const real[F_N] = {(void **)&real_create, (void **)&real_create_u, (void **)&real_palloc,
				  (void **)&real_pcalloc, (void **)&real_clear,    (void **)&real_destroy,
				  (void **)&real_tag};
	void *const wrap[F_N] = {(void *)w_create, (void *)w_create_u, (void *)w_palloc, (void *)w_pcalloc,
				 (void *)w_clear,  (void *)w_destroy,  (void *)w_tag};
	if (!__atomic_load_n(&on, __ATOMIC_RELAXED) || !tab)
		return;
	for (int i = 0; i < F_N; i++) {
		if (hooked[i])
			continue;
		void *f = *real[i] ? *real[i] : apr_sym(names[i]);
		if (!f)
			continue; /* no libapr (yet): a dlopen may bring it */
		/* The real function first: a slot patched by another thread's
		 * dlopen may be called at once. */
		__atomic_store_n(real[i], f, __ATOMIC_RELEASE);
		if (mt_got_add(names[i], wrap[i]) < 0) {
			mt_log("--pools: cannot hook %s: too many GOT hooks", names[i]);
			continue;
		}
		hooked[i] = 1;
		__atomic_store_n(&tab->hooked, 1, __ATOMIC_RELEASE);
	}
}

int mt_apr_enabled(void)
{
	return __atomic_load_n(&on, __ATOMIC_RELAXED);
}

/* Everything back to empty: a new attach session knows none of the pools
 * (those made before it count as untracked). */
static void zero_all(int keep_live)
{
	uint64_t *w;
	lock();
	w = (uint64_t *)tab->tags;
	for (size_t k = 0; k < sizeof(tab->tags) / 8; k++)
		__atomic_store_n(&w[k], 0, __ATOMIC_RELAXED);
	w = (uint64_t *)tab->ring;
	for (size_t k = 0; k < sizeof(tab->ring) / 8; k++)
		__atomic_store_n(&w[k], 0, __ATOMIC_RELAXED);
	if (!keep_live) {
		w = (uint64_t *)tab->slot;
		for (size_t k = 0; k < sizeof(tab->slot) / 8; k++)
			__atomic_store_n(&w[k], 0, __ATOMIC_RELAXED);
	} else {
		for (size_t i = 0; i < MT_APR_SLOTS; i++) {
			struct mt_live_apr_slot *s = &tab->slot[i];
			if (s->key <= MT_APR_FREED)
				continue;
			MT_STORE(s->calls, 0);
			MT_STORE(s->bytes, 0);
			MT_STORE(s->clears, 0);
			s->tag_ix = 0; /* the aggregates are gone */
		}
	}
	__atomic_store_n(&tab->ntags, 0, __ATOMIC_RELAXED);
	__atomic_store_n(&tab->ring_next, 0, __ATOMIC_RELAXED);
	tab->created = tab->destroyed = tab->dropped = 0;
	tab->untracked_calls = tab->untracked_bytes = tab->tags_full = 0;
	unlock();
}

int mt_apr_start(int enable, int fresh)
{
	if (!enable) {
		__atomic_store_n(&on, 0, __ATOMIC_RELAXED);
		__atomic_store_n(&mt_sh->apr, 0, __ATOMIC_RELEASE);
		return 0;
	}
	if (!tab) {
		struct mt_live_apr *t = mt_shared_alloc(sizeof(*t));
		if (!t)
			return -ENOMEM;
		t->slots = MT_APR_SLOTS;
		t->nring = MT_APR_RING;
		tab = t;
	} else if (fresh) {
		zero_all(0);
	}
	__atomic_store_n(&mt_sh->apr, (uint64_t)(uintptr_t)tab, __ATOMIC_RELEASE);
	__atomic_store_n(&on, 1, __ATOMIC_RELEASE);
	mt_apr_resolve();
	/* For the creators' addresses (and again at the end, with the modules
	 * loaded since). */
	mt_shared_maps_publish();
	return 0;
}

/* ctl reset: counts from zero; the live pools stay live. */
void mt_apr_reset(void)
{
	if (tab)
		zero_all(1);
}

/* A fork child has its parent's pools (pconf, pchild are its own too):
 * the live ones stay, what was counted counts from zero. */
void mt_apr_fork_child(void)
{
	if (!tab)
		return;
	tab->lock = 0; /* a thread of the parent may have held it */
	zero_all(1);
}

/* The end of an attach session (after mt_hook_remove_all made every hook
 * inert): the names leave the GOT hook list, a new session makes new hooks. */
void mt_apr_stop(void)
{
	if (!__atomic_exchange_n(&on, 0, __ATOMIC_RELAXED))
		return;
	for (int i = 0; i < F_N; i++) {
		if (hooked[i])
			mt_got_forget(names[i]);
		hooked[i] = 0;
	}
}
