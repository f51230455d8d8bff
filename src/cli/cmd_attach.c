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
static struct mt_session *ebpf_session(struct mt_ebpf *e, const char *prefix, uint64_t interval_ms, int stacks)
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
	return sess;
}

static int add_common(int c, const char *arg, struct ebpf_args *a)
{
	switch (c) {
	case 'o': a->output = arg; return 0;
	case 'r': a->report_file = arg; return 0;
	case 'F': a->format = arg; return 0;
	case 'n': a->o.follow = 0; return 0;
	case 'q': a->quiet = 1; return 0;
	case 'f': return parse_func(arg, &a->o) ? -1 : 0;
	case 'W': a->o.within = arg; return 0;
	case 'H': a->o.heap_events = 1; return 0;
	case 'X': a->o.failures = 1; return 0;
	case 'v': a->o.verbose = 1; return 0;
	case 'S': a->o.stacks = 1; return 0;
	}
	return 1;
}

#define COMMON_OPTS                                                                                      \
	{"output", required_argument, NULL, 'o'}, {"report-file", required_argument, NULL, 'r'},         \
	{"format", required_argument, NULL, 'F'}, {"no-follow", no_argument, NULL, 'n'},                  \
	{"quiet", no_argument, NULL, 'q'},        {"within", required_argument, NULL, 'W'},               \
	{"heap-events", no_argument, NULL, 'H'},  {"failures", no_argument, NULL, 'X'},                   \
	{"verbose", no_argument, NULL, 'v'},      {"via", required_argument, NULL, 'V'},                  \
	{"help", no_argument, NULL, 'h'}

#define COMMON_HELP                                                                                      \
	"  -f FUNC[:size=argN][:pool=argM]\n"                                                             \
	"                         also count FUNC (any function of the program or its\n"                  \
	"                         libraries) with a quantize() of argument N (0-based);\n"                 \
	"                         pool=argM: calls and bytes per value of argument M\n"                   \
	"                         (the pool), top pools in the report; with --via=inject also\n"         \
	"                         :fail=null|nonzero|neg, :out=argK, :got (memtap run --help)\n"         \
	"      --within FUNC      bytes and allocations per call of FUNC, as quantize()\n"                 \
	"      --heap-events      glibc's heap system calls: brk, mmap, mprotect, madvise\n"               \
	"      --stacks           call sites of every allocation: frame-pointer user stacks\n"             \
	"                         from the kernel (cut short where a caller has no frame\n"               \
	"                         pointer, as most of Debian's libraries)\n"                             \
	"      --failures         also count failed malloc/calloc/realloc/new (return\n"                  \
	"                         probes: about twice the cost per call)\n"                               \
	"      --no-follow        only this process (its threads), not its children\n"                    \
	"  -o, --output PREFIX    profiles are PREFIX.<pid>.<seq>.mtp\n"                                   \
	"      --report-file F    write the summary to F\n"                                                \
	"      --format FMT       summary format: text (default) or json\n"                               \
	"  -v, --verbose          where each probe goes, and why at that offset\n"                        \
	"  -q, --quiet            no summary\n"

static void attach_usage(FILE *out)
{
	fprintf(out, "usage: memtap attach -p PID [--via=inject|ebpf] [-d SECONDS] [OPTIONS]\n"
		     "Counts the allocation calls of a running process, per function, with size\n"
		     "distributions (DTrace count/quantize layout), until -d SECONDS pass, the process\n"
		     "exits, or Ctrl-C.\n\n"
		     "  -p, --pid PID          the process\n"
		     "      --via=inject       load memtap's agent with ptrace (the default): nanoseconds\n"
		     "                         per call; memtap detach -p PID (or Ctrl-C) restores it\n"
		     "      --via=ebpf         uprobes, aggregated in the kernel; nothing is loaded into\n"
		     "                         the process; needs root and BTF\n"
		     "  -d, --duration SECS    stop after SECS seconds\n" COMMON_HELP
		     "\nWith --via=inject only:\n"
		     "      --stacks, --sample=BYTES, --leaks, --dump-every=BYTES, --interval=SECONDS,\n"
		     "      --dump-on-peak, --inactive   as for memtap run; memtap ctl PID works while\n"
		     "                         attached; --stacks unwinds with libunwind (sampled)\n"
		     "With --via=ebpf only: --within, --heap-events, --failures, --no-follow, -v\n");
}

