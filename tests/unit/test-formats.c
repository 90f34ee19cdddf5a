/* Host unit tests of the readers of sandbox-written files (issue 11):
 * hostile diffs, v3 pairs and cache maps are refused with -EINVAL and a
 * message naming what is wrong, never read out of bounds, and never cost
 * memory the file does not really hold.
 *
 *   test-formats                 run the tests
 *   test-formats --write KIND F  write one hostile file for tests/host/formats.bats
 *
 * Built with -DOLD_API it uses only functions commit 5d434ff has, to show
 * the tests fail there. */
#include "image/cache.h"
#include "check.h"
#include "util/crc32c.h"
#include "image/diff.h"
#include "image/layer.h"
#ifndef OLD_API
#include "image/cache_map.h"
#include "image/layer_file.h"
#include "image/layer_cache.h"
#endif

#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define BS 4096ull
#define HDR 4096ull
#define TIB (1ull << 40)

static char dir[] = "/tmp/test-formats.XXXXXX";

static void put32(uint8_t *p, uint32_t v) { v = htole32(v); memcpy(p, &v, 4); }
static void put64(uint8_t *p, uint64_t v) { v = htole64(v); memcpy(p, &v, 8); }

static char *tmp(const char *name)
{
	static char paths[8][300];
	static int next;
	char *p = paths[next++ % 8];
	snprintf(p, sizeof(paths[0]), "%s/%s", dir, name);
	return p;
}

static void write_file(const char *path, const void *buf, size_t len, uint64_t size)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	if (fd < 0 || write(fd, buf, len) != (ssize_t)len || ftruncate(fd, (off_t)size)) {
		perror(path);
		exit(2);
	}
	close(fd);
}

/* ---- memory: a refusal must not first allocate what the file claims ---- */

#ifdef __SANITIZE_ADDRESS__
/* ASan reserves terabytes of address space, so RLIMIT_AS cannot work;
 * its allocator tells us the peak instead. */
extern int __sanitizer_install_malloc_and_free_hooks(void (*m)(const volatile void *, size_t),
						      void (*f)(const volatile void *));
extern size_t __sanitizer_get_current_allocated_bytes(void);
static size_t peak;
static void on_malloc(const volatile void *p, size_t n)
{
	(void)p;
	(void)n;
	size_t now = __sanitizer_get_current_allocated_bytes();
	if (now > peak)
		peak = now;
}
static void on_free(const volatile void *p) { (void)p; }
#endif

#define MEM_LIMIT (256ull << 20)
#define PEAK_LIMIT (64ull << 20)

/* Run fn in a child limited to 256 MiB of address space (or, under ASan,
 * checked for a heap peak under 64 MiB): it must return -EINVAL with a
 * message containing want. Exits of the child, a crash or ENOMEM, fail. */
static void limited(const char *what, int (*fn)(char *why, size_t len), const char *want)
{
	pid_t pid = fork();
	int st;

	if (pid == 0) {
		char why[700] = "";
#ifdef __SANITIZE_ADDRESS__
		size_t base = __sanitizer_get_current_allocated_bytes();
		peak = base;
		__sanitizer_install_malloc_and_free_hooks(on_malloc, on_free);
#else
		struct rlimit rl = { MEM_LIMIT, MEM_LIMIT };
		setrlimit(RLIMIT_AS, &rl);
#endif
		int ret = fn(why, sizeof(why));
		bool ok = ret == -EINVAL && strstr(why, want);
#ifdef __SANITIZE_ADDRESS__
		if (peak - base > PEAK_LIMIT) {
			fprintf(stderr, "%s: heap peak %zu MiB\n", what, (peak - base) >> 20);
			ok = false;
		}
#endif
		if (!ok)
			fprintf(stderr, "%s: returned %d (%s), want -EINVAL with '%s'\n", what, ret, why, want);
		_exit(ok ? 0 : 1);
	}
	CHECK(pid > 0 && waitpid(pid, &st, 0) == pid && WIFEXITED(st) && WEXITSTATUS(st) == 0,
	      "%s: refused cleanly in bounded memory (child status 0x%x)", what, st);
}

