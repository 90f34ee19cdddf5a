/* Host unit tests of export and flatten: a cache changed through the
 * layer stack is exported as a diff (raw and zstd), the diff over the
 * base reads as the cache did, and stacks flatten into plain images. A
 * failed export leaves nothing behind. No ublk device is involved. */
#include "check.h"
#include "layer_run.h"
#include "devopts.h"
#include "export.h"
#include "util/exitcodes.h"
#include "image/cache.h"
#include "image/layer_cache.h"
#include "image/layer_diff.h"
#include "image/layer_file.h"

#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define SIZE (8u << 20)
#define BS 4096u

static char dir[] = "/tmp/test-export.XXXXXX";
static unsigned char *want;     /* what the device holds after the changes */

static const char *at(const char *name)
{
	static char paths[8][300];
	static unsigned next;
	char *p = paths[next++ % 8];
	snprintf(p, sizeof(paths[0]), "%s/%s", dir, name);
	return p;
}

static void fill_random(unsigned char *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		p[i] = (unsigned char)(rand() >> 7);
}

/* Through a cache over the base: data in a few places (one block, a 64 KiB
 * run, the last block), zeros written, a discard. want follows along. */
static void change_through_cache(const char *base, const char *cache)
{
	unsigned char *buf = aligned_alloc(BS, 16 * BS);
	struct layer *b, *l;
	char why[600];
	static const struct { enum layer_op op; uint64_t block; uint32_t count; } changes[] = {
		{ LAYER_WRITE, 3, 1 }, { LAYER_WRITE, 100, 16 }, { LAYER_WRITE, SIZE / BS - 1, 1 },
		{ LAYER_WRITE_ZEROES, 200, 4 }, { LAYER_DISCARD, 300, 11 },
	};

	CHECK(layer_file_open(base, true, &b) == 0, "open base");
	CHECK(layer_cache_open(cache, b, 0, false, &l, why, sizeof(why)) == 0, "cache: %s", why);
	for (size_t i = 0; i < sizeof(changes) / sizeof(changes[0]); i++) {
		uint64_t off = changes[i].block * BS;
		uint32_t len = changes[i].count * BS;
		if (changes[i].op == LAYER_WRITE) {
			fill_random(buf, len);
			memcpy(want + off, buf, len);
		} else {
			memset(want + off, 0, len);
		}
		CHECK(run(l, changes[i].op, off, len, buf) >= 0,
		      "change %zu", i);
	}
	CHECK(run(l, LAYER_FLUSH, 0, 0, NULL) == 0, "flush");
	layer_close(l);
	free(buf);
}

/* The base with diff over it reads exactly want. */
static void check_diff_reads(const char *base, const char *diff)
{
	unsigned char *buf = aligned_alloc(BS, 256 * BS);
	struct layer *b, *l;
	char why[600];

	CHECK(layer_file_open(base, true, &b) == 0, "open base");
	CHECK(layer_diff_open(diff, NULL, b, &l, why, sizeof(why)) == 0, "diff %s: %s", diff, why);
	for (uint64_t off = 0; off < SIZE; off += 256 * BS)
		CHECK(run(l, LAYER_READ, off, 256 * BS, buf) == 256 * BS && !memcmp(buf, want + off, 256 * BS),
		      "%s: bytes at %llu", diff, (unsigned long long)off);
	layer_close(l);
	free(buf);
}

static void check_file_is_want(const char *path)
{
	unsigned char *got = malloc(SIZE);
	int fd = open(path, O_RDONLY);
	CHECK(fd >= 0 && read(fd, got, SIZE) == SIZE && !memcmp(got, want, SIZE), "%s holds the device", path);
	if (fd >= 0)
		close(fd);
	free(got);
}

/* Nothing in dir but what the test made: no temporary file left. */
static void check_no_leftovers(const char *what)
{
	DIR *d = opendir(dir);
	struct dirent *e;

	while (d && (e = readdir(d)))
		CHECK(!strstr(e->d_name, ".tmp"), "%s left %s behind", what, e->d_name);
	if (d)
		closedir(d);
}

