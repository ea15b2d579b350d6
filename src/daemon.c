/*
 * daemon: `tern serve`. Binds the configured listeners, accepts connections
 * into protocol sessions, and shuts down cleanly: on SIGTERM/SIGINT it stops
 * accepting, lets store jobs in flight finish (so every commit that started
 * completes), then frees every session and exits 0. SIGHUP reloads the TLS
 * certificate and key; sessions in progress keep the context they started
 * with.
 */
#include "daemon.h"

#include <errno.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <netdb.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "auth-cache.h"
#include "auth-penalty.h"
#include "buf.h"
#include "conn.h"
#include "delivery.h"
#include "log.h"
#include "net.h"
#include "pop3-session.h"
#include "serve.h"
#include "smtp-session.h"
#include "store.h"
#include "worker-pool.h"

/* Store calls block a worker for an fsync (SQLite) or network round trips
 * (Cassandra); the latter wants more of them to keep sessions busy. */
#define WORKER_THREADS_SQLITE 4
#define WORKER_THREADS_CASSANDRA 16
#define SHUTDOWN_GRACE_SECS 30
/* Refused connections are answered by sessions too; past this many at once
 * (a flood), new ones are closed without a word. */
#define REFUSED_SESSIONS_MAX 64
#define IPV6_CLIENT_PREFIX 64
#define DEFAULT_CIPHERS "ECDHE+AESGCM:ECDHE+CHACHA20:DHE+AESGCM:DHE+CHACHA20:!aNULL:!MD5:!DSS"
#define DEFAULT_CIPHERSUITES "TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256:TLS_AES_128_GCM_SHA256"

enum listener_kind { L_SMTP, L_SMTP_TLS, L_LMTP, L_POP3, L_POP3_TLS };

struct listener {
	struct daemon *d;
	enum listener_kind kind;
	struct evconnlistener *l;
	struct listener *next;
};

struct serve_state {
	struct daemon d;
	struct listener *listeners;
	struct event *sig_term, *sig_int, *sig_hup, *shutdown_timer;
	time_t shutdown_started;
};

void daemon_session_register(struct daemon *d, struct daemon_session *s)
{
	s->next = d->sessions.next;
	s->prev = &d->sessions;
	d->sessions.next->prev = s;
	d->sessions.next = s;
	if (s->refused)
		d->refused_count++;
	else
		d->session_count++;
}

void daemon_session_unregister(struct daemon *d, struct daemon_session *s)
{
	if (s->next == NULL)
		return;
	s->prev->next = s->next;
	s->next->prev = s->prev;
	s->next = s->prev = NULL;
	if (s->refused)
		d->refused_count--;
	else
		d->session_count--;
}

/* One client: an IPv4 address, or an IPv6 /64. */
static void client_key(struct net_addr *key, const struct net_addr *addr)
{
	if (addr->family == AF_INET6)
		net_addr_prefix(key, addr, IPV6_CLIENT_PREFIX);
	else
		*key = *addr;
}

enum daemon_admit daemon_admit(struct daemon *d, const struct net_addr *peer,
			       const char *peer_ip)
{
	const struct tern_settings *set = d->set;
	if (d->session_count >= set->max_connections) {
		log_warn("connection from %s refused: %u connections open ([limits] max_connections = %u)",
			 peer_ip, d->session_count, set->max_connections);
		return DAEMON_ADMIT_TOO_MANY;
	}
	if (settings_trusted(set, peer))
		return DAEMON_ADMIT_OK;
	/* A linear scan: bounded by max_connections, and cheaper than any
	 * bookkeeping that could drift. */
	struct net_addr key, other;
	client_key(&key, peer);
	unsigned int n = 0;
	for (struct daemon_session *s = d->sessions.next; s != &d->sessions; s = s->next) {
		if (s->refused)
			continue;
		client_key(&other, &s->peer);
		if (net_addr_equal(&key, &other))
			n++;
	}
	if (n >= set->max_connections_per_ip) {
		log_warn("connection from %s refused: %u connections from this client ([limits] max_connections_per_ip = %u)",
			 peer_ip, n, set->max_connections_per_ip);
		return DAEMON_ADMIT_TOO_MANY_FROM_IP;
	}
	return DAEMON_ADMIT_OK;
}

bool daemon_peer_trusted(const struct daemon *d, const struct conn *conn)
{
	return settings_trusted(d->set, conn_peer_addr(conn));
}

