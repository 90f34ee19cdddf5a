#include "util/log.h"
#include "util/exitcodes.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

static const char *prog = "ublk";
static int debug_level;
static _Atomic int file_fd = -1;
/* rotation of the file: what it holds, and one rotation at a time */
static _Atomic uint64_t file_bytes;
static uint64_t file_max;
static int (*file_rotate)(void *arg);
static void *file_rotate_arg;
static pthread_mutex_t rotate_lock = PTHREAD_MUTEX_INITIALIZER;

void log_init(const char *name)
{
	const char *slash = strrchr(name, '/');
	const char *env = getenv("UBLK_DEBUG");

	prog = slash ? slash + 1 : name;
	if (env && *env) {
		/* a level 0-9; any other value (UBLK_DEBUG=yes) means on */
		char *end;
		long v = strtol(env, &end, 10);
		debug_level = *end || v < 0 || v > 9 ? 1 : (int)v;
	}
}

const char *log_prog(void) { return prog; }
void log_set_debug(int level) { debug_level = level; }
int log_debug_level(void) { return debug_level; }
void log_set_file(int fd, uint64_t max_bytes, int (*rotate)(void *arg), void *arg)
{
	struct stat st;

	file_max = max_bytes;
	file_rotate = rotate;
	file_rotate_arg = arg;
	atomic_store(&file_bytes, fd >= 0 && !fstat(fd, &st) ? (uint64_t)st.st_size : 0);
	atomic_store(&file_fd, fd);
}

/* One thread rotates, the others wait for it (the file they would write
 * meanwhile is the one being moved aside); the rotation itself may log
 * (a refused state directory), and must not wait for itself. */
static __thread bool rotating;

static void rotate_file(void)
{
	if (rotating)
		return;
	pthread_mutex_lock(&rotate_lock);
	rotating = true;
	if (atomic_load(&file_bytes) >= file_max) {
		int cur = atomic_load(&file_fd);
		int fd = file_rotate(file_rotate_arg);
		/* the new file under the old number: a thread about to write to
		 * it writes to the new file, never to a number reused meanwhile */
		if (fd < 0 || dup3(fd, cur, O_CLOEXEC) < 0) {
			if (ftruncate(cur, 0)) { /* nothing more to try: it keeps growing */ }
		}
		if (fd >= 0)
			close(fd);
		atomic_store(&file_bytes, 0);
	}
	rotating = false;
	pthread_mutex_unlock(&rotate_lock);
}

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
	int fd = atomic_load(&file_fd);
	if (fd >= 0) {
		char stamp[48];
		struct timespec ts;
		struct tm tm;
		clock_gettime(CLOCK_REALTIME, &ts);
		gmtime_r(&ts.tv_sec, &tm);
		int s = (int)strftime(stamp, sizeof(stamp), "%Y-%m-%dT%H:%M:%SZ ", &tm);
		/* one write: lines of concurrent threads never interleave */
		struct iovec iov[2] = { { stamp, (size_t)s }, { line, (size_t)n } };
		if (writev(fd, iov, 2) < 0) { /* nothing sensible to do */ }
		if (file_rotate && atomic_fetch_add(&file_bytes, (uint64_t)(s + n)) + (uint64_t)(s + n) >= file_max)
			rotate_file();
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

int exit_code_for_image(int err)
{
	switch (err < 0 ? -err : err) {
	case 0: return EXIT_OK;
	case EPERM: case EACCES: return EXIT_PERM;
	case ETIMEDOUT: return EXIT_TIMEOUT;
	case ENOMEM: return EXIT_FAIL;
	default: return EXIT_BAD_IMAGE;
	}
}

bool log_limit_due(struct log_limit *l, uint64_t period_ms, uint64_t now, unsigned *unsaid)
{
	if (l->said && now - l->said_ms < period_ms) {
		l->unsaid++;
		return false;
	}
	*unsaid = l->unsaid;
	l->unsaid = 0;
	l->said_ms = now;
	l->said = true;
	return true;
}
