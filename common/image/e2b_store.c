/* An E2B build under a storage root (docs/e2b.md, Serving a build): its
 * header, and the data file of every build its mapping names. Data files
 * are as hostile as headers: every range and frame is checked against the
 * file before the first read, a frame must decode to exactly its recorded
 * size from exactly its recorded bytes, and a missing build is an error,
 * never zeros. */
#include "image/e2b_store.h"
#include "image/blob.h"
#include "image/chunkcache.h"
#include "image/layer.h"
#include "util/log.h"
#include "util/sha256.h"
#include "util/ublk_limits.h"
#include "image/layer_http.h"
#include "image/http.h"

#include <errno.h>
#include <lz4frame.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zstd.h>

#define WHY(...) snprintf(why, whylen, __VA_ARGS__)
typedef unsigned long long ull;

/* Frames kept decompressed: at most this many bytes, but at least 2
 * frames (a read may span a frame boundary). */
#define CACHE_BYTES (64u << 20)
/* The most chunks a build's frames may span in the chunk cache (which
 * keeps a bit per chunk): a table of small frames far apart is hostile. */
#define MAX_FRAME_CHUNKS (1u << 22)

struct sbuild {
	const struct e2b_build *rec;    /* NULL: no record (V1-V3, or not recorded) */
	bool compressed;                /* rec with a frame table */
	struct blob *blob;
	char id[37];
	/* Its frames as decompressed, kept in the chunk cache (chunk i: the
	 * frame starting at i * the chunk size), shared by every device over
	 * the same data file and frame table; NULL: not kept. */
	struct chunk_image *frames;
};

/* One thread's buffers and codec contexts. */
struct e2b_decoder {
	uint8_t *scratch;               /* one stored frame */
	uint8_t *frame;                 /* one decompressed frame, and a byte */
	ZSTD_DCtx *zd;
	LZ4F_dctx *ld;
};

struct slot {
	uint32_t k, frame;
	uint64_t used;                  /* LRU tick; 0 = empty */
	uint8_t *buf;
};

struct e2b_store {
	struct e2b_header *h;
	struct sbuild *b;               /* per mapping id */
	pthread_mutex_t lock;           /* slots and dec */
	struct slot slots[E2B_STORE_SLOTS];
	unsigned n_slots;
	uint64_t tick;
	uint32_t max_u, max_c;          /* largest frame, uncompressed and stored */
	struct e2b_decoder dec;         /* theirs who decompress under the lock
					   (frame unused: they decompress into a slot) */
	atomic_bool said_unstored;      /* a frame the chunk cache refused: logged */
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

/* dec's codec contexts and a buffer for s's largest stored frame, and
 * with with_frame one for it decompressed. 0 or -ENOMEM (decoder_release
 * frees what was made). */
static int decoder_init(struct e2b_decoder *dec, const struct e2b_store *s, bool with_frame)
{
	if (!(dec->scratch = malloc(s->max_c)) ||
	    (with_frame && !(dec->frame = malloc((size_t)s->max_u + 1))) ||
	    !(dec->zd = ZSTD_createDCtx()) ||
	    LZ4F_isError(LZ4F_createDecompressionContext(&dec->ld, LZ4F_VERSION)))
		return -ENOMEM;
	return 0;
}

static void decoder_release(struct e2b_decoder *dec)
{
	free(dec->scratch);
	free(dec->frame);
	ZSTD_freeDCtx(dec->zd);
	LZ4F_freeDecompressionContext(dec->ld);
}

struct e2b_decoder *e2b_decoder_new(const struct e2b_store *s)
{
	struct e2b_decoder *dec;

