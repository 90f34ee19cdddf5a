#include "stack_target.h"

#include <errno.h>
#include <stddef.h>

/* A tag's target area: the layer request, then the stack's own state. */
struct stack_req {
	struct layer_io io;
	struct queue_req *req;
	struct layer_map map;
};

#define STACK_REQ_BYTES ((sizeof(struct stack_req) + 15) & ~(size_t)15)

static void stack_done(struct layer_io *io, int res)
{
	queue_req_done(container_of(io, struct stack_req, io)->req, res);
}

static void stack_submit(void *ctx, struct queue_req *req)
{
	static const enum layer_op ops[] = {
		[QUEUE_READ] = LAYER_READ,
		[QUEUE_WRITE] = LAYER_WRITE,
		[QUEUE_FLUSH] = LAYER_FLUSH,
		[QUEUE_DISCARD] = LAYER_DISCARD,
		[QUEUE_WRITE_ZEROES] = LAYER_WRITE_ZEROES,
	};
	struct stack_req *sr = req->priv;

	if ((unsigned)req->op >= sizeof(ops) / sizeof(ops[0])) {
		queue_req_done(req, -EOPNOTSUPP);
		return;
	}
	sr->req = req;
	sr->io = (struct layer_io){
		.op = ops[req->op],
		.off = req->off,
		.len = req->len,
		.buf = req->buf,
		.done = stack_done,
		.aio = req->aio,
		.priv = (char *)sr + STACK_REQ_BYTES,
	};
	layer_submit(ctx, &sr->io);
}

static int stack_map(void *ctx, struct queue_req *req, const struct iovec **iov)
{
	struct layer_map *m = &((struct stack_req *)req->priv)->map;

	*iov = m->iov;
	return layer_map(ctx, req->off, req->len, m);
}

static void stack_unmap(void *ctx, struct queue_req *req)
{
	(void)ctx;
	layer_unmap(&((struct stack_req *)req->priv)->map);
}

static int stack_place_write(void *ctx, struct queue_req *req, void **at)
{
	return layer_place_write(ctx, req->off, req->len, at);
}

static int stack_write_placed(void *ctx, struct queue_req *req, uint32_t len)
{
	return layer_write_placed(ctx, req->off, len);
}

struct queue_target stack_target(struct layer *top)
{
	return (struct queue_target){
		.ctx = top,
		.priv_size = STACK_REQ_BYTES + layer_stack_priv_size(top),
		.submit = stack_submit,
		.map = top->maps ? stack_map : NULL,
		.unmap = stack_unmap,
		.place_write = top->ops->place_write ? stack_place_write : NULL,
		.write_placed = stack_write_placed,
	};
}
