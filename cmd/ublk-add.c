/* ublk-add: create a device and start its server in the background. */
#include "util/cli.h"
#include "devopts.h"
#include "util/exitcodes.h"
#include "util/json.h"
#include "host/device.h"
#include "util/log.h"
#include "util/parse.h"
#include "host/pool.h"
#include "util/timeutil.h"
#include "spawn.h"
#include "server.h"
#include "host/state.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

enum { KEY_JSON = 'j', KEY_MAX = 0x500 };

static const struct cli_option options[] = {
	DEVICE_OPTIONS
	{ "timeout", 't', "SEC", "deadline for the device to be live (default 10)" },
	STATE_DIR_OPTION,
	{ "json", 'j', NULL, "print the device's description as JSON" },
	{ "max-devices", KEY_MAX, "N", "refuse (exit 8) when the host has N devices already" },
	SECRETS_FD_OPTION,
	{ "verbose", 'v', NULL, "more log output" },
	{ 0 },
};

static const struct cli_tool tool = {
	.name = "ublk-add",
	.synopsis = "--base FILE | --e2b ROOT --build ID [OPTIONS]",
	.summary = "Create a ublk block device serving FILE and start its server (ublk-serve) in\n"
		   "the background. Prints the device path (/dev/ublkbN) once it is live.",
	.options = options,
	.footer = "Exit codes: 0 ok, 1 failure, 2 usage, 3 no ublk in kernel, 4 permission,\n"
		  "5 bad image, 7 timeout, 8 busy (name, cache or pool). See ublk-add(8).\n\n"
		  "Example:\n  dev=$(ublk-add --base rootfs.img) && mount \"$dev\" /mnt\n",
};

/* The size the server settled on (from the cache or the base). */
static uint64_t device_size(int id)
{
	char v[32];
	return state_config_get((uint32_t)id, "device_size", v, sizeof(v)) ? 0 : strtoull(v, NULL, 10);
}

static void print_json(const struct server_config *cfg, const struct ready_result *r, pid_t pid)
{
	char path[64];
	struct json j;

	char *base = devopts_redacted(cfg->stack.base);
	char *root = devopts_redacted(cfg->stack.e2b_root);

	snprintf(path, sizeof(path), "/dev/ublkb%d", r->id);
	json_begin(&j, stdout);
	json_u64(&j, "id", (uint64_t)r->id);
	json_str(&j, "path", path);
	json_i64(&j, "pid", pid);
	json_str(&j, "base", cfg->stack.base ? (base ? base : "?") : NULL);
	if (cfg->stack.e2b_root) {
		json_str(&j, "e2b_root", root ? root : "?");
		json_str(&j, "build", cfg->stack.e2b_build);
		json_str(&j, "e2b_file", cfg->stack.e2b_file ? cfg->stack.e2b_file : "rootfs.ext4");
	}
	json_arr_begin(&j, "layers");
	for (unsigned i = 0; i < cfg->stack.n_layers; i++) {
		char *layer = devopts_redacted(cfg->stack.layers[i]);
		json_str(&j, NULL, layer ? layer : "?");
		free(layer);
	}
	json_arr_end(&j);
	json_str(&j, "cache", cfg->stack.cache);
	json_str(&j, "name", cfg->name);
	json_u64(&j, "size", device_size(r->id));
	json_u64(&j, "queues", cfg->queues);
	json_u64(&j, "depth", cfg->depth);
	json_bool(&j, "read_only", cfg->stack.read_only);
	json_str(&j, "state_dir", state_dir());
	json_end(&j);
	free(base);
	free(root);
}

static int tool_main(int argc, char **argv)
{
	struct server_config cfg;
	struct ready_result res;
	char why[600];
	bool json = false;
	uint64_t max_devices = 0;
	struct pool_admission admission;
	struct cli c;
	pid_t pid;
	int key, code, secrets_fd = -1;

	log_init(argv[0]);
	devopts_defaults(&cfg);
	cli_init(&c, &tool);
	while ((key = cli_next(&c, argc, argv)) != -1) {
		if (key == CLI_DONE)
			return c.exit_code;
		int r = devopts_apply(&c, &cfg, key, optarg);
		if (r == CLI_DONE)
			return c.exit_code;
		if (key == KEY_JSON)
			json = true;
		if (key == DEVOPT_SECRETS_FD && devopts_fd_arg(&c, "secrets-fd", optarg, &secrets_fd) == CLI_DONE)
			return c.exit_code;
		if (key == KEY_MAX && parse_uint(optarg, 1, POOL_MAX_LIMIT, &max_devices))
			return cli_usage_error(&c, "--max-devices '%s': expected a number from 1 to %u",
					       optarg, POOL_MAX_LIMIT);
	}
	if (devopts_check_state_env(&c) == CLI_DONE)
		return c.exit_code;
	if (optind < argc)
		return cli_usage_error(&c, "unexpected argument '%s'", argv[optind]);
	if (devopts_take_secrets(&c, secrets_fd, &cfg) == CLI_DONE ||
	    devopts_finish(&c, &cfg) == CLI_DONE)
		return c.exit_code;
	/* a bad UBLK_POOL_MAX is a usage error before any other check */
	if (pool_max_devices(max_devices, &max_devices, why, sizeof(why))) {
		log_err("%s", why);
		return EXIT_USAGE;
	}
	code = server_preflight(&cfg, why, sizeof(why));
	if (code) {
		log_err("%s", why);
		return code;
	}
	/* made here if missing (nothing is, for a request refused above) */
	if ((code = state_check_dir(true)))
		return code;   /* it said why */

	code = pool_admit(max_devices, cfg.timeout_ms, &admission, why, sizeof(why));
	if (code) {
		log_err("%s", why);
		return code;
	}
	uint64_t start = now_ms();
	code = spawn_serve(&cfg, &admission.admit, &res, &pid);
	/* A shutdown announced meanwhile does not wait for us (it would wait
	 * behind every add): it stops what it finds, and we take back what
	 * it could not see, while still holding the lock it waits for last. */
	if (pool_closed()) {
		/* the shutdown may have stopped it already */
		int gone = code ? 0 : device_delete_own((uint32_t)res.id, res.cookie, cfg.timeout_ms,
							true, why, sizeof(why));
		if (gone && gone != -ENODEV)
			log_err("ublkb%d: deleting it again: %s", res.id, why);
		pool_admit_end(&admission);
		log_err("the pool is shutting down (ublk-pool shutdown): no new devices");
		return EXIT_BUSY;
	}
	pool_admit_end(&admission);   /* the device is live or gone */
	if (code) {
		log_err("%s", res.msg);
		return code;
	}
	/* Told first, the metric after: a device is the caller's only once
	 * it was told of it. One that cannot be told (its pipe closed, a full
	 * disk) would be known to nobody: it goes again. */
	signal(SIGPIPE, SIG_IGN);
	if (json)
		print_json(&cfg, &res, pid);
	else
		printf("/dev/ublkb%d\n", res.id);
	if (fflush(stdout) || ferror(stdout)) {
		int err = errno;
		int gone = device_delete_own((uint32_t)res.id, res.cookie, cfg.timeout_ms, true, why,
					     sizeof(why));
		log_err("ublkb%d: writing it to standard output: %s; %s", res.id, strerror(err),
			gone && gone != -ENODEV ? why : "deleted it again");
		return EXIT_FAIL;
	}
	pool_record("add", now_ms() - start);
	return EXIT_OK;
}

int main(int argc, char **argv)
{
	return cli_output_done(tool_main(argc, argv));
}
