/* memtap ctl PID COMMAND: talk to the agent inside a traced process. */
#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ptrace.h>
#include <sys/user.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cli.h"
#include "live_read.h"
#include "memtap/ctl.h"
#include "memtap/format.h"
#include "memtap/leaks.h"
#include "memtap/render.h"
#include "session.h"

static void ctl_usage(FILE *out)
{
	fprintf(out,
		"usage: memtap ctl PID COMMAND\n"
		"  activate      start counting (after run --inactive or deactivate)\n"
		"  deactivate    stop counting; the program runs on at full speed\n"
		"  dump [PATH]   write a profile now and print its path\n"
		"  stats         memtap's counters and the allocator's own statistics\n"
		"  reset         zero the counters (in-use carries on, the peak restarts)\n"
		"  status        active or not, options and totals\n"
		"  leaks         a leak check by reachability now: what no pointer reaches\n"
		"                (definitely lost) and what is still reachable, per call site\n"
		"                (needs memtap run --leaks or --sample=1; docs/LEAKS.md)\n");
}

static int ctl_dump(int pid, const struct mt_live_hdr *h, const char *path)
{
	char prefix[PATH_MAX], err[1024], out[PATH_MAX];
	snprintf(prefix, sizeof(prefix), "%.*s", (int)sizeof(h->prefix), h->prefix);
	struct mt_session *sess;
	struct mt_session_opts so = {.prefix = prefix, .run_id = h->run_id, .stacks = h->stacks != 0};
	if (mt_session_new(&so, &sess))
		return mt_error("ctl: out of memory"), 1;
	int ret = mt_session_adopt(sess, pid, err, sizeof(err));
	if (!ret && path) {
		struct mt_profile *p;
		if (!(ret = mt_session_snapshot(sess, pid, &p, err, sizeof(err)))) {
			struct mt_buf b = {.grow = mt_buf_grow_libc};
			p->reason = MT_REASON_CTL;
			if (!(ret = mt_file_encode(p, &b)))
				ret = mt_file_write_whole(path, b.data, b.len, 0600);
			if (ret)
				snprintf(err, sizeof(err), "cannot write %s: %s", path, strerror(-ret));
			snprintf(out, sizeof(out), "%s", path);
			free(b.data);
			mt_profile_free(p);
		}
	} else if (!ret && (ret = mt_session_dump(sess, pid, MT_REASON_CTL, out, sizeof(out)))) {
		snprintf(err, sizeof(err), "cannot write %s: %s", out, strerror(-ret));
	}
	mt_session_free(sess);
	if (ret)
		return mt_error("ctl %d dump: %s", pid, err), 1;
	printf("%s\n", out);
	return 0;
}

/* ---- leaks: the threads the agent's signal cannot stop ----
 *
 * A thread that blocks the real-time signals the agent stops threads with
 * (SIGRTMAX-11 .. SIGRTMAX-2) is held here instead, when this command may
 * ptrace the process: seized, interrupted (a system call it was in
 * restarts transparently when it goes), its registers sent with the request,
 * let go after the reply.  Without the permission the agent scans such a
 * thread's stack unstopped and says so.  If this command dies meanwhile,
 * the kernel lets its tracees go. */

struct hold {
	struct mt_leaks_held *h;
	int *sig; /* the signal a thread was stopped with (re-sent when it goes), 0: none */
	size_t n, cap;
};

static int read_small(const char *path, char *buf, size_t len)
{
	FILE *f = fopen(path, "r");
	if (!f)
		return -1;
	size_t n = fread(buf, 1, len - 1, f);
	fclose(f);
	buf[n] = '\0';
	return 0;
}

static int wants_hold(int pid, int tid)
{
	char path[96], buf[4096];
	snprintf(path, sizeof(path), "/proc/%d/task/%d/comm", pid, tid);
	if (read_small(path, buf, sizeof(buf)) || !strncmp(buf, "memtap-ctl", 10))
		return 0; /* the agent's own thread: it runs the check */
	snprintf(path, sizeof(path), "/proc/%d/task/%d/status", pid, tid);
	if (read_small(path, buf, sizeof(buf)))
		return 0;
	const char *b = strstr(buf, "\nSigBlk:");
	if (!b)
		return 0;
	unsigned long long mask = strtoull(b + 9, NULL, 16);
	for (int sig = SIGRTMAX - 11; sig <= SIGRTMAX - 2; sig++)
		if ((mask >> (sig - 1)) & 1)
			return 1;
	return 0;
}

