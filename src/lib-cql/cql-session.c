/*
 * The session: hosts discovered from system.local/system.peers, a pool of
 * connections per host of the local DC, the query plan, retries, re-prepare
 * on Unprepared, schema agreement after DDL, and the statistics the store
 * reports (conditional statements and serial reads among them).
 *
 * Invariants:
 * - Only hosts whose data_center is local_dc are ever sent a request.
 * - A request moves to another host after it was written to a socket only
 *   when the statement is idempotent (or the server said it did nothing:
 *   Unavailable, Is_bootstrapping, Unprepared); at most one such retry.
 * - The session lock is never held across network I/O; connection events
 *   (from I/O threads) only flip host state under it.
 * - Host structures live until the session is destroyed, so a pointer to
 *   one stays valid across topology refreshes.
 */
#include "cql-conn.h"

#include <arpa/inet.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>

#define MAX_CONNS_PER_HOST 8
#define MAX_HOSTS 256

struct host {
	char addr[64];
	uint16_t port;
	char dc[64];
	bool local, up, removed;
	int64_t next_attempt_ms;
	unsigned backoff_ms, connecting;
	struct cql_conn *conns[MAX_CONNS_PER_HOST];
};

struct cql_session {
	struct cql_settings set;
	char *contact_points, *local_dc_set, *username, *password, *keyspace;
	SSL_CTX *ssl_ctx;

	pthread_mutex_t lock;
	struct host *hosts[MAX_HOSTS];
	unsigned host_count, rr;
	char local_dc[64];
	struct cql_conn *control;
	bool topology_dirty;
	int64_t control_retry_ms;	/* when to reopen a lost control connection */
	struct cql_stats stats;

	pthread_mutex_t prep_lock;
	struct cql_prepared *prepared;
};

enum req_kind { REQ_QUERY, REQ_EXECUTE, REQ_BATCH, REQ_PREPARE };

struct request {
	enum req_kind kind;
	const char *cql;
	struct cql_prepared *stmt;
	const struct cql_batch *batch;
	struct cql_params params;
	bool idempotent;
	const char *host;	/* pinned to this local node, or NULL */
};

static char *dup_opt(const char *s)
{
	return s == NULL ? NULL : cql_strndup((const uint8_t *)s, strlen(s));
}

static struct cql_conn_settings conn_settings(struct cql_session *s, const char *addr,
					      uint16_t port, bool control)
{
	struct cql_conn_settings cs = {
		.host = addr,
		.port = port,
		.max_frame_size = s->set.max_frame_size,
		.ssl_ctx = s->ssl_ctx,
		.username = s->set.username,
		.password = s->set.password,
		.keyspace = control ? NULL : s->set.keyspace,
		.heartbeat_ms = s->set.heartbeat_ms,
		.heartbeat_timeout_ms = s->set.heartbeat_timeout_ms,
	};
	return cs;
}

static struct host *host_find(struct cql_session *s, const char *addr)
{
	for (unsigned i = 0; i < s->host_count; i++) {
		if (strcmp(s->hosts[i]->addr, addr) == 0)
			return s->hosts[i];
	}
	return NULL;
}

static void on_event(void *ctx, const struct cql_event *ev)
{
	struct cql_session *s = ctx;

	pthread_mutex_lock(&s->lock);
	struct host *h = host_find(s, ev->addr);
	if (strcmp(ev->type, "STATUS_CHANGE") == 0 && h != NULL) {
		if (strcmp(ev->change, "UP") == 0) {
			h->up = true;
			h->backoff_ms = 0;
			/* The CQL port opens a little after gossip says UP. */
			h->next_attempt_ms = cql_now_ms() + 1000;
		} else if (strcmp(ev->change, "DOWN") == 0) {
			h->up = false;
		}
	} else if (strcmp(ev->type, "TOPOLOGY_CHANGE") == 0) {
		s->topology_dirty = true;
	}
	pthread_mutex_unlock(&s->lock);
}

static int conn_query(struct cql_conn *conn, const char *cql, int64_t deadline_ms,
		      struct cql_result **result_r, struct cql_error *err_r)
{
	struct cql_params p = { .consistency = CQL_ONE, .timestamp_us = -1 };
	struct cql_buf buf = { 0 };

	(void)cql_msg_query(&buf, cql, &p);
	int ret = cql_conn_call(conn, &buf, deadline_ms, result_r, err_r);
	cql_buf_free(&buf);
	if (ret == 0 && cql_result_kind(*result_r) != CQL_RESULT_ROWS) {
		cql_result_free(result_r);
		cql_errorf(err_r, CQL_ERR_PROTOCOL, "%s: no rows result", cql);
		return -1;
	}
	return ret;
}

static void cell_inet(const struct cql_result *r, int col, char *out, size_t size)
{
	struct cql_slice v;

	out[0] = '\0';
	if (col < 0 || cql_result_get_raw(r, (unsigned)col, &v) <= 0)
		return;
	if (v.len == 4 || v.len == 16)
		(void)inet_ntop(v.len == 4 ? AF_INET : AF_INET6, v.data, out, (socklen_t)size);
}

