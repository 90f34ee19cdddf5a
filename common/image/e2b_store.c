/* An E2B build under a storage root (docs/e2b.md, Serving a build): its
 * header, and the data file of every build its mapping names. Data files
 * are as hostile as headers: every range and frame is checked against the
 * file before the first read, a frame must decode to exactly its recorded
 * size from exactly its recorded bytes, and a missing build is an error,
 * never zeros. */
#include "image/e2b_store.h"
#include "image/blob.h"
#include "image/layer.h"
#include "util/log.h"
#include "util/sha256.h"
#include "util/ublk_limits.h"
#include "image/layer_http.h"
#include "image/http.h"

#include <errno.h>
#include <lz4frame.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zstd.h>

#define WHY(...) snprintf(why, whylen, __VA_ARGS__)
typedef unsigned long long ull;

/* Frames kept decompressed: at most this many bytes, but at least 2
 * frames (a read may span a frame boundary). */
#define CACHE_BYTES (64u << 20)

struct sbuild {
	const struct e2b_build *rec;    /* NULL: no record (V1-V3, or not recorded) */
	bool compressed;                /* rec with a frame table */
	struct blob *blob;
	char id[37];
};

struct slot {
	uint32_t k, frame;
	uint64_t used;                  /* LRU tick; 0 = empty */
	uint8_t *buf;
};

struct e2b_store {
	struct e2b_header *h;
	struct sbuild *b;               /* per mapping id */
	pthread_mutex_t lock;           /* slots, scratch and codec contexts */
	struct slot slots[E2B_STORE_SLOTS];
	unsigned n_slots;
	uint64_t tick;
	uint32_t max_u, max_c;          /* largest frame, uncompressed and stored */
	uint8_t *scratch;               /* one stored frame */
	ZSTD_DCtx *zd;
	LZ4F_dctx *ld;
};

bool e2b_parse_build_id(const char *s, uint8_t id[16])
{
	static const char *hex = "0123456789abcdef";
	uint8_t tmp[16];
	size_t n = 0;

	if (strlen(s) != 36)
		return false;
	for (size_t i = 0; i < 36; i++) {
		if (i == 8 || i == 13 || i == 18 || i == 23) {
			if (s[i] != '-')
				return false;
			continue;
		}
		const char *d = s[i] ? strchr(hex, s[i]) : NULL;
		if (!d)
			return false;
		if (n % 2 == 0)
			tmp[n / 2] = (uint8_t)((d - hex) << 4);
		else
			tmp[n / 2] |= (uint8_t)(d - hex);
		n++;
	}
	static const uint8_t nil[16];
	if (!memcmp(tmp, nil, 16))
		return false;   /* names no build (E2B's uuid.Nil) */
	if (id)
		memcpy(id, tmp, 16);
	return true;
}

bool e2b_file_name_ok(const char *name)
{
	return !strcmp(name, E2B_ROOTFS) || !strcmp(name, E2B_MEMFILE);
}

/* {root}/{id}/{name}{ext}; a URL root's query string would end up in the
 * middle, so such a root is refused by the caller. */
static int join(char *out, size_t len, const char *root, const char *id, const char *name,
		const char *ext)
{
	size_t rl = strlen(root);
	const char *sep = rl && root[rl - 1] == '/' ? "" : "/";
	int n = snprintf(out, len, "%s%s%s/%s%s", root, sep, id, name, ext);
	return n < 0 || (size_t)n >= len ? -ENAMETOOLONG : 0;
}

static const char *ext_of(const struct sbuild *b)
{
	if (!b->compressed)
		return "";
	return b->rec->codec == E2B_CODEC_ZSTD ? ".zstd" : ".lz4";
}

/* The most bytes a frame of size_u could take stored: both codecs add a
 * little to incompressible data (zstd 3 bytes per 128 KiB block, lz4 8 per
 * 4 MiB block, plus their frame headers). */
static uint64_t stored_bound(uint32_t size_u)
{
	return (uint64_t)size_u + size_u / 128 + 4096;
}

