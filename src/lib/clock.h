#ifndef TERN_CLOCK_H
#define TERN_CLOCK_H
/*
 * clock: the two clocks tern reads. Wall time (µs since the epoch) for
 * what is stored or compared across nodes (login times, retrieval times,
 * TimeUUIDs, Cassandra's clock); monotonic time (ms) for timeouts,
 * penalties and caches, which must not jump when the wall clock does.
 */
#include <stdint.h>
#include <time.h>

static inline int64_t clock_wall_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static inline uint64_t clock_monotonic_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static inline uint64_t clock_monotonic_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000 + (uint64_t)ts.tv_nsec / 1000;
}

#endif
