/*
 * Unit tests of symbolization (src/symbolize) against real code: this
 * program itself (a PIE), libc, libstdc++ (demangling), the fixture library
 * build/tests/fixtures/libsymfix.so (two levels of inlined functions), its
 * stripped copy with separate debug info, and the same code as a non-PIE
 * program run as a child (tests/fixtures/libsymfix.c).  Profiles are built
 * the way the agent builds them: from /proc/PID/maps, with build-ids read
 * from memory (PT_NOTE of each loaded object).  Expected lines come from
 * __LINE__ at the calls, expected module offsets from the dynamic loader.
 */
#include <dlfcn.h>
#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <gelf.h>
#include <inttypes.h>
#include <link.h>
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "memtap/profile.h"
#include "memtap/symbolize.h"

/* ---- helpers ---- */

static int ends_with(const char *s, const char *suffix)
{
	size_t a = s ? strlen(s) : 0, b = strlen(suffix);
	return s && a >= b && strcmp(s + a - b, suffix) == 0;
}

#define assert_suffix(s, suffix)                                                           \
	do {                                                                               \
		if (!ends_with((s), (suffix)))                                             \
			fail_msg("'%s' does not end with '%s'", (s) ? (s) : "(null)", (suffix)); \
	} while (0)

/* Source files come out absolute (compilation directory + name). */
#define assert_source(file, name)                                                          \
	do {                                                                               \
		assert_non_null(file);                                                     \
		assert_true((file)[0] == '/');                                             \
		assert_suffix((file), "/" name);                                           \
	} while (0)

/* build/tests/fixtures/NAME, found from this program's own path
 * (build/tests/unit/test_symbolize), so the test runs from any directory. */
static void fixture_path(const char *name, char *buf, size_t size)
{
	char exe[PATH_MAX];
	ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
	assert_true(n > 0);
	exe[n] = '\0';
	*strrchr(exe, '/') = '\0';
	snprintf(buf, size, "%s/../fixtures/%s", exe, name);
	char *real = realpath(buf, NULL);
	if (!real)
		fail_msg("fixture %s missing: run `make unit` from the repository root", buf);
	snprintf(buf, size, "%s", real);
	free(real);
}

/* Copies the GNU build-id of the loaded object INFO, if any. */
static uint32_t object_build_id(const struct dl_phdr_info *info, uint8_t *out)
{
	for (int i = 0; i < info->dlpi_phnum; i++) {
		const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
		if (ph->p_type != PT_NOTE)
			continue;
		const uint8_t *p = (const uint8_t *)(info->dlpi_addr + ph->p_vaddr);
		const uint8_t *end = p + ph->p_memsz;
		while (p + sizeof(ElfW(Nhdr)) <= end) {
			const ElfW(Nhdr) *nh = (const ElfW(Nhdr) *)p;
			const uint8_t *name = p + sizeof(*nh);
			const uint8_t *desc = name + ((nh->n_namesz + 3) & ~3u);
			p = desc + ((nh->n_descsz + 3) & ~3u);
			if (nh->n_type == NT_GNU_BUILD_ID && nh->n_namesz == 4 &&
			    memcmp(name, "GNU", 4) == 0 && nh->n_descsz <= 32) {
				memcpy(out, desc, nh->n_descsz);
				return nh->n_descsz;
			}
		}
	}
	return 0;
}

/* Gives each mapping of this process the build-id of the loaded object whose
 * segments contain it (by address: dlpi_name and the maps path can differ,
 * e.g. /lib vs /usr/lib). */
static int build_id_cb(struct dl_phdr_info *info, size_t size, void *arg)
{
	(void)size;
	struct mt_profile *p = arg;
	uint8_t id[32];
	uint32_t len = object_build_id(info, id);
	if (!len)
		return 0;
	for (uint32_t m = 0; m < p->nmaps; m++) {
		for (int i = 0; i < info->dlpi_phnum; i++) {
			const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
			uint64_t lo = (info->dlpi_addr + ph->p_vaddr) & ~(uint64_t)4095;
			uint64_t hi = info->dlpi_addr + ph->p_vaddr + ph->p_memsz;
			if (ph->p_type == PT_LOAD && p->maps[m].start >= lo && p->maps[m].start < hi) {
				memcpy(p->maps[m].build_id, id, len);
				p->maps[m].build_id_len = len;
			}
		}
	}
	return 0;
}

