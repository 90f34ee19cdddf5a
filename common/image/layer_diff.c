/* A diff file as a read-only layer. Blocks the diff has are served from its
 * frames; the rest go to the layer below. A random 4 KiB read must not
 * cost a whole frame: a raw frame is read whole once, to check its CRC,
 * and after that only the blocks a read asks for are read from the file;
 * a zstd frame, once decompressed, is kept in the chunk cache, shared by
 * every device over the same diff file, and read from there. A few
 * decompressed frames are kept in memory too, shared by all queues (all
 * that is kept without a chunk cache). A local raw diff's checked frames
 * are read on the ring, or mapped, as a base image is; a frame to check,
 * on the queue thread: a page cache read. A zstd frame to decompress, a
 * remote diff's frame that is not kept, or a v3 diff's blocks not in the
 * chunk cache, are read on one of the layer's fetch threads, which posts
 * the request back to its queue's ring: neither stalls a queue. */
#include "image/layer_diff.h"
#include "image/blob.h"
#include "image/chunkcache.h"
#include "image/diff.h"
#include "image/fetch_pool.h"
#include "image/layer_file.h"
#include "image/layer_http.h"
#include "util/crc32c.h"
#include "util/log.h"
#include "image/http.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zstd.h>

#define BS LAYER_BLOCK_SIZE
/* Frames kept decompressed: up to 8, in at most 64 MiB (a diff names
 * frames of up to 64 MiB, and a hostile one of a few KiB of zstd would
 * otherwise keep 512 MiB a layer), but 2 at least; the two fetch threads
 * of a remote or zstd diff hold one frame each besides (4 x 64 MiB of
 * frames at worst), and each the compressed frame it reads. */
#define FRAME_SLOTS 8
#define SLOT_BYTES (64u << 20)

struct frame_slot {
	uint64_t idx;
	uint64_t used;          /* LRU tick; 0 = empty */
	uint8_t *buf;
};

/* A fetch thread's own frame buffers: it fills them without the lock. */
struct frame_buf {
	uint8_t *frame, *scratch;
};

struct layer_diff {
	struct layer l;
	struct diff_file *d;
	uint64_t lower_blocks;
	pthread_mutex_t lock;
	struct frame_slot slots[FRAME_SLOTS];
	unsigned nslots;
	uint64_t tick;
	uint8_t *scratch;
	struct fetch_pool *fetch;       /* a remote or zstd diff's fetch threads */
	uint8_t *checked;               /* frames whose CRC matched: a bit each */
	/* a local raw diff's file as a layer: its checked frames' blocks read
	 * on the ring, or mapped, as a base image's */
	struct layer *data_file;
	/* a zstd diff's frames as decompressed, kept in the chunk cache (one
	 * chunk a frame), shared by the devices over the same diff */
	struct chunk_image frames;
	bool frames_open;
	atomic_bool said_damaged;       /* a kept frame that did not match: logged */
	atomic_bool said_no_memory;     /* a fetch thread without buffers: logged */
};

struct diff_io {
	struct layer_io child;
	struct layer_io *parent;
	struct layer_diff *ld;
	uint32_t cursor;
	/* a read handed to a fetch thread: count blocks from index into buf */
	struct fetch_job job;
	uint64_t index, count;
	char *buf;
};

/* The kept frame fidx, marked used, or NULL. Locked. */
static struct frame_slot *kept(struct layer_diff *ld, uint64_t fidx)
{
	for (unsigned i = 0; i < ld->nslots; i++)
		if (ld->slots[i].used && ld->slots[i].idx == fidx) {
			ld->slots[i].used = ++ld->tick;
			return &ld->slots[i];
		}
	return NULL;
}

static struct frame_slot *victim(struct layer_diff *ld)
{
	struct frame_slot *v = &ld->slots[0];
	for (unsigned i = 1; i < ld->nslots; i++)
		if (ld->slots[i].used < v->used)
			v = &ld->slots[i];
	return v;
}

static bool frame_checked(const struct layer_diff *ld, uint64_t fidx)
{
	return ld->checked &&
	       (__atomic_load_n(&ld->checked[fidx / 8], __ATOMIC_ACQUIRE) >> (fidx % 8) & 1);
}

static void mark_checked(struct layer_diff *ld, uint64_t fidx)
{
	__atomic_fetch_or(&ld->checked[fidx / 8], (uint8_t)(1u << (fidx % 8)), __ATOMIC_RELEASE);
}

