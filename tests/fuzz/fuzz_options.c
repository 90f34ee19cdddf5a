/*
 * Option strings an operator (or a saved config) hands the tools: sizes,
 * seconds, bounded integers, device ids, fault injection specs, names,
 * URLs shown in messages, and every device option through devopts_apply
 * as ublk-add and ublk-serve call it. Input: a selector byte, then the
 * string. Accepted values are checked against the documented ranges and
 * printed back and parsed again where the syntax allows it.
 */
#include "cfgcheck.h"
#include "devopts.h"
#include "image/layer.h"
#include "util/log.h"
#include "util/parse.h"
#include "host/state.h"
#include "fuzz.h"
#include "image/layer_fault.h"

static void nop_close(struct layer *l) { (void)l; }
static const struct layer_ops lower_ops = { .name = "fuzz-lower", .close = nop_close };

static const struct cli_option options[] = {
	DEVICE_OPTIONS
	{ "timeout", DEVOPT_TIMEOUT, "SEC", NULL },
	{ "verbose", DEVOPT_VERBOSE, NULL, NULL },
	STATE_DIR_OPTION,
	{ 0 },
};
static const struct cli_tool tool = { .name = "fuzz", .synopsis = "", .summary = "",
				      .options = options };

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char why[1024], back[32];
	uint64_t v = 0, w = 0;
	uint32_t id = 0;

	if (size < 1 || size > 8192)
		return -1;
	uint8_t sel = data[0];
	char *s = fz_strndup(data + 1, size - 1);

	switch (sel % 9) {
	case 0:
		if (!parse_size(s, &v)) {
			fz_accepted();
			snprintf(back, sizeof(back), "%llu", (unsigned long long)v);
			FZ_ASSERT(!parse_size(back, &w) && w == v, "'%s' -> %llu does not parse back", s,
				  (unsigned long long)v);
		}
		break;
	case 1:
		if (!parse_seconds(s, &v)) {
			fz_accepted();
			FZ_ASSERT(v <= 86400ull * 365 * 1000 + 1, "'%s' -> %llu ms", s, (unsigned long long)v);
		}
		break;
	case 2: {
		uint64_t min = sel >> 4, max = min + (uint64_t)(sel & 0x8 ? UINT64_MAX - min : 1000);
		if (!parse_uint(s, min, max, &v)) {
			fz_accepted();
			FZ_ASSERT(v >= min && v <= max, "'%s' -> %llu outside %llu-%llu", s,
				  (unsigned long long)v, (unsigned long long)min, (unsigned long long)max);
			snprintf(back, sizeof(back), "%llu", (unsigned long long)v);
			FZ_ASSERT(!parse_uint(back, min, max, &w) && w == v, "'%s' does not parse back", s);
		}
		break;
	}
	case 3:
		if (!parse_dev_id(s, &id)) {
			fz_accepted();
			FZ_ASSERT(id <= 0x7fffffff, "'%s' -> id %u", s, id);
		}
		break;
	case 4: {
		struct layer lower = { .ops = &lower_ops, .size = 1ull << 30 }, *f = NULL;
		if (!layer_fault_open(s, &lower, &f, why, sizeof(why))) {
			fz_accepted();
			FZ_ASSERT(f && f->lower == &lower && f->size == lower.size, "fault layer shape");
			layer_close(f);
		}
		break;
	}
	case 5:
		if (!devopts_name_problem(s)) {
			fz_accepted();
			FZ_ASSERT(parse_dev_id(s, &id), "name '%s' reads as device %u", s, id);
		}
		break;
	case 6: {
		char *shown = devopts_redacted(s);
		FZ_ASSERT(shown, "out of memory");
		fz_accepted();
		free(shown);
		break;
	}
	default: {
		/* one option of the table, as getopt hands it over */
		static const int keys[] = {
			DEVOPT_BASE, DEVOPT_QUEUES, DEVOPT_DEPTH, DEVOPT_TIMEOUT, DEVOPT_CACHE,
			DEVOPT_SIZE, DEVOPT_INJECT, DEVOPT_NAME, DEVOPT_LAYER, DEVOPT_CHUNK_SIZE,
			DEVOPT_CHUNK_CACHE, DEVOPT_CHUNK_CACHE_LIMIT, DEVOPT_HTTP_TIMEOUT,
			DEVOPT_HTTP_RETRIES, DEVOPT_AUTH_FILE, DEVOPT_READAHEAD, DEVOPT_STATE_DIR,
		};
		struct server_config cfg;
		struct cli c;
		cli_init(&c, &tool);
		devopts_defaults(&cfg);
		int key = keys[(sel >> 1) % (sizeof(keys) / sizeof(keys[0]))];
		int ret = devopts_apply(&c, &cfg, key, s);
		FZ_ASSERT(ret == 1 || ret == CLI_DONE, "key %d: returned %d", key, ret);
		if (ret == 1) {
			fz_accepted();
			fz_check_config(&cfg);
		}
		state_set_dir(NULL);   /* --state-dir kept a pointer into s */
		log_set_debug(0);
		break;
	}
	}
	free(s);
	return 0;
}
