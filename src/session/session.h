#ifndef TERN_SESSION_H
#define TERN_SESSION_H
/*
 * session: the core under every protocol session (POP3, SMTP, LMTP and
 * whatever comes next). It owns what they share, so that each protection is
 * written, and kept, once:
 *
 * - the connection (conn) and the pre-login caps and deadlines;
 * - the session id, and log lines prefixed with "proto #id:";
 * - registration with the server's registry, and admission: a refused
 *   client is told why in the protocol's words, then closed;
 * - the one job slot: work on a worker thread with input paused, so that
 *   pipelined commands are answered in order, and the session's lifetime
 *   around it (a session whose connection has gone is freed when its job
 *   ends, never from inside one of its own callbacks);
 * - the bad-command budget;
 * - the metrics of sessions, logins and commands (session-metrics.c), and
 *   one call for each thing a protocol counts (deliveries, octets);
 * - password checks (session-login.c): the client address's failed-login
 *   penalty applied before the check, one check at a time from a penalised
 *   address, unknown users verified against a dummy hash of the same cost,
 *   and the outcome logged without the password;
 * - SASL PLAIN and LOGIN exchanges, framed with the protocol's prefix, and
 *   OAUTHBEARER and XOAUTH2 ones, whose bearer token is checked like a
 *   password (same queue, same penalty) against the JWKS key set.
 *
 * A protocol embeds struct session first in its own struct, describes
 * itself with a const struct session_protocol, and keeps only its commands
 * and states. Adding a protocol is one file and one row in the server's
 * listener table.
 *
 * Threads: the event-loop thread only, except a job's work function, which
 * runs on a worker and may touch only the session's own job fields and the
 * store.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "buf.h"
#include "conn.h"
#include "log.h"
#include "net.h"
#include "sasl.h"
#include "store.h"
#include "worker-pool.h"

struct event_base;
struct evbuffer;
struct tern_settings;
struct auth_penalty;
struct auth_cache;
struct oauth_keys;
struct session_registry;
struct audit;
struct session_login;
typedef struct ssl_ctx_st SSL_CTX;

/* The services sessions use, one set per process, made by the server.
 * Sessions only read it; the registry is changed through session_* calls. */
struct dkim_key;

struct session_env {
	struct event_base *base;
	struct worker_pool *pool;
	struct store *store;
	const struct tern_settings *set;
	SSL_CTX *tls;                  /* NULL without a certificate; SIGHUP replaces it */
	struct auth_penalty *penalty;  /* failed logins per client address */
	struct auth_cache *auth_cache; /* recent successful password checks */
	/* [auth] oauth_jwks_file's keys, NULL when not set; SIGHUP replaces
	 * the set (checks in flight keep a reference to theirs) */
	struct oauth_keys *oauth_keys;
	struct session_registry *registry;
	struct audit *audit;           /* [server] audit_log, NULL when not set */
	const struct dkim_key *dkim;   /* [dkim]'s key, NULL when not set */
	/* Called on the loop after a message was queued for remote
	 * recipients (the queue runner's wake-up); NULL: nobody listens. */
	void (*queued)(const struct session_env *env);
	void *queue;                   /* the queue runner, for queued() */
};

/* Whether a new connection is within the connection limits. */
enum session_admit {
	SESSION_ADMIT_OK,
	SESSION_ADMIT_TOO_MANY,         /* [limits] max_connections */
	SESSION_ADMIT_TOO_MANY_FROM_IP, /* [limits] max_connections_per_ip */
	SESSION_ADMIT_DROP,             /* refused, and too many refusals in flight to say so */
};

struct session;
typedef void session_fn(struct session *s);

struct session_protocol {
	const char *name;     /* "pop3", "smtp", "lmtp": log prefix */
	size_t size;          /* of the protocol's struct (struct session first) */
	/* Admitted: set the first state and its caps, greet. */
	void (*start)(struct session *s);
	/* Refused: say why in one reply; the core then closes. */
	void (*refuse)(struct session *s, enum session_admit why);
	void (*line)(struct session *s, char *line, size_t len, bool bare_lf);
	void (*line_too_long)(struct session *s);
	/* Raw mode (SMTP DATA); NULL when the protocol has none. */
	void (*raw)(struct session *s, struct evbuffer *in);
	/* The goodbye reply for a timeout; the core logs it and closes. */
	void (*timeout)(struct session *s, enum conn_timeout kind);
	/* Optional: the connection has gone; the session is freed next. */
	void (*closed)(struct session *s);
	/* Optional: what must be released on a worker, never on the loop (a
	 * store cursor: closing it may commit and take the store's locks).
	 * Once the connection has gone and no job runs, if needs_release(s),
	 * the core runs release(s) as a job and frees the session after it. */
	bool (*needs_release)(const struct session *s);
	session_fn *release;
	/* Frees what the protocol holds (not the struct itself). */
	void (*deinit)(struct session *s);
	/* The reply that closes a session which used up its bad-command budget. */
	const char *too_many_errors;
	/* Verb names for tern_commands_total, indexed by the protocol's verb
	 * number (session_count_command); index 0 and NULL entries count as
	 * "unknown". Static; never the client's spelling. */
	const char *const *verbs;
	unsigned int verb_count;
};

