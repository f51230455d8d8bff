/*
 * What memtap says about itself, from the tables (commands.def, cmdopts.def,
 * options.def): the commands' parsers and usage texts, the top-level usage,
 * `memtap help`, the man pages (roff, for man(1) and groff's an macros) and
 * the bash completion.  One place per option: a new row in a table shows up
 * in the usage, the man page and the completion alike.
 */
#include <getopt.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "help.h"
#include "options.h"

#define MT_VERSION MEMTAP_VERSION

const struct mt_cmd mt_cmds[MT_C_COUNT] = {
#define MT_CMD(id, name, fn, summary, forms, desc) [MT_C_##id] = {name, fn, summary, forms, desc},
#include "commands.def"
#undef MT_CMD
};

static const struct copt {
	enum mt_cmd_id cmd;
	const char *lng;
	int shrt;
	const char *arg;
	const char *help;
} copts[MT_CO_COUNT] = {
#define MT_COPT(cmd, id, lng, shrt, arg, help) [MT_CO_##cmd##_##id] = {MT_C_##cmd, lng, shrt, arg, help},
#include "cmdopts.def"
#undef MT_COPT
#undef MT_CARG
};

static const struct carg {
	enum mt_cmd_id cmd;
	const char *word, *arg, *help;
} cargs[] = {
#define MT_CARG(cmd, word, arg, help) {MT_C_##cmd, word, arg, help},
#include "cmdopts.def"
#undef MT_COPT
#undef MT_CARG
	{MT_C_COUNT, NULL, NULL, NULL},
};

int mt_cmd_find(const char *name)
{
	for (int i = 0; i < MT_C_COUNT; i++)
		if (!strcmp(name, mt_cmds[i].name))
			return i;
	return -1;
}

int mt_cli_try_help(const char *cmd)
{
	fprintf(stderr, "Try 'memtap %s%s--help' for more information.\n", cmd ? cmd : "", cmd ? " " : "");
	return 2;
}

int mt_cli_optfail(const char *cmd, char **argv, int c, const char *name)
{
	char given[64];
	if (name)
		snprintf(given, sizeof(given), "%s", name);
	else if (optopt > 0 && optopt < 256)
		snprintf(given, sizeof(given), "-%c", optopt);
	else
		snprintf(given, sizeof(given), "%.*s", (int)strcspn(argv[optind - 1], "="), argv[optind - 1]);
	if (c == ':')
		mt_error("%s: option '%s' needs an argument", cmd, given);
	else if (name && optopt >= 256)
		mt_error("%s: option '%s' takes no argument", cmd, given);
	else
		mt_error("%s: unknown option '%s'", cmd, given);
	return mt_cli_try_help(cmd);
}

int mt_cmd_getopt(enum mt_cmd_id cmd, int argc, char **argv)
{
	struct option longs[MT_CO_COUNT + 1];
	char shorts[2 * MT_CO_COUNT + 2];
	size_t nl = 0, ns = 0;
	shorts[ns++] = ':';
	for (int i = 0; i < MT_CO_COUNT; i++) {
		if (copts[i].cmd != cmd)
			continue;
		longs[nl++] = (struct option){copts[i].lng, copts[i].arg ? required_argument : no_argument, NULL,
					      256 + i};
		if (copts[i].shrt) {
			shorts[ns++] = (char)copts[i].shrt;
			if (copts[i].arg)
				shorts[ns++] = ':';
		}
	}
	longs[nl] = (struct option){0};
	shorts[ns] = '\0';
	opterr = 0;
	int c = getopt_long(argc, argv, shorts, longs, NULL);
	if (c == -1)
		return MT_CMD_DONE;
	int key = c == '?' || c == ':' ? optopt : c, id = -1;
	if (key >= 256)
		id = key - 256;
	for (int i = 0; i < MT_CO_COUNT && id < 0 && key; i++)
		if (copts[i].cmd == cmd && copts[i].shrt == key)
			id = i;
	if (c == '?' || c == ':') {
		char n[64];
		if (id >= 0 && key >= 256)
			snprintf(n, sizeof(n), "--%s", copts[id].lng);
		else if (id >= 0)
			snprintf(n, sizeof(n), "-%c", key);
		mt_cli_optfail(mt_cmds[cmd].name, argv, c, id >= 0 ? n : NULL);
		return MT_CMD_BAD;
	}
	if (!strcmp(copts[id].lng, "help")) {
		mt_cmd_usage(cmd, stdout);
		return MT_CMD_HELPED;
	}
	return id;
}

