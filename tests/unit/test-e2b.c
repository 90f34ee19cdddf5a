/* Host unit tests of the E2B header reader (common/image/e2b_header.c,
 * docs/e2b.md) against the golden headers of tests/e2b/golden/, which
 * tests/e2b/make-golden.py builds from E2B's format by hand, not with
 * our writer. Good headers must parse to the model written out below;
 * bad ones must be refused with exactly the message below, whole.
 *
 *   test-e2b [GOLDEN_DIR]     (default: tests/e2b/golden, or $UBLK_E2B_GOLDEN)
 */
#include "check.h"
#include "image/e2b_header.h"

#include <endian.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define P 4096ull
#define MIB (1ull << 20)

static const char *dir = "tests/e2b/golden";
static const uint8_t NIL[16];
static const uint8_t ROOT[16] = { 0xa0, 0, 0, 0, 0, 0, 0x40, 0, 0x80, 0, 0, 0, 0, 0, 0, 1 };
static const uint8_t GEN1[16] = { 0xb0, 0, 0, 0, 0, 0, 0x40, 0, 0x80, 0, 0, 0, 0, 0, 0, 2 };
static const uint8_t GEN2[16] = { 0xc0, 0, 0, 0, 0, 0, 0x40, 0, 0x80, 0, 0, 0, 0, 0, 0, 3 };

static uint8_t *slurp(const char *name, size_t *len)
{
	return check_slurp(dir, name, len);
}

static struct e2b_header *good(const char *name)
{
	size_t len;
	uint8_t *buf = slurp(name, &len);
	struct e2b_header *h = NULL;
	char why[512] = "";
	int ret = e2b_header_parse(buf, len, &h, why, sizeof(why));

	CHECK(ret == 0 && h, "%s: refused (%d): %s", name, ret, why);
	free(buf);
	return ret ? NULL : h;
}

static void bad(const char *name, const char *want)
{
	size_t len;
	uint8_t *buf = slurp(name, &len);
	struct e2b_header *h = (struct e2b_header *)1;
	char why[512] = "";
	int ret = e2b_header_parse(buf, len, &h, why, sizeof(why));

	CHECK(ret == -EINVAL && !h, "%s: accepted or wrong code %d", name, ret);
	CHECK(!strcmp(why, want), "%s:\n  said: %s\n  want: %s", name, why, want);
	free(buf);
}

static bool same_id(const struct e2b_header *h, uint32_t idx, const uint8_t *want)
{
	if (idx == E2B_NIL)
		return !memcmp(want, NIL, 16);
	return idx < h->n_ids && !memcmp(h->ids[idx], want, 16);
}

/* entry i is [off, off + len) of build id (NIL: zeros) at storage */
static void ent(const char *name, const struct e2b_header *h, uint64_t i, uint64_t off,
		uint64_t len, const uint8_t *id, uint64_t storage)
{
	if (i >= h->n_entries) {
		CHECK(0, "%s: no entry %llu", name, (unsigned long long)i);
		return;
	}
	const struct e2b_entry *e = &h->entries[i];
	CHECK(e->offset == off && e->length == len && same_id(h, e->id, id) && e->storage == storage,
	      "%s: entry %llu is %llu+%llu @%llu id %u", name, (unsigned long long)i,
	      (unsigned long long)e->offset, (unsigned long long)e->length,
	      (unsigned long long)e->storage, e->id);
}

static void meta(const char *name, const struct e2b_header *h, unsigned format, uint64_t bs,
		 uint64_t size, uint64_t gen, const uint8_t *build, uint64_t n_entries)
{
	CHECK(h->format == format && h->block_size == bs && h->size == size && h->generation == gen,
	      "%s: format %u, block size %llu, size %llu, generation %llu", name, h->format,
	      (unsigned long long)h->block_size, (unsigned long long)h->size,
	      (unsigned long long)h->generation);
	CHECK(!memcmp(h->build_id, build, 16) && !memcmp(h->base_build_id, ROOT, 16),
	      "%s: build or base build id", name);
	CHECK(h->n_entries == n_entries, "%s: %llu entries, want %llu", name,
	      (unsigned long long)h->n_entries, (unsigned long long)n_entries);
}

