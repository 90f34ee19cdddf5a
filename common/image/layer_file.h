/* A plain file or block device as the bottom layer. */
#ifndef UBLK_LAYER_FILE_H
#define UBLK_LAYER_FILE_H

#include "image/layer.h"

/* Plain file (or block device) served read-write, or read-only. */
int layer_file_open(const char *path, bool read_only, struct layer **out);
/* The same over fd, already open and checked (a cache's data file), of
 * size bytes: the layer owns fd, closed also when this fails. */
int layer_file_adopt(int fd, uint64_t size, bool read_only, struct layer **out);
/* The file descriptor of a file layer (for fdatasync by the cache). */
int layer_file_fd(const struct layer *l);
/* Where [off, off + len) of a writable regular file is mapped, for a
 * write's data to be copied there by the kernel; NULL where it is not.
 * Touched here only under sigbus_guard: the file may be cut short under
 * the mapping. */
void *layer_file_place(struct layer *l, uint64_t off, uint32_t len);
/* Read len bytes at off at once, on the caller's thread, when the file
 * lives in memory (tmpfs) and len is small enough for that to be cheaper
 * than the ring: 0 (past end of file reads as zeros), -errno, or -EAGAIN
 * when the read belongs on the ring. */
int layer_file_read_now(struct layer *l, void *buf, uint32_t len, uint64_t off);
/* sqe: a read of len bytes at off into buf, on the ring; a large one of
 * a file in memory goes to an io_uring worker at once (IOSQE_ASYNC). */
void layer_file_prep_read(struct layer *l, struct io_uring_sqe *sqe, void *buf, uint32_t len,
			  uint64_t off);

#endif
