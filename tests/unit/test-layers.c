/* Host unit tests of the layer stack: no ublk, a plain io_uring. */
#include "util/aio.h"
#include "check.h"
#include "layer_run.h"
#include "image/layer.h"
#include "image/layer_file.h"
#include "image/layer_cache.h"
#include "image/cache.h"
#include "image/layer_fault.h"
#include "util/crc32c.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sched.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <linux/magic.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>


/* Where make_image puts its files: tmpfs makes the file layer read inline. */
static const char *image_dir = "/tmp";

static char *make_image(size_t size, unsigned char **data)
{
	static char paths[4][64];
	static int next;
	char *path = paths[next++ % 4];
	snprintf(path, sizeof(paths[0]), "%s/test-layers.XXXXXX", image_dir);
	int fd = mkstemp(path);
	*data = malloc(size);
	for (size_t i = 0; i < size; i++)
		(*data)[i] = (unsigned char)(rand() & 0xff);
	if (fd < 0 || write(fd, *data, size) != (ssize_t)size)
		exit(2);
	close(fd);
	return path;
}

static blkcnt_t allocated(const char *path)
{
	struct stat st;
	stat(path, &st);
	return st.st_blocks;
}

/* The bytes layer_map places for [off, off + len) gathered into out: 0,
 * -1 when the layer cannot place them, -2 when its pieces do not add up. */
static int map_gather(struct layer *l, uint64_t off, uint32_t len, unsigned char *out)
{
	struct layer_map m = { .n = 0 };
	int n = layer_map(l, off, len, &m), ret = 0;
	size_t at = 0;

	for (int i = 0; i < n && !ret; i++) {
		if (at + m.iov[i].iov_len > len)
			ret = -2;
		else
			memcpy(out + at, m.iov[i].iov_base, m.iov[i].iov_len);
		at += m.iov[i].iov_len;
	}
	if (!ret && n != m.n)
		ret = -2;
	layer_unmap(&m);
	return !n ? -1 : ret ? ret : at == len ? 0 : -2;
}

static void test_file_layer(const char *dir)
{
	const size_t size = 1 << 20;
	unsigned char *data, *buf = aligned_alloc(4096, 256 * 1024);
	struct statfs fs;
	struct layer *l;

	image_dir = dir;
	char *path = make_image(size, &data);
	bool in_memory = statfs(dir, &fs) == 0 && fs.f_type == TMPFS_MAGIC;
	printf("file layer in %s (%s)\n", dir, in_memory ? "tmpfs: reads inline" : "reads on the ring");

	CHECK(layer_file_open(path, false, &l) == 0, "open %s", path);
	CHECK(l->size == size, "size %llu", (unsigned long long)l->size);

	CHECK(run(l, LAYER_READ, 8192, 65536, buf) == 65536, "read");
	CHECK(!memcmp(buf, data + 8192, 65536), "read data matches the file");

	memset(buf, 0xab, 4096);
	CHECK(run(l, LAYER_WRITE, 12288, 4096, buf) == 4096, "write");
	memset(buf, 0, 4096);
	CHECK(run(l, LAYER_READ, 12288, 4096, buf) == 4096, "read back");
	CHECK(buf[0] == 0xab && buf[4095] == 0xab, "written data reads back");
	CHECK(run(l, LAYER_FLUSH, 0, 0, NULL) == 0, "flush");

	blkcnt_t before = allocated(path);
	CHECK(run(l, LAYER_DISCARD, 65536, 131072, NULL) == 0, "discard");
	CHECK(run(l, LAYER_READ, 65536, 131072, buf) == 131072, "read discarded");
	int zero = 1;
	for (int i = 0; i < 131072; i++)
		zero &= buf[i] == 0;
	CHECK(zero, "discarded range reads zeros");
	CHECK(allocated(path) < before, "discard gave space back (%lld -> %lld)",
	      (long long)before, (long long)allocated(path));
	CHECK(run(l, LAYER_WRITE_ZEROES, 0, 4096, NULL) == 0, "write zeroes");

	/* A read across the end of the file reads zeros past it. */
	memset(buf, 0xff, 8192);
	CHECK(run(l, LAYER_READ, size - 4096, 8192, buf) == 8192, "read across EOF");
	CHECK(buf[4096] == 0 && buf[8191] == 0, "past EOF reads zeros");

	/* In place: what was written and discarded, never past the mapping,
	 * even when the layer is made larger (a --read-only --size device) */
	CHECK(l->maps, "a regular file maps");
	CHECK(run(l, LAYER_READ, 0, 256 * 1024, buf) == 256 * 1024, "read for the map");
	unsigned char *mapped = malloc(256 * 1024);
	CHECK(map_gather(l, 0, 256 * 1024, mapped) == 0 && !memcmp(mapped, buf, 256 * 1024),
	      "the map places what a read reads");
	CHECK(map_gather(l, size - 4096, 8192, mapped) == -1, "no map across the end of the file");
	l->size += 1 << 20;
	CHECK(map_gather(l, size, 4096, mapped) == -1, "none past it when the layer grew");
	free(mapped);
	layer_close(l);

	CHECK(layer_file_open(path, true, &l) == 0, "open read-only");
	CHECK(run(l, LAYER_WRITE, 0, 4096, buf) == -EROFS, "write to read-only layer fails");
	CHECK(run(l, LAYER_DISCARD, 0, 4096, NULL) == -EROFS, "discard on read-only fails");
	CHECK(run(l, LAYER_READ, 0, 4096, buf) == 4096, "read-only layer reads");
	layer_close(l);

	/* Requests in flight at once complete independently. */
	CHECK(layer_file_open(path, false, &l) == 0, "reopen");
	struct sync_io many[16];
	for (int i = 0; i < 16; i++) {
		many[i] = (struct sync_io){ .io = { .op = LAYER_READ, .off = (uint64_t)i * 4096, .len = 4096,
						     .buf = buf + i * 4096, .done = on_done, .aio = &aio } };
		layer_submit(l, &many[i].io);
	}
	/* reads of a tmpfs file are done at once, on the caller's thread */
	CHECK(aio.inflight == (in_memory ? 0 : 16), "%u requests in flight", aio.inflight);
	aio_drain(&aio);
	int all = 1;
	for (int i = 0; i < 16; i++)
		all &= many[i].done == 1 && many[i].res == 4096;
	CHECK(all, "all 16 concurrent reads completed");
	layer_close(l);

	CHECK(layer_file_open("/nonexistent/image", false, &l) == -ENOENT, "missing file");
	unlink(path);
	free(data);
	free(buf);
}

