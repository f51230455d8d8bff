/* The cost of --pools per APR call (bench/pools.sh): N apr_palloc of 32
 * bytes on one pool (cleared every 128), then N/100 create + palloc +
 * destroy of a child pool; prints ns per call of each. */
#include <apr_general.h>
#include <apr_pools.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static double now(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
	long n = argc > 1 ? atol(argv[1]) : 5000000;
	apr_pool_t *p, *c;
	apr_initialize();
	apr_pool_create(&p, NULL);
	double t0 = now();
	for (long i = 0; i < n; i++) {
		apr_palloc(p, 32);
		if ((i & 127) == 127)
			apr_pool_clear(p);
	}
	double t1 = now();
	for (long i = 0; i < n / 100; i++) {
		apr_pool_create(&c, p);
		apr_palloc(c, 32);
		apr_pool_destroy(c);
	}
	double t2 = now();
	printf("%.2f %.2f\n", (t1 - t0) / (double)n * 1e9, (t2 - t1) / (double)(n / 100) * 1e9);
	return 0;
}
