/* Host unit tests of reading E2B builds (common/image/e2b_store.c, docs/e2b.md
 * Serving a build): stores are written here, by hand from the format (not
 * with our writer), into a temporary folder: uncompressed V3 chains, zstd
 * and lz4 frames under V4 headers, and the broken cases.
 *
 *   test-e2b-store             run the tests
 *   test-e2b-store make DIR    write the stores the CLI tests use into DIR
 *                              (see tests/host/e2b-store.bats)
 */
#include "check.h"
#include "layer_run.h"
#include "image/e2b_store.h"
#include "image/chunkcache.h"
#include "image/layer.h"
#include "util/sha256.h"
#include "image/layer_e2b.h"
#include "image/layer_http.h"

#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <lz4frame.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zstd.h>

#define P 4096ull
#define MAXB 8
#define MAXF 128   /* frames a build may have */

struct frame {
	uint64_t su, sc;
	uint32_t nu, nc;
};

struct build {
	uint8_t id[16];
	char s[37];
	enum e2b_codec codec;   /* of its data file */
	uint64_t len;           /* uncompressed bytes */
	uint8_t sha[32];
	struct frame *f;
	uint32_t nf, fsz;
	uint8_t *stored;        /* the data file */
	size_t stored_len;
};

/* The device as the chain so far makes it, page by page. */
struct model {
	const char *root, *name;
	uint64_t size, pages, gen;
	uint8_t *img;
	int *src;               /* build index per page, -1 nil */
	uint64_t *sto;
	struct build b[MAXB];
	int nb;
	bool trim;              /* headers keep only the frames of ancestors they use, as E2B's */
	uint32_t rng;
};

static uint32_t rnd(struct model *m)
{
	m->rng = m->rng * 1103515245u + 12345u;
	return m->rng >> 8;
}

static void put64(uint8_t *p, uint64_t v) { v = htole64(v); memcpy(p, &v, 8); }
static void put32(uint8_t *p, uint32_t v) { v = htole32(v); memcpy(p, &v, 4); }

static void mkdirs(const char *root, const char *id)
{
	char path[4096];
	mkdir(root, 0755);
	snprintf(path, sizeof(path), "%s/%s", root, id);
	mkdir(path, 0755);
}

static void write_file(const char *root, const char *id, const char *name, const void *buf,
		       size_t len)
{
	char path[4096];
	snprintf(path, sizeof(path), "%s/%s/%s", root, id, name);
	FILE *f = fopen(path, "wb");
	if (!f || (len && fwrite(buf, 1, len, f) != len) || fclose(f)) {
		fprintf(stderr, "cannot write %s\n", path);
		exit(2);
	}
}

static void model_init(struct model *m, const char *root, const char *name, uint64_t size)
{
	memset(m, 0, sizeof(*m));
	m->root = root;
	m->name = name;
	m->size = size;
	m->pages = (size + P - 1) / P;
	m->img = calloc(m->pages, P);
	m->src = malloc(m->pages * sizeof(int));
	m->sto = calloc(m->pages, sizeof(uint64_t));
	m->rng = 7;
	for (uint64_t i = 0; i < m->pages; i++)
		m->src[i] = -1;
}

static void model_free(struct model *m)
{
	for (int i = 0; i < m->nb; i++) {
		free(m->b[i].f);
		free(m->b[i].stored);
	}
	free(m->img);
	free(m->src);
	free(m->sto);
}

/* Frames of frame bytes over data, compressed with codec. */
static void compress_frames(struct build *b, const uint8_t *data, uint64_t len, uint32_t frame)
{
	size_t cap = 0;
	b->fsz = frame;
	b->nf = (uint32_t)((len + frame - 1) / frame);
	b->f = calloc(b->nf, sizeof(*b->f));
	for (uint32_t i = 0; i < b->nf; i++)
		cap += ZSTD_compressBound(frame) + LZ4F_compressFrameBound(frame, NULL) + 4096;
	b->stored = malloc(cap);
	b->stored_len = 0;
	for (uint32_t i = 0; i < b->nf; i++) {
		uint64_t su = (uint64_t)i * frame;
		uint32_t nu = (uint32_t)(len - su < frame ? len - su : frame);
		size_t n;
		if (b->codec == E2B_CODEC_ZSTD) {
			ZSTD_CCtx *c = ZSTD_createCCtx();
			ZSTD_CCtx_setParameter(c, ZSTD_c_checksumFlag, 1);
			n = ZSTD_compress2(c, b->stored + b->stored_len, cap - b->stored_len, data + su, nu);
			ZSTD_freeCCtx(c);
			if (ZSTD_isError(n))
				exit(3);
		} else {
			LZ4F_preferences_t prefs = { 0 };
			prefs.frameInfo.blockSizeID = LZ4F_max4MB;
			prefs.frameInfo.blockChecksumFlag = LZ4F_blockChecksumEnabled;
			n = LZ4F_compressFrame(b->stored + b->stored_len, cap - b->stored_len, data + su, nu,
					       &prefs);
			if (LZ4F_isError(n))
				exit(3);
		}
		b->f[i] = (struct frame){ su, b->stored_len, nu, (uint32_t)n };
		b->stored_len += n;
	}
}

/* The entries of the model's mapping: pages joined into ranges. */
static size_t entries(const struct model *m, uint8_t *out)
{
	size_t n = 0;
	for (uint64_t p = 0; p < m->pages;) {
		uint64_t q = p + 1;
		while (q < m->pages && m->src[q] == m->src[p] &&
		       (m->src[p] < 0 || m->sto[q] == m->sto[p] + (q - p) * P))
			q++;
		if (out) {
			uint8_t *e = out + n * 40;
			memset(e, 0, 40);
			put64(e, p * P);
			put64(e + 8, (q - p) * P);
			if (m->src[p] >= 0) {
				memcpy(e + 16, m->b[m->src[p]].id, 16);
				put64(e + 32, m->sto[p]);
			}
		}
		n++;
		p = q;
	}
	return n;
}

