/*
 * A small HTTP/1.1 server for the memtap command's endpoint (/metrics,
 * /debug/pprof/...), served from the session's one wait: a non-blocking
 * listening socket and client sockets watched with mt_session_watch_fd(),
 * never a thread or a loop of its own, so the session (and the traced
 * processes, which never see any of it) go on whatever clients do.
 *
 *   struct mt_http *h;
 *   mt_http_listen("127.0.0.1:9464", 0, &h, err, sizeof(err));  before the target starts
 *   mt_http_serve(h, sess, handler, arg);    from here on the session's wait serves it
 *   ...
 *   mt_http_free(h);                         after the session's last wait
 *
 * GET and HEAD (POST reaches the handler, its body unread and drained;
 * other methods get 405), requests up to MT_HTTP_REQUEST_MAX
 * bytes (413 beyond), at most MT_HTTP_CONNS connections (a new one evicts
 * the oldest that has not finished sending its request, or gets 503),
 * MT_HTTP_REQUEST_MS to send a whole request, MT_HTTP_IDLE_MS idle between
 * keep-alive requests, MT_HTTP_WRITE_MS for a client to read a response.
 * Keep-alive as HTTP/1.1 says (HTTP/1.0: close unless asked); a request
 * with a body is answered and the connection closed.
 */
#ifndef MEMTAP_CLI_HTTP_H
#define MEMTAP_CLI_HTTP_H

#include <stddef.h>

#define MT_HTTP_CONNS 16
#define MT_HTTP_REQUEST_MAX 8192
#define MT_HTTP_REQUEST_MS 5000
#define MT_HTTP_IDLE_MS 30000
#define MT_HTTP_WRITE_MS 10000

struct mt_http;
struct mt_session;

struct mt_http_request {
	const char *method; /* "GET", "HEAD" or "POST" */
	const char *path;   /* without the query */
	const char *query;  /* after '?', or "" */
	const char *accept; /* the Accept header, or "" */
};

/* What a handler answers: STATUS, a static CONTENT_TYPE, and BODY (malloc'ed,
 * freed by the server; NULL for none). */
struct mt_http_response {
	int status;
	const char *content_type;
	char *body;
	size_t len;
};

typedef void (*mt_http_handler)(const struct mt_http_request *req, struct mt_http_response *resp, void *arg);

/* Parses ADDR:PORT ("127.0.0.1:9464", "[::1]:9464", "localhost:9464", or
 * PORT / :PORT for 127.0.0.1) and listens there; a non-loopback address
 * only with ALLOW_REMOTE.  0, or -errno with ERR saying what to do. */
int mt_http_listen(const char *addr, int allow_remote, struct mt_http **out, char *err, size_t errlen);
/* "http://127.0.0.1:9464": where it listens (the port the kernel chose
 * for port 0). */
const char *mt_http_url(const struct mt_http *h);
/* Serves requests with HANDLER from SESS's wait from now on. 0 or -errno. */
int mt_http_serve(struct mt_http *h, struct mt_session *sess, mt_http_handler handler, void *arg);
/* Closes everything (does not touch the session: call it after the
 * session's last wait).  NULL is fine. */
void mt_http_free(struct mt_http *h);

#endif
