/*
 * Unit tests for mail-address: bare addresses, paths, normalisation,
 * length limits, domains and address literals, formatting, and UTF-8
 * local parts (mail_address_parse_utf8, mail_utf8_is_valid).
 */
#include "test.h"

#include "mail-address.h"

static int parse(const char *s, struct mail_address *a)
{
	const char *error = NULL;
	int ret = mail_address_parse(s, strlen(s), a, &error);
	CHECK(ret == 0 || error != NULL);
	return ret;
}

static int parse_path(const char *s, bool allow_null, struct mail_address *a, size_t *end)
{
	const char *error = NULL;
	int ret = mail_address_parse_path(s, strlen(s), allow_null, a, end, &error);
	CHECK(ret == 0 || error != NULL);
	return ret;
}

static void test_parse(void)
{
	struct mail_address a;

	CHECK_INT(parse("User.Name+tag@Example.ORG", &a), 0);
	CHECK(!a.null_path);
	CHECK_STR(a.local, "user.name+tag");
	CHECK_STR(a.domain, "example.org");
	CHECK_INT(parse("a@b", &a), 0);
	CHECK_INT(parse("x!#$%&'*+-/=?^_`{|}~@example.com", &a), 0);
	CHECK_INT(parse("a@sub-domain.x-y.example", &a), 0);
	CHECK_INT(parse("a@123.example", &a), 0);
	CHECK_INT(parse("a@[192.0.2.1]", &a), 0);
	CHECK_STR(a.domain, "[192.0.2.1]");
	CHECK_INT(parse("a@[ipv6:2001:DB8::1]", &a), 0);
	CHECK_STR(a.domain, "[IPv6:2001:db8::1]");

	/* quoted local parts: canonical form */
	CHECK_INT(parse("\"Abc\"@x.y", &a), 0);
	CHECK_STR(a.local, "abc");
	CHECK_INT(parse("\"a b\"@x.y", &a), 0);
	CHECK_STR(a.local, "\"a b\"");
	CHECK_INT(parse("\"a\\\"b\"@x.y", &a), 0);
	CHECK_STR(a.local, "\"a\\\"b\"");
	CHECK_INT(parse("\"a\\xb\"@x.y", &a), 0);
	CHECK_STR(a.local, "axb");
	CHECK_INT(parse("\"a@b\"@x.y", &a), 0);
	CHECK_STR(a.local, "\"a@b\"");
	CHECK_INT(parse("\"a..b\"@x.y", &a), 0);
	CHECK_STR(a.local, "\"a..b\"");

	/* refused */
	CHECK_INT(parse("", &a), -1);
	CHECK_INT(parse("user", &a), -1);
	CHECK_INT(parse("@example.org", &a), -1);
	CHECK_INT(parse("user@", &a), -1);
	CHECK_INT(parse("us er@example.org", &a), -1);
	CHECK_INT(parse("user@exa mple.org", &a), -1);
	CHECK_INT(parse(" user@example.org", &a), -1);
	CHECK_INT(parse("user@example.org ", &a), -1);
	CHECK_INT(parse("a\tb@example.org", &a), -1);
	CHECK_INT(parse("a\rb@example.org", &a), -1);
	CHECK_INT(parse("a\x7f@example.org", &a), -1);
	CHECK_INT(parse("\xc3\xa9@example.org", &a), -1);
	CHECK_INT(parse("a@b@c", &a), -1);
	CHECK_INT(parse(".a@b", &a), -1);
	CHECK_INT(parse("a.@b", &a), -1);
	CHECK_INT(parse("a..b@c", &a), -1);
	CHECK_INT(parse("a(b)@c", &a), -1);
	CHECK_INT(parse("a<b@c", &a), -1);
	CHECK_INT(parse("\"\"@c", &a), -1);
	CHECK_INT(parse("\"a@c", &a), -1);
	CHECK_INT(parse("\"a\"b@c", &a), -1);
	CHECK_INT(parse("\"a\tb\"@c", &a), -1);
	CHECK_INT(parse("\"a\\", &a), -1);
	CHECK_INT(parse("a@-b.c", &a), -1);
	CHECK_INT(parse("a@b-.c", &a), -1);
	CHECK_INT(parse("a@b..c", &a), -1);
	CHECK_INT(parse("a@.b", &a), -1);
	CHECK_INT(parse("a@b.", &a), -1);
	CHECK_INT(parse("a@b_c.d", &a), -1);
	CHECK_INT(parse("a@[1.2.3]", &a), -1);
	CHECK_INT(parse("a@[1.2.3.256]", &a), -1);
	CHECK_INT(parse("a@[01.2.3.4]", &a), -1);
	CHECK_INT(parse("a@[IPv6:1.2.3.4]", &a), -1);
	CHECK_INT(parse("a@[IPv6:zz::1]", &a), -1);
	CHECK_INT(parse("a@[2001:db8::1]", &a), -1);
	CHECK_INT(parse("a@[]", &a), -1);
	CHECK_INT(parse("a@[1.2.3.4", &a), -1);
	CHECK_INT(parse("a@tag:[1.2.3.4]", &a), -1);

	/* an embedded NUL (explicit length) is refused */
	const char *error;
	CHECK_INT(mail_address_parse("a\0b@c.d", 7, &a, &error), -1);
	CHECK_INT(mail_address_parse("ab@c.d\0", 7, &a, &error), -1);
}

