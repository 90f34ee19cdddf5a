/*
 * Interop with the NBD-based system this toolkit replaces: its "v3"
 * mapping header plus a headerless packed data file (docs/diff-format.md,
 * Interop). Little-endian 64-byte metadata {version=3, block_size, size,
 * generation, build_id[16], base_build_id[16]}, then 40-byte entries
 * {offset, length, build_id[16], build_storage_offset}, all in bytes.
 * Entries of this build's id are data in the packed file, nil ids are
 * zeros, other ids belong to layers below (absent here).
 */
#include "image/blob.h"
#include "image/diff.h"
#include "util/fileio.h"
#include "util/ublk_limits.h"
#include "image/layer_http.h"

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

int diff_v3_write(int data_fd, int header_fd, struct diff_meta *m,
		  const struct diff_extent *ext, size_t n, diff_read_fn read_blocks,
		  diff_progress_fn progress, void *ctx, char *why, size_t whylen)
{
	size_t hlen = META + n * ENTRY;
	uint8_t *h = calloc(1, hlen), *buf = malloc(256 * BS);
	uint64_t stored = 0;
	int ret = 0;

	/* Never write what a reader refuses (ublk_limits.h). */
	if (n > UBLK_MAX_EXTENTS || !m->dev_size || m->dev_size % BS ||
	    m->dev_size > UBLK_MAX_IMAGE_SIZE) {
		ret = -EINVAL;
		WHY("%zu ranges over %llu bytes: a v3 header holds at most %llu ranges of a device "
		    "of up to %llu bytes", n, (unsigned long long)m->dev_size,
		    (unsigned long long)UBLK_MAX_EXTENTS, (unsigned long long)UBLK_MAX_IMAGE_SIZE);
		goto out;
	}
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
			else if ((ret = write_full(data_fd, buf, (size_t)take * BS)))
				WHY("writing data: %s", strerror(-ret));
			k += take;
			stored += take;
			if (progress)
				progress(ctx, stored, m->data_blocks);
		}
	}
	if (!ret && (ret = write_full(header_fd, h, hlen)))
		WHY("writing header: %s", strerror(-ret));
out:
	free(h);
	free(buf);
	return ret;
}

struct v3_entry {
	struct diff_extent e;   /* kind DIFF_ABSENT: another build's range */
	uint64_t data;          /* block in the data file */
	uint64_t index;         /* position in the header, for messages */
};

struct v3_scan {
	struct diff_file *d;
	struct v3_entry *v;
	uint64_t cap, data_size;
};

static int v3_entry(void *ctx, uint64_t i, const uint8_t *e, char *why, size_t whylen)
{
	struct v3_scan *s = ctx;
	const struct diff_meta *m = &s->d->meta;
	uint64_t off = get64(e), len = get64(e + 8), store = get64(e + 32);
	bool own = !memcmp(e + 16, m->id, 16), zero = !memcmp(e + 16, nil, 16);
	const char *bad = NULL;

	if (!len)
		bad = "zero length";
	else if (off % BS || len % BS)
		bad = "offset or length not a multiple of 4096";
	else if (len / BS > UBLK_MAX_EXTENT_BLOCKS)
		bad = "longer than 2^31 blocks";
	else if (off >= m->dev_size || len > m->dev_size - off)
		bad = "past the end of the device";
	else if (own && store % BS)
		bad = "data offset not a multiple of 4096";
	else if (own && (store > s->data_size || len > s->data_size - store))
		bad = "past the end of the data file";
	if (bad)
		return WHY("entry %llu (offset %llu, length %llu, data offset %llu) is invalid: %s",
			   (unsigned long long)i, (unsigned long long)off, (unsigned long long)len,
			   (unsigned long long)store, bad), -EINVAL;
	if (i >= s->cap) {
		uint64_t want = s->cap ? s->cap * 2 : 1024;
		struct v3_entry *grown = realloc(s->v, want * sizeof(*grown));
		if (!grown)
			return WHY("out of memory for %llu entries", (unsigned long long)want), -ENOMEM;
		s->v = grown;
		s->cap = want;
	}
	s->v[i] = (struct v3_entry){ { off / BS, (uint32_t)(len / BS),
				       own ? DIFF_DATA : zero ? DIFF_ZERO : DIFF_ABSENT },
				     own ? store / BS : 0, i };
	return 0;
}

