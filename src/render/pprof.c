/*
 * pprof's protobuf profile (src/render/profile.proto), gzip-compressed, as
 * Go's runtime writes heap profiles: sample types alloc_objects/count,
 * alloc_space/bytes, inuse_objects/count, inuse_space/bytes, period_type
 * space/bytes, period = the sampling period, values already un-sampled.
 *
 * One Location per distinct address, with the raw return address (pprof
 * subtracts 1 from non-leaf locations itself) and the functions memtap's
 * symbolizer found for the call instruction: inlined calls give several
 * Lines, innermost first.  A location the symbolizer could not resolve gets
 * no Line, and a mapping without any resolved location is left unmarked
 * (has_functions false), so pprof may symbolize it from the file itself.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <zlib.h>

#include "export.h"
#include "profile.pb-c.h"

typedef Perftools__Profiles__Profile PProfile;
typedef Perftools__Profiles__ValueType PValueType;
typedef Perftools__Profiles__Sample PSample;
typedef Perftools__Profiles__Label PLabel;
typedef Perftools__Profiles__Mapping PMapping;
typedef Perftools__Profiles__Location PLocation;
typedef Perftools__Profiles__Line PLine;
typedef Perftools__Profiles__Function PFunction;

/* An open-addressing map from 64-bit keys to array indices. */
struct u64map {
	uint64_t *keys;
	size_t *vals; /* index + 1; 0 marks an empty slot */
	size_t cap, n;
};

static size_t hash64(uint64_t k)
{
	k ^= k >> 33;
	k *= 0xff51afd7ed558ccdULL;
	k ^= k >> 33;
	return (size_t)k;
}

static long u64map_get(const struct u64map *m, uint64_t key)
{
	if (!m->cap)
		return -1;
	for (size_t i = hash64(key) & (m->cap - 1);; i = (i + 1) & (m->cap - 1)) {
		if (!m->vals[i])
			return -1;
		if (m->keys[i] == key)
			return (long)m->vals[i] - 1;
	}
}

static int u64map_put(struct u64map *m, uint64_t key, size_t val)
{
	if ((m->n + 1) * 2 > m->cap) {
		struct u64map g = {0};
		g.cap = m->cap ? m->cap * 2 : 256;
		g.keys = calloc(g.cap, sizeof(*g.keys));
		g.vals = calloc(g.cap, sizeof(*g.vals));
		if (!g.keys || !g.vals) {
			free(g.keys);
			free(g.vals);
			return -ENOMEM;
		}
		for (size_t i = 0; i < m->cap; i++)
			if (m->vals[i])
				u64map_put(&g, m->keys[i], m->vals[i] - 1);
		free(m->keys);
		free(m->vals);
		*m = g;
	}
	size_t i = hash64(key) & (m->cap - 1);
	while (m->vals[i])
		i = (i + 1) & (m->cap - 1);
	m->keys[i] = key;
	m->vals[i] = val + 1;
	m->n++;
	return 0;
}

static void u64map_free(struct u64map *m)
{
	free(m->keys);
	free(m->vals);
}

/* The string table: index 0 is "", as pprof requires. */
struct strtab {
	char **s;
	size_t n, cap;
	struct u64map idx; /* string hash -> index (collisions chained by probing below) */
};

static uint64_t hash_str(const char *s)
{
	uint64_t h = 0xcbf29ce484222325ULL;
	for (; *s; s++)
		h = (h ^ (unsigned char)*s) * 0x100000001b3ULL;
	return h;
}

/* Returns the string's index, or -1 on ENOMEM. */
static int64_t str_id(struct strtab *t, const char *s)
{
	if (!s)
		s = "";
	/* Equal hashes of different strings are told apart by rehashing
	 * with a counter, so the map holds exact matches only. */
	uint64_t h = hash_str(s);
	for (uint64_t salt = 0;; salt++) {
		long i = u64map_get(&t->idx, h + salt * 0x9e3779b97f4a7c15ULL);
		if (i < 0)
			break;
		if (!strcmp(t->s[i], s))
			return i;
	}
	uint64_t key = h;
	for (uint64_t salt = 1; u64map_get(&t->idx, key) >= 0; salt++)
		key = h + salt * 0x9e3779b97f4a7c15ULL;
	if (t->n == t->cap) {
		size_t cap = t->cap ? t->cap * 2 : 64;
		char **ns = realloc(t->s, cap * sizeof(*ns));
		if (!ns)
			return -1;
		t->s = ns;
		t->cap = cap;
	}
	if (!(t->s[t->n] = strdup(s)))
		return -1;
	if (u64map_put(&t->idx, key, t->n)) {
		free(t->s[t->n]);
		return -1;
	}
	return (int64_t)t->n++;
}

