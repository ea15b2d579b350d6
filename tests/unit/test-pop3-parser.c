/*
 * Unit tests for pop3-parser: command lines, argument splitting (PASS kept
 * whole), message numbers and TOP line counts. Each line is copied into a
 * buffer of exactly len + 1 bytes so ASan sees any overrun.
 */
#include "test.h"

#include "pop3-parser.h"

static int cmd(const char *s, size_t len, struct pop3_command *c, char **line_r)
{
	const char *error = NULL;
	char *p = malloc(len + 1);
	memcpy(p, s, len);
	p[len] = 'X';
	*line_r = p;
	int ret = pop3_parse_command(p, len, c, &error);
	CHECK(ret == 0 || error != NULL);
	return ret;
}

#define CMD(text, c, l) cmd(text, sizeof(text) - 1, c, l)

static void test_commands(void)
{
	struct pop3_command c;
	char *l;

	CHECK_INT(CMD("STAT", &c, &l), 0);
	CHECK_INT(c.verb, POP3_VERB_STAT);
	CHECK_INT(c.argc, 0);
	CHECK_STR(c.verb_text, "STAT");
	CHECK_STR(c.rest, "");
	free(l);

	static const struct { const char *text; enum pop3_verb verb; } verbs[] = {
		{ "user", POP3_VERB_USER }, { "Pass", POP3_VERB_PASS },
		{ "apop", POP3_VERB_APOP }, { "auth", POP3_VERB_AUTH },
		{ "stat", POP3_VERB_STAT }, { "list", POP3_VERB_LIST },
		{ "retr", POP3_VERB_RETR }, { "dele", POP3_VERB_DELE },
		{ "noop", POP3_VERB_NOOP }, { "rset", POP3_VERB_RSET },
		{ "QuIt", POP3_VERB_QUIT }, { "top", POP3_VERB_TOP },
		{ "uidl", POP3_VERB_UIDL }, { "capa", POP3_VERB_CAPA },
		{ "stls", POP3_VERB_STLS }, { "XTND", POP3_VERB_UNKNOWN },
		{ "TO", POP3_VERB_UNKNOWN }, { "TOPS", POP3_VERB_UNKNOWN },
	};
	for (size_t i = 0; i < sizeof(verbs) / sizeof(verbs[0]); i++) {
		CHECK_INT(cmd(verbs[i].text, strlen(verbs[i].text), &c, &l), 0);
		CHECK_INT(c.verb, verbs[i].verb);
		CHECK_STR(c.verb_text, verbs[i].text);
		free(l);
	}

	CHECK_INT(CMD("TOP 1 10", &c, &l), 0);
	CHECK_INT(c.verb, POP3_VERB_TOP);
	CHECK_INT(c.argc, 2);
	CHECK_STR(c.argv[0], "1");
	CHECK_STR(c.argv[1], "10");
	free(l);

	CHECK_INT(CMD("list  3 ", &c, &l), 0);
	CHECK_INT(c.argc, 1);
	CHECK_STR(c.argv[0], "3");
	free(l);

	CHECK_INT(CMD("USER alice@example.org", &c, &l), 0);
	CHECK_INT(c.argc, 1);
	CHECK_STR(c.argv[0], "alice@example.org");
	CHECK_STR(c.rest, "alice@example.org");
	free(l);

	CHECK_INT(CMD("RETR ", &c, &l), 0);
	CHECK_INT(c.argc, 0);
	free(l);

	/* PASS keeps spaces, leading and trailing ones included */
	CHECK_INT(CMD("PASS correct horse battery staple", &c, &l), 0);
	CHECK_INT(c.verb, POP3_VERB_PASS);
	CHECK_INT(c.argc, 1);
	CHECK_STR(c.argv[0], "correct horse battery staple");
	CHECK_STR(c.rest, "correct horse battery staple");
	free(l);
	CHECK_INT(CMD("pass  two  spaces ", &c, &l), 0);
	CHECK_STR(c.rest, " two  spaces ");
	free(l);
	CHECK_INT(CMD("PASS", &c, &l), 0);
	CHECK_INT(c.argc, 0);
	CHECK_STR(c.rest, "");
	free(l);
	CHECK_INT(CMD("PASS a b c d", &c, &l), 0);
	free(l);

	CHECK_INT(CMD("AUTH PLAIN AGFsaWNlAHNlY3JldA==", &c, &l), 0);
	CHECK_INT(c.argc, 2);
	CHECK_STR(c.argv[1], "AGFsaWNlAHNlY3JldA==");
	free(l);
	CHECK_INT(CMD("APOP mrose c4c9334bac560ecc979e58001b3e22fb", &c, &l), 0);
	CHECK_INT(c.argc, 2);
	free(l);

	/* errors */
	CHECK_INT(CMD("", &c, &l), -1); free(l);
	CHECK_INT(CMD(" STAT", &c, &l), -1); free(l);
	CHECK_INT(CMD("STAT\0", &c, &l), -1); free(l);
	CHECK_INT(CMD("RETR 1\0 2", &c, &l), -1); free(l);
	CHECK_INT(CMD("PASS se\0cret", &c, &l), -1); free(l);
	CHECK_INT(CMD("PASS se\rcret", &c, &l), -1); free(l);
	CHECK_INT(CMD("USER a\tb", &c, &l), -1); free(l);
	CHECK_INT(CMD("TOP 1 2 3", &c, &l), -1); free(l);
	CHECK_INT(CMD("STATUS", &c, &l), -1); free(l);
	CHECK_INT(CMD("ST\xc3\x84T", &c, &l), -1); free(l);
	CHECK_INT(CMD("\x7f", &c, &l), -1); free(l);
}

