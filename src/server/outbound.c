/*
 * outbound: the DKIM key, the relay and the queue runner of `tern serve`
 * (see outbound.h).
 */
#include "outbound.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "dkim.h"
#include "log.h"
#include "queue-runner.h"
#include "relay.h"
#include "server.h"

struct outbound {
	struct dkim_key *dkim;
	struct relay *relay;
	struct queue_runner *runner;
	char *password;
};

struct dkim_key *outbound_load_dkim(const struct tern_settings *set, const char **error_r)
{
	if (set->dkim_domain == NULL)
		return NULL;
	return dkim_key_load(set->dkim_domain, set->dkim_selector, set->dkim_key_file, error_r);
}

/* The first line of [relay] password_file, or NULL with the problem
 * ("FILE:LINE: ...") in problems. */
static char *read_password(const struct tern_settings *set, struct buf *problems)
{
	FILE *f = fopen(set->relay_password_file, "r");
	if (f == NULL) {
		settings_add_key_problem(problems, set, "relay", "password_file",
					 "[relay] password_file %s: cannot read it: %s",
					 set->relay_password_file, strerror(errno));
		return NULL;
	}
	char line[1024];
	char *pw = NULL;
	if (fgets(line, sizeof(line), f) != NULL) {
		line[strcspn(line, "\r\n")] = '\0';
		if (line[0] != '\0')
			pw = xstrdup(line);
	}
	explicit_bzero(line, sizeof(line));
	fclose(f);
	if (pw == NULL)
		settings_add_key_problem(problems, set, "relay", "password_file",
					 "[relay] password_file %s: the first line is empty",
					 set->relay_password_file);
	return pw;
}

static void free_password(char **pw)
{
	if (*pw != NULL) {
		explicit_bzero(*pw, strlen(*pw));
		free(*pw);
		*pw = NULL;
	}
}

static void kick_runner(const struct session_env *env)
{
	queue_runner_kick(env->queue);
}

static const enum relay_tls tls_policies[] = {
	[SETTINGS_RELAY_TLS_MAY] = RELAY_TLS_MAY,
	[SETTINGS_RELAY_TLS_VERIFY] = RELAY_TLS_VERIFY,
	[SETTINGS_RELAY_TLS_DANE] = RELAY_TLS_DANE,
	[SETTINGS_RELAY_TLS_NONE] = RELAY_TLS_NONE,
};

/* The relay of [relay] (password: read from password_file, or NULL), or
 * NULL with the problem appended. */
static struct relay *make_relay(const struct tern_settings *set, const char *password,
				struct buf *problems)
{
	struct relay_settings rs = {
		.helo_name = set->hostname,
		.resolver = set->relay_resolver,
		.smarthost = set->relay_smarthost,
		.username = set->relay_username,
		.password = password,
		.tls = tls_policies[set->relay_tls],
		.ca_file = set->relay_ca_file,
		.trust_anchor_file = set->relay_trust_anchor_file,
		.port = set->relay_port,
		.connect_timeout_ms = (unsigned int)set->relay_connect_timeout_ms,
		.command_timeout_ms = (unsigned int)set->relay_command_timeout_ms,
		.data_timeout_ms = (unsigned int)(set->relay_command_timeout_ms * 2),
	};
	const char *error = NULL;
	struct relay *relay = relay_create(&rs, &error);
	if (relay == NULL)
		settings_add_problem(problems, "%s: [relay] %s", set->path, error);
	return relay;
}

/* The [dkim] key, or NULL (none configured, or the problem appended). */
static struct dkim_key *load_dkim(const struct tern_settings *set, struct buf *problems)
{
	if (set->dkim_domain == NULL)
		return NULL;
	const char *error = NULL;
	struct dkim_key *key = outbound_load_dkim(set, &error);
	if (key == NULL)
		settings_add_key_problem(problems, set, "dkim", "key_file", "[dkim] key_file %s: %s",
					 set->dkim_key_file, error);
	return key;
}

void outbound_preflight(const struct tern_settings *set, struct buf *problems)
{
	struct dkim_key *key = load_dkim(set, problems);
	dkim_key_free(&key);
	char *password = NULL;
	if (set->relay_password_file != NULL &&
	    (password = read_password(set, problems)) == NULL)
		return;
	struct relay *relay = make_relay(set, password, problems);
	relay_destroy(&relay);
	free_password(&password);
}

struct outbound *outbound_start(struct session_env *env, const struct tern_settings *set)
{
	struct outbound *o = xcalloc(1, sizeof(*o));
	const char *error = NULL;
	struct buf problems;
	buf_init(&problems, 0);
	if (set->dkim_domain != NULL) {
		if ((o->dkim = load_dkim(set, &problems)) == NULL)
			goto fail;
		log_info("dkim signing domain=%s selector=%s", set->dkim_domain, set->dkim_selector);
	}
	if (set->relay_password_file != NULL && (o->password = read_password(set, &problems)) == NULL)
		goto fail;
	if ((o->relay = make_relay(set, o->password, &problems)) == NULL)
		goto fail;
	struct queue_runner_settings qs = {
		.node_id = set->queue_node_id,
		.hostname = set->hostname,
		.retry_min_ms = set->queue_retry_min_ms,
		.retry_max_ms = set->queue_retry_max_ms,
		.max_lifetime_ms = set->queue_max_lifetime_ms,
		.lease_ms = set->queue_lease_ms,
		.scan_interval_ms = set->queue_scan_interval_ms,
		.concurrency = set->relay_concurrency,
	};
	o->runner = queue_runner_start(env->store, o->relay, &qs, &error);
	if (o->runner == NULL) {
		log_error("queue: %s", error);
		goto fail;
	}
	env->dkim = o->dkim;
	env->queue = o->runner;
	env->queued = kick_runner;
	log_info("queue started node=%s via=%s", set->queue_node_id,
		 set->relay_smarthost != NULL ? "smarthost" : "mx");
	buf_deinit(&problems);
	return o;
fail:
	serve_log_problems(&problems);
	buf_deinit(&problems);
	outbound_stop(&o, env);
	return NULL;
}

void outbound_kick(struct outbound *o)
{
	if (o != NULL)
		queue_runner_kick(o->runner);
}

void outbound_stop(struct outbound **op, struct session_env *env)
{
	struct outbound *o = *op;
	if (o == NULL)
		return;
	*op = NULL;
	env->queued = NULL;
	env->queue = NULL;
	env->dkim = NULL;
	queue_runner_stop(&o->runner);
	relay_destroy(&o->relay);
	dkim_key_free(&o->dkim);
	free_password(&o->password);
	free(o);
}
