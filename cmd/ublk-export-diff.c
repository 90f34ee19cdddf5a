/* ublk-export-diff: export what a device changed as a diff; inspect a
 * diff; flatten a layer stack into a plain image. */
#include "util/cli.h"
#include "host/device.h"
#include "devopts.h"
#include "image/e2b_inspect.h"
#include "image/e2b_store.h"
#include "util/exitcodes.h"
#include "export.h"
#include "util/json.h"
#include "util/log.h"
#include "util/parse.h"
#include "image/stack.h"
#include "host/state.h"
#include "image/layer_http.h"

#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

enum {
	KEY_OUTPUT = 'o', KEY_ZSTD = 'z', KEY_KEEP = 'k', KEY_JSON = 'j',
	KEY_FRAME = 0x300, KEY_FORMAT, KEY_LIVE, KEY_INSPECT, KEY_FLATTEN, KEY_PROGRESS, KEY_NO_PROGRESS,
	KEY_BUILD_ID, KEY_HEADER_VERSION, KEY_COMPRESS, KEY_LEVEL,
};

static const struct cli_option options[] = {
	{ "output", 'o', "FILE", "write here (default: stdout); it appears only once complete; "
				 "--format e2b: the storage root ROOT (default: the parent's, if a folder)" },
	{ "cache", 'c', "FILE", "export this cache of a stopped device instead of a device" },
	{ "zstd", 'z', NULL, "compress frames with zstd" },
	{ "level", KEY_LEVEL, "N", "zstd's level, 1 (fastest) to 19 (smallest; default 3), with --zstd or "
				   "--compress zstd" },
	{ "format", KEY_FORMAT, "FMT", "diff (default), v3: packed data in FILE + mapping in FILE.header, "
				       "or e2b: the next E2B build of the device's (docs/e2b.md)" },
	{ "frame-size", KEY_FRAME, "SIZE", "uncompressed bytes per frame (default 1M; e2b: 2M)" },
	{ "build-id", KEY_BUILD_ID, "ID", "--format e2b: the new build's id (default: a random UUID)" },
	{ "header-version", KEY_HEADER_VERSION, "N", "--format e2b: header layout 1-5 (default: the "
						    "parent's; 4 when compressing a V1-V3 parent)" },
	{ "compress", KEY_COMPRESS, "CODEC", "--format e2b: zstd or lz4 frames as E2B's (default: none)" },
	{ "keep", 'k', NULL, "keep the device's cache after exporting it" },
	{ "live", KEY_LIVE, NULL, "export from the running device: hold its writes meanwhile, keep it" },
	{ "timeout", 't', "SEC", "deadline for the device to be released and stopped (default 10)" },
	{ "inspect", KEY_INSPECT, "[FILE]", "print a diff (verifying every checksum) or an E2B header (docs/e2b.md); "
	  "without FILE, the build of --e2b and --build in its storage" },
	{ "flatten", KEY_FLATTEN, NULL, "write base + layers + cache as one plain image" },
	{ "base", 'b', "FILE", "with --flatten: the base image" },
	{ "layer", 'l', "DIFF", "with --flatten: a diff over the base (repeat, bottom first)", true },
	{ "e2b", DEVOPT_E2B, "ROOT", "with --flatten, --inspect or --format e2b: an E2B storage root (folder or URL), not --base" },
	{ "build", DEVOPT_BUILD, "ID", "with --e2b: the build id (8-4-4-4-12 hex)" },
	{ "e2b-file", DEVOPT_E2B_FILE, "NAME", "with --e2b: rootfs.ext4 (default) or memfile" },
	{ "http-timeout", DEVOPT_HTTP_TIMEOUT, "SEC", "a URL's deadline per transfer (default 60)" },
	{ "http-retries", DEVOPT_HTTP_RETRIES, "N", "a URL's retries after a failed transfer (default 3)" },
	{ "auth-file", DEVOPT_AUTH_FILE, "FILE", "a URL's bearer token or header line, from FILE" },
	{ "insecure", DEVOPT_INSECURE, NULL, "do not verify a URL's TLS certificate" },
	{ "json", 'j', NULL, "print a JSON summary, or --inspect's report, on stdout (data then "
				"goes to --output)" },
	{ "progress", KEY_PROGRESS, NULL, "show progress on stderr (default: when it is a terminal)" },
	{ "no-progress", KEY_NO_PROGRESS, NULL, "never show progress" },
	SECRETS_FD_OPTION,
	STATE_DIR_OPTION,
	{ "verbose", 'v', NULL, "more log output" },
	{ 0 },
};