/* Header bytes of the model's last build: layout 3 (raw entries) or 4
 * (records of every build + entries, in an LZ4 frame). */
static uint8_t *header(const struct model *m, unsigned layout, size_t *len, bool with_sha)
{
	const struct build *me = &m->b[m->nb - 1];
	size_t ne = entries(m, NULL), sec_len = 4, off;
	uint8_t *h, *sec;
	/* frames written per build: all, or (trim) those the mapping uses */
	bool keep[MAXB * MAXF] = { 0 };

	for (int i = 0; i < m->nb; i++)
		for (uint32_t j = 0; j < m->b[i].nf && j < MAXF; j++)
			keep[i * MAXF + j] = !m->trim || i == m->nb - 1;
	for (uint64_t p = 0; m->trim && p < m->pages; p++)
		if (m->src[p] >= 0 && m->b[m->src[p]].nf)
			keep[m->src[p] * MAXF + m->sto[p] / m->b[m->src[p]].fsz] = true;
	for (int i = 0; i < m->nb; i++) {
		sec_len += 16 + 8 + 32 + 8;
		for (uint32_t j = 0; j < m->b[i].nf; j++)
			sec_len += keep[i * MAXF + j] ? 24 : 0;
	}
	sec_len += 4 + ne * 40;
	LZ4F_preferences_t prefs = { 0 };
	prefs.frameInfo.blockSizeID = LZ4F_max4MB;
	prefs.frameInfo.contentChecksumFlag = LZ4F_contentChecksumEnabled;
	size_t bound = LZ4F_compressFrameBound(sec_len, &prefs);
	sec = calloc(1, sec_len);
	h = calloc(1, 64 + 5 + bound + ne * 40 + 64);
	put64(h, layout);
	put64(h + 8, P);
	put64(h + 16, m->size);
	put64(h + 24, m->gen);
	memcpy(h + 32, me->id, 16);
	memcpy(h + 48, m->b[0].id, 16);
	if (layout == 3) {
		*len = 64 + entries(m, h + 64) * 40;
		free(sec);
		return h;
	}
	put32(sec, (uint32_t)m->nb);
	off = 4;
	for (int i = 0; i < m->nb; i++) {
		const struct build *b = &m->b[i];
		/* as E2B: compressed builds have size and SHA-256; an
		 * uncompressed one here only when asked, for the top build */
		bool sha = b->codec || (with_sha && i == m->nb - 1);
		memcpy(sec + off, b->id, 16);
		put64(sec + off + 16, sha ? b->len : 0);
		if (sha)
			memcpy(sec + off + 24, b->sha, 32);
		uint32_t nk = 0;
		for (uint32_t j = 0; j < b->nf; j++)
			nk += keep[i * MAXF + j];
		put32(sec + off + 56, nk ? b->codec : 0);
		put32(sec + off + 60, nk);
		off += 64;
		for (uint32_t j = 0; j < b->nf; j++) {
			if (!keep[i * MAXF + j])
				continue;
			put64(sec + off, b->f[j].su);
			put64(sec + off + 8, b->f[j].sc);
			put32(sec + off + 16, b->f[j].nu);
			put32(sec + off + 20, b->f[j].nc);
			off += 24;
		}
	}
	put32(sec + off, (uint32_t)ne);
	entries(m, sec + off + 4);
	size_t n = LZ4F_compressFrame(h + 69, bound, sec, sec_len, &prefs);
	if (LZ4F_isError(n))
		exit(3);
	h[64] = 0;
	put32(h + 65, (uint32_t)sec_len);
	*len = 69 + n;
	free(sec);
	return h;
}

/* A new build over the chain: pages for which dirty() says 1 get new
 * data (packed in page order), 2 become nil; codec and frame size for its
 * data file; its header of layout written. Returns its index. */
static int add_build(struct model *m, int (*dirty)(uint64_t page, uint64_t gen), enum e2b_codec codec,
		     uint32_t frame, unsigned layout, bool with_sha)
{
	struct build *b = &m->b[m->nb];
	uint8_t *data = malloc(m->pages * P);
	uint64_t k = 0;
	struct sha256 sha;
	size_t hlen;
	char hname[64];

	memset(b, 0, sizeof(*b));
	b->id[0] = 0xa0 + (uint8_t)m->nb;
	b->id[6] = 0x40;
	b->id[8] = 0x80;
	b->id[15] = (uint8_t)(m->nb + 1);
	b->id[14] = (uint8_t)(m->size & 0xff);   /* ids differ between stores */
	e2b_uuid_str(b->id, b->s);
	b->codec = codec;
	m->nb++;
	for (uint64_t p = 0; p < m->pages; p++) {
		int d = dirty(p, m->gen);
		if (d == 1) {
			for (uint64_t i = 0; i < P; i++)
				data[k * P + i] = (uint8_t)(rnd(m) % 7 ? rnd(m) : 0);
			memcpy(m->img + p * P, data + k * P, P);
			m->src[p] = m->nb - 1;
			m->sto[p] = k * P;
			k++;
		} else if (d == 2) {
			memset(m->img + p * P, 0, P);
			m->src[p] = -1;
		}
	}
	b->len = k * P;
	/* a root whose size ends inside a page: its data file ends there */
	if (m->nb == 1 && k == m->pages && m->size % P) {
		b->len = m->size;
		memset(m->img + m->size, 0, m->pages * P - m->size);
	}
	sha256_init(&sha);
	sha256_update(&sha, data, b->len);
	sha256_final(&sha, b->sha);
	mkdirs(m->root, b->s);
	if (codec == E2B_CODEC_NONE) {
		b->stored = malloc(b->len ? b->len : 1);
		memcpy(b->stored, data, b->len);
		b->stored_len = b->len;
		write_file(m->root, b->s, m->name, data, b->len);
	} else {
		char dname[64];
		compress_frames(b, data, b->len, frame);
		snprintf(dname, sizeof(dname), "%s%s", m->name, codec == E2B_CODEC_ZSTD ? ".zstd" : ".lz4");
		write_file(m->root, b->s, dname, b->stored, b->stored_len);
	}
	uint8_t *h = header(m, layout, &hlen, with_sha);
	snprintf(hname, sizeof(hname), "%s.header", m->name);
	write_file(m->root, b->s, hname, h, hlen);
	free(h);
	free(data);
	m->gen++;
	return m->nb - 1;
}

