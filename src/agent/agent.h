/*
 * The in-process agent's internal interfaces (not an exported API).
 *
 * The agent is a shared library preloaded into the traced program.  It
 * interposes the allocation functions (interpose.c), counts every call in
 * per-thread blocks that are summed when somebody reads them (state.c), and
 * serves `memtap ctl` requests on a control thread (control.c).
 *
 * Invariants:
 * - The allocation path takes no lock: each thread writes only its own block
 *   (struct mt_thread); readers sum all blocks.  Blocks are never freed, only
 *   handed to a new thread once their thread has exited, so their counts stay
 *   in the sums.
 * - The agent's own memory comes from mmap (mt_arena_alloc), never from the
 *   allocator it traces.
 * - tls_busy is set while the agent calls into the real allocator or works on
 *   its own behalf; calls made then pass straight through, uncounted (this is
 *   the recursion guard, and it keeps operator new's inner malloc from being
 *   counted twice).  malloc's and free's fast paths do without it: they run
 *   only on glibc, whose malloc and free never call back through the PLT, and
 *   on jemalloc, tcmalloc and mimalloc, whose malloc and free call nothing we
 *   interpose but mmap, munmap and sbrk, which do not count the allocator's
 *   own calls (interpose.c, "other allocators").
 */
#ifndef MEMTAP_AGENT_H
#define MEMTAP_AGENT_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <unistd.h>

#include "memtap/live.h"
#include "memtap/profile.h"

#define MT_EXPORT __attribute__((visibility("default")))
#define likely(x) __builtin_expect(!!(x), 1)
#define unlikely(x) __builtin_expect(!!(x), 0)

enum mt_fn_id {
#define MT_FN(id, sym, name, kind, size, fail, ret) MT_FN_##id,
#include "memtap/funcs.def"
#undef MT_FN
	MT_FN_COUNT
};

/* Functions named with -f get counter slots after the built-in ones. */
#define MT_CUSTOM_MAX 16
#define MT_FN_TOTAL (MT_FN_COUNT + MT_CUSTOM_MAX)

struct mt_custom {
	char name[MT_NAME_MAX];
	int size_arg; /* argN whose value is the size, or -1 */
	int pool_arg; /* argM that names the pool, or -1: calls and bytes per pool */
};

/* A function's counters.  Calls are not counted apart: every call lands in
 * exactly one histogram bucket, so calls = the sum of hist. */
struct mt_counter {
	uint64_t bytes, failed;
	uint64_t hist[MT_HIST_BUCKETS];
};

/* One thread's counters, in the live file (struct mt_live_block is this
 * layout as readers see it).  Only the owning thread writes them (except
 * the shared orphan block, written with atomics). */
struct mt_thread {
	struct mt_thread *next; /* registry list; never unlinked */
	int claimed;            /* a live thread owns this block */
	int shared;             /* the orphan block: update with atomics */
	int64_t inuse_delta;    /* in-use change not yet folded into mt_g.inuse */
	int64_t delta_high;     /* highest inuse_delta since the last fold */
	int64_t event_left;     /* bytes until the next allocation event */
	int64_t event_armed;    /* what event_left was armed with */
	int64_t sample_left;    /* bytes until the next sampled allocation */
	uint64_t rng;           /* sampling distances */
	uint64_t released;      /* usable bytes of old blocks moved by realloc */
	struct mt_counter c[MT_FN_TOTAL];
};
_Static_assert(sizeof(struct mt_counter) == sizeof(struct mt_live_counter), "live.h: counter layout");
_Static_assert(offsetof(struct mt_thread, inuse_delta) == offsetof(struct mt_live_block, inuse_delta) &&
	       offsetof(struct mt_thread, released) == offsetof(struct mt_live_block, released) &&
	       offsetof(struct mt_thread, c) == offsetof(struct mt_live_block, c) &&
	       sizeof(struct mt_thread) == offsetof(struct mt_live_block, c) +
	       MT_FN_TOTAL * sizeof(struct mt_live_counter), "live.h: block layout");
