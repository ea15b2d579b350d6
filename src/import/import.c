/*
 * import: tern import (Maildir, mbox → the store, keeping order and UIDLs)
 * and tern export (the store → a Maildir with a dovecot-uidlist).
 *
 * An import runs in three phases, so that a source that would break a
 * UIDL rule writes nothing:
 * 1. plan: list the source's messages in POP3 order with their legacy
 *    UIDL, original time, identity and CRLF size (each message is read
 *    once for that);
 * 2. check: derive the ids, check every UIDL (valid, unique in the source)
 *    and compare with the mailbox's listing: a message already there is
 *    skipped, a UIDL another message of the mailbox has is a conflict;
 * 3. write: deliver the rest one by one through store_deliver() (each
 *    message read again), retrying a temporary failure with the same id.
 *
 * Ids (see import.h): ticks = the original time, at least the previous
 * message's + 1 tick; clock sequence and node from a name-based hash of
 * (mailbox address, identity), the node with the multicast bit set as
 * tern's own TimeUUIDs have. Identity: the Maildir base file name, or for
 * mbox "mbox:", a hash of the message as POP3 shows it (CRLF, without the
 * mbox state fields) and its ordinal among identical messages (so removing
 * other messages, or the old server rewriting its Status: fields, does not
 * change it).
 */
#include "import.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "import-parse.h"
#include "uuid.h"

#define GREGORIAN_OFFSET_TICKS 0x01B21DD213814000ULL
#define IMPORT_DELIVER_ATTEMPTS 5
#define SIDE_FILE_MAX (256 * 1024 * 1024)

struct import_msg {
	char *file;               /* Maildir: its path; mbox: NULL */
	char *identity;
	size_t mbox_off, mbox_len;
	unsigned int ordinal;     /* mbox: among identical messages */
	int64_t sec, usec;
	/* Sort keys. */
	bool in_list, has_order;
	uint32_t order, uid;
	char uidl[STORE_UIDL_MAX + 2]; /* legacy; "" for none */
	bool uidl_too_long;
	uint64_t size;
	struct uuid id;
	char id_text[UUID_STR_LEN + 1];
	bool skip;
};

struct import_ctx {
	struct store *store;
	const char *address, *path;
	enum import_format format;
	struct import_msg *msgs;
	size_t count, alloc;
	char *mbox;               /* the mbox file, whole */
	size_t mbox_len;
	int64_t mbox_mtime;
	struct buf scratch;
};

static char *errorf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static char *errorf(const char *fmt, ...)
{
	struct buf b;
	buf_init(&b, 0);
	va_list ap;
	va_start(ap, fmt);
	buf_vprintf(&b, fmt, ap);
	va_end(ap);
	char *text = buf_steal(&b);
	buf_deinit(&b);
	return text;
}

int import_format_parse(const char *name, enum import_format *f_r)
{
	if (strcmp(name, "maildir") == 0)
		*f_r = IMPORT_FORMAT_MAILDIR;
	else if (strcmp(name, "mbox") == 0)
		*f_r = IMPORT_FORMAT_MBOX;
	else
		return -1;
	return 0;
}

static const char *const uidl_names[] = {
	[IMPORT_UIDL_AUTO] = "auto", [IMPORT_UIDL_DOVECOT] = "dovecot",
	[IMPORT_UIDL_COURIER] = "courier", [IMPORT_UIDL_XUIDL] = "x-uidl",
	[IMPORT_UIDL_NONE] = "none",
};

int import_uidl_parse(const char *name, enum import_uidl *u_r)
{
	for (size_t i = 0; i < sizeof(uidl_names) / sizeof(uidl_names[0]); i++) {
		if (strcmp(name, uidl_names[i]) == 0) {
			*u_r = (enum import_uidl)i;
			return 0;
		}
	}
	return -1;
}

const char *import_uidl_name(enum import_uidl u)
{
	return uidl_names[u];
}

/* Reads a whole file into out (appended). 0, or -1 with errno set. */
static int read_file(const char *path, size_t cap, struct buf *out, int64_t *mtime_r)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	struct stat st;
	int e = 0;
	if (fstat(fd, &st) < 0)
		e = errno;
	else if (!S_ISREG(st.st_mode))
		e = EINVAL;
	else if (cap > 0 && (size_t)st.st_size > cap)
		e = EFBIG;
	if (e != 0) {
		close(fd);
		errno = e;
		return -1;
	}
	if (mtime_r != NULL)
		*mtime_r = (int64_t)st.st_mtime;
	buf_reserve(out, (size_t)st.st_size);
	for (;;) {
		if (buf_reserve(out, 65536) < 0) {
			close(fd);
			errno = EFBIG;
			return -1;
		}
		ssize_t n = read(fd, out->data + out->len, out->size - out->len - 1);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			e = errno;
			close(fd);
			errno = e;
			return -1;
		}
		if (n == 0)
			break;
		out->len += (size_t)n;
		out->data[out->len] = '\0';
	}
	close(fd);
	return 0;
}

