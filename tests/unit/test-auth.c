/*
 * Unit tests for src/auth: password hashing and verification (argon2id,
 * the crypt(3) schemes libcrypt supports, malformed hashes, NUL bytes, the
 * dummy verification), the failed-login penalty, the cache of successful
 * checks, and the SASL exchange on every path.
 *
 * The only timing printed (never asserted tightly) is that of a wrong
 * password for a user that does not exist against one for a real user.
 */
#include <crypt.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "auth-cache.h"
#include "auth-penalty.h"
#include "base64.h"
#include "buf.h"
#include "net.h"
#include "password.h"
#include "sasl.h"

#include "test.h"

static double now_sec(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void sleep_ms(unsigned int ms)
{
	struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };
	nanosleep(&ts, NULL);
}

/* A stored hash for password, in a static buffer. */
static const char *hash_of(const char *password, size_t len)
{
	static char out[256];
	struct buf b;
	buf_init(&b, 0);
	CHECK_INT(password_hash(password, len, &b), 0);
	str_copy(out, b.data, sizeof(out));
	buf_deinit(&b);
	return out;
}

/* ---- password ---- */

static void test_password_argon2id(void)
{
	char stored[256], again[256];
	str_copy(stored, hash_of("correct horse", 13), sizeof(stored));
	CHECK(strncmp(stored, "$argon2id$v=19$m=19456,t=2,p=1$", 31) == 0);
	CHECK(password_is_hash(stored));
	CHECK(password_verify("correct horse", 13, stored));
	CHECK(!password_verify("correct horsf", 13, stored));
	CHECK(!password_verify("correct hors", 12, stored));
	CHECK(!password_verify("", 0, stored));
	/* the same password hashes differently (random salt), both verify */
	str_copy(again, hash_of("correct horse", 13), sizeof(again));
	CHECK(strcmp(stored, again) != 0);
	CHECK(password_verify("correct horse", 13, again));
	/* with a scheme prefix, as Dovecot writes it */
	char prefixed[300];
	snprintf(prefixed, sizeof(prefixed), "{ARGON2ID}%s", stored);
	CHECK(password_is_hash(prefixed));
	CHECK(password_verify("correct horse", 13, prefixed));
	snprintf(prefixed, sizeof(prefixed), "{argon2id}%s", stored);
	CHECK(password_verify("correct horse", 13, prefixed));
	snprintf(prefixed, sizeof(prefixed), "{SHA512-CRYPT}%s", stored);
	CHECK(!password_is_hash(prefixed));
	CHECK(!password_verify("correct horse", 13, prefixed));
}

static void test_password_nul(void)
{
	/* argon2 hashes every byte: a NUL is part of the password */
	char stored[256];
	str_copy(stored, hash_of("ab\0cd", 5), sizeof(stored));
	CHECK(password_verify("ab\0cd", 5, stored));
	CHECK(!password_verify("ab", 2, stored));
	CHECK(!password_verify("ab\0ce", 5, stored));
	CHECK(!password_verify("ab\0cd\0", 6, stored));
}

static void test_password_crypt_scheme(const char *scheme, const char *salt)
{
	struct crypt_data cd;
	memset(&cd, 0, sizeof(cd));
	const char *h = crypt_r("imported-pw", salt, &cd);
	if (h == NULL || h[0] == '*') {
		printf("libcrypt has no %s here: skipped\n", scheme);
		return;
	}
	char stored[256];
	snprintf(stored, sizeof(stored), "{%s}%s", scheme, h);
	CHECK(password_is_hash(stored));
	CHECK(password_verify("imported-pw", 11, stored));
	CHECK(!password_verify("imported-px", 11, stored));
	CHECK(!password_verify("imported-p", 10, stored));
	/* crypt(3) stops at a NUL: "imported-pw\0x" must not match "imported-pw" */
	CHECK(!password_verify("imported-pw\0x", 13, stored));
	/* without the scheme the crypt hash is not taken */
	CHECK(!password_is_hash(h));
	CHECK(!password_verify("imported-pw", 11, h));
	/* {CRYPT} takes any crypt(3) hash */
	snprintf(stored, sizeof(stored), "{CRYPT}%s", h);
	CHECK(password_verify("imported-pw", 11, stored));
}

static void test_password_crypt(void)
{
	test_password_crypt_scheme("SHA512-CRYPT", "$6$saltsaltsalt$");
	test_password_crypt_scheme("SHA256-CRYPT", "$5$saltsaltsalt$");
	test_password_crypt_scheme("BLF-CRYPT", "$2b$05$abcdefghijklmnopqrstuu");
	/* a scheme whose label does not fit the hash is refused */
	struct crypt_data cd;
	memset(&cd, 0, sizeof(cd));
	const char *h = crypt_r("pw", "$6$saltsaltsalt$", &cd);
	if (h != NULL && h[0] != '*') {
		char stored[256];
		snprintf(stored, sizeof(stored), "{SHA256-CRYPT}%s", h);
		CHECK(!password_is_hash(stored));
		CHECK(!password_verify("pw", 2, stored));
		snprintf(stored, sizeof(stored), "{BLF-CRYPT}%s", h);
		CHECK(!password_verify("pw", 2, stored));
	}
}

static void test_password_malformed(void)
{
	static const char *const bad[] = {
		"", "secret", "{", "{SHA512-CRYPT", "{SHA512-CRYPT}", "{MD5}abcdef",
		"{PLAIN}secret", "{SHA512-CRYPT}$1$abc$def", "$argon2id$", "$argon2id$v=19$garbage",
		"$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$", "{CRYPT}",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		CHECK(!password_verify("secret", 6, bad[i]));
		CHECK(!password_verify("", 0, bad[i]));
	}
	CHECK(!password_is_hash(""));
	CHECK(!password_is_hash("secret"));
	CHECK(!password_is_hash("{MD5}abcdef"));
	CHECK(!password_is_hash("{SHA512-CRYPT"));
}

static void test_password_dummy(void)
{
	CHECK(!password_verify_dummy("", 0));
	CHECK(!password_verify_dummy("x", 1));
	CHECK(!password_verify_dummy("a\0b", 3));
	CHECK(!auth_cache_verify(NULL, "x", 1, NULL));
}

static double best_of(int runs, const char *password, const char *stored)
{
	double best = 1e9;
	for (int i = 0; i < runs; i++) {
		double t0 = now_sec();
		CHECK(!auth_cache_verify(NULL, password, strlen(password), stored));
		double t = now_sec() - t0;
		if (t < best)
			best = t;
	}
	return best;
}

/* An unknown user costs what a real one does. Loose bound: before the dummy
 * hash, an unknown user cost 1/100 of a real one. */
