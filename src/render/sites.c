/* Call sites for the exports: estimates, symbolized stacks, folded stacks. */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "export.h"

/* Truncated, as pprof's and jeprof's readers do with the raw counts of a
 * heap_v2 profile, so every export of one profile shows the same numbers. */
static uint64_t scaled(uint64_t v, double scale)
{
	return scale == 1.0 ? v : (uint64_t)((double)v * scale);
}

void mt_site_estimate(const struct mt_profile *p, const struct mt_site *s, struct mt_site_est *e)
{
	/* Allocated and in-use counts are un-sampled separately, each by its own
	 * mean size, as jeprof and pprof do. */
	double sa = mt_site_scale(p->sample_period, s->alloc_objects, s->alloc_bytes);
	double si = mt_site_scale(p->sample_period, s->inuse_objects, s->inuse_bytes);
	e->alloc_objects = scaled(s->alloc_objects, sa);
	e->alloc_bytes = scaled(s->alloc_bytes, sa);
	e->inuse_objects = scaled(s->inuse_objects, si);
	e->inuse_bytes = scaled(s->inuse_bytes, si);
	double sp = mt_site_scale(p->sample_period, s->peak_objects, s->peak_bytes);
	double st = mt_site_scale(p->sample_period, s->temp_objects, s->temp_bytes);
	e->peak_objects = scaled(s->peak_objects, sp);
	e->peak_bytes = scaled(s->peak_bytes, sp);
	e->temp_objects = scaled(s->temp_objects, st);
	e->temp_bytes = scaled(s->temp_bytes, st);
}

int mt_frame_unknown(const struct mt_frame *f)
{
	return !f->function || !f->function[0] || !strncmp(f->function, "0x", 2) ||
	       strstr(f->function, "+0x") != NULL;
}

const char *mt_site_func(const struct mt_profile *p, const struct mt_site *s)
{
	return s->fn < p->nfuncs ? p->funcs[s->fn].name : "?";
}

void mt_render_stack(FILE *out, struct mt_symbolizer *sym, const struct mt_site *s,
		     const char *indent, unsigned maxframes)
{
	unsigned shown = 0;
	uint32_t depth = mt_site_depth(sym, s);
	for (uint32_t i = 0; i < depth; i++) {
		struct mt_frame f[MT_INLINE_MAX];
		int n = mt_symbolize(sym, s->frames[i], 1, f, MT_INLINE_MAX);
		if (n < 1) {
			fprintf(out, "%s0x%" PRIx64 "\n", indent, s->frames[i]);
			continue;
		}
		for (int k = 0; k < n; k++) {
			if (shown == maxframes) {
				uint32_t more = depth - i;
				fprintf(out, "%s... (%" PRIu32 " more frame%s)\n", indent, more, more == 1 ? "" : "s");
				return;
			}
			shown++;
			fprintf(out, "%s%s", indent, f[k].function ? f[k].function : "??");
			if (f[k].file)
				fprintf(out, "  %s:%" PRIu32, f[k].file, f[k].line);
			else if (f[k].module && !mt_frame_unknown(&f[k]))
				fprintf(out, "  (%s+0x%" PRIx64 ")", strrchr(f[k].module, '/') ?
					strrchr(f[k].module, '/') + 1 : f[k].module, f[k].module_offset);
			fputs(f[k].inlined ? "  (inlined)\n" : "\n", out);
		}
	}
	if (!s->nframes)
		fprintf(out, "%s(no frames)\n", indent);
}

/* A growable string. */
struct buf {
	char *s;
	size_t len, cap;
};

static int buf_add(struct buf *b, const char *s)
{
	size_t n = strlen(s);
	if (b->len + n + 1 > b->cap) {
		size_t cap = b->cap ? b->cap * 2 : 256;
		while (cap < b->len + n + 1)
			cap *= 2;
		char *p = realloc(b->s, cap);
		if (!p)
			return -ENOMEM;
		b->s = p;
		b->cap = cap;
	}
	memcpy(b->s + b->len, s, n + 1);
	b->len += n;
	return 0;
}

