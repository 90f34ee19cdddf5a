#include "util/json.h"

#include <inttypes.h>
#include <stdint.h>

/* The length of the well-formed UTF-8 sequence at s, or 0 (RFC 3629:
 * no overlong forms, no surrogates, nothing past U+10FFFF). */
static size_t utf8_len(const unsigned char *s)
{
	size_t n = s[0] >= 0xf0 ? 4 : s[0] >= 0xe0 ? 3 : 2;
	uint32_t cp = s[0] & (0x7f >> n);

	if (s[0] < 0xc2 || s[0] > 0xf4)
		return 0;
	for (size_t i = 1; i < n; i++) {
		if ((s[i] & 0xc0) != 0x80)
			return 0;
		cp = cp << 6 | (s[i] & 0x3f);
	}
	if ((n == 3 && cp < 0x800) || (n == 4 && (cp < 0x10000 || cp > 0x10ffff)) ||
	    (cp >= 0xd800 && cp <= 0xdfff))
		return 0;
	return n;
}

/* A path is bytes: one that is not UTF-8 (a file named in Latin-1) must
 * not make the whole document unreadable, so each such byte shows as
 * U+FFFD. */
static void put_string(FILE *out, const char *s)
{
	fputc('"', out);
	for (; *s; s++) {
		unsigned char ch = (unsigned char)*s;
		if (ch >= 0x80) {
			size_t n = utf8_len((const unsigned char *)s);
			if (!n) {
				fputs("\\ufffd", out);
				continue;
			}
			fwrite(s, 1, n, out);
			s += n - 1;
			continue;
		}
		switch (ch) {
		case '"': fputs("\\\"", out); break;
		case '\\': fputs("\\\\", out); break;
		case '\n': fputs("\\n", out); break;
		case '\t': fputs("\\t", out); break;
		case '\r': fputs("\\r", out); break;
		default:
			if (ch < 0x20)
				fprintf(out, "\\u%04x", ch);
			else
				fputc(ch, out);
		}
	}
	fputc('"', out);
}

static void key(struct json *j, const char *k)
{
	if (j->need_comma)
		fputc(',', j->out);
	j->need_comma = true;
	if (k) {
		put_string(j->out, k);
		fputc(':', j->out);
	}
}

void json_begin(struct json *j, FILE *out)
{
	j->out = out;
	j->need_comma = false;
	fputc('{', out);
}

void json_end(struct json *j)
{
	fputs("}\n", j->out);
	fflush(j->out);
}

void json_obj_begin(struct json *j, const char *k)
{
	key(j, k);
	fputc('{', j->out);
	j->need_comma = false;
}

void json_obj_end(struct json *j)
{
	fputc('}', j->out);
	j->need_comma = true;
}

void json_arr_begin(struct json *j, const char *k)
{
	key(j, k);
	fputc('[', j->out);
	j->need_comma = false;
}

void json_arr_end(struct json *j)
{
	fputc(']', j->out);
	j->need_comma = true;
}

void json_str(struct json *j, const char *k, const char *val)
{
	key(j, k);
	if (val)
		put_string(j->out, val);
	else
		fputs("null", j->out);
}

void json_u64(struct json *j, const char *k, uint64_t val)
{
	key(j, k);
	fprintf(j->out, "%" PRIu64, val);
}

void json_i64(struct json *j, const char *k, int64_t val)
{
	key(j, k);
	fprintf(j->out, "%" PRId64, val);
}

void json_bool(struct json *j, const char *k, bool val)
{
	key(j, k);
	fputs(val ? "true" : "false", j->out);
}

void json_raw(struct json *j, const char *k, const char *val)
{
	key(j, k);
	fputs(val, j->out);
}