struct loc {
	PLocation pb;
	PLine *lines;
	PLine **line_ptrs;
};

struct writer {
	struct strtab st;
	struct u64map locmap, fnmap;
	struct loc *locs;
	size_t nlocs, caplocs;
	PFunction *fns;
	size_t nfns, capfns;
	PMapping *maps;
	const struct mt_mapping **mapsrc;
	size_t nmaps;
	struct mt_symbolizer **syms;
};

static int grow(void **arr, size_t *cap, size_t n, size_t size)
{
	if (n < *cap)
		return 0;
	size_t ncap = *cap ? *cap * 2 : 64;
	void *p = realloc(*arr, ncap * size);
	if (!p)
		return -ENOMEM;
	*arr = p;
	*cap = ncap;
	return 0;
}

static int add_mappings(struct writer *w, const struct mt_profile *const *profs, size_t nprofs)
{
	size_t total = 0;
	for (size_t i = 0; i < nprofs; i++)
		total += profs[i]->nmaps;
	w->maps = calloc(total ? total : 1, sizeof(*w->maps));
	w->mapsrc = calloc(total ? total : 1, sizeof(*w->mapsrc));
	if (!w->maps || !w->mapsrc)
		return -ENOMEM;
	/* pprof takes the first mapping for the main binary: the program's own
	 * mappings go first. */
	for (int pass = 0; pass < 2; pass++) {
		for (size_t i = 0; i < nprofs; i++) {
			const struct mt_profile *p = profs[i];
			for (uint32_t k = 0; k < p->nmaps; k++) {
				const struct mt_mapping *m = &p->maps[k];
				int main_exe = p->exe[0] && !strcmp(m->path, p->exe);
				if (main_exe != (pass == 0))
					continue;
				int dup = 0;
				for (size_t j = 0; j < w->nmaps && !dup; j++)
					dup = w->mapsrc[j]->start == m->start && w->mapsrc[j]->end == m->end &&
					      !strcmp(w->mapsrc[j]->path, m->path);
				if (dup)
					continue;
				char hex[2 * sizeof(m->build_id) + 1] = "";
				for (uint32_t b = 0; b < m->build_id_len && b < sizeof(m->build_id); b++)
					snprintf(hex + 2 * b, 3, "%02x", m->build_id[b]);
				PMapping *pm = &w->maps[w->nmaps];
				perftools__profiles__mapping__init(pm);
				pm->id = w->nmaps + 1;
				pm->memory_start = m->start;
				pm->memory_limit = m->end;
				pm->file_offset = m->offset;
				pm->filename = str_id(&w->st, m->path);
				pm->build_id = str_id(&w->st, hex);
				if (pm->filename < 0 || pm->build_id < 0)
					return -ENOMEM;
				w->mapsrc[w->nmaps++] = m;
			}
		}
	}
	return 0;
}

static PMapping *mapping_of(struct writer *w, uint64_t addr)
{
	/* Executable mappings first: a return address lies in code. */
	for (int pass = 0; pass < 2; pass++)
		for (size_t j = 0; j < w->nmaps; j++)
			if (addr >= w->mapsrc[j]->start && addr < w->mapsrc[j]->end &&
			    (pass || (w->mapsrc[j]->prot & PROT_EXEC)))
				return &w->maps[j];
	return NULL;
}

static long function_id(struct writer *w, const struct mt_frame *f)
{
	int64_t name = str_id(&w->st, f->function), file = str_id(&w->st, f->file);
	if (name < 0 || file < 0)
		return -ENOMEM;
	uint64_t key = (uint64_t)name << 32 | (uint64_t)file;
	long i = u64map_get(&w->fnmap, key);
	if (i >= 0)
		return (long)w->fns[i].id;
	if (grow((void **)&w->fns, &w->capfns, w->nfns, sizeof(*w->fns)))
		return -ENOMEM;
	PFunction *fn = &w->fns[w->nfns];
	perftools__profiles__function__init(fn);
	fn->id = w->nfns + 1;
	fn->name = name;
	fn->system_name = name;
	fn->filename = file;
	if (u64map_put(&w->fnmap, key, w->nfns))
		return -ENOMEM;
	w->nfns++;
	return (long)fn->id;
}

