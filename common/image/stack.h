/* Building a device's layer stack from its configuration: base file, the
 * diffs over it bottom first, the copy-on-write cache, fault injection. */
#ifndef UBLK_STACK_H
#define UBLK_STACK_H

#include "image/layer.h"
#include "image/layer_http.h"

#include <stdbool.h>
#include <stdint.h>

#define STACK_MAX_LAYERS 32

/* What the stack is made of; the server's configuration embeds it. */
struct stack_config {
	const char *base;       /* image file, block device or URL; NULL with e2b_root */
	/* An E2B build as the base (docs/e2b.md): storage root (folder or
	 * URL), build id, artifact (NULL: rootfs.ext4). */
	const char *e2b_root, *e2b_build, *e2b_file;
	const char *cache;      /* copy-on-write cache file, or NULL: writes go to base */
	const char *inject;     /* fault injection spec, or NULL */
	const char *layers[STACK_MAX_LAYERS];   /* diffs over the base, bottom first */
	unsigned n_layers;
	/* remote base (base is an http:// or https:// URL) */
	const char *chunk_cache;        /* NULL: $UBLK_CHUNK_CACHE or the default */
	uint64_t chunk_size;            /* 0: 4 MiB */
	uint64_t chunk_cache_limit;     /* 0: 10 GiB */
	uint64_t http_timeout_ms;       /* 0: 60 s */
	int http_retries;               /* -1: 3 */
	const char *auth_file;
	bool insecure;
	int readahead;                  /* -1: 1 chunk */
	/* zstd diffs and compressed E2B builds keep their frames decompressed
	 * in the chunk cache: a device's stack, which reads them again (a
	 * --flatten reads each once), unless no_frame_cache */
	bool keep_frames;
	bool no_frame_cache;
	bool prefetch;
	/* access traces (docs/access-trace.md) */
	const char *record_access;      /* trace file to write, or NULL */
	uint64_t record_ms, record_bytes;       /* its window; 0: the defaults */
	const char *prefetch_trace;     /* trace file or URL to replay, or NULL */
	int prefetch_connections;       /* -1: ACCESS_PREFETCH_CONNECTIONS */
	const char *trace_label;        /* the recorded trace's label (the device's name) */
	uint64_t size;          /* device size; 0: the base's (or the cache's) */
	bool read_only;
	/* The stack may end inside a block (an E2B build's size need not be
	 * whole blocks): --flatten only, never a device. */
	bool any_size;
};

/* The remote options sc gives (chunk cache, HTTP): 0, or -EINVAL with
 * why set (an unreadable --auth-file). */
int stack_http_opts(const struct stack_config *sc, struct layer_http_opts *ho, char *why,
		    size_t whylen);
/* Returns 0 with *top set, or a tool exit code with why explaining;
 * nothing stays open on failure. */
int stack_open(const struct stack_config *sc, struct layer **top, char *why, size_t whylen);
/* The version of the image top presents, as the state entry's image
 * file holds it (docs/state-dir.md): its size, then its base version
 * (layer_version_text), key=value lines. 0, or -ENOSPC. */
int stack_image_text(const struct layer *top, char *buf, size_t len);
/* 0 unless path (an output: --record-access, a flattened image) is one of
 * the files the stack reads: its base, cache and map, layers, auth file.
 * Then -EINVAL with why naming it (output_file_refuse_input). */
int stack_refuse_output(const struct stack_config *sc, const char *path, char *why,
			size_t whylen);

#endif
