/* Host unit tests of the layer stack: no ublk, a plain io_uring. */
#include "aio.h"
#include "layer.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static int failures, checks;

#define CHECK(cond, ...) do { \
	checks++; \
	if (!(cond)) { failures++; fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__); \
		fprintf(stderr, __VA_ARGS__); fputc('\n', stderr); } \
} while (0)

struct sync_io {
	struct layer_io io;
	int res;
	int done;
};

static void on_done(struct layer_io *io, int res)
{
	struct sync_io *s = (struct sync_io *)io;
	s->res = res;
	s->done++;
}

static struct io_uring ring;
static struct aio aio = { .ring = &ring };

/* Run one operation to completion; returns its result. */
static int run(struct layer *l, enum layer_op op, uint64_t off, uint32_t len, void *buf)
{
	struct sync_io s = { .io = { .op = op, .off = off, .len = len, .buf = buf,
				     .done = on_done, .aio = &aio } };
	layer_submit(l, &s.io);
	if (aio_drain(&aio))
		return -EIO;
	CHECK(s.done == 1, "op %d completed %d times", op, s.done);
	return s.res;
}

static char *make_image(size_t size, unsigned char **data)
{
	static char path[] = "/tmp/test-layers.XXXXXX";
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

static void test_file_layer(void)
{
	const size_t size = 1 << 20;
	unsigned char *data, *buf = aligned_alloc(4096, 256 * 1024);
	char *path = make_image(size, &data);
	struct layer *l;

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
	CHECK(aio.inflight == 16, "16 requests in flight");
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

int main(void)
{
	if (io_uring_queue_init(64, &ring, 0)) {
		fprintf(stderr, "io_uring_queue_init failed\n");
		return 2;
	}
	test_file_layer();
	io_uring_queue_exit(&ring);
	printf("%d passed, %d failed\n", checks - failures, failures);
	return failures ? 1 : 0;
}
