/*
 * conn: libevent bufferevents (socket, or OpenSSL filter over the socket
 * after STARTTLS) with line framing, caps, pauses and deferred callbacks,
 * and a bound on what one peer can cost: input read ahead is capped
 * (input_max), output waiting for the peer is capped (output_max: no
 * command is processed and nothing is read while more is unsent), and a
 * peer that neither sends nor takes what it is sent is timed out.
 *
 * Invariants: input is only parsed by process_input(), which stops as soon
 * as the session pauses, the output cap is reached, the session switches
 * mode, starts TLS or closes; closed() is only ever delivered by the
 * deferred event; after closed() the bufferevent is disabled and no
 * callback can reach the session.
 *
 * Two independent flags stop input: `paused` (the session's, e.g. a store
 * job is running) and `output_stopped` (the output cap). Each is cleared
 * only by its own cause: conn_resume() clears the first, the peer draining
 * the output below half the cap clears the second; input flows only when
 * both are clear.
 *
 * Output progress is observed on the "wire" buffer, the one whose draining
 * means bytes reached the kernel: the socket bufferevent's output (which is
 * the underlying one of the TLS filter after STARTTLS; the filter's own
 * output drains into it at once and says nothing about the peer), or the
 * OpenSSL socket bufferevent's output for implicit TLS, drained as SSL_write
 * sends it. An evbuffer callback on it stamps progress and wakes whoever
 * waits for a drain (conn_when_drained, the output cap, a closing flush),
 * so nothing is polled.
 *
 * The idle clock, one timer: while output is pending, the peer must take
 * some of it within the idle timeout; while input is read, the peer must
 * send some within it. Neither runs while the session has paused the conn
 * with nothing pending (waiting for the server is not the peer's fault);
 * each restarts when its wait begins.
 */
#include "conn.h"

#include <arpa/inet.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"
#include "log.h"

#define CONN_INPUT_HIGH_WATER (256 * 1024)
#define CONN_OUTPUT_MAX (256 * 1024)
#define CONN_TIMEOUT_GOODBYE_MS 5000  /* to flush the goodbye after a timeout */
#define CONN_CLOSE_FLUSH_MS 10000     /* to flush the last words after conn_close() */

struct conn {
	struct event_base *base;
	struct bufferevent *bev;
	const struct conn_callbacks *cb;
	void *ctx;
	struct event *deferred;       /* closed(), or input after a resume */
	struct event *progress_ev;    /* output went out: drain, cap, flush checks */
	struct event *idle_timer;     /* the idle clock; the flush deadline once closing */
	struct event *command_timer;  /* line / raw data deadline */
	struct event *session_timer;  /* session deadline */
	struct evbuffer *wire;        /* see the top of the file */
	struct evbuffer_cb_entry *wire_cb;
	void (*drain_fn)(void *ctx);
	size_t drain_low;
	struct buf line;
	size_t line_max, input_max, output_max;
	unsigned int idle_timeout_ms;
	unsigned int command_timeout_ms, min_rate;
	uint64_t raw_start_ms, raw_bytes;   /* raw mode progress, for min_rate */
	uint64_t last_input_ms;   /* input arrived, or the wait for it began */
	uint64_t last_output_ms;  /* output reached the kernel, or began to wait */
	uint64_t close_deadline_ms;  /* closing: give up flushing after this */
	char peer_ip[INET6_ADDRSTRLEN];
	struct net_addr peer_addr;
	bool session_expired;  /* the session deadline passed while paused */
	bool paused, output_stopped;
	bool raw, tls, closing, closed_sent, discarding_line;
	bool close_pending;   /* deliver closed() from the deferred event */
	enum conn_close_reason close_reason;
	enum conn_close_reason flush_reason;  /* closing: the reason once flushed */
};

static void conn_read_cb(struct bufferevent *bev, void *arg);
static void conn_event_cb(struct bufferevent *bev, short what, void *arg);

static struct timeval ms_to_tv(uint64_t ms)
{
	struct timeval tv = { (time_t)(ms / 1000), (suseconds_t)(ms % 1000) * 1000 };
	return tv;
}

static void schedule(struct conn *conn)
{
	event_active(conn->deferred, EV_TIMEOUT, 0);
}

