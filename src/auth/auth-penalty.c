/*
 * auth-penalty: a set-associative table keyed by the client's address
 * (IPv6 cut to /64). See auth-penalty.h for the semantics.
 *
 * Invariants:
 * - An address is in at most one entry: an entry is only made after a
 *   lookup of its set found none, and a lookup frees an expired entry
 *   before anything else can match it.
 * - An entry with failures == 0 is free; its other fields mean nothing.
 * - The set of an address is chosen by a hash under a random key, so it
 *   cannot be predicted from outside; user names are kept only as a
 *   truncated HMAC under another random key, so the table holds no names
 *   and two names cannot be made to look alike without the key.
 * - Nothing here allocates after create: memory is the fixed table.
 */
#include "auth-penalty.h"

#include <limits.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "buf.h"
#include "hash.h"
#include "log.h"

#define SET_BITS 12
_Static_assert(AUTH_PENALTY_SETS == 1 << SET_BITS, "AUTH_PENALTY_SETS is 2^SET_BITS");

struct penalty_entry {
	struct net_addr addr;      /* the key: an IPv4 address or an IPv6 /64 */
	uint64_t last_failure_ms;
	uint64_t user_hash;        /* of the user the first remembered failure was for */
	unsigned int failures;     /* 0: the slot is free */
	bool several_users;        /* the failures were not all for one user */
};

struct auth_penalty {
	unsigned int initial_ms, max_ms, reset_ms;
	uint64_t addr_key[4];
	unsigned char user_key[32];
	struct penalty_entry entries[AUTH_PENALTY_SETS][AUTH_PENALTY_WAYS];
};

static void random_bytes(void *p, size_t len)
{
	if (getrandom(p, len, 0) != (ssize_t)len)
		panic("getrandom failed");
}

struct auth_penalty *auth_penalty_create(unsigned int initial_ms, unsigned int max_ms,
					 unsigned int reset_ms)
{
	struct auth_penalty *p = xcalloc(1, sizeof(*p));
	p->initial_ms = initial_ms;
	p->max_ms = max_ms < initial_ms ? initial_ms : max_ms;
	p->reset_ms = reset_ms;
	random_bytes(p->addr_key, sizeof(p->addr_key));
	random_bytes(p->user_key, sizeof(p->user_key));
	return p;
}

void auth_penalty_destroy(struct auth_penalty **pp)
{
	struct auth_penalty *p = *pp;
	if (p == NULL)
		return;
	*pp = NULL;
	explicit_bzero(p->user_key, sizeof(p->user_key));
	free(p);
}

static struct penalty_entry *set_of(struct auth_penalty *p, const struct net_addr *key)
{
	/* Multiply-add over the address words with random keys, the set
	 * taken from the top bits of the product, where every input bit has
	 * had its effect (the low bits of a product see only the low bits of
	 * its factors). */
	uint64_t w[4] = { 0, 0, (uint64_t)(unsigned int)key->family, 0 };
	memcpy(&w[0], key->bytes, 8);
	memcpy(&w[1], key->bytes + 8, 8);
	uint64_t h = (p->addr_key[0] + w[0]) * (p->addr_key[1] + w[1]) +
		     (p->addr_key[2] + w[2]) * (p->addr_key[3] + w[3]);
	/* A product alone spreads addresses that differ in a few low bits
	 * (a flood from one network) badly for some keys: a key with many
	 * trailing zero bits leaves sets unused. The finaliser of MurmurHash3
	 * makes every top bit depend on every bit of h. */
	h = hash_fmix64(h);
	return p->entries[h >> (64 - SET_BITS)];
}

static uint64_t user_hash(const struct auth_penalty *p, const char *user)
{
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int mdlen = 0;
	if (HMAC(EVP_sha256(), p->user_key, sizeof(p->user_key), (const unsigned char *)user,
		 strlen(user), md, &mdlen) == NULL || mdlen < sizeof(uint64_t))
		panic("HMAC-SHA256 failed");
	uint64_t h;
	memcpy(&h, md, sizeof(h));
	return h;
}

static bool expired(const struct auth_penalty *p, const struct penalty_entry *e, uint64_t now_ms)
{
	/* A clock read before the failure was recorded is "no time passed". */
	return now_ms >= e->last_failure_ms && now_ms - e->last_failure_ms >= p->reset_ms;
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

/* The slot for a new address: a free or expired one, else the one whose
 * last failure is the oldest. */
static struct penalty_entry *victim(struct auth_penalty *p, const struct net_addr *key,
				    uint64_t now_ms)
{
	struct penalty_entry *set = set_of(p, key);
	struct penalty_entry *oldest = &set[0];
	for (int i = 0; i < AUTH_PENALTY_WAYS; i++) {
		if (set[i].failures == 0 || expired(p, &set[i], now_ms))
			return &set[i];
		if (set[i].last_failure_ms < oldest->last_failure_ms)
			oldest = &set[i];
	}
	return oldest;
}

static unsigned int delay_of(const struct auth_penalty *p, unsigned int failures)
{
	if (failures == 0)
		return 0;
	unsigned int shift = failures - 1;
	if (shift >= 32)
		return p->max_ms;
	uint64_t delay = (uint64_t)p->initial_ms << shift;
	return delay > p->max_ms ? p->max_ms : (unsigned int)delay;
}

unsigned int auth_penalty_delay(struct auth_penalty *p, const struct net_addr *addr,
				uint64_t now_ms)
{
	struct net_addr key;
	net_client_key(&key, addr);
	const struct penalty_entry *e = lookup(p, &key, now_ms);
	return e != NULL ? delay_of(p, e->failures) : 0;
}

void auth_penalty_fail(struct auth_penalty *p, const struct net_addr *addr, const char *user,
		       uint64_t now_ms)
{
	struct net_addr key;
	net_client_key(&key, addr);
	uint64_t uh = user_hash(p, user);
	struct penalty_entry *e = lookup(p, &key, now_ms);
	if (e == NULL) {
		e = victim(p, &key, now_ms);
		e->addr = key;
		e->failures = 0;
		e->user_hash = uh;
		e->several_users = false;
	} else if (e->user_hash != uh) {
		e->several_users = true;
	}
	if (e->failures < UINT_MAX)
		e->failures++;
	if (now_ms > e->last_failure_ms || e->failures == 1)
		e->last_failure_ms = now_ms;
}

void auth_penalty_success(struct auth_penalty *p, const struct net_addr *addr,
			  const char *user)
{
	struct net_addr key;
	net_client_key(&key, addr);
	struct penalty_entry *set = set_of(p, &key);
	for (int i = 0; i < AUTH_PENALTY_WAYS; i++) {
		struct penalty_entry *e = &set[i];
		if (e->failures == 0 || !net_addr_equal(&e->addr, &key))
			continue;
		if (!e->several_users && e->user_hash == user_hash(p, user))
			e->failures = 0;
		return;
	}
}

unsigned int auth_penalty_failures(struct auth_penalty *p, const struct net_addr *addr,
				   uint64_t now_ms)
{
	struct net_addr key;
	net_client_key(&key, addr);
	const struct penalty_entry *e = lookup(p, &key, now_ms);
	return e != NULL ? e->failures : 0;
}
