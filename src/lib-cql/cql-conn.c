/*
 * A connection to one Cassandra node. Callers queue request frames and
 * sleep on their own condition variable; one I/O thread per connection
 * writes the queue, reads responses and hands each to the caller waiting on
 * its stream id. TLS, when enabled, is used only by the I/O thread (after a
 * handshake done before it starts), so no SSL object is shared.
 *
 * Invariants:
 * - A stream id is owned by exactly one pending request from the moment it
 *   is queued until its response arrives or the connection dies. A caller
 *   that gives up (deadline) leaves its request orphaned: the id stays
 *   reserved until the late response frees it, so it is never reused while
 *   the server may still answer on it. Too many orphans recycle the
 *   connection.
 * - Once dead, a connection stays dead: every pending request is failed
 *   with err->sent telling whether its first byte had left the queue, and
 *   new requests fail at once, so the session can move to another host.
 * - A response on a stream with no pending request, or a malformed frame,
 *   kills the connection: nothing the server sends can crash the client.
 * - An idle connection sends OPTIONS as a heartbeat (an orphan from the
 *   start, so its answer is simply dropped); silence after it kills the
 *   connection, so a half-open TCP connection is found without a request
 *   having to time out on it first.
 */
#include "cql-conn.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/x509v3.h>

#define CONN_MAX_STREAMS 1024
#define CONN_MAX_ORPHANS 256

struct pending {
	pthread_cond_t cond;
	bool done, orphaned, sent;
	int status;
	uint64_t start_offset;
	struct cql_frame resp;
};

struct cql_conn {
	atomic_int refs;
	int fd, wake[2];
	SSL *ssl;
	bool ssl_want_write;
	pthread_t thread;
	bool thread_started;

	pthread_mutex_t lock;
	struct cql_buf outq;
	size_t out_pos;
	uint64_t queued_total, sent_total;
	struct pending *streams[CONN_MAX_STREAMS];
	unsigned inflight, orphans, next_stream;
	bool dead, closing;
	char dead_reason[160];

	struct cql_frame_parser parser;
	unsigned heartbeat_ms, heartbeat_timeout_ms;
	int64_t last_read_ms, heartbeat_sent_ms;
	char host[64];
	uint16_t port;
	void (*on_event)(void *ctx, const struct cql_event *event);
	void *event_ctx;
};

static void conn_fail(struct cql_conn *conn, const char *reason)
{
	pthread_mutex_lock(&conn->lock);
	if (!conn->dead) {
		conn->dead = true;
		snprintf(conn->dead_reason, sizeof(conn->dead_reason), "%s", reason);
	}
	for (unsigned i = 0; i < CONN_MAX_STREAMS; i++) {
		struct pending *p = conn->streams[i];
		if (p == NULL)
			continue;
		conn->streams[i] = NULL;
		if (p->orphaned) {
			pthread_cond_destroy(&p->cond);
			free(p);
			continue;
		}
		p->status = -1;
		p->sent = conn->sent_total > p->start_offset;
		p->done = true;
		pthread_cond_signal(&p->cond);
	}
	conn->inflight = 0;
	conn->orphans = 0;
	pthread_mutex_unlock(&conn->lock);
}

static void conn_wake(struct cql_conn *conn)
{
	char c = 1;
	ssize_t ret = write(conn->wake[1], &c, 1);
	(void)ret;	/* a full pipe already wakes the thread */
}

/* Returns -1 on a dead connection, 0 otherwise. */
static int conn_dispatch(struct cql_conn *conn, struct cql_frame *frame)
{
	if (frame->stream < 0) {
		struct cql_event ev;
		if (frame->opcode == CQL_OP_EVENT && conn->on_event != NULL &&
		    cql_event_decode(frame, &ev) == 0)
			conn->on_event(conn->event_ctx, &ev);
		cql_frame_free(frame);
		return 0;
	}
	pthread_mutex_lock(&conn->lock);
	struct pending *p = frame->stream < CONN_MAX_STREAMS ?
		conn->streams[frame->stream] : NULL;
	if (p == NULL) {
		pthread_mutex_unlock(&conn->lock);
		cql_frame_free(frame);
		conn_fail(conn, "response on a stream with no request");
		return -1;
	}
	conn->streams[frame->stream] = NULL;
	conn->inflight--;
	if (p->orphaned) {
		conn->orphans--;
		pthread_cond_destroy(&p->cond);
		free(p);
		cql_frame_free(frame);
	} else {
		p->resp = *frame;
		p->status = 0;
		p->done = true;
		pthread_cond_signal(&p->cond);
	}
	pthread_mutex_unlock(&conn->lock);
	return 0;
}

