#ifndef TERN_POP3_SESSION_H
#define TERN_POP3_SESSION_H
/*
 * pop3-session: one POP3 connection (RFC 1939, 2449, 2595, 3206).
 * Takes ownership of fd; frees itself when the connection ends.
 */
#include <stdbool.h>
#include <sys/socket.h>

#include "daemon.h"

/* admit: a refused connection is told why and closed. */
void pop3_session_create(struct daemon *d, int fd, const struct sockaddr *peer,
			 socklen_t peer_len, bool implicit_tls, enum daemon_admit admit);

#endif
