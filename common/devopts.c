#include "devopts.h"
#include "ctrl.h"
#include "layer.h"
#include "exitcodes.h"
#include "log.h"
#include "parse.h"
#include "state.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

void devopts_defaults(struct server_config *cfg)
{
	memset(cfg, 0, sizeof(*cfg));
	cfg->queues = SERVER_DEFAULT_QUEUES;
	cfg->depth = SERVER_DEFAULT_DEPTH;
	cfg->ready_fd = -1;
	cfg->timeout_ms = CTRL_DEFAULT_TIMEOUT_MS;
	cfg->http_retries = -1;
	cfg->readahead = -1;
	cfg->recover_id = -1;
}

static int bad_value(struct cli *c, const char *opt, const char *arg, const char *want)
{
	c->exit_code = cli_usage_error(c, "--%s '%s': %s", opt, arg, want);
	return CLI_DONE;
}

int devopts_apply(struct cli *c, struct server_config *cfg, int key, const char *arg)
{
	uint64_t v;

	switch (key) {
	case DEVOPT_BASE:
		cfg->base = arg;
		return 1;
	case DEVOPT_CHUNK_SIZE:
		if (parse_size(arg, &v) || v < 65536 || v > (64u << 20) || v % 4096)
			return bad_value(c, "chunk-size", arg, "expected 64K to 64M, a multiple of 4096");
		cfg->chunk_size = v;
		return 1;
	case DEVOPT_CHUNK_CACHE:
		cfg->chunk_cache = arg;
		return 1;
	case DEVOPT_CHUNK_CACHE_LIMIT:
		if (parse_size(arg, &v) || !v)
			return bad_value(c, "chunk-cache-limit", arg, "expected a size");
		cfg->chunk_cache_limit = v;
		return 1;
	case DEVOPT_HTTP_TIMEOUT:
		if (parse_seconds(arg, &v) || !v)
			return bad_value(c, "http-timeout", arg, "expected seconds greater than 0");
		cfg->http_timeout_ms = v;
		return 1;
	case DEVOPT_HTTP_RETRIES:
		if (parse_uint(arg, 0, 20, &v))
			return bad_value(c, "http-retries", arg, "expected 0 to 20");
		cfg->http_retries = (int)v;
		return 1;
	case DEVOPT_AUTH_FILE:
		cfg->auth_file = arg;
		return 1;
	case DEVOPT_READAHEAD:
		if (parse_uint(arg, 0, 64, &v))
			return bad_value(c, "readahead", arg, "expected 0 to 64 chunks");
		cfg->readahead = (int)v;
		return 1;
	case DEVOPT_PREFETCH:
		cfg->prefetch = true;
		return 1;
	case DEVOPT_INSECURE:
		cfg->insecure = true;
		return 1;
	case DEVOPT_LAYER:
		if (cfg->n_layers == SERVER_MAX_LAYERS)
			return bad_value(c, "layer", arg, "at most 32 layers");
		cfg->layers[cfg->n_layers++] = arg;
		return 1;
	case DEVOPT_CACHE:
		cfg->cache = arg;
		return 1;
	case DEVOPT_SIZE:
		if (parse_size(arg, &v) || v == 0 || v % 4096)
			return bad_value(c, "size", arg, "expected a non-zero multiple of 4096 (K, M, G, T suffixes)");
		cfg->size = v;
		return 1;
	case DEVOPT_NAME:
		if (!*arg || strlen(arg) > 64 || strspn(arg, "abcdefghijklmnopqrstuvwxyz"
			"ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-") != strlen(arg) || isdigit((unsigned char)arg[0]))
			return bad_value(c, "name", arg, "expected 1-64 of A-Z a-z 0-9 . _ -, not starting with a digit");
		cfg->name = arg;
		return 1;
	case DEVOPT_INJECT:
		cfg->inject = arg;
		return 1;
	case DEVOPT_QUEUES:
		if (parse_uint(arg, 1, SERVER_MAX_QUEUES, &v))
			return bad_value(c, "queues", arg, "expected 1 to 32");
		cfg->queues = (unsigned)v;
		return 1;
	case DEVOPT_DEPTH:
		if (parse_uint(arg, 1, SERVER_MAX_DEPTH, &v))
			return bad_value(c, "depth", arg, "expected 1 to 1024");
		cfg->depth = (unsigned)v;
		return 1;
	case DEVOPT_READ_ONLY:
		cfg->read_only = true;
		return 1;
	case DEVOPT_NO_RECOVERY:
		cfg->no_recovery = true;
		return 1;
	case DEVOPT_TIMEOUT:
		if (parse_seconds(arg, &v) || v == 0)
			return bad_value(c, "timeout", arg, "expected seconds greater than 0");
		cfg->timeout_ms = v;
		return 1;
	case DEVOPT_VERBOSE:
		log_set_debug(log_debug_level() + 1);
		return 1;
	case DEVOPT_STATE_DIR:
		if (arg[0] != '/')
			return bad_value(c, "state-dir", arg, "expected an absolute path");
		state_set_dir(arg);
		return 1;
	default:
		return 0;
	}
}

