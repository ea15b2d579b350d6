#ifndef TERN_WORKER_POOL_H
#define TERN_WORKER_POOL_H
/*
 * worker-pool: a few threads that run blocking work (store calls, password
 * hashing) so the event loop never waits on fsync, the network or a hash.
 *
 * A job's work() runs on a worker thread; its done() then runs on the event
 * loop thread, never before worker_pool_submit() has returned. Jobs run in
 * parallel and complete in any order; callers that need ordering submit one
 * job at a time (each session does). The job struct is owned by the caller
 * and must stay valid until done() is called.
 *
 * Two lanes. worker_pool_submit_first() queues a job in the first lane: the
 * next free thread takes it before any job of the ordinary lane, so a
 * short, latency-bound job (a login) never waits behind queued bulk work
 * (RETR pieces, deliveries), only behind jobs already running. Both lanes
 * are FIFO. With more than one thread, at most threads - 1 run first-lane
 * jobs at once: one thread is always left to the ordinary lane, so a burst
 * of expensive first-lane jobs (password hashes) slows the other lane but
 * never stops it.
 *
 * Metrics (summed over every pool of the process): tern_worker_threads,
 * tern_worker_threads_busy, tern_worker_jobs_queued (waiting for a
 * thread), tern_worker_jobs_total and tern_worker_queue_wait_seconds.
 */
#include <stdbool.h>
#include <stdint.h>

struct event_base;
struct worker_pool;

struct worker_job {
	void (*work)(struct worker_job *job);  /* worker thread */
	void (*done)(struct worker_job *job);  /* event loop thread */
	struct worker_job *next;               /* private */
	uint64_t queued_ns;                    /* private: when it was submitted */
};

struct worker_pool *worker_pool_create(struct event_base *base, unsigned int threads);
/* Waits for all queued jobs to run (their done() callbacks are not called
 * any more), stops the threads and frees the pool. */
void worker_pool_destroy(struct worker_pool **pool);
void worker_pool_submit(struct worker_pool *pool, struct worker_job *job);
/* The first lane (see above). */
void worker_pool_submit_first(struct worker_pool *pool, struct worker_job *job);
/* Jobs submitted and not yet completed on the loop thread. */
unsigned int worker_pool_pending(const struct worker_pool *pool);
/* Optional per-thread hooks (e.g. to close thread-local database handles). */
void worker_pool_set_thread_exit(struct worker_pool *pool, void (*fn)(void));

#endif
