#include "image/fetch_pool.h"

#include "util/log.h"
#include "util/timeutil.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#define MAX_THREADS 8

struct fetch_pool {
	const struct fetch_pool_ops *ops;
	void *ctx;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	struct fetch_job *head, **tail;   /* in arrival order */
	bool stop;
	unsigned n_threads;
	pthread_t threads[MAX_THREADS];
	struct aio_poster poster;
	uint64_t expire_ms;
	struct log_limit expired_said;   /* (lock) */
};

static __thread uint64_t job_queued_ms;

uint64_t fetch_pool_take_queued_ms(void)
{
	uint64_t t = job_queued_ms;

	job_queued_ms = 0;
	return t;
}

static void *pool_main(void *arg)
{
	struct fetch_pool *p = arg;
	void *mine = p->ops->thread_init ? p->ops->thread_init(p->ctx) : NULL;

	pthread_mutex_lock(&p->lock);
	for (;;) {
		struct fetch_job *job = p->head;
		if (!job) {
			if (p->stop)
				break;
			pthread_cond_wait(&p->cond, &p->lock);
			continue;
		}
		if (!(p->head = job->next))
			p->tail = &p->head;
		uint64_t waited = now_ms() - job->queued_ms;
		bool expired = p->expire_ms && waited > p->expire_ms;
		unsigned unsaid = 0;
		bool say = expired && log_limit_due(&p->expired_said, p->expire_ms, now_ms(), &unsaid);
		pthread_mutex_unlock(&p->lock);
		if (say)
			log_err("a remote layer's read waited %llu ms for a fetch thread, past the %llu ms "
				"a read may take (--http-timeout x tries): it fails (said once per %llu ms; "
				"%u more since it was last said)", (unsigned long long)waited,
				(unsigned long long)p->expire_ms, (unsigned long long)p->expire_ms, unsaid);
		job_queued_ms = job->queued_ms;
		int res = expired ? -ETIMEDOUT : p->ops->run(p->ctx, mine, job);
		job_queued_ms = 0;
		struct layer_io *io = job->io;
		uint64_t off = io->off;
		uint32_t len = io->len;
		int lost = aio_poster_post(&p->poster, io->aio, &io->areq, res);
		if (lost)   /* (the job may be gone with its request) */
			log_err("a remote layer's fetch thread: handing a request (%u bytes at %llu) back "
				"to its queue: %s; the request is lost (its device hangs until deleted)",
				len, (unsigned long long)off, strerror(-lost));
		pthread_mutex_lock(&p->lock);
	}
	pthread_mutex_unlock(&p->lock);
	if (p->ops->thread_exit)
		p->ops->thread_exit(p->ctx, mine);
	return NULL;
}

int fetch_pool_start(struct fetch_pool **out, unsigned threads, const struct fetch_pool_ops *ops,
		     void *ctx, uint64_t expire_ms)
{
	struct fetch_pool *p = calloc(1, sizeof(*p));

	if (!p)
		return -ENOMEM;
	if (aio_poster_init(&p->poster)) {
		free(p);
		return -ENOMEM;
	}
	p->ops = ops;
	p->ctx = ctx;
	p->expire_ms = expire_ms;
	p->tail = &p->head;
	pthread_mutex_init(&p->lock, NULL);
	pthread_cond_init(&p->cond, NULL);
	while (p->n_threads < threads && p->n_threads < MAX_THREADS &&
	       !pthread_create(&p->threads[p->n_threads], NULL, pool_main, p))
		p->n_threads++;
	if (!p->n_threads) {
		fetch_pool_stop(p);
		return -EAGAIN;
	}
	*out = p;
	return 0;
}

void fetch_pool_queue(struct fetch_pool *p, struct fetch_job *job, aio_complete_fn done)
{
	job->io->areq.complete = done;
	aio_expect(job->io->aio);
	job->next = NULL;
	job->queued_ms = now_ms();
	pthread_mutex_lock(&p->lock);
	*p->tail = job;
	p->tail = &job->next;
	pthread_cond_signal(&p->cond);
	pthread_mutex_unlock(&p->lock);
}

void fetch_pool_stop(struct fetch_pool *p)
{
	if (!p)
		return;
	pthread_mutex_lock(&p->lock);
	p->stop = true;
	pthread_cond_broadcast(&p->cond);
	pthread_mutex_unlock(&p->lock);
	for (unsigned i = 0; i < p->n_threads; i++)
		pthread_join(p->threads[i], NULL);
	aio_poster_exit(&p->poster);
	pthread_mutex_destroy(&p->lock);
	pthread_cond_destroy(&p->cond);
	free(p);
}
