/*
 * A remote base image read over HTTP(S) in chunks (4 MiB by default),
 * through the shared on-disk chunk cache (chunkcache.h). A read served from
 * cached chunks completes at once; a miss parks the request on the chunk's
 * fetch job, so concurrent misses of one chunk share one transfer. Worker
 * threads, each with its own connection, run the transfers and post the
 * parked requests back to their queue's ring (aio_poster): a slow fetch
 * never blocks a queue thread, and fetches of different chunks run in
 * parallel.
 */
#include "image/layer_http.h"
#include "image/access_log.h"
#include "image/chunkcache.h"
#include "image/http.h"
#include "util/log.h"
#include "util/timeutil.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FETCH_WORKERS 4
#define RA_STREAMS 4            /* sequential readers followed at once */
#define RA_NONE UINT64_MAX

struct fetch_job {
	uint64_t idx;
	bool running;
	bool demand;            /* a read waits for it: fetched before readahead */
	uint64_t demand_ms;     /* since when (monotonic) */
	struct layer_io *waiters;
	struct fetch_job *next;
};

struct layer_http {
	struct layer l;
	struct http_source src;
	struct chunk_image ci;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	struct fetch_job *jobs;
	unsigned njobs;
	unsigned readahead;         /* chunks kept queued ahead of a reader */
	/* A read of chunk mark moves its stream's window on: chunks up to
	 * mark - 1 + readahead are queued, those below edge already were. */
	struct ra_stream {
		_Atomic uint64_t mark;
		uint64_t edge;
	} ra[RA_STREAMS];
	unsigned ra_victim;
	bool stop;
	atomic_bool cancel;         /* closing: transfers end at once */
	uint64_t read_budget_ms;    /* one fetch's deadline, all its tries: a read
				       that waited that long for a worker fails */
	struct log_limit overdue_said;   /* chunks whose reads waited too long (lock) */
	atomic_bool said_unreadable;
	pthread_t prefetcher;
	bool prefetching;
	pthread_t workers[FETCH_WORKERS];
	unsigned nworkers;
	struct aio_poster poster;
	_Atomic uint64_t hits, misses, chunks_fetched, bytes_fetched, fetch_errors, fetch_ms,
		retries;
	_Atomic uint64_t prefetched;    /* chunks --prefetch has cached or handed to a worker */
	struct access_log *access;
	int access_img;
};

struct http_io {
	uint32_t cursor;
	uint32_t noted_to;      /* the access log has seen the chunks below this */
	unsigned again;         /* fetches of one chunk the disk then had not:
				   not for ever */
	struct layer_io *next_waiter;
};

static void read_step(struct layer_http *h, struct layer_io *io);

static void fetched(struct aio_req *req, int res)
{
	struct layer_io *io = container_of(req, struct layer_io, areq);
	if (res < 0)
		io->done(io, layer_fetch_error(res));
	else
		read_step((struct layer_http *)io->layer, io);
}

static uint64_t nchunks(const struct layer_http *h)
{
	return h->ci.nchunks;   /* computed without overflow by chunk_image_open */
}

/* The fetch job of chunk idx, queued last if there is none; NULL if the
 * chunk is on disk already (or no memory: *oom). Called with h->lock held. */
static struct fetch_job *job_for(struct layer_http *h, uint64_t idx, bool demand, bool *oom)
{
	struct fetch_job **pp, *j;

	for (pp = &h->jobs; *pp && (*pp)->idx != idx; pp = &(*pp)->next)
		;
	/* a job may have finished since the caller looked at the disk */
	if ((j = *pp) || chunk_present(&h->ci, idx)) {
		if (j && demand && !j->demand) {
			j->demand = true;
			j->demand_ms = now_ms();
		}
		return j;
	}
	if (!(j = calloc(1, sizeof(*j)))) {
		*oom = true;
		return NULL;
	}
	j->idx = idx;
	j->demand = demand;
	j->demand_ms = now_ms();
	*pp = j;
	h->njobs++;
	pthread_cond_signal(&h->cond);
	return j;
}

/* Queue the chunks after idx up to idx + readahead that stream s has not
 * queued yet, and mark idx + 1: the reader's arrival there moves the window
 * on, so a sequential reader finds its chunks fetched instead of missing
 * once per window. Called with h->lock held. */
