/*
 * session: the registry, admission, the conn callbacks every protocol
 * shares, the job slot and the session's lifetime.
 *
 * Invariants:
 * - A session is freed exactly once: from the conn's closed() when no job
 *   is running, else from the job's completion; never from inside a
 *   protocol callback (closed() itself comes from a deferred event).
 * - At most one job per session; input is paused while it runs, so replies
 *   keep the order of pipelined commands.
 * - Refused sessions are registered apart: they never count against the
 *   limits, and at most SESSION_REFUSED_MAX of them exist at once.
 */
#include "session.h"

#include <event2/event.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "session-private.h"
#include "settings.h"

/* Refused connections are answered by sessions too; past this many at
 * once (a flood), new ones are closed without a word. */
#define SESSION_REFUSED_MAX 64

struct session_registry *session_registry_create(void)
{
	struct session_registry *reg = xcalloc(1, sizeof(*reg));
	reg->head.next = reg->head.prev = &reg->head;
	return reg;
}

void session_registry_destroy(struct session_registry **regp)
{
	struct session_registry *reg = *regp;
	if (reg == NULL)
		return;
	/* Freeing a login that holds its address's turn would hand the turn
	 * on, and start a check on the stopped pool when the penalty has
	 * expired meanwhile: nobody gets a turn any more. */
	session_login_queues_clear(reg);
	/* session_free() finds the registry through the session's env. */
	while (reg->head.next != &reg->head)
		session_free(reg->head.next);
	*regp = NULL;
	free(reg);
}

unsigned int session_registry_count(const struct session_registry *reg)
{
	return reg->count;
}

static void registry_add(struct session_registry *reg, struct session *s)
{
	s->next = reg->head.next;
	s->prev = &reg->head;
	reg->head.next->prev = s;
	reg->head.next = s;
	if (s->refused)
		reg->refused_count++;
	else
		reg->count++;
}

static void registry_remove(struct session_registry *reg, struct session *s)
{
	if (s->next == NULL)
		return;
	s->prev->next = s->next;
	s->next->prev = s->prev;
	s->next = s->prev = NULL;
	if (s->refused)
		reg->refused_count--;
	else
		reg->count--;
}

static enum session_admit refuse(const struct session_registry *reg, enum session_admit why)
{
	return reg->refused_count >= SESSION_REFUSED_MAX ? SESSION_ADMIT_DROP : why;
}

enum session_admit session_admit(const struct session_env *env, const struct net_addr *peer,
				 const char *peer_ip)
{
	const struct tern_settings *set = env->set;
	const struct session_registry *reg = env->registry;
	if (reg->count >= set->max_connections) {
		log_warn("connection refused: too many connections ([limits] max_connections = %u) ip=%s open=%u",
			 set->max_connections, peer_ip, reg->count);
		return refuse(reg, SESSION_ADMIT_TOO_MANY);
	}
	if (settings_trusted(set, peer))
		return SESSION_ADMIT_OK;
	/* A linear scan: bounded by max_connections, and cheaper than any
	 * bookkeeping that could drift. */
	struct net_addr key, other;
	net_client_key(&key, peer);
	unsigned int n = 0;
	for (const struct session *s = reg->head.next; s != &reg->head; s = s->next) {
		if (s->refused)
			continue;
		net_client_key(&other, &s->peer);
		if (net_addr_equal(&key, &other))
			n++;
	}
	if (n >= set->max_connections_per_ip) {
		log_warn("connection refused: too many connections from this client ([limits] max_connections_per_ip = %u) ip=%s open=%u",
			 set->max_connections_per_ip, peer_ip, n);
		return refuse(reg, SESSION_ADMIT_TOO_MANY_FROM_IP);
	}
	return SESSION_ADMIT_OK;
}

/* --- logging and replies --- */

void session_log(const struct session *s, enum log_level level, const char *fmt, ...)
{
	if (!log_enabled(level))
		return; /* e.g. SMTP's debug line per state change */
	va_list ap;
	va_start(ap, fmt);
	log_session_vmsg(level, s->proto->name, (unsigned long long)s->id, fmt, ap);
	va_end(ap);
}

