/* Diff files (docs/diff-format.md): writing in one pass, and reading with
 * full validation and random access to single frames. */
#ifndef UBLK_DIFF_H
#define UBLK_DIFF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "util/ublk_limits.h"

#define DIFF_VERSION 1
#define DIFF_FLAG_ZSTD 1u
#define DIFF_DEFAULT_FRAME (1u << 20)
#define DIFF_MAX_FRAME UBLK_MAX_FRAME_SIZE
#define DIFF_ZSTD_LEVEL 3
#define DIFF_ZSTD_MAX_LEVEL 19   /* zstd's own limit without --ultra */

enum diff_kind { DIFF_ABSENT = 0, DIFF_DATA = 1, DIFF_ZERO = 2 };

struct diff_extent {
	uint64_t start;         /* block */
	uint32_t count;
	uint32_t kind;          /* DIFF_DATA or DIFF_ZERO */
};

struct diff_meta {
	uint64_t dev_size, generation;
	uint8_t id[16], parent[16];
	uint32_t flags, frame_size;
	uint64_t n_extents, data_blocks, zero_blocks;
	int level;              /* writing with DIFF_FLAG_ZSTD: its level, 0 for
				 * DIFF_ZSTD_LEVEL; not stored in the file */
};

/* Source of the data blocks when writing: fill buf with count blocks
 * starting at block. Returns 0 or -errno. */
typedef int (*diff_read_fn)(void *ctx, uint64_t block, uint32_t count, void *buf);
/* Where the source is mapped: point *data at count blocks starting at
 * block, so they are checksummed and written without a copy; any -errno
 * to have them read instead. */
typedef int (*diff_view_fn)(void *ctx, uint64_t block, uint32_t count, const void **data);
/* Called after each frame with data blocks written so far. */
typedef void (*diff_progress_fn)(void *ctx, uint64_t done, uint64_t total);
/* Called once every frame is written, before the frame table and footer:
 * a non-zero -errno stops the diff there, so that even a reader of a pipe
 * never takes what was written for a whole diff. */
typedef int (*diff_seal_fn)(void *ctx);

struct diff_source {
	diff_read_fn read;
	diff_view_fn view;              /* may be NULL */
	diff_progress_fn progress;      /* may be NULL */
	diff_seal_fn seal;              /* may be NULL */
	void *ctx;                      /* of all four */
};

struct diff_write_result {
	uint64_t bytes;         /* file size written */
	uint64_t frames;
};

/* Write a diff to out_fd (a file or a pipe) in one pass. meta's counts are
 * computed from the extents. 0 or -errno with why set. */
int diff_write(int out_fd, struct diff_meta *meta, const struct diff_extent *ext, size_t n,
	       const struct diff_source *src, struct diff_write_result *res, char *why,
	       size_t whylen);

struct diff_frame {
	uint64_t offset;
	uint32_t size;
	uint32_t crc;
};

struct blob;
struct layer_http_opts;

struct diff_file {
	struct blob *blob;      /* the diff file, local or remote */
	uint64_t file_size;
	struct diff_meta meta;
	struct diff_extent *ext;
	uint64_t *ext_data;     /* data stream block index of each extent's first block */
	struct diff_frame *frames;
	uint64_t n_frames;
	/* A v3 mapping header + packed data file pair (docs/diff-format.md,
	 * Interop): no frames; ext_data is the block offset in data_fd. */
	bool v3;
	struct blob *data;
	char name[1024];        /* for messages: the path, a URL without credentials */
};

/* Open and validate everything but the frames' contents. path may be a
 * URL (remote: its options, or NULL for the defaults). Every count and
 * offset is checked against ublk_limits.h and the file's size before it sizes
 * an allocation or indexes anything; failures are -EINVAL with why naming
 * the first bad field or entry. */
int diff_open(const char *path, const struct layer_http_opts *remote, struct diff_file **out,
	      char *why, size_t whylen);
/* The same from open files (a memfd works; fuzzers use this): fd is a v1
 * diff or a v3 mapping header, data_fd the v3 pair's data file or -1. The
 * fds are duplicated, the caller keeps its own. */
int diff_open_fd(int fd, int data_fd, struct diff_file **out, char *why, size_t whylen);
void diff_close(struct diff_file *d);
/* Which kind block is in this diff, and for how many blocks from it that
 * stays so (*run); for data, *data_index is its block in the data stream. */
enum diff_kind diff_lookup(const struct diff_file *d, uint64_t block, uint64_t *run,
			   uint64_t *data_index);
/* Bytes of uncompressed data in frame idx. */
uint32_t diff_frame_len(const struct diff_file *d, uint64_t idx);
/* Read frame idx into buf (frame_size bytes), decompressing and checking
 * its CRC: 0, -EIO on a mismatch or bad frame, or -errno; a failure is
 * logged with the diff's name and the frame. */
int diff_read_frame(const struct diff_file *d, uint64_t idx, void *buf, void *scratch);
/* The same, not logged: *bad says what is wrong with the frame's bytes
 * (NULL when it could not be read, or is whole). */
int diff_read_frame_quiet(const struct diff_file *d, uint64_t idx, void *buf, void *scratch,
			  const char **bad);
/* The v3 interop pair: write packed data to data_fd and the mapping
 * header to header_fd; read it back (diff_open detects it). */
int diff_v3_write(int data_fd, int header_fd, struct diff_meta *meta,
		  const struct diff_extent *ext, size_t n, diff_read_fn read_blocks,
		  diff_progress_fn progress, void *ctx, char *why, size_t whylen);
int diff_v3_load(struct diff_file *d, const char *path, const struct layer_http_opts *remote,
		 char *why, size_t whylen);
/* For the readers of both formats: call fn on each of the n esize-byte
 * entries at off, reading the table in bounded pieces, and return their
 * CRC-32C in *crc. Stops at fn's first error. */
typedef int (*diff_entry_fn)(void *ctx, uint64_t i, const uint8_t *entry, char *why,
			     size_t whylen);
int diff_stream_entries(struct blob *b, uint64_t off, uint64_t n, size_t esize,
			diff_entry_fn fn, void *ctx, uint32_t *crc, char *why, size_t whylen);
/* Grow d->ext and d->ext_data (capacity *cap) to hold entry i. */
int diff_ext_reserve(struct diff_file *d, uint64_t *cap, uint64_t i);
/* Parse a v3 header (d->blob) against its data file (d->data, open). */
int diff_v3_parse(struct diff_file *d, char *why, size_t whylen);
/* Format a 16-byte id as 32 hex digits (buf >= 33). */
void diff_id_hex(const uint8_t id[16], char *buf);

/* The extents as the JSON array "extent_list" of --inspect. */
struct json;
void diff_extents_json(struct json *j, const struct diff_file *d);

#endif
