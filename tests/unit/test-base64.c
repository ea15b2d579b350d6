/*
 * Unit tests for src/lib/base64: the RFC 4648 test vectors, round trips,
 * strict decoding (padding, alphabet, whitespace, bits beyond the data)
 * checked exhaustively over one quantum, and the output buffer's cap;
 * base64url (RFC 4648 section 5, unpadded as in JOSE) the same way.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base64.h"
#include "buf.h"

#include "test.h"

#define V(plain, encoded) { plain, sizeof(plain) - 1, encoded }
static const struct {
	const char *plain;
	size_t len;
	const char *encoded;
} vectors[] = {
	/* RFC 4648 section 10 */
	V("", ""),
	V("f", "Zg=="),
	V("fo", "Zm8="),
	V("foo", "Zm9v"),
	V("foob", "Zm9vYg=="),
	V("fooba", "Zm9vYmE="),
	V("foobar", "Zm9vYmFy"),
	/* SASL PLAIN, as clients send it (RFC 4616) */
	V("\0alice\0secret", "AGFsaWNlAHNlY3JldA=="),
};

static void test_vectors(void)
{
	for (size_t i = 0; i < sizeof(vectors) / sizeof(vectors[0]); i++) {
		struct buf b;
		buf_init(&b, 0);
		CHECK_INT(base64_encode(vectors[i].plain, vectors[i].len, &b), 0);
		CHECK_STR(b.data, vectors[i].encoded);
		buf_reset(&b);
		CHECK_INT(base64_decode(vectors[i].encoded, strlen(vectors[i].encoded), &b), 0);
		CHECK_MEM(b.data, b.len, vectors[i].plain, vectors[i].len);
		buf_deinit(&b);
	}
	/* the two characters beyond letters and digits */
	struct buf b;
	buf_init(&b, 0);
	CHECK_INT(base64_encode("\xfb\xff", 2, &b), 0);
	CHECK_STR(b.data, "+/8=");
	buf_reset(&b);
	CHECK_INT(base64_encode("\xfb\xef\xbe", 3, &b), 0);
	CHECK_STR(b.data, "++++");
	buf_reset(&b);
	CHECK_INT(base64_decode("////", 4, &b), 0);
	CHECK_MEM(b.data, b.len, "\xff\xff\xff", 3);
	/* output is appended */
	buf_reset(&b);
	buf_append_str(&b, "x:");
	CHECK_INT(base64_encode("foo", 3, &b), 0);
	CHECK_INT(base64_decode("Zm9v", 4, &b), 0);
	CHECK_STR(b.data, "x:Zm9vfoo");
	buf_deinit(&b);
}

static void test_round_trips(void)
{
	unsigned char all[256];
	for (int i = 0; i < 256; i++)
		all[i] = (unsigned char)i;
	unsigned int seed = 4648;
	int bad = 0;
	for (size_t len = 0; len <= 256; len++) {
		const unsigned char *in = all;
		unsigned char rnd[256];
		if (len % 2 == 1) {
			for (size_t k = 0; k < len; k++)
				rnd[k] = (unsigned char)rand_r(&seed);
			in = rnd;
		}
		struct buf enc, dec;
		buf_init(&enc, 0);
		buf_init(&dec, 0);
		if (base64_encode(in, len, &enc) != 0 || enc.len != (len + 2) / 3 * 4 ||
		    base64_decode(enc.data, enc.len, &dec) != 0 || dec.len != len ||
		    memcmp(dec.data, in, len) != 0)
			bad++;
		buf_deinit(&enc);
		buf_deinit(&dec);
	}
	CHECK_INT(bad, 0);
}

#define BAD(text) do { struct buf _b; buf_init(&_b, 0); test_checks++; \
	if (base64_decode(text, sizeof(text) - 1, &_b) != -1) { test_failures++; \
	fprintf(stderr, "%s:%d: decoded \"%s\"\n", __FILE__, __LINE__, text); } \
	buf_deinit(&_b); } while (0)

