/*
 * Unit tests of relay-reply: the delivery client's SMTP reply parser, each
 * input fed whole and split at every byte, and its caps.
 */
#include <stdio.h>
#include <string.h>

#include "relay-reply.h"
#include "test.h"

struct parsed {
	int ret;                 /* 1 complete, 0 incomplete, -1 error */
	int code;
	unsigned int lines;
	char summary[512];
	char status[16];
	size_t consumed;         /* octets used for the first reply */
};

/* Feeds input in two parts split at split; stops at the first reply. */
static struct parsed feed(const char *in, size_t len, size_t split)
{
	struct relay_reply_parser p;
	struct parsed out = { 0 };
	const char *error;
	size_t used, pos = 0;

	relay_reply_parser_init(&p);
	for (int part = 0; part < 2; part++) {
		size_t end = part == 0 ? split : len;

		out.ret = relay_reply_parse(&p, in + pos, end - pos, &used, &error);
		pos += used;
		if (out.ret != 0)
			break;
	}
	out.consumed = pos;
	if (out.ret == 1) {
		out.code = p.reply.code;
		out.lines = p.reply.line_count;
		relay_reply_summary(&p.reply, out.summary, sizeof(out.summary));
		(void)relay_reply_status(&p.reply, out.status, sizeof(out.status));
	}
	relay_reply_parser_deinit(&p);
	return out;
}

/* The same result whatever the split. */
static struct parsed feed_all_splits(const char *in)
{
	size_t len = strlen(in);
	struct parsed whole = feed(in, len, len);

	for (size_t split = 0; split <= len; split++) {
		struct parsed s = feed(in, len, split);

		CHECK_INT(s.ret, whole.ret);
		CHECK_INT(s.code, whole.code);
		CHECK_INT(s.lines, whole.lines);
		CHECK_STR(s.summary, whole.summary);
		CHECK_STR(s.status, whole.status);
		if (whole.ret == 1)
			CHECK_INT(s.consumed, whole.consumed);
	}
	return whole;
}

static void test_single_and_multi(void)
{
	struct parsed r = feed_all_splits("250 2.1.5 ok\r\n");

	CHECK_INT(r.ret, 1);
	CHECK_INT(r.code, 250);
	CHECK_INT(r.lines, 1);
	CHECK_STR(r.summary, "250 2.1.5 ok");
	CHECK_STR(r.status, "2.1.5");

	r = feed_all_splits("250-mx.test hello\r\n250-SIZE 1000\r\n250-STARTTLS\r\n250 AUTH PLAIN LOGIN\r\n");
	CHECK_INT(r.ret, 1);
	CHECK_INT(r.lines, 4);
	CHECK_STR(r.summary, "250 mx.test hello SIZE 1000 STARTTLS AUTH PLAIN LOGIN");
	CHECK_STR(r.status, "");

	/* a bare code, a bare LF, no text */
	r = feed_all_splits("354\n");
	CHECK_INT(r.ret, 1);
	CHECK_INT(r.code, 354);
	CHECK_STR(r.summary, "354");

	/* incomplete */
	r = feed_all_splits("250-first\r\n250 sec");
	CHECK_INT(r.ret, 0);
}

static void test_status(void)
{
	struct parsed r = feed_all_splits("550 5.1.1 no such user\r\n");

	CHECK_STR(r.status, "5.1.1");
	r = feed_all_splits("556 5.1.10 null MX\r\n");
	CHECK_STR(r.status, "5.1.10");
	/* class must match the code */
	r = feed_all_splits("550 4.1.1 odd\r\n");
	CHECK_STR(r.status, "");
	r = feed_all_splits("451 4.3.0\r\n");
	CHECK_STR(r.status, "4.3.0");
	r = feed_all_splits("451 4.3.0x no\r\n");
	CHECK_STR(r.status, "");
	r = feed_all_splits("451 4.3333.0 no\r\n");
	CHECK_STR(r.status, "");
	r = feed_all_splits("451 4.3. no\r\n");
	CHECK_STR(r.status, "");
}

