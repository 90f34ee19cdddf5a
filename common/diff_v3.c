/*
 * Interop with the NBD-based system this toolkit replaces: its "v3"
 * mapping header plus a headerless packed data file (docs/diff-format.md,
 * Interop). Little-endian 64-byte metadata {version=3, block_size, size,
 * generation, build_id[16], base_build_id[16]}, then 40-byte entries
 * {offset, length, build_id[16], build_storage_offset}, all in bytes.
 * Entries of this build's id are data in the packed file, nil ids are
 * zeros, other ids belong to layers below (absent here).
 */
#include "blob.h"
#include "diff.h"

#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define BS 4096u
#define META 64u
#define ENTRY 40u
#define WHY(...) snprintf(why, whylen, __VA_ARGS__)

static void put64(uint8_t *p, uint64_t v) { v = htole64(v); memcpy(p, &v, 8); }
static uint64_t get64(const uint8_t *p) { uint64_t v; memcpy(&v, p, 8); return le64toh(v); }
static const uint8_t nil[16];

static int write_all(int fd, const void *buf, size_t len)
{
	const char *p = buf;
	while (len) {
		ssize_t n = write(fd, p, len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

int diff_v3_write(int data_fd, int header_fd, struct diff_meta *m,
		  const struct diff_extent *ext, size_t n, diff_read_fn read_blocks,
		  diff_progress_fn progress, void *ctx, char *why, size_t whylen)
{
	size_t hlen = META + n * ENTRY;
	uint8_t *h = calloc(1, hlen), *buf = malloc(256 * BS);
	uint64_t stored = 0;
	int ret = 0;

	if (!h || !buf) {
		ret = -ENOMEM;
		WHY("out of memory");
		goto out;
	}
	m->data_blocks = m->zero_blocks = 0;
	m->n_extents = n;
	for (size_t i = 0; i < n; i++)
		*(ext[i].kind == DIFF_DATA ? &m->data_blocks : &m->zero_blocks) += ext[i].count;
	put64(h, 3);
	put64(h + 8, BS);
	put64(h + 16, m->dev_size);
	put64(h + 24, m->generation);
	memcpy(h + 32, m->id, 16);
	memcpy(h + 48, m->parent, 16);
	for (size_t i = 0; i < n && !ret; i++) {
		uint8_t *e = h + META + i * ENTRY;
		put64(e, ext[i].start * BS);
		put64(e + 8, (uint64_t)ext[i].count * BS);
		if (ext[i].kind != DIFF_DATA)
			continue;
		memcpy(e + 16, m->id, 16);
		put64(e + 32, stored * BS);
		for (uint32_t k = 0; k < ext[i].count && !ret;) {
			uint32_t take = ext[i].count - k < 256 ? ext[i].count - k : 256;
			if ((ret = read_blocks(ctx, ext[i].start + k, take, buf)))
				WHY("reading block %llu: %s", (unsigned long long)(ext[i].start + k),
				    strerror(-ret));
			else if ((ret = write_all(data_fd, buf, (size_t)take * BS)))
				WHY("writing data: %s", strerror(-ret));
			k += take;
			stored += take;
			if (progress)
				progress(ctx, stored, m->data_blocks);
		}
	}
	if (!ret && (ret = write_all(header_fd, h, hlen)))
		WHY("writing header: %s", strerror(-ret));
out:
	free(h);
	free(buf);
	return ret;
}

static int cmp_start(const void *a, const void *b)
{
	const struct diff_extent *x = a, *y = b;
	return x->start < y->start ? -1 : x->start > y->start;
}

int diff_v3_load(struct diff_file *d, const char *path, const struct layer_http_opts *remote,
		 char *why, size_t whylen)
{
	struct diff_meta *m = &d->meta;
	char data_path[4096];
	uint8_t *h = NULL;
	size_t plen = strlen(path);
	int ret = -EINVAL;

	d->v3 = true;
	if (plen < 8 || strcmp(path + plen - 7, ".header") || plen - 7 >= sizeof(data_path))
		return WHY("a v3 mapping header must be named DATA.header, next to its data file DATA"),
		       -EINVAL;
	memcpy(data_path, path, plen - 7);
	data_path[plen - 7] = 0;
	if ((d->file_size - META) % ENTRY)
		return WHY("v3 header size %llu is not 64 + 40 x entries", (unsigned long long)d->file_size),
		       -EINVAL;
	h = malloc(d->file_size);
	if (!h)
		return WHY("out of memory"), -ENOMEM;
	if (blob_read(d->blob, h, d->file_size, 0)) {
		WHY("short read of the v3 header");
		goto out;
	}
	if (get64(h + 8) != BS) {
		WHY("block size %llu, expected %u", (unsigned long long)get64(h + 8), BS);
		goto out;
	}
	m->dev_size = get64(h + 16);
	m->generation = get64(h + 24);
	memcpy(m->id, h + 32, 16);
	memcpy(m->parent, h + 48, 16);
	m->frame_size = BS;
	if (!m->dev_size || m->dev_size % BS) {
		WHY("size %llu is not a multiple of %u", (unsigned long long)m->dev_size, BS);
		goto out;
	}
	if ((ret = blob_open(data_path, remote, &d->data, why, whylen)))
		goto out;
	uint64_t data_size = blob_size(d->data);
	uint64_t n = (d->file_size - META) / ENTRY;
	d->ext = calloc(n ? n : 1, sizeof(*d->ext));
	d->ext_data = calloc(n ? n : 1, sizeof(*d->ext_data));
	if (!d->ext || !d->ext_data) {
		ret = -ENOMEM;
		WHY("out of memory for %llu entries", (unsigned long long)n);
		goto out;
	}
	for (uint64_t i = 0; i < n; i++) {
		const uint8_t *e = h + META + i * ENTRY;
		uint64_t off = get64(e), len = get64(e + 8), store = get64(e + 32);
		bool own = !memcmp(e + 16, m->id, 16), zero = !memcmp(e + 16, nil, 16);
		if (off % BS || len % BS || !len || len / BS > (1u << 31) || off > m->dev_size ||
		    len > m->dev_size - off || (own && (store % BS || store > data_size ||
							 len > data_size - store))) {
			WHY("entry %llu (offset %llu, length %llu) is invalid or outside the data file",
			    (unsigned long long)i, (unsigned long long)off, (unsigned long long)len);
			goto out;
		}
		if (!own && !zero)
			continue;   /* a layer below has it */
		d->ext[m->n_extents] = (struct diff_extent){ off / BS, (uint32_t)(len / BS),
							     own ? DIFF_DATA : DIFF_ZERO };
		d->ext_data[m->n_extents++] = store / BS;
		*(own ? &m->data_blocks : &m->zero_blocks) += len / BS;
	}
	/* sort extents with their storage offsets, then check for overlaps */
	struct pair { struct diff_extent e; uint64_t data; } *pairs = calloc(m->n_extents + 1, sizeof(*pairs));
	if (!pairs) {
		ret = -ENOMEM;
		goto out;
	}
	for (uint64_t i = 0; i < m->n_extents; i++)
		pairs[i] = (struct pair){ d->ext[i], d->ext_data[i] };
	qsort(pairs, m->n_extents, sizeof(*pairs), cmp_start);
	for (uint64_t i = 0; i < m->n_extents; i++) {
		d->ext[i] = pairs[i].e;
		d->ext_data[i] = pairs[i].data;
		if (i && d->ext[i - 1].start + d->ext[i - 1].count > d->ext[i].start) {
			free(pairs);
			WHY("entries overlap at block %llu", (unsigned long long)d->ext[i].start);
			goto out;
		}
	}
	free(pairs);
	ret = 0;
out:
	free(h);
	return ret;
}
