/*
 * admin-api: the endpoints of the admin API (docs/admin-api.md).
 *
 * A route is a path pattern and, per method, a prepare step and a work
 * step. prepare runs on the event loop: it checks the body (a JSON object
 * with known keys and typed values) and either answers (400, or an answer
 * that needs no store: the tasks) or leaves the work to run. work runs on
 * a worker and makes the store calls. Addresses and domains in paths are
 * URL-decoded and normalised as the command line does (lower case).
 *
 * Every change is one store call, made only after the whole request was
 * found valid: a bad request changes nothing.
 */
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <limits.h>
#include <openssl/crypto.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "admin-private.h"
#include "admin-tasks.h"
#include "log.h"
#include "metrics.h"
#include "password.h"
#include "session.h"
#include "settings.h"

#define PASSWORD_MAX 1024
#define PATH_MAX_LEN 1024
#define PATH_SEGMENTS_MAX 3

typedef void admin_fn(struct admin_job *j);

enum arg_kind { ARG_NONE, ARG_DOMAIN, ARG_ADDRESS, ARG_TASK, ARG_QUEUE_ID };

struct endpoint {
	enum evhttp_cmd_type method;
	admin_fn *prepare;  /* loop; NULL: nothing to check. May answer. */
	admin_fn *work;     /* worker; NULL: prepare answers */
};

struct route {
	const char *segments[PATH_SEGMENTS_MAX]; /* "*" is the argument */
	enum arg_kind arg;
	struct endpoint endpoints[3];
};

/* --- helpers --- */

void admin_reply_store_error(struct admin_job *j, enum store_status st, const char *what)
{
	switch (st) {
	case STORE_NOTFOUND:
		admin_reply_error(j, HTTP_NOTFOUND, "%s: not found", what);
		break;
	case STORE_EXISTS:
		admin_reply_error(j, 409, "%s: already exists", what);
		break;
	case STORE_INVALID:
		admin_reply_error(j, HTTP_BADREQUEST, "%s: refused as invalid", what);
		break;
	case STORE_LOOP:
		admin_reply_error(j, 409, "%s: the aliases would loop or nest deeper than %d levels",
				  what, STORE_ALIAS_DEPTH);
		break;
	case STORE_TEMPFAIL:
	case STORE_UNCERTAIN:
		admin_reply_error(j, HTTP_SERVUNAVAIL,
				  "%s: the store is unavailable (%s); try again later", what,
				  store_status_name(st));
		admin_set_header(j, "Retry-After", "5");
		break;
	default:
		admin_reply_error(j, HTTP_INTERNAL, "%s: store failure (%s)", what,
				  store_status_name(st));
		break;
	}
}

/* Splits buf's lines into a JSON array of strings. */
static json_t *lines_to_array(const struct buf *b)
{
	json_t *a = json_array();
	const char *p = b->data, *end = b->data + b->len;
	while (p < end) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		size_t n = nl != NULL ? (size_t)(nl - p) : (size_t)(end - p);
		if (n > 0)
			json_array_append_new(a, json_stringn(p, n));
		p += n + 1;
	}
	return a;
}

/* true when the body has no key outside allowed (NULL-terminated);
 * otherwise answers 400. */
static bool body_keys_ok(struct admin_job *j, const char *const *allowed)
{
	if (j->body == NULL)
		return true;
	const char *key;
	json_t *v;
	json_object_foreach(j->body, key, v) {
		bool known = false;
		for (const char *const *k = allowed; *k != NULL; k++)
			known |= strcmp(*k, key) == 0;
		if (!known) {
			admin_reply_error(j, HTTP_BADREQUEST, "unexpected key \"%.64s\" in the body", key);
			return false;
		}
	}
	return true;
}

static json_t *limit_json(uint64_t v)
{
	return v == STORE_NO_LIMIT ? json_null() : json_integer((json_int_t)v);
}

static void wipe_json_string(json_t *s)
{
	if (json_is_string(s))
		OPENSSL_cleanse((char *)json_string_value(s), json_string_length(s));
}

/* --- domains --- */

static void domains_list(struct admin_job *j)
{
	struct buf out;
	buf_init(&out, 0);
	enum store_status st = store_domain_list(j->store, &out);
	if (st == STORE_OK)
		admin_reply_json(j, HTTP_OK, json_pack("{s:o}", "domains", lines_to_array(&out)));
	else
		admin_reply_store_error(j, st, "domain list");
	buf_deinit(&out);
}

static const char *const no_keys[] = { NULL };

static void no_body(struct admin_job *j)
{
	(void)body_keys_ok(j, no_keys);
}

static void domain_put(struct admin_job *j)
{
	enum store_status st = store_domain_add(j->store, j->arg);
	if (st == STORE_OK || st == STORE_EXISTS)
		admin_reply_json(j, st == STORE_OK ? 201 : HTTP_OK,
				 json_pack("{s:s, s:b}", "domain", j->arg, "created", st == STORE_OK));
	else
		admin_reply_store_error(j, st, "domain add");
}

