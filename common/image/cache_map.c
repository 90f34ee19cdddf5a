/*
 * The cache's map file, format version 1 (docs/cache-format.md is the
 * reference; this is its code):
 *
 *   offset 0     header, 4096 bytes: magic "UBLKCMAP", version, block size,
 *                device size, base size, generation (one more at every
 *                open), cache id, CRC-32C of the header, parent id and
 *                generation (the layer below when the cache was created),
 *                base version (that layer's version text) and its CRC
 *   offset 4096  2 bits per block, four blocks a byte: clean (read the
 *                layer below), dirty (read the data file), zero; 3 is
 *                refused
 *
 * The file is exactly its header and the states of the device's blocks,
 * the last page padded. It is the state as of the last FLUSH; the live map
 * (cache_live.c) is the state as of now, used when a server of this boot
 * died. Everything read here is outside bytes: sizes are bounded before
 * memory is spent on them, and a damaged field refuses the whole map.
 */
#include "image/cache_impl.h"
#include "image/cache_map.h"
#include "util/crc32c.h"
#include "util/fileio.h"
#include "util/log.h"
#include "util/safedir.h"
#include "util/ublk_limits.h"

#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static uint32_t base_version_crc(const uint8_t *b)
{
	return crc32c(0, b + BASE_VERSION_AT, 4) ^ crc32c(0, b + BASE_VERSION_TEXT_AT, BASE_VERSION_MAX);
}

/* The base version, a field version 1 added in its zeros: none (length
 * 0) is no damage, a damaged one refuses the map as the header's would. */
static int base_version_decode(struct cache *c, const uint8_t *b, char *why, size_t len)
{
	uint32_t n = le32toh(*(const uint32_t *)(b + BASE_VERSION_AT));

	c->hdr.base_version[0] = 0;
	if (!n)
		return 0;
	if (n > BASE_VERSION_MAX)
		return snprintf(why, len, "base version of %u bytes, at most %u are kept (damaged map)",
				n, BASE_VERSION_MAX), -EINVAL;
	if (le32toh(*(const uint32_t *)(b + BASE_VERSION_AT + 4)) != base_version_crc(b))
		return snprintf(why, len, "base version checksum mismatch (damaged map)"), -EINVAL;
	for (uint32_t i = 0; i < n; i++) {
		uint8_t ch = b[BASE_VERSION_TEXT_AT + i];
		if ((ch < 0x20 && ch != '\n') || ch == 0x7f)
			return snprintf(why, len, "base version holds a control character at byte %u "
					"(damaged map)", i), -EINVAL;
	}
	memcpy(c->hdr.base_version, b + BASE_VERSION_TEXT_AT, n);
	c->hdr.base_version[n] = 0;
	return 0;
}

static void cache_hdr_encode(const struct cache *c, uint8_t *b)
{
	memset(b, 0, MAP_HDR);
	memcpy(b, MAGIC, 8);
	*(uint32_t *)(b + 8) = htole32(CACHE_VERSION);
	*(uint32_t *)(b + 12) = htole32(BS);
	*(uint64_t *)(b + 16) = htole64(c->hdr.dev_size);
	*(uint64_t *)(b + 24) = htole64(c->hdr.base_size);
	*(uint64_t *)(b + 32) = htole64(c->hdr.generation);
	memcpy(b + 40, c->hdr.id, 16);
	memcpy(b + 64, c->hdr.parent_id, 16);
	*(uint64_t *)(b + 80) = htole64(c->hdr.parent_generation);
	*(uint32_t *)(b + 60) = htole32(crc32c(0, b, 60) ^ crc32c(0, b + 64, 24));
	size_t n = strlen(c->hdr.base_version);
	if (n) {
		*(uint32_t *)(b + BASE_VERSION_AT) = htole32((uint32_t)n);
		memcpy(b + BASE_VERSION_TEXT_AT, c->hdr.base_version, n);
		*(uint32_t *)(b + BASE_VERSION_AT + 4) = htole32(base_version_crc(b));
	}
}

