/*
 * Unit tests for src/auth/oauth: JWKS loading and JWT verification, with
 * keys generated here (RSA 2048 and P-256) and tokens signed here with
 * OpenSSL. Covers good RS256 and ES256 tokens, every claim check (exp,
 * nbf, iat, iss, aud as a string and an array, the user claim, wrong claim
 * types), kid matching, refused algorithms (none, HS256, an alg that does
 * not match the key type), tampered payloads and signatures, the ES256
 * raw r || s form against DER, malformed tokens, and bad key files.
 */
#include <jansson.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "base64.h"
#include "buf.h"
#include "oauth.h"

#include "test.h"

#define ISS "https://idp.example.org/"
#define AUD "tern-mail"
#define USER "alice@example.org"

static EVP_PKEY *rsa, *ec, *rsa_other;
static struct oauth_keys *keys;
static const struct oauth_policy policy = { ISS, AUD, NULL };
static time_t now;

/* --- making keys and tokens --- */

/* The buf's contents, the buf itself released. */
static char *take(struct buf *b)
{
	char *p = buf_steal(b);
	buf_deinit(b);
	return p;
}

static char *b64url_bn(const BIGNUM *bn, int pad_to)
{
	unsigned char bytes[1024];
	int n = pad_to > 0 ? BN_bn2binpad(bn, bytes, pad_to) : BN_bn2bin(bn, bytes);
	struct buf b;
	buf_init(&b, 0);
	base64url_encode(bytes, (size_t)n, &b);
	return take(&b);
}

static json_t *rsa_jwk(EVP_PKEY *k, const char *kid)
{
	BIGNUM *n = NULL, *e = NULL;
	EVP_PKEY_get_bn_param(k, OSSL_PKEY_PARAM_RSA_N, &n);
	EVP_PKEY_get_bn_param(k, OSSL_PKEY_PARAM_RSA_E, &e);
	char *sn = b64url_bn(n, 0), *se = b64url_bn(e, 0);
	json_t *jwk = json_pack("{s:s, s:s, s:s, s:s, s:s, s:s}", "kty", "RSA", "kid", kid, "use",
				"sig", "alg", "RS256", "n", sn, "e", se);
	free(sn);
	free(se);
	BN_free(n);
	BN_free(e);
	return jwk;
}

static json_t *ec_jwk(EVP_PKEY *k, const char *kid)
{
	BIGNUM *x = NULL, *y = NULL;
	EVP_PKEY_get_bn_param(k, OSSL_PKEY_PARAM_EC_PUB_X, &x);
	EVP_PKEY_get_bn_param(k, OSSL_PKEY_PARAM_EC_PUB_Y, &y);
	char *sx = b64url_bn(x, 32), *sy = b64url_bn(y, 32);
	json_t *jwk = json_pack("{s:s, s:s, s:s, s:s, s:s}", "kty", "EC", "crv", "P-256", "kid", kid,
				"x", sx, "y", sy);
	free(sx);
	free(sy);
	BN_free(x);
	BN_free(y);
	return jwk;
}

static struct oauth_keys *parse_jwks(json_t *root, const char **error_r)
{
	char *text = json_dumps(root, 0);
	struct oauth_keys *k = oauth_keys_parse(text, strlen(text), error_r);
	free(text);
	json_decref(root);
	return k;
}

enum sig_form { SIG_JWS, SIG_DER, SIG_NONE };

static void append_b64url(struct buf *b, const void *p, size_t n)
{
	if (base64url_encode(p, n, b) < 0)
		abort();
}

/* DER ECDSA-Sig-Value -> r || s, 32 octets each. */
static void der_to_raw(const unsigned char *der, size_t len, unsigned char raw[64])
{
	ECDSA_SIG *sig = d2i_ECDSA_SIG(NULL, &der, (long)len);
	const BIGNUM *r, *s;
	ECDSA_SIG_get0(sig, &r, &s);
	BN_bn2binpad(r, raw, 32);
	BN_bn2binpad(s, raw + 32, 32);
	ECDSA_SIG_free(sig);
}

/* header.payload.signature, signed by key (RS256 or ES256 by the key's
 * type). *raw_r, when not NULL, gets the ES256 r || s. */