static struct import_msg *add_msg(struct import_ctx *c)
{
	if (c->count == c->alloc) {
		c->alloc = c->alloc ? c->alloc * 2 : 64;
		c->msgs = xrealloc(c->msgs, c->alloc * sizeof(*c->msgs));
	}
	struct import_msg *m = &c->msgs[c->count++];
	memset(m, 0, sizeof(*m));
	return m;
}

static void free_msgs(struct import_ctx *c)
{
	for (size_t i = 0; i < c->count; i++) {
		free(c->msgs[i].file);
		free(c->msgs[i].identity);
	}
	free(c->msgs);
	c->msgs = NULL;
	c->count = c->alloc = 0;
}

/* The message's octets as they are in the source, into c->scratch. */
static int load_raw(struct import_ctx *c, const struct import_msg *m, int64_t *mtime_r,
		    char **error_r)
{
	buf_reset(&c->scratch);
	if (m->file == NULL) {
		buf_append(&c->scratch, c->mbox + m->mbox_off, m->mbox_len);
		if (mtime_r != NULL)
			*mtime_r = c->mbox_mtime;
		return 0;
	}
	if (read_file(m->file, 0, &c->scratch, mtime_r) < 0) {
		*error_r = errorf("cannot read %s: %s", m->file, strerror(errno));
		return -1;
	}
	return 0;
}

/* ---- Maildir ---- */

static int scan_subdir(struct import_ctx *c, const char *sub, bool *found_r, char **error_r)
{
	struct buf dir;
	buf_init(&dir, 0);
	buf_printf(&dir, "%s/%s", c->path, sub);
	DIR *d = opendir(dir.data);
	if (d == NULL) {
		int e = errno;
		buf_deinit(&dir);
		if (e == ENOENT)
			return 0;
		*error_r = errorf("cannot read %s/%s: %s", c->path, sub, strerror(e));
		return -1;
	}
	*found_r = true;
	struct dirent *de;
	while ((de = readdir(d)) != NULL) {
		if (de->d_name[0] == '.')
			continue;
		struct import_msg *m = add_msg(c);
		struct buf p;
		buf_init(&p, 0);
		buf_printf(&p, "%s/%s", dir.data, de->d_name);
		m->file = buf_steal(&p);
		buf_deinit(&p);
		m->identity = xstrndup(de->d_name, import_maildir_base_len(de->d_name));
	}
	closedir(d);
	buf_deinit(&dir);
	return 0;
}

static const char *msg_name(const struct import_msg *m)
{
	const char *slash = strrchr(m->file, '/');
	return slash != NULL ? slash + 1 : m->file;
}

/* Courier's order (and the default for Maildirs): the leading time, then
 * the base names byte by byte. */
static int cmp_name_order(const void *a, const void *b)
{
	const struct import_msg *x = a, *y = b;
	long long tx = atoll(x->identity), ty = atoll(y->identity);
	if (tx != ty)
		return tx < ty ? -1 : 1;
	return strcmp(x->identity, y->identity);
}

/* Dovecot's POP3 order: messages with an O field first, by it; then by UID. */
static int cmp_dovecot_order(const void *a, const void *b)
{
	const struct import_msg *x = a, *y = b;
	if (x->has_order != y->has_order)
		return x->has_order ? -1 : 1;
	if (x->has_order && x->order != y->order)
		return x->order < y->order ? -1 : 1;
	if (x->uid != y->uid)
		return x->uid < y->uid ? -1 : 1;
	return cmp_name_order(a, b);
}

static int cmp_identity(const void *a, const void *b)
{
	return strcmp((*(const struct import_msg *const *)a)->identity,
		      (*(const struct import_msg *const *)b)->identity);
}

/* An index of the messages by identity (base name), for the side files. */
static struct import_msg **index_by_identity(struct import_ctx *c)
{
	struct import_msg **ix = xcalloc(c->count ? c->count : 1, sizeof(*ix));
	for (size_t i = 0; i < c->count; i++)
		ix[i] = &c->msgs[i];
	qsort(ix, c->count, sizeof(*ix), cmp_identity);
	return ix;
}

static struct import_msg *find_identity(struct import_ctx *c, struct import_msg **ix,
					const char *name)
{
	struct import_msg key = { .identity = (char *)name };
	struct import_msg *kp = &key;
	struct import_msg **r = bsearch(&kp, ix, c->count, sizeof(*ix), cmp_identity);
	return r != NULL ? *r : NULL;
}

