/* Exporting what a device changed as a diff, and flattening a stack into a
 * plain image. */
#ifndef UBLK_EXPORT_H
#define UBLK_EXPORT_H

#include "image/diff.h"
#include "image/e2b_header.h"
#include "server.h"

#include <limits.h>
#include <stdbool.h>
#include <stdint.h>

struct layer_http_opts;

struct export_opts {
	const char *out;        /* file, or NULL / "-" for stdout */
	bool zstd;
	int level;              /* zstd's, 1-19 (diff or E2B frames); 0: 3 */
	uint32_t frame_size;
	bool keep;              /* keep the cache after a successful export */
	uint64_t timeout_ms;    /* for the device to be released and stopped */
	bool progress;          /* progress line on stderr */
	bool live;              /* the server keeps running; see export_live */
	bool v3;                /* write the v3 interop pair: out and out.header */
	/* --format e2b: write the next E2B build of the parent build into the
	 * storage root out (NULL: the parent's root when local) as
	 * out/{build_id}/{e2b_file}[.zstd|.lz4] and its .header (docs/e2b.md,
	 * Writing a build). The parent: e2b_root + e2b_build (+ e2b_file), or
	 * for a device, when NULL, its state entry's. */
	bool e2b;
	const char *e2b_root, *e2b_build, *e2b_file;
	const struct layer_http_opts *remote;   /* for a URL root; NULL: defaults */
	const char *build_id;   /* the new build's id; NULL: a random v4 UUID */
	unsigned header_version;        /* 1-5; 0: the parent's (4 compressing a V1-V3 one) */
	enum e2b_codec codec;   /* E2B frames; frame_size 0: 2 MiB */
	/* Called once the diff is written, before it gets its name; an exit
	 * code other than 0 discards it (why set). */
	int (*before_commit)(void *ctx, char *why, size_t whylen);
	void *commit_ctx;
};

struct export_result {
	struct diff_meta meta;
	struct diff_write_result written;
	uint64_t ms;
	bool cache_removed;
	bool unchanged_v3;      /* refused: --format v3 cannot say "nothing changed" */
	struct {                /* --format e2b */
		uint8_t build_id[16], parent[16], base[16];
		uint64_t generation, data_bytes, compressed_bytes, frames;
		unsigned header_version;        /* the layout written */
		enum e2b_codec codec;
		uint32_t frame_size;
		char path[PATH_MAX];            /* the header: its appearance is the commit */
		char data_path[PATH_MAX];
	} e2b;
};

/* Export a stopped device's cache. Returns a tool exit code. */
int export_cache(const char *cache, const struct export_opts *o, struct export_result *r,
		 char *why, size_t whylen);
/* Wait (up to the timeout) until nothing holds device id, stop and delete
 * it, export its cache, and remove the cache unless o->keep. If the device
 * is still held at the deadline nothing is changed (exit 8). If the export
 * fails after the device was stopped the cache is kept, so no data is
 * lost, and why says where it is. */
int export_device(uint32_t id, const struct export_opts *o, struct export_result *r,
		  char *why, size_t whylen);
/* Export a point-in-time diff of a running device: its server holds
 * writes (at most o->timeout_ms) and makes the cache durable, the cache is
 * exported, writes resume. The device and its cache stay. */
int export_live(uint32_t id, const struct export_opts *o, struct export_result *r,
		char *why, size_t whylen);
/* Write the whole device that cfg describes (base, layers, cache) as a
 * plain image to out (NULL or "-": stdout). Returns a tool exit code. */
int export_flatten(const struct server_config *cfg, const char *out, bool progress,
		   uint64_t *bytes, char *why, size_t whylen);
/* Check every frame's checksum. 0; -EIO with *frame the first damaged
 * frame and *damage what is wrong with it; or -errno with *frame the
 * frame that could not be read (*damage NULL). */
int diff_verify(const struct diff_file *d, uint64_t *frame, const char **damage);

#endif
