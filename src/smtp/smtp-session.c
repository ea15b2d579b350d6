/*
 * smtp-session: the SMTP/LMTP receiving state machine on the session core,
 * which owns the connection, the job slot, the bad-command budget, password
 * checks and SASL.
 *
 *   INIT --HELO/EHLO/LHLO--> READY --MAIL--> MAIL --RCPT--> RCPT --DATA--> DATA
 *                            READY --AUTH--> AUTH --(done)--> READY
 *   DATA --(end of data: stored or refused)--> READY; RSET and HELO --> READY
 *
 * Invariants:
 * - State changes go through smtp_enter_state() only, which applies the
 *   state's input mode (raw for DATA) and caps; a command runs only in the
 *   states its table row allows, else it gets that row's 503.
 * - 250 after DATA only once the store has committed the message for that
 *   recipient; any storage failure is 451 4.3.0, never 2xx or 5xx.
 * - A recipient outside the local domains is accepted only from an
 *   authenticated client, for the outbound queue (550 5.7.1 otherwise):
 *   tern is never an open relay. An alias's remote targets are queued for
 *   anyone who may mail the alias (that is forwarding, not relaying).
 * - An authenticated client sends only as itself: the envelope sender must
 *   be its login or an alias that delivers to it (553 5.7.1 otherwise).
 * - Submission (RFC 6409): AUTH before MAIL (530 5.7.0), and on the
 *   STARTTLS port AUTH only once TLS is on, whatever [auth] plaintext says.
 * - AUTH (RFC 4954) PLAIN and LOGIN are offered and accepted only where the
 *   [auth] plaintext policy allows, checked before any password is looked
 *   at (538 5.7.11 otherwise).
 * - The end of data is only CRLF "." CRLF (mail-data's decoder), whatever
 *   [smtp] bare_lf says (it governs LMTP too): with normalize (the default)
 *   a bare LF ends a line and is stored as CRLF; with reject the message is
 *   refused with 550 5.6.0 after the data. A bare CR is refused either way.
 * - The message goes through one delivery builder (lib-delivery) from DATA
 *   to the reply: decoded data is written to it as it arrives (in memory
 *   up to 1 MiB, then spooled to an unnamed file), the store call runs on a
 *   worker, and the builder is destroyed with the transaction, on every
 *   path. What a session holds for a message is bounded whatever its size.
 * - Every store error maps to a reply in smtp_store_error() only.
 */
#include "smtp-session.h"

#include <event2/buffer.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "delivery.h"
#include "mail-address.h"
#include "mail-data.h"
#include "mail-trace.h"
#include "settings.h"
#include "smtp-parser.h"

#define SMTP_DATA_LINE_MAX 65536    /* longest text line accepted in DATA */
#define SMTP_DATA_FEED_MAX 65536    /* raw octets decoded per step */

enum smtp_state {
	SMTP_STATE_INIT = 1 << 0,   /* before HELO/EHLO/LHLO */
	SMTP_STATE_READY = 1 << 1,  /* after HELO, no transaction */
	SMTP_STATE_MAIL = 1 << 2,   /* after MAIL FROM */
	SMTP_STATE_RCPT = 1 << 3,   /* at least one RCPT accepted */
	SMTP_STATE_DATA = 1 << 4,   /* reading message data (raw input) */
	SMTP_STATE_AUTH = 1 << 5,   /* an AUTH exchange or its check */
};
#define SMTP_STATES_COMMAND \
	(SMTP_STATE_INIT | SMTP_STATE_READY | SMTP_STATE_MAIL | SMTP_STATE_RCPT)

/* An accepted RCPT: the address as given (normalised), the users it
 * delivers to after aliases, users[first .. first + count), and the
 * remote addresses it goes to through the queue,
 * remotes[first_remote .. first_remote + remote_count). */
struct smtp_rcpt {
	char address[MAIL_ADDRESS_MAX + 1];
	unsigned int first, count;
	unsigned int first_remote, remote_count;
};

struct smtp_remote {
	char address[MAIL_ADDRESS_MAX + 1];
};

struct smtp_user {
	char address[MAIL_ADDRESS_MAX + 1];
	unsigned int index;   /* in the delivery, from DATA on */
	struct store_user_seen seen;  /* what RCPT read of the user */
};

struct smtp_session {
	struct session s;
	bool lmtp;
	bool submission;
	enum smtp_state state;
	bool esmtp;
	char helo[256];
	bool authenticated;
	char auth_user[MAIL_ADDRESS_MAX + 1];

	/* the transaction */
	char mail_from[MAIL_ADDRESS_MAX + 1];
	struct smtp_rcpt *rcpts;
	unsigned int rcpt_count;
	struct smtp_user *users;     /* every RCPT's users; at most max_recipients */
	unsigned int user_count;
	struct smtp_remote *remotes; /* every RCPT's remote addresses; with the
				      * users, at most max_recipients */
	unsigned int remote_count;
	struct mail_data_decoder decoder;
	struct buf data;             /* decoded octets on their way to the delivery:
				      * at most 2 x SMTP_DATA_FEED_MAX at a time */
	struct delivery *delivery;   /* from DATA to the reply */

	/* the job in flight */
	struct mail_address job_addr;
	char job_rcpt[MAIL_ADDRESS_MAX + 1];
	enum store_status job_status;
	bool job_domain_local, job_postmaster;
	bool job_sender_ok;             /* MAIL: the login may send as job_rcpt */
	struct store_resolved *job_resolved;  /* RCPT: allocated for the job */
};

