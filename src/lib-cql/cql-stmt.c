/*
 * Statement-level helpers that need no connection: recognising conditional
 * statements (lightweight transactions) in CQL text, the process-wide
 * monotonic client timestamp, UUID text forms, and the names of enums.
 *
 * Invariants: the CQL scanner skips string literals, quoted identifiers,
 * $$ bodies and comments, so an "IF" inside data never counts; only DML
 * (INSERT/UPDATE/DELETE, and BEGIN BATCH) can be conditional, so DDL's
 * "IF NOT EXISTS" is not an LWT. Timestamps never repeat or go backwards
 * within a process, whatever the wall clock does.
 */
#include "cql-private.h"

#include <ctype.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>

/* Copies the next keyword-ish word of CQL text into word (upper-cased,
   truncated); returns the position after it, or NULL at the end. */
static const char *next_word(const char *p, char *word, size_t size)
{
	while (*p != '\0') {
		if (isspace((unsigned char)*p)) {
			p++;
		} else if ((p[0] == '-' && p[1] == '-') || (p[0] == '/' && p[1] == '/')) {
			while (*p != '\0' && *p != '\n')
				p++;
		} else if (p[0] == '/' && p[1] == '*') {
			const char *e = strstr(p + 2, "*/");
			p = e == NULL ? p + strlen(p) : e + 2;
		} else if (*p == '\'' || *p == '"') {
			char q = *p++;
			while (*p != '\0') {
				if (*p == q && p[1] == q)
					p += 2;
				else if (*p++ == q)
					break;
			}
		} else if (p[0] == '$' && p[1] == '$') {
			const char *e = strstr(p + 2, "$$");
			p = e == NULL ? p + strlen(p) : e + 2;
		} else if (isalpha((unsigned char)*p) || *p == '_') {
			size_t n = 0;
			while (isalnum((unsigned char)*p) || *p == '_') {
				if (n + 1 < size)
					word[n++] = (char)toupper((unsigned char)*p);
				p++;
			}
			word[n] = '\0';
			return p;
		} else {
			p++;
		}
	}
	return NULL;
}

static bool first_word_is(const char *cql, const char *const *words)
{
	char word[16];
	if (next_word(cql, word, sizeof(word)) == NULL)
		return false;
	for (; *words != NULL; words++) {
		if (strcmp(word, *words) == 0)
			return true;
	}
	return false;
}

bool cql_statement_is_conditional(const char *cql)
{
	static const char *const dml[] = { "INSERT", "UPDATE", "DELETE", "BEGIN", NULL };
	char word[16];

	if (!first_word_is(cql, dml))
		return false;
	for (const char *p = cql; (p = next_word(p, word, sizeof(word))) != NULL; ) {
		if (strcmp(word, "IF") == 0)
			return true;
	}
	return false;
}

bool cql_statement_is_schema_change(const char *cql)
{
	static const char *const ddl[] = { "CREATE", "ALTER", "DROP", NULL };
	return first_word_is(cql, ddl);
}

int64_t cql_timestamp_now_us(void)
{
	static _Atomic int64_t last;
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	int64_t now = (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
	int64_t prev = atomic_load(&last);
	for (;;) {
		int64_t next = now > prev ? now : prev + 1;
		if (atomic_compare_exchange_weak(&last, &prev, next))
			return next;
	}
}

void cql_uuid_format(const uint8_t uuid[16], char out[37])
{
	static const char hex[] = "0123456789abcdef";
	size_t o = 0;
	for (unsigned i = 0; i < 16; i++) {
		if (i == 4 || i == 6 || i == 8 || i == 10)
			out[o++] = '-';
		out[o++] = hex[uuid[i] >> 4];
		out[o++] = hex[uuid[i] & 15];
	}
	out[o] = '\0';
}

static int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	c = (char)tolower((unsigned char)c);
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1;
}

int cql_uuid_parse(const char *str, uint8_t uuid_r[16])
{
	unsigned n = 0;
	for (size_t i = 0; i < 36; i++) {
		if (i == 8 || i == 13 || i == 18 || i == 23) {
			if (str[i] != '-')
				return -1;
			continue;
		}
		int hi = hexval(str[i]), lo = hi < 0 ? -1 : hexval(str[++i]);
		if (hi < 0 || lo < 0)
			return -1;
		uuid_r[n++] = (uint8_t)(hi << 4 | lo);
	}
	return str[36] == '\0' ? 0 : -1;
}

