/* Host unit tests of the diff format and the diff layer. */
#include "util/aio.h"
#include "check.h"
#include "image/blob.h"
#include "image/chunkcache.h"
#include "image/diff.h"
#include "image/layer.h"
#include "image/layer_file.h"
#include "image/layer_diff.h"
#include "image/layer_http.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define BS 4096
#define BLOCKS 1024     /* 4 MiB device */

static uint8_t *source;  /* what the "cache" holds, per block */
static int write_level;  /* of write_diff's zstd */

static int read_source(void *ctx, uint64_t block, uint32_t count, void *buf)
{
	(void)ctx;
	memcpy(buf, source + block * BS, (size_t)count * BS);
	return 0;
}

/* The source seen in place, except block 700, which has to be read. */
static int view_source(void *ctx, uint64_t block, uint32_t count, const void **data)
{
	(void)ctx;
	if (block <= 700 && block + count > 700)
		return -ENOTSUP;
	*data = source + block * BS;
	return 0;
}

/* A seal that refuses, as a live export's does when writes were not held
 * all along; it must see every frame written before it. */
static uint64_t progress_done, seals;
static void count_progress(void *ctx, uint64_t done, uint64_t total)
{
	(void)ctx;
	(void)total;
	progress_done = done;
}
static int refuse_seal(void *ctx)
{
	(void)ctx;
	seals++;
	return progress_done == 304 ? -ECANCELED : -EPROTO;
}

static const struct diff_source read_only = { .read = read_source };
static const struct diff_source refused = { .read = read_source, .progress = count_progress,
					    .seal = refuse_seal };
static const struct diff_source in_place = { .read = read_source, .view = view_source };

static const struct diff_extent extents[] = {
	{ 0, 3, DIFF_DATA }, { 10, 5, DIFF_ZERO }, { 20, 300, DIFF_DATA }, { 700, 1, DIFF_DATA },
};

static void write_diff(const char *path, uint32_t flags, uint32_t frame, const uint8_t parent[16],
		       uint8_t id_out[16], const struct diff_source *src, int append)
{
	struct diff_meta m = { .dev_size = BLOCKS * BS, .generation = 1, .flags = flags,
			       .frame_size = frame, .level = write_level };
	struct diff_write_result r;
	char why[300];
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | append, 0600);

	memset(m.id, 0x11 + (int)flags, 16);
	memcpy(m.parent, parent, 16);
	memcpy(id_out, m.id, 16);
	CHECK(diff_write(fd, &m, extents, 4, src, &r, why, sizeof(why)) == 0,
	      "write: %s", why);
	CHECK(m.data_blocks == 304 && m.zero_blocks == 5, "counts %llu %llu",
	      (unsigned long long)m.data_blocks, (unsigned long long)m.zero_blocks);
	close(fd);
}

static struct io_uring ring;
static struct aio aio = { .ring = &ring };
static char priv[4096];
static int result;
static void done(struct layer_io *io, int res) { (void)io; result = res; }

static int layer_read(struct layer *l, uint64_t off, uint32_t len, void *buf)
{
	struct layer_io io = { .op = LAYER_READ, .off = off, .len = len, .buf = buf, .done = done,
			       .aio = &aio, .priv = priv };
	result = 1;
	layer_submit(l, &io);
	aio_drain(&aio);
	return result;
}

/* Invert one byte: a fixed value could equal the byte it replaces. */
static int flip_byte(const char *path, off_t off)
{
	int fd = open(path, O_RDWR);
	uint8_t c;
	int ret = -1;

	if (fd >= 0 && pread(fd, &c, 1, off) == 1) {
		c ^= 0xff;
		ret = pwrite(fd, &c, 1, off) == 1 ? 0 : -1;
	}
	if (fd >= 0)
		close(fd);
	return ret;
}

