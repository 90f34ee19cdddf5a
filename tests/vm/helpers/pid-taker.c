/* pid-taker PID CMD [ARG...]: start CMD, detached, as a process whose pid
 * is PID (clone3's set_tid, for root), and return at once. A busy host
 * reuses the pid of a dead server within hours; the tools must never take
 * the process that got it for that server. */
#include <errno.h>
#include <linux/sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

int main(int argc, char **argv)
{
	long want = argc >= 3 ? strtol(argv[1], NULL, 10) : 0;
	pid_t tid;

	if (want <= 1 || want > INT32_MAX) {
		fprintf(stderr, "usage: pid-taker PID CMD [ARG...]\n");
		return 2;
	}
	tid = (pid_t)want;
	struct clone_args args = {
		.exit_signal = SIGCHLD,
		.set_tid = (uint64_t)(uintptr_t)&tid,
		.set_tid_size = 1,
	};
	long pid = syscall(SYS_clone3, &args, sizeof(args));
	if (pid < 0) {
		fprintf(stderr, "pid-taker: clone3 as pid %ld: %s\n", want, strerror(errno));
		return 1;
	}
	if (pid == 0) {
		setsid();
		execvp(argv[2], argv + 2);
		_exit(127);
	}
	return 0;
}
