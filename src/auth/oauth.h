#ifndef TERN_OAUTH_H
#define TERN_OAUTH_H
/*
 * oauth: bearer tokens for SASL OAUTHBEARER (RFC 7628) and XOAUTH2, as
 * JSON Web Tokens (RFC 7519) signed by an identity provider whose public
 * keys tern reads from a JWKS file (RFC 7517): the token's signature is
 * checked with OpenSSL, then its claims, and the user it names is
 * returned. No I/O beyond reading the key file; no network, ever (the
 * header's jku, x5u and jwk are ignored: only the file's keys are trusted).
 *
 * What is accepted:
 * - a compact JWS (header.payload.signature, base64url without padding)
 *   whose header's "alg" is RS256 (RSASSA-PKCS1-v1_5 with SHA-256, RSA keys
 *   of 2048 bits or more) or ES256 (ECDSA P-256 with SHA-256, the signature
 *   being the 64 octets r || s of RFC 7518 3.4); "none", HS* and everything
 *   else are refused, as is a header with "crit" (no extension is
 *   understood);
 * - signed by a key of the set of the algorithm's type whose "kid" equals
 *   the header's "kid" (when the header has none: any key of that type);
 *   a key that names its own "alg" is used only for that one;
 * - with the claims (numbers are seconds since the epoch, leeway
 *   OAUTH_LEEWAY_SECS for clock skew): "exp" required and in the future;
 *   "nbf" and "iat", when present, not in the future; "iss" equal to the
 *   configured issuer; "aud" equal to the configured audience, or an array
 *   containing it; the user claim (default "email") a string.
 * Header and payload are JSON objects without duplicate names.
 *
 * Threads: a key set is immutable once loaded and may be used by several
 * threads at once; its reference count is atomic, so the holder of the
 * current set (the server, which replaces it on SIGHUP) and the checks in
 * flight (each holding a reference) can let go of it in any order.
 */
#include <stddef.h>
#include <time.h>

/* Allowed clock skew between tern and the token's issuer. */
#define OAUTH_LEEWAY_SECS 60
/* The longest token looked at (octets of the compact form). */
#define OAUTH_TOKEN_MAX (64 * 1024)
/* The longest "kid" kept from a JWKS. */
#define OAUTH_KID_MAX 256

struct oauth_keys;

/* Reads a JWKS file: {"keys": [ ... ]}. Keys of other types, curves or
 * uses ("use" other than "sig") are skipped; a usable-looking key that is
 * malformed (bad base64url, a point off the curve, an RSA modulus under
 * 2048 bits) is an error, as is a file without any usable key. Returns
 * the set with one reference, or NULL with a malloc'ed "PATH: reason" in
 * *error_r. */
struct oauth_keys *oauth_keys_load(const char *path, char **error_r);
/* The same from a buffer; *error_r is a static phrase (no path). */
struct oauth_keys *oauth_keys_parse(const char *json, size_t len, const char **error_r);
struct oauth_keys *oauth_keys_ref(struct oauth_keys *keys);
/* Drops a reference (the last one frees the set); sets *keys to NULL.
 * NULL is fine. */
void oauth_keys_unref(struct oauth_keys **keys);
/* How many usable keys the set holds (for logs). */
unsigned int oauth_keys_count(const struct oauth_keys *keys);

/* What a token must say; the strings are borrowed for the call. */
struct oauth_policy {
	const char *issuer;      /* "iss" must equal it */
	const char *audience;    /* "aud" must equal it or contain it */
	const char *user_claim;  /* the claim that names the user; NULL: "email" */
};

/* Verifies token (len octets, no NUL needed) at time now. On success
 * returns 0 with the user claim's value, NUL-terminated, in user_r
 * (user_size octets; a longer value fails); otherwise -1 with a short
 * static phrase in *error_r saying why ("expired", "bad signature", ...),
 * for logs: it never quotes the token. */
int oauth_verify(const struct oauth_keys *keys, const struct oauth_policy *policy,
		 const char *token, size_t len, time_t now, char *user_r, size_t user_size,
		 const char **error_r);

#endif
