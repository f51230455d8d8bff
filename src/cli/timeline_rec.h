/*
 * The session's timeline recorder (--interval): an observer of the session
 * (session.h) that turns every profile the session writes of a running
 * member (the periodic ones, ctl dumps, --dump-every) into one point of that
 * member's timeline (include/memtap/timeline.h), adds the process's RSS
 * from /proc/PID/statm, and puts the whole series, ending with the final
 * profile's own point, into the member's final profile (exit, or detach).
 * A child's profiles name their parent's start (parent_start_ns).
 */
#ifndef MEMTAP_CLI_TIMELINE_REC_H
#define MEMTAP_CLI_TIMELINE_REC_H

#include <stdint.h>

struct mt_session;
struct mt_tl_rec;

/* Registers the recorder on S; 0 or -errno (-ENOSPC: no observer slot). */
int mt_tl_rec_new(struct mt_session *s, uint64_t interval_ms, struct mt_tl_rec **out);
void mt_tl_rec_free(struct mt_tl_rec *r);

#endif