_Static_assert(MT_FN_TOTAL <= MT_LIVE_FUNCS_MAX && MT_CUSTOM_MAX == MT_LIVE_CUSTOM_MAX, "live.h: limits");

/* mt_g.fast: the fast-path gate. */
enum {
	MT_FAST_OFF = 0,    /* every call takes the slow path */
	MT_FAST_PLAIN = 1,  /* malloc and free: nothing tracked */
	MT_FAST_FILTER = 2, /* malloc; free after the live table's filter */
	MT_FAST_MALLOC = 3, /* malloc only (every allocation tracked) */
};

/* Configuration and process-wide state. */
struct mt_global {
	int ready;        /* real functions resolved, options read */
	int attached_mode; /* loaded into a running process: hooks are GOT hooks */
	int attached;     /* attach mode: `ctl attach` has installed the hooks */
	int enabled;      /* 0: this process is not traced (e.g. --no-follow child) */
	int active;       /* counting on (ctl activate/deactivate): mt_set_active */
	int fast;         /* MT_FAST_*: which fast paths malloc/free may take (gate_update) */
	int fast_alt;     /* MT_FAST_*: the same for jemalloc, tcmalloc or mimalloc (gate_update) */
	int usable_fast;  /* glibc's chunk headers give usable sizes */
	int alt_fast;     /* the allocator is jemalloc, tcmalloc or mimalloc and its self-test passed */
	int lzcnt;        /* the CPU has LZCNT (the fast paths use it) */
	int follow;       /* trace children and exec'd programs */
	int finished;     /* the exit dump has been written */
	int stacks;       /* --stacks: sample allocations with their call sites */
	int leaks;        /* --leaks: a leak check by reachability at exit or detach (leaks.c) */
	int tracking;     /* sampled allocations are in the live table: mt_set_tracking */
	int dump_on_peak; /* --dump-on-peak */
	uint64_t sample_period;  /* mean bytes between samples; 1: every allocation */
	uint64_t dump_every;     /* --dump-every=BYTES (0: off) */
	uint64_t event_bytes;    /* (atomic) bytes allocated, for --dump-every */
	uint64_t event_dumps;    /* (atomic) --dump-every dumps due so far */
	int64_t peak_snap_at;    /* in-use at which the sites at the peak are next recorded */
	int64_t peak_dump_at;    /* in-use at which --dump-on-peak next dumps */
	int ncustom;             /* -f functions */
	struct mt_custom custom[MT_CUSTOM_MAX];
	uint32_t dumps;   /* dumps written (atomic) */
	uint64_t arena_bytes; /* (atomic) the agent's own long-lived memory, mapped */
	pthread_key_t key;
	/* The shared orphan block (in the live file, on the registry list):
	 * threads past their exit, and any that could not get a block. */
	struct mt_thread *orphan;
	/* What the agent acts on is its own: the live file's header only
	 * mirrors these for readers (the process can write anything there). */
	struct mt_thread *threads;  /* registry head (atomic) */
	char prefix[MT_LIVE_PREFIX_MAX]; /* files the agent writes itself: PREFIX.<pid>.<seq>.mtp */
	int session_pid;             /* the memtap command that writes the profiles (0: none) */
	uint64_t session_start;      /* its starttime */
	uint32_t seq;                /* next dump sequence number (atomic) */
};

extern struct mt_global mt_g;

/* The live file's header (shared.c): the process-wide figures readers need
 * (in-use, peak, the registry of blocks, the reset baseline, the options,
 * how the process ended) live there, not in mt_g.  Never NULL once mt_init
 * has succeeded. */
extern struct mt_live_hdr *mt_sh;

/* Whether [P, P + SIZE) lies in the live file's arena: a pointer read
 * from there (a block's next, a site's all) is followed only then, since
 * the process may have overwritten it. */
static inline int mt_in_arena(const void *p, size_t size)
{
	uintptr_t a = (uintptr_t)p, base = (uintptr_t)mt_sh;
	return a >= base && a - base <= mt_sh->cap && size <= mt_sh->cap - (a - base);
}