static void test_unknown_user_timing(void)
{
	char stored[256];
	str_copy(stored, hash_of("real-password", 13), sizeof(stored));
	(void)best_of(1, "warm-up", NULL); /* the dummy hash is made on first use */
	double unknown = best_of(5, "wrong-password", NULL);
	double real = best_of(5, "wrong-password", stored);
	printf("wrong password: unknown user %.1f ms, real user %.1f ms (best of 5)\n",
	       unknown * 1e3, real * 1e3);
	CHECK(unknown > real / 3);
	CHECK(real > unknown / 3);
}

/* ---- auth-penalty ---- */

static struct net_addr addr_of(const char *text)
{
	struct net_range r;
	if (net_range_parse(text, &r) < 0) {
		fprintf(stderr, "bad address in test: %s\n", text);
		abort();
	}
	return r.addr;
}

static void test_penalty_doubling(void)
{
	struct auth_penalty *p = auth_penalty_create(2000, 15000, 3600 * 1000);
	struct net_addr a = addr_of("192.0.2.1");
	uint64_t t = 1000000;
	CHECK_INT(auth_penalty_delay(p, &a, t), 0);
	CHECK_INT(auth_penalty_failures(p, &a, t), 0);
	static const unsigned int want[] = { 2000, 4000, 8000, 15000, 15000, 15000 };
	for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
		auth_penalty_fail(p, &a, "alice@example.test", t);
		CHECK_INT(auth_penalty_delay(p, &a, t), want[i]);
		CHECK_INT(auth_penalty_failures(p, &a, t), i + 1);
		t += 100;
	}
	/* the delay does not shrink as time passes, short of the reset */
	CHECK_INT(auth_penalty_delay(p, &a, t + 30 * 60 * 1000), 15000);
	/* many failures: still the cap, no overflow */
	for (int i = 0; i < 100; i++)
		auth_penalty_fail(p, &a, "alice@example.test", t);
	CHECK_INT(auth_penalty_delay(p, &a, t), 15000);
	CHECK_INT(auth_penalty_failures(p, &a, t), 106);
	/* other addresses are untouched */
	struct net_addr b = addr_of("192.0.2.2");
	CHECK_INT(auth_penalty_delay(p, &b, t), 0);
	auth_penalty_destroy(&p);
	CHECK(p == NULL);
	auth_penalty_destroy(&p);

	/* a max under initial is raised to it; a cap between the steps */
	p = auth_penalty_create(1000, 500, 60000);
	auth_penalty_fail(p, &a, "", 1);
	auth_penalty_fail(p, &a, "", 1);
	CHECK_INT(auth_penalty_delay(p, &a, 1), 1000);
	auth_penalty_destroy(&p);
	p = auth_penalty_create(300, 1000, 60000);
	static const unsigned int want2[] = { 300, 600, 1000, 1000 };
	for (size_t i = 0; i < 4; i++) {
		auth_penalty_fail(p, &a, "u@x.test", 5);
		CHECK_INT(auth_penalty_delay(p, &a, 5), want2[i]);
	}
	auth_penalty_destroy(&p);
	/* initial 0: no penalty at all (and no endless doubling of 0) */
	p = auth_penalty_create(0, 0, 60000);
	for (int i = 0; i < 50; i++)
		auth_penalty_fail(p, &a, "u@x.test", 5);
	CHECK_INT(auth_penalty_delay(p, &a, 5), 0);
	CHECK_INT(auth_penalty_failures(p, &a, 5), 50);
	auth_penalty_destroy(&p);
}

static void test_penalty_reset(void)
{
	const unsigned int reset = 60000;
	struct auth_penalty *p = auth_penalty_create(2000, 15000, reset);
	struct net_addr a = addr_of("198.51.100.7");
	auth_penalty_fail(p, &a, "bob@example.test", 1000);
	auth_penalty_fail(p, &a, "bob@example.test", 2000);
	CHECK_INT(auth_penalty_delay(p, &a, 2000 + reset - 1), 4000);
	CHECK_INT(auth_penalty_failures(p, &a, 2000 + reset - 1), 2);
	/* counted from the last failure, not the first */
	CHECK_INT(auth_penalty_delay(p, &a, 1000 + reset), 4000);
	/* reset without a failure forgets */
	CHECK_INT(auth_penalty_delay(p, &a, 2000 + reset), 0);
	CHECK_INT(auth_penalty_failures(p, &a, 2000 + reset), 0);
	/* and the next failure starts again at initial */
	auth_penalty_fail(p, &a, "bob@example.test", 3000 + reset);
	CHECK_INT(auth_penalty_delay(p, &a, 3000 + reset), 2000);
	/* a clock read earlier than the failure does not expire it */
	CHECK_INT(auth_penalty_delay(p, &a, 10), 2000);
	auth_penalty_destroy(&p);
}

static void test_penalty_prefix(void)
{
	struct auth_penalty *p = auth_penalty_create(2000, 15000, 3600 * 1000);
	struct net_addr a1 = addr_of("2001:db8:1:2::1");
	struct net_addr a2 = addr_of("2001:db8:1:2:ffff:ffff:ffff:fffe");
	struct net_addr other = addr_of("2001:db8:1:3::1");
	struct net_addr v4 = addr_of("203.0.113.1"), v4b = addr_of("203.0.113.2");
	auth_penalty_fail(p, &a1, "u@x.test", 10);
	auth_penalty_fail(p, &a2, "u@x.test", 10);
	/* one /64, one count */
	CHECK_INT(auth_penalty_failures(p, &a1, 10), 2);
	CHECK_INT(auth_penalty_delay(p, &a2, 10), 4000);
	CHECK_INT(auth_penalty_delay(p, &other, 10), 0);
	/* IPv4 addresses are counted one by one */
	auth_penalty_fail(p, &v4, "u@x.test", 10);
	CHECK_INT(auth_penalty_delay(p, &v4, 10), 2000);
	CHECK_INT(auth_penalty_delay(p, &v4b, 10), 0);
	/* a success from anywhere in the /64 counts for the /64 */
	auth_penalty_success(p, &a2, "u@x.test");
	CHECK_INT(auth_penalty_delay(p, &a1, 10), 0);
	auth_penalty_destroy(&p);
}