/* ---- v1 diffs built field by field ---- */

struct v1 {
	uint64_t dev_size, n_ext, data_blocks, zero_blocks;
	uint32_t flags, frame_size;
};

/* Header, extent table with its CRC, an empty frame table and a footer
 * claiming n_frames at the end: the shape the frame-count checks see. */
static uint8_t *v1_build(const struct v1 *v, const struct diff_extent *ext, uint64_t n_frames,
			 size_t *len)
{
	size_t tlen = (v->n_ext * 16 + 4 + BS - 1) / BS * BS;
	size_t total = HDR + tlen + 64;
	uint8_t *b = calloc(1, total);

	memcpy(b, "UBLKDIFF", 8);
	put32(b + 8, 1);
	put32(b + 12, BS);
	put64(b + 16, v->dev_size);
	put64(b + 24, 1);
	memset(b + 32, 0x42, 16);
	put32(b + 64, v->flags);
	put32(b + 68, v->frame_size);
	put64(b + 72, v->n_ext);
	put64(b + 80, v->data_blocks);
	put64(b + 88, v->zero_blocks);
	put32(b + 124, crc32c(0, b, 124));
	for (uint64_t i = 0; i < v->n_ext; i++) {
		put64(b + HDR + i * 16, ext[i].start);
		put32(b + HDR + i * 16 + 8, ext[i].count);
		put32(b + HDR + i * 16 + 12, ext[i].kind);
	}
	put32(b + HDR + v->n_ext * 16, crc32c(0, b + HDR, v->n_ext * 16));
	uint8_t *foot = b + total - 64;
	memcpy(foot, "UBLKDEND", 8);
	put64(foot + 8, total - 64);
	put64(foot + 16, n_frames);
	put32(foot + 24, crc32c(0, NULL, 0));
	put32(foot + 60, crc32c(0, foot, 60));
	*len = total;
	return b;
}

/* Finding 2: 2^52 - 1 data blocks of a device near 2^64 bytes make the old
 * frame count wrap to 0: accepted, "checksums ok", frames[] read out of
 * bounds. */
static void write_huge_dev(const char *path)
{
	uint64_t n = 1ull << 21;
	struct diff_extent *ext = calloc(n, sizeof(*ext));
	struct v1 v = { .dev_size = UINT64_MAX - 4095, .n_ext = n, .data_blocks = (1ull << 52) - 1,
			.frame_size = 8192 };
	size_t len;

	for (uint64_t i = 0; i < n; i++)
		ext[i] = (struct diff_extent){ i << 31, i == n - 1 ? (1u << 31) - 1 : 1u << 31, DIFF_DATA };
	uint8_t *b = v1_build(&v, ext, 0, &len);
	write_file(path, b, len, len);
	free(b);
	free(ext);
}

/* The header claims 256 extents; the file has room for one table page. */
static void write_count_past_file(const char *path)
{
	struct v1 v = { .dev_size = 1 << 20, .n_ext = 0, .zero_blocks = 256, .frame_size = 1 << 20 };
	size_t len;
	uint8_t *b = v1_build(&v, NULL, 0, &len);

	put64(b + 72, 256);
	put32(b + 124, crc32c(0, b, 124));
	write_file(path, b, len, len);
	free(b);
}

/* Finding 3: a 16 Mi-extent table that is a hole: 4 KiB on disk. */
static void write_sparse_table(const char *path)
{
	struct v1 v = { .dev_size = 16 * TIB, .n_ext = 0, .zero_blocks = 1 << 24, .frame_size = 1 << 20 };
	size_t len;
	uint8_t *b = v1_build(&v, NULL, 0, &len);
	uint64_t n = (1 << 24) - 1;

	put64(b + 72, n);
	put32(b + 124, crc32c(0, b, 124));
	write_file(path, b, HDR, HDR + (n * 16 + 4 + BS - 1) / BS * BS + 64);
	free(b);
}

/* The same for the frame table: 2^23 zstd frames of a 2^31-block extent,
 * the table a 128 MiB hole. */
