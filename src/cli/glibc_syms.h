/*
 * The memtap command's side of --glibc and of allocator statistics read
 * from outside (src/cli/glibc_syms.c): glibc's variables of a process from
 * Debian's libc6-dbg, and what the kernel says of a process with no agent.
 */
#ifndef MEMTAP_CLI_GLIBC_SYMS_H
#define MEMTAP_CLI_GLIBC_SYMS_H

#include <stddef.h>
#include <sys/types.h>

#include "memtap/glibc.h"

/* Finds glibc's variables in PID (0: memtap's own libc, which `memtap run`
 * gives its command) into S, and the agent's glibc_syms option into OPT.
 * 0, or -errno with the reason (what to install) in WHY. */
int mt_glibc_syms_lookup(pid_t pid, struct mt_glibc_syms *s, char *opt, size_t optlen, char *why, size_t whylen);

/* /proc/PID/smaps_rollup and status figures as statistics (allocator
 * "none"): all there is to say of a process without an agent.  0 or -errno
 * with WHY. */
int mt_outside_stats(pid_t pid, struct mt_alloc_stats *s, char *why, size_t whylen);

/* --glibc with the eBPF backend (nothing loaded in the process): TICK takes
 * a lock-wait sample of PID (and every 10th time a full look) from outside;
 * FILL gives profile P (which has the heap events of the BPF side) its
 * glibc section and the kernel's statistics.  Root, or the same user. */
struct mt_profile;
void mt_glibc_outside_tick(pid_t pid);
void mt_glibc_outside_fill(pid_t pid, int exited, struct mt_profile *p);

#endif
