#ifndef TERN_ADMIN_PRIVATE_H
#define TERN_ADMIN_PRIVATE_H
/*
 * admin-private: what the transport (admin-http.c: evhttp, TLS, the token,
 * connections, jobs on the worker pool) and the endpoints (admin-api.c:
 * routing, validation, the store calls) share.
 *
 * One request is one struct admin_job. The transport authenticates it,
 * admin_route() parses and validates it on the loop and either answers at
 * once or sets work; the transport then runs work on a worker and sends
 * the reply from the loop. work may touch only the job and the store.
 */
#include <event2/http.h>
#include <jansson.h>
#include <stdbool.h>

#include "buf.h"
#include "mail-address.h"
#include "store.h"
#include "worker-pool.h"

struct admin_http;
struct admin_conn;
struct admin_tasks;
struct session_env;
struct tern_settings;

struct admin_job {
	struct worker_job wjob;
	struct admin_http *admin;
	struct evhttp_request *req;  /* NULL once the client's connection has gone */
	struct admin_conn *conn;
	struct admin_job *prev, *next;  /* the jobs on the pool */

	/* What the endpoint needs (set by the transport). */
	struct store *store;
	const struct tern_settings *set;
	struct admin_tasks *tasks;
	const struct session_env *env; /* the queue runner's wake-up (POST /queue/flush) */

	/* The request, parsed by admin_route() on the loop. */
	void (*work)(struct admin_job *j);  /* on a worker; NULL: answered already */
	char arg[MAIL_ADDRESS_MAX + 1];     /* the path's address or domain, normalised */
	json_t *body;                       /* the request's JSON object, or NULL */

	/* The reply. */
	int code;
	const char *content_type;           /* NULL: application/json */
	struct buf reply;
	const char *header_name;            /* one extra header (Allow, Location, ...) */
	char header_value[96];
};

/* The reply: obj serialised (the reference is stolen). */
void admin_reply_json(struct admin_job *j, int code, json_t *obj);
/* {"error": "..."} */
void admin_reply_error(struct admin_job *j, int code, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
/* The reply for a store status other than STORE_OK; what names the
 * operation ("user del a@b"). */
void admin_reply_store_error(struct admin_job *j, enum store_status st, const char *what);
void admin_set_header(struct admin_job *j, const char *name, const char *value);

/* Whether the request may skip the token ([admin] metrics_public and
 * GET /metrics). */
bool admin_route_is_public(const struct tern_settings *set, enum evhttp_cmd_type method,
			   const char *path);
/* Parses and validates the request: sets j->work (the store work to run
 * on a worker) or answers (404, 405, 400, or an answer that needs no
 * store). body: the request body, may be empty. */
void admin_route(struct admin_job *j, enum evhttp_cmd_type method, const char *path,
		 const char *query, const char *body, size_t body_len);

#endif
