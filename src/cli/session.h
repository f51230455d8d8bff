/*
 * A memtap session: the processes one memtap command traces, read from
 * outside through their live counter files (include/memtap/live.h), and the
 * profiles the command writes for them, with the user's permissions, where
 * the user asked.
 *
 *   struct mt_session *s;
 *   mt_session_new(&opts, &s);          prefix, run_id, --interval
 *   ... start the program (run) or attach (inject) with mt_session_words()
 *   while (...) mt_session_poll(s);     finds members (children, exec'd
 *                                       images), writes periodic dumps and the
 *                                       final profile of each member that ends
 *   mt_session_set_status(s, pid, st);  a member's wait status, when known
 *   mt_session_finish(s, detach);       final profiles of everyone left
 *   mt_session_written(s, &paths, &n);  what it wrote, for the summary
 *   mt_session_free(s);
 *
 * A member that ends in any way (exit, _exit, abort, SIGSEGV, SIGKILL) gets
 * its final profile from what it left in its file, with how it ended.  The
 * same interface serves `run` (the agent preloaded) and `attach --via=inject`
 * (the agent injected); `memtap top`, timelines and the exporter read
 * members' live snapshots through mt_session_snapshot().
 */
#ifndef MEMTAP_CLI_SESSION_H
#define MEMTAP_CLI_SESSION_H

#include <signal.h>
#include <stddef.h>
#include <stdint.h>

#include "memtap/profile.h"

struct mt_session_opts {
	const char *prefix;   /* absolute; profiles are PREFIX.<pid>.<seq>.mtp */
	uint64_t run_id;      /* identifies the session's processes (their files carry it) */
	uint64_t interval_ms; /* --interval: a profile of every member that often (0: never) */
	int stacks;           /* members record call sites: keep their mappings */
	int watch;            /* only watches another session's members (memtap top -p
			         on a process traced already): writes no profile, takes
			         no spool, finds the members of run RUN_ID */
};

enum mt_member_state {
	MT_MEMBER_RUNNING = 0,
	MT_MEMBER_ENDED = 1,    /* its final profile is written (or failed: error says why) */
	MT_MEMBER_DETACHED = 2, /* attach mode: the session's end for this member */
};

struct mt_member {
	int pid, ppid;
	uint32_t state;       /* enum mt_member_state */
	uint32_t end;         /* enum mt_end, once ended */
	int32_t end_code;
	int wait_status;      /* from waitpid, when have_status */
	int have_status;
	int detaching;        /* this session detaches it (writes its last profile) */
	uint64_t proc_start;
	uint64_t image_ns;    /* the image's start (file name) */
	uint32_t seq;         /* next profile number */
	char path[4096];      /* its live file */
	char command[256];
	char final_path[4096]; /* its final profile, once written */
	char error[512];       /* why the final profile is missing or flagged */
	struct mt_mapping *maps; /* last mappings seen (with stacks) */
	uint32_t nmaps;
	uint64_t maps_gen, maps_ns;
	uint64_t cmd_ns;      /* when its command line was read last */
	int observed_end;     /* observers were told it ended */
};

struct mt_session;

int mt_session_new(const struct mt_session_opts *o, struct mt_session **out);
void mt_session_free(struct mt_session *s);
/* "PID:STARTTIME" of this memtap command, the agent's `session` option. */
void mt_session_self(char *out, size_t outlen);
/* Finds new members, writes what is due (periodic dumps, requests from
 * --dump-every and --dump-on-peak) and the final profiles of members that
 * ended.  Returns how many members are running. */
size_t mt_session_poll(struct mt_session *s);
/* The wait status of member PID (memtap is its parent). */
void mt_session_set_status(struct mt_session *s, int pid, int status);
/* The eBPF backend as the session's collector (instead of live files):
 * members are the processes the BPF side traces; profiles come from its
 * maps.  E stays the caller's. */
struct mt_ebpf;
void mt_session_use_ebpf(struct mt_session *s, struct mt_ebpf *e);
/* PID is the process this command started: its live files are the
 * session's whatever they say. */
