/*
 * queue-runner: the outbound queue's scheduler and delivery threads (see
 * queue-runner.h for the guarantee).
 *
 * One attempt of an entry:
 *   scan (scheduler) -> its pending recipients grouped by domain, one job
 *   per domain -> relay_deliver() per job (delivery threads) -> the results
 *   merged into the entry (under the lock) -> once its last job is back,
 *   the entry is finished by the thread that brought that job: deleted when
 *   nobody is pending, else updated with the next attempt's time; a DSN for
 *   each recipient refused for good (or expired) in this attempt.
 *
 * Invariants:
 * - An entry is in at most one attempt at a time on this node (the
 *   in-flight list), and a domain in at most one job (the busy list): one
 *   connection per destination.
 * - A scan never plans an entry from a read older than that entry's last
 *   write: a finished attempt stays on the in-flight list (marked finished)
 *   until the next scan begins, so a scan whose store read started before
 *   the attempt's update or delete skips the entry rather than sending
 *   its recipients again from the stale copy.
 * - Stopping cancels the relay: connections in flight end at once, their
 *   recipients stay pending and due, and the attempt is not counted.
 * - A recipient's state only moves PENDING -> SENT or PENDING -> FAILED,
 *   and a DSN is sent in the attempt that moves it to FAILED, before the
 *   entry is written: a crash in between can repeat a DSN, never lose one.
 * - Never a bounce for a bounce: no DSN for the null sender.
 * - Memory is bounded: a scan reads at most SCAN_MAX entries per owner.
 * - The heartbeat is written every third of the lease whatever the scan
 *   interval (the scheduler wakes for it between scans), so a live node
 *   never looks silent for reading its queue seldom.
 */
#include "queue-runner.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "clock.h"
#include "dsn.h"
#include "hash.h"
#include "log.h"
#include "mail-trace.h"
#include "metrics.h"
#include "relay.h"
#include "store.h"

#define SCAN_MAX 1000            /* entries read per owner and scan */
#define JOB_MESSAGES_MAX 50      /* messages sent over one connection */
#define RETURNED_HEADERS_MAX (16 * 1024)
#define READ_PIECE (64 * 1024)
#define TAKEN_MAX 15             /* silent nodes' queues delivered at once */
#define HEARTBEAT_RETRY_MS 1000  /* after a heartbeat that was not written */

/* An entry in its attempt. */
struct inflight {
	struct inflight *next;
	struct store_queue_entry e;
	unsigned int jobs;            /* jobs not back yet */
	bool finished;                /* written; freed when the next scan begins */
	bool *failed_now;             /* rcpts refused for good in this attempt */
	bool *sent_now;
};

/* One domain's share of one or more entries. */
struct job {
	struct job *next;
	char domain[256];
	unsigned int count;
	struct inflight *entries[JOB_MESSAGES_MAX];
	/* per entry: which recipients (indices into e.rcpts) */
	unsigned int *rcpt_index[JOB_MESSAGES_MAX];
	unsigned int rcpt_n[JOB_MESSAGES_MAX];
};

struct queue_runner {
	struct store *store;
	struct relay *relay;
	struct queue_runner_settings set;
	char *node_id, *hostname;

	pthread_mutex_t lock;
	pthread_cond_t wake;          /* scheduler: kick or stop */
	pthread_cond_t work;          /* delivery threads: a job or stop */
	bool kicked, stopping;
	struct job *jobs, *jobs_tail;
	struct inflight *inflight;
	char (*busy)[256];            /* domains with a job out */
	unsigned int busy_count;

	pthread_t scheduler;
	pthread_t *threads;
	unsigned int thread_count;
	/* The scheduler thread's own: when the next heartbeat is due
	 * (monotonic), and the silent nodes whose queue it delivers now. */
	uint64_t next_heartbeat_ms;
	bool heartbeat_failing;
	char taken[TAKEN_MAX][STORE_NODE_ID_MAX + 1];
	unsigned int taken_count;
};

/* --- metrics --- */

static const char *const result_labels[] = { "result", NULL };
static const struct metrics_def m_length = {
	METRICS_GAUGE, "tern_queue_messages",
	"Messages in the outbound queue this node delivers (its own and those it took over).",
	NULL, NULL, 0, 0 };
static const struct metrics_def m_oldest = {
	METRICS_GAUGE, "tern_queue_oldest_seconds",
	"Age of the oldest message in the outbound queue this node delivers.", NULL, NULL, 0, 0 };
static const struct metrics_def m_attempts = {
	METRICS_COUNTER, "tern_queue_attempts_total",
	"Delivery attempts per recipient, by result (sent, tempfail, permfail, expired).",
	result_labels, NULL, 0, 0 };
static const struct metrics_def m_dsn = {
	METRICS_COUNTER, "tern_queue_dsn_total",
	"Delivery status notifications, by where they went (local, queued) or not (null_sender, failed).",
	(const char *const[]){ "to", NULL }, NULL, 0, 0 };
static const struct metrics_def m_duplicates = {
	METRICS_COUNTER, "tern_queue_duplicates_total",
	"Attempts whose queue entry another node had already finished (a possible duplicate delivery).",
	NULL, NULL, 0, 0 };
