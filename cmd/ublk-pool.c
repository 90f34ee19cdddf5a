/* ublk-pool: see and clean up every ublk device of the host. */
#include "util/cli.h"
#include "kernel/ctrl.h"
#include "devopts.h"
#include "image/access_trace.h"
#include "util/exitcodes.h"
#include "util/json.h"
#include "util/log.h"
#include "util/output_file.h"
#include "image/http.h"
#include "util/parse.h"
#include "host/metrics.h"
#include "host/device.h"
#include "host/pool.h"
#include "host/pool_view.h"
#include "pool_admin.h"
#include "host/state.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

enum { KEY_JSON = 'j', KEY_NOHEADINGS = 'n', KEY_OUTPUT = 'o', KEY_CACHES = 0x400, KEY_GRACE, KEY_TEXTFILE,
       KEY_RECOVER, KEY_INTERVAL, KEY_HANG, KEY_RAW, KEY_CHECK };

/* seconds a kernel device without a state entry is left alone */
static uint64_t grace_s = POOL_GRACE_S;

static const struct cli_option options[] = {
	{ "json", 'j', NULL, "machine-readable output" },
	{ "output", 'o', "COLS|FILE", "list, status: these columns, comma-separated (see ublk-pool(8)); "
	  "trace-merge: the trace to write" },
	{ "noheadings", 'n', NULL, "list, status: no line of column names" },
	{ "raw", KEY_RAW, NULL, "list, status: unaligned, odd bytes as \\xHH (for scripts)" },
	{ "check", KEY_CHECK, NULL, "list DEV: exit 0 only if DEV is live and its server healthy" },
	{ "recover", KEY_RECOVER, NULL, "reclaim: attach a new server to recoverable devices instead of deleting them" },
	{ "caches", KEY_CACHES, NULL, "reclaim, watch: also remove the caches of the devices deleted" },
	{ "interval", KEY_INTERVAL, "SEC", "watch: seconds between passes (default 1)" },
	{ "timeout", 't', "SEC", "reclaim, watch: deadline per device; shutdown: for all; save-trace: for the trace (default 10)" },
	{ "textfile", KEY_TEXTFILE, "DIR", "metrics: write ublk.prom atomically into DIR (node-exporter)" },
	{ "grace", KEY_GRACE, "SEC", "a device without a state entry is a problem only once this old (default 30)" },
	{ "hang-timeout", KEY_HANG, "SEC", "reclaim --recover, watch: kill and recover a server hung this long (default 120; 0: never); list --check, --json: count it hung" },
	STATE_DIR_OPTION,
	{ "verbose", 'v', NULL, "more log output" },
	{ 0 },
};

static const struct cli_tool tool = {
	.name = "ublk-pool",
	.synopsis = "list|status [DEV|NAME|ID...] | reclaim|watch|shutdown|metrics\n"
		    "       | save-trace DEV | trace-merge -o OUT TRACE... | trace-show TRACE\n"
		    "       [OPTIONS]",
	.summary = "Every ublk device of this host, from the kernel and the state directory.\n"
		   "  list     one line per device: id, state, server, size, name, base; only the\n"
		   "           devices given, if any (exit 6 if one is not there)\n"
		   "  status   list with IO statistics and cache usage\n"
		   "  reclaim  delete devices whose server died or that no state entry knows, and\n"
		   "           remove stale state entries (--caches: and their caches); idempotent.\n"
		   "           --recover: start a new server for devices whose server died instead\n"
		   "           (their IO waits meanwhile); deletes only what cannot be recovered\n"
		   "  watch    reclaim --recover every --interval until SIGTERM/SIGINT/SIGHUP\n"
		   "  shutdown stop every device in parallel within --timeout; adds meanwhile are\n"
		   "           refused\n"
		   "  metrics  Prometheus text format on stdout, or into a node-exporter\n"
		   "           --textfile DIR\n"
		   "  save-trace DEV\n"
		   "           have the server of DEV (--record-access) write its access trace now\n"
		   "  trace-merge -o OUT TRACE...\n"
		   "           combine access traces of starts of the same images into OUT: the\n"
		   "           chunks in at least half of them, at their median time\n"
		   "  trace-show TRACE\n"
		   "           an access trace's images, start, label and entry count",
	.options = options,
	.footer = "Exit codes: 0 ok, 1 failure (some device could not be reclaimed; --check: not\n"
		  "healthy), 2 usage, 3 no ublk in kernel (list DEV, save-trace), 4 permission,\n"
		  "5 bad trace (trace-merge, trace-show), 6 no such device (list DEV, save-trace),\n"
		  "7 timeout (shutdown, save-trace).\n"
		  "See ublk-pool(8).\n",
};

