/*
 * --pools: APR pool lifetimes (memtap/pools.h, docs/POOLS.md).
 *
 * GOT hooks (hook.c's mt_hook_got, with a return hook for the two creates)
 * on apr_pool_create_ex, apr_pool_create_unmanaged_ex, apr_palloc,
 * apr_pcalloc, apr_pool_clear, apr_pool_destroy and apr_pool_tag.  GOT
 * hooks, not entry hooks: they need no plan from the CLI (no disassembly,
 * no object named in advance), so a libapr that the process dlopens later
 * is hooked by name like any other (hooked_dlopen calls mt_apr_resolve),
 * and they reach every caller that matters: httpd, its modules, libaprutil
 * and libapr itself call these functions through their PLTs.  The one call
 * they miss is apr_pool_destroy's direct recursion into a pool's children,
 * which is why a destroy (and a clear, which destroys the children too)
 * takes the pool's descendants in the table with it.
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
#include "hook.h"
#include "memtap/pools.h"

enum { F_CREATE, F_CREATE_U, F_PALLOC, F_PCALLOC, F_CLEAR, F_DESTROY, F_TAG, F_N };
static const char *const names[F_N] = {
	"apr_pool_create_ex", "apr_pool_create_unmanaged_ex", "apr_palloc", "apr_pcalloc",
	"apr_pool_clear",     "apr_pool_destroy",             "apr_pool_tag",
};

static struct mt_live_apr *tab;  /* in the live file, made once */
static int on;                   /* --pools in this session */
static int hook_ids[F_N] = {-1, -1, -1, -1, -1, -1, -1};
static const int arg_reg[4] = {MT_REG_RDI, MT_REG_RSI, MT_REG_RDX, MT_REG_RCX};
#define RET_ADDR 9 /* regs[9]: the return address, above the saved rbp (tramp.S) */

/* apr_pcalloc's own apr_palloc (through libapr's PLT) is the same call:
 * the next apr_palloc of the thread with that pool and size is skipped. */
static __thread uint64_t skip_pool, skip_size __attribute__((tls_model("initial-exec")));
/* Creations between entry and return: the parent and caller, by out-pointer. */
#define PEND 4
static __thread struct pend {
	uint64_t out, parent, caller;
} pend[PEND] __attribute__((tls_model("initial-exec")));
static __thread uint32_t npend __attribute__((tls_model("initial-exec")));

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
	__atomic_fetch_add(&tab->tags_full, 1, __ATOMIC_RELAXED);
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
	struct mt_live_apr_tag *t = tag_entry(s->tag);
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

/* ---- the hooks' callbacks ---- */

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
		.mark_ns = coarse_ns(),
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

static int create_entry(void *ctx, const uint64_t *regs, uint64_t *cookie)
{
	int unmanaged = (int)(uintptr_t)ctx == F_CREATE_U;
	if (!hooks_live())
		return 0;
	if (npend >= PEND)
		npend = 0; /* returns never seen (longjmp out of a create): start over */
	struct pend *e = &pend[npend++];
	e->out = regs[arg_reg[0]];
	e->parent = unmanaged ? 0 : regs[arg_reg[1]];
	e->caller = regs[RET_ADDR];
	*cookie = e->out;
	return 1;
}

static void create_return(void *ctx, uint64_t ret, uint64_t cookie)
{
	uint32_t flags = (int)(uintptr_t)ctx == F_CREATE_U ? MT_APR_F_UNMANAGED : 0;
	if (!npend)
		return;
	struct pend e = pend[--npend];
	/* APR_SUCCESS and a pool written through the out-pointer. */
	if ((uint32_t)ret != 0 || !cookie || e.out != cookie || !tab)
		return;
	uint64_t pool = (uint64_t)(uintptr_t)*(void *const *)(uintptr_t)cookie;
	int busy = mt_tls_busy;
	if (pool > MT_APR_FREED && __atomic_load_n(&on, __ATOMIC_RELAXED)) {
		mt_tls_busy = 1;
		created(pool, e.parent, e.caller, flags);
		mt_tls_busy = busy;
	}
}