/* The answer to a DELETE: 204, 404 naming the kind of thing, or the
 * store's error. */
static void reply_deleted(struct admin_job *j, enum store_status st, const char *kind,
			  const char *what)
{
	if (st == STORE_OK)
		j->code = HTTP_NOCONTENT;
	else if (st == STORE_NOTFOUND)
		admin_reply_error(j, HTTP_NOTFOUND, "unknown %s %s", kind, j->arg);
	else
		admin_reply_store_error(j, st, what);
}

static void domain_delete(struct admin_job *j)
{
	enum store_status st = store_domain_del(j->store, j->arg);
	if (st == STORE_EXISTS)
		admin_reply_error(j, 409, "domain %s still has users or aliases; delete them first",
				  j->arg);
	else
		reply_deleted(j, st, "domain", "domain del");
}

/* --- users --- */

static void users_list(struct admin_job *j)
{
	/* arg: the ?domain= filter, or "" */
	if (j->arg[0] != '\0') {
		enum store_status st = store_domain_exists(j->store, j->arg);
		if (st == STORE_NOTFOUND) {
			admin_reply_error(j, HTTP_NOTFOUND, "unknown domain %s", j->arg);
			return;
		}
		if (st != STORE_OK) {
			admin_reply_store_error(j, st, "domain lookup");
			return;
		}
	}
	struct buf out;
	buf_init(&out, 0);
	enum store_status st = store_user_list(j->store, &out);
	if (st != STORE_OK) {
		admin_reply_store_error(j, st, "user list");
		buf_deinit(&out);
		return;
	}
	json_t *all = lines_to_array(&out), *users = json_array();
	size_t dlen = strlen(j->arg), i;
	json_t *u;
	json_array_foreach(all, i, u) {
		const char *s = json_string_value(u);
		const char *at = strrchr(s, '@');
		if (dlen == 0 || (at != NULL && strcmp(at + 1, j->arg) == 0))
			json_array_append(users, u);
	}
	json_decref(all);
	admin_reply_json(j, HTTP_OK, json_pack("{s:o}", "users", users));
	buf_deinit(&out);
}

static const char *const user_keys[] = { "password", NULL };

static void user_put_prepare(struct admin_job *j)
{
	if (!body_keys_ok(j, user_keys))
		return;
	json_t *pw = j->body != NULL ? json_object_get(j->body, "password") : NULL;
	if (!json_is_string(pw)) {
		admin_reply_error(j, HTTP_BADREQUEST,
				  "the body must be {\"password\": \"...\"} (a password, or a {SCHEME} hash)");
		return;
	}
	const char *p = json_string_value(pw);
	size_t len = json_string_length(pw);
	j->code = 0;
	if (len == 0)
		admin_reply_error(j, HTTP_BADREQUEST, "empty password");
	else if (len > PASSWORD_MAX)
		admin_reply_error(j, HTTP_BADREQUEST, "password too long (limit %d characters)",
				  PASSWORD_MAX);
	else if ((p[0] == '{' || strncmp(p, "$argon2", 7) == 0) && !password_is_hash(p))
		admin_reply_error(j, HTTP_BADREQUEST,
				  "unsupported password hash (accepted: {ARGON2ID}, {SHA512-CRYPT}, {SHA256-CRYPT}, {BLF-CRYPT}, {CRYPT}, $argon2id$)");
	if (j->code != 0)
		wipe_json_string(pw);
}

static void user_put(struct admin_job *j)
{
	json_t *pw = json_object_get(j->body, "password");
	const char *p = json_string_value(pw);
	const char *domain = strrchr(j->arg, '@') + 1;
	struct buf hash;
	buf_init(&hash, 0);
	enum store_status st = store_domain_exists(j->store, domain);
	if (st == STORE_NOTFOUND) {
		admin_reply_error(j, HTTP_NOTFOUND, "unknown domain %s (PUT /domains/%s first)",
				  domain, domain);
		goto out;
	}
	if (st != STORE_OK) {
		admin_reply_store_error(j, st, "domain lookup");
		goto out;
	}
	if (p[0] == '{' || strncmp(p, "$argon2", 7) == 0) {
		buf_append_str(&hash, p);
	} else if (password_hash(p, json_string_length(pw), &hash) < 0) {
		admin_reply_error(j, HTTP_INTERNAL, "password hashing failed");
		goto out;
	}
	struct buf existing;
	buf_init(&existing, 0);
	st = store_user_get(j->store, j->arg, &existing);
	buf_wipe(&existing);
	buf_deinit(&existing);
	bool created = false;
	if (st == STORE_NOTFOUND) {
		st = store_user_add(j->store, j->arg, hash.data);
		created = st == STORE_OK;
		/* EXISTS: added meanwhile (change its password), or an alias's
		 * address (then no user has it). */
		if (st == STORE_EXISTS &&
		    (st = store_user_set_password(j->store, j->arg, hash.data)) == STORE_NOTFOUND) {
			admin_reply_error(j, 409, "%s is an alias; delete the alias first", j->arg);
			goto out;
		}
	} else if (st == STORE_OK) {
		st = store_user_set_password(j->store, j->arg, hash.data);
	}
	if (st == STORE_OK)
		admin_reply_json(j, created ? 201 : HTTP_OK,
				 json_pack("{s:s, s:b}", "user", j->arg, "created", created));
	else
		admin_reply_store_error(j, st, created ? "user add" : "user passwd");
out:
	wipe_json_string(pw);
	buf_wipe(&hash);
	buf_deinit(&hash);
}