static const struct cli_tool tool = {
	.name = "ublk-export-diff",
	.synopsis = "[OPTIONS] DEV|ID|NAME | --cache FILE\n"
		    "       | --inspect FILE | --inspect --e2b ROOT --build ID\n"
		    "       | --flatten (--base IMG [--layer DIFF]... | --e2b ROOT --build ID) ...",
	.summary = "Export the blocks a device changed (its copy-on-write cache) as a diff file\n"
		   "(docs/diff-format.md), or with --format e2b as the next E2B build of a device\n"
		   "served from one (docs/e2b.md). By default waits until nothing holds the device\n"
		   "open, stops and deletes it, exports, and removes the cache. --inspect checks a\n"
		   "diff, an E2B header, or a whole E2B build with its data; --flatten writes a\n"
		   "stack (base + layers + cache, or an E2B build) as one plain image.",
	.options = options,
	.footer = "Exit codes: 0 ok, 1 failure, 2 usage, 3 no ublk in kernel, 4 permission,\n"
		  "5 bad image or diff, 6 no such device, 7 timeout, 8 device busy.\n"
		  "See ublk-export-diff(8).\n\n"
		  "Examples:\n"
		  "  ublk-export-diff --zstd -o sb17.diff sb-17\n"
		  "  ublk-add --base base.img --layer sb17.diff --cache next.cache\n"
		  "  ublk-export-diff --inspect sb17.diff --json\n"
		  "  ublk-export-diff --format e2b --compress zstd --json sb-18  # next build\n"
		  "  ublk-export-diff --inspect --e2b /srv/builds \\\n"
		  "      --build 4f1c0e2a-8d3b-4c6e-9a7f-0b1c2d3e4f50\n",
};

static void print_id(struct json *j, const char *key, const uint8_t id[16])
{
	char hex[33];
	diff_id_hex(id, hex);
	json_str(j, key, hex);
}

static void meta_json(struct json *j, const struct diff_meta *m)
{
	print_id(j, "layer_id", m->id);
	print_id(j, "parent_id", m->parent);
	json_u64(j, "generation", m->generation);
	json_u64(j, "device_size", m->dev_size);
	json_u64(j, "extents", m->n_extents);
	json_u64(j, "data_blocks", m->data_blocks);
	json_u64(j, "zero_blocks", m->zero_blocks);
	json_bool(j, "zstd", m->flags & DIFF_FLAG_ZSTD);
	json_u64(j, "frame_size", m->frame_size);
}

static int inspect(const char *path, const struct layer_http_opts *remote, bool json)
{
	struct diff_file *d;
	char why[700], id[33], parent[33], note[1300], shown[4200];
	uint64_t bad = 0;
	const char *damage = NULL;
	bool done;
	int ret = e2b_inspect_file(path, remote, json, &done, note, sizeof(note));

	if (done)
		return ret;
	http_name_for_log(path, shown, sizeof(shown));  /* a URL may carry credentials */
	if ((ret = diff_open(path, remote, &d, why, sizeof(why)))) {
		log_err("%s%s", why, note);
		return exit_code_for_image(ret);
	}
	ret = diff_verify(d, &bad, &damage);
	if (json) {
		struct json j;
		json_begin(&j, stdout);
		json_str(&j, "path", shown);
		meta_json(&j, &d->meta);
		json_u64(&j, "frames", d->n_frames);
		json_u64(&j, "file_size", d->file_size);
		json_bool(&j, "verified", ret == 0);
		if (damage)
			json_u64(&j, "bad_frame", bad);
		else
			json_str(&j, "bad_frame", NULL);
		diff_extents_json(&j, d);
		json_end(&j);
	} else {
		diff_id_hex(d->meta.id, id);
		diff_id_hex(d->meta.parent, parent);
		printf("diff %s\nversion %u, block size 4096, device size %llu\n"
		       "layer %s\nparent %s\ngeneration %llu\n"
		       "%llu extents: %llu data blocks, %llu zero blocks\n"
		       "%llu frames of %u bytes%s, file %llu bytes\n",
		       shown, DIFF_VERSION, (unsigned long long)d->meta.dev_size, id, parent,
		       (unsigned long long)d->meta.generation, (unsigned long long)d->meta.n_extents,
		       (unsigned long long)d->meta.data_blocks, (unsigned long long)d->meta.zero_blocks,
		       (unsigned long long)d->n_frames, d->meta.frame_size,
		       d->meta.flags & DIFF_FLAG_ZSTD ? ", zstd" : "", (unsigned long long)d->file_size);
		for (uint64_t i = 0; i < d->meta.n_extents; i++)
			printf("  %12llu +%-10u %s\n", (unsigned long long)d->ext[i].start, d->ext[i].count,
			       d->ext[i].kind == DIFF_DATA ? "data" : "zero");
		printf("checksums: %s\n", damage ? "BAD" : ret ? "not verified" : "ok");
	}
	if (damage)
		log_err("%s: frame %llu: %s", shown, (unsigned long long)bad, damage);
	else if (ret)
		log_err("%s: frame %llu: reading it to verify: %s", shown, (unsigned long long)bad,
			strerror(-ret));
	diff_close(d);
	return damage ? EXIT_BAD_IMAGE : ret ? exit_code_for_image(ret) : EXIT_OK;
}

