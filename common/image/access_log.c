/*
 * The access log of a stack over remote images (docs/access-trace.md).
 *
 * Recording keeps, per image, a bitmap of chunks touched: after a chunk's
 * first touch a note is one relaxed load. The first touch takes the lock
 * and appends an entry; the window's end (time or bytes) is noticed there
 * and by a small thread that writes the trace when the window ends, so no
 * queue thread ever writes a file.
 *
 * Replay runs one thread per connection (ACCESS_PREFETCH_CONNECTIONS),
 * taking the trace's chunks in order and skipping those already cached.
 * A read that needs a chunk now is fetched by its layer on the layer's own
 * connections, never queued behind the prefetch: the prefetch only shares
 * the bandwidth. Each prefetch transfer is cancelled when the stack closes.
 */
#include "image/access_log.h"
#include "image/chunkcache.h"
#include "image/http.h"
#include "image/layer_http.h"
#include "util/log.h"
#include "util/timeutil.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct access_image {
	struct trace_image t;
	const struct http_source *src;
	struct chunk_image *ci;
	_Atomic uint8_t *seen;          /* recorded touches */
	_Atomic uint8_t *brought;       /* chunks the prefetch stored */
	_Atomic uint8_t *fetching;      /* chunks the prefetch is fetching now */
};

struct access_log {
	struct layer l;
	struct access_image img[TRACE_MAX_IMAGES];
	unsigned nimg;
	pthread_mutex_t lock;
	pthread_mutex_t save_lock;      /* saves in order; taken before lock */
	pthread_cond_t cond;
	pthread_cond_t fetched;         /* a prefetch transfer ended */
	atomic_bool stop;
	atomic_bool cancel;             /* the device goes: no more prefetch */

	/* recording */
	char *record_path;
	atomic_bool recording;
	bool saved_end;                 /* the window's trace is written */
	uint64_t start_mono, record_ms, record_bytes, bytes;
	struct access_trace rec;
	pthread_t recorder;
	bool recorder_started;

	/* replay */
	struct access_trace plan;
	bool replaying;
	atomic_size_t next;             /* the plan's next entry to take */
	_Atomic uint64_t done, hits, reads, errors;
	pthread_t fetchers[ACCESS_PREFETCH_MAX_CONNECTIONS];
	unsigned nfetchers, connections;
};

static bool bit_test(_Atomic uint8_t *map, uint64_t i)
{
	return atomic_load_explicit(&map[i / 8], memory_order_relaxed) & (1u << (i % 8));
}

/* The previous state of the bit. */
static bool bit_set(_Atomic uint8_t *map, uint64_t i)
{
	return atomic_fetch_or(&map[i / 8], (uint8_t)(1u << (i % 8))) & (1u << (i % 8));
}

static void free_maps(struct access_image *m)
{
	free((void *)m->seen);
	free((void *)m->brought);
	free((void *)m->fetching);
}

/* Read a trace from a URL: small, one range request. */
static int load_url(const char *url, const struct http_opts *ho, struct access_trace *t,
		    char *why, size_t whylen)
{
	struct http_source src;
	struct http_conn *c = NULL;
	char *buf = NULL, sub[700], shown[1024];
	int ret;

	http_url_for_log(url, shown, sizeof(shown));
	if ((ret = http_source_open(&src, url, ho, sub, sizeof(sub)))) {
		snprintf(why, whylen, "%s", sub);
		return ret;
	}
	if (src.size > TRACE_MAX_BYTES) {
		snprintf(why, whylen, "%s: %llu bytes, more than a trace may have (%u)", shown,
			 (unsigned long long)src.size, TRACE_MAX_BYTES);
		ret = -EINVAL;
	} else if (!(buf = malloc(src.size)) || !(c = http_conn_new())) {
		ret = -ENOMEM;
		snprintf(why, whylen, "%s: out of memory", shown);
	} else if ((ret = http_read(c, &src, 0, (uint32_t)src.size, buf, NULL, sub, sizeof(sub)))) {
		snprintf(why, whylen, "%s", sub);
	} else if ((ret = trace_parse(buf, src.size, t, sub, sizeof(sub)))) {
		snprintf(why, whylen, "%s: %s", shown, sub);
	}
	http_conn_free(c);
	free(buf);
	http_source_close(&src);
	return ret;
}

