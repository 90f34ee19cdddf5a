#include "layer.h"

#include <errno.h>

void layer_submit(struct layer *l, struct layer_io *io)
{
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
