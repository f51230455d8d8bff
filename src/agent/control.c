/*
 * The control server: a thread that owns a Unix socket in a private
 * directory and answers `memtap ctl` requests (include/memtap/ctl.h).
 *
 * The thread blocks every signal (the program's handlers never run on it),
 * keeps the recursion guard set (its own allocations are never counted), and
 * re-creates its socket if the program closes the descriptor under it, as
 * daemons that close every fd at start-up do.
 */
#include <dlfcn.h>
#include <errno.h>
#include <limits.h>
#include <malloc.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "agent.h"
#include "hook.h"
#include "memtap/ctl.h"
#include "memtap/proc.h"
#include "memtap/format.h"
#include "memtap/leaks.h"

/* The listening socket.  sock_lock orders the control thread's accept()
 * against a user change closing the socket, so the thread never accepts on
 * a descriptor number the program has reused. */
static pthread_mutex_t sock_lock = PTHREAD_MUTEX_INITIALIZER;
static int listen_fd = -1;
static dev_t listen_dev;
static ino_t listen_ino;
static char sock_path[PATH_MAX];
static int stopping;
static pthread_t ctl_thread;

/* A reply under construction, in mmap-backed scratch memory. */
void mt_reply(struct mt_buf *b, const char *fmt, ...)
{
	char line[2048];
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	if ((size_t)n >= sizeof(line))
		n = sizeof(line) - 1;
	if (b->len + (size_t)n > b->cap) {
		size_t cap = b->cap ? b->cap * 2 : 8192;
		while (cap < b->len + (size_t)n)
			cap *= 2;
		uint8_t *d = b->grow(b->data, b->len, cap);
		if (!d)
			return;
		b->data = d;
		b->cap = cap;
	}
	memcpy(b->data + b->len, line, (size_t)n);
	b->len += (size_t)n;
}

void mt_reply_bytes(struct mt_buf *b, const char *s, size_t n)
{
	while (n) {
		size_t k = n > 1500 ? 1500 : n;
		mt_reply(b, "%.*s", (int)k, s);
		s += k;
		n -= k;
	}
}

static int make_dir(char *dir, size_t len)
{
	return mt_private_dir(mt_ctl_rundir(), dir, len);
}

static int open_socket(void)
{
	char dir[PATH_MAX];
	int err = make_dir(dir, sizeof(dir));
	if (err) {
		mt_log("control socket disabled: %s is unusable (%s); it must be a directory "
		       "owned by uid %u with mode 0700", dir, strerror(-err), (unsigned)geteuid());
		return err;
	}
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	int n = snprintf(sock_path, sizeof(sock_path), MT_CTL_SOCK_FMT, mt_ctl_rundir(),
			 (unsigned)geteuid(), (int)getpid());
	if (n < 0 || (size_t)n >= sizeof(sa.sun_path)) {
		mt_log("control socket disabled: path %s is too long; set MEMTAP_RUNDIR to a shorter directory",
		       sock_path);
		return -ENAMETOOLONG;
	}
	memcpy(sa.sun_path, sock_path, (size_t)n + 1);
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0)
		return -errno;
	unlink(sock_path); /* a stale socket of an earlier process with our pid */
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || chmod(sock_path, 0600) < 0 ||
	    listen(fd, 16) < 0) {
		err = -errno;
		mt_log("control socket disabled: cannot listen on %s: %s", sock_path, strerror(errno));
		close(fd);
		return err;
	}
	struct stat st;
	fstat(fd, &st);
	listen_dev = st.st_dev;
	listen_ino = st.st_ino;
	listen_fd = fd;
	return 0;
}

/* Whether LISTEN_FD is still our socket (the program may have closed it and
 * reused the number). */
static int socket_intact(void)
{
	struct stat st;
	return listen_fd >= 0 && fstat(listen_fd, &st) == 0 && st.st_dev == listen_dev &&
	       st.st_ino == listen_ino;
}

