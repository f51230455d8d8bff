/*
 * The agent's state: options, per-thread counter blocks, the mmap-backed
 * arena, snapshots and dumps, fork handling, start-up and exit.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <sched.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "agent.h"
#include "memtap/leaks.h"
#include "memtap/ctl.h"
#include "memtap/format.h"

struct mt_global mt_g = {.follow = 1};
__thread int mt_tls_busy __attribute__((tls_model("initial-exec")));
__thread struct mt_thread *mt_tls_thread __attribute__((tls_model("initial-exec")));
/* Set once this thread's block has been handed back at thread exit; later
 * calls on the thread count into the shared orphan block. */
static __thread int tls_dead __attribute__((tls_model("initial-exec")));
static __thread int tls_exit_round __attribute__((tls_model("initial-exec")));

const char *const mt_fn_names[MT_FN_COUNT] = {
#define MT_FN(id, sym, name, kind, size, fail, ret) name,
#include "memtap/funcs.def"
#undef MT_FN
};
const uint32_t mt_fn_kinds[MT_FN_COUNT] = {
#define MT_FN(id, sym, name, kind, size, fail, ret) MT_KIND_##kind,
#include "memtap/funcs.def"
#undef MT_FN
};

uint64_t mt_now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

void mt_log(const char *fmt, ...)
{
	char buf[512];
	int saved = errno;
	int n = snprintf(buf, sizeof(buf), "memtap[%d]: ", (int)getpid());
	va_list ap;
	va_start(ap, fmt);
	n += vsnprintf(buf + n, sizeof(buf) - (size_t)n - 1, fmt, ap);
	va_end(ap);
	if (n > (int)sizeof(buf) - 2)
		n = (int)sizeof(buf) - 2;
	buf[n++] = '\n';
	ssize_t w = write(2, buf, (size_t)n);
	(void)w;
	errno = saved;
}

/* ---- the arena: bump allocation from 1 MiB mappings, never freed ---- */

static int arena_lock;
static uint8_t *arena_cur, *arena_end;
/* leaks: where the arena's chunks are (its live table points at every
 * block: the leak check must not take it for the program's memory). */
#define ARENA_CHUNKS 4096
static uint64_t arena_chunks[ARENA_CHUNKS][2];
static uint32_t arena_nchunks;

uint32_t mt_arena_chunks(const uint64_t (**out)[2])
{
	*out = arena_chunks;
	return __atomic_load_n(&arena_nchunks, __ATOMIC_ACQUIRE);
}

static void spin_lock(int *l)
{
	while (__atomic_exchange_n(l, 1, __ATOMIC_ACQUIRE))
		sched_yield();
}

static void spin_unlock(int *l)
{
	__atomic_store_n(l, 0, __ATOMIC_RELEASE);
}

void *mt_arena_alloc(size_t size)
{
	size = (size + 63) & ~(size_t)63;
	spin_lock(&arena_lock);
	if ((size_t)(arena_end - arena_cur) < size) {
		size_t chunk = size > (1u << 20) ? size : (1u << 20);
		uint8_t *m = mt_sys_map(chunk);
		if (!m) {
			spin_unlock(&arena_lock);
			return NULL;
		}
		arena_cur = m;
		arena_end = m + chunk;
		if (arena_nchunks < ARENA_CHUNKS) {
			arena_chunks[arena_nchunks][0] = (uint64_t)(uintptr_t)m;
			arena_chunks[arena_nchunks][1] = (uint64_t)(uintptr_t)m + chunk;
			__atomic_store_n(&arena_nchunks, arena_nchunks + 1, __ATOMIC_RELEASE);
		}
		__atomic_fetch_add(&mt_g.arena_bytes, chunk, __ATOMIC_RELAXED);
	}
	void *p = arena_cur;
	arena_cur += size;
	spin_unlock(&arena_lock);
	return p;
}

/* Scratch memory for dumps and replies, returned with mt_scratch_free. */
static void *scratch_grow(void *old, size_t len, size_t newcap)
{
	uint8_t *m = mt_sys_map(newcap + 64);
	if (!m)
		return NULL;
	*(size_t *)m = newcap + 64;
	if (old) {
		memcpy(m + 64, old, len);
		mt_sys_unmap((uint8_t *)old - 64, *(size_t *)((uint8_t *)old - 64));
	}
	return m + 64;
}

void mt_scratch_free(struct mt_buf *b)
{
	if (b->data)
		mt_sys_unmap(b->data - 64, *(size_t *)(b->data - 64));
	b->data = NULL;
	b->len = b->cap = 0;
}

void mt_scratch_init(struct mt_buf *b)
{
	memset(b, 0, sizeof(*b));
	b->grow = scratch_grow;
}

/* ---- the fast-path gate ---- */

/* malloc and free take their fast path when counting is on, usable sizes
 * can be read from glibc's chunk headers (or asked cheaply of jemalloc,
 * tcmalloc or mimalloc: mt_g.fast_alt) and the CPU has LZCNT (the fast
 * paths' histogram bucket).  The gate's value tells free which fast path:
 * MT_FAST_PLAIN (nothing tracked), MT_FAST_FILTER (sampled call sites: ask
 * the live table's filter first), MT_FAST_MALLOC (every allocation tracked,
 * --sample=1: frees always take the slow path). */
static void gate_update(void)
{
	int fast = MT_FAST_OFF;
	if (__atomic_load_n(&mt_g.active, __ATOMIC_RELAXED) && mt_g.lzcnt) {
		if (!__atomic_load_n(&mt_g.tracking, __ATOMIC_RELAXED))
			fast = MT_FAST_PLAIN;
		else
			fast = mt_g.sample_period > 1 ? MT_FAST_FILTER : MT_FAST_MALLOC;
	}
	/* Two gates, so that glibc's fast paths test the one they always did
	 * and the other allocators' are tested only when glibc's is closed. */
	__atomic_store_n(&mt_g.fast, mt_g.usable_fast ? fast : MT_FAST_OFF, __ATOMIC_RELEASE);
	__atomic_store_n(&mt_g.fast_alt, mt_g.alt_fast ? fast : MT_FAST_OFF, __ATOMIC_RELEASE);
}

