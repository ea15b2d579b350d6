/*
 * settings: the table of known keys, their parsers and defaults. Values are
 * validated as they are read so that the error names the line; the listen
 * lists are checked for syntax here and resolved when the daemon binds.
 * A store backend's section ([cassandra]) is validated against the keys the
 * backend declares (store_option_lookup), with the same errors, and its
 * values go to store.options; nothing here names a backend's keys.
 */
#include "settings.h"

#include <errno.h>
#include <limits.h>
#include <grp.h>
#include <openssl/ssl.h>
#include <pwd.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "buf.h"
#include "ini.h"
#include "net.h"

enum key_type {
	KEY_STRING, KEY_LISTEN, KEY_SIZE, KEY_UINT, KEY_ENUM,
	KEY_DURATION,  /* unsigned int milliseconds: "90", "90s", "500ms", "5m", "1h" */
	KEY_BOOL,      /* yes/no, true/false, on/off, 1/0 */
	KEY_NETS,      /* comma-separated CIDR ranges, kept as text, parsed at load */
	KEY_BACKEND,   /* a store backend of this build, kept as text */
	KEY_LIMIT,     /* uint64_t: "none" (SETTINGS_NO_LIMIT, 0) or a size/count of at least 1 */
	KEY_DAYS,      /* int: "never" (SETTINGS_EXPIRE_NEVER) or 0..36500 days */
	KEY_PERIOD,    /* uint64_t milliseconds: as KEY_DURATION, and "5d"; at most 365 days */
	KEY_PORT,      /* unsigned int 1..65535 */
};

struct key_def {
	const char *section, *key;
	enum key_type type;
	size_t offset;
	const char *const *choices; /* KEY_ENUM: index = value */
};

static const char *const bare_lf_choices[] = { "normalize", "reject", NULL };
static const char *const plaintext_choices[] = { "tls_or_loopback", "always", "tls", NULL };
static const char *const pop3_ids_choices[] = { "messageid", "uid", NULL };
static const char *const tls_version_choices[] = { "1.2", "1.3", NULL };
static const char *const log_target_choices[] = { "stderr", "syslog", NULL };
static const char *const log_level_choices[] = { "debug", "info", "warn", "error", NULL };
static const char *const relay_tls_choices[] = { "may", "verify", "dane", "none", NULL };

