/*
 * Reading a traced process's live counter file from outside
 * (include/memtap/live.h): a private copy taken with pread (never a mapping:
 * the process could truncate the file under us, and a mapping would then
 * fault), checked, and turned into a malloc'ed struct mt_profile that owns
 * everything it points to.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "live_read.h"
#include "memtap/pools.h"
#include "memtap/glibc.h"
#include "memtap/leaks.h"
#include "memtap/ctl.h"

/* At most this much of a file is read: MT_LIVE_CAP is the agent's reservation. */
#define READ_MAX MT_LIVE_CAP

static int read_at(int fd, void *buf, size_t len, off_t off, size_t *got)
{
	size_t n = 0;
	while (n < len) {
		ssize_t r = pread(fd, (char *)buf + n, len - n, off + (off_t)n);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return -errno;
		if (r == 0)
			break;
		n += (size_t)r;
	}
	*got = n;
	return 0;
}

/* Opens PATH (a regular file, never through a symlink) and reads its
 * header into H: the descriptor, or -errno with ERR naming the file. */
static int open_header(const char *path, struct stat *st, struct mt_live_hdr *h, char *err, size_t errlen)
{
	int fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK);
	if (fd < 0) {
		int ret = -errno;
		snprintf(err, errlen, "%s: %s", path, strerror(-ret));
		return ret;
	}
	size_t got = 0;
	int ret = fstat(fd, st) < 0 ? -errno : !S_ISREG(st->st_mode) ? -EINVAL : read_at(fd, h, sizeof(*h), 0, &got);
	if (ret || got < sizeof(*h)) {
		close(fd);
		snprintf(err, errlen, "%s: %s", path, ret ? strerror(-ret) : "shorter than a live file's header");
		return ret ? ret : -EINVAL;
	}
	return fd;
}

int mt_live_read_header(const char *path, struct mt_live_hdr *h, char *err, size_t errlen)
{
	struct stat st;
	int ret, fd = open_header(path, &st, h, err, errlen);
	if (fd < 0)
		return fd;
	close(fd);
	struct mt_live_view v = {(const uint8_t *)h, sizeof(*h), h->base};
	if ((ret = mt_live_check(&v, err, errlen))) {
		char why[256];
		snprintf(why, sizeof(why), "%s", err);
		snprintf(err, errlen, "%s: %s", path, why);
	}
	return ret;
}

int mt_live_copy_read(const char *path, struct mt_live_copy *c, char *err, size_t errlen)
{
	memset(c, 0, sizeof(*c));
	struct mt_live_hdr h;
	size_t got = 0;
	struct stat st;
	int ret = 0, fd = open_header(path, &st, &h, err, errlen);
	if (fd < 0)
		return fd;
	/* Everything the agent has handed out lies below `used`; the file may
	 * be shorter than it says (truncated under us): read what is there.
	 * The header is copied again with the rest, and may by then name
	 * objects made after the first read: read again, a few times, until
	 * the copy holds what its header says. */
	for (int round = 0; round < 4; round++) {
		uint64_t want = h.used;
		if (want < sizeof(h) || want > READ_MAX)
			want = want > READ_MAX ? READ_MAX : sizeof(h);
		if ((uint64_t)st.st_size < want)
			want = (uint64_t)st.st_size;
		free(c->data);
		c->data = malloc(want ? want : 1);
		if (!c->data) {
			close(fd);
			snprintf(err, errlen, "%s: out of memory for %llu bytes", path, (unsigned long long)want);
			return -ENOMEM;
		}
		ret = read_at(fd, c->data, want, 0, &got);
		if (ret || got < sizeof(h))
			break;
		memcpy(&h, c->data, sizeof(h));
		if (h.used <= got || h.used > READ_MAX || h.used > (uint64_t)st.st_size)
			break;
	}
	close(fd);
	if (ret) {
		snprintf(err, errlen, "%s: %s", path, strerror(-ret));
		mt_live_copy_free(c);
		return ret;
	}
	c->view.data = c->data;
	c->view.len = got;
	c->view.base = got >= sizeof(h) ? ((struct mt_live_hdr *)c->data)->base : 0;
	if (got < sizeof(h) || (ret = mt_live_check(&c->view, err, errlen))) {
		if (got < sizeof(h))
			snprintf(err, errlen, "shorter than a live file's header");
		char why[256];
		snprintf(why, sizeof(why), "%s", err);
		snprintf(err, errlen, "%s: %s", path, why);
		mt_live_copy_free(c);
		return ret ? ret : -EINVAL;
	}
	c->hdr = (const struct mt_live_hdr *)c->data;
	return 0;
}

