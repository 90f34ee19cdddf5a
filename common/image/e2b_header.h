/* E2B build headers (docs/e2b.md): the `rootfs.ext4.header` /
 * `memfile.header` files of e2b-dev/infra's storage, every version 1-5,
 * read into one in-memory model and validated as strictly as E2B does
 * (stricter where E2B would only fail later, on a read; docs/e2b.md says
 * where). Nothing here touches a data file. */
#ifndef UBLK_E2B_HEADER_H
#define UBLK_E2B_HEADER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* E2B's mapping unit (its PageSize): every offset, length and storage
 * offset of a mapping is a multiple of it, whatever the header's block
 * size, and V5 stores them counted in it. */
#define E2B_PAGE 4096u
#define E2B_META_SIZE 64u
/* version & E2B_VERSION_MASK selects the layout. */
#define E2B_VERSION_MASK 0xFFFFu
/* V4/V5 flags byte: bit 0 = the build's upload was not finalized. */
#define E2B_FLAG_INCOMPLETE 1u
/* E2B's own caps: the V4/V5 section once decompressed, frames of one
 * build, V5 mapping entries, distinct builds of one mapping (its uint16
 * index with one value reserved for nil), block indices (uint32). */
#define E2B_MAX_SECTION (256u << 20)
#define E2B_MAX_FRAMES (1u << 20)
#define E2B_MAX_V5_ENTRIES (8u << 20)
#define E2B_MAX_BUILDS 65535u
#define E2B_MAX_BLOCK_INDEX 0xFFFFFFFFull
/* Entry build index of a nil range (zeros). */
#define E2B_NIL UINT32_MAX

enum e2b_codec { E2B_CODEC_NONE = 0, E2B_CODEC_ZSTD = 1, E2B_CODEC_LZ4 = 2 };

/* One range of the device, in bytes: [offset, offset + length) reads
 * build ids[id] at storage, or zeros when id is E2B_NIL. */
struct e2b_entry {
	uint64_t offset, length, storage;
	uint32_t id;
};

/* One independently compressed frame of a build's data file: bytes
 * [start_u, start_u + size_u) of the uncompressed data are stored at
 * [start_c, start_c + size_c) of the compressed file. */
struct e2b_frame {
	uint64_t start_u, start_c;
	uint32_t size_u, size_c;
};

/* A V4/V5 builds-section record. size 0 means unknown (E2B writes that for
 * uncompressed ancestors); an all-zero sha256 means unknown. A compressed
 * build's table may be sparse: only the frames this header's mapping
 * needs. */
struct e2b_build {
	uint8_t id[16];
	uint64_t size;
	uint8_t sha256[32];
	enum e2b_codec codec;
	uint32_t n_frames;
	struct e2b_frame *frames;
};

struct e2b_header {
	uint64_t version;               /* as stored; format is version & 0xFFFF */
	unsigned format;                /* 1..5 */
	uint64_t block_size, size, generation;
	uint8_t build_id[16];
	uint8_t base_build_id[16];      /* the root template of the chain */
	uint8_t flags;                  /* V4/V5 flags byte, else 0 */
	/* The stored mapping was empty: V1-V4 read that as one entry of the
	 * header's own build over the whole device (as E2B does), V5 as one
	 * nil entry (V5 stores no nil ranges, so an all-nil mapping is empty). */
	bool implicit;
	/* The distinct non-nil builds the mapping names (V5: its table), in
	 * order of first appearance. */
	uint32_t n_ids;
	uint8_t (*ids)[16];
	/* Sorted, contiguous, covering exactly [0, size). */
	uint64_t n_entries;
	struct e2b_entry *entries;
	/* V4/V5 builds section, in file order; none for V1-V3. */
	uint32_t n_builds;
	struct e2b_build *builds;
	/* Per id: its index in builds, or E2B_NIL; NULL when no builds. */
	uint32_t *id_build;
};

/* Parse and validate a whole header file. 0 with *out set, or -EINVAL
 * with why naming the first bad field or entry (nothing is kept), or
 * -ENOMEM. */
int e2b_header_parse(const void *buf, size_t len, struct e2b_header **out, char *why,
		     size_t whylen);
/* The same, reading the file at path (a local path or a URL; remote as
 * for blob_open, NULL for the defaults); why starts with the path. */
struct layer_http_opts;
int e2b_header_load(const char *path, const struct layer_http_opts *remote,
		    struct e2b_header **out, char *why, size_t whylen);
/* The first 64 bytes of the file at path (fewer when it is shorter:
 * *got), for a caller choosing a reader. 0 or -errno with why set. */
int e2b_header_sniff(const char *path, const struct layer_http_opts *remote,
		     uint8_t meta[E2B_META_SIZE], size_t *got, char *why, size_t whylen);
/* Whether those bytes look like an E2B header rather than anything else
 * (a ublk-tools diff, magic "UBLKDIFF", never does): a layout of 1 to 5
 * and a size this tool could accept. Random bytes pass once in 10^10. */
bool e2b_header_plausible(const uint8_t *meta, size_t len);
/* Ranges and bytes per mapping id: index k < n_ids for ids[k], n_ids for
 * nil. Both arrays hold n_ids + 1. */
void e2b_header_usage(const struct e2b_header *h, uint64_t *ranges, uint64_t *bytes);
void e2b_header_free(struct e2b_header *h);
/* The builds-section record of id, or NULL (a linear search). */
const struct e2b_build *e2b_header_build(const struct e2b_header *h, const uint8_t id[16]);
/* The record of ids[k], or NULL. */
const struct e2b_build *e2b_header_id_build(const struct e2b_header *h, uint32_t k);
const char *e2b_codec_name(enum e2b_codec c);
/* An id the way E2B prints it: 8-4-4-4-12 lowercase hex (buf >= 37). */
void e2b_uuid_str(const uint8_t id[16], char *buf);

#endif
