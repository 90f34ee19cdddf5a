/* Building a device's layer stack from its configuration: base file, the
 * diffs over it bottom first, the copy-on-write cache, fault injection. */
#ifndef UBLK_STACK_H
#define UBLK_STACK_H

#include "image/layer.h"
#include "server.h"

/* Returns 0 with *top set, or a tool exit code with why explaining;
 * nothing stays open on failure. */
/* The remote options cfg gives (chunk cache, HTTP): 0, or -EINVAL with
 * why set (an unreadable --auth-file). */
int stack_http_opts(const struct server_config *cfg, struct layer_http_opts *ho, char *why,
		    size_t whylen);
int stack_open(const struct server_config *cfg, struct layer **top, char *why, size_t whylen);

#endif