static void read_ahead(struct layer_http *h, struct ra_stream *s, uint64_t idx)
{
	uint64_t end = idx + h->readahead;      /* idx < nchunks, readahead <= 64 */
	bool oom = false;

	if (s->edge <= idx)
		s->edge = idx + 1;
	for (; s->edge <= end && s->edge < nchunks(h) && !oom; s->edge++)
		job_for(h, s->edge, false, &oom);
	atomic_store_explicit(&s->mark, idx + 1 < nchunks(h) ? idx + 1 : RA_NONE, memory_order_relaxed);
}

/* A read of a cached chunk idx: move the window of the stream it marks. */
static void read_ahead_on_hit(struct layer_http *h, uint64_t idx)
{
	for (unsigned i = 0; i < RA_STREAMS; i++) {
		struct ra_stream *s = &h->ra[i];
		if (atomic_load_explicit(&s->mark, memory_order_relaxed) != idx)
			continue;
		pthread_mutex_lock(&h->lock);
		if (atomic_load_explicit(&s->mark, memory_order_relaxed) == idx)
			read_ahead(h, s, idx);
		pthread_mutex_unlock(&h->lock);
		return;
	}
}

/* A missed chunk idx: the stream that expected the reader there, else a
 * new one in place of the oldest. Called with h->lock held. */
static struct ra_stream *stream_at(struct layer_http *h, uint64_t idx)
{
	struct ra_stream *s;

	for (unsigned i = 0; i < RA_STREAMS; i++)
		if (atomic_load_explicit(&h->ra[i].mark, memory_order_relaxed) == idx)
			return &h->ra[i];
	s = &h->ra[h->ra_victim++ % RA_STREAMS];
	s->edge = idx + 1;
	return s;
}

/* Park io on the fetch job of chunk idx, starting one if none runs, and
 * read ahead. Returns false if the chunk arrived meanwhile (read again). */
static bool wait_for_chunk(struct layer_http *h, struct layer_io *io, uint64_t idx)
{
	bool oom = false, parked;
	struct fetch_job *j;

	pthread_mutex_lock(&h->lock);
	j = job_for(h, idx, true, &oom);
	parked = j || oom;
	if (j && h->readahead)
		read_ahead(h, stream_at(h, idx), idx);
	if (j) {
		((struct http_io *)io->priv)->next_waiter = j->waiters;
		j->waiters = io;
		io->areq.complete = fetched;
		aio_expect(io->aio);
	}
	pthread_mutex_unlock(&h->lock);
	if (oom && !j)
		io->done(io, -ENOMEM);
	return parked;
}

/* A cached chunk that cannot be read (EACCES, EMFILE, EIO of the cache's
 * disk) fails its reads: fetched again, it would stay unreadable. */
static void chunk_unreadable(struct layer_http *h, uint64_t idx, int err)
{
	char logurl[512];

	if (atomic_exchange(&h->said_unreadable, true))
		return;
	http_url_for_log(h->src.url, logurl, sizeof(logurl));
	if (err == -ENOENT)   /* fetched, and gone before the read each time */
		log_err("%s: chunk %llu: evicted from the chunk cache %s before its read could read "
			"it, 4 times: its reads fail (EIO); is --chunk-cache-limit too small for the "
			"devices sharing it? (said once)", logurl, (unsigned long long)idx, h->ci.dir);
	else
		log_err("%s: chunk %llu: reading it from the chunk cache %s: %s; its reads fail (EIO) "
			"(said once)", logurl, (unsigned long long)idx, h->ci.dir, strerror(-err));
}

static void read_step(struct layer_http *h, struct layer_io *io)
{
	struct http_io *p = io->priv;
	uint32_t cs = h->ci.chunk_size;

	while (p->cursor < io->len) {
		uint64_t off = io->off + p->cursor;
		char *buf = (char *)io->buf + p->cursor;
		if (off >= h->src.size) {   /* the device is rounded up to whole blocks */
			memset(buf, 0, io->len - p->cursor);
			break;
		}
		uint64_t idx = off / cs;
		uint32_t in = (uint32_t)(off % cs), n = cs - in;
		if (n > io->len - p->cursor)
			n = io->len - p->cursor;
		if (n > h->src.size - off)
			n = (uint32_t)(h->src.size - off);
		if (p->noted_to <= p->cursor) {   /* a missed chunk's read resumes here */
			access_note(h->access, h->access_img, idx, false);
			p->noted_to = p->cursor + n;
		}
		int ret = chunk_read(&h->ci, idx, in, n, buf);
		if (ret == 0) {
			atomic_fetch_add(&h->hits, 1);
			if (h->readahead)
				read_ahead_on_hit(h, idx);
			p->cursor += n;
			p->again = 0;
			continue;
		}
		atomic_fetch_add(&h->misses, 1);
		if (ret != -ENOENT || p->again++ == 3) {
			chunk_unreadable(h, idx, ret);
			io->done(io, -EIO);
			return;
		}
		if (wait_for_chunk(h, io, idx))
			return;
	}
	io->done(io, (int)io->len);
}