static void write_sparse_frames(const char *path)
{
	struct diff_extent e = { 0, 1u << 31, DIFF_DATA };
	struct v1 v = { .dev_size = 16 * TIB, .n_ext = 1, .data_blocks = 1u << 31, .flags = 1,
			.frame_size = 1 << 20 };
	uint64_t n = (1ull << 31) * BS / (1 << 20), tab = 2 * HDR + (1 << 20), size = tab + n * 16 + 64;
	size_t len;
	uint8_t *b = v1_build(&v, &e, n, &len), foot[64];

	memcpy(foot, b + len - 64, 64);
	put64(foot + 8, tab);
	put32(foot + 60, crc32c(0, foot, 60));
	write_file(path, b, 2 * HDR, size);
	int fd = open(path, O_WRONLY);
	CHECK(pwrite(fd, foot, 64, (off_t)(size - 64)) == 64, "footer written");
	close(fd);
	free(b);
}

static const char *limited_path;
static int open_limited(char *why, size_t len)
{
	struct diff_file *d;
	int ret = diff_open(limited_path, NULL, &d, why, len);
	if (!ret)
		diff_close(d);
	return ret;
}

static int read_source(void *ctx, uint64_t block, uint32_t count, void *buf)
{
	(void)ctx;
	memset(buf, (int)(block & 0xff), (size_t)count * BS);
	return 0;
}

static const struct diff_source source = { .read = read_source };

static void test_v1(void)
{
	char why[700];
	struct diff_file *d;
	int ret;

	write_huge_dev(tmp("huge.diff"));
	ret = diff_open(tmp("huge.diff"), NULL, &d, why, sizeof(why));
	CHECK(ret == -EINVAL && strstr(why, "larger than the supported maximum"),
	      "device size near 2^64 refused: %d %s", ret, why);
	if (!ret)
		diff_close(d);

	write_count_past_file(tmp("count.diff"));
	ret = diff_open(tmp("count.diff"), NULL, &d, why, sizeof(why));
	CHECK(ret == -EINVAL && strstr(why, "extent count 256 does not fit the file"),
	      "extent count past the file: %d %s", ret, why);
	if (!ret)
		diff_close(d);

	write_sparse_table(tmp("sparse.diff"));
	limited_path = tmp("sparse.diff");
	limited("sparse extent table", open_limited, "extent 0 ");

	write_sparse_frames(tmp("frames.diff"));
	limited_path = tmp("frames.diff");
	limited("sparse frame table", open_limited, "frame 0 ");

	/* data blocks a raw diff cannot hold */
	struct diff_extent e = { 0, 100, DIFF_DATA };
	struct v1 v = { .dev_size = 1 << 20, .n_ext = 1, .data_blocks = 100, .frame_size = 1 << 20 };
	size_t len;
	uint8_t *b = v1_build(&v, &e, 1, &len);
	write_file(tmp("raw.diff"), b, len, len);
	free(b);
	ret = diff_open(tmp("raw.diff"), NULL, &d, why, sizeof(why));
	CHECK(ret == -EINVAL && strstr(why, "100 data blocks do not fit the file"), "raw data past the file: %s", why);

	/* a good diff: frames past the last are refused, not read */
	struct diff_meta m = { .dev_size = 1 << 20, .frame_size = 8192 };
	const struct diff_extent good[] = { { 3, 5, DIFF_DATA }, { 20, 2, DIFF_ZERO } };
	int fd = open(tmp("good.diff"), O_WRONLY | O_CREAT | O_TRUNC, 0600);
	CHECK(diff_write(fd, &m, good, 2, &source, NULL, why, sizeof(why)) == 0, "write: %s", why);
	close(fd);
	CHECK(diff_open(tmp("good.diff"), NULL, &d, why, sizeof(why)) == 0, "good diff opens: %s", why);
	uint8_t *buf = malloc(8192), *scratch = malloc(1 << 16);
	CHECK(d->n_frames == 3 && diff_read_frame(d, 2, buf, scratch) == 0, "last frame reads");
	CHECK(diff_read_frame(d, 3, buf, scratch) == -EIO, "frame index past the table refused");
	CHECK(diff_frame_len(d, 3) == 0 && diff_frame_len(d, UINT64_MAX) == 0, "no length past the table");
	diff_close(d);

	/* the writer never writes what a reader refuses */
	m.dev_size = 32 * TIB;
	fd = open(tmp("big.diff"), O_WRONLY | O_CREAT | O_TRUNC, 0600);
	ret = diff_write(fd, &m, good, 2, &source, NULL, why, sizeof(why));
	CHECK(ret == -EINVAL && strstr(why, "device size"), "writer refuses 32 TiB: %d %s", ret, why);
	close(fd);
#ifndef OLD_API
	int mfd = open(tmp("good.diff"), O_RDONLY);
	CHECK(diff_open_fd(mfd, -1, &d, why, sizeof(why)) == 0 && d->n_frames == 3, "diff_open_fd: %s", why);
	diff_close(d);
	close(mfd);
	free(buf);
	free(scratch);
#else
	free(buf);
	free(scratch);
#endif
}

