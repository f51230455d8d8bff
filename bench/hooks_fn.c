/* The function bench/hooks.sh hooks: a trivial allocator-like call in a
 * shared library, so that an entry hook and a GOT hook (the program calls it
 * through its PLT) can both be put on it. */
#include <stddef.h>

__attribute__((noipa)) void *bench_fn(char *base, size_t n)
{
	return base + (n & 4095);
}
