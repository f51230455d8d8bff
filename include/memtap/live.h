/*
 * The live counter file: where the agent keeps its counters so that the
 * memtap command can read them from outside, without the traced process's
 * help, while it runs and after it has died.
 *
 * Each traced process image maps one file, MT_LIVE_CAP bytes of address
 * space, MAP_SHARED, from a tmpfs directory private to its uid:
 *   $MEMTAP_RUNDIR (default /dev/shm) / memtap-<euid> / <pid>-<start_ns>.mtl
 * (mode 0600, the directory 0700).  The file starts with struct mt_live_hdr;
 * everything after it is the agent's "shared arena": per-thread counter
 * blocks (struct mt_live_block), call sites (struct mt_live_site), pool
 * tables (struct mt_live_pools) and the reset baseline, bump-allocated and
 * never freed.  Pointers inside the file are the agent's own addresses;
 * hdr.base is the address of byte 0, so a reader translates an address A to
 * file offset A - base (mt_live_at()).  Pages exist only once written: the
 * file is sparse, and `used` says how far the arena has been handed out.
 *
 * The precedents are the JVM's hsperfdata files (jstat reads a JVM's
 * counters from a shared file) and prometheus_client's multiprocess mode
 * (one mmap'd file per prefork worker).  tmpfs, not /tmp: counters on a
 * disk-backed mapping are written back by the kernel, and a write to a page
 * under writeback can stall the writer (the JVM's hsperfdata GC pauses).
 *
 * The file outlives the process: when it dies in any way (exit, _exit,
 * abort, SIGSEGV, SIGKILL), the memtap command reads what it left and writes
 * the final profile.  hdr.end says how it ended when the agent could see it
 * (exit handlers ran, _exit, a fatal signal); a process killed by SIGKILL
 * leaves end == MT_LIVE_RUNNING in a file whose process is gone.
 *
 * Readers treat the file as untrusted input: the traced process can write
 * anything into it.  src/core/live.c validates the header and bounds every
 * pointer, list and count; the worst a hostile process can do is make memtap
 * report garbage (flagged where it can tell).
 *
 * Versioning: MT_LIVE_VERSION changes when a field changes meaning; the
 * sizes in the header (block, site, counters per block) let a reader work
 * with a file whose agent traces more functions than it knows.
 */
#ifndef MEMTAP_LIVE_H
#define MEMTAP_LIVE_H

#include <stddef.h>
#include <stdint.h>

#include "memtap/proc.h"
#include "memtap/profile.h"

#define MT_LIVE_MAGIC "\x89MTLIVE\n"
#define MT_LIVE_VERSION 1
#define MT_LIVE_EXT "mtl"
#define MT_LIVE_CAP (256ull << 20) /* address space per process; pages made as used */
#define MT_LIVE_FUNCS_MAX 64       /* counters per block, at most */
#define MT_LIVE_CUSTOM_MAX 16      /* -f functions */
#define MT_LIVE_PREFIX_MAX 768
#define MT_LIVE_POOL_SLOTS 8192    /* a power of two */
#define MT_LIVE_DIR_FMT "%s/memtap-%u"

/* How the process image ended, as far as the agent could see. */
enum mt_live_end {
	MT_LIVE_RUNNING = 0, /* still running, or died without a trace (SIGKILL, exit_group) */
	MT_LIVE_EXITED = 1,  /* exit handlers ran (exit(), return from main); code: status if known */
	MT_LIVE__EXIT = 2,   /* _exit()/_Exit(): no exit handlers; code: the status */
	MT_LIVE_SIGNAL = 3,  /* a fatal signal reached the agent's handler; code: the signal */
	MT_LIVE_DETACHED = 4, /* attach mode: the session ended, the agent is inert */
};

/* hdr.flags */
#define MT_LIVE_F_SHARED 0x1u   /* the arena is this file (else private memory: nothing to read) */
#define MT_LIVE_F_FOLLOW 0x2u   /* children and exec'd programs are traced */
#define MT_LIVE_F_INJECTED 0x4u /* loaded into a running process (attach mode) */
#define MT_LIVE_F_CODE_KNOWN 0x8u /* end_code of MT_LIVE_EXITED is the exit status */

/* A function's counters in a block.  Calls are the sum of hist. */
struct mt_live_counter {
	uint64_t bytes, failed;
	uint64_t hist[MT_HIST_BUCKETS];
};

