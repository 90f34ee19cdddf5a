/* Limits on what the tools accept from outside (docs/security.md). Files
 * written by a sandbox, a server's answers and headers are refused when they
 * claim more than this, before any size from them reaches an allocation or
 * an index. Every count below derives from the maximum image size, so
 * products of two of them fit in 64 bits with room to spare. */
#ifndef UBLK_LIMITS_H
#define UBLK_LIMITS_H

#include <stdint.h>

/* Device ids the kernel gives (its UBLK_MAX_UBLKS, the minors of a major). */
#define UBLK_MAX_DEV_ID ((1u << 20) - 1)

/* Largest device, base image, diff device size or cache: 16 TiB. */
#define UBLK_MAX_IMAGE_SIZE (1ULL << 44)
#define UBLK_MAX_BLOCKS (UBLK_MAX_IMAGE_SIZE / 4096)            /* 2^32 */

/* Extents of a diff, and entries of a v3 mapping header: 16 Mi, so a
 * table is at most 256 MiB (v1) or 640 MiB (v3) and its in-memory form
 * 384 MiB. A writer refuses to produce more. */
#define UBLK_MAX_EXTENTS (1ULL << 24)
/* Blocks in one extent (the v1 table's 32-bit count). */
#define UBLK_MAX_EXTENT_BLOCKS (1ULL << 31)
/* Frames of a diff: 16 Mi (a 256 MiB frame table); with the default 1 MiB
 * frames that covers a full 16 TiB of data. */
#define UBLK_MAX_FRAMES (1ULL << 24)
/* Uncompressed bytes per frame. */
#define UBLK_MAX_FRAME_SIZE (64u << 20)

/* Tables are read and checked in pieces of this size, so memory follows
 * the bytes a file really holds, not the counts it claims. */
#define UBLK_TABLE_PIECE (1u << 20)

#endif