static bool all_zero(const unsigned char *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (p[i])
			return false;
	return true;
}

static void test_cache_layer(void)
{
	const size_t size = 1 << 20;
	unsigned char *data, *buf = aligned_alloc(4096, 65536), *pattern = aligned_alloc(4096, 8192);
	char *base_path = make_image(size, &data);
	char cache[64], map[80], why[600];
	struct layer *base, *l;

	snprintf(cache, sizeof(cache), "%s.cache", base_path);
	snprintf(map, sizeof(map), "%s.map", cache);
	memset(pattern, 0x5c, 8192);

	CHECK(layer_file_open(base_path, true, &base) == 0, "open base");
	CHECK(layer_cache_open(cache, base, 2 * size, false, &l, why, sizeof(why)) == 0, "create cache: %s", why);
	CHECK(l->size == 2 * size, "device size is --size");
	CHECK(layer_stack_priv_size(l) <= sizeof(priv), "stack state fits");
	CHECK(access(map, F_OK) == 0, "map file created next to the cache");

	CHECK(run(l, LAYER_READ, 0, 65536, buf) == 65536 && !memcmp(buf, data, 65536), "clean blocks read the base");
	CHECK(run(l, LAYER_READ, size, 65536, buf) == 65536 && all_zero(buf, 65536), "past the base reads zeros");
	CHECK(run(l, LAYER_WRITE, 3 * 4096, 8192, pattern) == 8192, "write two blocks");
	CHECK(run(l, LAYER_READ, 0, 65536, buf) == 65536, "read across clean and dirty blocks");
	CHECK(!memcmp(buf, data, 3 * 4096) && !memcmp(buf + 3 * 4096, pattern, 8192) &&
	      !memcmp(buf + 5 * 4096, data + 5 * 4096, 65536 - 5 * 4096), "runs assembled in order");
	memset(buf, 0, 4096);
	CHECK(run(l, LAYER_WRITE, 8 * 4096, 4096, buf) == 4096, "all-zero write");
	CHECK(run(l, LAYER_DISCARD, 10 * 4096, 4 * 4096, NULL) == 0, "discard");
	CHECK(run(l, LAYER_WRITE, size + 4096, 4096, pattern) == 4096, "write past the base");
	CHECK(run(l, LAYER_FLUSH, 0, 0, NULL) == 0, "flush through the flusher thread");

	struct layer *base2, *l2;
	CHECK(layer_file_open(base_path, true, &base2) == 0, "open base again");
	CHECK(layer_cache_open(cache, base2, 0, false, &l2, why, sizeof(why)) == -EBUSY,
	      "second server on the same cache refused");
	CHECK(strstr(why, "in use by another server") != NULL, "busy message: %s", why);
	layer_close(base2);
	layer_close(l);

	/* resume: everything flushed is there */
	CHECK(layer_file_open(base_path, true, &base) == 0, "open base");
	CHECK(layer_cache_open(cache, base, 0, false, &l, why, sizeof(why)) == 0, "reopen cache: %s", why);
	CHECK(l->size == 2 * size, "size from the cache header");
	CHECK(run(l, LAYER_READ, 0, 65536, buf) == 65536, "read after resume");
	CHECK(!memcmp(buf + 3 * 4096, pattern, 8192), "dirty blocks survive");
	CHECK(all_zero(buf + 8 * 4096, 4096), "zero-written block reads zero");
	CHECK(all_zero(buf + 10 * 4096, 4 * 4096), "discarded blocks read zero");
	CHECK(!memcmp(buf, data, 3 * 4096), "clean blocks still from the base");
	CHECK(run(l, LAYER_READ, size + 4096, 4096, buf) == 4096 && !memcmp(buf, pattern, 4096),
	      "write past the base survives");
	layer_close(l);

	/* the base was never written */
	unsigned char *now = malloc(size);
	int fd = open(base_path, O_RDONLY);
	CHECK(fd >= 0 && read(fd, now, size) == (ssize_t)size && !memcmp(now, data, size), "base unchanged");
	close(fd);
	free(now);

	/* refusals */
	CHECK(layer_file_open(base_path, true, &base) == 0, "open base");
	CHECK(layer_cache_open(cache, base, 3 * size, false, &l, why, sizeof(why)) == -EINVAL &&
	      strstr(why, "cache is for a 2097152-byte device"), "size mismatch refused: %s", why);
	fd = open(map, O_RDWR);
	CHECK(fd >= 0 && pwrite(fd, "X", 1, 20) == 1, "damage the header");
	close(fd);
	CHECK(layer_cache_open(cache, base, 0, false, &l, why, sizeof(why)) == -EINVAL &&
	      strstr(why, "header checksum mismatch"), "damaged header refused: %s", why);
	unlink(map);
	CHECK(layer_cache_open(cache, base, 0, false, &l, why, sizeof(why)) == -EINVAL &&
	      strstr(why, "not a complete ublk-tools cache"), "cache without map refused: %s", why);
	layer_close(base);

	unlink(cache);
	unlink(base_path);
	free(data);
	free(buf);
	free(pattern);
}

/* Brings a write's data into a layer's place: 0, or -errno. */
struct layer_fill {
	int (*fill)(struct layer_fill *f, const struct iovec *iov, int n);
};

/* A write in place as the queue makes it: layer_place_write, f filling
 * the place, layer_write_placed: 0, or -EAGAIN. */
static int layer_write_in_place(struct layer *l, uint64_t off, uint32_t len, struct layer_fill *f)
{
	struct iovec iov = { NULL, len };
	int ret = layer_place_write(l, off, len, &iov.iov_base);

	if (ret)
		return ret;
	ret = f->fill(f, &iov, 1) ? -EAGAIN : 0;
	int placed = layer_write_placed(l, off, ret ? 0 : len);
	return ret ? ret : placed;
}

/* A write's data as the queue fills a layer's mapping with it: copied by
 * the kernel, from a pipe (a mapped file cut short is then an error of
 * the copy, not a SIGBUS here); cut_path, when set, is cut to nothing
 * once the data is in, as if by someone else before the layer looks. */
struct pipe_fill {
	struct layer_fill f;
	const void *data;
	const char *cut_path;
	int calls;
};

static int pipe_fill(struct layer_fill *f, const struct iovec *iov, int n)
{
	struct pipe_fill *pf = container_of(f, struct pipe_fill, f);
	int fds[2], ret = 0;
	size_t len = 0;

	pf->calls++;
	for (int i = 0; i < n; i++)
		len += iov[i].iov_len;
	if (pipe(fds))
		return -errno;
	fcntl(fds[1], F_SETPIPE_SZ, (int)len);
	if (write(fds[1], pf->data, len) != (ssize_t)len || readv(fds[0], iov, n) != (ssize_t)len)
		ret = -EIO;
	close(fds[0]);
	close(fds[1]);
	if (!ret && pf->cut_path && truncate(pf->cut_path, 0))
		ret = -errno;
	return ret;
}

