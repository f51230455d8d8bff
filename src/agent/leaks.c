/*
 * The leak check by reachability, inside the traced process (docs/LEAKS.md;
 * the search itself is src/core/leaks.c).
 *
 * A check (mt_leaks_check) runs on the control thread (`memtap ctl PID
 * leaks`) or on the exiting thread (--leaks, at exit; attach --leaks, at
 * detach):
 *  1. What needs the loader's lock is read first, while every thread runs:
 *     the writable segments of each module (dl_iterate_phdr), the size of
 *     the static TLS block.
 *  2. The other threads are stopped: each gets a real-time signal whose
 *     handler copies the interrupted registers (the ucontext) into a table
 *     and waits on a futex.  The handler is async-signal-safe and takes no
 *     lock; SA_RESTART restarts the system calls that can be restarted.
 *     The control thread (the agent's, all signals blocked) is not stopped.
 *  3. With the world stopped nothing may take a lock a stopped thread may
 *     hold (malloc's, the loader's, the live table's stripes): the scan uses
 *     raw mmap for memory and reads the target's memory with
 *     process_vm_readv on itself, so an unmapped block, a guard page or a
 *     page unmapped behind the allocator's back is an error code, never a
 *     fault.
 *  4. Roots: every stopped thread's registers, its stack from the stack
 *     pointer (less the 128-byte red zone) to the end of its mapping (a
 *     glibc thread's static TLS and descriptor sit at the top of it), the
 *     static TLS below each thread pointer, the writable PT_LOAD segments of
 *     every module but the agent's.  The agent's own memory (its arena, the
 *     live file, the scan's tables) is anonymous or shared memory, never a
 *     root, so the live table's pointers to every block hide nothing.
 *  5. Blocks reached are scanned in turn; the rest are unreachable.  The
 *     figures go to the live file (struct mt_live_leaks), per call site.
 *  6. The threads are released; the pause is measured from the first
 *     signal to the release.
 */
#include <errno.h>
#include <fcntl.h>
#include <link.h>
#include <dlfcn.h>
#include <linux/futex.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/uio.h>
#include <time.h>
#include <ucontext.h>

#include "agent.h"
#include "memtap/leaks.h"

#define LK_THREADS 8192
#define LK_MODULE_RANGES 4096
#define LK_STOP_WAIT_NS (2000ull * 1000 * 1000) /* a thread that takes longer is left running */

enum {
	T_ASKED = 1, /* signalled */
	T_STOPPING,  /* its handler runs */
	T_STOPPED,   /* registers copied; waits */
	T_SKIPPED,   /* did not answer in time (signal blocked?): left running */
	T_GONE,      /* exited before the signal */
	T_RESUMED,   /* released and out of the handler */
};

struct lk_thread {
	int tid;
	int state;
	uint64_t sp; /* as found by the check (0: unknown) */
	uint64_t gregs[NGREG];
	uint64_t fs; /* the thread pointer */
};

static struct lk_thread *lk_tab; /* LK_THREADS, mmap'd once */
static uint32_t lk_n;
static int lk_sig;           /* the signal, once chosen */
static int lk_on;            /* a check is stopping threads */
static uint32_t lk_release;  /* futex: bumped to release them */
static uint32_t lk_stopped;  /* futex: threads stopped so far */
static int lk_lock;          /* one check at a time */
static size_t lk_tls_size;   /* glibc's static TLS block, TCB included */
static uint64_t lk_self_lo, lk_self_hi; /* the agent's module (its segments are not roots) */
static uint64_t lk_ld_lo, lk_ld_hi;     /* the dynamic linker's text */

struct range {
	uint64_t lo, hi;
};

static long futex(uint32_t *w, int op, uint32_t v, const struct timespec *ts)
{
	return syscall(SYS_futex, w, op, v, ts, NULL, 0);
}

static int gettid_raw(void)
{
	return (int)syscall(SYS_gettid);
}

/* ---- stopping the threads ---- */

