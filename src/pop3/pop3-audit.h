#ifndef TERN_POP3_AUDIT_H
#define TERN_POP3_AUDIT_H
/*
 * pop3-audit: the POP3 lines of the audit log ([server] audit_log): one per
 * login, RETR, message deleted at QUIT, and expiry. Field names are part of
 * the documented format (docs/pop3-extensions.md): time, event, session,
 * user, client, id (the message's TimeUUID), uidl, size, retrieved, reason.
 * Every function does nothing when audit is NULL.
 */
#include <stdint.h>

#include "audit.h"
#include "uuid.h"

/* event=login */
void pop3_audit_login(struct audit *audit, uint64_t session_id, const char *user,
		      const char *client);
/* event (retr, dele, expire) for one message. session_id 0 and client
 * NULL for the sweep; uidl NULL when it is the id; retrieved_us 0 and
 * reason NULL leave those fields out. */
void pop3_audit_message(struct audit *audit, const char *event, uint64_t session_id,
			const char *user, const char *client, const struct uuid *id,
			const char *uidl, uint64_t size, int64_t retrieved_us,
			const char *reason);

#endif
