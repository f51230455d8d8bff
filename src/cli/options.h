/*
 * The options of `memtap run` and `memtap attach`, parsed from one table
 * (options.def) for every collector:
 *
 *   struct mt_cli_opts o;
 *   int r = mt_cli_parse(MT_CMD_RUN, argc, argv, &o);  0 ok, 1 --help printed, -1 refused (said why)
 *   ... o.via, o.output, o.funcs ...
 *   mt_cli_agent_opts(&o, funcs_list, &ao);            what the agent is told
 *
 * Which collector takes which option is checked here, once, with one kind
 * of message; values (sizes, seconds, formats) are checked here too.
 */
#ifndef MEMTAP_CLI_OPTIONS_H
#define MEMTAP_CLI_OPTIONS_H

#include <stdint.h>
#include <stdio.h>
#include <sys/types.h>

#include "agent_opts.h"
#include "fleet.h"

enum mt_cli_cmd { MT_CMD_RUN, MT_CMD_ATTACH, MT_CMD_TOP };
enum mt_via { MT_VIA_AGENT, MT_VIA_EBPF };

enum mt_opt_id {
#define MT_OPT(id, lng, shrt, arg, where, help) MT_O_##id,
#include "options.def"
#undef MT_OPT
	MT_O_COUNT
};

/* One row of options.def (help.c makes the man pages and the completion
 * from them). */
struct mt_cli_optdesc {
	const char *lng;
	int shrt;
	const char *arg; /* "NAME" or "NAME|value|value", or NULL */
	unsigned where;  /* MT_W_* */
	const char *help;
};
extern const struct mt_cli_optdesc mt_cli_optdescs[MT_O_COUNT];

#define MT_CLI_FUNCS_MAX 64
#define MT_CLI_PIDS_MAX 64

struct mt_cli_opts {
	enum mt_cli_cmd cmd;
	enum mt_via via;
	uint64_t given; /* bit MT_O_x: the option was given */
	pid_t pid;
	double seconds;
	const char *output, *report_file, *format, *within;
	int quiet, stacks, leaks, dump_on_peak, inactive, follow, heap_events, failures, verbose, pools;
	int glibc; /* --glibc */
	int full_stacks;
	uint64_t sample, dump_every, interval_ms;
	const char *funcs[MT_CLI_FUNCS_MAX];
	int nfuncs;
	int argi; /* run: where CMD starts in argv */
	/* top: every -p (pid is the first), the refresh interval, -n, --sort */
	pid_t pids[MT_CLI_PIDS_MAX];
	int npids;
	uint64_t refresh_ms;
	long count;
	const char *sort, *program_output;
	int batch;
	struct mt_fleet_opts fleet; /* --prometheus, --pprof-dir (fleet.h) */
	struct mt_fleet *endpoint;  /* what the command opened from them (mt_fleet_open), or NULL;
				       the session it is attached to owns it */
};

/* Parses ARGV for CMD into O; 0, 1 when --help was printed, -1 after
 * printing what was wrong (exit 2). */
int mt_cli_parse(enum mt_cli_cmd cmd, int argc, char **argv, struct mt_cli_opts *o);
/* CMD's options in its usage text, generated from the table; VIA: the
 * collector's options only (-1: all, marked by collector). */
void mt_cli_usage(enum mt_cli_cmd cmd, int via, FILE *out);
/* -f FUNC,... joined into LIST (LEN bytes): 0, or -1 after saying why. */
int mt_cli_funcs_list(const struct mt_cli_opts *o, char *list, size_t len);
/* The agent's options from O (FUNCS: the -f list, resolved). */
void mt_cli_agent_opts(const struct mt_cli_opts *o, const char *funcs, struct mt_agent_opts *ao);

#endif
