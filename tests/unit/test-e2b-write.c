/* The E2B writer (common/image/e2b_write.c, docs/e2b.md, Writing a build):
 * merge and normalize against hand-computed mappings (E2B's mapping.go
 * semantics), headers of every layout read back by e2b_header_parse, the
 * golden headers of tests/e2b/golden/ (made by make-golden.py, not by us)
 * re-written byte for byte, and data frames that decompress back.
 *
 *   test-e2b-write [GOLDEN_DIR]  (default: tests/e2b/golden, or $UBLK_E2B_GOLDEN)
 *   test-e2b-write --make-cache CACHE SIZE BUILD_ID GENERATION [BLOCK[:z]...]
 *       a stopped device's cache over build BUILD_ID (no device needed):
 *       BLOCK written with fill_read's pattern, BLOCK:z discarded
 */
#include "util/aio.h"
#include "check.h"
#include "image/e2b_header.h"
#include "image/e2b_store.h"
#include "image/e2b_write.h"
#include "image/layer.h"
#include "util/sha256.h"
#include "image/layer_file.h"
#include "image/layer_cache.h"

#include <errno.h>
#include <fcntl.h>
#include <liburing.h>
#include <lz4frame.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>
#include <zstd.h>

#define P 4096ull
#define N E2B_NIL

static const char *dir = "tests/e2b/golden";
static const uint8_t ROOT[16] = { 0xa0, 0, 0, 0, 0, 0, 0x40, 0, 0x80, 0, 0, 0, 0, 0, 0, 1 };
static const uint8_t GEN1[16] = { 0xb0, 0, 0, 0, 0, 0, 0x40, 0, 0x80, 0, 0, 0, 0, 0, 0, 2 };
static const uint8_t GEN2[16] = { 0xc0, 0, 0, 0, 0, 0, 0x40, 0, 0x80, 0, 0, 0, 0, 0, 0, 3 };
static const uint8_t GEN3[16] = { 0xd0, 0, 0, 0, 0, 0, 0x40, 0, 0x80, 0, 0, 0, 0, 0, 0, 4 };

static uint8_t *slurp(const char *name, size_t *len)
{
	return check_slurp(dir, name, len);
}

static struct e2b_header *load(const char *name)
{
	size_t len;
	uint8_t *buf = slurp(name, &len);
	struct e2b_header *h = NULL;
	char why[512] = "";

	if (e2b_header_parse(buf, len, &h, why, sizeof(why))) {
		fprintf(stderr, "%s: %s\n", name, why);
		exit(2);
	}
	free(buf);
	return h;
}

static bool same_map(const char *what, const struct e2b_entry *got, size_t n,
		     const struct e2b_entry *want, size_t nw)
{
	bool ok = n == nw;
	for (size_t i = 0; ok && i < n; i++)
		ok = got[i].offset == want[i].offset && got[i].length == want[i].length &&
		     got[i].id == want[i].id && (want[i].id == N || got[i].storage == want[i].storage);
	CHECK(ok, "%s: mapping differs (%zu entries, want %zu)", what, n, nw);
	if (!ok)
		for (size_t i = 0; i < n; i++)
			fprintf(stderr, "  %llu +%llu id %d @%llu\n", (unsigned long long)got[i].offset,
				(unsigned long long)got[i].length, (int)got[i].id,
				(unsigned long long)got[i].storage);
	return ok;
}

/* normalize(merge(base, diff of ext with new id 9)) against want */
static void merge_case(const char *what, const struct e2b_entry *base, size_t nb,
		       const struct diff_extent *ext, size_t ne, const struct e2b_entry *want,
		       size_t nw)
{
	struct e2b_entry *d, *m;
	size_t nd, nm;

	CHECK(e2b_diff_mapping(ext, ne, 9, &d, &nd) == 0, "%s: diff mapping", what);
	CHECK(e2b_merge_mappings(base, nb, d, nd, &m, &nm) == 0, "%s: merge", what);
	nm = e2b_normalize_mappings(m, nm);
	same_map(what, m, nm, want, nw);
	free(d);
	free(m);
}

#define LEN(a) (sizeof(a) / sizeof((a)[0]))

