#ifndef TERN_SMTP_SESSION_H
#define TERN_SMTP_SESSION_H
/*
 * smtp-session: SMTP (RFC 5321) and LMTP (RFC 2033) receiving mail for
 * local users and, from authenticated clients, for the outbound queue, on
 * the session core. The server starts sessions with
 * session_create(env, &smtp_protocol or &lmtp_protocol, ...).
 */
#include "session.h"

extern const struct session_protocol smtp_protocol;
extern const struct session_protocol lmtp_protocol;
/* SMTP for mail clients (RFC 6409): AUTH required before MAIL. */
extern const struct session_protocol submission_protocol;

#endif