static struct smtp_session *smtp(struct session *s)
{
	return (struct smtp_session *)s;
}

static const char *state_name(enum smtp_state state)
{
	switch (state) {
	case SMTP_STATE_INIT: return "INIT";
	case SMTP_STATE_READY: return "READY";
	case SMTP_STATE_MAIL: return "MAIL";
	case SMTP_STATE_RCPT: return "RCPT";
	case SMTP_STATE_DATA: return "DATA";
	case SMTP_STATE_AUTH: return "AUTH";
	}
	return "?";
}

/* The one place the state changes. */
static void smtp_enter_state(struct smtp_session *m, enum smtp_state state)
{
	if (m->state == state)
		return;
	session_log(&m->s, LOG_DEBUG, "%s -> %s", state_name(m->state), state_name(state));
	conn_set_raw(m->s.conn, state == SMTP_STATE_DATA);
	m->state = state;
}

/* The one place a store error becomes an SMTP reply. */
static void smtp_store_error(struct smtp_session *m, enum store_status st, const char *who)
{
	switch (st) {
	case STORE_NOTFOUND:
		session_replyf(&m->s, "550 5.1.1 <%s>: User unknown", who);
		break;
	case STORE_OVERQUOTA:
		/* RFC 3463 4.2.2: mailbox full, a temporary condition. */
		if (m->lmtp || m->state != SMTP_STATE_DATA)
			session_replyf(&m->s, "452 4.2.2 <%s>: Mailbox full, try again later", who);
		else
			session_reply(&m->s, "452 4.2.2 A recipient's mailbox is full: nothing was delivered, try again later");
		break;
	case STORE_LOOP:
		session_replyf(&m->s, "550 5.4.6 <%s>: Alias loop", who);
		break;
	case STORE_TOOBIG:
		session_reply(&m->s, "552 5.3.4 Message too big");
		break;
	default:
		/* 451 for everything else: a storage failure is never 5xx. */
		session_reply(&m->s, "451 4.3.0 Temporary storage failure, try again later");
		break;
	}
}

/* What a recipient's reply was, for tern_deliveries_total: keep in step
 * with smtp_store_error(). */
static enum session_delivery delivery_result(enum store_status st)
{
	if (st == STORE_OK)
		return SESSION_DELIVERY_OK;
	return st == STORE_NOTFOUND || st == STORE_LOOP || st == STORE_TOOBIG
		       ? SESSION_DELIVERY_PERMFAIL
		       : SESSION_DELIVERY_TEMPFAIL;
}

/* Forgets the transaction; back to READY unless before HELO. */
static void reset_transaction(struct smtp_session *m)
{
	m->mail_from[0] = '\0';
	free(m->rcpts);
	m->rcpts = NULL;
	m->rcpt_count = 0;
	free(m->users);
	m->users = NULL;
	m->user_count = 0;
	free(m->remotes);
	m->remotes = NULL;
	m->remote_count = 0;
	buf_deinit(&m->data);
	buf_init(&m->data, 0);
	delivery_destroy(&m->delivery);
	if (m->state != SMTP_STATE_INIT)
		smtp_enter_state(m, SMTP_STATE_READY);
}

/* --- HELO, EHLO, LHLO --- */

static bool starttls_offered(struct smtp_session *m)
{
	return session_tls(&m->s) != NULL && (!m->lmtp || m->s.env->set->lmtp_starttls);
}

/* Submission on its STARTTLS port: AUTH waits for TLS, even on loopback. */
static bool auth_needs_tls(struct smtp_session *m)
{
	return m->submission && !conn_is_tls(m->s.conn);
}

/* AUTH PLAIN and LOGIN send the password in clear: offered only where the
 * plaintext policy allows them. */
static bool auth_offered(struct smtp_session *m)
{
	return !m->lmtp && !auth_needs_tls(m) && session_plaintext_allowed(&m->s);
}

static void greet_client(struct smtp_session *m, struct smtp_command *cmd, bool esmtp)
{
	reset_transaction(m);
	str_escape_for_log(m->helo, sizeof(m->helo), cmd->args, strlen(cmd->args), 200);
	m->esmtp = esmtp;
	smtp_enter_state(m, SMTP_STATE_READY);
}

static void cmd_helo(struct smtp_session *m, struct smtp_command *cmd)
{
	if (*cmd->args == '\0') {
		session_bad_command(&m->s, "501 5.5.4 Syntax: HELO hostname");
		return;
	}
	greet_client(m, cmd, false);
	session_replyf(&m->s, "250 %s", m->s.env->set->hostname);
}

static void cmd_ehlo(struct smtp_session *m, struct smtp_command *cmd)
{
	if (*cmd->args == '\0') {
		session_bad_command(&m->s, "501 5.5.4 Syntax: EHLO hostname");
		return;
	}
	greet_client(m, cmd, true);
	const struct tern_settings *set = m->s.env->set;
	struct conn *conn = m->s.conn;
	conn_printf(conn, "250-%s\r\n", set->hostname);
	conn_puts(conn, "250-PIPELINING\r\n");
	conn_printf(conn, "250-SIZE %llu\r\n", (unsigned long long)set->max_message_size);
	if (starttls_offered(m) && !conn_is_tls(conn))
		conn_puts(conn, "250-STARTTLS\r\n");
	if (auth_offered(m) && !m->authenticated)
		conn_puts(conn, session_oauth_offered(&m->s) ? "250-AUTH PLAIN LOGIN OAUTHBEARER XOAUTH2\r\n"
							     : "250-AUTH PLAIN LOGIN\r\n");
	conn_puts(conn, "250-8BITMIME\r\n250 ENHANCEDSTATUSCODES\r\n");
}