static bool reading(const struct conn *conn)
{
	return !conn->paused && !conn->output_stopped && !conn->closing;
}

/* Makes the bufferevent read exactly when input is wanted. */
static void update_read(struct conn *conn)
{
	if (conn->closing)
		return;
	if (reading(conn))
		bufferevent_enable(conn->bev, EV_READ);
	else
		bufferevent_disable(conn->bev, EV_READ);
}

/* Makes sure the idle timer will look at the clocks no later than one idle
 * timeout from now, which is the earliest a clock starting now can expire;
 * an armed timer is never later than that (see idle_timer_cb). */
static void idle_arm(struct conn *conn)
{
	if (conn->idle_timeout_ms == 0 || conn->closing ||
	    evtimer_pending(conn->idle_timer, NULL))
		return;
	struct timeval tv = ms_to_tv(conn->idle_timeout_ms);
	evtimer_add(conn->idle_timer, &tv);
}

static void finish(struct conn *conn, enum conn_close_reason reason)
{
	if (conn->close_pending || conn->closed_sent)
		return;
	conn->close_pending = true;
	conn->close_reason = reason;
	conn->closing = true;
	conn->drain_fn = NULL;
	evtimer_del(conn->command_timer);
	evtimer_del(conn->session_timer);
	evtimer_del(conn->idle_timer);
	bufferevent_disable(conn->bev, EV_READ | EV_WRITE);
	schedule(conn);
}

/* Sends the TLS close_notify alert, so clients see a clean end of the
 * session rather than a truncation. Best effort: the socket is
 * non-blocking and the alert is a few dozen bytes. */
static void tls_shutdown(struct conn *conn)
{
	SSL *ssl = bufferevent_openssl_get_ssl(conn->bev);
	if (ssl == NULL || !SSL_is_init_finished(ssl))
		return;
	SSL_shutdown(ssl);
	struct bufferevent *under = bufferevent_get_underlying(conn->bev);
	if (under != NULL) {
		struct evbuffer *out = bufferevent_get_output(under);
		/* A socket bufferevent freezes the start of its output buffer
		 * outside its own write callback; lift that for this one write. */
		evbuffer_unfreeze(out, 1);
		int fd = bufferevent_getfd(under);
		while (fd >= 0 && evbuffer_get_length(out) > 0 && evbuffer_write(out, fd) > 0)
			;
		evbuffer_freeze(out, 1);
	}
}

/* Closing: finishes once everything queued has reached the kernel, or
 * with CONN_CLOSE_TIMEOUT at the flush deadline, so that a peer that reads
 * nothing (or never finishes its TLS handshake) cannot hold the
 * connection open. Called when closing starts, on output progress and by
 * the idle timer, which holds the deadline meanwhile. */
static void try_finish_close(struct conn *conn)
{
	if (conn->close_pending || conn->closed_sent)
		return;
	if (conn_output_pending(conn) == 0) {
		if (conn->tls && conn->flush_reason == CONN_CLOSE_LOCAL)
			tls_shutdown(conn);
		finish(conn, conn->flush_reason);
		return;
	}
	uint64_t now = clock_monotonic_ms();
	if (now >= conn->close_deadline_ms) {
		finish(conn, CONN_CLOSE_TIMEOUT);
		return;
	}
	struct timeval tv = ms_to_tv(conn->close_deadline_ms - now);
	evtimer_add(conn->idle_timer, &tv);
}

/* Stops reading and flushes for at most flush_ms (never extending an
 * earlier deadline); reason is what closed() says if the flush completes. */
static void start_closing(struct conn *conn, enum conn_close_reason reason, uint64_t flush_ms)
{
	uint64_t deadline = clock_monotonic_ms() + flush_ms;
	if (!conn->closing || deadline < conn->close_deadline_ms)
		conn->close_deadline_ms = deadline;
	conn->closing = true;
	conn->flush_reason = reason;
	conn->drain_fn = NULL;
	evtimer_del(conn->command_timer);
	evtimer_del(conn->session_timer);
	evtimer_del(conn->idle_timer);
	bufferevent_disable(conn->bev, EV_READ);
	bufferevent_enable(conn->bev, EV_WRITE);
	try_finish_close(conn);
}

