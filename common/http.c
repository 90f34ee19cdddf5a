/*
 * Range reads over HTTP(S). Each request is one libcurl easy transfer with
 * a connect and a total timeout; a failure that may pass (timeout, 5xx,
 * connection error, short body) is retried with exponential backoff. The
 * source's validator (ETag, else Last-Modified) and size are learned once;
 * a response that names another validator or size is refused (-ESTALE) so
 * that bytes of two versions of an image are never mixed.
 */
#include "http.h"
#include "log.h"
#include "timeutil.h"

#include <curl/curl.h>
#include <dlfcn.h>
#include <ctype.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define WHY(...) (why ? snprintf(why, whylen, __VA_ARGS__) : 0)

struct http_conn {
	CURL *curl;
};

struct transfer {
	char *buf;
	size_t cap, got;
	bool overflow;
	char etag[256], modified[256];
	uint64_t total;         /* from Content-Range */
};

/* libcurl is loaded on first use: the tools and every device over a local
 * image start without it and the ~30 libraries it pulls in (measured: 90
 * ms more per process start in the test VM). */
static struct {
	CURLcode (*global_init)(long);
	CURL *(*easy_init)(void);
	void (*easy_cleanup)(CURL *);
	void (*easy_reset)(CURL *);
	CURLcode (*easy_setopt)(CURL *, CURLoption, ...);
	CURLcode (*easy_perform)(CURL *);
	CURLcode (*easy_getinfo)(CURL *, CURLINFO, ...);
	const char *(*easy_strerror)(CURLcode);
	struct curl_slist *(*slist_append)(struct curl_slist *, const char *);
	void (*slist_free_all)(struct curl_slist *);
} curl;
static bool curl_ok;
static pthread_once_t curl_once = PTHREAD_ONCE_INIT;

static void curl_load(void)
{
	void *lib = dlopen("libcurl.so.4", RTLD_NOW | RTLD_LOCAL);
	if (!lib) {
		log_err("cannot load libcurl (%s): install libcurl4 for http(s) images", dlerror());
		return;
	}
#define SYM(field, name) (*(void **)&curl.field = dlsym(lib, name))
	if (!SYM(global_init, "curl_global_init") || !SYM(easy_init, "curl_easy_init") ||
	    !SYM(easy_cleanup, "curl_easy_cleanup") || !SYM(easy_reset, "curl_easy_reset") ||
	    !SYM(easy_setopt, "curl_easy_setopt") || !SYM(easy_perform, "curl_easy_perform") ||
	    !SYM(easy_getinfo, "curl_easy_getinfo") || !SYM(easy_strerror, "curl_easy_strerror") ||
	    !SYM(slist_append, "curl_slist_append") || !SYM(slist_free_all, "curl_slist_free_all")) {
		log_err("libcurl lacks a function this build needs: %s", dlerror());
		return;
	}
#undef SYM
	curl_ok = curl.global_init(CURL_GLOBAL_DEFAULT) == CURLE_OK;
}

int http_opts_init(struct http_opts *o, const char *auth_file, char *why, size_t whylen)
{
	static char header[4096];
	const char *value = getenv("UBLK_HTTP_AUTH");
	char line[4000];

	memset(o, 0, sizeof(*o));
	o->connect_timeout_ms = 10000;
	o->timeout_ms = 60000;
	o->retries = 3;
	if (auth_file) {
		FILE *f = fopen(auth_file, "r");
		if (!f) {
			int ret = -errno;
			WHY("%s: %s", auth_file, strerror(errno));
			return ret;
		}
		if (!fgets(line, sizeof(line), f))
			line[0] = 0;
		fclose(f);
		line[strcspn(line, "\r\n")] = 0;
		value = line;
	}
	if (value && *value) {
		/* "Name: value" is used as it is; a bare value is a bearer token or scheme */
		const char *colon = strchr(value, ':'), *space = strchr(value, ' ');
		if (colon && (!space || colon < space))
			snprintf(header, sizeof(header), "%s", value);
		else if (space)
			snprintf(header, sizeof(header), "Authorization: %s", value);
		else
			snprintf(header, sizeof(header), "Authorization: Bearer %s", value);
		o->auth_header = header;
	}
	return 0;
}

