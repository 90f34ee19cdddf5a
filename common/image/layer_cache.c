/*
 * Copy-on-write cache over a read-only lower layer. The on-disk format and
 * its ordering rules are in docs/cache-format.md; in short:
 *
 *   data file  block i at offset i*4096, valid only where the map says dirty
 *   map file   header + 2 bits per block: clean (read below), dirty, zero
 *
 * All requests are whole 4 KiB blocks (the device's logical block size), so
 * there is never a read-modify-write. The in-memory map is shared by every
 * queue thread and updated with atomic byte operations; a block becomes
 * dirty only after its data write completed. FLUSH is handed to a flusher
 * thread, which snapshots the changed map pages, fdatasyncs the data file,
 * then writes and fdatasyncs the snapshot, and posts the completion back to
 * the requesting queue's ring (IORING_OP_MSG_RING): a flush never blocks a
 * queue thread, and concurrent flushes share one round of syncs.
 */
#include "image/layer_cache.h"
#include "image/cache_impl.h"
#include "image/layer_file.h"
#include "util/cfgline.h"
#include "util/fileio.h"
#include "util/log.h"
#include "util/sigbus.h"
#include "util/timeutil.h"
#include "util/ublk_limits.h"

#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

/* A run of blocks of one state within a read split into many runs. */
struct cache_run {
	struct aio_req areq;        /* a dirty run's read of the data file */
	struct cache_io *p;
	uint32_t at, len;           /* bytes into the parent request */
	uint8_t st;
};

#define SPLIT_RUNS 64   /* a read of more runs than this is served run by run */

struct cache_io {
	struct layer_io child;      /* request to the data file or the layer below */
	struct layer_io *parent;
	struct cache *cache;
	uint32_t cursor;            /* bytes of the parent request done */
	int err;
	struct layer_io *next_flush;
	uint32_t n_runs, pending;   /* a split read's runs, and its reads in flight */
	struct cache_run runs[SPLIT_RUNS];
};

/* What a read of block b returns: clean blocks past the base read zeros. */
static inline unsigned read_state(const struct cache *c, uint64_t b)
{
	unsigned st = get_state(c, b);
	return st == ST_CLEAN && b >= c->base_blocks ? ST_ZERO : st;
}

static void set_state(struct cache *c, uint64_t b, unsigned st)
{
	uint8_t *p = &c->map[b >> 2];
	unsigned shift = (b & 3) * 2;
	uint8_t old = __atomic_load_n(p, __ATOMIC_RELAXED), new;
	uint64_t page = (b >> 2) / MAP_PAGE;

	do {
		new = (uint8_t)((old & ~(3u << shift)) | (st << shift));
	} while (!__atomic_compare_exchange_n(p, &old, new, true, __ATOMIC_ACQ_REL, __ATOMIC_RELAXED));
	__atomic_fetch_or(&c->changed[page / 64], 1ull << (page % 64), __ATOMIC_SEQ_CST);
}

static bool block_is_zero(const void *buf)
{
	const uint64_t *w = buf;
	for (unsigned i = 0; i < BS / 8; i++)
		if (w[i])
			return false;
	return true;
}

static struct cache_io *start(struct cache *c, struct layer_io *io)
{
	struct cache_io *p = io->priv;
	p->parent = io;
	p->cache = c;
	p->cursor = 0;
	p->err = 0;
	return p;
}

static void send_child(struct cache_io *p, struct layer *target, enum layer_op op, uint64_t off,
		       uint32_t len, void *buf, layer_done_fn done)
{
	layer_child_init(&p->cache->l, p->parent, &p->child, op, off, len, buf, done);
	layer_submit(target, &p->child);
}

/* ---- read: serve runs of blocks in the same state, one after another ---- */

static void read_step(struct cache_io *p);

static void read_child_done(struct layer_io *child, int res)
{
	struct cache_io *p = container_of(child, struct cache_io, child);
	if (res < 0)
		p->err = res;
	read_step(p);
}

/* Bytes of the run of blocks in one state (*st) at byte `at` of the len
 * bytes at off. */
static uint32_t run_at(const struct cache *c, uint64_t off, uint32_t len, uint32_t at, unsigned *st)
{
	uint64_t b = (off + at) / BS;
	uint32_t n = 1;

	*st = read_state(c, b);
	while (at + (n + 1) * BS <= len && read_state(c, b + n) == *st)
		n++;
	return n * BS;
}

