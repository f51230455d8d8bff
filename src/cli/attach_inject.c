/*
 * memtap attach --via=inject and memtap detach: the agent loaded into a
 * running process with the ptrace injector (src/inject), then driven over its
 * control socket: `attach OPTIONS` installs its GOT hooks, `detach` restores
 * them and writes a last dump, whose summary we print.
 */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "agent_opts.h"
#include "cli.h"
#include "help.h"
#include "live_read.h"
#include "fleet.h"
#include "session.h"
#include "memtap/ctl.h"
#include "memtap/format.h"
#include "memtap/inject.h"

static volatile sig_atomic_t stop_requested;

static void on_signal(int sig)
{
	(void)sig;
	stop_requested = 1;
}

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* "attached", "loaded", or NULL when PID has no agent (ERR says why). */
static const char *agent_state(pid_t pid, char *err, size_t errlen)
{
	char *resp;
	if (mt_ctl_send(pid, "status\n", &resp, err, errlen) != 0) {
		free(resp);
		return NULL;
	}
	const char *st = strstr(resp, "mode: attached") ? "attached"
			 : strstr(resp, "mode: preloaded") ? "preloaded" : "loaded";
	free(resp);
	return st;
}

/* The summary of the profiles SESSION wrote (one per member). */
static void print_summary(struct mt_session *sess, const char *prefix, const char *format,
			  const char *report_file)
{
	struct mt_loaded l;
	char *const *paths;
	size_t n;
	mt_session_written(sess, &paths, &n);
	if (mt_load_profiles(paths, n, &l) || !l.n) {
		mt_loaded_free(&l);
		return;
	}
	mt_loaded_latest(&l);
	FILE *out = stderr;
	if (report_file && !(out = fopen(report_file, "w"))) {
		mt_error("cannot write the report to %s: %s", report_file, strerror(errno));
		out = stderr;
	}
	mt_render_summary(out, format, &l, prefix);
	if (out != stderr)
		fclose(out);
	mt_loaded_free(&l);
}

/* Says how members other than by a detach ended, and what went wrong. */
static void report_members(struct mt_session *sess)
{
	size_t n;
	const struct mt_member *m = mt_session_members(sess, &n);
	for (size_t i = 0; i < n; i++) {
		if (m[i].error[0]) {
			mt_error("%s", m[i].error);
		} else if (m[i].state == MT_MEMBER_ENDED) {
			char how[256];
			struct mt_profile p = {.end = m[i].end, .end_code = m[i].end_code};
			mt_end_describe(&p, how, sizeof(how));
			fprintf(stderr, "memtap: process %d (%.60s) %s%s; its final profile is %s\n", m[i].pid,
				m[i].command, how, m[i].end == MT_END_SIGNAL || m[i].end == MT_END_VANISHED ? ", profile recovered" : "", m[i].final_path);
		}
	}
}

/* Detaches every member still attached (the root and the children it forked
 * meanwhile), then writes their last profiles from their files. */
static int detach_all(struct mt_session *sess)
{
	size_t n;
	int failed = 0;
	const struct mt_member *m = mt_session_members(sess, &n);
	for (size_t i = 0; i < n; i++) {
		char *resp = NULL, err[1024];
		if (m[i].state != MT_MEMBER_RUNNING)
			continue;
		/* -f entry hooks are put back first, with the threads stopped. */
		if (mt_ctl_send(m[i].pid, "status\n", &resp, err, sizeof(err)) == 0 && strstr(resp, "entry_hooks:") &&
		    !strstr(resp, "entry_hooks: 0 patched") &&
		    mt_attach_unpatch(m[i].pid, "libmemtap", err, sizeof(err)))
			mt_error("detach %d: the -f entry hooks stay in place, inert: %s", m[i].pid, err);
		free(resp);
		resp = NULL;
		int r = mt_ctl_send(m[i].pid, "detach\n", &resp, err, sizeof(err));
		if (r < 0 && kill(m[i].pid, 0) == 0)
			failed = mt_error("detach %d: %s", m[i].pid, err);
		else if (r > 0)
			failed = mt_error("detach %d: %s", m[i].pid, resp);
		free(resp);
		mt_session_mark_detach(sess, m[i].pid);
	}
	return mt_session_finish(sess, 1) || failed;
}

