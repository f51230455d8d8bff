/*
 * Fleet scale (docs/METRICS.md): what the memtap command serves to the
 * monitoring systems operators already run, from its session, while it
 * traces.  The traced processes open no port and run no code for it.
 *
 *   --prometheus=ADDR:PORT    /metrics (Prometheus text 0.0.4, or
 *                             OpenMetrics 1.0 when asked), /debug/pprof/heap
 *                             and /debug/pprof/allocs (gzipped pprof, as Go's
 *                             net/http/pprof serves them)
 *   --pprof-dir=DIR           a pprof heap profile of every process every
 *                             --interval, written atomically, the newest
 *                             --pprof-keep=N kept
 *
 *   mt_cli_parse() fills struct mt_fleet_opts (mt_fleet_opt, mt_fleet_check);
 *   mt_fleet_open(&opts, &f);      listens (before the target starts), or NULL
 *   mt_fleet_attach(f, sess);      serves from the session's wait from now on;
 *                                  the session owns F (mt_session_free frees it)
 *   mt_fleet_free(f);              an F that was never attached
 *
 * Metrics are per command (and function), summed over the session's
 * processes; a process's counts are kept when it ends (and across a
 * counter reset), so counters never go down.
 */
#ifndef MEMTAP_CLI_FLEET_H
#define MEMTAP_CLI_FLEET_H

#include <stdint.h>

struct mt_fleet_opts {
	const char *listen;    /* --prometheus=ADDR:PORT, or NULL */
	int allow_remote;      /* --prometheus-allow-remote */
	int per_pid;           /* --prometheus-per-pid */
	const char *pprof_dir; /* --pprof-dir=DIR, or NULL */
	unsigned keep;         /* --pprof-keep=N (0: the default) */
};

#define MT_FLEET_KEEP_DEFAULT 100

struct mt_cli_opts;
struct mt_session;
struct mt_fleet;

/* One of the fleet's options (ID: enum mt_opt_id) with value V, for
 * command CMD's messages: 0, or -1 after saying what was wrong. */
int mt_fleet_opt(struct mt_fleet_opts *f, int id, const char *v, const char *cmd);
/* The checks across options once all are parsed: 0 or -1 (said why). */
int mt_fleet_check(const struct mt_cli_opts *o);
/* Opens what O asks for (*OUT stays NULL when nothing is): 0, or -1
 * after saying why (exit 2). */
int mt_fleet_open(const struct mt_cli_opts *o, struct mt_fleet **out);
/* Serves F from SESS's wait (the session's processes), which owns F from
 * now on, also when this fails (said why); F NULL is fine. */
void mt_fleet_attach(struct mt_fleet *f, struct mt_session *sess);
void mt_fleet_free(struct mt_fleet *f);

#endif
