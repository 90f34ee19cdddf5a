/* The unit tests' way to drive a layer stack: one operation at a time on
 * a plain io_uring, to completion. */
#ifndef TESTS_LAYER_RUN_H
#define TESTS_LAYER_RUN_H

#include "check.h"
#include "util/aio.h"
#include "image/layer.h"

#include <errno.h>

struct sync_io {
	struct layer_io io;
	int res;
	int done;
};

static inline void on_done(struct layer_io *io, int res)
{
	struct sync_io *s = (struct sync_io *)io;
	s->res = res;
	s->done++;
}

static struct io_uring ring;
static struct aio aio = { .ring = &ring };
/* the stack's per-request state (layer_stack_priv_size) */
static char priv[4096];

/* Run one operation to completion; returns its result. */
static inline int run(struct layer *l, enum layer_op op, uint64_t off, uint32_t len, void *buf)
{
	struct sync_io s = { .io = { .op = op, .off = off, .len = len, .buf = buf,
				     .done = on_done, .aio = &aio, .priv = priv } };
	layer_submit(l, &s.io);
	if (aio_drain(&aio))
		return -EIO;
	CHECK(s.done == 1, "op %d completed %d times", op, s.done);
	return s.res;
}

#endif
