/*
 * store: backend lookup by name and the generic half of every store call:
 * argument checks, mailbox identity (a name-based UUID of the address, so no
 * coordination is ever needed to agree on it), the backends' declared
 * configuration, the bounds of a message cursor, and the one reader of a
 * message being delivered (header + body, in memory or in a file) the
 * backends share.
 *
 * Invariants:
 * - A cursor never hands out more than its message's size, and nothing
 *   after an error: store_cursor_next() asks the backend for exactly the
 *   octets it appends, and a failed read leaves out as it was.
 * - The options a store was opened with are its own copy; secret values are
 *   wiped before they are freed, wherever the copy lives.
 * - Aliases are validated here, over the backends' plain rows, so every
 *   backend refuses the same things: an alias is an address of a local
 *   domain that is no user, its targets of local domains exist (a target
 *   of another domain is a remote address), and its expansion neither
 *   reaches itself nor nests deeper than STORE_ALIAS_DEPTH. Delivery
 *   (store_resolve) checks the same bounds again, because two nodes can
 *   store a loop between them at the same moment: it refuses, never loops.
 * - A quota is never a counter: usage is computed from the listing by the
 *   backend, and read only when some limit applies to the user.
 * - Resolving an address reads each user once, and that one read also
 *   yields the user's own limits (store_resolved.seen): the RCPT's quota
 *   check (store_quota_check_seen) reads nothing more without a limit.
 * - The outbound queue's arguments are checked here and its recipients
 *   encoded here, once for every backend: what reaches a backend is valid
 *   (node ids, addresses without control characters, at most
 *   STORE_QUEUE_RCPTS_MAX recipients, diagnostics capped and cleaned).
 */
#include "store-private.h"

#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"
#include "log.h"
#include "metrics.h"

/* In the order the settings error lists them. */
static const struct store_vfuncs *const backends[] = {
	&store_sqlite_vfuncs,
	&store_cassandra_vfuncs,
	&store_mem_vfuncs,
};
#define BACKEND_COUNT (sizeof(backends) / sizeof(backends[0]))

static const char *backend_names[BACKEND_COUNT + 1];
static pthread_once_t backend_names_once = PTHREAD_ONCE_INIT;

static void backend_names_init(void)
{
	for (size_t i = 0; i < BACKEND_COUNT; i++)
		backend_names[i] = backends[i]->name;
	backend_names[BACKEND_COUNT] = NULL;
}

/* Each backend's vtable with the timed wrappers (see below). */
static struct store_vfuncs timed_vfuncs[BACKEND_COUNT];
static pthread_once_t timed_once = PTHREAD_ONCE_INIT;
static void timed_init(void);

const char *store_status_name(enum store_status st)
{
	switch (st) {
	case STORE_OK: return "ok";
	case STORE_NOTFOUND: return "not found";
	case STORE_EXISTS: return "already exists";
	case STORE_TEMPFAIL: return "temporary failure";
	case STORE_UNCERTAIN: return "uncertain outcome";
	case STORE_PERM: return "permanent failure";
	case STORE_TOOBIG: return "too big";
	case STORE_INVALID: return "invalid";
	case STORE_OVERQUOTA: return "over quota";
	case STORE_LOOP: return "alias loop";
	case STORE_WOULDBLOCK: return "would block";
	}
	return "unknown";
}

/* --- latency and error metrics: every backend call is timed ---
 *
 * A store's vtable (store->v) is a copy of its backend's in which the
 * calls below go through a wrapper that times them and counts errors; the
 * wrapper calls the backend's own (store->backend_v). Entries without a
 * wrapper are the backend's as they are. */

enum store_op {
	STORE_OP_DELIVER, STORE_OP_MAILDROP_OPEN, STORE_OP_CURSOR_OPEN, STORE_OP_CURSOR_NEXT,
	STORE_OP_CURSOR_CLOSE, STORE_OP_EXPUNGE, STORE_OP_USER_GET, STORE_OP_USER_ADD,
	STORE_OP_USER_DEL, STORE_OP_USER_SET_PASSWORD, STORE_OP_USER_LIST, STORE_OP_DOMAIN_ADD,
	STORE_OP_DOMAIN_DEL, STORE_OP_DOMAIN_EXISTS, STORE_OP_DOMAIN_LIST, STORE_OP_REPAIR,
	STORE_OP_ALIAS_PUT, STORE_OP_ALIAS_DEL, STORE_OP_ALIAS_GET, STORE_OP_ALIAS_LIST,
	STORE_OP_QUOTA_GET, STORE_OP_QUOTA_SET, STORE_OP_MAILBOX_USAGE, STORE_OP_HEALTH,
	STORE_OP_QUEUE_PUT, STORE_OP_QUEUE_SCAN, STORE_OP_QUEUE_GET, STORE_OP_QUEUE_READ,
	STORE_OP_QUEUE_UPDATE, STORE_OP_QUEUE_DEL, STORE_OP_QUEUE_FLUSH, STORE_OP_QUEUE_HEARTBEAT,
	STORE_OP_QUEUE_NODES,
	STORE_OP_COUNT
};

static const char *const op_names[STORE_OP_COUNT] = {
	"deliver", "maildrop_open", "cursor_open", "cursor_next", "cursor_close", "expunge",
	"user_get", "user_add", "user_del", "user_set_password", "user_list", "domain_add",
	"domain_del", "domain_exists", "domain_list", "repair",
	"alias_put", "alias_del", "alias_get", "alias_list",
	"quota_get", "quota_set", "mailbox_usage", "health",
	"queue_put", "queue_scan", "queue_get", "queue_read", "queue_update", "queue_del",
	"queue_flush", "queue_heartbeat", "queue_nodes",
};

/* The status label of tern_store_errors_total (store_status_name() has spaces). */
#define STATUS_LABELS (STORE_LOOP + 1)
static const char *const status_labels[STATUS_LABELS] = {
	[STORE_NOTFOUND] = "notfound", [STORE_EXISTS] = "exists", [STORE_TEMPFAIL] = "tempfail",
	[STORE_UNCERTAIN] = "uncertain", [STORE_PERM] = "perm", [STORE_TOOBIG] = "toobig",
	[STORE_INVALID] = "invalid", [STORE_OVERQUOTA] = "overquota", [STORE_LOOP] = "loop",
};

static const char *const op_labels[] = { "operation", NULL };
static const char *const op_status_labels[] = { "operation", "status", NULL };
static const struct metrics_def op_seconds_def = {
	METRICS_HISTOGRAM, "tern_store_operation_seconds",
	"Time a store backend call took, by operation (cursor_next: one piece of a message).",
	op_labels, metrics_latency_buckets_ns, METRICS_LATENCY_BUCKET_COUNT, 1e-9,
};
static const struct metrics_def op_errors_def = {
	METRICS_COUNTER, "tern_store_errors_total",
	"Store backend calls that did not return ok, by operation and status.",
	op_status_labels, NULL, 0, 0,
};
static struct metrics_series *op_seconds[STORE_OP_COUNT];
/* Created on a first error, by whichever thread sees it. */
static struct metrics_series *_Atomic op_errors[STORE_OP_COUNT][STATUS_LABELS];

/* Records a call that started at t0 (metrics_now_ns()) and passes its status on. */
static enum store_status op_done(enum store_op op, uint64_t t0, enum store_status st)
{
	metrics_observe_since(op_seconds[op], t0);
	if (st != STORE_OK && (unsigned int)st < STATUS_LABELS) {
		struct metrics_series *e = op_errors[op][st];
		if (e == NULL) {
			e = metrics_series(metrics_register(&op_errors_def),
					   (const char *const[]){ op_names[op], status_labels[st] });
			op_errors[op][st] = e;
		}
		metrics_inc(e);
	}
	return st;
}

