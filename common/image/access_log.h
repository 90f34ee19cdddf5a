/* Recording which chunks of a stack's remote images a start touches, and
 * prefetching them on a later start (docs/access-trace.md). The remote
 * layers register their images and note each chunk they read; the access
 * log keeps the first touches, writes the trace, and runs the prefetch
 * threads of a replayed trace. It enters the stack as a pass-through top
 * layer, whose close stops the prefetch and saves the recording before
 * the layers below go away. */
#ifndef UBLK_ACCESS_LOG_H
#define UBLK_ACCESS_LOG_H

#include "image/access_trace.h"
#include "image/layer.h"

#include <stdbool.h>
#include <stdint.h>

struct access_log;
struct chunk_image;
struct http_opts;
struct http_source;

/* connections of a replay, besides the layers' own: at an 80 ms round trip
 * (docs/access-trace.md) 8 fetch a boot's trace in 6.8 s where 4 took 9.9 */
#define ACCESS_PREFETCH_CONNECTIONS 8
#define ACCESS_PREFETCH_MAX_CONNECTIONS 32
#define ACCESS_DEFAULT_RECORD_MS (60ull * 1000)
#define ACCESS_DEFAULT_RECORD_BYTES (1ull << 30)
/* entries a recording keeps at most: their text stays within
 * TRACE_MAX_BYTES (an entry line is at most ~32 bytes) */
#define ACCESS_MAX_RECORDED 100000

struct access_log_opts {
	const char *record_path;        /* write the trace here; NULL: no recording */
	uint64_t record_ms;             /* first touches of this long (0: the default) */
	uint64_t record_bytes;          /* or until chunks of this many bytes (0: the default) */
	const char *label;              /* the trace's label (the device's name), or NULL */
	const char *replay;             /* a trace FILE or URL to prefetch; NULL: none */
	unsigned connections;           /* of the prefetch; 0: ACCESS_PREFETCH_CONNECTIONS */
	const struct http_opts *http;   /* how a trace URL is read */
};

/* 0, or -errno with why (a replay trace that cannot be read). */
int access_log_new(const struct access_log_opts *o, struct access_log **out, char *why,
		   size_t whylen);
/* A remote image of the stack, in the order the stack opens them: its
 * index for access_note (>= 0); -1 for a NULL log; -ENOSPC past
 * TRACE_MAX_IMAGES, -ENOMEM. src and ci must stay valid until the log's
 * layer is closed. */
int access_log_image(struct access_log *a, enum trace_role role, const struct http_source *src,
		     struct chunk_image *ci);
/* Chunk chunk of image img was read (or written through to it): cheap
 * after the first touch; nothing for a NULL log or img < 0. */
void access_note(struct access_log *a, int img, uint64_t chunk, bool write);
/* On a thread that may wait (a fetch thread, never a queue thread), before
 * fetching chunk of img for a read: while the prefetch is fetching it
 * already, wait for that transfer, which began first, instead of starting
 * another. True if there was one (look in the chunk cache again: it
 * failed if the chunk is not there). */
bool access_prefetch_wait(struct access_log *a, int img, uint64_t chunk);
/* Check the replayed trace against the registered images, then put the
 * log on top of the stack (top is the stack; *out the new top) and start
 * recording and prefetching. On failure (-EINVAL: a trace of other
 * images, with why) the log and top are left to the caller, who closes
 * top before freeing the log (top's remote layers look at it). */
int access_log_attach(struct access_log *a, struct layer *top, struct layer **out, char *why,
		      size_t whylen);
/* Write the recording now (it goes on). -ENOENT if the stack records
 * nothing; top is the stack's top layer. */
int access_log_save_now(struct layer *top, char *why, size_t whylen);
/* The device goes (layer cancel): prefetch transfers end at once, no more
 * start, and a fetch thread waiting for one goes on. Recording goes on.
 * Any thread; a NULL a does nothing. */
void access_log_cancel(struct access_log *a);
/* Before attach, or after its failure, only: free everything. */
void access_log_free(struct access_log *a);

#endif
