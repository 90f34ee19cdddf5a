/* Options that describe a device, shared by ublk-add and ublk-serve so
 * both parse them identically. */
#ifndef UBLK_DEVOPTS_H
#define UBLK_DEVOPTS_H

#include "util/cli.h"
#include "util/ublk_limits.h"
#include "image/access_log.h"
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
	DEVOPT_RECORD_ACCESS,
	DEVOPT_RECORD_FOR,
	DEVOPT_RECORD_LIMIT,
	DEVOPT_PREFETCH_TRACE,
	DEVOPT_PREFETCH_CONNECTIONS,   /* 0x11f: the last before DEVOPT_E2B */
	DEVOPT_E2B = 0x120,
	DEVOPT_BUILD,
	DEVOPT_E2B_FILE,
	DEVOPT_ID,
	DEVOPT_CGROUP,
	DEVOPT_NO_FRAME_CACHE,
	DEVOPT_STATE_DIR = 0x100,
	DEVOPT_SECRETS_FD = 0x102,     /* (0x101 is --inject) */
};

/* The device options, one line each: how ublk-add and ublk-serve parse
 * them (devopts_apply), how a state entry keeps them (devopts_each), and
 * their --help. A new option of a layer is a line here, the field in its
 * stack_config (or server_config), the layer, and the man pages
 * (ublk-add(8), ublk-serve(8)).
 *   X(name, key, arg, type, field of server_config, low, high, what a bad value lacks, help)
 * Numbers are checked against [low, high]; DEVOPT_T_SIZE_4K values are
 * multiples of 4096 too. */
