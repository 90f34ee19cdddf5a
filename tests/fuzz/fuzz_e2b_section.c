/*
 * The builds and mapping section of E2B headers of layouts 4 and 5
 * (docs/e2b.md), past the LZ4 frame that wraps it. Input: the 64 bytes of
 * metadata, the flags byte, then the section uncompressed; the harness
 * frames the section with LZ4 (and writes its size) so that mutations
 * reach e2b_builds_read and the V4/V5 mapping, where fuzz_e2b's mutations
 * of a frame mostly stop at its checksums. Seeds: the sections of
 * tests/e2b/golden's V4 and V5 headers (make-seeds). An accepted header
 * is also the parent of a child, which must read back (e2bcheck.h).
 */
#include "e2bcheck.h"

#include <lz4frame.h>

#define FZ_MAX_INPUT (1u << 20)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct e2b_header *h;
	char why[1200];

	if (size < E2B_META_SIZE + 1 || size > FZ_MAX_INPUT)
		return -1;
	size_t sec = size - E2B_META_SIZE - 1, bound = LZ4F_compressFrameBound(sec, NULL);
	size_t at = E2B_META_SIZE + 5;
	uint8_t *hdr = malloc(at + bound);
	FZ_ASSERT(hdr, "out of memory");
	memcpy(hdr, data, E2B_META_SIZE + 1);
	uint32_t le = htole32((uint32_t)sec);
	memcpy(hdr + E2B_META_SIZE + 1, &le, 4);
	size_t n = LZ4F_compressFrame(hdr + at, bound, data + E2B_META_SIZE + 1, sec, NULL);
	FZ_ASSERT(!LZ4F_isError(n), "LZ4F_compressFrame: %s", LZ4F_getErrorName(n));
	if (e2b_header_parse(hdr, at + n, &h, why, sizeof(why))) {
		FZ_ASSERT(why[0], "refused without a reason");
		free(hdr);
		return 0;
	}
	fz_check_e2b_child(h, data, size);
	fz_check_e2b_header(h);
	free(hdr);
	return 0;
}