static void test_mapping(void)
{
	struct e2b_entry *d, *m;
	size_t nd, nm;

	/* the diff mapping: data packed from 0 in order, zeros nil, adjacent
	 * extents of one kind joined as E2B's bitmap runs are */
	{
		struct diff_extent x[] = { { 4, 2, DIFF_DATA }, { 6, 1, DIFF_ZERO }, { 7, 1, DIFF_DATA },
					   { 8, 3, DIFF_DATA }, { 12, 1, DIFF_ZERO }, { 13, 2, DIFF_ZERO } };
		struct e2b_entry w[] = { { 4 * P, 2 * P, 0, 9 }, { 6 * P, P, 0, N }, { 7 * P, 4 * P, 2 * P, 9 },
					 { 12 * P, 3 * P, 0, N } };
		CHECK(e2b_diff_mapping(x, LEN(x), 9, &d, &nd) == 0, "diff mapping");
		same_map("diff mapping", d, nd, w, LEN(w));
		free(d);
	}
	/* unsorted or overlapping extents are refused */
	{
		struct diff_extent x[] = { { 4, 2, DIFF_DATA }, { 5, 1, DIFF_ZERO } };
		CHECK(e2b_diff_mapping(x, LEN(x), 9, &d, &nd) == -EINVAL, "overlapping extents refused");
	}
	struct e2b_entry whole[] = { { 0, 16 * P, 0, 0 } };
	/* a child range splitting a parent range: the right part's storage advances */
	{
		struct diff_extent x[] = { { 4, 2, DIFF_DATA } };
		struct e2b_entry w[] = { { 0, 4 * P, 0, 0 }, { 4 * P, 2 * P, 0, 9 }, { 6 * P, 10 * P, 6 * P, 0 } };
		merge_case("split", whole, 1, x, 1, w, LEN(w));
	}
	/* nil over data */
	{
		struct diff_extent x[] = { { 2, 1, DIFF_ZERO } };
		struct e2b_entry w[] = { { 0, 2 * P, 0, 0 }, { 2 * P, P, 0, N }, { 3 * P, 13 * P, 3 * P, 0 } };
		merge_case("nil over data", whole, 1, x, 1, w, LEN(w));
	}
	/* data over nil, and nil next to nil joins */
	{
		struct e2b_entry b[] = { { 0, 4 * P, 0, 0 }, { 4 * P, 4 * P, 0, N }, { 8 * P, 8 * P, 8 * P, 0 } };
		struct diff_extent x[] = { { 5, 1, DIFF_DATA }, { 8, 1, DIFF_ZERO } };
		struct e2b_entry w[] = { { 0, 4 * P, 0, 0 }, { 4 * P, P, 0, N }, { 5 * P, P, 0, 9 },
					 { 6 * P, 3 * P, 0, N }, { 9 * P, 7 * P, 9 * P, 0 } };
		merge_case("data over nil", b, LEN(b), x, LEN(x), w, LEN(w));
	}
	/* a diff across several parent ranges; the parent's pieces of one
	 * build rejoin only where their storage is contiguous */
	{
		struct e2b_entry b[] = { { 0, 4 * P, 0, 0 }, { 4 * P, 4 * P, 0, 1 }, { 8 * P, 8 * P, 8 * P, 0 } };
		struct diff_extent x[] = { { 2, 8, DIFF_DATA } };
		struct e2b_entry w[] = { { 0, 2 * P, 0, 0 }, { 2 * P, 8 * P, 0, 9 }, { 10 * P, 6 * P, 10 * P, 0 } };
		merge_case("across", b, LEN(b), x, LEN(x), w, LEN(w));
	}
	/* the child overwriting the parent's own range puts back contiguous
	 * storage of the root: E2B's normalize joins root pieces */
	{
		struct e2b_entry b[] = { { 0, 4 * P, 0, 0 }, { 4 * P, 4 * P, 0, 1 }, { 8 * P, 8 * P, 8 * P, 0 } };
		struct diff_extent x[] = { { 4, 4, DIFF_ZERO } };
		struct e2b_entry w[] = { { 0, 4 * P, 0, 0 }, { 4 * P, 4 * P, 0, N }, { 8 * P, 8 * P, 8 * P, 0 } };
		merge_case("zeroing a build", b, LEN(b), x, LEN(x), w, LEN(w));
	}
	/* whole-device overwrite: one range of the child */
	{
		struct diff_extent x[] = { { 0, 10, DIFF_DATA }, { 10, 6, DIFF_DATA } };
		struct e2b_entry w[] = { { 0, 16 * P, 0, 9 } };
		merge_case("whole device", whole, 1, x, LEN(x), w, LEN(w));
	}
	/* at the very start and the very end */
	{
		struct diff_extent x[] = { { 0, 1, DIFF_DATA }, { 15, 1, DIFF_DATA } };
		struct e2b_entry w[] = { { 0, P, 0, 9 }, { P, 14 * P, P, 0 }, { 15 * P, P, P, 9 } };
		merge_case("edges", whole, 1, x, LEN(x), w, LEN(w));
	}
	/* no change: the parent's mapping */
	merge_case("no change", whole, 1, NULL, 0, whole, 1);
	/* normalize: same build but storage not contiguous stays apart */
	{
		struct e2b_entry a[] = { { 0, 2 * P, 0, 3 }, { 2 * P, 2 * P, 2 * P, 3 }, { 4 * P, P, 9 * P, 3 },
					 { 5 * P, P, 0, N }, { 6 * P, P, 7 * P, N }, { 7 * P, P, 0, 4 } };
		struct e2b_entry w[] = { { 0, 4 * P, 0, 3 }, { 4 * P, P, 9 * P, 3 }, { 5 * P, 2 * P, 0, N },
					 { 7 * P, P, 0, 4 } };
		size_t n = e2b_normalize_mappings(a, LEN(a));
		same_map("normalize", a, n, w, LEN(w));
	}
	(void)m;
	(void)nm;
}