/* --- the transaction --- */

/* Runs on a worker: may the login send as job_rcpt, an alias of a local
 * domain that delivers to it? */
static void sender_work(struct session *s)
{
	struct smtp_session *m = smtp(s);
	struct store_resolved *r = xcalloc(1, sizeof(*r));
	m->job_status = store_resolve(s->env->store, m->job_rcpt, r);
	m->job_sender_ok = false;
	for (unsigned int i = 0; m->job_status == STORE_OK && i < r->count; i++)
		if (strcmp(r->users[i], m->auth_user) == 0)
			m->job_sender_ok = true;
	free(r);
}

static void sender_done(struct session *s)
{
	struct smtp_session *m = smtp(s);
	if (m->job_sender_ok) {
		smtp_enter_state(m, SMTP_STATE_MAIL);
		session_reply(s, "250 2.1.0 Ok");
	} else if (store_status_is_temporary(m->job_status)) {
		m->mail_from[0] = '\0';
		session_reply(s, "451 4.3.0 Temporary storage failure, try again later");
	} else {
		session_info(s, "sender refused user=%s from=<%s>", m->auth_user, m->mail_from);
		session_replyf(s, "553 5.7.1 <%s>: Sender address rejected: not owned by %s",
			       m->mail_from, m->auth_user);
		m->mail_from[0] = '\0';
	}
}

static void cmd_mail(struct smtp_session *m, struct smtp_command *cmd)
{
	const struct tern_settings *set = m->s.env->set;
	struct smtp_path_args pa;
	const char *error;
	if (smtp_parse_mail_args(cmd->args, &pa, &error) < 0) {
		session_bad_command_f(&m->s, "501 5.5.4 %s", error);
		return;
	}
	for (unsigned int i = 0; i < pa.param_count; i++) {
		const struct smtp_param *p = &pa.params[i];
		if (strcmp(p->keyword, "SIZE") == 0) {
			unsigned long long size;
			if (p->value == NULL || smtp_parse_size(p->value, &size) < 0) {
				session_bad_command(&m->s, "501 5.5.4 Invalid SIZE parameter");
				return;
			}
			if (size > set->max_message_size) {
				session_replyf(&m->s, "552 5.3.4 Message size exceeds fixed limit of %llu octets",
					       (unsigned long long)set->max_message_size);
				return;
			}
		} else if (strcmp(p->keyword, "BODY") == 0) {
			if (p->value == NULL || (strcasecmp(p->value, "7BIT") != 0 &&
						 strcasecmp(p->value, "8BITMIME") != 0)) {
				session_bad_command(&m->s, "501 5.5.4 Unsupported BODY type");
				return;
			}
		} else {
			session_bad_command(&m->s, "555 5.5.4 Unsupported MAIL parameter");
			return;
		}
	}
	if (!m->esmtp && pa.param_count > 0) {
		session_bad_command(&m->s, "555 5.5.4 MAIL parameters need EHLO");
		return;
	}
	if (m->submission && !m->authenticated) {
		session_bad_command(&m->s, "530 5.7.0 Authentication required");
		return;
	}
	mail_address_format(&pa.addr, m->mail_from, sizeof(m->mail_from));
	if (m->authenticated && strcmp(m->mail_from, m->auth_user) != 0) {
		if (pa.addr.null_path) {
			session_replyf(&m->s, "553 5.7.1 <>: Sender address rejected: %s sends as itself",
				       m->auth_user);
			m->mail_from[0] = '\0';
			return;
		}
		str_copy(m->job_rcpt, m->mail_from, sizeof(m->job_rcpt));
		session_run_job(&m->s, sender_work, sender_done);
		return;
	}
	smtp_enter_state(m, SMTP_STATE_MAIL);
	session_reply(&m->s, "250 2.1.0 Ok");
}

/* Runs on a worker: is the domain local, what does the address deliver to
 * (aliases expanded), and has each of those users room for one more
 * message. <Postmaster> without a domain (RFC 5321 4.5.1) is this host's
 * if its name is a local domain, else the store's postmaster fallback. */
static void rcpt_work(struct session *s)
{
	struct smtp_session *m = smtp(s);
	struct store *store = s->env->store;
	struct store_resolved *r = m->job_resolved;
	m->job_status = store_domain_exists(store, m->job_addr.domain);
	m->job_domain_local = m->job_status == STORE_OK;
	if (m->job_postmaster && m->job_status == STORE_NOTFOUND) {
		m->job_status = store_resolve(store, "postmaster", r);
		m->job_domain_local = true;
	} else if (m->job_status == STORE_OK) {
		m->job_status = store_resolve(store, m->job_rcpt, r);
	}
	/* The resolution's one read of each user also gave its limits (and
	 * the delivery takes it too, while it is fresh: store_rcpt.seen). */
	for (unsigned int i = 0; m->job_status == STORE_OK && i < r->count; i++)
		m->job_status = store_quota_check_seen(store, r->users[i], &r->seen[i]);
}