#define OFF(f) offsetof(struct tern_settings, f)
static const struct key_def keys[] = {
	{ "server", "hostname", KEY_STRING, OFF(hostname), NULL },
	{ "server", "data_dir", KEY_STRING, OFF(data_dir), NULL },
	{ "server", "user", KEY_STRING, OFF(user), NULL },
	{ "server", "group", KEY_STRING, OFF(group), NULL },
	{ "server", "log", KEY_ENUM, OFF(log_target), log_target_choices },
	{ "server", "log_level", KEY_ENUM, OFF(log_level), log_level_choices },
	{ "server", "audit_log", KEY_STRING, OFF(audit_log), NULL },
	{ "smtp", "listen", KEY_LISTEN, OFF(smtp_listen), NULL },
	{ "smtp", "listen_tls", KEY_LISTEN, OFF(smtp_listen_tls), NULL },
	{ "smtp", "max_message_size", KEY_SIZE, OFF(max_message_size), NULL },
	{ "smtp", "max_recipients", KEY_UINT, OFF(max_recipients), NULL },
	{ "smtp", "idle_timeout", KEY_DURATION, OFF(smtp_idle_timeout_ms), NULL },
	{ "smtp", "bare_lf", KEY_ENUM, OFF(bare_lf), bare_lf_choices },
	{ "lmtp", "listen", KEY_LISTEN, OFF(lmtp_listen), NULL },
	{ "lmtp", "starttls", KEY_BOOL, OFF(lmtp_starttls), NULL },
	{ "lmtp", "idle_timeout", KEY_DURATION, OFF(lmtp_idle_timeout_ms), NULL },
	{ "pop3", "listen", KEY_LISTEN, OFF(pop3_listen), NULL },
	{ "pop3", "listen_tls", KEY_LISTEN, OFF(pop3_listen_tls), NULL },
	{ "pop3", "idle_timeout", KEY_DURATION, OFF(pop3_idle_timeout_ms), NULL },
	{ "pop3", "expire_days", KEY_DAYS, OFF(pop3_expire_days), NULL },
	{ "pop3", "expire_sweep_interval", KEY_DURATION, OFF(pop3_expire_sweep_interval_ms), NULL },
	{ "pop3", "login_delay", KEY_DURATION, OFF(pop3_login_delay_ms), NULL },
	{ "tls", "cert", KEY_STRING, OFF(tls_cert), NULL },
	{ "tls", "key", KEY_STRING, OFF(tls_key), NULL },
	{ "tls", "min_version", KEY_ENUM, OFF(tls_min_version), tls_version_choices },
	{ "tls", "ciphers", KEY_STRING, OFF(tls_ciphers), NULL },
	{ "tls", "ciphersuites", KEY_STRING, OFF(tls_ciphersuites), NULL },
	{ "auth", "plaintext", KEY_ENUM, OFF(plaintext), plaintext_choices },
	{ "auth", "trusted_networks", KEY_NETS, OFF(trusted_networks_text), NULL },
	{ "auth", "failure_delay_initial", KEY_DURATION, OFF(auth_failure_delay_initial_ms), NULL },
	{ "auth", "failure_delay_max", KEY_DURATION, OFF(auth_failure_delay_max_ms), NULL },
	{ "auth", "failure_reset", KEY_DURATION, OFF(auth_failure_reset_ms), NULL },
	{ "auth", "cache_ttl", KEY_DURATION, OFF(auth_cache_ttl_ms), NULL },
	{ "auth", "max_response", KEY_SIZE, OFF(auth_response_max), NULL },
	{ "auth", "oauth_jwks_file", KEY_STRING, OFF(oauth_jwks_file), NULL },
	{ "auth", "oauth_issuer", KEY_STRING, OFF(oauth_issuer), NULL },
	{ "auth", "oauth_audience", KEY_STRING, OFF(oauth_audience), NULL },
	{ "auth", "oauth_user_claim", KEY_STRING, OFF(oauth_user_claim), NULL },
	{ "limits", "max_connections", KEY_UINT, OFF(max_connections), NULL },
	{ "limits", "max_connections_per_ip", KEY_UINT, OFF(max_connections_per_ip), NULL },
	{ "limits", "max_bad_commands", KEY_UINT, OFF(max_bad_commands), NULL },
	{ "limits", "idle_timeout_preauth", KEY_DURATION, OFF(idle_timeout_preauth_ms), NULL },
	{ "limits", "login_timeout", KEY_DURATION, OFF(login_timeout_ms), NULL },
	{ "limits", "command_timeout", KEY_DURATION, OFF(command_timeout_ms), NULL },
	{ "limits", "min_data_rate", KEY_SIZE, OFF(min_data_rate), NULL },
	{ "limits", "line_max_preauth", KEY_SIZE, OFF(line_max_preauth), NULL },
	{ "limits", "line_max", KEY_SIZE, OFF(line_max), NULL },
	{ "limits", "input_buffer_preauth", KEY_SIZE, OFF(input_buffer_preauth), NULL },
	{ "limits", "input_buffer", KEY_SIZE, OFF(input_buffer), NULL },
	{ "store", "backend", KEY_BACKEND, OFF(store_backend), NULL },
	{ "store", "pop3_ids", KEY_ENUM, OFF(store.pop3_ids), pop3_ids_choices },
	{ "admin", "listen", KEY_LISTEN, OFF(admin_listen), NULL },
	{ "admin", "token_file", KEY_STRING, OFF(admin_token_file), NULL },
	{ "admin", "tls", KEY_BOOL, OFF(admin_tls), NULL },
	{ "admin", "metrics_public", KEY_BOOL, OFF(admin_metrics_public), NULL },
	{ "quota", "messages", KEY_LIMIT, OFF(quota_messages), NULL },
	{ "quota", "octets", KEY_LIMIT, OFF(quota_octets), NULL },
	{ "submission", "listen", KEY_LISTEN, OFF(submission_listen), NULL },
	{ "submission", "listen_tls", KEY_LISTEN, OFF(submission_listen_tls), NULL },
	{ "queue", "node_id", KEY_STRING, OFF(queue_node_id), NULL },
	{ "queue", "retry_min", KEY_PERIOD, OFF(queue_retry_min_ms), NULL },
	{ "queue", "retry_max", KEY_PERIOD, OFF(queue_retry_max_ms), NULL },
	{ "queue", "max_lifetime", KEY_PERIOD, OFF(queue_max_lifetime_ms), NULL },
	{ "queue", "lease", KEY_PERIOD, OFF(queue_lease_ms), NULL },
	{ "queue", "scan_interval", KEY_PERIOD, OFF(queue_scan_interval_ms), NULL },
	{ "relay", "smarthost", KEY_STRING, OFF(relay_smarthost), NULL },
	{ "relay", "resolver", KEY_STRING, OFF(relay_resolver), NULL },
	{ "relay", "username", KEY_STRING, OFF(relay_username), NULL },
	{ "relay", "password_file", KEY_STRING, OFF(relay_password_file), NULL },
	{ "relay", "tls", KEY_ENUM, OFF(relay_tls), relay_tls_choices },
	{ "relay", "ca_file", KEY_STRING, OFF(relay_ca_file), NULL },
	{ "relay", "trust_anchor_file", KEY_STRING, OFF(relay_trust_anchor_file), NULL },
	{ "relay", "port", KEY_PORT, OFF(relay_port), NULL },
	{ "relay", "concurrency", KEY_UINT, OFF(relay_concurrency), NULL },
	{ "relay", "connect_timeout", KEY_PERIOD, OFF(relay_connect_timeout_ms), NULL },
	{ "relay", "command_timeout", KEY_PERIOD, OFF(relay_command_timeout_ms), NULL },
	{ "dkim", "domain", KEY_STRING, OFF(dkim_domain), NULL },
	{ "dkim", "selector", KEY_STRING, OFF(dkim_selector), NULL },
	{ "dkim", "key_file", KEY_STRING, OFF(dkim_key_file), NULL },
};

