/* Messages: one line each, "prog: context: reason", on stderr. stdout is
 * reserved for results. Debug output is enabled by UBLK_DEBUG=1 (or -v). */
#ifndef UBLK_LOG_H
#define UBLK_LOG_H

#include <stdarg.h>

void log_init(const char *prog);
const char *log_prog(void);
void log_set_debug(int level);
int log_debug_level(void);
/* Append messages to this fd too (the daemon's log file); -1 = none. */
void log_set_file(int fd);

void log_err(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void log_info(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void log_dbg(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#endif