/* Reads what is available. Returns -1 when the connection is over. */
static int conn_read(struct cql_conn *conn)
{
	uint8_t buf[65536];

	for (;;) {
		ssize_t n;
		if (conn->ssl != NULL) {
			int r = SSL_read(conn->ssl, buf, sizeof(buf));
			if (r <= 0) {
				int e = SSL_get_error(conn->ssl, r);
				if (e == SSL_ERROR_WANT_READ)
					return 0;
				if (e == SSL_ERROR_WANT_WRITE) {
					conn->ssl_want_write = true;
					return 0;
				}
				conn_fail(conn, e == SSL_ERROR_ZERO_RETURN ?
					  "server closed the connection" : "TLS read failed");
				return -1;
			}
			n = r;
		} else {
			n = recv(conn->fd, buf, sizeof(buf), MSG_DONTWAIT);
			if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
				return 0;
			if (n <= 0) {
				conn_fail(conn, n == 0 ? "server closed the connection" :
					  strerror(errno));
				return -1;
			}
		}
		conn->last_read_ms = cql_now_ms();
		conn->heartbeat_sent_ms = 0;
		size_t pos = 0;
		while (pos < (size_t)n) {
			struct cql_frame frame;
			const char *error;
			size_t used;
			int ret = cql_frame_parser_feed(&conn->parser, buf + pos, (size_t)n - pos,
							&used, &frame, &error);
			pos += used;
			if (ret < 0) {
				conn_fail(conn, error);
				return -1;
			}
			if (ret > 0 && conn_dispatch(conn, &frame) < 0)
				return -1;
		}
		if (conn->ssl == NULL && (size_t)n < sizeof(buf))
			return 0;
	}
}

/* Writes queued bytes until the socket would block. */
static int conn_write(struct cql_conn *conn)
{
	pthread_mutex_lock(&conn->lock);
	while (conn->out_pos < conn->outq.len) {
		size_t left = conn->outq.len - conn->out_pos;
		ssize_t n;
		if (conn->ssl != NULL) {
			int r = SSL_write(conn->ssl, conn->outq.data + conn->out_pos,
					  left > INT32_MAX ? INT32_MAX : (int)left);
			if (r <= 0) {
				int e = SSL_get_error(conn->ssl, r);
				conn->ssl_want_write = e == SSL_ERROR_WANT_WRITE;
				if (e == SSL_ERROR_WANT_WRITE || e == SSL_ERROR_WANT_READ)
					break;
				pthread_mutex_unlock(&conn->lock);
				conn_fail(conn, "TLS write failed");
				return -1;
			}
			conn->ssl_want_write = false;
			n = r;
		} else {
			n = send(conn->fd, conn->outq.data + conn->out_pos, left,
				 MSG_DONTWAIT | MSG_NOSIGNAL);
			if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
				break;
			if (n < 0) {
				char reason[128];
				snprintf(reason, sizeof(reason), "send: %s", strerror(errno));
				pthread_mutex_unlock(&conn->lock);
				conn_fail(conn, reason);
				return -1;
			}
		}
		conn->out_pos += (size_t)n;
		conn->sent_total += (uint64_t)n;
	}
	if (conn->out_pos == conn->outq.len) {
		conn->outq.len = 0;
		conn->out_pos = 0;
	}
	pthread_mutex_unlock(&conn->lock);
	return 0;
}