/* One thread's counters (the agent's struct mt_thread: same layout).  Only
 * the owning thread writes them, except the shared orphan block. */
struct mt_live_block {
	uint64_t next;       /* agent address of the next (older) block; 0 ends the list */
	int32_t claimed;     /* a live thread owns it */
	int32_t shared;      /* the orphan block, written with atomics */
	int64_t inuse_delta; /* in-use change not yet folded into hdr.inuse */
	int64_t priv[5];     /* the agent's own countdowns */
	uint64_t released;   /* usable bytes of old blocks moved by realloc */
	struct mt_live_counter c[]; /* hdr.nfuncs of them */
};

/* One call site (the agent's struct mt_sitex). */
struct mt_live_site {
	uint64_t next, all; /* agent addresses: hash chain (agent only); every site, newest first */
	uint64_t hash;
	uint32_t fn, nframes;
	uint32_t cached, pad;
	uint64_t alloc_objects, alloc_bytes; /* sampled allocations */
	uint64_t freed_objects, freed_bytes; /* of those, freed */
	uint64_t reset_objects, reset_bytes; /* alloc_* at the last reset */
	uint64_t peak_objects, peak_bytes;   /* live when in-use last peaked */
	uint64_t temp_objects, temp_bytes;   /* of the sampled, freed by the thread that made them
						with no allocation of that thread in between */
	uint64_t frames[];                   /* nframes return addresses, leaf first */
};

/* -f FUNC:pool=argM: calls and bytes per pool, an open-addressing table
 * whose slots are claimed by compare-and-swap of key (the pool + 1; 0 is
 * empty). */
struct mt_live_pool_slot {
	uint64_t key, calls, bytes;
};
struct mt_live_pools {
	uint64_t other_calls, other_bytes;
	struct mt_live_pool_slot slot[MT_LIVE_POOL_SLOTS];
};

struct mt_live_custom {
	char name[MT_NAME_MAX];
	int32_t size_arg, pool_arg; /* -1: none */
	uint64_t pools;             /* agent address of its struct mt_live_pools, 0: none */
};

struct mt_live_hdr {
	uint8_t magic[8];
	uint32_t version, hdr_size;
	/* layout */
	uint32_t nfuncs, nbuiltin;   /* counters per block; the first nbuiltin are named below */
	uint32_t hist_buckets, block_size;
	uint32_t site_size, pool_slots;
	uint64_t base; /* the agent's address of byte 0 */
	uint64_t cap;  /* bytes of address space */
	uint64_t used; /* bytes handed out so far (release): everything lies below */
	/* who */
	uint32_t pid, ppid, uid, flags;
	uint64_t proc_start; /* starttime of the process (/proc/PID/stat field 22): tells a reused pid */
	uint64_t start_ns;   /* counting started (CLOCK_REALTIME) */
	uint64_t run_id;     /* the session: `memtap run`, or the attach that set it */
	int32_t session_pid; /* the memtap process of that session (0: none): it writes the profiles */
	uint32_t gen;        /* bumped by attach and detach */
	uint64_t session_start; /* starttime of session_pid, as proc_start */
	char command[MT_TEXT_MAX];
	char exe[MT_TEXT_MAX];
	char prefix[MT_LIVE_PREFIX_MAX]; /* -o PREFIX of the session */
	/* how it ended (enum mt_live_end); written last, with release */
	uint32_t end, end_code;
	uint64_t end_ns;
	/* state the readers want; the agent keeps its own copies for its hot paths */
	uint32_t active, stacks;
	uint64_t sample_period; /* with stacks: mean bytes between samples, 1: every allocation */
	int64_t inuse;          /* folded in-use bytes (blocks add their inuse_delta) */
	int64_t peak;
	int64_t inuse_at_reset;
	int64_t inuse_inherited; /* in-use at the start (a fork child: its parent's) */
	uint32_t baseline_seq;   /* seqlock over baseline, inuse_at_reset: odd while written */
	uint32_t seq;            /* next dump sequence number */
	uint64_t baseline;       /* agent address of the counters at the last reset (0: none) */
	uint64_t threads;        /* agent address of the newest block */
	uint64_t unknown_frees;
	uint64_t sites;          /* agent address of the newest site */
	uint32_t nsites, ncustom;
	uint64_t dumps_due[2];   /* dumps taken: [0] --dump-every, [1] --dump-on-peak (each spooled
				    as <pid>-<start_ns>-<n>.mtp beside the file, for the session) */
	uint64_t maps_gen;       /* bumped when the process may have loaded or unloaded code */
	uint64_t maps;           /* with stacks: agent address of the mappings (struct mt_mapping)
				    the agent recorded last (at start and at exit), 0: none */
	uint32_t nmaps;
	uint32_t maxrss_kb;      /* peak resident set size in KiB (getrusage's ru_maxrss), written
				    with `end` when the agent saw the process end; 0: unknown */
	struct mt_live_custom custom[MT_LIVE_CUSTOM_MAX];
	uint32_t kinds[MT_LIVE_FUNCS_MAX];            /* enum mt_kind per counter */
	char names[MT_LIVE_FUNCS_MAX][MT_NAME_MAX];   /* the first nbuiltin */
	/* pools part: agent address of the APR pool tables (struct mt_live_apr,
	 * memtap/pools.h), 0: --pools is off */
	uint64_t apr;
	/* glibc part (issue 12): agent addresses of the latest allocator
	 * statistics (struct mt_alloc_stats) and --glibc state (struct
	 * mt_glibc), include/memtap/glibc.h, each seqlocked; 0: none */
	uint64_t allocstats, glibc;
	/* leaks: agent address of the last leak check's result (struct
	 * mt_live_leaks, include/memtap/leaks.h), 0: none yet */
	uint64_t leaks;
};

