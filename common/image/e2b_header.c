/*
 * E2B build headers, versions 1-5 (docs/e2b.md), learned from
 * e2b-dev/infra packages/shared/pkg/storage/header/. Little-endian:
 *
 *   metadata (64): version u64, block_size u64, size u64, generation u64,
 *                  build_id [16], base_build_id [16]
 *   V1-V3: 40-byte entries {offset u64, length u64, build_id [16],
 *          storage u64} to the end of the file
 *   V4/V5: flags u8, section size u32, one LZ4 frame holding
 *          builds: count u32, then per build {id [16], size i64,
 *                  sha256 [32], codec u32, frames u32,
 *                  frames x {start_u i64, start_c i64, size_u i32, size_c i32}}
 *          V4 mapping: count u32, count x 40-byte entries as above
 *          V5 mapping: ids u32, ids x [16], count u32, then four columns of
 *                  count varints, in 4096-byte pages: offset deltas,
 *                  lengths, storage deltas (zigzag), id indices; ranges
 *                  between entries are nil
 *
 * The file is hostile until proven otherwise: every count is bounded by
 * the bytes that really follow before it sizes an allocation, every sum
 * is overflow-checked, and the first bad field or entry refuses the whole
 * header. E2B checks some of this only when a block is read; a header
 * that would fail there is refused here, before anything is served.
 */
#include "image/e2b_header.h"
#include "image/e2b_header_impl.h"
#include "image/blob.h"
#include "image/http.h"
#include "image/layer.h"
#include "util/ublk_limits.h"
#include "image/layer_http.h"

#include <endian.h>
#include <errno.h>
#include <lz4frame.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#define ENTRY 40u

void e2b_uuid_str(const uint8_t id[16], char *buf)
{
	static const char hex[] = "0123456789abcdef";
	for (int i = 0, o = 0; i < 16; i++) {
		if (i == 4 || i == 6 || i == 8 || i == 10)
			buf[o++] = '-';
		buf[o++] = hex[id[i] >> 4];
		buf[o++] = hex[id[i] & 15];
		buf[o] = 0;
	}
}

const char *e2b_codec_name(enum e2b_codec c)
{
	return c == E2B_CODEC_ZSTD ? "zstd" : c == E2B_CODEC_LZ4 ? "lz4" : "none";
}

void e2b_header_free(struct e2b_header *h)
{
	if (!h)
		return;
	for (uint32_t i = 0; i < h->n_builds; i++)
		free(h->builds[i].frames);
	free(h->builds);
	free(h->entries);
	free(h->ids);
	free(h->id_build);
	free(h);
}

/* ---- interning the mapping's build ids (V1-V4 name one per entry) ---- */

/* Open addressing over a power-of-two table at least twice the ids there
 * can be, with a random seed: a crafted file cannot aim its ids at one
 * chain, so a lookup stays a probe or two. */

struct ids {
	struct e2b_header *h;
	uint32_t *slot;         /* id index + 1; 0 = empty */
	uint64_t seed[2];
	uint32_t last;          /* index of the previous entry's id */
	uint32_t cap, mask;
};

/* For a mapping of n entries (plus the header's own id). */
static int ids_init(struct ids *t, struct e2b_header *h, uint64_t n)
{
	uint64_t most = n + 1 < E2B_MAX_BUILDS ? n + 1 : E2B_MAX_BUILDS, slots = 16;

	memset(t, 0, sizeof(*t));
	t->h = h;
	t->last = E2B_NIL;
	while (slots < 2 * most)
		slots *= 2;
	t->mask = (uint32_t)slots - 1;
	if (getrandom(t->seed, sizeof(t->seed), GRND_NONBLOCK) != sizeof(t->seed)) {
		t->seed[0] = (uint64_t)(uintptr_t)t ^ 0x9e3779b97f4a7c15ull;
		t->seed[1] = (uint64_t)(uintptr_t)&t->seed ^ 0xc2b2ae3d27d4eb4full;
	}
	t->slot = calloc(slots, sizeof(*t->slot));
	return t->slot ? 0 : -ENOMEM;
}

static uint32_t id_hash(const struct ids *t, const uint8_t id[16])
{
	uint64_t a, b;
	memcpy(&a, id, 8);
	memcpy(&b, id + 8, 8);
	a = (a ^ t->seed[0]) * 0xff51afd7ed558ccdull;
	b = (b ^ t->seed[1]) * 0xc4ceb9fe1a85ec53ull;
	a ^= (a >> 33) ^ b;
	a *= 0x9e3779b97f4a7c15ull;
	return (uint32_t)(a >> 32) & t->mask;
}