/* HEAD, then TEXT word-wrapped into the column after it, 80 wide. */
static void wrap(FILE *out, int col, const char *head, const char *text)
{
	enum { WIDTH = 80 };
	fprintf(out, "%-*s", col, head);
	size_t at = *head && strlen(head) >= (size_t)col ? WIDTH : (size_t)col;
	for (const char *w = text; *w;) {
		while (*w == ' ' || *w == '\n')
			w++;
		size_t n = strcspn(w, " \n");
		if (!n)
			break;
		if (at + (at > (size_t)col) + n > WIDTH) {
			fprintf(out, "\n%-*s", col, "");
			at = (size_t)col;
		}
		fprintf(out, "%s%.*s", at > (size_t)col ? " " : "", (int)n, w);
		at += (at > (size_t)col) + n;
		w += n;
	}
	fputc('\n', out);
}

/* Each form on a line: the first after LEAD, the others under it. */
static void print_forms(FILE *out, const char *lead, const char *forms)
{
	for (const char *f = forms, *l = lead; *f; l = "") {
		size_t n = strcspn(f, "\n");
		fprintf(out, "%s%*smemtap %.*s\n", l, *l ? 0 : (int)strlen(lead), "", (int)n, f);
		f += n + (f[n] == '\n');
	}
}

static int arg_len(const char *arg)
{
	return arg ? (int)strcspn(arg, "|") : 0;
}

/* The commands whose options are in options.def (run, attach, top): 1 and
 * their parser's command and WHERE bits (every collector, the agent's, eBPF's). */
static int cli_table(int cmd, enum mt_cli_cmd *cc, unsigned *mine, unsigned *ag, unsigned *bpf)
{
	switch (cmd) {
	case MT_C_RUN: *cc = MT_CMD_RUN, *mine = MT_W_RUN, *ag = MT_W_RUN_AG, *bpf = MT_W_RUN_BPF; return 1;
	case MT_C_ATTACH: *cc = MT_CMD_ATTACH, *mine = MT_W_ATT, *ag = MT_W_ATT_AG, *bpf = MT_W_ATT_BPF; return 1;
	case MT_C_TOP: *cc = MT_CMD_TOP, *mine = MT_W_TOP, *ag = MT_W_TOP_AG, *bpf = MT_W_TOP_BPF; return 1;
	default: return 0;
	}
}

void mt_cmd_usage(enum mt_cmd_id cmd, FILE *out)
{
	mt_cmd_usage_via(cmd, -1, out);
}

void mt_cmd_usage_via(enum mt_cmd_id cmd, int via, FILE *out)
{
	const struct mt_cmd *c = &mt_cmds[cmd];
	print_forms(out, "usage: ", c->forms);
	fputc('\n', out);
	wrap(out, 0, "", c->desc);
	enum mt_cli_cmd cc;
	unsigned mine, ag, bpf;
	if (cli_table(cmd, &cc, &mine, &ag, &bpf)) {
		fprintf(out, "\nOptions:\n");
		mt_cli_usage(cc, via, out);
		fprintf(out, "\nSee also: man memtap-%s\n", c->name);
		return;
	}
	int words = 0;
	for (const struct carg *a = cargs; a->word; a++) {
		if (a->cmd != cmd)
			continue;
		if (!words++)
			fprintf(out, "\nCommands:\n");
		char head[64];
		snprintf(head, sizeof(head), "  %s%s%s", a->word, a->arg ? " " : "", a->arg ? a->arg : "");
		wrap(out, 16, head, a->help);
	}
	int opts = 0;
	for (int i = 0; i < MT_CO_COUNT; i++) {
		const struct copt *o = &copts[i];
		if (o->cmd != cmd)
			continue;
		if (!opts++)
			fprintf(out, "\nOptions:\n");
		char head[96];
		if (o->shrt)
			snprintf(head, sizeof(head), "  -%c, --%s%s%.*s", o->shrt, o->lng, o->arg ? " " : "",
				 arg_len(o->arg), o->arg ? o->arg : "");
		else
			snprintf(head, sizeof(head), "      --%s%s%.*s", o->lng, o->arg ? "=" : "", arg_len(o->arg),
				 o->arg ? o->arg : "");
		wrap(out, 26, head, o->help);
	}
	fprintf(out, "\nSee also: man memtap-%s\n", c->name);
}

