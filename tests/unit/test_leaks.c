/* Unit tests: the leak check's pointer-range search and marking over a fake
 * memory (src/core/leaks.c), and its record in the profile file. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>

#include <cmocka.h>

#include "memtap/format.h"
#include "memtap/leaks.h"

/* ---- a fake address space: regions of words at made-up addresses, whole
 * pages as the kernel maps them ---- */

struct region {
	uint64_t base;
	size_t len;
	uint8_t *data;
};

struct space {
	struct region r[8];
	int n;
	unsigned reads;
};

static uint64_t *region_add(struct space *s, uint64_t base, size_t len)
{
	struct region *r = &s->r[s->n++];
	len = (len + 4095) & ~(size_t)4095;
	r->base = base;
	r->len = len;
	r->data = calloc(1, len);
	return (uint64_t *)r->data;
}

static void space_free(struct space *s)
{
	for (int i = 0; i < s->n; i++)
		free(s->r[i].data);
}

/* process_vm_readv's contract: bytes read until the first byte that is not
 * mapped. */
static ssize_t fake_readv(void *arg, const struct mt_reach_io *io, size_t n, void *buf)
{
	struct space *s = arg;
	uint8_t *out = buf;
	ssize_t total = 0;
	s->reads++;
	for (size_t i = 0; i < n; i++) {
		for (uint64_t a = io[i].addr; a < io[i].addr + io[i].len; a++) {
			const struct region *hit = NULL;
			for (int k = 0; k < s->n; k++)
				if (a >= s->r[k].base && a < s->r[k].base + s->r[k].len)
					hit = &s->r[k];
			if (!hit)
				return total ? total : -1;
			*out++ = hit->data[a - hit->base];
			total++;
		}
	}
	return total;
}

#define HEAP 0x10000000ull
#define GLOBALS 0x20000000ull

struct fixture {
	struct space sp;
	struct mt_reach_block b[16], tmp[16];
	uint32_t stack[16];
	uint8_t *cache;
	struct mt_reach r;
};

static void reach_init(struct fixture *f, size_t n)
{
	mt_reach_sort(f->b, n, f->tmp);
	f->cache = calloc(1, 4 * (32768 + 12));
	f->r = (struct mt_reach){.b = f->b, .n = n, .stack = f->stack, .buf = f->cache,
				 .buflen = 4 * (32768 + 12), .readv = fake_readv, .arg = &f->sp};
}

static void fixture_free(struct fixture *f)
{
	free(f->cache);
	space_free(&f->sp);
}

static void sort_orders_by_start(void **state)
{
	(void)state;
	struct mt_reach_block b[200], tmp[200];
	uint64_t x = 88172645463325252ull;
	for (int i = 0; i < 200; i++) {
		x ^= x << 13, x ^= x >> 7, x ^= x << 17;
		b[i] = (struct mt_reach_block){.start = (x & 0x7ffffffffff0ull), .size = 16, .site = (uint64_t)i};
	}
	mt_reach_sort(b, 200, tmp);
	for (int i = 1; i < 200; i++)
		assert_true(b[i - 1].start <= b[i].start);
	/* every entry kept (sites are a permutation of 0..199) */
	int seen[200] = {0};
	for (int i = 0; i < 200; i++)
		seen[b[i].site]++;
	for (int i = 0; i < 200; i++)
		assert_int_equal(seen[i], 1);
}

static void find_counts_interior_pointers(void **state)
{
	(void)state;
	struct mt_reach_block b[3] = {{HEAP + 0x100, 32, 0, 0, 0}, {HEAP + 0x40, 16, 0, 0, 0}, {HEAP + 0x200, 0, 0, 0, 0}},
			      tmp[3];
	mt_reach_sort(b, 3, tmp);
	struct mt_reach r = {.b = b, .n = 3};
	assert_int_equal(mt_reach_find(&r, HEAP + 0x40), 0);
	assert_int_equal(mt_reach_find(&r, HEAP + 0x4f), 0);       /* last byte */
	assert_int_equal(mt_reach_find(&r, HEAP + 0x50), -1);      /* one past the end */
	assert_int_equal(mt_reach_find(&r, HEAP + 0x3f), -1);      /* before the first */
	assert_int_equal(mt_reach_find(&r, HEAP + 0x110), 1);      /* interior */
	assert_int_equal(mt_reach_find(&r, HEAP + 0x200), 2);      /* a zero-size block: its start */
	assert_int_equal(mt_reach_find(&r, HEAP + 0x201), -1);
	assert_int_equal(mt_reach_find(&r, 0), -1);
}

/* Roots -> A -> B -> C (through B's middle); D and E unreachable (E points
 * at D); a cycle F <-> G unreachable. */
static void marking_is_transitive(void **state)
{
	(void)state;
	struct fixture f = {0};
	uint64_t *heap = region_add(&f.sp, HEAP, 0x1000);
	uint64_t *glob = region_add(&f.sp, GLOBALS, 64);
	uint64_t A = HEAP + 0x000, B = HEAP + 0x100, C = HEAP + 0x200, D = HEAP + 0x300, E = HEAP + 0x400,
		 F = HEAP + 0x500, G = HEAP + 0x600;
	uint64_t addrs[] = {A, B, C, D, E, F, G};
	for (int i = 0; i < 7; i++)
		f.b[i] = (struct mt_reach_block){addrs[i], 64, (uint64_t)i + 1, 0, 0};
	heap[(A - HEAP) / 8] = B + 24;  /* interior */
	heap[(B - HEAP) / 8 + 3] = C;
	heap[(E - HEAP) / 8 + 7] = D;
	heap[(F - HEAP) / 8] = G;
	heap[(G - HEAP) / 8] = F;
	heap[(C - HEAP) / 8 + 2] = 0xdeadbeef; /* not a pointer into any block */
	glob[3] = A + 63;                      /* the last byte of A */
	reach_init(&f, 7);
	mt_reach_range(&f.r, GLOBALS, 64);
	mt_reach_drain(&f.r);
	int want[] = {1, 1, 1, 0, 0, 0, 0};
	for (int i = 0; i < 7; i++)
		assert_int_equal(f.b[i].reached, want[i]);
	assert_int_equal(f.r.unreadable_bytes, 0);
	fixture_free(&f);
}

