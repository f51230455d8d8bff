/*
 * The session layer (session.h): members found by their live counter files,
 * what is due for each of them, and the profiles written from those files.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "bpf/ebpf.h"
#include "cli.h"
#include "live_read.h"
#include "memtap/format.h"
#include "memtap/symbolize.h"
#include "session.h"
#include "timeline_rec.h"

struct mt_session {
	struct mt_session_opts o;
	char prefix[PATH_MAX];
	struct mt_member *m;
	size_t n;
	char **written;
	size_t nwritten;
	uint64_t next_interval_ns;
	/* wait statuses of processes not found yet (they ended before a scan) */
	struct {
		int pid, status;
	} pending[16];
	size_t npending;
	struct mt_ebpf *ebpf;     /* the eBPF collector, or NULL: the agent's live files */
	struct mt_ebpf_proc *procs;
	int root;                 /* the process the session started (run), or 0 */
	char root_error[512];     /* why its live file could not be read */
	struct mt_session_observer obs[MT_SESSION_OBSERVERS];
	uint64_t obs_next_ns[MT_SESSION_OBSERVERS];
	size_t nobs;
	struct pollfd fds[MT_SESSION_FDS];
	struct {
		void (*ready)(struct mt_session *s, int fd, short revents, void *arg);
		void *arg;
	} fdcb[MT_SESSION_FDS];
	size_t nfds;
	size_t nended; /* members told to observers as ended */
	struct mt_tl_rec *tl; /* --interval: the members' timelines */
	int stop;      /* mt_session_stop() */
};

static uint64_t mono_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static uint64_t real_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

void mt_session_self(char *out, size_t outlen)
{
	snprintf(out, outlen, "%d:%llu", (int)getpid(), (unsigned long long)mt_proc_start((int)getpid(), NULL));
}

int mt_session_new(const struct mt_session_opts *o, struct mt_session **out)
{
	struct mt_session *s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	s->o = *o;
	snprintf(s->prefix, sizeof(s->prefix), "%s", o->prefix);
	s->o.prefix = s->prefix;
	if (o->interval_ms)
		s->next_interval_ns = mono_ns() + o->interval_ms * 1000000u;
	/* Every session with --interval keeps its members' timelines (run,
	 * attach by inject or eBPF alike). */
	if (o->interval_ms && mt_tl_rec_new(s, o->interval_ms, &s->tl)) {
		free(s);
		return -ENOMEM;
	}
	*out = s;
	return 0;
}

void mt_session_free(struct mt_session *s)
{
	if (!s)
		return;
	for (size_t i = 0; i < s->nobs; i++)
		if (s->obs[i].done)
			s->obs[i].done(s, s->obs[i].arg);
	for (size_t i = 0; i < s->n; i++)
		free(s->m[i].maps);
	free(s->m);
	for (size_t i = 0; i < s->nwritten; i++)
		free(s->written[i]);
	free(s->written);
	free(s->procs);
	mt_tl_rec_free(s->tl);
	free(s);
}

const struct mt_member *mt_session_members(const struct mt_session *s, size_t *n)
{
	*n = s->n;
	return s->m;
}

void mt_session_written(const struct mt_session *s, char *const **paths, size_t *n)
{
	*paths = s->written;
	*n = s->nwritten;
}

static struct mt_member *member_of(struct mt_session *s, int pid)
{
	/* The newest image of PID. */
	struct mt_member *best = NULL;
	for (size_t i = 0; i < s->n; i++)
		if (s->m[i].pid == pid && (!best || s->m[i].image_ns > best->image_ns))
			best = &s->m[i];
	return best;
}

/* The wait status of a zombie (field 52 of /proc/PID/stat), or -1. */
static int zombie_status(int pid)
{
	char buf[2048];
	const char *f, *code;
	if (mt_proc_stat(pid, 0, buf, sizeof(buf), &f) || !(code = mt_stat_field(f, 52)))
		return -1;
	return atoi(code);
}


static int alive(const struct mt_member *m)
{
	char state = 0;
	uint64_t start = mt_proc_start(m->pid, &state);
	return start && start == m->proc_start && state != 'Z';
}

