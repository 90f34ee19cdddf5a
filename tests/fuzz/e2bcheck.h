/* What an accepted E2B header promises (e2b_header.h): its mapping sorted,
 * contiguous and covering the device, every id one of its builds. */
#ifndef UBLK_FUZZ_E2BCHECK_H
#define UBLK_FUZZ_E2BCHECK_H

#include "image/e2b_header.h"
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

#endif
