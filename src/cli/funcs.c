/*
 * -f FUNC for the agent: find FUNC in the target's objects (dynamic
 * symbols, .symtab, else the symbol table of a separate debug file) and decide how
 * its entry is patched, so that the agent (which carries no disassembler)
 * only copies bytes and fills in displacements.  Nothing here touches the
 * target: every refusal happens before the agent hears of FUNC.
 *
 * The plan (include/memtap/funcspec.h): the first instructions of FUNC,
 * at least 5 bytes (after an endbr64, which stays where it is: indirect
 * calls land on it), are replaced by `jmp rel32`; the trampoline runs them
 * relocated and jumps back.  Refused, saying why:
 *  - FUNC shorter than the patch, or leaving (ret, jmp) within it;
 *  - a jump into the patched bytes: from FUNC's own body (decoded), or any
 *    direct jmp/call/jcc rel32 anywhere in the object's executable segments
 *    (every byte position read as one, as objects.c does for probe offsets:
 *    it can only err on the safe side);
 *  - a relative branch among the displaced instructions with no rel32 form
 *    (loop, jrcxz, xbegin), one into the patched bytes themselves, or a call
 *    that is not the last displaced instruction (it would return into the
 *    patched bytes);
 *  - anything the decoder does not know.
 * RIP-relative operands keep their encoding with the displacement filled in
 * by the agent for the trampoline's address (it refuses if that is out of
 * reach); jmp/jcc rel8 become their rel32 forms.
 */
#include <Zydis/Zydis.h>
#include <elfutils/libdwfl.h>
#include <errno.h>
#include <fcntl.h>
#include <gelf.h>
#include <libelf.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bpf/ebpf.h"
#include "cli.h"
#include "memtap/funcspec.h"

struct text {
	uint64_t vaddr;
	uint8_t *b;
	size_t n;
};

/* The executable PT_LOAD segments of PATH. */
static int read_text(const char *path, struct text *seg, int max, int *nseg)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC), ret = 0;
	if (fd < 0)
		return -errno;
	elf_version(EV_CURRENT);
	Elf *elf = elf_begin(fd, ELF_C_READ, NULL);
	size_t nph = 0;
	*nseg = 0;
	if (!elf || elf_getphdrnum(elf, &nph)) {
		ret = -ENOEXEC;
		goto out;
	}
	for (size_t i = 0; i < nph && *nseg < max; i++) {
		GElf_Phdr ph;
		if (!gelf_getphdr(elf, (int)i, &ph) || ph.p_type != PT_LOAD || !(ph.p_flags & PF_X))
			continue;
		struct text *t = &seg[(*nseg)++];
		t->vaddr = ph.p_vaddr;
		t->n = ph.p_filesz;
		t->b = malloc(t->n ? t->n : 1);
		if (!t->b || pread(fd, t->b, t->n, (off_t)ph.p_offset) != (ssize_t)t->n) {
			ret = -EIO;
			goto out;
		}
	}
out:
	if (elf)
		elf_end(elf);
	close(fd);
	return ret;
}

/* Every direct rel32 jmp, call or jcc in SEG landing in (LO, HI): the
 * address of the first, or 0. */
static uint64_t rel32_into(const struct text *seg, uint64_t lo, uint64_t hi)
{
	for (size_t i = 0; i + 5 <= seg->n; i++) {
		const uint8_t *p = seg->b + i;
		int32_t rel;
		uint64_t at = seg->vaddr + i, target;
		if (p[0] == 0xe8 || p[0] == 0xe9) {
			memcpy(&rel, p + 1, 4);
			target = at + 5 + (uint64_t)(int64_t)rel;
		} else if (i + 6 <= seg->n && p[0] == 0x0f && p[1] >= 0x80 && p[1] <= 0x8f) {
			memcpy(&rel, p + 2, 4);
			target = at + 6 + (uint64_t)(int64_t)rel;
		} else {
			continue;
		}
		if (target > lo && target < hi)
			return at;
	}
	return 0;
}

static int is_flow_end(const ZydisDecodedInstruction *in)
{
	return in->meta.category == ZYDIS_CATEGORY_RET || in->meta.category == ZYDIS_CATEGORY_UNCOND_BR ||
	       in->mnemonic == ZYDIS_MNEMONIC_INT3 || in->mnemonic == ZYDIS_MNEMONIC_UD2 ||
	       in->mnemonic == ZYDIS_MNEMONIC_HLT;
}