/* --inspect tells a damaged frame (exit 5) from one it could not read */
static void test_verify(const char *path)
{
	struct diff_file *d;
	uint64_t frame = 7;
	const char *damage = "x";
	char why[600];
	int ret, fd;

	CHECK(diff_open(path, NULL, &d, why, sizeof(why)) == 0 && d->n_frames > 1, "open: %s", why);
	uint64_t second = d->frames[1].offset;
	CHECK(diff_verify(d, &frame, &damage) == 0 && !damage, "a good diff verifies");
	diff_close(d);
	fd = open(path, O_RDWR);
	CHECK(pwrite(fd, "\x5a\xa5\x5a\xa5", 4, second + 20) == 4, "damage frame 1");
	CHECK(diff_open(path, NULL, &d, why, sizeof(why)) == 0, "damaged diff opens: %s", why);
	ret = diff_verify(d, &frame, &damage);
	CHECK(ret == -EIO && frame == 1 && damage, "damaged frame named: %d %llu %s", ret,
	      (unsigned long long)frame, damage ? damage : "-");
	CHECK(ftruncate(fd, second) == 0, "cut the diff under its reader");
	ret = diff_verify(d, &frame, &damage);
	CHECK(ret < 0 && frame == 1 && !damage, "a frame that cannot be read is no damage: %d %llu %s",
	      ret, (unsigned long long)frame, damage ? damage : "-");
	diff_close(d);
	close(fd);
}

/* A v3 header with no entry is, to E2B's readers, the whole device in
 * its data file: an unchanged cache is not exported as one. */
static void test_v3_unchanged(const char *base)
{
	struct export_result r;
	struct export_opts o = { .out = at("empty.v3"), .v3 = true, .keep = true, .timeout_ms = 10000 };
	struct layer *b, *l;
	char why[1024] = "";

	CHECK(layer_file_open(base, true, &b) == 0, "open base");
	CHECK(layer_cache_open(at("empty.cache"), b, 0, false, &l, why, sizeof(why)) == 0, "cache: %s", why);
	layer_close(l);
	CHECK(export_cache(at("empty.cache"), &o, &r, why, sizeof(why)) == EXIT_FAIL &&
	      strstr(why, "nothing changed, which a v3 header cannot say"), "empty v3 refused: %s", why);
	CHECK(access(at("empty.v3"), F_OK) && access(at("empty.v3.header"), F_OK), "nothing written");
	o.v3 = false;
	o.out = at("empty.diff");
	CHECK(export_cache(at("empty.cache"), &o, &r, why, sizeof(why)) == 0 && r.meta.n_extents == 0,
	      "as a diff: %s", why);
	check_no_leftovers("a refused v3 export");
}

