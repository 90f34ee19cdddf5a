#include "devconfig.h"
#include "devopts.h"
#include "util/cfgline.h"
#include "util/exitcodes.h"
#include "host/state.h"
#include "kernel/ctrl.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* What a config may hold: the device options, and in format 1 the
 * --timeout and --state-dir its serve_arg lines carried. */
static const struct cli_option saved_options[] = {
	DEVICE_OPTIONS
	{ "timeout", DEVOPT_TIMEOUT, "SEC", NULL },
	STATE_DIR_OPTION,
	{ 0 },
};
static const struct cli_tool saved_tool = {
	.name = "ublk-serve", .synopsis = "", .summary = "", .options = saved_options,
};

/* ---- writing ---- */

struct config_out {
	char *buf;
	size_t len, used;
};

/* key: the long option with '_' for '-'; a flag is "1" */
static int put_option(const char *name, const char *value, void *arg)
{
	struct config_out *o = arg;
	char key[32];

	snprintf(key, sizeof(key), "%s", name);
	for (char *p = key; *p; p++)
		if (*p == '-')
			*p = '_';
	return cfgline_append(o->buf, o->len, &o->used, key, value ? value : "1");
}

int devconfig_write(uint32_t id, const struct server_config *cfg, uint64_t device_size)
{
	struct config_out o = { .buf = malloc(DEVOPTS_CONFIG_MAX), .len = DEVOPTS_CONFIG_MAX };
	char *secret = malloc(DEVOPTS_SECRETS_MAX), size[32];
	int ret = -ENOMEM;

	if (!o.buf || !secret)
		goto out;
	o.buf[0] = 0;
	snprintf(size, sizeof(size), "%llu", (unsigned long long)device_size);
	ret = cfgline_append(o.buf, o.len, &o.used, "device_size", size);
	if (!ret)
		ret = devopts_each(cfg, put_option, &o);
	if (ret)
		goto out;
	/* the secret file first: a config never names credentials it lacks */
	ret = devopts_secrets(cfg, secret, DEVOPTS_SECRETS_MAX);
	if (ret > 0)
		ret = state_write(id, "secret", secret);
	if (ret >= 0)
		ret = state_write(id, "config", o.buf);
out:
	if (secret)
		explicit_bzero(secret, DEVOPTS_SECRETS_MAX);
	free(secret);
	free(o.buf);
	return ret < 0 ? ret : 0;
}

/* ---- reading ---- */

struct config_in {
	struct server_config *cfg;
	struct cli cli;
	const struct cli_option *pending;   /* format 1: an option awaiting its value */
	const char *bad;                    /* the key or argument not understood */
	char error[256];                    /* and why, from the option's checks */
};

static const struct cli_option *find_option(const char *name, size_t len)
{
	for (const struct cli_option *o = saved_options; o->name; o++)
		if (strlen(o->name) == len && !strncmp(o->name, name, len))
			return o;
	return NULL;
}

static int apply(struct config_in *x, const struct cli_option *o, const char *value, const char *what)
{
	if (devopts_apply(&x->cli, x->cfg, o->key, value) != 1) {
		x->bad = what;
		return -EINVAL;
	}
	return 0;
}

/* Format 2: "name=value", name the long option with '_' for '-'. */
static int take_option(const char *key, const char *value, void *arg)
{
	struct config_in *x = arg;
	char name[32];
	size_t n = strlen(key);

	if (n >= sizeof(name))
		return 0;   /* no option has so long a name: a later version's key */
	for (size_t i = 0; i <= n; i++)
		name[i] = key[i] == '_' ? '-' : key[i];
	const struct cli_option *o = find_option(name, n);
	if (!o || o->key == DEVOPT_STATE_DIR)
		return 0;   /* device_size, and keys of later versions */
	if (!o->arg && !strcmp(value, "0"))
		return 0;
	if (!o->arg && strcmp(value, "1")) {
		x->bad = key;
		return -EINVAL;
	}
	return apply(x, o, o->arg ? value : NULL, key);
}