/* With call sites: the member's mappings while it runs (a process that
 * is gone has none; a fork child never seen alive has its parent's). */
static void refresh_maps(struct mt_session *s, struct mt_member *m, const struct mt_live_hdr *h, int force)
{
	uint64_t now = mono_ns();
	if (!s->o.stacks && !h->stacks)
		return;
	if (!force && m->maps && h->maps_gen == m->maps_gen && now - m->maps_ns < 1000000000u)
		return;
	struct mt_mapping *v;
	uint32_t n;
	if (mt_proc_maps(m->pid, &v, &n) == 0 && n) {
		free(m->maps);
		m->maps = v;
		m->nmaps = n;
		m->maps_gen = h->maps_gen;
		m->maps_ns = now;
	} else {
		free(v);
	}
}

static int add_member(struct mt_session *s, const char *path, int pid, uint64_t image_ns,
		      const struct mt_live_hdr *h)
{
	struct mt_member *v = realloc(s->m, (s->n + 1) * sizeof(*v));
	if (!v)
		return -ENOMEM;
	s->m = v;
	struct mt_member *m = &v[s->n];
	memset(m, 0, sizeof(*m));
	/* An older image of the same process was replaced by exec (found
	 * before or after the newer one). */
	for (size_t i = 0; i < s->n; i++) {
		if (v[i].pid != pid)
			continue;
		if (v[i].state == MT_MEMBER_RUNNING && v[i].image_ns < image_ns)
			v[i].end = MT_END_EXEC;
		else if (v[i].image_ns > image_ns)
			m->end = MT_END_EXEC;
	}
	m->pid = pid;
	for (size_t i = 0; i < s->npending && m->end != MT_END_EXEC; i++)
		if (s->pending[i].pid == pid) {
			m->wait_status = s->pending[i].status;
			m->have_status = 1;
			s->pending[i] = s->pending[--s->npending];
			break;
		}
	m->ppid = (int)h->ppid;
	m->proc_start = h->proc_start;
	m->image_ns = image_ns;
	m->seq = h->seq;
	snprintf(m->path, sizeof(m->path), "%s", path);
	snprintf(m->command, sizeof(m->command), "%.*s", (int)sizeof(m->command) - 1, h->command);
	s->n++;
	if (alive(m)) {
		mt_proc_cmdline(pid, m->command, sizeof(m->command));
		refresh_maps(s, m, h, 1);
	} else {
		/* Gone before we saw it: its parent's mappings are its own (fork). */
		struct mt_member *parent = member_of(s, m->ppid);
		if (parent && parent->nmaps && (m->maps = malloc(parent->nmaps * sizeof(*m->maps)))) {
			memcpy(m->maps, parent->maps, parent->nmaps * sizeof(*m->maps));
			m->nmaps = parent->nmaps;
		}
	}
	return 0;
}

int mt_session_adopt(struct mt_session *s, int pid, char *err, size_t errlen)
{
	char path[PATH_MAX];
	struct mt_live_hdr h;
	int ret = mt_live_find(pid, path, sizeof(path), err, errlen);
	if (ret || (ret = mt_live_read_header(path, &h, err, errlen)))
		return ret;
	for (size_t i = 0; i < s->n; i++)
		if (!strcmp(s->m[i].path, path)) {
			s->m[i].state = MT_MEMBER_RUNNING;
			s->m[i].end = MT_END_NONE;
			return 0;
		}
	int p;
	uint64_t image;
	const char *base = strrchr(path, '/');
	if (mt_live_name_parse(base ? base + 1 : path, &p, &image))
		image = h.start_ns;
	return add_member(s, path, pid, image, &h);
}

static int write_profile(struct mt_session *s, struct mt_member *m, struct mt_profile *p, char *out,
			 size_t outlen);

/* A dump the agent took at the moment it was due (--dump-every,
 * --dump-on-peak) and left in a spool file: read (it is untrusted input,
 * checked like any profile), written where the user asked, removed. */
