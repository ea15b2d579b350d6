/*
 * pop3-session: the POP3 state machine (AUTHORIZATION → TRANSACTION →
 * UPDATE) over a conn, with store calls on the worker pool.
 *
 * Invariants:
 * - The listing is read once, at login, and never changes during the
 *   session; message numbers index it.
 * - DELE only marks; deletions are applied at QUIT in the TRANSACTION state
 *   (UPDATE). A session that ends any other way deletes nothing.
 * - At most one store job is in flight per session, and input is paused
 *   while it runs, so pipelined commands are answered in order.
 * - Every store error maps to a reply in pop3_store_error() only.
 * - The password never reaches a log line and is wiped after use; the
 *   [auth] plaintext policy is checked before any password is looked at.
 * - A failed login is answered after the client address's failure delay,
 *   with the conn paused meanwhile; other sessions are not held up.
 * - Before login the input caps and timeouts are the smaller pre-auth ones.
 */
#include "pop3-session.h"

#include <event2/event.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auth-cache.h"
#include "buf.h"
#include "conn.h"
#include "daemon.h"
#include "log.h"
#include "mail-address.h"
#include "mail-data.h"
#include "password.h"
#include "pop3-parser.h"
#include "sasl.h"
#include "store.h"
#include "worker-pool.h"

/* RETR/TOP stream in pieces of this size, the next one read when the
 * queued output falls under the low-water mark. */
#define POP3_READ_PIECE (128 * 1024)
#define POP3_READ_LOW_WATER (32 * 1024)
#define POP3_PLAINTEXT_REFUSED \
	"-ERR [AUTH] Plaintext authentication disallowed on non-secure connections (use STLS)"

enum pop3_state {
	POP3_STATE_AUTHORIZATION = 1 << 0,
	POP3_STATE_TRANSACTION = 1 << 1,
	POP3_STATE_UPDATE = 1 << 2,
};

enum pop3_job_kind { JOB_LOGIN, JOB_READ, JOB_EXPUNGE };

struct pop3_session {
	struct daemon_session ds;
	struct daemon *daemon;
	struct conn *conn;
	uint64_t id;
	enum pop3_state state;
	unsigned int bad_commands;
	char user[MAIL_ADDRESS_MAX + 1];  /* after USER */
	struct store_maildrop *md;
	bool *deleted;
	bool dead;         /* the connection has gone; free when the job ends */
	bool job_running;
	bool sasl_waiting; /* AUTH PLAIN sent "+ ": the next line is the response */
	struct event *delay_timer; /* holds a failed login's reply */

	/* The one job slot. */
	struct worker_job job;
	enum pop3_job_kind job_kind;
	enum store_status job_status;
	struct buf job_secret;    /* password for JOB_LOGIN, wiped after use */
	bool job_auth_ok;
	unsigned int job_msg;
	long job_lines;
	struct buf job_out;
	struct store_cursor *cursor;  /* RETR/TOP being streamed */
	struct mail_pop3_encoder enc; /* its dot-stuffing and TOP limit */
	struct buf job_raw;           /* a piece as stored, before encoding */
	bool reader_done, reader_started;
	unsigned int *job_indexes;
	unsigned int job_index_count;
};

static void pop3_session_free(struct pop3_session *s);

static void reply(struct pop3_session *s, const char *text)
{
	conn_puts(s->conn, text);
	conn_puts(s->conn, "\r\n");
}

/* The one place a store error becomes a POP3 reply (RFC 3206 codes). */
static void pop3_store_error(struct pop3_session *s, enum store_status st)
{
	switch (st) {
	case STORE_NOTFOUND:
		reply(s, "-ERR No such message (it was deleted by another session)");
		break;
	case STORE_TOOBIG:
		reply(s, "-ERR [SYS/PERM] Message too big to read");
		break;
	case STORE_PERM:
	case STORE_INVALID:
		reply(s, "-ERR [SYS/PERM] Storage error");
		break;
	default:
		reply(s, "-ERR [SYS/TEMP] Storage temporarily unavailable, try again later");
		break;
	}
}

static bool plaintext_allowed(struct pop3_session *s)
{
	return daemon_plaintext_allowed(s->daemon, s->conn);
}

