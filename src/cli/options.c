/* The options of run and attach, from one table (options.def, options.h). */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "help.h"
#include "options.h"
#include "glibc_syms.h"

const struct mt_cli_optdesc mt_cli_optdescs[MT_O_COUNT] = {
#define MT_OPT(id, lng, shrt, arg, where, help) [MT_O_##id] = {lng, shrt, arg, where, help},
#include "options.def"
#undef MT_OPT
};
#define table mt_cli_optdescs

static const char *const cmd_name[] = {"run", "attach", "top"};

/* The WHERE bits of CMD with collector VIA. */
static unsigned where_bit(enum mt_cli_cmd cmd, enum mt_via via)
{
	if (cmd == MT_CMD_RUN)
		return via == MT_VIA_EBPF ? MT_W_RUN_BPF : MT_W_RUN_AG;
	if (cmd == MT_CMD_TOP)
		return via == MT_VIA_EBPF ? MT_W_TOP_BPF : MT_W_TOP_AG;
	return via == MT_VIA_EBPF ? MT_W_ATT_BPF : MT_W_ATT_AG;
}

static unsigned cmd_bits(enum mt_cli_cmd cmd)
{
	return cmd == MT_CMD_RUN ? MT_W_RUN : cmd == MT_CMD_TOP ? MT_W_TOP : MT_W_ATT;
}

static void opt_name(int id, char *out, size_t len)
{
	if (table[id].shrt && !table[id].arg)
		snprintf(out, len, "-%c/--%s", table[id].shrt, table[id].lng);
	else if (id == MT_O_FUNC)
		snprintf(out, len, "-f");
	else
		snprintf(out, len, "--%s", table[id].lng);
}

/* HEAD, then TEXT word-wrapped into the column after it, 80 wide. */
static void wrap(FILE *out, const char *head, const char *text)
{
	enum { COL = 26, WIDTH = 80 };
	fprintf(out, "%-*s", COL, head);
	size_t at = strlen(head) >= COL ? WIDTH : COL;
	for (const char *w = text; *w;) {
		while (*w == ' ' || *w == '\n')
			w++;
		size_t n = strcspn(w, " \n");
		if (!n)
			break;
		if (at + (at > COL) + n > WIDTH) {
			fprintf(out, "\n%-*s", COL, "");
			at = COL;
		}
		fprintf(out, "%s%.*s", at > COL ? " " : "", (int)n, w);
		at += (at > COL) + n;
		w += n;
	}
	fputc('\n', out);
}

void mt_cli_usage(enum mt_cli_cmd cmd, int via, FILE *out)
{
	unsigned mine = cmd_bits(cmd);
	unsigned ag = where_bit(cmd, MT_VIA_AGENT), bpf = where_bit(cmd, MT_VIA_EBPF);
	for (int i = 0; i < MT_O_COUNT; i++) {
		const struct mt_cli_optdesc *o = &table[i];
		if (!(o->where & mine))
			continue;
		if (via >= 0 && !(o->where & where_bit(cmd, (enum mt_via)via)))
			continue;
		char head[96];
		int an = o->arg ? (int)strcspn(o->arg, "|") : 0;
		if (i == MT_O_FUNC)
			snprintf(head, sizeof(head), "  -f %.*s", an, o->arg);
		else if (o->shrt)
			snprintf(head, sizeof(head), "  -%c, --%s%s%.*s", o->shrt, o->lng, o->arg ? " " : "", an,
				 o->arg ? o->arg : "");
		else
			snprintf(head, sizeof(head), "      --%s%s%.*s", o->lng, o->arg ? "=" : "", an,
				 o->arg ? o->arg : "");
		/* Which collector, when not both. */
		const char *only = (o->where & mine) == (ag & mine) && !(o->where & bpf)
					   ? (cmd != MT_CMD_ATTACH ? " [agent only]" : " [--via=inject only]")
				   : !(o->where & ag) ? " [--via=ebpf only]" : "";
		char text[1024];
		snprintf(text, sizeof(text), "%s%s", o->help, via < 0 ? only : "");
		wrap(out, head, text);
	}
}

static int parse_seconds(const char *cmd, const char *opt, const char *v, double min, double *out)
{
	char *end;
	double s = strtod(v, &end);
	if (*end || !(s >= min) || s > 1e9)
		return mt_error("%s: %s %s: expected seconds (e.g. 10, 0.5)%s", cmd, opt, v,
				min > 0 ? ", at least 0.1" : ""), -1;
	*out = s;
	return 0;
}