/* The decompressed section of a V4/V5 header (after 64 + 5 bytes). */
static uint8_t *section(const uint8_t *buf, size_t len, size_t *out)
{
	uint32_t want;
	memcpy(&want, buf + 69, 4);
	size_t dl = want, sl = len - 69;
	uint8_t *d = malloc(want + 1);
	LZ4F_dctx *dc;
	LZ4F_createDecompressionContext(&dc, LZ4F_VERSION);
	size_t r = LZ4F_decompress(dc, d, &dl, buf + 69, &sl, NULL);
	LZ4F_freeDecompressionContext(dc);
	*out = LZ4F_isError(r) ? (size_t)-1 : dl;
	return d;
}

/* Parse a golden header and write it again: the same bytes (V1-V3), the
 * same metadata and section (V4/V5; the LZ4 bytes may differ by encoder). */
static void test_golden_rewrite(void)
{
	const char *names[] = { "v1.header", "v2.header", "v3.header", "v3-masked.header",
				"chain-gen1.header", "chain-gen2.header", "v3-resized.header",
				"v3-memfile.header", "v4.header", "v5.header", "v5-unaligned.header",
				"v5-memfile.header", "v4-memfile.header", "v5-empty.header" };
	for (size_t i = 0; i < LEN(names); i++) {
		size_t len, olen, sl, osl;
		uint8_t *want = slurp(names[i], &len), *got = NULL;
		struct e2b_header *h = load(names[i]);
		char why[512] = "";
		int ret = e2b_header_serialize(h, &got, &olen, why, sizeof(why));
		CHECK(ret == 0, "%s: serialize: %s", names[i], why);
		if (!ret && h->format <= 3) {
			CHECK(olen == len && !memcmp(got, want, len), "%s: bytes differ", names[i]);
		} else if (!ret) {
			uint8_t *a = section(want, len, &sl), *b = section(got, olen, &osl);
			CHECK(!memcmp(got, want, 69), "%s: metadata/flags/size differ", names[i]);
			CHECK(sl == osl && sl != (size_t)-1 && !memcmp(a, b, sl), "%s: section differs",
			      names[i]);
			free(a);
			free(b);
		}
		free(want);
		free(got);
		e2b_header_free(h);
	}
}

static struct e2b_header *reparse(const char *what, const struct e2b_header *h)
{
	uint8_t *buf;
	size_t len;
	char why[512] = "";
	struct e2b_header *r = NULL;

	if (e2b_header_serialize(h, &buf, &len, why, sizeof(why))) {
		CHECK(0, "%s: serialize: %s", what, why);
		return NULL;
	}
	CHECK(e2b_header_parse(buf, len, &r, why, sizeof(why)) == 0, "%s: reparse: %s", what, why);
	free(buf);
	return r;
}

