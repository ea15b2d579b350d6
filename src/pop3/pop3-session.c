/*
 * pop3-session: the POP3 state machine (AUTHORIZATION → TRANSACTION →
 * UPDATE) on the session core, which owns the connection, the job slot,
 * the bad-command budget, the login deadline, password checks and SASL.
 *
 * Invariants:
 * - The listing is read once, at login, and never changes during the
 *   session; message numbers index it.
 * - DELE only marks; deletions are applied at QUIT in the TRANSACTION state
 *   (UPDATE). A session that ends any other way deletes nothing.
 * - State changes go through pop3_enter_state() only; a command runs only
 *   in the states its table row allows.
 * - Every store error maps to a reply in pop3_store_error() only.
 * - The POP3 form of a message (dot-stuffing, the final ".", TOP's line
 *   limit) is made here from the store's raw octets, piece by piece: the
 *   next piece is read only once the client has taken most of the last, so
 *   a large message never sits in memory whole.
 * - The [auth] plaintext policy is checked before any password is looked
 *   at; PASS and AUTH lines are wiped after use.
 * - RFC 2449 extensions: LOGIN-DELAY is checked only once the password is
 *   right (a wrong one learns nothing), and a refused login records no
 *   time; the login time and the first retrieval of a message are plain
 *   writes (store.h), never read-then-written. With an EXPIRE policy of 0
 *   days, QUIT's UPDATE deletes what the session retrieved as if DELE'd;
 *   a session that ends otherwise deletes nothing. IMPLEMENTATION is shown
 *   only after login.
 */
#include "pop3-session.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "clock.h"
#include "mail-address.h"
#include "mail-data.h"
#include "pop3-audit.h"
#include "pop3-expire.h"
#include "pop3-parser.h"
#include "settings.h"

/* RETR/TOP stream in pieces of this size, the next one read when the
 * queued output falls under the low-water mark. */
#define POP3_READ_PIECE (128 * 1024)
#define POP3_READ_LOW_WATER (32 * 1024)
/* A LIST or UIDL of the whole mailbox is built and queued in pieces of
 * about this size, the next one when the output has drained to the low
 * water mark: a 100,000-message UIDL (4.5 MB) never sits whole in memory. */
#define POP3_LIST_PIECE (64 * 1024)
#define POP3_PLAINTEXT_REFUSED \
	"-ERR [AUTH] Plaintext authentication disallowed on non-secure connections (use STLS)"
#define POP3_BAD_USER "-ERR [AUTH] Invalid user name (expected user@domain)"

enum pop3_state {
	POP3_STATE_AUTHORIZATION = 1 << 0,
	POP3_STATE_TRANSACTION = 1 << 1,
	POP3_STATE_UPDATE = 1 << 2,
};

struct pop3_session {
	struct session s;
	enum pop3_state state;
	char user[MAIL_ADDRESS_MAX + 1];  /* after USER, then the logged-in user */
	struct store_maildrop *md;
	bool *deleted;
	unsigned int deleted_count;  /* marked by DELE: STAT costs no scan */
	uint64_t deleted_size;
	bool *retrieved;             /* RETR'd whole in this session */
	int expire_days;             /* the user's EXPIRE policy: days or STORE_EXPIRE_NEVER */
	bool expire_own;             /* ... and it is the user's own, not [pop3] expire_days */
	bool login_delayed;          /* the password was right, LOGIN-DELAY refused it */

	/* the job in flight */
	enum store_status job_status;
	unsigned int job_msg;
	long job_lines;
	struct store_cursor *cursor;  /* RETR/TOP being streamed */
	struct mail_pop3_encoder enc;
	bool read_started, read_eof;
	bool job_record_failed;       /* the retrieval record of a RETR was not written */
	struct buf job_raw, job_out;
	unsigned int *job_indexes;
	unsigned int job_index_count;

	/* LIST or UIDL being streamed: the next message to list */
	unsigned int list_next;
	bool list_uidl;
};

static struct pop3_session *pop3(struct session *s)
{
	return (struct pop3_session *)s;
}

/* The one place a store error becomes a POP3 reply (RFC 3206 codes). */
static void pop3_store_error(struct pop3_session *p, enum store_status st)
{
	switch (st) {
	case STORE_NOTFOUND:
		session_reply(&p->s, "-ERR No such message (it was deleted by another session)");
		break;
	case STORE_TOOBIG:
		session_reply(&p->s, "-ERR [SYS/PERM] Message too big to read");
		break;
	case STORE_PERM:
	case STORE_INVALID:
		session_reply(&p->s, "-ERR [SYS/PERM] Storage error");
		break;
	default:
		session_reply(&p->s, "-ERR [SYS/TEMP] Storage temporarily unavailable, try again later");
		break;
	}
}

