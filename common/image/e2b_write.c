/* The write side of E2B builds (docs/e2b.md, Writing a build). The mapping
 * operations follow E2B's header/mapping.go (CreateMapping, MergeMappings,
 * NormalizeMappings) and the metadata its NextGeneration; the layouts are
 * those e2b_header.c reads, which checks every header written here before
 * anything is published. */
#include "image/e2b_write.h"
#include "image/e2b_write_impl.h"
#include "util/fileio.h"
#include "util/sha256.h"
#include "util/ublk_limits.h"

#include <endian.h>
#include <errno.h>
#include <lz4frame.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zstd.h>

#define WHY(...) snprintf(why, whylen, __VA_ARGS__)
#define BLOCK 4096u

typedef unsigned long long ull;

static const uint8_t nil_id[16];

int e2b_diff_mapping(const struct diff_extent *ext, size_t n, uint32_t id,
		     struct e2b_entry **out, size_t *n_out)
{
	struct e2b_entry *m = n ? malloc(n * sizeof(*m)) : NULL;
	uint64_t storage = 0, end = 0;
	size_t k = 0;

	*out = NULL;
	*n_out = 0;
	if (n && !m)
		return -ENOMEM;
	for (size_t i = 0; i < n; i++) {
		const struct diff_extent *x = &ext[i];
		uint32_t to = x->kind == DIFF_DATA ? id : E2B_NIL;
		if ((x->kind != DIFF_DATA && x->kind != DIFF_ZERO) || x->start < end ||
		    x->start > UBLK_MAX_BLOCKS || x->count > UBLK_MAX_BLOCKS - x->start) {
			free(m);
			return -EINVAL;
		}
		if (!x->count)
			continue;
		end = x->start + x->count;
		/* E2B's dirty and empty bitmaps yield maximal runs: join ours */
		if (k && m[k - 1].id == to && m[k - 1].offset + m[k - 1].length == x->start * BLOCK) {
			m[k - 1].length += (uint64_t)x->count * BLOCK;
		} else {
			m[k++] = (struct e2b_entry){ .offset = x->start * BLOCK,
						     .length = (uint64_t)x->count * BLOCK,
						     .storage = to == E2B_NIL ? 0 : storage, .id = to };
		}
		if (to != E2B_NIL)
			storage += (uint64_t)x->count * BLOCK;
	}
	*out = m;
	*n_out = k;
	return 0;
}

/* The part of e from off on (off inside it). */
static struct e2b_entry right_of(struct e2b_entry e, uint64_t off)
{
	uint64_t cut = off - e.offset;
	e.offset = off;
	e.length -= cut;
	if (e.id != E2B_NIL)
		e.storage += cut;
	return e;
}

int e2b_merge_mappings(const struct e2b_entry *base, size_t nb, const struct e2b_entry *diff,
		       size_t nd, struct e2b_entry **out, size_t *n_out)
{
	/* each diff range adds itself and splits at most one base range in two */
	size_t cap = nb + 2 * nd + 1, k = 0, i = 0, j = 0;
	struct e2b_entry *m = malloc(cap * sizeof(*m)), cur = { 0 };

	*out = NULL;
	*n_out = 0;
	if (!m)
		return -ENOMEM;
	if (nb)
		cur = base[0];
	while (i < nb && j < nd) {
		const struct e2b_entry *d = &diff[j];
		uint64_t bend = cur.offset + cur.length, dend = d->offset + d->length;
		if (!cur.length) {
			if (++i < nb)
				cur = base[i];
		} else if (!d->length) {
			j++;
		} else if (bend <= d->offset) {          /* base wholly before the diff */
			m[k++] = cur;
			if (++i < nb)
				cur = base[i];
		} else if (dend <= cur.offset) {         /* diff wholly before the base */
			m[k++] = *d;
			j++;
		} else {
			if (cur.offset < d->offset)         /* the base's left part stays */
				m[k++] = (struct e2b_entry){ cur.offset, d->offset - cur.offset,
							     cur.storage, cur.id };
			if (bend > dend) {                  /* the base goes on after the diff */
				m[k++] = *d;
				j++;
				cur = right_of(cur, dend);
			} else if (++i < nb) {              /* the diff covers the rest of the base */
				cur = base[i];
			}
		}
	}
	if (i < nb) {
		m[k++] = cur;
		for (i++; i < nb; i++)
			m[k++] = base[i];
	}
	for (; j < nd; j++)
		if (diff[j].length)
			m[k++] = diff[j];
	*out = m;
	*n_out = k;
	return 0;
}