/* layer_write_in_place of len bytes of data at off. */
static int write_placed(struct layer *l, uint64_t off, uint32_t len, const void *data)
{
	struct pipe_fill pf = { { pipe_fill }, data, NULL, 0 };
	return layer_write_in_place(l, off, len, &pf.f);
}

/* Random writes, zero writes and discards of random runs through a cache
 * (its size past the base's), each followed by a read of a random range
 * checked against a model: reads mixing clean, dirty and zero runs in any
 * order, the split ones included, return what was last written. */
static void test_cache_model(void)
{
	const unsigned blocks = 256, base_blocks = 200;
	unsigned char *data, *model = calloc(blocks, 4096);
	unsigned char *buf = aligned_alloc(4096, 128 * 4096), *w = aligned_alloc(4096, 16 * 4096);
	char *base_path = make_image(base_blocks * 4096, &data);
	char cache[64], map[80], why[600];
	struct layer *base, *l;
	unsigned mismatches = 0, mapped = 0, map_mismatches = 0;

	snprintf(cache, sizeof(cache), "%s.cache", base_path);
	snprintf(map, sizeof(map), "%s.map", cache);
	memcpy(model, data, base_blocks * 4096);
	CHECK(layer_file_open(base_path, true, &base) == 0, "open base");
	CHECK(layer_cache_open(cache, base, blocks * 4096, false, &l, why, sizeof(why)) == 0, "cache: %s", why);
	for (int i = 0; i < 3000; i++) {
		unsigned b = (unsigned)rand() % blocks, n = 1 + (unsigned)rand() % 16, kind = (unsigned)rand() % 8;
		if (b + n > blocks)
			n = blocks - b;
		if (kind < 5) {   /* mostly single blocks, as fragments a cache */
			n = kind < 4 ? 1 : n;
			for (unsigned k = 0; k < n * 4096; k++)
				w[k] = (unsigned char)rand();
			if (rand() % 2)
				CHECK(write_placed(l, b * 4096ull, n * 4096, w) == 0, "write in place");
			else
				CHECK(run(l, LAYER_WRITE, b * 4096ull, n * 4096, w) == (int)(n * 4096), "write");
			memcpy(model + b * 4096ull, w, n * 4096);
		} else if (kind < 7) {
			memset(w, 0, n * 4096);
			CHECK(run(l, LAYER_WRITE, b * 4096ull, n * 4096, w) == (int)(n * 4096), "zero write");
			memset(model + b * 4096ull, 0, n * 4096);
		} else {
			CHECK(run(l, LAYER_DISCARD, b * 4096ull, n * 4096, NULL) == 0, "discard");
			memset(model + b * 4096ull, 0, n * 4096);
		}
		unsigned rb = (unsigned)rand() % blocks, rn = 1 + (unsigned)rand() % 128;
		if (rb + rn > blocks)
			rn = blocks - rb;
		CHECK(run(l, LAYER_READ, rb * 4096ull, rn * 4096, buf) == (int)(rn * 4096), "read");
		mismatches += memcmp(buf, model + rb * 4096ull, rn * 4096) != 0;
		int m = map_gather(l, rb * 4096ull, rn * 4096, buf);
		mapped += m == 0;
		map_mismatches += m == -2 || (m == 0 && memcmp(buf, model + rb * 4096ull, rn * 4096));
	}
	CHECK(mismatches == 0, "%u of 3000 reads differ from the model", mismatches);
	/* reads of more than 64 runs cannot be placed; most others can */
	CHECK(l->maps && mapped > 1000 && map_mismatches == 0,
	      "%u reads placed in memory, %u of them unlike the model", mapped, map_mismatches);
	layer_close(l);
	unlink(cache);
	unlink(map);
	unlink(base_path);
	free(data);
	free(model);
	free(buf);
	free(w);
}

/* Close a test's cache stack and remove its files. */
static void close_cache_test(struct layer *l, const char *path, const char *cache, const char *map)
{
	layer_close(l);
	unlink(cache);
	unlink(map);
	unlink(path);
}

/* A cache written in place: the data lands in the data file and reads
 * back, where the cache cannot (zeros only, frozen, a failed fill, a data
 * file cut under the mapping: the guarded look at the data) no block is
 * published and the write goes the usual way; a plain file takes writes in
 * place within its size, a read-only one none. */
