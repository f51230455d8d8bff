/* memtap report FILE...: render profiles. */
#include <errno.h>
#include <getopt.h>
#include <string.h>

#include "cli.h"

static void report_usage(FILE *out)
{
	fprintf(out,
		"usage: memtap report [OPTIONS] FILE...\n"
		"  --format=FMT   text (DTrace layout, the default) or json\n"
		"  --merge        sum all files into one process entry\n"
		"  -o FILE        write to FILE instead of stdout\n");
}

int cmd_report(int argc, char **argv)
{
	static const struct option opts[] = {
		{"format", required_argument, NULL, 'F'}, {"merge", no_argument, NULL, 'm'},
		{"output", required_argument, NULL, 'o'}, {"help", no_argument, NULL, 'h'}, {0},
	};
	const char *format = "text", *output = NULL;
	int merge = 0, c;
	optind = 1;
	while ((c = getopt_long(argc, argv, "o:h", opts, NULL)) != -1) {
		switch (c) {
		case 'F': format = optarg; break;
		case 'm': merge = 1; break;
		case 'o': output = optarg; break;
		case 'h': report_usage(stdout); return 0;
		default: report_usage(stderr); return 2;
		}
	}
	if (strcmp(format, "text") && strcmp(format, "json"))
		return mt_error("report: unknown format '%s' (text or json)", format), 2;
	if (optind >= argc) {
		mt_error("report: no profile files given");
		report_usage(stderr);
		return 2;
	}
	struct mt_loaded l;
	int failed = mt_load_profiles(argv + optind, (size_t)(argc - optind), &l);
	if (!l.n) {
		mt_loaded_free(&l);
		return mt_error("report: no readable profile among %d file(s)", argc - optind), 1;
	}
	size_t older = merge ? mt_loaded_latest(&l) : 0;
	if (older)
		mt_error("report: --merge uses the latest snapshot of each process (%zu earlier "
			 "snapshot%s of the same processes left out)", older, older == 1 ? "" : "s");
	if (merge && mt_loaded_merge(&l)) {
		mt_loaded_free(&l);
		return mt_error("report: out of memory"), 1;
	}
	FILE *out = stdout;
	if (output && !(out = fopen(output, "w"))) {
		mt_loaded_free(&l);
		return mt_error("report: cannot write %s: %s", output, strerror(errno)), 1;
	}
	int err = mt_render(out, format, &l);
	if (out != stdout && fclose(out) && !err)
		err = -errno;
	mt_loaded_free(&l);
	if (err)
		return mt_error("report: writing the report: %s", strerror(-err)), 1;
	return failed ? 1 : 0;
}
