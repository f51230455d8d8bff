/*
 * Session-scoped uprobes: tracefs uprobe events opened as inherited perf
 * tracepoint events on the traced processes' threads (uprobes.h says why,
 * docs/EBPF.md what was measured).
 *
 * What the kernel does with them (kernel/trace/trace_uprobe.c, 6.18):
 * - the breakpoints go only into the memory of the tasks the perf events are
 *   opened on: the uprobe's filter keeps the events' target tasks and
 *   matches a hit by mm, so an event on any one thread covers the whole
 *   process, and no other process pays anything;
 * - an inherited event (copy_process) is added to the filter without a
 *   permission check (perf_trace_event_perm: the parent was allowed) and
 *   without re-planting (dup_mmap copied the breakpoints), so a child is
 *   covered from its first instruction; after exec the task's new mm is
 *   matched when it maps the object (uprobe_mmap);
 * - a BPF program attached to a tracefs event sits in the event's shared
 *   prog_array and runs once per hit: one attachment per probe.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/perf_event.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <bpf/libbpf.h>

#include "uprobes.h"

struct probe {
	char name[16];
	uint64_t tp_id;
	struct bpf_program *prog;
	uint64_t cookie;
	struct bpf_link *link; /* on the first perf event opened for the probe */
};

struct mt_uprobes {
	char tracefs[64];
	char group[32];
	int follow;
	struct probe *p;
	size_t np;
	int *fds; /* the perf events without a BPF program */
	size_t nfds, capfds;
	pid_t *tids, *tgids; /* covered */
	size_t ntids, ntgids;
};

static int write_str(const char *path, const char *s)
{
	/* O_APPEND: uprobe_events opened without it (O_TRUNC, or a shell's
	 * `>`) would remove every uprobe event on the machine. */
	int fd = open(path, O_WRONLY | O_APPEND | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	ssize_t n = write(fd, s, strlen(s));
	int r = n == (ssize_t)strlen(s) ? 0 : n < 0 ? -errno : -EIO;
	close(fd);
	return r;
}

static int usable(const char *dir)
{
	char p[128];
	snprintf(p, sizeof(p), "%s/uprobe_events", dir);
	return access(p, W_OK) == 0;
}

/* tracefs, mounted where it is usually mounted, or in memtap's own mount
 * namespace: a private copy of the mount tree, so that the new mount
 * propagates nowhere and goes away with memtap. */
static int find_tracefs(struct mt_uprobes *u, char *err, size_t errlen)
{
	static const char *const dirs[] = {"/sys/kernel/tracing", "/sys/kernel/debug/tracing"};
	for (size_t i = 0; i < sizeof(dirs) / sizeof(dirs[0]); i++)
		if (usable(dirs[i])) {
			snprintf(u->tracefs, sizeof(u->tracefs), "%s", dirs[i]);
			return 0;
		}
	if (unshare(CLONE_NEWNS)) {
		int r = -errno;
		snprintf(err, errlen, "tracefs is not mounted, and memtap cannot make a mount namespace of its own "
			 "to mount it (unshare: %s): mount it (mount -t tracefs tracefs /sys/kernel/tracing) or "
			 "use --via=inject", strerror(-r));
		return r;
	}
	if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) ||
	    mount("tracefs", dirs[0], "tracefs", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) || !usable(dirs[0])) {
		int r = errno ? -errno : -ENOENT;
		snprintf(err, errlen, "tracefs is not mounted and memtap cannot mount it on %s in its own mount "
			 "namespace (%s): the kernel needs CONFIG_UPROBE_EVENTS; mount it yourself, or use "
			 "--via=inject", dirs[0], strerror(-r));
		return r;
	}
	snprintf(u->tracefs, sizeof(u->tracefs), "%s", dirs[0]);
	return 0;
}

/* Whether PID is a memtap process (a session whose events are in use). */
static int is_memtap(long pid)
{
	char path[64], comm[32] = "";
	snprintf(path, sizeof(path), "/proc/%ld/comm", pid);
	FILE *f = fopen(path, "re");
	if (!f)
		return 0;
	if (!fgets(comm, sizeof(comm), f))
		comm[0] = '\0';
	fclose(f);
	return !strncmp(comm, "memtap", 6);
}