static void test_write_in_place(void)
{
	unsigned char *data, *buf = aligned_alloc(4096, 8 * 4096), *w = aligned_alloc(4096, 4 * 4096);
	char *path = make_image(1 << 20, &data), cache[64], map[80], why[600];
	struct layer *base, *l, *frozen;
	static const unsigned char zeros[4 * 4096];

	snprintf(cache, sizeof(cache), "%s.cache", path);
	snprintf(map, sizeof(map), "%s.map", cache);
	for (unsigned i = 0; i < 4 * 4096; i++)
		w[i] = (unsigned char)(i * 7 + 1);
	CHECK(layer_file_open(path, true, &base) == 0, "open");
	CHECK(layer_write_in_place(base, 0, 4096, NULL) == -EAGAIN, "a read-only file takes none");
	CHECK(layer_cache_open(cache, base, 0, false, &l, why, sizeof(why)) == 0, "cache: %s", why);
	CHECK(write_placed(l, 4096, 2 * 4096, w) == 0, "two blocks in place");
	CHECK(run(l, LAYER_READ, 0, 4 * 4096, buf) == 4 * 4096, "read");
	CHECK(!memcmp(buf, data, 4096), "block 0 from the base");
	CHECK(!memcmp(buf + 4096, w, 2 * 4096), "blocks 1-2 as written");
	CHECK(!memcmp(buf + 3 * 4096, data + 3 * 4096, 4096), "block 3 from the base");

	memcpy(buf, w, 4096);
	memset(buf + 4096, 0, 4096);
	CHECK(write_placed(l, 4 * 4096, 2 * 4096, buf) == 0, "data and zeros in place");
	CHECK(write_placed(l, 6 * 4096, 2 * 4096, zeros) == -EAGAIN, "zeros only go the usual way");
	CHECK(run(l, LAYER_WRITE, 6 * 4096, 2 * 4096, (void *)zeros) == 2 * 4096, "which makes a hole");
	CHECK(run(l, LAYER_READ, 4 * 4096, 4 * 4096, buf) == 4 * 4096, "read");
	CHECK(!memcmp(buf, w, 4096) && !memcmp(buf + 4096, zeros, 3 * 4096), "data, then zeros");
	CHECK(write_placed(l, 4096 + 512, 4096, w) == -EAGAIN && write_placed(l, 4096, 100, w) == -EAGAIN,
	      "part blocks go the usual way");
	CHECK(write_placed(l, (1 << 20) - 4096, 2 * 4096, w) == -EAGAIN, "so does one past the end");

	struct pipe_fill failing = { { pipe_fill }, w, "/nonexistent/x", 0 };
	CHECK(layer_write_in_place(l, 8 * 4096, 4096, &failing.f) == -EAGAIN && failing.calls == 1,
	      "a failed fill goes the usual way");
	CHECK(run(l, LAYER_READ, 8 * 4096, 4096, buf) == 4096 && !memcmp(buf, data + 8 * 4096, 4096),
	      "and left the block as it was");

	/* the two halves, as a queue before 6.5 uses them: the kernel's copy
	 * comes between, and may stop short */
	void *at;
	CHECK(layer_place_write(l, 12 * 4096, 2 * 4096, &at) == 0, "a place for two blocks");
	memcpy(at, w, 4096);
	CHECK(layer_stack_freeze(l, 20, &frozen) == -ETIMEDOUT, "a placed write holds a freeze off");
	CHECK(layer_write_placed(l, 12 * 4096, 4096) == 0, "one block of it came");
	CHECK(run(l, LAYER_READ, 12 * 4096, 2 * 4096, buf) == 2 * 4096, "read");
	CHECK(!memcmp(buf, w, 4096) && !memcmp(buf + 4096, data + 13 * 4096, 4096),
	      "the block that came as written, the other the base's");
	CHECK(layer_place_write(l, 14 * 4096, 4096, &at) == 0, "another place");
	CHECK(layer_write_placed(l, 14 * 4096, 0) == -EAGAIN, "none of it came: the usual way");

	CHECK(layer_stack_freeze(l, 1000, &frozen) == 0, "freeze");
	CHECK(layer_place_write(l, 9 * 4096, 4096, &at) == -EAGAIN, "a frozen cache gives no place");
	struct pipe_fill counted = { { pipe_fill }, w, NULL, 0 };
	CHECK(layer_write_in_place(l, 9 * 4096, 4096, &counted.f) == -EAGAIN && counted.calls == 0,
	      "a frozen cache's data file is not touched");
	layer_thaw(frozen);
	CHECK(layer_write_in_place(l, 9 * 4096, 4096, &counted.f) == 0, "after the thaw it is");

	struct pipe_fill cut = { { pipe_fill }, w, cache, 0 };
	CHECK(layer_write_in_place(l, 10 * 4096, 4096, &cut.f) == -EAGAIN && cut.calls == 1,
	      "a data file cut under the mapping: no SIGBUS, the usual way");
	CHECK(run(l, LAYER_READ, 10 * 4096, 4096, buf) == 4096 && !memcmp(buf, data + 10 * 4096, 4096),
	      "and the block is as it was");
	struct pipe_fill past = { { pipe_fill }, w, NULL, 0 };
	CHECK(layer_write_in_place(l, 11 * 4096, 4096, &past.f) == -EAGAIN && past.calls == 1,
	      "a fill past the cut file's end fails in the kernel's copy");
	CHECK(run(l, LAYER_WRITE, 11 * 4096, 4096, w) == 4096, "the usual way writes it");
	CHECK(run(l, LAYER_READ, 11 * 4096, 4096, buf) == 4096 && !memcmp(buf, w, 4096), "and it reads back");
	close_cache_test(l, path, cache, map);
	free(data);

	path = make_image(1 << 20, &data);
	CHECK(layer_file_open(path, false, &l) == 0, "open writable");
	CHECK(write_placed(l, 4096, 3 * 4096, w) == 0, "a writable file takes writes in place");
	CHECK(run(l, LAYER_READ, 4096, 3 * 4096, buf) == 3 * 4096 && !memcmp(buf, w, 3 * 4096), "which read back");
	CHECK(write_placed(l, (1 << 20) - 4096, 2 * 4096, w) == -EAGAIN, "but none past its end");
	layer_close(l);
	unlink(path);
	free(data);
	free(buf);
	free(w);
}

/* A split read whose span below fails where only dirty blocks are (a bad
 * sector under a block the cache has) is served run by run instead. */
static void test_split_fallback(void)
{
	unsigned char *data, *buf = aligned_alloc(4096, 3 * 4096), *w = aligned_alloc(4096, 4096);
	char *path = make_image(1 << 20, &data), cache[64], map[80], why[600];
	struct layer *base, *fault, *l;

	snprintf(cache, sizeof(cache), "%s.cache", path);
	snprintf(map, sizeof(map), "%s.map", cache);
	memset(w, 0x77, 4096);
	CHECK(layer_file_open(path, true, &base) == 0, "open");
	CHECK(layer_fault_open("error-read=5@4K-8K", base, &fault, why, sizeof(why)) == 0, "fault: %s", why);
	CHECK(layer_cache_open(cache, fault, 0, false, &l, why, sizeof(why)) == 0, "cache: %s", why);
	CHECK(run(l, LAYER_WRITE, 4096, 4096, w) == 4096, "block 1 into the cache");
	CHECK(run(l, LAYER_READ, 0, 3 * 4096, buf) == 3 * 4096, "clean, dirty over a bad block, clean");
	CHECK(!memcmp(buf, data, 4096) && !memcmp(buf + 4096, w, 4096) &&
	      !memcmp(buf + 8192, data + 8192, 4096), "its bytes");
	close_cache_test(l, path, cache, map);
	free(data);
	free(buf);
	free(w);
}

/* A split read whose dirty blocks lie past the end of a data file cut
 * short (a hostile or damaged cache) reads them as zeros, run by run, as
 * an unsplit read does. */
