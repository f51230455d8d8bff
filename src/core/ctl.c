/* The control protocol's request parser, shared by the agent and the tests. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "memtap/ctl.h"

const char *mt_ctl_rundir(void)
{
	const char *d = getenv("MEMTAP_RUNDIR");
	return d && d[0] == '/' ? d : "/tmp";
}

static const struct {
	const char *word;
	enum mt_ctl_cmd cmd;
	int arg; /* 0: none, 1: optional, 2: required */
} commands[] = {
	{"activate", MT_CTL_ACTIVATE, 0}, {"deactivate", MT_CTL_DEACTIVATE, 0},
	{"dump", MT_CTL_DUMP, 1},         {"stats", MT_CTL_STATS, 0},
	{"reset", MT_CTL_RESET, 0},       {"status", MT_CTL_STATUS, 0},
	{"attach", MT_CTL_ATTACH, 2},     {"detach", MT_CTL_DETACH, 0},
	{"sync", MT_CTL_SYNC, 1},
	{"leaks", MT_CTL_LEAKS, 0},
};

int mt_ctl_parse(const char *line, size_t len, struct mt_ctl_request *req,
		 char *err, size_t errlen)
{
	if (len && line[len - 1] == '\n')
		len--;
	if (len >= MT_CTL_MAX_REQUEST) {
		snprintf(err, errlen, "request of %zu bytes exceeds the limit of %d", len,
			 MT_CTL_MAX_REQUEST - 1);
		return -EINVAL;
	}
	if (memchr(line, '\0', len) || memchr(line, '\n', len)) {
		snprintf(err, errlen, "request contains a NUL byte or several lines");
		return -EINVAL;
	}
	const char *sp = memchr(line, ' ', len);
	size_t wlen = sp ? (size_t)(sp - line) : len;
	for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++) {
		if (strlen(commands[i].word) != wlen || memcmp(commands[i].word, line, wlen) != 0)
			continue;
		req->cmd = commands[i].cmd;
		req->arg[0] = '\0';
		if (!sp && commands[i].arg == 2) {
			snprintf(err, errlen, "'%s' needs an argument", commands[i].word);
			return -EINVAL;
		}
		if (!sp)
			return 0;
		size_t alen = len - wlen - 1;
		if (!commands[i].arg || alen == 0) {
			snprintf(err, errlen, "'%s' takes no argument", commands[i].word);
			return -EINVAL;
		}
		memcpy(req->arg, sp + 1, alen);
		req->arg[alen] = '\0';
		return 0;
	}
	snprintf(err, errlen, "unknown command '%.*s' (known: activate, deactivate, dump [PATH], "
		 "stats, reset, status, detach)", (int)(wlen > 64 ? 64 : wlen), line);
	return -EINVAL;
}

int mt_ctl_unescape(char *s)
{
	char *o = s;
	for (; *s; s++) {
		if (*s != '%') {
			*o++ = *s;
			continue;
		}
		unsigned v;
		if (sscanf(s + 1, "%2x", &v) != 1 || !v)
			return -EINVAL;
		*o++ = (char)v;
		s += 2;
	}
	*o = '\0';
	return 0;
}

size_t mt_ctl_escape(const char *in, char *out, size_t outlen)
{
	size_t n = 0;
	for (; *in && n + 4 < outlen; in++) {
		unsigned char c = (unsigned char)*in;
		if (c <= ' ' || c == '%' || c == 0x7f)
			n += (size_t)snprintf(out + n, outlen - n, "%%%02x", c);
		else
			out[n++] = (char)c;
	}
	out[n] = '\0';
	return n;
}
