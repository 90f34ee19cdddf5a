/* ublk-pool: see and clean up every ublk device of the host. */
#include "cache.h"
#include "cli.h"
#include "device.h"
#include "devopts.h"
#include "exitcodes.h"
#include "json.h"
#include "log.h"
#include "parse.h"
#include "pool.h"
#include "state.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

enum { KEY_JSON = 'j', KEY_CACHES = 0x400, KEY_GRACE };

/* seconds a kernel device without a state entry is left alone */
static uint64_t grace_s = POOL_GRACE_S;

static const struct cli_option options[] = {
	{ "json", 'j', NULL, "machine-readable output" },
	{ "caches", KEY_CACHES, NULL, "reclaim: also remove the caches of stale entries" },
	{ "timeout", 't', "SEC", "reclaim: deadline per device (default 10)" },
	{ "grace", KEY_GRACE, "SEC", "reclaim: leave devices without a state entry younger than this (default 30)" },
	STATE_DIR_OPTION,
	{ "verbose", 'v', NULL, "more log output" },
	{ 0 },
};

static const struct cli_tool tool = {
	.name = "ublk-pool",
	.synopsis = "list|status|reclaim [OPTIONS]",
	.summary = "Every ublk device of this host, from the kernel and the state directory.\n"
		   "  list     one line per device: id, state, server, name, base\n"
		   "  status   list with IO statistics and cache usage\n"
		   "  reclaim  delete devices whose server died or that no state entry knows, and\n"
		   "           remove stale state entries (--caches: and their caches); idempotent",
	.options = options,
	.footer = "Exit codes: 0 ok, 1 failure (some device could not be reclaimed), 2 usage,\n"
		  "4 permission. See ublk-pool(8).\n",
};

static const char *kernel_state_name(int s)
{
	switch (s) {
	case 0: return "dead";
	case 1: return "live";
	case 2: return "quiesced";
	default: return "-";
	}
}

static void print_json(const struct pool_dev *devs, int n, bool with_stats)
{
	struct json j;
	json_begin(&j, stdout);
	json_arr_begin(&j, "devices");
	for (int i = 0; i < n; i++) {
		const struct pool_dev *d = &devs[i];
		char path[32];
		snprintf(path, sizeof(path), "/dev/ublkb%u", d->id);
		json_obj_begin(&j, NULL);
		json_u64(&j, "id", d->id);
		json_str(&j, "path", path);
		json_bool(&j, "in_kernel", d->in_kernel);
		json_str(&j, "kernel_state", kernel_state_name(d->kernel_state));
		json_bool(&j, "has_state", d->has_state);
		json_str(&j, "state", d->has_state ? d->state : NULL);
		json_i64(&j, "pid", d->pid);
		json_bool(&j, "server_alive", d->alive);
		json_str(&j, "name", d->name[0] ? d->name : NULL);
		json_str(&j, "base", d->base[0] ? d->base : NULL);
		json_str(&j, "cache", d->cache[0] ? d->cache : NULL);
		json_u64(&j, "size", d->size);
		json_u64(&j, "queues", d->queues);
		json_u64(&j, "depth", d->depth);
		json_u64(&j, "uptime_s", d->uptime_s);
		json_u64(&j, "cache_bytes", d->cache_bytes);
		json_str(&j, "problem", pool_problem(d, grace_s));
		if (with_stats)
			json_raw(&j, "stats", d->stats[0] ? d->stats : "null");
		json_obj_end(&j);
	}
	json_arr_end(&j);
	json_end(&j);
}

static uint64_t stat_field(const char *stats, const char *key)
{
	char pat[64];
	const char *p;
	snprintf(pat, sizeof(pat), "\"%s\":", key);
	return (p = strstr(stats, pat)) ? strtoull(p + strlen(pat), NULL, 10) : 0;
}

static void print_table(const struct pool_dev *devs, int n, bool with_stats)
{
	printf("%-12s %-9s %-9s %8s %7s %-16s %s\n", "DEVICE", "KERNEL", "STATE", "PID", "UP",
	       "NAME", with_stats ? "READS/WRITES/ERRORS  CACHE  BASE" : "BASE");
	for (int i = 0; i < n; i++) {
		const struct pool_dev *d = &devs[i];
		char dev[24], up[16], pid[24], extra[96] = "";
		snprintf(dev, sizeof(dev), "/dev/ublkb%u", d->id);
		snprintf(up, sizeof(up), d->uptime_s >= 3600 ? "%lluh" : d->uptime_s >= 60 ? "%llum" : "%llus",
			 (unsigned long long)(d->uptime_s >= 3600 ? d->uptime_s / 3600 :
					      d->uptime_s >= 60 ? d->uptime_s / 60 : d->uptime_s));
		snprintf(pid, sizeof(pid), "%d%s", (int)d->pid, d->alive ? "" : "!");
		if (with_stats)
			snprintf(extra, sizeof(extra), "%llu/%llu/%llu  %lluM  ",
				 (unsigned long long)stat_field(d->stats, "reads"),
				 (unsigned long long)stat_field(d->stats, "writes"),
				 (unsigned long long)stat_field(d->stats, "errors"),
				 (unsigned long long)(d->cache_bytes >> 20));
		printf("%-12s %-9s %-9s %8s %7s %-16s %s%s%s%s\n", dev, kernel_state_name(d->kernel_state),
		       d->has_state ? d->state : "(none)", pid, d->has_state ? up : "-",
		       d->name[0] ? d->name : "-", extra, d->base[0] ? d->base : "-",
		       pool_problem(d, grace_s) ? "  <- " : "", pool_problem(d, grace_s) ? pool_problem(d, grace_s) : "");
	}
}

