/*
 * Diff files; the layout and every rule are in docs/diff-format.md. The
 * writer needs no seek (it can write to a pipe): header and extent table
 * are known before the data, and the frame table is located by the footer.
 */
#include "image/diff.h"
#include "image/diff_frames.h"
#include "util/fileio.h"
#include "image/blob.h"
#include "util/crc32c.h"
#include "image/http.h"
#include "util/json.h"
#include "util/log.h"
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
#include <zstd.h>

#define BS 4096u
#define HDR 4096u
#define FOOTER 64u
#define EXT_SIZE 16u
#define FRAME_ENT 16u

static void put32(uint8_t *p, uint32_t v) { v = htole32(v); memcpy(p, &v, 4); }
static void put64(uint8_t *p, uint64_t v) { v = htole64(v); memcpy(p, &v, 8); }
static uint32_t get32(const uint8_t *p) { uint32_t v; memcpy(&v, p, 4); return le32toh(v); }
static uint64_t get64(const uint8_t *p) { uint64_t v; memcpy(&v, p, 8); return le64toh(v); }

void diff_id_hex(const uint8_t id[16], char *buf)
{
	for (int i = 0; i < 16; i++)
		sprintf(buf + 2 * i, "%02x", id[i]);
}

/* write_full, counting the bytes into *pos */
static int write_all(int fd, const void *buf, size_t len, uint64_t *pos)
{
	int ret = write_full(fd, buf, len);
	if (!ret)
		*pos += len;
	return ret;
}

static size_t ext_table_bytes(uint64_t n)
{
	return (size_t)((n * EXT_SIZE + 4 + BS - 1) / BS * BS);
}

#define WHY(...) (snprintf(why, whylen, __VA_ARGS__))

