/*
 * Unit tests of a lib-cql connection against a scripted fake server on
 * loopback: SASL PLAIN authentication, responses out of order, a late
 * response after the caller's deadline (orphaned stream), and hostile
 * frames that must fail the waiting caller without a crash.
 */
#include "cql-conn.h"
#include "cql-test-frames.h"
#include "../unit/test.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <sys/socket.h>
#include <unistd.h>

struct fake {
	int listen_fd, fd;
	uint16_t port;
	void (*script)(struct fake *f);
	pthread_t thread;
};

static int read_full(int fd, uint8_t *buf, size_t len)
{
	for (size_t got = 0; got < len; ) {
		ssize_t n = read(fd, buf + got, len - got);
		if (n <= 0)
			return -1;
		got += (size_t)n;
	}
	return 0;
}

/* Reads one request frame; returns its opcode, the stream in *stream_r and
   the body in body (caller frees), or -1. */
static int read_request(struct fake *f, int16_t *stream_r, struct cql_buf *body)
{
	uint8_t h[9];
	if (read_full(f->fd, h, 9) < 0)
		return -1;
	uint32_t len = (uint32_t)h[5] << 24 | (uint32_t)h[6] << 16 | (uint32_t)h[7] << 8 | h[8];
	*stream_r = (int16_t)(uint16_t)(h[2] << 8 | h[3]);
	body->len = 0;
	cql_buf_reserve(body, len);
	if (read_full(f->fd, body->data, len) < 0)
		return -1;
	body->len = len;
	return h[4];
}

static void send_buf(struct fake *f, struct cql_buf *b)
{
	ssize_t n = write(f->fd, b->data, b->len);
	(void)n;
	b->len = 0;
}

static void reply_simple(struct fake *f, int16_t stream, uint8_t opcode)
{
	struct cql_buf b = { 0 };
	size_t start = tf_begin(&b, stream, opcode);
	cql_frame_end(&b, start);
	send_buf(f, &b);
	cql_buf_free(&b);
}

/* A RESULT Set_keyspace naming tag, so a caller can tell its answer. */
static void reply_tag(struct fake *f, int16_t stream, const char *tag)
{
	struct cql_buf b = { 0 };
	size_t start = tf_begin(&b, stream, CQL_OP_RESULT);
	cql_buf_put_i32(&b, CQL_RESULT_SET_KEYSPACE);
	cql_buf_put_string(&b, tag);
	cql_frame_end(&b, start);
	send_buf(f, &b);
	cql_buf_free(&b);
}

static void *fake_thread(void *ctx)
{
	struct fake *f = ctx;
	f->fd = accept(f->listen_fd, NULL, NULL);
	if (f->fd >= 0) {
		f->script(f);
		close(f->fd);
	}
	return NULL;
}

static void fake_start(struct fake *f, void (*script)(struct fake *f))
{
	struct sockaddr_in sin = { .sin_family = AF_INET };
	socklen_t len = sizeof(sin);

	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	f->listen_fd = socket(AF_INET, SOCK_STREAM, 0);
	if (f->listen_fd < 0 || bind(f->listen_fd, (struct sockaddr *)&sin, sizeof(sin)) < 0 ||
	    listen(f->listen_fd, 1) < 0 ||
	    getsockname(f->listen_fd, (struct sockaddr *)&sin, &len) < 0) {
		perror("fake server");
		exit(1);
	}
	f->port = ntohs(sin.sin_port);
	f->script = script;
	pthread_create(&f->thread, NULL, fake_thread, f);
}

static void fake_stop(struct fake *f)
{
	pthread_join(f->thread, NULL);
	close(f->listen_fd);
}

static struct cql_conn *open_conn(struct fake *f, struct cql_error *err)
{
	struct cql_conn_settings set = {
		.host = "127.0.0.1", .port = f->port, .max_frame_size = 1 << 20,
		.username = "user", .password = "pass",
	};
	return cql_conn_open(&set, cql_now_ms() + 5000, err);
}

static void query_frame(struct cql_buf *b, const char *cql)
{
	struct cql_params p = { .consistency = CQL_ONE, .timestamp_us = -1 };
	b->len = 0;
	(void)cql_msg_query(b, cql, &p);
}

static int auth_ok;

/* STARTUP -> AUTHENTICATE -> AUTH_RESPONSE -> AUTH_SUCCESS */
static void handshake_auth(struct fake *f)
{
	struct cql_buf body = { 0 }, b = { 0 };
	int16_t stream;

	if (read_request(f, &stream, &body) != CQL_OP_STARTUP)
		goto out;
	size_t start = tf_begin(&b, stream, CQL_OP_AUTHENTICATE);
	cql_buf_put_string(&b, "org.apache.cassandra.auth.PasswordAuthenticator");
	cql_frame_end(&b, start);
	send_buf(f, &b);
	if (read_request(f, &stream, &body) != CQL_OP_AUTH_RESPONSE)
		goto out;
	auth_ok = body.len == 4 + 10 && memcmp(body.data + 4, "\0user\0pass", 10) == 0;
	start = tf_begin(&b, stream, CQL_OP_AUTH_SUCCESS);
	cql_buf_put_i32(&b, -1);
	cql_frame_end(&b, start);
	send_buf(f, &b);
out:
	cql_buf_free(&body);
	cql_buf_free(&b);
}

