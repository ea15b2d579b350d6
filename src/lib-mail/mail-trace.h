#ifndef TERN_MAIL_TRACE_H
#define TERN_MAIL_TRACE_H
/*
 * mail-trace: the trace header fields a receiving MTA prepends (RFC 5321
 * 4.4, RFC 5322 3.6.7): Received:, Return-Path:, and Delivered-To:.
 *
 * Each function appends one complete header field, CRLF-terminated, to out.
 * Client-supplied text (the HELO argument, reverse DNS, addresses) is
 * sanitised first: bytes outside printable ASCII and characters that would
 * change the field's structure are replaced by '?', and the HELO text is
 * capped at MAIL_TRACE_HELO_MAX characters, so no client can inject a header
 * line or make an unfoldable one. Each returns 0, or -1 when out's cap is
 * reached (out may then hold a partial field; the caller discards it).
 */
#include <time.h>

#include "buf.h"

#define MAIL_TRACE_HELO_MAX 64

/* protocol: "SMTP", "ESMTP", "ESMTPS", "ESMTPA", "ESMTPSA", "LMTP", ...
 * client_rdns and for_addr may be NULL. Lines are folded at 78 characters
 * where the content allows; the date is RFC 5322 with a numeric zone. */
int mail_trace_received(struct buf *out, const char *helo, const char *client_ip,
			const char *client_rdns, const char *by_host,
			const char *protocol, const char *id, const char *for_addr,
			time_t now);
/* reverse_path: the MAIL FROM address, "" for the null path "<>". */
int mail_trace_return_path(struct buf *out, const char *reverse_path);
int mail_trace_delivered_to(struct buf *out, const char *addr);
/* Formats t as an RFC 5322 date-time in local time with a numeric zone,
 * e.g. "Tue, 2 Jan 2024 15:04:05 +0100". Returns 0 or -1 (size too small). */
int mail_trace_date(char *out, size_t outsize, time_t t);

#endif
