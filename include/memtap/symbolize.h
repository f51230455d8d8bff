/*
 * Symbolization: addresses recorded by a collector, turned into function
 * names, source files and lines after the process has gone.
 *
 * It works from a profile's mappings (struct mt_mapping: path, file offset,
 * build-id) with elfutils' libdwfl: each mapped file is reported at its load
 * address, separate debug info is found by build-id under
 * /usr/lib/debug/.build-id when installed, else the file's own DWARF, else
 * its symbol tables (.symtab, .dynsym); an address in no known file, or in a
 * file that is gone or changed (build-id mismatch), falls back to
 * "module+0xoffset" or the bare address.
 *
 * Usage:
 *   struct mt_symbolizer *s = mt_symbolizer_new(profile);
 *   struct mt_frame f[MT_INLINE_MAX];
 *   int n = mt_symbolize(s, addr, 1, f, MT_INLINE_MAX);  // innermost first
 *   mt_symbolizer_free(s);
 * Results are cached per address; strings belong to the symbolizer.
 */
#ifndef MEMTAP_SYMBOLIZE_H
#define MEMTAP_SYMBOLIZE_H

#include <stddef.h>
#include <stdint.h>

#include "memtap/profile.h"

#define MT_INLINE_MAX 8

struct mt_frame {
	const char *function; /* demangled when C++; "module+0x1234" or "0x7f..." when unknown */
	const char *file;     /* source file, or NULL */
	uint32_t line;        /* 0 when unknown */
	const char *module;   /* mapped file's path, or NULL */
	uint64_t module_offset; /* address relative to the module's load base */
	int inlined;          /* 1: inlined into the next frame of the result */
};

struct mt_symbolizer;

/* Prepares symbolization for P's mappings (P must outlive the symbolizer).
 * NULL only on ENOMEM: missing files degrade results, not the symbolizer. */
struct mt_symbolizer *mt_symbolizer_new(const struct mt_profile *p);
void mt_symbolizer_free(struct mt_symbolizer *s);

/* Resolves ADDR into up to MAX frames, innermost (most inlined) first, the
 * last being the real function; returns how many (at least 1).  RETURN_ADDR:
 * ADDR is a return address (every frame of a stack but an interrupted one),
 * so ADDR - 1 is looked up, which lies in the call instruction. */
int mt_symbolize(struct mt_symbolizer *s, uint64_t addr, int return_addr, struct mt_frame *out,
		 int max);

#endif
