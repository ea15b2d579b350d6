#ifndef TERN_SMTP_SESSION_H
#define TERN_SMTP_SESSION_H
/*
 * smtp-session: SMTP (RFC 5321) and LMTP (RFC 2033) receiving mail for
 * local users, on the session core. The server starts sessions with
 * session_create(env, &smtp_protocol or &lmtp_protocol, ...).
 */
#include "session.h"

extern const struct session_protocol smtp_protocol;
extern const struct session_protocol lmtp_protocol;

#endif