/* Called after input processing: a partial line starts (or keeps) the
 * command clock; a completed line restarts it for the next one. */
static void update_command_timer(struct conn *conn, bool line_done)
{
	if (conn->command_timeout_ms == 0 || conn->raw)
		return;
	struct evbuffer *in = bufferevent_get_input(conn->bev);
	bool partial = evbuffer_get_length(in) > 0 || conn->discarding_line;
	if (!reading(conn) || !partial) {
		evtimer_del(conn->command_timer);
		return;
	}
	if (line_done || !evtimer_pending(conn->command_timer, NULL)) {
		struct timeval tv = ms_to_tv(conn->command_timeout_ms);
		evtimer_add(conn->command_timer, &tv);
	}
}

/* The output cap: true when input must wait for the peer to take output.
 * Once set, only output progress (below half the cap) clears it. */
static bool output_capped(struct conn *conn)
{
	if (conn->output_stopped)
		return true;
	if (conn_output_pending(conn) <= conn->output_max)
		return false;
	conn->output_stopped = true;
	update_read(conn);
	return true;
}

static void process_input(struct conn *conn)
{
	struct evbuffer *in = bufferevent_get_input(conn->bev);
	bool line_done = false;
	while (!conn->paused && !conn->closing && evbuffer_get_length(in) > 0) {
		if (output_capped(conn))
			break;
		if (conn->raw) {
			size_t before = evbuffer_get_length(in);
			conn->cb->raw(conn->ctx, in);
			size_t after = evbuffer_get_length(in);
			if (after < before)
				conn->raw_bytes += before - after;
			if (after == before)
				break; /* wants more input */
			continue;
		}
		size_t eol_len = 0;
		struct evbuffer_ptr p = evbuffer_search_eol(in, NULL, &eol_len, EVBUFFER_EOL_LF);
		if (p.pos < 0) {
			size_t avail = evbuffer_get_length(in);
			if (avail > conn->line_max) {
				evbuffer_drain(in, avail);
				if (!conn->discarding_line) {
					conn->discarding_line = true;
					conn->cb->line_too_long(conn->ctx);
				}
			}
			break;
		}
		size_t len = (size_t)p.pos;
		line_done = true;
		if (conn->discarding_line) {
			evbuffer_drain(in, len + eol_len);
			conn->discarding_line = false;
			continue;
		}
		if (len > conn->line_max) {
			evbuffer_drain(in, len + eol_len);
			conn->cb->line_too_long(conn->ctx);
			continue;
		}
		buf_reset(&conn->line);
		if (buf_reserve(&conn->line, len) < 0)
			panic("conn: line buffer");
		evbuffer_remove(in, conn->line.data, len);
		evbuffer_drain(in, eol_len);
		bool bare_lf = true;
		if (len > 0 && conn->line.data[len - 1] == '\r') {
			len--;
			bare_lf = false;
		}
		conn->line.len = len;
		conn->line.data[len] = '\0';
		conn->cb->line(conn->ctx, conn->line.data, len, bare_lf);
	}
	/* The last reply may have crossed the cap: read no further input
	 * until the peer takes it. */
	if (!conn->paused && !conn->closing)
		(void)output_capped(conn);
	update_command_timer(conn, line_done);
}

/* Says goodbye through the session's timeout callback, then flushes for a
 * short while (at most the idle timeout) and closes with
 * CONN_CLOSE_TIMEOUT. */
static void timed_out(struct conn *conn, enum conn_timeout kind)
{
	if (conn->closing) {
		finish(conn, CONN_CLOSE_TIMEOUT);
		return;
	}
	evtimer_del(conn->command_timer);
	evtimer_del(conn->session_timer);
	evtimer_del(conn->idle_timer);
	if (conn->cb->timeout != NULL)
		conn->cb->timeout(conn->ctx, kind);
	if (conn->close_pending)
		return;
	uint64_t goodbye = CONN_TIMEOUT_GOODBYE_MS;
	if (conn->idle_timeout_ms > 0 && conn->idle_timeout_ms < goodbye)
		goodbye = conn->idle_timeout_ms;
	start_closing(conn, CONN_CLOSE_TIMEOUT, goodbye);
}