static void pop3_enter_state(struct pop3_session *p, enum pop3_state state)
{
	p->state = state;
	if (state == POP3_STATE_TRANSACTION)
		session_logged_in(&p->s, p->s.env->set->pop3_idle_timeout_ms);
}

/* --- message numbers --- */

static bool get_msg(struct pop3_session *p, const char *arg, unsigned int *idx_r)
{
	unsigned int n;
	if (arg == NULL || pop3_parse_msgnum(arg, &n) < 0) {
		session_bad_command(&p->s, "-ERR Invalid message number");
		return false;
	}
	if (n > p->md->count) {
		session_reply(&p->s, "-ERR No such message");
		return false;
	}
	if (p->deleted[n - 1]) {
		session_reply(&p->s, "-ERR Message already deleted");
		return false;
	}
	*idx_r = n - 1;
	return true;
}

/* --- logins --- */

/* [pop3] login_delay in whole seconds, rounded up, as CAPA shows it. */
static unsigned int login_delay_secs(const struct tern_settings *set)
{
	return (set->pop3_login_delay_ms + 999) / 1000;
}

/* On the worker, right after the password check, so that the login costs
 * one job: LOGIN-DELAY (the last login's time, then this one's, a plain
 * write), the user's EXPIRE policy, and the listing. A login refused for
 * LOGIN-DELAY reads nothing more and writes nothing. A login time in the
 * future by more than the delay (a clock far ahead elsewhere) is ignored
 * rather than locking the user out. */
static enum store_status login_work(struct session *s, const char *user)
{
	struct pop3_session *p = pop3(s);
	const struct tern_settings *set = s->env->set;
	struct store *store = s->env->store;
	int64_t now = clock_wall_us(), delay = (int64_t)set->pop3_login_delay_ms * 1000;
	p->login_delayed = false;
	if (delay > 0) {
		int64_t last = 0;
		enum store_status st = store_login_get(store, user, &last);
		if (st != STORE_OK)
			return st;
		if (last > 0 && now - last < delay && last - now < delay) {
			p->login_delayed = true;
			return STORE_OK;
		}
	}
	/* The user's own EXPIRE policy comes with the listing's read. */
	enum store_status st = store_maildrop_open(store, user, &p->md);
	if (st != STORE_OK)
		return st;
	p->expire_own = p->md->expire_days != STORE_EXPIRE_DEFAULT;
	p->expire_days = pop3_expire_effective(p->md->expire_days, set->pop3_expire_days);
	if (delay > 0)
		st = store_login_put(store, user, now);
	return st;
}

static void login_done(struct session *s, enum session_login_result result, const char *user)
{
	struct pop3_session *p = pop3(s);
	switch (result) {
	case SESSION_LOGIN_OK:
		if (p->login_delayed) {
			/* RFC 2449 8.1.1; not a bad command: the password was right */
			p->user[0] = '\0';
			session_info(s, "login refused user=%s reason=login-delay delay_s=%u", user,
				     login_delay_secs(s->env->set));
			session_replyf(s, "-ERR [LOGIN-DELAY] Logged in less than %u seconds ago, try again later",
				       login_delay_secs(s->env->set));
			break;
		}
		str_copy(p->user, user, sizeof(p->user));
		p->deleted = xcalloc(p->md->count ? p->md->count : 1, sizeof(bool));
		p->retrieved = xcalloc(p->md->count ? p->md->count : 1, sizeof(bool));
		pop3_enter_state(p, POP3_STATE_TRANSACTION);
		pop3_audit_login(s->env->audit, s->id, p->user, conn_peer_ip(s->conn));
		session_info(s, "login ok user=%s messages=%u", p->user, p->md->count);
		session_replyf(s, "+OK Logged in, %u messages (%llu octets)", p->md->count,
			       (unsigned long long)p->md->total_size);
		break;
	case SESSION_LOGIN_FAILED:
		p->user[0] = '\0';
		session_bad_command(s, "-ERR [AUTH] Invalid user name or password");
		break;
	case SESSION_LOGIN_TEMPFAIL:
		p->user[0] = '\0';
		store_maildrop_free(&p->md);
		pop3_store_error(p, STORE_TEMPFAIL);
		break;
	}
}