int mt_funcs_plan_bytes(struct mt_funcspec *f, const uint8_t *code, size_t avail, uint64_t addr, uint64_t size,
			char *err, size_t errlen)
{
	ZydisDecoder dec;
	ZydisDecoderInit(&dec, ZYDIS_MACHINE_MODE_LONG_64, ZYDIS_STACK_WIDTH_64);
	static const uint8_t endbr64[4] = {0xf3, 0x0f, 0x1e, 0xfa};
	uint64_t skip = avail >= 4 && !memcmp(code, endbr64, 4) ? 4 : 0;
	uint64_t room = size ? size : avail;
	if (room > avail)
		room = avail;
	if (room < skip + 5) {
		snprintf(err, errlen, "it is %llu bytes long%s; an entry hook needs 5", (unsigned long long)room,
			 skip ? " (after endbr64)" : "");
		return -ERANGE;
	}
	size_t len = 0;
	f->ncode = f->nfix = 0;
	while (len < 5) {
		ZydisDecodedInstruction in;
		ZydisDecodedOperand ops[ZYDIS_MAX_OPERAND_COUNT];
		const uint8_t *p = code + skip + len;
		uint64_t at = addr + skip + len;
		if (!ZYAN_SUCCESS(ZydisDecoderDecodeFull(&dec, p, room - skip - len, &in, ops))) {
			snprintf(err, errlen, "the instruction at +%llu cannot be decoded", (unsigned long long)(skip + len));
			return -EILSEQ;
		}
		uint64_t end = at + in.length;
		if (len + in.length > MT_PLAN_ORIG_MAX || f->ncode + 15u > MT_PLAN_CODE_MAX) {
			snprintf(err, errlen, "its first instructions are too long to displace");
			return -E2BIG;
		}
		if (skip + len + in.length > room) {
			snprintf(err, errlen, "its first instructions run past its end");
			return -ERANGE;
		}
		int last = len + in.length >= 5;
		if (is_flow_end(&in) && !last) {
			snprintf(err, errlen, "it returns or jumps away within its first 5 bytes (at +%llu)",
				 (unsigned long long)(skip + len));
			return -ERANGE;
		}
		if (in.meta.category == ZYDIS_CATEGORY_CALL && !last) {
			snprintf(err, errlen, "a call at +%llu would return into the patched bytes",
				 (unsigned long long)(skip + len));
			return -ERANGE;
		}
		uint8_t *o = f->code + f->ncode;
		if ((in.attributes & ZYDIS_ATTRIB_IS_RELATIVE) && in.raw.imm[0].is_relative) {
			/* A relative branch: re-encoded as its rel32 form. */
			uint64_t target = end + (uint64_t)in.raw.imm[0].value.s;
			size_t op = 0;
			if (in.mnemonic == ZYDIS_MNEMONIC_JMP) {
				o[op++] = 0xe9;
			} else if (in.mnemonic == ZYDIS_MNEMONIC_CALL) {
				o[op++] = 0xe8;
			} else if (in.meta.category == ZYDIS_CATEGORY_COND_BR && in.opcode_map == ZYDIS_OPCODE_MAP_DEFAULT &&
				   in.opcode >= 0x70 && in.opcode <= 0x7f) {
				o[op++] = 0x0f, o[op++] = (uint8_t)(0x80 + (in.opcode & 15));
			} else if (in.meta.category == ZYDIS_CATEGORY_COND_BR && in.opcode_map == ZYDIS_OPCODE_MAP_0F &&
				   in.opcode >= 0x80 && in.opcode <= 0x8f) {
				o[op++] = 0x0f, o[op++] = in.opcode;
			} else {
				snprintf(err, errlen, "the relative branch at +%llu (%s) has no 32-bit form to relocate",
					 (unsigned long long)(skip + len), ZydisMnemonicGetString(in.mnemonic));
				return -EOPNOTSUPP;
			}
			f->fix[f->nfix++] = (struct mt_plan_fix){(uint8_t)(f->ncode + op), (uint8_t)(f->ncode + op + 4), target};
			memset(o + op, 0, 4);
			f->ncode = (uint8_t)(f->ncode + op + 4);
		} else if (in.attributes & ZYDIS_ATTRIB_IS_RELATIVE) {
			/* A RIP-relative operand: same encoding, new displacement. */
			if (in.raw.disp.size != 32) {
				snprintf(err, errlen, "the instruction at +%llu is relative in a way memtap cannot move",
					 (unsigned long long)(skip + len));
				return -EOPNOTSUPP;
			}
			memcpy(o, p, in.length);
			f->fix[f->nfix++] = (struct mt_plan_fix){(uint8_t)(f->ncode + in.raw.disp.offset),
								 (uint8_t)(f->ncode + in.length),
								 end + (uint64_t)in.raw.disp.value};
			f->ncode = (uint8_t)(f->ncode + in.length);
		} else {
			memcpy(o, p, in.length);
			f->ncode = (uint8_t)(f->ncode + in.length);
		}
		if (f->nfix > MT_PLAN_FIX_MAX - 1 && len + in.length < 5) {
			snprintf(err, errlen, "too many relative operands in its first instructions");
			return -E2BIG;
		}
		len += in.length;
	}
	/* A displaced branch or operand aiming at the displaced bytes would
	 * find our jump there. */
	for (unsigned i = 0; i < f->nfix; i++)
		if (f->fix[i].target > addr + skip && f->fix[i].target < addr + skip + len) {
			snprintf(err, errlen, "one of its first instructions refers to the patched bytes (+%llu)",
				 (unsigned long long)(f->fix[i].target - addr));
			return -ERANGE;
		}
	f->at = addr + skip;
	f->len = (uint8_t)len;
	memcpy(f->orig, code + skip, len);
	f->has_plan = 1;
	return 0;
}

