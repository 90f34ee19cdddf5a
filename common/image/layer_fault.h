/* Fault injection over another layer (docs/fault-injection.md). */
#ifndef UBLK_LAYER_FAULT_H
#define UBLK_LAYER_FAULT_H

#include "image/layer.h"

/* Fault injection over lower, from a spec (docs/fault-injection.md), e.g.
 * "delay-read=3000@0-4096,error-write=5@1M-2M". */
int layer_fault_open(const char *spec, struct layer *lower, struct layer **out,
		     char *why, size_t whylen);

#endif
