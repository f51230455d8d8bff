/*
 * The ptrace injector: makes a running process call a function of its own —
 * normally dlopen(), to load memtap's agent — and resumes it exactly where it
 * was, without gdb.  docs/INJECT.md explains how it works, what it changes in
 * the target and its limits.
 *
 * One load, the common case:
 *
 *	uint64_t handle;
 *	char err[512];
 *	if (mt_inject_load(pid, "/usr/local/lib/memtap/libmemtap.so", &handle, err, sizeof(err)))
 *		return mt_error("%s", err);
 *
 * Several calls during one stop (what attach and detach need: load the agent,
 * then call one of its functions with a string argument):
 *
 *	struct mt_inject *in;
 *	uint64_t fn, arg, ret;
 *	err = mt_inject_attach(pid, NULL, &in, msg, len);        // stops every thread
 *	err = mt_inject_dlopen(in, agent_path, 0, &handle, msg, len);
 *	err = mt_inject_resolve(in, agent_path, "memtap_agent_start", &fn, msg, len);
 *	err = mt_inject_push(in, opts, strlen(opts) + 1, &arg, msg, len);
 *	err = mt_inject_call(in, fn, &arg, 1, &ret, msg, len);
 *	err = mt_inject_detach(in, msg, len);                     // restores, resumes
 *
 * Every function returns 0 or -errno, with a message in ERR (ERRLEN bytes)
 * saying what failed and what to do.  Refusals (mt_inject_check) leave the
 * target untouched.  Between attach and detach the target is stopped: keep it
 * short.  The calling thread must do every step of a session itself (ptrace
 * binds a tracee to the thread that attached it) and has SIGINT, SIGTERM,
 * SIGHUP and SIGQUIT blocked until detach, so that Ctrl-C cannot leave the
 * target in the middle of a call, and SIGCHLD, which signals tracee stops (a
 * SIGCHLD from one of the caller's children is raised again at detach).
 */
#ifndef MEMTAP_INJECT_H
#define MEMTAP_INJECT_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* The longest one call may take before the injector gives up on it. */
#define MT_INJECT_TIMEOUT_MS 5000
/* How long the other threads stay stopped while a call runs; after that they
 * run again (a lock one of them holds may be what the call waits for). */
#define MT_INJECT_GRACE_MS 500
/* dlopen() flags used when the caller passes 0: see docs/INJECT.md. */
#define MT_INJECT_DLOPEN_FLAGS 0x2 /* RTLD_NOW | RTLD_LOCAL */

struct mt_inject_opts {
	pid_t tid;      /* the thread to run calls on; 0: chosen (docs/INJECT.md) */
	int timeout_ms; /* per call; 0: MT_INJECT_TIMEOUT_MS */
	int grace_ms;   /* 0: MT_INJECT_GRACE_MS; -1: never let the others run */
};

/* What a session found and did, for diagnostics and tests. */
struct mt_inject_info {
	pid_t tid;          /* the thread the calls run on */
	long syscall;       /* the system call it was stopped in; -1: it was running user code */
	int nthreads;       /* threads stopped */
	size_t xstate_size; /* bytes of XSAVE state (NT_X86_XSTATE) the kernel reported */
	int released;       /* the other threads were let run during a call (it outlasted grace_ms) */
	double stop_ms;     /* time to seize and stop every thread */
	double call_ms;     /* time spent in calls so far */
};

struct mt_inject; /* a stopped target */

/* Whether PID can be injected into, touching nothing: 0, or -ESRCH (gone,
 * zombie), -EPERM (permissions, kernel thread), -EBUSY (already traced),
 * -EAGAIN (stopped by job control), -ENOEXEC (32-bit, statically linked, no
 * dlopen), -EINVAL (a thread id, not a process id), -ESTALE (its libc was
 * replaced on disk and memtap is not root), -EOPNOTSUPP (it ignores SIGSEGV). */