static void rcpt_done(struct session *s)
{
	struct smtp_session *m = smtp(s);
	const struct tern_settings *set = s->env->set;
	enum store_status st = m->job_status;
	struct store_resolved *r = m->job_resolved;
	m->job_resolved = NULL;
	bool relay = !m->job_domain_local && st == STORE_NOTFOUND;
	if (relay && m->authenticated) {
		/* Relayed for the login: the queue takes it. */
		st = STORE_OK;
		r->count = 0;
		r->remote_count = 1;
		str_copy(r->remote[0], m->job_rcpt, sizeof(r->remote[0]));
	}
	if (relay && !m->authenticated) {
		session_replyf(s, "550 5.7.1 <%s>: Relay access denied (not a local domain; authenticate to send)",
			       m->job_rcpt);
	} else if (st != STORE_OK) {
		smtp_store_error(m, st, m->job_rcpt);
	} else if (m->user_count + m->remote_count + r->count + r->remote_count > set->max_recipients) {
		/* An alias counts for every user it reaches: a transaction
		 * holds at most max_recipients users whatever the aliases. */
		session_reply(s, "452 4.5.3 Too many recipients");
	} else {
		m->rcpts = xrealloc(m->rcpts, (m->rcpt_count + 1) * sizeof(*m->rcpts));
		struct smtp_rcpt *rc = &m->rcpts[m->rcpt_count++];
		str_copy(rc->address, m->job_rcpt, sizeof(rc->address));
		rc->first = m->user_count;
		rc->count = r->count;
		m->users = xrealloc(m->users, (m->user_count + r->count) * sizeof(*m->users));
		for (unsigned int i = 0; i < r->count; i++) {
			m->users[m->user_count].seen = r->seen[i];
			str_copy(m->users[m->user_count++].address, r->users[i],
				 sizeof(m->users[0].address));
		}
		rc->first_remote = m->remote_count;
		rc->remote_count = r->remote_count;
		m->remotes = xrealloc(m->remotes, (m->remote_count + r->remote_count) * sizeof(*m->remotes));
		for (unsigned int i = 0; i < r->remote_count; i++)
			str_copy(m->remotes[m->remote_count++].address, r->remote[i],
				 sizeof(m->remotes[0].address));
		smtp_enter_state(m, SMTP_STATE_RCPT);
		session_reply(s, "250 2.1.5 Ok");
	}
	free(r);
}

static void cmd_rcpt(struct smtp_session *m, struct smtp_command *cmd)
{
	const struct tern_settings *set = m->s.env->set;
	struct smtp_path_args pa;
	const char *error;
	if (smtp_parse_rcpt_args(cmd->args, &pa, &error) < 0) {
		session_bad_command_f(&m->s, "501 5.5.4 %s", error);
		return;
	}
	if (pa.param_count > 0) {
		session_bad_command(&m->s, "555 5.5.4 Unsupported RCPT parameter");
		return;
	}
	if (m->user_count + m->remote_count >= set->max_recipients) {
		session_reply(&m->s, "452 4.5.3 Too many recipients");
		return;
	}
	m->job_postmaster = pa.addr.domain[0] == '\0';
	if (m->job_postmaster) {
		/* <Postmaster> without a domain (RFC 5321 4.5.1): this host's. */
		str_copy(pa.addr.domain, set->hostname, sizeof(pa.addr.domain));
		str_lower(pa.addr.domain);
	}
	m->job_addr = pa.addr;
	mail_address_format(&pa.addr, m->job_rcpt, sizeof(m->job_rcpt));
	m->job_resolved = xcalloc(1, sizeof(*m->job_resolved));
	session_run_job(&m->s, rcpt_work, rcpt_done);
}

static void cmd_data(struct smtp_session *m, struct smtp_command *cmd)
{
	if (*cmd->args != '\0') {
		session_bad_command(&m->s, "501 5.5.4 DATA takes no arguments");
		return;
	}
	const struct tern_settings *set = m->s.env->set;
	struct delivery_settings dset = { .data_dir = set->data_dir,
					  .max_message_size = set->max_message_size,
					  .quota_all_or_nothing = !m->lmtp,
					  .queue_owner = set->queue_node_id,
					  .dkim = m->s.env->dkim };
	delivery_destroy(&m->delivery);
	m->delivery = delivery_create(&dset, m->mail_from);
	for (unsigned int i = 0; i < m->user_count; i++)
		m->users[i].index = delivery_add_rcpt_seen(m->delivery, m->users[i].address,
							   &m->users[i].seen);
	for (unsigned int i = 0; i < m->remote_count; i++)
		delivery_add_remote(m->delivery, m->remotes[i].address);
	buf_reset(&m->data);
	mail_data_decoder_init(&m->decoder);
	m->decoder.normalize_lf = set->bare_lf == BARE_LF_NORMALIZE;
	session_reply(&m->s, "354 End data with <CR><LF>.<CR><LF>");
	smtp_enter_state(m, SMTP_STATE_DATA);
}

static void deliver_work(struct session *s)
{
	struct smtp_session *m = smtp(s);
	m->job_status = delivery_run(m->delivery, s->env->store);
}

/* LMTP's reply for one RCPT: 250 when every user it reaches has the
 * message; else the first failure, a full mailbox before anything else. */
static enum store_status rcpt_result(struct smtp_session *m, const struct smtp_rcpt *rc)
{
	enum store_status result = STORE_OK;
	if (rc->remote_count > 0)
		result = delivery_queue_status(m->delivery);
	for (unsigned int j = rc->first; j < rc->first + rc->count; j++) {
		enum store_status st = delivery_rcpt_status(m->delivery, m->users[j].index);
		if (st == STORE_OVERQUOTA)
			return st;
		if (result == STORE_OK)
			result = st;
	}
	return result;
}

