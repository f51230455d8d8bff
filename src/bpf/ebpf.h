/*
 * The eBPF backend as the CLI sees it: find where a process's allocation
 * functions really live, attach memtap.bpf.c's probes there, and turn the
 * kernel's aggregates into profiles (struct mt_profile), one per traced
 * process.  No code is loaded into the target.
 *
 *   struct mt_ebpf *e;
 *   mt_ebpf_check(err, len);                   root/CAP_BPF, BTF
 *   mt_objlist_of_pid(pid, &objs, ...);        or mt_objlist_of_exe() for `run`
 *   mt_ebpf_start(&opts, &objs, &e, ...);      load, attach, start counting
 *   ... wait ...
 *   mt_ebpf_procs(e, v, max);                  the traced processes
 *   mt_ebpf_snapshot(e, pid, &profile);        one process's profile now
 *   (src/cli/session.c does both, for every member, as the session goes)
 *   mt_ebpf_free(e);
 *
 * Objects are searched in the dynamic linker's lookup order (the executable,
 * then the libraries in load order), so the first object that defines a
 * function is the one the process calls: libc, or an allocator that replaces
 * it (jemalloc, tcmalloc, mimalloc), or the executable itself.
 */
#ifndef MEMTAP_EBPF_H
#define MEMTAP_EBPF_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "memtap/profile.h"

#define MT_EBPF_MAX_USER 16

struct mt_elf; /* one object's symbols and executable segment (objects.c) */

struct mt_obj {
	char path[4096]; /* where memtap opens it (under /proc/PID/root for attach) */
	char name[4096]; /* as the process names it */
	struct mt_elf *elf;
};

struct mt_objlist {
	struct mt_obj *v;
	size_t n;
};

/* Where one function is, and where its probe goes. */
struct mt_site_info {
	const struct mt_obj *obj;
	uint64_t addr;      /* st_value */
	uint64_t size;      /* st_size (0: unknown) */
	uint64_t file_off;  /* of the function's first byte */
	uint32_t probe_off; /* probe at file_off + probe_off */
	uint8_t arg_reg[6]; /* where argument k is at the probe (x86 register number:
			       0 rax .. 7 rdi, 8-15 r8-r15; rdi, rsi, rdx, rcx, r8, r9
			       at the entry) */
	char why[160];      /* why that offset */
	uint64_t text_below, text_above; /* executable segment around the probe */
	int is_glibc;       /* the object is glibc's libc.so */
	int is_libstdcxx;   /* the object is libstdc++ */
};

/* The objects of a running process in lookup order: from the dynamic
 * linker's link_map list (r_debug), or for a static program its executable.
 * 0 or -errno with a message in ERR. */
int mt_objlist_of_pid(pid_t pid, struct mt_objlist *out, char *err, size_t errlen);
/* The objects EXE will load, from `ld.so --list EXE` (a #! script: its
 * interpreter's).  0 or -errno with a message in ERR. */
int mt_objlist_of_exe(const char *exe, struct mt_objlist *out, char *err, size_t errlen);
void mt_objlist_free(struct mt_objlist *l);
/* The first object defining SYM as a function (dynamic symbols; a static
 * executable's, and with STATIC_TOO every object's, .symtab as well), and
 * where its probe goes: ARGS (bit k: argument k) are the arguments the
 * probe reads, which must still be in some register there.  memtap's own
 * agent (libmemtap.so, left loaded by an earlier attach --via=inject) is
 * never a provider.  0, or -ENOENT. */
int mt_objlist_find(struct mt_objlist *l, const char *sym, int static_too, unsigned args,
		    struct mt_site_info *out);
/* Up to MAX function names close to SYM (edit distance, substring), comma
 * separated, into OUT. */
void mt_objlist_near(struct mt_objlist *l, const char *sym, char *out, size_t outlen);

struct mt_ebpf_fn {
	char name[MT_NAME_MAX]; /* symbol */
	unsigned size_arg;      /* 1..6, 0 = none */
	unsigned pool_arg;      /* 1..6, 0 = none: calls and bytes per value of that argument */
};

struct mt_ebpf_opts {
	pid_t pid;            /* the process to trace (root of the traced set) */
	int follow;           /* children join at fork (they inherit the probes) */
	int failures;         /* return probes on the hot allocation functions too */
	int heap_events;
	int glibc;            /* --glibc: glibc's state read from outside into every profile */
	int stacks;           /* call sites: frame-pointer user stacks of every allocation */
	const char *within;   /* --within FUNC, or NULL */
	struct mt_ebpf_fn user[MT_EBPF_MAX_USER]; /* -f */
	unsigned nuser;
	int verbose;          /* print where each probe goes */
	const char *command;  /* the root's command line (NULL: read /proc) */
};

struct mt_ebpf;

/* 0 when this machine can run the backend; else -EPERM (not root, no
 * CAP_BPF) or -ENOENT (no BTF) with what to do in ERR. */
int mt_ebpf_check(char *err, size_t errlen);
/* Loads and attaches.  Prints one line per attached function to stderr when
 * opts->verbose.  0 or -errno with a message in ERR. */
int mt_ebpf_start(const struct mt_ebpf_opts *opts, struct mt_objlist *objs, struct mt_ebpf **out,
		  char *err, size_t errlen);
/* A summary of where the probes went (one line per object), for the user. */
void mt_ebpf_describe(const struct mt_ebpf *e, char *out, size_t outlen);
/* With stacks: reads the mappings of every traced process that is still
 * there, kept for symbolizing its call sites after it has gone.  Call it
 * while waiting (every 20-100 ms): a process that starts and exits between
 * two calls has no mappings and its frames stay addresses. */
void mt_ebpf_poll_maps(struct mt_ebpf *e);
/* The processes the BPF side traces (at most MAX): their pid, parent,
 * name, and whether and how they exited. */
struct mt_ebpf_proc {
	int pid, ppid;
	int exited;
	int exit_code; /* as wait(2) reports it, once exited */
	char comm[17];
};
size_t mt_ebpf_procs(struct mt_ebpf *e, struct mt_ebpf_proc *out, size_t max);
/* One process's profile now (its counters so far, pools, sites).  0,
 * -ESRCH (not traced) or -ENOMEM. */
int mt_ebpf_snapshot(struct mt_ebpf *e, int pid, struct mt_profile **out);
/* Whether the process has exited, as the BPF side saw it. */
int mt_ebpf_exited(struct mt_ebpf *e, pid_t pid);
void mt_ebpf_free(struct mt_ebpf *e);

#endif