static void cmd_status(struct mt_buf *b)
{
	char alloc_path[PATH_MAX];
	const char *alloc = mt_allocator_name(alloc_path, sizeof(alloc_path));
	struct mt_profile *p = mt_snapshot_new();
	if (!p) {
		mt_reply(b, "error: out of memory\n");
		return;
	}
	uint64_t calls = 0;
	for (uint32_t i = 0; i < p->nfuncs; i++)
		calls += p->funcs[i].calls;
	mt_reply(b, "ok\n");
	mt_reply(b, "pid: %u\ncommand: %s\n", p->pid, p->command);
	mt_reply(b, "state: %s\n", __atomic_load_n(&mt_g.active, __ATOMIC_RELAXED) ? "active" : "inactive");
	mt_reply(b, "mode: %s\n", !mt_g.attached_mode ? "preloaded (memtap run)"
			       : mt_g.attached ? "attached" : "loaded, not attached");
	mt_reply(b, "prefix: %s\nfollow: %s\n", mt_g.prefix, mt_g.follow ? "yes" : "no");
	mt_reply(b, "live: %s\n", mt_shared_is_file() ? mt_shared_path() : "(private memory: not readable from outside)");
	mt_reply(b, "allocator: %s (%s)\n", alloc, alloc_path);
	mt_reply(b, "fast_paths: %s\n", mt_fast_paths());
	char pools[160];
	mt_apr_describe(pools, sizeof(pools));
	mt_reply(b, "pools: %s\n", pools);
	mt_reply(b, "dumps: %u\n", __atomic_load_n(&mt_g.dumps, __ATOMIC_RELAXED));
	/* leaks: the detach command makes the check at detach itself (it can
	 * hold the threads the agent's signal cannot stop) when it reads this */
	mt_reply(b, "leaks: %s\n", MT_OPT(leaks) ? (mt_g.attached_mode ? "at detach" : "at exit") : "off");
	mt_reply(b, "agent_memory_bytes: %llu\n",
	      (unsigned long long)__atomic_load_n(&mt_g.arena_bytes, __ATOMIC_RELAXED));
	mt_reply(b, "calls: %llu\n", (unsigned long long)calls);
	uint64_t lost, unwound;
	mt_hook_stats(&lost, &unwound);
	mt_reply(b, "entry_hooks: %d patched, %d pending\nreturns_unseen: %llu (shadow stack full), %llu (unwound)\n",
	      mt_hook_patched(), mt_hook_pending(), (unsigned long long)lost, (unsigned long long)unwound);
	mt_reply(b, "allocated_bytes: %llu\nfreed_bytes: %llu\nin_use_bytes: %lld\npeak_in_use_bytes: %llu\n",
	      (unsigned long long)p->totals.allocated_bytes, (unsigned long long)p->totals.freed_bytes,
	      (long long)p->totals.in_use_bytes, (unsigned long long)p->totals.peak_in_use_bytes);
	mt_snapshot_free(p);
}

static void cmd_stats(struct mt_buf *b)
{
	cmd_status(b);
	struct mt_profile *p = mt_snapshot_new();
	if (p) {
		mt_reply(b, "\nmemtap counters:\n  %-32s %14s %16s %10s\n", "function", "calls", "bytes", "failed");
		for (uint32_t i = 0; i < p->nfuncs; i++)
			mt_reply(b, "  %-32s %14llu %16llu %10llu\n", p->funcs[i].name,
			      (unsigned long long)p->funcs[i].calls, (unsigned long long)p->funcs[i].bytes,
			      (unsigned long long)p->funcs[i].failed);
		mt_snapshot_free(p);
	}
	mt_allocstats_take(b);
	if (mt_glibc_on()) {
		mt_glibc_tick(1);
		mt_reply(b, "\nglibc internals (--glibc): in every profile; memtap report FILE shows them\n");
	}
}

