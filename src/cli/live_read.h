/*
 * Reading traced processes' live counter files from the memtap command
 * (include/memtap/live.h is the format; src/core/live.c its reader).
 *
 *   struct mt_live_copy c;
 *   mt_live_copy_read(path, &c, err, len);     a private copy, checked
 *   mt_live_copy_profile(&c, &profile, &flags); a profile of its own
 *   mt_live_copy_free(&c);
 *
 * Files are found in the per-uid directories under mt_live_rundir(), named
 * <pid>-<start_ns>.mtl; every function here treats their contents as
 * untrusted input.
 */
#ifndef MEMTAP_CLI_LIVE_READ_H
#define MEMTAP_CLI_LIVE_READ_H

#include <stddef.h>
#include <stdint.h>

#include "memtap/live.h"
#include "memtap/profile.h"

struct mt_live_copy {
	uint8_t *data;
	struct mt_live_view view;
	const struct mt_live_hdr *hdr; /* data, checked */
};

/* Copies and checks the file at PATH: 0, or -errno with ERR naming it. */
int mt_live_copy_read(const char *path, struct mt_live_copy *c, char *err, size_t errlen);
/* Only the header (cheap: for polling). */
int mt_live_read_header(const char *path, struct mt_live_hdr *h, char *err, size_t errlen);
void mt_live_copy_free(struct mt_live_copy *c);
/* The snapshot of C as a malloc'ed profile (mt_profile_free); FLAGS gets
 * mt_live_snapshot()'s MT_LIVE_* flags (the profile is marked
 * MT_PROFILE_SUSPECT when any is set).  0 or -ENOMEM. */
int mt_live_copy_profile(const struct mt_live_copy *c, struct mt_profile **out, unsigned *flags);

/* The per-uid directories (malloc'ed paths) under mt_live_rundir(). */
int mt_live_dirs(char ***out, size_t *n);
void mt_live_dirs_free(char **v, size_t n);
/* "<pid>-<start_ns>.mtl": 0, or -EINVAL for another name. */
int mt_live_name_parse(const char *name, int *pid, uint64_t *start_ns);
/* The newest live file of PID: 0, or -ENOENT with ERR saying so. */
int mt_live_find(int pid, char *path, size_t pathlen, char *err, size_t errlen);
/* Removes the live files that nobody will read (their process is gone and
 * so is their session) and the control sockets of processes that are gone;
 * returns how many files went. */
int mt_live_sweep(void);

#endif