int diff_write(int out, struct diff_meta *m, const struct diff_extent *ext, size_t n,
	       const struct diff_source *src, struct diff_write_result *res, char *why,
	       size_t whylen)
{
	uint64_t pos = 0, done = 0, nframes, fi = 0;
	uint8_t hdr[HDR] = { 0 }, foot[FOOTER] = { 0 };
	uint8_t *table = NULL, *frames_tab = NULL;
	size_t tlen = ext_table_bytes(n);
	struct diff_frames *frames = NULL;
	uint64_t bad = 0;
	int ret = 0;

	m->n_extents = n;
	m->data_blocks = m->zero_blocks = 0;
	for (size_t i = 0; i < n; i++)
		*(ext[i].kind == DIFF_DATA ? &m->data_blocks : &m->zero_blocks) += ext[i].count;
	/* Never write what a reader refuses (ublk_limits.h). */
	if (!m->dev_size || m->dev_size % BS || m->dev_size > UBLK_MAX_IMAGE_SIZE)
		return WHY("device size %llu: a diff holds a non-zero multiple of %u up to %llu bytes",
			   (unsigned long long)m->dev_size, BS, (unsigned long long)UBLK_MAX_IMAGE_SIZE),
		       -EINVAL;
	if (!m->frame_size || m->frame_size % BS || m->frame_size > DIFF_MAX_FRAME)
		return WHY("frame size %u is invalid", m->frame_size), -EINVAL;
	if (m->level < 0 || m->level > DIFF_ZSTD_MAX_LEVEL)
		return WHY("zstd level %d: expected 1 to %d", m->level, DIFF_ZSTD_MAX_LEVEL), -EINVAL;
	if (n > UBLK_MAX_EXTENTS)
		return WHY("%zu extents are more than a diff may hold (%llu): the cache is too "
			   "fragmented to export", n, (unsigned long long)UBLK_MAX_EXTENTS), -EINVAL;
	nframes = (m->data_blocks * BS + m->frame_size - 1) / m->frame_size;
	if (nframes > UBLK_MAX_FRAMES)
		return WHY("%llu frames are more than a diff may hold (%llu): use a larger --frame-size",
			   (unsigned long long)nframes, (unsigned long long)UBLK_MAX_FRAMES), -EINVAL;

	memcpy(hdr, "UBLKDIFF", 8);
	put32(hdr + 8, DIFF_VERSION);
	put32(hdr + 12, BS);
	put64(hdr + 16, m->dev_size);
	put64(hdr + 24, m->generation);
	memcpy(hdr + 32, m->id, 16);
	memcpy(hdr + 48, m->parent, 16);
	put32(hdr + 64, m->flags);
	put32(hdr + 68, m->frame_size);
	put64(hdr + 72, m->n_extents);
	put64(hdr + 80, m->data_blocks);
	put64(hdr + 88, m->zero_blocks);
	put32(hdr + 124, crc32c(0, hdr, 124));

	table = calloc(1, tlen);
	frames_tab = calloc(nframes ? nframes : 1, FRAME_ENT);
	if (!table || !frames_tab) {
		ret = -ENOMEM;
		WHY("out of memory");
		goto out;
	}
	for (size_t i = 0; i < n; i++) {
		put64(table + i * EXT_SIZE, ext[i].start);
		put32(table + i * EXT_SIZE + 8, ext[i].count);
		put32(table + i * EXT_SIZE + 12, ext[i].kind);
	}
	put32(table + n * EXT_SIZE, crc32c(0, table, n * EXT_SIZE));
	if ((ret = write_all(out, hdr, HDR, &pos)) || (ret = write_all(out, table, tlen, &pos))) {
		WHY("writing header: %s", strerror(-ret));
		goto out;
	}

	/* Frames from the data extents in order, read and packed ahead. */
	if ((ret = diff_frames_start(&frames, ext, m->data_blocks, m->frame_size,
				     m->flags & DIFF_FLAG_ZSTD ? m->level ? m->level : DIFF_ZSTD_LEVEL : 0,
				     src))) {
		WHY("out of memory");
		goto out;
	}
	for (struct diff_frame_out f; (ret = diff_frames_next(frames, &f, &bad)) != -ENODATA;) {
		if (ret == -EBADMSG) {
			WHY("compressing the frame at block %llu failed", (unsigned long long)bad);
			ret = -EIO;
			goto out;
		}
		if (ret) {
			WHY("reading block %llu: %s", (unsigned long long)bad, strerror(-ret));
			goto out;
		}
		put64(frames_tab + fi * FRAME_ENT, pos);
		put32(frames_tab + fi * FRAME_ENT + 8, (uint32_t)f.stored);
		put32(frames_tab + fi * FRAME_ENT + 12, f.crc);
		fi++;
		if ((ret = writev_full(out, f.iov, f.iovcnt))) {
			/* written from the source's mapping: a page it could not read back */
			if (ret == -EFAULT)
				WHY("reading frame %llu from the source: %s", (unsigned long long)(fi - 1),
				    strerror(-ret));
			else
				WHY("writing data: %s", strerror(-ret));
			goto out;
		}
		pos += f.stored;
		done += f.blocks;
		if (src->progress)
			src->progress(src->ctx, done, m->data_blocks);
	}
	if ((ret = src->seal ? src->seal(src->ctx) : 0)) {
		WHY("stopped before the frame table: %s", strerror(-ret));
		goto out;
	}
	memcpy(foot, "UBLKDEND", 8);
	put64(foot + 8, pos);
	put64(foot + 16, nframes);
	put32(foot + 24, crc32c(0, frames_tab, nframes * FRAME_ENT));
	put32(foot + 60, crc32c(0, foot, 60));
	if ((ret = write_all(out, frames_tab, nframes * FRAME_ENT, &pos)) ||
	    (ret = write_all(out, foot, FOOTER, &pos))) {
		WHY("writing frame table: %s", strerror(-ret));
		goto out;
	}
	if (res) {
		res->bytes = pos;
		res->frames = nframes;
	}
out:
	diff_frames_stop(frames);
	free(table);
	free(frames_tab);
	return ret;
}

