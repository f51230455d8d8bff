/* libFuzzer target: the profile reader and the renderers that read its
 * output.  Any input must give a clean error or a renderable profile. */
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
		fclose(null);
		mt_profile_free(p);
	}
	return 0;
}