static const struct metrics_def m_takeovers = {
	METRICS_COUNTER, "tern_queue_takeover_scans_total",
	"Scans of the queue of a node presumed dead (its heartbeat older than the lease).",
	NULL, NULL, 0, 0 };

static struct metrics_series *s_length, *s_oldest, *s_sent, *s_tempfail, *s_permfail,
	*s_expired, *s_dsn_local, *s_dsn_queued, *s_dsn_null, *s_dsn_failed, *s_duplicates,
	*s_takeovers;

static void metrics_setup(void)
{
	s_length = metrics_single(&m_length);
	s_oldest = metrics_single(&m_oldest);
	struct metrics_family *a = metrics_register(&m_attempts);
	s_sent = metrics_series(a, (const char *const[]){ "sent" });
	s_tempfail = metrics_series(a, (const char *const[]){ "tempfail" });
	s_permfail = metrics_series(a, (const char *const[]){ "permfail" });
	s_expired = metrics_series(a, (const char *const[]){ "expired" });
	struct metrics_family *d = metrics_register(&m_dsn);
	s_dsn_local = metrics_series(d, (const char *const[]){ "local" });
	s_dsn_queued = metrics_series(d, (const char *const[]){ "queued" });
	s_dsn_null = metrics_series(d, (const char *const[]){ "null_sender" });
	s_dsn_failed = metrics_series(d, (const char *const[]){ "failed" });
	s_duplicates = metrics_single(&m_duplicates);
	s_takeovers = metrics_single(&m_takeovers);
}

/* --- pure parts --- */

uint64_t queue_retry_interval_ms(const struct queue_runner_settings *set, unsigned int attempts)
{
	uint64_t ms = set->retry_min_ms;
	for (unsigned int i = 1; i < attempts && ms < set->retry_max_ms; i++)
		ms *= 2;
	return ms < set->retry_max_ms ? ms : set->retry_max_ms;
}

static uint64_t rendezvous_score(const char *a, const char *b)
{
	uint64_t h = 0xcbf29ce484222325ULL;   /* FNV-1a over "a\0b" */
	for (const char *p = a; *p != '\0'; p++)
		h = (h ^ (unsigned char)*p) * 0x100000001b3ULL;
	h = (h ^ 0) * 0x100000001b3ULL;
	for (const char *p = b; *p != '\0'; p++)
		h = (h ^ (unsigned char)*p) * 0x100000001b3ULL;
	return hash_fmix64(h);
}

int queue_takeover_winner(const char *dead_node, const char *const *live, unsigned int live_count)
{
	int best = -1;
	uint64_t best_score = 0;
	for (unsigned int i = 0; i < live_count; i++) {
		uint64_t sc = rendezvous_score(dead_node, live[i]);
		/* Ties (never in practice) go to the smaller id, for everyone alike. */
		if (best < 0 || sc > best_score ||
		    (sc == best_score && strcmp(live[i], live[best]) < 0)) {
			best = (int)i;
			best_score = sc;
		}
	}
	return best;
}

static const char *domain_of(const char *address)
{
	const char *at = strrchr(address, '@');
	return at != NULL ? at + 1 : "";
}

/* --- DSNs --- */

/* The original message's header, for text/rfc822-headers. */
static void read_headers(struct queue_runner *q, const struct store_queue_entry *e,
			 struct buf *out)
{
	if (store_queue_read(q->store, e, 0, RETURNED_HEADERS_MAX, out) != STORE_OK) {
		buf_reset(out);
		return;
	}
	for (size_t i = 0; i + 3 < out->len; i++) {
		if (memcmp(out->data + i, "\r\n\r\n", 4) == 0) {
			out->len = i + 2;
			out->data[out->len] = '\0';
			return;
		}
	}
}

/* Queues a DSN (msg) from the null sender to these addresses. */
static enum store_status dsn_queue(struct queue_runner *q, const struct buf *msg,
				   const char *const *to, unsigned int count)
{
	struct store_queue_put p;
	/* store_queue_put_init() sets only the id and body_fd: no header here */
	memset(&p, 0, sizeof(p));
	store_queue_put_init(&p);
	p.owner = q->node_id;
	p.sender = "";
	p.rcpts = to;
	p.rcpt_count = count;
	p.body = msg->data;
	p.body_len = msg->len;
	p.next_attempt_us = clock_wall_us();
	enum store_status st = store_queue_put(q->store, &p);
	if (store_status_is_temporary(st))
		st = store_queue_put(q->store, &p);
	if (st == STORE_OK)
		queue_runner_kick(q);
	return st;
}

/* Puts a DSN in the sender's mailbox (a local sender; an alias's remote
 * targets get it through the queue) or in the queue, from the null sender
 * (a remote one). */
