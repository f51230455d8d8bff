/*
 * The allocator's own view, inside the process (include/memtap/glibc.h):
 * - its statistics, from whichever allocator serves malloc (glibc's
 *   mallinfo2 and malloc_info, jemalloc's mallctl, tcmalloc's
 *   MallocExtension numeric properties, mimalloc's mi_process_info and
 *   mi_stats_print_out), for `ctl stats` and, kept in the live file
 *   (hdr.allocstats), for every profile the session writes;
 * - the jemalloc bridge: `ctl activate|deactivate|dump` also drive
 *   jemalloc's prof.active and prof.dump when it was built with profiling
 *   and runs with prof:true (seeds/004's plugin, without the plugin);
 * - --glibc: the control thread reads glibc's state (src/core/glibc.c) on
 *   its ticks into the live file (hdr.glibc), samples lock waits, and knows
 *   each thread's thread_arena from the threads that registered here.
 *
 * Everything here runs on the control thread or at exit, with the
 * recursion guard set: the allocator calls it makes are not counted, and
 * nothing runs on the program's allocation paths except one registration
 * per thread under --glibc.
 */
#include <dirent.h>
#include <dlfcn.h>
#include <limits.h>
#include <sys/stat.h>
#include <errno.h>
#include <link.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "agent.h"
#include "memtap/format.h"
#include "memtap/glibc.h"

/* ---- statistics ---- */

typedef int (*mallctl_fn)(const char *, void *, size_t *, void *, size_t);
typedef int (*tc_prop_fn)(const char *, size_t *);
typedef int (*mi_info_fn)(size_t *, size_t *, size_t *, size_t *, size_t *, size_t *, size_t *, size_t *);

static struct mt_alloc_stats *live_stats; /* in the live file, once taken */
static pthread_mutex_t stats_lock = PTHREAD_MUTEX_INITIALIZER;

/* The part of malloc_info's XML this needs, without an XML parser: each
 * <heap nr="N"> and the totals after the last one. */
static void glibc_info(struct mt_alloc_stats *s, const char *xml)
{
	int heaps = 0, in_heap = -1;
	for (const char *p = xml; (p = strchr(p, '<')); p++) {
		int nr;
		unsigned long long size;
		char type[32];
		char key[MT_STATS_KEY];
		if (sscanf(p, "<heap nr=\"%d\"", &nr) == 1) {
			in_heap = nr;
			heaps++;
		} else if (!strncmp(p, "</heap>", 7)) {
			in_heap = -1;
		} else if (sscanf(p, "<system type=\"%31[a-z]\" size=\"%llu\"", type, &size) == 2 ||
			   sscanf(p, "<aspace type=\"%31[a-z]\" size=\"%llu\"", type, &size) == 2) {
			const char *what = p[1] == 's' ? "system" : "aspace";
			if (in_heap >= 0 && in_heap < 16)
				snprintf(key, sizeof(key), "malloc_info.heap.%d.%s_%s", in_heap, what, type);
			else if (in_heap < 0)
				snprintf(key, sizeof(key), "malloc_info.%s_%s", what, type);
			else
				continue;
			mt_stats_add(s, key, size);
		}
	}
	mt_stats_add(s, "malloc_info.arenas", (uint64_t)heaps);
}

