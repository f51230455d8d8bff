/* Loading, grouping and rendering profiles for `report` and `run`. */
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "memtap/funcspec.h"
#include "memtap/format.h"

int mt_error(const char *fmt, ...)
{
	va_list ap;
	fputs("memtap: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	return -1;
}

int mt_parse_size(const char *s, uint64_t *out)
{
	char *end;
	errno = 0;
	unsigned long long v = strtoull(s, &end, 10);
	if (errno || end == s || s[0] == '-')
		return -EINVAL;
	unsigned shift = 0;
	switch (*end) {
	case 'k': case 'K': shift = 10; end++; break;
	case 'm': case 'M': shift = 20; end++; break;
	case 'g': case 'G': shift = 30; end++; break;
	}
	if (shift && end[0] == 'i' && end[1] == 'B')
		end += 2;
	else if (*end == 'B' || *end == 'b')
		end++;
	if (*end || (shift && v > (UINT64_MAX >> shift)))
		return -EINVAL;
	*out = (uint64_t)v << shift;
	return 0;
}

int mt_check_func_spec(const char *spec, char *err, size_t errlen)
{
	struct mt_funcspec f;
	return mt_funcspec_parse(spec, strlen(spec), 1, &f, err, errlen);
}

int mt_find_companion(const char *name, char *out, size_t outlen, char *err, size_t errlen)
{
	char self[PATH_MAX];
	ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
	if (n <= 0) {
		snprintf(err, errlen, "cannot read /proc/self/exe: %s", strerror(errno));
		return -ENOENT;
	}
	self[n] = '\0';
	char *slash = strrchr(self, '/');
	*slash = '\0';
	/* build/memtap -> build/NAME; PREFIX/bin/memtap -> PREFIX/lib/memtap/NAME */
	snprintf(out, outlen, "%s/%s", self, name);
	if (access(out, R_OK) == 0)
		return 0;
	char first[PATH_MAX];
	snprintf(first, sizeof(first), "%s", out);
	snprintf(out, outlen, "%s/../lib/memtap/%s", self, name);
	if (access(out, R_OK) == 0) {
		char real[PATH_MAX];
		if (realpath(out, real))
			snprintf(out, outlen, "%s", real);
		return 0;
	}
	snprintf(err, errlen, "%s not found (looked at %s and %s); reinstall memtap or run `make`",
		 name, first, out);
	return -ENOENT;
}

int mt_load_profiles(char *const *paths, size_t n, struct mt_loaded *out)
{
	int failed = 0;
	memset(out, 0, sizeof(*out));
	out->items = calloc(n ? n : 1, sizeof(*out->items));
	out->paths = calloc(n ? n : 1, sizeof(*out->paths));
	if (!out->items || !out->paths)
		return (int)n;
	for (size_t i = 0; i < n; i++) {
		char err[1024];
		struct mt_profile *p;
		if (mt_file_read(paths[i], &p, err, sizeof(err))) {
			mt_error("%s", err);
			failed++;
			continue;
		}
		out->paths[out->npaths] = strdup(paths[i]);
		out->items[out->n].profile = p;
		out->items[out->n].path = out->paths[out->npaths++];
		out->n++;
	}
	return failed;
}

/* Whether Q is a later snapshot of the same process than P: an exit profile
 * beats a dump, a later dump an earlier one. */
static int supersedes(const struct mt_profile *q, const struct mt_profile *p)
{
	if (q->pid != p->pid || q->start_ns != p->start_ns)
		return 0;
	int q_exit = q->reason == MT_REASON_EXIT, p_exit = p->reason == MT_REASON_EXIT;
	return q_exit > p_exit || (q_exit == p_exit && q->dump_ns > p->dump_ns);
}

size_t mt_loaded_latest(struct mt_loaded *l)
{
	char *drop = calloc(l->n ? l->n : 1, 1);
	if (!drop)
		return 0;
	for (size_t i = 0; i < l->n; i++)
		for (size_t k = 0; !drop[i] && k < l->n; k++)
			drop[i] = k != i && supersedes(l->items[k].profile, l->items[i].profile);
	size_t keep = 0;
	for (size_t i = 0; i < l->n; i++) {
		if (drop[i])
			mt_profile_free(l->items[i].profile);
		else
			l->items[keep++] = l->items[i];
	}
	size_t dropped = l->n - keep;
	l->n = keep;
	free(drop);
	return dropped;
}

int mt_loaded_merge(struct mt_loaded *l)
{
	if (l->n < 2)
		return 0;
	struct mt_profile *m = mt_profile_new();
	uint32_t *pids = calloc(l->n, sizeof(*pids));
	if (!m || !pids) {
		mt_profile_free(m);
		free(pids);
		return -ENOMEM;
	}
	/* The merged item keeps the identity of the first profile. */
	struct mt_profile *first = l->items[0].profile;
	*m = *first;
	/* The arrays and sections stay the first profile's: the merge fills
	 * its own (a timeline, the allocator's statistics, glibc's state and a
	 * leak check are one process's: not summed). */
	mt_profile_forget(m);
	m->sample_period = 0;
	m->unknown_frees = 0;
	memset(&m->totals, 0, sizeof(m->totals));
	size_t npids = 0;
	for (size_t i = 0; i < l->n; i++) {
		struct mt_profile *p = l->items[i].profile;
		if (mt_profile_merge(m, p)) {
			mt_profile_free(m);
			free(pids);
			return -ENOMEM;
		}
		size_t k = 0;
		while (k < npids && pids[k] != p->pid)
			k++;
		if (k == npids)
			pids[npids++] = p->pid;
		mt_profile_free(p);
	}
	l->items[0] = (struct mt_report_item){m, NULL, pids, npids};
	l->n = 1;
	free(l->pids);
	l->pids = pids;
	return 0;
}

void mt_loaded_free(struct mt_loaded *l)
{
	for (size_t i = 0; i < l->n; i++)
		mt_profile_free(l->items[i].profile);
	for (size_t i = 0; i < l->npaths; i++)
		free(l->paths[i]);
	free(l->paths);
	free(l->items);
	free(l->pids);
	memset(l, 0, sizeof(*l));
}

int mt_render(FILE *out, const char *format, const struct mt_loaded *l)
{
	struct mt_render_opts o = {MT_VALUE_INUSE};
	return mt_render_with(out, format, l, &o);
}

int mt_render_with(FILE *out, const char *format, const struct mt_loaded *l,
		   const struct mt_render_opts *o)
{
	if (strcmp(format, "text") == 0)
		return mt_render_text(out, l->items, l->n);
	if (strcmp(format, "json") == 0)
		return mt_render_json(out, l->items, l->n);
	if (strcmp(format, "collapsed") == 0)
		return mt_render_collapsed(out, l->items, l->n, o->value);
	if (strcmp(format, "svg") == 0 || strcmp(format, "flamegraph") == 0)
		return mt_render_flamegraph(out, l->items, l->n, o->value);
	if (strcmp(format, "timeline") == 0)
		return mt_render_timeline_svg(out, l->items, l->n);
	if (strcmp(format, "html") == 0)
		return mt_render_html(out, l->items, l->n, o->progress, o->progress_arg);
	if (strcmp(format, "pprof") && strcmp(format, "jeprof"))
		return -EINVAL;
	/* One profile per file: its addresses only mean something with its
	 * own mappings. */
	if (l->n != 1)
		return -E2BIG;
	if (strcmp(format, "pprof") == 0)
		return mt_render_pprof(out, l->items[0].profile);
	return mt_render_jeprof(out, l->items[0].profile);
}

void mt_render_summary(FILE *out, const char *format, struct mt_loaded *l, const char *prefix)
{
	if (l->n > 1 && strcmp(format, "text") == 0) {
		fprintf(out, "memtap: %zu processes traced; calls per process:\n", l->n);
		for (size_t i = 0; i < l->n; i++) {
			struct mt_profile *p = l->items[i].profile;
			uint64_t calls = 0;
			for (uint32_t f = 0; f < p->nfuncs; f++)
				calls += p->funcs[f].calls;
			char key[96];
			snprintf(key, sizeof(key), "%u %.80s", p->pid, p->command);
			mt_render_count_row(out, key, calls);
		}
		fprintf(out, "memtap: per process: memtap report %s.*.%s\n\n", prefix, MT_FILE_EXT);
		mt_loaded_merge(l);
	}
	if (l->n)
		mt_render(out, format, l);
}
