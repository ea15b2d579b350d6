/*
 * oauth: the JWKS key set and JWT verification (see oauth.h for what is
 * accepted).
 *
 * Invariants:
 * - The signature is checked before any claim is looked at, and with a key
 *   of the file only: nothing from the token chooses a key but its "alg"
 *   (which fixes the key type) and its "kid" (which must match).
 * - An algorithm is a property of the key as much as of the token: an
 *   RS256 token is checked only with RSA keys, an ES256 one only with P-256
 *   keys, so no token can make an RSA public key act as an HMAC secret.
 * - A key set never changes once built; its EVP_PKEYs are only read (by
 *   EVP_DigestVerify*, which OpenSSL allows from several threads at once).
 * - Error phrases are static (or, while loading, in a per-thread buffer)
 *   and never quote the token.
 */
#include "oauth.h"

#include <errno.h>
#include <jansson.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/param_build.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base64.h"
#include "buf.h"

/* A JWKS larger than this is not a key file. */
#define JWKS_FILE_MAX (1024 * 1024)
/* The largest RSA modulus accepted: 16384 bits. */
#define RSA_N_MAX 2048
#define RSA_E_MAX 8
#define RSA_BITS_MIN 2048
#define P256_COORD 32

enum jws_alg { ALG_RS256, ALG_ES256 };

struct oauth_key {
	enum jws_alg alg;  /* RS256 for RSA keys, ES256 for P-256 ones */
	char *kid;         /* NULL when the JWK has none */
	EVP_PKEY *pkey;
};

struct oauth_keys {
	atomic_uint refs;
	unsigned int count;
	struct oauth_key *keys;
};

static _Thread_local char load_error[512];

/* --- JWKS --- */

/* Decodes a base64url string member of a JWK into out (initialized,
 * empty); 0, or -1 when absent, not a string, malformed or over out's cap. */
static int jwk_bytes(json_t *jwk, const char *name, struct buf *out)
{
	json_t *v = json_object_get(jwk, name);
	if (!json_is_string(v))
		return -1;
	return base64url_decode(json_string_value(v), json_string_length(v), out);
}

/* Builds a public key of the given type from OSSL parameters. */
static EVP_PKEY *pkey_from_params(const char *type, OSSL_PARAM_BLD *bld)
{
	EVP_PKEY *pkey = NULL;
	OSSL_PARAM *params = OSSL_PARAM_BLD_to_param(bld);
	EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_name(NULL, type, NULL);
	if (params == NULL || ctx == NULL || EVP_PKEY_fromdata_init(ctx) != 1 ||
	    EVP_PKEY_fromdata(ctx, &pkey, EVP_PKEY_PUBLIC_KEY, params) != 1)
		pkey = NULL;
	EVP_PKEY_CTX_free(ctx);
	OSSL_PARAM_free(params);
	if (pkey != NULL) {
		/* e.g. an EC point that is not on the curve */
		EVP_PKEY_CTX *check = EVP_PKEY_CTX_new_from_pkey(NULL, pkey, NULL);
		if (check == NULL || EVP_PKEY_public_check(check) != 1) {
			EVP_PKEY_free(pkey);
			pkey = NULL;
		}
		EVP_PKEY_CTX_free(check);
	}
	ERR_clear_error();
	return pkey;
}

static EVP_PKEY *rsa_key(json_t *jwk, const char **why_r)
{
	struct buf n, e;
	EVP_PKEY *pkey = NULL;
	BIGNUM *bn_n = NULL, *bn_e = NULL;
	OSSL_PARAM_BLD *bld = NULL;
	buf_init(&n, RSA_N_MAX);
	buf_init(&e, RSA_E_MAX);
	if (jwk_bytes(jwk, "n", &n) < 0 || jwk_bytes(jwk, "e", &e) < 0 ||
	    n.len == 0 || e.len == 0) {
		*why_r = "RSA key without valid base64url \"n\" and \"e\"";
		goto out;
	}
	bn_n = BN_bin2bn((const unsigned char *)n.data, (int)n.len, NULL);
	bn_e = BN_bin2bn((const unsigned char *)e.data, (int)e.len, NULL);
	if (bn_n == NULL || bn_e == NULL) {
		*why_r = "out of memory";
		goto out;
	}
	if (BN_num_bits(bn_n) < RSA_BITS_MIN) {
		*why_r = "RSA key under 2048 bits";
		goto out;
	}
	if (!BN_is_odd(bn_e) || BN_is_one(bn_e)) {
		*why_r = "RSA key with an invalid exponent";
		goto out;
	}
	bld = OSSL_PARAM_BLD_new();
	if (bld == NULL || OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_N, bn_n) != 1 ||
	    OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_E, bn_e) != 1 ||
	    (pkey = pkey_from_params("RSA", bld)) == NULL)
		*why_r = "RSA key OpenSSL cannot use";
