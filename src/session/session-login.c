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
 * Invariants:
 * - A login holds its session's input paused from the request to done().
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
#include "auth-penalty.h"
#include "mail-address.h"
#include "session-private.h"
#include "settings.h"

enum sasl_step {
	SASL_STEP_NONE,
	SASL_STEP_PLAIN,          /* the challenge for PLAIN's response is out */
	SASL_STEP_LOGIN_USER,     /* "Username:" is out */
	SASL_STEP_LOGIN_PASSWORD, /* "Password:" is out */
};

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
	/* worker results */
	enum store_status status;
	bool ok;
	/* SASL */
	const struct session_sasl_ops *sasl;
	enum sasl_step step;
	size_t saved_line_max;
};

static uint64_t monotonic_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

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

/* The unit a client holds: an IPv4 address, an IPv6 /64 (as the penalty). */
static void queue_key(struct net_addr *key, const struct net_addr *addr)
{
	if (addr->family == AF_INET6)
		net_addr_prefix(key, addr, 64);
	else
		*key = *addr;
}

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
	l->penalty_ms = auth_penalty_delay(s->env->penalty, &s->peer, monotonic_ms());
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

static void check_work(struct session *s)
{
	struct session_login *l = s->login;
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
	if (st == STORE_OK && l->ok && l->after_ok != NULL)
		st = l->after_ok(s, l->user);
	l->status = st;
}

static void check_done(struct session *s)
{
	struct session_login *l = s->login;
	struct auth_penalty *penalty = s->env->penalty;
	bool trusted = session_peer_trusted(s);
	enum session_login_result result;
	if (l->status != STORE_OK) {
		session_warn(s, "login for %s failed: %s", l->user, store_status_name(l->status));
		result = SESSION_LOGIN_TEMPFAIL;
	} else if (!l->ok) {
		if (!trusted)
			auth_penalty_fail(penalty, &s->peer, l->user, monotonic_ms());
		session_info(s, "authentication failed for %s from %s (password ********; checked after a %u ms penalty)",
			     l->user, conn_peer_ip(s->conn), l->penalty_ms);
		result = SESSION_LOGIN_FAILED;
	} else {
		if (!trusted)
			auth_penalty_success(penalty, &s->peer, l->user);
		result = SESSION_LOGIN_OK;
	}
	char user[MAIL_ADDRESS_MAX + 1];
	str_copy(user, l->user, sizeof(user));
	session_login_done_fn *done = l->done;
	session_login_free(s);
	done(s, result, user);
}