static void read_step(struct cache_io *p)
{
	struct cache *c = p->cache;
	struct layer_io *io = p->parent;

	while (p->cursor < io->len && !p->err) {
		unsigned st;
		uint32_t n = run_at(c, io->off, io->len, p->cursor, &st) / BS;
		char *buf = (char *)io->buf + p->cursor;
		uint64_t off = io->off + p->cursor;
		p->cursor += n * BS;
		if (st == ST_ZERO) {
			memset(buf, 0, (size_t)n * BS);
			continue;
		}
		send_child(p, st == ST_DIRTY ? c->data : c->l.lower, LAYER_READ, off, n * BS, buf,
			   read_child_done);
		return;
	}
	io->done(io, p->err ? p->err : (int)io->len);
}

/* ---- a read mixing clean and dirty blocks in many runs ----
 * Run by run, a read alternating cache and base blocks costs a round trip
 * per run. Instead: the span from the first clean block to the last one in
 * one read below (the dirty blocks inside it are read needlessly, which is
 * cheaper than a round trip each), then every dirty run at once from the
 * data file, over what the span read put there: two round trips. Runs are
 * taken once, at the start; a block that a racing write makes dirty
 * meanwhile reads as it was, as a read racing a write may. */

static void split_finish(struct cache_io *p)
{
	struct layer_io *io = p->parent;
	io->done(io, p->err ? p->err : (int)io->len);
}

static bool split_run_queue(struct cache_io *p, struct cache_run *r)
{
	struct layer_io *io = p->parent;
	struct io_uring_sqe *sqe = aio_get_sqe(io->aio, &r->areq);

	if (!sqe)
		return false;
	layer_file_prep_read(p->cache->data, sqe, (char *)io->buf + r->at, r->len, io->off + r->at);
	return true;
}

static void split_run_done(struct aio_req *req, int res)
{
	struct cache_run *r = container_of(req, struct cache_run, areq);
	struct cache_io *p = r->p;

	if (res > 0 && (uint32_t)res < r->len) {   /* short: read the rest */
		r->at += (uint32_t)res;
		r->len -= (uint32_t)res;
		if (split_run_queue(p, r))
			return;
		res = -EAGAIN;
	}
	if (res < 0)
		p->err = res;
	else if (res == 0)   /* past the data file's end: zeros */
		memset((char *)p->parent->buf + r->at, 0, r->len);
	if (!--p->pending)
		split_finish(p);
}

static void split_span_done(struct layer_io *child, int res)
{
	struct cache_io *p = container_of(child, struct cache_io, child);
	struct layer_io *io = p->parent;

	if (res < 0) {   /* maybe only where dirty blocks hide it: run by run, as if unsplit */
		p->cursor = 0;
		p->err = 0;
		read_step(p);
		return;
	}
	p->pending = 1;   /* until every run is queued */
	for (uint32_t i = 0; i < p->n_runs && !p->err; i++) {
		struct cache_run *r = &p->runs[i];
		if (r->st == ST_ZERO) {
			memset((char *)io->buf + r->at, 0, r->len);
		} else if (r->st == ST_DIRTY) {
			int ret = layer_file_read_now(p->cache->data, (char *)io->buf + r->at, r->len,
						      io->off + r->at);
			if (ret != -EAGAIN) {
				if (ret)
					p->err = ret;
				continue;
			}
			r->p = p;
			r->areq.complete = split_run_done;
			if (!split_run_queue(p, r)) {
				p->err = -EAGAIN;
				break;
			}
			p->pending++;
		}
	}
	if (!--p->pending)
		split_finish(p);
}

/* Serve io as a split read if it has more than two runs and some clean
 * ones; false to serve it run by run. */
static bool split_read(struct cache_io *p)
{
	struct cache *c = p->cache;
	struct layer_io *io = p->parent;
	uint32_t first_clean = UINT32_MAX, end_clean = 0;

	p->n_runs = 0;
	for (uint32_t at = 0, len; at < io->len; at += len) {
		unsigned st;
		len = run_at(c, io->off, io->len, at, &st);
		if (len == io->len || p->n_runs == SPLIT_RUNS)   /* one run: read_step serves it */
			return false;
		p->runs[p->n_runs++] = (struct cache_run){ .at = at, .len = len, .st = (uint8_t)st };
		if (st == ST_CLEAN) {
			if (first_clean == UINT32_MAX)
				first_clean = at;
			end_clean = at + len;
		}
	}
	if (p->n_runs <= 2 || first_clean == UINT32_MAX)
		return false;
	p->err = 0;
	send_child(p, c->l.lower, LAYER_READ, io->off + first_clean, end_clean - first_clean,
		   (char *)io->buf + first_clean, split_span_done);
	return true;
}

static void cache_read(struct layer *l, struct layer_io *io)
{
	struct cache_io *p = start((struct cache *)l, io);
	if (!split_read(p))
		read_step(p);
}

