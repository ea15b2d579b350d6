#ifndef TERN_STORE_H
#define TERN_STORE_H
/*
 * store: the one storage interface of tern, shaped around the two protocols
 * rather than the database: deliver (envelope + body → per-recipient result),
 * open a maildrop (→ the listing fixed at login: id, size, uidl), read a
 * message through a cursor (its octets as stored, piece by piece), expunge
 * (the ids deleted at POP3 QUIT); users and domains beside it. The POP3 form
 * of a message (dot-stuffing, TOP) is the POP3 session's business, not the
 * store's.
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
 * - Each backend declares its own configuration section and keys and its
 *   worker-thread hint (store_option_lookup, store_worker_threads): nothing
 *   outside lib-store names a backend's keys.
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
	STORE_OVERQUOTA,  /* the recipient is at or would go over a quota limit (4.2.2) */
	STORE_LOOP,       /* an alias would reach itself, or nest deeper than STORE_ALIAS_DEPTH */
	STORE_WOULDBLOCK, /* only under store_nowait_begin(): the call would have waited */
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

/* The options a backend reads from its own configuration section (e.g.
 * [cassandra]). Each backend declares them in a table; the settings file
 * parser validates a backend section against it (store_option_lookup). */
enum store_option_type {
	STORE_OPTION_STRING,   /* any text */
	STORE_OPTION_ENUM,     /* one of choices, exactly as spelt */
};

struct store_option_def {
	const char *key;
	enum store_option_type type;
	const char *const *choices;  /* ENUM: the accepted values, NULL-terminated */
	bool secret;                 /* wiped from memory when the settings are freed */
};

/* One value of a backend section, as given. */
struct store_option {
	char *section, *key, *value;
	bool secret;
};

/* A quota limit meaning "none": 0, so a zeroed struct has no quota (a
 * real limit is at least 1). */
#define STORE_NO_LIMIT 0

struct store_quota {
	uint64_t messages, octets;   /* STORE_NO_LIMIT: none */
};

struct store_settings {
	/* The per-user defaults ([quota]); a user's own limits replace them. */
	struct store_quota default_quota;
	const char *backend;      /* "sqlite", "cassandra", "mem"; read by store_open only */
	const char *data_dir;     /* sqlite: the database lives here; read by store_open only */
	enum store_pop3_ids pop3_ids;
	/* The backend sections' values (owned; store_settings_set, _deinit).
	 * store_open takes a copy of its own. */
	struct store_option *options;
	unsigned int option_count;
};

/* The backend names of this build, in table order, NULL-terminated. */
const char *const *store_backend_names(void);
/* Whether some backend reads its options from [section]. */
bool store_section_exists(const char *section);
/* The definition of key in a backend's section, or NULL when that backend
 * has no such key (or no backend has that section). */
const struct store_option_def *store_option_lookup(const char *section, const char *key);
/* Records section.key = value (copied; a repeated key replaces the earlier
 * value). The caller has validated it with store_option_lookup(), which
 * must know the key. */
void store_settings_set(struct store_settings *set, const char *section, const char *key,
			const char *value);
/* The value of section.key, or NULL when it was not set. */
const char *store_settings_get(const struct store_settings *set, const char *section,
			       const char *key);
/* Frees the options (secret values are wiped first); backend, data_dir and
 * pop3_ids are left as they are. */
void store_settings_deinit(struct store_settings *set);

struct store;

/* Opens (and creates or migrates the schema of) the configured backend.
 * Returns NULL with *error_r set (a static or store-owned string). */
struct store *store_open(const struct store_settings *set, const char **error_r);
void store_close(struct store **store);
const char *store_backend_name(const struct store *store);
/* How many worker threads the backend wants to keep sessions busy: store
 * calls block a worker for an fsync (SQLite) or for network round trips
 * (Cassandra), and the latter wants more of them. */
unsigned int store_worker_threads(const struct store *store);

/* Domains (lower-case names). */
enum store_status store_domain_add(struct store *store, const char *domain);
/* Fails with STORE_EXISTS when users or aliases of the domain remain. */
enum store_status store_domain_del(struct store *store, const char *domain);
enum store_status store_domain_exists(struct store *store, const char *domain);
/* Appends each name and a '\n' to out. */
enum store_status store_domain_list(struct store *store, struct buf *out);

