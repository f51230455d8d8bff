/*
 * Which object provides a function in a process, and where to put its probe.
 *
 * The object list comes from the dynamic linker's own list (r_debug's
 * link_map chain, read from the target's memory), which is its lookup order;
 * for `memtap run` it comes from `ld.so --list`, which prints the same order
 * before the program starts.
 *
 * Probe offsets.  A uprobe on an instruction the kernel can emulate (push,
 * jmp, jcc, call, nop) costs one trap; any other instruction is copied out
 * and single-stepped, a second trap (about 30 times the cost here: glibc's
 * free starts with `test %rdi,%rdi`, jemalloc's malloc with a cmp, its free
 * with nine loads and ALU operations).  probe_offset() moves the probe to
 * the first emulated instruction when the ones before it only compute in
 * registers or load (no branch, no store, %rsp and %rbp untouched), every
 * argument the probe reads is still in some register (it follows copies:
 * mimalloc's malloc moves its size to %rsi), and nothing jumps into the
 * skipped range: every path through the function then passes the new probe
 * exactly once, with the arguments at hand and the return address at the
 * top of the stack.  Anything else, or an instruction it does not know,
 * keeps offset 0.
 */
#include <errno.h>
#include <fcntl.h>
#include <gelf.h>
#include <libelf.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>

#include "ebpf.h"

struct mt_sym {
	char *name;
	uint64_t value, size;
	int ifunc;
	int hidden; /* a non-default symbol version */
};

struct mt_seg {
	uint64_t vaddr, off, filesz;
};

struct mt_elf {
	struct mt_sym *syms;
	size_t nsyms, nsyms_dyn; /* dynamic symbols first, then .symtab's */
	struct mt_seg text[4];
	size_t ntext;
	uint8_t *bytes; /* the executable segments' file bytes, read on demand */
	size_t nbytes;
	uint64_t bytes_off; /* file offset of bytes[0] */
	int is_static;
	int loaded, failed;
	char interp[256];
};

static void elf_free(struct mt_elf *e)
{
	if (!e)
		return;
	for (size_t i = 0; i < e->nsyms; i++)
		free(e->syms[i].name);
	free(e->syms);
	free(e->bytes);
	free(e);
}

static int add_syms(struct mt_elf *e, Elf *elf, Elf_Scn *scn, GElf_Shdr *sh)
{
	Elf_Data *d = elf_getdata(scn, NULL);
	Elf_Data *ver = NULL;
	if (!d || !sh->sh_entsize)
		return 0;
	if (sh->sh_type == SHT_DYNSYM) {
		Elf_Scn *s = NULL;
		GElf_Shdr vs;
		while ((s = elf_nextscn(elf, s)))
			if (gelf_getshdr(s, &vs) && vs.sh_type == SHT_GNU_versym)
				ver = elf_getdata(s, NULL);
	}
	size_t n = sh->sh_size / sh->sh_entsize;
	struct mt_sym *v = realloc(e->syms, (e->nsyms + n) * sizeof(*v));
	if (!v)
		return -ENOMEM;
	e->syms = v;
	for (size_t i = 0; i < n; i++) {
		GElf_Sym s;
		if (!gelf_getsym(d, (int)i, &s) || s.st_shndx == SHN_UNDEF || !s.st_value)
			continue;
		int t = GELF_ST_TYPE(s.st_info);
		if (t != STT_FUNC && t != STT_GNU_IFUNC)
			continue;
		const char *name = elf_strptr(elf, sh->sh_link, s.st_name);
		if (!name || !*name)
			continue;
		struct mt_sym *m = &e->syms[e->nsyms];
		m->name = strdup(name);
		if (!m->name)
			return -ENOMEM;
		m->value = s.st_value;
		m->size = s.st_size;
		m->ifunc = t == STT_GNU_IFUNC;
		m->hidden = 0;
		if (ver && (i + 1) * sizeof(GElf_Versym) <= ver->d_size)
			m->hidden = (((GElf_Versym *)ver->d_buf)[i] & 0x8000) != 0;
		e->nsyms++;
	}
	return 0;
}

