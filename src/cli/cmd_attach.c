/*
 * memtap attach: trace a running process without restarting it.
 *   --via=ebpf    uprobes and in-kernel aggregation (src/bpf); nothing is
 *                 loaded into the target
 *   --via=inject  the agent injected with ptrace (the default; attach_inject.c)
 * Also mt_run_ebpf(), `memtap run --via=ebpf`: the same probes from a
 * command's start.
 *
 * Both end the same way: one profile per traced process, written as
 * PREFIX.<pid>.<seq>.mtp (temp file + rename, like the agent's dumps), and
 * the DTrace-layout summary of src/render.
 */
#include <errno.h>
#include <getopt.h>
#include <libgen.h>
#include <limits.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <fcntl.h>

#include "bpf/ebpf.h"
#include "cli.h"
#include "fleet.h"
#include "options.h"
#include "glibc_syms.h"
#include "session.h"
#include "memtap/ctl.h"
#include "memtap/format.h"
#include "memtap/funcspec.h"

static volatile sig_atomic_t stop_sig;
static pid_t run_child;

static void on_stop(int sig)
{
	stop_sig = sig;
}

static void forward(int sig)
{
	if (run_child > 0)
		kill(run_child, sig);
}

/* Options shared by attach and run --via=ebpf. */
struct ebpf_args {
	struct mt_ebpf_opts o;
	const char *output, *report_file, *format;
	int quiet;
};

static int parse_func(const char *spec, struct mt_ebpf_opts *o)
{
	if (o->nuser >= MT_EBPF_MAX_USER)
		return mt_error("-f: at most %d functions", MT_EBPF_MAX_USER);
	struct mt_funcspec fs;
	char err[512];
	if (mt_funcspec_parse(spec, strlen(spec), 1, &fs, err, sizeof(err)))
		return mt_error("-f %s: %s", spec, err);
	if (mt_funcspec_wants_return(&fs) || fs.got)
		return mt_error("-f %s: fail=, out= and got need the agent (--via=inject or memtap run)", spec);
	struct mt_ebpf_fn *f = &o->user[o->nuser];
	memset(f, 0, sizeof(*f));
	snprintf(f->name, sizeof(f->name), "%s", fs.name);
	f->size_arg = fs.size_arg >= 0 ? (unsigned)fs.size_arg + 1 : 0;
	f->pool_arg = fs.pool_arg >= 0 ? (unsigned)fs.pool_arg + 1 : 0;
	o->nuser++;
	return 0;
}

/* The summary of the profiles the session wrote; 0, or -1 when one could
 * not be written. */
static int summarize(struct mt_session *sess, const struct ebpf_args *a, const char *prefix, FILE *dflt)
{
	size_t nm, nw;
	int ret = 0;
	const struct mt_member *m = mt_session_members(sess, &nm);
	for (size_t i = 0; i < nm; i++)
		if (m[i].error[0])
			ret = mt_error("%s", m[i].error);
	if (a->quiet)
		return ret;
	char *const *written;
	struct mt_loaded l;
	mt_session_written(sess, &written, &nw);
	mt_load_profiles(written, nw, &l);
	mt_loaded_latest(&l);
	FILE *out = dflt;
	if (a->report_file && !(out = fopen(a->report_file, "w"))) {
		mt_error("cannot write the report to %s: %s", a->report_file, strerror(errno));
		out = dflt;
	}
	mt_render_summary(out, a->format, &l, prefix);
	if (!strcmp(a->format, "text"))
		fprintf(out, "(eBPF backend: the totals are not collected; free sizes are glibc's usable sizes%s)\n",
			a->o.stacks ? "; call sites are frame-pointer stacks, every allocation call, nothing in use" : "");
	if (out != dflt)
		fclose(out);
	mt_loaded_free(&l);
	return ret;
}

/* A session on the eBPF collector: profiles written as processes end, and
 * a last one of each at the end. */
/* --glibc: a lock-wait sample of every running member at each poll. */
static void glibc_tick(struct mt_session *s, void *arg)
{
	(void)arg;
	size_t n;
	const struct mt_member *m = mt_session_members(s, &n);
	for (size_t i = 0; i < n; i++)
		if (m[i].state == MT_MEMBER_RUNNING)
			mt_glibc_outside_tick(m[i].pid);
}