/* timed_NAME(PARAMS) calls the backend's NAME(ARGS), found from BACKEND. */
#define TIMED(op, name, backend, params, args)                                 \
	static enum store_status timed_##name params                           \
	{                                                                      \
		uint64_t t0 = metrics_now_ns();                                \
		return op_done(STORE_OP_##op, t0, (backend)->name args);      \
	}

TIMED(DOMAIN_ADD, domain_add, s->backend_v, (struct store *s, const char *d), (s, d))
TIMED(DOMAIN_DEL, domain_del, s->backend_v, (struct store *s, const char *d), (s, d))
TIMED(DOMAIN_EXISTS, domain_exists, s->backend_v, (struct store *s, const char *d), (s, d))
TIMED(DOMAIN_LIST, domain_list, s->backend_v, (struct store *s, struct buf *out), (s, out))
TIMED(USER_ADD, user_add, s->backend_v, (struct store *s, const char *a, const char *h), (s, a, h))
TIMED(USER_DEL, user_del, s->backend_v, (struct store *s, const char *a), (s, a))
TIMED(USER_SET_PASSWORD, user_set_password, s->backend_v,
      (struct store *s, const char *a, const char *h), (s, a, h))
TIMED(USER_GET, user_get, s->backend_v, (struct store *s, const char *a, struct buf *h), (s, a, h))
TIMED(USER_LIST, user_list, s->backend_v, (struct store *s, struct buf *out), (s, out))
TIMED(DELIVER, deliver, s->backend_v, (struct store *s, struct store_delivery *d), (s, d))
TIMED(MAILDROP_OPEN, maildrop_read, s->backend_v, (struct store *s, struct store_maildrop *md),
      (s, md))
TIMED(CURSOR_OPEN, cursor_open, md->store->backend_v,
      (struct store_maildrop *md, unsigned int i, struct store_cursor **c), (md, i, c))
TIMED(CURSOR_NEXT, cursor_read, c->md->store->backend_v,
      (struct store_cursor *c, uint64_t off, char *dst, size_t n), (c, off, dst, n))
TIMED(EXPUNGE, expunge, md->store->backend_v,
      (struct store_maildrop *md, const unsigned int *idx, unsigned int n), (md, idx, n))
TIMED(REPAIR, repair, s->backend_v,
      (struct store *s, const struct store_repair_options *o, struct store_repair_report *r),
      (s, o, r))

TIMED(ALIAS_PUT, alias_put, s->backend_v, (struct store *s, const char *a, const char *t), (s, a, t))
TIMED(ALIAS_DEL, alias_del, s->backend_v, (struct store *s, const char *a), (s, a))
TIMED(ALIAS_GET, alias_get, s->backend_v, (struct store *s, const char *a, struct buf *t), (s, a, t))
TIMED(ALIAS_LIST, alias_list, s->backend_v, (struct store *s, struct buf *out), (s, out))
TIMED(QUOTA_GET, quota_get, s->backend_v, (struct store *s, const char *a, struct store_quota *q),
      (s, a, q))
TIMED(QUOTA_SET, quota_set, s->backend_v,
      (struct store *s, const char *a, const struct store_quota *q), (s, a, q))
TIMED(MAILBOX_USAGE, mailbox_usage, s->backend_v,
      (struct store *s, const char *a, uint64_t *messages, uint64_t *octets),
      (s, a, messages, octets))
TIMED(MAILBOX_USAGE, listing_usage, s->backend_v,
      (struct store *s, const char *a, uint64_t *messages, uint64_t *octets),
      (s, a, messages, octets))
TIMED(HEALTH, health, s->backend_v, (struct store *s, struct buf *detail), (s, detail))

TIMED(QUEUE_PUT, queue_put, s->backend_v,
      (struct store *s, const struct store_queue_put *q, const struct buf *r), (s, q, r))
TIMED(QUEUE_SCAN, queue_scan, s->backend_v,
      (struct store *s, const char *o, int64_t due, unsigned int max,
       struct store_queue_entry **e, unsigned int *n), (s, o, due, max, e, n))
TIMED(QUEUE_GET, queue_get, s->backend_v,
      (struct store *s, const struct uuid *id, struct store_queue_entry *e), (s, id, e))
TIMED(QUEUE_READ, queue_read, s->backend_v,
      (struct store *s, const struct store_queue_entry *e, uint64_t off, char *dst, size_t n),
      (s, e, off, dst, n))
TIMED(QUEUE_UPDATE, queue_update, s->backend_v,
      (struct store *s, const struct store_queue_entry *e, const struct buf *r), (s, e, r))
TIMED(QUEUE_DEL, queue_del, s->backend_v, (struct store *s, const struct uuid *id), (s, id))
TIMED(QUEUE_FLUSH, queue_flush, s->backend_v, (struct store *s, int64_t now, unsigned int *n),
      (s, now, n))
TIMED(QUEUE_HEARTBEAT, queue_heartbeat, s->backend_v,
      (struct store *s, const char *node, int64_t now), (s, node, now))
TIMED(QUEUE_NODES, queue_nodes, s->backend_v,
      (struct store *s, struct store_queue_node **nodes, unsigned int *n), (s, nodes, n))

static void timed_cursor_close(struct store_cursor *c)
{
	const struct store_vfuncs *backend_v = c->md->store->backend_v;
	uint64_t t0 = metrics_now_ns();
	backend_v->cursor_close(c);
	op_done(STORE_OP_CURSOR_CLOSE, t0, STORE_OK);
}

static void timed_init(void)
{
	struct metrics_family *f = metrics_register(&op_seconds_def);
	for (unsigned int i = 0; i < STORE_OP_COUNT; i++)
		op_seconds[i] = metrics_series(f, (const char *const[]){ op_names[i] });
	for (size_t i = 0; i < BACKEND_COUNT; i++) {
		struct store_vfuncs *t = &timed_vfuncs[i];
		*t = *backends[i];
		/* an entry a backend leaves NULL stays NULL */
#define WRAP(name) t->name = t->name != NULL ? timed_##name : NULL
		WRAP(domain_add);
		WRAP(domain_del);
		WRAP(domain_exists);
		WRAP(domain_list);
		WRAP(user_add);
		WRAP(user_del);
		WRAP(user_set_password);
		WRAP(user_get);
		WRAP(user_list);
		WRAP(deliver);
		WRAP(maildrop_read);
		WRAP(cursor_open);
		WRAP(cursor_read);
		WRAP(cursor_close);
		WRAP(expunge);
		WRAP(repair);
		WRAP(alias_put);
		WRAP(alias_del);
		WRAP(alias_get);
		WRAP(alias_list);
		WRAP(quota_get);
		WRAP(quota_set);
		WRAP(mailbox_usage);
		WRAP(listing_usage);
		WRAP(health);
		WRAP(queue_put);
		WRAP(queue_scan);
		WRAP(queue_get);
		WRAP(queue_read);
		WRAP(queue_update);
		WRAP(queue_del);
		WRAP(queue_flush);
		WRAP(queue_heartbeat);
		WRAP(queue_nodes);
#undef WRAP
	}
}

/* --- the backends' configuration --- */

const char *const *store_backend_names(void)
{
	pthread_once(&backend_names_once, backend_names_init);
	return backend_names;
}

bool store_section_exists(const char *section)
{
	for (size_t i = 0; i < BACKEND_COUNT; i++)
		if (backends[i]->section != NULL && strcmp(backends[i]->section, section) == 0)
			return true;
	return false;
}

const struct store_option_def *store_option_lookup(const char *section, const char *key)
{
	for (size_t i = 0; i < BACKEND_COUNT; i++) {
		if (backends[i]->section == NULL || strcmp(backends[i]->section, section) != 0)
			continue;
		for (const struct store_option_def *d = backends[i]->options;
		     d != NULL && d->key != NULL; d++)
			if (strcmp(d->key, key) == 0)
				return d;
	}
	return NULL;
}

static struct store_option *find_option(const struct store_settings *set, const char *section,
					const char *key)
{
	for (unsigned int i = 0; i < set->option_count; i++)
		if (strcmp(set->options[i].section, section) == 0 &&
		    strcmp(set->options[i].key, key) == 0)
			return &set->options[i];
	return NULL;
}

static void free_value(struct store_option *o)
{
	if (o->secret)
		explicit_bzero(o->value, strlen(o->value));
	free(o->value);
	o->value = NULL;
}

void store_settings_set(struct store_settings *set, const char *section, const char *key,
			const char *value)
{
	const struct store_option_def *def = store_option_lookup(section, key);
	if (def == NULL)
		panic("store: no backend option [%s] %s", section, key);
	struct store_option *o = find_option(set, section, key);
	if (o == NULL) {
		set->options = xrealloc(set->options, (set->option_count + 1) * sizeof(*set->options));
		o = &set->options[set->option_count++];
		o->section = xstrdup(section);
		o->key = xstrdup(key);
	} else {
		free_value(o);
	}
	o->value = xstrdup(value);
	o->secret = def->secret;
}

const char *store_settings_get(const struct store_settings *set, const char *section,
			       const char *key)
{
	const struct store_option *o = find_option(set, section, key);
	return o != NULL ? o->value : NULL;
}

void store_settings_deinit(struct store_settings *set)
{
	for (unsigned int i = 0; i < set->option_count; i++) {
		free_value(&set->options[i]);
		free(set->options[i].section);
		free(set->options[i].key);
	}
	free(set->options);
	set->options = NULL;
	set->option_count = 0;
}

/* A copy whose options the copy owns. */
static void settings_copy(struct store_settings *dst, const struct store_settings *src)
{
	*dst = *src;
	dst->options = NULL;
	dst->option_count = 0;
	for (unsigned int i = 0; i < src->option_count; i++)
		store_settings_set(dst, src->options[i].section, src->options[i].key,
				   src->options[i].value);
}

/* --- opening and closing --- */

struct store *store_open(const struct store_settings *set, const char **error_r)
{
	const char *name = set->backend != NULL ? set->backend : "sqlite";
	for (size_t i = 0; i < BACKEND_COUNT; i++) {
		if (strcmp(backends[i]->name, name) != 0)
			continue;
		/* The backend reads the store's own copy, before and after open. */
		struct store_settings own;
		settings_copy(&own, set);
		struct store *store = backends[i]->open(&own, error_r);
		if (store == NULL) {
			store_settings_deinit(&own);
			return NULL;
		}
		pthread_once(&timed_once, timed_init);
		store->v = &timed_vfuncs[i];
		store->backend_v = backends[i];
		store->set = own;
		return store;
	}
	*error_r = "unknown store backend (this build has: sqlite, cassandra, mem)";
	return NULL;
}

void store_close(struct store **storep)
{
	struct store *store = *storep;
	if (store == NULL)
		return;
	*storep = NULL;
	struct store_settings set = store->set;
	store->v->close(store);
	store_settings_deinit(&set);
}

const char *store_backend_name(const struct store *store)
{
	return store->v->name;
}

unsigned int store_worker_threads(const struct store *store)
{
	return store->v->worker_threads > 0 ? store->v->worker_threads : 1;
}

enum store_status store_domain_add(struct store *store, const char *domain)
{
	return store->v->domain_add(store, domain);
}

static const char *address_domain(const char *address)
{
	const char *at = strrchr(address, '@');
	return at == NULL || at == address || at[1] == '\0' ? NULL : at + 1;
}

/* Whether some alias lives in domain: 1 / 0, or -1 with *st_r. Aliases
 * are few, so this reads the alias list (an administrative path). */
static int domain_has_aliases(struct store *store, const char *domain, enum store_status *st_r)
{
	struct buf list;
	buf_init(&list, 0);
	*st_r = store->v->alias_list(store, &list);
	int found = *st_r == STORE_OK ? 0 : -1;
	for (char *line = list.data; found == 0 && line != NULL && *line != '\0';) {
		char *end = strchr(line, '\n');
		char *sp = strchr(line, ' ');
		if (sp != NULL && (end == NULL || sp < end)) {
			*sp = '\0';
			const char *d = address_domain(line);
			found = d != NULL && strcmp(d, domain) == 0;
		}
		line = end != NULL ? end + 1 : NULL;
	}
	buf_deinit(&list);
	return found;
}

/* Refused (EXISTS) while users or aliases of the domain remain. */
enum store_status store_domain_del(struct store *store, const char *domain)
{
	enum store_status st;
	int aliases = domain_has_aliases(store, domain, &st);
	if (aliases != 0)
		return aliases > 0 ? STORE_EXISTS : st;
	return store->v->domain_del(store, domain);
}

enum store_status store_domain_exists(struct store *store, const char *domain)
{
	return store->v->domain_exists(store, domain);
}

enum store_status store_domain_list(struct store *store, struct buf *out)
{
	return store->v->domain_list(store, out);
}

/* An address that is an alias cannot become a user (EXISTS). */
enum store_status store_user_add(struct store *store, const char *address, const char *hash)
{
	const char *domain = address_domain(address);
	if (domain == NULL || *hash == '\0')
		return STORE_INVALID;
	enum store_status st = store->v->domain_exists(store, domain);
	if (st != STORE_OK)
		return st;
	struct buf targets;
	buf_init(&targets, 0);
	st = store->v->alias_get(store, address, &targets);
	buf_deinit(&targets);
	if (st != STORE_NOTFOUND)
		return st == STORE_OK ? STORE_EXISTS : st;
	return store->v->user_add(store, address, hash);
}

/* The user's quota goes with the user row. An alias row of the same
 * address (which only a race between two nodes can leave) goes too;
 * aliases that name the user as a target are left alone: delivery skips
 * targets that no longer exist. */
enum store_status store_user_del(struct store *store, const char *address)
{
	enum store_status st = store->v->user_del(store, address);
	if (st != STORE_OK)
		return st;
	st = store->v->alias_del(store, address);
	return st == STORE_NOTFOUND ? STORE_OK : st;
}

enum store_status store_user_set_password(struct store *store, const char *address,
					  const char *hash)
{
	if (*hash == '\0')
		return STORE_INVALID;
	return store->v->user_set_password(store, address, hash);
}

enum store_status store_user_get(struct store *store, const char *address, struct buf *hash_r)
{
	return store->v->user_get(store, address, hash_r);
}

enum store_status store_user_list(struct store *store, struct buf *out)
{
	return store->v->user_list(store, out);
}

/* --- aliases --- */

/* The expansion of an address into users and remote addresses,
 * depth-first. While an alias is being defined (store_alias_set),
 * `defining` names it and `defined` holds its new targets, which replace
 * whatever is stored. */
struct expansion {
	struct store *store;
	const char *defining, *defined;
	const char *path[STORE_ALIAS_DEPTH + 1]; /* the aliases being expanded */
	unsigned int depth;
	struct store_resolved *r;
	bool overflow;  /* more than STORE_ALIAS_TARGETS_MAX users and remote addresses */
};

/* Adds address to list (users or remote), folding duplicates; the two
 * lists together hold at most STORE_ALIAS_TARGETS_MAX. seen: what was read
 * of a user (users list only). */
static void resolved_add(struct expansion *e, char (*list)[STORE_ADDRESS_MAX + 1],
			 unsigned int *count, const char *address,
			 const struct store_user_seen *seen)
{
	struct store_resolved *r = e->r;
	for (unsigned int i = 0; i < *count; i++)
		if (strcmp(list[i], address) == 0)
			return; /* folded */
	if (r->count + r->remote_count == STORE_ALIAS_TARGETS_MAX) {
		e->overflow = true;
		return;
	}
	if (seen != NULL)
		r->seen[*count] = *seen;
	str_copy(list[(*count)++], address, sizeof(list[0]));
}

/* Whether address's domain is a local one: OK / NOTFOUND, or an error.
 * Domains are stored lower-case; a target may spell its domain otherwise. */
static enum store_status domain_is_local(struct store *store, const char *address)
{
	const char *domain = address_domain(address);
	char lower[STORE_ADDRESS_MAX + 1];
	if (domain == NULL || strlen(domain) >= sizeof(lower))
		return STORE_NOTFOUND;
	size_t i = 0;
	for (; domain[i] != '\0'; i++)
		lower[i] = (domain[i] >= 'A' && domain[i] <= 'Z') ? (char)(domain[i] + 32) : domain[i];
	lower[i] = '\0';
	return store->v->domain_exists(store, lower);
}

static enum store_status expand(struct expansion *e, const char *address, bool *found_r);

/* Expands each '\n'-terminated target of text; missing ones are skipped. */
static enum store_status expand_targets(struct expansion *e, const char *address,
					const char *text)
{
	if (e->depth == STORE_ALIAS_DEPTH)
		return STORE_LOOP; /* one level too deep */
	e->path[e->depth++] = address;
	enum store_status st = STORE_OK;
	char target[sizeof(e->r->users[0])];
	for (const char *p = text; *p != '\0' && st == STORE_OK;) {
		const char *nl = strchr(p, '\n');
		size_t len = nl != NULL ? (size_t)(nl - p) : strlen(p);
		if (len > 0 && len < sizeof(target)) {
			memcpy(target, p, len);
			target[len] = '\0';
			bool found;
			st = expand(e, target, &found);
		}
		p += len + (nl != NULL);
	}
	e->depth--;
	return st;
}

static enum store_status expand(struct expansion *e, const char *address, bool *found_r)
{
	*found_r = false;
	for (unsigned int i = 0; i < e->depth; i++)
		if (strcmp(e->path[i], address) == 0)
			return STORE_LOOP;
	if (e->defining != NULL && strcmp(address, e->defining) == 0) {
		*found_r = true;
		return expand_targets(e, address, e->defined);
	}
	/* One read of the user: whether it exists, and its own limits. */
	struct store_user_seen seen = { .read_us = clock_wall_us() };
	seen.own.messages = seen.own.octets = STORE_NO_LIMIT;
	enum store_status st = e->store->v->quota_get(e->store, address, &seen.own);
	struct buf b;
	buf_init(&b, 0);
	if (st == STORE_OK) {
		*found_r = true;
		resolved_add(e, e->r->users, &e->r->count, address, &seen);
	} else if (st == STORE_NOTFOUND) {
		st = e->store->v->alias_get(e->store, address, &b);
		if (st == STORE_OK) {
			*found_r = true;
			st = expand_targets(e, address, b.data);
		} else if (st == STORE_NOTFOUND && e->depth > 0) {
			/* A target: remote when its domain is not local, else
			 * one deleted since (skipped). The address resolved
			 * itself (depth 0) is never remote: its caller decides
			 * about other domains. */
			st = domain_is_local(e->store, address);
			if (st == STORE_NOTFOUND) {
				*found_r = true;
				resolved_add(e, e->r->remote, &e->r->remote_count, address, NULL);
				st = STORE_OK;
			}
		} else if (st == STORE_NOTFOUND) {
			st = STORE_OK;
		}
	}
	buf_deinit(&b);
	return st;
}

static bool is_postmaster(const char *address)
{
	return strncasecmp(address, "postmaster", 10) == 0 &&
	       (address[10] == '\0' || address[10] == '@');
}

/* The address's users and remote addresses; NOTFOUND when it is no user,
 * or an alias whose targets are all gone. */
static enum store_status resolve_one(struct store *store, const char *address,
				     struct store_resolved *r)
{
	struct expansion e = { .store = store, .r = r };
	r->count = r->remote_count = 0;
	bool found;
	enum store_status st = expand(&e, address, &found);
	if (st == STORE_OK && e.overflow)
		st = STORE_LOOP;
	if (st == STORE_OK && r->count == 0 && r->remote_count == 0)
		st = STORE_NOTFOUND;
	if (st != STORE_OK)
		r->count = r->remote_count = 0;
	return st;
}

/* <Postmaster> (RFC 5321 4.5.1), and postmaster@D of a local domain that
 * has no postmaster of its own: the postmaster (user or alias) of the
 * first local domain, in name order, that has one. */
static enum store_status resolve_postmaster(struct store *store, const char *skip_domain,
					    struct store_resolved *r)
{
	struct buf domains;
	buf_init(&domains, 0);
	enum store_status st = store->v->domain_list(store, &domains);
	if (st == STORE_OK) {
		store_sort_lines(&domains, 0);
		st = STORE_NOTFOUND;
	}
	for (char *d = domains.data; st == STORE_NOTFOUND && *d != '\0';) {
		char *nl = strchr(d, '\n');
		if (nl == NULL)
			break;
		*nl = '\0';
		char addr[sizeof(r->users[0])];
		if ((skip_domain == NULL || strcmp(d, skip_domain) != 0) &&
		    (size_t)snprintf(addr, sizeof(addr), "postmaster@%s", d) < sizeof(addr))
			st = resolve_one(store, addr, r);
		d = nl + 1;
	}
	buf_deinit(&domains);
	return st;
}

enum store_status store_resolve(struct store *store, const char *address,
				struct store_resolved *r)
{
	r->count = r->remote_count = 0;
	if (strcasecmp(address, "postmaster") == 0)
		return resolve_postmaster(store, NULL, r);
	const char *domain = address_domain(address);
	if (domain == NULL || strlen(address) >= sizeof(r->users[0]))
		return STORE_INVALID;
	enum store_status st = resolve_one(store, address, r);
	if (st != STORE_NOTFOUND || !is_postmaster(address))
		return st;
	/* Only "no such user or alias" falls back: an alias whose targets
	 * are gone is still postmaster@D's own. */
	struct buf b;
	buf_init(&b, 0);
	st = store->v->alias_get(store, address, &b);
	buf_deinit(&b);
	if (st != STORE_NOTFOUND)
		return st == STORE_OK ? STORE_NOTFOUND : st;
	st = store->v->domain_exists(store, domain);
	if (st != STORE_OK)
		return st;
	return resolve_postmaster(store, domain, r);
}

/* No control characters (the stored forms separate fields with them). */
static bool has_control(const char *s)
{
	for (; *s != '\0'; s++)
		if ((unsigned char)*s < 0x20 || *s == 0x7f)
			return true;
	return false;
}

static bool target_is_valid(const char *t)
{
	return address_domain(t) != NULL && strlen(t) <= STORE_ADDRESS_MAX && !has_control(t) &&
	       strchr(t, ' ') == NULL && strchr(t, ',') == NULL;
}

enum store_status store_alias_set(struct store *store, const char *address,
				  const char *const *targets, unsigned int target_count)
{
	const char *domain = address_domain(address);
	if (domain == NULL || !target_is_valid(address) || target_count == 0 ||
	    target_count > STORE_ALIAS_TARGETS_MAX)
		return STORE_INVALID;
	enum store_status st = store->v->domain_exists(store, domain);
	if (st != STORE_OK)
		return st == STORE_NOTFOUND ? STORE_INVALID : st;
	struct buf b;
	buf_init(&b, 0);
	st = store->v->user_get(store, address, &b);
	buf_wipe(&b);
	buf_deinit(&b);
	if (st != STORE_NOTFOUND)
		return st == STORE_OK ? STORE_INVALID : st;

	/* The targets text, duplicates folded. */
	struct buf text;
	buf_init(&text, 0);
	st = STORE_OK;
	for (unsigned int i = 0; i < target_count && st == STORE_OK; i++) {
		if (!target_is_valid(targets[i])) {
			st = STORE_INVALID;
			break;
		}
		if (strcmp(targets[i], address) == 0) {
			st = STORE_LOOP;
			break;
		}
		bool dup = false;
		for (unsigned int k = 0; k < i && !dup; k++)
			dup = strcmp(targets[k], targets[i]) == 0;
		if (!dup)
			buf_printf(&text, "%s\n", targets[i]);
	}
	/* Each target must exist now, and the whole expansion with the new
	 * definition must stay in bounds. */
	struct store_resolved *r = xmalloc(sizeof(*r));
	struct expansion e = { .store = store, .defining = address, .defined = text.data, .r = r };
	r->count = r->remote_count = 0;
	for (unsigned int i = 0; i < target_count && st == STORE_OK; i++) {
		bool found;
		e.path[0] = address;
		e.depth = 1;
		st = expand(&e, targets[i], &found);
		if (st == STORE_OK && !found)
			st = STORE_NOTFOUND;
	}
	if (st == STORE_OK && e.overflow)
		st = STORE_INVALID;
	if (st == STORE_OK && r->count == 0 && r->remote_count == 0)
		st = STORE_NOTFOUND; /* it would deliver nowhere */
	free(r);
	if (st == STORE_OK)
		st = store->v->alias_put(store, address, text.data);
	buf_deinit(&text);
	return st;
}

enum store_status store_alias_del(struct store *store, const char *address)
{
	return store->v->alias_del(store, address);
}

enum store_status store_alias_get(struct store *store, const char *address, struct buf *targets_r)
{
	return store->v->alias_get(store, address, targets_r);
}

enum store_status store_alias_list(struct store *store, struct buf *out)
{
	size_t start = out->len;
	enum store_status st = store->v->alias_list(store, out);
	if (st == STORE_OK)
		store_sort_lines(out, start);
	return st;
}

void store_alias_line(struct buf *out, const char *address, const char *targets, size_t len)
{
	buf_printf(out, "%s ", address);
	size_t start = out->len;
	while (len > 0 && targets[len - 1] == '\n')
		len--;
	buf_append(out, targets, len);
	for (size_t i = start; i < out->len; i++)
		if (out->data[i] == '\n')
			out->data[i] = ',';
	buf_append_c(out, '\n');
}

static int cmp_line(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

void store_sort_lines(struct buf *out, size_t start)
{
	char *copy = xstrndup(out->data + start, out->len - start);
	size_t n = 0;
	for (char *p = copy; *p != '\0'; p++)
		if (*p == '\n')
			n++;
	char **lines = xcalloc(n + 1, sizeof(char *));
	size_t k = 0;
	for (char *p = copy; *p != '\0' && k < n;) {
		lines[k++] = p;
		char *nl = strchr(p, '\n');
		*nl = '\0';
		p = nl + 1;
	}
	qsort(lines, k, sizeof(char *), cmp_line);
	out->len = start;
	out->data[start] = '\0';
	for (size_t i = 0; i < k; i++)
		buf_printf(out, "%s\n", lines[i]);
	free(lines);
	free(copy);
}

/* --- quotas and health --- */

struct store_quota store_quota_apply(const struct store *store, const struct store_quota *own)
{
	const struct store_quota *def = &store->set.default_quota;
	struct store_quota q = {
		.messages = own->messages != STORE_NO_LIMIT ? own->messages : def->messages,
		.octets = own->octets != STORE_NO_LIMIT ? own->octets : def->octets,
	};
	return q;
}

bool store_quota_fits(const struct store_quota *limits, uint64_t used_messages,
		      uint64_t used_octets, uint64_t size)
{
	if (limits->messages != STORE_NO_LIMIT && used_messages >= limits->messages)
		return false;
	return limits->octets == STORE_NO_LIMIT ||
	       (used_octets <= limits->octets && size <= limits->octets - used_octets);
}

bool store_quota_refuse_all(struct store_delivery *d)
{
	if (!d->quota_all_or_nothing)
		return false;
	bool over = false;
	for (unsigned int i = 0; i < d->rcpt_count && !over; i++)
		over = d->rcpts[i].status == STORE_OVERQUOTA;
	if (!over)
		return false;
	for (unsigned int i = 0; i < d->rcpt_count; i++) {
		if (d->rcpts[i].status == STORE_NOTFOUND)
			continue;
		d->rcpts[i].status = STORE_OVERQUOTA;
		d->rcpts[i].uidl[0] = '\0';
	}
	return true;
}

enum store_status store_quota_get(struct store *store, const char *address,
				  struct store_quota *own_r)
{
	own_r->messages = own_r->octets = STORE_NO_LIMIT;
	return store->v->quota_get(store, address, own_r);
}

/* Limits are kept as signed 64-bit integers by the backends. */
enum store_status store_quota_set(struct store *store, const char *address,
				  const struct store_quota *own)
{
	if (own->messages > INT64_MAX || own->octets > INT64_MAX)
		return STORE_INVALID;
	return store->v->quota_set(store, address, own);
}

enum store_status store_quota_effective(struct store *store, const char *address,
					struct store_quota *limits_r)
{
	struct store_quota own;
	enum store_status st = store_quota_get(store, address, &own);
	*limits_r = st == STORE_OK ? store_quota_apply(store, &own) : (struct store_quota){ 0, 0 };
	return st;
}

enum store_status store_mailbox_usage(struct store *store, const char *address,
				      uint64_t *messages_r, uint64_t *octets_r)
{
	*messages_r = *octets_r = 0;
	return store->v->mailbox_usage(store, address, messages_r, octets_r);
}

/* Whether one more message still fits under limits at RCPT, where its
 * size is unknown (at least one octet must). The usage is read only when
 * some limit applies; the caller has just read the user, so the backend
 * need not check it again (listing_usage). */
static enum store_status rcpt_fits(struct store *store, const char *address,
				   const struct store_quota *limits)
{
	if (store_quota_is_none(limits))
		return STORE_OK;
	uint64_t messages = 0, octets = 0;
	enum store_status st = store->v->listing_usage != NULL
		? store->v->listing_usage(store, address, &messages, &octets)
		: store_mailbox_usage(store, address, &messages, &octets);
	if (st != STORE_OK)
		return st;
	return store_quota_fits(limits, messages, octets, 1) ? STORE_OK : STORE_OVERQUOTA;
}

enum store_status store_quota_check(struct store *store, const char *address)
{
	struct store_quota limits;
	enum store_status st = store_quota_effective(store, address, &limits);
	return st != STORE_OK ? st : rcpt_fits(store, address, &limits);
}

enum store_status store_quota_check_seen(struct store *store, const char *address,
					 const struct store_user_seen *seen)
{
	if (seen->read_us == 0)
		return store_quota_check(store, address);
	struct store_quota limits = store_quota_apply(store, &seen->own);
	return rcpt_fits(store, address, &limits);
}

enum store_status store_health(struct store *store, struct buf *detail)
{
	return store->v->health(store, detail);
}

void store_delivery_init(struct store_delivery *d)
{
	timeuuid_generate(&d->message_id);
	d->attempts = 0;
	d->body_fd = -1;
	d->uidl = NULL;
}

bool store_uidl_valid(const char *uidl)
{
	size_t n = 0;
	for (; uidl[n] != '\0'; n++)
		if ((unsigned char)uidl[n] < 0x21 || (unsigned char)uidl[n] > 0x7e)
			return false;
	return n >= 1 && n <= STORE_UIDL_MAX;
}

bool store_delivery_uidl(const struct store_delivery *d, char uidl_r[STORE_UIDL_MAX + 2])
{
	if (d->uidl != NULL) {
		str_copy(uidl_r, d->uidl, STORE_UIDL_MAX + 2);
		return true;
	}
	uuid_format(&d->message_id, uidl_r);
	return false;
}

enum store_status store_deliver(struct store *store, struct store_delivery *d)
{
	if (d->rcpt_count == 0 || (d->header == NULL && d->header_len > 0) ||
	    (d->body_fd < 0 && d->body == NULL && d->body_len > 0) ||
	    (d->uidl != NULL && !store_uidl_valid(d->uidl)))
		return STORE_INVALID;
	for (unsigned int i = 0; i < d->rcpt_count; i++) {
		d->rcpts[i].status = STORE_TEMPFAIL;
		d->rcpts[i].uidl[0] = '\0';
	}
	d->attempts++;
	return store->v->deliver(store, d);
}

int store_delivery_read(const struct store_delivery *d, uint64_t offset, void *out, size_t len)
{
	char *p = out;
	if (offset < d->header_len) {
		size_t n = d->header_len - (size_t)offset < len ? d->header_len - (size_t)offset : len;
		memcpy(p, d->header + offset, n);
		p += n;
		len -= n;
		offset += n;
	}
	if (len == 0)
		return 0;
	uint64_t body_off = offset - d->header_len;
	if (body_off > d->body_len || len > d->body_len - body_off) {
		log_error("store: read past the end of the message (%llu + %zu > %zu)",
			  (unsigned long long)body_off, len, d->body_len);
		return -1;
	}
	if (d->body_fd < 0) {
		memcpy(p, d->body + body_off, len);
		return 0;
	}
	while (len > 0) {
		ssize_t n = pread(d->body_fd, p, len, (off_t)body_off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			log_error("store: reading the message body: %s",
				  n < 0 ? strerror(errno) : "file shorter than the body");
			return -1;
		}
		p += n;
		len -= (size_t)n;
		body_off += (uint64_t)n;
	}
	return 0;
}

enum store_status store_maildrop_open(struct store *store, const char *address,
				      struct store_maildrop **md_r)
{
	struct store_maildrop *md = xcalloc(1, sizeof(*md));
	md->store = store;
	md->address = xstrdup(address);
	uuid_v5(address, strlen(address), &md->mailbox_id);
	md->login_us = clock_wall_us();
	md->expire_days = STORE_EXPIRE_DEFAULT;
	enum store_status st = store->v->maildrop_read(store, md);
	if (st != STORE_OK) {
		store_maildrop_free(&md);
		return st;
	}
	*md_r = md;
	return STORE_OK;
}

void store_maildrop_free(struct store_maildrop **mdp)
{
	struct store_maildrop *md = *mdp;
	if (md == NULL)
		return;
	*mdp = NULL;
	free(md->entries);
	free(md->address);
	free(md);
}

/* --- reading --- */

enum store_status store_cursor_open(struct store_maildrop *md, unsigned int i,
				    struct store_cursor **cursor_r)
{
	*cursor_r = NULL;
	if (i >= md->count)
		return STORE_NOTFOUND;
	struct store_cursor *c = NULL;
	enum store_status st = md->store->v->cursor_open(md, i, &c);
	if (st != STORE_OK)
		return st;
	c->v = md->store->v;
	c->md = md;
	c->index = i;
	c->offset = 0;
	c->failed = false;
	if (c->size != md->entries[i].size)
		log_warn("store: message %u is %llu octets, its listing row says %llu",
			 i + 1, (unsigned long long)c->size,
			 (unsigned long long)md->entries[i].size);
	*cursor_r = c;
	return STORE_OK;
}

enum store_status store_cursor_next(struct store_cursor *c, size_t max, struct buf *out,
				    bool *eof_r)
{
	if (c->failed) {
		*eof_r = false;
		return STORE_TEMPFAIL;
	}
	uint64_t left = c->size - c->offset;
	size_t n = left < max ? (size_t)left : max;
	*eof_r = left == 0;
	if (n == 0)
		return STORE_OK;
	if (buf_reserve(out, n) < 0)
		return STORE_TOOBIG;
	/* The prefix from memory, the body written by the backend straight
	 * into out's spare room: one copy. */
	char *dst = out->data + out->len;
	size_t k = 0;
	if (c->offset < c->prefix_len) {
		k = c->prefix_len - (size_t)c->offset < n ? c->prefix_len - (size_t)c->offset : n;
		memcpy(dst, c->prefix + c->offset, k);
	}
	enum store_status st = STORE_OK;
	if (n > k)
		st = c->v->cursor_read(c, c->offset + k - c->prefix_len, dst + k, n - k);
	if (st != STORE_OK) {
		out->data[out->len] = '\0';
		c->failed = true;
		*eof_r = false;
		return st;
	}
	out->len += n;
	out->data[out->len] = '\0';
	c->offset += n;
	*eof_r = c->offset == c->size;
	return STORE_OK;
}

uint64_t store_cursor_offset(const struct store_cursor *c)
{
	return c->offset;
}

void store_cursor_close(struct store_cursor **cp)
{
	struct store_cursor *c = *cp;
	if (c == NULL)
		return;
	*cp = NULL;
	free(c->prefix);
	c->prefix = NULL;
	c->v->cursor_close(c);
}

/* --- reads from memory only (store_nowait_begin) --- */

static _Thread_local struct {
	bool active, blocked;
} nowait_state;

static const char *const nowait_labels[] = { "result", NULL };
static const struct metrics_def nowait_def = {
	METRICS_COUNTER, "tern_store_nowait_reads_total",
	"Reads tried from memory only on the event loop: served there, or deferred to a worker"
	" because they would have waited.",
	nowait_labels, NULL, 0, 0,
};

bool store_reads_nowait(const struct store *store)
{
	return store->backend_v->reads_nowait;
}

void store_nowait_begin(void)
{
	nowait_state.active = true;
	nowait_state.blocked = false;
}

bool store_nowait_end(void)
{
	static struct metrics_series *_Atomic series[2]; /* served, deferred */
	bool blocked = nowait_state.blocked;
	nowait_state.active = nowait_state.blocked = false;
	struct metrics_series *m = series[blocked];
	if (m == NULL) {
		m = metrics_series(metrics_register(&nowait_def),
				   (const char *const[]){ blocked ? "deferred" : "served" });
		series[blocked] = m;
	}
	metrics_inc(m);
	return blocked;
}

bool store_nowait(void)
{
	return nowait_state.active;
}

enum store_status store_would_block(void)
{
	nowait_state.blocked = true;
	return STORE_WOULDBLOCK;
}

enum store_status store_message_read_raw(struct store_maildrop *md, unsigned int i,
					 struct buf *out)
{
	struct store_cursor *c = NULL;
	size_t start = out->len;
	enum store_status st = store_cursor_open(md, i, &c);
	bool eof = false;
	while (st == STORE_OK && !eof)
		st = store_cursor_next(c, SIZE_MAX, out, &eof);
	store_cursor_close(&c);
	if (st != STORE_OK) {
		out->len = start;
		out->data[start] = '\0';
	}
	return st;
}

enum store_status store_maildrop_expunge(struct store_maildrop *md,
					 const unsigned int *indexes, unsigned int n)
{
	for (unsigned int k = 0; k < n; k++)
		if (indexes[k] >= md->count)
			return STORE_INVALID;
	if (n == 0)
		return STORE_OK;
	return md->store->v->expunge(md, indexes, n);
}

enum store_status store_repair(struct store *store, const struct store_repair_options *opts,
			       struct store_repair_report *report)
{
	/* Another thread may be reading the progress already. */
	uint64_t *fields[] = { &report->refs_scanned, &report->listing_scanned,
			       &report->bodies_scanned, &report->relisted,
			       &report->deletes_finished, &report->unlisted, &report->swept,
			       &report->skipped, &report->orphaned };
	for (size_t i = 0; i < sizeof(fields) / sizeof(fields[0]); i++)
		__atomic_store_n(fields[i], 0, __ATOMIC_RELAXED);
	__atomic_store_n(&report->by_token, false, __ATOMIC_RELAXED);
	__atomic_store_n(&report->token_reached, opts->has_from ? opts->from_token : INT64_MIN,
			 __ATOMIC_RELAXED);
	return store->v->repair(store, opts, report);
}

void store_repair_progress(const struct store_repair_options *opts,
			   const struct store_repair_report *r, double elapsed_s,
			   struct store_repair_progress *out)
{
	double from = opts->has_from ? (double)opts->from_token : (double)INT64_MIN;
	double reached = (double)__atomic_load_n(&r->token_reached, __ATOMIC_RELAXED);
	double span = (double)INT64_MAX - from;
	out->covered = span > 0 ? (reached - from) / span : 1.0;
	if (out->covered < 0)
		out->covered = 0;
	if (out->covered > 1)
		out->covered = 1;
	out->rows = __atomic_load_n(&r->refs_scanned, __ATOMIC_RELAXED) +
		    __atomic_load_n(&r->listing_scanned, __ATOMIC_RELAXED) +
		    __atomic_load_n(&r->bodies_scanned, __ATOMIC_RELAXED);
	out->rows_per_second = elapsed_s > 0 ? (double)out->rows / elapsed_s : 0.0;
	out->seconds_left = out->covered > 0 ? elapsed_s * (1 - out->covered) / out->covered : -1;
}

void store_uidl_from_uid(uint32_t uid, uint32_t uidvalidity, char out[72])
{
	snprintf(out, 72, "%08X%08X", uid, uidvalidity);
}

void store_sort_key(const struct uuid *id, uint8_t key[16])
{
	uint64_t t = timeuuid_ticks(id);
	for (int i = 0; i < 8; i++)
		key[i] = (uint8_t)(t >> (56 - 8 * i));
	/* Cassandra breaks timestamp ties by comparing the low bytes signed;
	 * flipping the sign bit makes an unsigned memcmp agree. */
	for (int i = 8; i < 16; i++)
		key[i] = id->b[i] ^ 0x80;
}

void store_sort_key_to_uuid(const uint8_t key[16], struct uuid *id_r)
{
	uint64_t t = 0;
	for (int i = 0; i < 8; i++)
		t = (t << 8) | key[i];
	uint8_t node[6];
	for (int i = 0; i < 6; i++)
		node[i] = key[10 + i] ^ 0x80;
	uint16_t cs = (uint16_t)((((key[8] ^ 0x80) & 0x3f) << 8) | (key[9] ^ 0x80));
	timeuuid_from_ticks(t, cs, node, id_r);
	id_r->b[8] = key[8] ^ 0x80;
}

void store_metrics_render(struct store *store, struct buf *out)
{
	metrics_render_header(out, "tern_store_info", METRICS_GAUGE,
			      "Always 1: the store backend and the POP3 id mode in use.");
	buf_printf(out, "tern_store_info{backend=\"%s\",pop3_ids=\"%s\"} 1\n", store->backend_v->name,
		   store->set.pop3_ids == STORE_POP3_IDS_UID ? "uid" : "messageid");
	if (store->backend_v->metrics_render != NULL)
		store->backend_v->metrics_render(store, out);
}

/* --- POP3 extensions: EXPIRE and LOGIN-DELAY --- */

enum store_status store_user_expire_get(struct store *store, const char *address, int *days_r)
{
	*days_r = STORE_EXPIRE_DEFAULT;
	return store->v->expire_get(store, address, days_r);
}

enum store_status store_user_expire_set(struct store *store, const char *address, int days)
{
	if (days < STORE_EXPIRE_DEFAULT || days > STORE_EXPIRE_DAYS_MAX)
		return STORE_INVALID;
	return store->v->expire_set(store, address, days);
}

enum store_status store_login_get(struct store *store, const char *address, int64_t *us_r)
{
	*us_r = 0;
	return store->v->login_get(store, address, us_r);
}

enum store_status store_login_put(struct store *store, const char *address, int64_t us)
{
	if (us <= 0)
		return STORE_INVALID;
	return store->v->login_put(store, address, us);
}

enum store_status store_retrieved_put(struct store_maildrop *md, unsigned int i, int64_t us)
{
	if (i >= md->count || us <= 0)
		return STORE_INVALID;
	return md->store->v->retrieved_put(md->store, &md->mailbox_id, &md->entries[i].id, us);
}

struct retrieved_key {
	uint8_t key[16];
	unsigned int index;  /* into the retrieved list */
};

static int retrieved_key_cmp(const void *a, const void *b)
{
	return memcmp(((const struct retrieved_key *)a)->key,
		      ((const struct retrieved_key *)b)->key, 16);
}

/* The listing is read after the retrieval records, so every message it
 * finds was retrieved before before_us: only those are expunged. The
 * records are removed only once the expunge has succeeded; a record whose
 * message is no longer listed (deleted at QUIT, or not yet replicated to
 * this datacenter) is removed too, which can only make a message expire
 * never, not early. */
enum store_status store_expire_mailbox(struct store *store, const char *address,
				       int64_t before_us, unsigned int max,
				       struct store_expired **expired_r, unsigned int *count_r)
{
	*expired_r = NULL;
	*count_r = 0;
	struct uuid mbox;
	uuid_v5(address, strlen(address), &mbox);
	struct uuid *ids = NULL;
	int64_t *times = NULL;
	unsigned int n = 0;
	enum store_status st =
		store->v->retrieved_list(store, &mbox, before_us, max, &ids, &times, &n);
	if (st != STORE_OK || n == 0) {
		free(ids);
		free(times);
		return st;
	}
	struct store_maildrop *md = NULL;
	st = store_maildrop_open(store, address, &md);
	if (st != STORE_OK) {
		free(ids);
		free(times);
		return st;
	}
	struct retrieved_key *keys = xcalloc(n, sizeof(*keys));
	for (unsigned int k = 0; k < n; k++) {
		store_sort_key(&ids[k], keys[k].key);
		keys[k].index = k;
	}
	qsort(keys, n, sizeof(*keys), retrieved_key_cmp);
	unsigned int *indexes = xcalloc(n, sizeof(*indexes));
	struct store_expired *expired = xcalloc(n, sizeof(*expired));
	unsigned int found = 0;
	for (unsigned int i = 0; i < md->count && found < n; i++) {
		struct retrieved_key probe;
		store_sort_key(&md->entries[i].id, probe.key);
		const struct retrieved_key *hit =
			bsearch(&probe, keys, n, sizeof(*keys), retrieved_key_cmp);
		if (hit == NULL)
			continue;
		indexes[found] = i;
		expired[found].id = md->entries[i].id;
		expired[found].size = md->entries[i].size;
		expired[found].retrieved_us = times[hit->index];
		found++;
	}
	st = store_maildrop_expunge(md, indexes, found);
	/* The records left behind by a failure here are removed by a later
	 * sweep: their messages are gone from the listing by then. */
	if (st == STORE_OK && store->v->retrieved_del(store, &mbox, ids, n) != STORE_OK)
		log_warn("expire: retrieval records not removed yet user=%s", address);
	store_maildrop_free(&md);
	free(indexes);
	free(keys);
	free(ids);
	free(times);
	if (st != STORE_OK || found == 0) {
		free(expired);
		return st;
	}
	*expired_r = expired;
	*count_r = found;
	return STORE_OK;
}

int store_durability_check(struct store *store, struct buf *line)
{
	if (store->backend_v->durability == NULL) {
		buf_printf(line, "unknown: the %s backend cannot tell", store->backend_v->name);
		return -1;
	}
	return store->backend_v->durability(store, line);
}

/* --- the outbound queue ---
 *
 * Arguments are checked here, and the recipients are encoded here into
 * the one stored form every backend keeps (store_queue_rcpts_encode), so
 * the backends only move rows and bytes. */

bool store_node_id_valid(const char *node)
{
	size_t n = 0;
	for (; node[n] != '\0'; n++)
		if ((unsigned char)node[n] < 0x21 || (unsigned char)node[n] > 0x7e)
			return false;
	return n >= 1 && n <= STORE_NODE_ID_MAX;
}

static bool queue_address_valid(const char *a, bool empty_ok)
{
	size_t n = strlen(a);
	return (n > 0 || empty_ok) && n <= STORE_ADDRESS_MAX && !has_control(a);
}

/* One recipient's line of the stored form: "S\taddress\tdiagnostic\n", S
 * the state's digit; the diagnostic's control characters become spaces. */
static void rcpt_line(struct buf *out, enum store_queue_state state, const char *address,
		      const char *diagnostic)
{
	buf_printf(out, "%c\t%s\t", '0' + (int)state, address);
	size_t start = out->len;
	buf_append(out, diagnostic, strnlen(diagnostic, STORE_QUEUE_DIAGNOSTIC_MAX));
	for (size_t i = start; i < out->len; i++)
		if ((unsigned char)out->data[i] < 0x20 || out->data[i] == 0x7f)
			out->data[i] = ' ';
	buf_append_c(out, '\n');
}

int store_queue_rcpts_decode(const void *data, size_t len, struct store_queue_entry *e)
{
	const char *p = data, *end = p + len;
	unsigned int n = 0;
	for (const char *q = p; q < end; q++)
		n += *q == '\n';
	if (n == 0 || n > STORE_QUEUE_RCPTS_MAX || (len > 0 && end[-1] != '\n'))
		return -1;
	struct store_queue_rcpt *r = xcalloc(n, sizeof(*r));
	for (unsigned int i = 0; i < n; i++) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		const char *t1 = memchr(p, '\t', (size_t)(nl - p));
		const char *t2 = t1 != NULL ? memchr(t1 + 1, '\t', (size_t)(nl - t1 - 1)) : NULL;
		size_t alen = t2 != NULL ? (size_t)(t2 - t1 - 1) : 0;
		size_t dlen = t2 != NULL ? (size_t)(nl - t2 - 1) : 0;
		if (t1 != p + 1 || t2 == NULL || p[0] < '0' || p[0] > '0' + STORE_QUEUE_FAILED ||
		    alen == 0 || alen > STORE_ADDRESS_MAX || dlen > STORE_QUEUE_DIAGNOSTIC_MAX) {
			free(r);
			return -1;
		}
		r[i].state = (enum store_queue_state)(p[0] - '0');
		memcpy(r[i].address, t1 + 1, alen);
		memcpy(r[i].diagnostic, t2 + 1, dlen);
		p = nl + 1;
	}
	free(e->rcpts);
	e->rcpts = r;
	e->rcpt_count = n;
	return 0;
}

int store_queue_put_read(const struct store_queue_put *q, uint64_t offset, void *out, size_t len)
{
	struct store_delivery d = { .header = q->header, .header_len = q->header_len,
				    .body = q->body, .body_len = q->body_len, .body_fd = q->body_fd };
	return store_delivery_read(&d, offset, out, len);
}

size_t store_queue_chunk_copy(uint64_t k, const void *data, size_t len, uint64_t offset,
			      char *dst, size_t n)
{
	uint64_t start = k * STORE_QUEUE_CHUNK, end = start + len;
	uint64_t from = offset > start ? offset : start;
	uint64_t to = offset + n < end ? offset + n : end;
	if (from >= to)
		return 0;
	memcpy(dst + (from - offset), (const char *)data + (from - start), (size_t)(to - from));
	return (size_t)(to - from);
}

int store_queue_entry_cmp(const void *a, const void *b)
{
	const struct store_queue_entry *x = a, *y = b;
	if (x->next_attempt_us != y->next_attempt_us)
		return x->next_attempt_us < y->next_attempt_us ? -1 : 1;
	return timeuuid_compare(&x->id, &y->id);
}

void store_queue_put_init(struct store_queue_put *q)
{
	memset(q, 0, sizeof(*q));
	timeuuid_generate(&q->id);
	q->body_fd = -1;
}

enum store_status store_queue_put(struct store *store, const struct store_queue_put *q)
{
	if (q->owner == NULL || !store_node_id_valid(q->owner) || uuid_version(&q->id) != 1 ||
	    (q->sender != NULL && !queue_address_valid(q->sender, true)) || q->rcpts == NULL ||
	    q->rcpt_count == 0 || q->rcpt_count > STORE_QUEUE_RCPTS_MAX ||
	    (q->header == NULL && q->header_len > 0) ||
	    (q->body_fd < 0 && q->body == NULL && q->body_len > 0))
		return STORE_INVALID;
	struct buf rcpts;
	buf_init(&rcpts, 0);
	enum store_status st = STORE_OK;
	for (unsigned int i = 0; i < q->rcpt_count && st == STORE_OK; i++) {
		if (q->rcpts[i] == NULL || !queue_address_valid(q->rcpts[i], false))
			st = STORE_INVALID;
		else
			rcpt_line(&rcpts, STORE_QUEUE_PENDING, q->rcpts[i], "");
	}
	if (st == STORE_OK)
		st = store->v->queue_put(store, q, &rcpts);
	buf_deinit(&rcpts);
	return st;
}

void store_queue_entry_deinit(struct store_queue_entry *e)
{
	free(e->rcpts);
	e->rcpts = NULL;
	e->rcpt_count = 0;
}

void store_queue_entries_free(struct store_queue_entry **entries, unsigned int count)
{
	if (*entries == NULL)
		return;
	for (unsigned int i = 0; i < count; i++)
		store_queue_entry_deinit(&(*entries)[i]);
	free(*entries);
	*entries = NULL;
}

enum store_status store_queue_scan(struct store *store, const char *owner,
				   int64_t due_before_us, unsigned int max,
				   struct store_queue_entry **entries_r, unsigned int *count_r)
{
	*entries_r = NULL;
	*count_r = 0;
	if (owner != NULL && !store_node_id_valid(owner))
		return STORE_INVALID;
	if (max == 0)
		return STORE_OK;
	enum store_status st = store->v->queue_scan(store, owner, due_before_us, max, entries_r,
						    count_r);
	if (st != STORE_OK)
		store_queue_entries_free(entries_r, *count_r);
	if (st != STORE_OK || *count_r == 0) {
		free(*entries_r);
		*entries_r = NULL;
		*count_r = 0;
	}
	return st;
}

enum store_status store_queue_get(struct store *store, const struct uuid *id,
				  struct store_queue_entry *entry_r)
{
	memset(entry_r, 0, sizeof(*entry_r));
	enum store_status st = store->v->queue_get(store, id, entry_r);
	if (st != STORE_OK)
		store_queue_entry_deinit(entry_r);
	return st;
}

enum store_status store_queue_read(struct store *store, const struct store_queue_entry *e,
				   uint64_t offset, size_t max, struct buf *out)
{
	if (offset > e->size || !store_node_id_valid(e->owner))
		return STORE_INVALID;
	uint64_t left = e->size - offset;
	size_t n = left < max ? (size_t)left : max;
	if (n == 0)
		return STORE_OK;
	if (buf_reserve(out, n) < 0)
		return STORE_TOOBIG;
	enum store_status st = store->v->queue_read(store, e, offset, out->data + out->len, n);
	if (st == STORE_OK)
		out->len += n;
	out->data[out->len] = '\0';
	return st;
}

enum store_status store_queue_update(struct store *store, const struct store_queue_entry *e)
{
	if (!store_node_id_valid(e->owner) || e->rcpt_count == 0 ||
	    e->rcpt_count > STORE_QUEUE_RCPTS_MAX || e->rcpts == NULL)
		return STORE_INVALID;
	struct buf rcpts;
	buf_init(&rcpts, 0);
	enum store_status st = STORE_OK;
	for (unsigned int i = 0; i < e->rcpt_count && st == STORE_OK; i++) {
		const struct store_queue_rcpt *r = &e->rcpts[i];
		if ((unsigned int)r->state > STORE_QUEUE_FAILED ||
		    memchr(r->address, '\0', sizeof(r->address)) == NULL ||
		    !queue_address_valid(r->address, false))
			st = STORE_INVALID;
		else
			rcpt_line(&rcpts, r->state, r->address, r->diagnostic);
	}
	if (st == STORE_OK)
		st = store->v->queue_update(store, e, &rcpts);
	buf_deinit(&rcpts);
	return st;
}

enum store_status store_queue_del(struct store *store, const struct uuid *id)
{
	return store->v->queue_del(store, id);
}

enum store_status store_queue_flush(struct store *store, unsigned int *count_r)
{
	*count_r = 0;
	return store->v->queue_flush(store, clock_wall_us(), count_r);
}

enum store_status store_queue_heartbeat(struct store *store, const char *node, int64_t now_us)
{
	if (!store_node_id_valid(node))
		return STORE_INVALID;
	return store->v->queue_heartbeat(store, node, now_us);
}

static int node_cmp(const void *a, const void *b)
{
	return strcmp(((const struct store_queue_node *)a)->id,
		      ((const struct store_queue_node *)b)->id);
}

enum store_status store_queue_nodes(struct store *store, struct store_queue_node **nodes_r,
				    unsigned int *count_r)
{
	*nodes_r = NULL;
	*count_r = 0;
	enum store_status st = store->v->queue_nodes(store, nodes_r, count_r);
	if (st != STORE_OK || *count_r == 0) {
		free(*nodes_r);
		*nodes_r = NULL;
		*count_r = 0;
		return st;
	}
	qsort(*nodes_r, *count_r, sizeof(**nodes_r), node_cmp);
	return STORE_OK;
}
