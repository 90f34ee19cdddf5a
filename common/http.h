/* HTTP(S) range reads through libcurl, with deadlines and retries. */
#ifndef UBLK_HTTP_H
#define UBLK_HTTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct http_opts {
	uint64_t connect_timeout_ms;  /* default 10 s */
	uint64_t timeout_ms;          /* whole transfer, default 60 s */
	unsigned retries;             /* after the first try, default 3 */
	const char *auth_header;      /* e.g. "Authorization: Bearer x"; never logged */
	bool insecure;                /* skip TLS verification */
};

struct http_source {
	char *url;
	struct http_opts opts;
	uint64_t size;
	char validator[256];          /* ETag, else Last-Modified, as the server sent it */
};

/* Fill opts from defaults and the environment: UBLK_HTTP_AUTH holds the
 * header value ("Bearer x") or a whole header line. auth_file, if given,
 * is read instead (its first line). 0 or -errno with why. */
int http_opts_init(struct http_opts *o, const char *auth_file, char *why, size_t whylen);
/* Learn size and validator of url (a 1-byte range request). */
int http_source_open(struct http_source *s, const char *url, const struct http_opts *o,
		     char *why, size_t whylen);
void http_source_close(struct http_source *s);

struct http_conn;  /* one per thread: keeps the connection alive */
struct http_conn *http_conn_new(void);
void http_conn_free(struct http_conn *c);
/* Read exactly len bytes at off, retrying with backoff on timeouts, 5xx
 * and short bodies. -ESTALE if the validator changed, -EIO / -ETIMEDOUT
 * after the last try. *attempts receives how many were made. */
int http_read(struct http_conn *c, const struct http_source *s, uint64_t off, uint32_t len,
	      void *buf, unsigned *attempts, char *why, size_t whylen);
/* The URL with any user:password@ removed, for messages. */
void http_url_for_log(const char *url, char *buf, size_t len);

#endif