void mt_usage(FILE *out)
{
	fprintf(out, "usage: memtap COMMAND [ARGS...]\n"
		     "       memtap -V | --version\n"
		     "       memtap -h | --help | help [COMMAND]\n\n"
		     "memtap counts, sizes and attributes the memory allocations of native Linux\n"
		     "processes, from their start (run) or while they run (attach).\n\n"
		     "Commands:\n");
	for (int i = 0; i < MT_C_COUNT; i++) {
		fprintf(out, "  %-8s %s\n", mt_cmds[i].name, mt_cmds[i].summary);
		print_forms(out, "             ", mt_cmds[i].forms);
	}
	fprintf(out, "\n'memtap help COMMAND' or 'memtap COMMAND --help' describes one command;\n"
		     "'man memtap' and 'man memtap-COMMAND' have them all.\n");
}

/* ---- man pages ---- */

/* TEXT for roff: backslashes and dashes escaped, newlines joined, a line
 * never starting with a control character. */
static void roff(FILE *out, const char *text, int len)
{
	for (int i = 0; text[i] && (len < 0 || i < len); i++) {
		char c = text[i];
		if (c == '\\')
			fputs("\\e", out);
		else if (c == '-')
			fputs("\\-", out);
		else if (c == '\n')
			fputc(' ', out);
		else if ((c == '.' || c == '\'') && i == 0)
			fprintf(out, "\\&%c", c);
		else
			fputc(c, out);
	}
}

static void man_header(FILE *out, const char *page, const char *name, const char *summary)
{
	fprintf(out, ".\\\" Generated by `memtap help --man%s%s` from src/cli/*.def; do not edit.\n",
		name ? " " : "", name ? name : "");
	fprintf(out, ".TH %s 1 \"\" \"memtap %s\" \"User Commands\"\n.nh\n.SH NAME\n", page, MT_VERSION);
	roff(out, name ? "memtap-" : "memtap", -1);
	if (name)
		roff(out, name, -1);
	fputs(" \\- ", out);
	roff(out, summary, -1);
	fputc('\n', out);
}

static void man_forms(FILE *out, const char *forms)
{
	fputs(".SH SYNOPSIS\n", out);
	int first = 1;
	for (const char *f = forms; *f;) {
		size_t n = strcspn(f, "\n");
		size_t w = strcspn(f, " \n");
		if (!first)
			fputs(".br\n", out);
		first = 0;
		fputs(".B memtap ", out);
		roff(out, f, (int)w);
		fputc('\n', out);
		if (n > w) {
			roff(out, f + w + 1, (int)(n - w - 1));
			fputc('\n', out);
		}
		f += n + (f[n] == '\n');
	}
}

static void man_para(FILE *out, const char *text)
{
	/* "\n\n" starts a paragraph. */
	for (const char *p = text; *p;) {
		const char *e = strstr(p, "\n\n");
		int n = e ? (int)(e - p) : (int)strlen(p);
		fputs(".PP\n", out);
		roff(out, p, n);
		fputc('\n', out);
		p += n;
		while (*p == '\n')
			p++;
	}
}

static void man_opt(FILE *out, int shrt, const char *lng, const char *arg, const char *help, const char *only)
{
	fputs(".TP\n", out);
	if (shrt)
		fprintf(out, "\\fB\\-%c\\fR%s", shrt, lng ? ", " : "");
	if (lng) {
		fputs("\\fB\\-\\-", out);
		roff(out, lng, -1);
		fputs("\\fR", out);
	}
	if (arg) {
		fputs(shrt && !lng ? " " : "=", out);
		fputs("\\fI", out);
		roff(out, arg, arg_len(arg));
		fputs("\\fR", out);
	}
	fputc('\n', out);
	roff(out, help, -1);
	if (only)
		roff(out, only, -1);
	fputc('\n', out);
}