/* The location id of ADDR, symbolized with SYM when first seen. */
static long location_id(struct writer *w, struct mt_symbolizer *sym, uint64_t addr)
{
	long i = u64map_get(&w->locmap, addr);
	if (i >= 0)
		return (long)w->locs[i].pb.id;
	if (grow((void **)&w->locs, &w->caplocs, w->nlocs, sizeof(*w->locs)))
		return -ENOMEM;
	struct loc *l = &w->locs[w->nlocs];
	memset(l, 0, sizeof(*l));
	perftools__profiles__location__init(&l->pb);
	l->pb.id = w->nlocs + 1;
	l->pb.address = addr;
	if (u64map_put(&w->locmap, addr, w->nlocs))
		return -ENOMEM;
	w->nlocs++;
	PMapping *m = mapping_of(w, addr);
	l->pb.mapping_id = m ? m->id : 0;

	struct mt_frame f[MT_INLINE_MAX];
	int n = mt_symbolize(sym, addr, 1, f, MT_INLINE_MAX);
	if (n == -ENOMEM)
		return -ENOMEM;
	if (n < 1 || (n == 1 && mt_frame_unknown(&f[0])))
		return (long)l->pb.id;
	l->lines = calloc((size_t)n, sizeof(*l->lines));
	l->line_ptrs = calloc((size_t)n, sizeof(*l->line_ptrs));
	if (!l->lines || !l->line_ptrs)
		return -ENOMEM;
	for (int k = 0; k < n; k++) {
		long fid = function_id(w, &f[k]);
		if (fid < 0)
			return fid;
		perftools__profiles__line__init(&l->lines[k]);
		l->lines[k].function_id = (uint64_t)fid;
		l->lines[k].line = f[k].line;
		l->line_ptrs[k] = &l->lines[k];
		if (m) {
			m->has_functions = 1;
			m->has_filenames |= f[k].file != NULL;
			m->has_line_numbers |= f[k].line != 0;
			m->has_inline_frames |= f[k].line != 0;
		}
	}
	l->pb.n_line = (size_t)n;
	l->pb.line = l->line_ptrs;
	return (long)l->pb.id;
}

static int gzip_write(FILE *out, const uint8_t *data, size_t len)
{
	z_stream z;
	memset(&z, 0, sizeof(z));
	/* 15 + 16: a gzip wrapper (with mtime 0, so equal input gives equal
	 * files) rather than a zlib one. */
	if (deflateInit2(&z, Z_BEST_COMPRESSION, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) != Z_OK)
		return -ENOMEM;
	unsigned char chunk[65536];
	z.next_in = (Bytef *)data;
	z.avail_in = (uInt)len;
	int ret, err = 0;
	do {
		z.next_out = chunk;
		z.avail_out = sizeof(chunk);
		ret = deflate(&z, Z_FINISH);
		size_t have = sizeof(chunk) - z.avail_out;
		if (have && fwrite(chunk, 1, have, out) != have)
			err = -EIO;
	} while (ret == Z_OK && !err);
	if (!err && ret != Z_STREAM_END)
		err = -EIO;
	deflateEnd(&z);
	return err;
}

int mt_pprof_write(FILE *out, const struct mt_profile *ident, const struct mt_profile *const *profs,
		   size_t nprofs, const struct mt_pprof_sample *samples, size_t nsamples,
		   int64_t duration_ns, const char *comment)
{
	return mt_pprof_write_typed(out, ident, profs, nprofs, samples, nsamples, duration_ns, comment, 3, NULL);
}