int cache_hdr_decode(struct cache *c, const uint8_t *b, char *why, size_t len)
{
	if (memcmp(b, MAGIC, 8))
		return snprintf(why, len, "not a ublk-tools cache map (bad magic)"), -EINVAL;
	/* the version before the checksum: a later format may have moved it */
	bool crc_ok = le32toh(*(const uint32_t *)(b + 60)) == (crc32c(0, b, 60) ^ crc32c(0, b + 64, 24));
	if (le32toh(*(const uint32_t *)(b + 8)) != CACHE_VERSION)
		return snprintf(why, len, "format version %u, this build reads %u%s",
				le32toh(*(const uint32_t *)(b + 8)), CACHE_VERSION,
				crc_ok ? "" : " (or a damaged map: its checksum does not match)"), -EINVAL;
	if (!crc_ok)
		return snprintf(why, len, "header checksum mismatch (damaged map)"), -EINVAL;
	if (le32toh(*(const uint32_t *)(b + 12)) != BS)
		return snprintf(why, len, "block size %u, expected %u",
				le32toh(*(const uint32_t *)(b + 12)), BS), -EINVAL;
	c->hdr.dev_size = le64toh(*(const uint64_t *)(b + 16));
	c->hdr.base_size = le64toh(*(const uint64_t *)(b + 24));
	c->hdr.generation = le64toh(*(const uint64_t *)(b + 32));
	memcpy(c->hdr.id, b + 40, 16);
	memcpy(c->hdr.parent_id, b + 64, 16);
	c->hdr.parent_generation = le64toh(*(const uint64_t *)(b + 80));
	/* The device size sizes the block map: bound it before anything uses it. */
	if (!c->hdr.dev_size || c->hdr.dev_size % BS || c->hdr.dev_size > UBLK_MAX_IMAGE_SIZE)
		return snprintf(why, len, "device size %llu is not a non-zero multiple of %u up to "
				"the supported %llu (damaged map)", (unsigned long long)c->hdr.dev_size,
				BS, (unsigned long long)UBLK_MAX_IMAGE_SIZE), -EINVAL;
	if (c->hdr.base_size % BS || c->hdr.base_size > c->hdr.dev_size)
		return snprintf(why, len, "base size %llu is not a multiple of %u within the device "
				"size %llu (damaged map)", (unsigned long long)c->hdr.base_size, BS,
				(unsigned long long)c->hdr.dev_size), -EINVAL;
	return base_version_decode(c, b, why, len);
}

/* Exactly len bytes at off, or -EINVAL for a map that ends sooner. */
int cache_map_pread(int fd, void *buf, size_t len, uint64_t off)
{
	int ret = pread_full(fd, buf, len, off);
	return ret == -ENODATA ? -EINVAL : ret;
}

int cache_map_open(const char *map_path, bool writable, char *why, size_t len)
{
	/* O_NONBLOCK: a FIFO in its place must not hang the open
	 * (cache_map_regular refuses it); no effect on a regular file */
	int fd = open(map_path, (writable ? O_RDWR : O_RDONLY) | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);

	if (fd < 0 && errno == ELOOP)
		return snprintf(why, len, "%s: a symbolic link: a cache's map is never followed "
				"(give --cache the cache's own path)", map_path), -ELOOP;
	if (fd < 0)
		return snprintf(why, len, "%s: %s", map_path, strerror(errno)), -errno;
	return fd;
}

int cache_file_private(int fd, char *why, size_t len)
{
	struct stat st;
	if (fstat(fd, &st))
		return snprintf(why, len, "stat: %s", strerror(errno)), -errno;
	if (!S_ISREG(st.st_mode))
		return snprintf(why, len, "not a regular file"), -EINVAL;
	/* another user's file (one planted under the name in /tmp, say) or
	 * one they may write: what the device writes would be theirs to read,
	 * and what it reads theirs to choose */
	if (st.st_uid != 0 && st.st_uid != geteuid())
		return snprintf(why, len, "owned by uid %u, neither this user (uid %u) nor root: "
				"another user's file is never a cache", (unsigned)st.st_uid,
				(unsigned)geteuid()), -EPERM;
	if (st.st_mode & (S_IWGRP | S_IWOTH))
		return snprintf(why, len, "writable by other users (mode %04o): chmod go-w it",
				(unsigned)(st.st_mode & 07777)), -EPERM;
	/* a second name, made by whoever could, is a way in to its bytes */
	if (st.st_nlink != 1)
		return snprintf(why, len, "has %lu names (hard links): a cache's file has one",
				(unsigned long)st.st_nlink), -EPERM;
	return 0;
}

int cache_data_open(const char *path, bool writable, int *fdp, uint64_t *size, char *why,
		    size_t len)
{
	char sub[200];
	struct stat st;
	int fd = open(path, (writable ? O_RDWR : O_RDONLY) | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
	int ret;

	if (fd < 0 && errno == ELOOP)
		return snprintf(why, len, "%s: a symbolic link: a cache's files are never followed "
				"(give --cache the cache's own path)", path), -ELOOP;
	if (fd < 0)
		return snprintf(why, len, "%s: %s", path, strerror(errno)), -errno;
	if (!(ret = cache_file_private(fd, sub, sizeof(sub))) &&
	    (fstat(fd, &st) || fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK))) {
		ret = -errno;
		snprintf(sub, sizeof(sub), "%s", strerror(errno));
	}
	if (ret) {
		snprintf(why, len, "%s: %s", path, sub);
		close(fd);
		return ret;
	}
	*fdp = fd;
	*size = (uint64_t)st.st_size;
	return 0;
}

int cache_folder_check(const char *path, char *why, size_t len)
{
	static const struct safedir cache_folder = { "cache folder", "--cache", true, true };

	return safedir_check_folder_of(&cache_folder, path, why, len);
}

/* The map file is exactly its header and the states of dev_size's blocks
 * (its last page may be padded): anything else is not a map we wrote. */
