/*
 * `-f FUNC[:size=argN][:pool=argM][:fail=...][:out=argK][:got]`: count the
 * calls of any function (e.g. apr_palloc, ngx_palloc, palloc), with a size
 * histogram of one argument, calls and bytes per pool, and failures.
 *
 * By default FUNC gets an entry hook (hook.c): its first instructions jump
 * to a stub of ours, so every call is seen, also the calls from inside its
 * own module and through function pointers.  The CLI found FUNC (dynamic
 * symbols, .symtab) and decided the patch; `:got` or a function the CLI did
 * not place (an exec'd program that does not load its object) is hooked
 * through the GOT slots that name it instead (got.c): calls from other
 * modules only.  Either way the hook's callbacks below count the call and,
 * for fail= and out=, look at its result.  dlopen is hooked through the GOT
 * so that modules loaded later are patched too.
 */
#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "agent.h"
#include "hook.h"

static void *(*real_dlopen)(const char *, int);

/*
 * Pools (-f FUNC:pool=argM).  One open-addressing table per function, shared
 * by all threads, in the live file (struct mt_live_pools): a slot is claimed
 * by a compare-and-swap of its key (the pool + 1; 0 is empty) and counted
 * with atomic adds, so the path takes no lock.  A pool that finds no free
 * slot within POOL_PROBES of its hash is counted as "other" (the report says
 * so), which bounds the work per call.  Slots are never freed: a pool
 * address reused later is the same entry.
 */
#define POOL_SLOTS MT_LIVE_POOL_SLOTS
#define POOL_PROBES 32
static struct mt_live_pools *pool_tables[MT_CUSTOM_MAX];

static size_t pool_hash(uint64_t key)
{
	return (size_t)((key * 0x9e3779b97f4a7c15ull) >> 51) & (POOL_SLOTS - 1);
}

static void pool_count(int index, uint64_t pool, uint64_t size)
{
	struct mt_live_pools *t = __atomic_load_n(&pool_tables[index], __ATOMIC_ACQUIRE);
	uint64_t key = pool + 1;
	if (!t)
		return;
	size_t h = pool_hash(key);
	for (int n = 0; key && n < POOL_PROBES; n++, h = (h + 1) & (POOL_SLOTS - 1)) {
		struct mt_live_pool_slot *sl = &t->slot[h];
		uint64_t k = __atomic_load_n(&sl->key, __ATOMIC_ACQUIRE);
		if (!k && __atomic_compare_exchange_n(&sl->key, &k, key, 0, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE))
			k = key; /* claimed; on failure K is the key another thread put there */
		if (k == key) {
			__atomic_fetch_add(&sl->calls, 1, __ATOMIC_RELAXED);
			__atomic_fetch_add(&sl->bytes, size, __ATOMIC_RELAXED);
			return;
		}
	}
	__atomic_fetch_add(&t->other_calls, 1, __ATOMIC_RELAXED);
	__atomic_fetch_add(&t->other_bytes, size, __ATOMIC_RELAXED);
}

void mt_pools_zero(void)
{
	for (int i = 0; i < MT_CUSTOM_MAX; i++) {
		struct mt_live_pools *t = __atomic_load_n(&pool_tables[i], __ATOMIC_ACQUIRE);
		/* Word by word with atomics: threads may be counting into it. */
		uint64_t *w = (uint64_t *)t;
		for (size_t k = 0; t && k < sizeof(*t) / sizeof(*w); k++)
			__atomic_store_n(&w[k], 0, __ATOMIC_RELAXED);
	}
}

/* A table for every -f function with a pool argument (kept across
 * sessions: made once), published in the live file's header. */
static int pools_map(void)
{
	for (int i = 0; i < mt_g.ncustom; i++) {
		struct mt_live_pools *t = pool_tables[i];
		if (mt_g.custom[i].pool_arg >= 0 && !t) {
			if (!(t = mt_shared_alloc(sizeof(*t))))
				return -ENOMEM;
			__atomic_store_n(&pool_tables[i], t, __ATOMIC_RELEASE);
		}
		uint64_t a = mt_g.custom[i].pool_arg >= 0 ? (uint64_t)(uintptr_t)t : 0;
		__atomic_store_n(&mt_sh->custom[i].pools, a, __ATOMIC_RELEASE);
	}
	return 0;
}

/* Saved registers as mt_hook_tramp lays them out (hook.h). */
static const int arg_reg[6] = {MT_REG_RDI, MT_REG_RSI, MT_REG_RDX, MT_REG_RCX, MT_REG_R8, MT_REG_R9};

