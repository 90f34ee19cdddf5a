/* Reading an E2B build (docs/e2b.md, Serving a build): the header of one
 * build under a storage root, and the data file of every build its mapping
 * names, uncompressed or made of zstd / lz4 frames. */
#ifndef UBLK_E2B_STORE_H
#define UBLK_E2B_STORE_H

#include "image/e2b_header.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct e2b_store;
struct e2b_decoder;
struct layer_http_opts;
struct layer;
struct layer_map;

/* Decompressed frames kept in memory per open store (least recently used
 * goes); with remote->keep_frames, every frame in the chunk cache too. */
#define E2B_STORE_SLOTS 8
/* The two artifacts of a build. */
#define E2B_ROOTFS "rootfs.ext4"
#define E2B_MEMFILE "memfile"

/* Whether s is a build id as E2B prints it: 8-4-4-4-12 lowercase hex (no
 * other spelling, so that the folder name is exactly what E2B wrote), and
 * not the nil id, which names no build. Parses it into id when given. */
bool e2b_parse_build_id(const char *s, uint8_t id[16]);
/* Whether name is an artifact this tool reads: rootfs.ext4 or memfile. */
bool e2b_file_name_ok(const char *name);

/* Open build `build` (its printed id) under root (a local folder or an
 * http(s):// base URL; remote: options for a URL and the chunk cache, NULL
 * the defaults; with keep_frames, decompressed frames are kept in the
 * chunk cache, one chunk each, where the build's frames are all of one
 * size and span at most 2^22 times it, and its data file has a version),
 * artifact name: {root}/{build}/{name}.header and, for every build it
 * names, {root}/{id}/{name} (or .zstd / .lz4 when its record says the
 * build is compressed). Refused, with why, when the header is invalid or
 * names another build, a data file is missing (-ENOENT: every missing id
 * is listed), shorter than a range read from it or than a frame stored in
 * it, or a frame is larger than UBLK_MAX_FRAME_SIZE. 0 or -errno. */
int e2b_store_open(const char *root, const char *build, const char *name,
		   const struct layer_http_opts *remote, struct e2b_store **out, char *why,
		   size_t whylen);
/* Exactly len bytes of the device at off (within the header's size):
 * 0, -EINVAL out of range, -EIO (a bad frame or short data, logged with
 * the build id and frame index) or -errno. Thread-safe. */
int e2b_store_read(struct e2b_store *s, void *buf, size_t len, uint64_t off);
/* The same without waiting: -EAGAIN where it would fetch, decompress a
 * frame or wait for another reader (a queue thread then hands it over). */
int e2b_store_try_read(struct e2b_store *s, void *buf, size_t len, uint64_t off);
/* e2b_store_read decompressing with own's buffers, outside the store's
 * lock: fetch threads decompress side by side. Without own (NULL), a frame
 * neither kept nor in the chunk cache is -ENOMEM. */
int e2b_store_read_own(struct e2b_store *s, struct e2b_decoder *own, void *buf, size_t len,
		       uint64_t off);
/* Where [off, off + len) of the device lies in memory (layer_map, for
 * layer l): holes as zeros and compressed frames as kept in the chunk
 * cache, each pinned (chunk_layer_unpin); their count, or 0 where some of
 * it is not there (not kept yet, not compressed: read it). */
int e2b_store_map(struct e2b_store *s, uint64_t off, uint32_t len, struct layer *l,
		  struct layer_map *m);
/* Whether every read may be mapped once its frames are kept: every build
 * the mapping names keeps its frames, no more of them than the server
 * holds open (a reader of more would map and unmap one at every read:
 * chunk_map). A stack that maps pays a syscall more for each read it
 * cannot map (docs/kernels.md). */
bool e2b_store_maps(const struct e2b_store *s);
/* One thread's buffers for s's largest frame: NULL when out of memory or
 * no build of s is compressed. */
struct e2b_decoder *e2b_decoder_new(const struct e2b_store *s);
void e2b_decoder_free(struct e2b_decoder *dec);
/* Whether a build of s is stored compressed. */
bool e2b_store_compressed(const struct e2b_store *s);
/* The longest read budget of its remote files (blob_budget_ms); 0 if
 * none is remote. */
uint64_t e2b_store_budget_ms(const struct e2b_store *s);
const struct e2b_header *e2b_store_header(const struct e2b_store *s);
/* Every remote data file's transfers end at once (blob_cancel). */
void e2b_store_cancel(struct e2b_store *s);
void e2b_store_close(struct e2b_store *s);

/* What --inspect could check of one build's data. */
enum e2b_check {
	E2B_CHECK_NONE,         /* not checkable: uncompressed, no SHA-256 recorded */
	E2B_CHECK_FRAMES,       /* every frame the mapping uses decompressed to its size */
	E2B_CHECK_SHA,          /* SHA-256 of the whole data matched its record */
	E2B_CHECK_BAD,          /* a frame or the SHA-256 did not match (why) */
};

struct e2b_build_check {
	enum e2b_check result;
	uint64_t frames;        /* frames decompressed */
	uint64_t bytes;         /* uncompressed bytes read */
	bool sha_recorded;
	char why[256];
};

/* Check the data of every build the mapping names, ids[k] into out[k]
 * (h->n_ids of them). progress (may be NULL) gets bytes done and total.
 * 0 when nothing bad was found (a build may still be E2B_CHECK_NONE),
 * -EIO when a build is E2B_CHECK_BAD, or -errno. */
int e2b_store_verify(struct e2b_store *s, struct e2b_build_check *out,
		     void (*progress)(void *ctx, uint64_t done, uint64_t total), void *ctx);

#endif