static void test_v1_to_v3(void)
{
	static const char *names[] = { "v1.header", "v2.header", "v3.header", "v3-masked.header" };
	for (int k = 0; k < 4; k++) {
		struct e2b_header *h = good(names[k]);
		if (!h)
			continue;
		meta(names[k], h, k < 3 ? k + 1u : 3u, P, 16 * P, 1, GEN1, 4);
		CHECK(h->version == (k < 3 ? k + 1ull : 0x10003ull), "%s: version", names[k]);
		ent(names[k], h, 0, 0, 2 * P, ROOT, 0);
		ent(names[k], h, 1, 2 * P, 2 * P, GEN1, 0);
		ent(names[k], h, 2, 4 * P, 2 * P, NIL, 0);
		ent(names[k], h, 3, 6 * P, 10 * P, ROOT, 6 * P);
		CHECK(h->n_ids == 2 && !h->implicit && !h->n_builds && !h->flags, "%s: ids/builds",
		      names[k]);
		e2b_header_free(h);
	}
}

static void test_chain(void)
{
	struct e2b_header *h;

	if ((h = good("chain-gen0.header"))) {
		/* an empty mapping: the whole device is this build's own data */
		meta("gen0", h, 3, P, 16 * P, 0, ROOT, 1);
		CHECK(h->implicit, "gen0: implicit");
		ent("gen0", h, 0, 0, 16 * P, ROOT, 0);
		e2b_header_free(h);
	}
	if ((h = good("chain-gen1.header"))) {
		meta("gen1", h, 3, P, 16 * P, 1, GEN1, 3);
		ent("gen1", h, 0, 0, 4 * P, ROOT, 0);
		ent("gen1", h, 1, 4 * P, 4 * P, GEN1, 0);
		ent("gen1", h, 2, 8 * P, 8 * P, ROOT, 8 * P);
		e2b_header_free(h);
	}
	if ((h = good("chain-gen2.header"))) {
		/* base_build_id stays the root two generations on */
		meta("gen2", h, 3, P, 16 * P, 2, GEN2, 6);
		ent("gen2", h, 0, 0, 4 * P, ROOT, 0);
		ent("gen2", h, 1, 4 * P, 2 * P, GEN1, 0);
		ent("gen2", h, 2, 6 * P, 4 * P, GEN2, 0);
		ent("gen2", h, 3, 10 * P, 2 * P, ROOT, 10 * P);
		ent("gen2", h, 4, 12 * P, P, NIL, 0);
		ent("gen2", h, 5, 13 * P, 3 * P, ROOT, 13 * P);
		CHECK(h->n_ids == 3 && !memcmp(h->ids[0], ROOT, 16) && !memcmp(h->ids[1], GEN1, 16) &&
		      !memcmp(h->ids[2], GEN2, 16), "gen2: ids in order of appearance");
		e2b_header_free(h);
	}
	if ((h = good("v3-resized.header"))) {
		meta("resized", h, 3, P, 32 * P, 1, GEN1, 3);
		ent("resized", h, 0, 0, 16 * P, ROOT, 0);
		ent("resized", h, 1, 16 * P, P, GEN1, 0);
		ent("resized", h, 2, 17 * P, 15 * P, NIL, 0);
		e2b_header_free(h);
	}
	if ((h = good("v3-memfile.header"))) {
		/* 2 MiB blocks, page-granular ranges: E2B maps pages whatever the block size */
		meta("memfile", h, 3, 2 * MIB, 8 * MIB, 1, GEN1, 3);
		ent("memfile", h, 0, 0, P, GEN1, 0);
		ent("memfile", h, 1, P, 511 * P, ROOT, P);
		ent("memfile", h, 2, 512 * P, 1536 * P, NIL, 0);
		e2b_header_free(h);
	}
}

static uint8_t sha_of(const struct e2b_build *b) { return b->sha256[0]; }