int access_log_new(const struct access_log_opts *o, struct access_log **out, char *why,
		   size_t whylen)
{
	struct access_log *a = calloc(1, sizeof(*a));
	int ret = -ENOMEM;

	if (!a)
		return -ENOMEM;
	pthread_condattr_t monotonic;
	pthread_condattr_init(&monotonic);
	pthread_condattr_setclock(&monotonic, CLOCK_MONOTONIC);    /* the window's end */
	pthread_mutex_init(&a->lock, NULL);
	pthread_mutex_init(&a->save_lock, NULL);
	pthread_cond_init(&a->cond, &monotonic);
	pthread_cond_init(&a->fetched, NULL);
	pthread_condattr_destroy(&monotonic);
	if (o->record_path && !(a->record_path = strdup(o->record_path)))
		goto fail;
	a->record_ms = o->record_ms ? o->record_ms : ACCESS_DEFAULT_RECORD_MS;
	a->record_bytes = o->record_bytes ? o->record_bytes : ACCESS_DEFAULT_RECORD_BYTES;
	a->connections = o->connections && o->connections <= ACCESS_PREFETCH_MAX_CONNECTIONS ?
			 o->connections : ACCESS_PREFETCH_CONNECTIONS;
	snprintf(a->rec.label, sizeof(a->rec.label), "%s", o->label ? o->label : "-");
	if (o->replay) {
		ret = http_is_url(o->replay) ? load_url(o->replay, o->http, &a->plan, why, whylen) :
		      trace_load(o->replay, &a->plan, why, whylen);
		if (ret) {
			/* which file of the command line it is */
			static const char what[] = "prefetch trace: ";
			size_t n = strlen(why);
			if (n && n + sizeof(what) <= whylen) {
				memmove(why + sizeof(what) - 1, why, n + 1);
				memcpy(why, what, sizeof(what) - 1);
			}
			goto fail;
		}
		a->replaying = true;
	}
	*out = a;
	return 0;
fail:
	if (ret == -ENOMEM && !why[0])
		snprintf(why, whylen, "out of memory");
	access_log_free(a);
	return ret;
}

int access_log_image(struct access_log *a, enum trace_role role, const struct http_source *src,
		     struct chunk_image *ci)
{
	if (!a)
		return -1;
	if (a->nimg == TRACE_MAX_IMAGES)
		return -ENOSPC;
	struct access_image *m = &a->img[a->nimg];
	size_t bytes = (size_t)((ci->nchunks + 7) / 8);

	m->t.role = role;
	if (strlen(ci->identity) != 64)
		return -EINVAL;         /* not an open chunk cache image: cannot be */
	memcpy(m->t.identity, ci->identity, 65);
	m->t.size = ci->size;
	m->t.chunk_size = ci->chunk_size;
	m->src = src;
	m->ci = ci;
	/* calloc'd: untouched pages of a big image's bitmaps cost nothing */
	m->seen = calloc(bytes ? bytes : 1, 1);
	m->brought = calloc(bytes ? bytes : 1, 1);
	m->fetching = calloc(bytes ? bytes : 1, 1);
	if (!m->seen || !m->brought || !m->fetching) {
		free_maps(m);
		return -ENOMEM;
	}
	a->rec.images[a->nimg] = m->t;
	a->rec.nimages = ++a->nimg;
	return (int)a->nimg - 1;
}

