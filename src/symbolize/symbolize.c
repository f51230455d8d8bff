/*
 * Symbolization with elfutils' libdwfl: the contract is in
 * include/memtap/symbolize.h.
 *
 * Mappings are grouped by path into files, and a file's mappings into loads:
 * the mappings that one exec or dlopen laid out, which share one load bias.
 * A path can be loaded several times (libc in the processes of a merged
 * profile), and a process can also map an ELF file as plain data (a
 * debugger, or memtap itself reading one), which is no load at all.
 *
 * Work is lazy, because a server maps hundreds of files and its stacks touch
 * a few: the first address in a file opens it, reads its PT_LOAD segments
 * and sorts its mappings into loads; the first address in a load reports the
 * file to a Dwfl of the load's own (so loads of different processes that
 * overlap in the address space never collide) and checks its build-id.
 * libdwfl then finds separate debug info by itself.
 *
 * Lookups avoid libdw's linear searches, which cost up to milliseconds per
 * address in libc: a load's function symbols are sorted once (find_sym), and
 * a unit's functions indexed by address the first time one of its addresses
 * is asked for (find_function), so that finding the inlined scopes of an
 * address walks the DIEs of one function, not of its whole unit.
 *
 * Every string handed out is interned in one table owned by the symbolizer,
 * and every result is cached per (address, return_addr).
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <dwarf.h>
#include <elfutils/libdwfl.h>
#include <gelf.h>
#include <libiberty/demangle.h>

#include "memtap/symbolize.h"

/* x86-64: the kernel maps ELF segments in whole pages of this size. */
#define PAGE_X86_64  4096u
#define PAGE_DOWN(x) ((x) & ~(uint64_t)(PAGE_X86_64 - 1))
#define PAGE_UP(x)   PAGE_DOWN((x) + PAGE_X86_64 - 1)
/* Deepest chain of inlined scopes looked at; the outermost MT_INLINE_MAX of
 * them are kept. */
#define SCOPES_MAX     64
#define DELETED_SUFFIX " (deleted)"
#define NONE           UINT32_MAX

enum state {
	ST_UNOPENED = 0,
	ST_OK,      /* file: opened and its mappings sorted into loads;
	               load: reported to its Dwfl, symbols can be trusted */
	ST_UNUSABLE /* missing, not ELF, or changed since it was mapped */
};

/* The mappings of one path: byidx[first .. first + n). */
struct file {
	uint32_t first, n;
	int state;
};

struct cu_range {
	uint64_t lo, hi; /* DWARF addresses */
	Dwarf_Die cu;
};

/* One address range of a function (a concrete DW_TAG_subprogram). */
struct fn_range {
	uint64_t lo, hi; /* DWARF addresses */
	Dwarf_Die die;
};

/* The functions of one unit, by address: built the first time an address
 * falls in the unit. */
struct cu_index {
	Dwarf_Off off; /* the unit DIE's */
	struct fn_range *r;
	size_t n;
};

/* A function symbol of a load, at its runtime address. */
struct sym {
	uint64_t addr, size;
	const char *name; /* in the ELF's string table: lives as long as the Dwfl */
	uint8_t bind;
};

/* The mappings of one file that agree on one load bias. */
struct load {
	uint32_t map; /* one of them (a recorded build-id preferred) */
	int state;
	uint64_t bias; /* runtime address - ELF virtual address */
	Dwfl *dwfl;
	Dwfl_Module *mod;
	/* Units by address, built when libdwfl cannot find them (find_cu). */
	struct cu_range *ranges;
	size_t nranges;
	int ranges_built;
	/* Unit indexes, sorted by offset (find_function). */
	struct cu_index *cus;
	size_t ncus, cucap;
	/* Function symbols by address, one per address (find_sym). */
	struct sym *syms;
	size_t nsyms;
	int syms_built;
};

struct cache_slot {
	uint64_t addr;
	uint32_t first; /* index into frames */
	uint8_t n;
	uint8_t return_addr;
	uint8_t used;
};

struct mt_symbolizer {
	const struct mt_profile *p;
	uint32_t *byidx;   /* mapping indices sorted by (path, start) */
	uint32_t *file_of; /* per mapping: its file, NONE when it is not a file */
	uint32_t *load_of; /* per mapping: its load, NONE before its file is
	                      opened or when it maps no segment */
	struct file *files;
	uint32_t nfiles;
	struct load *loads; /* room for one per mapping */
	uint32_t nloads;
	/* Interned strings: open addressing, capacity a power of two. */
	char **strs;
	size_t nstrs, strcap;
	/* Cached results: open addressing on the address. */
	struct cache_slot *slots;
	size_t nslots, slotcap;
	struct mt_frame *frames;
	size_t nframes, framecap;
};

/* find_elf is only asked for files we did not report ourselves (none today);
 * find_debuginfo searches .gnu_debuglink and /usr/lib/debug/.build-id, and
 * debuginfod when the user set DEBUGINFOD_URLS. */
