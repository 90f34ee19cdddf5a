/* Running one piece of work per item on threads, a bounded number at a
 * time (the pool's parallel stops and recoveries). */
#ifndef UBLK_PARALLEL_H
#define UBLK_PARALLEL_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>

/* The head of each item of work. */
struct parallel_job {
	pthread_t thread;
	bool on;                /* to run */
	bool threaded;          /* runs in thread (else it ran in line) */
};

/* Run fn on every job that is on, at most max at a time; jobs are size
 * bytes apart and start with their struct parallel_job. A job whose
 * thread cannot start runs in line. */
void parallel_run(void *jobs, size_t size, int n, int max, void *(*fn)(void *));

#endif
