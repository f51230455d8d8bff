/* libFuzzer target: the profile reader and every renderer that reads its
 * output (text, JSON, pprof, jeprof, collapsed, flame graph, top tables,
 * diff against itself).  Any input must give a clean error or a renderable
 * profile. */
#include <stdint.h>
#include <stdio.h>

#include "memtap/format.h"
#include "memtap/render.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct mt_profile *p;
	char err[512];
	if (mt_file_decode(data, size, &p, err, sizeof(err)) == 0) {
		FILE *null = fopen("/dev/null", "w");
		struct mt_report_item it = {p, "fuzz.mtp", NULL, 0};
		mt_render_text(null, &it, 1);
		mt_render_json(null, &it, 1);
		mt_render_pprof(null, p);
		mt_render_jeprof(null, p);
		mt_render_collapsed(null, &it, 1, MT_VALUE_INUSE);
		mt_render_flamegraph(null, &it, 1, MT_VALUE_ALLOC);
		mt_render_sites_table(null, p, 5);
		struct mt_diff *d;
		if (mt_diff_new(p, p, &d) == 0) {
			mt_render_diff_text(null, d, 5);
			mt_render_diff_pprof(null, d);
			mt_diff_free(d);
		}
		fclose(null);
		mt_profile_free(p);
	}
	return 0;
}
