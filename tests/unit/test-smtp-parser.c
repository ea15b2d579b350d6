/*
 * Unit tests for smtp-parser: command lines, MAIL/RCPT arguments with their
 * parameters, and SIZE values. Each line is copied into a buffer of exactly
 * len + 1 bytes so ASan catches any read or write beyond what is documented.
 */
#include "test.h"

#include <stdint.h>

#include "smtp-parser.h"

static char *dup_line(const char *s, size_t len)
{
	char *p = malloc(len + 1);
	memcpy(p, s, len);
	p[len] = 'X'; /* the parser must write the NUL itself */
	return p;
}

static int cmd(const char *s, size_t len, struct smtp_command *c, char **line_r)
{
	const char *error = NULL;
	*line_r = dup_line(s, len);
	int ret = smtp_parse_command(*line_r, len, c, &error);
	CHECK(ret == 0 || error != NULL);
	return ret;
}

#define CMD_OK(text, verb_, args_) do { struct smtp_command c_; char *l_; \
	CHECK_INT(cmd(text, sizeof(text) - 1, &c_, &l_), 0); CHECK_INT(c_.verb, verb_); \
	CHECK_STR(c_.args, args_); free(l_); } while (0)
#define CMD_BAD(text) do { struct smtp_command c_; char *l_; \
	CHECK_INT(cmd(text, sizeof(text) - 1, &c_, &l_), -1); free(l_); } while (0)

static void test_commands(void)
{
	struct smtp_command c;
	char *l;

	CMD_OK("HELO client.example", SMTP_VERB_HELO, "client.example");
	CMD_OK("ehlo client.example", SMTP_VERB_EHLO, "client.example");
	CMD_OK("LhLo x", SMTP_VERB_LHLO, "x");
	CMD_OK("MAIL FROM:<a@b>", SMTP_VERB_MAIL, "FROM:<a@b>");
	CMD_OK("rcpt TO:<a@b>", SMTP_VERB_RCPT, "TO:<a@b>");
	CMD_OK("DATA", SMTP_VERB_DATA, "");
	CMD_OK("DATA ", SMTP_VERB_DATA, "");
	CMD_OK("data  \t ", SMTP_VERB_DATA, "");
	CMD_OK("RSET", SMTP_VERB_RSET, "");
	CMD_OK("NOOP anything at all", SMTP_VERB_NOOP, "anything at all");
	CMD_OK("QUIT", SMTP_VERB_QUIT, "");
	CMD_OK("VRFY user", SMTP_VERB_VRFY, "user");
	CMD_OK("EXPN list", SMTP_VERB_EXPN, "list");
	CMD_OK("HELP", SMTP_VERB_HELP, "");
	CMD_OK("StartTLS", SMTP_VERB_STARTTLS, "");
	CMD_OK("AUTH PLAIN AGEAYg==", SMTP_VERB_AUTH, "PLAIN AGEAYg==");
	CMD_OK("BDAT 100 LAST", SMTP_VERB_BDAT, "100 LAST");
	CMD_OK("XYZZY", SMTP_VERB_UNKNOWN, "");
	CMD_OK("GET / HTTP/1.1", SMTP_VERB_UNKNOWN, "/ HTTP/1.1");
	CMD_OK("MAILX FROM:<a@b>", SMTP_VERB_UNKNOWN, "FROM:<a@b>");
	CMD_OK("MAI", SMTP_VERB_UNKNOWN, "");
	CMD_OK("STARTTLSSTARTTLSSTARTTLS", SMTP_VERB_UNKNOWN, "");
	CMD_OK("NOOP a\tb", SMTP_VERB_NOOP, "a\tb");
	/* the verb text as sent, NUL-terminated */
	CHECK_INT(cmd("eHlO x", 6, &c, &l), 0);
	CHECK_STR(c.verb_text, "eHlO");
	free(l);
	CHECK_INT(cmd("QUIT", 4, &c, &l), 0);
	CHECK_STR(c.verb_text, "QUIT");
	CHECK_STR(c.args, "");
	free(l);

	CMD_BAD("");
	CMD_BAD(" HELO x");
	CMD_BAD("HELO\0x");
	CMD_BAD("MAIL FROM:<a@b>\0 SIZE=1");
	CMD_BAD("\0");
	CMD_BAD("HELO x\ry");
	CMD_BAD("HELO x\ny");
	CMD_BAD("HELO \x1b[31m");
	CMD_BAD("HEL\xc3\x96 x");
	CMD_BAD("MAIL\tFROM:<a@b>");
	CMD_BAD("\x7f");
}