/* The commands each option acts in (the others: all of them). */
static const struct {
	int key;
	const char *commands;
} option_commands[] = {
	{ KEY_JSON, "list, status, reclaim, watch, shutdown, trace-merge, trace-show" },
	{ KEY_OUTPUT, "list, status, trace-merge" },
	{ KEY_NOHEADINGS, "list, status" },
	{ KEY_RAW, "list, status" },
	{ KEY_CHECK, "list" },
	{ KEY_RECOVER, "reclaim" },   /* watch always recovers */
	{ KEY_CACHES, "reclaim, watch" },
	{ KEY_INTERVAL, "watch" },
	{ 't', "reclaim, watch, shutdown, save-trace" },
	{ KEY_TEXTFILE, "metrics" },
	{ KEY_GRACE, "list, status, reclaim, watch, metrics" },
	{ KEY_HANG, "list, status, reclaim, watch" },
	{ DEVOPT_STATE_DIR, "list, status, reclaim, watch, shutdown, metrics, save-trace" },
};

static const char *option_name(int key)
{
	for (const struct cli_option *o = options; o->name; o++)
		if (o->key == key)
			return o->name;
	return "?";
}

/* NULL if option key acts in cmd, else the commands it acts in. */
static const char *option_applies(int key, const char *cmd)
{
	size_t n = strlen(cmd);

	for (size_t i = 0; i < sizeof(option_commands) / sizeof(option_commands[0]); i++) {
		const char *list = option_commands[i].commands, *p = list;
		if (option_commands[i].key != key)
			continue;
		while ((p = strstr(p, cmd)) && ((p > list && p[-1] != ' ') || (p[n] && p[n] != ',')))
			p += n;
		return p ? NULL : list;
	}
	return NULL;
}

/* What reclaim or shutdown did: a line each, or with json_list a JSON
 * object holding the list under that name (ublk-pool(8)). Shutdown lists
 * failed stops only in JSON: their errors were logged. */
static void print_report(const struct pool_report *r, const char *json_list)
{
	struct json j;

	if (json_list) {
		json_begin(&j, stdout);
		json_arr_begin(&j, json_list);
	}
	for (int i = 0; i < r->n; i++) {
		const struct pool_action *a = &r->actions[i];
		if (!json_list) {
			if (a->ok || a->kind != POOL_STOP)
				printf("%s\n", a->message);
			continue;
		}
		json_obj_begin(&j, NULL);
		json_u64(&j, "id", a->id);
		if (a->kind == POOL_REMOVE_CACHE) {
			json_str(&j, "cache", a->cache);
		} else if (a->kind != POOL_STOP) {
			json_str(&j, "problem", a->problem);
			json_str(&j, "action", pool_action_name(a->kind));
		}
		json_bool(&j, "ok", a->ok);
		if (a->kind != POOL_STOP && a->kind != POOL_REMOVE_CACHE)
			json_str(&j, "message", a->message);
		json_obj_end(&j);
	}
	if (json_list) {
		json_arr_end(&j);
		json_end(&j);
	}
	fflush(stdout);
}

static void watch_pass(const struct pool_report *r, void *json)
{
	print_report(r, *(bool *)json ? "actions" : NULL);
}