static char *make_token_raw(const char *header, const char *payload, EVP_PKEY *key,
			    enum sig_form form, unsigned char *raw_r)
{
	struct buf t;
	buf_init(&t, 0);
	append_b64url(&t, header, strlen(header));
	buf_append_c(&t, '.');
	append_b64url(&t, payload, strlen(payload));
	buf_append_c(&t, '.');
	if (form == SIG_NONE)
		return take(&t);
	unsigned char sig[1024];
	size_t sig_len = sizeof(sig);
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	if (EVP_DigestSignInit(ctx, NULL, EVP_sha256(), NULL, key) != 1 ||
	    EVP_DigestSign(ctx, sig, &sig_len, (unsigned char *)t.data, t.len - 1) != 1)
		abort();
	EVP_MD_CTX_free(ctx);
	if (EVP_PKEY_get_base_id(key) == EVP_PKEY_EC && form == SIG_JWS) {
		unsigned char raw[64];
		der_to_raw(sig, sig_len, raw);
		if (raw_r != NULL)
			memcpy(raw_r, raw, 64);
		append_b64url(&t, raw, 64);
	} else {
		append_b64url(&t, sig, sig_len);
	}
	return take(&t);
}

static char *make_token(const char *header, const char *payload, EVP_PKEY *key)
{
	return make_token_raw(header, payload, key, SIG_JWS, NULL);
}

/* A payload with the usual claims, exp relative to now, and extra JSON
 * members appended (e.g. ",\"nbf\":1"). */
static char *payload(long exp_delta, const char *extra)
{
	static char p[1024];
	snprintf(p, sizeof(p), "{\"iss\":\"%s\",\"aud\":\"%s\",\"email\":\"%s\",\"exp\":%lld%s}",
		 ISS, AUD, USER, (long long)now + exp_delta, extra);
	return p;
}

#define RS_HDR "{\"alg\":\"RS256\",\"kid\":\"rsa1\",\"typ\":\"JWT\"}"
#define ES_HDR "{\"alg\":\"ES256\",\"kid\":\"ec1\"}"

/* Verifies token against the test keys and policy; frees it. Returns the
 * error phrase, or NULL on success (the user then in *user). */
static const char *verify_p(char *token, const struct oauth_policy *pol, char *user, size_t size)
{
	const char *error = NULL;
	int r = oauth_verify(keys, pol, token, strlen(token), now, user, size, &error);
	free(token);
	if (r == 0)
		return NULL;
	if (error == NULL)
		return "(no error phrase)";
	return error;
}

static const char *verify(char *token)
{
	char user[321];
	const char *e = verify_p(token, &policy, user, sizeof(user));
	if (e == NULL && strcmp(user, USER) != 0)
		return "(wrong user)";
	return e;
}

#define CHECK_OK(token) do { const char *_e = verify(token); test_checks++; if (_e != NULL) { \
	test_failures++; fprintf(stderr, "%s:%d: refused: %s\n", __FILE__, __LINE__, _e); } } while (0)
#define CHECK_REFUSED(token, why) do { const char *_e = verify(token); test_checks++; \
	if (_e == NULL || strcmp(_e, why) != 0) { test_failures++; fprintf(stderr, \
	"%s:%d: %s, expected refusal \"%s\"\n", __FILE__, __LINE__, _e ? _e : "accepted", why); } \
	} while (0)

/* --- the tests --- */

