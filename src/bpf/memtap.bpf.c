// SPDX-License-Identifier: GPL-2.0
/*
 * memtap's BPF programs: uprobes on the allocator entry points of the traced
 * processes, aggregated in the kernel per (tgid, function) into calls, bytes,
 * failures and quantize() histograms.  Nothing is sent to user space per
 * event; the loader (loader.c) reads the maps when the session ends.
 *
 * One entry program serves every function: its bpf_cookie is the function's
 * id (memtap_bpf.h) and cfg[id], set by the loader through .rodata, says where
 * the size is and what else to do.  Return probes exist only where a return
 * value is needed (failures of the rare functions, --failures, --within).
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>

#include "memtap_bpf.h"

/* libbpf 1.1 stops at the fifth argument. */
#ifndef PT_REGS_PARM6
#define PT_REGS_PARM6(x) ((x)->r9)
#endif

char LICENSE[] SEC("license") = "GPL";

const volatile struct mtb_cfg cfg[MTB_MAX_IDS] = {};
const volatile __u32 follow = 1;    /* children join the traced set at fork */
const volatile __u32 within_on = 0; /* --within is active */
const volatile __u32 stacks_on = 0; /* --stacks */
const volatile __u32 heap_on = 0;   /* --heap-events */

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__uint(max_entries, 32768);
	__type(key, struct mtb_key);
	__type(value, struct mtb_stat);
} stats SEC(".maps");

/* The traced processes: the per-event filter, and what the loader needs to
 * name a process that is gone by the time the maps are read. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 8192);
	__type(key, __u32);
	__type(value, struct mtb_proc);
} procs SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, MTB_HINT_SLOTS);
	__type(key, __u32);
	__type(value, struct mtb_hint);
} hints SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__type(key, __u32);
	__type(value, struct mtb_scope);
} scopes SEC(".maps");

/* Entries not counted, per (tid, id), whose return probe must not count a
 * failure either. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__type(key, struct mtb_key);
	__type(value, __u32);
} skipped SEC(".maps");

/* --heap-events: the program break before a brk() call, per thread. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__type(key, __u32);
	__type(value, __u64);
} brk_before SEC(".maps");

/* -f FUNC:pool=argM.  A plain hash updated with atomic adds, not a per-CPU
 * one: the per-CPU copies of 65536 entries would cost memory in proportion
 * to the machine's CPUs, for a table read once. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, MTB_MAX_POOLS);
	__type(key, struct mtb_pool_key);
	__type(value, struct mtb_pool_val);
} pools SEC(".maps");

/* --stacks.  The loader shrinks both maps to one entry without it. */
struct {
	__uint(type, BPF_MAP_TYPE_STACK_TRACE);
	__uint(max_entries, MTB_MAX_STACKS);
	__uint(key_size, sizeof(__u32));
	__uint(value_size, MTB_STACK_DEPTH * sizeof(__u64));
} stack_traces SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, MTB_MAX_SITES);
	__type(key, struct mtb_site_key);
	__type(value, struct mtb_pool_val);
} sites SEC(".maps");

/* The arena heaps of the traced processes, by (tgid, 64 MiB-aligned base):
 * added when a reservation returns (sys_exit), or by the loader from
 * /proc/PID/maps for the heaps made before memtap attached; removed when a
 * heap is unmapped.  They tell an arena's mprotect and madvise from a
 * thread stack's, which look the same at the system call. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, MTB_MAX_ARENAS);
	__type(key, struct mtb_arena_key);
	__type(value, __u8);
} arenas SEC(".maps");

static const struct mtb_stat zero_stat;
static const struct mtb_pool_val zero_pool;

static __always_inline __u32 bucket(__u64 v)
{
	__u32 r = 0;

	if (!v)
		return 0;
	if (v >> 32) { v >>= 32; r += 32; }
	if (v >> 16) { v >>= 16; r += 16; }
	if (v >> 8) { v >>= 8; r += 8; }
	if (v >> 4) { v >>= 4; r += 4; }
	if (v >> 2) { v >>= 2; r += 2; }
	if (v >> 1) r += 1;
	return r + 1; /* floor(log2(v)) + 1: [2^(k-1), 2^k) is bucket k */
}

static __always_inline struct mtb_stat *stat_of(__u32 tgid, __u32 id)
{
	struct mtb_key k = {.tgid = tgid, .id = id};
	struct mtb_stat *s = bpf_map_lookup_elem(&stats, &k);

	if (s)
		return s;
	bpf_map_update_elem(&stats, &k, &zero_stat, BPF_NOEXIST);
	return bpf_map_lookup_elem(&stats, &k);
}

static __always_inline void count(__u32 tgid, __u32 id, __u64 size, int hist)
{
	struct mtb_stat *s = stat_of(tgid, id);
	__u32 b;

	if (!s)
		return;
	s->calls++;
	s->bytes += size;
	if (hist) {
		b = bucket(size);
		if (b < MTB_HIST)
			s->hist[b]++;
	}
}

/* Adds one call of SIZE to POOL's entry; when the table is full, to the
 * function's count of calls without a pool (reported as "other pools"). */