/* Queues OPTIONS when idle; returns -1 if an earlier one went unanswered. */
static int conn_heartbeat(struct cql_conn *conn)
{
	int64_t now = cql_now_ms();

	if (conn->heartbeat_ms == 0)
		return 0;
	if (conn->heartbeat_sent_ms != 0) {
		if (now - conn->heartbeat_sent_ms < conn->heartbeat_timeout_ms)
			return 0;
		conn_fail(conn, "no answer to a heartbeat");
		return -1;
	}
	if (now - conn->last_read_ms < conn->heartbeat_ms)
		return 0;
	pthread_mutex_lock(&conn->lock);
	unsigned stream = conn->next_stream, i;
	for (i = 0; i < CONN_MAX_STREAMS && conn->streams[stream] != NULL; i++)
		stream = (stream + 1) % CONN_MAX_STREAMS;
	if (i < CONN_MAX_STREAMS) {
		struct pending *p = calloc(1, sizeof(*p));
		struct cql_buf frame = { 0 };
		if (p == NULL)
			abort();
		pthread_cond_init(&p->cond, NULL);
		p->orphaned = true;
		conn->streams[stream] = p;
		conn->next_stream = (stream + 1) % CONN_MAX_STREAMS;
		conn->inflight++;
		conn->orphans++;
		cql_msg_options(&frame);
		cql_frame_set_stream(frame.data, (int16_t)stream);
		cql_buf_append(&conn->outq, frame.data, frame.len);
		conn->queued_total += frame.len;
		cql_buf_free(&frame);
		conn->heartbeat_sent_ms = now;
	}
	pthread_mutex_unlock(&conn->lock);
	return 0;
}

static void *conn_thread(void *context)
{
	struct cql_conn *conn = context;

	for (;;) {
		pthread_mutex_lock(&conn->lock);
		bool stop = conn->closing || conn->dead;
		bool want_write = conn->out_pos < conn->outq.len || conn->ssl_want_write;
		pthread_mutex_unlock(&conn->lock);
		if (stop)
			break;
		struct pollfd fds[2] = {
			{ .fd = conn->fd, .events = POLLIN | (want_write ? POLLOUT : 0) },
			{ .fd = conn->wake[0], .events = POLLIN },
		};
		bool ssl_buffered = conn->ssl != NULL && SSL_pending(conn->ssl) > 0;
		if (poll(fds, 2, ssl_buffered ? 0 : 1000) < 0 && errno != EINTR) {
			conn_fail(conn, "poll failed");
			break;
		}
		if ((fds[1].revents & POLLIN) != 0) {
			char drain[64];
			while (read(conn->wake[0], drain, sizeof(drain)) > 0)
				;
		}
		if ((fds[0].revents & (POLLIN | POLLERR | POLLHUP)) != 0 || ssl_buffered) {
			if (conn_read(conn) < 0)
				break;
		}
		if (conn_heartbeat(conn) < 0 || conn_write(conn) < 0)
			break;
	}
	/* Whoever marked the connection dead, fail what still waits. */
	conn_fail(conn, "connection closed");
	return NULL;
}

int cql_conn_request(struct cql_conn *conn, struct cql_buf *frame, int64_t deadline_ms,
		     struct cql_frame *resp_r, struct cql_error *err_r)
{
	memset(resp_r, 0, sizeof(*resp_r));
	pthread_mutex_lock(&conn->lock);
	if (conn->dead || conn->closing) {
		cql_errorf(err_r, CQL_ERR_CONNECTION, "%s:%u: %s", conn->host, conn->port,
			   conn->dead_reason[0] != '\0' ? conn->dead_reason : "closed");
		pthread_mutex_unlock(&conn->lock);
		return -1;
	}
	unsigned stream = conn->next_stream, i;
	for (i = 0; i < CONN_MAX_STREAMS && conn->streams[stream] != NULL; i++)
		stream = (stream + 1) % CONN_MAX_STREAMS;
	if (i == CONN_MAX_STREAMS) {
		pthread_mutex_unlock(&conn->lock);
		cql_errorf(err_r, CQL_ERR_CONNECTION, "%s:%u: no free stream id",
			   conn->host, conn->port);
		return -1;
	}
	conn->next_stream = (stream + 1) % CONN_MAX_STREAMS;
	struct pending *p = calloc(1, sizeof(*p));
	if (p == NULL)
		abort();
	pthread_condattr_t attr;
	pthread_condattr_init(&attr);
	pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
	pthread_cond_init(&p->cond, &attr);
	pthread_condattr_destroy(&attr);
	conn->streams[stream] = p;
	conn->inflight++;
	cql_frame_set_stream(frame->data, (int16_t)stream);
	p->start_offset = conn->queued_total;
	cql_buf_append(&conn->outq, frame->data, frame->len);
	conn->queued_total += frame->len;
	conn_wake(conn);