/* Check what the mapping reads from build k against its data file. */
static int check_build(struct e2b_store *s, uint32_t k, char *why, size_t whylen)
{
	const struct e2b_header *h = s->h;
	struct sbuild *b = &s->b[k];
	uint64_t fsize = blob_size(b->blob);

	if (b->compressed) {
		for (uint32_t i = 0; i < b->rec->n_frames; i++) {
			const struct e2b_frame *f = &b->rec->frames[i];
			if (f->size_u > UBLK_MAX_FRAME_SIZE)
				return WHY("build %s: frame %u holds %u bytes, more than the %u a frame may "
					   "hold", b->id, i, f->size_u, UBLK_MAX_FRAME_SIZE), -EINVAL;
			if (f->size_c > stored_bound(f->size_u))
				return WHY("build %s: frame %u is stored in %u bytes, more than %s could "
					   "make of %u bytes", b->id, i, f->size_c,
					   e2b_codec_name(b->rec->codec), f->size_u), -EINVAL;
			if (f->start_c > fsize || f->size_c > fsize - f->start_c)
				return WHY("build %s: frame %u is stored at bytes %llu..%llu, but its data "
					   "file holds %llu bytes", b->id, i, (ull)f->start_c,
					   (ull)(f->start_c + f->size_c), (ull)fsize), -EINVAL;
			if (f->size_u > s->max_u)
				s->max_u = f->size_u;
			if (f->size_c > s->max_c)
				s->max_c = f->size_c;
		}
		return 0;
	}
	for (uint64_t i = 0; i < h->n_entries; i++) {
		const struct e2b_entry *e = &h->entries[i];
		if (e->id != k || e->offset >= h->size)
			continue;
		/* the last range may cover the size rounded up to a page; only
		 * the bytes up to the size are ever read */
		uint64_t n = h->size - e->offset < e->length ? h->size - e->offset : e->length;
		if (e->storage > fsize || n > fsize - e->storage)
			return WHY("build %s: the range at offset %llu reads its bytes %llu..%llu, but its "
				   "data file holds %llu bytes", b->id, (ull)e->offset, (ull)e->storage,
				   (ull)(e->storage + n), (ull)fsize), -EINVAL;
	}
	return 0;
}

