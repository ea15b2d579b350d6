#ifndef TERN_DSN_H
#define TERN_DSN_H
/*
 * dsn: delivery status notifications (RFC 3464) for mail tern accepted and
 * could not deliver, or has not delivered yet: a multipart/report
 * (RFC 6522) of a text/plain explanation, a message/delivery-status part
 * and the original header as text/rfc822-headers.
 *
 * "Never a bounce for a bounce": a message whose envelope sender is the
 * null path "<>" gets no DSN. The caller does not call dsn_build() for
 * one (and dsn_build() refuses an empty sender).
 *
 * Everything that came from elsewhere (addresses, the remote reply, host
 * names, the original header) is sanitised before it is written: CR, LF
 * and other control characters cannot start a line or a part, 8-bit
 * octets become '?', each value is capped, and the boundary is checked
 * not to occur in the content, so no input changes the report's
 * structure. The result is 7-bit, CRLF, every line under 998 octets.
 */
#include <stddef.h>
#include <stdint.h>

#include "buf.h"

#define DSN_ADDRESS_MAX 320       /* an address is cut there */
#define DSN_DIAGNOSTIC_MAX 512    /* a diagnostic is cut there */
#define DSN_HEADERS_MAX (64 * 1024) /* the returned header is cut there, at a line end */

enum dsn_action { DSN_FAILED, DSN_DELAYED };

struct dsn_rcpt {
	const char *address;
	enum dsn_action action;
	const char *status;      /* "5.1.1"; another form is reported as 5.0.0 / 4.0.0 */
	/* the remote reply ("550 5.1.1 no such user", reported as
	 * "Diagnostic-Code: smtp; ..."), or tern's own text (reported as
	 * "X-tern; ..."); may be NULL */
	const char *diagnostic;
	const char *remote_mta;  /* the host that answered; may be NULL */
};

struct dsn_info {
	const char *reporting_mta;   /* our hostname */
	const char *sender;          /* the original envelope sender, who gets the DSN (never "") */
	const char *original_envid;  /* may be NULL */
	int64_t arrival_s, now_s;
	const struct dsn_rcpt *rcpts;
	unsigned int rcpt_count;
	/* the original message's header (returned as text/rfc822-headers),
	 * may be truncated by the caller; it ends at its first empty line */
	const char *headers;
	size_t headers_len;
};

/* Appends a whole RFC 5322 message (CRLF) to out: From: "Mail Delivery
 * System" <MAILER-DAEMON@reporting_mta>, To: the sender, Subject:
 * "Undelivered Mail Returned to Sender" when a recipient failed, else
 * "Delayed Mail (still being retried)", Date, Message-ID, Auto-Submitted:
 * auto-replied, and the multipart/report body. -1 with a static *error_r
 * for an empty sender, no recipients, a reporting_mta that is no host
 * name, or out's cap (out is then left as it was). */
int dsn_build(const struct dsn_info *info, struct buf *out, const char **error_r);

#endif