static void cell_text(const struct cql_result *r, int col, char *out, size_t size)
{
	struct cql_slice v;

	out[0] = '\0';
	if (col < 0 || cql_result_get_text(r, (unsigned)col, &v) <= 0)
		return;
	size_t n = v.len < size - 1 ? v.len : size - 1;
	memcpy(out, v.data, n);
	out[n] = '\0';
}

/* Adds or refreshes a host; called with the lock held. */
static void host_update(struct cql_session *s, const char *addr, uint16_t port,
			const char *dc)
{
	struct host *h = host_find(s, addr);
	if (h == NULL) {
		if (s->host_count == MAX_HOSTS)
			return;
		h = calloc(1, sizeof(*h));
		if (h == NULL)
			abort();
		snprintf(h->addr, sizeof(h->addr), "%s", addr);
		h->port = port;
		h->up = true;
		s->hosts[s->host_count++] = h;
	}
	snprintf(h->dc, sizeof(h->dc), "%s", dc);
	h->removed = false;
}

/* Reads the topology through conn (connected to host contact). */
static int discover(struct cql_session *s, struct cql_conn *conn, int64_t deadline_ms,
		    struct cql_error *err_r)
{
	struct cql_result *local, *peers;
	char dc[64], addr[64], peer[64], self[64];

	if (conn_query(conn, "SELECT data_center, rpc_address FROM system.local WHERE key='local'",
		       deadline_ms, &local, err_r) < 0)
		return -1;
	if (!cql_result_next_row(local)) {
		cql_result_free(&local);
		cql_errorf(err_r, CQL_ERR_PROTOCOL, "system.local is empty");
		return -1;
	}
	cell_text(local, 0, dc, sizeof(dc));
	/* The node's own address as its peers name it, so that a contact point
	   given by name is not counted twice. */
	cell_inet(local, 1, self, sizeof(self));
	if (self[0] == '\0' || strcmp(self, "0.0.0.0") == 0 || strcmp(self, "::") == 0)
		snprintf(self, sizeof(self), "%s", cql_conn_host(conn));
	cql_result_free(&local);
	if (conn_query(conn, "SELECT peer, data_center, rpc_address FROM system.peers",
		       deadline_ms, &peers, err_r) < 0)
		return -1;

	pthread_mutex_lock(&s->lock);
	if (s->local_dc[0] == '\0')
		snprintf(s->local_dc, sizeof(s->local_dc), "%s",
			 s->set.local_dc != NULL ? s->set.local_dc : dc);
	for (unsigned i = 0; i < s->host_count; i++)
		s->hosts[i]->removed = true;
	host_update(s, self, s->set.port, dc);
	while (cql_result_next_row(peers)) {
		cell_inet(peers, 0, peer, sizeof(peer));
		cell_text(peers, 1, dc, sizeof(dc));
		cell_inet(peers, 2, addr, sizeof(addr));
		if (addr[0] == '\0')
			continue;
		if (strcmp(addr, "0.0.0.0") == 0 || strcmp(addr, "::") == 0)
			snprintf(addr, sizeof(addr), "%s", peer);
		host_update(s, addr, s->set.port, dc);
	}
	for (unsigned i = 0; i < s->host_count; i++) {
		struct host *h = s->hosts[i];
		h->local = !h->removed && strcmp(h->dc, s->local_dc) == 0;
	}
	s->topology_dirty = false;
	pthread_mutex_unlock(&s->lock);
	cql_result_free(&peers);
	return 0;
}

/* Returns the control connection (referenced), reopening it if needed. */
static struct cql_conn *control_get(struct cql_session *s, int64_t deadline_ms,
				    struct cql_error *err_r)
{
	char addrs[MAX_HOSTS][64];
	uint16_t ports[MAX_HOSTS];
	unsigned n = 0;

	pthread_mutex_lock(&s->lock);
	if (s->control != NULL && !cql_conn_is_dead(s->control)) {
		struct cql_conn *c = s->control;
		cql_conn_ref(c);
		pthread_mutex_unlock(&s->lock);
		return c;
	}
	for (unsigned i = 0; i < s->host_count; i++) {
		if (s->hosts[i]->local && s->hosts[i]->up) {
			snprintf(addrs[n], sizeof(addrs[n]), "%s", s->hosts[i]->addr);
			ports[n++] = s->hosts[i]->port;
		}
	}
	pthread_mutex_unlock(&s->lock);

