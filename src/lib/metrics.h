#ifndef TERN_METRICS_H
#define TERN_METRICS_H
/*
 * metrics: the process's counters, gauges and histograms, rendered in the
 * Prometheus text exposition format (version 0.0.4) for GET /metrics.
 * Updates are lock-free (relaxed atomics) and safe from any thread.
 *
 * A family is a metric name with fixed label names (at most
 * METRICS_LABELS_MAX). A series is one combination of label values in a
 * family: the caller gets a pointer to it once (metrics_series(), which
 * takes a lock the first time a combination is seen) and then updates it
 * with one relaxed atomic operation, no lock, no lookup. Label values
 * always come from a bounded set the code supplies (protocol names, verbs
 * of a command table, store operations), never from client input: a client
 * must not be able to create series. As a last guard a family holds at most
 * METRICS_SERIES_MAX series; past that metrics_series() returns NULL, and
 * every update function ignores a NULL series.
 *
 * Families and series live as long as the process (registration is
 * idempotent: registering a name again returns the family already there,
 * and panics if its type or labels differ). Rendering is in a stable
 * order: families by name, series by their label values.
 *
 * Histograms count integer observations (nanoseconds, octets) against
 * integer bucket bounds and render them scaled to the base unit
 * (def->unit: 1e-9 renders nanoseconds as seconds).
 */
#include <stdbool.h>
#include <stdint.h>

#include "buf.h"

#define METRICS_LABELS_MAX 4
#define METRICS_BUCKETS_MAX 32
#define METRICS_SERIES_MAX 1024

enum metrics_type {
	METRICS_COUNTER,
	METRICS_GAUGE,
	METRICS_HISTOGRAM,
};

/* A family's description. The registry keeps the pointers it is given:
 * def and everything it points to must be static (string literals, const
 * tables). */
struct metrics_def {
	enum metrics_type type;
	const char *name;            /* e.g. "tern_sessions_total" */
	const char *help;            /* one line */
	const char *const *labels;   /* label names, NULL-terminated; NULL: none */
	/* Histograms: upper bounds, increasing, in the observations' unit
	 * (+Inf is implied), and what one unit is in the rendered unit
	 * (0 means 1). */
	const uint64_t *buckets;
	unsigned int bucket_count;
	double unit;
};

struct metrics_family;
struct metrics_series;

/* Registers def (or finds it registered already). Never NULL. */
struct metrics_family *metrics_register(const struct metrics_def *def);
/* The series with these label values (one per label name, in order;
 * NULL for a family without labels), created on first use. The values
 * are copied. NULL only past METRICS_SERIES_MAX. Takes a lock: call it at
 * set-up, or the first time, and keep the pointer. */
struct metrics_series *metrics_series(struct metrics_family *f, const char *const *values);
/* Registers a family without labels and returns its one series. */
struct metrics_series *metrics_single(const struct metrics_def *def);

/* Updates; s may be NULL (then nothing happens). */
void metrics_add(struct metrics_series *s, uint64_t n);        /* counter */
static inline void metrics_inc(struct metrics_series *s) { metrics_add(s, 1); }
void metrics_gauge_add(struct metrics_series *s, int64_t delta);
void metrics_gauge_set(struct metrics_series *s, int64_t value);
void metrics_observe(struct metrics_series *s, uint64_t value); /* histogram */

/* CLOCK_MONOTONIC in nanoseconds, and the histogram observation of the
 * nanoseconds since start_ns (for latency histograms in seconds). */
uint64_t metrics_now_ns(void);
void metrics_observe_since(struct metrics_series *s, uint64_t start_ns);

/* Bounds for latency histograms in nanoseconds (render with unit 1e-9):
 * 50 µs .. 10 s, roughly 1-2.5-5 per decade. */
extern const uint64_t metrics_latency_buckets_ns[];
#define METRICS_LATENCY_BUCKET_COUNT 17

/* Reads, for tests and for code that reports a value elsewhere: a
 * counter's value, a gauge's (as int64_t), a histogram's count; and a
 * histogram's sum in its unit. 0 for NULL. */
uint64_t metrics_value(const struct metrics_series *s);
int64_t metrics_gauge_value(const struct metrics_series *s);
uint64_t metrics_histogram_sum(const struct metrics_series *s);

/* Appends every registered metric family to out. */
void metrics_render(struct buf *out);
/* Appends one family. */
void metrics_family_render(struct metrics_family *f, struct buf *out);

/* For code that renders values it keeps itself (e.g. a store backend's
 * client statistics), in the same format: the HELP and TYPE lines, then
 * samples. label may be NULL (no label); the value is escaped. */
void metrics_render_header(struct buf *out, const char *name, enum metrics_type type,
			   const char *help);
void metrics_render_sample(struct buf *out, const char *name, const char *label,
			   const char *label_value, uint64_t value);

#endif
