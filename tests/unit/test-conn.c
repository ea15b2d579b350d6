/*
 * Unit tests for src/lib/conn: a real event_base, a conn on the server end
 * of a loopback TCP connection, and the test playing the client on the
 * other end (plain or TLS, with a throwaway certificate made here).
 *
 * Every conn_* call the test makes, including from inside the callbacks,
 * is wrapped in CONN(), so the callbacks can check that the conn never
 * calls them from inside such a call. Timings are only generous bounds.
 */
#include <errno.h>
#include <event2/buffer.h>
#include <event2/event.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "buf.h"
#include "conn.h"

#include "test.h"

static struct event_base *base;
static int listen_fd;
static struct sockaddr_in listen_addr;
static SSL_CTX *server_tls, *client_tls;

static int in_call; /* > 0 while a conn_* call made by the test runs */
#define CONN(call) do { in_call++; call; in_call--; } while (0)

static uint64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static struct event *tick;

/* Runs the loop once: the callbacks of whatever became ready, waiting for
 * something for at most 2 ms. */
static void loop_step(void)
{
	struct timeval tv = { 0, 2000 };
	evtimer_add(tick, &tv);
	event_base_loop(base, EVLOOP_ONCE);
}

static void tick_cb(evutil_socket_t fd, short what, void *arg)
{
}

#define RUN_UNTIL(cond, ms) do { uint64_t _end = now_ms() + (ms); \
	while (!(cond) && now_ms() < _end) loop_step(); } while (0)

static void run_for(unsigned int ms)
{
	uint64_t end = now_ms() + ms;
	while (now_ms() < end)
		loop_step();
}

/* ---- the session side ---- */

struct tsess {
	struct conn *conn;
	int server_fd, client_fd;
	SSL *ssl;               /* the client's TLS, once started */
	struct buf log;         /* L[line] (CRLF), b[line] (bare LF), T (too long), R[raw] */
	int lines, too_long, closed, timeouts;
	enum conn_close_reason reason;
	enum conn_timeout kind;
	uint64_t timeout_at, closed_at;
	bool paused;            /* what the test last told the conn */
	bool paused_at_timeout;
	bool bad_inside_call, bad_after_closed, bad_while_paused;
	size_t reply_len;       /* each line gets a numbered reply this long */
	size_t max_pending_at_line;
	int watch_line;         /* records the output pending at this line */
	size_t pending_at_watch;
	bool keep_after_close;  /* else closed() frees the conn, as sessions do */
	const char *goodbye;    /* written from the timeout callback */
	void (*hook)(struct tsess *t, const char *line, size_t len);
	/* streaming a large reply the way POP3 RETR does */
	size_t stream_left, stream_piece;
	bool stream_done;
	/* raw mode */
	struct buf raw;
	int drained_calls, drained_other_calls;
};

static void t_enter(struct tsess *t)
{
	if (in_call > 0)
		t->bad_inside_call = true;
	if (t->closed > 0)
		t->bad_after_closed = true;
}

static void t_reply(struct tsess *t, int n)
{
	struct buf r;
	buf_init(&r, 0);
	buf_printf(&r, "%07d ", n);
	while (r.len + 2 < t->reply_len)
		buf_append_c(&r, (char)('a' + r.len % 26));
	buf_append_str(&r, "\r\n");
	CONN(conn_write_buf(t->conn, &r));
	buf_deinit(&r);
}

static void t_line(void *ctx, char *line, size_t len, bool bare_lf)
{
	struct tsess *t = ctx;
	t_enter(t);
	if (t->paused)
		t->bad_while_paused = true;
	t->lines++;
	buf_append_str(&t->log, bare_lf ? "b[" : "L[");
	buf_append(&t->log, line, len);
	buf_append_c(&t->log, ']');
	size_t pending = conn_output_pending(t->conn);
	if (pending > t->max_pending_at_line)
		t->max_pending_at_line = pending;
	if (t->lines == t->watch_line)
		t->pending_at_watch = pending;
	if (t->reply_len > 0)
		t_reply(t, t->lines);
	if (t->hook != NULL)
		t->hook(t, line, len);
}

static void t_too_long(void *ctx)
{
	struct tsess *t = ctx;
	t_enter(t);
	t->too_long++;
	buf_append_str(&t->log, "T");
}

/* Raw data up to and including CRLF.CRLF, then back to lines. A tail that
 * may be the start of the terminator stays in the buffer. */
static void t_raw(void *ctx, struct evbuffer *in)
{
	struct tsess *t = ctx;
	t_enter(t);
	struct evbuffer_ptr p = evbuffer_search(in, "\r\n.\r\n", 5, NULL);
	if (p.pos >= 0) {
		size_t n = (size_t)p.pos;
		buf_reserve(&t->raw, n);
		evbuffer_remove(in, t->raw.data + t->raw.len, n);
		t->raw.len += n;
		t->raw.data[t->raw.len] = '\0';
		evbuffer_drain(in, 5);
		buf_printf(&t->log, "R[%s]", t->raw.data);
		buf_reset(&t->raw);
		CONN(conn_set_raw(t->conn, false));
		return;
	}
	size_t avail = evbuffer_get_length(in);
	if (avail > 4) {
		size_t n = avail - 4;
		buf_reserve(&t->raw, n);
		evbuffer_remove(in, t->raw.data + t->raw.len, n);
		t->raw.len += n;
		t->raw.data[t->raw.len] = '\0';
	}
}