static void test_limits(void)
{
	struct mail_address a;
	char s[700];

	/* local part: 64 ok, 65 refused */
	memset(s, 'a', 64);
	memcpy(s + 64, "@b.c", 5);
	CHECK_INT(parse(s, &a), 0);
	CHECK_INT(strlen(a.local), 64);
	memset(s, 'a', 65);
	memcpy(s + 65, "@b.c", 5);
	CHECK_INT(parse(s, &a), -1);
	/* quoted local part: 64 octets with quotes */
	s[0] = '"';
	memset(s + 1, ' ', 62);
	s[63] = '"';
	memcpy(s + 64, "@b.c", 5);
	CHECK_INT(parse(s, &a), 0);
	s[0] = '"';
	memset(s + 1, '\\', 62);
	s[63] = '"';
	CHECK_INT(parse(s, &a), 0);
	CHECK_INT(strlen(a.local), 64);
	memset(s + 1, ' ', 63);
	s[64] = '"';
	memcpy(s + 65, "@b.c", 5);
	CHECK_INT(parse(s, &a), -1);

	/* labels: 63 ok, 64 refused */
	memcpy(s, "a@", 2);
	memset(s + 2, 'd', 63);
	memcpy(s + 65, ".com", 5);
	CHECK_INT(parse(s, &a), 0);
	memset(s + 2, 'd', 64);
	memcpy(s + 66, ".com", 5);
	CHECK_INT(parse(s, &a), -1);

	/* domain: 255 ok, 256 refused */
	size_t n = 2;
	memcpy(s, "a@", 2);
	for (int i = 0; i < 4; i++) {
		memset(s + n, 'x', 63);
		n += 63;
		s[n++] = '.';
	}
	/* 4 * 64 = 256 octets so far; drop the dot and 1 more: 254 */
	n -= 2;
	s[n] = '\0';
	CHECK_INT(strlen(s) - 2, 254);
	CHECK_INT(parse(s, &a), 0);
	s[n++] = 'y';
	s[n] = '\0';
	CHECK_INT(parse(s, &a), 0);
	CHECK_INT(strlen(a.domain), 255);
	s[n++] = 'z';
	s[n] = '\0';
	CHECK_INT(parse(s, &a), -1);

	CHECK(mail_domain_is_valid("example.org", 11));
	CHECK(mail_domain_is_valid("[127.0.0.1]", 11));
	CHECK(!mail_domain_is_valid("", 0));
	CHECK(!mail_domain_is_valid("exa mple", 8));
	CHECK(!mail_domain_is_valid("example.org\0x", 13));
}