struct session {
	const struct session_protocol *proto;
	const struct session_env *env;
	struct conn *conn;
	uint64_t id;
	struct net_addr peer;
	/* private to the core */
	struct session *prev, *next;    /* the registry */
	struct worker_job job;
	session_fn *work, *done;
	struct session_login *login;    /* a password check or SASL exchange */
	struct session_metrics *metrics; /* the protocol's series */
	bool implicit_tls;
	unsigned int bad_commands;
	bool refused, dead, job_running, held;
};

/* --- the registry and admission (the server's side) --- */

struct session_registry *session_registry_create(void);
/* Frees every session still registered: call with no job in flight (after
 * the worker pool has stopped). */
void session_registry_destroy(struct session_registry **reg);
/* Admitted sessions open now. */
unsigned int session_registry_count(const struct session_registry *reg);

/* Checks the connection limits for a new client and logs a refusal. */
enum session_admit session_admit(const struct session_env *env, const struct net_addr *peer,
				 const char *peer_ip);

/* Takes ownership of fd and starts a session of the given protocol
 * (refused ones only say why). Nothing is called back before it returns. */
void session_create(const struct session_env *env, const struct session_protocol *proto,
		    int fd, const struct sockaddr *peer, socklen_t peer_len, bool implicit_tls,
		    enum session_admit admit);

/* --- services for protocols --- */

