/*
 * worker-pool: pthreads fed from two FIFOs (the first lane, then the
 * ordinary one); completions are handed back to the event loop through a
 * pipe whose read end is watched by libevent, so done() always runs on the
 * loop thread, one at a time.
 *
 * Wake-ups are the cost to keep small: a submit signals the condition
 * variable after releasing the lock (a woken thread does not block again on
 * it at once), a thread that finishes a job takes the next one without
 * sleeping, and a thread writes to the pipe only when the completion list
 * was empty (the loop drains all completions per wake-up).
 */
#include "worker-pool.h"

#include <errno.h>
#include <event2/event.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "buf.h"
#include "log.h"
#include "metrics.h"

struct worker_pool {
	struct event_base *base;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	struct worker_job *queue_head, *queue_tail;
	struct worker_job *first_head, *first_tail;  /* the first lane */
	struct worker_job *done_head, *done_tail;
	pthread_t *threads;
	unsigned int nthreads;
	unsigned int first_max, first_running;  /* under lock */
	unsigned int pending;  /* loop thread only */
	bool stopping;
	int notify_fd[2];
	struct event *notify_ev;
	void (*thread_exit)(void);
};

static const struct metrics_def threads_def = {
	METRICS_GAUGE, "tern_worker_threads", "Worker threads (store calls, password hashing).",
	NULL, NULL, 0, 0,
};
static const struct metrics_def busy_def = {
	METRICS_GAUGE, "tern_worker_threads_busy", "Worker threads running a job now.",
	NULL, NULL, 0, 0,
};
static const struct metrics_def queued_def = {
	METRICS_GAUGE, "tern_worker_jobs_queued", "Jobs waiting for a free worker thread.",
	NULL, NULL, 0, 0,
};
static const struct metrics_def jobs_def = {
	METRICS_COUNTER, "tern_worker_jobs_total", "Jobs run on the worker threads.",
	NULL, NULL, 0, 0,
};
static const struct metrics_def wait_def = {
	METRICS_HISTOGRAM, "tern_worker_queue_wait_seconds",
	"Time a job waited for a worker thread, from its submission to its start.", NULL,
	metrics_latency_buckets_ns, METRICS_LATENCY_BUCKET_COUNT, 1e-9,
};
static struct metrics_series *m_threads, *m_busy, *m_queued, *m_jobs, *m_wait;
static pthread_once_t metrics_once = PTHREAD_ONCE_INIT;

static void metrics_init(void)
{
	m_threads = metrics_single(&threads_def);
	m_busy = metrics_single(&busy_def);
	m_queued = metrics_single(&queued_def);
	m_jobs = metrics_single(&jobs_def);
	m_wait = metrics_single(&wait_def);
}

/* Under the lock: the job a free thread runs next, or NULL. */
static struct worker_job *take_job(struct worker_pool *pool, bool *first_r)
{
	struct worker_job *job = pool->first_head;
	if (job != NULL && pool->first_running < pool->first_max) {
		pool->first_head = job->next;
		if (pool->first_head == NULL)
			pool->first_tail = NULL;
		pool->first_running++;
		*first_r = true;
		return job;
	}
	job = pool->queue_head;
	if (job != NULL) {
		pool->queue_head = job->next;
		if (pool->queue_head == NULL)
			pool->queue_tail = NULL;
		*first_r = false;
	}
	return job;
}

static void *worker_main(void *arg)
{
	struct worker_pool *pool = arg;
	pthread_mutex_lock(&pool->lock);
	for (;;) {
		bool first = false;
		struct worker_job *job = take_job(pool, &first);
		if (job == NULL) {
			if (pool->stopping && pool->queue_head == NULL && pool->first_head == NULL)
				break;
			pthread_cond_wait(&pool->cond, &pool->lock);
			continue;
		}
		pthread_mutex_unlock(&pool->lock);
		metrics_gauge_add(m_queued, -1);
		metrics_observe_since(m_wait, job->queued_ns);
		metrics_gauge_add(m_busy, 1);

		job->work(job);
		metrics_gauge_add(m_busy, -1);
		metrics_inc(m_jobs);

		pthread_mutex_lock(&pool->lock);
		job->next = NULL;
		bool was_empty = pool->done_head == NULL;
		if (pool->done_tail != NULL)
			pool->done_tail->next = job;
		else
			pool->done_head = job;
		pool->done_tail = job;
		/* A first-lane job left waiting for this slot can run now. */
		bool wake = first && pool->first_running-- == pool->first_max &&
			    pool->first_head != NULL;
		if (was_empty || wake) {
			pthread_mutex_unlock(&pool->lock);
			if (wake)
				pthread_cond_signal(&pool->cond);
			if (was_empty) {
				char c = 1;
				while (write(pool->notify_fd[1], &c, 1) < 0 && errno == EINTR)
					;
			}
			pthread_mutex_lock(&pool->lock);
		}
	}
	pthread_mutex_unlock(&pool->lock);
	if (pool->thread_exit != NULL)
		pool->thread_exit();
	return NULL;
}