/* V4 and V5 of the same gen-2 header read to the same model. */
static void check_gen2_framed(const char *name, unsigned format)
{
	struct e2b_header *h = good(name);
	const struct e2b_build *b;

	if (!h)
		return;
	meta(name, h, format, P, 16 * P, 2, GEN2, 6);
	ent(name, h, 0, 0, 4 * P, ROOT, 0);
	ent(name, h, 1, 4 * P, 2 * P, GEN1, 0);
	ent(name, h, 2, 6 * P, 4 * P, GEN2, 0);
	ent(name, h, 3, 10 * P, 2 * P, ROOT, 10 * P);
	ent(name, h, 4, 12 * P, P, NIL, 0);
	ent(name, h, 5, 13 * P, 3 * P, ROOT, 13 * P);
	CHECK(h->n_builds == 3 && !h->flags && !h->implicit, "%s: builds %u", name, h->n_builds);
	b = e2b_header_build(h, ROOT);
	/* sha256("root") = 4813494d... */
	CHECK(b && b->size == 16 * P && b->codec == E2B_CODEC_NONE && !b->n_frames &&
	      sha_of(b) == 0x48, "%s: root build", name);
	b = e2b_header_build(h, GEN1);
	CHECK(b && b->size == 4 * P && b->codec == E2B_CODEC_ZSTD && b->n_frames == 1 &&
	      b->frames[0].start_u == 0 && b->frames[0].size_u == 2 * P &&
	      b->frames[0].size_c == 3000, "%s: gen1 build", name);
	b = e2b_header_build(h, GEN2);
	CHECK(b && b->codec == E2B_CODEC_LZ4 && b->n_frames == 2 && b->frames[1].start_u == 2 * P &&
	      b->frames[1].start_c == 2000 && b->frames[1].size_c == 2500, "%s: gen2 build", name);
	/* ids (order of appearance: root, gen1, gen2) to their records (sorted by id) */
	for (uint32_t k = 0; k < 3; k++)
		CHECK(e2b_header_id_build(h, k) == &h->builds[k] &&
		      !memcmp(h->builds[k].id, h->ids[k], 16), "%s: record of id %u", name, k);
	CHECK(!e2b_header_id_build(h, 3) && !e2b_header_id_build(h, E2B_NIL), "%s: no id 3", name);
	e2b_header_free(h);
}

static void test_framed(void)
{
	struct e2b_header *h;

	check_gen2_framed("v4.header", 4);
	check_gen2_framed("v5.header", 5);
	if ((h = good("v4-empty.header"))) {
		CHECK(h->format == 4 && h->implicit && h->n_entries == 1 && !h->flags, "v4-empty");
		ent("v4-empty", h, 0, 0, 16 * P, ROOT, 0);
		e2b_header_free(h);
	}
	if ((h = good("v4-incomplete.header"))) {
		CHECK(h->flags == E2B_FLAG_INCOMPLETE, "v4-incomplete: flag");
		e2b_header_free(h);
	}
	if ((h = good("v5-empty.header"))) {
		/* V5 stores no nil ranges: empty is all zeros, not the own build */
		meta("v5-empty", h, 5, P, 16 * P, 1, GEN1, 1);
		CHECK(h->implicit && !h->n_ids, "v5-empty: implicit, no ids");
		ent("v5-empty", h, 0, 0, 16 * P, NIL, 0);
		e2b_header_free(h);
	}
	if ((h = good("v5-unaligned.header"))) {
		CHECK(h->size == P + 1 && h->n_entries == 1, "v5-unaligned: size");
		ent("v5-unaligned", h, 0, 0, 2 * P, ROOT, 0);
		e2b_header_free(h);
	}
	static const char *mem[] = { "v5-memfile.header", "v4-memfile.header" };
	for (int k = 0; k < 2; k++) {
		if (!(h = good(mem[k])))
			continue;
		meta(mem[k], h, 5u - (unsigned)k, 2 * MIB, 4 * MIB, 1, GEN1, 201);
		for (uint64_t i = 0; i < 100; i++) {
			ent(mem[k], h, 2 * i, 2 * i * P, P, GEN1, i * P);
			ent(mem[k], h, 2 * i + 1, (2 * i + 1) * P, P, ROOT, (2 * i + 1) * P);
		}
		ent(mem[k], h, 200, 200 * P, 824 * P, NIL, 0);
		CHECK(h->n_ids == 2 && !memcmp(h->ids[0], GEN1, 16), "%s: ids", mem[k]);
		const struct e2b_build *b = e2b_header_build(h, ROOT);
		CHECK(b && !b->size, "%s: root build of unknown size", mem[k]);
		e2b_header_free(h);
	}
}

