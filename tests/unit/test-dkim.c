/*
 * Unit tests for dkim: the relaxed canonicalizations (RFC 6376 3.4.5's
 * example and the edge cases around trailing space and empty lines), key
 * loading (RSA PKCS#8 and traditional PEM, Ed25519, refusals), the DNS
 * record, and signatures checked by a verifier written here from the RFC
 * (its own canonicalization of the DKIM-Signature field, OpenSSL's verify),
 * the same at every split of the input, with header caps, a missing From,
 * bottom-up multiple instances and an empty body.
 *
 * Usage: test-dkim [DIR] (key files are written in a temporary directory
 * made there).
 */
#include "test.h"

#include <stdbool.h>
#include <stdint.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>

#include "base64.h"
#include "buf.h"
#include "dkim.h"
#include "dkim-private.h"

static char tmpdir[4096];
static EVP_PKEY *rsa_pkey, *ed_pkey;
static char rsa_file[4200], rsa_trad_file[4200], ed_file[4200];

#define NOW 1700000000

static void write_key(const char *path, EVP_PKEY *k, bool traditional)
{
	BIO *bio = BIO_new_file(path, "w");
	int ok = traditional ? PEM_write_bio_PrivateKey_traditional(bio, k, NULL, NULL, 0, NULL, NULL) :
		PEM_write_bio_PrivateKey(bio, k, NULL, NULL, 0, NULL, NULL);
	if (bio == NULL || ok != 1)
		abort();
	BIO_free(bio);
}

static void write_text(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");
	if (f == NULL || fputs(text, f) < 0)
		abort();
	fclose(f);
}

/* ---------------------------------------------------------------------- */
/* canonicalization */

static void emit_to_buf(void *ctx, const void *data, size_t len)
{
	buf_append(ctx, data, len);
}

/* The relaxed body of in, fed whole and at every split point. */
static void check_body(const char *in, size_t len, const char *expected)
{
	struct buf out;
	struct dkim_body_canon c;

	buf_init(&out, 0);
	for (size_t split = 0; split <= len; split++) {
		buf_reset(&out);
		dkim_body_canon_init(&c, emit_to_buf, &out);
		dkim_body_canon_feed(&c, in, split);
		dkim_body_canon_feed(&c, in + split, len - split);
		dkim_body_canon_finish(&c);
		if (out.len != strlen(expected) || memcmp(out.data, expected, out.len) != 0) {
			test_failures++;
			fprintf(stderr, "body canon of %zu octets split at %zu: got \"%s\"\n",
				len, split, out.data);
			break;
		}
	}
	test_checks++;
	buf_deinit(&out);
}

#define CHECK_BODY(in, expected) check_body(in, sizeof(in) - 1, expected)

static void check_header(const char *field, const char *expected)
{
	struct buf out;
	buf_init(&out, 0);
	CHECK_INT(dkim_canon_header(field, strlen(field), strcspn(field, ":"), &out), 0);
	CHECK_STR(out.data, expected);
	buf_deinit(&out);
}

static void test_canonicalization(void)
{
	/* RFC 6376 3.4.5 */
	check_header("A: X", "a:X\r\n");
	check_header("B : Y\t\r\n\tZ  ", "b:Y Z\r\n");
	CHECK_BODY(" C \r\nD \t E\r\n\r\n\r\n", " C\r\nD E\r\n");

	check_header("Subject:", "subject:\r\n");
	check_header("SUBJECT:\t  \r\n  hello   world \r\n ", "subject:hello world\r\n");
	check_header("X-Y:a\r\n\r\n b", "x-y:a b\r\n");
	check_header("To: <a@b>,\r\n\t<c@d>", "to:<a@b>, <c@d>\r\n");

	CHECK_BODY("", "");
	CHECK_BODY("\r\n", "");
	CHECK_BODY("\r\n\r\n\r\n", "");
	CHECK_BODY("  \r\n\t\r\n", "");
	CHECK_BODY("abc", "abc\r\n");
	CHECK_BODY("abc  ", "abc\r\n");
	CHECK_BODY("abc\r\n", "abc\r\n");
	CHECK_BODY("abc\r\n \r\n\r\n", "abc\r\n");
	CHECK_BODY("\r\n\r\nabc\r\n\r\ndef\r\n\r\n", "\r\n\r\nabc\r\n\r\ndef\r\n");
	CHECK_BODY("a  \t b\t\r\n", "a b\r\n");
	CHECK_BODY("  lead\r\n", " lead\r\n");
	/* a bare CR or LF is content, not a line end */
	CHECK_BODY("a\rb\r\n", "a\rb\r\n");
	CHECK_BODY("a\r\r\n", "a\r\r\n");
	CHECK_BODY("a \r \r\n", "a \r\r\n");
	CHECK_BODY("a\nb\r\n", "a\nb\r\n");
	CHECK_BODY("a\r", "a\r\r\n");
	CHECK_BODY("caf\xc3\xa9 \xff\r\n", "caf\xc3\xa9 \xff\r\n");

	/* a long run of empty lines inside the body costs a counter only */
	struct buf out;
	struct dkim_body_canon c;
	buf_init(&out, 0);
	dkim_body_canon_init(&c, emit_to_buf, &out);
	for (int i = 0; i < 100000; i++)
		dkim_body_canon_feed(&c, "\r\n", 2);
	dkim_body_canon_feed(&c, "x", 1);
	dkim_body_canon_finish(&c);
	CHECK_INT(out.len, 200003);
	buf_deinit(&out);
}

