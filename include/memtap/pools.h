/*
 * APR pools (--pools): pool lifetimes, as the agent records them in the live
 * file and as profiles, files and renderers carry them (docs/POOLS.md).
 *
 * A pool is a lifetime, not an address: from apr_pool_create_ex (or
 * apr_pool_create_unmanaged_ex) to apr_pool_destroy, with its tag
 * (apr_pool_tag), its parent, the address that created it, the calls and
 * bytes of apr_palloc / apr_pcalloc on it, its clears, and the bytes since
 * its last clear.  An address that APR hands out again (it recycles pool
 * memory) starts a new lifetime.
 *
 * The agent keeps, in the live file (struct mt_live_apr):
 * - a table of live pools (MT_APR_SLOTS), claimed at creation by
 *   compare-and-swap and released at destroy.  A pool created when no slot
 *   is free within MT_APR_PROBES of its hash is not tracked (counted in
 *   `dropped`); allocations on a pool the table does not know (created
 *   before an attach, or dropped) count in `untracked_calls/bytes`;
 * - aggregates of destroyed pools by tag (MT_APR_TAGS of them; tags past
 *   that are summed in the last entry, tag "(other tags)", and `tags_full`
 *   counts them), with a quantize of lifetimes (µs) and of bytes per pool;
 * - the last MT_APR_RING destroyed pools in full, so that reports can list
 *   individual finished lifetimes too.
 * Its memory is fixed (about 1.1 MiB of the live file, pages made as used).
 *
 * Profiles carry the same as struct mt_apr (mt_profile.apr, NULL when
 * --pools was off); files carry it as records MT_TAG_APR_POOL (one pool)
 * and MT_TAG_APR_TAG (one tag aggregate and, in the first, the counters).
 */
#ifndef MEMTAP_POOLS_H
#define MEMTAP_POOLS_H

#include <stddef.h>
#include <stdint.h>

#include "memtap/profile.h"

#define MT_APR_TAG_MAX 32   /* bytes of a tag kept, NUL included */
#define MT_APR_SLOTS 8192   /* live pools; a power of two */
#define MT_APR_PROBES 64
#define MT_APR_TAGS 64      /* tag aggregates; the last one sums the rest */
#define MT_APR_RING 256     /* destroyed pools kept in full */

/* ---- the live file (agent <-> readers) ---- */

/* One pool.  key: the pool's address; 0 empty, 1 a freed slot (probes go
 * on past it).  The agent writes every field before it publishes the key
 * (release), and a reader re-reads the key after the fields: a slot that
 * changed meanwhile is skipped. */
#define MT_APR_EMPTY 0
#define MT_APR_FREED 1
struct mt_live_apr_slot {
	uint64_t key;
	uint64_t parent;       /* the parent pool's address, 0: none (APR's global pool) */
	uint64_t created_ns;   /* CLOCK_REALTIME */
	uint64_t destroyed_ns; /* 0: live */
	uint64_t mark_ns;      /* CLOCK_REALTIME_COARSE at creation or at the last clear */
	uint64_t caller;       /* return address of the call that created it */
	uint64_t calls, bytes; /* apr_palloc + apr_pcalloc over its life */
	uint64_t cur_bytes;    /* since its last clear */
	uint64_t clears;
	uint32_t marks;        /* bit k: it allocated (since mark_ns) at an age in [2^k, 2^(k+1)) ms */
	uint32_t flags;        /* MT_APR_F_* */
	/* The tree, as slot index + 1 (0: none), for the agent: a destroy or
	 * clear takes the descendants with it (APR destroys them by calls
	 * inside libapr that no GOT hook sees). */
	uint32_t parent_slot, first_child, next_sibling;
	uint32_t tag_ix; /* its tag's aggregate, index + 1 (0: not looked up yet) */
	char tag[MT_APR_TAG_MAX];
};

#define MT_APR_F_UNMANAGED 0x1u /* apr_pool_create_unmanaged_ex */