static void deliver_done(struct session *s)
{
	struct smtp_session *m = smtp(s);
	struct delivery *d = m->delivery;
	const char *id = delivery_id(d);
	for (unsigned int i = 0; i < m->user_count; i++) {
		unsigned int k = m->users[i].index;
		if (delivery_rcpt_is_duplicate(d, k))
			continue;
		enum store_status st = delivery_rcpt_status(d, k);
		session_info(s, "delivery id=%s from=<%s> to=<%s> size=%llu result=%s", id, m->mail_from,
			     m->users[i].address, (unsigned long long)delivery_size(d),
			     st == STORE_OK ? "stored" : store_status_name(st));
		session_count_delivery(s, delivery_result(st), 1);
	}
	if (m->remote_count > 0) {
		enum store_status st = delivery_queue_status(d);
		for (unsigned int i = 0; i < m->remote_count; i++)
			session_info(s, "queued id=%s queue=%s from=<%s> to=<%s> size=%llu dkim=%s result=%s",
				     id, delivery_queue_id(d), m->mail_from, m->remotes[i].address,
				     (unsigned long long)delivery_size(d), delivery_signed(d) ? "signed" : "none",
				     st == STORE_OK ? "queued" : store_status_name(st));
		session_count_delivery(s, delivery_result(st), m->remote_count);
		if (st == STORE_OK && s->env->queued != NULL)
			s->env->queued(s->env);
	}
	if (m->lmtp) {
		/* RFC 2033 4.2: one reply per accepted RCPT, in order. */
		for (unsigned int i = 0; i < m->rcpt_count; i++) {
			enum store_status st = rcpt_result(m, &m->rcpts[i]);
			if (st == STORE_OK)
				session_replyf(s, "250 2.0.0 <%s> %s Saved", m->rcpts[i].address, id);
			else
				smtp_store_error(m, st, m->rcpts[i].address);
		}
	} else {
		/* SMTP has one reply: 250 only when every accepted recipient has
		 * it durably; a recipient deleted meanwhile is reported in the log. */
		enum store_status st = delivery_status(d);
		if (st == STORE_OK)
			session_replyf(s, "250 2.0.0 Ok: queued as %s", id);
		else
			smtp_store_error(m, st, m->rcpts[0].address);
	}
	reset_transaction(m);
}

/* Refuses the message after DATA: once for SMTP, once per accepted
 * recipient for LMTP (RFC 2033 4.2). */
static void refuse_data(struct smtp_session *m, const char *text)
{
	unsigned int n = m->lmtp ? m->rcpt_count : 1;
	session_count_delivery(&m->s, SESSION_DELIVERY_PERMFAIL, m->user_count);
	for (unsigned int i = 0; i < n; i++)
		session_reply(&m->s, text);
	reset_transaction(m);
}

#define SMTP_STR_(x) #x
#define SMTP_STR(x) SMTP_STR_(x)

/* Why the data will be refused whatever follows (a bare CR, a bare LF
 * under bare_lf = reject, an overlong line), or NULL. */
static const char *data_refusal(const struct smtp_session *m)
{
	if (m->decoder.bare_cr > 0)
		return "550 5.6.0 Message contains bare CR (a CR not followed by LF); lines must end with CRLF (RFC 5321 2.3.8)";
	if (m->decoder.bare_lf > 0 && !m->decoder.normalize_lf)
		return "550 5.6.0 Message contains bare LF; lines must end with CRLF (RFC 5321 2.3.8)";
	if (m->decoder.max_line_len > SMTP_DATA_LINE_MAX)
		return "552 5.3.4 Message line too long (limit " SMTP_STR(SMTP_DATA_LINE_MAX) " octets)";
	return NULL;
}

/* The data has ended: refuse it, or complete the delivery and store it. */
static void data_finished(struct smtp_session *m)
{
	const struct tern_settings *set = m->s.env->set;
	if (delivery_too_big(m->delivery) || m->decoder.size > set->max_message_size) {
		char text[160];
		snprintf(text, sizeof(text), "552 5.3.4 Message size exceeds fixed limit of %llu octets",
			 (unsigned long long)set->max_message_size);
		refuse_data(m, text);
		return;
	}
	const char *refusal = data_refusal(m);
	if (refusal != NULL) {
		refuse_data(m, refusal);
		return;
	}
	/* The Received: field, common to all recipients, goes in front of the
	 * data (which is never copied to make room for it). RFC 3848 protocol
	 * types. */
	char tlsdesc[128];
	const char *proto;
	bool tls = conn_tls_description(m->s.conn, tlsdesc, sizeof(tlsdesc)) != NULL;
	if (m->lmtp)
		proto = "LMTP";
	else if (!m->esmtp)
		proto = "SMTP";
	else if (m->authenticated)
		proto = tls ? "ESMTPSA" : "ESMTPA";
	else
		proto = tls ? "ESMTPS" : "ESMTP";
	mail_trace_received(delivery_header(m->delivery), m->helo, conn_peer_ip(m->s.conn), NULL,
			    set->hostname, proto, delivery_id(m->delivery),
			    delivery_sole_rcpt(m->delivery), time(NULL));
	session_run_job(&m->s, deliver_work, deliver_done);
}

/* Decodes the data as it arrives and hands it to the delivery; once the
 * message is sure to be refused, only counts. */
