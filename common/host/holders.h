/* Who holds a device open (host/holders.c). */
#ifndef UBLK_HOLDERS_H
#define UBLK_HOLDERS_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/types.h>

/* Describe who holds /dev/ublkbID (or a partition) open: processes with an
 * open fd, mounts (in this process's mount namespace, else in the first
 * other namespace a process is in that has one), stacked devices. Returns
 * how many were found (0: none), writing "pid 123 (mkfs.ext4), mounted on
 * /mnt (mount namespace of pid 456 (sh))" into desc. */
int device_holders(uint32_t id, char *desc, size_t len);

/* The numbers of /dev/ublkbID and of its partitions, in *devs (freed by
 * the caller): how many (0: no such disk), or -errno. */
int device_numbers_of(uint32_t id, dev_t **devs);
/* device_holders of numbers taken before (device_numbers_of): a forced
 * stop removes the disk from sysfs, while a mount still holds it. */
int device_holders_of(uint32_t id, const dev_t *devs, size_t n, char *desc, size_t len);

/* The mounts of any of devs (a disk's numbers, its own first) in a mount
 * table (/proc/PID/mountinfo, which names a sandbox chooses reach), as
 * device_holders says them: how many. The parser, alone, for tests. */
int mount_table_holders(FILE *table, const dev_t *devs, size_t n, char *desc, size_t len);

/* A pidfd of the server of device id, pid (as the kernel or the state
 * directory recorded it), if that process has the device's char device
 * (/dev/ublkcID) open: the one process that may be waited for or killed
 * for the device. A dead server's pid is soon another process's on a busy
 * host. -ESRCH when it is not the server (or gone), -EACCES when its fds
 * cannot be looked at (then it may be), or -errno. */
int device_server_pidfd(uint32_t id, pid_t pid);

/* Whether process pid has the file dev, ino open: 1, 0 (also when there
 * is no such process), or -errno when its fds cannot be read (-EACCES:
 * another user's process). */
int process_has_open(pid_t pid, dev_t dev, ino_t ino);

#endif
