/* What the E2B header writer (e2b_write.c) and data writer (e2b_data.c)
 * share. Not for other users. */
#ifndef UBLK_E2B_WRITE_IMPL_H
#define UBLK_E2B_WRITE_IMPL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct buf {
	uint8_t *p;
	size_t len, cap;
	bool oom;
};

/* Append to b one LZ4 frame of src as E2B's writers make it: 4 MB blocks
 * (stated in the frame whatever the input's size), independent, block
 * checksums, a content checksum if content_sum. 0 or -ENOMEM, -EIO. */
int e2b_lz4_frame(const void *src, size_t len, bool content_sum, struct buf *b);

#endif