static int mail(const char *args, struct smtp_path_args *a, char **copy_r)
{
	const char *error = NULL;
	*copy_r = strdup(args);
	int ret = smtp_parse_mail_args(*copy_r, a, &error);
	CHECK(ret == 0 || error != NULL);
	return ret;
}

static int rcpt(const char *args, struct smtp_path_args *a, char **copy_r)
{
	const char *error = NULL;
	*copy_r = strdup(args);
	int ret = smtp_parse_rcpt_args(*copy_r, a, &error);
	CHECK(ret == 0 || error != NULL);
	return ret;
}

static void test_mail_rcpt(void)
{
	struct smtp_path_args a;
	char *p;
	const struct smtp_param *prm;

	CHECK_INT(mail("FROM:<User@Example.COM>", &a, &p), 0);
	CHECK(!a.addr.null_path);
	CHECK_STR(a.addr.local, "user");
	CHECK_STR(a.addr.domain, "example.com");
	CHECK_INT(a.param_count, 0);
	free(p);

	CHECK_INT(mail("from:<>", &a, &p), 0);
	CHECK(a.addr.null_path);
	free(p);
	CHECK_INT(mail("FROM: <a@b.c>", &a, &p), 0);
	CHECK_STR(a.addr.local, "a");
	free(p);
	CHECK_INT(mail("FROM:<@relay.example,@r2.example:a@b.c>", &a, &p), 0);
	CHECK_STR(a.addr.domain, "b.c");
	free(p);

	CHECK_INT(mail("FROM:<a@b.c> SIZE=12345 body=8bitmime", &a, &p), 0);
	CHECK_INT(a.param_count, 2);
	CHECK_STR(a.params[0].keyword, "SIZE");
	CHECK_STR(a.params[0].value, "12345");
	CHECK_STR(a.params[1].keyword, "BODY");
	CHECK_STR(a.params[1].value, "8bitmime");
	prm = smtp_path_args_param(&a, "BODY");
	CHECK(prm != NULL && strcmp(prm->value, "8bitmime") == 0);
	prm = smtp_path_args_param(&a, "size");
	CHECK(prm != NULL && strcmp(prm->value, "12345") == 0);
	CHECK(smtp_path_args_param(&a, "SMTPUTF8") == NULL);
	free(p);

	/* unknown and value-less parameters are returned, not judged */
	CHECK_INT(mail("FROM:<a@b.c>  X-FOO=bar  SMTPUTF8 ", &a, &p), 0);
	CHECK_INT(a.param_count, 2);
	CHECK_STR(a.params[0].keyword, "X-FOO");
	CHECK_STR(a.params[0].value, "bar");
	CHECK_STR(a.params[1].keyword, "SMTPUTF8");
	CHECK(a.params[1].value == NULL);
	free(p);
	CHECK_INT(mail("FROM:<a@b.c> RET=HDRS ENVID=QQ314159", &a, &p), 0);
	CHECK_INT(a.param_count, 2);
	free(p);

	/* malformed */
	CHECK_INT(mail("FROM:<a@b.c> SIZE=", &a, &p), -1); free(p);
	CHECK_INT(mail("FROM:<a@b.c> =5", &a, &p), -1); free(p);
	CHECK_INT(mail("FROM:<a@b.c> SIZE=1 SIZE=2", &a, &p), 0);
	CHECK_INT(a.param_count, 2);
	CHECK_STR(a.params[1].value, "2");
	free(p);
	CHECK_INT(mail("FROM:<a@b.c> A B C D E F G H I", &a, &p), -1); free(p);
	CHECK_INT(mail("FROM:<a@b.c> A B C D E F G H", &a, &p), 0);
	CHECK_INT(a.param_count, 8);
	free(p);
	CHECK_INT(mail("FROM:<a@b.c> SIZE=1=2", &a, &p), -1); free(p);
	CHECK_INT(mail("FROM:<a@b.c> B_ODY=7BIT", &a, &p), -1); free(p);
	CHECK_INT(mail("FROM:<a@b.c>SIZE=1", &a, &p), -1); free(p);
	CHECK_INT(mail("FROM:a@b.c", &a, &p), -1); free(p);
	CHECK_INT(mail("FROM <a@b.c>", &a, &p), -1); free(p);
	CHECK_INT(mail("FROM", &a, &p), -1); free(p);
	CHECK_INT(mail("", &a, &p), -1); free(p);
	CHECK_INT(mail("TO:<a@b.c>", &a, &p), -1); free(p);
	CHECK_INT(mail("FROM:<a@b.c", &a, &p), -1); free(p);
	CHECK_INT(mail("FROM:<a b@c.d>", &a, &p), -1); free(p);
	CHECK_INT(mail("FROM:<a@b c.d>", &a, &p), -1); free(p);
	CHECK_INT(mail("FROM:<ab.c>", &a, &p), -1); free(p);
	CHECK_INT(mail("FROM:<@b.c>", &a, &p), -1); free(p);
	CHECK_INT(mail("FROM:<a@>", &a, &p), -1); free(p);
	CHECK_INT(mail("FROM:<<a@b.c>>", &a, &p), -1); free(p);

	/* overlong addresses */
	char big[600];
	memcpy(big, "FROM:<", 6);
	memset(big + 6, 'a', 65);
	memcpy(big + 71, "@b.c>", 6);
	CHECK_INT(mail(big, &a, &p), -1); free(p);
	memset(big + 6, 'a', 64);
	memcpy(big + 70, "@b.c>", 6);
	CHECK_INT(mail(big, &a, &p), 0); free(p);
	memcpy(big, "FROM:<a@", 8);
	size_t n = 8;
	for (int i = 0; i < 5; i++) {
		memset(big + n, 'd', 60);
		n += 60;
		big[n++] = '.';
	}
	memcpy(big + n, "com>", 5);
	CHECK_INT(mail(big, &a, &p), -1); free(p);

	/* RCPT */
	CHECK_INT(rcpt("TO:<Bob@Example.org> NOTIFY=NEVER", &a, &p), 0);
	CHECK_STR(a.addr.local, "bob");
	CHECK_STR(a.addr.domain, "example.org");
	CHECK_INT(a.param_count, 1);
	CHECK_STR(a.params[0].keyword, "NOTIFY");
	free(p);
	CHECK_INT(rcpt("to: <x@y.z>", &a, &p), 0); free(p);
	/* the null path is for MAIL only */
	CHECK_INT(rcpt("TO:<>", &a, &p), -1); free(p);
	CHECK_INT(rcpt("FROM:<x@y.z>", &a, &p), -1); free(p);
	CHECK_INT(rcpt("TO:x@y.z", &a, &p), -1); free(p);
	/* RFC 5321 4.5.1 postmaster without a domain */
	CHECK_INT(rcpt("TO:<PostMaster>", &a, &p), 0);
	CHECK_STR(a.addr.local, "postmaster");
	CHECK_STR(a.addr.domain, "");
	free(p);
	CHECK_INT(rcpt("TO:<postmaster@example.org>", &a, &p), 0);
	CHECK_STR(a.addr.domain, "example.org");
	free(p);
	CHECK_INT(rcpt("TO:<postmasterx>", &a, &p), -1); free(p);
	CHECK_INT(mail("FROM:<postmaster>", &a, &p), -1); free(p);
	/* a quoted local part may hold '>' and spaces */
	CHECK_INT(rcpt("TO:<\"a> b\"@y.z> X=1", &a, &p), 0);
	CHECK_STR(a.addr.local, "\"a> b\"");
	CHECK_INT(a.param_count, 1);
	free(p);
}

