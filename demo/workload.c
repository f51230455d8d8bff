/*
 * The demo workload: a toy request loop.  Each "request" gets a pool (a
 * region allocator that takes 8 KiB blocks from malloc, as APR's pools do),
 * parses headers into pool memory, builds a response in a malloc'd buffer
 * that grows with realloc, and destroys the pool.  Two worker threads.
 *
 * usage: memtap-demo-workload [REQUESTS]   (prints a checksum)
 */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct block {
	struct block *next;
	size_t used, size;
	char data[];
};

struct pool {
	struct block *blocks;
};

static struct pool *pool_create(void)
{
	return calloc(1, sizeof(struct pool));
}

/* Not inlined, not cloned: `memtap demo` counts it by name with
 * -f pool_alloc:size=arg1:pool=arg0, as apr_palloc in Apache. */
__attribute__((noinline, noclone)) void *pool_alloc(struct pool *p, size_t n);
__attribute__((noinline, noclone)) void *pool_alloc(struct pool *p, size_t n)
{
	n = (n + 15) & ~(size_t)15;
	struct block *b = p->blocks;
	if (!b || b->size - b->used < n) {
		size_t size = n > 8192 - sizeof(*b) ? n : 8192 - sizeof(*b);
		b = malloc(sizeof(*b) + size);
		if (!b)
			abort();
		b->size = size;
		b->used = 0;
		b->next = p->blocks;
		p->blocks = b;
	}
	void *r = b->data + b->used;
	b->used += n;
	return r;
}

static void pool_destroy(struct pool *p)
{
	while (p->blocks) {
		struct block *n = p->blocks->next;
		free(p->blocks);
		p->blocks = n;
	}
	free(p);
}

static uint64_t serve(unsigned id)
{
	struct pool *p = pool_create();
	uint64_t sum = 0;
	/* Headers: small strings of varied sizes, in the pool. */
	for (unsigned h = 0; h < 40; h++) {
		size_t len = 4 + (id * 7 + h * 13) % 120;
		char *s = pool_alloc(p, len);
		memset(s, 'a' + h % 26, len);
		sum += (unsigned char)s[len / 2];
	}
	/* The response: a buffer that doubles as it fills. */
	size_t cap = 256, len = 0;
	char *body = malloc(cap);
	for (unsigned chunk = 0; chunk < 8 + id % 16; chunk++) {
		size_t add = 200 + (id * 31 + chunk * 17) % 700;
		if (len + add > cap) {
			while (len + add > cap)
				cap *= 2;
			body = realloc(body, cap);
		}
		memset(body + len, 'x', add);
		len += add;
	}
	sum += len;
	free(body);
	/* A log line, as strdup'd by many servers. */
	char line[64];
	snprintf(line, sizeof(line), "GET /item/%u 200 %zu", id, len);
	char *log = strdup(line);
	sum += strlen(log);
	free(log);
	pool_destroy(p);
	return sum;
}

struct worker {
	unsigned first, count;
	uint64_t sum;
};

static void *work(void *arg)
{
	struct worker *w = arg;
	for (unsigned i = 0; i < w->count; i++)
		w->sum += serve(w->first + i);
	return NULL;
}

int main(int argc, char **argv)
{
	unsigned n = argc > 1 ? (unsigned)strtoul(argv[1], NULL, 10) : 300;
	struct worker w[2] = {{0, n / 2, 0}, {n / 2, n - n / 2, 0}};
	pthread_t t[2];
	for (int i = 0; i < 2; i++)
		pthread_create(&t[i], NULL, work, &w[i]);
	for (int i = 0; i < 2; i++)
		pthread_join(t[i], NULL);
	printf("served %u requests, checksum %llu\n", n, (unsigned long long)(w[0].sum + w[1].sum));
	return 0;
}
