#include "devopts.h"
#include "util/cfgline.h"
#include "kernel/ctrl.h"
#include "image/e2b_store.h"
#include "image/http.h"
#include "image/layer.h"
#include "util/ublk_limits.h"
#include "util/exitcodes.h"
#include "util/log.h"
#include "util/parse.h"
#include "host/state.h"
#include "image/layer_http.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

void devopts_defaults(struct server_config *cfg)
{
	memset(cfg, 0, sizeof(*cfg));
	cfg->queues = SERVER_DEFAULT_QUEUES;
	cfg->depth = SERVER_DEFAULT_DEPTH;
	cfg->ready_fd = -1;
	cfg->timeout_ms = CTRL_DEFAULT_TIMEOUT_MS;
	cfg->stack.http_retries = -1;
	cfg->stack.readahead = -1;
	cfg->recover_id = -1;
}

static int bad_value(struct cli *c, const char *opt, const char *arg, const char *want)
{
	char *shown = devopts_redacted(arg);

	c->exit_code = cli_usage_error(c, "--%s '%s': %s", opt, shown ? shown : "?", want);
	free(shown);
	return CLI_DONE;
}

char *devopts_redacted(const char *v)
{
	if (!v)
		return strdup("");
	size_t len = strlen(v) + 20;   /* room for "?..." or "(unparsable URL)" */
	char *buf = malloc(len);

	if (buf)
		http_name_for_log(v, buf, len);
	return buf;
}

/* Paths, names, URLs and specs end up as lines of the state entry's
 * config: a control character there would forge a line (a newline in a
 * --cache path once made recovery serve another base), and in a message
 * it would forge a log line. Refused, not escaped: no sane name has one. */
static int check_text(struct cli *c, const char *opt, const char *arg)
{
	size_t at;

	if (cfgline_has_control(arg, &at)) {
		c->exit_code = cli_usage_error(c, "--%s: a control character (byte 0x%02x at offset %zu) "
					       "is not allowed in paths, names, URLs or specs", opt,
					       (unsigned char)arg[at], at);
		return CLI_DONE;
	}
	if (strlen(arg) > DEVOPTS_MAX_TEXT) {
		c->exit_code = cli_usage_error(c, "--%s: longer than %d bytes", opt, DEVOPTS_MAX_TEXT);
		return CLI_DONE;
	}
	return 0;
}

const char *devopts_name_problem(const char *name)
{
	uint32_t id;
	size_t n = strlen(name);

	if (!n || n > 64 || strspn(name, "abcdefghijklmnopqrstuvwxyz"
		"ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-") != n || !isalpha((unsigned char)name[0]))
		return "expected 1-64 of A-Z a-z 0-9 . _ -, starting with a letter";
	/* ublk-del and --recover take a device id before a name */
	if (!parse_dev_id(name, &id))
		return "it reads as a device (ublk-del would act on that device): choose another name";
	return NULL;
}

/* The long name of an option whose value is a path, name, URL or spec. */
static const char *text_option(int key)
{
	switch (key) {
	case DEVOPT_BASE: return "base";
	case DEVOPT_E2B: return "e2b";
	case DEVOPT_LAYER: return "layer";
	case DEVOPT_CACHE: return "cache";
	case DEVOPT_NAME: return "name";
	case DEVOPT_INJECT: return "inject";
	case DEVOPT_CHUNK_CACHE: return "chunk-cache";
	case DEVOPT_AUTH_FILE: return "auth-file";
	case DEVOPT_STATE_DIR: return "state-dir";
	default: return NULL;
	}
}

/* Seconds in (0, max_s]. */
static int seconds_in(const char *arg, uint64_t max_s, uint64_t *ms)
{
	return parse_seconds(arg, ms) || !*ms || *ms > max_s * 1000 ? -EINVAL : 0;
}

