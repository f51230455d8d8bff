/*
 * The ptrace injector (include/memtap/inject.h, docs/INJECT.md).
 *
 * A session: every thread of the target is seized and stopped; one thread is
 * chosen and everything a call could change in it is saved (the general
 * registers, the whole XSAVE area at the size the kernel reports, the signal
 * mask, errno, the rseq critical-section pointer).  Each call runs on that
 * thread with a zero return address, so that the function returns into a
 * SIGSEGV the tracer sees before the thread does.  At the end the saved state
 * is written back, the SIGSEGV suppressed and every thread detached: the
 * kernel then finishes the interrupted system call (restart or EINTR) exactly
 * as it would have had the thread only been stopped.
 */
#include <dirent.h>
#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <gelf.h>
#include <libelf.h>
#include <limits.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ptrace.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/user.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "memtap/inject.h"
#include "memtap/proc.h"

/* The kernel's internal "restart me" codes, seen in rax when a thread is
 * stopped on its way out of an interrupted system call. */
#define K_ERESTARTSYS 512
#define K_ERESTARTNOINTR 513
#define K_ERESTARTNOHAND 514
#define K_ERESTART_RESTARTBLOCK 516

#define RED_ZONE 128
#define PUSH_MAX 16384
#define STACK_MIN (16 * 1024)  /* below this the thread is never used */
#define STACK_WANT (64 * 1024) /* below this the thread is a last resort */
#define CAP_SYS_PTRACE_BIT 19
#define PF_KTHREAD_FLAG 0x00200000u
#define MAX_DEFER 8

enum { T_SEIZED, T_STOPPED, T_GONE, T_DETACHED };

struct inj_thread {
	pid_t tid;
	int state;
	int group_stop; /* stopped by job control, not by us */
	int sig;        /* to deliver at detach: its stop was a signal-delivery-stop */
	siginfo_t si;
	struct user_regs_struct regs;
};

struct inj_map {
	uint64_t start, end, off, ino;
	char perms[8];
	int deleted;
	char *path;
};

struct inj_maps {
	struct inj_map *v;
	size_t n;
};

struct mt_inject {
	pid_t pid;
	pid_t want_tid;
	int timeout_ms, grace_ms;
	struct mt_inject_info info;
	struct inj_thread *th;
	size_t nth, cap;
	struct inj_thread *t; /* the chosen thread */
	int memfd;
	struct inj_maps maps;
	sigset_t caller_mask;
	/* the chosen thread's saved state */
	int saved;
	struct user_regs_struct regs0;
	uint8_t *xs0, *xs_call;
	size_t xs_len;
	uint64_t mask0;
	uint64_t rseq_cs_addr, rseq_cs0;
	uint64_t errno_addr;
	int32_t errno0;
	int have_errno;
	/* what the calls changed */
	int prepared;    /* the call xstate and signal mask are in the thread */
	int signal_stop; /* the thread is in a signal-delivery-stop (else an event stop) */
	int touched;     /* its registers were changed: detach must restore them */
	int broken;      /* it could not be stopped again: nothing more can be done */
	uint64_t scratch, push_floor;
	siginfo_t defer[MAX_DEFER];
	int ndefer;
	const char *label; /* the call in progress, for messages */
	int foreign_chld;  /* SIGCHLDs of the caller's children taken by wait_tid */
};

