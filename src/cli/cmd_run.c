/*
 * memtap run: start a command with the agent preloaded, wait for it, print
 * the DTrace-layout summary of every traced process of this run, and return
 * the command's exit status.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <glob.h>
#include <poll.h>
#include <libgen.h>
#include <limits.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "agent_opts.h"
#include "cli.h"
#include "fleet.h"
#include "live_read.h"
#include "memtap/format.h"
#include "options.h"
#include "session.h"

static pid_t child;
static int child_group; /* the child leads a process group of its own */

/* TERM and HUP go to the program (to its whole group when it has its own:
 * a terminal's hangup would have reached them all). */
static void forward(int sig)
{
	if (child > 0)
		kill(child_group ? -child : child, sig);
}


/* Makes PREFIX absolute (the traced program may chdir) and checks that its
 * directory is writable, so the run does not end without profiles. */
int mt_resolve_prefix(const char *in, const char *cmd, char *out, size_t outlen)
{
	char tmp[PATH_MAX], dir[PATH_MAX];
	if (in)
		snprintf(tmp, sizeof(tmp), "%s", in);
	else
		snprintf(tmp, sizeof(tmp), "memtap.%s", strrchr(cmd, '/') ? strrchr(cmd, '/') + 1 : cmd);
	snprintf(dir, sizeof(dir), "%s", tmp);
	char *d = dirname(dir);
	char real[PATH_MAX];
	if (!realpath(d, real))
		return mt_error("output directory %s: %s; create it or pass -o PREFIX", d, strerror(errno));
	if (access(real, W_OK | X_OK) < 0)
		return mt_error("cannot write profiles to %s: %s; pass -o PREFIX in a writable directory",
				real, strerror(errno));
	char base[PATH_MAX];
	snprintf(base, sizeof(base), "%s", tmp);
	int n = snprintf(out, outlen, "%s/%s", real, basename(base));
	return n > 0 && (size_t)n < outlen ? 0 : mt_error("output prefix too long");
}

/* The profiles this run produced: per process, its exit profile (or, for a
 * process that died without one, its latest dump). */
static int collect(const char *prefix, uint64_t run_id, struct mt_loaded *l)
{
	char pattern[PATH_MAX + 16];
	glob_t g;
	snprintf(pattern, sizeof(pattern), "%s.*.*.%s", prefix, MT_FILE_EXT);
	memset(l, 0, sizeof(*l));
	if (glob(pattern, 0, NULL, &g) != 0)
		return 0;
	int failed = mt_load_profiles(g.gl_pathv, g.gl_pathc, l);
	globfree(&g);
	size_t keep = 0;
	for (size_t i = 0; i < l->n; i++) {
		if (l->items[i].profile->run_id == run_id)
			l->items[keep++] = l->items[i];
		else
			mt_profile_free(l->items[i].profile);
	}
	l->n = keep;
	mt_loaded_latest(l);
	return failed;
}

/* The summary: one line per member that ended other than by exit (or whose
 * profile is missing), then the DTrace-layout tables. */
static int summarize(struct mt_session *s, const char *prefix, uint64_t run_id, const char *format,
		     const char *report_file)
{
	struct mt_loaded l;
	size_t nm;
	const struct mt_member *m = mt_session_members(s, &nm);
	const char *root_err = mt_session_root_error(s);
	if (root_err)
		mt_error("%s", root_err);
	for (size_t i = 0; i < nm; i++) {
		char how[256];
		struct mt_profile p = {.end = m[i].end, .end_code = m[i].end_code};
		mt_end_describe(&p, how, sizeof(how));
		if (m[i].error[0])
			mt_error("%s", m[i].error);
		else if ((m[i].end == MT_END_SIGNAL || m[i].end == MT_END_VANISHED) && m[i].final_path[0])
			mt_error("process %d (%.60s) %s; profile recovered: %s", m[i].pid, m[i].command, how,
				 m[i].final_path);
	}
	collect(prefix, run_id, &l);
	FILE *out = stderr;
	if (report_file && !(out = fopen(report_file, "w"))) {
		mt_error("cannot write the report to %s: %s", report_file, strerror(errno));
		out = stderr;
	}
	mt_render_summary(out, format, &l, prefix);
	if (out != stderr)
		fclose(out);
	mt_loaded_free(&l);
	return 0;
}