/* Users: full lower-case addresses; the password is a hash string
 * (argon2id or a crypt(3) form), never plaintext. store_user_add refuses
 * (STORE_EXISTS) an address that is an alias. */
enum store_status store_user_add(struct store *store, const char *address,
				 const char *password_hash);
/* Removes the user, their messages and their own quota (and an alias row
 * of the same address, which only a race can leave). Aliases that name the
 * user as a target are left alone: delivery skips targets that are gone. */
enum store_status store_user_del(struct store *store, const char *address);
enum store_status store_user_set_password(struct store *store, const char *address,
					  const char *password_hash);
/* Copies the password hash into hash_r (cap: 512 bytes). */
enum store_status store_user_get(struct store *store, const char *address,
				 struct buf *hash_r);
enum store_status store_user_list(struct store *store, struct buf *out);

/* Aliases: an address of a local domain that delivers to one or more
 * targets, each a local user, another alias, or a remote address (any
 * valid address outside the local domains). Stored in the store, so
 * every node sees them; plain writes, no lightweight transaction.
 * store_alias_set() creates or replaces an alias; it refuses (STORE_INVALID)
 * an alias outside the local domains, an address that is a user, an empty
 * or over-long target list (STORE_ALIAS_TARGETS_MAX) or a target of a
 * local domain that is no user or alias (STORE_NOTFOUND), and with STORE_LOOP an alias whose
 * expansion would reach itself or nest deeper than STORE_ALIAS_DEPTH. Two
 * nodes creating a loop at the same moment can still store one: delivery
 * then refuses that address (STORE_LOOP), it never loops. Only the alias
 * being set is checked for depth: an alias naming it can become deeper
 * than STORE_ALIAS_DEPTH, and delivery refuses that one (STORE_LOOP). An
 * expansion reaching more than STORE_ALIAS_TARGETS_MAX users and remote
 * addresses is INVALID.
 * Targets are folded (a duplicate is stored once). */
#define STORE_ALIAS_TARGETS_MAX 64
#define STORE_ALIAS_DEPTH 8
enum store_status store_alias_set(struct store *store, const char *address,
				  const char *const *targets, unsigned int target_count);
enum store_status store_alias_del(struct store *store, const char *address);
/* Appends the alias's targets, each followed by '\n'. NOTFOUND when address is no alias. */
enum store_status store_alias_get(struct store *store, const char *address, struct buf *targets_r);
/* Appends one line per alias: "address target[,target...]\n", in address order. */
enum store_status store_alias_list(struct store *store, struct buf *out);

/* What a recipient address delivers to: the users it names, after aliases
 * (depth-first, duplicates folded, at most STORE_ALIAS_TARGETS_MAX users),
 * and the remote addresses its aliases name (remote, in the order met,
 * duplicates folded; users and remote addresses together at most
 * STORE_ALIAS_TARGETS_MAX). An alias whose targets are all remote resolves
 * with count 0 and remote_count > 0: it is no unknown address, but nothing
 * of it is delivered locally. An address that is a user resolves to itself. "postmaster@D" of a local
 * domain D that has no such user or alias resolves as the bare
 * <Postmaster> of RFC 5321 4.5.1 does: the postmaster (user or alias) of
 * the first local domain, in name order, that has one; the bare address
 * "postmaster" (no domain) resolves so too. Targets that no longer exist
 * are skipped. NOTFOUND when it is neither a user nor an alias, or an
 * alias none of whose targets is left; INVALID without a domain; STORE_LOOP
 * when the stored aliases loop, nest deeper than STORE_ALIAS_DEPTH or reach
 * more than STORE_ALIAS_TARGETS_MAX users. */
#define STORE_ADDRESS_MAX 320   /* local part (64) + "@" + domain (255) */
/* What the resolution read of a user, in the same read that found them:
 * the user's own quota limits, and when that read began. A delivery may be
 * handed it (store_rcpt.seen) so that a backend whose every read is a
 * network request need not read the user again (see store_rcpt). */
struct store_user_seen {
	int64_t read_us;          /* µs since the epoch; 0: nothing was read */
	struct store_quota own;   /* STORE_NO_LIMIT where the user has no own limit */
};
/* How old a store_user_seen may be for a delivery to take it instead of
 * reading the user again. */