int devopts_finish(struct cli *c, struct server_config *cfg)
{
	static char abs_base[PATH_MAX], abs_cache[PATH_MAX];

	if (!cfg->base) {
		c->exit_code = cli_usage_error(c, "--base FILE is required");
		return CLI_DONE;
	}
	/* The server runs detached and its config is reused later: store an
	 * absolute path. A missing file is reported by the image checks. */
	if (!layer_is_url(cfg->base) && realpath(cfg->base, abs_base))
		cfg->base = abs_base;
	for (unsigned i = 0; i < cfg->n_layers; i++) {
		char *abs = layer_is_url(cfg->layers[i]) ? NULL :
			    realpath(cfg->layers[i], NULL);   /* freed at exit */
		if (abs)
			cfg->layers[i] = abs;
	}
	if (cfg->cache && cfg->cache[0] != '/') {
		/* the cache may not exist yet: make its directory absolute */
		char cwd[PATH_MAX];
		if (!getcwd(cwd, sizeof(cwd)) ||
		    snprintf(abs_cache, sizeof(abs_cache), "%s/%s", cwd, cfg->cache) >= (int)sizeof(abs_cache)) {
			c->exit_code = cli_usage_error(c, "--cache '%s': path too long", cfg->cache);
			return CLI_DONE;
		}
		cfg->cache = abs_cache;
	}
	return 0;
}

void devopts_to_argv(const struct server_config *cfg, char **argv, int *argc)
{
	static char num[16][32];
	int n = *argc, k = 0;
#define ARG(s) (argv[n++] = (char *)(s))
#define NUM(opt, fmt, v) (snprintf(num[k], sizeof(num[k]), fmt, v), ARG(opt), ARG(num[k++]))

	ARG("--base"); ARG(cfg->base);
	for (unsigned i = 0; i < cfg->n_layers; i++) {
		ARG("--layer");
		ARG(cfg->layers[i]);
	}
	if (cfg->cache) { ARG("--cache"); ARG(cfg->cache); }
	if (cfg->name) { ARG("--name"); ARG(cfg->name); }
	if (cfg->inject) { ARG("--inject"); ARG(cfg->inject); }
	if (cfg->read_only) ARG("--read-only");
	if (cfg->no_recovery) ARG("--no-recovery");
	NUM("--queues", "%u", cfg->queues);
	NUM("--depth", "%u", cfg->depth);
	NUM("--timeout", "%.3f", cfg->timeout_ms / 1000.0);
	if (cfg->size) NUM("--size", "%llu", (unsigned long long)cfg->size);
	if (cfg->chunk_size) NUM("--chunk-size", "%llu", (unsigned long long)cfg->chunk_size);
	if (cfg->chunk_cache_limit)
		NUM("--chunk-cache-limit", "%llu", (unsigned long long)cfg->chunk_cache_limit);
	if (cfg->http_timeout_ms) NUM("--http-timeout", "%.3f", cfg->http_timeout_ms / 1000.0);
	if (cfg->http_retries >= 0) NUM("--http-retries", "%d", cfg->http_retries);
	if (cfg->chunk_cache) { ARG("--chunk-cache"); ARG(cfg->chunk_cache); }
	if (cfg->auth_file) { ARG("--auth-file"); ARG(cfg->auth_file); }
	if (cfg->insecure) ARG("--insecure");
	if (cfg->prefetch) ARG("--prefetch");
	if (cfg->readahead >= 0) NUM("--readahead", "%d", cfg->readahead);
	ARG("--state-dir"); ARG(state_dir());
#undef ARG
#undef NUM
	argv[n] = NULL;
	*argc = n;
}

int devopts_from_state(uint32_t id, struct server_config *cfg, char *why, size_t len)
{
	static const struct cli_option saved_options[] = {
		DEVICE_OPTIONS,
		{ "timeout", DEVOPT_TIMEOUT, "SEC", NULL },
		STATE_DIR_OPTION,
		{ 0 },
	};
	static const struct cli_tool saved = {
		.name = "ublk-serve", .synopsis = "", .summary = "", .options = saved_options,
	};
	static char config[16384];
	char *argv[DEVOPTS_MAX_ARGS + 2] = { "ublk-serve" };
	struct cli c;
	int key, n;

	n = state_config_all(id, "serve_arg", config, sizeof(config), argv + 1, DEVOPTS_MAX_ARGS);
	if (n <= 0) {
		snprintf(why, len, "ublkb%u: %s", id, n < 0 ?
			 "no state entry: the device's configuration is unknown; delete it with ublk-del" :
			 "the state entry has no serve_arg lines (made by an older version?)");
		return n < 0 ? EXIT_NO_DEVICE : EXIT_FAIL;
	}
	cli_init(&c, &saved);
	optind = 0;   /* restart getopt over the saved arguments */
	while ((key = cli_next(&c, n + 1, argv)) != -1) {
		if (key == CLI_DONE || devopts_apply(&c, cfg, key, optarg) != 1) {
			snprintf(why, len, "ublkb%u: the saved configuration in %s/ublkb%u/config is not "
				 "understood", id, state_dir(), id);
			return EXIT_FAIL;
		}
	}
	if (!cfg->base) {
		snprintf(why, len, "ublkb%u: the saved configuration names no base", id);
		return EXIT_FAIL;
	}
	return 0;
}
