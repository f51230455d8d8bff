/*
 * `-f FUNC[:size=argN][:pool=argM][:fail=null|nonzero|neg][:out=argK][:got]`:
 * one parser for the CLI and the agent (src/core/funcspec.c, built into both).
 *
 * The user writes the options above.  The CLI finds FUNC in the target's
 * objects and decides how its entry is patched (src/cli/funcs.c, with a
 * disassembler the agent does not carry); it appends that plan to the spec
 * it hands the agent (MEMTAP_FUNCS for `run`, `ctl attach funcs=` for
 * attach), in keys the user does not type:
 *
 *   :at=HEX       the first patched byte, an object vaddr (after endbr64)
 *   :orig=HEX     the bytes there, as the file has them (the agent checks
 *                 memory against them before it writes anything)
 *   :code=HEX     the displaced instructions, relocated for the trampoline
 *   :fix=O/E/T+.. rel32 fields of CODE to fill in: at offset O, relative to
 *                 offset E (the instruction's end), pointing at object vaddr T
 *   :obj=PATH     the object (last: the rest of the entry is the path)
 *
 * Entries are separated by ','; paths with ',' are refused by the CLI.
 */
#ifndef MEMTAP_FUNCSPEC_H
#define MEMTAP_FUNCSPEC_H

#include <stddef.h>
#include <stdint.h>

#include "memtap/profile.h"

#define MT_PLAN_ORIG_MAX 24 /* patched bytes: 5 plus the rest of the last instruction */
#define MT_PLAN_CODE_MAX 96 /* the relocated instructions */
#define MT_PLAN_FIX_MAX 8
#define MT_PLAN_OBJ_MAX 512

enum mt_fail {
	MT_FAIL_NONE = 0,
	MT_FAIL_NULL,    /* fail=null: the result is NULL (or 0) */
	MT_FAIL_NONZERO, /* fail=nonzero: the int returned is not 0 (apr_status_t, errno codes) */
	MT_FAIL_NEG,     /* fail=neg: the int returned is negative (-errno, -1) */
};

struct mt_plan_fix {
	uint8_t off, end; /* rel32 at CODE[off], relative to CODE + end */
	uint64_t target;  /* object vaddr */
};

struct mt_funcspec {
	char name[MT_NAME_MAX];
	int size_arg; /* 0..5, or -1 */
	int pool_arg; /* 0..5, or -1 */
	int out_arg;  /* 0..5, or -1: the result is what FUNC wrote through this pointer argument */
	int fail;     /* enum mt_fail */
	int got;      /* :got: redirect GOT slots only (calls from other modules) */
	/* The entry patch, from the CLI (has_plan). */
	int has_plan;
	uint64_t at;
	uint8_t len, ncode, nfix;
	uint8_t orig[MT_PLAN_ORIG_MAX];
	uint8_t code[MT_PLAN_CODE_MAX];
	struct mt_plan_fix fix[MT_PLAN_FIX_MAX];
	char obj[MT_PLAN_OBJ_MAX];
};

/* Whether FUNC's return is watched (fail= or out=): a return hook. */
static inline int mt_funcspec_wants_return(const struct mt_funcspec *f)
{
	return f->fail != MT_FAIL_NONE || f->out_arg >= 0;
}

/* Parses one entry, S[0..LEN).  USER: only the options a user may write
 * (the CLI checks -f with it); else the plan keys too (the agent).  0, or
 * -EINVAL with what is wrong in ERR. */
int mt_funcspec_parse(const char *s, size_t len, int user, struct mt_funcspec *f, char *err,
		      size_t errlen);

/* Writes F as one entry (with its plan if it has one) into OUT; 0, or
 * -ENOSPC when OUTLEN is too small. */
int mt_funcspec_format(const struct mt_funcspec *f, char *out, size_t outlen);

#endif
