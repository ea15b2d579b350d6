/*
 * dkim: signs outbound messages with DKIM (RFC 6376), relaxed/relaxed,
 * rsa-sha256 or ed25519-sha256 (RFC 8463).
 *
 * Why OpenSSL and not libopendkim: OpenSSL is a dependency already, tern
 * only signs (it never verifies, so needs no DNS), and Debian's libopendkim
 * is a 2.11 beta that brings its own resolver and configuration model.
 * Signing is two hashes and one EVP signature; the canonicalizations below
 * are the only DKIM-specific code.
 *
 * Invariants:
 *  - memory per message is bounded: the header is kept in a buffer capped
 *    at DKIM_HEADER_MAX (+2 for the empty line while it is recognised), the
 *    body is canonicalized through a fixed 4 KiB staging array into the
 *    SHA-256 context and never stored;
 *  - the result does not depend on how the input is split: the header
 *    scanner and the body canonicalizer carry their state across calls;
 *  - a struct dkim_key is never written after dkim_key_load() returns
 *    (a first signature is made at load, so OpenSSL's lazily filled caches
 *    of the key are filled before any thread shares it);
 *  - the DKIM-Signature field is built once, with b= empty, hashed in its
 *    relaxed form exactly as emitted (folds included), then the signature
 *    is appended: the header hash covers the very text that is sent.
 */
#include "dkim.h"
#include "dkim-private.h"

#include <errno.h>
#include <inttypes.h>
#include <string.h>
#include <strings.h>

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>

#include "base64.h"
#include "log.h"
#include "mail-address.h"

#define FOLD_WIDTH 78

struct dkim_key {
	char *domain;        /* lower-cased */
	char *selector;
	EVP_PKEY *pkey;
	bool ed25519;
};

struct dkim_sign {
	const struct dkim_key *key;
	int64_t now_s;
	const char *error;        /* set once; later input is ignored */
	bool in_body;
	struct buf header;        /* the header, up to (without) the empty line */
	size_t line_start;        /* offset of the current header line */
	EVP_MD_CTX *body_md;
	struct dkim_body_canon body;
};

/* The fields signed when present, in h= order. From must stay first: it
 * is also the one oversigned. */
static const char *const signed_fields[] = {
	"From", "Reply-To", "Subject", "Date", "To", "Cc", "Message-ID",
	"In-Reply-To", "References", "MIME-Version", "Content-Type",
	"Content-Transfer-Encoding",
	"List-Id", "List-Help", "List-Unsubscribe", "List-Unsubscribe-Post",
	"List-Subscribe", "List-Post", "List-Owner", "List-Archive",
};

static bool is_wsp(char c)
{
	return c == ' ' || c == '\t';
}

/* ---------------------------------------------------------------------- */
/* canonicalization */

int dkim_canon_header(const char *f, size_t len, size_t name_len, struct buf *out)
{
	size_t n = name_len;
	bool space = false, started = false;

	while (n > 0 && is_wsp(f[n - 1]))
		n--;
	for (size_t i = 0; i < n; i++) {
		char c = f[i];
		if (buf_append_c(out, (c >= 'A' && c <= 'Z') ? (char)(c - 'A' + 'a') : c) < 0)
			return -1;
	}
	if (buf_append_c(out, ':') < 0)
		return -1;
	for (size_t i = name_len + 1; i < len; i++) {
		char c = f[i];
		if (c == '\r' && i + 1 < len && f[i + 1] == '\n') {
			i++;            /* unfold: the CRLF goes, the WSP after it stays */
			continue;
		}
		if (is_wsp(c)) {
			space = started;
			continue;
		}
		if ((space && buf_append_c(out, ' ') < 0) || buf_append_c(out, c) < 0)
			return -1;
		space = false;
		started = true;
	}
	return buf_append(out, "\r\n", 2);
}

void dkim_body_canon_init(struct dkim_body_canon *c, dkim_emit_fn *emit, void *ctx)
{
	memset(c, 0, sizeof(*c));
	c->emit = emit;
	c->ctx = ctx;
}

static void canon_flush(struct dkim_body_canon *c)
{
	if (c->out_len > 0)
		c->emit(c->ctx, c->out, c->out_len);
	c->out_len = 0;
}

