/*
 * A copy-on-write cache as a reader finds it (docs/cache-format.md): the
 * map file FILE.map (header CRC recomputed, checksums.c), and optionally a
 * live map FILE.live. Input: map bytes [FZ_SEP live bytes]. In a live
 * part whose boot id field starts with "BOOT", the harness writes this
 * boot's id there, so the fuzzer can reach past the boot check.
 *
 * The map alone goes through cache_map_check_fd; then both readers run:
 * cache_export_open (ublk-export-diff --cache), whose
 * extents must cover only the device, and layer_cache_open read-only over
 * a stand-in base of the size, id and version the header names (the cross-checks
 * against a real base are plain comparisons; what is fuzzed is the file).
 * The data file is sized as the map says, sparse. An opened cache is
 * read at a few places (an io_uring for the data file, the stand-in base
 * answers at once): every read completes once, with its length, and the
 * base is never asked for bytes past its end. Where the export opened the
 * same files too, the bytes read must be what its extents say: the data
 * file's (DATA_BYTE of the block, written there first) for a data
 * extent, zeros for a zero extent, and for a block in none the base's
 * (BASE_BYTE of the block), or zeros past the base's end.
 */
#include "util/aio.h"
#include "image/cache.h"
#include "image/cache_map.h"
#include "checksums.h"
#include "image/layer.h"
#include "util/ublk_limits.h"
#include "fuzz.h"
#include "image/layer_cache.h"

#include <liburing.h>

#define BS 4096u
/* a byte per block, told apart from zeros and from each other: a read
 * of the wrong block, or of the other file, shows */
#define BASE_BYTE(b) ((uint8_t)(0x01 | ((b) & 0x3f) << 1))
#define DATA_BYTE(b) ((uint8_t)(0x80 | ((b) & 0x7f)))
#define MAX_PART (1u << 20)

static int map_fd = -1, live_fd = -1, data_fd = -1;
static char path[300], map_path[300], live_path[300];
static uint8_t copy[MAX_PART];

static struct io_uring ring;
static struct aio aio = { .ring = &ring };
static uint8_t rbuf[64 << 10] __attribute__((aligned(4096)));
static char priv[4096];

static void base_read(struct layer *l, struct layer_io *io)
{
	FZ_ASSERT(io->op == LAYER_READ && io->off + io->len <= l->size,
		  "op %d of %u at %llu on a %llu-byte read-only base", io->op, io->len,
		  (unsigned long long)io->off, (unsigned long long)l->size);
	for (uint32_t i = 0; i < io->len; i += BS)
		memset((uint8_t *)io->buf + i, BASE_BYTE((io->off + i) / BS),
		       io->len - i < BS ? io->len - i : BS);
	io->done(io, (int)io->len);
}
static void nop_close(struct layer *l) { (void)l; }
static const struct layer_ops base_ops = {
	.name = "fuzz-base", .read = base_read, .write = base_read, .flush = base_read,
	.discard = base_read, .close = nop_close,
};

struct sync_io {
	struct layer_io io;
	int res, calls;
};

static void on_done(struct layer_io *io, int res)
{
	struct sync_io *s = (struct sync_io *)io;
	s->res = res;
	s->calls++;
}

/* The kind of the extent of x that holds block b, 0 for none. */
static uint32_t kind_of(const struct cache_export *x, uint64_t b)
{
	size_t lo = 0, hi = x->n_ext;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		const struct diff_extent *e = &x->ext[mid];
		if (b < e->start)
			hi = mid;
		else if (b - e->start >= e->count)
			lo = mid + 1;
		else
			return e->kind;
	}
	return 0;
}

static void cache_read(struct layer *l, uint64_t off, uint64_t base_size,
		       const struct cache_export *x)
{
	struct sync_io s = { .io = { .op = LAYER_READ, .off = off / 4096 * 4096, .len = sizeof(rbuf),
				     .buf = rbuf, .done = on_done, .aio = &aio, .priv = priv } };
	if (s.io.off >= l->size)
		return;
	if (s.io.len > l->size - s.io.off)
		s.io.len = (uint32_t)(l->size - s.io.off);
	for (uint32_t i = 0; i < s.io.len; i += BS)
		memset(rbuf + i, DATA_BYTE((s.io.off + i) / BS), BS);
	if (pwrite(data_fd, rbuf, s.io.len, (off_t)s.io.off) != (ssize_t)s.io.len)
		FZ_DIE("pwrite: %s", strerror(errno));
	memset(rbuf, 0xee, s.io.len);
	layer_submit(l, &s.io);
	FZ_ASSERT(!aio_drain(&aio), "io_uring failed");
	FZ_ASSERT(s.calls == 1 && s.res == (int)s.io.len, "read of %u at %llu: %d calls, result %d",
		  s.io.len, (unsigned long long)s.io.off, s.calls, s.res);
	for (uint32_t i = 0; x && i < s.io.len; i += BS) {
		uint64_t b = (s.io.off + i) / BS;
		uint32_t kind = kind_of(x, b);
		uint8_t want = kind == DIFF_DATA ? DATA_BYTE(b) : kind == DIFF_ZERO ? 0 :
			       b * BS < base_size ? BASE_BYTE(b) : 0;
		for (uint32_t k = 0; k < BS; k++)
			FZ_ASSERT(rbuf[i + k] == want, "block %llu (extent kind %u): byte %u is %#x, "
				  "not %#x", (unsigned long long)b, kind, k, rbuf[i + k], want);
	}
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	data_fd = fz_file("c", path, sizeof(path));
	map_fd = fz_file("c.map", map_path, sizeof(map_path));
	snprintf(live_path, sizeof(live_path), "%s.live", path);
	if (io_uring_queue_init(16, &ring, 0))
		FZ_DIE("io_uring_queue_init failed");
	return 0;
}

