/*
 * The endpoint's HTTP/1.1 server (http.h): every socket non-blocking and
 * watched by the session's wait; each event does a bounded amount of work.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "http.h"
#include "session.h"

struct conn {
	int fd; /* -1: a free slot */
	size_t inlen;
	char *out;
	size_t outlen, outoff;
	int close_after;   /* once OUT is written */
	int draining;      /* answered and shut down: reading what the client still sends */
	int body;          /* the request announced a body (not read: drained) */
	uint64_t since_ns; /* accepted, or idle since */
	uint64_t deadline_ns;
	short events;      /* what the session watches for */
	char in[MT_HTTP_REQUEST_MAX];
};

struct mt_http {
	int fd;
	char url[96];
	struct mt_session *sess;
	mt_http_handler handler;
	void *arg;
	struct conn c[MT_HTTP_CONNS];
};

static uint64_t mono_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static int is_loopback(const struct sockaddr *sa)
{
	if (sa->sa_family == AF_INET)
		return (ntohl(((const struct sockaddr_in *)sa)->sin_addr.s_addr) >> 24) == 127;
	if (sa->sa_family == AF_INET6) {
		const struct in6_addr *a = &((const struct sockaddr_in6 *)sa)->sin6_addr;
		if (IN6_IS_ADDR_V4MAPPED(a))
			return a->s6_addr[12] == 127;
		return IN6_IS_ADDR_LOOPBACK(a);
	}
	return 0;
}