void session_reply(struct session *s, const char *line)
{
	conn_puts(s->conn, line);
	conn_puts(s->conn, "\r\n");
}

void session_replyf(struct session *s, const char *fmt, ...)
{
	char line[1024];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	session_reply(s, line);
}

void session_bad_command(struct session *s, const char *line)
{
	session_reply(s, line);
	if (++s->bad_commands >= s->env->set->max_bad_commands) {
		session_reply(s, s->proto->too_many_errors);
		session_info(s, "too many bad commands");
		conn_close(s->conn);
	}
}

void session_bad_command_f(struct session *s, const char *fmt, ...)
{
	char line[1024];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	session_bad_command(s, line);
}

/* --- policy --- */

bool session_peer_trusted(const struct session *s)
{
	return settings_trusted(s->env->set, &s->peer);
}

bool session_plaintext_allowed(const struct session *s)
{
	switch (s->env->set->plaintext) {
	case PLAINTEXT_ALWAYS:
		return true;
	case PLAINTEXT_TLS:
		return conn_is_tls(s->conn);
	case PLAINTEXT_TLS_OR_LOOPBACK:
		break;
	}
	return conn_is_tls(s->conn) || session_peer_trusted(s);
}

SSL_CTX *session_tls(const struct session *s)
{
	return s->env->tls;
}

void session_start_login_deadline(struct session *s)
{
	conn_set_session_deadline(s->conn, s->env->set->login_timeout_ms);
}

void session_logged_in(struct session *s, unsigned int idle_ms)
{
	const struct tern_settings *set = s->env->set;
	conn_set_line_max(s->conn, set->line_max);
	conn_set_input_max(s->conn, set->input_buffer);
	conn_set_idle_timeout(s->conn, idle_ms);
	conn_set_session_deadline(s->conn, 0);
}

/* --- jobs --- */

static struct session *job_session(struct worker_job *job)
{
	return (struct session *)((char *)job - offsetof(struct session, job));
}

static void job_work(struct worker_job *job)
{
	struct session *s = job_session(job);
	s->work(s);
}

static void release_done(struct session *s)
{
}

/* The connection has gone and no job runs: free the session, after
 * releasing on a worker what must not be released on the loop. */
static void session_end(struct session *s)
{
	if (s->proto->needs_release != NULL && s->proto->needs_release(s)) {
		/* dead is set: job_done frees the session when this has run */
		session_run_job(s, s->proto->release, release_done);
		return;
	}
	session_free(s);
}

static void job_done(struct worker_job *job)
{
	struct session *s = job_session(job);
	s->job_running = false;
	if (s->dead) {
		session_end(s);
		return;
	}
	session_fn *done = s->done;
	s->held = false;
	done(s);
	if (!s->job_running && !s->held && !s->dead)
		conn_resume(s->conn);
}

static void run_job(struct session *s, session_fn *work, session_fn *done, bool first)
{
	if (s->job_running)
		panic("%s #%llu: a second job while one runs", s->proto->name,
		      (unsigned long long)s->id);
	s->work = work;
	s->done = done;
	s->job_running = true;
	s->job.work = job_work;
	s->job.done = job_done;
	conn_pause(s->conn);
	if (first)
		worker_pool_submit_first(s->env->pool, &s->job);
	else
		worker_pool_submit(s->env->pool, &s->job);
}

void session_run_job(struct session *s, session_fn *work, session_fn *done)
{
	run_job(s, work, done, false);
}

void session_run_job_first(struct session *s, session_fn *work, session_fn *done)
{
	run_job(s, work, done, true);
}

void session_run_job_nowait(struct session *s, session_fn *work, session_fn *done)
{
	if (store_reads_nowait(s->env->store) &&
	    event_base_get_num_events(s->env->base, EVENT_BASE_COUNT_ACTIVE) == 0) {
		store_nowait_begin();
		work(s);
		if (!store_nowait_end()) {
			done(s); /* input was never paused: nothing to resume */
			return;
		}
	}
	run_job(s, work, done, false);
}

bool session_job_running(const struct session *s)
{
	return s->job_running;
}