static inline void canon_put(struct dkim_body_canon *c, char ch)
{
	if (c->out_len == sizeof(c->out))
		canon_flush(c);
	c->out[c->out_len++] = ch;
}

/* A byte that is neither WSP nor a line end: what was held back before it
 * (empty lines, one SP) is now known not to be trailing. */
static inline void canon_content(struct dkim_body_canon *c, char ch)
{
	for (; c->crlf_pending > 0; c->crlf_pending--) {
		canon_put(c, '\r');
		canon_put(c, '\n');
	}
	if (c->wsp_pending)
		canon_put(c, ' ');
	c->wsp_pending = false;
	canon_put(c, ch);
	c->nonempty = true;
}

void dkim_body_canon_feed(struct dkim_body_canon *c, const void *data, size_t len)
{
	const char *p = data;

	for (size_t i = 0; i < len; i++) {
		char ch = p[i];
		if (c->cr_pending) {
			c->cr_pending = false;
			if (ch == '\n') {
				/* WSP before a line end is dropped; the line end
				 * waits until content shows it is not trailing */
				c->wsp_pending = false;
				c->crlf_pending++;
				continue;
			}
			canon_content(c, '\r');     /* a bare CR is content */
		}
		if (is_wsp(ch))
			c->wsp_pending = true;
		else if (ch == '\r')
			c->cr_pending = true;
		else
			canon_content(c, ch);
	}
}

void dkim_body_canon_finish(struct dkim_body_canon *c)
{
	if (c->cr_pending)
		canon_content(c, '\r');
	c->cr_pending = false;
	/* WSP at the end of an unterminated last line ends a line too */
	c->wsp_pending = false;
	c->crlf_pending = 0;
	if (c->nonempty) {
		canon_put(c, '\r');
		canon_put(c, '\n');
	}
	canon_flush(c);
}

/* ---------------------------------------------------------------------- */
/* keys */

static bool name_is_valid(const char *s)
{
	return s != NULL && s[0] != '[' && mail_domain_is_valid(s, strlen(s));
}

/* Signs a digest with the key: PKCS#1 v1.5 with a SHA-256 DigestInfo for
 * RSA, pure Ed25519 over the 32 octets for Ed25519 (RFC 8463 3). The
 * signature is appended to sig (unbounded: at most the modulus size). */
static int key_sign_digest(const struct dkim_key *key, const unsigned char digest[32],
			   struct buf *sig)
{
	size_t len = 0;
	int ret = -1;

	if (key->ed25519) {
		EVP_MD_CTX *md = EVP_MD_CTX_new();
		if (md == NULL)
			panic("dkim: out of memory");
		len = 64;
		if (EVP_DigestSignInit(md, NULL, NULL, NULL, key->pkey) == 1 &&
		    buf_reserve(sig, len) == 0 &&
		    EVP_DigestSign(md, (unsigned char *)sig->data + sig->len, &len, digest, 32) == 1)
			ret = 0;
		EVP_MD_CTX_free(md);
	} else {
		EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new(key->pkey, NULL);
		if (ctx == NULL)
			panic("dkim: out of memory");
		if (EVP_PKEY_sign_init(ctx) == 1 &&
		    EVP_PKEY_CTX_set_rsa_padding(ctx, RSA_PKCS1_PADDING) == 1 &&
		    EVP_PKEY_CTX_set_signature_md(ctx, EVP_sha256()) == 1 &&
		    EVP_PKEY_sign(ctx, NULL, &len, digest, 32) == 1 &&
		    buf_reserve(sig, len) == 0 &&
		    EVP_PKEY_sign(ctx, (unsigned char *)sig->data + sig->len, &len, digest, 32) == 1)
			ret = 0;
		EVP_PKEY_CTX_free(ctx);
	}
	if (ret == 0) {
		sig->len += len;
		sig->data[sig->len] = '\0';
	}
	return ret;
}