/* ---------------------------------------------------------------------- */
/* a verifier, from RFC 6376 6.1.3 */

/* Relaxed canonicalization of a field given with its name, written again
 * here (not dkim_canon_header()) so the signer is checked against a
 * second reading of the RFC. No CRLF at the end. */
static void relaxed(const char *f, size_t len, struct buf *out)
{
	const char *colon = memchr(f, ':', len);
	size_t nl = (size_t)(colon - f);
	struct buf v;

	while (nl > 0 && (f[nl - 1] == ' ' || f[nl - 1] == '\t'))
		nl--;
	for (size_t i = 0; i < nl; i++)
		buf_append_c(out, (char)(f[i] >= 'A' && f[i] <= 'Z' ? f[i] + 32 : f[i]));
	buf_append_c(out, ':');
	buf_init(&v, 0);
	for (const char *p = colon + 1; p < f + len; p++) {
		if (*p == '\r' && p + 1 < f + len && p[1] == '\n') {
			p++;
			continue;
		}
		if ((*p == ' ' || *p == '\t')) {
			if (v.len > 0 && v.data[v.len - 1] != ' ')
				buf_append_c(&v, ' ');
		} else {
			buf_append_c(&v, *p);
		}
	}
	while (v.len > 0 && v.data[v.len - 1] == ' ')
		v.len--;
	buf_append(out, v.data, v.len);
	buf_deinit(&v);
}

/* The value of tag name= in the signature field (its tag-list split at
 * ';', RFC 6376 3.2), whitespace removed. */
static bool tag_value(const char *sig, const char *name, struct buf *out)
{
	const char *p = strchr(sig, ':');

	for (p = p != NULL ? p + 1 : ""; *p != '\0';) {
		const char *end = strchr(p, ';'), *eq;
		if (end == NULL)
			end = p + strlen(p);
		while (p < end && strchr(" \t\r\n", *p) != NULL)
			p++;
		eq = memchr(p, '=', (size_t)(end - p));
		if (eq != NULL) {
			const char *n = eq;
			while (n > p && strchr(" \t\r\n", n[-1]) != NULL)
				n--;
			if ((size_t)(n - p) == strlen(name) && memcmp(p, name, strlen(name)) == 0) {
				for (const char *v = eq + 1; v < end; v++) {
					if (strchr(" \t\r\n", *v) == NULL)
						buf_append_c(out, *v);
				}
				return true;
			}
		}
		p = *end != '\0' ? end + 1 : end;
	}
	return false;
}

static void sha256(const void *data, size_t len, unsigned char out[32])
{
	unsigned int n;
	EVP_Digest(data, len, out, &n, EVP_sha256(), NULL);
}

static const char *verify_error;

/* Checks sig (one DKIM-Signature field, CRLF-terminated) against the
 * expected canonical signed fields (each "name:value\r\n", in h= order)
 * and the expected canonical body; false with verify_error. */