static void set_uidl(struct import_msg *m, const char *uidl)
{
	if (strlen(uidl) > STORE_UIDL_MAX)
		m->uidl_too_long = true;
	str_copy(m->uidl, uidl, sizeof(m->uidl));
}

/* The next line of text at *pos (without its line end); false at the end. */
static bool next_line(const char *text, size_t len, size_t *pos, const char **line_r,
		      size_t *len_r)
{
	if (*pos >= len)
		return false;
	const char *nl = memchr(text + *pos, '\n', len - *pos);
	size_t e = nl != NULL ? (size_t)(nl - text) : len;
	*line_r = text + *pos;
	*len_r = e - *pos;
	if (*len_r > 0 && (*line_r)[*len_r - 1] == '\r')
		(*len_r)--;
	*pos = e + 1;
	return true;
}

/* A side file of a Maildir (dovecot-uidlist, courierpop3dsizelist): its
 * first line is a header, each other line names one message. */
struct side_format {
	const char *file, *header_what;
	int (*header)(const char *line, size_t len, void *header);
	/* Applies one record line to the message it names (looked up in ix;
	 * a file that is gone since is no error). 0, or -1 when malformed. */
	int (*record)(struct import_ctx *c, struct import_msg **ix, const void *header,
		      const char *line, size_t len);
};

static int read_side(struct import_ctx *c, const struct side_format *fmt, void *header,
		     char **error_r)
{
	struct buf f, path;
	buf_init(&f, SIDE_FILE_MAX);
	buf_init(&path, 0);
	buf_printf(&path, "%s/%s", c->path, fmt->file);
	int ret = 0;
	size_t pos = 0, llen;
	const char *line;
	if (read_file(path.data, SIDE_FILE_MAX, &f, NULL) < 0) {
		*error_r = errorf("cannot read %s: %s", path.data, strerror(errno));
		ret = -1;
	} else if (!next_line(f.data, f.len, &pos, &line, &llen) ||
		   fmt->header(line, llen, header) < 0) {
		*error_r = errorf("%s: not a %s header", path.data, fmt->header_what);
		ret = -1;
	}
	struct import_msg **ix = ret == 0 ? index_by_identity(c) : NULL;
	for (unsigned int lineno = 2; ret == 0 && next_line(f.data, f.len, &pos, &line, &llen);
	     lineno++) {
		if (llen > 0 && fmt->record(c, ix, header, line, llen) < 0) {
			*error_r = errorf("%s:%u: malformed line", path.data, lineno);
			ret = -1;
		}
	}
	free(ix);
	buf_deinit(&f);
	buf_deinit(&path);
	return ret;
}

static int uidlist_header(const char *line, size_t len, void *h)
{
	return import_uidlist_parse_header(line, len, h);
}

static int uidlist_record(struct import_ctx *c, struct import_msg **ix, const void *header,
			  const char *line, size_t len)
{
	const struct import_uidlist_header *h = header;
	struct import_uidlist_rec r;
	if (import_uidlist_parse_line(h->version, line, len, &r) < 0)
		return -1;
	struct import_msg *m = find_identity(c, ix, r.name);
	if (m == NULL)
		return 0;
	m->in_list = true;
	m->uid = r.uid;
	m->has_order = r.has_order;
	m->order = r.order;
	if (r.has_uidl && r.uidl[0] != '\0') {
		set_uidl(m, r.uidl);
	} else if (r.has_uidl) {
		set_uidl(m, m->identity); /* Dovecot: an empty P means the base name */
	} else {
		char uidl[IMPORT_DOVECOT_UIDL_LEN + 1];
		import_dovecot_uidl(r.uid, h->uidvalidity, uidl);
		set_uidl(m, uidl);
	}
	return 0;
}

static const struct side_format dovecot_uidlist = {
	"dovecot-uidlist", "dovecot-uidlist (version 1 or 3)", uidlist_header, uidlist_record,
};

static int read_dovecot_uidlist(struct import_ctx *c, char **error_r)
{
	struct import_uidlist_header h;
	if (read_side(c, &dovecot_uidlist, &h, error_r) < 0)
		return -1;
	/* Files Dovecot has not seen yet: the UIDs it would give them next,
	 * in name order. */
	qsort(c->msgs, c->count, sizeof(*c->msgs), cmp_name_order);
	uint32_t next = h.next_uid;
	for (size_t i = 0; i < c->count; i++) {
		if (c->msgs[i].in_list)
			continue;
		c->msgs[i].uid = next++;
		char uidl[IMPORT_DOVECOT_UIDL_LEN + 1];
		import_dovecot_uidl(c->msgs[i].uid, h.uidvalidity, uidl);
		set_uidl(&c->msgs[i], uidl);
	}
	qsort(c->msgs, c->count, sizeof(*c->msgs), cmp_dovecot_order);
	return 0;
}