/* The index of id (nil: E2B_NIL), adding it if new: 0, -E2BIG past
 * E2B's cap, or -ENOMEM. */
static int ids_get(struct ids *t, const uint8_t id[16], uint32_t *idx)
{
	struct e2b_header *h = t->h;

	if (!memcmp(id, nil, 16)) {
		*idx = E2B_NIL;
		return 0;
	}
	if (t->last != E2B_NIL && !memcmp(h->ids[t->last], id, 16)) {
		*idx = t->last;
		return 0;
	}
	uint32_t s = id_hash(t, id);
	while (t->slot[s] && memcmp(h->ids[t->slot[s] - 1], id, 16))
		s = (s + 1) & t->mask;
	if (!t->slot[s]) {
		if (h->n_ids >= E2B_MAX_BUILDS)
			return -E2BIG;
		if (h->n_ids == t->cap) {
			uint32_t want = t->cap ? t->cap * 2 : 16;
			uint8_t(*grown)[16] = realloc(h->ids, (size_t)want * 16);
			if (!grown)
				return -ENOMEM;
			h->ids = grown;
			t->cap = want;
		}
		memcpy(h->ids[h->n_ids], id, 16);
		t->slot[s] = ++h->n_ids;
	}
	*idx = t->last = t->slot[s] - 1;
	return 0;
}

/* ---- the mapping ---- */

/* What a mapping covers: the device size rounded up to a page, as E2B's
 * readers do (an empty mapping's entry and V5's trailing nil range end
 * there). */
static uint64_t span(const struct e2b_header *h)
{
	return (h->size + E2B_PAGE - 1) / E2B_PAGE * E2B_PAGE;
}

static const char *size_str(const struct e2b_header *h, char *buf, size_t len)
{
	if (h->size % E2B_PAGE)
		snprintf(buf, len, "%llu (size %llu rounded up to a page)", (ull)span(h), (ull)h->size);
	else
		snprintf(buf, len, "%llu", (ull)h->size);
	return buf;
}

struct walk {
	struct e2b_header *h;
	uint64_t next;          /* where the next entry must start */
	uint64_t cap;
};

static int push(struct walk *w, struct e2b_entry e)
{
	struct e2b_header *h = w->h;
	if (h->n_entries == w->cap) {
		uint64_t want = w->cap ? w->cap * 2 : 64;
		struct e2b_entry *grown = realloc(h->entries, want * sizeof(*grown));
		if (!grown)
			return -ENOMEM;
		h->entries = grown;
		w->cap = want;
	}
	h->entries[h->n_entries++] = e;
	return 0;
}

/* One V1-V4 entry, i-th of the file: the checks E2B's loader (NewMapping)
 * and its mapping validation (Mapping.Validate, at its 4096-byte page)
 * make, in an order that names the most telling problem first. */
static int entry_check(struct walk *w, uint64_t i, uint64_t off, uint64_t len, uint64_t store,
		       char *why, size_t whylen)
{
	const struct e2b_header *h = w->h;

	if (!len)
		return WHY("entry %llu: offset %llu, length 0 (every entry covers at least one "
			   "4096-byte page)", (ull)i, (ull)off), -EINVAL;
	if (off % E2B_PAGE || len % E2B_PAGE || store % E2B_PAGE)
		return WHY("entry %llu: offset %llu, length %llu, storage offset %llu: not all "
			   "multiples of 4096 (E2B maps whole pages)", (ull)i, (ull)off, (ull)len,
			   (ull)store), -EINVAL;
	if (off + len < off || store + len < store)
		return WHY("entry %llu: offset %llu, length %llu, storage offset %llu: the range "
			   "wraps past 2^64", (ull)i, (ull)off, (ull)len, (ull)store), -EINVAL;
	if (off / E2B_PAGE > E2B_MAX_BLOCK_INDEX || len / E2B_PAGE > E2B_MAX_BLOCK_INDEX ||
	    store / E2B_PAGE > E2B_MAX_BLOCK_INDEX)
		return WHY("entry %llu: offset %llu, length %llu, storage offset %llu: past E2B's "
			   "limit of 2^32-1 pages", (ull)i, (ull)off, (ull)len, (ull)store), -EINVAL;
	if (off != w->next) {
		if (!i)
			return WHY("entry 0: offset %llu, expected 0 (entries must be contiguous from "
				   "the start of the device)", (ull)off), -EINVAL;
		return WHY("entry %llu: offset %llu, expected %llu (entries must be contiguous; "
			   "%s entry %llu)", (ull)i, (ull)off, (ull)w->next,
			   off < w->next ? "this overlaps" : "a gap after", (ull)(i - 1)), -EINVAL;
	}
	if (len > span(h) - off) {
		char sz[80];
		return WHY("entry %llu: offset %llu, length %llu ends at %llu, past the device size "
			   "%s", (ull)i, (ull)off, (ull)len, (ull)(off + len),
			   size_str(h, sz, sizeof(sz))), -EINVAL;
	}
	w->next = off + len;
	return 0;
}