static char *debuginfo_path;
static const Dwfl_Callbacks callbacks = {
	.find_elf = dwfl_build_id_find_elf,
	.find_debuginfo = dwfl_standard_find_debuginfo,
	.section_address = dwfl_offline_section_address,
	.debuginfo_path = &debuginfo_path,
};

static uint64_t hash_bytes(const char *s)
{
	uint64_t h = 0xcbf29ce484222325ull; /* FNV-1a */
	for (; *s; s++)
		h = (h ^ (uint8_t)*s) * 0x100000001b3ull;
	return h;
}

static uint64_t hash_addr(uint64_t a, int ra)
{
	a ^= (uint64_t)ra << 63;
	a ^= a >> 33;
	a *= 0xff51afd7ed558ccdull;
	a ^= a >> 33;
	return a;
}

static int strs_grow(struct mt_symbolizer *s)
{
	size_t cap = s->strcap ? s->strcap * 2 : 256;
	char **t = calloc(cap, sizeof(*t));
	if (!t)
		return -ENOMEM;
	for (size_t i = 0; i < s->strcap; i++) {
		if (!s->strs[i])
			continue;
		size_t j = hash_bytes(s->strs[i]) & (cap - 1);
		while (t[j])
			j = (j + 1) & (cap - 1);
		t[j] = s->strs[i];
	}
	free(s->strs);
	s->strs = t;
	s->strcap = cap;
	return 0;
}

/* The symbolizer's copy of STR: equal strings share one pointer, which stays
 * valid until mt_symbolizer_free.  NULL on ENOMEM. */
static const char *intern(struct mt_symbolizer *s, const char *str)
{
	if ((s->nstrs + 1) * 2 > s->strcap && strs_grow(s) < 0)
		return NULL;
	size_t j = hash_bytes(str) & (s->strcap - 1);
	while (s->strs[j]) {
		if (strcmp(s->strs[j], str) == 0)
			return s->strs[j];
		j = (j + 1) & (s->strcap - 1);
	}
	char *c = strdup(str);
	if (!c)
		return NULL;
	s->strs[j] = c;
	s->nstrs++;
	return c;
}

