/*
 * test-session: the session core under real protocol sessions. Each test
 * builds what the server builds (an event_base, a worker pool, the mem
 * store, the failed-login penalty, the auth cache, the registry) from
 * settings read by settings_load(), then talks to POP3, SMTP and LMTP
 * sessions over socketpairs: the test writes the client's bytes to one end
 * and runs the loop until the replies it expects arrive on that end (or a
 * timeout fails the check).
 *
 * Covered: whole dialogues; pipelined bursts answered in order while store
 * jobs run (several sessions at once); the bad-command budget; admission
 * (max_connections, max_connections_per_ip, refused sessions never
 * counting, the flood limit); SASL PLAIN and LOGIN through the core with
 * each protocol's replies; the penalty taken before the check, one check
 * at a time per penalised address, never for trusted networks; a peer that
 * goes away while a job runs, while a login waits its turn and while a
 * message streams; shutdown with sessions in every state. Leaks and
 * use-after-free are the sanitizer build's to catch: every test ends with
 * no session left.
 *
 * The registry's own fields are read through session-private.h (a white-box
 * test of the core): whether any session, refused ones included, is left.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <event2/event.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "auth-cache.h"
#include "auth-penalty.h"
#include "base64.h"
#include "log.h"
#include "metrics.h"
#include "password.h"
#include "pop3-session.h"
#include "session-private.h"
#include "settings.h"
#include "smtp-session.h"
#include "store.h"
#include "worker-pool.h"

#include "test.h"

#define DOMAIN "example.org"
#define ALICE "alice@example.org"
#define BOB "bob@example.org"
#define PASSWORD "correct horse"
#define HOSTNAME "mx.example.org"
#define WAIT_MS 10000          /* the longest any expected reply may take */

/* alice's maildrop at the start of every test */
#define MSG1_PREFIX "Return-Path: <sender@remote.example>\r\n"
#define MSG1_BODY "Subject: first\r\n\r\nHello\r\n.leading dot\r\n..two dots\r\n"
#define MSG2_BODY "Subject: second\r\nX-Test: yes\r\n\r\nline 1\r\nline 2\r\nline 3\r\n"
#define MSG1_SIZE (sizeof(MSG1_PREFIX) - 1 + sizeof(MSG1_BODY) - 1)
#define MSG2_SIZE (sizeof(MSG2_BODY) - 1)

static char tmpdir[256];
static char ini_path[300];
static char hash[256];      /* PASSWORD, hashed once */

/* --- the harness: one server's worth of services --- */

static struct {
	struct session_env env;
	struct tern_settings *set;
	struct event *tick;
} h;

static uint64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* Keeps EVLOOP_ONCE from blocking for long, so every wait can time out. */
static void tick_cb(evutil_socket_t fd, short what, void *arg)
{
}

static void deliver(struct store *store, const char *rcpt, const char *prefix, const char *body)
{
	struct store_rcpt r = { .address = rcpt, .prefix = prefix };
	struct store_delivery d = { .body = body, .body_len = strlen(body), .rcpts = &r,
				    .rcpt_count = 1 };
	store_delivery_init(&d);
	if (store_deliver(store, &d) != STORE_OK || r.status != STORE_OK) {
		fprintf(stderr, "cannot deliver the test messages\n");
		exit(2);
	}
}

/* A test's settings: the defaults of settings_load() plus the test INI
 * file; the test may change fields before env_start(). */
static void settings_begin(const char *name)
{
	char *error = NULL;
	printf("-- %s\n", name);
	h.set = settings_load(ini_path, &error);
	if (h.set == NULL) {
		fprintf(stderr, "settings: %s\n", error);
		exit(2);
	}
}

static void env_start(unsigned int threads)
{
	const struct tern_settings *set = h.set;
	const char *error;
	struct session_env *env = &h.env;
	memset(env, 0, sizeof(*env));
	env->set = set;
	env->base = event_base_new();
	env->pool = worker_pool_create(env->base, threads);
	env->store = store_open(&set->store, &error);
	if (env->store == NULL) {
		fprintf(stderr, "store: %s\n", error);
		exit(2);
	}
	env->penalty = auth_penalty_create(set->auth_failure_delay_initial_ms,
					   set->auth_failure_delay_max_ms, set->auth_failure_reset_ms);
	env->auth_cache = auth_cache_create(64, set->auth_cache_ttl_ms);
	env->registry = session_registry_create();
	h.tick = event_new(env->base, -1, EV_PERSIST, tick_cb, NULL);
	struct timeval tv = { 0, 5000 };
	event_add(h.tick, &tv);

	if (store_domain_add(env->store, DOMAIN) != STORE_OK ||
	    store_user_add(env->store, ALICE, hash) != STORE_OK ||
	    store_user_add(env->store, BOB, hash) != STORE_OK) {
		fprintf(stderr, "cannot set up the store\n");
		exit(2);
	}
	deliver(env->store, ALICE, MSG1_PREFIX, MSG1_BODY);
	deliver(env->store, ALICE, "", MSG2_BODY);
	deliver(env->store, BOB, "", MSG2_BODY);
}

static bool registry_empty(void *arg)
{
	const struct session_registry *reg = h.env.registry;
	return reg->head.next == &reg->head;
}

typedef bool cond_fn(void *arg);

/* Runs the loop until cond holds; false when timeout_ms passed first. */
static bool run_until(cond_fn *cond, void *arg, unsigned int timeout_ms)
{
	uint64_t end = now_ms() + timeout_ms;
	while (!cond(arg)) {
		if (now_ms() >= end)
			return false;
		event_base_loop(h.env.base, EVLOOP_ONCE);
	}
	return true;
}

/* Runs the loop for ms whatever happens. */
static bool never(void *arg)
{
	return false;
}

static void run_for(unsigned int ms)
{
	run_until(never, NULL, ms);
}

/* The end of a test in which every session has ended by itself. */
static void env_stop(void)
{
	struct session_env *env = &h.env;
	CHECK(run_until(registry_empty, NULL, WAIT_MS));
	CHECK_INT(session_registry_count(env->registry), 0);
	worker_pool_destroy(&env->pool);
	session_registry_destroy(&env->registry);
	event_free(h.tick);
	store_close(&env->store);
	auth_penalty_destroy(&env->penalty);
	auth_cache_destroy(&env->auth_cache);
	event_base_free(env->base);
	settings_free(&h.set);
}

static unsigned int messages_of(const char *user)
{
	struct store_maildrop *md;
	if (store_maildrop_open(h.env.store, user, &md) != STORE_OK)
		return 9999;
	unsigned int n = md->count;
	store_maildrop_free(&md);
	return n;
}

static unsigned int alice_messages(void)
{
	return messages_of(ALICE);
}

static struct session *first_session(void)
{
	struct session_registry *reg = h.env.registry;
	return reg->head.next == &reg->head ? NULL : reg->head.next;
}

/* --- the client end --- */

struct client {
	int fd;
	struct event *ev;
	struct buf in;             /* received, not yet taken as lines */
	uint64_t *arrivals;        /* when each line's LF arrived */
	size_t arrival_count, arrival_next;
	bool eof;
};

