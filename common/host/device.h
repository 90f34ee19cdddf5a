/* Operations on existing devices shared by the tools: resolving a name,
 * deleting a device with a deadline (waiting for its holders, host/holders.h). */
#ifndef UBLK_DEVICE_H
#define UBLK_DEVICE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Device id from "/dev/ublkbN", "N" or a name given with --name. A tool
 * exit code: 0, EXIT_NO_UBLK when the kernel has no ublk (checked first,
 * so every tool answers that before looking at its operands), or
 * EXIT_NO_DEVICE, with why saying so. */
int device_resolve(const char *arg, uint32_t *id, char *why, size_t len);

/*
 * Delete device id within timeout_ms: wait until nothing holds it open
 * (unless force), stop it, let its server exit (killing it at the
 * deadline), delete it and its state entry. Idempotent: a device the kernel
 * no longer has but whose state entry remains is cleaned up and counts as
 * deleted. Returns 0, -ENODEV (no such device), -EBUSY (still held at the
 * deadline; why names the holder), -ETIMEDOUT, or another -errno with why
 * saying which step failed.
 */
int device_delete(uint32_t id, uint64_t timeout_ms, bool force, char *why, size_t len);
/* device_delete of the device with this cookie (ctrl_owner_cookie; 0:
 * whichever has the id): -ENODEV once the id is another device's. Either
 * way, a device that another deletes meanwhile, and whose id a new device
 * takes, is not stopped or deleted in its place. */
int device_delete_own(uint32_t id, uint64_t cookie, uint64_t timeout_ms, bool force, char *why,
		      size_t len);
/* device_delete of the device state entry id was made for (ublk-del
 * NAME), cookie being the entry's when the name was looked up (0: an
 * entry without one): where the kernel gave its id to another device,
 * only the entry goes; where the entry is another device's since, its
 * own is gone (-ENODEV), and nothing is done. */
int device_delete_of_entry(uint32_t id, uint64_t cookie, uint64_t timeout_ms, bool force,
			   char *why, size_t len);
/* Whether a running process serves device id now (its server, or one
 * that recovered it): 1, 0 (none, or no such device), or -errno. */
int device_is_served(uint32_t id);
/* The id of the device with this cookie: 0, or -ENODEV if none, or -errno. */
int device_find_own(uint64_t cookie, uint32_t *id);

/* Make the kernel look for a dead server of device id now instead of at
 * its next periodic check (5 s on 6.1): it looks when new IO arrives.
 * One 4 KiB read is issued by a detached process, which ends when the read
 * completes, that is once the device is live again (or deleted). */
void device_nudge(uint32_t id);

/* Set the IO scheduler of /dev/ublkbID's queue (as sysfs names it, e.g.
 * "none"): 0 or -errno. */
int device_set_scheduler(uint32_t id, const char *name);

#endif
