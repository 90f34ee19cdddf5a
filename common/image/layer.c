#include "image/layer.h"
#include "util/cfgline.h"

#include <errno.h>
#include <string.h>
#include <pthread.h>
#include <sys/mman.h>

void layer_submit(struct layer *l, struct layer_io *io)
{
	io->layer = l;
	io->progress = 0;
	if (l->read_only && io->op != LAYER_READ && io->op != LAYER_FLUSH) {
		io->done(io, -EROFS);
		return;
	}
	switch (io->op) {
	case LAYER_READ: l->ops->read(l, io); break;
	case LAYER_WRITE: l->ops->write(l, io); break;
	case LAYER_FLUSH: l->ops->flush(l, io); break;
	case LAYER_DISCARD:
	case LAYER_WRITE_ZEROES: l->ops->discard(l, io); break;
	default: io->done(io, -EOPNOTSUPP); break;
	}
}

void layer_close(struct layer *l)
{
	if (l)
		l->ops->close(l);
}

int layer_stack_freeze(struct layer *top, uint64_t timeout_ms, struct layer **frozen)
{
	for (; top; top = top->lower) {
		if (top->ops->freeze) {
			int ret = top->ops->freeze(top, timeout_ms);
			*frozen = ret ? NULL : top;
			return ret;
		}
	}
	*frozen = NULL;
	return -EOPNOTSUPP;
}

void layer_thaw(struct layer *l)
{
	if (l)
		l->ops->thaw(l);
}

void layer_stack_cancel(struct layer *top)
{
	for (; top; top = top->lower)
		if (top->ops->cancel)
			top->ops->cancel(top);
}

enum layer_extent layer_extent(struct layer *l, uint64_t off, uint64_t *len)
{
	const uint64_t bs = LAYER_BLOCK_SIZE;
	uint64_t asked = *len, end;
	enum layer_extent kind = l->ops->extent ? l->ops->extent(l, off, len) : LAYER_DATA;

	if (!*len || *len > asked) {   /* no progress or past the question: read it */
		*len = asked;
		return LAYER_DATA;
	}
	if (*len == asked)
		return kind;
	/* A file system may tell holes in blocks smaller than ours: a cut is
	 * moved to a block boundary, into the hole, so reads stay whole blocks. */
	end = off + *len;
	end = kind == LAYER_ZEROS ? end / bs * bs : (end + bs - 1) / bs * bs;
	if (end <= off) {   /* less than a block of zeros: read it */
		end = (off / bs + 1) * bs;
		kind = LAYER_DATA;
	}
	*len = (end < off + asked ? end : off + asked) - off;
	return kind;
}

int layer_map(struct layer *l, uint64_t off, uint32_t len, struct layer_map *m)
{
	return l->maps ? l->ops->map(l, off, len, m) : 0;
}

int layer_place_write(struct layer *l, uint64_t off, uint32_t len, void **at)
{
	return l->ops->place_write ? l->ops->place_write(l, off, len, at) : -EAGAIN;
}

int layer_write_placed(struct layer *l, uint64_t off, uint32_t len)
{
	return l->ops->write_placed(l, off, len);
}

int layer_map_piece(struct layer_map *m, const void *p, uint32_t len)
{
	if (m->n == LAYER_MAP_PIECES)
		return 0;
	m->iov[m->n++] = (struct iovec){ (void *)p, len };
	return 1;
}

void layer_unmap(struct layer_map *m)
{
	for (int i = 0; i < m->npins; i++)
		m->pins[i].l->ops->unpin(m->pins[i].l, m->pins[i].pin);
	m->npins = 0;
	m->n = 0;
}

/* Anonymous memory never written reads as the zero page: 1 MiB of address
 * space, and no memory, serves any run of zeros in a few pieces. */
#define ZERO_MAP_BYTES (1u << 20)
static void *zero_map;
static pthread_once_t zero_map_once = PTHREAD_ONCE_INIT;

static void zero_map_create(void)
{
	void *m = mmap(NULL, ZERO_MAP_BYTES, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
		       -1, 0);
	zero_map = m == MAP_FAILED ? NULL : m;
}

int layer_map_zeros(uint32_t len, struct layer_map *m)
{
	int n = 0;

	pthread_once(&zero_map_once, zero_map_create);
	if (!zero_map)
		return 0;
	for (; len; n++) {
		uint32_t piece = len < ZERO_MAP_BYTES ? len : ZERO_MAP_BYTES;
		if (!layer_map_piece(m, zero_map, piece))
			return 0;
		len -= piece;
	}
	return n;
}

int layer_stack_stats(struct layer *top, char *buf, size_t len)
{
	for (; top; top = top->lower)
		if (top->ops->stats)
			return top->ops->stats(top, buf, len);
	return 0;
}

#define PRIV_ALIGN 16

static size_t priv_round(size_t n)
{
	return (n + PRIV_ALIGN - 1) / PRIV_ALIGN * PRIV_ALIGN;
}

size_t layer_stack_priv_size(const struct layer *l)
{
	size_t n = 0;
	for (; l; l = l->lower)
		n += priv_round(l->priv_size);
	return n;
}

void layer_child_init(const struct layer *l, struct layer_io *parent, struct layer_io *child,
		      enum layer_op op, uint64_t off, uint32_t len, void *buf, layer_done_fn done)
{
	child->op = op;
	child->off = off;
	child->len = len;
	child->buf = buf;
	child->done = done;
	child->aio = parent->aio;
	child->priv = (char *)parent->priv + priv_round(l->priv_size);
}

void layer_on(struct layer *l, const struct layer_ops *ops, struct layer *lower)
{
	l->ops = ops;
	l->lower = lower;
	l->size = lower->size;
	memcpy(l->id, lower->id, sizeof(l->id));
	l->generation = lower->generation;
	l->read_only = lower->read_only;
	l->no_discard = lower->no_discard;
}

int layer_version_text(const struct layer *l, char *buf, size_t len, size_t *used)
{
	int ret = 0;

	for (; l && !ret; l = l->lower)
		if (l->version_key)
			ret = cfgline_append(buf, len, used, l->version_key, l->version);
	return ret;
}