bool daemon_plaintext_allowed(const struct daemon *d, const struct conn *conn)
{
	switch (d->set->plaintext) {
	case PLAINTEXT_ALWAYS:
		return true;
	case PLAINTEXT_TLS:
		return conn_is_tls(conn);
	case PLAINTEXT_TLS_OR_LOOPBACK:
		break;
	}
	return conn_is_tls(conn) || daemon_peer_trusted(d, conn);
}

static uint64_t monotonic_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

unsigned int daemon_auth_failed(struct daemon *d, const struct conn *conn)
{
	/* Trusted hosts (a local webmail, a proxy) speak for many users: one
	 * user's typos must not slow down everyone behind them. */
	if (daemon_peer_trusted(d, conn))
		return 0;
	return auth_penalty_fail(d->penalty, conn_peer_addr(conn), monotonic_ms());
}

void daemon_auth_succeeded(struct daemon *d, const struct conn *conn)
{
	auth_penalty_success(d->penalty, conn_peer_addr(conn));
}

SSL_CTX *daemon_tls_context(const struct tern_settings *set, const char **error_r)
{
	static char errbuf[512];
	SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
	if (ctx == NULL) {
		*error_r = "cannot create a TLS context";
		return NULL;
	}
	SSL_CTX_set_min_proto_version(ctx, set->tls_min_version);
	SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_CIPHER_SERVER_PREFERENCE |
					 SSL_OP_NO_COMPRESSION);
	SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
	SSL_CTX_set_dh_auto(ctx, 1);
	const char *ciphers = set->tls_ciphers != NULL ? set->tls_ciphers : DEFAULT_CIPHERS;
	const char *suites = set->tls_ciphersuites != NULL ? set->tls_ciphersuites
							   : DEFAULT_CIPHERSUITES;
	if (SSL_CTX_set_cipher_list(ctx, ciphers) != 1) {
		snprintf(errbuf, sizeof(errbuf), "%s: [tls] ciphers \"%.200s\": no usable cipher",
			 set->path, ciphers);
		goto fail;
	}
	if (SSL_CTX_set_ciphersuites(ctx, suites) != 1) {
		snprintf(errbuf, sizeof(errbuf), "%s: [tls] ciphersuites \"%.200s\": no usable suite",
			 set->path, suites);
		goto fail;
	}
	if (SSL_CTX_use_certificate_chain_file(ctx, set->tls_cert) != 1) {
		snprintf(errbuf, sizeof(errbuf), "%s: [tls] cert %s: cannot load: %s", set->path,
			 set->tls_cert, ERR_reason_error_string(ERR_get_error()));
		goto fail;
	}
	if (SSL_CTX_use_PrivateKey_file(ctx, set->tls_key, SSL_FILETYPE_PEM) != 1) {
		snprintf(errbuf, sizeof(errbuf), "%s: [tls] key %s: cannot load: %s", set->path,
			 set->tls_key, ERR_reason_error_string(ERR_get_error()));
		goto fail;
	}
	if (SSL_CTX_check_private_key(ctx) != 1) {
		snprintf(errbuf, sizeof(errbuf), "%s: [tls] key %s does not match cert %s",
			 set->path, set->tls_key, set->tls_cert);
		goto fail;
	}
	return ctx;
fail:
	ERR_clear_error();
	SSL_CTX_free(ctx);
	*error_r = errbuf;
	return NULL;
}

static void accept_cb(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *addr,
		      int socklen, void *arg)
{
	struct listener *li = arg;
	struct daemon *d = li->d;
	if (d->shutting_down) {
		close(fd);
		return;
	}
	struct net_addr peer;
	net_addr_from_sockaddr(&peer, addr);
	char ip[INET6_ADDRSTRLEN + 1];
	if (getnameinfo(addr, (socklen_t)socklen, ip, sizeof(ip), NULL, 0, NI_NUMERICHOST) != 0)
		str_copy(ip, "unknown", sizeof(ip));
	enum daemon_admit admit = daemon_admit(d, &peer, ip);
	if (admit != DAEMON_ADMIT_OK && d->refused_count >= REFUSED_SESSIONS_MAX) {
		close(fd);
		return;
	}
	switch (li->kind) {
	case L_SMTP:
		smtp_session_create(d, fd, addr, (socklen_t)socklen, SMTP_PROTOCOL_SMTP, false,
				    admit);
		break;
	case L_SMTP_TLS:
		smtp_session_create(d, fd, addr, (socklen_t)socklen, SMTP_PROTOCOL_SMTP, true,
				    admit);
		break;
	case L_LMTP:
		smtp_session_create(d, fd, addr, (socklen_t)socklen, SMTP_PROTOCOL_LMTP, false,
				    admit);
		break;
	case L_POP3:
		pop3_session_create(d, fd, addr, (socklen_t)socklen, false, admit);
		break;
	case L_POP3_TLS:
		pop3_session_create(d, fd, addr, (socklen_t)socklen, true, admit);
		break;
	}
}