static void glibc_stats(struct mt_alloc_stats *s, struct mt_buf *text)
{
	struct mallinfo2 mi = mallinfo2();
	snprintf(s->source, sizeof(s->source), "mallinfo2, malloc_info");
	mt_stats_add(s, "mallinfo2.arena", mi.arena);
	mt_stats_add(s, "mallinfo2.ordblks", mi.ordblks);
	mt_stats_add(s, "mallinfo2.smblks", mi.smblks);
	mt_stats_add(s, "mallinfo2.hblks", mi.hblks);
	mt_stats_add(s, "mallinfo2.hblkhd", mi.hblkhd);
	mt_stats_add(s, "mallinfo2.fsmblks", mi.fsmblks);
	mt_stats_add(s, "mallinfo2.uordblks", mi.uordblks);
	mt_stats_add(s, "mallinfo2.fordblks", mi.fordblks);
	mt_stats_add(s, "mallinfo2.keepcost", mi.keepcost);
	char *xml = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&xml, &len);
	if (!f)
		return;
	malloc_info(0, f);
	fclose(f);
	if (xml)
		glibc_info(s, xml);
	if (text) {
		mt_reply(text, "\nglibc (mallinfo2):\n");
		mt_reply(text, "  arena     %zu  (bytes from sbrk)\n", mi.arena);
		mt_reply(text, "  ordblks   %zu  (free chunks)\n", mi.ordblks);
		mt_reply(text, "  hblks     %zu  (mmapped chunks)\n", mi.hblks);
		mt_reply(text, "  hblkhd    %zu  (bytes in mmapped chunks)\n", mi.hblkhd);
		mt_reply(text, "  uordblks  %zu  (bytes in use)\n", mi.uordblks);
		mt_reply(text, "  fordblks  %zu  (bytes free)\n", mi.fordblks);
		mt_reply(text, "  keepcost  %zu  (releasable at the top)\n", mi.keepcost);
		if (xml) {
			mt_reply(text, "\nglibc (malloc_info):\n");
			mt_reply_bytes(text, xml, len);
		}
	}
	free(xml);
}

static void je_text_cb(void *b, const char *s)
{
	mt_reply_bytes(b, s, strlen(s));
}

static void jemalloc_stats(struct mt_alloc_stats *s, struct mt_buf *text, mallctl_fn mallctl)
{
	uint64_t epoch = 1;
	size_t sz = sizeof(epoch);
	mallctl("epoch", &epoch, &sz, &epoch, sz); /* refresh the cached statistics */
	snprintf(s->source, sizeof(s->source), "mallctl (after \"epoch\")");
	static const char *const keys[] = {"stats.allocated", "stats.active", "stats.metadata",
					   "stats.resident", "stats.mapped", "stats.retained"};
	for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
		size_t v = 0;
		sz = sizeof(v);
		if (mallctl(keys[i], &v, &sz, NULL, 0) == 0)
			mt_stats_add(s, keys[i], v);
	}
	unsigned narenas = 0;
	sz = sizeof(narenas);
	if (mallctl("arenas.narenas", &narenas, &sz, NULL, 0) == 0)
		mt_stats_add(s, "arenas.narenas", narenas);
	size_t page = 4096;
	sz = sizeof(page);
	mallctl("arenas.page", &page, &sz, NULL, 0);
	/* Per arena, the ones in use (an arena no thread ever took has no
	 * pages): at most 16 of them, by index. */
	int shown = 0;
	for (unsigned a = 0; a < narenas && shown < 16; a++) {
		char key[MT_STATS_KEY], out[MT_STATS_KEY];
		static const char *const per[] = {"pactive", "pdirty", "mapped", "resident", "nthreads",
						  "small.allocated", "large.allocated"};
		size_t pactive = 0;
		snprintf(key, sizeof(key), "stats.arenas.%u.pactive", a);
		sz = sizeof(pactive);
		if (mallctl(key, &pactive, &sz, NULL, 0) || !pactive)
			continue;
		shown++;
		for (size_t i = 0; i < sizeof(per) / sizeof(per[0]); i++) {
			size_t v = 0;
			unsigned u = 0;
			snprintf(key, sizeof(key), "stats.arenas.%u.%s", a, per[i]);
			int isu = !strcmp(per[i], "nthreads");
			sz = isu ? sizeof(u) : sizeof(v);
			if (mallctl(key, isu ? (void *)&u : (void *)&v, &sz, NULL, 0))
				continue;
			if (isu)
				v = u;
			/* pages as bytes, like the totals */
			if (per[i][0] == 'p')
				v *= page;
			snprintf(out, sizeof(out), "arena.%u.%s%s", a, per[i], per[i][0] == 'p' ? "_bytes" : "");
			mt_stats_add(s, out, v);
		}
	}
	uint8_t prof = 0, active = 0;
	sz = 1;
	if (mallctl("opt.prof", &prof, &sz, NULL, 0) == 0) {
		mt_stats_add(s, "opt.prof", prof);
		sz = 1;
		if (prof && mallctl("prof.active", &active, &sz, NULL, 0) == 0)
			mt_stats_add(s, "prof.active", active);
	}
	if (text) {
		typedef void (*print_fn)(void (*)(void *, const char *), void *, const char *);
		print_fn print = (print_fn)dlsym(RTLD_DEFAULT, "malloc_stats_print");
		mt_reply(text, "\njemalloc (mallctl):\n");
		for (uint32_t i = 0; i < s->n; i++)
			mt_reply(text, "  %-32s %llu\n", s->v[i].key, (unsigned long long)s->v[i].value);
		if (print) {
			mt_reply(text, "\njemalloc (malloc_stats_print):\n");
			print(je_text_cb, text, "ablxeh");
		}
	}
}