/* A readable image of a live file: the agent's own mapping, or a copy the
 * reader took.  BASE is the agent's address of DATA[0]. */
struct mt_live_view {
	const uint8_t *data;
	size_t len;
	uint64_t base;
};

/* The N bytes at agent address ADDR, or NULL when they are not all in V. */
static inline const void *mt_live_at(const struct mt_live_view *v, uint64_t addr, size_t n)
{
	if (addr < v->base || addr - v->base > v->len || n > v->len - (addr - v->base))
		return NULL;
	return v->data + (addr - v->base);
}

/* The directory above the per-uid directories of live files:
 * $MEMTAP_RUNDIR, or /dev/shm, or /tmp when there is no /dev/shm. */
const char *mt_live_rundir(void);


/* Checks V's header (magic, version, layout, bounds); 0, or -EINVAL /
 * -EPROTO with a reason in ERR. */
int mt_live_check(const struct mt_live_view *v, char *err, size_t errlen);

/* Adds SRC's counters (NFUNCS of them), released bytes and in-use delta to
 * DST's, each read with a relaxed atomic load (SRC's thread may be
 * counting). */
void mt_live_block_add(struct mt_live_block *dst, const struct mt_live_block *src, uint32_t nfuncs);

/* Upper bounds of what mt_live_snapshot() may fill, for sizing a profile:
 * functions, sites, pools. */
void mt_live_bounds(const struct mt_live_view *v, uint32_t *funcs, uint32_t *sites, uint32_t *pools);

/* Flags mt_live_snapshot() returns: what it could not trust. */
#define MT_LIVE_TORN 0x1u      /* the reset baseline was being rewritten: figures since the
				  start, not since the reset */
#define MT_LIVE_CUT 0x2u       /* a list ran outside the file or looped: cut there */
#define MT_LIVE_BAD_SITE 0x4u  /* sites with impossible fields were skipped */

/* Sums V's counters into P, the way the agent's own dumps do: every block
 * minus the reset baseline, the totals, the call sites (frames pointing into
 * V), the pools.  P's funcs, sites and pools arrays must have the capacity
 * mt_live_bounds() gave, set in nfuncs/nsites/npools on entry; SCRATCH holds
 * 2 * hdr.block_size bytes, 8-aligned.  Identity fields (pid, command, ...)
 * come from the header.  ALL: include functions with no calls.  Returns
 * MT_LIVE_* flags (0: clean).  V must have passed mt_live_check(). */
unsigned mt_live_snapshot(const struct mt_live_view *v, struct mt_profile *p, void *scratch, int all);

/* The mappings the agent recorded in V (*OUT points into V): how many,
 * 0 when none (or they do not fit in V). */
uint32_t mt_live_maps(const struct mt_live_view *v, const struct mt_mapping **out);

/* P's end (enum mt_end) from the header's record of how the image ended;
 * GONE: the process is known to be gone (a RUNNING record then means it
 * vanished without a trace). */
void mt_live_end_to_profile(const struct mt_live_hdr *h, struct mt_profile *p, int gone);

#endif