/* A profile holding the file-backed mappings of process PID, as the agent
 * records them; build-ids only for this process (0: unknown). */
static struct mt_profile *profile_of(pid_t pid)
{
	char name[64], line[PATH_MAX + 256];
	snprintf(name, sizeof(name), "/proc/%d/maps", (int)pid);
	FILE *f = fopen(name, "r");
	assert_non_null(f);
	struct mt_profile *p = mt_profile_new();
	assert_non_null(p);
	while (fgets(line, sizeof(line), f)) {
		unsigned long long start, end, off;
		char perms[8];
		int pos = 0;
		line[strcspn(line, "\n")] = '\0';
		if (sscanf(line, "%llx-%llx %7s %llx %*s %*s %n", &start, &end, perms, &off, &pos) < 4 ||
		    !pos || line[pos] != '/')
			continue;
		struct mt_mapping *m = mt_profile_add_mapping(p);
		assert_non_null(m);
		m->start = start;
		m->end = end;
		m->offset = off;
		m->prot = (perms[0] == 'r' ? PROT_READ : 0) | (perms[1] == 'w' ? PROT_WRITE : 0) |
			  (perms[2] == 'x' ? PROT_EXEC : 0);
		snprintf(m->path, sizeof(m->path), "%s", line + pos);
	}
	fclose(f);
	if (pid == getpid())
		dl_iterate_phdr(build_id_cb, p);
	return p;
}

static struct mt_mapping *mapping_at(struct mt_profile *p, uint64_t addr)
{
	return (struct mt_mapping *)mt_profile_mapping_of(p, addr);
}

static int elf_type(const char *path)
{
	int fd = open(path, O_RDONLY);
	assert_true(fd >= 0);
	elf_version(EV_CURRENT);
	Elf *e = elf_begin(fd, ELF_C_READ, NULL);
	GElf_Ehdr eh;
	assert_non_null(gelf_getehdr(e, &eh));
	elf_end(e);
	close(fd);
	return eh.e_type;
}

/* The load bias of the object holding ADDR, from the dynamic loader. */
static uint64_t loader_bias(const void *addr)
{
	Dl_info info;
	struct link_map *lm = NULL;
	assert_true(dladdr1(addr, &info, (void **)&lm, RTLD_DL_LINKMAP) != 0);
	assert_non_null(lm);
	return lm->l_addr;
}

/* ---- this program: a PIE ---- */

/* Out of line and under its own name (gcc could otherwise clone it into
 * NAME.constprop.0); clang knows no noclone. */
#ifdef __clang__
#define NOINLINE __attribute__((noinline))
#else
#define NOINLINE __attribute__((noinline, noclone))
#endif

static int self_line;

static NOINLINE uintptr_t self_probe(int line)
{
	self_line = line;
	return (uintptr_t)__builtin_return_address(0);
}

static NOINLINE uintptr_t self_target(void)
{
	uintptr_t ra = self_probe(__LINE__);
	volatile uintptr_t v = ra; /* keeps the call from being a tail call */
	return v;
}

