#ifndef TERN_AUTH_PENALTY_H
#define TERN_AUTH_PENALTY_H
/*
 * auth-penalty: the failed-login penalty per client address (IPv6 clients
 * counted per /64, the block one client usually holds), the equivalent of
 * Dovecot's auth penalty.
 *
 * The penalty is a wait taken *before* a password is checked, whether the
 * password turns out right or wrong: a guesser cannot learn from how soon
 * an answer comes, and parallel connections do not get their guesses
 * checked at once. With n failures remembered for an address the wait is
 * initial x 2^(n-1), capped at max (with 2 s and 15 s: 0, 2, 4, 8, 15,
 * 15 ... s). While it is non-zero the sessions run that address's checks
 * one at a time, so an address gets at most one check per wait.
 *
 * What forgets a penalty:
 * - `reset` milliseconds without a new failure from the address;
 * - a successful login by the user every remembered failure was for (who
 *   mistyped and then got it right). A success by another user from the
 *   same address forgets nothing: an attacker who owns one account must
 *   not be able to wipe the penalty earned by guessing at another's. Once
 *   the failures of an address were for two or more users, only `reset`
 *   forgets them. User names are compared by a keyed hash, not stored.
 *
 * Memory is bounded: a fixed table of AUTH_PENALTY_SETS x AUTH_PENALTY_WAYS
 * entries, the set chosen by a hash of the address under a random
 * per-process key. When a set is full the entry whose last failure is the
 * oldest is replaced, so a flood from many addresses can make the table
 * forget addresses, never grow. Event-loop thread only (no locking).
 */
#include <stdint.h>

#include "net.h"

#define AUTH_PENALTY_SETS 4096
#define AUTH_PENALTY_WAYS 8
/* The prefix length IPv6 addresses are cut to. */
#define AUTH_PENALTY_V6_PREFIX NET_CLIENT_V6_PREFIX

struct auth_penalty;

/* initial_ms: the wait after one failure; max_ms: its cap (raised to
 * initial_ms when smaller); reset_ms: how long without a failure before an
 * address is forgotten. */
struct auth_penalty *auth_penalty_create(unsigned int initial_ms, unsigned int max_ms,
					 unsigned int reset_ms);
void auth_penalty_destroy(struct auth_penalty **p);

/* The wait, in milliseconds, before the next password check from addr at
 * now_ms (a monotonic clock): 0 when the address has no penalty, else
 * initial x 2^(failures-1) capped at max. It does not shrink while time
 * passes (only `reset` forgets), so non-zero also means "this address has
 * a penalty: run its checks one at a time". */
unsigned int auth_penalty_delay(struct auth_penalty *p, const struct net_addr *addr,
				uint64_t now_ms);
/* Records a failed login from addr for user (the name as looked up, ""
 * when there was none) at now_ms. The count saturates; the wait is capped
 * anyway. */
void auth_penalty_fail(struct auth_penalty *p, const struct net_addr *addr, const char *user,
		       uint64_t now_ms);
/* Records a successful login by user from addr: forgets the address's
 * failures when every one of them was for this user, else changes
 * nothing. */
void auth_penalty_success(struct auth_penalty *p, const struct net_addr *addr,
			  const char *user);
/* The number of failures remembered for addr at now_ms (for logs and
 * tests). */
unsigned int auth_penalty_failures(struct auth_penalty *p, const struct net_addr *addr,
				   uint64_t now_ms);

#endif