size_t e2b_normalize_mappings(struct e2b_entry *m, size_t n)
{
	size_t k = 0;

	for (size_t i = 0; i < n; i++) {
		struct e2b_entry *c = k ? &m[k - 1] : NULL;
		/* nil ranges read zeros: their storage offsets mean nothing */
		if (c && c->id == m[i].id &&
		    (m[i].id == E2B_NIL || m[i].storage == c->storage + c->length))
			c->length += m[i].length;
		else
			m[k++] = m[i];
	}
	return k;
}

static int copy_build(struct e2b_build *dst, const struct e2b_build *src)
{
	*dst = *src;
	dst->frames = NULL;
	if (src->codec == E2B_CODEC_NONE || !src->n_frames) {
		dst->codec = E2B_CODEC_NONE;
		dst->n_frames = 0;
		return 0;
	}
	if (!(dst->frames = malloc(src->n_frames * sizeof(*src->frames))))
		return -ENOMEM;
	memcpy(dst->frames, src->frames, src->n_frames * sizeof(*src->frames));
	return 0;
}

static uint64_t page_span(uint64_t size)
{
	return (size + E2B_PAGE - 1) / E2B_PAGE * E2B_PAGE;
}

const struct e2b_build *e2b_compressed_build(const struct e2b_header *h)
{
	for (uint32_t k = 0; k < h->n_ids; k++) {
		const struct e2b_build *b = h->id_build ? e2b_header_id_build(h, k) :
							  e2b_header_build(h, h->ids[k]);
		if (b && b->codec != E2B_CODEC_NONE)
			return b;
	}
	return NULL;
}

