/*
 * store: backend lookup by name and the generic half of every store call:
 * argument checks, mailbox identity (a name-based UUID of the address, so no
 * coordination is ever needed to agree on it), the POP3 encoding of
 * messages read by the backends, and the one reader of a message being
 * delivered (header + body, in memory or in a file) the backends share.
 */
#include "store-private.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "mail-data.h"

static const struct store_vfuncs *const backends[] = {
	&store_sqlite_vfuncs,
	&store_mem_vfuncs,
	&store_cassandra_vfuncs,
};

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
	}
	return "unknown";
}

struct store *store_open(const struct store_settings *set, const char **error_r)
{
	const char *name = set->backend != NULL ? set->backend : "sqlite";
	for (size_t i = 0; i < sizeof(backends) / sizeof(backends[0]); i++) {
		if (strcmp(backends[i]->name, name) == 0) {
			struct store *store = backends[i]->open(set, error_r);
			if (store != NULL) {
				store->v = backends[i];
				store->set = *set;
			}
			return store;
		}
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
	store->v->close(store);
}

const char *store_backend_name(const struct store *store)
{
	return store->v->name;
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

struct store_reader {
	struct store_maildrop *md;
	unsigned int index;
	uint64_t offset;          /* raw octets consumed so far */
	struct mail_pop3_encoder enc;
	struct buf *out;          /* during a read */
	size_t limit;
	bool finished;
};

static bool reader_sink(void *ctx, const char *data, size_t len)
{
	struct store_reader *r = ctx;
	r->offset += len;
	mail_pop3_encoder_feed(&r->enc, data, len, r->out);
	return r->enc.finished || r->out->len >= r->limit;
}

enum store_status store_reader_open(struct store_maildrop *md, unsigned int i, long body_lines,
				    struct store_reader **reader_r)
{
	if (i >= md->count)
		return STORE_NOTFOUND;
	struct store_reader *r = xcalloc(1, sizeof(*r));
	r->md = md;
	r->index = i;
	mail_pop3_encoder_init(&r->enc, body_lines);
	*reader_r = r;
	return STORE_OK;
}

enum store_status store_reader_read(struct store_reader *r, size_t max, struct buf *out,
				    bool *done_r)
{
	*done_r = false;
	if (r->finished) {
		*done_r = true;
		return STORE_OK;
	}
	r->out = out;
	r->limit = out->len + (max > 0 ? max : 1);
	uint64_t before = r->offset;
	enum store_status st = r->md->store->v->message_read(r->md, r->index, r->offset,
							     reader_sink, r);
	r->out = NULL;
	if (st != STORE_OK)
		return st;
	/* The backend stopped early only when the sink asked; otherwise (or
	 * when nothing more came) the message is complete. */
	bool more = !r->enc.finished && out->len >= r->limit && r->offset > before;
	if (!more) {
		mail_pop3_encoder_finish(&r->enc, out);
		r->finished = true;
		*done_r = true;
	}
	return STORE_OK;
}

void store_reader_free(struct store_reader **rp)
{
	free(*rp);
	*rp = NULL;
}

enum store_status store_message_read_pop3(struct store_maildrop *md, unsigned int i,
					  long body_lines, struct buf *out)
{
	struct store_reader *r = NULL;
	enum store_status st = store_reader_open(md, i, body_lines, &r);
	size_t start = out->len;
	bool done = false;
	while (st == STORE_OK && !done)
		st = store_reader_read(r, SIZE_MAX / 2, out, &done);
	store_reader_free(&r);
	if (st != STORE_OK) {
		out->len = start;
		out->data[start] = '\0';
	}
	return st;
}

static bool raw_sink(void *ctx, const char *data, size_t len)
{
	buf_append(ctx, data, len);
	return false;
}

enum store_status store_message_read_raw(struct store_maildrop *md, unsigned int i,
					 struct buf *out)
{
	if (i >= md->count)
		return STORE_NOTFOUND;
	size_t start = out->len;
	enum store_status st = md->store->v->message_read(md, i, 0, raw_sink, out);
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