static void set_state(struct pop3_session *s, enum pop3_state state)
{
	const struct tern_settings *set = s->daemon->set;
	s->state = state;
	if (state == POP3_STATE_TRANSACTION) {
		conn_set_line_max(s->conn, set->line_max);
		conn_set_input_max(s->conn, set->input_buffer);
		conn_set_idle_timeout(s->conn, set->pop3_idle_timeout_ms);
		conn_set_session_deadline(s->conn, 0);
	}
}

static void bad_command(struct pop3_session *s, const char *text)
{
	reply(s, text);
	if (++s->bad_commands >= s->daemon->set->max_bad_commands) {
		reply(s, "-ERR Too many bad commands, closing connection");
		log_info("pop3 #%llu: too many bad commands", (unsigned long long)s->id);
		conn_close(s->conn);
	}
}

static void run_job(struct pop3_session *s, enum pop3_job_kind kind);

/* --- message numbers --- */

static bool get_msg(struct pop3_session *s, const char *arg, unsigned int *idx_r)
{
	unsigned int n;
	if (arg == NULL || pop3_parse_msgnum(arg, &n) < 0) {
		bad_command(s, "-ERR Invalid message number");
		return false;
	}
	if (n > s->md->count) {
		reply(s, "-ERR No such message");
		return false;
	}
	if (s->deleted[n - 1]) {
		reply(s, "-ERR Message already deleted");
		return false;
	}
	*idx_r = n - 1;
	return true;
}

/* --- command handlers --- */

static void cmd_capa(struct pop3_session *s, const struct pop3_command *cmd)
{
	conn_puts(s->conn, "+OK Capability list follows\r\n"
			   "TOP\r\nUIDL\r\nRESP-CODES\r\nAUTH-RESP-CODE\r\nPIPELINING\r\n");
	if (s->state == POP3_STATE_AUTHORIZATION) {
		/* RFC 2595 / 5034: hide what the plaintext policy would refuse. */
		if (plaintext_allowed(s))
			conn_puts(s->conn, "USER\r\nSASL PLAIN\r\n");
		if (s->daemon->tls != NULL && !conn_is_tls(s->conn))
			conn_puts(s->conn, "STLS\r\n");
	}
	conn_puts(s->conn, "IMPLEMENTATION tern\r\n.\r\n");
}

static void cmd_noop(struct pop3_session *s, const struct pop3_command *cmd)
{
	reply(s, "+OK");
}

static void cmd_quit(struct pop3_session *s, const struct pop3_command *cmd)
{
	if (s->state != POP3_STATE_TRANSACTION) {
		reply(s, "+OK Bye");
		conn_close(s->conn);
		return;
	}
	set_state(s, POP3_STATE_UPDATE);
	unsigned int n = 0;
	for (unsigned int i = 0; i < s->md->count; i++)
		if (s->deleted[i])
			n++;
	if (n == 0) {
		reply(s, "+OK Bye");
		conn_close(s->conn);
		return;
	}
	s->job_indexes = xcalloc(n, sizeof(unsigned int));
	s->job_index_count = 0;
	for (unsigned int i = 0; i < s->md->count; i++)
		if (s->deleted[i])
			s->job_indexes[s->job_index_count++] = i;
	run_job(s, JOB_EXPUNGE);
}

static void cmd_stls(struct pop3_session *s, const struct pop3_command *cmd)
{
	if (s->state != POP3_STATE_AUTHORIZATION) {
		/* RFC 2595 4: TLS cannot be started once logged in. */
		bad_command(s, "-ERR STLS is only allowed before login (RFC 2595); reconnect and use STLS first");
		return;
	}
	if (s->daemon->tls == NULL) {
		bad_command(s, "-ERR STLS not available (no certificate configured)");
		return;
	}
	if (conn_is_tls(s->conn)) {
		bad_command(s, "-ERR Already using TLS");
		return;
	}
	if (cmd->argc != 0) {
		bad_command(s, "-ERR STLS takes no arguments");
		return;
	}
	reply(s, "+OK Begin TLS negotiation");
	s->user[0] = '\0';
	conn_start_tls(s->conn, s->daemon->tls);
}

/* Sets s->user from a client-supplied name; false (and a reply) when it
 * is not an address. */
static bool set_user(struct pop3_session *s, const char *name)
{
	struct mail_address addr;
	const char *error;
	if (mail_address_parse(name, strlen(name), &addr, &error) < 0) {
		s->user[0] = '\0';
		bad_command(s, "-ERR [AUTH] Invalid user name (expected user@domain)");
		return false;
	}
	mail_address_format(&addr, s->user, sizeof(s->user));
	return true;
}

