/*
 * The -f parser shared by the CLI and the agent (include/memtap/funcspec.h).
 * Built into the agent too: no allocation, no stdio but snprintf.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "memtap/funcspec.h"

static int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* Hex bytes V[0..N) into OUT (at most MAX); the count, or -1. */
static int hex_bytes(const char *v, size_t n, uint8_t *out, size_t max)
{
	if (n % 2 || n / 2 > max)
		return -1;
	for (size_t i = 0; i < n; i += 2) {
		int a = hexval(v[i]), b = hexval(v[i + 1]);
		if (a < 0 || b < 0)
			return -1;
		out[i / 2] = (uint8_t)(a << 4 | b);
	}
	return (int)(n / 2);
}

static int hex_u64(const char *v, size_t n, uint64_t *out)
{
	uint64_t x = 0;
	if (!n || n > 16)
		return -1;
	for (size_t i = 0; i < n; i++) {
		int d = hexval(v[i]);
		if (d < 0)
			return -1;
		x = x << 4 | (uint64_t)d;
	}
	*out = x;
	return 0;
}

static int dec(const char *v, size_t n, unsigned max, unsigned *out)
{
	unsigned x = 0;
	if (!n || n > 3)
		return -1;
	for (size_t i = 0; i < n; i++) {
		if (v[i] < '0' || v[i] > '9')
			return -1;
		x = x * 10 + (unsigned)(v[i] - '0');
	}
	if (x > max)
		return -1;
	*out = x;
	return 0;
}

/* "argN", N in 0..5 */
static int arg_index(const char *v, size_t n)
{
	return n == 4 && !strncmp(v, "arg", 3) && v[3] >= '0' && v[3] <= '5' ? v[3] - '0' : -1;
}

/* fix=O/E/T[+O/E/T...] */
static int parse_fixes(const char *v, size_t n, struct mt_funcspec *f)
{
	f->nfix = 0;
	while (n) {
		size_t w = 0;
		while (w < n && v[w] != '+')
			w++;
		const char *s1 = memchr(v, '/', w);
		const char *s2 = s1 ? memchr(s1 + 1, '/', (size_t)(v + w - s1 - 1)) : NULL;
		unsigned off, end;
		if (!s1 || !s2 || f->nfix >= MT_PLAN_FIX_MAX || dec(v, (size_t)(s1 - v), 255, &off) ||
		    dec(s1 + 1, (size_t)(s2 - s1 - 1), 255, &end) ||
		    hex_u64(s2 + 1, (size_t)(v + w - s2 - 1), &f->fix[f->nfix].target))
			return -1;
		f->fix[f->nfix].off = (uint8_t)off;
		f->fix[f->nfix].end = (uint8_t)end;
		f->nfix++;
		v += w + (w < n);
		n -= w + (w < n);
	}
	return 0;
}

