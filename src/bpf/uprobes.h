/*
 * Uprobes scoped to one memtap session's processes, children included
 * (loader.c's mechanism; docs/EBPF.md, "Which processes are probed").
 *
 * Each probe is a tracefs uprobe event of the session's own group,
 * memtap_<memtap's pid>, opened as a perf tracepoint event on every thread of
 * a traced process with `inherit`: the kernel then plants the breakpoints in
 * that process's memory only, and every thread or child it creates inherits
 * the events, hence the breakpoints, from its first instruction (fork keeps
 * them, exec re-plants them when the new program maps the object).  A BPF
 * program attached to a tracefs event runs for every hit of the event,
 * whichever perf event let the hit through, so each program is attached to
 * exactly one perf event; the others exist for the filter and for
 * inheritance.
 *
 *   struct mt_uprobes *u;
 *   mt_uprobes_new(&u, follow, err, len);              tracefs, stale groups
 *   mt_uprobes_add(u, path, off, ret, prog, cookie, ...);   one per probe
 *   mt_uprobes_cover(u, pid, ...);                     every thread of pid
 *   ...
 *   mt_uprobes_free(u);                                closes, removes the events
 *
 * Not the perf uprobe PMU with `inherit` (what libbpf's uprobe attach would
 * give): the kernel re-creates an inherited PMU event in the forking task's
 * context, checking that task's capabilities and copying the path from a
 * pointer into memtap's memory, so the traced program's fork() fails
 * (EACCES for an unprivileged target, measured on 6.18).
 */
#ifndef MEMTAP_BPF_UPROBES_H
#define MEMTAP_BPF_UPROBES_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

struct bpf_program;
struct mt_uprobes;

/* Finds tracefs (mounting it in a mount namespace of memtap's own when it is
 * not mounted: nothing changes for other processes), removes the uprobe
 * groups that sessions killed before their cleanup left behind.  FOLLOW: the
 * events are inherited by children too (else by new threads only).  The
 * caller must be single-threaded (unshare).  0 or -errno with ERR. */
int mt_uprobes_new(struct mt_uprobes **out, int follow, char *err, size_t errlen);
/* A probe on PATH at file offset OFF (RET: a return probe) running PROG with
 * COOKIE.  0 or -errno with ERR. */
int mt_uprobes_add(struct mt_uprobes *u, const char *path, uint64_t off, int ret, struct bpf_program *prog,
		   uint64_t cookie, char *err, size_t errlen);
/* Opens every probe on every thread of TGID, listing its threads again
 * until no new one appears (a thread made by a covered thread inherits).
 * Threads covered before are skipped.  0, -ESRCH (gone), or -errno with ERR. */
int mt_uprobes_cover(struct mt_uprobes *u, pid_t tgid, char *err, size_t errlen);
/* Whether TGID has been covered. */
int mt_uprobes_covered(const struct mt_uprobes *u, pid_t tgid);
/* Perf events opened, probes, threads covered: for -v and the benchmarks. */
void mt_uprobes_counts(const struct mt_uprobes *u, size_t *events, size_t *probes, size_t *threads);
/* Closes every perf event and removes the session's tracefs events.  NULL is
 * fine. */
void mt_uprobes_free(struct mt_uprobes *u);

#endif