static void check_stack(const char *base_path, const char *diff_path, const uint8_t *base)
{
	struct layer *b, *l;
	char why[300];
	uint8_t *buf = aligned_alloc(4096, BLOCKS * BS), *want = malloc(BLOCKS * BS);

	memcpy(want, base, BLOCKS * BS);
	for (size_t i = 0; i < 4; i++)
		for (uint32_t k = 0; k < extents[i].count; k++) {
			uint64_t blk = extents[i].start + k;
			if (extents[i].kind == DIFF_DATA)
				memcpy(want + blk * BS, source + blk * BS, BS);
			else
				memset(want + blk * BS, 0, BS);
		}
	CHECK(layer_file_open(base_path, true, &b) == 0, "open base");
	CHECK(layer_diff_open(diff_path, NULL, b, &l, why, sizeof(why)) == 0, "diff layer: %s", why);
	/* in pieces that cross extent and frame edges */
	for (uint64_t off = 0; off < BLOCKS * BS; off += 12 * BS)
		CHECK(layer_read(l, off, 12 * BS > BLOCKS * BS - off ? (uint32_t)(BLOCKS * BS - off) : 12 * BS,
				 buf + off) >= 0, "read at %llu", (unsigned long long)off);
	CHECK(!memcmp(buf, want, BLOCKS * BS), "base + diff reads as expected");
	layer_close(l);
	free(buf);
	free(want);
}

static int one_mark_per_block(void *ctx, uint64_t block, uint32_t n, void *buf)
{
	(void)ctx;
	(void)block;
	memset(buf, 0, (size_t)n * BS);
	((uint8_t *)buf)[0] = 1;
	return 0;
}

static long rss_mib(void)
{
	FILE *f = fopen("/proc/self/status", "re");
	char line[256];
	long kib = 0;

	while (f && fgets(line, sizeof(line), f))
		if (!strncmp(line, "VmRSS:", 6))
			kib = atol(line + 6);
	if (f)
		fclose(f);
	return kib >> 10;
}

/* Bytes this process has read with read and pread (/proc/self/io). */
static long long rchar(void)
{
	FILE *f = fopen("/proc/self/io", "re");
	char line[128];
	long long n = -1;

	while (f && fgets(line, sizeof(line), f))
		if (!strncmp(line, "rchar:", 6))
			n = atoll(line + 6);
	if (f)
		fclose(f);
	return n;
}

/* Bytes layer_map places for [off, off + len): 0 and their copy in out,
 * -1 when the layer cannot place them all. */
static int map_read(struct layer *l, uint64_t off, uint32_t len, uint8_t *out)
{
	struct layer_map m = { .n = 0 };
	int n = layer_map(l, off, len, &m);
	size_t at = 0;

	for (int i = 0; i < n && at + m.iov[i].iov_len <= len; i++) {
		memcpy(out + at, m.iov[i].iov_base, m.iov[i].iov_len);
		at += m.iov[i].iov_len;
	}
	layer_unmap(&m);
	return n > 0 && at == len ? 0 : -1;
}

/* A raw frame (raw: 64 KiB frames, extents above) is read whole once, for
 * its CRC; after that a read takes only the blocks it asks for, on the
 * ring from the diff's file, or mapped from it; a frame whose CRC does
 * not match is read whole, and fails, every time. */