static void client_read_cb(evutil_socket_t fd, short what, void *arg)
{
	struct client *c = arg;
	char tmp[16384];
	for (;;) {
		ssize_t n = read(c->fd, tmp, sizeof(tmp));
		if (n > 0) {
			buf_append(&c->in, tmp, (size_t)n);
			uint64_t t = now_ms();
			for (ssize_t i = 0; i < n; i++) {
				if (tmp[i] != '\n')
					continue;
				c->arrivals = xrealloc(c->arrivals,
						       (c->arrival_count + 1) * sizeof(uint64_t));
				c->arrivals[c->arrival_count++] = t;
			}
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

static void make_sockaddr(const char *ip, struct sockaddr_storage *ss, socklen_t *len_r)
{
	memset(ss, 0, sizeof(*ss));
	struct sockaddr_in *sin = (struct sockaddr_in *)ss;
	struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)ss;
	if (inet_pton(AF_INET, ip, &sin->sin_addr) == 1) {
		sin->sin_family = AF_INET;
		sin->sin_port = htons(40000);
		*len_r = sizeof(*sin);
	} else if (inet_pton(AF_INET6, ip, &sin6->sin6_addr) == 1) {
		sin6->sin6_family = AF_INET6;
		sin6->sin6_port = htons(40000);
		*len_r = sizeof(*sin6);
	} else {
		fprintf(stderr, "bad test address %s\n", ip);
		exit(2);
	}
}

/* A connection from ip, through admission as the server does it. */
static struct client *client_open_admit(const struct session_protocol *proto, const char *ip,
					enum session_admit *admit_r)
{
	int sv[2];
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0) {
		perror("socketpair");
		exit(2);
	}
	struct sockaddr_storage ss;
	socklen_t len;
	make_sockaddr(ip, &ss, &len);
	struct net_addr peer;
	net_addr_from_sockaddr(&peer, (struct sockaddr *)&ss);
	enum session_admit admit = session_admit(&h.env, &peer, ip);
	if (admit_r != NULL)
		*admit_r = admit;
	session_create(&h.env, proto, sv[1], (struct sockaddr *)&ss, len, false, admit);

	struct client *c = xcalloc(1, sizeof(*c));
	c->fd = sv[0];
	fcntl(c->fd, F_SETFL, fcntl(c->fd, F_GETFL) | O_NONBLOCK);
	buf_init(&c->in, 0);
	c->ev = event_new(h.env.base, c->fd, EV_READ | EV_PERSIST, client_read_cb, c);
	event_add(c->ev, NULL);
	return c;
}

static struct client *client_open(const struct session_protocol *proto, const char *ip)
{
	return client_open_admit(proto, ip, NULL);
}

/* Stops reading: what the session sends stays in the socket. */
static void client_stop_reading(struct client *c)
{
	event_del(c->ev);
}

/* Closes the client's end (if still open) and frees the client. */
static void client_free(struct client **cp)
{
	struct client *c = *cp;
	if (c == NULL)
		return;
	*cp = NULL;
	if (c->ev != NULL)
		event_free(c->ev);
	if (c->fd >= 0)
		close(c->fd);
	buf_deinit(&c->in);
	free(c->arrivals);
	free(c);
}

static void client_hangup(struct client *c)
{
	event_del(c->ev);
	close(c->fd);
	c->fd = -1;
}

static void client_send_n(struct client *c, const char *data, size_t len)
{
	uint64_t end = now_ms() + WAIT_MS;
	while (len > 0) {
		ssize_t n = send(c->fd, data, len, MSG_NOSIGNAL);
		if (n > 0) {
			data += n;
			len -= (size_t)n;
			continue;
		}
		if (n < 0 && errno != EAGAIN && errno != EINTR) {
			fprintf(stderr, "send: %s\n", strerror(errno));
			return;
		}
		if (now_ms() > end) {
			fprintf(stderr, "send: the session reads nothing\n");
			test_failures++;
			return;
		}
		event_base_loop(h.env.base, EVLOOP_ONCE);
	}
}

static void client_send(struct client *c, const char *text)
{
	client_send_n(c, text, strlen(text));
}

static bool client_has_line(void *arg)
{
	struct client *c = arg;
	return memchr(c->in.data, '\n', c->in.len) != NULL || c->eof;
}

static bool client_eof(void *arg)
{
	return ((struct client *)arg)->eof;
}

/* The next line without its CRLF (malloc'ed), or NULL when none came in
 * time; *at_r is when it arrived. */
static char *client_line(struct client *c, uint64_t *at_r)
{
	run_until(client_has_line, c, WAIT_MS);
	char *lf = memchr(c->in.data, '\n', c->in.len);
	if (lf == NULL)
		return NULL;
	size_t n = (size_t)(lf - c->in.data);
	char *line = xstrndup(c->in.data, n > 0 && lf[-1] == '\r' ? n - 1 : n);
	buf_consume(&c->in, n + 1);
	uint64_t at = c->arrival_next < c->arrival_count ? c->arrivals[c->arrival_next] : now_ms();
	c->arrival_next++;
	if (at_r != NULL)
		*at_r = at;
	return line;
}

/* Checks the next line: equal to want, or (prefix) starting with it. */
static void expect_line(struct client *c, const char *want, bool prefix, uint64_t *at_r,
			int line)
{
	char *got = client_line(c, at_r);
	test_checks++;
	if (got == NULL || (prefix ? strncmp(got, want, strlen(want)) != 0 : strcmp(got, want) != 0)) {
		test_failures++;
		fprintf(stderr, "%s:%d: got \"%.200s\", expected \"%s\"%s\n", __FILE__, line,
			got != NULL ? got : "(nothing)", want, prefix ? "..." : "");
	}
	free(got);
}

#define EXPECT(c, want) expect_line((c), (want), false, NULL, __LINE__)
#define EXPECT_PREFIX(c, want) expect_line((c), (want), true, NULL, __LINE__)
#define EXPECT_AT(c, want, at) expect_line((c), (want), true, (at), __LINE__)

/* The session closed its end, with nothing more said. */
static void expect_closed(struct client *c, int line)
{
	run_until(client_eof, c, WAIT_MS);
	test_checks++;
	if (!c->eof || c->in.len > 0) {
		test_failures++;
		fprintf(stderr, "%s:%d: expected the end of the connection, got %s\"%.100s\"\n",
			__FILE__, line, c->eof ? "" : "no end and ", c->in.data);
	}
}
#define EXPECT_CLOSED(c) expect_closed((c), __LINE__)

/* base64 of the PLAIN message "\0user\0password". */
static char *plain_response(const char *user, const char *password)
{
	struct buf msg, out;
	buf_init(&msg, 0);
	buf_init(&out, 0);
	buf_append_c(&msg, '\0');
	buf_append_str(&msg, user);
	buf_append_c(&msg, '\0');
	buf_append_str(&msg, password);
	base64_encode(msg.data, msg.len, &out);
	buf_deinit(&msg);
	char *s = buf_steal(&out);
	buf_deinit(&out);
	return s;
}

static char *b64(const char *text)
{
	struct buf out;
	buf_init(&out, 0);
	base64_encode(text, strlen(text), &out);
	char *s = buf_steal(&out);
	buf_deinit(&out);
	return s;
}

static void sendf(struct client *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sendf(struct client *c, const char *fmt, ...)
{
	struct buf b;
	buf_init(&b, 0);
	va_list ap;
	va_start(ap, fmt);
	buf_vprintf(&b, fmt, ap);
	va_end(ap);
	client_send_n(c, b.data, b.len);
	buf_deinit(&b);
}

static void expect_pop3_capa(struct client *c, bool logged_in, bool plaintext)
{
	EXPECT(c, "+OK Capability list follows");
	EXPECT(c, "TOP");
	EXPECT(c, "UIDL");
	EXPECT(c, "RESP-CODES");
	EXPECT(c, "AUTH-RESP-CODE");
	EXPECT(c, "PIPELINING");
	EXPECT(c, logged_in ? "EXPIRE NEVER" : "EXPIRE NEVER USER");
	if (!logged_in)
		EXPECT(c, "UTF8 USER");
	if (!logged_in && plaintext) {
		EXPECT(c, "USER");
		EXPECT(c, "SASL PLAIN");
	}
	if (logged_in)
		EXPECT(c, "IMPLEMENTATION tern");
	EXPECT(c, ".");
}

static void expect_ehlo(struct client *c, bool auth)
{
	EXPECT(c, "250-" HOSTNAME);
	EXPECT(c, "250-PIPELINING");
	EXPECT(c, "250-SIZE 26214400");
	if (auth)
		EXPECT(c, "250-AUTH PLAIN LOGIN");
	EXPECT(c, "250-8BITMIME");
	EXPECT(c, "250 ENHANCEDSTATUSCODES");
}

static void pop3_login(struct client *c, unsigned int messages)
{
	EXPECT(c, "+OK tern POP3 server ready");
	client_send(c, "USER " ALICE "\r\nPASS " PASSWORD "\r\n");
	EXPECT(c, "+OK Send PASS");
	char want[64];
	snprintf(want, sizeof(want), "+OK Logged in, %u messages", messages);
	EXPECT_PREFIX(c, want);
}

/* --- dialogues --- */

static void test_pop3_dialogue(void)
{
	settings_begin("POP3 dialogue");
	env_start(2);
	struct client *c = client_open(&pop3_protocol, "127.0.0.1");
	EXPECT(c, "+OK tern POP3 server ready");
	client_send(c, "CAPA\r\n");
	expect_pop3_capa(c, false, true);
	client_send(c, "STAT\r\n");
	EXPECT(c, "-ERR Not logged in");
	client_send(c, "STLS\r\n");
	EXPECT(c, "-ERR STLS not available (no certificate configured)");
	client_send(c, "PASS " PASSWORD "\r\n");
	EXPECT(c, "-ERR USER first");
	client_send(c, "USER alice\r\n");
	EXPECT(c, "-ERR [AUTH] Invalid user name (expected user@domain)");
	client_send(c, "USER " ALICE "\r\nPASS wrong\r\n");
	EXPECT(c, "+OK Send PASS");
	EXPECT(c, "-ERR [AUTH] Invalid user name or password");
	/* the user is forgotten after a failure */
	client_send(c, "PASS " PASSWORD "\r\n");
	EXPECT(c, "-ERR USER first");
	/* names are normalised: the domain is case-insensitive */
	client_send(c, "USER alice@EXAMPLE.org\r\n");
	EXPECT(c, "+OK Send PASS");
	client_send(c, "PASS " PASSWORD "\r\n");
	char want[128];
	snprintf(want, sizeof(want), "+OK Logged in, 2 messages (%zu octets)", MSG1_SIZE + MSG2_SIZE);
	EXPECT(c, want);
	client_send(c, "USER " ALICE "\r\n");
	EXPECT(c, "-ERR Command not valid in this state");
	client_send(c, "STAT\r\n");
	snprintf(want, sizeof(want), "+OK 2 %zu", MSG1_SIZE + MSG2_SIZE);
	EXPECT(c, want);
	client_send(c, "LIST\r\n");
	EXPECT(c, "+OK");
	snprintf(want, sizeof(want), "1 %zu", MSG1_SIZE);
	EXPECT(c, want);
	snprintf(want, sizeof(want), "2 %zu", MSG2_SIZE);
	EXPECT(c, want);
	EXPECT(c, ".");
	client_send(c, "LIST 2\r\n");
	snprintf(want, sizeof(want), "+OK 2 %zu", MSG2_SIZE);
	EXPECT(c, want);
	client_send(c, "LIST 3\r\n");
	EXPECT(c, "-ERR No such message");
	client_send(c, "UIDL\r\n");
	EXPECT(c, "+OK");
	EXPECT_PREFIX(c, "1 ");
	EXPECT_PREFIX(c, "2 ");
	EXPECT(c, ".");
	client_send(c, "UIDL 1\r\n");
	EXPECT_PREFIX(c, "+OK 1 ");
	/* RETR: the prefix, then the body dot-stuffed */
	client_send(c, "RETR 1\r\n");
	snprintf(want, sizeof(want), "+OK %zu octets", MSG1_SIZE);
	EXPECT(c, want);
	EXPECT(c, "Return-Path: <sender@remote.example>");
	EXPECT(c, "Subject: first");
	EXPECT(c, "");
	EXPECT(c, "Hello");
	EXPECT(c, "..leading dot");
	EXPECT(c, "...two dots");
	EXPECT(c, ".");
	client_send(c, "TOP 2 1\r\n");
	EXPECT(c, "+OK");
	EXPECT(c, "Subject: second");
	EXPECT(c, "X-Test: yes");
	EXPECT(c, "");
	EXPECT(c, "line 1");
	EXPECT(c, ".");
	client_send(c, "TOP 2 x\r\n");
	EXPECT(c, "-ERR Invalid line count");
	client_send(c, "DELE 1\r\n");
	EXPECT(c, "+OK Message 1 deleted");
	client_send(c, "RETR 1\r\n");
	EXPECT(c, "-ERR Message already deleted");
	client_send(c, "LIST\r\n");
	EXPECT(c, "+OK");
	snprintf(want, sizeof(want), "2 %zu", MSG2_SIZE);
	EXPECT(c, want);
	EXPECT(c, ".");
	client_send(c, "RSET\r\n");
	EXPECT(c, "+OK 2 messages");
	client_send(c, "DELE 2\r\nNOOP\r\nCAPA\r\n");
	EXPECT(c, "+OK Message 2 deleted");
	EXPECT(c, "+OK");
	expect_pop3_capa(c, true, true);
	client_send(c, "QUIT\r\n");
	EXPECT(c, "+OK Bye");
	EXPECT_CLOSED(c);
	CHECK(run_until(registry_empty, NULL, WAIT_MS));
	/* QUIT in TRANSACTION applied the DELE that RSET did not undo */
	CHECK_INT(alice_messages(), 1);
	client_free(&c);

	/* A session that ends without QUIT deletes nothing. */
	c = client_open(&pop3_protocol, "127.0.0.1");
	pop3_login(c, 1);
	client_send(c, "DELE 1\r\n");
	EXPECT(c, "+OK Message 1 deleted");
	client_hangup(c);
	CHECK(run_until(registry_empty, NULL, WAIT_MS));
	CHECK_INT(alice_messages(), 1);
	client_free(&c);
	env_stop();
}

/* The last message of rcpt's maildrop, as stored. */
static char *last_message(const char *rcpt)
{
	struct store_maildrop *md;
	if (store_maildrop_open(h.env.store, rcpt, &md) != STORE_OK || md->count == 0)
		return xstrdup("");
	struct buf b;
	buf_init(&b, 0);
	store_message_read_raw(md, md->count - 1, &b);
	store_maildrop_free(&md);
	char *s = buf_steal(&b);
	buf_deinit(&b);
	return s;
}

static void test_smtp_dialogue(void)
{
	settings_begin("SMTP and LMTP dialogues");
	env_start(2);
	struct client *c = client_open(&smtp_protocol, "127.0.0.1");
	EXPECT(c, "220 " HOSTNAME " ESMTP tern ready");
	client_send(c, "MAIL FROM:<sender@remote.example>\r\n");
	EXPECT(c, "503 5.5.1 Send HELO/EHLO first");
	client_send(c, "LHLO client.example\r\n");
	EXPECT(c, "500 5.5.1 LHLO is for LMTP; use EHLO");
	client_send(c, "EHLO client.example\r\n");
	expect_ehlo(c, true);
	client_send(c, "STARTTLS\r\n");
	EXPECT(c, "502 5.5.1 STARTTLS not available");
	client_send(c, "RCPT TO:<" ALICE ">\r\n");
	EXPECT(c, "503 5.5.1 Need MAIL before RCPT");
	client_send(c, "MAIL FROM:<sender@remote.example> SIZE=100\r\n");
	EXPECT(c, "250 2.1.0 Ok");
	client_send(c, "MAIL FROM:<other@remote.example>\r\n");
	EXPECT(c, "503 5.5.1 Nested MAIL command");
	client_send(c, "DATA\r\n");
	EXPECT(c, "503 5.5.1 No valid recipients");
	client_send(c, "RCPT TO:<nobody@" DOMAIN ">\r\n");
	EXPECT(c, "550 5.1.1 <nobody@" DOMAIN ">: User unknown");
	client_send(c, "RCPT TO:<someone@elsewhere.example>\r\n");
	EXPECT(c, "550 5.7.1 <someone@elsewhere.example>: Relay access denied (not a local domain; authenticate to send)");
	client_send(c, "RCPT TO:<Alice@" DOMAIN ">\r\n");
	EXPECT(c, "250 2.1.5 Ok");
	client_send(c, "DATA\r\n");
	EXPECT(c, "354 End data with <CR><LF>.<CR><LF>");
	/* dot-stuffing undone; a lone "." inside a line is not the end */
	client_send(c, "Subject: hi\r\n\r\n..dotted\r\nnot the end: .\r\n.\r");
	run_for(20);
	CHECK(c->in.len == 0);
	client_send(c, "\n");
	EXPECT_PREFIX(c, "250 2.0.0 Ok: queued as ");
	CHECK_INT(alice_messages(), 3);
	char *m = last_message(ALICE);
	const char *head = "Return-Path: <sender@remote.example>\r\nDelivered-To: " ALICE "\r\n"
			   "Received: from client.example";
	CHECK(strncmp(m, head, strlen(head)) == 0);
	const char *tail = "Subject: hi\r\n\r\n.dotted\r\nnot the end: .\r\n";
	CHECK(strlen(m) > strlen(tail) && strcmp(m + strlen(m) - strlen(tail), tail) == 0);
	free(m);
	client_send(c, "RSET\r\nNOOP\r\nVRFY x\r\nHELP\r\nEXPN x\r\nBDAT 10\r\n");
	EXPECT(c, "250 2.0.0 Ok");
	EXPECT(c, "250 2.0.0 Ok");
	EXPECT_PREFIX(c, "252 2.5.0 ");
	EXPECT_PREFIX(c, "214 2.0.0 ");
	EXPECT(c, "502 5.5.1 EXPN not available");
	EXPECT(c, "502 5.5.1 CHUNKING not available");
	/* a bare LF ends a line ([smtp] bare_lf = normalize); a bare CR
	 * refuses the message */
	client_send(c, "MAIL FROM:<>\r\nRCPT TO:<" BOB ">\r\nDATA\r\n");
	EXPECT(c, "250 2.1.0 Ok");
	EXPECT(c, "250 2.1.5 Ok");
	EXPECT_PREFIX(c, "354 ");
	client_send(c, "bare\nlf\r\n.\r\n");
	EXPECT_PREFIX(c, "250 2.0.0 Ok: queued as ");
	client_send(c, "MAIL FROM:<>\r\nRCPT TO:<" BOB ">\r\nDATA\r\n");
	EXPECT(c, "250 2.1.0 Ok");
	EXPECT(c, "250 2.1.5 Ok");
	EXPECT_PREFIX(c, "354 ");
	client_send(c, "bare\rcr\r\n.\r\n");
	EXPECT_PREFIX(c, "550 5.6.0 Message contains bare CR");
	client_send(c, "QUIT\r\n");
	EXPECT(c, "221 2.0.0 " HOSTNAME " closing connection");
	EXPECT_CLOSED(c);
	client_free(&c);

	/* LMTP: one reply per accepted recipient after the data. */
	c = client_open(&lmtp_protocol, "127.0.0.1");
	EXPECT(c, "220 " HOSTNAME " LMTP tern ready");
	client_send(c, "EHLO x\r\n");
	EXPECT(c, "500 5.5.1 Use LHLO in LMTP");
	client_send(c, "LHLO x\r\n");
	expect_ehlo(c, false);
	client_send(c, "AUTH PLAIN\r\n");
	EXPECT(c, "502 5.5.1 AUTH not available in LMTP");
	client_send(c, "MAIL FROM:<a@remote.example>\r\nRCPT TO:<" ALICE ">\r\n"
		       "RCPT TO:<nobody@" DOMAIN ">\r\nRCPT TO:<" BOB ">\r\nRCPT TO:<" ALICE ">\r\n"
		       "DATA\r\n");
	EXPECT(c, "250 2.1.0 Ok");
	EXPECT(c, "250 2.1.5 Ok");
	EXPECT_PREFIX(c, "550 5.1.1 ");
	EXPECT(c, "250 2.1.5 Ok");
	EXPECT(c, "250 2.1.5 Ok");
	EXPECT_PREFIX(c, "354 ");
	client_send(c, "Subject: lmtp\r\n\r\nhi\r\n.\r\n");
	EXPECT_PREFIX(c, "250 2.0.0 <" ALICE "> ");
	EXPECT_PREFIX(c, "250 2.0.0 <" BOB "> ");
	EXPECT_PREFIX(c, "250 2.0.0 <" ALICE "> ");
	CHECK_INT(alice_messages(), 4);
	client_send(c, "QUIT\r\n");
	EXPECT_PREFIX(c, "221 2.0.0 ");
	EXPECT_CLOSED(c);
	client_free(&c);
	env_stop();
}

/* --- pipelining --- */

#define PIPELINED_CLIENTS 4

static void test_pipelining(void)
{
	settings_begin("pipelined commands answered in order while jobs run");
	env_start(4);
	struct client *pop[PIPELINED_CLIENTS], *smtp[PIPELINED_CLIENTS];
	for (int i = 0; i < PIPELINED_CLIENTS; i++) {
		pop[i] = client_open(&pop3_protocol, "127.0.0.1");
		smtp[i] = client_open(&smtp_protocol, "127.0.0.1");
	}
	/* Every burst goes out before any reply is read: each session has
	 * jobs in flight on the pool at the same time as the others. */
	for (int i = 0; i < PIPELINED_CLIENTS; i++) {
		client_send(pop[i], "CAPA\r\nUSER " ALICE "\r\nPASS " PASSWORD "\r\nSTAT\r\n"
				    "RETR 2\r\nLIST 1\r\nTOP 1 0\r\nUIDL 2\r\nRETR 9\r\nNOOP\r\nQUIT\r\n");
		/* (to bob: alice's listing is the POP3 sessions') */
		sendf(smtp[i], "EHLO c%d.example\r\nMAIL FROM:<s%d@remote.example>\r\n"
			       "RCPT TO:<" BOB ">\r\nRCPT TO:<nobody@" DOMAIN ">\r\n"
			       "RCPT TO:<Bob@" DOMAIN ">\r\nDATA\r\nSubject: %d\r\n\r\n.. body\r\n.\r\n"
			       "MAIL FROM:<>\r\nRCPT TO:<x@elsewhere.example>\r\nDATA\r\n"
			       "RSET\r\nNOOP\r\nQUIT\r\n",
		      i, i, i);
	}
	char want[128];
	for (int i = 0; i < PIPELINED_CLIENTS; i++) {
		struct client *c = pop[i];
		EXPECT(c, "+OK tern POP3 server ready");
		expect_pop3_capa(c, false, true);
		EXPECT(c, "+OK Send PASS");
		EXPECT_PREFIX(c, "+OK Logged in, 2 messages");
		snprintf(want, sizeof(want), "+OK 2 %zu", MSG1_SIZE + MSG2_SIZE);
		EXPECT(c, want);
		snprintf(want, sizeof(want), "+OK %zu octets", MSG2_SIZE);
		EXPECT(c, want);
		EXPECT(c, "Subject: second");
		EXPECT(c, "X-Test: yes");
		EXPECT(c, "");
		EXPECT(c, "line 1");
		EXPECT(c, "line 2");
		EXPECT(c, "line 3");
		EXPECT(c, ".");
		snprintf(want, sizeof(want), "+OK 1 %zu", MSG1_SIZE);
		EXPECT(c, want);
		EXPECT(c, "+OK");
		EXPECT(c, "Return-Path: <sender@remote.example>");
		EXPECT(c, "Subject: first");
		EXPECT(c, "");
		EXPECT(c, ".");
		EXPECT_PREFIX(c, "+OK 2 ");
		EXPECT(c, "-ERR No such message");
		EXPECT(c, "+OK");
		EXPECT(c, "+OK Bye");
		EXPECT_CLOSED(c);
	}
	for (int i = 0; i < PIPELINED_CLIENTS; i++) {
		struct client *c = smtp[i];
		EXPECT_PREFIX(c, "220 ");
		expect_ehlo(c, true);
		EXPECT(c, "250 2.1.0 Ok");
		EXPECT(c, "250 2.1.5 Ok");
		EXPECT_PREFIX(c, "550 5.1.1 ");
		EXPECT(c, "250 2.1.5 Ok");
		EXPECT_PREFIX(c, "354 ");
		EXPECT_PREFIX(c, "250 2.0.0 Ok: queued as ");
		EXPECT(c, "250 2.1.0 Ok");
		EXPECT_PREFIX(c, "550 5.7.1 <x@elsewhere.example>: ");
		EXPECT(c, "503 5.5.1 No valid recipients");
		EXPECT(c, "250 2.0.0 Ok");
		EXPECT(c, "250 2.0.0 Ok");
		EXPECT_PREFIX(c, "221 ");
		EXPECT_CLOSED(c);
	}
	CHECK_INT(alice_messages(), 2);
	CHECK_INT(messages_of(BOB), 1 + PIPELINED_CLIENTS);
	for (int i = 0; i < PIPELINED_CLIENTS; i++) {
		client_free(&pop[i]);
		client_free(&smtp[i]);
	}
	env_stop();
}

/* --- the bad-command budget --- */

static void test_bad_commands(void)
{
	settings_begin("the bad-command budget");
	h.set->max_bad_commands = 3;
	env_start(2);
	/* good commands in between neither count nor reset the count */
	struct client *c = client_open(&pop3_protocol, "127.0.0.1");
	EXPECT_PREFIX(c, "+OK tern");
	client_send(c, "FOO\r\nCAPA\r\nRETR 1\r\nUSER " ALICE "\r\nSTAT\r\nNOOP\r\n");
	EXPECT(c, "-ERR Unknown command");
	expect_pop3_capa(c, false, true);
	EXPECT(c, "-ERR Not logged in");
	EXPECT(c, "+OK Send PASS");
	EXPECT(c, "-ERR Not logged in");
	EXPECT(c, "-ERR Too many bad commands, closing connection");
	EXPECT_CLOSED(c);
	client_free(&c);

	/* failed logins count too */
	c = client_open(&pop3_protocol, "127.0.0.1");
	EXPECT_PREFIX(c, "+OK tern");
	client_send(c, "USER " ALICE "\r\nPASS a\r\nUSER " ALICE "\r\nPASS b\r\nAUTH PLAIN !\r\n"
		       "USER " ALICE "\r\nPASS " PASSWORD "\r\n");
	EXPECT(c, "+OK Send PASS");
	EXPECT(c, "-ERR [AUTH] Invalid user name or password");
	EXPECT(c, "+OK Send PASS");
	EXPECT(c, "-ERR [AUTH] Invalid user name or password");
	EXPECT_PREFIX(c, "-ERR [AUTH] ");
	EXPECT(c, "-ERR Too many bad commands, closing connection");
	EXPECT_CLOSED(c);
	client_free(&c);

	/* an over-long line is a bad command */
	c = client_open(&pop3_protocol, "127.0.0.1");
	EXPECT_PREFIX(c, "+OK tern");
	char line[700];
	memset(line, 'x', sizeof(line));
	client_send_n(c, line, sizeof(line));
	client_send(c, "\r\nNOOP\r\n");
	EXPECT(c, "-ERR Line too long");
	EXPECT(c, "-ERR Not logged in");
	client_send(c, "QUIT\r\n");
	EXPECT(c, "+OK Bye");
	EXPECT_CLOSED(c);
	client_free(&c);
	env_stop();

	/* SMTP with the default budget of 10 */
	settings_begin("the bad-command budget, SMTP");
	CHECK_INT(h.set->max_bad_commands, 10);
	env_start(2);
	c = client_open(&smtp_protocol, "127.0.0.1");
	EXPECT_PREFIX(c, "220 ");
	client_send(c, "HELO\r\nMAIL FROM:<a@b.example>\r\nNOOP\r\n");
	EXPECT(c, "501 5.5.4 Syntax: HELO hostname");
	EXPECT(c, "503 5.5.1 Send HELO/EHLO first");
	EXPECT(c, "250 2.0.0 Ok");
	for (int i = 0; i < 8; i++)
		client_send(c, "FOO\r\n");
	client_send(c, "NOOP\r\n");
	for (int i = 0; i < 8; i++)
		EXPECT(c, "500 5.5.2 Command unrecognized");
	EXPECT(c, "421 4.7.0 Too many errors, closing connection");
	EXPECT_CLOSED(c);
	client_free(&c);
	env_stop();
}

/* --- admission --- */

static bool refused_gone(void *arg)
{
	return h.env.registry->refused_count == 0;
}

static bool count_is(void *arg)
{
	return session_registry_count(h.env.registry) == *(unsigned int *)arg;
}

static void test_admission(void)
{
	settings_begin("admission: max_connections");
	h.set->max_connections = 2;
	env_start(2);
	enum session_admit admit;
	struct client *a = client_open_admit(&pop3_protocol, "192.0.2.1", &admit);
	CHECK_INT(admit, SESSION_ADMIT_OK);
	struct client *b = client_open_admit(&smtp_protocol, "192.0.2.2", &admit);
	CHECK_INT(admit, SESSION_ADMIT_OK);
	EXPECT_PREFIX(a, "+OK tern");
	EXPECT_PREFIX(b, "220 ");
	CHECK_INT(session_registry_count(h.env.registry), 2);
	/* the limit applies to trusted addresses too */
	struct client *r1 = client_open_admit(&pop3_protocol, "127.0.0.1", &admit);
	CHECK_INT(admit, SESSION_ADMIT_TOO_MANY);
	struct client *r2 = client_open_admit(&smtp_protocol, "192.0.2.3", &admit);
	CHECK_INT(admit, SESSION_ADMIT_TOO_MANY);
	struct client *r3 = client_open_admit(&lmtp_protocol, "192.0.2.3", &admit);
	CHECK_INT(admit, SESSION_ADMIT_TOO_MANY);
	/* refused sessions exist until they have said why, but never count */
	CHECK_INT(h.env.registry->refused_count, 3);
	CHECK_INT(session_registry_count(h.env.registry), 2);
	client_send(r1, "CAPA\r\n");
	EXPECT(r1, "-ERR [SYS/TEMP] Too many connections, try again later");
	EXPECT_CLOSED(r1);
	EXPECT(r2, "421 4.7.0 " HOSTNAME " Too many connections, try again later");
	EXPECT_CLOSED(r2);
	EXPECT(r3, "421 4.7.0 " HOSTNAME " Too many connections, try again later");
	EXPECT_CLOSED(r3);
	CHECK(run_until(refused_gone, NULL, WAIT_MS));
	CHECK_INT(session_registry_count(h.env.registry), 2);
	/* the admitted sessions were not disturbed */
	client_send(a, "QUIT\r\n");
	EXPECT(a, "+OK Bye");
	EXPECT_CLOSED(a);
	client_send(b, "NOOP\r\n");
	EXPECT(b, "250 2.0.0 Ok");
	/* a place is free again once a session has gone */
	client_free(&a);
	CHECK_INT(session_registry_count(h.env.registry), 1);
	struct client *a2 = client_open_admit(&pop3_protocol, "192.0.2.3", &admit);
	CHECK_INT(admit, SESSION_ADMIT_OK);
	EXPECT(a2, "+OK tern POP3 server ready");
	client_free(&a2);
	client_free(&b);
	client_free(&r1);
	client_free(&r2);
	client_free(&r3);
	env_stop();

	settings_begin("admission: max_connections_per_ip");
	h.set->max_connections_per_ip = 2;
	env_start(2);
	struct client *c[12];
	int n = 0;
	const struct {
		const char *ip;
		const struct session_protocol *proto;
		enum session_admit admit;
	} cases[] = {
		{ "198.51.100.7", &pop3_protocol, SESSION_ADMIT_OK },
		{ "198.51.100.7", &smtp_protocol, SESSION_ADMIT_OK },
		{ "198.51.100.7", &pop3_protocol, SESSION_ADMIT_TOO_MANY_FROM_IP },
		{ "198.51.100.7", &smtp_protocol, SESSION_ADMIT_TOO_MANY_FROM_IP },
		{ "198.51.100.8", &pop3_protocol, SESSION_ADMIT_OK },
		/* IPv4-mapped IPv6 is the IPv4 address */
		{ "::ffff:198.51.100.8", &pop3_protocol, SESSION_ADMIT_OK },
		{ "198.51.100.8", &pop3_protocol, SESSION_ADMIT_TOO_MANY_FROM_IP },
		/* one IPv6 client is a /64 */
		{ "2001:db8:1:2::1", &pop3_protocol, SESSION_ADMIT_OK },
		{ "2001:db8:1:2:ffff::9", &smtp_protocol, SESSION_ADMIT_OK },
		{ "2001:db8:1:2::3", &pop3_protocol, SESSION_ADMIT_TOO_MANY_FROM_IP },
		{ "2001:db8:1:3::1", &pop3_protocol, SESSION_ADMIT_OK },
		/* trusted networks have no per-address limit */
		{ "127.0.0.1", &pop3_protocol, SESSION_ADMIT_OK },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		c[n] = client_open_admit(cases[i].proto, cases[i].ip, &admit);
		test_checks++;
		if (admit != cases[i].admit) {
			test_failures++;
			fprintf(stderr, "%s:%d: case %zu (%s): admit %d, expected %d\n", __FILE__,
				__LINE__, i, cases[i].ip, admit, cases[i].admit);
		}
		n++;
	}
	struct client *t1 = client_open_admit(&smtp_protocol, "127.0.0.1", &admit);
	CHECK_INT(admit, SESSION_ADMIT_OK);
	struct client *t2 = client_open_admit(&smtp_protocol, "::1", &admit);
	CHECK_INT(admit, SESSION_ADMIT_OK);
	CHECK_INT(session_registry_count(h.env.registry), 10);
	EXPECT(c[2], "-ERR [SYS/TEMP] Too many connections from your address, try again later");
	EXPECT_CLOSED(c[2]);
	EXPECT(c[3], "421 4.7.0 " HOSTNAME " Too many connections from your address, try again later");
	EXPECT_CLOSED(c[3]);
	EXPECT_PREFIX(c[0], "+OK tern");
	EXPECT_PREFIX(c[1], "220 ");
	EXPECT_PREFIX(t1, "220 ");
	EXPECT_PREFIX(t2, "220 ");
	CHECK(run_until(refused_gone, NULL, WAIT_MS));
	/* closing one of 198.51.100.7's sessions makes room for another */
	client_free(&c[0]);
	unsigned int nine = 9;
	CHECK(run_until(count_is, &nine, WAIT_MS));
	c[0] = client_open_admit(&pop3_protocol, "198.51.100.7", &admit);
	CHECK_INT(admit, SESSION_ADMIT_OK);
	EXPECT_PREFIX(c[0], "+OK tern");
	for (int i = 0; i < n; i++)
		client_free(&c[i]);
	client_free(&t1);
	client_free(&t2);
	env_stop();

	/* A flood of refusals: past SESSION_REFUSED_MAX in flight, new
	 * connections are closed without a word. */
	settings_begin("admission: a flood of refused connections");
	h.set->max_connections = 1;
	env_start(2);
	struct client *ok = client_open(&pop3_protocol, "192.0.2.1");
	struct client *flood[65];
	for (int i = 0; i < 64; i++) {
		flood[i] = client_open_admit(&pop3_protocol, "192.0.2.2", &admit);
		CHECK_INT(admit, SESSION_ADMIT_TOO_MANY);
	}
	flood[64] = client_open_admit(&pop3_protocol, "192.0.2.2", &admit);
	CHECK_INT(admit, SESSION_ADMIT_DROP);
	CHECK_INT(h.env.registry->refused_count, 64);
	EXPECT_CLOSED(flood[64]);
	for (int i = 0; i < 64; i++)
		EXPECT(flood[i], "-ERR [SYS/TEMP] Too many connections, try again later");
	CHECK(run_until(refused_gone, NULL, WAIT_MS));
	for (int i = 0; i < 65; i++)
		client_free(&flood[i]);
	EXPECT_PREFIX(ok, "+OK tern");
	client_free(&ok);
	env_stop();
}

/* --- SASL through the core --- */

static void test_sasl_pop3(void)
{
	settings_begin("SASL in POP3");
	env_start(2);
	char *ok = plain_response(ALICE, PASSWORD);
	char *wrong = plain_response(ALICE, "wrong");
	char *not_address = plain_response("alice", PASSWORD);
	char *no_nul = b64("no separators here");

	/* PLAIN with an initial response */
	struct client *c = client_open(&pop3_protocol, "127.0.0.1");
	EXPECT_PREFIX(c, "+OK tern");
	client_send(c, "AUTH\r\n");
	EXPECT(c, "+OK");
	EXPECT(c, "PLAIN");
	EXPECT(c, ".");
	client_send(c, "AUTH LOGIN\r\n");
	EXPECT(c, "-ERR Unsupported authentication mechanism (use PLAIN)");
	sendf(c, "AUTH PLAIN %s\r\n", ok);
	EXPECT_PREFIX(c, "+OK Logged in, 2 messages");
	client_send(c, "AUTH PLAIN\r\n");
	EXPECT(c, "-ERR Command not valid in this state");
	client_send(c, "QUIT\r\n");
	EXPECT(c, "+OK Bye");
	EXPECT_CLOSED(c);
	client_free(&c);

	/* continued, and every way an exchange fails */
	c = client_open(&pop3_protocol, "127.0.0.1");
	EXPECT_PREFIX(c, "+OK tern");
	client_send(c, "AUTH PLAIN\r\n");
	EXPECT(c, "+ ");
	client_send(c, "*\r\n");
	EXPECT(c, "-ERR [AUTH] Authentication cancelled");
	client_send(c, "AUTH PLAIN\r\n");
	EXPECT(c, "+ ");
	client_send(c, "not*base64\r\n");
	EXPECT_PREFIX(c, "-ERR [AUTH] ");
	client_send(c, "AUTH PLAIN =\r\n");
	EXPECT(c, "+ ");
	sendf(c, "%s\r\n", no_nul);
	EXPECT_PREFIX(c, "-ERR [AUTH] ");
	client_send(c, "AUTH PLAIN\r\n");
	EXPECT(c, "+ ");
	sendf(c, "%s\r\n", not_address);
	EXPECT(c, "-ERR [AUTH] Invalid user name (expected user@domain)");
	/* a response over [auth] max_response (4096); the exchange line cap
	 * is lifted for the exchange only */
	client_send(c, "AUTH PLAIN\r\n");
	EXPECT(c, "+ ");
	char big[5000];
	memset(big, 'A', sizeof(big));
	client_send_n(c, big, 2000);
	run_for(20);
	CHECK(c->in.len == 0);
	client_send_n(c, big, sizeof(big));
	client_send(c, "\r\n");
	EXPECT(c, "-ERR [AUTH] Authentication response too long");
	client_send_n(c, big, 600);
	client_send(c, "\r\n");
	EXPECT(c, "-ERR Line too long");
	sendf(c, "AUTH PLAIN %s\r\n", wrong);
	EXPECT(c, "-ERR [AUTH] Invalid user name or password");
	client_send(c, "AUTH PLAIN\r\n");
	EXPECT(c, "+ ");
	/* the response line is the exchange's, whatever it looks like */
	client_send(c, "QUIT\r\n");
	EXPECT_PREFIX(c, "-ERR [AUTH] ");
	client_send(c, "AUTH PLAIN\r\n");
	EXPECT(c, "+ ");
	sendf(c, "%s\r\n", ok);
	EXPECT_PREFIX(c, "+OK Logged in, 2 messages");
	client_send(c, "QUIT\r\n");
	EXPECT(c, "+OK Bye");
	EXPECT_CLOSED(c);
	client_free(&c);

	/* The plaintext policy: no USER/PASS/AUTH PLAIN in the clear from
	 * outside the trusted networks (tls_or_loopback, the default). */
	c = client_open(&pop3_protocol, "192.0.2.1");
	EXPECT_PREFIX(c, "+OK tern");
	client_send(c, "CAPA\r\n");
	expect_pop3_capa(c, false, false);
	client_send(c, "AUTH\r\n");
	EXPECT(c, "+OK");
	EXPECT(c, ".");
	sendf(c, "AUTH PLAIN %s\r\nUSER " ALICE "\r\nQUIT\r\n", ok);
	EXPECT(c, "-ERR [AUTH] Plaintext authentication disallowed on non-secure connections (use STLS)");
	EXPECT(c, "-ERR [AUTH] Plaintext authentication disallowed on non-secure connections (use STLS)");
	EXPECT(c, "+OK Bye");
	EXPECT_CLOSED(c);
	client_free(&c);
	free(ok);
	free(wrong);
	free(not_address);
	free(no_nul);
	env_stop();
}

static void test_sasl_smtp(void)
{
	settings_begin("SASL in SMTP");
	env_start(2);
	char *ok = plain_response(ALICE, PASSWORD);
	char *wrong = plain_response(ALICE, "wrong");
	char *user = b64(ALICE), *pass = b64(PASSWORD);

	struct client *c = client_open(&smtp_protocol, "127.0.0.1");
	EXPECT_PREFIX(c, "220 ");
	sendf(c, "AUTH PLAIN %s\r\n", ok);
	EXPECT(c, "503 5.5.1 Send EHLO first");
	client_send(c, "HELO x\r\nAUTH PLAIN\r\n");
	EXPECT(c, "250 " HOSTNAME);
	EXPECT(c, "503 5.5.1 Send EHLO first");
	client_send(c, "EHLO x\r\nAUTH CRAM-MD5\r\n");
	expect_ehlo(c, true);
	EXPECT(c, "504 5.5.4 Unrecognized authentication type (use PLAIN or LOGIN)");
	client_send(c, "MAIL FROM:<>\r\nAUTH PLAIN\r\nRSET\r\n");
	EXPECT(c, "250 2.1.0 Ok");
	EXPECT(c, "503 5.5.1 AUTH not allowed during a mail transaction");
	EXPECT(c, "250 2.0.0 Ok");
	sendf(c, "AUTH PLAIN %s\r\n", wrong);
	EXPECT(c, "535 5.7.8 Authentication credentials invalid");
	sendf(c, "AUTH plain %s\r\n", ok);
	EXPECT(c, "235 2.7.0 Authentication successful");
	client_send(c, "AUTH PLAIN\r\nEHLO x\r\n");
	EXPECT(c, "503 5.5.1 Already authenticated");
	expect_ehlo(c, false);
	client_send(c, "QUIT\r\n");
	EXPECT_PREFIX(c, "221 ");
	EXPECT_CLOSED(c);
	client_free(&c);

	c = client_open(&smtp_protocol, "127.0.0.1");
	EXPECT_PREFIX(c, "220 ");
	client_send(c, "EHLO x\r\n");
	expect_ehlo(c, true);
	client_send(c, "AUTH PLAIN\r\n");
	EXPECT(c, "334 ");
	client_send(c, "*\r\n");
	EXPECT(c, "501 5.7.0 Authentication cancelled");
	client_send(c, "AUTH LOGIN\r\n");
	EXPECT(c, "334 VXNlcm5hbWU6");
	client_send(c, "*\r\n");
	EXPECT(c, "501 5.7.0 Authentication cancelled");
	sendf(c, "AUTH LOGIN %s\r\n", user);
	EXPECT(c, "334 UGFzc3dvcmQ6");
	client_send(c, "*\r\n");
	EXPECT(c, "501 5.7.0 Authentication cancelled");
	client_send(c, "AUTH PLAIN\r\n");
	EXPECT(c, "334 ");
	client_send(c, "@@@@\r\n");
	EXPECT(c, "501 5.5.2 Invalid base64 data in the authentication response");
	client_send(c, "AUTH PLAIN !!!!\r\n");
	EXPECT(c, "501 5.5.2 Invalid base64 data in the authentication response");
	client_send(c, "AUTH LOGIN\r\n");
	EXPECT(c, "334 VXNlcm5hbWU6");
	char big[5000];
	memset(big, 'A', sizeof(big));
	client_send_n(c, big, sizeof(big));
	client_send(c, "\r\n");
	EXPECT(c, "500 5.5.6 Authentication exchange line is too long");
	/* back to commands, with the SMTP line cap (1024) */
	client_send_n(c, big, 1100);
	client_send(c, "\r\nNOOP\r\n");
	EXPECT(c, "500 5.5.2 Line too long");
	EXPECT(c, "250 2.0.0 Ok");
	/* LOGIN: an empty user name is no address; an empty password */
	client_send(c, "AUTH LOGIN\r\n");
	EXPECT(c, "334 VXNlcm5hbWU6");
	sendf(c, "=\r\n%s\r\n", pass);
	EXPECT(c, "334 UGFzc3dvcmQ6");
	EXPECT(c, "535 5.7.8 Authentication credentials invalid (the user name is an address, user@domain)");
	sendf(c, "AUTH LOGIN %s\r\n=\r\n", user);
	EXPECT(c, "334 UGFzc3dvcmQ6");
	EXPECT(c, "535 5.7.8 Authentication credentials invalid");
	/* that was the 9th bad command: LOGIN, continued, succeeds */
	client_send(c, "AUTH LOGIN\r\n");
	EXPECT(c, "334 VXNlcm5hbWU6");
	sendf(c, "%s\r\n", user);
	EXPECT(c, "334 UGFzc3dvcmQ6");
	sendf(c, "%s\r\n", pass);
	EXPECT(c, "235 2.7.0 Authentication successful");
	/* authenticated: a remote recipient is relayed (for the queue), but
	 * only as the login itself */
	client_send(c, "MAIL FROM:<" ALICE ">\r\nRCPT TO:<x@elsewhere.example>\r\n");
	EXPECT(c, "250 2.1.0 Ok");
	EXPECT(c, "250 2.1.5 Ok");
	client_send(c, "RSET\r\nMAIL FROM:<someone@elsewhere.example>\r\n");
	EXPECT(c, "250 2.0.0 Ok");
	EXPECT(c, "553 5.7.1 <someone@elsewhere.example>: Sender address rejected: not owned by " ALICE);
	client_send(c, "QUIT\r\n");
	EXPECT_PREFIX(c, "221 ");
	EXPECT_CLOSED(c);
	client_free(&c);

	/* PLAIN continued, then the budget ends a session inside SASL (the
	 * sessions read the settings as they go) */
	h.set->max_bad_commands = 2;
	c = client_open(&smtp_protocol, "127.0.0.1");
	EXPECT_PREFIX(c, "220 ");
	client_send(c, "EHLO x\r\nAUTH PLAIN\r\n");
	expect_ehlo(c, true);
	EXPECT(c, "334 ");
	sendf(c, "%s\r\n", wrong);
	EXPECT(c, "535 5.7.8 Authentication credentials invalid");
	client_send(c, "AUTH PLAIN\r\n*\r\nNOOP\r\n");
	EXPECT(c, "334 ");
	EXPECT(c, "501 5.7.0 Authentication cancelled");
	EXPECT(c, "421 4.7.0 Too many errors, closing connection");
	EXPECT_CLOSED(c);
	client_free(&c);

	/* the plaintext policy for an untrusted client */
	c = client_open(&smtp_protocol, "192.0.2.1");
	EXPECT_PREFIX(c, "220 ");
	client_send(c, "EHLO x\r\n");
	expect_ehlo(c, false);
	sendf(c, "AUTH PLAIN %s\r\n", ok);
	EXPECT(c, "538 5.7.11 Encryption required for requested authentication mechanism (use STARTTLS)");
	client_send(c, "QUIT\r\n");
	EXPECT_PREFIX(c, "221 ");
	EXPECT_CLOSED(c);
	client_free(&c);
	free(ok);
	free(wrong);
	free(user);
	free(pass);
	env_stop();
}

/* --- relaying and the sender check: the orders an attacker would try --- */

static void test_relay_holes(void)
{
	settings_begin("relaying only for an authenticated session, as itself");
	env_start(2);
	const char *team[] = { ALICE, BOB };
	const char *bobs[] = { BOB };
	CHECK(store_alias_set(h.env.store, "team@" DOMAIN, team, 2) == STORE_OK);
	CHECK(store_alias_set(h.env.store, "bobs@" DOMAIN, bobs, 1) == STORE_OK);
	char *ok = plain_response(ALICE, PASSWORD);
	char *wrong = plain_response(ALICE, "wrong");

	/* A failed AUTH pipelined with the transaction relays nothing. */
	struct client *c = client_open(&smtp_protocol, "127.0.0.1");
	EXPECT_PREFIX(c, "220 ");
	sendf(c, "EHLO x\r\nAUTH PLAIN %s\r\nMAIL FROM:<" ALICE ">\r\nRCPT TO:<x@elsewhere.example>\r\n"
		 "RCPT TO:<x@elsewhere.example.>\r\nRCPT TO:<x@[192.0.2.1]>\r\n"
		 "RCPT TO:<x%%elsewhere.example@" DOMAIN ">\r\nRSET\r\n", wrong);
	expect_ehlo(c, true);
	EXPECT(c, "535 5.7.8 Authentication credentials invalid");
	EXPECT(c, "250 2.1.0 Ok");
	EXPECT_PREFIX(c, "550 5.7.1 <x@elsewhere.example>: Relay access denied");
	EXPECT_PREFIX(c, "501 5.5.4 ");   /* a trailing dot is no domain */
	EXPECT_PREFIX(c, "550 5.7.1 <x@[192.0.2.1]>: Relay access denied");
	EXPECT(c, "550 5.1.1 <x%elsewhere.example@" DOMAIN ">: User unknown");
	EXPECT(c, "250 2.0.0 Ok");
	/* AUTH, MAIL and RCPT pipelined: the login is checked before MAIL. */
	sendf(c, "AUTH PLAIN %s\r\nMAIL FROM:<" ALICE ">\r\nRCPT TO:<x@elsewhere.example>\r\n", ok);
	EXPECT(c, "235 2.7.0 Authentication successful");
	EXPECT(c, "250 2.1.0 Ok");
	EXPECT(c, "250 2.1.5 Ok");
	/* RSET and HELO keep the login, and the sender check with it. */
	client_send(c, "RSET\r\nHELO y\r\nMAIL FROM:<" BOB ">\r\nMAIL FROM:<>\r\n"
		       "MAIL FROM:<bobs@" DOMAIN ">\r\n");
	EXPECT(c, "250 2.0.0 Ok");
	EXPECT(c, "250 " HOSTNAME);
	EXPECT_PREFIX(c, "553 5.7.1 <" BOB ">: Sender address rejected");
	EXPECT_PREFIX(c, "553 5.7.1 <>: Sender address rejected");
	EXPECT_PREFIX(c, "553 5.7.1 <bobs@" DOMAIN ">: Sender address rejected");
	/* Case does not matter; an alias reaching the login (among others)
	 * may be used. */
	client_send(c, "MAIL FROM:<Alice@Example.ORG>\r\nRSET\r\nMAIL FROM:<TEAM@example.org>\r\n"
		       "RCPT TO:<y@elsewhere.example>\r\nQUIT\r\n");
	EXPECT(c, "250 2.1.0 Ok");
	EXPECT(c, "250 2.0.0 Ok");
	EXPECT(c, "250 2.1.0 Ok");
	EXPECT(c, "250 2.1.5 Ok");
	EXPECT_PREFIX(c, "221 ");
	EXPECT_CLOSED(c);
	client_free(&c);

	/* LMTP never relays, whatever it is sent. */
	c = client_open(&lmtp_protocol, "127.0.0.1");
	EXPECT_PREFIX(c, "220 ");
	sendf(c, "LHLO x\r\nAUTH PLAIN %s\r\nMAIL FROM:<" ALICE ">\r\nRCPT TO:<x@elsewhere.example>\r\nQUIT\r\n",
	      ok);
	expect_ehlo(c, false);
	EXPECT(c, "502 5.5.1 AUTH not available in LMTP");
	EXPECT(c, "250 2.1.0 Ok");
	EXPECT_PREFIX(c, "550 5.7.1 <x@elsewhere.example>: Relay access denied");
	EXPECT_PREFIX(c, "221 ");
	EXPECT_CLOSED(c);
	client_free(&c);

	/* Submission before TLS: no AUTH (even on loopback), no MAIL. */
	c = client_open(&submission_protocol, "127.0.0.1");
	EXPECT_PREFIX(c, "220 ");
	sendf(c, "EHLO x\r\nAUTH PLAIN %s\r\nMAIL FROM:<" ALICE ">\r\nRCPT TO:<x@elsewhere.example>\r\nQUIT\r\n",
	      ok);
	expect_ehlo(c, false);
	EXPECT(c, "530 5.7.0 Must issue a STARTTLS command first");
	EXPECT(c, "530 5.7.0 Authentication required");
	EXPECT(c, "503 5.5.1 Need MAIL before RCPT");
	EXPECT_PREFIX(c, "221 ");
	EXPECT_CLOSED(c);
	client_free(&c);
	free(ok);
	free(wrong);
	env_stop();
}

/* --- the failed-login penalty --- */

#define PENALTY_MS 150
/* libevent's timers run on the coarse monotonic clock (a tick of a few
 * ms), which lags the one this test reads: a wait may end that much
 * early by this test's clock. */
#define SLACK_MS 20

static void penalty_settings(const char *name)
{
	settings_begin(name);
	h.set->plaintext = PLAINTEXT_ALWAYS;
	h.set->auth_failure_delay_initial_ms = PENALTY_MS;
	h.set->auth_failure_delay_max_ms = 8 * PENALTY_MS;
}

static unsigned int failures_of(const char *ip)
{
	struct sockaddr_storage ss;
	socklen_t len;
	make_sockaddr(ip, &ss, &len);
	struct net_addr addr;
	net_addr_from_sockaddr(&addr, (struct sockaddr *)&ss);
	return auth_penalty_failures(h.env.penalty, &addr, now_ms());
}

static void test_penalty(void)
{
	penalty_settings("the penalty is taken before the check");
	env_start(2);
	const char *ip = "203.0.113.5";
	struct client *c = client_open(&pop3_protocol, ip);
	EXPECT_PREFIX(c, "+OK tern");
	client_send(c, "USER " ALICE "\r\nPASS wrong\r\n");
	EXPECT(c, "+OK Send PASS");
	EXPECT(c, "-ERR [AUTH] Invalid user name or password");
	CHECK_INT(failures_of(ip), 1);
	/* the right password waits the penalty too */
	client_send(c, "USER " ALICE "\r\n");
	EXPECT(c, "+OK Send PASS");
	uint64_t sent = now_ms(), at;
	client_send(c, "PASS " PASSWORD "\r\n");
	EXPECT_AT(c, "+OK Logged in", &at);
	CHECK(at - sent >= PENALTY_MS - SLACK_MS);
	/* all the failures were alice's: her success forgets them */
	CHECK_INT(failures_of(ip), 0);
	client_send(c, "QUIT\r\n");
	EXPECT(c, "+OK Bye");
	client_free(&c);

	/* SMTP AUTH, from another address: the same rules */
	const char *ip2 = "203.0.113.9";
	char *ok = plain_response(ALICE, PASSWORD);
	char *wrong = plain_response(ALICE, "wrong");
	c = client_open(&smtp_protocol, ip2);
	EXPECT_PREFIX(c, "220 ");
	client_send(c, "EHLO x\r\n");
	expect_ehlo(c, true);
	sendf(c, "AUTH PLAIN %s\r\n", wrong);
	EXPECT(c, "535 5.7.8 Authentication credentials invalid");
	sent = now_ms();
	sendf(c, "AUTH PLAIN %s\r\n", wrong);
	EXPECT_AT(c, "535 5.7.8 Authentication credentials invalid", &at);
	CHECK(at - sent >= PENALTY_MS - SLACK_MS);
	CHECK_INT(failures_of(ip2), 2);
	/* two failures: twice the wait, for the right password as well */
	sent = now_ms();
	client_send(c, "AUTH LOGIN\r\n");
	EXPECT(c, "334 VXNlcm5hbWU6");
	char *user = b64(ALICE), *pass = b64(PASSWORD);
	sendf(c, "%s\r\n%s\r\n", user, pass);
	EXPECT(c, "334 UGFzc3dvcmQ6");
	EXPECT_AT(c, "235 2.7.0 Authentication successful", &at);
	CHECK(at - sent >= 2 * PENALTY_MS - SLACK_MS);
	client_send(c, "QUIT\r\n");
	EXPECT_PREFIX(c, "221 ");
	client_free(&c);
	free(user);
	free(pass);

	/* Two sessions from one penalised address: their checks run one
	 * after the other, each after its own wait. The failure was for
	 * another user, so alice's success forgets nothing. */
	const char *ip3 = "203.0.113.77";
	c = client_open(&pop3_protocol, ip3);
	EXPECT_PREFIX(c, "+OK tern");
	client_send(c, "USER nobody@" DOMAIN "\r\nPASS x\r\n");
	EXPECT(c, "+OK Send PASS");
	EXPECT(c, "-ERR [AUTH] Invalid user name or password");
	client_free(&c);
	CHECK_INT(failures_of(ip3), 1);
	struct client *a = client_open(&pop3_protocol, ip3);
	struct client *b = client_open(&smtp_protocol, ip3);
	EXPECT_PREFIX(a, "+OK tern");
	EXPECT_PREFIX(b, "220 ");
	client_send(b, "EHLO x\r\n");
	expect_ehlo(b, true);
	sent = now_ms();
	client_send(a, "USER " ALICE "\r\nPASS " PASSWORD "\r\n");
	sendf(b, "AUTH PLAIN %s\r\n", ok);
	uint64_t at_a, at_b;
	EXPECT(a, "+OK Send PASS");
	EXPECT_AT(a, "+OK Logged in", &at_a);
	EXPECT_AT(b, "235 2.7.0 Authentication successful", &at_b);
	/* whichever came first waited once, the other after it */
	uint64_t first = at_a < at_b ? at_a : at_b, second = at_a < at_b ? at_b : at_a;
	CHECK(first - sent >= PENALTY_MS - SLACK_MS);
	CHECK(second >= first + PENALTY_MS - SLACK_MS);
	CHECK_INT(failures_of(ip3), 1);
	client_free(&a);
	client_free(&b);

	/* A login waiting for its turn whose peer goes away leaves the
	 * queue; the others go on. */
	a = client_open(&pop3_protocol, ip3);
	b = client_open(&pop3_protocol, ip3);
	struct client *d = client_open(&pop3_protocol, ip3);
	EXPECT_PREFIX(a, "+OK tern");
	EXPECT_PREFIX(b, "+OK tern");
	EXPECT_PREFIX(d, "+OK tern");
	sent = now_ms();
	client_send(a, "USER " ALICE "\r\nPASS " PASSWORD "\r\n");
	EXPECT(a, "+OK Send PASS");
	/* b's reply to USER cannot be delivered: the session sees its peer
	 * gone while its check waits behind a's */
	client_send(b, "USER " ALICE "\r\nPASS " PASSWORD "\r\n");
	client_hangup(b);
	client_send(d, "USER " ALICE "\r\nPASS " PASSWORD "\r\n");
	EXPECT(d, "+OK Send PASS");
	EXPECT_AT(a, "+OK Logged in", &at_a);
	uint64_t at_d;
	EXPECT_AT(d, "+OK Logged in", &at_d);
	CHECK(at_a - sent >= PENALTY_MS - SLACK_MS);
	CHECK(at_d >= at_a + PENALTY_MS - SLACK_MS);
	/* b went without a check: 2 sessions left */
	CHECK_INT(session_registry_count(h.env.registry), 2);
	client_free(&a);
	client_free(&b);
	client_free(&d);
	free(ok);
	free(wrong);
	env_stop();
}

static void test_penalty_trusted(void)
{
	penalty_settings("trusted networks never wait");
	h.set->auth_failure_delay_initial_ms = 5000;
	h.set->auth_failure_delay_max_ms = 5000;
	env_start(2);
	/* failures recorded for the loopback address (as if before it was
	 * trusted) are never waited for */
	struct sockaddr_in lo = { .sin_family = AF_INET };
	lo.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	struct net_addr addr;
	net_addr_from_sockaddr(&addr, (struct sockaddr *)&lo);
	for (int i = 0; i < 3; i++)
		auth_penalty_fail(h.env.penalty, &addr, "nobody@" DOMAIN, now_ms());
	struct client *c = client_open(&pop3_protocol, "127.0.0.1");
	EXPECT_PREFIX(c, "+OK tern");
	uint64_t sent = now_ms(), at;
	client_send(c, "USER " ALICE "\r\nPASS wrong\r\n");
	EXPECT(c, "+OK Send PASS");
	EXPECT_AT(c, "-ERR [AUTH] Invalid user name or password", &at);
	CHECK(at - sent < 2500);
	client_send(c, "USER " ALICE "\r\nPASS " PASSWORD "\r\n");
	EXPECT(c, "+OK Send PASS");
	EXPECT_AT(c, "+OK Logged in", &at);
	CHECK(at - sent < 2500);
	/* and trusted logins record nothing */
	CHECK_INT(failures_of("127.0.0.1"), 3);
	client_send(c, "QUIT\r\n");
	EXPECT(c, "+OK Bye");
	client_free(&c);
	env_stop();
}

/* --- peers that go away --- */

/* A job that holds the pool's only worker until released. */
struct blocker {
	struct worker_job job;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	bool started, released, done;
};

static void blocker_work(struct worker_job *job)
{
	struct blocker *b = (struct blocker *)job;
	pthread_mutex_lock(&b->lock);
	b->started = true;
	pthread_cond_broadcast(&b->cond);
	while (!b->released)
		pthread_cond_wait(&b->cond, &b->lock);
	pthread_mutex_unlock(&b->lock);
}

static void blocker_done(struct worker_job *job)
{
	((struct blocker *)job)->done = true;
}

static void blocker_start(struct blocker *b)
{
	memset(b, 0, sizeof(*b));
	pthread_mutex_init(&b->lock, NULL);
	pthread_cond_init(&b->cond, NULL);
	b->job.work = blocker_work;
	b->job.done = blocker_done;
	worker_pool_submit(h.env.pool, &b->job);
	pthread_mutex_lock(&b->lock);
	while (!b->started)
		pthread_cond_wait(&b->cond, &b->lock);
	pthread_mutex_unlock(&b->lock);
}

static void blocker_release(struct blocker *b)
{
	pthread_mutex_lock(&b->lock);
	b->released = true;
	pthread_cond_broadcast(&b->cond);
	pthread_mutex_unlock(&b->lock);
}

static void blocker_deinit(struct blocker *b)
{
	pthread_mutex_destroy(&b->lock);
	pthread_cond_destroy(&b->cond);
}

static bool session_dead(void *arg)
{
	struct session *s = first_session();
	return s != NULL && s->dead;
}

static bool first_session_busy(void *arg)
{
	struct session *s = first_session();
	return s != NULL && session_job_running(s);
}

static void test_peer_gone(void)
{
	settings_begin("a peer that goes away while its job runs");
	env_start(1);
	struct blocker bl;

	/* POP3: the password check is queued behind the blocker when the
	 * session learns that its peer has gone (its reply to USER cannot
	 * be written). It stays until the job ends, and is freed then. */
	struct client *c = client_open(&pop3_protocol, "127.0.0.1");
	EXPECT_PREFIX(c, "+OK tern");
	blocker_start(&bl);
	client_send(c, "USER " ALICE "\r\nPASS " PASSWORD "\r\n");
	client_hangup(c);
	CHECK(run_until(session_dead, NULL, WAIT_MS));
	struct session *s = first_session();
	CHECK(s != NULL && s->job_running);
	run_for(20);
	CHECK_INT(session_registry_count(h.env.registry), 1);
	blocker_release(&bl);
	CHECK(run_until(registry_empty, NULL, WAIT_MS));
	CHECK(bl.done);
	blocker_deinit(&bl);
	client_free(&c);

	/* SMTP: the delivery job of a message whose sender has gone still
	 * completes (the message is stored), and the session is freed. */
	c = client_open(&smtp_protocol, "127.0.0.1");
	EXPECT_PREFIX(c, "220 ");
	client_send(c, "EHLO x\r\nMAIL FROM:<a@remote.example>\r\nRCPT TO:<" ALICE ">\r\n");
	expect_ehlo(c, true);
	EXPECT(c, "250 2.1.0 Ok");
	EXPECT(c, "250 2.1.5 Ok");
	blocker_start(&bl);
	client_send(c, "DATA\r\nSubject: gone\r\n\r\nbye\r\n.\r\n");
	client_hangup(c);
	CHECK(run_until(session_dead, NULL, WAIT_MS));
	s = first_session();
	CHECK(s != NULL && s->job_running);
	blocker_release(&bl);
	CHECK(run_until(registry_empty, NULL, WAIT_MS));
	blocker_deinit(&bl);
	CHECK_INT(alice_messages(), 3);
	client_free(&c);

	/* POP3 RETR of a message bigger than the socket holds: the peer
	 * stops reading, then goes away mid-message. */
	size_t big_len = 4 * 1024 * 1024;
	char *big = xmalloc(big_len + 1);
	for (size_t i = 0; i < big_len; i++)
		big[i] = i % 64 == 63 ? '\n' : i % 64 == 62 ? '\r' : (char)('a' + i % 26);
	big[big_len] = '\0';
	deliver(h.env.store, ALICE, "", big);
	free(big);
	for (int round = 0; round < 2; round++) {
		c = client_open(&pop3_protocol, "127.0.0.1");
		pop3_login(c, 4);
		client_send(c, "RETR 4\r\n");
		EXPECT_PREFIX(c, "+OK 4194304 octets");
		/* the session fills the socket, then waits for it to drain */
		client_stop_reading(c);
		run_for(30);
		s = first_session();
		CHECK(s != NULL && s->held && !s->job_running);
		/* round 0: gone while the session waits for the output to
		 * drain; round 1: while the next piece is being read */
		if (round == 1) {
			blocker_start(&bl);
			event_add(c->ev, NULL);
			CHECK(run_until(first_session_busy, NULL, WAIT_MS));
		}
		client_hangup(c);
		if (round == 1) {
			run_for(30);
			blocker_release(&bl);
		}
		CHECK(run_until(registry_empty, NULL, WAIT_MS));
		if (round == 1)
			blocker_deinit(&bl);
		client_free(&c);
	}
	env_stop();
}

/* --- shutdown --- */

/* Two logins from ip, which has a penalty: the session made last takes the
 * address's turn (the registry frees the newest first, so at shutdown the
 * one holding the turn goes before the one waiting for it). */
static void queue_two_logins(struct client **older, struct client **newer, const char *ip)
{
	*older = client_open(&pop3_protocol, ip);
	*newer = client_open(&pop3_protocol, ip);
	EXPECT_PREFIX(*older, "+OK tern");
	EXPECT_PREFIX(*newer, "+OK tern");
	client_send(*newer, "USER " ALICE "\r\nPASS " PASSWORD "\r\n");
	EXPECT(*newer, "+OK Send PASS");
	client_send(*older, "USER " ALICE "\r\nPASS " PASSWORD "\r\n");
	EXPECT(*older, "+OK Send PASS");
}

static void fail_login(const char *ip)
{
	struct client *c = client_open(&pop3_protocol, ip);
	EXPECT_PREFIX(c, "+OK tern");
	client_send(c, "USER " ALICE "\r\nPASS wrong\r\n");
	EXPECT(c, "+OK Send PASS");
	EXPECT(c, "-ERR [AUTH] Invalid user name or password");
	client_free(&c);
}

/* What the server does at the end: the pool stops (jobs in flight finish,
 * their done() is not called), then the registry frees every session,
 * whatever it was doing, and each connection is closed. */
static void shutdown_now(struct client **c, int n)
{
	for (int i = 0; i < n; i++) {
		event_free(c[i]->ev);
		c[i]->ev = NULL;
	}
	worker_pool_destroy(&h.env.pool);
	session_registry_destroy(&h.env.registry);
	CHECK(h.env.registry == NULL);
	event_free(h.tick);
	store_close(&h.env.store);
	auth_penalty_destroy(&h.env.penalty);
	auth_cache_destroy(&h.env.auth_cache);
	/* libevent closes a freed bufferevent's socket from the loop: the
	 * base's end closes them all */
	event_base_free(h.env.base);
	settings_free(&h.set);
	for (int i = 0; i < n; i++) {
		char tmp[4096];
		ssize_t r;
		while ((r = read(c[i]->fd, tmp, sizeof(tmp))) > 0)
			;
		CHECK(r == 0);
		client_free(&c[i]);
	}
}

static void test_shutdown(void)
{
	settings_begin("shutdown with sessions in every state");
	h.set->plaintext = PLAINTEXT_ALWAYS;
	h.set->auth_failure_delay_initial_ms = 2000;
	h.set->auth_failure_delay_max_ms = 2000;
	h.set->max_connections = 7;
	env_start(1);
	struct client *c[16];
	int n = 0;

	/* logged in, idle */
	c[n] = client_open(&pop3_protocol, "127.0.0.1");
	pop3_login(c[n++], 2);
	/* in the middle of DATA */
	c[n] = client_open(&smtp_protocol, "127.0.0.1");
	client_send(c[n], "EHLO x\r\nMAIL FROM:<>\r\nRCPT TO:<" ALICE ">\r\nDATA\r\nSubject: half\r\n");
	EXPECT_PREFIX(c[n], "220 ");
	expect_ehlo(c[n], true);
	EXPECT(c[n], "250 2.1.0 Ok");
	EXPECT(c[n], "250 2.1.5 Ok");
	EXPECT_PREFIX(c[n++], "354 ");
	/* inside a SASL exchange */
	c[n] = client_open(&smtp_protocol, "127.0.0.1");
	client_send(c[n], "EHLO x\r\nAUTH LOGIN\r\n");
	EXPECT_PREFIX(c[n], "220 ");
	expect_ehlo(c[n], true);
	EXPECT(c[n++], "334 VXNlcm5hbWU6");
	/* a penalised address: one login waiting out its penalty, one
	 * waiting for its turn */
	fail_login("192.0.2.50");
	queue_two_logins(&c[n], &c[n + 1], "192.0.2.50");
	n += 2;
	/* a job queued behind a busy worker */
	c[n] = client_open(&smtp_protocol, "127.0.0.1");
	EXPECT_PREFIX(c[n], "220 ");
	client_send(c[n], "EHLO x\r\nMAIL FROM:<>\r\n");
	expect_ehlo(c[n], true);
	EXPECT(c[n], "250 2.1.0 Ok");
	struct blocker bl;
	blocker_start(&bl);
	client_send(c[n++], "RCPT TO:<" ALICE ">\r\n");
	/* greeted, nothing sent */
	c[n] = client_open(&lmtp_protocol, "127.0.0.1");
	EXPECT_PREFIX(c[n++], "220 ");
	run_for(30);
	CHECK_INT(session_registry_count(h.env.registry), 7);
	/* refused, its refusal not yet sent */
	enum session_admit admit;
	c[n++] = client_open_admit(&pop3_protocol, "127.0.0.1", &admit);
	CHECK_INT(admit, SESSION_ADMIT_TOO_MANY);
	CHECK_INT(h.env.registry->refused_count, 1);

	blocker_release(&bl);
	shutdown_now(c, n);
	blocker_deinit(&bl);
}

/* Shutdown while a penalised address's logins wait, after its penalty
 * has expired: freeing the login that holds the turn must not start the
 * next one's check on the pool that has gone. */
static void test_shutdown_expired_penalty(void)
{
	settings_begin("shutdown after a queued address's penalty expired");
	h.set->plaintext = PLAINTEXT_ALWAYS;
	h.set->auth_failure_delay_initial_ms = 5000;
	h.set->auth_failure_delay_max_ms = 5000;
	h.set->auth_failure_reset_ms = 100;
	env_start(1);
	struct client *c[2];
	fail_login("192.0.2.60");
	queue_two_logins(&c[0], &c[1], "192.0.2.60");
	run_for(150);
	CHECK_INT(failures_of("192.0.2.60"), 0);
	CHECK_INT(session_registry_count(h.env.registry), 2);
	shutdown_now(c, 2);
}

/* --- metrics: a known workload moves the counters by exactly its amounts --- */

/* The value of one sample of metrics_render() (with the store's), or -1. */
static long long metric(const char *series)
{
	struct buf out;
	buf_init(&out, 0);
	metrics_render(&out);
	store_metrics_render(h.env.store, &out);
	char key[256];
	snprintf(key, sizeof(key), "\n%s ", series);
	const char *p = strstr(out.data, key);
	long long v = p != NULL ? strtoll(p + strlen(key), NULL, 10) : -1;
	buf_deinit(&out);
	return v;
}

/* A counter that may not exist yet counts 0. */
static long long count_of(const char *series)
{
	long long v = metric(series);
	return v < 0 ? 0 : v;
}

#define POP3_OK "tern_logins_total{protocol=\"pop3\",result=\"ok\"}"
#define POP3_FAILED "tern_logins_total{protocol=\"pop3\",result=\"failed\"}"
#define POP3_SESSIONS "tern_sessions_total{protocol=\"pop3\",tls=\"false\"}"
#define POP3_OPEN "tern_sessions_open{protocol=\"pop3\",tls=\"false\"}"
#define POP3_RETR "tern_commands_total{protocol=\"pop3\",verb=\"RETR\"}"
#define POP3_NOOP "tern_commands_total{protocol=\"pop3\",verb=\"NOOP\"}"
#define POP3_UNKNOWN "tern_commands_total{protocol=\"pop3\",verb=\"unknown\"}"
#define POP3_SENT "tern_sent_octets_total{protocol=\"pop3\"}"
#define SMTP_OK "tern_deliveries_total{protocol=\"smtp\",result=\"ok\"}"
#define SMTP_PERMFAIL "tern_deliveries_total{protocol=\"smtp\",result=\"permfail\"}"
#define SMTP_RECEIVED "tern_received_octets_total{protocol=\"smtp\"}"
#define SMTP_RCPT "tern_commands_total{protocol=\"smtp\",verb=\"RCPT\"}"
#define LMTP_OK "tern_deliveries_total{protocol=\"lmtp\",result=\"ok\"}"
#define DELIVER_CALLS "tern_store_operation_seconds_count{operation=\"deliver\"}"
/* RCPT reads a user once, for its existence and its own limits together. */
#define RCPT_USER_NOTFOUND "tern_store_errors_total{operation=\"quota_get\",status=\"notfound\"}"

static void test_metrics(void)
{
	settings_begin("metrics");
	env_start(2);
	long long ok = count_of(POP3_OK), failed = count_of(POP3_FAILED);
	long long sessions = count_of(POP3_SESSIONS), open = count_of(POP3_OPEN);
	long long retr = count_of(POP3_RETR), noop = count_of(POP3_NOOP);
	long long unknown = count_of(POP3_UNKNOWN), sent = count_of(POP3_SENT);
	long long smtp_ok = count_of(SMTP_OK), permfail = count_of(SMTP_PERMFAIL);
	long long received = count_of(SMTP_RECEIVED), rcpt = count_of(SMTP_RCPT);
	long long lmtp_ok = count_of(LMTP_OK), deliver_calls = count_of(DELIVER_CALLS);
	long long notfound = count_of(RCPT_USER_NOTFOUND);

	/* POP3: a failed login, a good one, RETR 1, an unknown verb (which
	 * must not become a label value), a lower-case verb. */
	struct client *c = client_open(&pop3_protocol, "127.0.0.1");
	EXPECT(c, "+OK tern POP3 server ready");
	client_send(c, "USER " ALICE "\r\nPASS wrong\r\n");
	EXPECT(c, "+OK Send PASS");
	EXPECT(c, "-ERR [AUTH] Invalid user name or password");
	CHECK_INT(metric(POP3_OPEN), open + 1);
	client_send(c, "USER " ALICE "\r\nPASS " PASSWORD "\r\n");
	EXPECT(c, "+OK Send PASS");
	EXPECT_PREFIX(c, "+OK Logged in, 2 messages");
	client_send(c, "XYZW\r\nnoop\r\nRETR 1\r\n");
	EXPECT(c, "-ERR Unknown command");
	EXPECT(c, "+OK");
	EXPECT_PREFIX(c, "+OK ");
	for (char *l; (l = client_line(c, NULL)) != NULL;) {
		bool end = strcmp(l, ".") == 0;
		free(l);
		if (end)
			break;
	}
	client_send(c, "QUIT\r\n");
	EXPECT(c, "+OK Bye");
	EXPECT_CLOSED(c);
	client_free(&c);
	CHECK(run_until(registry_empty, NULL, WAIT_MS));
	CHECK_INT(metric(POP3_OK), ok + 1);
	CHECK_INT(metric(POP3_FAILED), failed + 1);
	CHECK_INT(metric(POP3_SESSIONS), sessions + 1);
	CHECK_INT(metric(POP3_OPEN), open);
	CHECK_INT(metric(POP3_RETR), retr + 1);
	CHECK_INT(metric(POP3_NOOP), noop + 1);
	CHECK_INT(metric(POP3_UNKNOWN), unknown + 1);
	CHECK_INT(metric("tern_commands_total{protocol=\"pop3\",verb=\"XYZW\"}"), -1);
	/* message 1 as sent: two lines get a dot, then ".\r\n" */
	CHECK_INT(metric(POP3_SENT), sent + (long long)MSG1_SIZE + 2 + 3);

	/* SMTP: a message to two users, one to an unknown user (refused at
	 * RCPT: no delivery), one refused after DATA (bare CR). */
	const char *data = "Subject: m\r\n\r\n..dot\r\n.\r\n";
	c = client_open(&smtp_protocol, "127.0.0.1");
	EXPECT(c, "220 " HOSTNAME " ESMTP tern ready");
	client_send(c, "EHLO client.example\r\n");
	expect_ehlo(c, true);
	client_send(c, "MAIL FROM:<s@remote.example>\r\nRCPT TO:<" ALICE ">\r\n"
		       "RCPT TO:<nobody@" DOMAIN ">\r\nRCPT TO:<" BOB ">\r\nDATA\r\n");
	EXPECT(c, "250 2.1.0 Ok");
	EXPECT(c, "250 2.1.5 Ok");
	EXPECT_PREFIX(c, "550 5.1.1 ");
	EXPECT(c, "250 2.1.5 Ok");
	EXPECT_PREFIX(c, "354 ");
	client_send(c, data);
	EXPECT_PREFIX(c, "250 2.0.0 Ok: queued as ");
	client_send(c, "MAIL FROM:<>\r\nRCPT TO:<" BOB ">\r\nDATA\r\n");
	EXPECT(c, "250 2.1.0 Ok");
	EXPECT(c, "250 2.1.5 Ok");
	EXPECT_PREFIX(c, "354 ");
	client_send(c, "bare\rcr\r\n.\r\n");
	EXPECT_PREFIX(c, "550 5.6.0 ");
	client_send(c, "QUIT\r\n");
	EXPECT_PREFIX(c, "221 ");
	EXPECT_CLOSED(c);
	client_free(&c);
	CHECK_INT(metric(SMTP_OK), smtp_ok + 2);
	CHECK_INT(metric(SMTP_PERMFAIL), permfail + 1);
	CHECK_INT(metric(SMTP_RCPT), rcpt + 4);
	CHECK_INT(metric(SMTP_RECEIVED), received + (long long)strlen(data) + 12);
	CHECK_INT(metric(DELIVER_CALLS), deliver_calls + 1);
	CHECK_INT(metric(RCPT_USER_NOTFOUND), notfound + 1);

	/* LMTP: one delivery to alice. */
	c = client_open(&lmtp_protocol, "127.0.0.1");
	EXPECT(c, "220 " HOSTNAME " LMTP tern ready");
	client_send(c, "LHLO x\r\nMAIL FROM:<>\r\nRCPT TO:<" ALICE ">\r\nDATA\r\n");
	expect_ehlo(c, false);
	EXPECT(c, "250 2.1.0 Ok");
	EXPECT(c, "250 2.1.5 Ok");
	EXPECT_PREFIX(c, "354 ");
	client_send(c, data);
	EXPECT_PREFIX(c, "250 2.0.0 <" ALICE "> ");
	client_send(c, "QUIT\r\n");
	EXPECT_PREFIX(c, "221 ");
	EXPECT_CLOSED(c);
	client_free(&c);
	CHECK_INT(metric(LMTP_OK), lmtp_ok + 1);
	/* the mem store renders its kind only */
	CHECK_INT(metric("tern_store_info{backend=\"mem\",pop3_ids=\"messageid\"}"), 1);
	env_stop();
}

int main(void)
{
	signal(SIGPIPE, SIG_IGN);
	log_set_level(LOG_WARN);
	const char *t = getenv("TMPDIR");
	snprintf(tmpdir, sizeof(tmpdir), "%s/tern-test-session-XXXXXX",
		 t != NULL && *t != '\0' ? t : "/tmp");
	if (mkdtemp(tmpdir) == NULL) {
		perror("mkdtemp");
		return 2;
	}
	snprintf(ini_path, sizeof(ini_path), "%s/tern.ini", tmpdir);
	FILE *f = fopen(ini_path, "w");
	if (f == NULL) {
		perror(ini_path);
		return 2;
	}
	fputs("[server]\nhostname = " HOSTNAME "\n[store]\nbackend = mem\n", f);
	fclose(f);
	struct buf hb;
	buf_init(&hb, sizeof(hash) - 1);
	if (password_hash(PASSWORD, strlen(PASSWORD), &hb) < 0) {
		fprintf(stderr, "password_hash failed\n");
		return 2;
	}
	str_copy(hash, hb.data, sizeof(hash));
	buf_deinit(&hb);

	test_pop3_dialogue();
	test_smtp_dialogue();
	test_pipelining();
	test_bad_commands();
	test_admission();
	test_sasl_pop3();
	test_sasl_smtp();
	test_relay_holes();
	test_penalty();
	test_penalty_trusted();
	test_peer_gone();
	test_shutdown();
	test_shutdown_expired_penalty();
	test_metrics();

	unlink(ini_path);
	rmdir(tmpdir);
	TEST_MAIN_END();
}