static struct mt_elf *elf_load(const char *path)
{
	struct mt_elf *e = calloc(1, sizeof(*e));
	if (!e)
		return NULL;
	e->loaded = 1;
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		e->failed = 1;
		return e;
	}
	elf_version(EV_CURRENT);
	Elf *elf = elf_begin(fd, ELF_C_READ, NULL);
	size_t nph = 0;
	if (!elf || elf_kind(elf) != ELF_K_ELF || elf_getphdrnum(elf, &nph)) {
		e->failed = 1;
		goto out;
	}
	int dynamic = 0;
	for (size_t i = 0; i < nph; i++) {
		GElf_Phdr ph;
		if (!gelf_getphdr(elf, (int)i, &ph))
			continue;
		if (ph.p_type == PT_INTERP) {
			size_t len = ph.p_filesz < sizeof(e->interp) ? ph.p_filesz : sizeof(e->interp) - 1;
			if (pread(fd, e->interp, len, (off_t)ph.p_offset) < 0)
				e->interp[0] = '\0';
		}
		if (ph.p_type == PT_DYNAMIC)
			dynamic = 1;
		if (ph.p_type == PT_LOAD && (ph.p_flags & PF_X) && e->ntext < 4)
			e->text[e->ntext++] = (struct mt_seg){ph.p_vaddr, ph.p_offset, ph.p_filesz};
	}
	e->is_static = !dynamic;
	/* Dynamic symbols first: they are what the dynamic linker binds. */
	for (int pass = 0; pass < 2; pass++) {
		Elf_Scn *scn = NULL;
		GElf_Shdr sh;
		while ((scn = elf_nextscn(elf, scn)))
			if (gelf_getshdr(scn, &sh) && sh.sh_type == (pass ? SHT_SYMTAB : SHT_DYNSYM))
				add_syms(e, elf, scn, &sh);
		if (!pass)
			e->nsyms_dyn = e->nsyms;
	}
out:
	if (elf)
		elf_end(elf);
	close(fd);
	return e;
}

static struct mt_elf *obj_elf(struct mt_obj *o)
{
	if (!o->elf)
		o->elf = elf_load(o->path);
	return o->elf;
}

void mt_objlist_free(struct mt_objlist *l)
{
	for (size_t i = 0; i < l->n; i++)
		elf_free(l->v[i].elf);
	free(l->v);
	memset(l, 0, sizeof(*l));
}

static int objlist_add(struct mt_objlist *l, const char *path, const char *name)
{
	for (size_t i = 0; i < l->n; i++)
		if (!strcmp(l->v[i].name, name))
			return 0;
	struct mt_obj *v = realloc(l->v, (l->n + 1) * sizeof(*v));
	if (!v)
		return -ENOMEM;
	l->v = v;
	memset(&v[l->n], 0, sizeof(v[0]));
	snprintf(v[l->n].path, sizeof(v[0].path), "%s", path);
	snprintf(v[l->n].name, sizeof(v[0].name), "%s", name);
	l->n++;
	return 0;
}

static int read_mem(pid_t pid, uint64_t addr, void *buf, size_t len)
{
	struct iovec local = {buf, len}, remote = {(void *)(uintptr_t)addr, len};
	ssize_t n = process_vm_readv(pid, &local, 1, &remote, 1, 0);
	return n == (ssize_t)len ? 0 : -EFAULT;
}

/* The link_map chain: r_debug (exported by ld.so as _r_debug) -> r_map ->
 * l_next ...; struct link_map starts with l_addr, l_name, l_ld, l_next. */
static int walk_link_map(pid_t pid, const char *ldso_path, uint64_t ldso_base, struct mt_objlist *l)
{
	struct mt_elf *ld = elf_load(ldso_path);
	uint64_t r_debug = 0;
	for (size_t i = 0; ld && i < ld->nsyms; i++)
		if (!strcmp(ld->syms[i].name, "_r_debug"))
			r_debug = ld->syms[i].value;
	elf_free(ld);
	if (!r_debug) {
		/* _r_debug is an object, not a function: look again. */
		int fd = open(ldso_path, O_RDONLY | O_CLOEXEC);
		Elf *elf = fd >= 0 ? elf_begin(fd, ELF_C_READ, NULL) : NULL;
		Elf_Scn *scn = NULL;
		GElf_Shdr sh;
		while (elf && (scn = elf_nextscn(elf, scn)) && !r_debug) {
			if (!gelf_getshdr(scn, &sh) || sh.sh_type != SHT_DYNSYM || !sh.sh_entsize)
				continue;
			Elf_Data *d = elf_getdata(scn, NULL);
			for (size_t i = 0; d && i < sh.sh_size / sh.sh_entsize; i++) {
				GElf_Sym s;
				const char *nm;
				if (gelf_getsym(d, (int)i, &s) && (nm = elf_strptr(elf, sh.sh_link, s.st_name)) &&
				    !strcmp(nm, "_r_debug"))
					r_debug = s.st_value;
			}
		}
		if (elf)
			elf_end(elf);
		if (fd >= 0)
			close(fd);
	}
	if (!r_debug)
		return -ENOENT;
	uint64_t map = 0;
	if (read_mem(pid, ldso_base + r_debug + 8, &map, 8) || !map)
		return -EFAULT;
	char root[64];
	snprintf(root, sizeof(root), "/proc/%d/root", (int)pid);
	for (int guard = 0; map && guard < 4096; guard++) {
		uint64_t lm[4];
		char name[PATH_MAX];
		if (read_mem(pid, map, lm, sizeof(lm)))
			return -EFAULT;
		name[0] = '\0';
		if (lm[1]) {
			/* read the name in small steps: it may end near a page edge */
			size_t got = 0;
			while (got < sizeof(name) - 1) {
				if (read_mem(pid, lm[1] + got, name + got, 1))
					break;
				if (!name[got])
					break;
				got++;
			}
			name[got] = '\0';
		}
		if (name[0] == '/') {
			char path[PATH_MAX + 64];
			snprintf(path, sizeof(path), "%s%s", root, name);
			if (objlist_add(l, path, name))
				return -ENOMEM;
		}
		map = lm[3];
	}
	return 0;
}

