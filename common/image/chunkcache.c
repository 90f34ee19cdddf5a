#include "image/chunkcache.h"
#include "util/safedir.h"
#include "util/atomic_file.h"
#include "image/http.h"
#include "image/layer.h"
#include "util/sha256.h"
#include "util/log.h"
#include "util/timeutil.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define WHY(...) (why ? snprintf(why, whylen, __VA_ARGS__) : 0)
#define KEY_MAX (HTTP_MAX_URL_LEN + 1024)

/* Create the missing folders of path, 0700; existing ones are checked by
 * the caller (the last) or are not ours to judge (the parents). */
/* A folder only we may change: another user could otherwise plant chunks
 * (bytes of their choice in our devices) or links. */
static int check_dir(int fd, const char *path, char *why, size_t whylen)
{
	struct stat st;

	if (fstat(fd, &st)) {
		int ret = -errno;
		WHY("chunk cache %s: %s", path, strerror(errno));
		return ret;
	}
	if (st.st_uid != geteuid()) {
		WHY("chunk cache %s is owned by uid %u, not by us (uid %u): remove it or use another "
		    "--chunk-cache", path, (unsigned)st.st_uid, (unsigned)geteuid());
		return -EPERM;
	}
	if (st.st_mode & 022) {
		WHY("chunk cache %s is writable by group or others (mode %04o): chmod 700 it",
		    path, (unsigned)(st.st_mode & 07777));
		return -EPERM;
	}
	return 0;
}

static int open_dir(int at, const char *path, const char *shown, char *why, size_t whylen)
{
	int fd = openat(at, path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0) {
		int ret = -errno;
		struct stat st;
		/* O_DIRECTORY says ENOTDIR for a link: tell the two apart */
		if ((errno == ELOOP || errno == ENOTDIR) && !fstatat(at, path, &st, AT_SYMLINK_NOFOLLOW) &&
		    S_ISLNK(st.st_mode))
			ret = -ELOOP;
		WHY("chunk cache %s: %s", shown, ret == -ELOOP ? "is a symlink; refusing to follow it" :
		    strerror(-ret));
		return ret;
	}
	int ret = check_dir(fd, shown, why, whylen);
	if (ret) {
		close(fd);
		return ret;
	}
	return fd;
}

/* Whether query parameter [p, p+len) ("name=value") only signs or
 * authorises a request: presigned URLs of one object differ in these
 * (AWS SigV2/V4, Google, Alibaba OSS, Tencent COS, Azure SAS, CloudFront,
 * Akamai and common CDN tokens). Others may pick the object (?name=,
 * ?versionId=) and belong to its identity. */
static bool signature_param(const char *p, size_t len)
{
	static const char *const names[] = { "awsaccesskeyid", "googleaccessid", "ossaccesskeyid",
		"expires", "signature", "key-pair-id", "policy", "sv", "ss", "srt", "sp", "se", "st",
		"spr", "sig", "sr", "si", "sip", "skoid", "sktid", "skt", "ske", "sks", "skv", "sdd",
		"ses", "q-sign-algorithm", "q-ak", "q-sign-time", "q-key-time", "q-header-list",
		"q-url-param-list", "q-signature", "hdnts", "hdnea", "token", "auth_key" };
	static const char *const prefixes[] = { "x-amz-", "x-goog-", "x-oss-" };
	size_t n = strcspn(p, "=&#");

	n = n < len ? n : len;
	for (size_t i = 0; i < sizeof(prefixes) / sizeof(prefixes[0]); i++)
		if (n > strlen(prefixes[i]) && !strncasecmp(p, prefixes[i], strlen(prefixes[i])))
			return true;
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		if (strlen(names[i]) == n && !strncasecmp(p, names[i], n))
			return true;
	return false;
}

/* SHA-256 (hex) of the parameters of query q ("?a=1&b=2#f") that are not
 * signatures, in order; "" when none is left. */
static void query_identity(const char *q, char hex[2 * SHA256_LEN + 1])
{
	struct sha256 h;
	uint8_t sum[SHA256_LEN];
	bool any = false;

	sha256_init(&h);
	for (const char *p = q + 1; *p && *p != '#';) {
		size_t len = strcspn(p, "&#");
		if (len && !signature_param(p, len)) {
			sha256_update(&h, p, len);
			sha256_update(&h, "&", 1);
			any = true;
		}
		p += len;
		if (*p == '&')
			p++;
	}
	sha256_final(&h, sum);
	hex[0] = 0;
	for (size_t i = 0; any && i < SHA256_LEN; i++)
		snprintf(hex + 2 * i, 3, "%02x", sum[i]);
}

