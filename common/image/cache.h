/* A stopped device's copy-on-write cache as the source of a diff export
 * (docs/cache-format.md, Export). Serving a cache is layer_cache_open. */
#ifndef UBLK_CACHE_H
#define UBLK_CACHE_H

#include "image/diff.h"

struct cache_export {
	int data_fd;
	int map_fd;             /* held with a shared lock: no server can start */
	struct diff_meta meta;  /* size, generation, ids; counts filled by diff_write */
	struct diff_extent *ext;
	size_t n_ext;
	uint8_t *view;          /* the data file mapped up to the last dirty block, or NULL */
	size_t view_len;
};

/* Open the cache at path (data file and path.map) for export. -EBUSY if a
 * server still uses it, unless live: the server froze it for us
 * (the cache layer's freeze operation). 0 or -errno with why set. */
int cache_export_open(const char *path, bool live, struct cache_export *x, char *why,
		      size_t whylen);
/* diff_read_fn over the data file; ctx is the struct cache_export. */
int cache_export_read(void *ctx, uint64_t block, uint32_t count, void *buf);
/* diff_view_fn over the mapped data file. */
int cache_export_view(void *ctx, uint64_t block, uint32_t count, const void **data);
void cache_export_close(struct cache_export *x);
/* Remove the data file and the map: -EBUSY while a server holds the map
 * locked (it uses the cache); -errno with why set for a folder nothing is
 * removed in by name (cache_folder_check), else why empty. */
int cache_remove(const char *path, char *why, size_t len);

#endif
