/*
 * The store contract, run against one backend per invocation:
 *   test-store mem
 *   test-store sqlite BASEDIR   (a fresh temporary directory is made under
 *                                BASEDIR per pop3_ids mode and removed after)
 * Both pop3_ids modes are run. Only the public store.h is used (and
 * lib-mail's POP3 encoder, as the POP3 session uses it).
 *
 * The minimum is Apache James' Pop3MetadataStoreContract (empty listing, add,
 * upsert, remove, clear, idempotent deletes, ordering); the rest covers what
 * the POP3 and SMTP sessions rely on, the message cursor above all: every
 * piece size, eof exactly with the last octet, a 25 MiB message in 128 KiB
 * pieces, expunges while cursors are open, cursors used from several
 * threads among deliveries and expunges, and more cursors than SQLite's
 * reader pool holds. RETR and TOP are checked as the POP3 session makes
 * them: cursor pieces through lib-mail's encoder, against a reference
 * written independently here.
 *
 * Aliases, quotas, usage and health: alias validation (loops, depth,
 * targets), resolution with nesting, folding and the postmaster fallback,
 * limits own and default, usage exact after deliveries and expunges, and
 * delivery refusing over-quota recipients (one by one, or all or nothing).
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sqlite3.h>
#include <sys/stat.h>
#include <unistd.h>

#include "buf.h"
#include "clock.h"
#include "mail-data.h"
#include "store.h"
#include "uuid.h"

#include "test.h"

static const char *backend;
static const char *base_dir;
static enum store_pop3_ids mode;
static char data_dir[PATH_MAX];
static char keyspace[64];      /* cassandra: a fresh keyspace per run */
static const char *contact;    /* cassandra: contact point */
static struct store *store;
static struct store_quota default_quota;  /* [quota] of the next open_store() */
static const char *replication = "dc1:1"; /* cassandra: of the next open_store() */

#define CHECK_ST(expr, want) do { enum store_status _s = (expr), _w = (want); test_checks++; \
	if (_s != _w) { test_failures++; fprintf(stderr, "%s:%d: [%s %s] %s = %s, expected %s\n", \
	__FILE__, __LINE__, backend, mode == STORE_POP3_IDS_UID ? "uid" : "messageid", #expr, \
	store_status_name(_s), store_status_name(_w)); } } while (0)

static struct store *open_store(void)
{
	struct store_settings set = {
		.backend = backend,
		.data_dir = data_dir,
		.pop3_ids = mode,
		.default_quota = default_quota,
	};
	/* [cassandra] keys are known whatever the backend; only it reads them. */
	if (contact != NULL)
		store_settings_set(&set, "cassandra", "contact_points", contact);
	store_settings_set(&set, "cassandra", "local_dc", "dc1");
	store_settings_set(&set, "cassandra", "keyspace", keyspace);
	store_settings_set(&set, "cassandra", "replication", replication);
	const char *error = NULL;
	struct store *s = store_open(&set, &error);
	/* The store keeps a copy of its own. */
	store_settings_deinit(&set);
	CHECK(set.options == NULL && set.option_count == 0);
	if (s == NULL) {
		fprintf(stderr, "store_open(%s, %s): %s\n", backend, data_dir,
			error != NULL ? error : "(no error)");
		exit(2);
	}
	return s;
}

/* ---- helpers ---- */

static void add_user(const char *address)
{
	const char *domain = strrchr(address, '@') + 1;
	enum store_status st = store_domain_add(store, domain);
	CHECK(st == STORE_OK || st == STORE_EXISTS);
	CHECK_ST(store_user_add(store, address, "$argon2id$v=19$m=65536,t=3,p=1$c2FsdA$aGFzaA"),
		 STORE_OK);
}

/* Delivers body to one recipient with the given id (NULL: a new one). */
static enum store_status deliver1(const char *rcpt, const char *prefix, const char *body,
				  size_t len, const struct uuid *id, char uidl_r[UUID_STR_LEN + 1])
{
	struct store_rcpt r = { .address = rcpt, .prefix = prefix };
	struct store_delivery d = { .body = body, .body_len = len, .rcpts = &r, .rcpt_count = 1 };
	store_delivery_init(&d);
	if (id != NULL) {
		d.message_id = *id;
		d.attempts = 1; /* this id may have been used: a retry */
	}
	enum store_status st = store_deliver(store, &d);
	if (st == STORE_OK)
		st = r.status;
	if (uidl_r != NULL)
		str_copy(uidl_r, r.uidl, UUID_STR_LEN + 1);
	return st;
}

static struct store_maildrop *open_md(const char *address)
{
	struct store_maildrop *md = NULL;
	enum store_status st = store_maildrop_open(store, address, &md);
	CHECK_ST(st, STORE_OK);
	if (st != STORE_OK || md == NULL) {
		fprintf(stderr, "cannot open the maildrop of %s\n", address);
		exit(1);
	}
	return md;
}

static unsigned int count_of(const char *address)
{
	struct store_maildrop *md = open_md(address);
	unsigned int n = md->count;
	store_maildrop_free(&md);
	return n;
}

static bool uidl_is_uid_form(const char *s)
{
	if (strlen(s) != 16)
		return false;
	for (int i = 0; i < 16; i++)
		if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'A' && s[i] <= 'F')))
			return false;
	return true;
}

/* The UIDL the store must give message id in the current mode. */
static void check_uidl(const char *uidl, const struct uuid *id, int line)
{
	test_checks++;
	bool ok;
	if (mode == STORE_POP3_IDS_MESSAGEID) {
		char s[UUID_STR_LEN + 1];
		uuid_format(id, s);
		ok = strcmp(uidl, s) == 0;
	} else {
		ok = uidl_is_uid_form(uidl);
	}
	if (!ok) {
		test_failures++;
		fprintf(stderr, "%s:%d: [%s] bad UIDL \"%s\"\n", __FILE__, line, backend, uidl);
	}
}

/* What RETR/TOP must send for msg (CRLF lines; a missing final CRLF is
 * added), written independently of the encoder under test. */
static void pop3_expected(const char *msg, size_t len, long body_lines, struct buf *out)
{
	bool in_headers = true;
	size_t pos = 0;
	while (pos < len) {
		/* (a plain loop: memmem is quadratic under ASan's interceptor) */
		size_t end = pos;
		while (end + 1 < len && !(msg[end] == '\r' && msg[end + 1] == '\n'))
			end++;
		const char *eol = end + 1 < len ? msg + end : NULL;
		if (eol == NULL)
			end = len;
		if (!in_headers && body_lines >= 0 && body_lines-- == 0)
			break;
		if (msg[pos] == '.')
			buf_append_c(out, '.');
		buf_append(out, msg + pos, end - pos);
		buf_append(out, "\r\n", 2);
		if (in_headers && end == pos)
			in_headers = false;
		pos = eol != NULL ? end + 2 : len;
	}
	buf_append(out, ".\r\n", 3);
}

/* What the POP3 session does for RETR (body_lines < 0) and TOP: cursor
 * pieces of `piece` octets, dot-stuffed by the encoder, until the end of the
 * message or TOP's limit, then the terminating line. Appends to out; on an
 * error out is left as it was. */
static enum store_status read_pop3(struct store_maildrop *md, unsigned int i, long body_lines,
				   size_t piece, struct buf *out)
{
	struct store_cursor *c = NULL;
	struct mail_pop3_encoder enc;
	struct buf raw;
	size_t start = out->len;
	bool eof = false;
	mail_pop3_encoder_init(&enc, body_lines);
	buf_init(&raw, 0);
	enum store_status st = store_cursor_open(md, i, &c);
	while (st == STORE_OK && !eof && !enc.finished) {
		buf_reset(&raw);
		st = store_cursor_next(c, piece, &raw, &eof);
		if (st == STORE_OK)
			mail_pop3_encoder_feed(&enc, raw.data, raw.len, out);
	}
	if (st == STORE_OK)
		mail_pop3_encoder_finish(&enc, out);
	store_cursor_close(&c);
	CHECK(c == NULL);
	buf_deinit(&raw);
	if (st != STORE_OK) {
		out->len = start;
		out->data[start] = '\0';
	}
	return st;
}

/* Reads message i in pieces of `piece` octets, checking every call against
 * the cursor's contract: exactly min(piece, octets left) appended, eof set
 * with the last octet and not before, the offset, and nothing more after
 * eof. The octets are appended to out. Returns the status, or STORE_PERM
 * (after reporting it) when the contract was broken. */
static enum store_status read_pieces(struct store_maildrop *md, unsigned int i, size_t piece,
				     struct buf *out, int line)
{
	struct store_cursor *c = NULL;
	enum store_status st = store_cursor_open(md, i, &c);
	if (st != STORE_OK)
		return st;
	uint64_t size = md->entries[i].size, got = 0;
	uint64_t calls = 0, max_calls = size / piece + 2;
	bool eof = false, broken = false;
	while (!eof && !broken && calls++ < max_calls) {
		size_t before = out->len;
		st = store_cursor_next(c, piece, out, &eof);
		if (st != STORE_OK)
			break;
		uint64_t n = out->len - before, left = size - got;
		got += n;
		broken = n != (left < piece ? left : piece) || eof != (got == size) ||
			 store_cursor_offset(c) != got;
	}
	if (st == STORE_OK && !broken) {
		/* after eof: nothing more, still eof */
		size_t before = out->len;
		bool again = false;
		st = store_cursor_next(c, piece, out, &again);
		broken = st != STORE_OK || out->len != before || !again || !eof;
	}
	store_cursor_close(&c);
	if (broken) {
		fprintf(stderr, "%s:%d: [%s] cursor on %u in pieces of %zu broke its contract after "
			"%llu of %llu octets (eof %d)\n", __FILE__, line, backend, i, piece,
			(unsigned long long)got, (unsigned long long)size, eof);
		return STORE_PERM;
	}
	return st;
}

static void report_diff(const char *what, unsigned int i, size_t piece, enum store_status st,
			const struct buf *got, const struct buf *want, int line)
{
	size_t at = 0;
	while (at < got->len && at < want->len && got->data[at] == want->data[at])
		at++;
	fprintf(stderr, "%s:%d: [%s] %s %u in pieces of %zu: %s, %zu bytes, expected %zu, first "
		"difference at %zu\n", __FILE__, line, backend, what, i, piece,
		store_status_name(st), got->len, want->len, at);
}

/* Checks the raw read of message i against prefix+body, cursor pieces of
 * every size 1..N+1 on small messages (of a few sizes on large ones), and
 * RETR and TOP n as the POP3 session makes them. */
static void check_message(struct store_maildrop *md, unsigned int i, const char *prefix,
			  const char *body, size_t len, long top, int line)
{
	struct buf whole, want, got;
	buf_init(&whole, 0);
	buf_init(&want, 0);
	buf_init(&got, 0);
	buf_append_str(&whole, prefix);
	buf_append(&whole, body, len);

	test_checks++;
	enum store_status st = store_message_read_raw(md, i, &got);
	if (st != STORE_OK || got.len != whole.len || memcmp(got.data, whole.data, got.len) != 0) {
		test_failures++;
		fprintf(stderr, "%s:%d: [%s] raw read of %u: %s, %zu bytes, expected %zu\n",
			__FILE__, line, backend, i, store_status_name(st), got.len, whole.len);
	}
	test_checks++;
	if (i < md->count && md->entries[i].size != whole.len) {
		test_failures++;
		fprintf(stderr, "%s:%d: [%s] size of %u: %llu, expected %zu\n", __FILE__, line,
			backend, i, (unsigned long long)md->entries[i].size, whole.len);
	}

	/* Raw pieces: every size on small messages, a few on large ones. */
	static const size_t steps[] = { 1, 100, 4093, 65536, 131072, 1024 * 1024 };
	size_t nsteps = sizeof(steps) / sizeof(steps[0]);
	size_t every = whole.len <= 600 ? whole.len + 1 : 0;
	for (size_t k = 0; k < (every > 0 ? every : nsteps); k++) {
		size_t piece = every > 0 ? k + 1 : steps[k];
		if (every == 0 && ((piece == 1 && whole.len > 4096) ||
				   (piece == 100 && whole.len > 300000) ||
				   (piece == 4093 && whole.len > 3000000)))
			continue;
		buf_reset(&got);
		st = read_pieces(md, i, piece, &got, line);
		test_checks++;
		if (st != STORE_OK || got.len != whole.len ||
		    memcmp(got.data, whole.data, got.len) != 0) {
			test_failures++;
			report_diff("raw", i, piece, st, &got, &whole, line);
		}
	}

	/* RETR and TOP: the same bytes whatever the piece size. */
	long modes[2] = { -1, top };
	for (int m = 0; m < 2; m++) {
		if (m == 1 && top < 0)
			break;
		buf_reset(&want);
		pop3_expected(whole.data, whole.len, modes[m], &want);
		static const size_t pop3_steps[] = { 1, 100, 4093, 131072 };
		for (size_t k = 0; k < sizeof(pop3_steps) / sizeof(pop3_steps[0]); k++) {
			size_t piece = pop3_steps[k];
			if ((piece == 1 && whole.len > 4096) || (piece == 100 && whole.len > 300000) ||
			    (piece == 4093 && whole.len > 3000000))
				continue;
			buf_reset(&got);
			st = read_pop3(md, i, modes[m], piece, &got);
			test_checks++;
			if (st != STORE_OK || got.len != want.len ||
			    memcmp(got.data, want.data, got.len) != 0) {
				test_failures++;
				report_diff(modes[m] < 0 ? "RETR" : "TOP", i, piece, st, &got, &want,
					    line);
			}
		}
	}
	buf_deinit(&whole);
	buf_deinit(&want);
	buf_deinit(&got);
}
#define CHECK_MESSAGE(md, i, prefix, body, len, top) \
	check_message(md, i, prefix, body, len, top, __LINE__)

static void craft_id(uint64_t ticks, uint8_t node0, struct uuid *id_r)
{
	const uint8_t node[6] = { node0, 0x22, 0x33, 0x44, 0x55, 0x66 };
	timeuuid_from_ticks(ticks, 0x1234, node, id_r);
}

static uint64_t now_ticks(void)
{
	struct uuid u;
	timeuuid_generate(&u);
	return timeuuid_ticks(&u);
}

/* ---- domains and users ---- */

static void test_domains(void)
{
	struct buf list;
	buf_init(&list, 0);
	CHECK_ST(store_domain_exists(store, "d1.test"), STORE_NOTFOUND);
	CHECK_ST(store_domain_add(store, "d1.test"), STORE_OK);
	CHECK_ST(store_domain_add(store, "d1.test"), STORE_EXISTS);
	CHECK_ST(store_domain_add(store, "d2.test"), STORE_OK);
	CHECK_ST(store_domain_exists(store, "d1.test"), STORE_OK);
	CHECK_ST(store_domain_exists(store, "d3.test"), STORE_NOTFOUND);
	CHECK_ST(store_domain_list(store, &list), STORE_OK);
	CHECK(strstr(list.data, "d1.test\n") != NULL);
	CHECK(strstr(list.data, "d2.test\n") != NULL);
	CHECK(list.len > 0 && list.data[list.len - 1] == '\n');

	CHECK_ST(store_user_add(store, "u@d1.test", "hash"), STORE_OK);
	CHECK_ST(store_domain_del(store, "d1.test"), STORE_EXISTS);
	CHECK_ST(store_domain_exists(store, "d1.test"), STORE_OK);
	CHECK_ST(store_user_del(store, "u@d1.test"), STORE_OK);
	CHECK_ST(store_domain_del(store, "d1.test"), STORE_OK);
	CHECK_ST(store_domain_del(store, "d1.test"), STORE_NOTFOUND);
	CHECK_ST(store_domain_exists(store, "d1.test"), STORE_NOTFOUND);
	CHECK_ST(store_domain_del(store, "never.test"), STORE_NOTFOUND);
	buf_reset(&list);
	CHECK_ST(store_domain_list(store, &list), STORE_OK);
	CHECK(strstr(list.data, "d1.test\n") == NULL);
	CHECK(strstr(list.data, "d2.test\n") != NULL);
	/* a domain can come back */
	CHECK_ST(store_domain_add(store, "d1.test"), STORE_OK);
	CHECK_ST(store_domain_del(store, "d1.test"), STORE_OK);
	buf_deinit(&list);
}

static void test_users(void)
{
	struct buf b;
	buf_init(&b, 512);
	CHECK_ST(store_user_add(store, "bob@nodomain.test", "h"), STORE_NOTFOUND);
	CHECK_ST(store_domain_add(store, "users.test"), STORE_OK);
	CHECK_ST(store_user_add(store, "bob@users.test", "hash-1"), STORE_OK);
	CHECK_ST(store_user_add(store, "bob@users.test", "hash-2"), STORE_EXISTS);
	CHECK_ST(store_user_add(store, "carl@users.test", "hash-c"), STORE_OK);
	CHECK_ST(store_user_add(store, "no-at-sign", "h"), STORE_INVALID);
	CHECK_ST(store_user_add(store, "x@", "h"), STORE_INVALID);
	CHECK_ST(store_user_add(store, "y@users.test", ""), STORE_INVALID);
	CHECK_ST(store_user_get(store, "bob@users.test", &b), STORE_OK);
	CHECK_STR(b.data, "hash-1");
	CHECK_ST(store_user_set_password(store, "bob@users.test", "hash-3"), STORE_OK);
	buf_reset(&b);
	CHECK_ST(store_user_get(store, "bob@users.test", &b), STORE_OK);
	CHECK_STR(b.data, "hash-3");
	CHECK_ST(store_user_set_password(store, "bob@users.test", ""), STORE_INVALID);
	CHECK_ST(store_user_set_password(store, "nobody@users.test", "h"), STORE_NOTFOUND);
	buf_reset(&b);
	CHECK_ST(store_user_get(store, "nobody@users.test", &b), STORE_NOTFOUND);
	CHECK_INT(b.len, 0);
	/* a long hash fits */
	char longhash[400];
	memset(longhash, 'h', sizeof(longhash) - 1);
	longhash[sizeof(longhash) - 1] = '\0';
	CHECK_ST(store_user_set_password(store, "carl@users.test", longhash), STORE_OK);
	buf_reset(&b);
	CHECK_ST(store_user_get(store, "carl@users.test", &b), STORE_OK);
	CHECK_STR(b.data, longhash);

	struct buf list;
	buf_init(&list, 0);
	CHECK_ST(store_user_list(store, &list), STORE_OK);
	CHECK(strstr(list.data, "bob@users.test\n") != NULL);
	CHECK(strstr(list.data, "carl@users.test\n") != NULL);

	struct store_maildrop *md = NULL;
	CHECK_ST(store_maildrop_open(store, "nobody@users.test", &md), STORE_NOTFOUND);
	CHECK(md == NULL);

	CHECK_ST(store_user_del(store, "bob@users.test"), STORE_OK);
	CHECK_ST(store_user_del(store, "bob@users.test"), STORE_NOTFOUND);
	buf_reset(&b);
	CHECK_ST(store_user_get(store, "bob@users.test", &b), STORE_NOTFOUND);
	buf_reset(&list);
	CHECK_ST(store_user_list(store, &list), STORE_OK);
	CHECK(strstr(list.data, "bob@users.test\n") == NULL);
	CHECK(strstr(list.data, "carl@users.test\n") != NULL);
	CHECK_ST(store_maildrop_open(store, "bob@users.test", &md), STORE_NOTFOUND);
	/* re-created: empty mailbox, new password */
	CHECK_ST(store_user_add(store, "bob@users.test", "hash-4"), STORE_OK);
	buf_reset(&b);
	CHECK_ST(store_user_get(store, "bob@users.test", &b), STORE_OK);
	CHECK_STR(b.data, "hash-4");
	CHECK_INT(count_of("bob@users.test"), 0);
	buf_deinit(&list);
	buf_deinit(&b);
}

/* ---- Pop3MetadataStoreContract ---- */