static void self_pie(void **state)
{
	(void)state;
	char exe[PATH_MAX];
	ssize_t len = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
	assert_true(len > 0);
	exe[len] = '\0';
	/* Debian's gcc links PIEs by default: this covers the load bias. */
	assert_int_equal(elf_type(exe), ET_DYN);

	uintptr_t ra = self_target();
	struct mt_profile *p = profile_of(getpid());
	struct mt_symbolizer *s = mt_symbolizer_new(p);
	assert_non_null(s);
	struct mt_frame f[MT_INLINE_MAX];

	/* A few bytes into a static function: a plain address (not a return
	 * address), found in .symtab and in the DWARF. */
	uint64_t a = (uintptr_t)&self_target + 2;
	int n = mt_symbolize(s, a, 0, f, MT_INLINE_MAX);
	assert_int_equal(n, 1);
	assert_string_equal(f[0].function, "self_target");
	assert_int_equal(f[0].symbolized, 1);
	assert_int_equal(f[0].function_offset, 2);
	assert_int_equal(f[0].inlined, 0);
	assert_source(f[0].file, "tests/unit/test_symbolize.c");
	assert_true(f[0].line > 0 && f[0].line <= (uint32_t)self_line);
	assert_string_equal(f[0].module, exe);
	assert_int_equal(f[0].module_offset, a - loader_bias((void *)a));

	/* A return address: the line of the call. */
	n = mt_symbolize(s, ra, 1, f, MT_INLINE_MAX);
	assert_int_equal(n, 1);
	assert_string_equal(f[0].function, "self_target");
	assert_source(f[0].file, "tests/unit/test_symbolize.c");
	assert_int_equal(f[0].line, self_line);

	/* Cached: the same strings again. */
	struct mt_frame g;
	assert_int_equal(mt_symbolize(s, ra, 1, &g, 1), 1);
	assert_ptr_equal(g.function, f[0].function);
	assert_ptr_equal(g.file, f[0].file);
	assert_int_equal(g.line, f[0].line);

	/* libc, through its .dynsym (or its debug info when installed). */
	/* libc's own qsort, not a sanitizer's interposed one. */
	void *libc = dlopen("libc.so.6", RTLD_NOW | RTLD_NOLOAD);
	assert_non_null(libc);
	void *fn = dlsym(libc, "qsort");
	assert_non_null(fn);
	n = mt_symbolize(s, (uintptr_t)fn + 1, 0, f, MT_INLINE_MAX);
	assert_true(n >= 1);
	assert_string_equal(f[n - 1].function, "qsort");
	assert_int_equal(f[n - 1].function_offset, 1);
	assert_suffix(f[n - 1].module, "/libc.so.6");
	assert_int_equal(f[n - 1].module_offset, (uintptr_t)fn + 1 - loader_bias(fn));

	mt_symbolizer_free(s);
	mt_profile_free(p);
	dlclose(libc);
}

/* ---- the fixture library: inlined frames ---- */

struct symfix {
	void *handle;
	int (*outer)(int);
	uintptr_t *ret;
	int *lines; /* the leaf's, the inner's and the outer's call lines */
	char path[PATH_MAX];
};

static void symfix_open(struct symfix *x)
{
	fixture_path("libsymfix.so", x->path, sizeof(x->path));
	x->handle = dlopen(x->path, RTLD_NOW);
	if (!x->handle)
		fail_msg("dlopen %s: %s", x->path, dlerror());
	*(void **)&x->outer = dlsym(x->handle, "symfix_outer");
	x->ret = dlsym(x->handle, "symfix_ret");
	x->lines = dlsym(x->handle, "symfix_lines");
	assert_true(x->outer && x->ret && x->lines);
	x->outer(1);
	assert_true(*x->ret != 0 && x->lines[0] > 0 && x->lines[1] > x->lines[0] &&
		    x->lines[2] > x->lines[1]);
}

/* RET, where symfix_probe returned to, is in symfix_leaf inlined into
 * symfix_inner inlined into symfix_outer (tests/fixtures/libsymfix.c). */
