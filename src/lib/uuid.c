/*
 * uuid: TimeUUID and name-based UUID generation. The TimeUUID clock is a
 * process-wide atomic; see uuid.h for the invariants.
 */
#include "uuid.h"

#include <openssl/evp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include "log.h"

/* 100 ns ticks between 1582-10-15 and 1970-01-01. */
#define UUID_EPOCH_OFFSET 0x01B21DD213814000ULL

static _Atomic uint64_t last_ticks;
static pthread_once_t node_once = PTHREAD_ONCE_INIT;
static uint8_t proc_node[6];
static uint16_t proc_clock_seq;

static void node_init(void)
{
	uint8_t rnd[8];
	size_t got = 0;
	while (got < sizeof(rnd)) {
		ssize_t n = getrandom(rnd + got, sizeof(rnd) - got, 0);
		if (n < 0)
			panic("getrandom failed");
		got += (size_t)n;
	}
	memcpy(proc_node, rnd, 6);
	proc_node[0] |= 0x01; /* multicast bit: never a real MAC address */
	proc_clock_seq = (uint16_t)(((rnd[6] << 8) | rnd[7]) & 0x3fff);
}

void timeuuid_from_ticks(uint64_t t, uint16_t clock_seq, const uint8_t node[6],
			 struct uuid *u_r)
{
	uint8_t *b = u_r->b;
	uint32_t low = (uint32_t)(t & 0xffffffffu);
	uint16_t mid = (uint16_t)((t >> 32) & 0xffff);
	uint16_t hi = (uint16_t)(((t >> 48) & 0x0fff) | 0x1000);
	b[0] = (uint8_t)(low >> 24);
	b[1] = (uint8_t)(low >> 16);
	b[2] = (uint8_t)(low >> 8);
	b[3] = (uint8_t)low;
	b[4] = (uint8_t)(mid >> 8);
	b[5] = (uint8_t)mid;
	b[6] = (uint8_t)(hi >> 8);
	b[7] = (uint8_t)hi;
	b[8] = (uint8_t)(0x80 | ((clock_seq >> 8) & 0x3f));
	b[9] = (uint8_t)clock_seq;
	memcpy(b + 10, node, 6);
}

void timeuuid_generate(struct uuid *u_r)
{
	struct timespec ts;
	pthread_once(&node_once, node_init);
	clock_gettime(CLOCK_REALTIME, &ts);
	uint64_t now = (uint64_t)ts.tv_sec * 10000000ULL + (uint64_t)ts.tv_nsec / 100 +
		       UUID_EPOCH_OFFSET;
	uint64_t last = atomic_load(&last_ticks);
	uint64_t t;
	do {
		t = now > last ? now : last + 1;
	} while (!atomic_compare_exchange_weak(&last_ticks, &last, t));
	timeuuid_from_ticks(t, proc_clock_seq, proc_node, u_r);
}

uint64_t timeuuid_ticks(const struct uuid *u)
{
	const uint8_t *b = u->b;
	uint64_t low = ((uint64_t)b[0] << 24) | ((uint64_t)b[1] << 16) |
		       ((uint64_t)b[2] << 8) | b[3];
	uint64_t mid = ((uint64_t)b[4] << 8) | b[5];
	uint64_t hi = ((uint64_t)(b[6] & 0x0f) << 8) | b[7];
	return (hi << 48) | (mid << 32) | low;
}

int64_t timeuuid_unix_usec(const struct uuid *u)
{
	return (int64_t)((timeuuid_ticks(u) - UUID_EPOCH_OFFSET) / 10);
}

int timeuuid_compare(const struct uuid *a, const struct uuid *b)
{
	uint64_t ta = timeuuid_ticks(a), tb = timeuuid_ticks(b);
	if (ta != tb)
		return ta < tb ? -1 : 1;
	for (int i = 8; i < 16; i++) {
		int8_t x = (int8_t)a->b[i], y = (int8_t)b->b[i];
		if (x != y)
			return x < y ? -1 : 1;
	}
	return 0;
}

/* tern's namespace for mailbox names (a fixed random UUID). */
static const uint8_t tern_namespace[16] = {
	0x3c, 0x6f, 0x1e, 0x52, 0x8a, 0x41, 0x4d, 0x0b,
	0x9e, 0x27, 0x5a, 0xc4, 0x11, 0x7d, 0xe0, 0x93,
};

void uuid_v5(const char *name, size_t len, struct uuid *u_r)
{
	uint8_t digest[EVP_MAX_MD_SIZE];
	unsigned int dlen = 0;
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	if (ctx == NULL || EVP_DigestInit_ex(ctx, EVP_sha1(), NULL) != 1 ||
	    EVP_DigestUpdate(ctx, tern_namespace, sizeof(tern_namespace)) != 1 ||
	    EVP_DigestUpdate(ctx, name, len) != 1 ||
	    EVP_DigestFinal_ex(ctx, digest, &dlen) != 1 || dlen < 16)
		panic("SHA-1 digest failed");
	EVP_MD_CTX_free(ctx);
	memcpy(u_r->b, digest, 16);
	u_r->b[6] = (uint8_t)((u_r->b[6] & 0x0f) | 0x50);
	u_r->b[8] = (uint8_t)((u_r->b[8] & 0x3f) | 0x80);
}

void uuid_format(const struct uuid *u, char out[UUID_STR_LEN + 1])
{
	static const char hex[] = "0123456789abcdef";
	size_t o = 0;
	for (int i = 0; i < 16; i++) {
		if (i == 4 || i == 6 || i == 8 || i == 10)
			out[o++] = '-';
		out[o++] = hex[u->b[i] >> 4];
		out[o++] = hex[u->b[i] & 15];
	}
	out[o] = '\0';
}

static int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

int uuid_parse(const char *s, struct uuid *u_r)
{
	size_t i = 0;
	for (int byte = 0; byte < 16; byte++) {
		if (byte == 4 || byte == 6 || byte == 8 || byte == 10) {
			if (s[i] != '-')
				return -1;
			i++;
		}
		int h = hexval(s[i]), l = h < 0 ? -1 : hexval(s[i + 1]);
		if (h < 0 || l < 0)
			return -1;
		u_r->b[byte] = (uint8_t)(h << 4 | l);
		i += 2;
	}
	return s[i] == '\0' ? 0 : -1;
}

int uuid_version(const struct uuid *u)
{
	return u->b[6] >> 4;
}
