/* What ublk-pool does to the pool (docs/state-dir.md, ublk-pool(8)). Each
 * returns a tool exit code and what it did, as a report the tool prints;
 * what went wrong on the way is logged. */
#ifndef UBLK_POOL_ADMIN_H
#define UBLK_POOL_ADMIN_H

#include "host/pool.h"

#include <stdbool.h>
#include <stdint.h>

struct reclaim_opts {
	bool caches, recover;
	uint64_t timeout_ms;
	uint64_t grace_s;       /* pool_problem's grace for unknown kernel devices */
	uint64_t hang_ms;       /* kill a server hung this long (with recover); 0: never */
};

/* One thing done to one device. */
struct pool_action {
	uint32_t id;
	enum pool_action_kind {
		POOL_STOP,              /* shutdown stopped the device */
		POOL_RECOVER,           /* a new server was attached */
		POOL_DELETE,
		POOL_REMOVE_ENTRY,      /* a state entry the kernel has no device for */
		POOL_REMOVE_CACHE,      /* the cache of a device deleted */
		POOL_WAIT,              /* nothing done: its killed server is still exiting, or
					 * its entry changed since the scan */
	} kind;
	bool ok;
	const char *problem;    /* pool_problem's (static), or NULL */
	char cache[PATH_MAX];   /* POOL_REMOVE_CACHE */
	char message[1200];     /* one line saying what happened */
};

struct pool_report {
	struct pool_action *actions;
	int n, cap;
};

/* "recover", "delete", "remove-entry", ... as ublk-pool --json shows them. */
const char *pool_action_name(enum pool_action_kind kind);
void pool_report_free(struct pool_report *r);

/* Close the pool to new devices and stop every device within timeout_ms. */
int pool_shutdown(uint64_t timeout_ms, struct pool_report *r);
/* The pool now, after killing its hung servers (with o->recover and
 * o->hang_ms), a device without a state entry confirmed by a second look
 * 2 s later: count, or -errno. */
int pool_scan_unhung(struct pool_dev **devs, const struct reclaim_opts *o);
/* Delete dead devices and remove stale entries (and, with o->caches,
 * orphaned caches); with o->recover, attach new servers instead where the
 * kernel waits for one. */
int pool_reclaim(const struct pool_dev *devs, int n, const struct reclaim_opts *o,
		 struct pool_report *r);
/* pool_reclaim with recover every interval_ms until SIGTERM or SIGINT;
 * each pass that acts hands its report to done. */
int pool_watch(struct reclaim_opts *o, uint64_t interval_ms,
	       void (*done)(const struct pool_report *r, void *arg), void *arg);

/* Have the server of device dev ("/dev/ublkbN", N or a name) write its
 * access trace now (docs/access-trace.md), within timeout_ms: an exit
 * code, with why saying what failed. */
int pool_save_trace(const char *dev, uint64_t timeout_ms, char *why, size_t whylen);

#endif
