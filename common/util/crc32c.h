/* CRC-32C (Castagnoli), the checksum of our on-disk formats. */
#ifndef UBLK_CRC32C_H
#define UBLK_CRC32C_H

#include <stddef.h>
#include <stdint.h>

uint32_t crc32c(uint32_t crc, const void *buf, size_t len);

#endif