static void test_split_short_data(void)
{
	unsigned char *data, *buf = aligned_alloc(4096, 5 * 4096), *w = aligned_alloc(4096, 4096);
	char *path = make_image(1 << 20, &data), cache[64], map[80], why[600];
	struct layer *base, *l;
	static const unsigned char zeros[4096];

	snprintf(cache, sizeof(cache), "%s.cache", path);
	snprintf(map, sizeof(map), "%s.map", cache);
	memset(w, 0x5a, 4096);
	CHECK(layer_file_open(path, true, &base) == 0, "open");
	CHECK(layer_cache_open(cache, base, 0, false, &l, why, sizeof(why)) == 0, "cache: %s", why);
	CHECK(run(l, LAYER_WRITE, 4096, 4096, w) == 4096, "block 1 into the cache");
	CHECK(run(l, LAYER_WRITE, 3 * 4096, 4096, w) == 4096, "block 3 into the cache");
	CHECK(truncate(cache, 2 * 4096) == 0, "cut the data file after block 1");
	CHECK(run(l, LAYER_READ, 0, 5 * 4096, buf) == 5 * 4096, "clean, dirty, clean, dirty past the end, clean");
	CHECK(!memcmp(buf, data, 4096), "block 0 from the base");
	CHECK(!memcmp(buf + 4096, w, 4096), "block 1 from the cache");
	CHECK(!memcmp(buf + 2 * 4096, data + 2 * 4096, 4096), "block 2 from the base");
	CHECK(!memcmp(buf + 3 * 4096, zeros, 4096), "block 3 past the data file's end: zeros");
	CHECK(!memcmp(buf + 4 * 4096, data + 4 * 4096, 4096), "block 4 from the base");
	close_cache_test(l, path, cache, map);
	free(data);
	free(buf);
	free(w);
}

/* A layer telling its holes in 1 KiB steps, as some file systems do. */
static enum layer_extent kib_kind;
static uint64_t kib_len;

static enum layer_extent kib_extent(struct layer *l, uint64_t off, uint64_t *len)
{
	(void)l;
	(void)off;
	*len = kib_len;
	return kib_kind;
}

/* layer_extent keeps answers in whole 4 KiB blocks: zeros are cut down
 * into the hole, data is rounded up, less than a block of zeros is data. */
static void test_extent_blocks(void)
{
	static const struct layer_ops ops = { .name = "kib", .extent = kib_extent };
	struct layer l = { .ops = &ops, .size = 1 << 20 };
	uint64_t len;

	kib_kind = LAYER_ZEROS, kib_len = 5120, len = 65536;
	CHECK(layer_extent(&l, 0, &len) == LAYER_ZEROS && len == 4096, "5 KiB of zeros: %llu",
	      (unsigned long long)len);
	kib_kind = LAYER_DATA, kib_len = 1024, len = 65536;
	CHECK(layer_extent(&l, 4096, &len) == LAYER_DATA && len == 4096, "1 KiB of data: %llu",
	      (unsigned long long)len);
	kib_kind = LAYER_ZEROS, kib_len = 1024, len = 65536;
	CHECK(layer_extent(&l, 8192, &len) == LAYER_DATA && len == 4096, "1 KiB of zeros: %llu",
	      (unsigned long long)len);
	kib_kind = LAYER_ZEROS, kib_len = 65536, len = 65536;
	CHECK(layer_extent(&l, 0, &len) == LAYER_ZEROS && len == 65536, "all of it");
	kib_kind = LAYER_DATA, kib_len = 0, len = 65536;
	CHECK(layer_extent(&l, 0, &len) == LAYER_DATA && len == 65536, "no progress: read it");
	kib_kind = LAYER_DATA, kib_len = 3000, len = 3500;   /* an unaligned end of device */
	CHECK(layer_extent(&l, 0, &len) == LAYER_DATA && len == 3500, "to the end: %llu",
	      (unsigned long long)len);
}

/* In a child: open the cache, run writes, and die without closing (a
 * killed server). Returns the child's count of failed steps. */
static int die_after_writes(const char *base_path, const char *cache,
			    void (*writes)(struct layer *l))
{
	pid_t pid = fork();
	int status;

	if (pid == 0) {
		struct layer *base, *l;
		char why[600];
		io_uring_queue_exit(&ring);   /* the parent's */
		if (io_uring_queue_init(64, &ring, 0) || layer_file_open(base_path, true, &base) ||
		    layer_cache_open(cache, base, 0, false, &l, why, sizeof(why)))
			_exit(100);
		writes(l);
		_exit(failures);
	}
	waitpid(pid, &status, 0);
	return WIFEXITED(status) ? WEXITSTATUS(status) : 200;
}

static unsigned char pat_a[4096], pat_b[4096], pat_c[4096];

static void crash_writes_1(struct layer *l)
{
	CHECK(run(l, LAYER_WRITE, 4096, 4096, pat_a) == 4096, "write block 1");
	CHECK(run(l, LAYER_FLUSH, 0, 0, NULL) == 0, "flush");
	CHECK(run(l, LAYER_WRITE, 2 * 4096, 4096, pat_b) == 4096, "write block 2, unflushed");
	CHECK(run(l, LAYER_WRITE, 4096, 4096, pat_c) == 4096, "overwrite block 1, unflushed");
	CHECK(run(l, LAYER_DISCARD, 5 * 4096, 4096, NULL) == 0, "discard block 5, unflushed");
}

static void crash_writes_2(struct layer *l)
{
	CHECK(run(l, LAYER_WRITE, 4 * 4096, 4096, pat_b) == 4096, "write block 4, unflushed");
	CHECK(run(l, LAYER_WRITE, 4096, 4096, pat_a) == 4096, "overwrite block 1, unflushed");
}

/* A server killed mid-way loses nothing it acknowledged (the live map),
 * a host crash loses only unflushed writes (the map file). */