static void sasl_failed(struct session *s, enum session_sasl_failure why, const char *text)
{
	switch (why) {
	case SESSION_SASL_BAD_USER:
		session_bad_command(s, POP3_BAD_USER);
		break;
	case SESSION_SASL_TOO_LONG:
		session_bad_command(s, "-ERR [AUTH] Authentication response too long");
		break;
	default:
		session_bad_command_f(s, "-ERR [AUTH] %s", text);
		break;
	}
}

static const struct session_sasl_ops pop3_sasl = {
	.challenge_prefix = "+ ",
	.failed = sasl_failed,
	.after_ok = login_work,
	.done = login_done,
};

/* Sets p->user from a client-supplied name; false (and a reply) when it
 * is not an address. */
static bool set_user(struct pop3_session *p, const char *name)
{
	struct mail_address addr;
	const char *error;
	/* RFC 6856 UTF8 USER: UTF-8 user names are taken with USER/PASS. */
	if (mail_address_parse_utf8(name, strlen(name), &addr, &error) < 0) {
		p->user[0] = '\0';
		session_bad_command(&p->s, POP3_BAD_USER);
		return false;
	}
	mail_address_format(&addr, p->user, sizeof(p->user));
	return true;
}

/* --- command handlers --- */

/* RFC 2449 EXPIRE: before login the server's default followed by USER
 * (a user may have their own policy); after login the user's. */
static void capa_expire(struct pop3_session *p, struct buf *out)
{
	bool before = p->state == POP3_STATE_AUTHORIZATION;
	int days = before ? p->s.env->set->pop3_expire_days : p->expire_days;
	if (days == STORE_EXPIRE_NEVER)
		buf_append_str(out, "EXPIRE NEVER");
	else
		buf_printf(out, "EXPIRE %d", days);
	buf_append_str(out, before ? " USER\r\n" : "\r\n");
}

static void cmd_capa(struct pop3_session *p, const struct pop3_command *cmd)
{
	struct conn *conn = p->s.conn;
	struct buf ext;
	buf_init(&ext, 0);
	capa_expire(p, &ext);
	if (p->s.env->set->pop3_login_delay_ms > 0)
		buf_printf(&ext, "LOGIN-DELAY %u\r\n", login_delay_secs(p->s.env->set));
	conn_puts(conn, "+OK Capability list follows\r\n"
			"TOP\r\nUIDL\r\nRESP-CODES\r\nAUTH-RESP-CODE\r\nPIPELINING\r\n");
	conn_puts(conn, ext.data);
	buf_deinit(&ext);
	if (p->state == POP3_STATE_AUTHORIZATION) {
		/* RFC 6856: the UTF8 command, and UTF-8 names with USER/PASS */
		conn_puts(conn, "UTF8 USER\r\n");
		/* RFC 2595 / 5034: hide what the plaintext policy would refuse. */
		if (session_plaintext_allowed(&p->s))
			conn_puts(conn, session_oauth_offered(&p->s)
						? "USER\r\nSASL PLAIN OAUTHBEARER XOAUTH2\r\n"
						: "USER\r\nSASL PLAIN\r\n");
		if (session_tls(&p->s) != NULL && !conn_is_tls(conn))
			conn_puts(conn, "STLS\r\n");
	}
	/* RFC 2449 6.9: nothing about the software before login */
	if (p->state != POP3_STATE_AUTHORIZATION)
		conn_puts(conn, "IMPLEMENTATION tern\r\n");
	conn_puts(conn, ".\r\n");
}

/* RFC 6856: UTF8 in AUTHORIZATION. Messages are sent as stored either
 * way (never rewritten), and UTF-8 user names are always taken, so it
 * only acknowledges. */
static void cmd_utf8(struct pop3_session *p, const struct pop3_command *cmd)
{
	if (cmd->argc != 0) {
		session_bad_command(&p->s, "-ERR UTF8 takes no arguments");
		return;
	}
	session_reply(&p->s, "+OK UTF8 enabled");
}

static void cmd_noop(struct pop3_session *p, const struct pop3_command *cmd)
{
	session_reply(&p->s, "+OK");
}

static void expunge_work(struct session *s)
{
	struct pop3_session *p = pop3(s);
	p->job_status = store_maildrop_expunge(p->md, p->job_indexes, p->job_index_count);
}