static void on_signal(int sig, siginfo_t *si, void *uctx)
{
	(void)sig;
	(void)si;
	int saved = errno;
	if (!__atomic_load_n(&lk_on, __ATOMIC_ACQUIRE)) {
		errno = saved; /* a late signal (it was blocked until now): nothing to do */
		return;
	}
	uint32_t release = __atomic_load_n(&lk_release, __ATOMIC_ACQUIRE);
	int tid = gettid_raw();
	uint32_t n = __atomic_load_n(&lk_n, __ATOMIC_ACQUIRE);
	struct lk_thread *t = NULL;
	for (uint32_t i = 0; i < n; i++)
		if (__atomic_load_n(&lk_tab[i].tid, __ATOMIC_RELAXED) == tid) {
			t = &lk_tab[i];
			break;
		}
	int want = T_ASKED;
	if (!t || !__atomic_compare_exchange_n(&t->state, &want, T_STOPPING, 0, __ATOMIC_ACQ_REL,
					       __ATOMIC_RELAXED)) {
		errno = saved;
		return;
	}
	const ucontext_t *uc = uctx;
	for (int i = 0; i < NGREG; i++)
		t->gregs[i] = (uint64_t)uc->uc_mcontext.gregs[i];
	uint64_t fs;
	__asm__ volatile("mov %%fs:0, %0" : "=r"(fs));
	t->fs = fs;
	__atomic_store_n(&t->state, T_STOPPED, __ATOMIC_RELEASE);
	__atomic_fetch_add(&lk_stopped, 1, __ATOMIC_RELEASE);
	futex(&lk_stopped, FUTEX_WAKE_PRIVATE, 1, NULL);
	while (__atomic_load_n(&lk_release, __ATOMIC_ACQUIRE) == release)
		futex(&lk_release, FUTEX_WAIT_PRIVATE, release, NULL);
	__atomic_store_n(&t->state, T_RESUMED, __ATOMIC_RELEASE);
	errno = saved;
}

/* A real-time signal nobody handles, taken for good: a signal a thread had
 * blocked may arrive long after its check, and must find this handler (the
 * default action of a real-time signal kills the process). */
static int pick_signal(void)
{
	struct sigaction cur;
	if (lk_sig && sigaction(lk_sig, NULL, &cur) == 0 && (cur.sa_flags & SA_SIGINFO) &&
	    cur.sa_sigaction == on_signal)
		return lk_sig;
	for (int s = SIGRTMAX - 2; s > SIGRTMAX - 12 && s > SIGRTMIN; s--) {
		if (sigaction(s, NULL, &cur) || cur.sa_handler != SIG_DFL || (cur.sa_flags & SA_SIGINFO))
			continue;
		struct sigaction sa;
		memset(&sa, 0, sizeof(sa));
		sa.sa_sigaction = on_signal;
		sa.sa_flags = SA_SIGINFO | SA_RESTART | SA_ONSTACK;
		sigfillset(&sa.sa_mask); /* nothing else runs on a stopped thread */
		if (sigaction(s, &sa, NULL) == 0)
			return lk_sig = s;
	}
	return -1;
}

static int slot_of(int tid)
{
	for (uint32_t i = 0; i < lk_n; i++)
		if (lk_tab[i].tid == tid)
			return (int)i;
	return -1;
}

/* Adds the threads of this process not in the table yet (but SELF and the
 * agent's control thread) and signals them; how many were added. */