static void test_james_contract(void)
{
	const char *a = "james@contract.test", *other = "other@contract.test";
	add_user(a);
	add_user(other);
	const char *body = "Subject: contract\r\n\r\nhello\r\n";
	size_t len = strlen(body);

	/* listing is empty by default */
	struct store_maildrop *md = open_md(a);
	CHECK_INT(md->count, 0);
	CHECK_INT(md->total_size, 0);
	store_maildrop_free(&md);
	CHECK(md == NULL);

	/* add: the listing returns the entry */
	struct uuid id1;
	craft_id(now_ticks(), 0x11, &id1);
	char uidl1[UUID_STR_LEN + 1];
	CHECK_ST(deliver1(a, "", body, len, &id1, uidl1), STORE_OK);
	check_uidl(uidl1, &id1, __LINE__);
	md = open_md(a);
	CHECK_INT(md->count, 1);
	if (md->count == 1) {
		CHECK(memcmp(&md->entries[0].id, &id1, 16) == 0);
		CHECK_INT(md->entries[0].size, len);
		CHECK_STR(md->entries[0].uidl, uidl1);
		CHECK_INT(md->total_size, len);
	}
	store_maildrop_free(&md);

	/* upsert: adding the same message id again keeps one entry, same UIDL */
	char uidl1b[UUID_STR_LEN + 1];
	CHECK_ST(deliver1(a, "", body, len, &id1, uidl1b), STORE_OK);
	CHECK_STR(uidl1b, uidl1);
	md = open_md(a);
	CHECK_INT(md->count, 1);
	if (md->count == 1)
		CHECK_STR(md->entries[0].uidl, uidl1);
	store_maildrop_free(&md);

	/* other mailboxes are not affected */
	CHECK_INT(count_of(other), 0);

	/* remove, and remove again */
	md = open_md(a);
	unsigned int zero = 0;
	CHECK_ST(store_maildrop_expunge(md, &zero, 1), STORE_OK);
	CHECK_ST(store_maildrop_expunge(md, &zero, 1), STORE_OK);
	store_maildrop_free(&md);
	CHECK_INT(count_of(a), 0);

	/* clear: several entries removed at once, idempotently */
	struct uuid ids[3];
	uint64_t t = now_ticks();
	for (int i = 0; i < 3; i++) {
		craft_id(t + (uint64_t)i, 0x22, &ids[i]);
		CHECK_ST(deliver1(a, "", body, len, &ids[i], NULL), STORE_OK);
	}
	CHECK_ST(deliver1(other, "", body, len, NULL, NULL), STORE_OK);
	md = open_md(a);
	CHECK_INT(md->count, 3);
	CHECK_INT(md->total_size, 3 * len);
	unsigned int all[3] = { 0, 1, 2 };
	CHECK_ST(store_maildrop_expunge(md, all, md->count < 3 ? md->count : 3), STORE_OK);
	CHECK_ST(store_maildrop_expunge(md, all, md->count < 3 ? md->count : 3), STORE_OK);
	store_maildrop_free(&md);
	CHECK_INT(count_of(a), 0);
	CHECK_INT(count_of(other), 1);
	/* an index outside the listing is refused */
	md = open_md(other);
	unsigned int bad = 1;
	CHECK_ST(store_maildrop_expunge(md, &bad, 1), STORE_INVALID);
	CHECK_ST(store_maildrop_expunge(md, NULL, 0), STORE_OK);
	CHECK_INT(md->count, 1);
	store_maildrop_free(&md);
	CHECK_INT(count_of(other), 1);

	/* ordering by message id: ids minted in one order, delivered in another */
	uint64_t base = now_ticks();
	struct uuid o[6];
	craft_id(base + 30, 0x01, &o[0]);
	craft_id(base + 10, 0x01, &o[1]);
	craft_id(base + 20, 0x01, &o[2]);
	/* same timestamp: Cassandra's signed tie-break puts 0xff (-1) before 0x01 */
	craft_id(base + 20, 0xff, &o[3]);
	craft_id(base + 20, 0x80, &o[4]);
	craft_id(base + 5, 0x7f, &o[5]);
	char ouidl[6][UUID_STR_LEN + 1];
	for (int i = 0; i < 6; i++) {
		char b2[64];
		int n = snprintf(b2, sizeof(b2), "Subject: %d\r\n\r\nbody %d\r\n", i, i);
		CHECK_ST(deliver1(a, "", b2, (size_t)n, &o[i], ouidl[i]), STORE_OK);
	}
	/* expected order: 5 (base+5), 1 (+10), 4 (+20, 0x80), 3 (+20, 0xff), 2 (+20, 0x01), 0 */
	static const int order[6] = { 5, 1, 4, 3, 2, 0 };
	md = open_md(a);
	CHECK_INT(md->count, 6);
	for (unsigned int i = 0; i < md->count && i < 6; i++) {
		test_checks++;
		if (memcmp(&md->entries[i].id, &o[order[i]], 16) != 0) {
			test_failures++;
			char s1[UUID_STR_LEN + 1], s2[UUID_STR_LEN + 1];
			uuid_format(&md->entries[i].id, s1);
			uuid_format(&o[order[i]], s2);
			fprintf(stderr, "%s:%d: [%s] listing[%u] = %s, expected %s\n", __FILE__,
				__LINE__, backend, i, s1, s2);
		}
		CHECK_STR(md->entries[i].uidl, ouidl[order[i]]);
		check_uidl(md->entries[i].uidl, &md->entries[i].id, __LINE__);
		if (i > 0)
			CHECK(timeuuid_compare(&md->entries[i - 1].id, &md->entries[i].id) < 0);
		char b2[64];
		int n = snprintf(b2, sizeof(b2), "Subject: %d\r\n\r\nbody %d\r\n", order[i], order[i]);
		CHECK_MESSAGE(md, i, "", b2, (size_t)n, 0);
	}
	/* in uid mode the UIDs follow delivery, not id order */
	if (mode == STORE_POP3_IDS_UID && md->count == 6)
		CHECK(strcmp(md->entries[5].uidl, md->entries[0].uidl) < 0);
	unsigned int everything[6] = { 0, 1, 2, 3, 4, 5 };
	CHECK_ST(store_maildrop_expunge(md, everything, md->count), STORE_OK);
	store_maildrop_free(&md);
	CHECK_INT(count_of(a), 0);
}

/* ---- deliveries ---- */

static void test_deliver(void)
{
	add_user("alice@deliver.test");
	add_user("bob@deliver.test");
	const char *body = "Received: from x\r\nSubject: shared\r\n\r\nShared body.\r\n";
	size_t len = strlen(body);
	struct store_rcpt r[4] = {
		{ .address = "alice@deliver.test",
		  .prefix = "Return-Path: <s@x.test>\r\nDelivered-To: alice@deliver.test\r\n" },
		{ .address = "ghost@deliver.test", .prefix = "Delivered-To: ghost\r\n" },
		{ .address = "bob@deliver.test", .prefix = "Delivered-To: bob@deliver.test\r\n" },
		{ .address = "carol@elsewhere.test", .prefix = "" },
	};
	struct store_delivery d = { .body = body, .body_len = len, .rcpts = r, .rcpt_count = 4 };
	store_delivery_init(&d);
	CHECK_INT(uuid_version(&d.message_id), 1);
	struct uuid minted = d.message_id;
	CHECK_ST(store_deliver(store, &d), STORE_OK);
	CHECK(memcmp(&d.message_id, &minted, 16) == 0);
	CHECK_ST(r[0].status, STORE_OK);
	CHECK_ST(r[1].status, STORE_NOTFOUND);
	CHECK_ST(r[2].status, STORE_OK);
	CHECK_ST(r[3].status, STORE_NOTFOUND);
	check_uidl(r[0].uidl, &d.message_id, __LINE__);
	check_uidl(r[2].uidl, &d.message_id, __LINE__);

	struct store_maildrop *ma = open_md("alice@deliver.test");
	struct store_maildrop *mb = open_md("bob@deliver.test");
	CHECK_INT(ma->count, 1);
	CHECK_INT(mb->count, 1);
	if (ma->count == 1 && mb->count == 1) {
		CHECK_STR(ma->entries[0].uidl, r[0].uidl);
		CHECK_STR(mb->entries[0].uidl, r[2].uidl);
		CHECK_MESSAGE(ma, 0, r[0].prefix, body, len, 0);
		CHECK_MESSAGE(mb, 0, r[2].prefix, body, len, 1);
		CHECK_INT(ma->total_size, strlen(r[0].prefix) + len);
	}

	/* a retried delivery (same id) creates no second copy, and reaches a
	 * recipient that failed the first time */
	r[1].address = "bob@deliver.test";
	r[1].prefix = "Delivered-To: bob, retried\r\n";
	r[2].address = "late@deliver.test";
	r[2].prefix = "Delivered-To: late@deliver.test\r\n";
	add_user("late@deliver.test");
	char first_uidl[UUID_STR_LEN + 1];
	str_copy(first_uidl, r[0].uidl, sizeof(first_uidl));
	d.rcpt_count = 3;
	CHECK_ST(store_deliver(store, &d), STORE_OK);
	CHECK_ST(r[0].status, STORE_OK);
	CHECK_ST(r[1].status, STORE_OK);
	CHECK_ST(r[2].status, STORE_OK);
	CHECK_STR(r[0].uidl, first_uidl); /* the UIDL of the copy that exists */
	CHECK_INT(count_of("alice@deliver.test"), 1);
	CHECK_INT(count_of("bob@deliver.test"), 1);
	CHECK_INT(count_of("late@deliver.test"), 1);

	/* bodies shared by recipients survive until the last one is expunged */
	unsigned int zero = 0;
	CHECK_ST(store_maildrop_expunge(ma, &zero, 1), STORE_OK);
	CHECK_MESSAGE(mb, 0, "Delivered-To: bob@deliver.test\r\n", body, len, -1);
	struct store_maildrop *ml = open_md("late@deliver.test");
	if (ml->count == 1)
		CHECK_MESSAGE(ml, 0, "Delivered-To: late@deliver.test\r\n", body, len, 0);
	CHECK_ST(store_maildrop_expunge(mb, &zero, 1), STORE_OK);
	if (ml->count == 1)
		CHECK_MESSAGE(ml, 0, "Delivered-To: late@deliver.test\r\n", body, len, 0);
	CHECK_ST(store_maildrop_expunge(ml, &zero, ml->count), STORE_OK);
	store_maildrop_free(&ma);
	store_maildrop_free(&mb);
	store_maildrop_free(&ml);
	CHECK_INT(count_of("alice@deliver.test"), 0);
	CHECK_INT(count_of("late@deliver.test"), 0);

	/* nobody known: every recipient NOTFOUND, the call itself works */
	struct store_rcpt none[2] = { { .address = "x@deliver.test", .prefix = "" },
				      { .address = "y@nowhere.test", .prefix = "" } };
	struct store_delivery dn = { .body = body, .body_len = len, .rcpts = none, .rcpt_count = 2 };
	store_delivery_init(&dn);
	CHECK_ST(store_deliver(store, &dn), STORE_OK);
	CHECK_ST(none[0].status, STORE_NOTFOUND);
	CHECK_ST(none[1].status, STORE_NOTFOUND);
	dn.rcpt_count = 0;
	CHECK_ST(store_deliver(store, &dn), STORE_INVALID);

	/* a retry that reaches nobody must not take the body from the
	 * recipients the first attempt delivered to */
	struct store_rcpt ok1 = { .address = "alice@deliver.test", .prefix = "P: 1\r\n" };
	struct store_delivery dr = { .body = body, .body_len = len, .rcpts = &ok1, .rcpt_count = 1 };
	store_delivery_init(&dr);
	CHECK_ST(store_deliver(store, &dr), STORE_OK);
	CHECK_ST(ok1.status, STORE_OK);
	struct store_rcpt gone = { .address = "gone@deliver.test", .prefix = "" };
	dr.rcpts = &gone;
	CHECK_ST(store_deliver(store, &dr), STORE_OK);
	CHECK_ST(gone.status, STORE_NOTFOUND);
	ma = open_md("alice@deliver.test");
	CHECK_INT(ma->count, 1);
	if (ma->count == 1)
		CHECK_MESSAGE(ma, 0, "P: 1\r\n", body, len, 0);
	CHECK_ST(store_maildrop_expunge(ma, &zero, ma->count), STORE_OK);
	store_maildrop_free(&ma);
}

/* ---- UIDLs ---- */

static void test_uidls(void)
{
	const char *a = "uidl@uidl.test";
	add_user(a);
	enum { N = 8 };
	char seen[3 * N][72];
	unsigned int nseen = 0;
	for (int i = 0; i < N; i++) {
		char uidl[UUID_STR_LEN + 1];
		CHECK_ST(deliver1(a, "", "S: x\r\n\r\nb\r\n", 11, NULL, uidl), STORE_OK);
	}
	struct store_maildrop *md = open_md(a), *md2 = open_md(a);
	CHECK_INT(md->count, N);
	CHECK_INT(md2->count, N);
	for (unsigned int i = 0; i < md->count && i < md2->count; i++) {
		check_uidl(md->entries[i].uidl, &md->entries[i].id, __LINE__);
		CHECK_STR(md->entries[i].uidl, md2->entries[i].uidl); /* stable */
		for (unsigned int k = 0; k < nseen; k++)
			CHECK(strcmp(seen[k], md->entries[i].uidl) != 0); /* unique */
		str_copy(seen[nseen++], md->entries[i].uidl, sizeof(seen[0]));
	}
	/* expunge the newest and an older one: their UIDLs are never handed out again */
	unsigned int idx[2] = { N - 1, 2 };
	CHECK_ST(store_maildrop_expunge(md, idx, 2), STORE_OK);
	store_maildrop_free(&md);
	store_maildrop_free(&md2);
	for (int i = 0; i < N; i++)
		CHECK_ST(deliver1(a, "", "S: y\r\n\r\nb\r\n", 11, NULL, NULL), STORE_OK);
	md = open_md(a);
	CHECK_INT(md->count, 2 * N - 2);
	unsigned int reused = 0, kept = 0;
	for (unsigned int i = 0; i < md->count; i++) {
		bool old = false;
		for (unsigned int k = 0; k < nseen; k++)
			if (strcmp(seen[k], md->entries[i].uidl) == 0)
				old = true;
		if (i < N - 2)
			kept += old;
		else
			reused += old;
		check_uidl(md->entries[i].uidl, &md->entries[i].id, __LINE__);
	}
	CHECK_INT(kept, N - 2);
	CHECK_INT(reused, 0);
	unsigned int *all = xcalloc(md->count, sizeof(unsigned int));
	for (unsigned int i = 0; i < md->count; i++)
		all[i] = i;
	CHECK_ST(store_maildrop_expunge(md, all, md->count), STORE_OK);
	free(all);
	store_maildrop_free(&md);
}

/* ---- reading ---- */

static void test_read(void)
{
	const char *a = "reader@read.test";
	add_user(a);
	static const struct {
		const char *prefix, *body;
		long top;
	} cases[] = {
		/* dot-stuffing of every line that starts with '.', headers too */
		{ "Delivered-To: reader@read.test\r\n",
		  ".Hdr: dotted\r\nSubject: dots\r\n\r\n.\r\n..\r\n.line\r\nmid.dle\r\n.\r\n", 2 },
		/* TOP n 0: headers, the blank line, then ".\r\n" */
		{ "Return-Path: <s@x.test>\r\n",
		  "H1: a\r\nH2: b\r\n\r\nl1\r\nl2\r\nl3\r\n", 0 },
		{ "", "H1: a\r\n\r\nl1\r\nl2\r\nl3\r\n", 3 },      /* TOP = all lines */
		{ "", "H1: a\r\n\r\nl1\r\nl2\r\nl3\r\n", 1000 },   /* TOP beyond the end */
		{ "", "H1: a\r\n\r\n\r\n\r\nl3\r\n", 2 },          /* empty body lines count */
		{ "", "H1: only headers\r\nH2: x\r\n", 0 },         /* no separator */
		{ "", "", 0 },                                      /* 0-byte body */
		{ "X-Prefix: only\r\n", "", 0 },
		{ "", "H: v\r\n\r\nlast line without CRLF", 1 },
		{ "", "H: v\r\n\r\n.", 1 },
		{ "", "\r\nbody right away\r\n", 0 },
	};
	enum { NCASES = sizeof(cases) / sizeof(cases[0]) };
	uint64_t t = now_ticks();
	for (unsigned int i = 0; i < NCASES; i++) {
		struct uuid id;
		craft_id(t + i, 0x10, &id);
		CHECK_ST(deliver1(a, cases[i].prefix, cases[i].body, strlen(cases[i].body), &id,
				  NULL), STORE_OK);
	}
	struct store_maildrop *md = open_md(a);
	CHECK_INT(md->count, NCASES);
	uint64_t total = 0;
	for (unsigned int i = 0; i < md->count && i < NCASES; i++) {
		CHECK_MESSAGE(md, i, cases[i].prefix, cases[i].body, strlen(cases[i].body),
			      cases[i].top);
		total += md->entries[i].size;
	}
	CHECK_INT(md->total_size, total);

	/* exact outputs for a few, independent of the reference encoder */
	struct buf out;
	buf_init(&out, 0);
	CHECK_ST(read_pop3(md, 1, 0, 7, &out), STORE_OK);
	CHECK_STR(out.data, "Return-Path: <s@x.test>\r\nH1: a\r\nH2: b\r\n\r\n.\r\n");
	buf_reset(&out);
	CHECK_ST(read_pop3(md, 0, -1, 1, &out), STORE_OK);
	CHECK_STR(out.data, "Delivered-To: reader@read.test\r\n..Hdr: dotted\r\nSubject: dots\r\n"
			    "\r\n..\r\n...\r\n..line\r\nmid.dle\r\n..\r\n.\r\n");
	buf_reset(&out);
	CHECK_ST(read_pop3(md, 6, -1, 1, &out), STORE_OK);
	CHECK_STR(out.data, ".\r\n");
	CHECK_INT(md->entries[6].size, 0);
	buf_reset(&out);
	CHECK_ST(read_pop3(md, 8, -1, 64, &out), STORE_OK);
	CHECK_STR(out.data, "H: v\r\n\r\nlast line without CRLF\r\n.\r\n");
	/* reads append to what the buffer holds */
	buf_reset(&out);
	buf_append_str(&out, "+OK\r\n");
	CHECK_ST(read_pop3(md, 2, 1, 3, &out), STORE_OK);
	CHECK_STR(out.data, "+OK\r\nH1: a\r\n\r\nl1\r\n.\r\n");
	buf_reset(&out);
	CHECK_ST(read_pop3(md, md->count, -1, 1, &out), STORE_NOTFOUND);
	CHECK_ST(store_message_read_raw(md, md->count, &out), STORE_NOTFOUND);
	CHECK_INT(out.len, 0);
	buf_deinit(&out);

	unsigned int *all = xcalloc(md->count + 1, sizeof(unsigned int));
	for (unsigned int i = 0; i < md->count; i++)
		all[i] = i;
	CHECK_ST(store_maildrop_expunge(md, all, md->count), STORE_OK);
	free(all);
	store_maildrop_free(&md);
}

/* Keeps a generated body CRLF-only: a CR not followed by LF, or an LF not
 * preceded by CR, becomes a letter. */
static void crlf_only(char *b, size_t len)
{
	for (size_t i = 0; i < len; i++) {
		if (b[i] == '\r' && (i + 1 == len || b[i + 1] != '\n'))
			b[i] = 'y';
		else if (b[i] == '\n' && (i == 0 || b[i - 1] != '\r'))
			b[i] = 'y';
	}
}

/* A body of len bytes of CRLF lines whose dots and line ends fall around
 * the chunk boundary at off. */
static char *boundary_body(size_t len, size_t off, int variant)
{
	char *b = xmalloc(len + 1);
	static const char hdr[] = "Subject: boundary\r\n\r\n";
	size_t pos = 0;
	memcpy(b, hdr, sizeof(hdr) - 1);
	pos = sizeof(hdr) - 1;
	/* fill with lines of 30 characters, every fifth starting with a dot */
	for (int line = 0; pos < len; line++) {
		for (int k = 0; k < 30 && pos < len; k++)
			b[pos++] = (char)(k == 0 && line % 5 == 0 ? '.' : 'a' + (line + k) % 26);
		if (pos < len)
			b[pos++] = '\r';
		if (pos < len)
			b[pos++] = '\n';
	}
	/* place "\r\n." so that the boundary falls at each of its points */
	if (off >= 4 && off + 4 <= len) {
		size_t s = off - 2 + (size_t)variant; /* variant 0..3 */
		memcpy(b + s - 2, "x\r\n.", 4);
	}
	crlf_only(b, len);
	b[len] = '\0';
	return b;
}