/* ---- v3 pairs ---- */

struct v3e {
	uint64_t off, len;
	int who;        /* 0 nil, 1 this build, 2 another build */
	uint64_t store;
};

static const uint8_t build_id[16] = { 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16 };

static void write_v3(const char *data, const struct v3e *e, size_t n)
{
	char hpath[320];
	size_t len = 64 + n * 40;
	uint8_t *h = calloc(1, len), *blocks = calloc(16, BS);

	put64(h, 3);
	put64(h + 8, BS);
	put64(h + 16, 1 << 20);    /* 256 blocks */
	put64(h + 24, 2);
	memcpy(h + 32, build_id, 16);
	for (size_t i = 0; i < n; i++) {
		uint8_t *p = h + 64 + i * 40;
		put64(p, e[i].off);
		put64(p + 8, e[i].len);
		if (e[i].who)
			memcpy(p + 16, build_id, 16);
		if (e[i].who == 2)
			p[16] ^= 0xff;
		put64(p + 32, e[i].store);
	}
	snprintf(hpath, sizeof(hpath), "%s.header", data);
	write_file(hpath, h, len, len);
	write_file(data, blocks, 16 * BS, 16 * BS);   /* 16 blocks of data */
	free(h);
	free(blocks);
}

static int open_v3(const char *data, char *why, size_t len)
{
	char hpath[320];
	struct diff_file *d;
	snprintf(hpath, sizeof(hpath), "%s.header", data);
	int ret = diff_open(hpath, NULL, &d, why, len);
	if (!ret)
		diff_close(d);
	return ret;
}

