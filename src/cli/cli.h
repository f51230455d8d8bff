/*
 * The command-line front end: one cmd_*() per subcommand, dispatched from
 * memtap.c's command table.  Commands return the process exit status; only
 * this layer prints errors (through mt_error) and exits.
 */
#ifndef MEMTAP_CLI_H
#define MEMTAP_CLI_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <stdio.h>

#include "agent_opts.h"
#include "memtap/render.h"

int cmd_run(int argc, char **argv);
int cmd_ctl(int argc, char **argv);
int cmd_report(int argc, char **argv);
int cmd_demo(int argc, char **argv);
int cmd_attach(int argc, char **argv);
/* memtap run --via=ebpf (cmd_attach.c): the parsed options, and the
 * command (NULL-terminated). */
struct mt_cli_opts;
struct mt_fleet;
int mt_run_ebpf(const struct mt_cli_opts *o, char **cmdv);
int cmd_diff(int argc, char **argv);
int cmd_help(int argc, char **argv);
int cmd_top(int argc, char **argv);

/* memtap run in three steps (cmd_run.c), which memtap top -- PROGRAM
 * shares: start the program traced, wait for it (the session polled, a
 * stop asked for becomes Ctrl-C's SIGINT), end (final profiles, summary,
 * the program's exit status). */
struct mt_session;
struct mt_run {
	pid_t child;
	struct mt_session *sess;
	char prefix[4096];
	uint64_t run_id;
	int status;    /* the program's wait status */
	int own_group; /* the program runs in a process group of its own */
};
int mt_run_start(const struct mt_cli_opts *o, char **cmdv, const char *log, struct mt_run *run);
void mt_run_wait(struct mt_run *run);
int mt_run_end(struct mt_run *run, const char *cmd, const char *format, const char *report_file, int quiet);

/* Parses a byte count with an optional k/m/g suffix (powers of 1024, an
 * optional "iB" or "B" after it); 0 or -EINVAL. */
int mt_parse_size(const char *s, uint64_t *out);

/* Checks one -f FUNC[:size=argN][:pool=argM]; 0 or -EINVAL with ERR. */
int mt_check_func_spec(const char *spec, char *err, size_t errlen);

/* -f for the agent (funcs.c): LIST, comma-separated user specs, becomes
 * what the agent reads, each function found in the objects of CMD (before it
 * starts) or of running PID, with its entry patch planned.  0, or -errno
 * with ERR naming the function and why (not found, with near names; an
 * entry that cannot be patched); nothing is sent to the target then. */
int mt_funcs_for_exe(const char *cmd, char *list, size_t listlen, char *err, size_t errlen);
int mt_funcs_for_pid(pid_t pid, char *list, size_t listlen, char *err, size_t errlen);
struct mt_funcspec;
/* The entry patch of a function of SIZE bytes (0: unknown) at object vaddr
 * ADDR whose code is CODE[0..AVAIL): the decoding and relocation part of the
 * plan, without the object-wide checks.  0, or -errno with ERR. */
int mt_funcs_plan_bytes(struct mt_funcspec *f, const uint8_t *code, size_t avail, uint64_t addr, uint64_t size,
			char *err, size_t errlen);
/* attach -f (attach_hooks.c): with every thread of PID stopped, patches the
 * entry hooks the agent prepared (retrying while a thread is inside the
 * bytes to patch), or restores them all; 0 or -errno with ERR. */
int mt_attach_patch(pid_t pid, const char *agent, char *err, size_t errlen);
int mt_attach_unpatch(pid_t pid, const char *agent, char *err, size_t errlen);

/* The control socket of PID (searched under each of its uids): 0, or -errno
 * with ERR saying why there is none. */
int mt_ctl_socket_path(pid_t pid, char *path, size_t pathlen, char *err, size_t errlen);
/* Sends one request line (ending in '\n') to PID's agent.  Returns 0 with
 * the text after "ok" in *RESPONSE, 1 with the agent's error message in
 * *RESPONSE, or -errno with ERR (no response).  Free *RESPONSE. */
int mt_ctl_send(pid_t pid, const char *request, char **response, char *err, size_t errlen);

/* Makes the output prefix absolute (the traced program may chdir) and checks
 * that its directory is writable; IN NULL means ./memtap.<basename of CMD>.
 * 0, or -1 after printing why. */
int mt_resolve_prefix(const char *in, const char *cmd, char *out, size_t outlen);

/* Attaching by injection (attach_inject.c): what `memtap attach` asked for. */
struct mt_attach_req {
	pid_t pid;
	double seconds;          /* 0: until Ctrl-C, the process exits or a detach */
	const char *output;      /* -o PREFIX, or NULL */
	const char *report_file; /* or NULL: stderr */
	const char *format;      /* text or json */
	int quiet;
	struct mt_agent_opts ao; /* for `ctl attach`: stacks, sample, funcs, ... */
	uint64_t interval_ms;    /* --interval: the session's periodic profiles */
	int stacks;
	int quiet_start;         /* no "tracing until Ctrl-C" line (memtap top) */
	struct mt_fleet *fleet;  /* --prometheus, --pprof-dir (fleet.h), or NULL */
};
/* Injects the agent (once), attaches it with the options, waits, detaches
 * and prints the summary; returns the exit status. */
