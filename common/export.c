#include "export.h"
#include "devconfig.h"
#include "devopts.h"
#include "util/aio.h"
#include "util/atomic_file.h"
#include "image/cache.h"
#include "host/ctlsock.h"
#include "host/device.h"
#include "image/e2b_store.h"
#include "image/e2b_write.h"
#include "util/exitcodes.h"
#include "util/fileio.h"
#include "util/log.h"
#include "util/output_file.h"
#include "util/progress.h"
#include "image/layer.h"
#include "image/stack.h"
#include "host/state.h"
#include "util/timeutil.h"
#include "image/layer_http.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zstd.h>

#define WHY(...) snprintf(why, whylen, __VA_ARGS__)
#define DATA_WITHOUT_HEADER "is there without its header (another export of this build id " \
	"running, or one a crash cut short): left as it is; remove it if no export runs, or " \
	"give another --build-id"

struct export_ctx {
	struct cache_export x;
	struct progress p;
	const struct export_opts *o;
	int commit_code;        /* of o->before_commit, once it refused */
	char *why;
	size_t whylen;
};

static int ctx_read(void *ctx, uint64_t block, uint32_t count, void *buf)
{
	return cache_export_read(&((struct export_ctx *)ctx)->x, block, count, buf);
}

static int ctx_view(void *ctx, uint64_t block, uint32_t count, const void **data)
{
	return cache_export_view(&((struct export_ctx *)ctx)->x, block, count, data);
}

static void ctx_progress(void *ctx, uint64_t done, uint64_t total)
{
	progress_show(&((struct export_ctx *)ctx)->p, done, total);
}

static int ctx_seal(void *ctx)
{
	struct export_ctx *c = ctx;

	if (c->o->before_commit)
		c->commit_code = c->o->before_commit(c->o->commit_ctx, c->why, c->whylen);
	return c->commit_code ? -ECANCELED : 0;
}

/* ---- the next E2B build (docs/e2b.md, Writing a build) ---- */

/* Where the next build goes, checked before anything is stopped or
 * written: the parent's header, the new id, and its folder, open. */
struct e2b_target {
	struct e2b_header *parent;
	char root[PATH_MAX];    /* the parent's storage root */
	const char *out;        /* the storage root written into */
	char name[32];          /* rootfs.ext4 or memfile */
	const struct layer_http_opts *remote;
	uint8_t id[16];
	char id_str[37], parent_str[37];
	unsigned format;
	int rootfd, dirfd;      /* out, out/{id} */
	bool made_dir;
};

static void e2b_target_close(struct e2b_target *t, bool ok)
{
	if (t->made_dir && t->rootfd >= 0)
		output_file_track_folder(t->rootfd, t->id_str, false);
	if (t->dirfd >= 0)
		close(t->dirfd);
	/* a folder we made stays only with a build in it */
	if (!ok && t->made_dir && t->rootfd >= 0)
		unlinkat(t->rootfd, t->id_str, AT_REMOVEDIR);
	if (t->rootfd >= 0)
		close(t->rootfd);
	e2b_header_free(t->parent);
	t->parent = NULL;
	t->dirfd = t->rootfd = -1;
}

static const char *slash(const char *root)
{
	size_t n = strlen(root);
	return n && root[n - 1] == '/' ? "" : "/";
}

/* A random version 4 UUID, as E2B's uuid.New(). */
static int random_uuid(uint8_t id[16])
{
	if (getrandom(id, 16, 0) != 16)
		return -EIO;
	id[6] = (uint8_t)((id[6] & 0x0F) | 0x40);
	id[8] = (uint8_t)((id[8] & 0x3F) | 0x80);
	return 0;
}