void access_note(struct access_log *a, int img, uint64_t chunk, bool write)
{
	if (!a || img < 0 || (unsigned)img >= a->nimg || chunk >= a->img[img].ci->nchunks)
		return;
	struct access_image *m = &a->img[img];

	if (a->replaying && !write) {
		atomic_fetch_add_explicit(&a->reads, 1, memory_order_relaxed);
		if (bit_test(m->brought, chunk))
			atomic_fetch_add_explicit(&a->hits, 1, memory_order_relaxed);
	}
	if (!atomic_load_explicit(&a->recording, memory_order_relaxed) || bit_test(m->seen, chunk))
		return;
	pthread_mutex_lock(&a->lock);
	uint64_t t = now_ms() - a->start_mono;
	if (!atomic_load(&a->recording) || bit_set(m->seen, chunk)) {
		/* recorded meanwhile, or the window closed */
	} else if (t > a->record_ms || a->bytes >= a->record_bytes || a->rec.n >= ACCESS_MAX_RECORDED) {
		atomic_store(&a->recording, false);
		pthread_cond_broadcast(&a->cond);
	} else if (trace_add(&a->rec, (uint16_t)img, chunk, t, write)) {
		log_err("--record-access %s: out of memory: the recording ends", a->record_path);
		atomic_store(&a->recording, false);
		pthread_cond_broadcast(&a->cond);
	} else {
		a->bytes += chunk_image_len(m->ci, chunk);
	}
	pthread_mutex_unlock(&a->lock);
}

/* Write the recording so far: its text made under a->lock, written (and
 * fsync'ed) outside it, where a queue thread noting a first touch would
 * wait for the disk; save_lock keeps an older text from landing last. */
static int save(struct access_log *a, char *why, size_t whylen)
{
	char sub[600] = "", *text = NULL;
	size_t len = 0;
	int ret;

	pthread_mutex_lock(&a->save_lock);
	pthread_mutex_lock(&a->lock);
	ret = trace_format(&a->rec, &text, &len);
	pthread_mutex_unlock(&a->lock);
	if (ret)
		snprintf(sub, sizeof(sub), "%s", strerror(-ret));
	else
		ret = trace_write_text(a->record_path, text, len, sub, sizeof(sub));
	pthread_mutex_unlock(&a->save_lock);
	free(text);
	if (ret)
		snprintf(why, whylen, "--record-access %s: %s", a->record_path, sub);
	return ret;
}

/* Ends the window on time (a note ends it on bytes) and writes the trace. */
static void *recorder_main(void *arg)
{
	struct access_log *a = arg;
	char why[700];

	pthread_mutex_lock(&a->lock);
	while (atomic_load(&a->recording) && !atomic_load(&a->stop)) {
		uint64_t now = now_ms(), end = a->start_mono + a->record_ms;
		if (now >= end)
			break;
		struct timespec ts;
		clock_gettime(CLOCK_MONOTONIC, &ts);
		uint64_t ns = (uint64_t)ts.tv_nsec + (end - now) * 1000000ull;
		ts.tv_sec += (time_t)(ns / 1000000000ull);
		ts.tv_nsec = (long)(ns % 1000000000ull);
		pthread_cond_timedwait(&a->cond, &a->lock, &ts);
	}
	atomic_store(&a->recording, false);
	bool nothing = !a->rec.n;
	pthread_mutex_unlock(&a->lock);
	if (nothing)   /* nothing recorded: as log_close, nothing written */
		return NULL;
	if (save(a, why, sizeof(why)))
		log_err("%s", why);
	else
		log_info("--record-access %s: %zu chunks of %u images recorded", a->record_path, a->rec.n,
			 a->nimg);
	pthread_mutex_lock(&a->lock);
	a->saved_end = true;
	pthread_mutex_unlock(&a->lock);
	return NULL;
}

static void *prefetch_main(void *arg)
{
	struct access_log *a = arg;
	struct http_conn *c = http_conn_new();
	char why[700];

	if (c)
		http_conn_cancel_on(c, &a->cancel);
	for (size_t i; c && !atomic_load(&a->cancel) && (i = atomic_fetch_add(&a->next, 1)) < a->plan.n;) {
		const struct trace_entry *e = &a->plan.entries[i];
		struct access_image *m = &a->img[e->image];
		int ret = 0;

		if (!chunk_present(m->ci, e->chunk)) {
			bit_set(m->fetching, e->chunk);
			if (!(ret = chunk_fetch(m->ci, c, m->src, e->chunk, NULL, why, sizeof(why))))
				bit_set(m->brought, e->chunk);
			pthread_mutex_lock(&a->lock);
			atomic_fetch_and(&m->fetching[e->chunk / 8], (uint8_t)~(1u << (e->chunk % 8)));
			pthread_cond_broadcast(&a->fetched);
			pthread_mutex_unlock(&a->lock);
		}
		if (ret && !atomic_load(&a->cancel)) {
			/* the read that needs it will fetch it, and say what fails */
			if (!atomic_fetch_add(&a->errors, 1))
				log_err("--prefetch-trace: chunk %llu of image %u: %s",
					(unsigned long long)e->chunk, e->image,
					why);
		}
		atomic_fetch_add(&a->done, 1);
	}
	http_conn_free(c);
	return NULL;
}