static int wait_attached(struct mt_ebpf *e, struct mt_session *sess, pid_t pid, double seconds)
{
	struct timespec t0, t;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	while (!stop_sig) {
		struct timespec nap = {0, 50 * 1000 * 1000};
		nanosleep(&nap, NULL);
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

int cmd_attach(int argc, char **argv)
{
	static const struct option opts[] = {
		{"pid", required_argument, NULL, 'p'}, {"duration", required_argument, NULL, 'd'}, COMMON_OPTS,
		{"stacks", no_argument, NULL, 'S'},       {"sample", required_argument, NULL, 's'},
		{"leaks", no_argument, NULL, 'L'},        {"dump-every", required_argument, NULL, 'E'},
		{"interval", required_argument, NULL, 'I'}, {"dump-on-peak", no_argument, NULL, 'P'},
		{"inactive", no_argument, NULL, 'i'},     {0},
	};
	struct ebpf_args a = {.format = "text"};
	const char *via = "inject";
	pid_t pid = 0;
	double seconds = 0;
	int c, ebpf_only = 0, inject_only = 0, stacks = 0, leaks = 0, peak = 0, inactive = 0;
	uint64_t sample = 0, dump_every = 0, interval_ms = 0;
	const char *funcs[MT_EBPF_MAX_USER + 16];
	int nfuncs = 0;
	a.o.follow = 1;
	optind = 1;
	while ((c = getopt_long(argc, argv, "p:d:o:f:qvh", opts, NULL)) != -1) {
		char *end;
		switch (c) {
		case 'p':
			pid = (pid_t)strtol(optarg, &end, 10);
			if (*end || pid <= 0)
				return mt_error("attach: -p %s: expected a process id", optarg), 2;
			break;
		case 'd':
			seconds = strtod(optarg, &end);
			if (*end || !(seconds > 0))
				return mt_error("attach: -d %s: expected seconds (e.g. 10, 0.5)", optarg), 2;
			break;
		case 'V': via = optarg; break;
		case 'h': attach_usage(stdout); return 0;
		case 'f':
			if (nfuncs == (int)(sizeof(funcs) / sizeof(funcs[0])))
				return mt_error("attach: too many -f functions"), 2;
			funcs[nfuncs++] = optarg;
			break;
		case 'S': stacks = a.o.stacks = 1; break;
		case 'L': leaks = stacks = inject_only = 1; break;
		case 'P': peak = stacks = inject_only = 1; break;
		case 'i': inactive = inject_only = 1; break;
		case 's':
			if (mt_parse_size(optarg, &sample) || !sample)
				return mt_error("attach: --sample=%s: expected a size in bytes (e.g. 1, 65536, 512k)",
						optarg), 2;
			stacks = inject_only = 1;
			break;
		case 'E':
			if (mt_parse_size(optarg, &dump_every) || !dump_every)
				return mt_error("attach: --dump-every=%s: expected a size in bytes", optarg), 2;
			inject_only = 1;
			break;
		case 'I':
			if (!((interval_ms = (uint64_t)(strtod(optarg, &end) * 1000)) >= 100) || *end)
				return mt_error("attach: --interval=%s: expected seconds, at least 0.1", optarg), 2;
			break;
		case 'W': case 'H': case 'X': case 'n': case 'v':
			ebpf_only = 1;
			/* fall through */
		default: {
			int r = c == '?' ? 1 : add_common(c, optarg, &a);
			if (r == 0)
				break;
			if (r > 0)
				attach_usage(stderr);
			return 2;
		}
		}
	}
	if (optind < argc)
		return mt_error("attach: unexpected argument '%s'", argv[optind]), 2;
	if (!pid) {
		mt_error("attach: which process? pass -p PID");
		attach_usage(stderr);
		return 2;
	}
	if (strcmp(a.format, "text") && strcmp(a.format, "json"))
		return mt_error("attach: unknown --format '%s' (text or json)", a.format), 2;
	if (!strcmp(via, "inject")) {
		if (ebpf_only)
			return mt_error("attach: --within, --heap-events, --failures, --no-follow and -v need "
					"--via=ebpf"), 2;
		struct mt_attach_req req = {.pid = pid, .seconds = seconds, .output = a.output,
					    .report_file = a.report_file, .format = a.format, .quiet = a.quiet};
		char err[2048], list[4096] = "";
		for (int i = 0; i < nfuncs; i++) {
			if (mt_check_func_spec(funcs[i], err, sizeof(err)))
				return mt_error("attach: -f %s: %s", funcs[i], err), 2;
			if (strlen(list) + strlen(funcs[i]) + 2 > sizeof(list))
				return mt_error("attach: too many -f functions"), 2;
			if (list[0])
				strcat(list, ",");
			strcat(list, funcs[i]);
		}
		if (list[0] && mt_funcs_for_pid(pid, list, sizeof(list), err, sizeof(err)))
			return mt_error("attach: %s", err), 1;
		req.interval_ms = interval_ms;
		req.stacks = stacks;
		if (stacks)
			mt_agent_opt_set(&req.ao, MT_AO_STACKS, "1");
		if (sample || leaks)
			mt_agent_opt_set(&req.ao, MT_AO_SAMPLE, "%llu", (unsigned long long)(sample ? sample : 1));
		if (dump_every)
			mt_agent_opt_set(&req.ao, MT_AO_DUMP_EVERY, "%llu", (unsigned long long)dump_every);
		if (peak)
			mt_agent_opt_set(&req.ao, MT_AO_DUMP_ON_PEAK, "1");
		if (inactive)
			mt_agent_opt_set(&req.ao, MT_AO_INACTIVE, "1");
		if (list[0])
			mt_agent_opt_set(&req.ao, MT_AO_FUNCS, "%s", list);
		int ret = mt_attach_inject(&req);
		mt_agent_opts_free(&req.ao);
		return ret;
	}
	if (strcmp(via, "ebpf"))
		return mt_error("attach: unknown --via=%s (inject or ebpf)", via), 2;
	if (inject_only)
		return mt_error("attach: --sample, --leaks, --dump-every, --dump-on-peak "
				"and --inactive need --via=inject (the agent)"), 2;
	for (int i = 0; i < nfuncs; i++)
		if (parse_func(funcs[i], &a.o))
			return 2;

	char err[8192], prefix[PATH_MAX];
	if (kill(pid, 0) < 0 && errno == ESRCH)
		return mt_error("attach: process %d does not exist", (int)pid), 1;
	if (mt_ebpf_check(err, sizeof(err)))
		return mt_error("attach: %s", err), 1;
	struct mt_objlist objs;
	int r = mt_objlist_of_pid(pid, &objs, err, sizeof(err));
	if (r) {
		mt_objlist_free(&objs);
		if (r == -ESRCH)
			return mt_error("attach: process %d does not exist (it may have just exited)", (int)pid), 1;
		return mt_error("attach: process %d: %s", (int)pid, err), 1;
	}
	char comm[64] = "", path[64];
	snprintf(path, sizeof(path), "/proc/%d/comm", (int)pid);
	FILE *cf = fopen(path, "re");
	if (cf && fgets(comm, sizeof(comm), cf))
		comm[strcspn(comm, "\n")] = '\0';
	if (cf)
		fclose(cf);
	if (mt_resolve_prefix(a.output, comm[0] ? comm : "attach", prefix, sizeof(prefix))) {
		mt_objlist_free(&objs);
		return 2;
	}
	a.o.pid = pid;
	/* From here on a signal ends the session the normal way, so that the
	 * probes are removed (also when it comes while attaching). */
	struct sigaction sa = {.sa_handler = on_stop};
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGHUP, &sa, NULL);
	struct mt_ebpf *e;
	r = mt_ebpf_start(&a.o, &objs, &e, err, sizeof(err));
	if (r) {
		mt_objlist_free(&objs);
		if (kill(pid, 0) < 0 && errno == ESRCH)
			return mt_error("attach: process %d exited", (int)pid), 1;
		return mt_error("attach: %s", err), 1;
	}
	char where[4096];
	mt_ebpf_describe(e, where, sizeof(where));
	fprintf(stderr, "memtap: tracing %d (%s) with eBPF: %s%s; %s\n", (int)pid, comm, where,
		a.o.follow ? ", children too" : "",
		seconds > 0 ? "stops after -d, or Ctrl-C" : "Ctrl-C to stop");
	struct mt_session *sess = ebpf_session(e, prefix, interval_ms, a.o.stacks);
	if (!sess) {
		mt_ebpf_free(e);
		mt_objlist_free(&objs);
		return mt_error("attach: out of memory"), 1;
	}
	int exited = wait_attached(e, sess, pid, seconds);
	if (exited)
		fprintf(stderr, "memtap: process %d exited\n", (int)pid);
	mt_session_finish(sess, 1);
	mt_ebpf_free(e);
	mt_objlist_free(&objs);
	r = summarize(sess, &a, prefix, stdout);
	mt_session_free(sess);
	return r ? 1 : 0;
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
			struct timespec nap = {0, 20 * 1000 * 1000};
			nanosleep(&nap, NULL);
		}
	}
}

