/*
 * auth-penalty: a set-associative table keyed by the client's address
 * (IPv6 cut to /64), hashed with a per-process random key so the slot of
 * an address cannot be predicted from outside.
 */
#include "auth-penalty.h"

#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "buf.h"

#define AUTH_PENALTY_SETS 4096
#define AUTH_PENALTY_WAYS 8
#define AUTH_PENALTY_V6_PREFIX 64

struct penalty_entry {
	struct net_addr addr;
	uint64_t last_failure_ms;
	unsigned int failures;   /* 0: the slot is free */
};

struct auth_penalty {
	unsigned int initial_ms, max_ms, reset_ms;
	uint64_t hash_key;
	struct penalty_entry entries[AUTH_PENALTY_SETS][AUTH_PENALTY_WAYS];
};

struct auth_penalty *auth_penalty_create(unsigned int initial_ms, unsigned int max_ms,
					 unsigned int reset_ms)
{
	struct auth_penalty *p = xcalloc(1, sizeof(*p));
	p->initial_ms = initial_ms;
	p->max_ms = max_ms < initial_ms ? initial_ms : max_ms;
	p->reset_ms = reset_ms;
	if (getrandom(&p->hash_key, sizeof(p->hash_key), 0) != (ssize_t)sizeof(p->hash_key))
		p->hash_key = (uint64_t)(uintptr_t)p;
	return p;
}

void auth_penalty_destroy(struct auth_penalty **pp)
{
	free(*pp);
	*pp = NULL;
}

static void key_of(struct net_addr *key, const struct net_addr *addr)
{
	if (addr->family == AF_INET6)
		net_addr_prefix(key, addr, AUTH_PENALTY_V6_PREFIX);
	else
		*key = *addr;
}

static struct penalty_entry *set_of(struct auth_penalty *p, const struct net_addr *key)
{
	/* FNV-1a over the key bytes, seeded with the random key. */
	uint64_t h = 0xcbf29ce484222325ULL ^ p->hash_key;
	h = (h ^ (uint64_t)key->family) * 0x100000001b3ULL;
	for (size_t i = 0; i < sizeof(key->bytes); i++)
		h = (h ^ key->bytes[i]) * 0x100000001b3ULL;
	h ^= h >> 29;
	return p->entries[h % AUTH_PENALTY_SETS];
}

static bool expired(const struct auth_penalty *p, const struct penalty_entry *e, uint64_t now_ms)
{
	return now_ms - e->last_failure_ms >= p->reset_ms;
}

static struct penalty_entry *lookup(struct auth_penalty *p, const struct net_addr *key,
				    uint64_t now_ms)
{
	struct penalty_entry *set = set_of(p, key);
	for (int i = 0; i < AUTH_PENALTY_WAYS; i++) {
		struct penalty_entry *e = &set[i];
		if (e->failures == 0 || !net_addr_equal(&e->addr, key))
			continue;
		if (expired(p, e, now_ms)) {
			e->failures = 0;
			return NULL;
		}
		return e;
	}
	return NULL;
}

unsigned int auth_penalty_fail(struct auth_penalty *p, const struct net_addr *addr,
			       uint64_t now_ms)
{
	struct net_addr key;
	key_of(&key, addr);
	struct penalty_entry *e = lookup(p, &key, now_ms);
	if (e == NULL) {
		struct penalty_entry *set = set_of(p, &key);
		e = &set[0];
		for (int i = 0; i < AUTH_PENALTY_WAYS; i++) {
			if (set[i].failures == 0 || expired(p, &set[i], now_ms)) {
				e = &set[i];
				break;
			}
			if (set[i].last_failure_ms < e->last_failure_ms)
				e = &set[i];
		}
		e->addr = key;
		e->failures = 0;
	}
	if (e->failures < 64)
		e->failures++;
	e->last_failure_ms = now_ms;
	uint64_t delay = p->initial_ms;
	for (unsigned int i = 1; i < e->failures && delay < p->max_ms; i++)
		delay *= 2;
	return delay > p->max_ms ? p->max_ms : (unsigned int)delay;
}

void auth_penalty_success(struct auth_penalty *p, const struct net_addr *addr)
{
	struct net_addr key;
	key_of(&key, addr);
	struct penalty_entry *set = set_of(p, &key);
	for (int i = 0; i < AUTH_PENALTY_WAYS; i++)
		if (set[i].failures > 0 && net_addr_equal(&set[i].addr, &key))
			set[i].failures = 0;
}

unsigned int auth_penalty_failures(struct auth_penalty *p, const struct net_addr *addr,
				   uint64_t now_ms)
{
	struct net_addr key;
	key_of(&key, addr);
	const struct penalty_entry *e = lookup(p, &key, now_ms);
	return e != NULL ? e->failures : 0;
}
