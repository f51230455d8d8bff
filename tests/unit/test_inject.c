/* Unit tests: the injector's refusals (mt_inject_check) on processes this
 * test makes (a zombie, a stopped child, a traced child), and its ELF checks
 * on patched copies of a real program (32-bit, another machine, not ELF),
 * which tests/integration/90-inject.t cannot always run live. */
#include <elf.h>
#include <errno.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ptrace.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "memtap/inject.h"

static char err[1024];

/* A copy of this test program with BYTES written at OFF. */
static void patched_copy(const char *out, size_t off, const void *bytes, size_t n)
{
	FILE *in = fopen("/proc/self/exe", "rb"), *o = fopen(out, "wb");
	assert_non_null(in);
	assert_non_null(o);
	char buf[65536];
	size_t r, pos = 0;
	while ((r = fread(buf, 1, sizeof(buf), in)) > 0) {
		if (off >= pos && off + n <= pos + r)
			memcpy(buf + (off - pos), bytes, n);
		assert_int_equal(fwrite(buf, 1, r, o), r);
		pos += r;
	}
	fclose(in);
	fclose(o);
}

static void elf_ok(void **state)
{
	(void)state;
	int dynamic = -1;
	assert_int_equal(mt_inject_elf_check("/proc/self/exe", "me", 0, &dynamic, err, sizeof(err)), 0);
	assert_int_equal(dynamic, 1);
}

static void elf_32bit_refused(void **state)
{
	(void)state;
	char path[] = "/tmp/memtap-inject-32.XXXXXX";
	close(mkstemp(path));
	unsigned char cls = ELFCLASS32;
	patched_copy(path, EI_CLASS, &cls, 1);
	assert_int_equal(mt_inject_elf_check(path, "pid 42 (x)", 0, NULL, err, sizeof(err)), -ENOEXEC);
	assert_non_null(strstr(err, "pid 42 (x) is 32-bit"));
	assert_non_null(strstr(err, "64-bit x86-64 processes only"));
	unlink(path);
}

static void elf_other_machine_refused(void **state)
{
	(void)state;
	char path[] = "/tmp/memtap-inject-arm.XXXXXX";
	close(mkstemp(path));
	uint16_t m = EM_AARCH64;
	patched_copy(path, offsetof(Elf64_Ehdr, e_machine), &m, 2);
	assert_int_equal(mt_inject_elf_check(path, path, 0, NULL, err, sizeof(err)), -ENOEXEC);
	assert_non_null(strstr(err, "another architecture (ELF machine 183)"));
	unlink(path);
}

static void elf_not_a_library(void **state)
{
	(void)state;
	char path[] = "/tmp/memtap-inject-exec.XXXXXX";
	close(mkstemp(path));
	uint16_t t = ET_EXEC;
	patched_copy(path, offsetof(Elf64_Ehdr, e_type), &t, 2);
	assert_int_equal(mt_inject_elf_check(path, path, ET_DYN, NULL, err, sizeof(err)), -ENOEXEC);
	assert_non_null(strstr(err, "is not a shared library"));
	assert_int_equal(mt_inject_elf_check("/etc/passwd", "/etc/passwd", 0, NULL, err, sizeof(err)),
			 -ENOEXEC);
	assert_non_null(strstr(err, "is not an ELF file"));
	unlink(path);
}

static pid_t child(void)
{
	pid_t p = fork();
	assert_true(p >= 0);
	if (p == 0) {
		for (;;)
			pause();
	}
	return p;
}

static void check_refusals(void **state)
{
	(void)state;
	assert_int_equal(mt_inject_check(0, err, sizeof(err)), -EINVAL);
	assert_int_equal(mt_inject_check(2147483646, err, sizeof(err)), -ESRCH);
	assert_non_null(strstr(err, "no process with pid 2147483646"));
	/* this very process passes: nothing in it is refused */
	assert_int_equal(mt_inject_check(getpid(), err, sizeof(err)), 0);

	pid_t z = fork();
	if (z == 0)
		_exit(0);
	char path[64];
	snprintf(path, sizeof(path), "/proc/%d/stat", z);
	for (int i = 0; i < 200; i++) { /* until it is a zombie */
		char buf[256] = "";
		FILE *f = fopen(path, "r");
		if (f) {
			if (!fgets(buf, sizeof(buf), f))
				buf[0] = '\0';
			fclose(f);
		}
		char *p = strrchr(buf, ')');
		if (p && p[2] == 'Z')
			break;
		usleep(10000);
	}
	assert_int_equal(mt_inject_check(z, err, sizeof(err)), -ESRCH);
	assert_non_null(strstr(err, "is a zombie"));
	waitpid(z, NULL, 0);

	pid_t s = child();
	kill(s, SIGSTOP);
	waitpid(s, NULL, WUNTRACED);
	assert_int_equal(mt_inject_check(s, err, sizeof(err)), -EAGAIN);
	assert_non_null(strstr(err, "kill -CONT"));
	kill(s, SIGCONT);

	assert_int_equal(ptrace(PTRACE_SEIZE, s, 0, 0), 0);
	assert_int_equal(mt_inject_check(s, err, sizeof(err)), -EBUSY);
	assert_non_null(strstr(err, "already traced by pid"));
	kill(s, SIGKILL);
	waitpid(s, NULL, 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(elf_ok),         cmocka_unit_test(elf_32bit_refused),
		cmocka_unit_test(elf_other_machine_refused), cmocka_unit_test(elf_not_a_library),
		cmocka_unit_test(check_refusals),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
