#ifndef TERN_STORE_H
#define TERN_STORE_H
/*
 * store: the one storage interface of tern, shaped around the two protocols
 * rather than the database: deliver (envelope + body → per-recipient result),
 * open a maildrop (→ the listing fixed at login: id, size, uidl), read a
 * message (whole, or the headers and the first N body lines), expunge (the
 * ids deleted at POP3 QUIT); users and domains beside it.
 *
 * Threading: every function blocks and is safe to call from any thread; the
 * daemons call them from worker threads, the CLI from its main thread.
 *
 * Errors: one enum at the boundary. Each protocol maps it to replies in one
 * function. TEMPFAIL and UNCERTAIN are temporary (4xx / -ERR [SYS/TEMP]);
 * a storage timeout is never reported as a permanent failure.
 *
 * Invariants every backend keeps:
 * - A message is named by a TimeUUID minted before the first write; rows are
 *   keyed by it, so a retried write is idempotent.
 * - store_deliver() returns STORE_OK for a recipient only once the message
 *   is durable for that recipient.
 * - The listing is ordered by message id (= arrival order); sizes are the
 *   exact octet counts of what RETR sends (CRLF line endings, before
 *   dot-stuffing), computed at delivery.
 * - UIDLs never change once assigned.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "uuid.h"

enum store_status {
	STORE_OK = 0,
	STORE_NOTFOUND,   /* no such user/domain/message */
	STORE_EXISTS,     /* already there */
	STORE_TEMPFAIL,   /* try again later: nothing was written */
	STORE_UNCERTAIN,  /* a write may or may not have happened: try again later */
	STORE_PERM,       /* permanent failure */
	STORE_TOOBIG,     /* over a size limit */
	STORE_INVALID,    /* malformed input */
};

const char *store_status_name(enum store_status st);
static inline bool store_status_is_temporary(enum store_status st)
{
	return st == STORE_TEMPFAIL || st == STORE_UNCERTAIN;
}

enum store_pop3_ids {
	STORE_POP3_IDS_MESSAGEID = 0, /* UIDL = the TimeUUID's canonical text */
	STORE_POP3_IDS_UID,           /* UIDL from a per-mailbox monotonic UID */
};

struct store_settings {
	const char *backend;      /* "sqlite", "cassandra", "mem" */
	const char *data_dir;     /* sqlite: the database lives here */
	enum store_pop3_ids pop3_ids;
	/* cassandra */
	const char *contact_points, *local_dc, *keyspace, *replication;
	const char *username, *password;
	const char *read_consistency, *write_consistency;
};

struct store;

/* Opens (and creates or migrates the schema of) the configured backend.
 * Returns NULL with *error_r set (a static or store-owned string). */
struct store *store_open(const struct store_settings *set, const char **error_r);
void store_close(struct store **store);
const char *store_backend_name(const struct store *store);

/* Domains (lower-case names). */
enum store_status store_domain_add(struct store *store, const char *domain);
/* Fails with STORE_EXISTS when users of the domain remain. */
enum store_status store_domain_del(struct store *store, const char *domain);
enum store_status store_domain_exists(struct store *store, const char *domain);
/* Appends each name and a '\n' to out. */
enum store_status store_domain_list(struct store *store, struct buf *out);

/* Users: full lower-case addresses; the password is a hash string
 * (argon2id or a crypt(3) form), never plaintext. */
enum store_status store_user_add(struct store *store, const char *address,
				 const char *password_hash);
/* Removes the user and their messages. */
enum store_status store_user_del(struct store *store, const char *address);
enum store_status store_user_set_password(struct store *store, const char *address,
					  const char *password_hash);
/* Copies the password hash into hash_r (cap: 512 bytes). */
enum store_status store_user_get(struct store *store, const char *address,
				 struct buf *hash_r);
enum store_status store_user_list(struct store *store, struct buf *out);

/* Delivery. The caller fills in the recipients (normalised addresses, no
 * duplicates) and the message. The store prepends, per recipient, the given
 * prefix (e.g. Return-Path: and Delivered-To:) to what RETR returns. Each
 * recipient's status is set; the return value is STORE_OK when at least the
 * call itself worked (some recipients may still have failed). */
struct store_rcpt {
	const char *address;
	const char *prefix;      /* per-recipient header lines, may be "" */
	enum store_status status;
	char uidl[UUID_STR_LEN + 1];
};