/* memtap detach: the agent restores its hooks; this command writes the
 * last profile from the live file (with its own permissions, under PREFIX,
 * or the attach's -o when none is given). */
int mt_detach_pid(pid_t pid, const char *output, const char *format, const char *report_file, int quiet,
		  char *last, size_t lastlen)
{
	char path[PATH_MAX], err[1024], prefix[PATH_MAX];
	struct mt_live_hdr h;
	if (mt_live_find(pid, path, sizeof(path), err, sizeof(err)) ||
	    mt_live_read_header(path, &h, err, sizeof(err))) {
		/* No live file: an agent in private memory writes its own. */
		char *resp;
		int r = mt_ctl_send(pid, "detach\n", &resp, err, sizeof(err));
		if (r)
			return mt_error("detach: %s", r < 0 ? err : resp), free(r > 0 ? resp : NULL), 1;
		fprintf(stderr, "memtap: detached from %d; its last profile is %s\n", (int)pid, resp);
		snprintf(last, lastlen, "%s", resp);
		free(resp);
		return 0;
	}
	if (output) {
		if (mt_resolve_prefix(output, "process", prefix, sizeof(prefix)))
			return 2;
	} else {
		snprintf(prefix, sizeof(prefix), "%.*s", (int)sizeof(h.prefix), h.prefix);
	}
	struct mt_session *sess;
	struct mt_session_opts so = {.prefix = prefix, .run_id = h.run_id, .stacks = h.stacks != 0};
	if (mt_session_new(&so, &sess))
		return mt_error("detach: out of memory"), 1;
	if (mt_session_adopt(sess, pid, err, sizeof(err))) {
		mt_session_free(sess);
		return mt_error("detach: %s", err), 1;
	}
	int ret = detach_all(sess);
	report_members(sess);
	if (!quiet)
		print_summary(sess, prefix, format, report_file);
	size_t nw;
	char *const *written;
	mt_session_written(sess, &written, &nw);
	if (nw) {
		fprintf(stderr, "memtap: detached from %d; its last profile is %s\n", (int)pid, written[0]);
		snprintf(last, lastlen, "%s", written[0]);
	}
	mt_session_free(sess);
	return ret ? 1 : 0;
}

/* Attaches R->pid into A's session (made by the first call; its prefix
 * from R->output and the first process's name): the agent injected unless
 * an earlier attach left it there, attached with the options, the -f entry
 * hooks patched, its live file adopted.  0, or the exit status after saying
 * what failed (the process is left as it was). */
