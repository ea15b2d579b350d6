/*
 * auth-cache: a fixed-size table of HMAC-SHA256 digests with their time of
 * insertion; a colliding insert replaces the older entry. See auth-cache.h
 * for what is cached and why that is safe.
 *
 * Invariants: an entry is written only after password_verify() said yes;
 * a NULL stored hash (no such user) never reads or writes the table; the
 * lock is never held across a verification.
 */
#include "auth-cache.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include "clock.h"
#include "buf.h"
#include "log.h"
#include "password.h"

#define DIGEST_LEN 32

struct auth_cache_entry {
	uint8_t digest[DIGEST_LEN];
	uint64_t added_ms; /* 0: empty */
};

struct auth_cache {
	pthread_mutex_t lock;
	uint8_t key[32];
	unsigned int ttl_ms;
	unsigned int size;
	struct auth_cache_entry *entries;
	struct auth_cache_stats stats;
};

struct auth_cache *auth_cache_create(unsigned int entries, unsigned int ttl_ms)
{
	if (ttl_ms == 0 || entries == 0)
		return NULL;
	struct auth_cache *c = xcalloc(1, sizeof(*c));
	if (getrandom(c->key, sizeof(c->key), 0) != (ssize_t)sizeof(c->key))
		panic("getrandom failed");
	pthread_mutex_init(&c->lock, NULL);
	c->ttl_ms = ttl_ms;
	c->size = entries;
	c->entries = xcalloc(entries, sizeof(*c->entries));
	return c;
}

void auth_cache_destroy(struct auth_cache **cp)
{
	struct auth_cache *c = *cp;
	if (c == NULL)
		return;
	*cp = NULL;
	explicit_bzero(c->key, sizeof(c->key));
	explicit_bzero(c->entries, (size_t)c->size * sizeof(*c->entries));
	free(c->entries);
	pthread_mutex_destroy(&c->lock);
	free(c);
}

static void digest_of(const struct auth_cache *c, const char *password, size_t len,
		      const char *stored, uint8_t out[DIGEST_LEN])
{
	size_t slen = strlen(stored);
	size_t total = slen + 1 + len;
	uint8_t *msg = xmalloc(total);
	memcpy(msg, stored, slen);
	msg[slen] = 0;
	memcpy(msg + slen + 1, password, len);
	unsigned int dlen = 0;
	if (HMAC(EVP_sha256(), c->key, sizeof(c->key), msg, total, out, &dlen) == NULL ||
	    dlen != DIGEST_LEN)
		panic("HMAC-SHA256 failed");
	explicit_bzero(msg, total);
	free(msg);
}

static void count_verify(struct auth_cache *c)
{
	pthread_mutex_lock(&c->lock);
	c->stats.verifies++;
	pthread_mutex_unlock(&c->lock);
}

bool auth_cache_verify(struct auth_cache *c, const char *password, size_t len,
		       const char *stored)
{
	if (stored == NULL) {
		if (c != NULL)
			count_verify(c);
		return password_verify_dummy(password, len);
	}
	if (c == NULL)
		return password_verify(password, len, stored);
	uint8_t d[DIGEST_LEN];
	digest_of(c, password, len, stored, d);
	unsigned int slot = (((unsigned int)d[0] << 24) | ((unsigned int)d[1] << 16) |
			     ((unsigned int)d[2] << 8) | d[3]) % c->size;
	uint64_t now = clock_monotonic_ms();
	pthread_mutex_lock(&c->lock);
	struct auth_cache_entry *e = &c->entries[slot];
	bool hit = e->added_ms != 0 && now - e->added_ms < c->ttl_ms &&
		   CRYPTO_memcmp(e->digest, d, DIGEST_LEN) == 0;
	if (hit)
		c->stats.hits++;
	else
		c->stats.verifies++;
	pthread_mutex_unlock(&c->lock);
	if (hit) {
		explicit_bzero(d, sizeof(d));
		return true;
	}
	bool ok = password_verify(password, len, stored);
	if (ok) {
		pthread_mutex_lock(&c->lock);
		memcpy(e->digest, d, DIGEST_LEN);
		e->added_ms = now != 0 ? now : 1;
		pthread_mutex_unlock(&c->lock);
	}
	explicit_bzero(d, sizeof(d));
	return ok;
}

void auth_cache_get_stats(struct auth_cache *c, struct auth_cache_stats *stats_r)
{
	memset(stats_r, 0, sizeof(*stats_r));
	if (c == NULL)
		return;
	pthread_mutex_lock(&c->lock);
	*stats_r = c->stats;
	pthread_mutex_unlock(&c->lock);
}