static __always_inline void pool_add(__u32 tgid, __u32 id, __u64 pool, __u64 size)
{
	struct mtb_pool_key k = {.tgid = tgid, .id = id, .pool = pool};
	struct mtb_pool_val *v = bpf_map_lookup_elem(&pools, &k);
	struct mtb_stat *s;

	if (!v) {
		/* EEXIST (another CPU added it first) is fine: look again */
		bpf_map_update_elem(&pools, &k, &zero_pool, BPF_NOEXIST);
		v = bpf_map_lookup_elem(&pools, &k);
	}
	if (v) {
		__sync_fetch_and_add(&v->calls, 1);
		__sync_fetch_and_add(&v->bytes, size);
		return;
	}
	s = stat_of(tgid, id);
	if (s) {
		s->nopool++;
		s->nopool_bytes += size;
	}
}

/* --stacks: one more call of SIZE from the current call site.  Frame
 * pointers only: the kernel follows %rbp from the probed function's frame,
 * so a caller built without frame pointers ends (or garbles) the walk. */
static __always_inline void site_add(void *ctx, __u32 tgid, __u32 id, __u64 sp, __u64 size)
{
	struct mtb_site_key k = {.tgid = tgid, .id = id};
	struct mtb_pool_val *v;

	/* The probe sits where the return address is still at the top of the
	 * stack (objects.c skips no instruction that moves %rsp). */
	bpf_probe_read_user(&k.ret, sizeof(k.ret), (void *)sp);
	/* Skip the first frame: the probed function's own address. */
	k.stackid = bpf_get_stackid(ctx, &stack_traces, BPF_F_USER_STACK | 1);
	if (k.stackid < 0)
		k.stackid = -1;
	v = bpf_map_lookup_elem(&sites, &k);
	if (!v) {
		bpf_map_update_elem(&sites, &k, &zero_pool, BPF_NOEXIST);
		v = bpf_map_lookup_elem(&sites, &k);
	}
	if (v) {
		__sync_fetch_and_add(&v->calls, 1);
		__sync_fetch_and_add(&v->bytes, size);
		return;
	}
	struct mtb_stat *s = stat_of(tgid, id);
	if (s)
		s->nosite++;
}

static __always_inline int traced(__u32 tgid)
{
	struct mtb_proc *p = bpf_map_lookup_elem(&procs, &tgid);

	return p && !p->exited;
}

/* glibc's usable size of the block at P, from its chunk header (the size
 * word before P; bit 1 marks an mmapped chunk, whose header is 16 bytes
 * instead of 8): what malloc_usable_size(P) returns.  Returns -1 when the
 * header cannot be read: a probe cannot fault a page in, so a header on a
 * page that is not resident at that instant (reclaimed, being migrated or
 * compacted) is unreadable; the call is then counted without a size. */
static __always_inline __s64 glibc_usable(__u64 p)
{
	__u64 h = 0;

	if (!p)
		return 0;
	if (bpf_probe_read_user(&h, sizeof(h), (void *)(p - 8)))
		return -1;
	if ((h & ~7ull) < 16)
		return 0;
	return (h & ~7ull) - (h & 2 ? 16 : 8);
}

static __always_inline void count_unread(__u32 tgid, __u32 id)
{
	struct mtb_stat *s = stat_of(tgid, id);

	if (s) {
		s->calls++;
		s->unread++;
	}
}

/*
 * Nesting.  The agent counts what the program calls, not what the allocator
 * calls itself: realloc(NULL, n) in glibc tail-jumps to malloc, realloc(p, 0)
 * calls free, memalign with a small alignment calls malloc, and libstdc++'s
 * operators call malloc, free, aligned_alloc or each other.  A uprobe sees
 * every entry, so a function that is known to make such a call leaves a hint
 * on its thread (which function, with which size or pointer, below which
 * stack pointer); the next traced entry on the thread takes the hint away,
 * and is not counted when it is that call.  The hints encode the behaviour of
 * Debian 12's glibc 2.36 and libstdc++ (GCC 12); the loader sets
 * MTB_F_PRODUCE only for those providers.
 */
static __always_inline void hint_set(struct mtb_hint *h, __u32 tid, __u32 id, __u64 a, __u64 sp)
{
	h->tid = tid;
	h->id = id;
	h->arg = a;
	h->sp = sp;
}