static bool verify(EVP_PKEY *k, const char *sig, const char *signed_fields,
		   const char *canon_body)
{
	struct buf data, b, bh, raw, expect_bh;
	unsigned char digest[32], body_digest[32];
	bool ok = false;

	buf_init(&data, 0);
	buf_init(&b, 0);
	buf_init(&bh, 0);
	buf_init(&raw, 0);
	buf_init(&expect_bh, 0);
	sha256(canon_body, strlen(canon_body), body_digest);
	base64_encode(body_digest, 32, &expect_bh);
	const char *last = strrchr(sig, ';');
	const char *bv = last != NULL ? strstr(last, "b=") : NULL;
	verify_error = "no b= or bh= tag";
	if (bv == NULL || !tag_value(sig, "bh", &bh) || !tag_value(sig, "b", &b))
		goto out;
	verify_error = "bh= is not the hash of the expected body";
	if (strcmp(bh.data, expect_bh.data) != 0)
		goto out;
	verify_error = "b= is not base64";
	if (base64_decode(b.data, b.len, &raw) < 0)
		goto out;
	buf_append_str(&data, signed_fields);
	relaxed(sig, (size_t)(bv + 2 - sig), &data);
	sha256(data.data, data.len, digest);
	if (EVP_PKEY_get_base_id(k) == EVP_PKEY_ED25519) {
		EVP_MD_CTX *md = EVP_MD_CTX_new();
		ok = EVP_DigestVerifyInit(md, NULL, NULL, NULL, k) == 1 &&
			EVP_DigestVerify(md, (unsigned char *)raw.data, raw.len, digest, 32) == 1;
		EVP_MD_CTX_free(md);
	} else {
		EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new(k, NULL);
		ok = EVP_PKEY_verify_init(ctx) == 1 &&
			EVP_PKEY_CTX_set_rsa_padding(ctx, RSA_PKCS1_PADDING) == 1 &&
			EVP_PKEY_CTX_set_signature_md(ctx, EVP_sha256()) == 1 &&
			EVP_PKEY_verify(ctx, (unsigned char *)raw.data, raw.len, digest, 32) == 1;
		EVP_PKEY_CTX_free(ctx);
	}
	verify_error = ok ? NULL : "the signature does not verify";
out:
	buf_deinit(&data);
	buf_deinit(&b);
	buf_deinit(&bh);
	buf_deinit(&raw);
	buf_deinit(&expect_bh);
	return ok;
}

/* Every line of a field ends with CRLF and has at most 78 octets; only
 * the first line does not begin with WSP. */
static bool well_folded(const char *f)
{
	size_t len = strlen(f), line = 0;

	if (len < 2 || strcmp(f + len - 2, "\r\n") != 0)
		return false;
	for (const char *p = f; *p != '\0'; p++) {
		if (*p == '\n')
			return false;       /* a LF not after CR */
		if (*p == '\r') {
			if (p[1] != '\n' || line > 78)
				return false;
			p++;
			line = 0;
			if (p[1] != '\0' && p[1] != ' ' && p[1] != '\t')
				return false;
			continue;
		}
		line++;
	}
	return true;
}

/* Signs msg fed in pieces of step octets (0: whole); the field, or NULL
 * with *error_r. The caller frees. */
static char *sign_steps(const struct dkim_key *key, const char *msg, size_t len, size_t step,
			const char **error_r)
{
	struct buf out;
	struct dkim_sign *s = dkim_sign_begin(key, NOW);

	for (size_t pos = 0; pos < len;) {
		size_t n = step == 0 || step > len - pos ? len - pos : step;
		dkim_sign_update(s, msg + pos, n);
		pos += n;
	}
	buf_init(&out, 0);
	if (dkim_sign_end(&s, &out, error_r) < 0) {
		CHECK(s == NULL);
		CHECK_INT(out.len, 0);
		buf_deinit(&out);
		return NULL;
	}
	CHECK(s == NULL);
	char *sig = buf_steal(&out);
	buf_deinit(&out);
	return sig;
}

#define CHECK_VERIFIES(k, sig, fields, body) do { test_checks++; \
	if ((sig) == NULL || !verify(k, sig, fields, body)) { test_failures++; \
	fprintf(stderr, "%s:%d: signature rejected: %s\n", __FILE__, __LINE__, \
	(sig) == NULL ? "no signature" : verify_error); } } while (0)

