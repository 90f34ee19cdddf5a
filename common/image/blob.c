#include "image/blob.h"
#include "image/layer.h"
#include "image/access_log.h"
#include "image/chunkcache.h"
#include "image/fetch_pool.h"
#include "util/fileio.h"
#include "image/http.h"
#include "util/log.h"
#include "util/timeutil.h"
#include "image/layer_http.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

struct blob {
	int fd;                 /* a local file, or -1 */
	uint64_t size;
	/* a URL */
	struct http_source src;
	struct chunk_image ci;
	struct http_conn *conn;
	atomic_bool cancel;     /* blob_cancel: transfers end at once */
	uint8_t *chunk;
	pthread_mutex_t lock;
	/* One transfer at a time (lock): a read that waited behind a stalled
	 * server's fetch of its chunk takes that fetch's error, and one that
	 * waited a whole read budget for the lock (and, in a fetch pool, for
	 * a thread before) fails, so a read ends within twice its budget
	 * however many wait (docs/remote.md). */
	uint64_t budget_ms;
	uint64_t failed_idx, failed_ms;   /* the last fetch that failed, when */
	int failed_err;
	struct log_limit overdue_said;
	struct access_log *access;
	int access_img;
};

int blob_open(const char *path, const struct layer_http_opts *remote, struct blob **out,
	      char *why, size_t whylen)
{
	struct blob *b = calloc(1, sizeof(*b));
	struct layer_http_opts defaults = { .chunk_size = 4u << 20 };
	struct stat st;
	int ret;

	if (!b)
		return -ENOMEM;
	b->fd = -1;
	b->access_img = -1;
	pthread_mutex_init(&b->lock, NULL);
	if (!http_is_url(path)) {
		/* O_NONBLOCK: a FIFO planted in place of a diff must not hang
		 * the open; it is refused below. Devices pass with their
		 * st_size (0: "too short"), as they always did. */
		b->fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
		if (b->fd < 0 || fstat(b->fd, &st)) {
			ret = -errno;
			snprintf(why, whylen, "%s: %s", path, strerror(errno));
			goto fail;
		}
		if (S_ISDIR(st.st_mode) || S_ISFIFO(st.st_mode) || S_ISSOCK(st.st_mode)) {
			ret = S_ISDIR(st.st_mode) ? -EISDIR : -EINVAL;
			snprintf(why, whylen, "%s: not a regular file", path);
			goto fail;
		}
		/* reads block (a ring's read of it would be -EAGAIN on a file
		 * system that cannot read without: 9p, FUSE, NFS) */
		if (fcntl(b->fd, F_SETFL, fcntl(b->fd, F_GETFL) & ~O_NONBLOCK)) {
			ret = -errno;
			snprintf(why, whylen, "%s: fcntl: %s", path, strerror(errno));
			goto fail;
		}
		b->size = (uint64_t)st.st_size;
		*out = b;
		return 0;
	}
	if (!remote) {
		if ((ret = http_opts_init(&defaults.http, NULL, why, whylen)))
			goto fail;
		remote = &defaults;
	}
	if ((ret = http_source_open(&b->src, path, &remote->http, why, whylen)))
		goto fail;
	ret = chunk_image_open(&b->ci, remote->cache_dir, path, b->src.validator, b->src.size,
			       remote->chunk_size, remote->cache_limit, why, whylen);
	b->conn = http_conn_new();
	if (b->conn)
		http_conn_cancel_on(b->conn, &b->cancel);
	b->chunk = malloc(remote->chunk_size);
	if (!ret && (!b->conn || !b->chunk))
		ret = -ENOMEM;
	if (ret) {
		http_source_close(&b->src);
		goto fail;
	}
	b->size = b->src.size;
	b->budget_ms = http_read_budget_ms(&b->src.opts);
	*out = b;
	return 0;
fail:
	blob_close(b);
	return ret;
}

int blob_open_fd(int fd, struct blob **out, char *why, size_t whylen)
{
	struct blob *b = calloc(1, sizeof(*b));
	struct stat st;
	int ret;

	if (!b)
		return -ENOMEM;
	b->access_img = -1;
	pthread_mutex_init(&b->lock, NULL);
	b->fd = fcntl(fd, F_DUPFD_CLOEXEC, 0);
	if (b->fd < 0 || fstat(b->fd, &st)) {
		ret = -errno;
		snprintf(why, whylen, "fd %d: %s", fd, strerror(errno));
		goto fail;
	}
	if (!S_ISREG(st.st_mode)) {
		ret = -EINVAL;
		snprintf(why, whylen, "fd %d: not a regular file", fd);
		goto fail;
	}
	b->size = (uint64_t)st.st_size;
	*out = b;
	return 0;
fail:
	blob_close(b);
	return ret;
}

uint64_t blob_budget_ms(const struct blob *b)
{
	return b->budget_ms;
}

uint64_t blob_size(const struct blob *b)
{
	return b->size;
}

int blob_fd(const struct blob *b)
{
	return b->fd;
}

int blob_version(const struct blob *b, char *out, size_t len)
{
	struct stat st;
	int n;

	if (b->fd >= 0) {
		if (fstat(b->fd, &st))
			return -errno;
		n = snprintf(out, len, "file %llu:%llu %lld.%09ld %llu", (unsigned long long)st.st_dev,
			     (unsigned long long)st.st_ino, (long long)st.st_ctim.tv_sec,
			     st.st_ctim.tv_nsec, (unsigned long long)st.st_size);
	} else if (b->ci.unshared || !strrchr(b->ci.dir, '/')) {
		return -ENOENT;
	} else {
		/* the folder's name: the whole chunk cache key, query included */
		n = snprintf(out, len, "remote %s", strrchr(b->ci.dir, '/') + 1);
	}
	return n < 0 || (size_t)n >= len ? -ENAMETOOLONG : 0;
}

