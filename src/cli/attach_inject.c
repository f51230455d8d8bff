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

#include "cli.h"
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

/* Renders the profile at PATH as the summary. */
static int print_summary(const char *path, const char *format, const char *report_file)
{
	struct mt_loaded l;
	char *paths[1] = {(char *)path};
	if (mt_load_profiles(paths, 1, &l) || !l.n) {
		mt_loaded_free(&l);
		return -1;
	}
	FILE *out = stderr;
	if (report_file && !(out = fopen(report_file, "w"))) {
		mt_error("cannot write the report to %s: %s", report_file, strerror(errno));
		out = stderr;
	}
	mt_render(out, format, &l);
	if (out != stderr)
		fclose(out);
	mt_loaded_free(&l);
	return 0;
}

/* Sends `detach` and prints the summary of the last dump. */
static int detach_and_report(pid_t pid, const char *format, const char *report_file, int quiet)
{
	char *resp, err[1024];
	/* -f entry hooks are put back first, with the threads stopped. */
	if (mt_ctl_send(pid, "status\n", &resp, err, sizeof(err)) == 0 && !strstr(resp, "entry_hooks: 0 patched") &&
	    strstr(resp, "entry_hooks:") && mt_attach_unpatch(pid, "libmemtap", err, sizeof(err)))
		mt_error("detach: the -f entry hooks stay in place, inert: %s", err);
	free(resp);
	int r = mt_ctl_send(pid, "detach\n", &resp, err, sizeof(err));
	if (r < 0)
		return mt_error("detach: %s", err), 1;
	if (r > 0) {
		mt_error("detach: %s", resp);
		free(resp);
		return 1;
	}
	resp[strcspn(resp, "\n")] = '\0';
	if (!quiet)
		print_summary(resp, format, report_file);
	fprintf(stderr, "memtap: detached from %d; its last profile is %s\n", (int)pid, resp);
	free(resp);
	return 0;
}

int mt_attach_inject(const struct mt_attach_req *r)
{
	char agent[PATH_MAX], err[PATH_MAX * 3], prefix[PATH_MAX], comm[64] = "process";
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
	if (mt_resolve_prefix(r->output, comm, prefix, sizeof(prefix)))
		return 2;

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

	char req[MT_CTL_MAX_REQUEST], esc[PATH_MAX * 3];
	mt_ctl_escape(prefix, esc, sizeof(esc));
	int n = snprintf(req, sizeof(req), "attach prefix=%s %s\n", esc, r->options);
	if (n <= 0 || (size_t)n >= sizeof(req))
		return mt_error("attach: options too long"), 2;
	char *resp;
	int e = mt_ctl_send(r->pid, req, &resp, err, sizeof(err));
	if (e < 0)
		return mt_error("attach: %s", err), 1;
	if (e > 0) {
		mt_error("attach: %s", resp);
		free(resp);
		return 1;
	}
	resp[strcspn(resp, "\n")] = '\0';
	if (strstr(r->options, ":at=") && mt_attach_patch(r->pid, "libmemtap", err, sizeof(err))) {
		char *dresp;
		mt_error("attach: -f: %s", err);
		if (mt_ctl_send(r->pid, "detach\n", &dresp, err, sizeof(err)) >= 0)
			free(dresp);
		free(resp);
		return 1;
	}
	fprintf(stderr, "memtap: %d (%s) %s in %.0f ms; %s\n", (int)r->pid, comm, resp, (now_s() - t0) * 1000,
		r->seconds > 0 ? "tracing until the time is up or Ctrl-C"
			       : "tracing until Ctrl-C (or memtap detach -p PID from elsewhere)");
	free(resp);

	struct sigaction sa = {.sa_handler = on_signal};
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGHUP, &sa, NULL);
	double end = r->seconds > 0 ? now_s() + r->seconds : 0;
	int ticks = 0;
	while (!stop_requested && (!end || now_s() < end)) {
		usleep(50000);
		if (kill(r->pid, 0) < 0 && errno == ESRCH) {
			fprintf(stderr, "memtap: process %d has exited; its exit profile is under %s.%d.*.%s\n",
				(int)r->pid, prefix, (int)r->pid, MT_FILE_EXT);
			return 0;
		}
		/* Somebody ran memtap detach: nothing left for us to do. */
		if (++ticks % 10 == 0 && (state = agent_state(r->pid, err, sizeof(err))) &&
		    strcmp(state, "attached") != 0) {
			fprintf(stderr, "memtap: %d was detached by another memtap\n", (int)r->pid);
			return 0;
		}
	}
	return detach_and_report(r->pid, r->format, r->report_file, r->quiet);
}

int cmd_detach(int argc, char **argv)
{
	static const struct option opts[] = {
		{"pid", required_argument, NULL, 'p'},   {"report-file", required_argument, NULL, 'r'},
		{"format", required_argument, NULL, 'F'}, {"quiet", no_argument, NULL, 'q'},
		{"help", no_argument, NULL, 'h'},         {0},
	};
	const char *format = "text", *report_file = NULL;
	pid_t pid = 0;
	int quiet = 0, c;
	optind = 1;
	while ((c = getopt_long(argc, argv, "p:qh", opts, NULL)) != -1) {
		char *end;
		switch (c) {
		case 'p':
			pid = (pid_t)strtol(optarg, &end, 10);
			if (*end || pid <= 0)
				return mt_error("detach: -p %s: expected a process id", optarg), 2;
			break;
		case 'r': report_file = optarg; break;
		case 'F': format = optarg; break;
		case 'q': quiet = 1; break;
		case 'h':
			printf("usage: memtap detach -p PID [--report-file F] [--format text|json] [-q]\n"
			       "Stops tracing a process attached with memtap attach: restores its call\n"
			       "slots, writes a last profile and prints its summary.  The process runs on.\n");
			return 0;
		default: return 2;
		}
	}
	if (!pid)
		return mt_error("detach: which process? pass -p PID"), 2;
	if (strcmp(format, "text") && strcmp(format, "json"))
		return mt_error("detach: unknown --format '%s' (text or json)", format), 2;
	return detach_and_report(pid, format, report_file, quiet);
}