/* tcmalloc's MallocExtension numeric properties (gperftools'
 * malloc_extension.h lists them; each one it does not know fails). */
static void tcmalloc_stats(struct mt_alloc_stats *s, struct mt_buf *text, tc_prop_fn prop)
{
	static const char *const keys[] = {
		"generic.current_allocated_bytes", "generic.heap_size", "generic.total_physical_bytes",
		"tcmalloc.pageheap_free_bytes", "tcmalloc.pageheap_unmapped_bytes", "tcmalloc.slack_bytes",
		"tcmalloc.central_cache_free_bytes", "tcmalloc.transfer_cache_free_bytes",
		"tcmalloc.thread_cache_free_bytes", "tcmalloc.current_total_thread_cache_bytes",
		"tcmalloc.max_total_thread_cache_bytes", "tcmalloc.aggressive_memory_decommit",
		"tcmalloc.heap_limit_mb"};
	snprintf(s->source, sizeof(s->source), "MallocExtension_GetNumericProperty");
	for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
		size_t v = 0;
		if (prop(keys[i], &v))
			mt_stats_add(s, keys[i], v);
	}
	if (text) {
		typedef void (*getstats_fn)(char *, int);
		getstats_fn gs = (getstats_fn)dlsym(RTLD_DEFAULT, "MallocExtension_GetStats");
		mt_reply(text, "\ntcmalloc (MallocExtension numeric properties):\n");
		for (uint32_t i = 0; i < s->n; i++)
			mt_reply(text, "  %-42s %llu\n", s->v[i].key, (unsigned long long)s->v[i].value);
		if (gs) {
			static char buf[16384];
			buf[0] = '\0';
			gs(buf, sizeof(buf));
			mt_reply(text, "\ntcmalloc (MallocExtension_GetStats):\n");
			mt_reply_bytes(text, buf, strnlen(buf, sizeof(buf)));
		}
	}
}

static void mi_text_cb(const char *msg, void *b)
{
	mt_reply_bytes(b, msg, strlen(msg));
}