void mt_set_active(int on)
{
	__atomic_store_n(&mt_g.active, on, __ATOMIC_RELEASE);
	if (mt_sh)
		__atomic_store_n(&mt_sh->active, (uint32_t)on, __ATOMIC_RELAXED);
	gate_update();
}

void mt_set_tracking(int on)
{
	__atomic_store_n(&mt_g.tracking, on, __ATOMIC_RELEASE);
	gate_update();
}

/* ---- per-thread blocks ---- */

/* ThreadSanitizer's runtime (tests/tsan) tears a thread's state down in the
 * last destructor round, with a key made before ours: there the block is
 * handed back one round earlier, while TSan still tracks the thread. */
#ifdef __SANITIZE_THREAD__
#define EXIT_ROUNDS (PTHREAD_DESTRUCTOR_ITERATIONS - 1)
#else
#define EXIT_ROUNDS PTHREAD_DESTRUCTOR_ITERATIONS
#endif

static void thread_exit(void *arg)
{
	struct mt_thread *t = arg;
	/* Other keys' destructors may still free memory after ours has run;
	 * re-arm until glibc's last destructor round so those frees are counted
	 * in this block. */
	if (++tls_exit_round < EXIT_ROUNDS) {
		pthread_setspecific(mt_g.key, t);
		return;
	}
	mt_inuse_flush(t);
	mt_tls_thread = NULL;
	tls_dead = 1;
	__atomic_store_n(&t->claimed, 0, __ATOMIC_RELEASE);
}

/* Puts a new block on the registry list (newest first). */
static void registry_push(struct mt_thread *t)
{
	struct mt_thread *head = __atomic_load_n(&mt_g.threads, __ATOMIC_RELAXED);
	do
		t->next = head;
	while (!__atomic_compare_exchange_n(&mt_g.threads, &head, t, 1, __ATOMIC_RELEASE, __ATOMIC_RELAXED));
	/* The readers' copy: at least as new as any block they can reach. */
	__atomic_store_n(&mt_sh->threads, (uint64_t)(uintptr_t)mt_threads_head(), __ATOMIC_RELEASE);
}

struct mt_thread *mt_thread_attach(void)
{
	if (tls_dead || !mt_g.enabled)
		return mt_g.orphan;
	int saved = errno;
	mt_tls_busy = 1;
	struct mt_thread *t;
	for (t = mt_threads_head(); t; t = mt_thread_next(t)) {
		int zero = 0;
		if (!__atomic_load_n(&t->claimed, __ATOMIC_RELAXED) &&
		    __atomic_compare_exchange_n(&t->claimed, &zero, 1, 0, __ATOMIC_ACQUIRE,
						__ATOMIC_RELAXED))
			break;
	}
	if (!t) {
		t = mt_shared_alloc(sizeof(*t));
		if (!t) {
			mt_tls_busy = 0;
			errno = saved;
			return mt_g.orphan;
		}
		t->claimed = 1;
		registry_push(t);
	}
	MT_STORE(t->sample_left, mt_sample_interval(t));
	mt_event_arm(t);
	if (mt_glibc_on())
		mt_glibc_thread_start();
	mt_tls_thread = t;
	pthread_setspecific(mt_g.key, t);
	mt_tls_busy = 0;
	errno = saved;
	return t;
}

/* A new peak: with --stacks, record which sites make it up each time it has
 * grown by 1/64 since the last record (so O(log) times over a run), and with
 * --dump-on-peak write a dump each time it has grown by 1/8. */
static void new_peak(int64_t now)
{
	int64_t at = __atomic_load_n(&mt_g.peak_snap_at, __ATOMIC_RELAXED);
	if (now >= at && __atomic_compare_exchange_n(&mt_g.peak_snap_at, &at, now + now / 64 + 4096, 0,
						     __ATOMIC_RELAXED, __ATOMIC_RELAXED))
		mt_sites_peak();
	if (!MT_OPT(dump_on_peak))
		return;
	/* Written by the thread that made the new peak, as --dump-every's are:
	 * a short-lived peak must not be gone before anybody writes it. */
	at = __atomic_load_n(&mt_g.peak_dump_at, __ATOMIC_RELAXED);
	if (now >= at && __atomic_compare_exchange_n(&mt_g.peak_dump_at, &at, now + now / 8 + 65536, 0,
						     __ATOMIC_RELAXED, __ATOMIC_RELAXED))
		mt_dump_request(1, MT_REASON_PEAK);
}

void mt_peak_offer(int64_t now)
{
	int64_t pk = __atomic_load_n(&mt_sh->peak, __ATOMIC_RELAXED);
	while (now > pk) {
		if (__atomic_compare_exchange_n(&mt_sh->peak, &pk, now, 1, __ATOMIC_RELAXED, __ATOMIC_RELAXED)) {
			if (unlikely(MT_OPT(stacks)))
				new_peak(now);
			return;
		}
	}
}

void mt_inuse_fold(int64_t delta)
{
	mt_peak_offer(__atomic_add_fetch(&mt_sh->inuse, delta, __ATOMIC_RELAXED));
}

void mt_inuse_high(struct mt_thread *t, int64_t d)
{
	if (d > MT_INUSE_FLUSH) {
		mt_inuse_flush(t);
	} else {
		MT_STORE(t->delta_high, d);
		mt_peak_offer(__atomic_load_n(&mt_sh->inuse, __ATOMIC_RELAXED) + d);
	}
}