#define STORE_SEEN_FRESH_US (5LL * 1000000)
struct store_resolved {
	unsigned int count;
	char users[STORE_ALIAS_TARGETS_MAX][STORE_ADDRESS_MAX + 1];
	struct store_user_seen seen[STORE_ALIAS_TARGETS_MAX];  /* users[i]'s */
	unsigned int remote_count;
	char remote[STORE_ALIAS_TARGETS_MAX][STORE_ADDRESS_MAX + 1];
};
enum store_status store_resolve(struct store *store, const char *address,
				struct store_resolved *r);

/* Quotas. A user's own limits, each STORE_NO_LIMIT where the user has none
 * of their own (then the [quota] default applies). */
enum store_status store_quota_get(struct store *store, const char *address,
				  struct store_quota *own_r);
enum store_status store_quota_set(struct store *store, const char *address,
				  const struct store_quota *own);
/* The limits that apply: the user's own where set, else the default. */
enum store_status store_quota_effective(struct store *store, const char *address,
					struct store_quota *limits_r);
/* What the mailbox holds now: computed from the listing (SQLite: exact;
 * Cassandra: the listing as the local datacenter sees it at the read
 * consistency: exact to within deliveries in flight and replication). */
enum store_status store_mailbox_usage(struct store *store, const char *address,
				      uint64_t *messages_r, uint64_t *octets_r);
/* STORE_OK when the user is under both limits (at RCPT: one more message
 * of unknown size still fits), STORE_OVERQUOTA when at or over one. */
enum store_status store_quota_check(struct store *store, const char *address);
/* The same for a user store_resolve() has just read (seen: its
 * resolved.seen[i]): the user is not read again, and the mailbox's usage
 * is read only when a limit applies (the user's own or the [quota]
 * default); without one, no read at all. */
enum store_status store_quota_check_seen(struct store *store, const char *address,
					 const struct store_user_seen *seen);

/* POP3 extensions (RFC 2449): the user's own EXPIRE policy, the last
 * login for LOGIN-DELAY, and when messages were first retrieved. All plain
 * writes, no lightweight transaction, no read-then-write: a login time is
 * last-write-wins, a retrieval record keeps the earliest time written (see
 * store_retrieved_put). */
struct store_maildrop;
#define STORE_EXPIRE_DEFAULT (-2)  /* no own value: [pop3] expire_days applies */
#define STORE_EXPIRE_NEVER (-1)
#define STORE_EXPIRE_DAYS_MAX 36500
/* The user's own policy in days (0..STORE_EXPIRE_DAYS_MAX), or
 * STORE_EXPIRE_NEVER, or STORE_EXPIRE_DEFAULT; NOTFOUND without the user. */
enum store_status store_user_expire_get(struct store *store, const char *address, int *days_r);
/* INVALID for a value outside those; NOTFOUND without the user. */
enum store_status store_user_expire_set(struct store *store, const char *address, int days);
/* The last successful POP3 login (µs since the epoch), 0 when none is
 * recorded. A plain write per login: two datacenters' logins are ordered
 * by their write timestamps once replicated, no better. */
enum store_status store_login_get(struct store *store, const char *address, int64_t *us_r);
enum store_status store_login_put(struct store *store, const char *address, int64_t us);
/* Records that message i of the listing was retrieved at us. Idempotent;
 * a later call for the same message never moves its time later (SQLite:
 * INSERT OR IGNORE; Cassandra: one clustering row per retrieval time, the
 * earliest read back; mem: kept if present). */
enum store_status store_retrieved_put(struct store_maildrop *md, unsigned int i, int64_t us);

/* The expiry sweep of one mailbox: the messages first retrieved before
 * before_us (and only those: a message never retrieved is never expired)
 * that are still in the listing, at most max of them, are expunged as at
 * POP3 QUIT; their retrieval records, and those of messages no longer
 * listed, are removed. *expired_r (malloc'ed, may be NULL when
 * *count_r is 0) says which, for the log. */
struct store_expired {
	struct uuid id;
	uint64_t size;
	int64_t retrieved_us;
};
enum store_status store_expire_mailbox(struct store *store, const char *address,
				       int64_t before_us, unsigned int max,
				       struct store_expired **expired_r, unsigned int *count_r);

