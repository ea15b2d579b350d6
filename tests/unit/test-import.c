/*
 * Unit tests of src/import: the dovecot-uidlist and courierpop3dsizelist
 * readers, Maildir names, mbox From_ splitting and mboxrd unquoting, the
 * CRLF form, header fields and dates; and the store's legacy UIDL (the mem
 * and SQLite backends, both pop3_ids modes). The import of whole mailboxes
 * is tested against Dovecot in tests/integration/test_import.py.
 */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "import-parse.h"
#include "store.h"
#include "test.h"

#define S(lit) lit, sizeof(lit) - 1
#define CHECK_LIT(a, alen, lit) CHECK_MEM(a, alen, lit, sizeof(lit) - 1)

static void test_uidlist(void)
{
	struct import_uidlist_header h;
	CHECK_INT(import_uidlist_parse_header(S("3 V1700000000 N7 G0123456789abcdef"), &h), 0);
	CHECK_INT(h.version, 3);
	CHECK_INT(h.uidvalidity, 1700000000);
	CHECK_INT(h.next_uid, 7);
	CHECK_INT(import_uidlist_parse_header(S("1 1234 5"), &h), 0);
	CHECK_INT(h.version, 1);
	CHECK_INT(h.uidvalidity, 1234);
	CHECK_INT(h.next_uid, 5);
	CHECK_INT(import_uidlist_parse_header(S("2 V1 N2"), &h), -1);     /* no version 2 */
	CHECK_INT(import_uidlist_parse_header(S("3 N7"), &h), -1);        /* no UIDVALIDITY */
	CHECK_INT(import_uidlist_parse_header(S(""), &h), -1);
	CHECK_INT(import_uidlist_parse_header(S("3 V99999999999 N1"), &h), -1);

	struct import_uidlist_rec r;
	CHECK_INT(import_uidlist_parse_line(3, S("12 :1700000000.M1P2.host:2,S"), &r), 0);
	CHECK_INT(r.uid, 12);
	CHECK(!r.has_uidl && !r.has_order);
	CHECK_STR(r.name, "1700000000.M1P2.host");
	CHECK_INT(import_uidlist_parse_line(3, S("3 W1234 Pabc-def O2 G77 :1700.M1.h,S=10"), &r), 0);
	CHECK_INT(r.uid, 3);
	CHECK(r.has_uidl && r.has_order);
	CHECK_STR(r.uidl, "abc-def");
	CHECK_INT(r.order, 2);
	CHECK_STR(r.name, "1700.M1.h,S=10");
	/* An empty P: Dovecot then uses the base file name. */
	CHECK_INT(import_uidlist_parse_line(3, S("4 P :name"), &r), 0);
	CHECK(r.has_uidl);
	CHECK_STR(r.uidl, "");
	CHECK_INT(import_uidlist_parse_line(1, S("5 1700000000.M1P2.host:2,"), &r), 0);
	CHECK_INT(r.uid, 5);
	CHECK_STR(r.name, "1700000000.M1P2.host");
	CHECK_INT(import_uidlist_parse_line(3, S("0 :name"), &r), -1);      /* UID 0 */
	CHECK_INT(import_uidlist_parse_line(3, S("x :name"), &r), -1);
	CHECK_INT(import_uidlist_parse_line(3, S("6 Pabc"), &r), -1);       /* no file name */
	CHECK_INT(import_uidlist_parse_line(3, S("6 pabc :name"), &r), -1); /* lower-case key */
	CHECK_INT(import_uidlist_parse_line(3, S("6 Oz :name"), &r), -1);
	CHECK_INT(import_uidlist_parse_line(3, S("6 :"), &r), -1);          /* empty name */
	char longp[200] = "7 P";
	memset(longp + 3, 'u', 100);
	memcpy(longp + 103, " :n", 4);
	CHECK_INT(import_uidlist_parse_line(3, longp, strlen(longp), &r), -1);

	char u[IMPORT_DOVECOT_UIDL_LEN + 1];
	import_dovecot_uidl(1, 0x6b0f554f, u);
	CHECK_STR(u, "000000016b0f554f");  /* as Dovecot 2.3 prints it */
	import_dovecot_uidl(0xffffffffu, 1, u);
	CHECK_STR(u, "ffffffff00000001");
}