static void user_delete(struct admin_job *j)
{
	reply_deleted(j, store_user_del(j->store, j->arg), "user", "user del");
}

static void user_mailbox(struct admin_job *j)
{
	uint64_t messages = 0, octets = 0;
	enum store_status st = store_mailbox_usage(j->store, j->arg, &messages, &octets);
	if (st == STORE_OK)
		admin_reply_json(j, HTTP_OK, json_pack("{s:I, s:I}", "messages", (json_int_t)messages,
						       "octets", (json_int_t)octets));
	else if (st == STORE_NOTFOUND)
		admin_reply_error(j, HTTP_NOTFOUND, "unknown user %s", j->arg);
	else
		admin_reply_store_error(j, st, "mailbox usage");
}

/* --- aliases --- */

static void aliases_list(struct admin_job *j)
{
	struct buf out;
	buf_init(&out, 0);
	enum store_status st = store_alias_list(j->store, &out);
	if (st != STORE_OK) {
		admin_reply_store_error(j, st, "alias list");
		buf_deinit(&out);
		return;
	}
	/* "address target[,target...]\n" per alias */
	json_t *aliases = json_object();
	json_t *lines = lines_to_array(&out);
	size_t i;
	json_t *line;
	json_array_foreach(lines, i, line) {
		const char *s = json_string_value(line);
		const char *sp = strchr(s, ' ');
		if (sp == NULL)
			continue;
		json_t *targets = json_array();
		for (const char *t = sp + 1; *t != '\0';) {
			const char *comma = strchr(t, ',');
			size_t n = comma != NULL ? (size_t)(comma - t) : strlen(t);
			if (n > 0)
				json_array_append_new(targets, json_stringn(t, n));
			t += n + (comma != NULL);
		}
		char *address = xstrndup(s, (size_t)(sp - s));
		json_object_set_new(aliases, address, targets);
		free(address);
	}
	json_decref(lines);
	admin_reply_json(j, HTTP_OK, json_pack("{s:o}", "aliases", aliases));
	buf_deinit(&out);
}

static void alias_get(struct admin_job *j)
{
	struct buf out;
	buf_init(&out, 0);
	enum store_status st = store_alias_get(j->store, j->arg, &out);
	if (st == STORE_OK)
		admin_reply_json(j, HTTP_OK, json_pack("{s:s, s:o}", "alias", j->arg, "targets",
						       lines_to_array(&out)));
	else if (st == STORE_NOTFOUND)
		admin_reply_error(j, HTTP_NOTFOUND, "unknown alias %s", j->arg);
	else
		admin_reply_store_error(j, st, "alias get");
	buf_deinit(&out);
}

static const char *const alias_keys[] = { "targets", NULL };

/* Replaces the body's targets with their normalised forms, each once. */
static void alias_put_prepare(struct admin_job *j)
{
	if (!body_keys_ok(j, alias_keys))
		return;
	json_t *targets = j->body != NULL ? json_object_get(j->body, "targets") : NULL;
	if (!json_is_array(targets) || json_array_size(targets) == 0) {
		admin_reply_error(j, HTTP_BADREQUEST,
				  "the body must be {\"targets\": [\"user@domain\", ...]} with at least one target");
		return;
	}
	if (json_array_size(targets) > STORE_ALIAS_TARGETS_MAX) {
		admin_reply_error(j, HTTP_BADREQUEST, "too many targets (limit %d)",
				  STORE_ALIAS_TARGETS_MAX);
		return;
	}
	json_t *normalised = json_array();
	size_t i;
	json_t *t;
	json_array_foreach(targets, i, t) {
		struct mail_address addr;
		const char *error;
		if (!json_is_string(t)) {
			admin_reply_error(j, HTTP_BADREQUEST, "target %zu is not a string", i + 1);
			json_decref(normalised);
			return;
		}
		if (mail_address_parse(json_string_value(t), json_string_length(t), &addr, &error) < 0) {
			admin_reply_error(j, HTTP_BADREQUEST, "invalid target \"%.320s\": %s",
					  json_string_value(t), error);
			json_decref(normalised);
			return;
		}
		char out[MAIL_ADDRESS_MAX + 1];
		mail_address_format(&addr, out, sizeof(out));
		/* The store folds duplicates: so does the answer. */
		bool dup = false;
		size_t k;
		json_t *prev;
		json_array_foreach(normalised, k, prev)
			dup |= strcmp(json_string_value(prev), out) == 0;
		if (!dup)
			json_array_append_new(normalised, json_string(out));
	}
	json_object_set_new(j->body, "targets", normalised);
}