void diff_close(struct diff_file *d)
{
	if (!d)
		return;
	blob_close(d->blob);
	blob_close(d->data);
	free(d->ext);
	free(d->ext_data);
	free(d->frames);
	free(d);
}

int diff_stream_entries(struct blob *b, uint64_t off, uint64_t n, size_t esize,
			diff_entry_fn fn, void *ctx, uint32_t *crc, char *why, size_t whylen)
{
	size_t piece = UBLK_TABLE_PIECE / esize * esize;
	uint64_t len, done = 0, i = 0;
	uint8_t *buf;
	int ret = 0;

	if (__builtin_mul_overflow(n, (uint64_t)esize, &len))
		return WHY("table of %llu entries is too large", (unsigned long long)n), -EINVAL;
	if (!(buf = malloc(piece)))
		return WHY("out of memory"), -ENOMEM;
	*crc = 0;
	while (done < len && !ret) {
		size_t take = len - done < piece ? (size_t)(len - done) : piece;
		if ((ret = blob_read(b, buf, take, off + done))) {
			WHY("reading table at offset %llu: %s", (unsigned long long)(off + done),
			    strerror(-ret));
			break;
		}
		*crc = crc32c(*crc, buf, take);
		for (size_t k = 0; k < take && !ret; k += esize)
			ret = fn(ctx, i++, buf + k, why, whylen);
		done += take;
	}
	free(buf);
	return ret;
}

/* Make room for entry i in d->ext and d->ext_data; the arrays grow with the
 * entries actually read, never to a count the file merely claims. */
int diff_ext_reserve(struct diff_file *d, uint64_t *cap, uint64_t i)
{
	if (i < *cap)
		return 0;
	uint64_t want = *cap ? *cap * 2 : 1024;
	if (want > UBLK_MAX_EXTENTS)
		want = UBLK_MAX_EXTENTS;
	if (i >= want)
		return -EINVAL;
	struct diff_extent *e = realloc(d->ext, want * sizeof(*e));
	if (!e)
		return -ENOMEM;
	d->ext = e;
	uint64_t *x = realloc(d->ext_data, want * sizeof(*x));
	if (!x)
		return -ENOMEM;
	d->ext_data = x;
	*cap = want;
	return 0;
}

struct ext_scan {
	struct diff_file *d;
	uint64_t cap, blocks, next, data, zero;
};

static int ext_entry(void *ctx, uint64_t i, const uint8_t *p, char *why, size_t whylen)
{
	struct ext_scan *s = ctx;
	struct diff_extent e = { get64(p), get32(p + 8), get32(p + 12) };
	const char *bad = NULL;
	int ret;

	if (!e.count || e.count > UBLK_MAX_EXTENT_BLOCKS)
		bad = "its block count must be 1 to 2^31";
	else if (e.kind != DIFF_DATA && e.kind != DIFF_ZERO)
		bad = "unknown kind";
	else if (e.start < s->next)
		bad = "not after the previous extent (unsorted or overlapping)";
	else if (e.start >= s->blocks || e.count > s->blocks - e.start)
		bad = "it goes past the end of the device";
	if (bad)
		return WHY("extent %llu (block %llu, %u blocks, kind %u) is invalid: %s",
			   (unsigned long long)i, (unsigned long long)e.start, e.count, e.kind, bad),
		       -EINVAL;
	if ((ret = diff_ext_reserve(s->d, &s->cap, i)))
		return WHY("out of memory for %llu extents", (unsigned long long)i + 1), ret;
	s->d->ext[i] = e;
	s->d->ext_data[i] = s->data;
	s->next = e.start + e.count;
	*(e.kind == DIFF_DATA ? &s->data : &s->zero) += e.count;
	return 0;
}