/* The golden chain: gen1 (V3) + blocks 6-9 written, 12 discarded = gen2 */
static void test_next_header(void)
{
	struct e2b_header *g1 = load("chain-gen1.header"), *h, *r;
	struct diff_extent x[] = { { 6, 4, DIFF_DATA }, { 12, 1, DIFF_ZERO } };
	struct e2b_frame fr[2] = { { 0, 0, 2 * P, 100 }, { 2 * P, 100, 2 * P, 120 } };
	struct e2b_build self = { .size = 4 * P, .codec = E2B_CODEC_ZSTD, .n_frames = 2, .frames = fr };
	struct e2b_build plain = { .size = 4 * P };
	char why[512] = "";
	uint8_t *buf;
	size_t len, glen;

	CHECK(e2b_next_header(g1, x, LEN(x), GEN2, 0, &plain, NULL, NULL, &h, why, sizeof(why)) == 0,
	      "gen2: %s", why);
	CHECK(h && e2b_header_serialize(h, &buf, &len, why, sizeof(why)) == 0, "gen2 bytes: %s", why);
	uint8_t *want = slurp("chain-gen2.header", &glen);
	CHECK(h && len == glen && !memcmp(buf, want, glen),
	      "gen2 written from gen1 is not chain-gen2.header byte for byte");
	free(want);
	free(buf);
	e2b_header_free(h);

	/* every layout reads back; V4/V5 carry records for the whole chain */
	for (unsigned f = 1; f <= 5; f++) {
		char what[32];
		snprintf(what, sizeof(what), "layout %u", f);
		why[0] = 0;
		CHECK(e2b_next_header(g1, x, LEN(x), GEN2, f, f >= 4 ? &self : &plain, NULL, NULL, &h,
				      why, sizeof(why)) == 0, "%s: %s", what, why);
		if (!h)
			continue;
		r = reparse(what, h);
		if (r) {
			CHECK(r->format == f && r->version == f, "%s: version %llu", what,
			      (unsigned long long)r->version);
			CHECK(r->generation == 2 && !memcmp(r->build_id, GEN2, 16) &&
			      !memcmp(r->base_build_id, ROOT, 16) && r->size == 16 * P &&
			      r->block_size == P, "%s: metadata", what);
			CHECK(r->n_entries == 6 && r->n_ids == 3, "%s: %llu entries, %u ids", what,
			      (unsigned long long)r->n_entries, r->n_ids);
			CHECK(r->flags == 0, "%s: flags", what);
			if (f >= 4) {
				const struct e2b_build *s = e2b_header_build(r, GEN2),
					*a = e2b_header_build(r, ROOT), *b = e2b_header_build(r, GEN1);
				CHECK(r->n_builds == 3 && s && a && b, "%s: %u records", what, r->n_builds);
				CHECK(s && s->codec == E2B_CODEC_ZSTD && s->n_frames == 2 &&
				      s->frames[1].size_c == 120 && s->size == 4 * P, "%s: self record", what);
				CHECK(a && !a->size && !a->n_frames && b && !b->size,
				      "%s: a V3 chain's ancestors get E2B's empty records", what);
			}
		}
		e2b_header_free(r);
		e2b_header_free(h);
	}
	/* layout 3 cannot say the data is compressed */
	CHECK(e2b_next_header(g1, x, LEN(x), GEN2, 3, &self, NULL, NULL, &h, why, sizeof(why)) ==
	      -EINVAL && strstr(why, "layout 4 or 5"), "V3 with compression refused: %s", why);
	/* a build id already in the chain, or the parent's own */
	CHECK(e2b_next_header(g1, x, LEN(x), ROOT, 0, &plain, NULL, NULL, &h, why, sizeof(why)) ==
	      -EINVAL && strstr(why, "already"), "id in the chain refused: %s", why);
	CHECK(e2b_next_header(g1, x, LEN(x), GEN1, 0, &plain, NULL, NULL, &h, why, sizeof(why)) ==
	      -EINVAL, "parent id refused: %s", why);
	/* a changed block past the parent's size (a resized device) */
	{
		struct diff_extent big[] = { { 16, 1, DIFF_DATA } };
		CHECK(e2b_next_header(g1, big, 1, GEN2, 0, &plain, NULL, NULL, &h, why, sizeof(why)) ==
		      -EINVAL && strstr(why, "past the parent's size"), "size change refused: %s", why);
	}
	/* the version's upper bits are kept with the layout (NextGeneration) */
	{
		struct e2b_header *m = load("v3-masked.header");
		CHECK(e2b_next_header(m, x, LEN(x), GEN2, 0, &plain, NULL, NULL, &h, why, sizeof(why)) == 0,
		      "masked: %s", why);
		CHECK(h && h->version == 0x10003, "masked version kept");
		e2b_header_free(h);
		CHECK(e2b_next_header(m, x, LEN(x), GEN2, 5, &self, NULL, NULL, &h, why, sizeof(why)) == 0,
		      "masked to 5: %s", why);
		CHECK(h && h->version == 5, "a new layout is the plain number");
		e2b_header_free(h);
		e2b_header_free(m);
	}
	e2b_header_free(g1);

	/* over a V4 parent (golden v4: ROOT plain, GEN1 zstd, GEN2 lz4 with 2
	 * frames): GEN1 overwritten whole loses its record; GEN2's range cut
	 * to its second frame keeps only that frame */
	{
		struct e2b_header *p = load("v4.header");
		/* gen2 map: ROOT 0-4, GEN1 4-6, GEN2 6-10 (st 0), ROOT 10-12, NIL 12, ROOT 13-16 */
		struct diff_extent y[] = { { 4, 4, DIFF_DATA } };
		struct e2b_frame f3[1] = { { 0, 0, 4 * P, 50 } };
		struct e2b_build s3 = { .size = 4 * P, .codec = E2B_CODEC_LZ4, .n_frames = 1, .frames = f3 };
		CHECK(e2b_next_header(p, y, 1, GEN3, 0, &s3, NULL, NULL, &h, why, sizeof(why)) == 0,
		      "gen3: %s", why);
		r = h ? reparse("gen3", h) : NULL;
		if (r) {
			const struct e2b_build *g2 = e2b_header_build(r, GEN2);
			CHECK(r->format == 4 && r->generation == 3 && !memcmp(r->base_build_id, ROOT, 16),
			      "gen3 metadata");
			CHECK(!e2b_header_build(r, GEN1), "gen3: no record of a build no longer mapped");
			CHECK(e2b_header_build(r, ROOT) && e2b_header_build(r, GEN3), "gen3: records");
			CHECK(g2 && g2->n_frames == 1 && g2->frames[0].start_u == 2 * P &&
			      g2->frames[0].start_c == 2000, "gen3: GEN2's table trimmed to frame 1");
			CHECK(r->n_entries == 6 && r->entries[1].id != E2B_NIL &&
			      r->entries[1].offset == 4 * P && r->entries[1].length == 4 * P &&
			      r->entries[2].offset == 8 * P && r->entries[2].storage == 2 * P,
			      "gen3 mapping");
		}
		e2b_header_free(r);
		e2b_header_free(h);
		e2b_header_free(p);
	}
}

