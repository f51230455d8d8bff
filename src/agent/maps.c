/*
 * The process's file-backed mappings and the build-ids of its loaded ELF
 * objects, recorded in dumps so that addresses can be symbolized after the
 * process has gone (src/symbolize).  Reads /proc/self/maps with plain
 * read(2) and finds build-ids in memory (PT_NOTE of each loaded object), so
 * it neither allocates from the traced allocator nor opens the files.
 */
#include <elf.h>
#include <fcntl.h>
#include <link.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "agent.h"

#define MAPS_MAX 4096

struct build_ids {
	struct mt_mapping *maps;
	uint32_t n;
};

static int note_build_id(const ElfW(Nhdr) *nh, const uint8_t *end, uint8_t *out, uint32_t *len)
{
	while ((const uint8_t *)(nh + 1) <= end) {
		const uint8_t *name = (const uint8_t *)(nh + 1);
		const uint8_t *desc = name + ((nh->n_namesz + 3) & ~3u);
		const uint8_t *next = desc + ((nh->n_descsz + 3) & ~3u);
		if (next > end)
			return 0;
		if (nh->n_type == NT_GNU_BUILD_ID && nh->n_namesz == 4 && memcmp(name, "GNU", 4) == 0 &&
		    nh->n_descsz <= 32) {
			memcpy(out, desc, nh->n_descsz);
			*len = nh->n_descsz;
			return 1;
		}
		nh = (const ElfW(Nhdr) *)next;
	}
	return 0;
}

/* Gives each loaded object's build-id to the mappings of its segments.  By
 * address, not by name: the loader's name for an object (/lib/...) need not
 * be the kernel's (/usr/lib/... on a merged-/usr system). */
static int object_cb(struct dl_phdr_info *info, size_t size, void *arg)
{
	(void)size;
	struct build_ids *b = arg;
	uint8_t id[32];
	uint32_t len = 0;
	for (int i = 0; i < info->dlpi_phnum && !len; i++) {
		const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
		if (ph->p_type != PT_NOTE)
			continue;
		const uint8_t *start = (const uint8_t *)(info->dlpi_addr + ph->p_vaddr);
		note_build_id((const ElfW(Nhdr) *)start, start + ph->p_memsz, id, &len);
	}
	if (!len)
		return 0;
	for (int k = 0; k < info->dlpi_phnum; k++) {
		const ElfW(Phdr) *ph = &info->dlpi_phdr[k];
		if (ph->p_type != PT_LOAD)
			continue;
		uint64_t lo = info->dlpi_addr + ph->p_vaddr, hi = lo + ph->p_memsz;
		for (uint32_t i = 0; i < b->n; i++) {
			if (b->maps[i].start < hi && b->maps[i].end > lo) {
				memcpy(b->maps[i].build_id, id, len);
				b->maps[i].build_id_len = len;
			}
		}
	}
	/* The same file's other mappings (e.g. a read-only one before the
	 * first PT_LOAD's page) share its build-id. */
	for (uint32_t i = 0; i < b->n; i++)
		for (uint32_t j = 0; j < b->n && !b->maps[i].build_id_len; j++)
			if (b->maps[j].build_id_len && strcmp(b->maps[i].path, b->maps[j].path) == 0) {
				memcpy(b->maps[i].build_id, b->maps[j].build_id, b->maps[j].build_id_len);
				b->maps[i].build_id_len = b->maps[j].build_id_len;
			}
	return 0;
}

struct mt_mapping *mt_maps_read(uint32_t *n)
{
	*n = 0;
	size_t len = MAPS_MAX * sizeof(struct mt_mapping);
	struct mt_mapping *maps = mt_sys_map(len);
	if (!maps)
		return NULL;
	int fd = open("/proc/self/maps", O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return maps;
	char buf[8192], line[PATH_MAX + 128];
	size_t ll = 0;
	ssize_t got;
	while ((got = read(fd, buf, sizeof(buf))) > 0 && *n < MAPS_MAX) {
		for (ssize_t i = 0; i < got && *n < MAPS_MAX; i++) {
			if (buf[i] != '\n') {
				if (ll < sizeof(line) - 1)
					line[ll++] = buf[i];
				continue;
			}
			line[ll] = '\0';
			ll = 0;
			*n += (uint32_t)mt_mapping_parse(line, &maps[*n]);
		}
	}
	close(fd);
	struct build_ids b = {maps, *n};
	dl_iterate_phdr(object_cb, &b);
	return maps;
}

void mt_maps_free(struct mt_mapping *m, uint32_t n)
{
	(void)n;
	if (m)
		mt_sys_unmap(m, MAPS_MAX * sizeof(struct mt_mapping));
}
