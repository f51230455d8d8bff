/*
 * Small facts about processes from /proc, and the private per-uid
 * directories memtap keeps its sockets and live files in.  Shared by the
 * agent (no allocation: open/read only) and the CLI.
 */
#ifndef MEMTAP_PROC_H
#define MEMTAP_PROC_H

#include <stddef.h>
#include <stdint.h>

/* /proc/PID/stat (TID > 0: /proc/PID/task/TID/stat) into BUF; *FIELDS
 * points at field 3 (the state), after the command, which may hold any
 * byte.  0, or -errno (gone). */
int mt_proc_stat(int pid, int tid, char *buf, size_t len, const char **fields);
/* Field N (3 and up) of what mt_proc_stat() gave, or NULL. */
const char *mt_stat_field(const char *fields, int n);
/* The starttime of process PID (field 22: clock ticks since boot), 0 when
 * it is gone; with STATE, its state letter ('Z' for a zombie). */
uint64_t mt_proc_start(int pid, char *state);
/* PID's command line (0: this process), argv joined by spaces, on one line
 * (control characters made spaces); "" when unreadable. */
void mt_proc_cmdline(int pid, char *dst, size_t len);
/* PID's peak resident set size in bytes (VmHWM of /proc/PID/status), 0
 * when unknown (gone, a zombie, a kernel thread). */
uint64_t mt_proc_hwm(int pid);
/* BASE/memtap-<euid>, made 0700 if absent, into DIR; refused (-EPERM) when
 * somebody else prepared it (another owner, a mode that lets others in,
 * not a directory).  0 or -errno. */
int mt_private_dir(const char *base, char *dir, size_t len);

#endif