static int all_pages(uint64_t p, uint64_t g) { (void)p; (void)g; return 1; }
static int late_pages(uint64_t p, uint64_t g) { (void)g; return p >= 16; }
static int some_pages(uint64_t p, uint64_t g)
{
	if (p % 7 == g % 7 || p == 3 + g)
		return 1;
	if (p % 11 == 5)
		return 2;
	return 0;
}

static void path_of(const struct model *m, int bi, const char *ext, char *out, size_t len)
{
	snprintf(out, len, "%s/%s/%s%s", m->root, m->b[bi].s, m->name, ext);
}

/* Read the whole device of build bi back through a store and compare:
 * whole, then in odd pieces. */
static void check_reads(const struct model *m, int bi, const char *what)
{
	struct e2b_store *s = NULL;
	char why[2000] = "";
	int ret = e2b_store_open(m->root, m->b[bi].s, m->name, NULL, &s, why, sizeof(why));

	CHECK(ret == 0, "%s: open: %d %s", what, ret, why);
	if (ret)
		return;
	uint8_t *buf = malloc(m->size);
	CHECK(e2b_store_header(s)->size == m->size, "%s: size", what);
	ret = e2b_store_read(s, buf, m->size, 0);
	CHECK(ret == 0 && !memcmp(buf, m->img, m->size), "%s: whole read %d", what, ret);
	uint32_t r = 99;
	for (int i = 0; i < 200; i++) {
		r = r * 1103515245u + 12345u;
		uint64_t off = (r >> 4) % m->size;
		r = r * 1103515245u + 12345u;
		uint64_t len = (r >> 4) % (m->size - off) % 70000 + 1;
		if (off + len > m->size)
			len = m->size - off;
		memset(buf, 0xee, len);
		ret = e2b_store_read(s, buf, len, off);
		if (ret || memcmp(buf, m->img + off, len)) {
			CHECK(0, "%s: read %llu+%llu: %d", what, (unsigned long long)off,
			      (unsigned long long)len, ret);
			break;
		}
	}
	CHECK(e2b_store_read(s, buf, 2, m->size - 1) == -EINVAL, "%s: read past the size", what);
	free(buf);
	e2b_store_close(s);
}

struct reader {
	struct e2b_store *s;
	const struct model *m;
	uint32_t seed;
	int bad;
};

static void *reader_run(void *arg)
{
	struct reader *r = arg;
	uint8_t *buf = malloc(70000);
	for (int i = 0; i < 300; i++) {
		r->seed = r->seed * 1103515245u + 12345u;
		uint64_t off = (r->seed >> 4) % r->m->size;
		r->seed = r->seed * 1103515245u + 12345u;
		uint64_t len = (r->seed >> 4) % 70000 + 1;
		if (len > r->m->size - off)
			len = r->m->size - off;
		if (e2b_store_read(r->s, buf, len, off) || memcmp(buf, r->m->img + off, len))
			r->bad++;
	}
	free(buf);
	return NULL;
}

/* Queues read one store from several threads: the frame cache is shared. */
static void check_threads(const struct model *m, int bi)
{
	struct e2b_store *s = NULL;
	struct reader r[4];
	pthread_t t[4];
	char why[2000];
	int bad = 0;

	if (e2b_store_open(m->root, m->b[bi].s, m->name, NULL, &s, why, sizeof(why))) {
		CHECK(0, "threads: open: %s", why);
		return;
	}
	for (int i = 0; i < 4; i++) {
		r[i] = (struct reader){ s, m, (uint32_t)i * 7919u + 1, 0 };
		pthread_create(&t[i], NULL, reader_run, &r[i]);
	}
	for (int i = 0; i < 4; i++) {
		pthread_join(t[i], NULL);
		bad += r[i].bad;
	}
	CHECK(bad == 0, "threads: %d reads wrong", bad);
	e2b_store_close(s);
}

static int open_err(const struct model *m, int bi, char *why, size_t len)
{
	struct e2b_store *s = NULL;
	why[0] = 0;
	int ret = e2b_store_open(m->root, m->b[bi].s, m->name, NULL, &s, why, len);
	e2b_store_close(s);
	return ret;
}

/* The chain the tests and the CLI tests use: A root (V3, uncompressed),
 * B (V3, uncompressed), C (V4, zstd), D (V4, lz4), E (V4, uncompressed
 * with SHA-256 records). */
static void make_chain(struct model *m, const char *root, uint64_t size)
{
	model_init(m, root, "rootfs.ext4", size);
	add_build(m, all_pages, E2B_CODEC_NONE, 0, 3, false);
	add_build(m, some_pages, E2B_CODEC_NONE, 0, 3, false);
	add_build(m, some_pages, E2B_CODEC_ZSTD, 16384, 4, true);
	add_build(m, some_pages, E2B_CODEC_LZ4, 16384, 4, true);
	add_build(m, some_pages, E2B_CODEC_NONE, 0, 4, true);
}

static void write_expect(const struct model *m, const char *dir, const char *name)
{
	char path[4096];
	snprintf(path, sizeof(path), "%s/%s", dir, name);
	FILE *f = fopen(path, "wb");
	if (!f || fwrite(m->img, 1, m->size, f) != m->size || fclose(f))
		exit(2);
}

