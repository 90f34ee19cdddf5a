/*
 * Range reads over HTTP(S). Each request is one libcurl easy transfer with
 * a connect and a total timeout; a failure that may pass (timeout, 5xx,
 * connection error, short body) is retried with capped exponential backoff
 * within one deadline per read. The source's validator (ETag, else
 * Last-Modified) and size are learned once; a response that names another
 * validator or size is refused (-ESTALE) so that bytes of two versions of
 * an image are never mixed.
 *
 * Everything the server sends is untrusted (docs/security.md): headers are
 * parsed strictly, a 206 must carry exactly the range asked for, and
 * redirects are followed here, not by libcurl, because libcurl would send
 * our custom auth header (CURLOPT_HTTPHEADER) to any host it is sent to.
 */
#include "image/http.h"
#include "util/fileio.h"
#include "util/log.h"
#include "util/safedir.h"
#include "util/timeutil.h"

#include <curl/curl.h>
#include <dlfcn.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define WHY(...) (why ? snprintf(why, whylen, __VA_ARGS__) : 0)

/* body bytes of a non-206 answer (error page, redirect) we read and drop */
#define HTTP_MAX_DISCARD (64u << 10)

/* A fresh easy handle per request: libcurl 7.88 (Debian 12) keeps a
 * pointer to a freed header of a handle's previous transfer, which a
 * hostile server's folded header line then writes through (fixed in curl
 * 8.1.0; see docs/security.md). A handle that made no earlier transfer has
 * none. The handles run in one multi handle, which keeps the connections
 * (curl_easy_perform would make a multi handle, with its socket pair, per
 * request); the share keeps DNS answers and TLS sessions. */
struct http_conn {
	CURLM *multi;
	CURLSH *share;
	const atomic_bool *cancel;      /* set: transfers end at once (ECANCELED) */
	unsigned long connects;         /* connections made, for the tests */
};

struct transfer {
	char *buf;              /* where the body goes: here, or to fd if buf is NULL */
	int fd;
	int fd_err;             /* -errno of a failed write to fd */
	size_t cap, got, discarded;
	bool overflow;
	long status;            /* from the status line, 0 before it */
	bool head_done;         /* the blank line after the headers came */
	/* headers of the last response: what was sent, and what was wrong */
	char etag[HTTP_MAX_VALIDATOR + 1], modified[HTTP_MAX_VALIDATOR + 1];
	unsigned n_range, n_length, n_etag, n_modified;
	const char *bad;        /* the first malformed header's name */
	uint64_t first, last, total;  /* Content-Range */
	uint64_t length;        /* Content-Length */
	/* the image version a read expects (NULL for the probe), and whether
	 * the answer is another's: its body is not worth waiting for */
	const struct http_source *src;
	bool stale;
};

/* libcurl is loaded on first use: the tools and every device over a local
 * image start without it and the ~30 libraries it pulls in (measured: 90
 * ms more per process start in the test VM). */
static struct {
	CURLcode (*global_init)(long);
	CURL *(*easy_init)(void);
	void (*easy_cleanup)(CURL *);
	CURLSH *(*share_init)(void);
	CURLSHcode (*share_setopt)(CURLSH *, CURLSHoption, ...);
	CURLSHcode (*share_cleanup)(CURLSH *);
	CURLcode (*easy_setopt)(CURL *, CURLoption, ...);
	CURLM *(*multi_init)(void);
	CURLMcode (*multi_add_handle)(CURLM *, CURL *);
	CURLMcode (*multi_remove_handle)(CURLM *, CURL *);
	CURLMcode (*multi_perform)(CURLM *, int *);
	CURLMcode (*multi_poll)(CURLM *, struct curl_waitfd *, unsigned, int, int *);
	CURLMsg *(*multi_info_read)(CURLM *, int *);
	CURLMcode (*multi_cleanup)(CURLM *);
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
	    !SYM(easy_cleanup, "curl_easy_cleanup") || !SYM(share_init, "curl_share_init") ||
	    !SYM(share_setopt, "curl_share_setopt") || !SYM(share_cleanup, "curl_share_cleanup") ||
	    !SYM(easy_setopt, "curl_easy_setopt") || !SYM(multi_init, "curl_multi_init") ||
	    !SYM(multi_add_handle, "curl_multi_add_handle") ||
	    !SYM(multi_remove_handle, "curl_multi_remove_handle") ||
	    !SYM(multi_perform, "curl_multi_perform") || !SYM(multi_poll, "curl_multi_poll") ||
	    !SYM(multi_info_read, "curl_multi_info_read") || !SYM(multi_cleanup, "curl_multi_cleanup") ||
	    !SYM(easy_getinfo, "curl_easy_getinfo") || !SYM(easy_strerror, "curl_easy_strerror") ||
	    !SYM(slist_append, "curl_slist_append") || !SYM(slist_free_all, "curl_slist_free_all")) {
		log_err("libcurl lacks a function this build needs: %s", dlerror());
		return;
	}
#undef SYM
	curl_ok = curl.global_init(CURL_GLOBAL_DEFAULT) == CURLE_OK;
}

/* ---- parsers of untrusted header values; they never read past len ---- */

static bool is_ows(char c)
{
	return c == ' ' || c == '\t';
}