static void dsn_send(struct queue_runner *q, const struct store_queue_entry *e,
		     const struct dsn_rcpt *rcpts, unsigned int count)
{
	char id[UUID_STR_LEN + 1];
	uuid_format(&e->id, id);
	if (e->sender[0] == '\0') {
		log_info("queue no DSN id=%s reason=%s", id,
			 "the null sender: never a bounce for a bounce");
		metrics_inc(s_dsn_null);
		return;
	}
	struct buf headers, msg;
	buf_init(&headers, 0);
	buf_init(&msg, 0);
	read_headers(q, e, &headers);
	int64_t now_s = clock_wall_us() / 1000000;
	struct dsn_info info = {
		.reporting_mta = q->hostname,
		.sender = e->sender,
		.arrival_s = e->queued_us / 1000000,
		.now_s = now_s,
		.rcpts = rcpts,
		.rcpt_count = count,
		.headers = headers.data,
		.headers_len = headers.len,
	};
	const char *error = NULL;
	enum store_status st = STORE_PERM;
	const char *where = "queued";
	if (dsn_build(&info, &msg, &error) < 0) {
		log_error("queue DSN not built id=%s error=%s", id, error);
		goto out;
	}
	if (store_domain_exists(q->store, domain_of(e->sender)) == STORE_OK) {
		/* A local sender: straight into the mailbox(es). */
		where = "local";
		struct store_resolved *r = xcalloc(1, sizeof(*r));
		enum store_status resolved = store_resolve(q->store, e->sender, r);
		st = resolved;
		if (st == STORE_OK && r->count > 0) {
			struct store_rcpt *sr = calloc(r->count, sizeof(*sr));
			char **prefixes = calloc(r->count, sizeof(*prefixes));
			for (unsigned int i = 0; sr != NULL && prefixes != NULL && i < r->count; i++) {
				struct buf p;
				buf_init(&p, 0);
				mail_trace_return_path(&p, "");
				mail_trace_delivered_to(&p, r->users[i]);
				prefixes[i] = buf_steal(&p);
				buf_deinit(&p);
				sr[i].address = r->users[i];
				sr[i].prefix = prefixes[i];
			}
			struct store_delivery d;
			memset(&d, 0, sizeof(d));
			store_delivery_init(&d);
			d.body = msg.data;
			d.body_len = msg.len;
			d.rcpts = sr;
			d.rcpt_count = r->count;
			st = sr != NULL && prefixes != NULL ? store_deliver(q->store, &d) : STORE_TEMPFAIL;
			if (store_status_is_temporary(st))
				st = store_deliver(q->store, &d);
			for (unsigned int i = 0; st == STORE_OK && sr != NULL && i < r->count; i++)
				if (sr[i].status != STORE_OK)
					st = sr[i].status;
			for (unsigned int i = 0; prefixes != NULL && i < r->count; i++)
				free(prefixes[i]);
			free(prefixes);
			free(sr);
		}
		if (resolved == STORE_OK && st == STORE_OK && r->remote_count > 0) {
			/* an alias that forwards: its remote targets too */
			const char *to[STORE_ALIAS_TARGETS_MAX];
			for (unsigned int i = 0; i < r->remote_count; i++)
				to[i] = r->remote[i];
			st = dsn_queue(q, &msg, to, r->remote_count);
			where = r->count > 0 ? "local+queued" : "queued";
		}
		free(r);
	} else {
		const char *to[1] = { e->sender };
		st = dsn_queue(q, &msg, to, 1);
	}
out:
	if (st == STORE_OK) {
		log_info("queue DSN sent id=%s to=<%s> recipients=%u where=%s", id, e->sender, count, where);
		metrics_inc(strcmp(where, "local") == 0 ? s_dsn_local : s_dsn_queued);
	} else {
		log_error("queue DSN not sent id=%s to=<%s> error=%s", id, e->sender,
			  error != NULL ? error : store_status_name(st));
		metrics_inc(s_dsn_failed);
	}
	buf_deinit(&headers);
	buf_deinit(&msg);
}

/* --- finishing an attempt --- */

static void inflight_free(struct inflight *f)
{
	store_queue_entry_deinit(&f->e);
	free(f->failed_now);
	free(f->sent_now);
	free(f);
}

static bool runner_stopping(struct queue_runner *q)
{
	pthread_mutex_lock(&q->lock);
	bool stopping = q->stopping;
	pthread_mutex_unlock(&q->lock);
	return stopping;
}

/* Whether the entry is still in the store: an operator may have deleted it
 * (`tern queue del`, DELETE /queue/ID: "without a DSN"), or another node
 * finished it, while this attempt ran. A store error counts as present. */
static bool entry_exists(struct queue_runner *q, const struct uuid *id)
{
	struct store_queue_entry e;
	memset(&e, 0, sizeof(e));
	enum store_status st = store_queue_get(q->store, id, &e);
	if (st == STORE_OK)
		store_queue_entry_deinit(&e);
	return st != STORE_NOTFOUND;
}

