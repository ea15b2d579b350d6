#ifndef TERN_DKIM_H
#define TERN_DKIM_H
/*
 * dkim: DKIM signatures (RFC 6376) for outbound mail, rsa-sha256 and
 * ed25519-sha256 (RFC 8463), relaxed/relaxed canonicalization only.
 *
 * tern only signs (receiving MTAs verify), so this is a signer and nothing
 * else, written on OpenSSL's EVP API, which tern links already, rather than
 * on libopendkim (Debian ships a 2.11 beta, which brings its own resolver
 * and configuration model for the verification tern never does).
 *
 * A key is loaded once and then shared read-only by any number of threads;
 * each message gets its own dkim_sign context. Memory is bounded whatever
 * the message's size: the header is kept (at most DKIM_HEADER_MAX octets),
 * the body is canonicalized and hashed as it streams by.
 *
 * Signed header fields: those present among From, Reply-To, Subject, Date,
 * To, Cc, Message-ID, In-Reply-To, References, MIME-Version, Content-Type,
 * Content-Transfer-Encoding and the List-* fields of RFC 2369, 2919 and
 * 8058. Every instance is signed (bottom-up, RFC 6376 5.4.2), and From is
 * listed once more than it occurs, so a From added in transit breaks the
 * signature. Tags: v, a, c, d, s, t, h, bh, b (no l=: the whole body is
 * signed, no i=: the identity is the domain).
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "buf.h"

/* The largest header (all fields, up to the empty line) that can be signed. */
#define DKIM_HEADER_MAX (256 * 1024)
/* The smallest RSA key accepted (RFC 8301 3.2). */
#define DKIM_RSA_MIN_BITS 1024

struct dkim_key;

/* Loads a PEM private key (PKCS#8 "PRIVATE KEY", or the traditional "RSA
 * PRIVATE KEY"): RSA of at least DKIM_RSA_MIN_BITS bits signs with
 * rsa-sha256, Ed25519 with ed25519-sha256. domain (stored lower-cased) and
 * selector must be valid DNS names. NULL with a static *error_r. */
struct dkim_key *dkim_key_load(const char *domain, const char *selector,
			       const char *key_file, const char **error_r);
void dkim_key_free(struct dkim_key **key);
const char *dkim_key_domain(const struct dkim_key *key);
const char *dkim_key_selector(const struct dkim_key *key);
/* "rsa-sha256" or "ed25519-sha256". */
const char *dkim_key_algorithm(const struct dkim_key *key);
/* Whether the key may sign for domain (a From: domain): it is the key's
 * domain or a subdomain of it, compared without regard to case; a
 * trailing dot on domain is ignored. */
bool dkim_key_covers(const struct dkim_key *key, const char *domain);
/* Appends the value of the TXT record to publish at
 * SELECTOR._domainkey.DOMAIN: "v=DKIM1; k=rsa; p=BASE64" (the public key
 * as a DER SubjectPublicKeyInfo) or "v=DKIM1; k=ed25519; p=BASE64" (the
 * 32-octet key, RFC 8463). 0, or -1 when out's cap is reached. */
int dkim_dns_record(const struct dkim_key *key, struct buf *out, const char **error_r);

/* Streaming signer. Feed the message as stored (CRLF line ends; the header,
 * then an empty line, then the body) with dkim_sign_update() in pieces of
 * any size: the signature does not depend on where the input is split.
 * key must outlive the context. now_s is the t= tag (seconds since the
 * epoch). Never fails (allocation failure aborts). */
struct dkim_sign;
struct dkim_sign *dkim_sign_begin(const struct dkim_key *key, int64_t now_s);
void dkim_sign_update(struct dkim_sign *s, const void *data, size_t len);
/* Finishes and frees *s (set to NULL). Appends one "DKIM-Signature: ..."
 * header field, CRLF-terminated and folded into lines of at most 78
 * octets, to out, to be prepended to the message as fed. A message without
 * the empty line is all header and has an empty body. -1 with *error_r
 * (static) when the message cannot be signed: no From field, a header
 * over DKIM_HEADER_MAX, a header line that is no field, or out's cap. */
int dkim_sign_end(struct dkim_sign **s, struct buf *out, const char **error_r);
/* Frees a context without signing (e.g. when delivery is abandoned). */
void dkim_sign_abort(struct dkim_sign **s);

#endif