int e2b_next_header(const struct e2b_header *parent, const struct diff_extent *ext, size_t n,
		    const uint8_t id[16], unsigned format, const struct e2b_build *self,
		    e2b_record_fn lookup, void *ctx, struct e2b_header **out, char *why,
		    size_t whylen)
{
	struct e2b_entry *diff = NULL, *merged = NULL;
	struct e2b_header *h = calloc(1, sizeof(*h));
	uint32_t *renum = NULL, *old = NULL;   /* old index -> new, new -> old */
	size_t nd, nm, live = 0;
	char s[37];
	int ret = -ENOMEM;

	*out = NULL;
	if (!h) {
		WHY("out of memory");
		goto out;
	}
	ret = -EINVAL;
	if (!format)
		format = parent->format;
	if (format < 1 || format > 5) {
		WHY("header layout %u: E2B has 1 to 5", format);
		goto out;
	}
	if (format <= 3 && self && self->codec != E2B_CODEC_NONE) {
		WHY("layout %u has no frame tables: compressed data needs layout 4 or 5", format);
		goto out;
	}
	const struct e2b_build *packed = format <= 3 ? e2b_compressed_build(parent) : NULL;
	if (packed) {
		e2b_uuid_str(packed->id, s);
		WHY("layout %u has no frame tables, and the parent's chain reads compressed build "
		    "%s: a child needs layout 4 or 5", format, s);
		goto out;
	}
	if (!memcmp(id, nil_id, 16)) {
		WHY("the nil build id names no build");
		goto out;
	}
	if (parent->generation == UINT64_MAX) {
		WHY("the parent's generation is the last one there is");
		goto out;
	}
	for (uint32_t k = 0; k < parent->n_ids; k++)
		if (!memcmp(parent->ids[k], id, 16)) {
			e2b_uuid_str(id, s);
			WHY("build %s is already in the parent's chain: give a new build id", s);
			goto out;
		}
	if (!memcmp(parent->build_id, id, 16)) {
		e2b_uuid_str(id, s);
		WHY("build %s is the parent itself: give a new build id", s);
		goto out;
	}
	if ((ret = e2b_diff_mapping(ext, n, parent->n_ids, &diff, &nd))) {
		WHY(ret == -ENOMEM ? "out of memory" : "the changed blocks are not sorted extents");
		goto out;
	}
	ret = -EINVAL;
	if (nd && diff[nd - 1].offset + diff[nd - 1].length > page_span(parent->size)) {
		WHY("a changed block at byte %llu is past the parent's size %llu",
		    (ull)(diff[nd - 1].offset + diff[nd - 1].length - BLOCK), (ull)parent->size);
		goto out;
	}
	ret = -ENOMEM;
	if (e2b_merge_mappings(parent->entries, parent->n_entries, diff, nd, &merged, &nm)) {
		WHY("out of memory");
		goto out;
	}
	nm = e2b_normalize_mappings(merged, nm);
	/* renumber the ids in order of first appearance (V5's table order) */
	if (!(renum = malloc(((size_t)parent->n_ids + 1) * sizeof(*renum))) ||
	    !(old = malloc(((size_t)parent->n_ids + 1) * sizeof(*old))))
		goto out;
	for (uint32_t k = 0; k <= parent->n_ids; k++)
		renum[k] = E2B_NIL;
	if (!(h->ids = malloc(((size_t)parent->n_ids + 1) * 16)))
		goto out;
	for (size_t i = 0; i < nm; i++) {
		uint32_t o = merged[i].id;
		if (o == E2B_NIL)
			continue;
		live++;
		if (renum[o] == E2B_NIL) {
			old[h->n_ids] = o;
			renum[o] = h->n_ids;
			memcpy(h->ids[h->n_ids++], o == parent->n_ids ? id : parent->ids[o], 16);
		}
		merged[i].id = renum[o];
	}
	ret = -EINVAL;
	if (h->n_ids > E2B_MAX_BUILDS) {
		WHY("the mapping names %u builds, more than E2B's %u", h->n_ids, E2B_MAX_BUILDS);
		goto out;
	}
	if (format == 5 ? live > E2B_MAX_V5_ENTRIES : nm > UBLK_MAX_EXTENTS) {
		WHY("the merged mapping has %zu ranges, more than layout %u holds", format == 5 ? live : nm,
		    format);
		goto out;
	}
	h->version = format == parent->format ? parent->version : format;
	h->format = format;
	h->block_size = parent->block_size;
	h->size = parent->size;
	h->generation = parent->generation + 1;
	memcpy(h->build_id, id, 16);
	memcpy(h->base_build_id, parent->base_build_id, 16);
	h->entries = merged;
	h->n_entries = nm;
	merged = NULL;
	ret = 0;
	if (format <= 3)
		goto out;
	/* records: every mapped build E2B would record, and self always */
	ret = -ENOMEM;
	if (!(h->builds = calloc((size_t)h->n_ids + 1, sizeof(*h->builds)))) {
		WHY("out of memory");
		goto out;
	}
	for (uint32_t k = 0; k < h->n_ids; k++) {
		struct e2b_build *b = &h->builds[h->n_builds];
		const struct e2b_build *p;
		if (old[k] == parent->n_ids)   /* self: last */
			continue;
		/* the parser's index of records by id: no search per build */
		p = parent->id_build ? e2b_header_id_build(parent, old[k]) :
				       e2b_header_build(parent, h->ids[k]);
		if (p) {
			if ((ret = copy_build(b, p)))
				goto nomem;
		} else if (lookup && lookup(ctx, h->ids[k], b) == 1) {
			/* E2B's heal from the ancestor's own header */
		} else if (parent->format <= 3) {
			/* a V1-V3 chain is uncompressed: E2B writes the empty record */
			*b = (struct e2b_build){ 0 };
		} else {
			continue;
		}
		memcpy(b->id, h->ids[k], 16);
		h->n_builds++;
	}
	{
		struct e2b_build *b = &h->builds[h->n_builds];
		if (self) {
			if ((ret = copy_build(b, self)))
				goto nomem;
		}
		memcpy(b->id, id, 16);
		h->n_builds++;
	}
	ret = 0;
	goto out;
nomem:
	WHY("out of memory");
out:
	if (ret) {
		e2b_header_free(h);
		h = NULL;
	}
	*out = h;
	free(diff);
	free(merged);
	free(renum);
	free(old);
	return ret;
}

/* ---- serializing ---- */

static void put(struct buf *b, const void *data, size_t n)
{
	if (b->oom)
		return;
	if (b->len + n > b->cap) {
		size_t cap = b->cap ? b->cap : 4096;
		while (cap < b->len + n)
			cap *= 2;
		uint8_t *p = realloc(b->p, cap);
		if (!p) {
			b->oom = true;
			return;
		}
		b->p = p;
		b->cap = cap;
	}
	memcpy(b->p + b->len, data, n);
	b->len += n;
}

static void put32(struct buf *b, uint32_t v)
{
	v = htole32(v);
	put(b, &v, 4);
}

