/*
 * admin-http: the transport of the admin API. evhttp on the server's event
 * loop, TLS through bufferevent_openssl with the server's current context,
 * the bearer token, the connection cap, and the jobs that carry each
 * request's store work to the worker pool and its reply back to the loop.
 *
 * Invariants:
 * - No store call on the loop: admin_route() validates on the loop, the
 *   job's work runs on a worker, the reply is sent from its done().
 * - A request is answered exactly once. When the client's connection is
 *   freed while its job runs (only evhttp_free at shutdown can do that:
 *   evhttp stops reading while a request is being answered), the close
 *   callback detaches the job, which then finishes and is freed without
 *   replying; the request died with its connection.
 * - The token is compared as SHA-256 digests with CRYPTO_memcmp: constant
 *   time, whatever the length of what the client sent. It is never logged.
 * - Every input has a cap: headers (ADMIN_MAX_HEADERS), body
 *   (ADMIN_MAX_BODY), connections that have sent a request
 *   (ADMIN_MAX_CONNECTIONS), and every connection an idle timeout in both
 *   directions (ADMIN_TIMEOUT_SECS).
 */
#include "admin-http.h"

#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <event2/listener.h>
#include <fcntl.h>
#include <netdb.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "admin-private.h"
#include "admin-tasks.h"
#include "log.h"
#include "net.h"
#include "settings.h"

#define ADMIN_MAX_BODY (64 * 1024)
#define ADMIN_MAX_HEADERS (8 * 1024)
#define ADMIN_TIMEOUT_SECS 30
#define ADMIN_MAX_CONNECTIONS 64
#define ADMIN_TOKEN_MAX 4096
#define ADMIN_TOKEN_SHORT 16
#define ADMIN_REPAIR_GRACE_SECS 10
#define DIGEST_LEN 32

/* A connection that has sent at least one request. */
struct admin_conn {
	struct admin_http *admin;
	struct evhttp_connection *evcon;
	struct admin_job *job;       /* the request being answered, if any */
	struct admin_conn *prev, *next;
};

struct admin_http {
	const struct session_env *env;
	struct evhttp *http;
	unsigned char token_digest[DIGEST_LEN];
	struct admin_conn *conns;
	unsigned int conn_count;
	struct admin_job *jobs;      /* on the worker pool */
	struct admin_tasks *tasks;
	struct evhttp_bound_socket **bound;  /* the listeners */
	unsigned int bound_count;
	bool stopped;
};

static char errbuf[512];

static void digest(const void *data, size_t len, unsigned char out[DIGEST_LEN])
{
	unsigned int n = DIGEST_LEN;
	if (EVP_Digest(data, len, out, &n, EVP_sha256(), NULL) != 1 || n != DIGEST_LEN)
		panic("admin: SHA-256 failed");
}

