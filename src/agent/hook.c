/*
 * Entry and return hooks (hook.h): stubs and trampolines near the hooked
 * function, the patch of its first bytes, and the per-thread shadow stack
 * that return hooks keep the real return addresses on.
 *
 * Page layout, one page per hook (never written again once executable, so a
 * page is never writable and executable at once, and a thread running an
 * old hook's code never sees it change):
 *   +0   mov $id, %r11d ; jmp *mt_hook_tramp     the stub
 *   +32  endbr64 ; CODE (relocated) ; jmp *(entry + len)   the trampoline
 */
#include <dirent.h>
#include <dlfcn.h>
#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <link.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "agent.h"
#include "hook.h"

#ifndef MAP_FIXED_NOREPLACE
#define MAP_FIXED_NOREPLACE 0x100000
#endif

#define HOOK_MAX 512
#define PAGE 4096u
#define TRAMP_OFF 32
#define REACH ((int64_t)0x7fff0000) /* what a rel32 reaches, with room to spare */

void mt_hook_tramp(void);
void mt_hook_ret(void);

enum { H_FREE, H_PREPARED, H_PATCHED, H_INERT };

struct hook {
	int state;
	void *go; /* where the tramp continues: the trampoline, or the real function (GOT) */
	mt_hook_entry_fn on_entry;
	mt_hook_return_fn on_return;
	void *ctx;
	uint8_t *entry; /* first patched byte (entry hooks) */
	uint8_t len;
	uint8_t orig[MT_PLAN_ORIG_MAX];
	int prot;      /* the entry page's protection, restored after each write */
	uint8_t *page; /* stub + trampoline */
};

static struct hook hooks[HOOK_MAX];
static int wants_unwind; /* a return hook was made: the unwinder must be watched */
static int nhooks; /* ids handed out so far (atomic); never reused */
static int lock;

static void hook_lock(void)
{
	while (__atomic_exchange_n(&lock, 1, __ATOMIC_ACQUIRE))
		;
}

/* For the injector's calls, made with every other thread stopped: one of
 * them may hold the lock (a dlopen making a GOT hook), and would never
 * release it while stopped.  Give up (-EBUSY: the CLI lets the threads run
 * and tries again) rather than spin until the call times out. */
static int hook_trylock(void)
{
	for (long i = 0; i < 1000000; i++) {
		if (!__atomic_exchange_n(&lock, 1, __ATOMIC_ACQUIRE))
			return 0;
		__builtin_ia32_pause();
	}
	return -EBUSY;
}

static void hook_unlock(void)
{
	__atomic_store_n(&lock, 0, __ATOMIC_RELEASE);
}

/* Raw system calls for the patch itself: while the entry page is writable
 * it is not executable, and it may hold libc's own mprotect or memcpy (a -f
 * function in libc).  Between the two mprotects only the agent's code runs. */
static long raw_mprotect(void *a, size_t len, int prot)
{
	long r;
	__asm__ volatile("syscall"
			 : "=a"(r)
			 : "0"((long)SYS_mprotect), "D"(a), "S"(len), "d"((long)prot)
			 : "rcx", "r11", "memory");
	return r;
}

static void copy_bytes(volatile uint8_t *dst, const uint8_t *src, size_t n)
{
	for (size_t i = 0; i < n; i++)
		dst[i] = src[i];
}

/* ---- where things are ---- */

struct find_obj {
	dev_t dev;
	ino_t ino;
	uintptr_t bias;
	const ElfW(Phdr) *phdr;
	int phnum;
	int found;
};

static int obj_cb(struct dl_phdr_info *info, size_t size, void *arg)
{
	(void)size;
	struct find_obj *f = arg;
	const char *name = info->dlpi_name && info->dlpi_name[0] ? info->dlpi_name : "/proc/self/exe";
	struct stat st;
	if (strstr(name, "linux-vdso") || stat(name, &st) || st.st_dev != f->dev || st.st_ino != f->ino)
		return 0;
	f->bias = info->dlpi_addr;
	f->phdr = info->dlpi_phdr;
	f->phnum = info->dlpi_phnum;
	f->found = 1;
	return 1;
}

/* The load bias of the object at PATH (by device and inode: the CLI and
 * the loader may name it through different links); -ENOENT if not loaded. */