int e2b_store_open(const char *root, const char *build, const char *name,
		   const struct layer_http_opts *remote, struct e2b_store **out, char *why,
		   size_t whylen)
{
	struct e2b_store *s = calloc(1, sizeof(*s));
	char path[HTTP_MAX_URL_LEN + 128], shown[1024], sub[1200], id[37];
	uint8_t want[16];
	size_t used = 0;
	uint32_t missing = 0;
	int ret;

	*out = NULL;
	if (!s)
		return WHY("out of memory"), -ENOMEM;
	pthread_mutex_init(&s->lock, NULL);
	http_name_for_log(root, shown, sizeof(shown));
	if (!e2b_parse_build_id(build, want) || !e2b_file_name_ok(name)) {
		ret = -EINVAL;
		WHY("build '%s', file '%s': expected an id as 8-4-4-4-12 lowercase hex (not all "
		    "zeros) and %s or %s", build, name, E2B_ROOTFS, E2B_MEMFILE);
		goto fail;
	}
	if (http_is_url(root) && strpbrk(root, "?#")) {
		ret = -EINVAL;
		WHY("%s: a storage root URL cannot have a query string or fragment (the build's "
		    "paths are appended to it)", shown);
		goto fail;
	}
	char hname[64];
	snprintf(hname, sizeof(hname), "%s.header", name);
	if ((ret = join(path, sizeof(path), root, build, hname, ""))) {
		WHY("%s: path too long", shown);
		goto fail;
	}
	ret = e2b_header_load(path, remote, &s->h, sub, sizeof(sub));
	if (ret == -ENOENT) {
		WHY("build(s) not found under %s: %s (no %s/%s)", shown, build, build, hname);
		goto fail;
	}
	if (ret) {
		WHY("%s", sub);
		goto fail;
	}
	if (memcmp(s->h->build_id, want, 16)) {
		e2b_uuid_str(s->h->build_id, id);
		ret = -EINVAL;
		WHY("%s/%s/%s: the header is of build %s, not %s: refused (a header copied under "
		    "another build's folder?)", shown, build, hname, id, build);
		goto fail;
	}
	if (s->h->n_ids && !(s->b = calloc(s->h->n_ids, sizeof(*s->b)))) {
		ret = -ENOMEM;
		WHY("out of memory");
		goto fail;
	}
	for (uint32_t k = 0; k < s->h->n_ids; k++) {
		struct sbuild *b = &s->b[k];
		b->rec = e2b_header_id_build(s->h, k);
		b->compressed = b->rec && b->rec->n_frames;
		e2b_uuid_str(s->h->ids[k], b->id);
		if ((ret = join(path, sizeof(path), root, b->id, name, ext_of(b)))) {
			WHY("%s: path too long", shown);
			goto fail;
		}
		ret = blob_open(path, remote, &b->blob, sub, sizeof(sub));
		if (ret == -ENOENT) {
			/* every missing build is named, not only the first */
			int n = snprintf(why + used, whylen > used ? whylen - used : 0, "%s%s",
					 missing ? ", " : "", b->id);
			used += n > 0 ? (size_t)n : 0;
			missing++;
			continue;
		}
		if (!ret && remote)
			ret = blob_track(b->blob, remote->access, TRACE_E2B);
		if (ret) {
			WHY("build %s: %s", b->id, ret == -ENOSPC || ret == -ENOMEM ?
			    "access trace: too many images, or out of memory" : sub);
			goto fail;
		}
	}
	if (missing) {
		snprintf(sub, sizeof(sub), "%s", why);
		WHY("build(s) not found under %s: %s (no %s data file%s)", shown, sub, name,
		    missing > 1 ? "s" : "");
		ret = -ENOENT;
		goto fail;
	}
	for (uint32_t k = 0; k < s->h->n_ids; k++)
		if ((ret = check_build(s, k, sub, sizeof(sub)))) {
			WHY("%s: %s", shown, sub);
			goto fail;
		}
	if (s->max_u) {
		s->n_slots = CACHE_BYTES / s->max_u;
		s->n_slots = s->n_slots < 2 ? 2 : s->n_slots > E2B_STORE_SLOTS ? E2B_STORE_SLOTS : s->n_slots;
		if (!(s->scratch = malloc(s->max_c)) || !(s->zd = ZSTD_createDCtx()) ||
		    LZ4F_isError(LZ4F_createDecompressionContext(&s->ld, LZ4F_VERSION))) {
			ret = -ENOMEM;
			WHY("out of memory");
			goto fail;
		}
	}
	*out = s;
	return 0;
fail:
	e2b_store_close(s);
	return ret;
}

const struct e2b_header *e2b_store_header(const struct e2b_store *s)
{
	return s->h;
}

/* Frame j of build k into dst (room for size_u + 1 bytes). Lock held.
 * 0, or with why naming the build and frame: a remote read's timeout,
 * refusal or cancel (layer_fetch_error), else -EIO. */
static int decode_frame(struct e2b_store *s, uint32_t k, uint32_t j, uint8_t *dst, char *why,
			size_t whylen)
{
	const struct sbuild *b = &s->b[k];
	const struct e2b_frame *f = &b->rec->frames[j];
	int ret = blob_read(b->blob, s->scratch, f->size_c, f->start_c);

	if (ret)
		return WHY("build %s: frame %u: reading bytes %llu..%llu: %s", b->id, j,
			   (ull)f->start_c, (ull)(f->start_c + f->size_c), strerror(-ret)),
		       layer_fetch_error(ret);
	if (b->rec->codec == E2B_CODEC_ZSTD) {
		/* one frame, exactly size_c bytes: no second frame, no trailing bytes */
		size_t fl = ZSTD_findFrameCompressedSize(s->scratch, f->size_c);
		if (ZSTD_isError(fl) || fl != f->size_c)
			return WHY("build %s: frame %u: %s", b->id, j, ZSTD_isError(fl) ?
				   ZSTD_getErrorName(fl) : "the zstd frame does not end where its "
				   "stored size says"), -EIO;
		size_t n = ZSTD_decompressDCtx(s->zd, dst, f->size_u, s->scratch, f->size_c);
		if (ZSTD_isError(n) || n != f->size_u)
			return WHY("build %s: frame %u: %s%s", b->id, j, ZSTD_isError(n) ?
				   "zstd: " : "decompressed to fewer bytes than its size",
				   ZSTD_isError(n) ? ZSTD_getErrorName(n) : ""), -EIO;
		return 0;
	}
	/* lz4: one frame, all input, exactly size_u out (checksums as the
	 * frame asks for them) */
	size_t cap = (size_t)f->size_u + 1, dpos = 0, spos = 0, hint = 1;
	LZ4F_resetDecompressionContext(s->ld);
	while (spos < f->size_c && dpos < cap) {
		size_t dn = cap - dpos, sn = f->size_c - spos;
		hint = LZ4F_decompress(s->ld, dst + dpos, &dn, s->scratch + spos, &sn, NULL);
		if (LZ4F_isError(hint))
			return WHY("build %s: frame %u: lz4: %s", b->id, j, LZ4F_getErrorName(hint)), -EIO;
		dpos += dn;
		spos += sn;
		if (!hint || (!dn && !sn))
			break;
	}
	if (hint || spos != f->size_c || dpos != f->size_u)
		return WHY("build %s: frame %u: the lz4 frame %s", b->id, j,
			   hint ? "is truncated or holds more than its size" :
			   spos != f->size_c ? "ends before its stored size" :
			   "decompressed to another size than recorded"), -EIO;
	return 0;
}