int mt_attach_add(const struct mt_attach_req *r, struct mt_attach *A)
{
	char agent[PATH_MAX], err[PATH_MAX * 3], comm[64] = "process";
	if (A->nroots >= MT_ATTACH_MAX)
		return mt_error("attach: at most %d processes", MT_ATTACH_MAX), 2;
	if (mt_find_companion("libmemtap.so", agent, sizeof(agent), err, sizeof(err)))
		return mt_error("the agent library is missing: %s", err), 2;
	char path[64];
	snprintf(path, sizeof(path), "/proc/%d/comm", (int)r->pid);
	FILE *f = fopen(path, "r");
	if (f) {
		if (fgets(comm, sizeof(comm), f))
			comm[strcspn(comm, "\n")] = '\0';
		fclose(f);
	}
	if (!A->sess) {
		if (mt_resolve_prefix(r->output, comm, A->prefix, sizeof(A->prefix)))
			return 2;
		mt_live_sweep();
		/* The session: this command reads the counters from the agent's
		 * live file and writes every profile itself. */
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		A->run_id = (((uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec) ^ (uint64_t)getpid()) &
			    INT64_MAX;
		struct mt_session_opts so = {.prefix = A->prefix, .run_id = A->run_id, .interval_ms = r->interval_ms,
					     .stacks = r->stacks};
		if (mt_session_new(&so, &A->sess))
			return mt_error("attach: out of memory"), 1;
		mt_fleet_attach(r->fleet, A->sess);
	}

	/* Load the agent unless an earlier attach already did. */
	const char *state = agent_state(r->pid, err, sizeof(err));
	if (state && !strcmp(state, "attached"))
		return mt_error("attach: process %d is attached already; memtap detach -p %d first",
				(int)r->pid, (int)r->pid), 1;
	if (state && !strcmp(state, "preloaded"))
		return mt_error("attach: process %d was started by memtap run and is traced already; "
				"use memtap ctl %d ...", (int)r->pid, (int)r->pid), 1;
	double t0 = now_s();
	if (!state) {
		if (mt_inject_check(r->pid, err, sizeof(err)))
			return mt_error("attach: %s", err), 1;
		uint64_t handle;
		if (mt_inject_load(r->pid, agent, &handle, err, sizeof(err)))
			return mt_error("attach: %s", err), 1;
		/* The agent's constructor starts its control thread. */
		for (int i = 0; i < 100 && !(state = agent_state(r->pid, err, sizeof(err))); i++)
			usleep(20000);
		if (!state)
			return mt_error("attach: the agent was loaded into %d but does not answer: %s",
					(int)r->pid, err), 1;
	}

	struct mt_agent_opts ao = r->ao;
	char self[64], words[MT_CTL_MAX_REQUEST], req[MT_CTL_MAX_REQUEST + 16];
	mt_session_self(self, sizeof(self));
	/* Copies: R's own options belong to the caller. */
	memset(&ao, 0, sizeof(ao));
	for (int i = 0; i < MT_AO_COUNT; i++)
		if (r->ao.v[i])
			mt_agent_opt_set(&ao, (enum mt_agent_opt)i, "%s", r->ao.v[i]);
	mt_agent_opt_set(&ao, MT_AO_PREFIX, "%s", A->prefix);
	mt_agent_opt_set(&ao, MT_AO_RUN_ID, "%llu", (unsigned long long)A->run_id);
	mt_agent_opt_set(&ao, MT_AO_SESSION, "%s", self);
	int e = mt_agent_opts_words(&ao, words, sizeof(words));
	mt_agent_opts_free(&ao);
	if (e || snprintf(req, sizeof(req), "attach %s\n", words) >= (int)sizeof(req))
		return mt_error("attach: options too long"), 2;
	char *resp;
	e = mt_ctl_send(r->pid, req, &resp, err, sizeof(err));
	if (e) {
		mt_error("attach: %s", e < 0 ? err : resp);
		free(e > 0 ? resp : NULL);
		return 1;
	}
	resp[strcspn(resp, "\n")] = '\0';
	/* -f entry hooks: patched by this command with every thread stopped. */
	const char *funcs = r->ao.v[MT_AO_FUNCS];
	if (funcs && strstr(funcs, ":at=") && mt_attach_patch(r->pid, "libmemtap", err, sizeof(err))) {
		char *dresp;
		mt_error("attach: -f: %s", err);
		if (mt_ctl_send(r->pid, "detach\n", &dresp, err, sizeof(err)) >= 0)
			free(dresp);
		free(resp);
		return 1;
	}
	if (!r->quiet_start)
		fprintf(stderr, "memtap: %d (%s) %s in %.0f ms; %s\n", (int)r->pid, comm, resp, (now_s() - t0) * 1000,
			r->seconds > 0 ? "tracing until the time is up or Ctrl-C"
				       : "tracing until Ctrl-C (or memtap detach -p PID from elsewhere)");
	free(resp);
	if (mt_session_adopt(A->sess, r->pid, err, sizeof(err)))
		fprintf(stderr, "memtap: %s: the agent writes its own profiles\n", err);
	A->roots[A->nroots++] = r->pid;
	return 0;
}

/* Waits until SECONDS pass (0: no limit), a signal or mt_session_stop().
 * Returns 0 then (detach with mt_attach_end), or 1 when every process
 * attached to ended or was detached by another memtap (said so; nothing to
 * detach). */
int mt_attach_wait(struct mt_attach *A, double seconds)
{
	struct sigaction sa = {.sa_handler = on_signal};
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGHUP, &sa, NULL);
	double end = seconds > 0 ? now_s() + seconds : 0;
	while (!stop_requested && !mt_session_stopping(A->sess) && (!end || now_s() < end)) {
		mt_session_wait(A->sess, 50, NULL);
		mt_session_poll(A->sess);
		size_t n, gone = 0, ended = 0;
		const struct mt_member *m = mt_session_members(A->sess, &n);
		for (int k = 0; k < A->nroots; k++)
			for (size_t i = 0; i < n; i++)
				if (m[i].pid == A->roots[k] && m[i].state != MT_MEMBER_RUNNING) {
					gone++;
					ended += m[i].state == MT_MEMBER_ENDED;
					break;
				}
		if (A->nroots && gone == (size_t)A->nroots) {
			if (ended) {
				report_members(A->sess);
			} else {
				for (int k = 0; k < A->nroots; k++)
					fprintf(stderr, "memtap: %d was detached by another memtap, which wrote its "
						"profile\n", (int)A->roots[k]);
			}
			return 1;
		}
	}
	return 0;
}

