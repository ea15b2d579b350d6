/*
 * smtp-session: the SMTP/LMTP receiving state machine over a conn.
 *
 * Invariants:
 * - 250 after DATA only once the store has committed the message for that
 *   recipient; any storage failure is 451 4.3.0, never 2xx or 5xx.
 * - Only recipients in local domains are accepted (550 5.7.1 otherwise),
 *   authenticated or not: tern is never an open relay, and relaying for
 *   authenticated clients is not implemented yet (the reply says so).
 * - AUTH (RFC 4954) PLAIN and LOGIN are offered and accepted only where the
 *   [auth] plaintext policy allows, checked before any password is looked
 *   at (538 5.7.11 otherwise). Secrets are wiped after use, never logged; a
 *   failure is answered after the client address's failure delay.
 * - The end of data is only CRLF "." CRLF (mail-data's decoder), whatever
 *   [smtp] bare_lf says (it governs LMTP too): with normalize (the default)
 *   a bare LF ends a line and is stored as CRLF; with reject the message is
 *   refused with 550 5.6.0 after the data. A bare CR is refused either way.
 * - The message goes through one delivery builder (lib-delivery) from DATA
 *   to the reply: the decoded data is written to it as it arrives (kept in
 *   memory up to 1 MiB, then spooled to an unnamed file; the loop writes to
 *   the page cache, never fsyncs), the store call runs on a worker, and the
 *   builder is destroyed with the transaction, on every path.
 * - One store job at a time, input paused meanwhile: replies stay in order
 *   under PIPELINING.
 * - Every store error maps to a reply in smtp_store_error() only.
 */
#include "smtp-session.h"

#include <event2/buffer.h>
#include <event2/event.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "auth-cache.h"
#include "buf.h"
#include "conn.h"
#include "daemon.h"
#include "delivery.h"
#include "log.h"
#include "mail-address.h"
#include "mail-data.h"
#include "mail-trace.h"
#include "password.h"
#include "sasl.h"
#include "smtp-parser.h"
#include "store.h"
#include "worker-pool.h"

#define SMTP_DATA_LINE_MAX 65536    /* longest text line accepted in DATA */
#define SMTP_DATA_FEED_MAX 65536    /* raw octets decoded per step */

enum smtp_state {
	SMTP_STATE_INIT = 1 << 0,   /* before HELO/EHLO/LHLO */
	SMTP_STATE_READY = 1 << 1,  /* after HELO, no transaction */
	SMTP_STATE_MAIL = 1 << 2,   /* after MAIL FROM */
	SMTP_STATE_RCPT = 1 << 3,   /* at least one RCPT accepted */
	SMTP_STATE_DATA = 1 << 4,   /* reading message data */
};

enum smtp_job_kind { JOB_RCPT, JOB_DELIVER, JOB_AUTH };

/* Where an AUTH exchange is waiting for the client. */
enum smtp_sasl_step {
	SASL_NONE,
	SASL_PLAIN_RESPONSE,   /* "334 " sent */
	SASL_LOGIN_USER,       /* "334 VXNlcm5hbWU6" (Username:) sent */
	SASL_LOGIN_PASSWORD,   /* "334 UGFzc3dvcmQ6" (Password:) sent */
};

struct smtp_rcpt {
	char address[MAIL_ADDRESS_MAX + 1];
	int same_as;   /* index of the first identical recipient, or -1 */
};

struct smtp_session {
	struct daemon_session ds;
	struct daemon *daemon;
	struct conn *conn;
	enum smtp_protocol proto;
	uint64_t id;
	enum smtp_state state;
	unsigned int bad_commands;
	bool esmtp;
	char helo[256];
	bool dead, job_running;
	/* AUTH */
	enum smtp_sasl_step sasl_step;
	char auth_user[MAIL_ADDRESS_MAX + 1]; /* set once authenticated */
	bool authenticated;
	struct event *delay_timer;           /* holds a failed AUTH's reply */

	/* transaction */
	char mail_from[MAIL_ADDRESS_MAX + 1];
	bool mail_from_null;
	struct smtp_rcpt *rcpts;
	unsigned int rcpt_count;
	struct mail_data_decoder decoder;
	struct buf data;                     /* decoded octets on their way to the delivery:
	                                        at most 2 x SMTP_DATA_FEED_MAX at a time */
	struct delivery *delivery;           /* from DATA to the reply */

	/* the one job slot */
	struct worker_job job;
	enum smtp_job_kind job_kind;
	struct mail_address job_addr;
	char job_rcpt[MAIL_ADDRESS_MAX + 1];
	enum store_status job_status;
	bool job_domain_local;
	bool job_postmaster;
	char job_user[MAIL_ADDRESS_MAX + 1];  /* JOB_AUTH */
	struct buf job_secret;                /* JOB_AUTH password, wiped after use */
	bool job_auth_ok;
};

static void smtp_session_free(struct smtp_session *s);

static const char *proto_name(const struct smtp_session *s)
{
	return s->proto == SMTP_PROTOCOL_LMTP ? "lmtp" : "smtp";
}

static void reply(struct smtp_session *s, const char *text)
{
	conn_puts(s->conn, text);
	conn_puts(s->conn, "\r\n");
}