static void test_export(const char *base)
{
	struct export_result r;
	struct export_opts o = { .out = at("raw.diff"), .keep = true, .timeout_ms = 10000 };
	char why[1024] = "";

	change_through_cache(base, at("c.cache"));
	CHECK(export_cache(at("c.cache"), &o, &r, why, sizeof(why)) == 0, "export: %s", why);
	/* 18 data blocks; the zeros and the discard are zero extents */
	CHECK(r.meta.data_blocks == 18 && r.meta.zero_blocks == 15, "counts: %llu data, %llu zero",
	      (unsigned long long)r.meta.data_blocks, (unsigned long long)r.meta.zero_blocks);
	check_diff_reads(base, at("raw.diff"));

	o.out = at("z.diff");
	o.zstd = true;
	CHECK(export_cache(at("c.cache"), &o, &r, why, sizeof(why)) == 0, "zstd export: %s", why);
	check_diff_reads(base, at("z.diff"));
	o.frame_size = 16 * BS;
	o.out = at("v.diff");
	CHECK(export_cache(at("c.cache"), &o, &r, why, sizeof(why)) == 0, "export in frames: %s", why);
	test_verify(at("v.diff"));
	o.frame_size = 0;

	/* an output that cannot be written: an error, nothing left */
	o.out = at("missing/x.diff");
	CHECK(export_cache(at("c.cache"), &o, &r, why, sizeof(why)) != 0 && why[0], "to a missing folder");
	o.out = dir;
	CHECK(export_cache(at("c.cache"), &o, &r, why, sizeof(why)) != 0, "onto a folder");
	check_no_leftovers("a failed export");

	/* a data file cut short of its last dirty block: refused at open, as
	 * the server refuses it, with both sizes */
	char cmd[600];
	snprintf(cmd, sizeof(cmd), "cp %s %s && cp %s.map %s.map", at("c.cache"), at("cut.cache"),
		 at("c.cache"), at("cut.cache"));
	CHECK(system(cmd) == 0 && truncate(at("cut.cache"), SIZE - BS) == 0, "cut a data file");
	o.out = at("cut.diff");
	CHECK(export_cache(at("cut.cache"), &o, &r, why, sizeof(why)) != 0 &&
	      strstr(why, "data file has 8384512 bytes, the map says 8388608"), "cut data file: %s", why);
	check_no_leftovers("an export of a cut data file");
}

static void test_flatten(const char *base)
{
	struct server_config cfg;
	uint64_t bytes = 0;
	char why[1024] = "";

	devopts_defaults(&cfg);
	cfg.stack.base = base;
	cfg.stack.layers[cfg.stack.n_layers++] = at("raw.diff");
	CHECK(export_flatten(&cfg, at("flat.img"), false, &bytes, why, sizeof(why)) == 0, "flatten: %s", why);
	CHECK(bytes == SIZE, "%llu bytes", (unsigned long long)bytes);
	check_file_is_want(at("flat.img"));

	/* the cache itself on top of the base flattens the same */
	devopts_defaults(&cfg);
	cfg.stack.base = base;
	cfg.stack.cache = at("c.cache");
	cfg.stack.read_only = true;
	CHECK(export_flatten(&cfg, at("flat2.img"), false, &bytes, why, sizeof(why)) == 0, "flatten cache: %s",
	      why);
	check_file_is_want(at("flat2.img"));

	CHECK(export_flatten(&cfg, at("missing/flat.img"), false, &bytes, why, sizeof(why)) != 0,
	      "flatten to a missing folder");
	check_no_leftovers("a failed flatten");
}

/* A 20 GiB base that is all holes but 1 MiB of data at 5 GiB, a cache
 * with 2560 scattered 4 KiB writes (10 MiB) and one discard over the base's
 * data: flattened directly and through the cache's exported diff, it must
 * read back right and allocate only what holds data (the holes of the
 * stack are skipped, not read). */
#define SPARSE_SIZE (20ull << 30)
#define SPARSE_DATA_AT (5ull << 30)
#define SPARSE_WRITES 2560

static uint64_t sparse_block(unsigned i)
{
	return (uint64_t)i * 2039 * 1013 % (SPARSE_SIZE / BS);   /* scattered, all distinct */
}

static bool sparse_written(uint64_t block)
{
	for (unsigned i = 0; i < SPARSE_WRITES; i++)
		if (sparse_block(i) == block)
			return true;
	return false;
}