static void test_size(void)
{
	unsigned long long v;
	CHECK_INT(smtp_parse_size("0", &v), 0);
	CHECK_INT(v, 0);
	CHECK_INT(smtp_parse_size("10485760", &v), 0);
	CHECK_INT(v, 10485760);
	CHECK_INT(smtp_parse_size("0042", &v), 0);
	CHECK_INT(v, 42);
	CHECK_INT(smtp_parse_size("18446744073709551615", &v), 0);
	CHECK(v == UINT64_MAX);
	CHECK_INT(smtp_parse_size("18446744073709551616", &v), -1);
	CHECK_INT(smtp_parse_size("99999999999999999999999", &v), -1);
	CHECK_INT(smtp_parse_size("", &v), -1);
	CHECK_INT(smtp_parse_size(NULL, &v), -1);
	CHECK_INT(smtp_parse_size("-1", &v), -1);
	CHECK_INT(smtp_parse_size("+1", &v), -1);
	CHECK_INT(smtp_parse_size("1k", &v), -1);
	CHECK_INT(smtp_parse_size(" 1", &v), -1);
	CHECK_INT(smtp_parse_size("0x10", &v), -1);
}

int main(void)
{
	test_commands();
	test_mail_rcpt();
	test_size();
	TEST_MAIN_END();
}
