/*
 * relay-conn: deadline-bounded I/O of the delivery client.
 *
 * Invariants: the socket is non-blocking from its creation; every wait is a
 * poll() bounded by the operation's deadline (monotonic), so a peer that
 * sends nothing, or a byte now and then, costs at most that time; the input
 * buffer is fixed and replies go through the capped parser, so a peer that
 * sends without end costs fixed memory. After STARTTLS the unread plaintext
 * is dropped (a man in the middle's injected replies must not be taken as
 * the TLS server's).
 */
#include "relay-conn.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/x509.h>

#include "clock.h"

static void conn_error(struct relay_conn *conn, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static void conn_error(struct relay_conn *conn, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(conn->error, sizeof(conn->error), fmt, ap);
	va_end(ap);
}

static uint64_t deadline_after(unsigned int timeout_ms)
{
	return clock_monotonic_ms() + timeout_ms;
}

/* Waits for events until the deadline: 1 ready, 0 timed out, -1 error
 * (cancelled included). */
static int wait_fd(struct relay_conn *conn, short events, uint64_t deadline)
{
	for (;;) {
		uint64_t now = clock_monotonic_ms();
		struct pollfd pfd[2] = { { .fd = conn->fd, .events = events },
					 { .fd = conn->cancel_fd, .events = POLLIN } };
		int ret;

		if (now >= deadline)
			return 0;
		ret = poll(pfd, conn->cancel_fd >= 0 ? 2 : 1,
			   (int)(deadline - now > 60000 ? 60000 : deadline - now));
		if (ret > 0 && conn->cancel_fd >= 0 && pfd[1].revents != 0) {
			conn_error(conn, "%s", "delivery interrupted: tern is stopping");
			return -1;
		}
		if (ret > 0)
			return 1;
		if (ret < 0 && errno != EINTR) {
			conn_error(conn, "poll: %s", strerror(errno));
			return -1;
		}
	}
}

int relay_conn_connect(struct relay_conn *conn, const struct sockaddr_storage *addr,
		       unsigned int timeout_ms, int cancel_fd)
{
	socklen_t len = addr->ss_family == AF_INET6 ? sizeof(struct sockaddr_in6)
						     : sizeof(struct sockaddr_in);
	int err = 0, ret;
	socklen_t errlen = sizeof(err);

	memset(conn, 0, sizeof(*conn));
	conn->cancel_fd = cancel_fd;
	relay_reply_parser_init(&conn->parser);
	conn->fd = socket(addr->ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (conn->fd < 0) {
		conn_error(conn, "socket: %s", strerror(errno));
		return -1;
	}
	if (connect(conn->fd, (const struct sockaddr *)addr, len) == 0)
		return 0;
	if (errno != EINPROGRESS) {
		conn_error(conn, "connect: %s", strerror(errno));
		return -1;
	}
	ret = wait_fd(conn, POLLOUT, deadline_after(timeout_ms));
	if (ret == 0)
		conn_error(conn, "connect: %s", "timed out");
	if (ret <= 0)
		return -1;
	if (getsockopt(conn->fd, SOL_SOCKET, SO_ERROR, &err, &errlen) < 0 || err != 0) {
		conn_error(conn, "connect: %s", strerror(err != 0 ? err : errno));
		return -1;
	}
	return 0;
}

void relay_conn_close(struct relay_conn *conn)
{
	if (conn->ssl != NULL) {
		/* A close_notify when the socket takes it now; no waiting. */
		(void)SSL_shutdown(conn->ssl);
		SSL_free(conn->ssl);
		conn->ssl = NULL;
	}
	if (conn->fd >= 0)
		close(conn->fd);
	conn->fd = -1;
	relay_reply_parser_deinit(&conn->parser);
}

/* One TLS call's outcome: >0 done, 0 retry after waiting for *events_r,
 * -1 failed (conn->error set). */
static int tls_result(struct relay_conn *conn, int ret, short *events_r, const char *what)
{
	int err = SSL_get_error(conn->ssl, ret);
	unsigned long e;

	if (ret > 0)
		return ret;
	if (err == SSL_ERROR_WANT_READ) {
		*events_r = POLLIN;
		return 0;
	}
	if (err == SSL_ERROR_WANT_WRITE) {
		*events_r = POLLOUT;
		return 0;
	}
	e = ERR_get_error();
	ERR_clear_error();
	if (err == SSL_ERROR_ZERO_RETURN)
		conn_error(conn, "%s: connection closed", what);
	else if (e != 0)
		snprintf(conn->error, sizeof(conn->error), "%s: %s", what,
			 ERR_reason_error_string(e) != NULL ? ERR_reason_error_string(e)
							    : "TLS error");
	else
		snprintf(conn->error, sizeof(conn->error), "%s: %s", what,
			 err == SSL_ERROR_SYSCALL ? "connection lost" : "TLS error");
	return -1;
}

int relay_conn_write(struct relay_conn *conn, const void *data, size_t len,
		     unsigned int timeout_ms)
{
	uint64_t deadline = deadline_after(timeout_ms);
	const char *p = data;

	while (len > 0) {
		short events = POLLOUT;
		ssize_t n;
		int ret;

		if (conn->ssl != NULL) {
			ERR_clear_error();
			ret = tls_result(conn, SSL_write(conn->ssl, p, len > INT32_MAX ? INT32_MAX : (int)len),
					 &events, "write");
			if (ret < 0)
				return -1;
			n = ret;
		} else {
			n = send(conn->fd, p, len, MSG_NOSIGNAL);
			if (n < 0 && errno != EAGAIN && errno != EINTR) {
				conn_error(conn, "write: %s", strerror(errno));
				return -1;
			}
			if (n < 0)
				n = 0;
		}
		p += n;
		len -= (size_t)n;
		if (len == 0)
			break;
		if (n == 0) {
			ret = wait_fd(conn, events, deadline);
			if (ret == 0)
				conn_error(conn, "write: %s", "timed out");
			if (ret <= 0)
				return -1;
		}
	}
	return 0;
}

/* Fills the input buffer: 0, or -1 (closed, timed out, error). */
static int conn_fill(struct relay_conn *conn, uint64_t deadline)
{
	for (;;) {
		short events = POLLIN;
		ssize_t n;
		int ret;

		if (conn->ssl != NULL) {
			ERR_clear_error();
			ret = tls_result(conn, SSL_read(conn->ssl, conn->in, sizeof(conn->in)),
					 &events, "read");
			if (ret < 0)
				return -1;
			n = ret;
		} else {
			n = recv(conn->fd, conn->in, sizeof(conn->in), 0);
			if (n == 0) {
				conn_error(conn, "read: %s", "connection closed by the server");
				return -1;
			}
			if (n < 0 && errno != EAGAIN && errno != EINTR) {
				conn_error(conn, "read: %s", strerror(errno));
				return -1;
			}
			if (n < 0)
				n = 0;
		}
		if (n > 0) {
			conn->in_pos = 0;
			conn->in_len = (size_t)n;
			return 0;
		}
		ret = wait_fd(conn, events, deadline);
		if (ret == 0)
			conn_error(conn, "read: %s", "timed out waiting for the server's reply");
		if (ret <= 0)
			return -1;
	}
}

const struct relay_reply *relay_conn_reply(struct relay_conn *conn, unsigned int timeout_ms)
{
	uint64_t deadline = deadline_after(timeout_ms);

	for (;;) {
		const char *error;
		size_t used;
		int ret;

		if (conn->in_pos == conn->in_len && conn_fill(conn, deadline) < 0)
			return NULL;
		ret = relay_reply_parse(&conn->parser, conn->in + conn->in_pos,
					conn->in_len - conn->in_pos, &used, &error);
		conn->in_pos += used;
		if (ret < 0) {
			conn_error(conn, "bad reply: %s", error);
			return NULL;
		}
		if (ret == 1)
			return &conn->parser.reply;
	}
}

int relay_conn_starttls(struct relay_conn *conn, SSL *ssl, unsigned int timeout_ms)
{
	uint64_t deadline = deadline_after(timeout_ms);

	conn->in_pos = conn->in_len = 0;
	conn->ssl = ssl;
	if (SSL_set_fd(ssl, conn->fd) != 1) {
		conn_error(conn, "TLS: %s", "cannot attach the socket");
		return -1;
	}
	for (;;) {
		short events = POLLIN;
		int ret;

		ERR_clear_error();
		ret = tls_result(conn, SSL_connect(ssl), &events, "TLS handshake");
		if (ret > 0)
			return 0;
		if (ret < 0) {
			long v = SSL_get_verify_result(ssl);

			if (v != X509_V_OK)
				snprintf(conn->error, sizeof(conn->error),
					 "TLS handshake: certificate verification failed: %s",
					 X509_verify_cert_error_string(v));
			return -1;
		}
		ret = wait_fd(conn, events, deadline);
		if (ret == 0)
			conn_error(conn, "TLS handshake: %s", "timed out");
		if (ret <= 0)
			return -1;
	}
}
