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
 * - The password never reaches a log line and is wiped after use.
 */
#include "pop3-session.h"

#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "conn.h"
#include "daemon.h"
#include "log.h"
#include "mail-address.h"
#include "password.h"
#include "pop3-parser.h"
#include "store.h"
#include "worker-pool.h"

#define POP3_LINE_MAX_PREAUTH 512
#define POP3_LINE_MAX 1024
#define POP3_TIMEOUT_PREAUTH 60
#define POP3_TIMEOUT 600          /* RFC 1939 3: at least 10 minutes */
#define POP3_BAD_COMMANDS_MAX 10

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

	/* The one job slot. */
	struct worker_job job;
	enum pop3_job_kind job_kind;
	enum store_status job_status;
	struct buf job_secret;    /* password for JOB_LOGIN, wiped after use */
	bool job_auth_ok;
	unsigned int job_msg;
	long job_lines;
	struct buf job_out;
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
	switch (s->daemon->set->plaintext) {
	case PLAINTEXT_ALWAYS:
		return true;
	case PLAINTEXT_TLS:
		return conn_is_tls(s->conn);
	case PLAINTEXT_TLS_OR_LOOPBACK:
		break;
	}
	return conn_is_tls(s->conn) || conn_peer_is_loopback(s->conn);
}

static void set_state(struct pop3_session *s, enum pop3_state state)
{
	s->state = state;
	if (state == POP3_STATE_TRANSACTION) {
		conn_set_line_max(s->conn, POP3_LINE_MAX);
		conn_set_idle_timeout(s->conn, POP3_TIMEOUT);
	}
}

static void bad_command(struct pop3_session *s, const char *text)
{
	reply(s, text);
	if (++s->bad_commands >= POP3_BAD_COMMANDS_MAX) {
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
		if (plaintext_allowed(s))
			conn_puts(s->conn, "USER\r\n");
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

static void cmd_user(struct pop3_session *s, const struct pop3_command *cmd)
{
	if (!plaintext_allowed(s)) {
		bad_command(s, "-ERR [AUTH] Plaintext authentication disallowed on non-secure connections (use STLS)");
		return;
	}
	struct mail_address addr;
	const char *error;
	if (cmd->argc != 1 || mail_address_parse(cmd->argv[0], strlen(cmd->argv[0]), &addr,
						  &error) < 0) {
		bad_command(s, "-ERR [AUTH] Invalid user name (expected user@domain)");
		return;
	}
	mail_address_format(&addr, s->user, sizeof(s->user));
	reply(s, "+OK Send PASS");
}

static void cmd_pass(struct pop3_session *s, const struct pop3_command *cmd)
{
	if (s->user[0] == '\0') {
		bad_command(s, "-ERR USER first");
		return;
	}
	if (!plaintext_allowed(s)) {
		bad_command(s, "-ERR [AUTH] Plaintext authentication disallowed on non-secure connections (use STLS)");
		return;
	}
	buf_reset(&s->job_secret);
	buf_append_str(&s->job_secret, cmd->rest);
	run_job(s, JOB_LOGIN);
}

static void cmd_auth(struct pop3_session *s, const struct pop3_command *cmd)
{
	if (cmd->argc == 0) {
		/* RFC 5034 lists no mechanism here: none is offered yet. */
		conn_puts(s->conn, "+OK\r\n.\r\n");
		return;
	}
	bad_command(s, "-ERR Unsupported authentication mechanism");
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
	{ POP3_VERB_STLS, AUTHZ, cmd_stls },
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
		return;
	}
	bad_command(s, "-ERR Unknown command");
}

static void on_line_too_long(void *ctx)
{
	bad_command(ctx, "-ERR Line too long");
}

static void on_timeout(void *ctx)
{
	struct pop3_session *s = ctx;
	reply(s, "-ERR Autologout; idle for too long");
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
				 password_verify(s->job_secret.data, s->job_secret.len, hash.data);
		buf_wipe(&s->job_secret);
		buf_deinit(&hash);
		if (st == STORE_NOTFOUND)
			st = STORE_OK; /* an unknown user is a failed login */
		if (st == STORE_OK && s->job_auth_ok)
			st = store_maildrop_open(store, s->user, &s->md);
		s->job_status = st;
		break;
	}
	case JOB_READ:
		buf_reset(&s->job_out);
		s->job_status = store_message_read_pop3(s->md, s->job_msg, s->job_lines,
							&s->job_out);
		break;
	case JOB_EXPUNGE:
		s->job_status = store_maildrop_expunge(s->md, s->job_indexes, s->job_index_count);
		break;
	}
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
			log_info("pop3 #%llu: authentication failed for %s from %s",
				 (unsigned long long)s->id, s->user, conn_peer_ip(s->conn));
			s->user[0] = '\0';
			bad_command(s, "-ERR [AUTH] Invalid user name or password");
		} else {
			s->deleted = xcalloc(s->md->count ? s->md->count : 1, sizeof(bool));
			set_state(s, POP3_STATE_TRANSACTION);
			log_info("pop3 #%llu: %s logged in, %u messages", (unsigned long long)s->id,
				 s->user, s->md->count);
			conn_printf(s->conn, "+OK Logged in, %u messages (%llu octets)\r\n",
				    s->md->count, (unsigned long long)s->md->total_size);
		}
		break;
	case JOB_READ:
		if (st != STORE_OK) {
			pop3_store_error(s, st);
			break;
		}
		if (s->job_lines < 0)
			conn_printf(s->conn, "+OK %llu octets\r\n",
				    (unsigned long long)s->md->entries[s->job_msg].size);
		else
			reply(s, "+OK");
		conn_write_buf(s->conn, &s->job_out);
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
	conn_free(&s->conn);
	store_maildrop_free(&s->md);
	free(s->deleted);
	free(s->job_indexes);
	buf_wipe(&s->job_secret);
	buf_deinit(&s->job_secret);
	buf_deinit(&s->job_out);
	free(s);
}

static void pop3_session_destroy(struct daemon_session *ds)
{
	pop3_session_free((struct pop3_session *)ds);
}

void pop3_session_create(struct daemon *d, int fd, const struct sockaddr *peer,
			 socklen_t peer_len, bool implicit_tls)
{
	struct pop3_session *s = xcalloc(1, sizeof(*s));
	s->daemon = d;
	s->id = ++d->next_session_id;
	s->ds.destroy = pop3_session_destroy;
	buf_init(&s->job_secret, POP3_LINE_MAX);
	buf_init(&s->job_out, 0);
	s->conn = conn_create(d->base, fd, peer, peer_len, implicit_tls ? d->tls : NULL,
			      &pop3_conn_callbacks, s);
	daemon_session_register(d, &s->ds);
	s->state = POP3_STATE_AUTHORIZATION;
	conn_set_line_max(s->conn, POP3_LINE_MAX_PREAUTH);
	conn_set_idle_timeout(s->conn, POP3_TIMEOUT_PREAUTH);
	log_info("pop3 #%llu: connect from %s%s", (unsigned long long)s->id,
		 conn_peer_ip(s->conn), implicit_tls ? " (TLS)" : "");
	reply(s, "+OK tern POP3 server ready");
}
