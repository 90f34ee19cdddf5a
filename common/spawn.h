/* Starting ublk-serve in the background and waiting until its device is
 * live: what ublk-add and ublk-pool's recovery do. */
#ifndef UBLK_SPAWN_H
#define UBLK_SPAWN_H

#include "host/ready.h"
#include "server.h"

#include <stdint.h>
#include <sys/types.h>

/* A server for cfg, detached, its credentials passed on an fd (never in
 * argv), waited for at most twice cfg's deadline. 0 when the device is
 * live, else an exit code with res->msg saying why; nothing is left then.
 * *release_on_id (if not NULL) is closed once the kernel has the device
 * (ready_spawn_fd). */
int spawn_serve(const struct server_config *cfg, int *release_on_id, struct ready_result *res,
		pid_t *pid);

/* "ublk-serve --recover ID" detached (state directory and deadline of
 * this process), waited for until the device is live again, as
 * spawn_serve, except that a failed recovery leaves the device as it was
 * (waiting for the next attempt). */
int spawn_recover(uint32_t id, uint64_t timeout_ms, struct ready_result *res, pid_t *pid);

#endif
