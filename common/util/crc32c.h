/* CRC-32C (Castagnoli), the checksum of our on-disk formats. */
#ifndef UBLK_CRC32C_H
#define UBLK_CRC32C_H

#include <stddef.h>
#include <stdint.h>

uint32_t crc32c(uint32_t crc, const void *buf, size_t len);

/* The two ways to compute it; crc32c() uses whichever measured faster on
 * this CPU when the process first called it. */
enum crc32c_way { CRC32C_TABLE, CRC32C_SSE42 };
enum crc32c_way crc32c_chosen(void);
/* One way explicitly, for tests: -ENOTSUP when the CPU lacks it. */
int crc32c_by(enum crc32c_way way, uint32_t crc, const void *buf, size_t len, uint32_t *out);

#endif
