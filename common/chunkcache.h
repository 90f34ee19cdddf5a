/* The shared on-disk chunk cache of remote images (docs/remote.md):
 * one folder per image version, one file per chunk, shared by every
 * device and kept across restarts, with a size limit. */
#ifndef UBLK_CHUNKCACHE_H
#define UBLK_CHUNKCACHE_H

#include <stddef.h>
#include <stdint.h>

#define CHUNK_CACHE_DEFAULT_DIR "/var/cache/ublk-tools/chunks"
#define CHUNK_CACHE_DEFAULT_LIMIT (10ull << 30)

struct chunk_image {
	char dir[4096];         /* <root>/<key> */
	char root[3800];
	uint32_t chunk_size;
	uint64_t limit;
	uint64_t stored_since_scan;
	uint8_t *touched;       /* chunks whose time this process refreshed */
};

/* Root: dir, else $UBLK_CHUNK_CACHE, else the default. The key names the
 * URL, the validator, the size and the chunk size, so a changed image or a
 * different chunking never reuses old chunks. */
int chunk_image_open(struct chunk_image *ci, const char *dir, const char *url,
		     const char *validator, uint64_t size, uint32_t chunk_size, uint64_t limit,
		     char *why, size_t whylen);
/* Copy len bytes at off of chunk idx into buf: 0, or -ENOENT if absent. */
int chunk_read(struct chunk_image *ci, uint64_t idx, uint32_t off, uint32_t len, void *buf);
/* 1 if chunk idx is in the cache. */
int chunk_present(const struct chunk_image *ci, uint64_t idx);
/* Store chunk idx atomically (temporary file + rename); evicts the least
 * recently used chunks of any image when the cache passes its limit. */
int chunk_store(struct chunk_image *ci, uint64_t idx, const void *data, uint32_t len);
void chunk_image_close(struct chunk_image *ci);

#endif