static void smtp_raw(struct session *s, struct evbuffer *in)
{
	struct smtp_session *m = smtp(s);
	while (evbuffer_get_length(in) > 0) {
		struct evbuffer_iovec v;
		if (evbuffer_peek(in, -1, NULL, &v, 1) < 1)
			break;
		size_t n = v.iov_len < SMTP_DATA_FEED_MAX ? v.iov_len : SMTP_DATA_FEED_MAX;
		bool done = false;
		size_t used = mail_data_decoder_feed(&m->decoder, v.iov_base, n, &m->data, &done);
		evbuffer_drain(in, used);
		session_count_octets_received(s, used);
		if (m->data.len > 0) {
			const char *error;
			if (delivery_write(m->delivery, m->data.data, m->data.len, &error) < 0) {
				if (!delivery_too_big(m->delivery))
					session_error(s, "%s", error);
				m->decoder.discard = true;
			}
			buf_reset(&m->data);
		}
		if (data_refusal(m) != NULL)
			m->decoder.discard = true;
		if (done) {
			data_finished(m);
			return;
		}
	}
}

static void cmd_rset(struct smtp_session *m, struct smtp_command *cmd)
{
	reset_transaction(m);
	session_reply(&m->s, "250 2.0.0 Ok");
}

static void cmd_noop(struct smtp_session *m, struct smtp_command *cmd)
{
	session_reply(&m->s, "250 2.0.0 Ok");
}

static void cmd_quit(struct smtp_session *m, struct smtp_command *cmd)
{
	session_replyf(&m->s, "221 2.0.0 %s closing connection", m->s.env->set->hostname);
	conn_close(m->s.conn);
}

static void cmd_vrfy(struct smtp_session *m, struct smtp_command *cmd)
{
	session_reply(&m->s, "252 2.5.0 Cannot VRFY user, but will accept message and attempt delivery");
}

static void cmd_expn(struct smtp_session *m, struct smtp_command *cmd)
{
	session_reply(&m->s, "502 5.5.1 EXPN not available");
}

static void cmd_help(struct smtp_session *m, struct smtp_command *cmd)
{
	session_reply(&m->s, "214 2.0.0 See RFC 5321 (SMTP) and RFC 2033 (LMTP)");
}

static void cmd_bdat(struct smtp_session *m, struct smtp_command *cmd)
{
	session_bad_command(&m->s, "502 5.5.1 CHUNKING not available");
}

static void cmd_starttls(struct smtp_session *m, struct smtp_command *cmd)
{
	if (!starttls_offered(m)) {
		session_bad_command(&m->s, "502 5.5.1 STARTTLS not available");
		return;
	}
	if (conn_is_tls(m->s.conn)) {
		session_bad_command(&m->s, "554 5.5.1 TLS already active");
		return;
	}
	if (*cmd->args != '\0') {
		session_bad_command(&m->s, "501 5.5.4 STARTTLS takes no arguments");
		return;
	}
	session_reply(&m->s, "220 2.0.0 Ready to start TLS");
	/* RFC 3207 4.2: forget everything learnt before TLS. */
	reset_transaction(m);
	smtp_enter_state(m, SMTP_STATE_INIT);
	m->helo[0] = '\0';
	m->authenticated = false;
	m->auth_user[0] = '\0';
	conn_start_tls(m->s.conn, session_tls(&m->s));
}

/* --- AUTH --- */

static void auth_done(struct session *s, enum session_login_result result, const char *user)
{
	struct smtp_session *m = smtp(s);
	smtp_enter_state(m, SMTP_STATE_READY);
	switch (result) {
	case SESSION_LOGIN_OK:
		m->authenticated = true;
		str_copy(m->auth_user, user, sizeof(m->auth_user));
		session_logged_in(s, s->env->set->smtp_idle_timeout_ms);
		session_info(s, "login ok user=%s ip=%s", m->auth_user, conn_peer_ip(s->conn));
		session_reply(s, "235 2.7.0 Authentication successful");
		break;
	case SESSION_LOGIN_FAILED:
		session_bad_command(s, "535 5.7.8 Authentication credentials invalid");
		break;
	case SESSION_LOGIN_TEMPFAIL:
		session_reply(s, "454 4.7.0 Temporary authentication failure, try again later");
		break;
	}
}

static void auth_failed(struct session *s, enum session_sasl_failure why, const char *text)
{
	smtp_enter_state(smtp(s), SMTP_STATE_READY);
	switch (why) {
	case SESSION_SASL_CANCELLED:
		session_bad_command(s, "501 5.7.0 Authentication cancelled");
		break;
	case SESSION_SASL_BAD_BASE64:
		session_bad_command(s, "501 5.5.2 Invalid base64 data in the authentication response");
		break;
	case SESSION_SASL_MALFORMED:
		session_bad_command_f(s, "501 5.5.2 %s", text);
		break;
	case SESSION_SASL_TOO_LONG:
		session_bad_command(s, "500 5.5.6 Authentication exchange line is too long");
		break;
	case SESSION_SASL_BAD_USER:
		session_bad_command(s, "535 5.7.8 Authentication credentials invalid (the user name is an address, user@domain)");
		break;
	case SESSION_SASL_BAD_PASSWORD:
		session_bad_command(s, "535 5.7.8 Authentication credentials invalid");
		break;
	}
}

static const struct session_sasl_ops smtp_sasl = {
	.challenge_prefix = "334 ",
	.failed = auth_failed,
	.done = auth_done,
};