static const struct {
	const char *name, *why;
} refused[] = {
	{ "bad-short.header", "40 bytes: too short for an E2B header (64 bytes of metadata)" },
	{ "bad-version0.header", "version 0 (layout 0): not an E2B header version this tool reads (1 to 5)" },
	{ "bad-version6.header", "version 6 (layout 6): not an E2B header version this tool reads (1 to 5)" },
	{ "bad-version-masked.header", "version 196608 (layout 0): not an E2B header version this tool reads (1 to 5)" },
	{ "bad-blocksize0.header", "block size 0 (E2B requires a non-zero block size)" },
	{ "bad-size0.header", "size 0: an empty device" },
	{ "bad-size-huge.header", "size 17592186048512 is larger than the supported maximum 17592186040320" },
	{ "bad-nil-build.header", "build id is nil: its ranges could not be told from zeros" },
	{ "bad-gap.header", "entry 1: offset 12288, expected 8192 (entries must be contiguous; a gap after entry 0)" },
	{ "bad-v1-gap.header", "entry 1: offset 12288, expected 8192 (entries must be contiguous; a gap after entry 0)" },
	{ "bad-overlap.header", "entry 1: offset 8192, expected 16384 (entries must be contiguous; this overlaps entry 0)" },
	{ "bad-unordered.header", "entry 0: offset 16384, expected 0 (entries must be contiguous from the start of the device)" },
	{ "bad-unaligned.header", "entry 1: offset 16384, length 49152, storage offset 512: not all multiples of 4096 (E2B maps whole pages)" },
	{ "bad-past-end.header", "entry 1: offset 32768, length 49152 ends at 81920, past the device size 65536" },
	{ "bad-short-cover.header", "the entries end at 32768 but the device size is 65536 (the mapping must cover the whole device)" },
	{ "bad-zero-length.header", "entry 1: offset 16384, length 0 (every entry covers at least one 4096-byte page)" },
	{ "bad-wrap.header", "entry 1: offset 16384, length 18446744073709535232, storage offset 0: the range wraps past 2^64" },
	{ "bad-wrap-storage.header", "entry 1: offset 16384, length 49152, storage offset 18446744073709535232: the range wraps past 2^64" },
	{ "bad-page-limit.header", "entry 1: offset 16384, length 49152, storage offset 17592186044416: past E2B's limit of 2^32-1 pages" },
	{ "bad-truncated.header", "V3 header: entry 3 is truncated (143 bytes after the metadata, not a multiple of 40)" },
	{ "bad-lz4-magic.header", "the LZ4 frame starting at byte 69 is corrupt: ERROR_frameType_unknown" },
	{ "bad-lz4-header-checksum.header", "the LZ4 frame starting at byte 69 is corrupt: ERROR_headerChecksum_invalid" },
	{ "bad-lz4-truncated.header", "the LZ4 frame is truncated: no end after 512 bytes (the header states 512)" },
	{ "bad-lz4-content-checksum.header", "the LZ4 frame starting at byte 69 is corrupt: ERROR_contentChecksum_invalid" },
	{ "bad-lz4-block-checksum.header", "the LZ4 frame starting at byte 69 is corrupt: ERROR_blockChecksum_invalid" },
	{ "bad-lz4-size-short.header", "the LZ4 frame holds 512 bytes, the header states 520" },
	{ "bad-lz4-size-long.header", "the LZ4 frame holds more than the 508 bytes the header states" },
	{ "bad-lz4-trailing.header", "3 bytes follow the LZ4 frame" },
	{ "bad-lz4-size-huge.header", "an LZ4 frame of 535 bytes cannot hold the 104857600 bytes the header states" },
	{ "bad-v4-cap.header", "V4 header: section of 268435457 bytes, more than E2B's limit of 268435456" },
	{ "bad-v4-flags.header", "V4 header: unknown flags 0x04" },
	{ "bad-v4-no-section.header", "V4 header: 2 bytes after the metadata, too short for its flags and section size" },
	{ "bad-builds-count.header", "builds section: 1000 builds, more than 65536 or than the 508 bytes left hold" },
	{ "bad-dup-build.header", "builds section: build c0000000-0000-4000-8000-000000000003 is recorded twice" },
	{ "bad-nil-record.header", "builds section: build 0 has the nil id" },
	{ "bad-frames-codec0.header", "build 0 (a0000000-0000-4000-8000-000000000001): 1 frames but codec none" },
	{ "bad-frames-codec3.header", "build 0 (a0000000-0000-4000-8000-000000000001): unknown codec 3 (E2B has 0 none, 1 zstd, 2 lz4)" },
	{ "bad-frames-zero.header", "build 2 (c0000000-0000-4000-8000-000000000003): frame 1 (start 8192/2000, size 0/2500): negative or zero" },
	{ "bad-frames-negative.header", "build 2 (c0000000-0000-4000-8000-000000000003): frame 0 (start -4096/0, size 8192/2000): negative or zero" },
	{ "bad-frames-overlap.header", "build 2 (c0000000-0000-4000-8000-000000000003): frame 1 starts at 4096, before frame 0 ends at 8192 (frames must be sorted, not overlapping)" },
	{ "bad-frames-c-overlap.header", "build 2 (c0000000-0000-4000-8000-000000000003): frame 1 is stored at 1000, before frame 0's stored bytes end at 2000 (frames must be sorted, not overlapping)" },
	{ "bad-frames-count.header", "build 2 (c0000000-0000-4000-8000-000000000003): 5000 frames, more than E2B's 1048576 or than the 268 bytes left hold" },
	{ "bad-frames-gap.header", "range at offset 24576: bytes 0..16384 of build c0000000-0000-4000-8000-000000000003 are not all in its frame table (lz4, 2 frames)" },
	{ "bad-v4-gap.header", "entry 1: offset 20480, expected 16384 (entries must be contiguous; a gap after entry 0)" },
	{ "bad-v4-trailing.header", "V4 header: 1 bytes follow the mapping in its section" },
	{ "bad-v4-mapping-count.header", "V4 mapping: 7 entries, more than 16777216 or than the 240 bytes left hold" },
	{ "bad-v5-build-index.header", "V5 mapping: entry 4: build index 3 out of range (3 builds)" },
	{ "bad-v5-overlap.header", "V5 mapping: entry 1: offset 8192 overlaps the previous entry, which ends at 16384" },
	{ "bad-v5-past-end.header", "V5 mapping: entry 1: offset 49152, length 32768 ends at 81920, past the device size 65536" },
	{ "bad-v5-zero-length.header", "V5 mapping: entry 1: offset 16384, length 0 (every entry covers at least one 4096-byte page)" },
	{ "bad-v5-nil-in-table.header", "V5 mapping: build 1 of its table is the nil id (nil ranges are not stored)" },
	{ "bad-v5-dup-table.header", "V5 mapping: build a0000000-0000-4000-8000-000000000001 is twice in its table" },
	{ "bad-v5-table-count.header", "V5 mapping: 70000 builds, more than E2B's 65535 or than the 64 bytes left hold" },
	{ "bad-v5-entry-count.header", "V5 mapping: 100 entries, more than E2B's 8388608 or than the 12 bytes left hold" },
	{ "bad-v5-varint.header", "V5 mapping: entry 0: truncated or overlong offset delta" },
	{ "bad-v5-storage-negative.header", "V5 mapping: entry 0: storage page outside 0 .. 2^32-1" },
	{ "bad-v5-frames-gap.header", "range at offset 16384: bytes 0..16384 of build b0000000-0000-4000-8000-000000000002 are not all in its frame table (zstd, 1 frames)" },
};

