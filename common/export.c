#include "export.h"
#include "aio.h"
#include "atomic_file.h"
#include "cache.h"
#include "ctlsock.h"
#include "device.h"
#include "exitcodes.h"
#include "layer.h"
#include "stack.h"
#include "state.h"
#include "timeutil.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zstd.h>

#define WHY(...) snprintf(why, whylen, __VA_ARGS__)

struct progress {
	bool on;
	const char *what;
	uint64_t last_ms;
};

static void show_progress(struct progress *p, uint64_t done, uint64_t total)
{
	uint64_t now = now_ms();
	if (!p->on || (done < total && now - p->last_ms < 100))
		return;
	p->last_ms = now;
	fprintf(stderr, "\r%s: %3llu%% (%llu of %llu)%s", p->what,
		(unsigned long long)(total ? done * 100 / total : 100), (unsigned long long)done,
		(unsigned long long)total, done >= total ? "\n" : "");
}

/* Output to a new file that replaces path only once complete
 * (atomic_file: unnamed where the filesystem can, else a random name that
 * a signal handler removes), so a failed or killed export leaves nothing
 * behind; or stdout. The file gets 0666 less the umask, as cp would give
 * it: sandbox data is no more readable than the operator's other files. */
struct output {
	struct atomic_file af;
	int fd;
	const char *path;
};

/* The named temporaries to remove if SIGINT, SIGTERM or SIGHUP ends us. */
#define MAX_OUTPUTS 2
static struct atomic_file *volatile pending[MAX_OUTPUTS];
static struct sigaction saved[3];
static const int caught[3] = { SIGINT, SIGTERM, SIGHUP };
static int n_pending;

static void on_fatal_signal(int sig)
{
	for (int i = 0; i < MAX_OUTPUTS; i++)
		if (pending[i])
			atomic_file_abort(pending[i]);
	signal(sig, SIG_DFL);
	raise(sig);
}

static void track(struct atomic_file *af, bool on)
{
	struct sigaction sa = { .sa_handler = on_fatal_signal };

	for (int i = 0; i < MAX_OUTPUTS; i++)
		if (on ? !pending[i] : pending[i] == af) {
			pending[i] = on ? af : NULL;
			break;
		}
	if (on && n_pending++ == 0)
		for (int i = 0; i < 3; i++)
			sigaction(caught[i], &sa, &saved[i]);
	if (!on && --n_pending == 0)
		for (int i = 0; i < 3; i++)
			sigaction(caught[i], &saved[i], NULL);
}

static int output_open(struct output *o, const char *path, char *why, size_t whylen)
{
	mode_t mask = umask(0);
	int ret;

	umask(mask);
	o->path = path && strcmp(path, "-") ? path : NULL;
	o->af = (struct atomic_file)ATOMIC_FILE_INIT;
	if (!o->path) {
		o->fd = STDOUT_FILENO;
		return 0;
	}
	ret = atomic_file_open(&o->af, AT_FDCWD, path, 0666 & ~mask);
	if (ret) {
		o->fd = -1;
		return WHY("%s: cannot create: %s", path, strerror(-ret)), ret;
	}
	o->fd = o->af.fd;
	track(&o->af, true);
	return 0;
}

/* Give the file its name if ok, else discard it. */
static int output_close(struct output *o, bool ok, char *why, size_t whylen)
{
	int ret = 0;

	if (!o->path || o->fd < 0)
		return 0;
	if (ok && (ret = atomic_file_commit(&o->af, ATOMIC_DURABLE)))
		WHY("%s: %s", o->path, strerror(-ret));
	atomic_file_abort(&o->af);
	track(&o->af, false);
	o->fd = -1;
	return ret;
}

struct export_ctx {
	struct cache_export x;
	struct progress p;
};

static int ctx_read(void *ctx, uint64_t block, uint32_t count, void *buf)
{
	return cache_export_read(&((struct export_ctx *)ctx)->x, block, count, buf);
}

static void ctx_progress(void *ctx, uint64_t done, uint64_t total)
{
	show_progress(&((struct export_ctx *)ctx)->p, done, total);
}