static void accept_error_cb(struct evconnlistener *l, void *arg)
{
	int err = EVUTIL_SOCKET_ERROR();
	log_error("accept: %s", evutil_socket_error_to_string(err));
}

struct bind_ctx {
	struct serve_state *ss;
	enum listener_kind kind;
	const char *what;
};

static int bind_one(void *ctx, const char *host, const char *port)
{
	struct bind_ctx *b = ctx;
	struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
				  .ai_flags = AI_PASSIVE | AI_NUMERICSERV };
	struct addrinfo *res = NULL;
	int gai = getaddrinfo(*host == '\0' || strcmp(host, "*") == 0 ? NULL : host, port, &hints,
			      &res);
	if (gai != 0) {
		log_error("%s listen %s:%s: %s", b->what, host, port, gai_strerror(gai));
		return -1;
	}
	struct listener *li = xcalloc(1, sizeof(*li));
	li->d = &b->ss->d;
	li->kind = b->kind;
	li->l = evconnlistener_new_bind(b->ss->d.base, accept_cb, li,
					LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE |
						LEV_OPT_CLOSE_ON_EXEC,
					512, res->ai_addr, (int)res->ai_addrlen);
	freeaddrinfo(res);
	if (li->l == NULL) {
		log_error("%s: cannot listen on %s:%s: %s", b->what, host, port, strerror(errno));
		free(li);
		return -1;
	}
	evconnlistener_set_error_cb(li->l, accept_error_cb);
	li->next = b->ss->listeners;
	b->ss->listeners = li;
	log_info("%s listening on %s:%s", b->what, host, port);
	return 0;
}

/* Binds every host:port of a listen list (checked when the settings were
 * read). 0 or -1 with a message logged. */
static int bind_list(struct serve_state *ss, const char *list, enum listener_kind kind,
		     const char *what)
{
	if (list == NULL || *list == '\0')
		return 0;
	struct bind_ctx b = { ss, kind, what };
	return net_listen_list_foreach(list, bind_one, &b) == 0 ? 0 : -1;
}

static void free_listeners(struct serve_state *ss)
{
	while (ss->listeners != NULL) {
		struct listener *li = ss->listeners;
		ss->listeners = li->next;
		evconnlistener_free(li->l);
		free(li);
	}
}

static void shutdown_tick(evutil_socket_t fd, short what, void *arg)
{
	struct serve_state *ss = arg;
	unsigned int pending = worker_pool_pending(ss->d.pool);
	if (pending == 0 || time(NULL) - ss->shutdown_started > SHUTDOWN_GRACE_SECS) {
		if (pending > 0)
			log_warn("shutdown: %u store jobs still running after %d s", pending,
				 SHUTDOWN_GRACE_SECS);
		event_base_loopexit(ss->d.base, NULL);
	}
}

static void signal_cb(evutil_socket_t sig, short what, void *arg)
{
	struct serve_state *ss = arg;
	if (sig == SIGHUP) {
		if (ss->d.set->tls_cert == NULL)
			return;
		const char *error;
		SSL_CTX *ctx = daemon_tls_context(ss->d.set, &error);
		if (ctx == NULL) {
			log_error("SIGHUP: TLS reload failed, keeping the old certificate: %s", error);
			return;
		}
		/* Sessions hold their own reference through their SSL objects. */
		SSL_CTX_free(ss->d.tls);
		ss->d.tls = ctx;
		log_info("SIGHUP: TLS certificate and key reloaded");
		return;
	}
	if (ss->d.shutting_down)
		return;
	log_info("shutting down: no new connections; finishing %u store jobs in flight",
		 worker_pool_pending(ss->d.pool));
	ss->d.shutting_down = true;
	free_listeners(ss);
	ss->shutdown_started = time(NULL);
	struct timeval tv = { 0, 50000 };
	ss->shutdown_timer = event_new(ss->d.base, -1, EV_PERSIST, shutdown_tick, ss);
	event_add(ss->shutdown_timer, &tv);
}

/* Each connection is a descriptor: make room for max_connections (plus
 * refused ones, listeners, the store and logs) if the hard limit allows. */
