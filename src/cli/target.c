/*
 * Checks a command before `memtap run` starts it: the agent can only be
 * preloaded into a dynamically linked x86-64 program that the dynamic loader
 * will not run in secure mode (setuid/setgid ignore LD_PRELOAD).
 */
#include <errno.h>
#include <fcntl.h>
#include <gelf.h>
#include <libelf.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli.h"

/* Finds CMD like execvp does. */
static int resolve(const char *cmd, char *out, size_t outlen)
{
	if (strchr(cmd, '/')) {
		snprintf(out, outlen, "%s", cmd);
		return access(out, X_OK) == 0 ? 0 : -errno;
	}
	const char *path = getenv("PATH");
	if (!path)
		path = "/usr/local/bin:/usr/bin:/bin";
	int err = -ENOENT;
	while (*path) {
		size_t n = strcspn(path, ":");
		snprintf(out, outlen, "%.*s/%s", (int)n, n ? path : ".", cmd);
		if (access(out, X_OK) == 0)
			return 0;
		if (errno == EACCES)
			err = -EACCES;
		path += n + (path[n] == ':');
	}
	return err;
}

int mt_target_check(const char *cmd, char *err, size_t errlen)
{
	char path[PATH_MAX];
	int r = resolve(cmd, path, sizeof(path));
	if (r)
		return 0; /* let exec report it, with the shell's exit codes */
	struct stat st;
	if (stat(path, &st) < 0)
		return 0;
	/* exec says "Permission denied" for a directory, which sends people
	 * looking at permissions. */
	if (S_ISDIR(st.st_mode)) {
		snprintf(err, errlen, "%s is a directory, not a program: give the command to run (memtap run "
			 "[OPTIONS] -- CMD [ARGS...])", path);
		return -EISDIR;
	}
	if ((st.st_mode & S_ISUID && st.st_uid != geteuid()) ||
	    (st.st_mode & S_ISGID && st.st_gid != getegid())) {
		snprintf(err, errlen, "%s is set-user-ID or set-group-ID: the dynamic loader ignores "
			 "LD_PRELOAD for it, so memtap cannot trace it; run memtap as the file's owner, "
			 "or trace a copy without the bit", path);
		return -EPERM;
	}
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return 0;
	char magic[4] = {0};
	if (read(fd, magic, 4) != 4 || memcmp(magic, ELFMAG, SELFMAG) != 0) {
		close(fd); /* a script: its interpreter is checked when it runs */
		return 0;
	}
	elf_version(EV_CURRENT);
	Elf *e = elf_begin(fd, ELF_C_READ, NULL);
	GElf_Ehdr eh;
	int ret = 0;
	if (!e || !gelf_getehdr(e, &eh)) {
		snprintf(err, errlen, "%s: not a readable ELF file (%s)", path, elf_errmsg(-1));
		ret = -ENOEXEC;
		goto out;
	}
	if (eh.e_ident[EI_CLASS] != ELFCLASS64 || eh.e_machine != EM_X86_64) {
		if (eh.e_ident[EI_CLASS] != ELFCLASS64)
			snprintf(err, errlen, "%s is a 32-bit program; memtap traces x86-64 programs only", path);
		else
			snprintf(err, errlen, "%s is built for another architecture (ELF machine %u); memtap "
				 "traces x86-64 programs only", path, (unsigned)eh.e_machine);
		ret = -ENOEXEC;
		goto out;
	}
	size_t n = 0;
	int dynamic = 0;
	elf_getphdrnum(e, &n);
	for (size_t i = 0; i < n; i++) {
		GElf_Phdr ph;
		if (gelf_getphdr(e, (int)i, &ph) && ph.p_type == PT_INTERP)
			dynamic = 1;
	}
	if (!dynamic) {
		snprintf(err, errlen, "%s is statically linked: there is no dynamic loader to preload "
			 "memtap's agent into; trace a dynamically linked build", path);
		ret = -ENOEXEC;
	}
out:
	if (e)
		elf_end(e);
	close(fd);
	return ret;
}