static int courier_header(const char *line, size_t len, void *h)
{
	return import_courier_parse_header(line, len, h);
}

static int courier_record(struct import_ctx *c, struct import_msg **ix, const void *header,
			  const char *line, size_t len)
{
	(void)header;
	struct import_courier_rec r;
	if (import_courier_parse_line(line, len, &r) < 0)
		return -1;
	struct import_msg *m = find_identity(c, ix, r.name);
	if (m != NULL) {
		m->in_list = true;
		set_uidl(m, r.uidl);
	}
	return 0;
}

static const struct side_format courier_sizelist = {
	"courierpop3dsizelist", "courierpop3dsizelist (/2 or /3)", courier_header, courier_record,
};

static int read_courier_sizelist(struct import_ctx *c, char **error_r)
{
	struct import_courier_header h;
	if (read_side(c, &courier_sizelist, &h, error_r) < 0)
		return -1;
	/* Courier lists by name; files it has not listed yet get the next UIDs. */
	qsort(c->msgs, c->count, sizeof(*c->msgs), cmp_name_order);
	unsigned long next = h.next_uid;
	for (size_t i = 0; i < c->count; i++) {
		if (c->msgs[i].in_list)
			continue;
		char uidl[IMPORT_COURIER_UIDL_MAX];
		import_courier_uidl(next++, h.uidvalidity, uidl);
		set_uidl(&c->msgs[i], uidl);
	}
	return 0;
}

static bool side_file_exists(const struct import_ctx *c, const char *name)
{
	struct buf p;
	buf_init(&p, 0);
	buf_printf(&p, "%s/%s", c->path, name);
	struct stat st;
	bool r = stat(p.data, &st) == 0;
	buf_deinit(&p);
	return r;
}

/* ---- mbox ---- */

static int cmp_identity_offset(const void *a, const void *b)
{
	const struct import_msg *x = *(const struct import_msg *const *)a;
	const struct import_msg *y = *(const struct import_msg *const *)b;
	int r = strcmp(x->identity, y->identity);
	if (r != 0)
		return r;
	return x->mbox_off < y->mbox_off ? -1 : x->mbox_off > y->mbox_off;
}

static int scan_mbox(struct import_ctx *c, char **error_r)
{
	struct buf f;
	buf_init(&f, 0);
	if (read_file(c->path, 0, &f, &c->mbox_mtime) < 0) {
		*error_r = errorf("cannot read %s: %s", c->path, strerror(errno));
		buf_deinit(&f);
		return -1;
	}
	c->mbox_len = f.len;
	c->mbox = buf_steal(&f);
	buf_deinit(&f);
	size_t pos = 0;
	struct import_mbox_msg mm;
	bool first = true;
	while (import_mbox_next(c->mbox, c->mbox_len, &pos, &mm)) {
		/* UW's c-client keeps a folder's state in a first message with
		 * an X-IMAP: field ("DON'T DELETE THIS MESSAGE -- FOLDER
		 * INTERNAL DATA"), which it and Dovecot never show: not mail. */
		char xi[16];
		bool pseudo = first && import_header_get(mm.data, mm.len, "X-IMAP", xi, sizeof(xi));
		first = false;
		if (pseudo)
			continue;
		struct import_msg *m = add_msg(c);
		m->mbox_off = (size_t)(mm.data - c->mbox);
		m->mbox_len = mm.len;
		if (!import_mbox_from_time(mm.from_line, mm.from_len, &m->sec))
			m->sec = -1;
		/* hashed as POP3 shows it, so that the old server's rewriting
		 * of its state fields (Status:, X-UID:) changes no identity */
		buf_reset(&c->scratch);
		import_to_crlf(mm.data, mm.len, true, &c->scratch);
		struct uuid h;
		uuid_v5(c->scratch.data, c->scratch.len, &h);
		char hex[UUID_STR_LEN + 1];
		uuid_format(&h, hex);
		m->identity = xstrdup(hex);
	}
	/* Identical messages: numbered in file order (identity, then offset). */
	struct import_msg **ix = xcalloc(c->count ? c->count : 1, sizeof(*ix));
	for (size_t i = 0; i < c->count; i++)
		ix[i] = &c->msgs[i];
	qsort(ix, c->count, sizeof(*ix), cmp_identity_offset);
	unsigned int ordinal = 0;
	for (size_t i = 0; i < c->count; i++) {
		ordinal = i > 0 && strcmp(ix[i - 1]->identity, ix[i]->identity) == 0 ? ordinal + 1 : 0;
		ix[i]->ordinal = ordinal;
	}
	free(ix);
	struct buf id;
	buf_init(&id, 0);
	for (size_t i = 0; i < c->count; i++) {
		buf_reset(&id);
		buf_printf(&id, "mbox:%s:%u", c->msgs[i].identity, c->msgs[i].ordinal);
		free(c->msgs[i].identity);
		c->msgs[i].identity = xstrdup(id.data);
	}
	buf_deinit(&id);
	if (first && c->mbox_len > 0) {
		*error_r = errorf("%s: not an mbox (no \"From \" line starts a message)", c->path);
		return -1;
	}
	return 0;
}

