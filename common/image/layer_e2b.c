/* An E2B build (docs/e2b.md, Serving a build) as the read-only bottom
 * layer of a stack. Reads are synchronous, like a diff's frames: data
 * files are local or in the chunk cache, and frames are small. */
#include "image/layer_e2b.h"
#include "image/e2b_store.h"
#include "image/layer_http.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

struct layer_e2b {
	struct layer l;
	struct e2b_store *s;
};

static void e2b_read(struct layer *l, struct layer_io *io)
{
	struct layer_e2b *le = (struct layer_e2b *)l;
	int ret = 0;

	/* a device's size is whole blocks; flatten reads up to the size */
	if (io->off > l->size || io->len > l->size - io->off)
		ret = -EIO;
	else
		ret = e2b_store_read(le->s, io->buf, io->len, io->off);
	io->done(io, ret ? ret : (int)io->len);
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
	e2b_store_close(le->s);
	free(le);
}

static const struct layer_ops e2b_ops = {
	.name = "e2b",
	.read = e2b_read,
	.write = e2b_refuse,
	.flush = e2b_flush,
	.discard = e2b_refuse,
	.close = layer_e2b_close,
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
	le->l.ops = &e2b_ops;
	le->l.size = h->size;
	le->l.read_only = true;
	memcpy(le->l.id, h->build_id, 16);
	le->l.generation = h->generation;
	*out = &le->l;
	return 0;
}