static void put64(struct buf *b, uint64_t v)
{
	v = htole64(v);
	put(b, &v, 8);
}

static void put_uvarint(struct buf *b, uint64_t v)
{
	uint8_t x[10];
	size_t n = 0;
	while (v >= 0x80) {
		x[n++] = (uint8_t)(v | 0x80);
		v >>= 7;
	}
	x[n++] = (uint8_t)v;
	put(b, x, n);
}

static void put_varint(struct buf *b, int64_t v)
{
	put_uvarint(b, ((uint64_t)v << 1) ^ (uint64_t)(v >> 63));
}

static void put_meta(struct buf *b, const struct e2b_header *h)
{
	put64(b, h->version);
	put64(b, h->block_size);
	put64(b, h->size);
	put64(b, h->generation);
	put(b, h->build_id, 16);
	put(b, h->base_build_id, 16);
}

static void put_entry(struct buf *b, const struct e2b_header *h, const struct e2b_entry *e)
{
	put64(b, e->offset);
	put64(b, e->length);
	put(b, e->id == E2B_NIL ? nil_id : h->ids[e->id], 16);
	put64(b, e->id == E2B_NIL ? 0 : e->storage);
}

struct span {
	uint64_t start, end;
};

static int cmp_span(const void *a, const void *b)
{
	const struct span *x = a, *y = b;
	return x->start < y->start ? -1 : x->start > y->start;
}

static int cmp_rec(const void *a, const void *b)
{
	return memcmp((*(const struct e2b_build *const *)a)->id,
		      (*(const struct e2b_build *const *)b)->id, 16);
}

/* The storage spans the mapping reads, per id: sorted by id then start,
 * [first[k], first[k + 1]) those of ids[k]. One pass for all records. */
struct spans {
	struct span *sp;
	uint64_t *first;
	uint32_t *by_id;        /* id indices sorted by id bytes */
};

static int cmp_idx(const void *a, const void *b, void *ctx)
{
	const struct e2b_header *h = ctx;
	return memcmp(h->ids[*(const uint32_t *)a], h->ids[*(const uint32_t *)b], 16);
}

static int spans_init(struct spans *s, const struct e2b_header *h)
{
	uint64_t *at;

	s->sp = malloc((h->n_entries + 1) * sizeof(*s->sp));
	s->first = calloc((size_t)h->n_ids + 2, sizeof(*s->first));
	s->by_id = malloc(((size_t)h->n_ids + 1) * sizeof(*s->by_id));
	at = calloc((size_t)h->n_ids + 1, sizeof(*at));
	if (!s->sp || !s->first || !s->by_id || !at) {
		free(at);
		return -ENOMEM;
	}
	for (uint64_t i = 0; i < h->n_entries; i++)
		if (h->entries[i].id != E2B_NIL)
			s->first[h->entries[i].id + 1]++;
	for (uint32_t k = 0; k < h->n_ids; k++)
		s->first[k + 1] += s->first[k];
	for (uint64_t i = 0; i < h->n_entries; i++) {
		const struct e2b_entry *e = &h->entries[i];
		if (e->id != E2B_NIL)
			s->sp[s->first[e->id] + at[e->id]++] =
				(struct span){ e->storage, e->storage + e->length };
	}
	for (uint32_t k = 0; k < h->n_ids; k++) {
		qsort(s->sp + s->first[k], s->first[k + 1] - s->first[k], sizeof(*s->sp), cmp_span);
		s->by_id[k] = k;
	}
	qsort_r(s->by_id, h->n_ids, sizeof(*s->by_id), cmp_idx, (void *)h);
	free(at);
	return 0;
}

/* The spans of the id r names (none when the mapping does not name it). */
static struct span *spans_of(const struct spans *s, const struct e2b_header *h,
			     const uint8_t id[16], size_t *n)
{
	size_t lo = 0, hi = h->n_ids;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		int c = memcmp(h->ids[s->by_id[mid]], id, 16);
		if (!c) {
			uint32_t k = s->by_id[mid];
			*n = s->first[k + 1] - s->first[k];
			return s->sp + s->first[k];
		}
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	*n = 0;
	return NULL;
}

/* One record with its frame table trimmed to the frames that hold a byte
 * of a range the mapping reads from it (E2B's TrimToRanges; no range: the
 * table whole). */