int mt_objlist_of_pid(pid_t pid, struct mt_objlist *out, char *err, size_t errlen)
{
	char path[PATH_MAX], exe[PATH_MAX];
	memset(out, 0, sizeof(*out));
	snprintf(path, sizeof(path), "/proc/%d/exe", (int)pid);
	ssize_t n = readlink(path, exe, sizeof(exe) - 1);
	if (n <= 0) {
		snprintf(err, errlen, "cannot read %s: %s", path,
			 errno == ENOENT ? "no such process" : strerror(errno));
		return errno == ENOENT ? -ESRCH : -errno;
	}
	exe[n] = '\0';
	if (objlist_add(out, path, exe))
		return -ENOMEM;
	struct mt_elf *ex = obj_elf(&out->v[0]);
	if (ex->failed) {
		snprintf(err, errlen, "%s: not a readable ELF executable", exe);
		return -ENOEXEC;
	}
	if (ex->is_static)
		return 0;

	/* Find ld.so in the maps: the mapping of the executable's PT_INTERP
	 * at file offset 0 is its load base. */
	snprintf(path, sizeof(path), "/proc/%d/maps", (int)pid);
	FILE *f = fopen(path, "re");
	if (!f) {
		snprintf(err, errlen, "cannot read %s: %s", path, strerror(errno));
		return -errno;
	}
	char line[PATH_MAX + 128], ldso[PATH_MAX] = "", root[64];
	uint64_t ldso_base = 0;
	struct mt_objlist bymaps = {0};
	snprintf(root, sizeof(root), "/proc/%d/root", (int)pid);
	char interp_real[PATH_MAX] = "";
	if (ex->interp[0] && !realpath(ex->interp, interp_real))
		snprintf(interp_real, sizeof(interp_real), "%s", ex->interp);
	while (fgets(line, sizeof(line), f)) {
		unsigned long long lo, hi, off;
		char perms[8], file[PATH_MAX];
		file[0] = '\0';
		if (sscanf(line, "%llx-%llx %7s %llx %*s %*s %4095[^\n]", &lo, &hi, perms, &off, file) < 4 ||
		    file[0] != '/')
			continue;
		char *nl = strstr(file, " (deleted)");
		if (nl)
			*nl = '\0';
		if (off == 0 && !ldso[0] &&
		    (!strcmp(file, ex->interp) || !strcmp(file, interp_real) || strstr(file, "/ld-linux"))) {
			snprintf(ldso, sizeof(ldso), "%s", file);
			ldso_base = lo;
		}
		if (perms[2] == 'x') {
			char full[PATH_MAX + 64];
			snprintf(full, sizeof(full), "%s%s", root, file);
			objlist_add(&bymaps, full, file);
		}
	}
	fclose(f);
	int ret = -ENOENT;
	if (ldso[0]) {
		char full[PATH_MAX + 64];
		snprintf(full, sizeof(full), "%s%s", root, ldso);
		ret = walk_link_map(pid, full, ldso_base, out);
	}
	/* Objects the link map did not name (or all of them, when it could not
	 * be read) follow in address order: a guess, said so by nothing. */
	for (size_t i = 0; i < bymaps.n; i++)
		if (strcmp(bymaps.v[i].name, exe))
			objlist_add(out, bymaps.v[i].path, bymaps.v[i].name);
	mt_objlist_free(&bymaps);
	(void)ret;
	return 0;
}

