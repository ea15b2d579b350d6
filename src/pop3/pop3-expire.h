#ifndef TERN_POP3_EXPIRE_H
#define TERN_POP3_EXPIRE_H
/*
 * pop3-expire: the EXPIRE sweep (RFC 2449 6.7) of `tern serve`. Every
 * [pop3] expire_sweep_interval, the users are walked in batches on the
 * worker pool; each user's policy (their own, else [pop3] expire_days) is
 * applied to the messages they retrieved over POP3 more than that many
 * days ago (store_expire_mailbox). Messages never retrieved are never
 * touched. Each expiry is logged (a count per batch) and audited.
 *
 * Rate: at most POP3_EXPIRE_BATCH_USERS users and POP3_EXPIRE_BATCH_MESSAGES
 * expiries per batch, one batch at a time, batches a second apart; one job
 * of the pool at a time, so sessions keep the other workers.
 */
#include "session.h"

#define POP3_EXPIRE_BATCH_USERS 500
#define POP3_EXPIRE_BATCH_MESSAGES 1000

struct pop3_expire;

/* Starts the timer on env->base; the first pass runs one interval after
 * the start. env must outlive the sweep. */
struct pop3_expire *pop3_expire_start(const struct session_env *env);
/* Stops the timer. Call after the worker pool has been destroyed (a batch
 * in flight has finished then, its done() not called). */
void pop3_expire_stop(struct pop3_expire **e);

/* The policy in effect for a user whose own value is own (a store.h
 * STORE_EXPIRE_* value or days): the own value, else the default. */
int pop3_expire_effective(int own, int default_days);

#endif
