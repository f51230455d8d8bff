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
#include "memtap/ctl.h"
#include "memtap/format.h"

struct mt_global mt_g = {.follow = 1, .orphan = {.shared = 1, .claimed = 1}};
__thread int mt_tls_busy __attribute__((tls_model("initial-exec")));
__thread struct mt_thread *mt_tls_thread __attribute__((tls_model("initial-exec")));
/* Set once this thread's block has been handed back at thread exit; later
 * calls on the thread count into the shared orphan block. */
static __thread int tls_dead __attribute__((tls_model("initial-exec")));
static __thread int tls_exit_round __attribute__((tls_model("initial-exec")));

const char *const mt_fn_names[MT_FN_COUNT] = {
#define MT_FN(id, name, kind) name,
#include "funcs.def"
#undef MT_FN
};
const uint32_t mt_fn_kinds[MT_FN_COUNT] = {
#define MT_FN(id, name, kind) MT_KIND_##kind,
#include "funcs.def"
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
 * can be read from glibc's chunk headers and the CPU has LZCNT (the fast
 * paths' histogram bucket).  The gate's value tells free which fast path:
 * MT_FAST_PLAIN (nothing tracked), MT_FAST_FILTER (sampled call sites: ask
 * the live table's filter first), MT_FAST_MALLOC (every allocation tracked,
 * --sample=1: frees always take the slow path). */
static void gate_update(void)
{
	int fast = MT_FAST_OFF;
	if (__atomic_load_n(&mt_g.active, __ATOMIC_RELAXED) && mt_g.usable_fast && mt_g.lzcnt) {
		if (!__atomic_load_n(&mt_g.tracking, __ATOMIC_RELAXED))
			fast = MT_FAST_PLAIN;
		else
			fast = mt_g.sample_period > 1 ? MT_FAST_FILTER : MT_FAST_MALLOC;
	}
	__atomic_store_n(&mt_g.fast, fast, __ATOMIC_RELEASE);
}

void mt_set_active(int on)
{
	__atomic_store_n(&mt_g.active, on, __ATOMIC_RELEASE);
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

struct mt_thread *mt_thread_attach(void)
{
	if (tls_dead || !mt_g.enabled)
		return &mt_g.orphan;
	int saved = errno;
	mt_tls_busy = 1;
	struct mt_thread *t;
	for (t = __atomic_load_n(&mt_g.threads, __ATOMIC_ACQUIRE); t; t = t->next) {
		int zero = 0;
		if (!__atomic_load_n(&t->claimed, __ATOMIC_RELAXED) &&
		    __atomic_compare_exchange_n(&t->claimed, &zero, 1, 0, __ATOMIC_ACQUIRE,
						__ATOMIC_RELAXED))
			break;
	}
	if (!t) {
		t = mt_arena_alloc(sizeof(*t));
		if (!t) {
			mt_tls_busy = 0;
			errno = saved;
			return &mt_g.orphan;
		}
		t->claimed = 1;
		t->next = __atomic_load_n(&mt_g.threads, __ATOMIC_RELAXED);
		while (!__atomic_compare_exchange_n(&mt_g.threads, &t->next, t, 1, __ATOMIC_RELEASE,
						    __ATOMIC_RELAXED))
			;
	}
	MT_STORE(t->sample_left, mt_sample_interval(t));
	mt_event_arm(t);
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
						     __ATOMIC_RELAXED, __ATOMIC_RELAXED)) {
		char path[512];
		int err = mt_dump(NULL, MT_REASON_PEAK, path, sizeof(path));
		if (err)
			mt_log("--dump-on-peak: %s: %s", path, strerror(-err));
	}
}

void mt_peak_offer(int64_t now)
{
	int64_t pk = __atomic_load_n(&mt_g.peak, __ATOMIC_RELAXED);
	while (now > pk) {
		if (__atomic_compare_exchange_n(&mt_g.peak, &pk, now, 1, __ATOMIC_RELAXED, __ATOMIC_RELAXED)) {
			if (unlikely(MT_OPT(stacks)))
				new_peak(now);
			return;
		}
	}
}

void mt_inuse_fold(int64_t delta)
{
	mt_peak_offer(__atomic_add_fetch(&mt_g.inuse, delta, __ATOMIC_RELAXED));
}