int mt_inject_check(pid_t pid, char *err, size_t errlen);

/* Checks an ELF file: 64-bit x86-64, and of type WANT_TYPE (ET_DYN for a
 * library, 0 for any).  *DYNAMIC (if not NULL) is set to whether it names a
 * dynamic loader (PT_INTERP).  0, -ENOEXEC, or -errno if it cannot be read.
 * WHAT names the file in messages ("pid 42's executable", a path...). */
int mt_inject_elf_check(const char *path, const char *what, int want_type, int *dynamic,
			char *err, size_t errlen);

/* Seizes and stops every thread of PID (after mt_inject_check), chooses the
 * thread the calls will run on and saves its state.  OPTS may be NULL. */
int mt_inject_attach(pid_t pid, const struct mt_inject_opts *opts, struct mt_inject **out,
		     char *err, size_t errlen);

/* The address in the target of SYMBOL, a function in the .dynsym of the
 * library LIB mapped by the target: LIB is an absolute path, a file name
 * prefix ("libc.so.6", "libmemtap") or NULL for the C library.  Read from
 * the file the target maps (checked by inode) and its load address in
 * /proc/PID/maps; no call is made. */
int mt_inject_resolve(struct mt_inject *in, const char *lib, const char *symbol, uint64_t *addr,
		      char *err, size_t errlen);

/* Copies LEN bytes into the target (on the chosen thread's stack, below the
 * part it uses) and sets *ADDR to their address; valid until detach.  At most
 * 16 KiB per session. */
int mt_inject_push(struct mt_inject *in, const void *data, size_t len, uint64_t *addr, char *err,
		   size_t errlen);

/* Calls FN(ARGS[0], ..., ARGS[NARGS-1]) on the chosen thread (integer or
 * pointer arguments, NARGS <= 6) and sets *RET (if not NULL) to its rax.
 * -ETIMEDOUT when the call outlasts the timeout: the call is abandoned
 * (docs/INJECT.md: what that leaves behind); -EFAULT when it crashed. */
int mt_inject_call(struct mt_inject *in, uint64_t fn, const uint64_t *args, int nargs,
		   uint64_t *ret, char *err, size_t errlen);

/* dlopen(PATH, FLAGS) in the target (FLAGS 0: MT_INJECT_DLOPEN_FLAGS), *HANDLE
 * set to the handle; when dlopen fails, ERR holds the target's dlerror().
 * PATH must be absolute. */
int mt_inject_dlopen(struct mt_inject *in, const char *path, int flags, uint64_t *handle,
		     char *err, size_t errlen);

/* What the session found so far. */
const struct mt_inject_info *mt_inject_info(const struct mt_inject *in);

/* Where every stopped thread was stopped: its instruction pointer (the
 * chosen thread's as it was before any call), into PCS (at most MAX).  The
 * count, or -EAGAIN when a thread's place is unknown (its registers could
 * not be read).  For code patching: memtap attach -f (docs/SAFETY.md). */
int mt_inject_thread_pcs(const struct mt_inject *in, uint64_t *pcs, size_t max);

/* Writes the saved state back, resumes every thread and frees IN (NULL is
 * fine).  Returns the first error met while restoring (the target is then
 * resumed as well as possible). */
int mt_inject_detach(struct mt_inject *in, char *err, size_t errlen);

/* attach + dlopen + detach.  INFO may be NULL. */
int mt_inject_load(pid_t pid, const char *lib_path, uint64_t *handle, char *err, size_t errlen);
int mt_inject_load_opts(pid_t pid, const char *lib_path, const struct mt_inject_opts *opts,
			uint64_t *handle, struct mt_inject_info *info, char *err, size_t errlen);

/* attach + resolve + call + detach: e.g. the agent's detach function. */
int mt_inject_call_symbol(pid_t pid, const char *lib, const char *symbol, const uint64_t *args,
			  int nargs, uint64_t *ret, char *err, size_t errlen);

#endif
