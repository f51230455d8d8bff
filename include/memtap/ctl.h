/*
 * The control protocol between `memtap ctl` and the agent inside a traced
 * process.
 *
 * Transport: a Unix stream socket bound by the traced process at
 *   $MEMTAP_RUNDIR (default /tmp) / memtap-<euid> / <pid>.sock
 * where the directory is created 0700 and must be owned by that euid, and
 * the socket is 0600.  The agent also checks the peer's SO_PEERCRED uid: only
 * its own euid or root may talk to it.
 *
 * `attach OPTIONS` carries the options of `memtap attach` as space-separated
 * key=value words with '%', ' ' and control characters %-escaped:
 *   prefix=PATH stacks=0|1 sample=BYTES funcs=SPEC,... dump_every=BYTES
 *   interval_ms=MS dump_on_peak=0|1 inactive=0|1
 *
 * Messages: the client sends one line (at most MT_CTL_MAX_REQUEST bytes,
 * ending in '\n'): a command word and an optional argument.  The agent answers
 * with "ok\n" or "error: <reason>\n" followed by free text, then closes.
 */
#ifndef MEMTAP_CTL_H
#define MEMTAP_CTL_H

#include <stddef.h>
#include <sys/types.h>

#define MT_CTL_MAX_REQUEST 4096
#define MT_CTL_DIR_FMT "%s/memtap-%u"
#define MT_CTL_SOCK_FMT "%s/memtap-%u/%d.sock"

enum mt_ctl_cmd {
	MT_CTL_ACTIVATE,
	MT_CTL_DEACTIVATE,
	MT_CTL_DUMP,
	MT_CTL_STATS,
	MT_CTL_RESET,
	MT_CTL_STATUS,
	MT_CTL_ATTACH, /* sent by `memtap attach` after injecting the agent */
	MT_CTL_DETACH, /* `memtap detach`: restore the hooks, write a last dump */
	MT_CTL_SYNC,   /* sent by `ctl dump` before it reads the live file: fresh allocator
			  statistics there; `sync dump` also runs jemalloc's prof.dump */
	MT_CTL_LEAKS,  /* leaks: a leak check by reachability now (docs/LEAKS.md) */
};

struct mt_ctl_request {
	enum mt_ctl_cmd cmd;
	char arg[MT_CTL_MAX_REQUEST];
};

/* The directory under which control sockets live: $MEMTAP_RUNDIR or /tmp. */
const char *mt_ctl_rundir(void);

/* Parses one request line (LEN bytes, with or without the trailing '\n').
 * Returns 0, or -EINVAL with a reason in ERR: unknown command, missing or
 * unexpected argument, embedded NUL, over-long line. */
int mt_ctl_parse(const char *line, size_t len, struct mt_ctl_request *req,
		 char *err, size_t errlen);

/* %-escaping for the words of `attach OPTIONS`: escape writes at most
 * OUTLEN - 1 bytes and returns the length; unescape works in place and
 * returns 0 or -EINVAL. */
size_t mt_ctl_escape(const char *in, char *out, size_t outlen);
int mt_ctl_unescape(char *s);

/* Whether a peer with uid PEER may control a process running as OWN. */
static inline int mt_ctl_peer_allowed(uid_t peer, uid_t own)
{
	return peer == 0 || peer == own;
}

#endif
