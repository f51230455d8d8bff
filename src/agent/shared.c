/*
 * The agent's side of the live counter file (include/memtap/live.h): makes
 * the file and maps it, hands out its arena (counter blocks, sites, pool
 * tables, the reset baseline), gives a fork child a file of its own,
 * records how the process ends, and removes the file when nobody will read
 * it.
 *
 * Where no file can be made (no writable tmpfs, an old kernel), the arena is
 * private memory of the same size: the agent counts as before and writes its
 * own dumps, but the memtap command cannot read it from outside.
 *
 * Memory is never touched before it is backed: a write to a page of a full
 * tmpfs would raise SIGBUS in the traced program, so the arena grows by
 * MADV_POPULATE_WRITE (which fails cleanly instead) in steps of 64 KiB.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "agent.h"
#include "memtap/live.h"

#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23
#endif
#define POPULATE_STEP (64u * 1024)

struct mt_live_hdr *mt_sh;
static char live_path[PATH_MAX];
static int arena_lock;
static uint64_t populated; /* bytes of the file backed so far */

static uint64_t round_up(uint64_t v, uint64_t a)
{
	return (v + a - 1) & ~(a - 1);
}

/* Raw system calls: the agent's exported mmap wrappers must not see its own
 * memory.  (Built with ThreadSanitizer, libc's, which TSan must see.) */
static void *sys_mmap(void *addr, size_t len, int prot, int flags, int fd)
{
#ifdef __SANITIZE_THREAD__
	void *p = mmap(addr, len, prot, flags, fd, 0);
	return p == MAP_FAILED ? NULL : p;
#else
	long r = syscall(SYS_mmap, addr, len, prot, flags, fd, 0);
	return r < 0 && r > -4096 ? NULL : (void *)r;
#endif
}

static int populate(uint8_t *base, uint64_t from, uint64_t to)
{
	if (to <= from)
		return 0;
	return syscall(SYS_madvise, base + from, (size_t)(to - from), MADV_POPULATE_WRITE) ? -errno : 0;
}

static int live_dir(char *dir, size_t len)
{
	return mt_private_dir(mt_live_rundir(), dir, len);
}

/* A new file for this process image, MT_LIVE_CAP bytes (sparse): its
 * descriptor, or -errno.  The path goes to PATH. */
static int live_create(char *path, size_t len, uint64_t start_ns)
{
	char dir[PATH_MAX];
	int err = live_dir(dir, sizeof(dir));
	if (err)
		return err;
	int n = snprintf(path, len, "%s/%d-%llu.%s", dir, (int)getpid(), (unsigned long long)start_ns,
			 MT_LIVE_EXT);
	if (n < 0 || (size_t)n >= len)
		return -ENAMETOOLONG;
	int fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (fd < 0)
		return -errno;
	if (ftruncate(fd, (off_t)MT_LIVE_CAP) < 0) {
		err = -errno;
		close(fd);
		unlink(path);
		return err;
	}
	return fd;
}


/* Who this process is, into the header (at start-up and in a fork child). */
static void identify(struct mt_live_hdr *h)
{
	h->pid = (uint32_t)getpid();
	h->ppid = (uint32_t)getppid();
	h->uid = (uint32_t)geteuid();
	h->proc_start = mt_proc_start((int)h->pid, NULL);
	h->start_ns = mt_now_ns();
	mt_proc_cmdline(0, h->command, sizeof(h->command));
	ssize_t n = readlink("/proc/self/exe", h->exe, sizeof(h->exe) - 1);
	h->exe[n > 0 ? n : 0] = '\0';
}

