/* Writing the next E2B build of a device (docs/e2b.md, Writing a build):
 * the child's mapping merged over its parent's, its header in layouts 1-5,
 * and its data file, plain or made of zstd / lz4 frames as E2B writes
 * them. Pure: files are the caller's (common/export.c publishes them). */
#ifndef UBLK_E2B_WRITE_H
#define UBLK_E2B_WRITE_H

#include "image/diff.h"
#include "image/e2b_header.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* E2B's default frame: 2 MiB of uncompressed data per frame. */
#define E2B_DEFAULT_FRAME (2u << 20)

/* The diff mapping of a child (E2B's CreateMapping of its dirty blocks,
 * merged with its empty ones): data extents read build index id at storage
 * offsets packed from 0 in ascending order, zero extents are nil (storage
 * 0). ext: sorted 4096-byte block extents. 0 or -ENOMEM / -EINVAL. */
int e2b_diff_mapping(const struct diff_extent *ext, size_t n, uint32_t id,
		     struct e2b_entry **out, size_t *n_out);
/* E2B's MergeMappings: diff over base (which covers the device), the diff
 * wins; a base range it cuts keeps its parts, the right part's storage
 * offset advanced by the cut. Both sorted, non-overlapping. 0 or -ENOMEM. */
int e2b_merge_mappings(const struct e2b_entry *base, size_t nb, const struct e2b_entry *diff,
		       size_t nd, struct e2b_entry **out, size_t *n_out);
/* E2B's NormalizeMappings, in place: adjacent ranges of one build whose
 * storage is contiguous are joined, adjacent nil ranges always. Returns
 * the new count. */
size_t e2b_normalize_mappings(struct e2b_entry *m, size_t n);

/* The record of an ancestor build that the parent header lacks (E2B's
 * upload heals such gaps from the ancestor's own header): 1 with *rec
 * filled (frames malloc'd, then owned by the caller of e2b_next_header),
 * 0 when unknown (the record stays absent). */
typedef int (*e2b_record_fn)(void *ctx, const uint8_t id[16], struct e2b_build *rec);

/* A build h's mapping reads whose record has frames (zstd or lz4), or
 * NULL: a child in layouts 1-3, which have no frame tables, could not
 * read it. */
const struct e2b_build *e2b_compressed_build(const struct e2b_header *h);

/* The child header: parent's NextGeneration (generation + 1, block size,
 * size, base build id kept; version kept when format is the parent's
 * layout, else the plain layout number), mapping
 * normalize(merge(parent, diff)), and for layouts 4-5 the parent's records
 * of the builds still mapped, self (always) and, for a mapped ancestor the
 * parent has no record of, lookup's or, under a V1-V3 parent whose whole
 * chain is uncompressed, E2B's empty record. format 0: the parent's layout.
 * ext must lie within the parent's size. 0 or -errno with why. */
int e2b_next_header(const struct e2b_header *parent, const struct diff_extent *ext, size_t n,
		    const uint8_t id[16], unsigned format, const struct e2b_build *self,
		    e2b_record_fn lookup, void *ctx, struct e2b_header **out, char *why,
		    size_t whylen);

/* A header's bytes in its layout (h->format): the layout 1-3 entries, or
 * the flags byte, section size and one LZ4 frame (4 MB blocks, block and
 * content checksums) of the builds section (sorted by id, frame tables
 * trimmed to the frames the mapping uses) and the mapping (layout 5:
 * columnar varints in pages, non-nil ranges only). Refuses an empty
 * mapping in layouts 1-4 (E2B reads it as "all own data"). 0 with *buf
 * malloc'd, or -errno with why. */
int e2b_header_serialize(const struct e2b_header *h, uint8_t **buf, size_t *len, char *why,
			 size_t whylen);

struct e2b_data_opts {
	enum e2b_codec codec;   /* E2B_CODEC_NONE: the packed blocks as they are */
	uint32_t frame_size;    /* uncompressed bytes per frame (multiple of 4096) */
	int level;              /* zstd level; 0: zstd's default */
};

/* Write the data blocks of ext (packed, ascending) to fd: as they are, or
 * one independent zstd frame (content checksum) or LZ4 frame (4 MB
 * blocks, block checksums) per frame_size bytes, the last one shorter.
 * Fills self: id untouched, size, SHA-256 of the uncompressed data, codec
 * (none when there is no data: an empty table reads as uncompressed) and
 * the full frame table (malloc'd). *file_bytes: bytes written. Blocks come
 * from src's read (its view is not used). 0 or -errno with why. */
int e2b_write_data(int fd, const struct diff_extent *ext, size_t n, const struct diff_source *src,
		   const struct e2b_data_opts *o, struct e2b_build *self, uint64_t *file_bytes,
		   char *why, size_t whylen);

/* The data file's name for a codec: name, name.zstd or name.lz4. */
int e2b_data_name(const char *name, enum e2b_codec codec, char *buf, size_t len);

#endif