static void test_chunk_boundaries(void)
{
	const char *a = "chunks@read.test";
	add_user(a);
	static const size_t offsets[] = { 4096, 65536, 131072 };
	static const long sizes_delta[] = { -1, 0, 1 };
	char *bodies[64];
	unsigned int n = 0;
	uint64_t t = now_ticks();
	for (size_t o = 0; o < sizeof(offsets) / sizeof(offsets[0]); o++) {
		for (int v = 0; v < 4; v++) {
			size_t len = offsets[o] + 100 + (size_t)v * 7;
			bodies[n] = boundary_body(len, offsets[o], v);
			struct uuid id;
			craft_id(t + n, 0x33, &id);
			CHECK_ST(deliver1(a, "", bodies[n], len, &id, NULL), STORE_OK);
			n++;
		}
		/* bodies of exactly a chunk, one less and one more */
		for (int s = 0; s < 3; s++) {
			size_t len = (size_t)((long)offsets[o] + sizes_delta[s]);
			bodies[n] = boundary_body(len, 0, 0);
			if (s == 0) {
				memcpy(bodies[n] + len - 3, "\r\n.", 3);
				crlf_only(bodies[n], len);
			}
			struct uuid id;
			craft_id(t + n, 0x33, &id);
			CHECK_ST(deliver1(a, "Delivered-To: chunks\r\n", bodies[n], len, &id, NULL),
				 STORE_OK);
			n++;
		}
	}
	/* the header/body separator exactly at a chunk boundary (for TOP 0) */
	for (int s = -2; s <= 2; s++) {
		size_t len = 65536 + 200;
		char *b = xmalloc(len + 1);
		size_t sep = (size_t)(65536 + s); /* "\r\n\r\n" starts here */
		memcpy(b, "X-Long: ", 8);
		memset(b + 8, 'h', sep - 8);
		memcpy(b + sep, "\r\n\r\n", 4);
		for (size_t k = sep + 4; k < len; k++)
			b[k] = (k - sep) % 20 == 0 ? '\n' : (k - sep) % 20 == 19 ? '\r' : 'b';
		b[len - 2] = '\r';
		b[len - 1] = '\n';
		crlf_only(b, len);
		b[len] = '\0';
		bodies[n] = b;
		struct uuid id;
		craft_id(t + n, 0x33, &id);
		CHECK_ST(deliver1(a, "", b, len, &id, NULL), STORE_OK);
		n++;
	}
	struct store_maildrop *md = open_md(a);
	CHECK_INT(md->count, n);
	for (unsigned int i = 0; i < md->count && i < n; i++) {
		const char *prefix = md->entries[i].size > strlen(bodies[i]) ?
			"Delivered-To: chunks\r\n" : "";
		CHECK_MESSAGE(md, i, prefix, bodies[i], strlen(bodies[i]), i % 3);
		CHECK_MESSAGE(md, i, prefix, bodies[i], strlen(bodies[i]), 0);
	}
	unsigned int *all = xcalloc(n, sizeof(unsigned int));
	for (unsigned int i = 0; i < n; i++)
		all[i] = i;
	CHECK_ST(store_maildrop_expunge(md, all, md->count), STORE_OK);
	free(all);
	store_maildrop_free(&md);
	for (unsigned int i = 0; i < n; i++)
		free(bodies[i]);
}

static void test_big_message(void)
{
	const char *a = "big@read.test";
	add_user(a);
	size_t len = 25 * 1024 * 1024;
	char *body = xmalloc(len + 1);
	size_t pos = (size_t)snprintf(body, len, "Subject: big\r\n\r\n");
	for (unsigned int line = 0; len - pos > 200; line++) {
		size_t n = 1 + line % 97;
		for (size_t k = 0; k < n; k++)
			body[pos++] = (char)(k == 0 && line % 11 == 0 ? '.' : '0' + (line + k) % 75);
		body[pos++] = '\r';
		body[pos++] = '\n';
	}
	while (pos < len - 2)
		body[pos++] = 'z';
	body[pos++] = '\r';
	body[pos++] = '\n';
	body[len] = '\0';
	const char *prefix = "Delivered-To: big@read.test\r\n";
	CHECK_ST(deliver1(a, prefix, body, len, NULL, NULL), STORE_OK);
	struct store_maildrop *md = open_md(a);
	CHECK_INT(md->count, 1);
	if (md->count == 1) {
		CHECK_INT(md->entries[0].size, len + strlen(prefix));
		CHECK_INT(md->total_size, len + strlen(prefix));
		CHECK_MESSAGE(md, 0, prefix, body, len, 5);
	}
	unsigned int zero = 0;
	CHECK_ST(store_maildrop_expunge(md, &zero, md->count), STORE_OK);
	store_maildrop_free(&md);
	free(body);
}

/* The message as a header in memory and a body in a file (what the
 * delivery builder hands over once it has spooled): stored byte-exact as
 * header + body, sized so, read with pread() only up to body_len, the
 * file's offset untouched; a retry keeps the id and every UIDL. */
static void test_header_and_file_body(void)
{
	const char *a = "hfa@file.test", *b = "hfb@file.test";
	add_user(a);
	add_user(b);
	const char *header = "Received: from client.test by tern.test; id 1\r\n";
	size_t hlen = strlen(header);
	/* Crosses the SQLite write piece and the Cassandra chunk at odd offsets. */
	size_t blen = 3 * 1024 * 1024 + 4321;
	char *body = xmalloc(blen);
	size_t pos = (size_t)snprintf(body, blen, "Subject: file\r\n\r\n");
	for (unsigned int line = 0; pos < blen - 2; line++) {
		size_t n = 1 + line % 113;
		for (size_t k = 0; k < n && pos < blen - 2; k++)
			body[pos++] = (char)(k == 0 && line % 7 == 0 ? '.' : ' ' + (line * 31 + k) % 94);
		if (pos < blen - 2) {
			body[pos++] = '\r';
			body[pos++] = '\n';
		}
	}
	body[blen - 2] = '\r';
	body[blen - 1] = '\n';
	FILE *f = tmpfile();
	CHECK(f != NULL);
	if (f == NULL) {
		free(body);
		return;
	}
	int fd = fileno(f);
	CHECK_INT(fwrite(body, 1, blen, f), blen);
	CHECK_INT(fwrite("TRAILING", 1, 8, f), 8); /* past body_len: never read */
	fflush(f);
	off_t where = lseek(fd, 100, SEEK_SET);

	const char *pa = "Return-Path: <s@x.test>\r\nDelivered-To: hfa@file.test\r\n";
	const char *pb = "Delivered-To: hfb@file.test\r\n";
	struct store_rcpt r[2] = { { .address = a, .prefix = pa }, { .address = b, .prefix = pb } };
	struct store_delivery d;
	memset(&d, 0, sizeof(d));
	store_delivery_init(&d);
	CHECK_INT(d.body_fd, -1);
	d.header = header;
	d.header_len = hlen;
	d.body_fd = fd;
	d.body_len = blen;
	d.rcpts = r;
	d.rcpt_count = 2;
	CHECK_INT(store_delivery_size(&d), hlen + blen);
	CHECK_ST(store_deliver(store, &d), STORE_OK);
	CHECK_ST(r[0].status, STORE_OK);
	CHECK_ST(r[1].status, STORE_OK);
	CHECK_INT(lseek(fd, 0, SEEK_CUR), where);
	char uidl_a[UUID_STR_LEN + 1], uidl_b[UUID_STR_LEN + 1];
	str_copy(uidl_a, r[0].uidl, sizeof(uidl_a));
	str_copy(uidl_b, r[1].uidl, sizeof(uidl_b));
	check_uidl(uidl_a, &d.message_id, __LINE__);

	/* a retry (same struct, same id) creates no second copy */
	struct uuid id = d.message_id;
	CHECK_ST(store_deliver(store, &d), STORE_OK);
	CHECK(memcmp(&id, &d.message_id, 16) == 0);
	CHECK_INT(d.attempts, 2);
	CHECK_ST(r[0].status, STORE_OK);
	CHECK_ST(r[1].status, STORE_OK);
	CHECK_STR(r[0].uidl, uidl_a);
	CHECK_STR(r[1].uidl, uidl_b);

	struct buf whole;
	buf_init(&whole, 0);
	buf_append(&whole, header, hlen);
	buf_append(&whole, body, blen);
	struct store_maildrop *ma = open_md(a), *mb = open_md(b);
	CHECK_INT(ma->count, 1);
	CHECK_INT(mb->count, 1);
	if (ma->count == 1 && mb->count == 1) {
		CHECK_INT(ma->entries[0].size, strlen(pa) + hlen + blen);
		CHECK_MESSAGE(ma, 0, pa, whole.data, whole.len, 2);
		CHECK_MESSAGE(mb, 0, pb, whole.data, whole.len, -1);
	}
	unsigned int zero = 0;
	CHECK_ST(store_maildrop_expunge(ma, &zero, ma->count), STORE_OK);
	CHECK_ST(store_maildrop_expunge(mb, &zero, mb->count), STORE_OK);
	store_maildrop_free(&ma);
	store_maildrop_free(&mb);

	/* a header with an in-memory body, and a header alone */
	const char *mem_body = "Subject: mem\r\n\r\nin memory\r\n";
	struct store_rcpt r1 = { .address = a, .prefix = "" };
	struct store_delivery dm;
	memset(&dm, 0, sizeof(dm));
	store_delivery_init(&dm);
	dm.header = header;
	dm.header_len = hlen;
	dm.body = mem_body;
	dm.body_len = strlen(mem_body);
	dm.rcpts = &r1;
	dm.rcpt_count = 1;
	CHECK_ST(store_deliver(store, &dm), STORE_OK);
	CHECK_ST(r1.status, STORE_OK);
	struct store_delivery dh;
	memset(&dh, 0, sizeof(dh));
	store_delivery_init(&dh);
	dh.header = header;
	dh.header_len = hlen;
	dh.rcpts = &r1;
	dh.rcpt_count = 1;
	CHECK_ST(store_deliver(store, &dh), STORE_OK);
	CHECK_ST(r1.status, STORE_OK);
	ma = open_md(a);
	CHECK_INT(ma->count, 2);
	if (ma->count == 2) {
		buf_reset(&whole);
		buf_append(&whole, header, hlen);
		buf_append_str(&whole, mem_body);
		CHECK_MESSAGE(ma, 0, "", whole.data, whole.len, 0);
		CHECK_MESSAGE(ma, 1, "", header, hlen, -1);
	}
	unsigned int both[2] = { 0, 1 };
	CHECK_ST(store_maildrop_expunge(ma, both, ma->count), STORE_OK);
	store_maildrop_free(&ma);

	/* a file shorter than body_len: nothing stored, a temporary failure */
	struct store_delivery ds;
	memset(&ds, 0, sizeof(ds));
	store_delivery_init(&ds);
	ds.header = header;
	ds.header_len = hlen;
	ds.body_fd = fd;
	ds.body_len = blen + 100;
	ds.rcpts = &r1;
	ds.rcpt_count = 1;
	enum store_status st = store_deliver(store, &ds);
	CHECK(st != STORE_OK || store_status_is_temporary(r1.status));
	CHECK(store_status_is_temporary(st) || store_status_is_temporary(r1.status));
	CHECK_INT(count_of(a), 0);
	/* inconsistent fields are refused */
	ds.body_fd = -1;
	ds.body = NULL;
	CHECK_ST(store_deliver(store, &ds), STORE_INVALID);
	ds.body_len = 0;
	ds.header = NULL;
	CHECK_ST(store_deliver(store, &ds), STORE_INVALID);

	buf_deinit(&whole);
	fclose(f);
	free(body);
}

/* ---- expunge across sessions ---- */

static void test_expunge_sessions(void)
{
	const char *a = "exp@expunge.test";
	add_user(a);
	char bodies[4][64];
	for (int i = 0; i < 4; i++) {
		snprintf(bodies[i], sizeof(bodies[i]), "Subject: %d\r\n\r\nmessage %d\r\n", i, i);
		CHECK_ST(deliver1(a, "", bodies[i], strlen(bodies[i]), NULL, NULL), STORE_OK);
	}
	struct store_maildrop *older = open_md(a);
	struct store_maildrop *newer = open_md(a);
	CHECK_INT(older->count, 4);
	CHECK_INT(newer->count, 4);
	/* delivered after both logins: not in their listings */
	CHECK_ST(deliver1(a, "", "S: late\r\n\r\nlate\r\n", 17, NULL, NULL), STORE_OK);
	CHECK_INT(older->count, 4);

	unsigned int idx[2] = { 0, 2 };
	CHECK_ST(store_maildrop_expunge(newer, idx, 2), STORE_OK);
	/* the older handle sees NOTFOUND for those, never a crash or old data */
	struct buf out;
	buf_init(&out, 0);
	buf_append_str(&out, "kept");
	CHECK_ST(read_pop3(older, 0, -1, 100, &out), STORE_NOTFOUND);
	CHECK_STR(out.data, "kept");
	CHECK_ST(read_pop3(older, 2, 0, 100, &out), STORE_NOTFOUND);
	CHECK_STR(out.data, "kept");
	buf_reset(&out);
	CHECK_ST(store_message_read_raw(older, 0, &out), STORE_NOTFOUND);
	CHECK_MESSAGE(older, 1, "", bodies[1], strlen(bodies[1]), 0);
	CHECK_MESSAGE(older, 3, "", bodies[3], strlen(bodies[3]), 0);
	/* the older session deletes the same and another: no error, nothing comes back */
	unsigned int idx2[3] = { 0, 1, 2 };
	CHECK_ST(store_maildrop_expunge(older, idx2, 3), STORE_OK);
	CHECK_ST(store_maildrop_expunge(older, idx2, 3), STORE_OK);
	CHECK_ST(read_pop3(newer, 1, -1, 100, &out), STORE_NOTFOUND);
	struct store_maildrop *third = open_md(a);
	CHECK_INT(third->count, 2); /* message 3 and the late one */
	if (third->count == 2) {
		CHECK(memcmp(&third->entries[0].id, &older->entries[3].id, 16) == 0);
		CHECK_MESSAGE(third, 0, "", bodies[3], strlen(bodies[3]), -1);
		CHECK_MESSAGE(third, 1, "", "S: late\r\n\r\nlate\r\n", 17, -1);
	}
	store_maildrop_free(&older);
	store_maildrop_free(&newer);
	unsigned int both[2] = { 0, 1 };
	CHECK_ST(store_maildrop_expunge(third, both, third->count), STORE_OK);
	store_maildrop_free(&third);
	CHECK_INT(count_of(a), 0);
	buf_deinit(&out);
}

/* Many messages expunged at once: a prefix of old ones (imported: their
 * ids name a time two hours ago), then four of every five of the rest.
 * On Cassandra the prefix can go by range and the others go row by row,
 * ROW_DELETE_BATCH rows a request: this crosses a batch boundary. */
static void test_expunge_many(void)
{
	enum { OLD = 5, YOUNG = 225, N = OLD + YOUNG };
	const char *a = "many@expunge.test";
	add_user(a);
	uint64_t two_hours_ago = now_ticks() - 2ULL * 3600 * 10000000;
	for (int i = 0; i < N; i++) {
		char body[64];
		int len = snprintf(body, sizeof(body), "Subject: %d\r\n\r\nmessage %d\r\n", i, i);
		struct store_rcpt r = { .address = a, .prefix = "" };
		struct store_delivery d = { .body = body, .body_len = (size_t)len, .rcpts = &r,
					    .rcpt_count = 1 };
		store_delivery_init(&d);
		if (i < OLD) {
			craft_id(two_hours_ago + (uint64_t)i, 0x33, &d.message_id);
			d.historical_id = true;
		}
		enum store_status st = store_deliver(store, &d);
		CHECK_ST(st == STORE_OK ? r.status : st, STORE_OK);
	}
	struct store_maildrop *md = open_md(a);
	CHECK_INT(md->count, N);
	static unsigned int idx[N];
	static char kept[N][UUID_STR_LEN + 1];
	unsigned int n = 0, k = 0;
	for (unsigned int i = 0; i < md->count && i < N; i++) {
		if (i >= OLD && i % 5 == 3)
			str_copy(kept[k++], md->entries[i].uidl, UUID_STR_LEN + 1);
		else
			idx[n++] = i;
	}
	CHECK_ST(store_maildrop_expunge(md, idx, n), STORE_OK);
	store_maildrop_free(&md);
	md = open_md(a);
	CHECK_INT(md->count, k);
	for (unsigned int i = 0; i < md->count && i < k; i++)
		CHECK_STR(md->entries[i].uidl, kept[i]);
	for (unsigned int i = 0; i < md->count && i < N; i++)
		idx[i] = i;
	CHECK_ST(store_maildrop_expunge(md, idx, md->count), STORE_OK);
	store_maildrop_free(&md);
	CHECK_INT(count_of(a), 0);
}

/* ---- concurrent deliveries ---- */

enum { CONC_THREADS = 4, CONC_PER_THREAD = 25 };

struct conc_arg {
	int thread;
	int failures;
};

static void *conc_thread(void *p)
{
	struct conc_arg *arg = p;
	for (int i = 0; i < CONC_PER_THREAD; i++) {
		char body[64];
		int n = snprintf(body, sizeof(body), "Subject: t%d m%d\r\n\r\nbody\r\n", arg->thread, i);
		struct store_rcpt r[2] = { { .address = "conc@conc.test", .prefix = "" },
					   { .address = "conc2@conc.test", .prefix = "P: 2\r\n" } };
		struct store_delivery d = { .body = body, .body_len = (size_t)n, .rcpts = r,
					    .rcpt_count = 2 };
		store_delivery_init(&d);
		if (store_deliver(store, &d) != STORE_OK || r[0].status != STORE_OK ||
		    r[1].status != STORE_OK)
			arg->failures++;
	}
	return NULL;
}

static void test_concurrent(void)
{
	add_user("conc@conc.test");
	add_user("conc2@conc.test");
	pthread_t th[CONC_THREADS];
	struct conc_arg args[CONC_THREADS];
	for (int i = 0; i < CONC_THREADS; i++) {
		args[i] = (struct conc_arg){ .thread = i };
		pthread_create(&th[i], NULL, conc_thread, &args[i]);
	}
	for (int i = 0; i < CONC_THREADS; i++) {
		pthread_join(th[i], NULL);
		CHECK_INT(args[i].failures, 0);
	}
	static const char *const boxes[2] = { "conc@conc.test", "conc2@conc.test" };
	for (int b = 0; b < 2; b++) {
		struct store_maildrop *md = open_md(boxes[b]);
		CHECK_INT(md->count, CONC_THREADS * CONC_PER_THREAD);
		bool seen[CONC_THREADS][CONC_PER_THREAD];
		memset(seen, 0, sizeof(seen));
		int dups = 0, bad = 0, unordered = 0, dup_uidl = 0;
		struct buf raw;
		buf_init(&raw, 0);
		for (unsigned int i = 0; i < md->count; i++) {
			buf_reset(&raw);
			int t = -1, m = -1;
			if (store_message_read_raw(md, i, &raw) != STORE_OK ||
			    sscanf(raw.data + (b == 1 ? 6 : 0), "Subject: t%d m%d", &t, &m) != 2 ||
			    t < 0 || t >= CONC_THREADS || m < 0 || m >= CONC_PER_THREAD) {
				bad++;
				continue;
			}
			if (seen[t][m])
				dups++;
			seen[t][m] = true;
			if (i > 0 && timeuuid_compare(&md->entries[i - 1].id, &md->entries[i].id) >= 0)
				unordered++;
			for (unsigned int k = 0; k < i; k++)
				if (strcmp(md->entries[k].uidl, md->entries[i].uidl) == 0)
					dup_uidl++;
		}
		buf_deinit(&raw);
		CHECK_INT(bad, 0);
		CHECK_INT(dups, 0);
		CHECK_INT(unordered, 0);
		CHECK_INT(dup_uidl, 0);
		store_maildrop_free(&md);
	}
}

/* ---- cursors ---- */

/* A body that names its message id and whose length and filler follow from
 * it, so a reader can tell that the octets it got are the message it
 * opened and no other. lines = 0: a length derived from the id (up to
 * about 256 KiB). */
static void id_body(const struct uuid *id, unsigned int lines, struct buf *out)
{
	char text[UUID_STR_LEN + 1];
	uuid_format(id, text);
	uint32_t h = 2166136261u;
	for (int i = 0; i < 16; i++)
		h = (h ^ id->b[i]) * 16777619u;
	if (lines == 0)
		lines = 1 + h % 4000;
	buf_printf(out, "Subject: cursor\r\nX-Id: %s\r\n\r\n", text);
	for (unsigned int l = 0; l < lines; l++) {
		char line[64];
		for (int k = 0; k < 60; k++)
			line[k] = (char)('a' + (h + l * 7 + (unsigned int)k) % 26);
		if ((h + l) % 7 == 0)
			line[0] = '.';
		line[60] = '\r';
		line[61] = '\n';
		buf_append(out, line, 62);
	}
}

/* Delivers an id_body message to the recipients; returns its id. */
static struct uuid deliver_id_body(const char *const *rcpts, unsigned int n, unsigned int lines)
{
	struct store_rcpt r[4];
	for (unsigned int k = 0; k < n; k++)
		r[k] = (struct store_rcpt){ .address = rcpts[k], .prefix = "" };
	struct store_delivery d = { .rcpts = r, .rcpt_count = n };
	store_delivery_init(&d);
	struct buf body;
	buf_init(&body, 0);
	id_body(&d.message_id, lines, &body);
	d.body = body.data;
	d.body_len = body.len;
	enum store_status st = store_deliver(store, &d);
	for (unsigned int k = 0; k < n && st == STORE_OK; k++)
		st = r[k].status;
	CHECK_ST(st, STORE_OK);
	buf_deinit(&body);
	return d.message_id;
}