/* n blocks from block `in` of a frame checked once: a raw frame's from
 * the diff (without fetching with only_kept: -EAGAIN then, a remote
 * diff's queue), a zstd frame's from its chunk in the frame cache. */
static int read_checked(struct layer_diff *ld, uint64_t fidx, uint64_t in, uint64_t n, char *dst,
			bool only_kept)
{
	const struct diff_frame *f = &ld->d->frames[fidx];

	if (ld->frames_open) {
		int ret = chunk_read(&ld->frames, fidx, (uint32_t)(in * BS), (uint32_t)(n * BS), dst);
		if (!ret)   /* a remote diff's trace counts the frame's bytes as read */
			blob_note(ld->d->blob, f->offset, f->size);
		return ret;
	}
	uint64_t off = f->offset + in * BS;
	int ret = only_kept ? blob_read_cached(ld->d->blob, dst, n * BS, off)
			    : blob_read(ld->d->blob, dst, n * BS, off);
	if (ret && ret != -EAGAIN && ret != -ECANCELED)
		log_err("%s: frame %llu, bytes %llu..%llu: %s", ld->d->name, (unsigned long long)fidx,
			(unsigned long long)off, (unsigned long long)(off + n * BS), strerror(-ret));
	return ret;
}

/* Frame fidx into buf, checked: from the frame cache when its chunk there
 * matches the frame's CRC (what was stored is not trusted unread: a file
 * system's or another writer's damage shows), else from the diff, and then
 * stored there for every device's next reads of it. A frame read so is
 * marked checked: read_checked serves its blocks from then on. */
static int load_frame(struct layer_diff *ld, uint64_t fidx, uint8_t *buf, uint8_t *scratch)
{
	const struct diff_frame *f = &ld->d->frames[fidx];
	uint32_t len = diff_frame_len(ld->d, fidx);

	if (ld->frames_open && !chunk_read(&ld->frames, fidx, 0, len, buf)) {
		if (crc32c(0, buf, len) == f->crc) {
			blob_note(ld->d->blob, f->offset, f->size);
			mark_checked(ld, fidx);
			return 0;
		}
		if (!atomic_exchange(&ld->said_damaged, true))
			log_err("%s: frame %llu as kept in the chunk cache (%s) does not match its "
				"checksum: it is decompressed and stored again (said once)", ld->d->name,
				(unsigned long long)fidx, ld->frames.dir);
	}
	int ret = diff_read_frame(ld->d, fidx, buf, scratch);
	if (!ret && ld->checked &&
	    (!ld->frames_open ? !(ld->d->meta.flags & DIFF_FLAG_ZSTD)
			      : !chunk_store(&ld->frames, fidx, buf, len)))
		mark_checked(ld, fidx);
	return ret;
}

/* Copy n blocks from block `in` of frame fidx into dst: from its slot, or
 * a slot it is loaded into under the lock, or with own (a fetch thread)
 * into own's buffers without it, then swapped into a slot; without own
 * and with only_kept, -EAGAIN instead (a queue thread with fetch
 * threads). */
static int copy_from_frame(struct layer_diff *ld, uint64_t fidx, uint64_t in, uint64_t n,
			   char *dst, struct frame_buf *own, bool only_kept)
{
	int ret = 0;

	pthread_mutex_lock(&ld->lock);
	struct frame_slot *s = kept(ld, fidx);
	if (!s && only_kept) {
		ret = -EAGAIN;
	} else if (!s && own) {
		pthread_mutex_unlock(&ld->lock);
		ret = load_frame(ld, fidx, own->frame, own->scratch);
		pthread_mutex_lock(&ld->lock);
		if (!ret && !(s = kept(ld, fidx))) {   /* another thread may have read it meanwhile */
			s = victim(ld);
			uint8_t *t = s->buf;
			s->buf = own->frame;
			own->frame = t;
			s->idx = fidx;
			s->used = ++ld->tick;
		}
	} else if (!s) {
		s = victim(ld);
		s->used = 0;
		if (!(ret = load_frame(ld, fidx, s->buf, ld->scratch))) {
			s->idx = fidx;
			s->used = ++ld->tick;
		}
	}
	if (!ret)
		memcpy(dst, s->buf + in * BS, n * BS);
	pthread_mutex_unlock(&ld->lock);
	return ret;
}