/* The header fields and the extent table. */
static int load_extents(struct diff_file *d, char *why, size_t whylen)
{
	uint8_t hdr[HDR], crc_le[4];
	struct diff_meta *m = &d->meta;
	uint64_t tlen, blocks, end;
	uint32_t crc;
	int ret;

	if (d->file_size < HDR + BS + FOOTER)
		return WHY("too short to be a diff (%llu bytes)", (unsigned long long)d->file_size), -EINVAL;
	if ((ret = blob_read(d->blob, hdr, HDR, 0)))
		return WHY("reading header: %s", strerror(-ret)), ret;
	if (memcmp(hdr, "UBLKDIFF", 8))
		return WHY("not a ublk-tools diff (bad magic)"), -EINVAL;
	/* the version before the checksum: a later format may have moved it */
	bool crc_ok = get32(hdr + 124) == crc32c(0, hdr, 124);
	if (get32(hdr + 8) != DIFF_VERSION)
		return WHY("format version %u, this build reads %u%s", get32(hdr + 8), DIFF_VERSION,
			   crc_ok ? "" : " (or a damaged header: its checksum does not match)"), -EINVAL;
	if (!crc_ok)
		return WHY("header checksum mismatch"), -EINVAL;
	if (get32(hdr + 12) != BS)
		return WHY("block size %u, expected %u", get32(hdr + 12), BS), -EINVAL;
	m->dev_size = get64(hdr + 16);
	m->generation = get64(hdr + 24);
	memcpy(m->id, hdr + 32, 16);
	memcpy(m->parent, hdr + 48, 16);
	m->flags = get32(hdr + 64);
	m->frame_size = get32(hdr + 68);
	m->n_extents = get64(hdr + 72);
	m->data_blocks = get64(hdr + 80);
	m->zero_blocks = get64(hdr + 88);
	if (m->flags & ~DIFF_FLAG_ZSTD)
		return WHY("unknown flags 0x%x", m->flags), -EINVAL;
	if (!m->dev_size || m->dev_size % BS)
		return WHY("device size %llu is not a multiple of %u", (unsigned long long)m->dev_size, BS), -EINVAL;
	if (m->dev_size > UBLK_MAX_IMAGE_SIZE)
		return WHY("device size %llu is larger than the supported maximum %llu",
			   (unsigned long long)m->dev_size, (unsigned long long)UBLK_MAX_IMAGE_SIZE), -EINVAL;
	if (!m->frame_size || m->frame_size % BS || m->frame_size > DIFF_MAX_FRAME)
		return WHY("frame size %u is invalid", m->frame_size), -EINVAL;
	blocks = m->dev_size / BS;
	/* Extents do not overlap, so no count can exceed the device's blocks;
	 * each extent has at least one block. */
	if (m->data_blocks > blocks || m->zero_blocks > blocks - m->data_blocks)
		return WHY("%llu data and %llu zero blocks do not fit a %llu-block device",
			   (unsigned long long)m->data_blocks, (unsigned long long)m->zero_blocks,
			   (unsigned long long)blocks), -EINVAL;
	if (m->n_extents > UBLK_MAX_EXTENTS || m->n_extents > m->data_blocks + m->zero_blocks)
		return WHY("extent count %llu is impossible (at most %llu, and one block each)",
			   (unsigned long long)m->n_extents, (unsigned long long)UBLK_MAX_EXTENTS), -EINVAL;
	/* A table cannot be larger than the file that holds it. */
	tlen = ext_table_bytes(m->n_extents);
	if (__builtin_add_overflow(tlen, (uint64_t)HDR + FOOTER, &end) || end > d->file_size)
		return WHY("extent count %llu does not fit the file (%llu bytes)",
			   (unsigned long long)m->n_extents, (unsigned long long)d->file_size), -EINVAL;

	struct ext_scan s = { .d = d, .blocks = blocks };
	if ((ret = diff_stream_entries(d->blob, HDR, m->n_extents, EXT_SIZE, ext_entry, &s, &crc,
				       why, whylen)))
		return ret;
	if ((ret = blob_read(d->blob, crc_le, 4, HDR + m->n_extents * EXT_SIZE)))
		return WHY("reading extent table: %s", strerror(-ret)), ret;
	if (get32(crc_le) != crc)
		return WHY("extent table checksum mismatch"), -EINVAL;
	if (s.data != m->data_blocks || s.zero != m->zero_blocks)
		return WHY("extents hold %llu data and %llu zero blocks, the header says %llu and %llu",
			   (unsigned long long)s.data, (unsigned long long)s.zero,
			   (unsigned long long)m->data_blocks, (unsigned long long)m->zero_blocks), -EINVAL;
	return 0;
}