/* Health: STORE_OK when the store can take writes (SQLite: the database
 * is writable; Cassandra: a quorum of the local datacenter's replicas is
 * reachable). Else a temporary status with what fails appended to detail.
 * STORE_OK may come with a warning in detail that does not fail the check:
 * Cassandra's "cassandra: durable: no: ..." (store_durability_check), which
 * fails it only with [cassandra] require_durable = yes. */
enum store_status store_health(struct store *store, struct buf *detail);
/* Whether a write the store acknowledged survives the crash of one machine
 * (Cassandra: of one node of the local datacenter; kill -9 or power loss),
 * as the store is configured now: 1 yes, 0 no, -1 unknown. Appends one
 * line to line, "yes: why" or "no: why, and what to change" (no trailing
 * newline), e.g. for `tern check-config`. May run queries (Cassandra: a
 * few per local node, cached for a minute): call it from a worker thread
 * or a command, never from the event loop. */
int store_durability_check(struct store *store, struct buf *line);
/* Appends the backend's own metric families (Prometheus text format) to out. */
void store_metrics_render(struct store *store, struct buf *out);

/* A UIDL as RFC 1939 allows it: 1 to STORE_UIDL_MAX octets, each 0x21-0x7E. */
#define STORE_UIDL_MAX 70
bool store_uidl_valid(const char *uidl);

/* Delivery. The caller fills in the recipients (normalised addresses, no
 * duplicates) and the message. The store prepends, per recipient, the given
 * prefix (e.g. Return-Path: and Delivered-To:) to what RETR returns. Each
 * recipient's status is set; the return value is STORE_OK when at least the
 * call itself worked (some recipients may still have failed). */
struct store_rcpt {
	const char *address;
	const char *prefix;      /* per-recipient header lines, may be "" */
	enum store_status status;
	char uidl[STORE_UIDL_MAX + 2];
	/* What the caller's store_resolve() read of this user (zeroed: none).
	 * The Cassandra store takes it, when at most STORE_SEEN_FRESH_US old,
	 * instead of its own read of the users row: the user's existence and
	 * own limits are then as they were at most that long ago (a user
	 * deleted meanwhile can still receive the message: see
	 * docs/cassandra-store.md, "A user deleted during a delivery"). The
	 * mailbox's usage is read at delivery all the same when a limit
	 * applies. SQLite and mem ignore it: they check the user in the write
	 * itself. */
	struct store_user_seen seen;
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
	/* The message id names a past time on purpose (an import: the
	 * original delivery time), so the Cassandra store never mints it
	 * again the way it does an id whose listing write starts late. Such a
	 * message can fall under a range delete of a POP3 session that logged
	 * in before it was imported (docs/migration.md). */
	bool historical_id;
	/* Quota enforcement: each recipient whom the message would take over
	 * a limit gets STORE_OVERQUOTA and not the message (SQLite checks in
	 * the write transaction, so it is exact). With quota_all_or_nothing
	 * (SMTP, which has one reply), one such recipient means nobody gets it:
	 * then every recipient who exists gets STORE_OVERQUOTA, those who had
	 * room too (unknown ones keep STORE_NOTFOUND), so that one temporary
	 * reply covers them all. A retry of a delivery the recipient already
	 * has is never refused for quota. */
	bool quota_all_or_nothing;
	/* A legacy UIDL kept by an import (tern import): the UIDL every
	 * recipient gets instead of the id's text (messageid mode) or a newly
	 * allocated UID (uid mode, which then allocates none). NULL for the
	 * default; store_deliver() refuses one that store_uidl_valid() does not
	 * accept (STORE_INVALID). Uniqueness in the mailbox is the caller's to
	 * check (the importer reads the listing first). store_delivery_init()
	 * sets it to NULL. */
	const char *uidl;
};

/* Mints the message id and sets body_fd = -1 and uidl = NULL (other
 * fields are left as they are; an importer then sets message_id to an id
 * derived from the message's original time). Call once per message, before the first attempt; a retry
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
	char uidl[STORE_UIDL_MAX + 2];
	/* The backend's own key of the message's body where it differs from id
	 * (Cassandra: the body's id, minted before the listing id); else id. */
	struct uuid body_id;
};