void mt_live_copy_free(struct mt_live_copy *c)
{
	free(c->data);
	memset(c, 0, sizeof(*c));
}

/* The allocator's statistics and --glibc state the agent keeps in its
 * file (include/memtap/glibc.h), copied whole under their seqlocks. */
static int mt_live_copy_glibc(const struct mt_live_copy *c, struct mt_profile *p)
{
	uint64_t sa = __atomic_load_n(&c->hdr->allocstats, __ATOMIC_ACQUIRE);
	uint64_t ga = __atomic_load_n(&c->hdr->glibc, __ATOMIC_ACQUIRE);
	const struct mt_alloc_stats *s = sa ? mt_live_at(&c->view, sa, sizeof(*s)) : NULL;
	const struct mt_glibc *g = ga ? mt_live_at(&c->view, ga, sizeof(*g)) : NULL;
	if (s && ((uintptr_t)s & 7) == 0) {
		if (!(p->stats = malloc(sizeof(*p->stats))))
			return -ENOMEM;
		if (mt_stats_copy(p->stats, s)) { /* caught mid-rewrite: none this time */
			free(p->stats);
			p->stats = NULL;
		}
	}
	if (g && ((uintptr_t)g & 7) == 0) {
		if (!(p->glibc = malloc(sizeof(*p->glibc))))
			return -ENOMEM;
		if (mt_glibc_copy(p->glibc, g)) {
			free(p->glibc);
			p->glibc = NULL;
		}
	}
	return 0;
}

int mt_live_copy_profile(const struct mt_live_copy *c, struct mt_profile **out, unsigned *flags)
{
	uint32_t nf, ns, np;
	*out = NULL;
	mt_live_bounds(&c->view, &nf, &ns, &np);
	/* A snapshot into arrays of the bounds' size, then a profile of our own
	 * (frames copied out of the copy). */
	struct mt_profile tmp;
	memset(&tmp, 0, sizeof(tmp));
	tmp.funcs = calloc(nf ? nf : 1, sizeof(*tmp.funcs));
	tmp.sites = ns ? calloc(ns, sizeof(*tmp.sites)) : NULL;
	tmp.pools = np ? calloc(np, sizeof(*tmp.pools)) : NULL;
	void *scratch = calloc(2, c->hdr->block_size);
	struct mt_profile *p = mt_profile_new();
	int ret = -ENOMEM;
	if (!tmp.funcs || (ns && !tmp.sites) || (np && !tmp.pools) || !scratch || !p)
		goto out;
	tmp.nfuncs = nf;
	tmp.nsites = ns;
	tmp.npools = np;
	*flags = mt_live_snapshot(&c->view, &tmp, scratch, 0);
	p->pid = tmp.pid;
	p->ppid = tmp.ppid;
	p->uid = tmp.uid;
	p->run_id = tmp.run_id;
	p->start_ns = tmp.start_ns;
	p->peak_rss_bytes = tmp.peak_rss_bytes;
	p->flags = tmp.flags | (*flags ? MT_PROFILE_SUSPECT : 0);
	p->totals = tmp.totals;
	p->sample_period = tmp.sample_period;
	p->unknown_frees = tmp.unknown_frees;
	memcpy(p->command, tmp.command, sizeof(p->command));
	memcpy(p->exe, tmp.exe, sizeof(p->exe));
	for (uint32_t i = 0; i < tmp.nfuncs; i++) {
		struct mt_func *f = mt_profile_func(p, tmp.funcs[i].name, tmp.funcs[i].kind);
		if (!f)
			goto out;
		if (f->calls) /* two counters with one name (a hostile file): keep the first */
			continue;
		*f = tmp.funcs[i];
	}
	/* Function indices: the snapshot's order is the profile's, unless a
	 * duplicate name folded two into one. */
	for (uint32_t i = 0; i < tmp.nsites; i++) {
		const struct mt_site *s = &tmp.sites[i];
		struct mt_site *d = mt_profile_add_site(p, s->frames, s->nframes);
		if (!d)
			goto out;
		uint32_t fn = s->fn;
		d->fn = fn < tmp.nfuncs ? (uint32_t)(mt_profile_find(p, tmp.funcs[fn].name) - p->funcs) : UINT32_MAX;
		d->alloc_objects = s->alloc_objects;
		d->alloc_bytes = s->alloc_bytes;
		d->inuse_objects = s->inuse_objects;
		d->inuse_bytes = s->inuse_bytes;
		d->peak_objects = s->peak_objects;
		d->peak_bytes = s->peak_bytes;
		d->temp_objects = s->temp_objects;
		d->temp_bytes = s->temp_bytes;
	}
	for (uint32_t i = 0; i < tmp.npools; i++) {
		const struct mt_pool *s = &tmp.pools[i];
		if (s->fn >= tmp.nfuncs)
			continue;
		uint32_t fn = (uint32_t)(mt_profile_find(p, tmp.funcs[s->fn].name) - p->funcs);
		struct mt_pool *d = mt_profile_add_pool(p, fn, s->pool);
		if (!d)
			goto out;
		d->calls = s->calls;
		d->bytes = s->bytes;
		d->by = s->by;
	}
	/* APR pools (--pools); a table not where the header says is left out. */
	if (mt_live_apr_read(&c->view, &p->apr) == -ENOMEM)
		goto out;
	if (mt_live_copy_glibc(c, p))
		goto out;
	/* leaks: the last leak check, if any */
	if (c->hdr->leaks) {
		uint32_t nl = mt_live_leak_count(&c->view);
		struct mt_leaks l = {.sites = calloc(nl ? nl : 1, sizeof(*l.sites))};
		if (!l.sites)
			goto out;
		if (mt_live_leaks_read(&c->view, p, &l, nl) > 0 && !(p->leaks = mt_leaks_dup(&l))) {
			free(l.sites);
			goto out;
		}
		free(l.sites);
	}
	*out = p;
	p = NULL;
	ret = 0;
out:
	mt_profile_free(p);
	free(tmp.funcs);
	free(tmp.sites);
	free(tmp.pools);
	free(scratch);
	return ret;
}

