#include "host/ready.h"
#include "host/device.h"
#include "kernel/ctrl.h"
#include "util/exitcodes.h"
#include "util/timeutil.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define READY_FD 3

int ready_send(int fd, const char *fmt, ...)
{
	char line[700];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(line, sizeof(line) - 1, fmt, ap);
	va_end(ap);
	if (n < 0)
		return -EINVAL;
	if (n > (int)sizeof(line) - 2)
		n = (int)sizeof(line) - 2;
	line[n++] = '\n';
	return write(fd, line, n) < 0 ? -errno : 0;
}

static void parse_line(char *line, struct ready_result *res)
{
	unsigned long long cookie = 0;
	int v;

	if (sscanf(line, "id %d %llx", &v, &cookie) >= 1) {
		res->id = v;
		res->cookie = cookie;
	} else if (sscanf(line, "ready %d", &v) == 1) {
		res->id = v;
		res->live = 1;
	} else if (!strcmp(line, "started")) {
		res->started = 1;
	} else if (sscanf(line, "error %d", &v) == 1) {
		char *msg = strchr(line + 6, ' ');
		res->code = v ? v : EXIT_FAIL;
		snprintf(res->msg, sizeof(res->msg), "%s", msg ? msg + 1 : "server failed");
	}
}

/* Kill a server that did not become live, and remove what it created.
 * A server whose exit waits on the kernel (a control command it cannot
 * cancel) is not waited for past ABANDON_WAIT_MS: it is reaped when
 * whoever started it ends. */
#define ABANDON_WAIT_MS 5000
static void abandon(pid_t pid, struct ready_result *res)
{
	size_t used = strlen(res->msg);
	uint64_t until = deadline_ms(ABANDON_WAIT_MS);
	pid_t got;

	kill(pid, SIGKILL);
	while ((got = waitpid(pid, NULL, WNOHANG)) == 0 && ms_left(until))
		sleep_ms(20);
	if (got == 0)
		snprintf(res->msg + used, sizeof(res->msg) - used, " (pid %d still in the kernel's "
			 "exit %d ms after SIGKILL)", (int)pid, ABANDON_WAIT_MS);
}

/* Delete the device a server that did not become live left: the one it
 * told the id of, else the one with the cookie it was to give it (a server
 * killed, or dead, between ADD_DEV and its id line). */
static void delete_left_device(pid_t pid, uint32_t owner_nonce, const struct ready_result *res)
{
	uint64_t cookie = res->cookie;
	uint32_t id = (uint32_t)res->id;

	if (res->id < 0) {
		if (!owner_nonce)
			return;
		ctrl_owner_cookie(pid, owner_nonce, &cookie);
		if (device_find_own(cookie, &id))
			return;
	}
	device_delete_own(id, cookie, 3000, true, NULL, 0);
}

/* environ without UBLK_HTTP_AUTH: a server has its credentials from its
 * secrets fd or its state entry's secret, never from whoever started it
 * (a recovery started by a tool holding a token for another store would
 * send it to the device's server), and never in /proc/PID/environ. */
static char **server_environ(void)
{
	static const char drop[] = "UBLK_HTTP_AUTH=";
	size_t n = 0, k = 0;
	char **env;

	while (environ[n])
		n++;
	env = calloc(n + 1, sizeof(*env));
	for (size_t i = 0; env && i < n; i++)
		if (strncmp(environ[i], drop, sizeof(drop) - 1))
			env[k++] = environ[i];
	return env;
}

static void child(int pipe_w, int secrets_fd, char *const argv[], char *const env[])
{
	int null = open("/dev/null", O_RDWR | O_CLOEXEC), err = errno;

	setsid();
	/* all three out of the way first: any may be 0 to 4 already */
	pipe_w = fcntl(pipe_w, F_DUPFD_CLOEXEC, 10);
	if (secrets_fd >= 0)
		secrets_fd = fcntl(secrets_fd, F_DUPFD_CLOEXEC, 10);
	if (null >= 0)
		null = fcntl(null, F_DUPFD_CLOEXEC, 10);
	if (pipe_w < 0 || dup2(pipe_w, READY_FD) < 0)
		_exit(127);
	if (secrets_fd >= 0 && dup2(secrets_fd, READY_SECRETS_FD) < 0)
		_exit(127);
	/* A server's stdio is never its caller's: it lives on past the
	 * caller, would hold a pipe the caller's caller waits on, and its
	 * messages go to its log. */
	if (null < 0 || dup2(null, 0) < 0 || dup2(null, 1) < 0 || dup2(null, 2) < 0) {
		ready_send(READY_FD, "error %d cannot open /dev/null: %s", EXIT_FAIL,
			   strerror(null < 0 ? err : errno));
		_exit(127);
	}
	/* Nor any other fd of the caller's (a lock a script holds): the
	 * server would keep it for the device's life. */
	if (secrets_fd < 0)
		close(READY_SECRETS_FD);
	close_range(READY_SECRETS_FD + 1, ~0U, 0);
	execve(argv[0], argv, env);
	ready_send(READY_FD, "error %d cannot run %s: %s", EXIT_FAIL, argv[0], strerror(errno));
	_exit(127);
}