/* Format 1: the serve_arg lines are ublk-serve's arguments, in order. */
static int take_serve_arg(const char *key, const char *value, void *arg)
{
	struct config_in *x = arg;
	const struct cli_option *o = x->pending;

	if (strcmp(key, "serve_arg"))
		return 0;
	if (o) {
		x->pending = NULL;
		return apply(x, o, value, o->name);
	}
	o = strncmp(value, "--", 2) ? NULL : find_option(value + 2, strlen(value + 2));
	if (!o) {
		x->bad = value;
		return -EINVAL;
	}
	if (o->arg) {
		x->pending = o;
		return 0;
	}
	return apply(x, o, NULL, o->name);
}

/* The entry's secret file: only a file of ours that nobody else can read
 * is believed (the folder is private too, but a file planted in it before
 * must not feed credentials or URLs to the server). */
static int read_secrets(uint32_t id, struct server_config *cfg, char *why, size_t len)
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

int devconfig_read(uint32_t id, struct server_config *cfg, char *why, size_t len)
{
	static char config[DEVOPTS_CONFIG_MAX];
	struct config_in x = { .cfg = cfg };
	unsigned line = 0;
	int n, ret, version = state_entry_version(id);

	/* (missing: an entry of before the file, told by its config below) */
	if (version == -EINVAL) {
		snprintf(why, len, "ublkb%u: the state entry's version is not a format number: "
			 "it cannot be read; delete the device with ublk-del", id);
		return EXIT_FAIL;
	}
	if (version > STATE_FORMAT_VERSION) {
		snprintf(why, len, "ublkb%u: the state entry has format %d; this version knows %d and "
			 "older: recover it with the ublk-tools that made it", id, version, STATE_FORMAT_VERSION);
		return EXIT_FAIL;
	}
	n = state_read(id, "config", config, sizeof(config));
	if (n < 0) {
		char node[64];
		dev_char_path(id, node, sizeof(node));
		if (access(node, F_OK))
			snprintf(why, len, "ublkb%u: no such device", id);
		else
			snprintf(why, len, "ublkb%u: no state entry: the device's configuration is "
				 "unknown; delete it with ublk-del", id);
		return EXIT_NO_DEVICE;
	}
	cli_init(&x.cli, &saved_tool);
	x.cli.error_buf = x.error;
	x.cli.error_len = sizeof(x.error);
	/* Format 1 is told by its serve_arg lines rather than by the version
	 * file, so that nothing depends on the order the two were written. */
	bool v1 = !strncmp(config, "serve_arg=", 10) || strstr(config, "\nserve_arg=");
	if (!v1 && version >= 0 && version < 2) {
		snprintf(why, len, "ublkb%u: the state entry has no serve_arg lines (made by an older "
			 "version?): its server cannot be started again; delete it with ublk-del", id);
		return EXIT_FAIL;
	}
	/* a config that fills the buffer may go on past it: refused whole */
	ret = (size_t)n + 1 >= sizeof(config) ? -EFBIG :
	      cfgline_parse(config, (size_t)n, v1 ? take_serve_arg : take_option, &x, &line);
	if (!ret && x.pending) {
		x.bad = x.pending->name;
		ret = -EINVAL;
	}
	if (ret == -EFBIG)
		snprintf(why, len, "ublkb%u: %s/ublkb%u/config is larger than %d bytes: refused",
			 id, state_dir(), id, DEVOPTS_CONFIG_MAX - 1);
	else if (ret && x.bad)
		snprintf(why, len, "ublkb%u: %s/ublkb%u/config: '%.64s' is not understood%s%s%s: refused",
			 id, state_dir(), id, x.bad, x.error[0] ? " (" : "", x.error, x.error[0] ? ")" : "");
	else if (ret)
		snprintf(why, len, "ublkb%u: line %u of %s/ublkb%u/config is malformed (not "
			 "'key=value', or a control character): refused", id, line, state_dir(), id);
	if (ret)
		return EXIT_FAIL;
	if (!cfg->stack.base == !cfg->stack.e2b_root || (cfg->stack.e2b_root && !cfg->stack.e2b_build)) {
		snprintf(why, len, "ublkb%u: the saved configuration names no base (or both base "
			 "and e2b, or e2b without build)", id);
		return EXIT_FAIL;
	}
	return read_secrets(id, cfg, why, len);
}
