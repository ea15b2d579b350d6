/*
 * pop3-audit: builds the POP3 audit lines (see pop3-audit.h); audit.c
 * writes each with one write().
 */
#include "pop3-audit.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

void pop3_audit_login(struct audit *audit, uint64_t session_id, const char *user,
		      const char *client)
{
	if (audit == NULL)
		return;
	struct buf f;
	buf_init(&f, 0);
	audit_field(&f, "proto", "pop3");
	audit_field_u64(&f, "session", session_id);
	audit_field(&f, "user", user);
	audit_field(&f, "client", client);
	audit_line(audit, "login", &f);
	buf_deinit(&f);
}

void pop3_audit_message(struct audit *audit, const char *event, uint64_t session_id,
			const char *user, const char *client, const struct uuid *id,
			const char *uidl, uint64_t size, int64_t retrieved_us,
			const char *reason)
{
	if (audit == NULL)
		return;
	char idtext[UUID_STR_LEN + 1];
	uuid_format(id, idtext);
	struct buf f;
	buf_init(&f, 0);
	audit_field(&f, "proto", "pop3");
	if (session_id != 0)
		audit_field_u64(&f, "session", session_id);
	audit_field(&f, "user", user);
	if (client != NULL)
		audit_field(&f, "client", client);
	audit_field(&f, "id", idtext);
	if (uidl != NULL && strcmp(uidl, idtext) != 0)
		audit_field(&f, "uidl", uidl);
	audit_field_u64(&f, "size", size);
	if (retrieved_us > 0) {
		time_t t = (time_t)(retrieved_us / 1000000);
		struct tm tm;
		gmtime_r(&t, &tm);
		char stamp[64];
		strftime(stamp, sizeof(stamp), "%Y-%m-%dT%H:%M:%SZ", &tm);
		audit_field(&f, "retrieved", stamp);
	}
	if (reason != NULL)
		audit_field(&f, "reason", reason);
	audit_line(audit, event, &f);
	buf_deinit(&f);
}