static int fail(char *err, size_t errlen, int code, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
static int fail(char *err, size_t errlen, int code, const char *fmt, ...)
{
	if (err && errlen) {
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(err, errlen, fmt, ap);
		va_end(ap);
	}
	return code;
}

static int64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* ------------------------------------------------------------------ /proc */

struct proc_status {
	char name[64];
	char state;
	pid_t tgid, ppid, tracer;
	unsigned uid[4], gid[4];
	int threads;
	unsigned long long sigign, capeff;
};

static int read_status(const char *path, struct proc_status *st)
{
	memset(st, 0, sizeof(*st));
	FILE *f = fopen(path, "re");
	if (!f)
		return errno == ENOENT ? -ESRCH : -errno;
	char line[512];
	while (fgets(line, sizeof(line), f)) {
		if (!strncmp(line, "Name:\t", 6)) {
			snprintf(st->name, sizeof(st->name), "%s", line + 6);
			st->name[strcspn(st->name, "\n")] = '\0';
		}
		sscanf(line, "State:\t%c", &st->state);
		sscanf(line, "Tgid:\t%d", &st->tgid);
		sscanf(line, "PPid:\t%d", &st->ppid);
		sscanf(line, "TracerPid:\t%d", &st->tracer);
		sscanf(line, "Uid:\t%u\t%u\t%u\t%u", &st->uid[0], &st->uid[1], &st->uid[2], &st->uid[3]);
		sscanf(line, "Gid:\t%u\t%u\t%u\t%u", &st->gid[0], &st->gid[1], &st->gid[2], &st->gid[3]);
		sscanf(line, "Threads:\t%d", &st->threads);
		sscanf(line, "SigIgn:\t%llx", &st->sigign);
		sscanf(line, "CapEff:\t%llx", &st->capeff);
	}
	fclose(f);
	return 0;
}

/* A task's state letter and flags from /proc/PID/task/TID/stat; 0 if gone. */
static char task_state(pid_t pid, pid_t tid, unsigned *flags)
{
	char buf[1024];
	const char *f, *fl;
	if (mt_proc_stat(pid, tid, buf, sizeof(buf), &f))
		return 0;
	if (flags)
		*flags = (fl = mt_stat_field(f, 9)) ? (unsigned)strtoul(fl, NULL, 10) : 0;
	return f[0];
}

static void comm_of(pid_t pid, char *out, size_t len)
{
	char path[64];
	snprintf(path, sizeof(path), "/proc/%d/comm", pid);
	snprintf(out, len, "?");
	FILE *f = fopen(path, "re");
	if (!f)
		return;
	if (fgets(out, (int)len, f))
		out[strcspn(out, "\n")] = '\0';
	fclose(f);
}

/* Where /proc shows PID's memory and files: /proc/PID, or, when the main
 * thread has called pthread_exit (a zombie while the others run, with no
 * memory or files of its own), /proc/PID/task/TID of a live thread. */
static const char *proc_dir(pid_t pid, char *buf, size_t len)
{
	snprintf(buf, len, "/proc/%d", pid);
	char s = task_state(pid, pid, NULL);
	if (s != 'Z' && s != 'X')
		return buf;
	char path[64];
	snprintf(path, sizeof(path), "/proc/%d/task", pid);
	DIR *d = opendir(path);
	struct dirent *de;
	while (d && (de = readdir(d))) {
		pid_t tid = (pid_t)atoi(de->d_name);
		s = tid > 0 ? task_state(pid, tid, NULL) : 0;
		if (s && s != 'Z' && s != 'X') {
			snprintf(buf, len, "/proc/%d/task/%d", pid, tid);
			break;
		}
	}
	if (d)
		closedir(d);
	return buf;
}

static int read_int_file(const char *path, int dflt)
{
	FILE *f = fopen(path, "re");
	int v = dflt;
	if (!f)
		return dflt;
	if (fscanf(f, "%d", &v) != 1)
		v = dflt;
	fclose(f);
	return v;
}

static int have_cap_ptrace(void)
{
	struct proc_status me;
	if (read_status("/proc/self/status", &me))
		return geteuid() == 0;
	return (int)((me.capeff >> CAP_SYS_PTRACE_BIT) & 1);
}

static void maps_free(struct inj_maps *m)
{
	for (size_t i = 0; i < m->n; i++)
		free(m->v[i].path);
	free(m->v);
	m->v = NULL;
	m->n = 0;
}

static int maps_read(pid_t pid, struct inj_maps *m, char *err, size_t errlen)
{
	char path[128], dir[64], line[PATH_MAX + 128];
	snprintf(path, sizeof(path), "%s/maps", proc_dir(pid, dir, sizeof(dir)));
	FILE *f = fopen(path, "re");
	if (!f)
		return fail(err, errlen, errno == ENOENT ? -ESRCH : -errno, "cannot read %s: %s", path,
			    strerror(errno));
	size_t cap = 0;
	int ret = 0;
	m->n = 0;
	m->v = NULL;
	while (fgets(line, sizeof(line), f)) {
		struct inj_map e = {0};
		unsigned long long start, end, off, ino;
		int n = 0;
		if (sscanf(line, "%llx-%llx %7s %llx %*x:%*x %llu %n", &start, &end, e.perms, &off, &ino,
			   &n) < 5)
			continue;
		char *p = line + n;
		p[strcspn(p, "\n")] = '\0';
		size_t pl = strlen(p);
		if (pl > 10 && !strcmp(p + pl - 10, " (deleted)")) {
			p[pl - 10] = '\0';
			e.deleted = 1;
		}
		e.start = start;
		e.end = end;
		e.off = off;
		e.ino = ino;
		e.path = strdup(p);
		if (m->n == cap) {
			cap = cap ? cap * 2 : 256;
			struct inj_map *v = realloc(m->v, cap * sizeof(*v));
			if (!v) {
				free(e.path);
				ret = -ENOMEM;
				break;
			}
			m->v = v;
		}
		if (!e.path) {
			ret = -ENOMEM;
			break;
		}
		m->v[m->n++] = e;
	}
	fclose(f);
	if (ret)
		maps_free(m);
	if (ret)
		return fail(err, errlen, ret, "out of memory reading %s", path);
	return 0;
}

static const struct inj_map *map_at(const struct inj_maps *m, uint64_t addr)
{
	for (size_t i = 0; i < m->n; i++)
		if (addr >= m->v[i].start && addr < m->v[i].end)
			return &m->v[i];
	return NULL;
}

static const char *base_name(const char *path)
{
	const char *s = strrchr(path, '/');
	return s ? s + 1 : path;
}

/* ------------------------------------------------------------- symbols */

static int lib_matches(const struct inj_map *m, const char *lib, uint64_t ino)
{
	if (m->path[0] != '/')
		return 0;
	const char *b = base_name(m->path);
	if (!lib)
		return !strncmp(b, "libc.so.", 8) || (!strncmp(b, "libc-", 5) && strstr(b, ".so"));
	if (lib[0] == '/')
		return (ino && m->ino == ino) || !strcmp(m->path, lib);
	return !strncmp(b, lib, strlen(lib));
}

/* Opens the file behind mapping M as the target sees it, making sure it is
 * the very file mapped (same inode): calling into a library that was
 * replaced on disk after the target loaded it would jump to random code. */
static int open_mapped(pid_t pid, const struct inj_map *m, char *err, size_t errlen)
{
	char p[PATH_MAX + 64], dir[64];
	struct stat s;
	int fd = -1;
	proc_dir(pid, dir, sizeof(dir));
	if (!m->deleted) {
		snprintf(p, sizeof(p), "%s/root%s", dir, m->path);
		fd = open(p, O_RDONLY | O_CLOEXEC);
		if (fd >= 0 && fstat(fd, &s) == 0 && (uint64_t)s.st_ino == m->ino)
			return fd;
		if (fd >= 0)
			close(fd);
	}
	snprintf(p, sizeof(p), "%s/map_files/%llx-%llx", dir, (unsigned long long)m->start,
		 (unsigned long long)m->end);
	fd = open(p, O_RDONLY | O_CLOEXEC);
	if (fd >= 0)
		return fd;
	return fail(err, errlen, -ESTALE,
		    "%s, mapped by pid %d, was deleted or replaced on disk after the process loaded it "
		    "(a package upgrade?), and reading the mapped copy through /proc/%d/map_files needs "
		    "root; memtap will not guess its symbols: run memtap as root, or restart the process",
		    m->path, pid, pid);
}

/* The address of SYMBOL (a function in .dynsym) in the target, in the library
 * LIB as mt_inject_resolve describes it. */
static int resolve_in(pid_t pid, const struct inj_maps *maps, const char *lib, const char *symbol,
		      uint64_t *addr, char *err, size_t errlen)
{
	uint64_t ino = 0;
	if (lib && lib[0] == '/') {
		char p[PATH_MAX + 64], dir[64];
		struct stat s;
		snprintf(p, sizeof(p), "%s/root%s", proc_dir(pid, dir, sizeof(dir)), lib);
		if (stat(p, &s) == 0)
			ino = s.st_ino;
	}
	const struct inj_map *low = NULL;
	for (size_t i = 0; i < maps->n && !low; i++)
		if (lib_matches(&maps->v[i], lib, ino))
			low = &maps->v[i];
	if (!low)
		return fail(err, errlen, -ENOENT, "%s is not loaded in pid %d",
			    lib ? lib : "the C library (libc.so.6)", pid);
	const char *path = low->path;
	for (size_t i = 0; i < maps->n; i++)
		if (!strcmp(maps->v[i].path, path) && maps->v[i].ino == low->ino &&
		    maps->v[i].off < low->off)
			low = &maps->v[i];

	int fd = open_mapped(pid, low, err, errlen);
	if (fd < 0)
		return fd;
	int ret = 0;
	elf_version(EV_CURRENT);
	Elf *e = elf_begin(fd, ELF_C_READ_MMAP, NULL);
	GElf_Ehdr eh;
	if (!e || !gelf_getehdr(e, &eh)) {
		ret = fail(err, errlen, -ENOEXEC, "%s (mapped by pid %d) is not a readable ELF file: %s",
			   path, pid, elf_errmsg(-1));
		goto out;
	}
	/* The load bias: where the segment holding the lowest mapped offset
	 * landed, minus where the file says it goes. */
	size_t phn = 0;
	elf_getphdrnum(e, &phn);
	uint64_t pg = (uint64_t)sysconf(_SC_PAGESIZE), bias = 0;
	int have_bias = 0;
	for (size_t i = 0; i < phn && !have_bias; i++) {
		GElf_Phdr ph;
		if (gelf_getphdr(e, (int)i, &ph) && ph.p_type == PT_LOAD &&
		    (ph.p_offset & ~(pg - 1)) == low->off) {
			bias = low->start - (ph.p_vaddr & ~(pg - 1));
			have_bias = 1;
		}
	}
	if (!have_bias) {
		ret = fail(err, errlen, -ENOEXEC,
			   "cannot tell where %s is loaded in pid %d: no segment of the file matches "
			   "its mapping at offset %#llx",
			   path, pid, (unsigned long long)low->off);
		goto out;
	}
	Elf_Scn *scn = NULL, *dynsym = NULL, *versym = NULL;
	GElf_Shdr dsh = {0};
	while ((scn = elf_nextscn(e, scn))) {
		GElf_Shdr sh;
		if (!gelf_getshdr(scn, &sh))
			continue;
		if (sh.sh_type == SHT_DYNSYM) {
			dynsym = scn;
			dsh = sh;
		} else if (sh.sh_type == SHT_GNU_versym) {
			versym = scn;
		}
	}
	Elf_Data *d = dynsym ? elf_getdata(dynsym, NULL) : NULL;
	Elf_Data *vd = versym ? elf_getdata(versym, NULL) : NULL;
	size_t n = d && dsh.sh_entsize ? dsh.sh_size / dsh.sh_entsize : 0;
	int found = 0, hidden = 0, ifunc = 0;
	uint64_t value = 0;
	for (size_t i = 1; i < n; i++) {
		GElf_Sym s;
		if (!gelf_getsym(d, (int)i, &s) || s.st_shndx == SHN_UNDEF)
			continue;
		const char *name = elf_strptr(e, dsh.sh_link, s.st_name);
		if (!name || strcmp(name, symbol))
			continue;
		int type = GELF_ST_TYPE(s.st_info);
		if (type == STT_GNU_IFUNC) {
			ifunc = 1;
			continue;
		}
		if (type != STT_FUNC)
			continue;
		GElf_Versym v = 0;
		if (vd)
			gelf_getversym(vd, (int)i, &v);
		/* Prefer the default version (name@@VER) over compat ones. */
		if (!found || (hidden && !(v & 0x8000))) {
			value = s.st_value;
			hidden = (v & 0x8000) != 0;
			found = 1;
		}
	}
	if (!found) {
		if (ifunc)
			ret = fail(err, errlen, -ENOTSUP,
				   "%s's %s is an IFUNC (the real function is chosen at load time); "
				   "memtap cannot call it directly",
				   path, symbol);
		else
			ret = fail(err, errlen, -ENOENT, "%s (in pid %d) does not export a function named %s",
				   path, pid, symbol);
		goto out;
	}
	*addr = bias + value;
	/* The address must be code of that very file, or the file and the
	 * mapping disagree and the call would go anywhere. */
	int ok = 0;
	for (size_t i = 0; i < maps->n && !ok; i++) {
		const struct inj_map *m = &maps->v[i];
		ok = !strcmp(m->path, path) && m->ino == low->ino && m->perms[2] == 'x' &&
		     *addr >= m->start && *addr < m->end;
	}
	if (!ok)
		ret = fail(err, errlen, -EFAULT,
			   "%s in %s resolves to %#llx, which is not code of that file in pid %d (the file "
			   "on disk and the mapping disagree); not calling it",
			   symbol, path, (unsigned long long)*addr, pid);
out:
	if (e)
		elf_end(e);
	close(fd);
	return ret;
}

/* dlopen lives in libc.so.6 since glibc 2.34, in libdl.so.2 before. */
static int find_dlopen(pid_t pid, const struct inj_maps *maps, const char **lib, uint64_t *addr,
		       char *err, size_t errlen)
{
	static const char *const libs[] = {NULL, "libdl.so"};
	int ret = -ENOENT;
	for (size_t i = 0; i < sizeof(libs) / sizeof(libs[0]); i++) {
		char e2[512];
		ret = resolve_in(pid, maps, libs[i], "dlopen", addr, e2, sizeof(e2));
		if (ret == 0) {
			*lib = libs[i];
			return 0;
		}
		if (ret == -ESTALE) /* a real problem, not an absence */
			return fail(err, errlen, ret, "%s", e2);
	}
	return ret;
}

/* --------------------------------------------------------------- checks */

int mt_inject_elf_check(const char *path, const char *what, int want_type, int *dynamic,
			char *err, size_t errlen)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return fail(err, errlen, -errno, "cannot read %s: %s", what, strerror(errno));
	unsigned char ident[EI_NIDENT] = {0};
	int ret = 0;
	Elf *e = NULL;
	if (read(fd, ident, sizeof(ident)) != (ssize_t)sizeof(ident) ||
	    memcmp(ident, ELFMAG, SELFMAG)) {
		ret = fail(err, errlen, -ENOEXEC, "%s is not an ELF file", what);
		goto out;
	}
	if (ident[EI_CLASS] == ELFCLASS32) {
		ret = fail(err, errlen, -ENOEXEC,
			   "%s is 32-bit (ELFCLASS32); memtap injects into 64-bit x86-64 processes only",
			   what);
		goto out;
	}
	if (ident[EI_CLASS] != ELFCLASS64) {
		ret = fail(err, errlen, -ENOEXEC, "%s has an unknown ELF class %u", what, ident[EI_CLASS]);
		goto out;
	}
	elf_version(EV_CURRENT);
	e = elf_begin(fd, ELF_C_READ_MMAP, NULL);
	GElf_Ehdr eh;
	if (!e || !gelf_getehdr(e, &eh)) {
		ret = fail(err, errlen, -ENOEXEC, "%s is not a readable ELF file: %s", what,
			   elf_errmsg(-1));
		goto out;
	}
	if (eh.e_machine != EM_X86_64) {
		ret = fail(err, errlen, -ENOEXEC,
			   "%s is built for another architecture (ELF machine %u); memtap injects into "
			   "x86-64 processes only",
			   what, (unsigned)eh.e_machine);
		goto out;
	}
	if (want_type && eh.e_type != want_type) {
		ret = fail(err, errlen, -ENOEXEC,
			   "%s is not a shared library (ELF type %u); build it with -shared -fPIC", what,
			   (unsigned)eh.e_type);
		goto out;
	}
	if (dynamic) {
		size_t n = 0;
		*dynamic = 0;
		elf_getphdrnum(e, &n);
		for (size_t i = 0; i < n; i++) {
			GElf_Phdr ph;
			if (gelf_getphdr(e, (int)i, &ph) && ph.p_type == PT_INTERP)
				*dynamic = 1;
		}
	}
out:
	if (e)
		elf_end(e);
	close(fd);
	return ret;
}