/* RFC 4954: AUTH mechanism [initial-response]. */
static void cmd_auth(struct smtp_session *m, struct smtp_command *cmd)
{
	if (!m->esmtp) {
		session_bad_command(&m->s, "503 5.5.1 Send EHLO first");
		return;
	}
	if (m->authenticated) {
		session_bad_command(&m->s, "503 5.5.1 Already authenticated");
		return;
	}
	char *mech = cmd->args;
	char *initial = strchr(mech, ' ');
	if (initial != NULL) {
		*initial++ = '\0';
		while (*initial == ' ')
			initial++;
	}
	enum sasl_mech mt = sasl_mech_lookup(mech);
	if (mt == SASL_MECH_UNKNOWN || (sasl_mech_is_bearer(mt) && m->s.env->oauth_keys == NULL)) {
		session_bad_command(&m->s, "504 5.5.4 Unrecognized authentication type (use PLAIN or LOGIN)");
		return;
	}
	if (auth_needs_tls(m)) {
		session_count_login_refused(&m->s);
		session_bad_command(&m->s, "530 5.7.0 Must issue a STARTTLS command first");
		return;
	}
	if (!session_plaintext_allowed(&m->s)) {
		session_count_login_refused(&m->s);
		session_bad_command(&m->s, "538 5.7.11 Encryption required for requested authentication mechanism (use STARTTLS)");
		return;
	}
	smtp_enter_state(m, SMTP_STATE_AUTH);
	session_sasl_start(&m->s, mt, initial, &smtp_sasl);
}

/* --- dispatch --- */

/* For tern_commands_total, by verb number. */
static const char *const verb_names[] = {
	[SMTP_VERB_HELO] = "HELO", [SMTP_VERB_EHLO] = "EHLO", [SMTP_VERB_LHLO] = "LHLO",
	[SMTP_VERB_MAIL] = "MAIL", [SMTP_VERB_RCPT] = "RCPT", [SMTP_VERB_DATA] = "DATA",
	[SMTP_VERB_RSET] = "RSET", [SMTP_VERB_NOOP] = "NOOP", [SMTP_VERB_QUIT] = "QUIT",
	[SMTP_VERB_VRFY] = "VRFY", [SMTP_VERB_EXPN] = "EXPN", [SMTP_VERB_HELP] = "HELP",
	[SMTP_VERB_STARTTLS] = "STARTTLS", [SMTP_VERB_AUTH] = "AUTH", [SMTP_VERB_BDAT] = "BDAT",
};

enum smtp_command_flags {
	SMTP_CMD_SMTP_ONLY = 1 << 0,  /* not in LMTP */
	SMTP_CMD_LMTP_ONLY = 1 << 1,
	SMTP_CMD_SECRET = 1 << 2,     /* the line may carry a password: wipe it */
};

struct smtp_command_def {
	enum smtp_verb verb;
	unsigned int states;       /* where the command is allowed */
	unsigned int flags;
	const char *wrong_state;   /* the reply elsewhere */
	const char *wrong_protocol; /* the reply in the other protocol */
	void (*handler)(struct smtp_session *m, struct smtp_command *cmd);
};

#define ANY SMTP_STATES_COMMAND
static const struct smtp_command_def commands[] = {
	{ SMTP_VERB_HELO, ANY, SMTP_CMD_SMTP_ONLY, NULL, "500 5.5.1 Use LHLO in LMTP", cmd_helo },
	{ SMTP_VERB_EHLO, ANY, SMTP_CMD_SMTP_ONLY, NULL, "500 5.5.1 Use LHLO in LMTP", cmd_ehlo },
	{ SMTP_VERB_LHLO, ANY, SMTP_CMD_LMTP_ONLY, NULL, "500 5.5.1 LHLO is for LMTP; use EHLO",
	  cmd_ehlo },
	{ SMTP_VERB_MAIL, SMTP_STATE_READY, 0, "503 5.5.1 Nested MAIL command", NULL, cmd_mail },
	{ SMTP_VERB_RCPT, SMTP_STATE_MAIL | SMTP_STATE_RCPT, 0, "503 5.5.1 Need MAIL before RCPT",
	  NULL, cmd_rcpt },
	{ SMTP_VERB_DATA, SMTP_STATE_RCPT, 0, "503 5.5.1 Need RCPT before DATA", NULL, cmd_data },
	{ SMTP_VERB_RSET, ANY, 0, NULL, NULL, cmd_rset },
	{ SMTP_VERB_NOOP, ANY, 0, NULL, NULL, cmd_noop },
	{ SMTP_VERB_QUIT, ANY, 0, NULL, NULL, cmd_quit },
	{ SMTP_VERB_VRFY, ANY, 0, NULL, NULL, cmd_vrfy },
	{ SMTP_VERB_EXPN, ANY, 0, NULL, NULL, cmd_expn },
	{ SMTP_VERB_HELP, ANY, 0, NULL, NULL, cmd_help },
	{ SMTP_VERB_STARTTLS, ANY, 0, NULL, NULL, cmd_starttls },
	{ SMTP_VERB_AUTH, SMTP_STATE_READY, SMTP_CMD_SMTP_ONLY | SMTP_CMD_SECRET,
	  "503 5.5.1 AUTH not allowed during a mail transaction", "502 5.5.1 AUTH not available in LMTP",
	  cmd_auth },
	{ SMTP_VERB_BDAT, ANY, 0, NULL, NULL, cmd_bdat },
};

/* The 503 for a command outside its states: a few tell the client what
 * is missing more precisely than the row's text. */
