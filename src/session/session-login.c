/*
 * session-login: password checks and SASL exchanges for every protocol.
 *
 * The failed-login penalty is paid before the check, whatever the password:
 * a client address with earlier failures waits auth_penalty_delay() first,
 * so a right guess is answered no sooner than a wrong one, and a guesser
 * learns nothing by giving up early. While an address has a penalty its
 * checks run one at a time (a queue per address), so parallel connections
 * buy no parallel guesses; an address without failures (an office behind
 * one NAT) is never queued. Trusted networks have no penalty.
 *
 * A check is of a password or (OAUTHBEARER, XOAUTH2) of a bearer token: the
 * same request, queue, penalty and outcome, only the work on the worker
 * differs (a hash verified, or a JWT's signature and claims, then the user
 * it names looked up). A refused token is answered first with its
 * mechanism's error challenge (RFC 7628 3.2.2) and the client's one more
 * line, then done(FAILED); the address's queue moves on meanwhile.
 *
 * Invariants:
 * - A login holds its session's input paused from the request to done(),
 *   except while a refused token's error challenge waits for its answer.
 * - A queued login is in exactly one queue; a queue exists only while it
 *   has an active login, and is freed with its last one.
 * - Secrets live only in the login's capped buf and are wiped as soon as
 *   the check has read them, and on every other path.
 */
#include <event2/event.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include "auth-cache.h"
#include "clock.h"
#include "auth-penalty.h"
#include "mail-address.h"
#include "oauth.h"
#include "session-private.h"
#include "settings.h"

struct session_login_queue {
	struct net_addr key;
	struct session_login_queue *next_bucket;
	struct session_login *head, *tail;  /* waiting for their turn */
	struct session_login *active;       /* waiting out the penalty, or checking */
};

struct session_login {
	struct session *s;
	char user[MAIL_ADDRESS_MAX + 1];
	struct buf secret;
	session_login_work_fn *after_ok;
	session_login_done_fn *done;
	struct session_login_queue *queue;
	struct session_login *queue_next;
	struct event *timer;       /* the penalty wait */
	unsigned int penalty_ms;
	/* a bearer token instead of a password: its mechanism, and the key set
	 * as it was at the request (a reference: SIGHUP may replace the
	 * server's meanwhile) */
	enum sasl_mech bearer_mech;
	struct oauth_keys *keys;
	/* worker results */
	enum store_status status;
	bool ok;
	const char *refusal;       /* a bearer token: why it was refused (for the log) */
	/* SASL */
	const struct session_sasl_ops *sasl;
	struct sasl_exchange exchange;
	bool sasl_inited, sasl_active;
	bool error_pending;        /* a refused token's error challenge was sent */
	size_t saved_line_max;
};

static struct session_registry *registry(const struct session *s)
{
	return s->env->registry;
}

static struct session_login *login_get(struct session *s)
{
	if (s->login == NULL) {
		struct session_login *l = xcalloc(1, sizeof(*l));
		l->s = s;
		buf_init(&l->secret, s->env->set->auth_response_max);
		s->login = l;
	}
	return s->login;
}

/* --- the queue per penalised address --- */

static struct session_login_queue **queue_bucket(struct session_registry *reg,
						 const struct net_addr *key)
{
	if (reg->queue_hash_key == 0 &&
	    getrandom(&reg->queue_hash_key, sizeof(reg->queue_hash_key), 0) !=
		    (ssize_t)sizeof(reg->queue_hash_key))
		reg->queue_hash_key = (uint64_t)(uintptr_t)reg | 1;
	uint64_t h = 0xcbf29ce484222325ULL ^ reg->queue_hash_key;
	h = (h ^ (uint64_t)key->family) * 0x100000001b3ULL;
	for (size_t i = 0; i < sizeof(key->bytes); i++)
		h = (h ^ key->bytes[i]) * 0x100000001b3ULL;
	h ^= h >> 29;
	return &reg->login_queues[h % SESSION_LOGIN_QUEUE_BUCKETS];
}