void mt_inuse_flush(struct mt_thread *t)
{
	MT_STORE(t->delta_high, 0);
	int64_t d = __atomic_exchange_n(&t->inuse_delta, 0, __ATOMIC_RELAXED);
	if (d)
		mt_inuse_fold(d);
}

void mt_count_shared(int fn, uint64_t size, int failed, int64_t inuse, uint64_t released)
{
	if (fn >= 0) {
		struct mt_counter *c = &mt_g.orphan->c[fn];
		__atomic_fetch_add(&c->bytes, size, __ATOMIC_RELAXED);
		__atomic_fetch_add(&c->hist[mt_hist_bucket(size)], 1, __ATOMIC_RELAXED);
		if (failed)
			__atomic_fetch_add(&c->failed, 1, __ATOMIC_RELAXED);
	}
	if (released)
		__atomic_fetch_add(&mt_g.orphan->released, released, __ATOMIC_RELAXED);
	if (inuse)
		mt_inuse_fold(inuse);
}

struct mt_thread *mt_enter_slow(void)
{
	if (mt_tls_busy)
		return NULL;
	if (unlikely(!__atomic_load_n(&mt_g.ready, __ATOMIC_ACQUIRE)) && !mt_init())
		return NULL;
	if (!__atomic_load_n(&mt_g.active, __ATOMIC_RELAXED))
		return NULL;
	struct mt_thread *t = mt_tls_thread;
	return t ? t : mt_thread_attach();
}

/* ---- snapshots ---- */

/* The baseline of the last `reset`, subtracted from every read.  Reset
 * rewrites it in place while a dump on another thread (--dump-every,
 * --dump-on-peak, the exit dump) or the memtap command may be reading it, so
 * it is a seqlock: mt_sh->baseline_seq is odd while it is written; readers
 * (src/core/live.c) copy it and retry if the sequence moved.  Fence-free:
 * the writer's stores are releases (none can be seen before the odd
 * sequence) and the reader's loads acquires.  Writers (reset,
 * zero_counters) hold reset_lock. */
static int reset_lock;
static struct mt_thread *baseline_block; /* made once, under reset_lock, in the live file */

_Static_assert(sizeof(struct mt_thread) % sizeof(uint64_t) == 0, "blocks are copied by words");

/* BASE = SRC (NULL: no baseline) and the in-use at the reset; under
 * reset_lock. */
static void baseline_write(struct mt_thread *base, const struct mt_thread *src, int64_t inuse)
{
	uint32_t seq = __atomic_load_n(&mt_sh->baseline_seq, __ATOMIC_RELAXED);
	__atomic_store_n(&mt_sh->baseline_seq, seq + 1, __ATOMIC_RELAXED);
	if (src) {
		uint64_t *d = (uint64_t *)base;
		const uint64_t *s = (const uint64_t *)src;
		for (size_t i = 0; i < sizeof(*base) / sizeof(*d); i++)
			__atomic_store_n(&d[i], s[i], __ATOMIC_RELEASE);
	}
	__atomic_store_n(&mt_sh->inuse_at_reset, inuse, __ATOMIC_RELEASE);
	__atomic_store_n(&mt_sh->baseline, src ? (uint64_t)(uintptr_t)base : 0, __ATOMIC_RELEASE);
	__atomic_store_n(&mt_sh->baseline_seq, seq + 2, __ATOMIC_RELEASE);
}


/* Sums every block (the orphan is on the list too) into SUM (zeroed by the
 * caller). */
static void sum_blocks(struct mt_thread *sum)
{
	for (struct mt_thread *t = mt_threads_head(); t; t = mt_thread_next(t))
		mt_live_block_add((struct mt_live_block *)sum, (const struct mt_live_block *)t, MT_FN_TOTAL);
}


/* The agent's own live file, as the readers outside see it: the whole
 * mapping (a block handed out after `used` was read is mapped too). */
static struct mt_live_view self_view(void)
{
	return (struct mt_live_view){(const uint8_t *)mt_sh, (size_t)mt_sh->cap, (uint64_t)(uintptr_t)mt_sh};
}

void mt_snapshot(struct mt_profile *p, int all)
{
	/* The same reader the memtap command runs on a copy of the file. */
	struct mt_live_view v = self_view();
	void *scratch = mt_sys_map(2 * sizeof(struct mt_thread));
	if (!scratch) {
		p->nfuncs = 0;
		return;
	}
	mt_live_snapshot(&v, p, scratch, all);
	mt_sys_unmap(scratch, 2 * sizeof(struct mt_thread));
	/* The command line as it is now (servers rename their workers). */
	p->ppid = (uint32_t)getppid();
	mt_proc_cmdline(0, p->command, sizeof(p->command));
}

/* A snapshot lives in its own mapping, whose length precedes the profile. */
struct snapshot {
	size_t len;
	struct mt_profile p;
};

/* A snapshot in scratch memory.  WITH_SITES adds the call sites (pointing at
 * the agent's interned frames) and the mappings. */