/* Removes the events of memtap_<pid> groups whose memtap is gone (killed
 * with SIGKILL before its cleanup).  An event still in use refuses (EBUSY)
 * and stays. */
static void remove_stale(struct mt_uprobes *u)
{
	char path[128], line[8192];
	snprintf(path, sizeof(path), "%s/uprobe_events", u->tracefs);
	FILE *f = fopen(path, "re");
	if (!f)
		return;
	char (*gone)[64] = NULL;
	size_t ngone = 0;
	while (fgets(line, sizeof(line), f)) {
		/* "p:memtap_123/p0 /lib/x86_64-linux-gnu/libc.so.6:0x0000000000098930" */
		char group[32], event[32];
		long pid;
		if (sscanf(line, "%*c:%31[^/]/%31s", group, event) != 2 || strncmp(group, "memtap_", 7))
			continue;
		char *e;
		pid = strtol(group + 7, &e, 10);
		/* a live memtap is using its group (a pid reused by another
		 * program is not) */
		if (*e || pid <= 0 || pid == (long)getpid() || is_memtap(pid))
			continue;
		void *v = realloc(gone, (ngone + 1) * sizeof(*gone));
		if (!v)
			break;
		gone = v;
		snprintf(gone[ngone++], sizeof(gone[0]), "-:%s/%s\n", group, event);
	}
	fclose(f);
	for (size_t i = 0; i < ngone; i++)
		write_str(path, gone[i]);
	free(gone);
}