static void test_good_tokens(void)
{
	CHECK_OK(make_token(RS_HDR, payload(600, ""), rsa));
	CHECK_OK(make_token(ES_HDR, payload(600, ""), ec));
	/* without a kid, any key of the type */
	CHECK_OK(make_token("{\"alg\":\"RS256\"}", payload(600, ""), rsa));
	CHECK_OK(make_token("{\"alg\":\"ES256\"}", payload(600, ""), ec));
	/* the second RSA key of the set, by its kid */
	CHECK_OK(make_token("{\"alg\":\"RS256\",\"kid\":\"rsa2\"}", payload(600, ""), rsa_other));
	/* nbf, iat in the past; aud an array containing ours; real numbers */
	CHECK_OK(make_token(RS_HDR, payload(600, ",\"nbf\":1,\"iat\":1000000000.5"), rsa));
	CHECK_OK(make_token(RS_HDR,
			    "{\"iss\":\"" ISS "\",\"aud\":[\"other\",\"" AUD "\"],\"email\":\"" USER
			    "\",\"exp\":99999999999}",
			    rsa));
	/* within the leeway */
	CHECK_OK(make_token(RS_HDR, payload(-30, ""), rsa));
	char nbf[64];
	snprintf(nbf, sizeof(nbf), ",\"nbf\":%lld", (long long)now + 30);
	CHECK_OK(make_token(RS_HDR, payload(600, nbf), rsa));
	/* another user claim */
	struct oauth_policy p = { ISS, AUD, "preferred_username" };
	char user[64];
	CHECK(verify_p(make_token(RS_HDR, payload(600, ",\"preferred_username\":\"bob@example.org\""), rsa),
		       &p, user, sizeof(user)) == NULL);
	CHECK_STR(user, "bob@example.org");
	CHECK_STR(verify_p(make_token(RS_HDR, payload(600, ""), rsa), &p, user, sizeof(user)),
		  "no user claim (or not a string)");
	CHECK_STR(user, "");
	/* the user buffer is a cap */
	CHECK_STR(verify_p(make_token(RS_HDR, payload(600, ""), rsa), &policy, user, 5),
		  "user claim too long");
}

static void test_claims(void)
{
	CHECK_REFUSED(make_token(RS_HDR, payload(-120, ""), rsa), "expired");
	CHECK_REFUSED(make_token(ES_HDR, payload(-3600, ""), ec), "expired");
	char extra[128];
	snprintf(extra, sizeof(extra), ",\"nbf\":%lld", (long long)now + 600);
	CHECK_REFUSED(make_token(RS_HDR, payload(1200, extra), rsa), "not valid yet (nbf)");
	snprintf(extra, sizeof(extra), ",\"iat\":%lld", (long long)now + 600);
	CHECK_REFUSED(make_token(RS_HDR, payload(1200, extra), rsa), "issued in the future (iat)");
	CHECK_REFUSED(make_token(RS_HDR, "{\"iss\":\"" ISS "\",\"aud\":\"" AUD "\",\"email\":\"" USER "\"}", rsa),
		      "no exp claim");
	CHECK_REFUSED(make_token(RS_HDR,
				 "{\"iss\":\"https://evil.example/\",\"aud\":\"" AUD
				 "\",\"email\":\"" USER "\",\"exp\":99999999999}",
				 rsa),
		      "wrong issuer");
	CHECK_REFUSED(make_token(RS_HDR, "{\"aud\":\"" AUD "\",\"email\":\"" USER "\",\"exp\":99999999999}", rsa),
		      "wrong issuer");
	/* an issuer that differs only by its trailing slash is another issuer */
	CHECK_REFUSED(make_token(RS_HDR,
				 "{\"iss\":\"https://idp.example.org\",\"aud\":\"" AUD
				 "\",\"email\":\"" USER "\",\"exp\":99999999999}",
				 rsa),
		      "wrong issuer");
	CHECK_REFUSED(make_token(RS_HDR,
				 "{\"iss\":\"" ISS "\",\"aud\":\"other-app\",\"email\":\"" USER
				 "\",\"exp\":99999999999}",
				 rsa),
		      "wrong audience");
	CHECK_REFUSED(make_token(RS_HDR,
				 "{\"iss\":\"" ISS "\",\"aud\":[\"other-app\",\"more\"],\"email\":\"" USER
				 "\",\"exp\":99999999999}",
				 rsa),
		      "wrong audience");
	CHECK_REFUSED(make_token(RS_HDR,
				 "{\"iss\":\"" ISS "\",\"aud\":[],\"email\":\"" USER "\",\"exp\":99999999999}",
				 rsa),
		      "wrong audience");
	CHECK_REFUSED(make_token(RS_HDR, "{\"iss\":\"" ISS "\",\"email\":\"" USER "\",\"exp\":99999999999}", rsa),
		      "wrong audience");
	/* wrong claim types */
	CHECK_REFUSED(make_token(RS_HDR,
				 "{\"iss\":\"" ISS "\",\"aud\":\"" AUD "\",\"email\":\"" USER
				 "\",\"exp\":\"99999999999\"}",
				 rsa),
		      "exp is not a number");
	CHECK_REFUSED(make_token(RS_HDR, payload(600, ",\"nbf\":\"0\""), rsa), "nbf is not a number");
	CHECK_REFUSED(make_token(RS_HDR, payload(600, ",\"iat\":null"), rsa), "iat is not a number");
	CHECK_REFUSED(make_token(RS_HDR,
				 "{\"iss\":\"" ISS "\",\"aud\":\"" AUD "\",\"email\":42,\"exp\":99999999999}",
				 rsa),
		      "no user claim (or not a string)");
	CHECK_REFUSED(make_token(RS_HDR,
				 "{\"iss\":[\"" ISS "\"],\"aud\":\"" AUD "\",\"email\":\"" USER
				 "\",\"exp\":99999999999}",
				 rsa),
		      "wrong issuer");
	CHECK_REFUSED(make_token(RS_HDR,
				 "{\"iss\":\"" ISS "\",\"aud\":{\"a\":\"" AUD "\"},\"email\":\"" USER
				 "\",\"exp\":99999999999}",
				 rsa),
		      "wrong audience");
	CHECK_REFUSED(make_token(RS_HDR,
				 "{\"iss\":\"" ISS "\",\"aud\":\"" AUD "\",\"email\":\"\",\"exp\":99999999999}",
				 rsa),
		      "no user claim (or not a string)");
	/* a name twice: which one counts would be the parser's choice */
	CHECK_REFUSED(make_token(RS_HDR, payload(600, ",\"email\":\"mallory@example.org\""), rsa),
		      "payload is not a base64url JSON object");
	CHECK_REFUSED(make_token(RS_HDR, "[1,2]", rsa), "payload is not a base64url JSON object");
	CHECK_REFUSED(make_token(RS_HDR, "not json", rsa), "payload is not a base64url JSON object");
}