/* The registry of blocks: newest first, through next; never unlinked. */
static inline struct mt_thread *mt_threads_head(void)
{
	return __atomic_load_n(&mt_g.threads, __ATOMIC_ACQUIRE);
}

static inline struct mt_thread *mt_thread_next(const struct mt_thread *t)
{
	struct mt_thread *n = t->next;
	return n && mt_in_arena(n, sizeof(*n)) ? n : NULL;
}

/* shared.c: the live file and its arena */
int mt_shared_setup(void);          /* at start-up: 0 or -ENOMEM */
void *mt_shared_alloc(size_t size); /* zeroed, in the live file, never freed; NULL when full */
int mt_shared_is_file(void);        /* readers outside can see the arena */
const char *mt_shared_path(void);   /* the file ("" when private) */
void mt_shared_fork_child(int follow);
void mt_shared_end(uint32_t how, uint32_t code); /* enum mt_live_end */
int mt_session_alive(void);        /* a memtap session reads this file and writes the profiles */
void mt_shared_remove(void);
void mt_shared_catch_fatal(void);
void mt_shared_maps_publish(void); /* with stacks: the mappings, for readers */
/* A new spool file for a dump taken now and written out by the session:
 * <live dir of the euid>/<pid>-<start_ns>-<n>.mtp.  0 or -errno. */
int mt_shared_spool_path(char *out, size_t len);

/* Options that `ctl attach` sets while threads that counted in an earlier
 * session may still be finishing a call: read (and written) with relaxed
 * atomics, a plain load on x86-64. */
#define MT_OPT(field) __atomic_load_n(&mt_g.field, __ATOMIC_RELAXED)
#define MT_OPT_SET(field, v) __atomic_store_n(&mt_g.field, (v), __ATOMIC_RELAXED)

/* A field of a thread's block that another thread may read or write too
 * (snapshots read the counters; ctl attach re-arms and zeroes the countdowns
 * of every block): relaxed atomics, so each access is whole and the compiler
 * keeps it, at the cost of a plain load or store on x86-64. */
#define MT_LOAD(x) __atomic_load_n(&(x), __ATOMIC_RELAXED)
#define MT_STORE(x, v) __atomic_store_n(&(x), (v), __ATOMIC_RELAXED)
extern __thread int mt_tls_busy __attribute__((tls_model("initial-exec")));
extern __thread struct mt_thread *mt_tls_thread __attribute__((tls_model("initial-exec")));

extern const char *const mt_fn_names[MT_FN_COUNT];
extern const uint32_t mt_fn_kinds[MT_FN_COUNT];

/* The agent's own pages, read-write and private.  Raw system calls: the
 * agent's exported mmap and munmap wrappers must not see its own memory.
 * Built with ThreadSanitizer (tests/tsan, where there are no wrappers) they
 * go through libc's, which TSan intercepts to map its metadata for the range
 * (atomics on memory it never saw mapped crash it) and to forget the old
 * contents' history when the range is unmapped and reused. */
