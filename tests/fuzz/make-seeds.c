/*
 * Writes the seed corpora of the fuzz harnesses (tests/fuzz/corpus/) with
 * the project's own writers: a cache made and written through the cache
 * layer, its map and live map as the layer leaves them, diffs exported
 * from it by export_cache (what ublk-export-diff --cache runs) as raw,
 * zstd and v3, a state entry's config as devconfig_write writes it,
 * access traces as trace_format writes them, the sections of the V4 and
 * V5 E2B headers in tests/e2b/golden unframed, E2B builds (header and
 * data file) as e2b_write_data and e2b_next_header make them for
 * ublk-export-diff --format e2b. Header values and option
 * strings are the documented examples. Run by `make fuzz-seeds`; the
 * output is committed.
 *   make-seeds CORPUS_DIR
 */
#include "util/aio.h"
#include "image/access_trace.h"
#include "devconfig.h"
#include "devopts.h"
#include "export.h"
#include "image/layer.h"
#include "host/state.h"
#include "fuzz.h"
#include "image/layer_file.h"
#include "image/layer_cache.h"
#include "image/e2b_write.h"

#include <liburing.h>
#include <lz4frame.h>

static const char *corpus;
static char tmp[256];

static void put_file(const char *harness, const char *name, const void *a, size_t alen,
		     const void *b, size_t blen)
{
	char path[512];
	snprintf(path, sizeof(path), "%s/%s", corpus, harness);
	mkdir(path, 0755);
	snprintf(path, sizeof(path), "%s/%s/%s", corpus, harness, name);
	FILE *f = fopen(path, "we");
	if (!f || fwrite(a, 1, alen, f) != alen || (b && (fwrite(FZ_SEP, 1, FZ_SEP_LEN, f) != FZ_SEP_LEN ||
							 fwrite(b, 1, blen, f) != blen)) || fclose(f))
		FZ_DIE("writing %s: %s", path, strerror(errno));
}

static uint8_t *slurp(const char *path, size_t *len)
{
	static uint8_t *bufs[16];
	static int next;
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	struct stat st;
	if (fd < 0 || fstat(fd, &st))
		FZ_DIE("%s: %s", path, strerror(errno));
	uint8_t *b = malloc((size_t)st.st_size + 1);
	if (!b || pread(fd, b, (size_t)st.st_size, 0) != st.st_size)
		FZ_DIE("reading %s", path);
	close(fd);
	free(bufs[next % 16]);
	bufs[next++ % 16] = b;
	*len = (size_t)st.st_size;
	return b;
}

/* ---- E2B header sections (fuzz_e2b_section.c) ---- */

/* A golden V4/V5 header (run from the source tree) as fuzz_e2b_section
 * takes it: metadata and flags, then the section its LZ4 frame holds. */
static void put_e2b_section(const char *name)
{
	char path[300];
	size_t len, got, used;
	uint32_t want;
	LZ4F_dctx *dc;

	snprintf(path, sizeof(path), "tests/e2b/golden/%s.header", name);
	uint8_t *h = slurp(path, &len);
	if (len < 69)
		FZ_DIE("%s: too short", path);
	memcpy(&want, h + 65, 4);
	want = le32toh(want);
	uint8_t *out = malloc(65 + (size_t)want + 1);
	if (!out || LZ4F_isError(LZ4F_createDecompressionContext(&dc, LZ4F_VERSION)))
		FZ_DIE("%s: out of memory", path);
	memcpy(out, h, 65);
	got = (size_t)want + 1;
	used = len - 69;
	if (LZ4F_decompress(dc, out + 65, &got, h + 69, &used, NULL) != 0 || got != want)
		FZ_DIE("%s: its LZ4 frame does not hold its %u bytes", path, want);
	LZ4F_freeDecompressionContext(dc);
	put_file("e2b_section", name, out, 65 + got, NULL, 0);
	free(out);
}

/* ---- E2B builds (fuzz_e2b_store.c) ---- */

static int seed_block(void *ctx, uint64_t block, uint32_t count, void *buf)
{
	(void)ctx;
	for (size_t i = 0; i < (size_t)count * 4096; i++)   /* compressible, not all alike */
		((uint8_t *)buf)[i] = (uint8_t)(block * 7 + (i / 4096) + (i % 64 == 0 ? i : 0));
	return 0;
}