static const char *internf(struct mt_symbolizer *s, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
static const char *internf(struct mt_symbolizer *s, const char *fmt, ...)
{
	char buf[MT_TEXT_MAX + 64];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	return intern(s, buf);
}

/* C++ (Itanium ABI) names demangled, parameters included so that overloads
 * stay apart; anything else, or what libiberty cannot parse, as it is. */
static const char *intern_symbol(struct mt_symbolizer *s, const char *name)
{
	if (strncmp(name, "_Z", 2) != 0)
		return intern(s, name);
	char *d = cplus_demangle(name, DMGL_PARAMS | DMGL_ANSI);
	if (!d)
		return intern(s, name);
	const char *r = intern(s, d);
	free(d);
	return r;
}

static const char *base_name(const char *path)
{
	const char *b = strrchr(path, '/');
	return b && b[1] ? b + 1 : path;
}

struct map_key {
	const char *path;
	uint64_t start;
	uint32_t idx;
};

static int map_key_cmp(const void *a, const void *b)
{
	const struct map_key *x = a, *y = b;
	int c = strcmp(x->path, y->path);
	if (c)
		return c;
	return x->start < y->start ? -1 : x->start > y->start;
}

/* Fills IDX with the indices of P's file mappings sorted by (path, start);
 * returns how many, or -ENOMEM. */
static int sort_maps(const struct mt_profile *p, uint32_t *idx)
{
	struct map_key *k = malloc((p->nmaps ? p->nmaps : 1) * sizeof(*k));
	if (!k)
		return -ENOMEM;
	uint32_t n = 0;
	for (uint32_t i = 0; i < p->nmaps; i++)
		/* Only files can be opened: not [vdso], not an empty path. */
		if (p->maps[i].path[0] == '/')
			k[n++] = (struct map_key){p->maps[i].path, p->maps[i].start, i};
	if (n)
		qsort(k, n, sizeof(*k), map_key_cmp);
	for (uint32_t i = 0; i < n; i++)
		idx[i] = k[i].idx;
	free(k);
	return (int)n;
}

struct mt_symbolizer *mt_symbolizer_new(const struct mt_profile *p)
{
	struct mt_symbolizer *s = calloc(1, sizeof(*s));
	if (!s)
		return NULL;
	s->p = p;
	elf_version(EV_CURRENT);
	size_t n = p->nmaps ? p->nmaps : 1;
	s->byidx = malloc(n * sizeof(*s->byidx));
	s->file_of = malloc(n * sizeof(*s->file_of));
	s->load_of = malloc(n * sizeof(*s->load_of));
	s->files = calloc(n, sizeof(*s->files));
	s->loads = calloc(n, sizeof(*s->loads));
	if (!s->byidx || !s->file_of || !s->load_of || !s->files || !s->loads)
		goto fail;
	for (uint32_t i = 0; i < p->nmaps; i++)
		s->file_of[i] = s->load_of[i] = NONE;
	int k = sort_maps(p, s->byidx);
	if (k < 0)
		goto fail;
	for (uint32_t j = 0; j < (uint32_t)k; j++) {
		uint32_t i = s->byidx[j];
		if (!j || strcmp(p->maps[s->byidx[j - 1]].path, p->maps[i].path) != 0)
			s->files[s->nfiles++] = (struct file){.first = j};
		s->files[s->nfiles - 1].n++;
		s->file_of[i] = s->nfiles - 1;
	}
	return s;
fail:
	mt_symbolizer_free(s);
	return NULL;
}

void mt_symbolizer_free(struct mt_symbolizer *s)
{
	if (!s)
		return;
	for (uint32_t i = 0; i < s->nloads; i++) {
		struct load *l = &s->loads[i];
		for (size_t c = 0; c < l->ncus; c++)
			free(l->cus[c].r);
		free(l->cus);
		free(l->ranges);
		free(l->syms);
		if (l->dwfl)
			dwfl_end(l->dwfl);
	}
	for (size_t i = 0; i < s->strcap; i++)
		free(s->strs[i]);
	free(s->strs);
	free(s->slots);
	free(s->frames);
	free(s->loads);
	free(s->files);
	free(s->load_of);
	free(s->file_of);
	free(s->byidx);
	free(s);
}

/* The path to open for a recorded one: a file deleted or replaced after it
 * was mapped (a package upgrade) shows as "PATH (deleted)"; whatever is at
 * PATH now is used only if its build-id proves it the same file. */
static int real_path(const char *recorded, char *path, size_t size)
{
	snprintf(path, size, "%s", recorded);
	size_t len = strlen(path), dl = strlen(DELETED_SUFFIX);
	if (len <= dl || strcmp(path + len - dl, DELETED_SUFFIX) != 0)
		return 0;
	path[len - dl] = '\0';
	return 1;
}

/* The load biases under which mapping M maps a segment of PH whole-page
 * file range; M may cover part of a segment (RELRO splits one in two).
 * Returns how many, written to BIAS.  A segment's bytes keep their distance
 * to its p_vaddr, so a mapping at START of file offset OFF in segment PH
 * means START = bias + p_vaddr - p_offset + OFF. */
static uint32_t bias_candidates(const struct mt_mapping *m, const GElf_Phdr *ph, uint32_t nph,
				int exec, uint64_t *bias)
{
	uint32_t n = 0;
	for (uint32_t i = 0; i < nph; i++) {
		uint64_t lo = PAGE_DOWN(ph[i].p_offset), hi = PAGE_UP(ph[i].p_offset + ph[i].p_filesz);
		if (m->offset < lo || m->offset + (m->end - m->start) > hi)
			continue;
		uint64_t b = m->start - (ph[i].p_vaddr - ph[i].p_offset + m->offset);
		if (exec && b != 0)
			continue; /* ET_EXEC is linked at its final addresses */
		bias[n++] = b;
	}
	return n;
}

/* Opens file FI, reads its PT_LOAD segments and sorts its mappings into
 * loads.  Segments of one file can share a file page (the end of .rodata
 * and the start of .data, or text and data without -z separate-code), so a
 * mapping can fit several segments, under different biases: it gets the
 * bias that most of the file's mappings agree on, since every mapping of
 * one load fits under the load's bias.  A mapping that fits no segment (an
 * ELF file mapped as data) joins no load. */
static int file_open(struct mt_symbolizer *s, uint32_t fi)
{
	const struct mt_profile *p = s->p;
	struct file *f = &s->files[fi];
	const uint32_t *idx = &s->byidx[f->first];
	char path[MT_TEXT_MAX];
	real_path(p->maps[idx[0]].path, path, sizeof(path));
	f->state = ST_UNUSABLE;

	GElf_Phdr *ph = NULL;
	uint64_t *cand = NULL;
	uint32_t *ncand = NULL, nph = 0;
	int exec = 0, err = 0;
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return 0;
	Elf *elf = elf_begin(fd, ELF_C_READ_MMAP, NULL);
	GElf_Ehdr eh;
	size_t phnum;
	if (!elf || elf_kind(elf) != ELF_K_ELF || !gelf_getehdr(elf, &eh) ||
	    (eh.e_type != ET_EXEC && eh.e_type != ET_DYN) || elf_getphdrnum(elf, &phnum) != 0)
		goto out;
	exec = eh.e_type == ET_EXEC;
	ph = malloc((phnum ? phnum : 1) * sizeof(*ph));
	if (!ph) {
		err = -ENOMEM;
		goto out;
	}
	for (size_t i = 0; i < phnum; i++)
		if (gelf_getphdr(elf, (int)i, &ph[nph]) && ph[nph].p_type == PT_LOAD)
			nph++;

	cand = malloc((size_t)f->n * (nph ? nph : 1) * sizeof(*cand));
	ncand = malloc(f->n * sizeof(*ncand));
	if (!cand || !ncand) {
		err = -ENOMEM;
		goto out;
	}
	for (uint32_t k = 0; k < f->n; k++)
		ncand[k] = bias_candidates(&p->maps[idx[k]], ph, nph, exec, &cand[(size_t)k * nph]);
	for (uint32_t k = 0; k < f->n; k++) {
		uint64_t best = 0;
		uint32_t best_votes = 0;
		for (uint32_t c = 0; c < ncand[k]; c++) {
			uint64_t b = cand[(size_t)k * nph + c];
			uint32_t votes = 0;
			for (uint32_t o = 0; o < f->n; o++)
				for (uint32_t d = 0; d < ncand[o]; d++)
					if (cand[(size_t)o * nph + d] == b) {
						votes++;
						break;
					}
			if (votes > best_votes) {
				best = b;
				best_votes = votes;
			}
		}
		if (!best_votes)
			continue;
		uint32_t l = 0;
		for (l = 0; l < s->nloads; l++)
			if (s->file_of[s->loads[l].map] == fi && s->loads[l].bias == best)
				break;
		if (l == s->nloads)
			s->loads[s->nloads++] = (struct load){.map = idx[k], .bias = best};
		else if (!p->maps[s->loads[l].map].build_id_len)
			s->loads[l].map = idx[k];
		s->load_of[idx[k]] = l;
	}
	f->state = ST_OK;
out:
	free(ncand);
	free(cand);
	free(ph);
	elf_end(elf);
	close(fd);
	return err;
}

/* Reports load L's file to a Dwfl of its own and checks that it is the file
 * that was mapped.  Any failure leaves L unusable: its addresses fall back to
 * module+offset. */
static void load_open(struct mt_symbolizer *s, struct load *l)
{
	const struct mt_mapping *m = &s->p->maps[l->map];
	char path[MT_TEXT_MAX];
	int deleted = real_path(m->path, path, sizeof(path));
	l->state = ST_UNUSABLE;
	if (deleted && !m->build_id_len)
		return;
	l->dwfl = dwfl_begin(&callbacks);
	if (!l->dwfl)
		return;
	dwfl_report_begin(l->dwfl);
	/* add_p_vaddr: BASE is the bias, added to every p_vaddr, rather than
	 * where the first segment starts (the two differ when the first
	 * PT_LOAD's p_vaddr is not 0).  Ignored for ET_EXEC. */
	l->mod = dwfl_report_elf(l->dwfl, base_name(path), path, -1, l->bias, true);
	dwfl_report_end(l->dwfl, NULL, NULL);
	if (!l->mod)
		return;
	/* The build-id recorded from memory against the file's: a mismatch
	 * means the file was rebuilt since, and its symbols would lie. */
	if (m->build_id_len) {
		const unsigned char *bits;
		GElf_Addr vaddr;
		int n = dwfl_module_build_id(l->mod, &bits, &vaddr);
		if (n != (int)m->build_id_len || memcmp(bits, m->build_id, (size_t)n) != 0)
			return;
	}
	l->state = ST_OK;
}

/* A function's name in the DWARF: the C++ mangled name, which demangles to
 * the qualified name with its parameters, else the source name.  (A C
 * function's linkage name is an asm rename, such as glibc's __GI_qsort for
 * qsort: not what its users call it.) */
static const char *die_name(Dwarf_Die *die)
{
	Dwarf_Attribute a;
	/* integrate: an inlined or out-of-line instance names its function
	 * through DW_AT_abstract_origin / DW_AT_specification. */
	const char *link = dwarf_formstring(dwarf_attr_integrate(die, DW_AT_linkage_name, &a));
	if (!link)
		link = dwarf_formstring(dwarf_attr_integrate(die, DW_AT_MIPS_linkage_name, &a));
	if (link && strncmp(link, "_Z", 2) == 0)
		return link;
	const char *name = dwarf_diename(die);
	return name ? name : link;
}

/* SRC, made absolute with the compilation directory of CU when SRC is
 * relative and the directory is not (gcc's DWARF 5 names a file by a
 * directory relative to it).  Distributions' debug info often has a relative
 * compilation directory (-fdebug-prefix-map=/build/...=.), which libdw has
 * already put in front of SRC: then SRC stays as it is. */
static const char *intern_source(struct mt_symbolizer *s, Dwarf_Die *cu, const char *src)
{
	Dwarf_Attribute a;
	const char *dir = src[0] == '/' ? NULL : dwarf_formstring(dwarf_attr(cu, DW_AT_comp_dir, &a));
	if (!dir || dir[0] != '/')
		return intern(s, src);
	return internf(s, "%s/%s", dir, src);
}

/* Where the inlined scope INL was called from, in its caller. */
static void call_site(struct mt_symbolizer *s, Dwarf_Die *inl, struct mt_frame *f)
{
	Dwarf_Attribute a;
	Dwarf_Word file = 0, line = 0;
	Dwarf_Die cu;
	Dwarf_Files *files;
	if (dwarf_formudata(dwarf_attr(inl, DW_AT_call_line, &a), &line) == 0)
		f->line = (uint32_t)line;
	/* DW_AT_call_file indexes the file table of INL's own unit. */
	if (dwarf_formudata(dwarf_attr(inl, DW_AT_call_file, &a), &file) == 0 &&
	    dwarf_diecu(inl, &cu, NULL, NULL) && dwarf_getsrcfiles(&cu, &files, NULL) == 0) {
		const char *src = dwarf_filesrc(files, file, NULL, NULL);
		f->file = src ? intern_source(s, &cu, src) : NULL;
	}
}

static int range_cmp(const void *a, const void *b)
{
	const struct cu_range *x = a, *y = b;
	return x->lo < y->lo ? -1 : x->lo > y->lo;
}

/* Every unit's address ranges, sorted, for find_cu. */
static int build_ranges(struct load *l, Dwarf *dw)
{
	size_t cap = 0;
	Dwarf_CU *unit = NULL;
	Dwarf_Die cu;
	uint8_t type;
	l->ranges_built = 1;
	while (dwarf_get_units(dw, unit, &unit, NULL, &type, &cu, NULL) == 0) {
		if (type != DW_UT_compile && type != DW_UT_skeleton && type != DW_UT_partial)
			continue;
		Dwarf_Addr base, lo, hi;
		ptrdiff_t off = 0;
		while ((off = dwarf_ranges(&cu, off, &base, &lo, &hi)) > 0) {
			if (l->nranges == cap) {
				cap = cap ? cap * 2 : 64;
				struct cu_range *r = realloc(l->ranges, cap * sizeof(*r));
				if (!r)
					return -ENOMEM;
				l->ranges = r;
			}
			l->ranges[l->nranges++] = (struct cu_range){.lo = lo, .hi = hi, .cu = cu};
		}
	}
	if (l->nranges)
		qsort(l->ranges, l->nranges, sizeof(*l->ranges), range_cmp);
	return 0;
}

/* The unit holding PC, and the bias of its DWARF addresses.  libdwfl finds
 * units through .debug_aranges, which clang does not emit and which libdw
 * 0.188 does not make up from the units' own ranges: then the units' ranges
 * are searched. */
static Dwarf_Die *find_cu(struct load *l, uint64_t pc, Dwarf_Die *mem, Dwarf_Addr *dbias)
{
	Dwarf_Die *cu = dwfl_module_addrdie(l->mod, pc, dbias);
	if (cu)
		return cu;
	Dwarf *dw = dwfl_module_getdwarf(l->mod, dbias);
	if (!dw || (!l->ranges_built && build_ranges(l, dw) < 0))
		return NULL;
	uint64_t a = pc - *dbias;
	size_t lo = 0, hi = l->nranges;
	while (lo < hi) { /* the first range starting above A */
		size_t mid = lo + (hi - lo) / 2;
		if (l->ranges[mid].lo <= a)
			lo = mid + 1;
		else
			hi = mid;
	}
	if (!lo || a >= l->ranges[lo - 1].hi)
		return NULL;
	*mem = l->ranges[lo - 1].cu;
	return mem;
}

static int leading_underscores(const char *n)
{
	int k = 0;
	while (n[k] == '_')
		k++;
	return k;
}

/* Symbols by address; at one address, the best name first: sized, then with
 * fewer leading underscores (malloc, not __libc_malloc; getpid, not
 * __getpid), then global before weak before local, then shorter. */
static int sym_cmp(const void *a, const void *b)
{
	const struct sym *x = a, *y = b;
	if (x->addr != y->addr)
		return x->addr < y->addr ? -1 : 1;
	if (!x->size != !y->size)
		return x->size ? -1 : 1;
	int ux = leading_underscores(x->name), uy = leading_underscores(y->name);
	if (ux != uy)
		return ux - uy;
	int bx = x->bind == STB_GLOBAL ? 0 : x->bind == STB_WEAK ? 1 : 2;
	int by = y->bind == STB_GLOBAL ? 0 : y->bind == STB_WEAK ? 1 : 2;
	if (bx != by)
		return bx - by;
	size_t lx = strlen(x->name), ly = strlen(y->name);
	if (lx != ly)
		return lx < ly ? -1 : 1;
	return strcmp(x->name, y->name);
}

/* The load's function symbols (.symtab of the file or of its debug file,
 * else .dynsym), sorted once: dwfl_module_addrinfo() scans every symbol on
 * every call, which costs milliseconds per address in libc. */
static int build_syms(struct load *l)
{
	l->syms_built = 1;
	int n = dwfl_module_getsymtab(l->mod);
	if (n <= 0)
		return 0;
	l->syms = malloc((size_t)n * sizeof(*l->syms));
	if (!l->syms)
		return -ENOMEM;
	for (int i = 1; i < n; i++) {
		GElf_Sym sym;
		GElf_Addr addr;
		GElf_Word shndx;
		Elf *elf;
		Dwarf_Addr bias;
		const char *name = dwfl_module_getsym_info(l->mod, i, &sym, &addr, &shndx, &elf, &bias);
		int type = name ? GELF_ST_TYPE(sym.st_info) : STT_NOTYPE;
		if (!name || !name[0] || sym.st_shndx == SHN_UNDEF ||
		    (type != STT_FUNC && type != STT_GNU_IFUNC))
			continue;
		l->syms[l->nsyms++] = (struct sym){
			.addr = addr, .size = sym.st_size, .name = name, .bind = GELF_ST_BIND(sym.st_info)};
	}
	qsort(l->syms, l->nsyms, sizeof(*l->syms), sym_cmp);
	size_t k = 0; /* the best symbol of each address */
	for (size_t i = 0; i < l->nsyms; i++)
		if (!k || l->syms[k - 1].addr != l->syms[i].addr)
			l->syms[k++] = l->syms[i];
	l->nsyms = k;
	return 0;
}

/* The function symbol holding PC: the last one at or below it, if its size
 * reaches PC, or if it has no size (hand-written assembly) and no other
 * symbol starts in between.  NULL if none. */
static const struct sym *find_sym(struct load *l, uint64_t pc)
{
	if (!l->syms_built && build_syms(l) < 0)
		return NULL;
	size_t lo = 0, hi = l->nsyms;
	while (lo < hi) { /* the first symbol above PC */
		size_t mid = lo + (hi - lo) / 2;
		if (l->syms[mid].addr <= pc)
			lo = mid + 1;
		else
			hi = mid;
	}
	if (!lo)
		return NULL;
	const struct sym *y = &l->syms[lo - 1];
	return !y->size || pc < y->addr + y->size ? y : NULL;
}

/* The fallback for function_chain(), with libdw's own scope search.
 *
 * dwarf_getscopes() is used only for the innermost scope: past an inlined
 * subroutine it continues into the scopes of its abstract definition (what a
 * debugger wants for variable lookup), while the physical nesting, where
 * each inlined instance lies inside its caller, is dwarf_getscopes_die()'s. */
static int function_chain_slow(Dwarf_Die *cu, uint64_t a, Dwarf_Die *chain)
{
	Dwarf_Die *all, *scopes = NULL;
	int n = dwarf_getscopes(cu, a, &all);
	if (n <= 0)
		return 0;
	Dwarf_Die inner = all[0];
	free(all);
	n = dwarf_getscopes_die(&inner, &scopes);
	int k = 0;
	for (int i = 0; i < n && k < SCOPES_MAX; i++) {
		int tag = dwarf_tag(&scopes[i]);
		if (tag != DW_TAG_subprogram && tag != DW_TAG_inlined_subroutine &&
		    tag != DW_TAG_entry_point)
			continue;
		chain[k++] = scopes[i];
		if (tag != DW_TAG_inlined_subroutine)
			break; /* the real function: what encloses it is not a call */
	}
	free(scopes);
	return k;
}

/* By address; where several functions start at one address (the aliases
 * GNU as describes for an assembly function: __finitel, __GI___finitel),
 * the first in the unit last, which find_function() takes. */
static int fn_range_cmp(const void *a, const void *b)
{
	const struct fn_range *x = a, *y = b;
	if (x->lo != y->lo)
		return x->lo < y->lo ? -1 : 1;
	Dwarf_Off ox = dwarf_dieoffset((Dwarf_Die *)&x->die);
	Dwarf_Off oy = dwarf_dieoffset((Dwarf_Die *)&y->die);
	return ox > oy ? -1 : ox < oy;
}

/* Adds every concrete function below DIE (at any depth: in namespaces,
 * classes, or nested in other functions) to CI. */
static int index_walk(struct cu_index *ci, size_t *cap, Dwarf_Die *die, int depth)
{
	Dwarf_Die c;
	if (depth > SCOPES_MAX || dwarf_child(die, &c) != 0)
		return 0;
	do {
		if (dwarf_tag(&c) == DW_TAG_subprogram) {
			Dwarf_Addr base, lo, hi;
			ptrdiff_t off = 0;
			while ((off = dwarf_ranges(&c, off, &base, &lo, &hi)) > 0) {
				if (ci->n == *cap) {
					*cap = *cap ? *cap * 2 : 64;
					struct fn_range *r = realloc(ci->r, *cap * sizeof(*r));
					if (!r)
						return -ENOMEM;
					ci->r = r;
				}
				ci->r[ci->n++] = (struct fn_range){.lo = lo, .hi = hi, .die = c};
			}
		}
		if (dwarf_haschildren(&c) && index_walk(ci, cap, &c, depth + 1) < 0)
			return -ENOMEM;
	} while (dwarf_siblingof(&c, &c) == 0);
	return 0;
}

/* The index of unit CU, built on first use. */
static struct cu_index *cu_index_of(struct load *l, Dwarf_Die *cu)
{
	Dwarf_Off off = dwarf_dieoffset(cu);
	size_t lo = 0, hi = l->ncus;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (l->cus[mid].off < off)
			lo = mid + 1;
		else
			hi = mid;
	}
	if (lo < l->ncus && l->cus[lo].off == off)
		return &l->cus[lo];
	if (l->ncus == l->cucap) {
		size_t cap = l->cucap ? l->cucap * 2 : 16;
		struct cu_index *c = realloc(l->cus, cap * sizeof(*c));
		if (!c)
			return NULL;
		l->cus = c;
		l->cucap = cap;
	}
	struct cu_index ci = {.off = off};
	size_t cap = 0;
	if (index_walk(&ci, &cap, cu, 0) < 0) {
		free(ci.r);
		return NULL;
	}
	if (ci.n) /* qsort's base must not be NULL, even for no element */
		qsort(ci.r, ci.n, sizeof(*ci.r), fn_range_cmp);
	memmove(&l->cus[lo + 1], &l->cus[lo], (l->ncus - lo) * sizeof(*l->cus));
	l->cus[lo] = ci;
	l->ncus++;
	return &l->cus[lo];
}

