/* A diff file (docs/diff-format.md) as a read-only layer. */
#ifndef UBLK_LAYER_DIFF_H
#define UBLK_LAYER_DIFF_H

#include "image/layer.h"
#include "image/layer_http.h"

/* A diff file (docs/diff-format.md) as a read-only layer over lower; refused
 * unless its parent id is lower's id and its geometry fits. */
int layer_diff_open(const char *path, const struct layer_http_opts *remote, struct layer *lower,
		    struct layer **out, char *why, size_t whylen);

#endif
