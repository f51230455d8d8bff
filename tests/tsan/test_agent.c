/*
 * The agent's concurrency under ThreadSanitizer.
 *
 * The agent cannot be preloaded into a TSan program (both interpose malloc),
 * so this program links the agent's real code (state.c, sites.c, control.c,
 * ... built with -fsanitize=thread into build-tsan/libmemtap-tsan.so, with
 * interpose.c replaced by tests/tsan/stubs.c) and drives it from many threads
 * the way the interposed entry points do: mt_enter() for the calling
 * thread's block, then mt_on_alloc / mt_on_free / mt_count.  Each test
 * asserts exact totals once its threads are joined, so it fails if counting
 * loses or invents a call; TSan (TSAN_OPTIONS=halt_on_error=1 exitcode=66)
 * fails it on any data race.
 *
 * One test per process: `test_agent NAME`.  tests/tsan/run.sh runs them all,
 * each with the environment it needs (the agent reads its options in its
 * constructor), and prints TAP.  `test_agent --list` names them.
 */
#include <dirent.h>
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "agent.h"
#include "memtap/ctl.h"
#include "memtap/format.h"

/* ---- checks ---- */

static void fail(const char *file, int line, const char *what, unsigned long long got,
		 unsigned long long want)
{
	fprintf(stderr, "%s:%d: %s: got %llu, want %llu\n", file, line, what, got, want);
	exit(1);
}

