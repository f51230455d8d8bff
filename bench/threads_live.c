/* N threads that each allocate once and stay (their counter blocks stay
 * claimed), for timing a live snapshot of a process with many threads
 * (bench/live.sh).  Prints "ready" when they all have, then waits for a line
 * on stdin.  usage: threads_live N */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

static pthread_barrier_t all;
static int done;

static void *worker(void *arg)
{
	void *volatile p = malloc(100 + (size_t)(uintptr_t)arg % 1000);
	free(p);
	pthread_barrier_wait(&all);
	while (!__atomic_load_n(&done, __ATOMIC_ACQUIRE))
		pause();
	return NULL;
}

int main(int argc, char **argv)
{
	int n = argc > 1 ? atoi(argv[1]) : 1000;
	pthread_t t;
	pthread_attr_t a;
	pthread_attr_init(&a);
	pthread_attr_setstacksize(&a, 64 * 1024);
	pthread_barrier_init(&all, NULL, (unsigned)n + 1);
	for (int i = 0; i < n; i++)
		if (pthread_create(&t, &a, worker, (void *)(uintptr_t)i))
			return 1;
	pthread_barrier_wait(&all);
	puts("ready");
	fflush(stdout);
	char line[16];
	if (!fgets(line, sizeof(line), stdin))
		return 0;
	return 0;
}
