/* What ublk-pool does to the pool (docs/state-dir.md, ublk-pool(8)). Each
 * returns a tool exit code and reports on stdout (JSON with json). */
#ifndef UBLK_POOL_ADMIN_H
#define UBLK_POOL_ADMIN_H

#include "host/pool.h"

#include <stdbool.h>
#include <stdint.h>

struct reclaim_opts {
	bool caches, recover, json;
	uint64_t timeout_ms;
	uint64_t grace_s;       /* pool_problem's grace for unknown kernel devices */
	uint64_t hang_ms;       /* kill a server hung this long (with recover); 0: never */
};

/* Close the pool to new devices and stop every device within timeout_ms. */
int pool_shutdown(uint64_t timeout_ms, bool json);
/* The pool now, after killing its hung servers (with o->recover and
 * o->hang_ms): count, or -errno. */
int pool_scan_unhung(struct pool_dev **devs, const struct reclaim_opts *o);
/* Delete dead devices and remove stale entries (and, with o->caches,
 * orphaned caches); with o->recover, attach new servers instead where the
 * kernel waits for one. */
int pool_reclaim(const struct pool_dev *devs, int n, const struct reclaim_opts *o);
/* pool_reclaim with recover every interval_ms until SIGTERM or SIGINT; a
 * pass prints only when it acts. */
int pool_watch(struct reclaim_opts *o, uint64_t interval_ms);

#endif
