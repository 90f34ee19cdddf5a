/* What a parsed device configuration promises (devopts.h, ublk_limits.h),
 * whether it came from the command line or from a saved state entry. */
#ifndef UBLK_FUZZ_CFGCHECK_H
#define UBLK_FUZZ_CFGCHECK_H

#include "util/cfgline.h"
#include "devopts.h"
#include "util/ublk_limits.h"
#include "fuzz.h"

static inline void fz_check_text(const char *what, const char *s)
{
	if (!s)
		return;
	FZ_ASSERT(!cfgline_has_control(s, NULL), "--%s with a control character accepted", what);
	FZ_ASSERT(strlen(s) <= DEVOPTS_MAX_TEXT, "--%s of %zu bytes accepted", what, strlen(s));
}

static inline void fz_check_config(const struct server_config *cfg)
{
	FZ_ASSERT(cfg->queues >= 1 && cfg->queues <= SERVER_MAX_QUEUES, "queues %u", cfg->queues);
	FZ_ASSERT(cfg->depth >= 1 && cfg->depth <= SERVER_MAX_DEPTH, "depth %u", cfg->depth);
	FZ_ASSERT(cfg->stack.size % 4096 == 0 && cfg->stack.size <= UBLK_MAX_IMAGE_SIZE, "size %llu",
		  (unsigned long long)cfg->stack.size);
	FZ_ASSERT(cfg->timeout_ms > 0 && cfg->timeout_ms <= DEVOPTS_MAX_TIMEOUT_S * 1000ull,
		  "timeout %llu ms", (unsigned long long)cfg->timeout_ms);
	FZ_ASSERT(cfg->stack.http_timeout_ms <= DEVOPTS_MAX_HTTP_TIMEOUT_S * 1000ull, "http timeout %llu ms",
		  (unsigned long long)cfg->stack.http_timeout_ms);
	FZ_ASSERT(cfg->stack.http_retries >= -1 && cfg->stack.http_retries <= DEVOPTS_MAX_HTTP_RETRIES,
		  "http retries %d", cfg->stack.http_retries);
	FZ_ASSERT(cfg->stack.readahead >= -1 && cfg->stack.readahead <= 64, "readahead %d", cfg->stack.readahead);
	FZ_ASSERT(!cfg->stack.chunk_size || (cfg->stack.chunk_size >= 65536 && cfg->stack.chunk_size <= (64u << 20) &&
				       cfg->stack.chunk_size % 4096 == 0),
		  "chunk size %llu", (unsigned long long)cfg->stack.chunk_size);
	FZ_ASSERT(cfg->stack.n_layers <= STACK_MAX_LAYERS, "%u layers", cfg->stack.n_layers);
	FZ_ASSERT(!cfg->name || !devopts_name_problem(cfg->name), "name '%s' accepted", cfg->name);
	fz_check_text("base", cfg->stack.base);
	fz_check_text("cache", cfg->stack.cache);
	fz_check_text("inject", cfg->stack.inject);
	fz_check_text("chunk-cache", cfg->stack.chunk_cache);
	fz_check_text("auth-file", cfg->stack.auth_file);
	for (unsigned i = 0; i < cfg->stack.n_layers && i < STACK_MAX_LAYERS; i++)
		fz_check_text("layer", cfg->stack.layers[i]);
}

#endif