static struct session_login_queue *queue_find(struct session_registry *reg,
					      const struct net_addr *key)
{
	for (struct session_login_queue *q = *queue_bucket(reg, key); q != NULL; q = q->next_bucket)
		if (net_addr_equal(&q->key, key))
			return q;
	return NULL;
}

static void queue_destroy(struct session_registry *reg, struct session_login_queue *q)
{
	struct session_login_queue **pp = queue_bucket(reg, &q->key);
	while (*pp != q)
		pp = &(*pp)->next_bucket;
	*pp = q->next_bucket;
	free(q);
}

static void start_check(struct session_login *l);

/* Gives the address's turn to its next waiting login, which first waits
 * out the penalty as it stands now; frees the queue when none waits. */
static void queue_advance(struct session_registry *reg, struct session_login_queue *q)
{
	struct session_login *l = q->head;
	if (l == NULL) {
		queue_destroy(reg, q);
		return;
	}
	q->head = l->queue_next;
	if (q->head == NULL)
		q->tail = NULL;
	l->queue_next = NULL;
	q->active = l;
	const struct session *s = l->s;
	l->penalty_ms = auth_penalty_delay(s->env->penalty, &s->peer, clock_monotonic_ms());
	if (l->penalty_ms == 0) {
		start_check(l);
		return;
	}
	struct timeval tv = { l->penalty_ms / 1000, (suseconds_t)(l->penalty_ms % 1000) * 1000 };
	evtimer_add(l->timer, &tv);
}

/* The login leaves its queue (done, or its session has gone). */
static void queue_leave(struct session_login *l)
{
	struct session_login_queue *q = l->queue;
	if (q == NULL)
		return;
	struct session_registry *reg = registry(l->s);
	l->queue = NULL;
	if (q->active == l) {
		q->active = NULL;
		queue_advance(reg, q);
		return;
	}
	struct session_login **pp = &q->head;
	while (*pp != NULL && *pp != l)
		pp = &(*pp)->queue_next;
	if (*pp == l) {
		*pp = l->queue_next;
		if (q->tail == l) {
			q->tail = NULL;
			for (struct session_login *w = q->head; w != NULL; w = w->queue_next)
				q->tail = w;
		}
	}
	l->queue_next = NULL;
}

static void penalty_over(evutil_socket_t fd, short what, void *arg)
{
	start_check(arg);
}

/* --- the check --- */

static enum store_status password_work(struct session *s, struct session_login *l)
{
	struct buf hash;
	buf_init(&hash, 1024);
	enum store_status st = store_user_get(s->env->store, l->user, &hash);
	if (st == STORE_OK || st == STORE_NOTFOUND) {
		/* An unknown user costs a full hash too (a dummy one): timing
		 * tells nobody which names exist. */
		l->ok = auth_cache_verify(s->env->auth_cache, l->secret.data, l->secret.len,
					  st == STORE_OK ? hash.data : NULL);
		st = STORE_OK;
	}
	buf_wipe(&l->secret);
	buf_wipe(&hash);
	buf_deinit(&hash);
	return st;
}

/* The token's signature and claims; then the user it names, normalised,
 * must be the one the client named (if it did) and must exist. l->user
 * becomes the token's user once the token is good, so that a failure is
 * counted for the name it was for. */
