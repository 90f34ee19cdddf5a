/* ublk-del: stop and delete devices. */
#include "util/cli.h"
#include "kernel/ctrl.h"
#include "host/device.h"
#include "devopts.h"
#include "util/exitcodes.h"
#include "util/log.h"
#include "util/parse.h"
#include "host/state.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

enum { KEY_ALL = 'a', KEY_FORCE = 'f' };

static const struct cli_option options[] = {
	{ "all", 'a', NULL, "delete every ublk device of this host" },
	{ "timeout", 't', "SEC", "deadline per device (default 10)" },
	{ "force", 'f', NULL, "do not wait for holders: stop even if the device is open" },
	STATE_DIR_OPTION,
	{ "verbose", 'v', NULL, "more log output" },
	{ 0 },
};

static const struct cli_tool tool = {
	.name = "ublk-del",
	.synopsis = "[OPTIONS] DEV|ID|NAME... | --all",
	.summary = "Stop and delete ublk devices, given as /dev/ublkbN, N or the --name they were\n"
		   "added with. Waits (up to the\n"
		   "timeout) until nothing holds a device open, stops it, lets its server exit\n"
		   "and removes its state. A device whose server died is deleted too.",
	.options = options,
	.footer = "Exit codes: 0 ok, 1 failure, 2 usage, 3 no ublk in kernel, 4 permission,\n"
		  "6 no such device, 7 timeout, 8 device busy. With several devices the\n"
		  "first failure's code is returned. See ublk-del(8).\n",
};

/* The cookie of entry id, which name found: read after the name, then
 * the name read again, so that both are of one entry (a device deleted
 * meanwhile, and its id taken by a new one, is not the name's). */
static int entry_of_name(const char *name, uint32_t id, uint64_t *cookie)
{
	char now[80];

	*cookie = state_entry_cookie(id);
	if (state_config_get(id, "name", now, sizeof(now)) || strcmp(now, name) ||
	    state_entry_cookie(id) != *cookie) {
		log_err("'%s': its device (ublkb%u) went away while it was looked up", name, id);
		return EXIT_NO_DEVICE;
	}
	return EXIT_OK;
}

/* by_name: the device its entry was made for (entry_cookie, as it was
 * when the name was looked up), not whatever has the id */
static int del_one(uint32_t id, bool by_name, uint64_t entry_cookie, uint64_t timeout_ms,
		   bool force)
{
	char why[700];
	int ret = by_name ? device_delete_of_entry(id, entry_cookie, timeout_ms, force, why,
						   sizeof(why)) :
			    device_delete(id, timeout_ms, force, why, sizeof(why));

	if (!ret)
		return EXIT_OK;
	log_err("%s", why);
	if (ret == -ENODEV)
		return EXIT_NO_DEVICE;
	return exit_code_for(ret);
}

/* --all: highest id first, so that a device built over another ublk
 * device (made after it, so usually with a higher id) goes first and
 * lets go of it. One still held open at its deadline may have been held
 * by the server of a device deleted after it: it is tried again, and its
 * error is said only once it is final. A device that went away meanwhile
 * is not an error. */
static int del_all(uint64_t timeout_ms, bool force)
{
	uint32_t *ids;
	char **whys = NULL;   /* of the devices held so far, by their place in ids */
	int n = ctrl_list_ids(&ids), total = n, code = EXIT_OK;

	if (n < 0) {
		log_err("listing the ublk devices (/sys/class/ublk-char): %s", strerror(-n));
		return exit_code_for(n);
	}
	if (n && !(whys = calloc((size_t)n, sizeof(*whys)))) {
		free(ids);
		log_err("deleting %d devices: %s", n, strerror(ENOMEM));
		return EXIT_FAIL;
	}
	for (int i = 0; i < n / 2; i++) {
		uint32_t id = ids[i];
		ids[i] = ids[n - 1 - i];
		ids[n - 1 - i] = id;
	}
	while (n) {
		int held = 0, retry = 0;
		for (int i = 0; i < n; i++) {
			char why[700];
			int ret = device_delete(ids[i], timeout_ms, force, why, sizeof(why));
			if (ret == -EBUSY) {
				free(whys[held]);
				whys[held] = strdup(why);
				ids[held++] = ids[i];
				continue;
			}
			if (!ret)
				retry = held;   /* those held so far, maybe by this one */
			else if (ret != -ENODEV) {
				log_err("%s", why);
				code = code ? code : exit_code_for(ret);
			}
		}
		for (int i = retry; i < held; i++) {
			log_err("%s", whys[i] ? whys[i] : "a device is still in use");
			code = code ? code : EXIT_BUSY;
		}
		n = retry;
	}
	for (int i = 0; i < total; i++)
		free(whys[i]);
	free(whys);
	free(ids);
	return code;
}

static int tool_main(int argc, char **argv)
{
	uint64_t timeout_ms = CTRL_DEFAULT_TIMEOUT_MS;
	bool all = false, force = false;
	struct cli c;
	int key, code = EXIT_OK;

	log_init(argv[0]);
	cli_init(&c, &tool);
	while ((key = cli_next(&c, argc, argv)) != -1) {
		if (key == CLI_DONE)
			return c.exit_code;
		if (key == KEY_ALL)
			all = true;
		else if (key == KEY_FORCE)
			force = true;
		else if (devopts_common(&c, key, optarg, &timeout_ms) == CLI_DONE)
			return c.exit_code;
	}
	if (devopts_check_state_env(&c) == CLI_DONE)
		return c.exit_code;
	if (all == (optind < argc))
		return cli_usage_error(&c, all ? "--all takes no device" : "no device given");
	int refused = state_check_dir(false);   /* (it says why) */
	if (refused)
		return refused;
	if (access(ctrl_path(), F_OK)) {
		log_err("%s", ctrl_open_hint(-ENOENT));
		return EXIT_NO_UBLK;
	}
	if (all)
		return del_all(timeout_ms, force);
	/* every operand resolved first: a typo deletes nothing */
	int n = argc - optind;
	uint32_t *ids = calloc((size_t)n, sizeof(*ids));
	bool *by_name = calloc((size_t)n, sizeof(*by_name));
	uint64_t *cookies = calloc((size_t)n, sizeof(*cookies));
	if (!ids || !by_name || !cookies) {
		free(ids);
		free(by_name);
		free(cookies);
		log_err("%d devices: %s", n, strerror(ENOMEM));
		return EXIT_FAIL;
	}
	for (int i = 0; i < n && !code; i++) {
		char why[300];
		uint32_t given;
		if ((code = device_resolve(argv[optind + i], &ids[i], why, sizeof(why))))
			log_err("%s", why);
		else if ((by_name[i] = parse_dev_id(argv[optind + i], &given) != 0))
			code = entry_of_name(argv[optind + i], ids[i], &cookies[i]);
	}
	/* with several, the status of the first failure; a device named
	 * twice (3 and its name, say) is deleted once, not then "gone" */
	for (int i = 0, resolved = !code; resolved && i < n; i++) {
		bool again = false;
		for (int k = 0; k < i && !again; k++)
			again = ids[k] == ids[i];
		if (again)
			continue;
		int r = del_one(ids[i], by_name[i], cookies[i], timeout_ms, force);
		if (r && !code)
			code = r;
	}
	free(ids);
	free(by_name);
	free(cookies);
	return code;
}

int main(int argc, char **argv)
{
	return cli_output_done(tool_main(argc, argv));
}