static void idle_timer_cb(evutil_socket_t fd, short what, void *arg)
{
	struct conn *conn = arg;
	if (conn->closing) {
		try_finish_close(conn);
		return;
	}
	if (conn->idle_timeout_ms == 0)
		return;
	uint64_t due = UINT64_MAX;
	if (conn_output_pending(conn) > 0)
		due = conn->last_output_ms + conn->idle_timeout_ms;
	if (reading(conn) && conn->last_input_ms + conn->idle_timeout_ms < due)
		due = conn->last_input_ms + conn->idle_timeout_ms;
	if (due == UINT64_MAX)
		return; /* waiting for the server; conn_resume() restarts the clock */
	uint64_t now = clock_monotonic_ms();
	if (due > now) {
		struct timeval tv = ms_to_tv(due - now);
		evtimer_add(conn->idle_timer, &tv);
		return;
	}
	timed_out(conn, CONN_TIMEOUT_IDLE);
}

static void command_timer_cb(evutil_socket_t fd, short what, void *arg)
{
	struct conn *conn = arg;
	if (conn->closing || conn->paused)
		return;
	if (conn->output_stopped) {
		/* Raw data waiting behind unsent output: the idle clock
		 * watches the peer meanwhile. */
		struct timeval tv = ms_to_tv(conn->command_timeout_ms);
		evtimer_add(conn->command_timer, &tv);
		return;
	}
	if (conn->raw) {
		uint64_t allowed = conn->command_timeout_ms + conn->raw_bytes * 1000 / conn->min_rate;
		uint64_t elapsed = clock_monotonic_ms() - conn->raw_start_ms;
		if (elapsed < allowed) {
			struct timeval tv = ms_to_tv(allowed - elapsed);
			evtimer_add(conn->command_timer, &tv);
			return;
		}
	}
	timed_out(conn, CONN_TIMEOUT_COMMAND);
}

static void session_timer_cb(evutil_socket_t fd, short what, void *arg)
{
	struct conn *conn = arg;
	if (conn->closing)
		return;
	if (conn->paused) {
		conn->session_expired = true;
		return;
	}
	timed_out(conn, CONN_TIMEOUT_SESSION);
}

static void deferred_cb(evutil_socket_t fd, short what, void *arg)
{
	struct conn *conn = arg;
	if (conn->close_pending && !conn->closed_sent) {
		conn->closed_sent = true;
		conn->cb->closed(conn->ctx, conn->close_reason);
		return;
	}
	if (reading(conn))
		process_input(conn);
}

/* Output has reached the kernel (or a drain request is new): finishes a
 * closing flush, lifts the output cap below half of it, and calls the
 * drain callback once the output is low enough. */
static void progress_cb(evutil_socket_t fd, short what, void *arg)
{
	struct conn *conn = arg;
	if (conn->close_pending || conn->closed_sent)
		return;
	if (conn->closing) {
		try_finish_close(conn);
		return;
	}
	size_t pending = conn_output_pending(conn);
	if (conn->output_stopped && pending <= conn->output_max / 2) {
		conn->output_stopped = false;
		conn->last_input_ms = clock_monotonic_ms(); /* the peer owes input from now */
		update_read(conn);
		idle_arm(conn);
		if (!conn->paused)
			schedule(conn); /* buffered input may hold the next commands */
	}
	if (conn->drain_fn != NULL && pending <= conn->drain_low) {
		void (*fn)(void *ctx) = conn->drain_fn;
		conn->drain_fn = NULL;
		fn(conn->ctx);
	}
}

/* evbuffer callback on the wire buffer. Runs inside libevent's writes and
 * inside the session's conn_write*() calls, so it only takes notes and
 * activates events; it never calls the session. */
static void wire_cb(struct evbuffer *buf, const struct evbuffer_cb_info *info, void *arg)
{
	struct conn *conn = arg;
	if (info->n_deleted > 0 || (info->n_added > 0 && info->orig_size == 0))
		conn->last_output_ms = clock_monotonic_ms();
	if (info->n_added > 0)
		idle_arm(conn);
	if (info->n_deleted > 0 &&
	    (conn->drain_fn != NULL || conn->output_stopped || conn->closing))
		event_active(conn->progress_ev, EV_TIMEOUT, 0);
}

