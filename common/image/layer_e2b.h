/* An E2B build (docs/e2b.md) as the bottom layer. */
#ifndef UBLK_LAYER_E2B_H
#define UBLK_LAYER_E2B_H

#include "image/layer.h"
#include "image/layer_http.h"

/* An E2B build (docs/e2b.md): build id `build` under storage root root (a
 * folder or an http(s) base URL), artifact name (rootfs.ext4 or memfile;
 * NULL: rootfs.ext4), every build its header names opened, as a read-only
 * bottom layer; id = the build id, generation = the header's. */
int layer_e2b_open(const char *root, const char *build, const char *name,
		   const struct layer_http_opts *remote, struct layer **out, char *why,
		   size_t whylen);

#endif
