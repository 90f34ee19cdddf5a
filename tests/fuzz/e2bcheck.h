/* What an accepted E2B header promises (e2b_header.h): its mapping sorted,
 * contiguous and covering the device, every id one of its builds. */
#ifndef UBLK_FUZZ_E2BCHECK_H
#define UBLK_FUZZ_E2BCHECK_H

#include "image/e2b_header.h"
#include "image/e2b_write.h"
#include "fuzz.h"

/* Check h, use every accessor on it, and free it. */
static inline void fz_check_e2b_header(struct e2b_header *h)
{
	uint64_t end = 0;

	fz_accepted();
	for (uint64_t i = 0; i < h->n_entries; i++) {
		const struct e2b_entry *e = &h->entries[i];
		FZ_ASSERT(e->offset == end, "entry %llu at %llu, expected %llu",
			  (unsigned long long)i, (unsigned long long)e->offset, (unsigned long long)end);
		FZ_ASSERT(e->length > 0, "entry %llu is empty", (unsigned long long)i);
		FZ_ASSERT(e->id == E2B_NIL || e->id < h->n_ids, "entry %llu: id %u of %u",
			  (unsigned long long)i, e->id, h->n_ids);
		end += e->length;
	}
	FZ_ASSERT(end >= h->size && end - h->size < E2B_PAGE, "mapping ends at %llu, size %llu",
		  (unsigned long long)end, (unsigned long long)h->size);
	uint64_t *ranges = calloc(h->n_ids + 1ull, sizeof(*ranges));
	uint64_t *bytes = calloc(h->n_ids + 1ull, sizeof(*bytes));
	FZ_ASSERT(ranges && bytes, "out of memory");
	e2b_header_usage(h, ranges, bytes);
	for (uint32_t k = 0; k < h->n_ids; k++)
		(void)e2b_header_id_build(h, k);
	free(ranges);
	free(bytes);
	e2b_header_free(h);
}

/* Up to 4 sorted extents inside the parent's blocks, data or zero. */
static inline size_t fz_child_extents(const struct e2b_header *h, uint64_t seed, struct diff_extent *ext)
{
	uint64_t blocks = (h->size + 4095) / 4096, at = 0;
	size_t n = 0;

	for (int i = 0; i < 4 && at < blocks; i++) {
		seed = seed * 6364136223846793005ull + 1442695040888963407ull;
		uint64_t gap = (seed >> 20) % (blocks - at), left = blocks - at - gap;
		uint32_t count = (uint32_t)(1 + (seed >> 44) % (left < 64 ? left : 64));
		ext[n++] = (struct diff_extent){ at + gap, count, (seed >> 8) & 1 ? DIFF_ZERO : DIFF_DATA };
		at += gap + count;
	}
	return n;
}

/* A child written on parent h (e2b_next_header, as `ublk-export-diff
 * --format e2b` does), with a few changed extents drawn from the input's
 * hash and a layout from its size, must read back. */
static inline void fz_check_e2b_child(const struct e2b_header *parent, const uint8_t *data,
				      size_t size)
{
	static const uint8_t child_id[16] = { 0xc4, 0x11, 0xd0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13 };
	struct diff_extent ext[4];
	struct e2b_build self = { .codec = E2B_CODEC_NONE };
	struct e2b_header *child, *back;
	uint64_t seed = 1469598103934665603ull;
	uint8_t *buf;
	size_t len, n;
	char why[1200];

	for (size_t i = 0; i < size; i++)
		seed = (seed ^ data[i]) * 1099511628211ull;
	n = fz_child_extents(parent, seed, ext);
	for (size_t i = 0; i < n; i++)
		self.size += ext[i].kind == DIFF_DATA ? (uint64_t)ext[i].count * 4096 : 0;
	if (e2b_next_header(parent, ext, n, child_id, (unsigned)(size % 6), &self, NULL, NULL, &child,
			    why, sizeof(why))) {
		FZ_ASSERT(why[0], "child refused without a reason");
		return;
	}
	FZ_ASSERT(child->generation == parent->generation + 1 && child->size == parent->size,
		  "child of generation %llu, size %llu", (unsigned long long)child->generation,
		  (unsigned long long)child->size);
	if (!e2b_header_serialize(child, &buf, &len, why, sizeof(why))) {
		int ret = e2b_header_parse(buf, len, &back, why, sizeof(why));
		FZ_ASSERT(!ret, "a child written on an accepted parent does not read back: %s", why);
		FZ_ASSERT(back->n_entries == child->n_entries || child->format >= 5,
			  "child of %llu entries reads back as %llu",
			  (unsigned long long)child->n_entries, (unsigned long long)back->n_entries);
		fz_check_e2b_header(back);
		free(buf);
	}
	e2b_header_free(child);
}

#endif