static struct mt_profile *snapshot_new(int with_sites)
{
	struct mt_live_view v = self_view();
	uint32_t nf, ns, np;
	mt_live_bounds(&v, &nf, &ns, &np);
	uint32_t cap = with_sites && MT_OPT(stacks) ? ns : 0;
	/* leaks: the last check's sites, after the pools */
	uint32_t nl = with_sites && mt_sh->leaks ? mt_live_leak_count(&v) : 0;
	size_t leaks_len = with_sites && mt_sh->leaks ? sizeof(struct mt_leaks) + nl * sizeof(struct mt_leak_site) : 0;
	size_t len = sizeof(struct snapshot) + nf * sizeof(struct mt_func) + cap * sizeof(struct mt_site) +
		     np * sizeof(struct mt_pool) + leaks_len;
	struct snapshot *sn = mt_sys_map(len);
	if (!sn)
		return NULL;
	sn->len = len;
	struct mt_profile *p = &sn->p;
	p->funcs = (struct mt_func *)(sn + 1);
	p->nfuncs = nf; /* capacities, until mt_snapshot fills them */
	if (cap) {
		p->sites = (struct mt_site *)(p->funcs + nf);
		p->nsites = cap;
		p->maps = mt_maps_read(&p->nmaps);
	}
	p->pools = (struct mt_pool *)((struct mt_site *)(p->funcs + nf) + cap);
	p->npools = np;
	mt_snapshot(p, 0);
	if (leaks_len) {
		struct mt_leaks *l = (struct mt_leaks *)(p->pools + np);
		l->sites = (struct mt_leak_site *)(l + 1);
		p->leaks = mt_live_leaks_read(&v, p, l, nl) > 0 ? l : NULL;
	}
	return p;
}

struct mt_profile *mt_snapshot_new(void)
{
	return snapshot_new(0);
}

void mt_snapshot_free(struct mt_profile *p)
{
	if (!p)
		return;
	struct snapshot *sn = (struct snapshot *)((uint8_t *)p - offsetof(struct snapshot, p));
	if (p->maps)
		mt_maps_free(p->maps, p->nmaps);
	mt_sys_unmap(sn, sn->len);
}

static void reset_site(struct mt_sitex *s, void *arg)
{
	(void)arg;
	/* Allocations count from here; what is in use stays in use. */
	__atomic_store_n(&s->reset_objects, __atomic_load_n(&s->alloc_objects, __ATOMIC_RELAXED), __ATOMIC_RELAXED);
	__atomic_store_n(&s->reset_bytes, __atomic_load_n(&s->alloc_bytes, __ATOMIC_RELAXED), __ATOMIC_RELAXED);
	/* Temporaries count from here too (one racing free may be lost). */
	__atomic_store_n(&s->temp_objects, 0, __ATOMIC_RELAXED);
	__atomic_store_n(&s->temp_bytes, 0, __ATOMIC_RELAXED);
	mt_site_peak_now(s);
}

static int64_t sum_deltas(void)
{
	int64_t d = 0;
	for (struct mt_thread *t = mt_threads_head(); t; t = mt_thread_next(t))
		d += __atomic_load_n(&t->inuse_delta, __ATOMIC_RELAXED);
	return d;
}

void mt_reset(void)
{
	struct mt_thread *sum = mt_sys_map(sizeof(*sum));
	if (!sum)
		return;
	spin_lock(&reset_lock);
	struct mt_thread *base = baseline_block;
	if (!base && !(base = baseline_block = mt_shared_alloc(sizeof(*base))))
		goto out;
	sum_blocks(sum);
	/* in-use is a level, not a counter: it carries on; the peak restarts.
	 * Allocated bytes since the reset are freed + the change since then. */
	int64_t inuse = __atomic_load_n(&mt_sh->inuse, __ATOMIC_RELAXED) + sum_deltas();
	baseline_write(base, sum, inuse);
	__atomic_store_n(&mt_sh->peak, inuse, __ATOMIC_RELAXED);
out:
	spin_unlock(&reset_lock);
	mt_sys_unmap(sum, sizeof(*sum));
	mt_sites_foreach(reset_site, NULL);
	mt_pools_zero();
	mt_apr_reset();
}

/* ---- dumps ----
 *
 * The memtap command of the session writes the profiles, from the live
 * file, with the user's permissions and where the user asked.  The agent
 * writes one itself only when nobody reads its file: no session (a process
 * that outlived its `memtap run`, or a private arena), or one that is gone.
 * Dumps it wants written (--dump-every, --dump-on-peak) are requests in the
 * header, which the session answers. */

int mt_dump(const char *path, uint32_t reason, char *out, size_t outlen)
{
	int ret, saved = errno, busy = mt_tls_busy;
	mt_tls_busy = 1;
	struct mt_profile *p = snapshot_new(1);
	if (!p) {
		ret = -ENOMEM;
		if (out)
			snprintf(out, outlen, "%s", path ? path : mt_g.prefix);
		goto out;
	}
	p->reason = reason;
	p->dump_ns = mt_now_ns();
	if (reason == MT_REASON_EXIT)
		mt_live_end_to_profile(mt_sh, p, 0);

	struct mt_buf b;
	mt_scratch_init(&b);
	ret = mt_file_encode(p, &b);
	mt_snapshot_free(p);
	if (ret)
		goto free_buf;
	char final[PATH_MAX];
	if (path) {
		snprintf(final, sizeof(final), "%s", path);
		ret = mt_file_write_whole(final, b.data, b.len, 0600);
	} else {
		uint32_t seq = __atomic_fetch_add(&mt_g.seq, 1, __ATOMIC_RELAXED);
		ret = mt_file_write_next(mt_g.prefix, (uint32_t)getpid(), &seq, b.data, b.len, 0600, final,
					 sizeof(final));
		if (!ret) {
			__atomic_store_n(&mt_g.seq, seq + 1, __ATOMIC_RELAXED);
			__atomic_store_n(&mt_sh->seq, seq + 1, __ATOMIC_RELAXED);
		}
	}
	if (!ret)
		__atomic_fetch_add(&mt_g.dumps, 1, __ATOMIC_RELAXED);
	if (out)
		snprintf(out, outlen, "%s", final);
free_buf:
	mt_scratch_free(&b);
out:
	mt_tls_busy = busy;
	errno = saved;
	return ret;
}