/* ---- plan ---- */

/* Reads each message once: its CRLF size, X-UIDL (when wanted) and, when
 * the name gave no time, its Date: or the file's mtime. */
static int measure(struct import_ctx *c, bool want_xuidl, uint64_t *fresh_r, char **error_r)
{
	struct buf crlf;
	buf_init(&crlf, 0);
	for (size_t i = 0; i < c->count; i++) {
		struct import_msg *m = &c->msgs[i];
		int64_t mtime = 0;
		if (load_raw(c, m, &mtime, error_r) < 0) {
			buf_deinit(&crlf);
			return -1;
		}
		buf_reset(&crlf);
		import_to_crlf(c->scratch.data, c->scratch.len, m->file == NULL, &crlf);
		m->size = crlf.len;
		bool timed = m->file != NULL ? import_maildir_name_time(msg_name(m), &m->sec, &m->usec)
					     : m->sec >= 0;
		char value[256];
		if (!timed) {
			m->usec = 0;
			if (!import_header_get(crlf.data, crlf.len, "Date", value, sizeof(value)) ||
			    !import_date_parse(value, &m->sec))
				m->sec = mtime;
		}
		if (want_xuidl) {
			if (import_header_get(crlf.data, crlf.len, "X-UIDL", value, sizeof(value)) &&
			    value[0] != '\0')
				set_uidl(m, value);
			else
				(*fresh_r)++;
		}
	}
	buf_deinit(&crlf);
	return 0;
}

static void derive_ids(struct import_ctx *c)
{
	uint64_t prev = 0;
	struct buf name;
	buf_init(&name, 0);
	for (size_t i = 0; i < c->count; i++) {
		struct import_msg *m = &c->msgs[i];
		int64_t sec = m->sec < 0 ? 0 : m->sec;
		uint64_t t = GREGORIAN_OFFSET_TICKS + (uint64_t)sec * 10000000ULL +
			     (uint64_t)m->usec * 10ULL;
		if (t <= prev)
			t = prev + 1;
		prev = t;
		buf_reset(&name);
		buf_printf(&name, "import\n%s\n%s", c->address, m->identity);
		struct uuid h;
		uuid_v5(name.data, name.len, &h);
		uint8_t node[6];
		memcpy(node, h.b + 2, 6);
		node[0] |= 0x01;
		uint16_t cs = (uint16_t)(((h.b[0] << 8) | h.b[1]) & 0x3fff);
		timeuuid_from_ticks(t, cs, node, &m->id);
		uuid_format(&m->id, m->id_text);
	}
	buf_deinit(&name);
}

static const char *effective_uidl(const struct import_msg *m)
{
	return m->uidl[0] != '\0' ? m->uidl : m->id_text;
}

static const char *msg_where(const struct import_ctx *c, const struct import_msg *m,
			     char *out, size_t size)
{
	if (m->file != NULL)
		snprintf(out, size, "%s", m->file);
	else
		snprintf(out, size, "%s, message at offset %zu", c->path, m->mbox_off);
	return out;
}

static int cmp_uidl_ptr(const void *a, const void *b)
{
	return strcmp(effective_uidl(*(const struct import_msg *const *)a),
		      effective_uidl(*(const struct import_msg *const *)b));
}

static int cmp_entry_uidl(const void *a, const void *b)
{
	return strcmp((*(const struct store_listing_entry *const *)a)->uidl,
		      (*(const struct store_listing_entry *const *)b)->uidl);
}

static int cmp_entry_id(const void *a, const void *b)
{
	return memcmp((*(const struct store_listing_entry *const *)a)->id.b,
		      (*(const struct store_listing_entry *const *)b)->id.b, 16);
}