/* The one place a store error becomes an SMTP reply. */
static void smtp_store_error(struct smtp_session *s, enum store_status st, const char *who)
{
	switch (st) {
	case STORE_NOTFOUND:
		conn_printf(s->conn, "550 5.1.1 <%s>: User unknown\r\n", who);
		break;
	case STORE_TOOBIG:
		reply(s, "552 5.3.4 Message too big");
		break;
	default:
		/* 451 for everything else: a storage failure is never 5xx. */
		reply(s, "451 4.3.0 Temporary storage failure, try again later");
		break;
	}
}

static void bad_command(struct smtp_session *s, const char *text)
{
	reply(s, text);
	if (++s->bad_commands >= s->daemon->set->max_bad_commands) {
		reply(s, "421 4.7.0 Too many errors, closing connection");
		log_info("%s #%llu: too many bad commands", proto_name(s),
			 (unsigned long long)s->id);
		conn_close(s->conn);
	}
}

static void reset_transaction(struct smtp_session *s)
{
	s->mail_from[0] = '\0';
	s->mail_from_null = false;
	free(s->rcpts);
	s->rcpts = NULL;
	s->rcpt_count = 0;
	buf_deinit(&s->data);
	buf_init(&s->data, 0);
	delivery_destroy(&s->delivery);
	if (s->state & (SMTP_STATE_MAIL | SMTP_STATE_RCPT | SMTP_STATE_DATA))
		s->state = SMTP_STATE_READY;
}

static void run_job(struct smtp_session *s, enum smtp_job_kind kind);

/* --- commands --- */

static bool starttls_offered(struct smtp_session *s)
{
	return s->daemon->tls != NULL &&
	       (s->proto == SMTP_PROTOCOL_SMTP || s->daemon->set->lmtp_starttls);
}

/* AUTH PLAIN and LOGIN send the password in clear: offered only where the
 * plaintext policy allows them. */
static bool auth_offered(struct smtp_session *s)
{
	return s->proto == SMTP_PROTOCOL_SMTP && daemon_plaintext_allowed(s->daemon, s->conn);
}

static void send_ehlo(struct smtp_session *s)
{
	const struct tern_settings *set = s->daemon->set;
	conn_printf(s->conn, "250-%s\r\n", set->hostname);
	conn_puts(s->conn, "250-PIPELINING\r\n");
	conn_printf(s->conn, "250-SIZE %llu\r\n", (unsigned long long)set->max_message_size);
	if (starttls_offered(s) && !conn_is_tls(s->conn))
		conn_puts(s->conn, "250-STARTTLS\r\n");
	if (auth_offered(s) && !s->authenticated)
		conn_puts(s->conn, "250-AUTH PLAIN LOGIN\r\n");
	conn_puts(s->conn, "250-8BITMIME\r\n250 ENHANCEDSTATUSCODES\r\n");
}

static void set_helo(struct smtp_session *s, const char *arg)
{
	str_escape_for_log(s->helo, sizeof(s->helo), arg, strlen(arg), 200);
}

static void cmd_helo(struct smtp_session *s, struct smtp_command *cmd)
{
	if (s->proto == SMTP_PROTOCOL_LMTP) {
		bad_command(s, "500 5.5.1 Use LHLO in LMTP");
		return;
	}
	if (*cmd->args == '\0') {
		bad_command(s, "501 5.5.4 Syntax: HELO hostname");
		return;
	}
	reset_transaction(s);
	set_helo(s, cmd->args);
	s->esmtp = false;
	s->state = SMTP_STATE_READY;
	conn_printf(s->conn, "250 %s\r\n", s->daemon->set->hostname);
}

static void cmd_ehlo(struct smtp_session *s, struct smtp_command *cmd)
{
	bool lhlo = cmd->verb == SMTP_VERB_LHLO;
	if (lhlo != (s->proto == SMTP_PROTOCOL_LMTP)) {
		bad_command(s, lhlo ? "500 5.5.1 LHLO is for LMTP; use EHLO"
				    : "500 5.5.1 Use LHLO in LMTP");
		return;
	}
	if (*cmd->args == '\0') {
		bad_command(s, "501 5.5.4 Syntax: EHLO hostname");
		return;
	}
	reset_transaction(s);
	set_helo(s, cmd->args);
	s->esmtp = true;
	s->state = SMTP_STATE_READY;
	send_ehlo(s);
}