static void test_penalty_users(void)
{
	struct auth_penalty *p = auth_penalty_create(2000, 15000, 3600 * 1000);
	struct net_addr a = addr_of("192.0.2.10");

	/* a user who mistyped and then got it right is forgiven */
	auth_penalty_fail(p, &a, "alice@example.test", 10);
	auth_penalty_fail(p, &a, "alice@example.test", 11);
	auth_penalty_success(p, &a, "alice@example.test");
	CHECK_INT(auth_penalty_delay(p, &a, 12), 0);
	CHECK_INT(auth_penalty_failures(p, &a, 12), 0);

	/* an attacker's own account does not wipe the penalty earned
	 * against another's */
	for (int i = 0; i < 3; i++)
		auth_penalty_fail(p, &a, "victim@example.test", 20);
	auth_penalty_success(p, &a, "attacker@example.test");
	CHECK_INT(auth_penalty_delay(p, &a, 21), 8000);
	CHECK_INT(auth_penalty_failures(p, &a, 21), 3);
	/* names are compared exactly (the caller normalises them) */
	auth_penalty_success(p, &a, "victim@example.tes");
	auth_penalty_success(p, &a, "victim@example.test ");
	auth_penalty_success(p, &a, "");
	CHECK_INT(auth_penalty_failures(p, &a, 21), 3);
	auth_penalty_success(p, &a, "victim@example.test");
	CHECK_INT(auth_penalty_failures(p, &a, 21), 0);

	/* failures for several users: no success forgets them, the reset does */
	auth_penalty_fail(p, &a, "alice@example.test", 30);
	auth_penalty_fail(p, &a, "bob@example.test", 31);
	auth_penalty_fail(p, &a, "alice@example.test", 32);
	auth_penalty_success(p, &a, "alice@example.test");
	auth_penalty_success(p, &a, "bob@example.test");
	CHECK_INT(auth_penalty_failures(p, &a, 33), 3);
	CHECK_INT(auth_penalty_delay(p, &a, 33), 8000);
	CHECK_INT(auth_penalty_delay(p, &a, 32 + 3600 * 1000), 0);
	/* after the reset the address starts clean, one user again */
	auth_penalty_fail(p, &a, "bob@example.test", 40 + 3600 * 1000);
	auth_penalty_success(p, &a, "bob@example.test");
	CHECK_INT(auth_penalty_failures(p, &a, 41 + 3600 * 1000), 0);

	/* the first user and a later one: mixed as well */
	auth_penalty_fail(p, &a, "", 50 + 3600 * 1000);
	auth_penalty_fail(p, &a, "carol@example.test", 51 + 3600 * 1000);
	auth_penalty_success(p, &a, "");
	auth_penalty_success(p, &a, "carol@example.test");
	CHECK_INT(auth_penalty_failures(p, &a, 52 + 3600 * 1000), 2);

	/* a success with no failures remembered changes nothing */
	struct net_addr b = addr_of("192.0.2.11");
	auth_penalty_success(p, &b, "alice@example.test");
	CHECK_INT(auth_penalty_failures(p, &b, 60), 0);
	auth_penalty_destroy(&p);
}

static void test_penalty_bounded(void)
{
	const unsigned int capacity = AUTH_PENALTY_SETS * AUTH_PENALTY_WAYS;
	const unsigned int flood = 100000;
	struct auth_penalty *p = auth_penalty_create(2000, 15000, 3600 * 1000);
	struct net_addr first = addr_of("192.0.2.200");
	auth_penalty_fail(p, &first, "u@x.test", 1);
	auth_penalty_fail(p, &first, "u@x.test", 1);
	/* 100,000 addresses, 10.0.0.0 onwards, one failure each, later on */
	struct net_addr a = addr_of("10.0.0.0");
	for (unsigned int i = 0; i < flood; i++) {
		a.bytes[1] = (unsigned char)(i >> 16);
		a.bytes[2] = (unsigned char)(i >> 8);
		a.bytes[3] = (unsigned char)i;
		auth_penalty_fail(p, &a, "u@x.test", 10 + i);
	}
	unsigned int remembered = 0, recent_forgotten = 0;
	uint64_t now = 10 + flood;
	for (unsigned int i = 0; i < flood; i++) {
		a.bytes[1] = (unsigned char)(i >> 16);
		a.bytes[2] = (unsigned char)(i >> 8);
		a.bytes[3] = (unsigned char)i;
		unsigned int n = auth_penalty_failures(p, &a, now);
		if (n > 0)
			remembered++;
		else if (i >= flood - 1000)
			recent_forgotten++;
	}
	printf("penalty table: %u of %u flooding addresses remembered (capacity %u)\n",
	       remembered, flood, capacity);
	/* the table is full but never holds more than its fixed size; the
	 * oldest failures were the ones forgotten */
	CHECK(remembered <= capacity);
	CHECK(remembered > capacity * 9 / 10);
	CHECK_INT(recent_forgotten, 0);
	CHECK_INT(auth_penalty_failures(p, &first, now), 0);
	auth_penalty_destroy(&p);
}

/* ---- auth-cache ---- */

static void test_cache(void)
{
	char stored[256], changed[256];
	str_copy(stored, hash_of("cached-pw", 9), sizeof(stored));
	struct auth_cache_stats st;

	CHECK(auth_cache_create(64, 0) == NULL);
	CHECK(auth_cache_create(0, 1000) == NULL);

	struct auth_cache *c = auth_cache_create(64, 60 * 1000);
	CHECK(c != NULL);
	/* miss, then hit */
	CHECK(auth_cache_verify(c, "cached-pw", 9, stored));
	auth_cache_get_stats(c, &st);
	CHECK_INT(st.verifies, 1);
	CHECK_INT(st.hits, 0);
	CHECK(auth_cache_verify(c, "cached-pw", 9, stored));
	auth_cache_get_stats(c, &st);
	CHECK_INT(st.verifies, 1);
	CHECK_INT(st.hits, 1);
	/* failures are never cached: each one is a full check */
	CHECK(!auth_cache_verify(c, "cached-px", 9, stored));
	CHECK(!auth_cache_verify(c, "cached-px", 9, stored));
	CHECK(!auth_cache_verify(c, "cached-p", 8, stored));
	auth_cache_get_stats(c, &st);
	CHECK_INT(st.verifies, 4);
	CHECK_INT(st.hits, 1);
	/* the password changes: the old one stops matching the new hash at
	 * once, the new one is verified, then cached */
	str_copy(changed, hash_of("new-pw", 6), sizeof(changed));
	CHECK(!auth_cache_verify(c, "cached-pw", 9, changed));
	CHECK(auth_cache_verify(c, "new-pw", 6, changed));
	CHECK(auth_cache_verify(c, "new-pw", 6, changed));
	auth_cache_get_stats(c, &st);
	CHECK_INT(st.verifies, 6);
	CHECK_INT(st.hits, 2);
	/* no such user: a full (dummy) verification, false, never cached */
	CHECK(!auth_cache_verify(c, "cached-pw", 9, NULL));
	CHECK(!auth_cache_verify(c, "cached-pw", 9, NULL));
	CHECK(!auth_cache_verify(c, "", 0, NULL));
	auth_cache_get_stats(c, &st);
	CHECK_INT(st.verifies, 9);
	CHECK_INT(st.hits, 2);
	/* a malformed stored hash fails, and is not cached either */
	CHECK(!auth_cache_verify(c, "x", 1, "{MD5}abc"));
	CHECK(!auth_cache_verify(c, "x", 1, "{MD5}abc"));
	auth_cache_get_stats(c, &st);
	CHECK_INT(st.hits, 2);
	auth_cache_destroy(&c);
	CHECK(c == NULL);
	auth_cache_destroy(&c);

	/* the ttl */
	c = auth_cache_create(64, 150);
	CHECK(auth_cache_verify(c, "cached-pw", 9, stored));
	CHECK(auth_cache_verify(c, "cached-pw", 9, stored));
	auth_cache_get_stats(c, &st);
	CHECK_INT(st.hits, 1);
	sleep_ms(250);
	CHECK(auth_cache_verify(c, "cached-pw", 9, stored));
	auth_cache_get_stats(c, &st);
	CHECK_INT(st.hits, 1);
	CHECK_INT(st.verifies, 2);
	auth_cache_destroy(&c);

	/* no cache: verification only */
	auth_cache_get_stats(NULL, &st);
	CHECK_INT(st.hits + st.verifies, 0);
	CHECK(auth_cache_verify(NULL, "cached-pw", 9, stored));
	CHECK(!auth_cache_verify(NULL, "cached-px", 9, stored));
}