static int resolve_path(const char *cmd, char *out, size_t outlen)
{
	if (strchr(cmd, '/')) {
		if (!realpath(cmd, out))
			return -errno;
		return 0;
	}
	const char *p = getenv("PATH");
	if (!p)
		p = "/usr/local/bin:/usr/bin:/bin";
	while (*p) {
		size_t n = strcspn(p, ":");
		char cand[PATH_MAX];
		snprintf(cand, sizeof(cand), "%.*s/%s", (int)n, n ? p : ".", cmd);
		if (access(cand, X_OK) == 0 && realpath(cand, out))
			return 0;
		p += n + (p[n] == ':');
	}
	(void)outlen;
	return -ENOENT;
}

int mt_objlist_of_exe(const char *cmd, struct mt_objlist *out, char *err, size_t errlen)
{
	char exe[PATH_MAX];
	memset(out, 0, sizeof(*out));
	if (resolve_path(cmd, exe, sizeof(exe))) {
		snprintf(err, errlen, "%s: command not found", cmd);
		return -ENOENT;
	}
	/* A script: the objects are its interpreter's. */
	for (int depth = 0; depth < 4; depth++) {
		char head[PATH_MAX] = "";
		int fd = open(exe, O_RDONLY | O_CLOEXEC);
		ssize_t n = fd >= 0 ? read(fd, head, sizeof(head) - 1) : -1;
		if (fd >= 0)
			close(fd);
		if (n < 2 || head[0] != '#' || head[1] != '!')
			break;
		head[n] = '\0';
		char *s = head + 2;
		s += strspn(s, " \t");
		s[strcspn(s, " \t\n")] = '\0';
		if (!*s || !realpath(s, exe)) {
			snprintf(err, errlen, "%s: cannot find its interpreter '%s'", cmd, s);
			return -ENOENT;
		}
	}
	if (objlist_add(out, exe, exe))
		return -ENOMEM;
	struct mt_elf *ex = obj_elf(&out->v[0]);
	if (ex->failed) {
		snprintf(err, errlen, "%s: not an ELF executable memtap can read", exe);
		return -ENOEXEC;
	}
	if (ex->is_static || !ex->interp[0])
		return 0;
	int pfd[2];
	if (pipe2(pfd, O_CLOEXEC) < 0)
		return -errno;
	pid_t pid = fork();
	if (pid < 0)
		return -errno;
	if (pid == 0) {
		dup2(pfd[1], 1);
		int devnull = open("/dev/null", O_WRONLY);
		if (devnull >= 0)
			dup2(devnull, 2);
		execl(ex->interp, ex->interp, "--list", exe, (char *)NULL);
		_exit(127);
	}
	close(pfd[1]);
	FILE *f = fdopen(pfd[0], "r");
	char line[PATH_MAX + 128];
	while (f && fgets(line, sizeof(line), f)) {
		/* "\tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x...)" or
		 * "\t/lib64/ld-linux-x86-64.so.2 (0x...)" */
		char *p = strstr(line, "=> ");
		p = p ? p + 3 : line + strspn(line, " \t");
		if (*p != '/')
			continue;
		p[strcspn(p, " \t\n")] = '\0';
		char real[PATH_MAX];
		if (realpath(p, real))
			objlist_add(out, real, p);
	}
	if (f)
		fclose(f);
	int st;
	waitpid(pid, &st, 0);
	if (out->n == 1) {
		snprintf(err, errlen, "%s --list %s listed no libraries", ex->interp, exe);
		return -ENOEXEC;
	}
	return 0;
}

static const struct mt_sym *elf_find(const struct mt_elf *e, const char *sym, int static_too)
{
	const struct mt_sym *best = NULL;
	size_t n = static_too || e->is_static ? e->nsyms : e->nsyms_dyn;
	for (size_t i = 0; i < n; i++) {
		const struct mt_sym *s = &e->syms[i];
		if (strcmp(s->name, sym))
			continue;
		if (!best || (best->hidden && !s->hidden))
			best = s;
	}
	return best;
}

static int vaddr_to_off(const struct mt_elf *e, uint64_t v, uint64_t *off, const struct mt_seg **seg)
{
	for (size_t i = 0; i < e->ntext; i++)
		if (v >= e->text[i].vaddr && v < e->text[i].vaddr + e->text[i].filesz) {
			*off = v - e->text[i].vaddr + e->text[i].off;
			*seg = &e->text[i];
			return 0;
		}
	return -ENOENT;
}