static void man_see_also(FILE *out, int cmd)
{
	fputs(".SH SEE ALSO\n", out);
	int n = 0;
	if (cmd >= 0)
		fprintf(out, ".BR memtap (1)");
	for (int i = 0; i < MT_C_COUNT; i++)
		if (i != cmd)
			fprintf(out, "%s.BR memtap\\-%s (1)", n++ || cmd >= 0 ? ",\n" : "", mt_cmds[i].name);
	fputs(",\n.BR heaptrack (1),\n.BR valgrind (1),\n.BR pprof (1)\n", out);
}

static void man_main(FILE *out)
{
	man_header(out, "MEMTAP", NULL, "memory-allocation observability for native Linux processes");
	fputs(".SH SYNOPSIS\n.B memtap\n.I COMMAND\n[\\fIARGS\\fR...]\n.br\n.B memtap \\-V\n.br\n"
	      ".B memtap help\n[\\fICOMMAND\\fR]\n.SH DESCRIPTION\n", out);
	man_para(out, "memtap answers memory questions about native Linux x86-64 processes, especially "
		      "long-running servers, without rebuilding them: how often each allocator entry point is "
		      "called and with which sizes (DTrace count() and quantize() style), what is allocated, "
		      "freed, in use and at its peak, per process and per child, and, with --stacks, by call "
		      "site, with runtime control of a traced process.\n\n"
		      "It works three ways: by starting the program with a small agent library preloaded "
		      "(memtap run), by injecting that agent into a running process with ptrace (memtap "
		      "attach), or with eBPF uprobes (--via=ebpf: nothing is loaded into the process). "
		      "Profiles are written as PREFIX.<pid>.<seq>.mtp files, which memtap report renders as "
		      "text, JSON, pprof and jeprof heap profiles, collapsed stacks and flame graphs.");
	fputs(".SH COMMANDS\n", out);
	for (int i = 0; i < MT_C_COUNT; i++) {
		/* .TQ (groff): the other forms as more tags of one item. */
		const char *tag = ".TP\n";
		for (const char *f = mt_cmds[i].forms; *f; tag = ".TQ\n") {
			size_t n = strcspn(f, "\n");
			fputs(tag, out);
			fputs("\\fBmemtap ", out);
			roff(out, f, (int)n);
			fputs("\\fR\n", out);
			f += n + (f[n] == '\n');
		}
		roff(out, mt_cmds[i].summary, -1);
		fprintf(out, "; see \\fBmemtap\\-%s\\fR(1).\n", mt_cmds[i].name);
	}
	fputs(".SH OPTIONS\n", out);
	man_opt(out, 'V', "version", NULL, "print memtap's version and exit", NULL);
	man_opt(out, 'h', "help", NULL, "list the commands (memtap help COMMAND describes one)", NULL);
	fputs(".SH EXIT STATUS\n", out);
	man_para(out, "memtap run returns the traced command's exit status (128+N when a signal N killed "
		      "it). The other commands return 0 on success, 1 when something failed (a message on "
		      "standard error says what) and 2 for a usage error.");
	fputs(".SH ENVIRONMENT\n.TP\n.B MEMTAP_RUNDIR\n", out);
	roff(out, "where the live counter files go (default /dev/shm): MEMTAP_RUNDIR/memtap-UID/", -1);
	fputs("\n.SH FILES\n.TP\n.I /dev/shm/memtap\\-UID/\n", out);
	roff(out, "the live counter files of traced processes (one per process image, mode 0600) and their "
		  "control sockets; memtap reads a process's final figures from there, however it ended", -1);
	fputs("\n.TP\n.I PREFIX.<pid>.<seq>.mtp\n", out);
	roff(out, "profile files, one per snapshot of a traced process (-o PREFIX; default ./memtap.<command>)",
	     -1);
	fputc('\n', out);
	fputs(".SH EXAMPLES\n.nf\n", out);
	fputs("memtap demo\n"
	      "memtap run \\-\\-stacks \\-o /tmp/p \\-\\- redis\\-server \\-\\-port 7777\n"
	      "memtap attach \\-p 4321 \\-d 10 \\-\\-stacks\n"
	      "memtap report \\-\\-format=svg \\-o flame.svg /tmp/p.*.mtp\n"
	      ".fi\n", out);
	man_see_also(out, -1);
}