/* ---- sasl ---- */

/* base64 of len bytes, in a static buffer. */
static const char *b64(const char *data, size_t len)
{
	static struct buf out;
	static int ready;
	if (!ready) {
		buf_init(&out, 0);
		ready = 1;
	}
	buf_reset(&out);
	if (base64_encode(data, len, &out) < 0)
		abort();
	return out.data;
}

#define B64(lit) b64(lit, sizeof(lit) - 1)

static const char *decoded_challenge(const char *challenge)
{
	static char text[64];
	struct buf b;
	buf_init(&b, 0);
	CHECK_INT(base64_decode(challenge, strlen(challenge), &b), 0);
	str_copy(text, b.data, sizeof(text));
	buf_deinit(&b);
	return text;
}

/* Nothing the client sent is left in the exchange's own buffer. */
static bool exchange_wiped(const struct sasl_exchange *x)
{
	if (x->decoded.len != 0)
		return false;
	for (size_t i = 0; i < x->decoded.size; i++)
		if (x->decoded.data[i] != '\0')
			return false;
	return true;
}

struct sasl_fixture {
	struct sasl_exchange x;
	struct buf password;
	struct sasl_output out;
};

static void fx_init(struct sasl_fixture *f, enum sasl_mech mech, size_t max_response,
		    size_t password_cap)
{
	sasl_exchange_init(&f->x, mech, max_response);
	buf_init(&f->password, password_cap);
	buf_append_str(&f->password, "stale");
}

static void fx_deinit(struct sasl_fixture *f)
{
	sasl_exchange_deinit(&f->x);
	buf_wipe(&f->password);
	buf_deinit(&f->password);
}

static enum sasl_result fx_start(struct sasl_fixture *f, const char *initial)
{
	return sasl_exchange_start(&f->x, initial, initial == NULL ? 0 : strlen(initial),
				   &f->password, &f->out);
}

static enum sasl_result fx_step(struct sasl_fixture *f, const char *line)
{
	return sasl_exchange_step(&f->x, line, strlen(line), &f->password, &f->out);
}

/* A PLAIN message sent as the initial response; checks the failure kind. */
static void plain_fails(const char *msg, size_t len, enum sasl_error want, const char *text)
{
	struct sasl_fixture f;
	fx_init(&f, SASL_MECH_PLAIN, 4096, 1024);
	CHECK_INT(fx_start(&f, b64(msg, len)), SASL_FAILED);
	CHECK_INT(f.out.error, want);
	CHECK_STR(f.out.error_text, text);
	CHECK(f.out.user == NULL);
	CHECK(exchange_wiped(&f.x));
	/* the caller's buf is not touched by a failure */
	CHECK_STR(f.password.data, "stale");
	fx_deinit(&f);
}

static void test_sasl_mech_lookup(void)
{
	CHECK_INT(sasl_mech_lookup("PLAIN"), SASL_MECH_PLAIN);
	CHECK_INT(sasl_mech_lookup("plain"), SASL_MECH_PLAIN);
	CHECK_INT(sasl_mech_lookup("Login"), SASL_MECH_LOGIN);
	CHECK_INT(sasl_mech_lookup("CRAM-MD5"), SASL_MECH_UNKNOWN);
	CHECK_INT(sasl_mech_lookup("PLAINX"), SASL_MECH_UNKNOWN);
	CHECK_INT(sasl_mech_lookup(""), SASL_MECH_UNKNOWN);
	CHECK_INT(sasl_mech_lookup("oauthbearer"), SASL_MECH_OAUTHBEARER);
	CHECK_INT(sasl_mech_lookup("XOAUTH2"), SASL_MECH_XOAUTH2);
	CHECK(sasl_mech_is_bearer(SASL_MECH_XOAUTH2) && sasl_mech_is_bearer(SASL_MECH_OAUTHBEARER));
	CHECK(!sasl_mech_is_bearer(SASL_MECH_PLAIN) && !sasl_mech_is_bearer(SASL_MECH_LOGIN));
}

#define TOKEN "eyJhbGciOiJSUzI1NiJ9.eyJleHAiOjF9.c2ln-_~+/="

/* A bearer message (len octets) as the initial response: the user and
 * token on success (user NULL: expect the failure kind want). */
static void bearer_case(enum sasl_mech mech, const char *msg, size_t len, const char *user,
			enum sasl_error want)
{
	struct sasl_fixture f;
	fx_init(&f, mech, 4096, 1024);
	enum sasl_result r = fx_start(&f, b64(msg, len));
	if (user != NULL) {
		CHECK_INT(r, SASL_DONE);
		if (r == SASL_DONE) {
			CHECK_STR(f.out.user, user);
			CHECK_STR(f.password.data, TOKEN);
		}
	} else {
		CHECK_INT(r, SASL_FAILED);
		CHECK_INT(f.out.error, want);
		CHECK(f.out.error_text != NULL && f.out.user == NULL);
		CHECK_STR(f.password.data, "stale");
	}
	CHECK(exchange_wiped(&f.x));
	fx_deinit(&f);
}

#define BEARER_OK(mech, lit, user) bearer_case(mech, lit, sizeof(lit) - 1, user, SASL_ERROR_NONE)
#define BEARER_BAD(mech, lit, why) bearer_case(mech, lit, sizeof(lit) - 1, NULL, why)

