/*
 * server: `tern serve`. Binds every listen address of the protocol table,
 * accepts connections into sessions, and shuts down cleanly: on
 * SIGTERM/SIGINT it stops accepting, lets store jobs in flight finish (so
 * every commit that started completes), then frees every session and
 * exits 0. SIGHUP reloads the TLS certificate and key, and the OAuth JWKS
 * file, and reopens the audit log (rotation); sessions in progress keep
 * the context they started with, and token checks in flight the key set
 * they started with.
 *
 * Start-up order: TLS files and the JWKS read and every protocol's listen
 * socket bound (as root, for ports below 1024), then [server] user and
 * group become the process's only identity, then the store is opened, the
 * worker threads start and the admin API reads its token, so every file
 * tern creates (the SQLite database, the spool) belongs to that user; only
 * then do the sockets listen (the admin one bound), so a client that
 * can connect finds a server that is ready, and no client byte is read
 * before the drop. systemd hears READY=1 then, STOPPING=1 at shutdown,
 * RELOADING=1 and READY=1 around SIGHUP.
 *
 * This is the only module above the protocols: sessions know nothing of
 * listeners, and reach the services they share through struct session_env.
 */
#include "server.h"

#include <arpa/inet.h>
#include <errno.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <grp.h>
#include <limits.h>
#include <netdb.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <pwd.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <systemd/sd-daemon.h>
#include <time.h>
#include <unistd.h>

#include "admin-http.h"
#include "audit.h"
#include "auth-cache.h"
#include "auth-penalty.h"
#include "buf.h"
#include "clock.h"
#include "delivery.h"
#include "log.h"
#include "net.h"
#include "outbound.h"
#include "oauth.h"
#include "pop3-expire.h"
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
	{ "submission", LISTEN(submission_listen), false, &submission_protocol },
	{ "submissions", LISTEN(submission_listen_tls), true, &submission_protocol },
	{ "pop3", LISTEN(pop3_listen), false, &pop3_protocol },
	{ "pop3s", LISTEN(pop3_listen_tls), true, &pop3_protocol },
};

struct server;

struct listener {
	struct server *srv;
	const struct listener_def *def;
	evutil_socket_t fd;          /* bound, not yet listening (l == NULL) */
	struct evconnlistener *l;    /* listening: owns fd */
	char host[NI_MAXHOST], port[8];
	struct listener *next;
};

struct server {
	struct session_env env;
	struct listener *listeners;
	struct admin_http *admin;
	struct pop3_expire *expire;
	struct outbound *outbound;     /* DKIM key, relay, queue runner */
	struct event *sig_term, *sig_int, *sig_hup, *shutdown_timer;
	time_t shutdown_started;
	bool shutting_down;
};

static const char *listen_list(const struct tern_settings *set, const struct listener_def *def)
{
	return *(char *const *)((const char *)set + def->listen_offset);
}

/* Why OpenSSL could not load a PEM file: its reason, or, when it has
 * none (a missing file), the system's. */
static const char *tls_load_error(const char *path)
{
	const char *reason = ERR_reason_error_string(ERR_get_error());
	if (reason != NULL)
		return reason;
	return access(path, R_OK) != 0 ? strerror(errno) : "unreadable";
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
			 set->tls_cert, tls_load_error(set->tls_cert));
		goto fail;
	}
	if (SSL_CTX_use_PrivateKey_file(ctx, set->tls_key, SSL_FILETYPE_PEM) != 1) {
		snprintf(errbuf, sizeof(errbuf), "%s: [tls] key %s: cannot load: %s", set->path,
			 set->tls_key, tls_load_error(set->tls_key));
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
	/* Bound now (root may be needed), listening only once the store is
	 * open and root is gone (start_listening): a client that can connect
	 * finds a server that is ready. */
	const char *error;
	evutil_socket_t fd = net_bind_tcp(host, port, &error);
	if (fd < 0) {
		log_error("%s: cannot listen on %s:%s: %s", b->def->name, host, port, error);
		return -1;
	}
	struct listener *li = xcalloc(1, sizeof(*li));
	li->srv = b->srv;
	li->def = b->def;
	li->fd = fd;
	str_copy(li->host, host, sizeof(li->host));
	str_copy(li->port, port, sizeof(li->port));
	li->next = b->srv->listeners;
	b->srv->listeners = li;
	return 0;
}