static __always_inline void child_of(__u32 id, const __u64 *a, __u32 *cid, __u64 *carg)
{
	__u64 a0 = a[0], a1 = a[1], al;

	*cid = MTB_MAX_IDS;
	switch (id) {
	case MTB_REALLOC:
		if (!a0) {
			*cid = MTB_MALLOC;
			*carg = a1;
		} else if (!a1) {
			*cid = MTB_FREE;
			*carg = a0;
		}
		break;
	case MTB_REALLOCARRAY:
		/* glibc returns ENOMEM without calling realloc on overflow */
		al = a[2];
		*carg = al ? ~0ull / al : ~0ull;
		asm volatile("" : "+r"(*carg)); /* or clang emits __multi3 */
		if (a1 <= *carg) {
			*cid = MTB_REALLOC;
			*carg = a1 * al;
		}
		break;
	case MTB_MEMALIGN:
	case MTB_ALIGNED_ALLOC:
		if (a0 <= 16) {
			*cid = MTB_MALLOC;
			*carg = a1;
		}
		break;
	case MTB_POSIX_MEMALIGN:
		if (a1 <= 16) {
			*cid = MTB_MALLOC;
			*carg = a[2];
		}
		break;
	case MTB_NEW:
		*cid = MTB_MALLOC;
		*carg = a0 ? a0 : 1;
		break;
	case MTB_NEW_NOTHROW:
	case MTB_NEWA:
		*cid = MTB_NEW;
		*carg = a0;
		break;
	case MTB_NEWA_NOTHROW:
		*cid = MTB_NEWA;
		*carg = a0;
		break;
	case MTB_NEW_ALIGN:
		al = a1;
		a0 = a0 ? a0 : 1;
		*cid = MTB_ALIGNED_ALLOC;
		*carg = (a0 + al - 1) & ~(al - 1);
		break;
	case MTB_NEW_ALIGN_NOTHROW:
	case MTB_NEWA_ALIGN:
		*cid = MTB_NEW_ALIGN;
		*carg = a0;
		break;
	case MTB_NEWA_ALIGN_NOTHROW:
		*cid = MTB_NEWA_ALIGN;
		*carg = a0;
		break;
	case MTB_DELETE:
	case MTB_DELETE_ALIGN:
		*cid = MTB_FREE;
		*carg = a0;
		break;
	case MTB_DELETE_SIZED:
	case MTB_DELETE_NOTHROW:
	case MTB_DELETEA:
		*cid = MTB_DELETE;
		*carg = a0;
		break;
	case MTB_DELETEA_SIZED:
	case MTB_DELETEA_NOTHROW:
		*cid = MTB_DELETEA;
		*carg = a0;
		break;
	case MTB_DELETE_SIZED_ALIGN:
	case MTB_DELETE_ALIGN_NOTHROW:
	case MTB_DELETEA_ALIGN:
		*cid = MTB_DELETE_ALIGN;
		*carg = a0;
		break;
	case MTB_DELETEA_SIZED_ALIGN:
	case MTB_DELETEA_ALIGN_NOTHROW:
		*cid = MTB_DELETEA_ALIGN;
		*carg = a0;
		break;
	}
}

/* The value a nested call of ID is recognized by: its size, or for frees
 * and reallocs of a block, the pointer. */
static __always_inline __u64 match_arg(__u32 id, const __u64 *a)
{
	switch (id) {
	case MTB_REALLOC:
	case MTB_ALIGNED_ALLOC:
		return a[1];
	default:
		return a[0]; /* malloc and new: the size; frees: the pointer */
	}
}

static __always_inline void within_add(__u32 tid, __u64 size)
{
	struct mtb_scope *s = bpf_map_lookup_elem(&scopes, &tid);

	if (s && s->depth) {
		s->bytes += size;
		s->calls++;
	}
}

#define MTB_F_FAILS (MTB_F_FAIL_NULL | MTB_F_FAIL_NZ | MTB_F_FAIL_NEG1)

/* An entry that is not counted: its return, if probed, must not count. */
static __always_inline int skip(__u32 tid, __u32 id, __u32 flags)
{
	struct mtb_key k = {.tgid = tid, .id = id};
	__u32 one = 1, *n;

	if (!(flags & MTB_F_FAILS))
		return 0;
	n = bpf_map_lookup_elem(&skipped, &k);
	if (n)
		(*n)++;
	else
		bpf_map_update_elem(&skipped, &k, &one, BPF_ANY);
	return 0;
}

/* The general registers by x86 number (0 rax .. 7 rdi, 8-15 r8-r15), each
 * read once at a constant offset: the verifier refuses context reads at
 * computed offsets, which clang would otherwise make of a switch. */
#define RD(i, f)                                       \
	do {                                           \
		__u64 _v = ctx->f;                     \
		asm volatile("" : "+r"(_v));           \
		r[i] = _v;                             \
	} while (0)
static __always_inline void regs_read(struct pt_regs *ctx, __u64 *r)
{
	RD(0, ax); RD(1, cx); RD(2, dx); RD(3, bx); RD(4, sp); RD(5, bp); RD(6, si); RD(7, di);
	RD(8, r8); RD(9, r9); RD(10, r10); RD(11, r11); RD(12, r12); RD(13, r13); RD(14, r14); RD(15, r15);
}