void session_hold(struct session *s)
{
	s->held = true;
	conn_pause(s->conn);
}

void session_resume(struct session *s)
{
	s->held = false;
	if (!s->job_running && !s->dead)
		conn_resume(s->conn);
}

/* --- conn callbacks --- */

static void on_line(void *ctx, char *line, size_t len, bool bare_lf)
{
	struct session *s = ctx;
	if (session_sasl_active(s)) {
		session_sasl_line(s, line, len);
		explicit_bzero(line, len);
		return;
	}
	s->proto->line(s, line, len, bare_lf);
}

static void on_line_too_long(void *ctx)
{
	struct session *s = ctx;
	if (session_sasl_active(s)) {
		session_sasl_too_long(s);
		return;
	}
	s->proto->line_too_long(s);
}

static void on_raw(void *ctx, struct evbuffer *in)
{
	struct session *s = ctx;
	s->proto->raw(s, in);
}

static void on_timeout(void *ctx, enum conn_timeout kind)
{
	struct session *s = ctx;
	s->proto->timeout(s, kind);
	session_info(s, "%s timeout", kind == CONN_TIMEOUT_IDLE      ? "idle"
				      : kind == CONN_TIMEOUT_COMMAND ? "command"
								     : "login");
}

static void on_closed(void *ctx, enum conn_close_reason reason)
{
	struct session *s = ctx;
	static const char *const why[] = { "server", "client", "error", "timeout" };
	session_info(s, "disconnect reason=%s", why[reason]);
	if (s->proto->closed != NULL)
		s->proto->closed(s);
	s->dead = true;
	/* A password check waiting for its turn or its penalty holds no
	 * worker: stop waiting. One on a worker ends with the job. */
	if (!s->job_running)
		session_end(s);
}

static const struct conn_callbacks session_conn_callbacks = {
	.line = on_line,
	.line_too_long = on_line_too_long,
	.raw = on_raw,
	.timeout = on_timeout,
	.closed = on_closed,
};

/* --- lifetime --- */

void session_free(struct session *s)
{
	registry_remove(s->env->registry, s);
	session_metrics_end(s);
	session_login_free(s);
	if (s->proto->deinit != NULL)
		s->proto->deinit(s);
	conn_free(&s->conn);
	free(s);
}

void session_create(const struct session_env *env, const struct session_protocol *proto,
		    int fd, const struct sockaddr *peer, socklen_t peer_len, bool implicit_tls,
		    enum session_admit admit)
{
	if (admit == SESSION_ADMIT_DROP) {
		session_metrics_start(NULL, proto, implicit_tls, admit);
		close(fd);
		return;
	}
	const struct tern_settings *set = env->set;
	struct session *s = xcalloc(1, proto->size);
	s->proto = proto;
	s->env = env;
	s->id = ++env->registry->next_id;
	s->conn = conn_create(env->base, fd, peer, peer_len, implicit_tls ? env->tls : NULL,
			      &session_conn_callbacks, s);
	s->peer = *conn_peer_addr(s->conn);
	s->refused = admit != SESSION_ADMIT_OK;
	registry_add(env->registry, s);
	session_metrics_start(s, proto, implicit_tls, admit);
	/* Until a login, the small caps: what an unknown client can make the
	 * server hold. A protocol may lift them in start(). */
	conn_set_line_max(s->conn, set->line_max_preauth);
	conn_set_input_max(s->conn, set->input_buffer_preauth);
	conn_set_idle_timeout(s->conn, set->idle_timeout_preauth_ms);
	conn_set_command_timeout(s->conn, set->command_timeout_ms, (unsigned int)set->min_data_rate);
	if (admit != SESSION_ADMIT_OK) {
		session_info(s, "connect refused: too many connections%s ip=%s",
			     admit == SESSION_ADMIT_TOO_MANY_FROM_IP ? " from this address" : "",
			     conn_peer_ip(s->conn));
		proto->refuse(s, admit);
		conn_close(s->conn);
		return;
	}
	session_info(s, "connect ip=%s tls=%s", conn_peer_ip(s->conn), implicit_tls ? "yes" : "no");
	proto->start(s);
}
