/*
 * The contract between memtap's BPF programs (memtap.bpf.c) and their loader
 * (loader.c): probe ids, per-probe settings and the map layouts, in
 * fixed-width fields only, since both sides compile this header (the BPF
 * side against vmlinux.h, the loader against the libc headers).
 *
 * Every probe carries an id as its bpf_cookie.  Ids below MTB_ID_USER are the
 * fixed allocator entry points (the same functions, and report names, as the
 * agent's, include/memtap/funcs.def); -f functions, --within tables and
 * --heap-events counters follow.  The kernel aggregates per (tgid, id) in a
 * per-CPU hash: calls, bytes, failures and a quantize() histogram whose
 * buckets are those of include/memtap/profile.h (bucket 0 = value 0, bucket
 * k = [2^(k-1), 2^k)).
 */
#ifndef MEMTAP_BPF_H
#define MEMTAP_BPF_H

#define MTB_HIST 65
#define MTB_MAX_IDS 128 /* a power of two: ids are masked for the verifier */
#define MTB_MAX_USER 16      /* -f functions */
#define MTB_HINT_SLOTS 16384 /* per-thread nesting hints, indexed by tid */
#define MTB_COMM 16
#define MTB_MAX_POOLS 65536  /* (tgid, -f function, pool) entries */
#define MTB_STACK_DEPTH 63    /* frames from the kernel's frame-pointer walk; with the
				 return address read at the probe: MT_STACK_MAX (64) */
#define MTB_MAX_STACKS 16384  /* distinct stacks (the kernel's stack map) */
#define MTB_MAX_SITES 65536   /* (tgid, function, stack, return address) entries */
#define MTB_HEAP_MAX (64ull << 20) /* glibc's HEAP_MAX_SIZE on 64-bit: arena heaps are
				      this size and aligned to it */
#define MTB_MAX_ARENAS 16384

enum mtb_id {
	/* the agent's functions, in the one list's order (memtap/funcs.def) */
#define MT_FN(id, sym, name, kind, size, fail, ret) MTB_##id,
#include "memtap/funcs.def"
#undef MT_FN
	MTB_NFIXED,
	/* --within FUNC: one entry per completed invocation */
	MTB_WITHIN_BYTES = MTB_NFIXED, /* hist: bytes requested per invocation */
	MTB_WITHIN_ALLOCS,             /* hist: allocation calls per invocation */
	/* --heap-events, from the system calls */
	MTB_HEAP_BRK_GROW, MTB_HEAP_BRK_SHRINK,
	MTB_HEAP_RESERVE,   /* mmap PROT_NONE: an arena heap reservation */
	MTB_HEAP_GROW,      /* mprotect to read-write in an arena heap: it grows */
	MTB_HEAP_DONTNEED,  /* madvise(MADV_DONTNEED) or mmap(PROT_NONE, MAP_FIXED)
			       in an arena heap: it shrinks */
	MTB_HEAP_MMAP,      /* anonymous read-write mmap: a large chunk (or a stack) */
	MTB_HEAP_MUNMAP,
	MTB_HEAP_MREMAP,
	MTB_HEAP_GROW_OTHER,     /* mprotect to read-write outside the known arena
				    heaps: a thread stack, or anything else */
	MTB_HEAP_DONTNEED_OTHER, /* madvise(MADV_DONTNEED) outside them: e.g. a
				    thread giving its stack back at exit */
	MTB_HEAP_ARENA_FREE,     /* munmap of a whole arena heap (heap_trim) */
	MTB_HEAP_LAST = MTB_HEAP_ARENA_FREE,
	MTB_ID_USER,        /* first -f function */
};

/* How a probe finds the size it counts. */
enum mtb_size {
	MTB_SZ_NONE,
	MTB_SZ_ARG0, MTB_SZ_ARG1, MTB_SZ_ARG2, MTB_SZ_ARG3, MTB_SZ_ARG4, MTB_SZ_ARG5,
	MTB_SZ_MUL01,  /* calloc(n, m) */
	MTB_SZ_MUL12,  /* reallocarray(p, n, m) */
	MTB_SZ_CHUNK0, /* free(p): glibc's chunk header gives p's usable size */
};

/* Per-probe flags. */
#define MTB_F_ALLOC   0x1u /* an allocation: counts towards --within */
#define MTB_F_OUTSIDE 0x2u /* count only calls from outside the providing
			      object (the agent's PLT-visible calls): glibc's
			      malloc calls its own mmap/sbrk directly */
#define MTB_F_HINTS   0x4u /* a nested call may be recognized (see
			      memtap.bpf.c, "nesting") */
#define MTB_F_PRODUCE 0x40u /* the provider is the known glibc/libstdc++
			       build: announce the nested calls it makes */
#define MTB_F_DIRECT  0x80u /* skip direct calls (call rel32 to the function
			       itself, so from within its object): what the
			       agent cannot see either, e.g. glibc's own frees
			       at thread exit */
#define MTB_F_FAIL_NULL 0x8u  /* return probe: failed when it returns 0 */
#define MTB_F_FAIL_NZ   0x10u /* return probe: failed when nonzero */
#define MTB_F_FAIL_NEG1 0x20u /* return probe: failed when -1 (MAP_FAILED) */