	cql_errorf(err_r, CQL_ERR_CONNECTION, "no host of %s is up", s->local_dc);
	for (unsigned i = 0; i < n; i++) {
		struct cql_conn_settings cs = conn_settings(s, addrs[i], ports[i], true);
		cs.on_event = on_event;
		cs.event_ctx = s;
		int64_t connect_deadline = cql_now_ms() + s->set.connect_timeout_ms;
		struct cql_conn *c = cql_conn_open(&cs, connect_deadline < deadline_ms ?
						   connect_deadline : deadline_ms, err_r);
		if (c == NULL)
			continue;
		pthread_mutex_lock(&s->lock);
		struct cql_conn *old = s->control;
		s->control = c;
		cql_conn_ref(c);
		s->stats.connections_opened++;
		pthread_mutex_unlock(&s->lock);
		cql_conn_unref(&old);
		return c;
	}
	return NULL;
}

static void refresh_topology(struct cql_session *s, int64_t deadline_ms)
{
	struct cql_error err;
	struct cql_conn *c = control_get(s, deadline_ms, &err);
	if (c == NULL)
		return;
	(void)discover(s, c, deadline_ms, &err);
	cql_conn_unref(&c);
}

static int ssl_setup(struct cql_session *s, struct cql_error *err_r)
{
	s->ssl_ctx = SSL_CTX_new(TLS_client_method());
	if (s->ssl_ctx == NULL)
		goto fail;
	SSL_CTX_set_min_proto_version(s->ssl_ctx, TLS1_2_VERSION);
	if (s->set.tls_ca_file != NULL) {
		if (SSL_CTX_load_verify_locations(s->ssl_ctx, s->set.tls_ca_file, NULL) != 1)
			goto fail;
		SSL_CTX_set_verify(s->ssl_ctx, SSL_VERIFY_PEER, NULL);
	} else {
		SSL_CTX_set_verify(s->ssl_ctx, SSL_VERIFY_NONE, NULL);
	}
	if (s->set.tls_cert_file != NULL &&
	    (SSL_CTX_use_certificate_chain_file(s->ssl_ctx, s->set.tls_cert_file) != 1 ||
	     SSL_CTX_use_PrivateKey_file(s->ssl_ctx, s->set.tls_key_file != NULL ?
					 s->set.tls_key_file : s->set.tls_cert_file,
					 SSL_FILETYPE_PEM) != 1))
		goto fail;
	return 0;
fail: {
	char buf[160];
	ERR_error_string_n(ERR_get_error(), buf, sizeof(buf));
	cql_errorf(err_r, CQL_ERR_CLIENT, "TLS setup: %s", buf);
	return -1;
}
}

struct cql_session *cql_session_create(const struct cql_settings *set,
				       struct cql_error *err_r)
{
	struct cql_session *s = calloc(1, sizeof(*s));
	if (s == NULL)
		abort();
	memset(err_r, 0, sizeof(*err_r));
	s->set = *set;
	s->set.contact_points = s->contact_points = dup_opt(set->contact_points);
	s->set.local_dc = s->local_dc_set = dup_opt(set->local_dc);
	s->set.username = s->username = dup_opt(set->username);
	s->set.password = s->password = dup_opt(set->password);
	s->set.keyspace = s->keyspace = dup_opt(set->keyspace);
	s->set.tls_ca_file = s->set.tls_cert_file = s->set.tls_key_file = NULL;
	if (s->set.port == 0)
		s->set.port = 9042;
	if (s->set.connections_per_host == 0)
		s->set.connections_per_host = 1;
	if (s->set.connections_per_host > MAX_CONNS_PER_HOST)
		s->set.connections_per_host = MAX_CONNS_PER_HOST;
	if (s->set.max_frame_size == 0)
		s->set.max_frame_size = CQL_DEFAULT_MAX_FRAME;
	if (s->set.request_timeout_ms == 0)
		s->set.request_timeout_ms = 12000;
	if (s->set.connect_timeout_ms == 0)
		s->set.connect_timeout_ms = 5000;
	if (s->set.reconnect_base_ms == 0)
		s->set.reconnect_base_ms = 200;
	if (s->set.reconnect_max_ms < s->set.reconnect_base_ms)
		s->set.reconnect_max_ms = s->set.reconnect_base_ms;
	pthread_mutex_init(&s->lock, NULL);
	pthread_mutex_init(&s->prep_lock, NULL);
	if (set->tls) {
		s->set.tls_ca_file = set->tls_ca_file;
		s->set.tls_cert_file = set->tls_cert_file;
		s->set.tls_key_file = set->tls_key_file;
		int ret = ssl_setup(s, err_r);
		s->set.tls_ca_file = s->set.tls_cert_file = s->set.tls_key_file = NULL;
		if (ret < 0) {
			cql_session_destroy(&s);
			return NULL;
		}
	}