int mt_attach_inject(const struct mt_attach_req *r);
/* The same in steps, for several processes in one session (memtap top -p
 * PID -p PID): add each (0, or the exit status after saying why), wait,
 * end (detach, last profiles, summary; the exit status). */
#define MT_ATTACH_MAX 64
struct mt_attach {
	struct mt_session *sess;
	char prefix[4096];
	uint64_t run_id;
	pid_t roots[MT_ATTACH_MAX];
	int nroots;
};
int mt_attach_add(const struct mt_attach_req *r, struct mt_attach *a);
int mt_attach_wait(struct mt_attach *a, double seconds);
int mt_attach_end(struct mt_attach *a, const char *format, const char *report_file, int quiet);
int cmd_detach(int argc, char **argv);
/* memtap attach --via=ebpf in steps (cmd_attach.c): start (0, or the exit
 * status after saying why), its session, wait (1: the process exited),
 * end (last profiles, the summary on stdout unless QUIET; the exit status;
 * frees X). */
struct mt_ebpf_attach;
int mt_ebpf_attach_start(const struct mt_cli_opts *c, int quiet_start, struct mt_ebpf_attach **x);
struct mt_session *mt_ebpf_attach_session(struct mt_ebpf_attach *x);
int mt_ebpf_attach_wait(struct mt_ebpf_attach *x, double seconds);
int mt_ebpf_attach_end(struct mt_ebpf_attach *x, int quiet);
/* Detaches PID (and the children it forked while attached) and writes their
 * last profiles from their live files, under OUTPUT (NULL: the attach's -o);
 * the first one's path into LAST.  Returns the exit status. */
int mt_detach_pid(pid_t pid, const char *output, const char *format, const char *report_file, int quiet,
		  char *last, size_t lastlen);

/* Prints "memtap: <message>" to stderr; returns -1. */
int mt_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* The line after a usage error: "Try 'memtap CMD --help' for more
 * information." on stderr; returns 2 (the exit status of a usage error). */
int mt_cli_try_help(const char *cmd);
/* A getopt failure of command CMD (C is getopt's '?' or ':', with opterr 0
 * and ':' leading the short options): "memtap: CMD: unknown option '--x'"
 * or "... needs an argument", then mt_cli_try_help().  NAME: the option's
 * name when the caller knows it (from optopt), else NULL.  Returns 2. */
int mt_cli_optfail(const char *cmd, char **argv, int c, const char *name);

/* A file that ships beside the CLI: build/NAME when run from the build tree,
 * PREFIX/lib/memtap/NAME when installed.  0, or -ENOENT with the places
 * looked at in ERR. */
int mt_find_companion(const char *name, char *out, size_t outlen, char *err, size_t errlen);

/* Whether memtap run can trace CMD (found on $PATH like execvp): 0, or
 * -EPERM (setuid/setgid) / -ENOEXEC (static, not x86-64) with the reason in
 * ERR.  A command that cannot be found is left for exec to report. */
int mt_target_check(const char *cmd, char *err, size_t errlen);

/* Profiles loaded for a report. */
struct mt_loaded {
	struct mt_report_item *items;
	size_t n;
	char **paths;   /* the files read, NPATHS of them */
	size_t npaths;
	uint32_t *pids; /* storage for merged items */
};

/* Reads every path; unreadable files are reported on stderr and skipped.
 * Returns the number of files that failed. */
int mt_load_profiles(char *const *paths, size_t n, struct mt_loaded *out);
/* Keeps only the latest snapshot of each process (an exit profile, else the
 * latest dump): dumps are running totals, so summing two snapshots of one
 * process would count it twice.  Returns how many were dropped. */
size_t mt_loaded_latest(struct mt_loaded *l);
/* Replaces the items with one item summing them all. 0 or -ENOMEM. */
int mt_loaded_merge(struct mt_loaded *l);
void mt_loaded_free(struct mt_loaded *l);
/* The summary of a run or attach: with several processes (text), calls per
 * process and then the merged tables (L is merged in place); else L as is. */
void mt_render_summary(FILE *out, const char *format, struct mt_loaded *l, const char *prefix);
/* Renders in FORMAT ("text" or "json"); 0, -EINVAL for an unknown format. */
int mt_render(FILE *out, const char *format, const struct mt_loaded *l);

/* What the renderers take besides the format. */
struct mt_render_opts {
	enum mt_value value; /* collapsed, svg: bytes in use or allocated */
	/* html: told the share done as the report is built (NULL: nothing) */
	void (*progress)(double done, void *arg);
	void *progress_arg;
};
/* Renders in FORMAT: text, json, collapsed, flamegraph (svg), timeline (an
 * SVG of bytes in use over time), html (all items), pprof or
 * jeprof (exactly one item, else -E2BIG); -EINVAL for an unknown format. */
int mt_render_with(FILE *out, const char *format, const struct mt_loaded *l,
		   const struct mt_render_opts *o);

#endif
