/* The data file of an E2B build (docs/e2b.md, Writing a build). Frames are
 * read and hashed in order on the caller's thread while a packer thread
 * compresses and writes the one before: SHA-256 of the whole data and
 * compressing it each take about as long. */
#include "image/e2b_write.h"
#include "image/e2b_write_impl.h"
#include "util/fileio.h"
#include "util/sha256.h"
#include "util/ublk_limits.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zstd.h>

#define WHY(...) snprintf(why, whylen, __VA_ARGS__)
#define BLOCK 4096u

typedef unsigned long long ull;

struct framer {
	int fd;
	const struct e2b_data_opts *o;
	struct e2b_build *self;
	ZSTD_CCtx *zc;
	struct buf c;           /* compressed frame */
	uint64_t pos_u, pos_c;
};

static int flush_frame(struct framer *w, const uint8_t *data, size_t len, char *why,
		       size_t whylen)
{
	struct e2b_frame *f;
	int ret;

	if (!len)
		return 0;
	if (w->o->codec == E2B_CODEC_NONE) {
		if ((ret = write_full(w->fd, data, len)))
			return WHY("writing the data: %s", strerror(-ret)), ret;
		w->pos_u += len;
		w->pos_c += len;
		return 0;
	}
	w->c.len = 0;
	if (w->o->codec == E2B_CODEC_ZSTD) {
		size_t bound = ZSTD_compressBound(len), got;
		if (w->c.cap < bound) {
			uint8_t *p = realloc(w->c.p, bound);
			if (!p)
				return WHY("out of memory"), -ENOMEM;
			w->c.p = p;
			w->c.cap = bound;
		}
		got = ZSTD_compress2(w->zc, w->c.p, w->c.cap, data, len);
		if (ZSTD_isError(got))
			return WHY("zstd: %s", ZSTD_getErrorName(got)), -EIO;
		w->c.len = got;
	} else if ((ret = e2b_lz4_frame(data, len, false, &w->c))) {
		return WHY(ret == -ENOMEM ? "out of memory" : "LZ4 compression failed"), ret;
	}
	if (w->c.len > INT32_MAX)
		return WHY("a compressed frame of %zu bytes does not fit E2B's frame table",
			   w->c.len), -EFBIG;
	if ((ret = write_full(w->fd, w->c.p, w->c.len)))
		return WHY("writing the data: %s", strerror(-ret)), ret;
	f = &w->self->frames[w->self->n_frames++];
	*f = (struct e2b_frame){ w->pos_u, w->pos_c, (uint32_t)len, (uint32_t)w->c.len };
	w->pos_u += len;
	w->pos_c += w->c.len;
	return 0;
}

/* The frame handed over is packed on the packer's thread, or at once on
 * the caller's when no thread could be started. */
struct packer {
	struct framer w;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	const uint8_t *data;    /* the frame handed over; NULL once packed */
	size_t len;
	bool stop, threaded;
	pthread_t thread;
	int ret;                /* the first failure, why in why */
	char why[512];
};

static void *packer_main(void *arg)
{
	struct packer *k = arg;

	pthread_mutex_lock(&k->lock);
	for (;;) {
		while (!k->data && !k->stop)
			pthread_cond_wait(&k->cond, &k->lock);
		if (!k->data)
			break;
		pthread_mutex_unlock(&k->lock);
		/* after a failure nothing more is handed over */
		int ret = flush_frame(&k->w, k->data, k->len, k->why, sizeof(k->why));
		pthread_mutex_lock(&k->lock);
		if (ret)
			k->ret = ret;
		k->data = NULL;
		pthread_cond_broadcast(&k->cond);
	}
	pthread_mutex_unlock(&k->lock);
	return NULL;
}

/* Once the frame handed over is packed: 0 or the packer's failure. */
static int packer_idle(struct packer *k)
{
	pthread_mutex_lock(&k->lock);
	while (k->data)
		pthread_cond_wait(&k->cond, &k->lock);
	int ret = k->ret;
	pthread_mutex_unlock(&k->lock);
	return ret;
}

static int packer_hand(struct packer *k, const uint8_t *data, size_t len)
{
	int ret;

	if (!len)
		return 0;
	if (!k->threaded)
		return (k->ret = flush_frame(&k->w, data, len, k->why, sizeof(k->why)));
	if ((ret = packer_idle(k)))
		return ret;
	pthread_mutex_lock(&k->lock);
	k->data = data;
	k->len = len;
	pthread_cond_broadcast(&k->cond);
	pthread_mutex_unlock(&k->lock);
	return 0;
}

/* Stop the thread once it packed the last frame: 0 or the packer's failure. */
static int packer_finish(struct packer *k)
{
	if (k->threaded) {
		pthread_mutex_lock(&k->lock);
		k->stop = true;
		pthread_cond_broadcast(&k->cond);
		pthread_mutex_unlock(&k->lock);
		pthread_join(k->thread, NULL);
		k->threaded = false;
	}
	return k->ret;
}