/* Every job of f is back: DSNs, then the entry written or deleted. */
static void finish_entry(struct queue_runner *q, struct inflight *f)
{
	struct store_queue_entry *e = &f->e;
	char id[UUID_STR_LEN + 1];
	uuid_format(&e->id, id);
	int64_t now = clock_wall_us();
	bool stopping = runner_stopping(q);
	bool expired = now - e->queued_us >= (int64_t)q->set.max_lifetime_ms * 1000;
	unsigned int pending = 0, sent_now = 0;
	struct dsn_rcpt *dr = xcalloc(e->rcpt_count + 1, sizeof(*dr));
	char (*status)[16] = xcalloc(e->rcpt_count + 1, sizeof(*status));
	unsigned int dn = 0;
	for (unsigned int i = 0; i < e->rcpt_count; i++) {
		struct store_queue_rcpt *r = &e->rcpts[i];
		sent_now += f->sent_now[i];
		if (r->state == STORE_QUEUE_PENDING && expired) {
			r->state = STORE_QUEUE_FAILED;
			f->failed_now[i] = true;
			char why[sizeof(r->diagnostic)];
			snprintf(why, sizeof(why), "%s", r->diagnostic);
			snprintf(r->diagnostic, sizeof(r->diagnostic),
				 "not delivered within max_lifetime%s%.200s", why[0] != '\0' ? "; last: " : "",
				 why);
			metrics_inc(s_expired);
			log_info("queue attempt id=%s to=<%s> result=expired attempts=%u", id, r->address,
				 e->attempts + 1);
		}
		if (r->state == STORE_QUEUE_PENDING)
			pending++;
		if (f->failed_now[i]) {
			/* The diagnostic is "CODE X.Y.Z text" from the remote server,
			 * or our own text (DNS, connection, expiry). */
			const char *d = r->diagnostic;
			bool smtp = d[0] >= '2' && d[0] <= '5' && d[1] >= '0' && d[1] <= '9' && d[3] == ' ';
			dr[dn].address = r->address;
			dr[dn].action = DSN_FAILED;
			dr[dn].status = expired ? "4.4.7" : "5.0.0";
			size_t n = smtp ? strcspn(d + 4, " ") : 0;
			if (n >= 5 && n < sizeof(status[dn]) && d[5] == '.' && (d[4] == '4' || d[4] == '5')) {
				memcpy(status[dn], d + 4, n);
				status[dn][n] = '\0';
				dr[dn].status = status[dn];
			}
			dr[dn].diagnostic = d;
			dn++;
		}
	}
	if (dn > 0 && entry_exists(q, &e->id))
		dsn_send(q, e, dr, dn);
	else if (dn > 0)
		log_warn("queue no DSN id=%s reason=%s", id,
			 "the entry was deleted during the attempt");
	free(dr);
	free(status);
	enum store_status st;
	if (pending == 0) {
		st = store_queue_del(q->store, &e->id);
		if (st == STORE_OK)
			log_info("queue done id=%s", id);
	} else if (stopping) {
		/* Cut short by the stop: not an attempt; due again at once (at
		 * the next start), with what it learnt. */
		e->next_attempt_us = now;
		st = store_queue_update(q->store, e);
	} else {
		e->attempts++;
		e->next_attempt_us = now + (int64_t)queue_retry_interval_ms(&q->set, e->attempts) * 1000;
		st = store_queue_update(q->store, e);
		if (st == STORE_OK)
			log_info("queue retry id=%s pending=%u attempts=%u next_in_s=%llu", id, pending,
				 e->attempts + 1, (unsigned long long)((e->next_attempt_us - now) / 1000000));
	}
	if (st == STORE_NOTFOUND) {
		/* Another node finished it first: what we sent may be a duplicate. */
		if (sent_now > 0)
			metrics_inc(s_duplicates);
		log_warn("queue entry finished by another node id=%s duplicate=%s", id,
			 sent_now > 0 ? "possible" : "no");
	} else if (st != STORE_OK) {
		log_error("queue entry not written, tried again id=%s error=%s", id,
			  store_status_name(st));
	}
	/* Kept (finished) until the next scan begins: a scan already reading
	 * the store may have read the entry as it was before this write. */
	pthread_mutex_lock(&q->lock);
	f->finished = true;
	pthread_mutex_unlock(&q->lock);
}

/* Frees the finished entries (lock held): called as a scan begins, before
 * its store reads, which therefore see every write those entries made. */
static void inflight_prune(struct queue_runner *q)
{
	struct inflight **p = &q->inflight;
	while (*p != NULL) {
		struct inflight *f = *p;
		if (f->finished) {
			*p = f->next;
			inflight_free(f);
		} else {
			p = &f->next;
		}
	}
}

/* --- delivery threads --- */

struct read_ctx {
	struct queue_runner *q;
	const struct store_queue_entry *e;
};

static int read_piece(void *ctx, uint64_t offset, size_t max, struct buf *out)
{
	struct read_ctx *r = ctx;
	return store_queue_read(r->q->store, r->e, offset, max, out) == STORE_OK ? 0 : -1;
}

static const char *result_name(enum relay_result r)
{
	switch (r) {
	case RELAY_OK: return "sent";
	case RELAY_TEMPFAIL: return "tempfail";
	case RELAY_PERMFAIL: return "permfail";
	case RELAY_PENDING: break;
	}
	return "tempfail";
}