/* E2B's heal: a record the parent lacks comes from the ancestor's own
 * header (the lookup); without one it stays absent under a V4 parent. */
static int lookups;

static int give_gen1(void *ctx, const uint8_t id[16], struct e2b_build *rec)
{
	(void)ctx;
	lookups++;
	if (memcmp(id, GEN1, 16))
		return 0;
	*rec = (struct e2b_build){ .size = 77 };
	return 1;
}

static void test_records_and_edges(void)
{
	struct e2b_header *p = load("v4.header"), *h = NULL, *r;
	struct diff_extent x[] = { { 0, 1, DIFF_DATA } };
	struct e2b_build self = { .size = P };
	char why[512] = "";

	/* drop GEN1's record from the parent (records: ROOT, GEN1, GEN2 sorted) */
	for (uint32_t i = 0; i < p->n_builds; i++)
		if (!memcmp(p->builds[i].id, GEN1, 16)) {
			struct e2b_build t = p->builds[i];
			p->builds[i] = p->builds[p->n_builds - 1];
			p->builds[p->n_builds - 1] = t;
		}
	p->n_builds--;
	free(p->builds[p->n_builds].frames);
	p->builds[p->n_builds].frames = NULL;
	free(p->id_build);
	p->id_build = NULL;
	lookups = 0;
	CHECK(e2b_next_header(p, x, 1, GEN3, 0, &self, give_gen1, NULL, &h, why, sizeof(why)) == 0,
	      "heal: %s", why);
	r = h ? reparse("heal", h) : NULL;
	CHECK(lookups == 1, "the lookup asked once, for the build without a record (%d)", lookups);
	CHECK(r && e2b_header_build(r, GEN1) && e2b_header_build(r, GEN1)->size == 77,
	      "healed record written");
	e2b_header_free(r);
	e2b_header_free(h);
	CHECK(e2b_next_header(p, x, 1, GEN3, 0, &self, NULL, NULL, &h, why, sizeof(why)) == 0,
	      "no heal: %s", why);
	r = h ? reparse("no heal", h) : NULL;
	CHECK(r && !e2b_header_build(r, GEN1) && r->n_builds == 3,
	      "under a V4 parent a record nobody has stays absent");
	e2b_header_free(r);
	e2b_header_free(h);

	/* never an empty mapping in layouts 1-4: it would read as own data */
	{
		struct e2b_header e = { .version = 4, .format = 4, .block_size = P, .size = P };
		uint8_t *buf = NULL;
		size_t len;
		memcpy(e.build_id, GEN3, 16);
		CHECK(e2b_header_serialize(&e, &buf, &len, why, sizeof(why)) == -EINVAL &&
		      strstr(why, "empty mapping"), "empty V4 mapping refused: %s", why);
		free(buf);
	}
	e2b_header_free(p);

	/* all zeros in layout 5: no stored range, read back as one nil range */
	{
		struct e2b_header *g1 = load("chain-gen1.header");
		struct diff_extent z[] = { { 0, 16, DIFF_ZERO } };
		CHECK(e2b_next_header(g1, z, 1, GEN2, 5, &self, NULL, NULL, &h, why, sizeof(why)) == 0,
		      "all nil: %s", why);
		r = h ? reparse("all nil", h) : NULL;
		CHECK(r && r->n_entries == 1 && r->entries[0].id == E2B_NIL && r->n_ids == 0,
		      "all nil V5 reads as zeros");
		e2b_header_free(r);
		e2b_header_free(h);
		/* the same in layout 3: one nil entry, not an empty mapping */
		CHECK(e2b_next_header(g1, z, 1, GEN2, 3, &self, NULL, NULL, &h, why, sizeof(why)) == 0,
		      "all nil V3: %s", why);
		r = h ? reparse("all nil V3", h) : NULL;
		CHECK(r && !r->implicit && r->n_entries == 1 && r->entries[0].id == E2B_NIL,
		      "all nil V3 is one nil entry");
		e2b_header_free(r);
		e2b_header_free(h);
		e2b_header_free(g1);
	}
	/* a memory snapshot: 2 MiB blocks, page-granular ranges, kept */
	{
		struct e2b_header *m = load("v5-memfile.header");
		struct diff_extent w[] = { { 1, 1, DIFF_DATA }, { 300, 2, DIFF_DATA } };
		CHECK(e2b_next_header(m, w, 2, GEN2, 0, &self, NULL, NULL, &h, why, sizeof(why)) == 0,
		      "memfile: %s", why);
		r = h ? reparse("memfile", h) : NULL;
		CHECK(r && r->block_size == 2 << 20 && r->format == 5 && r->generation == 2,
		      "memfile child metadata");
		e2b_header_free(r);
		e2b_header_free(h);
		e2b_header_free(m);
	}
}

