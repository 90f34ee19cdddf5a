/* How ublk-pool shows the pool: a table of chosen columns, as losetup -l
 * and lsblk show theirs, or JSON (ublk-pool(8) documents both). */
#ifndef UBLK_POOL_VIEW_H
#define UBLK_POOL_VIEW_H

#include "host/pool.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define POOL_VIEW_MAX_COLUMNS 32
#define POOL_VIEW_LIST "DEVICE,KERNEL,STATE,PID,UP,SIZE,RO,NAME,BASE,PROBLEM"
#define POOL_VIEW_STATUS "DEVICE,KERNEL,STATE,PID,UP,NAME,READS,WRITES,ERRORS,CACHE-USED,PREFETCH,PREFETCH-HITS,BASE,PROBLEM"

struct pool_view {
	int cols[POOL_VIEW_MAX_COLUMNS];
	int n_cols;
	bool headings;          /* a first line naming the columns */
	bool raw;               /* one space between values, none aligned; \xHH for odd bytes */
	uint64_t grace_s;       /* for the PROBLEM column (pool_problem) */
	uint64_t hang_ms;       /* for JSON's hung (pool_hung) */
};

/* Columns by name, comma-separated (case does not matter): 0, or -EINVAL
 * with why naming the unknown one and every known one. */
int pool_view_columns(struct pool_view *v, const char *names, char *why, size_t len);
void pool_view_table(FILE *f, const struct pool_view *v, const struct pool_dev *devs, int n);
/* {"devices":[...]}; with_stats: each device's stats, features and flags too. */
void pool_view_json(FILE *f, const struct pool_view *v, const struct pool_dev *devs, int n,
		    bool with_stats);

#endif