/* The session is about to queue output: if none was pending, the peer
 * starts owing us progress now. (With the TLS filter, output can sit in
 * the filter during a handshake without touching the wire buffer.) */
static void output_begins(struct conn *conn)
{
	if (conn_output_pending(conn) == 0) {
		conn->last_output_ms = clock_monotonic_ms();
		idle_arm(conn);
	}
}

static void watch_wire(struct conn *conn, struct evbuffer *wire)
{
	conn->wire = wire;
	conn->wire_cb = evbuffer_add_cb(wire, wire_cb, conn);
}

/* What the socket may read ahead: the input cap, but always room for one
 * longest line and its CRLF, or a line of exactly line_max octets could
 * never be read whole (and would stall until the command timeout). */
static size_t read_high_water(const struct conn *conn)
{
	size_t need = conn->line_max + 2;
	return conn->input_max > need ? conn->input_max : need;
}

static void setup_bev(struct conn *conn)
{
	bufferevent_setcb(conn->bev, conn_read_cb, NULL, conn_event_cb, conn);
	bufferevent_setwatermark(conn->bev, EV_READ, 0, read_high_water(conn));
	bufferevent_enable(conn->bev, reading(conn) ? EV_READ | EV_WRITE : EV_WRITE);
}

static SSL *new_ssl(SSL_CTX *tls)
{
	SSL *ssl = SSL_new(tls);
	if (ssl == NULL)
		log_error("TLS: SSL_new failed");
	return ssl;
}

struct conn *conn_create(struct event_base *base, int fd, const struct sockaddr *peer,
			 socklen_t peer_len, SSL_CTX *tls, const struct conn_callbacks *cb,
			 void *ctx)
{
	struct conn *conn = xcalloc(1, sizeof(*conn));
	conn->base = base;
	conn->cb = cb;
	conn->ctx = ctx;
	conn->line_max = 1024;
	conn->input_max = CONN_INPUT_HIGH_WATER;
	conn->output_max = CONN_OUTPUT_MAX;
	conn->last_input_ms = conn->last_output_ms = clock_monotonic_ms();
	buf_init(&conn->line, 0);
	conn->deferred = event_new(base, -1, 0, deferred_cb, conn);
	conn->progress_ev = event_new(base, -1, 0, progress_cb, conn);
	conn->idle_timer = evtimer_new(base, idle_timer_cb, conn);
	conn->command_timer = evtimer_new(base, command_timer_cb, conn);
	conn->session_timer = evtimer_new(base, session_timer_cb, conn);
	net_addr_from_sockaddr(&conn->peer_addr, peer);
	evutil_make_socket_nonblocking(fd);
	/* Replies are small and often follow one another (pipelining, a
	 * status line before a message): never hold one back for an ACK. */
	int one = 1;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));

	if (peer->sa_family == AF_INET) {
		const struct sockaddr_in *sin = (const struct sockaddr_in *)peer;
		inet_ntop(AF_INET, &sin->sin_addr, conn->peer_ip, sizeof(conn->peer_ip));
	} else if (peer->sa_family == AF_INET6) {
		const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)peer;
		inet_ntop(AF_INET6, &sin6->sin6_addr, conn->peer_ip, sizeof(conn->peer_ip));
	} else {
		str_copy(conn->peer_ip, "unknown", sizeof(conn->peer_ip));
	}

	if (tls != NULL) {
		SSL *ssl = new_ssl(tls);
		if (ssl == NULL) {
			close(fd);
			conn->bev = bufferevent_socket_new(base, -1, BEV_OPT_CLOSE_ON_FREE);
			watch_wire(conn, bufferevent_get_output(conn->bev));
			finish(conn, CONN_CLOSE_ERROR);
			return conn;
		}
		conn->bev = bufferevent_openssl_socket_new(base, fd, ssl,
							   BUFFEREVENT_SSL_ACCEPTING,
							   BEV_OPT_CLOSE_ON_FREE);
		bufferevent_openssl_set_allow_dirty_shutdown(conn->bev, 1);
		conn->tls = true;
	} else {
		conn->bev = bufferevent_socket_new(base, fd, BEV_OPT_CLOSE_ON_FREE);
	}
	watch_wire(conn, bufferevent_get_output(conn->bev));
	setup_bev(conn);
	return conn;
}