/* The token is the first line of path. 0, or -1 with *error_r. */
static int read_token(const char *path, unsigned char digest_r[DIGEST_LEN], const char **error_r)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
	if (fd < 0) {
		snprintf(errbuf, sizeof(errbuf), "%s: [admin] token_file: cannot open: %s", path,
			 strerror(errno));
		*error_r = errbuf;
		return -1;
	}
	struct stat st;
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		snprintf(errbuf, sizeof(errbuf), "%s: [admin] token_file: not a regular file", path);
		goto fail;
	}
	if ((st.st_mode & (S_IRWXG | S_IRWXO)) != 0) {
		snprintf(errbuf, sizeof(errbuf),
			 "%s: [admin] token_file is open to group or others (mode %04o): the token grants full control of the server; chmod 600 %s",
			 path, (unsigned int)(st.st_mode & 07777), path);
		goto fail;
	}
	char text[ADMIN_TOKEN_MAX + 2];
	size_t len = 0;
	ssize_t n;
	while (len < sizeof(text) && (n = read(fd, text + len, sizeof(text) - len)) != 0) {
		if (n < 0) {
			if (errno == EINTR)
				continue;
			snprintf(errbuf, sizeof(errbuf), "%s: [admin] token_file: cannot read: %s",
				 path, strerror(errno));
			goto fail_wipe;
		}
		len += (size_t)n;
	}
	char *nl = memchr(text, '\n', len);
	size_t tlen = nl != NULL ? (size_t)(nl - text) : len;
	if (tlen > 0 && text[tlen - 1] == '\r')
		tlen--;
	if (tlen > ADMIN_TOKEN_MAX) {
		snprintf(errbuf, sizeof(errbuf), "%s: [admin] token_file: the token is longer than %d characters",
			 path, ADMIN_TOKEN_MAX);
		goto fail_wipe;
	}
	if (tlen == 0) {
		snprintf(errbuf, sizeof(errbuf),
			 "%s: [admin] token_file: the first line, the token, is empty", path);
		goto fail_wipe;
	}
	for (size_t i = 0; i < tlen; i++) {
		if ((unsigned char)text[i] <= 0x20 || (unsigned char)text[i] >= 0x7f) {
			snprintf(errbuf, sizeof(errbuf),
				 "%s: [admin] token_file: the token may hold only printable ASCII characters, no space",
				 path);
			goto fail_wipe;
		}
	}
	if (tlen < ADMIN_TOKEN_SHORT)
		log_warn("%s: the admin token is only %zu characters long; use a long random one (openssl rand -hex 32)",
			 path, tlen);
	digest(text, tlen, digest_r);
	OPENSSL_cleanse(text, sizeof(text));
	close(fd);
	return 0;
fail_wipe:
	OPENSSL_cleanse(text, sizeof(text));
fail:
	close(fd);
	*error_r = errbuf;
	return -1;
}

/* --- replies --- */

static void job_free(struct admin_job *j)
{
	if (j->body != NULL)
		json_decref(j->body);
	buf_deinit(&j->reply);
	free(j);
}

static const char *method_name(enum evhttp_cmd_type m)
{
	switch (m) {
	case EVHTTP_REQ_GET: return "GET";
	case EVHTTP_REQ_POST: return "POST";
	case EVHTTP_REQ_HEAD: return "HEAD";
	case EVHTTP_REQ_PUT: return "PUT";
	case EVHTTP_REQ_DELETE: return "DELETE";
	case EVHTTP_REQ_OPTIONS: return "OPTIONS";
	case EVHTTP_REQ_TRACE: return "TRACE";
	case EVHTTP_REQ_CONNECT: return "CONNECT";
	case EVHTTP_REQ_PATCH: return "PATCH";
	}
	return "?";
}

/* One access-log line per answered request (never a header or a body). */
static void log_request(struct evhttp_request *req, int code)
{
	char *peer = NULL;
	ev_uint16_t port = 0;
	struct evhttp_connection *evcon = evhttp_request_get_connection(req);
	if (evcon != NULL)
		evhttp_connection_get_peer(evcon, &peer, &port);
	const char *uri = evhttp_request_get_uri(req);
	char shown[200];
	str_escape_for_log(shown, sizeof(shown), uri != NULL ? uri : "", uri != NULL ? strlen(uri) : 0,
			   120);
	log_info("admin request ip=%s method=%s path=%s status=%d", peer != NULL ? peer : "?",
		 method_name(evhttp_request_get_command(req)), shown, code);
}

/* Sends j's reply on req. */
static void send_reply(struct evhttp_request *req, struct admin_job *j, bool close)
{
	struct evkeyvalq *h = evhttp_request_get_output_headers(req);
	if (j->code != HTTP_NOCONTENT)
		evhttp_add_header(h, "Content-Type",
				  j->content_type != NULL ? j->content_type : "application/json");
	evhttp_add_header(h, "Cache-Control", "no-store");
	if (j->header_name != NULL)
		evhttp_add_header(h, j->header_name, j->header_value);
	if (close)
		evhttp_add_header(h, "Connection", "close");
	if (j->code != HTTP_NOCONTENT)
		evbuffer_add(evhttp_request_get_output_buffer(req), j->reply.data, j->reply.len);
	log_request(req, j->code);
	evhttp_send_reply(req, j->code, NULL, NULL);
}

