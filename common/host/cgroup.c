/* A server started by a service lives in the service's control group,
 * and a service that stops kills its whole group: every device of the
 * host would stop with the program that happened to add them. --cgroup
 * puts each server in a group of the operator's choosing instead. */
#include "host/cgroup.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/magic.h>
#include <stdio.h>
#include <string.h>
#include <sys/statfs.h>
#include <unistd.h>

int cgroup_enter(const char *dir, bool move, char *why, size_t len)
{
	struct statfs fs;
	int dfd, fd = -1, ret = 0;

	dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd < 0) {
		ret = -errno;
		snprintf(why, len, "--cgroup %s: %s%s", dir, strerror(errno),
			 errno == ENOENT ? ": create it in the cgroup v2 hierarchy (mkdir)" : "");
		return ret;
	}
	if (fstatfs(dfd, &fs) || fs.f_type != CGROUP2_SUPER_MAGIC) {
		ret = -ENOTDIR;
		snprintf(why, len, "--cgroup %s: not a folder of the cgroup v2 file system "
			 "(/sys/fs/cgroup on a unified hierarchy)", dir);
		goto out;
	}
	fd = openat(dfd, "cgroup.procs", O_WRONLY | O_NOFOLLOW | O_CLOEXEC);
	/* "0": the writer, with all its threads */
	if (fd < 0 || (move && write(fd, "0", 1) != 1)) {
		ret = -errno;
		snprintf(why, len, "--cgroup %s: %s into it: %s%s", dir, fd < 0 ? "cannot move" : "moving",
			 strerror(errno), errno == EBUSY || errno == EOPNOTSUPP ?
			 " (a group with controllers enabled for its children takes no processes: "
			 "use a leaf group)" : "");
	}
out:
	if (fd >= 0)
		close(fd);
	close(dfd);
	return ret;
}