static void mimalloc_stats(struct mt_alloc_stats *s, struct mt_buf *text, mi_info_fn info)
{
	size_t elapsed = 0, user = 0, sys = 0, rss = 0, peak_rss = 0, commit = 0, peak_commit = 0, faults = 0;
	info(&elapsed, &user, &sys, &rss, &peak_rss, &commit, &peak_commit, &faults);
	snprintf(s->source, sizeof(s->source), "mi_process_info");
	mt_stats_add(s, "process.elapsed_ms", elapsed);
	mt_stats_add(s, "process.user_ms", user);
	mt_stats_add(s, "process.system_ms", sys);
	mt_stats_add(s, "process.current_rss", rss);
	mt_stats_add(s, "process.peak_rss", peak_rss);
	mt_stats_add(s, "process.current_commit", commit);
	mt_stats_add(s, "process.peak_commit", peak_commit);
	mt_stats_add(s, "process.page_faults", faults);
	typedef int (*ver_fn)(void);
	ver_fn ver = (ver_fn)dlsym(RTLD_DEFAULT, "mi_version");
	if (ver)
		mt_stats_add(s, "mi_version", (uint64_t)ver());
	if (text) {
		typedef void (*print_fn)(void (*)(const char *, void *), void *);
		print_fn print = (print_fn)dlsym(RTLD_DEFAULT, "mi_stats_print_out");
		mt_reply(text, "\nmimalloc (mi_process_info):\n");
		for (uint32_t i = 0; i < s->n; i++)
			mt_reply(text, "  %-24s %llu\n", s->v[i].key, (unsigned long long)s->v[i].value);
		if (print) {
			mt_reply(text, "\nmimalloc (mi_stats_print_out):\n");
			print(mi_text_cb, text);
		}
	}
}

/* TRY: at exit, where waiting for the control thread is not an option. */
static int take(struct mt_buf *text, int try)
{
	static struct mt_alloc_stats s; /* under stats_lock */
	char path[512];
	const char *alloc = mt_allocator_name(path, sizeof(path));
	if (try ? pthread_mutex_trylock(&stats_lock) : pthread_mutex_lock(&stats_lock))
		return -EBUSY;
	memset(&s, 0, sizeof(s));
	snprintf(s.allocator, sizeof(s.allocator), "%s", alloc);
	mallctl_fn mallctl = (mallctl_fn)dlsym(RTLD_DEFAULT, "mallctl");
	tc_prop_fn tcprop = (tc_prop_fn)dlsym(RTLD_DEFAULT, "MallocExtension_GetNumericProperty");
	mi_info_fn miinfo = (mi_info_fn)dlsym(RTLD_DEFAULT, "mi_process_info");
	int known = 1;
	if (!strcmp(alloc, "jemalloc") && mallctl)
		jemalloc_stats(&s, text, mallctl);
	else if (!strcmp(alloc, "tcmalloc") && tcprop)
		tcmalloc_stats(&s, text, tcprop);
	else if (!strcmp(alloc, "mimalloc") && miinfo)
		mimalloc_stats(&s, text, miinfo);
	else if (!strcmp(alloc, "glibc"))
		glibc_stats(&s, text);
	else
		known = 0;
	if (!known && text)
		mt_reply(text, "\n%s (%s): no statistics interface known to memtap for this allocator\n", alloc,
			 path);
	s.taken_ns = mt_now_ns();
	if (!live_stats && (live_stats = mt_shared_alloc(sizeof(*live_stats))))
		__atomic_store_n(&mt_sh->allocstats, (uint64_t)(uintptr_t)live_stats, __ATOMIC_RELEASE);
	if (live_stats) {
		/* from the second word on: the first holds seq (and n, rewritten
		 * just after under the same odd sequence) */
		s.seq = __atomic_load_n(&live_stats->seq, __ATOMIC_RELAXED) | 1;
		mt_seq_write(&live_stats->seq, live_stats, &s, sizeof(s));
	}
	pthread_mutex_unlock(&stats_lock);
	return known ? 0 : -ENOTSUP;
}

int mt_allocstats_take(struct mt_buf *text)
{
	return take(text, 0);
}

/* ---- the jemalloc bridge ---- */

/* The file prof.dump just wrote: PREFIX.<pid>.<seq>.m<mseq>.heap, the
 * newest of this process's made since AFTER (jemalloc does not say). */
