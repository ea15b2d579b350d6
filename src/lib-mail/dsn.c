/*
 * dsn: builds delivery status notifications (RFC 3464) as multipart/report
 * messages (RFC 6522).
 *
 * Invariants of every message built:
 *  - it is 7-bit ASCII with CRLF line ends and lines under 998 octets;
 *  - no value from a peer or a message (addresses, host names, the remote
 *    reply, the envelope id, the returned header) contains CR, LF or
 *    another control character, so none can add a header line or a MIME
 *    part: line ends and tabs in them become one space, other controls and
 *    8-bit octets become '?', and each is cut at its cap;
 *  - the boundary occurs nowhere in the parts: it is made of a fresh
 *    TimeUUID and checked against the content (and changed if found);
 *  - the returned header is kept line by line up to its first empty line,
 *    cut at DSN_HEADERS_MAX at a line end, so it cannot carry a body.
 */
#include "dsn.h"

#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "mail-address.h"
#include "mail-trace.h"
#include "uuid.h"

#define HEADER_LINE_MAX 990

/* Appends in (at most max octets of it) on one line: CR, LF and HT become
 * a single space (runs of them and of spaces collapse), other control
 * characters and 8-bit octets become '?'; spaces at both ends go. */
static void append_clean(struct buf *b, const char *in, size_t max)
{
	bool space = false, started = false;

	for (size_t i = 0; in[i] != '\0' && i < max; i++) {
		unsigned char c = (unsigned char)in[i];
		if (c == ' ' || c == '\t' || c == '\r' || c == '\n') {
			space = started;
			continue;
		}
		if (c < 0x20 || c > 0x7e)
			c = '?';
		if (space)
			buf_append_c(b, ' ');
		buf_append_c(b, (char)c);
		space = false;
		started = true;
	}
}

/* "5.1.1": class 2, 4 or 5, then two numbers of 1 to 3 digits (RFC 3463). */
static bool status_is_valid(const char *s)
{
	if (s == NULL || (s[0] != '2' && s[0] != '4' && s[0] != '5') || s[1] != '.')
		return false;
	s += 2;
	for (int part = 0; part < 2; part++) {
		size_t n = 0;
		while (s[n] >= '0' && s[n] <= '9')
			n++;
		if (n == 0 || n > 3)
			return false;
		s += n;
		if (part == 0 && *s++ != '.')
			return false;
	}
	return *s == '\0';
}

/* Whether a diagnostic is an SMTP reply: three digits, the first 2-5,
 * then the end, a space or a hyphen. */
static bool is_smtp_reply(const char *s)
{
	return s[0] >= '2' && s[0] <= '5' && s[1] >= '0' && s[1] <= '9' &&
		s[2] >= '0' && s[2] <= '9' && (s[3] == '\0' || s[3] == ' ' || s[3] == '-');
}

static void append_date(struct buf *b, const char *name, int64_t t)
{
	char date[64];

	if (mail_trace_date(date, sizeof(date), (time_t)t) == 0)
		buf_printf(b, "%s: %s\r\n", name, date);
}

static void text_part(const struct dsn_info *info, bool failed, bool delayed, struct buf *b)
{
	buf_append_str(b, "This is the mail delivery system at ");
	append_clean(b, info->reporting_mta, MAIL_DOMAIN_MAX);
	buf_append_str(b, ".\r\n");
	for (int pass = 0; pass < 2; pass++) {
		enum dsn_action action = pass == 0 ? DSN_FAILED : DSN_DELAYED;
		if (pass == 0 && !failed)
			continue;
		if (pass == 1 && !delayed)
			continue;
		buf_append_str(b, pass == 0 ?
			       "\r\nYour message could not be delivered to these recipients:\r\n\r\n" :
			       "\r\nYour message has not been delivered yet to these recipients.\r\n"
			       "The mail system will keep trying; you do not need to send it again.\r\n\r\n");
		for (unsigned int i = 0; i < info->rcpt_count; i++) {
			const struct dsn_rcpt *r = &info->rcpts[i];
			if (r->action != action)
				continue;
			buf_append_c(b, '<');
			append_clean(b, r->address, DSN_ADDRESS_MAX);
			buf_append_str(b, ">: ");
			if (r->diagnostic != NULL && r->diagnostic[0] != '\0')
				append_clean(b, r->diagnostic, DSN_DIAGNOSTIC_MAX);
			else
				buf_append_str(b, action == DSN_FAILED ? "delivery failed" :
					       "delivery delayed");
			buf_append_str(b, "\r\n");
		}
	}
	if (info->headers_len > 0)
		buf_append_str(b, "\r\nThe header of your message is attached.\r\n");
}

