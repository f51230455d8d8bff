/* Unit tests: the heap-profile exports (jeprof text, collapsed stacks, pprof,
 * flame graph SVG, top tables, JSON sites) and the diff, on synthetic
 * profiles.  Stacks that must symbolize use this test program's own
 * functions, with the mappings read from /proc/self/maps, as the agent
 * records them. */
#include <inttypes.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>
#include <zlib.h>

#include <cmocka.h>

#include "memtap/render.h"
#include "memtap/symbolize.h"
#include "profile.pb-c.h"

/* Functions whose addresses make the frames of "real" stacks.  Not inlined,
 * and big enough that fn + 8 (a return address into them) lies inside. */
volatile int sink;
__attribute__((noinline)) void export_leaf(void)
{
	for (int i = 0; i < 8; i++)
		sink += i;
}
__attribute__((noinline)) void export_middle(void)
{
	for (int i = 0; i < 8; i++)
		sink += i * 3;
	export_leaf();
}
__attribute__((noinline)) void export_outer(void)
{
	for (int i = 0; i < 8; i++)
		sink += i * 5;
	export_middle();
}

#define RET(fn) ((uint64_t)(uintptr_t)(fn) + 8)

/* Adds this process's file-backed mappings, as the agent does. */
static void add_self_maps(struct mt_profile *p)
{
	ssize_t n = readlink("/proc/self/exe", p->exe, sizeof(p->exe) - 1);
	assert_true(n > 0);
	p->exe[n] = '\0';
	FILE *f = fopen("/proc/self/maps", "r");
	assert_non_null(f);
	char line[2048];
	while (fgets(line, sizeof(line), f)) {
		unsigned long long start, end, off;
		char perms[8], path[1024] = "";
		if (sscanf(line, "%llx-%llx %7s %llx %*s %*s %1023s", &start, &end, perms, &off, path) < 4 ||
		    path[0] != '/')
			continue;
		struct mt_mapping *m = mt_profile_add_mapping(p);
		assert_non_null(m);
		m->start = start;
		m->end = end;
		m->offset = off;
		m->prot = (perms[0] == 'r' ? PROT_READ : 0) | (perms[1] == 'w' ? PROT_WRITE : 0) |
			  (perms[2] == 'x' ? PROT_EXEC : 0);
		snprintf(m->path, sizeof(m->path), "%s", path);
	}
	fclose(f);
}

static struct mt_site *site(struct mt_profile *p, const char *fn, const uint64_t *frames, uint32_t n,
			    uint64_t ao, uint64_t ab, uint64_t io, uint64_t ib)
{
	struct mt_func *f = mt_profile_func(p, fn, MT_KIND_ALLOC);
	assert_non_null(f);
	uint32_t idx = (uint32_t)(f - p->funcs);
	struct mt_site *s = mt_profile_add_site(p, frames, n);
	assert_non_null(s);
	s->fn = idx;
	s->alloc_objects = ao;
	s->alloc_bytes = ab;
	s->inuse_objects = io;
	s->inuse_bytes = ib;
	return s;
}

/* A profile of this process with two stacks through the export_* functions
 * (malloc and calloc from the same place) and one shorter. */
static struct mt_profile *real_profile(uint64_t period)
{
	struct mt_profile *p = mt_profile_new();
	assert_non_null(p);
	p->pid = 42;
	p->start_ns = 1000000000ull;
	p->dump_ns = 3000000000ull;
	p->sample_period = period;
	snprintf(p->command, sizeof(p->command), "test_export <&>");
	add_self_maps(p);
	uint64_t deep[3] = {RET(export_leaf), RET(export_middle), RET(export_outer)};
	uint64_t shallow[2] = {RET(export_middle), RET(export_outer)};
	site(p, "malloc", deep, 3, 10, 1000, 4, 400);
	site(p, "calloc", deep, 3, 1, 100, 1, 100);
	site(p, "malloc", shallow, 2, 5, 5000, 0, 0);
	return p;
}

typedef int (*items_fn)(FILE *, const struct mt_report_item *, size_t, enum mt_value);

