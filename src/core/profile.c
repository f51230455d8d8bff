/* The profile model: construction, lookup, merging and ordering. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "memtap/profile.h"

struct mt_profile *mt_profile_new(void)
{
	return calloc(1, sizeof(struct mt_profile));
}

void mt_profile_free(struct mt_profile *p)
{
	if (!p)
		return;
	free(p->funcs);
	free(p);
}

const struct mt_func *mt_profile_find(const struct mt_profile *p, const char *name)
{
	for (uint32_t i = 0; i < p->nfuncs; i++)
		if (strcmp(p->funcs[i].name, name) == 0)
			return &p->funcs[i];
	return NULL;
}

struct mt_func *mt_profile_func(struct mt_profile *p, const char *name, uint32_t kind)
{
	struct mt_func *f = (struct mt_func *)mt_profile_find(p, name);
	if (f)
		return f;
	/* Grow one at a time: profiles hold tens of functions, not thousands. */
	f = realloc(p->funcs, (p->nfuncs + 1) * sizeof(*f));
	if (!f)
		return NULL;
	p->funcs = f;
	f = &p->funcs[p->nfuncs++];
	memset(f, 0, sizeof(*f));
	strncpy(f->name, name, sizeof(f->name) - 1);
	f->kind = kind;
	return f;
}

void mt_func_add(struct mt_func *dst, const struct mt_func *src)
{
	dst->calls += src->calls;
	dst->bytes += src->bytes;
	dst->failed += src->failed;
	for (int i = 0; i < MT_HIST_BUCKETS; i++)
		dst->hist[i] += src->hist[i];
}

uint64_t mt_func_hist_total(const struct mt_func *f)
{
	uint64_t t = 0;
	for (int i = 0; i < MT_HIST_BUCKETS; i++)
		t += f->hist[i];
	return t;
}

int mt_profile_merge(struct mt_profile *dst, const struct mt_profile *src)
{
	for (uint32_t i = 0; i < src->nfuncs; i++) {
		struct mt_func *f = mt_profile_func(dst, src->funcs[i].name, src->funcs[i].kind);
		if (!f)
			return -ENOMEM;
		mt_func_add(f, &src->funcs[i]);
	}
	dst->totals.allocated_bytes += src->totals.allocated_bytes;
	dst->totals.freed_bytes += src->totals.freed_bytes;
	dst->totals.in_use_bytes += src->totals.in_use_bytes;
	/* Peaks of different processes need not coincide: the sum bounds the
	 * combined peak from above. */
	dst->totals.peak_in_use_bytes += src->totals.peak_in_use_bytes;
	return 0;
}

static int func_cmp(const void *a, const void *b)
{
	const struct mt_func *x = a, *y = b;
	if (x->calls != y->calls)
		return x->calls < y->calls ? -1 : 1;
	return strcmp(x->name, y->name);
}

void mt_profile_sort(struct mt_profile *p)
{
	if (p->nfuncs > 1)
		qsort(p->funcs, p->nfuncs, sizeof(*p->funcs), func_cmp);
}

const char *mt_kind_name(uint32_t kind)
{
	static const char *const names[] = {"alloc", "free", "map", "unmap", "brk", "other"};
	return kind < sizeof(names) / sizeof(names[0]) ? names[kind] : "unknown";
}

const char *mt_reason_name(uint32_t reason)
{
	static const char *const names[] = {"exit", "ctl", "other"};
	return reason < sizeof(names) / sizeof(names[0]) ? names[reason] : "unknown";
}
