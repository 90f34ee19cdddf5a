/*
 * What an HTTP server sends and we parse (docs/remote.md): Content-Range,
 * Content-Length and ETag values, and the URLs turned into log text and
 * cache identities. Input: a selector byte, then the value. Values are
 * handed over in a heap buffer of exactly their length, without a NUL, as
 * libcurl hands header bytes: a read past them is an ASan report.
 */
#include "image/http.h"
#include "fuzz.h"

#include <ctype.h>

static void check_text(const char *s, size_t cap, const char *what)
{
	const char *end = memchr(s, 0, cap);
	FZ_ASSERT(end, "%s is not NUL-terminated", what);
	for (const char *p = s; p < end; p++)
		FZ_ASSERT((unsigned char)*p >= 0x20 && *p != 0x7f, "%s has control byte 0x%02x", what,
			  (unsigned char)*p);
}

/* The output names a host without a user:password@ before it. */
static void check_no_userinfo(const char *out, const char *url)
{
	const char *p = strstr(out, "://");
	if (!p)
		return;
	p += 3;
	FZ_ASSERT(!memchr(p, '@', strcspn(p, "/?#")), "credentials kept: '%s' from '%s'", out, url);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1 || size > 16384)
		return -1;
	uint8_t sel = data[0];
	size_t len = size - 1;
	char *s = malloc(len ? len : 1);
	FZ_ASSERT(s, "out of memory");
	memcpy(s, data + 1, len);

	switch (sel % 5) {
	case 0: {
		uint64_t a = 7, b = 7, t = 7;
		if (!http_parse_content_range(s, len, &a, &b, &t)) {
			fz_accepted();
			FZ_ASSERT(a <= b && b < t && t <= HTTP_MAX_IMAGE_SIZE,
				  "accepted range %llu-%llu/%llu", (unsigned long long)a,
				  (unsigned long long)b, (unsigned long long)t);
		}
		break;
	}
	case 1: {
		uint64_t v = 0;
		if (!http_parse_content_length(s, len, &v)) {
			fz_accepted();
			FZ_ASSERT(v <= HTTP_MAX_IMAGE_SIZE, "accepted length %llu", (unsigned long long)v);
		}
		break;
	}
	case 2: {
		size_t outlen = 1 + (sel >> 3) * 9;   /* 1 .. 280: small and too small buffers */
		char *out = malloc(outlen);
		FZ_ASSERT(out, "out of memory");
		if (!http_parse_etag(s, len, out, outlen)) {
			fz_accepted();
			check_text(out, outlen, "etag");
			FZ_ASSERT(strlen(out) <= HTTP_MAX_VALIDATOR, "etag of %zu bytes", strlen(out));
		}
		free(out);
		break;
	}
	case 3:
	case 4: {
		char *url = fz_strndup(data + 1, len);
		size_t outlen = 1 + (sel >> 3) * 33;   /* 1 .. 1024 */
		char *out = malloc(outlen);
		FZ_ASSERT(out, "out of memory");
		if (sel % 5 == 3) {
			http_url_for_log(url, out, outlen);
			fz_accepted();
			check_text(out, outlen, "url for log");
			check_no_userinfo(out, url);
		} else if (!http_url_identity(url, out, outlen)) {
			fz_accepted();
			check_text(out, outlen, "url identity");
			FZ_ASSERT(!strpbrk(out, "?#"), "query or fragment in identity '%s'", out);
			check_no_userinfo(out, url);
		}
		free(out);
		free(url);
		break;
	}
	}
	free(s);
	return 0;
}