/* A 64 KiB device's first build over an empty parent, in this layout and
 * codec, 8 KiB frames: its header FZ_SEP its data file. */
static void put_e2b_store(const char *name, unsigned format, enum e2b_codec codec)
{
	static const struct diff_extent ext[] = { { 1, 3, DIFF_DATA }, { 8, 2, DIFF_DATA },
						   { 12, 1, DIFF_ZERO }, { 14, 1, DIFF_DATA } };
	struct e2b_entry nil = { 0, 65536, 0, E2B_NIL };
	struct e2b_header parent = { .version = format, .format = format, .block_size = 4096,
				     .size = 65536, .n_entries = 1, .entries = &nil,
				     .build_id = { 0x11, 1 }, .base_build_id = { 0x11, 1 } };
	const uint8_t child_id[16] = { 0x22, 2 };
	struct diff_source src = { .read = seed_block };
	struct e2b_data_opts o = { .codec = codec, .frame_size = 8192 };
	struct e2b_build self = { { 0 } };
	struct e2b_header *child;
	uint8_t *hdr, *dat;
	size_t hlen, dlen;
	uint64_t bytes;
	char why[600], path[300];
	int fd = fz_file("e2b-data", path, sizeof(path));

	memcpy(self.id, child_id, 16);
	if (ftruncate(fd, 0) ||
	    e2b_write_data(fd, ext, 4, &src, &o, &self, &bytes, why, sizeof(why)) ||
	    e2b_next_header(&parent, ext, 4, child_id, format, &self, NULL, NULL, &child, why,
			    sizeof(why)) ||
	    e2b_header_serialize(child, &hdr, &hlen, why, sizeof(why)))
		FZ_DIE("E2B build %s: %s", name, why);
	close(fd);
	dat = slurp(path, &dlen);
	put_file("e2b_store", name, hdr, hlen, dat, dlen);
	free(hdr);
	free(self.frames);
	e2b_header_free(child);
}

/* ---- a cache, written through the cache layer ---- */

struct sync_io {
	struct layer_io io;
	int res;
};

static struct io_uring ring;
static struct aio aio = { .ring = &ring };
static char priv[4096];

static void on_done(struct layer_io *io, int res)
{
	((struct sync_io *)io)->res = res;
}

static void run(struct layer *l, enum layer_op op, uint64_t block, uint32_t blocks, void *buf)
{
	struct sync_io s = { .io = { .op = op, .off = block * 4096, .len = blocks * 4096, .buf = buf,
				     .done = on_done, .aio = &aio, .priv = priv }, .res = 1 };
	layer_submit(l, &s.io);
	if (aio_drain(&aio) || s.res < 0)
		FZ_DIE("layer op %d at block %llu: %d", op, (unsigned long long)block, s.res);
}

static void make_cache(const char *base, const char *cache, uint8_t **live, size_t *live_len)
{
	static uint8_t buf[4 * 4096] __attribute__((aligned(4096)));
	struct layer *b, *l;
	char why[1024], path[600];
	int fd = open(base, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);

	for (size_t i = 0; i < sizeof(buf); i++)
		buf[i] = (uint8_t)(i * 7 + i / 4096);
	if (fd < 0 || ftruncate(fd, 64 * 4096) || pwrite(fd, buf, sizeof(buf), 0) != sizeof(buf))
		FZ_DIE("%s: %s", base, strerror(errno));
	close(fd);
	if (layer_file_open(base, true, &b) ||
	    layer_cache_open(cache, b, 128 * 4096, false, &l, why, sizeof(why)))
		FZ_DIE("cache %s: %s", cache, why);
	run(l, LAYER_WRITE, 3, 2, buf);            /* data */
	memset(buf, 0, 4096);
	run(l, LAYER_WRITE, 8, 1, buf);            /* an all-zero write: zero state */
	run(l, LAYER_DISCARD, 10, 4, NULL);        /* zero extent */
	memset(buf, 0x5c, 4096);
	run(l, LAYER_WRITE, 70, 1, buf);           /* past the base */
	run(l, LAYER_FLUSH, 0, 0, NULL);
	snprintf(path, sizeof(path), "%s.live", cache);
	*live = slurp(path, live_len);
	layer_close(l);
}

