/* memtap: the command table (commands.def) dispatches one cmd_*() per
 * command; help.c makes the usage texts, man pages and completion from it. */
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "help.h"

int main(int argc, char **argv)
{
	if (argc < 2) {
		mt_usage(stderr);
		return 2;
	}
	const char *a = argv[1];
	if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
		mt_usage(stdout);
		return 0;
	}
	if (!strcmp(a, "-V") || !strcmp(a, "--version")) {
		printf("memtap %s\n", MEMTAP_VERSION);
		return 0;
	}
	int cmd = mt_cmd_find(a);
	if (cmd >= 0)
		return mt_cmds[cmd].fn(argc - 1, argv + 1);
	if (a[0] == '-')
		mt_error("unknown option '%s' (options come after the command: memtap COMMAND [OPTIONS])", a);
	else
		mt_error("unknown command '%s'", a);
	return mt_cli_try_help(NULL);
}