static void t_timeout(void *ctx, enum conn_timeout kind)
{
	struct tsess *t = ctx;
	t_enter(t);
	t->timeouts++;
	t->kind = kind;
	t->timeout_at = now_ms();
	t->paused_at_timeout = t->paused;
	if (t->goodbye != NULL)
		CONN(conn_puts(t->conn, t->goodbye));
}

static void t_closed(void *ctx, enum conn_close_reason reason)
{
	struct tsess *t = ctx;
	t_enter(t);
	t->closed++;
	t->reason = reason;
	t->closed_at = now_ms();
	if (!t->keep_after_close)
		conn_free(&t->conn);
}

static const struct conn_callbacks t_callbacks = {
	.line = t_line,
	.line_too_long = t_too_long,
	.raw = t_raw,
	.timeout = t_timeout,
	.closed = t_closed,
};

/* A connected loopback pair; the test's end is non-blocking. Small kernel
 * buffers (0 keeps the default) make "the peer stopped reading" show
 * quickly. */
static void tsess_init(struct tsess *t, int client_rcvbuf, int server_sndbuf, SSL_CTX *tls)
{
	memset(t, 0, sizeof(*t));
	buf_init(&t->log, 0);
	buf_init(&t->raw, 0);
	t->client_fd = socket(AF_INET, SOCK_STREAM, 0);
	if (client_rcvbuf > 0)
		setsockopt(t->client_fd, SOL_SOCKET, SO_RCVBUF, &client_rcvbuf, sizeof(int));
	if (connect(t->client_fd, (struct sockaddr *)&listen_addr, sizeof(listen_addr)) < 0) {
		perror("connect");
		exit(2);
	}
	struct sockaddr_storage peer;
	socklen_t peer_len = sizeof(peer);
	t->server_fd = accept(listen_fd, (struct sockaddr *)&peer, &peer_len);
	if (t->server_fd < 0) {
		perror("accept");
		exit(2);
	}
	if (server_sndbuf > 0)
		setsockopt(t->server_fd, SOL_SOCKET, SO_SNDBUF, &server_sndbuf, sizeof(int));
	fcntl(t->client_fd, F_SETFL, fcntl(t->client_fd, F_GETFL) | O_NONBLOCK);
	CONN(t->conn = conn_create(base, t->server_fd, (struct sockaddr *)&peer, peer_len, tls,
				   &t_callbacks, t));
}

static void tsess_deinit(struct tsess *t)
{
	CHECK(!t->bad_inside_call);
	CHECK(!t->bad_after_closed);
	CHECK(!t->bad_while_paused);
	conn_free(&t->conn);
	CHECK(t->conn == NULL);
	if (t->ssl != NULL)
		SSL_free(t->ssl);
	close(t->client_fd);
	buf_deinit(&t->log);
	buf_deinit(&t->raw);
	/* nothing of the conn may fire any more */
	run_for(5);
}

static void t_pause(struct tsess *t)
{
	t->paused = true;
	CONN(conn_pause(t->conn));
}

static void t_resume(struct tsess *t)
{
	t->paused = false;
	CONN(conn_resume(t->conn));
}

/* ---- the client side ---- */

static void client_send(struct tsess *t, const void *data, size_t len)
{
	const char *p = data;
	uint64_t end = now_ms() + 10000;
	while (len > 0 && now_ms() < end) {
		ssize_t n;
		if (t->ssl != NULL) {
			int r = SSL_write(t->ssl, p, (int)len);
			n = r > 0 ? r : -1;
			if (r <= 0 && SSL_get_error(t->ssl, r) != SSL_ERROR_WANT_WRITE &&
			    SSL_get_error(t->ssl, r) != SSL_ERROR_WANT_READ)
				break;
		} else {
			n = send(t->client_fd, p, len, MSG_NOSIGNAL);
			if (n < 0 && errno != EAGAIN)
				break;
		}
		if (n > 0) {
			p += n;
			len -= (size_t)n;
		} else {
			loop_step();
		}
	}
	CHECK_INT(len, 0);
}

static void client_puts(struct tsess *t, const char *s)
{
	client_send(t, s, strlen(s));
}

/* Reads what is there, at most max octets (0: no limit), appending it to
 * into (may be NULL). Sets *eof when the server has closed. */
static size_t client_read(struct tsess *t, struct buf *into, size_t max, bool *eof)
{
	char chunk[16384];
	size_t total = 0;
	for (;;) {
		size_t want = sizeof(chunk);
		if (max > 0 && max - total < want)
			want = max - total;
		if (want == 0)
			break;
		ssize_t n;
		if (t->ssl != NULL) {
			int r = SSL_read(t->ssl, chunk, (int)want);
			if (r <= 0) {
				int e = SSL_get_error(t->ssl, r);
				if (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE && eof != NULL)
					*eof = true;
				break;
			}
			n = r;
		} else {
			n = recv(t->client_fd, chunk, want, 0);
			if (n == 0 || (n < 0 && errno != EAGAIN)) {
				if (eof != NULL)
					*eof = true;
				break;
			}
			if (n < 0)
				break;
		}
		if (into != NULL)
			buf_append(into, chunk, (size_t)n);
		total += (size_t)n;
	}
	return total;
}

/* Reads until the server closes (true) or ms pass (false). */
static bool client_read_to_eof(struct tsess *t, struct buf *into, unsigned int ms)
{
	bool eof = false;
	uint64_t end = now_ms() + ms;
	while (!eof && now_ms() < end) {
		client_read(t, into, 0, &eof);
		if (!eof)
			loop_step();
	}
	return eof;
}