out:
	OSSL_PARAM_BLD_free(bld);
	BN_free(bn_n);
	BN_free(bn_e);
	buf_deinit(&n);
	buf_deinit(&e);
	return pkey;
}

static EVP_PKEY *p256_key(json_t *jwk, const char **why_r)
{
	struct buf x, y;
	EVP_PKEY *pkey = NULL;
	OSSL_PARAM_BLD *bld = NULL;
	buf_init(&x, P256_COORD);
	buf_init(&y, P256_COORD);
	if (jwk_bytes(jwk, "x", &x) < 0 || jwk_bytes(jwk, "y", &y) < 0 ||
	    x.len != P256_COORD || y.len != P256_COORD) {
		*why_r = "P-256 key without 32-octet base64url \"x\" and \"y\"";
		goto out;
	}
	unsigned char point[1 + 2 * P256_COORD];
	point[0] = 0x04; /* uncompressed (SEC 1 2.3.3) */
	memcpy(point + 1, x.data, P256_COORD);
	memcpy(point + 1 + P256_COORD, y.data, P256_COORD);
	bld = OSSL_PARAM_BLD_new();
	if (bld == NULL ||
	    OSSL_PARAM_BLD_push_utf8_string(bld, OSSL_PKEY_PARAM_GROUP_NAME, "prime256v1", 0) != 1 ||
	    OSSL_PARAM_BLD_push_octet_string(bld, OSSL_PKEY_PARAM_PUB_KEY, point, sizeof(point)) != 1 ||
	    (pkey = pkey_from_params("EC", bld)) == NULL)
		*why_r = "P-256 key whose point is not on the curve";
out:
	OSSL_PARAM_BLD_free(bld);
	buf_deinit(&x);
	buf_deinit(&y);
	return pkey;
}

static bool member_is(json_t *obj, const char *name, const char *value)
{
	json_t *v = json_object_get(obj, name);
	return json_is_string(v) && strcmp(json_string_value(v), value) == 0;
}

/* One JWK: 1 (a usable key, in *key_r), 0 (skipped: another type, curve,
 * use or algorithm), or -1 with *why_r. */
static int parse_jwk(json_t *jwk, struct oauth_key *key_r, const char **why_r)
{
	if (!json_is_object(jwk)) {
		*why_r = "not a JSON object";
		return -1;
	}
	json_t *kty = json_object_get(jwk, "kty");
	if (!json_is_string(kty)) {
		*why_r = "no \"kty\"";
		return -1;
	}
	json_t *use = json_object_get(jwk, "use");
	if (use != NULL && !member_is(jwk, "use", "sig"))
		return 0; /* an encryption key */
	json_t *alg = json_object_get(jwk, "alg");
	json_t *kid = json_object_get(jwk, "kid");
	if (kid != NULL && (!json_is_string(kid) || json_string_length(kid) > OAUTH_KID_MAX ||
			    strlen(json_string_value(kid)) != json_string_length(kid))) {
		*why_r = "\"kid\" is not a string of at most 256 octets";
		return -1;
	}
	EVP_PKEY *pkey;
	if (strcmp(json_string_value(kty), "RSA") == 0) {
		if (alg != NULL && !member_is(jwk, "alg", "RS256"))
			return 0; /* RS384, PS256, RSA-OAEP ... */
		key_r->alg = ALG_RS256;
		pkey = rsa_key(jwk, why_r);
	} else if (strcmp(json_string_value(kty), "EC") == 0) {
		if (!member_is(jwk, "crv", "P-256") || (alg != NULL && !member_is(jwk, "alg", "ES256")))
			return 0; /* P-384, P-521 ... */
		key_r->alg = ALG_ES256;
		pkey = p256_key(jwk, why_r);
	} else {
		return 0; /* oct (a shared secret), OKP ... */
	}
	if (pkey == NULL)
		return -1;
	key_r->pkey = pkey;
	key_r->kid = kid != NULL ? xstrdup(json_string_value(kid)) : NULL;
	return 1;
}

