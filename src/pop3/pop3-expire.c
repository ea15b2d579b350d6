/*
 * pop3-expire: the EXPIRE sweep (see pop3-expire.h).
 *
 * Invariants:
 * - Only messages with a retrieval record older than the user's policy are
 *   expunged (store_expire_mailbox reads the records first, then the
 *   listing): a message never retrieved, or retrieved while the policy was
 *   NEVER (no record is written then), is never expired.
 * - One batch runs at a time, on one worker; the loop only arms timers.
 * - Nothing is read-then-written: the records and the listing are plain
 *   rows, the expunge is POP3 QUIT's.
 */
#include "pop3-expire.h"

#include <event2/event.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "clock.h"
#include "log.h"
#include "pop3-audit.h"
#include "settings.h"

#define BATCH_PAUSE_MS 1000
#define DAY_US (86400LL * 1000000)

struct pop3_expire {
	const struct session_env *env;
	struct event *timer;
	struct worker_job job;
	bool running;
	/* the pass: the users as listed at its start, and where it is */
	struct buf users;
	size_t pos;
	/* the batch's results, read by done() */
	unsigned int users_checked, expired, failed;
};

int pop3_expire_effective(int own, int default_days)
{
	return own == STORE_EXPIRE_DEFAULT ? default_days : own;
}

/* One user: their policy, then the expunge of what it expires. */
static void expire_user(struct pop3_expire *e, const char *user, unsigned int max)
{
	const struct session_env *env = e->env;
	int own = STORE_EXPIRE_DEFAULT;
	enum store_status st = store_user_expire_get(env->store, user, &own);
	if (st == STORE_NOTFOUND)
		return; /* deleted since the pass began */
	if (st != STORE_OK) {
		e->failed++;
		return;
	}
	int days = pop3_expire_effective(own, env->set->pop3_expire_days);
	if (days == STORE_EXPIRE_NEVER)
		return;
	struct store_expired *ex = NULL;
	unsigned int n = 0;
	st = store_expire_mailbox(env->store, user, clock_wall_us() - days * DAY_US, max, &ex, &n);
	if (st != STORE_OK && st != STORE_NOTFOUND) {
		log_warn("expire failed user=%s error=%s", user, store_status_name(st));
		e->failed++;
	}
	for (unsigned int i = 0; i < n; i++)
		pop3_audit_message(env->audit, "expire", 0, user, NULL, &ex[i].id, NULL,
				   ex[i].size, ex[i].retrieved_us, "sweep");
	if (n > 0)
		log_info("expire user=%s deleted=%u days=%d", user, n, days);
	e->expired += n;
	free(ex);
}

static void batch_work(struct worker_job *job)
{
	struct pop3_expire *e = (struct pop3_expire *)((char *)job - offsetof(struct pop3_expire, job));
	e->users_checked = e->expired = e->failed = 0;
	if (e->pos >= e->users.len) {
		buf_reset(&e->users);
		e->pos = 0;
		if (store_user_list(e->env->store, &e->users) != STORE_OK) {
			buf_reset(&e->users);
			e->failed++;
			return;
		}
	}
	while (e->pos < e->users.len && e->users_checked < POP3_EXPIRE_BATCH_USERS &&
	       e->expired < POP3_EXPIRE_BATCH_MESSAGES) {
		char *user = e->users.data + e->pos;
		char *nl = memchr(user, '\n', e->users.len - e->pos);
		size_t len = nl != NULL ? (size_t)(nl - user) : e->users.len - e->pos;
		e->pos += len + 1;
		if (len == 0)
			continue;
		user[len] = '\0';
		e->users_checked++;
		expire_user(e, user, POP3_EXPIRE_BATCH_MESSAGES - e->expired);
	}
}

static void arm(struct pop3_expire *e, unsigned int ms)
{
	struct timeval tv = { (time_t)(ms / 1000), (suseconds_t)(ms % 1000) * 1000 };
	evtimer_add(e->timer, &tv);
}

static unsigned int interval_ms(const struct pop3_expire *e)
{
	unsigned int ms = e->env->set->pop3_expire_sweep_interval_ms;
	return ms < 1000 ? 1000 : ms;
}

static void batch_done(struct worker_job *job)
{
	struct pop3_expire *e = (struct pop3_expire *)((char *)job - offsetof(struct pop3_expire, job));
	e->running = false;
	if (e->expired > 0 || e->failed > 0)
		log_info("expire batch users=%u deleted=%u failures=%u", e->users_checked,
			 e->expired, e->failed);
	/* The rest of the pass a moment later; the next pass after the interval. */
	arm(e, e->pos < e->users.len ? BATCH_PAUSE_MS : interval_ms(e));
}

static void tick(evutil_socket_t fd, short what, void *arg)
{
	struct pop3_expire *e = arg;
	if (e->running)
		return;
	e->running = true;
	e->job.work = batch_work;
	e->job.done = batch_done;
	worker_pool_submit(e->env->pool, &e->job);
}

struct pop3_expire *pop3_expire_start(const struct session_env *env)
{
	struct pop3_expire *e = xcalloc(1, sizeof(*e));
	e->env = env;
	buf_init(&e->users, 0);
	e->timer = evtimer_new(env->base, tick, e);
	arm(e, interval_ms(e));
	return e;
}

void pop3_expire_stop(struct pop3_expire **ep)
{
	struct pop3_expire *e = *ep;
	if (e == NULL)
		return;
	*ep = NULL;
	event_free(e->timer);
	buf_deinit(&e->users);
	free(e);
}
