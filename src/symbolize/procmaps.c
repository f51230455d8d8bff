/*
 * A running process's file-backed mappings with the build-ids of the ELF
 * objects they map, read from outside (/proc/PID/maps, and each object's
 * note through /proc/PID/root so that a container's files are the ones
 * read): what symbolization needs once the process is gone.
 */
#include <errno.h>
#include <fcntl.h>
#include <gelf.h>
#include <libelf.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "memtap/symbolize.h"

static void build_id_of(int pid, struct mt_mapping *m)
{
	char path[PATH_MAX + 64];
	snprintf(path, sizeof(path), "/proc/%d/root%s", pid, m->path);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return;
	elf_version(EV_CURRENT);
	Elf *e = elf_begin(fd, ELF_C_READ, NULL);
	size_t nph = 0;
	if (e && elf_kind(e) == ELF_K_ELF && elf_getphdrnum(e, &nph) == 0) {
		for (size_t i = 0; i < nph && !m->build_id_len; i++) {
			GElf_Phdr ph;
			if (!gelf_getphdr(e, (int)i, &ph) || ph.p_type != PT_NOTE)
				continue;
			Elf_Data *d = elf_getdata_rawchunk(e, (int64_t)ph.p_offset, ph.p_filesz, ELF_T_NHDR);
			size_t off = 0, name_off, desc_off;
			GElf_Nhdr nh;
			while (d && (off = gelf_getnote(d, off, &nh, &name_off, &desc_off)) > 0) {
				if (nh.n_type == NT_GNU_BUILD_ID && nh.n_namesz == 4 &&
				    !memcmp((char *)d->d_buf + name_off, "GNU", 4) && nh.n_descsz <= sizeof(m->build_id)) {
					memcpy(m->build_id, (char *)d->d_buf + desc_off, nh.n_descsz);
					m->build_id_len = nh.n_descsz;
					break;
				}
			}
		}
	}
	if (e)
		elf_end(e);
	close(fd);
}

int mt_proc_maps(int pid, struct mt_mapping **out, uint32_t *n)
{
	char path[64], line[PATH_MAX + 128];
	struct mt_mapping *v = NULL;
	uint32_t cap = 0;
	*out = NULL;
	*n = 0;
	snprintf(path, sizeof(path), "/proc/%d/maps", pid);
	FILE *f = fopen(path, "re");
	if (!f)
		return -errno;
	while (fgets(line, sizeof(line), f)) {
		struct mt_mapping m;
		if (!mt_mapping_parse(line, &m))
			continue;
		if (*n == cap) {
			struct mt_mapping *nv = realloc(v, (cap = cap ? 2 * cap : 64) * sizeof(*v));
			if (!nv)
				break;
			v = nv;
		}
		/* One build-id per object: its mappings share the file. */
		for (uint32_t k = *n; k-- > 0;)
			if (!strcmp(v[k].path, m.path)) {
				memcpy(m.build_id, v[k].build_id, sizeof(m.build_id));
				m.build_id_len = v[k].build_id_len;
				break;
			}
		if (!m.build_id_len)
			build_id_of(pid, &m);
		v[(*n)++] = m;
	}
	fclose(f);
	*out = v;
	return 0;
}
