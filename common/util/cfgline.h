/* The one encoding of the state entry's config and secret files
 * (docs/state-dir.md): "key=value\n" lines. A key is 1-64 of a-z 0-9 _ .
 * and a value is any bytes but control characters (0x00-0x1f, 0x7f), so
 * a value can never start a line of its own. Nothing is escaped: options
 * holding control characters are refused when they are parsed. */
#ifndef UBLK_CFGLINE_H
#define UBLK_CFGLINE_H

#include <stdbool.h>
#include <stddef.h>

/* Whether s holds a byte below 0x20 or 0x7f; *at (if given) gets its offset. */
bool cfgline_has_control(const char *s, size_t *at);

/* Append "key=value\n" at buf + *used (buf holds len bytes, kept
 * NUL-terminated). 0, -EINVAL for a bad key or a value with a control
 * character, -ENOSPC when it does not fit (buf unchanged then). */
int cfgline_append(char *buf, size_t len, size_t *used, const char *key, const char *value);

/* The lines of text whose key is one of keys (NULL-ended), in their
 * order, into out (len bytes, kept NUL-terminated): what a reader of this
 * version compares of a file a later one may have added keys to. A line
 * that does not fit is left out, as is one without '='; an out as long
 * as text holds them all. */
void cfgline_select(const char *text, const char *const *keys, char *out, size_t len);

/* Calls fn for each line of text (len bytes, NUL-terminated at len;
 * modified in place: values end at their newline). Every line must be
 * well formed and end with a newline: else -EINVAL and *bad_line (if
 * given) gets its number, from 1, before fn saw any line. fn returns 0 to
 * go on; anything else stops and is returned. */
int cfgline_parse(char *text, size_t len, int (*fn)(const char *key, const char *value, void *arg),
		  void *arg, unsigned *bad_line);

#endif