struct dkim_key *dkim_key_load(const char *domain, const char *selector,
			       const char *key_file, const char **error_r)
{
	if (!name_is_valid(domain)) {
		*error_r = "the DKIM domain is not a valid domain name";
		return NULL;
	}
	if (!name_is_valid(selector)) {
		*error_r = "the DKIM selector is not a valid DNS name";
		return NULL;
	}
	BIO *bio = BIO_new_file(key_file, "r");
	if (bio == NULL) {
		*error_r = errno == ENOENT ? "the DKIM key file does not exist" :
			errno == EACCES ? "the DKIM key file is not readable (permission denied)" :
			"the DKIM key file cannot be opened";
		return NULL;
	}
	EVP_PKEY *pkey = PEM_read_bio_PrivateKey(bio, NULL, NULL, NULL);
	BIO_free(bio);
	if (pkey == NULL) {
		*error_r = "the DKIM key file holds no PEM private key (an unencrypted "
			   "PKCS#8 or RSA PRIVATE KEY is needed)";
		return NULL;
	}
	bool ed25519;
	switch (EVP_PKEY_get_base_id(pkey)) {
	case EVP_PKEY_RSA:
		if (EVP_PKEY_get_bits(pkey) < DKIM_RSA_MIN_BITS) {
			EVP_PKEY_free(pkey);
			*error_r = "the DKIM RSA key is too small: at least 1024 bits are "
				   "needed (2048 recommended)";
			return NULL;
		}
		ed25519 = false;
		break;
	case EVP_PKEY_ED25519:
		ed25519 = true;
		break;
	default:
		EVP_PKEY_free(pkey);
		*error_r = "the DKIM key is neither RSA nor Ed25519";
		return NULL;
	}

	struct dkim_key *key = xcalloc(1, sizeof(*key));
	key->domain = xstrdup(domain);
	str_lower(key->domain);
	key->selector = xstrdup(selector);
	key->pkey = pkey;
	key->ed25519 = ed25519;

	/* a first signature: proves the key signs, and fills OpenSSL's caches
	 * while the key is still private to this thread */
	static const unsigned char zero[32];
	struct buf sig;
	buf_init(&sig, 0);
	int ret = key_sign_digest(key, zero, &sig);
	buf_deinit(&sig);
	if (ret < 0) {
		dkim_key_free(&key);
		*error_r = "the DKIM key cannot sign";
		return NULL;
	}
	return key;
}

void dkim_key_free(struct dkim_key **_key)
{
	struct dkim_key *key = *_key;

	if (key == NULL)
		return;
	*_key = NULL;
	EVP_PKEY_free(key->pkey);
	free(key->domain);
	free(key->selector);
	free(key);
}

const char *dkim_key_domain(const struct dkim_key *key)
{
	return key->domain;
}

const char *dkim_key_selector(const struct dkim_key *key)
{
	return key->selector;
}

const char *dkim_key_algorithm(const struct dkim_key *key)
{
	return key->ed25519 ? "ed25519-sha256" : "rsa-sha256";
}

bool dkim_key_covers(const struct dkim_key *key, const char *domain)
{
	size_t n = strlen(domain), kn = strlen(key->domain);

	if (n > 0 && domain[n - 1] == '.')
		n--;
	if (n < kn || kn == 0)
		return false;
	if (strncasecmp(domain + n - kn, key->domain, kn) != 0)
		return false;
	return n == kn || domain[n - kn - 1] == '.';
}

int dkim_dns_record(const struct dkim_key *key, struct buf *out, const char **error_r)
{
	size_t start = out->len;
	unsigned char raw[32];
	unsigned char *der = NULL;
	int ret;

	if (key->ed25519) {
		size_t len = sizeof(raw);
		if (EVP_PKEY_get_raw_public_key(key->pkey, raw, &len) != 1 || len != sizeof(raw)) {
			*error_r = "cannot read the Ed25519 public key";
			return -1;
		}
		ret = buf_append_str(out, "v=DKIM1; k=ed25519; p=") < 0 ||
			base64_encode(raw, len, out) < 0 ? -1 : 0;
	} else {
		int len = i2d_PUBKEY(key->pkey, &der);
		if (len <= 0) {
			*error_r = "cannot encode the RSA public key";
			return -1;
		}
		ret = buf_append_str(out, "v=DKIM1; k=rsa; p=") < 0 ||
			base64_encode(der, (size_t)len, out) < 0 ? -1 : 0;
		OPENSSL_free(der);
	}
	if (ret < 0) {
		out->len = start;
		out->data[start] = '\0';
		*error_r = "the output buffer is full";
	}
	return ret;
}

