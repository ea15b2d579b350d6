#ifndef TERN_AUTH_CACHE_H
#define TERN_AUTH_CACHE_H
/*
 * auth-cache: remembers recent successful password checks, so a client
 * that logs in every minute does not pay a memory-hard hash every time
 * (Dovecot's auth_cache does the same).
 *
 * Only successes are cached: a wrong password always costs the full hash,
 * so the cache gives a password guesser nothing. An entry is an HMAC, under
 * a random key made when the cache is, of the stored hash and the password:
 * no password is kept, and when a password is changed the stored hash
 * changes, so the old password stops matching at once, with no
 * invalidation needed. Thread-safe.
 *
 * A user that does not exist costs a full (dummy) verification too, and is
 * never cached: otherwise its quick answer would tell a prober which
 * names are real.
 */
#include <stdbool.h>
#include <stddef.h>

struct auth_cache;

/* ttl_ms 0: no cache (auth_cache_verify then only verifies). */
struct auth_cache *auth_cache_create(unsigned int entries, unsigned int ttl_ms);
void auth_cache_destroy(struct auth_cache **cache);

/* password_verify() with the cache in front. cache may be NULL (no
 * cache). stored NULL means "no such user": the password is verified
 * against the dummy hash (password_verify_dummy()), so the answer costs
 * what a real user's wrong password costs; the result is false and
 * nothing is cached. Call from a worker thread. */
bool auth_cache_verify(struct auth_cache *cache, const char *password, size_t len,
		       const char *stored);

struct auth_cache_stats {
	unsigned long long hits;     /* answered from the cache */
	unsigned long long verifies; /* full verifications, dummy ones included */
};
/* Counters since create (all 0 for a NULL cache). */
void auth_cache_get_stats(struct auth_cache *cache, struct auth_cache_stats *stats_r);

#endif