static void cmd_mail(struct smtp_session *s, struct smtp_command *cmd)
{
	if (s->state == SMTP_STATE_INIT) {
		bad_command(s, "503 5.5.1 Send HELO/EHLO first");
		return;
	}
	if (s->state != SMTP_STATE_READY) {
		bad_command(s, "503 5.5.1 Nested MAIL command");
		return;
	}
	struct smtp_path_args pa;
	const char *error;
	if (smtp_parse_mail_args(cmd->args, &pa, &error) < 0) {
		char msg[200];
		snprintf(msg, sizeof(msg), "501 5.5.4 %s", error);
		bad_command(s, msg);
		return;
	}
	for (unsigned int i = 0; i < pa.param_count; i++) {
		const struct smtp_param *p = &pa.params[i];
		if (strcmp(p->keyword, "SIZE") == 0) {
			unsigned long long size;
			if (p->value == NULL || smtp_parse_size(p->value, &size) < 0) {
				bad_command(s, "501 5.5.4 Invalid SIZE parameter");
				return;
			}
			if (size > s->daemon->set->max_message_size) {
				conn_printf(s->conn, "552 5.3.4 Message size exceeds fixed limit of %llu octets\r\n",
					    (unsigned long long)s->daemon->set->max_message_size);
				return;
			}
		} else if (strcmp(p->keyword, "BODY") == 0) {
			if (p->value == NULL || (strcasecmp(p->value, "7BIT") != 0 &&
						 strcasecmp(p->value, "8BITMIME") != 0)) {
				bad_command(s, "501 5.5.4 Unsupported BODY type");
				return;
			}
		} else {
			bad_command(s, "555 5.5.4 Unsupported MAIL parameter");
			return;
		}
	}
	if (!s->esmtp && pa.param_count > 0) {
		bad_command(s, "555 5.5.4 MAIL parameters need EHLO");
		return;
	}
	mail_address_format(&pa.addr, s->mail_from, sizeof(s->mail_from));
	s->mail_from_null = pa.addr.null_path;
	s->state = SMTP_STATE_MAIL;
	reply(s, "250 2.1.0 Ok");
}

static void cmd_rcpt(struct smtp_session *s, struct smtp_command *cmd)
{
	if (!(s->state & (SMTP_STATE_MAIL | SMTP_STATE_RCPT))) {
		bad_command(s, "503 5.5.1 Need MAIL before RCPT");
		return;
	}
	struct smtp_path_args pa;
	const char *error;
	if (smtp_parse_rcpt_args(cmd->args, &pa, &error) < 0) {
		char msg[200];
		snprintf(msg, sizeof(msg), "501 5.5.4 %s", error);
		bad_command(s, msg);
		return;
	}
	if (pa.param_count > 0) {
		bad_command(s, "555 5.5.4 Unsupported RCPT parameter");
		return;
	}
	if (s->rcpt_count >= s->daemon->set->max_recipients) {
		reply(s, "452 4.5.3 Too many recipients");
		return;
	}
	if (pa.addr.domain[0] == '\0') {
		/* <Postmaster> without a domain (RFC 5321 4.5.1): this host's. */
		str_copy(pa.addr.domain, s->daemon->set->hostname, sizeof(pa.addr.domain));
		str_lower(pa.addr.domain);
		s->job_postmaster = true;
	} else {
		s->job_postmaster = false;
	}
	s->job_addr = pa.addr;
	mail_address_format(&pa.addr, s->job_rcpt, sizeof(s->job_rcpt));
	run_job(s, JOB_RCPT);
}

static void cmd_data(struct smtp_session *s, struct smtp_command *cmd)
{
	if (*cmd->args != '\0') {
		bad_command(s, "501 5.5.4 DATA takes no arguments");
		return;
	}
	if (s->state != SMTP_STATE_RCPT) {
		/* RFC 2033 4.2 requires 503 here for LMTP; SMTP may use it too. */
		bad_command(s, s->state == SMTP_STATE_MAIL ? "503 5.5.1 No valid recipients"
							   : "503 5.5.1 Need RCPT before DATA");
		return;
	}
	const struct tern_settings *set = s->daemon->set;
	struct delivery_settings dset = { .data_dir = set->data_dir,
					  .max_message_size = set->max_message_size };
	delivery_destroy(&s->delivery);
	s->delivery = delivery_create(&dset, s->mail_from);
	for (unsigned int i = 0; i < s->rcpt_count; i++)
		delivery_add_rcpt(s->delivery, s->rcpts[i].address);
	buf_reset(&s->data);
	mail_data_decoder_init(&s->decoder);
	s->decoder.normalize_lf = set->bare_lf == BARE_LF_NORMALIZE;
	s->state = SMTP_STATE_DATA;
	reply(s, "354 End data with <CR><LF>.<CR><LF>");
	conn_set_raw(s->conn, true);
}

static void cmd_rset(struct smtp_session *s, struct smtp_command *cmd)
{
	reset_transaction(s);
	reply(s, "250 2.0.0 Ok");
}

static void cmd_noop(struct smtp_session *s, struct smtp_command *cmd)
{
	reply(s, "250 2.0.0 Ok");
}

static void cmd_quit(struct smtp_session *s, struct smtp_command *cmd)
{
	conn_printf(s->conn, "221 2.0.0 %s closing connection\r\n", s->daemon->set->hostname);
	conn_close(s->conn);
}

static void cmd_vrfy(struct smtp_session *s, struct smtp_command *cmd)
{
	reply(s, "252 2.5.0 Cannot VRFY user, but will accept message and attempt delivery");
}

static void cmd_expn(struct smtp_session *s, struct smtp_command *cmd)
{
	reply(s, "502 5.5.1 EXPN not available");
}

static void cmd_help(struct smtp_session *s, struct smtp_command *cmd)
{
	reply(s, "214 2.0.0 See RFC 5321 (SMTP) and RFC 2033 (LMTP)");
}

