/* The live view's layout (memtap/top_view.h): the lines of one screen, the
 * same for the ncurses screen (cut to its height) and for a pipe (all of
 * them, once per interval). */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "memtap/top_view.h"

struct out {
	void (*emit)(void *arg, enum mt_ts_line kind, const char *text);
	void *arg;
	unsigned width;
	unsigned height; /* 0: no limit */
	unsigned lines;  /* emitted so far */
	int exact;      /* numbers in full (a pipe's readers are programs too) */
	int w;          /* the width of a number column */
};

static void fmt_bytes(const struct out *o, char *buf, size_t len, double v)
{
	if (o->exact)
		snprintf(buf, len, "%.0f", v);
	else
		mt_tv_bytes(buf, len, v);
}

static void fmt_count(const struct out *o, char *buf, size_t len, double v)
{
	if (o->exact)
		snprintf(buf, len, "%.0f", v);
	else
		mt_tv_count(buf, len, v);
}

static void line(struct out *o, enum mt_ts_line kind, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void line(struct out *o, enum mt_ts_line kind, const char *fmt, ...)
{
	char buf[1024];
	/* The keys line is always the last one of the screen. */
	if (o->height && o->lines + 1 >= o->height && kind != MT_TS_KEYS)
		return;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	if (o->width && o->width < sizeof(buf))
		buf[o->width] = '\0';
	/* Trailing blanks say nothing (and make pipes' lines ragged). */
	size_t n = strlen(buf);
	while (n && buf[n - 1] == ' ')
		buf[--n] = '\0';
	o->emit(o->arg, kind, buf);
	o->lines++;
}

static const char *rate_b(const struct out *o, char *buf, size_t len, int has, double v, int sign)
{
	if (!has)
		return "-";
	char t[32];
	fmt_bytes(o, t, sizeof(t), v);
	snprintf(buf, len, "%s%s", sign && v > 0 ? "+" : "", t);
	return buf;
}

static const char *rate_n(const struct out *o, char *buf, size_t len, int has, double v)
{
	if (!has)
		return "-";
	fmt_count(o, buf, len, v);
	return buf;
}

/* "top_churn -r 10" for "/usr/lib/x/top_churn -r 10": the columns are few. */
static const char *short_command(const char *c)
{
	size_t n = strcspn(c, " ");
	const char *base = c;
	for (const char *p = c; p < c + n; p++)
		if (*p == '/' && p + 1 < c + n)
			base = p + 1;
	return base;
}

static void title(struct out *o, const struct mt_top_view *v, const struct mt_screen_opts *so)
{
	char when[32] = "", sel[300];
	time_t t = v->last_ns ? (time_t)(v->last_ns / 1000000000u) : time(NULL);
	struct tm tm;
	if (localtime_r(&t, &tm))
		strftime(when, sizeof(when), "%H:%M:%S", &tm);
	const struct mt_tv_proc *r = v->selected ? mt_top_view_proc(v, v->selected) : NULL;
	if (r)
		snprintf(sel, sizeof(sel), "process %d (%.*s)", r->pid, (int)strcspn(short_command(r->command), " "),
			 short_command(r->command));
	else
		snprintf(sel, sizeof(sel), "all %zu process%s", v->nprocs, v->nprocs == 1 ? "" : "es");
	line(o, MT_TS_TITLE, "memtap top - %s%s%s  %s  every %gs%s", sel, so->mode ? ", " : "",
	     so->mode ? so->mode : "", when, v->interval_s, v->paused ? "  PAUSED" : "");
	char a[32], b[32], c[32], d[32];
	fmt_bytes(o, b, sizeof(b), (double)v->peak);
	char inuse[32];
	fmt_bytes(o, inuse, sizeof(inuse), (double)v->in_use);
	line(o, MT_TS_TEXT, "in use %s (%s/s)  peak %s  calls %s/s  allocated %s/s", inuse,
	     rate_b(o, a, sizeof(a), v->has_rate, v->growth_s, 1), b, rate_n(o, c, sizeof(c), v->has_rate, v->calls_s),
	     rate_b(o, d, sizeof(d), v->has_rate, v->bytes_s, 0));
}

static void proc_row(struct out *o, const struct mt_top_view *v, const struct mt_tv_proc *r)
{
	char in[32], g[32], c[32];
	fmt_bytes(o, in, sizeof(in), (double)r->in_use);
	enum mt_ts_line kind = v->selected == r->pid ? MT_TS_PICKED : r->ended ? MT_TS_DIM : MT_TS_TEXT;
	line(o, kind, "%c%7d %7d %*s %*s %*s  %s%s", v->selected == r->pid ? '>' : ' ', r->pid, r->ppid, o->w, in,
	     o->w + 1,
	     rate_b(o, g, sizeof(g), r->has_rate, r->growth_s, 1), o->w, rate_n(o, c, sizeof(c), r->has_rate, r->calls_s),
	     r->ended ? "(ended) " : "", o->exact ? r->command : short_command(r->command));
}

static void func_row(struct out *o, const struct mt_tv_func *f)
{
	char a[32], b[32], c[32], d[32], e[32], g[32];
	fmt_count(o, d, sizeof(d), (double)f->calls);
	fmt_bytes(o, e, sizeof(e), (double)f->bytes);
	fmt_count(o, g, sizeof(g), (double)f->failed);
	int w = o->w;
	line(o, f->has_rate ? MT_TS_TEXT : MT_TS_DIM, "%-21.21s %*s %*s %*s %*s %*s %*s", f->name,
	     w, rate_n(o, a, sizeof(a), f->has_rate, f->calls_s), w, rate_b(o, b, sizeof(b), f->has_rate, f->bytes_s, 0),
	     w, rate_n(o, c, sizeof(c), f->has_rate, f->failed_s), w, d, w, e, w, g);
}

static void site_row(struct out *o, const struct mt_tv_site *s)
{
	char a[32], b[32], c[32];
	fmt_bytes(o, a, sizeof(a), (double)s->inuse_bytes);
	fmt_count(o, b, sizeof(b), (double)s->inuse_objects);
	line(o, MT_TS_TEXT, "%*s %*s %*s  %-8.8s %s", o->w - 1, a, o->w - 1, b, o->w,
	     rate_b(o, c, sizeof(c), s->has_rate, s->alloc_bytes_s, 0),
	     s->func, s->where);
}

static const char *marks_of(enum mt_tv_sort s)
{
	static const char *const marks[MT_TV_SORT_COUNT] = {"bytes/s", "calls/s", "failed/s", "total calls", "name"};
	return s < MT_TV_SORT_COUNT ? marks[s] : "?";
}

static const char *const help[] = {
	"memtap top: the allocation calls of the traced processes, live.",
	"",
	"  q, Ctrl-C   quit: a process attached to is detached (it runs on,",
	"              untraced); a program top started is stopped (SIGINT)",
	"  s, S        sort the functions by the next (previous) column:",
	"              bytes/s, calls/s, failed/s, total calls, name",
	"  b c f t n   sort by bytes/s, calls/s, failed/s, total calls, name",
	"  p, P, Tab   pick the next (previous) process: its own rows; past",
	"              the last, every process together",
	"  a           every process together",
	"  space       pause (the figures stay; tracing goes on)",
	"  ?, h        this help; any key returns",
	"",
	"Rates are over the last interval; '-' until two snapshots are seen.",
	"IN USE: bytes allocated and not freed; GROWTH/s: its change.",
	"Call sites (--stacks): sampled estimates, callers innermost first.",
};

void mt_top_screen(const struct mt_top_view *v, const struct mt_screen_opts *so,
		    void (*emit)(void *arg, enum mt_ts_line kind, const char *text), void *arg)
{
	struct out o = {emit, arg, so->width, so->height, 0, so->exact, so->exact ? 11 : 8};
	int w = o.w;
	unsigned h = so->height;
	title(&o, v, so);
	if (so->help) {
		for (size_t i = 0; i < sizeof(help) / sizeof(help[0]) && (!h || o.lines + 1 < h); i++)
			line(&o, MT_TS_TEXT, "%s", help[i]);
	} else {
		/* Rows per table: a terminal's height shared out, processes and
		 * call sites first (a few each), the functions the rest; all of
		 * them on a pipe. */
		size_t np = v->nprocs, nf = v->nfuncs, ns = v->stacks ? (v->nsites ? v->nsites : 1) : 0;
		int show_procs = 1, show_sites = v->stacks;
		if (h) {
			/* Under the title's two lines and above the keys line:
			 * each table is a blank line, a heading and its rows. */
			long avail = (long)h - 3, quarter = avail / 4 > 1 ? avail / 4 : 1;
			long p_rows = (long)np < quarter ? (long)np : quarter;
			long s_rows = (long)ns < quarter ? (long)ns : quarter;
			if (show_sites && (2 + p_rows) + 3 + (2 + s_rows) > avail)
				show_sites = 0;
			if (!show_sites)
				s_rows = 0;
			if ((2 + p_rows) + 3 + (show_sites ? 2 + s_rows : 0) > avail) {
				show_procs = 0;
				p_rows = 0;
			}
			long f_rows = avail - (show_procs ? 2 + p_rows : 0) - (show_sites ? 2 + s_rows : 0) - 2;
			if (f_rows < 0)
				f_rows = 0;
			np = (size_t)p_rows;
			nf = (size_t)f_rows < nf ? (size_t)f_rows : nf;
			ns = (size_t)s_rows;
		}
		if (show_procs) {
			line(&o, MT_TS_TEXT, "%s", "");
			line(&o, MT_TS_HEADING, "%8s %7s %*s %*s %*s  %s", "PID", "PPID", w, "IN USE", w + 1, "GROWTH/s", w, "CALLS/s",
			     "COMMAND");
			/* The window of rows that shows the process picked. */
			size_t first = 0, at = 0;
			for (size_t i = 0; i < v->nprocs; i++)
				if (v->procs[i].pid == v->selected)
					at = i;
			if (np && at >= np)
				first = at - np + 1;
			for (size_t i = first; i < v->nprocs && i < first + np; i++)
				proc_row(&o, v, &v->procs[i]);
		}
		line(&o, MT_TS_TEXT, "%s", "");
		line(&o, MT_TS_HEADING, "%-21.21s %*s %*s %*s %*s %*s %*s", "FUNCTION", w, "CALLS/s", w, "BYTES/s", w,
		     "FAILED/s", w, "CALLS", w, "BYTES", w, "FAILED");
		for (size_t i = 0; i < nf; i++)
			func_row(&o, &v->funcs[i]);
		if (!v->nfuncs)
			line(&o, MT_TS_DIM, "(no calls yet)");
		if (!h)
			line(&o, MT_TS_DIM, "(%zu functions, by %s)", v->nfuncs, marks_of(v->sort));
		if (show_sites) {
			line(&o, MT_TS_TEXT, "%s", "");
			line(&o, MT_TS_HEADING, "%*s %*s %*s  %-8.8s %s", w - 1, "IN USE", w - 1, "BLOCKS", w, "ALLOC/s", "FUNC",
			     "TOP CALL SITES (callers, innermost first)");
			for (size_t i = 0; i < ns && i < v->nsites; i++)
				site_row(&o, &v->sites[i]);
			if (!v->nsites)
				line(&o, MT_TS_DIM, "(no call sites sampled yet)");
		}
	}
	if (h) {
		while (o.lines + 1 < h)
			line(&o, MT_TS_TEXT, "%s", "");
		if (so->status)
			line(&o, MT_TS_KEYS, "%s", so->status);
		else
			line(&o, MT_TS_KEYS, "q quit  s sort (%s)  p pick  space pause  ? help",
			     marks_of(v->sort));
	}
}