/* How a server that said nothing on its pipe ended, into msg. */
static void describe_end(int status, const char *path, char *msg, size_t len)
{
	if (WIFEXITED(status) && WEXITSTATUS(status) == EXIT_USAGE)
		snprintf(msg, len, "server %s exited with status 2 (usage) before the device was live: "
			 "is it the ublk-serve of this version (UBLK_SERVE)? Run it by hand with the "
			 "same options to see why", path);
	else if (WIFEXITED(status))
		snprintf(msg, len, "server %s exited with status %d before the device was live, "
			 "saying nothing: run it by hand with the same options to see why", path,
			 WEXITSTATUS(status));
	else if (WIFSIGNALED(status))
		snprintf(msg, len, "server %s was killed by signal %d (%s) before the device was live",
			 path, WTERMSIG(status), strsignal(WTERMSIG(status)));
}

int ready_spawn_fd(char *const argv[], int secrets_fd, int *release_on_id, uint32_t owner_nonce,
		   uint64_t timeout_ms, struct ready_result *res, pid_t *pidp)
{
	uint64_t deadline = deadline_ms(timeout_ms), start = now_ms();
	char buf[2048];
	size_t used = 0;
	bool silent = false;
	int p[2];
	pid_t pid;

	memset(res, 0, sizeof(*res));
	res->id = -1;
	char **env = server_environ();

	if (!env)
		return snprintf(res->msg, sizeof(res->msg), "%s", strerror(ENOMEM)), EXIT_FAIL;
	if (pipe2(p, O_CLOEXEC)) {
		snprintf(res->msg, sizeof(res->msg), "pipe: %s", strerror(errno));
		free(env);
		return EXIT_FAIL;
	}
	pid = fork();
	if (pid < 0) {
		snprintf(res->msg, sizeof(res->msg), "fork: %s", strerror(errno));
		close(p[0]);
		close(p[1]);
		free(env);
		return EXIT_FAIL;
	}
	if (pid == 0)
		child(p[1], secrets_fd, argv, env);
	free(env);
	close(p[1]);
	*pidp = pid;

	while (!res->live && !res->code) {
		struct pollfd pf = { .fd = p[0], .events = POLLIN };
		uint64_t left = ms_left(deadline);
		int r = left ? poll(&pf, 1, poll_timeout(left)) : 0;
		/* a wait cut at INT_MAX ms is not the deadline */
		if ((r < 0 && errno == EINTR) || (r == 0 && ms_left(deadline)))
			continue;
		if (r == 0) {
			snprintf(res->msg, sizeof(res->msg),
				 "server not live after %llu ms; killed it and removed its device",
				 (unsigned long long)(now_ms() - start));
			res->code = EXIT_TIMEOUT;
			break;
		}
		ssize_t n = read(p[0], buf + used, sizeof(buf) - 1 - used);
		if (n <= 0) {
			snprintf(res->msg, sizeof(res->msg), "server %s exited before the device was live",
				 argv[0]);
			res->code = EXIT_FAIL;
			silent = true;
			break;
		}
		used += (size_t)n;
		buf[used] = 0;
		char *nl;
		int started = res->started;
		while ((nl = strchr(buf, '\n'))) {
			*nl = 0;
			parse_line(buf, res);
			used -= (size_t)(nl + 1 - buf);
			memmove(buf, nl + 1, used + 1);
		}
		/* a kill between the kernel's start of a recovery and the
		 * server's fetches would leave the device unrecoverable: from
		 * here the server's own deadlines bound it, each step's */
		if (res->started && !started)
			deadline = deadline_ms(timeout_ms);
		if (used == sizeof(buf) - 1)
			used = 0;   /* garbage without newline: drop it */
		if (res->id >= 0 && release_on_id && *release_on_id >= 0) {
			close(*release_on_id);
			*release_on_id = -1;
		}
	}
	close(p[0]);
	if (res->live)
		return 0;
	/* A server that reported an error cleans up itself; give it the time. */
	int status;
	if (res->code != EXIT_TIMEOUT && wait_pid_gone(pid, timeout_ms) == 0 &&
	    waitpid(pid, &status, 0) == pid) {
		/* one that said nothing: its stderr is /dev/null, so how it
		 * ended is all there is to say (a usage error, a crash) */
		if (silent)
			describe_end(status, argv[0], res->msg, sizeof(res->msg));
	} else
		abandon(pid, res);
	delete_left_device(pid, owner_nonce, res);
	return res->code;
}

int ready_spawn(char *const argv[], uint64_t timeout_ms, struct ready_result *res, pid_t *pidp)
{
	return ready_spawn_fd(argv, -1, NULL, 0, timeout_ms, res, pidp);
}
