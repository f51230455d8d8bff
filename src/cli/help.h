/*
 * The command table (commands.def) and the options of the commands other
 * than run and attach (cmdopts.def), with what is made from them: each
 * command's parser and usage text, the top-level usage, the man pages and
 * the bash completion (help.c).
 *
 *   optind = 1;
 *   while ((id = mt_cmd_getopt(MT_C_REPORT, argc, argv)) >= 0)
 *           switch (id) { case MT_CO_REPORT_FORMAT: ... optarg ... }
 *   if (id == MT_CMD_BAD) return 2;      (said why, pointed at --help)
 *   if (id == MT_CMD_HELPED) return 0;   (--help printed)
 */
#ifndef MEMTAP_CLI_HELP_H
#define MEMTAP_CLI_HELP_H

#include <stdio.h>

#define MEMTAP_VERSION "0.1"

enum mt_cmd_id {
#define MT_CMD(id, name, fn, summary, forms, desc) MT_C_##id,
#include "commands.def"
#undef MT_CMD
	MT_C_COUNT
};

enum mt_copt_id {
#define MT_COPT(cmd, id, lng, shrt, arg, help) MT_CO_##cmd##_##id,
#include "cmdopts.def"
#undef MT_COPT
#undef MT_CARG
	MT_CO_COUNT
};

struct mt_cmd {
	const char *name;
	int (*fn)(int, char **);
	const char *summary, *forms, *desc;
};
extern const struct mt_cmd mt_cmds[MT_C_COUNT];

#define MT_CMD_DONE (-1)   /* no more options: the operands start at optind */
#define MT_CMD_BAD (-2)    /* a bad option, reported: exit 2 */
#define MT_CMD_HELPED (-3) /* --help: the usage went to stdout: exit 0 */

/* The next option of command CMD (an MT_CO_<CMD>_* id, its argument in
 * optarg), or one of the MT_CMD_* above.  Options and operands may mix
 * (getopt's permutation).  --help is handled here. */
int mt_cmd_getopt(enum mt_cmd_id cmd, int argc, char **argv);
/* CMD's usage: its forms, its description and its options; _via: run's or
 * attach's options for collector VIA only (enum mt_via; -1: all). */
void mt_cmd_usage(enum mt_cmd_id cmd, FILE *out);
void mt_cmd_usage_via(enum mt_cmd_id cmd, int via, FILE *out);
/* The command named NAME, or -1. */
int mt_cmd_find(const char *name);
/* memtap's own usage: every form of every command. */
void mt_usage(FILE *out);
/* The man page (roff) of memtap (CMD < 0) or of CMD. */
void mt_man_write(int cmd, FILE *out);
/* The bash completion script. */
void mt_completion_bash(FILE *out);

#endif