/* Drop optional white space (and a line's CR LF) around a value. */
static void trim(const char **s, size_t *len)
{
	while (*len && is_ows(**s)) {
		(*s)++;
		(*len)--;
	}
	while (*len && (is_ows((*s)[*len - 1]) || (*s)[*len - 1] == '\r' || (*s)[*len - 1] == '\n'))
		(*len)--;
}

/* Decimal digits only (no sign, no space), at most max. */
static int parse_dec(const char *s, size_t len, uint64_t max, uint64_t *v)
{
	uint64_t x = 0;

	if (!len)
		return -EINVAL;
	for (size_t i = 0; i < len; i++) {
		if (s[i] < '0' || s[i] > '9')
			return -EINVAL;
		if (x > (max - (uint64_t)(s[i] - '0')) / 10)
			return -EINVAL;     /* past max, or would wrap */
		x = x * 10 + (uint64_t)(s[i] - '0');
	}
	*v = x;
	return 0;
}

int http_parse_content_length(const char *s, size_t len, uint64_t *value)
{
	trim(&s, &len);
	return parse_dec(s, len, HTTP_MAX_IMAGE_SIZE, value);
}

int http_parse_content_range(const char *s, size_t len, uint64_t *first, uint64_t *last,
			     uint64_t *total)
{
	const char *end, *dash, *slash;
	uint64_t a, b, t;

	trim(&s, &len);
	if (len < 6 || strncasecmp(s, "bytes", 5) || !is_ows(s[5]))
		return -EINVAL;
	end = s + len;
	s += 6;
	while (s < end && is_ows(*s))
		s++;
	dash = memchr(s, '-', (size_t)(end - s));
	if (!dash)
		return -EINVAL;
	slash = memchr(dash, '/', (size_t)(end - dash));
	if (!slash)
		return -EINVAL;
	/* "*" totals (unknown size) and "*" ranges (416 answers) fail here */
	if (parse_dec(s, (size_t)(dash - s), HTTP_MAX_IMAGE_SIZE, &a) ||
	    parse_dec(dash + 1, (size_t)(slash - dash - 1), HTTP_MAX_IMAGE_SIZE, &b) ||
	    parse_dec(slash + 1, (size_t)(end - slash - 1), HTTP_MAX_IMAGE_SIZE, &t))
		return -EINVAL;
	if (a > b || b >= t)
		return -EINVAL;
	*first = a;
	*last = b;
	*total = t;
	return 0;
}

int http_parse_etag(const char *s, size_t len, char *out, size_t outlen)
{
	size_t i = 0;

	trim(&s, &len);
	if (!len || len > HTTP_MAX_VALIDATOR || len >= outlen)
		return -EINVAL;
	if (len >= 2 && s[0] == 'W' && s[1] == '/')
		i = 2;
	if (i < len && s[i] == '"') {
		/* entity-tag = [W/] DQUOTE *etagc DQUOTE; we take visible ASCII only */
		if (len - i < 2 || s[len - 1] != '"')
			return -EINVAL;
		for (size_t k = i + 1; k < len - 1; k++)
			if (s[k] < 0x21 || s[k] > 0x7e || s[k] == '"')
				return -EINVAL;
	} else {
		/* servers that forget the quotes: one token of visible ASCII */
		if (i)
			return -EINVAL;
		for (size_t k = 0; k < len; k++)
			if (s[k] < 0x21 || s[k] > 0x7e || s[k] == '"')
				return -EINVAL;
	}
	memcpy(out, s, len);
	out[len] = 0;
	return 0;
}

/* Last-Modified is compared as sent; it only has to be printable. */
static int parse_printable(const char *s, size_t len, char *out, size_t outlen)
{
	trim(&s, &len);
	if (!len || len > HTTP_MAX_VALIDATOR || len >= outlen)
		return -EINVAL;
	for (size_t k = 0; k < len; k++)
		if (s[k] < 0x20 || s[k] > 0x7e)
			return -EINVAL;
	memcpy(out, s, len);
	out[len] = 0;
	return 0;
}

/* ---- URLs ---- */

struct url_parts {
	bool https;
	const char *host;       /* without brackets of an IPv6 literal */
	size_t host_len;
	bool ipv6;
	unsigned port;          /* the default one if none was given */
	const char *path;       /* up to the query or fragment; may be empty */
	size_t path_len;
	bool query;
};

static bool host_char(char c)
{
	return isalnum((unsigned char)c) || c == '.' || c == '-' || c == '_';
}

/* Split an http(s) URL. Anything that is not a plain host[:port] after an
 * optional userinfo is refused: a password with a '/' or '?' in it would
 * otherwise end up in the "host" or the path, and from there in logs. */
