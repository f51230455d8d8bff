/*
 * The profile model: what one process did with its allocator, as both
 * collectors (the in-process agent today, the eBPF backend later) produce it
 * and as every renderer reads it.
 *
 * A profile is one snapshot of one process: its identity (pid, command, why
 * and when the snapshot was taken), one entry per traced function (calls,
 * bytes, failures and a power-of-two size histogram) and the process totals
 * (allocated, freed, in use, peak).  Functions are identified by name, so a
 * collector can add functions (e.g. `-f apr_palloc`) without changing the
 * model or the file format.
 *
 * Histogram buckets follow DTrace's quantize(): bucket 0 holds the value 0,
 * bucket k (k >= 1) holds values in [2^(k-1), 2^k).  mt_hist_bucket() maps a
 * value to its bucket, mt_hist_lower() a bucket to its lower bound.
 *
 * With --stacks a profile also carries call sites (struct mt_site: a stack
 * and the sampled allocations made from it, in total and still in use) and
 * the process's mappings (struct mt_mapping), which symbolization needs after
 * the process is gone.  Site counts are raw sample counts; sample_period says
 * how to un-sample them (mt_site_scale()).
 *
 * With `-f FUNC:pool=argM` a profile also carries pools (struct mt_pool):
 * the calls and bytes of FUNC per value of its argument M, the pool an
 * allocator like apr_palloc(pool, size) allocates from.  Pools are named
 * only by their address, which the process may reuse for a later pool.
 * The same table breaks --heap-events down by thread (MT_POOL_BY_THREAD:
 * the key is the thread id).
 *
 * Memory: mt_profile_new()/mt_profile_free() use malloc; the agent never calls
 * them (it builds a struct mt_profile in its own mmap-backed memory).
 */
#ifndef MEMTAP_PROFILE_H
#define MEMTAP_PROFILE_H

#include <stddef.h>
#include <stdint.h>

#include "memtap/timeline.h"

#define MT_HIST_BUCKETS 65
#define MT_NAME_MAX 128
#define MT_TEXT_MAX 1024

struct mt_alloc_stats;
struct mt_glibc;

/* What a function does with memory; decides how renderers label it. */
enum mt_kind {
	MT_KIND_ALLOC = 0, /* returns memory: size = bytes requested */
	MT_KIND_FREE = 1,  /* releases memory: size = usable size released */
	MT_KIND_MAP = 2,   /* maps address space: size = length */
	MT_KIND_UNMAP = 3, /* unmaps address space: size = length */
	MT_KIND_BRK = 4,   /* moves the program break: size = growth */
	MT_KIND_OTHER = 5, /* any other traced function (-f) */
};

/* Why a snapshot was written. */
enum mt_reason {
	MT_REASON_EXIT = 0,     /* the process exited */
	MT_REASON_CTL = 1,      /* `memtap ctl PID dump` */
	MT_REASON_OTHER = 2,
	MT_REASON_PEAK = 3,     /* --dump-on-peak: in-use reached a new high */
	MT_REASON_INTERVAL = 4, /* --interval=SECONDS */
	MT_REASON_BYTES = 5,    /* --dump-every=BYTES */
	MT_REASON_DETACH = 6,   /* `memtap detach`, or the end of `memtap attach` */
};

/* How the process ended, in its final profile (mt_profile.end). */
enum mt_end {
	MT_END_NONE = 0,     /* running when the snapshot was taken */
	MT_END_EXIT = 1,     /* exited; end_code: the exit status, -1 when unknown */
	MT_END__EXIT = 2,    /* _exit()/_Exit(), no exit handlers ran; end_code: the status */
	MT_END_SIGNAL = 3,   /* killed by a signal; end_code: the signal */
	MT_END_VANISHED = 4, /* gone without a trace: SIGKILL (the OOM killer), exit_group() */
	MT_END_EXEC = 5,     /* its image was replaced by exec */
};

/* Profile flags. */
#define MT_PROFILE_ACTIVE 0x1u   /* counting was on when the snapshot was taken */
#define MT_PROFILE_FOLLOW 0x2u   /* children and exec'd programs are traced */
#define MT_PROFILE_FP_STACKS 0x4u /* sites are frame-pointer stacks from the kernel
				     (eBPF): every allocation call, none in use */
#define MT_PROFILE_HEAP_EVENTS 0x8u /* --heap-events was on (eBPF): no "heap: "
				       function means none happened */
#define MT_PROFILE_RECOVERED 0x10u /* written by the memtap command from what the process
				      left (its live counter file) after it was gone */
#define MT_PROFILE_SUSPECT 0x20u   /* the live file held figures memtap could not trust
				      (torn, cut lists, impossible sites): flagged, kept */