	/* Contact points: the first that answers becomes the control connection. */
	char *list = dup_opt(s->contact_points != NULL ? s->contact_points : "127.0.0.1");
	char *save = NULL;
	cql_errorf(err_r, CQL_ERR_CONNECTION, "no contact point given");
	for (char *tok = strtok_r(list, ", ", &save); tok != NULL && s->control == NULL;
	     tok = strtok_r(NULL, ", ", &save)) {
		uint16_t port = s->set.port;
		char *colon = strrchr(tok, ':');
		if (colon != NULL && strchr(tok, ':') == colon) {
			*colon = '\0';
			port = (uint16_t)atoi(colon + 1);
		}
		struct cql_conn_settings cs = conn_settings(s, tok, port, true);
		cs.on_event = on_event;
		cs.event_ctx = s;
		int64_t deadline = cql_now_ms() + s->set.connect_timeout_ms;
		s->control = cql_conn_open(&cs, deadline, err_r);
		if (s->control != NULL) {
			s->set.port = port;
			s->stats.connections_opened++;
			if (discover(s, s->control, deadline, err_r) < 0)
				cql_conn_unref(&s->control);
		}
	}
	free(list);
	if (s->control == NULL) {
		cql_session_destroy(&s);
		return NULL;
	}
	memset(err_r, 0, sizeof(*err_r));
	return s;
}

void cql_session_destroy(struct cql_session **sessionp)
{
	struct cql_session *s = *sessionp;
	if (s == NULL)
		return;
	*sessionp = NULL;
	cql_conn_unref(&s->control);
	for (unsigned i = 0; i < s->host_count; i++) {
		for (unsigned c = 0; c < MAX_CONNS_PER_HOST; c++)
			cql_conn_unref(&s->hosts[i]->conns[c]);
		free(s->hosts[i]);
	}
	while (s->prepared != NULL) {
		struct cql_prepared *p = s->prepared;
		s->prepared = p->next;
		free(p->cql);
		free(p->param_types);
		free(p);
	}
	if (s->ssl_ctx != NULL)
		SSL_CTX_free(s->ssl_ctx);
	if (s->password != NULL)
		OPENSSL_cleanse(s->password, strlen(s->password));
	free(s->contact_points);
	free(s->local_dc_set);
	free(s->username);
	free(s->password);
	free(s->keyspace);
	pthread_mutex_destroy(&s->lock);
	pthread_mutex_destroy(&s->prep_lock);
	free(s);
}

void cql_session_stats(struct cql_session *session, struct cql_stats *stats_r)
{
	pthread_mutex_lock(&session->lock);
	*stats_r = session->stats;
	pthread_mutex_unlock(&session->lock);
}

unsigned cql_session_hosts(struct cql_session *session, char (*lines_r)[128], unsigned max)
{
	unsigned n = 0;
	pthread_mutex_lock(&session->lock);
	for (unsigned i = 0; i < session->host_count; i++) {
		struct host *h = session->hosts[i];
		if (h->removed)
			continue;
		if (n < max)
			snprintf(lines_r[n], sizeof(lines_r[n]), "%.60s %.50s %s%s", h->addr, h->dc,
				 h->up ? "up" : "down", h->local ? " local" : "");
		n++;
	}
	pthread_mutex_unlock(&session->lock);
	return n;
}

unsigned cql_session_local_hosts(struct cql_session *session, char (*addrs_r)[64],
				 unsigned max)
{
	unsigned n = 0;
	pthread_mutex_lock(&session->lock);
	for (unsigned i = 0; i < session->host_count; i++) {
		struct host *h = session->hosts[i];
		if (h->removed || !h->local)
			continue;
		if (n < max)
			snprintf(addrs_r[n], sizeof(addrs_r[n]), "%s", h->addr);
		n++;
	}
	pthread_mutex_unlock(&session->lock);
	return n;
}

/* Local hosts, round-robin: hosts believed up first, then the others; or
   only the pinned host. */
static unsigned build_plan(struct cql_session *s, const char *pinned, struct host **plan)
{
	unsigned n = 0;

	pthread_mutex_lock(&s->lock);
	if (pinned != NULL) {
		for (unsigned i = 0; i < s->host_count; i++) {
			struct host *h = s->hosts[i];
			if (h->local && !h->removed && strcmp(h->addr, pinned) == 0) {
				plan[n++] = h;
				break;
			}
		}
		pthread_mutex_unlock(&s->lock);
		return n;
	}
	unsigned start = s->rr++;
	for (int pass = 0; pass < 2; pass++) {
		for (unsigned i = 0; i < s->host_count; i++) {
			struct host *h = s->hosts[(start + i) % s->host_count];
			if (h->local && h->up == (pass == 0))
				plan[n++] = h;
		}
	}
	pthread_mutex_unlock(&s->lock);
	return n;
}

static void host_failed(struct cql_session *s, struct host *h)
{
	unsigned b = h->backoff_ms == 0 ? s->set.reconnect_base_ms : h->backoff_ms * 2;
	h->backoff_ms = b > s->set.reconnect_max_ms ? s->set.reconnect_max_ms : b;
	h->next_attempt_ms = cql_now_ms() + h->backoff_ms;
	h->up = false;
}

/* A live connection to h (referenced), opening one if the pool has room
   and the host is not backing off. */