static void test_sasl_bearer(void)
{
	const enum sasl_mech OB = SASL_MECH_OAUTHBEARER, XO = SASL_MECH_XOAUTH2;
	/* RFC 7628 3.1's shape, with host and port (ignored) */
	BEARER_OK(OB, "n,a=user@example.com,\x01host=server.example.com\x01port=143\x01"
		      "auth=Bearer " TOKEN "\x01\x01", "user@example.com");
	BEARER_OK(OB, "n,,\x01" "auth=Bearer " TOKEN "\x01\x01", "");
	BEARER_OK(OB, "y,,\x01" "auth=bearer  " TOKEN "\x01\x01", "");
	BEARER_OK(OB, "n,a=a=2Cb=3Dc@example.com,\x01" "auth=Bearer " TOKEN "\x01host=h\x01\x01",
		  "a,b=c@example.com");
	BEARER_OK(XO, "user=someuser@example.com\x01" "auth=Bearer " TOKEN "\x01\x01",
		  "someuser@example.com");
	BEARER_OK(XO, "auth=Bearer " TOKEN "\x01user=x@example.com\x01\x01", "x@example.com");

	BEARER_BAD(OB, "p=tls-unique,,\x01" "auth=Bearer " TOKEN "\x01\x01", SASL_ERROR_MALFORMED);
	BEARER_BAD(OB, "\x01", SASL_ERROR_MALFORMED);
	BEARER_BAD(OB, "n,,\x01\x01", SASL_ERROR_MALFORMED);
	BEARER_BAD(OB, "n,,\x01host=h\x01\x01", SASL_ERROR_MALFORMED);
	BEARER_BAD(OB, "n,,\x01" "auth=Bearer " TOKEN "\x01", SASL_ERROR_MALFORMED);
	BEARER_BAD(OB, "n,,\x01" "auth=Bearer " TOKEN "\x01\x01x", SASL_ERROR_MALFORMED);
	BEARER_BAD(OB, "n,,\x01" "auth=Bearer " TOKEN "\x01" "auth=Bearer " TOKEN "\x01\x01",
		   SASL_ERROR_MALFORMED);
	BEARER_BAD(OB, "n,,\x01" "auth=Basic dXNlcjpwdw==\x01\x01", SASL_ERROR_MALFORMED);
	BEARER_BAD(OB, "n,,\x01" "auth=Bearer \x01\x01", SASL_ERROR_MALFORMED);
	BEARER_BAD(OB, "n,,\x01" "auth=Bearer a=b\x01\x01", SASL_ERROR_MALFORMED);
	BEARER_BAD(OB, "n,,\x01" "auth=Bearer tok\x7f\x01\x01", SASL_ERROR_MALFORMED);
	BEARER_BAD(OB, "n,a=,\x01" "auth=Bearer " TOKEN "\x01\x01", SASL_ERROR_MALFORMED);
	BEARER_BAD(OB, "n,a=x=2Dy,\x01" "auth=Bearer " TOKEN "\x01\x01", SASL_ERROR_MALFORMED);
	BEARER_BAD(OB, "n,a=x\0y,\x01" "auth=Bearer " TOKEN "\x01\x01", SASL_ERROR_MALFORMED);
	BEARER_BAD(OB, "n,x=y,\x01" "auth=Bearer " TOKEN "\x01\x01", SASL_ERROR_MALFORMED);
	BEARER_BAD(OB, "n,,auth=Bearer " TOKEN "\x01\x01", SASL_ERROR_MALFORMED);
	BEARER_BAD(OB, "n,,\x01" "1x=2\x01" "auth=Bearer " TOKEN "\x01\x01", SASL_ERROR_MALFORMED);
	BEARER_BAD(XO, "auth=Bearer " TOKEN "\x01\x01", SASL_ERROR_MALFORMED);
	BEARER_BAD(XO, "user=a@b\x01user=c@d\x01" "auth=Bearer " TOKEN "\x01\x01",
		   SASL_ERROR_MALFORMED);
	BEARER_BAD(XO, "user=a@b\x01" "auth=Bearer " TOKEN "\x01", SASL_ERROR_MALFORMED);
	/* an XOAUTH2 message is not an OAUTHBEARER one, nor the reverse */
	BEARER_BAD(OB, "user=a@b\x01" "auth=Bearer " TOKEN "\x01\x01", SASL_ERROR_MALFORMED);
	BEARER_BAD(XO, "n,,\x01" "auth=Bearer " TOKEN "\x01\x01", SASL_ERROR_MALFORMED);

	/* a name over SASL_USER_MAX */
	char msg[1024];
	char name[SASL_USER_MAX + 2];
	memset(name, 'u', sizeof(name) - 1);
	name[sizeof(name) - 1] = '\0';
	int n = snprintf(msg, sizeof(msg), "n,a=%s,\x01" "auth=Bearer " TOKEN "\x01\x01", name);
	bearer_case(OB, msg, (size_t)n, NULL, SASL_ERROR_USER);
	n = snprintf(msg, sizeof(msg), "user=%s\x01" "auth=Bearer " TOKEN "\x01\x01", name);
	bearer_case(XO, msg, (size_t)n, NULL, SASL_ERROR_USER);
	name[SASL_USER_MAX] = '\0';
	n = snprintf(msg, sizeof(msg), "n,a=%s,\x01" "auth=Bearer " TOKEN "\x01\x01", name);
	bearer_case(OB, msg, (size_t)n, name, SASL_ERROR_NONE);

	/* every proper prefix of a good message is refused */
	static const char good[] = "n,a=u@example.com,\x01port=1\x01" "auth=Bearer " TOKEN "\x01\x01";
	int accepted = 0;
	for (size_t cut = 1; cut < sizeof(good) - 1; cut++) {
		struct sasl_fixture f;
		fx_init(&f, OB, 4096, 1024);
		if (fx_start(&f, b64(good, cut)) != SASL_FAILED)
			accepted++;
		fx_deinit(&f);
	}
	CHECK_INT(accepted, 0);

	/* continuation: an empty challenge, then the message; "*" cancels */
	struct sasl_fixture f;
	fx_init(&f, XO, 4096, 1024);
	CHECK_INT(fx_start(&f, NULL), SASL_CONTINUE);
	CHECK_STR(f.out.challenge, "");
	CHECK_INT(fx_step(&f, B64("user=a@example.com\x01" "auth=Bearer " TOKEN "\x01\x01")), SASL_DONE);
	CHECK_STR(f.out.user, "a@example.com");
	CHECK_STR(f.password.data, TOKEN);
	fx_deinit(&f);
	fx_init(&f, OB, 4096, 1024);
	CHECK_INT(fx_start(&f, "="), SASL_CONTINUE);
	CHECK_INT(fx_step(&f, "*"), SASL_FAILED);
	CHECK_INT(f.out.error, SASL_ERROR_CANCELLED);
	fx_deinit(&f);
	fx_init(&f, OB, 64, 1024);
	CHECK_INT(fx_start(&f, B64("n,,\x01" "auth=Bearer " TOKEN TOKEN "\x01\x01")), SASL_FAILED);
	CHECK_INT(f.out.error, SASL_ERROR_TOO_LONG);
	fx_deinit(&f);

	/* the error challenges are the JSON statuses */
	CHECK_STR(decoded_challenge(sasl_bearer_error_challenge(OB)), "{\"status\":\"invalid_token\"}");
	CHECK_STR(decoded_challenge(sasl_bearer_error_challenge(XO)),
		  "{\"status\":\"401\",\"schemes\":\"bearer\"}");
}