/* Copy count blocks from data stream block `index` into dst, frame by
 * frame: read_checked for a frame checked once, else copy_from_frame (a
 * frame the frame cache lost since is loaded again); a v3 diff's packed
 * blocks are read where they are, -EAGAIN with only_kept for those not in
 * the chunk cache. */
static int copy_data(struct layer_diff *ld, uint64_t index, uint64_t count, char *dst,
		     struct frame_buf *own, bool only_kept)
{
	uint64_t per = ld->d->meta.frame_size / BS;
	int ret = 0;

	/* packed blocks, no frames: read in place, on the queue thread from
	 * the chunk cache (a hit must not wait behind the fetch threads) */
	if (ld->d->v3) {
		if (only_kept)
			return blob_read_cached(ld->d->data, dst, count * BS, index * BS);
		ret = blob_read(ld->d->data, dst, count * BS, index * BS);
		if (ret && ret != -ECANCELED)
			log_err("%s: its data, bytes %llu..%llu: %s", ld->d->name,
				(unsigned long long)(index * BS), (unsigned long long)((index + count) * BS),
				strerror(-ret));
		return ret;
	}
	/* The loader's checks make this hold; an index past the data stream
	 * would read another frame's stale bytes from a slot. */
	if (index > ld->d->meta.data_blocks || count > ld->d->meta.data_blocks - index)
		return -EIO;
	while (count && !ret) {
		uint64_t fidx = index / per, in = index % per, n = per - in;
		if (n > count)
			n = count;
		bool checked = frame_checked(ld, fidx);
		ret = checked ? read_checked(ld, fidx, in, n, dst, only_kept) : 0;
		if (!checked || (ret && ld->frames_open))
			ret = copy_from_frame(ld, fidx, in, n, dst, own, only_kept);
		dst += n * BS;
		index += n;
		count -= n;
	}
	return ret;
}

static void read_step(struct diff_io *p);

/* What block reads as, for how many blocks (*run, at most left): the
 * diff's kind (and *index, for data), its absent blocks past the layer
 * below being zeros. */
static enum diff_kind lookup_run(const struct layer_diff *ld, uint64_t block, uint64_t left,
				 uint64_t *run, uint64_t *index)
{
	*index = 0;
	enum diff_kind kind = diff_lookup(ld->d, block, run, index);
	if (*run > left)
		*run = left;
	if (kind == DIFF_ABSENT && block >= ld->lower_blocks)
		return DIFF_ZERO;
	if (kind == DIFF_ABSENT && block + *run > ld->lower_blocks)
		*run = ld->lower_blocks - block;
	return kind;
}

/* Where data stream block index lies in a local raw diff's file, when its
 * frame was checked: *at, and *run cut to the frame's end. */
static bool in_file(const struct layer_diff *ld, uint64_t index, uint64_t *run, uint64_t *at)
{
	uint64_t per = ld->d->meta.frame_size / BS, fidx = index / per, left = per - index % per;

	if (!ld->data_file || index >= ld->d->meta.data_blocks || !frame_checked(ld, fidx))
		return false;
	if (*run > left)
		*run = left;
	*at = ld->d->frames[fidx].offset + index % per * BS;
	return true;
}

static void fetched(struct aio_req *req, int res)
{
	struct layer_io *io = container_of(req, struct layer_io, areq);
	struct diff_io *p = io->priv;
	if (res < 0)
		io->done(io, res);
	else
		read_step(p);
}

static void *fetcher_init(void *ctx)
{
	(void)ctx;
	return calloc(1, sizeof(struct frame_buf));
}

static void fetcher_exit(void *ctx, void *mine)
{
	struct frame_buf *own = mine;
	(void)ctx;
	if (own) {
		free(own->frame);
		free(own->scratch);
		free(own);
	}
}

/* A frame loaded under the lock would stall the queues: a thread without
 * buffers of its own (out of memory; taken at its first frame and again
 * after they could not be) fails the read, and only a v3 diff's blocks,
 * which have no frames, are read without them. */
static int fetcher_run(void *ctx, void *mine, struct fetch_job *job)
{
	struct diff_io *p = container_of(job, struct diff_io, job);
	struct layer_diff *ld = ctx;
	struct frame_buf *own = mine;
	size_t frame = ld->d->meta.frame_size;

	if (ld->d->v3)
		return copy_data(ld, p->index, p->count, p->buf, NULL, false);
	if (own && !own->frame && (!(own->frame = malloc(frame)) ||
				   !(own->scratch = malloc(ZSTD_compressBound(frame))))) {
		free(own->frame);
		own->frame = NULL;
	}
	if (own && own->frame)
		return copy_data(ld, p->index, p->count, p->buf, own, false);
	if (!atomic_exchange(&ld->said_no_memory, true))
		log_err("%s: out of memory for a fetch thread's frame buffers: reads of frames not "
			"kept fail until it has them (said once)", ld->d->name);
	return -ENOMEM;
}

