/*
 * The options a session gives the agent (include/memtap/agent_opts.def), as
 * the CLI writes them: into the environment for `memtap run`, as the words
 * of `ctl attach` for `memtap attach`.
 */
#ifndef MEMTAP_CLI_AGENT_OPTS_H
#define MEMTAP_CLI_AGENT_OPTS_H

#include <stddef.h>

enum mt_agent_opt {
#define MT_AGENT_OPT(id, word, help) MT_AO_##id,
#include "memtap/agent_opts.def"
#undef MT_AGENT_OPT
	MT_AO_COUNT
};

struct mt_agent_opts {
	char *v[MT_AO_COUNT]; /* NULL: the agent's default */
};

/* Sets option ID to the printf-formatted value (copied). */
void mt_agent_opt_set(struct mt_agent_opts *o, enum mt_agent_opt id, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
void mt_agent_opts_free(struct mt_agent_opts *o);
/* MEMTAP_<WORD> for every option: set, or unset when absent (a value left
 * by an outer memtap run must not leak into this one). */
void mt_agent_opts_env(const struct mt_agent_opts *o);
/* "word=value ..." (values %-escaped) for `ctl attach`; 0, or -E2BIG. */
int mt_agent_opts_words(const struct mt_agent_opts *o, char *out, size_t outlen);

#endif