static void test_courier(void)
{
	struct import_courier_header h;
	CHECK_INT(import_courier_parse_header(S("/3 8 1234567"), &h), 0);
	CHECK_INT(h.version, 3);
	CHECK_INT(h.next_uid, 8);
	CHECK_INT(h.uidvalidity, 1234567);
	CHECK_INT(import_courier_parse_header(S("/2 8"), &h), 0);
	CHECK_INT(h.uidvalidity, 0);
	CHECK_INT(import_courier_parse_header(S("/4 8 1"), &h), -1);
	CHECK_INT(import_courier_parse_header(S("3 8 1"), &h), -1);

	struct import_courier_rec r;
	CHECK_INT(import_courier_parse_line(S("1600000000.111.mx:2,S 1234 5:1234567:0"), &r), 0);
	CHECK_STR(r.name, "1600000000.111.mx");
	CHECK_INT(r.size, 1234);
	CHECK_STR(r.uidl, "UID5-1234567");
	/* Version 2: no UTF-8 flag; a UIDVALIDITY of 0 prints as "UID<n>". */
	CHECK_INT(import_courier_parse_line(S("a b c 10 9:0"), &r), 0);
	CHECK_STR(r.name, "a b c");   /* split from the right: names may hold spaces */
	CHECK_STR(r.uidl, "UID9");
	CHECK_INT(import_courier_parse_line(S("cur/16.x:2, 3 2:7:1"), &r), 0);
	CHECK_STR(r.name, "16.x");
	CHECK_INT(import_courier_parse_line(S("name 10"), &r), -1);
	CHECK_INT(import_courier_parse_line(S("name x 1:2"), &r), -1);
	CHECK_INT(import_courier_parse_line(S("name 10 1"), &r), -1);
	CHECK_INT(import_courier_parse_line(S("name 10 0:5"), &r), -1);
	CHECK_INT(import_courier_parse_line(S(" 10 1:5"), &r), -1);
}

static void test_maildir_names(void)
{
	int64_t sec = 0, usec = 0;
	CHECK(import_maildir_name_time("1700000000.M123456P77.host,S=10:2,S", &sec, &usec));
	CHECK_INT(sec, 1700000000);
	CHECK_INT(usec, 123456);
	CHECK(import_maildir_name_time("1600000000.111.mx", &sec, &usec));
	CHECK_INT(sec, 1600000000);
	CHECK_INT(usec, 0);
	CHECK(!import_maildir_name_time("host.1700000000", &sec, &usec));
	CHECK(!import_maildir_name_time("17.M1", &sec, &usec));       /* implausibly early */
	CHECK(!import_maildir_name_time("1700000000", &sec, &usec));  /* no '.' */
	CHECK_INT(import_maildir_base_len("1700000000.M1.h:2,S"), 15);
	CHECK_INT(import_maildir_base_len("1700000000.M1.h"), 15);
}