bool access_prefetch_wait(struct access_log *a, int img, uint64_t chunk)
{
	if (!a || img < 0 || (unsigned)img >= a->nimg || chunk >= a->img[img].ci->nchunks ||
	    !bit_test(a->img[img].fetching, chunk))
		return false;
	pthread_mutex_lock(&a->lock);
	while (bit_test(a->img[img].fetching, chunk) && !atomic_load(&a->cancel))
		pthread_cond_wait(&a->fetched, &a->lock);
	pthread_mutex_unlock(&a->lock);
	return true;
}

void access_log_cancel(struct access_log *a)
{
	if (!a)
		return;
	pthread_mutex_lock(&a->lock);
	atomic_store(&a->cancel, true);
	pthread_cond_broadcast(&a->fetched);
	pthread_mutex_unlock(&a->lock);
}

static void stop_threads(struct access_log *a)
{
	pthread_mutex_lock(&a->lock);
	atomic_store(&a->stop, true);
	atomic_store(&a->cancel, true);
	pthread_cond_broadcast(&a->cond);
	pthread_cond_broadcast(&a->fetched);
	pthread_mutex_unlock(&a->lock);
	for (unsigned i = 0; i < a->nfetchers; i++)
		pthread_join(a->fetchers[i], NULL);
	a->nfetchers = 0;
	if (a->recorder_started)
		pthread_join(a->recorder, NULL);
	a->recorder_started = false;
}

void access_log_free(struct access_log *a)
{
	if (!a)
		return;
	stop_threads(a);
	for (unsigned i = 0; i < a->nimg; i++)
		free_maps(&a->img[i]);
	trace_free(&a->rec);
	trace_free(&a->plan);
	free(a->record_path);
	pthread_mutex_destroy(&a->lock);
	pthread_mutex_destroy(&a->save_lock);
	pthread_cond_destroy(&a->cond);
	pthread_cond_destroy(&a->fetched);
	free(a);
}

/* A write reaches a base's chunks at the device's offsets. */
static void note_write(struct access_log *a, uint64_t off, uint32_t len)
{
	for (unsigned i = 0; i < a->nimg && atomic_load_explicit(&a->recording, memory_order_relaxed); i++)
		if (a->img[i].t.role == TRACE_BASE && len)
			for (uint64_t c = off / a->img[i].t.chunk_size;
			     c <= (off + len - 1) / a->img[i].t.chunk_size; c++)
				access_note(a, (int)i, c, true);
}

/* The pass-through layer: the same request goes below (no state of its
 * own, so the lower layer's per-request area is where it expects it). */
static void pass(struct layer *l, struct layer_io *io)
{
	if (io->op == LAYER_WRITE || io->op == LAYER_WRITE_ZEROES)
		note_write((struct access_log *)l, io->off, io->len);
	layer_submit(l->lower, io);
}

static int pass_place_write(struct layer *l, uint64_t off, uint32_t len, void **at)
{
	return layer_place_write(l->lower, off, len, at);
}

static int pass_write_placed(struct layer *l, uint64_t off, uint32_t len)
{
	int ret = layer_write_placed(l->lower, off, len);

	if (!ret)
		note_write((struct access_log *)l, off, len);
	return ret;
}

static enum layer_extent pass_extent(struct layer *l, uint64_t off, uint64_t *len)
{
	return layer_extent(l->lower, off, len);
}

/* Reads are noted where their chunks are (layer_http, blob), placed in
 * memory or not. */
static int pass_map(struct layer *l, uint64_t off, uint32_t len, struct layer_map *m)
{
	return layer_map(l->lower, off, len, m);
}

