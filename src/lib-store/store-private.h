#ifndef TERN_STORE_PRIVATE_H
#define TERN_STORE_PRIVATE_H
/*
 * The backend side of store.h. A backend embeds struct store first in its
 * own struct and provides a const struct store_vfuncs, registered by name in
 * store.c's table. The generic layer (store.c) does argument checks and
 * keeps a cursor's position and bounds; backends only move bytes.
 *
 * A backend also declares its configuration: the section it reads (NULL for
 * none), the keys of that section, and how many worker threads it wants.
 */
#include "store.h"

/* The generic half of a cursor; a backend embeds it first in its own. */
struct store_cursor {
	const struct store_vfuncs *v;
	struct store_maildrop *md;
	unsigned int index;
	uint64_t offset;  /* octets returned so far */
	uint64_t size;    /* octets in all (set by the backend's cursor_open) */
	/* The recipient's prefix, served by store.c before the body: set by
	 * the backend's cursor_open (malloc'ed); store_cursor_close() frees it. */
	char *prefix;
	size_t prefix_len;
	bool failed;      /* a read failed: the cursor only awaits its close */
};

struct store_vfuncs {
	const char *name;
	const char *section;                    /* its configuration section, or NULL */
	const struct store_option_def *options; /* keys of section; ends with a NULL key */
	unsigned int worker_threads;
	struct store *(*open)(const struct store_settings *set, const char **error_r);
	void (*close)(struct store *store);

	enum store_status (*domain_add)(struct store *, const char *domain);
	enum store_status (*domain_del)(struct store *, const char *domain);
	enum store_status (*domain_exists)(struct store *, const char *domain);
	enum store_status (*domain_list)(struct store *, struct buf *out);

	enum store_status (*user_add)(struct store *, const char *address, const char *hash);
	enum store_status (*user_del)(struct store *, const char *address);
	enum store_status (*user_set_password)(struct store *, const char *address,
					       const char *hash);
	enum store_status (*user_get)(struct store *, const char *address, struct buf *hash_r);
	enum store_status (*user_list)(struct store *, struct buf *out);

	/* Aliases, as plain rows: store.c validates before alias_put. targets
	 * is each target followed by '\n'; a put replaces the row whole. */
	enum store_status (*alias_put)(struct store *, const char *address, const char *targets);
	/* NOTFOUND when there is no such row. */
	enum store_status (*alias_del)(struct store *, const char *address);
	/* Appends the stored targets text; NOTFOUND without the row. */
	enum store_status (*alias_get)(struct store *, const char *address, struct buf *targets_r);
	/* Appends one store_alias_line() per alias, in any order (store.c sorts). */
	enum store_status (*alias_list)(struct store *, struct buf *out);

	/* The user's own limits (STORE_NO_LIMIT where none); NOTFOUND without
	 * the user. Deleting the user deletes them. */
	enum store_status (*quota_get)(struct store *, const char *address, struct store_quota *own_r);
	enum store_status (*quota_set)(struct store *, const char *address,
				       const struct store_quota *own);
	/* Computed from the listing, never from a counter; NOTFOUND without the user. */
	enum store_status (*mailbox_usage)(struct store *, const char *address,
					   uint64_t *messages_r, uint64_t *octets_r);
	/* Optional (NULL: mailbox_usage): the same for a user the caller has
	 * just read, so without reading the user again (an empty mailbox
	 * when there is none). */
	enum store_status (*listing_usage)(struct store *, const char *address,
					   uint64_t *messages_r, uint64_t *octets_r);
	/* OK, or a temporary status with "backend: what fails" appended to detail. */
	enum store_status (*health)(struct store *, struct buf *detail);
	/* Optional (NULL: unknown): store_durability_check's answer. */
	int (*durability)(struct store *, struct buf *line);