static void hold_threads(int pid, struct hold *hs)
{
	char path[64];
	snprintf(path, sizeof(path), "/proc/%d/task", pid);
	DIR *d = opendir(path);
	struct dirent *de;
	while (d && (de = readdir(d))) {
		int tid = atoi(de->d_name);
		if (tid <= 0 || hs->n >= MT_LEAKS_HELD_MAX || !wants_hold(pid, tid))
			continue;
		if (hs->n == hs->cap) {
			size_t cap = hs->cap ? 2 * hs->cap : 16;
			struct mt_leaks_held *h = realloc(hs->h, cap * sizeof(*h));
			int *sg = h ? realloc(hs->sig, cap * sizeof(*sg)) : NULL;
			if (h)
				hs->h = h;
			if (!h || !sg)
				break;
			hs->sig = sg;
			hs->cap = cap;
		}
		if (ptrace(PTRACE_SEIZE, tid, 0, 0) < 0)
			continue; /* not ours to trace (or traced already): the agent copes */
		int st = 0, got = 0;
		if (ptrace(PTRACE_INTERRUPT, tid, 0, 0) == 0)
			for (int i = 0; i < 1000 && !(got = waitpid(tid, &st, __WALL | WNOHANG)); i++)
				usleep(1000);
		if (got <= 0 || !WIFSTOPPED(st))
			continue; /* gone, or stuck: left seized, the kernel lets it go at our exit */
		struct user_regs_struct regs;
		if (ptrace(PTRACE_GETREGS, tid, 0, &regs) < 0) {
			ptrace(PTRACE_DETACH, tid, 0, 0);
			continue;
		}
		struct mt_leaks_held *h = &hs->h[hs->n];
		memset(h, 0, sizeof(*h));
		h->tid = tid;
		h->sp = regs.rsp;
		h->fs_base = regs.fs_base;
		_Static_assert(sizeof(regs) == sizeof(h->regs), "leaks.h: struct user_regs_struct");
		memcpy(h->regs, &regs, sizeof(regs));
		hs->sig[hs->n++] = (st >> 16) == PTRACE_EVENT_STOP ? 0 : WSTOPSIG(st);
	}
	if (d)
		closedir(d);
}

static void let_go(struct hold *hs)
{
	for (size_t i = 0; i < hs->n; i++)
		ptrace(PTRACE_DETACH, hs->h[i].tid, 0, (void *)(uintptr_t)hs->sig[i]);
	free(hs->h);
	free(hs->sig);
}

int mt_ctl_leaks(pid_t pid, char **response, char *err, size_t errlen)
{
	struct hold hs = {0};
	/* MEMTAP_LEAKS_NO_HOLD=1: no ptrace (the agent scans such threads
	 * unstopped, and says so) */
	const char *nh = getenv("MEMTAP_LEAKS_NO_HOLD");
	if (!(nh && *nh == '1'))
		hold_threads((int)pid, &hs);
	char req[64];
	snprintf(req, sizeof(req), "leaks %zu\n", hs.n);
	int r = mt_ctl_send_data(pid, req, hs.h, hs.n * sizeof(*hs.h), response, err, errlen);
	let_go(&hs);
	return r;
}

/* leaks: the agent has checked and left the result in its live file; the
 * sites, symbolized, from a snapshot taken as `ctl dump` takes one. */
