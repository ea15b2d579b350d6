/*
 * fuzz-session: a whole POP3, SMTP or LMTP session, from the greeting to the
 * moment it is freed, fed with what the input says the client sends.
 *
 * Input: byte 0 chooses the sessions:
 *   bits 0-1  the protocol: 0 POP3, 1 SMTP, 2 LMTP, 3 POP3
 *   bit 2     the client is 192.0.2.1 (untrusted: failed logins earn a
 *             penalty of a millisecond or two) instead of 127.0.0.1
 *   bit 3     [auth] plaintext = always (else tls_or_loopback, which
 *             refuses USER/PASS/AUTH from the untrusted client)
 *   bit 5     two clients from that address, not one
 *   bit 7     [limits] max_connections = 1 (the second client is refused)
 *   (bits 4 and 6 are ignored: "P".."_" are one client, "p".."~" two)
 * The rest is sent, split into pieces at 0xff, 0xfe and 0xfd bytes (which
 * are not sent); with two clients the pieces go to them in turn. After a
 * piece ending in 0xff the event loop runs until every session has dealt
 * with everything so far (no job, password check or penalty wait,
 * streamed reply or unread input left); after one ending in 0xfe it turns
 * once, so that the next piece arrives while work is in flight; after one
 * ending in 0xfd its client closes its end at once (what the session was
 * doing with it is still in flight), then the loop runs as for 0xff.
 * Replies are read and discarded as they come, so output never blocks. At
 * the end the clients close their ends and the loop runs until every
 * session is freed.
 *
 * With TERN_FUZZ_ECHO set in the environment, the replies are copied to
 * stderr (to see what a corpus file does).
 *
 * Aborts when a session is left behind: still registered SETTLE_MS after
 * its client has gone, or busy for that long; and when a job outlives
 * every session. The sanitizers (the libFuzzer build, and the corpus
 * replay in the TERN_SANITIZE build) catch the rest: leaks, use-after-free,
 * overflows, undefined behaviour.
 *
 * Fixed once, at the first call: settings (settings_load of a generated
 * file), the event loop, the worker pool, the auth cache. Made anew per
 * input, so that each input runs alone: the mem store (example.org with
 * alice, bob and postmaster, password "secret"; four messages for alice:
 * dot-stuffing, an empty one, one of two RETR pieces), the failed-login
 * penalty and the session registry.
 *
 * The password module is replaced here: argon2 costs tens of milliseconds
 * a check, which would make every login the bulk of an input's time. The
 * stand-in below accepts "{FUZZ}<password>" hashes by plain comparison;
 * what is under test is the session code around it.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <event2/event.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <linux/sockios.h>  /* SIOCOUTQ */

#include "auth-cache.h"
#include "auth-penalty.h"
#include "log.h"
#include "password.h"
#include "pop3-session.h"
#include "session-private.h"
#include "settings.h"
#include "smtp-session.h"
#include "store.h"
#include "worker-pool.h"

#define SPLIT 0xff                  /* ends a piece, then the sessions settle */
#define SPLIT_NO_WAIT 0xfe          /* ends a piece, one turn of the loop */
#define SPLIT_HANGUP 0xfd           /* ends a piece, whose client then goes away */
#define CLIENTS_MAX 2
#define SETTLE_MS 2000              /* a session busy for longer is stuck */
#define REPLY_BYTES_MAX (4u << 20)  /* then the client hangs up: bounds the time */
#define HASH_PREFIX "{FUZZ}"

/* --- the password stand-in (see the top) --- */

int password_hash(const char *password, size_t len, struct buf *out)
{
	if (buf_append_str(out, HASH_PREFIX) < 0)
		return -1;
	return buf_append(out, password, len);
}

bool password_verify(const char *password, size_t len, const char *stored)
{
	size_t plen = strlen(HASH_PREFIX);
	if (strncmp(stored, HASH_PREFIX, plen) != 0)
		return false;
	stored += plen;
	return strlen(stored) == len && memcmp(stored, password, len) == 0;
}