void mt_session_set_root(struct mt_session *s, int pid);
/* Why the root has no member (no readable live file), or NULL. */
const char *mt_session_root_error(struct mt_session *s);
/* This command detaches member PID itself: its last profile is this
 * session's to write (mt_session_finish), not another memtap's. */
void mt_session_mark_detach(struct mt_session *s, int pid);
/* Adds the live file of PID now, without waiting for a scan (attach). */
int mt_session_adopt(struct mt_session *s, int pid, char *err, size_t errlen);
/* A live snapshot of member PID as a malloc'ed profile. 0 or -errno. */
int mt_session_snapshot(struct mt_session *s, int pid, struct mt_profile **out, char *err, size_t errlen);
/* Writes a profile of a running member now (REASON: enum mt_reason); its
 * path into OUT. 0 or -errno. */
int mt_session_dump(struct mt_session *s, int pid, uint32_t reason, char *out, size_t outlen);
/* The end: members still running get a last profile (reason DETACH when
 * DETACHING, else they are left to write their own at exit); members that
 * ended get their final one.  Returns how many profiles could not be written. */
int mt_session_finish(struct mt_session *s, int detaching);
/*
 * Observers: the parts of the memtap command that follow the session's
 * members while they run (timelines, `memtap top`, the metrics endpoint).
 * TICK runs from mt_session_poll() at most every EVERY_MS (0: every poll);
 * WROTE runs for every profile the session writes (periodic, final,
 * detach: P->reason and P->end say which) before it is freed; ENDED runs
 * once per member when the session is done with it (its final profile, if
 * any, went through WROTE first); DONE runs from mt_session_free(), before
 * anything is freed: the observer lets go (unwatches its descriptors, frees
 * itself; the session owns it from mt_session_observe() on).  Any callback
 * may be NULL.  At most MT_SESSION_OBSERVERS; -ENOSPC beyond.
 */
#define MT_SESSION_OBSERVERS 8
struct mt_session_observer {
	void (*tick)(struct mt_session *s, void *arg);
	void (*wrote)(struct mt_session *s, const struct mt_member *m, const struct mt_profile *p,
		      const char *path, void *arg);
	void (*ended)(struct mt_session *s, const struct mt_member *m, void *arg);
	void (*done)(struct mt_session *s, void *arg);
	void *arg;
	uint64_t every_ms;
	/* Runs before every profile the session writes is encoded: may add
	 * to P what the observer keeps (the timeline of a final profile). */
	void (*annotate)(struct mt_session *s, const struct mt_member *m, struct mt_profile *p, void *arg);
};
int mt_session_observe(struct mt_session *s, const struct mt_session_observer *o);

/* Descriptors the session's wait wakes up for (the endpoint's sockets):
 * READY runs from mt_session_wait() with the poll revents.  At most
 * MT_SESSION_FDS; -ENOSPC beyond.  Unwatch before closing FD. */
#define MT_SESSION_FDS 64
int mt_session_watch_fd(struct mt_session *s, int fd, short events,
			void (*ready)(struct mt_session *s, int fd, short revents, void *arg), void *arg);
void mt_session_unwatch_fd(struct mt_session *s, int fd);
/* The one wait of every session loop (run, attach by inject or eBPF):
 * sleeps up to MS milliseconds, less when a watched descriptor is ready
 * (its callback runs) or a signal arrives.  MASK is the signal mask during
 * the wait (ppoll's), NULL for the current one.  Returns after at most MS. */
void mt_session_wait(struct mt_session *s, unsigned ms, const sigset_t *mask);

/* Asks the loop that runs the session to end it the way a signal would
 * (run: the program gets SIGINT; attach: detach); for `memtap top`'s q.
 * mt_session_stopping() says whether it was asked. */
void mt_session_stop(struct mt_session *s);
int mt_session_stopping(const struct mt_session *s);

/* Members, in the order they were found (the root first). */
const struct mt_member *mt_session_members(const struct mt_session *s, size_t *n);
/* The profiles this session wrote. */
void mt_session_written(const struct mt_session *s, char *const **paths, size_t *n);

#endif