static void cmd_starttls(struct smtp_session *s, struct smtp_command *cmd)
{
	if (!starttls_offered(s)) {
		bad_command(s, "502 5.5.1 STARTTLS not available");
		return;
	}
	if (conn_is_tls(s->conn)) {
		bad_command(s, "554 5.5.1 TLS already active");
		return;
	}
	if (*cmd->args != '\0') {
		bad_command(s, "501 5.5.4 STARTTLS takes no arguments");
		return;
	}
	reply(s, "220 2.0.0 Ready to start TLS");
	/* RFC 3207 4.2: forget everything learnt before TLS. */
	reset_transaction(s);
	s->state = SMTP_STATE_INIT;
	s->helo[0] = '\0';
	s->authenticated = false;
	s->auth_user[0] = '\0';
	conn_start_tls(s->conn, s->daemon->tls);
}

static void sasl_set_step(struct smtp_session *s, enum smtp_sasl_step step)
{
	const struct tern_settings *set = s->daemon->set;
	s->sasl_step = step;
	conn_set_line_max(s->conn, step == SASL_NONE ? set->line_max : set->auth_response_max);
}

/* Decodes one client response; on failure replies (ending the exchange). */
static bool sasl_decode(struct smtp_session *s, const char *b64, size_t len, struct buf *out)
{
	const char *error;
	if (sasl_decode_response(b64, len, out, &error) < 0) {
		sasl_set_step(s, SASL_NONE);
		bad_command(s, "501 5.5.2 Invalid base64 data in the authentication response");
		return false;
	}
	return true;
}

/* Starts the password check for user with the password in s->job_secret. */
static void sasl_check(struct smtp_session *s, const char *user)
{
	struct mail_address addr;
	const char *error;
	sasl_set_step(s, SASL_NONE);
	if (mail_address_parse(user, strlen(user), &addr, &error) < 0) {
		buf_wipe(&s->job_secret);
		bad_command(s, "535 5.7.8 Authentication credentials invalid (the user name is an address, user@domain)");
		return;
	}
	mail_address_format(&addr, s->job_user, sizeof(s->job_user));
	run_job(s, JOB_AUTH);
}

static void sasl_plain(struct smtp_session *s, const char *b64, size_t len)
{
	struct buf msg;
	const char *error, *user, *passwd;
	size_t passwd_len;
	buf_init(&msg, s->daemon->set->auth_response_max);
	if (!sasl_decode(s, b64, len, &msg)) {
		buf_deinit(&msg);
		return;
	}
	if (sasl_plain_split(&msg, &user, &passwd, &passwd_len, &error) < 0) {
		buf_wipe(&msg);
		buf_deinit(&msg);
		sasl_set_step(s, SASL_NONE);
		char text[160];
		snprintf(text, sizeof(text), "501 5.5.2 %s", error);
		bad_command(s, text);
		return;
	}
	buf_wipe(&s->job_secret);
	buf_append(&s->job_secret, passwd, passwd_len);
	char name[MAIL_ADDRESS_MAX + 1];
	str_copy(name, user, sizeof(name));
	buf_wipe(&msg);
	buf_deinit(&msg);
	sasl_check(s, name);
}

/* RFC 4954: AUTH mechanism [initial-response]. */
static void cmd_auth(struct smtp_session *s, struct smtp_command *cmd)
{
	if (s->proto != SMTP_PROTOCOL_SMTP) {
		bad_command(s, "502 5.5.1 AUTH not available in LMTP");
		return;
	}
	if (s->state == SMTP_STATE_INIT || !s->esmtp) {
		bad_command(s, "503 5.5.1 Send EHLO first");
		return;
	}
	if (s->authenticated) {
		bad_command(s, "503 5.5.1 Already authenticated");
		return;
	}
	if (s->state != SMTP_STATE_READY) {
		bad_command(s, "503 5.5.1 AUTH not allowed during a mail transaction");
		return;
	}
	char *mech = cmd->args;
	char *initial = strchr(mech, ' ');
	if (initial != NULL) {
		*initial++ = '\0';
		while (*initial == ' ')
			initial++;
	}
	enum sasl_mech m = sasl_mech_lookup(mech);
	if (m == SASL_MECH_UNKNOWN) {
		bad_command(s, "504 5.5.4 Unrecognized authentication type (use PLAIN or LOGIN)");
		return;
	}
	if (!daemon_plaintext_allowed(s->daemon, s->conn)) {
		bad_command(s, "538 5.7.11 Encryption required for requested authentication mechanism (use STARTTLS)");
		return;
	}
	if (m == SASL_MECH_PLAIN) {
		if (initial != NULL && *initial != '\0') {
			sasl_plain(s, initial, strlen(initial));
			return;
		}
		sasl_set_step(s, SASL_PLAIN_RESPONSE);
		reply(s, "334 ");
		return;
	}
	/* LOGIN: the user name may come as an initial response. */
	if (initial != NULL && *initial != '\0') {
		struct buf user;
		buf_init(&user, MAIL_ADDRESS_MAX);
		if (!sasl_decode(s, initial, strlen(initial), &user)) {
			buf_deinit(&user);
			return;
		}
		str_copy(s->job_user, user.data, sizeof(s->job_user));
		buf_deinit(&user);
		sasl_set_step(s, SASL_LOGIN_PASSWORD);
		reply(s, "334 UGFzc3dvcmQ6");
		return;
	}
	sasl_set_step(s, SASL_LOGIN_USER);
	reply(s, "334 VXNlcm5hbWU6");
}

