/*
 * test-worker-pool: the worker pool's contract (src/lib/worker-pool.h).
 * done() runs on the loop thread after work(); first-lane jobs are taken
 * before queued ordinary ones; the first lane never holds every thread, so
 * ordinary jobs progress while first-lane jobs block; destroy runs what is
 * queued. Jobs block on gates the test opens, so the orders checked do not
 * depend on timing (a timed wait only guards against a hang).
 */
#include <errno.h>
#include <event2/event.h>
#include <pthread.h>
#include <stdbool.h>
#include <time.h>

#include "test.h"
#include "worker-pool.h"

struct gate {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	bool open;
};

static void gate_init(struct gate *g)
{
	pthread_mutex_init(&g->lock, NULL);
	pthread_cond_init(&g->cond, NULL);
	g->open = false;
}

static void gate_open(struct gate *g)
{
	pthread_mutex_lock(&g->lock);
	g->open = true;
	pthread_cond_broadcast(&g->cond);
	pthread_mutex_unlock(&g->lock);
}

static void gate_pass(struct gate *g)
{
	pthread_mutex_lock(&g->lock);
	while (!g->open)
		pthread_cond_wait(&g->cond, &g->lock);
	pthread_mutex_unlock(&g->lock);
}

/* Waits (at most 10 s: a hang guard, not a timing check) for *flag. */
static bool wait_flag(struct gate *g, const bool *flag)
{
	struct timespec until;
	clock_gettime(CLOCK_REALTIME, &until);
	until.tv_sec += 10;
	pthread_mutex_lock(&g->lock);
	int rc = 0;
	while (!*flag && rc != ETIMEDOUT)
		rc = pthread_cond_timedwait(&g->cond, &g->lock, &until);
	bool ok = *flag;
	pthread_mutex_unlock(&g->lock);
	return ok;
}

static pthread_t loop_thread;

/* The order in which jobs started, by tag. */
static pthread_mutex_t order_lock = PTHREAD_MUTEX_INITIALIZER;
static int order[64];
static unsigned int order_n;
static unsigned int done_count;
static bool done_on_loop = true;

struct tjob {
	struct worker_job job;  /* first */
	int tag;
	struct gate *wait;      /* blocks on this gate, if set */
	struct gate *started;   /* sets *started_flag under it, if set */
	bool *started_flag;
};

static void tjob_work(struct worker_job *job)
{
	struct tjob *t = (struct tjob *)job;
	pthread_mutex_lock(&order_lock);
	if (order_n < 64)
		order[order_n++] = t->tag;
	pthread_mutex_unlock(&order_lock);
	if (t->started != NULL) {
		pthread_mutex_lock(&t->started->lock);
		*t->started_flag = true;
		pthread_cond_broadcast(&t->started->cond);
		pthread_mutex_unlock(&t->started->lock);
	}
	if (t->wait != NULL)
		gate_pass(t->wait);
}

static void tjob_done(struct worker_job *job)
{
	(void)job;
	if (!pthread_equal(pthread_self(), loop_thread))
		done_on_loop = false;
	done_count++;
}

static void tjob_init(struct tjob *t, int tag, struct gate *wait)
{
	memset(t, 0, sizeof(*t));
	t->job.work = tjob_work;
	t->job.done = tjob_done;
	t->tag = tag;
	t->wait = wait;
}

static void run_until(struct event_base *base, unsigned int count)
{
	for (int i = 0; i < 100000 && done_count < count; i++)
		event_base_loop(base, EVLOOP_ONCE);
}

static void reset(void)
{
	order_n = 0;
	done_count = 0;
}

static int position(int tag)
{
	for (unsigned int i = 0; i < order_n; i++)
		if (order[i] == tag)
			return (int)i;
	return -1;
}

/* Two threads busy; three ordinary jobs queued, then a first-lane job: the
 * first thread to come free takes the first-lane job. */