static void test_sasl_plain(void)
{
	struct sasl_fixture f;

	/* initial response */
	fx_init(&f, SASL_MECH_PLAIN, 4096, 1024);
	CHECK_INT(fx_start(&f, B64("\0alice@example.test\0s3cret")), SASL_DONE);
	CHECK_STR(f.out.user, "alice@example.test");
	CHECK_MEM(f.password.data, f.password.len, "s3cret", 6);
	CHECK(f.out.challenge == NULL && f.out.error == SASL_ERROR_NONE);
	CHECK(exchange_wiped(&f.x));
	fx_deinit(&f);

	/* authzid equal to authcid */
	fx_init(&f, SASL_MECH_PLAIN, 4096, 1024);
	CHECK_INT(fx_start(&f, B64("alice@example.test\0alice@example.test\0pw")), SASL_DONE);
	CHECK_STR(f.out.user, "alice@example.test");
	CHECK_MEM(f.password.data, f.password.len, "pw", 2);
	fx_deinit(&f);

	/* continued: no initial response, an empty challenge */
	fx_init(&f, SASL_MECH_PLAIN, 4096, 1024);
	CHECK_INT(fx_start(&f, NULL), SASL_CONTINUE);
	CHECK_STR(f.out.challenge, "");
	CHECK_INT(fx_step(&f, B64("\0bob@example.test\0hunter2")), SASL_DONE);
	CHECK_STR(f.out.user, "bob@example.test");
	CHECK_MEM(f.password.data, f.password.len, "hunter2", 7);
	fx_deinit(&f);

	/* an empty initial argument counts as none */
	fx_init(&f, SASL_MECH_PLAIN, 4096, 1024);
	CHECK_INT(fx_start(&f, ""), SASL_CONTINUE);
	CHECK_STR(f.out.challenge, "");
	fx_deinit(&f);

	/* "=": the empty initial response, answered with the empty challenge */
	fx_init(&f, SASL_MECH_PLAIN, 4096, 1024);
	CHECK_INT(fx_start(&f, "="), SASL_CONTINUE);
	CHECK_STR(f.out.challenge, "");
	CHECK_INT(fx_step(&f, B64("\0bob@example.test\0pw")), SASL_DONE);
	CHECK_STR(f.out.user, "bob@example.test");
	fx_deinit(&f);

	/* an empty message after the challenge is malformed, "=" or "" */
	static const char *const empty[] = { "=", "" };
	for (size_t i = 0; i < 2; i++) {
		fx_init(&f, SASL_MECH_PLAIN, 4096, 1024);
		CHECK_INT(fx_start(&f, NULL), SASL_CONTINUE);
		CHECK_INT(fx_step(&f, empty[i]), SASL_FAILED);
		CHECK_INT(f.out.error, SASL_ERROR_MALFORMED);
		CHECK_STR(f.out.error_text,
			  "Invalid PLAIN message (expected authzid NUL authcid NUL password)");
		fx_deinit(&f);
	}

	/* cancel */
	fx_init(&f, SASL_MECH_PLAIN, 4096, 1024);
	CHECK_INT(fx_start(&f, NULL), SASL_CONTINUE);
	CHECK_INT(fx_step(&f, "*"), SASL_FAILED);
	CHECK_INT(f.out.error, SASL_ERROR_CANCELLED);
	CHECK_STR(f.out.error_text, "Authentication cancelled");
	CHECK_STR(f.password.data, "stale");
	fx_deinit(&f);

	/* "*" as an initial response is no cancellation, just not base64 */
	fx_init(&f, SASL_MECH_PLAIN, 4096, 1024);
	CHECK_INT(fx_start(&f, "*"), SASL_FAILED);
	CHECK_INT(f.out.error, SASL_ERROR_BASE64);
	fx_deinit(&f);

	/* bad base64, initial and continued */
	static const char *const bad[] = { "not base64!", "QQ", "QQ=", "QUJD\r", "QR==", "Q===",
					   "QUJD=QUJD", "%%%not-base64" };
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		fx_init(&f, SASL_MECH_PLAIN, 4096, 1024);
		CHECK_INT(fx_start(&f, bad[i]), SASL_FAILED);
		CHECK_INT(f.out.error, SASL_ERROR_BASE64);
		CHECK_STR(f.out.error_text, "Invalid base64 data");
		fx_deinit(&f);
		fx_init(&f, SASL_MECH_PLAIN, 4096, 1024);
		CHECK_INT(fx_start(&f, NULL), SASL_CONTINUE);
		CHECK_INT(fx_step(&f, bad[i]), SASL_FAILED);
		CHECK_INT(f.out.error, SASL_ERROR_BASE64);
		fx_deinit(&f);
	}

	/* malformed messages */
	plain_fails("no-nuls-at-all", 14, SASL_ERROR_MALFORMED,
		    "Invalid PLAIN message (expected authzid NUL authcid NUL password)");
	plain_fails("ABC", 3, SASL_ERROR_MALFORMED,
		    "Invalid PLAIN message (expected authzid NUL authcid NUL password)");
	plain_fails("\0only-one-nul", 13, SASL_ERROR_MALFORMED,
		    "Invalid PLAIN message (expected authzid NUL authcid NUL password)");
	plain_fails("\0u@x.test\0p\0w", 13, SASL_ERROR_MALFORMED,
		    "Invalid PLAIN message (NUL in the password)");
	plain_fails("\0u@x.test\0", 10, SASL_ERROR_MALFORMED,
		    "Invalid PLAIN message (empty user name or password)");
	plain_fails("\0\0pw", 4, SASL_ERROR_MALFORMED,
		    "Invalid PLAIN message (empty user name or password)");
	plain_fails("\0\0", 2, SASL_ERROR_MALFORMED,
		    "Invalid PLAIN message (empty user name or password)");

	/* proxy authorization is refused */
	plain_fails("other@x.test\0u@x.test\0pw", 24, SASL_ERROR_AUTHZID,
		    "Authorization identity must be empty or the user name");
	plain_fails("u@x.tes\0u@x.test\0pw", 19, SASL_ERROR_AUTHZID,
		    "Authorization identity must be empty or the user name");
	plain_fails("U@x.test\0u@x.test\0pw", 20, SASL_ERROR_AUTHZID,
		    "Authorization identity must be empty or the user name");

	/* user names up to SASL_USER_MAX */
	char msg[SASL_USER_MAX + 16];
	msg[0] = '\0';
	memset(msg + 1, 'a', SASL_USER_MAX);
	msg[SASL_USER_MAX + 1] = '\0';
	memcpy(msg + SASL_USER_MAX + 2, "pw", 2);
	fx_init(&f, SASL_MECH_PLAIN, 4096, 1024);
	CHECK_INT(fx_start(&f, b64(msg, SASL_USER_MAX + 4)), SASL_DONE);
	CHECK_INT(strlen(f.out.user), SASL_USER_MAX);
	fx_deinit(&f);
	msg[0] = '\0';
	memset(msg + 1, 'a', SASL_USER_MAX + 1);
	msg[SASL_USER_MAX + 2] = '\0';
	memcpy(msg + SASL_USER_MAX + 3, "pw", 2);
	plain_fails(msg, SASL_USER_MAX + 5, SASL_ERROR_USER,
		    "Invalid user name (expected user@domain)");
}