/* Why PTRACE_SEIZE said EPERM, as precisely as /proc lets us tell. */
static int explain_eperm(pid_t pid, const char *name, char *err, size_t errlen)
{
	char path[64], tname[64];
	struct proc_status st;
	snprintf(path, sizeof(path), "/proc/%d/status", pid);
	if (read_status(path, &st) == 0 && st.tracer && st.tracer != getpid()) {
		comm_of(st.tracer, tname, sizeof(tname));
		return fail(err, errlen, -EBUSY,
			    "pid %d (%s) is already traced by pid %d (%s), a debugger, strace or another "
			    "injector; a process can have one tracer only: detach or stop that one and retry",
			    pid, name, st.tracer, tname);
	}
	int cap = have_cap_ptrace();
	int yama = read_int_file("/proc/sys/kernel/yama/ptrace_scope", -1);
	if (!cap && yama == 1)
		return fail(err, errlen, -EPERM,
			    "permission denied: kernel.yama.ptrace_scope is 1, so only a process's "
			    "ancestors (or root) may attach to it; run memtap as root, or allow it with "
			    "sysctl kernel.yama.ptrace_scope=0");
	struct stat s;
	snprintf(path, sizeof(path), "/proc/%d", pid);
	if (!cap && stat(path, &s) == 0 && s.st_uid != getuid())
		return fail(err, errlen, -EPERM,
			    "permission denied: pid %d (%s) is not dumpable (a set-user-ID program, or one "
			    "that called prctl(PR_SET_DUMPABLE, 0)); only root may attach to it: run "
			    "memtap as root",
			    pid, name);
	return fail(err, errlen, -EPERM,
		    "permission denied: the kernel refused to let memtap attach to pid %d (%s) "
		    "(ptrace: EPERM), although the user ids match; a security module (AppArmor, "
		    "SELinux) or a container policy may forbid ptrace: run memtap as root, outside the "
		    "container, or check the audit log",
		    pid, name);
}

static int check_perm(pid_t pid, const struct proc_status *st, char *err, size_t errlen)
{
	int yama = read_int_file("/proc/sys/kernel/yama/ptrace_scope", -1);
	if (yama == 3)
		return fail(err, errlen, -EPERM,
			    "permission denied: kernel.yama.ptrace_scope is 3, so this kernel lets no "
			    "process attach to another until reboot; use memtap run to start the program "
			    "with the agent instead");
	if (have_cap_ptrace())
		return 0;
	unsigned uid = (unsigned)getuid(), gid = (unsigned)getgid();
	for (int i = 0; i < 3; i++)
		if (st->uid[i] != uid)
			return fail(err, errlen, -EPERM,
				    "permission denied: pid %d (%s) runs as uid %u and memtap as uid %u; "
				    "only the same user, or root (CAP_SYS_PTRACE), may inject into a "
				    "process: run memtap as %s%.0u%s",
				    pid, st->name, st->uid[i], uid, st->uid[i] ? "uid " : "root",
				    st->uid[i], st->uid[i] ? " or as root" : "");
	for (int i = 0; i < 3; i++)
		if (st->gid[i] != gid)
			return fail(err, errlen, -EPERM,
				    "permission denied: pid %d (%s) runs with gid %u and memtap with gid "
				    "%u (a set-group-ID program?); run memtap as root",
				    pid, st->name, st->gid[i], gid);
	if (yama == 2)
		return fail(err, errlen, -EPERM,
			    "permission denied: kernel.yama.ptrace_scope is 2, so only root "
			    "(CAP_SYS_PTRACE) may attach to a process; run memtap as root");
	return 0;
}