/* One audit line per message deleted at QUIT: DELE'd, or retrieved under
 * an EXPIRE policy of 0 days. */
static void audit_expunged(struct pop3_session *p)
{
	for (unsigned int k = 0; k < p->job_index_count; k++) {
		unsigned int i = p->job_indexes[k];
		const struct store_listing_entry *e = &p->md->entries[i];
		pop3_audit_message(p->s.env->audit, p->deleted[i] ? "dele" : "expire", p->s.id,
				   p->user, conn_peer_ip(p->s.conn), &e->id, e->uidl, e->size, 0,
				   p->deleted[i] ? NULL : "quit");
	}
}

static void expunge_done(struct session *s)
{
	struct pop3_session *p = pop3(s);
	if (p->job_status == STORE_OK)
		audit_expunged(p);
	free(p->job_indexes);
	p->job_indexes = NULL;
	if (p->job_status != STORE_OK) {
		/* RFC 1939: -ERR in UPDATE when some deletion failed. */
		session_error(s, "expunge failed user=%s error=%s", p->user,
			      store_status_name(p->job_status));
		session_reply(s, "-ERR [SYS/TEMP] Some messages could not be deleted");
	} else {
		session_info(s, "quit user=%s deleted=%u", p->user, p->job_index_count);
		session_reply(s, "+OK Bye");
	}
	conn_close(s->conn);
}

static void cmd_quit(struct pop3_session *p, const struct pop3_command *cmd)
{
	if (p->state != POP3_STATE_TRANSACTION) {
		session_reply(&p->s, "+OK Bye");
		conn_close(p->s.conn);
		return;
	}
	pop3_enter_state(p, POP3_STATE_UPDATE);
	/* EXPIRE 0 (RFC 2449 6.7): what was retrieved goes as if DELE'd. */
	bool expire_now = p->expire_days == 0;
	unsigned int n = 0;
	for (unsigned int i = 0; i < p->md->count; i++)
		if (p->deleted[i] || (expire_now && p->retrieved[i]))
			n++;
	if (n == 0) {
		session_reply(&p->s, "+OK Bye");
		conn_close(p->s.conn);
		return;
	}
	p->job_indexes = xcalloc(n, sizeof(unsigned int));
	p->job_index_count = 0;
	for (unsigned int i = 0; i < p->md->count; i++)
		if (p->deleted[i] || (expire_now && p->retrieved[i]))
			p->job_indexes[p->job_index_count++] = i;
	session_run_job(&p->s, expunge_work, expunge_done);
}

static void cmd_stls(struct pop3_session *p, const struct pop3_command *cmd)
{
	if (p->state != POP3_STATE_AUTHORIZATION) {
		/* RFC 2595 4: TLS cannot be started once logged in. */
		session_bad_command(&p->s, "-ERR STLS is only allowed before login (RFC 2595); reconnect and use STLS first");
		return;
	}
	if (session_tls(&p->s) == NULL) {
		session_bad_command(&p->s, "-ERR STLS not available (no certificate configured)");
		return;
	}
	if (conn_is_tls(p->s.conn)) {
		session_bad_command(&p->s, "-ERR Already using TLS");
		return;
	}
	if (cmd->argc != 0) {
		session_bad_command(&p->s, "-ERR STLS takes no arguments");
		return;
	}
	session_reply(&p->s, "+OK Begin TLS negotiation");
	p->user[0] = '\0';
	conn_start_tls(p->s.conn, session_tls(&p->s));
}

static void cmd_user(struct pop3_session *p, const struct pop3_command *cmd)
{
	if (!session_plaintext_allowed(&p->s)) {
		session_bad_command(&p->s, POP3_PLAINTEXT_REFUSED);
		return;
	}
	if (cmd->argc != 1) {
		session_bad_command(&p->s, POP3_BAD_USER);
		return;
	}
	if (set_user(p, cmd->argv[0]))
		session_reply(&p->s, "+OK Send PASS");
}

static void cmd_pass(struct pop3_session *p, const struct pop3_command *cmd)
{
	if (p->user[0] == '\0') {
		session_bad_command(&p->s, "-ERR USER first");
		return;
	}
	if (!session_plaintext_allowed(&p->s)) {
		session_count_login_refused(&p->s);
		session_bad_command(&p->s, POP3_PLAINTEXT_REFUSED);
		return;
	}
	struct buf secret;
	buf_init(&secret, p->s.env->set->auth_response_max);
	if (buf_append_str(&secret, cmd->rest) < 0) {
		buf_deinit(&secret);
		session_bad_command(&p->s, "-ERR [AUTH] Password too long");
		return;
	}
	session_check_password(&p->s, p->user, &secret, login_work, login_done);
	buf_deinit(&secret);
}