/* ---------------------------------------------------------------------- */
/* signing */

static void body_md_update(void *ctx, const void *data, size_t len)
{
	if (EVP_DigestUpdate(ctx, data, len) != 1)
		panic("dkim: SHA-256 update failed");
}

static EVP_MD_CTX *sha256_new(void)
{
	EVP_MD_CTX *md = EVP_MD_CTX_new();
	if (md == NULL || EVP_DigestInit_ex(md, EVP_sha256(), NULL) != 1)
		panic("dkim: cannot start SHA-256");
	return md;
}

static void sha256_final(EVP_MD_CTX *md, unsigned char digest[32])
{
	unsigned int n = 0;
	if (EVP_DigestFinal_ex(md, digest, &n) != 1 || n != 32)
		panic("dkim: SHA-256 final failed");
}

static const char header_too_large[] =
	"the message header is too large to sign (over 256 KiB)";

struct dkim_sign *dkim_sign_begin(const struct dkim_key *key, int64_t now_s)
{
	struct dkim_sign *s = xcalloc(1, sizeof(*s));

	s->key = key;
	s->now_s = now_s;
	buf_init(&s->header, DKIM_HEADER_MAX + 2);
	s->body_md = sha256_new();
	dkim_body_canon_init(&s->body, body_md_update, s->body_md);
	return s;
}

void dkim_sign_update(struct dkim_sign *s, const void *data, size_t len)
{
	const char *p = data;

	while (len > 0 && !s->in_body && s->error == NULL) {
		/* up to and including the next LF: a line ends only at CRLF,
		 * and the header ends at the first empty line */
		const char *lf = memchr(p, '\n', len);
		size_t n = lf != NULL ? (size_t)(lf - p) + 1 : len;
		if (buf_append(&s->header, p, n) < 0) {
			s->error = header_too_large;
			break;
		}
		p += n;
		len -= n;
		struct buf *h = &s->header;
		if (lf == NULL || h->len < 2 + s->line_start || h->data[h->len - 2] != '\r')
			continue;
		if (h->len - s->line_start == 2) {
			h->len = s->line_start;       /* the empty line is no field */
			h->data[h->len] = '\0';
			s->in_body = true;
			if (h->len > DKIM_HEADER_MAX)
				s->error = header_too_large;
		} else {
			s->line_start = h->len;
		}
	}
	if (s->in_body && s->error == NULL && len > 0)
		dkim_body_canon_feed(&s->body, p, len);
}

struct field {
	size_t off, len, name_len;      /* len without the final CRLF */
};

/* Splits the kept header into fields. 0, or -1 with *error_r. */
static int header_fields(const struct buf *h, struct field **fields_r, size_t *count_r,
			 const char **error_r)
{
	struct field *fields = NULL;
	size_t count = 0, alloc = 0, pos = 0;

	while (pos < h->len) {
		const char *line = h->data + pos;
		const char *end = memmem(line, h->len - pos, "\r\n", 2);
		size_t line_len = end != NULL ? (size_t)(end - line) : h->len - pos;

		if (is_wsp(line[0])) {
			if (count == 0) {
				*error_r = "the message header begins with a folded line";
				free(fields);
				return -1;
			}
			fields[count - 1].len = pos + line_len - fields[count - 1].off;
		} else {
			const char *colon = memchr(line, ':', line_len);
			size_t n = colon != NULL ? (size_t)(colon - line) : 0;
			while (n > 0 && is_wsp(line[n - 1]))
				n--;
			bool ok = n > 0;
			for (size_t i = 0; i < n && ok; i++)
				ok = line[i] > 0x20 && line[i] < 0x7f;
			if (!ok) {
				*error_r = "the message header has a line that is not a header field";
				free(fields);
				return -1;
			}
			if (count == alloc) {
				alloc = alloc == 0 ? 32 : alloc * 2;
				fields = xrealloc(fields, alloc * sizeof(*fields));
			}
			fields[count++] = (struct field){ pos, line_len, (size_t)(colon - line) };
		}
		pos += line_len + 2;
	}
	*fields_r = fields;
	*count_r = count;
	return 0;
}