/* The concrete function of CU holding address A: the range starting last at
 * or below A that reaches it (ranges of distinct functions do not overlap,
 * but a nested function's may lie inside its parent's, and comes after). */
static Dwarf_Die *find_function(struct load *l, Dwarf_Die *cu, uint64_t a)
{
	struct cu_index *ci = cu_index_of(l, cu);
	if (!ci)
		return NULL;
	size_t lo = 0, hi = ci->n;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (ci->r[mid].lo <= a)
			lo = mid + 1;
		else
			hi = mid;
	}
	for (size_t i = lo; i > 0 && lo - i < 16; i--)
		if (a < ci->r[i - 1].hi)
			return &ci->r[i - 1].die;
	return NULL;
}

/* The chain of function scopes holding address A of CU, innermost first:
 * the inlined subroutines, then the real function, copied into CHAIN (room
 * for SCOPES_MAX); 0 without DWARF for A.  Found from the unit's index down
 * through the scopes that hold A, so a lookup walks one function's DIEs, not
 * the unit's, as dwarf_getscopes() does (the fallback). */
static int function_chain(struct load *l, Dwarf_Die *cu, uint64_t a, Dwarf_Die *chain)
{
	Dwarf_Die *fn = find_function(l, cu, a);
	if (!fn)
		return function_chain_slow(cu, a, chain);
	Dwarf_Die outward[SCOPES_MAX], cur = *fn;
	int n = 0;
	outward[n++] = cur;
	while (n < SCOPES_MAX) {
		Dwarf_Die c;
		int found = 0, tag = 0;
		if (dwarf_child(&cur, &c) == 0) {
			do {
				tag = dwarf_tag(&c);
				/* Scopes that can hold code; a nested function
				 * is not part of its parent's code. */
				if (tag != DW_TAG_lexical_block && tag != DW_TAG_inlined_subroutine &&
				    tag != DW_TAG_try_block && tag != DW_TAG_catch_block)
					continue;
				found = dwarf_haspc(&c, a) > 0;
			} while (!found && dwarf_siblingof(&c, &c) == 0);
		}
		if (!found)
			break;
		if (tag == DW_TAG_inlined_subroutine)
			outward[n++] = c;
		cur = c;
	}
	for (int i = 0; i < n; i++)
		chain[i] = outward[n - 1 - i];
	return n;
}