	/* POP3 extensions (store.h). expire_get: STORE_EXPIRE_DEFAULT when the
	 * user has no own value; NOTFOUND without the user. */
	enum store_status (*expire_get)(struct store *, const char *address, int *days_r);
	enum store_status (*expire_set)(struct store *, const char *address, int days);
	/* 0 when none is recorded. */
	enum store_status (*login_get)(struct store *, const char *address, int64_t *us_r);
	enum store_status (*login_put)(struct store *, const char *address, int64_t us);
	/* Keeps the earliest us per (mailbox, message). */
	enum store_status (*retrieved_put)(struct store *, const struct uuid *mailbox,
					   const struct uuid *id, int64_t us);
	/* The mailbox's messages first retrieved before before_us, ordered
	 * by id, at most max (ids_r and us_r malloc'ed, NULL when none). */
	enum store_status (*retrieved_list)(struct store *, const struct uuid *mailbox,
					    int64_t before_us, unsigned int max,
					    struct uuid **ids_r, int64_t **us_r,
					    unsigned int *count_r);
	/* Removes the records of these messages; idempotent. */
	enum store_status (*retrieved_del)(struct store *, const struct uuid *mailbox,
					   const struct uuid *ids, unsigned int n);

	/* Per recipient: NOTFOUND (no such user), OVERQUOTA (the message would
	 * take the user over a limit: see store_quota_fits(), and
	 * store_quota_refuse_all() for d->quota_all_or_nothing), else the
	 * write's status. A recipient who already has the message (a retry)
	 * is never refused for quota. */
	enum store_status (*deliver)(struct store *, struct store_delivery *d);
	/* Fills md->entries/count/total_size (md->address and mailbox_id are set). */
	enum store_status (*maildrop_read)(struct store *, struct store_maildrop *md);
	/* Opens a cursor on message i (i < md->count): allocates the backend's
	 * cursor struct, sets its size, and returns it with the generic fields
	 * zeroed (store.c fills them in). NOTFOUND when the message is gone. */
	enum store_status (*cursor_open)(struct store_maildrop *md, unsigned int i,
					 struct store_cursor **cursor_r);
	/* Copies the n body octets at body_off (n >= 1, within the body) to
	 * dst; the prefix is store.c's. Reads only move forward. */
	enum store_status (*cursor_read)(struct store_cursor *c, uint64_t body_off, char *dst,
					 size_t n);
	void (*cursor_close)(struct store_cursor *c);
	/* The cursor calls honour store_nowait_begin(): they test
	 * store_nowait() before anything that could wait, and answer
	 * store_would_block() instead. */
	bool reads_nowait;
	enum store_status (*expunge)(struct store_maildrop *md, const unsigned int *indexes,
				     unsigned int n);
	enum store_status (*repair)(struct store *, const struct store_repair_options *opts,
				    struct store_repair_report *report);
	/* The outbound queue (store.h). store.c has checked the arguments
	 * and encoded the recipients (rcpts: store_queue_rcpts_decode's form).
	 * queue_put is idempotent on q->id and never overwrites an entry that
	 * exists or undoes a delete. queue_scan returns a malloc'ed array
	 * (store.c frees it on an error). queue_read copies n >= 1 octets at
	 * offset (within e->size) to dst. */
	enum store_status (*queue_put)(struct store *, const struct store_queue_put *q,
				       const struct buf *rcpts);
	enum store_status (*queue_scan)(struct store *, const char *owner, int64_t due_before_us,
					unsigned int max, struct store_queue_entry **entries_r,
					unsigned int *count_r);
	enum store_status (*queue_get)(struct store *, const struct uuid *id,
				       struct store_queue_entry *entry_r);
	enum store_status (*queue_read)(struct store *, const struct store_queue_entry *e,
					uint64_t offset, char *dst, size_t n);
	enum store_status (*queue_update)(struct store *, const struct store_queue_entry *e,
					  const struct buf *rcpts);
	enum store_status (*queue_del)(struct store *, const struct uuid *id);
	enum store_status (*queue_flush)(struct store *, int64_t now_us, unsigned int *count_r);
	enum store_status (*queue_heartbeat)(struct store *, const char *node, int64_t now_us);
	enum store_status (*queue_nodes)(struct store *, struct store_queue_node **nodes_r,
					 unsigned int *count_r);

	/* Optional: appends the backend's own metric families (Prometheus
	 * text format, names tern_<backend>_*); called from any thread. */
	void (*metrics_render)(struct store *, struct buf *out);
};

struct store {
	/* What store.c calls: the backend's vtable with its calls timed for
	 * the metrics (store.c); backend_v is the backend's own. */
	const struct store_vfuncs *v, *backend_v;
	struct store_settings set;
};