static struct mt_session *ebpf_session(struct mt_ebpf *e, const char *prefix, uint64_t interval_ms, int stacks,
				       int glibc)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	struct mt_session_opts so = {.prefix = prefix, .interval_ms = interval_ms, .stacks = stacks,
				     .run_id = (((uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec) ^
						(uint64_t)getpid()) & INT64_MAX};
	struct mt_session *sess;
	if (mt_session_new(&so, &sess))
		return NULL;
	mt_session_use_ebpf(sess, e);
	if (glibc) {
		struct mt_session_observer o = {.tick = glibc_tick};
		mt_session_observe(sess, &o);
	}
	return sess;
}

/* The eBPF backend's options from the command line's. */
static int ebpf_args_of(const struct mt_cli_opts *c, struct ebpf_args *a)
{
	memset(a, 0, sizeof(*a));
	a->output = c->output;
	a->report_file = c->report_file;
	a->format = c->format;
	a->quiet = c->quiet;
	a->o.follow = c->follow;
	a->o.within = c->within;
	a->o.heap_events = c->heap_events || c->glibc; /* --glibc's sbrk figures: the system calls */
	a->o.glibc = c->glibc || c->heap_events; /* --heap-events: the old name, and its functions */
	a->o.failures = c->failures;
	a->o.verbose = c->verbose;
	a->o.stacks = c->stacks;
	for (int i = 0; i < c->nfuncs; i++)
		if (parse_func(c->funcs[i], &a->o))
			return -1;
	return 0;
}

static int wait_attached(struct mt_ebpf *e, struct mt_session *sess, pid_t pid, double seconds)
{
	struct timespec t0, t;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	while (!stop_sig && !mt_session_stopping(sess)) {
		mt_session_wait(sess, 50, NULL);
		clock_gettime(CLOCK_MONOTONIC, &t);
		double el = (double)(t.tv_sec - t0.tv_sec) + (double)(t.tv_nsec - t0.tv_nsec) / 1e9;
		if (seconds > 0 && el >= seconds)
			break;
		mt_session_poll(sess);
		if (mt_ebpf_exited(e, pid) || (kill(pid, 0) < 0 && errno == ESRCH))
			return 1;
	}
	return 0;
}

/* An attach by eBPF in steps (memtap attach --via=ebpf, memtap top
 * --via=ebpf -p PID). */
struct mt_ebpf_attach {
	struct ebpf_args a;
	struct mt_ebpf *e;
	struct mt_session *sess;
	struct mt_objlist objs;
	char prefix[PATH_MAX], comm[64];
	pid_t pid;
	int exited;
};

static void ebpf_attach_free(struct mt_ebpf_attach *x)
{
	if (!x)
		return;
	mt_session_free(x->sess);
	mt_ebpf_free(x->e);
	mt_objlist_free(&x->objs);
	free(x);
}

