/*
 * Function hooks for the rest of the agent (hook.c, tramp.S): run a callback
 * at a function's entry, and optionally at its return, whoever calls it.
 *
 * Two ways in, one path after that:
 * - entry hook (mt_hook_fn): the function's first instructions become a
 *   `jmp rel32` to a stub of ours; the instructions it displaced run,
 *   relocated, in a trampoline that jumps back.  Every call is seen, also
 *   from inside the function's own module.  The agent carries no
 *   disassembler: the CLI decides the patch (struct mt_funcspec's plan) and
 *   the agent checks the bytes against it before writing.
 * - GOT hook (mt_hook_got): the GOT slots naming the function point at the
 *   stub; only calls from other modules are seen.
 * The stub loads the hook's id into r11 and jumps to mt_hook_tramp
 * (tramp.S), which saves the argument registers, calls ON_ENTRY and goes on
 * to the trampoline (or the real function).  When ON_ENTRY returns 1 and the
 * hook has ON_RETURN, the return address is swapped for mt_hook_ret, which
 * calls ON_RETURN with rax and goes back to the real return address, kept on
 * a per-thread shadow stack.
 *
 * Ids, stubs and trampolines are never reused or unmapped: a thread may be
 * between a patched entry and its stub, or inside a trampoline, when the
 * hook is removed, and must still land where it meant to.  A removed hook is
 * inert: its callbacks are cleared and its entry bytes restored.
 *
 * Patching a function's entry while another thread runs it is not safe
 * (docs/SAFETY.md): mt_hook_patch() is called with every other thread
 * stopped (by the injector, for attach) or before there are any (the
 * constructor, for run).
 */
#ifndef MEMTAP_HOOK_H
#define MEMTAP_HOOK_H

#include <stddef.h>
#include <stdint.h>

#include "memtap/funcspec.h"

/* Saved registers, as mt_hook_tramp lays them out (and mt_custom_enter reads). */
enum { MT_REG_R11, MT_REG_RAX, MT_REG_R9, MT_REG_R8, MT_REG_RCX, MT_REG_RDX, MT_REG_RSI, MT_REG_RDI };

/* At entry: REGS are the saved registers.  Return 1 to have ON_RETURN called
 * at the return, with *COOKIE (set it to what it needs: an argument). */
typedef int (*mt_hook_entry_fn)(void *ctx, const uint64_t *regs, uint64_t *cookie);
/* At return: RET is rax as the function returned it. */
typedef void (*mt_hook_return_fn)(void *ctx, uint64_t ret, uint64_t cookie);

/* Prepares an entry hook of the function whose patch PLAN describes (its
 * object must be loaded): checks the bytes, builds the stub and trampoline
 * within +-2 GiB of it.  Nothing is written to the function until
 * mt_hook_patch().  Returns the hook id (>= 0), or -errno with the reason in
 * ERR: -ENOENT (object not loaded), -EILSEQ (bytes differ from the file),
 * -ERANGE (no memory near enough), -ENOSPC (too many hooks). */
int mt_hook_fn(const struct mt_funcspec *plan, mt_hook_entry_fn on_entry, mt_hook_return_fn on_return,
	       void *ctx, char *err, size_t errlen);
/* A GOT hook of REAL (a definition found by name): the returned id's stub
 * (mt_hook_stub) is what the GOT slots should hold. */
int mt_hook_got(void *real, mt_hook_entry_fn on_entry, mt_hook_return_fn on_return, void *ctx,
		char *err, size_t errlen);
void *mt_hook_stub(int id);
/* Writes every prepared entry hook into its function, after checking that
 * none of the NPCS stopped threads' instruction pointers PCS is inside the
 * bytes it would replace (-EBUSY then: try again; nothing was written).
 * Returns the number of functions patched, or -errno. */
int mt_hook_patch(const uint64_t *pcs, size_t npcs);
/* Makes every hook inert: callbacks off (new calls pass straight through);
 * with RESTORE, also writes back the original entry bytes (every other
 * thread must be stopped).  Returns the number of entries restored, or
 * -EBUSY (with RESTORE) when a stopped thread holds the hooks' lock. */
int mt_hook_remove_all(int restore);
/* Entry hooks whose bytes are in place now (patched), and prepared but not yet
 * patched. */
int mt_hook_patched(void);
int mt_hook_pending(void);
/* Whether return hooks can work in this process (no CET shadow stack);
 * 0, or -EOPNOTSUPP with the reason in ERR. */
int mt_hook_return_ok(char *err, size_t errlen);
/* Returns not seen: shadow stack full (LOST), frames an exception or a
 * thread cancellation unwound (UNWOUND). */
void mt_hook_stats(uint64_t *lost, uint64_t *unwound);
/* Whether a return hook was ever made; then mt_hook_unwind_install() hooks
 * the unwinder's entry points (again after each dlopen: libgcc_s may come
 * later). */
int mt_hook_wants_unwind(void);
void mt_hook_unwind_install(void);
/* Restores the return addresses of the calling thread's hooked frames
 * (before an exception unwinds them): see hook.c. */
void mt_hook_unwind_thread(void);

#endif
