/* Random-access reads of a file or of a URL (through the shared chunk
 * cache): what diff files are read from. */
#ifndef UBLK_BLOB_H
#define UBLK_BLOB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "image/access_trace.h"

struct blob;
struct layer_http_opts;
struct access_log;

/* remote: options for a URL; NULL means the defaults and the environment. */
int blob_open(const char *path, const struct layer_http_opts *remote, struct blob **out,
	      char *why, size_t whylen);
/* A local regular file already open (a memfd works); fd is duplicated. */
int blob_open_fd(int fd, struct blob **out, char *why, size_t whylen);
uint64_t blob_size(const struct blob *b);
/* A local blob's file descriptor (the blob's: not to be closed), or -1. */
int blob_fd(const struct blob *b);
/* What tells this version of the blob's bytes from every other, for a
 * cache of what is made of them: a local file's device, inode, change
 * time and size (a file written or replaced gets another); a URL's chunk
 * cache folder (its URL, query, validator and size). 0, or -ENOENT where
 * nothing can (a server that sends no validator, a URL without a query). */
int blob_version(const struct blob *b, char *out, size_t len);
/* Exactly len bytes at off: 0, -EIO past the end, or -errno. A URL's
 * missing chunks are fetched synchronously (one at a time per blob). */
int blob_read(struct blob *b, void *buf, size_t len, uint64_t off);
/* Note the chunks of len bytes at off as read (blob_track), for reads a
 * layer served from what it made of them (a zstd diff's frames). */
void blob_note(struct blob *b, uint64_t off, size_t len);
/* A remote blob's read budget (--http-timeout x tries, in ms); 0 for a
 * local file. */
uint64_t blob_budget_ms(const struct blob *b);
/* The same without fetching: -EAGAIN where a chunk is not in the cache. */
int blob_read_cached(struct blob *b, void *buf, size_t len, uint64_t off);
/* Note the chunks a remote blob's reads touch in a (access_log.h), as an
 * image of this role: 0 (also for a local blob or a NULL a), or -errno. */
int blob_track(struct blob *b, struct access_log *a, enum trace_role role);
/* A remote blob's transfer now, and later ones, end at once (-ECANCELED):
 * its device is going. Any thread. */
void blob_cancel(struct blob *b);
void blob_close(struct blob *b);

#endif