static void test_sasl_limits(void)
{
	struct sasl_fixture f;
	/* max_response bounds the base64 text: 64 octets pass, 68 do not */
	char m48[48], m51[51];
	memset(m48, 'p', sizeof(m48));
	m48[0] = '\0';
	m48[5] = '\0';
	memcpy(m48 + 1, "u@xt", 4);
	memset(m51, 'p', sizeof(m51));
	memcpy(m51, m48, 6);
	fx_init(&f, SASL_MECH_PLAIN, 64, 1024);
	CHECK_INT(strlen(b64(m48, sizeof(m48))), 64);
	CHECK_INT(fx_start(&f, b64(m48, sizeof(m48))), SASL_DONE);
	CHECK_INT(f.password.len, 42);
	fx_deinit(&f);
	fx_init(&f, SASL_MECH_PLAIN, 64, 1024);
	CHECK_INT(strlen(b64(m51, sizeof(m51))), 68);
	CHECK_INT(fx_start(&f, b64(m51, sizeof(m51))), SASL_FAILED);
	CHECK_INT(f.out.error, SASL_ERROR_TOO_LONG);
	CHECK_STR(f.out.error_text, "Authentication response too long");
	fx_deinit(&f);
	fx_init(&f, SASL_MECH_PLAIN, 64, 1024);
	CHECK_INT(fx_start(&f, NULL), SASL_CONTINUE);
	CHECK_INT(fx_step(&f, b64(m51, sizeof(m51))), SASL_FAILED);
	CHECK_INT(f.out.error, SASL_ERROR_TOO_LONG);
	fx_deinit(&f);
	/* an over-long line fails as too long even when it is not base64 */
	fx_init(&f, SASL_MECH_PLAIN, 64, 1024);
	char junk[100];
	memset(junk, '!', sizeof(junk) - 1);
	junk[sizeof(junk) - 1] = '\0';
	CHECK_INT(fx_start(&f, junk), SASL_FAILED);
	CHECK_INT(f.out.error, SASL_ERROR_TOO_LONG);
	fx_deinit(&f);

	/* the caller's cap bounds the password; the buf is left wiped */
	fx_init(&f, SASL_MECH_PLAIN, 4096, 5);
	CHECK_INT(fx_start(&f, B64("\0u@x.test\0" "123456")), SASL_FAILED);
	CHECK_INT(f.out.error, SASL_ERROR_TOO_LONG);
	CHECK_STR(f.out.error_text, "Password too long");
	CHECK(f.out.user == NULL);
	CHECK_INT(f.password.len, 0);
	CHECK(exchange_wiped(&f.x));
	fx_deinit(&f);
	fx_init(&f, SASL_MECH_PLAIN, 4096, 5);
	CHECK_INT(fx_start(&f, B64("\0u@x.test\0" "12345")), SASL_DONE);
	CHECK_MEM(f.password.data, f.password.len, "12345", 5);
	fx_deinit(&f);
}