static void run_job(struct queue_runner *q, struct job *j)
{
	struct relay_message msgs[JOB_MESSAGES_MAX];
	struct read_ctx ctx[JOB_MESSAGES_MAX];
	struct relay_rcpt *rr[JOB_MESSAGES_MAX];
	for (unsigned int m = 0; m < j->count; m++) {
		struct store_queue_entry *e = &j->entries[m]->e;
		rr[m] = xcalloc(j->rcpt_n[m] + 1, sizeof(*rr[m]));
		for (unsigned int k = 0; k < j->rcpt_n[m]; k++)
			rr[m][k].address = e->rcpts[j->rcpt_index[m][k]].address;
		ctx[m] = (struct read_ctx){ q, e };
		msgs[m] = (struct relay_message){ .sender = e->sender, .rcpts = rr[m],
						  .rcpt_count = j->rcpt_n[m], .size = e->size,
						  .read = read_piece, .ctx = &ctx[m] };
	}
	struct relay_report report;
	memset(&report, 0, sizeof(report));
	/* domain "": an entry with nothing pending, only to be finished. */
	if (j->domain[0] != '\0')
		relay_deliver(q->relay, j->domain, msgs, j->count, &report);

	for (unsigned int m = 0; m < j->count; m++) {
		struct inflight *f = j->entries[m];
		char id[UUID_STR_LEN + 1];
		uuid_format(&f->e.id, id);
		for (unsigned int k = 0; k < j->rcpt_n[m]; k++) {
			unsigned int i = j->rcpt_index[m][k];
			struct store_queue_rcpt *r = &f->e.rcpts[i];
			const struct relay_rcpt *x = &rr[m][k];
			log_info("queue attempt id=%s to=<%s> mx=%s addr=%s tls=%s result=%s reply=%.200s", id,
				 r->address, report.mx[0] != '\0' ? report.mx : "-",
				 report.addr[0] != '\0' ? report.addr : "-", report.tls[0] != '\0' ? report.tls : "none",
				 result_name(x->result), x->reply);
			/* Each recipient belongs to exactly one job: no lock needed
			 * for its own fields. */
			if (x->code > 0)
				snprintf(r->diagnostic, sizeof(r->diagnostic), "%d %s %.200s", x->code, x->status,
					 x->reply);
			else
				snprintf(r->diagnostic, sizeof(r->diagnostic), "%.240s", x->reply);
			if (x->result == RELAY_OK) {
				r->state = STORE_QUEUE_SENT;
				f->sent_now[i] = true;
				metrics_inc(s_sent);
			} else if (x->result == RELAY_PERMFAIL) {
				r->state = STORE_QUEUE_FAILED;
				f->failed_now[i] = true;
				metrics_inc(s_permfail);
			} else {
				metrics_inc(s_tempfail);
			}
		}
		free(rr[m]);
		free(j->rcpt_index[m]);
	}
	/* The domain is free again; each entry whose last job this was is
	 * finished here, outside the lock. */
	struct inflight *done[JOB_MESSAGES_MAX];
	unsigned int done_count = 0;
	pthread_mutex_lock(&q->lock);
	for (unsigned int i = 0; i < q->busy_count; i++) {
		if (strcmp(q->busy[i], j->domain) == 0) {
			memcpy(q->busy[i], q->busy[--q->busy_count], sizeof(q->busy[i]));
			break;
		}
	}
	for (unsigned int m = 0; m < j->count; m++)
		if (--j->entries[m]->jobs == 0)
			done[done_count++] = j->entries[m];
	pthread_mutex_unlock(&q->lock);
	for (unsigned int m = 0; m < done_count; m++)
		finish_entry(q, done[m]);
	free(j);
	/* Entries that waited for this domain can go now. */
	queue_runner_kick(q);
}

static void *delivery_thread(void *arg)
{
	struct queue_runner *q = arg;
	pthread_mutex_lock(&q->lock);
	for (;;) {
		while (q->jobs == NULL && !q->stopping)
			pthread_cond_wait(&q->work, &q->lock);
		if (q->jobs == NULL)
			break;   /* stopping, and nothing left */
		struct job *j = q->jobs;
		q->jobs = j->next;
		if (q->jobs == NULL)
			q->jobs_tail = NULL;
		pthread_mutex_unlock(&q->lock);
		run_job(q, j);
		pthread_mutex_lock(&q->lock);
	}
	pthread_mutex_unlock(&q->lock);
	return NULL;
}

/* --- the scheduler --- */

static bool domain_busy(const struct queue_runner *q, const char *domain)
{
	for (unsigned int i = 0; i < q->busy_count; i++)
		if (strcmp(q->busy[i], domain) == 0)
			return true;
	return false;
}

static bool entry_inflight(const struct queue_runner *q, const struct uuid *id)
{
	for (const struct inflight *f = q->inflight; f != NULL; f = f->next)
		if (memcmp(&f->e.id, id, sizeof(*id)) == 0)
			return true;
	return false;
}

static bool node_in(char (*list)[STORE_NODE_ID_MAX + 1], unsigned int count, const char *node)
{
	for (unsigned int i = 0; i < count; i++)
		if (strcmp(list[i], node) == 0)
			return true;
	return false;
}

/* Logs the queues this node starts and stops delivering for silent nodes
 * (once per change, not once per scan) and remembers the new set. */