/* For the CLI tests: DIR/store (the chain, 256 KiB), DIR/odd (one build
 * of 10000 bytes), DIR/ids ("NAME ID" lines), DIR/expect-NAME.img. */
static int make(const char *dir)
{
	char root[4096], path[4096];
	struct model m;
	FILE *ids;

	mkdir(dir, 0755);
	snprintf(path, sizeof(path), "%s/ids", dir);
	ids = fopen(path, "w");
	if (!ids)
		return 2;
	snprintf(root, sizeof(root), "%s/store", dir);
	model_init(&m, root, "rootfs.ext4", 64 * P);
	const char *names = "ABCDE";
	for (int i = 0; i < 5; i++) {
		enum e2b_codec c = i == 2 ? E2B_CODEC_ZSTD : i == 3 ? E2B_CODEC_LZ4 : E2B_CODEC_NONE;
		add_build(&m, i ? some_pages : all_pages, c, 16384, i < 2 ? 3 : 4, i >= 2);
		fprintf(ids, "%c %s\n", names[i], m.b[i].s);
		snprintf(path, sizeof(path), "expect-%c.img", names[i]);
		write_expect(&m, dir, path);
	}
	model_free(&m);
	snprintf(root, sizeof(root), "%s/odd", dir);
	model_init(&m, root, "rootfs.ext4", 10000);
	add_build(&m, all_pages, E2B_CODEC_NONE, 0, 3, false);
	fprintf(ids, "odd %s\n", m.b[0].s);
	write_expect(&m, dir, "expect-odd.img");
	model_free(&m);
	/* zeros but for the last 5 bytes of a size 5 bytes past whole pages:
	 * a flatten must not leave that tail as a hole */
	{
		static const char *tid = "a7000000-0000-4000-8000-000000000007";
		uint8_t meta[64] = { 3 }, data[8197] = { 0 };
		snprintf(root, sizeof(root), "%s/tail", dir);
		mkdirs(root, tid);
		put64(meta + 8, P);
		put64(meta + 16, sizeof(data));
		e2b_parse_build_id(tid, meta + 32);
		memcpy(meta + 48, meta + 32, 16);
		memset(data + sizeof(data) - 5, 0xab, 5);
		write_file(root, tid, "rootfs.ext4.header", meta, sizeof(meta));
		write_file(root, tid, "rootfs.ext4", data, sizeof(data));
		snprintf(path, sizeof(path), "%s/expect-tail.img", dir);
		FILE *f = fopen(path, "wb");
		if (!f || fwrite(data, 1, sizeof(data), f) != sizeof(data) || fclose(f))
			return 2;
		fprintf(ids, "tail %s\n", tid);
	}
	/* memfile: a second artifact beside rootfs.ext4 of the same build ids */
	snprintf(root, sizeof(root), "%s/store", dir);
	model_init(&m, root, "memfile", 32 * P);
	m.rng = 1234;
	add_build(&m, all_pages, E2B_CODEC_ZSTD, 32768, 4, true);
	fprintf(ids, "mem %s\n", m.b[0].s);
	write_expect(&m, dir, "expect-mem.img");
	model_free(&m);
	return fclose(ids) ? 2 : 0;
}