int mt_inject_check(pid_t pid, char *err, size_t errlen)
{
	char path[64];
	struct proc_status st;
	if (pid <= 0)
		return fail(err, errlen, -EINVAL, "invalid pid %d", (int)pid);
	snprintf(path, sizeof(path), "/proc/%d/status", pid);
	int r = read_status(path, &st);
	if (r == -ESRCH)
		return fail(err, errlen, -ESRCH, "no process with pid %d (it has exited, or the pid is "
				 "wrong)", pid);
	if (r)
		return fail(err, errlen, r, "cannot read %s: %s", path, strerror(-r));
	if (st.tgid != pid)
		return fail(err, errlen, -EINVAL,
			    "%d is a thread of process %d (%s), not a process: give the process id %d",
			    pid, st.tgid, st.name, st.tgid);
	unsigned flags = 0;
	task_state(pid, pid, &flags);
	if (flags & PF_KTHREAD_FLAG)
		return fail(err, errlen, -EPERM,
			    "pid %d (%s) is a kernel thread: there is no program in it to inject into",
			    pid, st.name);
	if ((st.state == 'Z' || st.state == 'X') && st.threads <= 1)
		return fail(err, errlen, -ESRCH,
			    "pid %d (%s) is a zombie: it has exited and waits for its parent (pid %d) to "
			    "collect its exit status; there is nothing left to inject into",
			    pid, st.name, st.ppid);
	if (st.tracer) {
		char tname[64];
		comm_of(st.tracer, tname, sizeof(tname));
		return fail(err, errlen, -EBUSY,
			    "pid %d (%s) is already traced by pid %d (%s), a debugger, strace or another "
			    "injector; a process can have one tracer only: detach or stop that one and retry",
			    pid, st.name, st.tracer, tname);
	}
	if (st.state == 'T' || st.state == 't')
		return fail(err, errlen, -EAGAIN,
			    "pid %d (%s) is stopped (job control: SIGSTOP or SIGTSTP); resume it with "
			    "kill -CONT %d and retry",
			    pid, st.name, pid);
	r = check_perm(pid, &st, err, errlen);
	if (r)
		return r;
	if (st.sigign & (1ULL << (SIGSEGV - 1)))
		return fail(err, errlen, -EOPNOTSUPP,
			    "pid %d (%s) ignores SIGSEGV; memtap regains control after a call through a "
			    "SIGSEGV, and the kernel would reset that disposition: not injecting",
			    pid, st.name);

	char what[128], exe[128], dir[64];
	int dynamic = 0;
	snprintf(exe, sizeof(exe), "%s/exe", proc_dir(pid, dir, sizeof(dir)));
	snprintf(what, sizeof(what), "pid %d (%s)", pid, st.name);
	r = mt_inject_elf_check(exe, what, 0, &dynamic, err, errlen);
	if (r == -EACCES || r == -EPERM)
		return fail(err, errlen, -EPERM,
			    "permission denied reading pid %d's program (/proc/%d/exe); run memtap as the "
			    "process's user or as root",
			    pid, pid);
	if (r == -ENOENT)
		return fail(err, errlen, -ESRCH, "pid %d (%s) has exited", pid, st.name);
	if (r)
		return r;

	struct inj_maps maps;
	r = maps_read(pid, &maps, err, errlen);
	if (r)
		return r;
	const char *lib;
	uint64_t addr;
	r = find_dlopen(pid, &maps, &lib, &addr, err, errlen);
	maps_free(&maps);
	if (r == -ESTALE)
		return r;
	if (r && !dynamic)
		return fail(err, errlen, -ENOEXEC,
			    "pid %d (%s) is statically linked: there is no dynamic loader in it to load "
			    "a library; memtap can only trace dynamically linked programs",
			    pid, st.name);
	if (r)
		return fail(err, errlen, -ENOEXEC,
			    "pid %d (%s) has no dlopen: neither libc.so.6 (glibc 2.34 and later) nor "
			    "libdl.so.2 exports it in that process; memtap needs glibc's dynamic loader "
			    "(with an older glibc, the program must be linked with -ldl)",
			    pid, st.name);
	return 0;
}

/* -------------------------------------------------------------- threads */

static struct inj_thread *find_thread(struct mt_inject *in, pid_t tid);

/* waitpid for one tracee, with a deadline: tracee stops raise SIGCHLD in the
 * tracer, which the session keeps blocked, so sigtimedwait sleeps until one
 * (or a slice of time: a caller's SA_NOCLDSTOP suppresses them) passes.  A
 * SIGCHLD from a child of the caller is counted and raised again at detach. */
static int wait_tid(struct mt_inject *in, pid_t tid, int *status, int64_t deadline)
{
	sigset_t chld;
	sigemptyset(&chld);
	sigaddset(&chld, SIGCHLD);
	for (;;) {
		pid_t r = waitpid(tid, status, __WALL | WNOHANG);
		if (r == tid)
			return 0;
		if (r < 0 && errno != EINTR)
			return -errno;
		int64_t left = deadline - now_ns();
		if (left <= 0)
			return -ETIMEDOUT;
		struct timespec ts = {0, left < 5000000 ? (long)left : 5000000};
		siginfo_t si;
		if (sigtimedwait(&chld, &si, &ts) == SIGCHLD && !find_thread(in, si.si_pid))
			in->foreign_chld++;
	}
}

static struct inj_thread *find_thread(struct mt_inject *in, pid_t tid)
{
	for (size_t i = 0; i < in->nth; i++)
		if (in->th[i].tid == tid)
			return &in->th[i];
	return NULL;
}

/* Collects the stop PTRACE_INTERRUPT asked for. */
static int wait_stopped(struct mt_inject *in, struct inj_thread *th, int64_t deadline, char *err,
			size_t errlen)
{
	for (;;) {
		int st;
		int r = wait_tid(in, th->tid, &st, deadline);
		if (r == -ECHILD) {
			th->state = T_GONE;
			return 0;
		}
		if (r == -ETIMEDOUT) {
			char s = task_state(in->pid, th->tid, NULL);
			if (!s || s == 'Z' || s == 'X') {
				th->state = T_GONE; /* exiting */
				return 0;
			}
			return fail(err, errlen, -ETIMEDOUT,
				    "thread %d of pid %d did not stop within %d ms (state %c%s); nothing "
				    "was changed: retry later",
				    th->tid, in->pid, in->timeout_ms, s,
				    s == 'D' ? ", uninterruptible sleep: disk or network file system I/O"
					     : "");
		}
		if (r)
			return fail(err, errlen, r, "waiting for thread %d of pid %d: %s", th->tid,
				    in->pid, strerror(-r));
		if (WIFEXITED(st) || WIFSIGNALED(st)) {
			th->state = T_GONE;
			return 0;
		}
		if (!WIFSTOPPED(st))
			continue;
		int sig = WSTOPSIG(st), ev = (unsigned)st >> 16;
		if (ev == PTRACE_EVENT_STOP) {
			th->state = T_STOPPED;
			th->group_stop = sig != SIGTRAP;
			return 0;
		}
		if (ev) { /* an event we did not ask for */
			ptrace(PTRACE_CONT, th->tid, 0, 0);
			continue;
		}
		/* A signal-delivery-stop also answers the interrupt: keep the
		 * signal and deliver it when detaching. */
		th->sig = sig;
		ptrace(PTRACE_GETSIGINFO, th->tid, 0, &th->si);
		th->state = T_STOPPED;
		return 0;
	}
}