int devopts_apply(struct cli *c, struct server_config *cfg, int key, const char *arg)
{
	const char *text_opt = text_option(key);
	uint64_t v;
	int common = devopts_common(c, key, arg, &cfg->timeout_ms);

	if (common)
		return common;
	if (text_opt && arg && check_text(c, text_opt, arg))
		return CLI_DONE;
	switch (key) {
	case DEVOPT_BASE:
		cfg->stack.base = arg;
		return 1;
	case DEVOPT_E2B:
		cfg->stack.e2b_root = arg;
		return 1;
	case DEVOPT_BUILD:
		if (!e2b_parse_build_id(arg, NULL))
			return bad_value(c, "build", arg, "expected a build id as E2B prints it: "
					 "8-4-4-4-12 lowercase hex digits");
		cfg->stack.e2b_build = arg;
		return 1;
	case DEVOPT_E2B_FILE:
		if (!e2b_file_name_ok(arg))
			return bad_value(c, "e2b-file", arg, "expected rootfs.ext4 or memfile");
		cfg->stack.e2b_file = arg;
		return 1;
	case DEVOPT_CHUNK_SIZE:
		if (parse_size(arg, &v) || v < 65536 || v > (64u << 20) || v % 4096)
			return bad_value(c, "chunk-size", arg, "expected 64K to 64M, a multiple of 4096");
		cfg->stack.chunk_size = v;
		return 1;
	case DEVOPT_CHUNK_CACHE:
		cfg->stack.chunk_cache = arg;
		return 1;
	case DEVOPT_CHUNK_CACHE_LIMIT:
		if (parse_size(arg, &v) || !v)
			return bad_value(c, "chunk-cache-limit", arg, "expected a size");
		cfg->stack.chunk_cache_limit = v;
		return 1;
	case DEVOPT_HTTP_TIMEOUT:
		if (seconds_in(arg, DEVOPTS_MAX_HTTP_TIMEOUT_S, &v))
			return bad_value(c, "http-timeout", arg, "expected seconds, more than 0 and at most 3600");
		cfg->stack.http_timeout_ms = v;
		return 1;
	case DEVOPT_HTTP_RETRIES:
		if (parse_uint(arg, 0, DEVOPTS_MAX_HTTP_RETRIES, &v))
			return bad_value(c, "http-retries", arg, "expected 0 to 10");
		cfg->stack.http_retries = (int)v;
		return 1;
	case DEVOPT_AUTH_FILE:
		cfg->stack.auth_file = arg;
		return 1;
	case DEVOPT_READAHEAD:
		if (parse_uint(arg, 0, 64, &v))
			return bad_value(c, "readahead", arg, "expected 0 to 64 chunks");
		cfg->stack.readahead = (int)v;
		return 1;
	case DEVOPT_PREFETCH:
		cfg->stack.prefetch = true;
		return 1;
	case DEVOPT_INSECURE:
		cfg->stack.insecure = true;
		return 1;
	case DEVOPT_LAYER:
		if (cfg->stack.n_layers == STACK_MAX_LAYERS)
			return bad_value(c, "layer", arg, "at most 32 layers");
		cfg->stack.layers[cfg->stack.n_layers++] = arg;
		return 1;
	case DEVOPT_CACHE:
		cfg->stack.cache = arg;
		return 1;
	case DEVOPT_SIZE:
		if (parse_size(arg, &v) || v == 0 || v % 4096 || v > UBLK_MAX_IMAGE_SIZE)
			return bad_value(c, "size", arg, "expected a non-zero multiple of 4096 (K, M, G, T "
					 "suffixes), at most 16T");
		cfg->stack.size = v;
		return 1;
	case DEVOPT_NAME:
		if (devopts_name_problem(arg))
			return bad_value(c, "name", arg, devopts_name_problem(arg));
		cfg->name = arg;
		return 1;
	case DEVOPT_INJECT:
		cfg->stack.inject = arg;
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
		cfg->stack.read_only = true;
		return 1;
	case DEVOPT_NO_RECOVERY:
		cfg->no_recovery = true;
		return 1;
	default:
		return 0;
	}
}