static void taken_update(struct queue_runner *q, char (*now_taken)[STORE_NODE_ID_MAX + 1],
			 unsigned int count, const struct store_queue_node *nodes,
			 unsigned int node_count, int64_t now, int64_t lease_us)
{
	for (unsigned int i = 0; i < q->taken_count; i++) {
		if (node_in(now_taken, count, q->taken[i]))
			continue;
		const char *why = "not listed";
		for (unsigned int k = 0; k < node_count; k++)
			if (strcmp(nodes[k].id, q->taken[i]) == 0)
				why = nodes[k].heartbeat_us >= now - lease_us ? "its heartbeat is back"
					: "another live node's share";
		log_info("queue takeover ended node=%s reason=%s", q->taken[i], why);
	}
	for (unsigned int k = 0; k < count; k++) {
		if (node_in(q->taken, q->taken_count, now_taken[k]))
			continue;
		for (unsigned int i = 0; i < node_count; i++)
			if (strcmp(nodes[i].id, now_taken[k]) == 0)
				log_info("queue takeover: delivering a silent node's queue node=%s silent_s=%lld",
					 now_taken[k], (long long)((now - nodes[i].heartbeat_us) / 1000000));
	}
	memcpy(q->taken, now_taken, count * sizeof(q->taken[0]));
	q->taken_count = count;
}

/* The owners this node delivers for: itself, and each node of its
 * datacenter whose heartbeat is older than the lease and whose queue the
 * rendezvous rule gives to this node (at most TAKEN_MAX of them). When the
 * nodes cannot be read, only itself. */
static unsigned int owners(struct queue_runner *q, int64_t now,
			   char (*out)[STORE_NODE_ID_MAX + 1])
{
	unsigned int n = 0;
	snprintf(out[n++], sizeof(out[0]), "%s", q->node_id);
	struct store_queue_node *nodes = NULL;
	unsigned int count = 0;
	if (store_queue_nodes(q->store, &nodes, &count) != STORE_OK) {
		free(nodes);
		return n;
	}
	const char **live = calloc(count + 1, sizeof(*live));
	if (live == NULL) {
		free(nodes);
		return n;
	}
	unsigned int live_count = 0;
	int64_t lease_us = (int64_t)q->set.lease_ms * 1000;
	bool self_listed = false;
	for (unsigned int i = 0; i < count; i++) {
		if (strcmp(nodes[i].id, q->node_id) == 0)
			self_listed = true;
		if (strcmp(nodes[i].id, q->node_id) == 0 || nodes[i].heartbeat_us >= now - lease_us)
			live[live_count++] = nodes[i].id;
	}
	if (!self_listed)
		live[live_count++] = q->node_id;
	for (unsigned int i = 0; i < count && n < TAKEN_MAX + 1; i++) {
		if (strcmp(nodes[i].id, q->node_id) == 0 || nodes[i].heartbeat_us >= now - lease_us)
			continue;
		int w = queue_takeover_winner(nodes[i].id, live, live_count);
		if (w >= 0 && strcmp(live[w], q->node_id) == 0) {
			snprintf(out[n++], sizeof(out[0]), "%s", nodes[i].id);
			metrics_inc(s_takeovers);
		}
	}
	taken_update(q, out + 1, n - 1, nodes, count, now, lease_us);
	free(live);
	free(nodes);
	return n;
}

static struct job *job_find(struct job *list, const char *domain)
{
	for (struct job *j = list; j != NULL; j = j->next)
		if (strcmp(j->domain, domain) == 0)
			return j;
	return NULL;
}

/* Adds recipient i of f to the job for its domain in this scan, making
 * the job if needed (NULL when the domain is busy or the jobs are full). */
static struct job *job_for(struct job **list, const char *domain)
{
	struct job *j = job_find(*list, domain);
	if (j != NULL)
		return j;
	j = xcalloc(1, sizeof(*j));
	snprintf(j->domain, sizeof(j->domain), "%s", domain);
	j->next = *list;
	*list = j;
	return j;
}

/* Whether each of e's pending domains is free on this node and its job of
 * this scan (if any) has room for one more message. */
static bool entry_fits(const struct queue_runner *q, const struct store_queue_entry *e,
		       struct job *planned)
{
	for (unsigned int k = 0; k < e->rcpt_count; k++) {
		if (e->rcpts[k].state != STORE_QUEUE_PENDING)
			continue;
		const char *domain = domain_of(e->rcpts[k].address);
		if (domain_busy(q, domain))
			return false;
		struct job *j = job_find(planned, domain);
		if (j != NULL && j->count >= JOB_MESSAGES_MAX)
			return false;
	}
	return true;
}

/* Groups an entry's pending recipients by domain into this scan's jobs
 * (entry_fits() said there is room). */
static void plan_entry(struct queue_runner *q, struct inflight *f, struct job **planned)
{
	struct store_queue_entry *e = &f->e;
	for (unsigned int i = 0; i < e->rcpt_count; i++) {
		if (e->rcpts[i].state != STORE_QUEUE_PENDING)
			continue;
		const char *domain = domain_of(e->rcpts[i].address);
		struct job *j = job_for(planned, domain);
		unsigned int m;
		for (m = 0; m < j->count && j->entries[m] != f; m++)
			;
		if (m == j->count) {
			j->entries[m] = f;
			j->rcpt_index[m] = xcalloc(e->rcpt_count, sizeof(unsigned int));
			j->rcpt_n[m] = 0;
			j->count++;
			f->jobs++;
		}
		j->rcpt_index[m][j->rcpt_n[m]++] = i;
	}
	(void)q;
}