/* The identity of an image version, one "name value" a line. */
static int identity_of(const char *url, const char *validator, uint64_t size, uint32_t chunk_size,
		       char *out, size_t outlen, bool *unshared)
{
	char id[HTTP_MAX_URL_LEN + 300], query[2 * SHA256_LEN + 1] = "", own[40] = "";
	const char *q = strchr(url, '?');
	int ret = http_url_identity(url, id, sizeof(id)), n;
	uint8_t nonce[16];

	if (ret)
		return ret;
	for (const char *p = validator; *p; p++)
		if ((unsigned char)*p < 0x20 || (unsigned char)*p == 0x7f)
			return -EINVAL;
	/* The query may pick the object (?name=) or the version
	 * (?versionId=): it is part of the identity, hashed, so the key file
	 * shows no signature. With a validator, the parameters that only sign
	 * are left out, so presigned URLs of one version share their chunks;
	 * without one, the whole query counts. With neither, nothing tells a
	 * new version of the same size from the old: the chunks are this
	 * opener's alone (a random line). */
	if (q && *validator) {
		query_identity(q, query);
	} else if (q) {
		sha256_hex(q, strcspn(q, "#"), query);
	} else if (!*validator) {
		if (getrandom(nonce, sizeof(nonce), 0) != (ssize_t)sizeof(nonce))
			return -EIO;
		*unshared = true;
		for (size_t i = 0; i < sizeof(nonce); i++)
			snprintf(own + 2 * i, 3, "%02x", nonce[i]);
	}
	n = snprintf(out, outlen, "ublk-tools chunk cache 2\nurl %s\n%s%s%s%s%s%svalidator %s\n"
		     "size %llu\nchunk-size %u\n", id, query[0] ? "query-sha256 " : "", query,
		     query[0] ? "\n" : "", own[0] ? "unshared " : "", own, own[0] ? "\n" : "",
		     validator, (unsigned long long)size, chunk_size);
	return n < 0 || (size_t)n >= outlen ? -ENAMETOOLONG : 0;
}

/* Remove the line of key starting with "\n" NAME (if name and there is one). */
static void drop_line(char *key, const char *name)
{
	char *at = name ? strstr(key, name) : NULL;
	if (at) {
		char *next = strchr(at + 1, '\n');
		memmove(at, next, strlen(next) + 1);
	}
}

/* The key file tells a collision (or a folder someone prepared) from a hit. */
static int check_key(struct chunk_image *ci, const char *key, char *why, size_t whylen)
{
	size_t len = strlen(key);
	char *have = malloc(len + 2);
	struct stat st;
	ssize_t n = 0;
	int fd = -1, ret = 0;

	if (!have)
		return -ENOMEM;
	fd = openat(ci->dirfd, "key", O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0 && errno == ENOENT) {
		/* new folder (or a store that died before its key): ours now */
		ret = atomic_write_file(ci->dirfd, "key", key, len, 0600, 0);
		if (ret)
			WHY("chunk cache %s: writing its key: %s", ci->dir, strerror(-ret));
		goto out;
	}
	if (fd < 0 || fstat(fd, &st) || !S_ISREG(st.st_mode)) {
		ret = fd < 0 && errno != ELOOP ? -errno : -EINVAL;
		WHY("chunk cache %s/key is not a regular file (%s): remove the folder", ci->dir,
		    fd < 0 ? strerror(errno) : "a device, folder or fifo");
		goto out;
	}
	if ((uint64_t)st.st_size == len)
		n = pread(fd, have, len + 1, 0);
	if (n != (ssize_t)len || memcmp(have, key, len)) {
		WHY("chunk cache %s belongs to another image (hash collision or a changed key "
		    "file): remove it", ci->dir);
		ret = -EEXIST;
	}
out:
	if (fd >= 0)
		close(fd);
	free(have);
	return ret;
}

struct chunk_open {
	struct chunk_image *ci; /* whose slot: what chunk_unpin locks */
	uint64_t idx;
	int fd;                 /* -1: a free slot */
	unsigned users;         /* reading from fd or map now: not to be closed */
	uint64_t used;          /* open_tick of the last use */
	const char *map;        /* the chunk's bytes once chunk_map asked, or NULL */
	uint32_t map_len;
	bool stale;             /* stored again since: closed once unused, not taken */
};

/* Chunk files held open by all images of the process, at most a quarter
 * of the soft fd limit when the first image opens: a stack of many remote
 * layers must leave fds for connections, caches and the device. */
static atomic_uint held_files;
static unsigned held_budget;
static pthread_once_t budget_once = PTHREAD_ONCE_INIT;

