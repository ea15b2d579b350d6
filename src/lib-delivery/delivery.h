#ifndef TERN_DELIVERY_H
#define TERN_DELIVERY_H
/*
 * delivery: one message on its way into the store, built the same way for
 * SMTP, LMTP and `tern deliver`: the envelope (sender, recipients with
 * duplicates folded), the trace fields, the body, the one store call with
 * its retry policy, and the results each protocol answers with.
 *
 * Sequence:
 *   d = delivery_create(&set, sender);
 *   delivery_add_rcpt(d, address);          for each accepted recipient
 *   delivery_write(d, data, len, &error);   the decoded body, in pieces
 *   (the data has ended)
 *   mail_trace_received(delivery_header(d), ..., delivery_id(d),
 *                       delivery_sole_rcpt(d), ...);
 *   delivery_run(d, store);                 blocking: on a worker thread
 *   delivery_rcpt_status(d, i) (LMTP) or delivery_status(d) (SMTP)
 *   delivery_destroy(&d);                   on every path, run or not
 *
 * Threads and ownership: a delivery has one owner at a time and no lock.
 * The owner (the event loop, or the CLI's main thread) makes every call but
 * delivery_run(), which it may hand to one worker thread; it must not touch
 * the delivery until that call has returned (the worker pool's completion
 * is the hand-back). Nothing here calls back. delivery_write() may write to
 * the spool file: a write into the page cache, never an fsync (durability
 * is the store's commit, not the spool's).
 *
 * The body: the caller writes decoded octets (CRLF line endings). While
 * under memory_max (DELIVERY_MEMORY_MAX) they stay in memory; then the body
 * moves to an unnamed file under data_dir/spool/ (a directory of mode 0700,
 * created on first use): O_TMPFILE where the kernel and file system have it,
 * else a file unlinked as soon as it is created. The store reads it back in
 * pieces, so a message costs about memory_max of memory whatever its size,
 * and a crash leaves no file behind (delivery_spool_sweep() removes what the
 * instant between create and unlink could leave). The header buffer, which
 * the caller fills with the Received: field common to all recipients, is
 * stored in front of the body without copying the body.
 *
 * The size cap: past max_message_size octets of body, the body is released
 * at once (memory and spool file), further octets are only counted, and the
 * delivery reports STORE_TOOBIG. Every resource is released by
 * delivery_destroy() whatever happened before: success, failure, too big,
 * or a client that went away (destroy without run).
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "store.h"

#define DELIVERY_MEMORY_MAX (1024 * 1024)

struct dkim_key;

struct delivery_settings {
	const char *data_dir;       /* the spool is data_dir/spool; must outlive the delivery */
	uint64_t max_message_size;  /* body octets (decoded, without the header buffer) */
	size_t memory_max;          /* 0: DELIVERY_MEMORY_MAX */
	/* One recipient over quota means nobody gets the message (SMTP, which
	 * has one reply after the data); else each recipient on its own. */
	bool quota_all_or_nothing;
	/* Remote recipients (delivery_add_remote) go to the outbound queue
	 * under this node's id ([queue] node_id); required when there are any. */
	const char *queue_owner;
	/* Signs what goes to the queue when the From: domain is the key's (or
	 * a subdomain of it); NULL: nothing is signed. Must outlive the delivery. */
	const struct dkim_key *dkim;
};

struct delivery;

/* sender: the reverse path, "" for the null path <>. set is copied. */
struct delivery *delivery_create(const struct delivery_settings *set, const char *sender);
/* Releases everything (closing the spool file) and sets *d to NULL. */
void delivery_destroy(struct delivery **d);

/* Adds the next accepted recipient (a normalised address) and returns its
 * index i (0, 1, ...), by which its result is asked. A recipient equal to
 * an earlier one is stored once and shares that one's result. The caller
 * caps how many (e.g. [smtp] max_recipients). */
unsigned int delivery_add_rcpt(struct delivery *d, const char *address);
/* The same for a recipient store_resolve() has just read: seen (its
 * resolved.seen[i], copied) goes to the store with it, which may then
 * skip its own read of the user (store_rcpt.seen). A duplicate keeps the
 * first one's. */
