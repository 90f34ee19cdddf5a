/* The cache map file (docs/cache-format.md) as outside bytes: a check of
 * one open map file alone, with the code layer_cache_open uses, for
 * fuzzers and tools that need no device. */
#ifndef UBLK_CACHE_MAP_H
#define UBLK_CACHE_MAP_H

#include <stddef.h>
#include <stdint.h>

/* Check the header, the file size it implies and every block state of the
 * map file open at fd (a memfd works; no live map, no lock): 0 with
 * *dev_size set, -EINVAL with why naming the bad field, or -errno. */
int cache_map_check_fd(int fd, uint64_t *dev_size, char *why, size_t whylen);

#endif