struct store_maildrop {
	struct store *store;
	char *address;
	struct uuid mailbox_id;
	int64_t login_us;     /* when the listing was read (µs since the epoch) */
	/* The user's own EXPIRE policy, read with the user's row the listing
	 * read checks anyway (store_user_expire_get's value, no request more):
	 * STORE_EXPIRE_DEFAULT when the user has none. */
	int expire_days;
	unsigned int count;
	uint64_t total_size;
	struct store_listing_entry *entries;  /* ordered by id */
};

/* One read of the mailbox listing. NOTFOUND when the user does not exist. */
enum store_status store_maildrop_open(struct store *store, const char *address,
				      struct store_maildrop **md_r);
void store_maildrop_free(struct store_maildrop **md);

/* A cursor over message i's octets as stored: the recipient's prefix, then
 * the message, md->entries[i].size octets (CRLF line endings, no
 * dot-stuffing; the POP3 session adds that). The cursor keeps its position
 * (SQLite: an open blob in a read transaction of its own; Cassandra: the
 * body reference and the current chunk), so each piece costs only the read
 * of that piece.
 *
 * NOTFOUND from open when another session has expunged the message. An
 * expunge after open: the cursor either goes on returning the message's
 * octets as they were at open (a snapshot: mem, SQLite) or fails a later
 * call with NOTFOUND (Cassandra once the chunks are gone, SQLite when the
 * reader pool was exhausted at open); it never returns other octets.
 *
 * Usable from any thread, one call at a time; close it before freeing the
 * maildrop. An open cursor may hold a database connection and a read
 * transaction: close it as soon as the message is read. */
struct store_cursor;
enum store_status store_cursor_open(struct store_maildrop *md, unsigned int i,
				    struct store_cursor **cursor_r);
/* Appends at most max octets of the message (fewer only at its end) to out
 * and sets *eof_r once the last octet of the message has been appended,
 * possibly by this very call: a message of 0 octets is at eof on the first
 * call. After eof, appends nothing and keeps *eof_r true. TOOBIG when out's
 * cap cannot take the piece: nothing is taken, and a smaller max may follow.
 * Any other error appends nothing and leaves the cursor failed: later calls
 * return TEMPFAIL, and it only awaits its close. */
enum store_status store_cursor_next(struct store_cursor *c, size_t max, struct buf *out,
				    bool *eof_r);
/* The octets appended so far. */
uint64_t store_cursor_offset(const struct store_cursor *c);
void store_cursor_close(struct store_cursor **c);

/* Reads from memory only. Between store_nowait_begin() and
 * store_nowait_end() on a thread, a cursor call (open, next, close) that
 * would wait for the disk, a lock or the network returns STORE_WOULDBLOCK
 * instead; the caller then closes the cursor and makes the same calls
 * again on a worker thread, where they may wait. Served from memory, the
 * call returns what it always would. That lets an event loop serve a small
 * message whose pages the kernel holds without handing it to a worker (and
 * paying two thread wake-ups), and still never block (design.md). Only
 * where store_reads_nowait() says the backend can: on the others every
 * such call would say WOULDBLOCK. store_nowait_end() returns whether any
 * call did, and counts the attempt in tern_store_nowait_reads_total. */
bool store_reads_nowait(const struct store *store);
void store_nowait_begin(void);
bool store_nowait_end(void);

/* Reads message i whole into out (appended; for tools and tests), through a
 * cursor. On an error out is left as it was. */
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
struct store_repair_report;

struct store_repair_options {
	unsigned int per_second;   /* rows examined per second, 0 = no limit */
	unsigned int min_age_secs; /* leave younger messages alone (in flight) */
	bool dry_run;              /* report, change nothing */
	bool check;                /* listing ↔ bodies */
	bool sweep;                /* unreferenced bodies */
	/* Resuming: a backend that scans by token range (Cassandra) starts
	 * after from_token (the token_reached of an earlier run); others
	 * ignore it and scan everything. */
	bool has_from;
	int64_t from_token;
	/* Called from the repairing thread after each token range is done
	 * (and once at the end), may be NULL. */
	void (*progress)(void *ctx, const struct store_repair_report *report);
	void *progress_ctx;
};