/* RFC 5034: AUTH [mechanism [initial-response]]. */
static void cmd_auth(struct pop3_session *p, const struct pop3_command *cmd)
{
	bool allowed = session_plaintext_allowed(&p->s);
	if (cmd->argc == 0) {
		/* The mechanisms usable here and now. */
		conn_puts(p->s.conn, !allowed ? "+OK\r\n.\r\n"
				     : session_oauth_offered(&p->s)
					     ? "+OK\r\nPLAIN\r\nOAUTHBEARER\r\nXOAUTH2\r\n.\r\n"
					     : "+OK\r\nPLAIN\r\n.\r\n");
		return;
	}
	enum sasl_mech mech = sasl_mech_lookup(cmd->argv[0]);
	if (mech != SASL_MECH_PLAIN &&
	    !(sasl_mech_is_bearer(mech) && p->s.env->oauth_keys != NULL)) {
		session_bad_command(&p->s, "-ERR Unsupported authentication mechanism (use PLAIN)");
		return;
	}
	if (!allowed) {
		session_count_login_refused(&p->s);
		session_bad_command(&p->s, POP3_PLAINTEXT_REFUSED);
		return;
	}
	p->user[0] = '\0';
	session_sasl_start(&p->s, mech, cmd->argc == 2 ? cmd->argv[1] : NULL, &pop3_sasl);
}

static void cmd_apop(struct pop3_session *p, const struct pop3_command *cmd)
{
	session_bad_command(&p->s, "-ERR APOP not supported");
}

static void cmd_stat(struct pop3_session *p, const struct pop3_command *cmd)
{
	session_replyf(&p->s, "+OK %u %llu", p->md->count - p->deleted_count,
		       (unsigned long long)(p->md->total_size - p->deleted_size));
}

static void list_more(void *ctx);

/* The next piece of a whole-mailbox LIST or UIDL: one line per message,
 * built without printf in a buffer sized once. Input stays paused until
 * the last piece (the terminating dot) is queued. */
static void list_piece(struct pop3_session *p)
{
	const struct store_listing_entry *e = p->md->entries;
	struct buf out;
	buf_init(&out, 0);
	buf_reserve(&out, POP3_LIST_PIECE + STORE_UIDL_MAX + 32);
	if (p->list_next == 0)
		buf_append_str(&out, "+OK\r\n");
	unsigned int i = p->list_next;
	for (; i < p->md->count && out.len < POP3_LIST_PIECE; i++) {
		if (p->deleted[i])
			continue;
		buf_append_u64(&out, i + 1);
		buf_append_c(&out, ' ');
		if (p->list_uidl)
			buf_append_str(&out, e[i].uidl);
		else
			buf_append_u64(&out, e[i].size);
		buf_append(&out, "\r\n", 2);
	}
	p->list_next = i;
	bool last = i == p->md->count;
	if (last)
		buf_append_str(&out, ".\r\n");
	conn_write_buf(p->s.conn, &out);
	buf_deinit(&out);
	if (!last) {
		session_hold(&p->s);
		conn_when_drained(p->s.conn, POP3_READ_LOW_WATER, list_more);
	} else if (p->s.held) {
		session_resume(&p->s);
	}
}

static void list_more(void *ctx)
{
	list_piece(pop3(ctx));
}

static void list_or_uidl(struct pop3_session *p, const struct pop3_command *cmd, bool uidl)
{
	if (cmd->argc > 1) {
		session_bad_command(&p->s, "-ERR Too many arguments");
		return;
	}
	const struct store_listing_entry *e = p->md->entries;
	if (cmd->argc == 1) {
		unsigned int i;
		if (!get_msg(p, cmd->argv[0], &i))
			return;
		if (uidl)
			session_replyf(&p->s, "+OK %u %s", i + 1, e[i].uidl);
		else
			session_replyf(&p->s, "+OK %u %llu", i + 1, (unsigned long long)e[i].size);
		return;
	}
	p->list_next = 0;
	p->list_uidl = uidl;
	list_piece(p);
}