/* Writes this node's heartbeat when it is due: every third of the lease,
 * whatever the scan interval, so that a node is never presumed dead for
 * scanning less often than its lease; a write that fails is tried again
 * a second later. */
static void heartbeat(struct queue_runner *q)
{
	uint64_t mono = clock_monotonic_ms();
	if (mono < q->next_heartbeat_ms)
		return;
	uint64_t interval = q->set.lease_ms / 3;
	enum store_status st = store_queue_heartbeat(q->store, q->node_id, clock_wall_us());
	if (st == STORE_OK) {
		if (q->heartbeat_failing)
			log_info("queue heartbeat written again node=%s", q->node_id);
		q->next_heartbeat_ms = mono + interval;
	} else {
		if (!q->heartbeat_failing)
			log_warn("queue heartbeat not written, tried again every second node=%s error=%s",
				 q->node_id, store_status_name(st));
		q->next_heartbeat_ms = mono + (interval < HEARTBEAT_RETRY_MS ? interval : HEARTBEAT_RETRY_MS);
	}
	q->heartbeat_failing = st != STORE_OK;
}

static void scan(struct queue_runner *q)
{
	pthread_mutex_lock(&q->lock);
	inflight_prune(q);
	pthread_mutex_unlock(&q->lock);
	heartbeat(q);
	int64_t now = clock_wall_us();
	char own[TAKEN_MAX + 1][STORE_NODE_ID_MAX + 1];
	unsigned int n_owners = owners(q, now, own);
	uint64_t length = 0;
	int64_t oldest = now;
	for (unsigned int o = 0; o < n_owners; o++) {
		struct store_queue_entry *entries = NULL;
		unsigned int count = 0;
		enum store_status st = store_queue_scan(q->store, own[o], INT64_MAX, SCAN_MAX, &entries,
							&count);
		if (st != STORE_OK) {
			log_warn("queue not read owner=%s error=%s", own[o], store_status_name(st));
			continue;
		}
		length += count;
		struct job *planned = NULL;
		pthread_mutex_lock(&q->lock);
		for (unsigned int i = 0; i < count; i++) {
			struct store_queue_entry *e = &entries[i];
			if (e->queued_us < oldest)
				oldest = e->queued_us;
			if (e->next_attempt_us > now || entry_inflight(q, &e->id))
				continue;
			/* An entry goes out only when all its domains can take it
			 * now: its attempt is then one attempt for all its
			 * recipients. The others wait for a job to come back. */
			if (!entry_fits(q, e, planned))
				continue;
			struct inflight *f = xcalloc(1, sizeof(*f));
			f->e = *e;              /* takes the rcpts array */
			e->rcpts = NULL;
			e->rcpt_count = 0;
			f->failed_now = xcalloc(f->e.rcpt_count + 1, sizeof(bool));
			f->sent_now = xcalloc(f->e.rcpt_count + 1, sizeof(bool));
			f->next = q->inflight;
			q->inflight = f;
			plan_entry(q, f, &planned);
			if (f->jobs == 0) {
				/* Nothing pending (a crash after the last send, before
				 * the delete): finish it now, outside the lock. */
				f->jobs = 1;
				struct job *j = xcalloc(1, sizeof(*j));
				j->next = planned;
				planned = j;
				j->entries[0] = f;
				j->rcpt_index[0] = xcalloc(1, sizeof(unsigned int));
				j->rcpt_n[0] = 0;
				j->count = 1;
			}
		}
		/* Hand the jobs out: one per domain at a time. */
		while (planned != NULL) {
			struct job *j = planned;
			planned = j->next;
			j->next = NULL;
			if (j->domain[0] != '\0') {
				if (q->busy_count % 16 == 0)
					q->busy = xrealloc(q->busy, (q->busy_count + 16) * sizeof(*q->busy));
				snprintf(q->busy[q->busy_count++], sizeof(q->busy[0]), "%s", j->domain);
			}
			if (q->jobs_tail != NULL)
				q->jobs_tail->next = j;
			else
				q->jobs = j;
			q->jobs_tail = j;
		}
		pthread_cond_broadcast(&q->work);
		pthread_mutex_unlock(&q->lock);
		store_queue_entries_free(&entries, count);
	}
	metrics_gauge_set(s_length, (int64_t)length);
	metrics_gauge_set(s_oldest, length > 0 ? (now - oldest) / 1000000 : 0);
}

/* Waits on q->wake (lock held) until kicked, stopping or until_ms (monotonic). */
static void scheduler_wait(struct queue_runner *q, uint64_t until_ms)
{
	uint64_t now = clock_monotonic_ms();
	if (until_ms <= now)
		return;
	struct timespec until;
	clock_gettime(CLOCK_MONOTONIC, &until);
	uint64_t ms = until_ms - now;
	until.tv_sec += (time_t)(ms / 1000);
	until.tv_nsec += (long)(ms % 1000) * 1000000;
	if (until.tv_nsec >= 1000000000) {
		until.tv_sec++;
		until.tv_nsec -= 1000000000;
	}
	while (!q->kicked && !q->stopping &&
	       pthread_cond_timedwait(&q->wake, &q->lock, &until) != ETIMEDOUT)
		;
}

