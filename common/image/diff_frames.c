/* Each frame has a slot: the writer queues frame k in slot k % n_slots,
 * workers fill queued slots in any order, and the writer takes them back
 * in frame order, filling the one it waits for itself if no worker has. A
 * frame's blocks are located (extent and offset in it) when it is queued,
 * so workers need nothing but the slot.
 *
 * Where the source is mapped, a raw frame is its runs of blocks in place:
 * checksummed there and written from there, the one copy `cp` makes too. A
 * compressed frame is compressed in place when it is one run. (Workers
 * writing raw frames at their places themselves gained nothing: writes to
 * one file take its inode lock in turn.)
 *
 * A frame that a sample says will not compress (packed archives, media,
 * encrypted files) is not put through the compressor, which would copy it
 * twice only to store it as it is: it becomes a zstd frame of raw blocks
 * written from where it lies, as btrfs and ZFS skip such data too. */
#include "image/diff_frames.h"
#include "util/crc32c.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>
#include <zstd.h>

#define BS 4096u
#define MAX_SLOTS 4
#define WORKERS 2
#define SLOTS_BYTES (64u << 20)   /* buffers of all slots together, at most */
#define RELEASE_BYTES (64u << 20)
#define ZSTD_BLOCK_MAX (128u << 10)       /* the largest block of a zstd frame */
#define ZSTD_RAW_HDR 9u                   /* magic, descriptor, 4-byte content size */
#define SAMPLE_WINDOWS 16
#define SAMPLE_WINDOW 256

enum slot_state { SLOT_FREE, SLOT_QUEUED, SLOT_BUSY, SLOT_DONE };

struct slot {
	enum slot_state state;
	size_t ei;              /* the frame's first block: extent ei, in_ext blocks into it */
	uint32_t in_ext, blocks;
	uint8_t *buf, *packed;
	struct iovec *runs;     /* the frame: buf, or its runs in the source's mapping */
	size_t nruns, stored;
	bool in_place;          /* runs point into the mapping */
	struct iovec *zout;     /* the zstd frame: packed, or raw blocks of the frame */
	size_t nzout;
	uint8_t *zhdr;          /* headers of a frame of raw blocks */
	uint32_t crc;
	int ret;
	uint64_t bad_block;
};

struct diff_frames {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	const struct diff_extent *ext;
	struct diff_source src;
	uint32_t frame_size;
	size_t bound;           /* of a compressed frame; 0 without zstd */
	int level;
	uint64_t data_blocks, queued_blocks;
	size_t ei;              /* where the next frame to queue starts */
	uint32_t in_ext;
	unsigned n_slots, next_out;
	struct slot slots[MAX_SLOTS];
	struct slot *handed;    /* the frame the writer holds */
	uint8_t *release_from;  /* where in the mapping the next drop starts (runs_to_release) */
	ZSTD_CCtx *own_zc;      /* for frames the writer fills itself */
	pthread_t threads[WORKERS];
	int n_threads;
	bool stop;
};

/* The next DIFF_DATA extent with blocks left, from (*ei, *in_ext). */
static void skip_used(const struct diff_extent *ext, size_t *ei, uint32_t *in_ext)
{
	while (ext[*ei].kind != DIFF_DATA || *in_ext == ext[*ei].count) {
		(*ei)++;
		*in_ext = 0;
	}
}

/* The next run of at most left blocks from (*ei, *in_ext), which it then
 * passes: its length, and its first block in *start (unless NULL). */
static uint32_t next_run(const struct diff_extent *ext, size_t *ei, uint32_t *in_ext,
			 uint32_t left, uint64_t *start)
{
	skip_used(ext, ei, in_ext);
	uint32_t take = ext[*ei].count - *in_ext;
	if (take > left)
		take = left;
	if (start)
		*start = ext[*ei].start + *in_ext;
	*in_ext += take;
	return take;
}

