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

	ret = layer_file_open(cfg->base, cfg->read_only || layered, &top);
	if (ret) {
		snprintf(why, whylen, "%s: %s", cfg->base, strerror(-ret));
		return EXIT_BAD_IMAGE;
	}
	for (unsigned i = 0; i < cfg->n_layers; i++) {
		ret = layer_diff_open(cfg->layers[i], top, &next, why, whylen);
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