static const char *const consistency_names[] = {
	"ANY", "ONE", "TWO", "THREE", "QUORUM", "ALL", "LOCAL_QUORUM",
	"EACH_QUORUM", "SERIAL", "LOCAL_SERIAL", "LOCAL_ONE",
};

const char *cql_consistency_name(enum cql_consistency cl)
{
	if ((unsigned)cl >= sizeof(consistency_names) / sizeof(consistency_names[0]))
		return "?";
	return consistency_names[cl];
}

int cql_consistency_parse(const char *name, enum cql_consistency *cl_r)
{
	for (unsigned i = 0; i < sizeof(consistency_names) / sizeof(consistency_names[0]); i++) {
		if (strcasecmp(name, consistency_names[i]) == 0) {
			*cl_r = (enum cql_consistency)i;
			return 0;
		}
	}
	return -1;
}

static const char *const error_kind_names[] = {
	[CQL_ERR_NONE] = "none",
	[CQL_ERR_TIMEOUT] = "timeout",
	[CQL_ERR_CONNECTION] = "connection",
	[CQL_ERR_CLIENT] = "client",
	[CQL_ERR_PROTOCOL] = "protocol",
	[CQL_ERR_SERVER] = "server",
	[CQL_ERR_BAD_CREDENTIALS] = "bad_credentials",
	[CQL_ERR_UNAVAILABLE] = "unavailable",
	[CQL_ERR_OVERLOADED] = "overloaded",
	[CQL_ERR_IS_BOOTSTRAPPING] = "is_bootstrapping",
	[CQL_ERR_TRUNCATE] = "truncate",
	[CQL_ERR_WRITE_TIMEOUT] = "write_timeout",
	[CQL_ERR_READ_TIMEOUT] = "read_timeout",
	[CQL_ERR_READ_FAILURE] = "read_failure",
	[CQL_ERR_FUNCTION_FAILURE] = "function_failure",
	[CQL_ERR_WRITE_FAILURE] = "write_failure",
	[CQL_ERR_SYNTAX] = "syntax",
	[CQL_ERR_UNAUTHORIZED] = "unauthorized",
	[CQL_ERR_INVALID] = "invalid",
	[CQL_ERR_CONFIG] = "config",
	[CQL_ERR_ALREADY_EXISTS] = "already_exists",
	[CQL_ERR_UNPREPARED] = "unprepared",
};

const char *cql_error_kind_name(enum cql_error_kind kind)
{
	if ((unsigned)kind > CQL_ERR_UNPREPARED)
		return "?";
	return error_kind_names[kind];
}

bool cql_error_is_temporary(const struct cql_error *err)
{
	switch (err->kind) {
	case CQL_ERR_TIMEOUT:
	case CQL_ERR_CONNECTION:
	case CQL_ERR_SERVER:
	case CQL_ERR_UNAVAILABLE:
	case CQL_ERR_OVERLOADED:
	case CQL_ERR_IS_BOOTSTRAPPING:
	case CQL_ERR_TRUNCATE:
	case CQL_ERR_WRITE_TIMEOUT:
	case CQL_ERR_READ_TIMEOUT:
	case CQL_ERR_READ_FAILURE:
	case CQL_ERR_WRITE_FAILURE:
		return true;
	default:
		return false;
	}
}

bool cql_error_is_uncertain(const struct cql_error *err)
{
	switch (err->kind) {
	case CQL_ERR_WRITE_TIMEOUT:
	case CQL_ERR_WRITE_FAILURE:
		return true;
	case CQL_ERR_TIMEOUT:
	case CQL_ERR_CONNECTION:
		return err->sent;
	default:
		return false;
	}
}

void cql_settings_init(struct cql_settings *set)
{
	memset(set, 0, sizeof(*set));
	set->contact_points = "127.0.0.1";
	set->port = 9042;
	set->connections_per_host = 1;
	set->connect_timeout_ms = 5000;
	set->request_timeout_ms = 12000;
	set->schema_agreement_timeout_ms = 10000;
	set->reconnect_base_ms = 200;
	set->reconnect_max_ms = 10000;
	set->max_frame_size = CQL_DEFAULT_MAX_FRAME;
	set->heartbeat_ms = 30000;
	set->heartbeat_timeout_ms = 5000;
}

void cql_query_opts_init(struct cql_query_opts *opts)
{
	memset(opts, 0, sizeof(*opts));
	opts->consistency = CQL_LOCAL_QUORUM;
	opts->serial_consistency = CQL_SERIAL_UNSET;
}