void conn_free(struct conn **connp)
{
	struct conn *conn = *connp;
	if (conn == NULL)
		return;
	*connp = NULL;
	if (conn->wire_cb != NULL)
		evbuffer_remove_cb_entry(conn->wire, conn->wire_cb);
	if (conn->bev != NULL)
		bufferevent_free(conn->bev);
	event_free(conn->deferred);
	event_free(conn->progress_ev);
	event_free(conn->idle_timer);
	event_free(conn->command_timer);
	event_free(conn->session_timer);
	buf_deinit(&conn->line);
	free(conn);
}

void conn_set_line_max(struct conn *conn, size_t max)
{
	conn->line_max = max;
	bufferevent_setwatermark(conn->bev, EV_READ, 0, read_high_water(conn));
}

size_t conn_line_max(const struct conn *conn)
{
	return conn->line_max;
}

void conn_set_input_max(struct conn *conn, size_t max)
{
	if (max < conn->line_max)
		max = conn->line_max;
	conn->input_max = max;
	bufferevent_setwatermark(conn->bev, EV_READ, 0, read_high_water(conn));
}

void conn_set_output_max(struct conn *conn, size_t max)
{
	conn->output_max = max;
	/* A raised cap may already be met: check from the loop. */
	if (conn->output_stopped && !conn->closing)
		event_active(conn->progress_ev, EV_TIMEOUT, 0);
}

void conn_set_idle_timeout(struct conn *conn, unsigned int ms)
{
	conn->idle_timeout_ms = ms;
	if (conn->closing)
		return;
	evtimer_del(conn->idle_timer);
	conn->last_input_ms = clock_monotonic_ms();
	idle_arm(conn);
}

void conn_set_command_timeout(struct conn *conn, unsigned int command_ms, unsigned int min_rate)
{
	conn->command_timeout_ms = command_ms;
	conn->min_rate = min_rate > 0 ? min_rate : 1;
	if (command_ms == 0)
		evtimer_del(conn->command_timer);
}

void conn_set_session_deadline(struct conn *conn, unsigned int ms)
{
	conn->session_expired = false;
	if (ms == 0) {
		evtimer_del(conn->session_timer);
		return;
	}
	struct timeval tv = ms_to_tv(ms);
	evtimer_add(conn->session_timer, &tv);
}

void conn_set_raw(struct conn *conn, bool raw)
{
	if (raw == conn->raw)
		return;
	conn->raw = raw;
	evtimer_del(conn->command_timer);
	if (raw && conn->command_timeout_ms > 0) {
		conn->raw_start_ms = clock_monotonic_ms();
		conn->raw_bytes = 0;
		struct timeval tv = ms_to_tv(conn->command_timeout_ms);
		evtimer_add(conn->command_timer, &tv);
	}
}

void conn_write(struct conn *conn, const void *data, size_t len)
{
	if (conn->close_pending || len == 0)
		return;
	output_begins(conn);
	bufferevent_write(conn->bev, data, len);
}

void conn_puts(struct conn *conn, const char *s)
{
	conn_write(conn, s, strlen(s));
}

void conn_printf(struct conn *conn, const char *fmt, ...)
{
	if (conn->close_pending)
		return;
	output_begins(conn);
	va_list ap;
	va_start(ap, fmt);
	evbuffer_add_vprintf(bufferevent_get_output(conn->bev), fmt, ap);
	va_end(ap);
}

static void free_ref(const void *data, size_t len, void *arg)
{
	free(arg);
}

void conn_write_buf(struct conn *conn, struct buf *b)
{
	if (conn->close_pending || b->len == 0) {
		buf_reset(b);
		return;
	}
	output_begins(conn);
	size_t len = b->len;
	char *data = buf_steal(b);
	if (evbuffer_add_reference(bufferevent_get_output(conn->bev), data, len, free_ref,
				   data) < 0)
		free(data);
}

