#include "chunkcache.h"
#include "crc32c.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <pthread.h>
#include <time.h>
#include <unistd.h>

static int mkdirs(const char *path)
{
	char tmp[4096];
	snprintf(tmp, sizeof(tmp), "%s", path);
	for (char *p = tmp + 1; *p; p++)
		if (*p == '/') {
			*p = 0;
			if (mkdir(tmp, 0700) && errno != EEXIST)
				return -errno;
			*p = '/';
		}
	return mkdir(tmp, 0700) && errno != EEXIST ? -errno : 0;
}

int chunk_image_open(struct chunk_image *ci, const char *dir, const char *url,
		     const char *validator, uint64_t size, uint32_t chunk_size, uint64_t limit,
		     char *why, size_t whylen)
{
	const char *env = getenv("UBLK_CHUNK_CACHE");
	char key[512];
	int ret;

	memset(ci, 0, sizeof(*ci));
	snprintf(ci->root, sizeof(ci->root), "%s",
		 dir ? dir : env && *env ? env : CHUNK_CACHE_DEFAULT_DIR);
	snprintf(key, sizeof(key), "%s\n%s\n%llu\n%u", url, validator, (unsigned long long)size,
		 chunk_size);
	/* two CRCs with different seeds: a 64-bit name, collisions don't matter
	 * in practice and a wrong hit is caught by nothing else, so keep the
	 * whole key in the folder too */
	uint32_t a = crc32c(0, key, strlen(key)), b = crc32c(0x9e3779b9u, key, strlen(key));
	snprintf(ci->dir, sizeof(ci->dir), "%s/%08x%08x", ci->root, a, b);
	ci->chunk_size = chunk_size;
	ci->limit = limit ? limit : CHUNK_CACHE_DEFAULT_LIMIT;
	ci->touched = calloc((size + chunk_size - 1) / chunk_size / 8 + 1, 1);
	if ((ret = mkdirs(ci->dir))) {
		snprintf(why, whylen, "chunk cache %s: %s", ci->dir, strerror(-ret));
		return ret;
	}
	/* the key file tells a collision from a hit */
	char kpath[4200], have[512] = "";
	snprintf(kpath, sizeof(kpath), "%s/key", ci->dir);
	FILE *f = fopen(kpath, "r");
	if (f) {
		size_t n = fread(have, 1, sizeof(have) - 1, f);
		have[n] = 0;
		fclose(f);
		if (strcmp(have, key)) {
			snprintf(why, whylen, "chunk cache %s belongs to another image (hash collision): "
				 "remove it", ci->dir);
			return -EEXIST;
		}
	} else if ((f = fopen(kpath, "w"))) {
		fputs(key, f);
		fclose(f);
	}
	return 0;
}

static void chunk_path(const struct chunk_image *ci, uint64_t idx, char *buf, size_t len)
{
	snprintf(buf, len, "%s/%llu", ci->dir, (unsigned long long)idx);
}

int chunk_present(const struct chunk_image *ci, uint64_t idx)
{
	char path[4200];
	chunk_path(ci, idx, path, sizeof(path));
	return access(path, F_OK) == 0;
}

int chunk_read(struct chunk_image *ci, uint64_t idx, uint32_t off, uint32_t len, void *buf)
{
	char path[4200];
	int fd, ret = 0;

	chunk_path(ci, idx, path, sizeof(path));
	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOATIME);
	if (fd < 0 && errno == EPERM)
		fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	ssize_t n = pread(fd, buf, len, off);
	if (n != (ssize_t)len)
		ret = n < 0 ? -errno : -ENOENT;   /* a short chunk is as good as none */
	else if (ci->touched && !((__atomic_fetch_or(&ci->touched[idx / 8], (uint8_t)(1u << (idx % 8)),
						     __ATOMIC_RELAXED) >> (idx % 8)) & 1))
		futimens(fd, NULL);   /* recently used: evicted last; once per process */
	close(fd);
	return ret;
}

struct entry {
	char path[4500];
	struct timespec used;
	off_t size;
};

static int cmp_used(const void *a, const void *b)
{
	const struct entry *x = a, *y = b;
	if (x->used.tv_sec != y->used.tv_sec)
		return x->used.tv_sec < y->used.tv_sec ? -1 : 1;
	return x->used.tv_nsec < y->used.tv_nsec ? -1 : x->used.tv_nsec > y->used.tv_nsec;
}

/* Delete least recently used chunks of every image until under 90% of the limit. */
static void evict(struct chunk_image *ci)
{
	struct entry *all = NULL;
	size_t n = 0, cap = 0;
	uint64_t total = 0;
	DIR *root = opendir(ci->root);
	struct dirent *d;

	if (!root)
		return;
	while ((d = readdir(root))) {
		char sub[4100];
		if (d->d_name[0] == '.')
			continue;
		snprintf(sub, sizeof(sub), "%s/%s", ci->root, d->d_name);
		DIR *img = opendir(sub);
		struct dirent *e;
		if (!img)
			continue;
		while ((e = readdir(img))) {
			struct stat st;
			if (e->d_name[0] < '0' || e->d_name[0] > '9')
				continue;
			if (n == cap) {
				cap = cap ? cap * 2 : 256;
				struct entry *grown = realloc(all, cap * sizeof(*all));
				if (!grown)
					break;
				all = grown;
			}
			snprintf(all[n].path, sizeof(all[n].path), "%s/%s", sub, e->d_name);
			if (stat(all[n].path, &st))
				continue;
			all[n].used = st.st_mtim;
			all[n].size = st.st_size;
			total += (uint64_t)st.st_size;
			n++;
		}
		closedir(img);
	}
	closedir(root);
	qsort(all, n, sizeof(*all), cmp_used);
	for (size_t i = 0; i < n && total > ci->limit / 10 * 9; i++)
		if (!unlink(all[i].path))
			total -= (uint64_t)all[i].size;
	free(all);
}

int chunk_store(struct chunk_image *ci, uint64_t idx, const void *data, uint32_t len)
{
	char path[4200], tmp[4300];
	int fd, ret = 0;

	chunk_path(ci, idx, path, sizeof(path));
	snprintf(tmp, sizeof(tmp), "%s.tmp.%d.%lx", path, (int)getpid(), (unsigned long)pthread_self());
	fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (fd < 0)
		return -errno;
	if (write(fd, data, len) != (ssize_t)len)
		ret = errno ? -errno : -ENOSPC;
	close(fd);
	if (!ret && rename(tmp, path))
		ret = -errno;
	if (ret) {
		unlink(tmp);
		return ret;
	}
	/* scan for eviction now and then, not on every store */
	/* several fetch threads store at once */
	if (__atomic_add_fetch(&ci->stored_since_scan, len, __ATOMIC_RELAXED) > ci->limit / 20) {
		__atomic_store_n(&ci->stored_since_scan, 0, __ATOMIC_RELAXED);
		evict(ci);
	}
	return 0;
}

void chunk_image_close(struct chunk_image *ci)
{
	free(ci->touched);
	ci->touched = NULL;
}
