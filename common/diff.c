/*
 * Diff files; the layout and every rule are in docs/diff-format.md. The
 * writer needs no seek (it can write to a pipe): header and extent table
 * are known before the data, and the frame table is located by the footer.
 */
#include "diff.h"
#include "blob.h"
#include "crc32c.h"

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

static int write_all(int fd, const void *buf, size_t len, uint64_t *pos)
{
	const char *p = buf;
	while (len) {
		ssize_t n = write(fd, p, len);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		p += n;
		len -= (size_t)n;
		*pos += (uint64_t)n;
	}
	return 0;
}

static size_t ext_table_bytes(uint64_t n)
{
	return (size_t)((n * EXT_SIZE + 4 + BS - 1) / BS * BS);
}

#define WHY(...) (snprintf(why, whylen, __VA_ARGS__))

int diff_write(int out, struct diff_meta *m, const struct diff_extent *ext, size_t n,
	       diff_read_fn read_blocks, diff_progress_fn progress, void *ctx,
	       struct diff_write_result *res, char *why, size_t whylen)
{
	uint64_t pos = 0, done = 0, nframes, fi = 0;
	uint8_t hdr[HDR] = { 0 }, foot[FOOTER] = { 0 };
	uint8_t *table = NULL, *frame = NULL, *packed = NULL, *frames_tab = NULL;
	size_t tlen = ext_table_bytes(n), bound = 0;
	ZSTD_CCtx *zc = NULL;
	int ret = 0;