static bool field_is(const struct buf *h, const struct field *f, const char *name)
{
	size_t n = f->name_len, len = strlen(name);
	const char *p = h->data + f->off;

	while (n > 0 && is_wsp(p[n - 1]))
		n--;
	return n == len && strncasecmp(p, name, n) == 0;
}

/* Hashes the signed fields in h= order (each name's instances bottom-up)
 * and appends the h= value to hlist. -1 with *error_r. */
static int hash_fields(const struct buf *h, const struct field *fields, size_t count,
		       EVP_MD_CTX *md, struct buf *hlist, const char **error_r)
{
	struct buf canon;
	int ret = 0;

	buf_init(&canon, 0);
	for (size_t i = 0; i < sizeof(signed_fields) / sizeof(signed_fields[0]); i++) {
		const char *name = signed_fields[i];
		unsigned int seen = 0;
		for (size_t j = count; j-- > 0;) {
			if (!field_is(h, &fields[j], name))
				continue;
			buf_reset(&canon);
			(void)dkim_canon_header(h->data + fields[j].off, fields[j].len,
						fields[j].name_len, &canon);
			body_md_update(md, canon.data, canon.len);
			(void)buf_printf(hlist, "%s%s", hlist->len > 0 ? ":" : "", name);
			seen++;
		}
		if (i == 0) {
			if (seen == 0) {
				*error_r = "the message has no From: header field";
				ret = -1;
				break;
			}
			/* one more than present: a From added later is signed as absent */
			(void)buf_printf(hlist, ":%s", name);
		}
	}
	buf_deinit(&canon);
	return ret;
}

/* Writes a header field folded into lines of at most FOLD_WIDTH octets
 * (a single token longer than that, a 253-octet domain, stays whole). */
struct folder {
	struct buf *out;
	size_t col;
	bool full;
};

static void fold_raw(struct folder *f, const char *s, size_t n)
{
	if (buf_append(f->out, s, n) < 0)
		f->full = true;
	f->col += n;
}

static void fold_break(struct folder *f)
{
	fold_raw(f, "\r\n", 2);
	f->col = 0;
}

/* One character after a value, folded before when the line is full. */
static void fold_char(struct folder *f, char c)
{
	if (f->col + 1 > FOLD_WIDTH) {
		fold_break(f);
		fold_raw(f, " ", 1);
	}
	fold_raw(f, &c, 1);
}

/* A tag that is never split ("d=example.com;"), after a space or a fold. */
static void fold_tag(struct folder *f, const char *s, size_t n)
{
	if (f->col + 1 + n > FOLD_WIDTH)
		fold_break(f);
	fold_raw(f, " ", 1);
	fold_raw(f, s, n);
}

/* h=: folded before a ':' (FWS is allowed around each). */
static void fold_list(struct folder *f, const char *list, size_t len)
{
	size_t first = strcspn(list, ":");
	char tag[64];

	(void)snprintf(tag, sizeof(tag), "h=%.*s%s", (int)first, list,
		       first == len ? ";" : "");
	fold_tag(f, tag, strlen(tag));
	for (size_t pos = first; pos < len;) {
		size_t n = 1 + strcspn(list + pos + 1, ":");
		bool last = pos + n == len;
		if (f->col + n + (last ? 1 : 0) > FOLD_WIDTH) {
			fold_break(f);
			fold_raw(f, " ", 1);
		}
		fold_raw(f, list + pos, n);
		if (last)
			fold_raw(f, ";", 1);
		pos += n;
	}
}

/* A base64 value, split anywhere (FWS may appear between its characters). */
static void fold_base64(struct folder *f, const char *s, size_t n)
{
	while (n > 0) {
		if (f->col >= FOLD_WIDTH) {
			fold_break(f);
			fold_raw(f, " ", 1);
		}
		size_t k = FOLD_WIDTH - f->col < n ? FOLD_WIDTH - f->col : n;
		fold_raw(f, s, k);
		s += k;
		n -= k;
	}
}