SEC("uprobe")
int BPF_KPROBE(mt_entry)
{
	__u64 pid_tgid = bpf_get_current_pid_tgid();
	__u32 tgid = pid_tgid >> 32, tid = (__u32)pid_tgid;
	__u32 id = (__u32)bpf_get_attach_cookie(ctx);
	__u64 size = 0, sp = PT_REGS_SP(ctx), ip = PT_REGS_IP(ctx), ra = 0;
	__u32 mode, flags, slot, cid;
	__u64 carg = 0;
	int nested = 0;

	__u64 a[6], r[16];
	static const __u8 entry_reg[6] = {7, 6, 2, 1, 8, 9}; /* rdi rsi rdx rcx r8 r9 */

	if (id >= MTB_MAX_IDS || !traced(tgid))
		return 0;
	id &= MTB_MAX_IDS - 1;
	/* Every argument register read once, at a constant offset: the
	 * verifier refuses context reads at computed offsets.  A probe past
	 * the entry may find an argument in another register (cfg.arg_reg). */
	regs_read(ctx, r);
	for (int k = 0; k < 6; k++) {
		__u8 at = cfg[id].arg_reg[k];
		a[k] = r[(at ? at - 1 : entry_reg[k]) & 15];
	}
	asm volatile("" ::: "memory"); /* the check above may be on another register */
	mode = cfg[id].size;
	flags = cfg[id].flags;

	if (flags & (MTB_F_OUTSIDE | MTB_F_DIRECT)) {
		/* Probes sit where the return address is still at the top of
		 * the stack: the instructions skipped before them never
		 * touch the stack pointer (objects.c). */
		bpf_probe_read_user(&ra, sizeof(ra), (void *)sp);
		if (flags & MTB_F_OUTSIDE && ra >= ip - cfg[id].text_below && ra < ip + cfg[id].text_above)
			return skip(tid, id, flags);
		if (flags & MTB_F_DIRECT) {
			__u8 call[5] = {};
			__s32 rel;
			bpf_probe_read_user(call, sizeof(call), (void *)(ra - 5));
			__builtin_memcpy(&rel, call + 1, 4);
			if (call[0] == 0xe8 && ra + (__s64)rel == ip - cfg[id].probe_off)
				return skip(tid, id, flags);
		}
	}

	if (flags & MTB_F_HINTS) {
		slot = tid & (MTB_HINT_SLOTS - 1);
		struct mtb_hint *h = bpf_map_lookup_elem(&hints, &slot);
		if (h) {
			if (h->tid == tid) {
				nested = h->id == id && h->arg == match_arg(id, a) && sp <= h->sp &&
					 h->sp - sp < 4096;
				h->tid = 0;
			}
			if (flags & MTB_F_PRODUCE) {
				child_of(id, a, &cid, &carg);
				if (cid < MTB_MAX_IDS)
					hint_set(h, tid, cid, carg, sp);
			}
		}
		if (nested)
			return skip(tid, id, flags);
	}

	switch (mode) {
	case MTB_SZ_ARG0: size = a[0]; break;
	case MTB_SZ_ARG1: size = a[1]; break;
	case MTB_SZ_ARG2: size = a[2]; break;
	case MTB_SZ_ARG3: size = a[3]; break;
	case MTB_SZ_ARG4: size = a[4]; break;
	case MTB_SZ_ARG5: size = a[5]; break;
	case MTB_SZ_MUL01: size = a[0] * a[1]; break;
	case MTB_SZ_MUL12: size = a[1] * a[2]; break;
	case MTB_SZ_CHUNK0: {
		__s64 u = glibc_usable(a[0]);
		if (u < 0) {
			count_unread(tgid, id);
			return 0;
		}
		size = (__u64)u;
		break;
	}
	}
	count(tgid, id, size, mode != MTB_SZ_NONE);
	switch (cfg[id].pool) {
	case 1: pool_add(tgid, id, a[0], size); break;
	case 2: pool_add(tgid, id, a[1], size); break;
	case 3: pool_add(tgid, id, a[2], size); break;
	case 4: pool_add(tgid, id, a[3], size); break;
	case 5: pool_add(tgid, id, a[4], size); break;
	case 6: pool_add(tgid, id, a[5], size); break;
	}
	if (within_on && (flags & MTB_F_ALLOC))
		within_add(tid, size);
	if (stacks_on && (flags & MTB_F_ALLOC || id >= MTB_ID_USER))
		site_add(ctx, tgid, id, sp, size);
	return 0;
}

/* Return probes: failures only (the entry probe counted the call). */
SEC("uretprobe")
int BPF_KRETPROBE(mt_return, long ret)
{
	__u64 pid_tgid = bpf_get_current_pid_tgid();
	__u32 tgid = pid_tgid >> 32;
	__u32 id = (__u32)bpf_get_attach_cookie(ctx);
	struct mtb_key k = {.tgid = (__u32)pid_tgid, .id = id};
	__u32 flags, *n;
	struct mtb_stat *s;

	if (id >= MTB_MAX_IDS || !traced(tgid))
		return 0;
	n = bpf_map_lookup_elem(&skipped, &k);
	if (n && *n) {
		(*n)--; /* only this thread uses its key */
		return 0;
	}
	flags = cfg[id & (MTB_MAX_IDS - 1)].flags;
	if (!((flags & MTB_F_FAIL_NULL && ret == 0) || (flags & MTB_F_FAIL_NZ && (int)ret != 0) ||
	      (flags & MTB_F_FAIL_NEG1 && ret == -1)))
		return 0;
	s = stat_of(tgid, id);
	if (s)
		s->failed++;
	return 0;
}

/* --within FUNC: a per-thread scope from FUNC's entry to its return. */
SEC("uprobe")
int BPF_KPROBE(mt_within_enter)
{
	__u64 pid_tgid = bpf_get_current_pid_tgid();
	__u32 tid = (__u32)pid_tgid;
	struct mtb_scope fresh = {.depth = 1}, *s;

	if (!traced(pid_tgid >> 32))
		return 0;
	s = bpf_map_lookup_elem(&scopes, &tid);
	if (!s) {
		bpf_map_update_elem(&scopes, &tid, &fresh, BPF_ANY);
		return 0;
	}
	if (s->depth++ == 0) {
		s->bytes = 0;
		s->calls = 0;
	}
	return 0;
}

