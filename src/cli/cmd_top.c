/*
 * memtap top: a live view of traced processes (memtap/top_view.h), on an
 * ncurses screen, or one plain snapshot per interval on a pipe.
 *
 *   memtap top -p PID [-p PID...]   attach the way memtap attach does
 *                                   (--via=inject, the default, or ebpf),
 *                                   or watch a process another memtap
 *                                   traces already (its files are read,
 *                                   nothing is written)
 *   memtap top [OPTIONS] -- CMD     start CMD the way memtap run does
 *
 * top owns no loop of the run and attach commands: it starts them with
 * their own code (mt_run_start, mt_attach_add, mt_ebpf_attach_start), runs
 * their wait, and follows the session as its observer: a tick every
 * interval takes each member's snapshot (mt_session_snapshot), the
 * keyboard and the terminal's resizes are descriptors the session's wait
 * watches.  q asks the session to stop (mt_session_stop): the wait ends the
 * way a Ctrl-C would end it (detach; SIGINT to CMD).
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <locale.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <curses.h>

#include "cli.h"
#include "live_read.h"
#include "options.h"
#include "session.h"
#include "memtap/top_view.h"

struct top {
	struct mt_top_view *v;
	struct mt_session *sess;
	int tty;          /* the ncurses screen; else plain snapshots */
	SCREEN *scr;
	long count;       /* -n: screens to show (0: no limit) */
	long shown;
	int ticks;
	int help;
	int stopping;
	const char *mode; /* "attached", "watching", "running CMD" */
	char status[256];
	FILE *out;
};

static int winch_pipe[2] = {-1, -1};
static volatile sig_atomic_t watch_stop;

static void on_winch(int sig)
{
	(void)sig;
	int e = errno;
	if (winch_pipe[1] >= 0 && write(winch_pipe[1], "w", 1) < 0) {
		/* full: a redraw is pending anyway */
	}
	errno = e;
}

static void on_watch_stop(int sig)
{
	(void)sig;
	watch_stop = 1;
}

/* ---- drawing ---- */

struct curses_out {
	int row;
};

static void emit_curses(void *arg, enum mt_ts_line kind, const char *text)
{
	struct curses_out *c = arg;
	if (c->row >= LINES)
		return;
	attr_t a = kind == MT_TS_TITLE ? A_BOLD : kind == MT_TS_HEADING ? A_REVERSE
		   : kind == MT_TS_PICKED ? A_BOLD | A_UNDERLINE : kind == MT_TS_DIM ? A_DIM
		   : kind == MT_TS_KEYS ? A_REVERSE : A_NORMAL;
	int row = kind == MT_TS_KEYS ? LINES - 1 : c->row;
	attrset(a);
	mvaddnstr(row, 0, text, COLS);
	if (kind == MT_TS_HEADING || kind == MT_TS_KEYS)
		for (int x = (int)strlen(text); x < COLS; x++)
			mvaddch(row, x, ' ');
	attrset(A_NORMAL);
	c->row++;
}

static void emit_plain(void *arg, enum mt_ts_line kind, const char *text)
{
	(void)kind;
	fprintf(arg, "%s\n", text);
}

static void draw(struct top *t)
{
	if (!t->tty)
		return;
	struct mt_screen_opts so = {.width = (unsigned)COLS, .height = (unsigned)LINES, .help = t->help,
				    .status = t->status[0] ? t->status : NULL, .mode = t->mode};
	struct curses_out c = {0};
	erase();
	mt_top_screen(t->v, &so, emit_curses, &c);
	refresh();
}

static void print_plain(struct top *t)
{
	struct mt_screen_opts so = {.mode = t->mode, .exact = 1};
	mt_top_screen(t->v, &so, emit_plain, t->out);
	fputc('\n', t->out);
	fflush(t->out);
}

/* ---- the session's observer ---- */

static void take_snapshots(struct top *t)
{
	size_t n;
	const struct mt_member *m = mt_session_members(t->sess, &n);
	for (size_t i = 0; i < n; i++) {
		if (m[i].state != MT_MEMBER_RUNNING) {
			mt_top_view_end(t->v, m[i].pid);
			continue;
		}
		struct mt_profile *p;
		char err[512];
		if (mt_session_snapshot(t->sess, m[i].pid, &p, err, sizeof(err)))
			continue; /* between two images, or just gone: next time */
		mt_top_view_update(t->v, m[i].pid, m[i].ppid, m[i].command, p);
	}
}

