#include "util/parse.h"

#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* The decimal number s starts with (no sign, no space), *end after it. */
static int leading_number(const char *s, unsigned long long *v, char **end)
{
	if (!s || !isdigit((unsigned char)*s))
		return -EINVAL;
	errno = 0;
	*v = strtoull(s, end, 10);
	return errno == ERANGE ? -ERANGE : 0;
}

int parse_uint(const char *s, uint64_t min, uint64_t max, uint64_t *out)
{
	char *end;
	unsigned long long v;
	int ret = leading_number(s, &v, &end);

	if (ret)
		return ret;
	if (*end)
		return -EINVAL;
	if (v < min || v > max)
		return -ERANGE;
	*out = v;
	return 0;
}

int parse_hex(const char *s, uint64_t min, uint64_t max, uint64_t *out)
{
	unsigned long long v;

	/* digits only: strtoull would take a sign, spaces and "0x" */
	if (!*s || s[strspn(s, "0123456789abcdefABCDEF")])
		return -EINVAL;
	errno = 0;
	v = strtoull(s, NULL, 16);
	if (errno == ERANGE || v < min || v > max)
		return -ERANGE;
	*out = v;
	return 0;
}

int parse_size(const char *s, uint64_t *out)
{
	char *end;
	unsigned long long v;
	unsigned shift = 0;
	int ret = leading_number(s, &v, &end);

	if (ret)
		return ret;
	switch (toupper((unsigned char)*end)) {
	case 0: break;
	case 'K': shift = 10; break;
	case 'M': shift = 20; break;
	case 'G': shift = 30; break;
	case 'T': shift = 40; break;
	default: return -EINVAL;
	}
	if (*end && end[1] && !(toupper((unsigned char)end[1]) == 'B' && !end[2])
	    && !(toupper((unsigned char)end[1]) == 'I' && toupper((unsigned char)end[2]) == 'B' && !end[3]))
		return -EINVAL;
	if (shift && v > (~0ULL >> shift))
		return -ERANGE;
	*out = v << shift;
	return 0;
}

int parse_seconds(const char *s, uint64_t *ms)
{
	uint64_t whole = 0, tenth_ms = 0;
	size_t digits = 0;

	/* decimal only (strtod took hex and exponents): D, D.D or .D */
	if (!s)
		return -EINVAL;
	for (; isdigit((unsigned char)*s); s++, digits++)
		if ((whole = whole * 10 + (uint64_t)(*s - '0')) > 86400ull * 365)
			return -EINVAL;
	if (*s == '.') {
		/* to tenths of a millisecond, which round to one */
		unsigned place = 0;
		for (s++; isdigit((unsigned char)*s); s++, digits++, place++)
			if (place < 4)
				tenth_ms = tenth_ms * 10 + (uint64_t)(*s - '0');
		for (; place < 4; place++)
			tenth_ms *= 10;
	}
	if (!digits || *s)
		return -EINVAL;
	*ms = whole * 1000 + (tenth_ms + 5) / 10;
	return 0;
}

int parse_dev_id(const char *s, uint32_t *id)
{
	static const char *prefixes[] = { "/dev/ublkb", "/dev/ublkc", "ublkb", "ublkc" };
	uint64_t v;

	for (size_t i = 0; i < sizeof(prefixes) / sizeof(prefixes[0]); i++) {
		size_t n = strlen(prefixes[i]);
		if (!strncmp(s, prefixes[i], n)) {
			s += n;
			break;
		}
	}
	if (parse_uint(s, 0, 0x7fffffff, &v))
		return -EINVAL;
	*id = (uint32_t)v;
	return 0;
}