static void keys_free(struct oauth_keys *k)
{
	for (unsigned int i = 0; i < k->count; i++) {
		EVP_PKEY_free(k->keys[i].pkey);
		free(k->keys[i].kid);
	}
	free(k->keys);
	free(k);
}

struct oauth_keys *oauth_keys_parse(const char *json, size_t len, const char **error_r)
{
	json_error_t jerr;
	json_t *root = json_loadb(json, len, JSON_REJECT_DUPLICATES, &jerr);
	if (root == NULL) {
		snprintf(load_error, sizeof(load_error), "not valid JSON: line %d: %.200s",
			 jerr.line, jerr.text);
		*error_r = load_error;
		return NULL;
	}
	json_t *list = json_object_get(root, "keys");
	if (!json_is_array(list)) {
		json_decref(root);
		*error_r = "not a JWKS: no \"keys\" array";
		return NULL;
	}
	struct oauth_keys *k = xcalloc(1, sizeof(*k));
	atomic_init(&k->refs, 1);
	k->keys = xcalloc(json_array_size(list) + 1, sizeof(*k->keys));
	size_t i;
	json_t *jwk;
	json_array_foreach(list, i, jwk) {
		const char *why = NULL;
		int r = parse_jwk(jwk, &k->keys[k->count], &why);
		if (r < 0) {
			json_t *kid = json_object_get(jwk, "kid");
			if (json_is_string(kid))
				snprintf(load_error, sizeof(load_error), "key %zu (kid \"%.100s\"): %s",
					 i + 1, json_string_value(kid), why);
			else
				snprintf(load_error, sizeof(load_error), "key %zu: %s", i + 1, why);
			*error_r = load_error;
			json_decref(root);
			keys_free(k);
			return NULL;
		}
		if (r > 0)
			k->count++;
	}
	json_decref(root);
	if (k->count == 0) {
		keys_free(k);
		*error_r = "no usable key (RSA for RS256, or EC P-256 for ES256, with use \"sig\" or none)";
		return NULL;
	}
	return k;
}

struct oauth_keys *oauth_keys_load(const char *path, char **error_r)
{
	struct buf b, err;
	buf_init(&b, JWKS_FILE_MAX);
	buf_init(&err, 0);
	struct oauth_keys *k = NULL;
	FILE *f = fopen(path, "rb");
	if (f == NULL) {
		buf_printf(&err, "%s: cannot open: %s", path, strerror(errno));
		goto out;
	}
	char chunk[8192];
	size_t n;
	while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0) {
		if (buf_append(&b, chunk, n) < 0) {
			buf_printf(&err, "%s: larger than 1M: not a key file", path);
			goto out;
		}
	}
	if (ferror(f)) {
		buf_printf(&err, "%s: cannot read: %s", path, strerror(errno));
		goto out;
	}
	const char *why;
	k = oauth_keys_parse(b.data, b.len, &why);
	if (k == NULL)
		buf_printf(&err, "%s: %s", path, why);
out:
	if (f != NULL)
		fclose(f);
	buf_deinit(&b);
	if (k == NULL)
		*error_r = buf_steal(&err);
	buf_deinit(&err);
	return k;
}

struct oauth_keys *oauth_keys_ref(struct oauth_keys *keys)
{
	atomic_fetch_add_explicit(&keys->refs, 1, memory_order_relaxed);
	return keys;
}

void oauth_keys_unref(struct oauth_keys **keysp)
{
	struct oauth_keys *k = *keysp;
	if (k == NULL)
		return;
	*keysp = NULL;
	if (atomic_fetch_sub_explicit(&k->refs, 1, memory_order_acq_rel) == 1)
		keys_free(k);
}

unsigned int oauth_keys_count(const struct oauth_keys *keys)
{
	return keys->count;
}

/* --- tokens --- */

/* Decodes one base64url part of the token into a JSON object (NULL when
 * it is not one, or has a name twice). */
static json_t *decode_object(const char *b64, size_t len)
{
	struct buf b;
	buf_init(&b, len);
	json_t *obj = NULL;
	if (base64url_decode(b64, len, &b) == 0) {
		obj = json_loadb(b.data, b.len, JSON_REJECT_DUPLICATES, NULL);
		if (obj != NULL && !json_is_object(obj)) {
			json_decref(obj);
			obj = NULL;
		}
	}
	buf_deinit(&b);
	return obj;
}