/* Queue the next frame in s, or leave it free when none is left. Locked. */
static void queue_next(struct diff_frames *p, struct slot *s)
{
	uint64_t left = p->data_blocks - p->queued_blocks;
	uint32_t blocks = p->frame_size / BS;

	if (!left) {
		s->state = SLOT_FREE;
		return;
	}
	if (blocks > left)
		blocks = (uint32_t)left;
	skip_used(p->ext, &p->ei, &p->in_ext);
	s->ei = p->ei;
	s->in_ext = p->in_ext;
	s->blocks = blocks;
	for (uint32_t n = blocks; n;)
		n -= next_run(p->ext, &p->ei, &p->in_ext, n, NULL);
	p->queued_blocks += blocks;
	s->state = SLOT_QUEUED;
}

/* The frame's runs as iovecs into the source's mapping, checksummed; false
 * to read it instead: no view, a view refused, or a compressed frame of
 * several runs (zstd takes one buffer). */
static bool view_runs(struct diff_frames *p, struct slot *s)
{
	size_t ei = s->ei;
	uint32_t in_ext = s->in_ext, take, crc = 0;

	if (!p->src.view)
		return false;
	s->nruns = 0;
	for (uint32_t got = 0; got < s->blocks; got += take) {
		uint64_t start;
		const void *data;
		take = next_run(p->ext, &ei, &in_ext, s->blocks - got, &start);
		if ((p->bound && take != s->blocks) || p->src.view(p->src.ctx, start, take, &data))
			return false;
		s->runs[s->nruns++] = (struct iovec){ (void *)data, (size_t)take * BS };
		crc = crc32c(crc, data, (size_t)take * BS);
	}
	s->crc = crc;
	return true;
}

static int read_runs(struct diff_frames *p, struct slot *s)
{
	size_t ei = s->ei;
	uint32_t in_ext = s->in_ext, take;

	for (uint32_t got = 0; got < s->blocks; got += take) {
		uint64_t start;
		take = next_run(p->ext, &ei, &in_ext, s->blocks - got, &start);
		int ret = p->src.read(p->src.ctx, start, take, s->buf + (size_t)got * BS);
		if (ret) {
			s->bad_block = start;
			return ret;
		}
	}
	s->runs[0] = (struct iovec){ s->buf, (size_t)s->blocks * BS };
	s->nruns = 1;
	s->crc = crc32c(0, s->buf, (size_t)s->blocks * BS);
	return 0;
}

/* Whether the frame would not compress, judged on SAMPLE_WINDOWS windows
 * spread over it, compressed together at level 1 (1/256 of a 1 MiB frame).
 * Windows start at whole blocks plus 0, 1, 2 or 3 KiB, so a block repeated
 * through the frame gives repeated windows, whatever else it holds. */
static bool looks_incompressible(ZSTD_CCtx *zc, const uint8_t *data, size_t len)
{
	uint8_t sample[SAMPLE_WINDOWS * SAMPLE_WINDOW];
	uint8_t out[ZSTD_COMPRESSBOUND(sizeof(sample))];
	size_t step, skew = 1024;

	if (len < sizeof(sample))
		return false;
	if (len >= SAMPLE_WINDOWS * BS) {
		step = (len - BS) / (SAMPLE_WINDOWS - 1) / BS * BS;
	} else {
		step = (len - SAMPLE_WINDOW) / (SAMPLE_WINDOWS - 1);
		skew = 0;
	}
	for (size_t i = 0; i < SAMPLE_WINDOWS; i++)
		memcpy(sample + i * SAMPLE_WINDOW, data + i * step + i % 4 * skew, SAMPLE_WINDOW);
	size_t n = ZSTD_compressCCtx(zc, out, sizeof(out), sample, sizeof(sample), 1);
	return !ZSTD_isError(n) && n > sizeof(sample) - sizeof(sample) / 32;
}

/* s's frame as a zstd frame of raw blocks (RFC 8878): a single-segment
 * frame header with the content size, then per block of up to 128 KiB a
 * 3-byte header (last flag, type 0 raw, size) and the block itself. */