static void test_v3(void)
{
	const uint64_t K = BS;
	const struct {
		const char *what, *want;
		struct v3e e[2];
		size_t n;
	} bad[] = {
		{ "zero length", "entry 0 (offset 0, length 0", { { 0, 0, 1, 0 } }, 1 },
		{ "unaligned offset", "entry 1 (offset 100,", { { 0, K, 1, 0 }, { 100, K, 0, 0 } }, 2 },
		{ "unaligned length", "not a multiple of 4096", { { 0, 5000, 1, 0 } }, 1 },
		{ "past the end", "past the end of the device", { { 252 * K, 8 * K, 0, 0 } }, 1 },
		{ "wrapping", "past the end of the device", { { UINT64_MAX - K + 1, 2 * K, 1, 0 } }, 1 },
		{ "outside the data", "past the end of the data file", { { 0, 8 * K, 1, 12 * K } }, 1 },
		{ "unaligned data offset", "data offset not a multiple", { { 0, K, 1, 100 } }, 1 },
		{ "overlap", "entries 0 and 1 overlap at block 4", { { 0, 8 * K, 1, 0 }, { 4 * K, 4 * K, 0, 0 } }, 2 },
		{ "overlap, unsorted", "entries 1 and 0 overlap at block 7",
		  { { 7 * K, K, 2, 0 }, { 0, 8 * K, 1, 0 } }, 2 },
	};
	char why[700];
	int ret;

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		write_v3(tmp("v3.data"), bad[i].e, bad[i].n);
		why[0] = 0;
		ret = open_v3(tmp("v3.data"), why, sizeof(why));
		CHECK(ret == -EINVAL && strstr(why, bad[i].want), "v3 %s refused: %d '%s'", bad[i].what,
		      ret, why);
	}

	/* a good one: data, zeros, another build's range left below */
	const struct v3e good[] = { { 64 * K, 4 * K, 0, 0 }, { 8 * K, 8 * K, 1, 8 * K }, { 0, 8 * K, 2, 0 } };
	struct diff_file *d = NULL;
	write_v3(tmp("v3.data"), good, 3);
	CHECK(diff_open(tmp("v3.data.header"), NULL, &d, why, sizeof(why)) == 0, "good v3 opens: %s", why);
	if (d) {
		uint64_t run, idx = 0;
		CHECK(d->meta.n_extents == 2 && d->meta.data_blocks == 8 && d->meta.zero_blocks == 4,
		      "v3 counts %llu %llu %llu", (unsigned long long)d->meta.n_extents,
		      (unsigned long long)d->meta.data_blocks, (unsigned long long)d->meta.zero_blocks);
		CHECK(diff_lookup(d, 9, &run, &idx) == DIFF_DATA && idx == 9 && run == 7, "v3 lookup");
		CHECK(diff_lookup(d, 3, &run, &idx) == DIFF_ABSENT, "another build's range is below");
		diff_close(d);
	}
#ifndef OLD_API
	int hfd = open(tmp("v3.data.header"), O_RDONLY), dfd = open(tmp("v3.data"), O_RDONLY);
	CHECK(diff_open_fd(hfd, dfd, &d, why, sizeof(why)) == 0 && d->v3 && d->meta.n_extents == 2,
	      "diff_open_fd of a v3 pair: %s", why);
	diff_close(d);
	CHECK(diff_open_fd(hfd, -1, &d, why, sizeof(why)) == -EINVAL && strstr(why, "data file"),
	      "v3 header without data: %s", why);
	close(hfd);
	close(dfd);
#endif
}

/* ---- cache maps ---- */

static char *base_path, *cache_path;

static void make_cache(void)
{
	struct layer *base, *l;
	char why[600];
	uint8_t *zeros = calloc(1, 1 << 20);

	unlink(cache_path);
	char map[320];
	snprintf(map, sizeof(map), "%s.map", cache_path);
	unlink(map);
	write_file(base_path, zeros, 1 << 20, 1 << 20);
	free(zeros);
	CHECK(layer_file_open(base_path, true, &base) == 0, "open base");
	CHECK(layer_cache_open(cache_path, base, 2 << 20, false, &l, why, sizeof(why)) == 0,
	      "create cache: %s", why);
	layer_close(l);
}

/* Patch the map's header at off, fix its CRC, and give the file a size. */
static void patch_map(uint64_t off, uint64_t val, int64_t size)
{
	char map[320];
	uint8_t h[4096];
	snprintf(map, sizeof(map), "%s.map", cache_path);
	int fd = open(map, O_RDWR);
	CHECK(pread(fd, h, sizeof(h), 0) == sizeof(h), "read map header");
	if (off)
		put64(h + off, val);
	put32(h + 60, crc32c(0, h, 60) ^ crc32c(0, h + 64, 24));
	CHECK(pwrite(fd, h, sizeof(h), 0) == sizeof(h), "write map header");
	if (size >= 0)
		CHECK(ftruncate(fd, size) == 0, "size map");
	close(fd);
}

static int open_cache(char *why, size_t len)
{
	struct layer *base, *l;
	int ret = layer_file_open(base_path, true, &base);
	if (ret)
		return ret;
	ret = layer_cache_open(cache_path, base, 0, true, &l, why, len);
	if (ret) {
		layer_close(base);
		return ret;
	}
	layer_close(l);
	return 0;
}