static void man_cmd(int cmd, FILE *out)
{
	const struct mt_cmd *c = &mt_cmds[cmd];
	char page[64];
	snprintf(page, sizeof(page), "MEMTAP-%s", c->name);
	for (char *p = page; *p; p++)
		if (*p >= 'a' && *p <= 'z')
			*p = (char)(*p - 'a' + 'A');
	man_header(out, page, c->name, c->summary);
	man_forms(out, c->forms);
	fputs(".SH DESCRIPTION\n", out);
	man_para(out, c->desc);
	int words = 0;
	for (const struct carg *a = cargs; a->word; a++) {
		if (a->cmd != (enum mt_cmd_id)cmd)
			continue;
		if (!words++)
			fputs(".SH COMMANDS\n", out);
		fputs(".TP\n\\fB", out);
		roff(out, a->word, -1);
		fputs("\\fR", out);
		if (a->arg) {
			fputs(" \\fI", out);
			roff(out, a->arg, -1);
			fputs("\\fR", out);
		}
		fputc('\n', out);
		roff(out, a->help, -1);
		fputc('\n', out);
	}
	fputs(".SH OPTIONS\n", out);
	enum mt_cli_cmd cc;
	unsigned mine, ag, bpf;
	if (cli_table(cmd, &cc, &mine, &ag, &bpf)) {
		for (int i = 0; i < MT_O_COUNT; i++) {
			const struct mt_cli_optdesc *o = &mt_cli_optdescs[i];
			if (!(o->where & mine))
				continue;
			const char *only = !(o->where & bpf) ? (cmd != MT_C_ATTACH ? " (agent only)" : " (--via=inject only)")
					   : !(o->where & ag) ? " (--via=ebpf only)" : NULL;
			man_opt(out, o->shrt, o->lng, o->arg, o->help, only);
		}
	} else {
		for (int i = 0; i < MT_CO_COUNT; i++)
			if (copts[i].cmd == (enum mt_cmd_id)cmd)
				man_opt(out, copts[i].shrt, copts[i].lng, copts[i].arg, copts[i].help, NULL);
	}
	man_see_also(out, cmd);
}

void mt_man_write(int cmd, FILE *out)
{
	if (cmd < 0)
		man_main(out);
	else
		man_cmd(cmd, out);
}

/* ---- bash completion ---- */

/* What a word after option ARG completes to: a process id, a file, a
 * choice, or nothing (a number, a function name). */
static void bash_arg_case(FILE *out, const char *names, const char *arg)
{
	int n = arg_len(arg);
	if (arg[n] == '|') {
		fprintf(out, "\t\t%s) COMPREPLY=($(compgen -W \"", names);
		for (const char *v = arg + n + 1; *v; v++)
			fputc(*v == '|' ? ' ' : *v, out);
		fputs("\" -- \"$cur\")); return ;;\n", out);
	} else if (!strncmp(arg, "PID", (size_t)n) && n == 3) {
		fprintf(out, "\t\t%s) _memtap_pids; return ;;\n", names);
	} else if ((n == 1 && arg[0] == 'F') || !strncmp(arg, "FILE", 4) || !strncmp(arg, "PREFIX", 6)) {
		fprintf(out, "\t\t%s) COMPREPLY=($(compgen -f -- \"$cur\")); return ;;\n", names);
	} else {
		fprintf(out, "\t\t%s) return ;;\n", names);
	}
}

static void bash_opt_names(char *buf, size_t len, int shrt, const char *lng)
{
	if (shrt)
		snprintf(buf, len, "-%c|--%s", shrt, lng);
	else
		snprintf(buf, len, "--%s", lng);
}

