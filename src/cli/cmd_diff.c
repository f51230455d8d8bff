/* memtap diff BASE NEW: growth per call site between two snapshots of one
 * process. */
#include <errno.h>
#include <getopt.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "help.h"

int cmd_diff(int argc, char **argv)
{
	const char *format = "text", *output = NULL;
	unsigned long top = 20;
	int force = 0, c;
	char *end;
	optind = 1;
	while ((c = mt_cmd_getopt(MT_C_DIFF, argc, argv)) >= 0) {
		switch (c) {
		case MT_CO_DIFF_FORMAT: format = optarg; break;
		case MT_CO_DIFF_FORCE: force = 1; break;
		case MT_CO_DIFF_FULL_STACKS: mt_render_full_stacks = 1; break;
		case MT_CO_DIFF_OUTPUT: output = optarg; break;
		case MT_CO_DIFF_TOP:
			errno = 0;
			top = strtoul(optarg, &end, 10);
			if (errno || *end || !*optarg || !top || top > 1000000)
				return mt_error("diff: --top wants a number of call sites, not '%s'", optarg), 2;
			break;
		}
	}
	if (c != MT_CMD_DONE)
		return c == MT_CMD_HELPED ? 0 : 2;
	if (strcmp(format, "text") && strcmp(format, "pprof"))
		return mt_error("diff: unknown format '%s' (text or pprof)", format), 2;
	if (argc - optind != 2) {
		mt_error("diff: give two profiles, BASE and NEW (%d given)", argc - optind);
		return mt_cli_try_help("diff");
	}
	struct mt_loaded l;
	if (mt_load_profiles(argv + optind, 2, &l) || l.n != 2) {
		mt_loaded_free(&l);
		return 1;
	}
	const struct mt_profile *base = l.items[0].profile, *newer = l.items[1].profile;
	const char *bpath = l.items[0].path, *npath = l.items[1].path;
	int rc = 1;
	FILE *out = stdout;
	if ((base->pid != newer->pid || base->start_ns != newer->start_ns) && !force) {
		mt_error("diff: %s (pid %u) and %s (pid %u%s) are snapshots of different processes, "
			 "whose call sites need not correspond; diff two dumps of one process, or use "
			 "--force", bpath, base->pid, npath, newer->pid,
			 base->pid == newer->pid ? ", started at another time" : "");
		goto out;
	}
	if (!base->nsites && !newer->nsites) {
		mt_error("diff: %s and %s have no call sites: record with `memtap run --stacks`", bpath,
			 npath);
		goto out;
	}
	if (newer->dump_ns < base->dump_ns)
		mt_error("diff: note: %s was written before %s; growth is still NEW minus BASE", npath,
			 bpath);
	if (!output && !strcmp(format, "pprof") && isatty(STDOUT_FILENO)) {
		mt_error("diff: pprof output is gzip-compressed binary: use -o FILE or redirect stdout");
		rc = 2;
		goto out;
	}
	if (output && !(out = fopen(output, "w"))) {
		mt_error("diff: cannot write %s: %s", output, strerror(errno));
		out = stdout;
		goto out;
	}
	struct mt_diff *d;
	int err = mt_diff_new(base, newer, &d);
	if (!err) {
		err = strcmp(format, "pprof") ? mt_render_diff_text(out, d, (unsigned)top)
					      : mt_render_diff_pprof(out, d);
		mt_diff_free(d);
	}
	if (out != stdout && fclose(out) && !err)
		err = -errno;
	out = stdout;
	if (err)
		mt_error("diff: writing the report: %s", strerror(-err));
	else
		rc = 0;
out:
	if (out != stdout)
		fclose(out);
	mt_loaded_free(&l);
	return rc;
}