static int obj_bias(const char *path, uint64_t vaddr, size_t len, uintptr_t *bias)
{
	struct find_obj f = {0};
	struct stat st;
	if (stat(path, &st))
		return -ENOENT;
	f.dev = st.st_dev;
	f.ino = st.st_ino;
	dl_iterate_phdr(obj_cb, &f);
	if (!f.found)
		return -ENOENT;
	for (int i = 0; i < f.phnum; i++) {
		const ElfW(Phdr) *ph = &f.phdr[i];
		if (ph->p_type == PT_LOAD && (ph->p_flags & PF_X) && vaddr >= ph->p_vaddr &&
		    vaddr + len <= ph->p_vaddr + ph->p_filesz) {
			*bias = f.bias;
			return 0;
		}
	}
	return -EFAULT;
}

/* /proc/self/maps into an mmap'd buffer (no allocator, no stdio). */
static char *maps_read(size_t *len, size_t cap)
{
	char *b = mt_sys_map(cap);
	if (!b)
		return NULL;
	int fd = open("/proc/self/maps", O_RDONLY | O_CLOEXEC);
	size_t n = 0;
	while (fd >= 0 && n < cap - 1) {
		ssize_t r = read(fd, b + n, cap - 1 - n);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			break;
		n += (size_t)r;
	}
	if (fd >= 0)
		close(fd);
	b[n] = '\0';
	*len = n;
	return b;
}

static int parse_range(const char *l, uintptr_t *lo, uintptr_t *hi, int *prot)
{
	char *e;
	*lo = (uintptr_t)strtoull(l, &e, 16);
	if (*e != '-')
		return -1;
	*hi = (uintptr_t)strtoull(e + 1, &e, 16);
	if (*e != ' ')
		return -1;
	*prot = (e[1] == 'r' ? PROT_READ : 0) | (e[2] == 'w' ? PROT_WRITE : 0) | (e[3] == 'x' ? PROT_EXEC : 0);
	return 0;
}

/* The protection of the page holding A (for putting it back after a
 * write), and a free page-aligned address as close to A as can be found,
 * at least one page away from any mapping and 1 MiB below a stack. */
static int maps_scan(uintptr_t a, int *prot, uintptr_t *near)
{
	size_t n, cap = 4u << 20;
	char *b = maps_read(&n, cap);
	if (!b)
		return -ENOMEM;
	uintptr_t prev_hi = 1u << 20, best = 0;
	uint64_t best_d = UINT64_MAX;
	*prot = -1;
	for (char *l = b; l && *l; l = strchr(l, '\n'), l = l ? l + 1 : NULL) {
		uintptr_t lo, hi;
		int p;
		if (parse_range(l, &lo, &hi, &p))
			continue;
		if (a >= lo && a < hi)
			*prot = p;
		char *eol = strchr(l, '\n');
		int stack = eol && eol - l > 7 && !strncmp(eol - 7, "[stack]", 7);
		uintptr_t glo = prev_hi + PAGE, ghi = lo > (stack ? (2u << 20) + PAGE : PAGE) ? lo - (stack ? 2u << 20 : PAGE) : 0;
		if (ghi >= glo + PAGE) {
			uintptr_t c = a < glo ? glo : a >= ghi ? ghi - PAGE : (a & ~(uintptr_t)(PAGE - 1));
			uint64_t d = c > a ? c - a : a - c;
			if (d < best_d) {
				best_d = d;
				best = c;
			}
		}
		if (hi > prev_hi)
			prev_hi = hi;
	}
	mt_sys_unmap(b, cap);
	*near = best_d < (uint64_t)REACH - (16u << 20) ? best : 0;
	return *prot < 0 ? -EFAULT : 0;
}

/* A page for a hook within reach of A (0: anywhere). */
static uint8_t *page_near(uintptr_t a, int *prot)
{
	uintptr_t want = 0;
	*prot = PROT_READ | PROT_EXEC;
	if (a) {
		if (maps_scan(a, prot, &want) || !want)
			return NULL;
	}
	for (int tries = 0; tries < 64; tries++) {
		long r = syscall(SYS_mmap, want, PAGE, PROT_READ | PROT_WRITE,
				 MAP_PRIVATE | MAP_ANONYMOUS | (want ? MAP_FIXED_NOREPLACE : 0), -1, 0);
		if (!(r < 0 && r > -4096)) {
			uintptr_t p = (uintptr_t)r;
			if (!a || (p > a ? p - a : a - p) < (uintptr_t)REACH)
				return (uint8_t *)p;
			syscall(SYS_munmap, p, PAGE); /* an old kernel ignored the flag */
		}
		if (!want)
			return NULL;
		/* Taken meanwhile: the next page out. */
		want += want < a ? -(uintptr_t)PAGE : PAGE;
	}
	return NULL;
}