/* The frame of build k holding byte pos of its data, or -1. */
static int64_t find_frame(const struct e2b_build *r, uint64_t pos)
{
	uint32_t lo = 0, hi = r->n_frames;   /* first frame starting after pos */
	while (lo < hi) {
		uint32_t mid = lo + (hi - lo) / 2;
		if (r->frames[mid].start_u > pos)
			hi = mid;
		else
			lo = mid + 1;
	}
	if (!lo || pos - r->frames[lo - 1].start_u >= r->frames[lo - 1].size_u)
		return -1;
	return lo - 1;
}

/* try: only from kept frames, and -EAGAIN rather than wait for the lock
 * or read a frame. */
static int read_frames(struct e2b_store *s, uint32_t k, uint8_t *dst, uint64_t len, uint64_t pos,
		       bool try)
{
	const struct sbuild *b = &s->b[k];
	char why[600];
	int ret = 0;

	if (!try)
		pthread_mutex_lock(&s->lock);
	else if (pthread_mutex_trylock(&s->lock))
		return -EAGAIN;
	while (len && !ret) {
		int64_t j = find_frame(b->rec, pos);
		if (j < 0) {   /* the header's checks make this impossible */
			log_err("build %s: byte %llu is in no frame", b->id, (ull)pos);
			ret = -EIO;
			break;
		}
		const struct e2b_frame *f = &b->rec->frames[j];
		struct slot *sl = NULL, *victim = &s->slots[0];
		for (unsigned i = 0; i < s->n_slots; i++) {
			if (s->slots[i].used && s->slots[i].k == k && s->slots[i].frame == j)
				sl = &s->slots[i];
			if (s->slots[i].used < victim->used)
				victim = &s->slots[i];
		}
		if (!sl && try) {
			ret = -EAGAIN;
			break;
		}
		if (!sl) {
			sl = victim;
			sl->used = 0;
			if (!sl->buf && !(sl->buf = malloc((size_t)s->max_u + 1))) {
				ret = -ENOMEM;
				break;
			}
			if ((ret = decode_frame(s, k, (uint32_t)j, sl->buf, why, sizeof(why)))) {
				if (ret != -ECANCELED)
					log_err("%s", why);
				break;
			}
			sl->k = k;
			sl->frame = (uint32_t)j;
		}
		sl->used = ++s->tick;
		uint64_t in = pos - f->start_u, n = f->size_u - in;
		if (n > len)
			n = len;
		memcpy(dst, sl->buf + in, n);
		dst += n;
		pos += n;
		len -= n;
	}
	pthread_mutex_unlock(&s->lock);
	return ret;
}