#define CHECK_SIGN_FAILS(key, msg, why) do { const char *_e = NULL; test_checks++; \
	char *_s = sign_steps(key, msg, strlen(msg), 0, &_e); \
	if (_s != NULL || _e == NULL || strcmp(_e, why) != 0) { test_failures++; \
	fprintf(stderr, "%s:%d: signing gave %s, expected \"%s\"\n", __FILE__, __LINE__, \
	_s != NULL ? "a signature" : _e, why); } free(_s); } while (0)

static char *sign(const struct dkim_key *key, const char *msg)
{
	const char *error = NULL;
	char *sig = sign_steps(key, msg, strlen(msg), 0, &error);
	if (sig == NULL)
		fprintf(stderr, "sign: %s\n", error);
	return sig;
}

static const char message[] =
	"Received: from x by y; Thu, 1 Jan 2024 00:00:00 +0000\r\n"
	"From: Alice <alice@example.com>\r\n"
	"To: bob@example.net,\r\n"
	"\tcarol@example.org\r\n"
	"Subject:   Hello   \t world  \r\n"
	"X-Unsigned: yes\r\n"
	"Date: Mon, 1 Jan 2024 00:00:00 +0000\r\n"
	"Message-ID: <1@example.com>\r\n"
	"\r\n"
	"Hi Bob,  \r\n"
	"\r\n"
	"caf\xc3\xa9\t\tand  more\r\n"
	"\r\n"
	"\r\n";

static const char message_fields[] =
	"from:Alice <alice@example.com>\r\n"
	"subject:Hello world\r\n"
	"date:Mon, 1 Jan 2024 00:00:00 +0000\r\n"
	"to:bob@example.net, carol@example.org\r\n"
	"message-id:<1@example.com>\r\n";
static const char message_body[] = "Hi Bob,\r\n\r\ncaf\xc3\xa9 and more\r\n";

static void test_signature(EVP_PKEY *k, const char *key_file, const char *alg)
{
	const char *error = NULL;
	struct dkim_key *key = dkim_key_load("Example.COM", "sel1", key_file, &error);

	CHECK(key != NULL);
	if (key == NULL) {
		fprintf(stderr, "%s: %s\n", key_file, error);
		return;
	}
	CHECK_STR(dkim_key_domain(key), "example.com");
	CHECK_STR(dkim_key_algorithm(key), alg);
	char *sig = sign(key, message);
	CHECK(sig != NULL);
	if (sig == NULL) {
		dkim_key_free(&key);
		return;
	}
	CHECK(strncmp(sig, "DKIM-Signature: v=1; a=", 23) == 0);
	CHECK(well_folded(sig));
	struct buf t;
	buf_init(&t, 0);
#define CHECK_TAG(name, value) do { buf_reset(&t); CHECK(tag_value(sig, name, &t)); \
	CHECK_STR(t.data, value); } while (0)
	CHECK_TAG("a", alg);
	CHECK_TAG("c", "relaxed/relaxed");
	CHECK_TAG("d", "example.com");
	CHECK_TAG("s", "sel1");
	CHECK_TAG("t", "1700000000");
	/* every From once more than present; unknown fields and Received
	 * are not signed */
	CHECK_TAG("h", "From:From:Subject:Date:To:Message-ID");
	buf_reset(&t);
	CHECK(!tag_value(sig, "l", &t) && !tag_value(sig, "i", &t) && !tag_value(sig, "x", &t));
	buf_deinit(&t);
	CHECK_VERIFIES(k, sig, message_fields, message_body);
	/* a changed body or header no longer verifies */
	CHECK(!verify(k, sig, message_fields, "Hi Bob!\r\n\r\ncaf\xc3\xa9 and more\r\n"));
	CHECK(!verify(k, sig, "from:Mallory <m@example.com>\r\nsubject:Hello world\r\n"
		      "date:Mon, 1 Jan 2024 00:00:00 +0000\r\n"
		      "to:bob@example.net, carol@example.org\r\nmessage-id:<1@example.com>\r\n",
		      message_body));

	/* the same signature at every split point, and a byte at a time */
	size_t len = strlen(message);
	bool same = true;
	for (size_t split = 0; split <= len && same; split++) {
		struct buf out;
		struct dkim_sign *s = dkim_sign_begin(key, NOW);
		dkim_sign_update(s, message, split);
		dkim_sign_update(s, message + split, len - split);
		buf_init(&out, 0);
		same = dkim_sign_end(&s, &out, &error) == 0 && strcmp(out.data, sig) == 0;
		if (!same)
			fprintf(stderr, "split at %zu: different signature\n", split);
		buf_deinit(&out);
	}
	CHECK(same);
	char *bytewise = sign_steps(key, message, len, 1, &error);
	CHECK(bytewise != NULL && strcmp(bytewise, sig) == 0);
	free(bytewise);
	free(sig);

	/* the field is appended after what out holds; a full out is left as
	 * it was */
	struct buf out;
	buf_init(&out, 0);
	buf_append_str(&out, "kept");
	struct dkim_sign *s = dkim_sign_begin(key, NOW);
	dkim_sign_update(s, message, len);
	CHECK_INT(dkim_sign_end(&s, &out, &error), 0);
	CHECK(strncmp(out.data, "keptDKIM-Signature: ", 20) == 0);
	buf_deinit(&out);
	buf_init(&out, 100);
	buf_append_str(&out, "kept");
	s = dkim_sign_begin(key, NOW);
	dkim_sign_update(s, message, len);
	CHECK_INT(dkim_sign_end(&s, &out, &error), -1);
	CHECK_STR(error, "the output buffer is full");
	CHECK_STR(out.data, "kept");
	buf_deinit(&out);

	/* abandoned */
	s = dkim_sign_begin(key, NOW);
	dkim_sign_update(s, message, 10);
	dkim_sign_abort(&s);
	CHECK(s == NULL);
	dkim_key_free(&key);
	CHECK(key == NULL);
	dkim_key_free(&key);
}

