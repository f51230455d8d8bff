/* Unit tests: the profile file writer and reader, including every way a
 * file can be truncated or corrupted. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

#include <cmocka.h>

#include "memtap/format.h"

static struct mt_profile *sample(void)
{
	struct mt_profile *p = mt_profile_new();
	p->pid = 4551;
	p->ppid = 1;
	p->uid = 33;
	p->seq = 2;
	p->reason = MT_REASON_CTL;
	p->flags = MT_PROFILE_ACTIVE;
	p->run_id = 0x123456789abcULL;
	p->start_ns = 1000;
	p->dump_ns = 2000;
	strcpy(p->command, "/usr/sbin/apache2 -k start");
	strcpy(p->exe, "/usr/sbin/apache2");
	struct mt_func *f = mt_profile_func(p, "malloc", MT_KIND_ALLOC);
	f->calls = 22;
	f->bytes = 1234;
	f->failed = 1;
	f->hist[7] = 20;
	f->hist[14] = 2;
	f = mt_profile_func(p, "operator delete[](sized, align)", MT_KIND_FREE);
	f->calls = 5;
	f->hist[0] = 5;
	p->totals = (struct mt_totals){1000, 400, 600, 900};
	p->sample_period = 524288;
	p->unknown_frees = 3;
	const uint64_t frames[3] = {0x401234, 0x401500, 0x7f0000001000};
	struct mt_site *s = mt_profile_add_site(p, frames, 3);
	s->fn = 0;
	s->alloc_objects = 4;
	s->alloc_bytes = 4000;
	s->inuse_objects = 1;
	s->inuse_bytes = 1000;
	s->peak_objects = 2;
	s->peak_bytes = 2000;
	struct mt_mapping *m = mt_profile_add_mapping(p);
	m->start = 0x400000;
	m->end = 0x402000;
	m->offset = 0;
	m->prot = 5;
	m->build_id_len = 20;
	memset(m->build_id, 0xab, 20);
	strcpy(m->path, "/usr/sbin/apache2");
	struct mt_pool *pl = mt_profile_add_pool(p, 0, 0x7f00dead0000ULL);
	pl->calls = 9;
	pl->bytes = 900;
	pl = mt_profile_add_pool(p, 0, MT_POOL_OTHER);
	pl->calls = 2;
	pl->bytes = 20;
	return p;
}

static struct mt_buf encode(const struct mt_profile *p)
{
	struct mt_buf b = {.grow = mt_buf_grow_libc};
	assert_int_equal(mt_file_encode(p, &b), 0);
	return b;
}

static void round_trip(void **state)
{
	(void)state;
	struct mt_profile *p = sample(), *q;
	struct mt_buf b = encode(p);
	char err[256];
	assert_int_equal(mt_file_decode(b.data, b.len, &q, err, sizeof(err)), 0);
	assert_int_equal(q->pid, 4551);
	assert_int_equal(q->ppid, 1);
	assert_int_equal(q->uid, 33);
	assert_int_equal(q->seq, 2);
	assert_int_equal(q->reason, MT_REASON_CTL);
	assert_int_equal(q->flags, MT_PROFILE_ACTIVE);
	assert_true(q->run_id == 0x123456789abcULL);
	assert_string_equal(q->command, p->command);
	assert_string_equal(q->exe, p->exe);
	assert_int_equal(q->nfuncs, 2);
	assert_memory_equal(q->funcs, p->funcs, 2 * sizeof(struct mt_func));
	assert_memory_equal(&q->totals, &p->totals, sizeof(p->totals));
	assert_int_equal(q->sample_period, 524288);
	assert_int_equal(q->unknown_frees, 3);
	assert_int_equal(q->nsites, 1);
	assert_int_equal(q->sites[0].fn, 0);
	assert_int_equal(q->sites[0].nframes, 3);
	assert_memory_equal(q->sites[0].frames, p->sites[0].frames, 3 * sizeof(uint64_t));
	assert_int_equal(q->sites[0].alloc_bytes, 4000);
	assert_int_equal(q->sites[0].peak_objects, 2);
	assert_int_equal(q->nmaps, 1);
	assert_memory_equal(&q->maps[0], &p->maps[0], sizeof(p->maps[0]));
	assert_ptr_equal(mt_profile_mapping_of(q, 0x401000), &q->maps[0]);
	assert_null(mt_profile_mapping_of(q, 0x402000));
	assert_int_equal(q->npools, 2);
	assert_memory_equal(q->pools, p->pools, 2 * sizeof(struct mt_pool));
	mt_profile_free(q);
	mt_profile_free(p);
	free(b.data);
}

/* Pools: ordered by bytes or calls, merged by function name and address,
 * and a pool naming a function the file does not have is refused. */