static void test_algorithms_and_keys(void)
{
	CHECK_REFUSED(make_token("{\"alg\":\"RS256\",\"kid\":\"nope\"}", payload(600, ""), rsa),
		      "no key with the token's kid");
	/* the EC key's kid with RS256: no key of that type has it */
	CHECK_REFUSED(make_token("{\"alg\":\"RS256\",\"kid\":\"ec1\"}", payload(600, ""), rsa),
		      "no key with the token's kid");
	CHECK_REFUSED(make_token("{\"alg\":\"ES256\",\"kid\":\"rsa1\"}", payload(600, ""), ec),
		      "no key with the token's kid");
	/* signed by a key that is not in the set */
	EVP_PKEY *stranger = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
	CHECK_REFUSED(make_token(ES_HDR, payload(600, ""), stranger), "bad signature");
	CHECK_REFUSED(make_token("{\"alg\":\"ES256\"}", payload(600, ""), stranger), "bad signature");
	EVP_PKEY_free(stranger);
	/* rsa2's kid, signed by rsa1 */
	CHECK_REFUSED(make_token("{\"alg\":\"RS256\",\"kid\":\"rsa2\"}", payload(600, ""), rsa),
		      "bad signature");
	/* alg none, in any case, with or without a signature */
	CHECK_REFUSED(make_token_raw("{\"alg\":\"none\"}", payload(600, ""), NULL, SIG_NONE, NULL),
		      "alg none refused");
	CHECK_REFUSED(make_token_raw("{\"alg\":\"None\",\"kid\":\"rsa1\"}", payload(600, ""), NULL,
				     SIG_NONE, NULL),
		      "alg none refused");
	CHECK_REFUSED(make_token("{\"alg\":\"none\"}", payload(600, ""), rsa), "alg none refused");
	/* HS256 keyed with the RSA public key's modulus (the classic
	 * confusion attack), and with the set's shared-secret key */
	struct buf t;
	buf_init(&t, 0);
	const char *hs = "{\"alg\":\"HS256\",\"kid\":\"rsa1\"}";
	append_b64url(&t, hs, strlen(hs));
	buf_append_c(&t, '.');
	const char *pl = payload(600, "");
	append_b64url(&t, pl, strlen(pl));
	unsigned char mac[32];
	unsigned int mac_len = sizeof(mac);
	BIGNUM *n = NULL;
	EVP_PKEY_get_bn_param(rsa, OSSL_PKEY_PARAM_RSA_N, &n);
	unsigned char nbytes[512];
	int nlen = BN_bn2bin(n, nbytes);
	BN_free(n);
	HMAC(EVP_sha256(), nbytes, nlen, (unsigned char *)t.data, t.len, mac, &mac_len);
	buf_append_c(&t, '.');
	append_b64url(&t, mac, mac_len);
	CHECK_REFUSED(take(&t), "HMAC alg refused (RS256 or ES256 only)");
	CHECK_REFUSED(make_token("{\"alg\":\"HS256\",\"kid\":\"hmac1\"}", payload(600, ""), rsa),
		      "HMAC alg refused (RS256 or ES256 only)");
	CHECK_REFUSED(make_token("{\"alg\":\"RS512\"}", payload(600, ""), rsa),
		      "unsupported alg (RS256 or ES256 only)");
	CHECK_REFUSED(make_token("{\"alg\":\"PS256\"}", payload(600, ""), rsa),
		      "unsupported alg (RS256 or ES256 only)");
	CHECK_REFUSED(make_token("{\"kid\":\"rsa1\"}", payload(600, ""), rsa),
		      "unsupported alg (RS256 or ES256 only)");
	CHECK_REFUSED(make_token("{\"alg\":256}", payload(600, ""), rsa),
		      "unsupported alg (RS256 or ES256 only)");
	/* a token claiming ES256 signed with RSA, and the other way round */
	CHECK_REFUSED(make_token("{\"alg\":\"ES256\"}", payload(600, ""), rsa),
		      "ES256 signature is not 64 octets (r || s)");
	CHECK_REFUSED(make_token("{\"alg\":\"RS256\"}", payload(600, ""), ec), "bad signature");
	CHECK_REFUSED(make_token("{\"alg\":\"RS256\",\"crit\":[\"exp\"]}", payload(600, ""), rsa),
		      "crit header parameters not supported");
	CHECK_REFUSED(make_token("{\"alg\":\"RS256\",\"kid\":7}", payload(600, ""), rsa),
		      "kid is not a string");
	CHECK_REFUSED(make_token("{\"alg\":\"RS256\",\"alg\":\"none\"}", payload(600, ""), rsa),
		      "header is not a base64url JSON object");
}