static void test_messages(void)
{
	const char *error = NULL;
	struct dkim_key *key = dkim_key_load("example.com", "s", ed_file, &error);
	char *sig;

	/* empty bodies: relaxed canonicalizes them to nothing (RFC 6376 3.4.4),
	 * so bh= is the SHA-256 of the empty string */
	static const char *const empty[] = {
		"From: a@example.com\r\n\r\n",
		"From: a@example.com\r\n",
		"From: a@example.com",
		"From: a@example.com\r\n\r\n\r\n \r\n\t\r\n",
	};
	for (size_t i = 0; i < sizeof(empty) / sizeof(empty[0]); i++) {
		sig = sign(key, empty[i]);
		CHECK_VERIFIES(ed_pkey, sig, "from:a@example.com\r\n", "");
		struct buf t;
		buf_init(&t, 0);
		CHECK(sig != NULL && tag_value(sig, "bh", &t));
		CHECK_STR(t.data, "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=");
		buf_deinit(&t);
		free(sig);
	}

	/* several instances: all signed, bottom-up, From oversigned */
	sig = sign(key, "To: first@x\r\nFrom: a@example.com\r\nto: second@x\r\n"
		   "From:  b@example.com\r\nTO:third@x\r\n\r\nbody\r\n");
	struct buf t;
	buf_init(&t, 0);
	CHECK(sig != NULL && tag_value(sig, "h", &t));
	CHECK_STR(t.data, "From:From:From:To:To:To");
	CHECK_VERIFIES(ed_pkey, sig, "from:b@example.com\r\nfrom:a@example.com\r\n"
		       "to:third@x\r\nto:second@x\r\nto:first@x\r\n", "body\r\n");
	buf_deinit(&t);
	free(sig);

	/* the List-* fields, MIME fields, names in any case, WSP before ':' */
	sig = sign(key, "from : a@example.com\r\nMIME-Version: 1.0\r\n"
		   "content-type: text/plain\r\nList-Unsubscribe: <mailto:u@example.com>\r\n"
		   "List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n"
		   "Content-Transfer-Encoding: 8bit\r\n\r\nx\r\n");
	buf_init(&t, 0);
	CHECK(sig != NULL && tag_value(sig, "h", &t));
	CHECK_STR(t.data, "From:From:MIME-Version:Content-Type:Content-Transfer-Encoding:"
		  "List-Unsubscribe:List-Unsubscribe-Post");
	CHECK_VERIFIES(ed_pkey, sig, "from:a@example.com\r\nmime-version:1.0\r\n"
		       "content-type:text/plain\r\ncontent-transfer-encoding:8bit\r\n"
		       "list-unsubscribe:<mailto:u@example.com>\r\n"
		       "list-unsubscribe-post:List-Unsubscribe=One-Click\r\n", "x\r\n");
	buf_deinit(&t);
	free(sig);

	/* a From in the body is no From */
	CHECK_SIGN_FAILS(key, "Subject: x\r\n\r\nFrom: a@example.com\r\n",
			 "the message has no From: header field");
	CHECK_SIGN_FAILS(key, "", "the message has no From: header field");
	CHECK_SIGN_FAILS(key, "\r\nFrom: a@example.com\r\n", "the message has no From: header field");
	CHECK_SIGN_FAILS(key, "From-Address: a@example.com\r\n\r\nx\r\n",
			 "the message has no From: header field");
	/* lines that are no header field */
	CHECK_SIGN_FAILS(key, " From: a@example.com\r\n\r\n",
			 "the message header begins with a folded line");
	CHECK_SIGN_FAILS(key, "From: a@example.com\r\nnot a field\r\n\r\n",
			 "the message header has a line that is not a header field");
	CHECK_SIGN_FAILS(key, "From: a@example.com\r\n: x\r\n\r\n",
			 "the message header has a line that is not a header field");
	CHECK_SIGN_FAILS(key, "From: a@example.com\r\nX-\x80: x\r\n\r\n",
			 "the message header has a line that is not a header field");

	/* the header cap: DKIM_HEADER_MAX octets sign, one more does not,
	 * with or without a body after it */
	struct buf big;
	buf_init(&big, 0);
	buf_append_str(&big, "From: a@example.com\r\nX-Pad: ");
	while (big.len < DKIM_HEADER_MAX - 2)
		buf_append_c(&big, 'p');
	buf_append_str(&big, "\r\n");
	CHECK_INT(big.len, DKIM_HEADER_MAX);
	sig = sign_steps(key, big.data, big.len, 4096, &error);
	CHECK(sig != NULL);
	free(sig);
	buf_append_str(&big, "\r\nbody\r\n");
	sig = sign_steps(key, big.data, big.len, 4096, &error);
	CHECK(sig != NULL);
	free(sig);
	buf_reset(&big);
	buf_append_str(&big, "From: a@example.com\r\nX-Pad: ");
	while (big.len < DKIM_HEADER_MAX - 1)
		buf_append_c(&big, 'p');
	buf_append_str(&big, "\r\n");
	CHECK_INT(big.len, DKIM_HEADER_MAX + 1);
	CHECK(sign_steps(key, big.data, big.len, 7, &error) == NULL);
	CHECK_STR(error, "the message header is too large to sign (over 256 KiB)");
	buf_append_str(&big, "\r\nbody\r\n");
	CHECK(sign_steps(key, big.data, big.len, 0, &error) == NULL);
	CHECK_STR(error, "the message header is too large to sign (over 256 KiB)");
	/* a header that never ends: refused once the cap is passed */
	struct dkim_sign *s = dkim_sign_begin(key, NOW);
	dkim_sign_update(s, "From: a@example.com\r\n", 21);
	for (int i = 0; i < 20000; i++)
		dkim_sign_update(s, "X-Many: header field line\r\n", 27);
	struct buf out;
	buf_init(&out, 0);
	CHECK_INT(dkim_sign_end(&s, &out, &error), -1);
	CHECK_STR(error, "the message header is too large to sign (over 256 KiB)");
	buf_deinit(&out);
	buf_deinit(&big);

	/* a large body is hashed, not kept: 16 MiB through a 64 KiB buffer */
	s = dkim_sign_begin(key, NOW);
	dkim_sign_update(s, "From: a@example.com\r\n\r\n", 23);
	char chunk[65536];
	memset(chunk, 'x', sizeof(chunk));
	memcpy(chunk + sizeof(chunk) - 2, "\r\n", 2);
	for (int i = 0; i < 256; i++)
		dkim_sign_update(s, chunk, sizeof(chunk));
	buf_init(&out, 0);
	CHECK_INT(dkim_sign_end(&s, &out, &error), 0);
	CHECK(well_folded(out.data));
	buf_deinit(&out);

	/* many signed fields: h= folds at ':' and stays within 78 columns */
	struct buf many;
	buf_init(&many, 0);
	buf_append_str(&many, "From: a@example.com\r\n");
	for (int i = 0; i < 40; i++)
		buf_printf(&many, "Content-Transfer-Encoding: 7bit\r\n");
	buf_append_str(&many, "\r\nbody\r\n");
	sig = sign(key, many.data);
	CHECK(sig != NULL && well_folded(sig));
	buf_init(&t, 0);
	CHECK(sig != NULL && tag_value(sig, "h", &t));
	CHECK_INT(t.len, strlen("From:From") + 40 * strlen(":Content-Transfer-Encoding"));
	buf_deinit(&t);
	free(sig);
	buf_deinit(&many);
	dkim_key_free(&key);
}