#define DEVICE_OPTION_LIST(X) \
	X("base", DEVOPT_BASE, "FILE", DEVOPT_T_URL, stack.base, 0, 0, NULL, \
	  "image file, block device or http(s) URL to serve (or --e2b)") \
	X("e2b", DEVOPT_E2B, "ROOT", DEVOPT_T_URL, stack.e2b_root, 0, 0, NULL, \
	  "serve an E2B build from this storage folder or URL (instead of --base)") \
	X("build", DEVOPT_BUILD, "ID", DEVOPT_T_BUILD_ID, stack.e2b_build, 0, 0, \
	  "expected a build id as E2B prints it: 8-4-4-4-12 lowercase hex digits, not all zeros", \
	  "with --e2b: the build id (8-4-4-4-12 hex)") \
	X("e2b-file", DEVOPT_E2B_FILE, "NAME", DEVOPT_T_E2B_NAME, stack.e2b_file, 0, 0, \
	  "expected rootfs.ext4 or memfile", "with --e2b: rootfs.ext4 (default) or memfile") \
	X("layer", DEVOPT_LAYER, "DIFF", DEVOPT_T_LAYERS, stack.layers, 0, STACK_MAX_LAYERS, \
	  "at most 32 layers", "a diff over the base (repeat, bottom first); read-only") \
	X("cache", DEVOPT_CACHE, "FILE", DEVOPT_T_TEXT, stack.cache, 0, 0, NULL, \
	  "copy-on-write cache (created if missing); the base stays read-only") \
	X("size", DEVOPT_SIZE, "SIZE", DEVOPT_T_SIZE_4K, stack.size, 4096, UBLK_MAX_IMAGE_SIZE, \
	  "expected a non-zero multiple of 4096 (K, M, G, T suffixes), at most 16T", \
	  "device size (default: the base's); past the base reads zeros") \
	X("inject", DEVOPT_INJECT, "SPEC", DEVOPT_T_TEXT, stack.inject, 0, 0, NULL, \
	  "fault injection, e.g. delay-read=3000@0-4K (see docs)") \
	X("name", DEVOPT_NAME, "NAME", DEVOPT_T_DEVICE_NAME, name, 0, 0, NULL, \
	  "a unique name for the device (ublk-del NAME works)") \
	X("id", DEVOPT_ID, "N", DEVOPT_T_INT, want_id, 0, UBLK_MAX_DEV_ID, "expected 0 to 1048575", \
	  "the device's id, /dev/ublkbN (default: the first free one)") \
	X("queues", DEVOPT_QUEUES, "N", DEVOPT_T_UNSIGNED, queues, 1, SERVER_MAX_QUEUES, "expected 1 to 32", \
	  "number of queues, one thread each (default 1)") \
	X("depth", DEVOPT_DEPTH, "N", DEVOPT_T_UNSIGNED, depth, 1, SERVER_MAX_DEPTH, "expected 1 to 1024", \
	  "requests in flight per queue (default 128)") \
	X("read-only", DEVOPT_READ_ONLY, NULL, DEVOPT_T_FLAG, stack.read_only, 0, 0, NULL, \
	  "serve the image read-only") \
	X("no-recovery", DEVOPT_NO_RECOVERY, NULL, DEVOPT_T_FLAG, no_recovery, 0, 0, NULL, \
	  "fail IO when the server dies instead of waiting for recovery") \
	X("cgroup", DEVOPT_CGROUP, "DIR", DEVOPT_T_TEXT, cgroup, 0, 0, NULL, \
	  "run the server in this cgroup (v2) folder, not in the caller group") \
	X("chunk-size", DEVOPT_CHUNK_SIZE, "SIZE", DEVOPT_T_SIZE_4K, stack.chunk_size, 65536, 64u << 20, \
	  "expected 64K to 64M, a multiple of 4096", "remote base: bytes per fetch (default 4M)") \
	X("chunk-cache", DEVOPT_CHUNK_CACHE, "DIR", DEVOPT_T_TEXT, stack.chunk_cache, 0, 0, NULL, \
	  "shared chunk cache of remote images and decompressed frames (default /var/cache/ublk-tools/chunks)") \
	X("chunk-cache-limit", DEVOPT_CHUNK_CACHE_LIMIT, "SIZE", DEVOPT_T_SIZE, stack.chunk_cache_limit, 1, \
	  UINT64_MAX, "expected a size of at least 1 byte, and 16 chunks (say 10G)", \
	  "chunk cache: evict past this size (default 10G)") \
	X("no-frame-cache", DEVOPT_NO_FRAME_CACHE, NULL, DEVOPT_T_FLAG, stack.no_frame_cache, 0, 0, NULL, \
	  "keep no decompressed frames of zstd diffs or E2B builds in the chunk cache") \
	X("http-timeout", DEVOPT_HTTP_TIMEOUT, "SEC", DEVOPT_T_SECONDS, stack.http_timeout_ms, 0, \
	  DEVOPTS_MAX_HTTP_TIMEOUT_S, "expected seconds, more than 0 and at most 3600", \
	  "remote base: deadline per transfer (default 60)") \
	X("http-retries", DEVOPT_HTTP_RETRIES, "N", DEVOPT_T_INT, stack.http_retries, 0, \
	  DEVOPTS_MAX_HTTP_RETRIES, "expected 0 to 10", \
	  "remote base: retries after a failed transfer (default 3)") \
	X("auth-file", DEVOPT_AUTH_FILE, "FILE", DEVOPT_T_TEXT, stack.auth_file, 0, 0, NULL, \
	  "remote base: file holding a bearer token or header line") \
	X("insecure", DEVOPT_INSECURE, NULL, DEVOPT_T_FLAG, stack.insecure, 0, 0, NULL, \
	  "remote base: do not verify TLS certificates") \
	X("readahead", DEVOPT_READAHEAD, "N", DEVOPT_T_INT, stack.readahead, 0, 64, "expected 0 to 64 chunks", \
	  "remote base: chunks fetched ahead of a sequential reader (default 1)") \
	X("prefetch", DEVOPT_PREFETCH, NULL, DEVOPT_T_FLAG, stack.prefetch, 0, 0, NULL, \
	  "remote base: fetch the whole image in the background") \
	X("record-access", DEVOPT_RECORD_ACCESS, "FILE", DEVOPT_T_TEXT, stack.record_access, 0, 0, NULL, \
	  "remote images: write the chunks this start reads first to FILE (a trace)") \
	X("record-for", DEVOPT_RECORD_FOR, "SEC", DEVOPT_T_SECONDS, stack.record_ms, 0, \
	  DEVOPTS_MAX_RECORD_S, "expected seconds, more than 0 and at most 86400", \
	  "with --record-access: record the first SEC seconds (default 60)") \
	X("record-limit", DEVOPT_RECORD_LIMIT, "SIZE", DEVOPT_T_SIZE, stack.record_bytes, 1, \
	  UBLK_MAX_IMAGE_SIZE, "expected a size, at most 16T", \
	  "with --record-access: stop after chunks of SIZE were read (default 1G)") \
	X("prefetch-trace", DEVOPT_PREFETCH_TRACE, "TRACE", DEVOPT_T_URL, stack.prefetch_trace, 0, 0, \
	  NULL, "remote images: fetch the chunks of this trace (file or URL) ahead of the reads") \
	X("prefetch-connections", DEVOPT_PREFETCH_CONNECTIONS, "N", DEVOPT_T_INT, stack.prefetch_connections, \
	  1, ACCESS_PREFETCH_MAX_CONNECTIONS, "expected 1 to 32", \
	  "with --prefetch-trace: connections the prefetch uses (default 8)")

