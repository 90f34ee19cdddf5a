/* A remote base image over HTTP(S) (docs/remote.md), and the remote
 * options every layer that reads URLs shares. */
#ifndef UBLK_LAYER_HTTP_H
#define UBLK_LAYER_HTTP_H

#include "image/http.h"
#include "image/layer.h"

struct access_log;

/* How remote files are read: HTTP, and the chunk cache they go through. */
struct layer_http_opts {
	struct http_opts http;
	const char *cache_dir;      /* chunk cache root, NULL: default */
	uint32_t chunk_size;
	uint64_t cache_limit;
	unsigned readahead;         /* chunks kept fetched ahead of a reader */
	bool prefetch;              /* fetch the whole image in the background */
	bool keep_frames;           /* zstd diffs: decompressed frames into the chunk cache */
	struct access_log *access;  /* notes the images' chunk reads; NULL: none */
};
/* A read-only layer of the file at url; its statistics are the layer's
 * stats (layer_stack_stats). */
int layer_http_open(const char *url, const struct layer_http_opts *o, struct layer **out,
		    char *why, size_t whylen);

#endif
