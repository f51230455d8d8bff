/*
 * Symbolization: addresses recorded by a collector, turned into function
 * names, source files and lines after the process has gone.
 *
 * It works from a profile's mappings (struct mt_mapping: path, file offset,
 * build-id) with elfutils' libdwfl.  Each mapped file is reported at its load
 * bias, worked out from its mappings and its program headers (a file loaded
 * at several addresses, as in a merged profile, at each; a file mapped as
 * plain data is no load).  Debug info comes from a separate file when one is
 * installed (by build-id under /usr/lib/debug/.build-id, or .gnu_debuglink;
 * libdw also asks debuginfod when DEBUGINFOD_URLS is set), else from the
 * file's own DWARF; names come from the DWARF (inlined functions included),
 * else from the symbol tables (.symtab, .dynsym).  C++ names are demangled.
 *
 * What cannot be trusted falls back: an address in no mapping to "0x7f...",
 * one in a file that is gone, is not ELF, or changed since it was mapped
 * (build-id mismatch; or "PATH (deleted)" without a recorded build-id) to
 * "module+0xoffset", module being the file's base name.
 *
 * Files are opened lazily, the first time one of their addresses is asked
 * for, and results are cached per address: symbolizing a profile's sites
 * costs one lookup per distinct address.
 *
 * Usage:
 *   struct mt_symbolizer *s = mt_symbolizer_new(profile);
 *   struct mt_frame f[MT_INLINE_MAX];
 *   int n = mt_symbolize(s, addr, 1, f, MT_INLINE_MAX);  // innermost first
 *   // f[n - 1].function is the real function, f[0].file:f[0].line the
 *   // source line of ADDR.  With MAX 1: the real function alone, and the
 *   // line in it (what a flat or collapsed-stack report wants).
 *   mt_symbolizer_free(s);
 * Strings belong to the symbolizer and live until mt_symbolizer_free().  A
 * symbolizer is not thread-safe.
 */
#ifndef MEMTAP_SYMBOLIZE_H
#define MEMTAP_SYMBOLIZE_H

#include <stddef.h>
#include <stdint.h>

#include "memtap/profile.h"

#define MT_INLINE_MAX 8

struct mt_frame {
	const char *function; /* demangled when C++; "module+0x1234" or "0x7f..." when unknown */
	/* Source file, or NULL: absolute when the compilation directory in the
	 * DWARF is (distributions' debug info has relative ones, so glibc's
	 * say "./malloc/malloc.c"). */
	const char *file;
	uint32_t line;      /* 0 when unknown */
	const char *module; /* mapped file's path as recorded, or NULL */
	/* ADDR in the module: its ELF virtual address (what `addr2line -e
	 * MODULE` takes) when the file was usable; else its file offset, which
	 * is the same number for code in PIEs and shared objects; ADDR itself
	 * outside any mapping. */
	uint64_t module_offset;
	/* For the real function: ADDR - start of the ELF symbol holding ADDR,
	 * which may name a part of the function the compiler split off
	 * (foo.cold); 0 for inlined frames or without a symbol. */
	uint64_t function_offset;
	int inlined; /* 1: inlined into the next frame of the result */
	int symbolized; /* 1: FUNCTION names a function; 0: it is the fallback
	                   ("module+0x1234", "0x7f...") */
};

struct mt_symbolizer;

/* Prepares symbolization for P's mappings; P must outlive the symbolizer, its
 * mappings unchanged.  NULL only on ENOMEM: missing files degrade results,
 * not the symbolizer. */
struct mt_symbolizer *mt_symbolizer_new(const struct mt_profile *p);
void mt_symbolizer_free(struct mt_symbolizer *s);

/* Resolves ADDR into up to MAX frames, innermost (most inlined) first, the
 * last being the real function; returns how many (at least 1), or -EINVAL
 * (S or OUT NULL, MAX < 1) or -ENOMEM.  When ADDR lies in more than MAX
 * nested inlined functions, the innermost ones are left out.  RETURN_ADDR:
 * ADDR is a return address (every frame of a stack but an interrupted one),
 * so ADDR - 1 is looked up, which lies in the call instruction; offsets and
 * fallback names still show ADDR. */
int mt_symbolize(struct mt_symbolizer *s, uint64_t addr, int return_addr, struct mt_frame *out,
		 int max);

/* Progress of long symbolizations (`memtap report` on a terminal): FN is
 * told the share of EXPECTED lookups made so far (every 256 lookups, below
 * 1: EXPECTED is an estimate); FN NULL turns it off.  Process-wide. */
void mt_symbolize_progress(void (*fn)(double done, void *arg), void *arg, uint64_t expected);

/* The file-backed mappings of running process PID (/proc/PID/maps), each
 * with its object's GNU build-id (read from the file under /proc/PID/root):
 * a malloc'ed array of *N into *OUT.  0 or -errno (the process is gone, or
 * not ours to read). */
int mt_proc_maps(int pid, struct mt_mapping **out, uint32_t *n);

#endif