int mt_shared_setup(void)
{
	uint64_t start_ns = mt_now_ns();
	uint8_t *m = NULL;
	uint32_t flags = 0;
	int fd = getenv("MEMTAP_NO_LIVE") ? -ENOENT : live_create(live_path, sizeof(live_path), start_ns);
	if (fd >= 0) {
		m = sys_mmap(NULL, MT_LIVE_CAP, PROT_READ | PROT_WRITE, MAP_SHARED, fd);
		close(fd);
		if (m && populate(m, 0, round_up(sizeof(struct mt_live_hdr), POPULATE_STEP)) == 0) {
			flags = MT_LIVE_F_SHARED;
			populated = round_up(sizeof(struct mt_live_hdr), POPULATE_STEP);
		} else {
			if (m)
				syscall(SYS_munmap, m, MT_LIVE_CAP);
			m = NULL;
			unlink(live_path);
		}
	}
	if (!m) {
		live_path[0] = '\0';
		m = sys_mmap(NULL, MT_LIVE_CAP, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1);
		if (!m)
			return -ENOMEM;
		populated = MT_LIVE_CAP;
	}
	struct mt_live_hdr *h = (struct mt_live_hdr *)m;
	memcpy(h->magic, MT_LIVE_MAGIC, sizeof(h->magic));
	h->hdr_size = sizeof(*h);
	h->nfuncs = MT_FN_TOTAL;
	h->nbuiltin = MT_FN_COUNT;
	h->hist_buckets = MT_HIST_BUCKETS;
	h->block_size = sizeof(struct mt_thread);
	h->site_size = sizeof(struct mt_live_site);
	h->pool_slots = MT_LIVE_POOL_SLOTS;
	h->base = (uint64_t)(uintptr_t)m;
	h->cap = MT_LIVE_CAP;
	h->flags = flags;
	identify(h);
	h->start_ns = start_ns;
	for (int f = 0; f < MT_FN_COUNT; f++) {
		snprintf(h->names[f], sizeof(h->names[f]), "%s", mt_fn_names[f]);
		h->kinds[f] = mt_fn_kinds[f];
	}
	for (int f = MT_FN_COUNT; f < MT_FN_TOTAL; f++)
		h->kinds[f] = MT_KIND_OTHER;
	__atomic_store_n(&h->used, round_up(sizeof(*h), 64), __ATOMIC_RELEASE);
	/* Last: a reader that sees the version sees a whole header. */
	__atomic_store_n(&h->version, MT_LIVE_VERSION, __ATOMIC_RELEASE);
	mt_sh = h;
	return 0;
}

void *mt_shared_alloc(size_t size)
{
	struct mt_live_hdr *h = mt_sh;
	uint8_t *base = (uint8_t *)h;
	size = round_up(size, 64);
	while (__atomic_exchange_n(&arena_lock, 1, __ATOMIC_ACQUIRE))
		sched_yield();
	uint64_t at = h->used;
	void *p = NULL;
	if (at + size <= h->cap) {
		uint64_t want = round_up(at + size, POPULATE_STEP);
		if (want <= populated || populate(base, populated, want) == 0) {
			if (want > populated)
				populated = want;
			p = base + at;
			/* Release: a reader that sees the new end sees what is below. */
			__atomic_store_n(&h->used, at + size, __ATOMIC_RELEASE);
		}
	}
	__atomic_store_n(&arena_lock, 0, __ATOMIC_RELEASE);
	return p;
}

int mt_shared_is_file(void)
{
	return (mt_sh->flags & MT_LIVE_F_SHARED) != 0;
}

const char *mt_shared_path(void)
{
	return live_path;
}

/* In a fork child (single-threaded, before anything else counts): the
 * parent's file is the parent's, so the child moves its arena, at the same
 * addresses, into a file of its own (or into private memory with
 * FOLLOW = 0, or when no file can be made): one mmap MAP_FIXED replaces the
 * mapping whole. */
void mt_shared_fork_child(int follow)
{
	struct mt_live_hdr *h = mt_sh;
	uint8_t *base = (uint8_t *)h;
	uint64_t used = h->used, start_ns = mt_now_ns();
	uint8_t *tmp = NULL;
	int fd = -ENOENT;
	arena_lock = 0; /* a thread of the parent's may have held it */
	if (follow && (h->flags & MT_LIVE_F_SHARED))
		fd = live_create(live_path, sizeof(live_path), start_ns);
	if (fd >= 0) {
		tmp = sys_mmap(NULL, MT_LIVE_CAP, PROT_READ | PROT_WRITE, MAP_SHARED, fd);
		if (tmp && populate(tmp, 0, round_up(used, POPULATE_STEP)) == 0) {
			memcpy(tmp, base, used);
			if (sys_mmap(base, MT_LIVE_CAP, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED, fd)) {
				syscall(SYS_munmap, tmp, MT_LIVE_CAP);
				close(fd);
				populated = round_up(used, POPULATE_STEP);
				identify(h);
				h->start_ns = start_ns;
				return;
			}
		}
		if (tmp)
			syscall(SYS_munmap, tmp, MT_LIVE_CAP);
		close(fd);
		unlink(live_path);
	}
	/* Private memory: the child never writes into its parent's file. */
	live_path[0] = '\0';
	tmp = sys_mmap(NULL, MT_LIVE_CAP, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1);
	if (tmp) {
		memcpy(tmp, base, used);
		syscall(SYS_mremap, tmp, MT_LIVE_CAP, MT_LIVE_CAP, MREMAP_MAYMOVE | MREMAP_FIXED, base);
	} else {
		/* No memory at all: drop the counts rather than share them. */
		sys_mmap(base, MT_LIVE_CAP, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED |
			 MAP_NORESERVE, -1);
	}
	populated = MT_LIVE_CAP;
	h->flags &= ~MT_LIVE_F_SHARED;
	identify(h);
	h->start_ns = start_ns;
}