static int newest_dump(const char *prefix, uint64_t after, char *out, size_t len)
{
	char dir[PATH_MAX], start[PATH_MAX];
	const char *slash = strrchr(prefix, '/');
	snprintf(dir, sizeof(dir), "%.*s", slash ? (int)(slash - prefix) : 1, slash ? prefix : ".");
	if (!dir[0])
		snprintf(dir, sizeof(dir), "/");
	snprintf(start, sizeof(start), "%s.%d.", slash ? slash + 1 : prefix, (int)getpid());
	DIR *d = opendir(dir);
	if (!d)
		return 0;
	struct dirent *de;
	uint64_t best = 0;
	while ((de = readdir(d))) {
		size_t n = strlen(de->d_name);
		if (strncmp(de->d_name, start, strlen(start)) || n < 5 || strcmp(de->d_name + n - 5, ".heap"))
			continue;
		struct stat st;
		char path[PATH_MAX];
		snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
		uint64_t t = stat(path, &st) ? 0 : (uint64_t)st.st_mtim.tv_sec * 1000000000ull + (uint64_t)st.st_mtim.tv_nsec;
		if (t + 1000000000ull >= after && t >= best) {
			best = t;
			snprintf(out, len, "%s", path);
		}
	}
	closedir(d);
	return best != 0;
}

void mt_jemalloc_bridge(int what, struct mt_buf *b)
{
	char path[512];
	if (strcmp(mt_allocator_name(path, sizeof(path)), "jemalloc"))
		return;
	mallctl_fn mallctl = (mallctl_fn)dlsym(RTLD_DEFAULT, "mallctl");
	uint8_t prof = 0;
	size_t sz = 1;
	if (!mallctl)
		return;
	/* Silent unless jemalloc profiles: `ctl stats` shows opt.prof, and
	 * scripts read dump's first line as the profile's path. */
	if (mallctl("opt.prof", &prof, &sz, NULL, 0) || !prof)
		return;
	if (what == 'a' || what == 'd') {
		uint8_t on = what == 'a', was = 0;
		sz = 1;
		int e = mallctl("prof.active", &was, &sz, &on, 1);
		if (e)
			mt_reply(b, "jemalloc: prof.active could not be set: %s\n", strerror(e));
		else
			mt_reply(b, "jemalloc: prof.active %s -> %s\n", was ? "true" : "false", on ? "true" : "false");
		return;
	}
	/* dump: jemalloc names the file from its prof_prefix; prof.dump with
	 * no name writes <prefix>.<pid>.<seq>.m<mseq>.heap in its directory. */
	uint8_t active = 0;
	sz = 1;
	mallctl("prof.active", &active, &sz, NULL, 0);
	const char *prefix = NULL;
	sz = sizeof(prefix);
	mallctl("opt.prof_prefix", &prefix, &sz, NULL, 0);
	uint64_t before = mt_now_ns();
	int e = mallctl("prof.dump", NULL, NULL, NULL, 0);
	char file[PATH_MAX];
	if (e)
		mt_reply(b, "jemalloc: prof.dump failed: %s (prof_prefix %s: is its directory writable by the process?)\n",
			 strerror(e), prefix ? prefix : "?");
	else if (newest_dump(prefix ? prefix : "jeprof", before, file, sizeof(file)))
		mt_reply(b, "jemalloc: prof.dump wrote %s (prof.active %s)\n", file, active ? "true" : "false");
	else
		mt_reply(b, "jemalloc: prof.dump wrote %s.%d.*.m*.heap (prof.active %s)\n", prefix ? prefix : "jeprof",
			 (int)getpid(), active ? "true" : "false");
}

/* ---- --glibc ---- */

static struct mt_glibc_syms syms;
static int glibc_on;
static struct mt_glibc *live_glibc;  /* in the live file */
static struct mt_glibc work;        /* the control thread's copy */
static int64_t tls_delta;           /* libc's TLS block minus the thread pointer, every thread */
static int tls_known;

#define GLIBC_THREADS 1024
static struct {
	uint32_t tid;
	uint64_t tp; /* its thread pointer: &thread_arena is tp + tls_delta + syms.thread_arena */
} reg[GLIBC_THREADS];
static uint32_t nreg; /* (atomic) slots handed out */

int mt_glibc_on(void)
{
	return __atomic_load_n(&glibc_on, __ATOMIC_RELAXED);
}