/* Detaches every process still attached and writes their last profiles;
 * the summary unless QUIET.  Returns the exit status; frees the session. */
int mt_attach_end(struct mt_attach *A, const char *format, const char *report_file, int quiet)
{
	int ret = detach_all(A->sess);
	report_members(A->sess);
	if (!quiet)
		print_summary(A->sess, A->prefix, format, report_file);
	size_t nw;
	char *const *written;
	mt_session_written(A->sess, &written, &nw);
	for (int k = 0; k < A->nroots; k++)
		for (size_t i = nw; i-- > 0;) {
			char tag[32];
			snprintf(tag, sizeof(tag), ".%d.", (int)A->roots[k]);
			if (strstr(written[i] + strlen(A->prefix), tag) == written[i] + strlen(A->prefix)) {
				fprintf(stderr, "memtap: detached from %d; its last profile is %s\n", (int)A->roots[k],
					written[i]);
				break;
			}
		}
	mt_session_free(A->sess);
	A->sess = NULL;
	return ret ? 1 : 0;
}

int mt_attach_inject(const struct mt_attach_req *r)
{
	struct mt_attach A = {0};
	int ret = mt_attach_add(r, &A);
	if (ret || mt_attach_wait(&A, r->seconds)) {
		mt_session_free(A.sess);
		return ret;
	}
	return mt_attach_end(&A, r->format, r->report_file, r->quiet);
}
int cmd_detach(int argc, char **argv)
{
	const char *format = "text", *report_file = NULL, *output = NULL;
	pid_t pid = 0;
	int quiet = 0, c;
	optind = 1;
	while ((c = mt_cmd_getopt(MT_C_DETACH, argc, argv)) >= 0) {
		char *end;
		switch (c) {
		case MT_CO_DETACH_PID:
			pid = (pid_t)strtol(optarg, &end, 10);
			if (*end || pid <= 0)
				return mt_error("detach: -p %s: expected a process id", optarg), 2;
			break;
		case MT_CO_DETACH_REPORT_FILE: report_file = optarg; break;
		case MT_CO_DETACH_OUTPUT: output = optarg; break;
		case MT_CO_DETACH_FORMAT: format = optarg; break;
		case MT_CO_DETACH_QUIET: quiet = 1; break;
		case MT_CO_DETACH_FULL_STACKS: mt_render_full_stacks = 1; break;
		}
	}
	if (c != MT_CMD_DONE)
		return c == MT_CMD_HELPED ? 0 : 2;
	if (optind < argc)
		return mt_error("detach: unexpected argument '%s' (the process is -p PID)", argv[optind]),
		       mt_cli_try_help("detach");
	if (!pid)
		return mt_error("detach: which process? pass -p PID"), mt_cli_try_help("detach");
	if (strcmp(format, "text") && strcmp(format, "json"))
		return mt_error("detach: unknown --format '%s' (text or json)", format), 2;
	char last[PATH_MAX];
	return mt_detach_pid(pid, output, format, report_file, quiet, last, sizeof(last));
}
