#ifndef TERN_DAEMON_H
#define TERN_DAEMON_H
/*
 * daemon: what the protocol sessions share: the event loop, the worker pool,
 * the store, the settings and the TLS context; and the registry of live
 * sessions, so a shutdown can finish store jobs in flight and free every
 * session. One instance per process, passed explicitly (no global).
 */
#include <stdbool.h>
#include <stdint.h>

#include "net.h"
#include "settings.h"

struct event_base;
struct worker_pool;
struct store;
struct auth_penalty;
struct auth_cache;
struct conn;
typedef struct ssl_ctx_st SSL_CTX;

/* Whether a new connection is within the connection limits. A refused one
 * still gets a session, which only says why (in the protocol's words, and
 * through TLS on an implicit-TLS port) and closes. */
enum daemon_admit {
	DAEMON_ADMIT_OK,
	DAEMON_ADMIT_TOO_MANY,        /* [limits] max_connections */
	DAEMON_ADMIT_TOO_MANY_FROM_IP, /* [limits] max_connections_per_ip */
};

struct daemon_session {
	struct daemon_session *prev, *next;
	/* Frees the session at shutdown (no job is in flight then). */
	void (*destroy)(struct daemon_session *s);
	struct net_addr peer;   /* for the per-IP limit */
	bool refused;           /* not counted against the limits */
};

struct daemon {
	struct event_base *base;
	struct worker_pool *pool;
	struct store *store;
	const struct tern_settings *set;
	SSL_CTX *tls;                  /* NULL when no certificate is configured */
	struct auth_penalty *penalty;  /* failed-login delays per client address */
	struct auth_cache *auth_cache; /* recent successful password checks */
	uint64_t next_session_id;
	struct daemon_session sessions; /* list head */
	unsigned int session_count;    /* admitted sessions */
	unsigned int refused_count;    /* sessions saying "too many connections" */
	bool shutting_down;
};

/* s->peer and s->refused must be set first. */
void daemon_session_register(struct daemon *d, struct daemon_session *s);
void daemon_session_unregister(struct daemon *d, struct daemon_session *s);

/* Checks the connection limits for a new client (and logs a refusal). */
enum daemon_admit daemon_admit(struct daemon *d, const struct net_addr *peer,
			       const char *peer_ip);
/* true when the peer is in [auth] trusted_networks. */
bool daemon_peer_trusted(const struct daemon *d, const struct conn *conn);
/* Whether USER/PASS, AUTH PLAIN and AUTH LOGIN may be used on this
 * connection under [auth] plaintext. */
bool daemon_plaintext_allowed(const struct daemon *d, const struct conn *conn);
/* A failed login for user from the conn's peer: returns the delay (ms) to
 * wait before answering it (0 for trusted networks). A success by the
 * user all the peer's failures were for forgets them. */
unsigned int daemon_auth_failed(struct daemon *d, const struct conn *conn, const char *user);
void daemon_auth_succeeded(struct daemon *d, const struct conn *conn, const char *user);

/* Builds the server TLS context from [tls]; NULL with *error_r when the
 * files cannot be loaded. */
SSL_CTX *daemon_tls_context(const struct tern_settings *set, const char **error_r);

#endif