SEC("uretprobe")
int BPF_KRETPROBE(mt_within_exit)
{
	__u64 pid_tgid = bpf_get_current_pid_tgid();
	__u32 tgid = pid_tgid >> 32, tid = (__u32)pid_tgid;
	struct mtb_scope *s;

	if (!traced(tgid))
		return 0;
	s = bpf_map_lookup_elem(&scopes, &tid);
	if (!s || !s->depth || --s->depth)
		return 0;
	count(tgid, MTB_WITHIN_BYTES, s->bytes, 1);
	count(tgid, MTB_WITHIN_ALLOCS, s->calls, 1);
	return 0;
}

/* Children join the traced set when their parent is traced. */
/* --heap-events: a child inherits its parent's arena heaps (FROM's entries
 * copied to TO), an exec'd or exited process has none (TO == 0: FROM's
 * entries deleted). */
struct arena_copy {
	__u32 from, to;
};

static long arena_copy_one(void *map, struct mtb_arena_key *k, __u8 *v, struct arena_copy *c)
{
	struct mtb_arena_key n = *k;

	if (k->tgid != c->from)
		return 0;
	if (!c->to) {
		bpf_map_delete_elem(map, k);
		return 0;
	}
	n.tgid = c->to;
	bpf_map_update_elem(map, &n, v, BPF_ANY);
	return 0;
}

static __always_inline void arenas_copy(__u32 from, __u32 to)
{
	struct arena_copy c = {.from = from, .to = to};

	if (heap_on)
		bpf_for_each_map_elem(&arenas, arena_copy_one, &c, 0);
}

SEC("tp_btf/sched_process_fork")
int BPF_PROG(mt_fork, struct task_struct *parent, struct task_struct *child)
{
	__u32 ptgid = parent->tgid, ctgid = child->tgid;
	struct mtb_proc c = {}, *pp;

	if (!follow || child->pid != ctgid)
		return 0; /* a thread, or not following */
	pp = bpf_map_lookup_elem(&procs, &ptgid);
	if (!pp || pp->exited)
		return 0;
	c.ppid = ptgid;
	c.start_ns = bpf_ktime_get_ns();
	bpf_probe_read_kernel_str(c.comm, sizeof(c.comm), child->comm);
	bpf_map_update_elem(&procs, &ctgid, &c, BPF_ANY);
	arenas_copy(ptgid, ctgid);
	return 0;
}

SEC("tp_btf/sched_process_exec")
int BPF_PROG(mt_exec, struct task_struct *p)
{
	__u32 tgid = p->tgid;
	struct mtb_proc *pp = bpf_map_lookup_elem(&procs, &tgid);

	if (pp) {
		bpf_probe_read_kernel_str(pp->comm, sizeof(pp->comm), p->comm);
		arenas_copy(tgid, 0);
	}
	return 0;
}

/* The last thread of a traced process is leaving: stop counting for its
 * tgid, so that a later process reusing the number is not mistaken for it. */
SEC("tp_btf/sched_process_exit")
int BPF_PROG(mt_exit, struct task_struct *p)
{
	__u32 tgid = p->tgid;
	struct mtb_proc *pp = bpf_map_lookup_elem(&procs, &tgid);

	if (pp && BPF_CORE_READ(p, signal, live.counter) == 0) {
		pp->exit_code = BPF_CORE_READ(p, exit_code);
		pp->exited = 1;
		arenas_copy(tgid, 0);
	}
	return 0;
}

/*
 * --heap-events: what glibc's allocator does with the address space, seen at
 * the system calls (its own calls are direct, invisible to the PLT and to the
 * function probes above).  Arena heaps are 64 MiB PROT_NONE reservations made
 * read-write by mprotect as they grow and given back by madvise or munmap;
 * the main heap moves the program break; large chunks are anonymous mmaps.
 */
#define PROT_WRITE_ 0x2
#define MAP_ANONYMOUS_ 0x20
#define MAP_NORESERVE_ 0x4000 /* glibc's new_heap(); thread stacks do not use it */
#define MADV_DONTNEED_ 4
#define MAP_FIXED_ 0x10

/* The length of a reservation in flight, per thread: its address is only
 * known at sys_exit. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__type(key, __u32);
	__type(value, __u64);
} reserving SEC(".maps");

static __always_inline int in_arena(__u32 tgid, __u64 addr)
{
	struct mtb_arena_key k = {.tgid = tgid, .base = addr & ~(MTB_HEAP_MAX - 1)};

	return bpf_map_lookup_elem(&arenas, &k) != NULL;
}

/* One heap event: per process (the function table), and per thread (the
 * pools map keyed by thread id: which thread's malloc made the arena). */
static __always_inline void heap_count(__u32 tgid, __u32 tid, __u32 id, __u64 size)
{
	count(tgid, id, size, 1);
	pool_add(tgid, id, tid, size);
}