/* Whether got is exactly message i of md as id_body made it. */
static bool is_id_body(const struct store_maildrop *md, unsigned int i, const struct buf *got,
		       unsigned int lines)
{
	struct buf want;
	buf_init(&want, 0);
	id_body(&md->entries[i].id, lines, &want);
	bool ok = got->len == want.len && memcmp(got->data, want.data, got->len) == 0 &&
		  got->len == md->entries[i].size;
	buf_deinit(&want);
	return ok;
}

/* Reads the cursor to its end in pieces; the status of the first failure. */
static enum store_status read_rest(struct store_cursor *c, size_t piece, struct buf *out)
{
	bool eof = false;
	enum store_status st = STORE_OK;
	while (st == STORE_OK && !eof)
		st = store_cursor_next(c, piece, out, &eof);
	return st;
}

static void test_cursor_basics(void)
{
	const char *a = "basics@cursor.test";
	add_user(a);
	const char *rcpt[1] = { a };
	deliver_id_body(rcpt, 1, 3);
	struct store_maildrop *md = open_md(a);
	struct store_cursor *c = (struct store_cursor *)&md; /* must be reset */
	CHECK_ST(store_cursor_open(md, md->count, &c), STORE_NOTFOUND);
	CHECK(c == NULL);
	CHECK_ST(store_cursor_open(md, 0, &c), STORE_OK);
	struct buf out;
	buf_init(&out, 0);
	bool eof = true;
	/* max 0: nothing, not at the end */
	CHECK_ST(store_cursor_next(c, 0, &out, &eof), STORE_OK);
	CHECK(!eof && out.len == 0);
	/* out's cap too small for the piece: TOOBIG, nothing taken */
	struct buf small;
	buf_init(&small, 10);
	CHECK_ST(store_cursor_next(c, 11, &small, &eof), STORE_TOOBIG);
	CHECK_INT(store_cursor_offset(c), 0);
	CHECK_ST(store_cursor_next(c, 10, &small, &eof), STORE_OK);
	CHECK_INT(small.len, 10);
	buf_append(&out, small.data, small.len);
	buf_deinit(&small);
	/* appends after what out holds; a max beyond the end stops there */
	CHECK_ST(store_cursor_next(c, SIZE_MAX, &out, &eof), STORE_OK);
	CHECK(eof);
	CHECK(is_id_body(md, 0, &out, 3));
	CHECK_INT(store_cursor_offset(c), md->entries[0].size);
	store_cursor_close(&c);
	CHECK(c == NULL);
	store_cursor_close(&c);
	unsigned int zero = 0;
	CHECK_ST(store_maildrop_expunge(md, &zero, 1), STORE_OK);
	store_maildrop_free(&md);
	buf_deinit(&out);
}

/* Another session expunges messages while cursors on them are open. mem
 * and SQLite (its reader pool not exhausted) read a snapshot: the cursor
 * finishes with the octets it opened. Cassandra holds one chunk: what it
 * holds is served, and a chunk fetched after its body was deleted gives
 * NOTFOUND; a body another mailbox still references is served whole. No
 * backend ever returns other octets. */
/* Drops the store file's clean pages from the kernel's page cache. */
static void drop_page_cache(void)
{
	const char *names[] = { "tern.db", "tern.db-wal" };
	for (size_t k = 0; k < 2; k++) {
		char path[PATH_MAX + 16];
		snprintf(path, sizeof(path), "%s/%s", data_dir, names[k]);
		int fd = open(path, O_RDONLY | O_CLOEXEC);
		if (fd < 0)
			continue;
		fdatasync(fd);
		CHECK(posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED) == 0);
		close(fd);
	}
}

/* Reading from memory only (store_nowait_begin): the same octets when
 * served; WOULDBLOCK, nothing appended and a clean reader when not (a
 * cold SQLite file, any Cassandra read); the same read on a worker then
 * works as ever. */
static void test_cursor_nowait(void)
{
	const char *a = "nowait@cursor.test";
	add_user(a);
	const char *rcpt[1] = { a };
	deliver_id_body(rcpt, 1, 200);
	struct store_maildrop *md = open_md(a);
	struct buf want, got;
	buf_init(&want, 0);
	buf_init(&got, 0);
	CHECK_ST(read_pieces(md, 0, 4096, &want, __LINE__), STORE_OK);
	bool cassandra = strcmp(backend, "cassandra") == 0;
	CHECK(store_reads_nowait(store) == !cassandra);

	/* warm (the read above): served, the same octets */
	store_nowait_begin();
	enum store_status st = read_pieces(md, 0, 4096, &got, __LINE__);
	bool blocked = store_nowait_end();
	if (cassandra) {
		CHECK_ST(st, STORE_WOULDBLOCK);
		CHECK(blocked && got.len == 0);
	} else {
		CHECK_ST(st, STORE_OK);
		CHECK(!blocked);
		CHECK(got.len == want.len && memcmp(got.data, want.data, want.len) == 0);
	}
	if (strcmp(backend, "sqlite") == 0) {
		/* cold: a commit (so the readers drop their own page cache) and
		 * the file's pages out of the kernel's */
		const char *b = "nowait-other@cursor.test";
		add_user(b);
		const char *other[1] = { b };
		deliver_id_body(other, 1, 3);
		drop_page_cache();
		buf_reset(&got);
		store_nowait_begin();
		st = read_pieces(md, 0, 4096, &got, __LINE__);
		blocked = store_nowait_end();
		CHECK_ST(st, STORE_WOULDBLOCK);
		CHECK(blocked && got.len == 0);
		/* as a worker would: waits, and reads it whole */
		CHECK_ST(read_pieces(md, 0, 4096, &got, __LINE__), STORE_OK);
		CHECK(got.len == want.len && memcmp(got.data, want.data, want.len) == 0);
		/* now in memory again */
		buf_reset(&got);
		store_nowait_begin();
		CHECK_ST(read_pieces(md, 0, 4096, &got, __LINE__), STORE_OK);
		CHECK(!store_nowait_end());
		CHECK(got.len == want.len);
	}
	buf_deinit(&want);
	buf_deinit(&got);
	store_maildrop_free(&md);
}

static void test_cursor_expunge(void)
{
	const char *a = "exp@cursor.test", *b = "share@cursor.test";
	add_user(a);
	add_user(b);
	const char *one[1] = { a }, *two[2] = { a, b };
	deliver_id_body(one, 1, 30);                   /* 0: small */
	deliver_id_body(one, 1, 3 * 1024 * 1024 / 62); /* 1: 3 MiB, several chunks */
	deliver_id_body(two, 2, 30);                   /* 2: small, shared with b */
	bool snapshot = strcmp(backend, "cassandra") != 0;
	static const unsigned int lines[3] = { 30, 3 * 1024 * 1024 / 62, 30 };

	struct store_maildrop *md = open_md(a);
	CHECK_INT(md->count, 3);
	if (md->count != 3) {
		store_maildrop_free(&md);
		return;
	}
	struct store_cursor *c[4] = { NULL };
	struct buf got[4];
	for (unsigned int k = 0; k < 4; k++) {
		buf_init(&got[k], 0);
		CHECK_ST(store_cursor_open(md, k < 3 ? k : 0, &c[k]), STORE_OK);
	}
	bool eof;
	for (unsigned int k = 0; k < 3; k++)
		CHECK_ST(store_cursor_next(c[k], 1000, &got[k], &eof), STORE_OK);

	struct store_maildrop *other = open_md(a);
	unsigned int all[3] = { 0, 1, 2 };
	CHECK_ST(store_maildrop_expunge(other, all, 3), STORE_OK);
	store_maildrop_free(&other);
	CHECK_INT(count_of(a), 0);

	/* gone for whoever opens it now */
	struct store_cursor *late = NULL;
	CHECK_ST(store_cursor_open(md, 0, &late), STORE_NOTFOUND);
	CHECK(late == NULL);
	struct buf raw;
	buf_init(&raw, 0);
	CHECK_ST(store_message_read_raw(md, 1, &raw), STORE_NOTFOUND);
	CHECK_INT(raw.len, 0);
	buf_deinit(&raw);

	/* small, first piece read: all of it is there (held or a snapshot) */
	CHECK_ST(read_rest(c[0], 1000, &got[0]), STORE_OK);
	CHECK(is_id_body(md, 0, &got[0], lines[0]));
	/* 3 MiB: snapshot, or NOTFOUND once past the held chunk */
	enum store_status st = read_rest(c[1], 128 * 1024, &got[1]);
	CHECK_ST(st, snapshot ? STORE_OK : STORE_NOTFOUND);
	if (st == STORE_OK)
		CHECK(is_id_body(md, 1, &got[1], lines[1]));
	else
		CHECK(got[1].len >= 1000 && got[1].len <= 1024 * 1024 + 1000); /* one chunk at most */
	/* after a failure the cursor only awaits its close */
	if (st != STORE_OK)
		CHECK(store_cursor_next(c[1], 10, &got[1], &eof) != STORE_OK);
	/* shared with b: its body stays, every backend serves it whole */
	CHECK_ST(read_rest(c[2], 1000, &got[2]), STORE_OK);
	CHECK(is_id_body(md, 2, &got[2], lines[2]));
	/* opened before the expunge, nothing read yet */
	st = read_rest(c[3], 4096, &got[3]);
	CHECK_ST(st, snapshot ? STORE_OK : STORE_NOTFOUND);
	if (st == STORE_OK)
		CHECK(is_id_body(md, 0, &got[3], lines[0]));
	else
		CHECK_INT(got[3].len, 0);
	for (unsigned int k = 0; k < 4; k++) {
		store_cursor_close(&c[k]);
		buf_deinit(&got[k]);
	}
	store_maildrop_free(&md);
	md = open_md(b);
	CHECK_INT(md->count, 1);
	unsigned int zero = 0;
	CHECK_ST(store_maildrop_expunge(md, &zero, md->count), STORE_OK);
	store_maildrop_free(&md);
}

/* More cursors open at once than SQLite's reader pool holds (64): those
 * beyond read through the thread's connection, piece by piece. All read
 * correctly, interleaved; after an expunge, the pooled ones (and every mem
 * and Cassandra cursor, whose small messages are held whole) finish from
 * what they hold, and SQLite's unpooled ones give NOTFOUND. */
enum { POOL_CURSORS = 80, SQLITE_POOL = 64, POOL_LINES = 50 };

static void test_cursor_pool(void)
{
	const char *a = "pool@cursor.test";
	add_user(a);
	const char *one[1] = { a };
	for (unsigned int k = 0; k < POOL_CURSORS; k++)
		deliver_id_body(one, 1, POOL_LINES);
	struct store_maildrop *md = open_md(a);
	CHECK_INT(md->count, POOL_CURSORS);
	if (md->count != POOL_CURSORS) {
		store_maildrop_free(&md);
		return;
	}
	struct store_cursor *c[POOL_CURSORS];
	struct buf got[POOL_CURSORS];
	bool eof[POOL_CURSORS];
	unsigned int complete = 0, notfound = 0, other = 0;
	for (int phase = 0; phase < 2; phase++) {
		for (unsigned int k = 0; k < POOL_CURSORS; k++) {
			buf_init(&got[k], 0);
			eof[k] = false;
			CHECK_ST(store_cursor_open(md, k, &c[k]), STORE_OK);
		}
		/* round robin, 1000 octets each */
		bool expunged = false;
		for (unsigned int round = 0, open = POOL_CURSORS; open > 0; round++) {
			open = 0;
			for (unsigned int k = 0; k < POOL_CURSORS; k++) {
				if (c[k] == NULL || eof[k])
					continue;
				enum store_status st = store_cursor_next(c[k], 1000, &got[k], &eof[k]);
				if (st != STORE_OK) {
					if (st == STORE_NOTFOUND)
						notfound++;
					else
						other++;
					store_cursor_close(&c[k]);
					continue;
				}
				open += !eof[k];
			}
			if (phase == 1 && round == 0 && !expunged) {
				struct store_maildrop *md2 = open_md(a);
				unsigned int *all = xcalloc(md2->count + 1, sizeof(unsigned int));
				for (unsigned int k = 0; k < md2->count; k++)
					all[k] = k;
				CHECK_ST(store_maildrop_expunge(md2, all, md2->count), STORE_OK);
				free(all);
				store_maildrop_free(&md2);
				expunged = true;
			}
		}
		for (unsigned int k = 0; k < POOL_CURSORS; k++) {
			if (c[k] != NULL && eof[k]) {
				if (is_id_body(md, k, &got[k], POOL_LINES))
					complete++;
				else
					other++;
			}
			store_cursor_close(&c[k]);
			buf_deinit(&got[k]);
		}
		if (phase == 0) {
			CHECK_INT(complete, POOL_CURSORS);
			CHECK_INT(notfound + other, 0);
			complete = notfound = other = 0;
		}
	}
	bool sqlite = strcmp(backend, "sqlite") == 0;
	CHECK_INT(complete, sqlite ? SQLITE_POOL : POOL_CURSORS);
	CHECK_INT(notfound, sqlite ? POOL_CURSORS - SQLITE_POOL : 0);
	CHECK_INT(other, 0);
	store_maildrop_free(&md);
	CHECK_INT(count_of(a), 0);
}

/* Cursors used the way the POP3 daemon uses them: each piece on whatever
 * thread is free, other cursors' pieces in between, while deliveries and
 * expunges go on. Every read either yields exactly the message opened or
 * NOTFOUND (it was expunged); nothing else. */
enum { CT_SLOTS = 12, CT_READERS = 4, CT_MIN_STEPS = 2000, CT_DELIVERIES = 40, CT_KEEP = 6 };

struct ct_slot {
	bool busy;
	struct store_maildrop *md;
	struct store_cursor *c;
	unsigned int index;
	size_t piece;
	struct buf got;
};

struct ct_shared {
	pthread_mutex_t lock;
	struct ct_slot slots[CT_SLOTS];
	unsigned int steps;
	bool writers_done;
	unsigned int completed, notfound, wrong, errors, expunges;
	unsigned int threads_seen; /* bit per reader thread that finished a message another began */
};

static const char *const ct_address = "threads@cursor.test";

static void ct_step(struct ct_shared *sh, struct ct_slot *sl, unsigned int *seed)
{
	static const size_t pieces[] = { 1000, 4096, 65536, 128 * 1024 };
	enum { NONE, DONE, GONE, WRONG, ERROR } outcome = NONE;
	if (sl->c == NULL) {
		if (store_maildrop_open(store, ct_address, &sl->md) != STORE_OK) {
			outcome = ERROR;
		} else if (sl->md->count > 0) {
			sl->index = (unsigned int)rand_r(seed) % sl->md->count;
			sl->piece = pieces[(unsigned int)rand_r(seed) % 4];
			enum store_status st = store_cursor_open(sl->md, sl->index, &sl->c);
			outcome = st == STORE_OK ? NONE : st == STORE_NOTFOUND ? GONE : ERROR;
		}
		if (sl->c == NULL)
			store_maildrop_free(&sl->md);
	} else {
		bool eof = false;
		enum store_status st = store_cursor_next(sl->c, sl->piece, &sl->got, &eof);
		if (st == STORE_NOTFOUND)
			outcome = GONE;
		else if (st != STORE_OK)
			outcome = ERROR;
		else if (eof)
			outcome = is_id_body(sl->md, sl->index, &sl->got, 0) ? DONE : WRONG;
		if (outcome != NONE) {
			store_cursor_close(&sl->c);
			store_maildrop_free(&sl->md);
			buf_reset(&sl->got);
		}
	}
	pthread_mutex_lock(&sh->lock);
	sh->completed += outcome == DONE;
	sh->notfound += outcome == GONE;
	sh->wrong += outcome == WRONG;
	sh->errors += outcome == ERROR;
	pthread_mutex_unlock(&sh->lock);
}

static void *ct_reader(void *p)
{
	struct ct_shared *sh = p;
	unsigned int seed = (unsigned int)(uintptr_t)&seed;
	for (;;) {
		pthread_mutex_lock(&sh->lock);
		if (sh->writers_done && sh->steps >= CT_MIN_STEPS) {
			pthread_mutex_unlock(&sh->lock);
			return NULL;
		}
		unsigned int start = (unsigned int)rand_r(&seed) % CT_SLOTS;
		struct ct_slot *sl = NULL;
		for (unsigned int k = 0; k < CT_SLOTS && sl == NULL; k++)
			if (!sh->slots[(start + k) % CT_SLOTS].busy)
				sl = &sh->slots[(start + k) % CT_SLOTS];
		if (sl != NULL) {
			sl->busy = true;
			sh->steps++;
		}
		pthread_mutex_unlock(&sh->lock);
		if (sl == NULL) {
			sched_yield();
			continue;
		}
		ct_step(sh, sl, &seed);
		pthread_mutex_lock(&sh->lock);
		sl->busy = false;
		pthread_mutex_unlock(&sh->lock);
	}
}

static void *ct_writer(void *p)
{
	struct ct_shared *sh = p;
	const char *rcpt[1] = { ct_address };
	for (unsigned int k = 0; k < CT_DELIVERIES; k++) {
		deliver_id_body(rcpt, 1, 0);
		/* an expunge of all but the newest few, from a session of its own */
		if (k % 4 == 3) {
			struct store_maildrop *md = NULL;
			if (store_maildrop_open(store, ct_address, &md) != STORE_OK)
				continue;
			unsigned int n = md->count > CT_KEEP ? md->count - CT_KEEP : 0;
			unsigned int *idx = xcalloc(n + 1, sizeof(unsigned int));
			for (unsigned int i = 0; i < n; i++)
				idx[i] = i;
			enum store_status st = store_maildrop_expunge(md, idx, n);
			free(idx);
			store_maildrop_free(&md);
			pthread_mutex_lock(&sh->lock);
			sh->expunges += st == STORE_OK && n > 0;
			sh->errors += st != STORE_OK;
			pthread_mutex_unlock(&sh->lock);
		}
	}
	pthread_mutex_lock(&sh->lock);
	sh->writers_done = true;
	pthread_mutex_unlock(&sh->lock);
	return NULL;
}

static void test_cursor_threads(void)
{
	add_user(ct_address);
	const char *rcpt[1] = { ct_address };
	for (unsigned int k = 0; k < CT_KEEP; k++)
		deliver_id_body(rcpt, 1, 0);
	struct ct_shared *sh = xcalloc(1, sizeof(*sh));
	pthread_mutex_init(&sh->lock, NULL);
	for (unsigned int k = 0; k < CT_SLOTS; k++)
		buf_init(&sh->slots[k].got, 0);
	pthread_t readers[CT_READERS], writer;
	pthread_create(&writer, NULL, ct_writer, sh);
	for (unsigned int k = 0; k < CT_READERS; k++)
		pthread_create(&readers[k], NULL, ct_reader, sh);
	pthread_join(writer, NULL);
	for (unsigned int k = 0; k < CT_READERS; k++)
		pthread_join(readers[k], NULL);
	for (unsigned int k = 0; k < CT_SLOTS; k++) {
		store_cursor_close(&sh->slots[k].c);
		store_maildrop_free(&sh->slots[k].md);
		buf_deinit(&sh->slots[k].got);
	}
	CHECK_INT(sh->wrong, 0);
	CHECK_INT(sh->errors, 0);
	CHECK(sh->completed >= 20);
	CHECK(sh->expunges >= 1);
	CHECK(sh->steps >= CT_MIN_STEPS);
	if (sh->wrong + sh->errors > 0 || sh->completed < 20)
		fprintf(stderr, "[%s] cursor threads: %u complete, %u not found, %u wrong, %u errors\n",
			backend, sh->completed, sh->notfound, sh->wrong, sh->errors);
	pthread_mutex_destroy(&sh->lock);
	free(sh);
	struct store_maildrop *md = open_md(ct_address);
	unsigned int *all = xcalloc(md->count + 1, sizeof(unsigned int));
	for (unsigned int i = 0; i < md->count; i++)
		all[i] = i;
	CHECK_ST(store_maildrop_expunge(md, all, md->count), STORE_OK);
	free(all);
	store_maildrop_free(&md);
}

/* ---- user deletion ---- */

