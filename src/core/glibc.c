/*
 * glibc's allocator seen from its memory (include/memtap/glibc.h): the
 * reader the agent runs on its own process and the memtap command on
 * another.  It allocates nothing and reads the process only through
 * /proc and process_vm_readv, so a heap unmapped under it is an error
 * code, never a fault (the agent's control thread reads its own process
 * this way for that reason).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "memtap/glibc.h"

void mt_stats_add(struct mt_alloc_stats *s, const char *key, uint64_t value)
{
	if (s->n >= MT_STATS_MAX)
		return;
	snprintf(s->v[s->n].key, sizeof(s->v[0].key), "%s", key);
	s->v[s->n].value = value;
	s->n++;
}

int mt_stats_get(const struct mt_alloc_stats *s, const char *key, uint64_t *value)
{
	for (uint32_t i = 0; i < s->n && i < MT_STATS_MAX; i++)
		if (!strncmp(s->v[i].key, key, sizeof(s->v[i].key))) {
			*value = s->v[i].value;
			return 0;
		}
	return -1;
}

void mt_seq_begin(uint32_t *seq)
{
	/* An acquire-release read-modify-write: the writes that follow stay
	 * after it (no fence: ThreadSanitizer does not model fences). */
	__atomic_fetch_or(seq, 1, __ATOMIC_ACQ_REL);
}

void mt_seq_end(uint32_t *seq)
{
	__atomic_store_n(seq, (__atomic_load_n(seq, __ATOMIC_RELAXED) | 1) + 1, __ATOMIC_RELEASE);
}

/* Word by word, so the copy of a struct another process may be rewriting is
 * made of whole words; the caller checks the sequence around it. */
static int seq_copy(void *dst, const void *src, size_t n, const uint32_t *seq)
{
	for (int tries = 0; tries < 8; tries++) {
		uint32_t s0 = __atomic_load_n(seq, __ATOMIC_ACQUIRE);
		if (s0 & 1) {
			struct timespec ts = {0, 1000000};
			nanosleep(&ts, NULL);
			continue;
		}
		const uint64_t *s = src;
		uint64_t *d = dst;
		for (size_t i = 0; i < n / 8; i++)
			d[i] = __atomic_load_n(&s[i], __ATOMIC_ACQUIRE); /* the check below stays after */
		if (__atomic_load_n(seq, __ATOMIC_RELAXED) == s0)
			return 0;
	}
	return -EAGAIN;
}

static void clamp_text(char *s, size_t n)
{
	s[n - 1] = '\0';
}

int mt_stats_copy(struct mt_alloc_stats *dst, const struct mt_alloc_stats *src)
{
	_Static_assert(sizeof(*dst) % 8 == 0, "copied by words");
	int r = seq_copy(dst, src, sizeof(*dst), &src->seq);
	if (dst->n > MT_STATS_MAX)
		dst->n = MT_STATS_MAX;
	clamp_text(dst->allocator, sizeof(dst->allocator));
	clamp_text(dst->source, sizeof(dst->source));
	for (uint32_t i = 0; i < dst->n; i++)
		clamp_text(dst->v[i].key, sizeof(dst->v[i].key));
	dst->seq = 0;
	return r;
}

int mt_glibc_copy(struct mt_glibc *dst, const struct mt_glibc *src)
{
	_Static_assert(sizeof(*dst) % 8 == 0, "copied by words");
	int r = seq_copy(dst, src, sizeof(*dst), &src->seq);
	if (dst->narenas > MT_GLIBC_ARENAS)
		dst->narenas = MT_GLIBC_ARENAS;
	if (dst->nheaps > MT_GLIBC_HEAPS)
		dst->nheaps = MT_GLIBC_HEAPS;
	if (dst->nthreads > MT_GLIBC_THREADS)
		dst->nthreads = MT_GLIBC_THREADS;
	if (dst->nchanges > MT_GLIBC_CHANGES)
		dst->nchanges = MT_GLIBC_CHANGES;
	dst->seq = 0;
	return r;
}

/* ---- reading the process ---- */

