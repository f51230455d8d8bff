/*
 * A flame graph of the collapsed stacks as one self-contained SVG, in the
 * layout of Brendan Gregg's flamegraph.pl: the root at the bottom, each frame
 * as wide as its share of the total, warm colours hashed from the name.
 * Every frame carries a <title> (the tooltip); an inline script adds click
 * to zoom and a details line, and the picture is complete without it.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "export.h"

#define FG_WIDTH 1200
#define FG_PAD 10
#define FG_FRAME 16
#define FG_TOP 40
#define FG_BOTTOM 34
#define FG_FONT 12
#define FG_CHAR 7.2 /* average glyph width at FG_FONT, for truncating names */

struct node {
	const char *name;
	size_t len;
	uint64_t value;
	struct node *child, *next;
};

struct tree {
	struct node *nodes;
	size_t n, cap;
	unsigned depth;
};

static struct node *node_new(struct tree *t, const char *name, size_t len)
{
	/* The array is sized for every frame of every stack up front, so
	 * node pointers stay valid. */
	if (t->n == t->cap)
		return NULL;
	struct node *n = &t->nodes[t->n++];
	memset(n, 0, sizeof(*n));
	n->name = name;
	n->len = len;
	return n;
}

static int tree_add(struct tree *t, const char *key, uint64_t value)
{
	struct node *cur = &t->nodes[0];
	unsigned depth = 0;
	cur->value += value;
	for (const char *s = key; *s;) {
		size_t len = strcspn(s, ";");
		struct node *c = cur->child, *last = NULL;
		while (c && !(c->len == len && !memcmp(c->name, s, len))) {
			last = c;
			c = c->next;
		}
		if (!c) {
			if (!(c = node_new(t, s, len)))
				return -ENOMEM;
			if (last)
				last->next = c;
			else
				cur->child = c;
		}
		c->value += value;
		cur = c;
		depth++;
		s += len + (s[len] == ';');
	}
	if (depth > t->depth)
		t->depth = depth;
	return 0;
}

static void xml_text(FILE *out, const char *s, size_t len)
{
	for (size_t i = 0; i < len; i++) {
		switch (s[i]) {
		case '&': fputs("&amp;", out); break;
		case '<': fputs("&lt;", out); break;
		case '>': fputs("&gt;", out); break;
		case '"': fputs("&quot;", out); break;
		case '\'': fputs("&apos;", out); break;
		default:
			/* XML 1.0 allows no control characters but tab and newlines. */
			if ((unsigned char)s[i] >= 0x20 || s[i] == '\t')
				fputc(s[i], out);
			else
				fputc('?', out);
		}
	}
}

static void color(const char *s, size_t len, unsigned rgb[3])
{
	uint32_t h = 2166136261u;
	for (size_t i = 0; i < len; i++)
		h = (h ^ (unsigned char)s[i]) * 16777619u;
	rgb[0] = 205 + h % 50;
	rgb[1] = (h >> 8) % 230;
	rgb[2] = (h >> 16) % 55;
}

static void draw(FILE *out, const struct node *n, unsigned depth, double x, uint64_t total,
		 double height, const char *unit)
{
	const double scale = (double)(FG_WIDTH - 2 * FG_PAD) / (double)total;
	double w = (double)n->value * scale;
	if (w < 0.1)
		return; /* too narrow to see, as flamegraph.pl's --minwidth */
	double y = height - FG_BOTTOM - (double)(depth + 1) * FG_FRAME;
	unsigned rgb[3];
	color(n->name, n->len, rgb);
	fputs("<g class=\"f\"><title>", out);
	xml_text(out, n->name, n->len);
	fprintf(out, " (%" PRIu64 " %s, %.2f%%)</title><rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" "
		"height=\"%d\" fill=\"rgb(%u,%u,%u)\" rx=\"2\"/><text x=\"%.1f\" y=\"%.1f\">",
		n->value, unit, 100.0 * (double)n->value / (double)total, x, y, w, FG_FRAME - 1, rgb[0],
		rgb[1], rgb[2], x + 3, y + FG_FRAME - 4.5);
	size_t fit = w > 3 * FG_CHAR ? (size_t)((w - 6) / FG_CHAR) : 0;
	if (fit >= n->len) {
		xml_text(out, n->name, n->len);
	} else if (fit > 2) {
		xml_text(out, n->name, fit - 2);
		fputs("..", out);
	}
	fputs("</text></g>\n", out);
	for (const struct node *c = n->child; c; c = c->next) {
		draw(out, c, depth + 1, x, total, height, unit);
		x += (double)c->value * scale;
	}
}

/* Click a frame to zoom into it (its ancestors span the width, dimmed; the
 * frames outside it hide); click the background or "Reset zoom" to undo.
 * Hovering shows the frame's tooltip in the details line. */
