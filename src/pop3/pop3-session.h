#ifndef TERN_POP3_SESSION_H
#define TERN_POP3_SESSION_H
/*
 * pop3-session: POP3 (RFC 1939, 2449, 2595, 3206, 5034) on the session core.
 * The server starts sessions with session_create(env, &pop3_protocol, ...).
 */
#include "session.h"

extern const struct session_protocol pop3_protocol;

#endif