/* The stand-in base is of the version the header records when that is
 * one line of a key a base has: the comparison is plain, the record is
 * what is fuzzed. */
static void stand_in_version(struct layer *base, const uint8_t *text, uint32_t n)
{
	const uint8_t *nl = n <= 1024 ? memchr(text, '\n', n) : NULL;
	const uint8_t *eq = nl ? memchr(text, '=', (size_t)(nl - text)) : NULL;
	size_t vlen = eq ? (size_t)(nl - eq - 1) : 0;

	if (!eq || vlen >= sizeof(base->version))
		return;
	if (eq - text == 6 && !memcmp(text, "remote", 6))
		base->version_key = "remote";
	else if (eq - text == 4 && !memcmp(text, "file", 4))
		base->version_key = "file";
	else
		return;
	memcpy(base->version, eq + 1, vlen);
	base->version[vlen] = 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fz_part part[2];
	struct cache_export x;
	char why[1024];
	int n = fz_split(data, size, part, 2);

	if (part[0].len > MAX_PART || part[1].len > MAX_PART)
		return -1;
	memcpy(copy, part[0].p, part[0].len);
	fz_fix_cache_map(copy, part[0].len);
	fz_fill(map_fd, copy, part[0].len);
	uint64_t dev_size = part[0].len >= 24 ? fz_get64(copy + 16) : 0;
	struct layer base = { .ops = &base_ops, .read_only = true };
	if (part[0].len >= 88) {
		base.size = fz_get64(copy + 24);
		memcpy(base.id, copy + 64, 16);
	}
	if (part[0].len >= 1120)
		stand_in_version(&base, copy + 96, fz_get32(copy + 88));
	if (fz_fill(data_fd, NULL, dev_size <= UBLK_MAX_IMAGE_SIZE ? dev_size : 0))
		return 0;
	if (n > 1) {
		if (live_fd < 0) {
			live_fd = open(live_path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
			if (live_fd < 0)
				FZ_DIE("open %s: %s", live_path, strerror(errno));
		}
		memcpy(copy, part[1].p, part[1].len);
		fz_live_boot_fixup(copy, part[1].len);
		fz_fill(live_fd, copy, part[1].len);
	} else if (live_fd >= 0) {
		close(live_fd);
		live_fd = -1;
		unlink(live_path);
	}

	uint64_t checked = 0;
	if (!cache_map_check_fd(map_fd, &checked, why, sizeof(why))) {
		fz_accepted();
		FZ_ASSERT(checked == dev_size, "checked size %llu, header %llu",
			  (unsigned long long)checked, (unsigned long long)dev_size);
	}
	bool exported = !cache_export_open(path, false, &x, why, sizeof(why));
	if (exported) {
		fz_accepted();
		uint64_t blocks = x.meta.dev_size / BS, next = 0;
		for (size_t i = 0; i < x.n_ext; i++) {
			const struct diff_extent *e = &x.ext[i];
			FZ_ASSERT(e->count && e->start >= next && e->start < blocks &&
				  e->count <= blocks - e->start, "extent %zu (block %llu, %u blocks) of a "
				  "%llu-block device", i, (unsigned long long)e->start, e->count,
				  (unsigned long long)blocks);
			FZ_ASSERT(e->kind == DIFF_DATA || e->kind == DIFF_ZERO, "kind %u", e->kind);
			next = e->start + e->count;
		}
	}

	struct layer *l = NULL;
	if (!layer_cache_open(path, &base, 0, true, &l, why, sizeof(why))) {
		FZ_ASSERT(l->size == dev_size && l->read_only, "opened as %llu bytes, map says %llu",
			  (unsigned long long)l->size, (unsigned long long)dev_size);
		FZ_ASSERT(layer_stack_priv_size(l) <= sizeof(priv), "per-request state too big");
		const struct cache_export *xp = exported ? &x : NULL;
		cache_read(l, 0, base.size, xp);
		cache_read(l, base.size ? base.size - 4096 : 0, base.size, xp);
		cache_read(l, l->size - 4096, base.size, xp);
		cache_read(l, l->size / 3, base.size, xp);
		layer_close(l);
	}
	if (exported)
		cache_export_close(&x);
	return 0;
}
