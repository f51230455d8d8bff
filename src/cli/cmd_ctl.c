/* memtap ctl PID COMMAND: talk to the agent inside a traced process. */
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "help.h"
#include "live_read.h"
#include "memtap/ctl.h"
#include "memtap/format.h"
#include "glibc_syms.h"
#include "memtap/render.h"
#include "session.h"

static int ctl_dump(int pid, const struct mt_live_hdr *h, const char *path)
{
	char prefix[PATH_MAX], err[1024], out[PATH_MAX];
	snprintf(prefix, sizeof(prefix), "%.*s", (int)sizeof(h->prefix), h->prefix);
	struct mt_session *sess;
	struct mt_session_opts so = {.prefix = prefix, .run_id = h->run_id, .stacks = h->stacks != 0};
	if (mt_session_new(&so, &sess))
		return mt_error("ctl: out of memory"), 1;
	int ret = mt_session_adopt(sess, pid, err, sizeof(err));
	if (!ret && path) {
		struct mt_profile *p;
		if (!(ret = mt_session_snapshot(sess, pid, &p, err, sizeof(err)))) {
			struct mt_buf b = {.grow = mt_buf_grow_libc};
			p->reason = MT_REASON_CTL;
			if (!(ret = mt_file_encode(p, &b)))
				ret = mt_file_write_whole(path, b.data, b.len, 0600);
			if (ret)
				snprintf(err, sizeof(err), "cannot write %s: %s", path, strerror(-ret));
			snprintf(out, sizeof(out), "%s", path);
			free(b.data);
			mt_profile_free(p);
		}
	} else if (!ret && (ret = mt_session_dump(sess, pid, MT_REASON_CTL, out, sizeof(out)))) {
		snprintf(err, sizeof(err), "cannot write %s: %s", out, strerror(-ret));
	}
	mt_session_free(sess);
	if (ret)
		return mt_error("ctl %d dump: %s", pid, err), 1;
	printf("%s\n", out);
	return 0;
}

/* ctl PID stats for a process with no agent: what the kernel and glibc's
 * memory tell from outside (src/cli/glibc_syms.c). */
static int ctl_stats_outside(pid_t pid, const char *why)
{
	struct mt_alloc_stats st;
	char err[PATH_MAX + 256], opt[256];
	if (mt_outside_stats(pid, &st, err, sizeof(err)))
		return mt_error("ctl: %s; and %s", why, err), 1;
	printf("no memtap agent in process %d (%s)\n"
	       "what can be read from outside, without loading anything into it:\n\n", (int)pid, why);
	for (uint32_t i = 0; i < st.n; i++)
		printf("  %-40s %16llu\n", st.v[i].key, (unsigned long long)st.v[i].value);
	struct mt_glibc_syms syms;
	int have = !mt_glibc_syms_lookup(pid, &syms, opt, sizeof(opt), err, sizeof(err));
	struct mt_glibc *g = calloc(1, sizeof(*g));
	if (g && !mt_glibc_read(pid, have ? &syms : NULL, NULL, NULL, 0, g) && (g->nheaps || g->sbrk_bytes || have)) {
		printf("\nglibc's malloc, read from its memory (process_vm_readv%s):\n", have ? ", libc6-dbg symbols" : "");
		printf("  %-40s %16llu\n", "sbrk_bytes", (unsigned long long)g->sbrk_bytes);
		printf("  %-40s %16u\n", "arenas", g->narenas);
		printf("  %-40s %16u\n", "heaps", g->nheaps);
		if (have) {
			printf("  %-40s %16llu\n", "mmap_threshold", (unsigned long long)g->mmap_threshold);
			printf("  %-40s %16llu\n", "trim_threshold", (unsigned long long)g->trim_threshold);
			printf("  %-40s %16llu\n", "mmapped_chunks", (unsigned long long)g->mmapped_chunks);
			printf("  %-40s %16llu\n", "mmapped_bytes", (unsigned long long)g->mmapped_bytes);
			for (uint32_t i = 0; i < g->narenas; i++)
				printf("  arena 0x%llx%s: %llu bytes from the system, %llu attached threads\n",
				       (unsigned long long)g->arenas[i].addr, g->arenas[i].main ? " (main)" : "",
				       (unsigned long long)g->arenas[i].system_bytes,
				       (unsigned long long)g->arenas[i].attached_threads);
		} else {
			printf("  (%s: no thresholds, arena details)\n", err);
		}
	} else {
		printf("\nglibc's malloc: nothing readable (not glibc's, or no permission to read the process's memory)\n");
	}
	free(g);
	return 0;
}

/* leaks: the agent has checked and left the result in its live file; the
 * sites, symbolized, from a snapshot taken as `ctl dump` takes one. */
