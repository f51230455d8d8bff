/*
 * memtap demo: the embedded default.  Runs the bundled workload (a toy
 * request loop with a pool allocator on top of malloc) under `memtap run`
 * and prints its report, so a newcomer sees the product work in one command.
 */
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "help.h"

int cmd_demo(int argc, char **argv)
{
	int c;
	optind = 1;
	if ((c = mt_cmd_getopt(MT_C_DEMO, argc, argv)) != MT_CMD_DONE)
		return c == MT_CMD_HELPED ? 0 : 2;
	if (optind < argc)
		return mt_error("demo: takes no arguments ('%s' given)", argv[optind]), mt_cli_try_help("demo");
	char workload[PATH_MAX], err[PATH_MAX * 3];
	if (mt_find_companion("memtap-demo-workload", workload, sizeof(workload), err, sizeof(err)))
		return mt_error("demo: %s", err), 2;
	char dir[] = "/tmp/memtap-demo.XXXXXX";
	if (!mkdtemp(dir))
		return mt_error("demo: cannot create a directory under /tmp"), 1;
	char prefix[PATH_MAX], report[PATH_MAX];
	snprintf(prefix, sizeof(prefix), "%s/demo", dir);
	snprintf(report, sizeof(report), "%s/report.txt", dir);

	printf("memtap demo: tracing a toy server that answers 300 requests with a pool\n"
	       "allocator on top of malloc (like Apache's apr_palloc), on 2 threads.\n\n"
	       "$ memtap run -o %s -- %s 300\n\n", prefix, workload);
	fflush(stdout);
	char *run_argv[] = {"run", "-o", prefix, "--report-file", report, "--", workload, "300", NULL};
	int rc = cmd_run(8, run_argv);
	FILE *f = fopen(report, "r");
	if (!f)
		return mt_error("demo: the run produced no report (exit status %d)", rc), 1;
	char buf[4096];
	size_t n;
	while ((n = fread(buf, 1, sizeof(buf), f)) > 0)
		fwrite(buf, 1, n, stdout);
	fclose(f);
	printf("\nThe profile files are in %s; try:\n"
	       "  memtap report --format=json %s.*.mtp\n"
	       "and, on a running program: memtap run -o /tmp/p -- CMD, then memtap ctl PID stats\n",
	       dir, prefix);
	return rc;
}