static int peek(pid_t pid, uint64_t addr, void *buf, size_t n)
{
	struct iovec local = {buf, n}, remote = {(void *)(uintptr_t)addr, n};
	ssize_t r = syscall(SYS_process_vm_readv, pid, &local, 1UL, &remote, 1UL, 0UL);
	return r == (ssize_t)n ? 0 : -EFAULT;
}

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* Lines of a /proc file without stdio (nothing allocated): calls FN on each. */
static int each_line(const char *path, void (*fn)(const char *line, void *arg), void *arg)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	char buf[8192], line[1024];
	size_t ll = 0;
	ssize_t n;
	while ((n = read(fd, buf, sizeof(buf))) > 0) {
		for (ssize_t i = 0; i < n; i++) {
			if (buf[i] != '\n') {
				if (ll < sizeof(line) - 1)
					line[ll++] = buf[i];
				continue;
			}
			line[ll] = '\0';
			fn(line, arg);
			ll = 0;
		}
	}
	if (ll) {
		line[ll] = '\0';
		fn(line, arg);
	}
	close(fd);
	return 0;
}

struct maps_scan {
	pid_t pid;
	struct mt_glibc *g;
	uint64_t heap_start, heap_end; /* [heap] */
	uint64_t cand_start, cand_end; /* an aligned rw-p anonymous mapping, waiting for its ---p tail */
};

static void add_heap(struct maps_scan *ms, uint64_t start, uint64_t rw_end)
{
	struct mt_glibc *g = ms->g;
	uint64_t hi[4]; /* ar_ptr, prev, size, mprotect_size */
	if (peek(ms->pid, start, hi, sizeof(hi)))
		return;
	/* heap_info as new_heap() writes it: an arena pointer inside some
	 * heap, sizes within HEAP_MAX_SIZE, the in-use size within the
	 * read-write part. */
	if (!hi[0] || hi[2] > MT_GLIBC_HEAP_MAX || hi[3] > MT_GLIBC_HEAP_MAX || hi[2] > rw_end - start ||
	    (hi[1] && (hi[1] & (MT_GLIBC_HEAP_MAX - 1))))
		return;
	if (g->nheaps >= MT_GLIBC_HEAPS) {
		g->flags |= MT_GLIBC_F_TRUNC;
		return;
	}
	struct mt_glibc_heap *h = &g->heaps[g->nheaps++];
	h->addr = start;
	h->arena = hi[0];
	h->size = hi[2];
	h->mprotect_size = hi[3] ? hi[3] : rw_end - start;
}

static void maps_line(const char *line, void *arg)
{
	struct maps_scan *ms = arg;
	unsigned long long start, end, off;
	char perms[8];
	int name_at = 0;
	if (sscanf(line, "%llx-%llx %7s %llx %*s %*s%n", &start, &end, perms, &off, &name_at) < 4)
		return;
	const char *name = line + name_at;
	while (*name == ' ')
		name++;
	if (!strcmp(name, "[heap]")) {
		ms->heap_start = start;
		ms->heap_end = end;
		return;
	}
	if (*name)
		return;
	/* A heap: 64 MiB-aligned, read-write, and either the whole 64 MiB or
	 * followed by its PROT_NONE reserve up to the next 64 MiB boundary. */
	if (ms->cand_start && !strcmp(perms, "---p") && start == ms->cand_end &&
	    end == ms->cand_start + MT_GLIBC_HEAP_MAX)
		add_heap(ms, ms->cand_start, ms->cand_end);
	ms->cand_start = 0;
	if (!(start & (MT_GLIBC_HEAP_MAX - 1)) && !strcmp(perms, "rw-p")) {
		if (end - start == MT_GLIBC_HEAP_MAX)
			add_heap(ms, start, end);
		else if (end - start < MT_GLIBC_HEAP_MAX) {
			ms->cand_start = start;
			ms->cand_end = end;
		}
	}
}

struct mt_glibc_arena *mt_glibc_arena_of(struct mt_glibc *g, uint64_t addr)
{
	for (uint32_t i = 0; i < g->narenas; i++)
		if (g->arenas[i].addr == addr)
			return &g->arenas[i];
	return NULL;
}

static struct mt_glibc_thread *thread_of(struct mt_glibc *g, uint32_t tid, int add)
{
	for (uint32_t i = 0; i < g->nthreads; i++)
		if (g->threads[i].tid == tid)
			return &g->threads[i];
	if (!add)
		return NULL;
	if (g->nthreads >= MT_GLIBC_THREADS) {
		/* Reuse the slot of a thread that is gone and never waited. */
		for (uint32_t i = 0; i < g->nthreads; i++)
			if (!g->threads[i].alive && !g->threads[i].lock_waits) {
				memset(&g->threads[i], 0, sizeof(g->threads[i]));
				g->threads[i].tid = tid;
				return &g->threads[i];
			}
		g->flags |= MT_GLIBC_F_TRUNC;
		return NULL;
	}
	struct mt_glibc_thread *t = &g->threads[g->nthreads++];
	memset(t, 0, sizeof(*t));
	t->tid = tid;
	return t;
}