/* Run by run: clean blocks where the layer below has them, dirty ones
 * in the data file, zeros from the zero page. A block a racing write
 * makes dirty meanwhile reads as it was, as a read racing a write may. */
static int cache_map(struct layer *l, uint64_t off, uint32_t len, struct layer_map *m)
{
	struct cache *c = (struct cache *)l;
	int n = 0;

	for (uint32_t at = 0, run; at < len; at += run) {
		unsigned st;
		int got;
		run = run_at(c, off, len, at, &st);
		if (st == ST_CLEAN)
			got = layer_map(c->l.lower, off + at, run, m);
		else if (st == ST_DIRTY)
			got = layer_map(c->data, off + at, run, m);
		else
			got = layer_map_zeros(run, m);
		if (!got)
			return 0;
		n += got;
	}
	return n;
}

/* Clean blocks are the layer below's to tell; a clean run skips whole
 * map bytes (four blocks) at a time, as a mostly clean map is the
 * common case. */
static enum layer_extent cache_extent(struct layer *l, uint64_t off, uint64_t *len)
{
	struct cache *c = (struct cache *)l;
	uint64_t b = off / BS, n = 1, most = (off % BS + *len + BS - 1) / BS;
	unsigned st;

	if (b >= c->nblocks)
		return LAYER_ZEROS;
	if (most > c->nblocks - b)
		most = c->nblocks - b;
	st = read_state(c, b);
	while (n < most) {
		uint64_t x = b + n;
		if (st == ST_CLEAN && !(x & 3) && most - n >= 4 && x + 4 <= c->base_blocks &&
		    !__atomic_load_n(&c->map[x >> 2], __ATOMIC_RELAXED)) {
			n += 4;
			continue;
		}
		if (read_state(c, x) != st)
			break;
		n++;
	}
	if (n * BS - off % BS < *len)
		*len = n * BS - off % BS;
	if (st == ST_CLEAN)
		return layer_extent(c->l.lower, off, len);
	return st == ST_ZERO ? LAYER_ZEROS : LAYER_DATA;
}

/* ---- write, discard ---- */

static void resume_parked(struct aio_req *req, int res)
{
	struct layer_io *io = container_of(req, struct layer_io, areq);
	(void)res;
	layer_submit(io->layer, io);
}

/* Count a write or discard in, or park it while the cache is frozen.
 * Counting first and checking after pairs with freeze(), which sets the
 * flag first and waits for the count to drop. */
static bool may_modify(struct cache *c, struct layer_io *io)
{
	for (;;) {
		atomic_fetch_add(&c->modifying, 1);
		if (!atomic_load(&c->frozen))
			return true;
		atomic_fetch_sub(&c->modifying, 1);
		/* parked only while thaw, which clears the flag under the lock,
		 * has not run: one that ran meanwhile would never resume it */
		pthread_mutex_lock(&c->lock);
		if (atomic_load(&c->frozen))
			break;
		pthread_mutex_unlock(&c->lock);
	}
	io->areq.complete = resume_parked;
	aio_expect(io->aio);
	((struct cache_io *)io->priv)->next_flush = c->parked;
	c->parked = io;
	pthread_mutex_unlock(&c->lock);
	return false;
}

static void modified(struct cache *c, struct layer_io *io, int res)
{
	atomic_fetch_sub(&c->modifying, 1);
	io->done(io, res);
}

static void set_range(struct cache *c, uint64_t off, uint32_t len, unsigned st)
{
	for (uint64_t b = off / BS; b < (off + len) / BS && b < c->nblocks; b++)
		set_state(c, b, st);
}

static void write_done(struct layer_io *child, int res)
{
	struct cache_io *p = container_of(child, struct cache_io, child);
	struct layer_io *io = p->parent;

	if (res >= 0) {
		/* Only now is the data there to be read: publish the blocks. */
		for (uint32_t i = 0; i < io->len / BS; i++)
			set_state(p->cache, io->off / BS + i,
				  block_is_zero((char *)io->buf + (size_t)i * BS) ? ST_ZERO : ST_DIRTY);
		res = (int)io->len;
	}
	modified(p->cache, io, res);
}

static void zero_done(struct layer_io *child, int res)
{
	struct cache_io *p = container_of(child, struct cache_io, child);
	struct layer_io *io = p->parent;
	/* the blocks read as zeros already: the hole only gives the space
	 * back, which a file system that cannot punch one keeps */
	if (res == -EOPNOTSUPP)
		res = 0;
	modified(p->cache, io, res < 0 ? res : (io->op == LAYER_WRITE ? (int)io->len : 0));
}

