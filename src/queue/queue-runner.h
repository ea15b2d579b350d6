#ifndef TERN_QUEUE_RUNNER_H
#define TERN_QUEUE_RUNNER_H
/*
 * queue-runner: delivers the outbound queue (store_queue_*) to other
 * servers through lib-relay, retries with back-off, returns delivery
 * status notifications (RFC 3464) to senders, and takes over the queue of
 * a node of the same datacenter whose heartbeat has stopped.
 *
 * Threads: one scheduler thread reads the queue (every scan_interval, or
 * at once after queue_runner_kick()) and hands each destination domain to
 * one of `concurrency` delivery threads, so that a domain has at most one
 * connection at a time. Every store and network call runs on those
 * threads, never on the caller's (the event loop's).
 *
 * Guarantee: at least once. A message leaves the queue only after every
 * recipient was accepted by the next hop (250 after DATA), refused for
 * good (5xx: a DSN to the sender), or expired (max_lifetime: a DSN too).
 * Two nodes deliver the same message only when a node presumed dead (its
 * heartbeat older than the lease) is alive after all and delivers it at the
 * same time as its taker: tern_queue_duplicates_total counts the attempts
 * that found their entry already gone.
 */
#include <stdint.h>

#include "buf.h"

struct store;
struct relay;

struct queue_runner_settings {
	const char *node_id;       /* this node's share of the queue */
	const char *hostname;      /* Reporting-MTA and MAILER-DAEMON@ of DSNs */
	uint64_t retry_min_ms, retry_max_ms, max_lifetime_ms;
	uint64_t lease_ms, scan_interval_ms;
	unsigned int concurrency;  /* delivery threads = connections at a time */
};

struct queue_runner;

/* Starts the threads. The store and the relay must outlive the runner;
 * set's strings are copied. NULL with *error_r (static) when a thread
 * cannot be started. */
struct queue_runner *queue_runner_start(struct store *store, struct relay *relay,
					const struct queue_runner_settings *set,
					const char **error_r);
/* Reads the queue now instead of at the next interval (after a put or a
 * flush). Safe from any thread; never blocks on the store. */
void queue_runner_kick(struct queue_runner *q);
/* Stops the scheduler, cancels the relay (relay_cancel(): the deliveries
 * in flight end at once, their unfinished recipients due again at the next
 * start, the attempt not counted), joins the threads and frees. Returns in
 * about the time of the store writes that record what was learnt. */
void queue_runner_stop(struct queue_runner **q);

/* The retry interval after `attempts` failed attempts (1, 2, ...):
 * retry_min doubled attempts - 1 times, at most retry_max. */
uint64_t queue_retry_interval_ms(const struct queue_runner_settings *set, unsigned int attempts);
/* Which of the live nodes takes over dead_node's queue: the one with the
 * highest rendezvous score (a hash of both ids), so every live node agrees
 * without talking to the others. Returns the index in live, or -1 when
 * live_count is 0. */
int queue_takeover_winner(const char *dead_node, const char *const *live, unsigned int live_count);

#endif