static int url_split(const char *url, struct url_parts *u)
{
	const char *p, *auth_end, *at;
	size_t n = strlen(url);

	memset(u, 0, sizeof(*u));
	if (n > HTTP_MAX_URL_LEN)
		return -ENAMETOOLONG;
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)url[i] <= 0x20 || (unsigned char)url[i] >= 0x7f)
			return -EINVAL;
	if (!strncasecmp(url, "https://", 8)) {
		u->https = true;
		p = url + 8;
	} else if (!strncasecmp(url, "http://", 7)) {
		p = url + 7;
	} else {
		return -EINVAL;
	}
	auth_end = p + strcspn(p, "/?#");
	at = NULL;
	for (const char *q = p; q < auth_end; q++)
		if (*q == '@')
			at = q;
	if (at)
		p = at + 1;
	if (p < auth_end && *p == '[') {
		const char *close = memchr(p, ']', (size_t)(auth_end - p));
		if (!close || close == p + 1)
			return -EINVAL;
		for (const char *q = p + 1; q < close; q++)
			if (!isxdigit((unsigned char)*q) && *q != ':' && *q != '.')
				return -EINVAL;
		u->host = p + 1;
		u->host_len = (size_t)(close - p - 1);
		u->ipv6 = true;
		p = close + 1;
	} else {
		u->host = p;
		while (p < auth_end && host_char(*p))
			p++;
		u->host_len = (size_t)(p - u->host);
		if (!u->host_len)
			return -EINVAL;
	}
	/* a DNS name's limit, which keeps an origin whole in url_origin's
	 * buffers: two cut short could compare equal */
	if (u->host_len > 253)
		return -EINVAL;
	u->port = u->https ? 443 : 80;
	if (p < auth_end) {
		uint64_t port;
		if (*p != ':' || parse_dec(p + 1, (size_t)(auth_end - p - 1), 65535, &port) || !port)
			return -EINVAL;
		u->port = (unsigned)port;
	}
	u->path = auth_end;
	u->path_len = strcspn(auth_end, "?#");
	u->query = auth_end[u->path_len] == '?';
	return 0;
}

/* scheme://host:port, lowercased: who may see the credentials */
static void url_origin(const struct url_parts *u, char *buf, size_t len)
{
	int n = snprintf(buf, len, "%s://%s%.*s%s:%u", u->https ? "https" : "http", u->ipv6 ? "[" : "",
			 (int)u->host_len, u->host, u->ipv6 ? "]" : "", u->port);
	for (int i = 0; i < n && (size_t)i < len; i++)
		buf[i] = (char)tolower((unsigned char)buf[i]);
}

int http_url_identity(const char *url, char *buf, size_t len)
{
	struct url_parts u;
	char origin[300];
	int ret = url_split(url, &u), n;

	if (ret)
		return ret;
	url_origin(&u, origin, sizeof(origin));
	n = snprintf(buf, len, "%s%.*s", origin, (int)u.path_len, u.path_len ? u.path : "/");
	return n < 0 || (size_t)n >= len ? -ENAMETOOLONG : 0;
}

bool http_is_url(const char *s)
{
	return !strncasecmp(s, "http://", 7) || !strncasecmp(s, "https://", 8);
}

void http_name_for_log(const char *name, char *buf, size_t len)
{
	if (http_is_url(name))
		http_url_for_log(name, buf, len);
	else
		snprintf(buf, len, "%s", name);
}

int http_refuse_url(const char *what, const char *path, char *why, size_t len)
{
	char shown[300];

	if (!path || !http_is_url(path))
		return 0;
	http_name_for_log(path, shown, sizeof(shown));
	snprintf(why, len, "%s%s%s: a URL, where a local file is needed", what, *what ? " " : "",
		 shown);
	return -EINVAL;
}

void http_url_for_log(const char *url, char *buf, size_t len)
{
	struct url_parts u;
	char port[8] = "";

	if (!len)
		return;
	if (url_split(url, &u)) {
		/* we cannot tell where a password would be: show none of it */
		snprintf(buf, len, "(unparsable URL)");
		return;
	}
	if (u.port != (u.https ? 443u : 80u))
		snprintf(port, sizeof(port), ":%u", u.port);
	/* url_split let through visible ASCII only: nothing to escape */
	snprintf(buf, len, "%s://%s%.*s%s%s%.*s%s", u.https ? "https" : "http", u.ipv6 ? "[" : "",
		 (int)u.host_len, u.host, u.ipv6 ? "]" : "", port, (int)u.path_len, u.path,
		 u.query ? "?..." : "");
}

/* An --auth-file's name, its links followed one by one into real: each
 * link root's or ours, in a folder only root or we can change (sticky is
 * enough, as the link's owner is checked), so that nobody else can point
 * any hop of the way elsewhere. A Kubernetes secret is two such links. */