static void cmd_user(struct pop3_session *s, const struct pop3_command *cmd)
{
	if (!plaintext_allowed(s)) {
		bad_command(s, POP3_PLAINTEXT_REFUSED);
		return;
	}
	if (cmd->argc != 1) {
		bad_command(s, "-ERR [AUTH] Invalid user name (expected user@domain)");
		return;
	}
	if (set_user(s, cmd->argv[0]))
		reply(s, "+OK Send PASS");
}

static void cmd_pass(struct pop3_session *s, const struct pop3_command *cmd)
{
	if (s->user[0] == '\0') {
		bad_command(s, "-ERR USER first");
		return;
	}
	if (!plaintext_allowed(s)) {
		bad_command(s, POP3_PLAINTEXT_REFUSED);
		return;
	}
	buf_reset(&s->job_secret);
	if (buf_append_str(&s->job_secret, cmd->rest) < 0) {
		buf_wipe(&s->job_secret);
		bad_command(s, "-ERR [AUTH] Password too long");
		return;
	}
	run_job(s, JOB_LOGIN);
}

/* The end of an AUTH exchange without a login: back to commands. */
static void sasl_end(struct pop3_session *s)
{
	s->sasl_waiting = false;
	conn_set_line_max(s->conn, s->daemon->set->line_max_preauth);
}

/* A PLAIN response (initial or continued): checks it and starts the login. */
static void sasl_plain_response(struct pop3_session *s, const char *b64, size_t len)
{
	const char *error, *authcid, *passwd;
	size_t passwd_len;
	struct buf msg;
	buf_init(&msg, s->daemon->set->auth_response_max);
	if (sasl_decode_response(b64, len, &msg, &error) < 0 ||
	    sasl_plain_split(&msg, &authcid, &passwd, &passwd_len, &error) < 0) {
		buf_wipe(&msg);
		buf_deinit(&msg);
		char text[160];
		snprintf(text, sizeof(text), "-ERR [AUTH] %s", error);
		bad_command(s, text);
		return;
	}
	if (!set_user(s, authcid)) {
		buf_wipe(&msg);
		buf_deinit(&msg);
		return;
	}
	buf_reset(&s->job_secret);
	int rc = buf_append(&s->job_secret, passwd, passwd_len);
	buf_wipe(&msg);
	buf_deinit(&msg);
	if (rc < 0) {
		buf_wipe(&s->job_secret);
		s->user[0] = '\0';
		bad_command(s, "-ERR [AUTH] Password too long");
		return;
	}
	run_job(s, JOB_LOGIN);
}

/* RFC 5034: AUTH [mechanism [initial-response]]. */
static void cmd_auth(struct pop3_session *s, const struct pop3_command *cmd)
{
	if (cmd->argc == 0) {
		/* The mechanisms usable here and now. */
		conn_puts(s->conn, plaintext_allowed(s) ? "+OK\r\nPLAIN\r\n.\r\n" : "+OK\r\n.\r\n");
		return;
	}
	if (sasl_mech_lookup(cmd->argv[0]) != SASL_MECH_PLAIN) {
		bad_command(s, "-ERR Unsupported authentication mechanism (use PLAIN)");
		return;
	}
	if (!plaintext_allowed(s)) {
		bad_command(s, POP3_PLAINTEXT_REFUSED);
		return;
	}
	s->user[0] = '\0';
	if (cmd->argc == 2) {
		sasl_plain_response(s, cmd->argv[1], strlen(cmd->argv[1]));
		return;
	}
	s->sasl_waiting = true;
	conn_set_line_max(s->conn, s->daemon->set->auth_response_max);
	reply(s, "+ ");
}

/* A line read while an AUTH exchange waits for the client's response. */
static void sasl_line(struct pop3_session *s, char *line, size_t len)
{
	sasl_end(s);
	if (len == 1 && line[0] == '*') {
		bad_command(s, "-ERR [AUTH] Authentication cancelled");
		return;
	}
	sasl_plain_response(s, line, len);
}

static void cmd_apop(struct pop3_session *s, const struct pop3_command *cmd)
{
	bad_command(s, "-ERR APOP not supported");
}