int mt_ebpf_attach_start(const struct mt_cli_opts *c, int quiet_start, struct mt_ebpf_attach **out)
{
	char err[8192];
	pid_t pid = c->pid;
	int r;
	*out = NULL;
	struct mt_ebpf_attach *x = calloc(1, sizeof(*x));
	if (!x)
		return mt_error("attach: out of memory"), 1;
	x->pid = pid;
	if (ebpf_args_of(c, &x->a))
		return free(x), 2;
	if (kill(pid, 0) < 0 && errno == ESRCH)
		return free(x), mt_error("attach: process %d does not exist", (int)pid), 1;
	if (mt_ebpf_check(err, sizeof(err)))
		return free(x), mt_error("attach: %s", err), 1;
	r = mt_objlist_of_pid(pid, &x->objs, err, sizeof(err));
	if (r) {
		ebpf_attach_free(x);
		if (r == -ESRCH)
			return mt_error("attach: process %d does not exist (it may have just exited)", (int)pid), 1;
		return mt_error("attach: process %d: %s", (int)pid, err), 1;
	}
	char path[64];
	snprintf(path, sizeof(path), "/proc/%d/comm", (int)pid);
	FILE *cf = fopen(path, "re");
	if (cf && fgets(x->comm, sizeof(x->comm), cf))
		x->comm[strcspn(x->comm, "\n")] = '\0';
	if (cf)
		fclose(cf);
	if (mt_resolve_prefix(x->a.output, x->comm[0] ? x->comm : "attach", x->prefix, sizeof(x->prefix))) {
		ebpf_attach_free(x);
		return 2;
	}
	x->a.o.pid = pid;
	/* From here on a signal ends the session the normal way, so that the
	 * probes are removed (also when it comes while attaching). */
	struct sigaction sa = {.sa_handler = on_stop};
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGHUP, &sa, NULL);
	r = mt_ebpf_start(&x->a.o, &x->objs, &x->e, err, sizeof(err));
	if (r) {
		x->e = NULL;
		ebpf_attach_free(x);
		if (kill(pid, 0) < 0 && errno == ESRCH)
			return mt_error("attach: process %d exited", (int)pid), 1;
		return mt_error("attach: %s", err), 1;
	}
	if (!quiet_start) {
		char where[4096];
		mt_ebpf_describe(x->e, where, sizeof(where));
		fprintf(stderr, "memtap: tracing %d (%s) with eBPF: %s%s; %s\n", (int)pid, x->comm, where,
			x->a.o.follow ? ", children too" : "",
			c->seconds > 0 ? "stops after -d, or Ctrl-C" : "Ctrl-C to stop");
	}
	if (!(x->sess = ebpf_session(x->e, x->prefix, c->interval_ms, x->a.o.stacks, x->a.o.glibc))) {
		ebpf_attach_free(x);
		return mt_error("attach: out of memory"), 1;
	}
	mt_fleet_attach(c->endpoint, x->sess);
	*out = x;
	return 0;
}

struct mt_session *mt_ebpf_attach_session(struct mt_ebpf_attach *x)
{
	return x->sess;
}

int mt_ebpf_attach_wait(struct mt_ebpf_attach *x, double seconds)
{
	return x->exited = wait_attached(x->e, x->sess, x->pid, seconds);
}

int mt_ebpf_attach_end(struct mt_ebpf_attach *x, int quiet)
{
	if (x->exited)
		fprintf(stderr, "memtap: process %d exited\n", (int)x->pid);
	mt_session_finish(x->sess, 1);
	mt_ebpf_free(x->e);
	x->e = NULL;
	if (quiet)
		x->a.quiet = 1;
	int r = summarize(x->sess, &x->a, x->prefix, stdout);
	ebpf_attach_free(x);
	return r ? 1 : 0;
}

int cmd_attach(int argc, char **argv)
{
	struct mt_cli_opts c;
	int r = mt_cli_parse(MT_CMD_ATTACH, argc, argv, &c);
	if (r)
		return r > 0 ? 0 : 2;
	if (mt_fleet_open(&c, &c.endpoint))
		return 2;
	if (c.via == MT_VIA_AGENT) {
		struct mt_attach_req req = {.pid = c.pid, .seconds = c.seconds, .output = c.output,
					    .report_file = c.report_file, .format = c.format, .quiet = c.quiet,
					    .interval_ms = c.interval_ms, .stacks = c.stacks, .fleet = c.endpoint};
		char err[2048], list[4096];
		if (mt_cli_funcs_list(&c, list, sizeof(list)))
			return 2;
		if (list[0] && mt_funcs_for_pid(c.pid, list, sizeof(list), err, sizeof(err)))
			return mt_error("attach: %s", err), 1;
		mt_cli_agent_opts(&c, list, &req.ao);
		int ret = mt_attach_inject(&req);
		mt_agent_opts_free(&req.ao);
		return ret;
	}
	struct mt_ebpf_attach *x;
	if ((r = mt_ebpf_attach_start(&c, 0, &x)))
		return r;
	mt_ebpf_attach_wait(x, c.seconds);
	return mt_ebpf_attach_end(x, 0);
}

