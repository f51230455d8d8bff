/*
 * churn: malloc/free churn workload for memtap's benchmarks.
 *
 * Usage: churn [ITERATIONS [THREADS [SLOTS [FILL]]]]
 *   ITERATIONS  free+malloc pairs per thread (default 8000000)
 *   THREADS     worker threads (default 1: the work runs on the main thread)
 *   SLOTS       live blocks per thread (default 4096)
 *   FILL        0 (default): write 3 bytes of each new block (start, middle,
 *               end); 1: memset the whole block, like code that initialises
 *               what it allocates (more work per allocation)
 *
 * Each thread keeps SLOTS live blocks.  Every iteration frees a random slot and
 * mallocs a new block whose size comes from a skewed distribution (mostly
 * 16..512 bytes, sometimes up to 4 KiB, rarely up to 64 KiB), then writes a few
 * bytes at both ends of it, as real code would.  One iteration in 64 uses
 * calloc or realloc instead, so those entry points are exercised too.  At the
 * end it prints a checksum, so the work cannot be optimised away and a traced
 * run can be checked against an untraced one (same seed, same checksum).
 */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct worker {
	unsigned long iters;
	unsigned long slots;
	int fill;
	uint64_t seed;
	uint64_t sum;
	pthread_t tid;
};

static inline uint64_t xorshift64(uint64_t *s)
{
	uint64_t x = *s;
	x ^= x << 13;
	x ^= x >> 7;
	x ^= x << 17;
	return *s = x;
}

/* 7/8: 16..512; 7/64: 513..4096; 1/64: 4097..65536 */
static inline size_t pick_size(uint64_t r)
{
	unsigned bucket = r & 63;
	uint64_t v = r >> 6;
	if (bucket < 56)
		return 16 + v % (512 - 16 + 1);
	if (bucket < 63)
		return 513 + v % (4096 - 513 + 1);
	return 4097 + v % (65536 - 4097 + 1);
}

static void *work(void *arg)
{
	struct worker *w = arg;
	uint64_t s = w->seed, sum = 0;
	unsigned long n = w->slots;
	unsigned char **blk = calloc(n, sizeof *blk);
	size_t *len = calloc(n, sizeof *len);
	if (!blk || !len) {
		perror("calloc");
		exit(1);
	}
	for (unsigned long i = 0; i < n; i++) {
		len[i] = pick_size(xorshift64(&s));
		blk[i] = malloc(len[i]);
		if (!blk[i]) {
			perror("malloc");
			exit(1);
		}
		blk[i][0] = (unsigned char)i;
		blk[i][len[i] - 1] = (unsigned char)(i >> 8);
	}
	for (unsigned long it = 0; it < w->iters; it++) {
		uint64_t r = xorshift64(&s);
		unsigned long k = (unsigned long)(r % n);
		unsigned char *p = blk[k];
		size_t sz = pick_size(xorshift64(&s));
		/* read what was written before freeing, like real code would */
		sum += p[0] + p[len[k] - 1];
		switch ((r >> 40) & 63) {
		case 0:
			free(p);
			p = calloc(1, sz);
			break;
		case 1:
			p = realloc(p, sz);
			break;
		default:
			free(p);
			p = malloc(sz);
			break;
		}
		if (!p) {
			perror("malloc");
			exit(1);
		}
		if (w->fill)
			memset(p, (int)(it & 0xff), sz);
		p[0] = (unsigned char)it;
		p[sz / 2] = (unsigned char)(it >> 3);
		p[sz - 1] = (unsigned char)(it >> 8);
		blk[k] = p;
		len[k] = sz;
	}
	for (unsigned long i = 0; i < n; i++) {
		sum += blk[i][0] + blk[i][len[i] - 1];
		free(blk[i]);
	}
	free(blk);
	free(len);
	w->sum = sum;
	return NULL;
}

int main(int argc, char **argv)
{
	unsigned long iters = argc > 1 ? strtoul(argv[1], NULL, 0) : 8000000UL;
	unsigned long threads = argc > 2 ? strtoul(argv[2], NULL, 0) : 1;
	unsigned long slots = argc > 3 ? strtoul(argv[3], NULL, 0) : 4096;
	int fill = argc > 4 ? atoi(argv[4]) != 0 : 0;
	if (threads < 1 || threads > 1024 || slots < 1) {
		fprintf(stderr, "usage: churn [ITERATIONS [THREADS [SLOTS [FILL]]]]\n");
		return 2;
	}
	struct worker *w = calloc(threads, sizeof *w);
	if (!w)
		return 1;
	for (unsigned long t = 0; t < threads; t++) {
		w[t].iters = iters;
		w[t].slots = slots;
		w[t].fill = fill;
		w[t].seed = 0x9E3779B97F4A7C15ULL * (t + 1) + 12345;
	}
	if (threads == 1) {
		work(&w[0]);
	} else {
		for (unsigned long t = 0; t < threads; t++)
			if (pthread_create(&w[t].tid, NULL, work, &w[t]) != 0) {
				perror("pthread_create");
				return 1;
			}
		for (unsigned long t = 0; t < threads; t++)
			pthread_join(w[t].tid, NULL);
	}
	uint64_t sum = 0;
	for (unsigned long t = 0; t < threads; t++)
		sum = sum * 31 + w[t].sum;
	printf("churn: %lu thread(s) x %lu iterations, %lu slots, fill %d, checksum %llu\n",
	       threads, iters, slots, fill, (unsigned long long)sum);
	free(w);
	return 0;
}
