/* Threads that run a layer's blocking reads (a remote frame or chunk) off
 * the queue threads: a queue thread queues the request, a pool thread
 * runs it and posts the result back to the request's ring (aio_poster),
 * where the layer's completion continues on the queue thread. */
#ifndef UBLK_FETCH_POOL_H
#define UBLK_FETCH_POOL_H

#include "image/layer.h"

struct fetch_pool;

#define FETCH_POOL_THREADS 2   /* what a layer starts: fetches of one image serialize anyway */

/* A queued request: in the layer's per-request state. */
struct fetch_job {
	struct layer_io *io;
	struct fetch_job *next;
	uint64_t queued_ms;
};

struct fetch_pool_ops {
	/* Optional: each thread's own state (buffers), and its release. */
	void *(*thread_init)(void *ctx);
	void (*thread_exit)(void *ctx, void *mine);
	/* The blocking work of job: 0 or -errno, what job->io's completion gets. */
	int (*run)(void *ctx, void *mine, struct fetch_job *job);
};

/* 0, or -errno when no thread (or no poster) could start. A job that
 * waited expire_ms (0: for ever) for a thread, queued behind the fetches
 * of a stalled server, ends with -ETIMEDOUT instead of running. */
int fetch_pool_start(struct fetch_pool **out, unsigned threads, const struct fetch_pool_ops *ops,
		     void *ctx, uint64_t expire_ms);
/* Run job on a pool thread; then done(&job->io->areq, res) runs on the
 * ring of job->io. */
void fetch_pool_queue(struct fetch_pool *p, struct fetch_job *job, aio_complete_fn done);
/* On a pool thread, in a job's run: when the job was queued, once (then
 * 0, as on any other thread). Its first remote read counts the wait for
 * a thread against its budget, so the job still ends within twice it. */
uint64_t fetch_pool_take_queued_ms(void);
/* Stop and join the threads once the queued jobs are run. */
void fetch_pool_stop(struct fetch_pool *p);

#endif
