/* Minimal JSON writer for --json output: objects of scalars, written in
 * one go to a FILE. Keys and strings are escaped. */
#ifndef UBLK_JSON_H
#define UBLK_JSON_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

struct json {
	FILE *out;
	bool need_comma;
};

void json_begin(struct json *j, FILE *out);      /* "{" */
void json_end(struct json *j);                   /* "}\n" */
void json_obj_begin(struct json *j, const char *key);  /* nested object; key NULL in arrays */
void json_obj_end(struct json *j);
void json_arr_begin(struct json *j, const char *key);
void json_arr_end(struct json *j);
void json_str(struct json *j, const char *key, const char *val);  /* NULL -> null */
void json_u64(struct json *j, const char *key, uint64_t val);
void json_i64(struct json *j, const char *key, int64_t val);
/* val is already JSON (an object made elsewhere). */
void json_raw(struct json *j, const char *key, const char *val);
void json_bool(struct json *j, const char *key, bool val);

#endif
