/*
 * The allocator's own view: its statistics (any allocator, `memtap ctl PID
 * stats`, record tag 12) and glibc's internals (`--glibc`, record tag 11:
 * the program break, arenas and the threads that use them, heaps per arena,
 * the mmap and trim thresholds as they change, lock waits per thread).
 *
 * Both are fixed-size plain structs, so the agent can keep the latest of
 * each in its live counter file (hdr.allocstats, hdr.glibc) with a seqlock
 * around every rewrite, and readers copy them whole and check the counts.
 *
 * Where the figures come from (docs/GLIBC.md):
 * - statistics: the allocator's own API, called inside the process by the
 *   agent (mallinfo2 / malloc_info, mallctl, MallocExtension_*, mi_*); with
 *   nothing loaded in the process (eBPF), what the kernel says of it from
 *   outside (/proc/PID/smaps_rollup, status, maps).
 * - glibc: /proc/PID/maps (the 64 MiB-aligned arena heaps, [heap]), each
 *   heap's heap_info read with process_vm_readv (a heap unmapped meanwhile
 *   gives EFAULT, never a fault), and, when Debian's libc6-dbg matches the
 *   process's libc by build-id, glibc's own variables: mp_ (thresholds,
 *   sbrk_base, mmapped memory), main_arena and the arena ring (system bytes,
 *   attached threads, the mutex), each thread's thread_arena.  Lock waits
 *   are sampled: a thread blocked in futex(2) on an arena's mutex word.
 *
 * mt_glibc_read() allocates nothing and works on the calling process itself
 * (the agent's control thread) as on another one (the memtap command, as
 * root or the same user).
 */
#ifndef MEMTAP_GLIBC_H
#define MEMTAP_GLIBC_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* ---- allocator statistics (tag 12) ---- */

#define MT_STATS_MAX 160
#define MT_STATS_KEY 56

struct mt_stat {
	char key[MT_STATS_KEY]; /* "stats.allocated", "mallinfo2.arena", "arena.0.pactive" */
	uint64_t value;
};

struct mt_alloc_stats {
	uint32_t seq; /* in the live file: odd while rewritten */
	uint32_t n;
	uint64_t taken_ns; /* CLOCK_REALTIME */
	char allocator[32]; /* glibc, jemalloc, tcmalloc, mimalloc; "none" from outside */
	char source[96];    /* the API or file the figures come from */
	struct mt_stat v[MT_STATS_MAX];
};

/* Appends KEY = VALUE (dropped when full). */
void mt_stats_add(struct mt_alloc_stats *s, const char *key, uint64_t value);
/* The value of KEY, or -1 when absent (VALUE untouched). */
int mt_stats_get(const struct mt_alloc_stats *s, const char *key, uint64_t *value);

/* ---- glibc internals (tag 11) ---- */

#define MT_GLIBC_ARENAS 64
#define MT_GLIBC_HEAPS 256
#define MT_GLIBC_THREADS 256
#define MT_GLIBC_CHANGES 32
#define MT_GLIBC_HEAP_MAX (64ull << 20)          /* HEAP_MAX_SIZE on x86-64 */
#define MT_GLIBC_MMAP_THRESHOLD_MAX (32ull << 20) /* DEFAULT_MMAP_THRESHOLD_MAX */

/* g->flags: what the figures could be taken from */
#define MT_GLIBC_F_MAPS 0x1u      /* heaps and the program break from /proc/PID/maps */
#define MT_GLIBC_F_SYMBOLS 0x2u   /* libc6-dbg: mp_, main_arena, thread_arena were read */
#define MT_GLIBC_F_THREADS 0x4u   /* threads' arenas known (the agent: thread_arena) */
#define MT_GLIBC_F_WAITS 0x8u     /* lock waits sampled */
#define MT_GLIBC_F_SYSCALLS 0x10u /* sbrk growth and heap events from system calls (eBPF) */
#define MT_GLIBC_F_TRUNC 0x20u    /* a list was longer than its table: the rest is not listed */

struct mt_glibc_arena {
	uint64_t addr;             /* the malloc_state; 0 unknown (no symbols) */
	uint32_t main, heaps;      /* main: the sbrk arena; heaps: its mmapped heaps */
	uint64_t heap_bytes;       /* sum of its heaps' sizes (main: the sbrk heap) */
	uint64_t system_bytes;     /* system_mem (symbols), else heap_bytes */
	uint64_t attached_threads; /* glibc's count (symbols) */
	uint64_t lock_waits;       /* samples of a thread blocked on its mutex */
};

