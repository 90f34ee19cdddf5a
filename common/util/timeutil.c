#include "util/timeutil.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
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

/* Read /proc/PID/FILE into buf (NUL-terminated): its length, or -1. */
static ssize_t read_proc(pid_t pid, const char *file, char *buf, size_t size)
{
	char path[64];
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/%s", (int)pid, file);
	if (!(f = fopen(path, "r")))
		return -1;
	size_t n = fread(buf, 1, size - 1, f);
	fclose(f);
	buf[n] = 0;
	return (ssize_t)n;
}

/* The state letter and flags of /proc/PID/stat; 0 or -1. */
static int proc_stat(pid_t pid, char *state, unsigned *flags)
{
	char buf[512];
	/* "pid (comm) S ppid pgrp session tty tpgid flags ...": comm may hold
	 * spaces and parens, so start after the last ')' */
	if (read_proc(pid, "stat", buf, sizeof(buf)) < 0 || !strrchr(buf, ')'))
		return -1;
	return sscanf(strrchr(buf, ')') + 1, " %c %*d %*d %*d %*d %*d %u", state, flags) == 2 ? 0 : -1;
}

uint64_t pid_age_s(pid_t pid)
{
	char buf[512];
	unsigned long long start;
	struct timespec now;
	long hz = sysconf(_SC_CLK_TCK);

	/* starttime, field 22, in clock ticks since boot (after comm, as above) */
	if (pid <= 0 || hz <= 0 || read_proc(pid, "stat", buf, sizeof(buf)) < 0 ||
	    !strrchr(buf, ')') ||
	    sscanf(strrchr(buf, ')') + 1, " %*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %*u %*u "
		   "%*d %*d %*d %*d %*d %*d %llu", &start) != 1 ||
	    clock_gettime(CLOCK_BOOTTIME, &now))
		return UINT64_MAX;
	uint64_t started_s = start / (uint64_t)hz;
	return (uint64_t)now.tv_sec > started_s ? (uint64_t)now.tv_sec - started_s : 0;
}

int pid_alive(pid_t pid)
{
	char state = 0;
	unsigned flags;

	if (pid <= 0 || (kill(pid, 0) && errno == ESRCH) || proc_stat(pid, &state, &flags))
		return 0;
	return state != 'Z' && state != 'X';
}

/* SIGKILL in the process's or its main thread's pending set. */
static bool kill_pending(pid_t pid)
{
	char buf[4096];
	unsigned long long mask;

	if (read_proc(pid, "status", buf, sizeof(buf)) < 0)
		return false;
	for (const char *k = buf; (k = strstr(k, "Pnd:\t")); k += 5)
		if (sscanf(k + 5, "%llx", &mask) == 1 && mask & (1ull << (SIGKILL - 1)))
			return true;
	return false;
}

#define PF_EXITING_FLAG 0x4u   /* include/linux/sched.h */

int wait_pidfd(int fd, uint64_t timeout_ms)
{
	uint64_t deadline = deadline_ms(timeout_ms);

	for (;;) {
		struct pollfd p = { .fd = fd, .events = POLLIN };
		uint64_t left = ms_left(deadline);
		/* readable once every thread has exited: a zombie main thread
		 * alone does not make it so */
		if (poll(&p, 1, poll_timeout(left)) > 0)
			return 0;
		if (!left)
			return -ETIMEDOUT;
	}
}

int pid_alive_settled(pid_t pid, uint64_t timeout_ms)
{
	char state = 0;
	unsigned flags = 0;
	int fd, ret;

	if (pid <= 0)
		return 0;
	/* the pidfd first: what /proc then says is of this process, not of
	 * one that took its pid after it was reaped */
	fd = pidfd_of(pid);
	if (fd < 0)
		return pid_alive(pid);
	if (proc_stat(pid, &state, &flags))
		ret = 0;
	/* a zombie main thread may still have threads exiting, holding the
	 * process's files */
	else if (state != 'Z' && state != 'X' && !(flags & PF_EXITING_FLAG) && !kill_pending(pid))
		ret = 1;
	else
		ret = wait_pidfd(fd, timeout_ms) == -ETIMEDOUT ? PID_EXITING : 0;
	close(fd);
	return ret;
}

int wait_pid_gone(pid_t pid, uint64_t timeout_ms)
{
	int fd = pidfd_of(pid), ret;

	if (fd < 0)
		return fd == -ESRCH ? 0 : fd;
	ret = wait_pidfd(fd, timeout_ms);
	close(fd);
	return ret;
}

int pidfd_of(pid_t pid)
{
	int fd = (int)syscall(SYS_pidfd_open, pid, 0);

	return fd < 0 ? -errno : fd;
}

int pidfd_signal(int fd, int sig)
{
	return syscall(SYS_pidfd_send_signal, fd, sig, NULL, 0) ? -errno : 0;
}

pid_t fork_orphan(int keep_fd)
{
	pid_t pid = fork();

	if (pid < 0)
		return -errno;
	if (pid > 0) {
		waitpid(pid, NULL, 0);
		return pid;
	}
	if (fork() != 0)
		_exit(0);
	int null = open("/dev/null", O_RDWR);
	if (null < 0 || dup2(null, 0) < 0 || dup2(null, 1) < 0 || dup2(null, 2) < 0 ||
	    (keep_fd >= 0 && dup2(keep_fd, 3) < 0))
		_exit(1);
	/* shutdown and watch raise the fd limit past 1024 */
	int first = keep_fd >= 0 ? 4 : 3;
	if (close_range((unsigned)first, ~0U, 0))
		for (int fd = first; fd < 1024; fd++)
			close(fd);
	setsid();
	return 0;
}