static const struct fetch_pool_ops fetcher_ops = {
	.thread_init = fetcher_init,
	.thread_exit = fetcher_exit,
	.run = fetcher_run,
};

/* Hand the copy to a fetch thread; read_step resumes when it is posted. */
static void queue_fetch(struct diff_io *p, uint64_t index, uint64_t count, char *buf)
{
	p->index = index;
	p->count = count;
	p->buf = buf;
	p->job.io = p->parent;
	fetch_pool_queue(p->ld->fetch, &p->job, fetched);
}

static void child_done(struct layer_io *child, int res)
{
	struct diff_io *p = container_of(child, struct diff_io, child);
	if (res < 0) {
		p->parent->done(p->parent, res);
		return;
	}
	read_step(p);
}

static void read_step(struct diff_io *p)
{
	struct layer_io *io = p->parent;
	struct layer_diff *ld = p->ld;

	while (p->cursor < io->len) {
		uint64_t run, index, at, off = io->off + p->cursor;
		enum diff_kind kind = lookup_run(ld, off / BS, (io->len - p->cursor) / BS, &run, &index);
		char *buf = (char *)io->buf + p->cursor;
		bool from_file = kind == DIFF_DATA && in_file(ld, index, &run, &at);
		p->cursor += (uint32_t)(run * BS);
		if (kind == DIFF_ZERO) {
			memset(buf, 0, run * BS);
		} else if (kind == DIFF_DATA && !from_file) {
			int ret = copy_data(ld, index, run, buf, NULL, ld->fetch != NULL);
			if (ret == -EAGAIN) {
				queue_fetch(p, index, run, buf);
				return;
			}
			if (ret) {
				io->done(io, ret);
				return;
			}
		} else {   /* the layer below's blocks, or a checked frame's in the diff's file */
			layer_child_init(&ld->l, io, &p->child, LAYER_READ, from_file ? at : off,
					 (uint32_t)(run * BS), buf, child_done);
			layer_submit(from_file ? ld->data_file : ld->l.lower, &p->child);
			return;
		}
	}
	io->done(io, (int)io->len);
}

static void diff_read(struct layer *l, struct layer_io *io)
{
	struct diff_io *p = io->priv;
	p->parent = io;
	p->ld = (struct layer_diff *)l;
	p->cursor = 0;
	read_step(p);
}

static void diff_flush(struct layer *l, struct layer_io *io)
{
	(void)l;
	io->done(io, 0);   /* nothing of ours is ever dirty */
}

static enum layer_extent diff_extent(struct layer *l, uint64_t off, uint64_t *len)
{
	struct layer_diff *ld = (struct layer_diff *)l;
	uint64_t block = off / BS, run, index;
	enum diff_kind kind = diff_lookup(ld->d, block, &run, &index);

	if (kind == DIFF_ABSENT && block >= ld->lower_blocks)
		kind = DIFF_ZERO;   /* past the layer below: reads as zeros */
	else if (kind == DIFF_ABSENT && run > ld->lower_blocks - block)
		run = ld->lower_blocks - block;
	if (run <= UINT64_MAX / BS && run * BS - off % BS < *len)
		*len = run * BS - off % BS;
	if (kind == DIFF_ABSENT)
		return layer_extent(l->lower, off, len);
	return kind == DIFF_ZERO ? LAYER_ZEROS : LAYER_DATA;
}

/* Where a zstd diff's data stream block index lies in memory: in its frame
 * as kept in the chunk cache, when the frame was checked (*run cut to the
 * frame's end), pinned; 1, or 0 where it is not (read it). */
static int map_kept(struct layer_diff *ld, uint64_t index, uint64_t *run, struct layer_map *m)
{
	uint64_t per = ld->d->meta.frame_size / BS, fidx = index / per, in = index % per;

	if (!ld->frames_open || index >= ld->d->meta.data_blocks || !frame_checked(ld, fidx))
		return 0;
	if (*run > per - in)
		*run = per - in;
	if (!chunk_map_piece(&ld->frames, fidx, (uint32_t)(in * BS), (uint32_t)(*run * BS), &ld->l, m))
		return 0;
	blob_note(ld->d->blob, ld->d->frames[fidx].offset, ld->d->frames[fidx].size);
	return 1;
}