/* listen() on every bound socket. 0 or -1 with a message logged. */
static int start_listening(struct server *srv)
{
	for (struct listener *li = srv->listeners; li != NULL; li = li->next) {
		li->l = evconnlistener_new(srv->env.base, accept_cb, li,
					   LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC, 512, li->fd);
		if (li->l == NULL) {
			log_error("%s: cannot listen on %s:%s: %s", li->def->name, li->host, li->port,
				  strerror(errno));
			return -1;
		}
		evconnlistener_set_error_cb(li->l, accept_error_cb);
		log_info("listening proto=%s host=%s port=%s", li->def->name, li->host, li->port);
	}
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
		if (li->l != NULL)
			evconnlistener_free(li->l);
		else
			close(li->fd);
		free(li);
	}
}

/* --- systemd (Type=notify; each call does nothing without NOTIFY_SOCKET) --- */

static void notify_ready(const struct server *srv)
{
	sd_notifyf(0, "READY=1\nSTATUS=serving (store: %s)", store_backend_name(srv->env.store));
}

static void notify_reloading(void)
{
	sd_notifyf(0, "RELOADING=1\nMONOTONIC_USEC=%llu\nSTATUS=reloading the TLS certificate",
		   (unsigned long long)clock_monotonic_us());
}

static void notify_stopping(void)
{
	sd_notify(0, "STOPPING=1\nSTATUS=stopping: finishing the store jobs in flight");
}

/* --- running as [server] user: bind as root, then drop for good --- */

/* Whether this process can run as [server] user at all: root can become
 * anyone; anyone else must already be that user and group. */
static int privileges_check(const struct tern_settings *set)
{
	if (set->user == NULL || geteuid() == 0)
		return 0;
	if (getuid() == set->uid && geteuid() == set->uid && getgid() == set->gid &&
	    getegid() == set->gid)
		return 0;
	log_error("%s:%u: [server] user = %s (uid %u, gid %u): tern runs as uid %u, gid %u, and only root can switch; start it as root, or as that user and group",
		  set->path, set->user_line, set->user, (unsigned int)set->uid,
		  (unsigned int)set->gid, (unsigned int)geteuid(), (unsigned int)getegid());
	return -1;
}

static int find_public(void *ctx, const char *host, const char *port)
{
	char *where = ctx;
	struct in_addr a4;
	struct in6_addr a6;
	bool loopback = strcmp(host, "localhost") == 0 ||
			(inet_pton(AF_INET, host, &a4) == 1 && (ntohl(a4.s_addr) >> 24) == 127) ||
			(inet_pton(AF_INET6, host, &a6) == 1 && IN6_IS_ADDR_LOOPBACK(&a6));
	if (!loopback && where[0] == '\0')
		snprintf(where, 300, "%s:%s", *host != '\0' ? host : "*", port);
	return 0;
}

/* Root serving more than loopback without [server] user is a warning: a
 * flaw reachable from the network would run with root's rights. */
static void warn_root_public(const struct tern_settings *set)
{
	if (set->user != NULL || geteuid() != 0)
		return;
	char where[300] = "";
	for (size_t i = 0; i < sizeof(listener_defs) / sizeof(listener_defs[0]); i++) {
		const char *list = listen_list(set, &listener_defs[i]);
		if (list != NULL && *list != '\0')
			net_listen_list_foreach(list, find_public, where);
	}
	if (where[0] != '\0')
		log_warn("running as root and listening beyond loopback: set [server] user (e.g. user = tern) so that tern drops root after binding address=%s",
			 where);
}

/* After the listeners are bound and before any thread starts or any client
 * is read: the user's groups, group and user, for good. 0, or -1 logged. */