static int seize_all(struct mt_inject *in, const char *name, char *err, size_t errlen)
{
	char path[64];
	int64_t deadline = now_ns() + (int64_t)in->timeout_ms * 1000000;
	snprintf(path, sizeof(path), "/proc/%d/task", in->pid);
	/* Threads may start while we stop the others: list again until a pass
	 * finds none (once every thread is stopped, none can start). */
	for (;;) {
		int added = 0;
		DIR *d = opendir(path);
		if (!d)
			return fail(err, errlen, -ESRCH, "pid %d has exited", in->pid);
		struct dirent *de;
		while ((de = readdir(d))) {
			pid_t tid = (pid_t)atoi(de->d_name);
			if (tid <= 0 || find_thread(in, tid))
				continue;
			/* A main thread that called pthread_exit stays as a zombie
			 * while the others run: it never stops. */
			char s = task_state(in->pid, tid, NULL);
			if (!s || s == 'Z' || s == 'X')
				continue;
			if (ptrace(PTRACE_SEIZE, tid, 0, 0) < 0) {
				int e = errno;
				if (e == ESRCH)
					continue;
				/* EPERM is also the answer for a thread that is exiting. */
				s = task_state(in->pid, tid, NULL);
				if (e == EPERM && tid != in->pid && (!s || s == 'Z' || s == 'X'))
					continue;
				closedir(d);
				if (e == EPERM)
					return explain_eperm(in->pid, name, err, errlen);
				return fail(err, errlen, -e, "cannot attach to thread %d of pid %d: %s",
					    tid, in->pid, strerror(e));
			}
			if (in->nth == in->cap) {
				size_t cap = in->cap ? in->cap * 2 : 16;
				struct inj_thread *v = realloc(in->th, cap * sizeof(*v));
				if (!v) {
					/* cannot track it: let it go at once */
					ptrace(PTRACE_INTERRUPT, tid, 0, 0);
					int st;
					if (wait_tid(in, tid, &st, deadline) == 0 && WIFSTOPPED(st))
						ptrace(PTRACE_DETACH, tid, 0, 0);
					closedir(d);
					return fail(err, errlen, -ENOMEM, "out of memory");
				}
				in->th = v;
				in->cap = cap;
			}
			struct inj_thread *th = &in->th[in->nth++];
			memset(th, 0, sizeof(*th));
			th->tid = tid;
			th->state = T_SEIZED;
			if (ptrace(PTRACE_INTERRUPT, tid, 0, 0) < 0)
				th->state = T_GONE;
			added++;
		}
		closedir(d);
		for (size_t i = 0; i < in->nth; i++) {
			if (in->th[i].state != T_SEIZED)
				continue;
			int r = wait_stopped(in, &in->th[i], deadline, err, errlen);
			if (r)
				return r;
		}
		if (!added)
			break;
	}
	int n = 0;
	for (size_t i = 0; i < in->nth; i++)
		n += in->th[i].state == T_STOPPED;
	in->info.nthreads = n;
	if (!n)
		return fail(err, errlen, -ESRCH, "pid %d has exited", in->pid);
	return 0;
}

static void detach_thread(struct mt_inject *in, struct inj_thread *th)
{
	if (th->state == T_SEIZED) { /* interrupted, stop not collected yet */
		int64_t deadline = now_ns() + 1000000000;
		if (wait_stopped(in, th, deadline, NULL, 0) || th->state != T_STOPPED)
			return; /* the kernel detaches it when we exit */
	}
	if (th->state != T_STOPPED)
		return;
	/* From a signal-delivery-stop, the signal is delivered now; from an
	 * interrupt or group stop, the thread carries on (a job-control stop
	 * goes on after detach). */
	if (ptrace(PTRACE_DETACH, th->tid, 0, (void *)(long)th->sig) < 0 && errno == ESRCH) {
		int st; /* it died meanwhile: collect it, we are its tracer */
		waitpid(th->tid, &st, __WALL | WNOHANG);
	}
	th->state = T_DETACHED;
}

/* Lets the other threads run: the call may be waiting for a lock one of
 * them holds. */
static void release_others(struct mt_inject *in)
{
	for (size_t i = 0; i < in->nth; i++)
		if (&in->th[i] != in->t)
			detach_thread(in, &in->th[i]);
	in->info.released = 1;
}

static int is_blocked_syscall(const struct user_regs_struct *r)
{
	long ax = (long)r->rax;
	return (long)r->orig_rax >= 0 &&
	       (ax == -K_ERESTARTSYS || ax == -K_ERESTARTNOINTR || ax == -K_ERESTARTNOHAND ||
		ax == -K_ERESTART_RESTARTBLOCK || ax == -EINTR);
}

/* How safe a thread is to run dlopen on: the risk is a lock the thread
 * itself holds (malloc's arena lock, the loader's lock) that the call needs.
 * A thread waiting in a system call is at a clean point; one waiting in
 * futex may be waiting for a lock while holding another; one running user
 * code may be anywhere, inside malloc included.  -1: unusable. */
static int thread_score(struct mt_inject *in, struct inj_thread *th)
{
	if (th->state != T_STOPPED || th->group_stop)
		return -1;
	const struct user_regs_struct *r = &th->regs;
	const struct inj_map *sm = map_at(&in->maps, r->rsp);
	if (!sm || sm->perms[1] != 'w')
		return -1;
	uint64_t room = r->rsp - sm->start;
	int grows = !strcmp(sm->path, "[stack]");
	if (!grows && room < STACK_MIN)
		return -1;
	int s;
	long nr = (long)r->orig_rax;
	if (is_blocked_syscall(r)) {
		s = nr == SYS_futex ? 20 : 30;
	} else if (nr >= 0) { /* on its way out of a system call */
		s = (nr == SYS_brk || nr == SYS_mmap || nr == SYS_munmap || nr == SYS_mremap ||
		     nr == SYS_madvise || nr == SYS_mprotect)
			    ? 5 /* malloc calls these with its lock held */
			    : 15;
	} else {
		const struct inj_map *cm = map_at(&in->maps, r->rip);
		const char *b = cm ? base_name(cm->path) : "";
		if (!strncmp(b, "ld-linux", 8) || !strncmp(b, "ld-", 3))
			s = 2; /* may hold the loader's lock */
		else if (!strncmp(b, "libc.so", 7) || !strncmp(b, "libc-", 5))
			s = 8; /* may be inside malloc */
		else
			s = 10;
	}
	if (!grows && room < STACK_WANT)
		s -= 20;
	if (s < 1)
		s = 1;
	s *= 2;
	if (th->sig)
		s -= 1;
	if (th->tid == in->pid)
		s += 1; /* ties go to the main thread */
	return s;
}

static int choose_thread(struct mt_inject *in, char *err, size_t errlen)
{
	int best = -1;
	for (size_t i = 0; i < in->nth; i++) {
		struct inj_thread *th = &in->th[i];
		if (th->state != T_STOPPED)
			continue;
		if (ptrace(PTRACE_GETREGS, th->tid, 0, &th->regs) < 0) {
			th->group_stop = 1; /* cannot be used */
			continue;
		}
		if (in->want_tid && th->tid != in->want_tid)
			continue;
		int s = thread_score(in, th);
		if (s > best) {
			best = s;
			in->t = th;
		}
	}
	if (in->t)
		return 0;
	if (in->want_tid) {
		struct inj_thread *th = find_thread(in, in->want_tid);
		if (!th || th->state != T_STOPPED)
			return fail(err, errlen, -ESRCH, "%d is not a running thread of pid %d",
				    in->want_tid, in->pid);
		return fail(err, errlen, -EINVAL,
			    "thread %d of pid %d cannot run the call: it is stopped by job control or "
			    "has less than %d KiB of stack below its stack pointer",
			    in->want_tid, in->pid, STACK_MIN / 1024);
	}
	int stopped = 0;
	for (size_t i = 0; i < in->nth; i++)
		stopped += in->th[i].state == T_STOPPED && in->th[i].group_stop;
	if (stopped)
		return fail(err, errlen, -EAGAIN,
			    "pid %d is being stopped by job control (SIGSTOP/SIGTSTP); resume it with "
			    "kill -CONT %d and retry",
			    in->pid, in->pid);
	return fail(err, errlen, -EINVAL,
		    "no thread of pid %d has %d KiB of stack to spare below its stack pointer; "
		    "memtap cannot run a call in it",
		    in->pid, STACK_MIN / 1024);
}

/* --------------------------------------------------------------- memory */

static int mem_rw(struct mt_inject *in, uint64_t addr, void *buf, size_t len, int write)
{
	size_t done = 0;
	while (done < len) {
		ssize_t n = write ? pwrite(in->memfd, (char *)buf + done, len - done,
					   (off_t)(addr + done))
				  : pread(in->memfd, (char *)buf + done, len - done, (off_t)(addr + done));
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return n < 0 ? -errno : -EIO;
		done += (size_t)n;
	}
	return 0;
}

/* ----------------------------------------------------------------- state */