static int entry_add(struct walk *w, struct ids *t, uint64_t i, const uint8_t *e, char *why,
		     size_t whylen)
{
	uint64_t off, len, store;
	struct e2b_entry x;
	int ret;

	memcpy(&off, e, 8);
	memcpy(&len, e + 8, 8);
	memcpy(&store, e + 32, 8);
	off = le64toh(off);
	len = le64toh(len);
	store = le64toh(store);
	if ((ret = entry_check(w, i, off, len, store, why, whylen)))
		return ret;
	ret = ids_get(t, e + 16, &x.id);
	if (ret == -E2BIG)
		return WHY("entry %llu: names a %uth distinct build; E2B allows at most %u in one "
			   "mapping", (ull)i, E2B_MAX_BUILDS + 1, E2B_MAX_BUILDS), -EINVAL;
	if (ret)
		return WHY("out of memory for the mapping's builds"), ret;
	x.offset = off;
	x.length = len;
	x.storage = x.id == E2B_NIL ? 0 : store;   /* nil ranges are zeros, never read */
	if ((ret = push(w, x)))
		WHY("out of memory for %llu entries", (ull)(i + 1));
	return ret;
}

static int mapping_end(struct walk *w, char *why, size_t whylen)
{
	char sz[80];
	if (w->next != span(w->h))
		return WHY("the entries end at %llu but the device size is %s (the mapping must "
			   "cover the whole device)", (ull)w->next, size_str(w->h, sz, sizeof(sz))),
		       -EINVAL;
	return 0;
}

/* An empty mapping: E2B's NewHeader gives the whole device to the
 * header's own build (V1-V4); V5 writes no nil ranges, so there it means
 * all zeros. */
static int mapping_implicit(struct walk *w, struct ids *t)
{
	struct e2b_header *h = w->h;
	struct e2b_entry x = { 0, span(h), 0, E2B_NIL };
	int ret;

	h->implicit = true;
	if (h->format != 5 && (ret = ids_get(t, h->build_id, &x.id)))
		return ret;
	w->next = span(h);
	return push(w, x);
}

/* Entries to the end of the file (V1-V3) or count of them (V4). */
static int mapping_fixed(struct e2b_header *h, struct cur *c, uint64_t n, char *why,
			 size_t whylen)
{
	struct walk w = { .h = h };
	struct ids t;
	int ret;

	if ((ret = ids_init(&t, h, n)))
		return WHY("out of memory"), ret;
	/* n is bounded by the bytes that hold the entries */
	if (n && !(h->entries = malloc(n * sizeof(*h->entries)))) {
		ret = -ENOMEM;
		WHY("out of memory for %llu entries", (ull)n);
		goto out;
	}
	w.cap = n;
	if (!n) {
		if ((ret = mapping_implicit(&w, &t)))
			WHY("out of memory");
		goto out;
	}
	for (uint64_t i = 0; i < n; i++) {
		if ((ret = entry_add(&w, &t, i, c->p + c->pos, why, whylen)))
			goto out;
		c->pos += ENTRY;
	}
	ret = mapping_end(&w, why, whylen);
out:
	free(t.slot);
	return ret;
}

static int cmp_id(const void *a, const void *b) { return memcmp(a, b, 16); }

/* V5's columnar mapping, decoded as E2B's readV5MappingSection does: the
 * same bounds, the same entry numbering in messages, nil ranges filled
 * in between. */