void http_url_for_log(const char *url, char *buf, size_t len)
{
	const char *scheme = strstr(url, "://"), *at, *slash;
	if (scheme && (at = strchr(scheme + 3, '@')) && (!(slash = strchr(scheme + 3, '/')) || at < slash))
		snprintf(buf, len, "%.*s%s", (int)(scheme + 3 - url), url, at + 1);
	else
		snprintf(buf, len, "%s", url);
	/* no query strings either: presigned URLs carry credentials there */
	char *q = strchr(buf, '?');
	if (q)
		strcpy(q, "?...");
}

static size_t on_body(char *data, size_t size, size_t n, void *arg)
{
	struct transfer *t = arg;
	size_t len = size * n;
	if (t->got + len > t->cap) {
		t->overflow = true;
		return 0;   /* aborts the transfer */
	}
	memcpy(t->buf + t->got, data, len);
	t->got += len;
	return len;
}

static void header_value(const char *line, size_t len, const char *name, char *out, size_t outlen)
{
	size_t n = strlen(name);
	if (len <= n || strncasecmp(line, name, n))
		return;
	line += n;
	len -= n;
	while (len && isspace((unsigned char)*line)) {
		line++;
		len--;
	}
	while (len && isspace((unsigned char)line[len - 1]))
		len--;
	snprintf(out, outlen, "%.*s", (int)len, line);
}

static size_t on_header(char *data, size_t size, size_t n, void *arg)
{
	struct transfer *t = arg;
	size_t len = size * n;
	char range[128] = "";

	/* a new response (redirect, 100 continue) starts a new set of headers */
	if (len > 5 && !strncmp(data, "HTTP/", 5)) {
		t->etag[0] = t->modified[0] = 0;
		t->total = 0;
		t->got = 0;
	}
	header_value(data, len, "ETag:", t->etag, sizeof(t->etag));
	header_value(data, len, "Last-Modified:", t->modified, sizeof(t->modified));
	header_value(data, len, "Content-Range:", range, sizeof(range));
	if (range[0]) {
		const char *slash = strchr(range, '/');
		if (slash)
			t->total = strtoull(slash + 1, NULL, 10);
	}
	return len;
}

struct http_conn *http_conn_new(void)
{
	struct http_conn *c;
	pthread_once(&curl_once, curl_load);
	if (!curl_ok)
		return NULL;
	c = calloc(1, sizeof(*c));
	if (c && !(c->curl = curl.easy_init())) {
		free(c);
		c = NULL;
	}
	return c;
}

void http_conn_free(struct http_conn *c)
{
	if (!c)
		return;
	curl.easy_cleanup(c->curl);
	free(c);
}

/* One try. Returns 0, a retryable -EAGAIN / -ETIMEDOUT, or a final -errno. */
static int try_range(struct http_conn *c, const struct http_source *s, uint64_t off, uint32_t len,
		     struct transfer *t, char *why, size_t whylen)
{
	CURL *h = c->curl;
	char range[64], errbuf[CURL_ERROR_SIZE] = "", logurl[512];
	struct curl_slist *hdrs = NULL;
	long status = 0;
	CURLcode rc;