static void http_read_op(struct layer *l, struct layer_io *io)
{
	struct http_io *p = io->priv;

	p->cursor = 0;
	p->noted_to = 0;
	p->again = 0;
	read_step((struct layer_http *)l, io);
}

/* Cached chunks in place, each held mapped until unpinned. A chunk not
 * cached is read (and fetched) as usual, so hits are counted and the
 * readahead moved only once the whole read is placed. */
static int http_map(struct layer *l, uint64_t off, uint32_t len, struct layer_map *m)
{
	struct layer_http *h = (struct layer_http *)l;
	uint32_t cs = h->ci.chunk_size;
	uint64_t first = off / cs, chunks = 0;
	int before = m->n;

	for (uint32_t at = 0, piece; at < len; at += piece) {
		uint64_t pos = off + at, idx = pos / cs;
		uint32_t in = (uint32_t)(pos % cs);
		if (pos >= h->src.size) {   /* the device is rounded up to whole blocks */
			if (!layer_map_zeros(len - at, m))
				return 0;
			break;
		}
		piece = cs - in < len - at ? cs - in : len - at;
		if (piece > h->src.size - pos)
			piece = (uint32_t)(h->src.size - pos);
		if (!chunk_map_piece(&h->ci, idx, in, piece, l, m))
			return 0;
		chunks = idx - first + 1;
	}
	for (uint64_t idx = first; idx < first + chunks; idx++) {
		access_note(h->access, h->access_img, idx, false);
		atomic_fetch_add(&h->hits, 1);
		if (h->readahead)
			read_ahead_on_hit(h, idx);
	}
	return m->n - before;
}

static void http_flush(struct layer *l, struct layer_io *io)
{
	(void)l;
	io->done(io, 0);
}

/* Chunk idx from the server into the chunk cache: 0 or -errno (logged). */
static int fetch_chunk(struct layer_http *h, struct http_conn *conn, uint64_t idx, const char *logurl)
{
	uint64_t start = now_ms();
	unsigned attempts = 0;
	char why[700] = "out of memory";
	int ret = conn ? chunk_fetch(&h->ci, conn, &h->src, idx, &attempts, why, sizeof(why)) : -ENOMEM;

	atomic_fetch_add(&h->fetch_ms, now_ms() - start);
	atomic_fetch_add(&h->retries, attempts > 1 ? attempts - 1 : 0);
	if (ret && atomic_load(&h->cancel))
		return ret;     /* the device goes: nobody waits for it */
	if (ret) {
		atomic_fetch_add(&h->fetch_errors, 1);
		log_err("%s: chunk %llu: %s", logurl, (unsigned long long)idx, why);
	} else {
		atomic_fetch_add(&h->chunks_fetched, 1);
		atomic_fetch_add(&h->bytes_fetched, chunk_image_len(&h->ci, idx));
	}
	return ret;
}

/* A stalled server makes every queued chunk overdue at once: said once
 * per read budget, with how many were not said one by one. */
static void say_overdue(struct layer_http *h, uint64_t idx, uint64_t waited, const char *logurl)
{
	unsigned unsaid = 0;
	bool say;

	pthread_mutex_lock(&h->lock);
	say = log_limit_due(&h->overdue_said, h->read_budget_ms, now_ms(), &unsaid);
	pthread_mutex_unlock(&h->lock);
	if (say)
		log_err("%s: chunk %llu: its reads waited %llu ms for a fetch thread, past the %llu ms "
			"a read may take (--http-timeout x tries): they fail (said once per %llu ms; "
			"%u more chunks since it was last said)", logurl, (unsigned long long)idx,
			(unsigned long long)waited, (unsigned long long)h->read_budget_ms,
			(unsigned long long)h->read_budget_ms, unsaid);
}

