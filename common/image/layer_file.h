/* A plain file or block device as the bottom layer. */
#ifndef UBLK_LAYER_FILE_H
#define UBLK_LAYER_FILE_H

#include "image/layer.h"

/* Plain file (or block device) served read-write, or read-only. */
int layer_file_open(const char *path, bool read_only, struct layer **out);
/* The file descriptor of a file layer (for fdatasync by the cache). */
int layer_file_fd(const struct layer *l);

#endif
