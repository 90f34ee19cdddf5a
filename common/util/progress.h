/* Progress of a long operation on stderr, for an operator at a terminal:
 * "what:  42% (done of total)", redrawn at most ten times a second. */
#ifndef UBLK_PROGRESS_H
#define UBLK_PROGRESS_H

#include <stdbool.h>
#include <stdint.h>

struct progress {
	bool on;
	const char *what;
	uint64_t last_ms;
};

/* Show done of total if p is on; the last call (done >= total) ends the line. */
void progress_show(struct progress *p, uint64_t done, uint64_t total);

#endif