/* ---- data ---- */

static int fill_read(void *ctx, uint64_t block, uint32_t count, void *buf)
{
	(void)ctx;
	for (uint32_t i = 0; i < count; i++)
		for (size_t k = 0; k < P; k += 8) {
			uint64_t v = (block + i) * 0x9E3779B97F4A7C15ull ^ (k / 64);
			memcpy((uint8_t *)buf + i * P + k, &v, 8);
		}
	return 0;
}

static const struct diff_source fill_source = { .read = fill_read };

static void test_data(enum e2b_codec codec)
{
	struct diff_extent x[] = { { 1, 2, DIFF_DATA }, { 3, 1, DIFF_ZERO }, { 10, 3, DIFF_DATA } };
	struct e2b_data_opts o = { .codec = codec, .frame_size = 2 * P };
	struct e2b_build self = { 0 };
	uint8_t *plain = malloc(5 * P), *file, *back = malloc(2 * P + 1);
	uint8_t sha[32];
	uint64_t bytes = 0;
	char why[256] = "";
	int fd = memfd_create("e2b", 0);
	struct sha256 s;
	const char *cn = e2b_codec_name(codec);

	fill_read(NULL, 1, 2, plain);
	fill_read(NULL, 10, 3, plain + 2 * P);
	sha256_init(&s);
	sha256_update(&s, plain, 5 * P);
	sha256_final(&s, sha);
	CHECK(e2b_write_data(fd, x, LEN(x), &fill_source, &o, &self, &bytes, why,
			     sizeof(why)) == 0, "%s: write: %s", cn, why);
	CHECK(self.size == 5 * P && !memcmp(self.sha256, sha, 32), "%s: size and SHA-256", cn);
	CHECK((uint64_t)lseek(fd, 0, SEEK_END) == bytes, "%s: file bytes", cn);
	file = malloc(bytes);
	CHECK(pread(fd, file, bytes, 0) == (ssize_t)bytes, "%s: read back", cn);
	if (codec == E2B_CODEC_NONE) {
		CHECK(self.codec == E2B_CODEC_NONE && !self.n_frames && bytes == 5 * P &&
		      !memcmp(file, plain, 5 * P), "none: packed blocks as they are");
	} else {
		uint64_t u = 0, c = 0;
		CHECK(self.codec == codec && self.n_frames == 3, "%s: 3 frames (%u)", cn, self.n_frames);
		for (uint32_t i = 0; i < self.n_frames; i++) {
			const struct e2b_frame *f = &self.frames[i];
			size_t got = 0;
			CHECK(f->start_u == u && f->start_c == c && f->size_u == (i < 2 ? 2 * P : P),
			      "%s: frame %u table", cn, i);
			if (codec == E2B_CODEC_ZSTD) {
				/* Frame_Header_Descriptor bit 2: Content_Checksum_flag */
				CHECK(file[c] == 0x28 && (file[c + 4] & 4), "zstd: frame %u has a content checksum", i);
				CHECK(ZSTD_findFrameCompressedSize(file + c, f->size_c) == f->size_c,
				      "zstd: frame %u is one zstd frame", i);
				got = ZSTD_decompress(back, 2 * P + 1, file + c, f->size_c);
			} else {
				LZ4F_dctx *dc;
				size_t dl = 2 * P + 1, sl = f->size_c, r;
				/* FLG: version 01, block independence, block checksum, no content checksum */
				CHECK((file[c + 4] & 0x14) == 0x10 && (file[c + 5] & 0x70) == 0x70,
				      "lz4: frame %u: block checksum on, content checksum off, 4 MB blocks", i);
				LZ4F_createDecompressionContext(&dc, LZ4F_VERSION);
				r = LZ4F_decompress(dc, back, &dl, file + c, &sl, NULL);
				LZ4F_freeDecompressionContext(dc);
				got = r == 0 && sl == f->size_c ? dl : 0;
			}
			CHECK(got == f->size_u && !memcmp(back, plain + u, got), "%s: frame %u decompresses back",
			      cn, i);
			u += f->size_u;
			c += f->size_c;
		}
		CHECK(c == bytes && u == 5 * P, "%s: frames cover the file", cn);
	}
	free(self.frames);
	free(file);
	free(plain);
	free(back);
	close(fd);
}