/* Report a failure, or print the --json summary of an export (r) or a
 * flatten (r NULL). */
static int finish(int code, const char *why, bool json, const char *out,
		  const struct export_result *r, uint64_t bytes)
{
	struct json j;

	if (code) {
		log_err("%s", why);
		return code;
	}
	if (!json)
		return EXIT_OK;
	json_begin(&j, stdout);
	json_str(&j, "output", out);
	if (r) {
		meta_json(&j, &r->meta);
		json_u64(&j, "frames", r->written.frames);
		json_u64(&j, "duration_ms", r->ms);
		json_bool(&j, "cache_removed", r->cache_removed);
	}
	json_u64(&j, "bytes", bytes);
	json_end(&j);
	return EXIT_OK;
}

/* --format e2b: write the next build of the device's E2B build, or of
 * --cache FILE's over --e2b ROOT --build ID; print its id or --json. */
static int export_e2b(struct cli *c, struct export_opts *o, struct server_config *cfg, bool json,
		      int argc, char **argv)
{
	struct export_result r = { 0 };
	struct layer_http_opts ho;
	char why[1200], id[37], s[37];
	int code;

	if (o->zstd)
		return cli_usage_error(c, "--format e2b compresses with --compress zstd|lz4, not --zstd");
	if (o->live && cfg->stack.cache)
		return cli_usage_error(c, "--live exports a running device, not --cache");
	if (o->codec && o->header_version && o->header_version <= 3)
		return cli_usage_error(c, "--header-version %u has no frame tables: --compress needs "
				       "4 or 5", o->header_version);
	if (o->out && (!strcmp(o->out, "-") || !*o->out))
		return cli_usage_error(c, "--format e2b writes a folder of files: --output ROOT, the "
				       "storage root");
	if (cfg->stack.base || cfg->stack.n_layers)
		return cli_usage_error(c, "--base and --layer go with --flatten");
	if (cfg->stack.cache ? optind < argc : optind != argc - 1)
		return cli_usage_error(c, cfg->stack.cache ? "give a device or --cache, not both" :
				       optind < argc ? "one device at a time" : "no device given");
	if (cfg->stack.cache && (!cfg->stack.e2b_root || !cfg->stack.e2b_build))
		return cli_usage_error(c, "--format e2b --cache FILE needs its parent build: --e2b ROOT "
				       "--build ID");
	if ((cfg->stack.e2b_build || cfg->stack.e2b_file) && !cfg->stack.e2b_root)
		return cli_usage_error(c, "--build and --e2b-file go with --e2b ROOT");
	if (cfg->stack.e2b_root && !cfg->stack.e2b_build)
		return cli_usage_error(c, "--e2b ROOT needs --build ID: the parent build");
	if (stack_http_opts(&cfg->stack, &ho, why, sizeof(why)))
		return cli_usage_error(c, "%s", why);
	o->e2b_root = cfg->stack.e2b_root;
	o->e2b_build = cfg->stack.e2b_build;
	o->e2b_file = cfg->stack.e2b_file;
	o->remote = &ho;
	if (cfg->stack.cache) {
		code = export_cache(cfg->stack.cache, o, &r, why, sizeof(why));
	} else {
		uint32_t dev;
		if (devopts_check_state_env(c) == CLI_DONE)
			return c->exit_code;
		if ((code = state_check_dir(false)))
			return code;
		if ((code = device_resolve(argv[optind], &dev, why, sizeof(why)))) {
			log_err("%s", why);
			return code;
		}
		code = o->live ? export_live(dev, o, &r, why, sizeof(why))
			       : export_device(dev, o, &r, why, sizeof(why));
	}
	if (code) {
		log_err("%s", why);
		return code;
	}
	e2b_uuid_str(r.e2b.build_id, id);
	if (!json) {
		printf("%s\n", id);
		return EXIT_OK;
	}
	struct json j;
	json_begin(&j, stdout);
	json_str(&j, "build_id", id);
	e2b_uuid_str(r.e2b.parent, s);
	json_str(&j, "parent_build_id", s);
	e2b_uuid_str(r.e2b.base, s);
	json_str(&j, "base_build_id", s);
	json_u64(&j, "generation", r.e2b.generation);
	json_u64(&j, "header_version", r.e2b.header_version);
	json_str(&j, "compression", e2b_codec_name(r.e2b.codec));
	json_u64(&j, "frame_size", r.e2b.frame_size);
	json_u64(&j, "frames", r.e2b.frames);
	json_u64(&j, "data_bytes", r.e2b.data_bytes);
	json_u64(&j, "compressed_bytes", r.e2b.compressed_bytes);
	json_str(&j, "path", r.e2b.path);
	json_str(&j, "data_path", r.e2b.data_path);
	json_u64(&j, "duration_ms", r.ms);
	json_bool(&j, "cache_removed", r.cache_removed);
	json_end(&j);
	return EXIT_OK;
}

