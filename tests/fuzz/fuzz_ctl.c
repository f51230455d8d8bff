/* libFuzzer target: the control protocol's request parser and the option
 * unescaping of `attach`, which the agent runs on bytes from its socket. */
#include <stdint.h>
#include <string.h>

#include "memtap/ctl.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct mt_ctl_request req;
	char err[256];
	if (mt_ctl_parse((const char *)data, size, &req, err, sizeof(err)) == 0) {
		char copy[sizeof(req.arg)];
		memcpy(copy, req.arg, sizeof(copy));
		mt_ctl_unescape(copy);
		char esc[3 * sizeof(req.arg)];
		mt_ctl_escape(req.arg, esc, sizeof(esc));
	}
	return 0;
}