/* Scans every scan_interval or when kicked; between scans, wakes for each
 * heartbeat that falls due. */
static void *scheduler_thread(void *arg)
{
	struct queue_runner *q = arg;
	pthread_mutex_lock(&q->lock);
	while (!q->stopping) {
		q->kicked = false;
		pthread_mutex_unlock(&q->lock);
		scan(q);
		uint64_t next_scan = clock_monotonic_ms() + q->set.scan_interval_ms;
		pthread_mutex_lock(&q->lock);
		while (!q->kicked && !q->stopping && clock_monotonic_ms() < next_scan) {
			if (clock_monotonic_ms() >= q->next_heartbeat_ms) {
				pthread_mutex_unlock(&q->lock);
				heartbeat(q);
				pthread_mutex_lock(&q->lock);
				continue;
			}
			scheduler_wait(q, next_scan < q->next_heartbeat_ms ? next_scan : q->next_heartbeat_ms);
		}
	}
	pthread_mutex_unlock(&q->lock);
	return NULL;
}

/* The special job of an entry with nothing pending has domain "": run_job
 * would call the relay with no recipients, so the threads finish it
 * directly. */

struct queue_runner *queue_runner_start(struct store *store, struct relay *relay,
					const struct queue_runner_settings *set,
					const char **error_r)
{
	metrics_setup();
	struct queue_runner *q = calloc(1, sizeof(*q));
	if (q == NULL) {
		*error_r = "out of memory";
		return NULL;
	}
	q->store = store;
	q->relay = relay;
	q->set = *set;
	q->node_id = strdup(set->node_id);
	q->hostname = strdup(set->hostname);
	q->set.node_id = q->node_id;
	q->set.hostname = q->hostname;
	if (q->set.concurrency == 0)
		q->set.concurrency = 1;
	pthread_mutex_init(&q->lock, NULL);
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&q->wake, &ca);
	pthread_condattr_destroy(&ca);
	pthread_cond_init(&q->work, NULL);
	q->threads = calloc(q->set.concurrency, sizeof(*q->threads));
	for (unsigned int i = 0; i < q->set.concurrency; i++) {
		if (pthread_create(&q->threads[i], NULL, delivery_thread, q) != 0)
			break;
		q->thread_count++;
	}
	if (q->thread_count == 0 || pthread_create(&q->scheduler, NULL, scheduler_thread, q) != 0) {
		*error_r = "cannot start the queue's threads";
		pthread_mutex_lock(&q->lock);
		q->stopping = true;
		pthread_cond_broadcast(&q->work);
		pthread_mutex_unlock(&q->lock);
		for (unsigned int i = 0; i < q->thread_count; i++)
			pthread_join(q->threads[i], NULL);
		free(q->threads);
		free(q->node_id);
		free(q->hostname);
		free(q);
		return NULL;
	}
	return q;
}

void queue_runner_kick(struct queue_runner *q)
{
	if (q == NULL)
		return;
	pthread_mutex_lock(&q->lock);
	q->kicked = true;
	pthread_cond_signal(&q->wake);
	pthread_mutex_unlock(&q->lock);
}

void queue_runner_stop(struct queue_runner **qp)
{
	struct queue_runner *q = *qp;
	if (q == NULL)
		return;
	*qp = NULL;
	pthread_mutex_lock(&q->lock);
	q->stopping = true;
	pthread_cond_broadcast(&q->wake);
	pthread_mutex_unlock(&q->lock);
	/* Connections in flight end now, not at their timeouts (minutes):
	 * the server's stop must not wait for a slow or silent peer. */
	relay_cancel(q->relay);
	pthread_join(q->scheduler, NULL);
	/* The jobs being delivered finish; those not started are dropped
	 * (their entries stay in the store, due, for the next start). */
	pthread_mutex_lock(&q->lock);
	struct job *dropped = q->jobs;
	q->jobs = q->jobs_tail = NULL;
	pthread_cond_broadcast(&q->work);
	pthread_mutex_unlock(&q->lock);
	for (unsigned int i = 0; i < q->thread_count; i++)
		pthread_join(q->threads[i], NULL);
	/* An entry split over a finished job and a dropped one keeps what the
	 * finished one learnt: it is written now (the threads are gone). */
	while (dropped != NULL) {
		struct job *j = dropped;
		dropped = j->next;
		for (unsigned int m = 0; m < j->count; m++) {
			struct inflight *f = j->entries[m];
			free(j->rcpt_index[m]);
			if (--f->jobs > 0)
				continue;
			bool learnt = false;
			for (unsigned int i = 0; i < f->e.rcpt_count; i++)
				learnt = learnt || f->sent_now[i] || f->failed_now[i];
			if (learnt)
				finish_entry(q, f);
		}
		free(j);
	}
	while (q->inflight != NULL) {
		struct inflight *f = q->inflight;
		q->inflight = f->next;
		inflight_free(f);
	}
	free(q->threads);
	free(q->busy);
	pthread_mutex_destroy(&q->lock);
	pthread_cond_destroy(&q->wake);
	pthread_cond_destroy(&q->work);
	free(q->node_id);
	free(q->hostname);
	free(q);
}
