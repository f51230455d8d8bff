/*
 * glibc_cost: what --glibc's control thread spends per tick, measured in one
 * process (bench/glibc.sh): T threads each keep 4096 live blocks of churn
 * sizes (fragmented arenas), then this times, as medians of 200 calls,
 * a lock-wait sample (mt_glibc_sample_waits), a full look without symbols
 * (mt_glibc_read), mallinfo2() and malloc_info() into a memory stream.
 * usage: glibc_cost T
 */
#include <malloc.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "memtap/glibc.h"

static pthread_barrier_t ready;
static pthread_mutex_t hold = PTHREAD_MUTEX_INITIALIZER;

static void *worker(void *arg)
{
	unsigned seed = (unsigned)(uintptr_t)arg;
	void *keep[4096];
	for (int i = 0; i < 4096; i++)
		keep[i] = malloc(16 + rand_r(&seed) % 512);
	for (int i = 0; i < 4096; i += 2) /* holes: free chunks to walk */
		free(keep[i]);
	pthread_barrier_wait(&ready);
	pthread_mutex_lock(&hold); /* blocked until the end */
	pthread_mutex_unlock(&hold);
	return NULL;
}

static double now_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec / 1e3;
}

static int cmp(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

#define N 200
static double median(double *v)
{
	qsort(v, N, sizeof(*v), cmp);
	return v[N / 2];
}

int main(int argc, char **argv)
{
	int t = argc > 1 ? atoi(argv[1]) : 4;
	pthread_t th[256];
	if (t > 256)
		t = 256;
	pthread_barrier_init(&ready, NULL, (unsigned)t + 1);
	pthread_mutex_lock(&hold);
	for (int i = 0; i < t; i++)
		pthread_create(&th[i], NULL, worker, (void *)(uintptr_t)(i + 1));
	pthread_barrier_wait(&ready);
	struct mt_glibc *g = calloc(1, sizeof(*g));
	double v[N];
	for (int i = 0; i < N; i++) {
		double a = now_us();
		mt_glibc_read(getpid(), NULL, NULL, NULL, 0, g);
		v[i] = now_us() - a;
	}
	double look = median(v);
	for (int i = 0; i < N; i++) {
		double a = now_us();
		mt_glibc_sample_waits(getpid(), g);
		v[i] = now_us() - a;
	}
	double sample = median(v);
	for (int i = 0; i < N; i++) {
		double a = now_us();
		struct mallinfo2 mi = mallinfo2();
		v[i] = now_us() - a;
		if (!mi.arena)
			return 1;
	}
	double mi2 = median(v);
	for (int i = 0; i < N; i++) {
		char *buf = NULL;
		size_t len = 0;
		double a = now_us();
		FILE *f = open_memstream(&buf, &len);
		malloc_info(0, f);
		fclose(f);
		v[i] = now_us() - a;
		free(buf);
	}
	double info = median(v);
	/* the agent's policy: a sample every max(10 ms, 100 x its cost), a
	 * look every 10 samples, statistics only on demand */
	double period = sample * 100 > 10000 ? sample * 100 : 10000;
	printf("threads %d arenas %u: sample %.1f us, look %.1f us, mallinfo2 %.1f us, malloc_info %.1f us; "
	       "period %.0f ms, control thread CPU share %.2f %%\n", t, g->narenas, sample, look, mi2, info,
	       period / 1000, (sample / period + look / (10 * period)) * 100);
	pthread_mutex_unlock(&hold);
	for (int i = 0; i < t; i++)
		pthread_join(th[i], NULL);
	return 0;
}