/* A line read while an AUTH exchange waits for the client's response. */
static void sasl_line(struct smtp_session *s, char *line, size_t len)
{
	enum smtp_sasl_step step = s->sasl_step;
	if (len == 1 && line[0] == '*') {
		sasl_set_step(s, SASL_NONE);
		bad_command(s, "501 5.7.0 Authentication cancelled");
		return;
	}
	switch (step) {
	case SASL_NONE:
		break;
	case SASL_PLAIN_RESPONSE:
		sasl_plain(s, line, len);
		break;
	case SASL_LOGIN_USER: {
		struct buf user;
		buf_init(&user, MAIL_ADDRESS_MAX);
		if (sasl_decode(s, line, len, &user)) {
			str_copy(s->job_user, user.data, sizeof(s->job_user));
			sasl_set_step(s, SASL_LOGIN_PASSWORD);
			reply(s, "334 UGFzc3dvcmQ6");
		}
		buf_deinit(&user);
		break;
	}
	case SASL_LOGIN_PASSWORD:
		if (!sasl_decode(s, line, len, &s->job_secret))
			break;
		if (s->job_secret.len == 0 || memchr(s->job_secret.data, '\0', s->job_secret.len) != NULL) {
			buf_wipe(&s->job_secret);
			sasl_set_step(s, SASL_NONE);
			bad_command(s, "535 5.7.8 Authentication credentials invalid");
			break;
		}
		char name[MAIL_ADDRESS_MAX + 1];
		str_copy(name, s->job_user, sizeof(name));
		sasl_check(s, name);
		break;
	}
}

static void cmd_bdat(struct smtp_session *s, struct smtp_command *cmd)
{
	bad_command(s, "502 5.5.1 CHUNKING not available");
}

struct smtp_command_def {
	enum smtp_verb verb;
	void (*handler)(struct smtp_session *s, struct smtp_command *cmd);
};

static const struct smtp_command_def commands[] = {
	{ SMTP_VERB_HELO, cmd_helo },
	{ SMTP_VERB_EHLO, cmd_ehlo },
	{ SMTP_VERB_LHLO, cmd_ehlo },
	{ SMTP_VERB_MAIL, cmd_mail },
	{ SMTP_VERB_RCPT, cmd_rcpt },
	{ SMTP_VERB_DATA, cmd_data },
	{ SMTP_VERB_RSET, cmd_rset },
	{ SMTP_VERB_NOOP, cmd_noop },
	{ SMTP_VERB_QUIT, cmd_quit },
	{ SMTP_VERB_VRFY, cmd_vrfy },
	{ SMTP_VERB_EXPN, cmd_expn },
	{ SMTP_VERB_HELP, cmd_help },
	{ SMTP_VERB_STARTTLS, cmd_starttls },
	{ SMTP_VERB_AUTH, cmd_auth },
	{ SMTP_VERB_BDAT, cmd_bdat },
};

static void on_line(void *ctx, char *line, size_t len, bool bare_lf)
{
	struct smtp_session *s = ctx;
	struct smtp_command cmd;
	const char *error;
	if (s->sasl_step != SASL_NONE) {
		sasl_line(s, line, len);
		explicit_bzero(line, len);
		return;
	}
	if (smtp_parse_command(line, len, &cmd, &error) < 0) {
		char msg[160];
		snprintf(msg, sizeof(msg), "500 5.5.2 %s", error);
		bad_command(s, msg);
		return;
	}
	for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++) {
		if (commands[i].verb == cmd.verb) {
			commands[i].handler(s, &cmd);
			if (cmd.verb == SMTP_VERB_AUTH)
				explicit_bzero(line, len);
			return;
		}
	}
	bad_command(s, "500 5.5.2 Command unrecognized");
}

static void on_line_too_long(void *ctx)
{
	struct smtp_session *s = ctx;
	if (s->sasl_step != SASL_NONE) {
		sasl_set_step(s, SASL_NONE);
		bad_command(s, "500 5.5.6 Authentication exchange line is too long");
		return;
	}
	bad_command(ctx, "500 5.5.2 Line too long");
}

/* Refuses the message after DATA: once for SMTP, once per accepted
 * recipient for LMTP (RFC 2033 4.2). */
static void refuse_data(struct smtp_session *s, const char *text)
{
	unsigned int n = s->proto == SMTP_PROTOCOL_LMTP ? s->rcpt_count : 1;
	for (unsigned int i = 0; i < n; i++)
		reply(s, text);
	reset_transaction(s);
}

/* true once the data will be refused whatever follows: a bare CR, a bare
 * LF under bare_lf = reject, an overlong line. */
static bool data_refused(const struct smtp_session *s)
{
	return s->decoder.bare_cr > 0 || (s->decoder.bare_lf > 0 && !s->decoder.normalize_lf) ||
	       s->decoder.max_line_len > SMTP_DATA_LINE_MAX;
}