int e2b_write_data(int fd, const struct diff_extent *ext, size_t n, const struct diff_source *src,
		   const struct e2b_data_opts *o, struct e2b_build *self, uint64_t *file_bytes,
		   char *why, size_t whylen)
{
	struct packer k = { .w = { .fd = fd, .o = o, .self = self } };
	uint64_t blocks = 0, done = 0, frames = 0;
	size_t cap, fill = 0;
	uint8_t *data[2] = { NULL, NULL };
	unsigned cur = 0;       /* the buffer being filled; the packer may hold the other */
	struct sha256 sha;
	int ret = -EINVAL;

	self->n_frames = 0;
	self->frames = NULL;
	self->codec = E2B_CODEC_NONE;
	*file_bytes = 0;
	if (!o->frame_size || o->frame_size % BLOCK || o->frame_size > UBLK_MAX_FRAME_SIZE)
		return WHY("frame size %u: expected a multiple of 4096 up to %u", o->frame_size,
			   UBLK_MAX_FRAME_SIZE), -EINVAL;
	if (o->level < 0 || o->level > ZSTD_maxCLevel())
		return WHY("zstd level %d: expected 1 to %d", o->level, ZSTD_maxCLevel()), -EINVAL;
	for (size_t i = 0; i < n; i++)
		if (ext[i].kind == DIFF_DATA) {
			blocks += ext[i].count;
			if (blocks > UBLK_MAX_BLOCKS)
				return WHY("more data than a device holds"), -EINVAL;
		}
	frames = (blocks * BLOCK + o->frame_size - 1) / o->frame_size;
	if (o->codec != E2B_CODEC_NONE && blocks) {
		if (frames > E2B_MAX_FRAMES)
			return WHY("%llu frames of %u bytes, more than E2B's %u per build: give a "
				   "larger --frame-size", (ull)frames, o->frame_size, E2B_MAX_FRAMES),
			       -EINVAL;
		if (!(self->frames = malloc(frames * sizeof(*self->frames))))
			return WHY("out of memory"), -ENOMEM;
		self->codec = o->codec;
	}
	pthread_mutex_init(&k.lock, NULL);
	pthread_cond_init(&k.cond, NULL);
	if (o->codec == E2B_CODEC_ZSTD && blocks) {
		if (!(k.w.zc = ZSTD_createCCtx()) ||
		    ZSTD_isError(ZSTD_CCtx_setParameter(k.w.zc, ZSTD_c_compressionLevel,
							o->level ? o->level : ZSTD_CLEVEL_DEFAULT)) ||
		    ZSTD_isError(ZSTD_CCtx_setParameter(k.w.zc, ZSTD_c_checksumFlag, 1))) {
			ret = -ENOMEM;
			WHY("cannot set up zstd");
			goto out;
		}
	}
	/* a frame at a time; uncompressed in 1 MiB pieces */
	cap = o->codec == E2B_CODEC_NONE ? 1u << 20 : o->frame_size;
	if (!(data[0] = malloc(cap)) || !(data[1] = malloc(cap))) {
		ret = -ENOMEM;
		WHY("out of memory");
		goto out;
	}
	k.threaded = blocks && !pthread_create(&k.thread, NULL, packer_main, &k);
	sha256_init(&sha);
	for (size_t i = 0; i < n; i++) {
		if (ext[i].kind != DIFF_DATA)
			continue;
		for (uint32_t at = 0; at < ext[i].count;) {
			uint32_t cnt = (uint32_t)((cap - fill) / BLOCK);
			if (cnt > ext[i].count - at)
				cnt = ext[i].count - at;
			if ((ret = src->read(src->ctx, ext[i].start + at, cnt, data[cur] + fill))) {
				WHY("reading block %llu: %s", (ull)(ext[i].start + at), strerror(-ret));
				goto out;
			}
			sha256_update(&sha, data[cur] + fill, (size_t)cnt * BLOCK);
			fill += (size_t)cnt * BLOCK;
			at += cnt;
			done += cnt;
			if (fill == cap) {
				if ((ret = packer_hand(&k, data[cur], fill)))
					goto packer_failed;
				cur ^= 1;
				fill = 0;
			}
			if (src->progress)
				src->progress(src->ctx, done, blocks);
		}
	}
	if ((ret = packer_hand(&k, data[cur], fill)) || (ret = packer_finish(&k)))
		goto packer_failed;
	if (src->progress && !blocks)
		src->progress(src->ctx, 0, 0);
	sha256_final(&sha, self->sha256);
	self->size = blocks * BLOCK;
	*file_bytes = k.w.pos_c;
	goto out;
packer_failed:
	snprintf(why, whylen, "%s", k.why);
out:
	packer_finish(&k);
	if (ret) {
		free(self->frames);
		self->frames = NULL;
		self->n_frames = 0;
	}
	pthread_mutex_destroy(&k.lock);
	pthread_cond_destroy(&k.cond);
	ZSTD_freeCCtx(k.w.zc);
	free(k.w.c.p);
	free(data[0]);
	free(data[1]);
	return ret;
}

int e2b_data_name(const char *name, enum e2b_codec codec, char *buf, size_t len)
{
	int n = snprintf(buf, len, "%s%s", name, codec == E2B_CODEC_ZSTD ? ".zstd" :
				   codec == E2B_CODEC_LZ4 ? ".lz4" : "");
	return n < 0 || (size_t)n >= len ? -ENAMETOOLONG : 0;
}