/* glibc_syms=BUILDID:MP:MAIN_ARENA:NARENAS:CURBRK:TLS (hex offsets from
 * libc's base, from the memtap command's libc6-dbg lookup), used only when
 * the build-id is that of the libc this process runs. */
struct note_scan {
	const char *want;
	uint64_t base;
	int match;
};

static int phdr_cb(struct dl_phdr_info *info, size_t size, void *arg)
{
	(void)size;
	struct note_scan *ns = arg;
	if (!info->dlpi_name || !strstr(info->dlpi_name, "/libc.so"))
		return 0;
	ns->base = info->dlpi_addr;
	for (int i = 0; i < info->dlpi_phnum; i++) {
		const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
		if (ph->p_type != PT_NOTE)
			continue;
		const uint8_t *p = (const uint8_t *)(info->dlpi_addr + ph->p_vaddr), *end = p + ph->p_memsz;
		while (p + sizeof(ElfW(Nhdr)) <= end) {
			const ElfW(Nhdr) *nh = (const ElfW(Nhdr) *)p;
			const uint8_t *desc = p + sizeof(*nh) + ((nh->n_namesz + 3) & ~3u);
			if (nh->n_type == NT_GNU_BUILD_ID && nh->n_namesz == 4 && !memcmp(p + sizeof(*nh), "GNU", 4)) {
				char hex[129];
				size_t k = 0;
				for (uint32_t j = 0; j < nh->n_descsz && k + 2 < sizeof(hex); j++)
					k += (size_t)snprintf(hex + k, sizeof(hex) - k, "%02x", desc[j]);
				ns->match = !strcmp(hex, ns->want);
			}
			p = desc + ((nh->n_descsz + 3) & ~3u);
		}
	}
	return 1;
}

static void parse_syms(const char *v)
{
	char id[129];
	unsigned long long mp, ma, na, cb, tls;
	if (sscanf(v, "%128[0-9a-f]:%llx:%llx:%llx:%llx:%llx", id, &mp, &ma, &na, &cb, &tls) != 6)
		return;
	struct note_scan ns = {.want = id};
	dl_iterate_phdr(phdr_cb, &ns);
	if (!ns.match) {
		mt_log("--glibc: the libc6-dbg symbols are not those of this process's libc (build-id %s): "
		       "glibc's variables will not be read", id);
		return;
	}
	syms.libc_base = ns.base;
	syms.mp = mp ? ns.base + mp : 0;
	syms.main_arena = ma ? ns.base + ma : 0;
	syms.narenas = na ? ns.base + na : 0;
	syms.curbrk = cb ? ns.base + cb : 0;
	syms.thread_arena = tls;
	/* libc's static TLS block sits at the same distance from every
	 * thread's thread pointer (x86-64, variant II). */
	void *h = dlopen("libc.so.6", RTLD_NOLOAD | RTLD_LAZY);
	void *block = NULL;
	if (h && dlinfo(h, RTLD_DI_TLS_DATA, &block) == 0 && block) {
		tls_delta = (int64_t)((uintptr_t)block - (uintptr_t)__builtin_thread_pointer());
		tls_known = tls != 0;
	}
	if (h)
		dlclose(h);
}

/* Options arrive early (the constructor, maybe inside the first malloc):
 * they are only kept here; the control thread acts on them at its first
 * tick (dladdr, dl_iterate_phdr and dlinfo take the loader's lock). */
static char syms_opt[256];
static int checked; /* the control thread has looked at the options */

int mt_glibc_option(const char *name, const char *v)
{
	if (!strcmp(name, "glibc")) {
		__atomic_store_n(&checked, 0, __ATOMIC_RELAXED);
		__atomic_store_n(&glibc_on, v[0] == '1', __ATOMIC_RELAXED);
		return 0;
	}
	if (!strcmp(name, "glibc_syms")) {
		snprintf(syms_opt, sizeof(syms_opt), "%s", v);
		__atomic_store_n(&checked, 0, __ATOMIC_RELAXED);
		return 0;
	}
	return -EINVAL;
}