SEC("tp_btf/sys_enter")
int BPF_PROG(mt_sys_enter, struct pt_regs *regs, long nr)
{
	__u64 pid_tgid = bpf_get_current_pid_tgid();
	__u32 tgid = pid_tgid >> 32, tid = (__u32)pid_tgid;
	__u64 a1, a2, a3;

	if (nr != 9 && nr != 10 && nr != 11 && nr != 12 && nr != 25 && nr != 28)
		return 0;
	if (!traced(tgid))
		return 0;
	a1 = BPF_CORE_READ(regs, si);
	a2 = BPF_CORE_READ(regs, dx);
	switch (nr) {
	case 9: /* mmap(addr, len, prot, flags, fd, off) */
		a3 = BPF_CORE_READ(regs, r10);
		if (!(a3 & MAP_ANONYMOUS_))
			break;
		if (a2 == 0 && (a3 & MAP_NORESERVE_)) {
			heap_count(tgid, tid, MTB_HEAP_RESERVE, a1);
			bpf_map_update_elem(&reserving, &tid, &a1, BPF_ANY);
		} else if (a2 == 0 && (a3 & MAP_FIXED_) && in_arena(tgid, BPF_CORE_READ(regs, di))) {
			/* shrink_heap() when the heap may not be madvised */
			heap_count(tgid, tid, MTB_HEAP_DONTNEED, a1);
		} else if (a2 & PROT_WRITE_) {
			heap_count(tgid, tid, MTB_HEAP_MMAP, a1);
		}
		break;
	case 10: /* mprotect(addr, len, prot) */
		if (a2 & PROT_WRITE_)
			heap_count(tgid, tid, in_arena(tgid, BPF_CORE_READ(regs, di)) ? MTB_HEAP_GROW
										: MTB_HEAP_GROW_OTHER, a1);
		break;
	case 11: { /* munmap(addr, len) */
		struct mtb_arena_key k = {.tgid = tgid, .base = BPF_CORE_READ(regs, di)};
		if (!(k.base & (MTB_HEAP_MAX - 1)) && bpf_map_delete_elem(&arenas, &k) == 0)
			heap_count(tgid, tid, MTB_HEAP_ARENA_FREE, a1);
		else
			heap_count(tgid, tid, MTB_HEAP_MUNMAP, a1);
		break;
	}
	case 12: { /* brk(addr): the break before the call */
		struct task_struct *t = (struct task_struct *)bpf_get_current_task_btf();
		__u64 before = BPF_CORE_READ(t, mm, brk);
		bpf_map_update_elem(&brk_before, &tid, &before, BPF_ANY);
		break;
	}
	case 25: /* mremap(old, old_len, new_len, ...) */
		heap_count(tgid, tid, MTB_HEAP_MREMAP, a2);
		break;
	case 28: /* madvise(addr, len, advice) */
		if (a2 == MADV_DONTNEED_)
			heap_count(tgid, tid, in_arena(tgid, BPF_CORE_READ(regs, di)) ? MTB_HEAP_DONTNEED
										: MTB_HEAP_DONTNEED_OTHER, a1);
		break;
	}
	return 0;
}

/* A reservation returned at ADDR: glibc's new_heap() keeps the 64 MiB-aligned
 * heap inside it (a 128 MiB reservation is trimmed to it; a 64 MiB one that
 * is not aligned is given back and not a heap). */
static __always_inline int reserved(__u32 tgid, __u32 tid, __u64 addr)
{
	__u64 *len = bpf_map_lookup_elem(&reserving, &tid);
	struct mtb_arena_key k = {.tgid = tgid};
	__u8 one = 1;

	if (!len)
		return 0;
	k.base = (addr + MTB_HEAP_MAX - 1) & ~(MTB_HEAP_MAX - 1);
	if (addr < (__u64)-4096 && k.base + MTB_HEAP_MAX <= addr + *len)
		bpf_map_update_elem(&arenas, &k, &one, BPF_ANY);
	bpf_map_delete_elem(&reserving, &tid);
	return 0;
}

SEC("tp_btf/sys_exit")
int BPF_PROG(mt_sys_exit, struct pt_regs *regs, long ret)
{
	__u64 pid_tgid = bpf_get_current_pid_tgid();
	__u32 tgid = pid_tgid >> 32, tid = (__u32)pid_tgid;
	__u64 *before, after, nr = BPF_CORE_READ(regs, orig_ax);

	if (nr == 9)
		return reserved(tgid, tid, (__u64)ret);
	if (nr != 12)
		return 0;
	before = bpf_map_lookup_elem(&brk_before, &tid);
	if (!before)
		return 0;
	after = (__u64)ret;
	if (after > *before)
		heap_count(tgid, tid, MTB_HEAP_BRK_GROW, after - *before);
	else if (after < *before)
		heap_count(tgid, tid, MTB_HEAP_BRK_SHRINK, *before - after);
	bpf_map_delete_elem(&brk_before, &tid);
	return 0;
}

/* ---- pools part: --pools, APR pool lifetimes (docs/POOLS.md) ----
 *
 * The same model as the agent's (memtap/pools.h), in maps: live pools by
 * (process, address), destroyed ones summed by (process, tag).  A uprobe
 * sees every call, apr_pool_destroy's direct recursion into a pool's
 * children included, so no tree is kept here.  Times are CLOCK_MONOTONIC;
 * the loader turns them into CLOCK_REALTIME. */