/* Where [off, off + len) lies in memory: the layer below's, zeros, a local
 * raw diff's checked frames in its file, and a zstd diff's checked frames
 * as kept in the chunk cache. 0 when some of it cannot be (a frame not
 * checked or not kept: the read path checks or decompresses it). */
static int diff_map(struct layer *l, uint64_t off, uint32_t len, struct layer_map *m)
{
	struct layer_diff *ld = (struct layer_diff *)l;
	int n = 0, got;

	for (uint32_t at = 0; at < len;) {
		uint64_t run, index, file_at;
		enum diff_kind kind = lookup_run(ld, (off + at) / BS, (len - at) / BS, &run, &index);
		if (kind == DIFF_ABSENT)
			got = layer_map(l->lower, off + at, (uint32_t)(run * BS), m);
		else if (kind == DIFF_ZERO)
			got = layer_map_zeros((uint32_t)(run * BS), m);
		else if (in_file(ld, index, &run, &file_at))
			got = layer_map(ld->data_file, file_at, (uint32_t)(run * BS), m);
		else
			got = map_kept(ld, index, &run, m);
		if (!got)
			return 0;
		n += got;
		at += (uint32_t)(run * BS);
	}
	return n;
}

static void layer_diff_close(struct layer *l)
{
	struct layer_diff *ld = (struct layer_diff *)l;

	fetch_pool_stop(ld->fetch);
	for (int i = 0; i < FRAME_SLOTS; i++)
		free(ld->slots[i].buf);
	free(ld->scratch);
	free(ld->checked);
	layer_close(ld->data_file);
	chunk_image_close(&ld->frames);
	diff_close(ld->d);
	pthread_mutex_destroy(&ld->lock);
	layer_close(l->lower);
	free(ld);
}

static void diff_cancel(struct layer *l)
{
	struct layer_diff *ld = (struct layer_diff *)l;
	blob_cancel(ld->d->blob);
	blob_cancel(ld->d->data);
}

static const struct layer_ops diff_ops = {
	.name = "diff",
	.read = diff_read,
	.write = diff_read,     /* never reached: the layer is read-only */
	.flush = diff_flush,
	.discard = diff_read,
	.close = layer_diff_close,
	.cancel = diff_cancel,
	.extent = diff_extent,
	.map = diff_map,
	.unpin = chunk_layer_unpin,
};

/* The chunk cache folder of the diff's decompressed frames, keyed by the
 * diff file's version and the diff's id: a diff written or replaced gets
 * another. Without one (no validator, a cache that cannot be opened) the
 * layer keeps its few frames alone, and says so once. */
static void open_frames(struct layer_diff *ld, const struct layer_http_opts *o)
{
	const struct diff_file *d = ld->d;
	uint64_t limit = o->cache_limit ? o->cache_limit : CHUNK_CACHE_DEFAULT_LIMIT;
	char version[160] = "", key[400], id[33], why[600] = "";
	int ret = blob_version(d->blob, version, sizeof(version));

	if (ret && ret != -ENOENT)
		snprintf(why, sizeof(why), "%s", strerror(-ret));
	/* as for a remote image's chunks: 16 at least, or they push out each other */
	if (!ret && limit / 16 < d->meta.frame_size) {
		snprintf(why, sizeof(why), "--chunk-cache-limit %llu holds fewer than 16 of its "
			 "%u-byte frames", (unsigned long long)limit, d->meta.frame_size);
		ret = -EINVAL;
	}
	diff_id_hex(d->meta.id, id);
	snprintf(key, sizeof(key), "diff-frames %s\nlayer-id %s\n", version, id);
	if (!ret && d->meta.data_blocks)
		ret = chunk_image_open_keyed(&ld->frames, o->cache_dir, key, d->meta.data_blocks * BS,
					     d->meta.frame_size, limit, why, sizeof(why));
	ld->frames_open = !ret && d->meta.data_blocks;
	if (ret && ret != -ENOENT)
		log_info("%s: its frames are decompressed at every read that needs one not kept "
			 "(no chunk cache for them: %s)", d->name, why);
}

int layer_diff_open(const char *path, const struct layer_http_opts *remote, struct layer *lower,
		    struct layer **out, char *why, size_t whylen)
{
	struct layer_diff *ld = calloc(1, sizeof(*ld));
	char want[33], have[33];
	struct diff_file *d;
	int ret;

