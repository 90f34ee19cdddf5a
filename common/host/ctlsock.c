#include "host/ctlsock.h"
#include "util/parse.h"
#include "host/state.h"
#include "util/timeutil.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

/* The socket's address inside the checked entry, reached through the
 * entry's fd: nothing on the way can be swapped between check and use. */
static int ctl_addr(int entry_fd, struct sockaddr_un *a)
{
	memset(a, 0, sizeof(*a));
	a->sun_family = AF_UNIX;
	int n = snprintf(a->sun_path, sizeof(a->sun_path), "/proc/self/fd/%d/ctl", entry_fd);
	return n < 0 || (size_t)n >= sizeof(a->sun_path) ? -ENAMETOOLONG : 0;
}

int ctlsock_peer_ok(int fd, pid_t want_pid)
{
	struct ucred cr;
	socklen_t len = sizeof(cr);

	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cr, &len))
		return -errno;
	if (len != sizeof(cr))
		return -EPERM;
	if (cr.uid != 0 && cr.uid != geteuid())
		return -EPERM;
	if (want_pid > 0 && cr.pid != want_pid)
		return -EPERM;
	return 0;
}

int ctlsock_listen(uint32_t id)
{
	struct sockaddr_un a;
	int fd = -1, efd = state_entry_open(id), ret;

	if (efd < 0)
		return efd;
	if ((ret = ctl_addr(efd, &a)))
		goto out;
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0) {
		ret = -errno;
		goto out;
	}
	/* a stale socket of an earlier server; unlinkat never follows */
	unlinkat(efd, "ctl", 0);
	if (bind(fd, (struct sockaddr *)&a, sizeof(a)) || fchmodat(efd, "ctl", 0600, 0) ||
	    listen(fd, 4))
		ret = -errno;
out:
	close(efd);
	if (ret && fd >= 0)
		close(fd);
	return ret ? ret : fd;
}

int ctlsock_accept(int lfd)
{
	int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC), ret;

	if (fd < 0)
		return -errno;
	/* The folder is 0700, but a socket passed on or a folder made wrong
	 * must not let another user freeze the device. */
	if ((ret = ctlsock_peer_ok(fd, 0))) {
		close(fd);
		return ret;
	}
	return fd;
}

int ctlsock_connect(uint32_t id, uint64_t timeout_ms)
{
	uint64_t deadline = now_ms() + timeout_ms;
	struct sockaddr_un a;
	char pid[32] = "";
	int fd = -1, efd = state_entry_open(id), ret;

	if (efd < 0)
		return efd;
	if ((ret = ctl_addr(efd, &a)))
		goto out;
	/* A server that accepts nothing (stopped, hung) keeps the connections
	 * of clients that gave up in its backlog: once that is full a blocking
	 * connect waits for ever, a non-blocking one says EAGAIN. */
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0) {
		ret = -errno;
		goto out;
	}
	while (connect(fd, (struct sockaddr *)&a, sizeof(a))) {
		ret = -errno;
		if (ret == -EINTR)
			continue;
		if (ret != -EAGAIN)
			goto out;
		if (!ms_left(deadline)) {
			ret = -ETIMEDOUT;
			goto out;
		}
		sleep_ms(10);
	}
	ret = 0;
	if (fcntl(fd, F_SETFL, 0)) {
		ret = -errno;
		goto out;
	}
	/* The one answering must be the entry's server (the pid it wrote
	 * before listening), and root or us in any case. */
	state_read(id, "pid", pid, sizeof(pid));
	ret = ctlsock_peer_ok(fd, (pid_t)atoi(pid));
out:
	close(efd);
	if (ret && fd >= 0)
		close(fd);
	return ret ? ret : fd;
}

int ctlsock_connect_why(uint32_t id, uint64_t timeout_ms, char *why, size_t whylen)
{
	int fd = ctlsock_connect(id, timeout_ms);

	if (fd == -ETIMEDOUT)
		snprintf(why, whylen, "ublkb%u: its server took no connection within %llu ms: is it "
			 "stopped or hung?", id, (unsigned long long)timeout_ms);
	else if (fd == -EPERM)
		snprintf(why, whylen, "ublkb%u: not trusted: its state entry, or the process at its "
			 "control socket, is not root's or ours or not the entry's server; check %s/ublkb%u",
			 id, state_dir(), id);
	else if (fd == -ENOENT || fd == -ECONNREFUSED)
		snprintf(why, whylen, "ublkb%u: no server runs for it (%s): is the device there, and "
			 "live? (ublk-pool list)", id, fd == -ENOENT ? "no state entry or control socket" :
			 "its control socket takes no connection");
	else if (fd < 0)
		snprintf(why, whylen, "ublkb%u: cannot reach its server: %s", id, strerror(-fd));
	return fd;
}

int ctlsock_take_line(int fd, char *buf, size_t len, size_t *used)
{
	/* one byte at a time: lines are short and rare, and nothing past the
	 * newline may be consumed */
	while (*used < len) {
		ssize_t n = recv(fd, buf + *used, 1, MSG_DONTWAIT);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return errno == EWOULDBLOCK ? -EAGAIN : -errno;
		if (n == 0)
			return 0;
		if (buf[*used] == '\n') {
			buf[*used] = 0;
			return (int)*used + 1;
		}
		(*used)++;
	}
	return -EMSGSIZE;
}

int ctlsock_read_line(int fd, char *buf, size_t len, uint64_t timeout_ms)
{
	uint64_t deadline = now_ms() + timeout_ms;
	size_t used = 0;

	for (;;) {
		struct pollfd p = { .fd = fd, .events = POLLIN };
		int r = ctlsock_take_line(fd, buf, len, &used);
		if (r != -EAGAIN)
			return r;
		r = poll(&p, 1, poll_timeout(ms_left(deadline)));
		if (r < 0 && errno != EINTR)
			return -errno;
		if (r == 0)
			return -ETIMEDOUT;
	}
}

int ctlsock_send(int fd, const char *line)
{
	size_t len = strlen(line);
	return send(fd, line, len, MSG_NOSIGNAL) == (ssize_t)len ? 0 : -errno;
}

int ctlsock_ask(int fd, const char *request, char *reply, size_t len, uint64_t timeout_ms)
{
	int sent = ctlsock_send(fd, request);
	int ret = ctlsock_read_line(fd, reply, len, timeout_ms);
	return !ret && sent ? sent : ret;
}

int ctlsock_parse_freeze(const char *line, uint64_t *ms)
{
	if (strncmp(line, "freeze ", 7))
		return -EINVAL;
	return parse_uint(line + 7, 1, CTLSOCK_MAX_HOLD_MS, ms) ? -EINVAL : 0;
}
