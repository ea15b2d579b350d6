/*
 * session-metrics: what the session core counts for every protocol
 * (sessions, logins, commands) and what protocols count through it
 * (deliveries, message octets), as series of the metrics registry.
 *
 * Invariants:
 * - Every label value is the code's: the protocol's name, its verb table,
 *   fixed result names. Nothing a client sends becomes a label value; an
 *   unknown verb is "unknown".
 * - A protocol's series are created together, the first time a session of
 *   that protocol starts (under a lock); after that, each count is one
 *   relaxed atomic add on a series the session already points to.
 *   Deliveries and octets are created at a protocol's first delivery or
 *   RETR, so protocols without them show none.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>

#include "metrics.h"
#include "session-private.h"

#define PROTOCOLS_MAX 8

enum login_count {
	LOGIN_OK,
	LOGIN_FAILED,
	LOGIN_TEMPFAIL,
	LOGIN_ABORTED,
	LOGIN_REFUSED,
	LOGIN_COUNT
};
static const char *const login_names[LOGIN_COUNT] = {
	"ok", "failed", "tempfail", "aborted", "refused",
};

enum refusal { REFUSED_MAX, REFUSED_MAX_PER_IP, REFUSED_DROPPED, REFUSED_COUNT };
static const char *const refusal_names[REFUSED_COUNT] = {
	"max_connections", "max_connections_per_ip", "dropped",
};

static const char *const delivery_names[] = { "ok", "tempfail", "permfail" };
#define DELIVERY_RESULTS (sizeof(delivery_names) / sizeof(delivery_names[0]))

struct session_metrics {
	const struct session_protocol *proto;
	struct metrics_series *open[2], *total[2];  /* [implicit TLS] */
	struct metrics_series *refused[REFUSED_COUNT];
	struct metrics_series *logins[LOGIN_COUNT];
	struct metrics_series *penalty;
	struct metrics_series **commands;           /* [verb]; [0] "unknown" */
	unsigned int command_count;
	/* created on first use (see above) */
	_Atomic bool data_ready, sent_ready;
	struct metrics_series *deliveries[DELIVERY_RESULTS], *octets_in, *octets_out;
};

static const char *const proto_labels[] = { "protocol", NULL };
static const char *const proto_tls_labels[] = { "protocol", "tls", NULL };
static const char *const proto_reason_labels[] = { "protocol", "reason", NULL };
static const char *const proto_result_labels[] = { "protocol", "result", NULL };
static const char *const proto_verb_labels[] = { "protocol", "verb", NULL };

static const struct metrics_def open_def = {
	METRICS_GAUGE, "tern_sessions_open",
	"Admitted sessions open now, by protocol and whether the listener is implicit TLS.",
	proto_tls_labels, NULL, 0, 0,
};
static const struct metrics_def total_def = {
	METRICS_COUNTER, "tern_sessions_total",
	"Sessions admitted, by protocol and whether the listener is implicit TLS.",
	proto_tls_labels, NULL, 0, 0,
};
static const struct metrics_def refused_def = {
	METRICS_COUNTER, "tern_sessions_refused_total",
	"Connections refused by the connection limits, by protocol and reason.",
	proto_reason_labels, NULL, 0, 0,
};
static const struct metrics_def logins_def = {
	METRICS_COUNTER, "tern_logins_total",
	"Login attempts by protocol and result (ok, failed, tempfail, aborted, refused).",
	proto_result_labels, NULL, 0, 0,
};
static const uint64_t penalty_buckets_ms[] = {
	100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000,
};
static const struct metrics_def penalty_def = {
	METRICS_HISTOGRAM, "tern_login_penalty_seconds",
	"How long password checks waited out the client address's failed-login penalty "
	"(only checks that had one).",
	proto_labels, penalty_buckets_ms, sizeof(penalty_buckets_ms) / sizeof(penalty_buckets_ms[0]),
	1e-3,
};
static const struct metrics_def commands_def = {
	METRICS_COUNTER, "tern_commands_total",
	"Command lines by protocol and verb (unknown verbs and unparsable lines: verb=\"unknown\").",
	proto_verb_labels, NULL, 0, 0,
};
static const struct metrics_def deliveries_def = {
	METRICS_COUNTER, "tern_deliveries_total",
	"Message deliveries per recipient, by protocol and result (ok, tempfail: 4xx, permfail: 5xx).",
	proto_result_labels, NULL, 0, 0,
};
static const struct metrics_def received_def = {
	METRICS_COUNTER, "tern_received_octets_total",
	"Message data octets received in DATA, as sent by the client.",
	proto_labels, NULL, 0, 0,
};
static const struct metrics_def sent_def = {
	METRICS_COUNTER, "tern_sent_octets_total",
	"Message octets sent by RETR and TOP, as sent (dot-stuffed, without the +OK line).",
	proto_labels, NULL, 0, 0,
};

static pthread_mutex_t protocols_lock = PTHREAD_MUTEX_INITIALIZER;
static struct session_metrics *protocols[PROTOCOLS_MAX];

/* A series of def for the protocol and one more label value (or none). */
static struct metrics_series *series(const struct metrics_def *def, const char *proto,
				     const char *value)
{
	return metrics_series(metrics_register(def), (const char *const[]){ proto, value });
}