static void test_user_del_messages(void)
{
	add_user("carol@del.test");
	add_user("dave@del.test");
	const char *body = "Subject: del\r\n\r\nx\r\n";
	struct store_rcpt r[2] = { { .address = "carol@del.test", .prefix = "" },
				   { .address = "dave@del.test", .prefix = "" } };
	struct store_delivery d = { .body = body, .body_len = strlen(body), .rcpts = r,
				    .rcpt_count = 2 };
	store_delivery_init(&d);
	CHECK_ST(store_deliver(store, &d), STORE_OK);
	for (int i = 0; i < 3; i++)
		CHECK_ST(deliver1("carol@del.test", "", body, strlen(body), NULL, NULL), STORE_OK);
	CHECK_INT(count_of("carol@del.test"), 4);
	struct store_maildrop *stale = open_md("carol@del.test");
	CHECK_ST(store_user_del(store, "carol@del.test"), STORE_OK);
	/* a session open across the deletion finds nothing, and does not crash */
	struct buf out;
	buf_init(&out, 0);
	CHECK_ST(read_pop3(stale, 0, -1, 100, &out), STORE_NOTFOUND);
	unsigned int zero = 0;
	CHECK_ST(store_maildrop_expunge(stale, &zero, 1), STORE_OK);
	store_maildrop_free(&stale);
	/* the shared body is still there for dave */
	struct store_maildrop *md = open_md("dave@del.test");
	CHECK_INT(md->count, 1);
	if (md->count == 1)
		CHECK_MESSAGE(md, 0, "", body, strlen(body), 0);
	store_maildrop_free(&md);
	/* the address comes back with an empty mailbox */
	CHECK_ST(store_user_add(store, "carol@del.test", "h"), STORE_OK);
	CHECK_INT(count_of("carol@del.test"), 0);
	/* a delivery to a deleted user fails for that user only */
	CHECK_ST(store_user_del(store, "carol@del.test"), STORE_OK);
	store_delivery_init(&d);
	CHECK_ST(store_deliver(store, &d), STORE_OK);
	CHECK_ST(r[0].status, STORE_NOTFOUND);
	CHECK_ST(r[1].status, STORE_OK);
	CHECK_INT(count_of("dave@del.test"), 2);
	buf_deinit(&out);
}

/* ---- persistence (sqlite) ---- */

struct snapshot {
	unsigned int count;
	uint64_t total;
	struct store_listing_entry *entries;
	struct buf raw;
};

static void take_snapshot(const char *address, struct snapshot *s)
{
	struct store_maildrop *md = open_md(address);
	s->count = md->count;
	s->total = md->total_size;
	s->entries = xcalloc(md->count + 1, sizeof(*s->entries));
	memcpy(s->entries, md->entries, md->count * sizeof(*s->entries));
	buf_init(&s->raw, 0);
	for (unsigned int i = 0; i < md->count; i++)
		CHECK_ST(store_message_read_raw(md, i, &s->raw), STORE_OK);
	store_maildrop_free(&md);
}

static void test_reopen(void)
{
	static const char *const boxes[] = { "conc@conc.test", "dave@del.test" };
	struct snapshot before[2], after[2];
	struct buf domains, users, hash;
	buf_init(&domains, 0);
	buf_init(&users, 0);
	buf_init(&hash, 512);
	CHECK_ST(store_user_set_password(store, "dave@del.test", "persisted-hash"), STORE_OK);
	CHECK_ST(store_domain_list(store, &domains), STORE_OK);
	CHECK_ST(store_user_list(store, &users), STORE_OK);
	for (int i = 0; i < 2; i++)
		take_snapshot(boxes[i], &before[i]);
	CHECK(before[0].count > 0);

	store_close(&store);
	CHECK(store == NULL);
	store = open_store();
	CHECK_STR(store_backend_name(store), backend);

	struct buf domains2, users2;
	buf_init(&domains2, 0);
	buf_init(&users2, 0);
	CHECK_ST(store_domain_list(store, &domains2), STORE_OK);
	CHECK_ST(store_user_list(store, &users2), STORE_OK);
	CHECK_STR(domains2.data, domains.data);
	CHECK_STR(users2.data, users.data);
	CHECK_ST(store_user_get(store, "dave@del.test", &hash), STORE_OK);
	CHECK_STR(hash.data, "persisted-hash");
	for (int i = 0; i < 2; i++) {
		take_snapshot(boxes[i], &after[i]);
		CHECK_INT(after[i].count, before[i].count);
		CHECK_INT(after[i].total, before[i].total);
		for (unsigned int k = 0; k < after[i].count && k < before[i].count; k++) {
			CHECK(memcmp(&after[i].entries[k].id, &before[i].entries[k].id, 16) == 0);
			CHECK_INT(after[i].entries[k].size, before[i].entries[k].size);
			CHECK_STR(after[i].entries[k].uidl, before[i].entries[k].uidl);
		}
		CHECK_MEM(after[i].raw.data, after[i].raw.len, before[i].raw.data, before[i].raw.len);
		free(before[i].entries);
		free(after[i].entries);
		buf_deinit(&before[i].raw);
		buf_deinit(&after[i].raw);
	}
	/* the UID counter survives too: new UIDLs are still new */
	struct store_maildrop *md = open_md("dave@del.test");
	char old_uidls[8][72];
	unsigned int nold = md->count < 8 ? md->count : 8;
	for (unsigned int i = 0; i < nold; i++)
		str_copy(old_uidls[i], md->entries[i].uidl, sizeof(old_uidls[i]));
	store_maildrop_free(&md);
	char uidl[UUID_STR_LEN + 1];
	CHECK_ST(deliver1("dave@del.test", "", "S: r\r\n\r\nr\r\n", 11, NULL, uidl), STORE_OK);
	for (unsigned int i = 0; i < nold; i++)
		CHECK(strcmp(old_uidls[i], uidl) != 0);
	buf_deinit(&domains);
	buf_deinit(&users);
	buf_deinit(&domains2);
	buf_deinit(&users2);
	buf_deinit(&hash);
}

/* ---- aliases ---- */

static const char HASH[] = "$argon2id$v=19$m=65536,t=3,p=1$c2FsdA$aGFzaA";

static enum store_status set_alias(const char *address, const char *t1, const char *t2)
{
	const char *t[2] = { t1, t2 };
	return store_alias_set(store, address, t, t2 != NULL ? 2 : 1);
}

static void check_alias(const char *address, const char *want, int line)
{
	struct buf b;
	buf_init(&b, 0);
	enum store_status st = store_alias_get(store, address, &b);
	test_checks++;
	if (st != STORE_OK || strcmp(b.data, want) != 0) {
		test_failures++;
		fprintf(stderr, "%s:%d: [%s] alias %s: %s \"%s\", expected \"%s\"\n", __FILE__, line,
			backend, address, store_status_name(st), b.data, want);
	}
	buf_deinit(&b);
}
#define CHECK_ALIAS(a, want) check_alias(a, want, __LINE__)

/* Resolves address and compares with the users, comma-separated, in order. */
static void check_resolve(const char *address, enum store_status want_st, const char *want,
			  int line)
{
	struct store_resolved *r = xmalloc(sizeof(*r));
	enum store_status st = store_resolve(store, address, r);
	struct buf got;
	buf_init(&got, 0);
	for (unsigned int i = 0; st == STORE_OK && i < r->count; i++)
		buf_printf(&got, "%s%s", i > 0 ? "," : "", r->users[i]);
	test_checks++;
	if (st != want_st || strcmp(got.data, want) != 0) {
		test_failures++;
		fprintf(stderr, "%s:%d: [%s] resolve %s: %s \"%s\", expected %s \"%s\"\n", __FILE__,
			line, backend, address, store_status_name(st), got.data,
			store_status_name(want_st), want);
	}
	buf_deinit(&got);
	free(r);
}
#define CHECK_RESOLVE(a, st, want) check_resolve(a, st, want, __LINE__)

static void test_aliases(void)
{
	add_user("u1@al.test");
	add_user("u2@al.test");
	add_user("u3@al.test");
	add_user("far@al2.test");
	CHECK_ST(set_alias("list@al.test", "u1@al.test", "u2@al.test"), STORE_OK);
	CHECK_ALIAS("list@al.test", "u1@al.test\nu2@al.test\n");
	/* replaced whole */
	CHECK_ST(set_alias("list@al.test", "u3@al.test", NULL), STORE_OK);
	CHECK_ALIAS("list@al.test", "u3@al.test\n");
	/* duplicates folded; a target in another local domain is fine */
	const char *dup[] = { "u1@al.test", "far@al2.test", "u1@al.test" };
	CHECK_ST(store_alias_set(store, "dup@al.test", dup, 3), STORE_OK);
	CHECK_ALIAS("dup@al.test", "u1@al.test\nfar@al2.test\n");

	/* refused */
	CHECK_ST(set_alias("x@not-local.test", "u1@al.test", NULL), STORE_INVALID);
	CHECK_ST(set_alias("no-domain", "u1@al.test", NULL), STORE_INVALID);
	CHECK_ST(set_alias("u1@al.test", "u2@al.test", NULL), STORE_INVALID); /* a user */
	CHECK_ST(store_alias_set(store, "empty@al.test", NULL, 0), STORE_INVALID);
	const char *many[STORE_ALIAS_TARGETS_MAX + 1];
	for (int i = 0; i <= STORE_ALIAS_TARGETS_MAX; i++)
		many[i] = "u1@al.test";
	CHECK_ST(store_alias_set(store, "many@al.test", many, STORE_ALIAS_TARGETS_MAX + 1),
		 STORE_INVALID);
	CHECK_ST(store_alias_set(store, "many@al.test", many, STORE_ALIAS_TARGETS_MAX), STORE_OK);
	CHECK_ST(set_alias("bad@al.test", "ghost@al.test", NULL), STORE_NOTFOUND);
	CHECK_ST(set_alias("bad@al.test", "u1@al.test", "ghost@al.test"), STORE_NOTFOUND);
	CHECK_ST(set_alias("bad@al.test", "not an address", NULL), STORE_INVALID);
	struct buf b;
	buf_init(&b, 0);
	CHECK_ST(store_alias_get(store, "bad@al.test", &b), STORE_NOTFOUND);

	/* loops: self, a -> b -> a, and through a longer ring */
	CHECK_ST(set_alias("self@al.test", "self@al.test", NULL), STORE_LOOP);
	CHECK_ST(set_alias("b@al.test", "u1@al.test", NULL), STORE_OK);
	CHECK_ST(set_alias("a@al.test", "b@al.test", NULL), STORE_OK);
	CHECK_ST(set_alias("b@al.test", "a@al.test", NULL), STORE_LOOP);
	CHECK_ALIAS("b@al.test", "u1@al.test\n"); /* left as it was */
	CHECK_ST(set_alias("c@al.test", "a@al.test", NULL), STORE_OK);
	CHECK_ST(set_alias("b@al.test", "u2@al.test", "c@al.test"), STORE_LOOP);

	/* depth: 8 levels of aliases are fine, a 9th is refused */
	char names[10][64];
	for (int i = 1; i <= 9; i++)
		snprintf(names[i], sizeof(names[i]), "depth%d@al.test", i);
	CHECK_ST(set_alias(names[8], "u1@al.test", NULL), STORE_OK);
	for (int i = 7; i >= 1; i--)
		CHECK_ST(set_alias(names[i], names[i + 1], NULL), STORE_OK);
	CHECK_RESOLVE(names[1], STORE_OK, "u1@al.test");
	CHECK_ST(set_alias("depth0@al.test", names[1], NULL), STORE_LOOP);
	/* ...and an alias that gets deeper because one below it changed is
	 * refused at delivery */
	CHECK_ST(set_alias("deep@al.test", names[2], NULL), STORE_OK);
	CHECK_RESOLVE("deep@al.test", STORE_OK, "u1@al.test");
	CHECK_ST(set_alias("leaf@al.test", "u1@al.test", NULL), STORE_OK);
	CHECK_ST(set_alias(names[8], "leaf@al.test", NULL), STORE_OK);
	CHECK_RESOLVE("deep@al.test", STORE_LOOP, "");
	CHECK_ST(set_alias(names[8], "u1@al.test", NULL), STORE_OK);

	/* an alias is no user, and a user no alias */
	CHECK_ST(store_user_add(store, "list@al.test", HASH), STORE_EXISTS);
	buf_reset(&b);
	CHECK_ST(store_user_get(store, "list@al.test", &b), STORE_NOTFOUND);

	/* the list: one line per alias, in address order */
	struct buf list;
	buf_init(&list, 0);
	CHECK_ST(store_alias_list(store, &list), STORE_OK);
	CHECK(strstr(list.data, "dup@al.test u1@al.test,far@al2.test\n") != NULL);
	CHECK(strstr(list.data, "list@al.test u3@al.test\n") != NULL);
	const char *pa = strstr(list.data, "a@al.test "), *pb = strstr(list.data, "b@al.test ");
	const char *pd = strstr(list.data, "dup@al.test ");
	CHECK(list.data == pa || (pa != NULL && pa[-1] == '\n'));
	CHECK(pa != NULL && pb != NULL && pd != NULL && pa < pb && pb < pd);

	/* delete */
	CHECK_ST(store_alias_del(store, "list@al.test"), STORE_OK);
	CHECK_ST(store_alias_del(store, "list@al.test"), STORE_NOTFOUND);
	buf_reset(&b);
	CHECK_ST(store_alias_get(store, "list@al.test", &b), STORE_NOTFOUND);
	CHECK_ST(store_user_add(store, "list@al.test", HASH), STORE_OK); /* free again */
	CHECK_ST(store_user_del(store, "list@al.test"), STORE_OK);

	/* a domain with aliases left cannot go */
	CHECK_ST(store_domain_add(store, "aonly.test"), STORE_OK);
	CHECK_ST(set_alias("x@aonly.test", "u1@al.test", NULL), STORE_OK);
	CHECK_ST(store_domain_del(store, "aonly.test"), STORE_EXISTS);
	CHECK_ST(store_alias_del(store, "x@aonly.test"), STORE_OK);
	CHECK_ST(store_domain_del(store, "aonly.test"), STORE_OK);
	buf_deinit(&list);
	buf_deinit(&b);
}

/* Stores a ring of two aliases behind store.c's back, as two nodes
 * writing at the same moment could. */
static void sqlite_store_loop(const char *a, const char *b)
{
	char path[PATH_MAX + 16];
	snprintf(path, sizeof(path), "%s/tern.db", data_dir);
	sqlite3 *db = NULL;
	CHECK(sqlite3_open(path, &db) == SQLITE_OK);
	sqlite3_busy_timeout(db, 5000);
	char sql[512];
	snprintf(sql, sizeof(sql),
		 "INSERT INTO aliases VALUES ('%s', 'al.test', '%s' || char(10));"
		 "INSERT INTO aliases VALUES ('%s', 'al.test', '%s' || char(10) || 'u1@al.test' || char(10));",
		 a, b, b, a);
	CHECK(sqlite3_exec(db, sql, NULL, NULL, NULL) == SQLITE_OK);
	sqlite3_close(db);
}

static void test_resolve(void)
{
	/* (the users of test_aliases) */
	CHECK_RESOLVE("u1@al.test", STORE_OK, "u1@al.test");
	CHECK_RESOLVE("nobody@al.test", STORE_NOTFOUND, "");
	CHECK_RESOLVE("someone@remote.test", STORE_NOTFOUND, "");
	CHECK_RESOLVE("no-domain", STORE_INVALID, "");
	/* nested, depth-first, duplicates folded */
	CHECK_ST(set_alias("inner@al.test", "u2@al.test", "u1@al.test"), STORE_OK);
	CHECK_ST(set_alias("team@al.test", "inner@al.test", "u3@al.test"), STORE_OK);
	const char *all[] = { "u3@al.test", "team@al.test", "inner@al.test", "u1@al.test" };
	CHECK_ST(store_alias_set(store, "all@al.test", all, 4), STORE_OK);
	CHECK_RESOLVE("team@al.test", STORE_OK, "u2@al.test,u1@al.test,u3@al.test");
	CHECK_RESOLVE("all@al.test", STORE_OK, "u3@al.test,u2@al.test,u1@al.test");
	/* 64 targets of 64 users is the most */
	char addrs[STORE_ALIAS_TARGETS_MAX + 1][64];
	const char *wide[STORE_ALIAS_TARGETS_MAX + 1];
	for (int i = 0; i <= STORE_ALIAS_TARGETS_MAX; i++) {
		snprintf(addrs[i], sizeof(addrs[i]), "w%d@wide.test", i);
		wide[i] = addrs[i];
		add_user(addrs[i]);
	}
	CHECK_ST(store_alias_set(store, "wide@wide.test", wide, STORE_ALIAS_TARGETS_MAX),
		 STORE_OK);
	struct store_resolved *r = xmalloc(sizeof(*r));
	CHECK_ST(store_resolve(store, "wide@wide.test", r), STORE_OK);
	CHECK_INT(r->count, STORE_ALIAS_TARGETS_MAX);
	/* one more user through a nested alias would be too many */
	CHECK_ST(set_alias("w-extra@wide.test", addrs[STORE_ALIAS_TARGETS_MAX], NULL), STORE_OK);
	CHECK_ST(set_alias("wider@wide.test", "wide@wide.test", "w-extra@wide.test"),
		 STORE_INVALID);
	free(r);

	/* targets deleted since are skipped; an alias with none left is NOTFOUND */
	add_user("tmp1@al.test");
	add_user("tmp2@al.test");
	CHECK_ST(set_alias("gone@al.test", "tmp1@al.test", NULL), STORE_OK);
	CHECK_ST(set_alias("half@al.test", "tmp2@al.test", "u1@al.test"), STORE_OK);
	CHECK_ST(store_user_del(store, "tmp1@al.test"), STORE_OK);
	CHECK_ST(store_user_del(store, "tmp2@al.test"), STORE_OK);
	CHECK_RESOLVE("gone@al.test", STORE_NOTFOUND, "");
	CHECK_RESOLVE("half@al.test", STORE_OK, "u1@al.test");
	CHECK_ALIAS("half@al.test", "tmp2@al.test\nu1@al.test\n"); /* the row is kept */

	/* a loop stored anyway is refused at delivery, never followed */
	if (strcmp(backend, "sqlite") == 0) {
		sqlite_store_loop("ring1@al.test", "ring2@al.test");
		CHECK_RESOLVE("ring1@al.test", STORE_LOOP, "");
		CHECK_RESOLVE("ring2@al.test", STORE_LOOP, "");
	}

	/* <Postmaster>: pm-a has none, pm-b a user, pm-c an alias */
	CHECK_ST(store_domain_add(store, "pm-a.test"), STORE_OK);
	add_user("postmaster@pm-b.test");
	add_user("boss@pm-c.test");
	CHECK_RESOLVE("postmaster", STORE_OK, "postmaster@pm-b.test");
	CHECK_RESOLVE("PostMaster", STORE_OK, "postmaster@pm-b.test");
	CHECK_RESOLVE("postmaster@pm-a.test", STORE_OK, "postmaster@pm-b.test");
	CHECK_RESOLVE("postmaster@pm-b.test", STORE_OK, "postmaster@pm-b.test");
	CHECK_RESOLVE("postmaster@not-local.test", STORE_NOTFOUND, "");
	CHECK_ST(set_alias("postmaster@pm-c.test", "boss@pm-c.test", NULL), STORE_OK);
	CHECK_RESOLVE("postmaster@pm-c.test", STORE_OK, "boss@pm-c.test");
	CHECK_ST(store_user_del(store, "postmaster@pm-b.test"), STORE_OK);
	CHECK_RESOLVE("postmaster@pm-a.test", STORE_OK, "boss@pm-c.test");
	CHECK_RESOLVE("postmaster@pm-b.test", STORE_OK, "boss@pm-c.test");
	CHECK_RESOLVE("postmaster", STORE_OK, "boss@pm-c.test");
	CHECK_ST(store_alias_del(store, "postmaster@pm-c.test"), STORE_OK);
	CHECK_RESOLVE("postmaster", STORE_NOTFOUND, "");
	CHECK_RESOLVE("postmaster@pm-a.test", STORE_NOTFOUND, "");
}

/* The remote addresses of address's resolution, comma-separated. */
static void check_remote(const char *address, const char *want_users, const char *want_remote,
			 int line)
{
	struct store_resolved *r = xmalloc(sizeof(*r));
	enum store_status st = store_resolve(store, address, r);
	struct buf users, remote;
	buf_init(&users, 0);
	buf_init(&remote, 0);
	for (unsigned int i = 0; st == STORE_OK && i < r->count; i++)
		buf_printf(&users, "%s%s", i > 0 ? "," : "", r->users[i]);
	for (unsigned int i = 0; st == STORE_OK && i < r->remote_count; i++)
		buf_printf(&remote, "%s%s", i > 0 ? "," : "", r->remote[i]);
	test_checks++;
	if (st != STORE_OK || strcmp(users.data, want_users) != 0 ||
	    strcmp(remote.data, want_remote) != 0) {
		test_failures++;
		fprintf(stderr, "%s:%d: [%s] resolve %s: %s users \"%s\" remote \"%s\", expected"
			" \"%s\" and \"%s\"\n", __FILE__, line, backend, address,
			store_status_name(st), users.data, remote.data, want_users, want_remote);
	}
	buf_deinit(&users);
	buf_deinit(&remote);
	free(r);
}
#define CHECK_REMOTE(a, users, remote) check_remote(a, users, remote, __LINE__)