static char *render_items(items_fn fn, struct mt_profile *p, enum mt_value v)
{
	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);
	struct mt_report_item it = {p, NULL, NULL, 0};
	assert_int_equal(fn(f, &it, 1, v), 0);
	fclose(f);
	return buf;
}

static char *render_one(int (*fn)(FILE *, const struct mt_profile *), struct mt_profile *p, size_t *len)
{
	char *buf = NULL;
	size_t l = 0;
	FILE *f = open_memstream(&buf, &l);
	assert_int_equal(fn(f, p), 0);
	fclose(f);
	if (len)
		*len = l;
	return buf;
}

static void jeprof_layout(void **state)
{
	(void)state;
	struct mt_profile *p = mt_profile_new();
	p->sample_period = 524288;
	uint64_t a[2] = {0x55550000103aull, 0x555500001100ull}, b[1] = {0x7f0000001234ull};
	site(p, "malloc", a, 2, 3, 300, 2, 200);
	site(p, "calloc", b, 1, 1, 4096, 0, 0);
	site(p, "malloc", b, 1, 0, 0, 0, 0); /* nothing: left out */
	struct mt_mapping *m = mt_profile_add_mapping(p);
	*m = (struct mt_mapping){.start = 0x555500000000ull, .end = 0x555500001000ull, .prot = PROT_READ};
	strcpy(m->path, "/usr/bin/prog");
	m = mt_profile_add_mapping(p);
	*m = (struct mt_mapping){.start = 0x555500001000ull, .end = 0x555500002000ull, .offset = 0x1000,
				 .prot = PROT_READ | PROT_EXEC};
	strcpy(m->path, "/usr/bin/prog");
	m = mt_profile_add_mapping(p);
	*m = (struct mt_mapping){.start = 0x7f0000000000ull, .end = 0x7f0000100000ull,
				 .prot = PROT_READ | PROT_WRITE};
	strcpy(m->path, "/lib/x86_64-linux-gnu/libc.so.6");
	char *got = render_one(mt_render_jeprof, p, NULL);
	assert_string_equal(got,
			    "heap profile:      2:      200 [     4:     4396] @ heap_v2/524288\n"
			    "     2:      200 [     3:      300] @ 0x55550000103a 0x555500001100\n"
			    "     0:        0 [     1:     4096] @ 0x7f0000001234\n"
			    "\n"
			    "MAPPED_LIBRARIES:\n"
			    "555500000000-555500001000 r--p 00000000 00:00 0 /usr/bin/prog\n"
			    "555500001000-555500002000 r-xp 00001000 00:00 0 /usr/bin/prog\n"
			    "7f0000000000-7f0000100000 rw-p 00000000 00:00 0 /lib/x86_64-linux-gnu/libc.so.6\n");
	free(got);
	/* Every allocation recorded: no scaling, said explicitly (without a tag
	 * jeprof would scale by 128 KiB). */
	p->sample_period = 1;
	got = render_one(mt_render_jeprof, p, NULL);
	assert_non_null(strstr(got, "heap profile:      2:      200 [     4:     4396] @ heapprofile\n"));
	free(got);
	mt_profile_free(p);
}

static void collapsed_exact(void **state)
{
	(void)state;
	struct mt_profile *p = real_profile(1);
	/* malloc and calloc from one stack fold into one line; the shallow
	 * stack has nothing in use and is left out. */
	char *got = render_items(mt_render_collapsed, p, MT_VALUE_INUSE);
	assert_string_equal(got, "export_outer;export_middle;export_leaf 500\n");
	free(got);
	got = render_items(mt_render_collapsed, p, MT_VALUE_ALLOC);
	assert_string_equal(got, "export_outer;export_middle 5000\n"
				 "export_outer;export_middle;export_leaf 1100\n");
	free(got);
	mt_profile_free(p);
}

