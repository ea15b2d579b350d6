/*
 * tern-loadgen: a single-process, epoll-driven load generator for POP3,
 * SMTP and LMTP servers on the loopback interface.
 *
 * Modes (the first argument):
 *   pop3    download sessions: USER/PASS, UIDL, LIST, RETR of every message
 *           (optionally DELE), QUIT; checks that UIDL and LIST agree, that
 *           every RETR carries exactly the octets LIST announced, and (with
 *           --expect) the number of messages.
 *   smtp    deliveries of fixed-size messages over SMTP (EHLO, MAIL, RCPT,
 *   lmtp    DATA) or LMTP (LHLO ...); every reply must be 2xx/354.
 *   idle    N authenticated POP3 sessions held open; prints "READY ..." when
 *           all are up, holds them for --hold seconds (or until SIGTERM or
 *           SIGUSR1), then checks each with NOOP and QUITs.
 *   bigbox  one session at a time: login + STAT + UIDL, timed, repeated.
 *
 * Every run is bounded: it stops starting work after --duration seconds or
 * --count units (sessions, messages, connections, repeats), lets work in
 * progress finish for at most --timeout seconds, and then closes everything.
 * Every operation has the same --timeout. It only ever connects to
 * 127.0.0.1 (source addresses may be spread over 127.0.0.0/8 with
 * --sources, to look like many clients).
 *
 * Output: human-readable lines, then one line starting with "RESULT " made
 * of key=value pairs, for scripts. Latencies are in milliseconds; op_* is
 * the RETR (pop3: command to final dot, also as retr_*) or the delivery
 * (smtp/lmtp: MAIL FROM to the 250 after the data). cpu_user_s and
 * cpu_sys_s are the load generator's own CPU time (getrusage), so that a
 * benchmark can tell the client's share from the server's.
 *
 * Invariants: one connection is owned by one struct conn; a conn's fd is -1
 * when it is not connected; callbacks that close or restart a conn return
 * -1 so the caller stops touching the bytes it was feeding it.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>

#define LINE_CAP 1024           /* status and listing lines we keep */
#define READ_CHUNK (256 * 1024) /* one shared read buffer */
#define MAX_ERR_PRINT 10

enum mode { MODE_POP3, MODE_SMTP, MODE_LMTP, MODE_IDLE, MODE_BIGBOX };

static const char *const mode_names[] = { "pop3", "smtp", "lmtp", "idle", "bigbox" };

struct options {
	enum mode mode;
	unsigned int port;
	unsigned int concurrency;
	double duration;
	uint64_t count;
	double timeout;
	double hold;
	const char *user_tmpl;
	const char *password;
	unsigned int users;
	unsigned int user_base;
	size_t msg_size;
	bool dele;
	long expect;
	double read_rate;
	unsigned int sources;
	const char *label;
	const char *sender;
};

/* Latency samples in microseconds. */
struct lat {
	uint32_t *v;
	size_t n, cap;
};

enum err_kind { ERR_CONNECT, ERR_PROTO, ERR_VERIFY, ERR_TIMEOUT, ERR_CLOSED, ERR_KINDS };
static const char *const err_names[] = { "connect", "proto", "verify", "timeout", "closed" };

struct stats {
	struct lat login, session, delivery, stat, uidl, total;
	uint64_t sessions_done, messages, bytes, listed;
	uint64_t held, noop_ok, unfinished;
	uint64_t errors[ERR_KINDS];
	unsigned int err_printed;
};

/* What the reader is waiting for. */
enum rd { RD_NONE, RD_LINE, RD_MULTI };

/* Byte states of the multi-line (dot-terminated) reader. */
enum ml { ML_BOL, ML_DOT, ML_DOT_CR, ML_MID, ML_MID_CR };

enum phase {
	P_CONNECTING,
	P_GREETING,
	/* POP3 */
	P_USER, P_PASS, P_STAT, P_UIDL, P_UIDL_DATA, P_LIST, P_LIST_DATA,
	P_RETR, P_RETR_DATA, P_DELE, P_IDLE, P_NOOP, P_QUIT,
	/* SMTP / LMTP */
	P_EHLO, P_MAIL, P_RCPT, P_DATA, P_DOT, P_SQUIT,
};

struct conn {
	int fd;
	unsigned int idx;
	enum phase phase;
	enum rd rd;
	bool want_lines;        /* RD_MULTI: hand each line to the protocol */
	enum ml ml;
	uint64_t ml_octets;     /* un-stuffed octets of the current multi-line body */
	char line[LINE_CAP];
	size_t line_len;
	bool line_long;

	char *out;
	size_t out_len, out_off, out_cap;
	bool want_out;
	bool paused;            /* read-rate limit: EPOLLIN off for now */

	unsigned int user;
	uint64_t t_start, t_op, t_login, deadline, restart_at;
	uint64_t n_uidl;
	uint64_t n_list;
	uint64_t *sizes;
	size_t sizes_cap;
	uint64_t retr_next;
	uint64_t stat_count;
	uint64_t msg_index;
};

static struct options opt;
static struct stats st;
static struct conn *conns;
static unsigned int nconns;
static int epfd;
static uint64_t t_begin, t_stop_starting, t_hard_stop;
static uint64_t started_units;  /* sessions, messages or connections begun */
static bool stopping;
static volatile sig_atomic_t got_signal;
static char *rbuf;
static double read_budget;     /* --read-rate token bucket, octets */
static uint64_t read_budget_t;
static bool ready_printed;

static uint64_t now_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static void *xrealloc(void *p, size_t n)
{
	void *q = realloc(p, n ? n : 1);
	if (q == NULL) {
		fprintf(stderr, "tern-loadgen: out of memory\n");
		exit(2);
	}
	return q;
}

static void lat_add(struct lat *l, uint64_t us)
{
	if (l->n == l->cap) {
		l->cap = l->cap ? l->cap * 2 : 1024;
		l->v = xrealloc(l->v, l->cap * sizeof(*l->v));
	}
	l->v[l->n++] = us > UINT32_MAX ? UINT32_MAX : (uint32_t)us;
}

static int cmp_u32(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
	return x < y ? -1 : x > y;
}