struct mt_glibc_heap {
	uint64_t addr, arena; /* the heap_info, its ar_ptr */
	uint64_t size;        /* heap_info.size: bytes in use by the arena */
	uint64_t mprotect_size; /* read-write part */
};

struct mt_glibc_thread {
	uint32_t tid, alive;
	uint64_t arena;      /* its thread_arena at the last look (0: none yet) */
	uint64_t arenas_used; /* how many different arenas it was seen on */
	uint64_t lock_waits; /* samples it was blocked on an arena mutex */
};

struct mt_glibc_change { /* the thresholds, each time they were seen to change */
	uint64_t ns;
	uint64_t mmap_threshold, trim_threshold;
};

struct mt_glibc {
	uint32_t seq, flags;
	uint64_t taken_ns;
	uint64_t sbrk_base, brk;  /* the program break's start and current end */
	uint64_t sbrk_bytes;      /* brk - sbrk_base */
	uint64_t sbrk_grow_bytes, sbrk_shrink_bytes; /* seen since tracing began */
	uint64_t sbrk_grows, sbrk_shrinks;
	uint64_t mmap_threshold, trim_threshold; /* 0: unknown */
	uint64_t mmapped_bytes, mmapped_chunks;  /* mp_.mmapped_mem, n_mmaps */
	uint64_t arena_max;       /* mp_.arena_max (0: glibc's default, 8 per core) */
	uint64_t samples;         /* lock-wait samples taken */
	uint64_t sample_ms;       /* their period */
	uint32_t narenas, nheaps, nthreads, nchanges;
	uint32_t changes_dropped, pad;
	struct mt_glibc_arena arenas[MT_GLIBC_ARENAS];
	struct mt_glibc_heap heaps[MT_GLIBC_HEAPS];
	struct mt_glibc_thread threads[MT_GLIBC_THREADS];
	struct mt_glibc_change changes[MT_GLIBC_CHANGES];
};

/* Where glibc's variables are in a process: absolute addresses, from the
 * libc6-dbg symbols of its libc (the memtap command finds them:
 * src/cli/glibc_syms.c).  All 0: unknown. */
struct mt_glibc_syms {
	uint64_t mp, main_arena, narenas, curbrk; /* addresses in the process */
	uint64_t thread_arena;                    /* thread_arena's offset in libc's TLS block */
	uint64_t libc_base;                       /* where libc is mapped (offset 0) */
};

/* Layout of the glibc 2.36 structures memtap reads (checked against the
 * symbols' sizes: mp_ 136 bytes, main_arena 2200; otherwise not read). */
#define MT_GLIBC_MP_SIZE 136
#define MT_GLIBC_ARENA_SIZE 2200

/* Updates G with the glibc state of PID, which may be the caller: the
 * arenas and heaps are read anew; the thresholds' history, the sbrk growth
 * seen, the threads and the lock-wait counts carry over (G starts zeroed).
 * SYMS may be NULL.  ARENA_AT: for NTHREADS threads the caller knows (the
 * agent's), the address of their thread_arena variable, with their TIDS;
 * may be NULL.  0, or -errno when /proc/PID/maps cannot be read. */
int mt_glibc_read(pid_t pid, const struct mt_glibc_syms *syms, const uint64_t *arena_at, const uint32_t *tids,
		  uint32_t nthreads, struct mt_glibc *g);
/* One lock-wait sample: every thread of PID blocked in futex(2) on a known
 * arena's mutex counts one wait for it and for the arena. */
void mt_glibc_sample_waits(pid_t pid, struct mt_glibc *g);
/* The arena of G at ADDR, or NULL. */
struct mt_glibc_arena *mt_glibc_arena_of(struct mt_glibc *g, uint64_t addr);

/* Copies the seqlocked SRC into DST (retrying while it is rewritten, at
 * most a few times) and clamps its counts; 0, or -EAGAIN when it kept
 * changing.  For the live file, whose writer is the traced process. */
int mt_glibc_copy(struct mt_glibc *dst, const struct mt_glibc *src);
int mt_stats_copy(struct mt_alloc_stats *dst, const struct mt_alloc_stats *src);
/* Seqlocked rewrite: begin makes seq odd, end even again. */
void mt_seq_begin(uint32_t *seq);
void mt_seq_end(uint32_t *seq);

#endif