struct frame_scan {
	struct diff_file *d;
	uint64_t tab_off, next, cap, n;
};

static int frame_entry(void *ctx, uint64_t i, const uint8_t *p, char *why, size_t whylen)
{
	struct frame_scan *s = ctx;
	struct diff_file *d = s->d;
	struct diff_frame f = { get64(p), get32(p + 8), get32(p + 12) };
	bool raw = !(d->meta.flags & DIFF_FLAG_ZSTD);
	const char *bad = NULL;

	if (!f.size)
		bad = "empty";
	else if (f.offset < s->next)
		bad = "not after the previous frame (before the data, or overlapping)";
	else if (f.offset > s->tab_off || f.size > s->tab_off - f.offset)
		bad = "it runs into the frame table or past the end of the file";
	else if (raw && f.size != diff_frame_len(d, i))
		bad = "a raw frame must hold exactly its data";
	else if (!raw && f.size > ZSTD_compressBound(d->meta.frame_size))
		bad = "larger than a compressed frame can be";
	if (bad)
		return WHY("frame %llu (offset %llu, %u bytes) is invalid: %s", (unsigned long long)i,
			   (unsigned long long)f.offset, f.size, bad), -EINVAL;
	if (i >= s->cap) {   /* grow with the entries read, as the extents do */
		uint64_t want = s->cap ? s->cap * 2 : 1024;
		if (want > s->n)
			want = s->n;
		struct diff_frame *grown = realloc(d->frames, want * sizeof(*grown));
		if (!grown)
			return WHY("out of memory for %llu frames", (unsigned long long)want), -ENOMEM;
		d->frames = grown;
		s->cap = want;
	}
	d->frames[i] = f;
	s->next = f.offset + f.size;
	return 0;
}

static int load_frames(struct diff_file *d, char *why, size_t whylen)
{
	const struct diff_meta *m = &d->meta;
	uint8_t foot[FOOTER];
	uint64_t data_end = HDR + ext_table_bytes(m->n_extents), bytes, want, tab_len;
	uint32_t crc;
	int ret;

	if ((ret = blob_read(d->blob, foot, FOOTER, d->file_size - FOOTER)))
		return WHY("reading footer: %s", strerror(-ret)), ret;
	if (memcmp(foot, "UBLKDEND", 8) || get32(foot + 60) != crc32c(0, foot, 60))
		return WHY("footer missing or damaged (truncated file?)"), -EINVAL;
	uint64_t tab_off = get64(foot + 8), n = get64(foot + 16);
	/* data_blocks is at most 2^32 here, so neither step can wrap; checked
	 * anyway, as everywhere sizes from a file meet. */
	if (__builtin_mul_overflow(m->data_blocks, (uint64_t)BS, &bytes) ||
	    __builtin_add_overflow(bytes, (uint64_t)m->frame_size - 1, &want))
		return WHY("%llu data blocks overflow", (unsigned long long)m->data_blocks), -EINVAL;
	want /= m->frame_size;
	if (n != want)
		return WHY("%llu frames cannot hold %llu data blocks", (unsigned long long)n,
			   (unsigned long long)m->data_blocks), -EINVAL;
	if (n > UBLK_MAX_FRAMES)
		return WHY("%llu frames are more than the supported %llu", (unsigned long long)n,
			   (unsigned long long)UBLK_MAX_FRAMES), -EINVAL;
	/* Raw frames hold every data byte (data_end + FOOTER <= file_size,
	 * load_extents checked). */
	if (!(m->flags & DIFF_FLAG_ZSTD) && bytes > d->file_size - data_end - FOOTER)
		return WHY("%llu data blocks do not fit the file (%llu bytes)",
			   (unsigned long long)m->data_blocks, (unsigned long long)d->file_size), -EINVAL;
	tab_len = n * FRAME_ENT;
	if (tab_off < data_end || tab_off > d->file_size - FOOTER ||
	    d->file_size - FOOTER - tab_off != tab_len)
		return WHY("frame table offset %llu is outside the file", (unsigned long long)tab_off), -EINVAL;
	struct frame_scan s = { .d = d, .tab_off = tab_off, .next = data_end, .n = n };
	d->n_frames = n;   /* diff_frame_len needs it while checking */
	ret = diff_stream_entries(d->blob, tab_off, n, FRAME_ENT, frame_entry, &s, &crc, why, whylen);
	if (!ret && get32(foot + 24) != crc) {
		WHY("frame table checksum mismatch");
		ret = -EINVAL;
	}
	if (ret)
		d->n_frames = 0;
	return ret;
}

