/*
 * Where glibc keeps its allocator's variables in a process, from Debian's
 * libc6-dbg: the detached debug file of the process's libc, found by its
 * build-id under /usr/lib/debug/.build-id/, has the local symbols mp_,
 * main_arena, narenas and thread_arena (a TLS symbol) that libc.so.6's
 * dynamic symbol table does not.  For --glibc (the agent gets the offsets
 * as an option and checks the build-id against its own libc) and for
 * reading a process from outside (eBPF, `ctl stats` without an agent).
 */
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <gelf.h>
#include <inttypes.h>
#include <libelf.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <malloc.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "glibc_syms.h"

/* The libc of PID (0: this process): its path as PID sees it, and where
 * it is mapped. */
static int find_libc(pid_t pid, char *path, size_t len, uint64_t *base)
{
	char maps[64], line[PATH_MAX + 128];
	snprintf(maps, sizeof(maps), pid ? "/proc/%d/maps" : "/proc/self/maps", (int)pid);
	FILE *f = fopen(maps, "re");
	if (!f)
		return -errno;
	int found = -ENOENT;
	while (fgets(line, sizeof(line), f)) {
		unsigned long long start, off;
		int at = 0;
		if (sscanf(line, "%llx-%*x %*s %llx %*s %*s%n", &start, &off, &at) < 2 || !at)
			continue;
		char *name = line + at;
		while (*name == ' ')
			name++;
		name[strcspn(name, "\n")] = '\0';
		const char *slash = strrchr(name, '/');
		if (off == 0 && slash && !strncmp(slash + 1, "libc.so", 7)) {
			snprintf(path, len, "%s", name);
			*base = start;
			found = 0;
			break;
		}
	}
	fclose(f);
	return found;
}

static int build_id(Elf *e, char *hex, size_t len)
{
	size_t n;
	if (elf_getphdrnum(e, &n))
		return -EINVAL;
	for (size_t i = 0; i < n; i++) {
		GElf_Phdr ph;
		if (!gelf_getphdr(e, (int)i, &ph) || ph.p_type != PT_NOTE)
			continue;
		Elf_Data *d = elf_getdata_rawchunk(e, ph.p_offset, ph.p_filesz, ELF_T_NHDR);
		if (!d)
			continue;
		size_t off = 0, name_off, desc_off;
		GElf_Nhdr nh;
		while ((off = gelf_getnote(d, off, &nh, &name_off, &desc_off)) > 0) {
			if (nh.n_type != NT_GNU_BUILD_ID || nh.n_namesz != 4 ||
			    memcmp((char *)d->d_buf + name_off, "GNU", 4))
				continue;
			size_t k = 0;
			for (uint32_t j = 0; j < nh.n_descsz && k + 3 < len; j++)
				k += (size_t)snprintf(hex + k, len - k, "%02x", ((uint8_t *)d->d_buf)[desc_off + j]);
			return 0;
		}
	}
	return -ENOENT;
}

