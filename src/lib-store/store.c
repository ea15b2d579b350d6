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
 */
#include "store-private.h"

#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "log.h"

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
	}
	return "unknown";
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
		store->v = backends[i];
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

enum store_status store_domain_del(struct store *store, const char *domain)
{
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

static const char *address_domain(const char *address)
{
	const char *at = strrchr(address, '@');
	return at == NULL || at == address || at[1] == '\0' ? NULL : at + 1;
}

enum store_status store_user_add(struct store *store, const char *address, const char *hash)
{
	const char *domain = address_domain(address);
	if (domain == NULL || *hash == '\0')
		return STORE_INVALID;
	enum store_status st = store->v->domain_exists(store, domain);
	if (st != STORE_OK)
		return st;
	return store->v->user_add(store, address, hash);
}

enum store_status store_user_del(struct store *store, const char *address)
{
	return store->v->user_del(store, address);
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

void store_delivery_init(struct store_delivery *d)
{
	timeuuid_generate(&d->message_id);
	d->attempts = 0;
	d->body_fd = -1;
}

enum store_status store_deliver(struct store *store, struct store_delivery *d)
{
	if (d->rcpt_count == 0 || (d->header == NULL && d->header_len > 0) ||
	    (d->body_fd < 0 && d->body == NULL && d->body_len > 0))
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
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	md->login_us = (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
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
	memset(report, 0, sizeof(*report));
	return store->v->repair(store, opts, report);
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
	(void)store;
	(void)out;
}