/* Branches from FUNC's own body (decoded) into (P, P + LEN). */
static uint64_t body_into(const uint8_t *code, size_t n, uint64_t addr, uint64_t p, uint64_t len)
{
	ZydisDecoder dec;
	ZydisDecoderInit(&dec, ZYDIS_MACHINE_MODE_LONG_64, ZYDIS_STACK_WIDTH_64);
	for (size_t off = 0; off < n;) {
		ZydisDecodedInstruction in;
		ZydisDecodedOperand ops[ZYDIS_MAX_OPERAND_COUNT];
		if (!ZYAN_SUCCESS(ZydisDecoderDecodeFull(&dec, code + off, n - off, &in, ops))) {
			off++;
			continue;
		}
		if ((in.attributes & ZYDIS_ATTRIB_IS_RELATIVE) && in.raw.imm[0].is_relative) {
			uint64_t target = addr + off + in.length + (uint64_t)in.raw.imm[0].value.s;
			if (target > p && target < p + len)
				return addr + off;
		}
		off += in.length;
	}
	return 0;
}

/* Plans the entry hook of F, found at SI. */
static int plan_entry(struct mt_funcspec *f, const struct mt_site_info *si, char *err, size_t errlen)
{
	struct text seg[4] = {{0}};
	int nseg = 0, ret;
	if ((ret = read_text(si->obj->path, seg, 4, &nseg)) < 0) {
		snprintf(err, errlen, "cannot read the code of %s: %s", si->obj->name, strerror(-ret));
		goto out;
	}
	const struct text *in = NULL;
	for (int i = 0; i < nseg; i++)
		if (si->addr >= seg[i].vaddr && si->addr < seg[i].vaddr + seg[i].n)
			in = &seg[i];
	if (!in) {
		snprintf(err, errlen, "its address 0x%llx is in no executable segment of %s",
			 (unsigned long long)si->addr, si->obj->name);
		ret = -EFAULT;
		goto out;
	}
	uint64_t off = si->addr - in->vaddr;
	char why[200];
	if ((ret = mt_funcs_plan_bytes(f, in->b + off, in->n - off, si->addr, si->size, why, sizeof(why))) < 0) {
		snprintf(err, errlen, "cannot hook %s at its entry: %s", f->name, why);
		goto out;
	}
	uint64_t at;
	size_t body = si->size && si->size <= in->n - off ? si->size : 0;
	if ((at = body ? body_into(in->b + off, body, si->addr, f->at, f->len) : 0)) {
		snprintf(err, errlen, "cannot hook %s at its entry: a jump at %s+0x%llx lands inside its first %u bytes",
			 f->name, f->name, (unsigned long long)(at - si->addr), (unsigned)(f->at - si->addr + f->len));
		ret = -ERANGE;
		goto out;
	}
	for (int i = 0; i < nseg && !ret; i++)
		if ((at = rel32_into(&seg[i], f->at, f->at + f->len))) {
			snprintf(err, errlen, "cannot hook %s at its entry: a jump or call at 0x%llx in %s may land inside "
				 "its first %u bytes", f->name, (unsigned long long)at, si->obj->name,
				 (unsigned)(f->at - si->addr + f->len));
			ret = -ERANGE;
		}
	if (!ret && strpbrk(si->obj->name, ",")) {
		snprintf(err, errlen, "%s: memtap cannot pass a path with ',' to its agent", si->obj->name);
		ret = -EINVAL;
	}
	if (!ret)
		snprintf(f->obj, sizeof(f->obj), "%s", si->obj->name);
out:
	for (int i = 0; i < nseg; i++)
		free(seg[i].b);
	return ret;
}