static int elf_bytes(struct mt_elf *e, const char *path, const struct mt_seg *seg)
{
	if (e->bytes && e->bytes_off == seg->off)
		return 0;
	free(e->bytes);
	e->bytes = malloc(seg->filesz ? seg->filesz : 1);
	if (!e->bytes)
		return -ENOMEM;
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	ssize_t n = fd >= 0 ? pread(fd, e->bytes, seg->filesz, (off_t)seg->off) : -1;
	if (fd >= 0)
		close(fd);
	if (n != (ssize_t)seg->filesz) {
		free(e->bytes);
		e->bytes = NULL;
		return -EIO;
	}
	e->nbytes = seg->filesz;
	e->bytes_off = seg->off;
	return 0;
}

/* Instructions the kernel emulates at a uprobe (arch/x86/kernel/uprobes.c):
 * push reg, jmp/call rel, jcc, nop. */
static int emulated(const uint8_t *b)
{
	if (b[0] >= 0x50 && b[0] <= 0x57)
		return 1;
	if (b[0] == 0x41 && b[1] >= 0x50 && b[1] <= 0x57)
		return 1;
	if (b[0] == 0xeb || b[0] == 0xe9 || b[0] == 0xe8 || b[0] == 0x90)
		return 1;
	if (b[0] >= 0x70 && b[0] <= 0x7f)
		return 1;
	return b[0] == 0x0f && b[1] >= 0x80 && b[1] <= 0x8f;
}

/*
 * What one instruction at a function's entry does, for probe_offset(): its
 * length, the registers it writes (x86 encoding: 0 rax, 1 rcx, 2 rdx, 3 rbx,
 * 4 rsp, 5 rbp, 6 rsi, 7 rdi, 8-15 r8-r15) and, for a 64-bit register to
 * register mov, what it copies.  Only the forms compilers put before the
 * first branch are known: moves, loads (also %fs-relative: thread-local
 * storage), lea, ALU operations, compares and tests, shifts, movzx/movsx,
 * mul, setcc and cmovcc into registers.  Anything else -- a branch, a store
 * to memory, push/pop, a prefix it does not know, an opcode it has not seen
 * -- gives 0: the walk stops there.  A load that faults would fault at offset
 * 0 too; loads and register writes have no effect the probe could see.
 */
struct insn_fx {
	int len;
	int nw, w[3];          /* registers written */
	int copy_dst, copy_src; /* a 64-bit mov between registers, or -1 */
	const char *name;
};

static void fx_write(struct insn_fx *fx, int r)
{
	if (fx->nw < 3)
		fx->w[fx->nw++] = r;
}

