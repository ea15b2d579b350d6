/*
 * store-mem: a process-local backend for unit tests of the layers above the
 * store. Same semantics as the persistent backends (ordering by message id,
 * bodies shared between recipients, idempotent writes), no durability. One
 * mutex guards everything; it is not meant to be fast.
 */
#include "store-private.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

struct mem_body {
	struct uuid id;
	char *data;
	size_t len;
	unsigned int refs;
};

struct mem_row {
	struct uuid mailbox;
	uint8_t key[16];
	struct uuid id;
	char uidl[STORE_UIDL_MAX + 2];
	char *prefix;
	struct mem_body *body;
};

struct mem_user {
	char *address, *hash;
	uint32_t next_uid;
	struct store_quota quota;  /* the user's own limits */
	bool expire_own;           /* expire_days is the user's own policy */
	int expire_days;
	int64_t last_login;
};

/* The first retrieval of a message (EXPIRE). */
struct mem_retrieved {
	struct uuid mailbox, id;
	int64_t us;
};

struct mem_alias {
	char *address, *targets;
};

/* An outbound queue entry: its fields (rcpts unused), the recipients in
 * their stored form, and the message. */
struct mem_queued {
	struct store_queue_entry e;
	char *rcpts;
	size_t rcpts_len;
	char *data;
};

struct mem_store {
	struct store store;
	pthread_mutex_t lock;
	char **domains;
	unsigned int ndomains;
	struct mem_user *users;
	unsigned int nusers;
	struct mem_row *rows;  /* kept sorted by (mailbox, key) */
	unsigned int nrows;
	struct mem_body **bodies;
	unsigned int nbodies;
	struct mem_alias *aliases;
	unsigned int naliases;
	struct mem_retrieved *retrieved;
	unsigned int nretrieved;
	struct mem_queued *queue;
	unsigned int nqueue;
	struct store_queue_node *nodes;
	unsigned int nnodes;
};

static struct store *mem_open(const struct store_settings *set, const char **error_r)
{
	struct mem_store *m = xcalloc(1, sizeof(*m));
	pthread_mutex_init(&m->lock, NULL);
	return &m->store;
}

static void body_unref(struct mem_store *m, struct mem_body *b)
{
	if (--b->refs > 0)
		return;
	for (unsigned int i = 0; i < m->nbodies; i++) {
		if (m->bodies[i] == b) {
			m->bodies[i] = m->bodies[--m->nbodies];
			break;
		}
	}
	free(b->data);
	free(b);
}

static void mem_close(struct store *store)
{
	struct mem_store *m = (struct mem_store *)store;
	for (unsigned int i = 0; i < m->ndomains; i++)
		free(m->domains[i]);
	for (unsigned int i = 0; i < m->nusers; i++) {
		free(m->users[i].address);
		free(m->users[i].hash);
	}
	for (unsigned int i = 0; i < m->nrows; i++)
		free(m->rows[i].prefix);
	for (unsigned int i = 0; i < m->nbodies; i++) {
		free(m->bodies[i]->data);
		free(m->bodies[i]);
	}
	for (unsigned int i = 0; i < m->naliases; i++) {
		free(m->aliases[i].address);
		free(m->aliases[i].targets);
	}
	for (unsigned int i = 0; i < m->nqueue; i++) {
		free(m->queue[i].rcpts);
		free(m->queue[i].data);
	}
	free(m->queue);
	free(m->nodes);
	free(m->aliases);
	free(m->retrieved);
	free(m->domains);
	free(m->users);
	free(m->rows);
	free(m->bodies);
	pthread_mutex_destroy(&m->lock);
	free(m);
}

static int find_domain(struct mem_store *m, const char *d)
{
	for (unsigned int i = 0; i < m->ndomains; i++)
		if (strcmp(m->domains[i], d) == 0)
			return (int)i;
	return -1;
}

static struct mem_user *find_user(struct mem_store *m, const char *a)
{
	for (unsigned int i = 0; i < m->nusers; i++)
		if (strcmp(m->users[i].address, a) == 0)
			return &m->users[i];
	return NULL;
}

#define LOCKED(m, expr) do { pthread_mutex_lock(&(m)->lock); enum store_status _st = (expr); \
	pthread_mutex_unlock(&(m)->lock); return _st; } while (0)

static enum store_status domain_add_locked(struct mem_store *m, const char *d)
{
	if (find_domain(m, d) >= 0)
		return STORE_EXISTS;
	m->domains = xrealloc(m->domains, (m->ndomains + 1) * sizeof(char *));
	m->domains[m->ndomains++] = xstrdup(d);
	return STORE_OK;
}

static enum store_status mem_domain_add(struct store *store, const char *d)
{
	struct mem_store *m = (struct mem_store *)store;
	LOCKED(m, domain_add_locked(m, d));
}