/* Phase 2: every UIDL valid and unique; what the mailbox already has. */
static int check(struct import_ctx *c, const struct store_maildrop *md, char **error_r)
{
	char where[1200];
	for (size_t i = 0; i < c->count; i++) {
		struct import_msg *m = &c->msgs[i];
		if (m->uidl_too_long) {
			*error_r = errorf("%s: its UIDL \"%.80s...\" is longer than %d characters "
					  "(RFC 1939); nothing was imported",
					  msg_where(c, m, where, sizeof(where)), m->uidl,
					  STORE_UIDL_MAX);
			return -1;
		}
		if (!store_uidl_valid(effective_uidl(m))) {
			char esc[300];
			str_escape_for_log(esc, sizeof(esc), m->uidl, strlen(m->uidl), 80);
			*error_r = errorf("%s: its UIDL \"%s\" has a character outside 0x21-0x7E "
					  "(RFC 1939); nothing was imported",
					  msg_where(c, m, where, sizeof(where)), esc);
			return -1;
		}
	}
	struct import_msg **by_uidl = xcalloc(c->count ? c->count : 1, sizeof(*by_uidl));
	for (size_t i = 0; i < c->count; i++)
		by_uidl[i] = &c->msgs[i];
	qsort(by_uidl, c->count, sizeof(*by_uidl), cmp_uidl_ptr);
	for (size_t i = 1; i < c->count; i++) {
		if (strcmp(effective_uidl(by_uidl[i - 1]), effective_uidl(by_uidl[i])) == 0) {
			char w2[1200];
			*error_r = errorf("the UIDL \"%s\" is given to two messages (%s and %s); "
					  "UIDLs must be unique in a mailbox (RFC 1939); nothing "
					  "was imported", effective_uidl(by_uidl[i]),
					  msg_where(c, by_uidl[i - 1], where, sizeof(where)),
					  msg_where(c, by_uidl[i], w2, sizeof(w2)));
			free(by_uidl);
			return -1;
		}
	}
	free(by_uidl);

	const struct store_listing_entry **ids = xcalloc(md->count ? md->count : 1, sizeof(*ids));
	const struct store_listing_entry **uidls = xcalloc(md->count ? md->count : 1, sizeof(*uidls));
	for (unsigned int i = 0; i < md->count; i++)
		ids[i] = uidls[i] = &md->entries[i];
	qsort(ids, md->count, sizeof(*ids), cmp_entry_id);
	qsort(uidls, md->count, sizeof(*uidls), cmp_entry_uidl);
	int ret = 0;
	for (size_t i = 0; i < c->count && ret == 0; i++) {
		struct import_msg *m = &c->msgs[i];
		struct store_listing_entry key = { .id = m->id };
		str_copy(key.uidl, effective_uidl(m), sizeof(key.uidl));
		const struct store_listing_entry *kp = &key, **hit;
		if (bsearch(&kp, ids, md->count, sizeof(*ids), cmp_entry_id) != NULL) {
			m->skip = true;
			continue;
		}
		hit = bsearch(&kp, uidls, md->count, sizeof(*uidls), cmp_entry_uidl);
		if (hit == NULL)
			continue;
		if ((*hit)->size == m->size) {
			m->skip = true; /* imported before, under another id */
			continue;
		}
		*error_r = errorf("%s: its UIDL \"%s\" is already the UIDL of another message of "
				  "%s (%llu octets, this one %llu); nothing was imported",
				  msg_where(c, m, where, sizeof(where)), effective_uidl(m),
				  c->address, (unsigned long long)(*hit)->size,
				  (unsigned long long)m->size);
		ret = -1;
	}
	free(ids);
	free(uidls);
	return ret;
}

/* Phase 3: one delivery per message, a temporary failure retried with the
 * same id (so a write that did happen is not doubled). */
static int write_msgs(struct import_ctx *c, struct import_report *r,
		      import_progress_fn *progress, void *context, char **error_r)
{
	struct buf crlf;
	buf_init(&crlf, 0);
	int ret = 0;
	for (size_t i = 0; i < c->count && ret == 0; i++) {
		struct import_msg *m = &c->msgs[i];
		if (m->skip) {
			r->skipped++;
			if (progress != NULL)
				progress(r, context);
			continue;
		}
		if (load_raw(c, m, NULL, error_r) < 0) {
			ret = -1;
			break;
		}
		buf_reset(&crlf);
		import_to_crlf(c->scratch.data, c->scratch.len, m->file == NULL, &crlf);
		struct store_rcpt rcpt = { .address = c->address, .prefix = "" };
		struct store_delivery d;
		memset(&d, 0, sizeof(d));
		store_delivery_init(&d);
		d.message_id = m->id;
		d.historical_id = true;
		d.uidl = m->uidl[0] != '\0' ? m->uidl : NULL;
		d.body = crlf.data;
		d.body_len = crlf.len;
		d.rcpts = &rcpt;
		d.rcpt_count = 1;
		enum store_status st;
		for (;;) {
			st = store_deliver(c->store, &d);
			if (st == STORE_OK)
				st = rcpt.status;
			if (!store_status_is_temporary(st) || d.attempts >= IMPORT_DELIVER_ATTEMPTS)
				break;
			sleep(d.attempts);
		}
		if (st != STORE_OK) {
			char where[1200];
			*error_r = errorf("%s: storing it failed: %s%s; %llu imported so far (run the "
					  "import again to go on: what is in is skipped)",
					  msg_where(c, m, where, sizeof(where)), store_status_name(st),
					  st == STORE_OVERQUOTA ? " (raise the user's quota first)" : "",
					  (unsigned long long)r->imported);
			ret = -1;
			break;
		}
		r->imported++;
		r->imported_octets += m->size;
		if (progress != NULL)
			progress(r, context);
	}
	buf_deinit(&crlf);
	return ret;
}