static void export(const char *cache, const char *out, bool zstd, uint32_t frame, bool v3)
{
	struct export_opts o = { .out = out, .zstd = zstd, .frame_size = frame, .keep = true,
				 .timeout_ms = 5000, .v3 = v3 };
	struct export_result r;
	char why[1024];
	if (export_cache(cache, &o, &r, why, sizeof(why)))
		FZ_DIE("export %s: %s", out, why);
}

int main(int argc, char **argv)
{
	char base[300], cache[300], map[300], out[300], hdr[320];
	uint8_t *live, *a, *b;
	size_t live_len, alen, blen;

	if (argc != 2)
		FZ_DIE("usage: make-seeds CORPUS_DIR");
	corpus = argv[1];
	mkdir(corpus, 0755);
	snprintf(tmp, sizeof(tmp), "%s", fz_dir());
	if (io_uring_queue_init(64, &ring, 0))
		FZ_DIE("io_uring_queue_init failed");
	snprintf(base, sizeof(base), "%s/base.img", tmp);
	snprintf(cache, sizeof(cache), "%s/c.cache", tmp);
	snprintf(map, sizeof(map), "%s.map", cache);
	make_cache(base, cache, &live, &live_len);

	/* live map: the boot id becomes the token the harnesses replace */
	memcpy(live + 32, "BOOT", 4);
	put_file("cache_live", "live", live, live_len, NULL, 0);
	a = slurp(map, &alen);
	put_file("cache_map", "map", a, alen, NULL, 0);
	put_file("cache_map", "map-live", a, alen, live, live_len);

	snprintf(out, sizeof(out), "%s/raw4k.diff", tmp);
	export(cache, out, false, 4096, false);
	a = slurp(out, &alen);
	put_file("diff", "raw-4k-frames", a, alen, NULL, 0);
	snprintf(out, sizeof(out), "%s/zstd8k.diff", tmp);
	export(cache, out, true, 8192, false);
	a = slurp(out, &alen);
	put_file("diff", "zstd-8k-frames", a, alen, NULL, 0);
	snprintf(out, sizeof(out), "%s/zstd.diff", tmp);
	export(cache, out, true, 0, false);
	a = slurp(out, &alen);
	put_file("diff", "zstd-1m-frames", a, alen, NULL, 0);

	snprintf(out, sizeof(out), "%s/v3.img", tmp);
	snprintf(hdr, sizeof(hdr), "%s.header", out);
	export(cache, out, false, 0, true);
	a = slurp(hdr, &alen);
	b = slurp(out, &blen);
	put_file("diff_v3", "pair", a, alen, b, blen);

	/* a state entry's config, as the server writes it (format 2; the
	 * format 1 seeds, config-only and entry, are kept as they were) */
	struct server_config cfg;
	char config[8192], state[320];
	int used;
	devopts_defaults(&cfg);
	cfg.stack.base = "/srv/images/base.img";
	cfg.stack.layers[cfg.stack.n_layers++] = "/srv/images/sb17.diff";
	cfg.stack.cache = "/var/lib/ublk/next.cache";
	cfg.name = "build-17";
	cfg.stack.inject = "delay-read=30@0-4K";
	cfg.stack.size = 1ull << 30;
	cfg.stack.read_only = true;
	snprintf(state, sizeof(state), "%s/state", tmp);
	state_set_dir(state);
	char cookie[32];
	if (state_create(7, 0x5eed00c0000010a2ull) || devconfig_write(7, &cfg, cfg.stack.size) ||
	    (used = state_read(7, "config", config, sizeof(config))) <= 0 ||
	    state_read(7, "cookie", cookie, sizeof(cookie)) != 17)
		FZ_DIE("writing a state entry failed");
	char entry[12000];
	int elen = snprintf(entry, sizeof(entry), "%s" FZ_SEP "4242\n" FZ_SEP "live\n" FZ_SEP
			    "{\"queues\":[{\"reads\":1}]}\n" FZ_SEP "auth=Bearer x\n" FZ_SEP "%s",
			    config, cookie);
	put_file("state", "entry-v2", entry, (size_t)elen, NULL, 0);
	put_file("state", "config-v2", config, (size_t)used, NULL, 0);

	/* header values as servers send them; selector bytes as fuzz_http.c reads them */
	static const struct { const char *name, *s; } http[] = {
		{ "range", "\x00" "bytes 0-65535/1048576" },
		{ "range-spaces", "\x05" " bytes 4096-8191/8192 " },
		{ "length", "\x01" "1048576" },
		{ "etag", "\xfc" "\"5f2b-1a2b3c\"" },
		{ "etag-weak", "\xfc" "W/\"abc\"" },
		{ "url-log", "\xf8" "https://user:secret@example.com:8443/img.raw?X-Sig=abc#frag" },
		{ "url-identity", "\xf9" "HTTPS://Example.COM:443/a/b.img?sig=1" },
	};
	for (size_t i = 0; i < sizeof(http) / sizeof(http[0]); i++)
		put_file("http", http[i].name, http[i].s, 1 + strlen(http[i].s + 1), NULL, 0);

	static const struct { const char *name, *s; } ctl[] = {
		{ "freeze", "\x80" "freeze 5000\n" },
		{ "replies", "\x80" "frozen\nthawed\nexpired\nerror freezing: Timer expired\nthaw\n" },
	};
	for (size_t i = 0; i < sizeof(ctl) / sizeof(ctl[0]); i++)
		put_file("ctlsock", ctl[i].name, ctl[i].s, strlen(ctl[i].s), NULL, 0);

	/* mount tables (fuzz_mountinfo.c): flags, then lines after the one
	 * the harness plants */
	static const struct { const char *name, *s; } mnt[] = {
		{ "host", "\x7f" "22 27 0:21 / /proc rw,relatime - proc proc rw\n"
		  "31 27 259:6 / /mnt/sb\\040one rw,relatime shared:1 - ext4 /dev/ublkb5p1 rw\n"
		  "32 27 259:5 /deep/root /srv/bind rw - ext4 /dev/ublkb5 rw\n" },
		{ "other-major", "\x81" "40 1 8:17 / /data rw - xfs /dev/ublkb5p1 rw\n"
		  "41 1 8:18 / /not-ours rw - xfs /dev/sdb2 rw\n" },
		{ "no-newline", "\x10" "50 1 259:5 / /last rw - ext4 /dev/ublkb5 rw" },
	};
	for (size_t i = 0; i < sizeof(mnt) / sizeof(mnt[0]); i++)
		put_file("mountinfo", mnt[i].name, mnt[i].s, strlen(mnt[i].s), NULL, 0);

	/* whole responses (fuzz_http_response.c): flags, offset byte, then one
	 * response per connection; the first answers the probe of byte 0 */
#define R206(range, len, extra, body) "HTTP/1.1 206 Partial Content\r\nContent-Range: bytes " \
	range "/1048576\r\nContent-Length: " len "\r\nETag: \"v1\"\r\n" extra "\r\n" body
	static char chunked[2300];
	int clen = snprintf(chunked, sizeof(chunked), "HTTP/1.1 206 Partial Content\r\nContent-Range: "
			    "bytes 16-2064/1048576\r\nETag: \"v1\"\r\nTransfer-Encoding: chunked\r\n"
			    "\r\n801\r\n");
	memset(chunked + clen, 'z', 2049);
	memcpy(chunked + clen + 2049, "\r\n0\r\n\r\n", sizeof("\r\n0\r\n\r\n"));
	static const struct { const char *name; uint8_t flags, off; const char *resp[4]; } rsp[] = {
		{ "read", 0, 0, { R206("0-0", "1", "", "x"), R206("0-0", "1", "", "y") } },
		/* flags 4 | 1 << 3: 2049 bytes at 16, written to a file */
		{ "read-to-fd", 4 | 1 << 3, 16, { R206("0-0", "1", "", "x"), chunked } },
		{ "continue", 0, 0, { "HTTP/1.1 100 Continue\r\n\r\n" R206("0-0", "1", "", "x"),
			R206("0-0", "1", "Last-Modified: Tue, 01 Dec 2026 00:00:00 GMT\r\n", "y") } },
		/* flags 1 | 2: the auth header and a URL with user:password and a query */
		{ "redirect-other-origin", 3, 0, { R206("0-0", "1", "", "x"),
			"HTTP/1.1 302 Found\r\nLocation: http://@B@/blob?X-Sig=1\r\nContent-Length: 5\r\n\r\nmoved",
			R206("0-0", "1", "", "y") } },
		{ "redirect-same-origin", 1, 0, { R206("0-0", "1", "", "x"),
			"HTTP/1.1 307 Temporary Redirect\r\nLocation: /elsewhere\r\n\r\n",
			R206("0-0", "1", "", "y") } },
		{ "changed", 0, 0, { R206("0-0", "1", "", "x"),
			"HTTP/1.1 206 Partial Content\r\nContent-Range: bytes 0-0/2097152\r\nETag: \"v2\"\r\n\r\ny" } },
	};
#undef R206
	for (size_t i = 0; i < sizeof(rsp) / sizeof(rsp[0]); i++) {
		char seed[8192];
		size_t n = 0;
		seed[n++] = (char)rsp[i].flags;
		seed[n++] = (char)rsp[i].off;
		for (int r = 0; r < 4 && rsp[i].resp[r]; r++)
			n += (size_t)snprintf(seed + n, sizeof(seed) - n, "%s%s", r ? FZ_SEP : "",
					      rsp[i].resp[r]);
		put_file("http_response", rsp[i].name, seed, n, NULL, 0);
	}

	/* chunk cache roots (fuzz_chunkcache.c): flags, size, limit bytes, then
	 * key FZ_SEP entries FZ_SEP .stored */
	static const char entries[] = "f 0 4096 10\nf 1 4096 5\nf 2 100 0\nl 3 0 0\nd 4 0 0\n"
		"f .5.0123abcd.tmp 10 7200\no 7 4096 99999\no 8 4096 3\nu 1 4096 0\nL 9 0 0\nL u9 0 0\n";
	static const struct { const char *name; uint8_t flags, size, limit; const char *key; } cc[] = {
		/* the right key, a store, 41000 bytes in 4 KiB chunks, a due scan */
		{ "hit-store-evict", 0xc0, 40, 4, "" },
		{ "hit-32k", 0x83, 200, 0, "" },
		{ "wrong-key", 0x40, 40, 0, "ublk-tools chunk cache 2\nurl https://example.com/other\n" },
	};
	for (size_t i = 0; i < sizeof(cc) / sizeof(cc[0]); i++) {
		char seed[1024];
		int n = snprintf(seed, sizeof(seed), "%c%c%c%s" FZ_SEP "%s" FZ_SEP "%s", cc[i].flags,
				 cc[i].size, cc[i].limit, cc[i].key, entries, "\xff\xff\xff\xff\xff\xff\xff\x7f");
		put_file("chunkcache", cc[i].name, seed, (size_t)n, NULL, 0);
	}

	/* option strings: selector % 9 picks the parser (fuzz_options.c) */
	static const struct { const char *name; int sel; const char *s; } opt[] = {
		{ "size", 0, "64M" }, { "size-kib", 0, "4KiB" }, { "seconds", 1, "2.5" },
		{ "uint", 2, "17" }, { "dev-id", 3, "/dev/ublkb3" },
		{ "inject", 4, "delay-read=3000@0-4K,error-write=5@1M-2M" },
		{ "name", 5, "build-17" }, { "redact", 6, "https://u:p@h.example/x.img?sig=1" },
	};
	for (size_t i = 0; i < sizeof(opt) / sizeof(opt[0]); i++) {
		char s[256];
		s[0] = (char)opt[i].sel;
		snprintf(s + 1, sizeof(s) - 1, "%s", opt[i].s);
		put_file("options", opt[i].name, s, 1 + strlen(s + 1), NULL, 0);
	}
	/* devopts_apply: selector % 9 >= 7, key index (selector >> 1) % 17 */
	static const struct { const char *name; int key; const char *s; } dev[] = {
		{ "opt-base", 0, "/srv/base.img" }, { "opt-queues", 1, "4" }, { "opt-timeout", 3, "30" },
		{ "opt-size", 5, "10G" }, { "opt-inject", 6, "error-read=5@0-4K" },
		{ "opt-chunk-size", 9, "4M" }, { "opt-http-timeout", 12, "60" },
		{ "opt-retries", 13, "3" }, { "opt-state-dir", 16, "/run/ublk-tools" },
	};
	for (size_t i = 0; i < sizeof(dev) / sizeof(dev[0]); i++) {
		char s[256];
		int sel = 0;
		while (sel < 256 && !(sel % 9 >= 7 && (sel >> 1) % 17 == dev[i].key))
			sel++;
		s[0] = (char)sel;
		snprintf(s + 1, sizeof(s) - 1, "%s", dev[i].s);
		put_file("options", dev[i].name, s, 1 + strlen(s + 1), NULL, 0);
	}

	/* access traces as trace_format writes them: the spec's example, an
	 * E2B start, their merge with a third start, none at all */
	struct access_trace tr[3] = { 0 }, merged;
	const struct trace_image tbase = { TRACE_BASE,
		"9f2c4a0d6e1b3c5f7a9d2e4f6b8c0a1e3d5f7b9c1e2a4d6f8b0c3e5a7d9f1be1", 21474836480ull, 4194304 };
	const struct trace_image layer = { TRACE_LAYER,
		"77ab0c1d2e3f405162738495a6b7c8d9eafb0c1d2e3f405162738495a6b7c803", 21474836480ull, 4194304 };
	const struct trace_image e2b = { TRACE_E2B,
		"0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef", 536870912, 2097152 };
	char tw[256];
	for (int i = 0; i < 3; i++) {
		tr[i].images[0] = tbase;
		tr[i].images[1] = layer;
		tr[i].nimages = 2;
		tr[i].start_ms = 1764687600123ull + 60000ull * (uint64_t)i;
		snprintf(tr[i].label, sizeof(tr[i].label), "boot");
		trace_add(&tr[i], 0, 0, 12 + (uint64_t)i, false);
		trace_add(&tr[i], 0, 1, 15, i == 2);
		trace_add(&tr[i], 1, 37, 40 - (uint64_t)i, false);
		trace_add(&tr[i], 0, 5120 - 1 - (uint64_t)i, 41, true);
	}
	if (trace_merge(tr, 3, &merged, tw, sizeof(tw)))
		FZ_DIE("trace_merge: %s", tw);
	struct access_trace one = { .nimages = 1, .images = { e2b }, .start_ms = 1764687600999ull };
	snprintf(one.label, sizeof(one.label), "sb-17");
	for (uint64_t c = 0; c < 64; c++)
		trace_add(&one, 0, (c * 37) % 256, c * 3, c % 9 == 0);
	struct access_trace none = { .start_ms = 0, .label = "-" };
	const struct { const char *name; const struct access_trace *t; } traces[] = {
		{ "example", &tr[0] }, { "merged", &merged }, { "e2b-64", &one }, { "no-images", &none },
	};
	for (size_t i = 0; i < sizeof(traces) / sizeof(traces[0]); i++) {
		char *text;
		size_t len;
		if (trace_format(traces[i].t, &text, &len))
			FZ_DIE("trace_format %s failed", traces[i].name);
		put_file("trace", traces[i].name, text, len, NULL, 0);
		free(text);
	}
	for (int i = 0; i < 3; i++)
		trace_free(&tr[i]);
	static const char *const sections[] = { "v4", "v4-empty", "v4-incomplete", "v4-memfile",
						"v5", "v5-empty", "v5-memfile", "v5-unaligned" };
	for (size_t i = 0; i < sizeof(sections) / sizeof(sections[0]); i++)
		put_e2b_section(sections[i]);
	put_e2b_store("v2-plain", 2, E2B_CODEC_NONE);
	put_e2b_store("v4-zstd", 4, E2B_CODEC_ZSTD);
	put_e2b_store("v5-lz4", 5, E2B_CODEC_LZ4);
	put_e2b_store("v5-plain", 5, E2B_CODEC_NONE);
	trace_free(&merged);
	trace_free(&one);
	io_uring_queue_exit(&ring);
	return 0;
}