static void alloc_on(uint64_t pool, uint64_t size)
{
	struct mt_live_apr_slot *s = find(pool);
	if (!s) {
		__atomic_fetch_add(&tab->untracked_calls, 1, __ATOMIC_RELAXED);
		__atomic_fetch_add(&tab->untracked_bytes, size, __ATOMIC_RELAXED);
		return;
	}
	mt_bump(&s->calls, 1);
	mt_bump(&s->bytes, size);
	mt_bump(&s->cur_bytes, size);
	uint64_t now = coarse_ns(), mark = MT_LOAD(s->mark_ns);
	uint32_t bit = 1u << mt_apr_span(now > mark ? (now - mark) / 1000000 : 0);
	uint32_t m = MT_LOAD(s->marks);
	if (!(m & bit))
		MT_STORE(s->marks, m | bit);
}

static int palloc_entry(void *ctx, const uint64_t *regs, uint64_t *cookie)
{
	(void)cookie;
	int pcalloc = (int)(uintptr_t)ctx == F_PCALLOC;
	uint64_t pool = regs[arg_reg[0]], size = regs[arg_reg[1]];
	if (!pcalloc && skip_pool) {
		int same = skip_pool == pool && skip_size == size;
		skip_pool = 0;
		if (same)
			return 0;
	}
	if (!hooks_live())
		return 0;
	if (pcalloc) {
		skip_pool = pool;
		skip_size = size;
	}
	alloc_on(pool, size);
	return 0;
}

/* Destroy and clear: the pool's descendants end now (APR destroys them);
 * destroy ends the pool, clear empties it. */
static int end_entry(void *ctx, const uint64_t *regs, uint64_t *cookie)
{
	(void)cookie;
	int destroy = (int)(uintptr_t)ctx == F_DESTROY;
	uint64_t pool = regs[arg_reg[0]];
	if (!hooks_live())
		return 0;
	uint64_t now = mt_now_ns();
	lock();
	struct mt_live_apr_slot *s = find(pool);
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
	return 0;
}

static int tag_entry_hook(void *ctx, const uint64_t *regs, uint64_t *cookie)
{
	(void)ctx, (void)cookie;
	uint64_t pool = regs[arg_reg[0]];
	const char *tag = (const char *)(uintptr_t)regs[arg_reg[1]];
	if (!hooks_live())
		return 0;
	lock();
	struct mt_live_apr_slot *s = find(pool);
	if (s) {
		char t[MT_APR_TAG_MAX];
		copy_tag(t, tag);
		for (size_t i = 0; i < sizeof(t); i++)
			__atomic_store_n(&s->tag[i], t[i], __ATOMIC_RELAXED);
	}
	unlock();
	return 0;
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
	static const mt_hook_entry_fn entry[F_N] = {create_entry, create_entry, palloc_entry, palloc_entry,
						    end_entry,    end_entry,    tag_entry_hook};
	char err[128];
	if (!__atomic_load_n(&on, __ATOMIC_RELAXED) || !tab)
		return;
	for (int i = 0; i < F_N; i++) {
		if (hook_ids[i] >= 0)
			continue;
		void *real = apr_sym(names[i]);
		if (!real)
			continue; /* no libapr (yet): a dlopen may bring it */
		mt_hook_return_fn ret = i == F_CREATE || i == F_CREATE_U ? create_return : NULL;
		int id = mt_hook_got(real, entry[i], ret, (void *)(uintptr_t)i, err, sizeof(err));
		if (id < 0 || mt_got_add(names[i], mt_hook_stub(id)) < 0) {
			mt_log("--pools: cannot hook %s: %s", names[i], id < 0 ? err : "too many GOT hooks");
			continue;
		}
		hook_ids[i] = id;
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
		if (hook_ids[i] >= 0)
			mt_got_forget(names[i]);
		hook_ids[i] = -1;
	}
}