/* The report is updated while the repair runs, with relaxed atomic stores
 * (__atomic_store_n): another thread may read the progress with
 * __atomic_load_n. */
struct store_repair_report {
	uint64_t refs_scanned, listing_scanned, bodies_scanned;
	uint64_t relisted;         /* referenced but missing from its listing: listed again */
	uint64_t deletes_finished; /* an interrupted expunge, completed */
	uint64_t unlisted;         /* listed but its body is gone: removed from the listing */
	uint64_t swept;            /* bodies no mailbox references: deleted */
	uint64_t skipped;          /* suspects that could not be confirmed (e.g. a replica down) */
	/* Listing rows of a mailbox that no user has (Cassandra: a delivery
	 * that raced the user's deletion, see store_rcpt.seen): counted and
	 * logged, left alone. A user of that address added later gets them. */
	uint64_t orphaned;
	/* By token range (by_token set): every partition whose token is at
	 * most token_reached has been examined (from from_token on). Resume
	 * with from_token = token_reached; INT64_MAX means the end. */
	bool by_token;
	int64_t token_reached;
};

enum store_status store_repair(struct store *store, const struct store_repair_options *opts,
			       struct store_repair_report *report);

/* What a repair by token range shows of its progress, on a terminal and in
 * the admin API alike: the share of the range it scans (from from_token,
 * or the start of the ring, to the end) covered so far, the rows scanned
 * (references, listing rows and bodies), their rate, and the time left at
 * the rate the range has been covered so far (-1 until any of it is).
 * elapsed_s: seconds since the repair started. */
struct store_repair_progress {
	double covered;         /* 0..1 */
	uint64_t rows;
	double rows_per_second;
	double seconds_left;
};

void store_repair_progress(const struct store_repair_options *opts,
			   const struct store_repair_report *report, double elapsed_s,
			   struct store_repair_progress *out);

/* --- the outbound queue ---
 *
 * Messages accepted for remote recipients wait here until the queue runner
 * has delivered them. Each entry is owned by the node that accepted it (its
 * id, e.g. the host name); nodes write heartbeats, so another node can take
 * over the entries of a node that stopped. Quotas and mailbox usage do not
 * count the queue.
 *
 * Cassandra keeps design invariant 1 here too: no lightweight transaction,
 * no counter, no SERIAL read. Entries live in partitions per owner and hour
 * of queueing (docs/cassandra-store.md), every write is keyed by the
 * entry's TimeUUID, and the put writes with that id's time as its write
 * timestamp: a retried put can never undo a later update or delete. */
#define STORE_NODE_ID_MAX 64           /* a node id: 1 to 64 octets 0x21-0x7E */
#define STORE_QUEUE_RCPTS_MAX 1000
#define STORE_QUEUE_DIAGNOSTIC_MAX 255
/* store_queue_read() pieces of this size, at offsets that are multiples of
 * it, cost one stored chunk each (SQLite, Cassandra). */
#define STORE_QUEUE_READ_SIZE (128 * 1024)

enum store_queue_state { STORE_QUEUE_PENDING = 0, STORE_QUEUE_SENT, STORE_QUEUE_FAILED };

struct store_queue_rcpt {
	char address[STORE_ADDRESS_MAX + 1];
	enum store_queue_state state;
	/* The last reply or error for this recipient, "" none. Stored with
	 * control characters (CR, LF, TAB...) replaced by spaces. */
	char diagnostic[STORE_QUEUE_DIAGNOSTIC_MAX + 1];
};

struct store_queue_entry {
	struct uuid id;                       /* a TimeUUID minted when queued */
	char owner[STORE_NODE_ID_MAX + 1];    /* the node that accepted it */
	char sender[STORE_ADDRESS_MAX + 1];   /* "" = the null sender <> */
	int64_t queued_us, next_attempt_us;   /* µs since the epoch; queued_us = the id's time */
	unsigned int attempts;
	uint64_t size;                        /* octets of the stored message */
	unsigned int rcpt_count;
	struct store_queue_rcpt *rcpts;       /* malloc'ed, owned by the entry */
};