static void raw_zstd_frame(struct slot *s, const uint8_t *data, size_t len)
{
	uint8_t *h = s->zhdr;

	h[0] = 0x28, h[1] = 0xb5, h[2] = 0x2f, h[3] = 0xfd;      /* 0xFD2FB528, little-endian */
	h[4] = 0xa0;                    /* 4-byte content size, single segment */
	for (int i = 0; i < 4; i++)
		h[5 + i] = (uint8_t)(len >> (8 * i));
	s->zout[0] = (struct iovec){ h, ZSTD_RAW_HDR };
	s->nzout = 1;
	s->stored = ZSTD_RAW_HDR;
	h += ZSTD_RAW_HDR;
	for (size_t off = 0; off < len; off += ZSTD_BLOCK_MAX, h += 3) {
		size_t take = len - off < ZSTD_BLOCK_MAX ? len - off : ZSTD_BLOCK_MAX;
		uint32_t bh = (uint32_t)take << 3 | (off + take == len);
		h[0] = (uint8_t)bh, h[1] = (uint8_t)(bh >> 8), h[2] = (uint8_t)(bh >> 16);
		s->zout[s->nzout++] = (struct iovec){ h, 3 };
		s->zout[s->nzout++] = (struct iovec){ (void *)(data + off), take };
		s->stored += 3 + take;
	}
}

static void fill(struct diff_frames *p, struct slot *s, ZSTD_CCtx *zc)
{
	s->stored = (size_t)s->blocks * BS;
	s->in_place = view_runs(p, s);
	if (!s->in_place && (s->ret = read_runs(p, s)))
		return;
	s->ret = 0;
	if (!p->bound)
		return;
	const uint8_t *data = s->runs[0].iov_base;
	if (looks_incompressible(zc, data, s->runs[0].iov_len)) {
		raw_zstd_frame(s, data, s->runs[0].iov_len);
		return;
	}
	s->stored = ZSTD_compressCCtx(zc, s->packed, p->bound, data, s->runs[0].iov_len, p->level);
	if (ZSTD_isError(s->stored)) {
		s->ret = -EBADMSG;   /* told apart from a read's -EIO */
		s->bad_block = p->ext[s->ei].start + s->in_ext;
		return;
	}
	s->zout[0] = (struct iovec){ s->packed, s->stored };
	s->nzout = 1;
}

/* The writer is done with s. Every RELEASE_BYTES of the mapping, the range
 * up to s's end whose page-table entries to drop, so an export's resident
 * size stays bounded (the pages stay in the page cache); else len 0. Not
 * per frame: each drop interrupts every CPU the process runs on to flush
 * its TLB. Frames map ascending addresses, as extents are in block order.
 * Locked; the caller drops them unlocked. */
static size_t runs_to_release(struct diff_frames *p, struct slot *s, uint8_t **from)
{
	uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE);

	if (!s->in_place || !s->nruns)
		return 0;
	s->in_place = false;
	uintptr_t end = ((uintptr_t)s->runs[s->nruns - 1].iov_base +
			 s->runs[s->nruns - 1].iov_len) / page * page;
	if (!p->release_from)
		p->release_from = (uint8_t *)((uintptr_t)s->runs[0].iov_base / page * page);
	if (end <= (uintptr_t)p->release_from || end - (uintptr_t)p->release_from < RELEASE_BYTES)
		return 0;
	*from = p->release_from;
	p->release_from = (uint8_t *)end;
	return end - (uintptr_t)*from;
}

static struct slot *queued_slot(struct diff_frames *p)
{
	for (unsigned i = 0; i < p->n_slots; i++)
		if (p->slots[i].state == SLOT_QUEUED)
			return &p->slots[i];
	return NULL;
}

static void *worker_main(void *arg)
{
	struct diff_frames *p = arg;
	ZSTD_CCtx *zc = p->bound ? ZSTD_createCCtx() : NULL;
	struct slot *s;

	pthread_mutex_lock(&p->lock);
	while (!p->stop && (zc || !p->bound)) {   /* without a context: the writer does it all */
		if (!(s = queued_slot(p))) {
			pthread_cond_wait(&p->cond, &p->lock);
			continue;
		}
		s->state = SLOT_BUSY;
		pthread_mutex_unlock(&p->lock);
		fill(p, s, zc);
		pthread_mutex_lock(&p->lock);
		s->state = SLOT_DONE;
		pthread_cond_broadcast(&p->cond);
	}
	pthread_mutex_unlock(&p->lock);
	ZSTD_freeCCtx(zc);
	return NULL;
}