int export_cache(const char *cache, const struct export_opts *o, struct export_result *r,
		 char *why, size_t whylen)
{
	struct export_ctx ctx = { .p = { .on = o->progress, .what = "export" } };
	uint64_t start = now_ms();
	struct output out;
	char sub[600];
	int ret, code = 0;

	ret = cache_export_open(cache, o->live, &ctx.x, why, whylen);
	if (ret)
		return ret == -EBUSY ? EXIT_BUSY :
		       ret == -ENOENT || ret == -EINVAL ? EXIT_BAD_IMAGE : EXIT_FAIL;
	ctx.x.meta.flags = o->zstd ? DIFF_FLAG_ZSTD : 0;
	ctx.x.meta.frame_size = o->frame_size ? o->frame_size : DIFF_DEFAULT_FRAME;
	ret = output_open(&out, o->out, why, whylen);
	if (!ret && o->v3) {
		struct output hdr;
		char hpath[PATH_MAX];
		snprintf(hpath, sizeof(hpath), "%s.header", o->out);
		ret = output_open(&hdr, hpath, why, whylen);
		if (!ret) {
			ret = diff_v3_write(out.fd, hdr.fd, &ctx.x.meta, ctx.x.ext, ctx.x.n_ext, ctx_read,
					    ctx_progress, &ctx, sub, sizeof(sub));
			r->written.bytes = ctx.x.meta.data_blocks * 4096 + 64 + ctx.x.n_ext * 40;
			if (ret)
				WHY("%s: %s", cache, sub);
			else if (o->before_commit && (code = o->before_commit(o->commit_ctx, why, whylen)))
				ret = -ECANCELED;
			int cret = output_close(&hdr, !ret, why, whylen);
			if (!ret)
				ret = cret;
		}
		int cret = output_close(&out, !ret, why, whylen);
		if (!ret)
			ret = cret;
	} else if (!ret) {
		ret = diff_write(out.fd, &ctx.x.meta, ctx.x.ext, ctx.x.n_ext, ctx_read, ctx_progress,
				 &ctx, &r->written, sub, sizeof(sub));
		if (ret)
			WHY("%s: %s", cache, sub);
		else if (o->before_commit && (code = o->before_commit(o->commit_ctx, why, whylen)))
			ret = -ECANCELED;
		int cret = output_close(&out, !ret, why, whylen);   /* on error: only cleans up */
		if (!ret)
			ret = cret;
	}
	r->meta = ctx.x.meta;
	r->ms = now_ms() - start;
	cache_export_close(&ctx.x);
	return code ? code : ret ? EXIT_FAIL : 0;
}

int export_device(uint32_t id, const struct export_opts *o, struct export_result *r,
		  char *why, size_t whylen)
{
	char cache[PATH_MAX], sub[700];
	int ret, code;

	if (state_config_get(id, "cache", cache, sizeof(cache)))
		return WHY("ublkb%u: no state entry in %s: not a ublk-tools device, or its state "
			   "was lost; export its cache with --cache FILE", id, state_dir()), EXIT_NO_DEVICE;
	if (!cache[0])
		return WHY("ublkb%u: has no --cache (its writes went to the base): nothing to export",
			   id), EXIT_USAGE;
	ret = device_delete(id, o->timeout_ms, false, why, whylen);
	if (ret)
		return ret == -EBUSY ? EXIT_BUSY : exit_code_for(ret);
	code = export_cache(cache, o, r, sub, sizeof(sub));
	if (code)
		return WHY("%s; the device is deleted, its cache is kept at %s for another try", sub,
			   cache), code;
	if (!o->keep) {
		ret = cache_remove(cache);
		if (ret)
			return WHY("%s: exported, but removing the cache failed: %s", cache,
				   strerror(-ret)), EXIT_FAIL;
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

	ctlsock_send(h->fd, "thaw\n");
	ret = ctlsock_read_line(h->fd, line, sizeof(line), 5000);
	if (ret <= 0)   /* it may have been recovered meanwhile, and written */
		return WHY("ublkb%u: the server went away during the export (died?); discarded it: "
			   "recover the device (ublk-pool reclaim --recover) and retry", h->id), EXIT_FAIL;
	if (strcmp(line, "thawed"))   /* writes resumed during the export */
		return WHY("ublkb%u: the export took longer than the %llu ms writes may be held; "
			   "discarded it: retry with a longer --timeout", h->id,
			   (unsigned long long)h->timeout_ms), EXIT_TIMEOUT;
	return 0;
}

int export_live(uint32_t id, const struct export_opts *o, struct export_result *r,
		char *why, size_t whylen)
{
	struct export_opts live = *o;
	struct held held = { .id = id, .timeout_ms = o->timeout_ms };
	char cache[PATH_MAX], line[256];
	int ret, code;

	if (state_config_get(id, "cache", cache, sizeof(cache)))
		return WHY("ublkb%u: no state entry in %s: not a ublk-tools device", id, state_dir()),
		       EXIT_NO_DEVICE;
	if (!cache[0])
		return WHY("ublkb%u: has no --cache: nothing to export", id), EXIT_USAGE;
	held.fd = ctlsock_connect(id);
	if (held.fd == -EPERM)
		return WHY("ublkb%u: not trusted: its state entry, or the process at its control "
			   "socket, is not root's or ours or not the entry's server; check %s/ublkb%u",
			   id, state_dir(), id), EXIT_FAIL;
	if (held.fd < 0)
		return WHY("ublkb%u: cannot reach its server: %s", id, strerror(-held.fd)), EXIT_FAIL;
	/* the server holds writes for at most CTLSOCK_MAX_HOLD_MS */
	dprintf(held.fd, "freeze %llu\n", (unsigned long long)(o->timeout_ms < 1 ? 1 :
		o->timeout_ms > CTLSOCK_MAX_HOLD_MS ? CTLSOCK_MAX_HOLD_MS : o->timeout_ms));
	ret = ctlsock_read_line(held.fd, line, sizeof(line), o->timeout_ms + 2000);
	if (ret <= 0 || strcmp(line, "frozen")) {
		code = ret == -ETIMEDOUT ? EXIT_TIMEOUT : EXIT_FAIL;
		WHY("ublkb%u: server did not freeze: %s", id, ret > 0 ? line :
		    ret ? strerror(-ret) : "connection closed");
		close(held.fd);
		return code;
	}
	live.live = true;
	live.before_commit = thaw;
	live.commit_ctx = &held;
	code = export_cache(cache, &live, r, why, whylen);
	close(held.fd);   /* resumes writes if thaw() did not run */
	return code;
}

int diff_verify(const struct diff_file *d, uint64_t *bad)
{
	uint8_t *buf = malloc(d->meta.frame_size), *scratch = malloc(ZSTD_compressBound(d->meta.frame_size));
	int ret = buf && scratch ? 0 : -ENOMEM;

	for (uint64_t i = 0; i < d->n_frames && !ret; i++)
		if ((ret = diff_read_frame(d, i, buf, scratch)))
			*bad = i;
	free(buf);
	free(scratch);
	return ret;
}

/* ---- flatten ---- */

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
	return true;
}

