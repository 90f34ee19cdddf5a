#include "util/atomic_file.h"
#include "util/fileio.h"

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#ifndef GRND_INSECURE
#define GRND_INSECURE 0x0004
#endif

/* A name nobody can predict, so nobody can plant something there first
 * (O_EXCL makes that harmless anyway; this makes it not even a denial of
 * service). Early in boot the pool may not be ready: GRND_INSECURE never
 * blocks, and older kernels get the clock mixed in instead. */
static void random_name(struct atomic_file *af)
{
	static unsigned counter;
	uint64_t r = 0;

	if (getrandom(&r, sizeof(r), GRND_INSECURE) != sizeof(r) &&
	    getrandom(&r, sizeof(r), GRND_NONBLOCK) != sizeof(r)) {
		struct timespec ts;
		clock_gettime(CLOCK_MONOTONIC, &ts);
		r ^= (uint64_t)ts.tv_nsec * 0x9e3779b97f4a7c15ull ^ (uint64_t)ts.tv_sec << 32 ^
		     (uint64_t)getpid() << 20 ^ ++counter;
	}
	snprintf(af->tmp, sizeof(af->tmp), ".%.200s.%016llx.tmp", af->name, (unsigned long long)r);
}

/* The folder of path as an fd of its own, and its last component in af->name. */
static int open_folder(struct atomic_file *af, int dirfd, const char *path)
{
	const char *slash = strrchr(path, '/'), *base = slash ? slash + 1 : path;
	char dir[4096];

	if (!*base || !strcmp(base, ".") || !strcmp(base, ".."))
		return -EISDIR;
	if (strlen(base) >= sizeof(af->name))
		return -ENAMETOOLONG;
	strcpy(af->name, base);
	if (path_folder(path, dir, sizeof(dir)))
		return -ENAMETOOLONG;
	af->dirfd = openat(dirfd, dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	return af->dirfd < 0 ? -errno : 0;
}

int atomic_file_open(struct atomic_file *af, int dirfd, const char *path, mode_t mode)
{
	/* Never more open than the final mode while the content is written. */
	mode_t first = mode & 0600;
	int ret;

	af->fd = af->dirfd = -1;
	af->tmp[0] = af->name[0] = 0;
	af->mode = mode & 07777;
	ret = open_folder(af, dirfd, path);
	if (ret)
		goto out;
	/* An unnamed file needs /proc (or CAP_DAC_READ_SEARCH) to get a name at
	 * commit: find out now, not after the content is written. */
	if (!access("/proc/self/fd", X_OK))
		af->fd = openat(af->dirfd, ".", O_TMPFILE | O_RDWR | O_CLOEXEC, first);
	for (int tries = 0; af->fd < 0 && tries < 100; tries++) {
		random_name(af);
		af->fd = openat(af->dirfd, af->tmp, O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC,
				first);
		if (af->fd < 0 && errno != EEXIST) {
			ret = -errno;
			af->tmp[0] = 0;
			goto out;
		}
	}
	if (af->fd < 0) {
		ret = -EEXIST;
		af->tmp[0] = 0;
		goto out;
	}
	if (fchmod(af->fd, af->mode))
		ret = -errno;
out:
	if (ret)
		atomic_file_abort(af);
	return ret;
}

/* Give the unnamed file the name to (af->tmp or af->name). */
static int link_to(struct atomic_file *af, const char *to)
{
	char proc[64];

	snprintf(proc, sizeof(proc), "/proc/self/fd/%d", af->fd);
	if (!linkat(AT_FDCWD, proc, af->dirfd, to, AT_SYMLINK_FOLLOW))
		return 0;
	if (errno == ENOENT && !linkat(af->fd, "", af->dirfd, to, AT_EMPTY_PATH))
		return 0;
	return -errno;
}

/* Give the unnamed file a temporary name in the folder. */
static int link_unnamed(struct atomic_file *af)
{
	for (int tries = 0; tries < 100; tries++) {
		random_name(af);
		int ret = link_to(af, af->tmp);
		if (ret != -EEXIST) {
			if (ret)
				af->tmp[0] = 0;
			return ret;
		}
	}
	af->tmp[0] = 0;
	return -EEXIST;
}

/* The temporary name becomes name only if name does not exist. */
static int rename_noreplace(struct atomic_file *af)
{
	if (!renameat2(af->dirfd, af->tmp, af->dirfd, af->name, RENAME_NOREPLACE))
		return 0;
	if (errno != EINVAL && errno != ENOSYS)
		return -errno;
	/* a filesystem without RENAME_NOREPLACE: link never replaces */
	if (linkat(af->dirfd, af->tmp, af->dirfd, af->name, 0))
		return -errno;
	unlinkat(af->dirfd, af->tmp, 0);
	return 0;
}

int atomic_file_commit(struct atomic_file *af, unsigned flags)
{
	int ret = 0;

	if (af->fd < 0 || af->dirfd < 0)
		return -EBADF;
	if ((flags & ATOMIC_FSYNC) && fsync(af->fd)) {
		ret = -errno;
		goto out;
	}
	if (flags & ATOMIC_NOREPLACE) {
		/* linkat and renameat2 never follow nor replace the name */
		ret = af->tmp[0] ? rename_noreplace(af) : link_to(af, af->name);
		if (ret)
			goto out;
	} else {
		if (!af->tmp[0] && (ret = link_unnamed(af)))
			goto out;
		/* rename never follows the new name: a symlink there is replaced. */
		if (renameat(af->dirfd, af->tmp, af->dirfd, af->name)) {
			ret = -errno;
			goto out;
		}
	}
	af->tmp[0] = 0;
	if ((flags & ATOMIC_FSYNC_DIR) && fsync(af->dirfd))
		ret = -errno;
out:
	atomic_file_abort(af);
	return ret;
}

void atomic_file_abort(struct atomic_file *af)
{
	if (af->tmp[0] && af->dirfd >= 0)
		unlinkat(af->dirfd, af->tmp, 0);
	af->tmp[0] = 0;
	if (af->fd >= 0)
		close(af->fd);
	if (af->dirfd >= 0)
		close(af->dirfd);
	af->fd = af->dirfd = -1;
}

int atomic_write_file(int dirfd, const char *path, const void *buf, size_t len, mode_t mode,
		      unsigned flags)
{
	struct atomic_file af;
	const char *p = buf;
	int ret = atomic_file_open(&af, dirfd, path, mode);

	while (!ret && len) {
		ssize_t n = write(af.fd, p, len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			ret = n < 0 ? -errno : -EIO;
		else
			p += n, len -= (size_t)n;
	}
	if (!ret)
		return atomic_file_commit(&af, flags);
	atomic_file_abort(&af);
	return ret;
}