static void alias_put(struct admin_job *j)
{
	json_t *targets = json_object_get(j->body, "targets");
	unsigned int n = (unsigned int)json_array_size(targets);
	const char *list[STORE_ALIAS_TARGETS_MAX];
	for (unsigned int i = 0; i < n; i++)
		list[i] = json_string_value(json_array_get(targets, i));
	struct buf old;
	buf_init(&old, 0);
	enum store_status st = store_alias_get(j->store, j->arg, &old);
	buf_deinit(&old);
	bool existed = st == STORE_OK;
	if (st != STORE_OK && st != STORE_NOTFOUND) {
		admin_reply_store_error(j, st, "alias get");
		return;
	}
	st = store_alias_set(j->store, j->arg, list, n);
	if (st == STORE_OK) {
		admin_reply_json(j, existed ? HTTP_OK : 201,
				 json_pack("{s:s, s:O, s:b}", "alias", j->arg, "targets", targets,
					   "created", !existed));
	} else if (st == STORE_NOTFOUND) {
		/* Name the target at fault. */
		struct store_resolved *r = xmalloc(sizeof(*r));
		const char *unknown = NULL;
		for (unsigned int i = 0; i < n && unknown == NULL; i++) {
			/* Only a target of a local domain can be unknown: the
			 * others are remote addresses. */
			const char *at = strrchr(list[i], '@');
			if (strcmp(list[i], j->arg) != 0 && at != NULL &&
			    store_domain_exists(j->store, at + 1) == STORE_OK &&
			    store_resolve(j->store, list[i], r) == STORE_NOTFOUND)
				unknown = list[i];
		}
		free(r);
		if (unknown != NULL)
			admin_reply_error(j, HTTP_BADREQUEST,
					  "target %s is neither a local user nor an alias", unknown);
		else
			admin_reply_error(j, HTTP_BADREQUEST,
					  "a target is neither a local user nor an alias");
	} else if (st == STORE_INVALID) {
		admin_reply_error(j, HTTP_BADREQUEST,
				  "alias %s refused: an alias must be in a local domain, must not be a user's address, and may reach at most %d users",
				  j->arg, STORE_ALIAS_TARGETS_MAX);
	} else if (st == STORE_LOOP) {
		admin_reply_error(j, 409,
				  "alias %s refused: its expansion would reach itself or nest deeper than %d levels",
				  j->arg, STORE_ALIAS_DEPTH);
	} else {
		admin_reply_store_error(j, st, "alias set");
	}
}

static void alias_delete(struct admin_job *j)
{
	reply_deleted(j, store_alias_del(j->store, j->arg), "alias", "alias del");
}

/* --- quotas --- */

static void quota_reply(struct admin_job *j, int code)
{
	struct store_quota own, eff;
	uint64_t messages = 0, octets = 0;
	enum store_status st = store_quota_get(j->store, j->arg, &own);
	if (st == STORE_OK)
		st = store_quota_effective(j->store, j->arg, &eff);
	if (st == STORE_OK)
		st = store_mailbox_usage(j->store, j->arg, &messages, &octets);
	if (st == STORE_NOTFOUND) {
		admin_reply_error(j, HTTP_NOTFOUND, "unknown user %s", j->arg);
		return;
	}
	if (st != STORE_OK) {
		admin_reply_store_error(j, st, "quota get");
		return;
	}
	admin_reply_json(j, code,
			 json_pack("{s:{s:I, s:o, s:o}, s:{s:I, s:o, s:o}}",
				   "messages", "used", (json_int_t)messages,
				   "limit", limit_json(eff.messages), "own", limit_json(own.messages),
				   "octets", "used", (json_int_t)octets,
				   "limit", limit_json(eff.octets), "own", limit_json(own.octets)));
}

static void quota_get(struct admin_job *j)
{
	quota_reply(j, HTTP_OK);
}

static const char *const quota_keys[] = { "messages", "octets", NULL };

static void quota_put_prepare(struct admin_job *j)
{
	if (!body_keys_ok(j, quota_keys))
		return;
	if (j->body == NULL) {
		admin_reply_error(j, HTTP_BADREQUEST,
				  "the body must be {\"messages\": N|null, \"octets\": N|null}");
		return;
	}
	for (const char *const *k = quota_keys; *k != NULL; k++) {
		json_t *v = json_object_get(j->body, *k);
		if (v == NULL || json_is_null(v))
			continue;
		if (!json_is_integer(v) || json_integer_value(v) <= 0) {
			admin_reply_error(j, HTTP_BADREQUEST,
					  "%s: a positive integer, or null for no limit of the user's own",
					  *k);
			return;
		}
	}
}