static int decode(const uint8_t *b, struct insn_fx *fx)
{
	int i = 0, rex = 0;
	memset(fx, 0, sizeof(*fx));
	fx->copy_dst = fx->copy_src = -1;
	if (b[0] == 0xf3 && b[1] == 0x0f && b[2] == 0x1e && b[3] == 0xfa)
		return fx->name = "endbr64", fx->len = 4;
	if (b[i] == 0x64 || b[i] == 0x65) /* %fs/%gs: a thread-local load */
		i++;
	if ((b[i] & 0xf0) == 0x40)
		rex = b[i++];
	int w = rex & 8, rr = (rex & 4) << 1, rb = (rex & 1) << 3;
	uint8_t op = b[i++];
	if (op >= 0xb8 && op <= 0xbf) { /* mov $imm, reg */
		fx_write(fx, (op & 7) | rb);
		return fx->name = "mov $imm", fx->len = i + (w ? 8 : 4);
	}
	switch (op) { /* accumulator, immediate */
	case 0x05: case 0x0d: case 0x25: case 0x2d: case 0x35:
		fx_write(fx, 0);
		return fx->name = "alu $imm", fx->len = i + 4;
	case 0x3d: case 0xa9:
		return fx->name = "cmp", fx->len = i + 4;
	case 0x3c: case 0xa8:
		return fx->name = "cmp", fx->len = i + 1;
	}
	int two = op == 0x0f;
	if (two) {
		op = b[i++];
		if (!(op == 0xb6 || op == 0xb7 || op == 0xbe || op == 0xbf || op == 0xaf || (op >= 0x40 && op <= 0x4f) ||
		      (op >= 0x90 && op <= 0x9f)))
			return 0;
	} else {
		static const uint8_t known[] = {0x01, 0x03, 0x09, 0x0b, 0x21, 0x23, 0x29, 0x2b, 0x31, 0x33, 0x38,
						0x39, 0x3a, 0x3b, 0x63, 0x69, 0x6b, 0x80, 0x81, 0x83, 0x84, 0x85,
						0x89, 0x8b, 0x8d, 0xc1, 0xd1, 0xf7};
		if (!memchr(known, op, sizeof(known)))
			return 0;
	}
	uint8_t m = b[i++];
	int mod = m >> 6, sub = (m >> 3) & 7, reg = sub | rr, rm = (m & 7) | rb, mem = mod != 3;
	if (mem) {
		if ((m & 7) == 4) {
			uint8_t sib = b[i++];
			if (mod == 0 && (sib & 7) == 5)
				i += 4;
		} else if (mod == 0 && (m & 7) == 5) {
			i += 4; /* %rip-relative: the code runs where it is */
		}
		i += mod == 1 ? 1 : mod == 2 ? 4 : 0;
	}
	fx->name = "alu";
	if (two) {
		if (op >= 0x90 && op <= 0x9f) { /* setcc */
			if (mem)
				return 0;
			fx_write(fx, rm);
			fx->name = "setcc";
		} else {
			fx_write(fx, reg); /* movzx, movsx, imul, cmovcc */
			fx->name = op >= 0x40 && op <= 0x4f ? "cmov" : "movzx";
		}
		return fx->len = i;
	}
	switch (op) {
	case 0x89: /* mov reg, r/m */
		if (mem)
			return 0;
		if (w)
			fx->copy_dst = rm, fx->copy_src = reg;
		fx_write(fx, rm);
		fx->name = "mov";
		break;
	case 0x8b: /* mov r/m, reg */
		if (!mem && w)
			fx->copy_dst = reg, fx->copy_src = rm;
		fx_write(fx, reg);
		fx->name = "mov";
		break;
	case 0x8d:
		if (!mem)
			return 0;
		fx_write(fx, reg);
		fx->name = "lea";
		break;
	case 0x01: case 0x09: case 0x21: case 0x29: case 0x31: /* op reg, r/m */
		if (mem)
			return 0;
		fx_write(fx, rm);
		break;
	case 0x03: case 0x0b: case 0x23: case 0x2b: case 0x33: case 0x63: /* op r/m, reg */
		fx_write(fx, reg);
		break;
	case 0x69: case 0x6b:
		i += op == 0x69 ? 4 : 1;
		fx_write(fx, reg);
		break;
	case 0x38: case 0x39: case 0x3a: case 0x3b: case 0x84: case 0x85:
		fx->name = op >= 0x84 ? "test" : "cmp";
		break;
	case 0x80: case 0x81: case 0x83:
		i += op == 0x81 ? 4 : 1;
		if (sub == 7) {
			fx->name = "cmp";
			break;
		}
		if (mem)
			return 0;
		fx_write(fx, rm);
		break;
	case 0xc1: case 0xd1: /* shifts and rotates */
		i += op == 0xc1;
		if (mem)
			return 0;
		fx_write(fx, rm);
		fx->name = "shift";
		break;
	case 0xf7:
		if (sub == 0) { /* test $imm32 */
			i += 4;
			fx->name = "test";
		} else if (sub == 2 || sub == 3) { /* not, neg */
			if (mem)
				return 0;
			fx_write(fx, rm);
		} else if (sub == 4 || sub == 5) { /* mul, imul: %rdx:%rax */
			fx_write(fx, 0);
			fx_write(fx, 2);
			fx->name = "mul";
		} else {
			return 0; /* div: leave it be */
		}
		break;
	}
	return fx->len = i;
}

/* Whether any direct jump or call in the segment lands in (lo, hi].  Every
 * byte position is read as a possible instruction, so this can only err on
 * the safe side.  Short jumps are looked for inside the function [FN, FN_END)
 * only: a random byte pair reads as one near any target. */
static int branch_into(const uint8_t *t, size_t n, uint64_t base, uint64_t lo, uint64_t hi,
		       uint64_t fn, uint64_t fn_end)
{
	for (size_t i = 0; i + 2 <= n; i++) {
		uint64_t at = base + i, target;
		uint8_t o = t[i];
		if ((o == 0xeb || (o >= 0x70 && o <= 0x7f)) && at >= fn && at < fn_end) {
			target = at + 2 + (uint64_t)(int64_t)(int8_t)t[i + 1];
			if (target > lo && target <= hi)
				return 1;
		}
		if (i + 5 <= n && (o == 0xe8 || o == 0xe9)) {
			int32_t rel;
			memcpy(&rel, t + i + 1, 4);
			target = at + 5 + (uint64_t)(int64_t)rel;
			if (target > lo && target <= hi)
				return 1;
		}
		if (i + 6 <= n && o == 0x0f && t[i + 1] >= 0x80 && t[i + 1] <= 0x8f) {
			int32_t rel;
			memcpy(&rel, t + i + 2, 4);
			target = at + 6 + (uint64_t)(int64_t)rel;
			if (target > lo && target <= hi)
				return 1;
		}
	}
	return 0;
}

