/* memtap: the command table. */
#include <stdio.h>
#include <string.h>

#include "cli.h"

static const struct {
	const char *name;
	int (*fn)(int, char **);
	const char *usage;
} commands[] = {
	{"run", cmd_run, "run [-o PREFIX] [--stacks|--sample=B|--leaks] [-f FUNC[:size=argN][:pool=argM]] [--report-file F] [-q] -- CMD [ARGS...]"},
	{"ctl", cmd_ctl, "ctl PID activate|deactivate|dump [PATH]|stats|reset|status|leaks"},
	{"report", cmd_report, "report [--format=text|json|collapsed|svg|pprof|jeprof] [--value=inuse|alloc] [--merge] [-o OUT] FILE..."},
	{"diff", cmd_diff, "diff [--format=text|pprof] [--top=N] [--force] [-o OUT] BASE NEW"},
	{"attach", cmd_attach, "attach -p PID --via=ebpf [-d SECONDS] [-f FUNC[:size=argN][:pool=argM]] [--within FUNC] [--heap-events] [--stacks] [-o PREFIX]"},
	{"detach", cmd_detach, "detach -p PID [--report-file F] [--format text|json] [-q]"},
	{"demo", cmd_demo, "demo"},
};

static void usage(FILE *out)
{
	fprintf(out, "usage: memtap COMMAND [OPTIONS]\n\ncommands:\n");
	for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
		fprintf(out, "  memtap %s\n", commands[i].usage);
	fprintf(out, "\nmemtap COMMAND --help describes one command; see also README.md.\n");
}

int main(int argc, char **argv)
{
	if (argc < 2 || !strcmp(argv[1], "-h") || !strcmp(argv[1], "--help") || !strcmp(argv[1], "help")) {
		usage(argc < 2 ? stderr : stdout);
		return argc < 2 ? 2 : 0;
	}
	if (!strcmp(argv[1], "--version")) {
		printf("memtap 0.1\n");
		return 0;
	}
	for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
		if (!strcmp(argv[1], commands[i].name))
			return commands[i].fn(argc - 1, argv + 1);
	mt_error("unknown command '%s'", argv[1]);
	usage(stderr);
	return 2;
}
