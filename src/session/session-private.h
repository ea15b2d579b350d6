#ifndef TERN_SESSION_PRIVATE_H
#define TERN_SESSION_PRIVATE_H
/* Between session.c and session-login.c; protocols never include this. */
#include "session.h"

#define SESSION_LOGIN_QUEUE_BUCKETS 1024

struct session_login_queue;

struct session_registry {
	struct session head;         /* list head; only prev/next are used */
	uint64_t next_id;
	unsigned int count;          /* admitted sessions */
	unsigned int refused_count;  /* sessions saying "too many connections" */
	/* Password checks waiting for their turn, per penalised client. */
	struct session_login_queue *login_queues[SESSION_LOGIN_QUEUE_BUCKETS];
	uint64_t queue_hash_key;
};

/* Metrics (session-metrics.c): a session accepted, admitted or not (for
 * SESSION_ADMIT_DROP with s == NULL), and its end; the outcome of a
 * password check, and of a SASL exchange that ended before one. */
void session_metrics_start(struct session *s, const struct session_protocol *proto,
			   bool implicit_tls, enum session_admit admit);
void session_metrics_end(struct session *s);
void session_count_login(struct session *s, enum store_status status, bool password_ok,
			 unsigned int penalty_ms);
void session_count_login_aborted(struct session *s);

/* Unregisters and frees the session (no job may be running). */
void session_free(struct session *s);
/* Ends a password check or SASL exchange in progress: leaves the
 * address's queue, stops the penalty timer, wipes secrets. */
void session_login_free(struct session *s);
/* Forgets every address's queue of logins without giving anyone a turn:
 * at shutdown, when the pool has stopped and no check may start. */
void session_login_queues_clear(struct session_registry *reg);
/* An input line or an over-long line while a SASL exchange is active. */
void session_sasl_line(struct session *s, char *line, size_t len);
void session_sasl_too_long(struct session *s);

#endif