static int ask_new_threads(int self)
{
	int fd = open("/proc/self/task", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return 0;
	char buf[8192];
	int added = 0, pid = getpid();
	long n;
	while ((n = syscall(SYS_getdents64, fd, buf, sizeof(buf))) > 0) {
		for (long off = 0; off < n;) {
			struct {
				uint64_t ino;
				int64_t off;
				unsigned short reclen;
				unsigned char type;
				char name[];
			} *d = (void *)(buf + off);
			off += d->reclen;
			int tid = 0;
			for (const char *c = d->name; *c >= '0' && *c <= '9'; c++)
				tid = tid * 10 + (*c - '0');
			if (tid <= 0 || tid == self || tid == mt_ctl_tid || slot_of(tid) >= 0 || lk_n >= LK_THREADS)
				continue;
			struct lk_thread *t = &lk_tab[lk_n];
			memset(t, 0, sizeof(*t));
			t->tid = tid;
			t->state = T_ASKED;
			__atomic_store_n(&lk_n, lk_n + 1, __ATOMIC_RELEASE);
			if (syscall(SYS_tgkill, pid, tid, lk_sig) < 0)
				t->state = T_GONE;
			else
				added++;
		}
	}
	close(fd);
	return added;
}

static uint32_t count_state(int state)
{
	uint32_t c = 0;
	for (uint32_t i = 0; i < lk_n; i++)
		c += __atomic_load_n(&lk_tab[i].state, __ATOMIC_ACQUIRE) == state;
	return c;
}

/* Waits for the asked threads until DEADLINE; those that never answered
 * are skipped (their handler, if it ever runs, returns at once). */
static void wait_stopped(uint64_t deadline)
{
	for (;;) {
		uint32_t seen = __atomic_load_n(&lk_stopped, __ATOMIC_ACQUIRE);
		uint32_t pending = count_state(T_ASKED) + count_state(T_STOPPING);
		if (!pending)
			return;
		uint64_t now = mt_now_ns();
		if (now >= deadline)
			break;
		struct timespec ts = {0, 1000 * 1000};
		futex(&lk_stopped, FUTEX_WAIT_PRIVATE, seen, &ts);
	}
	for (uint32_t i = 0; i < lk_n; i++) {
		int want = T_ASKED;
		__atomic_compare_exchange_n(&lk_tab[i].state, &want, T_SKIPPED, 0, __ATOMIC_ACQ_REL,
					    __ATOMIC_RELAXED);
	}
	/* A handler past its claim finishes its copy in microseconds. */
	while (count_state(T_STOPPING))
		sched_yield();
}

static void release_threads(void)
{
	__atomic_store_n(&lk_on, 0, __ATOMIC_RELEASE);
	__atomic_fetch_add(&lk_release, 1, __ATOMIC_RELEASE);
	futex(&lk_release, FUTEX_WAKE_PRIVATE, INT32_MAX, NULL);
	/* The table is reused by the next check: wait (briefly) for the
	 * handlers to leave it. */
	uint64_t until = mt_now_ns() + 200ull * 1000 * 1000;
	while (count_state(T_STOPPED) && mt_now_ns() < until)
		sched_yield();
}

/* ---- memory ---- */

static ssize_t self_readv(void *arg, const struct mt_reach_io *io, size_t n, void *buf)
{
	(void)arg;
	struct iovec local = {buf, 0}, remote[1024];
	if (n > 1024)
		n = 1024;
	for (size_t i = 0; i < n; i++) {
		remote[i].iov_base = (void *)(uintptr_t)io[i].addr;
		remote[i].iov_len = io[i].len;
		local.iov_len += io[i].len;
	}
	return process_vm_readv(getpid(), &local, 1, remote, n, 0);
}

static void *map_or_null(size_t len)
{
	return len ? mt_sys_map((len + 4095) & ~(size_t)4095) : NULL;
}

static void unmap(void *p, size_t len)
{
	if (p)
		mt_sys_unmap(p, (len + 4095) & ~(size_t)4095);
}

/* /proc/self/maps as ranges with their protection, into M (cap entries). */
struct mapping {
	uint64_t lo, hi;
	int rw, anon, heapish;
};

static uint32_t read_maps(struct mapping *m, uint32_t cap, char *buf, size_t buflen)
{
	int fd = open("/proc/self/maps", O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return 0;
	size_t len = 0;
	ssize_t r;
	while (len < buflen - 1 && (r = read(fd, buf + len, buflen - 1 - len)) > 0)
		len += (size_t)r;
	close(fd);
	buf[len] = '\0';
	uint32_t n = 0;
	for (char *line = buf; *line && n < cap;) {
		char *nl = strchr(line, '\n');
		if (nl)
			*nl = '\0';
		unsigned long lo, hi, off, ino;
		char perms[8], dev[16];
		int name_at = 0;
		if (sscanf(line, "%lx-%lx %7s %lx %15s %lu %n", &lo, &hi, perms, &off, dev, &ino, &name_at) >= 6) {
			const char *name = name_at ? line + name_at : "";
			m[n].lo = lo;
			m[n].hi = hi;
			m[n].rw = perms[0] == 'r' && perms[1] == 'w';
			m[n].anon = ino == 0 && name[0] != '/';
			m[n].heapish = m[n].anon && (!name[0] || !strcmp(name, "[heap]"));
			n++;
		}
		if (!nl)
			break;
		line = nl + 1;
	}
	return n;
}

static const struct mapping *mapping_of(const struct mapping *m, uint32_t n, uint64_t a)
{
	for (uint32_t i = 0; i < n; i++)
		if (a >= m[i].lo && a < m[i].hi)
			return &m[i];
	return NULL;
}

/* ---- roots that need the loader: read before the threads stop ---- */

struct modules {
	struct range *r;
	uint32_t n;
};

static int module_cb(struct dl_phdr_info *info, size_t size, void *arg)
{
	(void)size;
	struct modules *ms = arg;
	int is_ld = info->dlpi_name && strstr(info->dlpi_name, "/ld-linux");
	for (int i = 0; i < info->dlpi_phnum; i++) {
		const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
		if (is_ld && ph->p_type == PT_LOAD && (ph->p_flags & PF_X)) {
			lk_ld_lo = info->dlpi_addr + ph->p_vaddr;
			lk_ld_hi = lk_ld_lo + ph->p_memsz;
		}
		if (ph->p_type != PT_LOAD || !(ph->p_flags & PF_W) || ms->n >= LK_MODULE_RANGES)
			continue;
		uint64_t lo = info->dlpi_addr + ph->p_vaddr, hi = lo + ph->p_memsz;
		if (lo >= lk_self_lo && hi <= lk_self_hi)
			continue; /* the agent's own data: its tables are not the program's roots */
		ms->r[ms->n++] = (struct range){lo, hi};
	}
	return 0;
}

static int self_cb(struct dl_phdr_info *info, size_t size, void *arg)
{
	(void)size;
	uint64_t me = (uint64_t)(uintptr_t)arg, lo = UINT64_MAX, hi = 0;
	int mine = 0;
	for (int i = 0; i < info->dlpi_phnum; i++) {
		const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
		if (ph->p_type != PT_LOAD)
			continue;
		uint64_t a = info->dlpi_addr + ph->p_vaddr, b = a + ph->p_memsz;
		if (a < lo)
			lo = a;
		if (b > hi)
			hi = b;
		if (me >= a && me < b)
			mine = 1;
	}
	if (mine) {
		lk_self_lo = lo;
		lk_self_hi = hi;
	}
	return mine;
}

/* ---- anonymous memory ---- */

#define ARENA_SCAN_MAX 4096

static int is_stack(uint64_t lo, uint64_t hi, uint64_t own_sp)
{
	if (own_sp >= lo && own_sp < hi)
		return 1;
	for (uint32_t i = 0; i < lk_n; i++)
		if (lk_tab[i].sp >= lo && lk_tab[i].sp < hi)
			return 1;
	return 0;
}

/* The resident pages of [LO, HI), scanned. */
static uint64_t scan_resident(struct mt_reach *r, uint64_t lo, uint64_t hi)
{
	unsigned char vec[16384];
	uint64_t done = 0;
	lo &= ~(uint64_t)4095;
	while (lo < hi) {
		uint64_t end = hi - lo > sizeof(vec) * 4096 ? lo + sizeof(vec) * 4096 : hi;
		size_t pages = (size_t)((end - lo + 4095) / 4096);
		if (mincore((void *)(uintptr_t)lo, end - lo, vec)) {
			lo = end;
			continue;
		}
		for (size_t i = 0; i < pages;) {
			if (!(vec[i] & 1)) {
				i++;
				continue;
			}
			size_t j = i;
			while (j < pages && (vec[j] & 1))
				j++;
			uint64_t a = lo + i * 4096, b = lo + j * 4096 < end ? lo + j * 4096 : end;
			mt_reach_range(r, a, b - a);
			done += b - a;
			i = j;
		}
		lo = end;
	}
	return done;
}

static uint64_t scan_anon(struct mt_reach *r, const struct mapping *maps, uint32_t nmaps, const struct range *own,
			  uint32_t nown, uint64_t own_sp)
{
	uint64_t done = 0;
	for (uint32_t i = 0; i < nmaps; i++) {
		const struct mapping *m = &maps[i];
		if (!m->rw || !m->heapish || is_stack(m->lo, m->hi, own_sp))
			continue;
		/* A tracked block inside: the allocator's mapping, not a root. */
		size_t lo = 0, hi = r->n;
		while (lo < hi) {
			size_t mid = (lo + hi) / 2;
			if (r->b[mid].start < m->lo)
				lo = mid + 1;
			else
				hi = mid;
		}
		if (lo < r->n && r->b[lo].start < m->hi)
			continue;
		/* The mapping less the agent's own ranges (the kernel merges
		 * neighbouring anonymous mappings into one line of maps). */
		uint64_t at = m->lo;
		while (at < m->hi) {
			uint64_t next = m->hi, skip_to = 0;
			for (uint32_t k = 0; k < nown; k++) {
				if (own[k].hi <= at || own[k].lo >= m->hi)
					continue;
				if (own[k].lo <= at) {
					if (own[k].hi > skip_to)
						skip_to = own[k].hi;
				} else if (own[k].lo < next) {
					next = own[k].lo;
				}
			}
			if (skip_to) {
				at = skip_to;
				continue;
			}
			done += scan_resident(r, at, next);
			at = next;
		}
	}
	return done;
}

/* ---- the check ---- */

struct collect {
	struct mt_reach_block *b;
	size_t n, cap;
};

static int collect_cb(uintptr_t ptr, uint64_t size, struct mt_sitex *site, void *arg)
{
	struct collect *c = arg;
	if (c->n >= c->cap)
		return 1;
	/* Blocks of the malloc family only: mmap'd regions and -f functions'
	 * allocations (pool memory inside malloc'd blocks) are not blocks one
	 * frees, and valgrind and LeakSanitizer do not count them either. */
	if (!site || site->fn >= MT_FN_COUNT || mt_fn_kinds[site->fn] != MT_KIND_ALLOC)
		return 0;
	c->b[c->n++] = (struct mt_reach_block){ptr, size, (uint64_t)(uintptr_t)site, 0, 0};
	return 0;
}

/* Per site accumulation: open addressing on the site's address. */
struct acc {
	uint64_t site, lost_o, lost_b, reach_o, reach_b;
};

static struct mt_live_leaks *table_for(uint32_t nsites)
{
	uint64_t a = __atomic_load_n(&mt_sh->leaks, __ATOMIC_ACQUIRE);
	struct mt_live_leaks *l = a && mt_in_arena((void *)(uintptr_t)a, sizeof(*l)) ? (void *)(uintptr_t)a : NULL;
	if (l && l->cap >= nsites)
		return l;
	/* The arena is never freed: a table with room to grow, replaced only
	 * when the sites outgrow it. */
	uint32_t cap = nsites < 256 ? 512 : nsites * 2;
	struct mt_live_leaks *n = mt_shared_alloc(sizeof(*n) + (size_t)cap * sizeof(n->s[0]));
	if (!n)
		return l;
	n->cap = cap;
	__atomic_store_n(&mt_sh->leaks, (uint64_t)(uintptr_t)n, __ATOMIC_RELEASE);
	return n;
}

int mt_leaks_check(int at_exit, char *msg, size_t msglen)
{
	/* The registers this thread holds at the call (callee-saved: what the
	 * program's frames above keep in them), before anything else. */
	uint64_t own_regs[8];
	__asm__ volatile("mov %%rbx, 0(%0)\n\tmov %%rbp, 8(%0)\n\tmov %%r12, 16(%0)\n\tmov %%r13, 24(%0)\n\t"
			 "mov %%r14, 32(%0)\n\tmov %%r15, 40(%0)\n\tmov %%rsp, 48(%0)\n\t"
			 "mov %%fs:0, %%rax\n\tmov %%rax, 56(%0)"
			 : : "r"(own_regs) : "rax", "memory");
	int ret = 0, busy = mt_tls_busy;
	mt_tls_busy = 1;
	if (!MT_OPT(stacks) || !__atomic_load_n(&mt_g.tracking, __ATOMIC_ACQUIRE) || MT_OPT(sample_period) > 1) {
		snprintf(msg, msglen, "the leak check needs every allocation tracked: start the program with "
			 "memtap run --leaks (or --sample=1), or attach with memtap attach --leaks");
		mt_tls_busy = busy;
		return -EINVAL;
	}
	if (__atomic_exchange_n(&lk_lock, 1, __ATOMIC_ACQUIRE)) {
		snprintf(msg, msglen, "a leak check is already running in this process; try again");
		mt_tls_busy = busy;
		return -EBUSY;
	}
	struct modules mods = {0};
	struct mapping *maps = NULL;
	char *mapsbuf = NULL;
	struct mt_reach_block *blocks = NULL, *tmp = NULL;
	uint32_t *stack = NULL;
	uint8_t *buf = NULL;
	struct acc *acc = NULL;
	size_t cap = 0, nacc = 0, acap = 0;
	const size_t maps_cap = 65536, mapsbuf_len = 16u << 20, buflen = 2048u * (32768 + 12);

	/* 1: what takes the loader's lock, while everything runs. */
	if (!lk_tab && !(lk_tab = mt_sys_map(LK_THREADS * sizeof(*lk_tab)))) {
		ret = -ENOMEM;
		goto out;
	}
	if (!lk_self_hi)
		dl_iterate_phdr(self_cb, (void *)(uintptr_t)mt_leaks_check);
	if (!lk_tls_size) {
		void (*info)(size_t *, size_t *) = (void (*)(size_t *, size_t *))dlsym(RTLD_DEFAULT,
											 "_dl_get_tls_static_info");
		size_t align = 0;
		if (info)
			info(&lk_tls_size, &align);
		if (!lk_tls_size)
			lk_tls_size = 4096;
	}
	mods.r = map_or_null(LK_MODULE_RANGES * sizeof(*mods.r));
	maps = map_or_null(maps_cap * sizeof(*maps));
	mapsbuf = map_or_null(mapsbuf_len);
	buf = map_or_null(buflen);
	if (!mods.r || !maps || !mapsbuf || !buf) {
		ret = -ENOMEM;
		goto out;
	}
	dl_iterate_phdr(module_cb, &mods);
	if (pick_signal() < 0) {
		snprintf(msg, msglen, "no free real-time signal to stop the threads with (SIGRTMAX-2 down to "
			 "SIGRTMAX-11 all have handlers)");
		ret = -EBUSY;
		goto out;
	}

	/* 2: stop the other threads. */
	int self = gettid_raw();
	uint64_t t0 = mt_now_ns();
	lk_n = 0;
	__atomic_store_n(&lk_stopped, 0, __ATOMIC_RELAXED);
	__atomic_store_n(&lk_on, 1, __ATOMIC_RELEASE);
	uint64_t deadline = t0 + LK_STOP_WAIT_NS;
	/* Threads made while the first ones were being signalled: again, until
	 * no new one shows up (a stopped thread makes none). */
	for (int round = 0; round < 8 && ask_new_threads(self) > 0; round++)
		wait_stopped(deadline);
	uint32_t stopped = count_state(T_STOPPED), skipped = count_state(T_SKIPPED);
	uint64_t t_stopped = mt_now_ns();

	/* 3: the blocks, read without locks (every thread that could be
	 * changing the table is stopped). */
	uint32_t nmaps = read_maps(maps, (uint32_t)maps_cap, mapsbuf, mapsbuf_len);
	cap = mt_live_count() + 64;
	blocks = map_or_null(cap * sizeof(*blocks));
	tmp = map_or_null(cap * sizeof(*tmp));
	stack = map_or_null(cap * sizeof(*stack));
	if (!blocks || !tmp || !stack) {
		release_threads();
		ret = -ENOMEM;
		goto out;
	}
	struct collect col = {blocks, 0, cap};
	mt_live_each(collect_cb, &col);
	mt_reach_sort(blocks, col.n, tmp);
	uint64_t t_sorted = mt_now_ns();
	struct mt_reach r = {.b = blocks, .n = col.n, .stack = stack, .buf = buf, .buflen = buflen,
			     .readv = self_readv, .glibc_headers = mt_g.usable_fast};

	/* 4: the roots.  First the dynamic linker's own blocks (thread vectors
	 * of TLS, dlopen's bookkeeping): it holds them from memory no scan
	 * sees (the descriptors of exited threads in glibc's stack cache), so
	 * they count as reachable, as LeakSanitizer counts them. */
	for (size_t i = 0; i < col.n; i++) {
		const struct mt_sitex *st = (const struct mt_sitex *)(uintptr_t)blocks[i].site;
		if (lk_ld_hi && st->nframes && st->frames[0] >= lk_ld_lo && st->frames[0] < lk_ld_hi) {
			blocks[i].reached = 1;
			stack[r.depth++] = (uint32_t)i;
		}
	}
	uint64_t roots = 0;
	for (uint32_t i = 0; i < lk_n; i++) {
		const struct lk_thread *t = &lk_tab[i];
		uint64_t sp = 0, fs = 0;
		if (t->state == T_STOPPED) {
			mt_reach_words(&r, t->gregs, NGREG);
			sp = t->gregs[REG_RSP];
			fs = t->fs;
		} else if (t->state == T_SKIPPED) {
			/* Left running (it blocks the signal): its stack as far as
			 * /proc says, its registers unknown. */
			char path[64], line[512];
			snprintf(path, sizeof(path), "/proc/self/task/%d/syscall", t->tid);
			int fd = open(path, O_RDONLY | O_CLOEXEC);
			ssize_t n = fd >= 0 ? read(fd, line, sizeof(line) - 1) : -1;
			if (fd >= 0)
				close(fd);
			if (n > 0) {
				line[n] = '\0';
				/* "NR a1 .. a6 SP PC" or "-1 SP PC": the second last word */
				char *w[10];
				int nw = 0;
				for (char *c = line; *c && nw < 10;) {
					while (*c == ' ' || *c == '\n')
						*c++ = '\0';
					if (*c)
						w[nw++] = c;
					while (*c && *c != ' ' && *c != '\n')
						c++;
				}
				if (nw >= 3)
					sp = strtoull(w[nw - 2], NULL, 16);
			}
		}
		lk_tab[i].sp = sp;
		const struct mapping *m = sp ? mapping_of(maps, nmaps, sp) : NULL;
		if (m) {
			uint64_t lo = sp - 128 >= m->lo ? sp - 128 : m->lo;
			/* A stack inside a block (pthread_attr_setstack on heap
			 * memory): to the block's end, not the heap's. */
			long k = mt_reach_find(&r, sp);
			uint64_t hi = k >= 0 ? blocks[k].start + blocks[k].size : m->hi;
			mt_reach_range(&r, lo, hi - lo);
			roots += hi - lo;
		}
		const struct mapping *mf = fs ? mapping_of(maps, nmaps, fs) : NULL;
		if (mf && mt_reach_find(&r, fs) < 0) {
			uint64_t lo = fs - lk_tls_size >= mf->lo ? fs - lk_tls_size : mf->lo;
			uint64_t hi = fs + 4096 <= mf->hi ? fs + 4096 : mf->hi;
			mt_reach_range(&r, lo, hi - lo);
			roots += hi - lo;
		}
	}
	/* The thread running the check: its callee-saved registers, its stack
	 * above this frame, its TLS (the control thread is the agent's: none). */
	if (self != mt_ctl_tid) {
		mt_reach_words(&r, own_regs, 6);
		const struct mapping *m = mapping_of(maps, nmaps, own_regs[6]);
		if (m) {
			mt_reach_range(&r, own_regs[6], m->hi - own_regs[6]);
			roots += m->hi - own_regs[6];
		}
		const struct mapping *mf = mapping_of(maps, nmaps, own_regs[7]);
		if (mf) {
			uint64_t lo = own_regs[7] - lk_tls_size >= mf->lo ? own_regs[7] - lk_tls_size : mf->lo;
			uint64_t hi = own_regs[7] + 4096 <= mf->hi ? own_regs[7] + 4096 : mf->hi;
			mt_reach_range(&r, lo, hi - lo);
			roots += hi - lo;
		}
	}
	for (uint32_t i = 0; i < mods.n; i++) {
		mt_reach_range(&r, mods.r[i].lo, mods.r[i].hi - mods.r[i].lo);
		roots += mods.r[i].hi - mods.r[i].lo;
	}
	/* Anonymous memory the program mapped itself (the arenas of runtimes:
	 * CPython's obmalloc, a JIT's heap) may hold the only pointer to a
	 * block: valgrind scans it, and so does this check.  Not the agent's
	 * own (its arena, this check's tables), not thread stacks (scanned from
	 * their stack pointer above), not the allocator's mappings (those that
	 * hold tracked blocks), and only resident pages (mincore): a sparse
	 * reservation of gigabytes costs nothing. */
	struct range own[8 + ARENA_SCAN_MAX];
	uint32_t nown = 0;
	own[nown++] = (struct range){(uint64_t)(uintptr_t)mods.r, (uint64_t)(uintptr_t)mods.r + LK_MODULE_RANGES * sizeof(*mods.r)};
	own[nown++] = (struct range){(uint64_t)(uintptr_t)maps, (uint64_t)(uintptr_t)maps + maps_cap * sizeof(*maps)};
	own[nown++] = (struct range){(uint64_t)(uintptr_t)mapsbuf, (uint64_t)(uintptr_t)mapsbuf + mapsbuf_len};
	own[nown++] = (struct range){(uint64_t)(uintptr_t)buf, (uint64_t)(uintptr_t)buf + buflen};
	own[nown++] = (struct range){(uint64_t)(uintptr_t)blocks, (uint64_t)(uintptr_t)blocks + cap * sizeof(*blocks)};
	own[nown++] = (struct range){(uint64_t)(uintptr_t)tmp, (uint64_t)(uintptr_t)tmp + cap * sizeof(*tmp)};
	own[nown++] = (struct range){(uint64_t)(uintptr_t)stack, (uint64_t)(uintptr_t)stack + cap * sizeof(*stack)};
	own[nown++] = (struct range){(uint64_t)(uintptr_t)lk_tab, (uint64_t)(uintptr_t)lk_tab + LK_THREADS * sizeof(*lk_tab)};
	const uint64_t(*chunks)[2];
	uint32_t nchunks = mt_arena_chunks(&chunks);
	int arena_unknown = nchunks > ARENA_SCAN_MAX;
	for (uint32_t i = 0; i < nchunks && i < ARENA_SCAN_MAX; i++)
		own[nown++] = (struct range){chunks[i][0], chunks[i][1]};
	if (!arena_unknown)
		roots += scan_anon(&r, maps, nmaps, own, nown, own_regs[6]);
	/* Attached to a running process: blocks allocated before the attach are
	 * not in the table, and may hold the only pointer to tracked ones.  The
	 * allocator's memory between tracked blocks is scanned as roots
	 * (free chunks too: stale pointers there can hide a leak, never invent
	 * one). */
	if (mt_g.attached_mode && col.n) {
		for (uint32_t i = 0; i < nmaps; i++) {
			if (!maps[i].rw || !maps[i].heapish)
				continue;
			long k = mt_reach_find(&r, maps[i].lo);
			/* the first block at or after the mapping's start */
			size_t lo = 0, hi = col.n;
			while (lo < hi) {
				size_t mid = (lo + hi) / 2;
				if (blocks[mid].start < maps[i].lo)
					lo = mid + 1;
				else
					hi = mid;
			}
			if (lo >= col.n || blocks[lo].start >= maps[i].hi)
				continue; /* no tracked block: not the allocator's (or nothing to hide) */
			uint64_t at = k >= 0 ? blocks[k].start + blocks[k].size : maps[i].lo;
			for (size_t j = lo; j < col.n && blocks[j].start < maps[i].hi; j++) {
				if (blocks[j].start > at) {
					mt_reach_range(&r, at, blocks[j].start - at);
					roots += blocks[j].start - at;
				}
				uint64_t e = blocks[j].start + blocks[j].size;
				if (e > at)
					at = e;
			}
			if (maps[i].hi > at) {
				mt_reach_range(&r, at, maps[i].hi - at);
				roots += maps[i].hi - at;
			}
		}
	}

	/* 5: everything the roots reach. */
	uint64_t t_roots = mt_now_ns();
	mt_reach_drain(&r);

	/* Per site, into the live file, before the threads run again (the
	 * site table is only read here). */
	uint32_t nsites = mt_sites_count() + 64;
	acap = 1;
	while (acap < 2 * (size_t)nsites)
		acap <<= 1;
	acc = map_or_null(acap * sizeof(*acc));
	uint64_t ub = 0, un = 0, rb = 0, rn = 0;
	for (size_t i = 0; i < col.n; i++) {
		const struct mt_reach_block *k = &blocks[i];
		if (k->reached) {
			rb += k->size;
			rn++;
		} else {
			ub += k->size;
			un++;
		}
		if (!acc)
			continue;
		size_t h = (size_t)((k->site >> 4) * 0x9e3779b97f4a7c15ull) & (acap - 1);
		while (acc[h].site && acc[h].site != k->site)
			h = (h + 1) & (acap - 1);
		if (!acc[h].site) {
			if (nacc + 1 >= acap) /* full: not this site (flagged below) */
				continue;
			acc[h].site = k->site;
			nacc++;
		}
		if (k->reached) {
			acc[h].reach_o++;
			acc[h].reach_b += k->size;
		} else {
			acc[h].lost_o++;
			acc[h].lost_b += k->size;
		}
	}
	uint64_t t_scanned = mt_now_ns();
	release_threads();
	uint64_t pause = mt_now_ns() - t0;

	struct mt_live_leaks *l = table_for((uint32_t)nacc);
	if (!l) {
		snprintf(msg, msglen, "no room left in the live file for the leak table");
		ret = -ENOMEM;
		goto out;
	}
	__atomic_fetch_add(&l->seq, 1, __ATOMIC_ACQ_REL);
	l->threads = stopped + (self != mt_ctl_tid); /* the checking thread, unless the agent's */
	l->unstopped = skipped;
	l->flags = (skipped ? MT_LEAKS_UNSTOPPED : 0) | (mt_g.attached_mode ? MT_LEAKS_ATTACHED : 0) |
		   (at_exit ? MT_LEAKS_AT_EXIT : 0) | (!acc || nacc > l->cap ? MT_LEAKS_TRUNCATED : 0);
	l->check_ns = (uint64_t)time(NULL) * 1000000000ull;
	struct timespec rt;
	if (clock_gettime(CLOCK_REALTIME, &rt) == 0)
		l->check_ns = (uint64_t)rt.tv_sec * 1000000000ull + (uint64_t)rt.tv_nsec;
	l->pause_ns = pause;
	l->roots_bytes = roots;
	l->unreachable_bytes = ub;
	l->unreachable_blocks = un;
	l->reachable_bytes = rb;
	l->reachable_blocks = rn;
	uint32_t w = 0;
	for (size_t h = 0; acc && h < acap && w < l->cap; h++)
		if (acc[h].site)
			l->s[w++] = (struct mt_live_leak_site){acc[h].site, acc[h].lost_o, acc[h].lost_b, acc[h].reach_o,
							       acc[h].reach_b};
	l->nsites = w;
	__atomic_fetch_add(&l->seq, 1, __ATOMIC_RELEASE);
	snprintf(msg, msglen,
		 "definitely lost: %llu bytes in %llu blocks\nstill reachable: %llu bytes in %llu blocks\n"
		 "threads stopped: %u%s%s\npause: %.3f ms (stop %.3f, blocks %.3f, roots %.3f, blocks reached %.3f ms), "
		 "%llu bytes of roots, %llu bytes scanned\n",
		 (unsigned long long)ub, (unsigned long long)un, (unsigned long long)rb, (unsigned long long)rn,
		 stopped + (self != mt_ctl_tid), skipped ? ", not stopped (signal blocked): " : "", skipped ? "some" : "",
		 (double)pause / 1e6, (double)(t_stopped - t0) / 1e6, (double)(t_sorted - t_stopped) / 1e6,
		 (double)(t_roots - t_sorted) / 1e6, (double)(t_scanned - t_roots) / 1e6, (unsigned long long)roots,
		 (unsigned long long)r.scanned_bytes);
	if (skipped) {
		char *e = msg + strlen(msg);
		snprintf(e, msglen - (size_t)(e - msg), "warning: %u threads could not be stopped: their registers "
			 "were not scanned, blocks only they hold may be counted as lost\n", skipped);
	}
out:
	unmap(mods.r, LK_MODULE_RANGES * sizeof(*mods.r));
	unmap(maps, maps_cap * sizeof(*maps));
	unmap(mapsbuf, mapsbuf_len);
	unmap(buf, buflen);
	unmap(blocks, cap * sizeof(*blocks));
	unmap(tmp, cap * sizeof(*tmp));
	unmap(stack, cap * sizeof(*stack));
	unmap(acc, acap * sizeof(*acc));
	__atomic_store_n(&lk_lock, 0, __ATOMIC_RELEASE);
	mt_tls_busy = busy;
	if (ret == -ENOMEM && !msg[0])
		snprintf(msg, msglen, "out of memory for the leak check");
	return ret;
}