static int mapping_v5(struct e2b_header *h, struct cur *c, char *why, size_t whylen)
{
	uint64_t pages = span(h) / E2B_PAGE, prev = 0, cur_end = 0, *col = NULL;
	uint32_t m, n;
	struct walk w = { .h = h };
	int ret = -EINVAL;

	if (!take32(c, &m)) {
		WHY("V5 mapping: truncated before its build count");
		goto out;
	}
	if (m > E2B_MAX_BUILDS || m > left(c) / 16) {
		WHY("V5 mapping: %u builds, more than E2B's %u or than the %zu bytes left hold",
		    m, E2B_MAX_BUILDS, left(c));
		goto out;
	}
	if (m && !(h->ids = malloc((size_t)m * 16))) {
		ret = -ENOMEM;
		WHY("out of memory");
		goto out;
	}
	if (m)
		take(c, h->ids, (size_t)m * 16);
	h->n_ids = m;
	for (uint32_t i = 0; i < m; i++)
		if (!memcmp(h->ids[i], nil, 16)) {
			WHY("V5 mapping: build %u of its table is the nil id (nil ranges are not "
			    "stored)", i);
			goto out;
		}
	if (m > 1) {
		uint8_t(*sorted)[16] = malloc((size_t)m * 16);
		if (!sorted) {
			ret = -ENOMEM;
			WHY("out of memory");
			goto out;
		}
		memcpy(sorted, h->ids, (size_t)m * 16);
		qsort(sorted, m, 16, cmp_id);
		for (uint32_t i = 1; i < m && ret == -EINVAL; i++)
			if (!memcmp(sorted[i - 1], sorted[i], 16)) {
				char s[37];
				e2b_uuid_str(sorted[i], s);
				WHY("V5 mapping: build %s is twice in its table", s);
				ret = -EEXIST;
			}
		free(sorted);
		if (ret == -EEXIST) {
			ret = -EINVAL;
			goto out;
		}
	}
	if (!take32(c, &n)) {
		WHY("V5 mapping: truncated before its entry count");
		goto out;
	}
	/* Each entry takes at least a byte in each of the four columns. */
	if (n > E2B_MAX_V5_ENTRIES || n > left(c) / 4) {
		WHY("V5 mapping: %u entries, more than E2B's %u or than the %zu bytes left hold",
		    n, E2B_MAX_V5_ENTRIES, left(c));
		goto out;
	}
	if (!n) {
		struct ids t = { .h = h };
		if ((ret = mapping_implicit(&w, &t)))
			WHY("out of memory");
		goto out;
	}
	/* offsets, lengths, storage: pages; then the id indices */
	if (!(col = malloc((size_t)n * 3 * sizeof(*col)))) {
		ret = -ENOMEM;
		WHY("out of memory for %u entries", n);
		goto out;
	}
	for (uint32_t i = 0; i < n; i++) {
		uint64_t d;
		if (!take_uvarint(c, &d)) {
			WHY("V5 mapping: entry %u: truncated or overlong offset delta", i);
			goto out;
		}
		if (d > E2B_MAX_BLOCK_INDEX || (prev += d) > E2B_MAX_BLOCK_INDEX) {
			WHY("V5 mapping: entry %u: offset page past E2B's limit of 2^32-1", i);
			goto out;
		}
		col[i] = prev;
	}
	for (uint32_t i = 0; i < n; i++) {
		uint64_t v;
		if (!take_uvarint(c, &v)) {
			WHY("V5 mapping: entry %u: truncated or overlong length", i);
			goto out;
		}
		if (v > E2B_MAX_BLOCK_INDEX) {
			WHY("V5 mapping: entry %u: length of %llu pages past E2B's limit of 2^32-1",
			    i, (ull)v);
			goto out;
		}
		col[n + i] = v;
	}
	int64_t sprev = 0;
	for (uint32_t i = 0; i < n; i++) {
		int64_t d;
		if (!take_varint(c, &d)) {
			WHY("V5 mapping: entry %u: truncated or overlong storage delta", i);
			goto out;
		}
		/* both within [-2^63, 2^63), bounded so the sum cannot overflow */
		if (d > (int64_t)E2B_MAX_BLOCK_INDEX || d < -(int64_t)E2B_MAX_BLOCK_INDEX ||
		    (sprev += d) < 0 || sprev > (int64_t)E2B_MAX_BLOCK_INDEX) {
			WHY("V5 mapping: entry %u: storage page outside 0 .. 2^32-1", i);
			goto out;
		}
		col[2 * (size_t)n + i] = (uint64_t)sprev;
	}
	for (uint32_t i = 0; i < n; i++) {
		uint64_t idx, off = col[i], len = col[n + i], end = off + len;
		if (!take_uvarint(c, &idx)) {
			WHY("V5 mapping: entry %u: truncated or overlong build index", i);
			goto out;
		}
		if (idx >= m) {
			WHY("V5 mapping: entry %u: build index %llu out of range (%u builds)", i,
			    (ull)idx, m);
			goto out;
		}
		/* Checked as E2B does once the columns are read, but entry by
		 * entry: the first bad one is named. */
		if (!len) {
			WHY("V5 mapping: entry %u: offset %llu, length 0 (every entry covers at "
			    "least one 4096-byte page)", i, (ull)(off * E2B_PAGE));
			goto out;
		}
		if (off < cur_end) {
			WHY("V5 mapping: entry %u: offset %llu overlaps the previous entry, which "
			    "ends at %llu", i, (ull)(off * E2B_PAGE), (ull)(cur_end * E2B_PAGE));
			goto out;
		}
		if (end > pages) {
			char sz[80];
			WHY("V5 mapping: entry %u: offset %llu, length %llu ends at %llu, past the "
			    "device size %s", i, (ull)(off * E2B_PAGE), (ull)(len * E2B_PAGE),
			    (ull)(end * E2B_PAGE), size_str(h, sz, sizeof(sz)));
			goto out;
		}
		/* the nil range E2B puts back in front of it, then the entry */
		if ((off > cur_end &&
		     push(&w, (struct e2b_entry){ cur_end * E2B_PAGE, (off - cur_end) * E2B_PAGE, 0,
						  E2B_NIL })) ||
		    push(&w, (struct e2b_entry){ off * E2B_PAGE, len * E2B_PAGE,
						 col[2 * (size_t)n + i] * E2B_PAGE, (uint32_t)idx })) {
			ret = -ENOMEM;
			WHY("out of memory for %u entries", n);
			goto out;
		}
		cur_end = end;
	}
	if (cur_end < pages &&
	    push(&w, (struct e2b_entry){ cur_end * E2B_PAGE, (pages - cur_end) * E2B_PAGE, 0,
					 E2B_NIL })) {
		ret = -ENOMEM;
		WHY("out of memory for %u entries", n);
		goto out;
	}
	ret = 0;
out:
	free(col);
	return ret;
}