static void serve(int fd)
{
	struct mt_buf b;
	char req_line[MT_CTL_MAX_REQUEST + 1], err[256];
	struct mt_ctl_request req;
	mt_scratch_init(&b);

	struct timeval tv = {.tv_sec = 5};
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	struct ucred cred;
	socklen_t clen = sizeof(cred);
	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &clen) < 0 ||
	    !mt_ctl_peer_allowed(cred.uid, geteuid())) {
		mt_reply(&b, "error: permission denied: uid %u may not control process %d (it runs as uid %u); "
		      "run memtap ctl as that user or as root\n", (unsigned)cred.uid, (int)getpid(),
		      (unsigned)geteuid());
		goto send;
	}
	size_t len = 0;
	while (len < sizeof(req_line) - 1) {
		ssize_t n = read(fd, req_line + len, sizeof(req_line) - 1 - len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		len += (size_t)n;
		if (memchr(req_line, '\n', len))
			break;
	}
	size_t total = len; /* leaks N: binary records may follow the line */
	char *nl = memchr(req_line, '\n', len);
	if (!nl && len >= sizeof(req_line) - 1) {
		mt_reply(&b, "error: request longer than %d bytes\n", MT_CTL_MAX_REQUEST - 1);
		goto send;
	}
	if (nl)
		len = (size_t)(nl - req_line);
	if (mt_ctl_parse(req_line, len, &req, err, sizeof(err))) {
		mt_reply(&b, "error: %s\n", err);
		goto send;
	}
	switch (req.cmd) {
	case MT_CTL_ACTIVATE:
		/* A detached agent counts nothing: its hooks are gone. */
		if (mt_g.attached_mode && !__atomic_load_n(&mt_g.attached, __ATOMIC_ACQUIRE)) {
			mt_reply(&b, "error: detached: the agent is inert (its hooks were removed); start a new "
			      "session with memtap attach -p %d\n", (int)getpid());
			break;
		}
		mt_set_active(1);
		mt_reply(&b, "ok\nactive\n");
		mt_jemalloc_bridge('a', &b);
		break;
	case MT_CTL_DEACTIVATE:
		mt_set_active(0);
		mt_reply(&b, "ok\ninactive\n");
		mt_jemalloc_bridge('d', &b);
		break;
	case MT_CTL_DUMP: {
		char path[PATH_MAX];
		if (req.arg[0] && req.arg[0] != '/') {
			mt_reply(&b, "error: dump path must be absolute: %s\n", req.arg);
			break;
		}
		int e = mt_dump(req.arg[0] ? req.arg : NULL, MT_REASON_CTL, path, sizeof(path));
		if (e)
			mt_reply(&b, "error: cannot write %s: %s\n", path, strerror(-e));
		else
			mt_reply(&b, "ok\n%s\n", path);
		mt_jemalloc_bridge('u', &b);
		break;
	}
	case MT_CTL_SYNC:
		/* before the memtap command writes a profile from the live file:
		 * fresh allocator figures there, and jemalloc's own dump */
		mt_reply(&b, "ok\n");
		mt_allocstats_take(NULL);
		mt_glibc_tick(1);
		if (!strcmp(req.arg, "dump"))
			mt_jemalloc_bridge('u', &b);
		break;
	case MT_CTL_STATS:
		cmd_stats(&b);
		break;
	case MT_CTL_RESET:
		mt_reset();
		mt_reply(&b, "ok\nreset\n");
		break;
	case MT_CTL_STATUS:
		cmd_status(&b);
		break;
	case MT_CTL_ATTACH: {
		char msg[PATH_MAX];
		int e = mt_attach(req.arg, msg, sizeof(msg));
		mt_reply(&b, e ? "error: %s\n" : "ok\n%s\n", msg);
		break;
	}
	case MT_CTL_LEAKS: {
		/* leaks: the check runs here, on the control thread; the result
		 * is in the live file, for `memtap ctl` to render. */
		char msg[2048] = "";
		struct mt_leaks_held *held = NULL;
		size_t nheld = req.arg[0] ? strtoul(req.arg, NULL, 10) : 0, want = 0, have = 0;
		if (nheld > MT_LEAKS_HELD_MAX) {
			mt_reply(&b, "error: %zu held threads (at most %d)\n", nheld, MT_LEAKS_HELD_MAX);
			break;
		}
		if (nheld) {
			want = nheld * sizeof(*held);
			if (!(held = mt_sys_map((want + 4095) & ~(size_t)4095))) {
				mt_reply(&b, "error: out of memory for %zu held threads\n", nheld);
				break;
			}
			size_t after = nl ? (size_t)(nl - req_line) + 1 : total;
			if (total > after) {
				have = total - after < want ? total - after : want;
				memcpy(held, req_line + after, have);
			}
			while (have < want) {
				ssize_t n = read(fd, (char *)held + have, want - have);
				if (n < 0 && errno == EINTR)
					continue;
				if (n <= 0)
					break;
				have += (size_t)n;
			}
		}
		int e = have < want ? -EPROTO
				    : mt_leaks_check(0, held, (uint32_t)nheld, msg, sizeof(msg));
		if (e == -EPROTO)
			snprintf(msg, sizeof(msg), "the held threads' registers were cut short (%zu of %zu bytes)", have,
				 want);
		if (held)
			mt_sys_unmap(held, (want + 4095) & ~(size_t)4095);
		mt_reply(&b, e ? "error: %s\n" : "ok\n%s", msg);
		break;
	}
	case MT_CTL_DETACH: {
		char path[PATH_MAX];
		int e = mt_detach(path, sizeof(path));
		if (e == -EINVAL)
			mt_reply(&b, "error: %s\n", path);
		else if (e)
			mt_reply(&b, "error: detached, but the last dump %s failed: %s\n", path, strerror(-e));
		else
			mt_reply(&b, "ok\n%s\n", path);
		break;
	}
	}
send:
	for (size_t off = 0; off < b.len;) {
		ssize_t n = send(fd, b.data + off, b.len - off, MSG_NOSIGNAL);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		off += (size_t)n;
	}
	mt_scratch_free(&b);
}

int mt_ctl_tid;