	struct timespec ts = {
		.tv_sec = (time_t)(deadline_ms / 1000),
		.tv_nsec = (long)(deadline_ms % 1000) * 1000000,
	};
	while (!p->done) {
		if (pthread_cond_timedwait(&p->cond, &conn->lock, &ts) == ETIMEDOUT &&
		    !p->done) {
			p->orphaned = true;
			conn->orphans++;
			bool sent = conn->sent_total > p->start_offset;
			if (conn->orphans > CONN_MAX_ORPHANS && !conn->dead) {
				conn->dead = true;
				snprintf(conn->dead_reason, sizeof(conn->dead_reason),
					 "too many requests timed out");
				conn_wake(conn);
			}
			pthread_mutex_unlock(&conn->lock);
			cql_errorf(err_r, CQL_ERR_TIMEOUT, "%s:%u: no response before the deadline",
				   conn->host, conn->port);
			err_r->sent = sent;
			return -1;
		}
	}
	int status = p->status;
	bool sent = p->sent;
	*resp_r = p->resp;
	pthread_mutex_unlock(&conn->lock);
	pthread_cond_destroy(&p->cond);
	free(p);
	if (status < 0) {
		pthread_mutex_lock(&conn->lock);
		cql_errorf(err_r, CQL_ERR_CONNECTION, "%s:%u: %s", conn->host, conn->port,
			   conn->dead_reason);
		pthread_mutex_unlock(&conn->lock);
		err_r->sent = sent;
		return -1;
	}
	return 0;
}

int cql_conn_call(struct cql_conn *conn, struct cql_buf *frame, int64_t deadline_ms,
		  struct cql_result **result_r, struct cql_error *err_r)
{
	struct cql_frame resp;

	*result_r = NULL;
	if (cql_conn_request(conn, frame, deadline_ms, &resp, err_r) < 0)
		return -1;
	int ret = cql_response_decode(&resp, result_r, err_r);
	cql_frame_free(&resp);
	if (ret < 0 && err_r->kind == CQL_ERR_PROTOCOL) {
		/* Hostile or broken bytes: do not trust this connection again. */
		pthread_mutex_lock(&conn->lock);
		if (!conn->dead) {
			conn->dead = true;
			snprintf(conn->dead_reason, sizeof(conn->dead_reason), "%.100s",
				 err_r->message);
		}
		pthread_mutex_unlock(&conn->lock);
		conn_wake(conn);
	}
	return ret;
}

static int wait_fd(int fd, short events, int64_t deadline_ms)
{
	struct pollfd pfd = { .fd = fd, .events = events };
	int64_t left = deadline_ms - cql_now_ms();
	if (left <= 0)
		return 0;
	int ret = poll(&pfd, 1, (int)left);
	return ret < 0 && errno == EINTR ? 1 : ret;
}

static int tcp_connect(const char *host, uint16_t port, int64_t deadline_ms,
		       struct cql_error *err_r)
{
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM }, *ai;
	char service[8];

	snprintf(service, sizeof(service), "%u", port);
	int gai = getaddrinfo(host, service, &hints, &ai);
	if (gai != 0) {
		cql_errorf(err_r, CQL_ERR_CONNECTION, "%s: %s", host, gai_strerror(gai));
		return -1;
	}
	int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0) {
		freeaddrinfo(ai);
		cql_errorf(err_r, CQL_ERR_CONNECTION, "socket: %s", strerror(errno));
		return -1;
	}
	int ret = connect(fd, ai->ai_addr, ai->ai_addrlen);
	freeaddrinfo(ai);
	if (ret < 0 && errno == EINPROGRESS) {
		int soerr = 0;
		socklen_t len = sizeof(soerr);
		if (wait_fd(fd, POLLOUT, deadline_ms) <= 0) {
			errno = ETIMEDOUT;
		} else if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &len) == 0 && soerr == 0) {
			ret = 0;
		} else {
			errno = soerr;
		}
	}
	if (ret < 0) {
		cql_errorf(err_r, CQL_ERR_CONNECTION, "connect %s:%u: %s", host, port,
			   strerror(errno));
		close(fd);
		return -1;
	}
	int one = 1, idle = 30, intvl = 5, cnt = 3;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof(one));
	setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof(idle));
	setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &intvl, sizeof(intvl));
	setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &cnt, sizeof(cnt));
	return fd;
}

