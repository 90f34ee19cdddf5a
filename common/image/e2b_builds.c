/*
 * The builds section of E2B headers V4 and V5 (docs/e2b.md): which builds
 * a header names, their sizes, checksums and frame tables, and the checks
 * that tie them to the mapping. Hostile bytes, as in e2b_header.c.
 */
#include "image/e2b_header.h"
#include "image/e2b_header_impl.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define BUILD_FIXED 56u         /* id, size, sha256 */
#define FRAME_HDR 8u            /* codec, frame count */
#define FRAME_ENT 24u
/* A builds section holds the mapping's builds plus the header's own,
 * which a child that changed nothing does not map. */
#define MAX_BUILD_RECORDS (E2B_MAX_BUILDS + 1u)

static int frames_read(struct e2b_build *b, uint32_t bi, struct cur *c, char *why, size_t whylen)
{
	uint32_t codec, n;
	char s[37];

	e2b_uuid_str(b->id, s);
	if (!take32(c, &codec) || !take32(c, &n))
		return WHY("build %u (%s): truncated frame table", bi, s), -EINVAL;
	if (codec > E2B_CODEC_LZ4)
		return WHY("build %u (%s): unknown codec %u (E2B has 0 none, 1 zstd, 2 lz4)", bi, s,
			   codec), -EINVAL;
	if (codec == E2B_CODEC_NONE && n)
		return WHY("build %u (%s): %u frames but codec none", bi, s, n), -EINVAL;
	if (!n)   /* E2B: no frames means stored uncompressed, whatever the codec */
		return 0;
	if (n > E2B_MAX_FRAMES || n > left(c) / FRAME_ENT)
		return WHY("build %u (%s): %u frames, more than E2B's %u or than the %zu bytes left "
			   "hold", bi, s, n, E2B_MAX_FRAMES, left(c)), -EINVAL;
	if (!(b->frames = malloc((size_t)n * sizeof(*b->frames))))
		return WHY("out of memory for %u frames", n), -ENOMEM;
	b->codec = codec;
	for (uint32_t i = 0; i < n; i++) {
		struct e2b_frame *f = &b->frames[i];
		uint32_t su = 0, sc = 0;
		take64(c, &f->start_u);
		take64(c, &f->start_c);
		take32(c, &su);
		take32(c, &sc);
		/* Go int64/int32 on disk: negative starts or sizes are corrupt. */
		if ((int64_t)f->start_u < 0 || (int64_t)f->start_c < 0 || !su || !sc ||
		    (int32_t)su < 0 || (int32_t)sc < 0)
			return WHY("build %u (%s): frame %u (start %lld/%lld, size %d/%d): negative or "
				   "zero", bi, s, i, (long long)f->start_u, (long long)f->start_c,
				   (int32_t)su, (int32_t)sc), -EINVAL;
		f->size_u = su;
		f->size_c = sc;
		if (i && f->start_u < f[-1].start_u + f[-1].size_u)
			return WHY("build %u (%s): frame %u starts at %llu, before frame %u ends at %llu "
				   "(frames must be sorted, not overlapping)", bi, s, i, (ull)f->start_u,
				   i - 1, (ull)(f[-1].start_u + f[-1].size_u)), -EINVAL;
		if (i && f->start_c < f[-1].start_c + f[-1].size_c)
			return WHY("build %u (%s): frame %u is stored at %llu, before frame %u's stored "
				   "bytes end at %llu (frames must be sorted, not overlapping)", bi, s,
				   i, (ull)f->start_c, i - 1, (ull)(f[-1].start_c + f[-1].size_c)),
			       -EINVAL;
	}
	b->n_frames = n;
	return 0;
}

int e2b_builds_read(struct e2b_header *h, struct cur *c, char *why, size_t whylen)
{
	uint32_t n;
	int ret;

	if (!take32(c, &n))
		return WHY("builds section: truncated before its count"), -EINVAL;
	if (n > MAX_BUILD_RECORDS || n > left(c) / (BUILD_FIXED + FRAME_HDR))
		return WHY("builds section: %u builds, more than %u or than the %zu bytes left hold",
			   n, MAX_BUILD_RECORDS, left(c)), -EINVAL;
	if (n && !(h->builds = calloc(n, sizeof(*h->builds))))
		return WHY("out of memory"), -ENOMEM;
	for (uint32_t i = 0; i < n; i++) {
		struct e2b_build *b = &h->builds[i];
		uint64_t size;
		if (!take(c, b->id, 16) || !take64(c, &size) || !take(c, b->sha256, 32))
			return WHY("builds section: build %u is truncated", i), -EINVAL;
		h->n_builds = i + 1;
		if (!memcmp(b->id, nil, 16))
			return WHY("builds section: build %u has the nil id", i), -EINVAL;
		if ((int64_t)size < 0)
			return WHY("builds section: build %u has a negative size", i), -EINVAL;
		b->size = size;
		if ((ret = frames_read(b, i, c, why, whylen)))
			return ret;
	}
	return 0;
}

