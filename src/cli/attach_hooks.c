/*
 * attach -f: the entry patches the agent prepared (at `ctl attach`) are
 * written, and at the end put back, with every thread of the target stopped
 * by the injector: no thread can be fetching the bytes while they change.
 * Before writing, the agent is given where each thread was stopped, and
 * refuses (-EBUSY) if one is inside the bytes it would replace (it would
 * resume in the middle of our jump); we let the process run a moment and
 * try again.  docs/SAFETY.md says what this covers and what it cannot.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "cli.h"
#include "memtap/inject.h"

#define PCS_MAX 4096
#define TRIES 50

/* One stop of PID: calls the agent's FN with the threads' places (PCS) or
 * nothing; *RET is its result. */
static int agent_call(pid_t pid, const char *agent, const char *fn, int with_pcs, long *ret, char *err,
		      size_t errlen)
{
	struct mt_inject_opts o = {.grace_ms = -1}; /* the others never run while we patch */
	struct mt_inject *in;
	static uint64_t pcs[PCS_MAX];
	uint64_t addr, args[2] = {0, 0}, r = 0;
	int e = mt_inject_attach(pid, &o, &in, err, errlen);
	if (e)
		return e;
	if ((e = mt_inject_resolve(in, agent, fn, &addr, err, errlen)))
		goto out;
	if (with_pcs) {
		int n = mt_inject_thread_pcs(in, pcs, PCS_MAX);
		if (n < 0) {
			snprintf(err, errlen, "cannot tell where every thread of %d stopped", (int)pid);
			e = n;
			goto out;
		}
		if ((e = mt_inject_push(in, pcs, (size_t)n * sizeof(pcs[0]), &args[0], err, errlen)))
			goto out;
		args[1] = (uint64_t)n;
	}
	if ((e = mt_inject_call(in, addr, args, with_pcs ? 2 : 0, &r, err, errlen)))
		goto out;
	*ret = (long)r;
out:;
	char derr[512];
	int d = mt_inject_detach(in, derr, sizeof(derr));
	if (!e && d) {
		snprintf(err, errlen, "%s", derr);
		e = d;
	}
	return e;
}

int mt_attach_patch(pid_t pid, const char *agent, char *err, size_t errlen)
{
	for (int i = 0; i < TRIES; i++) {
		long r = 0;
		int e = agent_call(pid, agent, "memtap_agent_patch", 1, &r, err, errlen);
		if (e)
			return e;
		if (r >= 0) {
			fprintf(stderr, "memtap: -f: %ld function%s hooked at %s entry (%d stop%s of every thread)\n", r,
				r == 1 ? "" : "s", r == 1 ? "its" : "their", i + 1, i ? "s" : "");
			return 0;
		}
		if (r != -EBUSY) {
			snprintf(err, errlen, "the agent could not patch the -f entries: %s", strerror((int)-r));
			return (int)r;
		}
		struct timespec nap = {0, 2 * 1000 * 1000};
		nanosleep(&nap, NULL);
	}
	snprintf(err, errlen, "a thread of %d was inside the first bytes of a -f function at each of %d stops; "
		 "try again", (int)pid, TRIES);
	return -EBUSY;
}

int mt_attach_unpatch(pid_t pid, const char *agent, char *err, size_t errlen)
{
	long r = -EBUSY;
	int e = 0;
	for (int i = 0; i < TRIES && !e && r == -EBUSY; i++) {
		if (i) {
			struct timespec nap = {0, 2 * 1000 * 1000};
			nanosleep(&nap, NULL);
		}
		e = agent_call(pid, agent, "memtap_agent_unpatch", 0, &r, err, errlen);
	}
	if (!e && r < 0) {
		snprintf(err, errlen, "the agent could not restore the -f entries: %s", strerror((int)-r));
		e = (int)r;
	}
	return e;
}
