/*
 * delivery: the one builder of store deliveries (see delivery.h for the
 * sequence, threads and ownership).
 *
 * Invariants:
 * - The store gets each distinct recipient once, in the order first seen;
 *   rcpts[i].slot names the store recipient whose result the i-th accepted
 *   recipient reports, so duplicates share a result by construction.
 * - The message id is minted once the data has ended (on the first
 *   delivery_id() or delivery_run(); a write after that is a caller bug)
 *   and is the one of every attempt: a retry after an uncertain write finds
 *   the first attempt's rows. Minting it at the end, not when DATA begins,
 *   keeps an id's time close to its first write however slowly the data
 *   came, which the listing order and the Cassandra store's range deletes
 *   (they spare only ids younger than a margin before login) rely on.
 * - The body is in exactly one place: in `body` while in memory; once
 *   spooled, in the file (`spooled` octets) followed by `body` (octets not
 *   yet written, at most SPOOL_BUFFER). `size` counts every octet the caller
 *   wrote, kept or not.
 * - A spool file never has a name after spool_open() returns, so nothing
 *   but an open descriptor holds its blocks: closing it (release_body) is
 *   the whole clean-up, on every path.
 * - Once too big or failed, nothing more is kept: memory and file are
 *   released at that moment, not at destroy.
 * - SMTP (quota_all_or_nothing) with local and remote recipients: the
 *   queue entry is put held (due only in QUEUE_HOLD_US), then released
 *   once the local delivery succeeded, or deleted when it did not, so the
 *   runner never sends a message whose client is told 4xx (and would send
 *   it again). A release that fails leaves the entry due at the end of the
 *   hold: later, never lost.
 */
#include "delivery.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "clock.h"
#include "dkim.h"
#include "log.h"
#include "mail-address.h"
#include "mail-trace.h"

#define SPOOL_DIR "spool"
#define SPOOL_PREFIX "tern-spool-"
#define SPOOL_BUFFER (64 * 1024)   /* writes to the spool file are this big */
#define HEADER_MAX (16 * 1024)
/* A queue entry put before the local delivery of the same message waits
 * this long unless released (made due) once the local recipients have it. */
#define QUEUE_HOLD_US (60LL * 1000 * 1000)

struct delivery_rcpt {
	char *address;
	unsigned int slot;   /* index into store_rcpts */
	bool duplicate;
};

struct delivery {
	struct delivery_settings set;
	char id[UUID_STR_LEN + 1];
	char *sender;

	struct delivery_rcpt *rcpts;
	unsigned int rcpt_count;
	struct store_rcpt *store_rcpts;   /* the distinct recipients */
	char **prefixes;                  /* their Return-Path: + Delivered-To: */
	unsigned int unique;

	struct store_delivery sd;
	struct buf header;
	struct buf body;
	int spool_fd;
	uint64_t spooled;
	uint64_t size;
	bool too_big;
	enum store_status failed;   /* STORE_OK, or why the body is lost */
	bool id_minted;
	bool ran;
	char error[256];

	/* the remote recipients: one queue entry */
	char **remotes;
	unsigned int remote_count;
	struct store_queue_put qp;
	struct buf queue_header;    /* DKIM-Signature: (when signed) + header */
	char queue_id[UUID_STR_LEN + 1];
	bool queue_minted, signed_;
	enum store_status queue_status;
};

struct delivery *delivery_create(const struct delivery_settings *set, const char *sender)
{
	struct delivery *d = xcalloc(1, sizeof(*d));
	d->set = *set;
	if (d->set.memory_max == 0)
		d->set.memory_max = DELIVERY_MEMORY_MAX;
	d->sender = xstrdup(sender);
	d->sd.body_fd = -1;
	buf_init(&d->header, HEADER_MAX);
	buf_init(&d->body, 0);
	d->spool_fd = -1;
	d->failed = STORE_OK;
	buf_init(&d->queue_header, 0);
	d->queue_status = STORE_OK;
	return d;
}

/* Drops the body, wherever it is; only its size is kept. */
static void release_body(struct delivery *d)
{
	if (d->spool_fd >= 0) {
		close(d->spool_fd);
		d->spool_fd = -1;
	}
	d->spooled = 0;
	buf_deinit(&d->body);
	buf_init(&d->body, 0);
}