int mt_uprobes_new(struct mt_uprobes **out, int follow, char *err, size_t errlen)
{
	struct mt_uprobes *u = calloc(1, sizeof(*u));
	*out = NULL;
	if (!u)
		return -ENOMEM;
	int r = find_tracefs(u, err, errlen);
	if (r) {
		free(u);
		return r;
	}
	snprintf(u->group, sizeof(u->group), "memtap_%d", (int)getpid());
	u->follow = follow;
	remove_stale(u);
	/* One perf event per probe and thread: take every file the hard limit
	 * allows. */
	struct rlimit rl;
	if (!getrlimit(RLIMIT_NOFILE, &rl) && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
	*out = u;
	return 0;
}

int mt_uprobes_add(struct mt_uprobes *u, const char *path, uint64_t off, int ret, struct bpf_program *prog,
		   uint64_t cookie, char *err, size_t errlen)
{
	if (strpbrk(path, " \t\n")) {
		snprintf(err, errlen, "cannot probe %s: tracefs takes no blank in a path; use --via=inject", path);
		return -EINVAL;
	}
	struct probe *v = realloc(u->p, (u->np + 1) * sizeof(*v));
	if (!v)
		return -ENOMEM;
	u->p = v;
	struct probe *p = &u->p[u->np];
	memset(p, 0, sizeof(*p));
	snprintf(p->name, sizeof(p->name), "%c%zu", ret ? 'r' : 'p', u->np);
	p->prog = prog;
	p->cookie = cookie;
	char cmd[4096 + 128], file[128];
	snprintf(cmd, sizeof(cmd), "%c:%s/%s %s:0x%llx\n", ret ? 'r' : 'p', u->group, p->name, path,
		 (unsigned long long)off);
	snprintf(file, sizeof(file), "%s/uprobe_events", u->tracefs);
	int r = write_str(file, cmd);
	if (r) {
		snprintf(err, errlen, "cannot create the uprobe event %s/%s (%s:0x%llx) in %s: %s", u->group,
			 p->name, path, (unsigned long long)off, file, strerror(-r));
		return r;
	}
	u->np++; /* from here on, mt_uprobes_free removes it */
	snprintf(file, sizeof(file), "%s/events/%s/%s/id", u->tracefs, u->group, p->name);
	FILE *f = fopen(file, "re");
	unsigned long long id = 0;
	if (!f || fscanf(f, "%llu", &id) != 1) {
		r = f ? -EIO : -errno;
		snprintf(err, errlen, "cannot read %s: %s", file, strerror(-r));
		if (f)
			fclose(f);
		return r;
	}
	fclose(f);
	p->tp_id = id;
	return 0;
}

static int has(const pid_t *v, size_t n, pid_t x)
{
	for (size_t i = 0; i < n; i++)
		if (v[i] == x)
			return 1;
	return 0;
}

static int push(pid_t **v, size_t *n, pid_t x)
{
	pid_t *nv = realloc(*v, (*n + 1) * sizeof(**v));
	if (!nv)
		return -ENOMEM;
	*v = nv;
	nv[(*n)++] = x;
	return 0;
}

int mt_uprobes_covered(const struct mt_uprobes *u, pid_t tgid)
{
	return has(u->tgids, u->ntgids, tgid);
}

/* The threads of TGID now; -ESRCH when it is gone. */
static int list_threads(pid_t tgid, pid_t **tids, size_t *n)
{
	char path[64];
	*n = 0;
	snprintf(path, sizeof(path), "/proc/%d/task", (int)tgid);
	DIR *d = opendir(path);
	if (!d)
		return errno == ENOENT ? -ESRCH : -errno;
	struct dirent *de;
	int r = 0;
	while ((de = readdir(d)))
		if (de->d_name[0] >= '1' && de->d_name[0] <= '9' && (r = push(tids, n, (pid_t)atoi(de->d_name))))
			break;
	closedir(d);
	return r;
}

static long open_files(void)
{
	long n = 0;
	DIR *d = opendir("/proc/self/fd");
	if (!d)
		return 0;
	while (readdir(d))
		n++;
	closedir(d);
	return n;
}

static void limit_msg(struct mt_uprobes *u, pid_t tgid, size_t threads, char *err, size_t errlen)
{
	struct rlimit rl = {0, 0};
	getrlimit(RLIMIT_NOFILE, &rl);
	snprintf(err, errlen, "process %d has %zu threads: scoping the probes to it needs one perf event per "
		 "probe on each of its threads (%zu probes x %zu threads = %zu), more than memtap's open-file "
		 "limit of %llu (RLIMIT_NOFILE, raised to its hard limit) allows; raise the hard limit "
		 "(ulimit -Hn, systemd's LimitNOFILE=), or use --via=inject",
		 (int)tgid, threads, u->np, threads, u->np * threads, (unsigned long long)rl.rlim_cur);
}

/* A perf event of probe P on thread TID of TGID (INHERIT: copied into the
 * threads and, when following, the children it makes).  The fd, or -errno
 * (-ESRCH: the thread is gone) with ERR. */
static int open_event(struct mt_uprobes *u, const struct probe *p, pid_t tgid, pid_t tid, int inherit, char *err,
		      size_t errlen)
{
	struct perf_event_attr a = {
		.type = PERF_TYPE_TRACEPOINT,
		.size = sizeof(a),
		.config = p->tp_id,
		.sample_period = 1,
		.inherit = inherit != 0,
		/* --no-follow: new threads inherit, children do not */
		.inherit_thread = inherit && !u->follow,
	};
	int fd = (int)syscall(SYS_perf_event_open, &a, tid, -1, -1, PERF_FLAG_FD_CLOEXEC);
	if (fd >= 0)
		return fd;
	int r = -errno;
	if (r == -EMFILE || r == -ENFILE)
		limit_msg(u, tgid, u->ntids + 1, err, errlen);
	else if (r != -ESRCH)
		snprintf(err, errlen, "cannot open the perf event of uprobe %s/%s on thread %d of process %d: %s",
			 u->group, p->name, (int)tid, (int)tgid, strerror(-r));
	return r;
}

/* Every probe on thread TID of TGID; -ESRCH when the thread is gone. */
static int open_thread(struct mt_uprobes *u, pid_t tgid, pid_t tid, char *err, size_t errlen)
{
	for (size_t i = 0; i < u->np; i++) {
		struct probe *p = &u->p[i];
		if (u->nfds == u->capfds) {
			size_t cap = u->capfds ? 2 * u->capfds : 256;
			int *nv = realloc(u->fds, cap * sizeof(*nv));
			if (!nv)
				return -ENOMEM;
			u->fds = nv;
			u->capfds = cap;
		}
		if (!p->link) {
			/* The program's own event is never inherited: an inherited
			 * copy carries the program too, and when that copy goes (a
			 * thread or child exits) the kernel takes the program out of
			 * the event's shared prog_array -- for every process -- and
			 * waits for an RCU tasks-trace grace period in the exiting
			 * task (perf_event_detach_bpf_prog), measured here: counting
			 * stopped at the first thread exit, and each exit took about
			 * 0.1 s. */
			int fd = open_event(u, p, tgid, tid, 0, err, errlen);
			if (fd < 0)
				return fd;
			LIBBPF_OPTS(bpf_perf_event_opts, o, .bpf_cookie = p->cookie);
			p->link = bpf_program__attach_perf_event_opts(p->prog, fd, &o);
			if (!p->link) {
				int r = -errno;
				close(fd);
				snprintf(err, errlen, "cannot attach %s to the uprobe event %s/%s: %s",
					 bpf_program__name(p->prog), u->group, p->name, strerror(-r));
				return r;
			}
		}
		int fd = open_event(u, p, tgid, tid, 1, err, errlen);
		if (fd < 0)
			return fd;
		u->fds[u->nfds++] = fd;
	}
	return 0;
}

int mt_uprobes_cover(struct mt_uprobes *u, pid_t tgid, char *err, size_t errlen)
{
	pid_t *tids = NULL;
	size_t n = 0;
	int r, covered_any = 0;
	/* Threads created by a covered thread inherit its events; those created
	 * meanwhile by a thread not yet covered show up in the next listing. */
	for (;;) {
		if ((r = list_threads(tgid, &tids, &n)))
			break;
		size_t fresh = 0;
		for (size_t i = 0; i < n; i++)
			fresh += !has(u->tids, u->ntids, tids[i]);
		if (!fresh)
			break;
		struct rlimit rl;
		if (!getrlimit(RLIMIT_NOFILE, &rl) && rl.rlim_cur != RLIM_INFINITY &&
		    (unsigned long long)open_files() + (fresh + 1) * u->np + 16 > (unsigned long long)rl.rlim_cur) {
			limit_msg(u, tgid, n, err, errlen);
			r = -EMFILE;
			break;
		}
		for (size_t i = 0; i < n && !r; i++) {
			if (has(u->tids, u->ntids, tids[i]))
				continue;
			r = open_thread(u, tgid, tids[i], err, errlen);
			if (r == -ESRCH) { /* the thread exited meanwhile */
				r = 0;
				continue;
			}
			if (!r && !(r = push(&u->tids, &u->ntids, tids[i])))
				covered_any = 1;
		}
		if (r)
			break;
	}
	free(tids);
	if (!r && covered_any && !has(u->tgids, u->ntgids, tgid))
		r = push(&u->tgids, &u->ntgids, tgid);
	if (r == -ESRCH || (!r && !covered_any && !has(u->tgids, u->ntgids, tgid))) {
		snprintf(err, errlen, "process %d exited while memtap was attaching", (int)tgid);
		return -ESRCH;
	}
	return r;
}

void mt_uprobes_counts(const struct mt_uprobes *u, size_t *events, size_t *probes, size_t *threads)
{
	size_t links = 0;
	for (size_t i = 0; i < u->np; i++)
		links += u->p[i].link != NULL;
	*events = u->nfds + links;
	*probes = u->np;
	*threads = u->ntids;
}

void mt_uprobes_free(struct mt_uprobes *u)
{
	if (!u)
		return;
	/* Every perf event first: an event still open (inherited ones go with
	 * the event they came from) keeps its tracefs event busy. */
	for (size_t i = 0; i < u->nfds; i++)
		close(u->fds[i]);
	/* The last perf event of a probe waits for a grace period as it goes
	 * (about 0.1 s here), serialized by the kernel: threads do not make
	 * it shorter. */
	for (size_t i = 0; i < u->np; i++)
		bpf_link__destroy(u->p[i].link);
	char file[128], cmd[64];
	snprintf(file, sizeof(file), "%s/uprobe_events", u->tracefs);
	for (size_t i = 0; i < u->np; i++) {
		snprintf(cmd, sizeof(cmd), "-:%s/%s\n", u->group, u->p[i].name);
		/* the last reference to a perf event may be dropped a little
		 * later (an exiting child's inherited copy): a few tries */
		for (int t = 0; t < 100 && write_str(file, cmd) == -EBUSY; t++) {
			struct timespec nap = {0, 10 * 1000 * 1000};
			nanosleep(&nap, NULL);
		}
	}
	free(u->fds);
	free(u->p);
	free(u->tids);
	free(u->tgids);
	free(u);
}
