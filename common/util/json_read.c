#include "util/json_read.h"

#include <errno.h>
#include <stdbool.h>
#include <string.h>

struct reader {
	const char *p;
	int depth, in_array;
	char path[128];
	size_t path_len;
	int (*fn)(const char *path, uint64_t v, void *arg);
	void *arg;
};

static int value(struct reader *r);

static void skip_ws(struct reader *r)
{
	while (*r->p == ' ' || *r->p == '\t' || *r->p == '\n' || *r->p == '\r')
		r->p++;
}

static bool is_hex(char c)
{
	return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

/* A string; its bytes (escapes kept as they are) into out when out is given. */
static int string(struct reader *r, char *out, size_t len, size_t *n)
{
	size_t used = 0;

	if (*r->p++ != '"')
		return -EINVAL;
	for (;;) {
		unsigned char c = (unsigned char)*r->p++;
		if (c == '"')
			break;
		if (c < 0x20)   /* control characters, and the end of the text */
			return -EINVAL;
		if (c == '\\') {
			char e = *r->p++;
			if (e == 'u') {
				for (int i = 0; i < 4; i++)
					if (!is_hex(*r->p++))
						return -EINVAL;
			} else if (!e || !strchr("\"\\/bfnrt", e)) {
				return -EINVAL;
			}
		}
		if (out && used + 1 < len)
			out[used] = (char)c;
		used++;
	}
	if (out) {
		if (used >= len)
			return -EINVAL;   /* a name too long for a path */
		out[used] = 0;
	}
	if (n)
		*n = used;
	return 0;
}

static int number(struct reader *r)
{
	bool negative = *r->p == '-', exact = true;
	uint64_t v = 0;

	if (negative)
		r->p++;
	if (*r->p < '0' || *r->p > '9' || (r->p[0] == '0' && r->p[1] >= '0' && r->p[1] <= '9'))
		return -EINVAL;
	for (; *r->p >= '0' && *r->p <= '9'; r->p++) {
		unsigned d = (unsigned)(*r->p - '0');
		if (v > (UINT64_MAX - d) / 10)
			exact = false;
		else
			v = v * 10 + d;
	}
	if (*r->p == '.') {
		exact = false;
		if (*++r->p < '0' || *r->p > '9')
			return -EINVAL;
		while (*r->p >= '0' && *r->p <= '9')
			r->p++;
	}
	if (*r->p == 'e' || *r->p == 'E') {
		exact = false;
		r->p++;
		if (*r->p == '+' || *r->p == '-')
			r->p++;
		if (*r->p < '0' || *r->p > '9')
			return -EINVAL;
		while (*r->p >= '0' && *r->p <= '9')
			r->p++;
	}
	if (exact && !negative && !r->in_array && r->path_len)
		return r->fn(r->path, v, r->arg);
	return 0;
}

static int object(struct reader *r)
{
	size_t outer = r->path_len;
	int ret;

	r->p++;
	skip_ws(r);
	if (*r->p == '}') {
		r->p++;
		return 0;
	}
	for (;;) {
		char name[128];
		size_t n;
		skip_ws(r);
		if (*r->p != '"' || (ret = string(r, name, sizeof(name), &n)))
			return -EINVAL;
		size_t at = outer ? outer + 1 : 0;
		if (at + n + 1 > sizeof(r->path))
			return -EINVAL;
		if (outer)
			r->path[outer] = '.';
		memcpy(r->path + at, name, n + 1);
		r->path_len = at + n;
		skip_ws(r);
		if (*r->p++ != ':')
			return -EINVAL;
		if ((ret = value(r)))
			return ret;
		r->path_len = outer;
		r->path[outer] = 0;
		skip_ws(r);
		if (*r->p == '}') {
			r->p++;
			return 0;
		}
		if (*r->p++ != ',')
			return -EINVAL;
	}
}

static int array(struct reader *r)
{
	int ret;

	r->p++;
	r->in_array++;
	skip_ws(r);
	if (*r->p == ']') {
		r->p++;
		r->in_array--;
		return 0;
	}
	for (;;) {
		if ((ret = value(r)))
			return ret;
		skip_ws(r);
		if (*r->p == ']') {
			r->p++;
			r->in_array--;
			return 0;
		}
		if (*r->p++ != ',')
			return -EINVAL;
	}
}

static int literal(struct reader *r, const char *word)
{
	size_t n = strlen(word);

	if (strncmp(r->p, word, n))
		return -EINVAL;
	r->p += n;
	return 0;
}

static int value(struct reader *r)
{
	int ret;

	skip_ws(r);
	switch (*r->p) {
	case '{':
	case '[':
		if (r->depth == JSON_READ_MAX_DEPTH)
			return -EINVAL;
		r->depth++;
		ret = *r->p == '{' ? object(r) : array(r);
		r->depth--;
		return ret;
	case '"':
		return string(r, NULL, 0, NULL);
	case 't':
		return literal(r, "true");
	case 'f':
		return literal(r, "false");
	case 'n':
		return literal(r, "null");
	default:
		return number(r);
	}
}

int json_read_numbers(const char *text, int (*fn)(const char *path, uint64_t v, void *arg), void *arg)
{
	struct reader r = { .p = text, .fn = fn, .arg = arg };
	int ret;

	skip_ws(&r);
	if (*r.p != '{')
		return -EINVAL;
	if ((ret = value(&r)))
		return ret;
	skip_ws(&r);
	return *r.p ? -EINVAL : 0;
}