static int save_state(struct mt_inject *in, char *err, size_t errlen)
{
	struct inj_thread *t = in->t;
	in->regs0 = t->regs;
	/* The XSAVE area: its size depends on the CPU (AVX-512 and AMX make it
	 * 11 KiB) and the kernel only accepts it back whole, so ask with a
	 * large buffer and keep the length the kernel answers. */
	size_t cap = 65536;
	for (;;) {
		uint8_t *buf = calloc(1, cap);
		if (!buf)
			return fail(err, errlen, -ENOMEM, "out of memory");
		struct iovec iov = {buf, cap};
		if (ptrace(PTRACE_GETREGSET, t->tid, (void *)NT_X86_XSTATE, &iov) < 0) {
			int e = errno;
			free(buf);
			return fail(err, errlen, -e,
				    "cannot read the extended register state (XSAVE) of thread %d of "
				    "pid %d: %s; memtap will not run a call it cannot undo",
				    t->tid, in->pid, strerror(e));
		}
		if (iov.iov_len < cap) {
			in->xs0 = buf;
			in->xs_len = iov.iov_len;
			break;
		}
		free(buf);
		cap *= 2;
	}
	in->info.xstate_size = in->xs_len;
	in->xs_call = malloc(in->xs_len);
	if (!in->xs_call)
		return fail(err, errlen, -ENOMEM, "out of memory");
	memcpy(in->xs_call, in->xs0, in->xs_len);
	if (in->xs_len >= 512) {
		/* The ABI wants the x87 register stack empty at a call: the
		 * interrupted code may have been using it (TOP in FSW bits
		 * 11-13, the abridged tag word at byte 4). */
		uint16_t fsw;
		memcpy(&fsw, in->xs_call + 2, 2);
		fsw &= (uint16_t)~0x3800;
		memcpy(in->xs_call + 2, &fsw, 2);
		in->xs_call[4] = 0;
	}
	if (ptrace(PTRACE_GETSIGMASK, t->tid, (void *)sizeof(in->mask0), &in->mask0) < 0)
		return fail(err, errlen, -errno, "cannot read the signal mask of thread %d of pid %d: %s",
			    t->tid, in->pid, strerror(errno));
	/* rseq: if the thread was stopped inside a restartable sequence, the
	 * kernel clears rseq_cs when the thread resumes at our call, and the
	 * sequence would not be aborted when it resumes where it was; put the
	 * pointer back at the end so that it is. */
	struct __ptrace_rseq_configuration rc;
	memset(&rc, 0, sizeof(rc));
	if (ptrace(PTRACE_GET_RSEQ_CONFIGURATION, t->tid, (void *)sizeof(rc), &rc) > 0 &&
	    rc.rseq_abi_pointer) {
		in->rseq_cs_addr = rc.rseq_abi_pointer + 8; /* struct rseq's rseq_cs */
		if (mem_rw(in, in->rseq_cs_addr, &in->rseq_cs0, 8, 0))
			in->rseq_cs0 = 0;
	}
	in->signal_stop = t->sig != 0;
	in->info.tid = t->tid;
	in->info.syscall = (long)in->regs0.orig_rax >= 0 ? (long)in->regs0.orig_rax : -1;
	/* Scratch space: below the red zone of the interrupted code. */
	in->scratch = (in->regs0.rsp - RED_ZONE) & ~15ULL;
	in->push_floor = in->scratch - PUSH_MAX;
	in->saved = 1;
	return 0;
}

/* --------------------------------------------------------------- calls */

static void defer_signal(struct mt_inject *in, const siginfo_t *si)
{
	struct inj_thread *t = in->t;
	if (!t->sig) {
		t->sig = si->si_signo;
		t->si = *si;
	} else if (in->ndefer < MAX_DEFER) {
		in->defer[in->ndefer++] = *si;
	}
}

/* The call outlasted the timeout: stop the thread wherever it is (most
 * likely waiting for a lock inside the call) so that it can be put back. */
static int abandon(struct mt_inject *in, char *err, size_t errlen)
{
	struct inj_thread *t = in->t;
	ptrace(PTRACE_INTERRUPT, t->tid, 0, 0);
	int64_t deadline = now_ns() + 2000000000LL;
	for (;;) {
		int st;
		int r = wait_tid(in, t->tid, &st, deadline);
		if (r) {
			in->broken = 1;
			return fail(err, errlen, -ETIMEDOUT,
				    "%s did not return within %d ms in thread %d of pid %d, and the thread "
				    "cannot be stopped again; it stays attached until memtap exits, and will "
				    "crash the process if the call ever returns: restart the process",
				    in->label, in->timeout_ms, t->tid, in->pid);
		}
		if (WIFEXITED(st) || WIFSIGNALED(st)) {
			t->state = T_GONE;
			return fail(err, errlen, -ESRCH, "pid %d exited during %s", in->pid, in->label);
		}
		if (!WIFSTOPPED(st))
			continue;
		int ev = (unsigned)st >> 16;
		if (ev) {
			in->signal_stop = 0;
			break;
		}
		siginfo_t si;
		ptrace(PTRACE_GETSIGINFO, t->tid, 0, &si);
		defer_signal(in, &si);
		in->signal_stop = 1;
		break;
	}
	return fail(err, errlen, -ETIMEDOUT,
		    "%s did not return within %d ms in thread %d of pid %d: it is most likely waiting "
		    "for a lock that thread held when it was stopped (inside malloc or the dynamic "
		    "loader); memtap abandoned the call and put the thread back where it was, but what "
		    "the call had done stays (a lock it took stays taken: the next dlopen in the process "
		    "may hang); restart the process when you can, or retry choosing another thread",
		    in->label, in->timeout_ms, t->tid, in->pid);
}

static const char *sig_name(int sig)
{
	switch (sig) {
	case SIGSEGV: return "SIGSEGV";
	case SIGBUS: return "SIGBUS";
	case SIGILL: return "SIGILL";
	case SIGFPE: return "SIGFPE";
	case SIGTRAP: return "SIGTRAP";
	case SIGSYS: return "SIGSYS";
	default: return "a signal";
	}
}

static int wait_call(struct mt_inject *in, uint64_t ret_sp, uint64_t *ret, char *err, size_t errlen)
{
	struct inj_thread *t = in->t;
	int64_t start = now_ns();
	int64_t deadline = start + (int64_t)in->timeout_ms * 1000000;
	int64_t grace = in->grace_ms < 0 ? deadline : start + (int64_t)in->grace_ms * 1000000;
	for (;;) {
		int64_t until = !in->info.released && grace < deadline ? grace : deadline;
		int st;
		int r = wait_tid(in, t->tid, &st, until);
		if (r == -ETIMEDOUT && until != deadline) {
			release_others(in);
			continue;
		}
		if (r == -ETIMEDOUT)
			return abandon(in, err, errlen);
		if (r) {
			t->state = T_GONE;
			return fail(err, errlen, r, "waiting for thread %d of pid %d: %s", t->tid, in->pid,
				    strerror(-r));
		}
		if (WIFEXITED(st) || WIFSIGNALED(st)) {
			t->state = T_GONE;
			if (WIFSIGNALED(st))
				return fail(err, errlen, -ESRCH, "pid %d was killed by signal %d during %s",
					    in->pid, WTERMSIG(st), in->label);
			return fail(err, errlen, -ESRCH,
				    "pid %d exited (status %d) during %s: the library's constructor "
				    "may have called exit()",
				    in->pid, WEXITSTATUS(st), in->label);
		}
		if (!WIFSTOPPED(st))
			continue;
		int sig = WSTOPSIG(st), ev = (unsigned)st >> 16;
		if (ev) { /* an interrupt or job-control stop: the call goes on */
			ptrace(PTRACE_CONT, t->tid, 0, 0);
			continue;
		}
		siginfo_t si;
		struct user_regs_struct r2;
		memset(&si, 0, sizeof(si));
		ptrace(PTRACE_GETSIGINFO, t->tid, 0, &si);
		if (ptrace(PTRACE_GETREGS, t->tid, 0, &r2) < 0)
			memset(&r2, 0, sizeof(r2));
		int fault = si.si_code > 0 && (sig == SIGSEGV || sig == SIGBUS || sig == SIGILL ||
					       sig == SIGFPE || sig == SIGTRAP || sig == SIGSYS);
		if (fault && sig == SIGSEGV && r2.rip == 0 && r2.rsp == ret_sp) {
			in->signal_stop = 1;
			if (ret)
				*ret = r2.rax;
			return 0;
		}
		if (fault) {
			in->signal_stop = 1;
			return fail(err, errlen, -EFAULT,
				    "%s crashed in thread %d of pid %d with %s at %#llx (address %p); "
				    "memtap suppressed the signal and put the thread back where it was, but "
				    "what the call had done before the crash stays (a lock it held stays "
				    "held): restart the process when you can",
				    in->label, t->tid, in->pid, sig_name(sig), (unsigned long long)r2.rip,
				    si.si_addr);
		}
		/* Any other signal waits until the thread is back where it was. */
		defer_signal(in, &si);
		ptrace(PTRACE_CONT, t->tid, 0, 0);
	}
}