/* A frame name as collapsed stacks allow it: ';' separates frames and a
 * newline ends the record, so neither may appear inside. */
static int buf_add_name(struct buf *b, const char *name)
{
	size_t start = b->len;
	if (buf_add(b, name && *name ? name : "??"))
		return -ENOMEM;
	for (char *c = b->s + start; *c; c++) {
		if (*c == ';')
			*c = ':';
		else if (*c == '\n' || *c == '\r')
			*c = ' ';
	}
	return 0;
}

static int stack_cmp(const void *a, const void *b)
{
	return strcmp(((const struct mt_stack *)a)->key, ((const struct mt_stack *)b)->key);
}

static int fold_site(struct mt_symbolizer *sym, const struct mt_site *s, struct buf *b)
{
	b->len = 0;
	if (buf_add(b, ""))
		return -ENOMEM;
	/* Root first: the outermost frame, and within one address the real
	 * function before the calls inlined into it. */
	for (uint32_t i = mt_site_depth(sym, s); i-- > 0;) {
		struct mt_frame f[MT_INLINE_MAX];
		int n = mt_symbolize(sym, s->frames[i], 1, f, MT_INLINE_MAX);
		if (n < 0)
			return n;
		for (int k = n; k-- > 0;) {
			if ((b->len && buf_add(b, ";")) || buf_add_name(b, f[k].function))
				return -ENOMEM;
		}
	}
	if (!s->nframes && buf_add(b, "??"))
		return -ENOMEM;
	return 0;
}

int mt_stacks_collect(const struct mt_report_item *items, size_t n, enum mt_value v,
		      struct mt_stack **out, size_t *nout)
{
	struct mt_stack *st = NULL;
	size_t cnt = 0, cap = 0;
	struct buf b = {0};
	int err = 0;
	for (size_t i = 0; i < n && !err; i++) {
		const struct mt_profile *p = items[i].profile;
		if (!p->nsites)
			continue;
		struct mt_symbolizer *sym = mt_symbolizer_new(p);
		if (!sym) {
			err = -ENOMEM;
			break;
		}
		for (uint32_t k = 0; k < p->nsites && !err; k++) {
			struct mt_site_est e;
			mt_site_estimate(p, &p->sites[k], &e);
			uint64_t value = v == MT_VALUE_ALLOC ? e.alloc_bytes : e.inuse_bytes;
			if (!value)
				continue;
			if (cnt == cap) {
				size_t ncap = cap ? cap * 2 : 64;
				struct mt_stack *ns = realloc(st, ncap * sizeof(*ns));
				if (!ns) {
					err = -ENOMEM;
					break;
				}
				st = ns;
				cap = ncap;
			}
			if ((err = fold_site(sym, &p->sites[k], &b)))
				break;
			if (!(st[cnt].key = strdup(b.s))) {
				err = -ENOMEM;
				break;
			}
			st[cnt++].value = value;
		}
		mt_symbolizer_free(sym);
	}
	free(b.s);
	if (err) {
		mt_stacks_free(st, cnt);
		return err;
	}
	/* Sites that differ only in addresses (two calls in one line, or malloc
	 * and calloc from one place) fold into one stack. */
	if (cnt > 1)
		qsort(st, cnt, sizeof(*st), stack_cmp);
	size_t w = 0;
	for (size_t r = 0; r < cnt; r++) {
		if (w && !strcmp(st[w - 1].key, st[r].key)) {
			st[w - 1].value += st[r].value;
			free(st[r].key);
		} else {
			st[w++] = st[r];
		}
	}
	*out = st;
	*nout = w;
	return 0;
}

void mt_stacks_free(struct mt_stack *s, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(s[i].key);
	free(s);
}