static void client_tls_start(struct tsess *t)
{
	t->ssl = SSL_new(client_tls);
	SSL_set_fd(t->ssl, t->client_fd);
	SSL_set_connect_state(t->ssl);
	uint64_t end = now_ms() + 10000;
	int r;
	while ((r = SSL_do_handshake(t->ssl)) != 1 && now_ms() < end) {
		int e = SSL_get_error(t->ssl, r);
		if (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE)
			break;
		loop_step();
	}
	CHECK_INT(r, 1);
}

/* Runs the loop until the line count has not changed for quiet_ms and
 * for a good number of loop runs (the process may not run for a while on
 * a busy machine). */
static void settle(struct tsess *t, unsigned int quiet_ms)
{
	uint64_t end = now_ms() + 10000;
	int last = -1, quiet_steps = 0;
	uint64_t since = now_ms();
	while (now_ms() < end) {
		if (t->lines != last) {
			last = t->lines;
			since = now_ms();
			quiet_steps = 0;
		} else if (now_ms() - since >= quiet_ms && quiet_steps >= 25) {
			return;
		}
		loop_step();
		quiet_steps++;
	}
}

static int server_unread(struct tsess *t)
{
	int n = 0;
	ioctl(t->server_fd, FIONREAD, &n);
	return n;
}

/* ---- lines ---- */

/* Feeds text in two writes split at `split` (or a byte at a time when
 * split is SIZE_MAX) and returns the log. */
static char *lines_log(const char *text, size_t split, size_t line_max)
{
	struct tsess t;
	tsess_init(&t, 0, 0, NULL);
	if (line_max > 0)
		CONN(conn_set_line_max(t.conn, line_max));
	size_t len = strlen(text);
	int want = 0;
	for (size_t i = 0; i < len; i++)
		want += text[i] == '\n';
	if (split == SIZE_MAX) {
		for (size_t i = 0; i < len; i++) {
			client_send(&t, text + i, 1);
			loop_step();
		}
	} else {
		client_send(&t, text, split);
		run_for(3);
		client_send(&t, text + split, len - split);
	}
	RUN_UNTIL(t.lines + t.too_long >= want, 3000);
	run_for(5);
	char *log = xstrdup(t.log.data);
	tsess_deinit(&t);
	return log;
}

static void check_splits(const char *text, size_t line_max, const char *expect)
{
	size_t len = strlen(text);
	int bad = 0;
	for (size_t split = 0; split <= len; split++) {
		char *log = lines_log(text, split, line_max);
		if (strcmp(log, expect) != 0) {
			if (bad++ == 0)
				fprintf(stderr, "split %zu: got %s\n   expected %s\n", split, log,
					expect);
		}
		free(log);
	}
	char *log = lines_log(text, SIZE_MAX, line_max);
	CHECK_STR(log, expect);
	free(log);
	CHECK_INT(bad, 0);
}

static void test_lines(void)
{
	/* CRLF and bare LF endings, an empty line of each, and one of a
	 * space and a tab */
	check_splits("USER alice\r\nPASS x y\nNOOP\r\n\r\n\n \t\r\nlast\r\n", 0,
		     "L[USER alice]b[PASS x y]L[NOOP]L[]b[]L[ \t]L[last]");
	/* a NUL and a lone CR inside a line are data */
	struct tsess t;
	tsess_init(&t, 0, 0, NULL);
	client_send(&t, "a\0b\rc\r\n", 7);
	RUN_UNTIL(t.lines == 1, 3000);
	CHECK_INT(t.lines, 1);
	CHECK_MEM(t.log.data, t.log.len, "L[a\0b\rc]", 8);
	tsess_deinit(&t);
}

static void test_line_cap(void)
{
	/* The cap counts the octets before the LF, a CR included. */
	check_splits("1234567\r\n12345678\r\nok\n", 8, "L[1234567]Tb[ok]");
	check_splits("short\r\nxxxxxxxxxxxxxxxxxxxxxxxxx\r\nnext\n", 8, "L[short]Tb[next]");

	/* A partial line over the cap is reported once, and its rest up to
	 * the next LF is dropped however it arrives. */
	struct tsess t;
	tsess_init(&t, 0, 0, NULL);
	CONN(conn_set_line_max(t.conn, 10));
	client_puts(&t, "aaaaaaaaaaaaaaaaaaaa");
	RUN_UNTIL(t.too_long == 1, 3000);
	CHECK_INT(t.too_long, 1);
	client_puts(&t, "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbb");
	run_for(20);
	client_puts(&t, "cccc\r\nok\r\n");
	RUN_UNTIL(t.lines == 1, 3000);
	CHECK_INT(t.too_long, 1);
	CHECK_STR(t.log.data, "TL[ok]");
	tsess_deinit(&t);
}

static void pause_hook(struct tsess *t, const char *line, size_t len)
{
	if (strcmp(line, "first") == 0 || strcmp(line, "WAIT") == 0)
		t_pause(t);
}