static void test_first_lane_goes_first(struct event_base *base)
{
	reset();
	struct worker_pool *pool = worker_pool_create(base, 2);
	struct gate hold, started;
	gate_init(&hold);
	gate_init(&started);
	bool s1 = false, s2 = false;
	struct tjob b1, b2, o[3], f;
	tjob_init(&b1, 100, &hold);
	tjob_init(&b2, 101, &hold);
	b1.started = b2.started = &started;
	b1.started_flag = &s1;
	b2.started_flag = &s2;
	worker_pool_submit(pool, &b1.job);
	worker_pool_submit(pool, &b2.job);
	CHECK(wait_flag(&started, &s1));
	CHECK(wait_flag(&started, &s2));
	for (int i = 0; i < 3; i++) {
		tjob_init(&o[i], i, NULL);
		worker_pool_submit(pool, &o[i].job);
	}
	tjob_init(&f, 50, NULL);
	worker_pool_submit_first(pool, &f.job);
	CHECK_INT(worker_pool_pending(pool), 6);
	gate_open(&hold);
	run_until(base, 6);
	CHECK_INT(done_count, 6);
	CHECK_INT(worker_pool_pending(pool), 0);
	CHECK(position(50) >= 2);
	CHECK(position(50) < position(0));
	CHECK(position(0) < position(1));
	CHECK(position(1) < position(2));
	worker_pool_destroy(&pool);
	CHECK(pool == NULL);
}

/* Three threads; first-lane jobs that block fill at most two of them, so
 * an ordinary job submitted after them still runs while they block. */
static void test_first_lane_leaves_a_thread(struct event_base *base)
{
	reset();
	struct worker_pool *pool = worker_pool_create(base, 3);
	struct gate hold, started;
	gate_init(&hold);
	gate_init(&started);
	bool ordinary_started = false;
	struct tjob f[4], o;
	for (int i = 0; i < 4; i++) {
		tjob_init(&f[i], 10 + i, &hold);
		worker_pool_submit_first(pool, &f[i].job);
	}
	tjob_init(&o, 1, NULL);
	o.started = &started;
	o.started_flag = &ordinary_started;
	worker_pool_submit(pool, &o.job);
	CHECK(wait_flag(&started, &ordinary_started));
	run_until(base, 1);
	CHECK_INT(done_count, 1);
	pthread_mutex_lock(&order_lock);
	unsigned int firsts_started = order_n - 1;
	pthread_mutex_unlock(&order_lock);
	CHECK(firsts_started <= 2);
	gate_open(&hold);
	run_until(base, 5);
	CHECK_INT(done_count, 5);
	/* The first lane is FIFO too: 12 and 13 are taken only once 10 or 11
	 * has ended, and both of those noted their start before blocking. The
	 * order between two jobs started together on two threads is not
	 * observable here (each notes its start on its own thread). */
	CHECK(position(10) < position(12) && position(10) < position(13));
	CHECK(position(11) < position(12) && position(11) < position(13));
	worker_pool_destroy(&pool);
}

/* One thread: the first lane may use it (there is no other). */
static void test_one_thread(struct event_base *base)
{
	reset();
	struct worker_pool *pool = worker_pool_create(base, 1);
	struct tjob f, o;
	tjob_init(&o, 1, NULL);
	tjob_init(&f, 2, NULL);
	worker_pool_submit(pool, &o.job);
	worker_pool_submit_first(pool, &f.job);
	run_until(base, 2);
	CHECK_INT(done_count, 2);
	CHECK_INT(order_n, 2);
	worker_pool_destroy(&pool);
}

/* Destroy runs every queued job of both lanes (done() is not called). */
static void test_destroy_runs_queued(struct event_base *base)
{
	reset();
	struct worker_pool *pool = worker_pool_create(base, 2);
	struct tjob j[8];
	for (int i = 0; i < 8; i++) {
		tjob_init(&j[i], i, NULL);
		if (i % 2)
			worker_pool_submit_first(pool, &j[i].job);
		else
			worker_pool_submit(pool, &j[i].job);
	}
	worker_pool_destroy(&pool);
	CHECK_INT(order_n, 8);
}

int main(void)
{
	struct event_base *base = event_base_new();
	loop_thread = pthread_self();
	test_first_lane_goes_first(base);
	test_first_lane_leaves_a_thread(base);
	test_one_thread(base);
	test_destroy_runs_queued(base);
	CHECK(done_on_loop);
	event_base_free(base);
	TEST_MAIN_END();
}
