#ifndef TERN_CQL_CONN_H
#define TERN_CQL_CONN_H
/* One connection to one node: handshake, then multiplexed requests. */
#include "cql-private.h"

#include <openssl/ssl.h>

struct cql_conn;

struct cql_conn_settings {
	const char *host;
	uint16_t port;
	uint32_t max_frame_size;
	SSL_CTX *ssl_ctx;		/* NULL: plain TCP */
	const char *username, *password;
	const char *keyspace;		/* NULL: no USE */
	/* After this long without a byte from the server, send OPTIONS; if
	   nothing arrives within heartbeat_timeout_ms, the connection is
	   dead. 0: no heartbeat. */
	unsigned heartbeat_ms, heartbeat_timeout_ms;
	/* Called from the connection's I/O thread, with no lock of the
	   connection held; it must not make requests itself. */
	void (*on_event)(void *ctx, const struct cql_event *event);
	void *event_ctx;		/* REGISTER only when on_event is set */
};

/* Connects and completes STARTUP (and authentication, USE, REGISTER)
   before deadline_ms (cql_now_ms() clock). The result has one reference. */
struct cql_conn *cql_conn_open(const struct cql_conn_settings *set, int64_t deadline_ms,
			       struct cql_error *err_r);
void cql_conn_ref(struct cql_conn *conn);
/* The last unref closes the socket and joins the I/O thread. */
void cql_conn_unref(struct cql_conn **conn);
/* Dead connections fail every request; the owner replaces them. */
bool cql_conn_is_dead(struct cql_conn *conn);
unsigned cql_conn_inflight(struct cql_conn *conn);
const char *cql_conn_host(const struct cql_conn *conn);

/* Sends one request frame (its stream id is filled in here) and waits for
   the response until deadline_ms. Returns 0 with *resp_r (caller frees), or
   -1: CQL_ERR_CONNECTION (the connection failed or has no free stream) or
   CQL_ERR_TIMEOUT, with err->sent telling whether any byte of the request
   reached the socket. Thread-safe. */
int cql_conn_request(struct cql_conn *conn, struct cql_buf *frame, int64_t deadline_ms,
		     struct cql_frame *resp_r, struct cql_error *err_r);
/* Request + cql_response_decode(). */
int cql_conn_call(struct cql_conn *conn, struct cql_buf *frame, int64_t deadline_ms,
		  struct cql_result **result_r, struct cql_error *err_r);

#endif