static void put_stub(uint8_t *s, int id)
{
	uint64_t target = (uint64_t)(uintptr_t)mt_hook_tramp;
	uint32_t idx = (uint32_t)id;
	s[0] = 0x41, s[1] = 0xbb; /* mov $id, %r11d */
	memcpy(s + 2, &idx, 4);
	s[6] = 0xff, s[7] = 0x25; /* jmp *0(%rip) */
	memset(s + 8, 0, 4);
	memcpy(s + 12, &target, 8);
	memset(s + 20, 0xcc, TRAMP_OFF - 20);
}

static int new_id(void)
{
	int id = __atomic_load_n(&nhooks, __ATOMIC_RELAXED);
	return id < HOOK_MAX ? id : -ENOSPC;
}

static void publish(int id, struct hook *h)
{
	hooks[id] = *h;
	__atomic_store_n(&nhooks, id + 1, __ATOMIC_RELEASE);
}

/* ---- return hooks: CET and the unwinder ---- */

int mt_hook_return_ok(char *err, size_t errlen)
{
	size_t n, cap = 64 << 10;
	char *b = mt_sys_map(cap);
	int ret = 0;
	if (!b)
		return 0;
	int fd = open("/proc/self/status", O_RDONLY | O_CLOEXEC);
	ssize_t r = fd >= 0 ? read(fd, b, cap - 1) : -1;
	if (fd >= 0)
		close(fd);
	n = r > 0 ? (size_t)r : 0;
	b[n] = '\0';
	/* A CET shadow stack checks every return: a swapped return address
	 * would kill the process at the first return. */
	char *l = strstr(b, "x86_Thread_features:");
	if (l) {
		char *eol = strchr(l, '\n');
		if (eol)
			*eol = '\0';
		if (strstr(l, "shstk")) {
			snprintf(err, errlen, "the process runs with a CET shadow stack, which forbids return hooks");
			ret = -EOPNOTSUPP;
		}
	}
	mt_sys_unmap(b, cap);
	return ret;
}

/* ---- preparing hooks ---- */