static void status_part(const struct dsn_info *info, struct buf *b)
{
	buf_append_str(b, "Reporting-MTA: dns; ");
	append_clean(b, info->reporting_mta, MAIL_DOMAIN_MAX);
	buf_append_str(b, "\r\n");
	if (info->original_envid != NULL && info->original_envid[0] != '\0') {
		buf_append_str(b, "Original-Envelope-Id: ");
		append_clean(b, info->original_envid, 100);  /* ENVID's limit, RFC 3461 4.4 */
		buf_append_str(b, "\r\n");
	}
	append_date(b, "Arrival-Date", info->arrival_s);
	for (unsigned int i = 0; i < info->rcpt_count; i++) {
		const struct dsn_rcpt *r = &info->rcpts[i];
		bool failed = r->action == DSN_FAILED;
		buf_append_str(b, "\r\nFinal-Recipient: rfc822; ");
		append_clean(b, r->address, DSN_ADDRESS_MAX);
		buf_printf(b, "\r\nAction: %s\r\nStatus: %s\r\n", failed ? "failed" : "delayed",
			   status_is_valid(r->status) ? r->status : failed ? "5.0.0" : "4.0.0");
		if (r->remote_mta != NULL && r->remote_mta[0] != '\0') {
			buf_append_str(b, "Remote-MTA: dns; ");
			append_clean(b, r->remote_mta, MAIL_DOMAIN_MAX);
			buf_append_str(b, "\r\n");
		}
		if (r->diagnostic != NULL && r->diagnostic[0] != '\0') {
			buf_append_str(b, is_smtp_reply(r->diagnostic) ? "Diagnostic-Code: smtp; " :
				       "Diagnostic-Code: X-tern; ");
			append_clean(b, r->diagnostic, DSN_DIAGNOSTIC_MAX);
			buf_append_str(b, "\r\n");
		}
		append_date(b, "Last-Attempt-Date", info->now_s);
	}
}

/* The original header, line by line: up to its first empty line, each
 * line cut at HEADER_LINE_MAX, tabs kept, other controls and 8-bit octets
 * as '?', the whole cut at DSN_HEADERS_MAX at a line end. */
static void headers_part(const char *h, size_t len, struct buf *b)
{
	size_t pos = 0, start = b->len;

	while (pos < len) {
		const char *nl = memchr(h + pos, '\n', len - pos);
		size_t end = nl != NULL ? (size_t)(nl - h) : len, next = nl != NULL ? end + 1 : len;
		if (end > pos && h[end - 1] == '\r')
			end--;
		if (end == pos)
			break;          /* the empty line: the body follows */
		size_t n = end - pos < HEADER_LINE_MAX ? end - pos : HEADER_LINE_MAX;
		if (b->len - start + n + 2 > DSN_HEADERS_MAX)
			break;
		for (size_t i = pos; i < pos + n; i++) {
			unsigned char c = (unsigned char)h[i];
			buf_append_c(b, (c < 0x20 && c != '\t') || c > 0x7e ? '?' : (char)c);
		}
		buf_append_str(b, "\r\n");
		pos = next;
	}
}