static void test_chain(const char *tmp)
{
	char root[1024], path[2048], why[4000];
	struct model m;

	snprintf(root, sizeof(root), "%s/chain", tmp);
	make_chain(&m, root, 64 * P);
	/* each generation reads back exactly; the model only holds the last,
	 * so re-read every build's store against a fresh replay */
	check_reads(&m, 4, "E (V4 uncompressed, top)");
	check_threads(&m, 4);
	struct model r;
	/* earlier generations: the same chain up to them, in folders of
	 * their own (the same seed makes the same builds) */
	for (int upto = 1; upto <= 4; upto++) {
		char r2[1100];
		snprintf(r2, sizeof(r2), "%s/chain%d", tmp, upto);
		model_init(&r, r2, "rootfs.ext4", 64 * P);
		add_build(&r, all_pages, E2B_CODEC_NONE, 0, 3, false);
		for (int i = 1; i < upto; i++)
			add_build(&r, some_pages, i == 2 ? E2B_CODEC_ZSTD : i == 3 ? E2B_CODEC_LZ4 :
				  E2B_CODEC_NONE, 16384, i < 2 ? 3 : 4, i >= 2);
		const char *what[] = { "", "A (V3 root)", "B (V3 gen 1)", "C (V4 zstd gen 2)",
				       "D (V4 lz4 gen 3)" };
		check_reads(&r, upto - 1, what[upto]);
		model_free(&r);
	}

	/* verification: C and D have whole frame tables and SHA-256 records */
	struct e2b_store *s = NULL;
	struct e2b_build_check c[MAXB];
	int ret = e2b_store_open(root, m.b[3].s, m.name, NULL, &s, why, sizeof(why));
	CHECK(ret == 0, "open D: %s", why);
	if (!ret) {
		const struct e2b_header *h = e2b_store_header(s);
		ret = e2b_store_verify(s, c, NULL, NULL);
		CHECK(ret == 0, "verify D: %d", ret);
		for (uint32_t k = 0; k < h->n_ids; k++) {
			char id[37];
			e2b_uuid_str(h->ids[k], id);
			int bi = !strcmp(id, m.b[2].s) ? 2 : !strcmp(id, m.b[3].s) ? 3 : -1;
			CHECK(c[k].result == (bi > 0 ? E2B_CHECK_SHA : E2B_CHECK_NONE) &&
			      (bi < 0 || c[k].frames == m.b[bi].nf), "verify D: build %s: %d, %llu frames",
			      id, c[k].result, (unsigned long long)c[k].frames);
		}
		e2b_store_close(s);
	}
	ret = e2b_store_open(root, m.b[4].s, m.name, NULL, &s, why, sizeof(why));
	if (!ret) {
		const struct e2b_header *h = e2b_store_header(s);
		ret = e2b_store_verify(s, c, NULL, NULL);
		CHECK(ret == 0, "verify E: %d", ret);
		for (uint32_t k = 0; k < h->n_ids; k++) {
			bool root_or_b = !memcmp(h->ids[k], m.b[0].id, 16) || !memcmp(h->ids[k], m.b[1].id, 16);
			CHECK(c[k].result == (root_or_b ? E2B_CHECK_NONE : E2B_CHECK_SHA),
			      "verify E: id %u: %d (%s)", k, c[k].result, c[k].why);
		}
		e2b_store_close(s);
	}

	/* wrong build id: B's header in C's folder */
	snprintf(path, sizeof(path), "%s/%s/rootfs.ext4.header", root, m.b[1].s);
	char path2[2048];
	snprintf(path2, sizeof(path2), "%s/%s/rootfs.ext4.header", root, m.b[2].s);
	char save[4096];
	snprintf(save, sizeof(save), "%s.save", path2);
	rename(path2, save);
	link(path, path2);
	ret = open_err(&m, 2, why, sizeof(why));
	CHECK(ret == -EINVAL && strstr(why, "the header is of build") && strstr(why, m.b[1].s),
	      "wrong build id: %d %s", ret, why);
	unlink(path2);
	rename(save, path2);

	/* missing builds: every one listed */
	char a[2048], b[2048], a2[4096], b2[4096];
	path_of(&m, 0, "", a, sizeof(a));
	path_of(&m, 2, ".zstd", b, sizeof(b));
	snprintf(a2, sizeof(a2), "%s.x", a);
	snprintf(b2, sizeof(b2), "%s.x", b);
	rename(a, a2);
	rename(b, b2);
	ret = open_err(&m, 4, why, sizeof(why));
	CHECK(ret == -ENOENT && strstr(why, "build(s) not found under") && strstr(why, m.b[0].s) &&
	      strstr(why, m.b[2].s) && !strstr(why, m.b[1].s), "missing: %d %s", ret, why);
	rename(a2, a);
	rename(b2, b);
	/* a missing header: the build itself is not found */
	char bad_id[] = "a9999999-0000-4000-8000-000000000000";
	struct e2b_store *s2 = NULL;
	ret = e2b_store_open(root, bad_id, "rootfs.ext4", NULL, &s2, why, sizeof(why));
	CHECK(ret == -ENOENT && strstr(why, bad_id), "no header: %d %s", ret, why);

	/* truncated uncompressed data: refused at open, naming build and range */
	path_of(&m, 1, "", b, sizeof(b));
	CHECK(truncate(b, (off_t)(m.b[1].len - P)) == 0, "truncate");
	ret = open_err(&m, 4, why, sizeof(why));
	CHECK(ret == -EINVAL && strstr(why, m.b[1].s) && strstr(why, "data file holds"),
	      "truncated: %d %s", ret, why);
	write_file(root, m.b[1].s, "rootfs.ext4", m.b[1].stored, m.b[1].stored_len);
	/* truncated compressed data: its last frame is past the end */
	path_of(&m, 3, ".lz4", b, sizeof(b));
	CHECK(truncate(b, (off_t)(m.b[3].stored_len - 1)) == 0, "truncate");
	ret = open_err(&m, 4, why, sizeof(why));
	CHECK(ret == -EINVAL && strstr(why, m.b[3].s) && strstr(why, "is stored at bytes"),
	      "truncated lz4: %d %s", ret, why);
	write_file(root, m.b[3].s, "rootfs.ext4.lz4", m.b[3].stored, m.b[3].stored_len);

	/* corrupt frames: -EIO for that frame only, and verify says BAD */
	for (int bi = 2; bi <= 3; bi++) {
		struct build *bb = &m.b[bi];
		uint8_t *bad = malloc(bb->stored_len);
		memcpy(bad, bb->stored, bb->stored_len);
		bad[bb->f[1].sc + bb->f[1].nc / 2] ^= 0x55;
		write_file(root, bb->s, bi == 2 ? "rootfs.ext4.zstd" : "rootfs.ext4.lz4", bad,
			   bb->stored_len);
		ret = e2b_store_open(root, bb->s, m.name, NULL, &s, why, sizeof(why));
		CHECK(ret == 0, "open with a corrupt frame: %s", why);
		if (!ret) {
			uint8_t *buf = malloc(64 * P);
			/* the device pages of build bi in frame 1 (storage 16K..32K) */
			uint64_t dev = UINT64_MAX;
			struct model rr;
			char r2[1100];
			snprintf(r2, sizeof(r2), "%s/replay%d", tmp, bi);
			model_init(&rr, r2, "rootfs.ext4", 64 * P);
			add_build(&rr, all_pages, E2B_CODEC_NONE, 0, 3, false);
			for (int i = 1; i <= bi; i++)
				add_build(&rr, some_pages, i == 2 ? E2B_CODEC_ZSTD : i == 3 ? E2B_CODEC_LZ4 :
					  E2B_CODEC_NONE, 16384, i < 2 ? 3 : 4, i >= 2);
			for (uint64_t p = 0; p < rr.pages; p++)
				if (rr.src[p] == bi && rr.sto[p] == 16384)
					dev = p * P;
			CHECK(dev != UINT64_MAX, "a page in frame 1");
			if (dev != UINT64_MAX)
				CHECK(e2b_store_read(s, buf, P, dev) == -EIO, "corrupt frame of %s read",
				      bb->s);
			CHECK(e2b_store_read(s, buf, P, 0) == 0 && !memcmp(buf, rr.img, P),
			      "another frame still reads");
			ret = e2b_store_verify(s, c, NULL, NULL);
			const struct e2b_header *h = e2b_store_header(s);
			bool found = false;
			for (uint32_t k = 0; k < h->n_ids; k++)
				if (!memcmp(h->ids[k], bb->id, 16))
					found = c[k].result == E2B_CHECK_BAD && strstr(c[k].why, "frame 1");
			CHECK(ret == -EIO && found, "verify of a corrupt frame: %d", ret);
			model_free(&rr);
			free(buf);
			e2b_store_close(s);
		}
		write_file(root, bb->s, bi == 2 ? "rootfs.ext4.zstd" : "rootfs.ext4.lz4", bb->stored,
			   bb->stored_len);
		free(bad);
	}

	/* the layer: id and generation of the build */
	struct layer *l = NULL;
	ret = layer_e2b_open(root, m.b[4].s, NULL, NULL, &l, why, sizeof(why));
	CHECK(ret == 0 && l->size == 64 * P && l->generation == 4 && !memcmp(l->id, m.b[4].id, 16) &&
	      l->read_only, "layer: %d %s", ret, why);
	if (!ret)
		layer_close(l);
	model_free(&m);
}

