/*
 * Checksum fix-ups for the fuzz harnesses. A mutated diff or map almost
 * never carries a matching CRC-32C, so without this the fuzzer would only
 * ever test the first checksum comparison. The fix-up follows the format's
 * own pointers (docs/diff-format.md, docs/cache-format.md) to find each
 * checked region, computes its CRC with the project's crc32c(), and writes
 * it where the reader will look; a region whose pointers lead outside the
 * buffer is left as it is (the reader must refuse it anyway). Innermost
 * checksums first, since outer ones cover them: frame CRCs live in the
 * frame table, whose CRC lives in the footer.
 */
#include "checksums.h"
#include "util/crc32c.h"
#include "image/diff.h"
#include "fuzz.h"

#include <zstd.h>

#define BS 4096u
#define HDR 4096u
#define FOOTER 64u
/* Bound the work per input: a fix-up must stay cheaper than the parse. */
#define MAX_FIX_FRAMES 1024
#define MAX_FIX_FRAME_BYTES (1u << 20)

static uint8_t frame_buf[MAX_FIX_FRAME_BYTES];

static void fix_frames(uint8_t *b, size_t n, uint8_t *foot)
{
	uint64_t tab_off = fz_get64(foot + 8), nf = fz_get64(foot + 16);
	uint64_t room = n - FOOTER;

	if (tab_off > room || nf > (room - tab_off) / 16)
		return;
	if (n >= 128) {
		uint32_t flags = fz_get32(b + 64), frame_size = fz_get32(b + 68);
		uint64_t data_blocks = fz_get64(b + 80);
		uint64_t stream = data_blocks <= UINT64_MAX / BS ? data_blocks * BS : UINT64_MAX;
		for (uint64_t i = 0; frame_size && i < nf && i < MAX_FIX_FRAMES; i++) {
			uint8_t *e = b + tab_off + i * 16;
			uint64_t off = fz_get64(e), start = i * (uint64_t)frame_size;
			uint32_t size = fz_get32(e + 8);
			uint64_t len = start < stream ? stream - start : 0;
			if (len > frame_size)
				len = frame_size;
			if (!(flags & DIFF_FLAG_ZSTD)) {
				if (off <= n && len <= n - off)
					fz_put32(e + 12, crc32c(0, b + off, len));
			} else if (off <= n && size <= n - off && frame_size <= sizeof(frame_buf)) {
				size_t got = ZSTD_decompress(frame_buf, frame_size, b + off, size);
				if (!ZSTD_isError(got))
					fz_put32(e + 12, crc32c(0, frame_buf, got));
			}
		}
	}
	fz_put32(foot + 24, crc32c(0, b + tab_off, nf * 16));
}

void fz_fix_diff(uint8_t *b, size_t n)
{
	if (n >= FOOTER) {
		uint8_t *foot = b + n - FOOTER;
		fix_frames(b, n, foot);
		fz_put32(foot + 60, crc32c(0, foot, 60));
	}
	if (n >= HDR + 4 && n >= 128) {
		uint64_t n_ext = fz_get64(b + 72);
		if (n_ext <= (n - HDR - 4) / 16)
			fz_put32(b + HDR + n_ext * 16, crc32c(0, b + HDR, n_ext * 16));
	}
	if (n >= 128)
		fz_put32(b + 124, crc32c(0, b, 124));
}

void fz_fix_cache_map(uint8_t *b, size_t n)
{
	if (n >= 88)
		fz_put32(b + 60, crc32c(0, b, 60) ^ crc32c(0, b + 64, 24));
	if (n >= 1120)   /* the base version's own */
		fz_put32(b + 92, crc32c(0, b + 88, 4) ^ crc32c(0, b + 96, 1024));
}

void fz_fix_trace(uint8_t *b, size_t n)
{
	size_t end = n;

	for (size_t i = n; i-- > 0;)
		if ((!i || b[i - 1] == '\n') && n - i >= 4 && !memcmp(b + i, "end ", 4)) {
			end = i;
			break;
		}
	if (end == n)
		return;
	uint8_t *sp = memchr(b + end + 4, ' ', n - end - 4);
	char hex[9];
	if (!sp || (size_t)(b + n - sp - 1) < 8)
		return;
	snprintf(hex, sizeof(hex), "%08x", crc32c(0, b, end));
	memcpy(sp + 1, hex, 8);
}