static void on_tick(struct mt_session *s, void *arg)
{
	struct top *t = arg;
	(void)s;
	if (t->v->paused && t->tty)
		return;
	take_snapshots(t);
	mt_top_view_compute(t->v);
	/* The first tick, at the start, is the baseline of the rates: on a
	 * pipe it is not a snapshot of its own. */
	if (t->ticks++ == 0 && !t->tty)
		return;
	/* On a pipe every snapshot has rates: none before a process was seen
	 * twice. */
	if (!t->tty && !t->v->has_rate)
		return;
	if (t->tty)
		draw(t);
	else
		print_plain(t);
	t->shown++;
	if (t->count && t->shown >= t->count && !t->stopping) {
		t->stopping = 1;
		mt_session_stop(t->sess);
	}
}

static void on_ended(struct mt_session *s, const struct mt_member *m, void *arg)
{
	struct top *t = arg;
	(void)s;
	mt_top_view_end(t->v, m->pid);
}

static void quit(struct top *t)
{
	if (t->stopping)
		return;
	t->stopping = 1;
	snprintf(t->status, sizeof(t->status), "%s", strncmp(t->mode, "running", 7) ? "detaching..."
										    : "stopping the program (SIGINT)...");
	mt_session_stop(t->sess);
	watch_stop = 1;
	draw(t);
}

static void on_key(struct mt_session *s, int fd, short revents, void *arg)
{
	struct top *t = arg;
	int ch, redraw = 0;
	(void)s;
	(void)fd;
	(void)revents;
	while ((ch = getch()) != ERR) {
		redraw = 1;
		if (t->help && ch != KEY_RESIZE) {
			t->help = 0;
			continue;
		}
		switch (ch) {
		case 'q': case 'Q': case 3: /* Ctrl-C: the screen is raw */
			quit(t);
			return;
		case 's': t->v->sort = (enum mt_tv_sort)((t->v->sort + 1) % MT_TV_SORT_COUNT); break;
		case 'S': t->v->sort = (enum mt_tv_sort)((t->v->sort + MT_TV_SORT_COUNT - 1) % MT_TV_SORT_COUNT); break;
		case 'b': t->v->sort = MT_TV_SORT_BYTES; break;
		case 'c': t->v->sort = MT_TV_SORT_CALLS; break;
		case 'f': t->v->sort = MT_TV_SORT_FAILED; break;
		case 't': t->v->sort = MT_TV_SORT_TOTAL; break;
		case 'n': t->v->sort = MT_TV_SORT_NAME; break;
		case 'p': case '\t': case KEY_DOWN: case 'j': mt_top_view_pick(t->v, 1); break;
		case 'P': case KEY_BTAB: case KEY_UP: case 'k': mt_top_view_pick(t->v, -1); break;
		case 'a': t->v->selected = 0; break;
		case ' ': t->v->paused = !t->v->paused; break;
		case '?': case 'h': t->help = 1; break;
		case KEY_RESIZE: break;
		case 12: clearok(curscr, TRUE); break; /* Ctrl-L */
		default: redraw = 0; break;
		}
	}
	if (redraw) {
		mt_top_view_compute(t->v);
		draw(t);
	}
}

static void on_resize(struct mt_session *s, int fd, short revents, void *arg)
{
	struct top *t = arg;
	char buf[64];
	struct winsize ws;
	(void)s;
	(void)revents;
	while (read(fd, buf, sizeof(buf)) > 0)
		;
	if (ioctl(1, TIOCGWINSZ, &ws) == 0 && ws.ws_row && ws.ws_col)
		resizeterm(ws.ws_row, ws.ws_col);
	draw(t);
}

/* The screen and the observer on SESS. */
static int top_begin(struct top *t, struct mt_session *sess)
{
	t->sess = sess;
	struct mt_session_observer o = {.tick = on_tick, .ended = on_ended, .arg = t,
					.every_ms = (uint64_t)(t->v->interval_s * 1000)};
	if (mt_session_observe(sess, &o))
		return mt_error("top: the session has no room for another observer"), 1;
	if (!t->tty)
		return 0;
	if (pipe2(winch_pipe, O_CLOEXEC | O_NONBLOCK) < 0)
		return mt_error("top: pipe: %s", strerror(errno)), 1;
	/* Ours before ncurses starts: it then leaves SIGWINCH to us. */
	struct sigaction sa = {.sa_handler = on_winch, .sa_flags = SA_RESTART};
	sigaction(SIGWINCH, &sa, NULL);
	setlocale(LC_ALL, "");
	if (!(t->scr = newterm(NULL, stdout, stdin)))
		return mt_error("top: cannot drive this terminal (TERM=%s); use -b for plain snapshots",
				getenv("TERM") ? getenv("TERM") : ""), 1;
	raw();
	noecho();
	nodelay(stdscr, TRUE);
	keypad(stdscr, TRUE);
	curs_set(0);
	snprintf(t->status, sizeof(t->status), "waiting for the first snapshot... (q quit, ? help)");
	draw(t);
	t->status[0] = '\0';
	mt_session_watch_fd(sess, 0, POLLIN, on_key, t);
	mt_session_watch_fd(sess, winch_pipe[0], POLLIN, on_resize, t);
	return 0;
}

