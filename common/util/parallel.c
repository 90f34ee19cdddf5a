#include "util/parallel.h"

void parallel_run(void *jobs, size_t size, int n, int max, void *(*fn)(void *))
{
#define JOB(i) ((struct parallel_job *)((char *)jobs + (size_t)(i) * size))
	for (int start = 0; start < n; start += max) {
		int end = n - start > max ? start + max : n;
		for (int i = start; i < end; i++) {
			if (!JOB(i)->on)
				continue;
			JOB(i)->threaded = !pthread_create(&JOB(i)->thread, NULL, fn, JOB(i));
			if (!JOB(i)->threaded)
				fn(JOB(i));   /* no thread: in line */
		}
		for (int i = start; i < end; i++)
			if (JOB(i)->threaded)
				pthread_join(JOB(i)->thread, NULL);
	}
#undef JOB
}