static void test_refused(void)
{
	for (size_t i = 0; i < sizeof(refused) / sizeof(refused[0]); i++)
		bad(refused[i].name, refused[i].why);
}

/* Every prefix of every good header is refused whole (ASan watches the
 * reads), except a V1-V3 header cut right after its metadata: that is a
 * valid empty mapping. Every single-byte change is either refused or
 * parsed to a model that still holds the invariants. */
static const char *goods[] = {
	"v1.header", "v3.header", "chain-gen2.header", "v3-memfile.header", "v4.header",
	"v5.header", "v4-empty.header", "v5-empty.header", "v5-memfile.header", "v4-memfile.header",
};

static void invariants(const char *name, const struct e2b_header *h)
{
	uint64_t next = 0;
	for (uint64_t i = 0; i < h->n_entries; i++) {
		const struct e2b_entry *e = &h->entries[i];
		CHECK(e->offset == next && e->length && !(e->length % P) &&
		      (e->id == E2B_NIL || e->id < h->n_ids), "%s: mutated model entry %llu", name,
		      (unsigned long long)i);
		next = e->offset + e->length;
	}
	CHECK(next == (h->size + P - 1) / P * P, "%s: mutated model covers %llu", name,
	      (unsigned long long)next);
}

static void test_hostile(void)
{
	for (size_t k = 0; k < sizeof(goods) / sizeof(goods[0]); k++) {
		size_t len;
		uint8_t *buf = slurp(goods[k], &len);
		struct e2b_header *h;
		char why[512];
		unsigned bad_prefix = 0, mutated_ok = 0;

		for (size_t n = 0; n < len; n++) {
			int ret = e2b_header_parse(buf, n, &h, why, sizeof(why));
			bool v3_meta_only = n == 64 && (le64toh(*(uint64_t *)buf) & 0xFFFF) <= 3;
			if (ret == 0)
				e2b_header_free(h);
			if ((ret == 0) != v3_meta_only)
				bad_prefix++;
		}
		CHECK(!bad_prefix, "%s: %u prefixes wrongly accepted or refused", goods[k], bad_prefix);
		for (size_t i = 0; i < len; i++) {
			uint8_t flip = (uint8_t)(1u << (i * 5 % 8));
			buf[i] ^= flip;
			if (!e2b_header_parse(buf, len, &h, why, sizeof(why))) {
				invariants(goods[k], h);
				e2b_header_free(h);
				mutated_ok++;
			}
			buf[i] ^= flip;
		}
		(void)mutated_ok;
		free(buf);
	}
}