void mt_completion_bash(FILE *out)
{
	fputs("# bash completion for memtap; generated by `memtap help --completion=bash` from the\n"
	      "# option tables (src/cli/*.def): do not edit.\n"
	      "_memtap_pids()\n{\n"
	      "\tCOMPREPLY=($(compgen -W \"$(cd /proc 2>/dev/null && compgen -G '[0-9]*')\" -- \"$cur\"))\n"
	      "}\n\n"
	      "_memtap()\n{\n"
	      "\tlocal cur=${COMP_WORDS[COMP_CWORD]} prev= cmd= i w dashdash=0 pos=0\n"
	      "\tlocal -a before=()\n"
	      "\t# --opt=value: bash may split it into '--opt' '=' 'value'.\n"
	      "\tfor ((i = 1; i < COMP_CWORD; i++)); do\n"
	      "\t\tw=${COMP_WORDS[i]}\n"
	      "\t\tif [[ $w == = && ${#before[@]} -gt 0 ]]; then continue; fi\n"
	      "\t\tbefore+=(\"$w\")\n"
	      "\tdone\n"
	      "\tif [[ $cur == = ]]; then cur=; fi\n"
	      "\tif [[ $cur == --*=* ]]; then prev=${cur%%=*}; cur=${cur#*=};\n"
	      "\telif [[ ${COMP_WORDS[COMP_CWORD-1]} == = || ${COMP_WORDS[COMP_CWORD]} == = ]]; then\n"
	      "\t\tprev=${before[${#before[@]}-1]}\n"
	      "\telif ((${#before[@]})); then prev=${before[${#before[@]}-1]}; fi\n"
	      "\tfor w in \"${before[@]}\"; do\n"
	      "\t\tif [[ -z $cmd ]]; then [[ $w == -* ]] || cmd=$w; continue; fi\n"
	      "\t\tif [[ $w == -- ]]; then dashdash=1; elif [[ $w != -* ]]; then pos=$((pos + 1)); fi\n"
	      "\tdone\n"
	      "\tif [[ -z $cmd ]]; then\n"
	      "\t\tCOMPREPLY=($(compgen -W \"", out);
	for (int i = 0; i < MT_C_COUNT; i++)
		fprintf(out, "%s ", mt_cmds[i].name);
	fputs("-V --version -h --help\" -- \"$cur\"))\n\t\treturn\n\tfi\n", out);
	fputs("\tcase $cmd in\n", out);
	for (int c = 0; c < MT_C_COUNT; c++) {
		fprintf(out, "\t%s)\n", mt_cmds[c].name);
		char names[96];
		/* Option arguments. */
		fputs("\t\tcase $prev in\n", out);
		enum mt_cli_cmd cc;
		unsigned mine, ag, bpf;
		int in_table = cli_table(c, &cc, &mine, &ag, &bpf);
		if (in_table) {
			if (c == MT_C_RUN)
				fputs("\t\t*) [[ $dashdash == 1 || $pos -gt 0 ]] && { "
				      "if [[ $prev == -- || $pos == 0 ]]; then COMPREPLY=($(compgen -c -- \"$cur\")); "
				      "else COMPREPLY=($(compgen -f -- \"$cur\")); fi; return; } ;;\n\t\tesac\n"
				      "\t\tcase $prev in\n", out);
			for (int i = 0; i < MT_O_COUNT; i++) {
				const struct mt_cli_optdesc *o = &mt_cli_optdescs[i];
				if (!(o->where & mine) || !o->arg)
					continue;
				bash_opt_names(names, sizeof(names), o->shrt, o->lng);
				bash_arg_case(out, names, o->arg);
			}
		} else {
			for (int i = 0; i < MT_CO_COUNT; i++) {
				if (copts[i].cmd != (enum mt_cmd_id)c || !copts[i].arg)
					continue;
				bash_opt_names(names, sizeof(names), copts[i].shrt, copts[i].lng);
				bash_arg_case(out, names, copts[i].arg);
			}
		}
		fputs("\t\tesac\n", out);
		/* Options. */
		fputs("\t\tif [[ $cur == -* ]]; then\n\t\t\tCOMPREPLY=($(compgen -W \"", out);
		if (in_table) {
			for (int i = 0; i < MT_O_COUNT; i++) {
				const struct mt_cli_optdesc *o = &mt_cli_optdescs[i];
				if (!(o->where & mine))
					continue;
				if (o->shrt)
					fprintf(out, "-%c ", o->shrt);
				fprintf(out, "--%s%s ", o->lng, o->arg ? "=" : "");
			}
		} else {
			for (int i = 0; i < MT_CO_COUNT; i++)
				if (copts[i].cmd == (enum mt_cmd_id)c) {
					if (copts[i].shrt)
						fprintf(out, "-%c ", copts[i].shrt);
					fprintf(out, "--%s%s ", copts[i].lng, copts[i].arg ? "=" : "");
				}
		}
		fputs("\" -- \"$cur\"))\n"
		      "\t\t\t[[ ${COMPREPLY[0]} == *= ]] && compopt -o nospace 2>/dev/null\n"
		      "\t\t\treturn\n\t\tfi\n", out);
		/* Operands. */
		switch (c) {
		case MT_C_RUN: fputs("\t\tCOMPREPLY=($(compgen -c -- \"$cur\"))\n", out); break;
		case MT_C_CTL:
			fputs("\t\tif ((pos == 0)); then _memtap_pids; elif ((pos == 1)); then\n"
			      "\t\t\tCOMPREPLY=($(compgen -W \"", out);
			for (const struct carg *a = cargs; a->word; a++)
				if (a->cmd == MT_C_CTL)
					fprintf(out, "%s ", a->word);
			fputs("\" -- \"$cur\"))\n\t\telse COMPREPLY=($(compgen -f -- \"$cur\")); fi\n", out);
			break;
		case MT_C_REPORT:
		case MT_C_DIFF:
			fputs("\t\tCOMPREPLY=($(compgen -f -X '!*.mtp' -- \"$cur\") $(compgen -d -- \"$cur\"))\n", out);
			break;
		case MT_C_HELP:
			fputs("\t\tCOMPREPLY=($(compgen -W \"", out);
			for (int i = 0; i < MT_C_COUNT; i++)
				fprintf(out, "%s ", mt_cmds[i].name);
			fputs("\" -- \"$cur\"))\n", out);
			break;
		default: break;
		}
		fputs("\t\t;;\n", out);
	}
	fputs("\tesac\n}\ncomplete -F _memtap memtap\n", out);
}

