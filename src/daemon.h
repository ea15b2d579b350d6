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

#include "settings.h"

struct event_base;
struct worker_pool;
struct store;
typedef struct ssl_ctx_st SSL_CTX;

struct daemon_session {
	struct daemon_session *prev, *next;
	/* Frees the session at shutdown (no job is in flight then). */
	void (*destroy)(struct daemon_session *s);
};

struct daemon {
	struct event_base *base;
	struct worker_pool *pool;
	struct store *store;
	const struct tern_settings *set;
	SSL_CTX *tls;                  /* NULL when no certificate is configured */
	uint64_t next_session_id;
	struct daemon_session sessions; /* list head */
	unsigned int session_count;
	bool shutting_down;
};

void daemon_session_register(struct daemon *d, struct daemon_session *s);
void daemon_session_unregister(struct daemon *d, struct daemon_session *s);

/* Builds the server TLS context from [tls]; NULL with *error_r when the
 * files cannot be loaded. */
SSL_CTX *daemon_tls_context(const struct tern_settings *set, const char **error_r);

#endif