int mt_cli_parse(enum mt_cli_cmd cmd, int argc, char **argv, struct mt_cli_opts *o)
{
	struct option longs[MT_O_COUNT + 1];
	char shorts[2 * MT_O_COUNT + 2];
	size_t nl = 0, ns = 0;
	const char *name = cmd_name[cmd];
	unsigned mine = cmd_bits(cmd);
	memset(o, 0, sizeof(*o));
	o->cmd = cmd;
	o->format = "text";
	o->follow = 1;
	o->refresh_ms = 1000;
	/* run stops at the command: its options are the command's. */
	if (cmd == MT_CMD_RUN || cmd == MT_CMD_TOP)
		shorts[ns++] = '+';
	/* ':' first: a missing argument is told apart from an unknown option,
	 * and both are reported here (opterr = 0), with the memtap: prefix. */
	shorts[ns++] = ':';
	for (int i = 0; i < MT_O_COUNT; i++) {
		if (!(table[i].where & mine))
			continue;
		longs[nl++] = (struct option){table[i].lng, table[i].arg ? required_argument : no_argument, NULL,
					      256 + i};
		if (table[i].shrt) {
			shorts[ns++] = (char)table[i].shrt;
			if (table[i].arg)
				shorts[ns++] = ':';
		}
	}
	longs[nl] = (struct option){0};
	shorts[ns] = '\0';
	const char *via = NULL;
	int c;
	optind = 1;
	opterr = 0;
	while ((c = getopt_long(argc, argv, shorts, longs, NULL)) != -1) {
		int id = -1, key = c == '?' || c == ':' ? optopt : c;
		if (key >= 256)
			id = key - 256;
		for (int i = 0; i < MT_O_COUNT && id < 0 && key; i++)
			if (table[i].shrt == key && (table[i].where & mine))
				id = i;
		if (c == '?' || c == ':') {
			char n[64] = "";
			if (id >= 0 && key >= 256)
				snprintf(n, sizeof(n), "--%s", table[id].lng);
			else if (id >= 0)
				snprintf(n, sizeof(n), "-%c", key);
			return mt_cli_optfail(name, argv, c, id >= 0 ? n : NULL), -1;
		}
		o->given |= 1ull << id;
		const char *v = optarg;
		char *end;
		switch (id) {
		case MT_O_PID:
			o->pid = (pid_t)strtol(v, &end, 10);
			if (*end || o->pid <= 0)
				return mt_error("%s: -p %s: expected a process id", name, v), -1;
			/* ptrace refuses it with EPERM, which reads like a permission
			 * problem. */
			if (o->pid == getpid())
				return mt_error("%s: -p %s is this memtap process itself; give the process id of the "
						"program to trace (pgrep NAME finds it)", name, v), -1;
			if (o->npids == MT_CLI_PIDS_MAX)
				return mt_error("%s: at most %d -p", name, MT_CLI_PIDS_MAX), -1;
			o->pids[o->npids++] = o->pid;
			o->pid = o->pids[0];
			break;
		case MT_O_DURATION:
			if (parse_seconds(name, "-d", v, 0, &o->seconds))
				return -1;
			if (!(o->seconds > 0))
				return mt_error("%s: -d %s: expected seconds (e.g. 10, 0.5)", name, v), -1;
			break;
		case MT_O_VIA: via = v; break;
		case MT_O_OUTPUT: o->output = v; break;
		case MT_O_REPORT_FILE: o->report_file = v; break;
		case MT_O_FORMAT: o->format = v; break;
		case MT_O_QUIET: o->quiet = 1; break;
		case MT_O_FUNC:
			if (o->nfuncs == MT_CLI_FUNCS_MAX)
				return mt_error("%s: at most %d -f functions", name, MT_CLI_FUNCS_MAX), -1;
			o->funcs[o->nfuncs++] = v;
			break;
		case MT_O_STACKS: o->stacks = 1; break;
		case MT_O_SAMPLE:
			if (mt_parse_size(v, &o->sample))
				return mt_error("%s: --sample=%s: expected a size in bytes (e.g. 1, 65536, 512k)", name,
						v), -1;
			if (!o->sample)
				return mt_error("%s: --sample=%s: must be at least 1 (1 records every allocation; the "
						"default is 512k)", name, v), -1;
			o->stacks = 1;
			break;
		case MT_O_LEAKS: o->leaks = o->stacks = 1; break;
		case MT_O_DUMP_EVERY:
			if (mt_parse_size(v, &o->dump_every))
				return mt_error("%s: --dump-every=%s: expected a size in bytes (e.g. 1g, 64m)", name, v),
				       -1;
			if (!o->dump_every)
				return mt_error("%s: --dump-every=%s: must be at least 1 byte (e.g. 1g, 64m)", name, v),
				       -1;
			break;
		case MT_O_INTERVAL: {
			double s;
			if (parse_seconds(name, "--interval", v, 0.1, &s))
				return -1;
			o->interval_ms = (uint64_t)(s * 1000);
			break;
		}
		case MT_O_DUMP_ON_PEAK: o->dump_on_peak = o->stacks = 1; break;
		case MT_O_INACTIVE: o->inactive = 1; break;
		case MT_O_NO_FOLLOW: o->follow = 0; break;
		case MT_O_WITHIN: o->within = v; break;
		case MT_O_HEAP_EVENTS: o->heap_events = 1; break;
		case MT_O_POOLS: o->pools = 1; break;
		case MT_O_GLIBC: o->glibc = 1; break;
		case MT_O_FAILURES: o->failures = 1; break;
		case MT_O_VERBOSE: o->verbose = 1; break;
		case MT_O_FULL_STACKS: o->full_stacks = mt_render_full_stacks = 1; break;
		case MT_O_REFRESH: {
			double sec;
			if (parse_seconds(name, "--interval", v, 0.1, &sec))
				return -1;
			o->refresh_ms = (uint64_t)(sec * 1000);
			break;
		}
		case MT_O_SCREENS:
			o->count = strtol(v, &end, 10);
			if (*end || o->count <= 0 || o->count > 100000000)
				return mt_error("%s: -n %s: expected a number of screens (1 or more)", name, v), -1;
			break;
		case MT_O_SORT: o->sort = v; break;
		case MT_O_BATCH: o->batch = 1; break;
		case MT_O_PROGRAM_OUTPUT: o->program_output = v; break;
		case MT_O_PROMETHEUS:
		case MT_O_PROMETHEUS_ALLOW_REMOTE:
		case MT_O_PROMETHEUS_PER_PID:
		case MT_O_PPROF_DIR:
		case MT_O_PPROF_KEEP:
			if (mt_fleet_opt(&o->fleet, id, v, name))
				return -1;
			break;
		case MT_O_HELP:
			/* After --via: `memtap run --via=ebpf --help` lists eBPF's. */
			mt_cmd_usage_via(cmd == MT_CMD_RUN ? MT_C_RUN : cmd == MT_CMD_TOP ? MT_C_TOP : MT_C_ATTACH,
					 via && !strcmp(via, "ebpf") ? MT_VIA_EBPF : -1, stdout);
			return 1;
		}
	}
	o->argi = optind;
	if (!via || !strcmp(via, cmd == MT_CMD_RUN ? "preload" : "inject") ||
	    (cmd == MT_CMD_ATTACH && !strcmp(via, "agent")) ||
	    (cmd == MT_CMD_TOP && (!strcmp(via, "agent") || !strcmp(via, "preload"))))
		o->via = MT_VIA_AGENT;
	else if (!strcmp(via, "ebpf"))
		o->via = MT_VIA_EBPF;
	else
		return mt_error("%s: unknown --via=%s (%s or ebpf)", name, via,
				cmd == MT_CMD_RUN ? "preload" : cmd == MT_CMD_TOP ? "inject, preload" : "inject"),
		       -1;
	if (strcmp(o->format, "text") && strcmp(o->format, "json"))
		return mt_error("%s: unknown --format '%s' (text or json)", name, o->format), -1;
	if (cmd == MT_CMD_ATTACH && optind < argc)
		return mt_error("attach: unexpected argument '%s' (the process is -p PID)", argv[optind]),
		       mt_cli_try_help(name), -1;
	if (cmd == MT_CMD_ATTACH && !o->pid)
		return mt_error("attach: which process? pass -p PID"), mt_cli_try_help(name), -1;
	int has_cmd = optind < argc;
	if (cmd == MT_CMD_TOP && (o->npids > 0) == has_cmd)
		return mt_error(o->npids ? "top: -p PID or a command to run, not both"
					 : "top: which processes? pass -p PID, or a command to run after --"),
		       mt_cli_try_help(name), -1;
	if (cmd == MT_CMD_TOP && o->via == MT_VIA_EBPF && o->npids > 1)
		return mt_error("top --via=ebpf: one -p PID (its children are followed); several need the agent "
				"(--via=inject)"), -1;
	if (cmd == MT_CMD_RUN && optind >= argc)
		return mt_error("run: no command given: memtap run [OPTIONS] -- CMD [ARGS...]"),
		       mt_cli_try_help(name), -1;
	/* Options the chosen collector does not take: all named at once. */
	unsigned bit = where_bit(cmd, o->via);
	char bad[512] = "";
	for (int i = 0; i < MT_O_COUNT; i++) {
		if (!(o->given & (1ull << i)) || (table[i].where & bit))
			continue;
		char n[64];
		opt_name(i, n, sizeof(n));
		snprintf(bad + strlen(bad), sizeof(bad) - strlen(bad), "%s%s", bad[0] ? ", " : "", n);
	}
	if (bad[0]) {
		if (o->via == MT_VIA_EBPF)
			return mt_error("%s --via=ebpf: %s needs the agent (%s without --via=ebpf); see memtap %s "
					"--help", name, bad, name, name), -1;
		return mt_error("%s: %s: only with --via=ebpf (these need --via=ebpf: --within, --heap-events, "
				"--failures, -v%s)", name, bad, cmd == MT_CMD_ATTACH ? ", --no-follow" : ""), -1;
	}
	return mt_fleet_check(o);
}