static int task_alive(pid_t pid, uint32_t tid)
{
	char path[64];
	snprintf(path, sizeof(path), "/proc/%d/task/%u", (int)pid, tid);
	return access(path, F_OK) == 0;
}

/* malloc_state fields (glibc 2.36, x86-64: checked by the symbol's size). */
#define ARENA_NEXT 2160
#define ARENA_ATTACHED 2176
#define ARENA_SYSTEM 2184

int mt_glibc_read(pid_t pid, const struct mt_glibc_syms *syms, const uint64_t *arena_at, const uint32_t *tids,
		  uint32_t nthreads, struct mt_glibc *g)
{
	char path[64];
	struct mt_glibc_arena old[MT_GLIBC_ARENAS];
	uint32_t nold = g->narenas;
	memcpy(old, g->arenas, sizeof(old));
	g->narenas = g->nheaps = 0;
	g->flags &= MT_GLIBC_F_WAITS | MT_GLIBC_F_SYSCALLS;
	snprintf(path, sizeof(path), "/proc/%d/maps", (int)pid);
	struct maps_scan ms = {.pid = pid, .g = g};
	int err = each_line(path, maps_line, &ms);
	if (err)
		return err;
	g->flags |= MT_GLIBC_F_MAPS;
	g->taken_ns = now_ns();

	uint64_t sbrk_base = ms.heap_start, brk = ms.heap_end;
	int have_syms = syms && syms->mp && syms->main_arena;
	if (have_syms) {
		uint8_t mp[MT_GLIBC_MP_SIZE];
		if (!peek(pid, syms->mp, mp, sizeof(mp))) {
			uint64_t trim, mmap_thr, amax, mmapped, base;
			int32_t n_mmaps;
			memcpy(&trim, mp + 0, 8);
			memcpy(&mmap_thr, mp + 16, 8);
			memcpy(&amax, mp + 32, 8);
			memcpy(&n_mmaps, mp + 60, 4);
			memcpy(&mmapped, mp + 80, 8);
			memcpy(&base, mp + 96, 8);
			if (mmap_thr != g->mmap_threshold || trim != g->trim_threshold) {
				if (g->nchanges < MT_GLIBC_CHANGES) {
					struct mt_glibc_change *c = &g->changes[g->nchanges++];
					c->ns = g->taken_ns;
					c->mmap_threshold = mmap_thr;
					c->trim_threshold = trim;
				} else {
					/* keep the latest: the last slot follows */
					g->changes[MT_GLIBC_CHANGES - 1] = (struct mt_glibc_change){
						g->taken_ns, mmap_thr, trim};
					g->changes_dropped++;
				}
			}
			g->trim_threshold = trim;
			g->mmap_threshold = mmap_thr;
			g->arena_max = amax;
			g->mmapped_chunks = n_mmaps > 0 ? (uint64_t)n_mmaps : 0;
			g->mmapped_bytes = mmapped;
			if (base)
				sbrk_base = base;
			g->flags |= MT_GLIBC_F_SYMBOLS;
		}
		uint64_t cb;
		if (syms->curbrk && !peek(pid, syms->curbrk, &cb, sizeof(cb)) && cb)
			brk = cb;
	}
	if (sbrk_base && brk >= sbrk_base) {
		uint64_t bytes = brk - sbrk_base;
		if (g->brk) {
			if (brk > g->brk) {
				g->sbrk_grow_bytes += brk - g->brk;
				g->sbrk_grows++;
			} else if (brk < g->brk) {
				g->sbrk_shrink_bytes += g->brk - brk;
				g->sbrk_shrinks++;
			}
		} else if (!(g->flags & MT_GLIBC_F_SYSCALLS) && !g->sbrk_grows) {
			/* the first look: what the break had grown by then */
			g->sbrk_grow_bytes = bytes;
			g->sbrk_grows = bytes ? 1 : 0;
		}
		g->sbrk_base = sbrk_base;
		g->brk = brk;
		g->sbrk_bytes = bytes;
	}

	/* Arenas: glibc's ring from main_arena when the symbols say where it
	 * is; else the main arena and one per distinct ar_ptr of the heaps. */
	if (have_syms && (g->flags & MT_GLIBC_F_SYMBOLS)) {
		uint64_t a = syms->main_arena;
		for (int hops = 0; hops < 1024 && g->narenas < MT_GLIBC_ARENAS; hops++) {
			uint64_t f[4]; /* next, next_free, attached_threads, system_mem */
			if (peek(pid, a + ARENA_NEXT, f, sizeof(f)))
				break;
			struct mt_glibc_arena *ar = &g->arenas[g->narenas++];
			memset(ar, 0, sizeof(*ar));
			ar->addr = a;
			ar->main = a == syms->main_arena;
			ar->attached_threads = f[2];
			ar->system_bytes = f[3];
			a = f[0];
			if (!a || a == syms->main_arena)
				break;
		}
	} else {
		struct mt_glibc_arena *ar = &g->arenas[g->narenas++];
		memset(ar, 0, sizeof(*ar));
		ar->main = 1;
		for (uint32_t i = 0; i < g->nheaps; i++) {
			/* a heap whose arena sits right after its heap_info is its
			 * arena's first; the others point at that one */
			if (!mt_glibc_arena_of(g, g->heaps[i].arena) && g->narenas < MT_GLIBC_ARENAS) {
				ar = &g->arenas[g->narenas++];
				memset(ar, 0, sizeof(*ar));
				ar->addr = g->heaps[i].arena;
			}
		}
	}
	for (uint32_t i = 0; i < g->narenas; i++) {
		struct mt_glibc_arena *ar = &g->arenas[i];
		if (ar->main)
			ar->heap_bytes = g->sbrk_bytes;
		for (uint32_t k = 0; k < nold; k++)
			if (old[k].addr == ar->addr && old[k].main == ar->main)
				ar->lock_waits = old[k].lock_waits;
	}
	for (uint32_t i = 0; i < g->nheaps; i++) {
		struct mt_glibc_arena *ar = mt_glibc_arena_of(g, g->heaps[i].arena);
		if (ar && !ar->main) {
			ar->heaps++;
			ar->heap_bytes += g->heaps[i].size;
		}
	}
	for (uint32_t i = 0; i < g->narenas; i++)
		if (!g->arenas[i].system_bytes)
			g->arenas[i].system_bytes = g->arenas[i].heap_bytes;

	/* Threads: each one's thread_arena, where the caller knows it. */
	for (uint32_t i = 0; i < g->nthreads; i++)
		g->threads[i].alive = task_alive(pid, g->threads[i].tid);
	for (uint32_t i = 0; arena_at && i < nthreads; i++) {
		uint64_t a;
		if (!arena_at[i] || peek(pid, arena_at[i], &a, sizeof(a)))
			continue;
		struct mt_glibc_thread *t = thread_of(g, tids[i], 1);
		if (!t)
			continue;
		t->alive = task_alive(pid, tids[i]);
		if (a && a != t->arena) {
			t->arenas_used++;
			t->arena = a;
		}
		g->flags |= MT_GLIBC_F_THREADS;
	}
	return 0;
}