static void cmd_list(struct pop3_session *p, const struct pop3_command *cmd)
{
	list_or_uidl(p, cmd, false);
}

static void cmd_uidl(struct pop3_session *p, const struct pop3_command *cmd)
{
	list_or_uidl(p, cmd, true);
}

/* --- RETR and TOP: the message streamed in pieces --- */

/* A piece as stored, then its POP3 form, on the worker. The cursor keeps
 * its place between pieces and is closed here too (closing may touch the
 * store), once the message or TOP's lines are out or reading failed. */
static void read_work(struct session *s)
{
	struct pop3_session *p = pop3(s);
	bool eof = false;
	buf_reset(&p->job_out);
	p->job_status = STORE_OK;
	if (p->cursor == NULL) {
		p->job_status = store_cursor_open(p->md, p->job_msg, &p->cursor);
		mail_pop3_encoder_init(&p->enc, p->job_lines);
	}
	if (p->job_status == STORE_OK)
		p->job_status = store_cursor_next(p->cursor, POP3_READ_PIECE, &p->job_raw, &eof);
	if (p->job_status == STORE_OK) {
		/* job_out is handed to the conn whole after every piece: give it
		 * its room at once (stuffing and CRs add a little), not by doubling. */
		buf_reserve(&p->job_out, p->job_raw.len + p->job_raw.len / 16 + 8);
		mail_pop3_encoder_feed(&p->enc, p->job_raw.data, p->job_raw.len, &p->job_out);
		p->read_eof = eof || p->enc.finished;
		if (p->read_eof)
			mail_pop3_encoder_finish(&p->enc, &p->job_out);
	}
	buf_reset(&p->job_raw);
	/* A whole RETR is a retrieval for EXPIRE: its first one is recorded
	 * (a plain, idempotent write; no record under a NEVER policy). A
	 * failed record leaves the message unexpired, never the RETR failed. */
	if (p->job_status == STORE_OK && p->read_eof && p->job_lines < 0 &&
	    p->expire_days != STORE_EXPIRE_NEVER && !p->retrieved[p->job_msg] &&
	    store_retrieved_put(p->md, p->job_msg, clock_wall_us()) != STORE_OK)
		p->job_record_failed = true;
	if (p->job_status != STORE_OK || p->read_eof) {
		store_cursor_close(&p->cursor);
		/* a piece's room is not kept between commands */
		buf_deinit(&p->job_raw);
		buf_init(&p->job_raw, 0);
	}
}

/* A RETR has been sent whole. */
static void retrieved(struct pop3_session *p)
{
	unsigned int i = p->job_msg;
	const struct store_listing_entry *e = &p->md->entries[i];
	if (p->job_record_failed)
		session_warn(&p->s, "retrieval not recorded, EXPIRE will not count it yet message=%u",
			     i + 1);
	p->job_record_failed = false;
	p->retrieved[i] = true;
	pop3_audit_message(p->s.env->audit, "retr", p->s.id, p->user, conn_peer_ip(p->s.conn),
			   &e->id, e->uidl, e->size, 0, NULL);
}

static void read_end(struct pop3_session *p)
{
	p->read_started = false;
	p->read_eof = false;
}

static void read_done(struct session *s);

/* The output has drained: read the next piece of the message. */
static void read_more(void *ctx)
{
	session_run_job(ctx, read_work, read_done);
}

static void read_done(struct session *s)
{
	struct pop3_session *p = pop3(s);
	bool first = !p->read_started;
	if (p->job_status != STORE_OK) {
		read_end(p);
		if (first) {
			pop3_store_error(p, p->job_status);
			return;
		}
		/* The status line is out: a multi-line reply cannot turn into an
		 * error any more, so the only honest end is to close. */
		session_error(s, "message became unreadable while being sent; closing message=%u error=%s",
			      p->job_msg + 1, store_status_name(p->job_status));
		conn_close(s->conn);
		return;
	}
	if (first) {
		p->read_started = true;
		if (p->job_lines < 0)
			session_replyf(s, "+OK %llu octets",
				       (unsigned long long)p->md->entries[p->job_msg].size);
		else
			session_reply(s, "+OK");
	}
	session_count_octets_sent(s, p->job_out.len);
	conn_write_buf(s->conn, &p->job_out);
	if (p->read_eof) {
		read_end(p);
		if (p->job_lines < 0)
			retrieved(p);
		return;
	}
	/* Input stays paused until the last piece is out. */
	session_hold(s);
	conn_when_drained(s->conn, POP3_READ_LOW_WATER, read_more);
}

