#include "image/stack.h"
#include "image/access_log.h"
#include "image/e2b_header.h"
#include "util/exitcodes.h"
#include "image/layer_http.h"
#include "image/layer_file.h"
#include "image/layer_cache.h"
#include "image/layer_diff.h"
#include "image/layer_e2b.h"
#include "image/layer_fault.h"
#include "image/http.h"
#include "image/image.h"
#include "util/cfgline.h"
#include "util/output_file.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A --layer that is an E2B build's header: E2B serves a build from its
 * own complete header, which names every build below it, not as a layer
 * over a base. Our own v3 export (docs/diff-format.md, Interop) names
 * only itself, and stays a layer. 0, or -errno with why set. */
static int refuse_e2b_layer(const char *path, const struct layer_http_opts *ho, char *why,
			    size_t whylen)
{
	uint8_t meta[E2B_META_SIZE];
	struct e2b_header *h;
	char sub[800], shown[1024];
	size_t got;
	bool others = false;

	if (e2b_header_sniff(path, ho, meta, &got, sub, sizeof(sub)) ||
	    !e2b_header_plausible(meta, got) || got < E2B_META_SIZE)
		return 0;   /* the diff reader says what is wrong, if anything */
	if ((meta[0] | meta[1] << 8) == 3) {
		if (e2b_header_load(path, ho, &h, sub, sizeof(sub)))
			return 0;   /* not a complete build: a v3 layer */
		for (uint32_t k = 0; k < h->n_ids; k++)
			others |= memcmp(h->ids[k], h->build_id, 16) != 0;
		e2b_header_free(h);
		if (!others)
			return 0;
	}
	http_name_for_log(path, shown, sizeof(shown));
	e2b_uuid_str(meta + 32, sub);
	snprintf(why, whylen, "--layer %s: an E2B build header (layout %u, build %s): serve the "
		 "build with --e2b ROOT --build %s (ROOT: the folder or URL holding its folder), "
		 "not as a --layer", shown, meta[0] | meta[1] << 8, sub, sub);
	return -EINVAL;
}

int stack_http_opts(const struct stack_config *cfg, struct layer_http_opts *ho, char *why,
		    size_t whylen)
{
	*ho = (struct layer_http_opts){
		.cache_dir = cfg->chunk_cache,
		.chunk_size = cfg->chunk_size ? (uint32_t)cfg->chunk_size : 4u << 20,
		.cache_limit = cfg->chunk_cache_limit,
		.readahead = cfg->readahead >= 0 ? (unsigned)cfg->readahead : 1,
		.prefetch = cfg->prefetch,
		.keep_frames = cfg->keep_frames,
	};
	/* below that, chunks stored at once by the fetch threads could push
	 * out each other before their reads read them */
	if (cfg->chunk_cache_limit && cfg->chunk_cache_limit < 16ull * ho->chunk_size) {
		snprintf(why, whylen, "--chunk-cache-limit %llu is less than 16 chunks of %u bytes "
			 "(--chunk-size): give at least %llu", (unsigned long long)cfg->chunk_cache_limit,
			 ho->chunk_size, 16ull * ho->chunk_size);
		return -EINVAL;
	}
	if (http_opts_init(&ho->http, cfg->auth_file, why, whylen))
		return -EINVAL;
	if (cfg->http_timeout_ms)
		ho->http.timeout_ms = cfg->http_timeout_ms;
	if (cfg->http_retries >= 0)
		ho->http.retries = (unsigned)cfg->http_retries;
	ho->http.insecure = cfg->insecure;
	return 0;
}

static int refuse_one(const char *path, const char *what, const char *input, char *why,
		      size_t whylen)
{
	struct output_input in = { what, input };

	return output_file_refuse_input(path, &in, 1, why, whylen);
}

int stack_refuse_output(const struct stack_config *cfg, const char *path, char *why,
			size_t whylen)
{
	char name[PATH_MAX], out[PATH_MAX], root[PATH_MAX];
	size_t n;
	int ret = refuse_one(path, "the base image", cfg->base, why, whylen);

	if (!ret)
		ret = refuse_one(path, "the --auth-file", cfg->auth_file, why, whylen);
	if (!ret && cfg->cache) {
		ret = refuse_one(path, "the cache", cfg->cache, why, whylen);
		snprintf(name, sizeof(name), "%s.map", cfg->cache);
		if (!ret)
			ret = refuse_one(path, "the cache's map", name, why, whylen);
		snprintf(name, sizeof(name), "%s.live", cfg->cache);
		if (!ret)
			ret = refuse_one(path, "the cache's live map", name, why, whylen);
	}
	for (unsigned i = 0; !ret && i < cfg->n_layers; i++) {
		ret = refuse_one(path, "a --layer", cfg->layers[i], why, whylen);
		/* a v3 pair D.header reads its data from D */
		n = strlen(cfg->layers[i]);
		if (!ret && !http_is_url(cfg->layers[i]) && n > 7 &&
		    !strcmp(cfg->layers[i] + n - 7, ".header") &&
		    snprintf(name, sizeof(name), "%.*s", (int)(n - 7), cfg->layers[i]) < (int)sizeof(name))
			ret = refuse_one(path, "a --layer's v3 data file", name, why, whylen);
	}
	/* a local E2B storage root: every build's files are inputs */
	if (!ret && cfg->e2b_root && !http_is_url(cfg->e2b_root) && realpath(cfg->e2b_root, root) &&
	    !output_file_canonical(path, out, sizeof(out)) && (n = strlen(root)) &&
	    !strncmp(out, root, n) && out[n] == '/' && strchr(out + n + 1, '/')) {
		snprintf(why, whylen, "%s: is in a build's folder of the E2B storage root %s, whose "
			 "files it would replace: give a file outside it", path, cfg->e2b_root);
		ret = -EINVAL;
	}
	return ret;
}