/* ---------------------------------------------------------------------- */
/* keys */

#define CHECK_LOAD_FAILS(domain, selector, file, why) do { const char *_e = NULL; \
	struct dkim_key *_k = dkim_key_load(domain, selector, file, &_e); test_checks++; \
	if (_k != NULL || _e == NULL || strstr(_e, why) == NULL) { test_failures++; \
	fprintf(stderr, "%s:%d: load %s: %s, expected \"%s\"\n", __FILE__, __LINE__, file, \
	_k ? "accepted" : _e, why); } dkim_key_free(&_k); } while (0)

static void test_keys(void)
{
	char path[4200];
	const char *error = NULL;

	/* traditional "RSA PRIVATE KEY" PEM, signing the same as PKCS#8 */
	struct dkim_key *a = dkim_key_load("example.com", "s", rsa_file, &error);
	struct dkim_key *b = dkim_key_load("example.com", "s", rsa_trad_file, &error);
	CHECK(a != NULL && b != NULL);
	if (a != NULL && b != NULL) {
		char *sa = sign(a, message), *sb = sign(b, message);
		CHECK(sa != NULL && sb != NULL && strcmp(sa, sb) == 0);
		free(sa);
		free(sb);
	}
	dkim_key_free(&a);
	dkim_key_free(&b);

	snprintf(path, sizeof(path), "%s/rsa1024.pem", tmpdir);
	EVP_PKEY *k = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)1024);
	write_key(path, k, false);
	EVP_PKEY_free(k);
	a = dkim_key_load("example.com", "s", path, &error);
	CHECK(a != NULL);
	dkim_key_free(&a);

	snprintf(path, sizeof(path), "%s/rsa768.pem", tmpdir);
	k = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)768);
	write_key(path, k, false);
	EVP_PKEY_free(k);
	CHECK_LOAD_FAILS("example.com", "s", path, "RSA key is too small: at least 1024 bits");

	snprintf(path, sizeof(path), "%s/p256.pem", tmpdir);
	k = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
	write_key(path, k, false);
	EVP_PKEY_free(k);
	CHECK_LOAD_FAILS("example.com", "s", path, "neither RSA nor Ed25519");

	snprintf(path, sizeof(path), "%s/public.pem", tmpdir);
	BIO *bio = BIO_new_file(path, "w");
	PEM_write_bio_PUBKEY(bio, ed_pkey);
	BIO_free(bio);
	CHECK_LOAD_FAILS("example.com", "s", path, "no PEM private key");
	snprintf(path, sizeof(path), "%s/garbage.pem", tmpdir);
	write_text(path, "-----BEGIN PRIVATE KEY-----\nnot base64\n-----END PRIVATE KEY-----\n");
	CHECK_LOAD_FAILS("example.com", "s", path, "no PEM private key");
	snprintf(path, sizeof(path), "%s/missing.pem", tmpdir);
	CHECK_LOAD_FAILS("example.com", "s", path, "does not exist");

	CHECK_LOAD_FAILS("", "s", ed_file, "not a valid domain name");
	CHECK_LOAD_FAILS("exa mple.com", "s", ed_file, "not a valid domain name");
	CHECK_LOAD_FAILS("[127.0.0.1]", "s", ed_file, "not a valid domain name");
	CHECK_LOAD_FAILS("example.com", "", ed_file, "selector is not a valid DNS name");
	CHECK_LOAD_FAILS("example.com", "s;x=1", ed_file, "selector is not a valid DNS name");
	CHECK_LOAD_FAILS("example.com", "a..b", ed_file, "selector is not a valid DNS name");
	a = dkim_key_load("example.com", "2024-01.mail", ed_file, &error);
	CHECK(a != NULL);
	CHECK_STR(dkim_key_selector(a), "2024-01.mail");

	/* covers */
	CHECK(dkim_key_covers(a, "example.com"));
	CHECK(dkim_key_covers(a, "EXAMPLE.com."));
	CHECK(dkim_key_covers(a, "mail.example.com"));
	CHECK(dkim_key_covers(a, "a.b.Example.Com"));
	CHECK(!dkim_key_covers(a, "badexample.com"));
	CHECK(!dkim_key_covers(a, "example.org"));
	CHECK(!dkim_key_covers(a, "com"));
	CHECK(!dkim_key_covers(a, ""));
	CHECK(!dkim_key_covers(a, "example.com.evil"));
	dkim_key_free(&a);
}

