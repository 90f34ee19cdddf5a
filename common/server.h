/* The server of one device: creates it, runs its queues, and deletes it
 * when stopped (signal, or STOP_DEV from ublk-del). */
#ifndef UBLK_SERVER_H
#define UBLK_SERVER_H

#include "image/stack.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SERVER_DEFAULT_QUEUES 1
#define SERVER_DEFAULT_DEPTH 128
#define SERVER_MAX_QUEUES 32
#define SERVER_MAX_DEPTH 1024
#define SERVER_IO_BUF_BYTES (512u * 1024)

struct server_config {
	struct stack_config stack;      /* the image the device serves */
	const char *name;       /* operator's name for the device, unique; or NULL */
	int want_id;            /* the id asked for (--id); -1: the kernel's choice */
	unsigned queues;
	unsigned depth;
	bool no_recovery;       /* IO fails at once when the server dies */
	const char *cgroup;     /* cgroup v2 folder the server moves into; or NULL */
	int recover_id;         /* attach to this device whose server died; -1: create one */
	int ready_fd;           /* readiness channel (ready.h); -1: print the device on stdout */
	uint32_t owner_nonce;   /* random half of the device's cookie (ctrl_owner_cookie); 0: draw one */
	uint64_t timeout_ms;    /* deadline of each control step */
};

/* Checks that need no device: ublk in the kernel, root, image usable.
 * Returns 0 or an exit code with why explaining. */
int server_preflight(const struct server_config *cfg, char *why, size_t len);

/* Runs until the device is stopped. Returns a tool exit code. */
int server_run(const struct server_config *cfg);

#endif