void mt_inuse_high(struct mt_thread *t, int64_t d)
{
	if (d > MT_INUSE_FLUSH) {
		mt_inuse_flush(t);
	} else {
		MT_STORE(t->delta_high, d);
		mt_peak_offer(__atomic_load_n(&mt_g.inuse, __ATOMIC_RELAXED) + d);
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
		struct mt_counter *c = &mt_g.orphan.c[fn];
		__atomic_fetch_add(&c->bytes, size, __ATOMIC_RELAXED);
		__atomic_fetch_add(&c->hist[mt_hist_bucket(size)], 1, __ATOMIC_RELAXED);
		if (failed)
			__atomic_fetch_add(&c->failed, 1, __ATOMIC_RELAXED);
	}
	if (released)
		__atomic_fetch_add(&mt_g.orphan.released, released, __ATOMIC_RELAXED);
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
 * --dump-on-peak, the exit dump) may be reading it, so it is a seqlock:
 * baseline_seq is odd while it is written; readers copy it and retry if the
 * sequence moved.  Fence-free: the writer's stores are releases (none can be
 * seen before the odd sequence) and the reader's loads acquires (the final
 * check cannot move before them).  Writers (reset, zero_counters) hold
 * reset_lock, taken before arena_lock. */
static int reset_lock;
static uint32_t baseline_seq;
static struct mt_thread *baseline_block; /* made once, under reset_lock */

_Static_assert(sizeof(struct mt_thread) % sizeof(uint64_t) == 0, "blocks are copied by words");

/* BASE = SRC (NULL: no baseline) and the in-use at the reset; under
 * reset_lock. */
static void baseline_write(struct mt_thread *base, const struct mt_thread *src, int64_t inuse)
{
	uint32_t seq = __atomic_load_n(&baseline_seq, __ATOMIC_RELAXED);
	__atomic_store_n(&baseline_seq, seq + 1, __ATOMIC_RELAXED);
	if (src) {
		uint64_t *d = (uint64_t *)base;
		const uint64_t *s = (const uint64_t *)src;
		for (size_t i = 0; i < sizeof(*base) / sizeof(*d); i++)
			__atomic_store_n(&d[i], s[i], __ATOMIC_RELEASE);
	}
	__atomic_store_n(&mt_g.inuse_at_reset, inuse, __ATOMIC_RELEASE);
	__atomic_store_n(&mt_g.baseline, src ? base : NULL, __ATOMIC_RELEASE);
	__atomic_store_n(&baseline_seq, seq + 2, __ATOMIC_RELEASE);
}

/* Copies the baseline into DST; 0 when there is none (no reset since the
 * start).  INUSE_AT_RESET is set either way. */
static int baseline_read(struct mt_thread *dst, int64_t *inuse_at_reset)
{
	for (;;) {
		uint32_t seq = __atomic_load_n(&baseline_seq, __ATOMIC_ACQUIRE);
		if (seq & 1) {
			sched_yield();
			continue;
		}
		const struct mt_thread *base = __atomic_load_n(&mt_g.baseline, __ATOMIC_ACQUIRE);
		if (base) {
			uint64_t *d = (uint64_t *)dst;
			const uint64_t *s = (const uint64_t *)base;
			for (size_t i = 0; i < sizeof(*dst) / sizeof(*d); i++)
				d[i] = __atomic_load_n(&s[i], __ATOMIC_ACQUIRE);
		}
		*inuse_at_reset = __atomic_load_n(&mt_g.inuse_at_reset, __ATOMIC_ACQUIRE);
		if (__atomic_load_n(&baseline_seq, __ATOMIC_RELAXED) == seq)
			return base != NULL;
	}
}

static void block_add(struct mt_thread *dst, const struct mt_thread *src)
{
	for (int f = 0; f < MT_FN_TOTAL; f++) {
		const struct mt_counter *s = &src->c[f];
		struct mt_counter *d = &dst->c[f];
		d->bytes += __atomic_load_n(&s->bytes, __ATOMIC_RELAXED);
		d->failed += __atomic_load_n(&s->failed, __ATOMIC_RELAXED);
		for (int k = 0; k < MT_HIST_BUCKETS; k++)
			d->hist[k] += __atomic_load_n(&s->hist[k], __ATOMIC_RELAXED);
	}
	dst->released += __atomic_load_n(&src->released, __ATOMIC_RELAXED);
	dst->inuse_delta += __atomic_load_n(&src->inuse_delta, __ATOMIC_RELAXED);
}