static enum store_status bearer_work(struct session *s, struct session_login *l)
{
	const struct tern_settings *set = s->env->set;
	const struct oauth_policy policy = { set->oauth_issuer, set->oauth_audience,
					     set->oauth_user_claim };
	char claim[MAIL_ADDRESS_MAX + 1];
	l->ok = false;
	int r = l->keys == NULL ? -1
				: oauth_verify(l->keys, &policy, l->secret.data, l->secret.len,
					       time(NULL), claim, sizeof(claim), &l->refusal);
	buf_wipe(&l->secret);
	if (l->keys == NULL)
		l->refusal = "no [auth] oauth_jwks_file";
	if (r < 0)
		return STORE_OK;
	struct mail_address addr;
	const char *error;
	char user[MAIL_ADDRESS_MAX + 1];
	if (mail_address_parse(claim, strlen(claim), &addr, &error) < 0) {
		l->refusal = "the user claim is not an address";
		return STORE_OK;
	}
	mail_address_format(&addr, user, sizeof(user));
	if (l->user[0] != '\0' && strcmp(l->user, user) != 0) {
		l->refusal = "the token is for another user than the one named";
		return STORE_OK;
	}
	str_copy(l->user, user, sizeof(l->user));
	struct buf hash;
	buf_init(&hash, 1024);
	enum store_status st = store_user_get(s->env->store, l->user, &hash);
	buf_wipe(&hash);
	buf_deinit(&hash);
	if (st == STORE_NOTFOUND) {
		l->refusal = "no such user";
		return STORE_OK;
	}
	l->ok = st == STORE_OK;
	return st;
}

static void check_work(struct session *s)
{
	struct session_login *l = s->login;
	enum store_status st = l->bearer_mech != SASL_MECH_UNKNOWN ? bearer_work(s, l)
								    : password_work(s, l);
	if (st == STORE_OK && l->ok && l->after_ok != NULL)
		st = l->after_ok(s, l->user);
	l->status = st;
}

/* Ends the login and tells the protocol. */
static void login_finish(struct session *s, enum session_login_result result)
{
	struct session_login *l = s->login;
	char user[MAIL_ADDRESS_MAX + 1];
	str_copy(user, l->user, sizeof(user));
	session_login_done_fn *done = l->done;
	session_login_free(s);
	done(s, result, user);
}

static void bearer_refused(struct session *s);

static void check_done(struct session *s)
{
	struct session_login *l = s->login;
	session_count_login(s, l->status, l->ok, l->penalty_ms);
	struct auth_penalty *penalty = s->env->penalty;
	bool trusted = session_peer_trusted(s);
	enum session_login_result result;
	if (l->status != STORE_OK) {
		session_warn(s, "login error user=%s error=%s", l->user, store_status_name(l->status));
		result = SESSION_LOGIN_TEMPFAIL;
	} else if (!l->ok) {
		if (!trusted)
			auth_penalty_fail(penalty, &s->peer, l->user, clock_monotonic_ms());
		if (l->bearer_mech != SASL_MECH_UNKNOWN) {
			session_info(s, "login failed user=%s ip=%s token=refused reason=%s penalty_ms=%u",
				     l->user[0] != '\0' ? l->user : "(no user named)",
				     conn_peer_ip(s->conn), l->refusal, l->penalty_ms);
			bearer_refused(s);
			return;
		}
		session_info(s, "login failed user=%s ip=%s password=******** penalty_ms=%u",
			     l->user, conn_peer_ip(s->conn), l->penalty_ms);
		result = SESSION_LOGIN_FAILED;
	} else {
		if (!trusted)
			auth_penalty_success(penalty, &s->peer, l->user);
		result = SESSION_LOGIN_OK;
	}
	login_finish(s, result);
}

/* On the first lane: a login waits for a free thread, never behind the
 * queued RETRs and deliveries of sessions already logged in. */
static void start_check(struct session_login *l)
{
	session_run_job_first(l->s, check_work, check_done);
}

/* Also the request for a bearer token (l->bearer_mech set; user "" when
 * the client named none). */