int serve_drop_privileges(const struct tern_settings *set)
{
	if (set->user == NULL || geteuid() != 0)
		return 0; /* serve: privileges_check() has seen that we are the user */
	if (initgroups(set->user, set->gid) != 0) {
		log_error("initgroups(%s, %u): %s", set->user, (unsigned int)set->gid, strerror(errno));
		return -1;
	}
	if (setgid(set->gid) != 0) {
		log_error("setgid(%u): %s", (unsigned int)set->gid, strerror(errno));
		return -1;
	}
	if (setuid(set->uid) != 0) {
		log_error("setuid(%u): %s", (unsigned int)set->uid, strerror(errno));
		return -1;
	}
	/* Verified, not assumed: no saved id may bring root back. */
	if (set->uid != 0 && setuid(0) != -1) {
		log_error("privilege drop failed: setuid(0) still succeeds after setuid(%u)",
			  (unsigned int)set->uid);
		return -1;
	}
	if (getuid() != set->uid || geteuid() != set->uid || getgid() != set->gid ||
	    getegid() != set->gid) {
		log_error("privilege drop failed: uid %u/%u gid %u/%u, expected uid %u gid %u",
			  (unsigned int)getuid(), (unsigned int)geteuid(), (unsigned int)getgid(),
			  (unsigned int)getegid(), (unsigned int)set->uid, (unsigned int)set->gid);
		return -1;
	}
	log_info("privileges dropped user=%s uid=%u gid=%u", set->user, (unsigned int)set->uid,
		 (unsigned int)set->gid);
	return 0;
}

static const char *user_name(uid_t uid, char *buf, size_t size)
{
	char pwbuf[4096];
	struct passwd pw, *pwp = NULL;
	if (getpwuid_r(uid, &pw, pwbuf, sizeof(pwbuf), &pwp) == 0 && pwp != NULL)
		str_copy(buf, pw.pw_name, size);
	else
		snprintf(buf, size, "%u", (unsigned int)uid);
	return buf;
}

static const char *group_name(gid_t gid, char *buf, size_t size)
{
	char grbuf[16384];
	struct group gr, *grp = NULL;
	if (getgrgid_r(gid, &gr, grbuf, sizeof(grbuf), &grp) == 0 && grp != NULL)
		str_copy(buf, gr.gr_name, size);
	else
		snprintf(buf, size, "%u", (unsigned int)gid);
	return buf;
}

/* A directory that must belong to [server] user. The spool may be
 * missing: tern creates it, as that user. */
static void check_owned(const struct tern_settings *set, const char *dir, bool is_spool,
			struct buf *problems)
{
	struct stat st;
	char who[256], grp[256];
	group_name(set->gid, grp, sizeof(grp));
	if (stat(dir, &st) != 0) {
		if (errno == ENOENT && is_spool)
			return;
		if (errno == ENOENT)
			settings_add_problem(problems, "%s: data_dir %s does not exist: install -d -o %s -g %s %s",
				    set->path, dir, set->user, grp, dir);
		else
			settings_add_problem(problems, "%s: cannot check %s: %s", set->path, dir, strerror(errno));
		return;
	}
	if (!S_ISDIR(st.st_mode)) {
		settings_add_problem(problems, "%s: %s is not a directory", set->path, dir);
		return;
	}
	if (st.st_uid != set->uid)
		settings_add_problem(problems, "%s: %s %s is owned by %s, not by %s: chown -R %s:%s %s",
			    set->path, is_spool ? "the spool" : "data_dir", dir,
			    user_name(st.st_uid, who, sizeof(who)), set->user, set->user, grp,
			    set->data_dir);
}