/* list and status: every device, or those operands name (exit 6 for one
 * that is not there); with check, only whether the one given is healthy. */
static int list_devices(struct pool_dev *devs, int n, char **want, int n_want, bool stats,
			bool json, bool check, struct pool_view *view, const char *columns, struct cli *c)
{
	char why[600];
	int kept = 0;

	view->grace_s = grace_s;
	if (pool_view_columns(view, columns ? columns : stats ? POOL_VIEW_STATUS : POOL_VIEW_LIST,
			      why, sizeof(why)))
		return cli_usage_error(c, "-o: %s", why);
	for (int k = 0; k < n_want; k++) {
		uint32_t id;
		int code = device_resolve(want[k], &id, why, sizeof(why)), i = 0;
		while (!code && i < n && devs[i].id != id)
			i++;
		if (!code && i == n) {
			snprintf(why, sizeof(why), "ublkb%u: no such device", id);
			code = EXIT_NO_DEVICE;
		}
		if (code) {
			log_err("%s", why);
			return code;
		}
		/* keep the devices asked for, in the order asked, once */
		bool seen = false;
		for (int m = 0; m < kept; m++)
			seen |= devs[m].id == id;
		if (!seen) {
			struct pool_dev d = devs[i];
			memmove(&devs[kept + 1], &devs[kept], (size_t)(i - kept) * sizeof(*devs));
			devs[kept++] = d;
		}
	}
	if (n_want)
		n = kept;
	if (check) {
		const struct pool_dev *d = &devs[0];
		const char *problem = pool_problem(d, grace_s);
		if (!problem && !(d->in_kernel && d->kernel_state == UBLK_S_DEV_LIVE))
			problem = "not live in the kernel";
		if (!problem && !(d->has_state && !strcmp(d->state, "live") && d->alive))
			problem = "its server is not serving it";
		if (!problem && !pool_hung(d, view->hang_ms, why, sizeof(why)))
			return EXIT_OK;
		log_err("ublkb%u: not healthy: %s", d->id, problem ? problem : why);
		return EXIT_FAIL;
	}
	if (json)
		pool_view_json(stdout, view, devs, n, stats);
	else
		pool_view_table(stdout, view, devs, n);
	return EXIT_OK;
}

/* trace-merge: the traces given, merged into out (docs/access-trace.md). */
static int trace_merge_cmd(char **paths, int n, const char *out, bool json, struct cli *c)
{
	struct access_trace *in, merged = { 0 };
	char why[1200], sub[1000];
	uint64_t seen = 0;
	int code = EXIT_OK, ret = 0;

	if (!out)
		return cli_usage_error(c, "trace-merge needs -o OUT");
	/* a trace is written in place of a file, never to stdout */
	if (!*out || !strcmp(out, "-"))
		return cli_usage_error(c, "trace-merge -o '%s': expected a file name", out);
	if (!n)
		return cli_usage_error(c, "trace-merge needs one or more TRACE files");
	/* an output that cannot be: a usage error before any work, as
	 * ublk-export-diff -o says it */
	if (!http_is_url(out) && output_file_check(out, 0, why, sizeof(why))) {
		log_err("%s", why);
		return EXIT_USAGE;
	}
	if (!(in = calloc((size_t)n, sizeof(*in)))) {
		log_err("out of memory");
		return EXIT_FAIL;
	}
	for (int i = 0; i < n && !ret; i++) {
		if ((ret = trace_load(paths[i], &in[i], why, sizeof(why)))) {
			log_err("%s", why);
		} else if (i && !trace_images_match(&in[i], &in[0], sub, sizeof(sub))) {
			log_err("%s: not a trace of the images of %s: %s", paths[i], paths[0], sub);
			ret = -EINVAL;
		}
	}
	if (ret) {
		code = exit_code_for_image(ret);
	} else if ((ret = trace_merge_seen(in, (size_t)n, &merged, &seen, why, sizeof(why)))) {
		log_err("merging: %s", why);        /* more than a trace holds, or out of memory */
		code = EXIT_FAIL;
	} else if ((ret = trace_save(out, &merged, why, sizeof(why)))) {
		log_err("%s", why);
		code = EXIT_FAIL;
	} else if (json) {
		struct json j;
		json_begin(&j, stdout);
		json_u64(&j, "traces", (uint64_t)n);
		json_u64(&j, "chunks", merged.n);
		json_u64(&j, "seen", seen);
		json_str(&j, "output", out);
		json_end(&j);
	} else {
		printf("merged %d trace%s: %zu chunks (of %llu seen) -> %s\n", n, n == 1 ? "" : "s",
		       merged.n, (unsigned long long)seen, out);
	}
	trace_free(&merged);
	for (int i = 0; i < n; i++)
		trace_free(&in[i]);
	free(in);
	return code;
}