static int put_record(struct buf *b, const struct e2b_header *h, const struct e2b_build *r,
		      const struct spans *all)
{
	size_t ns = 0, nm = 0;
	uint32_t kept = 0;
	struct span *sp;
	uint8_t *keep;

	put(b, r->id, 16);
	put64(b, r->size);
	put(b, r->sha256, 32);
	if (r->codec == E2B_CODEC_NONE || !r->n_frames) {
		put32(b, 0);
		put32(b, 0);
		return 0;
	}
	sp = spans_of(all, h, r->id, &ns);
	if (!(keep = calloc(r->n_frames, 1)))
		return -ENOMEM;
	if (ns) {
		for (size_t i = 0; i < ns; i++)   /* join overlapping or touching spans (in place) */
			if (nm && sp[i].start <= sp[nm - 1].end)
				sp[nm - 1].end = sp[i].end > sp[nm - 1].end ? sp[i].end : sp[nm - 1].end;
			else
				sp[nm++] = sp[i];
		for (uint32_t f = 0; f < r->n_frames; f++) {
			uint64_t fs = r->frames[f].start_u, fe = fs + r->frames[f].size_u;
			size_t lo = 0, hi = nm;   /* first span ending after fs */
			while (lo < hi) {
				size_t mid = lo + (hi - lo) / 2;
				if (sp[mid].end > fs)
					hi = mid;
				else
					lo = mid + 1;
			}
			keep[f] = lo < nm && sp[lo].start < fe;
		}
	} else {
		memset(keep, 1, r->n_frames);
	}
	for (uint32_t f = 0; f < r->n_frames; f++)
		kept += keep[f];
	put32(b, r->codec);
	put32(b, kept);
	for (uint32_t f = 0; f < r->n_frames; f++)
		if (keep[f]) {
			put64(b, r->frames[f].start_u);
			put64(b, r->frames[f].start_c);
			put32(b, r->frames[f].size_u);
			put32(b, r->frames[f].size_c);
		}
	free(keep);
	return 0;
}

static int put_v5_mapping(struct buf *b, const struct e2b_header *h)
{
	uint32_t *table = malloc(((size_t)h->n_ids + 1) * sizeof(*table)), m = 0, live = 0;
	uint8_t (*order)[16] = malloc(((size_t)h->n_ids + 1) * 16);
	uint64_t prev = 0;
	int64_t prev_s = 0;

	if (!table || !order) {
		free(table);
		free(order);
		return -ENOMEM;
	}
	for (uint32_t k = 0; k < h->n_ids; k++)
		table[k] = E2B_NIL;
	for (uint64_t i = 0; i < h->n_entries; i++) {
		uint32_t o = h->entries[i].id;
		if (o == E2B_NIL)
			continue;
		live++;
		if (table[o] == E2B_NIL) {
			table[o] = m;
			memcpy(order[m++], h->ids[o], 16);
		}
	}
	put32(b, m);
	put(b, order, (size_t)m * 16);
	put32(b, live);
	for (uint64_t i = 0; i < h->n_entries; i++)
		if (h->entries[i].id != E2B_NIL) {
			put_uvarint(b, h->entries[i].offset / E2B_PAGE - prev);
			prev = h->entries[i].offset / E2B_PAGE;
		}
	for (uint64_t i = 0; i < h->n_entries; i++)
		if (h->entries[i].id != E2B_NIL)
			put_uvarint(b, h->entries[i].length / E2B_PAGE);
	for (uint64_t i = 0; i < h->n_entries; i++)
		if (h->entries[i].id != E2B_NIL) {
			int64_t s = (int64_t)(h->entries[i].storage / E2B_PAGE);
			put_varint(b, s - prev_s);
			prev_s = s;
		}
	for (uint64_t i = 0; i < h->n_entries; i++)
		if (h->entries[i].id != E2B_NIL)
			put_uvarint(b, table[h->entries[i].id]);
	free(table);
	free(order);
	return 0;
}

/* One LZ4 frame as E2B's writers make it: 4 MB blocks (stated in the
 * frame whatever the input's size, which LZ4F_compressFrame would shrink),
 * independent, block checksums, a content checksum for the header section
 * and none for data frames, fast. */