/* Whether the object at PATH exports NAME (a GOT slot elsewhere may name it). */
static int in_dynsym(const char *path, const char *name)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC), found = 0;
	if (fd < 0)
		return 0;
	elf_version(EV_CURRENT);
	Elf *elf = elf_begin(fd, ELF_C_READ, NULL);
	Elf_Scn *scn = NULL;
	GElf_Shdr sh;
	while (elf && !found && (scn = elf_nextscn(elf, scn))) {
		if (!gelf_getshdr(scn, &sh) || sh.sh_type != SHT_DYNSYM || !sh.sh_entsize)
			continue;
		Elf_Data *d = elf_getdata(scn, NULL);
		for (size_t i = 0; d && !found && i < sh.sh_size / sh.sh_entsize; i++) {
			GElf_Sym sym;
			const char *n;
			found = gelf_getsym(d, (int)i, &sym) && sym.st_shndx != SHN_UNDEF &&
				(n = elf_strptr(elf, sh.sh_link, sym.st_name)) && !strcmp(n, name);
		}
	}
	if (elf)
		elf_end(elf);
	close(fd);
	return found;
}

/* FUNC in the symbol table of an object's separate debug file (found by
 * build-id under /usr/lib/debug, or .gnu_debuglink), for stripped objects:
 * a static function of a Debian binary with its -dbgsym package.  0, or
 * -ENOENT. */
static int debug_find(struct mt_objlist *objs, const char *name, struct mt_site_info *out)
{
	static char *debuginfo_path = NULL;
	static const Dwfl_Callbacks cb = {
		.find_elf = dwfl_build_id_find_elf,
		.find_debuginfo = dwfl_standard_find_debuginfo,
		.section_address = dwfl_offline_section_address,
		.debuginfo_path = &debuginfo_path,
	};
	for (size_t i = 0; i < objs->n; i++) {
		Dwfl *d = dwfl_begin(&cb);
		Dwfl_Module *m = d ? dwfl_report_offline(d, "", objs->v[i].path, -1) : NULL;
		int found = 0;
		if (m && dwfl_report_end(d, NULL, NULL) == 0) {
			GElf_Addr bias = 0;
			dwfl_module_getelf(m, &bias);
			int n = dwfl_module_getsymtab(m);
			for (int k = 1; k < n && !found; k++) {
				GElf_Sym sym;
				GElf_Addr a;
				const char *s = dwfl_module_getsym_info(m, k, &sym, &a, NULL, NULL, NULL);
				if (!s || strcmp(s, name) || GELF_ST_TYPE(sym.st_info) != STT_FUNC || sym.st_shndx == SHN_UNDEF)
					continue;
				memset(out, 0, sizeof(*out));
				out->obj = &objs->v[i];
				out->addr = a - bias; /* the object's own vaddr */
				out->size = sym.st_size;
				found = 1;
			}
		}
		if (d)
			dwfl_end(d);
		if (found)
			return 0;
	}
	return -ENOENT;
}

