/*
 * The client side of the control protocol (include/memtap/ctl.h): finds a
 * traced process's socket and exchanges one request, for `memtap ctl`,
 * `attach` and `detach`.
 */
#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

#include "cli.h"
#include "memtap/ctl.h"

/* The uids a process may have bound its socket under: its effective, real,
 * saved and filesystem uids (a server may have dropped privileges after the
 * agent started), then root.  Returns how many, or -errno. */
static int target_uids(pid_t pid, unsigned uids[5], char *comm, size_t commlen)
{
	char path[64], line[256];
	snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
	FILE *f = fopen(path, "r");
	if (!f)
		return -errno;
	int n = 0;
	comm[0] = '\0';
	while (fgets(line, sizeof(line), f)) {
		if (!strncmp(line, "Name:", 5)) {
			char *s = line + 5;
			while (isspace((unsigned char)*s))
				s++;
			s[strcspn(s, "\n")] = '\0';
			snprintf(comm, commlen, "%s", s);
		}
		if (!strncmp(line, "Uid:", 4))
			n = sscanf(line + 4, "%u %u %u %u", &uids[1], &uids[0], &uids[2], &uids[3]);
	}
	fclose(f);
	if (n < 1)
		n = 0;
	uids[n] = 0;
	return n + 1;
}

int mt_ctl_socket_path(pid_t pid, char *path, size_t pathlen, char *err, size_t errlen)
{
	unsigned uids[5];
	char comm[64];
	int nuids = target_uids(pid, uids, comm, sizeof(comm));
	if (nuids < 0) {
		snprintf(err, errlen, "no process with pid %d", (int)pid);
		return -ESRCH;
	}
	int denied = 0;
	for (int i = 0; i < nuids; i++) {
		struct stat st;
		snprintf(path, pathlen, MT_CTL_SOCK_FMT, mt_ctl_rundir(), uids[i], (int)pid);
		if (stat(path, &st) == 0 && S_ISSOCK(st.st_mode))
			return 0;
		if (errno == EACCES)
			denied = 1;
	}
	if (denied) {
		snprintf(err, errlen, "permission denied looking for the control socket of %d (%s) under "
			 "%s/memtap-<uid>; run memtap as the user the process runs as, or as root",
			 (int)pid, comm, mt_ctl_rundir());
		return -EACCES;
	}
	snprintf(err, errlen, "process %d (%s) has no memtap agent: no control socket %s/memtap-%u/%d.sock; "
		 "start it with `memtap run` or `memtap attach`", (int)pid, comm, mt_ctl_rundir(), uids[0],
		 (int)pid);
	return -ENOENT;
}

static int ctl_send(pid_t pid, const char *request, const void *data, size_t datalen, char **response, char *err,
		    size_t errlen, int seconds);

int mt_ctl_send(pid_t pid, const char *request, char **response, char *err, size_t errlen)
{
	return ctl_send(pid, request, NULL, 0, response, err, errlen, 30);
}

int mt_ctl_send_timeout(pid_t pid, const char *request, char **response, char *err, size_t errlen, int seconds)
{
	return ctl_send(pid, request, NULL, 0, response, err, errlen, seconds);
}

int mt_ctl_send_data(pid_t pid, const char *request, const void *data, size_t datalen, char **response, char *err,
		     size_t errlen)
{
	return ctl_send(pid, request, data, datalen, response, err, errlen, 30);
}

static int ctl_send(pid_t pid, const char *request, const void *data, size_t datalen, char **response, char *err,
		    size_t errlen, int seconds)
{
	char path[PATH_MAX];
	*response = NULL;
	int r = mt_ctl_socket_path(pid, path, sizeof(path), err, errlen);
	if (r)
		return r;
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
	if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		int e = errno;
		if (fd >= 0)
			close(fd);
		if (e == ECONNREFUSED)
			snprintf(err, errlen, "process %d is not answering on %s (a stale socket: the agent "
				 "has stopped)", (int)pid, path);
		else
			snprintf(err, errlen, "cannot connect to %s: %s%s", path, strerror(e),
				 e == EACCES ? "; run memtap as the process's user or as root" : "");
		return -e;
	}
	struct timeval tv = {.tv_sec = seconds};
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	size_t len = strlen(request);
	if (write(fd, request, len) != (ssize_t)len) {
		r = -errno;
		snprintf(err, errlen, "sending to %s: %s", path, strerror(errno));
		close(fd);
		return r;
	}
	for (size_t off = 0; off < datalen;) {
		ssize_t n = write(fd, (const char *)data + off, datalen - off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			r = n < 0 ? -errno : -EIO;
			snprintf(err, errlen, "sending to %s: %s", path, strerror(-r));
			close(fd);
			return r;
		}
		off += (size_t)n;
	}
	shutdown(fd, SHUT_WR);
	size_t cap = 65536, got = 0;
	char *resp = malloc(cap);
	if (!resp) {
		close(fd);
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	for (;;) {
		if (got + 1 >= cap) {
			char *n = realloc(resp, cap *= 2);
			if (!n)
				break;
			resp = n;
		}
		ssize_t n = read(fd, resp + got, cap - got - 1);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		got += (size_t)n;
	}
	close(fd);
	resp[got] = '\0';
	if (!strncmp(resp, "ok\n", 3)) {
		memmove(resp, resp + 3, got - 2);
		*response = resp;
		return 0;
	}
	if (!strncmp(resp, "error: ", 7)) {
		memmove(resp, resp + 7, got - 6);
		resp[strcspn(resp, "\n")] = '\0';
		*response = resp;
		return 1;
	}
	free(resp);
	snprintf(err, errlen, "process %d answered nothing we understand (%zu bytes)", (int)pid, got);
	return -EPROTO;
}