/* A header that trims its ancestors' frame tables, as E2B writes them:
 * their SHA-256 cannot be checked, their used frames can. */
static void test_trimmed(const char *tmp)
{
	char root[1024], why[2000];
	struct model m;
	struct e2b_store *s = NULL;
	struct e2b_build_check c[MAXB];

	snprintf(root, sizeof(root), "%s/trim", tmp);
	model_init(&m, root, "rootfs.ext4", 64 * P);
	add_build(&m, all_pages, E2B_CODEC_ZSTD, 16384, 4, false);
	m.trim = true;
	add_build(&m, late_pages, E2B_CODEC_LZ4, 16384, 4, false);
	check_reads(&m, 1, "trimmed tables");
	int ret = e2b_store_open(root, m.b[1].s, m.name, NULL, &s, why, sizeof(why));
	CHECK(ret == 0, "trimmed: open: %s", why);
	if (!ret) {
		const struct e2b_header *h = e2b_store_header(s);
		const struct e2b_build *r = e2b_header_build(h, m.b[0].id);
		CHECK(r && r->n_frames < m.b[0].nf, "the root's table is trimmed (%u of %u)",
		      r ? r->n_frames : 0, m.b[0].nf);
		ret = e2b_store_verify(s, c, NULL, NULL);
		CHECK(ret == 0, "trimmed: verify %d", ret);
		for (uint32_t k = 0; k < h->n_ids; k++) {
			bool root_id = !memcmp(h->ids[k], m.b[0].id, 16);
			CHECK(c[k].result == (root_id ? E2B_CHECK_FRAMES : E2B_CHECK_SHA) && c[k].sha_recorded &&
			      (!root_id || c[k].frames == r->n_frames), "trimmed: id %u: %d, %llu frames", k,
			      c[k].result, (unsigned long long)c[k].frames);
		}
		e2b_store_close(s);
	}
	model_free(&m);
}

/* Frames claiming more than a frame may hold, or stored in more bytes
 * than their codec could need: refused at open, before any allocation. */
static void test_frame_limits(const char *tmp)
{
	char root[1024], why[2000];
	struct model m;
	size_t hlen;

	snprintf(root, sizeof(root), "%s/limits", tmp);
	model_init(&m, root, "rootfs.ext4", 16 * P);
	add_build(&m, all_pages, E2B_CODEC_ZSTD, 65536, 4, false);
	m.gen = 0;
	m.b[0].f[0].nu = (64u << 20) + 4096;
	uint8_t *h = header(&m, 4, &hlen, false);
	write_file(root, m.b[0].s, "rootfs.ext4.header", h, hlen);
	free(h);
	int ret = open_err(&m, 0, why, sizeof(why));
	CHECK(ret == -EINVAL && strstr(why, "frame 0 holds 67112960 bytes, more than the 67108864"),
	      "huge frame: %d %s", ret, why);
	m.b[0].f[0].nu = 65536;
	m.b[0].f[0].nc = 65536 + 65536 / 128 + 4097;
	h = header(&m, 4, &hlen, false);
	write_file(root, m.b[0].s, "rootfs.ext4.header", h, hlen);
	free(h);
	ret = open_err(&m, 0, why, sizeof(why));
	CHECK(ret == -EINVAL && strstr(why, "more than zstd could make of 65536 bytes"),
	      "overlong frame: %d %s", ret, why);
	model_free(&m);
}

static void test_odd_size(const char *tmp)
{
	char root[1024];
	struct model m;

	snprintf(root, sizeof(root), "%s/odd", tmp);
	model_init(&m, root, "memfile", 10000);
	add_build(&m, all_pages, E2B_CODEC_NONE, 0, 3, false);
	check_reads(&m, 0, "10000-byte build");
	model_free(&m);
}

/* A read-only device larger than its build (--read-only --size): reads
 * past the build are zeros, as over a file, a diff or a remote base. */
