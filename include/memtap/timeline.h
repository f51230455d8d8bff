/*
 * Timelines: what one process's memory did over time, one point every
 * --interval seconds, sampled by the memtap command from outside (the
 * profiles its session takes of the process: the target runs nothing for
 * it, and a process that dies keeps every point up to its last interval,
 * plus its final profile's).
 *
 * A point holds the level of in-use bytes (and the highest level seen over
 * the time it covers), the bytes and calls allocated and freed since the
 * previous point, and the process's resident set; pool bytes and heap bytes
 * when a collector knows them (MT_TL_HAVE_*).  Points are in time order.
 *
 * Bounded: a timeline holds at most MT_TL_MAX points.  When it is full the
 * older half is decimated: each pair of neighbours becomes one point (the
 * later one's levels, the higher in-use maximum, both pairs' counts summed,
 * both spans), so a long run keeps its recent points at full resolution
 * and its old ones at 2x, 4x, ... the interval, and no count is lost.
 *
 * A child's timeline names its parent (mt_profile's ppid and
 * parent_start_ns, the parent profile's start_ns), so a prefork server's
 * children are separate series related to their parent.
 */
#ifndef MEMTAP_TIMELINE_H
#define MEMTAP_TIMELINE_H

#include <stddef.h>
#include <stdint.h>

#define MT_TL_MAX 2048

#define MT_TL_HAVE_RSS 0x1u   /* rss_bytes is known (the process was there to read) */
#define MT_TL_HAVE_POOLS 0x2u /* pool_bytes is known */
#define MT_TL_HAVE_HEAP 0x4u  /* heap_bytes is known */

struct mt_tl_point {
	uint64_t t_ns;         /* CLOCK_REALTIME at the point */
	uint64_t span_ns;      /* the time it covers (since the previous point) */
	int64_t in_use_bytes;  /* the level at t_ns */
	int64_t in_use_max;    /* the highest level of the points merged into it */
	uint64_t alloc_bytes, alloc_calls; /* since the previous point */
	uint64_t free_bytes, free_calls;
	uint64_t rss_bytes;
	uint64_t pool_bytes;   /* bytes held by pools (when MT_TL_HAVE_POOLS) */
	uint64_t heap_bytes;   /* the allocator's heap size (when MT_TL_HAVE_HEAP) */
	uint32_t have;         /* MT_TL_HAVE_* */
	uint32_t merged;       /* raw points in this one (1 when not decimated) */
};

struct mt_timeline {
	uint64_t interval_ns;  /* the sampling period asked for */
	uint32_t n, cap;
	uint32_t decimations;  /* how many times the older half was merged */
	struct mt_tl_point *pts;
};

/* Appends PT (a new point later than the last), decimating first when the
 * timeline holds MT_TL_MAX points; 0 or -ENOMEM. */
int mt_timeline_append(struct mt_timeline *tl, const struct mt_tl_point *pt);
/* Halves the older half of TL in place (see above). */
void mt_timeline_decimate(struct mt_timeline *tl);
/* DST becomes a copy of SRC (DST's own points freed first); 0 or -ENOMEM. */
int mt_timeline_copy(struct mt_timeline *dst, const struct mt_timeline *src);
/* Frees TL's points (TL itself is the caller's); NULL is fine. */
void mt_timeline_clear(struct mt_timeline *tl);

#endif
