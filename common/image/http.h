/* HTTP(S) range reads through libcurl, with deadlines and retries. */
#ifndef UBLK_HTTP_H
#define UBLK_HTTP_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "util/ublk_limits.h"

/* Limits on what a server can make us believe (docs/security.md).
 * 16 TiB, the project's image limit: chunk counts, byte offsets and the
 * chunk cache's bitmap (one bit per chunk: at most 512 MiB of address
 * space at 4 KiB chunks, 32 MiB at 64 KiB, touched sparsely) stay far
 * from overflow. */
#define HTTP_MAX_IMAGE_SIZE   UBLK_MAX_IMAGE_SIZE
#define HTTP_MAX_URL_LEN      8192      /* longer URLs are refused */
#define HTTP_MAX_AUTH_LEN     8192      /* UBLK_HTTP_AUTH, an --auth-file's line */
#define HTTP_MAX_REDIRECTS    5
#define HTTP_MAX_VALIDATOR    255       /* ETag / Last-Modified bytes */
#define HTTP_MAX_BACKOFF_MS   10000     /* one sleep between retries */
#define HTTP_MAX_TIMEOUT_MS   (3600ull * 1000)  /* --http-timeout upper bound */
#define HTTP_MAX_RETRIES      10

struct http_opts {
	uint64_t connect_timeout_ms;  /* default 10 s */
	uint64_t timeout_ms;          /* one transfer, default 60 s */
	unsigned retries;             /* after the first try, default 3 */
	/* A read (all its tries and the sleeps between them) gives up after
	 * timeout_ms * (retries + 1): retries share one deadline. */
	const char *auth_header;      /* e.g. "Authorization: Bearer x"; never logged */
	bool insecure;                /* skip TLS verification */
};

struct http_source {
	char *url;
	struct http_opts opts;
	uint64_t size;
	char validator[256];          /* ETag, else Last-Modified, as the server sent it */
};

/* How long one read may take, all its tries: timeout_ms * (retries + 1),
 * both as capped. */
uint64_t http_read_budget_ms(const struct http_opts *o);
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
/* How many connections c's transfers have opened: 1 for any number of
 * reads from one server that keeps its connections alive. */
unsigned long http_conn_connects(const struct http_conn *c);
/* From now on, a transfer on c ends (-ECANCELED) soon after *flag is set:
 * a background fetch must not hold up a device's deletion. */
void http_conn_cancel_on(struct http_conn *c, const atomic_bool *flag);
/* Read exactly len bytes at off, retrying with backoff (capped at
 * HTTP_MAX_BACKOFF_MS per sleep) on timeouts, 5xx and short bodies, all
 * within the read's deadline (see struct http_opts). A response must be a
 * 206 for exactly the range asked; redirects are followed by hand: at most
 * HTTP_MAX_REDIRECTS, to https only (or http if the URL was http), and the
 * auth header goes to the URL's own origin only. -ESTALE if the validator changed, -EIO / -ETIMEDOUT
 * after the last try. *attempts receives how many were made. */
int http_read(struct http_conn *c, const struct http_source *s, uint64_t off, uint32_t len,
	      void *buf, unsigned *attempts, char *why, size_t whylen);
/* http_read into bytes 0 to len of fd, written as they arrive (a failed
 * try is overwritten by the next); a write error is final: its -errno. */
int http_read_to_fd(struct http_conn *c, const struct http_source *s, uint64_t off, uint32_t len,
		    int fd, unsigned *attempts, char *why, size_t whylen);
/* The URL for messages: no user:password@, no query (presigned URLs carry
 * credentials there: "?..." instead), no fragment, control bytes as '?'. */
void http_url_for_log(const char *url, char *buf, size_t len);
/* Whether s names an http(s) URL (the scheme in any case), not a path. */
bool http_is_url(const char *s);
/* name as it may be shown: an http(s) URL through http_url_for_log, any
 * other name (a local path) as it is. */
void http_name_for_log(const char *name, char *buf, size_t len);
/* 0 unless path is a URL where a local file is needed; then -EINVAL with
 * why "WHAT URL: a URL, where a local file is needed", the URL without
 * its credentials (what: an option's name, or ""). */
int http_refuse_url(const char *what, const char *path, char *why, size_t len);
/* The URL as an identity: scheme and host lowercased, port, path; no
 * credentials, query or fragment. -EINVAL if not an http(s) URL,
 * -ENAMETOOLONG if buf is too small. */
int http_url_identity(const char *url, char *buf, size_t len);

/* Parsers of response header values (the bytes after "Name:", spaces
 * around them allowed). They read at most len bytes (s need not end in a
 * NUL) and return 0 or -EINVAL. */
/* "bytes A-B/T": decimal digits only, A <= B < T <= HTTP_MAX_IMAGE_SIZE. */
int http_parse_content_range(const char *s, size_t len, uint64_t *first, uint64_t *last,
			     uint64_t *total);
/* Decimal digits only, at most HTTP_MAX_IMAGE_SIZE. */
int http_parse_content_length(const char *s, size_t len, uint64_t *value);
/* A quoted entity tag, optionally W/ prefixed, or a bare token of visible
 * ASCII; at most HTTP_MAX_VALIDATOR bytes and outlen - 1. out gets it as sent. */
int http_parse_etag(const char *s, size_t len, char *out, size_t outlen);

#endif