static void test_raw_checked_once(const char *base_path, const char *raw, const uint8_t *base)
{
	uint8_t *buf = aligned_alloc(4096, 2 * BS), across_check[8 * BS];
	char bad[80], cmd[200], why[300];
	struct layer *b, *l;

	CHECK(layer_file_open(base_path, true, &b) == 0, "open base");
	CHECK(layer_diff_open(raw, NULL, b, &l, why, sizeof(why)) == 0, "diff layer: %s", why);
	/* its file reads block, whatever the file system (io_uring reads of
	 * one O_NONBLOCK are -EAGAIN on 9p, FUSE, NFS) */
	struct diff_file *d;
	CHECK(diff_open(raw, NULL, &d, why, sizeof(why)) == 0, "open: %s", why);
	CHECK(!(fcntl(blob_fd(d->blob), F_GETFL) & O_NONBLOCK), "the diff's file reads block");
	diff_close(d);
	/* block 40 is data block 23: frame 1; not checked, not mapped */
	CHECK(l->maps && map_read(l, 40 * BS, BS, buf) == -1, "an unchecked frame is not mapped");
	/* frame 0 checked, frame 1 not: a range into frame 1 is not mapped */
	CHECK(layer_read(l, 20 * BS, BS, buf) == BS, "frame 0 read");
	CHECK(map_read(l, 20 * BS, BS, buf) == 0, "frame 0 mapped");
	CHECK(map_read(l, 30 * BS, 8 * BS, across_check) == -1, "a range into frame 1 is not");
	long long r0 = rchar();
	CHECK(layer_read(l, 40 * BS, BS, buf) == BS && !memcmp(buf, source + 40 * BS, BS), "first read");
	long long r1 = rchar();
	CHECK(r1 - r0 >= 65536, "the frame read whole: %lld bytes", r1 - r0);
	/* every frame once: more than the 8 kept, frame 1 is no longer */
	uint8_t *all = aligned_alloc(4096, 300 * BS);
	CHECK(layer_read(l, 20 * BS, 300 * BS, all) == 300 * BS, "all frames read");
	free(all);
	r1 = rchar();
	CHECK(layer_read(l, 41 * BS, 2 * BS, buf) == 2 * BS && !memcmp(buf, source + 41 * BS, 2 * BS),
	      "second read");
	long long r2 = rchar();
	/* no frame read again: the blocks come on the ring (which rchar does
	 * not count) or, on tmpfs, with pread (8 KiB), and /proc/self/io's */
	CHECK(r2 - r1 < 65536, "then no frame read whole: %lld bytes", r2 - r1);
	memset(buf, 0, 2 * BS);
	CHECK(map_read(l, 41 * BS, 2 * BS, buf) == 0 && !memcmp(buf, source + 41 * BS, 2 * BS),
	      "and the checked frame mapped");
	uint8_t *across = aligned_alloc(4096, 40 * BS), *want = malloc(40 * BS);
	/* blocks 0-2 data, 3-9 the base's, 10-14 zeros, 15-19 the base's, 20- data */
	memcpy(want, base, 40 * BS);
	memcpy(want, source, 3 * BS);
	memset(want + 10 * BS, 0, 5 * BS);
	memcpy(want + 20 * BS, source + 20 * BS, 20 * BS);
	CHECK(map_read(l, 0, 40 * BS, across) == 0 && !memcmp(across, want, 40 * BS),
	      "a range across the base, zeros and the diff mapped");
	free(across);
	free(want);
	layer_close(l);

	snprintf(bad, sizeof(bad), "%s.bad1", raw);
	snprintf(cmd, sizeof(cmd), "cp %s %s", raw, bad);
	CHECK(system(cmd) == 0 && flip_byte(bad, 8192 + 65536 + 5) == 0, "frame 1 damaged");
	CHECK(layer_file_open(base_path, true, &b) == 0, "open base");
	CHECK(layer_diff_open(bad, NULL, b, &l, why, sizeof(why)) == 0, "diff layer: %s", why);
	for (int i = 0; i < 2; i++) {
		r0 = rchar();
		CHECK(layer_read(l, 40 * BS, BS, buf) == -EIO, "damaged frame, read %d: EIO", i);
		CHECK(rchar() - r0 >= 65536, "read %d of the damaged frame reads it whole", i);
	}
	layer_close(l);
	unlink(bad);
	free(buf);
}

/* A zstd diff's frames, once decompressed, are kept in the chunk cache:
 * later reads of a frame, by this device or another over the same diff
 * file, take its blocks from there; a diff file written since (another
 * change time) is another folder, decompressed again. */