static void test_cache_crash(void)
{
	const size_t size = 1 << 20;
	unsigned char *data, *buf = aligned_alloc(4096, 8 * 4096);
	char *base_path = make_image(size, &data);
	char cache[64], live[80], why[600];
	struct layer *base, *l;

	snprintf(cache, sizeof(cache), "%s.cache", base_path);
	snprintf(live, sizeof(live), "%s.live", cache);
	memset(pat_a, 0xa1, 4096);
	memset(pat_b, 0xb2, 4096);
	memset(pat_c, 0xc3, 4096);

	CHECK(die_after_writes(base_path, cache, crash_writes_1) == 0, "first server's writes");
	CHECK(access(live, F_OK) == 0, "live map left by the dead server");
	CHECK(layer_file_open(base_path, true, &base) == 0, "open base");
	CHECK(layer_cache_open(cache, base, 0, false, &l, why, sizeof(why)) == 0, "reopen: %s", why);
	CHECK(run(l, LAYER_READ, 0, 8 * 4096, buf) == 8 * 4096, "read after the crash");
	CHECK(!memcmp(buf + 4096, pat_c, 4096), "unflushed overwrite kept");
	CHECK(!memcmp(buf + 2 * 4096, pat_b, 4096), "unflushed new block kept");
	CHECK(all_zero(buf + 5 * 4096, 4096), "unflushed discard kept");
	CHECK(!memcmp(buf + 3 * 4096, data + 3 * 4096, 4096), "untouched block from the base");
	layer_close(l);
	CHECK(access(live, F_OK) != 0, "a clean close removes the live map");

	/* a host crash: the live map is from another boot */
	CHECK(die_after_writes(base_path, cache, crash_writes_2) == 0, "second server's writes");
	int fd = open(live, O_RDWR);
	CHECK(fd >= 0 && pwrite(fd, "x", 1, 32) == 1, "make the live map another boot's");
	close(fd);
	CHECK(layer_file_open(base_path, true, &base) == 0, "open base");
	CHECK(layer_cache_open(cache, base, 0, true, &l, why, sizeof(why)) == 0, "reopen: %s", why);
	CHECK(run(l, LAYER_READ, 0, 8 * 4096, buf) == 8 * 4096, "read after the host crash");
	CHECK(!memcmp(buf + 4 * 4096, data + 4 * 4096, 4096), "unflushed write over the base lost");
	CHECK(!memcmp(buf + 4096, pat_c, 4096) || !memcmp(buf + 4096, pat_a, 4096),
	      "unflushed overwrite of a dirty block: old or new, never the base");
	CHECK(!memcmp(buf + 2 * 4096, pat_b, 4096), "data flushed by the clean close kept");
	layer_close(l);

	unlink(live);
	unlink(cache);
	snprintf(live, sizeof(live), "%s.map", cache);
	unlink(live);
	unlink(base_path);
	free(data);
	free(buf);
}

/* A cache reopened on a full file system fails its open, saying so: its
 * new live map is written before it is mapped (a store to a mapped page
 * with no room behind it is a SIGBUS). A small tmpfs of its own, in a
 * private mount namespace. */
static void test_cache_full_fs(void)
{
	char dir[] = "/tmp/test-layers-full.XXXXXX", base_path[80], cache[80], filler[80];
	int status;

	if (!mkdtemp(dir))
		exit(2);
	snprintf(base_path, sizeof(base_path), "%s.base", dir);
	snprintf(cache, sizeof(cache), "%s/c", dir);
	snprintf(filler, sizeof(filler), "%s/filler", dir);
	int fd = open(base_path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	CHECK(fd >= 0 && !ftruncate(fd, 256 << 20), "sparse base");
	close(fd);
	pid_t child = fork();
	if (!child) {
		static const char page[4096];
		struct layer *base, *l;
		char why[600];
		if (unshare(CLONE_NEWNS) || mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) ||
		    mount("none", dir, "tmpfs", 0, "size=1m"))
			_exit(77);
		CHECK(layer_file_open(base_path, true, &base) == 0, "open base");
		CHECK(layer_cache_open(cache, base, 0, false, &l, why, sizeof(why)) == 0, "create: %s", why);
		layer_close(l);
		fd = open(filler, O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
		while (fd >= 0 && write(fd, page, sizeof(page)) == sizeof(page))
			;
		CHECK(errno == ENOSPC, "filling the file system: %s", strerror(errno));
		close(fd);
		CHECK(layer_file_open(base_path, true, &base) == 0, "open base");
		int ret = layer_cache_open(cache, base, 0, false, &l, why, sizeof(why));
		CHECK(ret == -ENOSPC, "reopened on a full file system: %d (%s)", ret, why);
		CHECK(strstr(why, "No space left on device") != NULL, "message: %s", why);
		unlink(filler);
		CHECK(layer_file_open(base_path, true, &base) == 0, "open base");
		CHECK(layer_cache_open(cache, base, 0, false, &l, why, sizeof(why)) == 0,
		      "reopened with room again: %s", why);
		layer_close(l);
		_exit(failures ? 1 : 0);
	}
	waitpid(child, &status, 0);
	if (WIFEXITED(status) && WEXITSTATUS(status) == 77)
		printf("no mount namespace (not root?): a cache on a full file system not tested\n");
	else
		CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0,
		      "a cache on a full file system: %s %d (see above)",
		      WIFSIGNALED(status) ? "killed by signal" : "exit",
		      WIFSIGNALED(status) ? WTERMSIG(status) : WEXITSTATUS(status));
	unlink(base_path);
	rmdir(dir);
}

static void test_fault_layer(void)
{
	const size_t size = 1 << 20;
	unsigned char *data, *buf = aligned_alloc(4096, 8192);
	char *path = make_image(size, &data), why[300];
	struct layer *base, *l;

	CHECK(layer_file_open(path, false, &base) == 0, "open");
	CHECK(layer_fault_open("bogus=1", base, &l, why, sizeof(why)) == -EINVAL &&
	      strstr(why, "unknown fault"), "bad spec refused: %s", why);
	CHECK(layer_fault_open("error-read=5@4K-8K,delay-read=50@8K-12K", base, &l, why, sizeof(why)) == 0,
	      "spec accepted: %s", why);
	CHECK(run(l, LAYER_READ, 0, 4096, buf) == 4096, "unmatched read passes");
	CHECK(run(l, LAYER_READ, 4096, 4096, buf) == -EIO, "injected EIO");
	struct timespec a, b;
	clock_gettime(CLOCK_MONOTONIC, &a);
	CHECK(run(l, LAYER_READ, 8192, 4096, buf) == 4096 && !memcmp(buf, data + 8192, 4096), "delayed read served");
	clock_gettime(CLOCK_MONOTONIC, &b);
	long ms = (b.tv_sec - a.tv_sec) * 1000 + (b.tv_nsec - a.tv_nsec) / 1000000;
	CHECK(ms >= 45, "delay applied (%ld ms)", ms);
	layer_close(l);
	unlink(path);
	free(data);
	free(buf);
}

/* A live export's freeze, asked of the stack through the operations: the
 * cache under a fault layer freezes, writes wait until the thaw, reads
 * go on; a stack without a cache says it cannot. */