/* This session's -f functions, as the CLI described them, and their hooks. */
static struct mt_funcspec specs[MT_CUSTOM_MAX];
static int hook_id[MT_CUSTOM_MAX]; /* -1: none yet */
static char hook_err[256];

/* Counts one call of -f function INDEX; 1 if it was counted. */
static int custom_enter(uint64_t index, const uint64_t *regs)
{
	struct mt_thread *t = mt_enter();
	if (!t)
		return 0;
	int a = mt_g.custom[index].size_arg, pa = mt_g.custom[index].pool_arg;
	uint64_t size = a >= 0 ? regs[arg_reg[a]] : 0;
	mt_count(t, MT_FN_COUNT + (int)index, size, 0);
	if (pa >= 0)
		pool_count((int)index, regs[arg_reg[pa]], size);
	return 1;
}

static int on_entry(void *ctx, const uint64_t *regs, uint64_t *cookie)
{
	uint64_t i = (uint64_t)(uintptr_t)ctx;
	if (!custom_enter(i, regs))
		return 0;
	int out = specs[i].out_arg;
	*cookie = out >= 0 ? regs[arg_reg[out]] : 0;
	return mt_funcspec_wants_return(&specs[i]);
}

/* fail=null|nonzero|neg on the int or pointer returned; with out=argK,
 * fail=null (the default) looks at what was written through argument K. */
static void on_return(void *ctx, uint64_t ret, uint64_t cookie)
{
	uint64_t i = (uint64_t)(uintptr_t)ctx;
	const struct mt_funcspec *f = &specs[i];
	int failed;
	if (f->fail == MT_FAIL_NONZERO)
		failed = (uint32_t)ret != 0;
	else if (f->fail == MT_FAIL_NEG)
		failed = (int32_t)ret < 0;
	else if (f->out_arg >= 0)
		failed = !cookie || !*(void *const *)(uintptr_t)cookie;
	else
		failed = ret == 0;
	struct mt_thread *t;
	if (!failed || !(t = mt_enter()))
		return;
	struct mt_counter *c = &t->c[MT_FN_COUNT + i];
	if (unlikely(t->shared))
		__atomic_fetch_add(&c->failed, 1, __ATOMIC_RELAXED);
	else
		mt_bump(&c->failed, 1);
}

static void *hooked_dlopen(const char *file, int flags)
{
	void *h = real_dlopen(file, flags);
	if (h) {
		int busy = mt_tls_busy;
		mt_tls_busy = 1;
		mt_custom_resolve();
		mt_apr_resolve();
		mt_got_patch();
		mt_tls_busy = busy;
	}
	return h;
}

int mt_custom_parse(const char *list)
{
	char err[256];
	mt_g.ncustom = 0;
	while (list && *list) {
		size_t len = strcspn(list, ",");
		int i = mt_g.ncustom;
		if (i >= MT_CUSTOM_MAX) {
			mt_log("-f: at most %d functions", MT_CUSTOM_MAX);
			return -ENOSPC;
		}
		if (mt_funcspec_parse(list, len, 0, &specs[i], err, sizeof(err)) < 0) {
			mt_log("-f %.*s: %s", (int)len, list, err);
			return -EINVAL;
		}
		struct mt_custom *c = &mt_g.custom[i];
		memcpy(c->name, specs[i].name, sizeof(c->name));
		c->size_arg = specs[i].size_arg;
		c->pool_arg = specs[i].pool_arg;
		hook_id[i] = -1;
		mt_g.ncustom++;
		list += len + (list[len] == ',');
	}
	/* What readers of the live file need to name the counters. */
	for (int i = 0; i < MT_CUSTOM_MAX; i++) {
		struct mt_live_custom *c = &mt_sh->custom[i];
		if (i >= mt_g.ncustom) {
			__atomic_store_n(&c->pools, 0, __ATOMIC_RELEASE);
			continue;
		}
		snprintf(c->name, sizeof(c->name), "%s", mt_g.custom[i].name);
		c->size_arg = mt_g.custom[i].size_arg;
		c->pool_arg = mt_g.custom[i].pool_arg;
	}
	__atomic_store_n(&mt_sh->ncustom, (uint32_t)mt_g.ncustom, __ATOMIC_RELEASE);
	return 0;
}