static char reason_buf[512];

static int parse_size(const char *v, uint64_t *out)
{
	char *end;
	if (*v < '0' || *v > '9')
		return -1;
	errno = 0;
	unsigned long long n = strtoull(v, &end, 10);
	if (errno == ERANGE)
		return -1;
	uint64_t mult = 1;
	if (*end == 'k' || *end == 'K')
		mult = 1024, end++;
	else if (*end == 'm' || *end == 'M')
		mult = 1024 * 1024, end++;
	else if (*end == 'g' || *end == 'G')
		mult = 1024ULL * 1024 * 1024, end++;
	if (*end == 'B' || *end == 'b')
		end++;
	if (*end != '\0' || n > UINT64_MAX / mult)
		return -1;
	*out = n * mult;
	return 0;
}

/* "90" (seconds), "90s", "500ms", "5m", "1h"; at most one day. */
static int parse_duration(const char *v, unsigned int *ms_r)
{
	char *end;
	if (*v < '0' || *v > '9')
		return -1;
	unsigned long long n = strtoull(v, &end, 10);
	unsigned long long mult;
	if (*end == '\0' || strcmp(end, "s") == 0)
		mult = 1000;
	else if (strcmp(end, "ms") == 0)
		mult = 1;
	else if (strcmp(end, "m") == 0)
		mult = 60 * 1000;
	else if (strcmp(end, "h") == 0)
		mult = 3600 * 1000;
	else
		return -1;
	if (n > 86400ULL * 1000 || n * mult > 86400ULL * 1000)
		return -1;
	*ms_r = (unsigned int)(n * mult);
	return 0;
}

/* As parse_duration, and days ("5d"); at most 365 days. */
static int parse_period(const char *v, uint64_t *ms_r)
{
	char *end;
	if (*v < '0' || *v > '9')
		return -1;
	unsigned long long n = strtoull(v, &end, 10);
	if (strcmp(end, "d") != 0) {
		unsigned int ms;
		if (parse_duration(v, &ms) < 0)
			return -1;
		*ms_r = ms;
		return 0;
	}
	if (n > 365)
		return -1;
	*ms_r = n * 86400ULL * 1000;
	return 0;
}

static int parse_bool(const char *v, bool *b_r)
{
	static const char *const yes[] = { "yes", "true", "on", "1", NULL };
	static const char *const no[] = { "no", "false", "off", "0", NULL };
	for (int i = 0; yes[i] != NULL; i++) {
		if (strcmp(v, yes[i]) == 0) {
			*b_r = true;
			return 0;
		}
		if (strcmp(v, no[i]) == 0) {
			*b_r = false;
			return 0;
		}
	}
	return -1;
}

/* "host:port[, host:port ...]"; IPv6 hosts in brackets. */
static int listen_ok(void *ctx, const char *host, const char *port)
{
	return 0;
}

/* "host:port[, host:port]"; IPv6 hosts in brackets. */
static int check_listen(const char *v)
{
	return net_listen_list_foreach(v, listen_ok, NULL);
}

static int on_section(void *ctx, const char *section, const char **error_r)
{
	for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++)
		if (strcmp(keys[i].section, section) == 0)
			return 0;
	if (store_section_exists(section))
		return 0;
	snprintf(reason_buf, sizeof(reason_buf), "unknown section [%s]", section);
	*error_r = reason_buf;
	return -1;
}

static int unknown_key(const char *section, const char *key, const char **error_r)
{
	snprintf(reason_buf, sizeof(reason_buf), "unknown key \"%s\" in [%s]", key, section);
	*error_r = reason_buf;
	return -1;
}