static int reclaim(const struct pool_dev *devs, int n, bool caches, uint64_t timeout_ms, bool json)
{
	struct json j;
	int code = EXIT_OK;

	if (json) {
		json_begin(&j, stdout);
		json_arr_begin(&j, "actions");
	}
	for (int i = 0; i < n; i++) {
		const struct pool_dev *d = &devs[i];
		const char *why = pool_problem(d, grace_s);
		char msg[800], err[700];
		int ret = 0;
		if (!why)
			continue;
		if (d->in_kernel) {
			ret = device_delete(d->id, timeout_ms, true, err, sizeof(err));
			if (ret == -ENODEV)
				ret = 0;
			snprintf(msg, sizeof(msg), ret ? "ublkb%u (%s): delete failed: %s" :
				 "deleted ublkb%u (%s)", d->id, why, err);
		} else {
			state_remove(d->id);
			snprintf(msg, sizeof(msg), "removed the state entry of ublkb%u (%s)", d->id, why);
		}
		if (ret)
			code = EXIT_FAIL;
		if (json) {
			json_obj_begin(&j, NULL);
			json_u64(&j, "id", d->id);
			json_str(&j, "problem", why);
			json_bool(&j, "ok", !ret);
			json_str(&j, "message", msg);
			json_obj_end(&j);
		} else {
			printf("%s\n", msg);
		}
		if (!ret && caches && d->cache[0] && !d->alive) {
			ret = cache_remove(d->cache);
			snprintf(msg, sizeof(msg), ret ? "removing orphaned cache %s: %s" :
				 "removed orphaned cache %s%s", d->cache, ret ? strerror(-ret) : "");
			if (json) {
				json_obj_begin(&j, NULL);
				json_u64(&j, "id", d->id);
				json_str(&j, "cache", d->cache);
				json_bool(&j, "ok", !ret);
				json_obj_end(&j);
			} else {
				printf("%s\n", msg);
			}
		}
	}
	if (json) {
		json_arr_end(&j);
		json_end(&j);
	}
	return code;
}

int main(int argc, char **argv)
{
	struct server_config cfg;   /* for the shared --timeout and --state-dir */
	struct pool_dev *devs = NULL;
	bool json = false, caches = false;
	struct cli c;
	int key, n, code;

	log_init(argv[0]);
	devopts_defaults(&cfg);
	cli_init(&c, &tool);
	/* "ublk-pool COMMAND [OPTIONS]": options are parsed after the command */
	const char *cmd = argc > 1 && argv[1][0] != '-' ? argv[1] : NULL;
	if (cmd) {
		argc--;
		argv++;
	}
	while ((key = cli_next(&c, argc, argv)) != -1) {
		if (key == CLI_DONE)
			return c.exit_code;
		if (key == KEY_JSON)
			json = true;
		else if (key == KEY_CACHES)
			caches = true;
		else if (key == KEY_GRACE) {
			uint64_t ms;
			if (parse_seconds(optarg, &ms))
				return cli_usage_error(&c, "--grace '%s': expected seconds", optarg);
			grace_s = ms / 1000;
		}
		else if (devopts_apply(&c, &cfg, key, optarg) == CLI_DONE)
			return c.exit_code;
	}
	if (!cmd)
		return cli_usage_error(&c, "no command given (list, status, reclaim)");
	if (optind < argc)
		return cli_usage_error(&c, "unexpected argument '%s'", argv[optind]);
	bool is_list = !strcmp(cmd, "list"), is_status = !strcmp(cmd, "status");
	if (!is_list && !is_status && strcmp(cmd, "reclaim"))
		return cli_usage_error(&c, "unknown command '%s' (list, status, reclaim)", cmd);
	if (!is_list && !is_status && geteuid() != 0) {
		log_err("permission denied: reclaim needs root (CAP_SYS_ADMIN)");
		return EXIT_PERM;
	}
	n = pool_scan(&devs);
	if (n < 0) {
		log_err("scanning devices: %s", strerror(-n));
		return EXIT_FAIL;
	}
	if (is_list || is_status) {
		if (json)
			print_json(devs, n, is_status);
		else
			print_table(devs, n, is_status);
		code = EXIT_OK;
	} else {
		code = reclaim(devs, n, caches, cfg.timeout_ms, json);
	}
	free(devs);
	return code;
}
