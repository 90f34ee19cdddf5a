#include "util/parallel.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>

struct runner {
	char *jobs;
	size_t size;
	int n;
	void *(*fn)(void *);
	atomic_int next;        /* the first job no thread has taken */
};

static void *take_jobs(void *arg)
{
	struct runner *r = arg;

	for (int i; (i = atomic_fetch_add(&r->next, 1)) < r->n;) {
		struct parallel_job *job = (struct parallel_job *)(r->jobs + (size_t)i * r->size);
		if (job->on)
			r->fn(job);
	}
	return NULL;
}

void parallel_run(void *jobs, size_t size, int n, int max, void *(*fn)(void *))
{
	struct runner r = { .jobs = jobs, .size = size, .n = n, .fn = fn };
	int on = 0, started = 0;
	pthread_t *threads;

	for (int i = 0; i < n; i++)
		on += ((struct parallel_job *)(r.jobs + (size_t)i * size))->on;
	if (max < 1)
		max = 1;
	if (max > on)
		max = on;
	threads = max > 0 ? calloc((size_t)max, sizeof(*threads)) : NULL;
	while (threads && started < max && !pthread_create(&threads[started], NULL, take_jobs, &r))
		started++;
	if (started < max)
		take_jobs(&r);   /* fewer threads than asked: the caller is one more */
	for (int i = 0; i < started; i++)
		pthread_join(threads[i], NULL);
	free(threads);
}