bool password_verify_dummy(const char *password, size_t len)
{
	return false;
}

bool password_is_hash(const char *text)
{
	return strncmp(text, HASH_PREFIX, strlen(HASH_PREFIX)) == 0;
}

/* --- the services, set up once --- */

static struct session_env env;
static struct tern_settings *set;
static struct event *tick;
static char hash[64];
static char *big_body;
static bool echo;
static unsigned int default_max_connections;

static void tick_cb(evutil_socket_t fd, short what, void *arg)
{
}

static void setup_once(void)
{
	signal(SIGPIPE, SIG_IGN);
	echo = getenv("TERN_FUZZ_ECHO") != NULL;
	log_set_level(LOG_ERROR);
	const char *tmp = getenv("TMPDIR");
	char path[512];
	snprintf(path, sizeof(path), "%s/fuzz-session-XXXXXX",
		 tmp != NULL && *tmp != '\0' ? tmp : "/tmp");
	int fd = mkstemp(path);
	if (fd < 0)
		abort();
	static const char ini[] = "[server]\nhostname = fuzz.example.org\n"
				  "[store]\nbackend = mem\n"
				  "[auth]\nfailure_delay_initial = 1ms\nfailure_delay_max = 2ms\n";
	if (write(fd, ini, sizeof(ini) - 1) != (ssize_t)(sizeof(ini) - 1))
		abort();
	close(fd);
	char *error = NULL;
	set = settings_load(path, &error);
	unlink(path);
	if (set == NULL) {
		fprintf(stderr, "fuzz-session: settings: %s\n", error);
		abort();
	}
	env.set = set;
	default_max_connections = set->max_connections;
	env.base = event_base_new();
	env.pool = worker_pool_create(env.base, 2);
	env.auth_cache = auth_cache_create(64, set->auth_cache_ttl_ms);
	tick = event_new(env.base, -1, EV_PERSIST, tick_cb, NULL);
	struct timeval tv = { 0, 1000 };
	event_add(tick, &tv);

	struct buf b;
	buf_init(&b, sizeof(hash) - 1);
	if (password_hash("secret", 6, &b) < 0)
		abort();
	str_copy(hash, b.data, sizeof(hash));
	buf_deinit(&b);
	/* just over one RETR piece (128 KiB), lines of 64 octets */
	size_t big_len = 130 * 1024;
	big_body = malloc(big_len + 1);
	if (big_body == NULL)
		abort();
	for (size_t i = 0; i < big_len; i++)
		big_body[i] = i % 64 == 63 ? '\n' : i % 64 == 62 ? '\r' : i % 64 == 0 ? '.' : 'x';
	big_body[big_len] = '\0';
}

static void deliver(const char *rcpt, const char *prefix, const char *body)
{
	struct store_rcpt r = { .address = rcpt, .prefix = prefix };
	struct store_delivery d = { .body = body, .body_len = strlen(body), .rcpts = &r,
				    .rcpt_count = 1 };
	store_delivery_init(&d);
	if (store_deliver(env.store, &d) != STORE_OK || r.status != STORE_OK)
		abort();
}

static void input_begin(void)
{
	const char *error;
	env.store = store_open(&set->store, &error);
	if (env.store == NULL)
		abort();
	if (store_domain_add(env.store, "example.org") != STORE_OK ||
	    store_user_add(env.store, "alice@example.org", hash) != STORE_OK ||
	    store_user_add(env.store, "bob@example.org", hash) != STORE_OK ||
	    store_user_add(env.store, "postmaster@example.org", hash) != STORE_OK)
		abort();
	deliver("alice@example.org", "Return-Path: <s@remote.example>\r\n",
		"Subject: one\r\n\r\nHello\r\n.\r\n..two\r\n.x\r\n");
	deliver("alice@example.org", "", "");
	deliver("alice@example.org", "", "Subject: three\r\nX: y\r\n\r\n1\r\n2\r\n3\r\n");
	deliver("alice@example.org", "", big_body);
	env.penalty = auth_penalty_create(set->auth_failure_delay_initial_ms,
					  set->auth_failure_delay_max_ms, set->auth_failure_reset_ms);
	env.registry = session_registry_create();
}