int mt_hook_fn(const struct mt_funcspec *f, mt_hook_entry_fn on_entry, mt_hook_return_fn on_return,
	       void *ctx, char *err, size_t errlen)
{
	uintptr_t bias;
	int ret;
	if (!f->has_plan || f->len < 5 || f->ncode + TRAMP_OFF + 4u + 14u > PAGE) {
		snprintf(err, errlen, "no entry plan");
		return -EINVAL;
	}
	if ((ret = obj_bias(f->obj, f->at, f->len, &bias)) < 0) {
		snprintf(err, errlen, ret == -ENOENT ? "%s is not loaded in this process"
						     : "%s: its bytes at 0x%llx are not in an executable segment",
			 f->obj, (unsigned long long)f->at);
		return ret;
	}
	uint8_t *entry = (uint8_t *)(bias + f->at);
	hook_lock();
	int id = new_id();
	if (id < 0) {
		snprintf(err, errlen, "too many hooks in this process's lifetime (%d)", HOOK_MAX);
		goto out;
	}
	/* An earlier session's hook may still be in place (its detach could
	 * not stop the threads to restore it): the next patch restores it, so
	 * its saved bytes are the ones to compare. */
	const uint8_t *now = entry;
	for (int i = 0; i < nhooks; i++)
		if (hooks[i].state == H_PATCHED && hooks[i].entry == entry && hooks[i].len == f->len)
			now = hooks[i].orig;
	if (memcmp(now, f->orig, f->len)) {
		snprintf(err, errlen, "its first %u bytes in memory differ from %s (patched by another tool?)",
			 f->len, f->obj);
		id = -EILSEQ;
		goto out;
	}
	struct hook h = {.state = H_PREPARED, .on_entry = on_entry, .on_return = on_return, .ctx = ctx,
			 .entry = entry, .len = f->len};
	memcpy(h.orig, f->orig, f->len);
	if (!(h.page = page_near((uintptr_t)entry, &h.prot))) {
		snprintf(err, errlen, "no free page within 2 GiB of it for the trampoline");
		id = -ERANGE;
		goto out;
	}
	if (!(h.prot & PROT_EXEC)) {
		snprintf(err, errlen, "its page is not executable");
		id = -EFAULT;
		goto unmap;
	}
	put_stub(h.page, id);
	uint8_t *t = h.page + TRAMP_OFF;
	static const uint8_t endbr64[4] = {0xf3, 0x0f, 0x1e, 0xfa};
	memcpy(t, endbr64, 4);
	t += 4;
	memcpy(t, f->code, f->ncode);
	for (int i = 0; i < f->nfix; i++) {
		int64_t rel = (int64_t)(bias + f->fix[i].target) - (int64_t)(uintptr_t)(t + f->fix[i].end);
		if (rel != (int32_t)rel) {
			snprintf(err, errlen, "the trampoline is too far from 0x%llx, which its instructions address",
				 (unsigned long long)f->fix[i].target);
			id = -ERANGE;
			goto unmap;
		}
		int32_t r32 = (int32_t)rel;
		memcpy(t + f->fix[i].off, &r32, 4);
	}
	t += f->ncode;
	uint64_t back = (uint64_t)(uintptr_t)(entry + f->len);
	t[0] = 0xff, t[1] = 0x25; /* jmp *0(%rip) */
	memset(t + 2, 0, 4);
	memcpy(t + 6, &back, 8);
	int64_t reach = (int64_t)(uintptr_t)h.page - (int64_t)(uintptr_t)(entry + 5);
	if (reach != (int32_t)reach) {
		snprintf(err, errlen, "the stub is out of a jump's reach");
		id = -ERANGE;
		goto unmap;
	}
	if (mprotect(h.page, PAGE, PROT_READ | PROT_EXEC) < 0) {
		snprintf(err, errlen, "mprotect: %s", strerror(errno));
		id = -errno;
		goto unmap;
	}
	h.go = h.page + TRAMP_OFF;
	publish(id, &h);
	if (on_return)
		__atomic_store_n(&wants_unwind, 1, __ATOMIC_RELAXED);
	goto out;
unmap:
	mt_sys_unmap(h.page, PAGE);
out:
	hook_unlock();
	return id;
}

int mt_hook_got(void *real, mt_hook_entry_fn on_entry, mt_hook_return_fn on_return, void *ctx, char *err,
		size_t errlen)
{
	int prot;
	hook_lock();
	int id = new_id();
	uint8_t *page = id >= 0 ? page_near(0, &prot) : NULL;
	if (id >= 0 && page) {
		put_stub(page, id);
		if (mprotect(page, PAGE, PROT_READ | PROT_EXEC) == 0) {
			struct hook h = {.state = H_INERT, .go = real, .on_entry = on_entry, .on_return = on_return,
					 .ctx = ctx, .page = page};
			publish(id, &h);
			if (on_return)
				__atomic_store_n(&wants_unwind, 1, __ATOMIC_RELAXED);
		} else {
			mt_sys_unmap(page, PAGE);
			id = -errno;
		}
	} else if (id >= 0) {
		id = -ENOMEM;
	}
	hook_unlock();
	if (id < 0)
		snprintf(err, errlen, "cannot make a stub: %s", strerror(-id));
	return id;
}

void *mt_hook_stub(int id)
{
	return id >= 0 && id < HOOK_MAX ? hooks[id].page : NULL;
}

/* ---- patching ---- */

static int write_entry(struct hook *h, const uint8_t *bytes)
{
	uintptr_t lo = (uintptr_t)h->entry & ~(uintptr_t)(PAGE - 1);
	uintptr_t hi = ((uintptr_t)h->entry + h->len + PAGE - 1) & ~(uintptr_t)(PAGE - 1);
	long r = raw_mprotect((void *)lo, hi - lo, PROT_READ | PROT_WRITE);
	if (r < 0)
		return (int)r;
	copy_bytes(h->entry, bytes, h->len);
	r = raw_mprotect((void *)lo, hi - lo, h->prot);
	return r < 0 ? (int)r : 0;
}