static void take_spool(struct mt_session *s, struct mt_member *m, const char *path)
{
	struct mt_profile *p;
	char err[1024], out[PATH_MAX];
	if (mt_file_read(path, &p, err, sizeof(err))) {
		mt_error("a dump of process %d: %s", m->pid, err);
		unlink(path);
		return;
	}
	if (p->pid != (uint32_t)m->pid) {
		mt_error("%s: a dump that names process %u, not %d: ignored", path, p->pid, m->pid);
	} else {
		if (!p->nmaps && m->nmaps)
			for (uint32_t i = 0; i < m->nmaps; i++) {
				struct mt_mapping *d = mt_profile_add_mapping(p);
				if (d)
					*d = m->maps[i];
			}
		int ret = write_profile(s, m, p, out, sizeof(out));
		if (ret) {
			mt_error("cannot write a profile of process %d to %s: %s (kept in %s)", m->pid, out,
				 strerror(-ret), path);
			mt_profile_free(p);
			return;
		}
	}
	mt_profile_free(p);
	unlink(path);
}

struct spool {
	char path[PATH_MAX];
	size_t m; /* index of the member */
	int pid;
	uint64_t ns;
	uint32_t n;
};

static int spool_cmp(const void *a, const void *b)
{
	const struct spool *x = a, *y = b;
	return x->m != y->m ? (x->m < y->m ? -1 : 1) : x->n < y->n ? -1 : x->n > y->n;
}

static void scan(struct mt_session *s)
{
	struct spool *sp = NULL;
	size_t nsp = 0;
	char **dirs;
	size_t nd;
	if (mt_live_dirs(&dirs, &nd))
		return;
	for (size_t i = 0; i < nd; i++) {
		DIR *d = opendir(dirs[i]);
		struct dirent *e;
		while (d && (e = readdir(d))) {
			int pid;
			uint64_t image;
			char path[PATH_MAX], err[512];
			unsigned long long ns;
			unsigned k;
			int used = 0;
			if (sscanf(e->d_name, "%d-%llu-%u.mtp%n", &pid, &ns, &k, &used) == 3 && !e->d_name[used]) {
				struct spool *v = realloc(sp, (nsp + 1) * sizeof(*sp));
				if (v) {
					sp = v;
					snprintf(sp[nsp].path, sizeof(sp[nsp].path), "%s/%s", dirs[i], e->d_name);
					sp[nsp].pid = pid;
					sp[nsp].ns = ns;
					sp[nsp++].n = k;
				}
				continue;
			}
			if (mt_live_name_parse(e->d_name, &pid, &image))
				continue;
			snprintf(path, sizeof(path), "%s/%s", dirs[i], e->d_name);
			int known = 0;
			for (size_t k = 0; k < s->n && !known; k++)
				known = !strcmp(s->m[k].path, path);
			struct mt_live_hdr h;
			/* A file being made (a fork child copying its parent's) may
			 * not pass yet: it is looked at again next time. */
			if (known)
				continue;
			/* The root's files are ours by its pid, whatever they say
			 * (a process may have overwritten its own). */
			int root = s->root && pid == s->root;
			if (mt_live_read_header(path, &h, err, sizeof(err))) {
				if (root)
					snprintf(s->root_error, sizeof(s->root_error), "%s", err);
				continue;
			}
			if (!root && (h.run_id != s->o.run_id || !s->o.run_id))
				continue;
			/* A fork child's file holds its parent's header until the
			 * child has copied the arena and written its own identity
			 * (mt_shared_fork_child): taken now, the member would look
			 * gone at once and get its parent's figures as its final
			 * profile.  Looked at again next time. */
			uint64_t start = mt_proc_start(pid, NULL);
			if (!root && (h.pid != (uint32_t)pid || (start && h.proc_start != start)))
				continue;
			add_member(s, path, pid, image, &h);
		}
		if (d)
			closedir(d);
	}
	mt_live_dirs_free(dirs, nd);
	/* The members' spools (others are another session's), in the order
	 * they were taken. */
	size_t keep = 0;
	for (size_t i = 0; i < nsp; i++) {
		sp[i].m = s->n;
		for (size_t q = 0; q < s->n && sp[i].m == s->n; q++)
			if (s->m[q].pid == sp[i].pid && s->m[q].image_ns == sp[i].ns)
				sp[i].m = q;
		if (sp[i].m < s->n)
			sp[keep++] = sp[i];
	}
	/* A watching session leaves them to the session they belong to. */
	if (s->o.watch)
		keep = 0;
	if (keep)
		qsort(sp, keep, sizeof(*sp), spool_cmp);
	for (size_t i = 0; i < keep; i++)
		take_spool(s, &s->m[sp[i].m], sp[i].path);
	free(sp);
}