void admin_reply_json(struct admin_job *j, int code, json_t *obj)
{
	j->code = code;
	j->content_type = NULL;
	buf_reset(&j->reply);
	char *text = json_dumps(obj, JSON_COMPACT);
	json_decref(obj);
	if (text == NULL)
		panic("admin: cannot serialise a reply");
	buf_append_str(&j->reply, text);
	buf_append_c(&j->reply, '\n');
	free(text);
}

void admin_reply_error(struct admin_job *j, int code, const char *fmt, ...)
{
	struct buf msg;
	buf_init(&msg, 0);
	va_list ap;
	va_start(ap, fmt);
	buf_vprintf(&msg, fmt, ap);
	va_end(ap);
	/* Client text is echoed in messages: keep it valid UTF-8 for JSON. */
	json_t *s = json_stringn(msg.data, msg.len);
	if (s == NULL)
		s = json_string("invalid request");
	admin_reply_json(j, code, json_pack("{s:o}", "error", s));
	buf_deinit(&msg);
}

void admin_set_header(struct admin_job *j, const char *name, const char *value)
{
	j->header_name = name;
	str_copy(j->header_value, value, sizeof(j->header_value));
}

/* An answer that needs no job. */
static void reply_now(struct evhttp_request *req, int code, const char *header_name,
		      const char *header_value, bool close, const char *error)
{
	struct admin_job j;
	memset(&j, 0, sizeof(j));
	buf_init(&j.reply, 0);
	admin_reply_error(&j, code, "%s", error);
	if (header_name != NULL)
		admin_set_header(&j, header_name, header_value);
	send_reply(req, &j, close);
	buf_deinit(&j.reply);
}

/* --- connections --- */

static void conn_closed(struct evhttp_connection *evcon, void *arg)
{
	struct admin_conn *c = arg;
	struct admin_http *a = c->admin;
	if (c->job != NULL) {
		/* evhttp frees the request with the connection. */
		c->job->req = NULL;
		c->job->conn = NULL;
	}
	if (c->prev != NULL)
		c->prev->next = c->next;
	else
		a->conns = c->next;
	if (c->next != NULL)
		c->next->prev = c->prev;
	a->conn_count--;
	free(c);
}

static struct admin_conn *conn_find(struct admin_http *a, struct evhttp_connection *evcon)
{
	for (struct admin_conn *c = a->conns; c != NULL; c = c->next)
		if (c->evcon == evcon)
			return c;
	return NULL;
}

static struct admin_conn *conn_add(struct admin_http *a, struct evhttp_connection *evcon)
{
	struct admin_conn *c = xcalloc(1, sizeof(*c));
	c->admin = a;
	c->evcon = evcon;
	c->next = a->conns;
	if (a->conns != NULL)
		a->conns->prev = c;
	a->conns = c;
	a->conn_count++;
	evhttp_connection_set_closecb(evcon, conn_closed, c);
	return c;
}

/* --- jobs --- */

static void job_work(struct worker_job *wj)
{
	struct admin_job *j = (struct admin_job *)wj;
	j->work(j);
}

static void job_done(struct worker_job *wj)
{
	struct admin_job *j = (struct admin_job *)wj;
	struct admin_http *a = j->admin;
	if (j->prev != NULL)
		j->prev->next = j->next;
	else
		a->jobs = j->next;
	if (j->next != NULL)
		j->next->prev = j->prev;
	if (j->conn != NULL)
		j->conn->job = NULL;
	if (j->req != NULL)
		send_reply(j->req, j, a->stopped);
	job_free(j);
}

/* --- requests --- */

static bool token_ok(const struct admin_http *a, struct evhttp_request *req, const char **why_r)
{
	const char *h = evhttp_find_header(evhttp_request_get_input_headers(req), "Authorization");
	if (h == NULL || strncasecmp(h, "Bearer", 6) != 0 || (h[6] != ' ' && h[6] != '\t')) {
		*why_r = "missing bearer token (Authorization: Bearer TOKEN)";
		return false;
	}
	h += 7;
	while (*h == ' ' || *h == '\t')
		h++;
	size_t len = strlen(h);
	while (len > 0 && (h[len - 1] == ' ' || h[len - 1] == '\t'))
		len--;
	unsigned char d[DIGEST_LEN];
	digest(h, len, d);
	if (CRYPTO_memcmp(d, a->token_digest, DIGEST_LEN) != 0) {
		*why_r = "wrong bearer token";
		return false;
	}
	return true;
}

