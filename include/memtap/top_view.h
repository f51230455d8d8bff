/*
 * The live view of `memtap top`: what a terminal shows about the processes
 * of a session while they run, computed from their successive snapshots
 * (struct mt_profile, as mt_session_snapshot() gives them).  The data side
 * (rates, ordering, the process picked) lives here, in
 * src/render/top_view.c; the layout into lines of a given width and height,
 * which the ncurses screen and the plain-text mode of a pipe share, in
 * src/render/top_screen.c.  Neither knows about terminals or sessions, so
 * both are tested without a target program.
 *
 *   struct mt_top_view *v = mt_top_view_new();
 *   every interval, per process:
 *     mt_top_view_update(v, pid, ppid, command, profile, now_ns);  (takes PROFILE)
 *     mt_top_view_end(v, pid);                                     (it is gone)
 *   mt_top_view_compute(v);               rows for the process picked (or all)
 *   mt_top_screen(v, &screen_opts, emit, arg);   lines to draw or print
 *   mt_top_view_free(v);
 *
 * Rates are differences between a process's last two snapshots divided by
 * the time between them (its profile's dump_ns): calls/s, bytes/s,
 * failures/s per function, in-use growth per process.  A process seen once
 * has no rates yet (shown as "-").  A counter that went down (ctl reset)
 * counts as a new start: its rate is its value since then.
 */
#ifndef MEMTAP_TOP_VIEW_H
#define MEMTAP_TOP_VIEW_H

#include <stddef.h>
#include <stdint.h>

#include "memtap/profile.h"

/* What the function rows are ordered by (largest first; NAME: a to z). */
enum mt_tv_sort {
	MT_TV_SORT_BYTES = 0, /* bytes/s */
	MT_TV_SORT_CALLS = 1, /* calls/s */
	MT_TV_SORT_FAILED = 2, /* failures/s, then calls/s */
	MT_TV_SORT_TOTAL = 3, /* calls since tracing began */
	MT_TV_SORT_NAME = 4,
	MT_TV_SORT_COUNT
};
/* "bytes", "calls", "failed", "total", "name"; mt_tv_sort_parse() the inverse
 * (0, or -EINVAL). */
const char *mt_tv_sort_name(enum mt_tv_sort s);
int mt_tv_sort_parse(const char *name, enum mt_tv_sort *out);

struct mt_tv_proc {
	int pid, ppid;
	char command[256];
	int ended;           /* gone: its last figures stay, greyed */
	int has_rate;        /* two snapshots seen */
	int64_t in_use;      /* bytes */
	uint64_t peak;
	double growth_s;     /* in-use bytes per second over the last interval */
	double calls_s, bytes_s; /* every function together (allocations' bytes) */
	uint64_t calls;      /* since tracing began */
	uint64_t sample_period; /* its sites' (0: no call sites) */
	uint32_t flags;      /* its profile's MT_PROFILE_* */
	/* The last two snapshots, owned. */
	struct mt_profile *cur, *prev;
};

struct mt_tv_func {
	char name[MT_NAME_MAX];
	uint32_t kind;               /* enum mt_kind */
	int has_rate;
	double calls_s, bytes_s, failed_s;
	uint64_t calls, bytes, failed; /* since tracing began */
};

#define MT_TV_SITES 10
#define MT_TV_WHERE 160
struct mt_tv_site {
	char where[MT_TV_WHERE]; /* its callers, innermost first: "f (file.c:12) < g < h" */
	char func[MT_NAME_MAX];  /* the allocation function it called */
	int pid;                 /* 0: the same callers in several processes, summed */
	uint64_t inuse_bytes, inuse_objects; /* estimates at the last snapshot */
	double alloc_bytes_s;    /* bytes allocated per second over the last interval */
	int has_rate;
};

struct mt_top_view {
	struct mt_tv_proc *procs; /* in the order they were first seen */
	size_t nprocs;
	int selected;             /* the pid picked, 0: every process */
	enum mt_tv_sort sort;
	int paused;               /* the caller's: updates are not shown */
	/* From mt_top_view_compute(), for the selection: */
	struct mt_tv_func *funcs;
	size_t nfuncs;
	struct mt_tv_site sites[MT_TV_SITES];
	size_t nsites;
	int stacks;               /* some selected process records call sites */
	int64_t in_use;           /* the selection's */
	uint64_t peak;
	double growth_s, calls_s, bytes_s;
	int has_rate;
	uint64_t last_ns;         /* the newest snapshot's dump_ns */
	double interval_s;        /* the refresh interval, for the header */
	/* Symbolizers of the processes' call sites (opaque). */
	struct mt_tv_syms *syms;
};

struct mt_top_view *mt_top_view_new(void);
void mt_top_view_free(struct mt_top_view *v);
/* A new snapshot P of process PID (the view keeps P; NULL: nothing new, the
 * process stays as it was).  COMMAND and PPID as the session knows them
 * (NULL: P's).  0 or -ENOMEM (P is freed then). */
int mt_top_view_update(struct mt_top_view *v, int pid, int ppid, const char *command,
			struct mt_profile *p);
/* PID is gone: its row stays with its last figures, no rates. */
void mt_top_view_end(struct mt_top_view *v, int pid);
/* Picks the next (DIR 1) or previous (-1) process, in row order, "every
 * process" between the last and the first. */
void mt_top_view_pick(struct mt_top_view *v, int dir);
/* The function rows, totals and top call sites of the selection, ordered.
 * 0 or -ENOMEM. */
int mt_top_view_compute(struct mt_top_view *v);
const struct mt_tv_proc *mt_top_view_proc(const struct mt_top_view *v, int pid);

/* The screen: lines of at most WIDTH characters for a terminal of HEIGHT
 * lines (0: as many as there are, the plain-text mode), each passed to EMIT
 * with what it is (for attributes). */
enum mt_ts_line {
	MT_TS_TITLE = 0,   /* the first line */
	MT_TS_TEXT = 1,
	MT_TS_HEADING = 2, /* a table's column names */
	MT_TS_PICKED = 3,  /* the row of the process picked */
	MT_TS_DIM = 4,     /* a process that ended, a row without rates */
	MT_TS_KEYS = 5,    /* the keys line at the bottom */
};
struct mt_screen_opts {
	unsigned width, height;
	int help;        /* the help text instead of the tables */
	const char *status; /* a message for the keys line (NULL: the keys) */
	const char *mode;   /* "attached", "watching", "running"... for the title */
	int exact;          /* numbers in full, not 12.3M (the plain-text mode) */
};
void mt_top_screen(const struct mt_top_view *v, const struct mt_screen_opts *o,
		    void (*emit)(void *arg, enum mt_ts_line kind, const char *text), void *arg);

/* "12.3M", "512", "1.5G": bytes in at most 6 characters (IEC units, the
 * suffix alone), for rows. */
void mt_tv_bytes(char *out, size_t len, double bytes);
/* "12.3k", "950", "1.2M": a count or rate in at most 6 characters. */
void mt_tv_count(char *out, size_t len, double n);

#endif
