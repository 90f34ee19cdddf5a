/* The live block map of a copy-on-write cache (docs/cache-format.md, Live
 * map): a shared mapping of FILE.live that holds every block state as soon
 * as it changes. It survives the server's death (the page cache keeps it,
 * like the data written to the data file) but is worthless after the host
 * went down, so it names the boot it belongs to. */
#ifndef UBLK_CACHE_LIVE_H
#define UBLK_CACHE_LIVE_H

#include <stddef.h>
#include <stdint.h>

struct cache_live {
	uint8_t *mem;           /* header page + states, MAP_SHARED */
	size_t len;
};

/* Copy path.live's states into map if the file belongs to cache id, to
 * this boot, and to generation gen or gen + 1 (a server that died while
 * opening). Returns 1 if loaded, 0 if none usable (why says why when a
 * file was ignored, else it is ""), or -errno when one may be and cannot
 * be read (why says why if more than strerror can). */
int cache_live_load(const char *path, const uint8_t id[16], uint64_t gen, uint8_t *map,
		    size_t map_bytes, char *why, size_t whylen);

/* Replace path.live atomically by a file holding map (map_bytes) for
 * generation gen and map it shared. *states then points at the mapped
 * states, to be used instead of map. 0 or -errno. */
int cache_live_map(struct cache_live *lv, const char *path, const uint8_t id[16], uint64_t gen,
		   const uint8_t *map, size_t map_bytes, uint8_t **states);
void cache_live_unmap(struct cache_live *lv);

/* Remove path.live (after a clean close made the map file complete). */
int cache_live_remove(const char *path);

#endif
