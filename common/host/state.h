/* The state directory (docs/state-dir.md): one entry per device. */
#ifndef UBLK_STATE_H
#define UBLK_STATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/stat.h>
#include <sys/types.h>

#define STATE_FORMAT_VERSION 2
#define STATE_CONFIG_MAX (512 * 1024)   /* bytes of an entry's config */
/* A server rewrites its entry's stats file this often: its heartbeat. */
#define STATE_STATS_PERIOD_MS 1000

void state_set_dir(const char *dir);
/* The longest state directory (--state-dir, UBLK_STATE_DIR): its entries'
 * files are named below it, within PATH_MAX. */
#define STATE_DIR_MAX 1024
const char *state_dir(void);

/* The state directory, checked (docs/security.md): every folder on its
 * way, as given and as resolved, belongs to root or us and only root or we
 * can change it (others may write only with the sticky bit); the folder
 * itself is no symlink, belongs to us (to us or root when only reading)
 * and is writable by nobody else. A refusal is said on stderr once with
 * what to do. create: make it (mkdir -p, 0700) when missing. fd for the
 * *at() calls, or -errno (-ENOENT when missing, -EPERM/-ELOOP refused). */
int state_dir_open(bool create);
/* Check the state directory once for a run of calls (a scan of every
 * entry): until state_dir_release, state_dir_open opens the directory
 * found then, without checking its path again, in the calling thread
 * (other threads still check). Holds nest. 0 (then release it) or -errno
 * as state_dir_open. */
int state_dir_hold(void);
void state_dir_release(void);
/* The exit code of a refusal of the state directory, said on stderr:
 * EXIT_FAIL for one not safe to use (not ours, a link, not a folder),
 * EXIT_PERM for one this user may not read (it would look empty);
 * else 0 (also when missing: the operation meets that itself). Tools
 * call it before anything else; one that makes devices with create,
 * which makes it (checked first). */
int state_check_dir(bool create);
/* The device's entry, a real folder (O_NOFOLLOW) owned by us or root and
 * writable by nobody else. fd or -errno. */
int state_entry_open(uint32_t id);
/* The entry's format version (its "version" file), or -errno (-EINVAL:
 * not a number from 1 to 9999). */
int state_entry_version(uint32_t id);
/* Create the entry of the device with this cookie (ctrl_owner_cookie),
 * replacing a stale one. 0 or -errno. */
int state_create(uint32_t id, uint64_t cookie);
/* Remove the entries a server was killed making (.ublkbN.new), locked by
 * nobody and older than min_age_s seconds: best effort (reclaim). */
void state_sweep_unfinished(uint64_t min_age_s);
/* state_create, the entry locked (state_lock) from before it has its
 * name: the lock's fd, or -errno. */
int state_create_locked(uint32_t id, uint64_t cookie);
/* Atomically replace file `name` of the entry with `content`. */
int state_write(uint32_t id, const char *name, const char *content);
/* state_write without its fsync, for a file rewritten every second that a
 * crash may lose (stats): on a state directory on disk, a thousand
 * servers would each sync once a second. */
int state_write_volatile(uint32_t id, const char *name, const char *content);
/* Read file `name` (NUL-terminated, truncated to len-1). Bytes or -errno. */
int state_read(uint32_t id, const char *name, char *buf, size_t len);
/* fstat of file `name` (a regular file, not followed). 0 or -errno. */
int state_stat(uint32_t id, const char *name, struct stat *st);
/* Set file name's times to now, without writing it (nor following a
 * link). 0 or -errno. */
int state_touch(uint32_t id, const char *name);
/* fd of the entry's log, opened for append, or -errno. */
int state_open_log(uint32_t id);
/* The log moved to log.1 (replacing it) and a new one opened: its fd, or
 * -errno. The server rotates at STATE_LOG_MAX, so that an entry's logs
 * stay under twice that (the state directory is usually on /run). */
#define STATE_LOG_MAX (256u << 10)
int state_rotate_log(uint32_t id);
/* Lock the entry (flock, exclusive, not waiting): a server holds it for its
 * life, so a second one (a racing recovery) is refused. Lock fd, or
 * -EBUSY when held, -ENOENT without an entry. */
int state_lock(uint32_t id);
/* A regular file of the entry, never through a link (state_open_regular_at
 * in the checked entry). fd or -errno. */
int state_open_file(uint32_t id, const char *name, int flags);
/* Open name in folder dfd: never through a link, only a regular file,
 * never blocking on a planted FIFO. fd or -errno (-EINVAL: not a file). */
int state_open_regular_at(int dfd, const char *name, int flags);
/* Remove the entry; 0 also when it did not exist. An entry that is a link
 * or a file is removed itself, never followed; its folder's files are
 * unlinked without following any. */
int state_remove(uint32_t id);
/* The cookie of the device the entry is of (ctrl_owner_cookie), 0 if
 * it has none (made by an older version). */
uint64_t state_entry_cookie(uint32_t id);
/* The same of the entry folder dir (a state_lock fd: that entry, whatever
 * has its name now). */
uint64_t state_cookie_at(int dir);
/* state_remove, if the entry is of the device with this cookie (0: one
 * without): once a device is deleted its id, and entry, may be a new
 * device's. */
int state_remove_same(uint32_t id, uint64_t cookie);
/* 1 if the entry exists, 0 if not. */
int state_exists(uint32_t id);

/* An entry's config ("key=value" lines, common/util/cfgline.h), read and
 * parsed once for several lookups. */
struct state_config {
	char *text;
	struct { const char *key, *value; } *line;
	int n, cap;
};
/* 0, -ENOENT when the entry or its config is missing, -EINVAL for a
 * malformed config (then no line is read), -EFBIG for one over
 * STATE_CONFIG_MAX, -ENOMEM. state_config_free it in any case. */
int state_config_load(uint32_t id, struct state_config *c);
/* How many values key has (or its name in format 1, when key has none);
 * the first max of them, in order, into values (pointing into c). */
int state_config_values(const struct state_config *c, const char *key, const char **values, int max);
/* The first value of key, or NULL. */
const char *state_config_value(const struct state_config *c, const char *key);
void state_config_free(struct state_config *c);
/* One value of key into buf: state_config_load's errors, or -ENOENT when
 * the key is missing. */
int state_config_get(uint32_t id, const char *key, char *buf, size_t len);
/* A server keeps its entry open, and locked, for life (state_lock): a
 * process with the entry's pid that does not is another that took the
 * pid after the server died, which on a busy host comes soon.
 * Whether process pid has entry id open: 1, 0, or -errno when that cannot
 * be told (no entry; -EACCES: another user's process). */
int state_entry_held_by(uint32_t id, pid_t pid);
/* The pid of entry id's server if it runs, else 0. */
pid_t state_server_pid(uint32_t id);
/* Id of a device whose config has key=want (e.g. its name); -ENOENT if none.
 * Of several, one whose server runs and whose device the kernel has comes
 * first, a stale entry last; then the lowest id. */
int state_find(const char *key, const char *want, uint32_t *id);
/* The same, leaving entry self out. */
int state_find_other(const char *key, const char *want, uint32_t self, uint32_t *id);

#endif
