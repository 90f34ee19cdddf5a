/* A stopped (or frozen) device's cache as the source of a diff export
 * (docs/cache-format.md, Export): its dirty and zero blocks as extents. */
#include "image/cache.h"
#include "image/cache_impl.h"
#include "image/image.h"
#include "util/ublk_limits.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

/* Map the data file up to the last dirty block, when the file reaches that
 * far: frames are then checksummed and written from the page cache without
 * a copy into a buffer (diff_view_fn). Without a mapping, blocks are read. */
static void map_data(struct cache_export *x)
{
	struct stat st;
	uint64_t end = 0;

	for (size_t i = 0; i < x->n_ext; i++)
		if (x->ext[i].kind == DIFF_DATA)
			end = (x->ext[i].start + x->ext[i].count) * BS;
	if (!end || fstat(x->data_fd, &st) || !S_ISREG(st.st_mode) || (uint64_t)st.st_size < end ||
	    end > SIZE_MAX)
		return;
	void *m = mmap(NULL, (size_t)end, PROT_READ, MAP_SHARED, x->data_fd, 0);
	if (m == MAP_FAILED)
		return;
	madvise(m, (size_t)end, MADV_SEQUENTIAL);
	x->view = m;
	x->view_len = (size_t)end;
}

/* The runs of dirty and of zero blocks, into ext if not NULL: how many. */
static uint64_t runs(const struct cache *c, struct diff_extent *ext)
{
	uint64_t count = 0;

	for (uint64_t blk = 0; blk < c->nblocks;) {
		unsigned st = get_state(c, blk);
		uint64_t n = 1;
		while (blk + n < c->nblocks && n < (1u << 31) && get_state(c, blk + n) == st)
			n++;
		if (st != ST_CLEAN && ext)
			ext[count] = (struct diff_extent){ blk, (uint32_t)n,
							   st == ST_DIRTY ? DIFF_DATA : DIFF_ZERO };
		count += st != ST_CLEAN;
		blk += n;
	}
	return count;
}

int cache_export_open(const char *path, bool live, struct cache_export *x, char *why, size_t whylen)
{
	char map_path[4096];
	struct cache c = { .map_fd = -1 };
	uint8_t b[MAP_HDR];
	int ret;

	memset(x, 0, sizeof(*x));
	x->data_fd = x->map_fd = -1;
	snprintf(map_path, sizeof(map_path), "%s.map", path);
	if ((ret = cache_folder_check(path, why, whylen)))
		return ret;
	if ((c.map_fd = cache_map_open(map_path, false, why, whylen)) < 0) {
		ret = c.map_fd;
		if (ret == -ENOENT && access(path, F_OK))
			snprintf(why, whylen, "%s: no such cache (neither it nor its map %s exists)", path,
				 map_path);
		return ret;
	}
	if (!live && flock(c.map_fd, LOCK_SH | LOCK_NB)) {
		ret = errno == EWOULDBLOCK ? -EBUSY : -errno;
		if (ret == -EBUSY)
			snprintf(why, whylen, "%s: cache is in use by a running server: stop the "
				 "device first", path);
		else
			snprintf(why, whylen, "%s: locking its map: %s", path, strerror(-ret));
		goto out;
	}
	why[0] = 0;
	if ((ret = cache_file_private(c.map_fd, why, whylen)) ||
	    (ret = cache_map_pread(c.map_fd, b, MAP_HDR, 0)) || (ret = cache_hdr_decode(&c, b, why, whylen))) {
		char sub[300];
		snprintf(sub, sizeof(sub), "%s", why[0] ? why : ret == -EINVAL ?
			 "the file is too short for a header" : strerror(-ret));
		snprintf(why, whylen, "%s: %s", map_path, sub);
		goto out;
	}
	c.nblocks = c.hdr.dev_size / BS;
	c.map_bytes = (c.nblocks + 3) / 4;
	/* The file must hold the states before memory is spent on them. */
	if ((ret = cache_map_size_check(c.map_fd, c.map_bytes, why, whylen))) {
		char sub[300];
		snprintf(sub, sizeof(sub), "%s", why);
		snprintf(why, whylen, "%s: %s", map_path, sub);
		goto out;
	}
	c.map = malloc(c.map_bytes + 1);
	if (!c.map) {
		ret = -ENOMEM;
		snprintf(why, whylen, "out of memory for the block map");
		goto out;
	}
	if ((ret = cache_map_load(&c, path, map_path, live, why, whylen)) < 0)
		goto out;
	/* as the server opens it: no FIFO, and the size the map says */
	uint64_t data_size;
	if ((ret = cache_data_open(path, false, &x->data_fd, &data_size, why, whylen)))
		goto out;
	if (data_size != c.hdr.dev_size) {
		ret = -EINVAL;
		snprintf(why, whylen, "%s: data file has %llu bytes, the map says %llu", path,
			 (unsigned long long)data_size, (unsigned long long)c.hdr.dev_size);
		goto out;
	}
	/* Runs of dirty blocks become data extents, runs of zero blocks zero
	 * extents: counted first, so that a map too fragmented for a diff is
	 * refused before its list costs memory (16 bytes a block). */
	uint64_t n_ext = runs(&c, NULL);
	if (n_ext > UBLK_MAX_EXTENTS) {
		ret = -EINVAL;
		snprintf(why, whylen, "%s: %llu extents are more than a diff may hold (%llu): the "
			 "cache is too fragmented to export", path, (unsigned long long)n_ext,
			 (unsigned long long)UBLK_MAX_EXTENTS);
		goto out;
	}
	if (n_ext && !(x->ext = malloc(n_ext * sizeof(*x->ext)))) {
		ret = -ENOMEM;
		snprintf(why, whylen, "out of memory for %llu extents", (unsigned long long)n_ext);
		goto out;
	}
	x->n_ext = runs(&c, x->ext);
	x->meta.dev_size = c.hdr.dev_size;
	x->meta.generation = c.hdr.parent_generation + 1;
	memcpy(x->meta.parent, c.hdr.parent_id, 16);
	if (getrandom(x->meta.id, sizeof(x->meta.id), 0) != sizeof(x->meta.id)) {
		ret = -EIO;
		snprintf(why, whylen, "getrandom: no randomness for the layer id");
		goto out;
	}
	x->map_fd = c.map_fd;
	c.map_fd = -1;
	map_data(x);
	ret = 0;
out:
	if (c.map_fd >= 0)
		close(c.map_fd);
	free(c.map);
	if (ret)
		cache_export_close(x);
	return ret;
}