static void pools(void **state)
{
	(void)state;
	struct mt_profile *p = sample(), *m = mt_profile_new();
	uint32_t order[8];
	/* by bytes: 0x7f00dead0000 (900) first; by calls too (9 > 2) */
	assert_int_equal(mt_profile_pools_of(p, 0, 1, order), 2);
	assert_true(p->pools[order[0]].pool == 0x7f00dead0000ULL);
	mt_profile_pool(p, 0, 0x1000)->calls = 50; /* most calls, no bytes */
	assert_int_equal(mt_profile_pools_of(p, 0, 0, order), 3);
	assert_true(p->pools[order[0]].pool == 0x1000);
	assert_int_equal(mt_profile_pools_of(p, 1, 1, order), 0);
	/* merged twice into a profile whose function order differs */
	mt_profile_func(m, "free", MT_KIND_FREE);
	assert_int_equal(mt_profile_merge(m, p), 0);
	assert_int_equal(mt_profile_merge(m, p), 0);
	assert_int_equal(m->npools, 3);
	const struct mt_pool *d = mt_profile_pool(m, (uint32_t)(mt_profile_find(m, "malloc") - m->funcs),
						  0x7f00dead0000ULL);
	assert_int_equal(d->calls, 18);
	assert_int_equal(d->bytes, 1800);
	assert_int_equal(m->npools, 3);
	/* a pool record whose function index is out of range */
	p->pools[0].fn = 7;
	struct mt_buf b = encode(p);
	struct mt_profile *q;
	char err[256];
	assert_int_equal(mt_file_decode(b.data, b.len, &q, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "pool record"));
	free(b.data);
	mt_profile_free(m);
	mt_profile_free(p);
}

/* Every proper prefix of a valid file is refused with an offset. */
static void every_truncation_refused(void **state)
{
	(void)state;
	struct mt_profile *p = sample(), *q;
	struct mt_buf b = encode(p);
	char err[256];
	for (size_t len = 0; len < b.len; len++) {
		int r = mt_file_decode(b.data, len, &q, err, sizeof(err));
		assert_int_equal(r, -EINVAL);
		assert_null(q);
		assert_true(strstr(err, "offset") != NULL);
	}
	mt_profile_free(p);
	free(b.data);
}

/* Flipping any byte is detected (magic, version, lengths or checksum). */
static void every_bit_flip_refused(void **state)
{
	(void)state;
	struct mt_profile *p = sample(), *q;
	struct mt_buf b = encode(p);
	char err[256];
	for (size_t i = 0; i < b.len; i++) {
		b.data[i] ^= 0x10;
		int r = mt_file_decode(b.data, b.len, &q, err, sizeof(err));
		assert_true(r < 0);
		assert_null(q);
		if (!strstr(err, "offset"))
			fail_msg("byte %zu: %s", i, err);
		b.data[i] ^= 0x10;
	}
	mt_profile_free(p);
	free(b.data);
}

static void header_errors(void **state)
{
	(void)state;
	struct mt_profile *p = sample(), *q;
	struct mt_buf b = encode(p);
	char err[256];
	assert_int_equal(mt_file_decode((const uint8_t *)"hello world, not a profile", 26, &q, err,
					sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "not a memtap profile"));
	uint32_t v = 99;
	memcpy(b.data + 8, &v, 4);
	assert_int_equal(mt_file_decode(b.data, b.len, &q, err, sizeof(err)), -EPROTO);
	assert_non_null(strstr(err, "unsupported format version 99"));
	mt_profile_free(p);
	free(b.data);
}