int dsn_build(const struct dsn_info *info, struct buf *out, const char **error_r)
{
	const char *mta = info->reporting_mta;
	bool failed = false, delayed = false;

	if (info->sender == NULL || info->sender[0] == '\0') {
		*error_r = "no DSN is sent to the null sender";
		return -1;
	}
	if (mta == NULL || !mail_domain_is_valid(mta, strlen(mta))) {
		*error_r = "the reporting MTA is not a valid host name";
		return -1;
	}
	if (info->rcpt_count == 0) {
		*error_r = "a DSN needs at least one recipient";
		return -1;
	}
	for (unsigned int i = 0; i < info->rcpt_count; i++) {
		if (info->rcpts[i].address == NULL || info->rcpts[i].address[0] == '\0') {
			*error_r = "a DSN recipient has no address";
			return -1;
		}
		if (info->rcpts[i].action == DSN_FAILED)
			failed = true;
		else
			delayed = true;
	}

	struct buf parts[3];
	for (int i = 0; i < 3; i++)
		buf_init(&parts[i], 0);
	text_part(info, failed, delayed, &parts[0]);
	status_part(info, &parts[1]);
	if (info->headers != NULL)
		headers_part(info->headers, info->headers_len, &parts[2]);

	struct uuid id;
	char uuid[UUID_STR_LEN + 1], boundary[UUID_STR_LEN + 32];
	timeuuid_generate(&id);
	uuid_format(&id, uuid);
	for (unsigned int k = 0;; k++) {
		bool found = false;
		(void)snprintf(boundary, sizeof(boundary), k == 0 ? "tern-report.%s" : "tern-report.%s.%u",
			       uuid, k);
		for (int i = 0; i < 3 && !found; i++)
			found = memmem(parts[i].data, parts[i].len, boundary, strlen(boundary)) != NULL;
		if (!found)
			break;
	}

	size_t start = out->len;
	int ret = 0;
	ret |= buf_printf(out, "From: \"Mail Delivery System\" <MAILER-DAEMON@%s>\r\nTo: <", mta);
	struct buf sender;
	buf_init(&sender, 0);
	append_clean(&sender, info->sender, DSN_ADDRESS_MAX);
	ret |= buf_append(out, sender.data, sender.len);
	buf_deinit(&sender);
	ret |= buf_printf(out, ">\r\nSubject: %s\r\n", failed ? "Undelivered Mail Returned to Sender" :
			  "Delayed Mail (still being retried)");
	char date[64];
	if (mail_trace_date(date, sizeof(date), (time_t)info->now_s) == 0)
		ret |= buf_printf(out, "Date: %s\r\n", date);
	ret |= buf_printf(out, "Message-ID: <%s@%s>\r\n"
			  "Auto-Submitted: auto-replied\r\n"
			  "MIME-Version: 1.0\r\n"
			  "Content-Type: multipart/report; report-type=delivery-status;\r\n"
			  "\tboundary=\"%s\"\r\n"
			  "\r\n"
			  "This is a MIME-encapsulated message.\r\n", uuid, mta, boundary);
	static const char *const heads[3] = {
		"Content-Type: text/plain; charset=us-ascii\r\n"
		"Content-Description: Notification\r\n",
		"Content-Type: message/delivery-status\r\n"
		"Content-Description: Delivery report\r\n",
		"Content-Type: text/rfc822-headers\r\n"
		"Content-Description: Header of the undelivered message\r\n",
	};
	for (int i = 0; i < 3; i++) {
		if (i == 2 && parts[2].len == 0)
			continue;
		/* the CRLF before a delimiter is the delimiter's (RFC 2046
		 * 5.1.1): each part keeps the CRLF of its last line */
		ret |= buf_printf(out, "\r\n--%s\r\n%s\r\n", boundary, heads[i]);
		ret |= buf_append(out, parts[i].data, parts[i].len);
	}
	ret |= buf_printf(out, "\r\n--%s--\r\n", boundary);
	for (int i = 0; i < 3; i++)
		buf_deinit(&parts[i]);
	if (ret != 0) {
		out->len = start;
		out->data[start] = '\0';
		*error_r = "the output buffer is full";
		return -1;
	}
	return 0;
}