/* The registers the arguments arrive in (System V x86-64). */
static const int arg_reg[6] = {7, 6, 2, 1, 8, 9};
static const char *const reg_name[16] = {"rax", "rcx", "rdx", "rbx", "rsp", "rbp", "rsi", "rdi",
					 "r8",  "r9",  "r10", "r11", "r12", "r13", "r14", "r15"};

/* Where the probe of SI goes: the first instruction the kernel emulates,
 * within 12 instructions of the entry, such that the instructions before it
 * (decode(): no branch, no store) write neither %rsp nor %rbp (the return
 * address and the frame chain stay where they were) and leave a copy of
 * every argument in ARGS (bit k: argument k, the ones the probe reads)
 * somewhere, and no direct branch lands after the entry and up to it.  Every
 * path through the function then passes the probe exactly once, with the
 * arguments' values at hand (si->arg_reg says where each one is).  Anything
 * else keeps offset 0, which the kernel single-steps unless it is emulated. */
static void probe_offset(struct mt_elf *e, const char *path, const struct mt_seg *seg,
			 unsigned args, struct mt_site_info *si)
{
	si->probe_off = 0;
	for (int k = 0; k < 6; k++)
		si->arg_reg[k] = (uint8_t)arg_reg[k];
	if (getenv("MEMTAP_BPF_OFFSET0")) { /* for measurements: every probe at the entry */
		snprintf(si->why, sizeof(si->why), "+0: MEMTAP_BPF_OFFSET0 is set");
		return;
	}
	if (elf_bytes(e, path, seg)) {
		snprintf(si->why, sizeof(si->why), "offset 0 (could not read the code)");
		return;
	}
	uint64_t start = si->file_off - seg->off; /* index into bytes */
	uint32_t k = 0;
	int holds[16], n;
	char skipped[96] = "";
	for (int r = 0; r < 16; r++)
		holds[r] = -1;
	for (int a = 0; a < 6; a++)
		holds[arg_reg[a]] = a;
	for (n = 0; n < 12; n++) {
		if (start + k + 16 > e->nbytes || (si->size && k >= si->size))
			break;
		const uint8_t *b = e->bytes + start + k;
		if (emulated(b)) {
			int where[6], lost = -1;
			for (int a = 0; a < 6; a++) {
				where[a] = holds[arg_reg[a]] == a ? arg_reg[a] : -1;
				for (int r = 0; r < 16 && where[a] < 0; r++)
					if (holds[r] == a)
						where[a] = r;
				if (where[a] < 0 && (args >> a & 1) && lost < 0)
					lost = a;
			}
			if (lost >= 0) {
				snprintf(si->why, sizeof(si->why), "+0: single-stepped (argument %d is overwritten by %s "
					 "before the first emulated instruction)", lost, skipped);
				return;
			}
			uint64_t end = si->file_off + (si->size ? si->size : 256);
			if (k && branch_into(e->bytes, e->nbytes, seg->off, si->file_off, si->file_off + k,
					     si->file_off, end)) {
				snprintf(si->why, sizeof(si->why), "+0: single-stepped (a branch lands after %s)",
					 skipped);
				return;
			}
			si->probe_off = k;
			char moved[64] = "";
			for (int a = 0; a < 6; a++)
				if ((args >> a & 1) && where[a] != arg_reg[a]) {
					si->arg_reg[a] = (uint8_t)where[a];
					snprintf(moved + strlen(moved), sizeof(moved) - strlen(moved), "%sarg%d in %%%s",
						 moved[0] ? ", " : "; ", a, reg_name[where[a]]);
				}
			if (k)
				snprintf(si->why, sizeof(si->why), "+%u: after %s, on an emulated instruction%s", k,
					 skipped, moved);
			else
				snprintf(si->why, sizeof(si->why), "+0: emulated first instruction");
			return;
		}
		struct insn_fx fx;
		if (!decode(b, &fx))
			break;
		int bad = 0;
		for (int j = 0; j < fx.nw; j++)
			bad |= fx.w[j] == 4 || fx.w[j] == 5;
		if (bad)
			break;
		int copied = fx.copy_src >= 0 ? holds[fx.copy_src] : -1;
		for (int j = 0; j < fx.nw; j++)
			holds[fx.w[j]] = -1;
		if (fx.copy_dst >= 0)
			holds[fx.copy_dst] = copied;
		if (strlen(skipped) + strlen(fx.name) + 8 < sizeof(skipped))
			snprintf(skipped + strlen(skipped), sizeof(skipped) - strlen(skipped), "%s%s", k ? ", " : "",
				 fx.name);
		else if (!strstr(skipped, "..."))
			strcat(skipped, ", ...");
		k += (uint32_t)fx.len;
	}
	snprintf(si->why, sizeof(si->why), "+0: single-stepped (no emulated instruction nearby)");
}