static int tls_handshake(struct cql_conn *conn, SSL_CTX *ctx, int64_t deadline_ms,
			 struct cql_error *err_r)
{
	conn->ssl = SSL_new(ctx);
	if (conn->ssl == NULL || SSL_set_fd(conn->ssl, conn->fd) != 1) {
		cql_errorf(err_r, CQL_ERR_CONNECTION, "TLS setup failed");
		return -1;
	}
	SSL_set_mode(conn->ssl, SSL_MODE_ENABLE_PARTIAL_WRITE |
		     SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
	if (SSL_CTX_get_verify_mode(ctx) != SSL_VERIFY_NONE) {
		X509_VERIFY_PARAM *param = SSL_get0_param(conn->ssl);
		if (X509_VERIFY_PARAM_set1_ip_asc(param, conn->host) != 1)
			X509_VERIFY_PARAM_set1_host(param, conn->host, 0);
	}
	for (;;) {
		ERR_clear_error();
		int r = SSL_connect(conn->ssl);
		if (r == 1)
			return 0;
		int e = SSL_get_error(conn->ssl, r);
		short ev = e == SSL_ERROR_WANT_READ ? POLLIN :
			e == SSL_ERROR_WANT_WRITE ? POLLOUT : 0;
		if (ev == 0) {
			char buf[160];
			ERR_error_string_n(ERR_get_error(), buf, sizeof(buf));
			cql_errorf(err_r, CQL_ERR_CONNECTION, "TLS handshake with %s:%u: %s",
				   conn->host, conn->port, buf);
			return -1;
		}
		if (wait_fd(conn->fd, ev, deadline_ms) <= 0) {
			cql_errorf(err_r, CQL_ERR_TIMEOUT, "TLS handshake with %s:%u timed out",
				   conn->host, conn->port);
			return -1;
		}
	}
}

/* STARTUP, then SASL PLAIN if the server asks for it. */
static int conn_startup(struct cql_conn *conn, const struct cql_conn_settings *set,
			int64_t deadline_ms, struct cql_error *err_r)
{
	struct cql_buf buf = { 0 };
	struct cql_frame resp;
	int ret = -1;

	cql_msg_startup(&buf);
	for (unsigned round = 0; round < 4; round++) {
		if (cql_conn_request(conn, &buf, deadline_ms, &resp, err_r) < 0)
			break;
		if (resp.opcode == CQL_OP_READY || resp.opcode == CQL_OP_AUTH_SUCCESS) {
			ret = 0;
		} else if (resp.opcode == CQL_OP_AUTHENTICATE ||
			   resp.opcode == CQL_OP_AUTH_CHALLENGE) {
			if (set->username == NULL || set->password == NULL) {
				cql_errorf(err_r, CQL_ERR_BAD_CREDENTIALS,
					   "%s:%u requires authentication, but no username is set",
					   conn->host, conn->port);
			} else {
				buf.len = 0;
				cql_msg_auth_response(&buf, set->username, set->password);
				cql_frame_free(&resp);
				continue;
			}
		} else if (resp.opcode == CQL_OP_ERROR) {
			struct cql_rd rd;
			if (cql_frame_message(&resp, &rd) == 0)
				(void)cql_error_decode(rd.p, cql_rd_left(&rd), err_r);
			else
				cql_errorf(err_r, CQL_ERR_PROTOCOL, "malformed ERROR");
		} else {
			cql_errorf(err_r, CQL_ERR_PROTOCOL, "unexpected opcode 0x%02x in handshake",
				   resp.opcode);
		}
		cql_frame_free(&resp);
		break;
	}
	/* The buffer may hold the password. */
	if (buf.data != NULL)
		OPENSSL_cleanse(buf.data, buf.cap);
	cql_buf_free(&buf);
	return ret;
}

static int conn_simple(struct cql_conn *conn, struct cql_buf *buf, int64_t deadline_ms,
		       struct cql_error *err_r)
{
	struct cql_frame resp;