/* Waits for `run`'s child.  With --stacks, reads the traced processes'
 * mappings every 20 ms meanwhile: they are gone with the process, and the
 * call sites need them to be symbolized. */
static void wait_run_child(struct mt_session *sess, int *status)
{
	for (;;) {
		pid_t r = waitpid(run_child, status, WNOHANG);
		if (r == run_child || (r < 0 && errno != EINTR))
			return;
		if (r == 0) {
			mt_session_poll(sess);
			mt_session_wait(sess, 20, NULL);
		}
	}
}

int mt_run_ebpf(const struct mt_cli_opts *c, char **cmdv)
{
	struct ebpf_args a;
	if (ebpf_args_of(c, &a))
		return 2;
	char err[8192], prefix[PATH_MAX];
	if (mt_ebpf_check(err, sizeof(err)))
		return mt_error("run: %s", err), 2;
	struct mt_objlist objs;
	if (mt_objlist_of_exe(cmdv[0], &objs, err, sizeof(err))) {
		mt_objlist_free(&objs);
		return mt_error("run: %s", err), 127;
	}
	if (mt_resolve_prefix(a.output, cmdv[0], prefix, sizeof(prefix))) {
		mt_objlist_free(&objs);
		return 2;
	}
	char command[MT_TEXT_MAX] = "";
	for (int i = 0; cmdv[i]; i++)
		snprintf(command + strlen(command), sizeof(command) - strlen(command), "%s%s", i ? " " : "", cmdv[i]);

	/* The child waits on a pipe until the probes are in, then execs. */
	int go[2];
	if (pipe2(go, O_CLOEXEC) < 0)
		return mt_error("run: pipe: %s", strerror(errno)), 2;
	run_child = fork();
	if (run_child < 0)
		return mt_error("run: fork: %s", strerror(errno)), 2;
	if (run_child == 0) {
		char b;
		close(go[1]);
		if (read(go[0], &b, 1) != 1)
			_exit(126);
		execvp(cmdv[0], cmdv);
		fprintf(stderr, "memtap: cannot run %s: %s\n", cmdv[0], strerror(errno));
		_exit(errno == ENOENT ? 127 : 126);
	}
	close(go[0]);
	a.o.pid = run_child;
	a.o.command = command;
	/* Signals go to the command, before the probes are in too: memtap
	 * ends with it and removes them. */
	signal(SIGINT, SIG_IGN);
	signal(SIGQUIT, SIG_IGN);
	signal(SIGTERM, forward);
	signal(SIGHUP, forward);
	struct mt_ebpf *e;
	int r = mt_ebpf_start(&a.o, &objs, &e, err, sizeof(err));
	if (r) {
		close(go[1]);
		waitpid(run_child, NULL, 0);
		mt_objlist_free(&objs);
		return mt_error("run: %s", err), 2;
	}
	if (a.o.verbose) {
		char where[4096];
		mt_ebpf_describe(e, where, sizeof(where));
		fprintf(stderr, "memtap: eBPF probes: %s\n", where);
	}
	if (write(go[1], "g", 1) != 1)
		mt_error("run: cannot start %s: %s", cmdv[0], strerror(errno));
	close(go[1]);
	int status = 0;
	struct mt_session *sess = ebpf_session(e, prefix, c->interval_ms, a.o.stacks, a.o.glibc);
	if (!sess) {
		mt_ebpf_free(e);
		mt_objlist_free(&objs);
		return mt_error("run: out of memory"), 2;
	}
	mt_fleet_attach(c->endpoint, sess);
	wait_run_child(sess, &status);
	mt_session_finish(sess, 1);
	mt_ebpf_free(e);
	mt_objlist_free(&objs);
	int failed_exec = WIFEXITED(status) && WEXITSTATUS(status) >= 126;
	if (failed_exec)
		a.quiet = 1;
	summarize(sess, &a, prefix, stderr);
	mt_session_free(sess);
	if (WIFSIGNALED(status)) {
		int sig = WTERMSIG(status);
		mt_error("%s killed by signal %d (%s)", cmdv[0], sig, strsignal(sig));
		return 128 + sig;
	}
	return WEXITSTATUS(status);
}