#define CHECK_EQ(got, want)                                                                   \
	do {                                                                                  \
		unsigned long long g_ = (unsigned long long)(got), w_ = (unsigned long long)(want); \
		if (g_ != w_)                                                                 \
			fail(__FILE__, __LINE__, #got, g_, w_);                               \
	} while (0)
#define CHECK(cond)                                                                           \
	do {                                                                                  \
		if (!(cond))                                                                  \
			fail(__FILE__, __LINE__, #cond, 0, 1);                                \
	} while (0)

static void run_threads(int n, void *(*fn)(void *), void *args, size_t argsize)
{
	pthread_t th[64];
	CHECK(n <= 64);
	for (int i = 0; i < n; i++)
		CHECK_EQ(pthread_create(&th[i], NULL, fn, (char *)args + (size_t)i * argsize), 0);
	for (int i = 0; i < n; i++)
		CHECK_EQ(pthread_join(th[i], NULL), 0);
}

/* ---- what the wrappers do (interpose.c's slow paths) ---- */

/* malloc(N) returned P: counted when the gate let the call in. */
static __attribute__((noinline)) int count_malloc(void *p, uint64_t n)
{
	struct mt_thread *t = mt_enter();
	if (!t)
		return 0;
	mt_on_alloc(t, MT_FN_MALLOC, n, n, p, MT_CFA);
	return 1;
}

/* free(P) of N usable bytes, before the real free (the live table must
 * forget P before the allocator can hand the address out again). */
static __attribute__((noinline)) int count_free(void *p, uint64_t n)
{
	struct mt_thread *t = mt_enter();
	if (!t) {
		(void)mt_before_free(p); /* counting is off; the live table stays true */
		return 0;
	}
	int known = mt_before_free(p);
	mt_on_free(t, MT_FN_FREE, n, known);
	return 1;
}

/* ---- reading results ---- */

static uint64_t calls_of(const struct mt_profile *p, const char *name)
{
	const struct mt_func *f = mt_profile_find(p, name);
	return f ? f->calls : 0;
}

static uint64_t bytes_of(const struct mt_profile *p, const char *name)
{
	const struct mt_func *f = mt_profile_find(p, name);
	return f ? f->bytes : 0;
}

static uint64_t failed_of(const struct mt_profile *p, const char *name)
{
	const struct mt_func *f = mt_profile_find(p, name);
	return f ? f->failed : 0;
}

/* A snapshot's figures must be plausible while threads count: a torn read
 * (a counter minus a baseline taken after it) would wrap to ~2^64. */
static void check_sane(const struct mt_profile *p)
{
	for (uint32_t i = 0; i < p->nfuncs; i++) {
		CHECK(p->funcs[i].calls < (1ull << 40));
		CHECK(p->funcs[i].bytes < (1ull << 50));
	}
	CHECK(p->totals.freed_bytes < (1ull << 50));
	CHECK(p->totals.allocated_bytes < (1ull << 50));
}

static const char *tmpdir(void)
{
	const char *d = getenv("MEMTAP_TSAN_DIR");
	CHECK(d && d[0] == '/');
	return d;
}

static int stop_flag;

static int stopping(void)
{
	return __atomic_load_n(&stop_flag, __ATOMIC_ACQUIRE);
}

static void set_stop(int v)
{
	__atomic_store_n(&stop_flag, v, __ATOMIC_RELEASE);
}

/* ---- threads: registration, exit, block reuse, the orphan block, all
 * while another thread snapshots (what `ctl stats` does) ---- */

#define T_THREADS 8
#define T_WAVES 20
#define T_CALLS 1500

static uint64_t t_size(unsigned id, unsigned i)
{
	return 1 + (id * 31u + i * 7u) % 5000u;
}

struct worker {
	unsigned id;
	uint64_t allocs, abytes, frees, fbytes, other;
};

static void *threads_worker(void *arg)
{
	struct worker *w = arg;
	for (unsigned i = 0; i < T_CALLS; i++) {
		uint64_t n = t_size(w->id, i);
		void *p = (void *)(uintptr_t)(0x100000u + 16u * i);
		if (i % 16 == 0) {
			/* As a call made after the thread's block was handed back. */
			mt_on_alloc(mt_g.orphan, MT_FN_MALLOC, n, n, p, MT_CFA);
			mt_on_free(mt_g.orphan, MT_FN_FREE, n, 1);
			mt_count(mt_g.orphan, MT_FN_MMAP, n, i % 5 == 0);
		} else {
			CHECK(count_malloc(p, n));
			CHECK(count_free(p, n));
			struct mt_thread *t = mt_enter();
			CHECK(t != NULL);
			mt_count(t, MT_FN_MMAP, n, i % 5 == 0);
		}
	}
	return NULL;
}

static void *snapshot_reader(void *arg)
{
	uint64_t last = 0, max = *(uint64_t *)arg, rounds = 0;
	while (!stopping() || rounds == 0) {
		struct mt_profile *p = mt_snapshot_new();
		CHECK(p != NULL);
		check_sane(p);
		uint64_t c = calls_of(p, "malloc");
		CHECK(c >= last); /* counters only grow, blocks are reused whole */
		CHECK(c <= max);
		last = c;
		mt_snapshot_free(p);
		rounds++;
	}
	return NULL;
}

static void test_threads(void)
{
	struct worker w[T_THREADS];
	uint64_t total = (uint64_t)T_WAVES * T_THREADS * T_CALLS, bytes = 0, failed = 0;
	pthread_t reader;
	CHECK_EQ(pthread_create(&reader, NULL, snapshot_reader, &total), 0);
	for (unsigned wave = 0; wave < T_WAVES; wave++) {
		for (unsigned k = 0; k < T_THREADS; k++) {
			memset(&w[k], 0, sizeof(w[k]));
			w[k].id = wave * T_THREADS + k;
			for (unsigned i = 0; i < T_CALLS; i++) {
				bytes += t_size(w[k].id, i);
				failed += i % 5 == 0;
			}
		}
		run_threads(T_THREADS, threads_worker, w, sizeof(w[0]));
	}
	set_stop(1);
	pthread_join(reader, NULL);

	struct mt_profile *p = mt_snapshot_new();
	CHECK_EQ(calls_of(p, "malloc"), total);
	CHECK_EQ(bytes_of(p, "malloc"), bytes);
	CHECK_EQ(calls_of(p, "free"), total);
	CHECK_EQ(bytes_of(p, "free"), bytes);
	CHECK_EQ(calls_of(p, "mmap"), total);
	CHECK_EQ(bytes_of(p, "mmap"), bytes);
	CHECK_EQ(failed_of(p, "mmap"), failed);
	CHECK_EQ(p->totals.in_use_bytes, 0);
	CHECK_EQ(p->totals.freed_bytes, bytes);
	CHECK_EQ(p->totals.allocated_bytes, bytes);
	mt_snapshot_free(p);
	/* Exited threads' blocks were handed on: one per concurrent thread. */
	unsigned blocks = 0, claimed = 0;
	for (struct mt_thread *t = mt_threads_head(); t; t = t->next) {
		if (t->shared)
			continue; /* the orphan block is always claimed */
		blocks++;
		claimed += __atomic_load_n(&t->claimed, __ATOMIC_ACQUIRE);
	}
	CHECK(blocks >= 1 && blocks <= T_THREADS);
	CHECK_EQ(claimed, 0);
}

/* ---- gate: activate/deactivate and reset while threads count ---- */

#define G_THREADS 6
#define G_WAVES 8
#define G_CALLS 3000

static void *gate_worker(void *arg)
{
	struct worker *w = arg;
	for (unsigned i = 0; i < G_CALLS; i++) {
		uint64_t n = t_size(w->id, i);
		void *p = (void *)(uintptr_t)(0x100000u + 16u * i);
		if (count_malloc(p, n)) {
			w->allocs++;
			w->abytes += n;
		}
		if (count_free(p, n)) {
			w->frees++;
			w->fbytes += n;
		}
	}
	return NULL;
}

static void *gate_toggler(void *arg)
{
	unsigned *resets = arg;
	for (unsigned k = 0; !stopping() || k < 8; k++) {
		mt_set_active(k & 1);
		sched_yield();
		if (k % 3 == 0) {
			mt_reset();
			(*resets)++;
		}
		struct mt_profile *p = mt_snapshot_new();
		CHECK(p != NULL);
		check_sane(p);
		mt_snapshot_free(p);
	}
	mt_set_active(1);
	return NULL;
}

/* Snapshots on a thread of their own, as a --dump-every or --dump-on-peak
 * dump is taken by an allocating thread while the control thread resets. */
static void *gate_reader(void *arg)
{
	(void)arg;
	for (unsigned k = 0; !stopping() || k < 8; k++) {
		struct mt_profile *p = mt_snapshot_new();
		CHECK(p != NULL);
		check_sane(p);
		mt_snapshot_free(p);
	}
	return NULL;
}

static uint64_t hist_calls(const struct mt_counter *c)
{
	uint64_t n = 0;
	for (int k = 0; k < MT_HIST_BUCKETS; k++)
		n += c->hist[k];
	return n;
}

/* G_WAVES waves of G_THREADS gate workers; what they did, summed. */
static void gate_waves(uint64_t *allocs, uint64_t *abytes, uint64_t *frees, uint64_t *fbytes)
{
	struct worker w[G_THREADS];
	for (unsigned wave = 0; wave < G_WAVES; wave++) {
		memset(w, 0, sizeof(w));
		for (unsigned k = 0; k < G_THREADS; k++)
			w[k].id = wave * G_THREADS + k;
		run_threads(G_THREADS, gate_worker, w, sizeof(w[0]));
		for (unsigned k = 0; k < G_THREADS; k++) {
			*allocs += w[k].allocs;
			*abytes += w[k].abytes;
			*frees += w[k].frees;
			*fbytes += w[k].fbytes;
		}
	}
}

static void test_gate(void)
{
	uint64_t allocs = 0, abytes = 0, frees = 0, fbytes = 0;
	unsigned resets = 0;
	pthread_t toggler, reader;
	CHECK_EQ(pthread_create(&toggler, NULL, gate_toggler, &resets), 0);
	CHECK_EQ(pthread_create(&reader, NULL, gate_reader, NULL), 0);
	gate_waves(&allocs, &abytes, &frees, &fbytes);
	set_stop(1);
	pthread_join(toggler, NULL);
	pthread_join(reader, NULL);
	CHECK(resets >= 3);

	/* Counts since the last reset, plus the baseline it took, are
	 * everything counted: a reset loses no call. */
	struct mt_profile *p = mt_snapshot_new();
	const struct mt_thread *base = (const struct mt_thread *)(uintptr_t)__atomic_load_n(&mt_sh->baseline, __ATOMIC_ACQUIRE);
	CHECK(base != NULL);
	CHECK_EQ(calls_of(p, "malloc") + hist_calls(&base->c[MT_FN_MALLOC]), allocs);
	CHECK_EQ(bytes_of(p, "malloc") + base->c[MT_FN_MALLOC].bytes, abytes);
	CHECK_EQ(calls_of(p, "free") + hist_calls(&base->c[MT_FN_FREE]), frees);
	CHECK_EQ(bytes_of(p, "free") + base->c[MT_FN_FREE].bytes, fbytes);
	/* In-use is a level, not reset. */
	CHECK_EQ(p->totals.in_use_bytes, abytes - fbytes);
	mt_snapshot_free(p);
}

/* ---- sites: interning colliding stacks from many threads, the live table's
 * inserts and removals, the sites at the peak, with dumps (and resets)
 * reading them concurrently.  MEMTAP_STACKS=1 and MEMTAP_SAMPLE=N. ---- */

#define S_THREADS 8
#define S_ROUNDS 30
#define S_BATCH 32
#define S_PATHS 4

/* Four call paths, four distinct stacks (noinline, noclone and different
 * bodies, so that no two are merged). */
#define PATH(k)                                                                               \
	static __attribute__((noinline, noclone)) void *path##k(uint64_t n)                   \
	{                                                                                     \
		void *p = malloc(n * (k + 1));                                                \
		CHECK(p != NULL);                                                             \
		count_malloc(p, n * (k + 1));                                                 \
		__asm__ volatile("" ::: "memory");                                            \
		return p;                                                                     \
	}
PATH(0)
PATH(1)
PATH(2)
PATH(3)
static void *(*const paths[S_PATHS])(uint64_t) = {path0, path1, path2, path3};

/* Threads that have unwound stay parked until the process exits, never
 * exiting themselves: libunwind's per-thread caches have destructors that
 * re-arm until the last destructor round, and there run after TSan's runtime
 * has torn the thread down (a crash in TSan, not a race).  Thread exit is
 * covered by the threads test, which does not unwind. */
static pthread_mutex_t park_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t park_cond = PTHREAD_COND_INITIALIZER;
static unsigned parked;

static void park(void)
{
	pthread_mutex_lock(&park_lock);
	parked++;
	pthread_cond_broadcast(&park_cond);
	for (;;)
		pthread_cond_wait(&park_cond, &park_lock);
}

static void wait_parked(unsigned n)
{
	pthread_mutex_lock(&park_lock);
	while (parked < n)
		pthread_cond_wait(&park_cond, &park_lock);
	pthread_mutex_unlock(&park_lock);
}

static void *sites_worker(void *arg)
{
	struct worker *w = arg;
	void *ptrs[S_BATCH];
	uint64_t sizes[S_BATCH];
	for (unsigned r = 0; r < S_ROUNDS; r++) {
		for (unsigned i = 0; i < S_BATCH; i++) {
			unsigned k = (w->id + i) % S_PATHS;
			uint64_t n = 8 + (w->id * 13u + r * 5u + i) % 200u;
			ptrs[i] = paths[k](n);
			sizes[i] = n * (k + 1);
			w->allocs++;
			w->abytes += sizes[i];
		}
		for (unsigned i = S_BATCH; i-- > 0;) {
			CHECK(count_free(ptrs[i], sizes[i]));
			free(ptrs[i]);
		}
	}
	park();
	return NULL;
}

static int sites_with_reset;

static void *sites_reader(void *arg)
{
	(void)arg;
	char path[512], out[512];
	snprintf(path, sizeof(path), "%s/reader.mtp", tmpdir());
	for (unsigned k = 0; !stopping() || k == 0; k++) {
		CHECK_EQ(mt_dump(path, MT_REASON_CTL, out, sizeof(out)), 0);
		CHECK(mt_sites_count() <= S_PATHS);
		if (sites_with_reset && k % 2)
			mt_reset();
	}
	return NULL;
}

struct site_sum {
	uint64_t n, alloc_objects, alloc_bytes, live_objects, live_bytes, peak_objects;
};

static void add_site(struct mt_sitex *s, void *arg)
{
	struct site_sum *sum = arg;
	sum->n++;
	uint64_t lo, lb;
	mt_site_live(s, &lo, &lb);
	sum->alloc_objects += __atomic_load_n(&s->alloc_objects, __ATOMIC_RELAXED);
	sum->alloc_bytes += __atomic_load_n(&s->alloc_bytes, __ATOMIC_RELAXED);
	sum->live_objects += lo;
	sum->live_bytes += lb;
	sum->peak_objects += __atomic_load_n(&s->peak_objects, __ATOMIC_RELAXED);
}

static void test_sites(void)
{
	CHECK(__atomic_load_n(&mt_g.stacks, __ATOMIC_ACQUIRE)); /* MEMTAP_STACKS=1 */
	struct worker w[S_THREADS];
	memset(w, 0, sizeof(w));
	for (unsigned k = 0; k < S_THREADS; k++)
		w[k].id = k;
	pthread_t reader, th[S_THREADS];
	CHECK_EQ(pthread_create(&reader, NULL, sites_reader, NULL), 0);
	for (unsigned k = 0; k < S_THREADS; k++)
		CHECK_EQ(pthread_create(&th[k], NULL, sites_worker, &w[k]), 0);
	wait_parked(S_THREADS);
	set_stop(1);
	pthread_join(reader, NULL);

	uint64_t allocs = 0, bytes = 0;
	for (unsigned k = 0; k < S_THREADS; k++) {
		allocs += w[k].allocs;
		bytes += w[k].abytes;
	}
	struct site_sum sum = {0};
	mt_sites_foreach(add_site, &sum);
	/* Every sampled allocation was freed, and every free found its entry. */
	CHECK_EQ(sum.live_objects, 0);
	CHECK_EQ(sum.live_bytes, 0);
	CHECK_EQ(mt_sh->unknown_frees, 0);
	CHECK(sum.n >= 1 && sum.n <= S_PATHS);
	if (mt_g.sample_period == 1) {
		/* Every allocation sampled: one site per call path exactly. */
		CHECK_EQ(sum.n, S_PATHS);
		if (!sites_with_reset) {
			CHECK_EQ(sum.alloc_objects, allocs);
			CHECK_EQ(sum.alloc_bytes, bytes);
			/* (A reset sets the peak to what is live then.) */
			CHECK(sum.peak_objects >= 1 && sum.peak_objects <= S_THREADS * S_BATCH);
		}
	}
	CHECK(sum.alloc_objects <= allocs);
	struct mt_profile *p = mt_snapshot_new();
	CHECK_EQ(p->totals.in_use_bytes, 0);
	if (!sites_with_reset) {
		CHECK_EQ(calls_of(p, "malloc"), allocs);
		CHECK_EQ(bytes_of(p, "malloc"), bytes);
		CHECK_EQ(calls_of(p, "free"), allocs);
		CHECK_EQ(bytes_of(p, "free"), bytes);
	}
	mt_snapshot_free(p);
}

static void test_sites_reset(void)
{
	sites_with_reset = 1;
	test_sites();
}

/* ---- ctl: the real control thread serving stats, status, dump, activate and
 * deactivate over its socket while threads count (MEMTAP_INTERVAL_MS makes
 * it write periodic dumps as well) ---- */

/* Sends one request; returns the reply in BUF (NUL-terminated). */
static void ctl(const char *req, char *buf, size_t len)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	snprintf(sa.sun_path, sizeof(sa.sun_path), MT_CTL_SOCK_FMT, mt_ctl_rundir(), (unsigned)geteuid(),
		 (int)getpid());
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	CHECK(fd >= 0);
	CHECK_EQ(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	size_t n = strlen(req);
	CHECK_EQ(write(fd, req, n), n);
	CHECK_EQ(write(fd, "\n", 1), 1);
	size_t got = 0;
	for (;;) {
		char tmp[4096];
		ssize_t r = read(fd, tmp, sizeof(tmp));
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			break;
		size_t k = (size_t)r < len - 1 - got ? (size_t)r : len - 1 - got;
		memcpy(buf + got, tmp, k);
		got += k;
	}
	buf[got] = '\0';
	close(fd);
	if (strncmp(buf, "ok\n", 3) != 0) {
		fprintf(stderr, "ctl %s: %s\n", req, buf);
		CHECK(!"ctl reply is ok");
	}
}

static void *ctl_client(void *arg)
{
	(void)arg;
	static char buf[1 << 16];
	char req[600];
	snprintf(req, sizeof(req), "dump %s/ctl.mtp", tmpdir());
	const char *cmds[] = {"stats", "status", req, "deactivate", "activate"};
	for (unsigned k = 0; !stopping() || k < 5; k++)
		ctl(cmds[k % 5], buf, sizeof(buf));
	ctl("activate", buf, sizeof(buf));
	return NULL;
}

static void test_ctl(void)
{
	static char buf[1 << 16];
	uint64_t allocs = 0, abytes = 0, frees = 0, fbytes = 0;
	ctl("reset", buf, sizeof(buf)); /* counts start here */
	pthread_t client;
	CHECK_EQ(pthread_create(&client, NULL, ctl_client, NULL), 0);
	gate_waves(&allocs, &abytes, &frees, &fbytes);
	set_stop(1);
	pthread_join(client, NULL);

	char req[600], path[600], err[256];
	snprintf(path, sizeof(path), "%s/final.mtp", tmpdir());
	snprintf(req, sizeof(req), "dump %s", path);
	ctl(req, buf, sizeof(buf));
	struct mt_profile *p = NULL;
	if (mt_file_read(path, &p, err, sizeof(err))) {
		fprintf(stderr, "%s: %s\n", path, err);
		CHECK(!"the final dump reads back");
	}
	CHECK_EQ(calls_of(p, "malloc"), allocs);
	CHECK_EQ(bytes_of(p, "malloc"), abytes);
	CHECK_EQ(calls_of(p, "free"), frees);
	CHECK_EQ(bytes_of(p, "free"), fbytes);
	CHECK_EQ(p->totals.in_use_bytes, abytes - fbytes);
	mt_profile_free(p);
}

/* ---- attach: `ctl attach` / `ctl detach` sessions (zero_counters, the
 * gate, re-arming every thread) while threads keep calling
 * (MEMTAP_TSAN_ATTACH=1) ---- */

#define A_THREADS 4
#define A_CYCLES 12

static void *attach_worker(void *arg)
{
	struct worker *w = arg;
	for (unsigned i = 0; !stopping(); i++) {
		uint64_t n = t_size(w->id, i);
		void *p = (void *)(uintptr_t)(0x100000u + 16u * (i % 4096));
		w->allocs += (uint64_t)count_malloc(p, n);
		w->frees += (uint64_t)count_free(p, n);
	}
	park(); /* it may have unwound in a stacks session */
	return NULL;
}

static void attach(const char *extra)
{
	char opts[700], out[1024];
	snprintf(opts, sizeof(opts), "prefix=%s/attach %s", tmpdir(), extra);
	int err = mt_attach(opts, out, sizeof(out));
	if (err)
		fprintf(stderr, "ctl attach %s: %s\n", opts, out);
	CHECK_EQ(err, 0);
}

static void test_attach(void)
{
	CHECK(mt_g.attached_mode);
	char out[1024];
	struct worker w[A_THREADS], last[A_THREADS];
	pthread_t th;
	memset(w, 0, sizeof(w));
	for (unsigned k = 0; k < A_THREADS; k++) {
		w[k].id = k;
		CHECK_EQ(pthread_create(&th, NULL, attach_worker, &w[k]), 0); /* parks, never joined */
	}
	for (unsigned c = 0; c < A_CYCLES; c++) {
		attach(c % 3 == 2 ? "inactive=1" : c % 3 == 1 ? "stacks=1 sample=4096" : "");
		usleep(2000);
		if (c % 3 == 2) {
			mt_set_active(1);
			usleep(1000);
		}
		CHECK_EQ(mt_detach(out, sizeof(out)), 0);
	}
	set_stop(1);
	wait_parked(A_THREADS);
	uint64_t counted = 0;
	for (unsigned k = 0; k < A_THREADS; k++)
		counted += w[k].allocs;
	CHECK(counted > 0);

	/* A last session with threads that start and finish inside it: the
	 * live file after its detach (what the memtap command reads to write
	 * the profile) holds exactly their calls, nothing of the sessions
	 * before. */
	attach("");
	memset(last, 0, sizeof(last));
	for (unsigned k = 0; k < A_THREADS; k++)
		last[k].id = k;
	run_threads(A_THREADS, gate_worker, last, sizeof(last[0]));
	CHECK_EQ(mt_detach(out, sizeof(out)), 0);
	uint64_t allocs = 0, abytes = 0;
	for (unsigned k = 0; k < A_THREADS; k++) {
		allocs += last[k].allocs;
		abytes += last[k].abytes;
	}
	CHECK_EQ(allocs, (uint64_t)A_THREADS * G_CALLS);
	struct mt_profile *p = mt_snapshot_new();
	CHECK(p != NULL);
	CHECK_EQ(calls_of(p, "malloc"), allocs);
	CHECK_EQ(bytes_of(p, "malloc"), abytes);
	CHECK_EQ(calls_of(p, "free"), allocs);
	CHECK_EQ(p->totals.in_use_bytes, 0);
	mt_snapshot_free(p);
}

/* ---- main ---- */

static const struct {
	const char *name;
	void (*fn)(void);
} tests[] = {
	{"threads", test_threads},
	{"gate", test_gate},
	{"sites", test_sites},
	{"sites_reset", test_sites_reset},
	{"sites_sampled", test_sites},
	{"ctl", test_ctl},
	{"attach", test_attach},
};

int main(int argc, char **argv)
{
	size_t n = sizeof(tests) / sizeof(tests[0]);
	if (argc == 2 && !strcmp(argv[1], "--list")) {
		for (size_t i = 0; i < n; i++)
			printf("%s\n", tests[i].name);
		return 0;
	}
	for (size_t i = 0; argc == 2 && i < n; i++) {
		if (strcmp(argv[1], tests[i].name) == 0) {
			tests[i].fn();
			return 0;
		}
	}
	fprintf(stderr, "usage: %s --list | TEST (run by tests/tsan/run.sh)\n", argv[0]);
	return 2;
}