void serve_check_data_dir(const struct tern_settings *set, struct buf *problems)
{
	if (set->user == NULL)
		return;
	check_owned(set, set->data_dir, false, problems);
	char spool[PATH_MAX];
	snprintf(spool, sizeof(spool), "%s/spool", set->data_dir);
	check_owned(set, spool, true, problems);
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

/* Log rotation: lines go to a new file at the path from now on. */
static void reopen_audit(struct server *srv)
{
	const char *error;
	if (srv->env.audit != NULL && audit_reopen(srv->env.audit, &error) < 0)
		log_error("SIGHUP: %s; still writing to the old file", error);
}

static void signal_cb(evutil_socket_t sig, short what, void *arg)
{
	struct server *srv = arg;
	if (sig == SIGHUP) {
		notify_reloading();
		reload_tls(srv);
		reload_oauth_keys(srv);
		reopen_audit(srv);
		notify_ready(srv);
		return;
	}
	if (srv->shutting_down)
		return;
	notify_stopping();
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

/* How many lines settings_add_problem() put in problems since it was before long. */
static unsigned int lines_since(const struct buf *problems, size_t before)
{
	unsigned int n = before == 0 && problems->len > 0 ? 1 : 0;
	for (size_t i = before; i < problems->len; i++)
		n += problems->data[i] == '\n';
	return n;
}

unsigned int serve_preflight(const struct tern_settings *set, struct buf *problems)
{
	size_t before = problems->len;
	const char *error;
	if (set->tls_cert != NULL && set->tls_key != NULL) {
		SSL_CTX *ctx = tls_context(set, &error);
		if (ctx == NULL)
			settings_add_problem(problems, "%s", error);
		SSL_CTX_free(ctx);
	} else if (needs_tls(set)) {
		settings_add_problem(problems, "%s: listen_tls is set but [tls] has no cert and key", set->path);
	}
	bool any = false;
	for (size_t i = 0; i < sizeof(listener_defs) / sizeof(listener_defs[0]); i++) {
		const char *list = listen_list(set, &listener_defs[i]);
		any = any || (list != NULL && *list != '\0');
	}
	if (!any)
		settings_add_problem(problems, "%s: nothing to serve: no listen address is configured", set->path);
	if (set->admin_token_file != NULL) {
		/* the admin API reads it after the drop, and only a private file */
		const char *tf = set->admin_token_file;
		struct stat st;
		FILE *f = fopen(tf, "r");
		if (f == NULL || fstat(fileno(f), &st) != 0)
			settings_add_problem(problems, "%s: [admin] token_file %s: cannot read: %s",
					     set->path, tf, strerror(errno));
		else if (set->user != NULL && st.st_uid != set->uid)
			settings_add_problem(problems, "%s: [admin] token_file %s is not owned by %s, who reads it: chown %s %s",
					     set->path, tf, set->user, set->user, tf);
		else if ((st.st_mode & (S_IRWXG | S_IRWXO)) != 0)
			settings_add_problem(problems, "%s: [admin] token_file %s is open to group or others: chmod 600 %s",
					     set->path, tf, tf);
		if (f != NULL)
			fclose(f);
	}
	serve_check_data_dir(set, problems);
	outbound_preflight(set, problems);
	return lines_since(problems, before);
}

static int describe_one(void *ctx, const char *host, const char *port)
{
	struct buf *out = ctx;
	buf_printf(out, strchr(host, ':') != NULL ? " [%s]:%s" : " %s:%s", host, port);
	return 0;
}

void serve_describe(const struct tern_settings *set, struct buf *out)
{
	buf_append_str(out, "serves");
	for (size_t i = 0; i < sizeof(listener_defs) / sizeof(listener_defs[0]); i++) {
		const char *list = listen_list(set, &listener_defs[i]);
		if (list == NULL || *list == '\0')
			continue;
		buf_printf(out, " %s", listener_defs[i].name);
		net_listen_list_foreach(list, describe_one, out);
		buf_append_c(out, ',');
	}
	buf_printf(out, " store %s (%s), data_dir %s", set->store.backend,
		   set->store.pop3_ids == STORE_POP3_IDS_UID ? "uid" : "messageid", set->data_dir);
	if (set->user != NULL)
		buf_printf(out, ", as user %s (uid %u, gid %u)", set->user, (unsigned int)set->uid,
			   (unsigned int)set->gid);
	buf_printf(out, ", log %s", set->log_target == LOG_TARGET_SYSLOG ? "syslog" : "stderr");
}

void serve_log_problems(const struct buf *problems)
{
	const char *p = problems->data;
	while (*p != '\0') {
		const char *nl = strchr(p, '\n');
		size_t n = nl != NULL ? (size_t)(nl - p) : strlen(p);
		log_error("%.*s", (int)n, p);
		p += n + (nl != NULL);
	}
}

int serve(const struct tern_settings *set)
{
	struct server srv;
	memset(&srv, 0, sizeof(srv));
	struct session_env *env = &srv.env;
	env->set = set;
	const char *error;
	int ret = 0;
	int64_t start_ms = clock_monotonic_ms();

	log_set_level((enum log_level)set->log_level);
	if (set->log_target == LOG_TARGET_SYSLOG)
		log_open_syslog("tern");
	signal(SIGPIPE, SIG_IGN);
	if (privileges_check(set) < 0)
		return 78;
	raise_fd_limit(set);
	if (set->tls_cert != NULL) {
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
	/* epoll changelist: a session's read interest dropped for a store job
	 * and its write interest added for the reply within one loop
	 * iteration cost one epoll_ctl, not two (see docs/performance.md). */
	struct event_config *evcfg = event_config_new();
	event_config_set_flag(evcfg, EVENT_BASE_FLAG_EPOLL_USE_CHANGELIST);
	env->base = event_base_new_with_config(evcfg);
	event_config_free(evcfg);
	/* From the start: a SIGTERM while the store opens must not kill the
	 * process mid-write (its handler runs once the loop starts). */
	add_signal(&srv, &srv.sig_term, SIGTERM);
	add_signal(&srv, &srv.sig_int, SIGINT);
	add_signal(&srv, &srv.sig_hup, SIGHUP);

	/* Everything that binds goes here, while tern may still be root;
	 * the sockets listen once the server is ready (start_listening). */
	if (bind_all(&srv) < 0) {
		ret = 71; /* EX_OSERR */
		goto out;
	}
	if (srv.listeners == NULL) {
		log_error("%s: nothing to serve: no listen address is configured", set->path);
		ret = 78;
		goto out;
	}

	/* From here on, tern is [server] user: what it creates is theirs. */
	warn_root_public(set);
	if (serve_drop_privileges(set) < 0) {
		ret = 71;
		goto out;
	}
	struct buf problems;
	buf_init(&problems, 0);
	serve_check_data_dir(set, &problems);
	bool refused = problems.len > 0;
	if (refused)
		serve_log_problems(&problems);
	buf_deinit(&problems);
	if (refused) {
		ret = 78;
		goto out;
	}
	/* As [server] user, like the store: a reopen after rotation then
	 * creates the new file with the same owner. */
	if (set->audit_log != NULL && *set->audit_log != '\0' &&
	    (env->audit = audit_open(set->audit_log, &error)) == NULL) {
		log_error("%s: [server] audit_log: %s", set->path, error);
		ret = 78;
		goto out;
	}
	env->store = store_open(&set->store, &error);
	if (env->store == NULL) {
		log_error("cannot open the %s store: %s", set->store.backend, error);
		ret = 75;
		goto out;
	}
	/* Spool files have no name while in use; anything found is a leftover
	 * of a crash and nobody's message (none was answered 2xx). */
	unsigned int swept = 0;
	if (delivery_spool_sweep(set->data_dir, &swept, &error) < 0)
		log_warn("spool: %s", error);
	if (swept > 0)
		log_info("spool: removed %u leftover file%s", swept, swept == 1 ? "" : "s");
	env->pool = worker_pool_create(env->base, store_worker_threads(env->store));
	env->penalty = auth_penalty_create(set->auth_failure_delay_initial_ms,
					   set->auth_failure_delay_max_ms,
					   set->auth_failure_reset_ms);
	env->auth_cache = auth_cache_create(8192, set->auth_cache_ttl_ms);
	env->registry = session_registry_create();
	srv.expire = pop3_expire_start(env);
	srv.outbound = outbound_start(env, set);
	if (srv.outbound == NULL) {
		ret = 78;
		goto out;
	}

	/* The admin API needs the store and the pool; its port, unprivileged
	 * (see docs/service.md), is bound by [server] user. */
	srv.admin = admin_http_create(env, &error);
	if (srv.admin == NULL && error != NULL) {
		log_error("%s", error);
		ret = 78;
		goto out;
	}
	if (start_listening(&srv) < 0 || (srv.admin != NULL && admin_http_listen(srv.admin) < 0)) {
		ret = 71; /* EX_OSERR */
		goto out;
	}
	log_info("tern ready store=%s pop3_ids=%s startup_ms=%lld", store_backend_name(env->store),
		 set->store.pop3_ids == STORE_POP3_IDS_UID ? "uid" : "messageid",
		 (long long)(clock_monotonic_ms() - start_ms));
	notify_ready(&srv);
	event_base_dispatch(env->base);

out:
	free_listeners(&srv);
	worker_pool_destroy(&env->pool);
	outbound_stop(&srv.outbound, env);
	pop3_expire_stop(&srv.expire);
	audit_close(&env->audit);
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