int mt_hook_patch(const uint64_t *pcs, size_t npcs)
{
	int done = 0, err = 0;
	if (hook_trylock())
		return -EBUSY;
	int n = __atomic_load_n(&nhooks, __ATOMIC_ACQUIRE);
	for (int i = 0; i < n; i++)
		for (size_t k = 0; hooks[i].state == H_PREPARED && k < npcs; k++)
			if (pcs[k] > (uintptr_t)hooks[i].entry && pcs[k] < (uintptr_t)hooks[i].entry + hooks[i].len) {
				hook_unlock();
				return -EBUSY;
			}
	/* Inert hooks of an earlier session still in place go first. */
	for (int i = 0; i < n; i++) {
		struct hook *h = &hooks[i];
		if (h->state == H_PATCHED && !__atomic_load_n(&h->on_entry, __ATOMIC_ACQUIRE) &&
		    write_entry(h, h->orig) == 0)
			h->state = H_INERT;
	}
	for (int i = 0; i < n && !err; i++) {
		struct hook *h = &hooks[i];
		if (h->state != H_PREPARED)
			continue;
		uint8_t jmp[MT_PLAN_ORIG_MAX];
		int32_t rel = (int32_t)((intptr_t)h->page - (intptr_t)(h->entry + 5));
		jmp[0] = 0xe9;
		memcpy(jmp + 1, &rel, 4);
		/* The rest of the last displaced instruction: never executed
		 * (nothing jumps there: the CLI checked), int3 if it were. */
		memset(jmp + 5, 0xcc, h->len - 5);
		if ((err = write_entry(h, jmp)) == 0) {
			h->state = H_PATCHED;
			done++;
		}
	}
	hook_unlock();
	return err ? err : done;
}

int mt_hook_remove_all(int restore)
{
	int restored = 0;
	if (restore ? hook_trylock() : (hook_lock(), 0))
		return -EBUSY;
	int n = __atomic_load_n(&nhooks, __ATOMIC_ACQUIRE);
	for (int i = 0; i < n; i++) {
		struct hook *h = &hooks[i];
		__atomic_store_n(&h->on_entry, NULL, __ATOMIC_RELEASE);
		__atomic_store_n(&h->on_return, NULL, __ATOMIC_RELEASE);
		if (h->state == H_PREPARED)
			h->state = H_INERT;
		if (restore && h->state == H_PATCHED && write_entry(h, h->orig) == 0) {
			h->state = H_INERT;
			restored++;
		}
	}
	hook_unlock();
	return restored;
}

static int count_state(int state)
{
	int c = 0, n = __atomic_load_n(&nhooks, __ATOMIC_ACQUIRE);
	for (int i = 0; i < n; i++)
		c += hooks[i].state == state && hooks[i].entry;
	return c;
}

int mt_hook_patched(void)
{
	return count_state(H_PATCHED);
}

int mt_hook_pending(void)
{
	return count_state(H_PREPARED);
}

/* ---- the shadow stack ---- */

/* Return addresses this thread's hooked frames will go back to, innermost
 * last.  A page per thread that ever made a return-hooked call, from mmap
 * (a thread-local array this big would not fit the static TLS an agent
 * loaded by dlopen gets), handed to a new thread when its thread exits. */
struct shadow_ent {
	void *ret;     /* the real return address */
	void **slot;   /* where it was on the stack */
	uint32_t id;
	uint64_t cookie;
};
#define SHADOW_MAX ((PAGE - 64) / sizeof(struct shadow_ent))
struct shadow {
	struct shadow *next_free;
	uint32_t depth;
	struct shadow_ent e[SHADOW_MAX];
};

static __thread struct shadow *tls_shadow __attribute__((tls_model("initial-exec")));
static struct shadow *shadow_free;
static int shadow_lock;
static pthread_key_t shadow_key;
static int shadow_key_state; /* 0 none, 1 making, 2 made */
static uint64_t lost, unwound;

static void shadow_exit(void *v)
{
	struct shadow *s = v;
	tls_shadow = NULL;
	if (!s || __atomic_exchange_n(&shadow_lock, 1, __ATOMIC_ACQUIRE))
		return; /* busy (cannot happen at thread exit, but never wait): keep it */
	s->depth = 0;
	s->next_free = shadow_free;
	shadow_free = s;
	__atomic_store_n(&shadow_lock, 0, __ATOMIC_RELEASE);
}