/* Aliases whose targets are remote addresses (outside the local domains). */
static void test_remote_aliases(void)
{
	add_user("r1@ra.test");
	add_user("r2@ra.test");
	/* only remote: resolves with no user */
	CHECK_ST(set_alias("fwd@ra.test", "someone@remote.test", NULL), STORE_OK);
	CHECK_ALIAS("fwd@ra.test", "someone@remote.test\n");
	CHECK_REMOTE("fwd@ra.test", "", "someone@remote.test");
	/* mixed, nested, folded: users and remote addresses each once */
	CHECK_ST(set_alias("inner@ra.test", "other@far.example", "r2@ra.test"), STORE_OK);
	const char *mix[] = { "r1@ra.test", "someone@remote.test", "inner@ra.test", "fwd@ra.test",
			      "other@far.example" };
	CHECK_ST(store_alias_set(store, "mix@ra.test", mix, 5), STORE_OK);
	CHECK_REMOTE("mix@ra.test", "r1@ra.test,r2@ra.test", "someone@remote.test,other@far.example");
	/* a target of a local domain must still exist; a remote one need not */
	CHECK_ST(set_alias("bad@ra.test", "ghost@ra.test", "someone@remote.test"), STORE_NOTFOUND);
	CHECK_ST(set_alias("bad@ra.test", "not an address", NULL), STORE_INVALID);
	/* the address resolved itself is never remote: its caller decides */
	CHECK_RESOLVE("someone@remote.test", STORE_NOTFOUND, "");
	/* a domain becoming local turns its targets into local ones */
	CHECK_ST(store_domain_add(store, "far.example"), STORE_OK);
	CHECK_REMOTE("inner@ra.test", "r2@ra.test", "");
	CHECK_ST(store_domain_del(store, "far.example"), STORE_OK);
	CHECK_REMOTE("inner@ra.test", "r2@ra.test", "other@far.example");
	/* users and remote addresses together at most STORE_ALIAS_TARGETS_MAX */
	char addrs[STORE_ALIAS_TARGETS_MAX + 1][64];
	const char *wide[STORE_ALIAS_TARGETS_MAX + 1];
	for (int i = 0; i < STORE_ALIAS_TARGETS_MAX; i++) {
		snprintf(addrs[i], sizeof(addrs[i]), "x%d@remote%d.test", i, i % 3);
		wide[i] = addrs[i];
	}
	CHECK_ST(store_alias_set(store, "wide@ra.test", wide, STORE_ALIAS_TARGETS_MAX), STORE_OK);
	struct store_resolved *r = xmalloc(sizeof(*r));
	CHECK_ST(store_resolve(store, "wide@ra.test", r), STORE_OK);
	CHECK_INT(r->count, 0);
	CHECK_INT(r->remote_count, STORE_ALIAS_TARGETS_MAX);
	free(r);
	CHECK_ST(set_alias("wider@ra.test", "wide@ra.test", "r1@ra.test"), STORE_INVALID);
	CHECK_ST(store_alias_del(store, "wide@ra.test"), STORE_OK);
}

/* ---- the outbound queue ---- */

/* A message of len octets whose every octet says where it is. */
static char *queue_message(size_t len)
{
	char *m = xmalloc(len + 1);
	for (size_t i = 0; i < len; i++)
		m[i] = (char)('a' + (i * 7 + i / 1000) % 26);
	m[len] = '\0';
	return m;
}

/* Reads e's message in pieces of piece octets and compares with want. */
static void check_queue_read(const struct store_queue_entry *e, const char *want, size_t len,
			     size_t piece, int line)
{
	struct buf got;
	buf_init(&got, 0);
	enum store_status st = STORE_OK;
	for (uint64_t off = 0; off < len && st == STORE_OK;) {
		size_t before = got.len;
		st = store_queue_read(store, e, off, piece, &got);
		if (st == STORE_OK && got.len == before)
			break;
		off += got.len - before;
	}
	test_checks++;
	if (st != STORE_OK || got.len != len || memcmp(got.data, want, len) != 0) {
		test_failures++;
		fprintf(stderr, "%s:%d: [%s] queue read in pieces of %zu: %s, %zu octets of %zu\n",
			__FILE__, line, backend, piece, store_status_name(st), got.len, len);
	}
	buf_deinit(&got);
}

/* Puts a message for rcpts (n) owned by owner, due at next. */
static enum store_status queue_put1(struct store_queue_put *q, const char *owner,
				    const char *const *rcpts, unsigned int n, int64_t next)
{
	store_queue_put_init(q);
	q->owner = owner;
	q->sender = "sender@queue.test";
	q->rcpts = rcpts;
	q->rcpt_count = n;
	q->header = "Received: by test\r\n";
	q->header_len = strlen(q->header);
	q->body = "Subject: q\r\n\r\nHello.\r\n";
	q->body_len = strlen(q->body);
	q->next_attempt_us = next;
	return store_queue_put(store, q);
}

static unsigned int scan_count(const char *owner, int64_t due, unsigned int max)
{
	struct store_queue_entry *es = NULL;
	unsigned int n = 0;
	CHECK_ST(store_queue_scan(store, owner, due, max, &es, &n), STORE_OK);
	store_queue_entries_free(&es, n);
	CHECK(es == NULL);
	return n;
}

static void test_queue_basics(void)
{
	const char *rcpts[] = { "a@remote.test", "b@other.test", "\"q d\"@remote.test" };
	struct store_queue_put q;
	int64_t now = (int64_t)time(NULL) * 1000000;
	CHECK_ST(queue_put1(&q, "node-a", rcpts, 3, now - 1000), STORE_OK);
	struct store_queue_entry e;
	CHECK_ST(store_queue_get(store, &q.id, &e), STORE_OK);
	CHECK(memcmp(&e.id, &q.id, 16) == 0);
	CHECK_STR(e.owner, "node-a");
	CHECK_STR(e.sender, "sender@queue.test");
	CHECK(e.queued_us == timeuuid_unix_usec(&q.id));
	CHECK(e.next_attempt_us == now - 1000);
	CHECK_INT(e.attempts, 0);
	CHECK_INT(e.size, q.header_len + q.body_len);
	CHECK_INT(e.rcpt_count, 3);
	for (unsigned int i = 0; i < e.rcpt_count && i < 3; i++) {
		CHECK_STR(e.rcpts[i].address, rcpts[i]);
		CHECK_INT(e.rcpts[i].state, STORE_QUEUE_PENDING);
		CHECK_STR(e.rcpts[i].diagnostic, "");
	}
	char whole[256];
	snprintf(whole, sizeof(whole), "%s%s", q.header, q.body);
	for (size_t piece = 1; piece <= e.size + 1; piece += piece < 8 ? 1 : 9)
		check_queue_read(&e, whole, e.size, piece, __LINE__);
	/* pieces from any offset; nothing at the end; past it is invalid */
	struct buf b;
	buf_init(&b, 0);
	CHECK_ST(store_queue_read(store, &e, 5, 10, &b), STORE_OK);
	CHECK_MEM(b.data, b.len, whole + 5, 10);
	buf_reset(&b);
	CHECK_ST(store_queue_read(store, &e, e.size - 3, 100, &b), STORE_OK);
	CHECK_MEM(b.data, b.len, whole + e.size - 3, 3);
	buf_reset(&b);
	CHECK_ST(store_queue_read(store, &e, e.size, 100, &b), STORE_OK);
	CHECK_INT(b.len, 0);
	CHECK_ST(store_queue_read(store, &e, e.size + 1, 100, &b), STORE_INVALID);

	/* a retried put is idempotent: one entry, and it is not reset */
	CHECK_ST(store_queue_put(store, &q), STORE_OK);
	CHECK_INT(scan_count("node-a", INT64_MAX, 100), 1);
	e.attempts = 2;
	e.next_attempt_us = now + 5000000;
	e.rcpts[0].state = STORE_QUEUE_SENT;
	str_copy(e.rcpts[0].diagnostic, "250 2.0.0 Ok: queued as X", sizeof(e.rcpts[0].diagnostic));
	e.rcpts[1].state = STORE_QUEUE_FAILED;
	str_copy(e.rcpts[1].diagnostic, "550 5.1.1 no\r\nsuch\tuser", sizeof(e.rcpts[1].diagnostic));
	CHECK_ST(store_queue_update(store, &e), STORE_OK);
	CHECK_ST(store_queue_put(store, &q), STORE_OK);
	struct store_queue_entry e2;
	CHECK_ST(store_queue_get(store, &q.id, &e2), STORE_OK);
	CHECK_INT(e2.attempts, 2);
	CHECK(e2.next_attempt_us == now + 5000000);
	CHECK_INT(e2.rcpt_count, 3);
	if (e2.rcpt_count == 3) {
		CHECK_INT(e2.rcpts[0].state, STORE_QUEUE_SENT);
		CHECK_STR(e2.rcpts[0].diagnostic, "250 2.0.0 Ok: queued as X");
		CHECK_INT(e2.rcpts[1].state, STORE_QUEUE_FAILED);
		CHECK_STR(e2.rcpts[1].diagnostic, "550 5.1.1 no  such user"); /* controls: spaces */
		CHECK_INT(e2.rcpts[2].state, STORE_QUEUE_PENDING);
		CHECK_STR(e2.rcpts[2].address, rcpts[2]);
	}
	store_queue_entry_deinit(&e2);
	CHECK(e2.rcpts == NULL);
	/* not due yet */
	CHECK_INT(scan_count("node-a", now, 100), 0);
	CHECK_INT(scan_count("node-a", now + 5000000, 100), 1);
	/* an update names the owner too */
	struct store_queue_entry wrong = e;
	str_copy(wrong.owner, "node-z", sizeof(wrong.owner));
	CHECK_ST(store_queue_update(store, &wrong), STORE_NOTFOUND);

	/* deleted: by id, once */
	CHECK_ST(store_queue_del(store, &q.id), STORE_OK);
	CHECK_ST(store_queue_get(store, &q.id, &e2), STORE_NOTFOUND);
	CHECK(e2.rcpts == NULL);
	buf_reset(&b);
	CHECK_ST(store_queue_read(store, &e, 0, 10, &b), STORE_NOTFOUND);
	CHECK_INT(b.len, 0);
	CHECK_ST(store_queue_update(store, &e), STORE_NOTFOUND);
	CHECK_ST(store_queue_del(store, &q.id), STORE_NOTFOUND);
	CHECK_INT(scan_count("node-a", INT64_MAX, 100), 0);
	/* Cassandra: a retried put whose first write landed never brings back
	 * what was delivered and deleted since (its writes carry the id's time) */
	if (strcmp(backend, "cassandra") == 0) {
		CHECK_ST(store_queue_put(store, &q), STORE_OK);
		CHECK_ST(store_queue_get(store, &q.id, &e2), STORE_NOTFOUND);
		CHECK_INT(scan_count("node-a", INT64_MAX, 100), 0);
	}
	store_queue_entry_deinit(&e);
	buf_deinit(&b);

	/* What the caller leaves alone is cleared: a put without a header
	 * (as the queue runner's DSNs are) on a struct that held garbage. */
	struct store_queue_put bare;
	memset(&bare, 0xa5, sizeof(bare));
	store_queue_put_init(&bare);
	CHECK(bare.header == NULL && bare.header_len == 0 && bare.sender == NULL && bare.body_fd == -1);
	bare.owner = "node-a";
	bare.rcpts = rcpts;
	bare.rcpt_count = 1;
	bare.body = "Subject: bare\r\n\r\nno header\r\n";
	bare.body_len = strlen(bare.body);
	CHECK_ST(store_queue_put(store, &bare), STORE_OK);
	CHECK_ST(store_queue_del(store, &bare.id), STORE_OK);

	/* refused */
	const char *bad_rcpt[] = { "a\n@remote.test" }, *empty[] = { "" };
	CHECK_ST(queue_put1(&q, "node a", rcpts, 1, now), STORE_INVALID);
	CHECK_ST(queue_put1(&q, "", rcpts, 1, now), STORE_INVALID);
	CHECK_ST(queue_put1(&q, "node-a", rcpts, 0, now), STORE_INVALID);
	CHECK_ST(queue_put1(&q, "node-a", bad_rcpt, 1, now), STORE_INVALID);
	CHECK_ST(queue_put1(&q, "node-a", empty, 1, now), STORE_INVALID);
	CHECK_ST(queue_put1(&q, "node-a", rcpts, STORE_QUEUE_RCPTS_MAX + 1, now), STORE_INVALID);
	memset(&q, 0, sizeof(q));
	store_queue_put_init(&q);
	q.owner = "node-a";
	q.rcpts = rcpts;
	q.rcpt_count = 1;
	uuid_v5("not a timeuuid", 14, &q.id);
	CHECK_ST(store_queue_put(store, &q), STORE_INVALID);
	memset(&q, 0, sizeof(q));
	store_queue_put_init(&q);
	q.owner = "node-a";
	q.rcpts = rcpts;
	q.rcpt_count = 1;
	q.body_len = 5; /* no body */
	CHECK_ST(store_queue_put(store, &q), STORE_INVALID);
	CHECK_INT(scan_count("node-a", INT64_MAX, 100), 0);
	CHECK_ST(store_queue_scan(store, "bad owner", INT64_MAX, 1, &(struct store_queue_entry *){ NULL },
				  &(unsigned int){ 0 }), STORE_INVALID);
	/* the null sender, and the most recipients */
	const char **many = xcalloc(STORE_QUEUE_RCPTS_MAX, sizeof(*many));
	char (*addrs)[40] = xcalloc(STORE_QUEUE_RCPTS_MAX, sizeof(*addrs));
	for (unsigned int i = 0; i < STORE_QUEUE_RCPTS_MAX; i++) {
		snprintf(addrs[i], sizeof(addrs[i]), "user%u@many.remote.test", i);
		many[i] = addrs[i];
	}
	CHECK_ST(queue_put1(&q, "node-n", many, STORE_QUEUE_RCPTS_MAX, now), STORE_OK);
	CHECK_ST(store_queue_get(store, &q.id, &e), STORE_OK);
	CHECK_INT(e.rcpt_count, STORE_QUEUE_RCPTS_MAX);
	if (e.rcpt_count == STORE_QUEUE_RCPTS_MAX)
		CHECK_STR(e.rcpts[STORE_QUEUE_RCPTS_MAX - 1].address, many[STORE_QUEUE_RCPTS_MAX - 1]);
	store_queue_entry_deinit(&e);
	CHECK_ST(store_queue_del(store, &q.id), STORE_OK);
	const char *one[] = { "bounce@remote.test" };
	memset(&q, 0, sizeof(q));
	store_queue_put_init(&q);
	q.owner = "node-n";
	q.sender = "";
	q.rcpts = one;
	q.rcpt_count = 1;
	q.next_attempt_us = now;
	CHECK_ST(store_queue_put(store, &q), STORE_OK); /* an empty message, too */
	CHECK_ST(store_queue_get(store, &q.id, &e), STORE_OK);
	CHECK_STR(e.sender, "");
	CHECK_INT(e.size, 0);
	buf_init(&b, 0);
	CHECK_ST(store_queue_read(store, &e, 0, 100, &b), STORE_OK);
	CHECK_INT(b.len, 0);
	buf_deinit(&b);
	store_queue_entry_deinit(&e);
	CHECK_ST(store_queue_del(store, &q.id), STORE_OK);
	free(many);
	free(addrs);
}

/* A message across several chunks, its body from a file. */
static void test_queue_file_body(void)
{
	size_t body_len = 3 * STORE_QUEUE_READ_SIZE * 4 + 12345; /* past 1 MiB */
	char *body = queue_message(body_len);
	FILE *f = tmpfile();
	CHECK(f != NULL);
	if (f == NULL)
		return;
	int fd = fileno(f);
	CHECK(write(fd, body, body_len) == (ssize_t)body_len);
	const char *header = "Received: from x\r\n";
	const char *rcpts[] = { "far@remote.test" };
	struct store_queue_put q;
	store_queue_put_init(&q);
	q.owner = "node-f";
	q.sender = "s@queue.test";
	q.rcpts = rcpts;
	q.rcpt_count = 1;
	q.header = header;
	q.header_len = strlen(header);
	q.body_fd = fd;
	q.body_len = body_len;
	CHECK_ST(store_queue_put(store, &q), STORE_OK);
	fclose(f);
	size_t len = q.header_len + body_len;
	char *whole = xmalloc(len);
	memcpy(whole, header, q.header_len);
	memcpy(whole + q.header_len, body, body_len);
	struct store_queue_entry e;
	CHECK_ST(store_queue_get(store, &q.id, &e), STORE_OK);
	CHECK_INT(e.size, len);
	static const size_t pieces[] = { 65536 + 7, STORE_QUEUE_READ_SIZE, 1024 * 1024 + 1,
					 SIZE_MAX };
	for (size_t i = 0; i < sizeof(pieces) / sizeof(pieces[0]); i++)
		check_queue_read(&e, whole, len, pieces[i], __LINE__);
	/* a piece across a chunk boundary, from an odd offset */
	struct buf b;
	buf_init(&b, 0);
	CHECK_ST(store_queue_read(store, &e, STORE_QUEUE_READ_SIZE - 3, 10, &b), STORE_OK);
	CHECK_MEM(b.data, b.len, whole + STORE_QUEUE_READ_SIZE - 3, 10);
	/* a full buffer takes nothing */
	struct buf small;
	buf_init(&small, 16);
	CHECK_ST(store_queue_read(store, &e, 0, 100, &small), STORE_TOOBIG);
	CHECK_INT(small.len, 0);
	buf_deinit(&small);
	CHECK_ST(store_queue_del(store, &q.id), STORE_OK);
	buf_reset(&b);
	CHECK_ST(store_queue_read(store, &e, STORE_QUEUE_READ_SIZE * 3, 10, &b), STORE_NOTFOUND);
	buf_deinit(&b);
	store_queue_entry_deinit(&e);
	free(whole);
	free(body);
}

/* Scans: by owner, by due time, at most max, oldest next attempt first. */
static void test_queue_scan(void)
{
	enum { N = 300 };
	const char *rcpts[] = { "x@remote.test" };
	struct uuid *ids = xcalloc(N, sizeof(*ids));
	int64_t base = (int64_t)time(NULL) * 1000000 - 10000000;
	/* next attempts out of queue order: entry i is due at base + slot(i) */
	for (unsigned int i = 0; i < N; i++) {
		struct store_queue_put q;
		int64_t slot = (int64_t)((i * 37) % N) * 1000;
		CHECK_ST(queue_put1(&q, i % 3 == 0 ? "scan-b" : "scan-a", rcpts, 1, base + slot),
			 STORE_OK);
		ids[i] = q.id;
	}
	unsigned int want_a = 0;
	for (unsigned int i = 0; i < N; i++)
		want_a += i % 3 != 0;
	struct store_queue_entry *es = NULL;
	unsigned int n = 0;
	CHECK_ST(store_queue_scan(store, "scan-a", INT64_MAX, 1000, &es, &n), STORE_OK);
	CHECK_INT(n, want_a);
	for (unsigned int i = 1; i < n; i++)
		CHECK(es[i - 1].next_attempt_us <= es[i].next_attempt_us);
	for (unsigned int i = 0; i < n; i++)
		CHECK_STR(es[i].owner, "scan-a");
	store_queue_entries_free(&es, n);
	/* at most max: the oldest next attempts */
	CHECK_ST(store_queue_scan(store, "scan-a", INT64_MAX, 10, &es, &n), STORE_OK);
	CHECK_INT(n, 10);
	int64_t tenth = n == 10 ? es[9].next_attempt_us : 0;
	store_queue_entries_free(&es, n);
	unsigned int earlier = 0;
	for (unsigned int i = 0; i < N; i++)
		earlier += i % 3 != 0 && base + (int64_t)((i * 37) % N) * 1000 <= tenth;
	CHECK_INT(earlier, 10);
	/* due before a time */
	int64_t due = base + 99 * 1000;
	unsigned int want_due = 0;
	for (unsigned int i = 0; i < N; i++)
		want_due += i % 3 != 0 && base + (int64_t)((i * 37) % N) * 1000 <= due;
	CHECK_INT(scan_count("scan-a", due, 1000), want_due);
	/* every owner */
	CHECK_ST(store_queue_scan(store, NULL, INT64_MAX, 100000, &es, &n), STORE_OK);
	unsigned int seen_a = 0, seen_b = 0;
	for (unsigned int i = 0; i < n; i++) {
		seen_a += strcmp(es[i].owner, "scan-a") == 0;
		seen_b += strcmp(es[i].owner, "scan-b") == 0;
	}
	CHECK_INT(seen_a, want_a);
	CHECK_INT(seen_b, N - want_a);
	store_queue_entries_free(&es, n);
	CHECK_INT(scan_count("scan-none", INT64_MAX, 100), 0);
	CHECK_INT(scan_count("scan-a", INT64_MAX, 0), 0);

	/* flush: every entry due now */
	int64_t before = (int64_t)time(NULL) * 1000000 - 1000000;
	unsigned int flushed = 0;
	CHECK_ST(store_queue_flush(store, &flushed), STORE_OK);
	CHECK(flushed >= N);
	CHECK_ST(store_queue_scan(store, "scan-b", INT64_MAX, 1000, &es, &n), STORE_OK);
	CHECK_INT(n, N - want_a);
	for (unsigned int i = 0; i < n; i++)
		CHECK(es[i].next_attempt_us >= before);
	store_queue_entries_free(&es, n);
	for (unsigned int i = 0; i < N; i++)
		CHECK_ST(store_queue_del(store, &ids[i]), STORE_OK);
	CHECK_INT(scan_count(NULL, INT64_MAX, 100000), 0);
	free(ids);
}