int mt_live_dirs(char ***out, size_t *n)
{
	const char *base = mt_live_rundir();
	*out = NULL;
	*n = 0;
	DIR *d = opendir(base);
	if (!d)
		return -errno;
	struct dirent *e;
	while ((e = readdir(d))) {
		unsigned uid;
		char tail;
		if (sscanf(e->d_name, "memtap-%u%c", &uid, &tail) != 1)
			continue;
		char **v = realloc(*out, (*n + 1) * sizeof(*v));
		char *path = malloc(strlen(base) + strlen(e->d_name) + 2);
		if (!v || !path) {
			free(v ? NULL : path);
			if (v)
				*out = v;
			free(path);
			break;
		}
		*out = v;
		sprintf(path, "%s/%s", base, e->d_name);
		v[(*n)++] = path;
	}
	closedir(d);
	return 0;
}

void mt_live_dirs_free(char **v, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(v[i]);
	free(v);
}

int mt_live_name_parse(const char *name, int *pid, uint64_t *start_ns)
{
	int used = 0;
	unsigned long long s;
	if (sscanf(name, "%d-%llu.%n", pid, &s, &used) != 2 || !used || strcmp(name + used, MT_LIVE_EXT) ||
	    *pid <= 0)
		return -EINVAL;
	*start_ns = s;
	return 0;
}

int mt_live_find(int pid, char *path, size_t pathlen, char *err, size_t errlen)
{
	char **dirs;
	size_t nd;
	uint64_t best = 0;
	path[0] = '\0';
	if (mt_live_dirs(&dirs, &nd)) {
		snprintf(err, errlen, "no live counter files under %s: %s", mt_live_rundir(), strerror(errno));
		return -ENOENT;
	}
	for (size_t i = 0; i < nd; i++) {
		DIR *d = opendir(dirs[i]);
		struct dirent *e;
		while (d && (e = readdir(d))) {
			int p;
			uint64_t s;
			if (mt_live_name_parse(e->d_name, &p, &s) || p != pid || s < best)
				continue;
			best = s;
			snprintf(path, pathlen, "%s/%s", dirs[i], e->d_name);
		}
		if (d)
			closedir(d);
	}
	mt_live_dirs_free(dirs, nd);
	if (!path[0]) {
		snprintf(err, errlen, "process %d has no live counter file under %s/memtap-*/ (not traced by "
			 "memtap, or its agent could not make one)", pid, mt_live_rundir());
		return -ENOENT;
	}
	return 0;
}