static void test_dns_record(void)
{
	const char *error = NULL;
	struct buf out, der;

	buf_init(&out, 0);
	buf_init(&der, 0);
	struct dkim_key *key = dkim_key_load("example.com", "s", ed_file, &error);
	CHECK_INT(dkim_dns_record(key, &out, &error), 0);
	CHECK(strncmp(out.data, "v=DKIM1; k=ed25519; p=", 22) == 0);
	unsigned char raw[32];
	size_t rawlen = sizeof(raw);
	EVP_PKEY_get_raw_public_key(ed_pkey, raw, &rawlen);
	CHECK_INT(base64_decode(out.data + 22, out.len - 22, &der), 0);
	CHECK_MEM(der.data, der.len, raw, rawlen);
	dkim_key_free(&key);

	buf_reset(&out);
	buf_reset(&der);
	key = dkim_key_load("example.com", "s", rsa_file, &error);
	CHECK_INT(dkim_dns_record(key, &out, &error), 0);
	CHECK(strncmp(out.data, "v=DKIM1; k=rsa; p=", 18) == 0);
	CHECK_INT(base64_decode(out.data + 18, out.len - 18, &der), 0);
	const unsigned char *p = (const unsigned char *)der.data;
	EVP_PKEY *pub = d2i_PUBKEY(NULL, &p, (long)der.len);
	CHECK(pub != NULL && EVP_PKEY_eq(pub, rsa_pkey) == 1);
	EVP_PKEY_free(pub);

	struct buf small;
	buf_init(&small, 40);
	CHECK_INT(dkim_dns_record(key, &small, &error), -1);
	CHECK_STR(error, "the output buffer is full");
	CHECK_INT(small.len, 0);
	buf_deinit(&small);
	dkim_key_free(&key);
	buf_deinit(&out);
	buf_deinit(&der);
}