	if (!ld)
		return -ENOMEM;
	ret = diff_open(path, remote, &d, why, whylen);
	if (ret) {
		free(ld);
		return ret;
	}
	static const uint8_t nil[16];
	/* A foreign v3 pair names its own base build, which a plain base image
	 * cannot confirm; over anything else the parent must match. */
	bool foreign_over_base = d->v3 && !memcmp(lower->id, nil, 16);
	char shown[1024];
	http_name_for_log(path, shown, sizeof(shown));   /* a URL may carry credentials */
	if (!foreign_over_base && memcmp(d->meta.parent, lower->id, 16)) {
		diff_id_hex(d->meta.parent, have);
		diff_id_hex(lower->id, want);
		snprintf(why, whylen, "%s: its parent is %s but the layer below is %s: "
			 "layers must be given base first, in the order they were exported",
			 shown, have, want);
		ret = -EINVAL;
	} else if (d->meta.dev_size < lower->size) {
		snprintf(why, whylen, "%s: device size %llu is smaller than the layer below (%llu)",
			 shown, (unsigned long long)d->meta.dev_size, (unsigned long long)lower->size);
		ret = -EINVAL;
	}
	size_t frame = d->meta.frame_size;
	ld->nslots = frame && SLOT_BYTES / frame < FRAME_SLOTS ? SLOT_BYTES / frame : FRAME_SLOTS;
	if (ld->nslots < 2)
		ld->nslots = 2;
	for (unsigned i = 0; !ret && i < ld->nslots; i++)
		if (!(ld->slots[i].buf = malloc(frame)))
			ret = -ENOMEM;
	if (!ret && !(ld->scratch = malloc(ZSTD_compressBound(frame))))
		ret = -ENOMEM;
	/* at most 2^24 frames: 2 MiB of bits */
	if (!ret && !d->v3 && !(ld->checked = calloc(d->n_frames / 8 + 1, 1)))
		ret = -ENOMEM;
	if (ret) {
		for (int i = 0; i < FRAME_SLOTS; i++)
			free(ld->slots[i].buf);
		free(ld->scratch);
		free(ld->checked);
		diff_close(d);
		free(ld);
		return ret;
	}
	ld->d = d;
	pthread_mutex_init(&ld->lock, NULL);
	bool zstd = !d->v3 && (d->meta.flags & DIFF_FLAG_ZSTD);
	if (zstd && remote && remote->keep_frames)
		open_frames(ld, remote);
	/* without it, checked frames are read with pread on the queue thread */
	int fd = !d->v3 && !zstd && blob_fd(d->blob) >= 0 ? fcntl(blob_fd(d->blob), F_DUPFD_CLOEXEC, 0) : -1;
	/* its children use the private area of the layers below: it has none */
	if (fd >= 0 && (layer_file_adopt(fd, blob_size(d->blob), true, &ld->data_file) ||
			ld->data_file->priv_size)) {
		layer_close(ld->data_file);
		ld->data_file = NULL;
	}
	/* Fetch threads read a remote diff's frames and decompress a zstd
	 * diff's, so neither stalls a queue; without them, in line. */
	if ((http_is_url(path) || zstd) &&
	    fetch_pool_start(&ld->fetch, FETCH_POOL_THREADS, &fetcher_ops, ld, blob_budget_ms(d->blob)))
		ld->fetch = NULL;
	ld->l.ops = &diff_ops;
	ld->l.lower = lower;
	ld->l.size = d->meta.dev_size;
	ld->l.read_only = true;
	ld->l.priv_size = sizeof(struct diff_io);
	memcpy(ld->l.id, d->meta.id, 16);
	ld->l.generation = d->meta.generation;
	ld->lower_blocks = lower->size / BS;
	/* A stack that maps has the kernel copy reads from there, and pays a
	 * syscall more for each read it cannot map (docs/kernels.md): a zstd
	 * diff's kept frames map only where the server can hold them all
	 * open, as a reader of more would map and unmap one at every read
	 * (chunk_map; 0.15-0.2 of loop at 4 KiB depth 32 over twice as many
	 * frames, where reading them made 0.57). */
	bool kept_held = ld->frames_open && ld->frames.open && d->n_frames <= CHUNK_OPEN_FILES;
	ld->l.maps = lower->maps && ((ld->data_file && ld->data_file->maps) || kept_held);
	*out = &ld->l;
	return 0;
}
