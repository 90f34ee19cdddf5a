/* Whole reads of files. */
#ifndef UBLK_FILEIO_H
#define UBLK_FILEIO_H

#include <stddef.h>
#include <stdint.h>

/* Exactly len bytes at off (retrying short reads and EINTR): 0, -errno, or
 * -ENODATA when the file ends sooner. */
int pread_full(int fd, void *buf, size_t len, uint64_t off);

#endif