struct mt_func {
	char name[MT_NAME_MAX];
	uint32_t kind; /* enum mt_kind */
	uint64_t calls;
	uint64_t bytes;  /* requested (alloc/map) or released (free/unmap) */
	uint64_t failed; /* NULL / MAP_FAILED returns */
	uint64_t hist[MT_HIST_BUCKETS];
};

struct mt_totals {
	uint64_t allocated_bytes; /* usable bytes handed out by the malloc family */
	uint64_t freed_bytes;     /* usable bytes given back */
	int64_t in_use_bytes;     /* allocated - freed (can dip below 0 if memory
	                             allocated before tracing began is freed) */
	uint64_t peak_in_use_bytes;
};

#define MT_STACK_MAX 64

/* One call site: a unique stack of return addresses, leaf first (frames[0]
 * is the address the allocation function returns to). */
struct mt_site {
	uint32_t nframes;
	uint32_t fn;             /* index into funcs of the function called (or -1) */
	uint64_t *frames;
	uint64_t alloc_objects;  /* sampled allocations (raw counts) */
	uint64_t alloc_bytes;    /* their requested bytes */
	uint64_t inuse_objects;  /* of those, still allocated at the snapshot */
	uint64_t inuse_bytes;
	uint64_t peak_objects;   /* still allocated when in-use last peaked */
	uint64_t peak_bytes;
	/* analyses: of the sampled allocations, those freed by the thread that
	 * made them with no other allocation of that thread in between
	 * (heaptrack's temporary allocations, per thread; docs/ANALYSES.md). */
	uint64_t temp_objects;
	uint64_t temp_bytes;
};

/* One file-backed mapping of the process (a line of /proc/PID/maps). */
struct mt_mapping {
	uint64_t start, end, offset;
	uint32_t prot;           /* PROT_READ | PROT_WRITE | PROT_EXEC */
	uint32_t build_id_len;   /* 0: unknown */
	uint8_t build_id[32];
	char path[MT_TEXT_MAX];
};

/* Parses one line of /proc/PID/maps into M (zeroed first).  Returns 1 for a
 * file-backed mapping, 0 for anything else (anonymous, [heap], [stack],
 * [vdso]: nothing to symbolize) or a malformed line.  Allocates nothing:
 * the agent uses it too. */
int mt_mapping_parse(const char *line, struct mt_mapping *m);

/* One pool of a -f FUNC:pool=argM function: the calls of FUNC whose
 * argument M was POOL.  POOL == MT_POOL_OTHER sums the calls the collector
 * could not give a pool of their own (its table was full).  With BY ==
 * MT_POOL_BY_THREAD the entry is one thread's share of FUNC (--heap-events,
 * per thread) and POOL is the thread id. */
#define MT_POOL_OTHER UINT64_MAX
enum mt_pool_by {
	MT_POOL_BY_ARG = 0,    /* POOL is the value of FUNC's pool argument */
	MT_POOL_BY_THREAD = 1, /* POOL is a thread id */
};
struct mt_pool {
	uint32_t fn;   /* index into funcs */
	uint32_t by;   /* enum mt_pool_by: the same for every entry of one FUNC */
	uint64_t pool; /* the pool's address (or thread id), or MT_POOL_OTHER */
	uint64_t calls;
	uint64_t bytes; /* the sizes FUNC was asked for (its size=argN; 0 without) */
};

struct mt_profile {
	uint32_t pid, ppid, uid;
	uint32_t seq;    /* per-process dump sequence number */
	uint32_t reason; /* enum mt_reason */
	uint32_t flags;  /* MT_PROFILE_* */
	uint32_t end;    /* enum mt_end */
	int32_t end_code;
	uint64_t run_id; /* identifies one `memtap run` invocation (0: none) */
	uint64_t start_ns, dump_ns; /* CLOCK_REALTIME, ns since the epoch */
	char command[MT_TEXT_MAX];  /* argv joined by spaces */
	char exe[MT_TEXT_MAX];      /* /proc/self/exe */
	uint32_t nfuncs;
	struct mt_func *funcs;
	struct mt_totals totals;
	/* Call sites (--stacks).  sample_period: the mean bytes between
	 * samples; 1 means every allocation was recorded (no scaling). */
	uint64_t sample_period;
	uint64_t unknown_frees;  /* frees of pointers the site table never saw */
	uint32_t nsites;
	struct mt_site *sites;
	uint32_t nmaps;
	struct mt_mapping *maps;
	/* Pools (-f FUNC:pool=argM), in no particular order. */
	uint32_t npools;
	struct mt_pool *pools;
	/* pools part: APR pool lifetimes (--pools), NULL when off (memtap/pools.h). */
	struct mt_apr *apr;
	/* glibc part (issue 12, include/memtap/glibc.h): the allocator's own
	 * statistics (record tag 12) and glibc's internals (--glibc, tag 11);
	 * malloc'd, NULL when absent. */
	struct mt_alloc_stats *stats;
	struct mt_glibc *glibc;
	/* leaks: the last leak check by reachability (include/memtap/leaks.h),
	 * NULL when none was made.  Freed by mt_profile_free. */
	struct mt_leaks *leaks;
	/* analyses (docs/ANALYSES.md): the process's peak resident set size
	 * (VmHWM, ru_maxrss) in bytes, 0 when unknown; in a merged profile the
	 * sum of the peaks. */
	uint64_t peak_rss_bytes;
	/* Part timeline (include/memtap/timeline.h): the points the memtap
	 * command sampled (--interval), in the final profile; TIMELINE.n == 0
	 * without.  parent_start_ns: the start_ns of the parent's profiles (0:
	 * unknown), so a child names its parent even after a pid is reused. */
	struct mt_timeline timeline;
	uint64_t parent_start_ns;
};

