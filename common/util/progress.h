/* Progress of a long operation on stderr, for an operator at a terminal:
 * "export:  42%  27.0 MiB of 64.0 MiB  120 MiB/s  0:03 left", redrawn at
 * most ten times a second. */
#ifndef UBLK_PROGRESS_H
#define UBLK_PROGRESS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct progress {
	bool on;
	const char *what;
	uint64_t unit;          /* bytes per counted item (0: 1, the counts are bytes) */
	uint64_t start_ms, last_ms;
	int tty;                /* 0: not known yet, 1: stderr is a terminal, -1: it is not */
	bool open;              /* a terminal line drawn but not ended */
};

/* Show done of total if p is on; the last call (done >= total) ends the
 * line. Where stderr is no terminal (a log, a journal), a plain line
 * every 10 s instead of redrawing, and the last. */
void progress_show(struct progress *p, uint64_t done, uint64_t total);
/* End a line drawn on a terminal, so that a message printed next (a
 * failure) starts a line of its own. */
void progress_end(struct progress *p);
/* bytes in the unit that suits it: "512 B", "27.0 MiB", "1.2 GiB" */
void progress_bytes(uint64_t bytes, char *buf, size_t len);

#endif