/* Nearest-rank percentile, in milliseconds; 0 when there is no sample. */
static double lat_pct(struct lat *l, double p)
{
	if (l->n == 0)
		return 0;
	size_t rank = (size_t)(p / 100.0 * (double)l->n + 0.999999);
	if (rank < 1)
		rank = 1;
	if (rank > l->n)
		rank = l->n;
	return l->v[rank - 1] / 1000.0;
}

static void lat_sort(struct lat *l)
{
	if (l->n > 1)
		qsort(l->v, l->n, sizeof(*l->v), cmp_u32);
}

static void conn_close(struct conn *c);
static void conn_start(struct conn *c);
static int proto_line(struct conn *c, const char *line, size_t len);
static int proto_ml_line(struct conn *c, const char *line, size_t len);
static int proto_ml_end(struct conn *c);

__attribute__((format(printf, 3, 4)))
static void fail(struct conn *c, enum err_kind kind, const char *fmt, ...)
{
	st.errors[kind]++;
	if (st.err_printed < MAX_ERR_PRINT) {
		va_list ap;
		st.err_printed++;
		fprintf(stderr, "tern-loadgen: conn %u: %s error: ", c->idx, err_names[kind]);
		va_start(ap, fmt);
		vfprintf(stderr, fmt, ap);
		va_end(ap);
		fputc('\n', stderr);
	}
	conn_close(c);
	/* Back off a little so a refusing server is not hammered in a loop. */
	c->restart_at = now_us() + 10000;
}

static void set_events(struct conn *c)
{
	struct epoll_event ev = { 0 };
	ev.events = (c->paused ? 0 : EPOLLIN) | (c->want_out || c->phase == P_CONNECTING ? EPOLLOUT : 0);
	ev.data.ptr = c;
	if (epoll_ctl(epfd, EPOLL_CTL_MOD, c->fd, &ev) != 0) {
		perror("tern-loadgen: epoll_ctl");
		exit(2);
	}
}

/* Writes what it can; the rest waits for EPOLLOUT. */
static int conn_flush(struct conn *c)
{
	while (c->out_off < c->out_len) {
		ssize_t n = write(c->fd, c->out + c->out_off, c->out_len - c->out_off);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN) {
				if (!c->want_out) {
					c->want_out = true;
					set_events(c);
				}
				return 0;
			}
			fail(c, ERR_CLOSED, "write: %s", strerror(errno));
			return -1;
		}
		c->out_off += (size_t)n;
	}
	c->out_off = c->out_len = 0;
	if (c->want_out) {
		c->want_out = false;
		set_events(c);
	}
	return 0;
}

static void out_append(struct conn *c, const void *data, size_t len)
{
	if (c->out_len + len > c->out_cap) {
		size_t cap = c->out_cap ? c->out_cap : 256;
		while (cap < c->out_len + len)
			cap *= 2;
		c->out = xrealloc(c->out, cap);
		c->out_cap = cap;
	}
	memcpy(c->out + c->out_len, data, len);
	c->out_len += len;
}

__attribute__((format(printf, 2, 3)))
static int sendf(struct conn *c, const char *fmt, ...)
{
	char tmp[LINE_CAP];
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(tmp, sizeof(tmp), fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= sizeof(tmp)) {
		fprintf(stderr, "tern-loadgen: command too long\n");
		exit(2);
	}
	out_append(c, tmp, (size_t)n);
	c->t_op = now_us();
	c->deadline = c->t_op + (uint64_t)(opt.timeout * 1e6);
	return conn_flush(c);
}

/* Expands "{n}" in a template with the user number. */
static void user_name(char *dst, size_t cap, const char *tmpl, unsigned int n)
{
	const char *p = strstr(tmpl, "{n}");
	if (p == NULL) {
		snprintf(dst, cap, "%s", tmpl);
		return;
	}
	snprintf(dst, cap, "%.*s%u%s", (int)(p - tmpl), tmpl, n, p + 3);
}

/* ---- reading ---- */

/* Feeds bytes of a dot-terminated body to the multi-line reader. Returns the
 * number of bytes consumed, or -1 when the conn was closed or restarted. */
static ssize_t feed_multi(struct conn *c, const char *p, size_t len)
{
	size_t i = 0;
	while (i < len) {
		char ch = p[i];
		switch (c->ml) {
		case ML_MID: {
			/* Fast path: the run up to the next CR at once (copied
			 * into the line, as far as it holds, when lines are
			 * wanted). */
			const char *cr = memchr(p + i, '\r', len - i);
			size_t run = cr ? (size_t)(cr - (p + i)) : len - i;
			if (c->want_lines) {
				size_t room = LINE_CAP - 1 - c->line_len;
				size_t take = run < room ? run : room;
				memcpy(c->line + c->line_len, p + i, take);
				c->line_len += take;
			}
			c->ml_octets += run;
			i += run;
			if (cr == NULL)
				continue;
			c->ml_octets++; /* the CR */
			c->ml = ML_MID_CR;
			i++;
			break;
		}
		case ML_MID_CR:
			c->ml_octets++;
			i++;
			if (ch == '\n') {
				c->ml = ML_BOL;
				if (c->want_lines) {
					c->line[c->line_len] = '\0';
					if (proto_ml_line(c, c->line, c->line_len) < 0)
						return -1;
					c->line_len = 0;
				}
			} else if (ch != '\r') {
				c->ml = ML_MID;
				if (c->want_lines && c->line_len < LINE_CAP - 2) {
					c->line[c->line_len++] = '\r';
					c->line[c->line_len++] = ch;
				}
			}
			break;
		case ML_BOL:
			if (ch == '.') {
				c->ml = ML_DOT;
				i++;
				break;
			}
			c->ml = ML_MID;
			break; /* reprocess as ML_MID */
		case ML_DOT:
			if (ch == '\r') {
				c->ml = ML_DOT_CR;
				i++;
				break;
			}
			/* A stuffed dot: the first one is not part of the message. */
			c->ml = ML_MID;
			break;
		case ML_DOT_CR:
			if (ch == '\n') {
				i++;
				c->rd = RD_NONE;
				if (proto_ml_end(c) < 0)
					return -1;
				return (ssize_t)i;
			}
			/* ".\r" then something else: the CR belongs to the line. */
			c->ml_octets++;
			c->ml = ML_MID_CR;
			break;
		}
	}
	return (ssize_t)i;
}

