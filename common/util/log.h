/* Messages: one line each, "prog: context: reason", on stderr. stdout is
 * reserved for results. Debug output is enabled by UBLK_DEBUG=1 (or -v). */
#ifndef UBLK_LOG_H
#define UBLK_LOG_H

#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>

void log_init(const char *prog);
const char *log_prog(void);
void log_set_debug(int level);
int log_debug_level(void);
/* Append messages to this fd too (the daemon's log file); -1 = none.
 * Once max_bytes were written to it (counting what it had), rotate(arg)
 * moves it aside and returns the fd of a new one, or -errno: then the file
 * is emptied instead. A file of a server that logs a failing backend for
 * days stays bounded. */
void log_set_file(int fd, uint64_t max_bytes, int (*rotate)(void *arg), void *arg);

void log_err(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* A message said at most once a period (a stalled server fails every
 * read at once): whether it is due now, with *unsaid the times it was
 * not since it was last said. The caller holds the lock that guards it. */
struct log_limit {
	uint64_t said_ms;
	unsigned unsaid;
	bool said;
};
bool log_limit_due(struct log_limit *l, uint64_t period_ms, uint64_t now, unsigned *unsaid);
void log_info(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void log_dbg(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#endif