/* The first tick of a session: is malloc glibc's, and where are glibc's
 * variables.  0: nothing to observe. */
static int check_options(void)
{
	if (__atomic_load_n(&checked, __ATOMIC_RELAXED))
		return 1;
	char path[512];
	const char *alloc = mt_allocator_name(path, sizeof(path));
	if (strcmp(alloc, "glibc")) {
		mt_log("--glibc: malloc here is %s's (%s), not glibc's: nothing to observe", alloc, path);
		__atomic_store_n(&glibc_on, 0, __ATOMIC_RELAXED);
		return 0;
	}
	memset(&syms, 0, sizeof(syms));
	tls_known = 0;
	if (syms_opt[0])
		parse_syms(syms_opt);
	__atomic_store_n(&checked, 1, __ATOMIC_RELAXED);
	return 1;
}

/* Every thread, once, at its first counted call (whether or not --glibc is
 * on: an attach with --glibc later follows threads that started before). */
#define REG_GONE UINT32_MAX /* a slot whose thread is gone (the control thread saw it) */
void mt_glibc_thread_start(void)
{
	uint32_t i = __atomic_fetch_add(&nreg, 1, __ATOMIC_RELAXED);
	if (i >= GLIBC_THREADS) {
		/* full: the slot of a thread that is gone, if a look found one */
		__atomic_store_n(&nreg, GLIBC_THREADS, __ATOMIC_RELAXED);
		for (i = 0; i < GLIBC_THREADS; i++) {
			uint32_t gone = REG_GONE;
			if (__atomic_load_n(&reg[i].tid, __ATOMIC_RELAXED) == REG_GONE &&
			    __atomic_compare_exchange_n(&reg[i].tid, &gone, 0, 0, __ATOMIC_ACQUIRE, __ATOMIC_RELAXED))
				break;
		}
		if (i >= GLIBC_THREADS)
			return; /* its arena is not followed (the arena's figures still are) */
	}
	reg[i].tp = (uint64_t)(uintptr_t)__builtin_thread_pointer();
	__atomic_store_n(&reg[i].tid, (uint32_t)syscall(SYS_gettid), __ATOMIC_RELEASE);
}

static void publish(void)
{
	if (!live_glibc)
		live_glibc = mt_shared_alloc(sizeof(*live_glibc));
	if (!live_glibc)
		return;
	if (!__atomic_load_n(&mt_sh->glibc, __ATOMIC_RELAXED))
		__atomic_store_n(&mt_sh->glibc, (uint64_t)(uintptr_t)live_glibc, __ATOMIC_RELEASE);
	work.seq = __atomic_load_n(&live_glibc->seq, __ATOMIC_RELAXED) | 1;
	mt_seq_write(&live_glibc->seq, live_glibc, &work, sizeof(work));
}

static pthread_mutex_t glibc_lock = PTHREAD_MUTEX_INITIALIZER;

static void glibc_read(void)
{
	static uint64_t at[GLIBC_THREADS];
	static uint32_t tids[GLIBC_THREADS];
	uint32_t n = __atomic_load_n(&nreg, __ATOMIC_RELAXED), k = 0;
	if (n > GLIBC_THREADS)
		n = GLIBC_THREADS;
	for (uint32_t i = 0; i < n; i++) {
		uint32_t tid = __atomic_load_n(&reg[i].tid, __ATOMIC_ACQUIRE);
		if (!tid || tid == REG_GONE)
			continue;
		char path[48];
		snprintf(path, sizeof(path), "/proc/self/task/%u", tid);
		if (access(path, F_OK)) { /* gone: its slot may serve another thread */
			__atomic_compare_exchange_n(&reg[i].tid, &tid, REG_GONE, 0, __ATOMIC_RELAXED, __ATOMIC_RELAXED);
			continue;
		}
		at[k] = tls_known ? reg[i].tp + (uint64_t)tls_delta + syms.thread_arena : 0;
		tids[k++] = tid;
	}
	mt_glibc_read(getpid(), &syms, at, tids, k, &work);
}