static void budget_init(void)
{
	struct rlimit r;

	held_budget = 256;
	if (!getrlimit(RLIMIT_NOFILE, &r) && r.rlim_cur != RLIM_INFINITY)
		held_budget = r.rlim_cur / 4 < UINT32_MAX ? (unsigned)(r.rlim_cur / 4) : UINT32_MAX;
}

/* chunk_image_open and chunk_image_open_keyed: the image named by key
 * (a URL's identity_of, or a caller's lines); url for messages, or NULL. */
static int image_open(struct chunk_image *ci, const char *dir, const char *url,
		      const char *validator, const char *key_lines, uint64_t size,
		      uint32_t chunk_size, uint64_t limit, char *why, size_t whylen)
{
	const char *env = getenv("UBLK_CHUNK_CACHE");
	char *key = malloc(KEY_MAX), name[2 * SHA256_LEN + 2];
	int ret;

	memset(ci, 0, sizeof(*ci));
	ci->fds = true;
	ci->rootfd = ci->dirfd = -1;
	if (!key)
		return -ENOMEM;
	pthread_once(&budget_once, budget_init);
	/* without it every hit opens its chunk: slower, not wrong */
	if ((ci->open = calloc(CHUNK_OPEN_FILES, sizeof(*ci->open)))) {
		pthread_mutex_init(&ci->open_lock, NULL);
		for (unsigned i = 0; i < CHUNK_OPEN_FILES; i++)
			ci->open[i].fd = -1;
	}
	snprintf(ci->root, sizeof(ci->root), "%s",
		 dir ? dir : env && *env ? env : CHUNK_CACHE_DEFAULT_DIR);
	if (!size || size > HTTP_MAX_IMAGE_SIZE) {
		WHY("image size %llu: not between 1 byte and the %llu TiB limit",
		    (unsigned long long)size, HTTP_MAX_IMAGE_SIZE >> 40);
		ret = -EFBIG;
		goto out;
	}
	if (chunk_size < CHUNK_CACHE_MIN_CHUNK || chunk_size > CHUNK_CACHE_MAX_CHUNK) {
		WHY("chunk size %u: expected %u to %u", chunk_size, CHUNK_CACHE_MIN_CHUNK,
		    CHUNK_CACHE_MAX_CHUNK);
		ret = -EINVAL;
		goto out;
	}
	if (key_lines) {
		int n = snprintf(key, KEY_MAX, "ublk-tools chunk cache 2\n%ssize %llu\nchunk-size %u\n",
				 key_lines, (unsigned long long)size, chunk_size);
		ret = n < 0 || n >= (int)KEY_MAX ? -ENAMETOOLONG : 0;
	} else {
		ret = identity_of(url, validator, size, chunk_size, key, KEY_MAX, &ci->unshared);
	}
	if (ret) {
		WHY("chunk cache: the image's URL or validator cannot name a cache folder");
		goto out;
	}
	ci->size = size;
	ci->chunk_size = chunk_size;
	ci->nchunks = size / chunk_size + (size % chunk_size != 0);
	ci->limit = limit ? limit : CHUNK_CACHE_DEFAULT_LIMIT;
	/* at most 16 TiB / 4 KiB / 8 = 512 MiB of address space, touched sparsely */
	if (!(ci->touched = calloc(ci->nchunks / 8 + 1, 1))) {
		ret = -ENOMEM;
		goto out;
	}
	name[0] = 'u';
	sha256_hex(key, strlen(key), name + ci->unshared);
	snprintf(ci->dir, sizeof(ci->dir), "%s/%s", ci->root, name);
	static const struct safedir chunk_safedir = { "chunk cache", "--chunk-cache" };
	if ((ret = ci->rootfd = safedir_open(&chunk_safedir, ci->root, true, true, why, whylen)) < 0)
		goto out;
	if (mkdirat(ci->rootfd, name, 0700) && errno != EEXIST) {
		ret = -errno;
		WHY("chunk cache %s: %s", ci->dir, strerror(errno));
		goto out;
	}
	if ((ret = ci->dirfd = open_dir(ci->rootfd, name, ci->dir, why, whylen)) < 0)
		goto out;
	if (ci->unshared) {
		char shown[512];
		flock(ci->dirfd, LOCK_SH);   /* in use: eviction leaves it alone */
		http_url_for_log(url, shown, sizeof(shown));
		log_info("%s: the server sends no ETag or Last-Modified: its chunks are cached for "
			 "this server alone, and a new version of the same size could not be told "
			 "from the old", shown);
	}
	if ((ret = check_key(ci, key, why, whylen)) < 0)
		goto out;
	/* a trace names the image version, not its opener nor its URL's
	 * query (a signature this code does not know must not make every
	 * new token another image): an unshared folder's nonce and, with a
	 * validator, the query are left out (docs/access-trace.md) */
	drop_line(key, ci->unshared ? "\nunshared " : NULL);
	drop_line(key, validator && *validator ? "\nquery-sha256 " : NULL);
	sha256_hex(key, strlen(key), ci->identity);
out:
	free(key);
	if (ret < 0)
		chunk_image_close(ci);
	return ret < 0 ? ret : 0;
}