static void test_freeze(void)
{
	const size_t size = 1 << 20;
	unsigned char *data, *buf = aligned_alloc(4096, 4096), *pattern = aligned_alloc(4096, 4096);
	char *base_path = make_image(size, &data);
	char cache[64], map[80], why[600], stats[256];
	struct layer *base, *cl, *top, *frozen = (struct layer *)1;

	snprintf(cache, sizeof(cache), "%s.cache", base_path);
	snprintf(map, sizeof(map), "%s.map", cache);
	memset(pattern, 0xa7, 4096);
	CHECK(layer_file_open(base_path, true, &base) == 0, "open base");
	CHECK(layer_stack_freeze(base, 1000, &frozen) == -EOPNOTSUPP && !frozen,
	      "a stack without a cache cannot freeze");
	CHECK(layer_stack_stats(base, stats, sizeof(stats)) == 0, "a file keeps no statistics");
	CHECK(layer_cache_open(cache, base, 0, false, &cl, why, sizeof(why)) == 0, "cache: %s", why);
	CHECK(layer_fault_open("delay-read=1@0-4096", cl, &top, why, sizeof(why)) == 0, "fault: %s", why);

	CHECK(layer_stack_freeze(top, 1000, &frozen) == 0 && frozen == cl, "the cache below froze");
	CHECK(run(top, LAYER_READ, 8192, 4096, buf) == 4096 && !memcmp(buf, data + 8192, 4096),
	      "reads go on while frozen");
	/* a parked write counts as in flight on its ring: no drain before the thaw */
	struct sync_io w = { .io = { .op = LAYER_WRITE, .off = 4096, .len = 4096, .buf = pattern,
				     .done = on_done, .aio = &aio, .priv = priv } };
	layer_submit(top, &w.io);
	CHECK(w.done == 0 && aio.inflight == 1, "a write waits while frozen");
	layer_thaw(frozen);
	CHECK(aio_drain(&aio) == 0 && w.done == 1 && w.res == 4096, "the write ends after the thaw (%d)",
	      w.res);
	CHECK(run(top, LAYER_READ, 4096, 4096, buf) == 4096 && !memcmp(buf, pattern, 4096),
	      "and reads back");
	layer_close(top);

	CHECK(layer_file_open(base_path, true, &base) == 0, "open base");
	CHECK(layer_cache_open(cache, base, 0, true, &cl, why, sizeof(why)) == 0, "read-only: %s", why);
	CHECK(layer_stack_freeze(cl, 1000, &frozen) == -EROFS && !frozen, "a read-only cache refuses");
	layer_close(cl);
	unlink(cache);
	unlink(map);
	unlink(base_path);
	free(data);
	free(buf);
	free(pattern);
}

/* Opens the cache at path over base, expecting err and a message with
 * want; a cache opened (err 0) is closed again. */
static void cache_open_expect(const char *path, const char *base_path, int err, const char *want)
{
	struct layer *base, *l;
	char why[600] = "";

	CHECK(layer_file_open(base_path, true, &base) == 0, "open base");
	int ret = layer_cache_open(path, base, 0, false, &l, why, sizeof(why));
	CHECK(ret == err && (!want || strstr(why, want)), "%s: %d (want %d, '%s'): %s", path, ret,
	      err, want ? want : "", why);
	if (ret)
		layer_close(base);
	else
		layer_close(l);
}

/* A cache's files are never another user's to choose: no link followed,
 * no file of another owner, none others may write, none of two names,
 * no folder others could swap them in (a sticky one like /tmp is fine). */
static void test_cache_private(void)
{
	unsigned char *data;
	char *base_path = make_image(1 << 20, &data);
	char dir[] = "/tmp/test-cache-private.XXXXXX", c[64], real[80], map[80], two[80];
	struct layer *base, *l;
	char why[600];

	CHECK(mkdtemp(dir) != NULL, "mkdtemp");
	snprintf(c, sizeof(c), "%s/c", dir);
	snprintf(real, sizeof(real), "%s/real", dir);
	snprintf(map, sizeof(map), "%s/c.map", dir);
	snprintf(two, sizeof(two), "%s/two", dir);
	CHECK(layer_file_open(base_path, true, &base) == 0, "open base");
	CHECK(layer_cache_open(c, base, 0, false, &l, why, sizeof(why)) == 0, "create: %s", why);
	layer_close(l);
	cache_open_expect(c, base_path, 0, NULL);

	CHECK(rename(c, real) == 0 && symlink("real", c) == 0, "data file made a link");
	cache_open_expect(c, base_path, -ELOOP, "a symbolic link: a cache's files are never followed");
	CHECK(unlink(c) == 0 && rename(real, c) == 0, "link undone");
	CHECK(link(c, two) == 0, "second name");
	cache_open_expect(c, base_path, -EPERM, "has 2 names (hard links)");
	CHECK(unlink(two) == 0, "second name gone");
	CHECK(chmod(map, 0620) == 0, "map group-writable");
	cache_open_expect(c, base_path, -EPERM, "writable by other users (mode 0620)");
	CHECK(chmod(map, 0600) == 0, "map private again");
	if (geteuid() == 0) {
		CHECK(chown(c, 65534, 65534) == 0, "data file given away");
		cache_open_expect(c, base_path, -EPERM, "owned by uid 65534");
		CHECK(chown(c, 0, 0) == 0, "data file back");
	}
	CHECK(chmod(dir, 0777) == 0, "folder writable by all");
	cache_open_expect(c, base_path, -EPERM, "is writable by other users (mode 0777)");
	CHECK(cache_remove(c, why, sizeof(why)) == -EPERM && access(c, F_OK) == 0 &&
	      access(map, F_OK) == 0 && strstr(why, "writable by other users"),
	      "nothing removed by name in such a folder: %s", why);
	CHECK(chmod(dir, 01777) == 0, "sticky, as /tmp");
	cache_open_expect(c, base_path, 0, NULL);
	/* the folder given through a link of ours (moved to a bigger disk) */
	char via[80], via_c[96];
	snprintf(via, sizeof(via), "%s.link", dir);
	snprintf(via_c, sizeof(via_c), "%s/c", via);
	CHECK(symlink(dir, via) == 0, "link to the folder");
	cache_open_expect(via_c, base_path, 0, NULL);
	unlink(via);
	CHECK(cache_remove(c, why, sizeof(why)) == 0 && access(c, F_OK) && access(map, F_OK), "removed");
	rmdir(dir);
	unlink(base_path);
	free(data);
}

/* The map's base version field (docs/cache-format.md): length at 88, CRC
 * at 92, text at 96. Reads it into text (NUL-terminated); its length. */
static uint32_t map_base_version(const char *map, char *text, size_t len)
{
	unsigned char h[4096];
	int fd = open(map, O_RDONLY);
	uint32_t n = 0;

	CHECK(fd >= 0 && pread(fd, h, sizeof(h), 0) == (ssize_t)sizeof(h), "read the map's header");
	close(fd);
	memcpy(&n, h + 88, 4);
	snprintf(text, len, "%.*s", n <= 1024 ? (int)n : 0, (const char *)h + 96);
	return n;
}