/* Zero state first, then give the space back: a read in between sees zeros. */
static void make_zero(struct cache_io *p, struct layer_io *io)
{
	uint64_t end = io->off + io->len;
	struct cache *c = p->cache;

	if (end > c->l.size)
		end = c->l.size;
	if (io->off >= end) {
		modified(c, io, 0);
		return;
	}
	set_range(c, io->off, (uint32_t)(end - io->off), ST_ZERO);
	send_child(p, c->data, LAYER_DISCARD, io->off, (uint32_t)(end - io->off), NULL, zero_done);
}

static void cache_write(struct layer *l, struct layer_io *io)
{
	struct cache_io *p = start((struct cache *)l, io);
	bool all_zero = true;

	if (!may_modify(p->cache, io))
		return;
	for (uint32_t i = 0; i < io->len / BS && all_zero; i++)
		all_zero = block_is_zero((char *)io->buf + (size_t)i * BS);
	if (all_zero)
		make_zero(p, io);
	else
		send_child(p, p->cache->data, LAYER_WRITE, io->off, io->len, io->buf, write_done);
}

/* The largest write done in place: a device's largest request (512 KiB). */
#define IN_PLACE_BLOCKS 128

struct zero_scan {
	const char *data;
	uint32_t nblocks;
	bool all_zero;
	bool zero[IN_PLACE_BLOCKS];
};

static void scan_zeros(void *arg)
{
	struct zero_scan *z = arg;

	z->all_zero = true;
	for (uint32_t i = 0; i < z->nblocks; i++) {
		z->zero[i] = block_is_zero(z->data + (size_t)i * BS);
		z->all_zero &= z->zero[i];
	}
}

/* cache_write with the data copied by the kernel straight into the data
 * file's mapping: one copy and no write call. Counted in from the place
 * to the end as may_modify counts, so a frozen cache's files do not
 * change. A write of zeros only, which cache_write makes a hole, goes
 * there after all, as does one whose data file was cut short under the
 * mapping. */
static int cache_place_write(struct layer *l, uint64_t off, uint32_t len, void **at)
{
	struct cache *c = (struct cache *)l;

	if (off % BS || len % BS || !len || len / BS > IN_PLACE_BLOCKS ||
	    !(*at = layer_file_place(c->data, off, len)))
		return -EAGAIN;
	atomic_fetch_add(&c->modifying, 1);
	if (!atomic_load(&c->frozen))
		return 0;
	atomic_fetch_sub(&c->modifying, 1);
	return -EAGAIN;
}

static int cache_write_placed(struct layer *l, uint64_t off, uint32_t len)
{
	struct cache *c = (struct cache *)l;
	struct zero_scan z = { .nblocks = len / BS, .data = layer_file_place(c->data, off, len) };
	int ret = -EAGAIN;

	if (!len || len % BS || !z.data || sigbus_guard(z.data, len, scan_zeros, &z) || z.all_zero)
		goto out;
	for (uint32_t i = 0; i < z.nblocks; i++)
		set_state(c, off / BS + i, z.zero[i] ? ST_ZERO : ST_DIRTY);
	ret = 0;
out:
	atomic_fetch_sub(&c->modifying, 1);
	return ret;
}

static void cache_discard(struct layer *l, struct layer_io *io)
{
	struct cache_io *p = start((struct cache *)l, io);
	if (may_modify(p->cache, io))
		make_zero(p, io);
}

/* ---- flush ---- */

/* Bytes of map page `page` (the last one may be short). */
static size_t page_len(const struct cache *c, size_t page)
{
	size_t left = c->map_bytes - page * MAP_PAGE;
	return left < MAP_PAGE ? left : MAP_PAGE;
}

/* Persist every map change made so far (docs/cache-format.md, Rules).
 * Runs on the flusher thread, or at close once the flusher has ended. */