int diff_frames_start(struct diff_frames **out, const struct diff_extent *ext,
		      uint64_t data_blocks, uint32_t frame_size, int zstd_level,
		      const struct diff_source *src)
{
	bool zstd = zstd_level > 0;
	struct diff_frames *p = calloc(1, sizeof(*p));

	if (!p)
		return -ENOMEM;
	*p = (struct diff_frames){ .ext = ext, .src = *src,
				   .frame_size = frame_size, .data_blocks = data_blocks,
				   .bound = zstd ? ZSTD_compressBound(frame_size) : 0, .level = zstd_level };
	pthread_mutex_init(&p->lock, NULL);
	pthread_cond_init(&p->cond, NULL);
	p->n_slots = SLOTS_BYTES / (frame_size + p->bound);
	p->n_slots = p->n_slots < 2 ? 2 : p->n_slots > MAX_SLOTS ? MAX_SLOTS : p->n_slots;
	for (unsigned i = 0; i < p->n_slots; i++) {
		struct slot *s = &p->slots[i];
		size_t zblocks = (frame_size + ZSTD_BLOCK_MAX - 1) / ZSTD_BLOCK_MAX;
		if (!(s->buf = malloc(frame_size)) || !(s->runs = calloc(frame_size / BS, sizeof(*s->runs))) ||
		    (zstd && (!(s->packed = malloc(p->bound)) ||
			      !(s->zout = calloc(1 + 2 * zblocks, sizeof(*s->zout))) ||
			      !(s->zhdr = malloc(ZSTD_RAW_HDR + 3 * zblocks)))))
			goto nomem;
		queue_next(p, s);
	}
	if (zstd && !(p->own_zc = ZSTD_createCCtx()))
		goto nomem;
	/* without threads the writer fills every frame itself (diff_frames_next) */
	while (p->n_threads < WORKERS &&
	       !pthread_create(&p->threads[p->n_threads], NULL, worker_main, p))
		p->n_threads++;
	*out = p;
	return 0;
nomem:
	diff_frames_stop(p);
	return -ENOMEM;
}

int diff_frames_next(struct diff_frames *p, struct diff_frame_out *f, uint64_t *bad_block)
{
	struct slot *s = &p->slots[p->next_out % p->n_slots];
	uint8_t *release = NULL;
	size_t release_len = 0;

	pthread_mutex_lock(&p->lock);
	if (p->handed) {   /* the writer is done with it: the slot takes the next frame */
		release_len = runs_to_release(p, p->handed, &release);
		queue_next(p, p->handed);
		p->handed = NULL;
		pthread_cond_broadcast(&p->cond);
	}
	while (s->state != SLOT_DONE && s->state != SLOT_FREE) {
		if (s->state == SLOT_QUEUED) {   /* no worker has taken it: fill it here */
			s->state = SLOT_BUSY;
			pthread_mutex_unlock(&p->lock);
			fill(p, s, p->own_zc);
			pthread_mutex_lock(&p->lock);
			s->state = SLOT_DONE;
		} else {
			pthread_cond_wait(&p->cond, &p->lock);
		}
	}
	pthread_mutex_unlock(&p->lock);
	if (release_len)
		madvise(release, release_len, MADV_DONTNEED);
	if (s->state == SLOT_FREE)
		return -ENODATA;
	if (s->ret) {
		*bad_block = s->bad_block;
		return s->ret;
	}
	*f = (struct diff_frame_out){ .iov = p->bound ? s->zout : s->runs,
				      .iovcnt = p->bound ? s->nzout : s->nruns,
				      .stored = s->stored,
				      .crc = s->crc, .blocks = s->blocks };
	p->handed = s;
	p->next_out++;
	return 0;
}

void diff_frames_stop(struct diff_frames *p)
{
	if (!p)
		return;
	pthread_mutex_lock(&p->lock);
	p->stop = true;
	pthread_cond_broadcast(&p->cond);
	pthread_mutex_unlock(&p->lock);
	for (int i = 0; i < p->n_threads; i++)
		pthread_join(p->threads[i], NULL);
	for (unsigned i = 0; i < p->n_slots; i++) {
		free(p->slots[i].buf);
		free(p->slots[i].packed);
		free(p->slots[i].runs);
		free(p->slots[i].zout);
		free(p->slots[i].zhdr);
	}
	ZSTD_freeCCtx(p->own_zc);
	pthread_mutex_destroy(&p->lock);
	pthread_cond_destroy(&p->cond);
	free(p);
}
