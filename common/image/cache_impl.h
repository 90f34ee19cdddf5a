/*
 * The copy-on-write cache's insides, shared by its three files: the IO
 * path (layer_cache.c), the map format (cache_map.c) and the offline
 * export (cache_export.c). Other code sees image/layer_cache.h,
 * image/cache_map.h and image/cache.h only.
 */
#ifndef UBLK_CACHE_IMPL_H
#define UBLK_CACHE_IMPL_H

#include "image/cache_live.h"
#include "image/layer.h"
#include "util/aio.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define BS LAYER_BLOCK_SIZE
#define MAP_HDR 4096u
#define MAP_PAGE 4096u
#define MAGIC "UBLKCMAP"
#define CACHE_VERSION 1
/* The base version field (docs/cache-format.md): length, CRC, text. */
#define BASE_VERSION_AT 88u
#define BASE_VERSION_TEXT_AT 96u
#define BASE_VERSION_MAX 1024u

enum { ST_CLEAN = 0, ST_DIRTY = 1, ST_ZERO = 2, ST_RESERVED = 3 };

struct cache_hdr {
	uint64_t dev_size, base_size, generation;
	uint8_t id[16];
	uint8_t parent_id[16];      /* id of the layer below when created */
	uint64_t parent_generation;
	/* version of the image below when created (layer_version_text);
	 * empty: none recorded */
	char base_version[BASE_VERSION_MAX + 1];
};

struct cache {
	struct layer l;
	struct layer *data;         /* file layer over the data file */
	int map_fd;
	uint64_t nblocks, base_blocks;
	uint8_t *map;               /* map_bytes, 4 blocks per byte: in live.mem when
				       writable, else private */
	struct cache_live live;
	char *path;
	uint8_t *snap;              /* flusher's snapshot of the map */
	uint64_t *changed;          /* map pages changed since the last flush */
	uint64_t *taken;            /* pages the running persist() took from changed */
	size_t map_bytes, npages;
	struct cache_hdr hdr;

	/* Live export: while frozen, writes and discards are parked and
	 * resubmitted on their own queue's ring at thaw. */
	_Atomic int frozen;
	_Atomic uint64_t modifying;     /* writes and discards in flight */
	struct layer_io *parked;        /* under lock */
	pthread_mutex_t persist_lock;   /* persist() runs one at a time */

	pthread_t flusher;
	bool flusher_running;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	struct layer_io *flush_list;
	bool stop;
	int sticky_err;             /* a failed data sync fails every later flush */
	int map_err;                /* the last map write's error, told once */
	struct aio_poster poster;   /* posts completions to queue rings */
};

static inline unsigned get_state(const struct cache *c, uint64_t b)
{
	uint8_t byte = __atomic_load_n(&c->map[b >> 2], __ATOMIC_ACQUIRE);
	return (byte >> ((b & 3) * 2)) & 3;
}

/* The map file (cache_map.c). Each returns 0 or -errno with why set. */
int cache_hdr_decode(struct cache *c, const uint8_t *b, char *why, size_t len);
int cache_map_pread(int fd, void *buf, size_t len, uint64_t off);
/* Open map_path, never through a link: fd, or -errno with why naming it. */
int cache_map_open(const char *map_path, bool writable, char *why, size_t len);
/* A file of a cache, as opened: regular, this user's or root's, writable
 * by nobody else, of one name. 0, or -errno with why (not naming it). */
int cache_file_private(int fd, char *why, size_t len);
/* Open the data file at path as cache_file_private wants it, never
 * through a link: fd and its size, or -errno with why naming it. */
int cache_data_open(const char *path, bool writable, int *fd, uint64_t *size, char *why,
		    size_t len);
/* The folder a cache is in, and those on its way: only root and this user
 * can change what they hold (sticky, as /tmp, is enough), so that nobody
 * else can swap a cache's files. 0 (also for a missing folder), or -errno
 * with why. */
int cache_folder_check(const char *path, char *why, size_t len);
int cache_map_size_check(int fd, uint64_t map_bytes, char *why, size_t len);
int cache_write_hdr(struct cache *c);
/* The block states of the cache at path into c->map: the map file's, or
 * the live map's when a dead server of this boot left a newer one (not
 * when served: a running server's live map is its own). 1 if the live
 * map was used, 0 if not, or -errno. */
int cache_map_load(struct cache *c, const char *path, const char *map_path, bool served,
		   char *why, size_t len);

#endif
