/* The shared on-disk chunk cache of remote images (docs/remote.md):
 * one folder per image version, one file per chunk, shared by every
 * device and kept across restarts, with a size limit.
 *
 * The root is checked like the state directory (ours, not writable by
 * group or others, not a symlink) and held open: every file is reached
 * with openat/O_NOFOLLOW below it, so nothing planted in it is followed
 * (docs/security.md). */
#ifndef UBLK_CHUNKCACHE_H
#define UBLK_CHUNKCACHE_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define CHUNK_CACHE_DEFAULT_DIR "/var/cache/ublk-tools/chunks"
#define CHUNK_CACHE_DEFAULT_LIMIT (10ull << 30)
#define CHUNK_CACHE_MIN_CHUNK 4096u
#define CHUNK_CACHE_MAX_CHUNK (64u << 20)
/* image sizes above HTTP_MAX_IMAGE_SIZE (http.h) are refused */
#define CHUNK_OPEN_FILES 64     /* per image: 256 MiB of 4 MiB chunks */

struct chunk_open;
struct http_conn;
struct layer;
struct layer_map;
struct http_source;

struct chunk_image {
	char dir[4096];         /* <root>/<key>, for messages */
	char root[3800];
	uint32_t chunk_size;
	uint64_t size;          /* of the image */
	uint64_t nchunks;
	uint64_t limit;
	uint64_t stored_since_scan;
	uint8_t *touched;       /* chunks whose time this process refreshed */
	bool fds;               /* rootfd and dirfd are set (maybe -1) */
	bool unshared;          /* no validator, no query: the folder ("u" + key
				   hash) is this opener's, flock'ed shared, and
				   removed at close */
	char identity[65];      /* of the image version in access traces: the
				   folder's key hash, less an unshared one's nonce */
	int rootfd, dirfd;
	/* Chunk files held open, so a hit is one pread: a chunk's bytes never
	 * change, and an evicted one still reads right until it is closed. */
	pthread_mutex_t open_lock;
	struct chunk_open *open;        /* CHUNK_OPEN_FILES of them; NULL: none kept */
	uint64_t open_tick;
};

/* Root: dir, else $UBLK_CHUNK_CACHE, else the default. The folder is the
 * SHA-256 of the image's identity: the URL without credentials, query or
 * fragment (http_url_identity), the validator, the size and the chunk
 * size, so a changed image or a different chunking never reuses old
 * chunks. Its key file holds the identity in full and is compared in
 * full. An image with neither validator nor query gets a folder of its
 * own (a random line in its identity), removed at close, or by the
 * eviction of another opener once no process holds it. A failed open
 * holds nothing (chunk_image_close of it does nothing). */
int chunk_image_open(struct chunk_image *ci, const char *dir, const char *url,
		     const char *validator, uint64_t size, uint32_t chunk_size, uint64_t limit,
		     char *why, size_t whylen);
/* The same for an image a caller names: key_lines, "name value\n" lines
 * that tell its version from every other (the folder is their SHA-256,
 * with the size and chunk size; its key file holds them in full). */
int chunk_image_open_keyed(struct chunk_image *ci, const char *dir, const char *key_lines,
			   uint64_t size, uint32_t chunk_size, uint64_t limit, char *why,
			   size_t whylen);
/* Copy len bytes at off of chunk idx into buf: 0, -ENOENT if absent (or
 * not a regular file of the chunk's size), -EINVAL if idx, off or len lie
 * outside the image. */
/* Bytes of chunk idx: chunk_size, less for the last one. */
uint32_t chunk_image_len(const struct chunk_image *ci, uint64_t idx);
int chunk_read(struct chunk_image *ci, uint64_t idx, uint32_t off, uint32_t len, void *buf);
/* Where len bytes at off of chunk idx lie in memory (*p), the chunk held
 * open and mapped until chunk_unpin(*pin): 0, -ENOENT as chunk_read,
 * -EINVAL likewise, or -EAGAIN when no file can be held now (read it).
 * A mapping goes with its slot: a reader of more chunks than an image
 * holds (CHUNK_OPEN_FILES) maps and unmaps one at almost every read,
 * which costs more than reading it. */
int chunk_map(struct chunk_image *ci, uint64_t idx, uint32_t off, uint32_t len, const void **p,
	      struct chunk_open **pin);
void chunk_unpin(struct chunk_open *pin);
/* chunk_map's bytes appended to m as one piece, pinned for layer l
 * (layer_map): 1, or 0 when they cannot be (m full, or chunk_map fails). */
int chunk_map_piece(struct chunk_image *ci, uint64_t idx, uint32_t off, uint32_t len,
		    struct layer *l, struct layer_map *m);
/* The unpin op of a layer whose pins are chunk_map_piece's. */
void chunk_layer_unpin(struct layer *l, void *pin);
/* 1 if chunk idx is in the cache, 0 if not (or idx is past the image). */
int chunk_present(const struct chunk_image *ci, uint64_t idx);
/* Store chunk idx (len must be the chunk's length) atomically; evicts the
 * least recently used chunks of any image when the cache passes its limit. */
int chunk_store(struct chunk_image *ci, uint64_t idx, const void *data, uint32_t len);
/* Fetch chunk idx of src over c straight into the cache (http_read_to_fd),
 * stored as chunk_store does: 0, or -errno with why set. */
int chunk_fetch(struct chunk_image *ci, struct http_conn *c, const struct http_source *src,
		uint64_t idx, unsigned *attempts, char *why, size_t whylen);
void chunk_image_close(struct chunk_image *ci);

#endif
