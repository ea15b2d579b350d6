/*
 * trace: builds the Received:, Return-Path: and Delivered-To: header fields.
 *
 * Invariants: every field ends with CRLF and contains no other CR or LF;
 * every byte that came from a client or from DNS is printable ASCII after
 * sanitising, so a hostile HELO cannot add header lines or break the field's
 * syntax; Received: is folded at whitespace so lines stay within 78
 * characters unless one token is longer (a 255-octet host name), and never
 * beyond RFC 5322's 998. The date does not depend on the process locale.
 */
#include "mail-trace.h"

#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#define FOLD_WIDTH 78

/* Copies at most max characters of in to out, replacing anything that is
 * not printable ASCII or that has meaning in the field (forbidden) by '?'.
 * Spaces are kept only in addresses, where a quoted local part may hold
 * them; elsewhere a space would split a token. Returns true when in was
 * truncated. */
static bool sanitise_ex(char *out, size_t outsize, const char *in, size_t max,
			const char *forbidden, bool allow_space)
{
	size_t o = 0, i;

	for (i = 0; in[i] != '\0' && i < max && o + 1 < outsize; i++) {
		unsigned char c = (unsigned char)in[i];
		if (c == ' ' && allow_space)
			;
		else if (c < 0x21 || c > 0x7e || strchr(forbidden, c) != NULL)
			c = '?';
		out[o++] = (char)c;
	}
	out[o] = '\0';
	return in[i] != '\0';
}

static bool sanitise(char *out, size_t outsize, const char *in, size_t max,
		     const char *forbidden)
{
	return sanitise_ex(out, outsize, in, max, forbidden, false);
}

struct folder {
	struct buf *out;
	size_t line_len;
	int ret;
};

static void fold_put(struct folder *f, const char *tok, bool force_break)
{
	size_t len = strlen(tok);

	if (f->line_len > 0) {
		if (force_break || f->line_len + 1 + len > FOLD_WIDTH) {
			if (buf_append(f->out, "\r\n\t", 3) < 0)
				f->ret = -1;
			f->line_len = 1;
		} else {
			if (buf_append_c(f->out, ' ') < 0)
				f->ret = -1;
			f->line_len++;
		}
	}
	if (buf_append(f->out, tok, len) < 0)
		f->ret = -1;
	f->line_len += len;
}

int mail_trace_date(char *out, size_t outsize, time_t t)
{
	static const char days[7][4] = { "Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat" };
	static const char months[12][4] = { "Jan", "Feb", "Mar", "Apr", "May", "Jun",
					    "Jul", "Aug", "Sep", "Oct", "Nov", "Dec" };
	struct tm tm;

	if (localtime_r(&t, &tm) == NULL)
		return -1;
	long off = tm.tm_gmtoff / 60;
	char sign = off < 0 ? '-' : '+';
	if (off < 0)
		off = -off;
	int n = snprintf(out, outsize, "%s, %d %s %04d %02d:%02d:%02d %c%02ld%02ld",
			 days[tm.tm_wday % 7], tm.tm_mday, months[tm.tm_mon % 12],
			 tm.tm_year + 1900, tm.tm_hour, tm.tm_min, tm.tm_sec,
			 sign, off / 60, off % 60);
	return n < 0 || (size_t)n >= outsize ? -1 : 0;
}

int mail_trace_received(struct buf *out, const char *helo, const char *client_ip,
			const char *client_rdns, const char *by_host,
			const char *protocol, const char *id, const char *for_addr,
			time_t now)
{
	/* sized for the caps below plus the clause punctuation */
	char tok[MAIL_TRACE_HELO_MAX + 300], tmp[300], ip[80], date[64];
	struct folder f = { out, 0, 0 };

	fold_put(&f, "Received:", false);
	fold_put(&f, "from", false);
	bool cut = sanitise(tmp, sizeof(tmp), helo != NULL && helo[0] != '\0' ?
			    helo : "unknown", MAIL_TRACE_HELO_MAX, "()\\;\"<>");
	snprintf(tok, sizeof(tok), "%s%s", tmp, cut ? "..." : "");
	fold_put(&f, tok, false);

	sanitise(tmp, sizeof(tmp), client_rdns != NULL && client_rdns[0] != '\0' ?
		 client_rdns : "unknown", 255, "()\\;\"<>[]");
	snprintf(tok, sizeof(tok), "(%s", tmp);
	fold_put(&f, tok, false);
	sanitise(ip, sizeof(ip), client_ip != NULL ? client_ip : "", 64,
		 "()\\;\"<>[]");
	snprintf(tok, sizeof(tok), "[%s%s])", strchr(ip, ':') != NULL ? "IPv6:" : "", ip);
	fold_put(&f, tok, false);

	fold_put(&f, "by", true);
	sanitise(tmp, sizeof(tmp), by_host, 255, "()\\;\"<>");
	fold_put(&f, tmp, false);
	fold_put(&f, "(tern)", false);
	fold_put(&f, "with", false);
	sanitise(tmp, sizeof(tmp), protocol, 16, "()\\;\"<>");
	fold_put(&f, tmp, false);
	if (id != NULL && id[0] != '\0') {
		fold_put(&f, "id", false);
		sanitise(tmp, sizeof(tmp), id, 64, "()\\;\"<>");
		fold_put(&f, tmp, false);
	}
	if (for_addr != NULL && for_addr[0] != '\0') {
		fold_put(&f, "for", true);
		sanitise(tmp, sizeof(tmp), for_addr, 255 + 64 + 1, "<>;");
		snprintf(tok, sizeof(tok), "<%s>;", tmp);
		fold_put(&f, tok, false);
	} else {
		/* the ';' belongs right after the last clause */
		if (buf_append_c(out, ';') < 0)
			f.ret = -1;
		f.line_len++;
	}
	if (mail_trace_date(date, sizeof(date), now) < 0)
		return -1;
	fold_put(&f, date, false);
	if (buf_append(out, "\r\n", 2) < 0)
		f.ret = -1;
	return f.ret;
}

int mail_trace_return_path(struct buf *out, const char *reverse_path)
{
	char tmp[MAIL_TRACE_HELO_MAX + 300];

	sanitise_ex(tmp, sizeof(tmp), reverse_path, 255 + 64 + 1, "<>", true);
	return buf_printf(out, "Return-Path: <%s>\r\n", tmp);
}

int mail_trace_delivered_to(struct buf *out, const char *addr)
{
	char tmp[MAIL_TRACE_HELO_MAX + 300];

	sanitise_ex(tmp, sizeof(tmp), addr, 255 + 64 + 1, "<>", true);
	return buf_printf(out, "Delivered-To: %s\r\n", tmp);
}
