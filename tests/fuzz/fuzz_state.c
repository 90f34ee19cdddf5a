/*
 * A state entry (docs/state-dir.md) as the tools read it back: config
 * (key=value lines, applied through the option parser when a server is
 * recovered; format 1's serve_arg lines too), pid, state and stats. The state code
 * refuses symlinks, so the entry is a real folder of real files in a
 * private state directory. Input: config [FZ_SEP pid [FZ_SEP state
 * [FZ_SEP stats [FZ_SEP secret [FZ_SEP cookie]]]]]. The config text also goes through
 * cfgline_parse alone, whose every key and value must be clean.
 */
#include "cfgcheck.h"
#include "util/cfgline.h"
#include "devconfig.h"
#include "devopts.h"
#include "util/log.h"
#include "host/pool.h"
#include "host/state.h"
#include "fuzz.h"

#include <strings.h>

#define ID 7u
#define MAX_PART (64u << 10)

static const char *names[] = { "config", "pid", "state", "stats", "secret", "cookie" };
#define NFILES 6
static int fds[NFILES] = { -1, -1, -1, -1, -1, -1 };
static char state_path[300];

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	char path[400];
	(void)argc;
	(void)argv;
	snprintf(state_path, sizeof(state_path), "%s/state", fz_dir());
	snprintf(path, sizeof(path), "%s/ublkb%u", state_path, ID);
	if (mkdir(state_path, 0700) || mkdir(path, 0700))
		FZ_DIE("mkdir %s: %s", path, strerror(errno));
	state_set_dir(state_path);
	for (int i = 0; i < NFILES; i++) {
		char name[64];
		snprintf(name, sizeof(name), "state/ublkb%u/%s", ID, names[i]);
		fds[i] = fz_file(name, path, sizeof(path));
	}
	if (state_write(ID, "version", "2\n"))
		FZ_DIE("state_write version failed");
	return 0;
}

static int on_line(const char *key, const char *value, void *arg)
{
	unsigned *lines = arg;
	FZ_ASSERT(*key && strlen(key) <= 64 && strspn(key, "abcdefghijklmnopqrstuvwxyz0123456789_.") ==
		  strlen(key), "key '%s'", key);
	FZ_ASSERT(!cfgline_has_control(value, NULL), "control byte in value '%s'", value);
	++*lines;
	return 0;
}

static void check_str(const char *buf, size_t len, const char *what)
{
	FZ_ASSERT(memchr(buf, 0, len), "%s is not NUL-terminated in its buffer", what);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	/* one lookup per kind of key: every lookup reads the whole config */
	static const char *keys[] = { "base", "name", "serve_arg", "layer.0", "device_size", "e2b" };
	struct fz_part part[NFILES];
	char buf[4096], why[1024] = "";
	const char *values[64];
	uint32_t found;

	fz_split(data, size, part, NFILES);
	for (int i = 0; i < NFILES; i++) {
		if (part[i].len > MAX_PART)
			return -1;
		fz_fill(fds[i], part[i].p, part[i].len);
	}
	state_set_dir(state_path);

	char *text = fz_strndup(part[0].p, part[0].len);
	unsigned lines = 0, bad = 0;
	if (!cfgline_parse(text, part[0].len, on_line, &lines, &bad))
		fz_accepted();
	free(text);

	for (size_t k = 0; k < sizeof(keys) / sizeof(keys[0]); k++) {
		memset(buf, 'x', sizeof(buf));
		if (!state_config_get(ID, keys[k], buf, sizeof(buf))) {
			check_str(buf, sizeof(buf), keys[k]);
			fz_accepted();
		}
	}
	/* a small buffer: values are cut, never overrun */
	char small[8];
	if (!state_config_get(ID, "serve_arg", small, sizeof(small)))
		check_str(small, sizeof(small), "serve_arg");
	struct state_config parsed;
	if (!state_config_load(ID, &parsed)) {
		int n = state_config_values(&parsed, "serve_arg", values, 64);
		FZ_ASSERT(n >= 0 && n <= parsed.n, "%d values of %d lines", n, parsed.n);
		for (int i = 0; i < n && i < 64; i++)
			FZ_ASSERT(values[i] >= parsed.text && values[i] < parsed.text + STATE_CONFIG_MAX &&
				  memchr(values[i], 0, (size_t)(parsed.text + STATE_CONFIG_MAX + 1 - values[i])),
				  "value %d outside the config", i);
	}
	state_config_free(&parsed);
	state_find("name", "fuzz", &found);
	state_read(ID, "pid", buf, sizeof(buf));
	/* a cookie is taken only as written: 16 hex digits and a newline */
	uint64_t cookie = state_entry_cookie(ID);
	if (cookie) {
		char want[24];
		snprintf(want, sizeof(want), "%016llx\n", (unsigned long long)cookie);
		FZ_ASSERT(part[5].len == 17 && !strncasecmp((const char *)part[5].p, want, 17),
			  "cookie %s taken from %zu bytes", want, part[5].len);
		fz_accepted();
	}

	/* recovery: the saved arguments through the real option parser */
	struct server_config cfg;
	devopts_defaults(&cfg);
	if (!devconfig_read(ID, &cfg, why, sizeof(why))) {
		fz_accepted();
		fz_check_config(&cfg);
	}
	check_str(why, sizeof(why), "why");
	log_set_debug(0);
	state_set_dir(state_path);

	/* ublk-pool list: the entry next to whatever the kernel has */
	struct pool_dev *devs = NULL;
	int k = pool_scan(&devs, 0);
	for (int i = 0; i < k; i++) {
		check_str(devs[i].state, sizeof(devs[i].state), "state");
		check_str(devs[i].name, sizeof(devs[i].name), "name");
		check_str(devs[i].layers, sizeof(devs[i].layers), "layers");
		check_str(devs[i].stats, sizeof(devs[i].stats), "stats");
		pool_problem(&devs[i], POOL_GRACE_S);
	}
	free(devs);
	return 0;
}
