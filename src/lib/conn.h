#ifndef TERN_CONN_H
#define TERN_CONN_H
/*
 * conn: the transport under every protocol session: a TCP connection, plain
 * or TLS (implicit, or upgraded in place by STARTTLS/STLS), cut into lines
 * with a cap, or handed over raw (SMTP DATA). No protocol knowledge.
 *
 * Callbacks never fire from inside a conn_* call made by the session: input
 * is processed from libevent callbacks or a deferred event, and the closed
 * callback always comes from a deferred event. The session receives exactly
 * one closed() and must then call conn_free() (it may wait, e.g. for a store
 * job to finish). No other callback follows closed().
 *
 * While paused (conn_pause), no input is processed, so replies stay in order
 * when a command waits for a worker: this is how pipelining is kept safe.
 *
 * What one peer can cost is bounded without the session's help: at most
 * input_max octets are read ahead of it, and while more than output_max
 * octets of its output are unsent (conn_output_pending), no further input
 * is processed or read, until the peer has taken the output down to half
 * the cap. This second stop is independent of conn_pause(): conn_resume()
 * does not lift it and the peer draining its output does not lift a pause.
 * A peer that takes no output for the idle timeout while output is pending
 * is timed out like one that sends nothing, in every state.
 */
#include <event2/event.h>
#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>

#include "buf.h"
#include "net.h"

typedef struct ssl_ctx_st SSL_CTX;
struct evbuffer;
struct conn;

enum conn_close_reason {
	CONN_CLOSE_LOCAL,    /* conn_close() finished flushing */
	CONN_CLOSE_EOF,      /* the client closed */
	CONN_CLOSE_ERROR,    /* socket or TLS error */
	CONN_CLOSE_TIMEOUT,  /* a timeout: the session may not write any more */
};

enum conn_timeout {
	CONN_TIMEOUT_IDLE,     /* no input, or no output taken, for the idle timeout */
	CONN_TIMEOUT_COMMAND,  /* a line (or raw data) arrived too slowly */
	CONN_TIMEOUT_SESSION,  /* the session deadline passed */
};

struct conn_callbacks {
	/* One line without its line ending; line[len] == '\0'. bare_lf: it
	 * ended with LF alone. The buffer is valid until the callback returns
	 * and may be modified. */
	void (*line)(void *ctx, char *line, size_t len, bool bare_lf);
	/* A line exceeded the cap; its bytes up to the next LF are dropped. */
	void (*line_too_long)(void *ctx);
	/* Raw mode: consume what you want from in. */
	void (*raw)(void *ctx, struct evbuffer *in);
	/* A timeout: called before closed(TIMEOUT) so the session can say
	 * goodbye; the conn then flushes for at most 5 s (and at most the
	 * idle timeout) and closes. May come while paused (a peer that stops
	 * reading a streamed reply). May be NULL. */
	void (*timeout)(void *ctx, enum conn_timeout kind);
	void (*closed)(void *ctx, enum conn_close_reason reason);
};

/* Takes ownership of fd. tls: non-NULL for implicit TLS (handshake first). */
struct conn *conn_create(struct event_base *base, int fd, const struct sockaddr *peer,
			 socklen_t peer_len, SSL_CTX *tls, const struct conn_callbacks *cb,
			 void *ctx);
void conn_free(struct conn **conn);

void conn_set_line_max(struct conn *conn, size_t max);
size_t conn_line_max(const struct conn *conn);
/* The most input read ahead of the session (pipelined commands, data);
 * reading from the socket stops while this much is buffered. At least the
 * line cap. */
void conn_set_input_max(struct conn *conn, size_t max);
/* The most output queued for the peer before input stops (default 256 KiB;
 * the TLS filter's ciphertext counts too). One reply may be larger (a
 * listing, a message streamed with conn_when_drained): the cap only holds
 * back the commands after it. Input resumes once the peer has taken the
 * output down to max / 2. */
void conn_set_output_max(struct conn *conn, size_t max);
/* The idle timeout, in both directions: timeout(IDLE) when output is
 * pending and the peer has taken none of it for ms, whether the conn is
 * paused, stopped by the output cap or reading; or when input is wanted
 * (not paused, not capped) and none has arrived for ms. Waiting for the
 * server (paused, nothing pending) does not count: the input clock
 * restarts at conn_resume() and when the output cap lifts. Setting the
 * timeout restarts the input clock. 0 disables. */
void conn_set_idle_timeout(struct conn *conn, unsigned int ms);
/* Slow-client deadlines, so that a client trickling bytes cannot hold a
 * session: a line must be complete within command_ms of its first byte
 * arriving, and raw data (SMTP DATA) must arrive at an average of at least
 * min_rate octets per second after a grace of command_ms. Otherwise
 * timeout(COMMAND). command_ms 0 disables. The clock does not run while the
 * conn is paused (waiting for the server is not the client's fault) or
 * stopped by the output cap (the idle timeout watches the peer then). */
void conn_set_command_timeout(struct conn *conn, unsigned int command_ms,
			      unsigned int min_rate);
/* The session must end within ms from now, else timeout(SESSION); 0
 * cancels. Not delivered while paused: then it waits for the resume. */
void conn_set_session_deadline(struct conn *conn, unsigned int ms);
void conn_set_raw(struct conn *conn, bool raw);

void conn_write(struct conn *conn, const void *data, size_t len);
void conn_puts(struct conn *conn, const char *s);
void conn_printf(struct conn *conn, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Queues the buffer's contents without copying; takes ownership of b's data. */
void conn_write_buf(struct conn *conn, struct buf *b);
size_t conn_output_pending(const struct conn *conn);
/* Calls fn(ctx) once, from the event loop and never from inside this call,
 * when the queued output has fallen to at most low octets: how a session
 * streams a large reply without queueing it whole. One request at a time;
 * a new one replaces the old. Not called once the connection is closing. */
void conn_when_drained(struct conn *conn, size_t low, void (*fn)(void *ctx));

/* The session's stop: no input is processed until conn_resume(). Output
 * still flows, and the idle timeout still applies to pending output. */
void conn_pause(struct conn *conn);
void conn_resume(struct conn *conn);

/* Starts a server-side TLS handshake on the connection (STARTTLS/STLS).
 * Input already buffered (pipelined plaintext) is discarded, never read as
 * commands after the handshake. Output already queued is sent in clear
 * first. 0, or -1 when TLS could not be set up (the conn is then closed). */
int conn_start_tls(struct conn *conn, SSL_CTX *tls);
bool conn_is_tls(const struct conn *conn);
/* Flushes what is queued, then closes; closed(LOCAL) follows, or
 * closed(TIMEOUT) when the peer has not taken it all within 10 s. */
void conn_close(struct conn *conn);
bool conn_is_closing(const struct conn *conn);

const char *conn_peer_ip(const struct conn *conn);
/* The peer address, IPv4-mapped IPv6 shown as IPv4 (see net.h). */
const struct net_addr *conn_peer_addr(const struct conn *conn);
/* The negotiated protocol and cipher, e.g. "TLSv1.3 TLS_AES_256_GCM_SHA384",
 * or NULL when not TLS. */
const char *conn_tls_description(const struct conn *conn, char *out, size_t outsize);

#endif