static void remember(struct mt_session *s, const char *path)
{
	char **v = realloc(s->written, (s->nwritten + 1) * sizeof(*v));
	if (!v)
		return;
	s->written = v;
	if ((v[s->nwritten] = strdup(path)))
		s->nwritten++;
}

/* The first sequence number from M's without a profile: the number written
 * in the file is the one in its name (mt_file_write_next still settles a
 * race). */
static uint32_t next_seq(const struct mt_session *s, const struct mt_member *m)
{
	char path[PATH_MAX];
	uint32_t seq = m->seq;
	while (seq < m->seq + 100000) {
		snprintf(path, sizeof(path), "%s.%d.%u.%s", s->o.prefix, m->pid, seq, MT_FILE_EXT);
		if (access(path, F_OK) != 0)
			break;
		seq++;
	}
	return seq;
}

static int write_profile(struct mt_session *s, struct mt_member *m, struct mt_profile *p, char *out,
			 size_t outlen)
{
	struct mt_buf b = {.grow = mt_buf_grow_libc};
	uint32_t seq = next_seq(s, m);
	p->seq = seq;
	for (size_t i = 0; i < s->nobs; i++)
		if (s->obs[i].annotate)
			s->obs[i].annotate(s, m, p, s->obs[i].arg);
	int ret = mt_file_encode(p, &b);
	if (!ret)
		ret = mt_file_write_next(s->o.prefix, (uint32_t)m->pid, &seq, b.data, b.len, 0600, out, outlen);
	free(b.data);
	if (!ret) {
		m->seq = seq + 1;
		remember(s, out);
		for (size_t i = 0; i < s->nobs; i++)
			if (s->obs[i].wrote)
				s->obs[i].wrote(s, m, p, out, s->obs[i].arg);
	}
	return ret;
}