static void start_check(struct session_login *l)
{
	session_run_job(l->s, check_work, check_done);
}

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
	queue_key(&key, &s->peer);
	struct session_login_queue *q = queue_find(reg, &key);
	if (q == NULL) {
		if (auth_penalty_delay(s->env->penalty, &s->peer, monotonic_ms()) == 0) {
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

void session_login_free(struct session *s)
{
	struct session_login *l = s->login;
	if (l == NULL)
		return;
	if (l->timer != NULL)
		event_free(l->timer);
	queue_leave(l);
	buf_wipe(&l->secret);
	buf_deinit(&l->secret);
	explicit_bzero(l->user, sizeof(l->user));
	s->login = NULL;
	free(l);
}

/* --- SASL --- */

bool session_sasl_active(const struct session *s)
{
	return s->login != NULL && s->login->step != SASL_STEP_NONE;
}

static void sasl_set_step(struct session *s, enum sasl_step step)
{
	struct session_login *l = s->login;
	if (l->step == SASL_STEP_NONE && step != SASL_STEP_NONE) {
		l->saved_line_max = conn_line_max(s->conn);
		conn_set_line_max(s->conn, s->env->set->auth_response_max);
	} else if (l->step != SASL_STEP_NONE && step == SASL_STEP_NONE) {
		conn_set_line_max(s->conn, l->saved_line_max);
	}
	l->step = step;
}

static void sasl_challenge(struct session *s, enum sasl_step step, const char *b64)
{
	sasl_set_step(s, step);
	conn_puts(s->conn, s->login->sasl->challenge_prefix);
	session_reply(s, b64);
}

/* The exchange ended without a check. */
static void sasl_fail(struct session *s, enum session_sasl_failure why, const char *text)
{
	const struct session_sasl_ops *ops = s->login->sasl;
	sasl_set_step(s, SASL_STEP_NONE);
	session_login_free(s);
	ops->failed(s, why, text);
}

/* Decodes one response into out; on failure ends the exchange. */
static bool sasl_decode(struct session *s, const char *b64, size_t len, struct buf *out)
{
	const char *error;
	if (sasl_decode_response(b64, len, out, &error) < 0) {
		sasl_fail(s, SESSION_SASL_BAD_BASE64, error);
		return false;
	}
	return true;
}

/* The credentials are complete: normalise the name, check the password. */
static void sasl_check(struct session *s, const char *name)
{
	struct session_login *l = s->login;
	const struct session_sasl_ops *ops = l->sasl;
	struct mail_address addr;
	const char *error;
	if (mail_address_parse(name, strlen(name), &addr, &error) < 0) {
		buf_wipe(&l->secret);
		sasl_fail(s, SESSION_SASL_BAD_USER, "the user name is not an address (user@domain)");
		return;
	}
	char user[MAIL_ADDRESS_MAX + 1];
	mail_address_format(&addr, user, sizeof(user));
	sasl_set_step(s, SASL_STEP_NONE);
	session_check_password(s, user, &l->secret, ops->after_ok, ops->done);
}

static void sasl_plain(struct session *s, const char *b64, size_t len)
{
	struct session_login *l = s->login;
	struct buf msg;
	const char *error, *authcid, *passwd;
	size_t passwd_len;
	buf_init(&msg, s->env->set->auth_response_max);
	if (!sasl_decode(s, b64, len, &msg)) {
		buf_deinit(&msg);
		return;
	}
	if (sasl_plain_split(&msg, &authcid, &passwd, &passwd_len, &error) < 0) {
		buf_wipe(&msg);
		buf_deinit(&msg);
		sasl_fail(s, SESSION_SASL_MALFORMED, error);
		return;
	}
	char name[MAIL_ADDRESS_MAX + 1];
	bool name_ok = str_copy(name, authcid, sizeof(name)) < sizeof(name);
	buf_wipe(&l->secret);
	int rc = buf_append(&l->secret, passwd, passwd_len);
	buf_wipe(&msg);
	buf_deinit(&msg);
	if (!name_ok || rc < 0) {
		buf_wipe(&l->secret);
		sasl_fail(s, name_ok ? SESSION_SASL_TOO_LONG : SESSION_SASL_BAD_USER,
			  name_ok ? "Password too long" : "the user name is not an address (user@domain)");
		return;
	}
	sasl_check(s, name);
}

/* LOGIN's user name (initial response or answer to "Username:"). */
static void sasl_login_user(struct session *s, const char *b64, size_t len)
{
	struct session_login *l = s->login;
	struct buf name;
	buf_init(&name, MAIL_ADDRESS_MAX);
	if (sasl_decode(s, b64, len, &name)) {
		str_copy(l->user, name.data, sizeof(l->user));
		sasl_challenge(s, SASL_STEP_LOGIN_PASSWORD, "UGFzc3dvcmQ6"); /* Password: */
	}
	buf_deinit(&name);
}

static void sasl_login_password(struct session *s, const char *b64, size_t len)
{
	struct session_login *l = s->login;
	if (!sasl_decode(s, b64, len, &l->secret))
		return;
	if (l->secret.len == 0 || memchr(l->secret.data, '\0', l->secret.len) != NULL) {
		buf_wipe(&l->secret);
		sasl_fail(s, SESSION_SASL_BAD_PASSWORD, "Authentication credentials invalid");
		return;
	}
	char name[MAIL_ADDRESS_MAX + 1];
	str_copy(name, l->user, sizeof(name));
	sasl_check(s, name);
}

void session_sasl_start(struct session *s, enum sasl_mech mech, const char *initial,
			const struct session_sasl_ops *ops)
{
	struct session_login *l = login_get(s);
	l->sasl = ops;
	bool has_initial = initial != NULL && *initial != '\0';
	if (mech == SASL_MECH_LOGIN) {
		if (has_initial)
			sasl_login_user(s, initial, strlen(initial));
		else
			sasl_challenge(s, SASL_STEP_LOGIN_USER, "VXNlcm5hbWU6"); /* Username: */
		return;
	}
	if (has_initial)
		sasl_plain(s, initial, strlen(initial));
	else
		sasl_challenge(s, SASL_STEP_PLAIN, "");
}

void session_sasl_line(struct session *s, char *line, size_t len)
{
	enum sasl_step step = s->login->step;
	if (len == 1 && line[0] == '*') {
		sasl_fail(s, SESSION_SASL_CANCELLED, "Authentication cancelled");
		return;
	}
	switch (step) {
	case SASL_STEP_NONE:
		break;
	case SASL_STEP_PLAIN:
		sasl_plain(s, line, len);
		break;
	case SASL_STEP_LOGIN_USER:
		sasl_login_user(s, line, len);
		break;
	case SASL_STEP_LOGIN_PASSWORD:
		sasl_login_password(s, line, len);
		break;
	}
}

void session_sasl_too_long(struct session *s)
{
	sasl_fail(s, SESSION_SASL_TOO_LONG, "Authentication response too long");
}