	m->n_extents = n;
	m->data_blocks = m->zero_blocks = 0;
	for (size_t i = 0; i < n; i++)
		*(ext[i].kind == DIFF_DATA ? &m->data_blocks : &m->zero_blocks) += ext[i].count;
	nframes = (m->data_blocks * BS + m->frame_size - 1) / m->frame_size;

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
	frame = malloc(m->frame_size);
	frames_tab = calloc(nframes ? nframes : 1, FRAME_ENT);
	if (m->flags & DIFF_FLAG_ZSTD) {
		bound = ZSTD_compressBound(m->frame_size);
		packed = malloc(bound);
		zc = ZSTD_createCCtx();
	}
	if (!table || !frame || !frames_tab || ((m->flags & DIFF_FLAG_ZSTD) && (!packed || !zc))) {
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

	/* Fill frames from the data extents in order. */
	size_t ei = 0;
	uint32_t in_ext = 0;
	while (done < m->data_blocks) {
		uint32_t want = m->frame_size / BS, got = 0;
		while (got < want && done + got < m->data_blocks) {
			while (ext[ei].kind != DIFF_DATA || in_ext == ext[ei].count) {
				ei++;
				in_ext = 0;
			}
			uint32_t take = ext[ei].count - in_ext;
			if (take > want - got)
				take = want - got;
			ret = read_blocks(ctx, ext[ei].start + in_ext, take, frame + (size_t)got * BS);
			if (ret) {
				WHY("reading block %llu: %s", (unsigned long long)(ext[ei].start + in_ext),
				    strerror(-ret));
				goto out;
			}
			in_ext += take;
			got += take;
		}
		size_t len = (size_t)got * BS, stored = len;
		const void *src = frame;
		if (zc) {
			stored = ZSTD_compressCCtx(zc, packed, bound, frame, len, 3);
			if (ZSTD_isError(stored)) {
				ret = -EIO;
				WHY("zstd: %s", ZSTD_getErrorName(stored));
				goto out;
			}
			src = packed;
		}
		put64(frames_tab + fi * FRAME_ENT, pos);
		put32(frames_tab + fi * FRAME_ENT + 8, (uint32_t)stored);
		put32(frames_tab + fi * FRAME_ENT + 12, crc32c(0, frame, len));
		fi++;
		if ((ret = write_all(out, src, stored, &pos))) {
			WHY("writing data: %s", strerror(-ret));
			goto out;
		}
		done += got;
		if (progress)
			progress(ctx, done, m->data_blocks);
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
	ZSTD_freeCCtx(zc);
	free(table);
	free(frame);
	free(packed);
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

/* The header fields and the extent table. */
static int load_extents(struct diff_file *d, char *why, size_t whylen)
{
	uint8_t hdr[HDR], *table = NULL;
	struct diff_meta *m = &d->meta;
	int ret = -EINVAL;

	if (d->file_size < HDR + BS + FOOTER)
		return WHY("too short to be a diff (%llu bytes)", (unsigned long long)d->file_size), -EINVAL;
	if ((ret = blob_read(d->blob, hdr, HDR, 0)))
		return WHY("reading header: %s", strerror(-ret)), ret;
	if (memcmp(hdr, "UBLKDIFF", 8))
		return WHY("not a ublk-tools diff (bad magic)"), -EINVAL;
	if (get32(hdr + 124) != crc32c(0, hdr, 124))
		return WHY("header checksum mismatch"), -EINVAL;
	if (get32(hdr + 8) != DIFF_VERSION)
		return WHY("format version %u, this build reads %u", get32(hdr + 8), DIFF_VERSION), -EINVAL;
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
	if (!m->frame_size || m->frame_size % BS || m->frame_size > DIFF_MAX_FRAME)
		return WHY("frame size %u is invalid", m->frame_size), -EINVAL;
	if (m->n_extents > (d->file_size - HDR) / EXT_SIZE)
		return WHY("extent count %llu does not fit the file", (unsigned long long)m->n_extents), -EINVAL;

	size_t tlen = ext_table_bytes(m->n_extents);
	table = malloc(tlen);
	d->ext = calloc(m->n_extents ? m->n_extents : 1, sizeof(*d->ext));
	d->ext_data = calloc(m->n_extents ? m->n_extents : 1, sizeof(*d->ext_data));
	if (!table || !d->ext || !d->ext_data) {
		ret = -ENOMEM;
		WHY("out of memory for %llu extents", (unsigned long long)m->n_extents);
		goto out;
	}
	if ((ret = blob_read(d->blob, table, tlen, HDR))) {
		WHY("reading extent table: %s", strerror(-ret));
		goto out;
	}
	ret = -EINVAL;
	if (get32(table + m->n_extents * EXT_SIZE) != crc32c(0, table, m->n_extents * EXT_SIZE)) {
		WHY("extent table checksum mismatch");
		goto out;
	}
	uint64_t blocks = m->dev_size / BS, next = 0, data = 0, zero = 0;
	for (uint64_t i = 0; i < m->n_extents; i++) {
		struct diff_extent *e = &d->ext[i];
		e->start = get64(table + i * EXT_SIZE);
		e->count = get32(table + i * EXT_SIZE + 8);
		e->kind = get32(table + i * EXT_SIZE + 12);
		if (!e->count || e->count > (1u << 31) || e->start < next || e->start > blocks ||
		    e->count > blocks - e->start || (e->kind != DIFF_DATA && e->kind != DIFF_ZERO)) {
			WHY("extent %llu (block %llu, %u blocks, kind %u) is invalid or out of order",
			    (unsigned long long)i, (unsigned long long)e->start, e->count, e->kind);
			goto out;
		}
		next = e->start + e->count;
		d->ext_data[i] = data;
		*(e->kind == DIFF_DATA ? &data : &zero) += e->count;
	}
	if (data != m->data_blocks || zero != m->zero_blocks) {
		WHY("extents hold %llu data and %llu zero blocks, the header says %llu and %llu",
		    (unsigned long long)data, (unsigned long long)zero,
		    (unsigned long long)m->data_blocks, (unsigned long long)m->zero_blocks);
		goto out;
	}
	ret = 0;
out:
	free(table);
	return ret;
}

static int load_frames(struct diff_file *d, char *why, size_t whylen)
{
	const struct diff_meta *m = &d->meta;
	uint8_t foot[FOOTER], *tab = NULL;
	uint64_t data_end = HDR + ext_table_bytes(m->n_extents);
	int ret;

	if ((ret = blob_read(d->blob, foot, FOOTER, d->file_size - FOOTER)))
		return WHY("reading footer: %s", strerror(-ret)), ret;
	if (memcmp(foot, "UBLKDEND", 8) || get32(foot + 60) != crc32c(0, foot, 60))
		return WHY("footer missing or damaged (truncated file?)"), -EINVAL;
	uint64_t tab_off = get64(foot + 8), n = get64(foot + 16);
	if (n != (m->data_blocks * BS + m->frame_size - 1) / m->frame_size)
		return WHY("%llu frames cannot hold %llu data blocks", (unsigned long long)n,
			   (unsigned long long)m->data_blocks), -EINVAL;
	if (tab_off < data_end || tab_off > d->file_size - FOOTER ||
	    (d->file_size - FOOTER - tab_off) != n * FRAME_ENT)
		return WHY("frame table offset %llu is outside the file", (unsigned long long)tab_off), -EINVAL;
	tab = malloc(n * FRAME_ENT + 1);
	d->frames = calloc(n ? n : 1, sizeof(*d->frames));
	if (!tab || !d->frames) {
		free(tab);
		return WHY("out of memory for %llu frames", (unsigned long long)n), -ENOMEM;
	}
	ret = blob_read(d->blob, tab, n * FRAME_ENT, tab_off);
	if (ret) {
		WHY("reading frame table: %s", strerror(-ret));
		goto out;
	}
	ret = -EINVAL;
	if (get32(foot + 24) != crc32c(0, tab, n * FRAME_ENT)) {
		WHY("frame table checksum mismatch");
		goto out;
	}
	d->n_frames = n;
	for (uint64_t i = 0; i < n; i++) {
		struct diff_frame *f = &d->frames[i];
		f->offset = get64(tab + i * FRAME_ENT);
		f->size = get32(tab + i * FRAME_ENT + 8);
		f->crc = get32(tab + i * FRAME_ENT + 12);
		bool raw = !(m->flags & DIFF_FLAG_ZSTD);
		if (f->offset < data_end || f->offset > tab_off || f->size > tab_off - f->offset ||
		    !f->size || (raw && f->size != diff_frame_len(d, i)) ||
		    (!raw && f->size > ZSTD_compressBound(m->frame_size))) {
			WHY("frame %llu (offset %llu, %u bytes) is invalid", (unsigned long long)i,
			    (unsigned long long)f->offset, f->size);
			goto out;
		}
	}
	ret = 0;
out:
	free(tab);
	return ret;
}

int diff_open(const char *path, const struct layer_http_opts *remote, struct diff_file **out,
	      char *why, size_t whylen)
{
	struct diff_file *d = calloc(1, sizeof(*d));
	char sub[700];
	int ret;

	if (!d)
		return -ENOMEM;
	if ((ret = blob_open(path, remote, &d->blob, why, whylen)))
		goto fail;
	d->file_size = blob_size(d->blob);
	uint8_t first[8];
	if (d->file_size >= 64 && blob_read(d->blob, first, 8, 0) == 0 && get64(first) == 3) {
		if ((ret = diff_v3_load(d, path, remote, sub, sizeof(sub)))) {
			WHY("%s: %s", path, sub);
			goto fail;
		}
		*out = d;
		return 0;
	}
	if ((ret = load_extents(d, sub, sizeof(sub))) || (ret = load_frames(d, sub, sizeof(sub)))) {
		WHY("%s: %s", path, sub);
		goto fail;
	}
	*out = d;
	return 0;
fail:
	diff_close(d);
	return ret;
}

uint32_t diff_frame_len(const struct diff_file *d, uint64_t idx)
{
	uint64_t total = d->meta.data_blocks * BS, start = idx * d->meta.frame_size;
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

int diff_read_frame(const struct diff_file *d, uint64_t idx, void *buf, void *scratch)
{
	const struct diff_frame *f = &d->frames[idx];
	uint32_t len = diff_frame_len(d, idx);
	int ret;

	if (!(d->meta.flags & DIFF_FLAG_ZSTD)) {
		ret = blob_read(d->blob, buf, len, f->offset);
	} else {
		ret = blob_read(d->blob, scratch, f->size, f->offset);
		if (!ret) {
			size_t n = ZSTD_decompress(buf, d->meta.frame_size, scratch, f->size);
			if (ZSTD_isError(n) || n != len)
				ret = -EIO;
		}
	}
	if (!ret && crc32c(0, buf, len) != f->crc)
		ret = -EIO;
	return ret;
}