static int store_read(struct e2b_store *s, void *buf, size_t len, uint64_t off, bool try)
{
	const struct e2b_header *h = s->h;
	uint8_t *dst = buf;
	uint64_t lo = 0, hi = h->n_entries;
	int ret = 0;

	if (off > h->size || len > h->size - off)
		return -EINVAL;
	while (lo < hi) {   /* first entry starting after off */
		uint64_t mid = lo + (hi - lo) / 2;
		if (h->entries[mid].offset > off)
			hi = mid;
		else
			lo = mid + 1;
	}
	for (uint64_t i = lo ? lo - 1 : 0; len && !ret; i++) {
		if (i >= h->n_entries)
			return -EIO;   /* entries cover the size: unreachable */
		const struct e2b_entry *e = &h->entries[i];
		uint64_t in = off - e->offset, n = e->length - in;
		if (n > len)
			n = len;
		if (e->id == E2B_NIL)
			memset(dst, 0, n);
		else if (s->b[e->id].compressed)
			ret = read_frames(s, e->id, dst, n, e->storage + in, try);
		else if (try)
			ret = blob_read_cached(s->b[e->id].blob, dst, n, e->storage + in);
		else if ((ret = blob_read(s->b[e->id].blob, dst, n, e->storage + in)) &&
			 ret != -ECANCELED)
			log_err("build %s: reading bytes %llu..%llu of its data: %s", s->b[e->id].id,
				(ull)(e->storage + in), (ull)(e->storage + in + n), strerror(-ret));
		dst += n;
		off += n;
		len -= n;
	}
	return ret;
}

int e2b_store_read(struct e2b_store *s, void *buf, size_t len, uint64_t off)
{
	return store_read(s, buf, len, off, false);
}

int e2b_store_try_read(struct e2b_store *s, void *buf, size_t len, uint64_t off)
{
	return store_read(s, buf, len, off, true);
}

uint64_t e2b_store_budget_ms(const struct e2b_store *s)
{
	uint64_t most = 0;

	for (uint32_t k = 0; s->b && k < s->h->n_ids; k++)
		if (s->b[k].blob && blob_budget_ms(s->b[k].blob) > most)
			most = blob_budget_ms(s->b[k].blob);
	return most;
}

void e2b_store_cancel(struct e2b_store *s)
{
	for (uint32_t k = 0; s && s->b && k < s->h->n_ids; k++)
		blob_cancel(s->b[k].blob);
}

void e2b_store_close(struct e2b_store *s)
{
	if (!s)
		return;
	for (uint32_t k = 0; s->b && k < s->h->n_ids; k++)
		blob_close(s->b[k].blob);
	free(s->b);
	for (unsigned i = 0; i < E2B_STORE_SLOTS; i++)
		free(s->slots[i].buf);
	free(s->scratch);
	ZSTD_freeDCtx(s->zd);
	LZ4F_freeDecompressionContext(s->ld);
	e2b_header_free(s->h);
	pthread_mutex_destroy(&s->lock);
	free(s);
}

/* ---- verification (--inspect) ---- */

struct vctx {
	void (*progress)(void *ctx, uint64_t done, uint64_t total);
	void *ctx;
	uint64_t done, total;
};

static void tick(struct vctx *v, uint64_t n)
{
	v->done += n;
	if (v->progress)
		v->progress(v->ctx, v->done, v->total);
}

/* Whether build k's frame table holds its whole data: contiguous from 0
 * up to its recorded size. */
static bool frames_whole(const struct e2b_build *r)
{
	uint64_t end = 0;
	for (uint32_t i = 0; i < r->n_frames; i++) {
		if (r->frames[i].start_u != end)
			return false;
		end += r->frames[i].size_u;
	}
	return r->size && end == r->size;
}

/* Mark the frames of build k that the mapping reads. */
static void frames_used(const struct e2b_header *h, uint32_t k, const struct e2b_build *r,
			bool *used)
{
	for (uint64_t i = 0; i < h->n_entries; i++) {
		const struct e2b_entry *e = &h->entries[i];
		if (e->id != k)
			continue;
		int64_t j = find_frame(r, e->storage);
		for (; j >= 0 && (uint64_t)j < r->n_frames &&
		       r->frames[j].start_u < e->storage + e->length; j++)
			used[j] = true;
	}
}

static bool sha_known(const uint8_t sha[32])
{
	static const uint8_t unknown[32];
	return memcmp(sha, unknown, 32) != 0;
}

