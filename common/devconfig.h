/* A device's saved configuration: the config and secret files of its
 * state entry (docs/state-dir.md), written by its server, read back by a
 * server that recovers the device. One encoding: an option per line, its
 * key the option's long name. */
#ifndef UBLK_DEVCONFIG_H
#define UBLK_DEVCONFIG_H

#include "server.h"

#include <stddef.h>
#include <stdint.h>

/* Write cfg (URLs redacted) and, when its options carry credentials, the
 * secret file (first, mode 0600) into entry id; device_size is shown to
 * readers. A value that cannot be encoded is refused. 0 or -errno. */
int devconfig_write(uint32_t id, const struct server_config *cfg, uint64_t device_size);

/* The options entry id's server was started with, format 2 or format 1
 * (serve_arg lines) alike, and its credentials. A malformed config is
 * refused whole. 0, or an exit code with why set. Strings stay valid for
 * the life of the process. */
int devconfig_read(uint32_t id, struct server_config *cfg, char *why, size_t len);

#endif