static int auth_file_follow(const char *path, char *real, char *why, size_t whylen)
{
	static const struct safedir auth_folder = { "its folder", "--auth-file", true, true };
	char cur[PATH_MAX], target[PATH_MAX], dir[PATH_MAX], sub[600];
	struct stat st;
	int ret;

	if (snprintf(cur, sizeof(cur), "%s", path) >= (int)sizeof(cur))
		return WHY("--auth-file: path too long"), -ENAMETOOLONG;
	for (int hop = 0; hop < 40; hop++) {
		if ((ret = safedir_check_folder_of(&auth_folder, cur, sub, sizeof(sub))))
			return strcmp(cur, path) ? WHY("--auth-file %s: through %s: %s", path, cur, sub) :
						   WHY("--auth-file %s: %s", path, sub), ret;
		if (lstat(cur, &st))
			return WHY("--auth-file %s: %s", path, strerror(errno)), -errno;
		if (!S_ISLNK(st.st_mode))
			return snprintf(real, PATH_MAX, "%s", cur), 0;
		if (st.st_uid != geteuid() && st.st_uid != 0)
			return WHY("--auth-file %s: the symbolic link %s is another user's (uid %u), who "
				   "could point it at any file of root's: give the file itself", path, cur,
				   (unsigned)st.st_uid), -EPERM;
		ssize_t n = readlink(cur, target, sizeof(target) - 1);
		if (n < 0)
			return WHY("--auth-file %s: %s: %s", path, cur, strerror(errno)), -errno;
		target[n] = 0;
		if (path_folder(cur, dir, sizeof(dir)) ||
		    snprintf(cur, sizeof(cur), "%s%s%s", target[0] == '/' ? "" : dir,
			     target[0] == '/' ? "" : "/", target) >= (int)sizeof(cur))
			return WHY("--auth-file %s: path too long", path), -ENAMETOOLONG;
	}
	return WHY("--auth-file %s: too many symbolic links", path), -ELOOP;
}

/* The first line of an --auth-file into line (HTTP_MAX_AUTH_LEN + 2).
 * The file is the operator's (a link is followed: a Kubernetes secret is
 * one), but root reads it again at every recovery: it must be a regular
 * file that only its owner, ours or root, may change, reached through
 * folders and links only root or we can change (else another user could
 * point the name at a file of root's, whose first line would be sent to
 * the server). */
static int read_auth_file(const char *path, char *line, char *why, size_t whylen)
{
	char real[PATH_MAX];
	int fd, ret = auth_file_follow(path, real, why, whylen);
	struct stat st;
	ssize_t n = 0;

	if (ret)
		return ret;
	fd = open(real, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY | O_NOFOLLOW);
	if (fd < 0 || fstat(fd, &st))
		ret = -errno;
	else if (!S_ISREG(st.st_mode))
		ret = -EINVAL;
	else if ((st.st_uid != geteuid() && st.st_uid != 0) || (st.st_mode & (S_IWGRP | S_IWOTH)))
		ret = -EPERM;
	else if (st.st_nlink != 1)   /* a name another user linked to a file of root's */
		ret = -EMLINK;
	else if ((n = pread(fd, line, HTTP_MAX_AUTH_LEN + 1, 0)) < 0)
		ret = -errno;
	if (fd >= 0)
		close(fd);
	if (ret == -EINVAL)
		WHY("--auth-file %s: not a regular file", path);
	else if (ret == -EMLINK)
		WHY("--auth-file %s: the file has other names (hard links): give it one", path);
	else if (ret == -EPERM)
		WHY("--auth-file %s: others than its owner may change it, or its owner is neither "
		    "root nor this user: chmod go-w it and give it to root or this user", path);
	else if (ret)
		WHY("--auth-file %s: %s", path, strerror(-ret));
	if (ret)
		return ret;
	line[n] = 0;
	if (strcspn(line, "\r\n") > HTTP_MAX_AUTH_LEN)
		return WHY("--auth-file %s: its first line is longer than %d bytes", path,
			   HTTP_MAX_AUTH_LEN), -E2BIG;
	line[strcspn(line, "\r\n")] = 0;
	return 0;
}