static struct shadow *shadow_get(void)
{
	struct shadow *s = tls_shadow;
	if (likely(s != NULL))
		return s;
	int st = 0;
	if (__atomic_compare_exchange_n(&shadow_key_state, &st, 1, 0, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE))
		__atomic_store_n(&shadow_key_state, pthread_key_create(&shadow_key, shadow_exit) ? 0 : 2,
				 __ATOMIC_RELEASE);
	if (__atomic_load_n(&shadow_key_state, __ATOMIC_ACQUIRE) != 2)
		return NULL;
	/* try-lock only: a signal handler may interrupt this thread here */
	if (!__atomic_exchange_n(&shadow_lock, 1, __ATOMIC_ACQUIRE)) {
		if ((s = shadow_free))
			shadow_free = s->next_free;
		__atomic_store_n(&shadow_lock, 0, __ATOMIC_RELEASE);
	}
	if (!s && !(s = mt_sys_map(PAGE)))
		return NULL;
	s->depth = 0;
	pthread_setspecific(shadow_key, s);
	tls_shadow = s;
	return s;
}

/* Called by mt_hook_tramp with the hook's id, its saved registers and the
 * address of the return address; returns where to go on. */
void *mt_hook_dispatch(uint64_t id, const uint64_t *regs, void **slot) __attribute__((visibility("hidden")));
void *mt_hook_dispatch(uint64_t id, const uint64_t *regs, void **slot)
{
	struct hook *h = &hooks[id];
	void *go = h->go;
	mt_hook_entry_fn entry = __atomic_load_n(&h->on_entry, __ATOMIC_ACQUIRE);
	uint64_t cookie = 0;
	if (!entry)
		return go;
	int saved = errno;
	if (entry(h->ctx, regs, &cookie) && __atomic_load_n(&h->on_return, __ATOMIC_ACQUIRE)) {
		struct shadow *s = shadow_get();
		uint32_t d = s ? s->depth : SHADOW_MAX;
		/* Entries of frames a longjmp left (at or below ours on this
		 * stack, their slot no longer holding our address) go first:
		 * a loop that longjmps out of a hooked function would fill the
		 * stack otherwise. */
		while (s && d) {
			struct shadow_ent *x = &s->e[d - 1];
			uintptr_t xs = (uintptr_t)x->slot, ns = (uintptr_t)slot;
			if (!(xs <= ns && ns - xs < (1u << 20) && *x->slot != (void *)mt_hook_ret))
				break;
			d--;
		}
		if (s && d < SHADOW_MAX) {
			s->e[d] = (struct shadow_ent){*slot, slot, (uint32_t)id, cookie};
			/* Entry first, then depth, then the swap: a signal handler
			 * that runs in between sees a consistent stack. */
			__atomic_signal_fence(__ATOMIC_SEQ_CST);
			s->depth = d + 1;
			__atomic_signal_fence(__ATOMIC_SEQ_CST);
			*slot = (void *)mt_hook_ret;
		} else {
			__atomic_fetch_add(&lost, 1, __ATOMIC_RELAXED);
		}
	}
	errno = saved;
	return go;
}

/* Called by mt_hook_ret when a return-hooked function returns: SLOT is
 * where its return address was, RET its rax.  Returns the real return
 * address. */
void *mt_hook_leave(void **slot, uint64_t ret) __attribute__((visibility("hidden")));
void *mt_hook_leave(void **slot, uint64_t ret)
{
	struct shadow *s = tls_shadow;
	int saved = errno;
	int k = s ? (int)s->depth - 1 : -1;
	while (k >= 0 && s->e[k].slot != slot)
		k--;
	if (unlikely(k < 0)) {
		/* Every swapped return address has its entry (entries are only
		 * dropped for frames that are gone), so this is memory
		 * corruption: there is nowhere to return to. */
		mt_log("return hook: no saved return address for the frame at %p; cannot continue", (void *)slot);
		__builtin_trap();
	}
	struct shadow_ent e = s->e[k];
	/* Entries above ours were pushed by calls made after ours began: on
	 * this stack (deeper, within 1 MiB) and no longer holding our address,
	 * their frames are gone (longjmp out of them); frames on another stack
	 * (a coroutine) stay. */
	uint32_t w = (uint32_t)k, d = s->depth;
	for (uint32_t i = (uint32_t)k + 1; i < d; i++) {
		struct shadow_ent *x = &s->e[i];
		uintptr_t xs = (uintptr_t)x->slot, ms = (uintptr_t)slot;
		int gone = xs < ms && ms - xs < (1u << 20) && *x->slot != (void *)mt_hook_ret;
		if (!gone)
			s->e[w++] = *x;
	}
	__atomic_signal_fence(__ATOMIC_SEQ_CST);
	s->depth = w;
	struct hook *h = &hooks[e.id];
	mt_hook_return_fn fn = __atomic_load_n(&h->on_return, __ATOMIC_ACQUIRE);
	if (fn)
		fn(h->ctx, ret, e.cookie);
	errno = saved;
	return e.ret;
}