/* The LZ4 frame of a V4/V5 header must decompress to exactly the size
 * the header states, end the file, and (when its writer asked for them,
 * as E2B's does) match its checksums. */
static int lz4_section(const uint8_t *src, size_t srclen, uint32_t want, uint8_t **out,
		       char *why, size_t whylen)
{
	LZ4F_dctx *dc = NULL;
	/* one byte more than promised, to tell an overlong frame */
	size_t cap = (size_t)want + 1, dpos = 0, spos = 0, hint = 1;
	uint8_t *dst = NULL;
	int ret = -EINVAL;

	*out = NULL;
	/* LZ4 expands at most about 255 times: a size no frame this long can
	 * hold is refused before it sizes an allocation */
	if ((uint64_t)want > (uint64_t)srclen * 256 + 64) {
		WHY("an LZ4 frame of %zu bytes cannot hold the %u bytes the header states", srclen,
		    want);
		goto out;
	}
	if (!(dst = malloc(cap)) ||
	    LZ4F_isError(LZ4F_createDecompressionContext(&dc, LZ4F_VERSION))) {
		ret = -ENOMEM;
		WHY("out of memory for a %u-byte header section", want);
		goto out;
	}
	while (spos < srclen && dpos < cap) {
		size_t dn = cap - dpos, sn = srclen - spos;
		hint = LZ4F_decompress(dc, dst + dpos, &dn, src + spos, &sn, NULL);
		if (LZ4F_isError(hint)) {
			WHY("the LZ4 frame starting at byte %u is corrupt: %s", E2B_META_SIZE + 5u,
			    LZ4F_getErrorName(hint));
			goto out;
		}
		dpos += dn;
		spos += sn;
		if (!hint)
			break;   /* the frame is complete */
		if (!dn && !sn)
			break;
	}
	if (dpos > want) {
		WHY("the LZ4 frame holds more than the %u bytes the header states", want);
		goto out;
	}
	if (hint) {
		WHY("the LZ4 frame is truncated: no end after %zu bytes (the header states %u)", dpos,
		    want);
		goto out;
	}
	if (spos != srclen) {
		WHY("%zu bytes follow the LZ4 frame", srclen - spos);
		goto out;
	}
	if (dpos != want) {
		WHY("the LZ4 frame holds %zu bytes, the header states %u", dpos, want);
		goto out;
	}
	*out = dst;
	dst = NULL;
	ret = 0;
out:
	LZ4F_freeDecompressionContext(dc);
	free(dst);
	return ret;
}