void mt_dump_request(int kind, uint32_t reason)
{
	/* The snapshot is taken now, by the thread that crossed the line (a
	 * short-lived peak must not be gone before anybody writes it), into a
	 * spool file next to the live file; the session moves it where the
	 * user asked.  Without a session the agent writes it there itself. */
	char path[PATH_MAX];
	int err = 0;
	if (mt_session_alive() && !(err = mt_shared_spool_path(path, sizeof(path))))
		err = mt_dump(path, reason, path, sizeof(path));
	else
		err = mt_dump(NULL, reason, path, sizeof(path));
	__atomic_fetch_add(&mt_sh->dumps_due[kind], 1, __ATOMIC_RELEASE);
	if (err)
		mt_log("%s: %s: %s", kind ? "--dump-on-peak" : "--dump-every", path, strerror(-err));
}

/* ---- attach mode ---- */

static void rearm_threads(void);
static int enable_stacks(uint64_t period);
static void zero_counters(int inherit);

/* The prefix (DIR/NAME, or NAME when DIR is ""), and its copy for readers. */
static void set_prefix(const char *dir, const char *name)
{
	snprintf(mt_g.prefix, sizeof(mt_g.prefix), "%s%s%s", dir, dir[0] ? "/" : "", name);
	memcpy(mt_sh->prefix, mt_g.prefix, sizeof(mt_sh->prefix));
}

/* The options every way of starting a session gives the agent (the
 * environment for `memtap run`, the words of `ctl attach`), by name. */
static int opt_pools; /* --pools: this session's */
static int set_option(const char *name, const char *v, int *stacks, uint64_t *sample, int *inactive,
		      const char **funcs)
{
	if (!strcmp(name, "pools")) {
		opt_pools = v[0] == '1';
		return 0;
	}
	if (!strcmp(name, "prefix") && v[0] == '/')
		set_prefix("", v);
	else if (!strcmp(name, "stacks"))
		*stacks = v[0] == '1';
	else if (!strcmp(name, "sample"))
		*sample = strtoull(v, NULL, 10);
	else if (!strcmp(name, "funcs"))
		*funcs = v;
	else if (!strcmp(name, "dump_every"))
		MT_OPT_SET(dump_every, strtoull(v, NULL, 10));
	else if (!strcmp(name, "leaks"))
		MT_OPT_SET(leaks, v[0] == '1');
	else if (!strcmp(name, "dump_on_peak"))
		MT_OPT_SET(dump_on_peak, v[0] == '1');
	else if (!strcmp(name, "inactive"))
		*inactive = v[0] == '1';
	else if (!strcmp(name, "follow"))
		mt_g.follow = v[0] != '0';
	else if (!strcmp(name, "run_id"))
		__atomic_store_n(&mt_sh->run_id, strtoull(v, NULL, 10), __ATOMIC_RELAXED);
	else if (!strcmp(name, "session")) {
		/* PID:STARTTIME of the memtap command that reads this file */
		char *end;
		long pid = strtol(v, &end, 10);
		uint64_t start = *end == ':' ? strtoull(end + 1, NULL, 10) : 0;
		mt_g.session_start = start;
		__atomic_store_n(&mt_g.session_pid, (int)pid, __ATOMIC_RELEASE);
		__atomic_store_n(&mt_sh->session_start, start, __ATOMIC_RELAXED);
		__atomic_store_n(&mt_sh->session_pid, (int32_t)pid, __ATOMIC_RELEASE);
	} else if (mt_glibc_option(name, v))
		return -EINVAL;
	return 0;
}

int mt_attach(char *options, char *out, size_t outlen)
{
	if (!mt_g.attached_mode) {
		snprintf(out, outlen, "this process was started with the agent preloaded; it is traced already");
		return -EALREADY;
	}
	if (__atomic_load_n(&mt_g.attached, __ATOMIC_ACQUIRE)) {
		snprintf(out, outlen, "already attached (prefix %s); memtap detach first", mt_g.prefix);
		return -EALREADY;
	}
	int stacks = 0, inactive = 0;
	uint64_t sample = 0;
	const char *funcs = NULL;
	opt_pools = 0;
	mt_glibc_reset();
	for (char *w = strtok(options, " "); w; w = strtok(NULL, " ")) {
		char *eq = strchr(w, '=');
		if (!eq || mt_ctl_unescape(eq + 1) < 0) {
			snprintf(out, outlen, "bad option word '%.64s'", w);
			return -EINVAL;
		}
		*eq = '\0';
		if (set_option(w, eq + 1, &stacks, &sample, &inactive, &funcs)) {
			snprintf(out, outlen, "unknown option '%.64s'", w);
			return -EINVAL;
		}
	}
	if (funcs && mt_custom_parse(funcs) < 0) {
		snprintf(out, outlen, "bad -f list '%.200s'", funcs);
		return -EINVAL;
	}
	zero_counters(0); /* each session counts from zero */
	if (stacks) {
		int err = enable_stacks(sample);
		if (err) {
			snprintf(out, outlen, "call sites unavailable: %s", strerror(-err));
			return err;
		}
	}
	rearm_threads();
	if (mt_apr_start(opt_pools, 1) < 0) {
		snprintf(out, outlen, "--pools: no room for the pool table in the live file");
		return -ENOMEM;
	}
	mt_set_active(!inactive);
	int slots = mt_hooks_start(1);
	if (slots < 0) {
		mt_set_active(0);
		mt_got_restore();
		snprintf(out, outlen, "cannot install the hooks: %s",
			 mt_custom_error()[0] ? mt_custom_error() : strerror(-slots));
		mt_custom_stop();
		return slots;
	}
	__atomic_store_n(&mt_sh->end, MT_LIVE_RUNNING, __ATOMIC_RELEASE);
	__atomic_fetch_add(&mt_sh->gen, 1, __ATOMIC_RELEASE);
	__atomic_store_n(&mt_g.attached, 1, __ATOMIC_RELEASE);
	snprintf(out, outlen, "attached: %d call slots redirected, counting %s\nlive: %s", mt_got_slots(),
		 inactive ? "inactive" : "active", mt_shared_path());
	return 0;
}