int chunk_image_open(struct chunk_image *ci, const char *dir, const char *url,
		     const char *validator, uint64_t size, uint32_t chunk_size, uint64_t limit,
		     char *why, size_t whylen)
{
	return image_open(ci, dir, url, validator, NULL, size, chunk_size, limit, why, whylen);
}

int chunk_image_open_keyed(struct chunk_image *ci, const char *dir, const char *key_lines,
			   uint64_t size, uint32_t chunk_size, uint64_t limit, char *why,
			   size_t whylen)
{
	return image_open(ci, dir, NULL, NULL, key_lines, size, chunk_size, limit, why, whylen);
}

/* Length of chunk idx; idx < nchunks. */
uint32_t chunk_image_len(const struct chunk_image *ci, uint64_t idx)
{
	uint64_t left = ci->size - idx * ci->chunk_size;
	return left < ci->chunk_size ? (uint32_t)left : ci->chunk_size;
}

static void chunk_name(uint64_t idx, char *buf, size_t len)
{
	snprintf(buf, len, "%llu", (unsigned long long)idx);
}

int chunk_present(const struct chunk_image *ci, uint64_t idx)
{
	char name[32];
	struct stat st;

	if (ci->dirfd < 0 || idx >= ci->nchunks)
		return 0;
	chunk_name(idx, name, sizeof(name));
	return !fstatat(ci->dirfd, name, &st, AT_SYMLINK_NOFOLLOW) && S_ISREG(st.st_mode) &&
	       (uint64_t)st.st_size == chunk_image_len(ci, idx);
}