/* Everything after the blob is open: a v1 diff, or a v3 header whose data
 * blob the caller opens (data_path, or data_fd when data_path is NULL). */
static int diff_load(struct diff_file *d, const char *path, const struct layer_http_opts *remote,
		     int data_fd, char *why, size_t whylen)
{
	uint8_t first[8];
	int ret;

	d->file_size = blob_size(d->blob);
	if (d->file_size >= 64 && blob_read(d->blob, first, 8, 0) == 0 && get64(first) == 3) {
		if (path)
			return diff_v3_load(d, path, remote, why, whylen);
		if (data_fd < 0)
			return WHY("a v3 mapping header needs its data file"), -EINVAL;
		if ((ret = blob_open_fd(data_fd, &d->data, why, whylen)))
			return ret;
		return diff_v3_parse(d, why, whylen);
	}
	if ((ret = load_extents(d, why, whylen)) || (ret = load_frames(d, why, whylen)))
		return ret;
	return 0;
}

int diff_open(const char *path, const struct layer_http_opts *remote, struct diff_file **out,
	      char *why, size_t whylen)
{
	struct diff_file *d = calloc(1, sizeof(*d));
	char sub[700];
	int ret;

	if (!d)
		return -ENOMEM;
	http_name_for_log(path, d->name, sizeof(d->name));   /* a URL may carry credentials */
	if ((ret = blob_open(path, remote, &d->blob, why, whylen)))
		goto fail;
	if ((ret = diff_load(d, path, remote, -1, sub, sizeof(sub)))) {
		WHY("%s: %s", d->name, sub);
		goto fail;
	}
	/* the frames' file: a v3 header is read whole at open */
	if (remote && (ret = blob_track(d->v3 ? d->data : d->blob, remote->access, TRACE_LAYER))) {
		WHY("access trace: %s", strerror(-ret));
		goto fail;
	}
	*out = d;
	return 0;
fail:
	diff_close(d);
	return ret;
}

int diff_open_fd(int fd, int data_fd, struct diff_file **out, char *why, size_t whylen)
{
	struct diff_file *d = calloc(1, sizeof(*d));
	int ret;

	if (!d)
		return -ENOMEM;
	snprintf(d->name, sizeof(d->name), "diff (fd %d)", fd);
	if ((ret = blob_open_fd(fd, &d->blob, why, whylen)) ||
	    (ret = diff_load(d, NULL, NULL, data_fd, why, whylen))) {
		diff_close(d);
		return ret;
	}
	*out = d;
	return 0;
}