static void collapsed_unsamples(void **state)
{
	(void)state;
	struct mt_profile *p = real_profile(1000);
	char *got = render_items(mt_render_collapsed, p, MT_VALUE_INUSE);
	/* Each site by its own mean size: 4 x 100 bytes and 1 x 100 bytes. */
	uint64_t want = (uint64_t)(400 * mt_site_scale(1000, 4, 400)) +
			(uint64_t)(100 * mt_site_scale(1000, 1, 100));
	assert_true(want > 500);
	char line[128];
	snprintf(line, sizeof(line), "export_outer;export_middle;export_leaf %" PRIu64 "\n", want);
	assert_string_equal(got, line);
	free(got);
	mt_profile_free(p);
}

static Perftools__Profiles__Profile *decode_pprof(const char *gz, size_t len)
{
	/* The file is gzip (magic 1f 8b), not a bare zlib stream. */
	assert_true(len > 2 && (unsigned char)gz[0] == 0x1f && (unsigned char)gz[1] == 0x8b);
	size_t cap = 1 << 20;
	unsigned char *raw = malloc(cap);
	z_stream z;
	memset(&z, 0, sizeof(z));
	assert_int_equal(inflateInit2(&z, 15 + 16), Z_OK);
	z.next_in = (Bytef *)gz;
	z.avail_in = (uInt)len;
	z.next_out = raw;
	z.avail_out = (uInt)cap;
	assert_int_equal(inflate(&z, Z_FINISH), Z_STREAM_END);
	size_t rawlen = cap - z.avail_out;
	inflateEnd(&z);
	Perftools__Profiles__Profile *pb = perftools__profiles__profile__unpack(NULL, rawlen, raw);
	free(raw);
	assert_non_null(pb);
	return pb;
}

static const char *pstr(const Perftools__Profiles__Profile *pb, int64_t i)
{
	assert_true(i >= 0 && (size_t)i < pb->n_string_table);
	return pb->string_table[i];
}

static void assert_ids_unique(const uint64_t *ids, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		assert_true(ids[i] != 0);
		for (size_t k = 0; k < i; k++)
			assert_true(ids[i] != ids[k]);
	}
}

static const Perftools__Profiles__Location *find_loc(const Perftools__Profiles__Profile *pb, uint64_t id)
{
	for (size_t i = 0; i < pb->n_location; i++)
		if (pb->location[i]->id == id)
			return pb->location[i];
	fail_msg("location id %" PRIu64 " not in the profile", id);
	return NULL;
}

static const char *loc_func(const Perftools__Profiles__Profile *pb, const Perftools__Profiles__Location *l)
{
	assert_true(l->n_line >= 1);
	/* The last line is the real function, earlier ones inlined into it. */
	uint64_t fid = l->line[l->n_line - 1]->function_id;
	for (size_t i = 0; i < pb->n_function; i++)
		if (pb->function[i]->id == fid)
			return pstr(pb, pb->function[i]->name);
	fail_msg("function id %" PRIu64 " not in the profile", fid);
	return NULL;
}

/* The structural rules pprof enforces, and the heap conventions. */
static void check_pprof_shape(const Perftools__Profiles__Profile *pb, int64_t period)
{
	assert_true(pb->n_string_table > 0);
	assert_string_equal(pb->string_table[0], "");
	static const char *const want[4][2] = {
		{"alloc_objects", "count"}, {"alloc_space", "bytes"}, {"inuse_objects", "count"}, {"inuse_space", "bytes"}};
	assert_int_equal(pb->n_sample_type, 4);
	for (int i = 0; i < 4; i++) {
		assert_string_equal(pstr(pb, pb->sample_type[i]->type), want[i][0]);
		assert_string_equal(pstr(pb, pb->sample_type[i]->unit), want[i][1]);
	}
	assert_non_null(pb->period_type);
	assert_string_equal(pstr(pb, pb->period_type->type), "space");
	assert_string_equal(pstr(pb, pb->period_type->unit), "bytes");
	assert_int_equal(pb->period, period);
	uint64_t *ids = calloc(pb->n_location + pb->n_function + pb->n_mapping + 1, sizeof(*ids));
	for (size_t i = 0; i < pb->n_location; i++)
		ids[i] = pb->location[i]->id;
	assert_ids_unique(ids, pb->n_location);
	for (size_t i = 0; i < pb->n_function; i++)
		ids[i] = pb->function[i]->id;
	assert_ids_unique(ids, pb->n_function);
	for (size_t i = 0; i < pb->n_mapping; i++)
		ids[i] = pb->mapping[i]->id;
	assert_ids_unique(ids, pb->n_mapping);
	free(ids);
	for (size_t i = 0; i < pb->n_location; i++) {
		/* One location per address. */
		for (size_t k = 0; k < i; k++)
			assert_true(pb->location[i]->address != pb->location[k]->address);
	}
	for (size_t i = 0; i < pb->n_sample; i++) {
		assert_int_equal(pb->sample[i]->n_value, 4);
		for (size_t k = 0; k < pb->sample[i]->n_location_id; k++)
			find_loc(pb, pb->sample[i]->location_id[k]);
	}
}