int mt_http_listen(const char *addr, int allow_remote, struct mt_http **out, char *err, size_t errlen)
{
	char host[256], port[16];
	const char *colon = strrchr(addr, ':');
	*out = NULL;
	if (!colon) {
		snprintf(host, sizeof(host), "127.0.0.1");
		snprintf(port, sizeof(port), "%.15s", addr);
	} else {
		size_t hl = (size_t)(colon - addr);
		if (hl >= 2 && addr[0] == '[' && addr[hl - 1] == ']')
			snprintf(host, sizeof(host), "%.*s", (int)(hl - 2), addr + 1);
		else
			snprintf(host, sizeof(host), "%.*s", (int)(hl < sizeof(host) ? hl : sizeof(host) - 1), addr);
		if (!host[0])
			snprintf(host, sizeof(host), "127.0.0.1");
		snprintf(port, sizeof(port), "%.15s", colon + 1);
	}
	char *end;
	long pn = strtol(port, &end, 10);
	if (!port[0] || *end || pn < 0 || pn > 65535) {
		snprintf(err, errlen, "'%s': expected ADDR:PORT (e.g. 127.0.0.1:9464) or a port", addr);
		return -EINVAL;
	}
	struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
				 .ai_flags = AI_NUMERICSERV | AI_PASSIVE}, *res;
	int gr = getaddrinfo(host, port, &hints, &res);
	if (gr) {
		snprintf(err, errlen, "'%s': cannot resolve %s: %s", addr, host, gai_strerror(gr));
		return -EINVAL;
	}
	int ret = -EADDRNOTAVAIL, fd = -1;
	snprintf(err, errlen, "'%s': no address to listen on", addr);
	for (struct addrinfo *a = res; a; a = a->ai_next) {
		if (!allow_remote && !is_loopback(a->ai_addr)) {
			snprintf(err, errlen, "'%s' is not a loopback address: whoever can connect sees the traced "
				 "processes' command lines and call stacks; use 127.0.0.1:PORT, or add "
				 "--prometheus-allow-remote to serve other hosts", addr);
			ret = -EPERM;
			continue;
		}
		fd = socket(a->ai_family, a->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
		if (fd < 0) {
			ret = -errno;
			snprintf(err, errlen, "'%s': socket: %s", addr, strerror(errno));
			continue;
		}
		int one = 1;
		setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
		if (bind(fd, a->ai_addr, a->ai_addrlen) < 0 || listen(fd, 64) < 0) {
			ret = -errno;
			snprintf(err, errlen, "cannot listen on %s: %s%s", addr, strerror(errno),
				 errno == EADDRINUSE ? " (another program has that port: pick another one)" : "");
			close(fd);
			fd = -1;
			continue;
		}
		break;
	}
	freeaddrinfo(res);
	if (fd < 0)
		return ret;
	struct mt_http *h = calloc(1, sizeof(*h));
	if (!h) {
		close(fd);
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	h->fd = fd;
	for (int i = 0; i < MT_HTTP_CONNS; i++)
		h->c[i].fd = -1;
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	char num[INET6_ADDRSTRLEN] = "?";
	int bound = 0;
	if (getsockname(fd, (struct sockaddr *)&ss, &sl) == 0) {
		if (ss.ss_family == AF_INET) {
			inet_ntop(AF_INET, &((struct sockaddr_in *)&ss)->sin_addr, num, sizeof(num));
			bound = ntohs(((struct sockaddr_in *)&ss)->sin_port);
		} else {
			inet_ntop(AF_INET6, &((struct sockaddr_in6 *)&ss)->sin6_addr, num, sizeof(num));
			bound = ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
		}
	}
	snprintf(h->url, sizeof(h->url), ss.ss_family == AF_INET6 ? "http://[%s]:%d" : "http://%s:%d", num, bound);
	*out = h;
	return 0;
}

const char *mt_http_url(const struct mt_http *h)
{
	return h->url;
}

static void conn_close(struct mt_http *h, struct conn *c)
{
	if (c->fd < 0)
		return;
	if (c->events)
		mt_session_unwatch_fd(h->sess, c->fd);
	close(c->fd);
	free(c->out);
	c->out = NULL;
	c->fd = -1;
	c->events = 0;
}

static void conn_ready(struct mt_session *s, int fd, short revents, void *arg);

static void conn_watch(struct mt_http *h, struct conn *c, short events)
{
	if (c->events == events)
		return;
	if (c->events)
		mt_session_unwatch_fd(h->sess, c->fd);
	c->events = 0;
	if (mt_session_watch_fd(h->sess, c->fd, events, conn_ready, h) == 0)
		c->events = events;
	else
		conn_close(h, c);
}

static const char *reason(int status)
{
	switch (status) {
	case 200: return "OK";
	case 400: return "Bad Request";
	case 404: return "Not Found";
	case 405: return "Method Not Allowed";
	case 409: return "Conflict";
	case 413: return "Content Too Large";
	case 500: return "Internal Server Error";
	case 503: return "Service Unavailable";
	default: return "Error";
	}
}

/* The response (head and, unless HEAD, body) into C's output buffer. */
static void respond(struct conn *c, int status, const char *ctype, const char *body, size_t len, int head,
		    int close_after)
{
	char hdr[512];
	int n = snprintf(hdr, sizeof(hdr),
			 "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n%s%sConnection: %s\r\n\r\n",
			 status, reason(status), ctype, len, status == 405 ? "Allow: GET, HEAD\r\n" : "",
			 status == 503 ? "Retry-After: 1\r\n" : "", close_after ? "close" : "keep-alive");
	size_t blen = head ? 0 : len;
	free(c->out);
	c->out = malloc((size_t)n + blen);
	c->outoff = 0;
	c->close_after = close_after;
	if (!c->out) {
		c->outlen = 0;
		c->close_after = 1;
		return;
	}
	memcpy(c->out, hdr, (size_t)n);
	if (blen)
		memcpy(c->out + n, body, blen);
	c->outlen = (size_t)n + blen;
}

static void respond_text(struct conn *c, int status, const char *text, int head, int close_after)
{
	respond(c, status, "text/plain; charset=utf-8", text, strlen(text), head, close_after);
}

/* The value of header NAME in the header block HDRS (lines ending in
 * "\r\n" or "\n", NUL-terminated), copied into OUT; 1 when present. */
static int header(const char *hdrs, const char *name, char *out, size_t outlen)
{
	size_t nl = strlen(name);
	for (const char *l = hdrs; *l;) {
		size_t len = strcspn(l, "\n");
		if (len > nl && !strncasecmp(l, name, nl) && l[nl] == ':') {
			const char *v = l + nl + 1;
			size_t vl = len - nl - 1;
			while (vl && (*v == ' ' || *v == '\t'))
				v++, vl--;
			while (vl && (v[vl - 1] == '\r' || v[vl - 1] == ' ' || v[vl - 1] == '\t'))
				vl--;
			snprintf(out, outlen, "%.*s", (int)(vl < outlen ? vl : outlen - 1), v);
			return 1;
		}
		l += len + (l[len] == '\n');
	}
	return 0;
}

/* Handles the request in C->in[0..LEN) (its head, NUL-terminated). */
static void handle(struct mt_http *h, struct conn *c, char *req)
{
	char *line_end = strpbrk(req, "\r\n");
	if (!line_end)
		return respond_text(c, 400, "bad request line\n", 0, 1);
	char *hdrs = line_end + strspn(line_end, "\r") + (line_end[strspn(line_end, "\r")] == '\n');
	*line_end = '\0';
	char method[16], target[2048], version[16];
	int used = 0;
	if (sscanf(req, "%15[A-Z] %2047[^ ] %15[^ ]%n", method, target, version, &used) != 3 || req[used] ||
	    strncmp(version, "HTTP/1.", 7) || (version[7] != '0' && version[7] != '1') || version[8])
		return respond_text(c, 400, "bad request line: expected METHOD /PATH HTTP/1.1\n", 0, 1);
	/* Every header line must be NAME: VALUE. */
	for (const char *l = hdrs; *l;) {
		size_t len = strcspn(l, "\n");
		size_t colon = strcspn(l, ":");
		if (len > 1 && (colon >= len || colon == 0))
			return respond_text(c, 400, "bad header line\n", 0, 1);
		l += len + (l[len] == '\n');
	}
	int head = !strcmp(method, "HEAD");
	char conn[64] = "", accept[1024] = "", te[64], cl[32] = "0";
	header(hdrs, "Connection", conn, sizeof(conn));
	header(hdrs, "Accept", accept, sizeof(accept));
	int body = header(hdrs, "Transfer-Encoding", te, sizeof(te)) ||
		   (header(hdrs, "Content-Length", cl, sizeof(cl)) && strcmp(cl, "0"));
	int close_after = body || (version[7] == '0' ? strcasecmp(conn, "keep-alive") != 0
						     : strcasestr(conn, "close") != NULL);
	c->body = body;
	/* POST reaches the handler (pprof's symbol lookup posts), its body
	 * unread; anything else is refused here. */
	if (strcmp(method, "GET") && strcmp(method, "POST") && !head)
		return respond_text(c, 405, "only GET and HEAD are served here\n", 0, 1);
	if (target[0] != '/')
		return respond_text(c, 400, "the request target must be a path (/metrics)\n", head, 1);
	char *q = strchr(target, '?');
	if (q)
		*q++ = '\0';
	struct mt_http_request r = {.method = method, .path = target, .query = q ? q : "", .accept = accept};
	struct mt_http_response resp = {.status = 404, .content_type = "text/plain; charset=utf-8"};
	h->handler(&r, &resp, h->arg);
	if (!resp.body && resp.status != 200) {
		char msg[64];
		snprintf(msg, sizeof(msg), "%d %s\n", resp.status, reason(resp.status));
		respond_text(c, resp.status, msg, head, close_after);
	} else {
		respond(c, resp.status, resp.content_type, resp.body ? resp.body : "", resp.body ? resp.len : 0, head,
			close_after);
	}
	free(resp.body);
}

/* Writes what C has to write; 0 when done (or closed), 1 when the rest
 * waits for POLLOUT. */
static int flush_out(struct mt_http *h, struct conn *c)
{
	while (c->outoff < c->outlen) {
		ssize_t n = send(c->fd, c->out + c->outoff, c->outlen - c->outoff, MSG_NOSIGNAL | MSG_DONTWAIT);
		if (n > 0) {
			c->outoff += (size_t)n;
			continue;
		}
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return 1;
		conn_close(h, c);
		return 0;
	}
	free(c->out);
	c->out = NULL;
	c->outlen = c->outoff = 0;
	if (c->close_after) {
		/* Closing with unread input would reset the connection and
		 * the client could lose the answer: shut down our side, read
		 * what it still sends for a moment, then close. */
		if (c->inlen || c->body) {
			shutdown(c->fd, SHUT_WR);
			c->draining = 1;
			c->inlen = 0;
			c->deadline_ns = mono_ns() + 1000000000u;
			return 0;
		}
		conn_close(h, c);
		return 0;
	}
	/* Keep-alive: idle until the next request. */
	c->since_ns = mono_ns();
	c->deadline_ns = c->since_ns + (uint64_t)MT_HTTP_IDLE_MS * 1000000u;
	return 0;
}

/* Serves the complete requests in C's input, one after another, until one
 * waits for the client to read or more input is needed. */
static void serve(struct mt_http *h, struct conn *c)
{
	while (c->fd >= 0 && !c->out && !c->draining) {
		char *end = NULL;
		size_t hlen = 0;
		for (size_t i = 0; i + 1 < c->inlen; i++) {
			if (c->in[i] == '\n' && c->in[i + 1] == '\n') {
				end = c->in + i, hlen = i + 2;
				break;
			}
			if (i + 3 < c->inlen && !memcmp(c->in + i, "\r\n\r\n", 4)) {
				end = c->in + i, hlen = i + 4;
				break;
			}
		}
		if (!end) {
			if (c->inlen >= sizeof(c->in) - 1) {
				/* The rest of it is drained once this is sent. */
				respond_text(c, 413, "request too large (at most 8 KiB of request line and headers)\n", 0, 1);
			} else {
				conn_watch(h, c, POLLIN);
				return;
			}
		} else {
			end[1] = '\0';
			handle(h, c, c->in);
			memmove(c->in, c->in + hlen, c->inlen - hlen);
			c->inlen -= hlen;
		}
		c->deadline_ns = mono_ns() + (uint64_t)MT_HTTP_WRITE_MS * 1000000u;
		if (flush_out(h, c)) {
			conn_watch(h, c, POLLOUT);
			return;
		}
		if (c->draining) {
			conn_watch(h, c, POLLIN);
			return;
		}
		/* A request under way in what is left gets its own deadline. */
		if (c->fd >= 0 && c->inlen)
			c->deadline_ns = mono_ns() + (uint64_t)MT_HTTP_REQUEST_MS * 1000000u;
	}
}

static struct conn *conn_of(struct mt_http *h, int fd)
{
	for (int i = 0; i < MT_HTTP_CONNS; i++)
		if (h->c[i].fd == fd)
			return &h->c[i];
	return NULL;
}

static void conn_ready(struct mt_session *s, int fd, short revents, void *arg)
{
	struct mt_http *h = arg;
	struct conn *c = conn_of(h, fd);
	(void)s;
	if (!c)
		return;
	if (c->out) {
		if (revents & (POLLERR | POLLHUP | POLLNVAL)) {
			conn_close(h, c);
			return;
		}
		if (flush_out(h, c) == 0 && c->fd >= 0) {
			if (c->draining)
				conn_watch(h, c, POLLIN);
			else
				serve(h, c);
		}
		return;
	}
	if (c->draining) {
		char junk[4096];
		ssize_t n;
		while ((n = recv(c->fd, junk, sizeof(junk), MSG_DONTWAIT)) > 0)
			;
		if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR))
			conn_close(h, c);
		return;
	}
	/* Read what is there, up to the buffer's end. */
	for (;;) {
		if (c->inlen >= sizeof(c->in) - 1)
			break;
		ssize_t n = recv(c->fd, c->in + c->inlen, sizeof(c->in) - 1 - c->inlen, MSG_DONTWAIT);
		if (n > 0) {
			/* A request has begun: it has MT_HTTP_REQUEST_MS in all. */
			uint64_t d = mono_ns() + (uint64_t)MT_HTTP_REQUEST_MS * 1000000u;
			if (!c->inlen && d < c->deadline_ns)
				c->deadline_ns = d;
			c->inlen += (size_t)n;
			continue;
		}
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			break;
		conn_close(h, c); /* the client closed, or an error */
		return;
	}
	serve(h, c);
}