static int parse_framed(struct e2b_header *h, const uint8_t *p, size_t len, char *why,
			size_t whylen)
{
	uint8_t *sec = NULL;
	uint32_t want;
	struct cur c;
	int ret = -EINVAL;

	if (len < 5) {
		WHY("V%u header: %zu bytes after the metadata, too short for its flags and section "
		    "size", h->format, len);
		goto out;
	}
	h->flags = p[0];
	memcpy(&want, p + 1, 4);
	want = le32toh(want);
	/* E2B ignores flags it does not know; a later meaning could change
	 * how the header reads, so an unknown one is refused. */
	if (h->flags & ~E2B_FLAG_INCOMPLETE) {
		WHY("V%u header: unknown flags 0x%02x", h->format, h->flags);
		goto out;
	}
	if (want > E2B_MAX_SECTION) {
		WHY("V%u header: section of %u bytes, more than E2B's limit of %u", h->format, want,
		    E2B_MAX_SECTION);
		goto out;
	}
	if ((ret = lz4_section(p + 5, len - 5, want, &sec, why, whylen)))
		goto out;
	c = (struct cur){ sec, want, 0 };
	ret = e2b_builds_read(h, &c, why, whylen);
	if (!ret && h->format == 4) {
		uint32_t n;
		if (!take32(&c, &n)) {
			WHY("V4 mapping: truncated before its entry count");
			ret = -EINVAL;
		} else if (n > UBLK_MAX_EXTENTS || n > left(&c) / ENTRY) {
			WHY("V4 mapping: %u entries, more than %llu or than the %zu bytes left hold", n,
			    (ull)UBLK_MAX_EXTENTS, left(&c));
			ret = -EINVAL;
		} else {
			ret = mapping_fixed(h, &c, n, why, whylen);
		}
	} else if (!ret) {
		ret = mapping_v5(h, &c, why, whylen);
	}
	if (!ret && left(&c)) {
		WHY("V%u header: %zu bytes follow the mapping in its section", h->format, left(&c));
		ret = -EINVAL;
	}
	if (!ret)
		ret = e2b_builds_check(h, why, whylen);
out:
	free(sec);
	return ret;
}

int e2b_header_parse(const void *buf, size_t len, struct e2b_header **out, char *why,
		     size_t whylen)
{
	const uint8_t *p = buf;
	struct e2b_header *h = calloc(1, sizeof(*h));
	struct cur c = { p, len, 0 };
	int ret = -EINVAL;

	*out = NULL;
	if (!h)
		return WHY("out of memory"), -ENOMEM;
	if (len < E2B_META_SIZE) {
		WHY("%zu bytes: too short for an E2B header (64 bytes of metadata)", len);
		goto out;
	}
	take64(&c, &h->version);
	take64(&c, &h->block_size);
	take64(&c, &h->size);
	take64(&c, &h->generation);
	take(&c, h->build_id, 16);
	take(&c, h->base_build_id, 16);
	h->format = (unsigned)(h->version & E2B_VERSION_MASK);
	if (h->format < 1 || h->format > 5) {
		WHY("version %llu (layout %u): not an E2B header version this tool reads (1 to 5)",
		    (ull)h->version, h->format);
		goto out;
	}
	if (!h->block_size) {
		WHY("block size 0 (E2B requires a non-zero block size)");
		goto out;
	}
	if (!h->size) {
		WHY("size 0: an empty device");
		goto out;
	}
	if (h->size > UBLK_MAX_IMAGE_SIZE || span(h) / E2B_PAGE > E2B_MAX_BLOCK_INDEX) {
		WHY("size %llu is larger than the supported maximum %llu", (ull)h->size,
		    (ull)(E2B_MAX_BLOCK_INDEX * E2B_PAGE));
		goto out;
	}
	if (!memcmp(h->build_id, nil, 16)) {
		WHY("build id is nil: its ranges could not be told from zeros");
		goto out;
	}
	if (h->format <= 3) {
		if (left(&c) % ENTRY) {
			WHY("V%u header: entry %zu is truncated (%zu bytes after the metadata, not a "
			    "multiple of 40)", h->format, left(&c) / ENTRY, left(&c));
			goto out;
		}
		if (left(&c) / ENTRY > UBLK_MAX_EXTENTS) {
			WHY("V%u header: %zu entries, more than the supported %llu", h->format,
			    left(&c) / ENTRY, (ull)UBLK_MAX_EXTENTS);
			goto out;
		}
		ret = mapping_fixed(h, &c, left(&c) / ENTRY, why, whylen);
	} else {
		ret = parse_framed(h, p + E2B_META_SIZE, len - E2B_META_SIZE, why, whylen);
	}
out:
	if (ret) {
		e2b_header_free(h);
		return ret;
	}
	*out = h;
	return 0;
}

