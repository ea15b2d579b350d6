#ifndef TERN_RELAY_CONN_H
#define TERN_RELAY_CONN_H
/*
 * relay-conn: one blocking client connection for outbound delivery, TCP
 * then optionally TLS, where every read and write has a deadline (poll() on
 * a non-blocking socket), and replies are read through the capped reply
 * parser. Errors are written to conn->error (a diagnostic for reports).
 */
#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>

#include <openssl/ssl.h>

#include "relay-reply.h"

#define RELAY_CONN_ERROR_MAX 200

struct relay_conn {
	int fd;
	/* Readable once the delivery is to stop (relay_cancel()): every wait
	 * ends at once with an error. -1: none. */
	int cancel_fd;
	SSL *ssl;
	struct relay_reply_parser parser;
	char in[4096];
	size_t in_pos, in_len;
	char error[RELAY_CONN_ERROR_MAX];
};

/* Connects within timeout_ms. 0, or -1 with conn->error. conn is usable
 * (and must be closed) either way. cancel_fd (-1: none) ends this and every
 * later wait of the connection as soon as it is readable. */
int relay_conn_connect(struct relay_conn *conn, const struct sockaddr_storage *addr,
		       unsigned int timeout_ms, int cancel_fd);
void relay_conn_close(struct relay_conn *conn);

/* Writes all of data within timeout_ms. 0 or -1. */
int relay_conn_write(struct relay_conn *conn, const void *data, size_t len,
		     unsigned int timeout_ms);
/* Reads one whole reply within timeout_ms (for the whole reply, however
 * slowly it trickles); the reply stays valid until the next call. Returns
 * it, or NULL with conn->error. */
const struct relay_reply *relay_conn_reply(struct relay_conn *conn, unsigned int timeout_ms);

/* The TLS handshake on ssl (made by the caller, with its verification set
 * up), within timeout_ms. Bytes the server sent before it are discarded.
 * 0, or -1 with conn->error (the verification result when that failed). */
int relay_conn_starttls(struct relay_conn *conn, SSL *ssl, unsigned int timeout_ms);

#endif