int mt_funcspec_parse(const char *s, size_t len, int user, struct mt_funcspec *f, char *err,
		      size_t errlen)
{
	memset(f, 0, sizeof(*f));
	f->size_arg = f->pool_arg = f->out_arg = -1;
	size_t n = 0;
	while (n < len && s[n] != ':' && s[n] != ',')
		n++;
	if (!n || n >= sizeof(f->name) || (n < len && s[n] == ',')) {
		snprintf(err, errlen, "expected FUNC[:size=argN][:pool=argM][:fail=null|nonzero|neg][:out=argK][:got]");
		return -EINVAL;
	}
	memcpy(f->name, s, n);
	int have_at = 0, have_orig = 0, have_code = 0;
	while (n < len) {
		const char *o = s + n + 1;
		size_t rest = len - n - 1, olen = 0;
		/* obj= takes the rest of the entry: a path may hold ':' */
		if (!user && rest >= 4 && !strncmp(o, "obj=", 4))
			olen = rest;
		else
			while (olen < rest && o[olen] != ':')
				olen++;
		const char *eq = memchr(o, '=', olen);
		size_t klen = eq ? (size_t)(eq - o) : olen;
		const char *v = eq ? eq + 1 : o + olen;
		size_t vlen = eq ? olen - klen - 1 : 0;
		int a, bad = 0;
#define KEY(k) (klen == sizeof(k) - 1 && !strncmp(o, k, klen))
		if (KEY("size") && (a = arg_index(v, vlen)) >= 0)
			f->size_arg = a;
		else if (KEY("pool") && (a = arg_index(v, vlen)) >= 0)
			f->pool_arg = a;
		else if (KEY("out") && (a = arg_index(v, vlen)) >= 0)
			f->out_arg = a;
		else if (KEY("fail") && vlen == 4 && !strncmp(v, "null", 4))
			f->fail = MT_FAIL_NULL;
		else if (KEY("fail") && vlen == 7 && !strncmp(v, "nonzero", 7))
			f->fail = MT_FAIL_NONZERO;
		else if (KEY("fail") && vlen == 3 && !strncmp(v, "neg", 3))
			f->fail = MT_FAIL_NEG;
		else if (KEY("got") && !eq)
			f->got = 1;
		else if (user)
			bad = 1;
		else if (KEY("at"))
			bad = hex_u64(v, vlen, &f->at), have_at = 1;
		else if (KEY("orig")) {
			int k = hex_bytes(v, vlen, f->orig, sizeof(f->orig));
			bad = k < 5;
			f->len = (uint8_t)(k > 0 ? k : 0);
			have_orig = 1;
		} else if (KEY("code")) {
			int k = hex_bytes(v, vlen, f->code, sizeof(f->code));
			bad = k < 1;
			f->ncode = (uint8_t)(k > 0 ? k : 0);
			have_code = 1;
		} else if (KEY("fix"))
			bad = parse_fixes(v, vlen, f);
		else if (KEY("obj") && vlen && vlen < sizeof(f->obj)) {
			memcpy(f->obj, v, vlen);
			f->obj[vlen] = '\0';
		} else
			bad = 1;
#undef KEY
		if (bad) {
			snprintf(err, errlen,
				 "bad option '%.*s': expected size=argN or pool=argM (N, M from 0, the first "
				 "argument, to 5), out=argK, fail=null|nonzero|neg or got",
				 (int)olen, o);
			return -EINVAL;
		}
		n += olen + 1;
	}
	f->has_plan = have_at && have_orig && have_code && f->obj[0];
	for (unsigned i = 0; f->has_plan && i < f->nfix; i++)
		if (f->fix[i].off + 4u > f->ncode || f->fix[i].end > f->ncode || f->fix[i].end < f->fix[i].off + 4u)
			f->has_plan = 0;
	if (!user && (have_at || have_orig || have_code) && !f->has_plan) {
		snprintf(err, errlen, "-f %s: incomplete entry plan", f->name);
		return -EINVAL;
	}
	return 0;
}

static int put_hex(char *out, size_t outlen, size_t *n, const uint8_t *b, size_t k)
{
	static const char digits[] = "0123456789abcdef";
	if (*n + 2 * k >= outlen)
		return -ENOSPC;
	for (size_t i = 0; i < k; i++) {
		out[(*n)++] = digits[b[i] >> 4];
		out[(*n)++] = digits[b[i] & 15];
	}
	out[*n] = '\0';
	return 0;
}

int mt_funcspec_format(const struct mt_funcspec *f, char *out, size_t outlen)
{
	static const char *const fails[] = {"", "null", "nonzero", "neg"};
	size_t n = 0;
	int k = snprintf(out, outlen, "%s", f->name);
#define ADD(...)                                                                                         \
	do {                                                                                             \
		if (k < 0 || (n += (size_t)k) >= outlen)                                                 \
			return -ENOSPC;                                                                  \
		k = snprintf(out + n, outlen - n, __VA_ARGS__);                                          \
	} while (0)
	if (f->size_arg >= 0)
		ADD(":size=arg%d", f->size_arg);
	if (f->pool_arg >= 0)
		ADD(":pool=arg%d", f->pool_arg);
	if (f->out_arg >= 0)
		ADD(":out=arg%d", f->out_arg);
	if (f->fail > 0 && f->fail <= MT_FAIL_NEG)
		ADD(":fail=%s", fails[f->fail]);
	if (f->got)
		ADD(":got");
	if (f->has_plan) {
		ADD(":at=%llx:orig=", (unsigned long long)f->at);
		if (k < 0 || (n += (size_t)k) >= outlen || put_hex(out, outlen, &n, f->orig, f->len))
			return -ENOSPC;
		k = snprintf(out + n, outlen - n, ":code=");
		if (k < 0 || (n += (size_t)k) >= outlen || put_hex(out, outlen, &n, f->code, f->ncode))
			return -ENOSPC;
		k = 0;
		for (unsigned i = 0; i < f->nfix; i++)
			ADD("%s%u/%u/%llx", i ? "+" : ":fix=", f->fix[i].off, f->fix[i].end,
			    (unsigned long long)f->fix[i].target);
		ADD(":obj=%s", f->obj);
	}
	ADD("%s", "");
#undef ADD
	return 0;
}
