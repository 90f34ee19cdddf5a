#include "util/cfgline.h"

#include <errno.h>
#include <string.h>

#define KEY_MAX 64

bool cfgline_has_control(const char *s, size_t *at)
{
	for (const unsigned char *p = (const unsigned char *)s; *p; p++)
		if (*p < 0x20 || *p == 0x7f) {
			if (at)
				*at = (size_t)(p - (const unsigned char *)s);
			return true;
		}
	return false;
}

static bool key_ok(const char *k, size_t n)
{
	if (!n || n > KEY_MAX)
		return false;
	for (size_t i = 0; i < n; i++)
		if (!strchr("abcdefghijklmnopqrstuvwxyz0123456789_.", k[i]) || !k[i])
			return false;
	return true;
}

int cfgline_append(char *buf, size_t len, size_t *used, const char *key, const char *value)
{
	size_t kl = strlen(key), vl = strlen(value);

	if (!key_ok(key, kl) || cfgline_has_control(value, NULL))
		return -EINVAL;
	if (*used >= len || len - *used < kl + vl + 3)
		return -ENOSPC;
	memcpy(buf + *used, key, kl);
	buf[*used + kl] = '=';
	memcpy(buf + *used + kl + 1, value, vl);
	buf[*used + kl + 1 + vl] = '\n';
	*used += kl + vl + 2;
	buf[*used] = 0;
	return 0;
}

void cfgline_select(const char *text, const char *const *keys, char *out, size_t len)
{
	size_t used = 0;

	if (!len)
		return;
	out[0] = 0;
	for (const char *line = text; *line;) {
		size_t n = strcspn(line, "\n"), kl = strcspn(line, "=\n");
		bool known = false;
		for (const char *const *k = keys; *k && !known; k++)
			known = kl < n && strlen(*k) == kl && !memcmp(line, *k, kl);
		if (known && n + 2 <= len - used) {
			memcpy(out + used, line, n);
			out[used + n] = '\n';
			used += n + 1;
			out[used] = 0;
		}
		line += n + (line[n] == '\n');
	}
}

/* Check every line before calling back: a reader acts on a whole file or
 * on none of it. */
static int check(const char *text, size_t len, unsigned *bad_line)
{
	unsigned line = 1;

	for (size_t i = 0; i < len; line++) {
		const char *nl = memchr(text + i, '\n', len - i);
		const char *eq = memchr(text + i, '=', nl ? (size_t)(nl - text - i) : len - i);
		if (!nl || !eq || !key_ok(text + i, (size_t)(eq - text - i)))
			goto bad;
		for (const char *p = eq + 1; p < nl; p++)
			if ((unsigned char)*p < 0x20 || *p == 0x7f)
				goto bad;
		i = (size_t)(nl - text) + 1;
		continue;
bad:
		if (bad_line)
			*bad_line = line;
		return -EINVAL;
	}
	return 0;
}

int cfgline_parse(char *text, size_t len, int (*fn)(const char *key, const char *value, void *arg),
		  void *arg, unsigned *bad_line)
{
	int ret = check(text, len, bad_line);

	for (size_t i = 0; !ret && i < len;) {
		char *nl = memchr(text + i, '\n', len - i);
		char *eq = memchr(text + i, '=', (size_t)(nl - text) - i);
		*nl = 0;
		*eq = 0;
		ret = fn(text + i, eq + 1, arg);
		i = (size_t)(nl - text) + 1;
	}
	return ret;
}