static int tool_main(int argc, char **argv)
{
	struct export_opts o = { .timeout_ms = 10000, .progress = isatty(STDERR_FILENO) };
	struct server_config cfg;
	struct export_result r = { 0 };
	/* an --inspect given no FILE, told from one given an empty FILE */
	static char inspect_bare[] = "--inspect=";
	const char *inspect_path = NULL;
	bool json = false, flatten = false;
	char why[1200];
	struct cli c;
	int key, code, secrets_fd = -1;

	log_init(argv[0]);
	/* a reader that goes away is a write error, reported (the cache is
	 * kept), not a silent death */
	signal(SIGPIPE, SIG_IGN);
	devopts_defaults(&cfg);
	/* --inspect without FILE (last, or before another option) inspects
	 * the build --e2b and --build name */
	cli_init(&c, &tool);
	for (int i = 1; i < argc && strcmp(argv[i], "--"); i++)
		if (cli_spells(&c, argv[i], "inspect") && (i + 1 == argc || argv[i + 1][0] == '-'))
			argv[i] = (char *)inspect_bare;
	while ((key = cli_next(&c, argc, argv)) != -1) {
		uint64_t v;
		switch (key) {
		case CLI_DONE: return c.exit_code;
		case KEY_OUTPUT:
			if (!*optarg)
				return cli_empty_value(&c, "output", "FILE (- for stdout)");
			o.out = optarg;
			break;
		case KEY_ZSTD: o.zstd = true; break;
		case KEY_KEEP: o.keep = true; break;
		case KEY_LIVE: o.live = true; break;
		case KEY_FORMAT:
			if (strcmp(optarg, "diff") && strcmp(optarg, "v3") && strcmp(optarg, "e2b"))
				return cli_usage_error(&c, "--format '%s': expected diff, v3 or e2b", optarg);
			o.v3 = !strcmp(optarg, "v3");
			o.e2b = !strcmp(optarg, "e2b");
			break;
		case KEY_BUILD_ID:
			if (!e2b_parse_build_id(optarg, NULL))
				return cli_usage_error(&c, "--build-id '%s': expected 8-4-4-4-12 lowercase hex, "
						       "as E2B prints build ids, not all zeros", optarg);
			o.build_id = optarg;
			break;
		case KEY_HEADER_VERSION:
			if (parse_uint(optarg, 1, 5, &v))
				return cli_usage_error(&c, "--header-version '%s': expected 1 to 5", optarg);
			o.header_version = (unsigned)v;
			break;
		case KEY_COMPRESS:
			if (strcmp(optarg, "zstd") && strcmp(optarg, "lz4"))
				return cli_usage_error(&c, "--compress '%s': expected zstd or lz4", optarg);
			o.codec = !strcmp(optarg, "zstd") ? E2B_CODEC_ZSTD : E2B_CODEC_LZ4;
			break;
		case KEY_LEVEL:
			if (parse_uint(optarg, 1, DIFF_ZSTD_MAX_LEVEL, &v))
				return cli_usage_error(&c, "--level '%s': expected 1 to %d", optarg,
						       DIFF_ZSTD_MAX_LEVEL);
			o.level = (int)v;
			break;
		case KEY_JSON: json = true; break;
		case KEY_INSPECT:
			if (!*optarg && optarg != inspect_bare + sizeof(inspect_bare) - 1)
				return cli_usage_error(&c, "--inspect: FILE is empty");
			inspect_path = optarg;
			break;
		case KEY_FLATTEN: flatten = true; break;
		case KEY_PROGRESS: o.progress = true; break;
		case KEY_NO_PROGRESS: o.progress = false; break;
		case DEVOPT_SECRETS_FD:
			if (devopts_fd_arg(&c, "secrets-fd", optarg, &secrets_fd) == CLI_DONE)
				return c.exit_code;
			break;
		case KEY_FRAME:
			if (parse_size(optarg, &v) || !v || v % 4096 || v > DIFF_MAX_FRAME)
				return cli_usage_error(&c, "--frame-size '%s': expected a multiple of 4096 up to 64M",
						       optarg);
			o.frame_size = (uint32_t)v;
			break;
		default:
			if (devopts_apply(&c, &cfg, key, optarg) == CLI_DONE)
				return c.exit_code;
		}
	}
	o.timeout_ms = cfg.timeout_ms;
	if (devopts_take_secrets(&c, secrets_fd, &cfg) == CLI_DONE)
		return c.exit_code;
	/* options that do nothing in the mode chosen are refused, not ignored */
	const char *mode = inspect_path ? "--inspect" : flatten ? "--flatten" : NULL;
	if (mode && (o.live || o.keep || o.zstd || o.level || o.frame_size || o.v3 || o.e2b))
		return cli_usage_error(&c, "%s writes no diff: --live, --keep, --zstd, --level, "
				       "--frame-size and --format do nothing with it", mode);
	if (o.level && !o.zstd && !(o.e2b && o.codec == E2B_CODEC_ZSTD))
		return cli_usage_error(&c, "--level is zstd's: give --zstd, or --format e2b "
				       "--compress zstd");
	if (inspect_path && o.out)
		return cli_usage_error(&c, "--inspect prints its report on stdout: --output does nothing with it");
	if (o.live && o.keep)
		return cli_usage_error(&c, "--live keeps the device and its cache: --keep does nothing with it");
	/* --inspect --json FILE: the operand is the FILE (an export's
	 * device operand means nothing to --inspect) */
	if (inspect_path && !*inspect_path && !cfg.stack.e2b_root && argc - optind == 1)
		inspect_path = argv[optind++];
	if (inspect_path && !*inspect_path) {
		struct layer_http_opts ho;
		if (optind < argc || flatten || cfg.stack.cache || cfg.stack.base || cfg.stack.n_layers || !cfg.stack.e2b_root ||
		    !cfg.stack.e2b_build)
			return cli_usage_error(&c, "--inspect without FILE needs --e2b ROOT --build ID "
					       "(and takes --e2b-file, --json and a URL's options)");
		if (stack_http_opts(&cfg.stack, &ho, why, sizeof(why)))
			return cli_usage_error(&c, "%s", why);
		return e2b_inspect_store(cfg.stack.e2b_root, cfg.stack.e2b_build, cfg.stack.e2b_file, &ho, json, o.progress);
	}
	if (inspect_path) {
		if (optind < argc || flatten || cfg.stack.cache || cfg.stack.base || cfg.stack.n_layers ||
		    cfg.stack.e2b_root || cfg.stack.e2b_build || cfg.stack.e2b_file)
			return cli_usage_error(&c, "--inspect FILE takes only --json and a URL's options "
					       "(an E2B build in its storage: --inspect --e2b ROOT --build ID)");
		struct layer_http_opts ho;
		if (stack_http_opts(&cfg.stack, &ho, why, sizeof(why)))
			return cli_usage_error(&c, "%s", why);
		return inspect(inspect_path, &ho, json);
	}
	if (devopts_refuse_url(&c, "--output", o.out) || devopts_refuse_url(&c, "--cache", cfg.stack.cache))
		return c.exit_code;
	if (o.v3 && (!o.out || !strcmp(o.out, "-") || o.zstd))
		return cli_usage_error(&c, "--format v3 writes two files: give --output FILE, without --zstd");
	if (o.v3 && o.frame_size)
		return cli_usage_error(&c, "--format v3 has no frames: --frame-size does nothing with it");
	if (o.e2b && o.frame_size && !o.codec)
		return cli_usage_error(&c, "--frame-size is that of --compress's frames: an uncompressed "
				       "build has none");
	if (!o.e2b && (o.build_id || o.header_version || o.codec))
		return cli_usage_error(&c, "--build-id, --header-version and --compress go with --format e2b");
	if (o.e2b)
		return export_e2b(&c, &o, &cfg, json, argc, argv);
	if (json && (!o.out || !strcmp(o.out, "-")))
		return cli_usage_error(&c, "--json prints on stdout: give --output FILE for the data");
	if (!o.out && isatty(STDOUT_FILENO))
		return cli_usage_error(&c, "refusing to write binary data to a terminal: give --output FILE");

	if (flatten) {
		uint64_t bytes = 0;
		if (optind < argc || (!cfg.stack.base && !cfg.stack.e2b_root))
			return cli_usage_error(&c, "--flatten needs --base or --e2b ROOT --build ID (and "
					       "optional --layer/--cache), no device");
		if (devopts_finish(&c, &cfg) == CLI_DONE)
			return c.exit_code;
		code = export_flatten(&cfg, o.out, o.progress, &bytes, why, sizeof(why));
		return finish(code, why, json, o.out, NULL, bytes);
	}
	if (cfg.stack.base || cfg.stack.n_layers)
		return cli_usage_error(&c, "--base and --layer go with --flatten");
	if (cfg.stack.http_timeout_ms || cfg.stack.http_retries >= 0 || cfg.stack.auth_file ||
	    cfg.stack.insecure || secrets_fd >= 0)
		return cli_usage_error(&c, "--http-timeout, --http-retries, --auth-file, --secrets-fd "
				       "and --insecure go with a URL: --flatten, --inspect or --format e2b");
	if (cfg.stack.e2b_root || cfg.stack.e2b_build || cfg.stack.e2b_file)
		return cli_usage_error(&c, "--e2b, --build and --e2b-file go with --flatten, --inspect or "
				       "--format e2b");
	if (cfg.stack.cache && optind < argc)
		return cli_usage_error(&c, "give a device or --cache, not both");
	if (!cfg.stack.cache && optind != argc - 1)
		return cli_usage_error(&c, optind < argc ? "one device at a time" : "no device given");
	if (o.live && cfg.stack.cache)
		return cli_usage_error(&c, "--live exports a running device, not --cache");
	/* only a device's export reads the state directory */
	if (!cfg.stack.cache && devopts_check_state_env(&c) == CLI_DONE)
		return c.exit_code;
	if (cfg.stack.cache) {
		code = export_cache(cfg.stack.cache, &o, &r, why, sizeof(why));
	} else {
		uint32_t id;
		/* a state directory others could have prepared: said, refused */
		if ((code = state_check_dir(false)))
			return code;
		if ((code = device_resolve(argv[optind], &id, why, sizeof(why)))) {
			log_err("%s", why);
			return code;
		}
		code = o.live ? export_live(id, &o, &r, why, sizeof(why))
			      : export_device(id, &o, &r, why, sizeof(why));
	}
	return finish(code, why, json, o.out, &r, r.written.bytes);
}

int main(int argc, char **argv)
{
	return cli_output_done(tool_main(argc, argv));
}
