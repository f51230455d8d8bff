/*
 * The profile file: how a struct mt_profile travels from the agent to the
 * CLI.  docs/FORMAT.md is the normative description; this header is its code.
 *
 * Layout (all integers little-endian, fixed width):
 *   header   8-byte magic "\x89MTPROF\n", u32 version, u32 header size (16)
 *   records  u32 tag, u32 payload length, payload; unknown tags are skipped
 *   END      the last record: u32 CRC-32 (zlib) of every byte before it
 * A file without a valid END record is truncated or corrupt and is refused.
 *
 * Writers encode into a struct mt_buf whose storage comes from a caller
 * supplied grow function, so the agent can encode into mmap-backed memory
 * without calling the allocator it traces.
 */
#ifndef MEMTAP_FORMAT_H
#define MEMTAP_FORMAT_H

#include <stddef.h>
#include <stdint.h>

#include "memtap/profile.h"

#define MT_FILE_MAGIC "\x89MTPROF\n"
#define MT_FILE_MAGIC_LEN 8
#define MT_FILE_VERSION 1
#define MT_FILE_HEADER_LEN 16
#define MT_FILE_EXT "mtp"

enum mt_tag {
	MT_TAG_PROCESS = 1,
	MT_TAG_FUNCTION = 2,
	MT_TAG_TOTALS = 3,
	MT_TAG_SAMPLING = 4, /* sample_period, unknown_frees (with --stacks) */
	MT_TAG_SITE = 5,     /* one call site */
	MT_TAG_MAPPING = 6,  /* one file-backed mapping */
	MT_TAG_POOL = 7,     /* one pool of a -f FUNC:pool=argM function */
	MT_TAG_ENDING = 8,   /* how the process ended (final profiles) */
	MT_TAG_APR_POOL = 9, /* one APR pool lifetime (--pools; memtap/pools.h) */
	MT_TAG_APR_TAG = 10, /* destroyed APR pools of one tag, and the pool counters */
	MT_TAG_GLIBC = 11,   /* glibc's internals (--glibc): include/memtap/glibc.h */
	MT_TAG_STATS = 12,   /* the allocator's own statistics */
	MT_TAG_LEAKS = 14,   /* leaks: the last leak check by reachability, its sites */
	MT_TAG_RUSAGE = 15,  /* analyses: peak RSS (docs/FORMAT.md, "Analyses") */
	MT_TAG_SITE_TEMP = 16, /* analyses: temporary allocations of every site, in site order */
	MT_TAG_TIMELINE = 13, /* the points of --interval (part timeline) */
	MT_TAG_END = 0x454e4421, /* "!DNE" read as a little-endian u32 */
};

struct mt_buf {
	uint8_t *data;
	size_t len, cap;
	int err; /* sticky: -ENOMEM once growing failed */
	/* Returns storage of at least NEWCAP bytes holding the first LEN bytes
	 * of OLD, or NULL. */
	void *(*grow)(void *old, size_t len, size_t newcap);
};

/* The record writer, for record writers outside file.c (memtap/pools.h):
 * appends N bytes at P to B (B->err set on failure); a little-endian u32 or
 * u64; starts a record of TAG (returns where its length goes) and ends it
 * (writes the length). */
void mt_buf_put(struct mt_buf *b, const void *p, size_t n);
void mt_buf_u32(struct mt_buf *b, uint32_t v);
void mt_buf_u64(struct mt_buf *b, uint64_t v);
size_t mt_rec_begin(struct mt_buf *b, uint32_t tag);
void mt_rec_end(struct mt_buf *b, size_t at);

/* A grow function backed by realloc(), for the CLI and tests. */
void *mt_buf_grow_libc(void *old, size_t len, size_t newcap);

/* Appends the encoded profile to B; 0 or -ENOMEM. */
int mt_file_encode(const struct mt_profile *p, struct mt_buf *b);

/* Writes LEN bytes at DATA to PATH whole or not at all: into PATH.tmpPID
 * (created with O_EXCL | O_NOFOLLOW and MODE; a stale one from an earlier
 * process with this pid is removed first), then renamed over PATH.  On
 * failure the temporary file is removed and PATH is untouched.  0 or a
 * negative errno.  Allocates nothing (the agent writes its dumps with it). */
int mt_file_write_whole(const char *path, const uint8_t *data, size_t len, unsigned mode);

/* Writes LEN bytes at DATA as PREFIX.<PID>.<seq>.mtp, whole (a temporary
 * file, then link(2)), with the first sequence number from *SEQ on whose
 * file does not exist yet: two writers never replace each other's profile.
 * *SEQ becomes the number used; the path goes to OUT.  0 or -errno. */
int mt_file_write_next(const char *prefix, uint32_t pid, uint32_t *seq, const uint8_t *data, size_t len,
		       unsigned mode, char *out, size_t outlen);

/* Decodes LEN bytes at DATA into a new profile.  On error returns a negative
 * errno (-EINVAL corrupt, -EPROTO unsupported version, -ENOMEM), and writes a
 * message naming the byte offset to ERR. */
int mt_file_decode(const uint8_t *data, size_t len, struct mt_profile **out,
		   char *err, size_t errlen);

/* Reads and decodes PATH; the error message names the file. */
int mt_file_read(const char *path, struct mt_profile **out, char *err, size_t errlen);

#endif
