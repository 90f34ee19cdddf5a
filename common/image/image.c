#include "image/image.h"
#include "image/layer.h"
#include "util/ublk_limits.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

int image_open(const char *path, bool read_only, int *fdp, uint64_t *sizep,
	       char *why, size_t whylen)
{
	struct stat st;
	uint64_t size;
	int fd, ret;
	char dummy[8];

	if (!why) {
		why = dummy;
		whylen = sizeof(dummy);
	}
	/* O_NONBLOCK: opening a FIFO would wait for a writer */
	fd = open(path, (read_only ? O_RDONLY : O_RDWR) | O_CLOEXEC | O_NONBLOCK);
	if (fd < 0) {
		ret = -errno;
		snprintf(why, whylen, "%s: cannot open %s: %s", path,
			 read_only ? "for reading" : "for reading and writing", strerror(errno));
		return ret;
	}
	if (fstat(fd, &st)) {
		ret = -errno;
		snprintf(why, whylen, "%s: stat: %s", path, strerror(errno));
		goto fail;
	}
	if (S_ISREG(st.st_mode)) {
		size = (uint64_t)st.st_size;
	} else if (S_ISBLK(st.st_mode)) {
		if (ioctl(fd, BLKGETSIZE64, &size)) {
			ret = -errno;
			snprintf(why, whylen, "%s: BLKGETSIZE64: %s", path, strerror(errno));
			goto fail;
		}
	} else {
		ret = S_ISDIR(st.st_mode) ? -EISDIR : -EINVAL;
		snprintf(why, whylen, "%s: not a regular file or block device", path);
		goto fail;
	}
	if (fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK)) {
		ret = -errno;
		snprintf(why, whylen, "%s: fcntl: %s", path, strerror(errno));
		goto fail;
	}
	if (size == 0 || size % LAYER_BLOCK_SIZE) {
		ret = -EINVAL;
		snprintf(why, whylen, "%s: size %llu is not a non-zero multiple of %u bytes; "
			 "pad it (truncate -s %%%u FILE)", path, (unsigned long long)size,
			 LAYER_BLOCK_SIZE, LAYER_BLOCK_SIZE);
		goto fail;
	}
	if (size > UBLK_MAX_IMAGE_SIZE) {
		ret = -EINVAL;
		snprintf(why, whylen, "%s: size %llu is larger than the supported maximum %llu bytes",
			 path, (unsigned long long)size, (unsigned long long)UBLK_MAX_IMAGE_SIZE);
		goto fail;
	}
	*fdp = fd;
	*sizep = size;
	return 0;
fail:
	close(fd);
	return ret;
}

int image_check(const char *path, bool read_only, uint64_t *size, char *why, size_t whylen)
{
	int fd, ret = image_open(path, read_only, &fd, size, why, whylen);
	if (!ret)
		close(fd);
	return ret;
}