static void test_zstd_frames_kept(const char *base_path, const char *zst)
{
	char dir[] = "/tmp/test-diff-frames.XXXXXX", why[300], cmd[300];
	uint8_t *buf = aligned_alloc(4096, 300 * BS);
	struct layer_http_opts o = { .keep_frames = true };
	struct diff_file *d;
	struct layer *b, *l;
	int folders;

	CHECK(mkdtemp(dir) != NULL, "mkdtemp");
	o.cache_dir = dir;
	uint64_t run, idx;
	CHECK(diff_open(zst, NULL, &d, why, sizeof(why)) == 0, "open: %s", why);
	CHECK(diff_lookup(d, 40, &run, &idx) == DIFF_DATA, "block 40 is data");
	/* the frame of block 40 */
	uint64_t per = d->meta.frame_size / BS, n_frames = d->n_frames, frame1 = d->frames[idx / per].offset;
	diff_close(d);
	CHECK(layer_file_open(base_path, true, &b) == 0, "open base");
	CHECK(layer_diff_open(zst, &o, b, &l, why, sizeof(why)) == 0, "diff layer: %s", why);
	CHECK(layer_read(l, 20 * BS, 300 * BS, buf) == 300 * BS && !memcmp(buf, source + 20 * BS, 300 * BS),
	      "every frame read");
	CHECK(check_chunk_files(dir, &folders) == (int)n_frames && folders == 1, "%d frames kept in %d "
	      "folders, of %llu", check_chunk_files(dir, &folders), folders, (unsigned long long)n_frames);
	/* kept frames in place, as few as the server holds open */
	CHECK(n_frames <= CHUNK_OPEN_FILES && l->maps, "%llu frames: mapped", (unsigned long long)n_frames);
	memset(buf, 0, 32 * BS);
	CHECK(map_read(l, 20 * BS, 32 * BS, buf) == 0 && !memcmp(buf, source + 20 * BS, 32 * BS),
	      "128 KiB of kept frames mapped");
	memset(buf, 0, BS);
	CHECK(map_read(l, 40 * BS, BS, buf) == 0 && !memcmp(buf, source + 40 * BS, BS),
	      "and 4 KiB");
	layer_close(l);
	/* a kept frame damaged in the cache: a new layer checks it, reads the
	 * diff instead and stores the frame again */
	char chunk[400];
	DIR *r = opendir(dir);
	struct dirent *e = NULL;
	while (r && (e = readdir(r)) && e->d_name[0] == '.')
		;
	snprintf(chunk, sizeof(chunk), "%s/%s/%llu", dir, e ? e->d_name : "-",
		 (unsigned long long)(idx / per));
	if (r)
		closedir(r);
	int fd = open(chunk, O_WRONLY);
	CHECK(fd >= 0 && pwrite(fd, "damaged", 7, (off_t)((idx % per) * BS)) == 7, "damage %s", chunk);
	close(fd);
	CHECK(layer_file_open(base_path, true, &b) == 0, "open base");
	CHECK(layer_diff_open(zst, &o, b, &l, why, sizeof(why)) == 0, "diff layer: %s", why);
	CHECK(map_read(l, 40 * BS, BS, buf) == -1, "a kept frame not checked yet is not mapped");
	CHECK(layer_read(l, 40 * BS, BS, buf) == BS && !memcmp(buf, source + 40 * BS, BS),
	      "a damaged kept frame is not served");
	memset(buf, 0, BS);
	CHECK(map_read(l, 40 * BS, BS, buf) == 0 && !memcmp(buf, source + 40 * BS, BS),
	      "checked and stored again, it is mapped");
	fd = open(chunk, O_RDONLY);
	CHECK(fd >= 0 && pread(fd, buf, BS, (off_t)((idx % per) * BS)) == BS &&
	      !memcmp(buf, source + 40 * BS, BS), "and is stored again");
	close(fd);
	/* block 40's frame damaged in the file: this layer reads it from the cache */
	struct stat was, now;
	CHECK(stat(zst, &was) == 0 && flip_byte(zst, (off_t)frame1 + 5) == 0, "its frame damaged");
	/* file times move with the kernel's coarse clock: until a tick has
	 * passed, a change leaves the change time as it was */
	for (int i = 0; i < 2000 && !stat(zst, &now) && now.st_ctim.tv_sec == was.st_ctim.tv_sec &&
			now.st_ctim.tv_nsec == was.st_ctim.tv_nsec; i++) {
		usleep(1000);
		CHECK(chmod(zst, 0600) == 0, "chmod");
	}
	CHECK(layer_read(l, 40 * BS, BS, buf) == BS && !memcmp(buf, source + 40 * BS, BS),
	      "its frame from the chunk cache");
	layer_close(l);
	/* a new layer over the file written since: its own folder, the damage seen */
	CHECK(layer_file_open(base_path, true, &b) == 0, "open base");
	CHECK(layer_diff_open(zst, &o, b, &l, why, sizeof(why)) == 0, "diff layer: %s", why);
	CHECK(layer_read(l, 40 * BS, BS, buf) == -EIO, "the written file decompressed again: EIO");
	CHECK(check_chunk_files(dir, &folders) >= 0 && folders == 2, "%d folders", folders);
	layer_close(l);
	CHECK(flip_byte(zst, (off_t)frame1 + 5) == 0, "its frame mended");
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	CHECK(system(cmd) == 0, "%s", cmd);
	free(buf);
}