static void test_path(void)
{
	struct mail_address a;
	size_t end;

	CHECK_INT(parse_path("<a@b.c>", false, &a, &end), 0);
	CHECK_INT(end, 7);
	CHECK_STR(a.local, "a");
	CHECK_INT(parse_path("<A@B.C> SIZE=1", false, &a, &end), 0);
	CHECK_INT(end, 7);
	CHECK_STR(a.domain, "b.c");
	CHECK_INT(parse_path("<>", true, &a, &end), 0);
	CHECK(a.null_path);
	CHECK_INT(end, 2);
	CHECK_INT(parse_path("<> x", true, &a, &end), 0);
	CHECK_INT(end, 2);
	CHECK_INT(parse_path("<>", false, &a, &end), -1);
	CHECK_INT(parse_path("<@r1.example,@r2.example:u@d.example>", false, &a, &end), 0);
	CHECK_STR(a.local, "u");
	CHECK_STR(a.domain, "d.example");
	CHECK_INT(parse_path("<\"x>y\"@d.example>", false, &a, &end), 0);
	CHECK_STR(a.local, "\"x>y\"");
	CHECK_INT(end, 17);

	CHECK_INT(parse_path("a@b.c", false, &a, &end), -1);
	CHECK_INT(parse_path("", true, &a, &end), -1);
	CHECK_INT(parse_path("<a@b.c", false, &a, &end), -1);
	CHECK_INT(parse_path("<", true, &a, &end), -1);
	CHECK_INT(parse_path("<@r1:u@d.example>", false, &a, &end), 0);
	CHECK_INT(parse_path("<@:u@d.example>", false, &a, &end), -1);
	CHECK_INT(parse_path("<@r1,u@d.example>", false, &a, &end), -1);
	CHECK_INT(parse_path("<@r1 u@d.example>", false, &a, &end), -1);
	CHECK_INT(parse_path("<a b@c.d>", false, &a, &end), -1);
	CHECK_INT(parse_path("< a@c.d>", false, &a, &end), -1);
	CHECK_INT(parse_path("<a@c.d >", false, &a, &end), -1);
	CHECK_INT(parse_path("<\"a@c.d>", false, &a, &end), -1);
	const char *error;
	CHECK_INT(mail_address_parse_path("<a\0@c.d>", 8, false, &a, &end, &error), -1);

	/* overlong path */
	char s[800];
	s[0] = '<';
	memset(s + 1, 'a', 700);
	memcpy(s + 701, "@b.c>", 6);
	CHECK_INT(parse_path(s, false, &a, &end), -1);
}

static void test_format(void)
{
	struct mail_address a;
	char out[400];

	CHECK_INT(parse("Joe@Example.Com", &a), 0);
	CHECK_INT(mail_address_format(&a, out, sizeof(out)), 15);
	CHECK_STR(out, "joe@example.com");
	CHECK_INT(mail_address_format(&a, out, 5), 15);
	CHECK_STR(out, "joe@");
	CHECK_INT(mail_address_format(&a, out, 1), 15);
	CHECK_STR(out, "");
	CHECK_INT(mail_address_format(&a, NULL, 0), 15);
	size_t end;
	CHECK_INT(parse_path("<>", true, &a, &end), 0);
	CHECK_INT(mail_address_format(&a, out, sizeof(out)), 0);
	CHECK_STR(out, "");
	/* formatted addresses parse back to themselves */
	CHECK_INT(parse("\"A\\\\B c\"@[IPv6:::1]", &a), 0);
	mail_address_format(&a, out, sizeof(out));
	struct mail_address b;
	CHECK_INT(parse(out, &b), 0);
	CHECK_STR(b.local, a.local);
	CHECK_STR(b.domain, a.domain);
	CHECK_STR(out, "\"a\\\\b c\"@[IPv6:::1]");
}

static int parse8(const char *s, struct mail_address *a)
{
	const char *error = NULL;
	int ret = mail_address_parse_utf8(s, strlen(s), a, &error);
	CHECK(ret == 0 || error != NULL);
	return ret;
}

static bool valid8(const char *s)
{
	return mail_utf8_is_valid(s, strlen(s));
}

