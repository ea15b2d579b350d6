/*
 * outbound: the DKIM key, the relay and the queue runner of `tern serve`
 * (see outbound.h).
 */
#include "outbound.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "dkim.h"
#include "log.h"
#include "queue-runner.h"
#include "relay.h"

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

/* The first line of [relay] password_file, or NULL with a message logged. */
static char *read_password(const struct tern_settings *set)
{
	FILE *f = fopen(set->relay_password_file, "r");
	if (f == NULL) {
		log_error("%s: [relay] password_file %s: cannot read it", set->path, set->relay_password_file);
		return NULL;
	}
	char line[1024];
	char *pw = NULL;
	if (fgets(line, sizeof(line), f) != NULL) {
		line[strcspn(line, "\r\n")] = '\0';
		if (line[0] != '\0')
			pw = strdup(line);
	}
	explicit_bzero(line, sizeof(line));
	fclose(f);
	if (pw == NULL)
		log_error("%s: [relay] password_file %s: the first line is empty", set->path,
			  set->relay_password_file);
	return pw;
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

struct outbound *outbound_start(struct session_env *env, const struct tern_settings *set)
{
	struct outbound *o = calloc(1, sizeof(*o));
	if (o == NULL)
		return NULL;
	const char *error = NULL;
	if (set->dkim_domain != NULL) {
		o->dkim = outbound_load_dkim(set, &error);
		if (o->dkim == NULL) {
			log_error("%s: [dkim] %s", set->path, error);
			goto fail;
		}
		log_info("dkim signing domain=%s selector=%s", set->dkim_domain, set->dkim_selector);
	}
	if (set->relay_password_file != NULL && (o->password = read_password(set)) == NULL)
		goto fail;
	struct relay_settings rs = {
		.helo_name = set->hostname,
		.resolver = set->relay_resolver,
		.smarthost = set->relay_smarthost,
		.username = set->relay_username,
		.password = o->password,
		.tls = tls_policies[set->relay_tls],
		.ca_file = set->relay_ca_file,
		.trust_anchor_file = set->relay_trust_anchor_file,
		.port = set->relay_port,
		.connect_timeout_ms = (unsigned int)set->relay_connect_timeout_ms,
		.command_timeout_ms = (unsigned int)set->relay_command_timeout_ms,
		.data_timeout_ms = (unsigned int)(set->relay_command_timeout_ms * 2),
	};
	o->relay = relay_create(&rs, &error);
	if (o->relay == NULL) {
		log_error("%s: [relay] %s", set->path, error);
		goto fail;
	}
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
	return o;
fail:
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
	if (o->password != NULL) {
		explicit_bzero(o->password, strlen(o->password));
		free(o->password);
	}
	free(o);
}
