/* memtap ctl PID COMMAND: talk to the agent inside a traced process. */
#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "cli.h"
#include "memtap/ctl.h"

static void ctl_usage(FILE *out)
{
	fprintf(out,
		"usage: memtap ctl PID COMMAND\n"
		"  activate      start counting (after run --inactive or deactivate)\n"
		"  deactivate    stop counting; the program runs on at full speed\n"
		"  dump [PATH]   write a profile now and print its path\n"
		"  stats         memtap's counters and the allocator's own statistics\n"
		"  reset         zero the counters (in-use carries on, the peak restarts)\n"
		"  status        active or not, options and totals\n");
}

/* The uids a process may have bound its socket under: its real, effective,
 * saved and filesystem uids (a server may have dropped privileges after the
 * agent started), then root. */
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
	uids[n] = 0;
	return n + 1;
}

int cmd_ctl(int argc, char **argv)
{
	if (argc >= 2 && (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help"))) {
		ctl_usage(stdout);
		return 0;
	}
	if (argc < 3 || argc > 4) {
		ctl_usage(stderr);
		return 2;
	}
	char *end;
	long pid = strtol(argv[1], &end, 10);
	if (*end || pid <= 0 || pid > INT32_MAX)
		return mt_error("ctl: '%s' is not a process id", argv[1]), 2;

	/* Build and check the request here, so a typo is reported without
	 * touching the process. */
	char req[MT_CTL_MAX_REQUEST + 2], err[256];
	char arg[PATH_MAX] = "";
	if (argc == 4) {
		if (strcmp(argv[2], "dump") == 0 && argv[3][0] != '/') {
			char cwd[PATH_MAX];
			if (!getcwd(cwd, sizeof(cwd)))
				return mt_error("ctl: getcwd: %s", strerror(errno)), 2;
			snprintf(arg, sizeof(arg), "%s/%s", cwd, argv[3]);
		} else {
			snprintf(arg, sizeof(arg), "%s", argv[3]);
		}
	}
	int len = snprintf(req, sizeof(req), "%s%s%s\n", argv[2], arg[0] ? " " : "", arg);
	struct mt_ctl_request parsed;
	if (len <= 0 || (size_t)len >= sizeof(req) || mt_ctl_parse(req, (size_t)len, &parsed, err, sizeof(err)))
		return mt_error("ctl: %s", len > 0 && (size_t)len < sizeof(req) ? err : "request too long"), 2;

	unsigned uids[5];
	char comm[64];
	int nuids = target_uids((pid_t)pid, uids, comm, sizeof(comm));
	if (nuids < 0)
		return mt_error("ctl: no process with pid %ld", pid), 1;

	char path[PATH_MAX];
	int found = 0, denied = 0;
	for (int i = 0; i < nuids && !found; i++) {
		struct stat st;
		snprintf(path, sizeof(path), MT_CTL_SOCK_FMT, mt_ctl_rundir(), uids[i], (int)pid);
		if (stat(path, &st) == 0 && S_ISSOCK(st.st_mode))
			found = 1;
		else if (errno == EACCES)
			denied = 1;
	}
	if (!found && denied)
		return mt_error("ctl: permission denied looking for the control socket of %ld (%s) under "
				"%s/memtap-<uid>; run memtap ctl as the user the process runs as, or as root",
				pid, comm, mt_ctl_rundir()), 1;
	if (!found)
		return mt_error("ctl: process %ld (%s) has no memtap agent: no control socket %s/memtap-%u/%ld.sock; "
				"start it with `memtap run`", pid, comm, mt_ctl_rundir(), uids[0], pid), 1;

	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
	if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		int e = errno;
		if (fd >= 0)
			close(fd);
		if (e == ECONNREFUSED)
			return mt_error("ctl: process %ld (%s) is not answering on %s (a stale socket: "
					"the agent has stopped)", pid, comm, path), 1;
		return mt_error("ctl: cannot connect to %s: %s%s", path, strerror(e),
				e == EACCES ? "; run memtap ctl as the process's user or as root" : ""), 1;
	}
	struct timeval tv = {.tv_sec = 30};
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	if (write(fd, req, (size_t)len) != len) {
		close(fd);
		return mt_error("ctl: sending to %s: %s", path, strerror(errno)), 1;
	}
	shutdown(fd, SHUT_WR);

	size_t cap = 65536, got = 0;
	char *resp = malloc(cap);
	for (;;) {
		if (got + 1 >= cap) {
			char *r = realloc(resp, cap *= 2);
			if (!r)
				break;
			resp = r;
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
	int rc;
	if (!strncmp(resp, "ok\n", 3)) {
		fputs(resp + 3, stdout);
		rc = 0;
	} else if (!strncmp(resp, "error: ", 7)) {
		resp[strcspn(resp, "\n")] = '\0';
		mt_error("ctl %ld %s: %s", pid, argv[2], resp + 7);
		rc = 1;
	} else {
		mt_error("ctl: process %ld answered nothing we understand (%zu bytes)", pid, got);
		rc = 1;
	}
	free(resp);
	return rc;
}
