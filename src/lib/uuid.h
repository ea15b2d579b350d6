#ifndef TERN_UUID_H
#define TERN_UUID_H
/*
 * uuid: the two kinds of UUID tern mints.
 *
 * TimeUUIDs (RFC 4122 version 1) name messages: 100 ns ticks since
 * 1582-10-15, monotonic within the process (the clock is never allowed to go
 * backwards: a tick that is not greater than the last one becomes last+1),
 * a random 14-bit clock sequence and a random 48-bit node id with the
 * multicast bit set (so it can never collide with a real MAC), both chosen
 * once per process. Two processes minting at the same tick differ by their
 * random node and clock sequence.
 *
 * Name-based UUIDs (version 5, SHA-1) name mailboxes, so every node and
 * datacenter derives the same mailbox id from the address without talking
 * to anybody.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define UUID_STR_LEN 36

struct uuid {
	uint8_t b[16];
};

void timeuuid_generate(struct uuid *u_r);
/* For tests: the same generator with a supplied clock value (ticks). */
void timeuuid_from_ticks(uint64_t ticks, uint16_t clock_seq, const uint8_t node[6],
			 struct uuid *u_r);
/* The 60-bit timestamp of a version-1 UUID. */
uint64_t timeuuid_ticks(const struct uuid *u);
/* Unix time in microseconds from a version-1 UUID. */
int64_t timeuuid_unix_usec(const struct uuid *u);
/* Orders two TimeUUIDs as Cassandra does: timestamp first, then bytes 8..15
 * as signed bytes. Returns <0, 0, >0. */
int timeuuid_compare(const struct uuid *a, const struct uuid *b);

/* Version-5 UUID of name in tern's mailbox namespace. */
void uuid_v5(const char *name, size_t len, struct uuid *u_r);

/* Canonical lower-case 8-4-4-4-12 text; out must hold UUID_STR_LEN + 1. */
void uuid_format(const struct uuid *u, char out[UUID_STR_LEN + 1]);
/* Parses the canonical text form (either case). 0 or -1. */
int uuid_parse(const char *s, struct uuid *u_r);
int uuid_version(const struct uuid *u);

#endif