/* The control thread's period under --glibc: 10 ms, longer when a sample
 * takes more than 1 % of it (one read per thread: 64 threads take about
 * 0.5 ms), so the sampler stays near 1 % of a core. */
static unsigned period_ms = 10;
static uint64_t since_ns; /* the first sample of the session */
static uint32_t control_tid; /* registered as the control thread (a fork child has a new one) */

unsigned mt_glibc_period_ms(void)
{
	return __atomic_load_n(&period_ms, __ATOMIC_RELAXED);
}

/* Every tick of the control thread: a lock-wait sample; every 10th, a full
 * look; then into the live file. */
void mt_glibc_tick(int full)
{
	static unsigned ticks;
	if (!mt_glibc_on() || !check_options())
		return;
	/* the control thread registers once (a fork child's is a new one) */
	uint32_t tid = (uint32_t)syscall(SYS_gettid);
	if (__atomic_exchange_n(&control_tid, tid, __ATOMIC_RELAXED) != tid)
		mt_glibc_thread_start(); /* its arena is memtap's: the report says so */
	pthread_mutex_lock(&glibc_lock);
	work.agent_tid = tid;
	if (full || ticks++ % 10 == 0 || !work.taken_ns) {
		int first = !work.taken_ns;
		glibc_read();
		/* attach: the break's growth before it was not seen */
		if (first && mt_g.attached_mode)
			work.sbrk_grow_bytes = work.sbrk_grows = 0;
	}
	uint64_t t1 = mt_now_ns();
	mt_glibc_sample_waits(getpid(), &work);
	uint64_t us = (mt_now_ns() - t1) / 1000;
	unsigned p = us / 10 > 10 ? (unsigned)(us / 10) : 10;
	__atomic_store_n(&period_ms, p > 1000 ? 1000 : p, __ATOMIC_RELAXED);
	/* the average period the samples were taken at */
	if (!since_ns)
		since_ns = t1;
	else if (work.samples > 1)
		work.sample_ms = (t1 - since_ns) / 1000000 / (work.samples - 1);
	if (!work.sample_ms)
		work.sample_ms = p;
	publish();
	pthread_mutex_unlock(&glibc_lock);
}

void mt_glibc_stop(void)
{
	/* the last look, for the detach profile the memtap command writes next */
	mt_glibc_tick(1);
	__atomic_store_n(&glibc_on, 0, __ATOMIC_RELAXED);
}

void mt_glibc_reset(void)
{
	pthread_mutex_lock(&glibc_lock);
	/* a new session starts afresh, and one without --glibc has none */
	__atomic_store_n(&glibc_on, 0, __ATOMIC_RELAXED);
	__atomic_store_n(&mt_sh->glibc, 0, __ATOMIC_RELEASE);
	memset(&work, 0, sizeof(work));
	since_ns = 0;
	pthread_mutex_unlock(&glibc_lock);
}

void mt_glibc_fork_child(void)
{
	pthread_mutex_init(&glibc_lock, NULL);
	pthread_mutex_init(&stats_lock, NULL);
	/* The child's live file is a copy at the same addresses: its blocks
	 * stay ours.  Its threads are not the parent's. */
	__atomic_store_n(&nreg, 0, __ATOMIC_RELAXED);
	memset(reg, 0, sizeof(reg));
	memset(work.threads, 0, sizeof(work.threads));
	work.nthreads = 0;
	mt_glibc_thread_start();
}

/* The end of the process: the last statistics and glibc state, for the
 * final profile.  Taken by the control thread (a `sync` over its socket),
 * not here: exit() may come from a signal handler that interrupted this
 * very thread inside malloc, holding an arena's lock that mallinfo2 would
 * wait for forever.  The exiting thread waits at most 300 ms; a control
 * thread that is stuck stays stuck until exit_group ends it. */
void mt_allocstats_final(void)
{
	if (live_stats || mt_glibc_on())
		mt_control_sync(300);
}
