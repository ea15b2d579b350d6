#ifndef TERN_OUTBOUND_H
#define TERN_OUTBOUND_H
/*
 * outbound: what `tern serve` needs to send mail out, made from the
 * settings: the DKIM key ([dkim]), the relay ([relay]: MX delivery or a
 * smarthost) and the queue runner ([queue]), wired into the session
 * environment so that SMTP sessions sign what they queue and wake the
 * runner.
 */
#include "session.h"
#include "settings.h"

struct outbound;

/* Loads the key and starts the runner. NULL with a message logged on a
 * configuration problem (start-up then fails: EX_CONFIG). */
struct outbound *outbound_start(struct session_env *env, const struct tern_settings *set);
/* Wakes the runner (after POST /queue/flush). */
void outbound_kick(struct outbound *o);
/* Stops the runner (deliveries in flight are cut short: queue_runner_stop()),
 * frees the relay and the key. */
void outbound_stop(struct outbound **o, struct session_env *env);

/* What outbound_start() would refuse, without starting anything (`tern
 * check-config`): the [dkim] key (read and parsed), [relay] password_file
 * (readable, a first line), and the relay's own settings (smarthost and
 * resolver syntax, ca_file, trust_anchor_file). Appends one
 * "FILE[:LINE]: ..." line per problem. */
struct buf;
void outbound_preflight(const struct tern_settings *set, struct buf *problems);

/* The [dkim] key, loaded on its own (`tern dkim record`, check-config). */
struct dkim_key *outbound_load_dkim(const struct tern_settings *set, const char **error_r);

#endif