int import_mailbox(struct store *store, const char *address, enum import_format format,
		   const char *path, enum import_uidl uidl, struct import_report *report_r,
		   import_progress_fn *progress, void *context, char **error_r)
{
	struct import_ctx c = { .store = store, .address = address, .path = path, .format = format };
	buf_init(&c.scratch, 0);
	memset(report_r, 0, sizeof(*report_r));
	*error_r = NULL;
	int ret = 0;
	if (format == IMPORT_FORMAT_MBOX) {
		if (uidl == IMPORT_UIDL_DOVECOT || uidl == IMPORT_UIDL_COURIER) {
			*error_r = errorf("--uidl %s reads a Maildir's side file; an mbox has "
					  "x-uidl or none", import_uidl_name(uidl));
			ret = -1;
		} else {
			ret = scan_mbox(&c, error_r);
		}
	} else {
		bool found = false;
		ret = scan_subdir(&c, "cur", &found, error_r);
		if (ret == 0)
			ret = scan_subdir(&c, "new", &found, error_r);
		if (ret == 0 && !found) {
			*error_r = errorf("%s is not a Maildir (no cur/ or new/)", path);
			ret = -1;
		}
		if (ret == 0 && uidl == IMPORT_UIDL_AUTO) {
			if (side_file_exists(&c, "dovecot-uidlist"))
				uidl = IMPORT_UIDL_DOVECOT;
			else if (side_file_exists(&c, "courierpop3dsizelist"))
				uidl = IMPORT_UIDL_COURIER;
		}
		if (ret == 0 && uidl == IMPORT_UIDL_DOVECOT)
			ret = read_dovecot_uidlist(&c, error_r);
		else if (ret == 0 && uidl == IMPORT_UIDL_COURIER)
			ret = read_courier_sizelist(&c, error_r);
		else if (ret == 0)
			qsort(c.msgs, c.count, sizeof(*c.msgs), cmp_name_order);
	}
	bool auto_xuidl = uidl == IMPORT_UIDL_AUTO;
	uint64_t fresh = 0;
	if (ret == 0)
		ret = measure(&c, auto_xuidl || uidl == IMPORT_UIDL_XUIDL, &fresh, error_r);
	if (ret == 0 && auto_xuidl) {
		/* x-uidl when some message has one, else none. */
		uidl = fresh < c.count ? IMPORT_UIDL_XUIDL : IMPORT_UIDL_NONE;
		if (uidl == IMPORT_UIDL_NONE)
			fresh = 0;
	}
	if (uidl == IMPORT_UIDL_NONE)
		fresh = c.count;
	report_r->uidl = uidl;
	report_r->fresh_uidls = fresh;
	report_r->messages = c.count;
	for (size_t i = 0; i < c.count; i++)
		report_r->octets += c.msgs[i].size;
	struct store_maildrop *md = NULL;
	if (ret == 0) {
		derive_ids(&c);
		enum store_status st = store_maildrop_open(store, address, &md);
		if (st != STORE_OK) {
			*error_r = st == STORE_NOTFOUND
					   ? errorf("no such user %s (tern user add %s first)", address, address)
					   : errorf("reading the mailbox of %s: %s", address, store_status_name(st));
			ret = -1;
		}
	}
	if (ret == 0)
		ret = check(&c, md, error_r);
	if (md != NULL)
		store_maildrop_free(&md);
	if (ret == 0)
		ret = write_msgs(&c, report_r, progress, context, error_r);
	free_msgs(&c);
	free(c.mbox);
	buf_deinit(&c.scratch);
	return ret;
}

/* ---- export ---- */

static int write_whole(const char *path, const char *data, size_t len)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (fd < 0)
		return -1;
	size_t off = 0;
	while (off < len) {
		ssize_t n = write(fd, data + off, len - off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			int e = errno;
			close(fd);
			unlink(path);
			errno = e;
			return -1;
		}
		off += (size_t)n;
	}
	if (fsync(fd) < 0 || close(fd) < 0) {
		int e = errno;
		unlink(path);
		errno = e;
		return -1;
	}
	return 0;
}

static int make_dir(const char *path)
{
	return mkdir(path, 0700) < 0 && errno != EEXIST ? -1 : 0;
}