/* trace-show: what a trace holds, without its entries. */
static int trace_show_cmd(const char *path, bool json)
{
	struct access_trace t;
	char why[1200], when[64] = "?";
	size_t writes = 0, per_image[TRACE_MAX_IMAGES] = { 0 };
	int ret = trace_load(path, &t, why, sizeof(why));

	if (ret) {
		log_err("%s", why);
		return exit_code_for_image(ret);
	}
	for (size_t i = 0; i < t.n; i++) {
		writes += t.entries[i].write;
		per_image[t.entries[i].image]++;
	}
	uint64_t span = t.n ? t.entries[t.n - 1].t_ms : 0;
	if (json) {
		struct json j;
		json_begin(&j, stdout);
		json_u64(&j, "version", TRACE_VERSION);
		json_arr_begin(&j, "images");
		for (unsigned i = 0; i < t.nimages; i++) {
			const struct trace_image *img = &t.images[i];
			json_obj_begin(&j, NULL);
			json_str(&j, "role", trace_role_name(img->role));
			json_str(&j, "identity", img->identity);
			json_u64(&j, "size", img->size);
			json_u64(&j, "chunk_size", img->chunk_size);
			json_u64(&j, "chunks", trace_image_chunks(img));
			json_u64(&j, "entries", per_image[i]);
			json_obj_end(&j);
		}
		json_arr_end(&j);
		json_u64(&j, "start_ms", t.start_ms);
		json_str(&j, "label", t.label);
		json_u64(&j, "entries", t.n);
		json_u64(&j, "writes", writes);
		json_u64(&j, "span_ms", span);
		json_end(&j);
	} else {
		time_t s = (time_t)(t.start_ms / 1000);
		struct tm tm;
		if (gmtime_r(&s, &tm))
			strftime(when, sizeof(when), "%Y-%m-%d %H:%M:%S", &tm);
		printf("%s: access trace format %d, label %s, started %s.%03llu UTC\n", path, TRACE_VERSION,
		       t.label, when, (unsigned long long)(t.start_ms % 1000));
		for (unsigned i = 0; i < t.nimages; i++) {
			const struct trace_image *img = &t.images[i];
			printf("image %u: %s %s, %llu bytes, %llu chunks of %u, %zu in the trace\n", i,
			       trace_role_name(img->role), img->identity, (unsigned long long)img->size,
			       (unsigned long long)trace_image_chunks(img), img->chunk_size, per_image[i]);
		}
		printf("%zu entries (%zu written) in the first %llu ms\n", t.n, writes, (unsigned long long)span);
	}
	trace_free(&t);
	return EXIT_OK;
}