void session_check_password(struct session *s, const char *user, struct buf *secret,
			    session_login_work_fn *after_ok, session_login_done_fn *done)
{
	struct session_login *l = login_get(s);
	str_copy(l->user, user, sizeof(l->user));
	if (secret != &l->secret) {
		buf_wipe(&l->secret);
		if (buf_append(&l->secret, secret->data, secret->len) < 0)
			panic("session: password over the response cap");
		buf_wipe(secret);
	}
	l->after_ok = after_ok;
	l->done = done;
	l->penalty_ms = 0;
	conn_pause(s->conn);
	if (session_peer_trusted(s)) {
		start_check(l);
		return;
	}
	struct session_registry *reg = registry(s);
	struct net_addr key;
	net_client_key(&key, &s->peer);
	struct session_login_queue *q = queue_find(reg, &key);
	if (q == NULL) {
		if (auth_penalty_delay(s->env->penalty, &s->peer, clock_monotonic_ms()) == 0) {
			start_check(l);
			return;
		}
		q = xcalloc(1, sizeof(*q));
		q->key = key;
		struct session_login_queue **bucket = queue_bucket(reg, &key);
		q->next_bucket = *bucket;
		*bucket = q;
	}
	if (l->timer == NULL)
		l->timer = evtimer_new(s->env->base, penalty_over, l);
	l->queue = q;
	if (q->tail != NULL)
		q->tail->queue_next = l;
	else
		q->head = l;
	q->tail = l;
	if (q->active == NULL)
		queue_advance(reg, q);
}

void session_login_queues_clear(struct session_registry *reg)
{
	for (size_t i = 0; i < SESSION_LOGIN_QUEUE_BUCKETS; i++) {
		while (reg->login_queues[i] != NULL) {
			struct session_login_queue *q = reg->login_queues[i];
			reg->login_queues[i] = q->next_bucket;
			if (q->active != NULL)
				q->active->queue = NULL;
			for (struct session_login *l = q->head, *next; l != NULL; l = next) {
				next = l->queue_next;
				l->queue = NULL;
				l->queue_next = NULL;
			}
			free(q);
		}
	}
}

void session_login_free(struct session *s)
{
	struct session_login *l = s->login;
	if (l == NULL)
		return;
	if (l->timer != NULL)
		event_free(l->timer);
	if (l->sasl_inited)
		sasl_exchange_deinit(&l->exchange);
	queue_leave(l);
	oauth_keys_unref(&l->keys);
	buf_wipe(&l->secret);
	buf_deinit(&l->secret);
	explicit_bzero(l->user, sizeof(l->user));
	s->login = NULL;
	free(l);
}

/* --- SASL --- */

bool session_sasl_active(const struct session *s)
{
	return s->login != NULL && s->login->sasl_active;
}

/* Leaves the exchange: the line cap goes back to what it was. */
static void sasl_end(struct session *s)
{
	struct session_login *l = s->login;
	if (l->sasl_active)
		conn_set_line_max(s->conn, l->saved_line_max);
	l->sasl_active = false;
	if (l->sasl_inited)
		sasl_exchange_deinit(&l->exchange);
	l->sasl_inited = false;
}

static void sasl_fail(struct session *s, enum session_sasl_failure why, const char *text)
{
	const struct session_sasl_ops *ops = s->login->sasl;
	char phrase[160];
	str_copy(phrase, text, sizeof(phrase));
	sasl_end(s);
	session_login_free(s);
	session_count_login_aborted(s);
	ops->failed(s, why, phrase);
}

static enum session_sasl_failure failure_of(enum sasl_error e)
{
	switch (e) {
	case SASL_ERROR_BASE64: return SESSION_SASL_BAD_BASE64;
	case SASL_ERROR_USER: return SESSION_SASL_BAD_USER;
	case SASL_ERROR_PASSWORD: return SESSION_SASL_BAD_PASSWORD;
	case SASL_ERROR_CANCELLED: return SESSION_SASL_CANCELLED;
	case SASL_ERROR_TOO_LONG: return SESSION_SASL_TOO_LONG;
	case SASL_ERROR_NONE:
	case SASL_ERROR_MALFORMED:
	case SASL_ERROR_AUTHZID:
		break;
	}
	return SESSION_SASL_MALFORMED;
}