int mt_objlist_find(struct mt_objlist *l, const char *sym, int static_too, unsigned args,
		    struct mt_site_info *out)
{
	for (size_t i = 0; i < l->n; i++) {
		const char *base = strrchr(l->v[i].name, '/');
		base = base ? base + 1 : l->v[i].name;
		/* memtap's agent, inert after a detach, exports wrappers of every
		 * allocation function: they would win the lookup, and are not
		 * what the process calls any more. */
		if (!strncmp(base, "libmemtap", 9))
			continue;
		struct mt_elf *e = obj_elf(&l->v[i]);
		if (e->failed)
			continue;
		/* The executable's own .symtab counts for -f: its functions are
		 * called directly. */
		const struct mt_sym *s = elf_find(e, sym, static_too || i == 0);
		if (!s || s->ifunc)
			continue;
		const struct mt_seg *seg;
		memset(out, 0, sizeof(*out));
		out->obj = &l->v[i];
		out->addr = s->value;
		out->size = s->size;
		if (vaddr_to_off(e, s->value, &out->file_off, &seg))
			continue;
		probe_offset(e, l->v[i].path, seg, args, out);
		uint64_t probe = out->file_off + out->probe_off;
		out->text_below = probe - seg->off;
		out->text_above = seg->off + seg->filesz - probe;
		out->is_glibc = !strncmp(base, "libc.so", 7) && elf_find(e, "gnu_get_libc_version", 0);
		out->is_libstdcxx = !strncmp(base, "libstdc++.so", 12);
		return 0;
	}
	return -ENOENT;
}

static size_t edit_distance(const char *a, const char *b)
{
	size_t la = strlen(a), lb = strlen(b);
	if (la > 64 || lb > 64)
		return 99;
	size_t d[65][65];
	for (size_t i = 0; i <= la; i++)
		d[i][0] = i;
	for (size_t j = 0; j <= lb; j++)
		d[0][j] = j;
	for (size_t i = 1; i <= la; i++)
		for (size_t j = 1; j <= lb; j++) {
			size_t c = d[i - 1][j - 1] + (a[i - 1] != b[j - 1]);
			if (d[i - 1][j] + 1 < c)
				c = d[i - 1][j] + 1;
			if (d[i][j - 1] + 1 < c)
				c = d[i][j - 1] + 1;
			d[i][j] = c;
		}
	return d[la][lb];
}

void mt_objlist_near(struct mt_objlist *l, const char *sym, char *out, size_t outlen)
{
	enum { MAX = 8 };
	const char *best[MAX];
	size_t score[MAX], nb = 0;
	size_t limit = strlen(sym) / 3 + 1;
	for (size_t i = 0; i < l->n; i++) {
		struct mt_elf *e = obj_elf(&l->v[i]);
		for (size_t k = 0; k < e->nsyms; k++) {
			const char *n = e->syms[k].name;
			size_t d = strstr(n, sym) || (strlen(n) > 3 && strstr(sym, n)) ? 1 : edit_distance(n, sym);
			if (d > limit)
				continue;
			int dup = 0;
			for (size_t j = 0; j < nb; j++)
				dup |= !strcmp(best[j], n);
			if (dup)
				continue;
			size_t at;
			if (nb < MAX)
				at = nb++;
			else if (score[MAX - 1] > d)
				at = MAX - 1;
			else
				continue;
			best[at] = n;
			score[at] = d;
			for (size_t j = at; j > 0 && score[j - 1] > score[j]; j--) {
				const char *tn = best[j];
				size_t ts = score[j];
				best[j] = best[j - 1], score[j] = score[j - 1];
				best[j - 1] = tn, score[j - 1] = ts;
			}
		}
	}
	out[0] = '\0';
	for (size_t j = 0; j < nb; j++)
		snprintf(out + strlen(out), outlen - strlen(out), "%s%s", j ? ", " : "", best[j]);
}