/* A message of one piece may go out from memory on the loop
 * (session_run_job_nowait): read_work then either sends it whole or, when
 * a read would wait, has closed the cursor, and the worker reads it again
 * from its start. Not a RETR that records a first retrieval for EXPIRE:
 * that is a write. */
static void start_read(struct pop3_session *p, unsigned int i, long lines)
{
	p->job_msg = i;
	p->job_lines = lines;
	if (p->md->entries[i].size <= POP3_READ_PIECE &&
	    (lines >= 0 || p->expire_days == STORE_EXPIRE_NEVER || p->retrieved[i]))
		session_run_job_nowait(&p->s, read_work, read_done);
	else
		session_run_job(&p->s, read_work, read_done);
}

static void cmd_retr(struct pop3_session *p, const struct pop3_command *cmd)
{
	unsigned int i;
	if (cmd->argc != 1) {
		session_bad_command(&p->s, "-ERR Usage: RETR msg");
		return;
	}
	if (get_msg(p, cmd->argv[0], &i))
		start_read(p, i, -1);
}

static void cmd_top(struct pop3_session *p, const struct pop3_command *cmd)
{
	unsigned int i;
	long lines;
	if (cmd->argc != 2) {
		session_bad_command(&p->s, "-ERR Usage: TOP msg lines");
		return;
	}
	if (pop3_parse_linecount(cmd->argv[1], &lines) < 0) {
		session_bad_command(&p->s, "-ERR Invalid line count");
		return;
	}
	if (get_msg(p, cmd->argv[0], &i))
		start_read(p, i, lines);
}

static void cmd_dele(struct pop3_session *p, const struct pop3_command *cmd)
{
	unsigned int i;
	if (cmd->argc != 1) {
		session_bad_command(&p->s, "-ERR Usage: DELE msg");
		return;
	}
	if (!get_msg(p, cmd->argv[0], &i))
		return;
	p->deleted[i] = true;
	p->deleted_count++;
	p->deleted_size += p->md->entries[i].size;
	session_replyf(&p->s, "+OK Message %u deleted", i + 1);
}

static void cmd_rset(struct pop3_session *p, const struct pop3_command *cmd)
{
	memset(p->deleted, 0, p->md->count * sizeof(bool));
	p->deleted_count = 0;
	p->deleted_size = 0;
	session_replyf(&p->s, "+OK %u messages", p->md->count);
}

/* --- dispatch --- */

/* For tern_commands_total, by verb number. */
static const char *const verb_names[] = {
	[POP3_VERB_USER] = "USER", [POP3_VERB_PASS] = "PASS", [POP3_VERB_APOP] = "APOP",
	[POP3_VERB_AUTH] = "AUTH", [POP3_VERB_STAT] = "STAT", [POP3_VERB_LIST] = "LIST",
	[POP3_VERB_RETR] = "RETR", [POP3_VERB_DELE] = "DELE", [POP3_VERB_NOOP] = "NOOP",
	[POP3_VERB_RSET] = "RSET", [POP3_VERB_QUIT] = "QUIT", [POP3_VERB_TOP] = "TOP",
	[POP3_VERB_UIDL] = "UIDL", [POP3_VERB_CAPA] = "CAPA", [POP3_VERB_STLS] = "STLS",
	[POP3_VERB_UTF8] = "UTF8",
};

struct pop3_command_def {
	enum pop3_verb verb;
	unsigned int states;
	bool secret;   /* the line carries a password: wipe it after use */
	void (*handler)(struct pop3_session *p, const struct pop3_command *cmd);
};

#define AUTHZ POP3_STATE_AUTHORIZATION
#define TRANS POP3_STATE_TRANSACTION
static const struct pop3_command_def commands[] = {
	{ POP3_VERB_CAPA, AUTHZ | TRANS, false, cmd_capa },
	{ POP3_VERB_NOOP, TRANS, false, cmd_noop },
	{ POP3_VERB_QUIT, AUTHZ | TRANS, false, cmd_quit },
	{ POP3_VERB_STLS, AUTHZ | TRANS, false, cmd_stls },
	{ POP3_VERB_UTF8, AUTHZ, false, cmd_utf8 },
	{ POP3_VERB_USER, AUTHZ, false, cmd_user },
	{ POP3_VERB_PASS, AUTHZ, true, cmd_pass },
	{ POP3_VERB_AUTH, AUTHZ, true, cmd_auth },
	{ POP3_VERB_APOP, AUTHZ, true, cmd_apop },
	{ POP3_VERB_STAT, TRANS, false, cmd_stat },
	{ POP3_VERB_LIST, TRANS, false, cmd_list },
	{ POP3_VERB_UIDL, TRANS, false, cmd_uidl },
	{ POP3_VERB_RETR, TRANS, false, cmd_retr },
	{ POP3_VERB_TOP, TRANS, false, cmd_top },
	{ POP3_VERB_DELE, TRANS, false, cmd_dele },
	{ POP3_VERB_RSET, TRANS, false, cmd_rset },
};

