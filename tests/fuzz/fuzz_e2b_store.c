/*
 * An E2B build as a device over it reads it (docs/e2b.md, Serving a
 * build): its header, and the data file of each build its mapping names,
 * plain or made of zstd / lz4 frames. Input: the header FZ_SEP the data
 * file of the mapping's first build FZ_SEP its second's ... (at most
 * MAX_DATA; a build without a part has no file, which the open must
 * refuse). The files go where e2b_store_open looks, in the private
 * folder: BUILD/rootfs.ext4.header and ID/rootfs.ext4[.zstd|.lz4].
 * Decompressed frames are kept in a chunk cache there (as a device keeps
 * them), so every frame is read twice: decompressed, then kept.
 */
#include "image/e2b_store.h"
#include "image/chunkcache.h"
#include "image/e2b_write.h"
#include "image/layer.h"
#include "image/layer_http.h"
#include "fuzz.h"

#define FZ_MAX_INPUT (1u << 20)
#define MAX_DATA 4
/* Bytes read through the store per input, and the most a verify may
 * decompress: a frame of a few bytes can stand for 64 MiB of zeros. */
#define READ_BUDGET (1u << 20)
#define VERIFY_MAX (16ull << 20)

static char paths[MAX_DATA + 1][400], dirs[MAX_DATA + 1][300];

static void put(int i, const uint8_t id[16], const char *name, const uint8_t *data, size_t len)
{
	char hex[37];
	e2b_uuid_str(id, hex);
	snprintf(dirs[i], sizeof(dirs[i]), "%s/%s", fz_dir(), hex);
	mkdir(dirs[i], 0700);
	snprintf(paths[i], sizeof(paths[i]), "%s/%s", dirs[i], name);
	FILE *f = fopen(paths[i], "we");
	if (!f || fwrite(data, 1, len, f) != len || fclose(f))
		FZ_DIE("writing %s: %s", paths[i], strerror(errno));
}

/* The files, then their folders (a data file of the header's own build
 * shares its folder; rmdir of a folder already gone fails harmlessly). */
static void remove_files(void)
{
	for (int i = 0; i <= MAX_DATA; i++)
		if (paths[i][0])
			unlink(paths[i]);
	for (int i = 0; i <= MAX_DATA; i++) {
		if (dirs[i][0])
			rmdir(dirs[i]);
		paths[i][0] = dirs[i][0] = 0;
	}
}

/* Whether verifying s would decompress no more than VERIFY_MAX bytes. */
static bool verify_small(const struct e2b_header *h)
{
	uint64_t total = 0;
	for (uint32_t b = 0; b < h->n_builds; b++)
		for (uint32_t j = 0; j < h->builds[b].n_frames; j++)
			total += h->builds[b].frames[j].size_u;
	return total <= VERIFY_MAX;
}

/* What e2b_store_map places for n bytes at off, if anything, is what a
 * read gave (want), within the pieces and pins it may use. */
static void check_map(struct e2b_store *s, const uint8_t *want, size_t n, uint64_t off)
{
	static struct layer_map m;
	struct layer l = { 0 };
	size_t at = 0;

	m = (struct layer_map){ 0 };
	int pieces = e2b_store_map(s, off, (uint32_t)n, &l, &m);
	FZ_ASSERT(pieces >= 0 && pieces <= LAYER_MAP_PIECES && m.npins <= LAYER_MAP_PINS,
		  "map at %llu: %d pieces, %d pins", (unsigned long long)off, pieces, m.npins);
	for (int i = 0; pieces && i < m.n; at += m.iov[i++].iov_len)
		FZ_ASSERT(at + m.iov[i].iov_len <= n && !memcmp(m.iov[i].iov_base, want + at,
								 m.iov[i].iov_len),
			  "map at %llu: piece %d is not the read's bytes", (unsigned long long)off, i);
	FZ_ASSERT(!pieces || at == n, "map at %llu: %zu bytes of %zu", (unsigned long long)off, at, n);
	for (int i = 0; i < m.npins; i++)
		chunk_unpin(m.pins[i].pin);
}

/* Read what the mapping names, within the budget: without waiting, then
 * with own (a fetch thread's decoder, maybe NULL), then under the lock. */