/* A profile of M from its file now; END: whether it is the final one. */
static int profile_of(struct mt_session *s, struct mt_member *m, int final, struct mt_profile **out,
		      char *err, size_t errlen)
{
	struct mt_live_copy c;
	unsigned flags = 0;
	int ret = mt_live_copy_read(m->path, &c, err, errlen);
	if (ret)
		return ret;
	if ((ret = mt_live_copy_profile(&c, out, &flags))) {
		snprintf(err, errlen, "%s: out of memory", m->path);
		mt_live_copy_free(&c);
		return ret;
	}
	struct mt_profile *p = *out;
	if (flags)
		snprintf(m->error, sizeof(m->error), "%s: the process wrote figures memtap cannot trust "
			 "(%s%s%s); they are kept, flagged", m->path, flags & MT_LIVE_TORN ? "a torn reset baseline " : "",
			 flags & MT_LIVE_CUT ? "a broken list " : "", flags & MT_LIVE_BAD_SITE ? "impossible call sites" : "");
	if (!final && alive(m)) {
		mt_proc_cmdline(m->pid, m->command, sizeof(m->command));
		refresh_maps(s, m, c.hdr, 0);
		/* analyses: the agent records ru_maxrss when the process ends; a
		 * running one has it in /proc. */
		if (!p->peak_rss_bytes)
			p->peak_rss_bytes = mt_proc_hwm(m->pid);
	}
	if (m->command[0])
		snprintf(p->command, sizeof(p->command), "%s", m->command);
	/* Ours by the session's own bookkeeping, whatever the file says. */
	if (s->o.run_id)
		p->run_id = s->o.run_id;
	p->pid = (uint32_t)m->pid;
	p->dump_ns = real_ns();
	if (final) {
		mt_live_end_to_profile(c.hdr, p, 1);
		if (m->end == MT_END_EXEC) {
			p->end = MT_END_EXEC;
			p->end_code = 0;
		}
		/* The wait status, when memtap (or /proc, for a zombie) knows it,
		 * is exact; the agent's record says more for _exit. */
		int st = m->have_status ? m->wait_status : zombie_status(m->pid);
		if (st >= 0 && p->end != MT_END_EXEC && (m->have_status || st != 0 || p->end == MT_END_VANISHED)) {
			if (WIFSIGNALED(st)) {
				p->end = MT_END_SIGNAL;
				p->end_code = WTERMSIG(st);
			} else if (WIFEXITED(st) && p->end != MT_END__EXIT) {
				p->end = MT_END_EXIT;
				p->end_code = WEXITSTATUS(st);
			}
		}
		if (p->end == MT_END_SIGNAL || p->end == MT_END_VANISHED || p->end == MT_END__EXIT)
			p->flags |= MT_PROFILE_RECOVERED;
		if (c.hdr->end_ns)
			p->dump_ns = c.hdr->end_ns;
	}
	/* Mappings: what memtap saw last while the process ran, or what the
	 * agent recorded, whichever is later (the agent's at exit, for a final
	 * profile). */
	const struct mt_mapping *maps = m->maps;
	uint32_t nmaps = m->nmaps;
	const struct mt_mapping *am;
	uint32_t an = mt_live_maps(&c.view, &am);
	if (an && (!nmaps || (final && c.hdr->maps_gen > 1 && c.hdr->maps_gen != m->maps_gen))) {
		maps = am;
		nmaps = an;
	}
	for (uint32_t i = 0; i < nmaps; i++) {
		struct mt_mapping *d = mt_profile_add_mapping(p);
		if (!d)
			break;
		*d = maps[i];
		d->path[sizeof(d->path) - 1] = '\0';
	}
	mt_live_copy_free(&c);
	return 0;
}

static void finish_member(struct mt_session *s, struct mt_member *m)
{
	struct mt_profile *p;
	char err[1024];
	if (profile_of(s, m, 1, &p, err, sizeof(err))) {
		snprintf(m->error, sizeof(m->error), "no final profile of process %d: %s (its live file is kept)",
			 m->pid, err);
		m->state = MT_MEMBER_ENDED;
		return;
	}
	p->reason = MT_REASON_EXIT;
	m->end = p->end;
	m->end_code = p->end_code;
	/* An image replaced by exec before it called anything (fork, then
	 * exec at once) is no process of its own to report. */
	uint64_t calls = 0;
	for (uint32_t i = 0; i < p->nfuncs; i++)
		calls += p->funcs[i].calls;
	if (p->end == MT_END_EXEC && !calls) {
		mt_profile_free(p);
		m->state = MT_MEMBER_ENDED;
		unlink(m->path);
		return;
	}
	int ret = write_profile(s, m, p, m->final_path, sizeof(m->final_path));
	mt_profile_free(p);
	m->state = MT_MEMBER_ENDED;
	if (ret) {
		snprintf(m->error, sizeof(m->error), "cannot write the final profile of process %d (%s): %s; "
			 "its figures stay in %s", m->pid, m->final_path, strerror(-ret), m->path);
		return;
	}
	unlink(m->path);
}

static void dump_member(struct mt_session *s, struct mt_member *m, uint32_t reason)
{
	struct mt_profile *p;
	char err[1024], path[PATH_MAX];
	if (profile_of(s, m, 0, &p, err, sizeof(err))) {
		mt_error("%s", err);
		return;
	}
	p->reason = reason;
	int ret = write_profile(s, m, p, path, sizeof(path));
	if (ret)
		mt_error("cannot write a profile of process %d to %s: %s", m->pid, path, strerror(-ret));
	mt_profile_free(p);
}

/* ---- the eBPF collector: members are the processes the BPF side traces ---- */

#define EBPF_PROCS_MAX 65536

