/*
 * The eBPF backend's loader: resolves each traced function to the object
 * that provides it, fills memtap.bpf.c's settings (.rodata), loads the
 * programs, attaches the scheduler tracepoints as tp_btf and the uprobes as
 * tracefs events scoped to the traced processes (uprobes.c), and at the end turns the kernel's
 * per-(tgid, function) aggregates into one struct mt_profile per process.
 */
#include <errno.h>
#include <limits.h>
#include <linux/types.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <linux/capability.h>
#include <time.h>
#include <unistd.h>

#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include "ebpf.h"
#include "memtap_bpf.h"
#include "memtap.skel.h"
#include "uprobes.h"
#include "../cli/glibc_syms.h"

/* The fixed functions, from the one list (include/memtap/funcs.def): symbol, report name, kind,
 * where the size is, and which return value means failure.  RET_ALWAYS:
 * rare functions get their return probe by default; RET_OPT: hot ones only
 * with --failures. */
enum { RET_NONE, RET_ALWAYS, RET_OPT };
/* Per call (bench/ebpf.sh, docs/BENCHMARKS.md, kernel 6.18 on a 2-CPU VM):
 * a probe on an instruction the kernel emulates, and one it single-steps. */
#define MT_EBPF_EMULATED_COST "about 1 us"
#define MT_EBPF_STEP_COST "about 10 to 30 us"
static const struct fixed {
	const char *sym, *name;
	uint32_t kind, size, flags, fail, ret;
} fixed[MTB_NFIXED] = {
#define KF_ALLOC MTB_F_ALLOC
#define KF_FREE 0
#define KF_MAP MTB_F_OUTSIDE
#define KF_UNMAP MTB_F_OUTSIDE
#define KF_BRK MTB_F_OUTSIDE
#define MTB_F_FAIL_NONE 0
#define MT_FN(id, sym, name, kind, size, fail, ret) \
	[MTB_##id] = {#sym, name, MT_KIND_##kind, MTB_SZ_##size, KF_##kind, MTB_F_FAIL_##fail, RET_##ret},
#include "memtap/funcs.def"
#undef MT_FN
};

static const struct {
	uint32_t id, kind;
	const char *name;
} heap_names[] = {
	{MTB_HEAP_BRK_GROW, MT_KIND_BRK, "heap: brk grow"},
	{MTB_HEAP_BRK_SHRINK, MT_KIND_BRK, "heap: brk shrink"},
	{MTB_HEAP_RESERVE, MT_KIND_MAP, "heap: mmap PROT_NONE NORESERVE (arena reserve)"},
	{MTB_HEAP_GROW, MT_KIND_MAP, "heap: mprotect read-write (arena grow)"},
	{MTB_HEAP_DONTNEED, MT_KIND_UNMAP, "heap: madvise/mmap PROT_NONE (arena shrink)"},
	{MTB_HEAP_GROW_OTHER, MT_KIND_MAP, "heap: mprotect rw, not an arena (thread stack)"},
	{MTB_HEAP_DONTNEED_OTHER, MT_KIND_UNMAP, "heap: madvise DONTNEED, not an arena"},
	{MTB_HEAP_ARENA_FREE, MT_KIND_UNMAP, "heap: munmap of an arena heap (arena free)"},
	{MTB_HEAP_MMAP, MT_KIND_MAP, "heap: mmap anonymous read-write"},
	{MTB_HEAP_MUNMAP, MT_KIND_UNMAP, "heap: munmap"},
	{MTB_HEAP_MREMAP, MT_KIND_MAP, "heap: mremap"},
};

/* The arguments memtap.bpf.c reads at a fixed function's entry probe: where
 * the size is, and what the nesting hints compare (match_arg, child_of).
 * The probe may go only where all of them are still in some register. */
static unsigned args_read(uint32_t id)
{
	unsigned m = 0;
	uint32_t sz = fixed[id].size;
	if (sz >= MTB_SZ_ARG0 && sz <= MTB_SZ_ARG5)
		m |= 1u << (sz - MTB_SZ_ARG0);
	else if (sz == MTB_SZ_MUL01)
		m |= 3;
	else if (sz == MTB_SZ_MUL12)
		m |= 6;
	else if (sz == MTB_SZ_CHUNK0)
		m |= 1;
	if (id < MTB_MMAP) {
		switch (id) {
		case MTB_REALLOC: case MTB_MEMALIGN: case MTB_ALIGNED_ALLOC: case MTB_NEW_ALIGN:
			m |= 3;
			break;
		case MTB_REALLOCARRAY: case MTB_POSIX_MEMALIGN:
			m |= 7;
			break;
		default:
			m |= 1;
		}
	}
	return m;
}

/* The functions a program calls all the time: a single-stepped probe on
 * one of them is worth a warning. */
static int is_hot(uint32_t id)
{
	return id == MTB_MALLOC || id == MTB_CALLOC || id == MTB_REALLOC || id == MTB_FREE || id == MTB_NEW ||
	       id == MTB_NEWA || id == MTB_DELETE || id == MTB_DELETE_SIZED || id == MTB_DELETEA ||
	       id == MTB_DELETEA_SIZED;
}

/* cfg->arg_reg: where the probe finds each argument, when not where it
 * arrived (objects.c moved the probe past instructions that copied it). */
static void set_arg_regs(struct mtb_cfg *c, const struct mt_site_info *si)
{
	static const uint8_t entry[6] = {7, 6, 2, 1, 8, 9};
	for (int k = 0; k < 6; k++)
		c->arg_reg[k] = si->arg_reg[k] == entry[k] ? 0 : (uint8_t)(si->arg_reg[k] + 1);
}

struct placed {
	const char *sym;
	uint64_t file_off; /* of the entry probe */
	char obj[4096];
	char why[160];
};

struct mt_ebpf {
	struct memtap_bpf *skel;
	struct bpf_link **links; /* the scheduler (and --heap-events) tracepoints */
	size_t nlinks;
	struct mt_uprobes *up;   /* the uprobes */
	pid_t root;
	char root_command[MT_TEXT_MAX];
	char root_exe[MT_TEXT_MAX];
	uint64_t start_real_ns, start_mono_ns;
	char names[MTB_MAX_IDS][MT_NAME_MAX];
	uint32_t kinds[MTB_MAX_IDS];
	int follow;
	struct placed *placed;
	size_t nplaced;
	int stacks, heap_events;
	int glibc; /* --glibc: src/cli/glibc_syms.c fills the glibc section */
	/* --stacks: the last mappings seen of each traced process */
	struct proc_maps {
		uint32_t tgid, n, nx;
		struct mt_mapping *v;
		struct range {
			uint64_t lo, hi;
		} *x; /* every executable mapping, anonymous ones (JIT code) too */
	} *pm;
	size_t npm;
};

static uint64_t now_ns(clockid_t c)
{
	struct timespec ts;
	clock_gettime(c, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static int has_caps(void)
{
	struct __user_cap_header_struct h = {_LINUX_CAPABILITY_VERSION_3, 0};
	struct __user_cap_data_struct d[2];
	if (syscall(SYS_capget, &h, d))
		return 0;
	uint64_t eff = d[0].effective | (uint64_t)d[1].effective << 32;
	/* CAP_SYS_ADMIN, or CAP_BPF with CAP_PERFMON (uprobes are perf events) */
	return (eff >> 21 & 1) || ((eff >> 39 & 1) && (eff >> 38 & 1));
}

int mt_ebpf_check(char *err, size_t errlen)
{
	if (geteuid() != 0 && !has_caps()) {
		snprintf(err, errlen, "the eBPF backend needs root (CAP_BPF, CAP_PERFMON and write access to "
			 "tracefs's uprobe_events): run as root (sudo memtap ...), or use --via=inject");
		return -EPERM;
	}
	if (access("/sys/kernel/btf/vmlinux", R_OK)) {
		snprintf(err, errlen, "this kernel has no BTF (/sys/kernel/btf/vmlinux is missing): the eBPF "
			 "backend needs a kernel built with CONFIG_DEBUG_INFO_BTF=y; use --via=inject instead");
		return -ENOENT;
	}
	return 0;
}

static int libbpf_quiet(enum libbpf_print_level level, const char *fmt, va_list ap)
{
	if (level == LIBBPF_WARN && getenv("MEMTAP_BPF_DEBUG"))
		return vfprintf(stderr, fmt, ap);
	if (level == LIBBPF_DEBUG && getenv("MEMTAP_BPF_DEBUG") && atoi(getenv("MEMTAP_BPF_DEBUG")) > 1)
		return vfprintf(stderr, fmt, ap);
	return 0;
}

static int add_link(struct mt_ebpf *e, struct bpf_link *l)
{
	struct bpf_link **v = realloc(e->links, (e->nlinks + 1) * sizeof(*v));
	if (!v) {
		bpf_link__destroy(l);
		return -ENOMEM;
	}
	e->links = v;
	e->links[e->nlinks++] = l;
	return 0;
}

/* One probe (entry or return) of function ID at SI, as a tracefs event of the
 * session (uprobes.c); perf events are opened on the processes later. */
static int add_uprobe(struct mt_ebpf *e, struct bpf_program *prog, int ret, const struct mt_site_info *si,
		      uint32_t id, char *err, size_t errlen)
{
	/* A return probe shares the entry probe's place: the kernel hijacks
	 * the return address at the top of the stack, which the instructions
	 * before the probe leave alone (objects.c); one breakpoint then serves
	 * both, and it is on an instruction the kernel emulates. */
	size_t off = si->file_off + si->probe_off;
	(void)ret;
	return mt_uprobes_add(e->up, si->obj->path, off, ret, prog, id, err, errlen);
}

/* Opens the session's probes on every process of the traced set that is
 * not covered yet: the root, then the children forked while memtap was
 * attaching (mt_fork added them to procs).  A child forked before every
 * probe was open on its parent inherited only some: it gets the others now
 * (a probe opened twice on a process runs its program once per hit: the
 * filter is by mm, and each program is attached to one event).  Repeats
 * until a pass finds no new process; from then on children inherit every
 * probe at fork. */
static int cover_all(struct mt_ebpf *e, char *err, size_t errlen)
{
	int ret = mt_uprobes_cover(e->up, e->root, err, errlen);
	if (ret)
		return ret;
	for (int fresh = 1; fresh && e->follow;) {
		uint32_t key, next, *prev = NULL;
		fresh = 0;
		while (!bpf_map__get_next_key(e->skel->maps.procs, prev, &next, sizeof(next))) {
			struct mtb_proc pr;
			key = next;
			prev = &key;
			if (mt_uprobes_covered(e->up, (pid_t)key) ||
			    bpf_map__lookup_elem(e->skel->maps.procs, &key, sizeof(key), &pr, sizeof(pr), 0) ||
			    pr.exited)
				continue;
			ret = mt_uprobes_cover(e->up, (pid_t)key, err, errlen);
			if (ret == -ESRCH)
				continue; /* it exited meanwhile */
			if (ret)
				return ret;
			fresh = 1;
		}
	}
	return 0;
}

static void place(struct mt_ebpf *e, const char *sym, const struct mt_site_info *si)
{
	struct placed *v = realloc(e->placed, (e->nplaced + 1) * sizeof(*v));
	if (!v)
		return;
	e->placed = v;
	v[e->nplaced].sym = sym;
	v[e->nplaced].file_off = si->file_off + si->probe_off;
	snprintf(v[e->nplaced].obj, sizeof(v[0].obj), "%s", si->obj->name);
	snprintf(v[e->nplaced].why, sizeof(v[0].why), "%s", si->why);
	e->nplaced++;
}

/* --heap-events on a running process: the arena heaps it made before the
 * attach, from /proc/PID/maps, so that their growth and shrinking are told
 * from thread stacks too.  A heap is 64 MiB-aligned anonymous memory whose
 * reserved tail (---p) ends 64 MiB after its start; a heap grown to its
 * whole 64 MiB has no such tail and is missed (then counted as "not an
 * arena"). */
static void seed_arenas(struct mt_ebpf *e, pid_t pid)
{
	char path[64], line[PATH_MAX + 128];
	unsigned long long base = 1; /* the aligned start seen last, 1: none */
	snprintf(path, sizeof(path), "/proc/%d/maps", (int)pid);
	FILE *f = fopen(path, "re");
	if (!f)
		return;
	while (fgets(line, sizeof(line), f)) {
		unsigned long long start, end;
		char perms[8];
		int at = 0;
		if (sscanf(line, "%llx-%llx %7s %*s %*s %*s %n", &start, &end, perms, &at) < 3)
			continue;
		int anon = !at || line[at] == '\n' || line[at] == '\0';
		if (!anon) {
			base = 1;
			continue;
		}
		if (!(start & (MTB_HEAP_MAX - 1)))
			base = start;
		if (base != 1 && !strncmp(perms, "---p", 4) && end == base + MTB_HEAP_MAX) {
			struct mtb_arena_key k = {.tgid = (uint32_t)pid, .base = base};
			uint8_t one = 1;
			bpf_map__update_elem(e->skel->maps.arenas, &k, sizeof(k), &one, sizeof(one), BPF_ANY);
			base = 1;
		}
	}
	fclose(f);
}

static void read_cmdline(pid_t pid, char *out, size_t len)
{
	char path[64];
	snprintf(path, sizeof(path), "/proc/%d/cmdline", (int)pid);
	FILE *f = fopen(path, "re");
	size_t n = f ? fread(out, 1, len - 1, f) : 0;
	if (f)
		fclose(f);
	out[n] = '\0';
	for (size_t i = 0; i + 1 < n; i++)
		if (!out[i])
			out[i] = ' ';
}

int mt_ebpf_start(const struct mt_ebpf_opts *opts, struct mt_objlist *objs, struct mt_ebpf **out,
		  char *err, size_t errlen)
{
	struct mt_ebpf *e = calloc(1, sizeof(*e));
	struct mt_site_info si[MTB_MAX_IDS];
	int found[MTB_MAX_IDS] = {0};
	struct mt_site_info within_si;
	int ret = 0;

	if (!e)
		return -ENOMEM;
	*out = NULL;
	e->root = opts->pid;
	e->follow = opts->follow;
	e->start_real_ns = now_ns(CLOCK_REALTIME);
	e->start_mono_ns = now_ns(CLOCK_MONOTONIC);
	if (opts->command)
		snprintf(e->root_command, sizeof(e->root_command), "%s", opts->command);
	else
		read_cmdline(opts->pid, e->root_command, sizeof(e->root_command));
	snprintf(e->root_exe, sizeof(e->root_exe), "%s", objs->n ? objs->v[0].name : "");
	libbpf_set_print(libbpf_quiet);
	/* Kernels before 5.11 charge BPF maps to RLIMIT_MEMLOCK. */
	struct rlimit rl = {RLIM_INFINITY, RLIM_INFINITY};
	setrlimit(RLIMIT_MEMLOCK, &rl);

	/* 1. Where each function lives. */
	int any_alloc = 0;
	for (uint32_t id = 0; id < MTB_NFIXED; id++) {
		snprintf(e->names[id], MT_NAME_MAX, "%s", fixed[id].name);
		e->kinds[id] = fixed[id].kind;
		found[id] = mt_objlist_find(objs, fixed[id].sym, 0, args_read(id), &si[id]) == 0;
		any_alloc |= found[id] && id == MTB_MALLOC;
	}
	/* Aliases (glibc's memalign is aligned_alloc): one probe, one entry
	 * named after both, since a uprobe cannot tell them apart. */
	for (uint32_t id = 0; id < MTB_NFIXED; id++)
		for (uint32_t k = id + 1; found[id] && k < MTB_NFIXED; k++)
			if (found[k] && si[k].obj == si[id].obj && si[k].file_off == si[id].file_off) {
				found[k] = 0;
				snprintf(e->names[id], MT_NAME_MAX, "%s|%s", fixed[id].name, fixed[k].name);
			}
	if (!any_alloc) {
		snprintf(err, errlen, "no malloc found in %s or its libraries",
			 objs->n ? objs->v[0].name : "the process");
		ret = -ENOENT;
		goto fail;
	}
	for (unsigned u = 0; u < opts->nuser; u++) {
		uint32_t id = MTB_ID_USER + u;
		unsigned args = (opts->user[u].size_arg ? 1u << (opts->user[u].size_arg - 1) : 0) |
				(opts->user[u].pool_arg ? 1u << (opts->user[u].pool_arg - 1) : 0);
		if (mt_objlist_find(objs, opts->user[u].name, 1, args, &si[id])) {
			char near[1024];
			mt_objlist_near(objs, opts->user[u].name, near, sizeof(near));
			snprintf(err, errlen, "function %s not found in %s or its libraries%s%s%s", opts->user[u].name,
				 objs->n ? objs->v[0].name : "the process", near[0] ? " (near: " : "", near,
				 near[0] ? ")" : "");
			ret = -ENOENT;
			goto fail;
		}
		found[id] = 1;
		snprintf(e->names[id], MT_NAME_MAX, "%s", opts->user[u].name);
		e->kinds[id] = MT_KIND_OTHER;
	}
	if (opts->within) {
		if (mt_objlist_find(objs, opts->within, 1, 0, &within_si)) {
			char near[1024];
			mt_objlist_near(objs, opts->within, near, sizeof(near));
			snprintf(err, errlen, "--within %s: function not found in %s or its libraries%s%s%s",
				 opts->within, objs->n ? objs->v[0].name : "the process", near[0] ? " (near: " : "",
				 near, near[0] ? ")" : "");
			ret = -ENOENT;
			goto fail;
		}
		snprintf(e->names[MTB_WITHIN_BYTES], MT_NAME_MAX, "within %.100s: bytes per call", opts->within);
		snprintf(e->names[MTB_WITHIN_ALLOCS], MT_NAME_MAX, "within %.100s: allocations per call",
			 opts->within);
		e->kinds[MTB_WITHIN_BYTES] = e->kinds[MTB_WITHIN_ALLOCS] = MT_KIND_OTHER;
	}
	for (size_t h = 0; h < sizeof(heap_names) / sizeof(heap_names[0]); h++) {
		snprintf(e->names[heap_names[h].id], MT_NAME_MAX, "%s", heap_names[h].name);
		e->kinds[heap_names[h].id] = heap_names[h].kind;
	}

	/* 2. Settings, then load. */
	e->skel = memtap_bpf__open();
	if (!e->skel) {
		ret = -errno;
		snprintf(err, errlen, "cannot open the BPF object: %s", strerror(-ret));
		goto fail;
	}
	struct mtb_cfg *cfg = (struct mtb_cfg *)e->skel->rodata->cfg;
	int glibc_malloc = found[MTB_MALLOC] && si[MTB_MALLOC].is_glibc;
	for (uint32_t id = 0; id < MTB_NFIXED; id++) {
		if (!found[id])
			continue;
		cfg[id].size = fixed[id].size;
		cfg[id].flags = fixed[id].flags;
		/* The free size comes from glibc's chunk header: only when the
		 * block came from glibc's malloc. */
		if (fixed[id].size == MTB_SZ_CHUNK0 && !glibc_malloc)
			cfg[id].size = MTB_SZ_NONE;
		if (fixed[id].ret == RET_ALWAYS || (fixed[id].ret == RET_OPT && opts->failures))
			cfg[id].flags |= fixed[id].fail;
		/* Nesting hints: any allocation function may be a nested call;
		 * glibc's own functions and libstdc++'s operators announce
		 * theirs. */
		if (id < MTB_MMAP)
			cfg[id].flags |= MTB_F_HINTS;
		if ((id < MTB_NEW && si[id].is_glibc) || (id >= MTB_NEW && id < MTB_MMAP && si[id].is_libstdcxx))
			cfg[id].flags |= MTB_F_PRODUCE;
		if (id < MTB_NEW && si[id].is_glibc)
			cfg[id].flags |= MTB_F_DIRECT;
		cfg[id].probe_off = si[id].probe_off;
		set_arg_regs(&cfg[id], &si[id]);
		cfg[id].text_below = si[id].text_below;
		cfg[id].text_above = si[id].text_above;
	}
	for (unsigned u = 0; u < opts->nuser; u++) {
		uint32_t id = MTB_ID_USER + u;
		cfg[id].size = opts->user[u].size_arg ? MTB_SZ_ARG0 + opts->user[u].size_arg - 1 : MTB_SZ_NONE;
		cfg[id].pool = opts->user[u].pool_arg;
		cfg[id].probe_off = si[id].probe_off;
		set_arg_regs(&cfg[id], &si[id]);
	}
	e->skel->rodata->follow = opts->follow ? 1 : 0;
	e->skel->rodata->within_on = opts->within != NULL;
	e->skel->rodata->stacks_on = opts->stacks ? 1 : 0;
	e->skel->rodata->heap_on = opts->heap_events ? 1 : 0;
	e->stacks = opts->stacks;
	e->heap_events = opts->heap_events;
	e->glibc = opts->glibc;
	if (!opts->stacks) {
		/* the maps must exist for the verifier, not their memory */
		bpf_map__set_max_entries(e->skel->maps.stack_traces, 1);
		bpf_map__set_max_entries(e->skel->maps.sites, 1);
	}
	if (!opts->heap_events) {
		bpf_program__set_autoload(e->skel->progs.mt_sys_enter, false);
		bpf_program__set_autoload(e->skel->progs.mt_sys_exit, false);
	}
	if (!opts->within) {
		bpf_program__set_autoload(e->skel->progs.mt_within_enter, false);
		bpf_program__set_autoload(e->skel->progs.mt_within_exit, false);
	}
	ret = memtap_bpf__load(e->skel);
	if (ret) {
		snprintf(err, errlen, "cannot load the BPF programs: %s (MEMTAP_BPF_DEBUG=1 shows the "
			 "verifier's log)", strerror(-ret));
		goto fail;
	}

	/* 3. The root process joins the traced set before any probe fires. */
	struct mtb_proc root = {.ppid = 0, .start_ns = 0};
	char comm_path[64], comm[64] = "";
	snprintf(comm_path, sizeof(comm_path), "/proc/%d/comm", (int)opts->pid);
	FILE *cf = fopen(comm_path, "re");
	if (cf && fgets(comm, sizeof(comm), cf))
		comm[strcspn(comm, "\n")] = '\0';
	if (cf)
		fclose(cf);
	snprintf(root.comm, sizeof(root.comm), "%s", comm);
	char stat_path[64], line[512];
	snprintf(stat_path, sizeof(stat_path), "/proc/%d/stat", (int)opts->pid);
	FILE *sf = fopen(stat_path, "re");
	if (sf && fgets(line, sizeof(line), sf)) {
		char *rp = strrchr(line, ')');
		unsigned pp;
		if (rp && sscanf(rp + 2, "%*c %u", &pp) == 1)
			root.ppid = pp;
	}
	if (sf)
		fclose(sf);
	uint32_t key = (uint32_t)opts->pid;
	if (bpf_map__update_elem(e->skel->maps.procs, &key, sizeof(key), &root, sizeof(root), BPF_ANY)) {
		ret = -errno;
		snprintf(err, errlen, "cannot add process %d to the traced set: %s", (int)opts->pid, strerror(-ret));
		goto fail;
	}

	if (opts->heap_events)
		seed_arenas(e, opts->pid);

	/* 4. Attach: the scheduler tracepoints first, so that a child forked
	 * while the uprobes go in is not missed. */
	struct bpf_program *tps[] = {e->skel->progs.mt_fork, e->skel->progs.mt_exec, e->skel->progs.mt_exit,
				     opts->heap_events ? e->skel->progs.mt_sys_enter : NULL,
				     opts->heap_events ? e->skel->progs.mt_sys_exit : NULL};
	for (size_t i = 0; i < sizeof(tps) / sizeof(tps[0]); i++) {
		if (!tps[i])
			continue;
		struct bpf_link *l = bpf_program__attach(tps[i]);
		if (!l) {
			ret = -errno;
			snprintf(err, errlen, "cannot attach %s: %s", bpf_program__name(tps[i]), strerror(-ret));
			goto fail;
		}
		if ((ret = add_link(e, l)))
			goto fail;
	}
	/* A hot function whose probe is single-stepped costs every call a
	 * second trap: say so before attaching. */
	for (uint32_t id = 0; id < MTB_NFIXED; id++) {
		if (!found[id] || !is_hot(id) || si[id].probe_off || !strstr(si[id].why, "single-stepped") ||
		    getenv("MEMTAP_BPF_OFFSET0"))
			continue;
		fprintf(stderr, "memtap: warning: %s in %s is probed on an instruction the kernel single-steps "
			"(%s): each call costs a second trap, %s instead of %s (docs/BENCHMARKS.md); to trace "
			"this allocator cheaply use --via=inject\n",
			fixed[id].sym, si[id].obj->name, si[id].why, MT_EBPF_STEP_COST, MT_EBPF_EMULATED_COST);
	}
	/* The uprobes: tracefs events of this session, then perf events on
	 * the traced processes only (uprobes.h). */
	if ((ret = mt_uprobes_new(&e->up, opts->follow, err, errlen)))
		goto fail;
	for (uint32_t id = 0; id < MTB_ID_USER + opts->nuser; id++) {
		if (!found[id])
			continue;
		const char *sym = id < MTB_NFIXED ? fixed[id].sym : opts->user[id - MTB_ID_USER].name;
		if ((ret = add_uprobe(e, e->skel->progs.mt_entry, 0, &si[id], id, err, errlen)))
			goto fail;
		if (id < MTB_NFIXED && cfg[id].flags & (MTB_F_FAIL_NULL | MTB_F_FAIL_NZ | MTB_F_FAIL_NEG1) &&
		    (ret = add_uprobe(e, e->skel->progs.mt_return, 1, &si[id], id, err, errlen)))
			goto fail;
		place(e, sym, &si[id]);
	}
	if (opts->within) {
		if ((ret = add_uprobe(e, e->skel->progs.mt_within_enter, 0, &within_si, 0, err, errlen)) ||
		    (ret = add_uprobe(e, e->skel->progs.mt_within_exit, 1, &within_si, 0, err, errlen)))
			goto fail;
		place(e, opts->within, &within_si);
	}
	if ((ret = cover_all(e, err, errlen)))
		goto fail;
	if (opts->verbose)
		for (size_t i = 0; i < e->nplaced; i++)
			fprintf(stderr, "memtap: probe %-36s %s %s (file offset 0x%" PRIx64 ")\n", e->placed[i].sym,
				e->placed[i].obj, e->placed[i].why, e->placed[i].file_off);
	*out = e;
	return 0;
fail:
	mt_ebpf_free(e);
	return ret ? ret : -EINVAL;
}

void mt_ebpf_describe(const struct mt_ebpf *e, char *out, size_t outlen)
{
	/* "malloc and 14 more from /lib/.../libc.so.6; apr_palloc from ..." */
	out[0] = '\0';
	for (size_t i = 0; i < e->nplaced; i++) {
		int first = 1, has_malloc = 0;
		size_t n = 0;
		for (size_t k = 0; k < i; k++)
			first &= strcmp(e->placed[k].obj, e->placed[i].obj) != 0;
		if (!first)
			continue;
		for (size_t k = i; k < e->nplaced; k++)
			if (!strcmp(e->placed[k].obj, e->placed[i].obj)) {
				n++;
				has_malloc |= !strcmp(e->placed[k].sym, "malloc");
			}
		const char *lead = has_malloc ? "malloc" : e->placed[i].sym;
		if (n > 1)
			snprintf(out + strlen(out), outlen - strlen(out), "%s%s and %zu more from %s", out[0] ? "; " : "",
				 lead, n - 1, e->placed[i].obj);
		else
			snprintf(out + strlen(out), outlen - strlen(out), "%s%s from %s", out[0] ? "; " : "", lead,
				 e->placed[i].obj);
	}
}

int mt_ebpf_exited(struct mt_ebpf *e, pid_t pid)
{
	uint32_t key = (uint32_t)pid;
	struct mtb_proc p;
	if (bpf_map__lookup_elem(e->skel->maps.procs, &key, sizeof(key), &p, sizeof(p), 0))
		return 1;
	return p.exited != 0;
}

static int profile_of(struct mt_ebpf *e, uint32_t tgid, const struct mtb_proc *pr, struct mt_profile **out)
{
	struct mt_profile *p = mt_profile_new();
	int ncpu = libbpf_num_possible_cpus();
	struct mtb_stat *vals = NULL;
	if (!p || ncpu <= 0 || !(vals = calloc((size_t)ncpu, sizeof(*vals)))) {
		mt_profile_free(p);
		free(vals);
		return -ENOMEM;
	}
	p->pid = tgid;
	p->ppid = pr->ppid;
	p->uid = 0;
	/* the process exited, or it runs on after the end of the session
	 * (-d elapsed, Ctrl-C, or `run`'s command exited before it) */
	p->reason = pr->exited ? MT_REASON_EXIT : MT_REASON_DETACH;
	if (pr->exited) {
		/* The kernel's exit code, as wait(2) reports it. */
		int st = (int)pr->exit_code;
		p->end = (st & 0x7f) ? MT_END_SIGNAL : MT_END_EXIT;
		p->end_code = (st & 0x7f) ? (st & 0x7f) : (st >> 8) & 0xff;
	}
	p->flags = MT_PROFILE_ACTIVE | (e->follow ? MT_PROFILE_FOLLOW : 0) |
		   (e->heap_events ? MT_PROFILE_HEAP_EVENTS : 0);
	p->start_ns = pr->start_ns ? e->start_real_ns + (pr->start_ns - e->start_mono_ns) : e->start_real_ns;
	p->dump_ns = now_ns(CLOCK_REALTIME);
	p->sample_period = 1;
	if (tgid == (uint32_t)e->root) {
		snprintf(p->command, sizeof(p->command), "%s", e->root_command[0] ? e->root_command : pr->comm);
		snprintf(p->exe, sizeof(p->exe), "%s", e->root_exe);
	} else {
		snprintf(p->command, sizeof(p->command), "%.16s", pr->comm);
	}
	/* Functions in a stable order: by id. */
	for (uint32_t id = 0; id < MTB_MAX_IDS; id++) {
		struct mtb_key k = {tgid, id};
		if (bpf_map__lookup_elem(e->skel->maps.stats, &k, sizeof(k), vals, sizeof(*vals) * (size_t)ncpu, 0))
			continue;
		struct mt_func *f = mt_profile_func(p, e->names[id][0] ? e->names[id] : "?", e->kinds[id]);
		if (!f) {
			free(vals);
			mt_profile_free(p);
			return -ENOMEM;
		}
		uint64_t unread = 0, nopool = 0, nopool_bytes = 0, nosite = 0;
		for (int c = 0; c < ncpu; c++) {
			nosite += vals[c].nosite;
			nopool += vals[c].nopool;
			nopool_bytes += vals[c].nopool_bytes;
			f->calls += vals[c].calls;
			f->bytes += vals[c].bytes;
			f->failed += vals[c].failed;
			unread += vals[c].unread;
			for (int b = 0; b < MTB_HIST && b < MT_HIST_BUCKETS; b++)
				f->hist[b] += vals[c].hist[b];
		}
		struct mt_pool *other = nopool ? mt_profile_add_pool(p, (uint32_t)(f - p->funcs), MT_POOL_OTHER) : NULL;
		if (other) {
			other->calls = nopool;
			other->bytes = nopool_bytes;
			other->by = id >= MTB_HEAP_BRK_GROW && id <= MTB_HEAP_LAST ? MT_POOL_BY_THREAD : MT_POOL_BY_ARG;
			fprintf(stderr, "memtap: process %u: %" PRIu64 " %s call(s) in pools (threads, for heap "
				"events) beyond the table's %d entries (it was full) are counted as \"other\"\n", tgid, nopool, f->name,
				MTB_MAX_POOLS);
		}
		if (nosite)
			fprintf(stderr, "memtap: process %u: %" PRIu64 " %s call(s) have no call site: the site "
				"table (%d entries) was full\n", tgid, nosite, f->name, MTB_MAX_SITES);
		if (unread)
			fprintf(stderr,
				"memtap: process %u: %" PRIu64 " %s call(s) counted without a size: the block's header "
				"was on a page that was not resident when the probe fired (a probe cannot fault it in)\n",
				tgid, unread, f->name);
	}
	free(vals);
	if (e->glibc)
		mt_glibc_outside_fill((pid_t)tgid, pr->exited, p);
	*out = p;
	return 0;
}

/* The profile of process TGID among V (NV of them), or NULL. */
static struct mt_profile *profile_find(struct mt_profile **v, size_t nv, uint32_t tgid)
{
	for (size_t i = 0; i < nv; i++)
		if (v[i]->pid == tgid)
			return v[i];
	return NULL;
}

/* -f FUNC:pool=argM: one pass over the pools map, each entry to its
 * process's profile (V, NV) under its function's name.  0 or -ENOMEM. */
static int collect_pools(struct mt_ebpf *e, struct mt_profile **v, size_t nv)
{
	struct mtb_pool_key key, next, *prev = NULL;
	struct mtb_pool_val val;
	while (!bpf_map__get_next_key(e->skel->maps.pools, prev, &next, sizeof(next))) {
		key = next;
		prev = &key;
		if (bpf_map__lookup_elem(e->skel->maps.pools, &key, sizeof(key), &val, sizeof(val), 0) ||
		    key.id >= MTB_MAX_IDS)
			continue;
		struct mt_profile *p = profile_find(v, nv, key.tgid);
		if (!p)
			continue;
		struct mt_func *f = mt_profile_func(p, e->names[key.id], e->kinds[key.id]);
		struct mt_pool *pl = f ? mt_profile_add_pool(p, (uint32_t)(f - p->funcs), key.pool) : NULL;
		if (!pl)
			return -ENOMEM;
		pl->calls = val.calls;
		pl->bytes = val.bytes;
		pl->by = key.id >= MTB_HEAP_BRK_GROW && key.id <= MTB_HEAP_LAST ? MT_POOL_BY_THREAD : MT_POOL_BY_ARG;
	}
	return 0;
}

/* The file-backed mappings of TGID (/proc/TGID/maps), what symbolization
 * needs (anonymous ones and [vdso] hold nothing to look up), and in X every
 * executable range, where a return address can be.  NULL when the process
 * is gone.  Build-ids are left unknown: the symbolizer then trusts the
 * path. */
static struct mt_mapping *read_maps(uint32_t tgid, uint32_t *n, struct range **x, uint32_t *nx)
{
	char path[64], line[PATH_MAX + 128];
	struct mt_mapping *v = NULL;
	uint32_t cap = 0, capx = 0;
	*n = *nx = 0;
	*x = NULL;
	snprintf(path, sizeof(path), "/proc/%u/maps", tgid);
	FILE *f = fopen(path, "re");
	if (!f)
		return NULL;
	while (fgets(line, sizeof(line), f)) {
		struct mt_mapping m;
		unsigned long long lo, hi;
		char perms[8];
		if (sscanf(line, "%llx-%llx %7s", &lo, &hi, perms) == 3 && perms[2] == 'x') {
			if (*nx == capx) {
				struct range *nr = realloc(*x, (capx = capx ? 2 * capx : 32) * sizeof(**x));
				if (!nr)
					break;
				*x = nr;
			}
			(*x)[(*nx)++] = (struct range){lo, hi};
		}
		if (!mt_mapping_parse(line, &m))
			continue;
		if (*n == cap) {
			struct mt_mapping *nv = realloc(v, (cap = cap ? 2 * cap : 64) * sizeof(*v));
			if (!nv)
				break;
			v = nv;
		}
		v[(*n)++] = m;
	}
	fclose(f);
	return v;
}

/* Whether TGID still runs memtap's own image: `run`'s child between fork
 * and exec, whose mappings are memtap's, not the program's. */
static int is_self_image(uint32_t tgid)
{
	char a[PATH_MAX], b[PATH_MAX], path[64];
	snprintf(path, sizeof(path), "/proc/%u/exe", tgid);
	ssize_t na = readlink(path, a, sizeof(a) - 1), nb = readlink("/proc/self/exe", b, sizeof(b) - 1);
	return na > 0 && na == nb && !memcmp(a, b, (size_t)na);
}

static void keep_maps(struct mt_ebpf *e, uint32_t tgid)
{
	uint32_t n, nx;
	struct range *x;
	if (is_self_image(tgid))
		return;
	struct mt_mapping *m = read_maps(tgid, &n, &x, &nx);
	if (!m || !n) {
		free(m);
		free(x);
		return;
	}
	size_t i = 0;
	while (i < e->npm && e->pm[i].tgid != tgid)
		i++;
	if (i == e->npm) {
		struct proc_maps *nv = realloc(e->pm, (e->npm + 1) * sizeof(*nv));
		if (!nv) {
			free(m);
			free(x);
			return;
		}
		e->pm = nv;
		e->pm[e->npm++] = (struct proc_maps){.tgid = tgid};
	}
	free(e->pm[i].v);
	free(e->pm[i].x);
	e->pm[i].v = m;
	e->pm[i].n = n;
	e->pm[i].x = x;
	e->pm[i].nx = nx;
}

void mt_ebpf_poll_maps(struct mt_ebpf *e)
{
	uint32_t key, next, *prev = NULL;
	if (!e->stacks)
		return;
	while (!bpf_map__get_next_key(e->skel->maps.procs, prev, &next, sizeof(next))) {
		struct mtb_proc pr;
		key = next;
		prev = &key;
		if (!bpf_map__lookup_elem(e->skel->maps.procs, &key, sizeof(key), &pr, sizeof(pr), 0) && !pr.exited)
			keep_maps(e, key);
	}
}

static const struct proc_maps *maps_of(const struct mt_ebpf *e, uint32_t tgid)
{
	for (size_t k = 0; k < e->npm; k++)
		if (e->pm[k].tgid == tgid)
			return &e->pm[k];
	return NULL;
}

static int executable(const struct proc_maps *pm, uint64_t a)
{
	for (uint32_t i = 0; i < pm->nx; i++)
		if (a >= pm->x[i].lo && a < pm->x[i].hi)
			return 1;
	return 0;
}

/* A site of P with function FN and these frames, or NULL. */
static struct mt_site *same_site(struct mt_profile *p, uint32_t fn, const uint64_t *frames, uint32_t n)
{
	for (uint32_t i = 0; i < p->nsites; i++)
		if (p->sites[i].fn == fn && p->sites[i].nframes == n &&
		    !memcmp(p->sites[i].frames, frames, n * sizeof(*frames)))
			return &p->sites[i];
	return NULL;
}

/* --stacks: one pass over the sites map into the profiles' sites (every
 * call recorded: raw counts are the counts), then each profile gets the
 * last mappings seen of its process.  The kernel's frame-pointer walk goes
 * on through whatever %rbp points at above a caller built without frame
 * pointers, so a stack is cut at its first frame outside the process's
 * executable mappings (a value that is no return address: ASCII text, a
 * small number; a process that exited before its mappings were read is
 * checked against the user address range only), and memtap says how many
 * were cut.  0 or -ENOMEM. */
static int collect_sites(struct mt_ebpf *e, struct mt_profile **v, size_t nv)
{
	struct mtb_site_key key, next, *prev = NULL;
	struct mtb_pool_val val;
	uint64_t stack[MTB_STACK_DEPTH], frames[MT_STACK_MAX];
	uint64_t *cut = calloc(nv ? nv : 1, sizeof(*cut)), *all = calloc(nv ? nv : 1, sizeof(*all));
	int ret = -ENOMEM;
	if (!cut || !all)
		goto out;
	mt_ebpf_poll_maps(e); /* the processes still there: their mappings now */
	while (!bpf_map__get_next_key(e->skel->maps.sites, prev, &next, sizeof(next))) {
		key = next;
		prev = &key;
		if (bpf_map__lookup_elem(e->skel->maps.sites, &key, sizeof(key), &val, sizeof(val), 0) ||
		    key.id >= MTB_MAX_IDS)
			continue;
		struct mt_profile *p = profile_find(v, nv, key.tgid);
		if (!p)
			continue;
		size_t pi = 0;
		while (v[pi] != p)
			pi++;
		const struct proc_maps *pm = maps_of(e, key.tgid);
		uint32_t n = 0;
		int was_cut = 0;
		frames[n++] = key.ret; /* read from the top of the stack at the probe */
		if (key.stackid >= 0 && !bpf_map__lookup_elem(e->skel->maps.stack_traces, &key.stackid,
							     sizeof(key.stackid), stack, sizeof(stack), 0))
			for (uint32_t k = 0; k < MTB_STACK_DEPTH && stack[k] && n < MT_STACK_MAX; k++) {
				/* not a user-space address at all, or (when the
				 * process's mappings were seen) not in its code */
				if (stack[k] < 4096 || stack[k] >= 0x800000000000ull ||
				    (pm && pm->nx && !executable(pm, stack[k]))) {
					was_cut = 1;
					break;
				}
				frames[n++] = stack[k];
			}
		all[pi]++;
		cut[pi] += was_cut;
		struct mt_func *f = mt_profile_func(p, e->names[key.id], e->kinds[key.id]);
		uint32_t fn = f ? (uint32_t)(f - p->funcs) : 0;
		/* a cut stack may now equal another one */
		struct mt_site *s = !f ? NULL : was_cut ? same_site(p, fn, frames, n) : NULL;
		if (f && !s && (s = mt_profile_add_site(p, frames, n)))
			s->fn = fn;
		if (!s)
			goto out;
		s->alloc_objects += val.calls;
		s->alloc_bytes += val.bytes;
	}
	for (size_t i = 0; i < nv; i++) {
		v[i]->flags |= MT_PROFILE_FP_STACKS;
		if (cut[i])
			fprintf(stderr, "memtap: process %u: %" PRIu64 " of %" PRIu64 " call stacks were cut at a frame "
				"outside its executable mappings (not a return address: the frame-pointer walk went "
				"on above code built without frame pointers)\n", v[i]->pid, cut[i], all[i]);
		const struct proc_maps *pm = maps_of(e, v[i]->pid);
		for (uint32_t m = 0; pm && m < pm->n; m++) {
			struct mt_mapping *d = mt_profile_add_mapping(v[i]);
			if (!d)
				goto out;
			*d = pm->v[m];
		}
	}
	ret = 0;
out:
	free(cut);
	free(all);
	return ret;
}

size_t mt_ebpf_procs(struct mt_ebpf *e, struct mt_ebpf_proc *out, size_t max)
{
	uint32_t key, next, *prev = NULL;
	size_t n = 0;
	while (n < max && !bpf_map__get_next_key(e->skel->maps.procs, prev, &next, sizeof(next))) {
		struct mtb_proc pr;
		key = next;
		prev = &key;
		if (bpf_map__lookup_elem(e->skel->maps.procs, &key, sizeof(key), &pr, sizeof(pr), 0))
			continue;
		out[n].pid = (int)key;
		out[n].ppid = (int)pr.ppid;
		out[n].exited = pr.exited != 0;
		out[n].exit_code = (int)pr.exit_code;
		snprintf(out[n].comm, sizeof(out[n].comm), "%.*s", MTB_COMM, pr.comm);
		n++;
	}
	return n;
}

int mt_ebpf_snapshot(struct mt_ebpf *e, int pid, struct mt_profile **out)
{
	uint32_t key = (uint32_t)pid;
	struct mtb_proc pr;
	*out = NULL;
	if (bpf_map__lookup_elem(e->skel->maps.procs, &key, sizeof(key), &pr, sizeof(pr), 0))
		return -ESRCH;
	struct mt_profile *p;
	if (profile_of(e, key, &pr, &p))
		return -ENOMEM;
	if (collect_pools(e, &p, 1) || (e->stacks && collect_sites(e, &p, 1))) {
		mt_profile_free(p);
		return -ENOMEM;
	}
	*out = p;
	return 0;
}


void mt_ebpf_free(struct mt_ebpf *e)
{
	if (!e)
		return;
	mt_uprobes_free(e->up);
	for (size_t i = 0; i < e->nlinks; i++)
		bpf_link__destroy(e->links[i]);
	free(e->links);
	memtap_bpf__destroy(e->skel);
	free(e->placed);
	for (size_t i = 0; i < e->npm; i++) {
		free(e->pm[i].v);
		free(e->pm[i].x);
	}
	free(e->pm);
	free(e);
}