static void request_cb(struct evhttp_request *req, void *arg)
{
	struct admin_http *a = arg;
	struct evhttp_connection *evcon = evhttp_request_get_connection(req);
	if (a->stopped) {
		reply_now(req, HTTP_SERVUNAVAIL, NULL, NULL, true, "the server is shutting down");
		return;
	}
	struct admin_conn *c = conn_find(a, evcon);
	if (c == NULL) {
		if (a->conn_count >= ADMIN_MAX_CONNECTIONS) {
			log_warn("admin: %d connections open; refusing another", ADMIN_MAX_CONNECTIONS);
			reply_now(req, HTTP_SERVUNAVAIL, "Retry-After", "1", true,
				  "too many admin connections");
			return;
		}
		c = conn_add(a, evcon);
	}
	const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(req);
	const char *path = uri != NULL ? evhttp_uri_get_path(uri) : NULL;
	const char *query = uri != NULL ? evhttp_uri_get_query(uri) : NULL;
	if (path == NULL || *path == '\0')
		path = "/";
	enum evhttp_cmd_type method = evhttp_request_get_command(req);
	const char *why;
	if (!admin_route_is_public(a->env->set, method, path) && !token_ok(a, req, &why)) {
		char *peer = NULL;
		ev_uint16_t port = 0;
		evhttp_connection_get_peer(evcon, &peer, &port);
		log_warn("admin: %s: %s", peer != NULL ? peer : "?", why);
		reply_now(req, 401, "WWW-Authenticate", "Bearer", false, why);
		return;
	}

	struct admin_job *j = xcalloc(1, sizeof(*j));
	j->admin = a;
	j->store = a->env->store;
	j->set = a->env->set;
	j->tasks = a->tasks;
	j->env = a->env;
	buf_init(&j->reply, 0);
	struct evbuffer *in = evhttp_request_get_input_buffer(req);
	size_t body_len = evbuffer_get_length(in);
	char *body = body_len > 0 ? (char *)evbuffer_pullup(in, -1) : NULL;
	admin_route(j, method, path, query, body != NULL ? body : "", body_len);
	/* The body may hold a password: wipe it wherever it was copied. */
	if (body != NULL)
		OPENSSL_cleanse(body, body_len);
	if (j->work == NULL) {
		send_reply(req, j, false);
		job_free(j);
		return;
	}
	j->req = req;
	j->conn = c;
	c->job = j;
	j->next = a->jobs;
	if (a->jobs != NULL)
		a->jobs->prev = j;
	a->jobs = j;
	j->wjob.work = job_work;
	j->wjob.done = job_done;
	worker_pool_submit(a->env->pool, &j->wjob);
}

/* Each new connection gets a TLS bufferevent with the server's current
 * context (SIGHUP replaces env->tls; an SSL keeps its own reference). */
static struct bufferevent *tls_bev_cb(struct event_base *base, void *arg)
{
	struct admin_http *a = arg;
	SSL *ssl = SSL_new(a->env->tls);
	if (ssl == NULL)
		panic("admin: SSL_new failed");
	struct bufferevent *bev = bufferevent_openssl_socket_new(
		base, -1, ssl, BUFFEREVENT_SSL_ACCEPTING, BEV_OPT_CLOSE_ON_FREE);
	if (bev == NULL)
		panic("admin: cannot create a TLS bufferevent");
	bufferevent_openssl_set_allow_dirty_shutdown(bev, 1);
	return bev;
}