int e2b_header_load(const char *path, const struct layer_http_opts *remote,
		    struct e2b_header **out, char *why, size_t whylen)
{
	struct blob *b = NULL;
	uint8_t *buf = NULL;
	char sub[700], name[1024];
	uint64_t size;
	int ret;

	*out = NULL;
	if ((ret = blob_open(path, remote, &b, why, whylen)))
		return ret;   /* the message names the path */
	http_name_for_log(path, name, sizeof(name));   /* a URL may carry credentials */
	size = blob_size(b);
	/* The largest header E2B writes: V1-V3 at our entry cap; V4/V5 are
	 * smaller, their section being capped once decompressed. */
	if (size > E2B_META_SIZE + UBLK_MAX_EXTENTS * ENTRY) {
		WHY("%s: %llu bytes, larger than any E2B header this tool reads", name, (ull)size);
		ret = -EINVAL;
		goto out;
	}
	if (!(buf = malloc(size ? size : 1))) {
		WHY("%s: out of memory for a %llu-byte header", name, (ull)size);
		ret = -ENOMEM;
		goto out;
	}
	if ((ret = blob_read(b, buf, size, 0))) {
		WHY("%s: reading the header: %s", name, strerror(-ret));
		goto out;
	}
	if ((ret = e2b_header_parse(buf, size, out, sub, sizeof(sub))))
		WHY("%s: %s", name, sub);
out:
	free(buf);
	blob_close(b);
	return ret;
}

int e2b_header_sniff(const char *path, const struct layer_http_opts *remote,
		     uint8_t meta[E2B_META_SIZE], size_t *got, char *why, size_t whylen)
{
	struct blob *b = NULL;
	int ret;

	*got = 0;
	if ((ret = blob_open(path, remote, &b, why, whylen)))
		return ret;
	*got = blob_size(b) < E2B_META_SIZE ? (size_t)blob_size(b) : E2B_META_SIZE;
	if ((ret = blob_read(b, meta, *got, 0))) {
		char name[1024];
		http_name_for_log(path, name, sizeof(name));   /* a URL may carry credentials */
		WHY("%s: %s", name, strerror(-ret));
		*got = 0;
	}
	blob_close(b);
	return ret;
}

bool e2b_header_plausible(const uint8_t *meta, size_t len)
{
	uint64_t version, size;

	if (len < 8)
		return false;
	memcpy(&version, meta, 8);
	version = le64toh(version) & E2B_VERSION_MASK;
	if (version < 1 || version > 5)
		return false;
	if (len < E2B_META_SIZE)
		return true;   /* too short: the E2B reader says so */
	memcpy(&size, meta + 16, 8);
	return le64toh(size) <= UBLK_MAX_IMAGE_SIZE;
}

void e2b_header_usage(const struct e2b_header *h, uint64_t *ranges, uint64_t *bytes)
{
	memset(ranges, 0, (h->n_ids + 1ull) * sizeof(*ranges));
	memset(bytes, 0, (h->n_ids + 1ull) * sizeof(*bytes));
	for (uint64_t i = 0; i < h->n_entries; i++) {
		uint32_t k = h->entries[i].id == E2B_NIL ? h->n_ids : h->entries[i].id;
		ranges[k]++;
		bytes[k] += h->entries[i].length;
	}
}