/* Control sockets (include/memtap/ctl.h) of processes that are gone: an
 * agent removes its own at exit, but not when it is killed. */
static size_t sweep_sockets(void)
{
	size_t removed = 0;
	const char *base = mt_ctl_rundir();
	DIR *top = opendir(base);
	struct dirent *e;
	while (top && (e = readdir(top))) {
		unsigned uid;
		char tail, dir[PATH_MAX];
		if (sscanf(e->d_name, "memtap-%u%c", &uid, &tail) != 1)
			continue;
		snprintf(dir, sizeof(dir), "%s/%s", base, e->d_name);
		DIR *d = opendir(dir);
		struct dirent *s;
		while (d && (s = readdir(d))) {
			int pid, used = 0;
			char path[PATH_MAX];
			if (sscanf(s->d_name, "%d.sock%n", &pid, &used) != 1 || s->d_name[used] || pid <= 0)
				continue;
			snprintf(path, sizeof(path), "%s/%s", dir, s->d_name);
			struct stat st;
			if (!mt_proc_start(pid, NULL) && lstat(path, &st) == 0 && S_ISSOCK(st.st_mode) &&
			    unlink(path) == 0)
				removed++;
		}
		if (d)
			closedir(d);
	}
	if (top)
		closedir(top);
	return removed;
}

int mt_live_sweep(void)
{
	char **dirs;
	size_t nd, removed = 0;
	if (mt_live_dirs(&dirs, &nd))
		return 0;
	for (size_t i = 0; i < nd; i++) {
		DIR *d = opendir(dirs[i]);
		struct dirent *e;
		while (d && (e = readdir(d))) {
			int pid, used = 0;
			uint64_t s;
			unsigned long long ns;
			unsigned k;
			char path[PATH_MAX], err[256];
			/* A dump spooled by a process for its session: orphaned once
			 * the process is gone and its live file too (the session
			 * takes spools before it writes the final profile). */
			if (sscanf(e->d_name, "%d-%llu-%u.mtp%n", &pid, &ns, &k, &used) == 3 && !e->d_name[used]) {
				struct stat st;
				snprintf(path, sizeof(path), "%s/%d-%llu.%s", dirs[i], pid, ns, MT_LIVE_EXT);
				if (!mt_proc_start(pid, NULL) && stat(path, &st) != 0) {
					snprintf(path, sizeof(path), "%s/%s", dirs[i], e->d_name);
					removed += unlink(path) == 0;
				}
				continue;
			}
			if (mt_live_name_parse(e->d_name, &pid, &s))
				continue;
			struct mt_live_hdr h;
			snprintf(path, sizeof(path), "%s/%s", dirs[i], e->d_name);
			if (mt_live_read_header(path, &h, err, sizeof(err))) {
				/* Another memtap build's (another layout), or damaged:
				 * its process gone and the file untouched for 10
				 * minutes, nobody is going to read it. */
				struct stat st;
				if (!mt_proc_start(pid, NULL) && stat(path, &st) == 0 && time(NULL) - st.st_mtime > 600 &&
				    unlink(path) == 0)
					removed++;
				continue;
			}
			char state = 0;
			uint64_t start = mt_proc_start(pid, &state);
			int alive = start && start == h.proc_start && state != 'Z';
			/* A session that still runs reads the file of its dead
			 * member next; one that is gone never will. */
			uint64_t sstart = h.session_pid > 0 ? mt_proc_start(h.session_pid, NULL) : 0;
			int session = sstart && sstart == h.session_start;
			if (!alive && !session && unlink(path) == 0)
				removed++;
		}
		if (d)
			closedir(d);
	}
	mt_live_dirs_free(dirs, nd);
	removed += sweep_sockets();
	return (int)removed;
}