static void notify_cb(evutil_socket_t fd, short what, void *arg)
{
	struct worker_pool *pool = arg;
	char drain[64];
	while (read(fd, drain, sizeof(drain)) > 0)
		;
	pthread_mutex_lock(&pool->lock);
	struct worker_job *job = pool->done_head;
	pool->done_head = pool->done_tail = NULL;
	pthread_mutex_unlock(&pool->lock);
	while (job != NULL) {
		struct worker_job *next = job->next;
		pool->pending--;
		job->done(job);
		job = next;
	}
}

struct worker_pool *worker_pool_create(struct event_base *base, unsigned int threads)
{
	pthread_once(&metrics_once, metrics_init);
	struct worker_pool *pool = xcalloc(1, sizeof(*pool));
	pool->base = base;
	pthread_mutex_init(&pool->lock, NULL);
	pthread_cond_init(&pool->cond, NULL);
	if (pipe2(pool->notify_fd, O_NONBLOCK | O_CLOEXEC) < 0)
		fatal("pipe: %s", strerror(errno));
	pool->notify_ev = event_new(base, pool->notify_fd[0], EV_READ | EV_PERSIST,
				    notify_cb, pool);
	event_add(pool->notify_ev, NULL);
	pool->nthreads = threads;
	pool->first_max = threads > 1 ? threads - 1 : 1;
	pool->threads = xcalloc(threads, sizeof(pthread_t));
	metrics_gauge_add(m_threads, threads);
	for (unsigned int i = 0; i < threads; i++) {
		if (pthread_create(&pool->threads[i], NULL, worker_main, pool) != 0)
			fatal("pthread_create failed");
	}
	return pool;
}

void worker_pool_set_thread_exit(struct worker_pool *pool, void (*fn)(void))
{
	pool->thread_exit = fn;
}

static void submit(struct worker_pool *pool, struct worker_job *job, bool first)
{
	job->next = NULL;
	job->queued_ns = metrics_now_ns();
	metrics_gauge_add(m_queued, 1);
	pool->pending++;
	pthread_mutex_lock(&pool->lock);
	struct worker_job **head = first ? &pool->first_head : &pool->queue_head;
	struct worker_job **tail = first ? &pool->first_tail : &pool->queue_tail;
	if (*tail != NULL)
		(*tail)->next = job;
	else
		*head = job;
	*tail = job;
	pthread_mutex_unlock(&pool->lock);
	pthread_cond_signal(&pool->cond);
}

void worker_pool_submit(struct worker_pool *pool, struct worker_job *job)
{
	submit(pool, job, false);
}

void worker_pool_submit_first(struct worker_pool *pool, struct worker_job *job)
{
	submit(pool, job, true);
}

unsigned int worker_pool_pending(const struct worker_pool *pool)
{
	return pool->pending;
}

void worker_pool_destroy(struct worker_pool **poolp)
{
	struct worker_pool *pool = *poolp;
	if (pool == NULL)
		return;
	*poolp = NULL;
	pthread_mutex_lock(&pool->lock);
	pool->stopping = true;
	pthread_cond_broadcast(&pool->cond);
	pthread_mutex_unlock(&pool->lock);
	for (unsigned int i = 0; i < pool->nthreads; i++)
		pthread_join(pool->threads[i], NULL);
	metrics_gauge_add(m_threads, -(int64_t)pool->nthreads);
	event_free(pool->notify_ev);
	close(pool->notify_fd[0]);
	close(pool->notify_fd[1]);
	pthread_mutex_destroy(&pool->lock);
	pthread_cond_destroy(&pool->cond);
	free(pool->threads);
	free(pool);
}