/* Completes the delivery once the data has ended, or answers the refusal. */
static void data_finished(struct smtp_session *s)
{
	conn_set_raw(s->conn, false);
	const struct tern_settings *set = s->daemon->set;
	char text[160];
	if (delivery_too_big(s->delivery) || s->decoder.size > set->max_message_size) {
		snprintf(text, sizeof(text), "552 5.3.4 Message size exceeds fixed limit of %llu octets",
			 (unsigned long long)set->max_message_size);
		refuse_data(s, text);
		return;
	}
	if (s->decoder.bare_cr > 0) {
		refuse_data(s, "550 5.6.0 Message contains bare CR (a CR not followed by LF); lines must end with CRLF (RFC 5321 2.3.8)");
		return;
	}
	if (s->decoder.bare_lf > 0 && !s->decoder.normalize_lf) {
		refuse_data(s, "550 5.6.0 Message contains bare LF; lines must end with CRLF (RFC 5321 2.3.8)");
		return;
	}
	if (s->decoder.max_line_len > SMTP_DATA_LINE_MAX) {
		snprintf(text, sizeof(text), "552 5.3.4 Message line too long (limit %d octets)",
			 SMTP_DATA_LINE_MAX);
		refuse_data(s, text);
		return;
	}

	/* The Received: header, common to all recipients, goes in front of
	 * the data (which is never copied to make room for it). */
	char tlsdesc[128];
	const char *proto;
	bool tls = conn_tls_description(s->conn, tlsdesc, sizeof(tlsdesc)) != NULL;
	/* RFC 3848 protocol types. */
	if (s->proto == SMTP_PROTOCOL_LMTP)
		proto = "LMTP";
	else if (!s->esmtp)
		proto = "SMTP";
	else if (s->authenticated)
		proto = tls ? "ESMTPSA" : "ESMTPA";
	else
		proto = tls ? "ESMTPS" : "ESMTP";
	mail_trace_received(delivery_header(s->delivery), s->helo, conn_peer_ip(s->conn), NULL,
			    set->hostname, proto, delivery_id(s->delivery),
			    delivery_sole_rcpt(s->delivery), time(NULL));
	run_job(s, JOB_DELIVER);
}

/* Decodes the data as it arrives and hands it to the delivery; once the
 * message is sure to be refused, only counts. */
static void on_raw(void *ctx, struct evbuffer *in)
{
	struct smtp_session *s = ctx;
	while (evbuffer_get_length(in) > 0) {
		struct evbuffer_iovec v;
		if (evbuffer_peek(in, -1, NULL, &v, 1) < 1)
			break;
		size_t n = v.iov_len < SMTP_DATA_FEED_MAX ? v.iov_len : SMTP_DATA_FEED_MAX;
		bool done = false;
		size_t used = mail_data_decoder_feed(&s->decoder, v.iov_base, n, &s->data, &done);
		evbuffer_drain(in, used);
		if (s->data.len > 0) {
			const char *error;
			if (delivery_write(s->delivery, s->data.data, s->data.len, &error) < 0) {
				if (!delivery_too_big(s->delivery))
					log_error("%s #%llu: %s", proto_name(s),
						  (unsigned long long)s->id, error);
				s->decoder.discard = true;
			}
			buf_reset(&s->data);
		}
		if (data_refused(s))
			s->decoder.discard = true;
		if (done) {
			data_finished(s);
			return;
		}
	}
}

static void on_timeout(void *ctx, enum conn_timeout kind)
{
	struct smtp_session *s = ctx;
	switch (kind) {
	case CONN_TIMEOUT_IDLE:
		reply(s, "421 4.4.2 Idle timeout, closing connection");
		break;
	case CONN_TIMEOUT_COMMAND:
		reply(s, s->state == SMTP_STATE_DATA
				 ? "421 4.4.2 Message data arriving too slowly, closing connection"
				 : "421 4.4.2 Command not received in time, closing connection");
		break;
	case CONN_TIMEOUT_SESSION:
		reply(s, "421 4.4.2 Session time limit reached, closing connection");
		break;
	}
	log_info("%s #%llu: %s timeout%s", proto_name(s), (unsigned long long)s->id,
		 kind == CONN_TIMEOUT_IDLE ? "idle" : kind == CONN_TIMEOUT_COMMAND ? "command" : "session",
		 s->state == SMTP_STATE_DATA ? " during DATA" : "");
}

static void on_closed(void *ctx, enum conn_close_reason reason)
{
	struct smtp_session *s = ctx;
	if (s->state == SMTP_STATE_DATA && !s->job_running)
		log_info("%s #%llu: connection lost during DATA; nothing stored",
			 proto_name(s), (unsigned long long)s->id);
	s->dead = true;
	if (!s->job_running)
		smtp_session_free(s);
}

static const struct conn_callbacks smtp_conn_callbacks = {
	.line = on_line,
	.line_too_long = on_line_too_long,
	.raw = on_raw,
	.timeout = on_timeout,
	.closed = on_closed,
};

/* --- jobs --- */

static struct smtp_session *job_session(struct worker_job *job)
{
	return (struct smtp_session *)((char *)job - offsetof(struct smtp_session, job));
}

/* <Postmaster> without a domain (RFC 5321 4.5.1): the postmaster of this
 * host's domain if it is local, else of the first local domain (in name
 * order) that has a postmaster mailbox. Runs on a worker. */