static void cmd_stat(struct pop3_session *s, const struct pop3_command *cmd)
{
	unsigned int n = 0;
	uint64_t size = 0;
	for (unsigned int i = 0; i < s->md->count; i++) {
		if (!s->deleted[i]) {
			n++;
			size += s->md->entries[i].size;
		}
	}
	conn_printf(s->conn, "+OK %u %llu\r\n", n, (unsigned long long)size);
}

static void list_or_uidl(struct pop3_session *s, const struct pop3_command *cmd, bool uidl)
{
	if (cmd->argc > 1) {
		bad_command(s, "-ERR Too many arguments");
		return;
	}
	if (cmd->argc == 1) {
		unsigned int i;
		if (!get_msg(s, cmd->argv[0], &i))
			return;
		if (uidl)
			conn_printf(s->conn, "+OK %u %s\r\n", i + 1, s->md->entries[i].uidl);
		else
			conn_printf(s->conn, "+OK %u %llu\r\n", i + 1,
				    (unsigned long long)s->md->entries[i].size);
		return;
	}
	struct buf out;
	buf_init(&out, 0);
	buf_append_str(&out, "+OK\r\n");
	for (unsigned int i = 0; i < s->md->count; i++) {
		if (s->deleted[i])
			continue;
		if (uidl)
			buf_printf(&out, "%u %s\r\n", i + 1, s->md->entries[i].uidl);
		else
			buf_printf(&out, "%u %llu\r\n", i + 1,
				   (unsigned long long)s->md->entries[i].size);
	}
	buf_append_str(&out, ".\r\n");
	conn_write_buf(s->conn, &out);
	buf_deinit(&out);
}

static void cmd_list(struct pop3_session *s, const struct pop3_command *cmd)
{
	list_or_uidl(s, cmd, false);
}

static void cmd_uidl(struct pop3_session *s, const struct pop3_command *cmd)
{
	list_or_uidl(s, cmd, true);
}

static void cmd_retr(struct pop3_session *s, const struct pop3_command *cmd)
{
	unsigned int i;
	if (cmd->argc != 1) {
		bad_command(s, "-ERR Usage: RETR msg");
		return;
	}
	if (!get_msg(s, cmd->argv[0], &i))
		return;
	s->job_msg = i;
	s->job_lines = -1;
	run_job(s, JOB_READ);
}

static void cmd_top(struct pop3_session *s, const struct pop3_command *cmd)
{
	unsigned int i;
	long lines;
	if (cmd->argc != 2) {
		bad_command(s, "-ERR Usage: TOP msg lines");
		return;
	}
	if (pop3_parse_linecount(cmd->argv[1], &lines) < 0) {
		bad_command(s, "-ERR Invalid line count");
		return;
	}
	if (!get_msg(s, cmd->argv[0], &i))
		return;
	s->job_msg = i;
	s->job_lines = lines;
	run_job(s, JOB_READ);
}

static void cmd_dele(struct pop3_session *s, const struct pop3_command *cmd)
{
	unsigned int i;
	if (cmd->argc != 1) {
		bad_command(s, "-ERR Usage: DELE msg");
		return;
	}
	if (!get_msg(s, cmd->argv[0], &i))
		return;
	s->deleted[i] = true;
	conn_printf(s->conn, "+OK Message %u deleted\r\n", i + 1);
}

static void cmd_rset(struct pop3_session *s, const struct pop3_command *cmd)
{
	memset(s->deleted, 0, s->md->count * sizeof(bool));
	conn_printf(s->conn, "+OK %u messages\r\n", s->md->count);
}

struct pop3_command_def {
	enum pop3_verb verb;
	unsigned int states;
	void (*handler)(struct pop3_session *s, const struct pop3_command *cmd);
};

#define AUTHZ POP3_STATE_AUTHORIZATION
#define TRANS POP3_STATE_TRANSACTION
static const struct pop3_command_def commands[] = {
	{ POP3_VERB_CAPA, AUTHZ | TRANS, cmd_capa },
	{ POP3_VERB_NOOP, TRANS, cmd_noop },
	{ POP3_VERB_QUIT, AUTHZ | TRANS, cmd_quit },
	{ POP3_VERB_STLS, AUTHZ | TRANS, cmd_stls },
	{ POP3_VERB_USER, AUTHZ, cmd_user },
	{ POP3_VERB_PASS, AUTHZ, cmd_pass },
	{ POP3_VERB_AUTH, AUTHZ, cmd_auth },
	{ POP3_VERB_APOP, AUTHZ, cmd_apop },
	{ POP3_VERB_STAT, TRANS, cmd_stat },
	{ POP3_VERB_LIST, TRANS, cmd_list },
	{ POP3_VERB_UIDL, TRANS, cmd_uidl },
	{ POP3_VERB_RETR, TRANS, cmd_retr },
	{ POP3_VERB_TOP, TRANS, cmd_top },
	{ POP3_VERB_DELE, TRANS, cmd_dele },
	{ POP3_VERB_RSET, TRANS, cmd_rset },
};