static const char script[] =
	"<script type=\"text/ecmascript\"><![CDATA[\n"
	"var W = %d, P = %d, C = %.1f, frames = [], details, reset;\n"
	"function init() {\n"
	"  details = document.getElementById('details');\n"
	"  reset = document.getElementById('reset');\n"
	"  var gs = document.getElementsByClassName('f');\n"
	"  for (var i = 0; i < gs.length; i++) {\n"
	"    var g = gs[i], r = g.getElementsByTagName('rect')[0], t = g.getElementsByTagName('text')[0];\n"
	"    var f = {g: g, r: r, t: t, x: +r.getAttribute('x'), y: +r.getAttribute('y'),\n"
	"      w: +r.getAttribute('width'), name: g.getElementsByTagName('title')[0].textContent};\n"
	"    f.label = f.name.replace(/ \\([^(]*\\)$/, '');\n"
	"    frames.push(f);\n"
	"    g.onclick = (function (f) { return function (e) { zoom(f); e.stopPropagation(); }; })(f);\n"
	"    g.onmouseover = (function (f) { return function () { details.textContent = f.name; }; })(f);\n"
	"    g.onmouseout = function () { details.textContent = ' '; };\n"
	"  }\n"
	"  document.getElementById('bg').onclick = unzoom;\n"
	"  reset.onclick = unzoom;\n"
	"}\n"
	"function place(f, x, w) {\n"
	"  f.r.setAttribute('x', x.toFixed(1)); f.r.setAttribute('width', w.toFixed(1));\n"
	"  f.t.setAttribute('x', (x + 3).toFixed(1));\n"
	"  var fit = w > 3 * C ? Math.floor((w - 6) / C) : 0;\n"
	"  f.t.textContent = fit >= f.label.length ? f.label : fit > 2 ? f.label.substr(0, fit - 2) + '..' : '';\n"
	"}\n"
	"function zoom(z) {\n"
	"  var s = (W - 2 * P) / z.w;\n"
	"  for (var i = 0; i < frames.length; i++) {\n"
	"    var f = frames[i], inside = f.x >= z.x - 0.05 && f.x + f.w <= z.x + z.w + 0.05;\n"
	"    if (f.y > z.y && f.x <= z.x + 0.05 && f.x + f.w >= z.x + z.w - 0.05) {\n"
	"      f.g.style.display = ''; f.g.style.opacity = 0.5; place(f, P, W - 2 * P);\n"
	"    } else if (f.y <= z.y && inside) {\n"
	"      f.g.style.display = ''; f.g.style.opacity = 1; place(f, P + (f.x - z.x) * s, f.w * s);\n"
	"    } else {\n"
	"      f.g.style.display = 'none';\n"
	"    }\n"
	"  }\n"
	"  reset.style.display = '';\n"
	"}\n"
	"function unzoom() {\n"
	"  for (var i = 0; i < frames.length; i++) {\n"
	"    var f = frames[i];\n"
	"    f.g.style.display = ''; f.g.style.opacity = 1; place(f, f.x, f.w);\n"
	"  }\n"
	"  reset.style.display = 'none';\n"
	"}\n"
	"init();\n"
	"]]></script>\n";

int mt_render_flamegraph(FILE *out, const struct mt_report_item *items, size_t n, enum mt_value v)
{
	struct mt_stack *st;
	size_t cnt;
	int err = mt_stacks_collect(items, n, v, &st, &cnt);
	if (err)
		return err;
	struct tree t = {0};
	t.cap = 1;
	for (size_t i = 0; i < cnt; i++)
		for (const char *c = st[i].key; *c; c++)
			t.cap += *c == ';';
	t.cap += cnt;
	if (!(t.nodes = calloc(t.cap, sizeof(*t.nodes)))) {
		mt_stacks_free(st, cnt);
		return -ENOMEM;
	}
	node_new(&t, "all", 3);
	for (size_t i = 0; i < cnt && !err; i++)
		err = tree_add(&t, st[i].key, st[i].value);
	if (err)
		goto out;

	const char *what = v == MT_VALUE_ALLOC ? "bytes allocated" : "bytes in use";
	double height = FG_TOP + (double)(t.depth + 1) * FG_FRAME + FG_BOTTOM;
	fprintf(out,
		"<?xml version=\"1.0\" standalone=\"no\"?>\n"
		"<svg version=\"1.1\" width=\"%d\" height=\"%.0f\" viewBox=\"0 0 %d %.0f\" "
		"xmlns=\"http://www.w3.org/2000/svg\">\n"
		"<style type=\"text/css\">\n"
		"  text { font-family: Verdana, sans-serif; font-size: %dpx; fill: rgb(0,0,0); }\n"
		"  .f text { pointer-events: none; }\n"
		"  .f:hover rect { stroke: black; stroke-width: 0.5; cursor: pointer; }\n"
		"  #title { font-size: 17px; text-anchor: middle; }\n"
		"  #reset { cursor: pointer; }\n"
		"</style>\n"
		"<rect id=\"bg\" x=\"0\" y=\"0\" width=\"100%%\" height=\"100%%\" fill=\"rgb(245,245,230)\"/>\n"
		"<text id=\"title\" x=\"%d\" y=\"24\">",
		FG_WIDTH, height, FG_WIDTH, height, FG_FONT, FG_WIDTH / 2);
	fprintf(out, "Heap: %s", what);
	if (n == 1 && items[0].profile->command[0]) {
		fputs(" \xe2\x80\x94 ", out);
		const char *cmd = items[0].profile->command;
		xml_text(out, cmd, strlen(cmd));
	}
	fprintf(out, "</text>\n<text id=\"reset\" x=\"%d\" y=\"24\" style=\"display:none\">Reset zoom</text>\n",
		FG_PAD);
	fprintf(out, "<text id=\"details\" x=\"%d\" y=\"%.0f\"> </text>\n", FG_PAD, height - 12);
	if (t.nodes[0].value)
		draw(out, &t.nodes[0], 0, FG_PAD, t.nodes[0].value, height,
		     v == MT_VALUE_ALLOC ? "bytes allocated" : "bytes in use");
	else
		fprintf(out, "<text x=\"%d\" y=\"%.0f\">(no %s recorded)</text>\n", FG_PAD,
			height - FG_BOTTOM - 4, what);
	fprintf(out, script, FG_WIDTH, FG_PAD, FG_CHAR);
	fputs("</svg>\n", out);
	err = fflush(out) || ferror(out) ? -EIO : 0;
out:
	free(t.nodes);
	mt_stacks_free(st, cnt);
	return err;
}