/* The processes ended by themselves: the last figures stay on the screen
 * until a key. */
static void top_linger(struct top *t)
{
	if (!t->tty || t->stopping)
		return;
	take_snapshots(t);
	mt_top_view_compute(t->v);
	snprintf(t->status, sizeof(t->status), "every process ended; any key quits");
	draw(t);
	nodelay(stdscr, FALSE);
	getch();
}

static void top_end(struct top *t)
{
	if (t->sess) {
		mt_session_unwatch_fd(t->sess, 0);
		if (winch_pipe[0] >= 0)
			mt_session_unwatch_fd(t->sess, winch_pipe[0]);
	}
	if (t->scr) {
		endwin();
		delscreen(t->scr);
		t->scr = NULL;
	}
	signal(SIGWINCH, SIG_DFL);
	for (int i = 0; i < 2; i++)
		if (winch_pipe[i] >= 0) {
			close(winch_pipe[i]);
			winch_pipe[i] = -1;
		}
}

/* ---- the ways in ---- */

/* `memtap top -- CMD`: memtap run's start and wait. */
static int top_run(struct top *t, struct mt_cli_opts *o, char **cmdv)
{
	char prefix[PATH_MAX], log[PATH_MAX + 8], mode[300];
	o->cmd = MT_CMD_RUN;
	if (o->via == MT_VIA_EBPF)
		return mt_error("top --via=ebpf -- CMD: not yet; start CMD, then memtap top --via=ebpf -p PID "
				"(or drop --via=ebpf: the agent)"), 2;
	if (!o->program_output) {
		if (mt_resolve_prefix(o->output, cmdv[0], prefix, sizeof(prefix)))
			return 2;
		snprintf(log, sizeof(log), "%s.out", prefix);
		o->program_output = log;
	}
	struct mt_run run;
	int r = mt_run_start(o, cmdv, o->program_output, &run);
	if (r) {
		mt_session_free(run.sess);
		return r;
	}
	snprintf(mode, sizeof(mode), "running %.200s", strrchr(cmdv[0], '/') ? strrchr(cmdv[0], '/') + 1 : cmdv[0]);
	t->mode = mode;
	if ((r = top_begin(t, run.sess))) {
		top_end(t);
		kill(-run.child, SIGTERM);
		run.status = 0;
		waitpid(run.child, &run.status, 0);
		mt_run_end(&run, cmdv[0], "text", NULL, 1);
		return r;
	}
	mt_run_wait(&run);
	if (!mt_session_stopping(run.sess))
		top_linger(t);
	int asked = mt_session_stopping(run.sess);
	top_end(t);
	r = mt_run_end(&run, cmdv[0], "text", NULL, 1);
	fprintf(stderr, "memtap: the profiles are %s.<pid>.<n>.mtp (memtap report); %s's output is in %s\n",
		run.prefix, cmdv[0], o->program_output);
	/* Stopped by q, with the signal top sent: what the user asked for. */
	if (asked && r > 128 && (r == 128 + SIGINT || r == 128 + SIGTERM || r == 128 + SIGKILL))
		return 0;
	return r;
}

/* Whether PID is traced already by another memtap (run, or an attach
 * still going): its live file is then watched, not attached to. */
static int traced_already(pid_t pid)
{
	char *resp = NULL, err[512];
	int traced = mt_ctl_send(pid, "status\n", &resp, err, sizeof(err)) == 0 &&
		     (strstr(resp, "mode: attached") || strstr(resp, "mode: preloaded"));
	free(resp);
	return traced;
}

/* `memtap top -p PID` on processes that another memtap traces: a session
 * that only reads their files (and their children's), and a loop of its
 * own, since no run or attach runs here. */