/* Two queries answered in reverse order. */
static void script_order(struct fake *f)
{
	struct cql_buf body = { 0 };
	int16_t s1, s2;
	char q1[16] = "", q2[16] = "";

	handshake_auth(f);
	if (read_request(f, &s1, &body) != CQL_OP_QUERY)
		goto out;
	memcpy(q1, body.data + 4, 2);
	if (read_request(f, &s2, &body) != CQL_OP_QUERY)
		goto out;
	memcpy(q2, body.data + 4, 2);
	reply_tag(f, s2, q2);
	usleep(20000);
	reply_tag(f, s1, q1);
out:
	cql_buf_free(&body);
}

struct caller {
	struct cql_conn *conn;
	const char *cql;
	int ok;
};

static void *caller_run(void *ctx)
{
	struct caller *c = ctx;
	struct cql_buf b = { 0 };
	struct cql_result *r;
	struct cql_error err;

	query_frame(&b, c->cql);
	if (cql_conn_call(c->conn, &b, cql_now_ms() + 5000, &r, &err) == 0) {
		c->ok = cql_result_kind(r) == CQL_RESULT_SET_KEYSPACE &&
			strncmp(cql_result_keyspace(r), c->cql, 2) == 0;
		cql_result_free(&r);
	}
	cql_buf_free(&b);
	return NULL;
}

static void test_auth_and_order(void)
{
	struct fake f;
	struct cql_error err;

	fake_start(&f, script_order);
	struct cql_conn *conn = open_conn(&f, &err);
	CHECK(conn != NULL);
	CHECK(auth_ok);
	if (conn != NULL) {
		struct caller a = { conn, "AA", 0 }, b = { conn, "BB", 0 };
		pthread_t ta, tb;
		pthread_create(&ta, NULL, caller_run, &a);
		usleep(50000);
		pthread_create(&tb, NULL, caller_run, &b);
		pthread_join(ta, NULL);
		pthread_join(tb, NULL);
		CHECK(a.ok);
		CHECK(b.ok);
		cql_conn_unref(&conn);
	}
	fake_stop(&f);
}

/* READY; a late answer to the first query; then a hostile frame. */
static void script_late_then_hostile(struct fake *f)
{
	struct cql_buf body = { 0 }, b = { 0 };
	int16_t s1, s2, s3;

	if (read_request(f, &s1, &body) != CQL_OP_STARTUP)
		goto out;
	reply_simple(f, s1, CQL_OP_READY);
	if (read_request(f, &s1, &body) != CQL_OP_QUERY)
		goto out;
	usleep(300000);		/* past the caller's deadline */
	reply_tag(f, s1, "late");
	if (read_request(f, &s2, &body) != CQL_OP_QUERY)
		goto out;
	if (s2 == s1)		/* the orphaned id must not be reused early */
		goto out;
	reply_tag(f, s2, "ok");
	if (read_request(f, &s3, &body) != CQL_OP_QUERY)
		goto out;
	/* a response header with a request version */
	uint8_t bad[9] = { 0x04, 0, (uint8_t)(s3 >> 8), (uint8_t)s3, CQL_OP_RESULT, 0, 0, 0, 4 };
	ssize_t n = write(f->fd, bad, sizeof(bad));
	(void)n;
	usleep(100000);
out:
	cql_buf_free(&body);
	cql_buf_free(&b);
}

static void test_late_and_hostile(void)
{
	struct fake f;
	struct cql_error err;
	struct cql_buf b = { 0 };
	struct cql_result *r;

	fake_start(&f, script_late_then_hostile);
	struct cql_conn *conn = open_conn(&f, &err);
	CHECK(conn != NULL);
	if (conn != NULL) {
		query_frame(&b, "first");
		CHECK_INT(cql_conn_call(conn, &b, cql_now_ms() + 100, &r, &err), -1);
		CHECK_INT(err.kind, CQL_ERR_TIMEOUT);
		CHECK(err.sent);
		query_frame(&b, "second");
		CHECK_INT(cql_conn_call(conn, &b, cql_now_ms() + 5000, &r, &err), 0);
		CHECK(r != NULL && strcmp(cql_result_keyspace(r), "ok") == 0);
		cql_result_free(&r);
		query_frame(&b, "third");
		CHECK_INT(cql_conn_call(conn, &b, cql_now_ms() + 5000, &r, &err), -1);
		CHECK_INT(err.kind, CQL_ERR_CONNECTION);
		CHECK(cql_conn_is_dead(conn));
		/* dead stays dead, and fails at once */
		CHECK_INT(cql_conn_call(conn, &b, cql_now_ms() + 5000, &r, &err), -1);
		CHECK_INT(err.kind, CQL_ERR_CONNECTION);
		CHECK(!err.sent);
		cql_conn_unref(&conn);
	}
	cql_buf_free(&b);
	fake_stop(&f);
}

