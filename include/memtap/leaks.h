/*
 * Leak check by reachability (the "leaks" part; docs/LEAKS.md).
 *
 * With every allocation tracked (--leaks, or --sample=1), the agent knows
 * each live block and its requested size.  A leak check stops the threads,
 * scans the roots (registers and stacks of every thread, static TLS, the
 * writable segments of every module but the agent's) for words that point
 * into a block, then scans every block so reached, transitively.  Blocks no
 * word reaches are unreachable ("definitely lost", valgrind would add its
 * "indirectly lost"); the others are still reachable.  A word pointing
 * anywhere inside a block counts (interior pointers, as LeakSanitizer).
 *
 * Three layers, one header:
 * - struct mt_reach: the pointer-range search and the marking, pure code
 *   over a caller's sorted block table and a caller's memory reader (the
 *   agent reads with process_vm_readv; the unit tests with a fake memory).
 *   Allocates nothing.
 * - struct mt_live_leaks: the last check's result in the live counter file,
 *   where the session and `memtap ctl PID leaks` read it.
 * - struct mt_leaks: the result in the profile model (record tag 14).
 */
#ifndef MEMTAP_LEAKS_H
#define MEMTAP_LEAKS_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "memtap/live.h"
#include "memtap/profile.h"

/* ---- the search ---- */

struct mt_reach_block {
	uint64_t start, size; /* requested bytes */
	uint64_t site;        /* the collector's key for its call site */
	uint32_t reached, pad;
};

/* A range to read: ADDR, LEN. */
struct mt_reach_io {
	uint64_t addr, len;
};

struct mt_reach {
	struct mt_reach_block *b; /* sorted by start (mt_reach_sort) */
	size_t n;
	uint32_t *stack;          /* n entries: blocks reached, not yet scanned */
	size_t depth;
	uint8_t *buf;             /* the read cache (zeroed): windows of 32 KiB and their tags */
	size_t buflen;            /* at least 32 KiB + 12 bytes; a few MiB or more for speed */
	/* Reads the ranges IO[0..N) back to back into BUF: the bytes read, fewer
	 * than their sum when one range could not be read (the reading stops
	 * inside or at the start of that range), -1 when nothing could. */
	ssize_t (*readv)(void *arg, const struct mt_reach_io *io, size_t n, void *buf);
	void *arg;
	/* glibc: a word equal to the chunk header that follows a block (what
	 * the allocator's own bins and top pointer hold) does not reach it. */
	int glibc_headers;
	/* figures */
	uint64_t scanned_bytes, unreadable_bytes;
};

/* Sorts B[0..N) by start with TMP (N entries) as scratch: a radix sort,
 * no allocation. */
void mt_reach_sort(struct mt_reach_block *b, size_t n, struct mt_reach_block *tmp);
/* The block that contains ADDR (a zero-size block contains its start), or
 * -1. */
long mt_reach_find(const struct mt_reach *r, uint64_t addr);
/* Marks the blocks the N aligned words at W point into. */
void mt_reach_words(struct mt_reach *r, const uint64_t *w, size_t n);
/* Reads [ADDR, ADDR + LEN) through r->readv (in cached 32 KiB windows)
 * and marks what its aligned words reach; pages that cannot be read are
 * skipped (and counted). */
void mt_reach_range(struct mt_reach *r, uint64_t addr, uint64_t len);
/* Scans every marked block not yet scanned, until none is left. */
void mt_reach_drain(struct mt_reach *r);

/* ---- in the live counter file ---- */

struct mt_live_leak_site {
	uint64_t site; /* agent address of the struct mt_live_site */
	uint64_t lost_objects, lost_bytes;
	uint64_t reach_objects, reach_bytes;
};

/* MT_LEAKS_* flags */
#define MT_LEAKS_UNSTOPPED 0x1u  /* a thread could not be stopped: its registers were not read */
#define MT_LEAKS_NOT_EXACT 0x2u  /* not every allocation was tracked (--sample > 1): partial */
#define MT_LEAKS_TRUNCATED 0x4u  /* more sites than the table holds: the rest are in "other" */
#define MT_LEAKS_ATTACHED 0x8u   /* attach mode: untracked heap memory was scanned as roots */
#define MT_LEAKS_AT_EXIT 0x10u   /* taken as the process exited */

struct mt_live_leaks {
	uint32_t seq;  /* odd while the agent writes it */
	uint32_t cap;  /* entries the table holds */
	uint32_t nsites, threads, unstopped, flags;
	uint64_t check_ns, pause_ns, roots_bytes;
	uint64_t unreachable_bytes, unreachable_blocks, reachable_bytes, reachable_blocks;
	struct mt_live_leak_site s[];
};

/* ---- in the profile ---- */

struct mt_leak_site {
	uint32_t fn; /* index into funcs, or UINT32_MAX */
	uint32_t nframes;
	uint64_t frames[MT_STACK_MAX];
	uint64_t lost_objects, lost_bytes;   /* unreachable */
	uint64_t reach_objects, reach_bytes; /* still reachable */
};

struct mt_leaks {
	uint64_t check_ns;  /* CLOCK_REALTIME when the check ran */
	uint64_t pause_ns;  /* how long the threads were stopped */
	uint64_t roots_bytes; /* bytes of roots scanned */
	uint32_t threads;   /* threads whose registers and stacks were read */
	uint32_t unstopped; /* threads that could not be stopped */
	uint32_t flags;     /* MT_LEAKS_* */
	uint64_t unreachable_bytes, unreachable_blocks, reachable_bytes, reachable_blocks;
	uint32_t nsites;
	struct mt_leak_site *sites; /* unreachable bytes descending */
};

/* The entries the last check in V left (0: none), for sizing. */
uint32_t mt_live_leak_count(const struct mt_live_view *v);
/* Reads V's last check into L, whose sites array holds CAP entries; P is
 * the profile of the same snapshot (its funcs give the sites' function
 * indices).  1 when there was a check, 0 when none, -1 when it was being
 * rewritten throughout. */
int mt_live_leaks_read(const struct mt_live_view *v, const struct mt_profile *p, struct mt_leaks *l,
		       uint32_t cap);
/* Sorts L's sites by unreachable bytes, then reachable bytes, descending. */
void mt_leaks_order(struct mt_leaks *l);
/* A malloc'ed copy (mt_leaks_free), for the CLI; NULL on ENOMEM. */
struct mt_leaks *mt_leaks_dup(const struct mt_leaks *l);
void mt_leaks_free(struct mt_leaks *l);

#endif