/* The index of value in choices, or -1 with the error listing them. */
static int enum_choice(const char *key, const char *value, const char *const *choices,
		       const char **error_r)
{
	for (int i = 0; choices[i] != NULL; i++)
		if (strcmp(choices[i], value) == 0)
			return i;
	struct buf b;
	buf_init(&b, sizeof(reason_buf) - 1);
	buf_printf(&b, "%s: invalid value \"%.100s\" (expected one of:", key, value);
	for (int i = 0; choices[i] != NULL; i++)
		buf_printf(&b, " %s", choices[i]);
	buf_append_c(&b, ')');
	str_copy(reason_buf, b.data, sizeof(reason_buf));
	buf_deinit(&b);
	*error_r = reason_buf;
	return -1;
}

/* A key of a backend's own section, checked against what it declares. */
static int on_backend_key(struct tern_settings *set, const char *section, const char *key,
			  const char *value, const char **error_r)
{
	const struct store_option_def *def = store_option_lookup(section, key);
	if (def == NULL)
		return unknown_key(section, key, error_r);
	if (def->type == STORE_OPTION_ENUM && enum_choice(key, value, def->choices, error_r) < 0)
		return -1;
	store_settings_set(&set->store, section, key, value);
	return 0;
}

static int on_key(void *ctx, const char *section, const char *key, const char *value,
		  unsigned int line, const char **error_r)
{
	struct tern_settings *set = ctx;
	if (strcmp(section, "tls") == 0 && (strcmp(key, "cert") == 0 || strcmp(key, "key") == 0))
		set->tls_line = line;
	if (strcmp(section, "server") == 0 && strcmp(key, "user") == 0)
		set->user_line = line;
	if (strcmp(section, "server") == 0 && strcmp(key, "group") == 0)
		set->group_line = line;
	if (strcmp(section, "admin") == 0 && strcmp(key, "listen") == 0)
		set->admin_line = line;
	if (strcmp(section, "dkim") == 0 && set->dkim_line == 0)
		set->dkim_line = line;
	const struct key_def *def = NULL;
	for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++)
		if (strcmp(keys[i].section, section) == 0 && strcmp(keys[i].key, key) == 0)
			def = &keys[i];
	if (def == NULL && store_section_exists(section))
		return on_backend_key(set, section, key, value, error_r);
	if (def == NULL)
		return unknown_key(section, key, error_r);
	set->key_lines[def - keys] = line;
	void *field = (char *)set + def->offset;
	switch (def->type) {
	case KEY_LISTEN:
		if (*value != '\0' && check_listen(value) < 0) {
			snprintf(reason_buf, sizeof(reason_buf),
				 "%s: invalid listen value \"%.200s\" (expected host:port[, host:port])",
				 key, value);
			*error_r = reason_buf;
			return -1;
		}
		/* fall through */
	case KEY_STRING:
		free(*(char **)field);
		*(char **)field = xstrdup(value);
		return 0;
	case KEY_LIMIT:
		if (strcmp(value, "none") == 0) {
			*(uint64_t *)field = SETTINGS_NO_LIMIT;
			return 0;
		}
		if (parse_size(value, field) < 0 || *(uint64_t *)field == 0) {
			snprintf(reason_buf, sizeof(reason_buf),
				 "%s: invalid limit \"%.200s\" (expected none, or a number of at least 1 with an optional K, M or G)",
				 key, value);
			*error_r = reason_buf;
			return -1;
		}
		return 0;
	case KEY_DAYS: {
		char *end;
		unsigned long n = strtoul(value, &end, 10);
		if (strcmp(value, "never") == 0) {
			*(int *)field = SETTINGS_EXPIRE_NEVER;
			return 0;
		}
		if (*value < '0' || *value > '9' || *end != '\0' || n > 36500) {
			snprintf(reason_buf, sizeof(reason_buf),
				 "%s: invalid value \"%.200s\" (expected never, or a number of days 0..36500)",
				 key, value);
			*error_r = reason_buf;
			return -1;
		}
		*(int *)field = (int)n;
		return 0;
	}
	case KEY_SIZE:
		if (parse_size(value, field) < 0) {
			snprintf(reason_buf, sizeof(reason_buf),
				 "%s: invalid size \"%.200s\" (expected a number with an optional K, M or G)",
				 key, value);
			*error_r = reason_buf;
			return -1;
		}
		return 0;
	case KEY_DURATION:
		if (parse_duration(value, field) < 0) {
			snprintf(reason_buf, sizeof(reason_buf),
				 "%s: invalid duration \"%.200s\" (expected e.g. 30s, 500ms, 5m, 1h; at most 24h)",
				 key, value);
			*error_r = reason_buf;
			return -1;
		}
		return 0;
	case KEY_PERIOD:
		if (parse_period(value, field) < 0) {
			snprintf(reason_buf, sizeof(reason_buf),
				 "%s: invalid duration \"%.200s\" (expected e.g. 30s, 5m, 1h, 5d; at most 365d)",
				 key, value);
			*error_r = reason_buf;
			return -1;
		}
		return 0;
	case KEY_PORT: {
		char *end;
		unsigned long n = strtoul(value, &end, 10);
		if (*value < '0' || *value > '9' || *end != '\0' || n == 0 || n > 65535) {
			snprintf(reason_buf, sizeof(reason_buf),
				 "%s: invalid port \"%.200s\" (expected 1..65535)", key, value);
			*error_r = reason_buf;
			return -1;
		}
		*(unsigned int *)field = (unsigned int)n;
		return 0;
	}
	case KEY_BOOL:
		if (parse_bool(value, field) < 0) {
			snprintf(reason_buf, sizeof(reason_buf),
				 "%s: invalid value \"%.200s\" (expected yes or no)", key, value);
			*error_r = reason_buf;
			return -1;
		}
		return 0;
	case KEY_NETS: {
		const char *bad;
		int n = net_range_list_parse(value, set->trusted_networks, SETTINGS_TRUSTED_MAX,
					     &bad);
		if (n < 0) {
			snprintf(reason_buf, sizeof(reason_buf),
				 "%s: invalid network \"%.100s\" (expected a comma-separated list of address[/prefix], at most %d)",
				 key, bad, SETTINGS_TRUSTED_MAX);
			*error_r = reason_buf;
			return -1;
		}
		set->trusted_network_count = (unsigned int)n;
		free(*(char **)field);
		*(char **)field = xstrdup(value);
		return 0;
	}
	case KEY_UINT: {
		char *end;
		unsigned long n = strtoul(value, &end, 10);
		if (*value < '0' || *value > '9' || *end != '\0' || n == 0 || n > 100000) {
			snprintf(reason_buf, sizeof(reason_buf),
				 "%s: invalid number \"%.200s\" (expected 1..100000)", key, value);
			*error_r = reason_buf;
			return -1;
		}
		*(unsigned int *)field = (unsigned int)n;
		return 0;
	}
	case KEY_BACKEND:
		if (enum_choice(key, value, store_backend_names(), error_r) < 0)
			return -1;
		free(*(char **)field);
		*(char **)field = xstrdup(value);
		return 0;
	case KEY_ENUM: {
		int i = enum_choice(key, value, def->choices, error_r);
		if (i < 0)
			return -1;
		if (def->choices == tls_version_choices)
			*(int *)field = i == 0 ? TLS1_2_VERSION : TLS1_3_VERSION;
		else
			*(int *)field = i;
		return 0;
	}
	}
	return -1;
}