static void test_numbers(void)
{
	unsigned int n;
	long lc;

	CHECK_INT(pop3_parse_msgnum("1", &n), 0);
	CHECK_INT(n, 1);
	CHECK_INT(pop3_parse_msgnum("007", &n), 0);
	CHECK_INT(n, 7);
	CHECK_INT(pop3_parse_msgnum("4294967295", &n), 0);
	CHECK(n == 4294967295u);
	CHECK_INT(pop3_parse_msgnum("0000000000004294967295", &n), 0);
	CHECK_INT(pop3_parse_msgnum("4294967296", &n), -1);
	CHECK_INT(pop3_parse_msgnum("99999999999999999999999", &n), -1);
	CHECK_INT(pop3_parse_msgnum("0", &n), -1);
	CHECK_INT(pop3_parse_msgnum("000", &n), -1);
	CHECK_INT(pop3_parse_msgnum("+1", &n), -1);
	CHECK_INT(pop3_parse_msgnum("-1", &n), -1);
	CHECK_INT(pop3_parse_msgnum("1a", &n), -1);
	CHECK_INT(pop3_parse_msgnum("a1", &n), -1);
	CHECK_INT(pop3_parse_msgnum("", &n), -1);
	CHECK_INT(pop3_parse_msgnum(NULL, &n), -1);
	CHECK_INT(pop3_parse_msgnum(" 1", &n), -1);
	CHECK_INT(pop3_parse_msgnum("1 ", &n), -1);
	CHECK_INT(pop3_parse_msgnum("0x1", &n), -1);

	CHECK_INT(pop3_parse_linecount("0", &lc), 0);
	CHECK_INT(lc, 0);
	CHECK_INT(pop3_parse_linecount("00", &lc), 0);
	CHECK_INT(lc, 0);
	CHECK_INT(pop3_parse_linecount("25", &lc), 0);
	CHECK_INT(lc, 25);
	CHECK_INT(pop3_parse_linecount("9223372036854775807", &lc), 0);
	CHECK_INT(lc, 9223372036854775807LL);
	CHECK_INT(pop3_parse_linecount("9223372036854775808", &lc), -1);
	CHECK_INT(pop3_parse_linecount("-1", &lc), -1);
	CHECK_INT(pop3_parse_linecount("+1", &lc), -1);
	CHECK_INT(pop3_parse_linecount("", &lc), -1);
	CHECK_INT(pop3_parse_linecount("1x", &lc), -1);
}

int main(void)
{
	test_commands();
	test_numbers();
	TEST_MAIN_END();
}