/* Sums every block into SUM (zeroed by the caller). */
static void sum_blocks(struct mt_thread *sum)
{
	for (struct mt_thread *t = __atomic_load_n(&mt_g.threads, __ATOMIC_ACQUIRE); t; t = t->next)
		block_add(sum, t);
	block_add(sum, &mt_g.orphan);
}

static void read_cmdline(char *dst, size_t len)
{
	dst[0] = '\0';
	int fd = open("/proc/self/cmdline", O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return;
	ssize_t n = read(fd, dst, len - 1);
	close(fd);
	if (n <= 0)
		return;
	while (n > 0 && dst[n - 1] == '\0')
		n--;
	for (ssize_t i = 0; i < n; i++)
		if (dst[i] == '\0')
			dst[i] = ' ';
	dst[n] = '\0';
}

struct site_fill {
	struct mt_profile *p;
	const int *fn_index; /* agent function id -> index in p->funcs, or -1 */
	uint32_t cap;
};

static void fill_site(struct mt_sitex *s, void *arg)
{
	struct site_fill *f = arg;
	if (f->p->nsites >= f->cap)
		return; /* sites added since we counted them wait for the next dump */
	struct mt_site *d = &f->p->sites[f->p->nsites++];
	d->nframes = s->nframes;
	d->frames = s->frames;
	int idx = s->fn < MT_FN_TOTAL ? f->fn_index[s->fn] : -1;
	d->fn = idx >= 0 ? (uint32_t)idx : UINT32_MAX;
	/* Allocated since the last reset; in use whenever allocated. */
	d->alloc_objects = __atomic_load_n(&s->alloc_objects, __ATOMIC_RELAXED) -
			   __atomic_load_n(&s->reset_objects, __ATOMIC_RELAXED);
	d->alloc_bytes = __atomic_load_n(&s->alloc_bytes, __ATOMIC_RELAXED) -
			 __atomic_load_n(&s->reset_bytes, __ATOMIC_RELAXED);
	mt_site_live(s, &d->inuse_objects, &d->inuse_bytes);
	d->peak_objects = __atomic_load_n(&s->peak_objects, __ATOMIC_RELAXED);
	d->peak_bytes = __atomic_load_n(&s->peak_bytes, __ATOMIC_RELAXED);
}

static const char *fn_name(int f)
{
	return f < MT_FN_COUNT ? mt_fn_names[f] : mt_g.custom[f - MT_FN_COUNT].name;
}

void mt_snapshot(struct mt_profile *p, int all)
{
	int fn_index[MT_FN_TOTAL];
	uint64_t freed = 0;
	int64_t inuse_at_reset;
	/* The baseline before the counters: every counter only grows, so each
	 * one summed after the baseline was read is at least its baseline. */
	struct mt_thread *sum = mt_sys_map(2 * sizeof(*sum)), *base = sum + 1;
	if (!sum) {
		p->nfuncs = 0;
		return;
	}
	if (!baseline_read(base, &inuse_at_reset))
		base = NULL;
	sum_blocks(sum);
	p->nfuncs = 0;
	for (int f = 0; f < MT_FN_COUNT + mt_g.ncustom; f++) {
		struct mt_counter *c = &sum->c[f];
		if (base) {
			c->bytes -= base->c[f].bytes;
			c->failed -= base->c[f].failed;
			for (int k = 0; k < MT_HIST_BUCKETS; k++)
				c->hist[k] -= base->c[f].hist[k];
		}
		fn_index[f] = -1;
		uint64_t calls = 0;
		for (int k = 0; k < MT_HIST_BUCKETS; k++)
			calls += c->hist[k];
		if (!calls && !all)
			continue;
		fn_index[f] = (int)p->nfuncs;
		struct mt_func *o = &p->funcs[p->nfuncs++];
		memset(o->name, 0, sizeof(o->name));
		strncpy(o->name, fn_name(f), sizeof(o->name) - 1);
		o->kind = f < MT_FN_COUNT ? mt_fn_kinds[f] : MT_KIND_OTHER;
		o->calls = calls;
		if (o->kind == MT_KIND_FREE)
			freed += c->bytes;
		o->bytes = c->bytes;
		o->failed = c->failed;
		memcpy(o->hist, c->hist, sizeof(o->hist));
	}
	int64_t inuse = __atomic_load_n(&mt_g.inuse, __ATOMIC_RELAXED) + sum->inuse_delta;
	int64_t peak = __atomic_load_n(&mt_g.peak, __ATOMIC_RELAXED);
	/* Only called functions were summed into FREED: a free-kind function
	 * with no calls has no bytes either. */
	freed += sum->released - (base ? base->released : 0);
	p->totals.freed_bytes = freed;
	/* While threads run, the counters, in-use and in-use at the reset are
	 * each read at a slightly different moment (and in-use is folded from
	 * per-thread deltas): frees made in between can make the change in
	 * in-use outweigh the bytes freed since the reset.  Never below zero
	 * (it would wrap); exact once the threads are quiet. */
	int64_t change = inuse - inuse_at_reset;
	p->totals.allocated_bytes = change < 0 && (uint64_t)-change > freed ? 0 : freed + (uint64_t)change;
	p->totals.in_use_bytes = inuse;
	p->totals.peak_in_use_bytes = (uint64_t)(peak > inuse ? peak : inuse > 0 ? inuse : 0);
	mt_sys_unmap(sum, 2 * sizeof(*sum));

	p->sample_period = MT_OPT(stacks) ? MT_OPT(sample_period) : 0;
	p->unknown_frees = __atomic_load_n(&mt_g.unknown_frees, __ATOMIC_RELAXED);
	if (p->sites) {
		struct site_fill fill = {p, fn_index, p->nsites};
		p->nsites = 0;
		mt_sites_foreach(fill_site, &fill);
	}
	if (p->pools) {
		uint32_t cap = p->npools; /* capacity, as for the sites */
		p->npools = 0;
		mt_pools_fill(p, fn_index, cap);
	}

	p->pid = (uint32_t)getpid();
	p->ppid = (uint32_t)getppid();
	p->uid = (uint32_t)geteuid();
	p->run_id = __atomic_load_n(&mt_g.run_id, __ATOMIC_RELAXED);
	p->start_ns = __atomic_load_n(&mt_g.start_ns, __ATOMIC_RELAXED);
	p->dump_ns = mt_now_ns();
	p->flags = (__atomic_load_n(&mt_g.active, __ATOMIC_RELAXED) ? MT_PROFILE_ACTIVE : 0) |
		   (mt_g.follow ? MT_PROFILE_FOLLOW : 0);
	read_cmdline(p->command, sizeof(p->command));
	ssize_t n = readlink("/proc/self/exe", p->exe, sizeof(p->exe) - 1);
	p->exe[n > 0 ? n : 0] = '\0';
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
	uint32_t cap = with_sites && MT_OPT(stacks) ? mt_sites_count() + 64 : 0;
	/* pools counted between now and the fill wait for the next dump */
	uint32_t pcap = mt_pools_used();
	size_t len = sizeof(struct snapshot) + MT_FN_TOTAL * sizeof(struct mt_func) +
		     cap * sizeof(struct mt_site) + pcap * sizeof(struct mt_pool);
	struct snapshot *sn = mt_sys_map(len);
	if (!sn)
		return NULL;
	sn->len = len;
	struct mt_profile *p = &sn->p;
	p->funcs = (struct mt_func *)(sn + 1);
	if (cap) {
		p->sites = (struct mt_site *)(p->funcs + MT_FN_TOTAL);
		p->nsites = cap; /* capacity, until mt_snapshot fills it */
		p->maps = mt_maps_read(&p->nmaps);
	}
	if (pcap) {
		p->pools = (struct mt_pool *)((struct mt_site *)(p->funcs + MT_FN_TOTAL) + cap);
		p->npools = pcap;
	}
	mt_snapshot(p, 0);
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
	mt_site_peak_now(s);
}

static int64_t sum_deltas(void)
{
	int64_t d = 0;
	for (struct mt_thread *t = __atomic_load_n(&mt_g.threads, __ATOMIC_ACQUIRE); t; t = t->next)
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
	if (!base && !(base = baseline_block = mt_arena_alloc(sizeof(*base))))
		goto out;
	sum_blocks(sum);
	/* in-use is a level, not a counter: it carries on; the peak restarts.
	 * Allocated bytes since the reset are freed + the change since then. */
	int64_t inuse = __atomic_load_n(&mt_g.inuse, __ATOMIC_RELAXED) + sum_deltas();
	baseline_write(base, sum, inuse);
	__atomic_store_n(&mt_g.peak, inuse, __ATOMIC_RELAXED);
out:
	spin_unlock(&reset_lock);
	mt_sys_unmap(sum, sizeof(*sum));
	mt_sites_foreach(reset_site, NULL);
	mt_pools_zero();
}

/* ---- dumps ---- */

static int path_for_seq(char *out, size_t len, uint32_t seq)
{
	int n = snprintf(out, len, "%s.%d.%u.%s", mt_g.prefix, (int)getpid(), seq, MT_FILE_EXT);
	return n > 0 && (size_t)n < len ? 0 : -ENAMETOOLONG;
}

/* The first sequence number without a file: an exec'd image keeps its pid,
 * and must not overwrite the dumps of the image before it. */
static uint32_t first_free_seq(void)
{
	char path[PATH_MAX];
	uint32_t s = 0;
	while (s < 100000 && path_for_seq(path, sizeof(path), s) == 0 && access(path, F_OK) == 0)
		s++;
	return s;
}

int mt_dump(const char *path, uint32_t reason, char *out, size_t outlen)
{
	char final[PATH_MAX];
	int ret, saved = errno, busy = mt_tls_busy;
	mt_tls_busy = 1;
	uint32_t seq = __atomic_fetch_add(&mt_g.seq, 1, __ATOMIC_RELAXED);
	if (path)
		ret = snprintf(final, sizeof(final), "%s", path) < (int)sizeof(final) ? 0 : -ENAMETOOLONG;
	else
		ret = path_for_seq(final, sizeof(final), seq);
	if (ret)
		goto out;
	struct mt_profile *p = snapshot_new(1);
	if (!p) {
		ret = -ENOMEM;
		goto out;
	}
	p->seq = seq;
	p->reason = reason;

	struct mt_buf b;
	mt_scratch_init(&b);
	ret = mt_file_encode(p, &b);
	mt_snapshot_free(p);
	if (ret)
		goto free_buf;
	ret = mt_file_write_whole(final, b.data, b.len, 0600);
	if (!ret)
		__atomic_fetch_add(&mt_g.dumps, 1, __ATOMIC_RELAXED);
free_buf:
	mt_scratch_free(&b);
out:
	if (out)
		snprintf(out, outlen, "%s", final);
	mt_tls_busy = busy;
	errno = saved;
	return ret;
}

/* ---- attach mode ---- */

static void rearm_threads(void);
static int enable_stacks(uint64_t period);
static void zero_counters(void);

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
	for (char *w = strtok(options, " "); w; w = strtok(NULL, " ")) {
		char *eq = strchr(w, '=');
		if (!eq || mt_ctl_unescape(eq + 1) < 0) {
			snprintf(out, outlen, "bad option word '%.64s'", w);
			return -EINVAL;
		}
		*eq = '\0';
		const char *v = eq + 1;
		if (!strcmp(w, "prefix") && v[0] == '/')
			snprintf(mt_g.prefix, sizeof(mt_g.prefix), "%s", v);
		else if (!strcmp(w, "stacks"))
			stacks = v[0] == '1';
		else if (!strcmp(w, "sample"))
			sample = strtoull(v, NULL, 10);
		else if (!strcmp(w, "funcs"))
			funcs = v;
		else if (!strcmp(w, "dump_every"))
			MT_OPT_SET(dump_every, strtoull(v, NULL, 10));
		else if (!strcmp(w, "interval_ms"))
			mt_g.interval_ms = strtoull(v, NULL, 10);
		else if (!strcmp(w, "dump_on_peak"))
			MT_OPT_SET(dump_on_peak, v[0] == '1');
		else if (!strcmp(w, "inactive"))
			inactive = v[0] == '1';
		else if (!strcmp(w, "run_id"))
			__atomic_store_n(&mt_g.run_id, strtoull(v, NULL, 10), __ATOMIC_RELAXED);
		else {
			snprintf(out, outlen, "unknown option '%.64s'", w);
			return -EINVAL;
		}
	}
	if (funcs && mt_custom_parse(funcs) < 0) {
		snprintf(out, outlen, "bad -f list '%.200s'", funcs);
		return -EINVAL;
	}
	__atomic_store_n(&mt_g.seq, first_free_seq(), __ATOMIC_RELAXED);
	zero_counters(); /* each session counts from zero */
	if (stacks) {
		int err = enable_stacks(sample);
		if (err) {
			snprintf(out, outlen, "call sites unavailable: %s", strerror(-err));
			return err;
		}
	}
	rearm_threads();
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
	__atomic_store_n(&mt_g.attached, 1, __ATOMIC_RELEASE);
	snprintf(out, outlen, "attached: %d call slots redirected, counting %s", mt_got_slots(),
		 inactive ? "inactive" : "active");
	return 0;
}

