/*
 * What the ThreadSanitizer harness replaces: only interpose.c, the one file
 * that cannot be linked into a TSan program (it defines malloc, free and the
 * rest, which TSan's runtime interposes itself).  Everything else of the
 * agent is the real code.
 *
 * There is no real allocator to resolve, so usable sizes are never read from
 * glibc's chunk headers (mt_g.usable_fast stays 0) and malloc's and free's
 * fast-path gate stays shut; the counting functions the wrappers inline
 * (mt_enter, mt_on_alloc, mt_on_free, ...) are called by the tests directly.
 */
#include <stdio.h>
#include <stdlib.h>

#include "agent.h"

/* MEMTAP_TSAN_ATTACH=1: behave as a library loaded into a running process
 * (attach mode), so that the tests can drive `ctl attach` and `ctl detach`. */
int mt_resolve(void)
{
	const char *v = getenv("MEMTAP_TSAN_ATTACH");
	mt_g.attached_mode = v && v[0] == '1';
	return 0;
}

void mt_usable_check(void)
{
}

const char *mt_fast_paths(void)
{
	return "none";
}

/* The GOT hooks of the interposed functions: none here (attach mode still
 * hooks dlopen, in custom.c). */
int mt_hook_wrappers(void)
{
	return 0;
}

const char *mt_allocator_name(char *path, size_t pathlen)
{
	snprintf(path, pathlen, "%s", "ThreadSanitizer's runtime (tests/tsan harness)");
	return "other";
}
