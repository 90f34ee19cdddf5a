/* The state directory (docs/state-dir.md): one entry per device. */
#ifndef UBLK_STATE_H
#define UBLK_STATE_H

#include <stddef.h>
#include <stdint.h>

#define STATE_FORMAT_VERSION 1

void state_set_dir(const char *dir);
const char *state_dir(void);

/* Create the device's entry (replacing a stale one). 0 or -errno. */
int state_create(uint32_t id);
/* Atomically replace file `name` of the entry with `content`. */
int state_write(uint32_t id, const char *name, const char *content);
/* Read file `name` (NUL-terminated, truncated to len-1). Bytes or -errno. */
int state_read(uint32_t id, const char *name, char *buf, size_t len);
/* fd of the entry's log, opened for append, or -errno. */
int state_open_log(uint32_t id);
/* Lock the entry (flock, exclusive, not waiting): a server holds it for its
 * life, so a second one (a racing recovery) is refused. Lock fd, or
 * -EBUSY when held, -ENOENT without an entry. */
int state_lock(uint32_t id);
/* Remove the entry; 0 also when it did not exist. */
int state_remove(uint32_t id);
/* 1 if the entry exists, 0 if not. */
int state_exists(uint32_t id);

/* Value of key in the entry's config ("key=value" lines) into buf.
 * 0, or -ENOENT when the entry or the key is missing. */
int state_config_get(uint32_t id, const char *key, char *buf, size_t len);
/* The first max values of key, in order, pointing into buf (which then
 * holds the config). Count, or -ENOENT without a config. */
int state_config_all(uint32_t id, const char *key, char *buf, size_t len, char **values, int max);
/* Id of a device whose config has key=want (e.g. its name); -ENOENT if none. */
int state_find(const char *key, const char *want, uint32_t *id);

#endif
