/* libFuzzer target: the profile reader and every renderer that reads its
 * output (text, JSON, pprof, jeprof, collapsed, flame graph, the call-site
 * tables, timeline SVG, HTML, diff against itself, memtap top's view and screen of two
 * snapshots).  Any input must give a clean error or a renderable
 * profile. */
#include <stdint.h>
#include <stdio.h>

#include "memtap/format.h"
#include "memtap/render.h"
#include "memtap/top_view.h"

static void top_line(void *arg, enum mt_ts_line kind, const char *text)
{
	fprintf(arg, "%d %s\n", (int)kind, text);
}

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
		mt_render_timeline_svg(null, &it, 1);
		mt_render_html(null, &it, 1, NULL, NULL);
		struct mt_diff *d;
		if (mt_diff_new(p, p, &d) == 0) {
			mt_render_diff_text(null, d, 5);
			mt_render_diff_pprof(null, d);
			mt_diff_free(d);
		}
		/* memtap top: the same snapshot twice, a second apart. */
		struct mt_top_view *v = mt_top_view_new();
		struct mt_profile *q;
		if (v && mt_file_decode(data, size, &q, err, sizeof(err)) == 0) {
			q->dump_ns = p->dump_ns + 1000000000u;
			mt_top_view_update(v, (int)p->pid, -1, NULL, p);
			p = NULL;
			mt_top_view_update(v, (int)q->pid, -1, NULL, q);
			mt_top_view_compute(v);
			struct mt_screen_opts so = {.width = 80, .height = 24};
			mt_top_screen(v, &so, top_line, null);
			so.height = 0;
			so.exact = 1;
			mt_top_screen(v, &so, top_line, null);
		}
		mt_top_view_free(v);
		fclose(null);
		mt_profile_free(p);
	}
	return 0;
}
