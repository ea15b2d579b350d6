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
 */
#include <stdbool.h>
#include <stddef.h>

struct auth_cache;

/* ttl_ms 0: no cache (auth_cache_verify then only verifies). */
struct auth_cache *auth_cache_create(unsigned int entries, unsigned int ttl_ms);
void auth_cache_destroy(struct auth_cache **cache);

/* password_verify() with the cache in front. cache may be NULL. */
bool auth_cache_verify(struct auth_cache *cache, const char *password, size_t len,
		       const char *stored);

#endif