int mt_detach(char *out, size_t outlen)
{
	if (!mt_g.attached_mode || !__atomic_load_n(&mt_g.attached, __ATOMIC_ACQUIRE)) {
		snprintf(out, outlen, "not attached (a process started by memtap run stays traced until it exits)");
		return -EINVAL;
	}
	/* attach --leaks: the check while every allocation is still tracked;
	 * the detach profile carries it. */
	if (MT_OPT(leaks)) {
		char msg[1024] = "";
		if (mt_leaks_check(0, msg, sizeof(msg)) < 0)
			mt_log("--leaks: the leak check at detach failed: %s", msg);
	}
	/* Restore the slots first: calls already inside a wrapper finish
	 * normally, and calls through function pointers the program copied
	 * while attached pass straight through once counting is off. */
	mt_got_restore();
	mt_set_active(0);
	mt_set_tracking(0);
	int err = 0;
	out[0] = '\0';
	/* The memtap command that detached reads the live file and writes the
	 * profile; without a file it cannot, and the agent writes it. */
	if (!mt_shared_is_file())
		err = mt_dump(NULL, MT_REASON_DETACH, out, outlen);
	mt_custom_stop(); /* the -f hooks end with the session */
	mt_glibc_stop();  /* and --glibc */
	__atomic_store_n(&mt_g.stacks, 0, __ATOMIC_RELEASE);
	__atomic_store_n(&mt_g.attached, 0, __ATOMIC_RELEASE);
	__atomic_store_n(&mt_sh->stacks, 0, __ATOMIC_RELAXED);
	__atomic_store_n(&mt_g.session_pid, 0, __ATOMIC_RELEASE);
	__atomic_store_n(&mt_sh->session_pid, 0, __ATOMIC_RELEASE);
	mt_shared_end(MT_LIVE_DETACHED, 0);
	__atomic_fetch_add(&mt_sh->gen, 1, __ATOMIC_RELEASE);
	return err;
}

/* ---- fork ---- */

/* No reset is half-written in a child (its readers would wait forever).
 * The forking thread counts nothing from here until its own fork handler
 * has run: in the child its block is still in the parent's file. */
static __thread int fork_busy __attribute__((tls_model("initial-exec")));

static void fork_prepare(void)
{
	spin_lock(&reset_lock);
	spin_lock(&arena_lock);
	fork_busy = mt_tls_busy;
	mt_tls_busy = 1;
}

static void fork_parent(void)
{
	mt_tls_busy = fork_busy;
	spin_unlock(&arena_lock);
	spin_unlock(&reset_lock);
}

/* A block's per-thread state other than its counts, back to the start. */
static void block_restart(struct mt_thread *t)
{
	MT_STORE(t->inuse_delta, 0);
	MT_STORE(t->delta_high, 0);
	MT_STORE(t->event_left, 0);
	MT_STORE(t->event_armed, 0);
	MT_STORE(t->sample_left, 0);
	MT_STORE(t->rng, 0);
}

/* A block's counts to zero in place (when there is no memory for a
 * baseline). */
static void block_zero_counts(struct mt_thread *t)
{
	uint64_t *w = (uint64_t *)&t->released, *end = (uint64_t *)(t + 1);
	while (w < end)
		MT_STORE(*w++, 0);
}

/* Every counter back to zero, for a new process (fork) or a new session
 * (attach).
 *
 * A new session (INHERIT = 0) starts from nothing: memory allocated before
 * stays allocated but is no longer tracked: its frees count as calls, never
 * against the totals of the sites or of in-use.  A fork child (INHERIT = 1)
 * starts with its parent's heap, which is its heap too: in-use carries on
 * from the parent's level at the fork (and so never goes below zero for a
 * process traced from its start), as do the sites' in-use figures; calls,
 * allocated and freed bytes count from zero, as after `reset`.  Called with
 * counting off, or single-threaded.
 *
 * Counting is off, but a thread may still be finishing a call it entered
 * before `ctl detach`: its block is never written here but with atomics, and
 * the counts start from a baseline of the counts so far (as `reset` does)
 * instead of being zeroed in place, where the late thread's next bump would
 * write its old count back.  What such a thread can still carry into the new
 * session is its one call and an in-use delta not yet folded (under
 * MT_INUSE_FLUSH). */
static void zero_counters(int inherit)
{
	int64_t inuse = inherit ? __atomic_load_n(&mt_sh->inuse, __ATOMIC_RELAXED) + sum_deltas() : 0;
	for (struct mt_thread *t = mt_threads_head(); t; t = mt_thread_next(t))
		block_restart(t);
	struct mt_thread *sum = mt_sys_map(sizeof(*sum));
	spin_lock(&reset_lock);
	if (!baseline_block)
		baseline_block = mt_shared_alloc(sizeof(*baseline_block));
	if (sum && baseline_block) {
		sum_blocks(sum);
		baseline_write(baseline_block, sum, inuse);
	} else {
		for (struct mt_thread *t = mt_threads_head(); t; t = mt_thread_next(t))
			block_zero_counts(t);
		baseline_write(NULL, NULL, inuse);
	}
	spin_unlock(&reset_lock);
	if (sum)
		mt_sys_unmap(sum, sizeof(*sum));
	__atomic_store_n(&mt_sh->inuse, inuse, __ATOMIC_RELAXED);
	__atomic_store_n(&mt_sh->inuse_inherited, inuse, __ATOMIC_RELAXED);
	__atomic_store_n(&mt_sh->peak, inuse, __ATOMIC_RELAXED);
	__atomic_store_n(&mt_g.peak_snap_at, 0, __ATOMIC_RELAXED);
	__atomic_store_n(&mt_g.peak_dump_at, 0, __ATOMIC_RELAXED);
	__atomic_store_n(&mt_g.event_bytes, 0, __ATOMIC_RELAXED);
	__atomic_store_n(&mt_g.event_dumps, 0, __ATOMIC_RELAXED);
	__atomic_store_n(&mt_sh->unknown_frees, 0, __ATOMIC_RELAXED);
	__atomic_store_n(&mt_sh->start_ns, mt_now_ns(), __ATOMIC_RELAXED);
	if (inherit) {
		mt_sites_foreach(reset_site, NULL);
	} else {
		mt_sites_clear();
	}
	mt_pools_zero();
}

