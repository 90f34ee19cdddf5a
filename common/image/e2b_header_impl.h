/* What the E2B header parser's files (e2b_header.c, e2b_builds.c) share.
 * Not for other users. */
#ifndef UBLK_E2B_HEADER_IMPL_H
#define UBLK_E2B_HEADER_IMPL_H

#include "image/e2b_header.h"

#include <endian.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#define WHY(...) snprintf(why, whylen, __VA_ARGS__)

typedef unsigned long long ull;

static const uint8_t nil[16];

/* A bounds-checked reader over bytes already in memory. */
struct cur {
	const uint8_t *p;
	size_t len, pos;
};

static inline size_t left(const struct cur *c) { return c->len - c->pos; }

static inline bool take(struct cur *c, void *out, size_t n)
{
	if (left(c) < n)
		return false;
	memcpy(out, c->p + c->pos, n);
	c->pos += n;
	return true;
}

static inline bool take32(struct cur *c, uint32_t *v)
{
	if (!take(c, v, 4))
		return false;
	*v = le32toh(*v);
	return true;
}

static inline bool take64(struct cur *c, uint64_t *v)
{
	if (!take(c, v, 8))
		return false;
	*v = le64toh(*v);
	return true;
}

/* Go's binary.ReadUvarint: at most 10 bytes, the 10th at most 1. */
static inline bool take_uvarint(struct cur *c, uint64_t *v)
{
	uint64_t x = 0;
	for (unsigned i = 0, shift = 0; i < 10; i++, shift += 7) {
		uint8_t b;
		if (!take(c, &b, 1))
			return false;
		if (b < 0x80) {
			if (i == 9 && b > 1)
				return false;
			*v = x | (uint64_t)b << shift;
			return true;
		}
		x |= (uint64_t)(b & 0x7f) << shift;
	}
	return false;
}

static inline bool take_varint(struct cur *c, int64_t *v)
{
	uint64_t u;
	if (!take_uvarint(c, &u))
		return false;
	*v = (int64_t)(u >> 1) ^ -(int64_t)(u & 1);
	return true;
}

/* The V4/V5 builds section at c: each build's id, size, checksum and frame
 * table, into h->builds. 0 or -errno with why set. */
int e2b_builds_read(struct e2b_header *h, struct cur *c, char *why, size_t whylen);
/* Once the mapping is read: no build recorded twice, every mapped range of
 * a compressed build inside its frames. Sets h->id_build. */
int e2b_builds_check(struct e2b_header *h, char *why, size_t whylen);

#endif