static void test_mbox(void)
{
	const char file[] =
		"junk before\n\n"
		"From a@b Tue Nov 14 22:13:20 2023\n"
		"Subject: one\n"
		"\n"
		">From the start\n"
		">>From twice\n"
		"From in the middle, not after an empty line\n"
		"\n"
		"From c@d  Wed Nov 15 01:02:03 2023\n"
		"Subject: two\n"
		"\n"
		"last\n"
		"\n";
	size_t pos = 0;
	struct import_mbox_msg m;
	CHECK(import_mbox_next(file, sizeof(file) - 1, &pos, &m));
	CHECK_LIT(m.from_line, m.from_len, ("From a@b Tue Nov 14 22:13:20 2023"));
	CHECK_LIT(m.data, m.len, ("Subject: one\n\n>From the start\n>>From twice\n"
				   "From in the middle, not after an empty line\n"));
	int64_t sec = 0;
	CHECK(import_mbox_from_time(m.from_line, m.from_len, &sec));
	CHECK_INT(sec, 1700000000);
	struct buf out;
	buf_init(&out, 0);
	CHECK_INT(import_to_crlf(m.data, m.len, true, &out), 0);
	CHECK_STR(out.data, "Subject: one\r\n\r\n>From the start\r\n>>From twice\r\n"
			    "From in the middle, not after an empty line\r\n");
	CHECK(import_mbox_next(file, sizeof(file) - 1, &pos, &m));
	CHECK_LIT(m.data, m.len, ("Subject: two\n\nlast\n"));
	CHECK(import_mbox_from_time(m.from_line, m.from_len, &sec));
	CHECK_INT(sec, 1700010123);
	CHECK(!import_mbox_next(file, sizeof(file) - 1, &pos, &m));
	/* CRLF files, and a message without the final empty line. */
	const char crlf[] = "From x Tue Nov 14 22:13:20 2023\r\nA: 1\r\n\r\nb\r\n\r\n"
			    "From y Tue Nov 14 22:13:21 2023\r\nA: 2\r\n\r\nc";
	pos = 0;
	CHECK(import_mbox_next(crlf, sizeof(crlf) - 1, &pos, &m));
	CHECK_LIT(m.data, m.len, ("A: 1\r\n\r\nb\r\n"));
	CHECK(import_mbox_next(crlf, sizeof(crlf) - 1, &pos, &m));
	CHECK_LIT(m.data, m.len, ("A: 2\r\n\r\nc"));
	CHECK(!import_mbox_next(crlf, sizeof(crlf) - 1, &pos, &m));
	pos = 0;
	CHECK(!import_mbox_next(S("no mbox here\n"), &pos, &m));
	CHECK(!import_mbox_from_time(S("From someone"), &sec));

	/* The CRLF form: bare LF → CRLF, CRLF kept, no '>' removed, a last
	 * line without its end left so. */
	buf_reset(&out);
	CHECK_INT(import_to_crlf(S("a\nb\r\n>From c\nd"), false, &out), 0);
	CHECK_STR(out.data, "a\r\nb\r\n>From c\r\nd");
	/* mbox: the fields Dovecot and c-client keep their state in are left
	 * out of the header (folded lines too, any case, blanks before the
	 * colon), nowhere else; other fields that merely start alike stay. */
	buf_reset(&out);
	CHECK_INT(import_to_crlf(S("Status: RO\nSubject: s\nX-UID: 7\nX-Keywords: a\n b\n"
				   "x-status : A\nContent-Length: 3\nX-IMAPbase: 1 2\n"
				   "X-UIDL: u1\nStatus-Report: kept\nX-UIDx: kept\n\n"
				   "Status: in the body\n>From x\n"), true, &out), 0);
	CHECK_STR(out.data, "Subject: s\r\nX-UIDL: u1\r\nStatus-Report: kept\r\nX-UIDx: kept\r\n"
			    "\r\nStatus: in the body\r\n>From x\r\n");
	buf_reset(&out);
	CHECK_INT(import_to_crlf(S("Status: RO\nSubject: s\n\nb\n"), false, &out), 0);
	CHECK_STR(out.data, "Status: RO\r\nSubject: s\r\n\r\nb\r\n");   /* Maildir: as is */
	buf_deinit(&out);
}

static void test_headers_and_dates(void)
{
	const char msg[] = "Subject: hi\nx-uidl:   abc123  \nDate: Tue, 14 Nov 2023\n"
			   " 22:13:20 +0100\n\nX-UIDL: in the body\n";
	char v[128];
	CHECK(import_header_get(msg, sizeof(msg) - 1, "X-UIDL", v, sizeof(v)));
	CHECK_STR(v, "abc123");
	CHECK(import_header_get(msg, sizeof(msg) - 1, "Date", v, sizeof(v)));
	CHECK_STR(v, "Tue, 14 Nov 2023 22:13:20 +0100");
	int64_t sec = 0;
	CHECK(import_date_parse(v, &sec));
	CHECK_INT(sec, 1700000000 - 3600);
	CHECK(!import_header_get(msg, sizeof(msg) - 1, "Received", v, sizeof(v)));
	const char body_only[] = "Subject: x\n\nX-UIDL: no\n";
	CHECK(!import_header_get(body_only, sizeof(body_only) - 1, "X-UIDL", v, sizeof(v)));
	CHECK(import_date_parse("14 Nov 2023 22:13 -0000", &sec));
	CHECK_INT(sec, 1700000000 - 20);
	CHECK(import_date_parse("Tue, 14 Nov 23 22:13:20 GMT", &sec));
	CHECK_INT(sec, 1700000000);
	CHECK(!import_date_parse("yesterday", &sec));
	CHECK(!import_date_parse("14 Foo 2023 22:13:20", &sec));
}

