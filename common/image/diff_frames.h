/* A diff's data frames (docs/diff-format.md) filled, checksummed and
 * compressed on worker threads and handed to the writer in order, so
 * that frame i is written while the next ones are read and compressed. */
#ifndef UBLK_DIFF_FRAMES_H
#define UBLK_DIFF_FRAMES_H

#include "image/diff.h"

#include <sys/uio.h>

struct diff_frames;

struct diff_frame_out {
	const struct iovec *iov;        /* what to write: the frame, or its zstd form */
	size_t iovcnt;
	size_t stored;          /* bytes in all */
	uint32_t crc;           /* CRC-32C of the uncompressed frame */
	uint32_t blocks;        /* data blocks in the frame */
};

/* Frames of frame_size bytes from the DIFF_DATA extents of ext (data_blocks
 * blocks in all), compressed at zstd_level (0: not compressed), seen in
 * place with src's view where it has one, else read (both called from
 * several threads at once). 0 or -errno. */
int diff_frames_start(struct diff_frames **out, const struct diff_extent *ext,
		      uint64_t data_blocks, uint32_t frame_size, int zstd_level,
		      const struct diff_source *src);
/* The next frame, once ready; *f stays valid until the next call. 0,
 * -ENODATA after the last one, -EBADMSG if compressing it failed, or the
 * -errno of reading it; *bad_block: the block it failed at. */
int diff_frames_next(struct diff_frames *p, struct diff_frame_out *f, uint64_t *bad_block);
void diff_frames_stop(struct diff_frames *p);

#endif