static void pprof_decodes(void **state)
{
	(void)state;
	struct mt_profile *p = real_profile(512);
	size_t len;
	char *gz = render_one(mt_render_pprof, p, &len);
	Perftools__Profiles__Profile *pb = decode_pprof(gz, len);
	check_pprof_shape(pb, 512);
	assert_int_equal(pb->n_sample, 3);
	assert_int_equal(pb->n_location, 3); /* three distinct addresses */
	assert_int_equal(pb->time_nanos, 3000000000ll);
	assert_int_equal(pb->duration_nanos, 2000000000ll);
	assert_string_equal(pstr(pb, pb->default_sample_type), "inuse_space");
	for (uint32_t i = 0; i < p->nsites; i++) {
		const struct mt_site *s = &p->sites[i];
		const Perftools__Profiles__Sample *ps = pb->sample[i];
		/* Values are estimates of all allocations, in Go's order,
		 * truncated as pprof itself does with heap_v2 text. */
		double sa = mt_site_scale(512, s->alloc_objects, s->alloc_bytes);
		double si = mt_site_scale(512, s->inuse_objects, s->inuse_bytes);
		assert_true(sa > 1.0);
		assert_int_equal(ps->value[0], (int64_t)((double)s->alloc_objects * sa));
		assert_int_equal(ps->value[1], (int64_t)((double)s->alloc_bytes * sa));
		assert_int_equal(ps->value[2], (int64_t)((double)s->inuse_objects * si));
		assert_int_equal(ps->value[3], (int64_t)((double)s->inuse_bytes * si));
		/* Leaf first, raw return addresses (pprof subtracts 1 itself). */
		assert_int_equal(ps->n_location_id, s->nframes);
		for (uint32_t k = 0; k < s->nframes; k++)
			assert_int_equal(find_loc(pb, ps->location_id[k])->address, s->frames[k]);
	}
	/* Symbolized with return_addr: the leaf is the function called from. */
	const Perftools__Profiles__Location *leaf = find_loc(pb, pb->sample[0]->location_id[0]);
	assert_string_equal(loc_func(pb, leaf), "export_leaf");
	assert_string_equal(loc_func(pb, find_loc(pb, pb->sample[0]->location_id[2])), "export_outer");
	assert_true(leaf->mapping_id != 0);
	/* The program's own mapping first: pprof takes it for the main binary. */
	assert_true(pb->n_mapping >= 1);
	assert_string_equal(pstr(pb, pb->mapping[0]->filename), p->exe);
	for (size_t i = 0; i < pb->n_mapping; i++)
		if (pb->mapping[i]->id == leaf->mapping_id) {
			assert_string_equal(pstr(pb, pb->mapping[i]->filename), p->exe);
			assert_true(pb->mapping[i]->has_functions);
		}
	/* The allocation function, as a label. */
	assert_true(pb->sample[1]->n_label >= 1);
	assert_string_equal(pstr(pb, pb->sample[1]->label[0]->key), "alloc_function");
	assert_string_equal(pstr(pb, pb->sample[1]->label[0]->str), "calloc");
	perftools__profiles__profile__free_unpacked(pb, NULL);
	free(gz);
	mt_profile_free(p);
}