/* 8 entries, a power of two: the op is masked for the verifier */
const volatile struct mtb_cfg apr_cfg[8] = {};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, MTB_APR_POOLS);
	__type(key, struct mtb_apr_key);
	__type(value, struct mtb_apr_pool);
} apr_pools SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__type(key, __u64);
	__type(value, struct mtb_apr_pend);
} apr_pend SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, MTB_APR_TAGS);
	__type(key, struct mtb_apr_tag_key);
	__type(value, struct mtb_apr_tag);
} apr_tags SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 8192);
	__type(key, __u32);
	__type(value, struct mtb_apr_count);
} apr_counts SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__type(key, __u64);
	__type(value, struct mtb_apr_dstack);
} apr_dstack SEC(".maps");

static const struct mtb_apr_dstack zero_apr_dstack;
static const struct mtb_apr_tag zero_apr_tag;
static const struct mtb_apr_count zero_apr_count;

static __always_inline struct mtb_apr_count *apr_count_of(__u32 tgid)
{
	struct mtb_apr_count *c = bpf_map_lookup_elem(&apr_counts, &tgid);
	if (!c) {
		bpf_map_update_elem(&apr_counts, &tgid, &zero_apr_count, BPF_NOEXIST);
		c = bpf_map_lookup_elem(&apr_counts, &tgid);
	}
	return c;
}

/* The doubling span of an age in ms (mt_apr_span). */
static __always_inline __u32 apr_span(__u64 age_ms)
{
	__u32 b = bucket(age_ms | 1) - 1;
	return b > 31 ? 31 : b;
}

static __always_inline void apr_destroyed(__u32 tgid, struct mtb_apr_pool *p, __u64 now)
{
	if (__sync_val_compare_and_swap(&p->booked, 0, 1) != 0)
		return; /* booked by the other side of a race */
	struct mtb_apr_tag_key tk = {.tgid = tgid};
	__builtin_memcpy(tk.tag, p->tag, sizeof(tk.tag));
	if (!tk.tag[0] && p->tag_ptr &&
	    bpf_probe_read_user_str(tk.tag, sizeof(tk.tag), (void *)p->tag_ptr) <= 1)
		tk.tag_ptr = p->tag_ptr; /* still not resident: the loader reads it */
	if (!tk.tag[0] && !tk.tag_ptr)
		tk.tag[0] = '-';
	struct mtb_apr_tag *t = bpf_map_lookup_elem(&apr_tags, &tk);
	if (!t) {
		bpf_map_update_elem(&apr_tags, &tk, &zero_apr_tag, BPF_NOEXIST);
		t = bpf_map_lookup_elem(&apr_tags, &tk);
	}
	struct mtb_apr_count *c = apr_count_of(tgid);
	if (c)
		__sync_fetch_and_add(&c->destroyed, 1);
	if (!t) {
		if (c)
			__sync_fetch_and_add(&c->tags_full, 1);
		return;
	}
	__u64 life_us = now > p->created_ns ? (now - p->created_ns) / 1000 : 0;
	__u32 lb = bucket(life_us), bb = bucket(p->bytes);
	__sync_fetch_and_add(&t->pools, 1);
	__sync_fetch_and_add(&t->calls, p->calls);
	__sync_fetch_and_add(&t->bytes, p->bytes);
	__sync_fetch_and_add(&t->clears, p->clears);
	__sync_fetch_and_add(&t->life_us, life_us);
	if (lb < MTB_HIST)
		__sync_fetch_and_add(&t->life_hist[lb], 1);
	if (bb < MTB_HIST)
		__sync_fetch_and_add(&t->bytes_hist[bb], 1);
}