int devopts_common(struct cli *c, int key, const char *arg, uint64_t *timeout_ms)
{
	const char *text_opt = text_option(key);
	uint64_t v;

	if (text_opt && arg && check_text(c, text_opt, arg))
		return CLI_DONE;
	switch (key) {
	case DEVOPT_TIMEOUT:
		if (seconds_in(arg, DEVOPTS_MAX_TIMEOUT_S, &v))
			return bad_value(c, "timeout", arg, "expected seconds, more than 0 and at most 86400 (1 day)");
		*timeout_ms = v;
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
	static char abs_base[PATH_MAX], abs_cache[PATH_MAX], abs_root[PATH_MAX];
	const char *auth = getenv("UBLK_HTTP_AUTH");

	if (cfg->stack.base && cfg->stack.e2b_root) {
		c->exit_code = cli_usage_error(c, "--e2b replaces --base: give one of them");
		return CLI_DONE;
	}
	if ((cfg->stack.e2b_build || cfg->stack.e2b_file) && !cfg->stack.e2b_root) {
		c->exit_code = cli_usage_error(c, "--build and --e2b-file go with --e2b ROOT");
		return CLI_DONE;
	}
	if (cfg->stack.e2b_root && !cfg->stack.e2b_build) {
		c->exit_code = cli_usage_error(c, "--e2b ROOT needs --build ID: the build to serve");
		return CLI_DONE;
	}
	if (cfg->stack.e2b_root && layer_is_url(cfg->stack.e2b_root) && strpbrk(cfg->stack.e2b_root, "?#")) {
		c->exit_code = cli_usage_error(c, "--e2b: a storage root URL cannot have a query "
					       "string or fragment (the build's paths are appended)");
		return CLI_DONE;
	}
	if (!cfg->stack.base && !cfg->stack.e2b_root) {
		c->exit_code = cli_usage_error(c, "--base FILE is required (or --e2b ROOT --build ID)");
		return CLI_DONE;
	}
	if (cfg->stack.e2b_root && !layer_is_url(cfg->stack.e2b_root) && realpath(cfg->stack.e2b_root, abs_root))
		cfg->stack.e2b_root = abs_root;
	/* it becomes a header line, and a line of the entry's secret file */
	if (auth && (cfgline_has_control(auth, NULL) || strlen(auth) > DEVOPTS_MAX_TEXT)) {
		c->exit_code = cli_usage_error(c, "UBLK_HTTP_AUTH holds a control character or is longer "
					       "than %d bytes", DEVOPTS_MAX_TEXT);
		return CLI_DONE;
	}
	/* The server runs detached and its config is reused later: store an
	 * absolute path. A missing file is reported by the image checks. */
	if (cfg->stack.base && !layer_is_url(cfg->stack.base) && realpath(cfg->stack.base, abs_base))
		cfg->stack.base = abs_base;
	for (unsigned i = 0; i < cfg->stack.n_layers; i++) {
		/* kept where the leak checker sees them: they live until exit */
		static char *abs_layers[STACK_MAX_LAYERS];
		char *abs = layer_is_url(cfg->stack.layers[i]) ? NULL : realpath(cfg->stack.layers[i], NULL);
		if (abs) {
			free(abs_layers[i]);
			cfg->stack.layers[i] = abs_layers[i] = abs;
		}
	}
	if (cfg->stack.cache && cfg->stack.cache[0] != '/') {
		/* the cache may not exist yet: make its directory absolute */
		char cwd[PATH_MAX];
		if (!getcwd(cwd, sizeof(cwd)) ||
		    snprintf(abs_cache, sizeof(abs_cache), "%s/%s", cwd, cfg->stack.cache) >= (int)sizeof(abs_cache)) {
			c->exit_code = cli_usage_error(c, "--cache '%s': path too long", cfg->stack.cache);
			return CLI_DONE;
		}
		cfg->stack.cache = abs_cache;
	}
	return 0;
}

/* The form of URL v that argv, config and messages show (slot: one per
 * URL option, so that each stays valid until v's slot is used again). */
static const char *shown(const char *v, unsigned slot)
{
	static char *red[1 + STACK_MAX_LAYERS];

	free(red[slot]);
	red[slot] = devopts_redacted(v);
	return red[slot] ? red[slot] : "(out of memory)";
}

void devopts_to_argv(const struct server_config *cfg, char **argv, int *argc)
{
	static char num[16][32];
	int n = *argc, k = 0;
#define ARG(s) (argv[n++] = (char *)(s))
#define NUM(opt, fmt, v) (snprintf(num[k], sizeof(num[k]), fmt, v), ARG(opt), ARG(num[k++]))

	/* credentials travel apart (devopts_secrets) */
	if (cfg->stack.e2b_root) {
		ARG("--e2b"); ARG(shown(cfg->stack.e2b_root, 0));
		ARG("--build"); ARG(cfg->stack.e2b_build);
		if (cfg->stack.e2b_file) { ARG("--e2b-file"); ARG(cfg->stack.e2b_file); }
	} else {
		ARG("--base"); ARG(shown(cfg->stack.base, 0));
	}
	for (unsigned i = 0; i < cfg->stack.n_layers; i++) {
		ARG("--layer");
		ARG(shown(cfg->stack.layers[i], 1 + i));
	}
	if (cfg->stack.cache) { ARG("--cache"); ARG(cfg->stack.cache); }
	if (cfg->name) { ARG("--name"); ARG(cfg->name); }
	if (cfg->stack.inject) { ARG("--inject"); ARG(cfg->stack.inject); }
	if (cfg->stack.read_only) ARG("--read-only");
	if (cfg->no_recovery) ARG("--no-recovery");
	NUM("--queues", "%u", cfg->queues);
	NUM("--depth", "%u", cfg->depth);
	NUM("--timeout", "%.3f", cfg->timeout_ms / 1000.0);
	if (cfg->stack.size) NUM("--size", "%llu", (unsigned long long)cfg->stack.size);
	if (cfg->stack.chunk_size) NUM("--chunk-size", "%llu", (unsigned long long)cfg->stack.chunk_size);
	if (cfg->stack.chunk_cache_limit)
		NUM("--chunk-cache-limit", "%llu", (unsigned long long)cfg->stack.chunk_cache_limit);
	if (cfg->stack.http_timeout_ms) NUM("--http-timeout", "%.3f", cfg->stack.http_timeout_ms / 1000.0);
	if (cfg->stack.http_retries >= 0) NUM("--http-retries", "%d", cfg->stack.http_retries);
	if (cfg->stack.chunk_cache) { ARG("--chunk-cache"); ARG(cfg->stack.chunk_cache); }
	if (cfg->stack.auth_file) { ARG("--auth-file"); ARG(cfg->stack.auth_file); }
	if (cfg->stack.insecure) ARG("--insecure");
	if (cfg->stack.prefetch) ARG("--prefetch");
	if (cfg->stack.readahead >= 0) NUM("--readahead", "%d", cfg->stack.readahead);
	ARG("--state-dir"); ARG(state_dir());
#undef ARG
#undef NUM
	argv[n] = NULL;
	*argc = n;
}

/* Whether url differs from its redacted form: -1 out of memory, 0 no, 1 yes. */
static int has_secret(const char *url)
{
	char *red = devopts_redacted(url);
	int differs = red ? strcmp(red, url) != 0 : -1;

	free(red);
	return differs;
}

int devopts_secrets(const struct server_config *cfg, char *buf, size_t len)
{
	const char *auth = getenv("UBLK_HTTP_AUTH");
	size_t used = 0;
	char key[32];
	int ret = 0;

	if (len)
		buf[0] = 0;
	ret = cfg->stack.base ? has_secret(cfg->stack.base) : 0;
	if (ret > 0)
		ret = cfgline_append(buf, len, &used, "base", cfg->stack.base);
	if (!ret && cfg->stack.e2b_root && (ret = has_secret(cfg->stack.e2b_root)) > 0)
		ret = cfgline_append(buf, len, &used, "e2b", cfg->stack.e2b_root);
	for (unsigned i = 0; !ret && i < cfg->stack.n_layers; i++) {
		if ((ret = has_secret(cfg->stack.layers[i])) <= 0)
			continue;
		snprintf(key, sizeof(key), "layer.%u", i);
		ret = cfgline_append(buf, len, &used, key, cfg->stack.layers[i]);
	}
	/* --auth-file is read again by a recovering server; the environment
	 * of the server that died is gone */
	if (!ret && !cfg->stack.auth_file && auth && *auth)
		ret = cfgline_append(buf, len, &used, "auth", auth);
	return ret < 0 ? (ret == -1 ? -ENOMEM : ret) : (int)used;
}

struct secrets_ctx {
	struct server_config *cfg;
	char *why;
	size_t len;
};

/* A URL from the secrets replaces the redacted one of the options, which
 * must be its redacted form: secrets of another configuration are refused. */
static int take_url(struct secrets_ctx *x, const char **slot, const char *what, const char *url)
{
	/* the full URLs live as long as the process (cfg points at them) */
	static char *kept[1 + STACK_MAX_LAYERS];
	/* --base and --e2b exclude each other: one slot */
	size_t k = slot == &x->cfg->stack.base || slot == &x->cfg->stack.e2b_root ? 0 :
		   1 + (size_t)(slot - x->cfg->stack.layers);
	char *red = devopts_redacted(url), *full;
	bool match = red && *slot && !strcmp(red, *slot);

	free(red);
	if (!match) {
		snprintf(x->why, x->len, "the credentials given for %s belong to another URL than %s",
			 what, *slot ? *slot : "(none)");
		return EXIT_USAGE;
	}
	full = strdup(url);
	if (!full) {
		snprintf(x->why, x->len, "out of memory");
		return EXIT_FAIL;
	}
	free(kept[k]);
	kept[k] = full;
	*slot = full;
	return 0;
}

static int apply_secret(const char *key, const char *value, void *arg)
{
	struct secrets_ctx *x = arg;
	uint64_t i;

	if (!strcmp(key, "base"))
		return take_url(x, &x->cfg->stack.base, "--base", value);
	if (!strcmp(key, "e2b"))
		return take_url(x, &x->cfg->stack.e2b_root, "--e2b", value);
	if (!strncmp(key, "layer.", 6)) {
		if (parse_uint(key + 6, 0, STACK_MAX_LAYERS - 1, &i) || i >= x->cfg->stack.n_layers) {
			snprintf(x->why, x->len, "credentials for layer %s, which the options do not have",
				 key + 6);
			return EXIT_USAGE;
		}
		return take_url(x, &x->cfg->stack.layers[i], "--layer", value);
	}
	if (!strcmp(key, "auth") && setenv("UBLK_HTTP_AUTH", value, 1)) {
		snprintf(x->why, x->len, "setenv: %s", strerror(errno));
		return EXIT_FAIL;
	}
	return 0;   /* keys of later versions */
}

int devopts_apply_secrets(struct server_config *cfg, char *text, size_t len, char *why, size_t whylen)
{
	struct secrets_ctx x = { cfg, why, whylen };
	unsigned line = 0;
	int ret = cfgline_parse(text, len, apply_secret, &x, &line);

	if (ret == -EINVAL) {
		snprintf(why, whylen, "credentials: line %u is not 'key=value'", line);
		return EXIT_USAGE;
	}
	return ret;
}

int devopts_read_secrets_fd(int fd, struct server_config *cfg, char *why, size_t whylen)
{
	char *text = malloc(DEVOPTS_SECRETS_MAX + 1);
	size_t used = 0;
	ssize_t n = 1;
	int code;

	if (!text) {
		snprintf(why, whylen, "out of memory");
		return EXIT_FAIL;
	}
	while (used < DEVOPTS_SECRETS_MAX &&
	       ((n = read(fd, text + used, DEVOPTS_SECRETS_MAX - used)) > 0 || (n < 0 && errno == EINTR)))
		used += n > 0 ? (size_t)n : 0;
	if (n < 0 || used == DEVOPTS_SECRETS_MAX) {
		snprintf(why, whylen, "reading credentials from fd %d: %s", fd,
			 n < 0 ? strerror(errno) : "too long");
		code = EXIT_USAGE;
	} else {
		text[used] = 0;
		code = devopts_apply_secrets(cfg, text, used, why, whylen);
	}
	explicit_bzero(text, DEVOPTS_SECRETS_MAX + 1);
	free(text);
	return code;
}

/* The entry's secret file: only a file of ours that nobody else can read
 * is believed (the folder is private too, but a file planted in it before
 * must not feed credentials or URLs to the server). */
static int read_entry_secrets(uint32_t id, struct server_config *cfg, char *why, size_t len)
{
	char path[PATH_MAX];
	struct stat st;
	int fd, code;

	snprintf(path, sizeof(path), "%s/ublkb%u/secret", state_dir(), id);
	fd = state_open_file(id, "secret", O_RDONLY);
	if (fd == -ENOENT)
		return 0;   /* nothing secret in this configuration */
	if (fd < 0) {
		snprintf(why, len, "%s: %s", path, fd == -EINVAL ? "not a regular file" : strerror(-fd));
		return EXIT_FAIL;
	}
	if (fstat(fd, &st) || st.st_uid != geteuid() || (st.st_mode & 077)) {
		snprintf(why, len, "%s: not a regular file of uid %u with mode 0600: refused", path,
			 (unsigned)geteuid());
		close(fd);
		return EXIT_FAIL;
	}
	code = devopts_read_secrets_fd(fd, cfg, why, len);
	close(fd);
	if (code) {
		char sub[400];
		snprintf(sub, sizeof(sub), "%s", why);
		snprintf(why, len, "ublkb%u: %s: %s", id, path, sub);
		code = EXIT_FAIL;   /* a broken entry, not the caller's usage */
	}
	return code;
}

struct saved_ctx {
	char **argv;
	int n, max;
};

static int take_serve_arg(const char *key, const char *value, void *arg)
{
	struct saved_ctx *x = arg;

	if (strcmp(key, "serve_arg"))
		return 0;
	if (x->n == x->max)
		return -E2BIG;
	x->argv[x->n++] = (char *)value;
	return 0;
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
	static char config[DEVOPTS_CONFIG_MAX];
	char *argv[DEVOPTS_MAX_ARGS + 2] = { "ublk-serve" };
	struct saved_ctx x = { argv + 1, 0, DEVOPTS_MAX_ARGS };
	unsigned line = 0;
	struct cli c;
	int key, n, ret;

	n = state_read(id, "config", config, sizeof(config));
	if (n < 0) {
		snprintf(why, len, "ublkb%u: no state entry: the device's configuration is unknown; "
			 "delete it with ublk-del", id);
		return EXIT_NO_DEVICE;
	}
	/* a config that fills the buffer may go on past it: refused whole */
	ret = (size_t)n + 1 >= sizeof(config) ? -EFBIG :
	      cfgline_parse(config, (size_t)n, take_serve_arg, &x, &line);
	if (ret) {
		if (ret == -EINVAL)
			snprintf(why, len, "ublkb%u: line %u of %s/ublkb%u/config is malformed (not "
				 "'key=value', or a control character): refused", id, line, state_dir(), id);
		else if (ret == -EFBIG)
			snprintf(why, len, "ublkb%u: %s/ublkb%u/config is larger than %d bytes: refused",
				 id, state_dir(), id, DEVOPTS_CONFIG_MAX - 1);
		else
			snprintf(why, len, "ublkb%u: %s/ublkb%u/config has too many serve_arg lines", id,
				 state_dir(), id);
		return EXIT_FAIL;
	}
	n = x.n;
	if (!n) {
		snprintf(why, len, "ublkb%u: the state entry has no serve_arg lines (made by an older "
			 "version?)", id);
		return EXIT_FAIL;
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
	if (!cfg->stack.base == !cfg->stack.e2b_root || (cfg->stack.e2b_root && !cfg->stack.e2b_build)) {
		snprintf(why, len, "ublkb%u: the saved configuration names no base (or both --base "
			 "and --e2b, or --e2b without --build)", id);
		return EXIT_FAIL;
	}
	return read_entry_secrets(id, cfg, why, len);
}