/* ---- memtap help ---- */

int cmd_help(int argc, char **argv)
{
	int id, man = 0;
	const char *shell = NULL;
	optind = 1;
	while ((id = mt_cmd_getopt(MT_C_HELP, argc, argv)) >= 0) {
		if (id == MT_CO_HELP_MAN)
			man = 1;
		else if (id == MT_CO_HELP_COMPLETION)
			shell = optarg;
	}
	if (id == MT_CMD_BAD)
		return 2;
	if (id == MT_CMD_HELPED)
		return 0;
	if (argc - optind > 1)
		return mt_error("help: one command at a time ('%s' and '%s' given)", argv[optind], argv[optind + 1]),
		       mt_cli_try_help("help");
	int cmd = -1;
	if (optind < argc && (cmd = mt_cmd_find(argv[optind])) < 0) {
		mt_error("help: no command '%s'; the commands are:", argv[optind]);
		for (int i = 0; i < MT_C_COUNT; i++)
			fprintf(stderr, "  %s\n", mt_cmds[i].name);
		return 2;
	}
	if (shell) {
		if (strcmp(shell, "bash"))
			return mt_error("help: --completion=%s: only bash is supported", shell), 2;
		mt_completion_bash(stdout);
	} else if (man) {
		mt_man_write(cmd, stdout);
	} else if (cmd >= 0) {
		mt_cmd_usage((enum mt_cmd_id)cmd, stdout);
	} else {
		mt_usage(stdout);
	}
	return fflush(stdout) ? 1 : 0;
}
