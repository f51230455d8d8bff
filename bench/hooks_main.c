/* bench/hooks.sh's workload: waits until GOFILE exists (memtap attaches
 * meanwhile), then calls bench_fn N times and prints the time per call.
 *   hooks_main N GOFILE */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

void *bench_fn(char *base, size_t n);

int main(int argc, char **argv)
{
	if (argc < 3)
		return 2;
	long n = atol(argv[1]);
	static char buf[8192];
	fprintf(stderr, "ready\n");
	while (access(argv[2], F_OK) != 0)
		usleep(1000);
	struct timespec a, b;
	clock_gettime(CLOCK_MONOTONIC, &a);
	char *acc = NULL;
	for (long i = 0; i < n; i++)
		acc = bench_fn(buf, (size_t)i + (size_t)(acc - buf));
	clock_gettime(CLOCK_MONOTONIC, &b);
	double ns = ((double)(b.tv_sec - a.tv_sec) * 1e9 + (double)(b.tv_nsec - a.tv_nsec)) / (double)n;
	printf("%.2f %p\n", ns, (void *)acc);
	return 0;
}