static int ctl_leaks_sites(int pid)
{
	char lpath[PATH_MAX], err[1024];
	struct mt_live_hdr h;
	if (mt_live_find(pid, lpath, sizeof(lpath), err, sizeof(err)) ||
	    mt_live_read_header(lpath, &h, err, sizeof(err)))
		return mt_error("ctl %d leaks: the per-site figures are in the live counter file, which "
				"cannot be read: %s", pid, err), 1;
	char prefix[PATH_MAX];
	snprintf(prefix, sizeof(prefix), "%.*s", (int)sizeof(h.prefix), h.prefix);
	struct mt_session *sess;
	struct mt_session_opts so = {.prefix = prefix, .run_id = h.run_id, .stacks = h.stacks != 0};
	if (mt_session_new(&so, &sess))
		return mt_error("ctl: out of memory"), 1;
	struct mt_profile *p = NULL;
	int ret = mt_session_adopt(sess, pid, err, sizeof(err));
	if (!ret)
		ret = mt_session_snapshot(sess, pid, &p, err, sizeof(err));
	if (!ret && p && p->leaks)
		ret = mt_render_leaks_text(stdout, p, 10);
	mt_profile_free(p);
	mt_session_free(sess);
	if (ret)
		return mt_error("ctl %d leaks: %s", pid, err), 1;
	return 0;
}

int cmd_ctl(int argc, char **argv)
{
	int c;
	optind = 1;
	/* No option but --help; a word starting with '-' after PID is left to
	 * the request's check. */
	if (argc >= 2 && argv[1][0] == '-') {
		if ((c = mt_cmd_getopt(MT_C_CTL, 2, argv)) != MT_CMD_DONE)
			return c == MT_CMD_HELPED ? 0 : 2;
	}
	if (argc < 3 || argc > 4) {
		mt_error("ctl: %s: memtap ctl PID COMMAND [ARG]", argc < 3 ? "too few arguments" : "too many arguments");
		return mt_cli_try_help("ctl");
	}
	char *end;
	long pid = strtol(argv[1], &end, 10);
	if (*end || pid <= 0 || pid > INT32_MAX)
		return mt_error("ctl: '%s' is not a process id (memtap ctl PID COMMAND)", argv[1]), 2;

	/* Build and check the request here, so a typo is reported without
	 * touching the process. */
	char req[MT_CTL_MAX_REQUEST + 2], err[256];
	char arg[PATH_MAX] = "";
	if (argc == 4) {
		if (strcmp(argv[2], "dump") == 0 && argv[3][0] != '/') {
			char cwd[PATH_MAX];
			if (!getcwd(cwd, sizeof(cwd)))
				return mt_error("ctl: getcwd: %s", strerror(errno)), 2;
			snprintf(arg, sizeof(arg), "%s/%s", cwd, argv[3]);
		} else {
			snprintf(arg, sizeof(arg), "%s", argv[3]);
		}
	}
	int len = snprintf(req, sizeof(req), "%s%s%s\n", argv[2], arg[0] ? " " : "", arg);
	struct mt_ctl_request parsed;
	if (len <= 0 || (size_t)len >= sizeof(req) || mt_ctl_parse(req, (size_t)len, &parsed, err, sizeof(err)))
		return mt_error("ctl: %s", len > 0 && (size_t)len < sizeof(req) ? err : "request too long"), 2;

	/* dump: this command reads the live counter file and writes the profile
	 * itself, with the caller's permissions, to PATH or under the session's
	 * prefix; the process does nothing for it. */
	if (parsed.cmd == MT_CTL_DUMP) {
		char lpath[PATH_MAX], lerr[1024];
		struct mt_live_hdr h;
		if (!mt_live_find((int)pid, lpath, sizeof(lpath), lerr, sizeof(lerr)) &&
		    !mt_live_read_header(lpath, &h, lerr, sizeof(lerr))) {
			/* First the agent refreshes the allocator's figures in the
			 * file (and runs jemalloc's prof.dump when it profiles); an
			 * agent that does not answer leaves the last ones. */
			char *sync = NULL;
			if (mt_ctl_send((pid_t)pid, "sync dump\n", &sync, err, sizeof(err))) {
				free(sync);
				sync = NULL;
			}
			int r = ctl_dump((int)pid, &h, arg[0] ? arg : NULL);
			if (sync && !r)
				fputs(sync, stdout);
			free(sync);
			return r;
		}
	}
	/* detach: as `memtap detach -p PID`, which writes the last profile. */
	if (parsed.cmd == MT_CTL_DETACH) {
		char last[PATH_MAX] = "";
		int r = mt_detach_pid((pid_t)pid, NULL, "text", NULL, 1, last, sizeof(last));
		if (!r && last[0])
			printf("%s\n", last);
		return r;
	}
	char *resp = NULL, cerr[1024];
	int r = mt_ctl_send((pid_t)pid, req, &resp, cerr, sizeof(cerr));
	if (r == -ENOENT && parsed.cmd == MT_CTL_STATS)
		return ctl_stats_outside((pid_t)pid, cerr);
	if (r < 0)
		return mt_error("ctl: %s", cerr), 1;
	if (r > 0) {
		mt_error("ctl %ld %s: %s", pid, argv[2], resp);
		free(resp);
		return 1;
	}
	fputs(resp, stdout);
	free(resp);
	if (parsed.cmd == MT_CTL_LEAKS)
		return ctl_leaks_sites((int)pid);
	return 0;
}