static void pprof_unsampled_period(void **state)
{
	(void)state;
	struct mt_profile *p = real_profile(1);
	size_t len;
	char *gz = render_one(mt_render_pprof, p, &len);
	Perftools__Profiles__Profile *pb = decode_pprof(gz, len);
	check_pprof_shape(pb, 1);
	assert_int_equal(pb->sample[0]->value[0], 10);
	assert_int_equal(pb->sample[0]->value[1], 1000);
	assert_int_equal(pb->sample[0]->value[2], 4);
	assert_int_equal(pb->sample[0]->value[3], 400);
	perftools__profiles__profile__free_unpacked(pb, NULL);
	free(gz);
	mt_profile_free(p);
}

static void svg_well_formed(void **state)
{
	(void)state;
	struct mt_profile *p = real_profile(1);
	char *got = render_items(mt_render_flamegraph, p, MT_VALUE_ALLOC);
	assert_true(!strncmp(got, "<?xml", 5) || !strncmp(got, "<svg", 4));
	assert_non_null(strstr(got, "<svg "));
	size_t len = strlen(got);
	assert_true(len > 7 && !strcmp(got + len - 7, "</svg>\n"));
	assert_non_null(strstr(got, ">export_outer ("));
	assert_non_null(strstr(got, ">export_middle ("));
	assert_non_null(strstr(got, ">export_leaf ("));
	/* The command is escaped, and elements balance. */
	assert_non_null(strstr(got, "test_export &lt;&amp;&gt;"));
	size_t opens = 0, closes = 0;
	for (const char *c = got; (c = strstr(c, "<g ")); c++)
		opens++;
	for (const char *c = got; (c = strstr(c, "</g>")); c++)
		closes++;
	assert_true(opens >= 4); /* all, outer, middle, leaf */
	assert_int_equal(opens, closes);
	free(got);
	mt_profile_free(p);
}

static void text_top_tables(void **state)
{
	(void)state;
	struct mt_profile *p = real_profile(1);
	char *buf = NULL;
	size_t len = 0;
	FILE *out = open_memstream(&buf, &len);
	struct mt_report_item it = {p, NULL, NULL, 0};
	assert_int_equal(mt_render_text(out, &it, 1), 0);
	fclose(out);
	/* After the DTrace-layout sections, never before. */
	const char *totals = strstr(buf, "Totals (malloc family");
	const char *inuse = strstr(buf, "\nTop call sites by bytes in use:\n");
	const char *alloc = strstr(buf, "\nTop call sites by bytes allocated:\n");
	const char *calls = strstr(buf, "\nTop call sites by calls:\n");
	assert_non_null(totals);
	assert_true(inuse > totals && alloc > inuse && calls > alloc);
	assert_non_null(strstr(buf, "\nCall sites: 3 stacks, every allocation recorded\n"));
	/* In use: malloc's 400 of 500 bytes first, then calloc's 100. */
	assert_non_null(strstr(inuse, "  #1  400 requested bytes in use (80.0%) in 4 blocks, from malloc\n"
				      "        export_leaf  "));
	/* Units named, plurals right. */
	assert_non_null(strstr(inuse, "  #2  100 requested bytes in use (20.0%) in 1 block, from calloc\n"));
	assert_true(strstr(inuse, "  #3") == NULL || strstr(inuse, "  #3") > alloc);
	/* Allocated: the shallow stack's 5000 bytes lead. */
	assert_non_null(strstr(alloc, "  #1  5000 requested bytes allocated (82.0%) in 5 calls, from malloc\n"
				      "        export_middle  "));
	assert_non_null(strstr(calls, "  #1  10 calls (62.5%) allocating 1000 requested bytes, to malloc\n"));
	/* Frames carry file:line when the symbolizer finds them (this test is
	 * normally built with -g; CFLAGS may say otherwise). */
	struct mt_symbolizer *sym = mt_symbolizer_new(p);
	struct mt_frame f[MT_INLINE_MAX];
	assert_true(mt_symbolize(sym, RET(export_leaf), 1, f, MT_INLINE_MAX) >= 1);
	if (f[0].file)
		assert_non_null(strstr(inuse, "test_export.c:"));
	mt_symbolizer_free(sym);
	free(buf);
	mt_profile_free(p);
}

