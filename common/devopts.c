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
#include <stddef.h>
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
	cfg->stack.prefetch_connections = -1;
	cfg->recover_id = -1;
	cfg->want_id = -1;
}

static int bad_value(struct cli *c, const char *opt, const char *arg, const char *want)
{
	char *shown = devopts_redacted(arg);

	/* a long value is cut, so that the message keeps what is expected */
	c->exit_code = cli_usage_error(c, "--%s '%.200s%s': %s", opt, shown ? shown : "?",
				       shown && strlen(shown) > 200 ? "..." : "", want);
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
static int check_text_of(struct cli *c, const char *what, const char *arg)
{
	size_t at;

	if (cfgline_has_control(arg, &at)) {
		c->exit_code = cli_usage_error(c, "%s: a control character (byte 0x%02x at offset %zu) "
					       "is not allowed in paths, names, URLs or specs", what,
					       (unsigned char)arg[at], at);
		return CLI_DONE;
	}
	if (strlen(arg) > DEVOPTS_MAX_TEXT) {
		c->exit_code = cli_usage_error(c, "%s: longer than %d bytes", what, DEVOPTS_MAX_TEXT);
		return CLI_DONE;
	}
	return 0;
}

/* check_text_of for option --opt */
static int check_text(struct cli *c, const char *opt, const char *arg)
{
	char what[64];

	snprintf(what, sizeof(what), "--%s", opt);
	return check_text_of(c, what, arg);
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

/* Seconds in (0, max_s]. */
static int seconds_in(const char *arg, uint64_t max_s, uint64_t *ms)
{
	return parse_seconds(arg, ms) || !*ms || *ms > max_s * 1000 ? -EINVAL : 0;
}

struct devopt {
	const char *name;
	int key;
	enum devopt_type type;
	size_t off;             /* of the field in struct server_config */
	uint64_t lo, hi;
	const char *want;
	const char *arg;        /* what the value names (FILE, DIR), for messages */
};

#define DEVOPT_AS_ENTRY(name, key, arg, type, field, lo, hi, want, help) \
	{ name, key, type, offsetof(struct server_config, field), lo, hi, want, arg },
static const struct devopt devopts[] = { DEVICE_OPTION_LIST(DEVOPT_AS_ENTRY) };

static const struct devopt *devopt_of(int key)
{
	for (size_t i = 0; i < sizeof(devopts) / sizeof(devopts[0]); i++)
		if (devopts[i].key == key)
			return &devopts[i];
	return NULL;
}

#define FIELD(cfg, o, type) ((type *)((char *)(cfg) + (o)->off))

int devopts_apply(struct cli *c, struct server_config *cfg, int key, const char *arg)
{
	int common = devopts_common(c, key, arg, &cfg->timeout_ms);
	const struct devopt *o = devopt_of(key);
	uint64_t v = 0;
	bool bad;

	if (common || !o)
		return common;
	if (o->type <= DEVOPT_T_E2B_NAME && check_text(c, o->name, arg))
		return CLI_DONE;
	if ((o->type == DEVOPT_T_TEXT || o->type == DEVOPT_T_URL || o->type == DEVOPT_T_LAYERS) && !*arg) {
		c->exit_code = cli_empty_value(c, o->name, o->arg);
		return CLI_DONE;
	}
	switch (o->type) {
	case DEVOPT_T_TEXT:
	case DEVOPT_T_URL:
		*FIELD(cfg, o, const char *) = arg;
		return 1;
	case DEVOPT_T_LAYERS:
		if (cfg->stack.n_layers == o->hi)
			return bad_value(c, o->name, arg, o->want);
		cfg->stack.layers[cfg->stack.n_layers++] = arg;
		return 1;
	case DEVOPT_T_DEVICE_NAME:
		if (devopts_name_problem(arg))
			return bad_value(c, o->name, arg, devopts_name_problem(arg));
		*FIELD(cfg, o, const char *) = arg;
		return 1;
	case DEVOPT_T_BUILD_ID:
	case DEVOPT_T_E2B_NAME:
		if (o->type == DEVOPT_T_BUILD_ID ? !e2b_parse_build_id(arg, NULL) : !e2b_file_name_ok(arg))
			return bad_value(c, o->name, arg, o->want);
		*FIELD(cfg, o, const char *) = arg;
		return 1;
	case DEVOPT_T_FLAG:
		*FIELD(cfg, o, bool) = true;
		return 1;
	case DEVOPT_T_UNSIGNED:
	case DEVOPT_T_INT:
		if (parse_uint(arg, o->lo, o->hi, &v))
			return bad_value(c, o->name, arg, o->want);
		if (o->type == DEVOPT_T_INT)
			*FIELD(cfg, o, int) = (int)v;
		else
			*FIELD(cfg, o, unsigned) = (unsigned)v;
		return 1;
	case DEVOPT_T_SIZE:
	case DEVOPT_T_SIZE_4K:
	case DEVOPT_T_SECONDS:
		bad = o->type == DEVOPT_T_SECONDS ? seconds_in(arg, o->hi, &v) != 0 :
		      parse_size(arg, &v) || v < o->lo || v > o->hi || (o->type == DEVOPT_T_SIZE_4K && v % 4096);
		if (bad)
			return bad_value(c, o->name, arg, o->want);
		*FIELD(cfg, o, uint64_t) = v;
		return 1;
	}
	return 0;
}

int devopts_common(struct cli *c, int key, const char *arg, uint64_t *timeout_ms)
{
	uint64_t v;

	if (key == DEVOPT_STATE_DIR && check_text(c, "state-dir", arg))
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
		if (arg[0] != '/' || strlen(arg) > STATE_DIR_MAX) {
			char want[64];
			snprintf(want, sizeof(want), "expected an absolute path of at most %d bytes",
				 STATE_DIR_MAX);
			return bad_value(c, "state-dir", arg, want);
		}
		state_set_dir(arg);
		return 1;
	default:
		return 0;
	}
}

int devopts_check_state_env(struct cli *c)
{
	const char *env = getenv("UBLK_STATE_DIR");

	/* state_dir() is the variable's own string unless --state-dir won */
	if (!env || state_dir() != env || (env[0] == '/' && strlen(env) <= STATE_DIR_MAX))
		return 0;
	c->exit_code = cli_usage_error(c, "UBLK_STATE_DIR '%.200s%s': expected an absolute path of at "
				       "most %d bytes (or give --state-dir DIR)", env,
				       strlen(env) > 200 ? "..." : "", STATE_DIR_MAX);
	return CLI_DONE;
}

int devopts_refuse_url(struct cli *c, const char *opt, const char *path)
{
	char why[400];

	if (!http_refuse_url(opt, path, why, sizeof(why)))
		return 0;
	c->exit_code = cli_usage_error(c, "%s", why);
	return CLI_DONE;
}

/* *path, if relative, made absolute from the working folder into buf:
 * 0, or CLI_DONE (too long, or a URL). */
static int absolute_new(struct cli *c, const char *opt, const char **path, char *buf, size_t len)
{
	char cwd[PATH_MAX];

	if (devopts_refuse_url(c, opt, *path))
		return CLI_DONE;
	if (!*path || (*path)[0] == '/')
		return 0;
	if (!getcwd(cwd, sizeof(cwd)) || snprintf(buf, len, "%s/%s", cwd, *path) >= (int)len) {
		c->exit_code = cli_usage_error(c, "%s '%s': path too long", opt, *path);
		return CLI_DONE;
	}
	*path = buf;
	return 0;
}

int devopts_finish(struct cli *c, struct server_config *cfg)
{
	static char abs_base[PATH_MAX], abs_cache[PATH_MAX], abs_root[PATH_MAX];
	static char abs_record[PATH_MAX], abs_trace[PATH_MAX], abs_chunks[PATH_MAX];
	static char abs_auth[PATH_MAX];
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
	if (cfg->stack.e2b_root && http_is_url(cfg->stack.e2b_root) && strpbrk(cfg->stack.e2b_root, "?#")) {
		c->exit_code = cli_usage_error(c, "--e2b: a storage root URL cannot have a query "
					       "string or fragment (the build's paths are appended)");
		return CLI_DONE;
	}
	if (!cfg->stack.base && !cfg->stack.e2b_root) {
		c->exit_code = cli_usage_error(c, "--base FILE is required (or --e2b ROOT --build ID)");
		return CLI_DONE;
	}
	if (cfg->stack.e2b_root && !http_is_url(cfg->stack.e2b_root) && realpath(cfg->stack.e2b_root, abs_root))
		cfg->stack.e2b_root = abs_root;
	/* it becomes a header line, and a line of the entry's secret file */
	if (auth && (cfgline_has_control(auth, NULL) || strlen(auth) > DEVOPTS_MAX_TEXT)) {
		c->exit_code = cli_usage_error(c, "UBLK_HTTP_AUTH holds a control character or is longer "
					       "than %d bytes", DEVOPTS_MAX_TEXT);
		return CLI_DONE;
	}
	/* The server runs detached and its config is reused later: store an
	 * absolute path. A missing file is reported by the image checks. */
	if (cfg->stack.base && !http_is_url(cfg->stack.base) && realpath(cfg->stack.base, abs_base))
		cfg->stack.base = abs_base;
	for (unsigned i = 0; i < cfg->stack.n_layers; i++) {
		/* kept where the leak checker sees them: they live until exit */
		static char *abs_layers[STACK_MAX_LAYERS];
		char *abs = http_is_url(cfg->stack.layers[i]) ? NULL : realpath(cfg->stack.layers[i], NULL);
		if (abs) {
			free(abs_layers[i]);
			cfg->stack.layers[i] = abs_layers[i] = abs;
		}
	}
	if (cfg->stack.prefetch_trace && !http_is_url(cfg->stack.prefetch_trace) &&
	    realpath(cfg->stack.prefetch_trace, abs_trace))
		cfg->stack.prefetch_trace = abs_trace;
	if (cfg->stack.record_access && !cfg->stack.record_access[0]) {
		c->exit_code = cli_usage_error(c, "--record-access: expected a file name");
		return CLI_DONE;
	}
	if ((cfg->stack.record_ms || cfg->stack.record_bytes) && !cfg->stack.record_access) {
		c->exit_code = cli_usage_error(c, "--record-for and --record-limit go with --record-access FILE");
		return CLI_DONE;
	}
	if (cfg->stack.prefetch_connections >= 0 && !cfg->stack.prefetch_trace) {
		c->exit_code = cli_usage_error(c, "--prefetch-connections goes with --prefetch-trace TRACE");
		return CLI_DONE;
	}
	/* the chunk cache in the device's config, as if given: a recovery is
	 * started by another process (ublk-pool watch), in another environment */
	const char *chunks = getenv("UBLK_CHUNK_CACHE");
	bool chunks_from_env = !cfg->stack.chunk_cache && chunks && *chunks;
	if (chunks_from_env) {
		if (check_text_of(c, "UBLK_CHUNK_CACHE", chunks))
			return CLI_DONE;
		cfg->stack.chunk_cache = chunks;
	}
	/* files that may not exist yet: their folder made absolute */
	if (absolute_new(c, "--cache", &cfg->stack.cache, abs_cache, sizeof(abs_cache)) ||
	    absolute_new(c, chunks_from_env ? "UBLK_CHUNK_CACHE" : "--chunk-cache", &cfg->stack.chunk_cache,
			 abs_chunks, sizeof(abs_chunks)) ||
	    absolute_new(c, "--record-access", &cfg->stack.record_access, abs_record, sizeof(abs_record)) ||
	    /* not resolved: a rotated secret is a link that changes */
	    absolute_new(c, "--auth-file", &cfg->stack.auth_file, abs_auth, sizeof(abs_auth)))
		return CLI_DONE;
	return 0;
}

/* Slots of the URL options: --base or --e2b (they exclude each other),
 * each --layer, --prefetch-trace. */
#define URL_SLOT_LAYER 1
#define URL_SLOT_TRACE (1 + STACK_MAX_LAYERS)
#define URL_SLOTS (2 + STACK_MAX_LAYERS)

/* The form of URL v that argv, config and messages show (slot: one per
 * URL option, so that each stays valid until v's slot is used again). */
static const char *shown(const char *v, unsigned slot)
{
	static char *red[URL_SLOTS];

	free(red[slot]);
	red[slot] = devopts_redacted(v);
	return red[slot] ? red[slot] : "(out of memory)";
}

int devopts_each(const struct server_config *cfg, devopts_visit fn, void *arg)
{
	static char num[sizeof(devopts) / sizeof(devopts[0]) + 1][32];
	char *n;
	int ret = 0;

	for (size_t i = 0; !ret && i < sizeof(devopts) / sizeof(devopts[0]); i++) {
		const struct devopt *o = &devopts[i];
		const char *text = NULL;
		n = num[i];
		switch (o->type) {
		case DEVOPT_T_URL:
			/* credentials travel apart (devopts_secrets) */
			text = *FIELD(cfg, o, const char *const);
			if (text)
				ret = fn(o->name, shown(text, o->key == DEVOPT_PREFETCH_TRACE ? URL_SLOT_TRACE : 0), arg);
			continue;
		case DEVOPT_T_LAYERS:
			for (unsigned k = 0; !ret && k < cfg->stack.n_layers; k++)
				ret = fn(o->name, shown(cfg->stack.layers[k], URL_SLOT_LAYER + k), arg);
			continue;
		case DEVOPT_T_TEXT:
		case DEVOPT_T_DEVICE_NAME:
		case DEVOPT_T_BUILD_ID:
		case DEVOPT_T_E2B_NAME:
			text = *FIELD(cfg, o, const char *const);
			break;
		case DEVOPT_T_FLAG:
			if (*FIELD(cfg, o, const bool))
				ret = fn(o->name, NULL, arg);
			continue;
		case DEVOPT_T_UNSIGNED:
			snprintf(n, sizeof(num[0]), "%u", *FIELD(cfg, o, const unsigned));
			text = n;
			break;
		case DEVOPT_T_INT:
			snprintf(n, sizeof(num[0]), "%d", *FIELD(cfg, o, const int));
			text = *FIELD(cfg, o, const int) >= 0 ? n : NULL;
			break;
		case DEVOPT_T_SIZE:
		case DEVOPT_T_SIZE_4K:
		case DEVOPT_T_SECONDS: {
			uint64_t v = *FIELD(cfg, o, const uint64_t);
			if (o->type == DEVOPT_T_SECONDS)
				snprintf(n, sizeof(num[0]), "%.3f", v / 1000.0);
			else
				snprintf(n, sizeof(num[0]), "%llu", (unsigned long long)v);
			text = v ? n : NULL;
			break;
		}
		}
		if (text)
			ret = fn(o->name, text, arg);
	}
	n = num[sizeof(devopts) / sizeof(devopts[0])];
	snprintf(n, sizeof(num[0]), "%.3f", cfg->timeout_ms / 1000.0);
	return ret ? ret : fn("timeout", n, arg);
}

struct argv_ctx {
	char **argv;
	int n;
	unsigned d;
	char dashed[DEVOPTS_MAX_ARGS][24];   /* "--" and the option's name */
};

static int add_arg(const char *name, const char *value, void *arg)
{
	struct argv_ctx *x = arg;

	if (x->d == DEVOPTS_MAX_ARGS)
		return -E2BIG;   /* cannot happen: each option appears at most once, layers 32 times */
	snprintf(x->dashed[x->d], sizeof(x->dashed[0]), "--%s", name);
	x->argv[x->n++] = x->dashed[x->d++];
	if (value)
		x->argv[x->n++] = (char *)value;
	return 0;
}

void devopts_to_argv(const struct server_config *cfg, char **argv, int *argc)
{
	static struct argv_ctx x;

	x.argv = argv;
	x.n = *argc;
	x.d = 0;
	devopts_each(cfg, add_arg, &x);
	argv[x.n++] = "--state-dir";
	argv[x.n++] = (char *)state_dir();
	argv[x.n] = NULL;
	*argc = x.n;
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
	if (!ret && cfg->stack.prefetch_trace && (ret = has_secret(cfg->stack.prefetch_trace)) > 0)
		ret = cfgline_append(buf, len, &used, "prefetch_trace", cfg->stack.prefetch_trace);
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
	static char *kept[URL_SLOTS];
	size_t k = slot == &x->cfg->stack.base || slot == &x->cfg->stack.e2b_root ? 0 :
		   slot == &x->cfg->stack.prefetch_trace ? URL_SLOT_TRACE :
		   URL_SLOT_LAYER + (size_t)(slot - x->cfg->stack.layers);
	char *red = devopts_redacted(url), *full;
	/* the command line's form: the redacted one, its "?..." left out or not */
	size_t n = *slot ? strlen(*slot) : 0;
	bool match = red && *slot && (!strcmp(red, *slot) ||
				      (!strncmp(red, *slot, n) && !strcmp(red + n, "?...")));

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
	if (!strcmp(key, "prefetch_trace"))
		return take_url(x, &x->cfg->stack.prefetch_trace, "--prefetch-trace", value);
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

int devopts_fd_arg(struct cli *c, const char *opt, const char *arg, int *fd)
{
	uint64_t v;

	if (parse_uint(arg, 3, 1024, &v) || fcntl((int)v, F_GETFD) < 0) {
		c->exit_code = cli_usage_error(c, "--%s '%s': expected an open descriptor from 3 to 1024",
					       opt, arg);
		return CLI_DONE;
	}
	*fd = (int)v;
	fcntl(*fd, F_SETFD, FD_CLOEXEC);
	return 1;
}

int devopts_take_secrets(struct cli *c, int fd, struct server_config *cfg)
{
	char why[600];
	int code;

	if (fd < 0)
		return 0;
	code = devopts_read_secrets_fd(fd, cfg, why, sizeof(why));
	close(fd);
	if (!code)
		return 0;
	log_err("--secrets-fd: %s", why);
	c->exit_code = code;
	return CLI_DONE;
}