static struct cql_conn *host_conn(struct cql_session *s, struct host *h,
				  int64_t deadline_ms, struct cql_error *err_r)
{
	struct cql_conn *best = NULL, *dead[MAX_CONNS_PER_HOST];
	unsigned best_load = 0, ndead = 0, empty = 0;

	pthread_mutex_lock(&s->lock);
	for (unsigned i = 0; i < s->set.connections_per_host; i++) {
		struct cql_conn *c = h->conns[i];
		if (c != NULL && cql_conn_is_dead(c)) {
			dead[ndead++] = c;
			h->conns[i] = NULL;
			c = NULL;
		}
		if (c == NULL) {
			empty++;
			continue;
		}
		unsigned load = cql_conn_inflight(c);
		if (best == NULL || load < best_load) {
			best = c;
			best_load = load;
		}
	}
	if (ndead > 0 && empty == s->set.connections_per_host && h->backoff_ms == 0) {
		/* Lost every connection: reconnect after a pause, not in a loop. */
		host_failed(s, h);
	}
	bool may_connect = empty > h->connecting && cql_now_ms() >= h->next_attempt_ms &&
		(best == NULL || best_load > 0);
	if (may_connect)
		h->connecting++;
	if (best != NULL && !may_connect)
		cql_conn_ref(best);
	pthread_mutex_unlock(&s->lock);
	for (unsigned i = 0; i < ndead; i++)
		cql_conn_unref(&dead[i]);
	if (best != NULL && !may_connect)
		return best;
	if (!may_connect) {
		cql_errorf(err_r, CQL_ERR_CONNECTION, "%s: reconnecting later", h->addr);
		return NULL;
	}

	struct cql_conn_settings cs = conn_settings(s, h->addr, h->port, false);
	int64_t connect_deadline = cql_now_ms() + s->set.connect_timeout_ms;
	struct cql_conn *c = cql_conn_open(&cs, connect_deadline < deadline_ms ?
					   connect_deadline : deadline_ms, err_r);
	pthread_mutex_lock(&s->lock);
	h->connecting--;
	if (c == NULL) {
		host_failed(s, h);
		if (best != NULL) {
			c = best;
			cql_conn_ref(c);
		}
		pthread_mutex_unlock(&s->lock);
		return c;
	}
	s->stats.connections_opened++;
	h->up = true;
	h->backoff_ms = 0;
	h->next_attempt_ms = 0;
	for (unsigned i = 0; i < s->set.connections_per_host; i++) {
		if (h->conns[i] == NULL) {
			h->conns[i] = c;
			cql_conn_ref(c);
			break;
		}
	}
	pthread_mutex_unlock(&s->lock);
	return c;
}

static void stmt_id(struct cql_session *s, struct cql_prepared *stmt,
		    uint8_t id[CQL_MAX_PREPARED_ID], uint16_t *len_r)
{
	pthread_mutex_lock(&s->prep_lock);
	memcpy(id, stmt->id, stmt->id_len);
	*len_r = stmt->id_len;
	pthread_mutex_unlock(&s->prep_lock);
}

static int encode(struct cql_session *s, const struct request *req, struct cql_buf *buf)
{
	uint8_t id[CQL_MAX_PREPARED_ID];
	uint16_t id_len;
	int ret;

	buf->len = 0;
	switch (req->kind) {
	case REQ_QUERY:
		return cql_msg_query(buf, req->cql, &req->params);
	case REQ_EXECUTE:
		stmt_id(s, req->stmt, id, &id_len);
		return cql_msg_execute(buf, id, id_len, &req->params);
	case REQ_BATCH:
		pthread_mutex_lock(&s->prep_lock);
		ret = cql_msg_batch(buf, req->batch, &req->params);
		pthread_mutex_unlock(&s->prep_lock);
		return ret;
	case REQ_PREPARE:
		cql_msg_prepare(buf, req->cql);
		return 0;
	}
	return -1;
}

/* PREPAREs stmt again on conn and takes the (possibly new) id. */
static int reprepare(struct cql_session *s, struct cql_conn *conn, struct cql_prepared *stmt,
		     int64_t deadline_ms, struct cql_error *err_r)
{
	struct cql_buf buf = { 0 };
	struct cql_result *r;

	cql_msg_prepare(&buf, stmt->cql);
	int ret = cql_conn_call(conn, &buf, deadline_ms, &r, err_r);
	cql_buf_free(&buf);
	if (ret < 0)
		return -1;
	if (cql_result_kind(r) != CQL_RESULT_PREPARED) {
		cql_result_free(&r);
		cql_errorf(err_r, CQL_ERR_PROTOCOL, "PREPARE did not return Prepared");
		return -1;
	}
	pthread_mutex_lock(&s->prep_lock);
	memcpy(stmt->id, r->prepared_id, r->prepared_id_len);
	stmt->id_len = r->prepared_id_len;
	pthread_mutex_unlock(&s->prep_lock);
	pthread_mutex_lock(&s->lock);
	s->stats.reprepares++;
	pthread_mutex_unlock(&s->lock);
	cql_result_free(&r);
	return 0;
}