/* Hooks -f function I through its GOT slots, once a definition is found. */
static int custom_got(int i)
{
	void *real = mt_global_sym(specs[i].name);
	if (!real)
		return 0; /* a module loaded later may define it (hooked_dlopen) */
	int id = mt_hook_got(real, on_entry, mt_funcspec_wants_return(&specs[i]) ? on_return : NULL,
			     (void *)(uintptr_t)i, hook_err, sizeof(hook_err));
	if (id < 0)
		return id;
	hook_id[i] = id;
	return mt_got_add(specs[i].name, mt_hook_stub(id)) < 0 ? -ENOSPC : 0;
}

void mt_custom_resolve(void)
{
	for (int i = 0; i < mt_g.ncustom; i++)
		if (hook_id[i] < 0 && (specs[i].got || !specs[i].has_plan))
			custom_got(i);
	if (mt_hook_wants_unwind())
		mt_hook_unwind_install();
}

/* An entry hook for -f function I.  ATTACH: the injector will patch it with
 * every thread stopped; else (run) it is patched from the constructor. */
static int custom_entry(int i, int attach)
{
	char why[200];
	const struct mt_funcspec *f = &specs[i];
	int id = mt_hook_fn(f, on_entry, mt_funcspec_wants_return(f) ? on_return : NULL, (void *)(uintptr_t)i,
			    why, sizeof(why));
	if (id == -ENOENT && !attach) {
		/* A program exec'd by the traced one that does not load the
		 * object the CLI found FUNC in: by name, as before. */
		specs[i].has_plan = 0;
		return custom_got(i);
	}
	if (id < 0) {
		snprintf(hook_err, sizeof(hook_err), "-f %s: cannot hook its entry: %s", f->name, why);
		return id;
	}
	hook_id[i] = id;
	return 0;
}

/* Threads of this process other than the caller. */
static int other_threads(void)
{
	DIR *d = opendir("/proc/self/task");
	int n = 0;
	struct dirent *e;
	while (d && (e = readdir(d)))
		n += e->d_name[0] != '.';
	if (d)
		closedir(d);
	return n - 1;
}

const char *mt_custom_error(void)
{
	return hook_err;
}

int mt_hooks_start(int alloc_family)
{
	int err;
	char why[200];
	hook_err[0] = '\0';
	if (alloc_family && (err = mt_hook_wrappers()) < 0)
		return err;
	if (mt_g.ncustom && (err = pools_map()) < 0)
		return err;
	for (int i = 0; i < mt_g.ncustom; i++) {
		if (mt_funcspec_wants_return(&specs[i]) && (err = mt_hook_return_ok(why, sizeof(why))) < 0) {
			snprintf(hook_err, sizeof(hook_err), "-f %s: no return hook: %s", specs[i].name, why);
			return err;
		}
		err = specs[i].has_plan && !specs[i].got ? custom_entry(i, alloc_family) : custom_got(i);
		if (err < 0)
			return err;
	}
	if (mt_hook_wants_unwind())
		mt_hook_unwind_install();
	if (!alloc_family && !mt_g.ncustom && !mt_apr_enabled())
		return 0;
	if (!real_dlopen)
		real_dlopen = (void *(*)(const char *, int))mt_global_sym("dlopen");
	if (real_dlopen)
		mt_got_add("dlopen", (void *)hooked_dlopen);
	int slots = mt_got_patch();
	if (!alloc_family && mt_hook_pending()) {
		/* memtap run: from the constructor, before the program's own
		 * threads; a library's constructor may have started one, and
		 * patching code another thread may be running is not safe. */
		int others = other_threads();
		if (others > 0) {
			snprintf(hook_err, sizeof(hook_err),
				 "-f: %d other thread%s already run%s; entry hooks are not patched", others,
				 others > 1 ? "s" : "", others > 1 ? "" : "s");
			mt_hook_remove_all(0);
			return -EBUSY;
		}
		if ((err = mt_hook_patch(NULL, 0)) < 0) {
			snprintf(hook_err, sizeof(hook_err), "-f: patching the entries: %s", strerror(-err));
			return err;
		}
	}
	return slots;
}

/* The end of an attach session: its hooks become inert, their names leave
 * the GOT hook list, and the next session starts without -f functions
 * unless it names them again.  The entry bytes were put back by the CLI
 * (memtap_agent_unpatch, every thread stopped); if not, they stay in place,
 * inert, until the next session's patch. */
void mt_custom_stop(void)
{
	mt_hook_remove_all(0);
	for (int i = 0; i < mt_g.ncustom; i++)
		mt_got_forget(specs[i].name);
	mt_g.ncustom = 0;
	mt_apr_stop();
}