SEC("uprobe")
int BPF_KPROBE(mt_apr_enter)
{
	__u64 pid_tgid = bpf_get_current_pid_tgid();
	__u32 tgid = pid_tgid >> 32;
	__u32 op = (__u32)bpf_get_attach_cookie(ctx);
	__u64 a[2], r[16], now;
	static const __u8 entry_reg[2] = {7, 6}; /* rdi rsi */

	if (op >= MTB_APR_OPS || !traced(tgid))
		return 0;
	/* the mask in the register the loads use (the compiler would drop a
	 * plain one after the check above) */
	asm volatile("%[op] &= 7" : [op] "+r"(op));
	regs_read(ctx, r);
	for (int k = 0; k < 2; k++) {
		__u8 at = apr_cfg[op].arg_reg[k];
		a[k] = r[(at ? at - 1 : entry_reg[k]) & 15];
	}
	asm volatile("" ::: "memory");
	if (op == MTB_APR_CREATE || op == MTB_APR_CREATE_U) {
		struct mtb_apr_pend pd = {.out = a[0], .parent = op == MTB_APR_CREATE ? a[1] : 0,
					  .flags = op == MTB_APR_CREATE_U ? 1 : 0};
		/* the return address is still at the top of the stack (objects.c) */
		bpf_probe_read_user(&pd.caller, sizeof(pd.caller), (void *)PT_REGS_SP(ctx));
		bpf_map_update_elem(&apr_pend, &pid_tgid, &pd, BPF_ANY);
		return 0;
	}
	struct mtb_apr_key k = {.tgid = tgid, .pool = a[0]};
	struct mtb_apr_pool *p = bpf_map_lookup_elem(&apr_pools, &k);
	if (p && p->booked)
		p = NULL; /* a pool that has ended */
	now = bpf_ktime_get_ns();
	switch (op) {
	case MTB_APR_PALLOC:
		if (!p) {
			struct mtb_apr_count *c = apr_count_of(tgid);
			if (c) {
				__sync_fetch_and_add(&c->untracked_calls, 1);
				__sync_fetch_and_add(&c->untracked_bytes, a[1]);
			}
			return 0;
		}
		__sync_fetch_and_add(&p->calls, 1);
		__sync_fetch_and_add(&p->bytes, a[1]);
		__sync_fetch_and_add(&p->cur_bytes, a[1]);
		p->marks |= 1u << apr_span(now > p->mark_ns ? (now - p->mark_ns) / 1000000 : 0);
		break;
	case MTB_APR_CLEAR:
		if (!p)
			return 0;
		p->clears++;
		p->cur_bytes = 0;
		p->marks = 0;
		p->mark_ns = now;
		break;
	case MTB_APR_DESTROY: {
		/* booked at the return (mt_apr_destroy_ret), which every call has */
		struct mtb_apr_dstack *ds = bpf_map_lookup_elem(&apr_dstack, &pid_tgid);
		if (!ds) {
			bpf_map_update_elem(&apr_dstack, &pid_tgid, &zero_apr_dstack, BPF_NOEXIST);
			ds = bpf_map_lookup_elem(&apr_dstack, &pid_tgid);
		}
		if (ds && ds->depth < MTB_APR_DEPTH) {
			ds->pool[ds->depth & (MTB_APR_DEPTH - 1)] = p ? a[0] : 0;
			ds->born[ds->depth & (MTB_APR_DEPTH - 1)] = p ? p->created_ns : 0;
			ds->depth++;
		} else if (ds) {
			ds->over++;
			if (p) /* no room to wait for its return: now */
				apr_destroyed(tgid, p, now);
		}
		break;
	}
	case MTB_APR_TAG:
		if (p) {
			p->tag_ptr = a[1];
			if (bpf_probe_read_user_str(p->tag, sizeof(p->tag), (void *)a[1]) < 0)
				p->tag[0] = '\0';
		}
		break;
	}
	return 0;
}

SEC("uretprobe")
int BPF_KRETPROBE(mt_apr_ret, long ret)
{
	__u64 pid_tgid = bpf_get_current_pid_tgid();
	__u32 tgid = pid_tgid >> 32;
	struct mtb_apr_pend *pd = bpf_map_lookup_elem(&apr_pend, &pid_tgid);
	struct mtb_apr_pool np = {};
	__u64 pool = 0;

	if (!pd)
		return 0;
	np.parent = pd->parent;
	np.caller = pd->caller;
	np.flags = pd->flags;
	if ((int)ret != 0 || bpf_probe_read_user(&pool, sizeof(pool), (void *)pd->out) || pool <= 1) {
		bpf_map_delete_elem(&apr_pend, &pid_tgid);
		return 0;
	}
	bpf_map_delete_elem(&apr_pend, &pid_tgid);
	np.created_ns = np.mark_ns = bpf_ktime_get_ns();
	struct mtb_apr_key k = {.tgid = tgid, .pool = pool};
	struct mtb_apr_count *c = apr_count_of(tgid);
	/* A pool still at that address ended meanwhile: its destroy has freed
	 * the memory but not returned yet (on another thread), or was missed.
	 * It is booked now; its destroy's return then finds another pool
	 * there (another creation time) and leaves it. */
	struct mtb_apr_pool *old = bpf_map_lookup_elem(&apr_pools, &k);
	if (old)
		apr_destroyed(tgid, old, np.created_ns);
	if (bpf_map_update_elem(&apr_pools, &k, &np, BPF_ANY)) {
		if (c)
			__sync_fetch_and_add(&c->dropped, 1);
		return 0;
	}
	if (c)
		__sync_fetch_and_add(&c->created, 1);
	return 0;
}

SEC("uretprobe")
int BPF_KRETPROBE(mt_apr_destroy_ret)
{
	__u64 pid_tgid = bpf_get_current_pid_tgid();
	__u32 tgid = pid_tgid >> 32;
	struct mtb_apr_dstack *ds = bpf_map_lookup_elem(&apr_dstack, &pid_tgid);

	if (!ds)
		return 0;
	if (ds->over) {
		ds->over--;
		return 0;
	}
	if (!ds->depth)
		return 0;
	ds->depth--;
	struct mtb_apr_key k = {.tgid = tgid, .pool = ds->pool[ds->depth & (MTB_APR_DEPTH - 1)]};
	if (!k.pool)
		return 0;
	struct mtb_apr_pool *p = bpf_map_lookup_elem(&apr_pools, &k);
	if (!p || p->created_ns != ds->born[ds->depth & (MTB_APR_DEPTH - 1)])
		return 0;
	apr_destroyed(tgid, p, bpf_ktime_get_ns());
	return 0;
}