static void quota_put(struct admin_job *j)
{
	struct store_quota own;
	enum store_status st = store_quota_get(j->store, j->arg, &own);
	if (st == STORE_NOTFOUND) {
		admin_reply_error(j, HTTP_NOTFOUND, "unknown user %s", j->arg);
		return;
	}
	if (st != STORE_OK) {
		admin_reply_store_error(j, st, "quota get");
		return;
	}
	json_t *m = json_object_get(j->body, "messages"), *o = json_object_get(j->body, "octets");
	if (m != NULL)
		own.messages = json_is_null(m) ? STORE_NO_LIMIT : (uint64_t)json_integer_value(m);
	if (o != NULL)
		own.octets = json_is_null(o) ? STORE_NO_LIMIT : (uint64_t)json_integer_value(o);
	st = store_quota_set(j->store, j->arg, &own);
	if (st == STORE_NOTFOUND)
		admin_reply_error(j, HTTP_NOTFOUND, "unknown user %s", j->arg);
	else if (st != STORE_OK)
		admin_reply_store_error(j, st, "quota set");
	else
		quota_reply(j, HTTP_OK);
}

/* --- the POP3 EXPIRE policy of a user --- */

/* "never", a number of days, or (own only) "default". */
static json_t *expire_json(int days)
{
	if (days == STORE_EXPIRE_DEFAULT)
		return json_string("default");
	if (days == STORE_EXPIRE_NEVER)
		return json_string("never");
	return json_integer(days);
}

static void expire_get(struct admin_job *j)
{
	int own;
	enum store_status st = store_user_expire_get(j->store, j->arg, &own);
	if (st == STORE_NOTFOUND) {
		admin_reply_error(j, HTTP_NOTFOUND, "unknown user %s", j->arg);
		return;
	}
	if (st != STORE_OK) {
		admin_reply_store_error(j, st, "expire get");
		return;
	}
	int eff = own == STORE_EXPIRE_DEFAULT ? j->set->pop3_expire_days : own;
	admin_reply_json(j, HTTP_OK, json_pack("{s:o, s:o}", "own", expire_json(own),
					       "effective", expire_json(eff)));
}

static const char *const expire_keys[] = { "days", NULL };

/* {"days": N | "never" | "default"} */
static int expire_days_of(const json_t *body)
{
	const json_t *v = json_object_get(body, "days");
	if (json_is_string(v) && strcmp(json_string_value(v), "never") == 0)
		return STORE_EXPIRE_NEVER;
	if (json_is_string(v) && strcmp(json_string_value(v), "default") == 0)
		return STORE_EXPIRE_DEFAULT;
	if (json_is_integer(v) && json_integer_value(v) >= 0 &&
	    json_integer_value(v) <= STORE_EXPIRE_DAYS_MAX)
		return (int)json_integer_value(v);
	return INT_MIN;
}

static void expire_put_prepare(struct admin_job *j)
{
	if (!body_keys_ok(j, expire_keys))
		return;
	if (j->body == NULL || expire_days_of(j->body) == INT_MIN)
		admin_reply_error(j, HTTP_BADREQUEST,
				  "the body must be {\"days\": N (0..%d) | \"never\" | \"default\"}",
				  STORE_EXPIRE_DAYS_MAX);
}

static void expire_put(struct admin_job *j)
{
	enum store_status st = store_user_expire_set(j->store, j->arg, expire_days_of(j->body));
	if (st == STORE_NOTFOUND)
		admin_reply_error(j, HTTP_NOTFOUND, "unknown user %s", j->arg);
	else if (st != STORE_OK)
		admin_reply_store_error(j, st, "expire set");
	else
		expire_get(j);
}

/* --- tasks --- */

static const char *const repair_keys[] = { "dry_run", "per_second", "min_age", "from", NULL };

/* A whole number in 0..1e9 (what the command line accepts). */
static bool uint_option(struct admin_job *j, const char *key, unsigned int *out)
{
	json_t *v = json_object_get(j->body, key);
	if (v == NULL)
		return true;
	if (!json_is_integer(v) || json_integer_value(v) < 0 ||
	    json_integer_value(v) > 1000000000) {
		admin_reply_error(j, HTTP_BADREQUEST, "%s: a whole number from 0 to 1000000000", key);
		return false;
	}
	*out = (unsigned int)json_integer_value(v);
	return true;
}