static void fork_child(void)
{
	spin_unlock(&arena_lock);
	spin_unlock(&reset_lock);
	if (!mt_g.enabled) {
		mt_tls_busy = fork_busy;
		return;
	}
	/* First, before anything counts: an arena of the child's own.  Its
	 * copy was taken after the fork, and the parent's threads may have put
	 * new blocks and sites on the lists' heads the readers see: the heads
	 * are the child's own again. */
	mt_shared_fork_child(mt_g.follow);
	__atomic_store_n(&mt_sh->threads, (uint64_t)(uintptr_t)mt_threads_head(), __ATOMIC_RELEASE);
	mt_sites_after_fork_child();
	if (!mt_g.follow) {
		/* --no-follow: the child runs untraced and writes nothing. */
		mt_set_active(0);
		mt_g.enabled = 0;
		mt_control_after_fork_child();
		mt_tls_busy = fork_busy;
		return;
	}
	/* Each child has its own counters, files and control socket; the
	 * threads of the parent are gone (with any live-table lock they held). */
	zero_counters(1);
	mt_apr_fork_child();
	for (struct mt_thread *t = mt_threads_head(); t; t = mt_thread_next(t))
		t->claimed = t == mt_tls_thread || t->shared;
	mt_g.dumps = 0;
	mt_g.finished = 0;
	__atomic_store_n(&mt_sh->end, MT_LIVE_RUNNING, __ATOMIC_RELAXED);
	__atomic_store_n(&mt_g.seq, 0, __ATOMIC_RELAXED);
	__atomic_store_n(&mt_sh->seq, 0, __ATOMIC_RELAXED);
	__atomic_store_n(&mt_sh->dumps_due[0], 0, __ATOMIC_RELAXED);
	__atomic_store_n(&mt_sh->dumps_due[1], 0, __ATOMIC_RELAXED);
	mt_control_after_fork_child();
	mt_tls_busy = fork_busy;
}

/* ---- start-up ---- */

static const char *const agent_words[] = {
#define MT_AGENT_OPT(id, word, help) word,
#include "memtap/agent_opts.def"
#undef MT_AGENT_OPT
};

/* `memtap run`: the options in the environment, MEMTAP_<WORD>. */
static int env_stacks;
static void read_options(void)
{
	int inactive = 0;
	uint64_t sample = 0;
	const char *funcs = NULL;
	char cwd[512];
	if (!getcwd(cwd, sizeof(cwd)))
		strcpy(cwd, "/tmp");
	set_prefix(cwd, "memtap");
	for (size_t i = 0; i < sizeof(agent_words) / sizeof(agent_words[0]); i++) {
		char env[64];
		size_t n = (size_t)snprintf(env, sizeof(env), "MEMTAP_%s", agent_words[i]);
		for (size_t k = 7; k < n; k++)
			env[k] = (char)(env[k] >= 'a' && env[k] <= 'z' ? env[k] - 32 : env[k]);
		const char *v = getenv(env);
		if (!v)
			continue;
		if (!strcmp(agent_words[i], "prefix") && v[0] != '/' && v[0])
			set_prefix(cwd, v);
		else
			set_option(agent_words[i], v, &env_stacks, &sample, &inactive, &funcs);
	}
	mt_set_active(!inactive);
	/* Stacks are switched on by the constructor, once libunwind is loaded. */
	mt_g.sample_period = sample;
	mt_custom_parse(funcs);
}

/* Threads that started before an option changed (the main thread, and in
 * attach mode all of them) draw their sampling distance and re-arm their
 * event countdown. */
static void rearm_threads(void)
{
	for (struct mt_thread *t = mt_threads_head(); t; t = mt_thread_next(t)) {
		MT_STORE(t->sample_left, mt_sample_interval(t));
		mt_event_arm(t);
	}
}

/* Loads the unwinder and starts sampling every PERIOD bytes on average (0:
 * the default 512 KiB, 1: every allocation). */
static int enable_stacks(uint64_t period)
{
	int err = mt_sites_init();
	if (err)
		return err;
	MT_OPT_SET(sample_period, period ? period : 512 * 1024);
	__atomic_store_n(&mt_g.stacks, 1, __ATOMIC_RELEASE);
	__atomic_store_n(&mt_sh->sample_period, MT_OPT(sample_period), __ATOMIC_RELAXED);
	__atomic_store_n(&mt_sh->stacks, 1, __ATOMIC_RELEASE);
	mt_shared_maps_publish();
	mt_set_tracking(1);
	rearm_threads();
	return 0;
}

/* --stacks: load the unwinder and start sampling (from the constructor, not
 * from inside the first allocation, which may come while the dynamic loader
 * is still busy). */
static void start_stacks(void)
{
	if (!env_stacks || mt_g.attached_mode)
		return;
	mt_tls_busy = 1;
	int err = enable_stacks(MT_OPT(sample_period));
	mt_tls_busy = 0;
	if (err)
		mt_log("call sites disabled: %s", strerror(-err));
}