struct store_delivery {
	struct uuid message_id;   /* set by store_delivery_init, kept across retries */
	/* The message is `header` (the trace fields common to all recipients,
	 * e.g. Received:; may be NULL with header_len 0) followed by the body:
	 * in memory (body, body_len) or, when body_fd >= 0, the first body_len
	 * octets of that file, read with pread() (the store never closes it,
	 * never moves its offset, and never holds it whole in memory). CRLF
	 * line endings. store_delivery_init() sets body_fd = -1: call it first,
	 * then fill in the fields. */
	const char *header;
	size_t header_len;
	const char *body;
	size_t body_len;
	int body_fd;
	struct store_rcpt *rcpts;
	unsigned int rcpt_count;
	unsigned int attempts;    /* store_deliver() calls so far with this id */
};

/* Mints the message id and sets body_fd = -1 (other fields are left as
 * they are). Call once per message, before the first attempt; a retry
 * calls store_deliver() again with the same struct, so it keeps its id and
 * every recipient keeps its UIDL. */
void store_delivery_init(struct store_delivery *d);
/* The stored message's size without the prefix: header_len + body_len. */
static inline uint64_t store_delivery_size(const struct store_delivery *d)
{
	return (uint64_t)d->header_len + d->body_len;
}
/* STORE_INVALID when there is no recipient or the message fields are
 * inconsistent (a NULL pointer with a non-zero length). */
enum store_status store_deliver(struct store *store, struct store_delivery *d);

/* The maildrop: the listing fixed at POP3 login. */
struct store_listing_entry {
	struct uuid id;
	uint64_t size;
	char uidl[72];
};

struct store_maildrop {
	struct store *store;
	char *address;
	struct uuid mailbox_id;
	int64_t login_us;     /* when the listing was read (µs since the epoch) */
	unsigned int count;
	uint64_t total_size;
	struct store_listing_entry *entries;  /* ordered by id */
};

/* One read of the mailbox listing. NOTFOUND when the user does not exist. */
enum store_status store_maildrop_open(struct store *store, const char *address,
				      struct store_maildrop **md_r);
void store_maildrop_free(struct store_maildrop **md);

/* Reads message i (0-based) of the listing and appends its POP3 form
 * (dot-stuffed, CRLF-terminated, ending with ".\r\n") to out.
 * body_lines < 0 for RETR, >= 0 for TOP; TOP n 0 reads only the headers.
 * NOTFOUND when another session has expunged it meanwhile. */
enum store_status store_message_read_pop3(struct store_maildrop *md, unsigned int i,
					  long body_lines, struct buf *out);
/* Streaming reads for RETR/TOP: each store_reader_read() appends about max
 * more octets of the POP3 form to out and sets *done_r once the final
 * ".\r\n" is in; the message is never held whole in memory. A message
 * expunged by another session between two reads gives NOTFOUND. */
struct store_reader;
enum store_status store_reader_open(struct store_maildrop *md, unsigned int i, long body_lines,
				    struct store_reader **reader_r);
enum store_status store_reader_read(struct store_reader *r, size_t max, struct buf *out,
				    bool *done_r);
void store_reader_free(struct store_reader **r);
/* Reads message i raw (no stuffing) into out (for tools and tests). */
enum store_status store_message_read_raw(struct store_maildrop *md, unsigned int i,
					 struct buf *out);
/* Deletes the listed messages (indexes into the listing). Idempotent:
 * messages already gone are not an error. */
enum store_status store_maildrop_expunge(struct store_maildrop *md,
					 const unsigned int *indexes, unsigned int n);

/* Repair: finds and fixes drift between listings and bodies (the
 * Apache James "fix POP3 inconsistencies" task), and sweeps bodies no
 * mailbox references. Each suspect is re-checked (at a stronger consistency
 * where the backend has one) right before it is fixed, so running it while
 * POP3 sessions and deliveries go on is safe. */
struct store_repair_options {
	unsigned int per_second;   /* rows examined per second, 0 = no limit */
	unsigned int min_age_secs; /* leave younger messages alone (in flight) */
	bool dry_run;              /* report, change nothing */
	bool check;                /* listing ↔ bodies */
	bool sweep;                /* unreferenced bodies */
};

struct store_repair_report {
	uint64_t refs_scanned, listing_scanned, bodies_scanned;
	uint64_t relisted;         /* referenced but missing from its listing: listed again */
	uint64_t deletes_finished; /* an interrupted expunge, completed */
	uint64_t unlisted;         /* listed but its body is gone: removed from the listing */
	uint64_t swept;            /* bodies no mailbox references: deleted */
	uint64_t skipped;          /* suspects that could not be confirmed (e.g. a replica down) */
};

enum store_status store_repair(struct store *store, const struct store_repair_options *opts,
			       struct store_repair_report *report);

#endif