const struct e2b_build *e2b_header_build(const struct e2b_header *h, const uint8_t id[16])
{
	for (uint32_t i = 0; i < h->n_builds; i++)
		if (!memcmp(h->builds[i].id, id, 16))
			return &h->builds[i];
	return NULL;
}

const struct e2b_build *e2b_header_id_build(const struct e2b_header *h, uint32_t k)
{
	if (!h->id_build || k >= h->n_ids || h->id_build[k] == E2B_NIL)
		return NULL;
	return &h->builds[h->id_build[k]];
}

/* Runs of contiguous frames of one build: a mapped range must lie in one
 * run, or E2B's reader finds it in a gap. */
struct run {
	uint64_t start, end;
};

static size_t runs_of(const struct e2b_build *b, struct run *r)
{
	size_t n = 0;
	for (uint32_t i = 0; i < b->n_frames; i++) {
		uint64_t s = b->frames[i].start_u, e = s + b->frames[i].size_u;
		if (n && r[n - 1].end == s)
			r[n - 1].end = e;
		else
			r[n++] = (struct run){ s, e };
	}
	return n;
}

static bool in_runs(const struct run *r, size_t n, uint64_t s, uint64_t e)
{
	size_t lo = 0, hi = n;   /* first run with start > s */
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (r[mid].start > s)
			hi = mid;
		else
			lo = mid + 1;
	}
	return lo && r[lo - 1].end >= e;
}

struct key {
	uint8_t id[16];
	uint32_t rec;
};

static int cmp_key(const void *a, const void *b) { return memcmp(a, b, 16); }

/* Across sections: no build recorded twice, and every mapped range of a
 * compressed build inside its frame table, where E2B's reader would look
 * for it (and fail on a gap, at read time). A build's size is not held
 * against the mapping: E2B does not, and its own tests write sizes that
 * are not bounds. Sets h->id_build. */
int e2b_builds_check(struct e2b_header *h, char *why, size_t whylen)
{
	struct key *sorted = NULL;
	struct run **runs = NULL;   /* per id */
	size_t *n_runs = NULL;
	int ret = -ENOMEM;

	if (!h->n_builds)
		return 0;
	if (!(sorted = malloc(h->n_builds * sizeof(*sorted))) ||
	    (h->n_ids && (!(runs = calloc(h->n_ids, sizeof(*runs))) ||
			  !(n_runs = calloc(h->n_ids, sizeof(*n_runs))) ||
			  !(h->id_build = malloc(h->n_ids * sizeof(*h->id_build)))))) {
		WHY("out of memory");
		goto out;
	}
	for (uint32_t i = 0; i < h->n_builds; i++) {
		memcpy(sorted[i].id, h->builds[i].id, 16);
		sorted[i].rec = i;
	}
	qsort(sorted, h->n_builds, sizeof(*sorted), cmp_key);
	ret = -EINVAL;
	for (uint32_t i = 1; i < h->n_builds; i++)
		if (!memcmp(sorted[i - 1].id, sorted[i].id, 16)) {
			char s[37];
			e2b_uuid_str(sorted[i].id, s);
			WHY("builds section: build %s is recorded twice", s);
			goto out;
		}
	for (uint32_t k = 0; k < h->n_ids; k++) {
		const struct key *f = bsearch(h->ids[k], sorted, h->n_builds, sizeof(*sorted), cmp_key);
		const struct e2b_build *b = f ? &h->builds[f->rec] : NULL;
		h->id_build[k] = f ? f->rec : E2B_NIL;
		if (b && b->n_frames) {
			if (!(runs[k] = malloc(b->n_frames * sizeof(struct run)))) {
				ret = -ENOMEM;
				WHY("out of memory");
				goto out;
			}
			n_runs[k] = runs_of(b, runs[k]);
		}
	}
	for (uint64_t i = 0; i < h->n_entries; i++) {
		const struct e2b_entry *e = &h->entries[i];
		const struct e2b_build *b = e->id == E2B_NIL ? NULL : e2b_header_id_build(h, e->id);
		char s[37];
		if (!b || !b->n_frames ||
		    in_runs(runs[e->id], n_runs[e->id], e->storage, e->storage + e->length))
			continue;
		e2b_uuid_str(b->id, s);
		WHY("range at offset %llu: bytes %llu..%llu of build %s are not all in its frame "
		    "table (%s, %u frames)", (ull)e->offset, (ull)e->storage,
		    (ull)(e->storage + e->length), s, e2b_codec_name(b->codec), b->n_frames);
		goto out;
	}
	ret = 0;
out:
	for (uint32_t k = 0; runs && k < h->n_ids; k++)
		free(runs[k]);
	free(runs);
	free(n_runs);
	free(sorted);
	return ret;
}