/* "libfoo.so+0x1234": what is known of an address without a symbol. */
static const char *module_plus(struct mt_symbolizer *s, const struct mt_mapping *m, uint64_t off)
{
	char path[MT_TEXT_MAX];
	real_path(m->path, path, sizeof(path));
	return internf(s, "%s+0x%" PRIx64, base_name(path), off);
}

/* Resolves ADDR into OUT (room for MT_INLINE_MAX frames); returns the count
 * or -ENOMEM. */
static int resolve(struct mt_symbolizer *s, uint64_t addr, int return_addr, struct mt_frame *out)
{
	uint64_t pc = return_addr && addr ? addr - 1 : addr;
	memset(out, 0, sizeof(*out));
	const struct mt_mapping *m = mt_profile_mapping_of(s->p, pc);
	if (!m) {
		out->function = internf(s, "0x%" PRIx64, addr);
		out->module_offset = addr;
		return out->function ? 1 : -ENOMEM;
	}
	uint32_t mi = (uint32_t)(m - s->p->maps), fi = s->file_of[mi];
	if (fi != NONE && s->files[fi].state == ST_UNOPENED) {
		int err = file_open(s, fi);
		if (err < 0)
			return err;
	}
	struct load *l = s->load_of[mi] == NONE ? NULL : &s->loads[s->load_of[mi]];
	if (l && l->state == ST_UNOPENED)
		load_open(s, l);
	out->module = intern(s, m->path);
	if (!out->module)
		return -ENOMEM;
	if (!l || l->state != ST_OK) {
		/* Without the file the ELF address is unknown; the file offset
		 * is what the mapping tells, and equals the ELF address in the
		 * code of shared objects and PIEs linked by GNU ld, gold or
		 * lld (their text segment has p_vaddr == p_offset). */
		out->module_offset = addr - m->start + m->offset;
		out->function = module_plus(s, m, out->module_offset);
		return out->function ? 1 : -ENOMEM;
	}
	out->module_offset = addr - l->bias;

	const struct sym *sym = find_sym(l, pc);
	const char *symname = sym ? sym->name : NULL;
	Dwarf_Die cumem, chain[SCOPES_MAX];
	Dwarf_Addr dbias = 0;
	Dwarf_Die *cu = find_cu(l, pc, &cumem, &dbias);
	int n = cu ? function_chain(l, cu, pc - dbias, chain) : 0;
	int k = n > MT_INLINE_MAX ? MT_INLINE_MAX : n, skip = n - k;
	int err = 0;

	/* The innermost frames are the ones dropped when the chain is deeper
	 * than MT_INLINE_MAX: the last frame stays the real function. */
	const struct mt_frame tmpl = *out;
	for (int i = 0; i < k; i++) {
		struct mt_frame *f = &out[i];
		Dwarf_Die *die = &chain[skip + i];
		*f = tmpl;
		f->inlined = i < k - 1;
		/* The DWARF name first: it says foo where the ELF symbol of
		 * a part of foo says foo.cold, foo.part.0 or foo.constprop.0,
		 * which a report would count apart. */
		const char *name = die_name(die);
		if (!name && i == k - 1)
			name = symname;
		f->function = name ? intern_symbol(s, name) : NULL;
		f->symbolized = name != NULL;
		if (i == k - 1 && sym)
			f->function_offset = addr - sym->addr;
		if (skip + i > 0)
			call_site(s, &chain[skip + i - 1], f);
		if (!f->function)
			err = -ENOMEM;
	}
	if (!k) {
		out->function = symname ? intern_symbol(s, symname) : NULL;
		out->symbolized = symname != NULL;
		if (sym)
			out->function_offset = addr - sym->addr;
		k = 1;
	}

	/* The innermost frame's line: the line table, for PC itself. */
	Dwarf_Line *line = cu && skip == 0 ? dwarf_getsrc_die(cu, pc - dbias) : NULL;
	const char *src = line ? dwarf_linesrc(line, NULL, NULL) : NULL;
	int lineno = 0;
	if (src) {
		out[0].file = intern_source(s, cu, src);
		out[0].line = dwarf_lineno(line, &lineno) == 0 && lineno > 0 ? (uint32_t)lineno : 0;
	}
	if (!out[0].function && !err) {
		out[0].symbolized = 0;
		out[0].function = module_plus(s, m, out->module_offset);
		if (!out[0].function)
			err = -ENOMEM;
	}
	return err < 0 ? err : k;
}

