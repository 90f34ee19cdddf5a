/*
 * Diff files, format version 1 (docs/diff-format.md): header, extent
 * table, raw or zstd frames, frame table, footer. The input is the whole
 * file; its checksums are recomputed (checksums.c) before diff_open_fd
 * reads it from a memfd. An accepted diff is then used as ublk-export-diff
 * --inspect and a diff layer use it: every frame read and checked,
 * lookups at extent edges, whose answers must stay inside the tables the
 * loader validated, and reads through layer_diff_open's layer (path
 * /proc/self/fd/N) over a stand-in lower layer that answers at once, so
 * the whole read path runs without a ring.
 */
#include "checksums.h"
#include "image/diff.h"
#include "export.h"
#include "fuzz.h"
#include "difflayer.h"

#define FZ_MAX_INPUT (1u << 20)

static int fd = -1;
static char path[64];
static uint8_t copy[FZ_MAX_INPUT];

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	fd = fz_memfd("fuzz-diff");
	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	return 0;
}

static void probe(const struct diff_file *d, uint64_t block)
{
	uint64_t run = 0, index = UINT64_MAX;
	uint64_t blocks = d->meta.dev_size / BS, per = d->meta.frame_size / BS;
	enum diff_kind k = diff_lookup(d, block, &run, &index);

	FZ_ASSERT(k == DIFF_ABSENT || k == DIFF_DATA || k == DIFF_ZERO, "kind %d", k);
	FZ_ASSERT(run > 0, "block %llu: empty run", (unsigned long long)block);
	if (k == DIFF_ABSENT)
		return;
	FZ_ASSERT(block < blocks && run <= blocks - block,
		  "block %llu run %llu leaves the %llu-block device", (unsigned long long)block,
		  (unsigned long long)run, (unsigned long long)blocks);
	if (k != DIFF_DATA)
		return;
	FZ_ASSERT(index < d->meta.data_blocks && run <= d->meta.data_blocks - index,
		  "data index %llu run %llu past %llu data blocks", (unsigned long long)index,
		  (unsigned long long)run, (unsigned long long)d->meta.data_blocks);
	FZ_ASSERT(per && (index + run - 1) / per < d->n_frames,
		  "data index %llu needs frame %llu of %llu", (unsigned long long)(index + run - 1),
		  (unsigned long long)((index + run - 1) / (per ? per : 1)),
		  (unsigned long long)d->n_frames);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct diff_file *d = NULL;
	char why[1024];

	if (size > FZ_MAX_INPUT)
		return -1;
	memcpy(copy, data, size);
	fz_fix_diff(copy, size);
	fz_fill(fd, copy, size);
	if (diff_open_fd(fd, -1, &d, why, sizeof(why)))
		return 0;
	fz_accepted();
	FZ_ASSERT(!d->v3, "a v1 file loaded as v3");
	FZ_ASSERT(d->meta.dev_size && d->meta.dev_size % BS == 0, "device size %llu",
		  (unsigned long long)d->meta.dev_size);
	FZ_ASSERT(d->meta.frame_size && d->meta.frame_size % BS == 0 &&
		  d->meta.frame_size <= DIFF_MAX_FRAME, "frame size %u", d->meta.frame_size);

	/* --inspect: every frame read (decompressed) and its CRC checked */
	uint64_t bad = 0;
	const char *damage;
	int verified = diff_verify(d, &bad, &damage);
	FZ_ASSERT(verified != -EIO || damage, "damaged frame %llu without a reason",
		  (unsigned long long)bad);

	for (uint64_t i = 0; i < d->meta.n_extents && i < 256; i++) {
		const struct diff_extent *e = &d->ext[i];
		probe(d, e->start);
		probe(d, e->start + e->count - 1);
		if (e->start)
			probe(d, e->start - 1);
		probe(d, e->start + e->count);
	}
	probe(d, 0);
	probe(d, d->meta.dev_size / BS - 1);

	for (uint64_t i = 0; i < d->n_frames; i++) {
		uint32_t len = diff_frame_len(d, i);
		FZ_ASSERT(len && len <= d->meta.frame_size, "frame %llu length %u",
			  (unsigned long long)i, len);
	}
	/* frame slots cost 8 frames: keep the layer to frames of at most 1 MiB */
	struct diff_meta m = d->meta;
	struct diff_extent ext[32];
	uint64_t n_ext = d->meta.n_extents < 32 ? d->meta.n_extents : 32;
	if (n_ext)
		memcpy(ext, d->ext, n_ext * sizeof(*ext));
	diff_close(d);
	if (m.frame_size <= (1u << 20))
		fz_diff_as_layer(path, &m, ext, n_ext);
	return 0;
}