void mt_session_use_ebpf(struct mt_session *s, struct mt_ebpf *e)
{
	s->ebpf = e;
}

static struct mt_member *ebpf_member(struct mt_session *s, const struct mt_ebpf_proc *pr)
{
	struct mt_member *m = member_of(s, pr->pid);
	/* A pid the session saw end, now a new traced process. */
	if (m && (m->state == MT_MEMBER_RUNNING || pr->exited))
		return m;
	struct mt_member *v = realloc(s->m, (s->n + 1) * sizeof(*v));
	if (!v)
		return NULL;
	s->m = v;
	m = &v[s->n++];
	memset(m, 0, sizeof(*m));
	m->pid = pr->pid;
	m->ppid = pr->ppid;
	m->image_ns = real_ns();
	snprintf(m->command, sizeof(m->command), "%s", pr->comm);
	mt_proc_cmdline(pr->pid, m->command, sizeof(m->command));
	return m;
}

static int ebpf_profile(struct mt_session *s, struct mt_member *m, uint32_t reason, char *out, size_t outlen)
{
	struct mt_profile *p;
	int ret = mt_ebpf_snapshot(s->ebpf, m->pid, &p);
	if (ret) {
		snprintf(out, outlen, "process %d: %s", m->pid, strerror(-ret));
		return ret;
	}
	if (s->o.run_id)
		p->run_id = s->o.run_id;
	p->reason = reason;
	if (reason == MT_REASON_EXIT) {
		m->end = p->end;
		m->end_code = p->end_code;
	}
	ret = write_profile(s, m, p, out, outlen);
	mt_profile_free(p);
	return ret;
}

static size_t poll_ebpf(struct mt_session *s)
{
	size_t running = 0;
	if (!s->procs && !(s->procs = calloc(EBPF_PROCS_MAX, sizeof(*s->procs))))
		return 0;
	mt_ebpf_poll_maps(s->ebpf);
	uint64_t now = mono_ns();
	int interval_due = s->o.interval_ms && now >= s->next_interval_ns;
	if (interval_due)
		while (s->next_interval_ns <= now)
			s->next_interval_ns += s->o.interval_ms * 1000000u;
	size_t n = mt_ebpf_procs(s->ebpf, s->procs, EBPF_PROCS_MAX);
	for (size_t i = 0; i < n; i++) {
		struct mt_member *m = ebpf_member(s, &s->procs[i]);
		if (!m || m->state != MT_MEMBER_RUNNING)
			continue;
		char path[PATH_MAX];
		if (s->procs[i].exited) {
			if (ebpf_profile(s, m, MT_REASON_EXIT, m->final_path, sizeof(m->final_path)))
				snprintf(m->error, sizeof(m->error), "no final profile of process %d: %s", m->pid,
					 m->final_path);
			m->state = MT_MEMBER_ENDED;
			continue;
		}
		running++;
		/* Its command as it is now (run --via=ebpf finds it before its
		 * exec; servers rename their workers), once a second. */
		if (now - m->cmd_ns >= 1000000000u) {
			char cmd[sizeof(m->command)];
			mt_proc_cmdline(m->pid, cmd, sizeof(cmd));
			if (cmd[0])
				memcpy(m->command, cmd, sizeof(cmd));
			m->cmd_ns = now;
		}
		if (interval_due && ebpf_profile(s, m, MT_REASON_INTERVAL, path, sizeof(path)))
			mt_error("cannot write a profile of process %d: %s", m->pid, path);
	}
	return running;
}

/* The observers' share of a poll: ticks that are due, members that ended. */
static void observe(struct mt_session *s)
{
	uint64_t now = mono_ns();
	for (size_t i = 0; i < s->nobs; i++) {
		if (!s->obs[i].tick || now < s->obs_next_ns[i])
			continue;
		s->obs_next_ns[i] = now + s->obs[i].every_ms * 1000000u;
		s->obs[i].tick(s, s->obs[i].arg);
	}
	for (size_t j = 0; j < s->n; j++) {
		struct mt_member *m = &s->m[j];
		if (m->state == MT_MEMBER_RUNNING || m->observed_end)
			continue;
		m->observed_end = 1;
		for (size_t i = 0; i < s->nobs; i++)
			if (s->obs[i].ended)
				s->obs[i].ended(s, m, s->obs[i].arg);
	}
}