static int reprepare_for(struct cql_session *s, struct cql_conn *conn,
			 const struct request *req, const struct cql_error *unprepared,
			 int64_t deadline_ms, struct cql_error *err_r)
{
	if (req->kind == REQ_EXECUTE)
		return reprepare(s, conn, req->stmt, deadline_ms, err_r);
	if (req->kind != REQ_BATCH) {
		*err_r = *unprepared;
		return -1;
	}
	for (unsigned i = 0; i < req->batch->count; i++) {
		struct cql_prepared *stmt = req->batch->entries[i].stmt;
		if (stmt != NULL && reprepare(s, conn, stmt, deadline_ms, err_r) < 0)
			return -1;
	}
	return 0;
}

/* Polls system.local and system.peers until every live node reports the
   same schema version. */
static bool wait_schema_agreement(struct cql_session *s, struct cql_conn *conn)
{
	int64_t deadline = cql_now_ms() + s->set.schema_agreement_timeout_ms;
	struct cql_error err;
	/* A change reaches the other nodes within tens of milliseconds on a
	 * LAN: poll soon, then back off (a schema of twenty tables waited
	 * 200 ms per table before). */
	long pause_ms = 10;

	while (cql_now_ms() < deadline) {
		struct cql_result *local, *peers;
		struct cql_slice version, v;
		bool agreed = true;

		if (conn_query(conn, "SELECT schema_version FROM system.local WHERE key='local'",
			       deadline, &local, &err) < 0)
			break;
		if (conn_query(conn, "SELECT rpc_address, schema_version FROM system.peers",
			       deadline, &peers, &err) < 0) {
			cql_result_free(&local);
			break;
		}
		if (!cql_result_next_row(local) ||
		    cql_result_get_uuid(local, 0, (uint8_t[16]){ 0 }) <= 0)
			agreed = false;
		(void)cql_result_get_raw(local, 0, &version);
		while (agreed && cql_result_next_row(peers)) {
			char addr[64];
			cell_inet(peers, 0, addr, sizeof(addr));
			if (cql_result_get_raw(peers, 1, &v) <= 0 || addr[0] == '\0')
				continue;
			pthread_mutex_lock(&s->lock);
			struct host *h = host_find(s, addr);
			bool down = h != NULL && !h->up;
			pthread_mutex_unlock(&s->lock);
			if (!down && (v.len != version.len ||
				      memcmp(v.data, version.data, v.len) != 0))
				agreed = false;
		}
		cql_result_free(&local);
		cql_result_free(&peers);
		if (agreed)
			return true;
		struct timespec ts = { 0, pause_ms * 1000000 };
		nanosleep(&ts, NULL);
		if (pause_ms < 200)
			pause_ms *= 2;
	}
	pthread_mutex_lock(&s->lock);
	s->stats.schema_agreement_timeouts++;
	pthread_mutex_unlock(&s->lock);
	return false;
}

enum next_step { STEP_RETURN, STEP_SAME_HOST, STEP_NEXT_HOST };

/* What to do after err on an attempt (the retry policy of cassandra.md). */
static enum next_step retry_decision(const struct request *req, const struct cql_error *err,
				     bool *retry_left)
{
	bool retry = *retry_left;
	enum next_step step = STEP_RETURN;

	switch (err->kind) {
	case CQL_ERR_CONNECTION:
		/* Never written: always safe elsewhere, and no retry spent. */
		if (!err->sent)
			return STEP_NEXT_HOST;
		if (req->idempotent && retry)
			step = STEP_NEXT_HOST;
		break;
	case CQL_ERR_TIMEOUT:
		if (req->idempotent && retry)
			step = STEP_NEXT_HOST;
		break;
	case CQL_ERR_IS_BOOTSTRAPPING:
		return STEP_NEXT_HOST;
	case CQL_ERR_UNAVAILABLE:
		if (retry)
			step = STEP_NEXT_HOST;
		break;
	case CQL_ERR_OVERLOADED:
	case CQL_ERR_SERVER:
	case CQL_ERR_TRUNCATE:
		if (req->idempotent && retry)
			step = STEP_NEXT_HOST;
		break;
	case CQL_ERR_WRITE_TIMEOUT:
		if (req->idempotent && retry && err->write_type == CQL_WRITE_BATCH_LOG)
			step = STEP_SAME_HOST;
		break;
	case CQL_ERR_READ_TIMEOUT:
		if (retry && err->received >= err->required && !err->data_present)
			step = STEP_SAME_HOST;
		break;
	default:
		break;
	}
	if (step != STEP_RETURN)
		*retry_left = false;
	return step;
}

static int run(struct cql_session *s, const struct request *req, unsigned timeout_ms,
	       struct cql_result **result_r, struct cql_error *err_r)
{
	struct host *plan[MAX_HOSTS];
	struct cql_buf buf = { 0 };
	bool retry_left = true;
	unsigned reprepares = 0;
	int64_t deadline = cql_now_ms() + (timeout_ms != 0 ? timeout_ms : s->set.request_timeout_ms);