unsigned int delivery_add_rcpt_seen(struct delivery *d, const char *address,
				    const struct store_user_seen *seen);

/* Adds a recipient outside the local domains (a normalised address; a
 * repeat is kept once): the message goes to the outbound queue for it, as
 * one queue entry for all of them, once the local recipients have it. The
 * caller decides who may relay (an authenticated client, or an alias's
 * remote target) and caps the count with the local ones. */
void delivery_add_remote(struct delivery *d, const char *address);
unsigned int delivery_remote_count(const struct delivery *d);
/* After delivery_run(): whether the message is durably queued for every
 * remote recipient (STORE_OK), or why not; STORE_OK when there were none. */
enum store_status delivery_queue_status(const struct delivery *d);
/* After delivery_run(): the queue entry's id (text), "" when none. */
const char *delivery_queue_id(const struct delivery *d);
/* After delivery_run(): whether the queued copy carries a DKIM signature. */
bool delivery_signed(const struct delivery *d);

/* The message id (a TimeUUID's canonical text), kept across retries: for the
 * Received: field, the replies and the logs. The first call mints it, so
 * make it once the data has ended, never at DATA: the store orders messages
 * by id and the Cassandra store's range deletes spare only ids younger than
 * a margin, which a slow upload would outlive. Writing more body after it
 * is a bug (panic). delivery_run() mints it too when nobody asked. */
const char *delivery_id(struct delivery *d);
/* The address when there is exactly one distinct recipient, else NULL (for
 * the "for" clause of Received:). */
const char *delivery_sole_rcpt(const struct delivery *d);
/* The header stored in front of the body, for every recipient (after its
 * own Return-Path: and Delivered-To:). Owned by the delivery; capped at
 * 16 KiB (an append past it fails). */
struct buf *delivery_header(struct delivery *d);

/* Appends body octets. 0, or -1 with *error_r (owned by the delivery) when
 * the body can no longer be delivered: over max_message_size (see
 * delivery_too_big()) or the spool file could not be written (the delivery
 * will answer a temporary failure). After -1 the caller may go on writing
 * (the octets are counted) or stop; either way it calls delivery_run() or
 * delivery_destroy() next. */
int delivery_write(struct delivery *d, const void *data, size_t len, const char **error_r);
bool delivery_too_big(const struct delivery *d);
/* Octets the store keeps in front of each recipient's prefix: the header
 * plus every body octet written. */
uint64_t delivery_size(const struct delivery *d);

/* Queues the message for the remote recipients (DKIM-signed when the key
 * covers its From: domain), then stores it for every distinct local
 * recipient, blocking (a worker thread's job). A temporary failure of the
 * call or of any recipient is retried once with the same ids, so a first
 * attempt that did commit leaves one copy with its UIDL (and one queue
 * entry). When the queue cannot take it and quota_all_or_nothing is set
 * (SMTP's one reply), nothing is stored locally either: the client's retry
 * then brings it once to everybody. Returns the call's status; the results
 * are below. Call at most once. */
enum store_status delivery_run(struct delivery *d, struct store *store);

/* After delivery_run(): the result for the i-th recipient added, a
 * duplicate's being its first's (LMTP's one reply per accepted RCPT). */
enum store_status delivery_rcpt_status(const struct delivery *d, unsigned int i);
/* true when the i-th recipient repeats an earlier one. */
bool delivery_rcpt_is_duplicate(const struct delivery *d, unsigned int i);
/* After delivery_run(): SMTP's one result. STORE_OK when every recipient has
 * the message durably (the remote ones: queued), except local ones that no
 * longer exist (STORE_NOTFOUND, when that is all of them). When a recipient
 * failed otherwise: that status if nobody got the message and every failure
 * is the same, else STORE_TEMPFAIL. STORE_TOOBIG when the body was over the
 * cap. */
enum store_status delivery_status(const struct delivery *d);

/* Removes every regular file left in data_dir/spool/ (only a crash between
 * creating and unlinking a spool file can leave one). For the daemon to call
 * once at start, after the store opens. The directory may be missing. 0 with
 * *removed_r set, or -1 with *error_r (a static string of this thread). */
int delivery_spool_sweep(const char *data_dir, unsigned int *removed_r, const char **error_r);

#endif