int mt_glibc_syms_lookup(pid_t pid, struct mt_glibc_syms *s, char *opt, size_t optlen, char *why, size_t whylen)
{
	char path[PATH_MAX], file[PATH_MAX + 64], id[129] = "";
	uint64_t base = 0;
	memset(s, 0, sizeof(*s));
	opt[0] = '\0';
	int err = find_libc(pid, path, sizeof(path), &base);
	if (err) {
		snprintf(why, whylen, "no libc.so mapped in %s", pid ? "the process" : "memtap");
		return err;
	}
	/* The file as the process sees it (it may run in another mount
	 * namespace): through /proc/PID/root. */
	snprintf(file, sizeof(file), pid ? "/proc/%d/root%s" : "%.0d%s", (int)pid, path);
	elf_version(EV_CURRENT);
	int fd = open(file, O_RDONLY | O_CLOEXEC);
	Elf *e = fd >= 0 ? elf_begin(fd, ELF_C_READ_MMAP, NULL) : NULL;
	if (!e || build_id(e, id, sizeof(id))) {
		snprintf(why, whylen, "cannot read the build-id of %s", path);
		err = -ENOENT;
		goto out;
	}
	elf_end(e);
	close(fd);
	e = NULL;
	snprintf(file, sizeof(file), "/usr/lib/debug/.build-id/%.2s/%s.debug", id, id + 2);
	fd = open(file, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		snprintf(why, whylen, "no libc6-dbg symbols for %s (build-id %s: %s is missing; "
			 "apt-get install libc6-dbg, of the same version as libc6)", path, id, file);
		err = -ENOENT;
		goto out;
	}
	e = elf_begin(fd, ELF_C_READ_MMAP, NULL);
	Elf_Scn *scn = NULL;
	uint64_t mp = 0, ma = 0, na = 0, cb = 0, tls = 0, mp_size = 0, ma_size = 0;
	while (e && (scn = elf_nextscn(e, scn))) {
		GElf_Shdr sh;
		if (!gelf_getshdr(scn, &sh) || sh.sh_type != SHT_SYMTAB)
			continue;
		Elf_Data *d = elf_getdata(scn, NULL);
		size_t n = sh.sh_entsize ? sh.sh_size / sh.sh_entsize : 0;
		for (size_t i = 0; d && i < n; i++) {
			GElf_Sym sym;
			if (!gelf_getsym(d, (int)i, &sym))
				continue;
			const char *name = elf_strptr(e, sh.sh_link, sym.st_name);
			if (!name)
				continue;
			if (!strcmp(name, "mp_") && GELF_ST_TYPE(sym.st_info) == STT_OBJECT)
				mp = sym.st_value, mp_size = sym.st_size;
			else if (!strcmp(name, "main_arena") && GELF_ST_TYPE(sym.st_info) == STT_OBJECT)
				ma = sym.st_value, ma_size = sym.st_size;
			else if (!strcmp(name, "narenas") && GELF_ST_TYPE(sym.st_info) == STT_OBJECT)
				na = sym.st_value;
			else if (!strcmp(name, "__curbrk") && GELF_ST_TYPE(sym.st_info) == STT_OBJECT)
				cb = sym.st_value;
			else if (!strcmp(name, "thread_arena") && GELF_ST_TYPE(sym.st_info) == STT_TLS)
				tls = sym.st_value;
		}
	}
	if (!mp || !ma) {
		snprintf(why, whylen, "%s has no mp_ or main_arena symbol", file);
		err = -ENOENT;
		goto out;
	}
	if (mp_size != MT_GLIBC_MP_SIZE || ma_size != MT_GLIBC_ARENA_SIZE) {
		snprintf(why, whylen, "this glibc's malloc_par (%" PRIu64 " bytes) or malloc_state (%" PRIu64
			 " bytes) is not the layout memtap reads (%d, %d: glibc 2.36)", mp_size, ma_size,
			 MT_GLIBC_MP_SIZE, MT_GLIBC_ARENA_SIZE);
		err = -ENOTSUP;
		goto out;
	}
	s->libc_base = base;
	s->mp = base + mp;
	s->main_arena = base + ma;
	s->narenas = na ? base + na : 0;
	s->curbrk = cb ? base + cb : 0;
	s->thread_arena = tls;
	snprintf(opt, optlen, "%s:%" PRIx64 ":%" PRIx64 ":%" PRIx64 ":%" PRIx64 ":%" PRIx64, id, mp, ma, na, cb, tls);
	snprintf(why, whylen, "glibc's variables from %s", file);
	err = 0;
out:
	if (e)
		elf_end(e);
	if (fd >= 0)
		close(fd);
	return err;
}

/* What the kernel tells of a process's memory, for a process with no agent
 * in it: /proc/PID/smaps_rollup and status, and glibc's heaps from maps. */