void session_log(const struct session *s, enum log_level level, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
#define session_info(s, ...) session_log((s), LOG_INFO, __VA_ARGS__)
#define session_warn(s, ...) session_log((s), LOG_WARN, __VA_ARGS__)
#define session_error(s, ...) session_log((s), LOG_ERROR, __VA_ARGS__)

/* One reply line; CRLF is added. */
void session_reply(struct session *s, const char *line);
void session_replyf(struct session *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* A reply to a bad command: counts against [limits] max_bad_commands; at the
 * limit the protocol's too_many_errors follows and the session closes. */
void session_bad_command(struct session *s, const char *line);
void session_bad_command_f(struct session *s, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/* true when the peer is in [auth] trusted_networks. */
bool session_peer_trusted(const struct session *s);
/* Whether USER/PASS, AUTH PLAIN and AUTH LOGIN may be used here and now
 * under [auth] plaintext. */
bool session_plaintext_allowed(const struct session *s);
/* The TLS context for STARTTLS/STLS (NULL when none is configured). */
SSL_CTX *session_tls(const struct session *s);

/* Starts the login deadline ([limits] login_timeout). */
void session_start_login_deadline(struct session *s);
/* The client has logged in: lifts the pre-login caps to [limits] line_max
 * and input_buffer, ends the login deadline and sets the idle timeout. */
void session_logged_in(struct session *s, unsigned int idle_ms);

/* Runs work(s) on a worker thread, then done(s) on the loop, with input
 * paused meanwhile. Input resumes when done() returns, unless done() started
 * another job, called session_hold() or closed the conn. When the connection
 * has gone meanwhile, done() is not called and the session is freed. One job
 * at a time. */
void session_run_job(struct session *s, session_fn *work, session_fn *done);
/* The same on the pool's first lane (worker_pool_submit_first): for login
 * checks, which must not wait behind queued RETRs and deliveries. */
void session_run_job_first(struct session *s, session_fn *work, session_fn *done);
/* From a job's done(): keep input paused (e.g. while a reply streams);
 * session_resume() ends the hold. */
void session_hold(struct session *s);
/* As session_run_job(), but work runs on the loop, at once, when the loop
 * has no other event ready and the store can answer from memory only
 * (store_nowait_begin): a short job (a message in the page cache) then
 * delays no other session and saves the worker's round trip, two thread
 * wake-ups. work must leave no trace when a store call says WOULDBLOCK:
 * it then runs again, from the start, on a worker. With events waiting
 * the worker runs it beside the loop, which goes on serving them. */
void session_run_job_nowait(struct session *s, session_fn *work, session_fn *done);
/* true while a job of the session's runs (its work or done is pending). */
bool session_job_running(const struct session *s);
void session_resume(struct session *s);

/* --- metrics (session-metrics.c) --- */

/* Creates the protocol's session, login and command series now, so that
 * they read 0 from the start rather than appear with its first session
 * (the server calls it for each protocol it listens for). */
void session_metrics_register(const struct session_protocol *proto);

/* A command line: verb is the protocol's verb number (its parser's
 * unknown value, 0, for an unknown verb or a line that did not parse). */
void session_count_command(struct session *s, unsigned int verb);
/* What recipients of a message got: stored (2xx), refused for now (4xx),
 * refused for good (5xx). */
enum session_delivery {
	SESSION_DELIVERY_OK,
	SESSION_DELIVERY_TEMPFAIL,
	SESSION_DELIVERY_PERMFAIL,
};
void session_count_delivery(struct session *s, enum session_delivery result,
			    unsigned int recipients);
/* Message octets as they crossed the connection: received in DATA
 * (dot-stuffed, the final "." line included), sent by RETR and TOP (the
 * same, without the +OK line). */
void session_count_octets_received(struct session *s, size_t n);
void session_count_octets_sent(struct session *s, size_t n);
/* A login the [auth] plaintext policy refused before any password was
 * looked at. */
void session_count_login_refused(struct session *s);

/* --- logins (session-login.c) --- */

enum session_login_result {
	SESSION_LOGIN_OK,
	SESSION_LOGIN_FAILED,   /* wrong password or unknown user */
	SESSION_LOGIN_TEMPFAIL, /* the store could not answer */
};

/* What a login does once the password is right, on the worker (POP3 opens
 * the maildrop there: one job, one round trip). Anything but STORE_OK makes
 * the login TEMPFAIL. */
typedef enum store_status session_login_work_fn(struct session *s, const char *user);
typedef void session_login_done_fn(struct session *s, enum session_login_result result,
				   const char *user);

/* Checks user's password, which is taken from secret (wiped). First the
 * client address's penalty for earlier failures is waited out; while an
 * address has one, its checks run one at a time, in arrival order. Then a
 * worker verifies the password (an unknown user against a dummy hash of the
 * same cost), runs after_ok (may be NULL) on success, and done() is called
 * on the loop with the result; the failure or success is recorded against
 * the address and logged (never the password). Input is paused until done()
 * returns, as for a job. user must be a normalised address. */
void session_check_password(struct session *s, const char *user, struct buf *secret,
			    session_login_work_fn *after_ok, session_login_done_fn *done);

/* How a SASL exchange that ended without a password check failed. */
enum session_sasl_failure {
	SESSION_SASL_CANCELLED,  /* the client sent "*" */
	SESSION_SASL_BAD_BASE64, /* a response was not base64 */
	SESSION_SASL_MALFORMED,  /* decoded, but not a valid message: see text */
	SESSION_SASL_TOO_LONG,   /* a response line was over [auth] max_response */
	SESSION_SASL_BAD_USER,   /* the user name is not an address */
	SESSION_SASL_BAD_PASSWORD, /* LOGIN: an empty password, or one with a NUL */
};

struct session_sasl_ops {
	/* The prefix of a challenge line: "+ " (POP3), "334 " (SMTP). */
	const char *challenge_prefix;
	/* The exchange failed before any password check: reply (usually with
	 * session_bad_command). text: a short phrase for the reply. */
	void (*failed)(struct session *s, enum session_sasl_failure why, const char *text);
	session_login_work_fn *after_ok; /* as for session_check_password */
	session_login_done_fn *done;
};

/* Starts an AUTH exchange for mech, with the initial response if the
 * client sent one (NULL otherwise). Until it ends, input lines go to the
 * exchange (at most [auth] max_response long) and are wiped after use; it
 * ends with ops->failed() or a check and ops->done(). ops must outlive the
 * exchange.
 *
 * OAUTHBEARER and XOAUTH2 (only where session_oauth_offered()): the bearer
 * token is verified on a worker against env->oauth_keys and the [auth]
 * oauth_* settings, after the address's penalty like a password; the user
 * is the token's (normalised), which must exist and equal the name the
 * client gave, if any. A refused token is answered with the mechanism's
 * JSON error challenge; the client's next line, whatever it holds, ends
 * the exchange with ops->done(FAILED). The failure counts for the penalty
 * as a wrong password does. */
void session_sasl_start(struct session *s, enum sasl_mech mech, const char *initial,
			const struct session_sasl_ops *ops);
/* true while an exchange waits for a client response. */
bool session_sasl_active(const struct session *s);
/* Whether OAUTHBEARER and XOAUTH2 may be offered and used here and now:
 * OAuth is configured and, a token being a credential in clear, the
 * plaintext policy allows it. */
bool session_oauth_offered(const struct session *s);

#endif