/* JWS ES256 signatures are r || s, 32 octets each (RFC 7518 3.4); OpenSSL
 * verifies the DER SEQUENCE of two INTEGERs (SEC 1). -1 when it cannot be
 * built. */
static int ecdsa_raw_to_der(const unsigned char *raw, unsigned char *der, size_t der_size,
			    size_t *der_len_r)
{
	ECDSA_SIG *sig = ECDSA_SIG_new();
	BIGNUM *r = BN_bin2bn(raw, P256_COORD, NULL);
	BIGNUM *s = BN_bin2bn(raw + P256_COORD, P256_COORD, NULL);
	int n = -1;
	if (sig != NULL && r != NULL && s != NULL && ECDSA_SIG_set0(sig, r, s) == 1) {
		r = s = NULL; /* owned by sig now */
		if (i2d_ECDSA_SIG(sig, NULL) <= (int)der_size) {
			unsigned char *p = der;
			n = i2d_ECDSA_SIG(sig, &p);
		}
	}
	BN_free(r);
	BN_free(s);
	ECDSA_SIG_free(sig);
	if (n <= 0)
		return -1;
	*der_len_r = (size_t)n;
	return 0;
}

static bool signature_ok(EVP_PKEY *pkey, const unsigned char *sig, size_t sig_len,
			 const char *signed_part, size_t signed_len)
{
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	bool ok = ctx != NULL &&
		  EVP_DigestVerifyInit(ctx, NULL, EVP_sha256(), NULL, pkey) == 1 &&
		  EVP_DigestVerify(ctx, sig, sig_len, (const unsigned char *)signed_part,
				   signed_len) == 1;
	EVP_MD_CTX_free(ctx);
	ERR_clear_error();
	return ok;
}

/* Checks the header and the signature over "header.payload". */
static int check_signature(const struct oauth_keys *keys, const char *token, size_t signed_len,
			   size_t header_len, const char *sig_b64, size_t sig_b64_len,
			   const char **error_r)
{
	json_t *header = decode_object(token, header_len);
	if (header == NULL) {
		*error_r = "header is not a base64url JSON object";
		return -1;
	}
	int ret = -1;
	json_t *alg = json_object_get(header, "alg");
	json_t *kid = json_object_get(header, "kid");
	const char *alg_name = json_is_string(alg) ? json_string_value(alg) : "";
	enum jws_alg want;
	struct buf sig;
	buf_init(&sig, sig_b64_len);
	if (strcmp(alg_name, "RS256") == 0) {
		want = ALG_RS256;
	} else if (strcmp(alg_name, "ES256") == 0) {
		want = ALG_ES256;
	} else {
		*error_r = str_eq_icase(alg_name, "none") ? "alg none refused"
			   : strncmp(alg_name, "HS", 2) == 0 ? "HMAC alg refused (RS256 or ES256 only)"
							      : "unsupported alg (RS256 or ES256 only)";
		goto out;
	}
	if (json_object_get(header, "crit") != NULL) {
		*error_r = "crit header parameters not supported";
		goto out;
	}
	if (kid != NULL && !json_is_string(kid)) {
		*error_r = "kid is not a string";
		goto out;
	}
	if (base64url_decode(sig_b64, sig_b64_len, &sig) < 0) {
		*error_r = "signature is not base64url";
		goto out;
	}
	unsigned char der[80];
	const unsigned char *sig_bytes = (const unsigned char *)sig.data;
	size_t sig_len = sig.len;
	if (want == ALG_ES256) {
		if (sig.len != 2 * P256_COORD ||
		    ecdsa_raw_to_der(sig_bytes, der, sizeof(der), &sig_len) < 0) {
			*error_r = "ES256 signature is not 64 octets (r || s)";
			goto out;
		}
		sig_bytes = der;
	}
	bool candidate = false;
	for (unsigned int i = 0; i < keys->count; i++) {
		const struct oauth_key *k = &keys->keys[i];
		if (k->alg != want ||
		    (kid != NULL && (k->kid == NULL || strcmp(k->kid, json_string_value(kid)) != 0)))
			continue;
		candidate = true;
		if (signature_ok(k->pkey, sig_bytes, sig_len, token, signed_len)) {
			ret = 0;
			goto out;
		}
	}
	*error_r = !candidate ? (kid != NULL ? "no key with the token's kid"
					     : "no key for the token's alg")
			      : "bad signature";
out:
	buf_deinit(&sig);
	json_decref(header);
	return ret;
}