static void test_queue_nodes(void)
{
	struct store_queue_node *nodes = NULL;
	unsigned int n = 9;
	CHECK_ST(store_queue_nodes(store, &nodes, &n), STORE_OK);
	CHECK_INT(n, 0);
	CHECK(nodes == NULL);
	CHECK_ST(store_queue_heartbeat(store, "node-b", 2000), STORE_OK);
	CHECK_ST(store_queue_heartbeat(store, "node-a", 1000), STORE_OK);
	CHECK_ST(store_queue_heartbeat(store, "node-a", 3000), STORE_OK);
	CHECK_ST(store_queue_heartbeat(store, "bad node", 3000), STORE_INVALID);
	CHECK_ST(store_queue_nodes(store, &nodes, &n), STORE_OK);
	CHECK_INT(n, 2);
	if (n == 2) {
		CHECK_STR(nodes[0].id, "node-a");
		CHECK(nodes[0].heartbeat_us == 3000);
		CHECK_STR(nodes[1].id, "node-b");
		CHECK(nodes[1].heartbeat_us == 2000);
	}
	free(nodes);
}

/* A counter of the store's metrics (0 when it has none). */
static unsigned long long store_metric(const char *name)
{
	struct buf out;
	buf_init(&out, 0);
	store_metrics_render(store, &out);
	unsigned long long v = 0;
	for (const char *p = out.data; (p = strstr(p, name)) != NULL; p += strlen(name))
		if ((p == out.data || p[-1] == '\n') && p[strlen(name)] == ' ')
			v = strtoull(p + strlen(name) + 1, NULL, 10);
	buf_deinit(&out);
	return v;
}

static void test_queue(void)
{
	/* the queue sends no conditional statement and no SERIAL read, in
	 * either pop3_ids mode (Cassandra counts both; others render none) */
	unsigned long long lwt = store_metric("tern_cassandra_conditional_statements_total");
	unsigned long long serial = store_metric("tern_cassandra_serial_requests_total");
	unsigned long long requests = store_metric("tern_cassandra_requests_total{consistency=\"LOCAL_QUORUM\"}");
	test_queue_basics();
	test_queue_file_body();
	test_queue_scan();
	test_queue_nodes();
	CHECK_INT(store_metric("tern_cassandra_conditional_statements_total"), lwt);
	CHECK_INT(store_metric("tern_cassandra_serial_requests_total"), serial);
	if (strcmp(backend, "cassandra") == 0) /* the counters do count */
		CHECK(store_metric("tern_cassandra_requests_total{consistency=\"LOCAL_QUORUM\"}") >
		      requests + 1000);
}

/* ---- quotas ---- */

/* Delivers body to rcpts (n of them); statuses into st_r. */
static void deliver_n(const char *const *rcpts, unsigned int n, const char *body,
		      bool all_or_nothing, const struct uuid *id, enum store_status *st_r)
{
	struct store_rcpt r[8];
	memset(r, 0, sizeof(r));
	for (unsigned int i = 0; i < n; i++) {
		r[i].address = rcpts[i];
		r[i].prefix = "";
	}
	struct store_delivery d = { .body = body, .body_len = strlen(body), .rcpts = r,
				    .rcpt_count = n, .quota_all_or_nothing = all_or_nothing };
	store_delivery_init(&d);
	if (id != NULL) {
		d.message_id = *id;
		d.attempts = 1;
	}
	CHECK_ST(store_deliver(store, &d), STORE_OK);
	for (unsigned int i = 0; i < n; i++) {
		st_r[i] = r[i].status;
		if (r[i].status != STORE_OK)
			CHECK(r[i].uidl[0] == '\0');
	}
}

static void check_usage(const char *address, uint64_t messages, uint64_t octets, int line)
{
	uint64_t n = 99, o = 99;
	enum store_status st = store_mailbox_usage(store, address, &n, &o);
	test_checks++;
	if (st != STORE_OK || n != messages || o != octets) {
		test_failures++;
		fprintf(stderr, "%s:%d: [%s] usage of %s: %s %llu messages %llu octets, expected %llu %llu\n",
			__FILE__, line, backend, address, store_status_name(st),
			(unsigned long long)n, (unsigned long long)o, (unsigned long long)messages,
			(unsigned long long)octets);
	}
}
#define CHECK_USAGE(a, n, o) check_usage(a, n, o, __LINE__)

static void set_quota(const char *address, uint64_t messages, uint64_t octets)
{
	struct store_quota q = { messages, octets };
	CHECK_ST(store_quota_set(store, address, &q), STORE_OK);
}

#define BODY10 "S: q\r\n\r\nab\r\n" /* 12 octets */

static void test_quotas(void)
{
	const char *qa = "qa@quota.test", *qb = "qb@quota.test", *ghost = "ghost@quota.test";
	add_user(qa);
	add_user(qb);
	struct store_quota q = { 7, 7 };
	CHECK_ST(store_quota_get(store, qa, &q), STORE_OK);
	CHECK(q.messages == STORE_NO_LIMIT && q.octets == STORE_NO_LIMIT);
	CHECK_ST(store_quota_effective(store, qa, &q), STORE_OK);
	CHECK(q.messages == STORE_NO_LIMIT && q.octets == STORE_NO_LIMIT);
	CHECK_ST(store_quota_get(store, ghost, &q), STORE_NOTFOUND);
	CHECK_ST(store_quota_set(store, ghost, &q), STORE_NOTFOUND);
	struct store_quota huge = { (uint64_t)INT64_MAX + 1, 0 };
	CHECK_ST(store_quota_set(store, qa, &huge), STORE_INVALID);
	uint64_t n, o;
	CHECK_ST(store_mailbox_usage(store, ghost, &n, &o), STORE_NOTFOUND);
	CHECK_ST(store_quota_check(store, ghost), STORE_NOTFOUND);
	CHECK_USAGE(qa, 0, 0);
	CHECK_ST(store_quota_check(store, qa), STORE_OK);
	set_quota(qa, 5, 1000);
	CHECK_ST(store_quota_get(store, qa, &q), STORE_OK);
	CHECK(q.messages == 5 && q.octets == 1000);
	CHECK_ST(store_quota_effective(store, qa, &q), STORE_OK);
	CHECK(q.messages == 5 && q.octets == 1000);

	/* usage is exact after deliveries (prefix included) and expunges */
	CHECK_ST(deliver1(qa, "X-P: 1\r\n", BODY10, 12, NULL, NULL), STORE_OK);
	CHECK_ST(deliver1(qa, "", BODY10, 12, NULL, NULL), STORE_OK);
	CHECK_ST(deliver1(qa, "", "S: big\r\n\r\nxxxxxxxxxx\r\n", 22, NULL, NULL), STORE_OK);
	CHECK_USAGE(qa, 3, 8 + 12 + 12 + 22);
	struct store_maildrop *md = open_md(qa);
	CHECK_INT(md->total_size, 8 + 12 + 12 + 22);
	unsigned int idx[] = { 0, 2 };
	CHECK_ST(store_maildrop_expunge(md, idx, 2), STORE_OK);
	store_maildrop_free(&md);
	CHECK_USAGE(qa, 1, 12);

	/* quota_check: at a limit is over it */
	set_quota(qa, 1, 0);
	CHECK_ST(store_quota_check(store, qa), STORE_OVERQUOTA);
	set_quota(qa, 2, 0);
	CHECK_ST(store_quota_check(store, qa), STORE_OK);
	set_quota(qa, 0, 12);
	CHECK_ST(store_quota_check(store, qa), STORE_OVERQUOTA);
	set_quota(qa, 0, 13);
	CHECK_ST(store_quota_check(store, qa), STORE_OK);

	/* delivery: a message that fits exactly is taken, one octet more is not */
	set_quota(qa, 0, 24);
	enum store_status st[3];
	const char *one[] = { qa };
	deliver_n(one, 1, "S: q\r\n\r\nabc\r\n", false, NULL, st); /* 13: would be 25 */
	CHECK_ST(st[0], STORE_OVERQUOTA);
	CHECK_USAGE(qa, 1, 12);
	deliver_n(one, 1, BODY10, false, NULL, st);
	CHECK_ST(st[0], STORE_OK);
	CHECK_USAGE(qa, 2, 24);
	CHECK_ST(store_quota_check(store, qa), STORE_OVERQUOTA);

	/* the over-quota recipient is refused, the others get it */
	set_quota(qa, 2, 0);
	const char *three[] = { qa, qb, ghost };
	deliver_n(three, 3, BODY10, false, NULL, st);
	CHECK_ST(st[0], STORE_OVERQUOTA);
	CHECK_ST(st[1], STORE_OK);
	CHECK_ST(st[2], STORE_NOTFOUND);
	CHECK_USAGE(qa, 2, 24);
	CHECK_USAGE(qb, 1, 12);
	/* all or nothing: nobody gets it */
	deliver_n(three, 3, BODY10, true, NULL, st);
	CHECK_ST(st[0], STORE_OVERQUOTA);
	CHECK_ST(st[1], STORE_OVERQUOTA);
	CHECK_ST(st[2], STORE_NOTFOUND);
	CHECK_USAGE(qa, 2, 24);
	CHECK_USAGE(qb, 1, 12);
	/* ...and everybody when all fit */
	set_quota(qa, 3, 0);
	deliver_n(three, 3, BODY10, true, NULL, st);
	CHECK_ST(st[0], STORE_OK);
	CHECK_ST(st[1], STORE_OK);
	CHECK_USAGE(qa, 3, 36);
	CHECK_USAGE(qb, 2, 24);

	/* a retry of a delivery that reached the mailbox is not refused */
	const char *qc = "qc@quota.test";
	add_user(qc);
	set_quota(qc, 1, 0);
	struct uuid id;
	timeuuid_generate(&id);
	const char *c1[] = { qc };
	deliver_n(c1, 1, BODY10, false, &id, st);
	CHECK_ST(st[0], STORE_OK);
	deliver_n(c1, 1, BODY10, false, &id, st);
	CHECK_ST(st[0], STORE_OK);
	CHECK_USAGE(qc, 1, 12);
	deliver_n(c1, 1, BODY10, false, NULL, st);
	CHECK_ST(st[0], STORE_OVERQUOTA);

	/* deleting the user deletes the limits */
	CHECK_ST(store_user_del(store, qc), STORE_OK);
	CHECK_ST(store_user_add(store, qc, HASH), STORE_OK);
	CHECK_ST(store_quota_get(store, qc, &q), STORE_OK);
	CHECK(q.messages == STORE_NO_LIMIT && q.octets == STORE_NO_LIMIT);
	CHECK_USAGE(qc, 0, 0);
}

/* One delivery to address whose rcpt carries seen; its status. */
static enum store_status deliver_seen(const char *address, const struct store_user_seen *seen)
{
	struct store_rcpt r = { .address = address, .prefix = "", .seen = *seen };
	struct store_delivery d = { .body = BODY10, .body_len = 12, .rcpts = &r, .rcpt_count = 1 };
	store_delivery_init(&d);
	CHECK_ST(store_deliver(store, &d), STORE_OK);
	return r.status;
}

static uint64_t orphaned_rows(void)
{
	struct store_repair_options o = { .check = true };
	struct store_repair_report rep;
	CHECK_ST(store_repair(store, &o, &rep), STORE_OK);
	return rep.orphaned;
}

/* What store_resolve read of each user (its own limits), the RCPT's quota
 * check from it, and a delivery handed it (store_rcpt.seen). */
static void test_quota_seen(void)
{
	const char *sa = "sa@seen.test", *sb = "sb@seen.test", *group = "group@seen.test";
	CHECK_ST(store_domain_add(store, "seen.test"), STORE_OK);
	add_user(sa);
	add_user(sb);
	set_quota(sa, 2, 0);
	const char *targets[] = { sa, sb };
	CHECK_ST(store_alias_set(store, group, targets, 2), STORE_OK);
	struct store_resolved *r = xcalloc(1, sizeof(*r));
	int64_t before = clock_wall_us();
	CHECK_ST(store_resolve(store, group, r), STORE_OK);
	CHECK_INT(r->count, 2);
	for (unsigned int i = 0; i < r->count; i++) {
		bool a = strcmp(r->users[i], sa) == 0;
		CHECK(r->seen[i].read_us >= before && r->seen[i].read_us <= clock_wall_us());
		CHECK_INT(r->seen[i].own.messages, a ? 2 : STORE_NO_LIMIT);
		CHECK_INT(r->seen[i].own.octets, STORE_NO_LIMIT);
		CHECK_ST(store_quota_check_seen(store, r->users[i], &r->seen[i]), STORE_OK);
	}
	CHECK_ST(store_resolve(store, sa, r), STORE_OK);
	struct store_user_seen seen = r->seen[0];
	CHECK_INT(seen.own.messages, 2);

	/* the limits seen apply; the usage is read at RCPT and at delivery */
	CHECK_ST(deliver_seen(sa, &seen), STORE_OK);
	CHECK_ST(store_quota_check_seen(store, sa, &seen), STORE_OK);
	CHECK_ST(deliver_seen(sa, &seen), STORE_OK);
	CHECK_ST(store_quota_check_seen(store, sa, &seen), STORE_OVERQUOTA);
	CHECK_ST(store_quota_check(store, sa), STORE_OVERQUOTA);
	CHECK_ST(deliver_seen(sa, &seen), STORE_OVERQUOTA);
	CHECK_USAGE(sa, 2, 24);
	/* nothing seen: as store_quota_check */
	struct store_user_seen none = { 0 };
	CHECK_ST(store_quota_check_seen(store, sa, &none), STORE_OVERQUOTA);
	CHECK_ST(store_quota_check_seen(store, "ghost@seen.test", &none), STORE_NOTFOUND);

	/* a user deleted after a stale read: every backend reads it again */
	CHECK_ST(store_resolve(store, sb, r), STORE_OK);
	seen = r->seen[0];
	CHECK_ST(store_user_del(store, sb), STORE_OK);
	seen.read_us -= STORE_SEEN_FRESH_US + 1000000;
	CHECK_ST(deliver_seen(sb, &seen), STORE_NOTFOUND);
	/* ...after a fresh one: SQLite and mem check the user as they write;
	 * Cassandra takes the read it was handed, so the message goes to a
	 * mailbox no user has, and repair reports it. */
	uint64_t orphans = orphaned_rows();
	seen.read_us = clock_wall_us();
	bool cassandra = strcmp(backend, "cassandra") == 0;
	CHECK_ST(deliver_seen(sb, &seen), cassandra ? STORE_OK : STORE_NOTFOUND);
	CHECK_INT(orphaned_rows(), orphans + (cassandra ? 1 : 0));
	CHECK_INT(orphans, 0);
	free(r);
}

/* Concurrent deliveries to one user with room for QC_LIMIT messages: with
 * SQLite's check in the write transaction (and mem's lock), exactly that
 * many are taken, whatever the interleaving. (Cassandra is exact only to
 * within the deliveries in flight: not run there.) */
#define QC_THREADS 4
#define QC_EACH 12
#define QC_LIMIT 17

static unsigned int qc_taken, qc_refused, qc_other;

static void *quota_thread(void *arg)
{
	(void)arg;
	for (int i = 0; i < QC_EACH; i++) {
		struct store_rcpt r = { .address = "conc@qconc.test", .prefix = "" };
		struct store_delivery d = { .body = BODY10, .body_len = 12, .rcpts = &r,
					    .rcpt_count = 1 };
		store_delivery_init(&d);
		enum store_status st = store_deliver(store, &d);
		unsigned int *n = st != STORE_OK ? &qc_other
				  : r.status == STORE_OK ? &qc_taken
				  : r.status == STORE_OVERQUOTA ? &qc_refused : &qc_other;
		__atomic_fetch_add(n, 1, __ATOMIC_RELAXED);
	}
	return NULL;
}

static void test_quota_concurrent(void)
{
	add_user("conc@qconc.test");
	set_quota("conc@qconc.test", QC_LIMIT, 0);
	pthread_t t[QC_THREADS];
	for (int i = 0; i < QC_THREADS; i++)
		CHECK(pthread_create(&t[i], NULL, quota_thread, NULL) == 0);
	for (int i = 0; i < QC_THREADS; i++)
		pthread_join(t[i], NULL);
	CHECK_INT(qc_taken, QC_LIMIT);
	CHECK_INT(qc_refused, QC_THREADS * QC_EACH - QC_LIMIT);
	CHECK_INT(qc_other, 0);
	CHECK_USAGE("conc@qconc.test", QC_LIMIT, QC_LIMIT * 12);
	CHECK_INT(count_of("conc@qconc.test"), QC_LIMIT);
	qc_taken = qc_refused = qc_other = 0;
}

/* Run on a store opened with [quota] messages = 2, octets = 100. */
static void test_quota_defaults(void)
{
	const char *u = "def@qdef.test", *v = "own@qdef.test";
	add_user(u);
	add_user(v);
	struct store_quota q;
	CHECK_ST(store_quota_get(store, u, &q), STORE_OK);
	CHECK(q.messages == STORE_NO_LIMIT && q.octets == STORE_NO_LIMIT);
	CHECK_ST(store_quota_effective(store, u, &q), STORE_OK);
	CHECK(q.messages == 2 && q.octets == 100);
	set_quota(v, 3, 0);
	CHECK_ST(store_quota_effective(store, v, &q), STORE_OK);
	CHECK(q.messages == 3 && q.octets == 100);
	set_quota(v, 0, 1000);
	CHECK_ST(store_quota_effective(store, v, &q), STORE_OK);
	CHECK(q.messages == 2 && q.octets == 1000);
	set_quota(v, 3, 0);

	enum store_status st[2];
	const char *both[] = { u, v };
	for (int i = 0; i < 2; i++) {
		deliver_n(both, 2, BODY10, false, NULL, st);
		CHECK_ST(st[0], STORE_OK);
		CHECK_ST(st[1], STORE_OK);
	}
	CHECK_ST(store_quota_check(store, u), STORE_OVERQUOTA);
	CHECK_ST(store_quota_check(store, v), STORE_OK);
	/* the default applies to what store_resolve read too */
	struct store_resolved *r = xcalloc(1, sizeof(*r));
	CHECK_ST(store_resolve(store, u, r), STORE_OK);
	CHECK_ST(store_quota_check_seen(store, u, &r->seen[0]), STORE_OVERQUOTA);
	CHECK_ST(store_resolve(store, v, r), STORE_OK);
	CHECK_ST(store_quota_check_seen(store, v, &r->seen[0]), STORE_OK);
	free(r);
	deliver_n(both, 2, BODY10, false, NULL, st);
	CHECK_ST(st[0], STORE_OVERQUOTA);
	CHECK_ST(st[1], STORE_OK);
	CHECK_USAGE(u, 2, 24);
	CHECK_USAGE(v, 3, 36);
	/* the default octets limit too: 100 octets hold 8 messages of 12 */
	set_quota(u, 100, 0);
	unsigned int taken = 0;
	const char *just_u[] = { u };
	for (int i = 0; i < 10; i++) {
		deliver_n(just_u, 1, BODY10, false, NULL, st);
		taken += st[0] == STORE_OK;
	}
	CHECK_INT(taken, 6);
	CHECK_USAGE(u, 8, 96);
}

/* ---- health ---- */

static void check_health(enum store_status want, const char *detail_has, int line)
{
	struct buf detail;
	buf_init(&detail, 0);
	enum store_status st = store_health(store, &detail);
	test_checks++;
	if (st != want || (detail_has != NULL && strstr(detail.data, detail_has) == NULL) ||
	    (want == STORE_OK && detail.len > 0 && strstr(detail.data, "durable: no") == NULL)) {
		test_failures++;
		fprintf(stderr, "%s:%d: [%s] health: %s \"%s\", expected %s with \"%s\"\n", __FILE__,
			line, backend, store_status_name(st), detail.data, store_status_name(want),
			detail_has != NULL ? detail_has : "");
	}
	buf_deinit(&detail);
}
#define CHECK_HEALTH(want, has) check_health(want, has, __LINE__)