/* Feeds bytes to the status-line reader. */
static ssize_t feed_line(struct conn *c, const char *p, size_t len)
{
	const char *nl = memchr(p, '\n', len);
	size_t take = nl ? (size_t)(nl - p) + 1 : len;
	size_t room = LINE_CAP - 1 - c->line_len;
	if (take > room) {
		memcpy(c->line + c->line_len, p, room);
		c->line_len += room;
		c->line_long = true;
	} else {
		memcpy(c->line + c->line_len, p, take);
		c->line_len += take;
	}
	if (nl == NULL)
		return (ssize_t)take;
	size_t l = c->line_len;
	while (l > 0 && (c->line[l - 1] == '\n' || c->line[l - 1] == '\r'))
		l--;
	c->line[l] = '\0';
	c->line_len = 0;
	c->rd = RD_NONE;
	if (c->line_long) {
		c->line_long = false;
		fail(c, ERR_PROTO, "reply line over %d octets", LINE_CAP);
		return -1;
	}
	if (proto_line(c, c->line, l) < 0)
		return -1;
	return (ssize_t)take;
}

static void expect_line(struct conn *c)
{
	c->rd = RD_LINE;
	c->line_len = 0;
}

static void expect_multi(struct conn *c, bool lines)
{
	c->rd = RD_MULTI;
	c->want_lines = lines;
	c->ml = ML_BOL;
	c->ml_octets = 0;
	c->line_len = 0;
}

static void conn_read(struct conn *c)
{
	size_t want = READ_CHUNK;
	if (opt.read_rate > 0) {
		uint64_t t = now_us();
		read_budget += (double)(t - read_budget_t) / 1e6 * opt.read_rate;
		if (read_budget > opt.read_rate / 10 + 65536)
			read_budget = opt.read_rate / 10 + 65536;
		read_budget_t = t;
		if (read_budget < 1) {
			c->paused = true;
			set_events(c);
			return;
		}
		if (want > (size_t)read_budget)
			want = (size_t)read_budget;
	}
	ssize_t n = read(c->fd, rbuf, want);
	if (n < 0) {
		if (errno == EAGAIN || errno == EINTR)
			return;
		fail(c, ERR_CLOSED, "read: %s", strerror(errno));
		return;
	}
	if (n == 0) {
		fail(c, ERR_CLOSED, "server closed the connection in phase %d", (int)c->phase);
		return;
	}
	if (opt.read_rate > 0)
		read_budget -= (double)n;
	size_t off = 0;
	int fd = c->fd;
	while (off < (size_t)n) {
		ssize_t used;
		if (c->fd != fd)
			return;
		if (c->rd == RD_LINE)
			used = feed_line(c, rbuf + off, (size_t)n - off);
		else if (c->rd == RD_MULTI)
			used = feed_multi(c, rbuf + off, (size_t)n - off);
		else {
			fail(c, ERR_PROTO, "unexpected data from the server in phase %d", (int)c->phase);
			return;
		}
		if (used < 0)
			return;
		off += (size_t)used;
	}
}

/* ---- sessions ---- */

static bool may_start(void)
{
	if (stopping || got_signal)
		return false;
	if (now_us() >= t_stop_starting)
		return false;
	if (opt.count && started_units >= opt.count)
		return false;
	return true;
}

static void conn_close(struct conn *c)
{
	if (c->fd >= 0) {
		epoll_ctl(epfd, EPOLL_CTL_DEL, c->fd, NULL);
		close(c->fd);
	}
	c->fd = -1;
	c->rd = RD_NONE;
	c->out_len = c->out_off = 0;
	c->want_out = false;
	c->paused = false;
	c->deadline = 0;
	c->restart_at = 0;
}

/* A session finished cleanly: close it and, when allowed, begin the next. */
static int session_done(struct conn *c)
{
	uint64_t t = now_us();
	lat_add(&st.session, t - c->t_start);
	st.sessions_done++;
	conn_close(c);
	if (opt.mode != MODE_IDLE)
		conn_start(c);
	return -1;
}

static void conn_start(struct conn *c)
{
	if (!may_start())
		return;
	/* Delivery modes count messages, the others sessions. */
	if (opt.mode != MODE_SMTP && opt.mode != MODE_LMTP)
		started_units++;
	c->t_start = now_us();
	c->restart_at = 0;
	c->line_len = 0;
	c->line_long = false;
	c->n_uidl = c->n_list = c->retr_next = c->stat_count = 0;
	if (opt.mode == MODE_SMTP || opt.mode == MODE_LMTP)
		c->user = 0;
	else
		c->user = opt.user_base + (unsigned int)((started_units - 1) % opt.users);

	int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		st.errors[ERR_CONNECT]++;
		if (st.err_printed++ < MAX_ERR_PRINT)
			fprintf(stderr, "tern-loadgen: socket: %s\n", strerror(errno));
		c->restart_at = now_us() + 100000;
		return;
	}
	int one = 1;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if (opt.sources > 1) {
		struct sockaddr_in src = { .sin_family = AF_INET };
		src.sin_addr.s_addr = htonl(0x7f000001u + (uint32_t)(started_units % opt.sources));
		setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof(one));
		if (bind(fd, (struct sockaddr *)&src, sizeof(src)) != 0) {
			st.errors[ERR_CONNECT]++;
			if (st.err_printed++ < MAX_ERR_PRINT)
				fprintf(stderr, "tern-loadgen: bind: %s\n", strerror(errno));
			close(fd);
			c->restart_at = now_us() + 100000;
			return;
		}
	}
	struct sockaddr_in sa = { .sin_family = AF_INET };
	sa.sin_port = htons((uint16_t)opt.port);
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	c->fd = fd;
	c->phase = P_CONNECTING;
	c->rd = RD_NONE;
	c->t_op = c->t_start;
	c->deadline = c->t_start + (uint64_t)(opt.timeout * 1e6);
	struct epoll_event ev = { .events = EPOLLOUT, .data.ptr = c };
	if (epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev) != 0) {
		perror("tern-loadgen: epoll_ctl");
		exit(2);
	}
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0 && errno != EINPROGRESS) {
		fail(c, ERR_CONNECT, "connect: %s", strerror(errno));
		return;
	}
}

static void conn_connected(struct conn *c)
{
	int err = 0;
	socklen_t len = sizeof(err);
	if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0 || err != 0) {
		fail(c, ERR_CONNECT, "connect: %s", strerror(err ? err : errno));
		return;
	}
	c->phase = P_GREETING;
	set_events(c);
	expect_line(c);
}

