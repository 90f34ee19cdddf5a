/*
 * Whole HTTP responses, as a hostile server sends them (docs/remote.md):
 * libcurl reads them from a real TCP connection and the code under test
 * sees them through its callbacks: status lines (a 100 before the answer),
 * every header it parses, bodies of every length, redirects (the Location,
 * the hop limit, the change of origin), a size or validator that changes
 * between the probe and the read. fuzz_http.c covers the value parsers
 * alone; this harness covers what decides on them.
 *
 * Input: a flags byte, an offset byte, then the responses, one per
 * connection, cut at FZ_SEP: the first answers http_source_open's probe,
 * the next ones the read and its redirects. In a response "@A@" and "@B@"
 * become the address of the harness's two loopback servers (two origins),
 * so a Location can lead to the other origin.
 *
 * Invariants: an opened source has a size within the image limit and a
 * printable validator; a read returns 0, ESTALE, EIO, ETIMEDOUT, ENOENT or
 * EACCES; the credentials (the auth header, a URL's user:password and its
 * query) never reach origin B nor a message, unless the input itself
 * spells them.
 */
#include "image/http.h"
#include "fuzz.h"

#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdbool.h>
#include <sys/socket.h>

#define FZ_MAX_PARTS 10
#define FZ_SECRET "k7Qm2xWsecret"

static struct {
	pthread_mutex_t lock;
	int listen_fd[2];
	char addr[2][32];         /* "127.0.0.1:PORT" */
	struct fz_part parts[FZ_MAX_PARTS];
	int n_parts, next;
	bool secret_to_b;         /* a request to origin B carried the secret */
	char b_request[512];      /* its first bytes, for the report */
} srv = { .lock = PTHREAD_MUTEX_INITIALIZER };

/* "u:" FZ_SECRET in base64: the URL's credentials as libcurl sends them
 * (Authorization: Basic) */
static char basic[64];

static bool has_secret(const void *p, size_t len)
{
	return memmem(p, len, FZ_SECRET, strlen(FZ_SECRET)) ||
	       (basic[0] && memmem(p, len, basic, strlen(basic)));
}

static void base64(const char *in, char *out)
{
	static const char abc[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	size_t n = strlen(in), o = 0;

	for (size_t i = 0; i < n; i += 3) {
		uint32_t v = (uint32_t)(uint8_t)in[i] << 16;
		if (i + 1 < n)
			v |= (uint32_t)(uint8_t)in[i + 1] << 8;
		if (i + 2 < n)
			v |= (uint8_t)in[i + 2];
		out[o++] = abc[v >> 18 & 63];
		out[o++] = abc[v >> 12 & 63];
		out[o++] = i + 1 < n ? abc[v >> 6 & 63] : '=';
		out[o++] = i + 2 < n ? abc[v & 63] : '=';
	}
	out[o] = 0;
}

/* Read the request's head (GET has no body), with a deadline. */
static size_t read_request(int fd, char *buf, size_t cap)
{
	size_t got = 0;
	while (got < cap - 1) {
		struct pollfd p = { .fd = fd, .events = POLLIN };
		if (poll(&p, 1, 2000) <= 0)
			break;
		ssize_t n = recv(fd, buf + got, cap - 1 - got, 0);
		if (n <= 0)
			break;
		got += (size_t)n;
		buf[got] = 0;
		if (strstr(buf, "\r\n\r\n"))
			break;
	}
	buf[got] = 0;
	return got;
}

/* The next response with @A@ and @B@ replaced. */
static void send_response(int fd, struct fz_part part)
{
	size_t cap = part.len * 8 + 1, n = 0;
	char *out = malloc(cap);
	FZ_ASSERT(out, "out of memory");
	for (size_t i = 0; i < part.len;) {
		if (part.len - i >= 3 && part.p[i] == '@' && part.p[i + 2] == '@' &&
		    (part.p[i + 1] == 'A' || part.p[i + 1] == 'B')) {
			const char *a = srv.addr[part.p[i + 1] == 'B'];
			memcpy(out + n, a, strlen(a));
			n += strlen(a);
			i += 3;
		} else {
			out[n++] = (char)part.p[i++];
		}
	}
	for (size_t done = 0; done < n;) {
		ssize_t w = send(fd, out + done, n - done, MSG_NOSIGNAL);
		if (w <= 0)
			break;
		done += (size_t)w;
	}
	free(out);
}

static void *server_main(void *arg)
{
	(void)arg;
	for (;;) {
		struct pollfd p[2] = { { .fd = srv.listen_fd[0], .events = POLLIN },
				       { .fd = srv.listen_fd[1], .events = POLLIN } };
		if (poll(p, 2, -1) <= 0)
			continue;
		for (int which = 0; which < 2; which++) {
			if (!(p[which].revents & POLLIN))
				continue;
			int fd = accept4(srv.listen_fd[which], NULL, NULL, SOCK_CLOEXEC);
			if (fd < 0)
				continue;
			char req[16384];
			size_t len = read_request(fd, req, sizeof(req));
			pthread_mutex_lock(&srv.lock);
			if (which == 1 && has_secret(req, len) && !srv.secret_to_b) {
				srv.secret_to_b = true;
				snprintf(srv.b_request, sizeof(srv.b_request), "%s", req);
			}
			/* a connection that sent no request takes no response */
			if (len && srv.next < srv.n_parts)
				send_response(fd, srv.parts[srv.next++]);
			pthread_mutex_unlock(&srv.lock);
			shutdown(fd, SHUT_WR);
			close(fd);
		}
	}
	return NULL;
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc, (void)argv;
	base64("u:" FZ_SECRET, basic);
	for (int i = 0; i < 2; i++) {
		struct sockaddr_in a = { .sin_family = AF_INET,
					 .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
		socklen_t alen = sizeof(a);
		int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof(a)) || listen(fd, 16) ||
		    getsockname(fd, (struct sockaddr *)&a, &alen))
			FZ_DIE("loopback server: %s", strerror(errno));
		srv.listen_fd[i] = fd;
		snprintf(srv.addr[i], sizeof(srv.addr[i]), "127.0.0.1:%u", ntohs(a.sin_port));
	}
	pthread_t t;
	if (pthread_create(&t, NULL, server_main, NULL))
		FZ_DIE("pthread_create");
	pthread_detach(t);
	return 0;
}

