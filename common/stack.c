#include "stack.h"
#include "exitcodes.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

int stack_open(const struct server_config *cfg, struct layer **out, char *why, size_t whylen)
{
	bool layered = cfg->cache || cfg->n_layers;
	struct layer *top, *next;
	int ret, code = EXIT_BAD_IMAGE;

	/* remote base and remote layers share these */
	struct layer_http_opts ho = {
		.cache_dir = cfg->chunk_cache,
		.chunk_size = cfg->chunk_size ? (uint32_t)cfg->chunk_size : 4u << 20,
		.cache_limit = cfg->chunk_cache_limit,
		.readahead = cfg->readahead >= 0 ? (unsigned)cfg->readahead : 1,
		.prefetch = cfg->prefetch,
	};
	if ((ret = http_opts_init(&ho.http, cfg->auth_file, why, whylen)))
		return EXIT_USAGE;
	if (cfg->http_timeout_ms)
		ho.http.timeout_ms = cfg->http_timeout_ms;
	if (cfg->http_retries >= 0)
		ho.http.retries = (unsigned)cfg->http_retries;
	ho.http.insecure = cfg->insecure;

	if (layer_is_url(cfg->base)) {
		ret = layer_http_open(cfg->base, &ho, &top, why, whylen);
		if (ret)
			return ret == -EACCES ? EXIT_PERM : ret == -ETIMEDOUT ? EXIT_TIMEOUT : EXIT_BAD_IMAGE;
	} else {
		ret = layer_file_open(cfg->base, cfg->read_only || layered, &top);
		if (ret) {
			snprintf(why, whylen, "%s: %s", cfg->base, strerror(-ret));
			return EXIT_BAD_IMAGE;
		}
	}
	for (unsigned i = 0; i < cfg->n_layers; i++) {
		ret = layer_diff_open(cfg->layers[i], &ho, top, &next, why, whylen);
		if (ret)
			goto fail;
		top = next;
	}
	if (cfg->cache) {
		ret = layer_cache_open(cfg->cache, top, cfg->size, cfg->read_only, &next, why, whylen);
		if (ret) {
			code = ret == -EBUSY ? EXIT_BUSY : EXIT_BAD_IMAGE;
			goto fail;
		}
		top = next;
	} else if (cfg->size && cfg->size != top->size) {
		if (cfg->size < top->size || !cfg->read_only) {
			snprintf(why, whylen, "--size %llu: without --cache the size can only grow a "
				 "--read-only device (reads past the base are zeros)",
				 (unsigned long long)cfg->size);
			code = EXIT_USAGE;
			goto fail;
		}
		top->size = cfg->size;
	}
	if (cfg->inject) {
		char sub[400];
		ret = layer_fault_open(cfg->inject, top, &next, sub, sizeof(sub));
		if (ret) {
			snprintf(why, whylen, "--inject: %s", sub);
			code = EXIT_USAGE;
			goto fail;
		}
		top = next;
	}
	*out = top;
	return 0;
fail:
	layer_close(top);
	return code;
}