struct admin_http *admin_http_create(const struct session_env *env, const char **error_r)
{
	const struct tern_settings *set = env->set;
	*error_r = NULL;
	if (set->admin_listen == NULL || *set->admin_listen == '\0')
		return NULL;
	if (set->admin_tls && env->tls == NULL) {
		snprintf(errbuf, sizeof(errbuf), "%s: [admin] tls = yes needs [tls] cert and key",
			 set->path);
		*error_r = errbuf;
		return NULL;
	}
	struct admin_http *a = xcalloc(1, sizeof(*a));
	a->env = env;
	if (read_token(set->admin_token_file, a->token_digest, error_r) < 0) {
		free(a);
		return NULL;
	}
	a->http = evhttp_new(env->base);
	if (a->http == NULL)
		panic("admin: evhttp_new failed");
	evhttp_set_max_body_size(a->http, ADMIN_MAX_BODY);
	evhttp_set_max_headers_size(a->http, ADMIN_MAX_HEADERS);
	evhttp_set_timeout(a->http, ADMIN_TIMEOUT_SECS);
	/* Every method reaches request_cb, which answers 405 with Allow. */
	evhttp_set_allowed_methods(a->http, EVHTTP_REQ_GET | EVHTTP_REQ_POST | EVHTTP_REQ_HEAD |
					    EVHTTP_REQ_PUT | EVHTTP_REQ_DELETE |
					    EVHTTP_REQ_OPTIONS | EVHTTP_REQ_TRACE |
					    EVHTTP_REQ_CONNECT | EVHTTP_REQ_PATCH);
	evhttp_set_default_content_type(a->http, "application/json");
	evhttp_set_gencb(a->http, request_cb, a);
	if (set->admin_tls)
		evhttp_set_bevcb(a->http, tls_bev_cb, a);
	a->tasks = admin_tasks_create(env->store);
	return a;
}

static int bind_one(void *ctx, const char *host, const char *port)
{
	struct admin_http *a = ctx;
	const char *error;
	int fd = net_bind_tcp(host, port, &error);
	struct evconnlistener *l = NULL;
	if (fd >= 0) {
		l = evconnlistener_new(a->env->base, NULL, NULL,
				       LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC, 128, fd);
		if (l == NULL) {
			error = strerror(errno);
			close(fd);
		}
	}
	if (l == NULL) {
		log_error("admin: cannot listen on %s:%s: %s", host, port, error);
		return -1;
	}
	struct evhttp_bound_socket *b = evhttp_bind_listener(a->http, l);
	if (b == NULL) {
		evconnlistener_free(l);
		log_error("admin: cannot serve on %s:%s", host, port);
		return -1;
	}
	a->bound = xrealloc(a->bound, (a->bound_count + 1) * sizeof(*a->bound));
	a->bound[a->bound_count++] = b;
	log_info("listening proto=%s host=%s port=%s", a->env->set->admin_tls ? "admin-https" : "admin",
		 host, port);
	return 0;
}

int admin_http_listen(struct admin_http *a)
{
	return net_listen_list_foreach(a->env->set->admin_listen, bind_one, a) == 0 ? 0 : -1;
}

void admin_http_stop(struct admin_http *a)
{
	if (a == NULL || a->stopped)
		return;
	a->stopped = true;
	for (unsigned int i = 0; i < a->bound_count; i++)
		evhttp_del_accept_socket(a->http, a->bound[i]);
	a->bound_count = 0;
}

void admin_http_destroy(struct admin_http **ap)
{
	struct admin_http *a = *ap;
	if (a == NULL)
		return;
	*ap = NULL;
	/* Frees every connection (conn_closed detaches their jobs) and
	 * listener. */
	evhttp_free(a->http);
	/* Jobs whose done() never ran: the pool is gone. */
	while (a->jobs != NULL) {
		struct admin_job *j = a->jobs;
		a->jobs = j->next;
		job_free(j);
	}
	if (!admin_tasks_destroy(&a->tasks, ADMIN_REPAIR_GRACE_SECS)) {
		log_warn("shutdown: a repair task is still running after %d s; exiting without waiting for it (run the repair again later: it re-checks everything)",
			 ADMIN_REPAIR_GRACE_SECS);
		log_info("tern stopped");
		_exit(0);
	}
	free(a->bound);
	free(a);
}
