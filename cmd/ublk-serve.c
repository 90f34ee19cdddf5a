/* ublk-serve: serve one ublk device in the foreground. */
#include "cli.h"
#include "devopts.h"
#include "exitcodes.h"
#include "log.h"
#include "parse.h"
#include "server.h"

#include <fcntl.h>

enum { KEY_READY_FD = 0x200 };

static const struct cli_option options[] = {
	DEVICE_OPTIONS,
	{ "timeout", 't', "SEC", "deadline of each control step (default 10)" },
	STATE_DIR_OPTION,
	{ "ready-fd", KEY_READY_FD, "FD", "report readiness on FD instead of printing the device" },
	{ "verbose", 'v', NULL, "more log output (repeat for more)" },
	{ 0 },
};

static const struct cli_tool tool = {
	.name = "ublk-serve",
	.synopsis = "--base FILE [OPTIONS]",
	.summary = "Create a ublk block device over FILE and serve it in the foreground until\n"
		   "stopped by SIGTERM/SIGINT or by ublk-del. Prints /dev/ublkbN once the device\n"
		   "is live. ublk-add runs this in the background.",
	.options = options,
	.footer = "Exit codes: 0 ok, 1 failure, 2 usage, 3 no ublk in kernel, 4 permission,\n"
		  "5 bad image, 7 timeout. See ublk-serve(8).\n",
};

int main(int argc, char **argv)
{
	struct server_config cfg;
	struct cli c;
	int key;

	log_init(argv[0]);
	devopts_defaults(&cfg);
	cli_init(&c, &tool);
	while ((key = cli_next(&c, argc, argv)) != -1) {
		if (key == CLI_DONE)
			return c.exit_code;
		int r = devopts_apply(&c, &cfg, key, optarg);
		if (r == CLI_DONE)
			return c.exit_code;
		if (r)
			continue;
		if (key == KEY_READY_FD) {
			uint64_t fd;
			if (parse_uint(optarg, 3, 1024, &fd) || fcntl((int)fd, F_GETFD) < 0)
				return cli_usage_error(&c, "--ready-fd '%s': not an open descriptor", optarg);
			cfg.ready_fd = (int)fd;
			fcntl(cfg.ready_fd, F_SETFD, FD_CLOEXEC);
		}
	}
	if (optind < argc)
		return cli_usage_error(&c, "unexpected argument '%s'", argv[optind]);
	if (devopts_finish(&c, &cfg) == CLI_DONE)
		return c.exit_code;
	return server_run(&cfg);
}
