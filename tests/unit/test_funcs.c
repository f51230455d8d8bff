/* The -f entry-patch planner (src/cli/funcs.c) on known prologues, and the
 * shared -f spec parser (src/core/funcspec.c): what is relocated how, and
 * what is refused with which reason. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include "cli/cli.h"
#include "memtap/funcspec.h"

#define ADDR 0x401000u

static int plan(const uint8_t *code, size_t n, uint64_t size, struct mt_funcspec *f, char *err)
{
	memset(f, 0, sizeof(*f));
	return mt_funcs_plan_bytes(f, code, n, ADDR, size, err, 256);
}

/* mov 0x10(%rip),%rax: copied, its displacement filled in by the agent. */
static void rip_relative(void **state)
{
	(void)state;
	static const uint8_t c[] = {0x48, 0x8b, 0x05, 0x10, 0, 0, 0, 0xc3, 0x90, 0x90};
	struct mt_funcspec f;
	char err[256];
	assert_int_equal(plan(c, sizeof(c), 8, &f, err), 0);
	assert_int_equal(f.at, ADDR);
	assert_int_equal(f.len, 7);
	assert_int_equal(f.ncode, 7);
	assert_memory_equal(f.code, c, 3);
	assert_int_equal(f.nfix, 1);
	assert_int_equal(f.fix[0].off, 3);
	assert_int_equal(f.fix[0].end, 7);
	assert_int_equal(f.fix[0].target, ADDR + 7 + 0x10);
}

/* endbr64 stays at the entry: the patch starts after it. */
static void endbr64_kept(void **state)
{
	(void)state;
	static const uint8_t c[] = {0xf3, 0x0f, 0x1e, 0xfa, 0x55, 0x48, 0x89, 0xe5, 0x48, 0x83, 0xec, 0x10, 0xc3};
	struct mt_funcspec f;
	char err[256];
	assert_int_equal(plan(c, sizeof(c), sizeof(c), &f, err), 0);
	assert_int_equal(f.at, ADDR + 4);
	assert_int_equal(f.len, 8); /* push; mov; sub */
	assert_memory_equal(f.orig, c + 4, 8);
	assert_int_equal(f.nfix, 0);
}

/* cmp; jae rel8 (nginx's ngx_palloc): the jump becomes jae rel32. */
static void jcc_rel8(void **state)
{
	(void)state;
	static const uint8_t c[] = {0x48, 0x39, 0x77, 0x20, 0x73, 0x0a, 0xe9, 0xd5, 0xfc, 0xff, 0xff, 0x90};
	struct mt_funcspec f;
	char err[256];
	assert_int_equal(plan(c, sizeof(c), 48, &f, err), 0);
	assert_int_equal(f.len, 6);
	assert_int_equal(f.ncode, 10);
	assert_memory_equal(f.code, c, 4);
	assert_int_equal(f.code[4], 0x0f);
	assert_int_equal(f.code[5], 0x83);
	assert_int_equal(f.nfix, 1);
	assert_int_equal(f.fix[0].off, 6);
	assert_int_equal(f.fix[0].end, 10);
	assert_int_equal(f.fix[0].target, ADDR + 6 + 0x0a);
}

static void refusals(void **state)
{
	(void)state;
	struct mt_funcspec f;
	char err[256];
	static const uint8_t tiny[] = {0x31, 0xc0, 0xc3};
	assert_int_equal(plan(tiny, sizeof(tiny), 3, &f, err), -ERANGE);
	assert_non_null(strstr(err, "3 bytes long"));
	static const uint8_t ret[] = {0x31, 0xc0, 0xc3, 0x90, 0x90, 0x90, 0x90, 0x90};
	assert_int_equal(plan(ret, sizeof(ret), 0, &f, err), -ERANGE);
	assert_non_null(strstr(err, "returns or jumps away"));
	static const uint8_t loop[] = {0xe2, 0xfe, 0x90, 0x90, 0x90, 0x90, 0xc3};
	assert_int_equal(plan(loop, sizeof(loop), sizeof(loop), &f, err), -EOPNOTSUPP);
	assert_non_null(strstr(err, "no 32-bit form"));
	static const uint8_t call[] = {0xff, 0xd0, 0x48, 0x89, 0xc7, 0xc3};
	assert_int_equal(plan(call, sizeof(call), sizeof(call), &f, err), -ERANGE);
	assert_non_null(strstr(err, "return into the patched bytes"));
	/* jmp back into the displaced bytes: xor; inc; cmp; jne -7 */
	static const uint8_t self[] = {0x31, 0xc0, 0xeb, 0xfe, 0x90, 0x90, 0xc3};
	assert_int_equal(plan(self, sizeof(self), sizeof(self), &f, err), -ERANGE);
}

static void spec_round_trip(void **state)
{
	(void)state;
	struct mt_funcspec f, g;
	char err[256], wire[1024];
	const char *u = "apr_pool_create_ex:size=arg2:out=arg0:fail=null";
	assert_int_equal(mt_funcspec_parse(u, strlen(u), 1, &f, err, sizeof(err)), 0);
	assert_int_equal(f.size_arg, 2);
	assert_int_equal(f.out_arg, 0);
	assert_int_equal(f.fail, MT_FAIL_NULL);
	static const uint8_t c[] = {0x48, 0x8b, 0x05, 0x10, 0, 0, 0, 0xc3};
	assert_int_equal(mt_funcs_plan_bytes(&f, c, sizeof(c), ADDR, 8, err, sizeof(err)), 0);
	snprintf(f.obj, sizeof(f.obj), "/usr/lib/x86_64-linux-gnu/lib:odd.so");
	assert_int_equal(mt_funcspec_format(&f, wire, sizeof(wire)), 0);
	assert_int_equal(mt_funcspec_parse(wire, strlen(wire), 0, &g, err, sizeof(err)), 0);
	assert_true(g.has_plan);
	assert_string_equal(g.obj, f.obj);
	assert_int_equal(g.at, f.at);
	assert_int_equal(g.len, f.len);
	assert_memory_equal(g.code, f.code, f.ncode);
	assert_int_equal(g.fix[0].target, f.fix[0].target);
	assert_int_equal(g.fail, MT_FAIL_NULL);
	/* Users cannot pass a plan, nor options that do not exist. */
	assert_int_equal(mt_funcspec_parse(wire, strlen(wire), 1, &g, err, sizeof(err)), -EINVAL);
	assert_int_equal(mt_funcspec_parse("f:size=arg6", 11, 1, &g, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "size=argN or pool=argM"));
	assert_int_equal(mt_funcspec_format(&f, wire, 40), -ENOSPC);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(rip_relative), cmocka_unit_test(endbr64_kept), cmocka_unit_test(jcc_rel8),
		cmocka_unit_test(refusals),     cmocka_unit_test(spec_round_trip),
	};
	return cmocka_run_group_tests_name("funcs", tests, NULL, NULL);
}