/* Rewrites the base version field: n as its length, text, and a CRC that
 * matches (good) or not. */
static void map_set_base_version(const char *map, uint32_t n, const char *text, bool good)
{
	unsigned char f[1032] = { 0 };
	int fd = open(map, O_RDWR);

	memcpy(f, &n, 4);
	memcpy(f + 8, text, strlen(text));
	uint32_t crc = crc32c(0, f, 4) ^ crc32c(0, f + 8, 1024);
	crc ^= good ? 0 : 1;
	memcpy(f + 4, &crc, 4);
	CHECK(fd >= 0 && pwrite(fd, f, sizeof(f), 88) == (ssize_t)sizeof(f), "write the base version");
	close(fd);
}

static void set_mtime(const char *path, const struct timespec *t)
{
	struct timespec ts[2] = { { 0, UTIME_OMIT }, *t };
	CHECK(utimensat(AT_FDCWD, path, ts, 0) == 0, "set the time of %s", path);
}

/* A cache records its base's version and refuses another one: a base
 * written in place (another time), replaced under its name, or a damaged
 * record; a copy with its time kept is the same base, and a cache of
 * before the record gets one. */
static void test_cache_base_version(void)
{
	unsigned char *data;
	char *base_path = make_image(1 << 20, &data);
	char cache[64], map[80], text[1100], want[1200], copy[80], why[600];
	struct layer *base, *l;
	struct stat st;

	snprintf(cache, sizeof(cache), "%s.cache", base_path);
	snprintf(map, sizeof(map), "%s.map", cache);
	snprintf(copy, sizeof(copy), "%s.copy", base_path);
	CHECK(stat(base_path, &st) == 0, "stat base");
	snprintf(want, sizeof(want), "file=1048576 %lld.%09ld\n", (long long)st.st_mtim.tv_sec,
		 st.st_mtim.tv_nsec);
	cache_open_expect(cache, base_path, 0, NULL);
	CHECK(map_base_version(map, text, sizeof(text)) == strlen(want) && !strcmp(text, want),
	      "the base's size and time recorded: '%s', want '%s'", text, want);

	struct timespec later = st.st_mtim;
	later.tv_sec += 1;
	set_mtime(base_path, &later);
	cache_open_expect(cache, base_path, -EINVAL, "cache was made over another version of its base");
	char both[1300];
	snprintf(both, sizeof(both), "(it recorded %.*s; the base is now file=1048576 %lld.%09ld: ",
		 (int)strlen(want) - 1, want, (long long)later.tv_sec, later.tv_nsec);
	cache_open_expect(cache, base_path, -EINVAL, both);
	CHECK(layer_file_open(base_path, true, &base) == 0, "open base");
	CHECK(layer_cache_open(cache, base, 0, true, &l, why, sizeof(why)) == -EINVAL &&
	      strstr(why, "another version of its base"), "a read-only open refuses too: %s", why);
	layer_close(base);
	set_mtime(base_path, &st.st_mtim);
	cache_open_expect(cache, base_path, 0, NULL);

	/* replaced under its name by a copy: refused; the copy with the
	 * original's time (cp -p) is the same base */
	int in = open(base_path, O_RDONLY), out = open(copy, O_WRONLY | O_CREAT | O_EXCL, 0600);
	ssize_t got = 0, n = 1;
	/* copy_file_range may copy less than asked: go on until it is all there */
	while (in >= 0 && out >= 0 && got < 1 << 20 && n > 0)
		if ((n = copy_file_range(in, NULL, out, NULL, (size_t)((1 << 20) - got), 0)) > 0)
			got += n;
	CHECK(got == 1 << 20, "copy the base");
	close(in);
	close(out);
	/* made later: another time (here set, as the clock may not have ticked) */
	struct timespec copied = st.st_mtim;
	copied.tv_sec += 2;
	set_mtime(copy, &copied);
	CHECK(rename(copy, base_path) == 0, "the copy replaces the base");
	cache_open_expect(cache, base_path, -EINVAL, "another version of its base");
	set_mtime(base_path, &st.st_mtim);
	cache_open_expect(cache, base_path, 0, NULL);

	/* a cache of before the record: opened as it is, and recorded */
	map_set_base_version(map, 0, "", false);
	CHECK(map_base_version(map, text, sizeof(text)) == 0, "record removed");
	cache_open_expect(cache, base_path, 0, NULL);
	CHECK(map_base_version(map, text, sizeof(text)) == strlen(want) && !strcmp(text, want),
	      "recorded at the writable open: '%s'", text);
	/* keys of a later version are not compared */
	char later_keys[1200];
	snprintf(later_keys, sizeof(later_keys), "zz.later=1\n%s", want);
	map_set_base_version(map, (uint32_t)strlen(later_keys), later_keys, true);
	cache_open_expect(cache, base_path, 0, NULL);

	/* damaged records refuse the map; the files stay as they are */
	map_set_base_version(map, (uint32_t)strlen(want), want, false);
	cache_open_expect(cache, base_path, -EINVAL, "base version checksum mismatch (damaged map)");
	map_set_base_version(map, 2000, want, true);
	cache_open_expect(cache, base_path, -EINVAL, "base version of 2000 bytes, at most 1024");
	snprintf(later_keys, sizeof(later_keys), "file=1048576\t1\n");
	map_set_base_version(map, (uint32_t)strlen(later_keys), later_keys, true);
	cache_open_expect(cache, base_path, -EINVAL, "base version holds a control character at byte 12");
	CHECK(map_base_version(map, text, sizeof(text)) == strlen(later_keys), "the map left as it was");

	CHECK(cache_remove(cache, why, sizeof(why)) == 0, "removed: %s", why);
	unlink(base_path);
	free(data);
}

int main(void)
{
	if (io_uring_queue_init(64, &ring, 0)) {
		fprintf(stderr, "io_uring_queue_init failed\n");
		return 2;
	}
	test_file_layer("/tmp");
	test_file_layer("/dev/shm");
	/* a cache on tmpfs reads its dirty runs inline, the split ones too */
	test_cache_model();
	image_dir = "/tmp";
	test_cache_layer();
	test_cache_model();
	test_extent_blocks();
	test_split_fallback();
	test_split_short_data();
	image_dir = "/dev/shm";   /* the data file's vectored read inline */
	test_split_short_data();
	image_dir = "/tmp";
	test_write_in_place();
	test_cache_crash();
	test_cache_full_fs();
	test_cache_private();
	test_cache_base_version();
	test_fault_layer();
	test_freeze();
	io_uring_queue_exit(&ring);
	return check_summary();
}