struct store_queue_put {
	/* Minted by store_queue_put_init; kept across retries: a retried put
	 * is idempotent (and never undoes an update or a delete made since). */
	struct uuid id;
	const char *owner, *sender;           /* sender NULL or "": the null sender */
	/* Addresses (no control characters, at most STORE_ADDRESS_MAX octets),
	 * 1 to STORE_QUEUE_RCPTS_MAX of them, each PENDING with no diagnostic. */
	const char *const *rcpts;
	unsigned int rcpt_count;
	/* The message, exactly as store_delivery has it: header (may be NULL/0)
	 * then the body in memory, or from body_fd with pread() when
	 * body_fd >= 0 (never closed, never moved, never held whole). */
	const char *header;
	size_t header_len;
	const char *body;
	size_t body_len;
	int body_fd;
	int64_t next_attempt_us;
};

/* Clears every field, mints id and sets body_fd = -1: call it first,
 * then fill in the fields (those left alone are NULL and 0). */
void store_queue_put_init(struct store_queue_put *q);
/* Durable on STORE_OK (SQLite: committed with fsync, as a delivery;
 * Cassandra: every write acknowledged at the write consistency, the body
 * chunks before the entry row). INVALID for a bad owner, sender or
 * recipient, no recipient or too many, an id that is no TimeUUID, or
 * inconsistent message fields. */
enum store_status store_queue_put(struct store *store, const struct store_queue_put *q);
/* The entries of owner (NULL: of every owner) with next_attempt_us <=
 * due_before_us (INT64_MAX: all), at most max, oldest next_attempt_us
 * first (ties by queue time). *entries_r is malloc'ed (NULL when
 * *count_r is 0): free it with store_queue_entries_free(). Cassandra reads
 * every partition of the owner (one per hour with entries), so a scan
 * costs in proportion to the queue, and an entry deleted meanwhile may be
 * left out (fewer than max). */
enum store_status store_queue_scan(struct store *store, const char *owner,
				   int64_t due_before_us, unsigned int max,
				   struct store_queue_entry **entries_r, unsigned int *count_r);
void store_queue_entries_free(struct store_queue_entry **entries, unsigned int count);
/* NOTFOUND when there is no such entry. Free with store_queue_entry_deinit(). */
enum store_status store_queue_get(struct store *store, const struct uuid *id,
				  struct store_queue_entry *entry_r);
void store_queue_entry_deinit(struct store_queue_entry *e);
/* Appends at most max octets of the stored message from offset (fewer only
 * at its end; none at offset == e->size) to out. NOTFOUND once the entry is
 * deleted; INVALID past the end; TOOBIG when out's cap cannot take the
 * piece (nothing appended). On any error out is left as it was. */
enum store_status store_queue_read(struct store *store, const struct store_queue_entry *e,
				   uint64_t offset, size_t max, struct buf *out);
/* Writes attempts, next_attempt_us and the recipients (states and
 * diagnostics, as e has them) of the entry named by e->id and e->owner.
 * NOTFOUND when the entry is gone (another node delivered and deleted it).
 * Cassandra reads the entry first at the read consistency (a plain read):
 * an update racing a delete leaves at most a few cells, which no scan
 * reports and a later scan removes. */
enum store_status store_queue_update(struct store *store, const struct store_queue_entry *e);
/* Removes the entry and its body, by id alone (the CLI and the admin API
 * have only the id). NOTFOUND when there is none. */
enum store_status store_queue_del(struct store *store, const struct uuid *id);
/* Sets next_attempt_us = now for every entry; *count_r = how many. */
enum store_status store_queue_flush(struct store *store, unsigned int *count_r);

/* Node liveness for takeover: a plain write of (node, now_us). nodes lists
 * the nodes of this store's datacenter (Cassandra: local_dc; SQLite, mem:
 * all) with their last heartbeat, in node order (*nodes_r malloc'ed, NULL
 * when none). */
struct store_queue_node {
	char id[STORE_NODE_ID_MAX + 1];
	int64_t heartbeat_us;
};
enum store_status store_queue_heartbeat(struct store *store, const char *node, int64_t now_us);
enum store_status store_queue_nodes(struct store *store, struct store_queue_node **nodes_r,
				    unsigned int *count_r);
/* Whether node is a valid node id (STORE_NODE_ID_MAX). */
bool store_node_id_valid(const char *node);

#endif