int mt_shared_spool_path(char *out, size_t len)
{
	static uint32_t next;
	char dir[PATH_MAX];
	int err = live_dir(dir, sizeof(dir));
	if (err)
		return err;
	uint32_t n = __atomic_fetch_add(&next, 1, __ATOMIC_RELAXED);
	int k = snprintf(out, len, "%s/%u-%llu-%u.mtp", dir, mt_sh->pid, (unsigned long long)mt_sh->start_ns, n);
	return k > 0 && (size_t)k < len ? 0 : -ENAMETOOLONG;
}

void mt_shared_end(uint32_t how, uint32_t code)
{
	struct mt_live_hdr *h = mt_sh;
	if (!h)
		return;
	uint32_t was = __atomic_load_n(&h->end, __ATOMIC_ACQUIRE);
	/* _exit's or a signal's record is more precise than the exit
	 * handlers' that may run after it. */
	if (was != MT_LIVE_RUNNING && was != MT_LIVE_DETACHED)
		return;
	h->end_code = code;
	h->end_ns = mt_now_ns();
	/* A system call: fine in the fatal-signal handler too. */
	struct rusage ru;
	if (getrusage(RUSAGE_SELF, &ru) == 0 && ru.ru_maxrss > 0)
		h->maxrss_kb = ru.ru_maxrss > UINT32_MAX ? UINT32_MAX : (uint32_t)ru.ru_maxrss;
	__atomic_store_n(&h->end, how, __ATOMIC_RELEASE);
}

int mt_session_alive(void)
{
	int pid = __atomic_load_n(&mt_g.session_pid, __ATOMIC_ACQUIRE);
	if (pid <= 0 || !live_path[0])
		return 0;
	uint64_t start = mt_proc_start(pid, NULL);
	return start && start == mt_g.session_start;
}

void mt_shared_remove(void)
{
	if (live_path[0])
		unlink(live_path);
	live_path[0] = '\0';
}

/* ---- fatal signals ----
 *
 * A process killed by a signal runs no exit handlers.  For the signals that
 * mean a crash, the agent notes which one in the header, then lets it do
 * what it would have done: the handler is reset on entry (SA_RESETHAND) and
 * the signal raised again, so it is delivered, with its default action, as
 * soon as the handler returns (for a fault, before the faulting instruction
 * runs again).  Only where the program left the default: a handler of the
 * program's, or one it installs later, is never replaced. */
static const int fatal_signals[] = {SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGABRT, SIGSYS, SIGTRAP};

static void on_fatal(int sig)
{
	int saved = errno;
	mt_shared_end(MT_LIVE_SIGNAL, (uint32_t)sig);
	raise(sig);
	errno = saved;
}

void mt_shared_catch_fatal(void)
{
	for (size_t i = 0; i < sizeof(fatal_signals) / sizeof(fatal_signals[0]); i++) {
		struct sigaction old, sa;
		if (sigaction(fatal_signals[i], NULL, &old) || (old.sa_flags & SA_SIGINFO) ||
		    old.sa_handler != SIG_DFL)
			continue;
		memset(&sa, 0, sizeof(sa));
		sa.sa_handler = on_fatal;
		sa.sa_flags = SA_RESETHAND | SA_ONSTACK | SA_RESTART;
		sigemptyset(&sa.sa_mask);
		sigaction(fatal_signals[i], &sa, NULL);
	}
}

/* With call sites: the process's mappings, into the arena (readers need
 * them to symbolize a process that is gone, and one that lived too briefly
 * for the memtap command to see it).  At start and at the end: a module
 * loaded and unloaded in between is known only to a reader that saw it. */
void mt_shared_maps_publish(void)
{
	uint32_t n;
	struct mt_mapping *m = mt_maps_read(&n);
	if (!m)
		return;
	struct mt_mapping *d = n ? mt_shared_alloc(n * sizeof(*d)) : NULL;
	if (d) {
		memcpy(d, m, n * sizeof(*d));
		__atomic_store_n(&mt_sh->nmaps, n, __ATOMIC_RELAXED);
		__atomic_store_n(&mt_sh->maps, (uint64_t)(uintptr_t)d, __ATOMIC_RELEASE);
		__atomic_fetch_add(&mt_sh->maps_gen, 1, __ATOMIC_RELAXED);
	}
	mt_maps_free(m, n);
}