/* Replaces the part-th dot-separated part (0, 1, 2) of token. */
static char *replace_part(char *token, int part, const char *b64)
{
	char *dot1 = strchr(token, '.'), *dot2 = strchr(dot1 + 1, '.');
	struct buf b;
	buf_init(&b, 0);
	if (part == 0)
		buf_printf(&b, "%s%s", b64, dot1);
	else if (part == 1)
		buf_printf(&b, "%.*s.%s%s", (int)(dot1 - token), token, b64, dot2);
	else
		buf_printf(&b, "%.*s.%s", (int)(dot2 - token), token, b64);
	free(token);
	return take(&b);
}

static void test_tampering(void)
{
	/* the payload of another token, with this one's signature */
	char *good = make_token(RS_HDR, payload(600, ""), rsa);
	struct buf p;
	buf_init(&p, 0);
	const char *evil = "{\"iss\":\"" ISS "\",\"aud\":\"" AUD
			   "\",\"email\":\"mallory@example.org\",\"exp\":99999999999}";
	append_b64url(&p, evil, strlen(evil));
	CHECK_REFUSED(replace_part(good, 1, p.data), "bad signature");
	buf_deinit(&p);
	/* one bit of the signature, at its start, middle and end */
	for (int which = 0; which < 3; which++) {
		for (int es = 0; es < 2; es++) {
			char *t = es ? make_token(ES_HDR, payload(600, ""), ec)
				     : make_token(RS_HDR, payload(600, ""), rsa);
			char *sig = strrchr(t, '.') + 1;
			size_t len = strlen(sig);
			struct buf raw, enc;
			buf_init(&raw, 0);
			buf_init(&enc, 0);
			base64url_decode(sig, len, &raw);
			size_t at = which == 0 ? 0 : which == 1 ? raw.len / 2 : raw.len - 1;
			raw.data[at] ^= 0x01;
			append_b64url(&enc, raw.data, raw.len);
			CHECK_REFUSED(replace_part(t, 2, enc.data), "bad signature");
			buf_deinit(&raw);
			buf_deinit(&enc);
		}
	}
	/* the header's kid changed after signing (to another valid key) */
	char *t = make_token(RS_HDR, payload(600, ""), rsa);
	struct buf h;
	buf_init(&h, 0);
	const char *other = "{\"alg\":\"RS256\",\"kid\":\"rsa2\",\"typ\":\"JWT\"}";
	append_b64url(&h, other, strlen(other));
	CHECK_REFUSED(replace_part(t, 0, h.data), "bad signature");
	buf_deinit(&h);
	/* a signature removed */
	CHECK_REFUSED(replace_part(make_token(RS_HDR, payload(600, ""), rsa), 2, ""), "bad signature");
}