static void repair_post(struct admin_job *j)
{
	struct store_repair_options opts = { .per_second = 0, .min_age_secs = 3600,
					     .check = true, .sweep = true };
	if (!body_keys_ok(j, repair_keys))
		return;
	if (j->body != NULL) {
		json_t *d = json_object_get(j->body, "dry_run");
		if (d != NULL && !json_is_boolean(d)) {
			admin_reply_error(j, HTTP_BADREQUEST, "dry_run: true or false");
			return;
		}
		opts.dry_run = d != NULL && json_is_true(d);
		if (!uint_option(j, "per_second", &opts.per_second) ||
		    !uint_option(j, "min_age", &opts.min_age_secs))
			return;
		/* A token to resume after (a token_reached), as --from. */
		json_t *from = json_object_get(j->body, "from");
		if (from != NULL && !json_is_integer(from)) {
			admin_reply_error(j, HTTP_BADREQUEST, "from: a token (a signed 64-bit number)");
			return;
		}
		if (from != NULL) {
			opts.has_from = true;
			opts.from_token = (int64_t)json_integer_value(from);
		}
	}
	char id[ADMIN_TASK_ID_LEN + 1];
	if (admin_tasks_submit(j->tasks, &opts, id) < 0) {
		admin_reply_error(j, HTTP_SERVUNAVAIL, "%d repair tasks already wait; try again later",
				  ADMIN_TASKS_WAITING_MAX);
		return;
	}
	admin_reply_json(j, 202, json_pack("{s:s}", "id", id));
	char location[96];
	snprintf(location, sizeof(location), "/tasks/%s", id);
	admin_set_header(j, "Location", location);
}

static void tasks_list(struct admin_job *j)
{
	admin_reply_json(j, HTTP_OK, json_pack("{s:o}", "tasks", admin_tasks_list(j->tasks)));
}

static void task_get(struct admin_job *j)
{
	json_t *t = admin_tasks_get(j->tasks, j->arg);
	if (t != NULL)
		admin_reply_json(j, HTTP_OK, t);
	else
		admin_reply_error(j, HTTP_NOTFOUND, "unknown task %s (the last %d are kept)", j->arg,
				  ADMIN_TASKS_KEPT);
}

/* --- health and metrics --- */

static void healthcheck(struct admin_job *j)
{
	struct buf detail;
	buf_init(&detail, 4096);
	enum store_status st = store_health(j->store, &detail);
	if (st == STORE_OK && detail.len == 0) {
		admin_reply_json(j, HTTP_OK, json_pack("{s:s}", "store", "ok"));
	} else if (st == STORE_OK) {
		/* Healthy with a warning (e.g. Cassandra's "durable: no"). */
		json_t *d = json_stringn(detail.data, detail.len);
		admin_reply_json(j, HTTP_OK, d != NULL ? json_pack("{s:s, s:o}", "store", "ok",
								   "detail", d)
						       : json_pack("{s:s}", "store", "ok"));
	} else {
		if (detail.len == 0)
			buf_append_str(&detail, store_status_name(st));
		json_t *d = json_stringn(detail.data, detail.len);
		admin_reply_json(j, HTTP_SERVUNAVAIL,
				 json_pack("{s:s, s:o}", "store", "failing", "detail",
					   d != NULL ? d : json_string(store_status_name(st))));
	}
	buf_deinit(&detail);
}

/* --- the outbound queue --- */

static const char *queue_state_text(enum store_queue_state st)
{
	return st == STORE_QUEUE_SENT ? "sent" : st == STORE_QUEUE_FAILED ? "failed" : "pending";
}

#define QUEUE_LIST_MAX 1000

static void queue_list(struct admin_job *j)
{
	struct store_queue_entry *entries = NULL;
	unsigned int count = 0;
	enum store_status st = store_queue_scan(j->store, NULL, INT64_MAX, QUEUE_LIST_MAX + 1,
						&entries, &count);
	if (st != STORE_OK) {
		admin_reply_store_error(j, st, "queue");
		return;
	}
	json_t *list = json_array();
	for (unsigned int i = 0; i < count && i < QUEUE_LIST_MAX; i++) {
		const struct store_queue_entry *e = &entries[i];
		char id[UUID_STR_LEN + 1];
		uuid_format(&e->id, id);
		json_t *rcpts = json_array();
		for (unsigned int k = 0; k < e->rcpt_count; k++)
			json_array_append_new(rcpts, json_pack("{s:s, s:s, s:s}", "address", e->rcpts[k].address,
							       "state", queue_state_text(e->rcpts[k].state),
							       "last_reply", e->rcpts[k].diagnostic));
		json_array_append_new(list, json_pack("{s:s, s:s, s:s, s:I, s:I, s:i, s:I, s:o}", "id", id,
						      "owner", e->owner, "sender", e->sender,
						      "queued_us", (json_int_t)e->queued_us,
						      "next_attempt_us", (json_int_t)e->next_attempt_us,
						      "attempts", (int)e->attempts, "size", (json_int_t)e->size,
						      "recipients", rcpts));
	}
	admin_reply_json(j, HTTP_OK, json_pack("{s:o, s:b}", "messages", list, "truncated",
					       count > QUEUE_LIST_MAX));
	store_queue_entries_free(&entries, count);
}

/* Every message due now, and the runner woken: it sends them at once. */
static void queue_flush(struct admin_job *j)
{
	unsigned int n = 0;
	enum store_status st = store_queue_flush(j->store, &n);
	if (st != STORE_OK) {
		admin_reply_store_error(j, st, "queue");
		return;
	}
	if (j->env->queued != NULL)
		j->env->queued(j->env);
	admin_reply_json(j, HTTP_OK, json_pack("{s:i}", "due", (int)n));
}