void delivery_destroy(struct delivery **dp)
{
	struct delivery *d = *dp;
	if (d == NULL)
		return;
	*dp = NULL;
	release_body(d);
	buf_deinit(&d->body);
	buf_deinit(&d->header);
	for (unsigned int i = 0; i < d->rcpt_count; i++)
		free(d->rcpts[i].address);
	for (unsigned int i = 0; i < d->unique; i++)
		free(d->prefixes[i]);
	free(d->rcpts);
	free(d->store_rcpts);
	free(d->prefixes);
	for (unsigned int i = 0; i < d->remote_count; i++)
		free(d->remotes[i]);
	free(d->remotes);
	buf_deinit(&d->queue_header);
	free(d->sender);
	free(d);
}

void delivery_add_remote(struct delivery *d, const char *address)
{
	for (unsigned int i = 0; i < d->remote_count; i++)
		if (strcmp(d->remotes[i], address) == 0)
			return;
	d->remotes = xrealloc(d->remotes, (d->remote_count + 1) * sizeof(*d->remotes));
	d->remotes[d->remote_count++] = xstrdup(address);
}

unsigned int delivery_remote_count(const struct delivery *d)
{
	return d->remote_count;
}

enum store_status delivery_queue_status(const struct delivery *d)
{
	if (d->too_big)
		return STORE_TOOBIG;
	if (d->remote_count > 0 && !d->ran)
		return STORE_TEMPFAIL;
	return d->queue_status;
}

const char *delivery_queue_id(const struct delivery *d)
{
	return d->queue_minted ? d->queue_id : "";
}

bool delivery_signed(const struct delivery *d)
{
	return d->signed_;
}

unsigned int delivery_add_rcpt(struct delivery *d, const char *address)
{
	return delivery_add_rcpt_seen(d, address, NULL);
}

unsigned int delivery_add_rcpt_seen(struct delivery *d, const char *address,
				    const struct store_user_seen *seen)
{
	d->rcpts = xrealloc(d->rcpts, (d->rcpt_count + 1) * sizeof(*d->rcpts));
	struct delivery_rcpt *r = &d->rcpts[d->rcpt_count];
	r->address = xstrdup(address);
	r->duplicate = false;
	r->slot = d->unique;
	for (unsigned int i = 0; i < d->rcpt_count; i++) {
		if (strcmp(d->rcpts[i].address, address) == 0) {
			r->duplicate = true;
			r->slot = d->rcpts[i].slot;
			break;
		}
	}
	if (!r->duplicate) {
		struct buf prefix;
		buf_init(&prefix, 0);
		mail_trace_return_path(&prefix, d->sender);
		mail_trace_delivered_to(&prefix, address);
		d->prefixes = xrealloc(d->prefixes, (d->unique + 1) * sizeof(*d->prefixes));
		d->prefixes[d->unique] = buf_steal(&prefix);
		buf_deinit(&prefix);
		d->store_rcpts = xrealloc(d->store_rcpts, (d->unique + 1) * sizeof(*d->store_rcpts));
		struct store_rcpt *sr = &d->store_rcpts[d->unique];
		memset(sr, 0, sizeof(*sr));
		/* Both strings are on the heap: they stay put when the arrays
		 * holding their pointers grow. */
		sr->address = r->address;
		sr->prefix = d->prefixes[d->unique];
		sr->status = STORE_TEMPFAIL;
		if (seen != NULL)
			sr->seen = *seen;
		d->unique++;
	}
	return d->rcpt_count++;
}

static void mint_id(struct delivery *d)
{
	if (d->id_minted)
		return;
	store_delivery_init(&d->sd);
	uuid_format(&d->sd.message_id, d->id);
	d->id_minted = true;
}

const char *delivery_id(struct delivery *d)
{
	mint_id(d);
	return d->id;
}

const char *delivery_sole_rcpt(const struct delivery *d)
{
	return d->unique == 1 ? d->rcpts[0].address : NULL;
}

struct buf *delivery_header(struct delivery *d)
{
	return &d->header;
}