static void json_sites(void **state)
{
	(void)state;
	struct mt_profile *p = mt_profile_new();
	p->sample_period = 1;
	uint64_t a[2] = {0x1000, 0x2abc};
	struct mt_site *s = site(p, "malloc", a, 2, 3, 300, 2, 200);
	s->peak_objects = 3;
	s->peak_bytes = 300;
	struct mt_mapping *m = mt_profile_add_mapping(p);
	*m = (struct mt_mapping){.start = 0x1000, .end = 0x3000, .offset = 0x10, .prot = PROT_READ | PROT_EXEC,
				 .build_id_len = 2, .build_id = {0xab, 0x01}};
	strcpy(m->path, "/bin/x \"y\"");
	char *buf = NULL;
	size_t len = 0;
	FILE *out = open_memstream(&buf, &len);
	struct mt_report_item it = {p, NULL, NULL, 0};
	assert_int_equal(mt_render_json(out, &it, 1), 0);
	fclose(out);
	assert_non_null(strstr(buf, "\"peak_in_use_bytes\":0},\"analyses\":{"));
	assert_non_null(strstr(buf, "\"temporary_allocations\":0,\"temporary_bytes\":0,\"temporary_estimated\":false}"
				    ",\"sample_period\":1,\"unknown_frees\":0,"
				    "\"sites\":[{\"function\":\"malloc\",\"frames\":[\"0x1000\",\"0x2abc\"],"
				    "\"alloc_objects\":3,\"alloc_bytes\":300,\"inuse_objects\":2,\"inuse_bytes\":200,"
				    "\"peak_objects\":3,\"peak_bytes\":300,\"temporary_objects\":0,\"temporary_bytes\":0,"
				    "\"stack\":[{\"address\":\"0x1000\",\"function\":null,"));
	/* Addresses no file explains: no function, no line. */
	assert_non_null(strstr(buf, "{\"address\":\"0x2abc\",\"function\":null,\"file\":null,\"line\":null"));
	assert_non_null(strstr(buf, "\"estimated\":{\"alloc_objects\":3,"
				    "\"alloc_bytes\":300,\"inuse_objects\":2,\"inuse_bytes\":200,\"peak_objects\":3,"
				    "\"peak_bytes\":300,\"temporary_objects\":0,\"temporary_bytes\":0}}],"
				    "\"mappings\":[{\"start\":\"0x1000\",\"end\":\"0x3000\",\"offset\":\"0x10\","
				    "\"perms\":\"r-x\",\"build_id\":\"ab01\",\"path\":\"/bin/x \\\"y\\\"\"}]}]}\n"));
	free(buf);
	mt_profile_free(p);
}

/* BASE: A in use 100, B 500, C 50.  NEWER: A 1100, B unchanged, C gone, D
 * new with 300, and E, same frames as A but calloc: a different site. */
static void diff_profiles(struct mt_profile **bp, struct mt_profile **np)
{
	uint64_t fa[2] = {RET(export_leaf), RET(export_outer)}, fb[1] = {RET(export_middle)},
		 fc[1] = {RET(export_outer)}, fd[3] = {RET(export_leaf), RET(export_middle), RET(export_outer)};
	struct mt_profile *b = mt_profile_new(), *n = mt_profile_new();
	b->pid = n->pid = 7;
	b->sample_period = n->sample_period = 1;
	b->dump_ns = 1000000000ull;
	n->dump_ns = 2500000000ull;
	n->seq = 1;
	add_self_maps(b);
	add_self_maps(n);
	site(b, "malloc", fa, 2, 1, 100, 1, 100);
	site(b, "malloc", fb, 1, 5, 500, 5, 500);
	site(b, "malloc", fc, 1, 1, 50, 1, 50);
	site(n, "malloc", fb, 1, 5, 500, 5, 500);
	site(n, "malloc", fd, 3, 3, 300, 3, 300);
	site(n, "malloc", fa, 2, 11, 1100, 11, 1100);
	site(n, "calloc", fa, 2, 1, 10, 0, 0);
	*bp = b;
	*np = n;
}