int cache_export_read(void *ctx, uint64_t block, uint32_t count, void *buf)
{
	const struct cache_export *x = ctx;
	size_t len = (size_t)count * BS;
	off_t off = (off_t)(block * BS);

	while (len) {
		ssize_t n = pread(x->data_fd, buf, len, off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return n < 0 ? -errno : -EIO;
		buf = (char *)buf + n;
		len -= (size_t)n;
		off += n;
	}
	return 0;
}

/* Pages are brought in by madvise, which reports a read error as one
 * (then the blocks are read, and the error told) where touching the page
 * would raise SIGBUS. (A page reclaimed again before it is read, and then
 * failing to read back, would still raise it: the window is a frame's
 * checksum or compression.) */
int cache_export_view(void *ctx, uint64_t block, uint32_t count, const void **data)
{
	const struct cache_export *x = ctx;
	size_t off = (size_t)block * BS, len = (size_t)count * BS;
	size_t page = (size_t)sysconf(_SC_PAGESIZE), at = off / page * page;

	if (!x->view || off > x->view_len || len > x->view_len - off)
		return -ENOTSUP;
	if (madvise(x->view + at, off + len - at, MADV_POPULATE_READ))
		return -errno;
	*data = x->view + off;
	return 0;
}

void cache_export_close(struct cache_export *x)
{
	if (x->data_fd >= 0)
		close(x->data_fd);
	if (x->map_fd >= 0)
		close(x->map_fd);
	if (x->view)
		munmap(x->view, x->view_len);
	x->view = NULL;
	free(x->ext);
	x->ext = NULL;
	x->data_fd = x->map_fd = -1;
}

int cache_remove(const char *path, char *why, size_t len)
{
	char map_path[4096];
	int ret = 0;

	why[0] = 0;
	snprintf(map_path, sizeof(map_path), "%s.map", path);
	/* by name: only in a folder nobody else could have pointed elsewhere */
	if ((ret = cache_folder_check(path, why, len)))
		return ret;
	/* never one a server holds (it locks the map while it runs); held
	 * until the files are gone: a server opening the cache meanwhile
	 * finds its map removed once it has the lock (layer_cache_open) */
	int map = open(map_path, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
	if (map < 0 && errno != ENOENT)
		return -errno;   /* not known to be free: left whole */
	if (map >= 0 && flock(map, LOCK_EX | LOCK_NB)) {
		ret = errno == EWOULDBLOCK ? -EBUSY : -errno;
		close(map);
		return ret;
	}
	/* the map last: a server that starts once it is gone makes all anew,
	 * and a data file that stays keeps its map and live map (no half a
	 * cache, no acknowledged writes lost to an older map) */
	int live = 0;
	if (unlink(path) && errno != ENOENT)
		ret = -errno;
	if (!ret)
		live = cache_live_remove(path);
	if (!ret && unlink(map_path) && errno != ENOENT)
		ret = -errno;
	if (map >= 0)
		close(map);
	return ret ? ret : live;
}