	if (cql_conn_request(conn, buf, deadline_ms, &resp, err_r) < 0)
		return -1;
	int ret = 0;
	if (resp.opcode == CQL_OP_READY) {
		cql_frame_free(&resp);
	} else {
		struct cql_result *result;
		ret = cql_response_decode(&resp, &result, err_r);
		cql_result_free(&result);
		cql_frame_free(&resp);
	}
	return ret;
}

struct cql_conn *cql_conn_open(const struct cql_conn_settings *set, int64_t deadline_ms,
			       struct cql_error *err_r)
{
	struct cql_conn *conn = calloc(1, sizeof(*conn));
	if (conn == NULL)
		abort();
	atomic_init(&conn->refs, 1);
	conn->fd = -1;
	conn->wake[0] = conn->wake[1] = -1;
	pthread_mutex_init(&conn->lock, NULL);
	snprintf(conn->host, sizeof(conn->host), "%s", set->host);
	conn->port = set->port;
	conn->on_event = set->on_event;
	conn->event_ctx = set->event_ctx;
	conn->heartbeat_ms = set->heartbeat_ms;
	conn->heartbeat_timeout_ms = set->heartbeat_timeout_ms != 0 ?
		set->heartbeat_timeout_ms : 5000;
	conn->last_read_ms = cql_now_ms();
	cql_frame_parser_init(&conn->parser, set->max_frame_size);

	conn->fd = tcp_connect(set->host, set->port, deadline_ms, err_r);
	if (conn->fd < 0)
		goto fail;
	if (pipe2(conn->wake, O_NONBLOCK | O_CLOEXEC) < 0) {
		cql_errorf(err_r, CQL_ERR_CONNECTION, "pipe: %s", strerror(errno));
		goto fail;
	}
	if (set->ssl_ctx != NULL && tls_handshake(conn, set->ssl_ctx, deadline_ms, err_r) < 0)
		goto fail;
	if (pthread_create(&conn->thread, NULL, conn_thread, conn) != 0) {
		cql_errorf(err_r, CQL_ERR_CONNECTION, "cannot start the I/O thread");
		goto fail;
	}
	conn->thread_started = true;
	if (conn_startup(conn, set, deadline_ms, err_r) < 0)
		goto fail;
	struct cql_buf buf = { 0 };
	if (set->keyspace != NULL && set->keyspace[0] != '\0') {
		struct cql_params p = { .consistency = CQL_ONE, .timestamp_us = -1 };
		char use[300];
		snprintf(use, sizeof(use), "USE %s", set->keyspace);
		(void)cql_msg_query(&buf, use, &p);
		if (conn_simple(conn, &buf, deadline_ms, err_r) < 0) {
			cql_buf_free(&buf);
			goto fail;
		}
		buf.len = 0;
	}
	if (set->on_event != NULL) {
		cql_msg_register(&buf);
		if (conn_simple(conn, &buf, deadline_ms, err_r) < 0) {
			cql_buf_free(&buf);
			goto fail;
		}
	}
	cql_buf_free(&buf);
	return conn;
fail:
	cql_conn_unref(&conn);
	return NULL;
}

void cql_conn_ref(struct cql_conn *conn)
{
	atomic_fetch_add(&conn->refs, 1);
}

void cql_conn_unref(struct cql_conn **connp)
{
	struct cql_conn *conn = *connp;

	*connp = NULL;
	if (conn == NULL || atomic_fetch_sub(&conn->refs, 1) != 1)
		return;
	pthread_mutex_lock(&conn->lock);
	conn->closing = true;
	pthread_mutex_unlock(&conn->lock);
	if (conn->thread_started) {
		conn_wake(conn);
		pthread_join(conn->thread, NULL);
	}
	/* Orphans whose responses never came. */
	conn_fail(conn, "closed");
	if (conn->ssl != NULL)
		SSL_free(conn->ssl);
	if (conn->fd >= 0)
		close(conn->fd);
	if (conn->wake[0] >= 0) {
		close(conn->wake[0]);
		close(conn->wake[1]);
	}
	cql_frame_parser_deinit(&conn->parser);
	cql_buf_free(&conn->outq);
	pthread_mutex_destroy(&conn->lock);
	free(conn);
}

bool cql_conn_is_dead(struct cql_conn *conn)
{
	pthread_mutex_lock(&conn->lock);
	bool dead = conn->dead || conn->closing;
	pthread_mutex_unlock(&conn->lock);
	return dead;
}

unsigned cql_conn_inflight(struct cql_conn *conn)
{
	pthread_mutex_lock(&conn->lock);
	unsigned n = conn->inflight;
	pthread_mutex_unlock(&conn->lock);
	return n;
}

const char *cql_conn_host(const struct cql_conn *conn)
{
	return conn->host;
}