static void put64(uint8_t *p, uint64_t v) { v = htole64(v); memcpy(p, &v, 8); }

/* E2B's cap of 65535 distinct builds in one mapping: a V3 header of
 * 65536 one-page entries, each a different build, is refused at the
 * entry that names the 65536th; one fewer is read. */
static void test_build_cap(void)
{
	const uint64_t n = 65536;
	size_t len = 64 + n * 40;
	uint8_t *buf = calloc(1, len);
	struct e2b_header *h;
	char why[512];

	put64(buf, 3);
	put64(buf + 8, P);
	put64(buf + 16, n * P);
	memcpy(buf + 32, GEN1, 16);
	memcpy(buf + 48, ROOT, 16);
	for (uint64_t i = 0; i < n; i++) {
		uint8_t *e = buf + 64 + i * 40;
		put64(e, i * P);
		put64(e + 8, P);
		memcpy(e + 16, ROOT, 16);
		put64(e + 16 + 8, i + 1);       /* ids differ in their last half */
		put64(e + 32, 0);
	}
	CHECK(e2b_header_parse(buf, len, &h, why, sizeof(why)) == -EINVAL &&
	      !strcmp(why, "entry 65535: names a 65536th distinct build; E2B allows at most 65535 in one mapping"),
	      "65536 builds: %s", why);
	/* the last entry a nil range: 65535 builds, accepted */
	memset(buf + 64 + (n - 1) * 40 + 16, 0, 16);
	int ret = e2b_header_parse(buf, len, &h, why, sizeof(why));
	CHECK(ret == 0 && h->n_ids == 65535 && h->n_entries == n, "65535 builds: %s", why);
	if (!ret)
		e2b_header_free(h);
	free(buf);
}

static void test_misc(void)
{
	char s[37];
	e2b_uuid_str(GEN2, s);
	CHECK(!strcmp(s, "c0000000-0000-4000-8000-000000000003"), "uuid string %s", s);
	CHECK(!strcmp(e2b_codec_name(E2B_CODEC_ZSTD), "zstd") &&
	      !strcmp(e2b_codec_name(E2B_CODEC_LZ4), "lz4") &&
	      !strcmp(e2b_codec_name(E2B_CODEC_NONE), "none"), "codec names");
	struct e2b_header *h;
	char why[64];
	CHECK(e2b_header_load("/nonexistent/rootfs.ext4.header", NULL, &h, why, sizeof(why)) < 0 && !h,
	      "load of a missing file");
	char path[4096];
	snprintf(path, sizeof(path), "%s/v5.header", dir);
	CHECK(e2b_header_load(path, NULL, &h, why, sizeof(why)) == 0 && h && h->format == 5,
	      "load of v5.header: %s", why);
	e2b_header_free(h);
}

int main(int argc, char **argv)
{
	if (argc > 1)
		dir = argv[1];
	else if (getenv("UBLK_E2B_GOLDEN"))
		dir = getenv("UBLK_E2B_GOLDEN");
	test_v1_to_v3();
	test_chain();
	test_framed();
	test_refused();
	test_hostile();
	test_build_cap();
	test_misc();
	return check_summary();
}
