#ifndef TERN_ADMIN_HTTP_H
#define TERN_ADMIN_HTTP_H
/*
 * admin-http: the admin HTTP API of `tern serve` (docs/admin-api.md):
 * domains, users, aliases, quotas, mailbox usage, repair tasks, the health
 * check and the Prometheus metrics, as JSON over HTTP (evhttp), optionally
 * over TLS, behind a bearer token read from [admin] token_file.
 *
 * Store calls run on the server's worker pool (env->pool), never on the
 * event loop; repairs run one at a time on a thread of their own.
 *
 * Lifetime, from the server:
 *   admin = admin_http_create(env, &error);   after the store and pool exist
 *   admin_http_listen(admin);                 binds [admin] listen
 *   admin_http_stop(admin);                   SIGTERM: no new connections
 *   ... the loop drains, the pool is destroyed ...
 *   admin_http_destroy(&admin);               before the store is closed
 */
#include "session.h"

struct admin_http;

/* Reads the token and prepares the server; nothing is bound yet. Returns
 * NULL with *error_r NULL when [admin] listen is not set, and NULL with
 * *error_r ("FILE: ...", static) when the configuration cannot be used
 * (the token file missing, empty, or readable by group or others; tls =
 * yes without a certificate). env must outlive the admin server; env->tls
 * is read again for every new connection, so a SIGHUP reload applies. */
struct admin_http *admin_http_create(const struct session_env *env, const char **error_r);
/* Binds every [admin] listen address ("admin listening on ..."). 0, or -1
 * with the reason logged. */
int admin_http_listen(struct admin_http *admin);
/* Stops accepting; requests that still arrive on open connections get
 * 503 and the connection is closed. admin may be NULL. */
void admin_http_stop(struct admin_http *admin);
/* Frees everything. Call once the worker pool has been destroyed (no admin
 * job can complete any more) and before the store is closed. A repair
 * still running is given ADMIN_REPAIR_GRACE_SECS to finish; past that the
 * process exits at once with status 0 (the repair holds the store, which
 * therefore cannot be closed; every store write is durable and a repair
 * re-checks everything when run again). admin may be NULL. */
void admin_http_destroy(struct admin_http **admin);

#endif