int mt_cli_funcs_list(const struct mt_cli_opts *o, char *list, size_t len)
{
	char err[512];
	list[0] = '\0';
	for (int i = 0; i < o->nfuncs; i++) {
		if (mt_check_func_spec(o->funcs[i], err, sizeof(err)))
			return mt_error("%s: -f %s: %s", cmd_name[o->cmd], o->funcs[i], err), -1;
		if (strlen(list) + strlen(o->funcs[i]) + 2 > len)
			return mt_error("%s: too many -f functions", cmd_name[o->cmd]), -1;
		if (list[0])
			strcat(list, ",");
		strcat(list, o->funcs[i]);
	}
	return 0;
}

void mt_cli_agent_opts(const struct mt_cli_opts *o, const char *funcs, struct mt_agent_opts *ao)
{
	if (o->cmd == MT_CMD_RUN)
		mt_agent_opt_set(ao, MT_AO_FOLLOW, "%d", o->follow);
	if (o->inactive)
		mt_agent_opt_set(ao, MT_AO_INACTIVE, "1");
	if (o->stacks)
		mt_agent_opt_set(ao, MT_AO_STACKS, "1");
	/* --leaks wants every allocation unless told otherwise. */
	if (o->sample || o->leaks)
		mt_agent_opt_set(ao, MT_AO_SAMPLE, "%llu", (unsigned long long)(o->sample ? o->sample : 1));
	if (o->leaks)
		mt_agent_opt_set(ao, MT_AO_LEAKS, "1");
	if (o->dump_every)
		mt_agent_opt_set(ao, MT_AO_DUMP_EVERY, "%llu", (unsigned long long)o->dump_every);
	if (o->dump_on_peak)
		mt_agent_opt_set(ao, MT_AO_DUMP_ON_PEAK, "1");
	if (o->pools)
		mt_agent_opt_set(ao, MT_AO_POOLS, "1");
	if (funcs && funcs[0])
		mt_agent_opt_set(ao, MT_AO_FUNCS, "%s", funcs);
	if (o->glibc) {
		/* run: the command gets memtap's own libc; attach: the process's */
		struct mt_glibc_syms syms;
		char opt[256], why[PATH_MAX + 256];
		mt_agent_opt_set(ao, MT_AO_GLIBC, "1");
		if (!mt_glibc_syms_lookup(o->cmd == MT_CMD_ATTACH ? o->pid : 0, &syms, opt, sizeof(opt), why, sizeof(why)))
			mt_agent_opt_set(ao, MT_AO_GLIBC_SYMS, "%s", opt);
		else if (!o->quiet)
			fprintf(stderr, "memtap: --glibc: %s: the mmap and trim thresholds and each thread's arena "
				"will not be known\n", why);
	}
}