void settings_add_problem(struct buf *problems, const char *fmt, ...)
{
	if (problems->len > 0)
		buf_append_c(problems, '\n');
	va_list ap;
	va_start(ap, fmt);
	buf_vprintf(problems, fmt, ap);
	va_end(ap);
}

unsigned int settings_key_line(const struct tern_settings *set, const char *section,
			       const char *key)
{
	for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++)
		if (strcmp(keys[i].section, section) == 0 && strcmp(keys[i].key, key) == 0)
			return set->key_lines != NULL ? set->key_lines[i] : 0;
	return 0;
}

void settings_add_key_problem(struct buf *problems, const struct tern_settings *set,
			      const char *section, const char *key, const char *fmt, ...)
{
	unsigned int line = settings_key_line(set, section, key);
	if (line > 0)
		settings_add_problem(problems, "%s:%u: ", set->path, line);
	else
		settings_add_problem(problems, "%s: ", set->path);
	va_list ap;
	va_start(ap, fmt);
	buf_vprintf(problems, fmt, ap);
	va_end(ap);
}

static void forget_user(struct tern_settings *set)
{
	free(set->user);
	free(set->group);
	set->user = set->group = NULL;
}

/* [server] user and group: the ids to drop to, looked up now so that a
 * name that does not exist is a configuration error with its line. When
 * they cannot be resolved, the settings name no user (for check-config,
 * which looks further). */
