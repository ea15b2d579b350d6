/*
 * settings: the table of known keys, their parsers and defaults. Values are
 * validated as they are read so that the error names the line; the listen
 * lists are checked for syntax here and resolved when the daemon binds.
 */
#include "settings.h"

#include <openssl/ssl.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "buf.h"
#include "ini.h"

enum key_type { KEY_STRING, KEY_LISTEN, KEY_SIZE, KEY_UINT, KEY_ENUM };

struct key_def {
	const char *section, *key;
	enum key_type type;
	size_t offset;
	const char *const *choices; /* KEY_ENUM: index = value */
};

static const char *const plaintext_choices[] = { "tls_or_loopback", "always", "tls", NULL };
static const char *const backend_choices[] = { "sqlite", "cassandra", "mem", NULL };
static const char *const pop3_ids_choices[] = { "messageid", "uid", NULL };
static const char *const tls_version_choices[] = { "1.2", "1.3", NULL };
static const char *const consistency_choices[] = {
	"ONE", "TWO", "THREE", "QUORUM", "ALL", "LOCAL_QUORUM", "EACH_QUORUM",
	"LOCAL_ONE", NULL
};

#define OFF(f) offsetof(struct tern_settings, f)
static const struct key_def keys[] = {
	{ "server", "hostname", KEY_STRING, OFF(hostname), NULL },
	{ "server", "data_dir", KEY_STRING, OFF(data_dir), NULL },
	{ "smtp", "listen", KEY_LISTEN, OFF(smtp_listen), NULL },
	{ "smtp", "listen_tls", KEY_LISTEN, OFF(smtp_listen_tls), NULL },
	{ "smtp", "max_message_size", KEY_SIZE, OFF(max_message_size), NULL },
	{ "smtp", "max_recipients", KEY_UINT, OFF(max_recipients), NULL },
	{ "lmtp", "listen", KEY_LISTEN, OFF(lmtp_listen), NULL },
	{ "pop3", "listen", KEY_LISTEN, OFF(pop3_listen), NULL },
	{ "pop3", "listen_tls", KEY_LISTEN, OFF(pop3_listen_tls), NULL },
	{ "tls", "cert", KEY_STRING, OFF(tls_cert), NULL },
	{ "tls", "key", KEY_STRING, OFF(tls_key), NULL },
	{ "tls", "min_version", KEY_ENUM, OFF(tls_min_version), tls_version_choices },
	{ "auth", "plaintext", KEY_ENUM, OFF(plaintext), plaintext_choices },
	{ "store", "backend", KEY_ENUM, OFF(store_backend), backend_choices },
	{ "store", "pop3_ids", KEY_ENUM, OFF(store.pop3_ids), pop3_ids_choices },
	{ "cassandra", "contact_points", KEY_STRING, OFF(cass_contact_points), NULL },
	{ "cassandra", "local_dc", KEY_STRING, OFF(cass_local_dc), NULL },
	{ "cassandra", "keyspace", KEY_STRING, OFF(cass_keyspace), NULL },
	{ "cassandra", "replication", KEY_STRING, OFF(cass_replication), NULL },
	{ "cassandra", "username", KEY_STRING, OFF(cass_username), NULL },
	{ "cassandra", "password", KEY_STRING, OFF(cass_password), NULL },
	{ "cassandra", "read_consistency", KEY_ENUM, OFF(cass_read_cl), consistency_choices },
	{ "cassandra", "write_consistency", KEY_ENUM, OFF(cass_write_cl), consistency_choices },
	{ "admin", "listen", KEY_LISTEN, OFF(admin_listen), NULL },
};

static char reason_buf[512];

static int parse_size(const char *v, uint64_t *out)
{
	char *end;
	if (*v < '0' || *v > '9')
		return -1;
	unsigned long long n = strtoull(v, &end, 10);
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

/* "host:port[, host:port ...]"; IPv6 hosts in brackets. */
static int check_listen(const char *v)
{
	char tmp[1024];
	if (str_copy(tmp, v, sizeof(tmp)) >= sizeof(tmp))
		return -1;
	char *save = NULL;
	int count = 0;
	for (char *item = strtok_r(tmp, ",", &save); item != NULL;
	     item = strtok_r(NULL, ",", &save)) {
		while (*item == ' ')
			item++;
		size_t n = strlen(item);
		while (n > 0 && item[n - 1] == ' ')
			item[--n] = '\0';
		char *colon = strrchr(item, ':');
		if (colon == NULL || colon == item || colon[1] == '\0')
			return -1;
		char *end;
		long port = strtol(colon + 1, &end, 10);
		if (*end != '\0' || port < 0 || port > 65535)
			return -1;
		count++;
	}
	return count > 0 ? 0 : -1;
}

static int on_section(void *ctx, const char *section, const char **error_r)
{
	for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++)
		if (strcmp(keys[i].section, section) == 0)
			return 0;
	snprintf(reason_buf, sizeof(reason_buf), "unknown section [%s]", section);
	*error_r = reason_buf;
	return -1;
}