/* A diff of a few KiB that names eight 64 MiB zstd frames: a read of each
 * keeps at most two frames, and each of the two fetch threads that
 * decompress them one (256 MiB), not all eight (512 MiB). */
static void test_frame_memory(void)
{
	const uint32_t frame = 64u << 20, blocks = 8 * (frame / BS);
	char base_path[] = "/tmp/test-diff-big.XXXXXX", path[64], why[300];
	const struct diff_extent all = { 0, blocks, DIFF_DATA };
	struct diff_meta m = { .dev_size = (uint64_t)blocks * BS, .flags = DIFF_FLAG_ZSTD,
			       .frame_size = frame, .level = 1 };
	const struct diff_source src = { .read = one_mark_per_block };
	uint8_t *buf = aligned_alloc(4096, BS);
	struct layer *b, *l;
	struct stat st;
	int fd = mkstemp(base_path);

	CHECK(fd >= 0 && !ftruncate(fd, (off_t)m.dev_size), "sparse base");
	close(fd);
	snprintf(path, sizeof(path), "%s.diff", base_path);
	memset(m.id, 7, sizeof(m.id));
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	CHECK(diff_write(fd, &m, &all, 1, &src, NULL, why, sizeof(why)) == 0, "write: %s", why);
	close(fd);
	CHECK(!stat(path, &st) && st.st_size < (1 << 20), "%lld bytes", (long long)st.st_size);
	CHECK(layer_file_open(base_path, true, &b) == 0, "open base");
	CHECK(layer_diff_open(path, NULL, b, &l, why, sizeof(why)) == 0, "diff layer: %s", why);
	long before = rss_mib();
	for (uint64_t f = 0; f < 8; f++)
		CHECK(layer_read(l, f * frame, BS, buf) == BS && buf[0] == 1, "frame %llu",
		      (unsigned long long)f);
	long grown = rss_mib() - before;
	CHECK(grown < 320, "8 reads of 4 KiB, one per frame, kept %ld MiB", grown);
	layer_close(l);
	unlink(path);
	unlink(base_path);
	free(buf);
}

/* A zstd diff's kept frames are mapped only where the server can hold
 * them all open: CHUNK_OPEN_FILES frames, not one more. */