static void read_store(struct e2b_store *s, const struct e2b_header *h, struct e2b_decoder *own)
{
	static uint8_t buf[65536], first[65536];
	uint64_t budget = READ_BUDGET;

	for (uint64_t i = 0; i < h->n_entries && budget; i++) {
		const struct e2b_entry *e = &h->entries[i];
		uint64_t end = e->offset + e->length < h->size ? e->offset + e->length : h->size;
		for (uint64_t off = e->offset; off < end && budget; off += sizeof(buf)) {
			size_t n = end - off < sizeof(buf) ? (size_t)(end - off) : sizeof(buf);
			int ret = e2b_store_try_read(s, buf, n, off);
			FZ_ASSERT(!ret || ret == -EAGAIN || ret == -EIO, "try_read at %llu: %d",
				  (unsigned long long)off, ret);
			int got = e2b_store_read_own(s, own, first, n, off);
			FZ_ASSERT(!got || got == -EIO || (!own && got == -ENOMEM), "read_own at %llu: %d",
				  (unsigned long long)off, got);
			ret = e2b_store_read(s, buf, n, off);
			FZ_ASSERT(!ret || ret == -EIO, "read at %llu: %d", (unsigned long long)off, ret);
			FZ_ASSERT(ret || got || !memcmp(buf, first, n), "read at %llu: other bytes than "
				  "the first read's", (unsigned long long)off);
			if (!ret) {   /* now kept: read without waiting, if the lock is free */
				got = e2b_store_try_read(s, first, n, off);
				FZ_ASSERT(got == -EAGAIN || got == -EIO || (!got && !memcmp(buf, first, n)),
					  "try_read at %llu after a read: %d", (unsigned long long)off, got);
				check_map(s, buf, n, off);
			}
			budget -= n < budget ? n : budget;
			if (e->id == E2B_NIL && !ret)
				for (size_t k = 0; k < n; k++)
					FZ_ASSERT(!buf[k], "a nil range read byte %zu as %u", k, buf[k]);
		}
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fz_part part[MAX_DATA + 1];
	struct e2b_header *h;
	struct e2b_store *s;
	char why[1200], build[37], name[64], chunks[300];
	struct layer_http_opts o = { .keep_frames = true, .cache_dir = chunks };

	if (size > FZ_MAX_INPUT)
		return -1;
	int n = fz_split(data, size, part, MAX_DATA + 1);
	if (e2b_header_parse(part[0].p, part[0].len, &h, why, sizeof(why)))
		return 0;
	put(0, h->build_id, E2B_ROOTFS ".header", part[0].p, part[0].len);
	for (uint32_t k = 0; k < h->n_ids && (int)k + 1 < n; k++) {
		uint32_t b = h->id_build ? h->id_build[k] : E2B_NIL;
		enum e2b_codec codec = b == E2B_NIL ? E2B_CODEC_NONE : h->builds[b].codec;
		if (e2b_data_name(E2B_ROOTFS, codec, name, sizeof(name)))
			FZ_DIE("e2b_data_name failed");
		put((int)k + 1, h->ids[k], name, part[k + 1].p, part[k + 1].len);
	}
	e2b_uuid_str(h->build_id, build);
	snprintf(chunks, sizeof(chunks), "%s/chunks", fz_dir());
	if (!e2b_store_open(fz_dir(), build, E2B_ROOTFS, &o, &s, why, sizeof(why))) {
		const struct e2b_header *sh = e2b_store_header(s);
		struct e2b_decoder *own = e2b_decoder_new(s);
		fz_accepted();
		read_store(s, sh, own);
		e2b_decoder_free(own);
		if (verify_small(sh)) {
			struct e2b_build_check *checks = calloc(sh->n_ids + 1ull, sizeof(*checks));
			FZ_ASSERT(checks, "out of memory");
			int ret = e2b_store_verify(s, checks, NULL, NULL);
			FZ_ASSERT(!ret || ret == -EIO, "verify: %d", ret);
			free(checks);
		}
		e2b_store_close(s);
	} else {
		FZ_ASSERT(why[0], "refused without a reason");
	}
	e2b_header_free(h);
	remove_files();
	fz_remove_tree(chunks);
	return 0;
}