static void on_line(void *ctx, char *line, size_t len, bool bare_lf)
{
	struct pop3_session *s = ctx;
	struct pop3_command cmd;
	const char *error;

	if (s->sasl_waiting) {
		sasl_line(s, line, len);
		explicit_bzero(line, len);
		return;
	}
	if (pop3_parse_command(line, len, &cmd, &error) < 0) {
		char msg[128];
		snprintf(msg, sizeof(msg), "-ERR %s", error);
		bad_command(s, msg);
		return;
	}
	for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++) {
		if (commands[i].verb != cmd.verb)
			continue;
		if ((commands[i].states & s->state) == 0) {
			bad_command(s, s->state == POP3_STATE_AUTHORIZATION
					       ? "-ERR Not logged in"
					       : "-ERR Command not valid in this state");
			return;
		}
		commands[i].handler(s, &cmd);
		if (cmd.verb == POP3_VERB_PASS || cmd.verb == POP3_VERB_AUTH)
			explicit_bzero(line, len);
		return;
	}
	bad_command(s, "-ERR Unknown command");
}

static void on_line_too_long(void *ctx)
{
	struct pop3_session *s = ctx;
	if (s->sasl_waiting) {
		sasl_end(s);
		bad_command(s, "-ERR [AUTH] Authentication response too long");
		return;
	}
	bad_command(s, "-ERR Line too long");
}

static void on_timeout(void *ctx, enum conn_timeout kind)
{
	struct pop3_session *s = ctx;
	switch (kind) {
	case CONN_TIMEOUT_IDLE:
		reply(s, "-ERR Autologout; idle for too long");
		break;
	case CONN_TIMEOUT_COMMAND:
		reply(s, "-ERR Command not received in time, closing connection");
		break;
	case CONN_TIMEOUT_SESSION:
		reply(s, "-ERR Not logged in in time, closing connection");
		break;
	}
	log_info("pop3 #%llu: %s timeout", (unsigned long long)s->id,
		 kind == CONN_TIMEOUT_IDLE ? "idle" : kind == CONN_TIMEOUT_COMMAND ? "command" : "login");
}

static void on_closed(void *ctx, enum conn_close_reason reason)
{
	struct pop3_session *s = ctx;
	s->dead = true;
	if (!s->job_running)
		pop3_session_free(s);
}

static const struct conn_callbacks pop3_conn_callbacks = {
	.line = on_line,
	.line_too_long = on_line_too_long,
	.timeout = on_timeout,
	.closed = on_closed,
};

/* --- jobs --- */

static void job_work(struct worker_job *job)
{
	struct pop3_session *s = (struct pop3_session *)((char *)job -
		offsetof(struct pop3_session, job));
	struct store *store = s->daemon->store;

	switch (s->job_kind) {
	case JOB_LOGIN: {
		struct buf hash;
		buf_init(&hash, 1024);
		enum store_status st = store_user_get(store, s->user, &hash);
		s->job_auth_ok = st == STORE_OK &&
				 auth_cache_verify(s->daemon->auth_cache, s->job_secret.data,
						   s->job_secret.len, hash.data);
		buf_wipe(&s->job_secret);
		buf_deinit(&hash);
		if (st == STORE_NOTFOUND)
			st = STORE_OK; /* an unknown user is a failed login */
		if (st == STORE_OK && s->job_auth_ok)
			st = store_maildrop_open(store, s->user, &s->md);
		s->job_status = st;
		break;
	}
	case JOB_READ: {
		/* A piece as stored, then its POP3 form; the cursor keeps its
		 * place between pieces and is closed here, on the worker, once
		 * the message (or TOP's lines) is out or reading failed. */
		bool eof = false;
		buf_reset(&s->job_out);
		s->job_status = STORE_OK;
		if (s->cursor == NULL) {
			s->job_status = store_cursor_open(s->md, s->job_msg, &s->cursor);
			mail_pop3_encoder_init(&s->enc, s->job_lines);
		}
		if (s->job_status == STORE_OK)
			s->job_status = store_cursor_next(s->cursor, POP3_READ_PIECE, &s->job_raw, &eof);
		if (s->job_status == STORE_OK) {
			mail_pop3_encoder_feed(&s->enc, s->job_raw.data, s->job_raw.len, &s->job_out);
			s->reader_done = eof || s->enc.finished;
			if (s->reader_done)
				mail_pop3_encoder_finish(&s->enc, &s->job_out);
		}
		buf_reset(&s->job_raw);
		if (s->job_status != STORE_OK || s->reader_done) {
			store_cursor_close(&s->cursor);
			buf_deinit(&s->job_raw); /* a piece's room is not kept between commands */
			buf_init(&s->job_raw, 0);
		}
		break;
	}
	case JOB_EXPUNGE:
		s->job_status = store_maildrop_expunge(s->md, s->job_indexes, s->job_index_count);
		break;
	}
}

