#ifndef TERN_METRICS_H
#define TERN_METRICS_H
/*
 * metrics: the process's counters, gauges and histograms, rendered in the
 * Prometheus text exposition format (version 0.0.4) for GET /metrics.
 * Updates are lock-free (relaxed atomics) and safe from any thread.
 */
#include "buf.h"

/* Appends every registered metric family to out. */
void metrics_render(struct buf *out);

#endif