/* Returns a tool exit code; t is to be closed either way. */
static int e2b_prepare(const struct export_opts *o, const char *root, const char *build,
		       const char *name, struct e2b_target *t, char *why, size_t whylen)
{
	char path[PATH_MAX + 128], sub[700], hname[300];
	uint8_t pid[16];
	struct stat st;
	int ret;

	*t = (struct e2b_target){ .rootfd = -1, .dirfd = -1, .remote = o->remote };
	name = name && *name ? name : E2B_ROOTFS;
	if (!root || !*root || !build || !*build)
		return WHY("--format e2b needs the parent build: --e2b ROOT --build ID"), EXIT_USAGE;
	if (!e2b_parse_build_id(build, pid) || !e2b_file_name_ok(name))
		return WHY("--build '%s' / --e2b-file '%s': expected an 8-4-4-4-12 lowercase hex id "
			   "(not all zeros) and rootfs.ext4 or memfile", build, name), EXIT_USAGE;
	snprintf(t->name, sizeof(t->name), "%s", name);   /* the caller's may be gone */
	if (snprintf(t->root, sizeof(t->root), "%s", root) >= (int)sizeof(t->root))
		return WHY("--e2b: path too long"), EXIT_USAGE;
	t->out = o->out ? o->out : t->root;
	if (http_is_url(t->out))
		return WHY("the parent's storage root is a URL: give --output ROOT, a local folder "
			   "to write the new build into"), EXIT_USAGE;
	snprintf(path, sizeof(path), "%s%s%s/%s.header", root, slash(root), build, t->name);
	ret = e2b_header_load(path, o->remote, &t->parent, sub, sizeof(sub));
	if (ret)
		return WHY("the parent build: %s", sub), exit_code_for_image(ret);
	e2b_uuid_str(t->parent->build_id, t->parent_str);
	if (memcmp(t->parent->build_id, pid, 16))
		return WHY("%s: names build %s, not %s", path, t->parent_str, build), EXIT_BAD_IMAGE;
	if (o->build_id ? !e2b_parse_build_id(o->build_id, t->id) : random_uuid(t->id) != 0)
		return WHY(o->build_id ? "--build-id '%s': expected 8-4-4-4-12 lowercase hex, not all "
			   "zeros" : "no randomness for a build id", o->build_id),
		       o->build_id ? EXIT_USAGE : EXIT_FAIL;
	e2b_uuid_str(t->id, t->id_str);
	t->format = o->header_version ? o->header_version :
		    o->codec != E2B_CODEC_NONE && t->parent->format <= 3 ? 4 : t->parent->format;
	if (t->format <= 3 && o->codec != E2B_CODEC_NONE)
		return WHY("--header-version %u has no frame tables: --compress needs 4 or 5",
			   t->format), EXIT_USAGE;
	const struct e2b_build *packed = t->format <= 3 ? e2b_compressed_build(t->parent) : NULL;
	if (packed) {
		char s[37];
		e2b_uuid_str(packed->id, s);
		return WHY("--header-version %u has no frame tables, and build %s of the parent's "
			   "chain is compressed: the child needs 4 or 5", t->format, s), EXIT_USAGE;
	}
	/* a usage error, before anything of the storage is looked at or made */
	for (uint32_t k = 0; k <= t->parent->n_ids; k++)
		if (!memcmp(k < t->parent->n_ids ? t->parent->ids[k] : t->parent->build_id, t->id, 16))
			return WHY("--build-id %s: already a build of the parent's chain: give a new "
				   "one", t->id_str), EXIT_USAGE;
	/* the root is the operator's choice, as --output FILE is; the build's
	 * folder in it and the files in that are never followed as links */
	t->rootfd = open(t->out, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (t->rootfd < 0)
		return WHY("%s: cannot open the storage root: %s", t->out, strerror(errno)), EXIT_FAIL;
	if (!mkdirat(t->rootfd, t->id_str, 0777)) {   /* less the umask, as mkdir(1) */
		t->made_dir = true;
		output_file_track_folder(t->rootfd, t->id_str, true);
	} else if (errno != EEXIST)
		return WHY("%s/%s: cannot create: %s", t->out, t->id_str, strerror(errno)), EXIT_FAIL;
	t->dirfd = openat(t->rootfd, t->id_str, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (t->dirfd < 0)
		return WHY("%s/%s: %s", t->out, t->id_str, errno == ELOOP || errno == ENOTDIR ?
			   "not a folder (a symlink?): refusing to write a build through it" :
			   strerror(errno)), EXIT_FAIL;
	if (!t->made_dir && (fstat(t->dirfd, &st) ||
			     (st.st_uid != geteuid() && st.st_uid != 0) ||
			     ((st.st_mode & S_IWOTH) && !(st.st_mode & S_ISVTX))))
		return WHY("%s/%s: exists and is not ours or root's, or others may write it: "
			   "refusing to publish a build in it", t->out, t->id_str), EXIT_FAIL;
	snprintf(hname, sizeof(hname), "%s.header", t->name);
	if (!fstatat(t->dirfd, hname, &st, AT_SYMLINK_NOFOLLOW) || errno != ENOENT)
		return WHY("build %s already exists under %s (%s/%s/%s is there): a build is never "
			   "overwritten; give another --build-id, or none for a random one", t->id_str,
			   t->out, t->out, t->id_str, hname), EXIT_FAIL;
	/* a data file without its header: refused now, before anything stops */
	for (int codec = E2B_CODEC_NONE; codec <= E2B_CODEC_LZ4; codec++) {
		char dname[300];
		e2b_data_name(t->name, (enum e2b_codec)codec, dname, sizeof(dname));
		if (!fstatat(t->dirfd, dname, &st, AT_SYMLINK_NOFOLLOW) || errno != ENOENT)
			return WHY("%s/%s/%s: %s", t->out, t->id_str, dname, DATA_WITHOUT_HEADER),
			       EXIT_FAIL;
	}
	return 0;
}

/* E2B's upload heals a record the parent lacks from the ancestor's own
 * header (build_upload_v4.go, appendAncestorBuilds): its record of itself,
 * or the empty one when that header is V1-V3; nothing when unreadable. */
static int ancestor_record(void *ctx, const uint8_t id[16], struct e2b_build *rec)
{
	const struct e2b_target *t = ctx;
	char path[PATH_MAX + 128], s[37], sub[300];
	struct e2b_header *h = NULL;
	const struct e2b_build *b;
	int found = 0;

	e2b_uuid_str(id, s);
	snprintf(path, sizeof(path), "%s%s%s/%s.header", t->root, slash(t->root), s, t->name);
	if (e2b_header_load(path, t->remote, &h, sub, sizeof(sub)))
		return 0;
	if (memcmp(h->build_id, id, 16)) {
		/* a header copied under another build's folder says nothing of it */
	} else if ((b = e2b_header_build(h, id))) {
		*rec = *b;
		rec->frames = NULL;
		if (b->n_frames && (rec->frames = malloc(b->n_frames * sizeof(*b->frames))))
			memcpy(rec->frames, b->frames, b->n_frames * sizeof(*b->frames));
		found = !b->n_frames || rec->frames;   /* never a table lost to memory */
	} else if (h->format <= 3) {
		*rec = (struct e2b_build){ 0 };
		found = 1;
	}
	e2b_header_free(h);
	return found;
}

/* Name the data, then the header (both synced): neither name may exist,
 * and the header's appearance is the commit; a failure between takes the
 * data's name back. A failed sync of the folders after that is reported,
 * the build left as published. */
static int commit_build(struct e2b_target *t, struct atomic_file *daf, struct atomic_file *haf,
			const char *dname, const char *hname, char *why, size_t whylen)
{
	int ret = atomic_file_commit(daf, ATOMIC_FSYNC | ATOMIC_NOREPLACE);

	if (ret) {
		WHY("%s/%s/%s: %s", t->out, t->id_str, dname, ret == -EEXIST ? DATA_WITHOUT_HEADER :
		    strerror(-ret));
		return ret;
	}
	/* the data's name on disk before the header's: a file system that
	 * does not keep the order of a folder's changes could otherwise keep
	 * a header, the commit, whose data has no name after a crash */
	if (fsync(t->dirfd)) {
		ret = -errno;
		WHY("%s/%s: syncing its folder after naming the data: %s", t->out, t->id_str,
		    strerror(-ret));
		unlinkat(t->dirfd, dname, 0);
		return ret;
	}
	if ((ret = atomic_file_commit(haf, ATOMIC_NOREPLACE))) {
		WHY("%s/%s/%s: %s", t->out, t->id_str, hname, ret == -EEXIST ?
		    "appeared meanwhile (another export of this build id?): left as it is" :
		    strerror(-ret));
		/* the data's name without its header is no build: taken back */
		unlinkat(t->dirfd, dname, 0);
		return ret;
	}
	/* the root too, also for a folder an interrupted export left unsynced */
	if (fsync(t->dirfd) || fsync(t->rootfd)) {
		ret = -errno;
		WHY("%s/%s: build published, but syncing its folder failed (%s): it may not survive "
		    "a crash of the host; check the filesystem", t->out, t->id_str, strerror(-ret));
	}
	return ret;
}

/* Write the build: data (unnamed until the end), then the header, checked
 * by reading it back; the data gets its name, then the header, which must
 * not exist yet: its appearance is the commit (commit_build). */
static int e2b_export(struct e2b_target *t, const struct cache_export *x,
		      const struct diff_source *src, const struct export_opts *o,
		      struct export_result *r, char *why, size_t whylen)
{
	struct atomic_file daf = ATOMIC_FILE_INIT, haf = ATOMIC_FILE_INIT;
	struct e2b_data_opts dopt = { .codec = o->codec, .level = o->level,
				      .frame_size = o->frame_size ? o->frame_size : E2B_DEFAULT_FRAME };
	struct e2b_build self = { 0 };
	struct e2b_header *h = NULL, *chk = NULL;
	char dname[300], hname[300], sub[400], s[37];
	uint8_t *hbuf = NULL;
	size_t hlen = 0;
	uint64_t file_bytes = 0;
	mode_t mask = umask(0);
	bool dtrack = false, htrack = false, has_data = false;
	int ret, code;   /* code: the exit code of a failure */

	umask(mask);
	code = EXIT_BAD_IMAGE;
	ret = -EINVAL;
	if (memcmp(x->meta.parent, t->parent->build_id, 16)) {
		e2b_uuid_str(x->meta.parent, s);
		WHY("the cache was made over layer %s, not over build %s: only a cache directly over "
		    "an E2B build becomes its next build (no --layer between)", s, t->parent_str);
		goto out;
	}
	if (x->meta.dev_size != t->parent->size) {
		WHY("the cache's device has %llu bytes, build %s %llu: a resized device cannot "
		    "become the build's child", (unsigned long long)x->meta.dev_size, t->parent_str,
		    (unsigned long long)t->parent->size);
		goto out;
	}
	if (x->meta.generation != t->parent->generation + 1) {
		WHY("the cache was made over generation %llu of build %s, its header says %llu",
		    (unsigned long long)(x->meta.generation - 1), t->parent_str,
		    (unsigned long long)t->parent->generation);
		goto out;
	}
	code = EXIT_FAIL;
	for (size_t i = 0; i < x->n_ext && !has_data; i++)
		has_data = x->ext[i].kind == DIFF_DATA;
	if (!has_data)   /* no frames read as uncompressed: so the file is named */
		dopt.codec = E2B_CODEC_NONE;
	e2b_data_name(t->name, dopt.codec, dname, sizeof(dname));
	snprintf(hname, sizeof(hname), "%s.header", t->name);
	if ((ret = atomic_file_open(&daf, t->dirfd, dname, 0666 & ~mask))) {
		WHY("%s/%s/%s: cannot create: %s", t->out, t->id_str, dname, strerror(-ret));
		goto out;
	}
	output_file_track(&daf, dtrack = true);
	if ((ret = e2b_write_data(daf.fd, x->ext, x->n_ext, src, &dopt, &self, &file_bytes, sub,
				  sizeof(sub)))) {
		WHY("%s/%s/%s: %s", t->out, t->id_str, dname, sub);
		goto out;
	}
	memcpy(self.id, t->id, 16);
	if ((ret = e2b_next_header(t->parent, x->ext, x->n_ext, t->id, t->format, &self,
				   ancestor_record, t, &h, sub, sizeof(sub))) ||
	    (ret = e2b_header_serialize(h, &hbuf, &hlen, sub, sizeof(sub)))) {
		/* what options could refuse was refused before anything stopped */
		WHY("build %s: %s", t->id_str, sub);
		goto out;
	}
	/* what E2B would refuse is never published */
	if ((ret = e2b_header_parse(hbuf, hlen, &chk, sub, sizeof(sub))) ||
	    memcmp(chk->build_id, t->id, 16) || chk->generation != t->parent->generation + 1) {
		WHY("build %s: the header written does not read back (%s); nothing published: please "
		    "report this", t->id_str, ret ? sub : "other metadata");
		ret = ret ? ret : -EIO;
		goto out;
	}
	if (o->before_commit && (code = o->before_commit(o->commit_ctx, why, whylen))) {
		ret = -ECANCELED;
		goto out;
	}
	code = EXIT_FAIL;
	if ((ret = atomic_file_open(&haf, t->dirfd, hname, 0666 & ~mask)) ||
	    (output_file_track(&haf, htrack = true), ret = write_full(haf.fd, hbuf, hlen)) ||
	    (ret = fsync(haf.fd) ? -errno : 0)) {
		WHY("%s/%s/%s: %s", t->out, t->id_str, hname, strerror(-ret));
		goto out;
	}
	/* From the data's name to the header's, a signal would leave a named
	 * data file that is no build: it waits until one or neither is there. */
	sigset_t before;
	output_file_hold_signals(&before);
	ret = commit_build(t, &daf, &haf, dname, hname, why, whylen);
	output_file_release_signals(&before);
	if (ret)
		goto out;
	r->e2b.generation = h->generation;
	r->e2b.header_version = h->format;
	r->e2b.data_bytes = self.size;
	r->e2b.compressed_bytes = file_bytes;
	r->e2b.frames = self.n_frames;
	r->e2b.codec = self.codec;
	r->e2b.frame_size = self.codec != E2B_CODEC_NONE ? dopt.frame_size : 0;
	memcpy(r->e2b.build_id, t->id, 16);
	memcpy(r->e2b.parent, t->parent->build_id, 16);
	memcpy(r->e2b.base, h->base_build_id, 16);
	snprintf(r->e2b.path, sizeof(r->e2b.path), "%s%s%s/%s", t->out, slash(t->out), t->id_str,
		 hname);
	snprintf(r->e2b.data_path, sizeof(r->e2b.data_path), "%s%s%s/%s", t->out, slash(t->out),
		 t->id_str, dname);
	r->written.bytes = file_bytes + hlen;
	r->written.frames = self.n_frames;
out:
	atomic_file_abort(&daf);
	atomic_file_abort(&haf);
	if (dtrack)
		output_file_track(&daf, false);
	if (htrack)
		output_file_track(&haf, false);
	free(self.frames);
	free(hbuf);
	e2b_header_free(h);
	e2b_header_free(chk);
	return ret ? code : 0;
}

/* A v3 header names its data file by nothing but the name, and has no
 * checksum: a new pair replaces an old one as E2B's builds are published.
 * The old header goes first (durably), then the data takes its name, then
 * the header: cut short anywhere, the pair has no header, which no reader
 * takes for whole. */
static int v3_unpublish(const char *hpath, int dirfd, char *why, size_t whylen)
{
	if (unlink(hpath) && errno != ENOENT)
		return WHY("%s: cannot replace it: %s", hpath, strerror(errno)), -errno;
	if (fsync(dirfd))
		return WHY("%s: syncing its folder: %s", hpath, strerror(errno)), -errno;
	return 0;
}

static bool to_stdout(const struct export_opts *o)
{
	return !o->out || !strcmp(o->out, "-");
}

static const char *output_name(const struct export_opts *o)
{
	return to_stdout(o) ? "standard output" : o->out;
}

/* The diff (or v3 pair) must not replace a file it is made from: the
 * cache, and for a device the base and layers below it. */
static int refuse_input_as_output(const struct stack_config *inputs, const struct export_opts *o,
				  char *why, size_t whylen)
{
	char hpath[PATH_MAX];
	int ret = 0;

	if (!to_stdout(o))
		ret = stack_refuse_output(inputs, o->out, why, whylen);
	if (!ret && o->v3 && o->out && snprintf(hpath, sizeof(hpath), "%s.header", o->out) < (int)sizeof(hpath))
		ret = stack_refuse_output(inputs, hpath, why, whylen);
	return ret;
}

/* o->out (and a v3 pair's header) can be written, with need bytes free:
 * 0 or an exit code. */
static int check_output(const struct export_opts *o, uint64_t need, char *why, size_t whylen)
{
	char hpath[PATH_MAX];
	int ret = output_file_check(o->out, need, why, whylen);

	if (ret)
		return ret == -ENOSPC ? EXIT_FAIL : EXIT_USAGE;
	if (o->v3 && o->out && snprintf(hpath, sizeof(hpath), "%s.header", o->out) < (int)sizeof(hpath) &&
	    output_file_refuse_special(hpath, why, whylen))
		return EXIT_USAGE;
	return 0;
}

/* t: write the next E2B build there, else a diff to o->out. */
static int export_cache_to(const char *cache, const struct export_opts *o, struct e2b_target *t,
			   struct export_result *r, char *why, size_t whylen)
{
	struct export_ctx ctx = { .p = { .on = o->progress, .what = "export", .unit = LAYER_BLOCK_SIZE },
				  .o = o, .why = why, .whylen = whylen };
	uint64_t start = now_ms();
	struct output_file out = { .fd = -1 };
	char sub[1100];
	int ret, code = 0;

	const struct stack_config inputs = { .cache = cache };
	if (!t && refuse_input_as_output(&inputs, o, why, whylen))
		return EXIT_USAGE;
	if (!t && (code = check_output(o, 0, why, whylen)))
		return code;
	ret = cache_export_open(cache, o->live, &ctx.x, why, whylen);
	if (ret)
		return ret == -EBUSY ? EXIT_BUSY : exit_code_for_image(ret);
	/* E2B's readers take a mapping with no entries for "the whole device
	 * is this build's data": an empty pair would read as an empty file */
	if (!t && o->v3 && !ctx.x.n_ext) {
		WHY("%s: nothing changed, which a v3 header cannot say (to E2B an empty mapping "
		    "means the whole device is its data file); nothing was written: export it with "
		    "--format diff", cache);
		cache_export_close(&ctx.x);
		r->unchanged_v3 = true;
		return EXIT_FAIL;
	}
	ctx.x.meta.flags = o->zstd ? DIFF_FLAG_ZSTD : 0;
	ctx.x.meta.frame_size = o->frame_size ? o->frame_size : DIFF_DEFAULT_FRAME;
	ctx.x.meta.level = o->level;
	struct diff_source src = { .read = ctx_read, .view = ctx_view, .progress = ctx_progress,
				   .ctx = &ctx };
	ret = t ? 0 : output_file_open(&out, o->out, why, whylen);
	if (t) {
		if ((code = e2b_export(t, &ctx.x, &src, o, r, sub, sizeof(sub))))
			WHY("%s: %s", cache, sub);
	} else if (!ret && o->v3) {
		struct output_file hdr;
		char hpath[PATH_MAX];
		if (snprintf(hpath, sizeof(hpath), "%s.header", o->out) >= (int)sizeof(hpath)) {
			WHY("%s.header: path too long", o->out);
			ret = -ENAMETOOLONG;
		} else {
			ret = output_file_open(&hdr, hpath, why, whylen);
		}
		if (!ret) {
			ret = diff_v3_write(out.fd, hdr.fd, &ctx.x.meta, ctx.x.ext, ctx.x.n_ext, ctx_read,
					    ctx_progress, &ctx, sub, sizeof(sub));
			r->written.bytes = ctx.x.meta.data_blocks * 4096 + 64 + ctx.x.n_ext * 40;
			if (ret)
				WHY("%s to %s: %s", cache, output_name(o), sub);
			else if (o->before_commit && (code = o->before_commit(o->commit_ctx, why, whylen)))
				ret = -ECANCELED;
			if (!ret)
				ret = v3_unpublish(hpath, hdr.af.dirfd, why, whylen);
			int cret = output_file_close(&out, !ret, why, whylen);
			if (!ret)
				ret = cret;
			cret = output_file_close(&hdr, !ret, why, whylen);
			if (!ret)
				ret = cret;
		} else {
			output_file_close(&out, false, why, whylen);
		}
	} else if (!ret) {
		/* sealed before its footer: a diff on a pipe whose writes were
		 * not held all along never looks whole */
		src.seal = ctx_seal;
		ret = diff_write(out.fd, &ctx.x.meta, ctx.x.ext, ctx.x.n_ext, &src, &r->written, sub,
				 sizeof(sub));
		if (ctx.commit_code)
			code = ctx.commit_code;
		else if (ret)
			WHY("%s to %s: %s", cache, output_name(o), sub);
		int cret = output_file_close(&out, !ret, why, whylen);   /* on error: only cleans up */
		if (!ret)
			ret = cret;
	}
	r->meta = ctx.x.meta;
	r->ms = now_ms() - start;
	progress_end(&ctx.p);
	cache_export_close(&ctx.x);
	return code ? code : ret ? EXIT_FAIL : 0;
}

int export_cache(const char *cache, const struct export_opts *o, struct export_result *r,
		 char *why, size_t whylen)
{
	struct e2b_target t;
	int code;

	if (!o->e2b)
		return export_cache_to(cache, o, NULL, r, why, whylen);
	code = e2b_prepare(o, o->e2b_root, o->e2b_build, o->e2b_file, &t, why, whylen);
	if (!code)
		code = export_cache_to(cache, o, &t, r, why, whylen);
	e2b_target_close(&t, !code);
	return code;
}

/* The parent build of device id: as given, else its state entry's. Checked
 * (e2b_prepare) before the device is touched. */
static int e2b_device_target(uint32_t id, const struct export_opts *o, struct e2b_target *t,
			     char *why, size_t whylen)
{
	char root[PATH_MAX] = "", build[64] = "", name[64] = "", layer[PATH_MAX] = "";

	*t = (struct e2b_target){ .rootfd = -1, .dirfd = -1 };
	/* refused by the export once the cache is open: said before the stop */
	if (!state_config_get(id, "layer", layer, sizeof(layer)) && layer[0])
		return WHY("ublkb%u: has a --layer between its E2B build and its cache: only a cache "
			   "directly over a build becomes its next build; nothing was changed", id),
		       EXIT_BAD_IMAGE;
	if (o->e2b_root)
		return e2b_prepare(o, o->e2b_root, o->e2b_build, o->e2b_file, t, why, whylen);
	state_config_get(id, "e2b", root, sizeof(root));
	state_config_get(id, "build", build, sizeof(build));
	state_config_get(id, "e2b_file", name, sizeof(name));
	if (!root[0] || !build[0])
		return WHY("ublkb%u: is not over an E2B build (--e2b ROOT --build ID): --format e2b "
			   "writes the next build of one", id), EXIT_USAGE;
	return e2b_prepare(o, root, build, name, t, why, whylen);
}

/* A typo in -o must not cost the device, nor hold its writes: the output
 * is checked before the device is stopped or frozen. The diff holds at
 * most what the cache holds, and may not replace the cache, or the base
 * or a layer below it, which the state entry names. */
static int check_device_output(uint32_t id, const char *cache, const struct export_opts *o,
			       char *why, size_t whylen)
{
	struct server_config dc;
	char sub[700];
	struct stat st;
	int ret;

	uint64_t need = stat(cache, &st) ? 0 : (uint64_t)st.st_blocks * 512 + (1u << 20);
	if ((ret = check_output(o, need, sub, sizeof(sub))))
		return WHY("ublkb%u: %s; nothing was changed", id, sub), ret;
	devopts_defaults(&dc);
	if ((ret = devconfig_read(id, &dc, sub, sizeof(sub))))
		return WHY("%s; nothing was changed (-o cannot be checked against its base and "
			   "layers: export its cache with --cache once it is deleted)", sub), ret;
	dc.stack.cache = cache;
	if (refuse_input_as_output(&dc.stack, o, sub, sizeof(sub)))
		return WHY("ublkb%u: %s; nothing was changed", id, sub), EXIT_USAGE;
	return 0;
}

int export_device(uint32_t id, const struct export_opts *o, struct export_result *r,
		  char *why, size_t whylen)
{
	struct e2b_target t;
	char cache[PATH_MAX], sub[700];
	struct stat st;
	int ret, code;

	if (state_config_get(id, "cache", cache, sizeof(cache)))
		return WHY("ublkb%u: no state entry in %s: not a ublk-tools device, or its state "
			   "was lost; export its cache with --cache FILE", id, state_dir()), EXIT_NO_DEVICE;
	if (!cache[0])
		return WHY("ublkb%u: has no --cache (its writes went to the base): nothing to export",
			   id), EXIT_USAGE;
	if (o->e2b && (code = e2b_device_target(id, o, &t, why, whylen)))
		return e2b_target_close(&t, false), code;
	if (!o->e2b && (code = check_device_output(id, cache, o, why, whylen)))
		return code;
	ret = device_delete(id, o->timeout_ms, false, sub, sizeof(sub));
	if (ret) {
		if (o->e2b)
			e2b_target_close(&t, false);
		/* held (EBUSY): nothing changed; else the stop may have begun */
		if (ret == -EBUSY)
			return WHY("%s", sub), EXIT_BUSY;
		return WHY("%s; nothing was exported, the cache %s is as the device left it", sub,
			   cache), exit_code_for(ret);
	}
	code = export_cache_to(cache, o, o->e2b ? &t : NULL, r, sub, sizeof(sub));
	if (o->e2b)
		e2b_target_close(&t, !code);
	if (code && r->unchanged_v3)
		return WHY("ublkb%u: %s; the device is deleted, its cache kept at %s", id, sub, cache), code;
	if (code)
		return WHY("ublkb%u: %s; the device is deleted, its cache is kept at %s for another "
			   "try: ublk-export-diff --cache %s, with the same output options", id, sub, cache,
			   cache), code;
	/* a pipe's reader may still fail (a dropped ssh), /dev/null keeps
	 * nothing: nothing says the diff is stored anywhere, so the cache stays */
	bool stream = !o->e2b && to_stdout(o) && !fstat(STDOUT_FILENO, &st) && !S_ISREG(st.st_mode) &&
		      !S_ISBLK(st.st_mode);
	if (!o->keep && stream)
		log_info("ublkb%u: the diff went to standard output, which is no file (a pipe, socket "
			 "or device), so nothing says it is stored: the cache is kept at %s; remove it "
			 "and %s.map once the diff is safe", id, cache, cache);
	if (!o->keep && !stream) {
		ret = cache_remove(cache, sub, sizeof(sub));
		if (ret)
			return WHY("%s: exported, but removing the cache failed: %s", cache,
				   sub[0] ? sub : strerror(-ret)), EXIT_FAIL;
		r->cache_removed = true;
	}
	return 0;
}

struct held {
	int fd;                 /* control socket; the server holds writes */
	uint32_t id;
	uint64_t timeout_ms;
};

/* Before the diff gets its name: resume writes and check they were held
 * all along, or discard it. */
static int thaw(void *ctx, char *why, size_t whylen)
{
	struct held *h = ctx;
	char line[256];
	int ret;

	ret = ctlsock_ask(h->fd, "thaw\n", line, sizeof(line), 5000);
	if (ret <= 0)   /* it may have been recovered meanwhile, and written */
		return WHY("ublkb%u: the server went away during the export (died?); discarded it: "
			   "recover the device (ublk-pool reclaim --recover) and retry", h->id), EXIT_FAIL;
	if (strcmp(line, "thawed"))   /* writes resumed during the export */
		return WHY("ublkb%u: the export took longer than the %llu ms writes may be held; "
			   "discarded it: %s", h->id, (unsigned long long)h->timeout_ms,
			   h->timeout_ms < CTLSOCK_MAX_HOLD_MS ? "retry with a longer --timeout" :
			   "that is the longest hold: export it stopped (without --live)"),
		       EXIT_TIMEOUT;
	return 0;
}

int export_live(uint32_t id, const struct export_opts *o, struct export_result *r,
		char *why, size_t whylen)
{
	struct export_opts live = *o;
	struct held held = { .id = id, .timeout_ms = o->timeout_ms < CTLSOCK_MAX_HOLD_MS ?
					       o->timeout_ms : CTLSOCK_MAX_HOLD_MS };
	struct e2b_target t;
	char cache[PATH_MAX], req[40], line[256];
	int ret, code;

	if (state_config_get(id, "cache", cache, sizeof(cache)))
		return WHY("ublkb%u: no state entry in %s: not a ublk-tools device", id, state_dir()),
		       EXIT_NO_DEVICE;
	if (!cache[0])
		return WHY("ublkb%u: has no --cache: nothing to export", id), EXIT_USAGE;
	if (!o->e2b && (code = check_device_output(id, cache, o, why, whylen)))
		return code;
	if (o->e2b && (code = e2b_device_target(id, o, &t, why, whylen)))
		return e2b_target_close(&t, false), code;
	held.fd = ctlsock_connect_why(id, o->timeout_ms, why, whylen);
	if (held.fd < 0) {
		if (o->e2b)
			e2b_target_close(&t, false);
		/* no socket: exit 1 here (docs: --live), not save-trace's 6 */
		return held.fd == -ENOENT ? EXIT_FAIL : exit_code_for(held.fd);
	}
	/* the server holds writes for at most CTLSOCK_MAX_HOLD_MS; one that
	 * closed already (busy, stopping) is read as such below, no SIGPIPE */
	snprintf(req, sizeof(req), "freeze %llu\n", (unsigned long long)(o->timeout_ms < 1 ? 1 :
		 o->timeout_ms > CTLSOCK_MAX_HOLD_MS ? CTLSOCK_MAX_HOLD_MS : o->timeout_ms));
	ret = ctlsock_ask(held.fd, req, line, sizeof(line), o->timeout_ms + 2000);
	if (ret <= 0 || strcmp(line, "frozen")) {
		bool expired = ret > 0 && !strcmp(line, "expired");
		code = ret == -ETIMEDOUT || expired ? EXIT_TIMEOUT : EXIT_FAIL;
		WHY("ublkb%u: server did not freeze: %s%s", id, ret > 0 ? line :
		    ret ? strerror(-ret) : "connection closed", expired ? ": the hold (--timeout) ended "
		    "before its cache was durable (a slow sync, or the server is stopping): retry with "
		    "a longer one, or export the stopped device" : "");
		close(held.fd);
		if (o->e2b)
			e2b_target_close(&t, false);
		return code;
	}
	live.live = true;
	live.before_commit = thaw;
	live.commit_ctx = &held;
	code = export_cache_to(cache, &live, o->e2b ? &t : NULL, r, why, whylen);
	close(held.fd);   /* resumes writes if thaw() did not run */
	if (o->e2b)
		e2b_target_close(&t, !code);
	return code;
}

int diff_verify(const struct diff_file *d, uint64_t *frame, const char **damage)
{
	uint8_t *buf = malloc(d->meta.frame_size), *scratch = malloc(ZSTD_compressBound(d->meta.frame_size));
	int ret = buf && scratch ? 0 : -ENOMEM;

	*damage = NULL;
	/* quiet: the caller reports the first bad frame */
	for (uint64_t i = 0; i < d->n_frames && !ret; i++)
		if ((ret = diff_read_frame_quiet(d, i, buf, scratch, damage)))
			*frame = i;
	free(buf);
	free(scratch);
	return ret;
}

/* ---- flatten ---- */

/* Holes the stack reports are asked for in pieces of at most this much,
 * so a long clean run costs one map scan per piece, not one per chunk. */
#define FLAT_EXTENT_MAX (64ull << 20)
#define FLAT_CHUNK (1u << 20)
#define FLAT_BLOCK 4096u

struct flat_io {
	struct layer_io io;
	int res;
};

static void flat_done(struct layer_io *io, int res)
{
	((struct flat_io *)io)->res = res;
}

static bool all_zero(const uint8_t *p, size_t n)
{
	const uint64_t *w = (const uint64_t *)p;
	for (size_t i = 0; i < n / 8; i++)
		if (w[i])
			return false;
	for (size_t i = n & ~(size_t)7; i < n; i++)   /* an E2B size ends anywhere */
		if (p[i])
			return false;
	return true;
}

/* buf holds len bytes of the device from off: a file gets only its runs
 * of non-zero 4 KiB blocks, so it stays as sparse as the device's data
 * allows; a stream gets every byte. */
static int flat_write(int fd, const uint8_t *buf, size_t len, uint64_t off, bool seekable)
{
	size_t i = 0;

	if (!seekable)
		return write_full(fd, buf, len);
	while (i < len) {
		size_t start, blk = len - i < FLAT_BLOCK ? len - i : FLAT_BLOCK;
		if (all_zero(buf + i, blk)) {
			i += blk;
			continue;
		}
		for (start = i; i < len; i += blk) {
			blk = len - i < FLAT_BLOCK ? len - i : FLAT_BLOCK;
			if (all_zero(buf + i, blk))
				break;
		}
		int ret = pwrite_full(fd, buf + start, i - start, off + start);
		if (ret)
			return ret;
	}
	return 0;
}

/* Read [off, off + len) of top into buf, chunk by chunk, writing each out.
 * *code: the exit status of a read that failed (the image's: a damaged
 * diff frame, a bad answer of a server), else untouched. */
static int flat_copy(struct layer *top, struct aio *aio, void *priv, uint8_t *buf,
		     const struct output_file *out, uint64_t off, uint64_t len, int *code,
		     char *why, size_t whylen)
{
	for (uint64_t end = off + len; off < end;) {
		struct flat_io f = { .io = { .op = LAYER_READ, .off = off, .buf = buf, .done = flat_done,
					     .aio = aio, .priv = priv } };
		int ret;
		f.io.len = (uint32_t)(end - off < FLAT_CHUNK ? end - off : FLAT_CHUNK);
		layer_submit(top, &f.io);
		if ((ret = aio_drain(aio)) || (ret = f.res < 0 ? f.res : 0)) {
			*code = exit_code_for_image(ret);
			return WHY("reading offset %llu of the image: %s",
				   (unsigned long long)off, strerror(-ret)), ret;
		}
		if ((ret = flat_write(out->fd, buf, f.io.len, off, out->path != NULL)))
			return WHY("%s: writing: %s", out->path ? out->path : "standard output",
				   strerror(-ret)), ret;
		off += f.io.len;
	}
	return 0;
}

int export_flatten(const struct server_config *cfg, const char *outp, bool progress,
		   uint64_t *bytes, char *why, size_t whylen)
{
	struct server_config ro = *cfg;
	struct progress p = { .on = progress, .what = "flatten" };
	struct layer *top = NULL;
	struct io_uring ring;
	struct aio aio = { .ring = &ring };
	struct output_file out = { .fd = -1 };
	uint8_t *buf = NULL;
	void *priv = NULL;
	int code, ret = 0;
	bool seekable;

	ro.stack.read_only = true;
	ro.stack.any_size = true;   /* an E2B build's size: written to the byte */
	if ((outp && strcmp(outp, "-") && stack_refuse_output(&ro.stack, outp, why, whylen)) ||
	    output_file_check(outp, 0, why, whylen))
		return EXIT_USAGE;
	code = stack_open(&ro.stack, &top, why, whylen);
	if (code)
		return code;
	buf = aligned_alloc(FLAT_BLOCK, FLAT_CHUNK);
	priv = calloc(1, layer_stack_priv_size(top) + 16);
	if (!buf || !priv || io_uring_queue_init(8, &ring, 0)) {
		layer_close(top);
		free(buf);
		free(priv);
		return WHY("%s", !buf || !priv ? strerror(ENOMEM) : "cannot set up an io_uring (is it "
			   "disabled: kernel.io_uring_disabled, or a seccomp filter?)"), EXIT_FAIL;
	}
	ret = output_file_open(&out, outp, why, whylen);
	seekable = out.path != NULL;
	for (uint64_t off = 0, len; !ret && off < top->size; off += len) {
		len = top->size - off < FLAT_EXTENT_MAX ? top->size - off : FLAT_EXTENT_MAX;
		if (layer_extent(top, off, &len) == LAYER_DATA) {
			ret = flat_copy(top, &aio, priv, buf, &out, off, len, &code, why, whylen);
		} else if (!seekable) {   /* a hole, but a stream has no holes */
			memset(buf, 0, FLAT_CHUNK);
			for (uint64_t z = 0; z < len && !ret; z += FLAT_CHUNK)
				if ((ret = write_full(out.fd, buf, len - z < FLAT_CHUNK ? len - z : FLAT_CHUNK)))
					WHY("standard output: writing: %s", strerror(-ret));
		}
		progress_show(&p, off + len, top->size);
	}
	if (!ret && seekable && ftruncate(out.fd, (off_t)top->size)) {
		ret = -errno;
		WHY("%s: %s", outp, strerror(errno));
	}
	if (out.fd >= 0) {
		int cret = output_file_close(&out, !ret, why, whylen);
		if (!ret)
			ret = cret;
	}
	*bytes = top->size;
	progress_end(&p);
	io_uring_queue_exit(&ring);
	layer_close(top);
	free(buf);
	free(priv);
	return ret ? code ? code : EXIT_FAIL : 0;
}