static void check_inlined(struct mt_symbolizer *s, uintptr_t ret, const int *lines)
{
	static const char *const names[] = {"symfix_leaf", "symfix_inner", "symfix_outer"};
	struct mt_frame f[MT_INLINE_MAX];
	int n = mt_symbolize(s, ret, 1, f, MT_INLINE_MAX);
	assert_int_equal(n, 3);
	for (int i = 0; i < 3; i++) {
		assert_string_equal(f[i].function, names[i]);
		assert_int_equal(f[i].symbolized, 1);
		assert_int_equal(f[i].inlined, i < 2);
		assert_source(f[i].file, "tests/fixtures/libsymfix.c");
		assert_int_equal(f[i].line, lines[i]);
		assert_ptr_equal(f[i].module, f[0].module);
		assert_int_equal(f[i].module_offset, f[0].module_offset);
	}
	assert_int_equal(f[0].function_offset, 0);
	assert_true(f[2].function_offset > 0);

	/* Less room: the outermost frames, the last the real function. */
	struct mt_frame g[2];
	assert_int_equal(mt_symbolize(s, ret, 1, g, 2), 2);
	assert_string_equal(g[0].function, "symfix_inner");
	assert_int_equal(g[0].line, lines[1]);
	assert_int_equal(g[0].inlined, 1);
	assert_string_equal(g[1].function, "symfix_outer");
	assert_int_equal(g[1].line, lines[2]);
	assert_int_equal(g[1].inlined, 0);
	assert_int_equal(mt_symbolize(s, ret, 1, g, 1), 1);
	assert_string_equal(g[0].function, "symfix_outer");
	assert_int_equal(g[0].line, lines[2]);
	assert_int_equal(g[0].inlined, 0);
}

static void shared_library_inlined(void **state)
{
	(void)state;
	struct symfix x;
	symfix_open(&x);
	struct mt_profile *p = profile_of(getpid());
	struct mt_symbolizer *s = mt_symbolizer_new(p);
	assert_non_null(s);

	check_inlined(s, *x.ret, x.lines);

	struct mt_frame f[MT_INLINE_MAX];
	assert_int_equal(mt_symbolize(s, *x.ret, 1, f, MT_INLINE_MAX), 3);
	assert_string_equal(f[0].module, x.path);
	assert_int_equal(f[0].module_offset, *x.ret - loader_bias((void *)*x.ret));

	/* The library's .dynamic (RELRO, in a mapping whose file page it
	 * shares with .rodata): a module offset from the right segment. */
	struct link_map *lm;
	assert_int_equal(dlinfo(x.handle, RTLD_DI_LINKMAP, &lm), 0);
	assert_int_equal(mt_symbolize(s, (uintptr_t)lm->l_ld, 0, f, 1), 1);
	assert_int_equal(f[0].module_offset, (uintptr_t)lm->l_ld - lm->l_addr);

	/* A plain address in an exported function (maybe in the inlined
	 * code already: the last frame is the function). */
	uint64_t a = (uintptr_t)x.outer + 1;
	int n = mt_symbolize(s, a, 0, f, MT_INLINE_MAX);
	assert_true(n >= 1);
	assert_string_equal(f[n - 1].function, "symfix_outer");
	assert_int_equal(f[n - 1].function_offset, 1);
	assert_source(f[n - 1].file, "tests/fixtures/libsymfix.c");

	mt_symbolizer_free(s);
	mt_profile_free(p);
	dlclose(x.handle);
}

/* The same library twice (a merged profile: two processes had it at
 * different addresses), and mapped once more as plain data, as a program
 * reading ELF files does: neither may throw the load bias off. */
static void loads_and_data_mappings(void **state)
{
	(void)state;
	struct symfix x;
	symfix_open(&x);
	int fd = open(x.path, O_RDONLY);
	assert_true(fd >= 0);
	off_t size = lseek(fd, 0, SEEK_END);
	void *data = mmap(NULL, (size_t)size, PROT_READ, MAP_PRIVATE, fd, 0);
	assert_true(data != MAP_FAILED);
	close(fd);

	struct mt_profile *p = profile_of(getpid());
	struct mt_mapping *dm = mapping_at(p, (uintptr_t)data);
	assert_non_null(dm);
	assert_string_equal(dm->path, x.path);
	/* The second process: a copy of the library's mappings 1 TiB lower. */
	const uint64_t delta = (uint64_t)1 << 40;
	uint32_t n0 = p->nmaps;
	for (uint32_t i = 0; i < n0; i++) {
		if (strcmp(p->maps[i].path, x.path) != 0 || &p->maps[i] == dm)
			continue;
		struct mt_mapping copy = p->maps[i];
		assert_null(mt_profile_mapping_of(p, copy.start - delta));
		struct mt_mapping *m = mt_profile_add_mapping(p);
		assert_non_null(m);
		*m = copy;
		m->start -= delta;
		m->end -= delta;
	}

	struct mt_symbolizer *s = mt_symbolizer_new(p);
	check_inlined(s, *x.ret - delta, x.lines);
	check_inlined(s, *x.ret, x.lines);
	struct mt_frame f;
	assert_int_equal(mt_symbolize(s, *x.ret - delta, 1, &f, 1), 1);
	assert_int_equal(f.module_offset, *x.ret - loader_bias((void *)*x.ret));
	/* In the data mapping: no function, just the file offset. */
	assert_int_equal(mt_symbolize(s, (uintptr_t)data + 0x1152, 0, &f, 1), 1);
	assert_string_equal(f.function, "libsymfix.so+0x1152");
	assert_int_equal(f.symbolized, 0);
	assert_null(f.file);
	mt_symbolizer_free(s);

	mt_profile_free(p);
	munmap(data, (size_t)size);
	dlclose(x.handle);
}