	*result_r = NULL;
	pthread_mutex_lock(&s->lock);
	bool dirty = s->topology_dirty;
	/* A lost control connection means lost events: reopen it and read the
	   topology again, at most every few seconds. */
	if (!dirty && (s->control == NULL || cql_conn_is_dead(s->control)) &&
	    cql_now_ms() >= s->control_retry_ms) {
		dirty = true;
		s->control_retry_ms = cql_now_ms() + 5000;
	}
	pthread_mutex_unlock(&s->lock);
	if (dirty)
		refresh_topology(s, deadline);

	unsigned n = build_plan(s, req->host, plan);
	cql_errorf(err_r, CQL_ERR_CONNECTION, "no host of data center %s is available",
		   s->local_dc);
	for (unsigned i = 0; i < n; ) {
		if (cql_now_ms() >= deadline) {
			bool sent = err_r->sent;
			cql_errorf(err_r, CQL_ERR_TIMEOUT, "deadline passed before an answer");
			err_r->sent = sent;
			break;
		}
		struct cql_error attempt_err;
		struct cql_conn *conn = host_conn(s, plan[i], deadline, &attempt_err);
		if (conn == NULL) {
			if (err_r->kind == CQL_ERR_CONNECTION && !err_r->sent)
				*err_r = attempt_err;
			i++;
			continue;
		}
		if (encode(s, req, &buf) < 0) {
			cql_conn_unref(&conn);
			cql_errorf(err_r, CQL_ERR_CLIENT, "invalid bound values");
			break;
		}
		int ret = cql_conn_call(conn, &buf, deadline, result_r, &attempt_err);
		if (ret == 0) {
			if (cql_result_kind(*result_r) == CQL_RESULT_SCHEMA_CHANGE)
				(*result_r)->schema_agreed = wait_schema_agreement(s, conn);
			cql_conn_unref(&conn);
			cql_buf_free(&buf);
			memset(err_r, 0, sizeof(*err_r));
			return 0;
		}
		bool sent_before = err_r->sent;
		*err_r = attempt_err;
		err_r->sent = err_r->sent || sent_before;
		if (attempt_err.kind == CQL_ERR_UNPREPARED && reprepares < 2) {
			reprepares++;
			int r = reprepare_for(s, conn, req, &attempt_err, deadline, err_r);
			cql_conn_unref(&conn);
			if (r < 0)
				break;
			continue;
		}
		cql_conn_unref(&conn);
		enum next_step step = retry_decision(req, &attempt_err, &retry_left);
		if (step == STEP_RETURN)
			break;
		if (attempt_err.sent || attempt_err.kind != CQL_ERR_CONNECTION) {
			pthread_mutex_lock(&s->lock);
			s->stats.retries++;
			pthread_mutex_unlock(&s->lock);
		}
		if (step == STEP_NEXT_HOST)
			i++;
	}
	cql_buf_free(&buf);
	return -1;
}

static void count_request(struct cql_session *s, enum cql_consistency cl, bool conditional)
{
	pthread_mutex_lock(&s->lock);
	s->stats.requests++;
	if (conditional)
		s->stats.conditional_statements++;
	if (cl == CQL_SERIAL || cl == CQL_LOCAL_SERIAL)
		s->stats.serial_reads++;
	if ((unsigned)cl < CQL_CONSISTENCY_COUNT)
		s->stats.by_consistency[cl]++;
	pthread_mutex_unlock(&s->lock);
}

static void request_init(struct request *req, enum req_kind kind,
			 const struct cql_query_opts *opts, const struct cql_values *values,
			 bool conditional)
{
	struct cql_query_opts defaults;

	if (opts == NULL) {
		cql_query_opts_init(&defaults);
		opts = &defaults;
	}
	memset(req, 0, sizeof(*req));
	req->kind = kind;
	req->idempotent = opts->idempotent && !conditional;
	req->host = opts->host;
	req->params.consistency = opts->consistency;
	req->params.serial_consistency = opts->serial_consistency;
	req->params.values = values;
	req->params.page_size = opts->page_size;
	req->params.paging_state = opts->paging_state;
	req->params.paging_state_len = opts->paging_state_len;
	if (conditional || opts->timestamp_us < 0)
		req->params.timestamp_us = -1;
	else if (opts->timestamp_us == 0)
		req->params.timestamp_us = cql_timestamp_now_us();
	else
		req->params.timestamp_us = opts->timestamp_us;
}

static int finish(struct cql_session *s, int ret, struct cql_result **result_r,
		  struct cql_error *err_r)
{
	if (ret < 0) {
		pthread_mutex_lock(&s->lock);
		s->stats.errors++;
		if (err_r->kind == CQL_ERR_TIMEOUT)
			s->stats.timeouts++;
		pthread_mutex_unlock(&s->lock);
		cql_result_free(result_r);
	}
	return ret;
}

