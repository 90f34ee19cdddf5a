/* Running one piece of work per item on a bounded number of threads (the
 * pool's parallel stops and recoveries). */
#ifndef UBLK_PARALLEL_H
#define UBLK_PARALLEL_H

#include <stdbool.h>
#include <stddef.h>

/* The head of each item of work. */
struct parallel_job {
	bool on;                /* to run */
};

/* Run fn on every job that is on, at most max at a time: max threads take
 * the next job as each finishes its last, so one slow job holds up only
 * its own thread (not a whole wave). Jobs are size bytes apart and start
 * with their struct parallel_job. Where threads cannot start, the caller
 * runs the jobs left itself. Returns when every job has run. */
void parallel_run(void *jobs, size_t size, int n, int max, void *(*fn)(void *));

#endif