	http_url_for_log(s->url, logurl, sizeof(logurl));
	snprintf(range, sizeof(range), "%llu-%llu", (unsigned long long)off,
		 (unsigned long long)(off + len - 1));
	curl.easy_reset(h);
	curl.easy_setopt(h, CURLOPT_URL, s->url);
	curl.easy_setopt(h, CURLOPT_RANGE, range);
	curl.easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
	curl.easy_setopt(h, CURLOPT_FOLLOWLOCATION, 1L);
	curl.easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, (long)s->opts.connect_timeout_ms);
	curl.easy_setopt(h, CURLOPT_TIMEOUT_MS, (long)s->opts.timeout_ms);
	curl.easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
	curl.easy_setopt(h, CURLOPT_WRITEDATA, t);
	curl.easy_setopt(h, CURLOPT_HEADERFUNCTION, on_header);
	curl.easy_setopt(h, CURLOPT_HEADERDATA, t);
	curl.easy_setopt(h, CURLOPT_ERRORBUFFER, errbuf);
	curl.easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
	if (s->opts.insecure) {
		curl.easy_setopt(h, CURLOPT_SSL_VERIFYPEER, 0L);
		curl.easy_setopt(h, CURLOPT_SSL_VERIFYHOST, 0L);
	}
	if (s->opts.auth_header)
		hdrs = curl.slist_append(hdrs, s->opts.auth_header);
	curl.easy_setopt(h, CURLOPT_HTTPHEADER, hdrs);
	t->got = 0;
	t->overflow = false;
	rc = curl.easy_perform(h);
	curl.easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
	curl.slist_free_all(hdrs);
	if (rc == CURLE_OPERATION_TIMEDOUT) {
		WHY("%s: range %s: %s", logurl, range, errbuf[0] ? errbuf : "timed out");
		return -ETIMEDOUT;
	}
	if (rc != CURLE_OK && !t->overflow) {
		WHY("%s: range %s: %s", logurl, range, errbuf[0] ? errbuf : curl.easy_strerror(rc));
		/* TLS and URL errors will not pass; connection trouble may */
		return rc == CURLE_SSL_CACERT || rc == CURLE_PEER_FAILED_VERIFICATION ||
		       rc == CURLE_URL_MALFORMAT || rc == CURLE_UNSUPPORTED_PROTOCOL ? -EIO : -EAGAIN;
	}
	if (status >= 500 || status == 429) {
		WHY("%s: range %s: HTTP %ld", logurl, range, status);
		return -EAGAIN;
	}
	if (status != 206) {
		WHY("%s: range %s: HTTP %ld%s", logurl, range, status,
		    status == 200 ? " (the server ignores range requests)" :
		    status == 401 || status == 403 ? " (check the credentials)" : "");
		return status == 404 ? -ENOENT : status == 401 || status == 403 ? -EACCES : -EIO;
	}
	if (t->overflow || t->got != len) {
		WHY("%s: range %s: got %zu bytes, expected %u", logurl, range, t->got, len);
		return -EAGAIN;
	}
	return 0;
}

static const char *validator_of(const struct transfer *t)
{
	return t->etag[0] ? t->etag : t->modified;
}

int http_read(struct http_conn *c, const struct http_source *s, uint64_t off, uint32_t len,
	      void *buf, unsigned *attempts, char *why, size_t whylen)
{
	struct transfer t = { .buf = buf, .cap = len };
	uint64_t backoff = 200;
	int ret = -EIO;

	for (unsigned i = 0; i <= s->opts.retries; i++) {
		if (attempts)
			*attempts = i + 1;
		if (i) {
			sleep_ms(backoff);
			backoff *= 2;
		}
		ret = try_range(c, s, off, len, &t, why, whylen);
		if (ret == 0) {
			if (strcmp(validator_of(&t), s->validator) || (t.total && t.total != s->size)) {
				char logurl[512];
				http_url_for_log(s->url, logurl, sizeof(logurl));
				WHY("%s changed on the server (validator '%s', was '%s'; size %llu, was "
				    "%llu): refusing to mix versions", logurl, validator_of(&t), s->validator,
				    (unsigned long long)t.total, (unsigned long long)s->size);
				return -ESTALE;
			}
			return 0;
		}
		if (ret != -EAGAIN && ret != -ETIMEDOUT)
			break;
	}
	return ret == -EAGAIN ? -EIO : ret;
}

int http_source_open(struct http_source *s, const char *url, const struct http_opts *o,
		     char *why, size_t whylen)
{
	struct http_conn *c = http_conn_new();
	struct transfer t;
	char one;
	int ret;

	memset(s, 0, sizeof(*s));
	s->url = strdup(url);
	s->opts = *o;
	if (!c || !s->url) {
		http_conn_free(c);
		free(s->url);
		return -ENOMEM;
	}
	memset(&t, 0, sizeof(t));
	t.buf = &one;
	t.cap = 1;
	for (unsigned i = 0;; i++) {
		ret = try_range(c, s, 0, 1, &t, why, whylen);
		if (!ret || (ret != -EAGAIN && ret != -ETIMEDOUT) || i == o->retries)
			break;
		sleep_ms(200u << i);
	}
	http_conn_free(c);
	if (ret) {
		free(s->url);
		s->url = NULL;
		return ret == -EAGAIN ? -EIO : ret;
	}
	if (!t.total) {
		char logurl[512];
		http_url_for_log(url, logurl, sizeof(logurl));
		WHY("%s: the server did not say the size (no Content-Range total)", logurl);
		free(s->url);
		s->url = NULL;
		return -EIO;
	}
	s->size = t.total;
	snprintf(s->validator, sizeof(s->validator), "%s", validator_of(&t));
	return 0;
}

void http_source_close(struct http_source *s)
{
	free(s->url);
	s->url = NULL;
}