static void test_strict(void)
{
	/* length */
	BAD("Z");
	BAD("Zg");
	BAD("Zg=");
	BAD("Zm9vY");
	BAD("Zm9vYg=");
	/* padding: only at the end, only in the last two places */
	BAD("Z===");
	BAD("====");
	BAD("Zg=a");
	BAD("Zm=v");
	BAD("=Zm9");
	BAD("Zg==Zg==");
	BAD("Zm8=Zm9v");
	BAD("Zm9v====");
	/* alphabet: not the URL-safe one, nothing else */
	BAD("Zm9-");
	BAD("Zm9_");
	BAD("Zm9.");
	BAD("Zm9v\0AAA");
	BAD("Zm\xc3\xb6");
	/* whitespace anywhere */
	BAD("Zm9v Yg==");
	BAD(" Zm9vYg=");
	BAD("Zm9vYg==\r\n");
	BAD("Zm9\tv");
	BAD("Zm9v\nYmFy");
	/* bits beyond the data must be zero */
	BAD("Zh==");
	BAD("Zm9=");
	BAD("Zm+=");
	BAD("AB==");
	BAD("AAB=");
	/* the empty input is the empty output */
	struct buf b;
	buf_init(&b, 0);
	CHECK_INT(base64_decode("", 0, &b), 0);
	CHECK_INT(b.len, 0);
	buf_deinit(&b);
}

/* Every quantum over the alphabet, '=' and a few strangers decodes if and
 * only if it is the canonical encoding of what it decodes to. */
static void test_one_quantum_exhaustive(void)
{
	static const char chars[] =
		"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=-_ ";
	const size_t n = sizeof(chars) - 1;
	long accepted = 0, wrong = 0;
	struct buf dec, enc;
	buf_init(&dec, 0);
	buf_init(&enc, 0);
	char q[4];
	for (size_t a = 0; a < n; a++) {
		q[0] = chars[a];
		for (size_t b = 0; b < n; b++) {
			q[1] = chars[b];
			for (size_t c = 0; c < n; c++) {
				q[2] = chars[c];
				for (size_t d = 0; d < n; d++) {
					q[3] = chars[d];
					buf_reset(&dec);
					if (base64_decode(q, 4, &dec) != 0)
						continue;
					accepted++;
					buf_reset(&enc);
					if (dec.len < 1 || dec.len > 3 ||
					    base64_encode(dec.data, dec.len, &enc) != 0 ||
					    enc.len != 4 || memcmp(enc.data, q, 4) != 0)
						wrong++;
				}
			}
		}
	}
	CHECK_INT(wrong, 0);
	/* every 1-, 2- and 3-octet value has exactly one encoding */
	CHECK_INT(accepted, 256 + 256 * 256 + 256 * 256 * 256);
	buf_deinit(&dec);
	buf_deinit(&enc);
}

static void test_caps(void)
{
	struct buf b;
	buf_init(&b, 3);
	CHECK_INT(base64_encode("f", 1, &b), -1);
	buf_deinit(&b);
	buf_init(&b, 4);
	CHECK_INT(base64_encode("f", 1, &b), 0);
	CHECK_STR(b.data, "Zg==");
	CHECK_INT(base64_encode("f", 1, &b), -1);
	CHECK_STR(b.data, "Zg==");
	buf_deinit(&b);

	buf_init(&b, 5);
	CHECK_INT(base64_decode("Zm9vYmFy", 8, &b), -1);
	CHECK(b.len <= 5);
	buf_deinit(&b);
	buf_init(&b, 6);
	CHECK_INT(base64_decode("Zm9vYmFy", 8, &b), 0);
	CHECK_STR(b.data, "foobar");
	buf_deinit(&b);
	/* a padded last quantum needs only its own octets */
	buf_init(&b, 4);
	CHECK_INT(base64_decode("Zm9vYg==", 8, &b), 0);
	CHECK_STR(b.data, "foob");
	buf_deinit(&b);
}

