/* Who holds a device open (host/holders.c). */
#ifndef UBLK_HOLDERS_H
#define UBLK_HOLDERS_H

#include <stddef.h>
#include <stdint.h>

/* Describe who holds /dev/ublkbID (or a partition) open: processes with an
 * open fd, mounts (in this process's mount namespace, else in the first
 * other namespace a process is in that has one), stacked devices. Returns
 * how many were found (0: none), writing "pid 123 (mkfs.ext4), mounted on
 * /mnt (mount namespace of pid 456 (sh))" into desc. */
int device_holders(uint32_t id, char *desc, size_t len);

#endif