int mt_outside_stats(pid_t pid, struct mt_alloc_stats *s, char *why, size_t whylen)
{
	char path[64], line[256];
	memset(s, 0, sizeof(*s));
	snprintf(s->allocator, sizeof(s->allocator), "none");
	snprintf(s->source, sizeof(s->source), "/proc/%d/smaps_rollup, /proc/%d/status (from outside)", (int)pid,
		 (int)pid);
	snprintf(path, sizeof(path), "/proc/%d/smaps_rollup", (int)pid);
	FILE *f = fopen(path, "re");
	if (!f) {
		snprintf(why, whylen, "cannot read %s: %s", path, strerror(errno));
		return -errno;
	}
	while (fgets(line, sizeof(line), f)) {
		char key[64];
		unsigned long long kb;
		if (sscanf(line, "%63[A-Za-z_]: %llu kB", key, &kb) == 2) {
			char k[MT_STATS_KEY];
			snprintf(k, sizeof(k), "smaps_rollup.%s_bytes", key);
			mt_stats_add(s, k, kb * 1024);
		}
	}
	fclose(f);
	snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
	if ((f = fopen(path, "re"))) {
		while (fgets(line, sizeof(line), f)) {
			char key[64];
			unsigned long long kb;
			if (sscanf(line, "%63[A-Za-z]: %llu kB", key, &kb) == 2 &&
			    (!strcmp(key, "VmPeak") || !strcmp(key, "VmSize") || !strcmp(key, "VmHWM") ||
			     !strcmp(key, "VmRSS") || !strcmp(key, "VmData") || !strcmp(key, "RssAnon"))) {
				char k[MT_STATS_KEY];
				snprintf(k, sizeof(k), "status.%s_bytes", key);
				mt_stats_add(s, k, kb * 1024);
			}
		}
		fclose(f);
	}
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	s->taken_ns = (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
	return 0;
}

/* ---- --glibc with the eBPF backend: the process read from outside ---- */

/* Per traced process: the state read so far (thresholds' history, lock
 * waits carry over between looks) and its libc's symbols. */
#define OUTSIDE_MAX 256
static struct outside {
	pid_t pid;
	int looked, have_syms, gone;
	uint64_t first_ns, last_ns;
	struct mt_glibc_syms syms;
	struct mt_glibc *g;
} outside[OUTSIDE_MAX];

static struct outside *outside_of(pid_t pid)
{
	struct outside *free_slot = NULL;
	for (int i = 0; i < OUTSIDE_MAX; i++) {
		if (outside[i].pid == pid && outside[i].g)
			return &outside[i];
		if (!free_slot && (!outside[i].g || outside[i].gone))
			free_slot = &outside[i];
	}
	if (!free_slot)
		return NULL;
	struct mt_glibc *g = free_slot->g ? free_slot->g : calloc(1, sizeof(*g));
	if (!g)
		return NULL;
	memset(free_slot, 0, sizeof(*free_slot));
	memset(g, 0, sizeof(*g));
	free_slot->pid = pid;
	free_slot->g = g;
	return free_slot;
}

static void outside_read(struct outside *o)
{
	if (!o->looked) {
		char opt[256], why[PATH_MAX + 256];
		o->have_syms = !mt_glibc_syms_lookup(o->pid, &o->syms, opt, sizeof(opt), why, sizeof(why));
		o->looked = 1;
	}
	mt_glibc_read(o->pid, o->have_syms ? &o->syms : NULL, NULL, NULL, 0, o->g);
}

void mt_glibc_outside_tick(pid_t pid)
{
	struct outside *o = outside_of(pid);
	if (!o || o->gone)
		return;
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	uint64_t now = (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
	if (!o->first_ns)
		o->first_ns = now;
	/* a full look every 10 samples; the arenas must be known to match waits */
	if (o->g->samples % 10 == 0)
		outside_read(o);
	mt_glibc_sample_waits(pid, o->g);
	o->last_ns = now;
	if (o->g->samples > 1)
		o->g->sample_ms = (o->last_ns - o->first_ns) / 1000000 / (o->g->samples - 1);
}

/* The heap events of the eBPF side, counted from the system calls: the
 * exact growth and shrinking of the program break. */
static void from_syscalls(struct mt_glibc *g, const struct mt_profile *p)
{
	const struct mt_func *grow = mt_profile_find(p, "heap: brk grow");
	const struct mt_func *shrink = mt_profile_find(p, "heap: brk shrink");
	g->sbrk_grow_bytes = grow ? grow->bytes : 0;
	g->sbrk_grows = grow ? grow->calls : 0;
	g->sbrk_shrink_bytes = shrink ? shrink->bytes : 0;
	g->sbrk_shrinks = shrink ? shrink->calls : 0;
	g->flags |= MT_GLIBC_F_SYSCALLS;
}

void mt_glibc_outside_fill(pid_t pid, int exited, struct mt_profile *p)
{
	struct outside *o = outside_of(pid);
	if (!o)
		return;
	if (!exited && !o->gone) {
		outside_read(o);
		struct mt_alloc_stats *st = calloc(1, sizeof(*st));
		char why[256];
		if (st && !mt_outside_stats(pid, st, why, sizeof(why))) {
			free(p->stats);
			p->stats = st;
		} else {
			free(st);
		}
	}
	if (exited)
		o->gone = 1; /* what was seen last stays: the process's memory is gone */
	if (!o->g->taken_ns)
		return;
	struct mt_glibc *g = malloc(sizeof(*g));
	if (!g)
		return;
	*g = *o->g;
	from_syscalls(g, p);
	o->g->flags |= MT_GLIBC_F_SYSCALLS;
	free(p->glibc);
	p->glibc = g;
}
