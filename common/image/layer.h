/*
 * Image layers. Every layer (base file, cache, diff, remote base, E2B
 * build, fault injection; each declared in its own header) implements the
 * same small table of operations so they stack freely; a layer reaches the one below through its `lower` pointer,
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

#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#define container_of(p, type, member) ((type *)((char *)(p) - offsetof(type, member)))

#define LAYER_BLOCK_SIZE 4096u

enum layer_op {
	LAYER_READ,
	LAYER_WRITE,
	LAYER_FLUSH,
	LAYER_DISCARD,
	LAYER_WRITE_ZEROES,
};

enum layer_extent { LAYER_DATA, LAYER_ZEROS };

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

#define LAYER_MAP_PIECES 64
#define LAYER_MAP_PINS 32

/* Where a read's bytes lie in memory (layer_map), and what keeps them
 * mapped until layer_unmap. */
struct layer_map {
	struct iovec iov[LAYER_MAP_PIECES];
	int n;
	struct layer_pin {
		struct layer *l;
		void *pin;
	} pins[LAYER_MAP_PINS];
	int npins;
};

struct layer_ops {
	const char *name;
	void (*read)(struct layer *l, struct layer_io *io);
	void (*write)(struct layer *l, struct layer_io *io);
	void (*flush)(struct layer *l, struct layer_io *io);
	/* LAYER_DISCARD and LAYER_WRITE_ZEROES; both must read back as zeros. */
	void (*discard)(struct layer *l, struct layer_io *io);
	void (*close)(struct layer *l);
	/* Optional: NULL where the layer has nothing to do. */
	/* Hold new writes and discards, wait (at most timeout_ms) for those
	 * in flight and make the layer durable: its files are then a
	 * consistent point in time until thaw. Called from outside the queues. */
	int (*freeze)(struct layer *l, uint64_t timeout_ms);
	void (*thaw)(struct layer *l);
	/* Give up on what the layer waits for outside the process (remote
	 * fetches, however long their deadlines): reads waiting for it, and
	 * any read that would, end soon with an error. For a device whose
	 * stop waits for them; called from outside the queues, once. */
	void (*cancel)(struct layer *l);
	/* The layer's statistics as a JSON object into buf; its length. */
	int (*stats)(struct layer *l, char *buf, size_t len);
	/* How [off, off + *len) reads, told without reading it: LAYER_ZEROS
	 * or LAYER_DATA (may hold anything), with *len cut where that stops
	 * holding. NULL: all of it is LAYER_DATA. */
	enum layer_extent (*extent)(struct layer *l, uint64_t off, uint64_t *len);
	/* Where [off, off + len) can be read in place, in memory mapped from
	 * the layer's files: its pieces appended to m, their count, or 0 when
	 * some of it cannot (m may then hold pins all the same). Only the
	 * kernel reads those pieces (a write to the device from them), which
	 * makes a file cut short under the mapping an EFAULT there rather
	 * than a SIGBUS here. Called only where `maps` is set. */
	int (*map)(struct layer *l, uint64_t off, uint32_t len, struct layer_map *m);
	/* Let go of what map pinned to keep a piece mapped (NULL: it pins
	 * nothing). */
	void (*unpin)(struct layer *l, void *pin);
	/* Optional, together: a write whose data is copied straight into the
	 * layer's own writable mapping. place_write says where [off, off +
	 * len) goes there (one piece, at *at) and keeps the layer from
	 * freezing until write_placed, called once the data is there (its
	 * first len bytes; 0 when none came), accounts for it as write would
	 * and lets go. Every place_write that returns 0 is followed by one
	 * write_placed, from the same thread. Both return 0, or -EAGAIN when
	 * the layer cannot: the request must then go to write as usual (which
	 * may see a partly filled range: a write in flight may be seen half
	 * done). */
	int (*place_write)(struct layer *l, uint64_t off, uint32_t len, void **at);
	int (*write_placed)(struct layer *l, uint64_t off, uint32_t len);
};