static void *control_main(void *arg)
{
	(void)arg;
	mt_tls_busy = 1; /* nothing this thread does is counted */
	__atomic_store_n(&mt_ctl_tid, (int)syscall(SYS_gettid), __ATOMIC_RELEASE);
	/* Named, so that `memtap ctl PID leaks` never holds it (and top -H
	 * says what it is). */
	prctl(PR_SET_NAME, "memtap-ctl", 0, 0, 0);
	/* The thread wakes twice a second to check that its socket is still its
	 * own.  (Periodic dumps are the session's: it reads the live file.) */
	int tick = 500;
	uint64_t stats_at = 0;
	while (!__atomic_load_n(&stopping, __ATOMIC_RELAXED)) {
		/* --glibc: a lock-wait sample every 10 ms or so
		 * (src/agent/allocstats.c); the allocator's statistics once at
		 * the start (then on demand: they walk every arena's free lists
		 * under its lock, milliseconds on a big heap) */
		tick = mt_glibc_on() ? (int)mt_glibc_period_ms() : 500;
		if (mt_glibc_on()) {
			mt_glibc_tick(0);
			if (!stats_at) {
				mt_allocstats_take(NULL);
				stats_at = mt_now_ns();
			}
		}
		pthread_mutex_lock(&sock_lock);
		if (!socket_intact()) {
			listen_fd = -1;
			if (open_socket() < 0) {
				pthread_mutex_unlock(&sock_lock);
				return NULL;
			}
		}
		struct pollfd pfd = {.fd = listen_fd, .events = POLLIN};
		pthread_mutex_unlock(&sock_lock);
		if (poll(&pfd, 1, tick) <= 0 || !(pfd.revents & POLLIN))
			continue;
		pthread_mutex_lock(&sock_lock);
		int c = socket_intact() && listen_fd == pfd.fd
				? accept4(listen_fd, NULL, NULL, SOCK_CLOEXEC) : -1;
		pthread_mutex_unlock(&sock_lock);
		if (c < 0)
			continue;
		serve(c);
		close(c);
	}
	return NULL;
}

int mt_control_start(void)
{
	int busy = mt_tls_busy;
	mt_tls_busy = 1;
	int err = open_socket();
	if (!err) {
		sigset_t all, old;
		sigfillset(&all);
		pthread_sigmask(SIG_SETMASK, &all, &old);
		pthread_attr_t attr;
		pthread_attr_init(&attr);
		pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
		pthread_attr_setstacksize(&attr, 256 * 1024);
		err = -pthread_create(&ctl_thread, &attr, control_main, NULL);
		pthread_attr_destroy(&attr);
		pthread_sigmask(SIG_SETMASK, &old, NULL);
		if (err) {
			mt_log("control thread not started: %s", strerror(-err));
			close(listen_fd);
			listen_fd = -1;
			unlink(sock_path);
		}
	}
	mt_tls_busy = busy;
	return err;
}

int mt_control_sync(int ms)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	if (pthread_mutex_trylock(&sock_lock))
		return -EBUSY;
	int ok = socket_intact() && !__atomic_load_n(&stopping, __ATOMIC_RELAXED);
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", sock_path);
	pthread_mutex_unlock(&sock_lock);
	if (!ok)
		return -ENOTCONN;
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0)
		return -errno;
	int err = 0;
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || write(fd, "sync\n", 5) != 5) {
		err = -errno;
		goto out;
	}
	/* until the control thread has answered and closed, at most MS */
	for (;;) {
		struct pollfd pfd = {.fd = fd, .events = POLLIN};
		char buf[256];
		if (poll(&pfd, 1, ms) <= 0) {
			err = -ETIMEDOUT;
			break;
		}
		ssize_t n = read(fd, buf, sizeof(buf));
		if (n <= 0 && !(n < 0 && (errno == EINTR || errno == EAGAIN)))
			break;
	}
out:
	close(fd);
	return err;
}

void mt_control_stop(void)
{
	__atomic_store_n(&stopping, 1, __ATOMIC_RELAXED);
	pthread_mutex_lock(&sock_lock);
	if (socket_intact())
		unlink(sock_path);
	pthread_mutex_unlock(&sock_lock);
}

void mt_control_uid_change(int after)
{
	if (!mt_g.enabled)
		return;
	pthread_mutex_lock(&sock_lock);
	if (socket_intact()) {
		if (!after) {
			unlink(sock_path); /* while we still may */
		} else {
			/* A new socket in the directory of the (possibly new)
			 * effective uid, at once: `ctl` may come right away. */
			close(listen_fd);
			listen_fd = -1;
			int busy = mt_tls_busy;
			mt_tls_busy = 1;
			open_socket();
			mt_tls_busy = busy;
		}
	}
	pthread_mutex_unlock(&sock_lock);
}

void mt_control_after_fork_child(void)
{
	/* The parent's socket and thread belong to the parent; the lock may have
	 * been held by the parent's control thread at fork. */
	pthread_mutex_init(&sock_lock, NULL);
	mt_glibc_fork_child();
	if (listen_fd >= 0 && socket_intact())
		close(listen_fd);
	listen_fd = -1;
	if (mt_g.enabled)
		mt_control_start();
}