static void resolve_postmaster(struct smtp_session *s, struct store *store)
{
	struct buf hash, domains;
	buf_init(&hash, 1024);
	buf_init(&domains, 0);
	bool found = store_user_get(store, s->job_rcpt, &hash) == STORE_OK;
	if (!found && store_domain_list(store, &domains) == STORE_OK) {
		char *save = NULL;
		for (char *d = strtok_r(domains.data, "\n", &save); d != NULL && !found;
		     d = strtok_r(NULL, "\n", &save)) {
			char addr[MAIL_ADDRESS_MAX + 1];
			snprintf(addr, sizeof(addr), "postmaster@%s", d);
			buf_reset(&hash);
			if (store_user_get(store, addr, &hash) == STORE_OK) {
				found = true;
				str_copy(s->job_rcpt, addr, sizeof(s->job_rcpt));
				str_copy(s->job_addr.domain, d, sizeof(s->job_addr.domain));
			}
		}
	}
	buf_wipe(&hash);
	buf_deinit(&hash);
	buf_deinit(&domains);
}

static void job_work(struct worker_job *job)
{
	struct smtp_session *s = job_session(job);
	struct store *store = s->daemon->store;
	switch (s->job_kind) {
	case JOB_RCPT: {
		if (s->job_postmaster)
			resolve_postmaster(s, store);
		s->job_status = store_domain_exists(store, s->job_addr.domain);
		s->job_domain_local = s->job_status == STORE_OK;
		if (s->job_status != STORE_OK)
			break;
		struct buf hash;
		buf_init(&hash, 1024);
		s->job_status = store_user_get(store, s->job_rcpt, &hash);
		buf_wipe(&hash);
		buf_deinit(&hash);
		break;
	}
	case JOB_DELIVER:
		s->job_status = delivery_run(s->delivery, store);
		break;
	case JOB_AUTH: {
		struct buf hash;
		buf_init(&hash, 1024);
		s->job_status = store_user_get(store, s->job_user, &hash);
		s->job_auth_ok = s->job_status == STORE_OK &&
				 auth_cache_verify(s->daemon->auth_cache, s->job_secret.data,
						   s->job_secret.len, hash.data);
		buf_wipe(&s->job_secret);
		buf_wipe(&hash);
		buf_deinit(&hash);
		if (s->job_status == STORE_NOTFOUND)
			s->job_status = STORE_OK; /* an unknown user is a failed login */
		break;
	}
	}
}

static void finish_rcpt(struct smtp_session *s)
{
	enum store_status st = s->job_status;
	if (!s->job_domain_local && st == STORE_NOTFOUND && !s->job_postmaster) {
		if (s->authenticated)
			conn_printf(s->conn, "550 5.7.1 <%s>: Relaying is not available yet: tern delivers only to its local domains\r\n",
				    s->job_rcpt);
		else
			conn_printf(s->conn, "550 5.7.1 <%s>: Relay access denied (not a local domain)\r\n",
				    s->job_rcpt);
		return;
	}
	if (st != STORE_OK) {
		smtp_store_error(s, st, s->job_rcpt);
		return;
	}
	s->rcpts = xrealloc(s->rcpts, (s->rcpt_count + 1) * sizeof(*s->rcpts));
	struct smtp_rcpt *r = &s->rcpts[s->rcpt_count];
	str_copy(r->address, s->job_rcpt, sizeof(r->address));
	r->same_as = -1;
	for (unsigned int i = 0; i < s->rcpt_count; i++) {
		if (strcmp(s->rcpts[i].address, r->address) == 0) {
			r->same_as = (int)i;
			break;
		}
	}
	s->rcpt_count++;
	s->state = SMTP_STATE_RCPT;
	reply(s, "250 2.1.5 Ok");
}

static void finish_deliver(struct smtp_session *s)
{
	struct delivery *d = s->delivery;
	const char *id = delivery_id(d);
	for (unsigned int i = 0; i < s->rcpt_count; i++) {
		if (delivery_rcpt_is_duplicate(d, i))
			continue;
		enum store_status st = delivery_rcpt_status(d, i);
		log_info("%s #%llu: %s from=<%s> to=<%s> size=%llu: %s", proto_name(s),
			 (unsigned long long)s->id, id, s->mail_from, s->rcpts[i].address,
			 (unsigned long long)delivery_size(d),
			 st == STORE_OK ? "stored" : store_status_name(st));
	}
	if (s->proto == SMTP_PROTOCOL_LMTP) {
		/* RFC 2033 4.2: one reply per accepted RCPT, in order. */
		for (unsigned int i = 0; i < s->rcpt_count; i++) {
			enum store_status st = delivery_rcpt_status(d, i);
			if (st == STORE_OK)
				conn_printf(s->conn, "250 2.0.0 <%s> %s Saved\r\n", s->rcpts[i].address, id);
			else
				smtp_store_error(s, st, s->rcpts[i].address);
		}
	} else {
		/* SMTP has one reply: 250 only when every accepted recipient has
		 * it durably; a recipient deleted meanwhile is reported in the log. */
		enum store_status st = delivery_status(d);
		if (st == STORE_OK)
			conn_printf(s->conn, "250 2.0.0 Ok: queued as %s\r\n", id);
		else
			smtp_store_error(s, st, s->rcpts[0].address);
	}
	reset_transaction(s);
}

/* The failure delay is over: answer the failed AUTH, read on. */
static void delay_done(evutil_socket_t fd, short what, void *arg)
{
	struct smtp_session *s = arg;
	bad_command(s, "535 5.7.8 Authentication credentials invalid");
	conn_resume(s->conn);
}

