/*
 * Unit tests for mail-trace: Received:, Return-Path:, Delivered-To: fields,
 * their folding, the RFC 5322 date, and sanitising of client text.
 */
#include "test.h"

#include <time.h>

#include "mail-trace.h"

/* Every line ends with CRLF, no bare CR/LF, only printable ASCII or HT,
 * continuation lines start with whitespace, and lines are <= max long. */
static void check_field(const struct buf *b, size_t max)
{
	size_t line_start = 0;
	CHECK(b->len >= 2 && b->data[b->len - 2] == '\r' && b->data[b->len - 1] == '\n');
	for (size_t i = 0; i < b->len; i++) {
		unsigned char c = (unsigned char)b->data[i];
		if (c == '\r') {
			CHECK(i + 1 < b->len && b->data[i + 1] == '\n');
			size_t ll = i - line_start;
			if (ll > max) {
				test_failures++;
				fprintf(stderr, "line of %zu characters: %.*s\n", ll, (int)ll,
					b->data + line_start);
			}
			if (line_start > 0)
				CHECK(b->data[line_start] == '\t' || b->data[line_start] == ' ');
			i++;
			line_start = i + 1;
		} else if (c == '\n') {
			CHECK(!"bare LF");
		} else {
			CHECK((c >= 0x20 && c < 0x7f) || c == '\t');
		}
	}
}

static void test_date(void)
{
	char d[64];
	setenv("TZ", "UTC", 1);
	tzset();
	CHECK_INT(mail_trace_date(d, sizeof(d), 0), 0);
	CHECK_STR(d, "Thu, 1 Jan 1970 00:00:00 +0000");
	CHECK_INT(mail_trace_date(d, sizeof(d), 1709210096), 0);
	CHECK_STR(d, "Thu, 29 Feb 2024 12:34:56 +0000");
	CHECK_INT(mail_trace_date(d, 10, 0), -1);
	setenv("TZ", "EST5EDT", 1);
	tzset();
	CHECK_INT(mail_trace_date(d, sizeof(d), 1709210096), 0);
	CHECK_STR(d, "Thu, 29 Feb 2024 07:34:56 -0500");
	setenv("TZ", "IST-5:30", 1);
	tzset();
	CHECK_INT(mail_trace_date(d, sizeof(d), 1709210096), 0);
	CHECK_STR(d, "Thu, 29 Feb 2024 18:04:56 +0530");
	setenv("TZ", "UTC", 1);
	tzset();
}

static void test_received(void)
{
	struct buf b;

	buf_init(&b, 0);
	CHECK_INT(mail_trace_received(&b, "client.example", "192.0.2.7", "mx.client.example",
				      "tern.example", "ESMTP", "0190a1b2-c3d4", "bob@tern.example",
				      1709210096), 0);
	CHECK_STR(b.data, "Received: from client.example (mx.client.example [192.0.2.7])\r\n"
		  "\tby tern.example (tern) with ESMTP id 0190a1b2-c3d4\r\n"
		  "\tfor <bob@tern.example>; Thu, 29 Feb 2024 12:34:56 +0000\r\n");
	check_field(&b, 78);
	buf_deinit(&b);

	buf_init(&b, 0);
	CHECK_INT(mail_trace_received(&b, "x", "2001:db8::1", NULL, "h", "LMTP", "id1", NULL,
				      0), 0);
	CHECK_STR(b.data, "Received: from x (unknown [IPv6:2001:db8::1])\r\n"
		  "\tby h (tern) with LMTP id id1; Thu, 1 Jan 1970 00:00:00 +0000\r\n");
	check_field(&b, 78);
	buf_deinit(&b);

	/* hostile HELO: CRLF injection, control bytes, 8-bit, overlong */
	char helo[2000];
	memset(helo, 'A', sizeof(helo) - 1);
	helo[sizeof(helo) - 1] = '\0';
	static const char bad[] = "evil\r\nX-Injected: yes\t(\x01\xff)";
	memcpy(helo, bad, sizeof(bad) - 1);
	buf_init(&b, 0);
	CHECK_INT(mail_trace_received(&b, helo, "192.0.2.7", "r\r\ndns", "tern.example",
				      "ESMTPS", "id", "a@b.c", 0), 0);
	check_field(&b, 78);
	CHECK(strstr(b.data, "\r\nX-Injected") == NULL);
	CHECK(strstr(b.data, "evil??X-Injected:?yes?????AAAA") != NULL);
	CHECK(strstr(b.data, "r??dns") != NULL);
	/* capped: 64 characters and an ellipsis */
	const char *from = strstr(b.data, "evil");
	CHECK(from != NULL && strlen(from) > MAIL_TRACE_HELO_MAX + 4 &&
	      strncmp(from + MAIL_TRACE_HELO_MAX, "... ", 4) == 0);
	buf_deinit(&b);

	/* empty HELO; long host names force folding but never exceed 998 */
	char host[256];
	memset(host, 'h', 255);
	host[255] = '\0';
	buf_init(&b, 0);
	CHECK_INT(mail_trace_received(&b, "", "192.0.2.7", host, host, "SMTP", "id",
				      "a@b.c", 0), 0);
	check_field(&b, 998);
	CHECK(strncmp(b.data, "Received: from unknown\r\n\t(hhh", 29) == 0);
	buf_deinit(&b);

	/* the cap is reported */
	buf_init(&b, 40);
	CHECK_INT(mail_trace_received(&b, "client.example", "192.0.2.7", NULL, "tern.example",
				      "ESMTP", "id", NULL, 0), -1);
	buf_deinit(&b);
}

static void test_simple_fields(void)
{
	struct buf b;

	buf_init(&b, 0);
	CHECK_INT(mail_trace_return_path(&b, "alice@example.org"), 0);
	CHECK_STR(b.data, "Return-Path: <alice@example.org>\r\n");
	buf_reset(&b);
	CHECK_INT(mail_trace_return_path(&b, ""), 0);
	CHECK_STR(b.data, "Return-Path: <>\r\n");
	buf_reset(&b);
	CHECK_INT(mail_trace_return_path(&b, "\"a b\"@example.org"), 0);
	CHECK_STR(b.data, "Return-Path: <\"a b\"@example.org>\r\n");
	buf_reset(&b);
	CHECK_INT(mail_trace_delivered_to(&b, "bob@example.org"), 0);
	CHECK_STR(b.data, "Delivered-To: bob@example.org\r\n");
	buf_reset(&b);
	CHECK_INT(mail_trace_delivered_to(&b, "bob@example.org\r\nBcc: x"), 0);
	check_field(&b, 78);
	CHECK(strstr(b.data, "\r\nBcc") == NULL);
	buf_deinit(&b);

	buf_init(&b, 10);
	CHECK_INT(mail_trace_delivered_to(&b, "bob@example.org"), -1);
	buf_deinit(&b);
}

int main(void)
{
	test_date();
	test_received();
	test_simple_fields();
	TEST_MAIN_END();
}