static void input_end(void)
{
	if (worker_pool_pending(env.pool) != 0) {
		fprintf(stderr, "fuzz-session: a job outlived its session\n");
		abort();
	}
	session_registry_destroy(&env.registry);
	auth_penalty_destroy(&env.penalty);
	store_close(&env.store);
}

/* --- the clients --- */

struct client {
	int fd;
	struct event *ev;
	struct session *s;   /* compared with the registry's, never followed once gone */
	size_t reply_bytes;
	bool eof;
};

static struct client clients[CLIENTS_MAX];
static unsigned int client_count;

static void client_read_cb(evutil_socket_t fd, short what, void *arg)
{
	struct client *c = arg;
	char tmp[65536];
	for (;;) {
		ssize_t n = read(c->fd, tmp, sizeof(tmp));
		if (n > 0) {
			c->reply_bytes += (size_t)n;
			if (echo)
				fwrite(tmp, 1, (size_t)n, stderr);
			continue;
		}
		if (n < 0 && errno == EINTR)
			continue;
		if (n == 0 || errno != EAGAIN) {
			c->eof = true;
			event_del(c->ev);
		}
		return;
	}
}

static bool registry_empty(void)
{
	const struct session_registry *reg = env.registry;
	return reg->head.next == &reg->head;
}

/* The client's session while it is registered, else NULL. Sessions are
 * only made at the start of an input, so a freed one's address is not
 * reused meanwhile. */
static struct session *client_session(const struct client *c)
{
	struct session_registry *reg = env.registry;
	for (struct session *s = reg->head.next; s != &reg->head; s = s->next)
		if (s == c->s)
			return s;
	return NULL;
}

static uint64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* Whether a session still has something to do with what it was sent:
 * false once every session waits for its client (or is gone). */
static bool sessions_busy(void)
{
	struct session_registry *reg = env.registry;
	for (const struct session *s = reg->head.next; s != &reg->head; s = s->next) {
		if (s->job_running || s->held || (s->login != NULL && !session_sasl_active(s)) ||
		    conn_is_closing(s->conn) || conn_output_pending(s->conn) > 0)
			return true;
	}
	if (worker_pool_pending(env.pool) > 0 ||
	    event_base_get_num_events(env.base, EVENT_BASE_COUNT_ACTIVE) > 0)
		return true;
	/* sent, and not read by a live session yet */
	for (unsigned int i = 0; i < client_count; i++) {
		int unread = 0;
		if (clients[i].fd >= 0 && client_session(&clients[i]) != NULL &&
		    ioctl(clients[i].fd, SIOCOUTQ, &unread) == 0 && unread > 0)
			return true;
	}
	return false;
}

static void settle(void)
{
	uint64_t end = now_ms() + SETTLE_MS;
	while (sessions_busy()) {
		if (now_ms() > end) {
			fprintf(stderr, "fuzz-session: a session is stuck\n");
			abort();
		}
		event_base_loop(env.base, EVLOOP_ONCE);
	}
}

/* Sends len bytes; stops early when the session no longer reads. */
static void client_send(struct client *c, const uint8_t *data, size_t len)
{
	uint64_t end = now_ms() + SETTLE_MS;
	while (len > 0 && c->fd >= 0) {
		const struct session *s = client_session(c);
		if (s == NULL || conn_is_closing(s->conn) || c->reply_bytes > REPLY_BYTES_MAX)
			return;
		ssize_t n = send(c->fd, data, len, MSG_NOSIGNAL | MSG_DONTWAIT);
		if (n > 0) {
			data += n;
			len -= (size_t)n;
			continue;
		}
		if (n < 0 && errno != EAGAIN && errno != EINTR)
			return;
		if (now_ms() > end) {
			fprintf(stderr, "fuzz-session: a session reads nothing\n");
			abort();
		}
		event_base_loop(env.base, EVLOOP_ONCE);
	}
}