static int verify_build(struct e2b_store *s, uint32_t k, struct e2b_build_check *c,
			struct vctx *v, uint8_t *buf)
{
	const struct sbuild *b = &s->b[k];
	const struct e2b_build *r = b->rec;
	char *why = c->why;
	size_t whylen = sizeof(c->why);
	uint8_t digest[32];
	struct sha256 sha;
	int ret = 0;

	c->sha_recorded = r && sha_known(r->sha256);
	c->result = E2B_CHECK_NONE;
	sha256_init(&sha);
	if (!b->compressed) {
		if (!c->sha_recorded)
			return 0;
		uint64_t len = r->size ? r->size : blob_size(b->blob);
		if (len > blob_size(b->blob)) {
			c->result = E2B_CHECK_BAD;
			return WHY("its data file holds %llu bytes, its record says %llu",
				   (ull)blob_size(b->blob), (ull)len), -EIO;
		}
		for (uint64_t pos = 0; pos < len;) {
			size_t n = len - pos < (4u << 20) ? (size_t)(len - pos) : (4u << 20);
			if ((ret = blob_read(b->blob, buf, n, pos))) {
				c->result = E2B_CHECK_BAD;
				return WHY("reading bytes %llu..%llu: %s", (ull)pos, (ull)(pos + n),
					   strerror(-ret)), -EIO;
			}
			sha256_update(&sha, buf, n);
			pos += n;
			c->bytes += n;
			tick(v, n);
		}
	} else {
		bool whole = c->sha_recorded && frames_whole(r);
		bool *used = calloc(r->n_frames, sizeof(*used));
		if (!used)
			return WHY("out of memory"), -ENOMEM;
		if (whole)
			memset(used, 1, r->n_frames * sizeof(*used));
		else
			frames_used(s->h, k, r, used);
		for (uint32_t j = 0; j < r->n_frames && !ret; j++) {
			if (!used[j])
				continue;
			pthread_mutex_lock(&s->lock);
			ret = decode_frame(s, k, j, buf, why, whylen);
			pthread_mutex_unlock(&s->lock);
			if (!ret) {
				if (whole)
					sha256_update(&sha, buf, r->frames[j].size_u);
				c->frames++;
				c->bytes += r->frames[j].size_u;
				tick(v, r->frames[j].size_u);
			}
		}
		free(used);
		if (ret) {
			c->result = E2B_CHECK_BAD;
			return -EIO;
		}
		c->result = E2B_CHECK_FRAMES;
		if (!whole)
			return 0;
	}
	sha256_final(&sha, digest);
	if (memcmp(digest, r->sha256, 32)) {
		c->result = E2B_CHECK_BAD;
		return WHY("SHA-256 of its %llu bytes of data does not match its record",
			   (ull)c->bytes), -EIO;
	}
	c->result = E2B_CHECK_SHA;
	return 0;
}

int e2b_store_verify(struct e2b_store *s, struct e2b_build_check *out,
		     void (*progress)(void *ctx, uint64_t done, uint64_t total), void *ctx)
{
	const struct e2b_header *h = s->h;
	struct vctx v = { progress, ctx, 0, 0 };
	size_t cap = (size_t)(s->max_u > (4u << 20) ? s->max_u : (4u << 20)) + 1;
	uint8_t *buf = malloc(cap);
	int ret = 0, bad = 0;

	if (!buf)
		return -ENOMEM;
	/* the total for progress: every frame and every recorded-sha file */
	for (uint32_t k = 0; k < h->n_ids; k++) {
		const struct sbuild *b = &s->b[k];
		if (b->compressed)
			for (uint32_t j = 0; j < b->rec->n_frames; j++)
				v.total += b->rec->frames[j].size_u;
		else if (b->rec && sha_known(b->rec->sha256))
			v.total += b->rec->size ? b->rec->size : blob_size(b->blob);
	}
	for (uint32_t k = 0; k < h->n_ids && ret != -ENOMEM; k++) {
		memset(&out[k], 0, sizeof(out[k]));
		ret = verify_build(s, k, &out[k], &v, buf);
		if (ret == -EIO)
			bad = 1;
	}
	free(buf);
	if (progress && v.done < v.total)   /* frames no range uses were skipped */
		progress(ctx, v.total, v.total);
	return ret == -ENOMEM ? ret : bad ? -EIO : 0;
}