static int on_key(void *ctx, const char *section, const char *key, const char *value,
		  const char **error_r)
{
	struct tern_settings *set = ctx;
	const struct key_def *def = NULL;
	for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++)
		if (strcmp(keys[i].section, section) == 0 && strcmp(keys[i].key, key) == 0)
			def = &keys[i];
	if (def == NULL) {
		snprintf(reason_buf, sizeof(reason_buf), "unknown key \"%s\" in [%s]", key,
			 section);
		*error_r = reason_buf;
		return -1;
	}
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
	case KEY_SIZE:
		if (parse_size(value, field) < 0) {
			snprintf(reason_buf, sizeof(reason_buf),
				 "%s: invalid size \"%.200s\" (expected a number with an optional K, M or G)",
				 key, value);
			*error_r = reason_buf;
			return -1;
		}
		return 0;
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
	case KEY_ENUM:
		for (int i = 0; def->choices[i] != NULL; i++) {
			if (strcmp(def->choices[i], value) != 0)
				continue;
			if (def->choices == tls_version_choices)
				*(int *)field = i == 0 ? TLS1_2_VERSION : TLS1_3_VERSION;
			else if (def->choices == backend_choices ||
				 def->choices == consistency_choices) {
				free(*(char **)field);
				*(char **)field = xstrdup(value);
			} else
				*(int *)field = i;
			return 0;
		}
		struct buf b;
		buf_init(&b, sizeof(reason_buf) - 1);
		buf_printf(&b, "%s: invalid value \"%.100s\" (expected one of:", key, value);
		for (int i = 0; def->choices[i] != NULL; i++)
			buf_printf(&b, " %s", def->choices[i]);
		buf_append_c(&b, ')');
		str_copy(reason_buf, b.data, sizeof(reason_buf));
		buf_deinit(&b);
		*error_r = reason_buf;
		return -1;
	}
	return -1;
}

struct tern_settings *settings_load(const char *path, char **error_r)
{
	struct tern_settings *set = xcalloc(1, sizeof(*set));
	set->path = xstrdup(path);
	set->max_message_size = 25 * 1024 * 1024;
	set->max_recipients = 100;
	set->tls_min_version = TLS1_2_VERSION;
	set->plaintext = PLAINTEXT_TLS_OR_LOOPBACK;
	if (ini_parse_file(path, on_section, on_key, set, error_r) < 0) {
		settings_free(&set);
		return NULL;
	}
	if (set->hostname == NULL) {
		char host[256];
		if (gethostname(host, sizeof(host)) != 0)
			str_copy(host, "localhost", sizeof(host));
		host[sizeof(host) - 1] = '\0';
		set->hostname = xstrdup(host);
	}
	if (set->data_dir == NULL)
		set->data_dir = xstrdup("./var");
	if (set->store_backend == NULL)
		set->store_backend = xstrdup("sqlite");
	if ((set->tls_cert == NULL) != (set->tls_key == NULL)) {
		struct buf b;
		buf_init(&b, 0);
		buf_printf(&b, "%s: [tls] needs both cert and key", path);
		*error_r = buf_steal(&b);
		buf_deinit(&b);
		settings_free(&set);
		return NULL;
	}
	set->store.backend = set->store_backend;
	set->store.data_dir = set->data_dir;
	set->store.contact_points = set->cass_contact_points;
	set->store.local_dc = set->cass_local_dc;
	set->store.keyspace = set->cass_keyspace;
	set->store.replication = set->cass_replication;
	set->store.username = set->cass_username;
	set->store.password = set->cass_password;
	set->store.read_consistency = set->cass_read_cl;
	set->store.write_consistency = set->cass_write_cl;
	return set;
}

void settings_free(struct tern_settings **setp)
{
	struct tern_settings *set = *setp;
	if (set == NULL)
		return;
	*setp = NULL;
	if (set->cass_password != NULL)
		explicit_bzero(set->cass_password, strlen(set->cass_password));
	for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
		if (keys[i].type == KEY_STRING || keys[i].type == KEY_LISTEN ||
		    (keys[i].type == KEY_ENUM && (keys[i].choices == backend_choices ||
						  keys[i].choices == consistency_choices)))
			free(*(char **)((char *)set + keys[i].offset));
	}
	free(set->path);
	free(set);
}