int mt_session_observe(struct mt_session *s, const struct mt_session_observer *o)
{
	if (s->nobs >= MT_SESSION_OBSERVERS)
		return -ENOSPC;
	s->obs[s->nobs] = *o;
	s->obs_next_ns[s->nobs++] = 0;
	return 0;
}

int mt_session_watch_fd(struct mt_session *s, int fd, short events,
			void (*ready)(struct mt_session *s, int fd, short revents, void *arg), void *arg)
{
	if (s->nfds >= MT_SESSION_FDS)
		return -ENOSPC;
	s->fds[s->nfds] = (struct pollfd){.fd = fd, .events = events};
	s->fdcb[s->nfds].ready = ready;
	s->fdcb[s->nfds++].arg = arg;
	return 0;
}

void mt_session_unwatch_fd(struct mt_session *s, int fd)
{
	for (size_t i = 0; i < s->nfds; i++)
		if (s->fds[i].fd == fd) {
			s->nfds--;
			s->fds[i] = s->fds[s->nfds];
			s->fdcb[i] = s->fdcb[s->nfds];
			return;
		}
}

void mt_session_wait(struct mt_session *s, unsigned ms, const sigset_t *mask)
{
	uint64_t end = mono_ns() + (uint64_t)ms * 1000000u;
	for (;;) {
		uint64_t now = mono_ns();
		if (now >= end)
			return;
		struct timespec ts = {(time_t)((end - now) / 1000000000u), (long)((end - now) % 1000000000u)};
		/* A copy: callbacks may watch or unwatch descriptors. */
		struct pollfd fds[MT_SESSION_FDS];
		size_t n = s->nfds;
		memcpy(fds, s->fds, n * sizeof(*fds));
		int r = ppoll(n ? fds : NULL, n, &ts, mask);
		if (r <= 0)
			return; /* the time is up, or a signal (EINTR): the caller looks */
		for (size_t i = 0; i < n; i++) {
			if (!fds[i].revents)
				continue;
			for (size_t j = 0; j < s->nfds; j++)
				if (s->fds[j].fd == fds[i].fd) {
					s->fdcb[j].ready(s, fds[i].fd, fds[i].revents, s->fdcb[j].arg);
					break;
				}
		}
	}
}

static size_t poll_members(struct mt_session *s);

size_t mt_session_poll(struct mt_session *s)
{
	size_t running = poll_members(s);
	observe(s);
	return running;
}

static size_t poll_members(struct mt_session *s)
{
	size_t running = 0;
	if (s->ebpf)
		return poll_ebpf(s);
	scan(s);
	uint64_t now = mono_ns();
	int interval_due = s->o.interval_ms && now >= s->next_interval_ns;
	if (interval_due)
		while (s->next_interval_ns <= now)
			s->next_interval_ns += s->o.interval_ms * 1000000u;
	for (size_t i = 0; i < s->n; i++) {
		struct mt_member *m = &s->m[i];
		if (m->state != MT_MEMBER_RUNNING)
			continue;
		struct mt_live_hdr h;
		char err[512];
		int readable = mt_live_read_header(m->path, &h, err, sizeof(err)) == 0;
		if (m->end == MT_END_EXEC || !alive(m)) {
			if (s->o.watch)
				m->state = MT_MEMBER_ENDED; /* its own session writes its profile */
			else
				finish_member(s, m);
			continue;
		}
		if (readable && !m->detaching && m->pid != s->root &&
		    (h.end == MT_LIVE_DETACHED || h.run_id != s->o.run_id)) {
			m->state = MT_MEMBER_DETACHED;
			continue;
		}
		running++;
		/* Servers rename their workers after the fork (nginx, apache's
		 * title): the command as it is now, once a second. */
		if (now - m->cmd_ns >= 1000000000u) {
			mt_proc_cmdline(m->pid, m->command, sizeof(m->command));
			m->cmd_ns = now;
		}
		if (!readable)
			continue;
		if (interval_due)
			dump_member(s, m, MT_REASON_INTERVAL);
		else
			refresh_maps(s, m, &h, 0);
	}
	return running;
}

