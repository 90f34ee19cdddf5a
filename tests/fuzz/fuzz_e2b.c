/*
 * E2B build headers (docs/e2b.md), every layout 1-5, as --inspect and a
 * device over an E2B build read them. Input: the header file. LZ4 frames
 * of layouts 4 and 5 carry their own checksums, which liblz4 checks: the
 * seeds (tests/e2b/golden) hold valid ones, and mutations of the metadata
 * and of uncompressed blocks reach the validation behind them.
 *
 * An accepted header is also the parent of a child, which must read back
 * (e2bcheck.h).
 */
#include "e2bcheck.h"

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
	fz_check_e2b_child(h, data, size);
	fz_check_e2b_header(h);
	return 0;
}