/* Branch-free, for the agent's hot path: 63 - clz(v | 1) + (v != 0). */
static inline unsigned mt_hist_bucket(uint64_t v)
{
	return (unsigned)(63 - __builtin_clzll(v | 1)) + (v != 0);
}

static inline uint64_t mt_hist_lower(unsigned bucket)
{
	return bucket ? (uint64_t)1 << (bucket - 1) : 0;
}

/* malloc-backed profiles, for the CLI and the tests. */
struct mt_profile *mt_profile_new(void);
void mt_profile_free(struct mt_profile *p);
/* Forgets what P owns (its arrays and sections: what mt_profile_free frees)
 * without freeing it: for a profile that starts as a copy of another's
 * identity.  Keep it next to mt_profile_free when a section is added. */
void mt_profile_forget(struct mt_profile *p);
/* Returns the function named NAME, adding an empty one of KIND when absent;
 * NULL on allocation failure. */
struct mt_func *mt_profile_func(struct mt_profile *p, const char *name, uint32_t kind);
const struct mt_func *mt_profile_find(const struct mt_profile *p, const char *name);
/* Adds SRC's counters into DST (functions matched by name, sites by function
 * and frames, mappings united, totals summed, peaks summed as an upper
 * bound); 0 or -ENOMEM.  When DST has mixed sample periods the first wins. */
int mt_profile_merge(struct mt_profile *dst, const struct mt_profile *src);
/* Adds SRC's counters into DST. */
void mt_func_add(struct mt_func *dst, const struct mt_func *src);
uint64_t mt_func_hist_total(const struct mt_func *f);
/* Fills ORDER (nfuncs entries) with function indices by calls ascending, then
 * name: DTrace's aggregation order.  The funcs array itself never moves,
 * since sites refer to functions by index. */
void mt_profile_order(const struct mt_profile *p, uint32_t *order);
/* The factor that turns a site's raw sampled counts into estimates of all
 * allocations: 1 / (1 - exp(-mean_size / period)), jemalloc's and pprof's
 * estimator; 1 when every allocation was recorded. */
double mt_site_scale(uint64_t period, uint64_t objects, uint64_t bytes);
/* Appends a site (frames copied); NULL on ENOMEM. */
struct mt_site *mt_profile_add_site(struct mt_profile *p, const uint64_t *frames, uint32_t n);
/* The pool POOL of function FN, added with zero counts when absent; NULL on
 * ENOMEM.  Linear: for building and merging, not for a hot path. */
struct mt_pool *mt_profile_pool(struct mt_profile *p, uint32_t fn, uint64_t pool);
/* Appends a pool without looking for an existing one (readers of a file,
 * collectors that know their pools are distinct); NULL on ENOMEM. */
struct mt_pool *mt_profile_add_pool(struct mt_profile *p, uint32_t fn, uint64_t pool);
/* Fills ORDER with the indices of function FN's pools, by bytes (BY_BYTES)
 * or calls, descending, then by address; returns how many. ORDER holds
 * npools entries. */
uint32_t mt_profile_pools_of(const struct mt_profile *p, uint32_t fn, int by_bytes, uint32_t *order);
/* Appends a mapping; NULL on ENOMEM. */
struct mt_mapping *mt_profile_add_mapping(struct mt_profile *p);
/* The mapping that contains ADDR, or NULL. */
const struct mt_mapping *mt_profile_mapping_of(const struct mt_profile *p, uint64_t addr);
const char *mt_kind_name(uint32_t kind);
const char *mt_reason_name(uint32_t reason);
/* "exit", "_exit", "signal", "vanished", "exec" ("" for MT_END_NONE). */
const char *mt_end_name(uint32_t end);
/* How P ended in words: "exited with status 3", "killed by SIGSEGV",
 * "gone without a trace (killed by SIGKILL, or exit_group)"... into OUT. */
void mt_end_describe(const struct mt_profile *p, char *out, size_t outlen);

#endif