struct layer {
	const struct layer_ops *ops;
	struct layer *lower;
	uint64_t size;          /* bytes */
	bool read_only;
	/* discard and write-zeroes cannot be kept here (a file system that
	 * punches no holes: ramfs, vfat): the device offers neither, and the
	 * kernel zeroes with writes */
	bool no_discard;
	bool maps;              /* ops->map may be asked: this layer and those below map */
	size_t priv_size;       /* bytes of per-request state this layer needs */
	/* Identity of the image this layer and those below present: a diff's
	 * layer id and generation; zeros and 0 for a plain base image. */
	uint8_t id[16];
	uint64_t generation;
	/* The version of the image this layer reads, which a cache records
	 * and a recovery compares (docs/cache-format.md, Base version):
	 * "remote", a remote image's "SIZE VALIDATOR" (its ETag, else its
	 * Last-Modified, as the server sent it; none: nothing after the
	 * space); "file", a local regular file's "SIZE SEC.NSEC" (its
	 * modification time) when it is read-only; NULL and empty for every
	 * other layer. */
	const char *version_key;
	char version[288];
};

/* Bytes of per-request state the stack from l down needs. */
size_t layer_stack_priv_size(const struct layer *l);
/* l, of ops, on lower, presents the image below as it is (a layer that
 * watches or alters requests, not data): its size, identity, read-only
 * and no_discard are lower's. */
void layer_on(struct layer *l, const struct layer_ops *ops, struct layer *lower);
/* Append the versions of l and the layers below it (version_key=version
 * lines, top first) to buf (len bytes, *used of them taken, kept
 * NUL-terminated): 0, or -ENOSPC (buf then holds the lines that fit). */
int layer_version_text(const struct layer *l, char *buf, size_t len, size_t *used);
/* Prepare child, a request this layer sends below on behalf of parent:
 * same ring, and the private area that follows this layer's own. */
void layer_child_init(const struct layer *l, struct layer_io *parent, struct layer_io *child,
		      enum layer_op op, uint64_t off, uint32_t len, void *buf, layer_done_fn done);

/* Dispatch io to the operation its op names. */
void layer_submit(struct layer *l, struct layer_io *io);
/* What a read that needed a remote image's bytes fails with, from the
 * fetch's -errno: a timeout and a refusal (HTTP 401/403) as they are, so
 * that a tool's exit status says which (exit_code_for_image), and a
 * cancel (the device goes: not worth a message); anything else -EIO. The
 * queue hands the kernel -EIO for all three (queue.c). */
static inline int layer_fetch_error(int err)
{
	return err == -ETIMEDOUT || err == -EACCES || err == -ECANCELED ? err : -EIO;
}
void layer_close(struct layer *l);

/* Freeze the first layer from top down that can: 0 with *frozen set (thaw
 * it with layer_thaw), -EOPNOTSUPP when none can, or its -errno. */
int layer_stack_freeze(struct layer *top, uint64_t timeout_ms, struct layer **frozen);
void layer_thaw(struct layer *l);
/* Cancel every layer from top down that can (the cancel op). */
void layer_stack_cancel(struct layer *top);
/* l's extent op, or LAYER_DATA for all of *len where it has none: what
 * lets a copy of a mostly empty image skip its holes without reading them. */
enum layer_extent layer_extent(struct layer *l, uint64_t off, uint64_t *len);
/* l's map op (see struct layer_ops), 0 where l does not map. */
int layer_map(struct layer *l, uint64_t off, uint32_t len, struct layer_map *m);
/* l's place_write and write_placed ops, -EAGAIN where it has none. */
int layer_place_write(struct layer *l, uint64_t off, uint32_t len, void **at);
int layer_write_placed(struct layer *l, uint64_t off, uint32_t len);
/* Append one piece to m: 1, or 0 when m is full. */
int layer_map_piece(struct layer_map *m, const void *p, uint32_t len);
/* len bytes of zeros in place, as layer_map: pieces of one read-only
 * mapping of the zero page shared by the whole process. */
int layer_map_zeros(uint32_t len, struct layer_map *m);
/* Unpin everything m holds and empty it, for the next layer_map. */
void layer_unmap(struct layer_map *m);
/* The statistics of the first layer from top down that keeps some, as a
 * JSON object into buf: its length, or 0 when no layer keeps any. */
int layer_stack_stats(struct layer *top, char *buf, size_t len);

#endif
