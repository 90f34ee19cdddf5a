/* Reading JSON of our own making back from files others could have
 * written (a device's stats): strict, bounded, no allocation. */
#ifndef UBLK_JSON_READ_H
#define UBLK_JSON_READ_H

#include <stddef.h>
#include <stdint.h>

#define JSON_READ_MAX_DEPTH 8

/* Walk text, which must be exactly one JSON object (RFC 8259; whitespace
 * around it allowed): fn gets each member whose value is a non-negative
 * integer that fits in 64 bits, by its path (the names of the enclosing
 * members joined by '.', e.g. "remote.chunks_fetched"); other values, and
 * everything inside arrays, are checked and skipped. fn returns 0 to go
 * on. 0, fn's answer, or -EINVAL (not one object, nested deeper than
 * JSON_READ_MAX_DEPTH, or a path longer than 127 bytes). */
int json_read_numbers(const char *text, int (*fn)(const char *path, uint64_t v, void *arg), void *arg);

#endif