int mt_run_wants_ebpf(int argc, char **argv)
{
	/* Options of run (and of run --via=ebpf) that take a separate argument. */
	static const char *const with_arg[] = {"-o", "--output", "--report-file", "--format", "--sample",
					       "--dump-every", "--interval", "-f", "--within", "--via", NULL};
	for (int i = 1; i < argc && argv[i][0] == '-' && strcmp(argv[i], "--"); i++) {
		if (!strcmp(argv[i], "--via=ebpf") || (!strcmp(argv[i], "--via") && i + 1 < argc &&
						       !strcmp(argv[i + 1], "ebpf")))
			return 1;
		for (int k = 0; with_arg[k]; k++)
			if (!strcmp(argv[i], with_arg[k])) {
				i++;
				break;
			}
	}
	return 0;
}

int mt_run_ebpf(int argc, char **argv)
{
	static const struct option opts[] = {COMMON_OPTS, {"stacks", no_argument, NULL, 'S'}, {0}};
	struct ebpf_args a = {.format = "text"};
	int c;
	a.o.follow = 1;
	optind = 1;
	while ((c = getopt_long(argc, argv, "+o:f:qvh", opts, NULL)) != -1) {
		if (c == 'V')
			continue;
		if (c == 'h') {
			printf("usage: memtap run --via=ebpf [OPTIONS] [--] CMD [ARGS...]\n"
			       "Runs CMD and counts its allocation calls with eBPF uprobes (nothing is\n"
			       "preloaded); needs root and a kernel with BTF.\n\n" COMMON_HELP);
			return 0;
		}
		int r = add_common(c, optarg, &a);
		if (r < 0)
			return 2;
		if (r > 0) {
			mt_error("run --via=ebpf: this option needs the agent (run without --via=ebpf); "
				 "see memtap run --via=ebpf --help");
			return 2;
		}
	}
	if (optind >= argc)
		return mt_error("run: no command given"), 2;
	if (strcmp(a.format, "text") && strcmp(a.format, "json"))
		return mt_error("run: unknown --format '%s' (text or json)", a.format), 2;
	char err[8192], prefix[PATH_MAX];
	if (mt_ebpf_check(err, sizeof(err)))
		return mt_error("run: %s", err), 2;
	struct mt_objlist objs;
	if (mt_objlist_of_exe(argv[optind], &objs, err, sizeof(err))) {
		mt_objlist_free(&objs);
		return mt_error("run: %s", err), 127;
	}
	if (mt_resolve_prefix(a.output, argv[optind], prefix, sizeof(prefix))) {
		mt_objlist_free(&objs);
		return 2;
	}
	char command[MT_TEXT_MAX] = "";
	for (int i = optind; i < argc; i++)
		snprintf(command + strlen(command), sizeof(command) - strlen(command), "%s%s", i > optind ? " " : "",
			 argv[i]);

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
		execvp(argv[optind], argv + optind);
		fprintf(stderr, "memtap: cannot run %s: %s\n", argv[optind], strerror(errno));
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
		mt_error("run: cannot start %s: %s", argv[optind], strerror(errno));
	close(go[1]);
	int status = 0;
	struct mt_session *sess = ebpf_session(e, prefix, 0, a.o.stacks);
	if (!sess) {
		mt_ebpf_free(e);
		mt_objlist_free(&objs);
		return mt_error("run: out of memory"), 2;
	}
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
		mt_error("%s killed by signal %d (%s)", argv[optind], sig, strsignal(sig));
		return 128 + sig;
	}
	return WEXITSTATUS(status);
}
