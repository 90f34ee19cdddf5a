/* The pool in Prometheus' text exposition format (docs/state-dir.md,
 * metrics). */
#ifndef UBLK_METRICS_H
#define UBLK_METRICS_H

#include "host/pool.h"

#include <stdint.h>

/* devs (pool_scan) with grace_s as in pool_problem, on stdout, or
 * atomically into textfile/ublk.prom (a node-exporter textfile folder).
 * A tool exit code. */
int pool_metrics(const struct pool_dev *devs, int n, uint64_t grace_s, const char *textfile);

#endif