/* An answer on a stream nobody asked on, then a server that closes. */
static void script_unknown_stream(struct fake *f)
{
	struct cql_buf body = { 0 };
	int16_t s;

	if (read_request(f, &s, &body) != CQL_OP_STARTUP)
		goto out;
	reply_simple(f, s, CQL_OP_READY);
	if (read_request(f, &s, &body) != CQL_OP_QUERY)
		goto out;
	reply_tag(f, (int16_t)(s + 7), "stray");
	usleep(100000);
out:
	cql_buf_free(&body);
}

static void script_auth_refused(struct fake *f)
{
	struct cql_buf body = { 0 }, b = { 0 };
	int16_t s;

	if (read_request(f, &s, &body) != CQL_OP_STARTUP)
		goto out;
	size_t start = tf_begin(&b, s, CQL_OP_AUTHENTICATE);
	cql_buf_put_string(&b, "PasswordAuthenticator");
	cql_frame_end(&b, start);
	send_buf(f, &b);
	if (read_request(f, &s, &body) != CQL_OP_AUTH_RESPONSE)
		goto out;
	tf_error(&b, s, 0x0100, "Provided username user and/or password are incorrect");
	send_buf(f, &b);
out:
	cql_buf_free(&body);
	cql_buf_free(&b);
}

static void test_unknown_stream_and_refusal(void)
{
	struct fake f;
	struct cql_error err;
	struct cql_buf b = { 0 };
	struct cql_result *r;

	fake_start(&f, script_unknown_stream);
	struct cql_conn *conn = open_conn(&f, &err);
	CHECK(conn != NULL);
	if (conn != NULL) {
		query_frame(&b, "q");
		CHECK_INT(cql_conn_call(conn, &b, cql_now_ms() + 5000, &r, &err), -1);
		CHECK_INT(err.kind, CQL_ERR_CONNECTION);
		CHECK(err.sent);
		cql_conn_unref(&conn);
	}
	fake_stop(&f);

	fake_start(&f, script_auth_refused);
	CHECK(open_conn(&f, &err) == NULL);
	CHECK_INT(err.kind, CQL_ERR_BAD_CREDENTIALS);
	fake_stop(&f);

	/* nobody listening */
	struct cql_conn_settings set = { .host = "127.0.0.1", .port = f.port,
					 .max_frame_size = 1 << 20 };
	CHECK(cql_conn_open(&set, cql_now_ms() + 1000, &err) == NULL);
	CHECK_INT(err.kind, CQL_ERR_CONNECTION);
	cql_buf_free(&b);
}

static int heartbeats_seen;

/* Answers the first heartbeat, then goes silent. */
static void script_heartbeat(struct fake *f)
{
	struct cql_buf body = { 0 }, b = { 0 };
	int16_t s;
	int op;

	if (read_request(f, &s, &body) != CQL_OP_STARTUP)
		goto out;
	reply_simple(f, s, CQL_OP_READY);
	while ((op = read_request(f, &s, &body)) >= 0) {
		if (op != CQL_OP_OPTIONS || ++heartbeats_seen > 1)
			continue;
		size_t start = tf_begin(&b, s, CQL_OP_SUPPORTED);
		cql_buf_put_u16(&b, 0);
		cql_frame_end(&b, start);
		send_buf(f, &b);
	}
out:
	cql_buf_free(&body);
	cql_buf_free(&b);
}

static void test_heartbeat(void)
{
	struct fake f;
	struct cql_error err;
	struct cql_conn_settings set = { .host = "127.0.0.1", .max_frame_size = 1 << 20,
					 .heartbeat_ms = 300, .heartbeat_timeout_ms = 1500 };

	fake_start(&f, script_heartbeat);
	set.port = f.port;
	struct cql_conn *conn = cql_conn_open(&set, cql_now_ms() + 5000, &err);
	CHECK(conn != NULL);
	if (conn != NULL) {
		int64_t start = cql_now_ms();
		while (!cql_conn_is_dead(conn) && cql_now_ms() - start < 10000)
			usleep(50000);
		int64_t took = cql_now_ms() - start;
		CHECK(cql_conn_is_dead(conn));
		/* one answered heartbeat, then one that timed out */
		CHECK(took >= 1500);
		CHECK_INT(heartbeats_seen, 2);
		cql_conn_unref(&conn);
	}
	fake_stop(&f);
}

int main(void)
{
	test_auth_and_order();
	test_late_and_hostile();
	test_unknown_stream_and_refusal();
	test_heartbeat();
	TEST_MAIN_END();
}
