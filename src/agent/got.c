/*
 * GOT hooks: redirect calls that cross module boundaries by rewriting the
 * relocated GOT slots (JUMP_SLOT for PLT calls, GLOB_DAT for -fno-plt calls
 * and function pointers) of every loaded module, and of modules loaded
 * later (dlopen is hooked the same way and re-patches after each load).
 *
 * Used for `-f FUNC` in every mode, and for the allocation functions when
 * the agent is loaded into a running process (attach), where symbol
 * interposition through LD_PRELOAD is not available.  Every slot written is
 * recorded with its old value so that mt_got_restore() puts it back.
 */
#include <dlfcn.h>
#include <elf.h>
#include <link.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "agent.h"

#define HOOKS_MAX 64
#define SLOTS_MAX 16384

struct slot {
	void **addr;
	void *old;
	int hook;
	int relro; /* the page is read-only outside our writes */
};

static struct mt_got_hook hooks[HOOKS_MAX];
static int sticky[HOOKS_MAX]; /* slots kept by mt_got_restore */
static int nhooks;
static struct slot *slots;
static int nslots;
static int lock;
static uintptr_t self_base;

static void got_lock(void)
{
	while (__atomic_exchange_n(&lock, 1, __ATOMIC_ACQUIRE))
		;
}

static void got_unlock(void)
{
	__atomic_store_n(&lock, 0, __ATOMIC_RELEASE);
}

static int got_add(const char *name, void *replacement, int keep)
{
	int free_at = -1;
	for (int i = 0; i < nhooks; i++) {
		if (hooks[i].name && strcmp(hooks[i].name, name) == 0)
			return i;
		if (!hooks[i].name && free_at < 0)
			free_at = i;
	}
	/* A forgotten hook's entry is free again: its slots were restored. */
	int i = free_at >= 0 ? free_at : nhooks;
	if (i >= HOOKS_MAX)
		return -ENOSPC;
	hooks[i].replacement = replacement;
	sticky[i] = keep;
	__atomic_store_n(&hooks[i].name, name, __ATOMIC_RELEASE);
	if (i == nhooks)
		nhooks++;
	return i;
}

int mt_got_add(const char *name, void *replacement)
{
	return got_add(name, replacement, 0);
}

int mt_got_add_sticky(const char *name, void *replacement)
{
	return got_add(name, replacement, 1);
}

void mt_got_forget(const char *name)
{
	got_lock();
	for (int i = 0; i < nhooks; i++)
		if (hooks[i].name && !sticky[i] && strcmp(hooks[i].name, name) == 0)
			hooks[i].name = NULL;
	got_unlock();
}

static int find_hook(const char *name)
{
	for (int i = 0; i < nhooks; i++)
		if (hooks[i].name && strcmp(hooks[i].name, name) == 0)
			return i;
	return -1;
}

/* Writes VALUE into a GOT slot.  A slot in the RELRO region is read-only
 * after start-up: open its page for the write and close it again, so the
 * program keeps RELRO's protection. */
static int write_slot(void **addr, void *value, int relro)
{
	uintptr_t page = (uintptr_t)addr & ~(uintptr_t)4095;
	if (relro && mprotect((void *)page, 4096, PROT_READ | PROT_WRITE) < 0)
		return -errno;
	__atomic_store_n(addr, value, __ATOMIC_RELEASE);
	if (relro)
		mprotect((void *)page, 4096, PROT_READ);
	return 0;
}

static int in_relro(struct dl_phdr_info *info, uintptr_t a)
{
	for (int i = 0; i < info->dlpi_phnum; i++) {
		const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
		uintptr_t lo = info->dlpi_addr + ph->p_vaddr;
		if (ph->p_type == PT_GNU_RELRO && a >= lo && a < lo + ph->p_memsz)
			return 1;
	}
	return 0;
}

static void patch_relocs(struct dl_phdr_info *info, const ElfW(Rela) *rel, size_t n,
			 const ElfW(Sym) *symtab, const char *strtab)
{
	for (size_t i = 0; i < n; i++) {
		unsigned type = ELF64_R_TYPE(rel[i].r_info);
		if (type != R_X86_64_JUMP_SLOT && type != R_X86_64_GLOB_DAT)
			continue;
		const char *name = strtab + symtab[ELF64_R_SYM(rel[i].r_info)].st_name;
		int h = find_hook(name);
		if (h < 0)
			continue;
		void **addr = (void **)(info->dlpi_addr + rel[i].r_offset);
		void *cur = __atomic_load_n(addr, __ATOMIC_ACQUIRE);
		if (cur == hooks[h].replacement || nslots >= SLOTS_MAX)
			continue;
		int relro = in_relro(info, (uintptr_t)addr);
		if (write_slot(addr, hooks[h].replacement, relro) < 0)
			continue;
		slots[nslots++] = (struct slot){addr, cur, h, relro};
		if (getenv("MEMTAP_DEBUG")) mt_log("patched %s in %s at %p", name, info->dlpi_name, (void *)addr);
	}
}

/* glibc relocates most d_ptr values of a loaded object's dynamic section in
 * place; the vDSO's are left as offsets. */
static uintptr_t dyn_ptr(struct dl_phdr_info *info, ElfW(Addr) v)
{
	return v < info->dlpi_addr ? info->dlpi_addr + v : v;
}