int mt_pprof_write_typed(FILE *out, const struct mt_profile *ident, const struct mt_profile *const *profs,
			 size_t nprofs, const struct mt_pprof_sample *samples, size_t nsamples,
			 int64_t duration_ns, const char *comment, unsigned default_type,
			 struct mt_symbolizer *const *syms)
{
	static const char *const types[4][2] = {
		{"alloc_objects", "count"},
		{"alloc_space", "bytes"},
		{"inuse_objects", "count"},
		{"inuse_space", "bytes"},
	};
	struct writer w;
	memset(&w, 0, sizeof(w));
	PProfile prof;
	perftools__profiles__profile__init(&prof);
	PValueType vt[5], *vt_ptrs[4];
	PSample *smp = calloc(nsamples ? nsamples : 1, sizeof(*smp));
	PSample **smp_ptrs = calloc(nsamples ? nsamples : 1, sizeof(*smp_ptrs));
	PLabel *labels = calloc(nsamples ? 2 * nsamples : 1, sizeof(*labels));
	PLabel **label_ptrs = calloc(nsamples ? 2 * nsamples : 1, sizeof(*label_ptrs));
	PLocation **loc_ptrs = NULL;
	PFunction **fn_ptrs = NULL;
	PMapping **map_ptrs = NULL;
	uint8_t *packed = NULL;
	int64_t comment_id;
	int err = -ENOMEM;
	w.syms = calloc(nprofs ? nprofs : 1, sizeof(*w.syms));
	if (!smp || !smp_ptrs || !labels || !label_ptrs || !w.syms)
		goto out;
	if (str_id(&w.st, "") != 0)
		goto out;
	for (int i = 0; i < 5; i++) {
		perftools__profiles__value_type__init(&vt[i]);
		const char *type = i < 4 ? types[i][0] : "space", *unit = i < 4 ? types[i][1] : "bytes";
		if ((vt[i].type = str_id(&w.st, type)) < 0 || (vt[i].unit = str_id(&w.st, unit)) < 0)
			goto out;
		if (i < 4)
			vt_ptrs[i] = &vt[i];
	}
	int64_t k_function = str_id(&w.st, "alloc_function"), k_bytes = str_id(&w.st, "bytes");
	comment_id = str_id(&w.st, comment);
	if (k_function < 0 || k_bytes < 0 || comment_id < 0)
		goto out;
	if ((err = add_mappings(&w, profs, nprofs)))
		goto out;
	err = -ENOMEM;
	for (size_t i = 0; i < nprofs; i++)
		if (!(w.syms[i] = syms && syms[i] ? syms[i] : mt_symbolizer_new(profs[i])))
			goto out;

	size_t ns = 0;
	for (size_t i = 0; i < nsamples; i++) {
		const struct mt_pprof_sample *in = &samples[i];
		if (!in->v[0] && !in->v[1] && !in->v[2] && !in->v[3])
			continue;
		size_t pi = 0;
		while (pi < nprofs && profs[pi] != in->p)
			pi++;
		if (pi == nprofs) {
			err = -EINVAL;
			goto out;
		}
		PSample *s = &smp[ns];
		perftools__profiles__sample__init(s);
		s->location_id = calloc(in->s->nframes ? in->s->nframes : 1, sizeof(*s->location_id));
		s->value = calloc(4, sizeof(*s->value));
		if (!s->location_id || !s->value)
			goto out;
		smp_ptrs[ns++] = s;
		uint32_t depth = mt_site_depth(w.syms[pi], in->s);
		for (uint32_t k = 0; k < depth; k++) {
			long id = location_id(&w, w.syms[pi], in->s->frames[k]);
			if (id < 0)
				goto out;
			s->location_id[s->n_location_id++] = (uint64_t)id;
		}
		memcpy(s->value, in->v, 4 * sizeof(*s->value));
		s->n_value = 4;
		/* Labels: the allocation function called ("alloc_function",
		 * for -tagfocus=alloc_function=calloc) and, as Go writes it, the
		 * mean block size ("bytes"). */
		PLabel *l = &labels[2 * i];
		s->label = &label_ptrs[2 * i];
		int64_t fname = str_id(&w.st, mt_site_func(in->p, in->s));
		if (fname < 0)
			goto out;
		perftools__profiles__label__init(&l[0]);
		l[0].key = k_function;
		l[0].str = fname;
		s->label[s->n_label++] = &l[0];
		if (in->s->alloc_objects) {
			perftools__profiles__label__init(&l[1]);
			l[1].key = k_bytes;
			l[1].num = (int64_t)(in->s->alloc_bytes / in->s->alloc_objects);
			l[1].num_unit = k_bytes;
			s->label[s->n_label++] = &l[1];
		}
	}