static void test_grown(const char *tmp)
{
	char root[1024], dir[1100], why[2000] = "";
	struct layer_http_opts o = { .keep_frames = true, .cache_dir = dir };
	struct model m;
	struct layer *l = NULL;
	static uint8_t buf[8 * P];

	snprintf(root, sizeof(root), "%s/grown", tmp);
	snprintf(dir, sizeof(dir), "%s/grown-chunks", tmp);
	model_init(&m, root, "rootfs.ext4", 16 * P);
	add_build(&m, all_pages, E2B_CODEC_ZSTD, 16384, 4, false);
	int ret = layer_e2b_open(root, m.b[0].s, NULL, &o, &l, why, sizeof(why));
	CHECK(!ret, "grown: open: %s", why);
	if (ret) {
		model_free(&m);
		return;
	}
	l->size = 32 * P;   /* as stack_open makes it */
	io_uring_queue_init(8, &ring, 0);
	memset(buf, 0xee, sizeof(buf));
	CHECK(run(l, LAYER_READ, 15 * P, 3 * P, buf) == 3 * P && !memcmp(buf, m.img + 15 * P, P) &&
	      buf[P] == 0 && !memcmp(buf + P, buf + P + 1, 2 * P - 1), "a read across the build's end");
	memset(buf, 0xee, sizeof(buf));
	CHECK(run(l, LAYER_READ, 20 * P, P, buf) == P && buf[0] == 0 && !memcmp(buf, buf + 1, P - 1),
	      "a read past the build");
	CHECK(run(l, LAYER_READ, 31 * P, 2 * P, buf) == -EIO, "a read past the device");
	/* in place: the last frame, kept by the read across the end, then zeros */
	struct layer_map lm = { .n = 0 };
	int n = l->maps ? layer_map(l, 12 * P, 8 * P, &lm) : 0;
	size_t at = 0;
	for (int i = 0; i < n && at + lm.iov[i].iov_len <= sizeof(buf); i++) {
		memcpy(buf + at, lm.iov[i].iov_base, lm.iov[i].iov_len);
		at += lm.iov[i].iov_len;
	}
	layer_unmap(&lm);
	CHECK(n == 2 && at == 8 * P && !memcmp(buf, m.img + 12 * P, 4 * P) && buf[4 * P] == 0 &&
	      !memcmp(buf + 4 * P, buf + 4 * P + 1, 4 * P - 1), "mapped across the build's end: %d "
	      "pieces", n);
	io_uring_queue_exit(&ring);
	layer_close(l);
	model_free(&m);
}

static void unpin_all(struct layer_map *m)
{
	for (int i = 0; i < m->npins; i++)
		chunk_unpin(m->pins[i].pin);
	*m = (struct layer_map){ 0 };
}

/* Kept frames in place: the image's bytes, a piece a frame, each pinned;
 * a read from the middle of a frame to the middle of the next is two
 * pieces of them; nothing past the build. */
static void check_kept_map(struct e2b_store *s, const uint8_t *img, uint64_t size)
{
	static struct layer_map m;
	struct layer l = { 0 };
	uint64_t at = 0;
	int n;

	CHECK(e2b_store_maps(s), "map: every frame may be mapped");
	n = e2b_store_map(s, 0, (uint32_t)size, &l, &m);
	CHECK(n == 16 && m.n == 16 && m.npins == 16, "map: %d pieces, %d pins, of 16 frames", n, m.npins);
	for (int i = 0; i < m.n; at += m.iov[i++].iov_len)
		CHECK(at + m.iov[i].iov_len <= size && !memcmp(m.iov[i].iov_base, img + at, m.iov[i].iov_len),
		      "map: piece %d's bytes", i);
	CHECK(at == size, "map: %llu bytes of %llu", (unsigned long long)at, (unsigned long long)size);
	CHECK(m.pins[0].l == &l, "map: pinned for the layer");
	unpin_all(&m);
	n = e2b_store_map(s, 16384 - P, 2 * P, &l, &m);
	CHECK(n == 2 && !memcmp(m.iov[0].iov_base, img + 16384 - P, P) &&
	      !memcmp(m.iov[1].iov_base, img + 16384, P), "map: across two frames");
	unpin_all(&m);
	CHECK(e2b_store_map(s, size - P, 2 * P, &l, &m) == 0, "map: nothing past the build");
	unpin_all(&m);
}

/* With keep_frames, a compressed build's frames, once decompressed (by a
 * fetch thread's decoder or under the lock), are kept in the chunk cache,
 * one chunk file each; a later store over the same files reads them from
 * there without waiting: its data file cut short after its open, no frame
 * could be decompressed. A header with another frame table (a child's,
 * trimmed) gets a folder of its own; a limit below 16 frames keeps none. */
