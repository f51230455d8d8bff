/*
 * threads: the cost of creating a thread, for bench/ebpf.sh: creates and
 * joins N threads one after the other (each does nothing), or with
 * "idle T", starts T threads that block for good and waits (a target with T
 * threads to attach to).
 * usage: threads N | threads idle T
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void *nothing(void *arg)
{
	return arg;
}

static void *block(void *arg)
{
	for (;;)
		pause();
	return arg;
}

int main(int argc, char **argv)
{
	pthread_t t;
	if (argc == 3 && !strcmp(argv[1], "idle")) {
		for (long i = 0, n = atol(argv[2]); i < n; i++)
			if (pthread_create(&t, NULL, block, NULL))
				return 1;
		block(NULL);
	}
	if (argc != 2)
		return 2;
	for (long i = 0, n = atol(argv[1]); i < n; i++) {
		if (pthread_create(&t, NULL, nothing, NULL))
			return 1;
		pthread_join(t, NULL);
	}
	return 0;
}
