/* Whole reads and writes of files. */
#ifndef UBLK_FILEIO_H
#define UBLK_FILEIO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

/* Exactly len bytes at off (retrying short reads and EINTR): 0, -errno, or
 * -ENODATA when the file ends sooner. */
int pread_full(int fd, void *buf, size_t len, uint64_t off);
/* pread_full, for a file whose size was checked: one that ends sooner
 * after all is -EIO. */
int pread_exact(int fd, void *buf, size_t len, uint64_t off);
/* len bytes at off, zeros where the file ends sooner: 0 or -errno. */
int pread_zeros_past_end(int fd, void *buf, size_t len, uint64_t off);
/* All len bytes at the file offset (retrying short writes and EINTR): 0,
 * -errno, or -EIO when the file takes no more. */
int write_full(int fd, const void *buf, size_t len);
/* The same at off. */
int pwrite_full(int fd, const void *buf, size_t len, uint64_t off);
/* write_full of iovcnt pieces, any count. */
int writev_full(int fd, const struct iovec *iov, size_t iovcnt);
/* The soft limit of open files up to the hard one, for a process that
 * holds many at once (a server's chunk files, a stop or recovery per
 * device in parallel): the soft default of 1024 runs out first. Failing
 * leaves the soft limit. */
void fd_limit_raise(void);
/* The folder that holds path, as a path: "." for a bare name, "/" for
 * one in the root. 0, or -ENAMETOOLONG. */
int path_folder(const char *path, char *dir, size_t len);
/* fsync the folder that holds path, so that a file made there keeps
 * its name across a crash: 0 or -errno. */
int fsync_folder_of(const char *path);
/* Whether name (in dirfd, fstatat flags) is still the file open as fd: not
 * removed, or replaced by another, since it was opened. */
bool fd_is_named(int fd, int dirfd, const char *name, int flags);

#endif
