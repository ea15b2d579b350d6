/*
 * server: `tern serve`. Binds every listen address of the protocol table,
 * accepts connections into sessions, and shuts down cleanly: on
 * SIGTERM/SIGINT it stops accepting, lets store jobs in flight finish (so
 * every commit that started completes), then frees every session and
 * exits 0. SIGHUP reloads the TLS certificate and key, and the OAuth JWKS
 * file; sessions in progress keep the context they started with, and
 * token checks in flight the key set they started with.
 *
 * This is the only module above the protocols: sessions know nothing of
 * listeners, and reach the services they share through struct session_env.
 */
#include "server.h"

#include <errno.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <netdb.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "admin-http.h"
#include "auth-cache.h"
#include "auth-penalty.h"
#include "buf.h"
#include "delivery.h"
#include "log.h"
#include "net.h"
#include "oauth.h"
#include "pop3-session.h"
#include "session.h"
#include "smtp-session.h"
#include "store.h"
#include "worker-pool.h"

#define SHUTDOWN_GRACE_SECS 30
#define DEFAULT_CIPHERS "ECDHE+AESGCM:ECDHE+CHACHA20:DHE+AESGCM:DHE+CHACHA20:!aNULL:!MD5:!DSS"
#define DEFAULT_CIPHERSUITES "TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256:TLS_AES_128_GCM_SHA256"
/* Descriptors beyond max_connections: refused sessions, listeners, the
 * store, logs. */
#define FD_SPARE 192

/* What listens where: one row per listen key. A new protocol is a session
 * file and a row here. */
struct listener_def {
	const char *name;                       /* for logs */
	size_t listen_offset;                   /* the listen list in struct tern_settings */
	bool implicit_tls;
	const struct session_protocol *protocol;
};

#define LISTEN(field) offsetof(struct tern_settings, field)
static const struct listener_def listener_defs[] = {
	{ "smtp", LISTEN(smtp_listen), false, &smtp_protocol },
	{ "smtps", LISTEN(smtp_listen_tls), true, &smtp_protocol },
	{ "lmtp", LISTEN(lmtp_listen), false, &lmtp_protocol },
	{ "pop3", LISTEN(pop3_listen), false, &pop3_protocol },
	{ "pop3s", LISTEN(pop3_listen_tls), true, &pop3_protocol },
};

struct server;

struct listener {
	struct server *srv;
	const struct listener_def *def;
	struct evconnlistener *l;
	struct listener *next;
};

struct server {
	struct session_env env;
	struct listener *listeners;
	struct admin_http *admin;
	struct event *sig_term, *sig_int, *sig_hup, *shutdown_timer;
	time_t shutdown_started;
	bool shutting_down;
};

static const char *listen_list(const struct tern_settings *set, const struct listener_def *def)
{
	return *(char *const *)((const char *)set + def->listen_offset);
}

/* Builds the server TLS context from [tls]; NULL with *error_r when the
 * files cannot be loaded. */
static SSL_CTX *tls_context(const struct tern_settings *set, const char **error_r)
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
	struct server *srv = li->srv;
	if (srv->shutting_down) {
		close(fd);
		return;
	}
	struct net_addr peer;
	net_addr_from_sockaddr(&peer, addr);
	char ip[INET6_ADDRSTRLEN + 1];
	if (getnameinfo(addr, (socklen_t)socklen, ip, sizeof(ip), NULL, 0, NI_NUMERICHOST) != 0)
		str_copy(ip, "unknown", sizeof(ip));
	enum session_admit admit = session_admit(&srv->env, &peer, ip);
	session_create(&srv->env, li->def->protocol, fd, addr, (socklen_t)socklen,
		       li->def->implicit_tls, admit);
}

static void accept_error_cb(struct evconnlistener *l, void *arg)
{
	int err = EVUTIL_SOCKET_ERROR();
	log_error("accept: %s", evutil_socket_error_to_string(err));
}

