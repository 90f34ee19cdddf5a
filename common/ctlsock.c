#include "ctlsock.h"
#include "state.h"
#include "timeutil.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

static int ctl_addr(uint32_t id, struct sockaddr_un *a)
{
	memset(a, 0, sizeof(*a));
	a->sun_family = AF_UNIX;
	int n = snprintf(a->sun_path, sizeof(a->sun_path), "%s/ublkb%u/ctl", state_dir(), id);
	return n < 0 || (size_t)n >= sizeof(a->sun_path) ? -ENAMETOOLONG : 0;
}

int ctlsock_listen(uint32_t id)
{
	struct sockaddr_un a;
	int fd, ret = ctl_addr(id, &a);

	if (ret)
		return ret;
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0)
		return -errno;
	unlink(a.sun_path);
	if (bind(fd, (struct sockaddr *)&a, sizeof(a)) || chmod(a.sun_path, 0600) || listen(fd, 4)) {
		ret = -errno;
		close(fd);
		return ret;
	}
	return fd;
}

int ctlsock_connect(uint32_t id)
{
	struct sockaddr_un a;
	int fd, ret = ctl_addr(id, &a);

	if (ret)
		return ret;
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	if (connect(fd, (struct sockaddr *)&a, sizeof(a))) {
		ret = -errno;
		close(fd);
		return ret;
	}
	return fd;
}

int ctlsock_read_line(int fd, char *buf, size_t len, uint64_t timeout_ms)
{
	uint64_t deadline = now_ms() + timeout_ms;
	size_t used = 0;

	while (used + 1 < len) {
		struct pollfd p = { .fd = fd, .events = POLLIN };
		int r = poll(&p, 1, (int)ms_left(deadline));
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return -errno;
		if (r == 0)
			return -ETIMEDOUT;
		/* one byte at a time: lines are short and rare */
		ssize_t n = read(fd, buf + used, 1);
		if (n < 0 && (errno == EINTR || errno == EAGAIN))
			continue;
		if (n < 0)
			return -errno;
		if (n == 0)
			return 0;
		if (buf[used] == '\n')
			break;
		used++;
	}
	buf[used] = 0;
	return (int)used + 1;
}

int ctlsock_send(int fd, const char *line)
{
	size_t len = strlen(line);
	return send(fd, line, len, MSG_NOSIGNAL) == (ssize_t)len ? 0 : -errno;
}
