/* An E2B build (docs/e2b.md, Serving a build) as the read-only bottom
 * layer of a stack. A build with compressed data, or data over HTTP,
 * serves on the queue thread only what needs no waiting (frames kept
 * decompressed, chunks in the chunk cache, local uncompressed data); the
 * rest is read and decompressed on its fetch threads and handed back
 * (fetch_pool.h). Without any, all is read on the queue thread. */
#include "image/layer_e2b.h"
#include "image/e2b_store.h"
#include "image/chunkcache.h"
#include "image/fetch_pool.h"
#include "image/layer_http.h"
#include "util/log.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

struct layer_e2b {
	struct layer l;
	struct e2b_store *s;
	struct fetch_pool *fetch;       /* data over HTTP, or compressed */
	uint64_t build_size;            /* the header's; l.size may be larger
					   (--read-only --size): zeros past it */
	atomic_bool said_no_memory;
};

struct e2b_io {
	struct fetch_job job;
	uint32_t in_build;              /* bytes of the request inside the build */
};

/* A fetch thread's buffers for frames, taken at its first read of a
 * compressed build's data and again after they could not be. */
struct fetcher {
	struct e2b_decoder *dec;
};

static void *fetch_init(void *ctx)
{
	(void)ctx;
	return calloc(1, sizeof(struct fetcher));
}

static void fetch_exit(void *ctx, void *mine)
{
	struct fetcher *f = mine;
	(void)ctx;
	if (f)
		e2b_decoder_free(f->dec);
	free(f);
}

/* A thread without buffers (out of memory) fails the reads of frames not
 * kept while that lasts, rather than decompress them under the store's
 * lock, which the queues' reads of kept frames take. */
static int fetch_run(void *ctx, void *mine, struct fetch_job *job)
{
	struct layer_e2b *le = ctx;
	struct fetcher *f = mine;
	struct layer_io *io = job->io;
	struct e2b_io *p = io->priv;

	if (f && !f->dec && e2b_store_compressed(le->s))
		f->dec = e2b_decoder_new(le->s);
	int ret = e2b_store_read_own(le->s, f ? f->dec : NULL, io->buf, p->in_build, io->off);
	if (ret == -ENOMEM && !atomic_exchange(&le->said_no_memory, true)) {
		char build[37];
		e2b_uuid_str(le->l.id, build);
		log_err("build %s: out of memory for a fetch thread's frame buffers: reads of frames "
			"not kept fail until it has them (said once)", build);
	}
	return ret;
}

static const struct fetch_pool_ops fetch_ops = {
	.thread_init = fetch_init,
	.thread_exit = fetch_exit,
	.run = fetch_run,
};

static void fetched(struct aio_req *req, int res)
{
	struct layer_io *io = container_of(req, struct layer_io, areq);
	io->done(io, res ? res : (int)io->len);
}

static void e2b_read(struct layer *l, struct layer_io *io)
{
	struct layer_e2b *le = (struct layer_e2b *)l;
	struct e2b_io *p = io->priv;
	int ret = 0;

	/* a device's size is whole blocks; flatten reads up to the size */
	if (io->off > l->size || io->len > l->size - io->off) {
		io->done(io, -EIO);
		return;
	}
	p->in_build = io->off >= le->build_size ? 0 :
		      (uint32_t)(io->len < le->build_size - io->off ? io->len : le->build_size - io->off);
	memset((char *)io->buf + p->in_build, 0, io->len - p->in_build);
	if (!p->in_build) {
		/* all past the build: zeros */
	} else if (!le->fetch) {
		ret = e2b_store_read(le->s, io->buf, p->in_build, io->off);
	} else if ((ret = e2b_store_try_read(le->s, io->buf, p->in_build, io->off)) == -EAGAIN) {
		p->job.io = io;
		fetch_pool_queue(le->fetch, &p->job, fetched);
		return;
	}
	io->done(io, ret ? ret : (int)io->len);
}

/* Frames kept in the chunk cache, in place (e2b_store_map), and zeros. */
static int e2b_map(struct layer *l, uint64_t off, uint32_t len, struct layer_map *m)
{
	struct layer_e2b *le = (struct layer_e2b *)l;
	uint32_t in_build = off >= le->build_size ? 0 :
			    len < le->build_size - off ? len : (uint32_t)(le->build_size - off);
	int n = in_build ? e2b_store_map(le->s, off, in_build, l, m) : 0;

	if (in_build && !n)
		return 0;
	if (len > in_build) {
		int z = layer_map_zeros(len - in_build, m);
		return z ? n + z : 0;
	}
	return n;
}

static void e2b_flush(struct layer *l, struct layer_io *io)
{
	(void)l;
	io->done(io, 0);
}

static void e2b_refuse(struct layer *l, struct layer_io *io)
{
	(void)l;
	io->done(io, -EROFS);   /* never reached: the layer is read-only */
}

static void layer_e2b_close(struct layer *l)
{
	struct layer_e2b *le = (struct layer_e2b *)l;
	fetch_pool_stop(le->fetch);
	e2b_store_close(le->s);
	free(le);
}

static void e2b_cancel(struct layer *l)
{
	e2b_store_cancel(((struct layer_e2b *)l)->s);
}

static const struct layer_ops e2b_ops = {
	.name = "e2b",
	.read = e2b_read,
	.write = e2b_refuse,
	.flush = e2b_flush,
	.discard = e2b_refuse,
	.close = layer_e2b_close,
	.cancel = e2b_cancel,
	.map = e2b_map,
	.unpin = chunk_layer_unpin,
};

int layer_e2b_open(const char *root, const char *build, const char *name,
		   const struct layer_http_opts *remote, struct layer **out, char *why,
		   size_t whylen)
{
	struct layer_e2b *le = calloc(1, sizeof(*le));
	const struct e2b_header *h;
	int ret;

	if (!le)
		return -ENOMEM;
	ret = e2b_store_open(root, build, name ? name : E2B_ROOTFS, remote, &le->s, why, whylen);
	if (ret) {
		free(le);
		return ret;
	}
	h = e2b_store_header(le->s);
	/* without fetch threads remote data is read, and frames decompressed,
	 * in line */
	uint64_t budget = e2b_store_budget_ms(le->s);
	if ((budget || e2b_store_compressed(le->s)) &&
	    fetch_pool_start(&le->fetch, FETCH_POOL_THREADS, &fetch_ops, le, budget))
		le->fetch = NULL;
	le->l.ops = &e2b_ops;
	le->l.priv_size = sizeof(struct e2b_io);
	le->l.size = le->build_size = h->size;
	le->l.read_only = true;
	memcpy(le->l.id, h->build_id, 16);
	le->l.generation = h->generation;
	le->l.maps = e2b_store_maps(le->s);
	*out = &le->l;
	return 0;
}
