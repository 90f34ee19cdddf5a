/* A diff (v1 or v3) as the layer a device reads through: layer_diff_open
 * over a stand-in lower layer, half the diff's size, that answers at once
 * (no ring needed), then reads at extent edges and across the lower
 * layer's end. Shared by fuzz_diff.c and fuzz_diff_v3.c. */
#ifndef UBLK_FUZZ_DIFFLAYER_H
#define UBLK_FUZZ_DIFFLAYER_H

#include "image/diff.h"
#include "image/layer.h"
#include "fuzz.h"
#include "image/layer_diff.h"

#define BS 4096u

static uint8_t rbuf[64 << 10];
static char priv[4096];

static void fz_lower_read(struct layer *l, struct layer_io *io)
{
	FZ_ASSERT(io->off + io->len <= l->size, "read of %u at %llu past the %llu-byte lower layer",
		  io->len, (unsigned long long)io->off, (unsigned long long)l->size);
	memset(io->buf, 0x6c, io->len);
	io->done(io, (int)io->len);
}
static void lower_close(struct layer *l) { (void)l; }
static const struct layer_ops lower_ops = {
	.name = "fuzz-lower", .read = fz_lower_read, .write = fz_lower_read,
	.flush = fz_lower_read, .discard = fz_lower_read, .close = lower_close,
};

struct sync_io {
	struct layer_io io;
	int res, calls;
};

static void on_done(struct layer_io *io, int res)
{
	struct sync_io *s = (struct sync_io *)io;
	s->res = res;
	s->calls++;
}

static void layer_read(struct layer *l, uint64_t block, uint32_t len)
{
	struct sync_io s = { .io = { .op = LAYER_READ, .off = block * BS, .len = len, .buf = rbuf,
				     .done = on_done, .priv = priv } };
	if (s.io.off >= l->size)
		return;
	if (s.io.len > l->size - s.io.off)
		s.io.len = (uint32_t)(l->size - s.io.off);
	layer_submit(l, &s.io);
	FZ_ASSERT(s.calls == 1, "read at block %llu completed %d times", (unsigned long long)block,
		  s.calls);
	FZ_ASSERT(s.res == (int)s.io.len || s.res == -EIO, "read of %u at block %llu: %d", s.io.len,
		  (unsigned long long)block, s.res);
}

/* The diff as a layer over a lower layer half its size. */
static void fz_diff_as_layer(const char *path, const struct diff_meta *m,
			     const struct diff_extent *ext, uint64_t n_ext)
{
	struct layer lower = { .ops = &lower_ops, .read_only = true,
			       .size = m->dev_size / 2 / BS * BS }, *l = NULL;
	char why[1024];

	memcpy(lower.id, m->parent, 16);
	if (layer_diff_open(path, NULL, &lower, &l, why, sizeof(why)))
		return;
	FZ_ASSERT(layer_stack_priv_size(l) <= sizeof(priv), "per-request state too big");
	for (uint64_t i = 0; i < n_ext && i < 32; i++) {
		layer_read(l, ext[i].start, sizeof(rbuf));
		layer_read(l, ext[i].start + ext[i].count - 1, 2 * BS);
		if (ext[i].start)
			layer_read(l, ext[i].start - 1, 3 * BS);
	}
	layer_read(l, 0, sizeof(rbuf));
	layer_read(l, lower.size / BS - 1, 4 * BS);
	layer_close(l);
}

#endif