int cache_map_size_check(int fd, uint64_t map_bytes, char *why, size_t len)
{
	uint64_t lo = MAP_HDR + map_bytes, hi = MAP_HDR + (map_bytes + MAP_PAGE - 1) / MAP_PAGE * MAP_PAGE;
	struct stat st;

	if (fstat(fd, &st))
		return snprintf(why, len, "stat: %s", strerror(errno)), -errno;
	if (!S_ISREG(st.st_mode))
		return snprintf(why, len, "not a regular file"), -EINVAL;
	if ((uint64_t)st.st_size < lo || (uint64_t)st.st_size > hi)
		return snprintf(why, len, "%llu bytes, but its header's device size needs %llu "
				"(truncated or damaged map)", (unsigned long long)st.st_size,
				(unsigned long long)lo), -EINVAL;
	return 0;
}

/* Header and block states of c->map_fd into c->map (sized for c->map_bytes
 * by the caller from an earlier read of the header). */
static int cache_map_read(struct cache *c, char *why, size_t len)
{
	uint8_t b[MAP_HDR];
	int ret;

	if ((ret = cache_map_pread(c->map_fd, b, MAP_HDR, 0)))
		return snprintf(why, len, "reading the header: %s",
				ret == -EINVAL ? "the file is too short" : strerror(-ret)), ret;
	if ((ret = cache_hdr_decode(c, b, why, len)))
		return ret;
	if (c->hdr.dev_size != c->nblocks * BS)
		return snprintf(why, len, "the header changed while the map was opened"), -EINVAL;
	if ((ret = cache_map_size_check(c->map_fd, c->map_bytes, why, len)))
		return ret;
	if ((ret = cache_map_pread(c->map_fd, c->map, c->map_bytes, MAP_HDR)))
		return snprintf(why, len, "reading the block states: %s", ret == -EINVAL ?
				"they are truncated" : strerror(-ret)), ret;
	return 0;
}

/* A state no writer produces: the whole map is refused. */
static int cache_map_check_states(const struct cache *c, char *why, size_t len)
{
	for (uint64_t blk = 0; blk < c->nblocks; blk++)
		if (get_state(c, blk) == ST_RESERVED)
			return snprintf(why, len, "block %llu has an invalid state",
					(unsigned long long)blk), -EINVAL;
	return 0;
}

int cache_map_check_fd(int fd, uint64_t *dev_size, char *why, size_t whylen)
{
	struct cache c = { .map_fd = fd };
	uint8_t b[MAP_HDR];
	int ret;

	why[0] = 0;
	if ((ret = cache_file_private(fd, why, whylen)))
		return ret;
	if ((ret = cache_map_pread(fd, b, MAP_HDR, 0)) || (ret = cache_hdr_decode(&c, b, why, whylen))) {
		if (ret != -EINVAL || !why[0])
			snprintf(why, whylen, "reading the header: %s",
				 ret == -EINVAL ? "the file is too short" : strerror(-ret));
		return ret;
	}
	c.nblocks = c.hdr.dev_size / BS;
	c.map_bytes = (c.nblocks + 3) / 4;
	if ((ret = cache_map_size_check(fd, c.map_bytes, why, whylen)))
		return ret;
	if (!(c.map = malloc(c.map_bytes)))
		return snprintf(why, whylen, "out of memory for the block map"), -ENOMEM;
	if (!(ret = cache_map_read(&c, why, whylen)) && !(ret = cache_map_check_states(&c, why, whylen)))
		*dev_size = c.hdr.dev_size;
	free(c.map);
	return ret;
}

int cache_write_hdr(struct cache *c)
{
	uint8_t b[MAP_HDR];
	cache_hdr_encode(c, b);
	if (pwrite(c->map_fd, b, MAP_HDR, 0) != MAP_HDR)
		return errno ? -errno : -EIO;
	return fdatasync(c->map_fd) ? -errno : 0;
}

/* Block states from the map file, or from the live map when a server
 * died without a clean close (it is newer). Returns 1 when the live map
 * was used, 0, or -errno with why set. */
int cache_map_load(struct cache *c, const char *path, const char *map_path, bool served,
		    char *why, size_t len)
{
	char note[600] = "", sub[512];
	int ret, live;

	if ((ret = cache_map_read(c, sub, sizeof(sub))))
		return snprintf(why, len, "%s: %s", map_path, sub), ret;
	/* A running server's live map is its own; it froze and persisted it. */
	live = served ? 0 : cache_live_load(path, c->hdr.id, c->hdr.generation, c->map, c->map_bytes,
			       note, sizeof(note));
	if (live < 0 && note[0])
		return snprintf(why, len, "%s", note), live;
	if (live < 0)
		return snprintf(why, len, "%s.live: %s", path, strerror(-live)), live;
	if (live)
		log_info("%s: a server stopped without a clean close; its live block map "
			 "(%s.live) is newer than the map file and is used", path, path);
	else if (note[0])
		log_info("%s", note);
	if ((ret = cache_map_check_states(c, sub, sizeof(sub))))
		return snprintf(why, len, "%s%s: %s", live ? path : map_path, live ? ".live" : "", sub),
		       ret;
	return live;
}