static int has_section(const char *path, const char *name)
{
	int fd = open(path, O_RDONLY), found = 0;
	assert_true(fd >= 0);
	Elf *e = elf_begin(fd, ELF_C_READ, NULL);
	size_t shstrndx;
	assert_int_equal(elf_getshdrstrndx(e, &shstrndx), 0);
	for (Elf_Scn *scn = NULL; (scn = elf_nextscn(e, scn));) {
		GElf_Shdr sh;
		const char *n = gelf_getshdr(scn, &sh) ? elf_strptr(e, shstrndx, sh.sh_name) : NULL;
		found |= n && strcmp(n, name) == 0;
	}
	elf_end(e);
	close(fd);
	return found;
}

/* Debug info in a separate file, found through .gnu_debuglink (Debian's
 * -dbgsym packages are found the same way, by build-id). */
static void separate_debuginfo(void **state)
{
	(void)state;
	struct symfix x;
	symfix_open(&x);
	char stripped[PATH_MAX];
	fixture_path("stripped/libsymfix.so", stripped, sizeof(stripped));
	assert_false(has_section(stripped, ".debug_info"));
	/* The loaded library's mappings, as if they had been the stripped
	 * copy's: same segments, same build-id. */
	struct mt_profile *p = profile_of(getpid());
	for (uint32_t i = 0; i < p->nmaps; i++)
		if (strcmp(p->maps[i].path, x.path) == 0)
			snprintf(p->maps[i].path, sizeof(p->maps[i].path), "%s", stripped);
	struct mt_symbolizer *s = mt_symbolizer_new(p);
	check_inlined(s, *x.ret, x.lines);
	struct mt_frame f;
	assert_int_equal(mt_symbolize(s, *x.ret, 1, &f, 1), 1);
	assert_string_equal(f.module, stripped);
	mt_symbolizer_free(s);
	mt_profile_free(p);
	dlclose(x.handle);
}

/* ---- a non-PIE program (ET_EXEC: no bias), in another process ---- */

static void non_pie_child(void **state)
{
	(void)state;
	char path[PATH_MAX];
	fixture_path("symfix_nopie", path, sizeof(path));
	assert_int_equal(elf_type(path), ET_EXEC);
	int in[2], out[2];
	assert_int_equal(pipe(in), 0);
	assert_int_equal(pipe(out), 0);
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		dup2(in[0], 0);
		dup2(out[1], 1);
		close(in[1]);
		close(out[0]);
		execl(path, path, (char *)NULL);
		_exit(127);
	}
	close(in[0]);
	close(out[1]);
	FILE *r = fdopen(out[0], "r");
	unsigned long ret = 0, outer = 0;
	int lines[3];
	assert_int_equal(fscanf(r, "%lx %lx %d %d %d", &ret, &outer, &lines[0], &lines[1], &lines[2]),
			 5);

	struct mt_profile *p = profile_of(pid);
	close(in[1]); /* the child exits */
	fclose(r);
	int st;
	assert_int_equal(waitpid(pid, &st, 0), pid);

	struct mt_symbolizer *s = mt_symbolizer_new(p);
	assert_non_null(s);
	check_inlined(s, ret, lines);
	struct mt_frame f;
	assert_int_equal(mt_symbolize(s, outer, 0, &f, 1), 1);
	assert_string_equal(f.function, "symfix_outer");
	assert_int_equal(f.function_offset, 0);
	assert_string_equal(f.module, path);
	assert_int_equal(f.module_offset, outer); /* ET_EXEC: addresses are ELF addresses */
	mt_symbolizer_free(s);
	mt_profile_free(p);
}

