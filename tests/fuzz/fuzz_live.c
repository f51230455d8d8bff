/* libFuzzer target: the live counter file reader (src/core/live.c through
 * src/cli/live_read.c's profile builder), on any bytes a traced process could
 * have left in its file.  Any input must be refused with a reason or give a
 * profile that encodes and renders; never a fault or a loop. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/live_read.h"
#include "memtap/format.h"
#include "memtap/render.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct mt_live_copy c = {0};
	char err[512];
	if (size < sizeof(struct mt_live_hdr))
		return 0;
	/* A copy as live_read.c takes one: malloc'ed, so aligned. */
	c.data = malloc(size);
	memcpy(c.data, data, size);
	c.view.data = c.data;
	c.view.len = size;
	c.view.base = ((const struct mt_live_hdr *)c.data)->base;
	if (mt_live_check(&c.view, err, sizeof(err)) == 0) {
		struct mt_profile *p;
		unsigned flags;
		c.hdr = (const struct mt_live_hdr *)c.data;
		if (mt_live_copy_profile(&c, &p, &flags) == 0) {
			struct mt_buf b = {.grow = mt_buf_grow_libc};
			FILE *null = fopen("/dev/null", "w");
			struct mt_report_item it = {p, "fuzz.mtl", NULL, 0};
			mt_file_encode(p, &b);
			mt_render_text(null, &it, 1);
			mt_render_json(null, &it, 1);
			fclose(null);
			free(b.data);
			mt_profile_free(p);
		}
		const struct mt_mapping *m;
		mt_live_maps(&c.view, &m);
	}
	free(c.data);
	return 0;
}