int mt_funcs_plan(struct mt_objlist *objs, const char *where, const char *spec, char *wire, size_t wirelen,
		  char *err, size_t errlen)
{
	struct mt_funcspec f;
	struct mt_site_info si;
	char why[512];
	if (mt_funcspec_parse(spec, strlen(spec), 1, &f, why, sizeof(why)) < 0) {
		snprintf(err, errlen, "-f %s: %s", spec, why);
		return -EINVAL;
	}
	if (mt_objlist_find(objs, f.name, 1, 0, &si) && debug_find(objs, f.name, &si)) {
		char near[512];
		mt_objlist_near(objs, f.name, near, sizeof(near));
		size_t k = strlen(f.name);
		if (!strncmp(near, f.name, k) && (!near[k] || near[k] == ',')) {
			/* Named but not findable as a function: an IFUNC. */
			snprintf(err, errlen, "%s is an IFUNC in %s (its code is chosen when the program loads): memtap "
				 "cannot hook it; name the implementation instead", f.name, where);
			return -EOPNOTSUPP;
		}
		snprintf(err, errlen, "function %s not found in %s or its %zu libraries (dynamic symbols and symbol "
			 "tables)%s%s%s", f.name, where, objs->n ? objs->n - 1 : 0, near[0] ? " (near: " : "",
			 near, near[0] ? "?)" : "; check the name");
		return -ENOENT;
	}
	if (f.got && !in_dynsym(si.obj->path, f.name)) {
		snprintf(err, errlen, "-f %s:got: %s is in no dynamic symbol table, so no GOT slot names it; drop :got "
			 "(an entry hook sees every call)", f.name, f.name);
		return -ENOENT;
	}
	if (!f.got) {
		int ret = plan_entry(&f, &si, why, sizeof(why));
		if (ret < 0) {
			snprintf(err, errlen, "%s; -f %s:got counts only its calls from other modules", why, f.name);
			return ret;
		}
	}
	if (mt_funcspec_format(&f, wire, wirelen) < 0) {
		snprintf(err, errlen, "-f %s: the description for the agent is too long", spec);
		return -ENOSPC;
	}
	return 0;
}

/* Rewrites the comma-separated user specs in LIST (LISTLEN bytes) into what
 * the agent reads, each function found in OBJS. */
static int plan_list(struct mt_objlist *objs, const char *where, char *list, size_t listlen, char *err,
		     size_t errlen)
{
	char *in = strdup(list), *save = NULL;
	size_t n = 0;
	int ret = 0;
	if (!in)
		return -ENOMEM;
	list[0] = '\0';
	for (char *s = strtok_r(in, ",", &save); s && !ret; s = strtok_r(NULL, ",", &save)) {
		char wire[1024];
		if ((ret = mt_funcs_plan(objs, where, s, wire, sizeof(wire), err, errlen)) < 0)
			break;
		if (n + strlen(wire) + 2 > listlen) {
			snprintf(err, errlen, "too many -f functions for one request");
			ret = -ENOSPC;
			break;
		}
		n += (size_t)snprintf(list + n, listlen - n, "%s%s", n ? "," : "", wire);
	}
	free(in);
	return ret;
}

int mt_funcs_for_exe(const char *cmd, char *list, size_t listlen, char *err, size_t errlen)
{
	struct mt_objlist objs;
	char why[1024];
	int ret = mt_objlist_of_exe(cmd, &objs, why, sizeof(why));
	if (ret < 0)
		snprintf(err, errlen, "-f: %s", why);
	else
		ret = plan_list(&objs, objs.v[0].name, list, listlen, err, errlen);
	mt_objlist_free(&objs);
	return ret;
}

int mt_funcs_for_pid(pid_t pid, char *list, size_t listlen, char *err, size_t errlen)
{
	struct mt_objlist objs;
	char why[1024], where[64];
	int ret = mt_objlist_of_pid(pid, &objs, why, sizeof(why));
	snprintf(where, sizeof(where), "process %d", (int)pid);
	if (ret < 0)
		snprintf(err, errlen, "-f: %s", why);
	else
		ret = plan_list(&objs, objs.n ? objs.v[0].name : where, list, listlen, err, errlen);
	mt_objlist_free(&objs);
	return ret;
}
