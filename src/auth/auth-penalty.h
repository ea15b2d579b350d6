#ifndef TERN_AUTH_PENALTY_H
#define TERN_AUTH_PENALTY_H
/*
 * auth-penalty: the failed-authentication delay per client address. Each
 * failure from an address doubles the delay applied to its next failure
 * reply, from `initial` up to `max` (with 2 s and 15 s: 2, 4, 8, 15, 15 ...);
 * a success, or `reset` without a failure, forgets the address. IPv6
 * clients are counted per /64, the block one client usually holds.
 *
 * Memory is bounded: a fixed table of AUTH_PENALTY_SETS x AUTH_PENALTY_WAYS
 * entries; when a set is full the entry with the oldest failure is
 * replaced, so a flood from many addresses can only make the delay
 * forget addresses, never grow memory. Event-loop thread only.
 */
#include <stdint.h>

#include "net.h"

struct auth_penalty;

struct auth_penalty *auth_penalty_create(unsigned int initial_ms, unsigned int max_ms,
					 unsigned int reset_ms);
void auth_penalty_destroy(struct auth_penalty **p);

/* Records a failure from addr at now_ms (a monotonic clock) and returns
 * the delay, in milliseconds, to apply before answering it. */
unsigned int auth_penalty_fail(struct auth_penalty *p, const struct net_addr *addr,
			       uint64_t now_ms);
/* Forgets addr's failures (after a successful login). */
void auth_penalty_success(struct auth_penalty *p, const struct net_addr *addr);
/* The number of failures remembered for addr (for logs and tests). */
unsigned int auth_penalty_failures(struct auth_penalty *p, const struct net_addr *addr,
				   uint64_t now_ms);

#endif