	if (!s->max_u || !(dec = calloc(1, sizeof(*dec))))
		return NULL;
	if (decoder_init(dec, s, true)) {
		e2b_decoder_free(dec);
		return NULL;
	}
	return dec;
}

void e2b_decoder_free(struct e2b_decoder *dec)
{
	if (dec) {
		decoder_release(dec);
		free(dec);
	}
}

/* The one size of a build's frames as chunks: each starts at a multiple
 * of the first's size and holds that many bytes, the last maybe fewer (E2B's
 * tables and ours, trimmed or not). 0 when they are not so. */
static uint32_t uniform_frame_size(const struct e2b_build *r)
{
	uint32_t fu = r->frames[0].size_u;

	for (uint32_t i = 0; fu && i < r->n_frames; i++) {
		const struct e2b_frame *f = &r->frames[i];
		if (f->start_u % fu || f->start_u > UINT64_MAX - fu ||
		    (i + 1 < r->n_frames ? f->size_u != fu : f->size_u > fu))
			return 0;
	}
	return fu;
}

static void put_le(uint8_t *p, uint64_t v, unsigned n)
{
	for (unsigned i = 0; i < n; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

/* The chunk cache folder of build k's decompressed frames, keyed by its
 * data file's version, its id and codec, and its frame table: the table
 * says which stored bytes each chunk is made from, so a header with
 * another table gets a folder of its own. Without one (frames of mixed
 * sizes, no validator, a cache that cannot be opened) the store keeps its
 * few frames alone, and says so. */
static void open_frames(struct e2b_store *s, uint32_t k, const struct layer_http_opts *o)
{
	struct sbuild *b = &s->b[k];
	const struct e2b_build *r = b->rec;
	const struct e2b_frame *last = &r->frames[r->n_frames - 1];
	uint64_t limit = o->cache_limit ? o->cache_limit : CHUNK_CACHE_DEFAULT_LIMIT;
	char version[160] = "", key[600], table[2 * 32 + 1], why[600] = "";
	uint8_t rec[24], digest[32];
	struct sha256 sha;
	int ret = blob_version(b->blob, version, sizeof(version));

	uint32_t frame_u = uniform_frame_size(r);
	if (ret && ret != -ENOENT) {
		snprintf(why, sizeof(why), "%s", strerror(-ret));
	} else if (!ret && !frame_u) {
		snprintf(why, sizeof(why), "its frames are not all of one size");
		ret = -EINVAL;
	} else if (!ret && last->start_u / frame_u >= MAX_FRAME_CHUNKS) {
		snprintf(why, sizeof(why), "its frames span more than %u of their size", MAX_FRAME_CHUNKS);
		ret = -EINVAL;
	} else if (!ret && limit / 16 < frame_u) {
		/* as for a remote image's chunks: 16 at least, or they push out each other */
		snprintf(why, sizeof(why), "--chunk-cache-limit %llu holds fewer than 16 of its "
			 "%u-byte frames", (ull)limit, frame_u);
		ret = -EINVAL;
	}
	if (!ret) {
		sha256_init(&sha);
		for (uint32_t i = 0; i < r->n_frames; i++) {
			put_le(rec, r->frames[i].start_u, 8);
			put_le(rec + 8, r->frames[i].start_c, 8);
			put_le(rec + 16, r->frames[i].size_u, 4);
			put_le(rec + 20, r->frames[i].size_c, 4);
			sha256_update(&sha, rec, sizeof(rec));
		}
		sha256_final(&sha, digest);
		for (int i = 0; i < 32; i++)
			snprintf(table + 2 * i, 3, "%02x", digest[i]);
		snprintf(key, sizeof(key), "e2b-frames %s\nbuild %s\ncodec %s\nframe-table %s\n",
			 version, b->id, e2b_codec_name(r->codec), table);
		if (!(b->frames = calloc(1, sizeof(*b->frames))))
			ret = -ENOMEM;
		else
			ret = chunk_image_open_keyed(b->frames, o->cache_dir, key,
						     last->start_u + last->size_u, frame_u, limit, why,
						     sizeof(why));
	}
	if (ret) {
		free(b->frames);
		b->frames = NULL;
	}
	if (ret && ret != -ENOENT)
		log_info("build %s: its frames are decompressed at every read that needs one not "
			 "kept (no chunk cache for them: %s)", b->id, why);
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
		if ((ret = decoder_init(&s->dec, s, false))) {
			WHY("out of memory");
			goto fail;
		}
	}
	for (uint32_t k = 0; remote && remote->keep_frames && k < s->h->n_ids; k++)
		if (s->b[k].compressed)
			open_frames(s, k, remote);
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

/* Frame j of b into dst (room for size_u + 1 bytes), with dec's buffers
 * and contexts (the store's under its lock). 0, or with why naming the
 * build and frame: a remote read's timeout, refusal or cancel
 * (layer_fetch_error), else -EIO. */
static int decode_frame(struct e2b_decoder *dec, const struct sbuild *b, uint32_t j, uint8_t *dst,
			char *why, size_t whylen)
{
	const struct e2b_frame *f = &b->rec->frames[j];
	int ret = blob_read(b->blob, dec->scratch, f->size_c, f->start_c);

	if (ret)
		return WHY("build %s: frame %u: reading bytes %llu..%llu: %s", b->id, j,
			   (ull)f->start_c, (ull)(f->start_c + f->size_c), strerror(-ret)),
		       layer_fetch_error(ret);
	if (b->rec->codec == E2B_CODEC_ZSTD) {
		/* one frame, exactly size_c bytes: no second frame, no trailing bytes */
		size_t fl = ZSTD_findFrameCompressedSize(dec->scratch, f->size_c);
		if (ZSTD_isError(fl) || fl != f->size_c)
			return WHY("build %s: frame %u: %s", b->id, j, ZSTD_isError(fl) ?
				   ZSTD_getErrorName(fl) : "the zstd frame does not end where its "
				   "stored size says"), -EIO;
		size_t n = ZSTD_decompressDCtx(dec->zd, dst, f->size_u, dec->scratch, f->size_c);
		if (ZSTD_isError(n) || n != f->size_u)
			return WHY("build %s: frame %u: %s%s", b->id, j, ZSTD_isError(n) ?
				   "zstd: " : "decompressed to fewer bytes than its size",
				   ZSTD_isError(n) ? ZSTD_getErrorName(n) : ""), -EIO;
		return 0;
	}
	/* lz4: one frame, all input, exactly size_u out (checksums as the
	 * frame asks for them) */
	size_t cap = (size_t)f->size_u + 1, dpos = 0, spos = 0, hint = 1;
	LZ4F_resetDecompressionContext(dec->ld);
	while (spos < f->size_c && dpos < cap) {
		size_t dn = cap - dpos, sn = f->size_c - spos;
		hint = LZ4F_decompress(dec->ld, dst + dpos, &dn, dec->scratch + spos, &sn, NULL);
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

/* The slot of frame j of build k, marked used, or NULL. Locked. */
static struct slot *kept(struct e2b_store *s, uint32_t k, uint32_t j)
{
	for (unsigned i = 0; i < s->n_slots; i++)
		if (s->slots[i].used && s->slots[i].k == k && s->slots[i].frame == j) {
			s->slots[i].used = ++s->tick;
			return &s->slots[i];
		}
	return NULL;
}

static struct slot *victim(struct e2b_store *s)
{
	struct slot *v = &s->slots[0];
	for (unsigned i = 1; i < s->n_slots; i++)
		if (s->slots[i].used < v->used)
			v = &s->slots[i];
	return v;
}

/* Frame j of build k decompressed into dst with dec, then stored in the
 * chunk cache for every device's next reads of it (a frame the cache
 * cannot take is decompressed again when next needed). */
static int load_frame(struct e2b_store *s, struct e2b_decoder *dec, uint32_t k, uint32_t j,
		      uint8_t *dst)
{
	struct sbuild *b = &s->b[k];
	const struct e2b_frame *f = &b->rec->frames[j];
	char why[600];
	int ret = decode_frame(dec, b, j, dst, why, sizeof(why));

	if (ret && ret != -ECANCELED)
		log_err("%s", why);
	if (!ret && b->frames && (ret = chunk_store(b->frames, f->start_u / b->frames->chunk_size, dst, f->size_u))) {
		if (!atomic_exchange(&s->said_unstored, true))
			log_err("build %s: frame %u: storing it in the chunk cache (%s): %s; frames not "
				"stored are decompressed again at the next read that needs them (said once)",
				b->id, j, b->frames->dir, strerror(-ret));
		ret = 0;
	}
	return ret;
}

/* How a read may get a frame not kept. */
enum read_how {
	HOW_LOCKED,     /* decompressed into a slot under the lock */
	HOW_TRY,        /* not at all: -EAGAIN, nor waits for the lock (a queue thread) */
	HOW_OWN,        /* with own's buffers outside the lock (a fetch thread):
			   without them -ENOMEM, as under the lock it would hold
			   up every queue's reads of kept frames */
};

/* n bytes from byte `in` of frame j of build k into dst: from the chunk
 * cache, from its slot, else decompressed as how says; own's frame is then
 * swapped into a slot. */
static int copy_frame(struct e2b_store *s, uint32_t k, uint32_t j, uint32_t in, uint32_t n,
		      uint8_t *dst, struct e2b_decoder *own, enum read_how how)
{
	struct sbuild *b = &s->b[k];
	const struct e2b_frame *f = &b->rec->frames[j];
	struct slot *sl;
	int ret = 0;

	if (b->frames && !chunk_read(b->frames, f->start_u / b->frames->chunk_size, in, n, dst)) {
		blob_note(b->blob, f->start_c, f->size_c);   /* a remote build's trace */
		return 0;
	}
	if (how != HOW_TRY)
		pthread_mutex_lock(&s->lock);
	else if (pthread_mutex_trylock(&s->lock))
		return -EAGAIN;
	sl = kept(s, k, j);
	if (!sl && how == HOW_TRY) {
		ret = -EAGAIN;
	} else if (!sl && how == HOW_OWN && !own) {
		ret = -ENOMEM;
	} else if (!sl && how == HOW_OWN) {
		pthread_mutex_unlock(&s->lock);
		if (!(ret = load_frame(s, own, k, j, own->frame)))
			memcpy(dst, own->frame + in, n);
		pthread_mutex_lock(&s->lock);
		/* kept for the next reads, unless another thread kept it meanwhile */
		if (!ret && !kept(s, k, j)) {
			sl = victim(s);
			uint8_t *t = sl->buf ? sl->buf : malloc((size_t)s->max_u + 1);
			if (t) {
				sl->buf = own->frame;
				own->frame = t;
				sl->k = k;
				sl->frame = j;
				sl->used = ++s->tick;
			}
		}
		sl = NULL;   /* copied */
	} else if (!sl) {
		sl = victim(s);
		sl->used = 0;
		if (!sl->buf && !(sl->buf = malloc((size_t)s->max_u + 1)))
			ret = -ENOMEM;
		else if (!(ret = load_frame(s, &s->dec, k, j, sl->buf))) {
			sl->k = k;
			sl->frame = j;
			sl->used = ++s->tick;
		}
	}
	if (!ret && sl)
		memcpy(dst, sl->buf + in, n);
	pthread_mutex_unlock(&s->lock);
	return ret;
}

static int read_frames(struct e2b_store *s, uint32_t k, uint8_t *dst, uint64_t len, uint64_t pos,
		       struct e2b_decoder *own, enum read_how how)
{
	const struct sbuild *b = &s->b[k];
	int ret = 0;

	while (len && !ret) {
		int64_t j = find_frame(b->rec, pos);
		if (j < 0) {   /* the header's checks make this impossible */
			log_err("build %s: byte %llu is in no frame", b->id, (ull)pos);
			return -EIO;
		}
		const struct e2b_frame *f = &b->rec->frames[j];
		uint64_t in = pos - f->start_u, n = f->size_u - in;
		if (n > len)
			n = len;
		ret = copy_frame(s, k, (uint32_t)j, (uint32_t)in, (uint32_t)n, dst, own, how);
		dst += n;
		pos += n;
		len -= n;
	}
	return ret;
}

/* The header's entry holding byte off of the device (the last starting
 * at or before it). */
static uint64_t entry_of(const struct e2b_header *h, uint64_t off)
{
	uint64_t lo = 0, hi = h->n_entries;

	while (lo < hi) {   /* first entry starting after off */
		uint64_t mid = lo + (hi - lo) / 2;
		if (h->entries[mid].offset > off)
			hi = mid;
		else
			lo = mid + 1;
	}
	return lo ? lo - 1 : 0;
}

static int store_read(struct e2b_store *s, void *buf, size_t len, uint64_t off,
		      struct e2b_decoder *own, enum read_how how)
{
	const struct e2b_header *h = s->h;
	uint8_t *dst = buf;
	int ret = 0;

	if (off > h->size || len > h->size - off)
		return -EINVAL;
	for (uint64_t i = entry_of(h, off); len && !ret; i++) {
		if (i >= h->n_entries)
			return -EIO;   /* entries cover the size: unreachable */
		const struct e2b_entry *e = &h->entries[i];
		uint64_t in = off - e->offset, n = e->length - in;
		if (n > len)
			n = len;
		if (e->id == E2B_NIL)
			memset(dst, 0, n);
		else if (s->b[e->id].compressed)
			ret = read_frames(s, e->id, dst, n, e->storage + in, own, how);
		else if (how == HOW_TRY)
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
	return store_read(s, buf, len, off, NULL, HOW_LOCKED);
}

int e2b_store_read_own(struct e2b_store *s, struct e2b_decoder *own, void *buf, size_t len,
		       uint64_t off)
{
	return store_read(s, buf, len, off, own, HOW_OWN);
}

int e2b_store_try_read(struct e2b_store *s, void *buf, size_t len, uint64_t off)
{
	return store_read(s, buf, len, off, NULL, HOW_TRY);
}

/* n bytes at pos of build k's data, from frames kept in the chunk cache,
 * as pieces of m pinned for l: their count, or 0 (see e2b_store_map). */
static int map_frames(struct e2b_store *s, uint32_t k, uint64_t pos, uint64_t n, struct layer *l,
		      struct layer_map *m)
{
	const struct sbuild *b = &s->b[k];
	int pieces = 0;

	for (uint64_t piece; n; pos += piece, n -= piece) {
		int64_t j = find_frame(b->rec, pos);
		if (j < 0)
			return 0;
		const struct e2b_frame *f = &b->rec->frames[j];
		uint32_t in = (uint32_t)(pos - f->start_u);
		piece = f->size_u - in < n ? f->size_u - in : n;
		if (!chunk_map_piece(b->frames, f->start_u / b->frames->chunk_size, in, (uint32_t)piece, l,
				     m))
			return 0;
		blob_note(b->blob, f->start_c, f->size_c);   /* a remote build's trace */
		pieces++;
	}
	return pieces;
}

int e2b_store_map(struct e2b_store *s, uint64_t off, uint32_t len, struct layer *l,
		  struct layer_map *m)
{
	const struct e2b_header *h = s->h;
	int pieces = 0, got;

	if (off > h->size || len > h->size - off)
		return 0;
	for (uint64_t i = entry_of(h, off); len; i++) {
		if (i >= h->n_entries)
			return 0;
		const struct e2b_entry *e = &h->entries[i];
		uint64_t in = off - e->offset, n = e->length - in;
		if (n > len)
			n = len;
		if (e->id == E2B_NIL)
			got = layer_map_zeros((uint32_t)n, m);
		else if (s->b[e->id].compressed && s->b[e->id].frames)
			got = map_frames(s, e->id, e->storage + in, n, l, m);
		else
			got = 0;
		if (!got)
			return 0;
		pieces += got;
		off += n;
		len -= (uint32_t)n;
	}
	return pieces;
}

bool e2b_store_maps(const struct e2b_store *s)
{
	for (uint64_t i = 0; i < s->h->n_entries; i++) {
		uint32_t k = s->h->entries[i].id;
		if (k != E2B_NIL && (!s->b[k].frames || !s->b[k].frames->open ||
				     s->b[k].rec->n_frames > CHUNK_OPEN_FILES))
			return false;
	}
	return true;
}

bool e2b_store_compressed(const struct e2b_store *s)
{
	return s->max_u != 0;
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
	for (uint32_t k = 0; s->b && k < s->h->n_ids; k++) {
		if (s->b[k].frames)
			chunk_image_close(s->b[k].frames);
		free(s->b[k].frames);
		blob_close(s->b[k].blob);
	}
	free(s->b);
	for (unsigned i = 0; i < E2B_STORE_SLOTS; i++)
		free(s->slots[i].buf);
	decoder_release(&s->dec);
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
			ret = decode_frame(&s->dec, b, j, buf, why, whylen);
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