static int persist(struct cache *c)
{
	uint64_t words = (c->npages + 63) / 64, *taken = c->taken;
	int ret = 0;

	pthread_mutex_lock(&c->persist_lock);
	for (uint64_t w = 0; w < words; w++) {
		taken[w] = __atomic_exchange_n(&c->changed[w], 0, __ATOMIC_SEQ_CST);
		for (uint64_t bits = taken[w]; bits; bits &= bits - 1) {
			size_t page = w * 64 + (size_t)__builtin_ctzll(bits);
			memcpy(c->snap + page * MAP_PAGE, c->map + page * MAP_PAGE, page_len(c, page));
		}
	}
	if (c->sticky_err) {
		ret = c->sticky_err;
		goto out;
	}
	if (fdatasync(layer_file_fd(c->data))) {
		ret = c->sticky_err = -errno;
		/* the kernel may have dropped the pages it could not write:
		 * what was acknowledged may be lost, and no retry can tell */
		log_err("cache %s: syncing its data file: %s; every later flush fails: stop "
			"the device and check the disk", c->path, strerror(-ret));
		goto out;
	}
	for (uint64_t w = 0; w < words && !ret; w++)
		for (uint64_t bits = taken[w]; bits && !ret; bits &= bits - 1) {
			size_t page = w * 64 + (size_t)__builtin_ctzll(bits);
			size_t len = page_len(c, page);
			if (pwrite(c->map_fd, c->snap + page * MAP_PAGE, len,
				   MAP_HDR + page * MAP_PAGE) != (ssize_t)len)
				ret = errno ? -errno : -EIO;
		}
	if (!ret && fdatasync(c->map_fd))
		ret = -errno;
	/* retried at each flush: said when it starts failing and ends */
	if (ret && ret != c->map_err)
		log_err("cache %s: writing its map: %s; flushes fail until it works again",
			c->path, strerror(-ret));
	else if (!ret && c->map_err)
		log_info("cache %s: its map is written again", c->path);
	c->map_err = ret;
out:
	if (ret)   /* not persisted: try these pages again next time */
		for (uint64_t w = 0; w < words; w++)
			__atomic_fetch_or(&c->changed[w], taken[w], __ATOMIC_SEQ_CST);
	pthread_mutex_unlock(&c->persist_lock);
	return ret;
}

static void flush_complete(struct aio_req *req, int res)
{
	struct layer_io *io = container_of(req, struct layer_io, areq);
	io->done(io, res);
}

/* Complete every request of the batch (linked by next_flush) on its own
 * queue's ring; what names them in a message (flushes, held writes). */
static void complete_batch(struct cache *c, struct layer_io *batch, int res, const char *what)
{
	while (batch) {
		struct layer_io *io = batch;
		batch = ((struct cache_io *)io->priv)->next_flush;
		int lost = aio_poster_post(&c->poster, io->aio, &io->areq, res);
		if (lost)
			log_err("cache %s: handing one of its %s back to its queue: %s; it is lost "
				"(its device hangs until deleted)", c->path, what, strerror(-lost));
	}
}

static void *flusher_main(void *arg)
{
	struct cache *c = arg;

	pthread_mutex_lock(&c->lock);
	for (;;) {
		while (!c->flush_list && !c->stop)
			pthread_cond_wait(&c->cond, &c->lock);
		if (!c->flush_list)
			break;
		struct layer_io *batch = c->flush_list;
		c->flush_list = NULL;
		pthread_mutex_unlock(&c->lock);
		complete_batch(c, batch, persist(c), "flushes");
		pthread_mutex_lock(&c->lock);
	}
	pthread_mutex_unlock(&c->lock);
	return NULL;
}

static void cache_flush(struct layer *l, struct layer_io *io)
{
	struct cache *c = (struct cache *)l;
	struct cache_io *p = start(c, io);

	if (l->read_only) {
		io->done(io, 0);
		return;
	}
	io->areq.complete = flush_complete;
	aio_expect(io->aio);
	pthread_mutex_lock(&c->lock);
	p->next_flush = c->flush_list;
	c->flush_list = io;
	pthread_cond_signal(&c->cond);
	pthread_mutex_unlock(&c->lock);
}

/* ---- open and close ---- */

static void cache_close(struct layer *l)
{
	struct cache *c = (struct cache *)l;

	if (c->flusher_running) {
		pthread_mutex_lock(&c->lock);
		c->stop = true;
		pthread_cond_signal(&c->cond);
		pthread_mutex_unlock(&c->lock);
		pthread_join(c->flusher, NULL);
		aio_poster_exit(&c->poster);
	}
	if (c->map_fd >= 0) {
		/* A clean stop keeps everything in the map file; only then is
		 * the live map redundant. */
		if (!c->l.read_only && c->live.mem && !persist(c))
			cache_live_remove(c->path);
		close(c->map_fd);  /* also drops the flock */
	}
	layer_close(c->data);
	layer_close(c->l.lower);
	if (c->live.mem)
		cache_live_unmap(&c->live);
	else
		free(c->map);
	free(c->path);
	free(c->snap);
	free(c->changed);
	free(c->taken);
	pthread_mutex_destroy(&c->lock);
	pthread_mutex_destroy(&c->persist_lock);
	pthread_cond_destroy(&c->cond);
	free(c);
}

static int cache_freeze(struct layer *l, uint64_t timeout_ms);
static void cache_thaw(struct layer *l);