static void check_why(const char *why, size_t cap, bool input_has_secret)
{
	FZ_ASSERT(memchr(why, 0, cap), "message not NUL-terminated");
	FZ_ASSERT(input_has_secret || !has_secret(why, strlen(why)), "credentials in message: %s",
		  why);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static uint8_t body[65536];
	if (size < 2 || size > 16384)
		return -1;
	uint8_t flags = data[0], off_sel = data[1];
	bool input_has_secret = has_secret(data, size);
	char url[256], auth[64], why[512] = "";
	struct http_opts o = { .connect_timeout_ms = 2000, .timeout_ms = 3000, .retries = 0 };
	struct http_source s;
	int ret;

	pthread_mutex_lock(&srv.lock);
	srv.n_parts = fz_split(data + 2, size - 2, srv.parts, FZ_MAX_PARTS);
	srv.next = 0;
	pthread_mutex_unlock(&srv.lock);

	if (flags & 1) {
		snprintf(auth, sizeof(auth), "Authorization: Bearer %s", FZ_SECRET);
		o.auth_header = auth;
	}
	if (flags & 2)
		snprintf(url, sizeof(url), "http://u:%s@%s/img.raw?sig=%s", FZ_SECRET, srv.addr[0],
			 FZ_SECRET);
	else
		snprintf(url, sizeof(url), "http://%s/img.raw", srv.addr[0]);

	ret = http_source_open(&s, url, &o, why, sizeof(why));
	check_why(why, sizeof(why), input_has_secret);
	if (!ret) {
		FZ_ASSERT(s.size >= 1 && s.size <= HTTP_MAX_IMAGE_SIZE, "size %llu",
			  (unsigned long long)s.size);
		FZ_ASSERT(strlen(s.validator) <= HTTP_MAX_VALIDATOR, "validator of %zu bytes",
			  strlen(s.validator));
		for (const char *p = s.validator; *p; p++)
			FZ_ASSERT((unsigned char)*p >= 0x20 && *p != 0x7f, "control byte in validator");

		/* a read inside the image: at off_sel, of up to 64 KiB (flags' top bits) */
		uint64_t off = off_sel % s.size;
		uint32_t len = (uint32_t)(1 + (flags >> 3) * 2048);
		if (len > s.size - off)
			len = (uint32_t)(s.size - off);
		struct http_conn *c = http_conn_new();
		FZ_ASSERT(c, "no libcurl");
		unsigned attempts = 0;
		why[0] = 0;
		if (flags & 4) {
			int fd = fz_memfd("body");
			ret = http_read_to_fd(c, &s, off, len, fd, &attempts, why, sizeof(why));
			FZ_ASSERT(ret || lseek(fd, 0, SEEK_END) == (off_t)len, "file of %lld bytes for %u",
				  (long long)lseek(fd, 0, SEEK_END), len);
			close(fd);
		} else {
			ret = http_read(c, &s, off, len, body, &attempts, why, sizeof(why));
		}
		http_conn_free(c);
		check_why(why, sizeof(why), input_has_secret);
		FZ_ASSERT(attempts == 1, "%u attempts with no retries", attempts);
		FZ_ASSERT(!ret || ret == -ESTALE || ret == -EIO || ret == -ETIMEDOUT || ret == -ENOENT ||
			  ret == -EACCES, "read returned %d (%s)", ret, why);
		if (!ret)
			fz_accepted();
		http_source_close(&s);
	}

	pthread_mutex_lock(&srv.lock);
	FZ_ASSERT(input_has_secret || !srv.secret_to_b, "credentials sent to the other origin:\n%s",
		  srv.b_request);
	srv.secret_to_b = false;
	srv.n_parts = 0;
	pthread_mutex_unlock(&srv.lock);
	return 0;
}