static void test_utf8(void)
{
	struct mail_address a;

	/* the ASCII parser still refuses 8-bit octets */
	CHECK_INT(parse("\xc3\xa9lodie@example.test", &a), -1);
	/* UTF-8 local parts; only ASCII is lower-cased */
	CHECK_INT(parse8("\xc3\xa9lodie@example.test", &a), 0);
	CHECK_STR(a.local, "\xc3\xa9lodie");
	CHECK_INT(parse8("\xc3\x89LODIE@Example.TEST", &a), 0);
	CHECK_STR(a.local, "\xc3\x89lodie");    /* É stays É: no Unicode folding */
	CHECK_STR(a.domain, "example.test");
	CHECK_INT(parse8("\xe7\x94\xa8\xe6\x88\xb7.\xf0\x9f\x98\x80@x.y", &a), 0); /* 用户.😀 */
	CHECK_STR(a.local, "\xe7\x94\xa8\xe6\x88\xb7.\xf0\x9f\x98\x80");
	CHECK_INT(parse8("\"\xc3\xa9 l\"@x.y", &a), 0); /* quoted, with a space */
	CHECK_STR(a.local, "\"\xc3\xa9 l\"");
	CHECK_INT(parse8("\"\xc3\xa9l\"@x.y", &a), 0); /* quoted but a dot-string */
	CHECK_STR(a.local, "\xc3\xa9l");
	CHECK_INT(parse8("plain@x.y", &a), 0);
	CHECK_STR(a.local, "plain");

	/* the domain stays ASCII (A-labels) */
	CHECK_INT(parse8("a@\xc3\xa9t\xc3\xa9.example", &a), -1);
	CHECK_INT(parse8("a@xn--t-9fa.example", &a), 0);
	/* invalid UTF-8 */
	CHECK_INT(parse8("\xc3@x.y", &a), -1);            /* truncated */
	CHECK_INT(parse8("\xc3\x28@x.y", &a), -1);        /* bad continuation */
	CHECK_INT(parse8("\xa9@x.y", &a), -1);            /* lone continuation */
	CHECK_INT(parse8("\xc0\xaf@x.y", &a), -1);        /* overlong '/' */
	CHECK_INT(parse8("\xe0\x80\xaf@x.y", &a), -1);    /* overlong, 3 octets */
	CHECK_INT(parse8("\xed\xa0\x80@x.y", &a), -1);    /* surrogate U+D800 */
	CHECK_INT(parse8("\xf4\x90\x80\x80@x.y", &a), -1); /* above U+10FFFF */
	CHECK_INT(parse8("\xc2\x85@x.y", &a), -1);        /* C1 control NEL */
	CHECK_INT(parse8("\xff@x.y", &a), -1);
	/* the rest of the rules as for ASCII */
	CHECK_INT(parse8("\xc3\xa9..l@x.y", &a), -1);
	CHECK_INT(parse8("\xc3\xa9 l@x.y", &a), -1);
	CHECK_INT(parse8("\xc3\xa9l\x01@x.y", &a), -1);
	/* 64 octets, not characters: 32 two-octet letters fit, 33 do not */
	char local[80] = "";
	for (int i = 0; i < 32; i++)
		strcat(local, "\xc3\xa9");
	char addr[120];
	snprintf(addr, sizeof(addr), "%s@x.y", local);
	CHECK_INT(parse8(addr, &a), 0);
	snprintf(addr, sizeof(addr), "%se@x.y", local);
	CHECK_INT(parse8(addr, &a), -1);

	/* the validator at the edges */
	CHECK(valid8(""));
	CHECK(valid8("ascii"));
	CHECK(valid8("\xc2\xa0"));              /* U+00A0, the first after C1 */
	CHECK(valid8("\xdf\xbf"));              /* U+07FF */
	CHECK(valid8("\xe0\xa0\x80"));          /* U+0800 */
	CHECK(valid8("\xed\x9f\xbf"));          /* U+D7FF */
	CHECK(valid8("\xee\x80\x80"));          /* U+E000 */
	CHECK(valid8("\xf0\x90\x80\x80"));      /* U+10000 */
	CHECK(valid8("\xf4\x8f\xbf\xbf"));      /* U+10FFFF */
	CHECK(!valid8("\xc2\x80"));             /* U+0080, C1 */
	CHECK(!valid8("\xc2\x9f"));             /* U+009F, C1 */
	CHECK(!valid8("\xc1\xbf"));
	CHECK(!valid8("\xf0\x8f\xbf\xbf"));     /* overlong, 4 octets */
	CHECK(!valid8("\xed\xbf\xbf"));         /* surrogate U+DFFF */
	CHECK(!valid8("\xf5\x80\x80\x80"));
	CHECK(!valid8("\xe2\x82"));             /* truncated at the end */
	CHECK(!valid8("\xf0\x9f\x98"));
}

int main(void)
{
	test_parse();
	test_limits();
	test_path();
	test_format();
	test_utf8();
	TEST_MAIN_END();
}
