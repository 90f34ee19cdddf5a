/* Checksum fix-ups: make a mutated input carry the CRCs its format
 * requires, so the fuzzer explores what lies behind them (README.md). */
#ifndef UBLK_FUZZ_CHECKSUMS_H
#define UBLK_FUZZ_CHECKSUMS_H

#include <stddef.h>
#include <stdint.h>

/* A diff (docs/diff-format.md), in place: frame CRCs, frame table CRC,
 * footer CRC, extent table CRC, header CRC, each where the fields that
 * locate it point inside the buffer. */
void fz_fix_diff(uint8_t *b, size_t n);
/* A cache map file's header CRC (docs/cache-format.md), in place. */
void fz_fix_cache_map(uint8_t *b, size_t n);
/* An access trace's checksum (docs/access-trace.md), in place: the 8
 * bytes after the count of the last line starting "end " become the
 * CRC-32C of every byte before that line, in hex. */
void fz_fix_trace(uint8_t *b, size_t n);

#endif