static void test_es256_forms(void)
{
	/* DER, as OpenSSL makes it, is not the JWS form */
	CHECK_REFUSED(make_token_raw(ES_HDR, payload(600, ""), ec, SIG_DER, NULL),
		      "ES256 signature is not 64 octets (r || s)");
	/* r or s with leading zero octets: fixed-width in the JWS, shorter in
	 * the DER INTEGER; both must verify. About 1 signature in 128 has
	 * one; keep signing until one of each kind is seen. */
	int seen_r = 0, seen_s = 0, tries = 0;
	while ((seen_r == 0 || seen_s == 0) && tries++ < 20000) {
		unsigned char raw[64];
		char *tok = make_token_raw(ES_HDR, payload(600, ""), ec, SIG_JWS, raw);
		bool zr = raw[0] == 0, zs = raw[32] == 0;
		if (!zr && !zs) {
			free(tok);
			continue;
		}
		seen_r += zr;
		seen_s += zs;
		CHECK_OK(tok);
	}
	CHECK(seen_r > 0 && seen_s > 0);
	/* r = 0 or s = 0 is no signature; all-ones is out of range */
	unsigned char raw[64];
	struct buf b;
	for (int k = 0; k < 3; k++) {
		char *tok = make_token_raw(ES_HDR, payload(600, ""), ec, SIG_JWS, raw);
		if (k == 0)
			memset(raw, 0, 32);
		else if (k == 1)
			memset(raw + 32, 0, 32);
		else
			memset(raw, 0xff, 64);
		buf_init(&b, 0);
		append_b64url(&b, raw, 64);
		CHECK_REFUSED(replace_part(tok, 2, b.data), "bad signature");
		buf_deinit(&b);
	}
	/* 63 and 65 octets */
	char *tok = make_token_raw(ES_HDR, payload(600, ""), ec, SIG_JWS, raw);
	buf_init(&b, 0);
	append_b64url(&b, raw, 63);
	tok = replace_part(tok, 2, b.data);
	CHECK_REFUSED(tok, "ES256 signature is not 64 octets (r || s)");
	buf_reset(&b);
	unsigned char more[65] = { 0 };
	memcpy(more + 1, raw, 64);
	append_b64url(&b, more, 65);
	CHECK_REFUSED(replace_part(make_token(ES_HDR, payload(600, ""), ec), 2, b.data),
		      "ES256 signature is not 64 octets (r || s)");
	buf_deinit(&b);
}