struct bind_ctx {
	struct server *srv;
	const struct listener_def *def;
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
		log_error("%s listen %s:%s: %s", b->def->name, host, port, gai_strerror(gai));
		return -1;
	}
	struct listener *li = xcalloc(1, sizeof(*li));
	li->srv = b->srv;
	li->def = b->def;
	li->l = evconnlistener_new_bind(b->srv->env.base, accept_cb, li,
					LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE |
						LEV_OPT_CLOSE_ON_EXEC,
					512, res->ai_addr, (int)res->ai_addrlen);
	freeaddrinfo(res);
	if (li->l == NULL) {
		log_error("%s: cannot listen on %s:%s: %s", b->def->name, host, port,
			  strerror(errno));
		free(li);
		return -1;
	}
	evconnlistener_set_error_cb(li->l, accept_error_cb);
	li->next = b->srv->listeners;
	b->srv->listeners = li;
	log_info("%s listening on %s:%s", b->def->name, host, port);
	return 0;
}

/* Binds every row's listen list (checked when the settings were read).
 * 0 or -1 with a message logged. */
static int bind_all(struct server *srv)
{
	for (size_t i = 0; i < sizeof(listener_defs) / sizeof(listener_defs[0]); i++) {
		const char *list = listen_list(srv->env.set, &listener_defs[i]);
		if (list == NULL || *list == '\0')
			continue;
		session_metrics_register(listener_defs[i].protocol);
		struct bind_ctx b = { srv, &listener_defs[i] };
		if (net_listen_list_foreach(list, bind_one, &b) != 0)
			return -1;
	}
	return 0;
}

static bool needs_tls(const struct tern_settings *set)
{
	for (size_t i = 0; i < sizeof(listener_defs) / sizeof(listener_defs[0]); i++) {
		const char *list = listen_list(set, &listener_defs[i]);
		if (listener_defs[i].implicit_tls && list != NULL && *list != '\0')
			return true;
	}
	return false;
}

static void free_listeners(struct server *srv)
{
	while (srv->listeners != NULL) {
		struct listener *li = srv->listeners;
		srv->listeners = li->next;
		evconnlistener_free(li->l);
		free(li);
	}
}

static void shutdown_tick(evutil_socket_t fd, short what, void *arg)
{
	struct server *srv = arg;
	unsigned int pending = worker_pool_pending(srv->env.pool);
	if (pending == 0 || time(NULL) - srv->shutdown_started > SHUTDOWN_GRACE_SECS) {
		if (pending > 0)
			log_warn("shutdown: %u store jobs still running after %d s", pending,
				 SHUTDOWN_GRACE_SECS);
		event_base_loopexit(srv->env.base, NULL);
	}
}

static void reload_tls(struct server *srv)
{
	if (srv->env.set->tls_cert == NULL)
		return;
	const char *error;
	SSL_CTX *ctx = tls_context(srv->env.set, &error);
	if (ctx == NULL) {
		log_error("SIGHUP: TLS reload failed, keeping the old certificate: %s", error);
		return;
	}
	/* Sessions hold their own reference through their SSL objects. */
	SSL_CTX_free(srv->env.tls);
	srv->env.tls = ctx;
	log_info("SIGHUP: TLS certificate and key reloaded");
}

/* Checks in flight hold a reference to the set they started with. */
static void reload_oauth_keys(struct server *srv)
{
	const struct tern_settings *set = srv->env.set;
	if (set->oauth_jwks_file == NULL)
		return;
	char *error;
	struct oauth_keys *keys = oauth_keys_load(set->oauth_jwks_file, &error);
	if (keys == NULL) {
		log_error("SIGHUP: [auth] oauth_jwks_file reload failed, keeping the old keys: %s",
			  error);
		free(error);
		return;
	}
	oauth_keys_unref(&srv->env.oauth_keys);
	srv->env.oauth_keys = keys;
	log_info("SIGHUP: [auth] oauth_jwks_file reloaded (%u keys)", oauth_keys_count(keys));
}

static void signal_cb(evutil_socket_t sig, short what, void *arg)
{
	struct server *srv = arg;
	if (sig == SIGHUP) {
		reload_tls(srv);
		reload_oauth_keys(srv);
		return;
	}
	if (srv->shutting_down)
		return;
	log_info("shutting down: no new connections; finishing %u store jobs in flight",
		 worker_pool_pending(srv->env.pool));
	srv->shutting_down = true;
	free_listeners(srv);
	admin_http_stop(srv->admin);
	srv->shutdown_started = time(NULL);
	struct timeval tv = { 0, 50000 };
	srv->shutdown_timer = event_new(srv->env.base, -1, EV_PERSIST, shutdown_tick, srv);
	event_add(srv->shutdown_timer, &tv);
}

