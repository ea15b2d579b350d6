#ifndef TERN_SMTP_SESSION_H
#define TERN_SMTP_SESSION_H
/*
 * smtp-session: one SMTP (RFC 5321) or LMTP (RFC 2033) connection receiving
 * mail for local users. Takes ownership of fd; frees itself when the
 * connection ends.
 */
#include <stdbool.h>
#include <sys/socket.h>

#include "daemon.h"

enum smtp_protocol { SMTP_PROTOCOL_SMTP, SMTP_PROTOCOL_LMTP };

/* admit: a refused connection is told why (421) and closed. */
void smtp_session_create(struct daemon *d, int fd, const struct sockaddr *peer,
			 socklen_t peer_len, enum smtp_protocol proto, bool implicit_tls,
			 enum daemon_admit admit);

#endif