#define BAD_URL(text) do { struct buf _b; buf_init(&_b, 0); test_checks++; \
	if (base64url_decode(text, sizeof(text) - 1, &_b) != -1) { test_failures++; \
	fprintf(stderr, "%s:%d: base64url decoded \"%s\"\n", __FILE__, __LINE__, text); } \
	buf_deinit(&_b); } while (0)

static void test_url(void)
{
	static const struct {
		const char *plain;
		size_t len;
		const char *encoded;
	} url[] = {
		V("", ""),
		V("f", "Zg"),
		V("fo", "Zm8"),
		V("foo", "Zm9v"),
		V("foob", "Zm9vYg"),
		V("fooba", "Zm9vYmE"),
		V("foobar", "Zm9vYmFy"),
		V("\xfb\xff", "-_8"),
		V("\xfb\xef\xbe", "----"),
		V("\xff\xff\xff", "____"),
		/* RFC 7515 A.1's JOSE header */
		V("{\"typ\":\"JWT\",\r\n \"alg\":\"HS256\"}",
		  "eyJ0eXAiOiJKV1QiLA0KICJhbGciOiJIUzI1NiJ9"),
	};
	for (size_t i = 0; i < sizeof(url) / sizeof(url[0]); i++) {
		struct buf b;
		buf_init(&b, 0);
		CHECK_INT(base64url_encode(url[i].plain, url[i].len, &b), 0);
		CHECK_STR(b.data, url[i].encoded);
		buf_reset(&b);
		CHECK_INT(base64url_decode(url[i].encoded, strlen(url[i].encoded), &b), 0);
		CHECK_MEM(b.data, b.len, url[i].plain, url[i].len);
		buf_deinit(&b);
	}
	/* round trips of every length, and agreement with base64 but for the
	 * two characters and the padding */
	unsigned int seed = 7515;
	int bad = 0;
	for (size_t len = 0; len <= 200; len++) {
		unsigned char in[200];
		for (size_t k = 0; k < len; k++)
			in[k] = (unsigned char)rand_r(&seed);
		struct buf enc, std, dec;
		buf_init(&enc, 0);
		buf_init(&std, 0);
		buf_init(&dec, 0);
		base64_encode(in, len, &std);
		for (size_t k = 0; k < std.len; k++)
			std.data[k] = std.data[k] == '+' ? '-' : std.data[k] == '/' ? '_' : std.data[k];
		while (std.len > 0 && std.data[std.len - 1] == '=')
			std.len--;
		if (base64url_encode(in, len, &enc) != 0 || enc.len != std.len ||
		    memcmp(enc.data, std.data, enc.len) != 0 ||
		    base64url_decode(enc.data, enc.len, &dec) != 0 || dec.len != len ||
		    memcmp(dec.data, in, len) != 0)
			bad++;
		buf_deinit(&enc);
		buf_deinit(&std);
		buf_deinit(&dec);
	}
	CHECK_INT(bad, 0);
	/* strict: no padding, no standard alphabet, no stray lengths or bits */
	BAD_URL("Z");
	BAD_URL("Zm9vY");
	BAD_URL("Zg==");
	BAD_URL("Zm8=");
	BAD_URL("Zg=");
	BAD_URL("Zm9+");
	BAD_URL("Zm9/");
	BAD_URL("Zm9.");
	BAD_URL("Zm9v Yg");
	BAD_URL("Zm9v\nYg");
	BAD_URL("Zm9v\0A");
	BAD_URL("Zh");
	BAD_URL("Zm9");
	BAD_URL("AB");
	BAD_URL("AAB");
	/* the cap */
	struct buf b;
	buf_init(&b, 5);
	CHECK_INT(base64url_decode("Zm9vYmFy", 8, &b), -1);
	buf_deinit(&b);
	buf_init(&b, 3);
	CHECK_INT(base64url_encode("fo", 2, &b), 0);
	CHECK_STR(b.data, "Zm8");
	CHECK_INT(base64url_encode("f", 1, &b), -1);
	buf_deinit(&b);
}

int main(void)
{
	test_vectors();
	test_round_trips();
	test_strict();
	test_one_quantum_exhaustive();
	test_caps();
	test_url();
	TEST_MAIN_END();
}