/* The failure delay is over: answer the failed login, read on. */
static void delay_done(evutil_socket_t fd, short what, void *arg)
{
	struct pop3_session *s = arg;
	bad_command(s, "-ERR [AUTH] Invalid user name or password");
	conn_resume(s->conn);
}

/* The output has drained: read the next piece of the message. */
static void read_more(void *ctx)
{
	struct pop3_session *s = ctx;
	run_job(s, JOB_READ);
}

/* A piece of a RETR/TOP has been read. The status line goes out with the
 * first piece; later pieces are read only once the client has taken most
 * of the previous one, so a 25 MiB message never sits in memory whole.
 * Returns true when the command is finished. */
static bool read_piece_done(struct pop3_session *s, enum store_status st)
{
	bool first = s->reader_started == false;
	if (st != STORE_OK) {
		s->reader_started = false;
		if (first) {
			pop3_store_error(s, st);
			return true;
		}
		/* The status line is out: a multi-line reply cannot turn into an
		 * error any more, so the only honest end is to close. */
		log_error("pop3 #%llu: message %u became unreadable while being sent (%s); closing",
			  (unsigned long long)s->id, s->job_msg + 1, store_status_name(st));
		conn_close(s->conn);
		return true;
	}
	if (first) {
		s->reader_started = true;
		if (s->job_lines < 0)
			conn_printf(s->conn, "+OK %llu octets\r\n",
				    (unsigned long long)s->md->entries[s->job_msg].size);
		else
			reply(s, "+OK");
	}
	conn_write_buf(s->conn, &s->job_out);
	if (!s->reader_done) {
		conn_when_drained(s->conn, POP3_READ_LOW_WATER, read_more);
		return false;
	}
	s->reader_started = false;
	return true;
}

static void job_done(struct worker_job *job)
{
	struct pop3_session *s = (struct pop3_session *)((char *)job -
		offsetof(struct pop3_session, job));
	s->job_running = false;
	if (s->dead) {
		pop3_session_free(s);
		return;
	}
	enum store_status st = s->job_status;
	switch (s->job_kind) {
	case JOB_LOGIN:
		if (st != STORE_OK) {
			log_warn("pop3 #%llu: login for %s failed: %s", (unsigned long long)s->id,
				 s->user, store_status_name(st));
			pop3_store_error(s, st);
		} else if (!s->job_auth_ok) {
			unsigned int delay = daemon_auth_failed(s->daemon, s->conn);
			log_info("pop3 #%llu: authentication failed for %s from %s (password ********; answered after %u ms)",
				 (unsigned long long)s->id, s->user, conn_peer_ip(s->conn), delay);
			s->user[0] = '\0';
			/* Stay paused: nothing is read until the answer. */
			struct timeval tv = { delay / 1000, (suseconds_t)(delay % 1000) * 1000 };
			evtimer_add(s->delay_timer, &tv);
			return;
		} else {
			daemon_auth_succeeded(s->daemon, s->conn);
			s->deleted = xcalloc(s->md->count ? s->md->count : 1, sizeof(bool));
			set_state(s, POP3_STATE_TRANSACTION);
			log_info("pop3 #%llu: %s logged in, %u messages", (unsigned long long)s->id,
				 s->user, s->md->count);
			conn_printf(s->conn, "+OK Logged in, %u messages (%llu octets)\r\n",
				    s->md->count, (unsigned long long)s->md->total_size);
		}
		break;
	case JOB_READ:
		if (!read_piece_done(s, st))
			return; /* more to stream; input stays paused */
		break;
	case JOB_EXPUNGE:
		free(s->job_indexes);
		s->job_indexes = NULL;
		if (st != STORE_OK) {
			/* RFC 1939: -ERR in UPDATE when some deletion failed. */
			log_error("pop3 #%llu: expunge for %s failed: %s", (unsigned long long)s->id,
				  s->user, store_status_name(st));
			reply(s, "-ERR [SYS/TEMP] Some messages could not be deleted");
		} else {
			log_info("pop3 #%llu: %s deleted %u messages", (unsigned long long)s->id,
				 s->user, s->job_index_count);
			reply(s, "+OK Bye");
		}
		conn_close(s->conn);
		break;
	}
	conn_resume(s->conn);
}