int stack_open(const struct stack_config *cfg, struct layer **out, char *why, size_t whylen)
{
	bool layered = cfg->cache || cfg->n_layers;
	struct layer *top, *next;
	int ret, code = EXIT_BAD_IMAGE;

	/* remote base and remote layers share these */
	struct layer_http_opts ho;
	if (stack_http_opts(cfg, &ho, why, whylen))
		return EXIT_USAGE;
	if (cfg->record_access || cfg->prefetch_trace) {
		struct access_log_opts ao = {
			.record_path = cfg->record_access,
			.record_ms = cfg->record_ms,
			.record_bytes = cfg->record_bytes,
			.label = cfg->trace_label,
			.replay = cfg->prefetch_trace,
			.connections = cfg->prefetch_connections > 0 ? (unsigned)cfg->prefetch_connections : 0,
			.http = &ho.http,
		};
		why[0] = 0;
		if ((ret = access_log_new(&ao, &ho.access, why, whylen)))
			return exit_code_for_image(ret);
	}

	if (cfg->e2b_root) {
		ret = layer_e2b_open(cfg->e2b_root, cfg->e2b_build, cfg->e2b_file, &ho, &top, why, whylen);
		if (ret) {
			code = exit_code_for_image(ret);
			goto fail_base;
		}
		/* ublk and the layers above count whole blocks */
		if (top->size % LAYER_BLOCK_SIZE && (!cfg->any_size || layered)) {
			snprintf(why, whylen, "build %s: its size %llu is not a multiple of %u bytes, "
				 "which a device (and a --layer or --cache over it) needs; "
				 "ublk-export-diff --flatten writes it as a plain image", cfg->e2b_build,
				 (unsigned long long)top->size, LAYER_BLOCK_SIZE);
			goto fail;
		}
	} else if (http_is_url(cfg->base)) {
		ret = layer_http_open(cfg->base, &ho, &top, why, whylen);
		if (ret) {
			code = exit_code_for_image(ret);
			goto fail_base;
		}
	} else {
		ret = layer_file_open(cfg->base, cfg->read_only || layered, &top);
		uint64_t size;
		/* image_check says what is wrong with the file and what to do */
		if (ret && !image_check(cfg->base, cfg->read_only || layered, &size, why, whylen))
			snprintf(why, whylen, "%s: %s", cfg->base, strerror(-ret));
		if (ret) {
			code = exit_code_for_image(ret);
			goto fail_base;
		}
	}
	for (unsigned i = 0; i < cfg->n_layers; i++) {
		if (!(ret = refuse_e2b_layer(cfg->layers[i], &ho, why, whylen)))
			ret = layer_diff_open(cfg->layers[i], &ho, top, &next, why, whylen);
		if (ret) {
			/* which option: "/x: No such file" alone could be the base */
			char sub[600];
			snprintf(sub, sizeof(sub), "%s", why);
			snprintf(why, whylen, "--layer %s", sub);
			code = exit_code_for_image(ret);
			goto fail;
		}
		top = next;
	}
	if (cfg->cache) {
		ret = layer_cache_open(cfg->cache, top, cfg->size, cfg->read_only, &next, why, whylen);
		if (ret) {
			code = ret == -EBUSY ? EXIT_BUSY : exit_code_for_image(ret);
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
	if (ho.access) {
		/* the log goes on top: its close comes first (prefetch stopped,
		 * trace written) while the layers it reads are still open */
		if ((ret = access_log_attach(ho.access, top, &next, why, whylen)))
			goto fail;
		ho.access = NULL;
		top = next;
	}
	*out = top;
	return 0;
fail:
	layer_close(top);
fail_base:
	access_log_free(ho.access);
	return code;
}

int stack_image_text(const struct layer *top, char *buf, size_t len)
{
	char size[24];
	size_t used = 0;
	int ret;

	snprintf(size, sizeof(size), "%llu", (unsigned long long)top->size);
	buf[0] = 0;
	ret = cfgline_append(buf, len, &used, "size", size);
	return ret ? ret : layer_version_text(top, buf, len, &used);
}