bool delivery_too_big(const struct delivery *d)
{
	return d->too_big;
}

uint64_t delivery_size(const struct delivery *d)
{
	return d->header.len + d->size;
}

/* Latches a failure of the spool: the body is lost, the delivery will
 * answer a temporary failure. Returns -1 for the caller's convenience. */
static int spool_failed(struct delivery *d, const char *what, int err)
{
	snprintf(d->error, sizeof(d->error), "%s: %s", what, strerror(err));
	d->failed = STORE_TEMPFAIL;
	release_body(d);
	return -1;
}

/* Makes data_dir/spool (and data_dir if missing), private to this user.
 * path_r receives the spool directory's path. */
static int spool_dir(const char *data_dir, char *path_r, size_t size, const char **what_r,
		     int *errno_r)
{
	int n = snprintf(path_r, size, "%s/" SPOOL_DIR, data_dir);
	if (n < 0 || (size_t)n >= size) {
		*what_r = "the spool directory's path is too long";
		*errno_r = ENAMETOOLONG;
		return -1;
	}
	if (mkdir(data_dir, 0750) < 0 && errno != EEXIST) {
		*what_r = "cannot create data_dir";
		*errno_r = errno;
		return -1;
	}
	if (mkdir(path_r, 0700) < 0 && errno != EEXIST) {
		*what_r = "cannot create the spool directory";
		*errno_r = errno;
		return -1;
	}
	struct stat st;
	if (lstat(path_r, &st) < 0) {
		*what_r = "cannot examine the spool directory";
		*errno_r = errno;
		return -1;
	}
	if (!S_ISDIR(st.st_mode) || st.st_uid != geteuid()) {
		*what_r = "the spool path is not a directory owned by this user";
		*errno_r = EPERM;
		return -1;
	}
	if ((st.st_mode & 077) != 0 && chmod(path_r, 0700) < 0) {
		*what_r = "cannot make the spool directory private";
		*errno_r = errno;
		return -1;
	}
	return 0;
}

