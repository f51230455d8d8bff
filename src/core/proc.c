/* Small facts about processes from /proc (memtap/proc.h). */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "memtap/proc.h"

static ssize_t read_file(const char *path, char *buf, size_t len)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	ssize_t n = read(fd, buf, len - 1);
	int err = errno;
	close(fd);
	if (n < 0)
		return -err;
	buf[n] = '\0';
	return n;
}

int mt_proc_stat(int pid, int tid, char *buf, size_t len, const char **fields)
{
	char path[64];
	if (tid > 0)
		snprintf(path, sizeof(path), "/proc/%d/task/%d/stat", pid, tid);
	else
		snprintf(path, sizeof(path), "/proc/%d/stat", pid);
	ssize_t n = read_file(path, buf, len);
	if (n <= 0)
		return n ? (int)n : -ENOENT;
	char *p = strrchr(buf, ')'); /* the command may contain anything */
	if (!p || p[1] != ' ' || !p[2])
		return -EINVAL;
	*fields = p + 2;
	return 0;
}

const char *mt_stat_field(const char *fields, int n)
{
	for (int f = 3; f < n && fields; f++) {
		fields = strchr(fields, ' ');
		if (fields)
			fields++;
	}
	return fields && *fields ? fields : NULL;
}

uint64_t mt_proc_start(int pid, char *state)
{
	char buf[1024];
	const char *f;
	if (mt_proc_stat(pid, 0, buf, sizeof(buf), &f))
		return 0;
	if (state)
		*state = f[0];
	const char *s = mt_stat_field(f, 22);
	return s ? strtoull(s, NULL, 10) : 0;
}

void mt_proc_cmdline(int pid, char *dst, size_t len)
{
	char path[64];
	if (pid > 0)
		snprintf(path, sizeof(path), "/proc/%d/cmdline", pid);
	else
		snprintf(path, sizeof(path), "/proc/self/cmdline");
	ssize_t n = read_file(path, dst, len);
	if (n <= 0) {
		dst[0] = '\0';
		return;
	}
	while (n > 0 && dst[n - 1] == '\0')
		n--;
	for (ssize_t i = 0; i < n; i++)
		if ((unsigned char)dst[i] < 0x20)
			dst[i] = ' ';
	dst[n] = '\0';
}

int mt_private_dir(const char *base, char *dir, size_t len)
{
	int n = snprintf(dir, len, "%s/memtap-%u", base, (unsigned)geteuid());
	if (n < 0 || (size_t)n >= len)
		return -ENAMETOOLONG;
	if (mkdir(dir, 0700) < 0 && errno != EEXIST)
		return -errno;
	struct stat st;
	if (lstat(dir, &st) < 0)
		return -errno;
	if (!S_ISDIR(st.st_mode) || st.st_uid != geteuid() || (st.st_mode & 077))
		return -EPERM;
	return 0;
}

uint64_t mt_proc_hwm(int pid)
{
	char path[64], buf[4096];
	snprintf(path, sizeof(path), "/proc/%d/status", pid);
	ssize_t n = read_file(path, buf, sizeof(buf));
	if (n <= 0)
		return 0;
	buf[n < (ssize_t)sizeof(buf) ? n : (ssize_t)sizeof(buf) - 1] = '\0';
	const char *l = strstr(buf, "\nVmHWM:");
	return l ? strtoull(l + 7, NULL, 10) * 1024 : 0;
}