/* Appends `len` octets (at least 2) of body text: lines of letters and
 * digits, each ending in CRLF, none starting with a dot. */
static void append_body(struct conn *c, size_t len, uint64_t seed)
{
	static const char alphabet[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
	char line[80];
	size_t left = len;
	unsigned int k = (unsigned int)seed;
	while (left >= 2) {
		size_t n = left >= 78 ? 76 : left - 2;
		if (left - (n + 2) == 1)
			n--;
		for (size_t j = 0; j < n; j++)
			line[j] = alphabet[(k + j) % (sizeof(alphabet) - 1)];
		line[n] = '\r';
		line[n + 1] = '\n';
		out_append(c, line, n + 2);
		left -= n + 2;
		k++;
	}
}

/* Appends a message of exactly opt.msg_size octets (or its header and an
 * empty line, when that is larger) and the end-of-data line. The same
 * index gives the same message, so two servers can be given identical
 * mail. */
static void append_message(struct conn *c, const char *rcpt)
{
	char hdr[512];
	int n = snprintf(hdr, sizeof(hdr),
			 "From: Load Generator <%s>\r\n"
			 "To: <%s>\r\n"
			 "Subject: benchmark message %" PRIu64 "\r\n"
			 "Message-ID: <bench.%" PRIu64 "@loadgen.invalid>\r\n"
			 "Date: Mon, 1 Jan 2024 00:00:00 +0000\r\n"
			 "MIME-Version: 1.0\r\n"
			 "Content-Type: text/plain; charset=us-ascii\r\n"
			 "\r\n",
			 opt.sender, rcpt, c->msg_index, c->msg_index);
	size_t hlen = n > 0 && (size_t)n < sizeof(hdr) ? (size_t)n : 0;
	out_append(c, hdr, hlen);
	append_body(c, opt.msg_size > hlen + 2 ? opt.msg_size - hlen : 2, c->msg_index);
	out_append(c, ".\r\n", 3);
}

static bool ok_pop3(const char *line)
{
	return strncmp(line, "+OK", 3) == 0;
}

static int smtp_code(const char *line)
{
	if (strlen(line) < 3 || line[0] < '1' || line[0] > '5')
		return -1;
	return (line[0] - '0') * 100 + (line[1] - '0') * 10 + (line[2] - '0');
}

static int next_delivery(struct conn *c)
{
	if (!may_start()) {
		c->phase = P_SQUIT;
		expect_line(c);
		return sendf(c, "QUIT\r\n");
	}
	c->msg_index = started_units++;
	c->user = opt.user_base + (unsigned int)(c->msg_index % opt.users);
	c->phase = P_MAIL;
	expect_line(c);
	uint64_t t = now_us();
	int r = sendf(c, "MAIL FROM:<%s>\r\n", opt.sender);
	c->t_login = t; /* start of this delivery */
	return r;
}

static int pop3_next_retr(struct conn *c)
{
	if (c->retr_next > c->n_list) {
		c->phase = P_QUIT;
		expect_line(c);
		return sendf(c, "QUIT\r\n");
	}
	c->phase = P_RETR;
	expect_line(c);
	return sendf(c, "RETR %" PRIu64 "\r\n", c->retr_next);
}

static int proto_line_pop3(struct conn *c, const char *line)
{
	char name[512];
	bool ok = ok_pop3(line);
	switch (c->phase) {
	case P_GREETING:
		if (!ok)
			break;
		user_name(name, sizeof(name), opt.user_tmpl, c->user);
		c->phase = P_USER;
		expect_line(c);
		return sendf(c, "USER %s\r\n", name);
	case P_USER:
		if (!ok)
			break;
		c->phase = P_PASS;
		expect_line(c);
		return sendf(c, "PASS %s\r\n", opt.password);
	case P_PASS: {
		if (!ok)
			break;
		uint64_t t = now_us();
		lat_add(&st.login, t - c->t_start);
		c->t_login = t;
		if (opt.mode == MODE_IDLE) {
			c->phase = P_IDLE;
			c->deadline = 0;
			st.held++;
			return 0;
		}
		if (opt.mode == MODE_BIGBOX) {
			c->phase = P_STAT;
			expect_line(c);
			return sendf(c, "STAT\r\n");
		}
		c->phase = P_UIDL;
		expect_line(c);
		return sendf(c, "UIDL\r\n");
	}
	case P_STAT: {
		if (!ok)
			break;
		unsigned long long n = 0, sz = 0;
		if (sscanf(line, "+OK %llu %llu", &n, &sz) != 2) {
			fail(c, ERR_PROTO, "bad STAT reply: %.80s", line);
			return -1;
		}
		c->stat_count = n;
		uint64_t t = now_us();
		lat_add(&st.stat, t - c->t_login);
		c->t_op = t;
		c->phase = P_UIDL;
		expect_line(c);
		return sendf(c, "UIDL\r\n");
	}
	case P_UIDL:
		if (!ok)
			break;
		c->phase = P_UIDL_DATA;
		expect_multi(c, true);
		return 0;
	case P_LIST:
		if (!ok)
			break;
		c->phase = P_LIST_DATA;
		expect_multi(c, true);
		return 0;
	case P_RETR:
		if (!ok)
			break;
		c->phase = P_RETR_DATA;
		expect_multi(c, false);
		return 0;
	case P_DELE:
		if (!ok)
			break;
		c->retr_next++;
		return pop3_next_retr(c);
	case P_NOOP:
		if (!ok)
			break;
		st.noop_ok++;
		c->phase = P_QUIT;
		expect_line(c);
		return sendf(c, "QUIT\r\n");
	case P_QUIT:
		if (!ok)
			break;
		return session_done(c);
	default:
		fail(c, ERR_PROTO, "reply in phase %d: %.80s", (int)c->phase, line);
		return -1;
	}
	fail(c, ERR_PROTO, "phase %d: %.120s", (int)c->phase, line);
	return -1;
}

static int proto_line_smtp(struct conn *c, const char *line)
{
	int code = smtp_code(line);
	if (code < 0) {
		fail(c, ERR_PROTO, "bad reply: %.80s", line);
		return -1;
	}
	bool cont = strlen(line) > 3 && line[3] == '-';
	char rcpt[512];
	switch (c->phase) {
	case P_GREETING:
		if (code != 220)
			break;
		c->phase = P_EHLO;
		expect_line(c);
		return sendf(c, "%s loadgen.invalid\r\n", opt.mode == MODE_LMTP ? "LHLO" : "EHLO");
	case P_EHLO:
		if (code != 250)
			break;
		if (cont) {
			expect_line(c);
			return 0;
		}
		return next_delivery(c);
	case P_MAIL:
		if (code != 250)
			break;
		user_name(rcpt, sizeof(rcpt), opt.user_tmpl, c->user);
		c->phase = P_RCPT;
		expect_line(c);
		return sendf(c, "RCPT TO:<%s>\r\n", rcpt);
	case P_RCPT:
		if (code != 250 && code != 251)
			break;
		c->phase = P_DATA;
		expect_line(c);
		return sendf(c, "DATA\r\n");
	case P_DATA:
		if (code != 354)
			break;
		user_name(rcpt, sizeof(rcpt), opt.user_tmpl, c->user);
		append_message(c, rcpt);
		c->phase = P_DOT;
		expect_line(c);
		c->deadline = now_us() + (uint64_t)(opt.timeout * 1e6);
		return conn_flush(c);
	case P_DOT: {
		if (code != 250)
			break;
		uint64_t t = now_us();
		lat_add(&st.delivery, t - c->t_login);
		st.messages++;
		st.bytes += opt.msg_size;
		return next_delivery(c);
	}
	case P_SQUIT:
		if (code != 221)
			break;
		return session_done(c);
	default:
		break;
	}
	fail(c, ERR_PROTO, "phase %d: %.120s", (int)c->phase, line);
	return -1;
}

static int proto_line(struct conn *c, const char *line, size_t len)
{
	(void)len;
	if (opt.mode == MODE_SMTP || opt.mode == MODE_LMTP)
		return proto_line_smtp(c, line);
	return proto_line_pop3(c, line);
}

/* A decimal number at *p (at least one digit), *p moved past it; without
 * sscanf, which on a 100,000-line UIDL made the load generator the slower
 * side of the measurement. */
static bool parse_number(const char **p, unsigned long long *v_r)
{
	const char *s = *p;
	unsigned long long v = 0;
	while (*s >= '0' && *s <= '9' && s - *p < 19)
		v = v * 10 + (unsigned long long)(*s++ - '0');
	if (s == *p)
		return false;
	*p = s;
	*v_r = v;
	return true;
}

/* RFC 1939: 1 to 70 characters from 0x21 to 0x7E, and nothing after. */
static bool uidl_valid(const char *u)
{
	size_t n = 0;
	for (; u[n] != '\0'; n++)
		if ((unsigned char)u[n] < 0x21 || (unsigned char)u[n] > 0x7e || n == 70)
			return false;
	return n > 0;
}

static int proto_ml_line(struct conn *c, const char *line, size_t len)
{
	(void)len;
	unsigned long long n = 0, v = 0;
	if (c->phase == P_UIDL_DATA) {
		if (!parse_number(&line, &n) || *line++ != ' ' || !uidl_valid(line) ||
		    n != c->n_uidl + 1) {
			fail(c, ERR_PROTO, "bad UIDL line %" PRIu64 ": %.80s", c->n_uidl + 1, line);
			return -1;
		}
		c->n_uidl++;
		return 0;
	}
	if (c->phase == P_LIST_DATA) {
		if (!parse_number(&line, &n) || *line++ != ' ' || !parse_number(&line, &v) ||
		    *line != '\0' || n != c->n_list + 1) {
			fail(c, ERR_PROTO, "bad LIST line: %.80s", line);
			return -1;
		}
		if (c->n_list + 1 >= c->sizes_cap) {
			c->sizes_cap = c->sizes_cap ? c->sizes_cap * 2 : 128;
			c->sizes = xrealloc(c->sizes, c->sizes_cap * sizeof(*c->sizes));
		}
		c->sizes[++c->n_list] = v;
		return 0;
	}
	fail(c, ERR_PROTO, "unexpected multi-line data in phase %d", (int)c->phase);
	return -1;
}

static int proto_ml_end(struct conn *c)
{
	uint64_t t = now_us();
	switch (c->phase) {
	case P_UIDL_DATA:
		if (opt.mode == MODE_BIGBOX) {
			lat_add(&st.uidl, t - c->t_op);
			lat_add(&st.total, t - c->t_start);
			st.listed += c->n_uidl;
			if (c->n_uidl != c->stat_count ||
			    (opt.expect >= 0 && c->n_uidl != (uint64_t)opt.expect)) {
				fail(c, ERR_VERIFY, "STAT says %" PRIu64 " messages, UIDL lists %" PRIu64 " (expected %ld)",
				     c->stat_count, c->n_uidl, opt.expect);
				return -1;
			}
			c->phase = P_QUIT;
			expect_line(c);
			return sendf(c, "QUIT\r\n");
		}
		c->phase = P_LIST;
		expect_line(c);
		return sendf(c, "LIST\r\n");
	case P_LIST_DATA:
		if (c->n_list != c->n_uidl) {
			fail(c, ERR_VERIFY, "UIDL lists %" PRIu64 " messages, LIST %" PRIu64, c->n_uidl, c->n_list);
			return -1;
		}
		if (opt.expect >= 0 && c->n_list != (uint64_t)opt.expect) {
			fail(c, ERR_VERIFY, "%" PRIu64 " messages listed, expected %ld", c->n_list, opt.expect);
			return -1;
		}
		st.listed += c->n_list;
		c->retr_next = 1;
		return pop3_next_retr(c);
	case P_RETR_DATA:
		if (c->ml_octets != c->sizes[c->retr_next]) {
			fail(c, ERR_VERIFY, "RETR %" PRIu64 " sent %" PRIu64 " octets, LIST said %" PRIu64,
			     c->retr_next, c->ml_octets, c->sizes[c->retr_next]);
			return -1;
		}
		st.messages++;
		st.bytes += c->ml_octets;
		lat_add(&st.delivery, t - c->t_op);
		if (opt.dele) {
			c->phase = P_DELE;
			expect_line(c);
			return sendf(c, "DELE %" PRIu64 "\r\n", c->retr_next);
		}
		c->retr_next++;
		return pop3_next_retr(c);
	default:
		fail(c, ERR_PROTO, "end of multi-line data in phase %d", (int)c->phase);
		return -1;
	}
}

/* ---- main loop ---- */

static void on_signal(int sig)
{
	got_signal = sig;
}

static void raise_nofile(unsigned int need)
{
	struct rlimit rl;
	if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
		return;
	rlim_t want = (rlim_t)need + 64;
	if (rl.rlim_cur >= want)
		return;
	if (rl.rlim_max < want) {
		struct rlimit hard = { want, want };
		if (setrlimit(RLIMIT_NOFILE, &hard) == 0)
			return;
	}
	rl.rlim_cur = rl.rlim_max < want ? rl.rlim_max : want;
	setrlimit(RLIMIT_NOFILE, &rl);
	getrlimit(RLIMIT_NOFILE, &rl);
	if (rl.rlim_cur < want)
		fprintf(stderr, "tern-loadgen: open file limit %llu is below the %llu needed\n",
			(unsigned long long)rl.rlim_cur, (unsigned long long)want);
}

static unsigned int active_conns(void)
{
	unsigned int n = 0;
	for (unsigned int i = 0; i < nconns; i++)
		if (conns[i].fd >= 0 && conns[i].phase != P_IDLE)
			n++;
	return n;
}

/* Idle mode: keep at most `concurrency` logins in progress until `count`
 * sessions are up. */
static void idle_fill(void)
{
	unsigned int busy = 0;
	for (unsigned int i = 0; i < nconns; i++)
		if (conns[i].fd >= 0 && conns[i].phase != P_IDLE)
			busy++;
	for (unsigned int i = 0; i < nconns && busy < opt.concurrency; i++) {
		struct conn *c = &conns[i];
		if (c->fd >= 0 || (c->restart_at && now_us() < c->restart_at))
			continue;
		if (c->phase == P_IDLE)
			continue;
		if (!may_start())
			break;
		conn_start(c);
		if (c->fd >= 0)
			busy++;
	}
}

static void check_timers(void)
{
	uint64_t t = now_us();
	for (unsigned int i = 0; i < nconns; i++) {
		struct conn *c = &conns[i];
		if (c->fd >= 0 && c->deadline && t > c->deadline) {
			fail(c, ERR_TIMEOUT, "no reply within %.1f s in phase %d", opt.timeout, (int)c->phase);
			continue;
		}
		if (c->fd >= 0 && c->paused && opt.read_rate > 0) {
			c->paused = false;
			set_events(c);
		}
		if (c->fd < 0 && c->restart_at && t >= c->restart_at && opt.mode != MODE_IDLE) {
			c->restart_at = 0;
			conn_start(c);
		}
	}
}

static void run_loop(void)
{
	struct epoll_event evs[256];
	uint64_t next_timer = 0;
	bool holding = false;
	uint64_t hold_until = 0;
	while (true) {
		uint64_t t = now_us();
		if (t >= t_hard_stop)
			break;
		if (opt.mode == MODE_IDLE) {
			if (!holding && !stopping)
				idle_fill();
			unsigned int busy = active_conns();
			bool all_started = !may_start() || started_units >= opt.count;
			if (!holding && !stopping && all_started && busy == 0) {
				holding = true;
				hold_until = now_us() + (uint64_t)(opt.hold * 1e6);
				printf("READY held=%" PRIu64 " failed=%" PRIu64 "\n", st.held,
				       st.errors[ERR_CONNECT] + st.errors[ERR_PROTO] + st.errors[ERR_TIMEOUT] + st.errors[ERR_CLOSED]);
				fflush(stdout);
				ready_printed = true;
				t_hard_stop = hold_until + (uint64_t)(opt.timeout * 1e6) + 1000000;
			}
			if (holding && !stopping && (now_us() >= hold_until || got_signal)) {
				stopping = true;
				t_hard_stop = now_us() + (uint64_t)(opt.timeout * 1e6) + 1000000;
				for (unsigned int i = 0; i < nconns; i++) {
					struct conn *c = &conns[i];
					if (c->fd >= 0 && c->phase == P_IDLE) {
						c->phase = P_NOOP;
						expect_line(c);
						sendf(c, "NOOP\r\n");
					}
				}
			}
			if (stopping && active_conns() == 0)
				break;
			if (!holding && got_signal)
				break;
		} else {
			if (got_signal)
				stopping = true;
			bool any = false;
			for (unsigned int i = 0; i < nconns && !any; i++)
				if (conns[i].fd >= 0 || (conns[i].restart_at && may_start()))
					any = true;
			if (!any)
				break;
		}
		int tmo = 50;
		if (opt.read_rate > 0)
			tmo = 5;
		int n = epoll_wait(epfd, evs, 256, tmo);
		if (n < 0 && errno != EINTR) {
			perror("tern-loadgen: epoll_wait");
			exit(2);
		}
		for (int i = 0; i < n; i++) {
			struct conn *c = evs[i].data.ptr;
			if (c->fd < 0)
				continue;
			if (c->phase == P_CONNECTING) {
				if (evs[i].events & (EPOLLOUT | EPOLLERR | EPOLLHUP))
					conn_connected(c);
				continue;
			}
			if (evs[i].events & EPOLLOUT) {
				if (conn_flush(c) < 0)
					continue;
			}
			if (evs[i].events & (EPOLLIN | EPOLLERR | EPOLLHUP))
				conn_read(c);
		}
		t = now_us();
		if (t >= next_timer) {
			check_timers();
			next_timer = t + (opt.read_rate > 0 ? 5000 : 50000);
		}
	}
	for (unsigned int i = 0; i < nconns; i++) {
		if (conns[i].fd >= 0) {
			st.unfinished++;
			conn_close(&conns[i]);
		}
	}
}

static double tv_s(struct timeval tv)
{
	return (double)tv.tv_sec + (double)tv.tv_usec / 1e6;
}

static void report(void)
{
	double elapsed = (double)(now_us() - t_begin) / 1e6;
	uint64_t errors = 0;
	for (int k = 0; k < ERR_KINDS; k++)
		errors += st.errors[k];
	lat_sort(&st.login);
	lat_sort(&st.session);
	lat_sort(&st.delivery);
	lat_sort(&st.stat);
	lat_sort(&st.uidl);
	lat_sort(&st.total);
	double mps = elapsed > 0 ? (double)st.messages / elapsed : 0;
	const char *op = opt.mode == MODE_POP3 ? "retr" : "delivery";
	struct rusage ru;
	memset(&ru, 0, sizeof(ru));
	getrusage(RUSAGE_SELF, &ru);
	char retr[96] = "";
	if (opt.mode == MODE_POP3)
		snprintf(retr, sizeof(retr), " retr_p50_ms=%.3f retr_p99_ms=%.3f", lat_pct(&st.delivery, 50),
			 lat_pct(&st.delivery, 99));

	printf("%s %s on 127.0.0.1:%u: %.2f s, concurrency %u\n", opt.label, mode_names[opt.mode], opt.port,
	       elapsed, opt.concurrency);
	if (opt.mode == MODE_POP3 || opt.mode == MODE_SMTP || opt.mode == MODE_LMTP)
		printf("  %" PRIu64 " messages (%.1f/s, %.1f MiB/s), %" PRIu64 " sessions\n", st.messages, mps,
		       (double)st.bytes / elapsed / 1048576.0, st.sessions_done);
	if (st.login.n)
		printf("  login    p50 %.2f ms  p99 %.2f ms  (n=%zu)\n", lat_pct(&st.login, 50), lat_pct(&st.login, 99),
		       st.login.n);
	if (st.delivery.n)
		printf("  %-8s p50 %.2f ms  p99 %.2f ms  (n=%zu)\n", op, lat_pct(&st.delivery, 50),
		       lat_pct(&st.delivery, 99), st.delivery.n);
	if (st.session.n)
		printf("  session  p50 %.2f ms  p99 %.2f ms  (n=%zu)\n", lat_pct(&st.session, 50),
		       lat_pct(&st.session, 99), st.session.n);
	if (opt.mode == MODE_BIGBOX && st.total.n)
		printf("  login+STAT+UIDL min %.1f ms  p50 %.1f ms  max %.1f ms; STAT p50 %.1f ms, UIDL p50 %.1f ms, %" PRIu64 " listed\n",
		       lat_pct(&st.total, 0), lat_pct(&st.total, 50), lat_pct(&st.total, 100), lat_pct(&st.stat, 50),
		       lat_pct(&st.uidl, 50), st.total.n ? st.listed / st.total.n : 0);
	if (opt.mode == MODE_IDLE)
		printf("  %" PRIu64 " sessions held, %" PRIu64 " answered NOOP at the end\n", st.held, st.noop_ok);
	printf("  cpu      %.2f s user, %.2f s kernel, of the load generator\n", tv_s(ru.ru_utime), tv_s(ru.ru_stime));
	printf("  errors %" PRIu64 " (connect %" PRIu64 ", proto %" PRIu64 ", verify %" PRIu64 ", timeout %" PRIu64
	       ", closed %" PRIu64 "), unfinished %" PRIu64 "\n",
	       errors, st.errors[ERR_CONNECT], st.errors[ERR_PROTO], st.errors[ERR_VERIFY], st.errors[ERR_TIMEOUT],
	       st.errors[ERR_CLOSED], st.unfinished);

	printf("RESULT label=%s mode=%s port=%u conc=%u elapsed_s=%.3f sessions=%" PRIu64 " messages=%" PRIu64
	       " bytes=%" PRIu64 " msgs_per_s=%.1f"
	       " login_p50_ms=%.3f login_p99_ms=%.3f session_p50_ms=%.3f session_p99_ms=%.3f"
	       " op_p50_ms=%.3f op_p99_ms=%.3f"
	       " stat_p50_ms=%.3f uidl_p50_ms=%.3f total_min_ms=%.3f total_p50_ms=%.3f total_max_ms=%.3f"
	       " held=%" PRIu64 " noop_ok=%" PRIu64 " errors=%" PRIu64
	       " err_connect=%" PRIu64 " err_proto=%" PRIu64 " err_verify=%" PRIu64 " err_timeout=%" PRIu64
	       " err_closed=%" PRIu64 " unfinished=%" PRIu64 "%s cpu_user_s=%.3f cpu_sys_s=%.3f\n",
	       opt.label, mode_names[opt.mode], opt.port, opt.concurrency, elapsed, st.sessions_done, st.messages,
	       st.bytes, mps, lat_pct(&st.login, 50), lat_pct(&st.login, 99), lat_pct(&st.session, 50),
	       lat_pct(&st.session, 99), lat_pct(&st.delivery, 50), lat_pct(&st.delivery, 99),
	       lat_pct(&st.stat, 50), lat_pct(&st.uidl, 50), lat_pct(&st.total, 0), lat_pct(&st.total, 50),
	       lat_pct(&st.total, 100), st.held, st.noop_ok, errors, st.errors[ERR_CONNECT], st.errors[ERR_PROTO],
	       st.errors[ERR_VERIFY], st.errors[ERR_TIMEOUT], st.errors[ERR_CLOSED], st.unfinished, retr,
	       tv_s(ru.ru_utime), tv_s(ru.ru_stime));
	fflush(stdout);
}

static void usage(void)
{
	fprintf(stderr,
		"usage: tern-loadgen MODE -p PORT [options]\n"
		"  MODE: pop3 | smtp | lmtp | idle | bigbox (see the comment at the top of loadgen.c)\n"
		"  -p, --port N          server port on 127.0.0.1\n"
		"  -c, --concurrency N   concurrent sessions (idle: logins in progress) [16]\n"
		"  -d, --duration S      stop starting work after S seconds [20]\n"
		"  -n, --count N         stop after N sessions/messages/connections/repeats [0 = no bound]\n"
		"  -t, --timeout S       per-operation timeout, and the grace at the end [30]\n"
		"  -H, --hold S          idle: hold the sessions S seconds [10]\n"
		"  -u, --user T          user (pop3) or recipient (smtp/lmtp); {n} is the user number\n"
		"  -w, --password PW     POP3 password\n"
		"  -U, --users N         users numbered from --user-base, round robin [1]\n"
		"  -b, --user-base N     first user number [1]\n"
		"  -s, --size N          message size in octets (smtp/lmtp) [10240]\n"
		"  -f, --from ADDR       envelope sender [bench@loadgen.invalid]\n"
		"  -D, --dele            pop3: DELE every message after RETR\n"
		"  -e, --expect N        pop3/bigbox: every mailbox holds N messages\n"
		"  -r, --read-rate B     read at most B octets/s in total (slow client)\n"
		"  -S, --sources N       spread source addresses over 127.0.0.1..N\n"
		"  -l, --label L         label for the RESULT line [server]\n");
	exit(64);
}

static double parse_num(const char *s, const char *what)
{
	char *end;
	errno = 0;
	double v = strtod(s, &end);
	if (errno || end == s || *end || v < 0) {
		fprintf(stderr, "tern-loadgen: bad %s: %s\n", what, s);
		exit(64);
	}
	return v;
}

int main(int argc, char **argv)
{
	if (argc < 2)
		usage();
	bool found = false;
	for (unsigned int m = 0; m < sizeof(mode_names) / sizeof(mode_names[0]); m++) {
		if (strcmp(argv[1], mode_names[m]) == 0) {
			opt.mode = (enum mode)m;
			found = true;
		}
	}
	if (!found)
		usage();
	opt.concurrency = 16;
	opt.duration = 20;
	opt.timeout = 30;
	opt.hold = 10;
	opt.user_tmpl = "user{n}@bench.test";
	opt.password = "secret";
	opt.users = 1;
	opt.user_base = 1;
	opt.msg_size = 10240;
	opt.expect = -1;
	opt.label = "server";
	opt.sender = "bench@loadgen.invalid";

	static const struct option longopts[] = {
		{ "port", required_argument, NULL, 'p' },     { "concurrency", required_argument, NULL, 'c' },
		{ "duration", required_argument, NULL, 'd' }, { "count", required_argument, NULL, 'n' },
		{ "timeout", required_argument, NULL, 't' },  { "hold", required_argument, NULL, 'H' },
		{ "user", required_argument, NULL, 'u' },     { "password", required_argument, NULL, 'w' },
		{ "users", required_argument, NULL, 'U' },    { "user-base", required_argument, NULL, 'b' },
		{ "size", required_argument, NULL, 's' },     { "from", required_argument, NULL, 'f' },
		{ "dele", no_argument, NULL, 'D' },           { "expect", required_argument, NULL, 'e' },
		{ "read-rate", required_argument, NULL, 'r' }, { "sources", required_argument, NULL, 'S' },
		{ "label", required_argument, NULL, 'l' },    { NULL, 0, NULL, 0 },
	};
	int ch;
	optind = 2;
	while ((ch = getopt_long(argc, argv, "p:c:d:n:t:H:u:w:U:b:s:f:De:r:S:l:", longopts, NULL)) != -1) {
		switch (ch) {
		case 'p': opt.port = (unsigned int)parse_num(optarg, "port"); break;
		case 'c': opt.concurrency = (unsigned int)parse_num(optarg, "concurrency"); break;
		case 'd': opt.duration = parse_num(optarg, "duration"); break;
		case 'n': opt.count = (uint64_t)parse_num(optarg, "count"); break;
		case 't': opt.timeout = parse_num(optarg, "timeout"); break;
		case 'H': opt.hold = parse_num(optarg, "hold"); break;
		case 'u': opt.user_tmpl = optarg; break;
		case 'w': opt.password = optarg; break;
		case 'U': opt.users = (unsigned int)parse_num(optarg, "users"); break;
		case 'b': opt.user_base = (unsigned int)parse_num(optarg, "user base"); break;
		case 's': opt.msg_size = (size_t)parse_num(optarg, "size"); break;
		case 'f': opt.sender = optarg; break;
		case 'D': opt.dele = true; break;
		case 'e': opt.expect = (long)parse_num(optarg, "expect"); break;
		case 'r': opt.read_rate = parse_num(optarg, "read rate"); break;
		case 'S': opt.sources = (unsigned int)parse_num(optarg, "sources"); break;
		case 'l': opt.label = optarg; break;
		default: usage();
		}
	}
	if (optind != argc || opt.port == 0 || opt.port > 65535 || opt.concurrency == 0 || opt.users == 0 ||
	    opt.sources > 65536)
		usage();
	if (opt.mode == MODE_IDLE && opt.count == 0) {
		fprintf(stderr, "tern-loadgen: idle needs --count\n");
		exit(64);
	}
	if (opt.mode == MODE_BIGBOX) {
		opt.concurrency = 1;
		if (opt.count == 0)
			opt.count = 5;
	}

	signal(SIGPIPE, SIG_IGN);
	struct sigaction sa = { .sa_handler = on_signal };
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGUSR1, &sa, NULL);

	nconns = opt.mode == MODE_IDLE ? (unsigned int)opt.count : opt.concurrency;
	raise_nofile(nconns);
	conns = calloc(nconns, sizeof(*conns));
	rbuf = malloc(READ_CHUNK);
	if (conns == NULL || rbuf == NULL) {
		fprintf(stderr, "tern-loadgen: out of memory\n");
		return 2;
	}
	epfd = epoll_create1(EPOLL_CLOEXEC);
	if (epfd < 0) {
		perror("tern-loadgen: epoll_create1");
		return 2;
	}
	t_begin = now_us();
	read_budget_t = t_begin;
	t_stop_starting = t_begin + (uint64_t)(opt.duration * 1e6);
	t_hard_stop = t_stop_starting + (uint64_t)(opt.timeout * 1e6) + 1000000;
	if (opt.mode == MODE_IDLE) {
		/* Setting up is bounded by the duration; holding comes after. */
		t_hard_stop = t_stop_starting + (uint64_t)(opt.timeout * 1e6) + 1000000;
	}
	for (unsigned int i = 0; i < nconns; i++) {
		conns[i].fd = -1;
		conns[i].idx = i;
	}
	if (opt.mode != MODE_IDLE)
		for (unsigned int i = 0; i < nconns; i++)
			conn_start(&conns[i]);
	run_loop();
	if (opt.mode == MODE_IDLE && !ready_printed) {
		printf("READY held=%" PRIu64 " failed=%" PRIu64 " incomplete\n", st.held,
		       st.errors[ERR_CONNECT] + st.errors[ERR_PROTO] + st.errors[ERR_TIMEOUT] + st.errors[ERR_CLOSED]);
	}
	report();
	uint64_t errors = 0;
	for (int k = 0; k < ERR_KINDS; k++)
		errors += st.errors[k];
	return errors || st.unfinished ? 1 : 0;
}