static int module_cb(struct dl_phdr_info *info, size_t size, void *arg)
{
	(void)size;
	(void)arg;
	const char *name = info->dlpi_name ? info->dlpi_name : "";
	if (info->dlpi_addr == self_base || strstr(name, "/ld-linux") || strstr(name, "linux-vdso") ||
	    strstr(name, "libunwind"))
		return 0;
	const ElfW(Dyn) *dyn = NULL;
	for (int i = 0; i < info->dlpi_phnum; i++)
		if (info->dlpi_phdr[i].p_type == PT_DYNAMIC)
			dyn = (const ElfW(Dyn) *)(info->dlpi_addr + info->dlpi_phdr[i].p_vaddr);
	if (!dyn)
		return 0;
	const ElfW(Sym) *symtab = NULL;
	const char *strtab = NULL;
	const ElfW(Rela) *jmprel = NULL, *rela = NULL;
	size_t jmpsz = 0, relasz = 0;
	for (; dyn->d_tag != DT_NULL; dyn++) {
		switch (dyn->d_tag) {
		case DT_SYMTAB: symtab = (const ElfW(Sym) *)dyn_ptr(info, dyn->d_un.d_ptr); break;
		case DT_STRTAB: strtab = (const char *)dyn_ptr(info, dyn->d_un.d_ptr); break;
		case DT_JMPREL: jmprel = (const ElfW(Rela) *)dyn_ptr(info, dyn->d_un.d_ptr); break;
		case DT_PLTRELSZ: jmpsz = dyn->d_un.d_val; break;
		case DT_RELA: rela = (const ElfW(Rela) *)dyn_ptr(info, dyn->d_un.d_ptr); break;
		case DT_RELASZ: relasz = dyn->d_un.d_val; break;
		}
	}
	if (!symtab || !strtab)
		return 0;
	if (jmprel)
		patch_relocs(info, jmprel, jmpsz / sizeof(ElfW(Rela)), symtab, strtab);
	if (rela)
		patch_relocs(info, rela, relasz / sizeof(ElfW(Rela)), symtab, strtab);
	return 0;
}

int mt_got_patch(void)
{
	if (!nhooks)
		return 0;
	got_lock();
	if (!slots && !(slots = mt_arena_alloc(SLOTS_MAX * sizeof(*slots)))) {
		got_unlock();
		return -ENOMEM;
	}
	if (!self_base) {
		Dl_info di;
		if (dladdr((void *)mt_got_patch, &di))
			self_base = (uintptr_t)di.dli_fbase;
	}
	int before = nslots;
	dl_iterate_phdr(module_cb, NULL);
	int added = nslots - before;
	got_unlock();
	return added;
}

int mt_got_restore(void)
{
	got_lock();
	int restored = 0, keep = 0;
	for (int i = nslots - 1; i >= 0; i--) {
		struct slot *s = &slots[i];
		if (sticky[s->hook])
			continue;
		/* Only slots that still hold our value: the program may have
		 * changed a GOT entry since (unlikely, but not ours to undo). */
		if (__atomic_load_n(s->addr, __ATOMIC_ACQUIRE) == hooks[s->hook].replacement &&
		    write_slot(s->addr, s->old, s->relro) == 0)
			restored++;
	}
	for (int i = 0; i < nslots; i++)
		if (sticky[slots[i].hook])
			slots[keep++] = slots[i];
	nslots = keep;
	got_unlock();
	return restored;
}

int mt_got_slots(void)
{
	return __atomic_load_n(&nslots, __ATOMIC_RELAXED);
}

/* ---- the real definition of a symbol (attach) ---- */

/* Whether F starts a symbol some object defines.  A canonical PLT stub is
 * an undefined symbol with a value: dladdr reports it, its st_shndx says. */
static int is_definition(void *f)
{
	Dl_info di;
	const ElfW(Sym) *sym = NULL;
	return f && dladdr1(f, &di, (void **)&sym, RTLD_DL_SYMENT) && di.dli_saddr == f && sym &&
	       sym->st_shndx != SHN_UNDEF;
}

struct def_find {
	const char *name;
	void *found;
};

/* Objects in load order (the global scope's order): each one's own scope
 * (itself, then its dependencies) through a handle.  The main program, the
 * agent and the vDSO are skipped. */
static int def_cb(struct dl_phdr_info *info, size_t size, void *arg)
{
	(void)size;
	struct def_find *d = arg;
	const char *name = info->dlpi_name;
	if (d->found || !name || !*name || info->dlpi_addr == self_base || strstr(name, "linux-vdso"))
		return 0;
	void *h = dlopen(name, RTLD_LAZY | RTLD_NOLOAD);
	if (!h)
		return 0;
	void *f = dlsym(h, d->name);
	dlclose(h);
	if (is_definition(f))
		d->found = f;
	return d->found != NULL;
}

void *mt_global_sym(const char *name)
{
	void *f = dlsym(RTLD_DEFAULT, name);
	if (!f || is_definition(f))
		return f;
	if (!self_base) {
		Dl_info di;
		if (dladdr((void *)mt_global_sym, &di))
			self_base = (uintptr_t)di.dli_fbase;
	}
	struct def_find d = {name, NULL};
	dl_iterate_phdr(def_cb, &d);
	return d.found;
}
