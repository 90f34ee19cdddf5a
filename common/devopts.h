/* Options that describe a device, shared by ublk-add and ublk-serve so
 * both parse them identically. */
#ifndef UBLK_DEVOPTS_H
#define UBLK_DEVOPTS_H

#include "cli.h"
#include "server.h"

enum devopt_key {
	DEVOPT_BASE = 'b',
	DEVOPT_QUEUES = 'q',
	DEVOPT_DEPTH = 'd',
	DEVOPT_READ_ONLY = 'r',
	DEVOPT_TIMEOUT = 't',
	DEVOPT_VERBOSE = 'v',
	DEVOPT_CACHE = 'c',
	DEVOPT_SIZE = 's',
	DEVOPT_INJECT = 0x101,
	DEVOPT_NAME = 'n',
	DEVOPT_STATE_DIR = 0x100,
};

void devopts_defaults(struct server_config *cfg);
/* Apply option key; returns 1 if it was a device option, 0 if not, or
 * CLI_DONE with c->exit_code set on a bad value. */
int devopts_apply(struct cli *c, struct server_config *cfg, int key, const char *arg);
/* Check required options after parsing; 0 or CLI_DONE. Makes base absolute. */
int devopts_finish(struct cli *c, struct server_config *cfg);

#endif
