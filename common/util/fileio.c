#include "util/fileio.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <fcntl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

/* Bytes read at off until len or the end of the file, or -errno. */
static long pread_upto(int fd, void *buf, size_t len, uint64_t off)
{
	size_t got = 0;

	while (got < len) {
		ssize_t n = pread(fd, (char *)buf + got, len - got, (off_t)(off + got));
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		if (n == 0)
			break;
		got += (size_t)n;
	}
	return (long)got;
}

int pread_full(int fd, void *buf, size_t len, uint64_t off)
{
	long n = pread_upto(fd, buf, len, off);
	return n < 0 ? (int)n : (size_t)n < len ? -ENODATA : 0;
}

int pread_exact(int fd, void *buf, size_t len, uint64_t off)
{
	int ret = pread_full(fd, buf, len, off);
	return ret == -ENODATA ? -EIO : ret;
}

int pread_zeros_past_end(int fd, void *buf, size_t len, uint64_t off)
{
	long n = pread_upto(fd, buf, len, off);
	if (n < 0)
		return (int)n;
	memset((char *)buf + n, 0, len - (size_t)n);
	return 0;
}

int write_full(int fd, const void *buf, size_t len)
{
	struct iovec one = { (void *)buf, len };
	return writev_full(fd, &one, 1);
}

int pwrite_full(int fd, const void *buf, size_t len, uint64_t off)
{
	const char *p = buf;

	while (len) {
		ssize_t n = pwrite(fd, p, len, (off_t)off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return n < 0 ? -errno : -EIO;
		p += n;
		len -= (size_t)n;
		off += (uint64_t)n;
	}
	return 0;
}

int writev_full(int fd, const struct iovec *iov, size_t iovcnt)
{
	struct iovec left[64];   /* a window of the pieces, advanced as they are written */
	size_t n_left = 0;

	for (;;) {
		while (n_left < 64 && iovcnt) {
			if (iov->iov_len)
				left[n_left++] = *iov;
			iov++;
			iovcnt--;
		}
		if (!n_left)
			return 0;
		ssize_t n = writev(fd, left, (int)n_left);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return n < 0 ? -errno : -EIO;
		size_t i = 0;
		for (size_t done = (size_t)n; done && i < n_left; i++) {
			size_t take = done < left[i].iov_len ? done : left[i].iov_len;
			left[i].iov_base = (char *)left[i].iov_base + take;
			left[i].iov_len -= take;
			done -= take;
			if (left[i].iov_len)
				break;
		}
		memmove(left, left + i, (n_left - i) * sizeof(*left));
		n_left -= i;
	}
}

void fd_limit_raise(void)
{
	struct rlimit r;

	if (!getrlimit(RLIMIT_NOFILE, &r) && r.rlim_cur < r.rlim_max) {
		r.rlim_cur = r.rlim_max;
		setrlimit(RLIMIT_NOFILE, &r);
	}
}

bool fd_is_named(int fd, int dirfd, const char *name, int flags)
{
	struct stat held, named;

	return !fstat(fd, &held) && !fstatat(dirfd, name, &named, flags) &&
	       held.st_ino == named.st_ino && held.st_dev == named.st_dev;
}

int path_folder(const char *path, char *dir, size_t len)
{
	const char *slash = strrchr(path, '/');
	int n = slash ? snprintf(dir, len, "%.*s", slash == path ? 1 : (int)(slash - path), path) :
			snprintf(dir, len, ".");

	return n < 0 || (size_t)n >= len ? -ENAMETOOLONG : 0;
}

int fsync_folder_of(const char *path)
{
	char dir[4096];
	int fd, ret = path_folder(path, dir, sizeof(dir));

	if (ret)
		return ret;
	fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	if (fsync(fd))
		ret = -errno;
	close(fd);
	return ret;
}
