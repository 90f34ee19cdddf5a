#include "devopts.h"
#include "ctrl.h"
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
	if (realpath(cfg->base, abs_base))
		cfg->base = abs_base;
	for (unsigned i = 0; i < cfg->n_layers; i++) {
		char *abs = realpath(cfg->layers[i], NULL);   /* freed at exit */
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
