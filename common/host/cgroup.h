/* Moving a server out of the control group of whoever started it. */
#ifndef UBLK_CGROUP_H
#define UBLK_CGROUP_H

#include <stdbool.h>
#include <stddef.h>

/* Whether dir is a cgroup v2 folder this process can move into; with
 * move, moves this process (all its threads) there. 0, or -errno with why
 * saying what is wrong and what to do. */
int cgroup_enter(const char *dir, bool move, char *why, size_t len);

#endif