static void test_input_max(void)
{
	struct tsess t;
	tsess_init(&t, 0, 0, NULL);
	CONN(conn_set_line_max(t.conn, 64));
	CONN(conn_set_input_max(t.conn, 256));
	t.hook = pause_hook;
	struct buf in, expect;
	buf_init(&in, 0);
	buf_init(&expect, 0);
	buf_append_str(&in, "first\r\n");
	buf_append_str(&expect, "L[first]");
	for (int i = 0; i < 300; i++) {
		buf_printf(&in, "line %03d\r\n", i);
		buf_printf(&expect, "L[line %03d]", i);
	}
	client_send(&t, in.data, in.len);
	RUN_UNTIL(t.lines == 1, 3000);
	run_for(50);
	CHECK_INT(t.lines, 1);
	/* at most input_max octets were read ahead of the paused session */
	CHECK(server_unread(&t) >= (int)in.len - 256);
	t_resume(&t);
	RUN_UNTIL(t.lines == 301, 3000);
	CHECK_STR(t.log.data, expect.data);
	buf_deinit(&in);
	buf_deinit(&expect);
	tsess_deinit(&t);
}

/* Pauses on WAIT; the test resumes it later. */
static void test_pause_resume_order(void)
{
	struct tsess t;
	tsess_init(&t, 0, 0, NULL);
	t.hook = pause_hook;
	/* a pause inside the line callback stops the lines already buffered */
	client_puts(&t, "one\r\nWAIT\r\ntwo\r\nthree\r\n");
	RUN_UNTIL(t.lines == 2, 3000);
	run_for(50);
	CHECK_STR(t.log.data, "L[one]L[WAIT]");
	/* more input while paused is not delivered either */
	client_puts(&t, "four\r\nWAIT\r\nfive\r\n");
	run_for(50);
	CHECK_INT(t.lines, 2);
	/* a pause and resume by the session outside any callback */
	t_resume(&t);
	CHECK_INT(t.lines, 2); /* not from inside conn_resume() */
	RUN_UNTIL(t.lines == 6, 3000);
	run_for(30);
	CHECK_STR(t.log.data, "L[one]L[WAIT]L[two]L[three]L[four]L[WAIT]");
	t_resume(&t);
	t_pause(&t);
	t_resume(&t);
	t_resume(&t); /* resuming twice is harmless */
	RUN_UNTIL(t.lines == 7, 3000);
	CHECK_STR(t.log.data, "L[one]L[WAIT]L[two]L[three]L[four]L[WAIT]L[five]");
	tsess_deinit(&t);
}

static void raw_hook(struct tsess *t, const char *line, size_t len)
{
	if (strcmp(line, "DATA") == 0)
		CONN(conn_set_raw(t->conn, true));
}

static void test_raw(void)
{
	const char *text = "MAIL\r\nDATA\r\nhello\r\n..stuffed\r\nmore\n\r\n.\r\nQUIT\r\n";
	const char *expect = "L[MAIL]L[DATA]R[hello\r\n..stuffed\r\nmore\n]L[QUIT]";
	size_t len = strlen(text);
	int bad = 0;
	for (size_t split = 0; split <= len; split++) {
		struct tsess t;
		tsess_init(&t, 0, 0, NULL);
		t.hook = raw_hook;
		client_send(&t, text, split);
		run_for(3);
		client_send(&t, text + split, len - split);
		RUN_UNTIL(t.lines == 3, 3000);
		if (strcmp(t.log.data, expect) != 0 && bad++ == 0)
			fprintf(stderr, "raw split %zu: %s\n", split, t.log.data);
		tsess_deinit(&t);
	}
	CHECK_INT(bad, 0);
}

/* ---- closing ---- */

static void close_hook(struct tsess *t, const char *line, size_t len)
{
	if (strcmp(line, "QUIT") == 0) {
		CONN(conn_puts(t->conn, "BYE\r\n"));
		CONN(conn_close(t->conn));
		CHECK(conn_is_closing(t->conn));
	}
}