static void test_malformed(void)
{
	char *good = make_token(RS_HDR, payload(600, ""), rsa);
	size_t len = strlen(good);
	const char *e;
	CHECK_INT(oauth_verify(keys, &policy, good, 0, now, NULL, 0, &e), -1);
	CHECK_STR(e, "empty token");
	char user[64];
	/* cut anywhere: refused, never accepted, never a crash */
	int accepted = 0;
	for (size_t cut = 0; cut < len; cut++)
		if (oauth_verify(keys, &policy, good, cut, now, user, sizeof(user), &e) == 0)
			accepted++;
	CHECK_INT(accepted, 0);
	CHECK_INT(oauth_verify(keys, &policy, good, len, now, user, sizeof(user), &e), 0);
	struct buf b;
	buf_init(&b, 0);
	buf_printf(&b, "%s.", good);
	CHECK_REFUSED(buf_steal(&b), "not a compact JWS (header.payload.signature)");
	buf_printf(&b, "%s", strchr(good, '.') + 1);
	CHECK_REFUSED(buf_steal(&b), "not a compact JWS (header.payload.signature)");
	/* padding, the standard alphabet, whitespace: not base64url */
	buf_printf(&b, "%s=", good);
	CHECK_REFUSED(buf_steal(&b), "signature is not base64url");
	buf_printf(&b, " %s", good);
	CHECK_REFUSED(buf_steal(&b), "header is not a base64url JSON object");
	buf_printf(&b, "e30.e30.AAAA");
	CHECK_REFUSED(buf_steal(&b), "unsupported alg (RS256 or ES256 only)");
	buf_deinit(&b);
	char *big = xcalloc(OAUTH_TOKEN_MAX + 2, 1);
	memset(big, 'A', OAUTH_TOKEN_MAX + 1);
	CHECK_REFUSED(big, "token too long");
	free(good);
}

static char *write_file(const char *text)
{
	char *path = xstrdup("/tmp/test-oauth-XXXXXX");
	int fd = mkstemp(path);
	if (fd < 0 || write(fd, text, strlen(text)) != (ssize_t)strlen(text))
		abort();
	close(fd);
	return path;
}

#define CHECK_BAD_JWKS(json, why) do { const char *_e = NULL; test_checks++; \
	struct oauth_keys *_k = oauth_keys_parse(json, strlen(json), &_e); \
	if (_k != NULL || _e == NULL || strstr(_e, why) == NULL) { test_failures++; \
	fprintf(stderr, "%s:%d: JWKS %s, expected \"%s\"\n", __FILE__, __LINE__, \
	_k ? "accepted" : _e, why); } oauth_keys_unref(&_k); } while (0)