static void *worker_main(void *arg)
{
	struct layer_http *h = arg;
	struct http_conn *conn = http_conn_new();
	char logurl[512];

	if (conn)
		http_conn_cancel_on(conn, &h->cancel);
	http_url_for_log(h->src.url, logurl, sizeof(logurl));
	pthread_mutex_lock(&h->lock);
	for (;;) {
		struct fetch_job *j, *any = NULL;
		if (h->stop)
			break;  /* what is queued is dropped by http_close */
		for (j = h->jobs; j && (j->running || !j->demand); j = j->next)
			if (!any && !j->running)
				any = j;
		if (!j && !(j = any)) {
			pthread_cond_wait(&h->cond, &h->lock);
			continue;
		}
		j->running = true;
		uint64_t waited = j->demand ? now_ms() - j->demand_ms : 0;
		pthread_mutex_unlock(&h->lock);

		int ret = 0;
		access_prefetch_wait(h->access, h->access_img, j->idx);
		if (chunk_present(&h->ci, j->idx) == 1) {
			/* brought meanwhile: by a trace's prefetch, or another server */
		} else if (waited > h->read_budget_ms) {
			/* queued behind fetches of a slow or stalled server: its
			 * reads have waited as long as a fetch may take */
			ret = -ETIMEDOUT;
			atomic_fetch_add(&h->fetch_errors, 1);
			say_overdue(h, j->idx, waited, logurl);
		} else {
			ret = fetch_chunk(h, conn, j->idx, logurl);
		}
		pthread_mutex_lock(&h->lock);
		struct fetch_job **pp = &h->jobs;
		while (*pp != j)
			pp = &(*pp)->next;
		*pp = j->next;
		h->njobs--;
		pthread_cond_broadcast(&h->cond);   /* the prefetcher waits for room */
		struct layer_io *w = j->waiters;
		uint64_t idx = j->idx;
		pthread_mutex_unlock(&h->lock);
		free(j);
		while (w) {
			struct layer_io *next = ((struct http_io *)w->priv)->next_waiter;
			int lost = aio_poster_post(&h->poster, w->aio, &w->areq, ret);
			if (lost)
				log_err("%s: chunk %llu: handing a read back to its queue: %s; the read "
					"is lost (its device hangs until deleted)", logurl,
					(unsigned long long)idx, strerror(-lost));
			w = next;
		}
		pthread_mutex_lock(&h->lock);
	}
	pthread_mutex_unlock(&h->lock);
	http_conn_free(conn);
	return NULL;
}

/* --prefetch: queue every chunk not yet cached, a few at a time, so the
 * whole image arrives in the background while reads keep priority. */
static void *prefetch_main(void *arg)
{
	struct layer_http *h = arg;
	bool oom = false;

	pthread_mutex_lock(&h->lock);
	for (uint64_t idx = 0; idx < nchunks(h) && !h->stop && !oom; idx++) {
		/* a cached chunk is passed over without the lock: a long run
		 * of them is a look at the disk each, which reads must not wait
		 * behind */
		pthread_mutex_unlock(&h->lock);
		bool cached = chunk_present(&h->ci, idx) == 1;
		pthread_mutex_lock(&h->lock);
		while (!cached && h->njobs >= FETCH_WORKERS && !h->stop)
			pthread_cond_wait(&h->cond, &h->lock);
		if (!cached && !h->stop)
			job_for(h, idx, false, &oom);
		if (!h->stop && !oom)
			h->prefetched = idx + 1;
	}
	pthread_mutex_unlock(&h->lock);
	return NULL;
}

static void http_close(struct layer *l)
{
	struct layer_http *h = (struct layer_http *)l;

	/* Readahead and --prefetch may have queued many chunks, each up to
	 * --http-timeout a try: none is fetched now, and what runs is cut. */
	pthread_mutex_lock(&h->lock);
	h->stop = true;
	atomic_store(&h->cancel, true);
	pthread_cond_broadcast(&h->cond);
	pthread_mutex_unlock(&h->lock);
	if (h->prefetching)
		pthread_join(h->prefetcher, NULL);
	for (unsigned i = 0; i < h->nworkers; i++)
		pthread_join(h->workers[i], NULL);
	while (h->jobs) {
		struct fetch_job *j = h->jobs;
		h->jobs = j->next;
		/* no read is left at close; one would get its error as ever */
		for (struct layer_io *w = j->waiters, *next; w; w = next) {
			next = ((struct http_io *)w->priv)->next_waiter;
			if (aio_poster_post(&h->poster, w->aio, &w->areq, -ECANCELED))
				log_err("chunk %llu: a read left at close could not be handed back "
					"to its queue", (unsigned long long)j->idx);
		}
		free(j);
	}
	aio_poster_exit(&h->poster);
	http_source_close(&h->src);
	chunk_image_close(&h->ci);
	pthread_mutex_destroy(&h->lock);
	pthread_cond_destroy(&h->cond);
	free(h);
}