static void queue_delete(struct admin_job *j)
{
	struct uuid id;
	if (uuid_parse(j->arg, &id) < 0) {
		admin_reply_error(j, HTTP_NOTFOUND, "queue %.64s: not found", j->arg);
		return;
	}
	enum store_status st = store_queue_del(j->store, &id);
	if (st != STORE_OK) {
		char what[sizeof(j->arg) + 8];
		snprintf(what, sizeof(what), "queue %s", j->arg);
		admin_reply_store_error(j, st, what);
		return;
	}
	admin_reply_json(j, HTTP_OK, json_pack("{s:s}", "deleted", j->arg));
}

static void metrics(struct admin_job *j)
{
	buf_reset(&j->reply);
	metrics_render(&j->reply);
	store_metrics_render(j->store, &j->reply);
	j->code = HTTP_OK;
	j->content_type = "text/plain; version=0.0.4";
}

/* --- routing --- */

#define GET EVHTTP_REQ_GET
#define PUT EVHTTP_REQ_PUT
#define POST EVHTTP_REQ_POST
#define DELETE EVHTTP_REQ_DELETE

static const struct route routes[] = {
	{ { "domains" }, ARG_NONE, { { GET, NULL, domains_list } } },
	{ { "domains", "*" }, ARG_DOMAIN,
	  { { PUT, no_body, domain_put }, { DELETE, NULL, domain_delete } } },
	{ { "users" }, ARG_NONE, { { GET, NULL, users_list } } },
	{ { "users", "*" }, ARG_ADDRESS,
	  { { PUT, user_put_prepare, user_put }, { DELETE, NULL, user_delete } } },
	{ { "users", "*", "mailbox" }, ARG_ADDRESS, { { GET, NULL, user_mailbox } } },
	{ { "users", "*", "expire" }, ARG_ADDRESS,
	  { { GET, NULL, expire_get }, { PUT, expire_put_prepare, expire_put } } },
	{ { "aliases" }, ARG_NONE, { { GET, NULL, aliases_list } } },
	{ { "aliases", "*" }, ARG_ADDRESS,
	  { { GET, NULL, alias_get }, { PUT, alias_put_prepare, alias_put },
	    { DELETE, NULL, alias_delete } } },
	{ { "quota", "*" }, ARG_ADDRESS,
	  { { GET, NULL, quota_get }, { PUT, quota_put_prepare, quota_put } } },
	{ { "tasks" }, ARG_NONE, { { GET, tasks_list, NULL } } },
	{ { "tasks", "repair" }, ARG_NONE, { { POST, repair_post, NULL } } },
	{ { "tasks", "*" }, ARG_TASK, { { GET, task_get, NULL } } },
	{ { "queue" }, ARG_NONE, { { GET, NULL, queue_list } } },
	{ { "queue", "flush" }, ARG_NONE, { { POST, NULL, queue_flush } } },
	{ { "queue", "*" }, ARG_QUEUE_ID, { { DELETE, NULL, queue_delete } } },
	{ { "healthcheck" }, ARG_NONE, { { GET, NULL, healthcheck } } },
	{ { "metrics" }, ARG_NONE, { { GET, NULL, metrics } } },
};

static const char *method_text(enum evhttp_cmd_type m)
{
	return m == GET ? "GET" : m == PUT ? "PUT" : m == POST ? "POST" : "DELETE";
}

bool admin_route_is_public(const struct tern_settings *set, enum evhttp_cmd_type method,
			   const char *path)
{
	return set->admin_metrics_public && method == GET && strcmp(path, "/metrics") == 0;
}

/* Decodes and normalises the path's argument into j->arg. 0, or -1 with
 * a 400 answered. */
static int parse_arg(struct admin_job *j, enum arg_kind kind, const char *raw)
{
	size_t len = 0;
	char *s = evhttp_uridecode(raw, 0, &len);
	if (s == NULL || len != strlen(s)) {
		admin_reply_error(j, HTTP_BADREQUEST, "invalid escape in the path");
		free(s);
		return -1;
	}
	int ret = 0;
	if (kind == ARG_DOMAIN) {
		if (str_copy(j->arg, s, sizeof(j->arg)) > MAIL_DOMAIN_MAX ||
		    !mail_domain_is_valid(s, len)) {
			admin_reply_error(j, HTTP_BADREQUEST, "invalid domain name \"%.255s\"", s);
			ret = -1;
		} else {
			str_lower(j->arg);
		}
	} else if (kind == ARG_ADDRESS) {
		struct mail_address addr;
		const char *error;
		if (mail_address_parse(s, len, &addr, &error) < 0) {
			admin_reply_error(j, HTTP_BADREQUEST, "invalid address \"%.320s\": %s", s, error);
			ret = -1;
		} else {
			mail_address_format(&addr, j->arg, sizeof(j->arg));
		}
	} else if (str_copy(j->arg, s, sizeof(j->arg)) >= sizeof(j->arg)) {
		admin_reply_error(j, HTTP_NOTFOUND, kind == ARG_TASK ? "unknown task" : "no such queued message");
		ret = -1;
	}
	free(s);
	return ret;
}