int e2b_lz4_frame(const void *src, size_t len, bool content_sum, struct buf *b)
{
	LZ4F_preferences_t pr = { 0 };
	LZ4F_cctx *cc = NULL;
	size_t bound, got, pos;
	int ret = -EIO;

	pr.frameInfo.blockSizeID = LZ4F_max4MB;
	pr.frameInfo.blockMode = LZ4F_blockIndependent;
	pr.frameInfo.blockChecksumFlag = LZ4F_blockChecksumEnabled;
	pr.frameInfo.contentChecksumFlag = content_sum ? LZ4F_contentChecksumEnabled :
							 LZ4F_noContentChecksum;
	pr.autoFlush = 1;
	bound = LZ4F_HEADER_SIZE_MAX + LZ4F_compressBound(len, &pr);
	if (b->oom)
		return -ENOMEM;
	if (b->len + bound > b->cap) {
		uint8_t *p = realloc(b->p, b->len + bound);
		if (!p)
			return -ENOMEM;
		b->p = p;
		b->cap = b->len + bound;
	}
	if (LZ4F_isError(LZ4F_createCompressionContext(&cc, LZ4F_VERSION)))
		return -ENOMEM;
	pos = b->len;
	got = LZ4F_compressBegin(cc, b->p + pos, b->cap - pos, &pr);
	if (LZ4F_isError(got))
		goto out;
	pos += got;
	got = LZ4F_compressUpdate(cc, b->p + pos, b->cap - pos, src, len, NULL);
	if (LZ4F_isError(got))
		goto out;
	pos += got;
	got = LZ4F_compressEnd(cc, b->p + pos, b->cap - pos, NULL);
	if (LZ4F_isError(got))
		goto out;
	b->len = pos + got;
	ret = 0;
out:
	LZ4F_freeCompressionContext(cc);
	return ret;
}

int e2b_header_serialize(const struct e2b_header *h, uint8_t **out, size_t *len, char *why,
			 size_t whylen)
{
	struct buf b = { 0 }, sec = { 0 };
	const struct e2b_build **recs = NULL;
	struct spans sp = { 0 };
	int ret = -EINVAL;

	*out = NULL;
	*len = 0;
	if (h->format < 1 || h->format > 5 || (h->version & E2B_VERSION_MASK) != h->format) {
		WHY("version %llu: not layout %u", (ull)h->version, h->format);
		goto out;
	}
	if (!h->n_entries && h->format <= 4) {
		/* E2B reads an empty V1-V4 mapping as the header's own data */
		WHY("an empty mapping would read as the build's own data in layout %u", h->format);
		goto out;
	}
	put_meta(&b, h);
	if (h->format <= 3) {
		for (uint64_t i = 0; i < h->n_entries; i++)
			put_entry(&b, h, &h->entries[i]);
		ret = b.oom ? -ENOMEM : 0;
		goto out;
	}
	ret = -ENOMEM;
	if ((h->n_builds && !(recs = malloc(h->n_builds * sizeof(*recs)))) || spans_init(&sp, h))
		goto out;
	for (uint32_t i = 0; i < h->n_builds; i++)
		recs[i] = &h->builds[i];
	if (h->n_builds)
		qsort(recs, h->n_builds, sizeof(*recs), cmp_rec);
	put32(&sec, h->n_builds);
	for (uint32_t i = 0; i < h->n_builds; i++)
		if ((ret = put_record(&sec, h, recs[i], &sp)))
			goto out;
	if (h->format == 4) {
		put32(&sec, (uint32_t)h->n_entries);
		for (uint64_t i = 0; i < h->n_entries; i++)
			put_entry(&sec, h, &h->entries[i]);
	} else if ((ret = put_v5_mapping(&sec, h))) {
		goto out;
	}
	ret = -ENOMEM;
	if (sec.oom)
		goto out;
	if (sec.len > E2B_MAX_SECTION) {
		ret = -EFBIG;
		WHY("the header's section would be %zu bytes, more than E2B reads (%u)", sec.len,
		    E2B_MAX_SECTION);
		goto out;
	}
	put(&b, &h->flags, 1);
	put32(&b, (uint32_t)sec.len);
	if ((ret = e2b_lz4_frame(sec.p, sec.len, true, &b)))
		goto out;
	ret = b.oom ? -ENOMEM : 0;
out:
	if (ret == -ENOMEM)
		WHY("out of memory");
	else if (ret == -EIO)
		WHY("LZ4 compression of the header's section failed");
	if (ret)
		free(b.p);
	else
		*out = b.p, *len = b.len;
	free(sec.p);
	free(recs);
	free(sp.sp);
	free(sp.first);
	free(sp.by_id);
	return ret;
}