static int tool_main(int argc, char **argv)
{
	uint64_t timeout_ms = CTRL_DEFAULT_TIMEOUT_MS;
	struct pool_dev *devs = NULL;
	struct reclaim_opts ro = { .hang_ms = 120000 };
	struct pool_report report = { 0 };
	bool json = false, check = false;
	struct pool_view view = { .headings = true };
	const char *columns = NULL;
	uint64_t interval_ms = 1000;
	const char *textfile = NULL;
	struct cli c;
	int key, n, code;

	log_init(argv[0]);
	cli_init(&c, &tool);
	int given[64], n_given = 0;
	while ((key = cli_next(&c, argc, argv)) != -1) {
		if (key == CLI_DONE)
			return c.exit_code;
		if (n_given == 64)
			return cli_usage_error(&c, "too many options");
		given[n_given++] = key;
		if (key == KEY_JSON)
			json = true;
		else if (key == KEY_OUTPUT)
			columns = optarg;
		else if (key == KEY_NOHEADINGS)
			view.headings = false;
		else if (key == KEY_RAW)
			view.raw = true;
		else if (key == KEY_CHECK)
			check = true;
		else if (key == KEY_CACHES)
			ro.caches = true;
		else if (key == KEY_RECOVER)
			ro.recover = true;
		else if (key == KEY_INTERVAL) {
			if (parse_seconds(optarg, &interval_ms) || interval_ms < 10 || interval_ms > 3600000)
				return cli_usage_error(&c, "--interval '%s': expected seconds, 0.01 to 3600",
						       optarg);
		}
		else if (key == KEY_HANG) {
			if (parse_seconds(optarg, &ro.hang_ms) || ro.hang_ms > 86400000)
				return cli_usage_error(&c, "--hang-timeout '%s': expected seconds, at most "
						       "86400 (0: never)", optarg);
		}
		else if (key == KEY_TEXTFILE) {
			if (!*optarg)
				return cli_empty_value(&c, "textfile", "DIR");
			textfile = optarg;
		}
		else if (key == KEY_GRACE) {
			uint64_t ms;
			if (parse_seconds(optarg, &ms) || ms > 86400000)
				return cli_usage_error(&c, "--grace '%s': expected seconds, at most 86400",
						       optarg);
			grace_s = (ms + 999) / 1000;   /* whole seconds, never less than given */
		}
		else if (devopts_common(&c, key, optarg, &timeout_ms) == CLI_DONE)
			return c.exit_code;
	}
	/* the command is the first operand, before or after the options */
	const char *cmd = optind < argc ? argv[optind++] : NULL;
	if (!cmd)
		return cli_usage_error(&c, "no command given (list, status, reclaim, watch, shutdown, metrics, "
				       "save-trace, trace-merge, trace-show)");
	bool listing = !strcmp(cmd, "list") || !strcmp(cmd, "status");
	bool is_merge = !strcmp(cmd, "trace-merge"), is_show = !strcmp(cmd, "trace-show");
	bool is_save = !strcmp(cmd, "save-trace");
	if (optind < argc && !listing && !is_merge && !is_show && !is_save)
		return cli_usage_error(&c, "unexpected argument '%s'", argv[optind]);

	bool is_list = !strcmp(cmd, "list"), is_status = !strcmp(cmd, "status");
	bool is_metrics = !strcmp(cmd, "metrics"), is_watch = !strcmp(cmd, "watch");
	if (!is_list && !is_status && !is_metrics && !is_watch && strcmp(cmd, "reclaim") &&
	    strcmp(cmd, "shutdown") && !is_merge && !is_show && !is_save)
		return cli_usage_error(&c, "unknown command '%s' (list, status, reclaim, watch, shutdown, "
				       "metrics, save-trace, trace-merge, trace-show)", cmd);
	for (int i = 0; i < n_given; i++) {
		const char *with = option_applies(given[i], cmd);
		if (with)
			return cli_usage_error(&c, "--%s does nothing with %s (it goes with %s)",
					       option_name(given[i]), cmd, with);
	}
	/* files, not devices: no state directory, no root */
	if (is_merge)
		return trace_merge_cmd(argv + optind, argc - optind, columns, json, &c);
	if (is_show && argc - optind != 1)
		return cli_usage_error(&c, "trace-show takes one TRACE");
	if (is_show)
		return trace_show_cmd(argv[optind], json);
	if (devopts_check_state_env(&c) == CLI_DONE)
		return c.exit_code;
	if (check && argc - optind != 1)
		return cli_usage_error(&c, "--check takes one device");
	if (check && (json || columns || !view.headings || view.raw))
		return cli_usage_error(&c, "--check prints nothing: it goes without --json, -o, -n and --raw");
	if (json && (columns || !view.headings || view.raw))
		return cli_usage_error(&c, "--json goes without -o, -n and --raw");
	bool hang_given = false;
	for (int i = 0; i < n_given; i++)
		hang_given |= given[i] == KEY_HANG;
	if (hang_given && !strcmp(cmd, "reclaim") && !ro.recover)
		return cli_usage_error(&c, "--hang-timeout goes with reclaim --recover (or watch)");
	if (hang_given && listing && !check && !json)
		return cli_usage_error(&c, "--hang-timeout goes with %s: the table shows no hang",
				       is_status ? "status --json" : "list --check or --json");
	/* a state directory others could have prepared is refused before use */
	int refused = state_check_dir(false);
	if (refused)
		return refused;
	if (is_save) {
		char why[800];
		if (argc - optind != 1)
			return cli_usage_error(&c, "save-trace takes one device");
		code = pool_save_trace(argv[optind], timeout_ms, why, sizeof(why));
		if (code)
			log_err("%s", why);
		else
			printf("%s: access trace written\n", argv[optind]);
		return code;
	}
	if (!strcmp(cmd, "shutdown")) {
		if (geteuid() != 0) {
			log_err("permission denied: shutdown needs root (CAP_SYS_ADMIN)");
			return EXIT_PERM;
		}
		code = pool_shutdown(timeout_ms, &report);
		print_report(&report, json ? "stopped" : NULL);
		pool_report_free(&report);
		return code;
	}
	is_list |= is_metrics;   /* reads like list */
	if (!is_list && !is_status && geteuid() != 0) {
		log_err("permission denied: %s needs root (CAP_SYS_ADMIN)", cmd);
		return EXIT_PERM;
	}
	ro.timeout_ms = timeout_ms;
	ro.grace_s = grace_s;
	if (is_watch) {
		/* said once, so that a service's log shows what it looks after */
		char hang[64] = "hung servers are left alone (--hang-timeout 0)";
		if (ro.hang_ms)
			snprintf(hang, sizeof(hang), "a server hung for %.0f s is killed and recovered",
				 ro.hang_ms / 1000.0);
		log_info("watching the devices of %s every %.2f s: a dead server is recovered, %s; "
			 "what cannot be recovered is deleted%s", state_dir(), interval_ms / 1000.0, hang,
			 ro.caches ? " with its cache" : "");
		if (access(ctrl_path(), F_OK))
			log_err("warning: %s", ctrl_open_hint(-ENOENT));
		return pool_watch(&ro, interval_ms, watch_pass, &json);
	}
	n = is_list || is_status ? pool_scan(&devs, 0) : pool_scan_unhung(&devs, &ro);
	if (n == -EPERM)
		log_err("permission denied: %s needs root (CAP_SYS_ADMIN) to see the kernel's ublk "
			"devices", cmd);
	if (n == -EPERM || n == -EACCES)   /* the state directory's refusal is said */
		return EXIT_PERM;
	if (n < 0) {
		if (n != -EIO)   /* -EIO was said */
			log_err("scanning devices: %s", strerror(-n));
		return EXIT_FAIL;
	}
	if (is_metrics) {
		code = pool_metrics(devs, n, grace_s, textfile);
	} else if (listing) {
		pool_cache_sizes(devs, n);
		view.hang_ms = ro.hang_ms;
		code = list_devices(devs, n, argv + optind, argc - optind, is_status, json, check, &view,
				    columns, &c);
	} else {
		code = pool_reclaim(devs, n, &ro, &report);
		print_report(&report, json ? "actions" : NULL);
		pool_report_free(&report);
	}
	free(devs);
	return code;
}

int main(int argc, char **argv)
{
	return cli_output_done(tool_main(argc, argv));
}