uint32_t diff_frame_len(const struct diff_file *d, uint64_t idx)
{
	uint64_t total = d->meta.data_blocks * BS, start;
	if (idx >= d->n_frames || __builtin_mul_overflow(idx, (uint64_t)d->meta.frame_size, &start) ||
	    start >= total)
		return 0;
	uint64_t left = total - start;
	return (uint32_t)(left < d->meta.frame_size ? left : d->meta.frame_size);
}

enum diff_kind diff_lookup(const struct diff_file *d, uint64_t block, uint64_t *run,
			   uint64_t *data_index)
{
	uint64_t lo = 0, hi = d->meta.n_extents;

	/* first extent whose end is past block */
	while (lo < hi) {
		uint64_t mid = lo + (hi - lo) / 2;
		if (d->ext[mid].start + d->ext[mid].count <= block)
			lo = mid + 1;
		else
			hi = mid;
	}
	if (lo == d->meta.n_extents) {
		*run = UINT64_MAX;
		return DIFF_ABSENT;
	}
	const struct diff_extent *e = &d->ext[lo];
	if (block < e->start) {
		*run = e->start - block;
		return DIFF_ABSENT;
	}
	*run = e->start + e->count - block;
	if (e->kind == DIFF_DATA)
		*data_index = d->ext_data[lo] + (block - e->start);
	return (enum diff_kind)e->kind;
}

int diff_read_frame_quiet(const struct diff_file *d, uint64_t idx, void *buf, void *scratch,
			  const char **bad)
{
	*bad = NULL;
	if (idx >= d->n_frames)   /* a v3 pair has none; a caller's index is checked too */
		return -EIO;
	const struct diff_frame *f = &d->frames[idx];
	uint32_t len = diff_frame_len(d, idx);
	int ret;

	if (!(d->meta.flags & DIFF_FLAG_ZSTD)) {
		ret = blob_read(d->blob, buf, len, f->offset);
	} else {
		ret = blob_read(d->blob, scratch, f->size, f->offset);
		/* one frame, exactly its stored size: ZSTD_decompress would take
		 * a second frame, or a skippable one, as the format does not */
		size_t fl = ret ? 0 : ZSTD_findFrameCompressedSize(scratch, f->size);
		if (!ret && (ZSTD_isError(fl) || fl != f->size)) {
			*bad = ZSTD_isError(fl) ? ZSTD_getErrorName(fl) :
			       "not one zstd frame of its stored size";
		} else if (!ret) {
			size_t n = ZSTD_decompress(buf, d->meta.frame_size, scratch, f->size);
			if (ZSTD_isError(n) || n != len)
				*bad = ZSTD_isError(n) ? ZSTD_getErrorName(n) : "decompressed to another size";
		}
	}
	if (!ret && !*bad && crc32c(0, buf, len) != f->crc)
		*bad = "its checksum does not match: the diff is damaged";
	return ret ? ret : *bad ? -EIO : 0;
}

int diff_read_frame(const struct diff_file *d, uint64_t idx, void *buf, void *scratch)
{
	const char *bad;
	int ret = diff_read_frame_quiet(d, idx, buf, scratch, &bad);

	/* every time: each read of it fails, and says why (not a cancel: the
	 * device goes) */
	if (ret && ret != -ECANCELED && idx < d->n_frames)
		log_err("%s: frame %llu (bytes %llu..%llu): %s", d->name, (unsigned long long)idx,
			(unsigned long long)d->frames[idx].offset,
			(unsigned long long)(d->frames[idx].offset + d->frames[idx].size),
			bad ? bad : strerror(-ret));
	return ret;
}

void diff_extents_json(struct json *j, const struct diff_file *d)
{
	json_arr_begin(j, "extent_list");
	for (uint64_t i = 0; i < d->meta.n_extents; i++) {
		json_obj_begin(j, NULL);
		json_u64(j, "start", d->ext[i].start);
		json_u64(j, "count", d->ext[i].count);
		json_str(j, "kind", d->ext[i].kind == DIFF_DATA ? "data" : "zero");
		json_obj_end(j);
	}
	json_arr_end(j);
}
