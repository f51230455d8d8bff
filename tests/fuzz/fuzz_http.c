/* libFuzzer target: the endpoint's HTTP server (src/cli/http.c) on bytes a
 * client sends, over a real loopback connection.  The session's watch and
 * observer functions are stubbed here: the harness runs the callbacks the
 * session's wait would run. */
#include <errno.h>
#include <poll.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <unistd.h>

#include "cli/http.h"
#include "cli/session.h"

static struct {
	int fd;
	short events;
	void (*ready)(struct mt_session *s, int fd, short revents, void *arg);
	void *arg;
} w[MT_SESSION_FDS];
static size_t nw;

int mt_session_watch_fd(struct mt_session *s, int fd, short events,
			void (*ready)(struct mt_session *s, int fd, short revents, void *arg), void *arg)
{
	(void)s;
	if (nw >= MT_SESSION_FDS)
		return -28;
	w[nw].fd = fd, w[nw].events = events, w[nw].ready = ready, w[nw++].arg = arg;
	return 0;
}

void mt_session_unwatch_fd(struct mt_session *s, int fd)
{
	(void)s;
	for (size_t i = 0; i < nw; i++)
		if (w[i].fd == fd) {
			w[i] = w[--nw];
			return;
		}
}

int mt_session_observe(struct mt_session *s, const struct mt_session_observer *o)
{
	(void)s, (void)o;
	return 0;
}

static void handler(const struct mt_http_request *req, struct mt_http_response *resp, void *arg)
{
	(void)arg;
	if (!strcmp(req->path, "/metrics")) {
		resp->status = 200;
		resp->body = strdup(req->accept);
		resp->len = strlen(resp->body);
	}
}

static struct mt_http *h;
static struct sockaddr_in addr;

/* One round of the session's wait: every ready descriptor's callback. */
static void dispatch(void)
{
	struct pollfd p[MT_SESSION_FDS];
	size_t n = nw;
	for (size_t i = 0; i < n; i++)
		p[i] = (struct pollfd){.fd = w[i].fd, .events = w[i].events};
	if (poll(p, n, 1) <= 0)
		return;
	for (size_t i = 0; i < n; i++) {
		if (!p[i].revents)
			continue;
		for (size_t j = 0; j < nw; j++)
			if (w[j].fd == p[i].fd) {
				w[j].ready((struct mt_session *)1, p[i].fd, p[i].revents, w[j].arg);
				break;
			}
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (!h) {
		char err[256];
		if (mt_http_listen("127.0.0.1:0", 0, &h, err, sizeof(err)) ||
		    mt_http_serve(h, (struct mt_session *)1, handler, NULL))
			abort();
		addr.sin_family = AF_INET;
		addr.sin_port = htons((uint16_t)atoi(strrchr(mt_http_url(h), ':') + 1));
		addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	}
	if (size > 65536)
		size = 65536;
	int c = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
	if (c < 0)
		return 0;
	connect(c, (struct sockaddr *)&addr, sizeof(addr));
	size_t off = 0;
	char buf[65536];
	for (int round = 0; round < 200; round++) {
		if (off < size) {
			ssize_t n = send(c, data + off, size - off, MSG_NOSIGNAL);
			if (n > 0)
				off += (size_t)n;
			if (off == size)
				shutdown(c, SHUT_WR);
		}
		dispatch();
		ssize_t r = recv(c, buf, sizeof(buf), 0);
		if (r == 0 || (r < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR))
			break;
	}
	close(c);
	/* The server sees the close now. */
	for (int round = 0; round < 4; round++)
		dispatch();
	return 0;
}
