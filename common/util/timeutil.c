#include "util/timeutil.h"

#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + ts.tv_nsec;
}

uint64_t now_ms(void) { return now_ns() / 1000000ull; }

uint64_t wall_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000ull + (uint64_t)ts.tv_nsec / 1000000ull;
}

uint64_t ms_left(uint64_t deadline)
{
	uint64_t now = now_ms();
	return deadline > now ? deadline - now : 0;
}

uint64_t deadline_ms(uint64_t timeout_ms)
{
	uint64_t now = now_ms();
	return timeout_ms > UINT64_MAX - now ? UINT64_MAX : now + timeout_ms;
}

void sleep_ms(uint64_t ms)
{
	struct timespec ts = { .tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000 };
	while (nanosleep(&ts, &ts) && errno == EINTR)
		;
}

int poll_timeout(uint64_t ms)
{
	return ms > INT_MAX ? INT_MAX : (int)ms;
}

int pid_alive(pid_t pid)
{
	char path[64], state = 0;
	FILE *f;

	if (pid <= 0)
		return 0;
	if (kill(pid, 0) && errno == ESRCH)
		return 0;
	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	f = fopen(path, "r");
	if (!f)
		return 0;
	/* "pid (comm) S ...": comm may hold spaces and parens, so find the last ')' */
	char buf[512];
	size_t n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = 0;
	for (size_t i = n; i > 0; i--)
		if (buf[i - 1] == ')') {
			state = buf[i + 1];
			break;
		}
	return state && state != 'Z' && state != 'X';
}

int wait_pid_gone(pid_t pid, uint64_t timeout_ms)
{
	uint64_t deadline = deadline_ms(timeout_ms);
	int fd = (int)syscall(SYS_pidfd_open, pid, 0);

	if (fd < 0)
		return errno == ESRCH ? 0 : -errno;
	for (;;) {
		struct pollfd p = { .fd = fd, .events = POLLIN };
		uint64_t left = ms_left(deadline);
		int r = poll(&p, 1, poll_timeout(left > 100 ? 100 : left));
		if (r > 0 || !pid_alive(pid)) {
			close(fd);
			return 0;
		}
		if (!left) {
			close(fd);
			return -ETIMEDOUT;
		}
	}
}