void mt_session_stop(struct mt_session *s)
{
	s->stop = 1;
}

int mt_session_stopping(const struct mt_session *s)
{
	return s->stop;
}

void mt_session_set_root(struct mt_session *s, int pid)
{
	s->root = pid;
}

const char *mt_session_root_error(struct mt_session *s)
{
	if (!s->root || member_of(s, s->root))
		return NULL;
	if (!s->root_error[0])
		snprintf(s->root_error, sizeof(s->root_error), "process %d left no live counter file memtap "
			 "could read (its agent could not make one, or the process removed it)", s->root);
	return s->root_error;
}

void mt_session_mark_detach(struct mt_session *s, int pid)
{
	struct mt_member *m = member_of(s, pid);
	if (m)
		m->detaching = 1;
}

void mt_session_set_status(struct mt_session *s, int pid, int status)
{
	struct mt_member *m = member_of(s, pid);
	if (m) {
		m->wait_status = status;
		m->have_status = 1;
	} else if (s->npending < sizeof(s->pending) / sizeof(s->pending[0])) {
		s->pending[s->npending].pid = pid;
		s->pending[s->npending++].status = status;
	}
}

int mt_session_snapshot(struct mt_session *s, int pid, struct mt_profile **out, char *err, size_t errlen)
{
	if (s->ebpf) {
		int ret = mt_ebpf_snapshot(s->ebpf, pid, out);
		if (ret)
			snprintf(err, errlen, "process %d: %s", pid, ret == -ESRCH ? "not in this session" : strerror(-ret));
		return ret;
	}
	struct mt_member *m = member_of(s, pid);
	if (!m) {
		snprintf(err, errlen, "process %d is not in this session", pid);
		return -ESRCH;
	}
	return profile_of(s, m, 0, out, err, errlen);
}

int mt_session_dump(struct mt_session *s, int pid, uint32_t reason, char *out, size_t outlen)
{
	struct mt_member *m = member_of(s, pid);
	struct mt_profile *p;
	char err[1024];
	if (!m) {
		snprintf(out, outlen, "process %d is not in this session", pid);
		return -ESRCH;
	}
	if (s->ebpf)
		return ebpf_profile(s, m, reason, out, outlen);
	int ret = profile_of(s, m, 0, &p, err, sizeof(err));
	if (ret) {
		snprintf(out, outlen, "%s", err);
		return ret;
	}
	p->reason = reason;
	ret = write_profile(s, m, p, out, outlen);
	mt_profile_free(p);
	return ret;
}

int mt_session_finish(struct mt_session *s, int detaching)
{
	int failed = 0;
	mt_session_poll(s);
	for (size_t i = 0; i < s->n; i++) {
		struct mt_member *m = &s->m[i];
		if (m->state == MT_MEMBER_RUNNING && s->ebpf) {
			/* The session's end: a last profile of every process still
			 * there (they run on, untraced). */
			if (ebpf_profile(s, m, MT_REASON_DETACH, m->final_path, sizeof(m->final_path)))
				snprintf(m->error, sizeof(m->error), "no last profile of process %d: %s", m->pid,
					 m->final_path);
			m->state = MT_MEMBER_DETACHED;
		} else if (m->state == MT_MEMBER_RUNNING && detaching && m->detaching) {
			struct mt_profile *p;
			char err[1024];
			if (profile_of(s, m, 0, &p, err, sizeof(err))) {
				snprintf(m->error, sizeof(m->error), "%s", err);
			} else {
				p->reason = MT_REASON_DETACH;
				if (write_profile(s, m, p, m->final_path, sizeof(m->final_path)))
					snprintf(m->error, sizeof(m->error), "cannot write %s", m->final_path);
				mt_profile_free(p);
			}
			m->state = MT_MEMBER_DETACHED;
		}
		failed += m->error[0] != 0;
	}
	observe(s);
	return failed;
}