/* A record this version does not know (from a newer writer) is skipped. */
static void unknown_record_skipped(void **state)
{
	(void)state;
	struct mt_profile *p = sample(), *q;
	struct mt_buf b = encode(p);
	/* Drop the END record (12 bytes), append an unknown one, re-seal. */
	b.len -= 12;
	uint8_t extra[8 + 5] = {0x77, 0x77, 0, 0, 5, 0, 0, 0, 'h', 'e', 'l', 'l', 'o'};
	uint8_t *d = malloc(b.len + sizeof(extra) + 12);
	memcpy(d, b.data, b.len);
	memcpy(d + b.len, extra, sizeof(extra));
	size_t len = b.len + sizeof(extra);
	uint32_t tag = MT_TAG_END, four = 4, crc = (uint32_t)crc32(0, d, (uInt)len);
	memcpy(d + len, &tag, 4);
	memcpy(d + len + 4, &four, 4);
	memcpy(d + len + 8, &crc, 4);
	char err[256];
	assert_int_equal(mt_file_decode(d, len + 12, &q, err, sizeof(err)), 0);
	assert_int_equal(q->nfuncs, 2);
	mt_profile_free(q);
	mt_profile_free(p);
	free(d);
	free(b.data);
}

static void read_names_the_file(void **state)
{
	(void)state;
	char path[] = "/tmp/memtap-unit.XXXXXX";
	int fd = mkstemp(path);
	assert_true(fd >= 0);
	struct mt_profile *p = sample(), *q;
	struct mt_buf b = encode(p);
	assert_int_equal(write(fd, b.data, b.len / 2), (ssize_t)(b.len / 2));
	close(fd);
	char err[512];
	assert_int_equal(mt_file_read(path, &q, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, path));
	assert_non_null(strstr(err, "truncated at offset"));
	unlink(path);
	assert_int_equal(mt_file_read(path, &q, err, sizeof(err)), -ENOENT);
	assert_non_null(strstr(err, "cannot open"));
	assert_int_equal(mt_file_read("/tmp", &q, err, sizeof(err)), -EISDIR);
	mt_profile_free(p);
	free(b.data);
}

/* Whole or nothing: the file replaced with exactly the new bytes, no
 * temporary left behind; into a directory that does not exist, an error and
 * no file. */
static void write_whole(void **state)
{
	(void)state;
	char dir[] = "/tmp/memtap-unit.XXXXXX", path[64], tmp[96], buf[32];
	assert_non_null(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/p.mtp", dir);
	assert_int_equal(mt_file_write_whole(path, (const uint8_t *)"old contents", 12, 0600), 0);
	assert_int_equal(mt_file_write_whole(path, (const uint8_t *)"new", 3, 0600), 0);
	FILE *f = fopen(path, "r");
	assert_non_null(f);
	size_t n = fread(buf, 1, sizeof(buf), f);
	fclose(f);
	assert_int_equal(n, 3);
	assert_memory_equal(buf, "new", 3);
	snprintf(tmp, sizeof(tmp), "%s.tmp%d", path, (int)getpid());
	assert_int_equal(access(tmp, F_OK), -1);
	/* A stale temporary of this pid (a crash before) is replaced. */
	f = fopen(tmp, "w");
	assert_non_null(f);
	fclose(f);
	assert_int_equal(mt_file_write_whole(path, (const uint8_t *)"again", 5, 0600), 0);
	assert_int_equal(access(tmp, F_OK), -1);
	unlink(path);
	char missing[96];
	snprintf(missing, sizeof(missing), "%s/no-such-dir/p.mtp", dir);
	assert_int_equal(mt_file_write_whole(missing, (const uint8_t *)"x", 1, 0600), -ENOENT);
	assert_int_equal(access(missing, F_OK), -1);
	assert_int_equal(rmdir(dir), 0); /* nothing left in it */
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(round_trip),           cmocka_unit_test(every_truncation_refused),
		cmocka_unit_test(every_bit_flip_refused), cmocka_unit_test(header_errors),
		cmocka_unit_test(unknown_record_skipped), cmocka_unit_test(read_names_the_file),
		cmocka_unit_test(pools),                 cmocka_unit_test(write_whole),
	};
	return cmocka_run_group_tests_name("file", tests, NULL, NULL);
}