/* How a device option's value is checked, kept and shown. */
enum devopt_type {
	DEVOPT_T_TEXT,            /* a path or spec (const char *) */
	DEVOPT_T_URL,             /* a path or URL, redacted when shown */
	DEVOPT_T_LAYERS,          /* repeated: layers[], n_layers */
	DEVOPT_T_DEVICE_NAME,     /* devopts_name_problem */
	DEVOPT_T_BUILD_ID,        /* e2b_parse_build_id */
	DEVOPT_T_E2B_NAME,        /* e2b_file_name_ok */
	DEVOPT_T_FLAG,            /* bool */
	DEVOPT_T_UNSIGNED,        /* unsigned */
	DEVOPT_T_INT,             /* int, -1 when not given */
	DEVOPT_T_SIZE,          /* uint64_t bytes, K M G T suffixes; 0 when not given */
	DEVOPT_T_SIZE_4K,         /* the same, a multiple of 4096 */
	DEVOPT_T_SECONDS,         /* uint64_t milliseconds from seconds; 0 when not given */
};

#define DEVOPT_AS_CLI(name, key, arg, type, field, lo, hi, want, help) \
	{ name, key, arg, help, type == DEVOPT_T_LAYERS },
/* Option table entries of the device description, shared by ublk-add and
 * ublk-serve. */
#define DEVICE_OPTIONS DEVICE_OPTION_LIST(DEVOPT_AS_CLI)

#define STATE_DIR_OPTION \
	{ "state-dir", DEVOPT_STATE_DIR, "DIR", "state directory (default $UBLK_STATE_DIR or /run/ublk-tools)" }

/* Credentials off the command line: the URL there without them, the
 * whole URL (base=URL, layer.N=URL, ...) and $UBLK_HTTP_AUTH on FD. */
#define SECRETS_FD_OPTION \
	{ "secrets-fd", DEVOPT_SECRETS_FD, "FD", "read the credentials of URLs and $UBLK_HTTP_AUTH from FD " \
	  "(base=URL lines; on the command line the URL without them)" }

/* Limits of option values (docs/security.md). */
#define DEVOPTS_MAX_TIMEOUT_S 86400          /* --timeout: 1 day */
#define DEVOPTS_MAX_HTTP_TIMEOUT_S 3600      /* --http-timeout */
#define DEVOPTS_MAX_RECORD_S 86400           /* --record-for */
#define DEVOPTS_MAX_HTTP_RETRIES HTTP_MAX_RETRIES   /* --http-retries */
#define DEVOPTS_MAX_TEXT HTTP_MAX_URL_LEN     /* bytes of a path, URL, name or spec */
#define DEVOPTS_SECRETS_MAX (256 * 1024)     /* bytes of credentials (devopts_secrets) */
#define DEVOPTS_CONFIG_MAX STATE_CONFIG_MAX  /* bytes of a state entry's config */