/* A block whose memory cannot be read (unmapped behind the allocator's
 * back) is reached, not followed, counted; nothing faults. */
static void unreadable_blocks_are_skipped(void **state)
{
	(void)state;
	struct fixture f = {0};
	uint64_t *heap = region_add(&f.sp, HEAP, 0x1000);
	uint64_t *glob = region_add(&f.sp, GLOBALS, 64);
	uint64_t gone = HEAP + 0x100000; /* no region there */
	f.b[0] = (struct mt_reach_block){HEAP, 64, 1, 0, 0};
	f.b[1] = (struct mt_reach_block){gone, 8192, 2, 0, 0};
	f.b[2] = (struct mt_reach_block){HEAP + 0x800, 64, 3, 0, 0};
	heap[0] = gone;
	glob[0] = HEAP + 8;
	reach_init(&f, 3);
	/* a root range that runs past its region: the rest is skipped */
	mt_reach_range(&f.r, GLOBALS, 8192);
	mt_reach_drain(&f.r);
	/* sorted: HEAP, HEAP + 0x800, gone */
	assert_int_equal(f.b[0].reached, 1);
	assert_int_equal(f.b[1].reached, 0);
	assert_int_equal(f.b[2].reached, 1);
	assert_int_equal(f.b[2].start, gone);
	assert_true(f.r.unreadable_bytes >= 8192);
	fixture_free(&f);
}

/* glibc: main_arena's top and bin pointers hold the header of the chunk
 * after a block, which lies in that block's last 8 usable bytes. */
static void next_chunk_header_does_not_reach(void **state)
{
	(void)state;
	struct fixture f = {0};
	uint64_t *heap = region_add(&f.sp, HEAP, 0x1000);
	uint64_t *glob = region_add(&f.sp, GLOBALS, 64);
	/* malloc(24) at HEAP + 0x10: chunk HEAP..HEAP+0x20, size word 0x21 */
	uint64_t blk = HEAP + 0x10;
	heap[1] = 0x21;
	f.b[0] = (struct mt_reach_block){blk, 24, 1, 0, 0};
	glob[0] = HEAP + 0x20; /* the next chunk's header: inside [blk, blk + 24) */
	reach_init(&f, 1);
	f.r.glibc_headers = 1;
	mt_reach_range(&f.r, GLOBALS, 64);
	mt_reach_drain(&f.r);
	assert_int_equal(f.b[0].reached, 0);
	/* the same word without glibc's layout is an interior pointer */
	f.r.glibc_headers = 0;
	mt_reach_range(&f.r, GLOBALS, 64);
	assert_int_equal(f.b[0].reached, 1);
	fixture_free(&f);
}

static void file_round_trip(void **state)
{
	(void)state;
	struct mt_profile *p = mt_profile_new();
	assert_non_null(p);
	p->pid = 42;
	assert_non_null(mt_profile_func(p, "malloc", MT_KIND_ALLOC));
	struct mt_leaks l = {.pause_ns = 1234, .threads = 3, .flags = MT_LEAKS_AT_EXIT, .unreachable_bytes = 4800,
			     .unreachable_blocks = 100, .reachable_bytes = 10000, .reachable_blocks = 10, .nsites = 2};
	struct mt_leak_site s[2] = {{.fn = 0, .nframes = 2, .frames = {0x401000, 0x402000}, .lost_objects = 100,
				     .lost_bytes = 4800},
				    {.fn = UINT32_MAX, .nframes = 0, .reach_objects = 10, .reach_bytes = 10000}};
	l.sites = s;
	p->leaks = mt_leaks_dup(&l);
	struct mt_buf b = {.grow = mt_buf_grow_libc};
	assert_int_equal(mt_file_encode(p, &b), 0);
	struct mt_profile *q;
	char err[256];
	assert_int_equal(mt_file_decode(b.data, b.len, &q, err, sizeof(err)), 0);
	assert_non_null(q->leaks);
	assert_int_equal(q->leaks->unreachable_bytes, 4800);
	assert_int_equal(q->leaks->reachable_blocks, 10);
	assert_int_equal(q->leaks->pause_ns, 1234);
	assert_int_equal(q->leaks->flags, MT_LEAKS_AT_EXIT);
	assert_int_equal(q->leaks->nsites, 2);
	assert_int_equal(q->leaks->sites[0].frames[1], 0x402000);
	assert_int_equal(q->leaks->sites[1].fn, UINT32_MAX);
	mt_profile_free(q);
	mt_profile_free(p);
	free(b.data);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(sort_orders_by_start),
		cmocka_unit_test(find_counts_interior_pointers),
		cmocka_unit_test(marking_is_transitive),
		cmocka_unit_test(unreadable_blocks_are_skipped),
		cmocka_unit_test(next_chunk_header_does_not_reach),
		cmocka_unit_test(file_round_trip),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
