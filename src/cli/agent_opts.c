/* The agent's options as the CLI writes them (agent_opts.h). */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent_opts.h"
#include "memtap/ctl.h"

static const char *const words[MT_AO_COUNT] = {
#define MT_AGENT_OPT(id, word, help) word,
#include "memtap/agent_opts.def"
#undef MT_AGENT_OPT
};

void mt_agent_opt_set(struct mt_agent_opts *o, enum mt_agent_opt id, const char *fmt, ...)
{
	va_list ap;
	char *v = NULL;
	va_start(ap, fmt);
	if (vasprintf(&v, fmt, ap) < 0)
		v = NULL;
	va_end(ap);
	free(o->v[id]);
	o->v[id] = v;
}

void mt_agent_opts_free(struct mt_agent_opts *o)
{
	for (int i = 0; i < MT_AO_COUNT; i++) {
		free(o->v[i]);
		o->v[i] = NULL;
	}
}

void mt_agent_opts_env(const struct mt_agent_opts *o)
{
	for (int i = 0; i < MT_AO_COUNT; i++) {
		char env[64];
		size_t n = (size_t)snprintf(env, sizeof(env), "MEMTAP_%s", words[i]);
		for (size_t k = 7; k < n; k++)
			if (env[k] >= 'a' && env[k] <= 'z')
				env[k] = (char)(env[k] - 32);
		if (o->v[i])
			setenv(env, o->v[i], 1);
		else
			unsetenv(env);
	}
}

int mt_agent_opts_words(const struct mt_agent_opts *o, char *out, size_t outlen)
{
	size_t used = 0;
	out[0] = '\0';
	for (int i = 0; i < MT_AO_COUNT; i++) {
		if (!o->v[i])
			continue;
		char esc[8192];
		mt_ctl_escape(o->v[i], esc, sizeof(esc));
		int n = snprintf(out + used, outlen - used, "%s%s=%s", used ? " " : "", words[i], esc);
		if (n < 0 || (size_t)n >= outlen - used)
			return -E2BIG;
		used += (size_t)n;
	}
	return 0;
}
