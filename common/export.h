/* Exporting what a device changed as a diff, and flattening a stack into a
 * plain image. */
#ifndef UBLK_EXPORT_H
#define UBLK_EXPORT_H

#include "diff.h"
#include "server.h"

#include <stdbool.h>
#include <stdint.h>

struct export_opts {
	const char *out;        /* file, or NULL / "-" for stdout */
	bool zstd;
	uint32_t frame_size;
	bool keep;              /* keep the cache after a successful export */
	uint64_t timeout_ms;    /* for the device to be released and stopped */
	bool progress;          /* progress line on stderr */
	bool live;              /* the server keeps running; see export_live */
	bool v3;                /* write the v3 interop pair: out and out.header */
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
/* Check every frame's checksum. 0, or -EIO with *bad the first bad frame. */
int diff_verify(const struct diff_file *d, uint64_t *bad);

#endif
