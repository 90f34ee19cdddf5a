/*
 * Live block map, FILE.live. Layout (little-endian):
 *
 *   0    8   magic "UBLKLIVE"
 *   8    4   version, 1
 *   16  16   cache id (the map file's)
 *   32  40   boot id (/proc/sys/kernel/random/boot_id), NUL-padded
 *   72   8   generation of the server that keeps it
 *   80   8   bytes of block states
 *   4096     block states, as in the map file
 *
 * No checksum: within one boot the file is read back through the page
 * cache exactly as it was written, and from another boot it is ignored.
 */
#include "image/cache_live.h"
#include "util/atomic_file.h"
#include "util/fileio.h"

#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define LIVE_HDR 4096u
#define LIVE_MAGIC "UBLKLIVE"
#define LIVE_VERSION 1
#define BOOT_ID_LEN 40

/* This boot's id, or "" when the kernel does not say (then no live map is
 * trusted: a reboot could not be told apart). */
static const char *boot_id(void)
{
	static char id[BOOT_ID_LEN];
	if (!id[0]) {
		FILE *f = fopen("/proc/sys/kernel/random/boot_id", "re");
		if (f) {
			if (!fgets(id, sizeof(id), f))
				id[0] = 0;
			id[strcspn(id, "\n")] = 0;
			fclose(f);
		}
	}
	return id;
}

static void live_path(char *buf, size_t len, const char *path, const char *suffix)
{
	snprintf(buf, len, "%s.live%s", path, suffix);
}

int cache_live_load(const char *path, const uint8_t id[16], uint64_t gen, uint8_t *map,
		    size_t map_bytes, char *why, size_t whylen)
{
	char lpath[4096];
	uint8_t h[LIVE_HDR];
	struct stat st;
	int fd, ret = 0;

	why[0] = 0;
	live_path(lpath, sizeof(lpath), path, "");
	/* O_NONBLOCK: a planted FIFO must not hang us before fstat */
	fd = open(lpath, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
	if (fd < 0 && errno == ELOOP) {
		snprintf(why, whylen, "%s: a symbolic link, not a live map; ignored", lpath);
		return 0;
	}
	if (fd < 0)
		return errno == ENOENT ? 0 : -errno;
	if (fstat(fd, &st) || !S_ISREG(st.st_mode)) {
		snprintf(why, whylen, "%s: not a regular file; ignored", lpath);
		goto out;
	}
	/* checked before anything is read into map: a short file would leave
	 * it a mix of live and map-file states */
	if ((uint64_t)st.st_size < LIVE_HDR + (uint64_t)map_bytes) {
		snprintf(why, whylen, "%s: truncated (%lld bytes, expected at least %llu); ignored",
			 lpath, (long long)st.st_size, (unsigned long long)(LIVE_HDR + (uint64_t)map_bytes));
		goto out;
	}
	/* a live map that cannot be read may hold writes a server
	 * acknowledged: the open fails, it does not fall back on the map */
	if ((ret = pread_exact(fd, h, LIVE_HDR, 0)))
		goto out;
	if (memcmp(h, LIVE_MAGIC, 8) ||
	    le32toh(*(uint32_t *)(h + 8)) != LIVE_VERSION || memcmp(h + 16, id, 16) ||
	    le64toh(*(uint64_t *)(h + 80)) != map_bytes) {
		snprintf(why, whylen, "%s: not a live map of this cache; ignored", lpath);
		goto out;
	}
	if (!boot_id()[0]) {
		snprintf(why, whylen, "%s: whether it is of this boot cannot be told "
			 "(/proc/sys/kernel/random/boot_id cannot be read: is /proc mounted?)", lpath);
		ret = -ENOENT;
		goto out;
	}
	if (strncmp((char *)h + 32, boot_id(), BOOT_ID_LEN)) {
		snprintf(why, whylen, "%s: left from an earlier boot; writes not flushed before "
			 "the host went down are lost, as on a disk", lpath);
		goto out;
	}
	uint64_t g = le64toh(*(uint64_t *)(h + 72));
	if (g != gen && g != gen + 1) {
		snprintf(why, whylen, "%s: generation %llu, the map file has %llu; ignored", lpath,
			 (unsigned long long)g, (unsigned long long)gen);
		goto out;
	}
	if ((ret = pread_exact(fd, map, map_bytes, LIVE_HDR)))
		goto out;
	ret = 1;
out:
	close(fd);
	return ret;
}

int cache_live_map(struct cache_live *lv, const char *path, const uint8_t id[16], uint64_t gen,
		   const uint8_t *map, size_t map_bytes, uint8_t **states)
{
	char lpath[4096];
	size_t len = LIVE_HDR + ((map_bytes + 4095) & ~(size_t)4095);
	static const uint8_t zeros[4096];
	uint8_t hdr[LIVE_HDR] = { 0 };
	struct atomic_file af;
	uint8_t *mem;
	int ret;

	live_path(lpath, sizeof(lpath), path, "");
	/* Never through a planted name: a new file, renamed over FILE.live. */
	ret = atomic_file_open(&af, AT_FDCWD, lpath, 0600);
	if (ret)
		goto out;
	/* Written, every byte, before it is mapped: the first store to a
	 * mapped page of a full file system is a SIGBUS, where a write says
	 * ENOSPC. */
	memcpy(hdr, LIVE_MAGIC, 8);
	*(uint32_t *)(hdr + 8) = htole32(LIVE_VERSION);
	memcpy(hdr + 16, id, 16);
	strncpy((char *)hdr + 32, boot_id(), BOOT_ID_LEN);
	*(uint64_t *)(hdr + 72) = htole64(gen);
	*(uint64_t *)(hdr + 80) = htole64(map_bytes);
	if ((ret = pwrite_full(af.fd, map, map_bytes, LIVE_HDR)) ||
	    (ret = pwrite_full(af.fd, zeros, len - LIVE_HDR - map_bytes, LIVE_HDR + map_bytes)) ||
	    (ret = pwrite_full(af.fd, hdr, LIVE_HDR, 0)))
		goto out;
	mem = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, af.fd, 0);
	if (mem == MAP_FAILED) {
		ret = -errno;
		goto out;
	}
	/* The old file stays valid until this one replaces it whole. Not
	 * fsync'd: a live map is worthless after a reboot anyway. */
	ret = atomic_file_commit(&af, 0);
	if (ret) {
		munmap(mem, len);
		goto out;
	}
	lv->mem = mem;
	lv->len = len;
	*states = mem + LIVE_HDR;
out:
	atomic_file_abort(&af);
	return ret;
}

void cache_live_unmap(struct cache_live *lv)
{
	if (lv->mem)
		munmap(lv->mem, lv->len);
	lv->mem = NULL;
}

int cache_live_remove(const char *path)
{
	char lpath[4096];
	live_path(lpath, sizeof(lpath), path, "");
	return unlink(lpath) && errno != ENOENT ? -errno : 0;
}