void devopts_defaults(struct server_config *cfg);
/* The options of every tool, device or not: --timeout (into *timeout_ms,
 * CTRL_DEFAULT_TIMEOUT_MS unless given), -v, --state-dir. 1 if key was one
 * of them, 0 if not, CLI_DONE after a bad value (c->exit_code set). */
int devopts_common(struct cli *c, int key, const char *arg, uint64_t *timeout_ms);
/* After the options: a UBLK_STATE_DIR that --state-dir does not replace
 * must be usable. 0, or CLI_DONE with c->exit_code set (usage). */
int devopts_check_state_env(struct cli *c);
/* Apply option key; returns 1 if it was a device option, 0 if not, or
 * CLI_DONE with c->exit_code set on a bad value. */
int devopts_apply(struct cli *c, struct server_config *cfg, int key, const char *arg);
/* Each option cfg holds, in a fixed order, as (long name, value): value
 * NULL for a flag, URLs redacted (devopts_redacted). Values stay valid
 * until the next call. Stops at and returns fn's first non-zero answer. */
typedef int (*devopts_visit)(const char *name, const char *value, void *arg);
int devopts_each(const struct server_config *cfg, devopts_visit fn, void *arg);
/* The options of cfg as ublk-serve arguments (devopts_each, and
 * --state-dir), appended to argv at *argc (room for DEVOPTS_MAX_ARGS).
 * Valid until the next call. */
#define DEVOPT_AS_ARG_PAIR(name, key, arg, type, field, lo, hi, want, help) +2
/* a name and a value per option (--layer counted apart), --timeout, --state-dir */
#define DEVOPTS_MAX_ARGS (2 * STACK_MAX_LAYERS + 4 DEVICE_OPTION_LIST(DEVOPT_AS_ARG_PAIR))
void devopts_to_argv(const struct server_config *cfg, char **argv, int *argc);

/* Credentials never travel in argv, the state entry's config or messages
 * (docs/security.md). devopts_to_argv and the config carry URLs without
 * user:password@ and query; what they lack travels apart, as text in the
 * config encoding (common/util/cfgline.h):
 *   base=URL        the full --base URL, if it has credentials
 *   e2b=URL         the full --e2b URL, likewise
 *   layer.N=URL     the full URL of the Nth --layer (from 0), likewise
 *   prefetch_trace=URL  the full --prefetch-trace URL, likewise
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
/* The value of a descriptor option (--secrets-fd, --ready-fd): an open
 * fd from 3 to 1024 into *fd (close-on-exec from then), 1; or CLI_DONE,
 * the usage error said. */
int devopts_fd_arg(struct cli *c, const char *opt, const char *arg, int *fd);
/* For a tool that takes the URLs (not ublk-serve, which says its error to
 * its caller too): the secrets of fd (if >= 0) applied to cfg, and fd
 * closed, before devopts_finish checks them. 0, or CLI_DONE with the
 * error said and c->exit_code set. */
int devopts_take_secrets(struct cli *c, int fd, struct server_config *cfg);
/* v as it may be shown: a URL without user:password@ and query string;
 * else a copy of v ("" for NULL). malloc'ed; NULL when out of memory. */
char *devopts_redacted(const char *v);
/* Why name is no valid --name (a static message), or NULL if it is. */
const char *devopts_name_problem(const char *name);

/* 0, or CLI_DONE (a usage error, the URL shown without its credentials)
 * when path, the value of an option that names a local file, is a URL. */
int devopts_refuse_url(struct cli *c, const char *opt, const char *path);

/* Check required options after parsing (--base, or --e2b with --build);
 * 0 or CLI_DONE. Makes base and a local e2b root absolute. */
int devopts_finish(struct cli *c, struct server_config *cfg);

#endif