int export_flatten(const struct server_config *cfg, const char *outp, bool progress,
		   uint64_t *bytes, char *why, size_t whylen)
{
	const size_t chunk = 1 << 20;
	struct server_config ro = *cfg;
	struct progress p = { .on = progress, .what = "flatten" };
	struct layer *top = NULL;
	struct io_uring ring;
	struct aio aio = { .ring = &ring };
	struct output out = { .fd = -1 };
	uint8_t *buf = NULL;
	void *priv = NULL;
	int code, ret = 0;
	bool seekable;

	ro.read_only = true;
	code = stack_open(&ro, &top, why, whylen);
	if (code)
		return code;
	buf = aligned_alloc(4096, chunk);
	priv = calloc(1, layer_stack_priv_size(top) + 16);
	if (!buf || !priv || io_uring_queue_init(8, &ring, 0)) {
		layer_close(top);
		free(buf);
		free(priv);
		return WHY("out of memory or no io_uring"), EXIT_FAIL;
	}
	ret = output_open(&out, outp, why, whylen);
	seekable = out.path != NULL;
	for (uint64_t off = 0; !ret && off < top->size; off += chunk) {
		struct flat_io f = { .io = { .op = LAYER_READ, .off = off, .buf = buf, .done = flat_done,
					     .aio = &aio, .priv = priv } };
		f.io.len = (uint32_t)(top->size - off < chunk ? top->size - off : chunk);
		layer_submit(top, &f.io);
		if ((ret = aio_drain(&aio)) || (ret = f.res < 0 ? f.res : 0)) {
			WHY("reading offset %llu: %s", (unsigned long long)off, strerror(-ret));
			break;
		}
		/* a file output stays sparse where the device reads zeros */
		if (seekable && all_zero(buf, f.io.len)) {
			if (lseek(out.fd, f.io.len, SEEK_CUR) < 0)
				ret = -errno;
		} else {
			for (size_t done = 0; done < f.io.len && !ret;) {
				ssize_t n = write(out.fd, buf + done, f.io.len - done);
				if (n < 0 && errno != EINTR)
					ret = -errno;
				done += n > 0 ? (size_t)n : 0;
			}
		}
		if (ret)
			WHY("writing: %s", strerror(-ret));
		show_progress(&p, off + f.io.len, top->size);
	}
	if (!ret && seekable && ftruncate(out.fd, (off_t)top->size)) {
		ret = -errno;
		WHY("%s: %s", outp, strerror(errno));
	}
	if (out.fd >= 0) {
		int cret = output_close(&out, !ret, why, whylen);
		if (!ret)
			ret = cret;
	}
	*bytes = top->size;
	io_uring_queue_exit(&ring);
	layer_close(top);
	free(buf);
	free(priv);
	return ret ? EXIT_FAIL : 0;
}