static void check_sparse_flat(const char *path, const unsigned char *base_data)
{
	unsigned char *buf = aligned_alloc(BS, 256 * BS), *blk = malloc(BS);
	int fd = open(path, O_RDONLY);
	struct stat st;

	CHECK(fd >= 0 && fstat(fd, &st) == 0 && (uint64_t)st.st_size == SPARSE_SIZE, "%s: size", path);
	/* 10 MiB written, 1 MiB of base data less the 64 KiB discarded */
	CHECK((uint64_t)st.st_blocks * 512 <= (12ull << 20), "%s: %llu bytes allocated", path,
	      (unsigned long long)st.st_blocks * 512);
	for (unsigned i = 0; i < SPARSE_WRITES; i++) {
		memset(blk, (int)(i % 255 + 1), BS);
		CHECK(pread(fd, buf, BS, (off_t)(sparse_block(i) * BS)) == BS && !memcmp(buf, blk, BS),
		      "%s: written block %u", path, i);
	}
	CHECK(pread(fd, buf, 256 * BS, SPARSE_DATA_AT) == 256 * BS, "%s: base data", path);
	memset(blk, 0, BS);
	for (unsigned i = 0; i < 256; i++)
		if (!sparse_written(SPARSE_DATA_AT / BS + i))   /* the first 64 KiB discarded */
			CHECK(!memcmp(buf + i * BS, i < 16 ? blk : base_data + i * BS, BS),
			      "%s: base block %u", path, i);
	CHECK(pread(fd, buf, BS, (off_t)(SPARSE_SIZE - BS)) == BS, "%s: last block", path);
	close(fd);
	free(buf);
	free(blk);
}

static void test_flatten_sparse(void)
{
	unsigned char *data = malloc(256 * BS), *blk = aligned_alloc(BS, BS);
	struct export_opts o = { .keep = true, .timeout_ms = 10000 };
	struct export_result r;
	struct server_config cfg;
	struct layer *b, *l;
	uint64_t bytes;
	char why[1024] = "";
	int fd = open(at("sparse.img"), O_CREAT | O_WRONLY, 0600);

	fill_random(data, 256 * BS);
	CHECK(fd >= 0 && ftruncate(fd, (off_t)SPARSE_SIZE) == 0 &&
	      pwrite(fd, data, 256 * BS, SPARSE_DATA_AT) == 256 * BS, "sparse base");
	close(fd);
	CHECK(layer_file_open(at("sparse.img"), true, &b) == 0, "open sparse base");
	CHECK(layer_cache_open(at("s.cache"), b, 0, false, &l, why, sizeof(why)) == 0, "cache: %s", why);
	for (unsigned i = 0; i < SPARSE_WRITES; i++) {
		memset(blk, (int)(i % 255 + 1), BS);
		CHECK(run(l, LAYER_WRITE, sparse_block(i) * BS, BS, blk) == BS, "write %u", i);
	}
	CHECK(run(l, LAYER_DISCARD, SPARSE_DATA_AT, 16 * BS, NULL) == 0, "discard");
	for (unsigned i = 0; i < SPARSE_WRITES; i++)   /* the discard wins over a write before it */
		CHECK(sparse_block(i) - SPARSE_DATA_AT / BS >= 16, "write %u in the discarded run", i);
	CHECK(run(l, LAYER_FLUSH, 0, 0, NULL) == 0, "flush");
	layer_close(l);

	devopts_defaults(&cfg);
	cfg.stack.base = at("sparse.img");
	cfg.stack.cache = at("s.cache");
	cfg.stack.read_only = true;
	CHECK(export_flatten(&cfg, at("sflat.img"), false, &bytes, why, sizeof(why)) == 0, "flatten: %s", why);
	check_sparse_flat(at("sflat.img"), data);
	unlink(at("sflat.img"));

	o.out = at("sparse.diff");
	CHECK(export_cache(at("s.cache"), &o, &r, why, sizeof(why)) == 0, "export: %s", why);
	devopts_defaults(&cfg);
	cfg.stack.base = at("sparse.img");
	cfg.stack.layers[cfg.stack.n_layers++] = at("sparse.diff");
	CHECK(export_flatten(&cfg, at("sflat.img"), false, &bytes, why, sizeof(why)) == 0, "flatten diff: %s",
	      why);
	check_sparse_flat(at("sflat.img"), data);
	free(data);
	free(blk);
}

/* A cache whose every block differs from the next (dirty, zero, dirty...)
 * over 128 GiB: more extents than a diff holds, refused before the list
 * of them costs memory. */