static struct session_metrics *metrics_create(const struct session_protocol *proto)
{
	struct session_metrics *m = xcalloc(1, sizeof(*m));
	const char *name = proto->name;
	m->proto = proto;
	for (int tls = 0; tls < 2; tls++) {
		m->open[tls] = series(&open_def, name, tls ? "true" : "false");
		m->total[tls] = series(&total_def, name, tls ? "true" : "false");
	}
	for (int i = 0; i < REFUSED_COUNT; i++)
		m->refused[i] = series(&refused_def, name, refusal_names[i]);
	for (int i = 0; i < LOGIN_COUNT; i++)
		m->logins[i] = series(&logins_def, name, login_names[i]);
	m->penalty = series(&penalty_def, name, NULL);
	m->command_count = proto->verb_count > 0 ? proto->verb_count : 1;
	m->commands = xcalloc(m->command_count, sizeof(*m->commands));
	struct metrics_series *unknown = series(&commands_def, name, "unknown");
	for (unsigned int i = 0; i < m->command_count; i++) {
		const char *verb = i > 0 && proto->verbs != NULL ? proto->verbs[i] : NULL;
		m->commands[i] = verb != NULL ? series(&commands_def, name, verb) : unknown;
	}
	return m;
}

/* The protocol's series, created with its first session. */
static struct session_metrics *protocol_metrics(const struct session_protocol *proto)
{
	pthread_mutex_lock(&protocols_lock);
	struct session_metrics *m = NULL;
	for (int i = 0; i < PROTOCOLS_MAX && m == NULL; i++) {
		if (protocols[i] == NULL)
			m = protocols[i] = metrics_create(proto);
		else if (protocols[i]->proto == proto)
			m = protocols[i];
	}
	pthread_mutex_unlock(&protocols_lock);
	if (m == NULL)
		panic("session: more than %d protocols", PROTOCOLS_MAX);
	return m;
}

void session_metrics_register(const struct session_protocol *proto)
{
	protocol_metrics(proto);
}

/* --- sessions and logins (the core's) --- */

void session_metrics_start(struct session *s, const struct session_protocol *proto,
			   bool implicit_tls, enum session_admit admit)
{
	struct session_metrics *m = protocol_metrics(proto);
	switch (admit) {
	case SESSION_ADMIT_OK:
		s->metrics = m;
		s->implicit_tls = implicit_tls;
		metrics_inc(m->total[implicit_tls]);
		metrics_gauge_add(m->open[implicit_tls], 1);
		return;
	case SESSION_ADMIT_TOO_MANY:
		metrics_inc(m->refused[REFUSED_MAX]);
		break;
	case SESSION_ADMIT_TOO_MANY_FROM_IP:
		metrics_inc(m->refused[REFUSED_MAX_PER_IP]);
		break;
	case SESSION_ADMIT_DROP:
		metrics_inc(m->refused[REFUSED_DROPPED]);
		break;
	}
}

void session_metrics_end(struct session *s)
{
	/* Only admitted sessions are counted open. */
	if (s->metrics != NULL)
		metrics_gauge_add(s->metrics->open[s->implicit_tls], -1);
	s->metrics = NULL;
}

/* As check_done() decides: a store failure is TEMPFAIL whatever the password. */
void session_count_login(struct session *s, enum store_status status, bool password_ok,
			 unsigned int penalty_ms)
{
	if (s->metrics == NULL)
		return;
	enum login_count c = status != STORE_OK ? LOGIN_TEMPFAIL
			     : password_ok      ? LOGIN_OK
						: LOGIN_FAILED;
	metrics_inc(s->metrics->logins[c]);
	if (penalty_ms > 0)
		metrics_observe(s->metrics->penalty, penalty_ms);
}

void session_count_login_aborted(struct session *s)
{
	if (s->metrics != NULL)
		metrics_inc(s->metrics->logins[LOGIN_ABORTED]);
}

void session_count_login_refused(struct session *s)
{
	if (s->metrics != NULL)
		metrics_inc(s->metrics->logins[LOGIN_REFUSED]);
}

void session_count_command(struct session *s, unsigned int verb)
{
	if (s->metrics != NULL)
		metrics_inc(s->metrics->commands[verb < s->metrics->command_count ? verb : 0]);
}

/* --- what protocols count --- */

static void data_series(struct session_metrics *m)
{
	if (atomic_load_explicit(&m->data_ready, memory_order_acquire))
		return;
	pthread_mutex_lock(&protocols_lock);
	if (!atomic_load_explicit(&m->data_ready, memory_order_relaxed)) {
		for (size_t i = 0; i < DELIVERY_RESULTS; i++)
			m->deliveries[i] = series(&deliveries_def, m->proto->name, delivery_names[i]);
		m->octets_in = series(&received_def, m->proto->name, NULL);
		atomic_store_explicit(&m->data_ready, true, memory_order_release);
	}
	pthread_mutex_unlock(&protocols_lock);
}

void session_count_delivery(struct session *s, enum session_delivery result,
			    unsigned int recipients)
{
	if (s->metrics == NULL || (size_t)result >= DELIVERY_RESULTS)
		return;
	data_series(s->metrics);
	metrics_add(s->metrics->deliveries[result], recipients);
}

void session_count_octets_received(struct session *s, size_t n)
{
	if (s->metrics == NULL)
		return;
	data_series(s->metrics);
	metrics_add(s->metrics->octets_in, n);
}

void session_count_octets_sent(struct session *s, size_t n)
{
	struct session_metrics *m = s->metrics;
	if (m == NULL)
		return;
	if (!atomic_load_explicit(&m->sent_ready, memory_order_acquire)) {
		pthread_mutex_lock(&protocols_lock);
		if (!atomic_load_explicit(&m->sent_ready, memory_order_relaxed)) {
			m->octets_out = series(&sent_def, m->proto->name, NULL);
			atomic_store_explicit(&m->sent_ready, true, memory_order_release);
		}
		pthread_mutex_unlock(&protocols_lock);
	}
	metrics_add(m->octets_out, n);
}