/* A time claim: 1 present and a number (in *t_r), 0 absent, -1 not a number. */
static int time_claim(json_t *claims, const char *name, double *t_r)
{
	json_t *v = json_object_get(claims, name);
	if (v == NULL)
		return 0;
	if (!json_is_number(v))
		return -1;
	*t_r = json_number_value(v);
	return 1;
}

static bool audience_ok(json_t *aud, const char *want)
{
	if (json_is_string(aud))
		return strcmp(json_string_value(aud), want) == 0;
	size_t i;
	json_t *v;
	if (!json_is_array(aud))
		return false;
	json_array_foreach(aud, i, v) {
		if (json_is_string(v) && strcmp(json_string_value(v), want) == 0)
			return true;
	}
	return false;
}

static int check_claims(json_t *claims, const struct oauth_policy *policy, time_t now,
			char *user_r, size_t user_size, const char **error_r)
{
	double exp = 0, nbf, iat;
	double t = (double)now;
	int r = time_claim(claims, "exp", &exp);
	if (r <= 0) {
		*error_r = r == 0 ? "no exp claim" : "exp is not a number";
		return -1;
	}
	if (!(t < exp + OAUTH_LEEWAY_SECS)) {
		*error_r = "expired";
		return -1;
	}
	if ((r = time_claim(claims, "nbf", &nbf)) < 0) {
		*error_r = "nbf is not a number";
		return -1;
	}
	if (r > 0 && !(nbf <= t + OAUTH_LEEWAY_SECS)) {
		*error_r = "not valid yet (nbf)";
		return -1;
	}
	if ((r = time_claim(claims, "iat", &iat)) < 0) {
		*error_r = "iat is not a number";
		return -1;
	}
	if (r > 0 && !(iat <= t + OAUTH_LEEWAY_SECS)) {
		*error_r = "issued in the future (iat)";
		return -1;
	}
	json_t *iss = json_object_get(claims, "iss");
	if (!json_is_string(iss) || strcmp(json_string_value(iss), policy->issuer) != 0) {
		*error_r = "wrong issuer";
		return -1;
	}
	if (!audience_ok(json_object_get(claims, "aud"), policy->audience)) {
		*error_r = "wrong audience";
		return -1;
	}
	const char *name = policy->user_claim != NULL ? policy->user_claim : "email";
	json_t *user = json_object_get(claims, name);
	if (!json_is_string(user) || json_string_length(user) == 0) {
		*error_r = "no user claim (or not a string)";
		return -1;
	}
	if (json_string_length(user) >= user_size) {
		*error_r = "user claim too long";
		return -1;
	}
	memcpy(user_r, json_string_value(user), json_string_length(user) + 1);
	return 0;
}

int oauth_verify(const struct oauth_keys *keys, const struct oauth_policy *policy,
		 const char *token, size_t len, time_t now, char *user_r, size_t user_size,
		 const char **error_r)
{
	if (user_size > 0)
		user_r[0] = '\0';
	if (len == 0 || len > OAUTH_TOKEN_MAX) {
		*error_r = len == 0 ? "empty token" : "token too long";
		return -1;
	}
	const char *dot1 = memchr(token, '.', len);
	const char *dot2 = dot1 == NULL ? NULL : memchr(dot1 + 1, '.', len - (size_t)(dot1 + 1 - token));
	if (dot2 == NULL || memchr(dot2 + 1, '.', len - (size_t)(dot2 + 1 - token)) != NULL) {
		*error_r = "not a compact JWS (header.payload.signature)";
		return -1;
	}
	size_t header_len = (size_t)(dot1 - token), signed_len = (size_t)(dot2 - token);
	const char *sig = dot2 + 1;
	if (check_signature(keys, token, signed_len, header_len, sig, len - signed_len - 1,
			    error_r) < 0)
		return -1;
	json_t *claims = decode_object(dot1 + 1, (size_t)(dot2 - dot1 - 1));
	if (claims == NULL) {
		*error_r = "payload is not a base64url JSON object";
		return -1;
	}
	int ret = check_claims(claims, policy, now, user_r, user_size, error_r);
	json_decref(claims);
	return ret;
}
