/*
 * `-f FUNC[:size=argN][:pool=argM]`: count calls of any exported function
 * that is called across module boundaries (e.g. apr_palloc, which httpd and
 * its modules call in libapr), with a size histogram of one argument.
 *
 * Each function gets a stub in an executable page we make at start-up:
 *   mov $index, %r11d ; jmp *mt_tramp_common
 * and the GOT slots that name the function are pointed at the stub
 * (got.c).  The common trampoline (tramp.S) saves the argument registers,
 * calls mt_custom_enter(index, saved registers) and tail-jumps to the real
 * function, so no signature is needed.  dlopen is hooked the same way so
 * that modules loaded later (Apache's) are patched too.
 */
#include <dlfcn.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "agent.h"

void mt_tramp_common(void);

/* Read by tramp.S: the real function of each hooked index. */
void *mt_custom_real[MT_CUSTOM_MAX] __attribute__((visibility("hidden")));

static uint8_t *stubs;
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

/* Saved registers as tramp.S lays them out. */
enum { REG_R11, REG_RAX, REG_R9, REG_R8, REG_RCX, REG_RDX, REG_RSI, REG_RDI };
static const int arg_reg[6] = {REG_RDI, REG_RSI, REG_RDX, REG_RCX, REG_R8, REG_R9};

void mt_custom_enter(uint64_t index, const uint64_t *regs) __attribute__((visibility("hidden")));
void mt_custom_enter(uint64_t index, const uint64_t *regs)
{
	if (index >= MT_CUSTOM_MAX)
		return;
	struct mt_thread *t = mt_enter();
	if (!t)
		return;
	int a = mt_g.custom[index].size_arg, pa = mt_g.custom[index].pool_arg;
	uint64_t size = a >= 0 ? regs[arg_reg[a]] : 0;
	mt_count(t, MT_FN_COUNT + (int)index, size, 0);
	if (pa >= 0)
		pool_count((int)index, regs[arg_reg[pa]], size);
}

static void *hooked_dlopen(const char *file, int flags)
{
	void *h = real_dlopen(file, flags);
	if (h) {
		int busy = mt_tls_busy;
		mt_tls_busy = 1;
		mt_custom_resolve();
		mt_got_patch();
		mt_tls_busy = busy;
	}
	return h;
}

/* Parses one "name[:size=argN][:pool=argM]". */
static int parse_spec(const char *spec, size_t len, struct mt_custom *c)
{
	memset(c, 0, sizeof(*c));
	c->size_arg = -1;
	c->pool_arg = -1;
	size_t n = strcspn(spec, ":");
	if (n > len)
		n = len;
	if (!n || n >= sizeof(c->name))
		return -EINVAL;
	memcpy(c->name, spec, n);
	while (n < len) {
		const char *opt = spec + n + 1;
		size_t olen = strcspn(opt, ":,");
		if (olen >= 9 && !strncmp(opt, "size=arg", 8) && opt[8] >= '0' && opt[8] <= '5')
			c->size_arg = opt[8] - '0';
		else if (olen >= 9 && !strncmp(opt, "pool=arg", 8) && opt[8] >= '0' && opt[8] <= '5')
			c->pool_arg = opt[8] - '0';
		else
			return -EINVAL;
		n += olen + 1;
	}
	return 0;
}

int mt_custom_parse(const char *list)
{
	mt_g.ncustom = 0;
	while (list && *list) {
		size_t len = strcspn(list, ",");
		if (mt_g.ncustom >= MT_CUSTOM_MAX) {
			mt_log("-f: at most %d functions", MT_CUSTOM_MAX);
			return -ENOSPC;
		}
		if (parse_spec(list, len, &mt_g.custom[mt_g.ncustom]) < 0) {
			mt_log("-f %.*s: expected FUNC[:size=argN][:pool=argM] with N, M in 0..5",
			       (int)len, list);
			return -EINVAL;
		}
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

void mt_custom_resolve(void)
{
	for (int i = 0; i < mt_g.ncustom; i++)
		if (!mt_custom_real[i])
			__atomic_store_n(&mt_custom_real[i], mt_global_sym(mt_g.custom[i].name), __ATOMIC_RELEASE);
}

/* Makes one stub per -f function in an executable page. */
static int make_stubs(void)
{
	if (stubs)
		return 0;
	long r = syscall(SYS_mmap, 0, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (r < 0 && r > -4096)
		return -ENOMEM;
	uint8_t *page = (uint8_t *)r;
	for (int i = 0; i < MT_CUSTOM_MAX; i++) {
		uint8_t *s = page + 32 * i;
		uint64_t target = (uint64_t)(uintptr_t)mt_tramp_common;
		uint32_t idx = (uint32_t)i;
		s[0] = 0x41, s[1] = 0xbb; /* mov $i, %r11d */
		memcpy(s + 2, &idx, 4);
		s[6] = 0xff, s[7] = 0x25; /* jmp *0(%rip) */
		memset(s + 8, 0, 4);
		memcpy(s + 12, &target, 8);
	}
	if (mprotect(page, 4096, PROT_READ | PROT_EXEC) < 0)
		return -errno;
	stubs = page;
	return 0;
}

int mt_hooks_start(int alloc_family)
{
	int err;
	if (alloc_family && (err = mt_hook_wrappers()) < 0)
		return err;
	if (mt_g.ncustom) {
		if ((err = make_stubs()) < 0 || (err = pools_map()) < 0)
			return err;
		mt_custom_resolve();
		for (int i = 0; i < mt_g.ncustom; i++)
			if (mt_got_add(mt_g.custom[i].name, stubs + 32 * i) < 0)
				return -ENOSPC;
	}
	if (!alloc_family && !mt_g.ncustom)
		return 0;
	if (!real_dlopen)
		real_dlopen = (void *(*)(const char *, int))mt_global_sym("dlopen");
	if (real_dlopen)
		mt_got_add("dlopen", (void *)hooked_dlopen);
	return mt_got_patch();
}