static void raise_fd_limit(const struct tern_settings *set)
{
	struct rlimit rl;
	rlim_t want = (rlim_t)set->max_connections + REFUSED_SESSIONS_MAX + 128;
	if (getrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur >= want)
		return;
	rlim_t old = rl.rlim_cur;
	rl.rlim_cur = rl.rlim_max == RLIM_INFINITY || rl.rlim_max >= want ? want : rl.rlim_max;
	if (setrlimit(RLIMIT_NOFILE, &rl) != 0)
		rl.rlim_cur = old;
	if (rl.rlim_cur < want)
		log_warn("open file limit is %llu, below the %llu that [limits] max_connections = %u needs; raise it (ulimit -n)",
			 (unsigned long long)rl.rlim_cur, (unsigned long long)want,
			 set->max_connections);
}

int serve(const struct tern_settings *set)
{
	struct serve_state ss;
	memset(&ss, 0, sizeof(ss));
	struct daemon *d = &ss.d;
	d->set = set;
	d->sessions.next = d->sessions.prev = &d->sessions;

	signal(SIGPIPE, SIG_IGN);
	raise_fd_limit(set);
	if (set->tls_cert != NULL) {
		const char *error;
		d->tls = daemon_tls_context(set, &error);
		if (d->tls == NULL) {
			log_error("%s", error);
			return 78;
		}
	} else if ((set->smtp_listen_tls != NULL && *set->smtp_listen_tls != '\0') ||
		   (set->pop3_listen_tls != NULL && *set->pop3_listen_tls != '\0')) {
		log_error("%s: listen_tls is set but [tls] has no cert and key", set->path);
		return 78;
	}
	const char *error;
	d->store = store_open(&set->store, &error);
	if (d->store == NULL) {
		log_error("cannot open the %s store: %s", set->store.backend, error);
		SSL_CTX_free(d->tls);
		return 75;
	}
	/* Spool files have no name while in use; anything found is a leftover
	 * of a crash and nobody's message (none was answered 2xx). */
	unsigned int swept = 0;
	if (delivery_spool_sweep(set->data_dir, &swept, &error) < 0)
		log_warn("spool: %s", error);
	if (swept > 0)
		log_info("spool: removed %u leftover file%s", swept, swept == 1 ? "" : "s");
	d->base = event_base_new();
	d->pool = worker_pool_create(d->base, strcmp(set->store.backend, "cassandra") == 0
						       ? WORKER_THREADS_CASSANDRA
						       : WORKER_THREADS_SQLITE);
	d->penalty = auth_penalty_create(set->auth_failure_delay_initial_ms,
					 set->auth_failure_delay_max_ms, set->auth_failure_reset_ms);
	d->auth_cache = auth_cache_create(8192, set->auth_cache_ttl_ms);

	int ret = 0;
	if (bind_list(&ss, set->smtp_listen, L_SMTP, "smtp") < 0 ||
	    bind_list(&ss, set->smtp_listen_tls, L_SMTP_TLS, "smtps") < 0 ||
	    bind_list(&ss, set->lmtp_listen, L_LMTP, "lmtp") < 0 ||
	    bind_list(&ss, set->pop3_listen, L_POP3, "pop3") < 0 ||
	    bind_list(&ss, set->pop3_listen_tls, L_POP3_TLS, "pop3s") < 0) {
		ret = 71; /* EX_OSERR */
	} else if (ss.listeners == NULL) {
		log_error("%s: nothing to serve: no listen address is configured", set->path);
		ret = 78;
	} else {
		ss.sig_term = evsignal_new(d->base, SIGTERM, signal_cb, &ss);
		ss.sig_int = evsignal_new(d->base, SIGINT, signal_cb, &ss);
		ss.sig_hup = evsignal_new(d->base, SIGHUP, signal_cb, &ss);
		event_add(ss.sig_term, NULL);
		event_add(ss.sig_int, NULL);
		event_add(ss.sig_hup, NULL);
		log_info("tern ready (store: %s, pop3_ids: %s)", store_backend_name(d->store),
			 set->store.pop3_ids == STORE_POP3_IDS_UID ? "uid" : "messageid");
		event_base_dispatch(d->base);
	}

	free_listeners(&ss);
	worker_pool_destroy(&d->pool);
	while (d->sessions.next != &d->sessions) {
		struct daemon_session *s = d->sessions.next;
		s->destroy(s);
	}
	if (ss.sig_term != NULL) {
		event_free(ss.sig_term);
		event_free(ss.sig_int);
		event_free(ss.sig_hup);
	}
	if (ss.shutdown_timer != NULL)
		event_free(ss.shutdown_timer);
	store_close(&d->store);
	auth_penalty_destroy(&d->penalty);
	auth_cache_destroy(&d->auth_cache);
	SSL_CTX_free(d->tls);
	event_base_free(d->base);
	if (ret == 0)
		log_info("tern stopped");
	return ret;
}