static void resolve_user(struct tern_settings *set, struct buf *problems)
{
	if (set->user != NULL && *set->user == '\0') {
		free(set->user);
		set->user = NULL;
	}
	if (set->group != NULL && *set->group == '\0') {
		free(set->group);
		set->group = NULL;
	}
	if (set->user == NULL) {
		if (set->group != NULL)
			settings_add_problem(problems, "%s:%u: [server] group needs user: tern drops to a user and its group, never to a group alone",
				    set->path, set->group_line);
		forget_user(set);
		return;
	}
	char buf[16384];
	struct passwd pw, *pwp = NULL;
	int err = getpwnam_r(set->user, &pw, buf, sizeof(buf), &pwp);
	if (pwp == NULL) {
		settings_add_problem(problems, "%s:%u: [server] user \"%.100s\": %s", set->path, set->user_line,
			    set->user, err != 0 ? strerror(err) : "no such user");
		forget_user(set);
		return;
	}
	set->uid = pw.pw_uid;
	set->gid = pw.pw_gid;
	if (set->group == NULL)
		return;
	struct group gr, *grp = NULL;
	err = getgrnam_r(set->group, &gr, buf, sizeof(buf), &grp);
	if (grp == NULL) {
		settings_add_problem(problems, "%s:%u: [server] group \"%.100s\": %s", set->path,
			    set->group_line, set->group, err != 0 ? strerror(err) : "no such group");
		forget_user(set);
		return;
	}
	set->gid = gr.gr_gid;
}

/* The checks that involve several keys, once the file is read. */
static void check_whole(struct tern_settings *set, struct buf *problems)
{
	const char *path = set->path;
	if ((set->tls_cert == NULL) != (set->tls_key == NULL))
		settings_add_problem(problems, "%s:%u: [tls] needs both cert and key (%s is missing)", path,
			    set->tls_line, set->tls_cert == NULL ? "cert" : "key");
	if (set->admin_listen != NULL && *set->admin_listen != '\0' &&
	    set->admin_token_file == NULL)
		settings_add_problem(problems, "%s:%u: [admin] listen needs token_file (a file whose first line is the bearer token)",
			    path, set->admin_line);
	if (set->auth_failure_delay_max_ms < set->auth_failure_delay_initial_ms)
		settings_add_problem(problems, "%s: [auth] failure_delay_max is below failure_delay_initial", path);
	if (set->line_max_preauth < 64 || set->line_max < 512 ||
	    set->line_max_preauth > 1024 * 1024 || set->line_max > 1024 * 1024)
		settings_add_problem(problems, "%s: [limits] line_max must be 512 octets to 1M, line_max_preauth 64 octets to 1M",
			    path);
	else if (set->input_buffer_preauth < set->line_max_preauth ||
		 set->input_buffer < set->line_max || set->input_buffer > 64 * 1024 * 1024)
		settings_add_problem(problems, "%s: [limits] input_buffer(_preauth) must hold at least one line (line_max(_preauth)) and be at most 64M",
			    path);
	if (set->auth_response_max < 64 || set->auth_response_max > 64 * 1024)
		settings_add_problem(problems, "%s: [auth] max_response must be 64 octets to 64K", path);
	if (set->oauth_jwks_file != NULL &&
	    (set->oauth_issuer == NULL || *set->oauth_issuer == '\0' ||
	     set->oauth_audience == NULL || *set->oauth_audience == '\0'))
		settings_add_problem(problems, "%s: [auth] oauth_jwks_file needs oauth_issuer and oauth_audience (what the tokens' iss and aud must be)",
				     path);
	if (set->min_data_rate == 0)
		settings_add_problem(problems, "%s: [limits] min_data_rate must be at least 1 octet per second", path);
	if (set->command_timeout_ms < 1000 || set->idle_timeout_preauth_ms < 1000 ||
	    set->login_timeout_ms < 1000 || set->smtp_idle_timeout_ms < 1000 ||
	    set->lmtp_idle_timeout_ms < 1000 || set->pop3_idle_timeout_ms < 1000)
		settings_add_problem(problems, "%s: timeouts must be at least 1s", path);
	if (set->queue_retry_min_ms < 1000)
		settings_add_key_problem(problems, set, "queue", "retry_min", "[queue] retry_min must be at least 1s");
	else if (set->queue_retry_max_ms < set->queue_retry_min_ms)
		settings_add_key_problem(problems, set, "queue", "retry_max", "[queue] retry_max must be at least retry_min");
	if (set->queue_lease_ms < 3000)
		settings_add_key_problem(problems, set, "queue", "lease", "[queue] lease must be at least 3s");
	if (set->queue_scan_interval_ms < 100 || set->queue_scan_interval_ms > 3600 * 1000)
		settings_add_key_problem(problems, set, "queue", "scan_interval",
					 "[queue] scan_interval must be 100ms to 1h");
	if (set->queue_max_lifetime_ms < set->queue_retry_min_ms)
		settings_add_key_problem(problems, set, "queue", "max_lifetime", "[queue] max_lifetime is below retry_min");
	/* The data's end waits twice the command timeout, in milliseconds
	 * that must fit 32 bits. */
	if (set->relay_connect_timeout_ms < 100 || set->relay_connect_timeout_ms > 3600 * 1000)
		settings_add_key_problem(problems, set, "relay", "connect_timeout",
					 "[relay] connect_timeout must be 100ms to 1h");
	if (set->relay_command_timeout_ms < 100 || set->relay_command_timeout_ms > 3600 * 1000)
		settings_add_key_problem(problems, set, "relay", "command_timeout",
					 "[relay] command_timeout must be 100ms to 1h");
	/* One thread and one connection each. */
	if (set->relay_concurrency < 1 || set->relay_concurrency > 256)
		settings_add_key_problem(problems, set, "relay", "concurrency",
					 "[relay] concurrency must be 1 to 256 (connections at a time)");
	if ((set->relay_username == NULL) != (set->relay_password_file == NULL) ||
	    (set->relay_username != NULL && set->relay_smarthost == NULL))
		settings_add_key_problem(problems, set, "relay",
					 set->relay_username != NULL ? "username" : "password_file",
					 "[relay] username and password_file go together, and only with smarthost");
	bool dkim_any = set->dkim_domain != NULL || set->dkim_selector != NULL || set->dkim_key_file != NULL;
	if (dkim_any && (set->dkim_domain == NULL || set->dkim_selector == NULL || set->dkim_key_file == NULL))
		settings_add_problem(problems, "%s:%u: [dkim] needs domain, selector and key_file together", path,
				     set->dkim_line);
	resolve_user(set, problems);
}