static void test_sasl_login(void)
{
	struct sasl_fixture f;

	/* without an initial response */
	fx_init(&f, SASL_MECH_LOGIN, 4096, 1024);
	CHECK_INT(fx_start(&f, NULL), SASL_CONTINUE);
	CHECK_STR(f.out.challenge, "VXNlcm5hbWU6");
	CHECK_STR(decoded_challenge(f.out.challenge), "Username:");
	CHECK_INT(fx_step(&f, B64("carol@example.test")), SASL_CONTINUE);
	CHECK_STR(f.out.challenge, "UGFzc3dvcmQ6");
	CHECK_STR(decoded_challenge(f.out.challenge), "Password:");
	CHECK(f.out.user == NULL);
	CHECK_STR(f.password.data, "stale");
	CHECK(exchange_wiped(&f.x));
	CHECK_INT(fx_step(&f, B64("p4ss w0rd")), SASL_DONE);
	CHECK_STR(f.out.user, "carol@example.test");
	CHECK_MEM(f.password.data, f.password.len, "p4ss w0rd", 9);
	CHECK(exchange_wiped(&f.x));
	fx_deinit(&f);

	/* the user name as the initial response */
	fx_init(&f, SASL_MECH_LOGIN, 4096, 1024);
	CHECK_INT(fx_start(&f, B64("dave@example.test")), SASL_CONTINUE);
	CHECK_STR(f.out.challenge, "UGFzc3dvcmQ6");
	CHECK_INT(fx_step(&f, B64("pw")), SASL_DONE);
	CHECK_STR(f.out.user, "dave@example.test");
	CHECK_MEM(f.password.data, f.password.len, "pw", 2);
	fx_deinit(&f);

	/* "=" as the initial response: an empty user name, left for the
	 * caller's name check to refuse */
	fx_init(&f, SASL_MECH_LOGIN, 4096, 1024);
	CHECK_INT(fx_start(&f, "="), SASL_CONTINUE);
	CHECK_STR(f.out.challenge, "UGFzc3dvcmQ6");
	CHECK_INT(fx_step(&f, B64("pw")), SASL_DONE);
	CHECK_STR(f.out.user, "");
	fx_deinit(&f);

	/* cancel at either step */
	for (int at = 0; at < 2; at++) {
		fx_init(&f, SASL_MECH_LOGIN, 4096, 1024);
		CHECK_INT(fx_start(&f, NULL), SASL_CONTINUE);
		if (at == 1)
			CHECK_INT(fx_step(&f, B64("carol@example.test")), SASL_CONTINUE);
		CHECK_INT(fx_step(&f, "*"), SASL_FAILED);
		CHECK_INT(f.out.error, SASL_ERROR_CANCELLED);
		CHECK_STR(f.out.error_text, "Authentication cancelled");
		CHECK(f.out.user == NULL);
		CHECK_STR(f.password.data, "stale");
		fx_deinit(&f);
	}

	/* bad base64: initial, user step, password step */
	fx_init(&f, SASL_MECH_LOGIN, 4096, 1024);
	CHECK_INT(fx_start(&f, "%%%"), SASL_FAILED);
	CHECK_INT(f.out.error, SASL_ERROR_BASE64);
	fx_deinit(&f);
	fx_init(&f, SASL_MECH_LOGIN, 4096, 1024);
	CHECK_INT(fx_start(&f, NULL), SASL_CONTINUE);
	CHECK_INT(fx_step(&f, "Y2Fyb2w"), SASL_FAILED);
	CHECK_INT(f.out.error, SASL_ERROR_BASE64);
	fx_deinit(&f);
	fx_init(&f, SASL_MECH_LOGIN, 4096, 1024);
	CHECK_INT(fx_start(&f, B64("carol@example.test")), SASL_CONTINUE);
	CHECK_INT(fx_step(&f, "cHc=\n"), SASL_FAILED);
	CHECK_INT(f.out.error, SASL_ERROR_BASE64);
	CHECK_STR(f.password.data, "stale");
	fx_deinit(&f);

	/* the password may be neither empty nor hold a NUL */
	static const char *const empty[] = { "=", "" };
	for (size_t i = 0; i < 2; i++) {
		fx_init(&f, SASL_MECH_LOGIN, 4096, 1024);
		CHECK_INT(fx_start(&f, B64("carol@example.test")), SASL_CONTINUE);
		CHECK_INT(fx_step(&f, empty[i]), SASL_FAILED);
		CHECK_INT(f.out.error, SASL_ERROR_PASSWORD);
		fx_deinit(&f);
	}
	fx_init(&f, SASL_MECH_LOGIN, 4096, 1024);
	CHECK_INT(fx_start(&f, B64("carol@example.test")), SASL_CONTINUE);
	CHECK_INT(fx_step(&f, B64("pass\0word")), SASL_FAILED);
	CHECK_INT(f.out.error, SASL_ERROR_PASSWORD);
	CHECK_STR(f.out.error_text, "Invalid password (empty, or with a NUL)");
	CHECK_STR(f.password.data, "stale");
	CHECK(exchange_wiped(&f.x));
	fx_deinit(&f);

	/* a user name with a NUL, or too long */
	fx_init(&f, SASL_MECH_LOGIN, 4096, 1024);
	CHECK_INT(fx_start(&f, B64("carol\0@example.test")), SASL_FAILED);
	CHECK_INT(f.out.error, SASL_ERROR_USER);
	CHECK_STR(f.out.error_text, "Invalid user name (expected user@domain)");
	fx_deinit(&f);
	char name[SASL_USER_MAX + 1];
	memset(name, 'n', sizeof(name));
	fx_init(&f, SASL_MECH_LOGIN, 4096, 1024);
	CHECK_INT(fx_start(&f, NULL), SASL_CONTINUE);
	CHECK_INT(fx_step(&f, b64(name, SASL_USER_MAX + 1)), SASL_FAILED);
	CHECK_INT(f.out.error, SASL_ERROR_USER);
	fx_deinit(&f);
	fx_init(&f, SASL_MECH_LOGIN, 4096, 1024);
	CHECK_INT(fx_start(&f, b64(name, SASL_USER_MAX)), SASL_CONTINUE);
	CHECK_INT(fx_step(&f, B64("pw")), SASL_DONE);
	CHECK_INT(strlen(f.out.user), SASL_USER_MAX);
	fx_deinit(&f);

	/* over-long responses at either step */
	char big[200];
	memset(big, 'x', sizeof(big));
	fx_init(&f, SASL_MECH_LOGIN, 64, 1024);
	CHECK_INT(fx_start(&f, b64(big, 60)), SASL_FAILED);
	CHECK_INT(f.out.error, SASL_ERROR_TOO_LONG);
	fx_deinit(&f);
	fx_init(&f, SASL_MECH_LOGIN, 64, 1024);
	CHECK_INT(fx_start(&f, B64("u@x.test")), SASL_CONTINUE);
	CHECK_INT(fx_step(&f, b64(big, 60)), SASL_FAILED);
	CHECK_INT(f.out.error, SASL_ERROR_TOO_LONG);
	CHECK_STR(f.password.data, "stale");
	fx_deinit(&f);
	fx_init(&f, SASL_MECH_LOGIN, 64, 1024);
	CHECK_INT(fx_start(&f, B64("u@x.test")), SASL_CONTINUE);
	CHECK_INT(fx_step(&f, b64(big, 48)), SASL_DONE);
	CHECK_INT(f.password.len, 48);
	fx_deinit(&f);

	/* deinit twice, and deinit of an exchange never started, are fine */
	fx_init(&f, SASL_MECH_LOGIN, 64, 1024);
	fx_deinit(&f);
	sasl_exchange_deinit(&f.x);
}

static void test_sasl_pieces(void)
{
	/* the helpers the sessions use today give the same answers */
	struct buf msg;
	const char *error = NULL, *authcid, *passwd;
	size_t passwd_len;
	buf_init(&msg, 4096);
	CHECK_INT(sasl_decode_response("=", 1, &msg, &error), 0);
	CHECK_INT(msg.len, 0);
	CHECK_INT(sasl_decode_response("QUJD", 4, &msg, &error), 0);
	CHECK_STR(msg.data, "ABC");
	CHECK_INT(sasl_decode_response("QUJ", 3, &msg, &error), -1);
	CHECK_STR(error, "Invalid base64 data");
	CHECK_INT(msg.len, 0);
	const char *ok = B64("\0u@x.test\0pw");
	CHECK_INT(sasl_decode_response(ok, strlen(ok), &msg, &error), 0);
	CHECK_INT(sasl_plain_split(&msg, &authcid, &passwd, &passwd_len, &error), 0);
	CHECK_STR(authcid, "u@x.test");
	CHECK_MEM(passwd, passwd_len, "pw", 2);
	const char *proxy = B64("a@x.test\0u@x.test\0pw");
	CHECK_INT(sasl_decode_response(proxy, strlen(proxy), &msg, &error), 0);
	CHECK_INT(sasl_plain_split(&msg, &authcid, &passwd, &passwd_len, &error), -1);
	CHECK_STR(error, "Authorization identity must be empty or the user name");
	buf_wipe(&msg);
	buf_deinit(&msg);
}

int main(void)
{
	test_password_argon2id();
	test_password_nul();
	test_password_crypt();
	test_password_malformed();
	test_password_dummy();
	test_unknown_user_timing();
	test_penalty_doubling();
	test_penalty_reset();
	test_penalty_prefix();
	test_penalty_users();
	test_penalty_bounded();
	test_cache();
	test_sasl_mech_lookup();
	test_sasl_plain();
	test_sasl_limits();
	test_sasl_login();
	test_sasl_pieces();
	test_sasl_bearer();
	TEST_MAIN_END();
}