/* ---- C++ names ---- */

static void cxx_demangled(void **state)
{
	(void)state;
	void *h = dlopen("libstdc++.so.6", RTLD_NOW);
	if (!h)
		fail_msg("dlopen libstdc++.so.6: %s (g++ is a build dependency)", dlerror());
	void *fn = dlsym(h, "_ZNSt6thread20hardware_concurrencyEv");
	assert_non_null(fn);
	struct mt_profile *p = profile_of(getpid());
	struct mt_symbolizer *s = mt_symbolizer_new(p);
	struct mt_frame f[MT_INLINE_MAX];
	int n = mt_symbolize(s, (uintptr_t)fn, 0, f, MT_INLINE_MAX);
	assert_true(n >= 1);
	assert_string_equal(f[n - 1].function, "std::thread::hardware_concurrency()");
	mt_symbolizer_free(s);
	mt_profile_free(p);
	dlclose(h);
}

/* ---- fallbacks ---- */

static void changed_file_falls_back(void **state)
{
	(void)state;
	struct symfix x;
	symfix_open(&x);
	struct mt_profile *p = profile_of(getpid());
	struct mt_mapping *m = mapping_at(p, *x.ret);
	assert_non_null(m);
	assert_string_equal(m->path, x.path);
	assert_true(m->build_id_len > 0);
	uint64_t off = *x.ret - m->start + m->offset;
	char want[64];
	snprintf(want, sizeof(want), "libsymfix.so+0x%" PRIx64, off);

	/* The file on disk is not the one that was mapped. */
	for (uint32_t i = 0; i < p->nmaps; i++)
		if (strcmp(p->maps[i].path, x.path) == 0)
			p->maps[i].build_id[0] ^= 0xff;
	struct mt_symbolizer *s = mt_symbolizer_new(p);
	struct mt_frame f[MT_INLINE_MAX];
	assert_int_equal(mt_symbolize(s, *x.ret, 1, f, MT_INLINE_MAX), 1);
	assert_string_equal(f[0].function, want);
	assert_int_equal(f[0].symbolized, 0);
	assert_null(f[0].file);
	assert_int_equal(f[0].line, 0);
	assert_string_equal(f[0].module, x.path);
	assert_int_equal(f[0].module_offset, off);
	mt_symbolizer_free(s);

	/* Deleted since it was mapped: trusted only on a matching build-id. */
	for (uint32_t i = 0; i < p->nmaps; i++) {
		if (strcmp(p->maps[i].path, x.path) != 0)
			continue;
		p->maps[i].build_id[0] ^= 0xff;
		snprintf(p->maps[i].path, sizeof(p->maps[i].path), "%s (deleted)", x.path);
	}
	s = mt_symbolizer_new(p);
	check_inlined(s, *x.ret, x.lines);
	mt_symbolizer_free(s);
	for (uint32_t i = 0; i < p->nmaps; i++)
		if (ends_with(p->maps[i].path, " (deleted)"))
			p->maps[i].build_id_len = 0;
	s = mt_symbolizer_new(p);
	assert_int_equal(mt_symbolize(s, *x.ret, 1, f, MT_INLINE_MAX), 1);
	assert_string_equal(f[0].function, want);
	mt_symbolizer_free(s);

	mt_profile_free(p);
	dlclose(x.handle);
}

