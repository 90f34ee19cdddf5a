/*
 * Image layers. Every layer (base file, and later cache, diff, remote base,
 * fault injection) implements the same small table of operations so they
 * stack freely; a layer reaches the one below through its `lower` pointer,
 * never through a global. Layers know nothing of ublk.
 *
 * Operations are asynchronous: they start the work and return; when it is
 * done the layer calls io->done(io, res) with res = bytes for read/write,
 * 0 for flush/discard, or -errno. A layer may call done() before returning
 * (synchronous work). Backend IO goes on io->aio, the caller's ring.
 */
#ifndef UBLK_LAYER_H
#define UBLK_LAYER_H

#include "aio.h"

#include <stdbool.h>
#include <stdint.h>

#define LAYER_BLOCK_SIZE 4096u

enum layer_op {
	LAYER_READ,
	LAYER_WRITE,
	LAYER_FLUSH,
	LAYER_DISCARD,
	LAYER_WRITE_ZEROES,
};

struct layer_io;
typedef void (*layer_done_fn)(struct layer_io *io, int res);

struct layer_io {
	enum layer_op op;
	uint64_t off;
	uint32_t len;
	void *buf;
	layer_done_fn done;
	struct aio *aio;
	/* Private to the layer serving the request. */
	struct aio_req areq;
	uint32_t progress;
	void *buf_owner;
};

struct layer;

struct layer_ops {
	const char *name;
	void (*read)(struct layer *l, struct layer_io *io);
	void (*write)(struct layer *l, struct layer_io *io);
	void (*flush)(struct layer *l, struct layer_io *io);
	/* LAYER_DISCARD and LAYER_WRITE_ZEROES; both must read back as zeros. */
	void (*discard)(struct layer *l, struct layer_io *io);
	void (*close)(struct layer *l);
};

struct layer {
	const struct layer_ops *ops;
	struct layer *lower;
	uint64_t size;          /* bytes */
	bool read_only;
};

/* Dispatch io to the operation its op names. */
void layer_submit(struct layer *l, struct layer_io *io);
void layer_close(struct layer *l);

/* Plain file (or block device) served read-write, or read-only. */
int layer_file_open(const char *path, bool read_only, struct layer **out);

#endif
