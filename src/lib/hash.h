#ifndef TERN_HASH_H
#define TERN_HASH_H
/*
 * hash: the finaliser of MurmurHash3 (fmix64), which makes every bit of
 * the result depend on every bit of its input. For spreading keys that a
 * weaker first step (a product, FNV-1a) leaves clustered; not a MAC.
 */
#include <stdint.h>

static inline uint64_t hash_fmix64(uint64_t k)
{
	k ^= k >> 33;
	k *= 0xff51afd7ed558ccdULL;
	k ^= k >> 33;
	k *= 0xc4ceb9fe1a85ec53ULL;
	k ^= k >> 33;
	return k;
}

#endif