static void client_connect(struct client *c, const struct session_protocol *proto,
			   bool untrusted)
{
	int sv[2];
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
		abort();
	struct sockaddr_in peer = { .sin_family = AF_INET, .sin_port = htons(40000) };
	peer.sin_addr.s_addr = htonl(untrusted ? 0xc0000201 : INADDR_LOOPBACK);
	struct net_addr addr;
	net_addr_from_sockaddr(&addr, (struct sockaddr *)&peer);
	enum session_admit admit = session_admit(&env, &addr, untrusted ? "192.0.2.1" : "127.0.0.1");
	struct session *first = env.registry->head.next;
	session_create(&env, proto, sv[1], (struct sockaddr *)&peer, sizeof(peer), false, admit);
	memset(c, 0, sizeof(*c));
	c->fd = sv[0];
	/* session_create() registers a new session first in the list */
	c->s = env.registry->head.next != first ? env.registry->head.next : NULL;
	fcntl(c->fd, F_SETFL, fcntl(c->fd, F_GETFL) | O_NONBLOCK);
	c->ev = event_new(env.base, c->fd, EV_READ | EV_PERSIST, client_read_cb, c);
	event_add(c->ev, NULL);
}

/* The client takes what is left, and goes away. */
static void client_hangup(struct client *c)
{
	if (c->fd < 0)
		return;
	if (!c->eof)
		client_read_cb(c->fd, EV_READ, c);
	event_free(c->ev);
	close(c->fd);
	c->fd = -1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static bool ready;
	if (!ready) {
		setup_once();
		ready = true;
	}
	if (size == 0)
		return 0;
	static const struct session_protocol *const protocols[] = {
		&pop3_protocol, &smtp_protocol, &lmtp_protocol, &pop3_protocol,
	};
	const struct session_protocol *proto = protocols[data[0] & 3];
	bool untrusted = (data[0] & 4) != 0;
	set->plaintext = (data[0] & 8) != 0 ? PLAINTEXT_ALWAYS : PLAINTEXT_TLS_OR_LOOPBACK;
	client_count = (data[0] & 0x20) != 0 ? 2 : 1;
	set->max_connections = (data[0] & 0x80) != 0 ? 1 : default_max_connections;
	data++;
	size--;

	input_begin();
	for (unsigned int i = 0; i < client_count; i++)
		client_connect(&clients[i], proto, untrusted);
	settle();

	/* Pieces go to the clients in turn. */
	size_t start = 0;
	unsigned int to = 0;
	for (size_t i = 0; i <= size && !registry_empty(); i++) {
		if (i < size && data[i] != SPLIT && data[i] != SPLIT_NO_WAIT &&
		    data[i] != SPLIT_HANGUP)
			continue;
		client_send(&clients[to], data + start, i - start);
		if (i < size && data[i] == SPLIT_HANGUP)
			client_hangup(&clients[to]);
		to = (to + 1) % client_count;
		start = i + 1;
		if (i < size && data[i] == SPLIT_NO_WAIT)
			event_base_loop(env.base, EVLOOP_NONBLOCK);
		else
			settle();
	}

	/* The clients go away; their sessions must follow. */
	for (unsigned int i = 0; i < client_count; i++)
		client_hangup(&clients[i]);
	uint64_t end = now_ms() + SETTLE_MS;
	while (!registry_empty()) {
		if (now_ms() > end) {
			fprintf(stderr, "fuzz-session: a session outlived its client\n");
			abort();
		}
		event_base_loop(env.base, EVLOOP_ONCE);
	}
	input_end();
	return 0;
}