static void missing_and_unmapped(void **state)
{
	(void)state;
	struct mt_profile *p = mt_profile_new();
	struct mt_mapping *m = mt_profile_add_mapping(p);
	m->start = 0x10000000;
	m->end = 0x10002000;
	m->offset = 0x3000;
	m->prot = PROT_READ | PROT_EXEC;
	snprintf(m->path, sizeof(m->path), "/nonexistent/libgone.so.1");
	m = mt_profile_add_mapping(p);
	m->start = 0x20000000;
	m->end = 0x20001000;
	m->prot = PROT_READ | PROT_EXEC;
	snprintf(m->path, sizeof(m->path), "/etc/passwd"); /* not ELF */
	m = mt_profile_add_mapping(p);
	m->start = 0x30000000;
	m->end = 0x30001000;
	snprintf(m->path, sizeof(m->path), "[vdso]");

	struct mt_symbolizer *s = mt_symbolizer_new(p);
	assert_non_null(s);
	struct mt_frame f[MT_INLINE_MAX];
	assert_int_equal(mt_symbolize(s, 0x10000010, 1, f, MT_INLINE_MAX), 1);
	assert_string_equal(f[0].function, "libgone.so.1+0x3010");
	assert_int_equal(f[0].symbolized, 0);
	assert_string_equal(f[0].module, "/nonexistent/libgone.so.1");
	assert_int_equal(f[0].module_offset, 0x3010);
	assert_null(f[0].file);

	assert_int_equal(mt_symbolize(s, 0x20000020, 0, f, MT_INLINE_MAX), 1);
	assert_string_equal(f[0].function, "passwd+0x20");

	assert_int_equal(mt_symbolize(s, 0x30000030, 0, f, MT_INLINE_MAX), 1);
	assert_string_equal(f[0].function, "[vdso]+0x30");

	assert_int_equal(mt_symbolize(s, 0x12345, 1, f, MT_INLINE_MAX), 1);
	assert_string_equal(f[0].function, "0x12345");
	assert_int_equal(f[0].symbolized, 0);
	assert_null(f[0].module);
	assert_null(f[0].file);
	assert_int_equal(f[0].module_offset, 0x12345);

	assert_int_equal(mt_symbolize(s, 0, 1, f, MT_INLINE_MAX), 1);
	assert_string_equal(f[0].function, "0x0");

	assert_int_equal(mt_symbolize(s, 1, 0, f, 0), -EINVAL);
	assert_int_equal(mt_symbolize(NULL, 1, 0, f, 1), -EINVAL);
	mt_symbolizer_free(s);
	mt_symbolizer_free(NULL);

	/* No mappings at all. */
	struct mt_profile *empty = mt_profile_new();
	s = mt_symbolizer_new(empty);
	assert_non_null(s);
	assert_int_equal(mt_symbolize(s, 0x7f0000001000, 1, f, 1), 1);
	assert_string_equal(f[0].function, "0x7f0000001000");
	mt_symbolizer_free(s);
	mt_profile_free(empty);
	mt_profile_free(p);
}

/* Many addresses: the cache grows and keeps answering the same. */
static void many_addresses(void **state)
{
	(void)state;
	struct mt_profile *p = profile_of(getpid());
	struct mt_symbolizer *s = mt_symbolizer_new(p);
	struct mt_frame f, g;
	uint64_t base = (uintptr_t)&self_target;
	for (int round = 0; round < 2; round++) {
		for (uint64_t a = base; a < base + 3000; a++) {
			assert_int_equal(mt_symbolize(s, a, 0, &f, 1), 1);
			assert_non_null(f.function);
		}
	}
	assert_int_equal(mt_symbolize(s, base, 0, &f, 1), 1);
	assert_int_equal(mt_symbolize(s, base, 1, &g, 1), 1); /* another key: base - 1 looked up */
	assert_string_equal(f.function, "self_target");
	mt_symbolizer_free(s);
	mt_profile_free(p);
}

int main(void)
{
	/* TAP unless told otherwise, so that plain `prove --exec ''` runs it. */
	setenv("CMOCKA_MESSAGE_OUTPUT", "TAP", 0);
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(self_pie),
		cmocka_unit_test(shared_library_inlined),
		cmocka_unit_test(loads_and_data_mappings),
		cmocka_unit_test(separate_debuginfo),
		cmocka_unit_test(non_pie_child),
		cmocka_unit_test(cxx_demangled),
		cmocka_unit_test(changed_file_falls_back),
		cmocka_unit_test(missing_and_unmapped),
		cmocka_unit_test(many_addresses),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