/* The line number a problem names ("PATH:LINE: ..."), or UINT_MAX for
 * one that names none ("PATH: ..."): those come last. */
static unsigned int problem_line(const char *path, const char *problem)
{
	size_t n = strlen(path);
	if (strncmp(problem, path, n) != 0 || problem[n] != ':')
		return UINT_MAX;
	char *end;
	unsigned long line = strtoul(problem + n + 1, &end, 10);
	return end != problem + n + 1 && *end == ':' && line < UINT_MAX ? (unsigned int)line
									   : UINT_MAX;
}

/* The problems in file order (a stable sort: those of one line keep theirs). */
static char *sorted_problems(const char *path, struct buf *problems)
{
	size_t count = 1;
	for (size_t i = 0; i < problems->len; i++)
		count += problems->data[i] == '\n';
	char **lines = xcalloc(count, sizeof(*lines));
	unsigned int *nums = xcalloc(count, sizeof(*nums));
	char *p = problems->data;
	for (size_t i = 0; i < count; i++) {
		lines[i] = p;
		char *nl = strchr(p, '\n');
		if (nl != NULL) {
			*nl = '\0';
			p = nl + 1;
		}
		nums[i] = problem_line(path, lines[i]);
	}
	for (size_t i = 1; i < count; i++) {
		for (size_t j = i; j > 0 && nums[j - 1] > nums[j]; j--) {
			unsigned int n = nums[j];
			nums[j] = nums[j - 1];
			nums[j - 1] = n;
			char *l = lines[j];
			lines[j] = lines[j - 1];
			lines[j - 1] = l;
		}
	}
	struct buf out;
	buf_init(&out, 0);
	for (size_t i = 0; i < count; i++)
		buf_printf(&out, "%s%s", i > 0 ? "\n" : "", lines[i]);
	free(lines);
	free(nums);
	char *ret = buf_steal(&out);
	buf_deinit(&out);
	return ret;
}