static void test_frames_mapped_if_held(void)
{
	const uint32_t frame = 64u << 10;
	char dir[] = "/tmp/test-diff-held.XXXXXX", base_path[64], path[64], why[300], cmd[100];
	struct layer_http_opts o = { .keep_frames = true, .cache_dir = dir };
	const struct diff_source src = { .read = one_mark_per_block };
	struct layer *b, *l;

	CHECK(mkdtemp(dir) != NULL, "mkdtemp");
	for (uint32_t frames = CHUNK_OPEN_FILES; frames <= CHUNK_OPEN_FILES + 1; frames++) {
		uint32_t blocks = frames * (frame / BS);
		const struct diff_extent all = { 0, blocks, DIFF_DATA };
		struct diff_meta m = { .dev_size = (uint64_t)blocks * BS, .flags = DIFF_FLAG_ZSTD,
				       .frame_size = frame, .level = 1 };
		snprintf(base_path, sizeof(base_path), "%s/base%u", dir, frames);
		snprintf(path, sizeof(path), "%s/diff%u", dir, frames);
		memset(m.id, (int)frames, sizeof(m.id));
		int fd = open(base_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
		CHECK(fd >= 0 && !ftruncate(fd, (off_t)m.dev_size), "sparse base");
		close(fd);
		fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
		CHECK(diff_write(fd, &m, &all, 1, &src, NULL, why, sizeof(why)) == 0, "write: %s", why);
		close(fd);
		CHECK(layer_file_open(base_path, true, &b) == 0, "open base");
		CHECK(layer_diff_open(path, &o, b, &l, why, sizeof(why)) == 0, "diff layer: %s", why);
		CHECK(l->maps == (frames <= CHUNK_OPEN_FILES), "%u frames: maps %d", frames, l->maps);
		layer_close(l);
	}
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	CHECK(system(cmd) == 0, "%s", cmd);
}

int main(void)
{
	char base_path[] = "/tmp/test-diff-base.XXXXXX", raw[64], zst[64], bad[64], why[300];
	uint8_t zero_id[16] = { 0 }, raw_id[16], zst_id[16];
	uint8_t *base = malloc(BLOCKS * BS);
	struct diff_file *d;
	struct layer *b, *l;
	uint64_t run, idx;

	io_uring_queue_init(16, &ring, 0);
	source = malloc(BLOCKS * BS);
	for (size_t i = 0; i < BLOCKS * BS; i++) {
		source[i] = (uint8_t)(rand() >> 3);
		base[i] = (uint8_t)(rand() >> 5);
	}
	/* most of the 300-block extent compresses, the rest of the data not:
	 * zstd frames of both kinds, compressed and stored as raw blocks */
	static const char *const words[] = { "sandbox ", "root ", "filesystem ", "block ", "layer ",
					     "cache ", "diff ", "frame ", "export ", "device " };
	for (size_t i = 100 * BS; i < 320 * BS;)
		for (const char *w = words[rand() % 10]; *w && i < 320 * BS; w++)
			source[i++] = (uint8_t)*w;
	int fd = mkstemp(base_path);
	CHECK(write(fd, base, BLOCKS * BS) == BLOCKS * BS, "base written");
	close(fd);
	snprintf(raw, sizeof(raw), "%s.raw", base_path);
	snprintf(zst, sizeof(zst), "%s.zst", base_path);
	snprintf(bad, sizeof(bad), "%s.bad", base_path);

	write_diff(raw, 0, 64 * 1024, zero_id, raw_id, &read_only, 0);
	write_diff(zst, DIFF_FLAG_ZSTD, 128 * 1024, zero_id, zst_id, &read_only, 0);

	/* Frames seen in place (several runs each, one refused) make the same
	 * bytes as frames read: raw, and zstd with frames of one run and not;
	 * into a file opened for appending too (the output's offset is not
	 * assumed). */
	for (int z = 0; z < 2; z++) {
		for (uint32_t frame = 4 * BS; frame <= 256 * BS; frame *= 8) {
			char pa[80], pb[80], cmp[200];
			uint8_t id[16];
			snprintf(pa, sizeof(pa), "%s.read", base_path);
			snprintf(pb, sizeof(pb), "%s.view", base_path);
			write_diff(pa, z ? DIFF_FLAG_ZSTD : 0, frame, zero_id, id, &read_only, O_APPEND);
			write_diff(pb, z ? DIFF_FLAG_ZSTD : 0, frame, zero_id, id, &in_place, 0);
			snprintf(cmp, sizeof(cmp), "cmp -s %s %s", pa, pb);
			CHECK(system(cmp) == 0, "in place = read, zstd %d, frame %u", z, frame);
			write_diff(pb, z ? DIFF_FLAG_ZSTD : 0, frame, zero_id, id, &in_place, O_APPEND);
			CHECK(system(cmp) == 0, "in place, appended = read, zstd %d, frame %u", z, frame);
			unlink(pa);
			unlink(pb);
		}
	}

	CHECK(diff_open(raw, NULL, &d, why, sizeof(why)) == 0, "open raw: %s", why);
	CHECK(diff_lookup(d, 1, &run, &idx) == DIFF_DATA && run == 2 && idx == 1, "lookup data");
	CHECK(diff_lookup(d, 5, &run, &idx) == DIFF_ABSENT && run == 5, "lookup gap");
	CHECK(diff_lookup(d, 12, &run, &idx) == DIFF_ZERO && run == 3, "lookup zero");
	CHECK(diff_lookup(d, 700, &run, &idx) == DIFF_DATA && idx == 303, "lookup last");
	CHECK(diff_lookup(d, 900, &run, &idx) == DIFF_ABSENT && run == UINT64_MAX, "lookup past all");
	CHECK(d->n_frames == (304 * BS + 65535) / 65536, "frame count");
	diff_close(d);
	struct stat st_raw, st_zst;
	CHECK(stat(raw, &st_raw) == 0 && stat(zst, &st_zst) == 0 &&
	      st_zst.st_size < st_raw.st_size * 2 / 5, "zstd %lld bytes, raw %lld",
	      (long long)st_zst.st_size, (long long)st_raw.st_size);
	/* the level reaches zstd: 19 packs smaller than 1, both read back */
	char l1[80], l19[80];
	struct stat st1, st19;
	uint8_t lid[16];
	snprintf(l1, sizeof(l1), "%s.l1", base_path);
	snprintf(l19, sizeof(l19), "%s.l19", base_path);
	write_level = 1;
	write_diff(l1, DIFF_FLAG_ZSTD, 128 * 1024, zero_id, lid, &in_place, 0);
	write_level = 19;
	write_diff(l19, DIFF_FLAG_ZSTD, 128 * 1024, zero_id, lid, &in_place, 0);
	write_level = 0;
	CHECK(stat(l1, &st1) == 0 && stat(l19, &st19) == 0 && st19.st_size < st1.st_size,
	      "level 19: %lld bytes, level 1: %lld", (long long)st19.st_size, (long long)st1.st_size);
	check_stack(base_path, l1, base);
	check_stack(base_path, l19, base);
	unlink(l1);
	unlink(l19);
	struct diff_meta too_high = { .dev_size = BLOCKS * BS, .flags = DIFF_FLAG_ZSTD,
				      .frame_size = 128 * 1024, .level = 20 };
	int bfd = open(l1, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	CHECK(diff_write(bfd, &too_high, extents, 4, &in_place, NULL, why, sizeof(why)) == -EINVAL &&
	      strstr(why, "zstd level 20"), "level 20 refused: %s", why);
	close(bfd);
	unlink(l1);
	write_level = 0;

	/* the random frames as raw blocks: a 9-byte header, one 3-byte block header */
	CHECK(diff_open(zst, NULL, &d, why, sizeof(why)) == 0, "open zstd: %s", why);
	unsigned stored_raw = 0, packed = 0;
	for (uint64_t f = 0; f < d->n_frames; f++) {
		stored_raw += d->frames[f].size == 9 + 3 + 128 * 1024;
		packed += d->frames[f].size < 16 * 1024;
	}
	CHECK(stored_raw >= 1 && packed >= 1, "frames: %u raw, %u packed of %llu", stored_raw, packed,
	      (unsigned long long)d->n_frames);
	diff_close(d);

	check_stack(base_path, raw, base);
	check_stack(base_path, zst, base);

	/* a damaged frame fails only reads that touch it */
	char cmd[256];
	snprintf(cmd, sizeof(cmd), "cp %s %s", raw, bad);
	CHECK(system(cmd) == 0 && flip_byte(bad, 8192 + 5) == 0, "corrupt copy");
	CHECK(layer_file_open(base_path, true, &b) == 0, "open base");
	CHECK(layer_diff_open(bad, NULL, b, &l, why, sizeof(why)) == 0, "metadata still valid");
	uint8_t *buf = aligned_alloc(4096, 4 * BS);
	CHECK(layer_read(l, 0, BS, buf) == -EIO, "damaged frame reads EIO");
	CHECK(layer_read(l, 900 * BS, BS, buf) == BS, "blocks elsewhere still read");
	layer_close(l);

	test_raw_checked_once(base_path, raw, base);
	test_zstd_frames_kept(base_path, zst);

	/* truncated */
	snprintf(cmd, sizeof(cmd), "head -c -1 %s > %s", raw, bad);
	CHECK(system(cmd) == 0, "truncate");
	CHECK(diff_open(bad, NULL, &d, why, sizeof(why)) == -EINVAL && strstr(why, "footer"), "truncated: %s", why);
	/* a refused seal leaves no footer: not even a pipe's reader takes it */
	struct diff_meta sealed = { .dev_size = BLOCKS * BS, .frame_size = 64 * 1024 };
	fd = open(bad, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	CHECK(fd >= 0, "open %s", bad);
	CHECK(diff_write(fd, &sealed, extents, 4, &refused, NULL, why, sizeof(why)) == -ECANCELED &&
	      seals == 1 && strstr(why, "before the frame table"), "seal refused: %s", why);
	close(fd);
	CHECK(diff_open(bad, NULL, &d, why, sizeof(why)) == -EINVAL && strstr(why, "footer"),
	      "unsealed: %s", why);
	/* a diff whose parent is not the layer below */
	CHECK(layer_file_open(base_path, true, &b) == 0, "open base");
	CHECK(layer_diff_open(raw, NULL, b, &l, why, sizeof(why)) == 0, "raw over base");
	CHECK(layer_diff_open(zst, NULL, l, &l, why, sizeof(why)) == -EINVAL && strstr(why, "its parent is"),
	      "parent mismatch: %s", why);
	layer_close(l);
	(void)raw_id;
	(void)zst_id;

	/* A 1 MiB frame of one random block over and over compresses, though
	 * each 4 KiB alone would not: the sample must see the repeats. */
	for (size_t blk = 1; blk < 256; blk++)
		memcpy(source + blk * BS, source, BS);
	const struct diff_extent one[] = { { 0, 256, DIFF_DATA } };
	struct diff_meta rep = { .dev_size = BLOCKS * BS, .flags = DIFF_FLAG_ZSTD,
				 .frame_size = 1 << 20 };
	fd = open(bad, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	CHECK(diff_write(fd, &rep, one, 1, &in_place, NULL, why, sizeof(why)) == 0, "repeats: %s", why);
	close(fd);
	CHECK(diff_open(bad, NULL, &d, why, sizeof(why)) == 0, "repeats open: %s", why);
	CHECK(d->n_frames == 1 && d->frames[0].size < 64 * 1024,
	      "a repeated random block compresses: %u bytes", d->frames[0].size);
	diff_close(d);

	unlink(raw);
	unlink(zst);
	unlink(bad);
	unlink(base_path);
	free(buf);
	free(base);
	free(source);
	test_frame_memory();
	test_frames_mapped_if_held();
	io_uring_queue_exit(&ring);
	return check_summary();
}