int mt_detach(char *out, size_t outlen)
{
	if (!mt_g.attached_mode || !__atomic_load_n(&mt_g.attached, __ATOMIC_ACQUIRE)) {
		snprintf(out, outlen, "not attached (a process started by memtap run stays traced until it exits)");
		return -EINVAL;
	}
	/* Restore the slots first: calls already inside a wrapper finish
	 * normally, and calls through function pointers the program copied
	 * while attached pass straight through once counting is off. */
	int restored = mt_got_restore();
	mt_set_active(0);
	mt_set_tracking(0);
	int err = mt_dump(NULL, MT_REASON_DETACH, out, outlen);
	mt_custom_stop(); /* the -f hooks end with the session */
	__atomic_store_n(&mt_g.stacks, 0, __ATOMIC_RELEASE);
	__atomic_store_n(&mt_g.attached, 0, __ATOMIC_RELEASE);
	(void)restored;
	return err;
}

/* ---- fork ---- */

/* No reset is half-written in a child (its readers would wait forever). */
static void fork_prepare(void)
{
	spin_lock(&reset_lock);
	spin_lock(&arena_lock);
}

static void fork_parent(void)
{
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

/* Every counter, total and call site back to zero, for a new process (fork)
 * or a new session (attach).  Memory allocated before stays allocated but is
 * no longer tracked: its frees count as calls, never against the totals of
 * the sites or of in-use.  Called with counting off, or single-threaded.
 *
 * Counting is off, but a thread may still be finishing a call it entered
 * before `ctl detach`: its block is never written here but with atomics, and
 * the counts start from a baseline of the counts so far (as `reset` does)
 * instead of being zeroed in place, where the late thread's next bump would
 * write its old count back.  What such a thread can still carry into the new
 * session is its one call and an in-use delta not yet folded (under
 * MT_INUSE_FLUSH). */
static void zero_counters(void)
{
	for (struct mt_thread *t = __atomic_load_n(&mt_g.threads, __ATOMIC_ACQUIRE); t; t = t->next)
		block_restart(t);
	block_restart(&mt_g.orphan);
	struct mt_thread *sum = mt_sys_map(sizeof(*sum));
	spin_lock(&reset_lock);
	if (!baseline_block)
		baseline_block = mt_arena_alloc(sizeof(*baseline_block));
	if (sum && baseline_block) {
		sum_blocks(sum);
		baseline_write(baseline_block, sum, 0);
	} else {
		for (struct mt_thread *t = __atomic_load_n(&mt_g.threads, __ATOMIC_ACQUIRE); t; t = t->next)
			block_zero_counts(t);
		block_zero_counts(&mt_g.orphan);
		baseline_write(NULL, NULL, 0);
	}
	spin_unlock(&reset_lock);
	if (sum)
		mt_sys_unmap(sum, sizeof(*sum));
	__atomic_store_n(&mt_g.inuse, 0, __ATOMIC_RELAXED);
	__atomic_store_n(&mt_g.peak, 0, __ATOMIC_RELAXED);
	__atomic_store_n(&mt_g.peak_snap_at, 0, __ATOMIC_RELAXED);
	__atomic_store_n(&mt_g.peak_dump_at, 0, __ATOMIC_RELAXED);
	__atomic_store_n(&mt_g.event_bytes, 0, __ATOMIC_RELAXED);
	__atomic_store_n(&mt_g.event_dumps, 0, __ATOMIC_RELAXED);
	__atomic_store_n(&mt_g.unknown_frees, 0, __ATOMIC_RELAXED);
	__atomic_store_n(&mt_g.start_ns, mt_now_ns(), __ATOMIC_RELAXED);
	mt_sites_clear();
	mt_pools_zero();
}

static void fork_child(void)
{
	spin_unlock(&arena_lock);
	spin_unlock(&reset_lock);
	if (!mt_g.enabled)
		return;
	if (!mt_g.follow) {
		/* --no-follow: the child runs untraced and writes nothing. */
		mt_set_active(0);
		mt_g.enabled = 0;
		mt_control_after_fork_child();
		return;
	}
	/* Each child starts from zero with its own files and control socket;
	 * the threads of the parent are gone (with any live-table lock they
	 * held). */
	mt_sites_after_fork_child();
	zero_counters();
	for (struct mt_thread *t = __atomic_load_n(&mt_g.threads, __ATOMIC_ACQUIRE); t; t = t->next)
		t->claimed = t == mt_tls_thread;
	mt_g.dumps = 0;
	mt_g.finished = 0;
	mt_g.seq = first_free_seq();
	mt_control_after_fork_child();
}

/* ---- start-up ---- */

static void read_options(void)
{
	const char *v = getenv("MEMTAP_PREFIX");
	if (v && v[0] == '/') {
		snprintf(mt_g.prefix, sizeof(mt_g.prefix), "%s", v);
	} else {
		char cwd[512];
		if (!getcwd(cwd, sizeof(cwd)))
			strcpy(cwd, "/tmp");
		snprintf(mt_g.prefix, sizeof(mt_g.prefix), "%s/%s", cwd, v && v[0] ? v : "memtap");
	}
	v = getenv("MEMTAP_FOLLOW");
	mt_g.follow = !(v && v[0] == '0');
	v = getenv("MEMTAP_RUN_ID");
	mt_g.run_id = v ? strtoull(v, NULL, 10) : 0;
	v = getenv("MEMTAP_INACTIVE");
	mt_set_active(!(v && v[0] == '1'));
	/* Stacks are switched on by the constructor, once libunwind is loaded. */
	v = getenv("MEMTAP_SAMPLE");
	mt_g.sample_period = v ? strtoull(v, NULL, 10) : 0;
	v = getenv("MEMTAP_DUMP_EVERY");
	mt_g.dump_every = v ? strtoull(v, NULL, 10) : 0;
	v = getenv("MEMTAP_INTERVAL_MS");
	mt_g.interval_ms = v ? strtoull(v, NULL, 10) : 0;
	v = getenv("MEMTAP_DUMP_ON_PEAK");
	mt_g.dump_on_peak = v && v[0] == '1';
	mt_custom_parse(getenv("MEMTAP_FUNCS"));
}

/* Threads that started before an option changed (the main thread, and in
 * attach mode all of them) draw their sampling distance and re-arm their
 * event countdown. */
static void rearm_threads(void)
{
	for (struct mt_thread *t = __atomic_load_n(&mt_g.threads, __ATOMIC_ACQUIRE); t; t = t->next) {
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
	mt_set_tracking(1);
	rearm_threads();
	return 0;
}

/* --stacks: load the unwinder and start sampling (from the constructor, not
 * from inside the first allocation, which may come while the dynamic loader
 * is still busy). */
static void start_stacks(void)
{
	const char *v = getenv("MEMTAP_STACKS");
	if (!v || v[0] != '1' || mt_g.attached_mode)
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
	int ok = mt_resolve() == 0 && pthread_key_create(&mt_g.key, thread_exit) == 0;
	if (ok) {
		mt_usable_check();
		read_options();
		/* Loaded into a running process: nothing is counted until `memtap
		 * attach` sends its options (ctl attach). */
		if (mt_g.attached_mode)
			mt_set_active(0);
		mt_g.start_ns = mt_now_ns();
		mt_g.seq = first_free_seq();
		mt_g.enabled = 1;
		pthread_atfork(fork_prepare, fork_parent, fork_child);
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
		int err = mt_hooks_start(0);
		mt_tls_busy = 0;
		if (err < 0)
			mt_log("-f: cannot hook the functions: %s",
			       mt_custom_error()[0] ? mt_custom_error() : strerror(-err));
	}
	mt_control_start();
}

__attribute__((destructor)) static void mt_dtor(void)
{
	if (!mt_g.enabled || (mt_g.attached_mode && !mt_g.attached) ||
	    __atomic_exchange_n(&mt_g.finished, 1, __ATOMIC_ACQ_REL))
		return;
	char path[PATH_MAX];
	int err = mt_dump(NULL, MT_REASON_EXIT, path, sizeof(path));
	if (err)
		mt_log("cannot write the exit profile %s: %s", path, strerror(-err));
	mt_control_stop();
}