static void test_closed_once(void)
{
	/* conn_close() with nothing queued: closed(LOCAL) from the loop */
	struct tsess t;
	tsess_init(&t, 0, 0, NULL);
	CONN(conn_close(t.conn));
	CONN(conn_close(t.conn));
	CHECK_INT(t.closed, 0);
	RUN_UNTIL(t.closed > 0, 3000);
	run_for(30);
	CHECK_INT(t.closed, 1);
	CHECK_INT(t.reason, CONN_CLOSE_LOCAL);
	CHECK(client_read_to_eof(&t, NULL, 3000));
	tsess_deinit(&t);

	/* from inside a line callback: the reply is flushed first, then the
	 * lines pipelined after QUIT are never delivered */
	tsess_init(&t, 0, 0, NULL);
	t.hook = close_hook;
	client_puts(&t, "NOOP\r\nQUIT\r\nNOOP\r\n");
	struct buf got;
	buf_init(&got, 0);
	CHECK(client_read_to_eof(&t, &got, 3000));
	CHECK_STR(got.data, "BYE\r\n");
	RUN_UNTIL(t.closed > 0, 3000);
	run_for(30);
	CHECK_INT(t.closed, 1);
	CHECK_INT(t.reason, CONN_CLOSE_LOCAL);
	CHECK_STR(t.log.data, "L[NOOP]L[QUIT]");
	buf_deinit(&got);
	tsess_deinit(&t);

	/* the peer closes: closed(EOF), once, and nothing after it */
	tsess_init(&t, 0, 0, NULL);
	t.keep_after_close = true;
	client_puts(&t, "NOOP\r\n");
	RUN_UNTIL(t.lines == 1, 3000);
	shutdown(t.client_fd, SHUT_RDWR);
	RUN_UNTIL(t.closed > 0, 3000);
	run_for(30);
	CHECK_INT(t.closed, 1);
	CHECK_INT(t.reason, CONN_CLOSE_EOF);
	/* the session writing after closed() is ignored, not a crash */
	CONN(conn_puts(t.conn, "late\r\n"));
	CONN(conn_close(t.conn));
	run_for(30);
	CHECK_INT(t.closed, 1);
	tsess_deinit(&t);

	/* an abrupt reset while output is queued: closed() once */
	tsess_init(&t, 4096, 4096, NULL);
	t.reply_len = 60000;
	client_puts(&t, "a\r\nb\r\n");
	RUN_UNTIL(t.lines == 2, 3000);
	struct linger lg = { 1, 0 };
	setsockopt(t.client_fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
	close(t.client_fd);
	t.client_fd = socket(AF_INET, SOCK_STREAM, 0); /* for tsess_deinit */
	RUN_UNTIL(t.closed > 0, 3000);
	run_for(30);
	CHECK_INT(t.closed, 1);
	CHECK(t.reason == CONN_CLOSE_ERROR || t.reason == CONN_CLOSE_EOF);
	tsess_deinit(&t);
}

/* ---- the output cap ---- */

/* Reads replies until n have arrived in order; returns false on a gap. */
static bool replies_in_order(const struct buf *got, size_t reply_len, int n)
{
	if (got->len != (size_t)n * reply_len)
		return false;
	for (int i = 0; i < n; i++) {
		char want[16];
		snprintf(want, sizeof(want), "%07d ", i + 1);
		if (memcmp(got->data + (size_t)i * reply_len, want, 8) != 0)
			return false;
	}
	return true;
}

static void cap_scenario(size_t cap, size_t reply_len, SSL_CTX *tls, bool starttls)
{
	struct tsess t;
	tsess_init(&t, 8192, 8192, tls);
	if (tls != NULL)
		client_tls_start(&t);
	if (starttls) {
		client_puts(&t, "STARTTLS\r\n");
		RUN_UNTIL(t.lines == 1, 3000);
		CONN(CHECK_INT(conn_start_tls(t.conn, server_tls), 0));
		client_tls_start(&t);
		t.lines = 0;
	}
	if (cap > 0)
		CONN(conn_set_output_max(t.conn, cap));
	else
		cap = 256 * 1024;
	t.reply_len = reply_len;
	struct buf in;
	buf_init(&in, 0);
	const int first = 1000, second = 500;
	for (int i = 0; i < first; i++)
		buf_append_str(&in, "x\r\n");
	client_send(&t, in.data, in.len);
	settle(&t, 150);
	/* no command was processed while over the cap, and it stopped
	 * right after crossing it */
	CHECK(t.lines < first);
	CHECK(t.lines > 0);
	CHECK(t.max_pending_at_line <= cap);
	/* stopped above the cap; the kernel may have taken a little since,
	 * but input waits until half the cap */
	size_t pending = conn_output_pending(t.conn);
	CHECK(pending > cap / 2);
	CHECK(pending <= cap + reply_len);
	/* the kernel holds little, so the lines processed are about the cap */
	CHECK((size_t)t.lines * reply_len <= cap + reply_len + 1024 * 1024);
	/* nothing more is read from the socket */
	buf_reset(&in);
	for (int i = 0; i < second; i++)
		buf_append_str(&in, "y\r\n");
	client_send(&t, in.data, in.len);
	run_for(100);
	if (tls == NULL && !starttls)
		CHECK(server_unread(&t) >= (int)in.len);
	int stalled = t.lines;
	CHECK_INT(conn_output_pending(t.conn), pending);
	t.watch_line = stalled + 1;

	/* the peer reads a little: input resumes only once the output is at
	 * most half the cap */
	struct buf got;
	buf_init(&got, 0);
	uint64_t end = now_ms() + 20000;
	while (t.lines == stalled && now_ms() < end) {
		client_read(&t, &got, 4096, NULL);
		loop_step();
	}
	CHECK(t.lines > stalled);
	CHECK(t.pending_at_watch <= cap / 2);
	/* and everything is processed, in order, as the peer reads on */
	end = now_ms() + 20000;
	while ((t.lines < first + second || got.len < (size_t)(first + second) * reply_len) &&
	       now_ms() < end) {
		client_read(&t, &got, 0, NULL);
		loop_step();
	}
	CHECK_INT(t.lines, first + second);
	CHECK(replies_in_order(&got, reply_len, first + second));
	CHECK(t.max_pending_at_line <= cap);
	CHECK_INT(t.timeouts, 0);
	buf_deinit(&got);
	buf_deinit(&in);
	tsess_deinit(&t);
}

static void test_output_cap(void)
{
	cap_scenario(64 * 1024, 4096, NULL, false);
	cap_scenario(0, 16384, NULL, false);  /* the default, 256 KiB */
	cap_scenario(64 * 1024, 4096, server_tls, false);
	cap_scenario(64 * 1024, 4096, NULL, true);
	/* one reply larger than the cap is fine: it goes out whole */
	struct tsess t;
	tsess_init(&t, 0, 0, NULL);
	CONN(conn_set_output_max(t.conn, 1024));
	t.reply_len = 100000;
	client_puts(&t, "a\r\nb\r\n");
	struct buf got;
	buf_init(&got, 0);
	uint64_t end = now_ms() + 10000;
	while (got.len < 200000 && now_ms() < end) {
		client_read(&t, &got, 0, NULL);
		loop_step();
	}
	CHECK_INT(t.lines, 2);
	CHECK(replies_in_order(&got, 100000, 2));
	buf_deinit(&got);
	tsess_deinit(&t);
}

/* The cap and the session's pause are separate: neither lifts the other. */
static void test_cap_and_pause(void)
{
	struct tsess t;
	tsess_init(&t, 8192, 8192, NULL);
	CONN(conn_set_output_max(t.conn, 32 * 1024));
	t.reply_len = 4096;
	for (int i = 0; i < 200; i++)
		client_puts(&t, "x\r\n");
	settle(&t, 100);
	int stalled = t.lines;
	CHECK(stalled < 200);
	t_pause(&t);
	/* the peer takes everything: the pause still holds */
	struct buf got;
	buf_init(&got, 0);
	uint64_t end = now_ms() + 5000;
	while (got.len < (size_t)stalled * 4096 && now_ms() < end) {
		client_read(&t, &got, 0, NULL);
		loop_step();
	}
	CHECK_INT(got.len, (size_t)stalled * 4096);
	run_for(50);
	CHECK_INT(t.lines, stalled);
	t_resume(&t);
	settle(&t, 50);
	CHECK(t.lines > stalled);
	/* now the other way: paused, then the output grows past the cap
	 * (a job completing), then resumed: the cap still holds */
	t.reply_len = 0;
	while (t.lines < 200 && now_ms() < end + 5000) {
		client_read(&t, NULL, 0, NULL);
		loop_step();
	}
	CHECK_INT(t.lines, 200);
	t_pause(&t);
	t.reply_len = 4096;
	for (int i = 0; i < 12; i++)
		t_reply(&t, 1000 + i);
	client_puts(&t, "z\r\n");
	run_for(50);
	t_resume(&t);
	run_for(100);
	CHECK_INT(t.lines, 200);
	buf_reset(&got);
	RUN_UNTIL((client_read(&t, &got, 0, NULL), t.lines == 201), 5000);
	CHECK_INT(t.lines, 201);
	buf_deinit(&got);
	tsess_deinit(&t);
}

/* ---- the idle timeout in both directions ---- */

static void stream_more(void *ctx)
{
	struct tsess *t = ctx;
	t_enter(t);
	t->drained_calls++;
	if (t->stream_left == 0) {
		t->stream_done = true;
		t_resume(t);
		return;
	}
	size_t n = t->stream_left < t->stream_piece ? t->stream_left : t->stream_piece;
	struct buf piece;
	buf_init(&piece, 0);
	buf_reserve(&piece, n);
	memset(piece.data, 's', n);
	piece.len = n;
	t->stream_left -= n;
	CONN(conn_write_buf(t->conn, &piece));
	buf_deinit(&piece);
	CONN(conn_when_drained(t->conn, 32 * 1024, stream_more));
}

/* BIG: pauses and streams stream_left octets in pieces, as RETR does. */
static void stream_hook(struct tsess *t, const char *line, size_t len)
{
	if (strcmp(line, "BIG") == 0) {
		t_pause(t);
		t->stream_piece = 128 * 1024;
		CONN(conn_when_drained(t->conn, 32 * 1024, stream_more));
	}
}

/* A peer that stops reading a streamed reply gets timeout(IDLE) while the
 * session is paused, then closed(TIMEOUT) after a short goodbye flush. */
static void stalled_stream(SSL_CTX *tls, bool starttls)
{
	struct tsess t;
	tsess_init(&t, 8192, 8192, tls);
	CONN(conn_set_idle_timeout(t.conn, 300));
	t.hook = stream_hook;
	t.goodbye = "-ERR idle\r\n";
	if (tls != NULL)
		client_tls_start(&t);
	if (starttls) {
		client_puts(&t, "STARTTLS\r\n");
		RUN_UNTIL(t.lines == 1, 3000);
		CONN(CHECK_INT(conn_start_tls(t.conn, server_tls), 0));
		client_tls_start(&t);
	}
	t.stream_left = 8 * 1024 * 1024;
	uint64_t start = now_ms();
	client_puts(&t, "BIG\r\n");
	RUN_UNTIL(t.closed > 0, 10000);
	CHECK_INT(t.timeouts, 1);
	CHECK_INT(t.kind, CONN_TIMEOUT_IDLE);
	CHECK(t.paused_at_timeout);
	CHECK(!t.stream_done);
	CHECK(t.timeout_at - start >= 290);
	CHECK(t.timeout_at - start < 5000);
	CHECK_INT(t.closed, 1);
	CHECK_INT(t.reason, CONN_CLOSE_TIMEOUT);
	/* the goodbye flush waited, but not for long */
	CHECK(t.closed_at - t.timeout_at >= 250);
	CHECK(t.closed_at - t.timeout_at < 3000);
	tsess_deinit(&t);
}

static void test_stalled_reader(void)
{
	stalled_stream(NULL, false);
	stalled_stream(server_tls, false);
	stalled_stream(NULL, true);

	/* stopped by the output cap: timeout(IDLE) too */
	struct tsess t;
	tsess_init(&t, 8192, 8192, NULL);
	CONN(conn_set_idle_timeout(t.conn, 300));
	CONN(conn_set_output_max(t.conn, 32 * 1024));
	t.reply_len = 4096;
	uint64_t start = now_ms();
	for (int i = 0; i < 500; i++)
		client_puts(&t, "x\r\n");
	RUN_UNTIL(t.closed > 0, 10000);
	CHECK(t.lines < 500);
	CHECK_INT(t.timeouts, 1);
	CHECK_INT(t.kind, CONN_TIMEOUT_IDLE);
	CHECK(!t.paused_at_timeout);
	CHECK(t.timeout_at - start >= 290);
	CHECK_INT(t.reason, CONN_CLOSE_TIMEOUT);
	tsess_deinit(&t);

	/* a slow but steady reader is never timed out, then the input clock
	 * takes over once the reply is done */
	tsess_init(&t, 8192, 8192, NULL);
	CONN(conn_set_idle_timeout(t.conn, 600));
	t.hook = stream_hook;
	t.goodbye = "BYE\r\n";
	t.stream_left = 1024 * 1024;
	client_puts(&t, "BIG\r\n");
	struct buf got;
	buf_init(&got, 0);
	uint64_t end = now_ms() + 20000;
	while (!t.stream_done && t.closed == 0 && now_ms() < end) {
		client_read(&t, &got, 16384, NULL);
		run_for(20);
	}
	CHECK(t.stream_done);
	CHECK_INT(t.timeouts, 0);
	uint64_t done = now_ms();
	bool eof = client_read_to_eof(&t, &got, 5000);
	CHECK(eof);
	CHECK_INT(t.timeouts, 1);
	CHECK_INT(t.kind, CONN_TIMEOUT_IDLE);
	CHECK(t.timeout_at - done >= 500);
	CHECK_INT(t.reason, CONN_CLOSE_TIMEOUT);
	CHECK_INT(got.len, 1024 * 1024 + 5);
	CHECK(got.len >= 5 && memcmp(got.data + got.len - 5, "BYE\r\n", 5) == 0);
	buf_deinit(&got);
	tsess_deinit(&t);
}

static void test_waiting_for_server(void)
{
	/* paused with nothing pending: the server's wait costs the peer
	 * nothing, and the clock restarts at the resume */
	struct tsess t;
	tsess_init(&t, 0, 0, NULL);
	CONN(conn_set_idle_timeout(t.conn, 200));
	t_pause(&t);
	run_for(700);
	CHECK_INT(t.timeouts, 0);
	uint64_t resumed = now_ms();
	t_resume(&t);
	RUN_UNTIL(t.timeouts > 0, 5000);
	CHECK_INT(t.timeouts, 1);
	CHECK_INT(t.kind, CONN_TIMEOUT_IDLE);
	CHECK(t.timeout_at - resumed >= 190);
	CHECK(t.timeout_at - resumed < 3000);
	RUN_UNTIL(t.closed > 0, 3000);
	CHECK_INT(t.reason, CONN_CLOSE_TIMEOUT);
	tsess_deinit(&t);

	/* input keeps an open conn alive; silence ends it, and a reading
	 * peer gets the goodbye before the close */
	tsess_init(&t, 0, 0, NULL);
	CONN(conn_set_idle_timeout(t.conn, 500));
	t.goodbye = "BYE\r\n";
	for (int i = 0; i < 8; i++) {
		client_puts(&t, "NOOP\r\n");
		run_for(100);
	}
	CHECK_INT(t.lines, 8);
	CHECK_INT(t.timeouts, 0);
	struct buf got;
	buf_init(&got, 0);
	CHECK(client_read_to_eof(&t, &got, 5000));
	CHECK_STR(got.data, "BYE\r\n");
	CHECK_INT(t.timeouts, 1);
	CHECK_INT(t.reason, CONN_CLOSE_TIMEOUT);
	buf_deinit(&got);
	tsess_deinit(&t);

	/* 0 disables it */
	tsess_init(&t, 0, 0, NULL);
	CONN(conn_set_idle_timeout(t.conn, 100));
	CONN(conn_set_idle_timeout(t.conn, 0));
	run_for(300);
	CHECK_INT(t.timeouts, 0);
	tsess_deinit(&t);
}

/* ---- conn_when_drained ---- */

static void drained_a(void *ctx)
{
	struct tsess *t = ctx;
	t_enter(t);
	t->drained_other_calls++;
}

static void drained_b(void *ctx)
{
	struct tsess *t = ctx;
	t_enter(t);
	t->drained_calls++;
}

static void test_when_drained(void)
{
	struct tsess t;
	tsess_init(&t, 8192, 8192, NULL);
	/* nothing pending: still from the loop, once */
	CONN(conn_when_drained(t.conn, 0, drained_b));
	CHECK_INT(t.drained_calls, 0);
	run_for(20);
	CHECK_INT(t.drained_calls, 1);
	run_for(20);
	CHECK_INT(t.drained_calls, 1);

	/* over the mark: only once the peer has read enough; a new request
	 * replaces the old one */
	t.reply_len = 256 * 1024;
	t_reply(&t, 1);
	CONN(conn_when_drained(t.conn, 16 * 1024, drained_a));
	CONN(conn_when_drained(t.conn, 16 * 1024, drained_b));
	run_for(50);
	CHECK_INT(t.drained_calls, 1);
	struct buf got;
	buf_init(&got, 0);
	uint64_t end = now_ms() + 5000;
	while (t.drained_calls == 1 && now_ms() < end) {
		client_read(&t, &got, 4096, NULL);
		loop_step();
	}
	CHECK_INT(t.drained_calls, 2);
	CHECK_INT(t.drained_other_calls, 0);
	CHECK(conn_output_pending(t.conn) <= 16 * 1024);

	/* not called once closing */
	t_reply(&t, 2);
	CONN(conn_when_drained(t.conn, 0, drained_b));
	CONN(conn_close(t.conn));
	CHECK(client_read_to_eof(&t, &got, 5000));
	RUN_UNTIL(t.closed > 0, 3000);
	CHECK_INT(t.drained_calls, 2);
	CHECK_INT(t.reason, CONN_CLOSE_LOCAL);
	CHECK(replies_in_order(&got, 256 * 1024, 2));
	buf_deinit(&got);
	tsess_deinit(&t);
}

/* ---- TLS ---- */

static void starttls_hook(struct tsess *t, const char *line, size_t len)
{
	if (strcmp(line, "STARTTLS") == 0) {
		CONN(conn_puts(t->conn, "GO\r\n"));
		int r;
		CONN(r = conn_start_tls(t->conn, server_tls));
		CHECK_INT(r, 0);
		CHECK(conn_is_tls(t->conn));
	} else if (strcmp(line, "HELLO") == 0) {
		CONN(conn_puts(t->conn, "WORLD\r\n"));
	}
}

static void test_starttls(void)
{
	struct tsess t;
	tsess_init(&t, 0, 0, NULL);
	t.hook = starttls_hook;
	CHECK(!conn_is_tls(t.conn));
	char desc[128];
	CHECK(conn_tls_description(t.conn, desc, sizeof(desc)) == NULL);
	/* plaintext pipelined behind STARTTLS is discarded, never executed */
	client_puts(&t, "STARTTLS\r\nEVIL\r\nEVIL2\r\n");
	struct buf got;
	buf_init(&got, 0);
	RUN_UNTIL((client_read(&t, &got, 4, NULL), got.len == 4), 3000);
	CHECK_STR(got.data, "GO\r\n");
	client_tls_start(&t);
	CHECK(conn_tls_description(t.conn, desc, sizeof(desc)) != NULL);
	CHECK(strstr(desc, "TLS") != NULL);
	client_puts(&t, "HELLO\r\n");
	buf_reset(&got);
	RUN_UNTIL((client_read(&t, &got, 0, NULL), got.len == 7), 3000);
	CHECK_STR(got.data, "WORLD\r\n");
	CHECK_STR(t.log.data, "L[STARTTLS]L[HELLO]");
	CONN(conn_close(t.conn));
	CHECK(client_read_to_eof(&t, NULL, 3000));
	RUN_UNTIL(t.closed > 0, 3000);
	CHECK_INT(t.reason, CONN_CLOSE_LOCAL);
	buf_deinit(&got);
	tsess_deinit(&t);

	/* implicit TLS */
	tsess_init(&t, 0, 0, server_tls);
	t.hook = starttls_hook;
	CHECK(conn_is_tls(t.conn));
	client_tls_start(&t);
	client_puts(&t, "HELLO\r\n");
	buf_init(&got, 0);
	RUN_UNTIL((client_read(&t, &got, 0, NULL), got.len == 7), 3000);
	CHECK_STR(got.data, "WORLD\r\n");
	buf_deinit(&got);
	tsess_deinit(&t);
}

/* A throwaway self-signed P-256 certificate for CN=localhost. */
static void make_tls_contexts(void)
{
	EVP_PKEY *key = EVP_EC_gen("P-256");
	X509 *x = X509_new();
	if (key == NULL || x == NULL) {
		fprintf(stderr, "cannot make a key\n");
		exit(2);
	}
	X509_set_version(x, 2);
	ASN1_INTEGER_set(X509_get_serialNumber(x), 1);
	X509_gmtime_adj(X509_getm_notBefore(x), -60);
	X509_gmtime_adj(X509_getm_notAfter(x), 3600);
	X509_set_pubkey(x, key);
	X509_NAME *name = X509_get_subject_name(x);
	X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)"localhost",
				   -1, -1, 0);
	X509_set_issuer_name(x, name);
	if (X509_sign(x, key, EVP_sha256()) == 0) {
		fprintf(stderr, "cannot sign the certificate\n");
		exit(2);
	}
	server_tls = SSL_CTX_new(TLS_server_method());
	if (SSL_CTX_use_certificate(server_tls, x) != 1 ||
	    SSL_CTX_use_PrivateKey(server_tls, key) != 1) {
		fprintf(stderr, "cannot use the certificate\n");
		exit(2);
	}
	client_tls = SSL_CTX_new(TLS_client_method());
	SSL_CTX_set_verify(client_tls, SSL_VERIFY_NONE, NULL);
	X509_free(x);
	EVP_PKEY_free(key);
}

int main(void)
{
	signal(SIGPIPE, SIG_IGN);
	base = event_base_new();
	tick = evtimer_new(base, tick_cb, NULL);
	listen_fd = socket(AF_INET, SOCK_STREAM, 0);
	memset(&listen_addr, 0, sizeof(listen_addr));
	listen_addr.sin_family = AF_INET;
	listen_addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	socklen_t alen = sizeof(listen_addr);
	if (bind(listen_fd, (struct sockaddr *)&listen_addr, sizeof(listen_addr)) < 0 ||
	    listen(listen_fd, 16) < 0 ||
	    getsockname(listen_fd, (struct sockaddr *)&listen_addr, &alen) < 0) {
		perror("listen");
		return 2;
	}
	make_tls_contexts();

	test_lines();
	test_line_cap();
	test_input_max();
	test_pause_resume_order();
	test_raw();
	test_closed_once();
	test_output_cap();
	test_cap_and_pause();
	test_when_drained();
	test_stalled_reader();
	test_waiting_for_server();
	test_starttls();

	SSL_CTX_free(server_tls);
	SSL_CTX_free(client_tls);
	close(listen_fd);
	event_free(tick);
	event_base_free(base);
	TEST_MAIN_END();
}