extern const struct store_vfuncs store_sqlite_vfuncs;
extern const struct store_vfuncs store_mem_vfuncs;
extern const struct store_vfuncs store_cassandra_vfuncs;

/* Helpers shared by backends. */
/* The UIDL for uid mode: the UID then the UIDVALIDITY, 8 upper-case hex
 * digits each. Dovecot's "%08Xu%08Xv" has the same layout but prints
 * lower-case hex; tern's uid-mode UIDLs stay as they were first shown
 * (invariant 6), and an import keeps Dovecot's own (src/import). */
void store_uidl_from_uid(uint32_t uid, uint32_t uidvalidity, char out[72]);
/* The UIDL a new listing row of d gets in messageid mode, or the legacy
 * one in any mode: copies d->uidl when set (and returns true: in uid mode
 * no UID is allocated then), else the id's text (returns false). */
bool store_delivery_uidl(const struct store_delivery *d, char uidl_r[STORE_UIDL_MAX + 2]);
/* A 16-byte key whose memcmp order is Cassandra's TimeUUID order. */
void store_sort_key(const struct uuid *id, uint8_t key_r[16]);
void store_sort_key_to_uuid(const uint8_t key[16], struct uuid *id_r);
/* Copies len octets of the delivered message (header, then body) from
 * offset into out; the body is read from memory or with pread() from
 * body_fd. 0, or -1 (logged) on a read error or a short file. */
int store_delivery_read(const struct store_delivery *d, uint64_t offset, void *out, size_t len);

/* Appends "address target,target...\n" from a stored targets text (each
 * target followed by '\n'), the line store_alias_list() shows. */
void store_alias_line(struct buf *out, const char *address, const char *targets, size_t len);
/* Sorts the '\n'-terminated lines of out from start on. */
void store_sort_lines(struct buf *out, size_t start);

/* The outbound queue. A stored message is cut into chunks of this size
 * (SQLite, Cassandra), so a read of one piece reads one chunk. */
#define STORE_QUEUE_CHUNK STORE_QUEUE_READ_SIZE
/* The recipients' stored form, one line each: "S\taddress\tdiagnostic\n"
 * (S the state's digit). Sets e->rcpts (malloc'ed) and e->rcpt_count; -1
 * when data is malformed or holds more than STORE_QUEUE_RCPTS_MAX. */
int store_queue_rcpts_decode(const void *data, size_t len, struct store_queue_entry *e);
/* Copies len octets of q's message from offset (store_delivery_read). */
int store_queue_put_read(const struct store_queue_put *q, uint64_t offset, void *out,
			 size_t len);
static inline uint64_t store_queue_put_size(const struct store_queue_put *q)
{
	return (uint64_t)q->header_len + q->body_len;
}
/* Copies the part of chunk k (data, len) that lies in [offset, offset + n)
 * to dst + (its offset - offset); returns how many octets. */
size_t store_queue_chunk_copy(uint64_t k, const void *data, size_t len, uint64_t offset,
			      char *dst, size_t n);
/* qsort order of a scan: next_attempt_us, then id (time order). */
int store_queue_entry_cmp(const void *a, const void *b);

/* Quotas on the delivery path. The limits that apply to a user whose own
 * limits are own: each own limit where set, else the store's default. */
struct store_quota store_quota_apply(const struct store *store, const struct store_quota *own);
static inline bool store_quota_is_none(const struct store_quota *q)
{
	return q->messages == STORE_NO_LIMIT && q->octets == STORE_NO_LIMIT;
}
/* Whether one more message of size octets fits beside what the mailbox
 * holds (used_messages, used_octets). */
bool store_quota_fits(const struct store_quota *limits, uint64_t used_messages,
		      uint64_t used_octets, uint64_t size);
/* quota_all_or_nothing: when some recipient of d is OVERQUOTA, every
 * recipient who is not NOTFOUND becomes OVERQUOTA (and gets no UIDL); the
 * backend then writes nothing. Returns whether it did so. */
bool store_quota_refuse_all(struct store_delivery *d);

/* Under store_nowait_begin() on this thread (store.h). */
bool store_nowait(void);
/* Notes that a call would have waited; returns STORE_WOULDBLOCK. */
enum store_status store_would_block(void);

#endif