int http_opts_init(struct http_opts *o, const char *auth_file, char *why, size_t whylen)
{
	static char header[HTTP_MAX_AUTH_LEN + 32];
	const char *value = getenv("UBLK_HTTP_AUTH");
	static char line[HTTP_MAX_AUTH_LEN + 2];
	int ret;

	memset(o, 0, sizeof(*o));
	o->connect_timeout_ms = 10000;
	o->timeout_ms = 60000;
	o->retries = 3;
	if (auth_file) {
		if ((ret = read_auth_file(auth_file, line, why, whylen)))
			return ret;
		value = line;
	}
	if (value && *value) {
		const char *from = auth_file ? auth_file : "UBLK_HTTP_AUTH";
		/* a control byte would let the value add headers of its own */
		for (const char *p = value; *p; p++)
			if (((unsigned char)*p < 0x20 && *p != '\t') || *p == 0x7f) {
				WHY("%s: the credentials hold a control character", from);
				return -EINVAL;
			}
		if (strlen(value) > HTTP_MAX_AUTH_LEN)
			return WHY("%s: longer than %d bytes", from, HTTP_MAX_AUTH_LEN), -E2BIG;
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

/* Forget all of a response but where its body goes, and what it expects. */
static void transfer_reset(struct transfer *t)
{
	struct transfer sink = { .buf = t->buf, .fd = t->fd, .cap = t->cap, .src = t->src };
	*t = sink;
}

static const char *validator_of(const struct transfer *t)
{
	return t->etag[0] ? t->etag : t->modified;
}

static bool other_version(const struct http_source *s, const struct transfer *t)
{
	return strcmp(validator_of(t), s->validator) || t->total != s->size;
}

/* Whether t's answer is of another version than s: -ESTALE, said in why. */
static int changed(const struct http_source *s, const struct transfer *t, char *why, size_t whylen)
{
	char logurl[512];

	if (!other_version(s, t))
		return 0;
	http_url_for_log(s->url, logurl, sizeof(logurl));
	WHY("%s changed on the server (validator '%s', was '%s'; size %llu, was %llu): refusing "
	    "to mix versions", logurl, validator_of(t), s->validator, (unsigned long long)t->total,
	    (unsigned long long)s->size);
	return -ESTALE;
}

static size_t on_body(char *data, size_t size, size_t n, void *arg)
{
	struct transfer *t = arg;
	size_t len = size * n;

	/* a body that cannot be what we asked for: stop it now, not at the deadline */
	if (t->status == 206 && !t->got && (t->bad || (t->n_length && t->length != t->cap)))
		return 0;
	/* nor one of another version (a whole chunk fetched to be thrown away) */
	if (t->status == 206 && !t->got && t->src && t->n_range && other_version(t->src, t)) {
		t->stale = true;
		return 0;
	}
	if (t->status != 206) {
		/* an error page or a redirect's body: read and dropped, within reason */
		t->discarded += len;
		return t->discarded > HTTP_MAX_DISCARD ? 0 : len;
	}
	if (len > t->cap - t->got) {
		t->overflow = true;
		return 0;   /* aborts the transfer */
	}
	if (t->buf) {
		memcpy(t->buf + t->got, data, len);
	} else {
		/* straight to the file: no copy through a buffer of our own */
		for (size_t done = 0; done < len;) {
			ssize_t w = pwrite(t->fd, data + done, len - done, (off_t)(t->got + done));
			if (w < 0 && errno == EINTR)
				continue;
			if (w <= 0) {
				t->fd_err = w < 0 ? -errno : -EIO;
				return 0;   /* aborts the transfer */
			}
			done += (size_t)w;
		}
	}
	t->got += len;
	return len;
}

/* libcurl's progress callback: non-zero aborts the transfer. */
static int on_progress(void *arg, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal,
		       curl_off_t ulnow)
{
	const struct http_conn *c = arg;
	(void)dltotal, (void)dlnow, (void)ultotal, (void)ulnow;
	return atomic_load(c->cancel);
}

/* The value of header line [line, line+len) if it is name, else NULL. */
static const char *header_is(const char *line, size_t len, const char *name, size_t *vlen)
{
	size_t n = strlen(name);
	if (len <= n || strncasecmp(line, name, n) || line[n] != ':')
		return NULL;
	*vlen = len - n - 1;
	return line + n + 1;
}

static size_t on_header(char *data, size_t size, size_t n, void *arg)
{
	struct transfer *t = arg;
	size_t len = size * n, vlen;
	const char *v;

	/* a new response (100 continue) starts a new set of headers */
	if (len > 5 && !strncmp(data, "HTTP/", 5)) {
		const char *sp = memchr(data, ' ', len);
		uint64_t status = 0;
		transfer_reset(t);
		if (!sp || (size_t)(data + len - sp) < 4 || parse_dec(sp + 1, 3, 999, &status))
			t->bad = "status line";
		t->status = (long)status;
		return len;
	}
	if (data[0] == '\r' || data[0] == '\n') {
		t->head_done = true;
		return len;
	}
	if ((v = header_is(data, len, "Content-Range", &vlen))) {
		if (t->n_range++ || http_parse_content_range(v, vlen, &t->first, &t->last, &t->total))
			t->bad = t->bad ? t->bad : "Content-Range";
	} else if ((v = header_is(data, len, "Content-Length", &vlen))) {
		if (t->n_length++ || http_parse_content_length(v, vlen, &t->length))
			t->bad = t->bad ? t->bad : "Content-Length";
	} else if ((v = header_is(data, len, "ETag", &vlen))) {
		if (t->n_etag++ || http_parse_etag(v, vlen, t->etag, sizeof(t->etag)))
			t->bad = t->bad ? t->bad : "ETag";
	} else if ((v = header_is(data, len, "Last-Modified", &vlen))) {
		if (t->n_modified++ || parse_printable(v, vlen, t->modified, sizeof(t->modified)))
			t->bad = t->bad ? t->bad : "Last-Modified";
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
	if (!c || !(c->multi = curl.multi_init()) || !(c->share = curl.share_init()))
		goto fail;
	CURLSHcode tls = curl.share_setopt(c->share, CURLSHOPT_SHARE, CURL_LOCK_DATA_SSL_SESSION);
	if (curl.share_setopt(c->share, CURLSHOPT_SHARE, CURL_LOCK_DATA_DNS) != CURLSHE_OK ||
	    (tls != CURLSHE_OK && tls != CURLSHE_NOT_BUILT_IN))   /* a libcurl without TLS */
		goto fail;
	return c;
fail:
	http_conn_free(c);
	return NULL;
}

unsigned long http_conn_connects(const struct http_conn *c)
{
	return c->connects;
}

void http_conn_cancel_on(struct http_conn *c, const atomic_bool *flag)
{
	c->cancel = flag;
}

void http_conn_free(struct http_conn *c)
{
	if (!c)
		return;
	if (c->multi)
		curl.multi_cleanup(c->multi);
	if (c->share)
		curl.share_cleanup(c->share);
	free(c);
}

/* curl_easy_perform in c's multi handle: its connections outlive h. The
 * transfer's own timeouts bound the loop; the poll wakes for them. */
static CURLcode perform(struct http_conn *c, CURL *h)
{
	CURLcode rc = CURLE_RECV_ERROR;    /* the multi handle failed: no result */
	CURLMsg *m;
	int running = 1, left;

	if (curl.multi_add_handle(c->multi, h) != CURLM_OK)
		return CURLE_OUT_OF_MEMORY;
	while (running) {
		if (curl.multi_perform(c->multi, &running) != CURLM_OK ||
		    (running && curl.multi_poll(c->multi, NULL, 0, 1000, NULL) != CURLM_OK))
			break;
	}
	while ((m = curl.multi_info_read(c->multi, &left)))
		if (m->msg == CURLMSG_DONE && m->easy_handle == h)
			rc = m->data.result;
	curl.multi_remove_handle(c->multi, h);
	return rc;
}

/* Every option matters (a protocol limit silently dropped by an old
 * libcurl would let a redirect go anywhere): a refused one is an error. */
#define SETOPT(h, opt, val) do { \
	CURLcode e_ = curl.easy_setopt(h, opt, val); \
	if (e_ != CURLE_OK) { \
		WHY("libcurl too old: " #opt " unsupported (%s); libcurl 7.85 or later is needed", \
		    curl.easy_strerror(e_)); \
		ret = -ENOTSUP; \
		goto out; \
	} \
} while (0)

static bool is_redirect(long status)
{
	return status == 301 || status == 302 || status == 303 || status == 307 || status == 308;
}

/* The headers of a 206: exactly the range asked for, or -EIO. */
static int check_206(const struct transfer *t, uint64_t off, uint32_t len, const char *logurl,
		     const char *range, char *why, size_t whylen)
{
	if (t->bad) {
		WHY("%s: range %s: malformed %s header from the server", logurl, range, t->bad);
		return -EIO;
	}
	if (!t->n_range || t->first != off || t->last != off + len - 1) {
		if (t->n_range)
			WHY("%s: range %s: the server sent range %llu-%llu instead", logurl, range,
			    (unsigned long long)t->first, (unsigned long long)t->last);
		else
			WHY("%s: range %s: a 206 answer without Content-Range", logurl, range);
		return -EIO;
	}
	if (t->n_length && t->length != len) {
		WHY("%s: range %s: Content-Length %llu for %u bytes", logurl, range,
		    (unsigned long long)t->length, len);
		return -EIO;
	}
	return 0;
}

/* One try, following up to HTTP_MAX_REDIRECTS redirects, all within
 * timeout_ms. Returns 0, a retryable -EAGAIN / -ETIMEDOUT, or a final
 * -errno. On 0, t holds a 206 answer for exactly [off, off + len). */
static int try_range(struct http_conn *c, const struct http_source *s, uint64_t off, uint32_t len,
		     uint64_t timeout_ms, struct transfer *t, char *why, size_t whylen)
{
	CURL *h = NULL;
	char range[64], errbuf[CURL_ERROR_SIZE], logurl[512], origin[300], here[300];
	const char *url = s->url;
	char *next = NULL;
	struct curl_slist *hdrs = NULL;
	struct url_parts u;
	uint64_t deadline = now_ms() + timeout_ms;
	long status = 0;
	CURLcode rc;
	int ret;

	http_url_for_log(s->url, logurl, sizeof(logurl));
	if ((ret = url_split(s->url, &u))) {
		WHY("%s: not an http(s) URL this tool accepts", logurl);
		return -EINVAL;
	}
	url_origin(&u, origin, sizeof(origin));
	snprintf(range, sizeof(range), "%llu-%llu", (unsigned long long)off,
		 (unsigned long long)(off + len - 1));
	for (unsigned hop = 0;; hop++) {
		uint64_t left = ms_left(deadline);
		bool same_origin;
		char *target = NULL;

		if (!left) {
			WHY("%s: range %s: timed out (following redirects)", logurl, range);
			ret = -ETIMEDOUT;
			goto out;
		}
		url_split(url, &u);   /* checked before it became url */
		url_origin(&u, here, sizeof(here));
		same_origin = !strcmp(here, origin);
		if (h)
			curl.easy_cleanup(h);
		if (!(h = curl.easy_init())) {
			WHY("%s: range %s: cannot start a libcurl transfer", logurl, range);
			ret = -ENOMEM;
			goto out;
		}
		errbuf[0] = 0;
		SETOPT(h, CURLOPT_SHARE, c->share);
		SETOPT(h, CURLOPT_ERRORBUFFER, errbuf);
		SETOPT(h, CURLOPT_URL, url);
		SETOPT(h, CURLOPT_PROTOCOLS_STR, u.https ? "https" : "http");
		SETOPT(h, CURLOPT_FOLLOWLOCATION, 0L);
		SETOPT(h, CURLOPT_REDIR_PROTOCOLS_STR, "https");
		SETOPT(h, CURLOPT_MAXREDIRS, 0L);
		SETOPT(h, CURLOPT_UNRESTRICTED_AUTH, 0L);
		SETOPT(h, CURLOPT_RANGE, range);
		SETOPT(h, CURLOPT_NOSIGNAL, 1L);
		SETOPT(h, CURLOPT_CONNECTTIMEOUT_MS,
		       (long)(s->opts.connect_timeout_ms < left ? s->opts.connect_timeout_ms : left));
		SETOPT(h, CURLOPT_TIMEOUT_MS, (long)left);
		SETOPT(h, CURLOPT_WRITEFUNCTION, on_body);
		SETOPT(h, CURLOPT_WRITEDATA, t);
		SETOPT(h, CURLOPT_HEADERFUNCTION, on_header);
		SETOPT(h, CURLOPT_HEADERDATA, t);
		if (c->cancel) {
			SETOPT(h, CURLOPT_NOPROGRESS, 0L);
			SETOPT(h, CURLOPT_XFERINFOFUNCTION, on_progress);
			SETOPT(h, CURLOPT_XFERINFODATA, c);
		}
		if (s->opts.insecure) {
			SETOPT(h, CURLOPT_SSL_VERIFYPEER, 0L);
			SETOPT(h, CURLOPT_SSL_VERIFYHOST, 0L);
		}
		/* the credentials go to the origin they were given for, only */
		if (s->opts.auth_header && same_origin &&
		    !(hdrs = curl.slist_append(NULL, s->opts.auth_header))) {
			ret = -ENOMEM;
			goto out;
		}
		SETOPT(h, CURLOPT_HTTPHEADER, hdrs);
		transfer_reset(t);
		rc = perform(c, h);
		curl.slist_free_all(hdrs);
		hdrs = NULL;
		long connects = 0;
		if (curl.easy_getinfo(h, CURLINFO_NUM_CONNECTS, &connects) == CURLE_OK && connects > 0)
			c->connects += (unsigned long)connects;
		status = 0;
		if (curl.easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status) != CURLE_OK)
			status = 0;
		if (rc == CURLE_OPERATION_TIMEDOUT) {
			WHY("%s: range %s: %s", logurl, range, errbuf[0] ? errbuf : "timed out");
			ret = -ETIMEDOUT;
			goto out;
		}
		/* wrong headers are the answer, whatever happened to the body */
		if (status == 206 && (t->head_done || rc == CURLE_OK) && (ret = check_206(t, off, len, logurl, range, why, whylen)))
			goto out;
		if (t->stale) {   /* cut short at its first byte: final, never a whole answer */
			ret = changed(s, t, why, whylen) ?: -EIO;
			goto out;
		}
		if (t->fd_err) {   /* the disk's error: trying again would not help */
			WHY("%s: range %s: writing the body: %s", logurl, range, strerror(-t->fd_err));
			ret = t->fd_err;
			goto out;
		}
		if (rc != CURLE_OK && !t->overflow && !(t->status != 206 && t->discarded)) {
			WHY("%s: range %s: %s%s", logurl, range,
			    !status || t->head_done ? "" :
			    rc == CURLE_WEIRD_SERVER_REPLY || rc == CURLE_BAD_FUNCTION_ARGUMENT ?
			    "a malformed header line: " : "the answer broke off in its headers: ",
			    errbuf[0] ? errbuf : curl.easy_strerror(rc));
			/* TLS and URL errors will not pass; connection trouble may */
			ret = rc == CURLE_SSL_CACERT || rc == CURLE_PEER_FAILED_VERIFICATION ||
			      rc == CURLE_URL_MALFORMAT || rc == CURLE_UNSUPPORTED_PROTOCOL ? -EIO : -EAGAIN;
			goto out;
		}
		if (!is_redirect(status))
			break;
		if (curl.easy_getinfo(h, CURLINFO_REDIRECT_URL, &target) != CURLE_OK || !target) {
			WHY("%s: range %s: HTTP %ld without a usable Location", logurl, range, status);
			ret = -EIO;
			goto out;
		}
		char tlog[512];
		http_url_for_log(target, tlog, sizeof(tlog));
		if (hop == HTTP_MAX_REDIRECTS) {
			WHY("%s: range %s: more than %d redirects (last to %s): refused", logurl, range,
			    HTTP_MAX_REDIRECTS, tlog);
			ret = -EIO;
			goto out;
		}
		struct url_parts tu;
		if (url_split(target, &tu) || (!tu.https && !strncasecmp(s->url, "https:", 6))) {
			WHY("%s: range %s: redirect to %s refused: only https, or http when the URL "
			    "is http", logurl, range, !strncasecmp(target, "http", 4) ? tlog : "another scheme");
			ret = -EIO;
			goto out;
		}
		free(next);
		if (!(next = strdup(target))) {
			ret = -ENOMEM;
			goto out;
		}
		url = next;
	}
	if (status >= 500 || status == 429) {
		WHY("%s: range %s: HTTP %ld", logurl, range, status);
		ret = -EAGAIN;
		goto out;
	}
	if (status != 206) {
		WHY("%s: range %s: HTTP %ld%s", logurl, range, status,
		    status == 200 ? " (the server ignores range requests)" :
		    status == 401 || status == 403 ? " (check the credentials)" : "");
		ret = status == 404 ? -ENOENT : status == 401 || status == 403 ? -EACCES : -EIO;
		goto out;
	}
	if (t->overflow || t->got != len) {
		WHY("%s: range %s: got %zu bytes, expected %u", logurl, range, t->got, len);
		ret = -EAGAIN;
		goto out;
	}
	ret = 0;
out:
	curl.slist_free_all(hdrs);
	free(next);
	if (h)
		curl.easy_cleanup(h);
	return ret;
}

static uint64_t transfer_ms(const struct http_opts *o)
{
	return !o->timeout_ms || o->timeout_ms > HTTP_MAX_TIMEOUT_MS ? HTTP_MAX_TIMEOUT_MS : o->timeout_ms;
}

static unsigned retries_of(const struct http_opts *o)
{
	return o->retries < HTTP_MAX_RETRIES ? o->retries : HTTP_MAX_RETRIES;
}

uint64_t http_read_budget_ms(const struct http_opts *o)
{
	return transfer_ms(o) * (retries_of(o) + 1);
}

/* A read given up (http_conn_cancel_on): said, as every failure is. */
static int cancelled(char *why, size_t whylen)
{
	WHY("cancelled: the device is being deleted");
	return -ECANCELED;
}

/* try_range until it works, a final error, or the read's deadline. */
static int fetch(struct http_conn *c, const struct http_source *s, uint64_t off, uint32_t len,
		 struct transfer *t, unsigned *attempts, char *why, size_t whylen)
{
	uint64_t timeout = transfer_ms(&s->opts), backoff = 200, start = now_ms();
	uint64_t deadline = start + http_read_budget_ms(&s->opts);
	unsigned retries = retries_of(&s->opts);
	int ret = -EIO;

	for (unsigned i = 0; i <= retries; i++) {
		if (attempts)
			*attempts = i + 1;
		if (c->cancel && atomic_load(c->cancel))
			return cancelled(why, whylen);
		if (i) {
			uint64_t left = ms_left(deadline);
			if (left <= backoff)
				break;      /* no time for another try */
			for (uint64_t slept = 0; slept < backoff; slept += 50) {
				if (c->cancel && atomic_load(c->cancel))
					return cancelled(why, whylen);
				sleep_ms(backoff - slept < 50 ? backoff - slept : 50);
			}
			backoff = backoff * 2 < HTTP_MAX_BACKOFF_MS ? backoff * 2 : HTTP_MAX_BACKOFF_MS;
		}
		uint64_t left = ms_left(deadline);
		ret = try_range(c, s, off, len, left < timeout ? left : timeout, t, why, whylen);
		if (ret != -EAGAIN && ret != -ETIMEDOUT)
			break;
	}
	return ret == -EAGAIN ? -EIO : ret;
}

static int read_into(struct http_conn *c, const struct http_source *s, uint64_t off, uint32_t len,
		     struct transfer *t, unsigned *attempts, char *why, size_t whylen)
{
	int ret;

	if (attempts)
		*attempts = 0;
	if (!len || off > s->size || len > s->size - off) {
		WHY("read of %u bytes at %llu is outside the image (%llu bytes)", len,
		    (unsigned long long)off, (unsigned long long)s->size);
		return -EINVAL;
	}
	t->src = s;
	ret = fetch(c, s, off, len, t, attempts, why, whylen);
	return ret ? ret : changed(s, t, why, whylen);
}

int http_read(struct http_conn *c, const struct http_source *s, uint64_t off, uint32_t len,
	      void *buf, unsigned *attempts, char *why, size_t whylen)
{
	struct transfer t = { .buf = buf, .fd = -1, .cap = len };
	return read_into(c, s, off, len, &t, attempts, why, whylen);
}

int http_read_to_fd(struct http_conn *c, const struct http_source *s, uint64_t off, uint32_t len,
		    int fd, unsigned *attempts, char *why, size_t whylen)
{
	struct transfer t = { .fd = fd, .cap = len };
	return read_into(c, s, off, len, &t, attempts, why, whylen);
}

int http_source_open(struct http_source *s, const char *url, const struct http_opts *o,
		     char *why, size_t whylen)
{
	struct http_conn *c = NULL;
	struct transfer t;
	struct url_parts u;
	char one, logurl[512];
	int ret;

	memset(s, 0, sizeof(*s));
	http_url_for_log(url, logurl, sizeof(logurl));
	if ((ret = url_split(url, &u))) {
		WHY("%s: %s", logurl, ret == -ENAMETOOLONG ? "URL longer than 8192 bytes" :
		    "not a valid http(s) URL (host[:port], no spaces or control characters)");
		return ret;
	}
	s->opts = *o;
	if (!(s->url = strdup(url)) || !(c = http_conn_new())) {
		WHY("%s: %s", logurl, s->url ? "cannot start libcurl" : strerror(ENOMEM));
		ret = s->url ? -ENOTSUP : -ENOMEM;
		goto out;
	}
	memset(&t, 0, sizeof(t));
	t.buf = &one;
	t.cap = 1;
	if ((ret = fetch(c, s, 0, 1, &t, NULL, why, whylen)))
		goto out;
	s->size = t.total;
	snprintf(s->validator, sizeof(s->validator), "%s", validator_of(&t));
out:
	http_conn_free(c);
	if (ret) {
		free(s->url);
		s->url = NULL;
	}
	return ret;
}

void http_source_close(struct http_source *s)
{
	free(s->url);
	s->url = NULL;
}