static volatile sig_atomic_t got_child;

static void on_child(int sig)
{
	(void)sig;
	got_child = 1;
}

/* Starts CMDV traced (memtap run's start, shared with memtap top --
 * PROGRAM).  LOG: the program's stdin is /dev/null, its stdout and stderr go
 * to LOG and it runs in a process group of its own (a screen owns the
 * terminal); NULL: it shares memtap's terminal.  0, or the exit status
 * after saying what failed. */
int mt_run_start(const struct mt_cli_opts *o, char **cmdv, const char *log, struct mt_run *run)
{
	char agent[PATH_MAX], err[PATH_MAX * 3], funcs[16384];
	memset(run, 0, sizeof(*run));
	if (mt_cli_funcs_list(o, funcs, sizeof(funcs)))
		return 2;
	if (mt_find_companion("libmemtap.so", agent, sizeof(agent), err, sizeof(err)))
		return mt_error("the agent library is missing: %s", err), 2;
	if (mt_target_check(cmdv[0], err, sizeof(err)))
		return mt_error("run: %s", err), 2;
	if (mt_resolve_prefix(o->output, cmdv[0], run->prefix, sizeof(run->prefix)))
		return 2;
	if (funcs[0] && mt_funcs_for_exe(cmdv[0], funcs, sizeof(funcs), err, sizeof(err)))
		return mt_error("run: %s", err), 2;
	int logfd = -1;
	if (log && (logfd = open(log, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600)) < 0)
		return mt_error("run: cannot write the program's output to %s: %s", log, strerror(errno)), 2;
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	uint64_t run_id = ((uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec) ^ (uint64_t)getpid();
	run_id &= INT64_MAX;
	run->run_id = run_id;
	run->own_group = log != NULL;

	/* The agent's options, in the environment of the child. */
	struct mt_agent_opts ao = {0};
	char self[64];
	mt_session_self(self, sizeof(self));
	mt_agent_opt_set(&ao, MT_AO_PREFIX, "%s", run->prefix);
	mt_agent_opt_set(&ao, MT_AO_RUN_ID, "%llu", (unsigned long long)run_id);
	mt_agent_opt_set(&ao, MT_AO_SESSION, "%s", self);
	mt_cli_agent_opts(o, funcs, &ao);

	/* The session reads every traced process's counters from outside and
	 * writes the profiles: periodic ones, and each process's final one
	 * however it ends. */
	mt_live_sweep();
	struct mt_session_opts so = {.prefix = run->prefix, .run_id = run_id, .interval_ms = o->interval_ms,
				     .stacks = o->stacks};
	if (mt_session_new(&so, &run->sess)) {
		mt_agent_opts_free(&ao);
		if (logfd >= 0)
			close(logfd);
		return mt_error("run: out of memory"), 2;
	}
	mt_fleet_attach(o->endpoint, run->sess);

	struct sigaction sa = {.sa_handler = on_child};
	sigaction(SIGCHLD, &sa, NULL);
	child = fork();
	if (child < 0) {
		mt_agent_opts_free(&ao);
		return mt_error("run: fork: %s", strerror(errno)), 2;
	}
	if (child == 0) {
		char preload[PATH_MAX * 2];
		const char *old_pre = getenv("LD_PRELOAD");
		snprintf(preload, sizeof(preload), "%s%s%s", agent, old_pre && *old_pre ? ":" : "",
			 old_pre ? old_pre : "");
		setenv("LD_PRELOAD", preload, 1);
		setenv("MEMTAP_AGENT", agent, 1);
		mt_agent_opts_env(&ao);
		signal(SIGCHLD, SIG_DFL);
		if (logfd >= 0) {
			int nul = open("/dev/null", O_RDONLY);
			setpgid(0, 0);
			if (nul >= 0)
				dup2(nul, 0);
			dup2(logfd, 1);
			dup2(logfd, 2);
		}
		execvp(cmdv[0], cmdv);
		fprintf(stderr, "memtap: cannot run %s: %s\n", cmdv[0], strerror(errno));
		_exit(errno == ENOENT ? 127 : 126);
	}
	if (logfd >= 0) {
		setpgid(child, child); /* the child does it too: whichever runs first */
		close(logfd);
	}
	run->child = child;
	child_group = run->own_group;
	mt_agent_opts_free(&ao);
	mt_session_set_root(run->sess, child);
	/* Like a shell: keyboard signals reach the child through the terminal,
	 * others are forwarded; memtap waits to print the summary. */
	signal(SIGINT, SIG_IGN);
	signal(SIGQUIT, SIG_IGN);
	signal(SIGTERM, forward);
	signal(SIGHUP, forward);
	return 0;
}

/* Waits for the program to exit, the session polling meanwhile.  A stop
 * asked for (mt_session_stop) is Ctrl-C's: SIGINT to the program (its
 * group, when it has one of its own), then SIGTERM after 5 s and SIGKILL
 * after 10 s if it is still there. */
void mt_run_wait(struct mt_run *run)
{
	sigset_t chld, old;
	sigemptyset(&chld);
	sigaddset(&chld, SIGCHLD);
	struct timespec t0 = {0, 0};
	int sent = 0, reaped = 0;
	for (;;) {
		if (!reaped) {
			pid_t w = waitpid(run->child, &run->status, WNOHANG);
			if (w == run->child) {
				mt_session_set_status(run->sess, run->child, run->status);
				reaped = 1;
			} else if (w < 0 && errno != EINTR) {
				break;
			}
		}
		/* The program is gone.  When this command stopped it, the rest
		 * of its group got the signal too: their final profiles are
		 * this session's to write, so it waits for them (a while). */
		if (reaped && (!sent || !run->own_group))
			break;
		if (mt_session_stopping(run->sess)) {
			struct timespec t;
			clock_gettime(CLOCK_MONOTONIC, &t);
			if (!sent)
				t0 = t;
			double el = (double)(t.tv_sec - t0.tv_sec) + (double)(t.tv_nsec - t0.tv_nsec) / 1e9;
			int sig = !sent ? SIGINT : sent == 1 && el >= 5 ? SIGTERM : sent == 2 && el >= 10 ? SIGKILL : 0;
			if (sig) {
				kill(run->own_group ? -run->child : run->child, sig);
				sent++;
			}
			if (el >= 12)
				break;
		}
		size_t running = mt_session_poll(run->sess);
		if (reaped && !running)
			break;
		/* Woken early by SIGCHLD; otherwise every 20 ms. */
		sigprocmask(SIG_BLOCK, &chld, &old);
		if (!got_child)
			mt_session_wait(run->sess, 20, &old);
		got_child = 0;
		sigprocmask(SIG_SETMASK, &old, NULL);
	}
}

/* The end of a run: final profiles, the summary (unless QUIET), and the
 * program's exit status as memtap's. */
int mt_run_end(struct mt_run *run, const char *cmd, const char *format, const char *report_file, int quiet)
{
	int status = run->status;
	struct mt_session *sess = run->sess;
	mt_session_finish(sess, 0);
	if (WIFEXITED(status) && WEXITSTATUS(status) >= 126 && !quiet) {
		/* exec failed: there is nothing to summarize beyond the error. */
		size_t nw;
		char *const *written;
		mt_session_written(sess, &written, &nw);
		if (!nw) {
			mt_session_free(sess);
			run->sess = NULL;
			return WEXITSTATUS(status);
		}
	}
	if (!quiet)
		summarize(sess, run->prefix, run->run_id, format, report_file);
	int asked = mt_session_stopping(sess);
	mt_session_free(sess);
	run->sess = NULL;
	if (WIFSIGNALED(status)) {
		int sig = WTERMSIG(status);
		mt_error("%s %s by signal %d (%s)", cmd, asked ? "stopped, as asked," : "killed", sig,
			 strsignal(sig));
		return 128 + sig;
	}
	return WEXITSTATUS(status);
}

int cmd_run(int argc, char **argv)
{
	struct mt_cli_opts o;
	int r = mt_cli_parse(MT_CMD_RUN, argc, argv, &o);
	if (r)
		return r > 0 ? 0 : 2;
	if (mt_fleet_open(&o, &o.endpoint))
		return 2;
	if (o.via == MT_VIA_EBPF)
		return mt_run_ebpf(&o, argv + o.argi);
	struct mt_run run;
	if ((r = mt_run_start(&o, argv + o.argi, NULL, &run))) {
		mt_session_free(run.sess);
		return r;
	}
	mt_run_wait(&run);
	return mt_run_end(&run, argv[o.argi], o.format, o.report_file, o.quiet);
}