static void test_jwks(void)
{
	CHECK_BAD_JWKS("", "not valid JSON");
	CHECK_BAD_JWKS("{\"keys\": [", "not valid JSON: line 1");
	CHECK_BAD_JWKS("[]", "no \"keys\" array");
	CHECK_BAD_JWKS("{\"keys\": {}}", "no \"keys\" array");
	CHECK_BAD_JWKS("{\"keys\": []}", "no usable key");
	CHECK_BAD_JWKS("{\"keys\": [{\"kty\":\"oct\",\"k\":\"c2VjcmV0\"}]}", "no usable key");
	CHECK_BAD_JWKS("{\"keys\": [{\"kty\":\"EC\",\"crv\":\"P-384\",\"x\":\"AA\",\"y\":\"AA\"}]}",
		       "no usable key");
	CHECK_BAD_JWKS("{\"keys\": [1]}", "key 1: not a JSON object");
	CHECK_BAD_JWKS("{\"keys\": [{\"n\":\"AQAB\"}]}", "key 1: no \"kty\"");
	CHECK_BAD_JWKS("{\"keys\": [{\"kty\":\"RSA\",\"kid\":\"k\",\"n\":\"AQ==\",\"e\":\"AQAB\"}]}",
		       "key 1 (kid \"k\"): RSA key without valid base64url");
	CHECK_BAD_JWKS("{\"keys\": [{\"kty\":\"RSA\",\"e\":\"AQAB\"}]}", "RSA key without valid");
	CHECK_BAD_JWKS("{\"keys\": [{\"kty\":\"EC\",\"crv\":\"P-256\",\"x\":\"AA\",\"y\":\"AA\"}]}",
		       "P-256 key without 32-octet");
	CHECK_BAD_JWKS("{\"keys\": [{\"kty\":\"RSA\",\"kid\":5,\"n\":\"AQAB\",\"e\":\"AQAB\"}]}",
		       "\"kid\" is not a string");
	CHECK_BAD_JWKS("{\"keys\": [], \"keys\": []}", "not valid JSON");

	/* a 1024-bit RSA key; a P-256 point moved off the curve; e = 1 */
	EVP_PKEY *small = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)1024);
	json_t *jwk = rsa_jwk(small, "small");
	json_t *root = json_pack("{s:[o]}", "keys", jwk);
	const char *e = NULL;
	CHECK(parse_jwks(root, &e) == NULL && strstr(e, "under 2048 bits") != NULL);
	EVP_PKEY_free(small);
	jwk = rsa_jwk(rsa, "e1");
	json_object_set_new(jwk, "e", json_string("AQ"));
	CHECK(parse_jwks(json_pack("{s:[o]}", "keys", jwk), &e) == NULL &&
	      strstr(e, "invalid exponent") != NULL);
	jwk = ec_jwk(ec, "off");
	const char *y = json_string_value(json_object_get(jwk, "y"));
	char *y2 = xstrdup(y);
	y2[5] = y2[5] == 'A' ? 'B' : 'A';
	json_object_set_new(jwk, "y", json_string(y2));
	free(y2);
	CHECK(parse_jwks(json_pack("{s:[o]}", "keys", jwk), &e) == NULL &&
	      strstr(e, "not on the curve") != NULL);

	/* skipped: encryption keys, other algorithms; kept: the rest */
	json_t *enc = rsa_jwk(rsa, "enc");
	json_object_set_new(enc, "use", json_string("enc"));
	json_t *ps = rsa_jwk(rsa, "ps");
	json_object_set_new(ps, "alg", json_string("PS256"));
	struct oauth_keys *k = parse_jwks(json_pack("{s:[o,o,o]}", "keys", enc, ps, ec_jwk(ec, "x")), &e);
	CHECK(k != NULL && oauth_keys_count(k) == 1);
	oauth_keys_unref(&k);
	CHECK(k == NULL);
	oauth_keys_unref(&k);

	/* from a file: errors name it */
	char *err = NULL;
	CHECK(oauth_keys_load("/nonexistent/jwks.json", &err) == NULL);
	CHECK(err != NULL && strstr(err, "/nonexistent/jwks.json: cannot open") != NULL);
	free(err);
	char *path = write_file("{\"keys\": 3}");
	err = NULL;
	CHECK(oauth_keys_load(path, &err) == NULL);
	CHECK(err != NULL && strncmp(err, path, strlen(path)) == 0 &&
	      strstr(err, "no \"keys\" array") != NULL);
	free(err);
	unlink(path);
	free(path);
	root = json_pack("{s:[o]}", "keys", ec_jwk(ec, "file"));
	char *text = json_dumps(root, 0);
	json_decref(root);
	path = write_file(text);
	free(text);
	err = NULL;
	k = oauth_keys_load(path, &err);
	CHECK(k != NULL && err == NULL && oauth_keys_count(k) == 1);
	/* references: the set lives until the last one goes */
	struct oauth_keys *again = oauth_keys_ref(k);
	oauth_keys_unref(&k);
	char user[64];
	char *tok = make_token("{\"alg\":\"ES256\",\"kid\":\"file\"}", payload(600, ""), ec);
	CHECK_INT(oauth_verify(again, &policy, tok, strlen(tok), now, user, sizeof(user), &e), 0);
	free(tok);
	oauth_keys_unref(&again);
	unlink(path);
	free(path);
}

int main(void)
{
	now = time(NULL);
	rsa = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048);
	rsa_other = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048);
	ec = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
	if (rsa == NULL || rsa_other == NULL || ec == NULL) {
		fprintf(stderr, "cannot generate the test keys\n");
		return 1;
	}
	json_t *hmac = json_pack("{s:s, s:s, s:s}", "kty", "oct", "kid", "hmac1", "k", "c2VjcmV0");
	const char *error = NULL;
	keys = parse_jwks(json_pack("{s:[o,o,o,o]}", "keys", rsa_jwk(rsa, "rsa1"), hmac,
				    ec_jwk(ec, "ec1"), rsa_jwk(rsa_other, "rsa2")),
			  &error);
	if (keys == NULL) {
		fprintf(stderr, "test JWKS refused: %s\n", error);
		return 1;
	}
	CHECK_INT(oauth_keys_count(keys), 3);
	test_good_tokens();
	test_claims();
	test_algorithms_and_keys();
	test_tampering();
	test_es256_forms();
	test_malformed();
	test_jwks();
	oauth_keys_unref(&keys);
	EVP_PKEY_free(rsa);
	EVP_PKEY_free(rsa_other);
	EVP_PKEY_free(ec);
	TEST_MAIN_END();
}