static int cache_grow(struct mt_symbolizer *s)
{
	size_t cap = s->slotcap ? s->slotcap * 2 : 1024;
	struct cache_slot *t = calloc(cap, sizeof(*t));
	if (!t)
		return -ENOMEM;
	for (size_t i = 0; i < s->slotcap; i++) {
		struct cache_slot *c = &s->slots[i];
		if (!c->used)
			continue;
		size_t j = hash_addr(c->addr, c->return_addr) & (cap - 1);
		while (t[j].used)
			j = (j + 1) & (cap - 1);
		t[j] = *c;
	}
	free(s->slots);
	s->slots = t;
	s->slotcap = cap;
	return 0;
}

/* Progress of long symbolizations (mt_symbolize_progress): the CLI is
 * single-threaded, and a symbolizer is not thread-safe anyway. */
static void (*progress_fn)(double done, void *arg);
static void *progress_arg;
static uint64_t progress_expected, progress_done;

void mt_symbolize_progress(void (*fn)(double done, void *arg), void *arg, uint64_t expected)
{
	progress_fn = fn;
	progress_arg = arg;
	progress_expected = expected ? expected : 1;
	progress_done = 0;
}

int mt_symbolize(struct mt_symbolizer *s, uint64_t addr, int return_addr, struct mt_frame *out,
		 int max)
{
	if (!s || !out || max < 1)
		return -EINVAL;
	if (progress_fn && ++progress_done % 256 == 0) {
		double d = (double)progress_done / (double)progress_expected;
		progress_fn(d < 0.99 ? d : 0.99, progress_arg);
	}
	return_addr = !!return_addr;
	if ((s->nslots + 1) * 2 > s->slotcap && cache_grow(s) < 0)
		return -ENOMEM;
	size_t j = hash_addr(addr, return_addr) & (s->slotcap - 1);
	while (s->slots[j].used &&
	       (s->slots[j].addr != addr || s->slots[j].return_addr != return_addr))
		j = (j + 1) & (s->slotcap - 1);
	struct cache_slot *c = &s->slots[j];
	if (!c->used) {
		if (s->nframes + MT_INLINE_MAX > s->framecap) {
			size_t cap = s->framecap ? s->framecap * 2 : 1024;
			struct mt_frame *f = realloc(s->frames, cap * sizeof(*f));
			if (!f)
				return -ENOMEM;
			s->frames = f;
			s->framecap = cap;
		}
		int n = resolve(s, addr, return_addr, &s->frames[s->nframes]);
		if (n < 0)
			return n;
		*c = (struct cache_slot){.addr = addr,
					 .first = (uint32_t)s->nframes,
					 .n = (uint8_t)n,
					 .return_addr = (uint8_t)return_addr,
					 .used = 1};
		s->nframes += (size_t)n;
		s->nslots++;
	}
	/* Too little room: keep the outermost frames, so that the last is
	 * still the real function and each line lies in the next frame. */
	int n = c->n < max ? c->n : max;
	memcpy(out, &s->frames[c->first + (uint32_t)(c->n - n)], (size_t)n * sizeof(*out));
	return n;
}