int mt_inject_call(struct mt_inject *in, uint64_t fn, const uint64_t *args, int nargs,
		   uint64_t *ret, char *err, size_t errlen)
{
	char label[64];
	if (nargs < 0 || nargs > 6)
		return fail(err, errlen, -EINVAL, "at most 6 arguments can be passed, not %d", nargs);
	if (!in || !in->saved || in->broken || in->t->state != T_STOPPED)
		return fail(err, errlen, -EIO, "the injection session is no longer usable");
	if (!in->label) {
		snprintf(label, sizeof(label), "the call to %#llx", (unsigned long long)fn);
		in->label = label;
	}
	struct inj_thread *t = in->t;
	struct user_regs_struct r = in->regs0;
	/* At function entry (rsp + 8) is 16-byte aligned; [rsp] is the return
	 * address, 0, so that returning faults where we expect it. */
	uint64_t sp = ((in->scratch - 256) & ~15ULL) - 8, zero = 0;
	int e = mem_rw(in, sp, &zero, 8, 1);
	if (e) {
		in->label = NULL;
		return fail(err, errlen, e, "cannot write to the stack of thread %d of pid %d: %s",
			    t->tid, in->pid, strerror(-e));
	}
	unsigned long long *argreg[6] = {&r.rdi, &r.rsi, &r.rdx, &r.rcx, &r.r8, &r.r9};
	for (int i = 0; i < nargs; i++)
		*argreg[i] = args[i];
	r.rip = fn;
	r.rsp = sp;
	r.rax = 0;
	/* Not in a system call: otherwise the kernel would "restart" the
	 * interrupted one at our function's address when the thread resumes. */
	r.orig_rax = (unsigned long long)-1;
	r.eflags &= ~(0x400ULL | 0x100ULL); /* DF clear (the ABI), no single-step */
	int ret2 = 0;
	in->touched = 1;
	if (ptrace(PTRACE_SETREGS, t->tid, 0, &r) < 0) {
		ret2 = fail(err, errlen, -errno, "cannot set the registers of thread %d of pid %d: %s",
			    t->tid, in->pid, strerror(errno));
		goto out;
	}
	if (!in->prepared) {
		struct iovec iov = {in->xs_call, in->xs_len};
		/* Every signal blocked during calls but the faults (a blocked
		 * fault would reset its handler): the process's signals wait
		 * for its other threads, this thread's for its own code. */
		uint64_t mask = ~0ULL;
		int faults[] = {SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGTRAP, SIGSYS};
		for (size_t i = 0; i < sizeof(faults) / sizeof(faults[0]); i++)
			mask &= ~(1ULL << (faults[i] - 1));
		in->prepared = 1; /* from now on, detach restores everything */
		if (ptrace(PTRACE_SETREGSET, t->tid, (void *)NT_X86_XSTATE, &iov) < 0 ||
		    ptrace(PTRACE_SETSIGMASK, t->tid, (void *)sizeof(mask), &mask) < 0) {
			ret2 = fail(err, errlen, -errno,
				    "cannot set the register state of thread %d of pid %d: %s", t->tid,
				    in->pid, strerror(errno));
			goto out;
		}
	}
	int64_t t0 = now_ns();
	/* From our previous SIGSEGV (suppressed) or from the first stop. */
	if (ptrace(PTRACE_CONT, t->tid, 0, 0) < 0) {
		ret2 = fail(err, errlen, -errno, "cannot resume thread %d of pid %d: %s", t->tid, in->pid,
			    strerror(errno));
		goto out;
	}
	ret2 = wait_call(in, sp + 8, ret, err, errlen);
	in->info.call_ms += (double)(now_ns() - t0) / 1e6;
out:
	in->label = NULL;
	return ret2;
}

/* ------------------------------------------------------------- sessions */

static const sigset_t *stop_signals(sigset_t *s)
{
	sigemptyset(s);
	sigaddset(s, SIGINT);
	sigaddset(s, SIGTERM);
	sigaddset(s, SIGHUP);
	sigaddset(s, SIGQUIT);
	sigaddset(s, SIGCHLD); /* for wait_tid */
	return s;
}

static int attach(pid_t pid, const struct mt_inject_opts *opts, struct mt_inject **out, char *err,
		  size_t errlen)
{
	sigset_t block;
	char path[128], dir[64];
	*out = NULL;
	struct mt_inject *in = calloc(1, sizeof(*in));
	if (!in)
		return fail(err, errlen, -ENOMEM, "out of memory");
	in->pid = pid;
	in->memfd = -1;
	in->info.syscall = -1;
	in->timeout_ms = opts && opts->timeout_ms > 0 ? opts->timeout_ms : MT_INJECT_TIMEOUT_MS;
	in->grace_ms = opts && opts->grace_ms ? opts->grace_ms : MT_INJECT_GRACE_MS;
	in->want_tid = opts ? opts->tid : 0;
	pthread_sigmask(SIG_BLOCK, stop_signals(&block), &in->caller_mask);

	char name[64];
	comm_of(pid, name, sizeof(name));
	int64_t t0 = now_ns();
	int r = seize_all(in, name, err, errlen);
	in->info.stop_ms = (double)(now_ns() - t0) / 1e6;
	if (r)
		goto fail;
	snprintf(path, sizeof(path), "%s/mem", proc_dir(pid, dir, sizeof(dir)));
	in->memfd = open(path, O_RDWR | O_CLOEXEC);
	if (in->memfd < 0) {
		r = fail(err, errlen, -errno, "cannot open %s: %s", path, strerror(errno));
		goto fail;
	}
	r = maps_read(pid, &in->maps, err, errlen);
	if (r)
		goto fail;
	r = choose_thread(in, err, errlen);
	if (r)
		goto fail;
	r = save_state(in, err, errlen);
	if (r)
		goto fail;
	/* errno is memory, not a register: the calls may change it. */
	uint64_t fn;
	if (resolve_in(pid, &in->maps, NULL, "__errno_location", &fn, NULL, 0) == 0) {
		in->label = "__errno_location()";
		r = mt_inject_call(in, fn, NULL, 0, &in->errno_addr, err, errlen);
		if (r)
			goto fail;
		in->have_errno = mem_rw(in, in->errno_addr, &in->errno0, 4, 0) == 0;
	}
	*out = in;
	return 0;
fail:
	mt_inject_detach(in, NULL, 0);
	return r;
}

int mt_inject_attach(pid_t pid, const struct mt_inject_opts *opts, struct mt_inject **out,
		     char *err, size_t errlen)
{
	*out = NULL;
	int r = mt_inject_check(pid, err, errlen);
	return r ? r : attach(pid, opts, out, err, errlen);
}

int mt_inject_resolve(struct mt_inject *in, const char *lib, const char *symbol, uint64_t *addr,
		      char *err, size_t errlen)
{
	/* The calls may have loaded libraries: read the mappings again. */
	struct inj_maps m;
	int r = maps_read(in->pid, &m, err, errlen);
	if (r)
		return r;
	maps_free(&in->maps);
	in->maps = m;
	return resolve_in(in->pid, &in->maps, lib, symbol, addr, err, errlen);
}