static int cmp_start(const void *a, const void *b)
{
	const struct v3_entry *x = a, *y = b;
	return x->e.start < y->e.start ? -1 : x->e.start > y->e.start;
}

int diff_v3_parse(struct diff_file *d, char *why, size_t whylen)
{
	struct diff_meta *m = &d->meta;
	struct v3_scan s = { .d = d };
	uint8_t h[META];
	uint64_t n, cap = 0;
	uint32_t crc;
	int ret;

	d->v3 = true;
	d->file_size = blob_size(d->blob);
	if (d->file_size < META || (d->file_size - META) % ENTRY)
		return WHY("v3 header size %llu is not 64 + 40 x entries", (unsigned long long)d->file_size),
		       -EINVAL;
	n = (d->file_size - META) / ENTRY;
	if (n > UBLK_MAX_EXTENTS)
		return WHY("%llu entries are more than the supported %llu", (unsigned long long)n,
			   (unsigned long long)UBLK_MAX_EXTENTS), -EINVAL;
	if ((ret = blob_read(d->blob, h, META, 0)))
		return WHY("reading the v3 header: %s", strerror(-ret)), ret;
	if (get64(h) != 3)
		return WHY("version %llu, expected 3", (unsigned long long)get64(h)), -EINVAL;
	if (get64(h + 8) != BS)
		return WHY("block size %llu, expected %u", (unsigned long long)get64(h + 8), BS), -EINVAL;
	m->dev_size = get64(h + 16);
	m->generation = get64(h + 24);
	memcpy(m->id, h + 32, 16);
	memcpy(m->parent, h + 48, 16);
	m->frame_size = BS;
	if (!m->dev_size || m->dev_size % BS)
		return WHY("size %llu is not a multiple of %u", (unsigned long long)m->dev_size, BS), -EINVAL;
	if (m->dev_size > UBLK_MAX_IMAGE_SIZE)
		return WHY("size %llu is larger than the supported maximum %llu",
			   (unsigned long long)m->dev_size, (unsigned long long)UBLK_MAX_IMAGE_SIZE), -EINVAL;
	if (!memcmp(m->id, nil, 16))
		return WHY("build id is nil: its data entries could not be told from zero entries"),
		       -EINVAL;
	s.data_size = blob_size(d->data);
	if ((ret = diff_stream_entries(d->blob, META, n, ENTRY, v3_entry, &s, &crc, why, whylen)))
		goto out;
	/* The entries may come in any order; sorted, none may overlap another,
	 * whoever's range it is. */
	if (n)
		qsort(s.v, n, sizeof(*s.v), cmp_start);
	for (uint64_t i = 1; i < n; i++)
		if (s.v[i - 1].e.start + s.v[i - 1].e.count > s.v[i].e.start) {
			WHY("entries %llu and %llu overlap at block %llu",
			    (unsigned long long)s.v[i - 1].index, (unsigned long long)s.v[i].index,
			    (unsigned long long)s.v[i].e.start);
			ret = -EINVAL;
			goto out;
		}
	m->n_extents = m->data_blocks = m->zero_blocks = 0;
	for (uint64_t i = 0; i < n; i++) {
		if (s.v[i].e.kind == DIFF_ABSENT)
			continue;   /* a layer below has it */
		if ((ret = diff_ext_reserve(d, &cap, m->n_extents))) {
			WHY("out of memory for %llu entries", (unsigned long long)n);
			goto out;
		}
		d->ext[m->n_extents] = s.v[i].e;
		d->ext_data[m->n_extents++] = s.v[i].data;
		*(s.v[i].e.kind == DIFF_DATA ? &m->data_blocks : &m->zero_blocks) += s.v[i].e.count;
	}
	ret = 0;
out:
	free(s.v);
	return ret;
}

int diff_v3_load(struct diff_file *d, const char *path, const struct layer_http_opts *remote,
		 char *why, size_t whylen)
{
	char data_path[4096];
	size_t plen = strlen(path);
	int ret;

	d->v3 = true;
	if (plen < 8 || strcmp(path + plen - 7, ".header") || plen - 7 >= sizeof(data_path))
		return WHY("a v3 mapping header must be named DATA.header, next to its data file DATA"),
		       -EINVAL;
	memcpy(data_path, path, plen - 7);
	data_path[plen - 7] = 0;
	if ((ret = blob_open(data_path, remote, &d->data, why, whylen)))
		return ret;
	return diff_v3_parse(d, why, whylen);
}