static int http_stats(struct layer *l, char *buf, size_t len);

/* Running transfers end at once; queued jobs, and new ones, end as they
 * start: their waiters get the error. */
static void http_cancel(struct layer *l)
{
	struct layer_http *h = (struct layer_http *)l;

	atomic_store(&h->cancel, true);
	access_log_cancel(h->access);
}

static const struct layer_ops http_ops = {
	.name = "http",
	.read = http_read_op,
	.write = http_read_op,      /* never reached: read-only */
	.flush = http_flush,
	.discard = http_read_op,
	.close = http_close,
	.cancel = http_cancel,
	.stats = http_stats,
	.map = http_map,
	.unpin = chunk_layer_unpin,
};

int layer_http_open(const char *url, const struct layer_http_opts *o, struct layer **out,
		    char *why, size_t whylen)
{
	struct layer_http *h = calloc(1, sizeof(*h));
	int ret;

	if (!h)
		return -ENOMEM;
	pthread_mutex_init(&h->lock, NULL);
	pthread_cond_init(&h->cond, NULL);
	ret = http_source_open(&h->src, url, &o->http, why, whylen);
	if (ret)
		goto fail_src;
	ret = chunk_image_open(&h->ci, o->cache_dir, url, h->src.validator, h->src.size,
			       o->chunk_size, o->cache_limit, why, whylen);
	if (ret || (ret = aio_poster_init(&h->poster)))
		goto fail;
	h->access = o->access;
	if ((h->access_img = access_log_image(o->access, TRACE_BASE, &h->src, &h->ci)) < -1) {
		ret = h->access_img;
		snprintf(why, whylen, "access trace: %s", strerror(-ret));
		aio_poster_exit(&h->poster);
		goto fail;
	}
	for (; h->nworkers < FETCH_WORKERS; h->nworkers++)
		if ((ret = -pthread_create(&h->workers[h->nworkers], NULL, worker_main, h)))
			break;
	if (!h->nworkers) {
		snprintf(why, whylen, "starting fetch threads: %s", strerror(-ret));
		aio_poster_exit(&h->poster);
		goto fail;
	}
	h->readahead = o->readahead;
	h->read_budget_ms = http_read_budget_ms(&h->src.opts);
	for (unsigned i = 0; i < RA_STREAMS; i++)
		h->ra[i].mark = RA_NONE;
	if (o->prefetch)
		h->prefetching = !pthread_create(&h->prefetcher, NULL, prefetch_main, h);
	h->l.ops = &http_ops;
	h->l.size = (h->src.size + LAYER_BLOCK_SIZE - 1) / LAYER_BLOCK_SIZE * LAYER_BLOCK_SIZE;
	h->l.read_only = true;
	h->l.priv_size = sizeof(struct http_io);
	h->l.maps = h->ci.open != NULL;
	h->l.version_key = "remote";
	snprintf(h->l.version, sizeof(h->l.version), "%llu %s", (unsigned long long)h->src.size,
		 h->src.validator);
	*out = &h->l;
	return 0;
fail:
	chunk_image_close(&h->ci);
	http_source_close(&h->src);
fail_src:
	pthread_mutex_destroy(&h->lock);
	pthread_cond_destroy(&h->cond);
	free(h);
	return ret;
}

static int http_stats(struct layer *l, char *buf, size_t len)
{
	struct layer_http *h = (struct layer_http *)l;
	uint64_t n = h->chunks_fetched + h->fetch_errors;
	char prefetch[96] = "";

	if (h->prefetching)
		snprintf(prefetch, sizeof(prefetch), ",\"prefetch_chunks_done\":%llu,\"prefetch_chunks\":%llu",
			 (unsigned long long)h->prefetched, (unsigned long long)nchunks(h));
	return snprintf(buf, len, "{\"chunk_cache_hits\":%llu,\"chunk_cache_misses\":%llu,"
			"\"chunks_fetched\":%llu,\"bytes_fetched\":%llu,\"fetch_errors\":%llu,"
			"\"retries\":%llu,\"fetch_ms_avg\":%llu%s}",
			(unsigned long long)h->hits, (unsigned long long)h->misses,
			(unsigned long long)h->chunks_fetched, (unsigned long long)h->bytes_fetched,
			(unsigned long long)h->fetch_errors, (unsigned long long)h->retries,
			(unsigned long long)(n ? h->fetch_ms / n : 0), prefetch);
}