void mt_hook_unwind_thread(void)
{
	struct shadow *s = tls_shadow;
	if (!s)
		return;
	/* An unwinder reading mt_hook_ret as a return address would find no
	 * frame to go on with (C++ would call std::terminate): put the real
	 * ones back.  Those functions return unseen; those whose slot no
	 * longer holds our address are gone already. */
	for (int k = (int)s->depth - 1; k >= 0; k--)
		if (*s->e[k].slot == (void *)mt_hook_ret) {
			*s->e[k].slot = s->e[k].ret;
			__atomic_fetch_add(&unwound, 1, __ATOMIC_RELAXED);
		}
	__atomic_signal_fence(__ATOMIC_SEQ_CST);
	s->depth = 0;
}

void mt_hook_stats(uint64_t *lost_out, uint64_t *unwound_out)
{
	*lost_out = __atomic_load_n(&lost, __ATOMIC_RELAXED);
	*unwound_out = __atomic_load_n(&unwound, __ATOMIC_RELAXED);
}

/* The unwinder's entry points, through the GOT of the modules that call them
 * (libstdc++'s __cxa_throw and __cxa_rethrow, glibc's thread cancellation):
 * each puts this thread's swapped return addresses back first.  Sticky: a
 * swapped return address can outlive the session that made it. */
typedef int (*unwind1_fn)(void *);
typedef int (*unwind3_fn)(void *, void *, void *);
static unwind1_fn real_raise, real_rethrow;
static unwind3_fn real_forced;

static int shim_raise(void *e)
{
	mt_hook_unwind_thread();
	return real_raise(e);
}

static int shim_rethrow(void *e)
{
	mt_hook_unwind_thread();
	return real_rethrow(e);
}

static int shim_forced(void *e, void *stop, void *arg)
{
	mt_hook_unwind_thread();
	return real_forced(e, stop, arg);
}

int mt_hook_wants_unwind(void)
{
	return __atomic_load_n(&wants_unwind, __ATOMIC_RELAXED);
}

void mt_hook_unwind_install(void)
{
	if (!real_raise && (real_raise = (unwind1_fn)mt_global_sym("_Unwind_RaiseException")))
		mt_got_add_sticky("_Unwind_RaiseException", (void *)shim_raise);
	if (!real_rethrow && (real_rethrow = (unwind1_fn)mt_global_sym("_Unwind_Resume_or_Rethrow")))
		mt_got_add_sticky("_Unwind_Resume_or_Rethrow", (void *)shim_rethrow);
	if (!real_forced && (real_forced = (unwind3_fn)mt_global_sym("_Unwind_ForcedUnwind")))
		mt_got_add_sticky("_Unwind_ForcedUnwind", (void *)shim_forced);
}

/* For the injector (memtap attach), with every thread of the process
 * stopped: patch the prepared entry hooks unless one of the NPCS threads'
 * instruction pointers PCS is inside the bytes they replace (-EBUSY: the
 * CLI lets the process run a moment and tries again); restore them all. */
MT_EXPORT long memtap_agent_patch(const uint64_t *pcs, uint64_t npcs);
MT_EXPORT long memtap_agent_patch(const uint64_t *pcs, uint64_t npcs)
{
	return mt_hook_patch(pcs, (size_t)npcs);
}

MT_EXPORT long memtap_agent_unpatch(void);
MT_EXPORT long memtap_agent_unpatch(void)
{
	return mt_hook_remove_all(1);
}