	loc_ptrs = calloc(w.nlocs ? w.nlocs : 1, sizeof(*loc_ptrs));
	fn_ptrs = calloc(w.nfns ? w.nfns : 1, sizeof(*fn_ptrs));
	map_ptrs = calloc(w.nmaps ? w.nmaps : 1, sizeof(*map_ptrs));
	if (!loc_ptrs || !fn_ptrs || !map_ptrs)
		goto out;
	for (size_t i = 0; i < w.nlocs; i++)
		loc_ptrs[i] = &w.locs[i].pb;
	for (size_t i = 0; i < w.nfns; i++)
		fn_ptrs[i] = &w.fns[i];
	for (size_t i = 0; i < w.nmaps; i++)
		map_ptrs[i] = &w.maps[i];

	prof.n_sample_type = 4;
	prof.sample_type = vt_ptrs;
	prof.n_sample = ns;
	prof.sample = smp_ptrs;
	prof.n_mapping = w.nmaps;
	prof.mapping = map_ptrs;
	prof.n_location = w.nlocs;
	prof.location = loc_ptrs;
	prof.n_function = w.nfns;
	prof.function = fn_ptrs;
	prof.n_string_table = w.st.n;
	prof.string_table = w.st.s;
	prof.time_nanos = (int64_t)ident->dump_ns;
	prof.duration_nanos = duration_ns > 0 ? duration_ns : 0;
	prof.period_type = &vt[4];
	prof.period = ident->sample_period > 1 ? (int64_t)ident->sample_period : 1;
	prof.n_comment = 1;
	prof.comment = &comment_id;
	prof.default_sample_type = vt[default_type < 4 ? default_type : 3].type;

	size_t len = perftools__profiles__profile__get_packed_size(&prof);
	if (!(packed = malloc(len ? len : 1)))
		goto out;
	perftools__profiles__profile__pack(&prof, packed);
	err = gzip_write(out, packed, len);
	if (!err && (fflush(out) || ferror(out)))
		err = -EIO;
out:
	free(packed);
	for (size_t i = 0; i < nsamples && smp; i++) {
		free(smp[i].location_id);
		free(smp[i].value);
	}
	free(smp);
	free(smp_ptrs);
	free(labels);
	free(label_ptrs);
	free(loc_ptrs);
	free(fn_ptrs);
	free(map_ptrs);
	for (size_t i = 0; i < w.nlocs; i++) {
		free(w.locs[i].lines);
		free(w.locs[i].line_ptrs);
	}
	free(w.locs);
	free(w.fns);
	free(w.maps);
	free(w.mapsrc);
	for (size_t i = 0; w.syms && i < nprofs; i++)
		if (!syms || !syms[i])
			mt_symbolizer_free(w.syms[i]);
	free(w.syms);
	for (size_t i = 0; i < w.st.n; i++)
		free(w.st.s[i]);
	free(w.st.s);
	u64map_free(&w.st.idx);
	u64map_free(&w.locmap);
	u64map_free(&w.fnmap);
	return err;
}

int mt_render_pprof(FILE *out, const struct mt_profile *p)
{
	struct mt_pprof_sample *s = calloc(p->nsites ? p->nsites : 1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	for (uint32_t i = 0; i < p->nsites; i++) {
		struct mt_site_est e;
		mt_site_estimate(p, &p->sites[i], &e);
		s[i] = (struct mt_pprof_sample){p, &p->sites[i],
			{(int64_t)e.alloc_objects, (int64_t)e.alloc_bytes, (int64_t)e.inuse_objects,
			 (int64_t)e.inuse_bytes}};
	}
	char comment[MT_TEXT_MAX + 128];
	snprintf(comment, sizeof(comment), "memtap: pid %u: %s (snapshot #%u, %s)", p->pid, p->command,
		 p->seq, mt_reason_name(p->reason));
	const struct mt_profile *profs[1] = {p};
	int64_t duration = p->dump_ns > p->start_ns ? (int64_t)(p->dump_ns - p->start_ns) : 0;
	int err = mt_pprof_write(out, p, profs, 1, s, p->nsites, duration, comment);
	free(s);
	return err;
}