static inline void *mt_sys_map(size_t len)
{
#ifdef __SANITIZE_THREAD__
	void *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	return p == MAP_FAILED ? NULL : p;
#else
	long r = syscall(SYS_mmap, 0, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	return r < 0 && r > -4096 ? NULL : (void *)r;
#endif
}

static inline void mt_sys_unmap(void *p, size_t len)
{
#ifdef __SANITIZE_THREAD__
	munmap(p, len);
#else
	syscall(SYS_munmap, p, len);
#endif
}

/* state.c */
int mt_init(void);                       /* 1 when the agent is ready */
struct mt_thread *mt_thread_attach(void); /* a block for the calling thread */
void mt_inuse_flush(struct mt_thread *t); /* fold T's delta into mt_g.inuse */
void mt_inuse_fold(int64_t delta);        /* add to mt_g.inuse, track the peak */
void mt_peak_offer(int64_t inuse);        /* raise mt_g.peak to INUSE if higher */
void *mt_arena_alloc(size_t size);        /* zeroed, page-backed, never freed */
/* The arena's [lo, hi) chunks (leaks.c): how many were made; only the first
 * 4096 are listed. */
uint32_t mt_arena_chunks(const uint64_t (**out)[2]);
/* Sums every thread's counters (minus the reset baseline) into P, whose funcs
 * array must have room for MT_FN_COUNT entries; only called functions are
 * included unless ALL. */
void mt_snapshot(struct mt_profile *p, int all);
/* A snapshot of the called functions in mmap-backed memory; NULL on ENOMEM. */
struct mt_profile *mt_snapshot_new(void);
void mt_snapshot_free(struct mt_profile *p);
/* Writes a profile to PATH (or the next PREFIX.<pid>.<seq>.mtp when PATH is
 * NULL) atomically; 0 or -errno, with the final path in OUT. */
int mt_dump(const char *path, uint32_t reason, char *out, size_t outlen);
/* --dump-every (KIND 0) or --dump-on-peak (1) wants a dump: a request the
 * session answers, or, without a session, a dump the agent writes. */
void mt_dump_request(int kind, uint32_t reason);
void mt_reset(void);
/* The end of the process (interpose.c's exit wrappers): exit()'s status,
 * and _exit()/_Exit(), which run no exit handlers. */
void mt_note_exit(int status);
void mt_note__exit(int status);
/* attach mode: `ctl attach OPTIONS` and `ctl detach`; 0 or -errno, with a
 * message or the last dump's path in OUT. */
int mt_attach(char *options, char *out, size_t outlen);
int mt_detach(char *out, size_t outlen);
struct mt_buf;
void mt_scratch_init(struct mt_buf *b); /* mmap-backed buffer for replies and dumps */
void mt_scratch_free(struct mt_buf *b);
void mt_log(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
uint64_t mt_now_ns(void);

/* sites.c: call sites (--stacks) */
struct mt_sitex { /* in the live file: struct mt_live_site is this layout */
	struct mt_sitex *next; /* hash chain; never unlinked */
	struct mt_sitex *all;  /* every site, newest first (mt_sites_foreach) */
	uint64_t hash;
	uint32_t fn, nframes;
	uint32_t cached;                     /* stack-cache entries made for it */
	uint32_t pad;
	uint64_t alloc_objects, alloc_bytes; /* sampled allocations */
	uint64_t freed_objects, freed_bytes; /* of those, freed (live = alloc - freed) */
	uint64_t reset_objects, reset_bytes; /* alloc_* at the last `reset` */
	uint64_t peak_objects, peak_bytes;   /* live when in-use last peaked */
	uint64_t temp_objects, temp_bytes;   /* temporary allocations (sites.c) */
	uint64_t frames[];
};
_Static_assert(sizeof(struct mt_sitex) == sizeof(struct mt_live_site) &&
	       offsetof(struct mt_sitex, all) == offsetof(struct mt_live_site, all) &&
	       offsetof(struct mt_sitex, alloc_objects) == offsetof(struct mt_live_site, alloc_objects) &&
	       offsetof(struct mt_sitex, peak_bytes) == offsetof(struct mt_live_site, peak_bytes) &&
	       offsetof(struct mt_sitex, temp_bytes) == offsetof(struct mt_live_site, temp_bytes),
	       "live.h: site layout");
int mt_sites_init(void);
/* A site's sampled allocations not yet freed.  Two counters, not four: a
 * sample and a free each pay two atomic additions.  Freed is read first (with
 * acquire, as every free follows its allocation), so live never goes below
 * zero. */
static inline void mt_site_live(const struct mt_sitex *s, uint64_t *objects, uint64_t *bytes)
{
	uint64_t fo = __atomic_load_n(&s->freed_objects, __ATOMIC_ACQUIRE);
	uint64_t fb = __atomic_load_n(&s->freed_bytes, __ATOMIC_ACQUIRE);
	uint64_t ao = __atomic_load_n(&s->alloc_objects, __ATOMIC_ACQUIRE);
	uint64_t ab = __atomic_load_n(&s->alloc_bytes, __ATOMIC_ACQUIRE);
	*objects = ao > fo ? ao - fo : 0;
	*bytes = ab > fb ? ab - fb : 0;
}
/* The peak figures become what is live now (a new peak, a reset).  Written
 * by one thread at a time, read by any dump: relaxed atomics, each whole. */
static inline void mt_site_peak_now(struct mt_sitex *s)
{
	uint64_t o, b;
	mt_site_live(s, &o, &b);
	__atomic_store_n(&s->peak_objects, o, __ATOMIC_RELAXED);
	__atomic_store_n(&s->peak_bytes, b, __ATOMIC_RELAXED);
}
int64_t mt_sample_interval(struct mt_thread *t);
/* Arms T's event countdown; the slow path when it runs out (samples and
 * --dump-every). */
void mt_event_arm(struct mt_thread *t);
/* CFA: the allocation function's canonical frame address (MT_CFA, taken in
 * the exported wrapper or in a function it tail-calls): the caller's stack
 * pointer at the call, where the stack cache starts (sites.c).  A wrong CFA
 * costs speed, never correctness: it is checked against the unwinder. */
/* USABLE: the allocation's in-use bytes, added after its sample is
 * recorded, so that the sites copied at a new peak include the allocation
 * that made it. */
void mt_alloc_event(struct mt_thread *t, int fn, uint64_t size, int64_t usable, void *ptr, const char *cfa);
#define MT_CFA ((const char *)__builtin_dwarf_cfa())
int mt_live_forget(void *ptr); /* 1 when PTR was a sampled live allocation */
/* With --stacks: the calling thread's return addresses outside the agent,
 * innermost first, at most N into OUT; 0 without stacks. */
int mt_backtrace_outside(uint64_t *out, int n);
void mt_sites_foreach(void (*fn)(struct mt_sitex *, void *), void *arg);
uint32_t mt_sites_count(void);
void mt_sites_peak(void);
void mt_sites_clear(void);
void mt_sites_after_fork_child(void); /* frees the live table's locks */
/* maps.c: the process's file-backed mappings with build-ids, in scratch
 * memory released by mt_maps_free. */
struct mt_mapping *mt_maps_read(uint32_t *n);
void mt_maps_free(struct mt_mapping *m, uint32_t n);

/* got.c: GOT hooks */
struct mt_got_hook {
	const char *name;
	void *replacement;
};
int mt_got_add(const char *name, void *replacement); /* index, or -ENOSPC */
/* A hook whose slots mt_got_restore() leaves in place (the unwinder's, for
 * return hooks: hook.c). */
int mt_got_add_sticky(const char *name, void *replacement);
/* Drops NAME's hook (after mt_got_restore): its slots are no longer patched. */
void mt_got_forget(const char *name);
int mt_got_patch(void);   /* patch every loaded module; slots newly patched */
int mt_got_restore(void); /* put every patched slot back; slots restored */
int mt_got_slots(void);
/* The definition of NAME the program's own calls reach, for an agent loaded
 * into a running process: dlsym(RTLD_DEFAULT) unless that is a canonical PLT
 * stub (a non-PIE program that takes a function's address exports its PLT
 * stub under the function's name; once its GOT slot is ours, calling the stub
 * would come straight back), then the first real definition in load order.
 * NULL when there is none.  Call with the recursion guard set. */
void *mt_global_sym(const char *name);

/* custom.c: -f FUNC */
int mt_custom_parse(const char *list);
/* -f FUNC:pool=argM: a lock-free table per such function, in the live file
 * (struct mt_live_pools), of calls and bytes per pool; snapshots read them
 * through the header.  mt_pools_zero() empties every table (reset, fork, a
 * new attach session; calls counted meanwhile may be lost). */
void mt_pools_zero(void);
int mt_custom_start(void);
/* Installs the GOT hooks: the -f functions, dlopen (to patch later modules)
 * and, with ALLOC_FAMILY (attach mode), every interposed function.  Returns
 * the number of slots patched or -errno. */
int mt_hooks_start(int alloc_family);
void mt_custom_resolve(void);
/* Why mt_hooks_start() failed, naming the function ("" if it did not say). */
const char *mt_custom_error(void);
/* The end of an attach session: -f hooks inert, no -f functions. */
void mt_custom_stop(void);

/* pools.c: --pools, APR pool lifetimes (memtap/pools.h).  mt_apr_start()
 * makes the table (once), publishes it and registers the GOT hooks of the
 * libapr functions found so far (FRESH: a new attach session empties it);
 * mt_apr_resolve() again after a dlopen; mt_apr_stop() at detach, after the
 * hooks were made inert. */
int mt_apr_start(int enable, int fresh);
int mt_apr_enabled(void);
void mt_apr_resolve(void);
void mt_apr_reset(void);
void mt_apr_fork_child(void);
void mt_apr_stop(void);
/* For `ctl status`: "off", or whether libapr is hooked and the counts. */
void mt_apr_describe(char *out, size_t len);
/* leaks.c: the leak check by reachability (docs/LEAKS.md).  Stops the other
 * threads (but the NHELD ones the memtap command holds stopped, whose
 * registers HELD gives), scans, stores the result in the live file
 * (hdr.leaks); 0 or -errno, with a summary or the reason in MSG. */
struct mt_leaks_held;
int mt_leaks_check(int at_exit, const struct mt_leaks_held *held, uint32_t nheld, char *msg, size_t msglen);
/* A new child: no check of its own yet (the parent's is not its), and no
 * check running (one may have been at the fork). */
void mt_leaks_after_fork_child(void);
/* How long ago the last check ended (UINT64_MAX: none yet). */
uint64_t mt_leaks_age_ns(void);
/* sites.c, for the check: every sampled live allocation, read without the
 * live table's locks (the other threads are stopped: a lock one holds would
 * never be released); stops when FN returns nonzero.  mt_live_count(): how
 * many there are, roughly (the sites' live counts). */
void mt_live_each(int (*fn)(uintptr_t ptr, uint64_t size, struct mt_sitex *site, void *arg), void *arg);
size_t mt_live_count(void);

/* control.c */
extern int mt_ctl_tid; /* the control thread's id (0: none): the leak check leaves it running */
int mt_control_start(void);
void mt_control_stop(void);
/* Asks the control thread, over its own socket, to refresh the allocator's
 * figures in the live file (`sync`), waiting at most MS: the end of the
 * process, whose exiting thread must not call the allocator itself.
 * 0 or -errno (-ETIMEDOUT: it did not answer in time). */
int mt_control_sync(int ms);
void mt_control_after_fork_child(void);
/* Around a change of user: before it (AFTER = 0) the socket is removed while
 * it still can be; after it, the socket is made again in the directory of
 * the new effective uid if that changed. */
void mt_control_uid_change(int after);

/* Replies of the control server, in scratch memory. */
void mt_reply(struct mt_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void mt_reply_bytes(struct mt_buf *b, const char *s, size_t n);

/* allocstats.c: the allocator's statistics, the jemalloc bridge, --glibc */
/* Takes the allocator's statistics into the live file (hdr.allocstats);
 * with TEXT, also the reply of `ctl stats`.  -ENOTSUP: no interface known. */
int mt_allocstats_take(struct mt_buf *text);
/* WHAT: 'a' activate, 'd' deactivate, 'u' dump: jemalloc's prof.active /
 * prof.dump when jemalloc profiles; what it did goes into B. */
void mt_jemalloc_bridge(int what, struct mt_buf *b);
int mt_glibc_option(const char *name, const char *v); /* glibc, glibc_syms; -EINVAL: not ours */
int mt_glibc_on(void);
void mt_glibc_thread_start(void); /* a thread's first call */
void mt_glibc_tick(int full);     /* the control thread's tick */
unsigned mt_glibc_period_ms(void); /* how often it should come */
void mt_glibc_fork_child(void);
void mt_glibc_stop(void);         /* the end of an attach session */
void mt_glibc_reset(void);        /* the start of one */
void mt_allocstats_final(void);   /* at exit */

/* interpose.c */
int mt_resolve(void);
/* Registers GOT hooks for every interposed function (attach mode). */
int mt_hook_wrappers(void);
/* Allocator identification for `stats`: "glibc", "jemalloc", ... */
const char *mt_allocator_name(char *path, size_t pathlen);
/* Enables the fast paths' usable sizes: glibc's chunk headers, or the
 * size queries of jemalloc, tcmalloc or mimalloc, if a self-test agrees. */
void mt_usable_check(void);
/* Which fast paths malloc and free have: "glibc", "jemalloc", ... or "none". */
const char *mt_fast_paths(void);

/* Counting, inlined into every wrapper.  A thread's own block is written
 * with plain loads and stores (relaxed atomics, so concurrent readers see
 * whole values); the shared orphan block, used by threads past their exit
 * and when a block cannot be had, takes the out-of-line atomic path.
 *
 * The totals cost nothing extra here: freed = the bytes of the free-kind
 * functions + realloc's released blocks, and allocated = freed + the change
 * in in-use, which each thread keeps as a delta folded every 64 KiB. */
static inline void mt_bump(uint64_t *c, uint64_t v)
{
	__atomic_store_n(c, __atomic_load_n(c, __ATOMIC_RELAXED) + v, __ATOMIC_RELAXED);
}

/* The orphan block's path: FN < 0 counts no call; INUSE is the change in
 * in-use bytes, RELEASED bytes released without a call of their own. */
void mt_count_shared(int fn, uint64_t size, int failed, int64_t inuse, uint64_t released);

#define MT_INUSE_FLUSH (64 * 1024)

/* A call of FN with SIZE on the caller's own block; BUCKET is SIZE's
 * histogram bucket (the fast paths compute it with LZCNT). */
static inline void mt_count_bucket(struct mt_thread *t, int fn, uint64_t size, unsigned bucket)
{
	struct mt_counter *c = &t->c[fn];
	mt_bump(&c->bytes, size);
	mt_bump(&c->hist[bucket], 1);
}

static inline void mt_count_own(struct mt_thread *t, int fn, uint64_t size)
{
	mt_count_bucket(t, fn, size, mt_hist_bucket(size));
}

void mt_inuse_high(struct mt_thread *t, int64_t d); /* fold, or record a new high */

static inline void mt_inuse_up(struct mt_thread *t, int64_t delta)
{
	int64_t d = __atomic_load_n(&t->inuse_delta, __ATOMIC_RELAXED) + delta;
	__atomic_store_n(&t->inuse_delta, d, __ATOMIC_RELAXED);
	/* One comparison for the fold and the peak: delta_high never exceeds
	 * MT_INUSE_FLUSH and is 0 after a fold (mt_inuse_high). */
	if (unlikely(d > MT_LOAD(t->delta_high)))
		mt_inuse_high(t, d);
}

static inline void mt_inuse_down(struct mt_thread *t, int64_t delta)
{
	int64_t d = __atomic_load_n(&t->inuse_delta, __ATOMIC_RELAXED) - delta;
	__atomic_store_n(&t->inuse_delta, d, __ATOMIC_RELAXED);
	if (unlikely(d < -MT_INUSE_FLUSH))
		mt_inuse_flush(t);
}

/* An allocation on the caller's own block (no orphan check). */
static inline void mt_alloc_own(struct mt_thread *t, int fn, uint64_t size, unsigned bucket, uint64_t usable,
				void *p, const char *cfa)
{
	mt_count_bucket(t, fn, size, bucket);
	int64_t left = MT_LOAD(t->event_left) - (int64_t)size;
	MT_STORE(t->event_left, left);
	/* A sample is recorded before in-use grows: a new peak then copies the
	 * sites with this allocation among them (mt_sites_peak). */
	if (unlikely(left < 0))
		mt_alloc_event(t, fn, size, (int64_t)usable, p, cfa);
	else
		mt_inuse_up(t, (int64_t)usable);
}

/* A call that changed no in-use memory (mmap, munmap, brk, sbrk, -f
 * functions, a failed allocation). */
static inline void mt_count(struct mt_thread *t, int fn, uint64_t size, int failed)
{
	if (unlikely(t->shared)) {
		mt_count_shared(fn, size, failed, 0, 0);
		return;
	}
	mt_count_own(t, fn, size);
	if (unlikely(failed))
		mt_bump(&t->c[fn].failed, 1);
}

/* A successful allocation of SIZE requested bytes at P, USABLE bytes handed
 * out.  Without --stacks or --dump-every, event_left starts at INT64_MAX and
 * never runs out. */
static inline void mt_on_alloc(struct mt_thread *t, int fn, uint64_t size, uint64_t usable, void *p,
			       const char *cfa)
{
	if (unlikely(t->shared)) {
		mt_count_shared(fn, size, 0, (int64_t)usable, 0);
		return;
	}
	mt_alloc_own(t, fn, size, mt_hist_bucket(size), usable, p, cfa);
}

/* Before P is freed (or moved by realloc): forget it if it was sampled.
 * Returns 0 when P's bytes must stay out of the totals: with every
 * allocation tracked, a pointer the live table never saw was allocated before
 * tracking began (attach), and freeing it must not push in-use down. */
static inline int mt_before_free(void *p)
{
	/* Acquire: the live table is made before tracking is switched on. */
	if (likely(!__atomic_load_n(&mt_g.tracking, __ATOMIC_ACQUIRE)) || !p)
		return 1;
	return mt_live_forget(p) || MT_OPT(sample_period) > 1;
}

/* A free-kind call that released USABLE bytes; KNOWN = 0 for a block the
 * totals never saw (its call and size bucket count, its bytes do not). */
static inline void mt_on_free(struct mt_thread *t, int fn, uint64_t usable, int known)
{
	if (unlikely(t->shared)) {
		mt_count_shared(fn, known ? usable : 0, 0, known ? -(int64_t)usable : 0, 0);
		return;
	}
	struct mt_counter *c = &t->c[fn];
	mt_bump(&c->hist[mt_hist_bucket(usable)], 1);
	if (likely(known)) {
		mt_bump(&c->bytes, usable);
		mt_inuse_down(t, (int64_t)usable);
	}
}

/* Bytes released without a call of their own (realloc's old block). */
static inline void mt_release(struct mt_thread *t, uint64_t usable)
{
	if (unlikely(t->shared)) {
		mt_count_shared(-1, 0, 0, -(int64_t)usable, usable);
		return;
	}
	mt_bump(&t->released, usable);
	mt_inuse_down(t, (int64_t)usable);
}

struct mt_thread *mt_enter_slow(void);

/* The live table's filter (sites.c): one bit per slot of four buckets, set
 * while the slot's count of sampled allocations is not zero.  A clear bit
 * means no sampled allocation can be at that address.  Bits, not the counts:
 * free reads it on every call, and 8 KiB stay in the cache where 64 KiB of
 * counts would not (docs/BENCHMARKS.md). */
extern uint64_t *mt_live_bits;
static inline uint32_t mt_live_bucket(uintptr_t p)
{
	return (uint32_t)(((p >> 4) * 0x9e3779b97f4a7c15ull) >> 46); /* 18 bits */
}

/* Whether P may be in the live table (sampled call sites): its filter bit
 * is set. */
static inline int mt_live_maybe(void *p)
{
	uint32_t slot = mt_live_bucket((uintptr_t)p) >> 2;
	return (__atomic_load_n(&mt_live_bits[slot >> 6], __ATOMIC_RELAXED) >> (slot & 63)) & 1;
}
void mt_set_active(int on);
void mt_set_tracking(int on);

/* Entry to every wrapper: the calling thread's block, or NULL when the call
 * must pass through uncounted (recursion, inactive, untraced process).  The
 * common case is one thread-local load, a thread-local flag and a global. */
static inline struct mt_thread *mt_enter(void)
{
	struct mt_thread *t = mt_tls_thread;
	if (likely(t != NULL) && likely(!mt_tls_busy) &&
	    likely(__atomic_load_n(&mt_g.active, __ATOMIC_RELAXED)))
		return t;
	return mt_enter_slow();
}

#endif