static void run_job(struct pop3_session *s, enum pop3_job_kind kind)
{
	s->job_kind = kind;
	s->job_running = true;
	s->job.work = job_work;
	s->job.done = job_done;
	conn_pause(s->conn);
	worker_pool_submit(s->daemon->pool, &s->job);
}

/* --- lifetime --- */

static void pop3_session_free(struct pop3_session *s)
{
	daemon_session_unregister(s->daemon, &s->ds);
	if (s->delay_timer != NULL)
		event_free(s->delay_timer);
	conn_free(&s->conn);
	store_cursor_close(&s->cursor);
	store_maildrop_free(&s->md);
	free(s->deleted);
	free(s->job_indexes);
	buf_wipe(&s->job_secret);
	buf_deinit(&s->job_secret);
	buf_deinit(&s->job_out);
	buf_deinit(&s->job_raw);
	free(s);
}

static void pop3_session_destroy(struct daemon_session *ds)
{
	pop3_session_free((struct pop3_session *)ds);
}

void pop3_session_create(struct daemon *d, int fd, const struct sockaddr *peer,
			 socklen_t peer_len, bool implicit_tls, enum daemon_admit admit)
{
	const struct tern_settings *set = d->set;
	struct pop3_session *s = xcalloc(1, sizeof(*s));
	s->daemon = d;
	s->id = ++d->next_session_id;
	s->ds.destroy = pop3_session_destroy;
	buf_init(&s->job_secret, set->auth_response_max);
	buf_init(&s->job_out, 0);
	buf_init(&s->job_raw, 0);
	s->conn = conn_create(d->base, fd, peer, peer_len, implicit_tls ? d->tls : NULL,
			      &pop3_conn_callbacks, s);
	s->delay_timer = evtimer_new(d->base, delay_done, s);
	s->ds.peer = *conn_peer_addr(s->conn);
	s->ds.refused = admit != DAEMON_ADMIT_OK;
	daemon_session_register(d, &s->ds);
	s->state = POP3_STATE_AUTHORIZATION;
	conn_set_line_max(s->conn, set->line_max_preauth);
	conn_set_input_max(s->conn, set->input_buffer_preauth);
	conn_set_idle_timeout(s->conn, set->idle_timeout_preauth_ms);
	conn_set_command_timeout(s->conn, set->command_timeout_ms, (unsigned int)set->min_data_rate);
	if (admit != DAEMON_ADMIT_OK) {
		log_info("pop3 #%llu: connect from %s refused: too many connections%s",
			 (unsigned long long)s->id, conn_peer_ip(s->conn),
			 admit == DAEMON_ADMIT_TOO_MANY_FROM_IP ? " from this address" : "");
		reply(s, admit == DAEMON_ADMIT_TOO_MANY_FROM_IP
				 ? "-ERR [SYS/TEMP] Too many connections from your address, try again later"
				 : "-ERR [SYS/TEMP] Too many connections, try again later");
		conn_close(s->conn);
		return;
	}
	conn_set_session_deadline(s->conn, set->login_timeout_ms);
	log_info("pop3 #%llu: connect from %s%s", (unsigned long long)s->id,
		 conn_peer_ip(s->conn), implicit_tls ? " (TLS)" : "");
	reply(s, "+OK tern POP3 server ready");
}
