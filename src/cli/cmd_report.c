/* memtap report FILE...: render profiles. */
#include <errno.h>
#include <getopt.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"

#include "help.h"

/* Formats made of call sites, and whether they take a single profile. */
static int site_format(const char *format, int *single)
{
	*single = !strcmp(format, "pprof") || !strcmp(format, "jeprof");
	return *single || !strcmp(format, "collapsed") || !strcmp(format, "flamegraph");
}

/* The progress bar on stderr (a terminal only): shown once a report has
 * taken half a second, redrawn at most ten times a second, with an estimate
 * of the time left from the rate so far. */
struct bar {
	double start, last;
	double delay; /* MEMTAP_PROGRESS_DELAY, seconds (0.5) */
	int shown;
};

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void bar_update(double done, void *arg)
{
	struct bar *b = arg;
	double t = now_s(), el = t - b->start;
	if (done < 1 && (el < b->delay || t - b->last < 0.1))
		return;
	if (done >= 1 && !b->shown)
		return;
	b->last = t;
	b->shown = 1;
	int w = 30, fill = (int)(done * w + 0.5);
	char left[32] = "";
	if (done > 0.02 && done < 1)
		snprintf(left, sizeof(left), ", about %.0f s left", el / done * (1 - done) + 0.5);
	fprintf(stderr, "\rmemtap: report: [%.*s%*s] %3.0f%%%s\033[K", fill, "##############################",
		w - fill, "", done * 100, left);
	if (done >= 1)
		fputc('\n', stderr);
}

/* svg: the timeline when any file has one (recorded with --interval), else
 * the flame graph, as before timelines. */
static const char *resolve_svg(const char *format, const struct mt_loaded *l)
{
	if (strcmp(format, "svg"))
		return format;
	for (size_t i = 0; i < l->n; i++)
		if (l->items[i].profile->timeline.n)
			return "timeline";
	return "flamegraph";
}

int cmd_report(int argc, char **argv)
{
	const char *format = "text", *output = NULL;
	struct mt_render_opts ro = {.value = MT_VALUE_INUSE};
	int merge = 0, pools = 0, single, c;
	optind = 1;
	while ((c = mt_cmd_getopt(MT_C_REPORT, argc, argv)) >= 0) {
		switch (c) {
		case MT_CO_REPORT_FORMAT: format = optarg; break;
		case MT_CO_REPORT_MERGE: merge = 1; break;
		case MT_CO_REPORT_POOLS: pools = 1; break;
		case MT_CO_REPORT_FULL_STACKS: mt_render_full_stacks = 1; break;
		case MT_CO_REPORT_VALUE:
			if (!strcmp(optarg, "inuse"))
				ro.value = MT_VALUE_INUSE;
			else if (!strcmp(optarg, "alloc"))
				ro.value = MT_VALUE_ALLOC;
			else
				return mt_error("report: unknown --value '%s' (inuse or alloc)", optarg), 2;
			break;
		case MT_CO_REPORT_OUTPUT: output = optarg; break;
		}
	}
	if (c != MT_CMD_DONE)
		return c == MT_CMD_HELPED ? 0 : 2;
	int pool_log = !strcmp(format, "pool-log");
	static const char *const known[] = {"text", "json", "html", "svg", "timeline", "pprof", "jeprof",
					    "collapsed", "flamegraph", "pool-log"};
	int is_known = 0;
	for (size_t i = 0; i < sizeof(known) / sizeof(known[0]); i++)
		is_known |= !strcmp(format, known[i]);
	if (!is_known)
		return mt_error("report: unknown format '%s' (text, json, html, svg, timeline, pprof, jeprof, "
				"collapsed, flamegraph or pool-log)", format), 2;
	if (optind >= argc) {
		mt_error("report: no profile files given (the .mtp files of run, attach or ctl dump)");
		return mt_cli_try_help("report");
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
	if (pools || pool_log) {
		size_t with = 0;
		for (size_t i = 0; i < l.n; i++)
			with += l.items[i].profile->apr != NULL;
		if (!with) {
			mt_error("report: %s no APR pools: record with `memtap run --pools` or `memtap attach "
				 "--pools`", l.n > 1 ? "these files have" : "this profile has");
			mt_loaded_free(&l);
			return 1;
		}
	}
	format = resolve_svg(format, &l);
	int sites = site_format(format, &single);
	if (sites) {
		size_t with = 0;
		for (size_t i = 0; i < l.n; i++)
			with += l.items[i].profile->nsites != 0;
		if (!with) {
			mt_error("report: --format=%s needs call sites, and %s %s none: record with "
				 "`memtap run --stacks`", format,
				 l.n > 1 ? "these files" : l.items[0].path ? l.items[0].path : "the merged profile",
				 l.n == 1 ? "has" : "have");
			mt_loaded_free(&l);
			return 1;
		}
		if (single && l.n > 1) {
			mt_error("report: --format=%s writes one profile and %zu were given: pass one file, "
				 "or --merge to sum them (snapshots of one program)", format, l.n);
			mt_loaded_free(&l);
			return 2;
		}
	}
	/* gzip data on a terminal helps nobody and can upset it. */
	if (!output && !strcmp(format, "pprof") && isatty(STDOUT_FILENO)) {
		mt_loaded_free(&l);
		return mt_error("report: pprof output is gzip-compressed binary: use -o FILE or redirect "
				"stdout"), 2;
	}
	FILE *out = stdout;
	if (output && !(out = fopen(output, "w"))) {
		mt_loaded_free(&l);
		return mt_error("report: cannot write %s: %s", output, strerror(errno)), 1;
	}
	const char *delay = getenv("MEMTAP_PROGRESS_DELAY");
	struct bar bar = {now_s(), 0, delay ? atof(delay) : 0.5, 0};
	if (isatty(STDERR_FILENO)) {
		ro.progress = bar_update;
		ro.progress_arg = &bar;
	}
	int err = 0;
	if (pool_log) {
		err = mt_render_pools_log(out, l.items, l.n);
	} else if (pools && !strcmp(format, "text")) {
		for (size_t i = 0; i < l.n && !err; i++) {
			const struct mt_profile *p = l.items[i].profile;
			fprintf(out, "%smemtap: pid %u (ppid %u) %s%s%s\n", i ? "\n" : "", p->pid, p->ppid, p->command,
				l.items[i].path ? ", from " : "", l.items[i].path ? l.items[i].path : "");
			err = p->apr ? mt_render_pools_text(out, p, 1) : (fprintf(out, "  no APR pools recorded\n"), 0);
		}
	} else {
		err = mt_render_with(out, format, &l, &ro);
	}
	if (err == -ENODATA) {
		if (out != stdout)
			fclose(out);
		mt_loaded_free(&l);
		return mt_error("report: --format=%s draws timelines, and these files have no points: record "
				"with `memtap run --interval=SECONDS`", format), 1;
	}
	if (out != stdout && fclose(out) && !err)
		err = -errno;
	mt_loaded_free(&l);
	if (err)
		return mt_error("report: writing the report: %s", strerror(-err)), 1;
	return failed ? 1 : 0;
}