static void test_errors(void)
{
	CHECK_INT(feed_all_splits("25 short\r\n").ret, -1);
	CHECK_INT(feed_all_splits("abc def\r\n").ret, -1);
	CHECK_INT(feed_all_splits("650 bad class\r\n").ret, -1);
	CHECK_INT(feed_all_splits("250_bad separator\r\n").ret, -1);
	CHECK_INT(feed_all_splits("250-a\r\n251 b\r\n").ret, -1);
	CHECK_INT(feed_all_splits("\r\n").ret, -1);
}

static void test_sanitized(void)
{
	const char in[] = "250 caf\xc3\xa9 \x01 tab\there\r\n";
	struct parsed r = feed(in, sizeof(in) - 1, sizeof(in) - 1);

	CHECK_INT(r.ret, 1);
	CHECK_STR(r.summary, "250 caf?? ? tab?here");
	/* NUL inside a line */
	r = feed("250 a\0b\r\n", 9, 9);
	CHECK_INT(r.ret, -1);
}

/* What is after a reply is the next reply's. */
static void test_two_replies(void)
{
	const char *in = "220 hi\r\n250 ok\r\n";
	struct relay_reply_parser p;
	const char *error;
	size_t used;

	relay_reply_parser_init(&p);
	CHECK_INT(relay_reply_parse(&p, in, strlen(in), &used, &error), 1);
	CHECK_INT(used, 8);
	CHECK_INT(p.reply.code, 220);
	CHECK_INT(relay_reply_parse(&p, in + used, strlen(in) - used, &used, &error), 1);
	CHECK_INT(p.reply.code, 250);
	CHECK_INT(p.reply.line_count, 1);
	relay_reply_parser_deinit(&p);
}

static void test_caps(void)
{
	static char big[RELAY_REPLY_LINE_MAX + 64];
	struct relay_reply_parser p;
	const char *error;
	size_t used;
	int ret = 0;

	/* a line of exactly the cap, with CRLF, is taken */
	memcpy(big, "250 ", 4);
	memset(big + 4, 'x', RELAY_REPLY_LINE_MAX - 4);
	memcpy(big + RELAY_REPLY_LINE_MAX, "\r\n", 2);
	CHECK_INT(feed(big, RELAY_REPLY_LINE_MAX + 2, 100).ret, 1);
	/* one more octet is not, with or without its line end yet */
	memset(big + 4, 'x', RELAY_REPLY_LINE_MAX - 3);
	memcpy(big + RELAY_REPLY_LINE_MAX + 1, "\r\n", 2);
	CHECK_INT(feed(big, RELAY_REPLY_LINE_MAX + 3, 100).ret, -1);
	CHECK_INT(feed(big, RELAY_REPLY_LINE_MAX + 1, 100).ret, 0);  /* its CR may come */
	CHECK_INT(feed(big, RELAY_REPLY_LINE_MAX + 2, 100).ret, -1);

	/* endless continuation lines stop at the line cap */
	relay_reply_parser_init(&p);
	for (unsigned int i = 0; i <= RELAY_REPLY_LINES_MAX && ret == 0; i++)
		ret = relay_reply_parse(&p, "250-more\r\n", 10, &used, &error);
	CHECK_INT(ret, -1);
	CHECK_STR(error, "reply has too many lines");
	relay_reply_parser_deinit(&p);

	/* a line without end is refused once over the cap, fed in pieces */
	relay_reply_parser_init(&p);
	ret = relay_reply_parse(&p, "220 ", 4, &used, &error);
	for (unsigned int i = 0; i < RELAY_REPLY_LINE_MAX && ret == 0; i++)
		ret = relay_reply_parse(&p, "x", 1, &used, &error);
	CHECK_INT(ret, -1);
	relay_reply_parser_deinit(&p);
}

int main(void)
{
	test_single_and_multi();
	test_status();
	test_errors();
	test_sanitized();
	test_two_replies();
	test_caps();
	TEST_MAIN_END();
}