/* Each connection is a descriptor: make room for max_connections if the
 * hard limit allows. */
static void raise_fd_limit(const struct tern_settings *set)
{
	struct rlimit rl;
	rlim_t want = (rlim_t)set->max_connections + FD_SPARE;
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

static void add_signal(struct server *srv, struct event **ev, int sig)
{
	*ev = evsignal_new(srv->env.base, sig, signal_cb, srv);
	event_add(*ev, NULL);
}

int serve(const struct tern_settings *set)
{
	struct server srv;
	memset(&srv, 0, sizeof(srv));
	struct session_env *env = &srv.env;
	env->set = set;

	signal(SIGPIPE, SIG_IGN);
	raise_fd_limit(set);
	if (set->tls_cert != NULL) {
		const char *error;
		env->tls = tls_context(set, &error);
		if (env->tls == NULL) {
			log_error("%s", error);
			return 78;
		}
	} else if (needs_tls(set)) {
		log_error("%s: listen_tls is set but [tls] has no cert and key", set->path);
		return 78;
	}
	if (set->oauth_jwks_file != NULL) {
		char *jwks_error;
		env->oauth_keys = oauth_keys_load(set->oauth_jwks_file, &jwks_error);
		if (env->oauth_keys == NULL) {
			log_error("%s: [auth] oauth_jwks_file: %s", set->path, jwks_error);
			free(jwks_error);
			SSL_CTX_free(env->tls);
			return 78;
		}
	}
	const char *error;
	env->store = store_open(&set->store, &error);
	if (env->store == NULL) {
		log_error("cannot open the %s store: %s", set->store.backend, error);
		SSL_CTX_free(env->tls);
		oauth_keys_unref(&env->oauth_keys);
		return 75;
	}
	/* Spool files have no name while in use; anything found is a leftover
	 * of a crash and nobody's message (none was answered 2xx). */
	unsigned int swept = 0;
	if (delivery_spool_sweep(set->data_dir, &swept, &error) < 0)
		log_warn("spool: %s", error);
	if (swept > 0)
		log_info("spool: removed %u leftover file%s", swept, swept == 1 ? "" : "s");
	env->base = event_base_new();
	env->pool = worker_pool_create(env->base, store_worker_threads(env->store));
	env->penalty = auth_penalty_create(set->auth_failure_delay_initial_ms,
					   set->auth_failure_delay_max_ms,
					   set->auth_failure_reset_ms);
	env->auth_cache = auth_cache_create(8192, set->auth_cache_ttl_ms);
	env->registry = session_registry_create();

	int ret = 0;
	srv.admin = admin_http_create(env, &error);
	if (srv.admin == NULL && error != NULL) {
		log_error("%s", error);
		ret = 78;
	} else if (bind_all(&srv) < 0 || (srv.admin != NULL && admin_http_listen(srv.admin) < 0)) {
		ret = 71; /* EX_OSERR */
	} else if (srv.listeners == NULL) {
		log_error("%s: nothing to serve: no listen address is configured", set->path);
		ret = 78;
	} else {
		add_signal(&srv, &srv.sig_term, SIGTERM);
		add_signal(&srv, &srv.sig_int, SIGINT);
		add_signal(&srv, &srv.sig_hup, SIGHUP);
		log_info("tern ready (store: %s, pop3_ids: %s)", store_backend_name(env->store),
			 set->store.pop3_ids == STORE_POP3_IDS_UID ? "uid" : "messageid");
		event_base_dispatch(env->base);
	}

	free_listeners(&srv);
	worker_pool_destroy(&env->pool);
	admin_http_destroy(&srv.admin);
	session_registry_destroy(&env->registry);
	if (srv.sig_term != NULL) {
		event_free(srv.sig_term);
		event_free(srv.sig_int);
		event_free(srv.sig_hup);
	}
	if (srv.shutdown_timer != NULL)
		event_free(srv.shutdown_timer);
	store_close(&env->store);
	auth_penalty_destroy(&env->penalty);
	auth_cache_destroy(&env->auth_cache);
	SSL_CTX_free(env->tls);
	oauth_keys_unref(&env->oauth_keys);
	event_base_free(env->base);
	if (ret == 0)
		log_info("tern stopped");
	return ret;
}
