#include "util/log.h"
#include "util/exitcodes.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static const char *prog = "ublk";
static int debug_level;
static int file_fd = -1;

void log_init(const char *name)
{
	const char *slash = strrchr(name, '/');
	const char *env = getenv("UBLK_DEBUG");

	prog = slash ? slash + 1 : name;
	if (env && *env)
		debug_level = atoi(env);
}

const char *log_prog(void) { return prog; }
void log_set_debug(int level) { debug_level = level; }
int log_debug_level(void) { return debug_level; }
void log_set_file(int fd) { file_fd = fd; }

/* One write() per line so concurrent queue threads never interleave. */
static void emit(const char *tag, const char *fmt, va_list ap)
{
	char line[1024];
	int n = snprintf(line, sizeof(line), "%s: %s", prog, tag);

	if (n < 0 || (size_t)n >= sizeof(line))
		return;
	int m = vsnprintf(line + n, sizeof(line) - n - 1, fmt, ap);
	if (m < 0)
		return;
	n += m;
	if ((size_t)n > sizeof(line) - 2)
		n = sizeof(line) - 2;
	line[n++] = '\n';
	if (write(STDERR_FILENO, line, n) < 0) { /* nothing sensible to do */ }
	if (file_fd >= 0) {
		char stamp[48];
		struct timespec ts;
		struct tm tm;
		clock_gettime(CLOCK_REALTIME, &ts);
		gmtime_r(&ts.tv_sec, &tm);
		int s = (int)strftime(stamp, sizeof(stamp), "%Y-%m-%dT%H:%M:%SZ ", &tm);
		if (write(file_fd, stamp, s) < 0 || write(file_fd, line, n) < 0) { }
	}
}

void log_err(const char *fmt, ...)
{
	va_list ap;
	int saved = errno;
	va_start(ap, fmt);
	emit("", fmt, ap);
	va_end(ap);
	errno = saved;
}

void log_info(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	emit("", fmt, ap);
	va_end(ap);
}

void log_dbg(const char *fmt, ...)
{
	va_list ap;
	if (debug_level <= 0)
		return;
	va_start(ap, fmt);
	emit("debug: ", fmt, ap);
	va_end(ap);
}

int exit_code_for(int err)
{
	switch (err < 0 ? -err : err) {
	case 0: return EXIT_OK;
	case EPERM: case EACCES: return EXIT_PERM;
	case ENODEV: case ENOENT: return EXIT_NO_DEVICE;
	case ETIMEDOUT: return EXIT_TIMEOUT;
	case EBUSY: return EXIT_BUSY;
	case EINVAL: return EXIT_USAGE;
	default: return EXIT_FAIL;
	}
}
