/* Opening and checking image files, with messages that say what is wrong. */
#ifndef UBLK_IMAGE_H
#define UBLK_IMAGE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Open path (regular file or block device) for serving and return its
 * size. Fails with -ENOENT, -EACCES, -EISDIR, -EINVAL (size not a multiple
 * of 4096, or empty) or another -errno; if why is given it receives a
 * one-line explanation. */
int image_open(const char *path, bool read_only, int *fd, uint64_t *size,
	       char *why, size_t whylen);

/* The same checks, without keeping the file open. */
int image_check(const char *path, bool read_only, uint64_t *size, char *why, size_t whylen);

#endif