int mt_init(void)
{
	static int state; /* 0: not started, 1: in progress, 2: done */
	static __thread int initializing __attribute__((tls_model("initial-exec")));
	int zero = 0;
	if (!__atomic_compare_exchange_n(&state, &zero, 1, 0, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE)) {
		if (initializing)
			return 0; /* an allocation made while we resolve: pass it through */
		while (__atomic_load_n(&state, __ATOMIC_ACQUIRE) != 2)
			sched_yield();
		return __atomic_load_n(&mt_g.ready, __ATOMIC_ACQUIRE);
	}
	int saved = errno;
	initializing = 1;
	mt_tls_busy = 1;
	int ok = mt_resolve() == 0 && pthread_key_create(&mt_g.key, thread_exit) == 0 &&
		 mt_shared_setup() == 0 && (mt_g.orphan = mt_shared_alloc(sizeof(struct mt_thread))) != NULL;
	if (ok) {
		mt_g.orphan->shared = mt_g.orphan->claimed = 1;
		registry_push(mt_g.orphan);
		mt_usable_check();
		read_options();
		/* Loaded into a running process: nothing is counted until `memtap
		 * attach` sends its options (ctl attach). */
		if (mt_g.attached_mode) {
			mt_set_active(0);
			mt_sh->flags |= MT_LIVE_F_INJECTED;
		}
		if (mt_g.follow)
			mt_sh->flags |= MT_LIVE_F_FOLLOW;
		mt_g.enabled = 1;
		pthread_atfork(fork_prepare, fork_parent, fork_child);
		mt_shared_catch_fatal();
	} else {
		mt_set_active(0);
	}
	__atomic_store_n(&mt_g.ready, ok, __ATOMIC_RELEASE);
	__atomic_store_n(&state, 2, __ATOMIC_RELEASE);
	mt_tls_busy = 0;
	initializing = 0;
	errno = saved;
	return ok;
}

/* --no-follow: take the agent out of LD_PRELOAD so exec'd programs run
 * untraced. */
static void strip_preload(void)
{
	const char *agent = getenv("MEMTAP_AGENT");
	const char *pre = getenv("LD_PRELOAD");
	if (!agent || !pre)
		return;
	char out[4096];
	size_t n = 0, alen = strlen(agent);
	const char *s = pre;
	while (*s) {
		size_t w = strcspn(s, ": ");
		if (w && !(w == alen && memcmp(s, agent, alen) == 0) && n + w + 1 < sizeof(out)) {
			if (n)
				out[n++] = ':';
			memcpy(out + n, s, w);
			n += w;
		}
		s += w;
		if (*s)
			s++;
	}
	out[n] = '\0';
	if (n)
		setenv("LD_PRELOAD", out, 1);
	else
		unsetenv("LD_PRELOAD");
}

__attribute__((constructor)) static void mt_ctor(void)
{
	if (!mt_init())
		return;
	if (!mt_g.follow) {
		mt_tls_busy = 1;
		strip_preload();
		mt_tls_busy = 0;
	}
	start_stacks();
	if (!mt_g.attached_mode) {
		mt_tls_busy = 1;
		if (opt_pools && mt_apr_start(1, 0) < 0)
			mt_log("--pools: no room for the pool table in the live file");
		int err = mt_hooks_start(0);
		mt_tls_busy = 0;
		if (err < 0)
			mt_log("-f: cannot hook the functions: %s",
			       mt_custom_error()[0] ? mt_custom_error() : strerror(-err));
	}
	mt_control_start();
}

/* ---- the end ---- */

static int exit_status = -1; /* given to exit(), when the program called it */

void mt_note_exit(int status)
{
	exit_status = status;
}

/* The process ends (HOW: enum mt_live_end): into the live file; the
 * session writes the final profile from it.  Without a session nobody
 * will read the file: the agent writes the profile itself and removes its
 * files.  An agent that was detached (attach mode) leaves no profile, only
 * its files to remove. */
static void finish(uint32_t how, uint32_t code)
{
	if (!mt_g.enabled || __atomic_exchange_n(&mt_g.finished, 1, __ATOMIC_ACQ_REL))
		return;
	int busy = mt_tls_busy;
	mt_tls_busy = 1;
	struct mt_thread *t = mt_tls_thread;
	if (t && !t->shared)
		mt_inuse_flush(t);
	if (exit_status >= 0 && how == MT_LIVE_EXITED) {
		code = (uint32_t)exit_status;
		mt_sh->flags |= MT_LIVE_F_CODE_KNOWN;
	}
	int inert = mt_g.attached_mode && !__atomic_load_n(&mt_g.attached, __ATOMIC_ACQUIRE);
	if (how == MT_LIVE_EXITED && !inert)
		mt_allocstats_final(); /* exit handlers ran: the allocator is whole */
	if (MT_OPT(leaks) && !inert && how != MT_LIVE_SIGNAL) {
		/* --leaks: the check, while the memory is still there; the
		 * final profile carries it (the live file's leak table). */
		char msg[1024] = "";
		if (mt_leaks_check(1, msg, sizeof(msg)) < 0)
			mt_log("--leaks: the leak check at exit failed: %s", msg);
	}
	if ((MT_OPT(stacks) || mt_apr_enabled()) && !inert)
		mt_shared_maps_publish();
	mt_shared_end(how, code);
	if (!inert && !mt_session_alive()) {
		char path[PATH_MAX];
		int err = mt_dump(NULL, MT_REASON_EXIT, path, sizeof(path));
		if (err)
			mt_log("cannot write the exit profile %s: %s", path, strerror(-err));
		else
			mt_shared_remove(); /* its figures are in the profile */
	} else if (inert) {
		mt_shared_remove();
	}
	mt_control_stop();
	mt_tls_busy = busy;
}

void mt_note__exit(int status)
{
	finish(MT_LIVE__EXIT, (uint32_t)status);
}

__attribute__((destructor)) static void mt_dtor(void)
{
	finish(MT_LIVE_EXITED, 0);
}
