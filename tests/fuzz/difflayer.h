/* A diff (v1 or v3) as the layer a device reads through: layer_diff_open
 * over a stand-in lower layer, half the diff's size, that answers at once,
 * then reads at extent edges and across the lower layer's end, each
 * waited for on a ring (a zstd diff's frames are decompressed by its fetch
 * threads, which post the read back there). Shared by fuzz_diff.c and
 * fuzz_diff_v3.c. */
#ifndef UBLK_FUZZ_DIFFLAYER_H
#define UBLK_FUZZ_DIFFLAYER_H

#include "image/diff.h"
#include "image/layer.h"
#include "fuzz.h"
#include "image/layer_diff.h"
#include "util/aio.h"

#include <liburing.h>

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

/* The diff's extents when the fuzzer passed them all (else NULL), and
 * the lower layer's blocks: what each block must read as. */
static const struct diff_extent *fz_ext;
static uint64_t fz_n_ext, fz_lower_blocks;

static bool all_bytes(const uint8_t *p, size_t n, uint8_t v)
{
	for (size_t i = 0; i < n; i++)
		if (p[i] != v)
			return false;
	return true;
}

/* What was read at block, of n bytes: zero extents and blocks past the
 * lower layer read zeros, blocks no extent names read the lower layer's
 * 0x6c; and where the layer's extent op says zeros, the read has them. */
static void check_bytes(struct layer *l, uint64_t block, uint32_t n)
{
	uint64_t len = n;

	for (uint32_t at = 0; fz_ext && at < n; at += BS) {
		uint64_t b = block + at / BS;
		int kind = DIFF_ABSENT;
		for (uint64_t i = 0; i < fz_n_ext; i++)
			if (b >= fz_ext[i].start && b - fz_ext[i].start < fz_ext[i].count)
				kind = fz_ext[i].kind;
		uint32_t m = n - at < BS ? n - at : BS;
		if (kind == DIFF_ZERO || (kind == DIFF_ABSENT && b >= fz_lower_blocks))
			FZ_ASSERT(all_bytes(rbuf + at, m, 0), "block %llu reads other than zeros",
				  (unsigned long long)b);
		else if (kind == DIFF_ABSENT)
			FZ_ASSERT(all_bytes(rbuf + at, m, 0x6c), "block %llu, in no extent, reads "
				  "other than the layer below", (unsigned long long)b);
	}
	if (layer_extent(l, block * BS, &len) == LAYER_ZEROS)
		FZ_ASSERT(len <= n && all_bytes(rbuf, len, 0), "block %llu: the extent says %llu bytes "
			  "of zeros, the read has data", (unsigned long long)block, (unsigned long long)len);
}

static struct io_uring fz_ring;
static struct aio fz_aio = { .ring = &fz_ring };

static void layer_read(struct layer *l, uint64_t block, uint32_t len)
{
	struct sync_io s = { .io = { .op = LAYER_READ, .off = block * BS, .len = len, .buf = rbuf,
				     .done = on_done, .aio = &fz_aio, .priv = priv } };
	if (s.io.off >= l->size)
		return;
	if (s.io.len > l->size - s.io.off)
		s.io.len = (uint32_t)(l->size - s.io.off);
	if (!fz_ring.ring_fd && io_uring_queue_init(16, &fz_ring, 0))
		FZ_DIE("io_uring_queue_init failed");
	layer_submit(l, &s.io);
	aio_drain(&fz_aio);
	FZ_ASSERT(s.calls == 1, "read at block %llu completed %d times", (unsigned long long)block,
		  s.calls);
	FZ_ASSERT(s.res == (int)s.io.len || s.res == -EIO, "read of %u at block %llu: %d", s.io.len,
		  (unsigned long long)block, s.res);
	if (s.res == (int)s.io.len)
		check_bytes(l, block, s.io.len);
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
	fz_ext = m->n_extents == n_ext ? ext : NULL;
	fz_n_ext = n_ext;
	fz_lower_blocks = lower.size / BS;
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
