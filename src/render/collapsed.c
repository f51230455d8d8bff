/* Collapsed stacks (`root;caller;leaf VALUE`), as flamegraph.pl, speedscope
 * and inferno read them. */
#include <errno.h>
#include <inttypes.h>

#include "export.h"

int mt_render_collapsed(FILE *out, const struct mt_report_item *items, size_t n, enum mt_value v)
{
	struct mt_stack *st;
	size_t cnt;
	int err = mt_stacks_collect(items, n, v, &st, &cnt);
	if (err)
		return err;
	for (size_t i = 0; i < cnt; i++)
		fprintf(out, "%s %" PRIu64 "\n", st[i].key, st[i].value);
	mt_stacks_free(st, cnt);
	return fflush(out) || ferror(out) ? -EIO : 0;
}