static void test_health(void)
{
	CHECK_HEALTH(STORE_OK, NULL);
	if (strcmp(backend, "sqlite") != 0)
		return;
	/* The database file replaced by something unusable: this works as
	 * root too, where no permission stops a write. */
	char db[PATH_MAX + 16], away[PATH_MAX + 16];
	snprintf(db, sizeof(db), "%s/tern.db", data_dir);
	snprintf(away, sizeof(away), "%s/tern.db.away", data_dir);
	CHECK(rename(db, away) == 0);
	CHECK_HEALTH(STORE_TEMPFAIL, "sqlite: ");
	CHECK(mkdir(db, 0700) == 0);
	CHECK_HEALTH(STORE_TEMPFAIL, "tern.db is no longer the database file");
	CHECK(rmdir(db) == 0);
	CHECK(rename(away, db) == 0);
	CHECK_HEALTH(STORE_OK, NULL);
	/* Not writable for this process (only meaningful when not root). */
	if (geteuid() != 0) {
		CHECK(chmod(db, 0400) == 0);
		CHECK_HEALTH(STORE_TEMPFAIL, "not writable");
		CHECK(chmod(db, 0600) == 0);
		CHECK_HEALTH(STORE_OK, NULL);
	}
}

/* Cassandra: a keyspace whose replicas the local datacenter cannot reach
 * a quorum of (three replicas wanted, one node) is not healthy. */
static void test_health_unavailable(void)
{
	char ks[64];
	str_copy(ks, keyspace, sizeof(ks));
	snprintf(keyspace, sizeof(keyspace), "%.40s_rf3", ks);
	replication = "dc1:3";
	struct store *saved = store;
	store = open_store();
	CHECK_HEALTH(STORE_TEMPFAIL, "cassandra: ");
	store_close(&store);
	store = saved;
	replication = "dc1:1";
	str_copy(keyspace, ks, sizeof(keyspace));
}

/* ---- a schema version 1 database (before aliases and quotas) ---- */

static void test_sqlite_migration(void)
{
	char dir[PATH_MAX + 8], saved[PATH_MAX];
	snprintf(dir, sizeof(dir), "%s/v1", data_dir);
	CHECK(mkdir(dir, 0700) == 0);
	char path[PATH_MAX + 32];
	snprintf(path, sizeof(path), "%s/tern.db", dir);
	sqlite3 *db = NULL;
	CHECK(sqlite3_open(path, &db) == SQLITE_OK);
	struct uuid mbox;
	uuid_v5("old@v1.test", strlen("old@v1.test"), &mbox);
	char hex[33];
	for (int i = 0; i < 16; i++)
		snprintf(hex + 2 * i, 3, "%02x", mbox.b[i]);
	char sql[4096];
	snprintf(sql, sizeof(sql),
		 "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;"
		 "CREATE TABLE domains (name TEXT PRIMARY KEY) WITHOUT ROWID;"
		 "CREATE TABLE users (address TEXT PRIMARY KEY, domain TEXT NOT NULL,"
		 " password TEXT NOT NULL, mailbox_id BLOB NOT NULL UNIQUE,"
		 " uidvalidity INTEGER NOT NULL, next_uid INTEGER NOT NULL DEFAULT 1);"
		 "CREATE INDEX users_domain ON users(domain);"
		 "CREATE TABLE bodies (id INTEGER PRIMARY KEY, message_id BLOB NOT NULL UNIQUE,"
		 " data BLOB NOT NULL);"
		 "CREATE TABLE listing (mailbox_id BLOB NOT NULL, sort_key BLOB NOT NULL,"
		 " size INTEGER NOT NULL, uidl TEXT NOT NULL, prefix BLOB NOT NULL,"
		 " body INTEGER NOT NULL, PRIMARY KEY (mailbox_id, sort_key)) WITHOUT ROWID;"
		 "CREATE INDEX listing_body ON listing(body);"
		 "INSERT INTO meta VALUES ('schema_version', '1');"
		 "INSERT INTO domains VALUES ('v1.test');"
		 "INSERT INTO users (address, domain, password, mailbox_id, uidvalidity)"
		 " VALUES ('old@v1.test', 'v1.test', 'h', x'%s', 1);", hex);
	CHECK(sqlite3_exec(db, sql, NULL, NULL, NULL) == SQLITE_OK);
	sqlite3_close(db);

	struct store *current = store;
	str_copy(saved, data_dir, sizeof(saved));
	str_copy(data_dir, dir, sizeof(data_dir));
	store = open_store();
	struct store_quota q = { 9, 9 };
	CHECK_ST(store_quota_get(store, "old@v1.test", &q), STORE_OK);
	CHECK(q.messages == STORE_NO_LIMIT && q.octets == STORE_NO_LIMIT);
	set_quota("old@v1.test", 1, 0);
	CHECK_ST(deliver1("old@v1.test", "", BODY10, 12, NULL, NULL), STORE_OK);
	CHECK_ST(deliver1("old@v1.test", "", BODY10, 12, NULL, NULL), STORE_OVERQUOTA);
	CHECK_USAGE("old@v1.test", 1, 12);
	CHECK_ST(set_alias("al@v1.test", "old@v1.test", NULL), STORE_OK);
	CHECK_RESOLVE("al@v1.test", STORE_OK, "old@v1.test");
	CHECK_HEALTH(STORE_OK, NULL);
	store_close(&store);
	/* opened again: already at the current version, nothing lost */
	store = open_store();
	CHECK_ST(store_quota_get(store, "old@v1.test", &q), STORE_OK);
	CHECK(q.messages == 1);
	CHECK_ALIAS("al@v1.test", "old@v1.test\n");
	int own = 7;
	CHECK_ST(store_user_expire_get(store, "old@v1.test", &own), STORE_OK);
	CHECK_INT(own, STORE_EXPIRE_DEFAULT);
	store_close(&store);
	CHECK(sqlite3_open(path, &db) == SQLITE_OK);
	sqlite3_stmt *st = NULL;
	CHECK(sqlite3_prepare_v2(db, "SELECT value FROM meta WHERE key = 'schema_version'", -1,
				 &st, NULL) == SQLITE_OK);
	CHECK(sqlite3_step(st) == SQLITE_ROW);
	CHECK_STR((const char *)sqlite3_column_text(st, 0), "4");
	sqlite3_finalize(st);
	sqlite3_close(db);
	str_copy(data_dir, saved, sizeof(data_dir));
	store = current;
}

/* A database of schema version 3 (the version before the outbound queue),
 * written as that version wrote it, opens, keeps its data and gets the
 * queue tables. */
static void test_sqlite_migration_v3(void)
{
	char dir[PATH_MAX + 8], saved[PATH_MAX];
	snprintf(dir, sizeof(dir), "%s/v3", data_dir);
	CHECK(mkdir(dir, 0700) == 0);
	char path[PATH_MAX + 32];
	snprintf(path, sizeof(path), "%s/tern.db", dir);
	sqlite3 *db = NULL;
	CHECK(sqlite3_open(path, &db) == SQLITE_OK);
	struct uuid mbox;
	uuid_v5("old@v3.test", strlen("old@v3.test"), &mbox);
	char hex[33];
	for (int i = 0; i < 16; i++)
		snprintf(hex + 2 * i, 3, "%02x", mbox.b[i]);
	char sql[4096];
	snprintf(sql, sizeof(sql),
		 "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;"
		 "CREATE TABLE domains (name TEXT PRIMARY KEY) WITHOUT ROWID;"
		 "CREATE TABLE users (address TEXT PRIMARY KEY, domain TEXT NOT NULL,"
		 " password TEXT NOT NULL, mailbox_id BLOB NOT NULL UNIQUE,"
		 " uidvalidity INTEGER NOT NULL, next_uid INTEGER NOT NULL DEFAULT 1,"
		 " quota_messages INTEGER NOT NULL DEFAULT 0, quota_octets INTEGER NOT NULL DEFAULT 0,"
		 " expire_days INTEGER NOT NULL DEFAULT -2, last_login INTEGER NOT NULL DEFAULT 0);"
		 "CREATE INDEX users_domain ON users(domain);"
		 "CREATE TABLE bodies (id INTEGER PRIMARY KEY, message_id BLOB NOT NULL UNIQUE,"
		 " data BLOB NOT NULL);"
		 "CREATE TABLE listing (mailbox_id BLOB NOT NULL, sort_key BLOB NOT NULL,"
		 " size INTEGER NOT NULL, uidl TEXT NOT NULL, prefix BLOB NOT NULL,"
		 " body INTEGER NOT NULL, PRIMARY KEY (mailbox_id, sort_key)) WITHOUT ROWID;"
		 "CREATE INDEX listing_body ON listing(body);"
		 "CREATE TABLE aliases (address TEXT PRIMARY KEY, domain TEXT NOT NULL,"
		 " targets TEXT NOT NULL) WITHOUT ROWID;"
		 "CREATE TABLE health (id INTEGER PRIMARY KEY CHECK (id = 1), checked_at INTEGER NOT NULL);"
		 "CREATE TABLE retrieved (mailbox_id BLOB NOT NULL, sort_key BLOB NOT NULL,"
		 " first_us INTEGER NOT NULL, PRIMARY KEY (mailbox_id, sort_key)) WITHOUT ROWID;"
		 "INSERT INTO meta VALUES ('schema_version', '3');"
		 "INSERT INTO domains VALUES ('v3.test');"
		 "INSERT INTO users (address, domain, password, mailbox_id, uidvalidity, expire_days)"
		 " VALUES ('old@v3.test', 'v3.test', 'h', x'%s', 1, 30);"
		 "INSERT INTO aliases VALUES ('al@v3.test', 'v3.test', 'old@v3.test' || char(10));",
		 hex);
	CHECK(sqlite3_exec(db, sql, NULL, NULL, NULL) == SQLITE_OK);
	sqlite3_close(db);

	struct store *current = store;
	str_copy(saved, data_dir, sizeof(saved));
	str_copy(data_dir, dir, sizeof(data_dir));
	store = open_store();
	int days = 0;
	CHECK_ST(store_user_expire_get(store, "old@v3.test", &days), STORE_OK);
	CHECK_INT(days, 30);
	CHECK_RESOLVE("al@v3.test", STORE_OK, "old@v3.test");
	CHECK_ST(deliver1("old@v3.test", "", BODY10, 12, NULL, NULL), STORE_OK);
	const char *rcpts[] = { "far@remote.test" };
	struct store_queue_put q;
	CHECK_ST(queue_put1(&q, "node-v3", rcpts, 1, 1), STORE_OK);
	CHECK_INT(scan_count("node-v3", INT64_MAX, 10), 1);
	CHECK_ST(store_queue_heartbeat(store, "node-v3", 5), STORE_OK);
	store_close(&store);
	/* opened again: the entry is still there */
	store = open_store();
	CHECK_INT(scan_count("node-v3", INT64_MAX, 10), 1);
	CHECK_ST(store_queue_del(store, &q.id), STORE_OK);
	CHECK_INT(count_of("old@v3.test"), 1);
	store_close(&store);
	CHECK(sqlite3_open(path, &db) == SQLITE_OK);
	sqlite3_stmt *st = NULL;
	CHECK(sqlite3_prepare_v2(db, "SELECT value FROM meta WHERE key = 'schema_version'", -1,
				 &st, NULL) == SQLITE_OK);
	CHECK(sqlite3_step(st) == SQLITE_ROW);
	CHECK_STR((const char *)sqlite3_column_text(st, 0), "4");
	sqlite3_finalize(st);
	sqlite3_close(db);
	str_copy(data_dir, saved, sizeof(data_dir));
	store = current;
}

/* EXPIRE and LOGIN-DELAY state: the user's own policy, the last login,
 * and the sweep of one mailbox (only what was retrieved before the cutoff,
 * and only what is still listed). */
static void test_pop3_ext(void)
{
	const char *u = "ext@pop3ext.test", *v = "other@pop3ext.test";
	add_user(u);
	add_user(v);
	int days = 99;
	CHECK_ST(store_user_expire_get(store, u, &days), STORE_OK);
	CHECK_INT(days, STORE_EXPIRE_DEFAULT);
	static const int values[] = { 30, STORE_EXPIRE_NEVER, 0, STORE_EXPIRE_DAYS_MAX,
				      STORE_EXPIRE_DEFAULT };
	for (size_t i = 0; i < sizeof(values) / sizeof(values[0]); i++) {
		CHECK_ST(store_user_expire_set(store, u, values[i]), STORE_OK);
		CHECK_ST(store_user_expire_get(store, u, &days), STORE_OK);
		CHECK_INT(days, values[i]);
	}
	CHECK_ST(store_user_expire_set(store, u, STORE_EXPIRE_DAYS_MAX + 1), STORE_INVALID);
	CHECK_ST(store_user_expire_set(store, u, -3), STORE_INVALID);
	CHECK_ST(store_user_expire_set(store, "nobody@pop3ext.test", 3), STORE_NOTFOUND);
	CHECK_ST(store_user_expire_get(store, "nobody@pop3ext.test", &days), STORE_NOTFOUND);
	CHECK_ST(store_user_expire_get(store, v, &days), STORE_OK);
	CHECK_INT(days, STORE_EXPIRE_DEFAULT);

	int64_t last = 5;
	CHECK_ST(store_login_get(store, u, &last), STORE_OK);
	CHECK(last == 0);
	CHECK_ST(store_login_put(store, u, 1000000), STORE_OK);
	CHECK_ST(store_login_put(store, u, 3000000), STORE_OK);
	CHECK_ST(store_login_get(store, u, &last), STORE_OK);
	CHECK(last == 3000000);
	CHECK_ST(store_login_get(store, v, &last), STORE_OK);
	CHECK(last == 0);

	/* four messages; 1 and 2 retrieved long ago (2 again later: the first
	 * time stays), 3 just now, 4 never */
	for (int i = 0; i < 4; i++)
		CHECK_ST(deliver1(u, "", BODY10, 12, NULL, NULL), STORE_OK);
	CHECK_ST(deliver1(v, "", BODY10, 12, NULL, NULL), STORE_OK);
	struct store_maildrop *md = open_md(u);
	CHECK_INT(md->count, 4);
	struct uuid ids[4];
	for (int i = 0; i < 4; i++)
		ids[i] = md->entries[i].id;
	int64_t now = (int64_t)time(NULL) * 1000000, day = 86400LL * 1000000;
	CHECK_ST(store_retrieved_put(md, 1, now - 10 * day), STORE_OK);
	CHECK_ST(store_retrieved_put(md, 0, now - 9 * day), STORE_OK);
	CHECK_ST(store_retrieved_put(md, 1, now), STORE_OK);
	CHECK_ST(store_retrieved_put(md, 2, now), STORE_OK);
	CHECK_ST(store_retrieved_put(md, 4, now), STORE_INVALID);
	struct store_maildrop *mdv = open_md(v);
	CHECK_ST(store_retrieved_put(mdv, 0, now - 10 * day), STORE_OK);
	store_maildrop_free(&mdv);

	/* a cutoff before every retrieval expires nothing */
	struct store_expired *ex = NULL;
	unsigned int n = 9;
	CHECK_ST(store_expire_mailbox(store, u, now - 11 * day, 100, &ex, &n), STORE_OK);
	CHECK_INT(n, 0);
	CHECK(ex == NULL);
	/* at most max per call */
	CHECK_ST(store_expire_mailbox(store, u, now - 5 * day, 1, &ex, &n), STORE_OK);
	CHECK_INT(n, 1);
	free(ex);
	CHECK_INT(count_of(u), 3);
	CHECK_ST(store_expire_mailbox(store, u, now - 5 * day, 100, &ex, &n), STORE_OK);
	CHECK_INT(n, 1);
	if (n == 1) {
		CHECK(ex[0].size == 12);
		CHECK(ex[0].retrieved_us == now - 10 * day || ex[0].retrieved_us == now - 9 * day);
	}
	free(ex);
	store_maildrop_free(&md);
	md = open_md(u);
	CHECK_INT(md->count, 2);
	if (md->count == 2) {
		CHECK(memcmp(&md->entries[0].id, &ids[2], 16) == 0);
		CHECK(memcmp(&md->entries[1].id, &ids[3], 16) == 0);
	}
	store_maildrop_free(&md);
	/* the records of what expired are gone: nothing more to do */
	CHECK_ST(store_expire_mailbox(store, u, now - 5 * day, 100, &ex, &n), STORE_OK);
	CHECK_INT(n, 0);
	/* a cutoff after "now" takes message 3 (retrieved), never message 4 */
	CHECK_ST(store_expire_mailbox(store, u, now + day, 100, &ex, &n), STORE_OK);
	CHECK_INT(n, 1);
	if (n == 1)
		CHECK(memcmp(&ex[0].id, &ids[2], 16) == 0);
	free(ex);
	CHECK_INT(count_of(u), 1);
	/* the other mailbox was untouched */
	CHECK_INT(count_of(v), 1);
	CHECK_ST(store_expire_mailbox(store, v, now - 5 * day, 100, &ex, &n), STORE_OK);
	CHECK_INT(n, 1);
	free(ex);
	CHECK_INT(count_of(v), 0);
	CHECK_ST(store_user_del(store, u), STORE_OK);
	CHECK_ST(store_user_del(store, v), STORE_OK);
}

static void run_suite(void)
{
	if (strcmp(backend, "sqlite") == 0) {
		snprintf(data_dir, sizeof(data_dir), "%s/tern-test-store-XXXXXX", base_dir);
		if (mkdtemp(data_dir) == NULL) {
			fprintf(stderr, "mkdtemp %s: %s\n", data_dir, strerror(errno));
			exit(2);
		}
	} else {
		data_dir[0] = '\0';
	}
	if (strcmp(backend, "cassandra") == 0) {
		struct uuid u;
		char text[UUID_STR_LEN + 1];
		timeuuid_generate(&u);
		uuid_format(&u, text);
		snprintf(keyspace, sizeof(keyspace), "contract_%.8s%.4s", text, text + 9);
	}
	store = open_store();
	CHECK_STR(store_backend_name(store), backend);
	test_domains();
	test_users();
	test_james_contract();
	test_deliver();
	test_uidls();
	test_read();
	test_chunk_boundaries();
	test_big_message();
	test_header_and_file_body();
	test_expunge_sessions();
	test_expunge_many();
	test_concurrent();
	test_cursor_basics();
	test_cursor_nowait();
	test_cursor_expunge();
	test_cursor_pool();
	test_cursor_threads();
	test_user_del_messages();
	if (strcmp(backend, "sqlite") == 0)
		test_reopen();
	test_aliases();
	test_resolve();
	test_remote_aliases();
	test_queue();
	test_quotas();
	test_quota_seen();
	test_pop3_ext();
	if (strcmp(backend, "cassandra") != 0)
		test_quota_concurrent();
	test_health();
	if (strcmp(backend, "cassandra") == 0)
		test_health_unavailable();
	if (strcmp(backend, "sqlite") == 0) {
		test_sqlite_migration();
		test_sqlite_migration_v3();
	}
	/* [quota] defaults: a store opened with them (mem starts empty) */
	store_close(&store);
	default_quota = (struct store_quota){ 2, 100 };
	store = open_store();
	test_quota_defaults();
	default_quota = (struct store_quota){ 0, 0 };
	store_close(&store);
	if (data_dir[0] != '\0') {
		char cmd[PATH_MAX + 16];
		snprintf(cmd, sizeof(cmd), "rm -rf '%s'", data_dir);
		if (system(cmd) != 0)
			fprintf(stderr, "cannot remove %s\n", data_dir);
	}
}

int main(int argc, char **argv)
{
	if (argc < 2 || ((strcmp(argv[1], "sqlite") == 0 || strcmp(argv[1], "cassandra") == 0) &&
			 argc < 3)) {
		fprintf(stderr, "usage: %s mem | sqlite BASEDIR | cassandra CONTACT_POINT\n", argv[0]);
		return 2;
	}
	backend = argv[1];
	base_dir = argc > 2 ? argv[2] : ".";
	if (strcmp(backend, "cassandra") == 0)
		contact = argv[2];

	struct store_settings bad = { .backend = "no-such-backend" };
	const char *error = NULL;
	CHECK(store_open(&bad, &error) == NULL);
	CHECK(error != NULL);

	mode = STORE_POP3_IDS_MESSAGEID;
	run_suite();
	mode = STORE_POP3_IDS_UID;
	run_suite();
	TEST_MAIN_END();
}