/* "name=" then the base64 value, starting a new line when fewer than 8
 * characters of it would fit on this one. */
static void fold_base64_tag(struct folder *f, const char *name, const char *value, size_t n)
{
	size_t nl = strlen(name);

	if (f->col + 1 + nl + 8 > FOLD_WIDTH)
		fold_break(f);
	fold_raw(f, " ", 1);
	fold_raw(f, name, nl);
	fold_base64(f, value, n);
}

int dkim_sign_end(struct dkim_sign **_s, struct buf *out, const char **error_r)
{
	struct dkim_sign *s = *_s;
	const struct dkim_key *key = s->key;
	struct field *fields = NULL;
	size_t count = 0, start = out->len;
	unsigned char bh[32], hh[32];
	struct buf hlist, b64, canon, sig;
	int ret = -1;

	*_s = NULL;
	buf_init(&hlist, 0);
	buf_init(&b64, 0);
	buf_init(&canon, 0);
	buf_init(&sig, 0);
	EVP_MD_CTX *hmd = sha256_new();

	dkim_body_canon_finish(&s->body);
	sha256_final(s->body_md, bh);
	if (s->error == NULL && s->header.len > DKIM_HEADER_MAX)
		s->error = header_too_large;    /* all header, no empty line */
	if (s->error != NULL) {
		*error_r = s->error;
		goto out;
	}
	if (header_fields(&s->header, &fields, &count, error_r) < 0 ||
	    hash_fields(&s->header, fields, count, hmd, &hlist, error_r) < 0)
		goto out;

	struct folder f = { out, 0, false };
	char tag[MAIL_DOMAIN_MAX + 8];
	fold_raw(&f, "DKIM-Signature:", 15);
	fold_tag(&f, "v=1;", 4);
	(void)snprintf(tag, sizeof(tag), "a=%s;", dkim_key_algorithm(key));
	fold_tag(&f, tag, strlen(tag));
	fold_tag(&f, "c=relaxed/relaxed;", 18);
	(void)snprintf(tag, sizeof(tag), "d=%s;", key->domain);
	fold_tag(&f, tag, strlen(tag));
	(void)snprintf(tag, sizeof(tag), "s=%s;", key->selector);
	fold_tag(&f, tag, strlen(tag));
	(void)snprintf(tag, sizeof(tag), "t=%" PRId64 ";", s->now_s);
	fold_tag(&f, tag, strlen(tag));
	fold_list(&f, hlist.data, hlist.len);
	(void)base64_encode(bh, sizeof(bh), &b64);
	fold_base64_tag(&f, "bh=", b64.data, b64.len);
	fold_char(&f, ';');
	/* the signature's own field, b= empty, is the last input of the hash */
	if (f.col + 1 + 2 + 8 > FOLD_WIDTH)
		fold_break(&f);
	fold_raw(&f, " b=", 3);
	if (f.full)
		goto full;
	(void)dkim_canon_header(out->data + start, out->len - start, 14, &canon);
	body_md_update(hmd, canon.data, canon.len - 2);     /* without its CRLF */
	sha256_final(hmd, hh);
	if (key_sign_digest(key, hh, &sig) < 0) {
		*error_r = "the DKIM signature could not be made";
		goto out;
	}
	buf_reset(&b64);
	(void)base64_encode(sig.data, sig.len, &b64);
	fold_base64(&f, b64.data, b64.len);
	fold_raw(&f, "\r\n", 2);
	if (f.full)
		goto full;
	ret = 0;
	goto out;
full:
	*error_r = "the output buffer is full";
out:
	if (ret < 0) {
		out->len = start;
		out->data[start] = '\0';
	}
	free(fields);
	EVP_MD_CTX_free(hmd);
	buf_deinit(&hlist);
	buf_deinit(&b64);
	buf_deinit(&canon);
	buf_deinit(&sig);
	dkim_sign_abort(&s);
	return ret;
}

void dkim_sign_abort(struct dkim_sign **_s)
{
	struct dkim_sign *s = *_s;

	if (s == NULL)
		return;
	*_s = NULL;
	EVP_MD_CTX_free(s->body_md);
	buf_deinit(&s->header);
	free(s);
}