static bool dir_has_entries(const char *path)
{
	DIR *d = opendir(path);
	if (d == NULL)
		return false;
	struct dirent *de;
	bool any = false;
	while (!any && (de = readdir(d)) != NULL)
		any = de->d_name[0] != '.';
	closedir(d);
	return any;
}

int export_maildir(struct store *store, const char *address, const char *path,
		   struct export_report *report_r, char **error_r)
{
	memset(report_r, 0, sizeof(*report_r));
	*error_r = NULL;
	struct store_maildrop *md = NULL;
	enum store_status st = store_maildrop_open(store, address, &md);
	if (st != STORE_OK) {
		*error_r = st == STORE_NOTFOUND ? errorf("no such user %s", address)
						: errorf("reading the mailbox of %s: %s", address,
							 store_status_name(st));
		return -1;
	}
	struct buf p, uidlist, msg, lf;
	buf_init(&p, 0);
	buf_init(&uidlist, 0);
	buf_init(&msg, 0);
	buf_init(&lf, 0);
	int ret = 0;
	const char *subs[] = { "", "/cur", "/new", "/tmp" };
	for (size_t i = 0; i < 4 && ret == 0; i++) {
		buf_reset(&p);
		buf_printf(&p, "%s%s", path, subs[i]);
		if (make_dir(p.data) < 0) {
			*error_r = errorf("cannot create %s: %s", p.data, strerror(errno));
			ret = -1;
		} else if (i > 0 && dir_has_entries(p.data)) {
			*error_r = errorf("%s already holds messages: export into a new directory",
					  p.data);
			ret = -1;
		}
	}
	buf_reset(&p);
	buf_printf(&p, "%s/dovecot-uidlist", path);
	struct stat sst;
	if (ret == 0 && stat(p.data, &sst) == 0) {
		*error_r = errorf("%s exists: export into a new directory", p.data);
		ret = -1;
	}
	char host[256];
	if (gethostname(host, sizeof(host)) < 0)
		str_copy(host, "localhost", sizeof(host));
	host[sizeof(host) - 1] = '\0';
	for (char *h = host; *h != '\0'; h++)
		if (*h == '/' || *h == ':' || *h == ',' || *h == ' ')
			*h = '_';
	uint32_t uidvalidity = (uint32_t)time(NULL);
	buf_printf(&uidlist, "3 V%u N%u\n", uidvalidity, md->count + 1);
	for (unsigned int i = 0; i < md->count && ret == 0; i++) {
		buf_reset(&msg);
		st = store_message_read_raw(md, i, &msg);
		if (st != STORE_OK) {
			*error_r = errorf("reading message %u (%s): %s", i + 1, md->entries[i].uidl,
					  store_status_name(st));
			ret = -1;
			break;
		}
		/* Maildir files have LF line ends; Dovecot's sizes count CRLF. */
		buf_reset(&lf);
		for (size_t k = 0; k < msg.len; k++) {
			if (msg.data[k] == '\r' && k + 1 < msg.len && msg.data[k + 1] == '\n')
				continue;
			buf_append_c(&lf, msg.data[k]);
		}
		int64_t usec = timeuuid_unix_usec(&md->entries[i].id);
		char name[512];
		snprintf(name, sizeof(name), "%lld.M%06lldP%dQ%u.%s,S=%zu,W=%zu:2,",
			 (long long)(usec / 1000000), (long long)(usec % 1000000), (int)getpid(),
			 i + 1, host, lf.len, msg.len);
		buf_reset(&p);
		buf_printf(&p, "%s/tmp/%s", path, name);
		struct buf dst;
		buf_init(&dst, 0);
		buf_printf(&dst, "%s/cur/%s", path, name);
		if (write_whole(p.data, lf.data, lf.len) < 0 || rename(p.data, dst.data) < 0) {
			*error_r = errorf("cannot write %s: %s", dst.data, strerror(errno));
			ret = -1;
		}
		buf_deinit(&dst);
		buf_printf(&uidlist, "%u P%s :%s\n", i + 1, md->entries[i].uidl, name);
		report_r->messages++;
		report_r->octets += msg.len;
	}
	if (ret == 0) {
		buf_reset(&p);
		buf_printf(&p, "%s/dovecot-uidlist.tern-export", path);
		struct buf dst;
		buf_init(&dst, 0);
		buf_printf(&dst, "%s/dovecot-uidlist", path);
		unlink(p.data);
		if (write_whole(p.data, uidlist.data, uidlist.len) < 0 || rename(p.data, dst.data) < 0) {
			*error_r = errorf("cannot write %s: %s", dst.data, strerror(errno));
			ret = -1;
		}
		buf_deinit(&dst);
	}
	buf_deinit(&p);
	buf_deinit(&uidlist);
	buf_deinit(&msg);
	buf_deinit(&lf);
	store_maildrop_free(&md);
	return ret;
}