static const char *wrong_state_reply(const struct smtp_command_def *def,
				     const struct smtp_session *m)
{
	if (m->state == SMTP_STATE_INIT) {
		if (def->verb == SMTP_VERB_MAIL)
			return "503 5.5.1 Send HELO/EHLO first";
		if (def->verb == SMTP_VERB_AUTH)
			return "503 5.5.1 Send EHLO first";
	}
	/* RFC 2033 4.2 requires 503 here for LMTP; SMTP may use it too. */
	if (def->verb == SMTP_VERB_DATA && m->state == SMTP_STATE_MAIL)
		return "503 5.5.1 No valid recipients";
	return def->wrong_state;
}

static void smtp_line(struct session *s, char *line, size_t len, bool bare_lf)
{
	struct smtp_session *m = smtp(s);
	struct smtp_command cmd;
	const char *error;
	int parsed = smtp_parse_command(line, len, &cmd, &error);
	session_count_command(s, parsed < 0 ? SMTP_VERB_UNKNOWN : cmd.verb);
	if (parsed < 0) {
		session_bad_command_f(s, "500 5.5.2 %s", error);
		return;
	}
	for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++) {
		const struct smtp_command_def *def = &commands[i];
		if (def->verb != cmd.verb)
			continue;
		if ((def->flags & SMTP_CMD_SMTP_ONLY && m->lmtp) ||
		    (def->flags & SMTP_CMD_LMTP_ONLY && !m->lmtp))
			session_bad_command(s, def->wrong_protocol);
		else if ((def->states & m->state) == 0)
			session_bad_command(s, wrong_state_reply(def, m));
		else
			def->handler(m, &cmd);
		if (def->flags & SMTP_CMD_SECRET)
			explicit_bzero(line, len);
		return;
	}
	session_bad_command(s, "500 5.5.2 Command unrecognized");
}

static void smtp_line_too_long(struct session *s)
{
	session_bad_command(s, "500 5.5.2 Line too long");
}

static void smtp_timeout(struct session *s, enum conn_timeout kind)
{
	struct smtp_session *m = smtp(s);
	switch (kind) {
	case CONN_TIMEOUT_IDLE:
		session_reply(s, "421 4.4.2 Idle timeout, closing connection");
		break;
	case CONN_TIMEOUT_COMMAND:
		session_reply(s, m->state == SMTP_STATE_DATA
					 ? "421 4.4.2 Message data arriving too slowly, closing connection"
					 : "421 4.4.2 Command not received in time, closing connection");
		break;
	case CONN_TIMEOUT_SESSION:
		session_reply(s, "421 4.4.2 Session time limit reached, closing connection");
		break;
	}
}

static void smtp_closed(struct session *s)
{
	struct smtp_session *m = smtp(s);
	if (m->state == SMTP_STATE_DATA && !session_job_running(s))
		session_info(s, "connection lost during DATA; nothing stored");
}

static void smtp_refuse(struct session *s, enum session_admit why)
{
	session_replyf(s, "421 4.7.0 %s Too many connections%s, try again later",
		       s->env->set->hostname,
		       why == SESSION_ADMIT_TOO_MANY_FROM_IP ? " from your address" : "");
}

static void start(struct session *s, bool lmtp, bool submission)
{
	struct smtp_session *m = smtp(s);
	const struct tern_settings *set = s->env->set;
	m->lmtp = lmtp;
	m->submission = submission;
	m->state = SMTP_STATE_INIT;
	buf_init(&m->data, 0);
	/* Commands before AUTH are normal in SMTP: the full line, and the
	 * protocol's idle timeout; input stays at the pre-login cap. */
	conn_set_line_max(s->conn, set->line_max);
	conn_set_idle_timeout(s->conn, lmtp ? set->lmtp_idle_timeout_ms : set->smtp_idle_timeout_ms);
	session_replyf(s, "220 %s %s tern ready", set->hostname, lmtp ? "LMTP" : "ESMTP");
}

static void smtp_start(struct session *s)
{
	start(s, false, false);
}

static void lmtp_start(struct session *s)
{
	start(s, true, false);
}

static void submission_start(struct session *s)
{
	start(s, false, true);
}

static void smtp_deinit(struct session *s)
{
	struct smtp_session *m = smtp(s);
	delivery_destroy(&m->delivery);
	free(m->rcpts);
	free(m->users);
	free(m->remotes);
	free(m->job_resolved);
	buf_deinit(&m->data);
}

/* SMTP, LMTP and submission differ only in their name and how they start. */
#define SMTP_FAMILY_PROTOCOL(proto_name, start_fn)                         \
	{                                                                  \
		.name = (proto_name),                                      \
		.size = sizeof(struct smtp_session),                       \
		.start = (start_fn),                                       \
		.refuse = smtp_refuse,                                     \
		.line = smtp_line,                                         \
		.line_too_long = smtp_line_too_long,                       \
		.raw = smtp_raw,                                           \
		.timeout = smtp_timeout,                                   \
		.closed = smtp_closed,                                     \
		.deinit = smtp_deinit,                                     \
		.too_many_errors = "421 4.7.0 Too many errors, closing connection", \
		.verbs = verb_names,                                       \
		.verb_count = sizeof(verb_names) / sizeof(verb_names[0]),  \
	}

const struct session_protocol smtp_protocol = SMTP_FAMILY_PROTOCOL("smtp", smtp_start);
const struct session_protocol lmtp_protocol = SMTP_FAMILY_PROTOCOL("lmtp", lmtp_start);
const struct session_protocol submission_protocol =
	SMTP_FAMILY_PROTOCOL("submission", submission_start);