/* Open chunk idx and check it: a fd, or -errno (-ENOENT: not there). */
static int open_chunk(struct chunk_image *ci, uint64_t idx)
{
	char name[32];
	struct stat st;
	int fd;

	chunk_name(idx, name, sizeof(name));
	fd = openat(ci->dirfd, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NOATIME);
	if (fd < 0 && errno == EPERM)
		fd = openat(ci->dirfd, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return errno == ELOOP ? -ENOENT : -errno;   /* a link is no chunk: fetch it */
	/* a short, long or special file is as good as none */
	if (fstat(fd, &st) || !S_ISREG(st.st_mode) || (uint64_t)st.st_size != chunk_image_len(ci, idx)) {
		close(fd);
		return -ENOENT;
	}
	return fd;
}

/* Close a held slot's file (and mapping), which no one uses. */
static void slot_close(struct chunk_open *o)
{
	if (o->map)
		munmap((void *)o->map, o->map_len);
	o->map = NULL;
	close(o->fd);
	o->fd = -1;
	o->stale = false;
}

static void unhold(struct chunk_open *o)
{
	slot_close(o);
	atomic_fetch_sub(&held_files, 1);
}

/* The held slot of chunk idx, its user count taken, or NULL. */
static struct chunk_open *held(struct chunk_image *ci, uint64_t idx)
{
	struct chunk_open *o = NULL;

	pthread_mutex_lock(&ci->open_lock);
	for (unsigned i = 0; i < CHUNK_OPEN_FILES && !o; i++)
		if (ci->open[i].fd >= 0 && ci->open[i].idx == idx && !ci->open[i].stale)
			o = &ci->open[i];
	if (o) {
		o->users++;
		o->used = ++ci->open_tick;
	}
	pthread_mutex_unlock(&ci->open_lock);
	return o;
}

/* A free slot first, else the least recently used. */
static bool better_victim(const struct chunk_open *s, const struct chunk_open *than)
{
	if (!than)
		return true;
	if ((s->fd < 0) != (than->fd < 0))
		return s->fd < 0;
	return s->used < than->used;
}

/* Keep fd open as chunk idx's in the least recently used idle slot,
 * its user count taken; NULL when every slot is in use (the caller closes
 * fd), another thread kept the chunk first, or the process holds its
 * budget and this image nothing to replace. */
static struct chunk_open *hold(struct chunk_image *ci, uint64_t idx, int fd)
{
	struct chunk_open *o = NULL;

	bool may_grow = atomic_load(&held_files) < held_budget;
	pthread_mutex_lock(&ci->open_lock);
	for (unsigned i = 0; i < CHUNK_OPEN_FILES; i++) {
		struct chunk_open *s = &ci->open[i];
		if (s->fd >= 0 && s->idx == idx && !s->stale) {
			o = NULL;
			break;
		}
		if (!s->users && (s->fd >= 0 || may_grow) && better_victim(s, o))
			o = s;
	}
	if (o) {
		if (o->fd >= 0)
			slot_close(o);
		else
			atomic_fetch_add(&held_files, 1);
		*o = (struct chunk_open){ .ci = ci, .idx = idx, .fd = fd, .users = 1,
					  .used = ++ci->open_tick };
	}
	pthread_mutex_unlock(&ci->open_lock);
	return o;
}

/* Done reading through o; a chunk found bad is dropped. */
static void release(struct chunk_image *ci, struct chunk_open *o, bool bad)
{
	pthread_mutex_lock(&ci->open_lock);
	o->users--;
	if ((bad || o->stale) && !o->users)
		unhold(o);
	pthread_mutex_unlock(&ci->open_lock);
}

static bool outside(const struct chunk_image *ci, uint64_t idx, uint32_t off, uint32_t len)
{
	return ci->dirfd < 0 || idx >= ci->nchunks || off > chunk_image_len(ci, idx) ||
	       len > chunk_image_len(ci, idx) - off;
}

/* Chunk idx read just now: recently used, so evicted last (once per
 * process). */
static void touch(struct chunk_image *ci, uint64_t idx, int fd)
{
	if (ci->touched && !((__atomic_fetch_or(&ci->touched[idx / 8], (uint8_t)(1u << (idx % 8)),
						__ATOMIC_RELAXED) >> (idx % 8)) & 1))
		futimens(fd, NULL);
}

/* Chunk idx's file: held (*o, its user count taken), else newly opened
 * and held if a slot is free, else open for the caller alone (*o NULL). */
static int take(struct chunk_image *ci, uint64_t idx, struct chunk_open **o)
{
	int fd;

	*o = NULL;
	if (ci->open && (*o = held(ci, idx)))
		return (*o)->fd;
	if ((fd = open_chunk(ci, idx)) >= 0 && ci->open)
		*o = hold(ci, idx, fd);
	return fd;
}

int chunk_read(struct chunk_image *ci, uint64_t idx, uint32_t off, uint32_t len, void *buf)
{
	struct chunk_open *o;
	int fd, ret = 0;

	if (outside(ci, idx, off, len))
		return -EINVAL;
	if ((fd = take(ci, idx, &o)) < 0)
		return fd;
	ssize_t n = pread(fd, buf, len, off);
	if (n != (ssize_t)len)
		ret = n < 0 ? -errno : -ENOENT;
	else
		touch(ci, idx, fd);
	if (o)
		release(ci, o, ret != 0);
	else
		close(fd);
	return ret;
}

int chunk_map(struct chunk_image *ci, uint64_t idx, uint32_t off, uint32_t len, const void **p,
	      struct chunk_open **pin)
{
	struct chunk_open *o;
	int fd;

	if (outside(ci, idx, off, len))
		return -EINVAL;
	if ((fd = take(ci, idx, &o)) < 0)
		return fd;
	if (!o) {   /* a mapping lives as long as its held slot */
		close(fd);
		return -EAGAIN;
	}
	pthread_mutex_lock(&ci->open_lock);
	if (!o->map) {
		void *m = mmap(NULL, chunk_image_len(ci, idx), PROT_READ, MAP_SHARED, o->fd, 0);
		o->map = m == MAP_FAILED ? NULL : m;
		o->map_len = chunk_image_len(ci, idx);
	}
	const char *map = o->map;
	pthread_mutex_unlock(&ci->open_lock);
	if (!map) {
		release(ci, o, false);
		return -ENOMEM;
	}
	touch(ci, idx, o->fd);
	*p = map + off;
	*pin = o;
	return 0;
}

void chunk_unpin(struct chunk_open *pin)
{
	release(pin->ci, pin, false);
}

int chunk_map_piece(struct chunk_image *ci, uint64_t idx, uint32_t off, uint32_t len,
		    struct layer *l, struct layer_map *m)
{
	const void *p;
	struct chunk_open *pin;

	if (m->npins == LAYER_MAP_PINS || chunk_map(ci, idx, off, len, &p, &pin))
		return 0;
	m->pins[m->npins++] = (struct layer_pin){ l, pin };
	return layer_map_piece(m, p, len);
}

void chunk_layer_unpin(struct layer *l, void *pin)
{
	(void)l;
	chunk_unpin(pin);
}

struct entry {
	uint32_t img;           /* index in the folder names */
	uint64_t idx;
	struct timespec used;
	uint64_t size;
};

static int cmp_used(const void *a, const void *b)
{
	const struct entry *x = a, *y = b;
	if (x->used.tv_sec != y->used.tv_sec)
		return x->used.tv_sec < y->used.tv_sec ? -1 : 1;
	return x->used.tv_nsec < y->used.tv_nsec ? -1 : x->used.tv_nsec > y->used.tv_nsec;
}

/* A chunk's name: decimal digits only (temporary files start with '.'). */
static bool chunk_number(const char *s, uint64_t *idx)
{
	uint64_t v = 0;
	size_t n = strlen(s);
	if (!n || n > 19)
		return false;
	for (size_t i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return false;
		v = v * 10 + (uint64_t)(s[i] - '0');
	}
	*idx = v;
	return true;
}

/* A store's temporary file that a killed process left (atomic_file names
 * them ".NAME.HEX.tmp"): a live store renames its own within moments. */
static bool stale_temporary(int dfd, const char *name)
{
	size_t n = strlen(name);
	struct stat st;

	return name[0] == '.' && n > 5 && !strcmp(name + n - 4, ".tmp") &&
	       !fstatat(dfd, name, &st, AT_SYMLINK_NOFOLLOW) && S_ISREG(st.st_mode) &&
	       st.st_mtime < time(NULL) - 3600;
}

/* A DIR of fd, which it owns from here (closed if that fails); NULL for
 * fd < 0 too. */
static DIR *dir_of(int fd)
{
	DIR *d = fd >= 0 ? fdopendir(fd) : NULL;

	if (!d && fd >= 0)
		close(fd);
	return d;
}

/* Remove the unshared folder name (fd dfd) of root with what is in it:
 * regular files only (chunks, key, temporaries). */
static void remove_unshared(int rootfd, const char *name, int dfd)
{
	DIR *d = dir_of(dup(dfd));
	struct dirent *e;

	if (!d)
		return;
	while ((e = readdir(d)))
		if (strcmp(e->d_name, ".") && strcmp(e->d_name, ".."))
			unlinkat(dfd, e->d_name, 0);
	closedir(d);
	unlinkat(rootfd, name, AT_REMOVEDIR);
}

/* An unshared folder that no process holds, and not just made (its opener
 * takes the lock right after mkdir): left by a server that died. */
static bool unshared_left(int ifd)
{
	struct stat st;

	return !fstat(ifd, &st) && st.st_mtime < time(NULL) - 60 && !flock(ifd, LOCK_EX | LOCK_NB);
}

/* Delete least recently used chunks of every image until under 90% of the
 * limit, never this image's chunk keep (just stored: its reader is about
 * to look for it; with at least 16 chunks in the limit, those other
 * threads store meanwhile are among the newest, which go last). Only
 * regular files directly in a real folder of the root count; links are
 * never followed and never deleted through (unlinkat removes a name in a
 * folder we opened O_NOFOLLOW, never what it points to). */
/* How long the fetches that meet a full disk wait for the eviction one
 * of them makes. */
#define FULL_LOCK_MS 5000

/* Remove the least recently used chunks of every image in the root, but
 * chunk keep of ours, until they take 90% of the limit; with full set
 * (the disk is: a write failed), until they take half of what they did. */
static void evict(struct chunk_image *ci, uint64_t keep, bool full)
{
	const char *own = strrchr(ci->dir, '/') + 1;
	struct entry *all = NULL;
	char (*imgs)[256] = NULL;
	size_t n = 0, cap = 0, nimg = 0, imgcap = 0;
	uint64_t total = 0;
	DIR *root = dir_of(openat(ci->rootfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC));
	struct dirent *d;

	if (!root)
		return;
	while ((d = readdir(root))) {
		if (d->d_name[0] == '.' || strlen(d->d_name) >= sizeof(*imgs))
			continue;
		int ifd = openat(ci->rootfd, d->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		if (ifd >= 0 && d->d_name[0] == 'u' && unshared_left(ifd)) {
			remove_unshared(ci->rootfd, d->d_name, ifd);
			close(ifd);
			continue;
		}
		DIR *img = dir_of(ifd);
		struct dirent *e;
		if (!img)
			continue;
		if (nimg == imgcap) {
			size_t c = imgcap ? imgcap * 2 : 16;
			void *grown = realloc(imgs, c * sizeof(*imgs));
			if (!grown) {
				closedir(img);
				break;
			}
			imgs = grown;
			imgcap = c;
		}
		snprintf(imgs[nimg], sizeof(*imgs), "%s", d->d_name);
		while ((e = readdir(img))) {
			struct stat st;
			uint64_t idx;
			if (stale_temporary(dirfd(img), e->d_name)) {
				unlinkat(dirfd(img), e->d_name, 0);
				continue;
			}
			if (!chunk_number(e->d_name, &idx) ||
			    fstatat(dirfd(img), e->d_name, &st, AT_SYMLINK_NOFOLLOW) || !S_ISREG(st.st_mode))
				continue;
			if (n == cap) {
				size_t c = cap ? cap * 2 : 256;
				struct entry *grown = realloc(all, c * sizeof(*all));
				if (!grown)
					break;
				all = grown;
				cap = c;
			}
			all[n] = (struct entry){ .img = (uint32_t)nimg, .idx = idx, .used = st.st_mtim,
						 .size = (uint64_t)st.st_size };
			total += (uint64_t)st.st_size;
			n++;
		}
		closedir(img);
		nimg++;
	}
	closedir(root);
	if (n)
		qsort(all, n, sizeof(*all), cmp_used);
	uint64_t target = full ? total / 2 : ci->limit / 10 * 9;
	/* oldest first: what other fetches just stored goes last */
	for (size_t i = 0; i < n && total > target; i++) {
		char name[32];
		if (all[i].idx == keep && !strcmp(imgs[all[i].img], own))
			continue;
		int ifd = openat(ci->rootfd, imgs[all[i].img], O_RDONLY | O_DIRECTORY | O_NOFOLLOW |
				 O_CLOEXEC);
		if (ifd < 0)
			continue;
		chunk_name(all[i].idx, name, sizeof(name));
		/* gone already (another's eviction) counts as gone */
		if (!unlinkat(ifd, name, 0) || errno == ENOENT)
			total -= all[i].size;
		close(ifd);
	}
	free(all);
	free(imgs);
}

/* Whether bytes stored since the last scan passed 5% of the limit, after
 * len more: counted in the root's ".stored" (8 bytes, under its lock) for
 * every process that uses the root, since many short-lived servers that
 * each store a little fill it as one that stores much; in this process
 * alone if that file cannot be used. The count starts over when due. */
static bool scan_due(struct chunk_image *ci, uint32_t len)
{
	uint64_t every = ci->limit / 20, count = 0;
	int fd = openat(ci->rootfd, ".stored", O_RDWR | O_CREAT | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC,
			0600);
	struct stat st;
	bool locked = false, due;

	/* held for a read and a write: a holder that never lets go is no server */
	if (fd >= 0 && !fstat(fd, &st) && S_ISREG(st.st_mode))
		for (int tries = 0; !locked && tries < 100; tries++)
			if (!(locked = !flock(fd, LOCK_EX | LOCK_NB))) {
				if (errno != EWOULDBLOCK)
					break;  /* no locks here (NFS without lockd) */
				sleep_ms(1);
			}
	if (!locked) {
		if (fd >= 0)
			close(fd);
		count = __atomic_add_fetch(&ci->stored_since_scan, len, __ATOMIC_RELAXED);
		if (count <= every)
			return false;
		__atomic_store_n(&ci->stored_since_scan, 0, __ATOMIC_RELAXED);
		return true;
	}
	if (pread(fd, &count, sizeof(count), 0) != (ssize_t)sizeof(count))
		count = 0;
	due = count >= every || every - count < len;
	count = due ? 0 : count + len;
	if (pwrite(fd, &count, sizeof(count), 0) != (ssize_t)sizeof(count))
		due = true;     /* not counted: scan rather than grow unseen */
	close(fd);
	return due;
}

/* Chunk idx of len bytes got its name: scan for eviction now and then,
 * not on every store (several fetch threads store at once). */
static void stored(struct chunk_image *ci, uint64_t idx, uint32_t len)
{
	if (scan_due(ci, len))
		evict(ci, idx, false);
}

/* A chunk that did not fit the disk (its limit is more than the disk
 * has, or others filled it): room is made once, then it is tried again. */
static bool disk_full(struct chunk_image *ci, uint64_t idx, int err, bool *tried)
{
	if ((err != -ENOSPC && err != -EDQUOT) || *tried)
		return false;
	*tried = true;
	/* One eviction at a time in the root: every fetch on the host meets
	 * the full disk at once, and each halving what it saw would empty
	 * the cache. One that waited for another's tries again without. */
	int fd = openat(ci->rootfd, ".full", O_RDWR | O_CREAT | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC, 0600);
	uint64_t deadline = deadline_ms(FULL_LOCK_MS);
	bool waited = false;
	while (fd >= 0 && flock(fd, LOCK_EX | LOCK_NB) && errno == EWOULDBLOCK && ms_left(deadline)) {
		waited = true;
		sleep_ms(10);
	}
	if (waited) {
		if (fd >= 0)
			close(fd);
		return true;
	}
	/* an evicted chunk this process holds open keeps its space */
	if (ci->open) {
		pthread_mutex_lock(&ci->open_lock);
		for (unsigned i = 0; i < CHUNK_OPEN_FILES; i++)
			if (ci->open[i].fd >= 0 && !ci->open[i].users)
				unhold(&ci->open[i]);
		pthread_mutex_unlock(&ci->open_lock);
	}
	evict(ci, idx, true);
	if (fd >= 0)
		close(fd);
	return true;
}

int chunk_store(struct chunk_image *ci, uint64_t idx, const void *data, uint32_t len)
{
	char name[32];
	int ret;

	if (ci->dirfd < 0 || idx >= ci->nchunks || len != chunk_image_len(ci, idx))
		return -EINVAL;
	chunk_name(idx, name, sizeof(name));
	/* a cache: no fsync (as before); a chunk lost in a crash is fetched again */
	bool tried = false;
	do
		ret = atomic_write_file(ci->dirfd, name, data, len, 0600, 0);
	while (ret && disk_full(ci, idx, ret, &tried));
	if (ret)
		return ret;
	/* a chunk stored again (a frame whose kept bytes were damaged): the
	 * file held open is the old one */
	if (ci->open) {
		pthread_mutex_lock(&ci->open_lock);
		for (unsigned i = 0; i < CHUNK_OPEN_FILES; i++) {
			struct chunk_open *o = &ci->open[i];
			if (o->fd >= 0 && o->idx == idx && !(o->stale = o->users != 0))
				unhold(o);
		}
		pthread_mutex_unlock(&ci->open_lock);
	}
	stored(ci, idx, len);
	return 0;
}

int chunk_fetch(struct chunk_image *ci, struct http_conn *c, const struct http_source *src,
		uint64_t idx, unsigned *attempts, char *why, size_t whylen)
{
	struct atomic_file af = ATOMIC_FILE_INIT;
	uint32_t len;
	char name[32];
	int ret;

	if (attempts)
		*attempts = 0;
	if (ci->dirfd < 0 || idx >= ci->nchunks) {
		snprintf(why, whylen, "chunk cache %s: no chunk %llu", ci->dir, (unsigned long long)idx);
		return -EINVAL;
	}
	len = chunk_image_len(ci, idx);
	chunk_name(idx, name, sizeof(name));
	bool tried = false;
	do {
		if ((ret = atomic_file_open(&af, ci->dirfd, name, 0600))) {
			snprintf(why, whylen, "chunk cache %s: creating chunk %llu: %s", ci->dir,
				 (unsigned long long)idx, strerror(-ret));
			return ret;
		}
		/* the body goes to the file as it arrives; no fsync, as in chunk_store */
		ret = http_read_to_fd(c, src, idx * ci->chunk_size, len, af.fd, attempts, why, whylen);
		if (ret)
			atomic_file_abort(&af);
	} while (ret && disk_full(ci, idx, ret, &tried));
	if (ret)
		return ret;
	if ((ret = atomic_file_commit(&af, 0))) {
		snprintf(why, whylen, "chunk cache %s: storing chunk %llu: %s", ci->dir,
			 (unsigned long long)idx, strerror(-ret));
		return ret;
	}
	stored(ci, idx, len);
	return 0;
}

void chunk_image_close(struct chunk_image *ci)
{
	free(ci->touched);
	ci->touched = NULL;
	if (ci->open) {
		for (unsigned i = 0; i < CHUNK_OPEN_FILES; i++)
			if (ci->open[i].fd >= 0)
				unhold(&ci->open[i]);
		pthread_mutex_destroy(&ci->open_lock);
		free(ci->open);
		ci->open = NULL;
	}
	if (ci->fds) {
		if (ci->unshared && ci->dirfd >= 0 && ci->rootfd >= 0)
			remove_unshared(ci->rootfd, strrchr(ci->dir, '/') + 1, ci->dirfd);
		if (ci->dirfd >= 0)
			close(ci->dirfd);
		if (ci->rootfd >= 0)
			close(ci->rootfd);
		ci->dirfd = ci->rootfd = -1;
	}
}
