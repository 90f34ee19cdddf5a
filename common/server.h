/* The server of one device: creates it, runs its queues, and deletes it
 * when stopped (signal, or STOP_DEV from ublk-del). */
#ifndef UBLK_SERVER_H
#define UBLK_SERVER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SERVER_DEFAULT_QUEUES 1
#define SERVER_DEFAULT_DEPTH 128
#define SERVER_MAX_QUEUES 32
#define SERVER_MAX_DEPTH 1024
#define SERVER_IO_BUF_BYTES (512u * 1024)
#define SERVER_MAX_LAYERS 32

struct server_config {
	const char *base;       /* image file, block device or URL; NULL with e2b_root */
	/* An E2B build as the base (docs/e2b.md): storage root (folder or
	 * URL), build id, artifact (NULL: rootfs.ext4). */
	const char *e2b_root, *e2b_build, *e2b_file;
	const char *cache;      /* copy-on-write cache file, or NULL: writes go to base */
	const char *inject;     /* fault injection spec, or NULL */
	const char *name;       /* operator's name for the device, unique; or NULL */
	const char *layers[SERVER_MAX_LAYERS];  /* diffs over the base, bottom first */
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
	bool prefetch;
	uint64_t size;          /* device size; 0: the base's (or the cache's) */
	unsigned queues;
	unsigned depth;
	bool read_only;
	bool no_recovery;       /* IO fails at once when the server dies */
	int recover_id;         /* attach to this device whose server died; -1: create one */
	int ready_fd;           /* readiness channel (ready.h); -1: print the device on stdout */
	uint64_t timeout_ms;    /* deadline of each control step */
	/* The stack may end inside a block (an E2B build's size need not be
	 * whole blocks): --flatten only, never a device. */
	bool any_size;
};

/* Checks that need no device: ublk in the kernel, root, image usable.
 * Returns 0 or an exit code with why explaining. */
int server_preflight(const struct server_config *cfg, char *why, size_t len);

/* Runs until the device is stopped. Returns a tool exit code. */
int server_run(const struct server_config *cfg);

#endif