static void test_data_edges(void)
{
	struct diff_extent z[] = { { 3, 1, DIFF_ZERO } };
	struct e2b_data_opts o = { .codec = E2B_CODEC_ZSTD, .frame_size = 2 * P };
	struct e2b_build self = { 0 };
	uint64_t bytes = 1;
	char why[256];
	int fd = memfd_create("e2b", 0);

	/* no data: an empty file, recorded uncompressed (an empty table would
	 * read as uncompressed anyway) */
	CHECK(e2b_write_data(fd, z, 1, &fill_source, &o, &self, &bytes, why, sizeof(why)) == 0 &&
	      bytes == 0 && self.codec == E2B_CODEC_NONE && self.size == 0, "no data");
	o.frame_size = 1000;
	CHECK(e2b_write_data(fd, z, 1, &fill_source, &o, &self, &bytes, why, sizeof(why)) ==
	      -EINVAL, "frame size not a multiple of 4096 refused");
	close(fd);
}

/* --level reaches zstd: 19 packs the pattern smaller than 1 does */
static void test_level(void)
{
	struct diff_extent x[] = { { 0, 64, DIFF_DATA } };
	uint64_t bytes[2] = { 0, 0 };
	char why[256] = "";

	for (int i = 0; i < 2; i++) {
		struct e2b_data_opts o = { .codec = E2B_CODEC_ZSTD, .frame_size = 32 * P,
					   .level = i ? 19 : 1 };
		struct e2b_build self = { 0 };
		int fd = memfd_create("e2b", 0);
		CHECK(e2b_write_data(fd, x, LEN(x), &fill_source, &o, &self, &bytes[i], why,
				     sizeof(why)) == 0, "level %d: %s", o.level, why);
		free(self.frames);
		close(fd);
	}
	CHECK(bytes[1] < bytes[0], "level 19: %llu bytes, level 1: %llu",
	      (unsigned long long)bytes[1], (unsigned long long)bytes[0]);
}

/* A write that fails on the packer's thread is the call's failure, told,
 * for every codec; a read that fails on the caller's stops the packer. */