static int top_watch(struct top *t, const struct mt_cli_opts *o)
{
	char path[PATH_MAX], err[1024];
	struct mt_live_hdr h;
	uint64_t run_id = 0;
	for (int i = 0; i < o->npids; i++) {
		if (mt_live_find(o->pids[i], path, sizeof(path), err, sizeof(err)) ||
		    mt_live_read_header(path, &h, err, sizeof(err)))
			return mt_error("top: process %d is traced by another memtap, but its counters cannot be read "
					"from outside: %s", (int)o->pids[i], err), 1;
		if (i && h.run_id != run_id)
			return mt_error("top: processes %d and %d belong to different memtap sessions; watch one "
					"session at a time", (int)o->pids[0], (int)o->pids[i]), 2;
		run_id = h.run_id;
	}
	struct mt_session_opts so = {.prefix = "/nonexistent", .run_id = run_id, .watch = 1, .stacks = 1};
	struct mt_session *sess;
	if (mt_session_new(&so, &sess))
		return mt_error("top: out of memory"), 1;
	for (int i = 0; i < o->npids; i++)
		if (mt_session_adopt(sess, o->pids[i], err, sizeof(err))) {
			mt_session_free(sess);
			return mt_error("top: %s", err), 1;
		}
	t->mode = "watching (another memtap traces them)";
	int r = top_begin(t, sess);
	struct sigaction sa = {.sa_handler = on_watch_stop};
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGHUP, &sa, NULL);
	while (!r && !watch_stop && !mt_session_stopping(sess)) {
		mt_session_poll(sess);
		size_t n, running = 0;
		const struct mt_member *m = mt_session_members(sess, &n);
		for (size_t i = 0; i < n; i++)
			running += m[i].state == MT_MEMBER_RUNNING;
		if (!running)
			break;
		mt_session_wait(sess, 50, NULL);
	}
	if (!r && !watch_stop && !mt_session_stopping(sess))
		top_linger(t);
	top_end(t);
	mt_session_free(sess);
	return r;
}

static int top_attach(struct top *t, struct mt_cli_opts *o)
{
	char list[4096], err[2048];
	o->cmd = MT_CMD_ATTACH;
	if (o->via == MT_VIA_EBPF) {
		struct mt_ebpf_attach *x;
		int r = mt_ebpf_attach_start(o, 1, &x);
		if (r)
			return r;
		t->mode = "attached with eBPF";
		if ((r = top_begin(t, mt_ebpf_attach_session(x)))) {
			top_end(t);
			mt_ebpf_attach_end(x, 1);
			return r;
		}
		int exited = mt_ebpf_attach_wait(x, 0);
		if (exited)
			top_linger(t);
		top_end(t);
		return mt_ebpf_attach_end(x, 1);
	}
	if (mt_cli_funcs_list(o, list, sizeof(list)))
		return 2;
	struct mt_attach A = {0};
	int r = 0;
	for (int i = 0; i < o->npids && !r; i++) {
		struct mt_attach_req req = {.pid = o->pids[i], .output = o->output, .format = "text",
					    .stacks = o->stacks, .quiet_start = 1};
		char one[4096];
		snprintf(one, sizeof(one), "%s", list);
		if (one[0] && mt_funcs_for_pid(o->pids[i], one, sizeof(one), err, sizeof(err))) {
			mt_error("top: %s", err);
			r = 1;
			break;
		}
		mt_cli_agent_opts(o, one, &req.ao);
		r = mt_attach_add(&req, &A);
		mt_agent_opts_free(&req.ao);
	}
	if (r) {
		/* The ones attached already are let go. */
		if (A.sess && A.nroots)
			mt_attach_end(&A, "text", NULL, 1);
		else
			mt_session_free(A.sess);
		return r;
	}
	t->mode = "attached";
	if ((r = top_begin(t, A.sess))) {
		top_end(t);
		mt_attach_end(&A, "text", NULL, 1);
		return r;
	}
	if (mt_attach_wait(&A, 0)) {
		top_linger(t);
		top_end(t);
		mt_session_free(A.sess);
		return 0;
	}
	top_end(t);
	return mt_attach_end(&A, "text", NULL, 1);
}

int cmd_top(int argc, char **argv)
{
	struct mt_cli_opts o;
	int r = mt_cli_parse(MT_CMD_TOP, argc, argv, &o);
	if (r)
		return r > 0 ? 0 : 2;
	struct top t = {.count = o.count, .out = stdout};
	if (!(t.v = mt_top_view_new()))
		return mt_error("top: out of memory"), 1;
	t.v->interval_s = (double)o.refresh_ms / 1000;
	if (o.sort && mt_tv_sort_parse(o.sort, &t.v->sort)) {
		mt_top_view_free(t.v);
		return mt_error("top: --sort=%s: expected bytes, calls, failed, total or name", o.sort), 2;
	}
	t.tty = !o.batch && isatty(1) && isatty(0);
	if (o.npids == 0)
		r = top_run(&t, &o, argv + o.argi);
	else if (o.via != MT_VIA_EBPF && traced_already(o.pids[0]))
		r = top_watch(&t, &o);
	else
		r = top_attach(&t, &o);
	mt_top_view_free(t.v);
	return r;
}