static void diff_order(void **state)
{
	(void)state;
	struct mt_profile *b, *n;
	diff_profiles(&b, &n);
	struct mt_diff *d;
	assert_int_equal(mt_diff_new(b, n, &d), 0);
	/* Largest in-use growth first; unchanged B left out; C (gone) last. */
	assert_int_equal(d->n, 4);
	assert_ptr_equal(d->sites[0].newer, &n->sites[2]);
	assert_ptr_equal(d->sites[0].base, &b->sites[0]);
	assert_int_equal(d->sites[0].inuse_bytes, 1000);
	assert_int_equal(d->sites[0].inuse_objects, 10);
	assert_int_equal(d->sites[0].alloc_bytes, 1000);
	assert_ptr_equal(d->sites[1].newer, &n->sites[1]);
	assert_null(d->sites[1].base);
	assert_int_equal(d->sites[1].inuse_bytes, 300);
	assert_ptr_equal(d->sites[2].newer, &n->sites[3]); /* calloc: alloc +10, in use 0 */
	assert_null(d->sites[2].base);
	assert_int_equal(d->sites[2].inuse_bytes, 0);
	assert_int_equal(d->sites[2].alloc_bytes, 10);
	assert_null(d->sites[3].newer);
	assert_ptr_equal(d->sites[3].base, &b->sites[2]);
	assert_int_equal(d->sites[3].inuse_bytes, -50);

	char *buf = NULL;
	size_t len = 0;
	FILE *out = open_memstream(&buf, &len);
	assert_int_equal(mt_render_diff_text(out, d, 2), 0);
	fclose(out);
	const char *one = strstr(buf, "  #1  +1000 requested bytes in use, +10 blocks (allocated +1000 bytes in +10 calls), "
				      "from malloc\n        export_leaf  ");
	const char *two = strstr(buf, "  #2  +300 requested bytes in use, +3 blocks (allocated +300 bytes in +3 calls), "
				      "from malloc [new site]\n");
	assert_non_null(one);
	assert_true(two > one);
	assert_non_null(strstr(buf, "  ... 2 more call sites changed"));
	assert_non_null(strstr(buf, ", 1.5 s later\n"));
	free(buf);

	/* pprof: NEWER minus BASE, negative for the site that shrank. */
	buf = NULL;
	out = open_memstream(&buf, &len);
	assert_int_equal(mt_render_diff_pprof(out, d), 0);
	fclose(out);
	Perftools__Profiles__Profile *pb = decode_pprof(buf, len);
	check_pprof_shape(pb, 1);
	assert_int_equal(pb->n_sample, 4);
	assert_int_equal(pb->sample[0]->value[3], 1000);
	assert_int_equal(pb->sample[3]->value[3], -50);
	assert_int_equal(pb->sample[3]->value[2], -1);
	assert_string_equal(loc_func(pb, find_loc(pb, pb->sample[3]->location_id[0])), "export_outer");
	perftools__profiles__profile__free_unpacked(pb, NULL);
	free(buf);
	mt_diff_free(d);
	mt_profile_free(b);
	mt_profile_free(n);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(jeprof_layout),
		cmocka_unit_test(collapsed_exact),
		cmocka_unit_test(collapsed_unsamples),
		cmocka_unit_test(pprof_decodes),
		cmocka_unit_test(pprof_unsampled_period),
		cmocka_unit_test(svg_well_formed),
		cmocka_unit_test(text_top_tables),
		cmocka_unit_test(json_sites),
		cmocka_unit_test(diff_order),
	};
	return cmocka_run_group_tests_name("export", tests, NULL, NULL);
}