static int fail_at_40(void *ctx, uint64_t block, uint32_t count, void *buf)
{
	return block + count > 40 ? -EIO : fill_read(ctx, block, count, buf);
}

static void test_data_failures(void)
{
	static const struct diff_source failing_source = { .read = fail_at_40 };
	struct diff_extent x[] = { { 0, 64, DIFF_DATA } };
	char why[256];

	for (int codec = E2B_CODEC_NONE; codec <= E2B_CODEC_LZ4; codec++) {
		struct e2b_data_opts o = { .codec = (enum e2b_codec)codec, .frame_size = 8 * P };
		struct e2b_build self = { 0 };
		uint64_t bytes = 0;
		int fd = open("/dev/null", O_RDONLY);
		why[0] = 0;
		CHECK(e2b_write_data(fd, x, LEN(x), &fill_source, &o, &self, &bytes, why,
				     sizeof(why)) == -EBADF && strstr(why, "writing the data: Bad file"),
		      "codec %d: write failure: %s", codec, why);
		CHECK(!self.frames && !self.n_frames, "codec %d: no frame table left", codec);
		close(fd);
		fd = memfd_create("e2b", 0);
		CHECK(e2b_write_data(fd, x, LEN(x), &failing_source, &o, &self, &bytes, why,
				     sizeof(why)) == -EIO && strstr(why, "reading block ") && strstr(why, "Input/output"),
		      "codec %d: read failure: %s", codec, why);
		close(fd);
	}
}

struct mio {
	struct layer_io io;     /* first: done gets it */
	int res;
};

static void io_done(struct layer_io *io, int res)
{
	((struct mio *)io)->res = res;
}

static int make_cache(int argc, char **argv)
{
	const char *cache = argv[2];
	uint64_t size = strtoull(argv[3], NULL, 0), gen = strtoull(argv[5], NULL, 0);
	char base[4200], why[600];
	struct layer *lower, *top;
	struct io_uring ring;
	struct aio aio = { .ring = &ring };
	uint8_t *buf = aligned_alloc(4096, P);
	void *priv;
	int fd;

	snprintf(base, sizeof(base), "%s.base", cache);
	fd = open(base, O_RDWR | O_CREAT | O_TRUNC, 0644);
	if (fd < 0 || ftruncate(fd, (off_t)size) || close(fd) || layer_file_open(base, true, &lower)) {
		fprintf(stderr, "%s: cannot make the base\n", base);
		return 2;
	}
	/* the cache records the layer below as its parent: the build, whose
	 * own id is its version (no file line) */
	lower->version_key = NULL;
	lower->version[0] = 0;
	if (!e2b_parse_build_id(argv[4], lower->id)) {
		fprintf(stderr, "%s: not a build id\n", argv[4]);
		return 2;
	}
	lower->generation = gen;
	if (layer_cache_open(cache, lower, 0, false, &top, why, sizeof(why))) {
		fprintf(stderr, "%s\n", why);
		return 2;
	}
	priv = calloc(1, layer_stack_priv_size(top) + 16);
	if (io_uring_queue_init(8, &ring, 0))
		return 2;
	for (int i = 6; i < argc; i++) {
		uint64_t b = strtoull(argv[i], NULL, 0);
		struct mio m = { .io = { .op = strstr(argv[i], ":z") ? LAYER_DISCARD : LAYER_WRITE,
					 .off = b * P, .len = P, .buf = buf, .done = io_done,
					 .aio = &aio, .priv = priv }, .res = -EINPROGRESS };
		fill_read(NULL, b, 1, buf);
		layer_submit(top, &m.io);
		if (aio_drain(&aio) || m.res < 0) {
			fprintf(stderr, "block %llu: %d\n", (unsigned long long)b, m.res);
			return 2;
		}
	}
	io_uring_queue_exit(&ring);
	layer_close(top);
	free(priv);
	free(buf);
	return 0;
}

int main(int argc, char **argv)
{
	if (argc >= 6 && !strcmp(argv[1], "--make-cache"))
		return make_cache(argc, argv);
	if (argc > 1)
		dir = argv[1];
	else if (getenv("UBLK_E2B_GOLDEN"))
		dir = getenv("UBLK_E2B_GOLDEN");
	test_mapping();
	test_golden_rewrite();
	test_next_header();
	test_records_and_edges();
	test_data(E2B_CODEC_NONE);
	test_data(E2B_CODEC_ZSTD);
	test_level();
	test_data_failures();
	test_data(E2B_CODEC_LZ4);
	test_data_edges();
	return check_summary();
}