static void test_too_fragmented(void)
{
	uint64_t size = 128ull << 30, map_bytes = size / BS / 4;
	struct export_opts o = { .out = at("frag.diff"), .keep = true, .timeout_ms = 10000 };
	struct export_result r;
	struct layer *b, *l;
	char why[600];
	int fd = open(at("huge.img"), O_CREAT | O_WRONLY, 0600);

	CHECK(fd >= 0 && ftruncate(fd, (off_t)size) == 0, "sparse base");
	close(fd);
	CHECK(layer_file_open(at("huge.img"), true, &b) == 0, "open base");
	CHECK(layer_cache_open(at("frag.cache"), b, 0, false, &l, why, sizeof(why)) == 0, "cache: %s", why);
	layer_close(l);
	unsigned char *states = malloc(map_bytes);
	memset(states, 0x99, map_bytes);        /* 01 10 01 10: dirty, zero, ... */
	fd = open(at("frag.cache.map"), O_WRONLY);
	CHECK(fd >= 0 && pwrite(fd, states, map_bytes, BS) == (ssize_t)map_bytes, "fragment the map");
	close(fd);
	free(states);
	CHECK(export_cache(at("frag.cache"), &o, &r, why, sizeof(why)) == EXIT_BAD_IMAGE &&
	      strstr(why, "33554432 extents are more than a diff may hold (16777216)"),
	      "a too fragmented cache: %s", why);
	check_no_leftovers("a refused export");
	/* a cache a server has open is not removed (reclaim --caches) */
	CHECK(layer_file_open(at("huge.img"), true, &b) == 0, "open base");
	CHECK(layer_cache_open(at("frag.cache"), b, 0, false, &l, why, sizeof(why)) == 0, "cache: %s", why);
	CHECK(cache_remove(at("frag.cache"), why, sizeof(why)) == -EBUSY && !access(at("frag.cache"), F_OK),
	      "a cache in use removed");
	layer_close(l);
	/* a data file that cannot go keeps its map: never half a cache */
	CHECK(rename(at("frag.cache"), at("frag.data")) == 0 && mkdir(at("frag.cache"), 0700) == 0 &&
	      mkdir(at("frag.cache/x"), 0700) == 0, "a data file that cannot be removed");
	CHECK(close(open(at("frag.cache.live"), O_WRONLY | O_CREAT | O_CLOEXEC, 0600)) == 0, "a live map");
	CHECK(cache_remove(at("frag.cache"), why, sizeof(why)) < 0 && !access(at("frag.cache.map"), F_OK) &&
	      !access(at("frag.cache.live"), F_OK), "a cache's map or live map removed without its data file");
	CHECK(unlink(at("frag.cache.live")) == 0, "the live map away");
	CHECK(rmdir(at("frag.cache/x")) == 0 && rmdir(at("frag.cache")) == 0 &&
	      rename(at("frag.data"), at("frag.cache")) == 0, "the data file back");
	CHECK(cache_remove(at("frag.cache"), why, sizeof(why)) == 0 && access(at("frag.cache.map"), F_OK),
	      "a cache no one uses kept");
	CHECK(unlink(at("huge.img")) == 0, "remove the 128 GiB base");
}

int main(void)
{
	char cmd[64];
	int fd;

	if (!mkdtemp(dir) || io_uring_queue_init(64, &ring, 0)) {
		fprintf(stderr, "setup failed\n");
		return 2;
	}
	want = malloc(SIZE);
	fill_random(want, SIZE);
	fd = open(at("base.img"), O_CREAT | O_WRONLY, 0600);
	if (fd < 0 || write(fd, want, SIZE) != SIZE)
		return 2;
	close(fd);
	test_export(at("base.img"));
	test_v3_unchanged(at("base.img"));
	test_flatten(at("base.img"));
	test_flatten_sparse();
	test_too_fragmented();
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	CHECK(system(cmd) == 0, "cleanup");
	free(want);
	return check_summary();
}
