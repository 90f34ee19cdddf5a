/* Options that describe a device, shared by ublk-add and ublk-serve so
 * both parse them identically. */
#ifndef UBLK_DEVOPTS_H
#define UBLK_DEVOPTS_H

#include "util/cli.h"
#include "image/http.h"
#include "server.h"
#include "host/state.h"

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
	DEVOPT_E2B = 0x120,
	DEVOPT_BUILD,
	DEVOPT_E2B_FILE,
	DEVOPT_STATE_DIR = 0x100,
};

/* Option table entries of the device description, shared by ublk-add and
 * ublk-serve (documented in both man pages: --base --layer --cache --size --inject
 * --name --queues --depth --read-only; and --state-dir). */
#define DEVICE_OPTIONS \
	{ "base", 'b', "FILE", "image file or block device to serve (or --e2b)" }, \
	{ "e2b", DEVOPT_E2B, "ROOT", "serve an E2B build from this storage folder or URL (instead of --base)" }, \
	{ "build", DEVOPT_BUILD, "ID", "with --e2b: the build id (8-4-4-4-12 hex)" }, \
	{ "e2b-file", DEVOPT_E2B_FILE, "NAME", "with --e2b: rootfs.ext4 (default) or memfile" }, \
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

/* Limits of option values (docs/security.md). */
#define DEVOPTS_MAX_TIMEOUT_S 86400          /* --timeout: 1 day */
#define DEVOPTS_MAX_HTTP_TIMEOUT_S 3600      /* --http-timeout */
#define DEVOPTS_MAX_HTTP_RETRIES HTTP_MAX_RETRIES   /* --http-retries */
#define DEVOPTS_MAX_TEXT HTTP_MAX_URL_LEN     /* bytes of a path, URL, name or spec */
#define DEVOPTS_SECRETS_MAX (256 * 1024)     /* bytes of credentials (devopts_secrets) */
#define DEVOPTS_CONFIG_MAX STATE_CONFIG_MAX  /* bytes of a state entry's config */

void devopts_defaults(struct server_config *cfg);
/* The options of every tool, device or not: --timeout (into *timeout_ms,
 * CTRL_DEFAULT_TIMEOUT_MS unless given), -v, --state-dir. 1 if key was one
 * of them, 0 if not, CLI_DONE after a bad value (c->exit_code set). */
int devopts_common(struct cli *c, int key, const char *arg, uint64_t *timeout_ms);
/* Apply option key; returns 1 if it was a device option, 0 if not, or
 * CLI_DONE with c->exit_code set on a bad value. */
int devopts_apply(struct cli *c, struct server_config *cfg, int key, const char *arg);
/* The options of cfg as ublk-serve arguments, appended to argv at *argc
 * (room for DEVOPTS_MAX_ARGS), URLs redacted (devopts_redacted). Strings
 * point into cfg or static storage, valid until the next call. */
#define DEVOPTS_MAX_ARGS (44 + 2 * STACK_MAX_LAYERS)
void devopts_to_argv(const struct server_config *cfg, char **argv, int *argc);

/* The device options a device's server was started with (the serve_arg
 * lines of its state entry, and its secret file), for attaching a new
 * server. A malformed config is refused. 0, or an exit code with why set.
 * Strings stay valid for the life of the process. */
int devopts_from_state(uint32_t id, struct server_config *cfg, char *why, size_t len);

/* Credentials never travel in argv, the state entry's config or messages
 * (docs/security.md). devopts_to_argv and the config carry URLs without
 * user:password@ and query; what they lack travels apart, as text in the
 * config encoding (common/util/cfgline.h):
 *   base=URL        the full --base URL, if it has credentials
 *   e2b=URL         the full --e2b URL, likewise
 *   layer.N=URL     the full URL of the Nth --layer (from 0), likewise
 *   auth=VALUE      $UBLK_HTTP_AUTH (not with --auth-file, read again)
 * ublk-add hands it to ublk-serve on an inherited fd (--secrets-fd), the
 * server keeps it in its entry's "secret" file (mode 0600) for recovery. */

/* The secrets of cfg into buf: bytes written (0: none), or -errno. */
int devopts_secrets(const struct server_config *cfg, char *buf, size_t len);
/* Apply secrets text (len bytes, modified) to cfg, after its options: a
 * URL must match the redacted one of the options; auth is set as
 * $UBLK_HTTP_AUTH. 0, or an exit code with why set. */
int devopts_apply_secrets(struct server_config *cfg, char *text, size_t len, char *why, size_t whylen);
/* Read secrets from fd (to its end) and apply them. 0 or an exit code. */
int devopts_read_secrets_fd(int fd, struct server_config *cfg, char *why, size_t whylen);
/* v as it may be shown: a URL without user:password@ and query string;
 * else a copy of v ("" for NULL). malloc'ed; NULL when out of memory. */
char *devopts_redacted(const char *v);
/* Why name is no valid --name (a static message), or NULL if it is. */
const char *devopts_name_problem(const char *name);

/* Check required options after parsing (--base, or --e2b with --build);
 * 0 or CLI_DONE. Makes base and a local e2b root absolute. */
int devopts_finish(struct cli *c, struct server_config *cfg);

#endif
