/*
 * memtap demo: the embedded default.  Runs the bundled workload (a toy
 * request loop with a pool allocator on top of malloc, two threads) under
 * `memtap run` with call sites on and its pool function counted with -f,
 * then shows what memtap found, one section at a time, each introduced in
 * one line: the exact counts, the analyses, the top call sites, the pools,
 * and a flame graph and a pprof profile written next to the profile, with
 * how to open them.  A few seconds, and the first command of the README.
 */
#include <errno.h>
#include <glob.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "help.h"

#define REQUESTS "300"
#define SAMPLE "1"
#define POOL_FUNC "pool_alloc:size=arg1:pool=arg0"

/* Writes the export FORMAT of L to PATH; 0, or -1 after saying why. */
static int export_to(const char *path, const char *format, const struct mt_loaded *l)
{
	FILE *f = fopen(path, "w");
	if (!f)
		return mt_error("demo: cannot write %s: %s", path, strerror(errno));
	struct mt_render_opts ro = {.value = MT_VALUE_ALLOC};
	int err = mt_render_with(f, format, l, &ro);
	if (fclose(f) && !err)
		err = -errno;
	return err ? mt_error("demo: writing %s: %s", path, strerror(-err)) : 0;
}

static void pools(FILE *out, const struct mt_profile *p)
{
	const struct mt_func *f = mt_profile_find(p, "pool_alloc");
	uint32_t *order = p->npools ? calloc(p->npools, sizeof(*order)) : NULL;
	uint32_t n = f && order ? mt_profile_pools_of(p, (uint32_t)(f - p->funcs), 1, order) : 0;
	printf("\n5. The pool view of -f %s: pool_alloc's calls and bytes per\n"
	       "   pool, as -f apr_palloc:size=arg1:pool=arg0 gives for Apache (an address is reused\n"
	       "   once its pool is destroyed):\n", POOL_FUNC);
	fprintf(out, "  %-18s %12s %12s\n", "pool", "calls", "bytes");
	for (uint32_t i = 0; i < n && i < 5; i++) {
		const struct mt_pool *pl = &p->pools[order[i]];
		fprintf(out, "  0x%-16llx %12llu %12llu\n", (unsigned long long)pl->pool,
			(unsigned long long)pl->calls, (unsigned long long)pl->bytes);
	}
	if (n > 5)
		fprintf(out, "  ... %u more (memtap report lists the top 10, the JSON every pool)\n", n - 5);
	if (!n)
		fprintf(out, "  (none: was pool_alloc found?)\n");
	free(order);
}

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
		return mt_error("demo: cannot create a directory under /tmp: %s", strerror(errno)), 1;
	char prefix[PATH_MAX], svg[PATH_MAX], pb[PATH_MAX], pattern[PATH_MAX];
	snprintf(prefix, sizeof(prefix), "%s/demo", dir);
	snprintf(svg, sizeof(svg), "%s/flame.svg", dir);
	snprintf(pb, sizeof(pb), "%s/demo.pb.gz", dir);
	snprintf(pattern, sizeof(pattern), "%s.*.mtp", prefix);

	printf("memtap demo: a toy server answers " REQUESTS " requests on 2 threads, with a pool allocator\n"
	       "on top of malloc (like Apache's apr_palloc).  memtap counts every allocation call,\n"
	       "records the call site of each (--sample=1; --stacks alone samples one per 512 KiB),\n"
	       "and counts the pool function by name (-f):\n\n"
	       "$ memtap run --stacks --sample=" SAMPLE " -f " POOL_FUNC " -q -o %s -- %s " REQUESTS "\n",
	       prefix, workload);
	fflush(stdout);
	char *run_argv[] = {"run", "--stacks", "--sample=" SAMPLE, "-f", POOL_FUNC, "-q", "-o", prefix, "--",
			    workload, REQUESTS, NULL};
	int rc = cmd_run((int)(sizeof(run_argv) / sizeof(run_argv[0])) - 1, run_argv);
	glob_t g;
	if (glob(pattern, 0, NULL, &g) != 0)
		return mt_error("demo: the run wrote no profile in %s (exit status %d)", dir, rc), 1;
	struct mt_loaded l;
	int failed = mt_load_profiles(g.gl_pathv, g.gl_pathc, &l);
	globfree(&g);
	mt_loaded_latest(&l);
	if (failed || l.n != 1) {
		mt_loaded_free(&l);
		return mt_error("demo: expected one profile in %s", dir), 1;
	}
	const struct mt_profile *p = l.items[0].profile;
	uint32_t *order = calloc(p->nfuncs + 1, sizeof(*order));
	if (!order) {
		mt_loaded_free(&l);
		return mt_error("demo: out of memory"), 1;
	}
	mt_profile_order(p, order);

	printf("\n1. Exact counts: every call of every allocation function, as DTrace's count().\n"
	       "Calls per function:\n");
	for (uint32_t i = 0; i < p->nfuncs; i++)
		mt_render_count_row(stdout, p->funcs[order[i]].name, p->funcs[order[i]].calls);
	free(order);
	printf("\n2. The sizes malloc was asked for, as DTrace's quantize() (8192: a pool block a request):\n\n");
	const struct mt_func *m = mt_profile_find(p, "malloc");
	if (m)
		mt_render_quantize(stdout, "malloc", m->hist);
	printf("\n3. The totals (usable bytes) and what heaptrack users look for: run time, allocation\n"
	       "   rate, peak RSS, temporary allocations (freed right after being made):\n");
	printf("  %-26s %llu bytes allocated, %llu freed, peak in use %llu\n", "totals",
	       (unsigned long long)p->totals.allocated_bytes, (unsigned long long)p->totals.freed_bytes,
	       (unsigned long long)p->totals.peak_in_use_bytes);
	mt_render_analyses_rows(stdout, p, 0);

	printf("\n4. Where the bytes come from: the top call sites by bytes allocated, each stack from\n"
	       "   the allocation up to the thread's start routine:\n");
	mt_render_sites_table_by(stdout, p, MT_TABLE_ALLOC, 3, 5);
	pools(stdout, p);

	int bad = export_to(svg, "svg", &l) | export_to(pb, "pprof", &l);
	printf("\n6. The same call sites as a flame graph and as a pprof profile (memtap report\n"
	       "   --format=svg and --format=pprof of the profile):\n"
	       "  flame graph: %s\n"
	       "               open it in a web browser (firefox FILE); click a frame to zoom\n"
	       "  pprof:       %s\n"
	       "               go tool pprof -top FILE, or -http=localhost:8080 FILE for its web view\n",
	       svg, pb);
	printf("\nThe profile: %s\n(memtap report FILE shows it all; --format=json for programs).\n"
	       "Next: memtap run -- YOUR-PROGRAM, or memtap attach -p PID on a running one; man memtap.\n",
	       l.items[0].path);
	mt_loaded_free(&l);
	return rc ? rc : bad ? 1 : 0;
}