static int export_cache(char *why, size_t len)
{
	struct cache_export x;
	int ret = cache_export_open(cache_path, false, &x, why, len);
	if (!ret)
		cache_export_close(&x);
	return ret;
}

#ifndef OLD_API
static int check_map(char *why, size_t len)
{
	char map[320];
	uint64_t size = 0;
	snprintf(map, sizeof(map), "%s.map", cache_path);
	int fd = open(map, O_RDONLY);
	int ret = cache_map_check_fd(fd, &size, why, len);
	close(fd);
	return ret;
}
#endif

static void map_case(const char *what, uint64_t off, uint64_t val, int64_t size, const char *want)
{
	char label[200];
	make_cache();
	patch_map(off, val, size);
	snprintf(label, sizeof(label), "%s (layer_cache_open)", what);
	limited(label, open_cache, want);
	snprintf(label, sizeof(label), "%s (cache_export_open)", what);
	limited(label, export_cache, want);
#ifndef OLD_API
	snprintf(label, sizeof(label), "%s (cache_map_check_fd)", what);
	limited(label, check_map, want);
#endif
}

static void test_map(void)
{
	char why[600];
	const int64_t good = 4096 + 128;     /* 512 blocks, 2 bits each */

	base_path = strdup(tmp("base"));
	cache_path = strdup(tmp("cache"));
	make_cache();
	CHECK(open_cache(why, sizeof(why)) == 0, "a good map opens: %s", why);
	CHECK(export_cache(why, sizeof(why)) == 0, "a good map exports: %s", why);

	map_case("device size near 2^64", 16, UINT64_MAX - 4095, -1, "device size");
	map_case("16 TiB device in a 4 KiB map", 16, 16 * TIB, -1, "bytes, but its header");
	map_case("device size not a multiple of 4096", 16, (2 << 20) + 1, -1, "device size");
	map_case("map with bytes after the states", 0, 0, good + 8192, "bytes, but its header");
	map_case("truncated states", 0, 0, good - 1, "truncated");
	map_case("shorter than a header", 0, 0, 100, "too short");
	map_case("base larger than the device", 24, 4 << 20, -1, "base size");

	make_cache();
	char map[320];
	snprintf(map, sizeof(map), "%s.map", cache_path);
	int fd = open(map, O_RDWR);
	CHECK(pwrite(fd, "\xff", 1, 4096 + 5) == 1, "reserved state written");
	close(fd);
	CHECK(open_cache(why, sizeof(why)) == -EINVAL && strstr(why, "block 20 has an invalid state"),
	      "reserved state refused: %s", why);
	free(base_path);
	free(cache_path);
}

int main(int argc, char **argv)
{
	if (argc == 4 && !strcmp(argv[1], "--write")) {
		const char *kind = argv[2], *path = argv[3];
		if (!strcmp(kind, "huge-dev"))
			write_huge_dev(path);
		else if (!strcmp(kind, "count-past-file"))
			write_count_past_file(path);
		else if (!strcmp(kind, "sparse-table"))
			write_sparse_table(path);
		else if (!strcmp(kind, "sparse-frames"))
			write_sparse_frames(path);
		else if (!strcmp(kind, "v3-overlap")) {
			const struct v3e e[] = { { 0, 8 * BS, 1, 0 }, { 4 * BS, 4 * BS, 0, 0 } };
			write_v3(path, e, 2);
		} else if (!strcmp(kind, "map-huge-dev")) {
			char base[300];
			snprintf(base, sizeof(base), "%s.base", path);
			base_path = base;
			cache_path = (char *)path;
			make_cache();
			patch_map(16, UINT64_MAX - 4095, -1);
			return check_summary() ? 1 : 0;
		} else {
			fprintf(stderr, "unknown kind %s\n", kind);
			return 2;
		}
		return 0;
	}
	if (!mkdtemp(dir))
		return perror("mkdtemp"), 2;
	test_v1();
	test_v3();
	test_map();
	char cmd[400];
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	CHECK(system(cmd) == 0, "cleanup");
	return check_summary();
}
