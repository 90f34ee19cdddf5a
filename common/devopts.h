/* Options that describe a device, shared by ublk-add and ublk-serve so
 * both parse them identically. */
#ifndef UBLK_DEVOPTS_H
#define UBLK_DEVOPTS_H

#include "cli.h"
#include "server.h"

enum devopt_key {
	DEVOPT_BASE = 'b',
	DEVOPT_QUEUES = 'q',
	DEVOPT_DEPTH = 'd',
	DEVOPT_READ_ONLY = 'r',
	DEVOPT_TIMEOUT = 't',
	DEVOPT_VERBOSE = 'v',
	DEVOPT_CACHE = 'c',
	DEVOPT_SIZE = 's',
	DEVOPT_INJECT = 0x101,
	DEVOPT_NAME = 'n',
	DEVOPT_LAYER = 'l',
	DEVOPT_CHUNK_SIZE = 0x110,
	DEVOPT_CHUNK_CACHE,
	DEVOPT_CHUNK_CACHE_LIMIT,
	DEVOPT_HTTP_TIMEOUT,
	DEVOPT_HTTP_RETRIES,
	DEVOPT_AUTH_FILE,
	DEVOPT_INSECURE,
	DEVOPT_READAHEAD,
	DEVOPT_PREFETCH,
	DEVOPT_NO_RECOVERY,
	DEVOPT_STATE_DIR = 0x100,
};

/* Option table entries of the device description, shared by ublk-add and
 * ublk-serve (documented in both man pages: --base --layer --cache --size --inject
 * --name --queues --depth --read-only; and --state-dir). */
#define DEVICE_OPTIONS \
	{ "base", 'b', "FILE", "image file or block device to serve (required)" }, \
	{ "layer", 'l', "DIFF", "a diff over the base (repeat, bottom first); read-only" }, \
	{ "cache", 'c', "FILE", "copy-on-write cache (created if missing); the base stays read-only" }, \
	{ "size", 's', "SIZE", "device size (default: the base's); past the base reads zeros" }, \
	{ "inject", DEVOPT_INJECT, "SPEC", "fault injection, e.g. delay-read=3000@0-4K (see docs)" }, \
	{ "name", 'n', "NAME", "a unique name for the device (ublk-del NAME works)" }, \
	{ "queues", 'q', "N", "number of queues, one thread each (default 1)" }, \
	{ "depth", 'd', "N", "requests in flight per queue (default 128)" }, \
	{ "read-only", 'r', NULL, "serve the image read-only" }, \
	{ "no-recovery", DEVOPT_NO_RECOVERY, NULL, "fail IO when the server dies instead of waiting for recovery" }, \
	{ "chunk-size", DEVOPT_CHUNK_SIZE, "SIZE", "remote base: bytes per fetch (default 4M)" }, \
	{ "chunk-cache", DEVOPT_CHUNK_CACHE, "DIR", "remote base: shared chunk cache (default /var/cache/ublk-tools/chunks)" }, \
	{ "chunk-cache-limit", DEVOPT_CHUNK_CACHE_LIMIT, "SIZE", "remote base: evict past this size (default 10G)" }, \
	{ "http-timeout", DEVOPT_HTTP_TIMEOUT, "SEC", "remote base: deadline per transfer (default 60)" }, \
	{ "http-retries", DEVOPT_HTTP_RETRIES, "N", "remote base: retries after a failed transfer (default 3)" }, \
	{ "auth-file", DEVOPT_AUTH_FILE, "FILE", "remote base: file holding a bearer token or header line" }, \
	{ "insecure", DEVOPT_INSECURE, NULL, "remote base: do not verify TLS certificates" }, \
	{ "readahead", DEVOPT_READAHEAD, "N", "remote base: chunks fetched after a missed one (default 1)" }, \
	{ "prefetch", DEVOPT_PREFETCH, NULL, "remote base: fetch the whole image in the background" }

#define STATE_DIR_OPTION \
	{ "state-dir", DEVOPT_STATE_DIR, "DIR", "state directory (default $UBLK_STATE_DIR or /run/ublk-tools)" }

void devopts_defaults(struct server_config *cfg);
/* Apply option key; returns 1 if it was a device option, 0 if not, or
 * CLI_DONE with c->exit_code set on a bad value. */
int devopts_apply(struct cli *c, struct server_config *cfg, int key, const char *arg);
/* The options of cfg as ublk-serve arguments, appended to argv at *argc
 * (room for DEVOPTS_MAX_ARGS). Strings point into cfg or static storage. */
#define DEVOPTS_MAX_ARGS (40 + 2 * SERVER_MAX_LAYERS)
void devopts_to_argv(const struct server_config *cfg, char **argv, int *argc);

/* The device options a device's server was started with (the serve_arg
 * lines of its state entry), for attaching a new server. 0, or an exit
 * code with why set. Strings stay valid for the life of the process. */
int devopts_from_state(uint32_t id, struct server_config *cfg, char *why, size_t len);

/* Check required options after parsing; 0 or CLI_DONE. Makes base absolute. */
int devopts_finish(struct cli *c, struct server_config *cfg);

#endif