/* The store keeps a delivery's legacy UIDL, in both modes, and refuses one
 * RFC 1939 does not allow. */
static void test_store_legacy_uidl(const char *backend, const char *dir, enum store_pop3_ids mode)
{
	struct store_settings set = { .backend = backend, .data_dir = dir, .pop3_ids = mode };
	const char *error = NULL;
	struct store *s = store_open(&set, &error);
	CHECK(s != NULL);
	if (s == NULL)
		return;
	const char *addr = mode == STORE_POP3_IDS_UID ? "uid@import.test" : "mid@import.test";
	store_domain_add(s, "import.test");
	CHECK_INT(store_user_add(s, addr, "{PLAIN}x"), STORE_OK);
	char seventy[STORE_UIDL_MAX + 1];
	memset(seventy, 'z', STORE_UIDL_MAX);
	seventy[STORE_UIDL_MAX] = '\0';
	const char *uidls[] = { "legacy-1", seventy, NULL };
	for (int i = 0; i < 3; i++) {
		struct store_rcpt r = { .address = addr, .prefix = "" };
		struct store_delivery d;
		memset(&d, 0, sizeof(d));
		store_delivery_init(&d);
		CHECK(d.uidl == NULL);
		d.uidl = uidls[i];
		d.body = "Subject: x\r\n\r\nhi\r\n";
		d.body_len = strlen(d.body);
		d.rcpts = &r;
		d.rcpt_count = 1;
		CHECK_INT(store_deliver(s, &d), STORE_OK);
		CHECK_INT(r.status, STORE_OK);
		if (uidls[i] != NULL)
			CHECK_STR(r.uidl, uidls[i]);
	}
	const char *bad[] = { "", "caf\xc3\xa9", "two words", "x" "123456789012345678901234567890"
			      "1234567890123456789012345678901234567890" };
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		CHECK(!store_uidl_valid(bad[i]));
		struct store_rcpt r = { .address = addr, .prefix = "" };
		struct store_delivery d;
		memset(&d, 0, sizeof(d));
		store_delivery_init(&d);
		d.uidl = bad[i];
		d.body = "x\r\n";
		d.body_len = 3;
		d.rcpts = &r;
		d.rcpt_count = 1;
		CHECK_INT(store_deliver(s, &d), STORE_INVALID);
	}
	struct store_maildrop *md = NULL;
	CHECK_INT(store_maildrop_open(s, addr, &md), STORE_OK);
	if (md != NULL) {
		CHECK_INT(md->count, 3);
		if (md->count == 3) {
			CHECK_STR(md->entries[0].uidl, "legacy-1");
			CHECK_STR(md->entries[1].uidl, seventy);
			/* No legacy UIDL: the mode's own (the id, or UID 1: none was
			 * allocated for the legacy ones). */
			if (mode == STORE_POP3_IDS_UID)
				CHECK_MEM(md->entries[2].uidl, 8, "00000001", 8);
			else
				CHECK_INT(strlen(md->entries[2].uidl), 36);
		}
		store_maildrop_free(&md);
	}
	store_close(&s);
}

int main(int argc, char **argv)
{
	test_uidlist();
	test_courier();
	test_maildir_names();
	test_mbox();
	test_headers_and_dates();
	test_store_legacy_uidl("mem", NULL, STORE_POP3_IDS_MESSAGEID);
	test_store_legacy_uidl("mem", NULL, STORE_POP3_IDS_UID);
	if (argc > 1) {
		char dir[4096];
		snprintf(dir, sizeof(dir), "%s/test-import-db.XXXXXX", argv[1]);
		if (mkdtemp(dir) != NULL) {
			test_store_legacy_uidl("sqlite", dir, STORE_POP3_IDS_MESSAGEID);
			test_store_legacy_uidl("sqlite", dir, STORE_POP3_IDS_UID);
			char cmd[4200];
			snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
			CHECK_INT(system(cmd), 0);
		}
	}
	TEST_MAIN_END();
}