int mt_inject_push(struct mt_inject *in, const void *data, size_t len, uint64_t *addr, char *err,
		   size_t errlen)
{
	if (!in || !in->saved)
		return fail(err, errlen, -EIO, "the injection session is no longer usable");
	if (len > in->scratch - in->push_floor)
		return fail(err, errlen, -ENOSPC, "at most %d bytes can be passed to the target",
			    PUSH_MAX);
	uint64_t a = (in->scratch - len) & ~15ULL;
	int r = mem_rw(in, a, (void *)data, len, 1);
	if (r)
		return fail(err, errlen, r, "cannot write to the stack of thread %d of pid %d: %s",
			    in->t->tid, in->pid, strerror(-r));
	in->scratch = a;
	*addr = a;
	return 0;
}

int mt_inject_dlopen(struct mt_inject *in, const char *path, int flags, uint64_t *handle,
		     char *err, size_t errlen)
{
	char label[PATH_MAX + 32];
	const char *lib;
	uint64_t fn, arg;
	if (path[0] != '/')
		return fail(err, errlen, -EINVAL,
			    "%s: give an absolute path (the target resolves relative paths from its own "
			    "working directory)",
			    path);
	int r = mt_inject_resolve(in, NULL, "dlopen", &fn, err, errlen);
	lib = NULL;
	if (r == -ENOENT) {
		lib = "libdl.so";
		r = mt_inject_resolve(in, lib, "dlopen", &fn, err, errlen);
	}
	if (r)
		return r;
	r = mt_inject_push(in, path, strlen(path) + 1, &arg, err, errlen);
	if (r)
		return r;
	uint64_t args[2] = {arg, (uint64_t)(flags ? flags : MT_INJECT_DLOPEN_FLAGS)};
	snprintf(label, sizeof(label), "dlopen(\"%s\")", path);
	in->label = label;
	r = mt_inject_call(in, fn, args, 2, handle, err, errlen);
	if (r || *handle)
		return r;
	/* dlopen failed: the target's dlerror() says why. */
	char msg[512] = "(no message)";
	uint64_t derr, sp;
	if (mt_inject_resolve(in, lib, "dlerror", &derr, NULL, 0) == 0) {
		in->label = "dlerror()";
		if (mt_inject_call(in, derr, NULL, 0, &sp, NULL, 0) == 0 && sp) {
			/* 64 bytes at a time: the string may end just before an
			 * unreadable page. */
			memset(msg, 0, sizeof(msg));
			for (size_t i = 0; i + 64 < sizeof(msg); i += 64)
				if (mem_rw(in, sp + i, msg + i, 64, 0) || memchr(msg + i, 0, 64))
					break;
		}
	}
	r = strstr(msg, "No such file") ? -ENOENT
	    : strstr(msg, "ermission denied") ? -EACCES
	    : strstr(msg, "static TLS") ? -ENOMEM
					  : -ENOEXEC;
	return fail(err, errlen, r, "dlopen(\"%s\") failed in pid %d: %s", path, in->pid, msg);
}

const struct mt_inject_info *mt_inject_info(const struct mt_inject *in)
{
	return &in->info;
}

int mt_inject_thread_pcs(const struct mt_inject *in, uint64_t *pcs, size_t max)
{
	size_t n = 0;
	for (size_t i = 0; i < in->nth; i++) {
		const struct inj_thread *th = &in->th[i];
		if (th->state == T_GONE)
			continue;
		/* Registers that could not be read, or a thread not stopped by
		 * us: where it is cannot be known. */
		if (th->state != T_STOPPED || th->group_stop || n == max)
			return -EAGAIN;
		pcs[n++] = th == in->t && in->saved ? in->regs0.rip : th->regs.rip;
	}
	return (int)n;
}

int mt_inject_detach(struct mt_inject *in, char *err, size_t errlen)
{
	if (!in)
		return 0;
	int ret = 0;
	struct inj_thread *t = in->t;
	if (t && t->state == T_STOPPED && in->saved && in->touched && !in->broken) {
		/* Memory first, then the registers, the XSAVE area and the mask
		 * exactly as they were. */
		if (in->have_errno)
			mem_rw(in, in->errno_addr, &in->errno0, 4, 1);
		if (in->rseq_cs0)
			mem_rw(in, in->rseq_cs_addr, &in->rseq_cs0, 8, 1);
		struct iovec iov = {in->xs0, in->xs_len};
		if (ptrace(PTRACE_SETREGS, t->tid, 0, &in->regs0) < 0 ||
		    (in->prepared &&
		     (ptrace(PTRACE_SETREGSET, t->tid, (void *)NT_X86_XSTATE, &iov) < 0 ||
		      ptrace(PTRACE_SETSIGMASK, t->tid, (void *)sizeof(in->mask0), &in->mask0) < 0)))
			ret = fail(err, errlen, -errno,
				   "restoring thread %d of pid %d failed: %s; the process may misbehave: "
				   "restart it",
				   t->tid, in->pid, strerror(errno));
		/* Signals that arrived during the calls: the first one goes out
		 * with its siginfo as the thread resumes; any others are sent
		 * again (their siginfo says they came from memtap). */
		for (int i = 0; i < in->ndefer; i++)
			syscall(SYS_tgkill, in->pid, t->tid, in->defer[i].si_signo);
		if (t->sig && in->signal_stop) {
			ptrace(PTRACE_SETSIGINFO, t->tid, 0, &t->si);
		} else if (t->sig) {
			syscall(SYS_tgkill, in->pid, t->tid, t->sig);
			t->sig = 0;
		}
	}
	if (t && in->broken)
		t->state = T_GONE; /* cannot be detached; the kernel does it when we exit */
	/* The chosen thread first: it is the one the others may be waiting for. */
	if (t)
		detach_thread(in, t);
	for (size_t i = 0; i < in->nth; i++)
		detach_thread(in, &in->th[i]);
	if (in->memfd >= 0)
		close(in->memfd);
	maps_free(&in->maps);
	free(in->xs0);
	free(in->xs_call);
	free(in->th);
	int chld = in->foreign_chld;
	pthread_sigmask(SIG_SETMASK, &in->caller_mask, NULL);
	if (chld)
		raise(SIGCHLD);
	free(in);
	return ret;
}

/* ---------------------------------------------------------- convenience */

int mt_inject_load_opts(pid_t pid, const char *lib_path, const struct mt_inject_opts *opts,
			uint64_t *handle, struct mt_inject_info *info, char *err, size_t errlen)
{
	char real[PATH_MAX], seen[PATH_MAX + 64], dir[64];
	struct stat s;
	if (!realpath(lib_path, real))
		return fail(err, errlen, -errno, "%s: %s", lib_path, strerror(errno));
	int r = mt_inject_elf_check(real, real, ET_DYN, NULL, err, errlen);
	if (r)
		return r;
	r = mt_inject_check(pid, err, errlen);
	if (r)
		return r;
	snprintf(seen, sizeof(seen), "%s/root%s", proc_dir(pid, dir, sizeof(dir)), real);
	if (stat(seen, &s) < 0)
		return fail(err, errlen, -ENOENT,
			    "pid %d cannot see %s: it runs in another mount namespace or chroot; copy "
			    "the library into its file system and give that path",
			    pid, real);
	struct mt_inject *in;
	r = attach(pid, opts, &in, err, errlen);
	if (r)
		return r;
	r = mt_inject_dlopen(in, real, 0, handle, err, errlen);
	if (info)
		*info = in->info;
	int r2 = mt_inject_detach(in, r ? NULL : err, errlen);
	return r ? r : r2;
}

int mt_inject_load(pid_t pid, const char *lib_path, uint64_t *handle, char *err, size_t errlen)
{
	return mt_inject_load_opts(pid, lib_path, NULL, handle, NULL, err, errlen);
}

int mt_inject_call_symbol(pid_t pid, const char *lib, const char *symbol, const uint64_t *args,
			  int nargs, uint64_t *ret, char *err, size_t errlen)
{
	struct mt_inject *in;
	uint64_t fn;
	int r = mt_inject_attach(pid, NULL, &in, err, errlen);
	if (r)
		return r;
	r = mt_inject_resolve(in, lib, symbol, &fn, err, errlen);
	if (!r)
		r = mt_inject_call(in, fn, args, nargs, ret, err, errlen);
	int r2 = mt_inject_detach(in, r ? NULL : err, errlen);
	return r ? r : r2;
}