struct linux_dirent64_ {
	uint64_t d_ino;
	int64_t d_off;
	unsigned short d_reclen;
	unsigned char d_type;
	char d_name[];
};

void mt_glibc_sample_waits(pid_t pid, struct mt_glibc *g)
{
	char path[64];
	snprintf(path, sizeof(path), "/proc/%d/task", (int)pid);
	int dfd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd < 0)
		return;
	char buf[4096];
	long n;
	while ((n = syscall(SYS_getdents64, dfd, buf, sizeof(buf))) > 0) {
		for (long off = 0; off < n;) {
			struct linux_dirent64_ *d = (struct linux_dirent64_ *)(buf + off);
			off += d->d_reclen;
			char *end;
			unsigned long tid = strtoul(d->d_name, &end, 10);
			if (*end || !tid)
				continue;
			char sp[96], line[256];
			snprintf(sp, sizeof(sp), "/proc/%d/task/%lu/syscall", (int)pid, tid);
			int fd = open(sp, O_RDONLY | O_CLOEXEC);
			if (fd < 0)
				continue;
			ssize_t k = read(fd, line, sizeof(line) - 1);
			close(fd);
			if (k <= 0)
				continue;
			line[k] = '\0';
			/* "202 0xUADDR 0xOP 0xVAL ...": futex(2) on the arena's
			 * mutex word, malloc_state's first field */
			unsigned long long nr, uaddr, op;
			if (sscanf(line, "%llu %llx %llx", &nr, &uaddr, &op) != 3 || nr != SYS_futex)
				continue;
			struct mt_glibc_arena *ar = uaddr ? mt_glibc_arena_of(g, uaddr) : NULL;
			if (!ar)
				continue;
			ar->lock_waits++;
			struct mt_glibc_thread *t = thread_of(g, (uint32_t)tid, 1);
			if (t) {
				t->alive = 1;
				t->lock_waits++;
			}
		}
	}
	close(dfd);
	g->samples++;
	g->flags |= MT_GLIBC_F_WAITS;
}
