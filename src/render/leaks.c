/* The leak check's sections: text in valgrind's words, and processes[].leaks
 * in JSON (docs/FORMAT.md, docs/LEAKS.md). */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "export.h"
#include "memtap/leaks.h"

static const char *fn_name(const struct mt_profile *p, const struct mt_leak_site *s)
{
	return s->fn < p->nfuncs ? p->funcs[s->fn].name : "?";
}

static void stack_of(struct mt_site *tmp, const struct mt_leak_site *s)
{
	memset(tmp, 0, sizeof(*tmp));
	tmp->nframes = s->nframes;
	tmp->frames = (uint64_t *)s->frames;
	tmp->fn = s->fn;
}

static void describe(char *out, size_t len, const struct mt_leaks *l)
{
	size_t n = (size_t)snprintf(out, len, "%s%u thread%s stopped for %.3f ms",
				    l->flags & MT_LEAKS_AT_EXIT ? "at exit; " : "", l->threads,
				    l->threads == 1 ? "" : "s", (double)l->pause_ns / 1e6);
	if (l->unstopped && n < len)
		snprintf(out + n, len - n, ", %u not stopped (signal blocked: their registers were not read)",
			 l->unstopped);
}

#define LEAK_FRAMES 12

int mt_render_leaks_text(FILE *out, const struct mt_profile *p, unsigned ntop)
{
	const struct mt_leaks *l = p->leaks;
	if (!l)
		return 0;
	struct mt_symbolizer *sym = mt_symbolizer_new(p);
	if (!sym)
		return -ENOMEM;
	char how[256];
	describe(how, sizeof(how), l);
	fprintf(out, "\nLeak check by reachability (%s):\n", how);
	fprintf(out, "  definitely lost: %" PRIu64 " bytes in %" PRIu64 " blocks (no pointer reaches them)\n",
		l->unreachable_bytes, l->unreachable_blocks);
	fprintf(out, "  still reachable: %" PRIu64 " bytes in %" PRIu64 " blocks\n", l->reachable_bytes,
		l->reachable_blocks);
	fprintf(out, "  (requested bytes; blocks of the malloc family and C++ operators)\n");
	if (l->flags & MT_LEAKS_ATTACHED)
		fprintf(out, "  attached: memory allocated before the attach was scanned as roots\n");
	if (l->flags & MT_LEAKS_TRUNCATED)
		fprintf(out, "  (more sites than the leak table holds: per-site figures are incomplete)\n");
	unsigned shown = 0;
	for (uint32_t i = 0; i < l->nsites && shown < ntop; i++) {
		const struct mt_leak_site *s = &l->sites[i];
		if (!s->lost_objects)
			continue;
		struct mt_site tmp;
		stack_of(&tmp, s);
		fprintf(out, "\n  %" PRIu64 " bytes in %" PRIu64 " blocks are definitely lost, allocated by %s from:\n",
			s->lost_bytes, s->lost_objects, fn_name(p, s));
		mt_render_stack(out, sym, &tmp, "        ", LEAK_FRAMES);
		shown++;
	}
	/* Still reachable: the largest few, as valgrind's --show-reachable. */
	struct mt_leak_site **order = calloc(l->nsites ? l->nsites : 1, sizeof(*order));
	if (!order) {
		mt_symbolizer_free(sym);
		return -ENOMEM;
	}
	uint32_t n = 0;
	for (uint32_t i = 0; i < l->nsites; i++)
		if (l->sites[i].reach_objects)
			order[n++] = &l->sites[i];
	for (uint32_t i = 1; i < n; i++) {
		struct mt_leak_site *t = order[i];
		uint32_t j = i;
		for (; j > 0 && order[j - 1]->reach_bytes < t->reach_bytes; j--)
			order[j] = order[j - 1];
		order[j] = t;
	}
	for (uint32_t i = 0; i < n && i < ntop / 2 + 1; i++) {
		struct mt_site tmp;
		stack_of(&tmp, order[i]);
		fprintf(out, "\n  %" PRIu64 " bytes in %" PRIu64 " blocks are still reachable, allocated by %s from:\n",
			order[i]->reach_bytes, order[i]->reach_objects, fn_name(p, order[i]));
		mt_render_stack(out, sym, &tmp, "        ", LEAK_FRAMES);
	}
	free(order);
	mt_symbolizer_free(sym);
	return ferror(out) ? -EIO : 0;
}

static void json_text(FILE *out, const char *s)
{
	fputc('"', out);
	for (; s && *s; s++) {
		unsigned char c = (unsigned char)*s;
		if (c == '"' || c == '\\')
			fprintf(out, "\\%c", c);
		else if (c < 0x20)
			fprintf(out, "\\u%04x", c);
		else
			fputc(c, out);
	}
	fputc('"', out);
}

int mt_render_leaks_json(FILE *out, const struct mt_profile *p)
{
	const struct mt_leaks *l = p->leaks;
	if (!l)
		return 0;
	struct mt_symbolizer *sym = mt_symbolizer_new(p);
	fprintf(out, ",\"leaks\":{\"unreachable_bytes\":%" PRIu64 ",\"unreachable_blocks\":%" PRIu64
		",\"reachable_bytes\":%" PRIu64 ",\"reachable_blocks\":%" PRIu64 ",\"check_ns\":%" PRIu64
		",\"pause_ns\":%" PRIu64 ",\"roots_bytes\":%" PRIu64 ",\"threads\":%u,\"unstopped\":%u"
		",\"at_exit\":%s,\"attached\":%s,\"truncated\":%s,\"sites\":[",
		l->unreachable_bytes, l->unreachable_blocks, l->reachable_bytes, l->reachable_blocks, l->check_ns,
		l->pause_ns, l->roots_bytes, l->threads, l->unstopped, l->flags & MT_LEAKS_AT_EXIT ? "true" : "false",
		l->flags & MT_LEAKS_ATTACHED ? "true" : "false", l->flags & MT_LEAKS_TRUNCATED ? "true" : "false");
	for (uint32_t i = 0; i < l->nsites; i++) {
		const struct mt_leak_site *s = &l->sites[i];
		fprintf(out, "%s{\"function\":", i ? "," : "");
		if (s->fn < p->nfuncs)
			json_text(out, p->funcs[s->fn].name);
		else
			fputs("null", out);
		fprintf(out, ",\"unreachable_bytes\":%" PRIu64 ",\"unreachable_blocks\":%" PRIu64
			",\"reachable_bytes\":%" PRIu64 ",\"reachable_blocks\":%" PRIu64 ",\"frames\":[",
			s->lost_bytes, s->lost_objects, s->reach_bytes, s->reach_objects);
		for (uint32_t k = 0; k < s->nframes; k++)
			fprintf(out, "%s\"0x%" PRIx64 "\"", k ? "," : "", s->frames[k]);
		/* The innermost function of each frame, for people and scripts. */
		fputs("],\"symbols\":[", out);
		for (uint32_t k = 0; k < s->nframes; k++) {
			struct mt_frame f[MT_INLINE_MAX];
			int n = sym ? mt_symbolize(sym, s->frames[k], 1, f, MT_INLINE_MAX) : 0;
			if (k)
				fputc(',', out);
			if (n >= 1 && f[0].function)
				json_text(out, f[0].function);
			else
				fputs("null", out);
		}
		fputs("]}", out);
	}
	fputs("]}", out);
	mt_symbolizer_free(sym);
	return ferror(out) ? -EIO : 0;
}