static void pop3_line(struct session *s, char *line, size_t len, bool bare_lf)
{
	struct pop3_session *p = pop3(s);
	struct pop3_command cmd;
	const char *error;
	int parsed = pop3_parse_command(line, len, &cmd, &error);
	session_count_command(s, parsed < 0 ? POP3_VERB_UNKNOWN : cmd.verb);
	if (parsed < 0) {
		session_bad_command_f(s, "-ERR %s", error);
		return;
	}
	for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++) {
		const struct pop3_command_def *def = &commands[i];
		if (def->verb != cmd.verb)
			continue;
		if ((def->states & p->state) == 0) {
			session_bad_command(s, p->state == POP3_STATE_AUTHORIZATION
						       ? "-ERR Not logged in"
						       : "-ERR Command not valid in this state");
			return;
		}
		def->handler(p, &cmd);
		if (def->secret)
			explicit_bzero(line, len);
		return;
	}
	session_bad_command(s, "-ERR Unknown command");
}

static void pop3_line_too_long(struct session *s)
{
	session_bad_command(s, "-ERR Line too long");
}

static void pop3_timeout(struct session *s, enum conn_timeout kind)
{
	switch (kind) {
	case CONN_TIMEOUT_IDLE:
		session_reply(s, "-ERR Autologout; idle for too long");
		break;
	case CONN_TIMEOUT_COMMAND:
		session_reply(s, "-ERR Command not received in time, closing connection");
		break;
	case CONN_TIMEOUT_SESSION:
		session_reply(s, "-ERR Not logged in in time, closing connection");
		break;
	}
}

static void pop3_refuse(struct session *s, enum session_admit why)
{
	session_reply(s, why == SESSION_ADMIT_TOO_MANY_FROM_IP
				 ? "-ERR [SYS/TEMP] Too many connections from your address, try again later"
				 : "-ERR [SYS/TEMP] Too many connections, try again later");
}

static void pop3_start(struct session *s)
{
	struct pop3_session *p = pop3(s);
	buf_init(&p->job_raw, 0);
	buf_init(&p->job_out, 0);
	pop3_enter_state(p, POP3_STATE_AUTHORIZATION);
	session_start_login_deadline(s);
	session_reply(s, "+OK tern POP3 server ready");
}

/* Closing a cursor may touch the store (SQLite: the read transaction's
 * COMMIT and the reader pool's lock): a worker's job, never the loop's. */
static void close_cursor_work(struct session *s)
{
	store_cursor_close(&pop3(s)->cursor);
}

/* A client gone mid-RETR (a drop, a timeout): its cursor is closed on a
 * worker before the session is freed. */
static bool holds_cursor(const struct session *s)
{
	return ((const struct pop3_session *)s)->cursor != NULL;
}

static void pop3_deinit(struct session *s)
{
	struct pop3_session *p = pop3(s);
	store_cursor_close(&p->cursor);
	store_maildrop_free(&p->md);
	free(p->deleted);
	free(p->retrieved);
	free(p->job_indexes);
	buf_deinit(&p->job_raw);
	buf_deinit(&p->job_out);
}

const struct session_protocol pop3_protocol = {
	.name = "pop3",
	.size = sizeof(struct pop3_session),
	.start = pop3_start,
	.refuse = pop3_refuse,
	.line = pop3_line,
	.line_too_long = pop3_line_too_long,
	.timeout = pop3_timeout,
	.needs_release = holds_cursor,
	.release = close_cursor_work,
	.deinit = pop3_deinit,
	.too_many_errors = "-ERR Too many bad commands, closing connection",
	.verbs = verb_names,
	.verb_count = sizeof(verb_names) / sizeof(verb_names[0]),
};
