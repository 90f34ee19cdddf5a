/* ublk-serve: serve one ublk device in the foreground. */
#include "util/cli.h"
#include "host/device.h"
#include "devconfig.h"
#include "devopts.h"
#include "util/exitcodes.h"
#include "util/log.h"
#include "util/parse.h"
#include "host/ready.h"
#include "server.h"

#include <stdlib.h>
#include <unistd.h>

enum { KEY_READY_FD = 0x200, KEY_RECOVER, KEY_OWNER_NONCE };

static const struct cli_option options[] = {
	DEVICE_OPTIONS
	{ "timeout", 't', "SEC", "deadline of each control step (default 10)" },
	STATE_DIR_OPTION,
	{ "recover", KEY_RECOVER, "DEV", "attach to device DEV (/dev/ublkbN, N or name) whose server died" },
	{ "ready-fd", KEY_READY_FD, "FD", "report readiness on FD instead of printing the device" },
	SECRETS_FD_OPTION,
	{ "owner-nonce", KEY_OWNER_NONCE, "HEX", "random half of the device's identity, chosen by ublk-add (to find the device of a server it had to kill)" },
	{ "verbose", 'v', NULL, "more log output (repeat for more)" },
	{ 0 },
};

static const struct cli_tool tool = {
	.name = "ublk-serve",
	.synopsis = "--base FILE | --e2b ROOT --build ID [OPTIONS]\n"
		     "       ublk-serve --recover DEV [--state-dir DIR] [--timeout SEC]\n"
		     "                  [--ready-fd FD] [-v]",
	.summary = "Create a ublk block device over FILE and serve it in the foreground until\n"
		   "stopped by SIGTERM/SIGINT or by ublk-del. Prints /dev/ublkbN once the device\n"
		   "is live. ublk-add runs this in the background.\n\n"
		   "--recover attaches a new server to a device whose server died (IO waits\n"
		   "meanwhile), with the options saved in its state entry; IO resumes where it\n"
		   "stopped. ublk-pool reclaim --recover does this for every such device.",
	.options = options,
	.footer = "Exit codes: 0 ok, 1 failure, 2 usage, 3 no ublk in kernel, 4 permission,\n"
		  "5 bad image, 6 no such device, 7 timeout, 8 busy (a server is running).\n"
		  "See ublk-serve(8).\n",
};

/* Keys that describe the device (not taken with --recover). */
static bool describes_device(int key)
{
	return key != DEVOPT_TIMEOUT && key != DEVOPT_VERBOSE && key != DEVOPT_STATE_DIR;
}

static int tool_main(int argc, char **argv)
{
	struct server_config cfg;
	const char *recover = NULL;
	uint64_t timeout_ms = 0;
	int secrets_fd = -1;
	char why[600];
	struct cli c;
	int key, described = 0;

	log_init(argv[0]);
	devopts_defaults(&cfg);
	cli_init(&c, &tool);
	while ((key = cli_next(&c, argc, argv)) != -1) {
		if (key == CLI_DONE)
			return c.exit_code;
		int r = devopts_apply(&c, &cfg, key, optarg);
		if (r == CLI_DONE)
			return c.exit_code;
		if (r) {
			described += describes_device(key);
			if (key == DEVOPT_TIMEOUT)
				timeout_ms = cfg.timeout_ms;
			continue;
		}
		if (key == KEY_RECOVER)
			recover = optarg;
		if (key == KEY_READY_FD && devopts_fd_arg(&c, "ready-fd", optarg, &cfg.ready_fd) == CLI_DONE)
			return c.exit_code;
		if (key == KEY_OWNER_NONCE) {
			uint64_t nonce;
			if (parse_hex(optarg, 1, UINT32_MAX, &nonce))
				return cli_usage_error(&c, "--owner-nonce '%s': expected a hexadecimal "
						       "number from 1 to ffffffff", optarg);
			cfg.owner_nonce = (uint32_t)nonce;
		}
		if (key == DEVOPT_SECRETS_FD && devopts_fd_arg(&c, "secrets-fd", optarg, &secrets_fd) == CLI_DONE)
			return c.exit_code;
	}
	if (optind < argc)
		return cli_usage_error(&c, "unexpected argument '%s'", argv[optind]);
	if (devopts_check_state_env(&c) == CLI_DONE)
		return c.exit_code;
	if (!recover) {
		/* before devopts_finish, which checks the credentials it set */
		int code = secrets_fd >= 0 ? devopts_read_secrets_fd(secrets_fd, &cfg, why, sizeof(why)) : 0;
		if (secrets_fd >= 0)
			close(secrets_fd);
		if (code) {
			log_err("--secrets-fd: %s", why);
			if (cfg.ready_fd >= 0)
				ready_send(cfg.ready_fd, "error %d --secrets-fd: %s", code, why);
			return code;
		}
		if (devopts_finish(&c, &cfg) == CLI_DONE)
			return c.exit_code;
		return server_run(&cfg);
	}
	if (described || secrets_fd >= 0 || cfg.owner_nonce)
		return cli_usage_error(&c, "--recover takes the device's options from its state entry; "
				       "only --state-dir, --timeout, --ready-fd and -v go with it");
	/* the entry's secret is the device's; a token of the caller's is not */
	unsetenv("UBLK_HTTP_AUTH");
	uint32_t id;
	int code = device_resolve(recover, &id, why, sizeof(why));
	if (!code)
		code = devconfig_read(id, &cfg, why, sizeof(why));
	if (code) {
		log_err("%s", why);
		if (cfg.ready_fd >= 0)
			ready_send(cfg.ready_fd, "error %d %s", code, why);
		return code;
	}
	cfg.recover_id = (int)id;
	if (timeout_ms)   /* the command line wins over the saved deadline */
		cfg.timeout_ms = timeout_ms;
	return server_run(&cfg);
}

int main(int argc, char **argv)
{
	return cli_output_done(tool_main(argc, argv));
}
