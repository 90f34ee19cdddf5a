/* SHA-256 (FIPS 180-4), for names that must not collide (the chunk cache
 * folder of an image version is the hash of its whole identity) and for
 * the checksum of an E2B build's data. */
#ifndef UBLK_SHA256_H
#define UBLK_SHA256_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SHA256_LEN 32

struct sha256 {
	uint32_t h[8];
	uint64_t bytes;
	uint8_t block[64];
};

void sha256_init(struct sha256 *s);
void sha256_update(struct sha256 *s, const void *data, size_t len);
void sha256_final(struct sha256 *s, uint8_t out[SHA256_LEN]);
/* For tests: hash with the portable code even where the CPU has the SHA
 * extensions (true), or with the faster again (false). Returns whether the
 * CPU has them. Not while another thread hashes. */
bool sha256_use_portable(bool portable);
/* One call: hex (65 bytes with the NUL) of data. */
void sha256_hex(const void *data, size_t len, char hex[2 * SHA256_LEN + 1]);

#endif