static enum store_status domain_del_locked(struct mem_store *m, const char *d)
{
	int i = find_domain(m, d);
	if (i < 0)
		return STORE_NOTFOUND;
	for (unsigned int u = 0; u < m->nusers; u++) {
		const char *at = strrchr(m->users[u].address, '@');
		if (strcmp(at + 1, d) == 0)
			return STORE_EXISTS;
	}
	free(m->domains[i]);
	m->domains[i] = m->domains[--m->ndomains];
	return STORE_OK;
}

static enum store_status mem_domain_del(struct store *store, const char *d)
{
	struct mem_store *m = (struct mem_store *)store;
	LOCKED(m, domain_del_locked(m, d));
}

static enum store_status mem_domain_exists(struct store *store, const char *d)
{
	struct mem_store *m = (struct mem_store *)store;
	LOCKED(m, find_domain(m, d) >= 0 ? STORE_OK : STORE_NOTFOUND);
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static enum store_status mem_domain_list(struct store *store, struct buf *out)
{
	struct mem_store *m = (struct mem_store *)store;
	pthread_mutex_lock(&m->lock);
	qsort(m->domains, m->ndomains, sizeof(char *), cmp_str);
	for (unsigned int i = 0; i < m->ndomains; i++)
		buf_printf(out, "%s\n", m->domains[i]);
	pthread_mutex_unlock(&m->lock);
	return STORE_OK;
}

static enum store_status user_add_locked(struct mem_store *m, const char *a, const char *h)
{
	if (find_user(m, a) != NULL)
		return STORE_EXISTS;
	m->users = xrealloc(m->users, (m->nusers + 1) * sizeof(*m->users));
	m->users[m->nusers++] = (struct mem_user){ xstrdup(a), xstrdup(h), 1, { 0, 0 }, false, 0, 0 };
	return STORE_OK;
}

static enum store_status mem_user_add(struct store *store, const char *a, const char *h)
{
	struct mem_store *m = (struct mem_store *)store;
	LOCKED(m, user_add_locked(m, a, h));
}

static void delete_row(struct mem_store *m, unsigned int i)
{
	free(m->rows[i].prefix);
	body_unref(m, m->rows[i].body);
	memmove(&m->rows[i], &m->rows[i + 1], (m->nrows - i - 1) * sizeof(*m->rows));
	m->nrows--;
}

static enum store_status user_del_locked(struct mem_store *m, const char *a)
{
	struct mem_user *u = find_user(m, a);
	if (u == NULL)
		return STORE_NOTFOUND;
	struct uuid mbox;
	uuid_v5(a, strlen(a), &mbox);
	for (unsigned int i = m->nrows; i-- > 0;)
		if (memcmp(&m->rows[i].mailbox, &mbox, 16) == 0)
			delete_row(m, i);
	free(u->address);
	free(u->hash);
	*u = m->users[--m->nusers];
	return STORE_OK;
}

static enum store_status mem_user_del(struct store *store, const char *a)
{
	struct mem_store *m = (struct mem_store *)store;
	LOCKED(m, user_del_locked(m, a));
}

static enum store_status user_passwd_locked(struct mem_store *m, const char *a, const char *h)
{
	struct mem_user *u = find_user(m, a);
	if (u == NULL)
		return STORE_NOTFOUND;
	free(u->hash);
	u->hash = xstrdup(h);
	return STORE_OK;
}

static enum store_status mem_user_set_password(struct store *store, const char *a,
					       const char *h)
{
	struct mem_store *m = (struct mem_store *)store;
	LOCKED(m, user_passwd_locked(m, a, h));
}

static enum store_status user_get_locked(struct mem_store *m, const char *a, struct buf *out)
{
	struct mem_user *u = find_user(m, a);
	if (u == NULL)
		return STORE_NOTFOUND;
	buf_append_str(out, u->hash);
	return STORE_OK;
}

static enum store_status mem_user_get(struct store *store, const char *a, struct buf *out)
{
	struct mem_store *m = (struct mem_store *)store;
	LOCKED(m, user_get_locked(m, a, out));
}

static enum store_status mem_user_list(struct store *store, struct buf *out)
{
	struct mem_store *m = (struct mem_store *)store;
	pthread_mutex_lock(&m->lock);
	for (unsigned int i = 0; i < m->nusers; i++)
		buf_printf(out, "%s\n", m->users[i].address);
	pthread_mutex_unlock(&m->lock);
	return STORE_OK;
}

/* What the mailbox holds, from its rows (never a counter). */
static void usage_locked(struct mem_store *m, const struct uuid *mbox, uint64_t *n_r,
			 uint64_t *octets_r)
{
	for (unsigned int i = 0; i < m->nrows; i++) {
		if (memcmp(&m->rows[i].mailbox, mbox, 16) != 0)
			continue;
		(*n_r)++;
		*octets_r += strlen(m->rows[i].prefix) + m->rows[i].body->len;
	}
}

static int row_cmp(const struct uuid *mbox, const uint8_t key[16], const struct mem_row *r)
{
	int c = memcmp(mbox->b, r->mailbox.b, 16);
	return c != 0 ? c : memcmp(key, r->key, 16);
}

static enum store_status deliver_locked(struct mem_store *m, struct store_delivery *d)
{
	struct mem_body *body = NULL;
	for (unsigned int i = 0; i < m->nbodies; i++)
		if (memcmp(&m->bodies[i]->id, &d->message_id, 16) == 0)
			body = m->bodies[i];
	if (body == NULL) {
		/* The stored body is the header followed by the body (read from
		 * the caller's file when there is one). */
		size_t len = (size_t)store_delivery_size(d);
		char *data = xmalloc(len + 1);
		if (store_delivery_read(d, 0, data, len) < 0) {
			free(data);
			return STORE_TEMPFAIL;
		}
		data[len] = '\0';
		body = xcalloc(1, sizeof(*body));
		body->id = d->message_id;
		body->data = data;
		body->len = len;
		m->bodies = xrealloc(m->bodies, (m->nbodies + 1) * sizeof(*m->bodies));
		m->bodies[m->nbodies++] = body;
	}
	body->refs++; /* held during delivery */
	uint8_t key[16];
	store_sort_key(&d->message_id, key);
	/* First every recipient's verdict (NOTFOUND, OVERQUOTA, already there,
	 * or to be written: INVALID), then the writes: all_or_nothing needs
	 * every verdict before the first write. The lock makes them exact. */
	for (unsigned int r = 0; r < d->rcpt_count; r++) {
		struct store_rcpt *rc = &d->rcpts[r];
		struct mem_user *u = find_user(m, rc->address);
		if (u == NULL) {
			rc->status = STORE_NOTFOUND;
			continue;
		}
		struct uuid mbox;
		uuid_v5(rc->address, strlen(rc->address), &mbox);
		unsigned int pos = 0;
		while (pos < m->nrows && row_cmp(&mbox, key, &m->rows[pos]) > 0)
			pos++;
		if (pos < m->nrows && row_cmp(&mbox, key, &m->rows[pos]) == 0) {
			str_copy(rc->uidl, m->rows[pos].uidl, sizeof(rc->uidl));
			rc->status = STORE_OK;
			continue;
		}
		rc->status = STORE_INVALID;
		struct store_quota limits = store_quota_apply(&m->store, &u->quota);
		if (store_quota_is_none(&limits))
			continue;
		uint64_t n = 0, octets = 0;
		usage_locked(m, &mbox, &n, &octets);
		if (!store_quota_fits(&limits, n, octets, strlen(rc->prefix) + body->len))
			rc->status = STORE_OVERQUOTA;
	}
	if (store_quota_refuse_all(d)) {
		body_unref(m, body);
		return STORE_OK;
	}
	for (unsigned int r = 0; r < d->rcpt_count; r++) {
		struct store_rcpt *rc = &d->rcpts[r];
		if (rc->status != STORE_INVALID)
			continue;
		struct mem_user *u = find_user(m, rc->address);
		struct uuid mbox;
		uuid_v5(rc->address, strlen(rc->address), &mbox);
		unsigned int pos = 0;
		while (pos < m->nrows && row_cmp(&mbox, key, &m->rows[pos]) > 0)
			pos++;
		m->rows = xrealloc(m->rows, (m->nrows + 1) * sizeof(*m->rows));
		memmove(&m->rows[pos + 1], &m->rows[pos], (m->nrows - pos) * sizeof(*m->rows));
		m->nrows++;
		struct mem_row *row = &m->rows[pos];
		row->mailbox = mbox;
		memcpy(row->key, key, 16);
		row->id = d->message_id;
		if (!store_delivery_uidl(d, row->uidl) && m->store.set.pop3_ids == STORE_POP3_IDS_UID)
			store_uidl_from_uid(u->next_uid++, 1, row->uidl);
		row->prefix = xstrdup(rc->prefix);
		row->body = body;
		body->refs++;
		str_copy(rc->uidl, row->uidl, sizeof(rc->uidl));
		rc->status = STORE_OK;
	}
	body_unref(m, body);
	return STORE_OK;
}

static enum store_status mem_deliver(struct store *store, struct store_delivery *d)
{
	struct mem_store *m = (struct mem_store *)store;
	LOCKED(m, deliver_locked(m, d));
}

static enum store_status maildrop_read_locked(struct mem_store *m, struct store_maildrop *md)
{
	const struct mem_user *u = find_user(m, md->address);
	if (u == NULL)
		return STORE_NOTFOUND;
	md->expire_days = u->expire_own ? u->expire_days : STORE_EXPIRE_DEFAULT;
	for (unsigned int i = 0; i < m->nrows; i++) {
		struct mem_row *r = &m->rows[i];
		if (memcmp(&r->mailbox, &md->mailbox_id, 16) != 0)
			continue;
		md->entries = xrealloc(md->entries, (md->count + 1) * sizeof(*md->entries));
		struct store_listing_entry *e = &md->entries[md->count++];
		e->id = r->id;
		e->size = strlen(r->prefix) + r->body->len;
		str_copy(e->uidl, r->uidl, sizeof(e->uidl));
		md->total_size += e->size;
	}
	return STORE_OK;
}

static enum store_status mem_maildrop_read(struct store *store, struct store_maildrop *md)
{
	struct mem_store *m = (struct mem_store *)store;
	LOCKED(m, maildrop_read_locked(m, md));
}

static int find_row(struct mem_store *m, const struct uuid *mbox, const struct uuid *id)
{
	uint8_t key[16];
	store_sort_key(id, key);
	for (unsigned int i = 0; i < m->nrows; i++)
		if (row_cmp(mbox, key, &m->rows[i]) == 0)
			return (int)i;
	return -1;
}

/* A cursor holds a reference on the body and a copy of the prefix: an
 * expunge meanwhile does not take them away (a snapshot, like SQLite's). */
struct mem_cursor {
	struct store_cursor c;
	struct mem_body *body;
};

static enum store_status mem_cursor_open(struct store_maildrop *md, unsigned int i,
					 struct store_cursor **cursor_r)
{
	struct mem_store *m = (struct mem_store *)md->store;
	if (!store_nowait())
		pthread_mutex_lock(&m->lock);
	else if (pthread_mutex_trylock(&m->lock) != 0)
		return store_would_block();
	int r = find_row(m, &md->mailbox_id, &md->entries[i].id);
	if (r < 0) {
		pthread_mutex_unlock(&m->lock);
		return STORE_NOTFOUND;
	}
	struct mem_cursor *mc = xcalloc(1, sizeof(*mc));
	mc->c.prefix = xstrdup(m->rows[r].prefix);
	mc->c.prefix_len = strlen(mc->c.prefix);
	mc->body = m->rows[r].body;
	mc->body->refs++;
	pthread_mutex_unlock(&m->lock);
	mc->c.size = mc->c.prefix_len + mc->body->len;
	*cursor_r = &mc->c;
	return STORE_OK;
}

static enum store_status mem_cursor_read(struct store_cursor *c, uint64_t body_off, char *dst,
				       size_t n)
{
	/* The body's bytes never change and our reference keeps them. */
	struct mem_cursor *mc = (struct mem_cursor *)c;
	memcpy(dst, mc->body->data + body_off, n);
	return STORE_OK;
}

static void mem_cursor_close(struct store_cursor *c)
{
	struct mem_cursor *mc = (struct mem_cursor *)c;
	struct mem_store *m = (struct mem_store *)c->md->store;
	pthread_mutex_lock(&m->lock);
	body_unref(m, mc->body);
	pthread_mutex_unlock(&m->lock);
	free(mc);
}

static enum store_status mem_expunge(struct store_maildrop *md, const unsigned int *idx,
				     unsigned int n)
{
	struct mem_store *m = (struct mem_store *)md->store;
	pthread_mutex_lock(&m->lock);
	for (unsigned int k = 0; k < n; k++) {
		int r = find_row(m, &md->mailbox_id, &md->entries[idx[k]].id);
		if (r >= 0)
			delete_row(m, (unsigned int)r);
	}
	pthread_mutex_unlock(&m->lock);
	return STORE_OK;
}

static enum store_status mem_repair(struct store *store, const struct store_repair_options *opts,
				    struct store_repair_report *report)
{
	/* One mutex makes every change atomic: nothing can drift. */
	struct mem_store *m = (struct mem_store *)store;
	pthread_mutex_lock(&m->lock);
	__atomic_store_n(&report->listing_scanned, m->nrows, __ATOMIC_RELAXED);
	__atomic_store_n(&report->bodies_scanned, m->nbodies, __ATOMIC_RELAXED);
	pthread_mutex_unlock(&m->lock);
	return STORE_OK;
}

/* --- aliases, quotas, health --- */

static struct mem_alias *find_alias(struct mem_store *m, const char *a)
{
	for (unsigned int i = 0; i < m->naliases; i++)
		if (strcmp(m->aliases[i].address, a) == 0)
			return &m->aliases[i];
	return NULL;
}

static enum store_status alias_put_locked(struct mem_store *m, const char *a, const char *t)
{
	struct mem_alias *al = find_alias(m, a);
	if (al == NULL) {
		m->aliases = xrealloc(m->aliases, (m->naliases + 1) * sizeof(*m->aliases));
		al = &m->aliases[m->naliases++];
		al->address = xstrdup(a);
	} else {
		free(al->targets);
	}
	al->targets = xstrdup(t);
	return STORE_OK;
}

static enum store_status mem_alias_put(struct store *store, const char *a, const char *t)
{
	struct mem_store *m = (struct mem_store *)store;
	LOCKED(m, alias_put_locked(m, a, t));
}

static enum store_status alias_del_locked(struct mem_store *m, const char *a)
{
	struct mem_alias *al = find_alias(m, a);
	if (al == NULL)
		return STORE_NOTFOUND;
	free(al->address);
	free(al->targets);
	*al = m->aliases[--m->naliases];
	return STORE_OK;
}

static enum store_status mem_alias_del(struct store *store, const char *a)
{
	struct mem_store *m = (struct mem_store *)store;
	LOCKED(m, alias_del_locked(m, a));
}

static enum store_status alias_get_locked(struct mem_store *m, const char *a, struct buf *out)
{
	struct mem_alias *al = find_alias(m, a);
	if (al == NULL)
		return STORE_NOTFOUND;
	buf_append_str(out, al->targets);
	return STORE_OK;
}

static enum store_status mem_alias_get(struct store *store, const char *a, struct buf *out)
{
	struct mem_store *m = (struct mem_store *)store;
	LOCKED(m, alias_get_locked(m, a, out));
}

static enum store_status mem_alias_list(struct store *store, struct buf *out)
{
	struct mem_store *m = (struct mem_store *)store;
	pthread_mutex_lock(&m->lock);
	for (unsigned int i = 0; i < m->naliases; i++)
		store_alias_line(out, m->aliases[i].address, m->aliases[i].targets,
				 strlen(m->aliases[i].targets));
	pthread_mutex_unlock(&m->lock);
	return STORE_OK;
}

static enum store_status quota_get_locked(struct mem_store *m, const char *a,
					  struct store_quota *own_r)
{
	struct mem_user *u = find_user(m, a);
	if (u == NULL)
		return STORE_NOTFOUND;
	*own_r = u->quota;
	return STORE_OK;
}

static enum store_status mem_quota_get(struct store *store, const char *a,
				       struct store_quota *own_r)
{
	struct mem_store *m = (struct mem_store *)store;
	LOCKED(m, quota_get_locked(m, a, own_r));
}

static enum store_status quota_set_locked(struct mem_store *m, const char *a,
					  const struct store_quota *own)
{
	struct mem_user *u = find_user(m, a);
	if (u == NULL)
		return STORE_NOTFOUND;
	u->quota = *own;
	return STORE_OK;
}

static enum store_status mem_quota_set(struct store *store, const char *a,
				       const struct store_quota *own)
{
	struct mem_store *m = (struct mem_store *)store;
	LOCKED(m, quota_set_locked(m, a, own));
}

static enum store_status usage_of_locked(struct mem_store *m, const char *a, uint64_t *n_r,
					 uint64_t *octets_r)
{
	if (find_user(m, a) == NULL)
		return STORE_NOTFOUND;
	struct uuid mbox;
	uuid_v5(a, strlen(a), &mbox);
	usage_locked(m, &mbox, n_r, octets_r);
	return STORE_OK;
}

static enum store_status mem_mailbox_usage(struct store *store, const char *a, uint64_t *n_r,
					   uint64_t *octets_r)
{
	struct mem_store *m = (struct mem_store *)store;
	LOCKED(m, usage_of_locked(m, a, n_r, octets_r));
}

/* --- POP3 extensions: EXPIRE and LOGIN-DELAY --- */

static enum store_status expire_get_locked(struct mem_store *m, const char *a, int *days_r)
{
	struct mem_user *u = find_user(m, a);
	if (u == NULL)
		return STORE_NOTFOUND;
	*days_r = u->expire_own ? u->expire_days : STORE_EXPIRE_DEFAULT;
	return STORE_OK;
}

static enum store_status mem_expire_get(struct store *store, const char *a, int *days_r)
{
	struct mem_store *m = (struct mem_store *)store;
	LOCKED(m, expire_get_locked(m, a, days_r));
}

static enum store_status expire_set_locked(struct mem_store *m, const char *a, int days)
{
	struct mem_user *u = find_user(m, a);
	if (u == NULL)
		return STORE_NOTFOUND;
	u->expire_own = days != STORE_EXPIRE_DEFAULT;
	u->expire_days = days;
	return STORE_OK;
}

static enum store_status mem_expire_set(struct store *store, const char *a, int days)
{
	struct mem_store *m = (struct mem_store *)store;
	LOCKED(m, expire_set_locked(m, a, days));
}

static enum store_status login_get_locked(struct mem_store *m, const char *a, int64_t *us_r)
{
	struct mem_user *u = find_user(m, a);
	if (u == NULL)
		return STORE_NOTFOUND;
	*us_r = u->last_login;
	return STORE_OK;
}

static enum store_status mem_login_get(struct store *store, const char *a, int64_t *us_r)
{
	struct mem_store *m = (struct mem_store *)store;
	LOCKED(m, login_get_locked(m, a, us_r));
}

static enum store_status login_put_locked(struct mem_store *m, const char *a, int64_t us)
{
	struct mem_user *u = find_user(m, a);
	if (u == NULL)
		return STORE_NOTFOUND;
	u->last_login = us;
	return STORE_OK;
}

static enum store_status mem_login_put(struct store *store, const char *a, int64_t us)
{
	struct mem_store *m = (struct mem_store *)store;
	LOCKED(m, login_put_locked(m, a, us));
}

static int find_retrieved(struct mem_store *m, const struct uuid *mbox, const struct uuid *id)
{
	for (unsigned int i = 0; i < m->nretrieved; i++)
		if (memcmp(&m->retrieved[i].mailbox, mbox, 16) == 0 &&
		    memcmp(&m->retrieved[i].id, id, 16) == 0)
			return (int)i;
	return -1;
}

static enum store_status retrieved_put_locked(struct mem_store *m, const struct uuid *mbox,
					      const struct uuid *id, int64_t us)
{
	if (find_retrieved(m, mbox, id) >= 0)
		return STORE_OK;
	m->retrieved = xrealloc(m->retrieved, (m->nretrieved + 1) * sizeof(*m->retrieved));
	m->retrieved[m->nretrieved++] = (struct mem_retrieved){ *mbox, *id, us };
	return STORE_OK;
}

static enum store_status mem_retrieved_put(struct store *store, const struct uuid *mbox,
					   const struct uuid *id, int64_t us)
{
	struct mem_store *m = (struct mem_store *)store;
	LOCKED(m, retrieved_put_locked(m, mbox, id, us));
}

static enum store_status retrieved_list_locked(struct mem_store *m, const struct uuid *mbox,
					       int64_t before_us, unsigned int max,
					       struct uuid **ids_r, int64_t **us_r,
					       unsigned int *count_r)
{
	unsigned int n = 0;
	for (unsigned int i = 0; i < m->nretrieved && n < max; i++) {
		const struct mem_retrieved *r = &m->retrieved[i];
		if (memcmp(&r->mailbox, mbox, 16) != 0 || r->us >= before_us)
			continue;
		*ids_r = xrealloc(*ids_r, (n + 1) * sizeof(**ids_r));
		*us_r = xrealloc(*us_r, (n + 1) * sizeof(**us_r));
		(*ids_r)[n] = r->id;
		(*us_r)[n] = r->us;
		n++;
	}
	*count_r = n;
	return STORE_OK;
}

/* In insertion order: store.c does not rely on the order. */
static enum store_status mem_retrieved_list(struct store *store, const struct uuid *mbox,
					    int64_t before_us, unsigned int max, struct uuid **ids_r,
					    int64_t **us_r, unsigned int *count_r)
{
	struct mem_store *m = (struct mem_store *)store;
	*ids_r = NULL;
	*us_r = NULL;
	LOCKED(m, retrieved_list_locked(m, mbox, before_us, max, ids_r, us_r, count_r));
}

static enum store_status retrieved_del_locked(struct mem_store *m, const struct uuid *mbox,
					      const struct uuid *ids, unsigned int n)
{
	for (unsigned int k = 0; k < n; k++) {
		int i = find_retrieved(m, mbox, &ids[k]);
		if (i >= 0)
			m->retrieved[i] = m->retrieved[--m->nretrieved];
	}
	return STORE_OK;
}

static enum store_status mem_retrieved_del(struct store *store, const struct uuid *mbox,
					   const struct uuid *ids, unsigned int n)
{
	struct mem_store *m = (struct mem_store *)store;
	LOCKED(m, retrieved_del_locked(m, mbox, ids, n));
}

/* --- the outbound queue --- */

static struct mem_queued *find_queued(struct mem_store *m, const struct uuid *id)
{
	for (unsigned int i = 0; i < m->nqueue; i++)
		if (memcmp(&m->queue[i].e.id, id, 16) == 0)
			return &m->queue[i];
	return NULL;
}

static enum store_status queue_put_locked(struct mem_store *m, const struct store_queue_put *q,
					  const struct buf *rcpts)
{
	if (find_queued(m, &q->id) != NULL)
		return STORE_OK; /* a retry: the entry stays as it is now */
	size_t len = (size_t)store_queue_put_size(q);
	char *data = xmalloc(len + 1);
	if (store_queue_put_read(q, 0, data, len) < 0) {
		free(data);
		return STORE_TEMPFAIL;
	}
	m->queue = xrealloc(m->queue, (m->nqueue + 1) * sizeof(*m->queue));
	struct mem_queued *mq = &m->queue[m->nqueue++];
	memset(mq, 0, sizeof(*mq));
	mq->e.id = q->id;
	str_copy(mq->e.owner, q->owner, sizeof(mq->e.owner));
	str_copy(mq->e.sender, q->sender != NULL ? q->sender : "", sizeof(mq->e.sender));
	mq->e.queued_us = timeuuid_unix_usec(&q->id);
	mq->e.next_attempt_us = q->next_attempt_us;
	mq->e.size = len;
	mq->rcpts = xstrndup(rcpts->data, rcpts->len);
	mq->rcpts_len = rcpts->len;
	mq->data = data;
	return STORE_OK;
}

static enum store_status mem_queue_put(struct store *store, const struct store_queue_put *q,
				       const struct buf *rcpts)
{
	struct mem_store *m = (struct mem_store *)store;
	LOCKED(m, queue_put_locked(m, q, rcpts));
}

/* A copy of the entry for the caller, recipients decoded. */
static enum store_status queued_copy(const struct mem_queued *mq, struct store_queue_entry *e)
{
	*e = mq->e;
	e->rcpts = NULL;
	e->rcpt_count = 0;
	return store_queue_rcpts_decode(mq->rcpts, mq->rcpts_len, e) == 0 ? STORE_OK
									  : STORE_TEMPFAIL;
}

static enum store_status queue_scan_locked(struct mem_store *m, const char *owner,
					   int64_t due_before_us, unsigned int max,
					   struct store_queue_entry **entries_r,
					   unsigned int *count_r)
{
	struct store_queue_entry *all = xcalloc(m->nqueue + 1, sizeof(*all));
	unsigned int n = 0;
	for (unsigned int i = 0; i < m->nqueue; i++) {
		const struct store_queue_entry *e = &m->queue[i].e;
		if ((owner == NULL || strcmp(e->owner, owner) == 0) &&
		    e->next_attempt_us <= due_before_us)
			all[n++] = *e;
	}
	qsort(all, n, sizeof(*all), store_queue_entry_cmp);
	if (n > max)
		n = max;
	enum store_status st = STORE_OK;
	for (unsigned int i = 0; i < n && st == STORE_OK; i++) {
		st = queued_copy(find_queued(m, &all[i].id), &all[i]);
		*count_r = i + 1;
	}
	*entries_r = all;
	return st;
}

static enum store_status mem_queue_scan(struct store *store, const char *owner,
					int64_t due_before_us, unsigned int max,
					struct store_queue_entry **entries_r, unsigned int *count_r)
{
	struct mem_store *m = (struct mem_store *)store;
	LOCKED(m, queue_scan_locked(m, owner, due_before_us, max, entries_r, count_r));
}

static enum store_status queue_get_locked(struct mem_store *m, const struct uuid *id,
					  struct store_queue_entry *e)
{
	const struct mem_queued *mq = find_queued(m, id);
	return mq == NULL ? STORE_NOTFOUND : queued_copy(mq, e);
}

static enum store_status mem_queue_get(struct store *store, const struct uuid *id,
				       struct store_queue_entry *e)
{
	struct mem_store *m = (struct mem_store *)store;
	LOCKED(m, queue_get_locked(m, id, e));
}

static enum store_status queue_read_locked(struct mem_store *m, const struct store_queue_entry *e,
					   uint64_t offset, char *dst, size_t n)
{
	const struct mem_queued *mq = find_queued(m, &e->id);
	if (mq == NULL)
		return STORE_NOTFOUND;
	if (offset + n > mq->e.size)
		return STORE_INVALID;
	memcpy(dst, mq->data + offset, n);
	return STORE_OK;
}

static enum store_status mem_queue_read(struct store *store, const struct store_queue_entry *e,
					uint64_t offset, char *dst, size_t n)
{
	struct mem_store *m = (struct mem_store *)store;
	LOCKED(m, queue_read_locked(m, e, offset, dst, n));
}

static enum store_status queue_update_locked(struct mem_store *m,
					     const struct store_queue_entry *e,
					     const struct buf *rcpts)
{
	struct mem_queued *mq = find_queued(m, &e->id);
	if (mq == NULL || strcmp(mq->e.owner, e->owner) != 0)
		return STORE_NOTFOUND;
	mq->e.attempts = e->attempts;
	mq->e.next_attempt_us = e->next_attempt_us;
	free(mq->rcpts);
	mq->rcpts = xstrndup(rcpts->data, rcpts->len);
	mq->rcpts_len = rcpts->len;
	return STORE_OK;
}

static enum store_status mem_queue_update(struct store *store, const struct store_queue_entry *e,
					  const struct buf *rcpts)
{
	struct mem_store *m = (struct mem_store *)store;
	LOCKED(m, queue_update_locked(m, e, rcpts));
}

static enum store_status queue_del_locked(struct mem_store *m, const struct uuid *id)
{
	struct mem_queued *mq = find_queued(m, id);
	if (mq == NULL)
		return STORE_NOTFOUND;
	free(mq->rcpts);
	free(mq->data);
	*mq = m->queue[--m->nqueue];
	return STORE_OK;
}

static enum store_status mem_queue_del(struct store *store, const struct uuid *id)
{
	struct mem_store *m = (struct mem_store *)store;
	LOCKED(m, queue_del_locked(m, id));
}

static enum store_status mem_queue_flush(struct store *store, int64_t now_us,
					 unsigned int *count_r)
{
	struct mem_store *m = (struct mem_store *)store;
	pthread_mutex_lock(&m->lock);
	for (unsigned int i = 0; i < m->nqueue; i++)
		m->queue[i].e.next_attempt_us = now_us;
	*count_r = m->nqueue;
	pthread_mutex_unlock(&m->lock);
	return STORE_OK;
}

static enum store_status mem_queue_heartbeat(struct store *store, const char *node,
					     int64_t now_us)
{
	struct mem_store *m = (struct mem_store *)store;
	pthread_mutex_lock(&m->lock);
	unsigned int i = 0;
	while (i < m->nnodes && strcmp(m->nodes[i].id, node) != 0)
		i++;
	if (i == m->nnodes) {
		m->nodes = xrealloc(m->nodes, (m->nnodes + 1) * sizeof(*m->nodes));
		str_copy(m->nodes[m->nnodes++].id, node, sizeof(m->nodes[0].id));
	}
	m->nodes[i].heartbeat_us = now_us;
	pthread_mutex_unlock(&m->lock);
	return STORE_OK;
}

static enum store_status mem_queue_nodes(struct store *store, struct store_queue_node **nodes_r,
					 unsigned int *count_r)
{
	struct mem_store *m = (struct mem_store *)store;
	pthread_mutex_lock(&m->lock);
	*nodes_r = xcalloc(m->nnodes + 1, sizeof(**nodes_r));
	if (m->nnodes > 0)
		memcpy(*nodes_r, m->nodes, m->nnodes * sizeof(**nodes_r));
	*count_r = m->nnodes;
	pthread_mutex_unlock(&m->lock);
	return STORE_OK;
}

static enum store_status mem_health(struct store *store, struct buf *detail)
{
	(void)store;
	(void)detail;
	return STORE_OK; /* memory is always writable */
}

/* store_durability_check(). */
static int mem_durability(struct store *store, struct buf *line)
{
	(void)store;
	buf_append_str(line, "no: the mem backend keeps everything in memory (tests only)");
	return 0;
}

const struct store_vfuncs store_mem_vfuncs = {
	.name = "mem",
	.section = NULL,
	.worker_threads = 4,
	.open = mem_open,
	.close = mem_close,
	.domain_add = mem_domain_add,
	.domain_del = mem_domain_del,
	.domain_exists = mem_domain_exists,
	.domain_list = mem_domain_list,
	.user_add = mem_user_add,
	.user_del = mem_user_del,
	.user_set_password = mem_user_set_password,
	.user_get = mem_user_get,
	.user_list = mem_user_list,
	.alias_put = mem_alias_put,
	.alias_del = mem_alias_del,
	.alias_get = mem_alias_get,
	.alias_list = mem_alias_list,
	.quota_get = mem_quota_get,
	.quota_set = mem_quota_set,
	.expire_get = mem_expire_get,
	.expire_set = mem_expire_set,
	.login_get = mem_login_get,
	.login_put = mem_login_put,
	.retrieved_put = mem_retrieved_put,
	.retrieved_list = mem_retrieved_list,
	.retrieved_del = mem_retrieved_del,
	.mailbox_usage = mem_mailbox_usage,
	.health = mem_health,
	.durability = mem_durability,
	.deliver = mem_deliver,
	.maildrop_read = mem_maildrop_read,
	.cursor_open = mem_cursor_open,
	.cursor_read = mem_cursor_read,
	.cursor_close = mem_cursor_close,
	.reads_nowait = true,
	.expunge = mem_expunge,
	.repair = mem_repair,
	.queue_put = mem_queue_put,
	.queue_scan = mem_queue_scan,
	.queue_get = mem_queue_get,
	.queue_read = mem_queue_read,
	.queue_update = mem_queue_update,
	.queue_del = mem_queue_del,
	.queue_flush = mem_queue_flush,
	.queue_heartbeat = mem_queue_heartbeat,
	.queue_nodes = mem_queue_nodes,
};