/* Splits "/a/b/c" into at most PATH_SEGMENTS_MAX non-empty segments (in
 * copy). Returns the count, or -1 when the path cannot name a resource. */
static int split_path(const char *path, char copy[PATH_MAX_LEN + 1],
		      const char *segs[PATH_SEGMENTS_MAX])
{
	if (path[0] != '/' || str_copy(copy, path + 1, PATH_MAX_LEN + 1) > PATH_MAX_LEN)
		return -1;
	int n = 0;
	for (char *p = copy;;) {
		char *slash = strchr(p, '/');
		if (slash != NULL)
			*slash = '\0';
		if (*p == '\0' || n == PATH_SEGMENTS_MAX)
			return -1;
		segs[n++] = p;
		if (slash == NULL)
			return n;
		p = slash + 1;
	}
}

static const struct route *find_route(const char *const *segs, int n)
{
	for (size_t r = 0; r < sizeof(routes) / sizeof(routes[0]); r++) {
		const struct route *rt = &routes[r];
		int k = 0;
		while (k < PATH_SEGMENTS_MAX && rt->segments[k] != NULL)
			k++;
		if (k != n)
			continue;
		bool match = true;
		for (int i = 0; i < n && match; i++)
			match = strcmp(rt->segments[i], "*") == 0 || strcmp(rt->segments[i], segs[i]) == 0;
		if (match)
			return rt;
	}
	return NULL;
}

static int parse_body(struct admin_job *j, const char *body, size_t len)
{
	size_t i = 0;
	while (i < len && (body[i] == ' ' || body[i] == '\t' || body[i] == '\r' || body[i] == '\n'))
		i++;
	if (i == len)
		return 0;
	json_error_t err;
	j->body = json_loadb(body, len, JSON_REJECT_DUPLICATES, &err);
	if (j->body == NULL) {
		admin_reply_error(j, HTTP_BADREQUEST, "invalid JSON at line %d, column %d: %s",
				  err.line, err.column, err.text);
		return -1;
	}
	if (!json_is_object(j->body)) {
		admin_reply_error(j, HTTP_BADREQUEST, "the body must be a JSON object");
		return -1;
	}
	return 0;
}

void admin_route(struct admin_job *j, enum evhttp_cmd_type method, const char *path,
		 const char *query, const char *body, size_t body_len)
{
	char copy[PATH_MAX_LEN + 1];
	const char *segs[PATH_SEGMENTS_MAX];
	int n = split_path(path, copy, segs);
	const struct route *rt = n > 0 ? find_route(segs, n) : NULL;
	if (rt == NULL) {
		admin_reply_error(j, HTTP_NOTFOUND, "no such resource");
		return;
	}
	const struct endpoint *ep = NULL;
	char allow[64] = "";
	for (size_t i = 0; i < sizeof(rt->endpoints) / sizeof(rt->endpoints[0]); i++) {
		const struct endpoint *e = &rt->endpoints[i];
		if (e->prepare == NULL && e->work == NULL)
			break;
		if (e->method == method)
			ep = e;
		size_t used = strlen(allow);
		snprintf(allow + used, sizeof(allow) - used, "%s%s", used > 0 ? ", " : "",
			 method_text(e->method));
	}
	if (ep == NULL) {
		admin_reply_error(j, HTTP_BADMETHOD, "method not allowed here (allowed: %s)", allow);
		admin_set_header(j, "Allow", allow);
		return;
	}
	if (rt->arg != ARG_NONE) {
		int at = 0;
		while (strcmp(rt->segments[at], "*") != 0)
			at++;
		if (parse_arg(j, rt->arg, segs[at]) < 0)
			return;
	}
	if (rt->endpoints[0].work == users_list && query != NULL) {
		struct evkeyvalq q;
		if (evhttp_parse_query_str(query, &q) != 0) {
			admin_reply_error(j, HTTP_BADREQUEST, "malformed query string");
			return;
		}
		const char *domain = evhttp_find_header(&q, "domain");
		int bad = 0;
		if (domain != NULL) {
			size_t len = strlen(domain);
			if (len > MAIL_DOMAIN_MAX || !mail_domain_is_valid(domain, len))
				bad = 1;
			else {
				str_copy(j->arg, domain, sizeof(j->arg));
				str_lower(j->arg);
			}
		}
		if (bad)
			admin_reply_error(j, HTTP_BADREQUEST, "invalid domain name \"%.255s\"", domain);
		evhttp_clear_headers(&q);
		if (bad)
			return;
	}
	if (parse_body(j, body, body_len) < 0)
		return;
	if (ep->prepare != NULL) {
		j->code = 0;
		ep->prepare(j);
		if (j->code != 0)
			return;
	}
	j->work = ep->work;
}