size_t conn_output_pending(const struct conn *conn)
{
	size_t n = evbuffer_get_length(bufferevent_get_output(conn->bev));
	struct bufferevent *under = bufferevent_get_underlying(conn->bev);
	if (under != NULL)
		n += evbuffer_get_length(bufferevent_get_output(under));
	return n;
}

void conn_pause(struct conn *conn)
{
	conn->paused = true;
	if (!conn->raw)
		evtimer_del(conn->command_timer);
	update_read(conn);
}

void conn_resume(struct conn *conn)
{
	if (!conn->paused)
		return;
	conn->paused = false;
	if (conn->closing)
		return;
	if (conn->session_expired) {
		conn->session_expired = false;
		timed_out(conn, CONN_TIMEOUT_SESSION);
		return;
	}
	conn->last_input_ms = clock_monotonic_ms(); /* the wait for the server is over */
	update_read(conn);
	idle_arm(conn);
	if (!conn->output_stopped)
		schedule(conn); /* buffered input may already hold the next commands */
}

int conn_start_tls(struct conn *conn, SSL_CTX *tls)
{
	/* Plaintext pipelined after STARTTLS/STLS must never be executed. */
	struct evbuffer *in = bufferevent_get_input(conn->bev);
	evbuffer_drain(in, evbuffer_get_length(in));
	SSL *ssl = new_ssl(tls);
	if (ssl == NULL) {
		conn_close(conn);
		return -1;
	}
	struct bufferevent *tbev = bufferevent_openssl_filter_new(conn->base, conn->bev, ssl,
								  BUFFEREVENT_SSL_ACCEPTING,
								  BEV_OPT_CLOSE_ON_FREE);
	if (tbev == NULL) {
		SSL_free(ssl);
		conn_close(conn);
		return -1;
	}
	bufferevent_openssl_set_allow_dirty_shutdown(tbev, 1);
	/* The socket bufferevent, whose output stays the wire buffer, now
	 * belongs to the filter. */
	conn->bev = tbev;
	conn->tls = true;
	conn->discarding_line = false;
	setup_bev(conn);
	return 0;
}

bool conn_is_tls(const struct conn *conn)
{
	return conn->tls;
}

void conn_close(struct conn *conn)
{
	if (conn->closing)
		return;
	/* Finishes now, or on output progress once the output has drained
	 * (or CONN_CLOSE_FLUSH_MS has passed). */
	start_closing(conn, CONN_CLOSE_LOCAL, CONN_CLOSE_FLUSH_MS);
}

bool conn_is_closing(const struct conn *conn)
{
	return conn->closing;
}

const char *conn_peer_ip(const struct conn *conn)
{
	return conn->peer_ip;
}

const struct net_addr *conn_peer_addr(const struct conn *conn)
{
	return &conn->peer_addr;
}

const char *conn_tls_description(const struct conn *conn, char *out, size_t outsize)
{
	if (!conn->tls)
		return NULL;
	SSL *ssl = bufferevent_openssl_get_ssl(conn->bev);
	if (ssl == NULL)
		return NULL;
	snprintf(out, outsize, "%s %s", SSL_get_version(ssl), SSL_get_cipher_name(ssl));
	return out;
}

static void conn_read_cb(struct bufferevent *bev, void *arg)
{
	struct conn *conn = arg;
	conn->last_input_ms = clock_monotonic_ms();
	process_input(conn);
}

void conn_when_drained(struct conn *conn, size_t low, void (*fn)(void *ctx))
{
	conn->drain_fn = fn;
	conn->drain_low = low;
	event_active(conn->progress_ev, EV_TIMEOUT, 0);
}

static void conn_event_cb(struct bufferevent *bev, short what, void *arg)
{
	struct conn *conn = arg;
	if (what & BEV_EVENT_EOF) {
		finish(conn, CONN_CLOSE_EOF);
		return;
	}
	if (what & BEV_EVENT_ERROR) {
		unsigned long err;
		while ((err = bufferevent_get_openssl_error(bev)) != 0) {
			char msg[256];
			ERR_error_string_n(err, msg, sizeof(msg));
			log_info("conn %s: TLS error: %s", conn->peer_ip, msg);
		}
		finish(conn, CONN_CLOSE_ERROR);
	}
}
