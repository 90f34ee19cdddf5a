/* The copy-on-write cache layer (docs/cache-format.md). */
#ifndef UBLK_LAYER_CACHE_H
#define UBLK_LAYER_CACHE_H

#include "image/layer.h"

/* Copy-on-write cache over lower (docs/cache-format.md): path is the data
 * file, path.map its block states; both created if neither exists. size 0
 * means the size recorded in an existing cache, else lower's size. On
 * failure why says what is wrong. */
int layer_cache_open(const char *path, struct layer *lower, uint64_t size, bool read_only,
		     struct layer **out, char *why, size_t whylen);

#endif
