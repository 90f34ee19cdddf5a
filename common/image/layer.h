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

#include "util/aio.h"
#include "image/http.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define container_of(p, type, member) ((type *)((char *)(p) - offsetof(type, member)))

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
	/* Per-request state of the layers below the caller: the owner points
	 * priv at layer_stack_priv_size(top) bytes, allocated once. */
	void *priv;
	/* Set by layer_submit: the layer serving the request, which alone
	 * uses the fields below. */
	struct layer *layer;
	struct aio_req areq;
	uint32_t progress;
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
	size_t priv_size;       /* bytes of per-request state this layer needs */
	/* Identity of the image this layer and those below present: a diff's
	 * layer id and generation; zeros and 0 for a plain base image. */
	uint8_t id[16];
	uint64_t generation;
};

/* Bytes of per-request state the stack from l down needs. */
size_t layer_stack_priv_size(const struct layer *l);
/* Prepare child, a request this layer sends below on behalf of parent:
 * same ring, and the private area that follows this layer's own. */
void layer_child_init(const struct layer *l, struct layer_io *parent, struct layer_io *child,
		      enum layer_op op, uint64_t off, uint32_t len, void *buf, layer_done_fn done);

/* Dispatch io to the operation its op names. */
void layer_submit(struct layer *l, struct layer_io *io);
void layer_close(struct layer *l);

/* Plain file (or block device) served read-write, or read-only. */
int layer_file_open(const char *path, bool read_only, struct layer **out);
/* The file descriptor of a file layer (for fdatasync by the cache). */
int layer_file_fd(const struct layer *l);

/* Copy-on-write cache over lower (docs/cache-format.md): path is the data
 * file, path.map its block states; both created if neither exists. size 0
 * means the size recorded in an existing cache, else lower's size. On
 * failure why says what is wrong. */
int layer_cache_open(const char *path, struct layer *lower, uint64_t size, bool read_only,
		     struct layer **out, char *why, size_t whylen);

/* The cache layer in a stack, or NULL. */
struct layer *layer_find_cache(struct layer *top);
/* Hold new writes and discards, wait (at most timeout_ms) for those in
 * flight, and make the cache durable: its files are then a consistent
 * point in time until layer_cache_thaw. Call from outside the queues. */
int layer_cache_freeze(struct layer *cache, uint64_t timeout_ms);
void layer_cache_thaw(struct layer *cache);

struct layer_http_opts;

/* A diff file (docs/diff-format.md) as a read-only layer over lower; refused
 * unless its parent id is lower's id and its geometry fits. */
int layer_diff_open(const char *path, const struct layer_http_opts *remote, struct layer *lower,
		    struct layer **out, char *why, size_t whylen);

/* A remote base image over HTTP(S) (docs/remote.md). */
struct layer_http_opts {
	struct http_opts http;
	const char *cache_dir;      /* chunk cache root, NULL: default */
	uint32_t chunk_size;
	uint64_t cache_limit;
	unsigned readahead;         /* chunks fetched after a missed one */
	bool prefetch;              /* fetch the whole image in the background */
};
bool layer_is_url(const char *path);
int layer_http_open(const char *url, const struct layer_http_opts *o, struct layer **out,
		    char *why, size_t whylen);
/* The remote layer's statistics as a JSON object into buf; 0 if the stack
 * has no remote layer. */
int layer_http_stats(struct layer *top, char *buf, size_t len);

/* An E2B build (docs/e2b.md): build id `build` under storage root root (a
 * folder or an http(s) base URL), artifact name (rootfs.ext4 or memfile;
 * NULL: rootfs.ext4), every build its header names opened, as a read-only
 * bottom layer; id = the build id, generation = the header's. */
int layer_e2b_open(const char *root, const char *build, const char *name,
		   const struct layer_http_opts *remote, struct layer **out, char *why,
		   size_t whylen);

/* Fault injection over lower, from a spec (docs/fault-injection.md), e.g.
 * "delay-read=3000@0-4096,error-write=5@1M-2M". */
int layer_fault_open(const char *spec, struct layer *lower, struct layer **out,
		     char *why, size_t whylen);

#endif