/* Returns false when the answer is held back (the conn stays paused). */
static bool finish_auth(struct smtp_session *s)
{
	if (s->job_status != STORE_OK) {
		log_warn("smtp #%llu: authentication for %s failed: %s", (unsigned long long)s->id,
			 s->job_user, store_status_name(s->job_status));
		reply(s, "454 4.7.0 Temporary authentication failure, try again later");
		return true;
	}
	if (!s->job_auth_ok) {
		unsigned int delay = daemon_auth_failed(s->daemon, s->conn);
		log_info("smtp #%llu: authentication failed for %s from %s (password ********; answered after %u ms)",
			 (unsigned long long)s->id, s->job_user, conn_peer_ip(s->conn), delay);
		struct timeval tv = { delay / 1000, (suseconds_t)(delay % 1000) * 1000 };
		evtimer_add(s->delay_timer, &tv);
		return false;
	}
	daemon_auth_succeeded(s->daemon, s->conn);
	s->authenticated = true;
	str_copy(s->auth_user, s->job_user, sizeof(s->auth_user));
	conn_set_input_max(s->conn, s->daemon->set->input_buffer);
	log_info("smtp #%llu: %s authenticated from %s", (unsigned long long)s->id, s->auth_user,
		 conn_peer_ip(s->conn));
	reply(s, "235 2.7.0 Authentication successful");
	return true;
}

static void job_done(struct worker_job *job)
{
	struct smtp_session *s = job_session(job);
	s->job_running = false;
	if (s->dead) {
		smtp_session_free(s);
		return;
	}
	switch (s->job_kind) {
	case JOB_RCPT:
		finish_rcpt(s);
		break;
	case JOB_DELIVER:
		finish_deliver(s);
		break;
	case JOB_AUTH:
		if (!finish_auth(s))
			return;
		break;
	}
	conn_resume(s->conn);
}

static void run_job(struct smtp_session *s, enum smtp_job_kind kind)
{
	s->job_kind = kind;
	s->job_running = true;
	s->job.work = job_work;
	s->job.done = job_done;
	conn_pause(s->conn);
	worker_pool_submit(s->daemon->pool, &s->job);
}

/* --- lifetime --- */

static void smtp_session_free(struct smtp_session *s)
{
	daemon_session_unregister(s->daemon, &s->ds);
	if (s->delay_timer != NULL)
		event_free(s->delay_timer);
	conn_free(&s->conn);
	buf_wipe(&s->job_secret);
	buf_deinit(&s->job_secret);
	delivery_destroy(&s->delivery);
	free(s->rcpts);
	buf_deinit(&s->data);
	free(s);
}

static void smtp_session_destroy(struct daemon_session *ds)
{
	smtp_session_free((struct smtp_session *)ds);
}

void smtp_session_create(struct daemon *d, int fd, const struct sockaddr *peer,
			 socklen_t peer_len, enum smtp_protocol proto, bool implicit_tls,
			 enum daemon_admit admit)
{
	const struct tern_settings *set = d->set;
	struct smtp_session *s = xcalloc(1, sizeof(*s));
	s->daemon = d;
	s->proto = proto;
	s->id = ++d->next_session_id;
	s->ds.destroy = smtp_session_destroy;
	s->state = SMTP_STATE_INIT;
	buf_init(&s->data, 0);
	buf_init(&s->job_secret, set->auth_response_max);
	s->conn = conn_create(d->base, fd, peer, peer_len, implicit_tls ? d->tls : NULL,
			      &smtp_conn_callbacks, s);
	s->delay_timer = evtimer_new(d->base, delay_done, s);
	s->ds.peer = *conn_peer_addr(s->conn);
	s->ds.refused = admit != DAEMON_ADMIT_OK;
	daemon_session_register(d, &s->ds);
	conn_set_line_max(s->conn, set->line_max);
	conn_set_input_max(s->conn, set->input_buffer_preauth);
	conn_set_idle_timeout(s->conn, proto == SMTP_PROTOCOL_LMTP ? set->lmtp_idle_timeout_ms
								 : set->smtp_idle_timeout_ms);
	conn_set_command_timeout(s->conn, set->command_timeout_ms, (unsigned int)set->min_data_rate);
	if (admit != DAEMON_ADMIT_OK) {
		log_info("%s #%llu: connect from %s refused: too many connections%s", proto_name(s),
			 (unsigned long long)s->id, conn_peer_ip(s->conn),
			 admit == DAEMON_ADMIT_TOO_MANY_FROM_IP ? " from this address" : "");
		conn_printf(s->conn, "421 4.7.0 %s Too many connections%s, try again later\r\n",
			    set->hostname, admit == DAEMON_ADMIT_TOO_MANY_FROM_IP ? " from your address" : "");
		conn_close(s->conn);
		return;
	}
	log_info("%s #%llu: connect from %s%s", proto_name(s), (unsigned long long)s->id,
		 conn_peer_ip(s->conn), implicit_tls ? " (TLS)" : "");
	conn_printf(s->conn, "220 %s %s tern ready\r\n", d->set->hostname,
		    proto == SMTP_PROTOCOL_LMTP ? "LMTP" : "ESMTP");
}
