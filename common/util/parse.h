/* Strict parsers for option values: the whole string must be consumed. */
#ifndef UBLK_PARSE_H
#define UBLK_PARSE_H

#include <stdint.h>

/* Decimal integer in [min, max]. Returns 0 or -EINVAL / -ERANGE. */
int parse_uint(const char *s, uint64_t min, uint64_t max, uint64_t *out);
/* Hexadecimal integer (digits only, no 0x) in [min, max]. */
int parse_hex(const char *s, uint64_t min, uint64_t max, uint64_t *out);
/* Size with optional suffix K M G T (powers of 1024), e.g. "64M". */
int parse_size(const char *s, uint64_t *out);
/* Seconds, with optional fraction ("2.5"), returned in milliseconds. */
int parse_seconds(const char *s, uint64_t *ms);
/* Device id from "N", "/dev/ublkbN" or "/dev/ublkcN". */
int parse_dev_id(const char *s, uint32_t *id);

#endif