static int ctl_leaks_sites(int pid)
{
	char lpath[PATH_MAX], err[1024];
	struct mt_live_hdr h;
	if (mt_live_find(pid, lpath, sizeof(lpath), err, sizeof(err)) ||
	    mt_live_read_header(lpath, &h, err, sizeof(err)))
		return mt_error("ctl %d leaks: the per-site figures are in the live counter file, which "
				"cannot be read: %s", pid, err), 1;
	char prefix[PATH_MAX];
	snprintf(prefix, sizeof(prefix), "%.*s", (int)sizeof(h.prefix), h.prefix);
	struct mt_session *sess;
	struct mt_session_opts so = {.prefix = prefix, .run_id = h.run_id, .stacks = h.stacks != 0};
	if (mt_session_new(&so, &sess))
		return mt_error("ctl: out of memory"), 1;
	struct mt_profile *p = NULL;
	int ret = mt_session_adopt(sess, pid, err, sizeof(err));
	if (!ret)
		ret = mt_session_snapshot(sess, pid, &p, err, sizeof(err));
	if (!ret && p && p->leaks)
		ret = mt_render_leaks_text(stdout, p, 10);
	mt_profile_free(p);
	mt_session_free(sess);
	if (ret)
		return mt_error("ctl %d leaks: %s", pid, err), 1;
	return 0;
}

int cmd_ctl(int argc, char **argv)
{
	if (argc >= 2 && (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help"))) {
		ctl_usage(stdout);
		return 0;
	}
	if (argc < 3 || argc > 4) {
		ctl_usage(stderr);
		return 2;
	}
	char *end;
	long pid = strtol(argv[1], &end, 10);
	if (*end || pid <= 0 || pid > INT32_MAX)
		return mt_error("ctl: '%s' is not a process id", argv[1]), 2;

	/* Build and check the request here, so a typo is reported without
	 * touching the process. */
	char req[MT_CTL_MAX_REQUEST + 2], err[256];
	char arg[PATH_MAX] = "";
	if (argc == 4) {
		if (strcmp(argv[2], "dump") == 0 && argv[3][0] != '/') {
			char cwd[PATH_MAX];
			if (!getcwd(cwd, sizeof(cwd)))
				return mt_error("ctl: getcwd: %s", strerror(errno)), 2;
			snprintf(arg, sizeof(arg), "%s/%s", cwd, argv[3]);
		} else {
			snprintf(arg, sizeof(arg), "%s", argv[3]);
		}
	}
	int len = snprintf(req, sizeof(req), "%s%s%s\n", argv[2], arg[0] ? " " : "", arg);
	struct mt_ctl_request parsed;
	if (len <= 0 || (size_t)len >= sizeof(req) || mt_ctl_parse(req, (size_t)len, &parsed, err, sizeof(err)))
		return mt_error("ctl: %s", len > 0 && (size_t)len < sizeof(req) ? err : "request too long"), 2;

	/* dump: this command reads the live counter file and writes the profile
	 * itself, with the caller's permissions, to PATH or under the session's
	 * prefix; the process does nothing for it. */
	if (parsed.cmd == MT_CTL_DUMP) {
		char lpath[PATH_MAX], lerr[1024];
		struct mt_live_hdr h;
		if (!mt_live_find((int)pid, lpath, sizeof(lpath), lerr, sizeof(lerr)) &&
		    !mt_live_read_header(lpath, &h, lerr, sizeof(lerr)))
			return ctl_dump((int)pid, &h, arg[0] ? arg : NULL);
	}
	/* detach: as `memtap detach -p PID`, which writes the last profile. */
	if (parsed.cmd == MT_CTL_DETACH) {
		char last[PATH_MAX] = "";
		int r = mt_detach_pid((pid_t)pid, NULL, "text", NULL, 1, last, sizeof(last));
		if (!r && last[0])
			printf("%s\n", last);
		return r;
	}
	char *resp = NULL, cerr[1024];
	int r;
	if (parsed.cmd == MT_CTL_LEAKS) {
		if (arg[0])
			return mt_error("ctl: leaks takes no argument"), 2;
		r = mt_ctl_leaks((pid_t)pid, &resp, cerr, sizeof(cerr));
	} else {
		r = mt_ctl_send((pid_t)pid, req, &resp, cerr, sizeof(cerr));
	}
	if (r < 0)
		return mt_error("ctl: %s", cerr), 1;
	if (r > 0) {
		mt_error("ctl %ld %s: %s", pid, argv[2], resp);
		free(resp);
		return 1;
	}
	fputs(resp, stdout);
	free(resp);
	if (parsed.cmd == MT_CTL_LEAKS)
		return ctl_leaks_sites((int)pid);
	return 0;
}