static void on_accept(struct mt_session *s, int fd, short revents, void *arg)
{
	struct mt_http *h = arg;
	(void)s;
	(void)revents;
	for (int k = 0; k < MT_HTTP_CONNS; k++) {
		int cfd = accept4(fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (cfd < 0)
			return;
		struct conn *c = NULL, *oldest = NULL;
		for (int i = 0; i < MT_HTTP_CONNS && !c; i++) {
			if (h->c[i].fd < 0)
				c = &h->c[i];
			else if (!h->c[i].out && (!oldest || h->c[i].since_ns < oldest->since_ns))
				oldest = &h->c[i];
		}
		/* Full: the connection that has waited longest for a request
		 * makes room (slow and idle clients cannot hold the endpoint). */
		if (!c && oldest) {
			conn_close(h, oldest);
			c = oldest;
		}
		if (!c) {
			static const char busy[] = "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n"
						   "Retry-After: 1\r\nConnection: close\r\n\r\n";
			if (send(cfd, busy, sizeof(busy) - 1, MSG_NOSIGNAL | MSG_DONTWAIT) < 0) {
				/* nothing more to do for it */
			}
			close(cfd);
			continue;
		}
		memset(c, 0, offsetof(struct conn, in));
		c->fd = cfd;
		c->since_ns = mono_ns();
		c->deadline_ns = c->since_ns + (uint64_t)MT_HTTP_REQUEST_MS * 1000000u;
		conn_watch(h, c, POLLIN);
	}
}

/* Deadlines, from the session's ticks. */
static void on_tick(struct mt_session *s, void *arg)
{
	struct mt_http *h = arg;
	uint64_t now = mono_ns();
	(void)s;
	for (int i = 0; i < MT_HTTP_CONNS; i++)
		if (h->c[i].fd >= 0 && now >= h->c[i].deadline_ns)
			conn_close(h, &h->c[i]);
}

int mt_http_serve(struct mt_http *h, struct mt_session *sess, mt_http_handler handler, void *arg)
{
	h->sess = sess;
	h->handler = handler;
	h->arg = arg;
	struct mt_session_observer o = {.tick = on_tick, .arg = h, .every_ms = 200};
	int ret = mt_session_observe(sess, &o);
	if (!ret)
		ret = mt_session_watch_fd(sess, h->fd, POLLIN, on_accept, h);
	return ret;
}

void mt_http_free(struct mt_http *h)
{
	if (!h)
		return;
	for (int i = 0; i < MT_HTTP_CONNS; i++)
		if (h->c[i].fd >= 0) {
			close(h->c[i].fd);
			free(h->c[i].out);
		}
	close(h->fd);
	free(h);
}