/* What a start or step of the exchange produced. */
static void sasl_result(struct session *s, enum sasl_result r, const struct sasl_output *out)
{
	struct session_login *l = s->login;
	switch (r) {
	case SASL_CONTINUE:
		if (!l->sasl_active) {
			l->saved_line_max = conn_line_max(s->conn);
			conn_set_line_max(s->conn, s->env->set->auth_response_max);
			l->sasl_active = true;
		}
		conn_puts(s->conn, l->sasl->challenge_prefix);
		session_reply(s, out->challenge);
		return;
	case SASL_FAILED:
		sasl_fail(s, failure_of(out->error), out->error_text);
		return;
	case SASL_DONE:
		break;
	}
	/* The user name must be an address; checked names are normalised. A
	 * bearer token may come without one: the token names the user. */
	char user[MAIL_ADDRESS_MAX + 1] = "";
	enum sasl_mech mech = l->exchange.mech;
	if (!sasl_mech_is_bearer(mech) || out->user[0] != '\0') {
		struct mail_address addr;
		const char *error;
		/* SASL names are UTF-8 (RFC 4616): UTF-8 local parts are taken. */
		if (mail_address_parse_utf8(out->user, strlen(out->user), &addr, &error) < 0) {
			buf_wipe(&l->secret);
			sasl_fail(s, SESSION_SASL_BAD_USER, "Invalid user name (expected user@domain)");
			return;
		}
		mail_address_format(&addr, user, sizeof(user));
	}
	const struct session_sasl_ops *ops = l->sasl;
	sasl_end(s);
	if (sasl_mech_is_bearer(mech)) {
		l->bearer_mech = mech;
		l->keys = s->env->oauth_keys != NULL ? oauth_keys_ref(s->env->oauth_keys) : NULL;
	}
	session_check_password(s, user, &l->secret, ops->after_ok, ops->done);
}

void session_sasl_start(struct session *s, enum sasl_mech mech, const char *initial,
			const struct session_sasl_ops *ops)
{
	struct session_login *l = login_get(s);
	l->sasl = ops;
	sasl_exchange_init(&l->exchange, mech, s->env->set->auth_response_max);
	l->sasl_inited = true;
	struct sasl_output out;
	enum sasl_result r = sasl_exchange_start(&l->exchange, initial,
						 initial != NULL ? strlen(initial) : 0, &l->secret,
						 &out);
	sasl_result(s, r, &out);
}

/* RFC 7628 3.2.2: a refused token gets an error challenge; the client's
 * answer (whatever it is) ends the exchange as a failure. The address's
 * turn is given up now: the failure is recorded, the penalty has grown. */
static void bearer_refused(struct session *s)
{
	struct session_login *l = s->login;
	queue_leave(l);
	l->saved_line_max = conn_line_max(s->conn);
	conn_set_line_max(s->conn, s->env->set->auth_response_max);
	l->sasl_active = true;
	l->error_pending = true;
	conn_puts(s->conn, l->sasl->challenge_prefix);
	session_reply(s, sasl_bearer_error_challenge(l->bearer_mech));
}

/* The answer to the error challenge has come (or was too long). */
static void bearer_error_answered(struct session *s)
{
	sasl_end(s);
	login_finish(s, SESSION_LOGIN_FAILED);
}

bool session_oauth_offered(const struct session *s)
{
	return s->env->oauth_keys != NULL && session_plaintext_allowed(s);
}

void session_sasl_line(struct session *s, char *line, size_t len)
{
	struct session_login *l = s->login;
	if (l->error_pending) {
		bearer_error_answered(s);
		return;
	}
	struct sasl_output out;
	enum sasl_result r = sasl_exchange_step(&l->exchange, line, len, &l->secret, &out);
	sasl_result(s, r, &out);
}

void session_sasl_too_long(struct session *s)
{
	if (s->login->error_pending) {
		bearer_error_answered(s);
		return;
	}
	sasl_fail(s, SESSION_SASL_TOO_LONG, "Authentication response too long");
}
