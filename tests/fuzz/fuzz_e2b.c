/*
 * E2B build headers (docs/e2b.md), every layout 1-5, as --inspect and a
 * device over an E2B build read them. Input: the header file. LZ4 frames
 * of layouts 4 and 5 carry their own checksums, which liblz4 checks: the
 * seeds (tests/e2b/golden) hold valid ones, and mutations of the metadata
 * and of uncompressed blocks reach the validation behind them.
 */
#include "image/e2b_header.h"
#include "fuzz.h"

#define FZ_MAX_INPUT (1u << 20)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct e2b_header *h;
	char why[1200];

	if (size > FZ_MAX_INPUT)
		return -1;
	if (e2b_header_parse(data, size, &h, why, sizeof(why))) {
		FZ_ASSERT(why[0], "refused without a reason");
		return 0;
	}
	fz_accepted();
	/* what the parser promises: sorted, contiguous, covering the device */
	uint64_t end = 0;
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
	return 0;
}