int main(int argc, char **argv)
{
	snprintf(tmpdir, sizeof(tmpdir), "%s/test-dkim.XXXXXX", argc > 1 ? argv[1] : ".");
	if (mkdtemp(tmpdir) == NULL) {
		perror("mkdtemp");
		return 1;
	}
	rsa_pkey = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048);
	ed_pkey = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
	snprintf(rsa_file, sizeof(rsa_file), "%s/rsa.pem", tmpdir);
	snprintf(rsa_trad_file, sizeof(rsa_trad_file), "%s/rsa-traditional.pem", tmpdir);
	snprintf(ed_file, sizeof(ed_file), "%s/ed25519.pem", tmpdir);
	write_key(rsa_file, rsa_pkey, false);
	write_key(rsa_trad_file, rsa_pkey, true);
	write_key(ed_file, ed_pkey, false);

	test_canonicalization();
	test_signature(ed_pkey, ed_file, "ed25519-sha256");
	test_signature(rsa_pkey, rsa_file, "rsa-sha256");
	test_messages();
	test_keys();
	test_dns_record();

	EVP_PKEY_free(rsa_pkey);
	EVP_PKEY_free(ed_pkey);
	static const char *const files[] = {
		"rsa.pem", "rsa-traditional.pem", "ed25519.pem", "rsa1024.pem", "rsa768.pem",
		"p256.pem", "public.pem", "garbage.pem",
	};
	for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
		char path[4200];
		snprintf(path, sizeof(path), "%s/%s", tmpdir, files[i]);
		unlink(path);
	}
	rmdir(tmpdir);
	TEST_MAIN_END();
}