struct mtb_cfg {
	__u32 size;  /* enum mtb_size */
	__u32 flags; /* MTB_F_* */
	/* MTB_F_OUTSIDE: the providing object's executable segment, as
	 * distances from the probed instruction */
	__u64 text_below, text_above;
	__u64 probe_off; /* the probe's distance from the function's entry */
	__u32 pool;      /* -f FUNC:pool=argM: M + 1 (0: no pools) */
	/* Where argument k is at the probe, as an x86 register number + 1
	 * (0: where it arrived, rdi rsi rdx rcx r8 r9): instructions skipped
	 * before the probe may have moved it (objects.c). */
	__u8 arg_reg[6];
	__u8 pad[6];
};

struct mtb_key {
	__u32 tgid;
	__u32 id;
};

struct mtb_stat {
	__u64 calls;
	__u64 bytes;
	__u64 failed;
	__u64 unread; /* calls whose size could not be read (page not resident) */
	__u64 nopool, nopool_bytes; /* calls (and bytes) the pools map had no room for */
	__u64 nosite; /* --stacks: calls the sites map had no room for */
	__u64 hist[MTB_HIST];
};

/* -f FUNC:pool=argM: calls and bytes per (process, function, pool). */
struct mtb_pool_key {
	__u32 tgid;
	__u32 id;
	__u64 pool;
};

struct mtb_pool_val {
	__u64 calls;
	__u64 bytes;
};

/* --stacks: calls and bytes per (process, function, call site).  A site is
 * the return address at the top of the stack when the probe fires (the
 * caller of the allocation function, which a frame-pointer walk from the
 * entry of a function misses) and the kernel's frame-pointer walk above it,
 * a stack map id (-1: none, the walk failed or the map was full). */
struct mtb_site_key {
	__u32 tgid;
	__u32 id;
	__s32 stackid;
	__u32 pad;
	__u64 ret;
};

/* A traced process. */
struct mtb_proc {
	__u32 ppid;
	__u32 exited;
	__u64 start_ns; /* CLOCK_MONOTONIC (bpf_ktime_get_ns) */
	char comm[MTB_COMM];
	__u32 exit_code; /* once exited: the last thread's exit code, as wait(2) gives it */
	__u32 pad;
};

/* What a traced function is about to call: the next traced entry on the
 * thread, if it is ID with ARG from within this frame, is that nested call. */
struct mtb_hint {
	__u32 tid;
	__u32 id;
	__u64 arg;
	__u64 sp;
};

/* --heap-events: one arena heap of a process, by its aligned base. */
struct mtb_arena_key {
	__u32 tgid;
	__u32 pad;
	__u64 base;
};

/* --within: the open invocation on one thread. */
struct mtb_scope {
	__u64 depth;
	__u64 bytes;
	__u64 calls;
};

/* pools part: --pools, APR pool lifetimes (docs/POOLS.md).  Probes on
 * libapr's functions, with the op as their cookie; apr_pcalloc is not
 * probed: its own apr_palloc is (a uprobe sees every call). */
enum mtb_apr_op {
	MTB_APR_CREATE,   /* apr_pool_create_ex: entry and return */
	MTB_APR_CREATE_U, /* apr_pool_create_unmanaged_ex: entry and return */
	MTB_APR_PALLOC,
	MTB_APR_CLEAR,
	MTB_APR_DESTROY,
	MTB_APR_TAG,
	MTB_APR_OPS,
};
#define MTB_APR_POOLS 65536 /* live pools, all processes */
#define MTB_APR_TAGS 4096   /* (process, tag) aggregates */
#define MTB_APR_TAG_MAX 32

struct mtb_apr_key {
	__u32 tgid;
	__u32 pad;
	__u64 pool;
};

struct mtb_apr_pool {
	__u64 parent, created_ns, mark_ns, caller; /* times: CLOCK_MONOTONIC */
	__u64 tag_ptr; /* apr_pool_tag's string, for the loader when TAG could not be read
			  (its page was not resident: BPF cannot fault it in) */
	__u64 calls, bytes, cur_bytes, clears;
	__u32 marks, flags; /* as memtap/pools.h */
	char tag[MTB_APR_TAG_MAX];
	/* 1 once its end is booked (claimed by compare-and-swap: its destroy's
	 * return and a new pool's creation at the address may race).  Booked
	 * entries stay until a pool made at the address replaces them: a
	 * delete by key could take that new pool instead. */
	__u64 booked;
};

/* A create between its entry and its return, per thread. */
struct mtb_apr_pend {
	__u64 out, parent, caller;
	__u32 flags, pad;
};

struct mtb_apr_tag_key {
	__u32 tgid;
	__u32 pad;
	__u64 tag_ptr; /* 0, or the string the loader reads when TAG is empty */
	char tag[MTB_APR_TAG_MAX];
};

struct mtb_apr_tag {
	__u64 pools, calls, bytes, clears, life_us;
	__u64 life_hist[MTB_HIST];
	__u64 bytes_hist[MTB_HIST];
};

/* apr_pool_destroy calls open on a thread, innermost last (a destroy
 * recurses into the pool's children): each is booked at its return, after
 * the pool's cleanups, which may allocate from it.  POOL 0: an untracked
 * pool; past MTB_APR_DEPTH, OVER counts the calls not kept. */
#define MTB_APR_DEPTH 8
struct mtb_apr_dstack {
	__u32 depth, over;
	__u64 pool[MTB_APR_DEPTH];
	__u64 born[MTB_APR_DEPTH]; /* its created_ns: another thread may make a pool at the
				      address before the destroy returns */
};

struct mtb_apr_count {
	__u64 created, destroyed, dropped, untracked_calls, untracked_bytes, tags_full;
};

#endif