static const struct layer_ops cache_ops = {
	.name = "cache",
	.read = cache_read,
	.write = cache_write,
	.flush = cache_flush,
	.discard = cache_discard,
	.close = cache_close,
	.freeze = cache_freeze,   /* for a live export */
	.thaw = cache_thaw,
	.extent = cache_extent,
	.map = cache_map,
	.place_write = cache_place_write,
	.write_placed = cache_write_placed,
};

/* Create data and map files for a new cache; removes both on failure. */
static int create_files(struct cache *c, const char *path, const char *map_path,
			char *why, size_t len)
{
	int data_fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	int ret = 0;

	if (data_fd < 0)
		return snprintf(why, len, "%s: create: %s", path, strerror(errno)), -errno;
	c->map_fd = open(map_path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (c->map_fd < 0) {
		ret = -errno;
		snprintf(why, len, "%s: create: %s", map_path, strerror(errno));
		goto out;
	}
	if (getrandom(c->hdr.id, sizeof(c->hdr.id), 0) != sizeof(c->hdr.id))
		memset(c->hdr.id, 0x5a, sizeof(c->hdr.id));
	if (ftruncate(data_fd, (off_t)c->hdr.dev_size) ||
	    ftruncate(c->map_fd, (off_t)(MAP_HDR + c->map_bytes)) || fdatasync(data_fd)) {
		ret = -errno;
		snprintf(why, len, "%s: sizing the cache: %s", path, strerror(errno));
		goto out;
	}
	ret = cache_write_hdr(c);
	if (ret)
		snprintf(why, len, "%s: writing header: %s", map_path, strerror(-ret));
	/* the names too: data a FLUSH made durable must not lose its file */
	else if ((ret = fsync_folder_of(path)))
		snprintf(why, len, "%s: syncing its folder: %s", path, strerror(-ret));
out:
	close(data_fd);
	if (ret) {
		if (c->map_fd >= 0)
			close(c->map_fd);
		c->map_fd = -1;
		unlink(path);
		unlink(map_path);
	}
	return ret;
}

/* The version of the image below (docs/cache-format.md, Base version) as
 * the header keeps it, in text[BASE_VERSION_MAX + 1]. */
static int base_version_now(const struct layer *lower, char *text, char *why, size_t whylen)
{
	size_t used = 0;

	text[0] = 0;
	if (layer_version_text(lower, text, BASE_VERSION_MAX + 1, &used)) {
		snprintf(why, whylen, "the base's version (its size and ETag or time) does not fit "
			 "the %u bytes a cache keeps of it", BASE_VERSION_MAX);
		return -EINVAL;
	}
	return 0;
}

/* text's lines as one line of a message: "a; b" */
static void version_shown(const char *text, char *out, size_t len)
{
	size_t used = 0;

	out[0] = 0;
	for (const char *line = text; *line && used + 1 < len;) {
		size_t n = strcspn(line, "\n");
		used += (size_t)snprintf(out + used, len - used, "%s%.*s", used ? "; " : "", (int)n, line);
		line += n + (line[n] == '\n');
	}
	if (!out[0])
		snprintf(out, len, "nothing (no remote nor read-only file base)");
}

/* A cache over another version of its base would show its blocks over
 * data they were not written over: the lines this version knows must be
 * the ones recorded. None recorded (a cache of before the field) records
 * the version now at the next writable open. */
static int same_base_version(struct cache *c, const char *path, const struct layer *lower,
			     char *why, size_t whylen)
{
	static const char *const keys[] = { "remote", "file", NULL };
	char now[BASE_VERSION_MAX + 1], known_was[sizeof(now)], known_now[sizeof(now)];
	int ret = base_version_now(lower, now, why, whylen);

	if (ret)
		return ret;
	if (!c->hdr.base_version[0]) {
		snprintf(c->hdr.base_version, sizeof(c->hdr.base_version), "%s", now);
		return 0;
	}
	cfgline_select(c->hdr.base_version, keys, known_was, sizeof(known_was));
	cfgline_select(now, keys, known_now, sizeof(known_now));
	if (!strcmp(known_was, known_now))
		return 0;
	char was_shown[320], now_shown[320];
	version_shown(known_was, was_shown, sizeof(was_shown));
	version_shown(known_now, now_shown, sizeof(now_shown));
	snprintf(why, whylen, "%s: cache was made over another version of its base (it recorded "
		 "%s; the base is now %s: a remote image changed on its server, or a local one was "
		 "written or replaced; a copy keeps its time with cp -p): its blocks would lie over "
		 "data they were not written over; serve the version it was made over, or remove "
		 "the cache (%s and %s.map) to start a new one", path, was_shown, now_shown, path, path);
	return -EINVAL;
}

int layer_cache_open(const char *path, struct layer *lower, uint64_t size, bool read_only,
		     struct layer **out, char *why, size_t whylen)
{
	char map_path[4096], sub[512] = "";
	struct cache *c = calloc(1, sizeof(*c));
	struct stat st;
	bool exists;
	int ret;

	if (!c) {
		snprintf(why, whylen, "%s: out of memory", path);
		return -ENOMEM;
	}
	c->map_fd = -1;
	pthread_mutex_init(&c->lock, NULL);
	pthread_mutex_init(&c->persist_lock, NULL);
	pthread_cond_init(&c->cond, NULL);
	c->l.ops = &cache_ops;
	c->l.lower = lower;
	c->l.read_only = read_only;
	c->l.priv_size = sizeof(struct cache_io);
	snprintf(map_path, sizeof(map_path), "%s.map", path);
	if ((ret = cache_folder_check(path, why, whylen)))
		goto fail;
	exists = stat(map_path, &st) == 0;
	if (exists != (stat(path, &st) == 0)) {
		snprintf(why, whylen, "%s: %s exists but %s does not: not a complete ublk-tools "
			 "cache; remove it or choose another path",
			 path, exists ? map_path : path, exists ? path : map_path);
		ret = -EINVAL;
		goto fail;
	}
	/* a read-only stack (--read-only, --flatten) only reads: it makes no cache */
	if (!exists && read_only) {
		snprintf(why, whylen, "%s: no such cache (a read-only device or --flatten reads an "
			 "existing one and makes none)", path);
		ret = -ENOENT;
		goto fail;
	}
	if (exists) {
		/* Size comes from the header; read it before sizing the map. */
		uint8_t b[MAP_HDR];
		if ((c->map_fd = cache_map_open(map_path, !read_only, why, whylen)) < 0) {
			ret = c->map_fd;
			goto fail;
		}
		if ((ret = cache_file_private(c->map_fd, sub, sizeof(sub))) ||
		    (ret = cache_map_pread(c->map_fd, b, MAP_HDR, 0)) ||
		    (ret = cache_hdr_decode(c, b, sub, sizeof(sub))) ||
		    (ret = cache_map_size_check(c->map_fd, (c->hdr.dev_size / BS + 3) / 4, sub, sizeof(sub)))) {
			if (ret == -EINVAL && !sub[0])
				snprintf(sub, sizeof(sub), "the file is too short for a header");
			snprintf(why, whylen, "%s: %s", map_path, sub[0] ? sub : strerror(-ret));
			goto fail;
		}
		if (size && size != c->hdr.dev_size) {
			snprintf(why, whylen, "%s: cache is for a %llu-byte device, not %llu", path,
				 (unsigned long long)c->hdr.dev_size, (unsigned long long)size);
			ret = -EINVAL;
			goto fail;
		}
		if (c->hdr.base_size != lower->size) {
			snprintf(why, whylen, "%s: cache was made over a %llu-byte base, this base has "
				 "%llu bytes", path, (unsigned long long)c->hdr.base_size,
				 (unsigned long long)lower->size);
			ret = -EINVAL;
			goto fail;
		}
		if (memcmp(c->hdr.parent_id, lower->id, 16)) {
			snprintf(why, whylen, "%s: cache was made over another image (layer stack "
				 "changed: parent id differs)", path);
			ret = -EINVAL;
			goto fail;
		}
		size = c->hdr.dev_size;
	} else {
		if ((ret = base_version_now(lower, c->hdr.base_version, why, whylen)))
			goto fail;
		c->hdr.dev_size = size ? size : lower->size;
		c->hdr.base_size = lower->size;
		memcpy(c->hdr.parent_id, lower->id, 16);
		c->hdr.parent_generation = lower->generation;
		size = c->hdr.dev_size;
	}
	if (size % BS || size < lower->size || size > UBLK_MAX_IMAGE_SIZE) {
		snprintf(why, whylen, "device size %llu must be a multiple of %u, at least the "
			 "base size %llu and at most %llu", (unsigned long long)size, BS,
			 (unsigned long long)lower->size, (unsigned long long)UBLK_MAX_IMAGE_SIZE);
		ret = -EINVAL;
		goto fail;
	}
	c->l.size = size;
	c->nblocks = size / BS;
	c->base_blocks = lower->size / BS;
	c->map_bytes = (c->nblocks + 3) / 4;
	c->npages = (c->map_bytes + MAP_PAGE - 1) / MAP_PAGE;
	c->map = calloc(c->npages, MAP_PAGE);
	c->snap = calloc(c->npages, MAP_PAGE);
	c->changed = calloc((c->npages + 63) / 64, sizeof(uint64_t));
	c->taken = calloc((c->npages + 63) / 64, sizeof(uint64_t));
	if (!c->map || !c->snap || !c->changed || !c->taken) {
		ret = -ENOMEM;
		snprintf(why, whylen, "%s: out of memory for the block map", path);
		goto fail;
	}
	if (!exists && (ret = create_files(c, path, map_path, why, whylen)))
		goto fail;
	if (flock(c->map_fd, (read_only ? LOCK_SH : LOCK_EX) | LOCK_NB)) {
		ret = errno == EWOULDBLOCK ? -EBUSY : -errno;
		if (ret == -EBUSY)
			snprintf(why, whylen, "%s: cache is in use by another server", path);
		else
			snprintf(why, whylen, "%s: locking its map: %s", path, strerror(-ret));
		goto fail;
	}
	/* the map locked is still the one of that name: a reclaim of the
	 * cache (ublk-pool reclaim --caches) may have removed it meanwhile */
	if (!fd_is_named(c->map_fd, AT_FDCWD, map_path, 0)) {
		ret = -EBUSY;
		snprintf(why, whylen, "%s: the cache was removed while this server opened it "
			 "(ublk-pool reclaim --caches?): try again", path);
		goto fail;
	}
	if (exists && (ret = cache_map_load(c, path, map_path, false, why, whylen)) < 0)
		goto fail;
	if (ret == 1)   /* states the map file does not have yet */
		for (size_t page = 0; page < c->npages; page++)
			c->changed[page / 64] |= 1ull << (page % 64);
	/* the header as read under the lock: a server that recorded the
	 * version meanwhile is not overwritten unread */
	if (exists && (ret = same_base_version(c, path, lower, why, whylen)))
		goto fail;
	int data_fd;
	uint64_t data_size;
	if ((ret = cache_data_open(path, !read_only, &data_fd, &data_size, why, whylen)))
		goto fail;
	if ((ret = layer_file_adopt(data_fd, data_size, read_only, &c->data))) {
		snprintf(why, whylen, "%s: %s", path, strerror(-ret));
		goto fail;
	}
	if (c->data->size != size) {
		snprintf(why, whylen, "%s: data file has %llu bytes, the map says %llu", path,
			 (unsigned long long)c->data->size, (unsigned long long)size);
		ret = -EINVAL;
		goto fail;
	}
	if (!read_only) {
		/* Map the live map before the map file names the new generation,
		 * so a death in between leaves one the next open accepts. */
		uint8_t *states;
		c->hdr.generation++;
		c->path = strdup(path);
		ret = c->path ? cache_live_map(&c->live, path, c->hdr.id, c->hdr.generation, c->map,
					       c->map_bytes, &states) : -ENOMEM;
		if (ret) {
			snprintf(why, whylen, "%s.live: creating the live block map: %s", path,
				 strerror(-ret));
			goto fail;
		}
		free(c->map);
		c->map = states;
		if ((ret = cache_write_hdr(c))) {
			snprintf(why, whylen, "%s: writing header: %s", map_path, strerror(-ret));
			goto fail;
		}
		if ((ret = aio_poster_init(&c->poster))) {
			snprintf(why, whylen, "%s: io_uring for the cache flusher: %s", path, strerror(-ret));
			goto fail;
		}
		if ((ret = -pthread_create(&c->flusher, NULL, flusher_main, c))) {
			aio_poster_exit(&c->poster);
			snprintf(why, whylen, "%s: starting the cache flusher: %s", path, strerror(-ret));
			goto fail;
		}
		c->flusher_running = true;
	}
	c->l.maps = lower->maps && c->data->maps;
	*out = &c->l;
	return 0;
fail:
	c->l.lower = NULL;   /* the caller still owns lower */
	c->l.read_only = true;  /* nothing to persist */
	cache_close(&c->l);
	return ret;
}

/* ---- live export ---- */

static void cache_thaw(struct layer *l)
{
	struct cache *c = (struct cache *)l;
	struct layer_io *parked;

	pthread_mutex_lock(&c->lock);
	atomic_store(&c->frozen, 0);
	parked = c->parked;
	c->parked = NULL;
	pthread_mutex_unlock(&c->lock);
	complete_batch(c, parked, 0, "writes held by a live export");
}

static int cache_freeze(struct layer *l, uint64_t timeout_ms)
{
	struct cache *c = (struct cache *)l;
	uint64_t deadline = now_ms() + timeout_ms;

	if (l->read_only)
		return -EROFS;
	atomic_store(&c->frozen, 1);
	while (atomic_load(&c->modifying)) {
		if (!ms_left(deadline)) {
			cache_thaw(l);
			return -ETIMEDOUT;
		}
		sleep_ms(1);
	}
	int ret = persist(c);
	if (ret)
		cache_thaw(l);
	return ret;
}