struct mt_live_apr_tag {
	char tag[MT_APR_TAG_MAX]; /* "" unused entry; "-" untagged pools */
	uint64_t pools, calls, bytes, clears;
	uint64_t life_us;                  /* summed lifetimes */
	uint64_t life_hist[MT_HIST_BUCKETS]; /* lifetimes, µs */
	uint64_t bytes_hist[MT_HIST_BUCKETS]; /* bytes allocated per pool over its life */
};

struct mt_live_apr {
	uint32_t slots, ntags, nring, hooked; /* nring: MT_APR_RING; hooked: libapr's functions were found */
	uint64_t created, destroyed, dropped, untracked_calls, untracked_bytes, tags_full;
	uint64_t ring_next; /* destroyed pools written to the ring so far */
	uint32_t lock, pad;
	struct mt_live_apr_tag tags[MT_APR_TAGS];
	struct mt_live_apr_slot ring[MT_APR_RING];
	struct mt_live_apr_slot slot[MT_APR_SLOTS];
};

/* ---- the model ---- */

/* One pool lifetime (live: destroyed_ns == 0). */
struct mt_apr_pool {
	uint64_t pool, parent, created_ns, destroyed_ns, mark_ns, caller;
	uint64_t calls, bytes, cur_bytes, clears;
	uint32_t marks, flags;
	char tag[MT_APR_TAG_MAX];
};

/* Destroyed pools of one tag. */
struct mt_apr_tag {
	char tag[MT_APR_TAG_MAX];
	uint64_t pools, calls, bytes, clears, life_us;
	uint64_t life_hist[MT_HIST_BUCKETS];
	uint64_t bytes_hist[MT_HIST_BUCKETS];
};

struct mt_apr {
	uint32_t hooked;     /* the process had libapr's pool functions */
	uint32_t npools, ntags;
	struct mt_apr_pool *pools; /* live pools, then recently destroyed ones */
	struct mt_apr_tag *tags;
	uint64_t created, destroyed, dropped, untracked_calls, untracked_bytes, tags_full;
};

struct mt_apr *mt_apr_new(void);
void mt_apr_free(struct mt_apr *a);
/* Appends an empty pool or tag; NULL on ENOMEM. */
struct mt_apr_pool *mt_apr_add_pool(struct mt_apr *a);
struct mt_apr_tag *mt_apr_add_tag(struct mt_apr *a);
/* The tag aggregate named TAG, added when absent; NULL on ENOMEM. */
struct mt_apr_tag *mt_apr_tag_of(struct mt_apr *a, const char *tag);
/* Adds SRC into DST (pools appended, tags summed by name); 0 or -ENOMEM. */
int mt_apr_merge(struct mt_apr *dst, const struct mt_apr *src);

/* Whether live pool P "only grows" at time NOW_NS (docs/POOLS.md): it has
 * lived (since its last clear) for at least MT_APR_GROW_MIN_MS, allocated
 * in at least MT_APR_GROW_SPANS of the doubling age spans that time
 * covers, and in one of the last two of them. */
#define MT_APR_GROW_MIN_MS 1000
#define MT_APR_GROW_SPANS 4
int mt_apr_growing(const struct mt_apr_pool *p, uint64_t now_ns);
/* The age span (bit of marks) of an allocation AGE_MS after mark_ns. */
static inline unsigned mt_apr_span(uint64_t age_ms)
{
	unsigned s = 63 - (unsigned)__builtin_clzll(age_ms | 1);
	return s > 31 ? 31 : s;
}

/* Reads the pools of the live file V (whose header says where they are)
 * into a new struct mt_apr; *OUT = NULL when the process has none (no
 * --pools).  0 or -ENOMEM / -EINVAL (the table is not inside V). */
struct mt_live_view;
int mt_live_apr_read(const struct mt_live_view *v, struct mt_apr **out);

/* The file records (format.h: MT_TAG_APR_POOL, MT_TAG_APR_TAG). */
struct mt_buf;
int mt_apr_encode(const struct mt_apr *a, struct mt_buf *b);
/* Decodes one record of TAG with payload DATA[LEN] into P (creating
 * P->apr); 0, -EINVAL with a message in ERR, or -ENOMEM. */
int mt_apr_decode(uint32_t tag, const uint8_t *data, size_t len, struct mt_profile *p, char *err,
		  size_t errlen);

#endif