/* An unnamed read-write file in the spool directory, or -1. */
static int spool_open(struct delivery *d)
{
	char dir[PATH_MAX];
	const char *what;
	int err;
	if (spool_dir(d->set.data_dir, dir, sizeof(dir), &what, &err) < 0)
		return spool_failed(d, what, err);
#if defined(O_TMPFILE) && !defined(DELIVERY_NO_O_TMPFILE)
	/* Never has a name: nothing to clean up after a crash. */
	d->spool_fd = open(dir, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
	if (d->spool_fd >= 0)
		return 0;
	/* EOPNOTSUPP, EISDIR (an older kernel), ...: name it and unlink it. */
#endif
	char path[PATH_MAX];
	int n = snprintf(path, sizeof(path), "%s/" SPOOL_PREFIX "XXXXXX", dir);
	if (n < 0 || (size_t)n >= sizeof(path))
		return spool_failed(d, "the spool file's path is too long", ENAMETOOLONG);
	d->spool_fd = mkostemp(path, O_CLOEXEC);
	if (d->spool_fd < 0)
		return spool_failed(d, "cannot create a spool file", errno);
	/* ENOENT: a sweep got there first, which is just as good. */
	if (unlink(path) < 0 && errno != ENOENT)
		return spool_failed(d, "cannot unlink the new spool file", errno);
	return 0;
}

static int spool_write(struct delivery *d, const char *data, size_t len)
{
	while (len > 0) {
		ssize_t n = write(d->spool_fd, data, len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return spool_failed(d, "cannot write the spool file", n < 0 ? errno : EIO);
		data += n;
		len -= (size_t)n;
		d->spooled += (uint64_t)n;
	}
	return 0;
}

static int spool_flush(struct delivery *d)
{
	if (d->body.len == 0)
		return 0;
	if (spool_write(d, d->body.data, d->body.len) < 0)
		return -1;
	buf_reset(&d->body);
	return 0;
}

int delivery_write(struct delivery *d, const void *data, size_t len, const char **error_r)
{
	if (d->id_minted)
		panic("delivery: body written after the message id was minted");
	d->size += len;
	if (!d->too_big && d->size > d->set.max_message_size) {
		d->too_big = true;
		release_body(d);
		snprintf(d->error, sizeof(d->error),
			 "the message is larger than max_message_size (%llu octets)",
			 (unsigned long long)d->set.max_message_size);
	}
	if (d->too_big || d->failed != STORE_OK) {
		*error_r = d->error;
		return -1;
	}
	if (d->spool_fd < 0) {
		/* Strictly under memory_max, so the buffer's doubling stops at it. */
		if (d->body.len + len < d->set.memory_max) {
			buf_append(&d->body, data, len);
			return 0;
		}
		/* Crossing the threshold: the whole body moves to the file. */
		if (spool_open(d) < 0 || spool_flush(d) < 0) {
			*error_r = d->error;
			return -1;
		}
		buf_deinit(&d->body);
		buf_init(&d->body, 0);
	}
	/* Spooled: small pieces are gathered into writes of SPOOL_BUFFER. */
	if (d->body.len + len > SPOOL_BUFFER) {
		if (spool_flush(d) < 0) {
			*error_r = d->error;
			return -1;
		}
		if (len >= SPOOL_BUFFER) {
			if (spool_write(d, data, len) < 0) {
				*error_r = d->error;
				return -1;
			}
			return 0;
		}
	}
	buf_append(&d->body, data, len);
	return 0;
}

/* Sets every distinct recipient's result to st. */
static void set_all(struct delivery *d, enum store_status st)
{
	for (unsigned int i = 0; i < d->unique; i++)
		d->store_rcpts[i].status = st;
}

static bool any_temporary(const struct delivery *d, enum store_status st)
{
	if (store_status_is_temporary(st))
		return true;
	for (unsigned int i = 0; i < d->unique; i++)
		if (store_status_is_temporary(d->store_rcpts[i].status))
			return true;
	return false;
}

/* Reads up to size octets of the body from its start (memory or spool). */
static size_t body_head(const struct delivery *d, char *out, size_t size)
{
	if (d->spool_fd < 0) {
		size_t n = d->body.len < size ? d->body.len : size;
		memcpy(out, d->body.data, n);
		return n;
	}
	ssize_t n = pread(d->spool_fd, out, size, 0);
	return n > 0 ? (size_t)n : 0;
}

/* Feeds the body, wherever it is, to the signer. -1 on a read error. */
static int sign_body(const struct delivery *d, struct dkim_sign *sign)
{
	if (d->spool_fd < 0) {
		dkim_sign_update(sign, d->body.data, d->body.len);
		return 0;
	}
	char chunk[SPOOL_BUFFER];
	for (uint64_t off = 0; off < d->size;) {
		size_t want = d->size - off < sizeof(chunk) ? (size_t)(d->size - off) : sizeof(chunk);
		ssize_t n = pread(d->spool_fd, chunk, want, (off_t)off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return -1;
		dkim_sign_update(sign, chunk, (size_t)n);
		off += (uint64_t)n;
	}
	return 0;
}

/* The queued copy's header: a DKIM-Signature: when the key covers the
 * From: domain, then the trace fields. A message that cannot be signed
 * (no From:, a header over the signer's cap, a read error) is queued
 * unsigned and the log says why: losing the mail would be worse. */
static void queue_header(struct delivery *d)
{
	buf_reset(&d->queue_header);
	const struct dkim_key *key = d->set.dkim;
	if (key != NULL) {
		static _Thread_local char head[64 * 1024];
		char domain[256];
		size_t n = body_head(d, head, sizeof(head));
		if (mail_header_from_domain(head, n, domain, sizeof(domain)) == 0 &&
		    dkim_key_covers(key, domain)) {
			struct dkim_sign *sign = dkim_sign_begin(key, clock_wall_us() / 1000000);
			dkim_sign_update(sign, d->header.data, d->header.len);
			const char *error = "cannot read the spool file";
			if (sign_body(d, sign) < 0)
				dkim_sign_abort(&sign);
			if (sign == NULL || dkim_sign_end(&sign, &d->queue_header, &error) < 0) {
				buf_reset(&d->queue_header);
				log_warn("queued unsigned id=%s dkim_error=%s", d->id, error);
			} else {
				d->signed_ = true;
			}
		}
	}
	buf_append(&d->queue_header, d->header.data, d->header.len);
}

/* Puts the message in the outbound queue for the remote recipients; one
 * retry with the same entry id, which makes a second put idempotent. held:
 * due only at the end of QUEUE_HOLD_US (see queue_settle()). */
static enum store_status queue_run(struct delivery *d, struct store *store, bool held)
{
	if (d->set.queue_owner == NULL)
		return STORE_INVALID;
	if (!d->queue_minted) {
		store_queue_put_init(&d->qp);
		uuid_format(&d->qp.id, d->queue_id);
		d->queue_minted = true;
		queue_header(d);
	}
	struct store_queue_put *q = &d->qp;
	q->owner = d->set.queue_owner;
	q->sender = d->sender;
	q->rcpts = (const char *const *)d->remotes;
	q->rcpt_count = d->remote_count;
	q->header = d->queue_header.data;
	q->header_len = d->queue_header.len;
	q->body = d->sd.body;
	q->body_len = d->sd.body_len;
	q->body_fd = d->sd.body_fd;
	q->next_attempt_us = clock_wall_us() + (held ? QUEUE_HOLD_US : 0);
	enum store_status st = store_queue_put(store, q);
	if (store_status_is_temporary(st))
		st = store_queue_put(store, q);
	return st;
}

/* After the local delivery of a message whose queue entry was put held:
 * releases the entry (due now) when the reply will be 2xx, else deletes it
 * and returns what the remote recipients' status is then. */
static enum store_status queue_settle(struct delivery *d, struct store *store, bool reply_ok)
{
	if (!reply_ok) {
		enum store_status st = store_queue_del(store, &d->qp.id);
		if (store_status_is_temporary(st))
			st = store_queue_del(store, &d->qp.id);
		if (st != STORE_OK && st != STORE_NOTFOUND)
			log_error("queue entry of a refused message not removed id=%s queue=%s error=%s "
				  "(it goes out in %llds)", d->id, d->queue_id, store_status_name(st),
				  (long long)(QUEUE_HOLD_US / 1000000));
		return STORE_TEMPFAIL;
	}
	struct store_queue_rcpt *rcpts = xcalloc(d->remote_count, sizeof(*rcpts));
	for (unsigned int i = 0; i < d->remote_count; i++)
		str_copy(rcpts[i].address, d->remotes[i], sizeof(rcpts[i].address));
	struct store_queue_entry e;
	memset(&e, 0, sizeof(e));
	e.id = d->qp.id;
	str_copy(e.owner, d->set.queue_owner, sizeof(e.owner));
	str_copy(e.sender, d->sender, sizeof(e.sender));
	e.next_attempt_us = clock_wall_us();
	e.rcpt_count = d->remote_count;
	e.rcpts = rcpts;
	enum store_status st = store_queue_update(store, &e);
	if (store_status_is_temporary(st))
		st = store_queue_update(store, &e);
	free(rcpts);
	if (st != STORE_OK)
		log_warn("queue entry not released id=%s queue=%s error=%s (it goes out in %llds)", d->id,
			 d->queue_id, store_status_name(st), (long long)(QUEUE_HOLD_US / 1000000));
	/* Durable either way: held entries go out at the end of the hold. */
	return STORE_OK;
}

enum store_status delivery_run(struct delivery *d, struct store *store)
{
	mint_id(d);
	d->ran = true;
	enum store_status st = STORE_OK;
	if (d->unique == 0 && d->remote_count == 0)
		st = STORE_INVALID;
	else if (d->too_big)
		st = STORE_TOOBIG;
	else if (d->failed != STORE_OK)
		st = d->failed;
	else if (d->spool_fd >= 0 && spool_flush(d) < 0)
		st = d->failed;
	if (st != STORE_OK) {
		set_all(d, st);
		d->queue_status = st;
		return st;
	}
	d->sd.header = d->header.data;
	d->sd.header_len = d->header.len;
	if (d->spool_fd >= 0) {
		d->sd.body = NULL;
		d->sd.body_fd = d->spool_fd;
	} else {
		d->sd.body = d->body.data;
		d->sd.body_fd = -1;
	}
	d->sd.body_len = (size_t)d->size;
	d->sd.rcpts = d->store_rcpts;
	d->sd.rcpt_count = d->unique;
	d->sd.quota_all_or_nothing = d->set.quota_all_or_nothing;
	bool held = d->remote_count > 0 && d->unique > 0 && d->set.quota_all_or_nothing;
	if (d->remote_count > 0) {
		d->queue_status = queue_run(d, store, held);
		if (d->queue_status != STORE_OK && d->set.quota_all_or_nothing) {
			set_all(d, d->queue_status);
			return d->queue_status;
		}
	}
	if (d->unique == 0)
		return d->queue_status;
	st = store_deliver(store, &d->sd);
	/* One retry with the same message id: idempotent if the first attempt
	 * did commit, and it reaches the recipients that failed. */
	if (any_temporary(d, st))
		st = store_deliver(store, &d->sd);
	if (st != STORE_OK)
		set_all(d, st);
	if (held && d->queue_status == STORE_OK)
		d->queue_status = queue_settle(d, store, delivery_status(d) == STORE_OK);
	return st;
}

enum store_status delivery_rcpt_status(const struct delivery *d, unsigned int i)
{
	if (d->too_big)
		return STORE_TOOBIG;
	if (!d->ran || i >= d->rcpt_count)
		return STORE_TEMPFAIL;
	return d->store_rcpts[d->rcpts[i].slot].status;
}

bool delivery_rcpt_is_duplicate(const struct delivery *d, unsigned int i)
{
	return i < d->rcpt_count && d->rcpts[i].duplicate;
}

enum store_status delivery_status(const struct delivery *d)
{
	if (d->too_big)
		return STORE_TOOBIG;
	if (!d->ran || (d->unique == 0 && d->remote_count == 0))
		return STORE_TEMPFAIL;
	if (d->remote_count > 0 && d->queue_status != STORE_OK)
		return store_status_is_temporary(d->queue_status) ? STORE_TEMPFAIL : d->queue_status;
	if (d->unique == 0)
		return STORE_OK;
	unsigned int ok = 0, failed = 0;
	enum store_status first_failure = STORE_OK;
	bool same = true;
	for (unsigned int i = 0; i < d->unique; i++) {
		enum store_status st = d->store_rcpts[i].status;
		if (st == STORE_OK) {
			ok++;
		} else if (st != STORE_NOTFOUND) {
			if (failed++ == 0)
				first_failure = st;
			else if (st != first_failure)
				same = false;
		}
	}
	/* A queued copy counts as delivered: the remote recipients have it. */
	ok += d->remote_count > 0;
	if (failed > 0)
		return ok == 0 && same ? first_failure : STORE_TEMPFAIL;
	return ok > 0 ? STORE_OK : STORE_NOTFOUND;
}

int delivery_spool_sweep(const char *data_dir, unsigned int *removed_r, const char **error_r)
{
	static _Thread_local char errbuf[PATH_MAX + 512];
	char path[PATH_MAX];
	*removed_r = 0;
	int n = snprintf(path, sizeof(path), "%s/" SPOOL_DIR, data_dir);
	if (n < 0 || (size_t)n >= sizeof(path)) {
		*error_r = "the spool directory's path is too long";
		return -1;
	}
	DIR *dir = opendir(path);
	if (dir == NULL) {
		if (errno == ENOENT)
			return 0;
		snprintf(errbuf, sizeof(errbuf), "cannot open %s: %s", path, strerror(errno));
		*error_r = errbuf;
		return -1;
	}
	int ret = 0;
	struct dirent *e;
	while ((e = readdir(dir)) != NULL) {
		struct stat st;
		if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
			continue;
		if (fstatat(dirfd(dir), e->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0 ||
		    !S_ISREG(st.st_mode))
			continue;
		if (unlinkat(dirfd(dir), e->d_name, 0) == 0) {
			(*removed_r)++;
		} else if (errno != ENOENT) {
			snprintf(errbuf, sizeof(errbuf), "cannot remove %s/%.255s: %s", path, e->d_name,
				 strerror(errno));
			*error_r = errbuf;
			ret = -1;
		}
	}
	closedir(dir);
	return ret;
}