static int log_stats(struct layer *l, char *buf, size_t len)
{
	struct access_log *a = (struct access_log *)l;
	int n = layer_stack_stats(l->lower, buf, len);
	char mine[256];
	int m = 0;

	if (n < 2 || (size_t)n >= len || buf[n - 1] != '}')
		n = snprintf(buf, len, "{}");
	if (a->record_path) {
		pthread_mutex_lock(&a->lock);
		size_t recorded = a->rec.n;
		pthread_mutex_unlock(&a->lock);
		m = snprintf(mine, sizeof(mine), ",\"trace_recording\":%s,\"trace_recorded\":%zu",
			     atomic_load(&a->recording) ? "true" : "false", recorded);
	}
	if (a->replaying)
		m += snprintf(mine + m, sizeof(mine) - (size_t)m, ",\"trace_chunks\":%zu,"
			      "\"trace_chunks_done\":%llu,\"trace_reads\":%llu,\"trace_hits\":%llu",
			      a->plan.n, (unsigned long long)a->done, (unsigned long long)a->reads,
			      (unsigned long long)a->hits);
	if (!m || (size_t)(n - 1 + m + 2) > len)
		return n;
	if (n == 2)     /* {} below: no comma before the first */
		memmove(mine, mine + 1, (size_t)m--);
	memcpy(buf + n - 1, mine, (size_t)m);
	buf[n - 1 + m] = '}';
	buf[n + m] = 0;
	return n + m;
}

static void log_close(struct layer *l)
{
	struct access_log *a = (struct access_log *)l;
	struct layer *lower = l->lower;
	char why[700];

	stop_threads(a);   /* the recorder too: nothing else saves now */
	/* A recording with nothing in it (a start that failed, a device gone
	 * before its first read, a window without a read) writes nothing: the
	 * trace of an earlier start, or another file, stays as it was. */
	if (a->record_path && !a->saved_end && !a->rec.n)
		log_dbg("--record-access %s: nothing recorded: the file is left as it was",
			a->record_path);
	else if (a->record_path && !a->saved_end && save(a, why, sizeof(why)))
		log_err("%s", why);
	/* the layers below first: their fetch threads look at the log */
	layer_close(lower);
	access_log_free(a);
}

static const struct layer_ops log_ops = {
	.name = "access-log",
	.read = pass,
	.write = pass,
	.flush = pass,
	.discard = pass,
	.close = log_close,
	.stats = log_stats,
	.extent = pass_extent,
	.map = pass_map,
	.place_write = pass_place_write,
	.write_placed = pass_write_placed,
};

int access_log_attach(struct access_log *a, struct layer *top, struct layer **out, char *why,
		      size_t whylen)
{
	if (a->replaying) {
		struct access_trace mine = { .nimages = a->nimg };
		char sub[600];
		for (unsigned i = 0; i < a->nimg; i++)
			mine.images[i] = a->img[i].t;
		if (!trace_images_match(&a->plan, &mine, sub, sizeof(sub))) {
			snprintf(why, whylen, "--prefetch-trace: a trace of other images: %s (record "
				 "a trace of this version)", sub);
			return -EINVAL;
		}
	}
	layer_on(&a->l, &log_ops, top);
	a->l.maps = top->maps;
	a->start_mono = now_ms();
	struct timespec wall;
	clock_gettime(CLOCK_REALTIME, &wall);
	a->rec.start_ms = (uint64_t)wall.tv_sec * 1000 + (uint64_t)wall.tv_nsec / 1000000;
	if (a->record_path) {
		atomic_store(&a->recording, true);
		a->recorder_started = !pthread_create(&a->recorder, NULL, recorder_main, a);
		if (!a->recorder_started)
			log_err("--record-access %s: no thread to end the window: the trace is "
				"written when the device stops", a->record_path);
	}
	for (; a->replaying && a->nfetchers < a->connections; a->nfetchers++)
		if (pthread_create(&a->fetchers[a->nfetchers], NULL, prefetch_main, a))
			break;
	*out = &a->l;
	return 0;
}

int access_log_save_now(struct layer *top, char *why, size_t whylen)
{
	if (!top || top->ops != &log_ops || !((struct access_log *)top)->record_path) {
		snprintf(why, whylen, "the device records no access trace (--record-access)");
		return -ENOENT;
	}
	return save((struct access_log *)top, why, whylen);
}