int cql_query(struct cql_session *session, const char *cql,
	      const struct cql_values *values, const struct cql_query_opts *opts,
	      struct cql_result **result_r, struct cql_error *err_r)
{
	struct request req;
	bool conditional = cql_statement_is_conditional(cql);

	request_init(&req, REQ_QUERY, opts, values, conditional);
	req.cql = cql;
	count_request(session, req.params.consistency, conditional);
	return finish(session, run(session, &req, opts != NULL ? opts->timeout_ms : 0,
				   result_r, err_r), result_r, err_r);
}

static struct cql_prepared *prepared_find(struct cql_session *s, const char *cql)
{
	for (struct cql_prepared *p = s->prepared; p != NULL; p = p->next) {
		if (strcmp(p->cql, cql) == 0)
			return p;
	}
	return NULL;
}

struct cql_prepared *cql_prepare(struct cql_session *session, const char *cql,
				 struct cql_error *err_r)
{
	struct request req;
	struct cql_result *r;

	pthread_mutex_lock(&session->prep_lock);
	struct cql_prepared *stmt = prepared_find(session, cql);
	pthread_mutex_unlock(&session->prep_lock);
	if (stmt != NULL)
		return stmt;

	request_init(&req, REQ_PREPARE, NULL, NULL, false);
	req.cql = cql;
	req.idempotent = true;
	if (run(session, &req, 0, &r, err_r) < 0)
		return NULL;
	if (cql_result_kind(r) != CQL_RESULT_PREPARED) {
		cql_result_free(&r);
		cql_errorf(err_r, CQL_ERR_PROTOCOL, "PREPARE did not return Prepared");
		return NULL;
	}
	stmt = calloc(1, sizeof(*stmt));
	if (stmt == NULL)
		abort();
	stmt->cql = cql_strndup((const uint8_t *)cql, strlen(cql));
	stmt->conditional = cql_statement_is_conditional(cql);
	memcpy(stmt->id, r->prepared_id, r->prepared_id_len);
	stmt->id_len = r->prepared_id_len;
	stmt->param_count = r->bind_md.column_count;
	stmt->param_types = calloc(stmt->param_count + 1, sizeof(*stmt->param_types));
	if (stmt->param_types == NULL)
		abort();
	for (unsigned i = 0; i < stmt->param_count; i++)
		stmt->param_types[i] = cql_result_column_type(&(struct cql_result){
			.md = r->bind_md }, i);
	cql_result_free(&r);

	pthread_mutex_lock(&session->prep_lock);
	struct cql_prepared *other = prepared_find(session, cql);
	if (other == NULL) {
		stmt->next = session->prepared;
		session->prepared = stmt;
	}
	pthread_mutex_unlock(&session->prep_lock);
	if (other != NULL) {
		free(stmt->cql);
		free(stmt->param_types);
		free(stmt);
		stmt = other;
	}
	return stmt;
}

unsigned cql_prepared_param_count(const struct cql_prepared *stmt)
{
	return stmt->param_count;
}

enum cql_type_id cql_prepared_param_type(const struct cql_prepared *stmt, unsigned i)
{
	return i < stmt->param_count ? stmt->param_types[i] : CQL_TYPE_UNKNOWN;
}

bool cql_prepared_is_conditional(const struct cql_prepared *stmt)
{
	return stmt->conditional;
}

int cql_execute(struct cql_session *session, struct cql_prepared *stmt,
		const struct cql_values *values, const struct cql_query_opts *opts,
		struct cql_result **result_r, struct cql_error *err_r)
{
	struct request req;

	*result_r = NULL;
	request_init(&req, REQ_EXECUTE, opts, values, stmt->conditional);
	req.stmt = stmt;
	count_request(session, req.params.consistency, stmt->conditional);
	unsigned given = values == NULL ? 0 : values->count;
	if (given != stmt->param_count) {
		cql_errorf(err_r, CQL_ERR_CLIENT, "%u values bound, the statement has %u markers",
			   given, stmt->param_count);
		return finish(session, -1, result_r, err_r);
	}
	return finish(session, run(session, &req, opts != NULL ? opts->timeout_ms : 0,
				   result_r, err_r), result_r, err_r);
}

int cql_batch_execute(struct cql_session *session, struct cql_batch *batch,
		      const struct cql_query_opts *opts, struct cql_error *err_r)
{
	struct request req;
	struct cql_result *r = NULL;

	request_init(&req, REQ_BATCH, opts, NULL, batch->conditional);
	req.batch = batch;
	req.params.page_size = 0;
	req.params.paging_state = NULL;
	count_request(session, req.params.consistency, batch->conditional);
	int ret = finish(session, run(session, &req, opts != NULL ? opts->timeout_ms : 0,
				      &r, err_r), &r, err_r);
	cql_result_free(&r);
	return ret;
}