struct tern_settings *settings_read(const char *path, char **errors_r)
{
	struct tern_settings *set = xcalloc(1, sizeof(*set));
	set->path = xstrdup(path);
	set->key_lines = xcalloc(sizeof(keys) / sizeof(keys[0]), sizeof(*set->key_lines));
	set->max_message_size = 25 * 1024 * 1024;
	set->max_recipients = 100;
	set->tls_min_version = TLS1_2_VERSION;
	set->smtp_idle_timeout_ms = 300 * 1000;  /* RFC 5321 4.5.3.2: 5 minutes */
	set->lmtp_idle_timeout_ms = 300 * 1000;
	set->pop3_idle_timeout_ms = 600 * 1000;  /* RFC 1939 3: at least 10 minutes */
	set->pop3_expire_days = SETTINGS_EXPIRE_NEVER;
	set->pop3_expire_sweep_interval_ms = 300 * 1000;
	set->plaintext = PLAINTEXT_TLS_OR_LOOPBACK;
	const char *bad;
	set->trusted_network_count = (unsigned int)net_range_list_parse(
		"127.0.0.1/32, ::1/128", set->trusted_networks, SETTINGS_TRUSTED_MAX, &bad);
	set->auth_failure_delay_initial_ms = 2000;
	set->auth_failure_delay_max_ms = 15000;
	set->auth_failure_reset_ms = 3600 * 1000;
	set->auth_cache_ttl_ms = 5 * 60 * 1000;
	set->auth_response_max = 4096;
	set->max_connections = 15000;
	set->max_connections_per_ip = 20;
	set->max_bad_commands = 10;
	set->idle_timeout_preauth_ms = 60 * 1000;
	set->login_timeout_ms = 180 * 1000;
	set->command_timeout_ms = 60 * 1000;
	set->min_data_rate = 512;
	set->line_max_preauth = 0;   /* set below unless the file sets it */
	set->line_max = 1024;
	set->input_buffer_preauth = 16 * 1024;
	set->input_buffer = 256 * 1024;
	set->log_level = 1; /* info */
	set->quota_messages = SETTINGS_NO_LIMIT;
	set->quota_octets = SETTINGS_NO_LIMIT;
	set->queue_retry_min_ms = 5 * 60 * 1000;
	set->queue_retry_max_ms = 3600 * 1000;
	set->queue_max_lifetime_ms = 5ULL * 86400 * 1000;
	set->queue_lease_ms = 60 * 1000;
	set->queue_scan_interval_ms = 10 * 1000;
	set->relay_tls = SETTINGS_RELAY_TLS_MAY;
	set->relay_port = 25;
	set->relay_concurrency = 8;
	set->relay_connect_timeout_ms = 30 * 1000;
	set->relay_command_timeout_ms = 300 * 1000;  /* RFC 5321 4.5.3.2 */
	*errors_r = NULL;
	struct buf problems;
	buf_init(&problems, 0);
	char *parse_errors = NULL;
	int ret = ini_parse_file(path, on_section, on_key, set, &parse_errors);
	if (ret == -2) {
		*errors_r = parse_errors;
		buf_deinit(&problems);
		settings_free(&set);
		return NULL;
	}
	if (ret < 0) {
		buf_append_str(&problems, parse_errors);
		free(parse_errors);
	}
	/* 512 octets before login, or 8 KiB when bearer tokens are accepted:
	 * a JWT sent on the AUTH line itself (SASL-IR, as curl and smtplib do)
	 * never fits 512; RFC 4954 4 allows AUTH lines of 12288. */
	if (set->line_max_preauth == 0)
		set->line_max_preauth = set->oauth_jwks_file != NULL ? 8192 : 512;
	if (set->hostname == NULL) {
		char host[256];
		if (gethostname(host, sizeof(host)) != 0)
			str_copy(host, "localhost", sizeof(host));
		host[sizeof(host) - 1] = '\0';
		set->hostname = xstrdup(host);
	}
	if (set->data_dir == NULL)
		set->data_dir = xstrdup("./var");
	if (set->queue_node_id == NULL || *set->queue_node_id == '\0') {
		free(set->queue_node_id);
		set->queue_node_id = xstrdup(set->hostname);
	}
	/* A node id is a row key of the queue: short and plain. */
	if (strlen(set->queue_node_id) > 64 || strspn(set->queue_node_id,
		"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-_") != strlen(set->queue_node_id))
		settings_add_key_problem(&problems, set, "queue", "node_id",
					 "[queue] node_id \"%.100s\" must be 1 to 64 letters, digits, '.', '-' or '_'",
					 set->queue_node_id);
	if (set->store_backend == NULL)
		set->store_backend = xstrdup("sqlite");
	check_whole(set, &problems);
	set->store.default_quota.messages = set->quota_messages;
	set->store.default_quota.octets = set->quota_octets;
	set->store.backend = set->store_backend;
	set->store.data_dir = set->data_dir;
	if (problems.len > 0)
		*errors_r = sorted_problems(path, &problems);
	buf_deinit(&problems);
	return set;
}

struct tern_settings *settings_load(const char *path, char **error_r)
{
	struct tern_settings *set = settings_read(path, error_r);
	if (*error_r != NULL)
		settings_free(&set);
	return set;
}

void settings_free(struct tern_settings **setp)
{
	struct tern_settings *set = *setp;
	if (set == NULL)
		return;
	*setp = NULL;
	store_settings_deinit(&set->store); /* wipes the secrets */
	for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
		if (keys[i].type == KEY_STRING || keys[i].type == KEY_LISTEN ||
		    keys[i].type == KEY_NETS || keys[i].type == KEY_BACKEND)
			free(*(char **)((char *)set + keys[i].offset));
	}
	free(set->key_lines);
	free(set->path);
	free(set);
}

bool settings_trusted(const struct tern_settings *set, const struct net_addr *addr)
{
	for (unsigned int i = 0; i < set->trusted_network_count; i++)
		if (net_range_match(&set->trusted_networks[i], addr))
			return true;
	return false;
}