static void test_kept_frames(const char *tmp)
{
	char root[1024], dir[1100], data[1200], why[2000] = "";
	struct layer_http_opts o = { .keep_frames = true };
	struct e2b_store *s = NULL;
	struct model m;
	int folders, ret;

	snprintf(root, sizeof(root), "%s/kept", tmp);
	snprintf(dir, sizeof(dir), "%s/kept-chunks", tmp);
	o.cache_dir = dir;
	/* 15 frames of 16 KiB and a last one of 8 KiB */
	model_init(&m, root, "rootfs.ext4", 62 * P);
	add_build(&m, all_pages, E2B_CODEC_ZSTD, 16384, 4, false);
	uint8_t *buf = malloc(m.size);
	uint64_t half = m.size / 2;
	ret = e2b_store_open(root, m.b[0].s, m.name, &o, &s, why, sizeof(why));
	CHECK(!ret, "kept: open: %s", why);
	if (ret)
		goto out;
	struct e2b_decoder *own = e2b_decoder_new(s);
	CHECK(own != NULL, "a fetch thread's decoder");
	CHECK(e2b_store_try_read(s, buf, P, 0) == -EAGAIN, "a frame not kept: -EAGAIN without waiting");
	CHECK(own && e2b_store_read_own(s, own, buf, half, 0) == 0, "read with a decoder of its own");
	CHECK(e2b_store_read(s, buf + half, half, half) == 0 && !memcmp(buf, m.img, m.size),
	      "and under the lock: the bytes");
	CHECK(check_chunk_files(dir, &folders) == (int)m.b[0].nf && folders == 1, "%d frames kept in %d "
	      "folders, of %u", check_chunk_files(dir, &folders), folders, m.b[0].nf);
	e2b_decoder_free(own);
	e2b_store_close(s);
	uint8_t *root_img = malloc(m.size);
	memcpy(root_img, m.img, m.size);

	/* without the chunk cache, a frame a fetch thread decompressed goes
	 * into a slot, read from there without waiting; a fetch thread
	 * without buffers of its own fails a frame not kept */
	struct layer_http_opts none = { 0 };
	ret = e2b_store_open(root, m.b[0].s, m.name, &none, &s, why, sizeof(why));
	CHECK(!ret, "kept, no cache: open: %s", why);
	if (!ret) {
		own = e2b_decoder_new(s);
		uint64_t at = 5 * 16384 + P;
		CHECK(own && e2b_store_read_own(s, own, buf, 2 * P, at) == 0, "no cache: read with a decoder");
		memset(buf, 0xee, 2 * P);
		CHECK(e2b_store_try_read(s, buf, 2 * P, at) == 0 && !memcmp(buf, root_img + at, 2 * P),
		      "no cache: the frame kept in a slot");
		CHECK(e2b_store_read_own(s, NULL, buf, P, 9 * 16384) == -ENOMEM,
		      "no cache: without a decoder, a frame not kept fails");
		CHECK(e2b_store_read_own(s, NULL, buf, P, at) == 0 && !memcmp(buf, root_img + at, P),
		      "no cache: without a decoder, a kept frame reads");
		e2b_decoder_free(own);
		e2b_store_close(s);
	}

	/* a child's header trims the root's table: another folder for it */
	m.trim = true;
	add_build(&m, late_pages, E2B_CODEC_LZ4, 16384, 4, false);
	ret = e2b_store_open(root, m.b[1].s, m.name, &o, &s, why, sizeof(why));
	CHECK(!ret, "kept, child: open: %s", why);
	if (!ret) {
		CHECK(e2b_store_read(s, buf, m.size, 0) == 0 && !memcmp(buf, m.img, m.size), "child: the bytes");
		CHECK(check_chunk_files(dir, &folders) > 0 && folders == 3, "child: %d folders", folders);
		e2b_store_close(s);
	}
	/* a limit below 16 frames: none kept */
	o.cache_limit = 16 * 16384 - 1;
	ret = e2b_store_open(root, m.b[1].s, m.name, &o, &s, why, sizeof(why));
	CHECK(!ret, "kept, small limit: open: %s", why);
	if (!ret) {
		int before = check_chunk_files(dir, &folders);
		CHECK(e2b_store_try_read(s, buf, P, 0) == -EAGAIN, "small limit: nothing read from the cache");
		CHECK(e2b_store_read(s, buf, m.size, 0) == 0 && check_chunk_files(dir, &folders) == before,
		      "small limit: nothing stored");
		e2b_store_close(s);
	}
	o.cache_limit = 0;

	/* the root again, its data file cut short once open: every read is
	 * served from the kept frames, none waits */
	ret = e2b_store_open(root, m.b[0].s, m.name, &o, &s, why, sizeof(why));
	CHECK(!ret, "kept, again: open: %s", why);
	if (!ret) {
		snprintf(data, sizeof(data), "%s/%s/%s.zstd", root, m.b[0].s, m.name);
		CHECK(truncate(data, 0) == 0, "cut %s short", data);
		memset(buf, 0xee, m.size);
		CHECK(e2b_store_try_read(s, buf, m.size, 0) == 0 && !memcmp(buf, root_img, m.size),
		      "every frame from the chunk cache, without waiting");
		check_kept_map(s, root_img, m.size);
		e2b_store_close(s);
	}
	free(root_img);

	/* as many frames as the server holds open are mapped, one more not */
	for (uint32_t nf = CHUNK_OPEN_FILES; nf <= CHUNK_OPEN_FILES + 1; nf++) {
		model_free(&m);
		snprintf(root, sizeof(root), "%s/kept-%u", tmp, nf);
		model_init(&m, root, "rootfs.ext4", nf * P);
		add_build(&m, all_pages, E2B_CODEC_ZSTD, P, 4, false);
		ret = e2b_store_open(root, m.b[0].s, m.name, &o, &s, why, sizeof(why));
		CHECK(!ret, "kept, %u frames: open: %s", nf, why);
		if (ret)
			continue;
		CHECK(m.b[0].nf == nf && e2b_store_maps(s) == (nf <= CHUNK_OPEN_FILES),
		      "%u frames: maps %d", m.b[0].nf, e2b_store_maps(s));
		e2b_store_close(s);
	}
out:
	free(buf);
	model_free(&m);
}

static void test_parse_id(void)
{
	uint8_t id[16];
	CHECK(e2b_parse_build_id("0123abcd-4567-89ef-0123-456789abcdef", id) && id[0] == 0x01 &&
	      id[15] == 0xef, "good id");
	CHECK(!e2b_parse_build_id("0123ABCD-4567-89ef-0123-456789abcdef", id), "upper case");
	CHECK(!e2b_parse_build_id("0123abcd-4567-89ef-0123-456789abcde", id), "short");
	CHECK(!e2b_parse_build_id("0123abcd-4567-89ef-0123-456789abcdef0", id), "long");
	CHECK(!e2b_parse_build_id("0123abcd+4567-89ef-0123-456789abcdef", id), "dash");
	CHECK(!e2b_parse_build_id("../3abcd-4567-89ef-0123-456789abcdef", id), "path");
	CHECK(e2b_file_name_ok("rootfs.ext4") && e2b_file_name_ok("memfile") &&
	      !e2b_file_name_ok("../memfile") && !e2b_file_name_ok("rootfs.ext4.header"), "names");
}

int main(int argc, char **argv)
{
	char tmp[] = "/tmp/test-e2b-store.XXXXXX", cmd[4200];

	if (argc == 3 && !strcmp(argv[1], "make"))
		return make(argv[2]);
	if (!mkdtemp(tmp))
		return 2;
	test_parse_id();
	test_chain(tmp);
	test_trimmed(tmp);
	test_frame_limits(tmp);
	test_odd_size(tmp);
	test_grown(tmp);
	test_kept_frames(tmp);
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmp);
	if (system(cmd))
		fprintf(stderr, "could not remove %s\n", tmp);
	return check_summary();
}
