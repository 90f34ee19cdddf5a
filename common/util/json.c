#include "util/json.h"

#include <inttypes.h>

static void put_string(FILE *out, const char *s)
{
	fputc('"', out);
	for (; *s; s++) {
		unsigned char ch = (unsigned char)*s;
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
