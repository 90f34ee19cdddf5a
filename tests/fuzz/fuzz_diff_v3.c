/*
 * The v3 interop pair (docs/diff-format.md, Interop): a mapping header
 * DATA.header (64-byte metadata, 40-byte entries; no checksums) and its
 * packed data file DATA. Input: header bytes, FZ_SEP, data bytes, each
 * handed to diff_open_fd as a memfd. The version field is forced to 3
 * (the plain v1 path has its own harness). An accepted pair must have
 * every data range inside the data file, ranges sorted and apart; then it
 * is read as a device reads it, through layer_diff_open (which finds the
 * pair by name: symlinks x.header and x to the memfds).
 */
#include "image/blob.h"
#include "difflayer.h"

#define MAX_PART (1u << 20)

static int hfd = -1, dfd = -1;
static uint8_t copy[MAX_PART];
static uint8_t buf[4 * BS];
static char hpath[300], dpath[300];

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	hfd = fz_memfd("fuzz-v3-header");
	dfd = fz_memfd("fuzz-v3-data");
	fz_link(hfd, "x.header", hpath, sizeof(hpath));
	fz_link(dfd, "x", dpath, sizeof(dpath));
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fz_part part[2];
	struct diff_file *d = NULL;
	char why[1024];

	fz_split(data, size, part, 2);
	if (part[0].len > MAX_PART)
		return -1;
	memcpy(copy, part[0].p, part[0].len);
	if (part[0].len >= 8)
		fz_put64(copy, 3);
	fz_fill(hfd, copy, part[0].len);
	fz_fill(dfd, part[1].p, part[1].len);
	if (diff_open_fd(hfd, dfd, &d, why, sizeof(why)))
		return 0;
	fz_accepted();
	FZ_ASSERT(d->v3 && d->data, "not loaded as a v3 pair");
	uint64_t blocks = d->meta.dev_size / BS, data_blocks = part[1].len / BS;
	FZ_ASSERT(d->meta.dev_size && d->meta.dev_size % BS == 0, "device size %llu",
		  (unsigned long long)d->meta.dev_size);
	for (uint64_t i = 0; i < d->meta.n_extents; i++) {
		const struct diff_extent *e = &d->ext[i];
		FZ_ASSERT(e->count && e->start < blocks && e->count <= blocks - e->start,
			  "extent %llu outside the device", (unsigned long long)i);
		FZ_ASSERT(!i || d->ext[i - 1].start + d->ext[i - 1].count <= e->start,
			  "extent %llu overlaps or is out of order", (unsigned long long)i);
		FZ_ASSERT(e->kind == DIFF_DATA || e->kind == DIFF_ZERO, "kind %u", e->kind);
		if (e->kind != DIFF_DATA)
			continue;
		FZ_ASSERT(d->ext_data[i] <= data_blocks && e->count <= data_blocks - d->ext_data[i],
			  "extent %llu stored at block %llu, %u blocks, past the %llu-block data file",
			  (unsigned long long)i, (unsigned long long)d->ext_data[i], e->count,
			  (unsigned long long)data_blocks);
		if (i < 64) {
			uint32_t n = e->count < 4 ? e->count : 4;
			FZ_ASSERT(!blob_read(d->data, buf, (size_t)n * BS, d->ext_data[i] * BS),
				  "reading extent %llu's data failed", (unsigned long long)i);
			FZ_ASSERT(!blob_read(d->data, buf, BS, (d->ext_data[i] + e->count - 1) * BS),
				  "reading extent %llu's last block failed", (unsigned long long)i);
		}
	}
	for (uint64_t i = 0; i < d->meta.n_extents && i < 64; i++) {
		uint64_t run = 0, index = 0, b = d->ext[i].start + d->ext[i].count - 1;
		enum diff_kind k = diff_lookup(d, b, &run, &index);
		FZ_ASSERT(k == (enum diff_kind)d->ext[i].kind && run == 1, "lookup of block %llu",
			  (unsigned long long)b);
	}
	struct diff_meta m = d->meta;
	struct diff_extent ext[32];
	uint64_t n_ext = d->meta.n_extents < 32 ? d->meta.n_extents : 32;
	if (n_ext)
		memcpy(ext, d->ext, n_ext * sizeof(*ext));
	diff_close(d);
	fz_diff_as_layer(hpath, &m, ext, n_ext);
	return 0;
}