/* How long a fetch's failure stands for the reads of its chunk that come
 * after it: those queued behind it (in a fetch pool, on a store's lock)
 * come within moments. */
#define FAILED_FRESH_MS 1000

/* Part of one chunk, fetching the chunk into the cache if it is missing;
 * asked: when the read began waiting (0: now). */
static int read_chunk(struct blob *b, uint64_t idx, uint32_t in, uint32_t n, void *buf,
		      uint64_t asked)
{
	uint32_t len = chunk_image_len(&b->ci, idx);
	char why[600] = "";
	uint64_t now;
	int ret;

	if (!chunk_read(&b->ci, idx, in, n, buf))
		return 0;
	if (!asked)
		asked = now_ms();
	pthread_mutex_lock(&b->lock);
	ret = chunk_read(&b->ci, idx, in, n, buf);   /* fetched meanwhile? */
	if (ret && access_prefetch_wait(b->access, b->access_img, idx))
		ret = chunk_read(&b->ci, idx, in, n, buf);   /* brought by the prefetch? */
	now = now_ms();
	/* failed while we waited, or a moment before (a read queued behind
	 * that fetch, now its turn): its error, said then */
	if (ret && b->failed_ms && b->failed_idx == idx &&
	    (b->failed_ms >= asked || now - b->failed_ms < FAILED_FRESH_MS)) {
		ret = b->failed_err;
	} else if (ret && now - asked > b->budget_ms) {
		ret = -ETIMEDOUT;
		unsigned unsaid;
		if (log_limit_due(&b->overdue_said, b->budget_ms, now, &unsaid)) {
			http_url_for_log(b->src.url, why, sizeof(why));
			log_err("%s: chunk %llu: its read waited %llu ms for its turn (a fetch thread, "
				"the server's other reads), past the %llu ms a read may take "
				"(--http-timeout x tries): it fails "
				"(said once per %llu ms; %u more since it was last said)", why,
				(unsigned long long)idx, (unsigned long long)(now - asked),
				(unsigned long long)b->budget_ms, (unsigned long long)b->budget_ms, unsaid);
		}
	} else if (ret) {
		ret = http_read(b->conn, &b->src, idx * b->ci.chunk_size, len, b->chunk, NULL, why, sizeof(why));
		if (!ret) {
			memcpy(buf, b->chunk + in, n);
			chunk_store(&b->ci, idx, b->chunk, len);   /* best effort: we have the bytes */
		} else if (ret != -ECANCELED) {   /* the device goes: nobody waits */
			log_err("%s", why);
			b->failed_idx = idx;
			b->failed_ms = now_ms();
			b->failed_err = ret;
		}
	}
	pthread_mutex_unlock(&b->lock);
	return ret ? layer_fetch_error(ret) : 0;
}

/* fetch: missing chunks are fetched; else they are -EAGAIN. */
static int read_range(struct blob *b, void *buf, size_t len, uint64_t off, bool fetch)
{
	if (off > b->size || len > b->size - off)
		return -EIO;
	if (b->fd >= 0)
		return pread_exact(b->fd, buf, len, off);
	uint32_t cs = b->ci.chunk_size;
	/* a fetch pool's job: its wait for a thread counts, once */
	uint64_t asked = fetch ? fetch_pool_take_queued_ms() : 0;
	while (len) {
		uint64_t idx = off / cs;
		uint32_t in = (uint32_t)(off % cs), n = cs - in;
		if (n > len)
			n = (uint32_t)len;
		int ret = fetch ? read_chunk(b, idx, in, n, buf, asked) :
			  chunk_read(&b->ci, idx, in, n, buf) ? -EAGAIN : 0;
		if (ret != -EAGAIN)     /* a miss's read comes again, fetching */
			access_note(b->access, b->access_img, idx, false);
		if (ret)
			return ret;
		buf = (char *)buf + n;
		off += n;
		len -= n;
		asked = 0;
	}
	return 0;
}

void blob_note(struct blob *b, uint64_t off, size_t len)
{
	if (b->fd >= 0 || !b->access || !len || off >= b->size)
		return;
	for (uint64_t idx = off / b->ci.chunk_size; idx <= (off + len - 1) / b->ci.chunk_size; idx++)
		access_note(b->access, b->access_img, idx, false);
}

int blob_read(struct blob *b, void *buf, size_t len, uint64_t off)
{
	return read_range(b, buf, len, off, true);
}

int blob_read_cached(struct blob *b, void *buf, size_t len, uint64_t off)
{
	return read_range(b, buf, len, off, false);
}

int blob_track(struct blob *b, struct access_log *a, enum trace_role role)
{
	if (!a || b->fd >= 0)
		return 0;
	int img = access_log_image(a, role, &b->src, &b->ci);
	if (img < 0)
		return img;
	b->access = a;
	b->access_img = img;
	return 0;
}

void blob_cancel(struct blob *b)
{
	if (!b)
		return;
	atomic_store(&b->cancel, true);
	access_log_cancel(b->access);
}

void blob_close(struct blob *b)
{
	if (!b)
		return;
	if (b->fd >= 0)
		close(b->fd);
	if (b->src.url)
		http_source_close(&b->src);
	http_conn_free(b->conn);
	chunk_image_close(&b->ci);
	free(b->chunk);
	pthread_mutex_destroy(&b->lock);
	free(b);
}
