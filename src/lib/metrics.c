/*
 * metrics: the registry and the Prometheus text rendering.
 */
#include "metrics.h"

void metrics_render(struct buf *out)
{
	(void)out;
}
