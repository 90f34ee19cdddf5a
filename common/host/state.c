#include "host/state.h"
#include "host/holders.h"
#include "kernel/ctrl.h"
#include "util/atomic_file.h"
#include "util/cfgline.h"
#include "util/exitcodes.h"
#include "util/fileio.h"
#include "util/log.h"
#include "util/parse.h"
#include "util/safedir.h"
#include "util/timeutil.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static const char *dir_override;

void state_set_dir(const char *dir) { dir_override = dir; }

const char *state_dir(void)
{
	const char *env = getenv("UBLK_STATE_DIR");
	if (dir_override)
		return dir_override;
	return env && *env ? env : "/run/ublk-tools";
}

static void entry_name(uint32_t id, char *buf, size_t len)
{
	snprintf(buf, len, "ublkb%u", id);
}

/* A refusal is said once per process with what to do; callers add their
 * own context from the -errno. */
static void say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void say(const char *fmt, ...)
{
	static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
	static char last[600];
	char msg[600];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	pthread_mutex_lock(&lock);
	bool fresh = strcmp(msg, last) != 0;
	if (fresh)
		snprintf(last, sizeof(last), "%s", msg);
	pthread_mutex_unlock(&lock);
	if (fresh)
		log_err("%s", msg);
}

/* Root's or ours: the owners an entry may have. */
static bool owner_ok(const struct stat *st)
{
	return st->st_uid == 0 || st->st_uid == geteuid();
}

static const struct safedir state_safedir = { "state directory", "--state-dir" };

/* While held, the directory checked when the hold began (state_dir_hold);
 * holds nest, and are the holding thread's only. */
static _Thread_local int held_root = -1, holds;

int state_dir_hold(void)
{
	int fd;

	if (held_root < 0 && (fd = state_dir_open(false)) < 0)
		return fd;
	if (held_root < 0)
		held_root = fd;
	holds++;
	return 0;
}

void state_dir_release(void)
{
	if (holds > 0 && --holds == 0) {
		close(held_root);
		held_root = -1;
	}
}

/* The checked state directory; a refusal is said once, with what to do. */
int state_dir_open(bool create)
{
	char why[1024];
	int fd;

	/* a description of its own: readdir offsets are not shared */
	if (held_root >= 0)
		return (fd = openat(held_root, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0 ? -errno : fd;
	/* --state-dir is checked with the options; servers and tools run in
	 * other folders, so a relative one would name another folder in each */
	if (state_dir()[0] != '/' || strlen(state_dir()) > STATE_DIR_MAX) {
		say("state directory %.200s%s: not an absolute path of at most %d bytes (UBLK_STATE_DIR "
		    "must be one)", state_dir(), strlen(state_dir()) > 200 ? "..." : "", STATE_DIR_MAX);
		return -EINVAL;
	}
	fd = safedir_open(&state_safedir, state_dir(), create, create, why, sizeof(why));
	if (fd < 0 && why[0])
		say("%s", why);
	return fd;
}

int state_check_dir(bool create)
{
	int fd = state_dir_open(create);
	if (fd >= 0)
		close(fd);
	/* one that may not be read (not root) would look empty: "no device" */
	if (fd == -EACCES)
		return EXIT_PERM;
	return fd == -EPERM || fd == -ELOOP || fd == -ENOTDIR ? EXIT_FAIL : 0;
}

/* An entry of ours: a real folder (never through a link), owned by us or
 * root, writable by nobody else. */
static int entry_check(int fd)
{
	struct stat st;

	if (fstat(fd, &st))
		return -errno;
	if (!S_ISDIR(st.st_mode))
		return -ENOTDIR;
	if (!owner_ok(&st) || (st.st_mode & (S_IWGRP | S_IWOTH)))
		return -EPERM;
	return 0;
}

int state_entry_open(uint32_t id)
{
	char name[32];
	int root = state_dir_open(false), fd, ret;

	if (root < 0)
		return root;
	entry_name(id, name, sizeof(name));
	fd = openat(root, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	ret = fd < 0 ? -errno : entry_check(fd);
	close(root);
	if (ret && fd >= 0)
		close(fd);
	if (ret == -ELOOP || ret == -ENOTDIR || ret == -EPERM)
		say("state entry %s/%s is not a folder of ours (a symbolic link, another file, or "
		    "writable by others): ignored; remove it", state_dir(), name);
	return ret ? ret : fd;
}

uint64_t state_cookie_at(int dir)
{
	char buf[32];
	int fd = state_open_regular_at(dir, "cookie", O_RDONLY);
	ssize_t n = fd < 0 ? -1 : read(fd, buf, sizeof(buf) - 1);
	uint64_t cookie = 0;

	if (fd >= 0)
		close(fd);
	if (n == 17 && buf[16] == '\n' && strspn(buf, "0123456789abcdefABCDEF") == 16) {
		buf[16] = 0;
		cookie = strtoull(buf, NULL, 16);
	}
	return cookie;
}

/* The files of the entry open as fd (name in root), then its folder. An
 * entry has no folders; one planted there is left (unlinkat refuses it),
 * and then the entry's rmdir fails rather than recursing into anything.
 * 0 or -errno. */
static int empty_entry_fd(int fd, int root, const char *name)
{
	int dup_fd = dup(fd), ret;
	DIR *d = dup_fd < 0 ? NULL : fdopendir(dup_fd);
	struct dirent *e;

	if (!d) {
		ret = -errno;
		if (dup_fd >= 0)
			close(dup_fd);
		return ret;
	}
	while ((e = readdir(d)))
		if (strcmp(e->d_name, ".") && strcmp(e->d_name, ".."))
			unlinkat(fd, e->d_name, 0);
	closedir(d);
	return unlinkat(root, name, AT_REMOVEDIR) && errno != ENOENT ? -errno : 0;
}

/* Remove entry name of folder root: a link or file is removed itself, a
 * folder's files one by one; nothing is followed. With only, just a
 * folder whose cookie is *only. */
static int remove_entry(int root, const char *name, const uint64_t *only)
{
	struct stat st;
	int fd, ret;

	if (fstatat(root, name, &st, AT_SYMLINK_NOFOLLOW))
		return errno == ENOENT ? 0 : -errno;
	if (!S_ISDIR(st.st_mode))
		return unlinkat(root, name, 0) && errno != ENOENT ? -errno : 0;
	fd = openat(root, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return errno == ENOENT ? 0 : -errno;
	ret = only && state_cookie_at(fd) != *only ? 0 : empty_entry_fd(fd, root, name);
	close(fd);
	return ret;
}

int state_create_locked(uint32_t id, uint64_t cookie)
{
	char name[32], fresh[40], version[16], hex[24];
	int root = state_dir_open(true), dir = -1, ret;

	if (root < 0)
		return root;
	/* made whole under another name, then renamed into place: a tool that
	 * removes a deleted device's entry by its cookie never meets one of a
	 * new device without it. Only one server at a time makes entry ID:
	 * it holds /dev/ublkcID open, and with it the id. */
	entry_name(id, name, sizeof(name));
	snprintf(fresh, sizeof(fresh), ".%s.new", name);
	snprintf(version, sizeof(version), "%d\n", STATE_FORMAT_VERSION);
	snprintf(hex, sizeof(hex), "%016llx\n", (unsigned long long)cookie);
	ret = remove_entry(root, fresh, NULL);
	if (!ret && mkdirat(root, fresh, 0700))
		ret = -errno;
	if (!ret && (dir = openat(root, fresh, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)) < 0)
		ret = -errno;
	/* locked before it has its name: a tool never sees the entry of a
	 * running server unlocked (and takes it for a dead one's) */
	if (!ret && flock(dir, LOCK_EX | LOCK_NB))
		ret = -errno;
	if (!ret)
		ret = atomic_write_file(dir, "version", version, strlen(version), 0600, ATOMIC_FSYNC);
	if (!ret)
		ret = atomic_write_file(dir, "cookie", hex, strlen(hex), 0600, ATOMIC_FSYNC);
	if (!ret)
		ret = remove_entry(root, name, NULL);
	if (!ret && renameat(root, fresh, root, name))
		ret = -errno;
	if (ret)
		remove_entry(root, fresh, NULL);
	if (ret && dir >= 0)
		close(dir);
	close(root);
	return ret ? ret : dir;
}

#define SWEEP_MIN_AGE_S 60

void state_sweep_unfinished(uint64_t min_age_s)
{
	int root = state_dir_open(false);
	struct dirent *e;
	DIR *d;

	if (root < 0)
		return;
	if (!(d = fdopendir(root))) {
		close(root);
		return;
	}
	/* A server makes its own again (state_create_locked), and locks it
	 * a moment after it made it: only those of servers killed long ago.
	 * Emptied through the fd locked and looked at, so that one made anew
	 * under the name meanwhile is never touched (its rmdir then fails). */
	if (min_age_s < SWEEP_MIN_AGE_S)
		min_age_s = SWEEP_MIN_AGE_S;
	while ((e = readdir(d))) {
		size_t len = strlen(e->d_name);
		struct stat st;
		int fd;
		if (strncmp(e->d_name, ".ublkb", 6) || len < 10 || strcmp(e->d_name + len - 4, ".new"))
			continue;
		fd = openat(dirfd(d), e->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		if (fd < 0)
			continue;
		if (!fstat(fd, &st) && (uint64_t)(time(NULL) - st.st_mtime) >= min_age_s &&
		    !flock(fd, LOCK_EX | LOCK_NB) && fd_is_named(fd, dirfd(d), e->d_name, AT_SYMLINK_NOFOLLOW))
			empty_entry_fd(fd, dirfd(d), e->d_name);
		close(fd);
	}
	closedir(d);
}

int state_create(uint32_t id, uint64_t cookie)
{
	int fd = state_create_locked(id, cookie);

	if (fd < 0)
		return fd;
	close(fd);
	return 0;
}

int state_entry_version(uint32_t id)
{
	char v[16];
	uint64_t n;
	int ret = state_read(id, "version", v, sizeof(v));

	if (ret < 0)
		return ret;
	v[strcspn(v, "\n")] = 0;
	return parse_uint(v, 1, 9999, &n) ? -EINVAL : (int)n;
}

static int write_file(uint32_t id, const char *name, const char *content, unsigned flags)
{
	int fd = state_entry_open(id), ret;

	if (fd < 0)
		return fd;
	ret = atomic_write_file(fd, name, content, strlen(content), 0600, flags);
	close(fd);
	return ret;
}

int state_write(uint32_t id, const char *name, const char *content)
{
	return write_file(id, name, content, ATOMIC_FSYNC);
}

int state_write_volatile(uint32_t id, const char *name, const char *content)
{
	return write_file(id, name, content, 0);
}

int state_open_regular_at(int dfd, const char *name, int flags)
{
	struct stat st;
	int fd, ret;

	/* O_NONBLOCK: a planted FIFO must not hang the reader before fstat */
	fd = openat(dfd, name, flags | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC, 0600);
	if (fd < 0)
		return -errno;
	if (fstat(fd, &st) || !S_ISREG(st.st_mode)) {
		close(fd);
		return -EINVAL;
	}
	/* back to blocking, for appends and locks */
	if (fcntl(fd, F_SETFL, flags & O_APPEND)) {
		ret = -errno;
		close(fd);
		return ret;
	}
	return fd;
}

int state_open_file(uint32_t id, const char *name, int flags)
{
	int dfd = state_entry_open(id), fd;

	if (dfd < 0)
		return dfd;
	fd = state_open_regular_at(dfd, name, flags);
	close(dfd);
	return fd;
}

int state_read(uint32_t id, const char *name, char *buf, size_t len)
{
	size_t used = 0;
	int fd = state_open_file(id, name, O_RDONLY), ret = 0;

	if (fd < 0)
		return fd;
	while (used + 1 < len) {
		ssize_t n = read(fd, buf + used, len - 1 - used);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			ret = -errno;
		if (n <= 0)
			break;
		used += (size_t)n;
	}
	close(fd);
	buf[used] = 0;
	return ret ? ret : (int)used;
}

int state_stat(uint32_t id, const char *name, struct stat *st)
{
	int fd = state_open_file(id, name, O_RDONLY), ret = 0;

	if (fd < 0)
		return fd;
	if (fstat(fd, st))
		ret = -errno;
	close(fd);
	return ret;
}

int state_touch(uint32_t id, const char *name)
{
	int fd = state_entry_open(id), ret;

	if (fd < 0)
		return fd;
	ret = utimensat(fd, name, NULL, AT_SYMLINK_NOFOLLOW) ? -errno : 0;
	close(fd);
	return ret;
}

int state_open_log(uint32_t id)
{
	return state_open_file(id, "log", O_WRONLY | O_CREAT | O_APPEND);
}

int state_rotate_log(uint32_t id)
{
	int dfd = state_entry_open(id), ret;

	if (dfd < 0)
		return dfd;
	/* renameat replaces a planted link at log.1 itself, never its target */
	ret = renameat(dfd, "log", dfd, "log.1") ? -errno : 0;
	close(dfd);
	return ret ? ret : state_open_log(id);
}

int state_lock(uint32_t id)
{
	int fd = state_entry_open(id);

	if (fd < 0)
		return fd;
	if (flock(fd, LOCK_EX | LOCK_NB)) {
		int err = errno == EWOULDBLOCK ? -EBUSY : -errno;
		close(fd);
		return err;
	}
	return fd;
}

static int remove_id(uint32_t id, const uint64_t *only)
{
	char name[32];
	int root = state_dir_open(false), ret;

	if (root < 0)
		return root == -ENOENT ? 0 : root;
	entry_name(id, name, sizeof(name));
	ret = remove_entry(root, name, only);
	close(root);
	return ret;
}

int state_remove(uint32_t id)
{
	return remove_id(id, NULL);
}

uint64_t state_entry_cookie(uint32_t id)
{
	int fd = state_entry_open(id);
	uint64_t cookie = fd < 0 ? 0 : state_cookie_at(fd);

	if (fd >= 0)
		close(fd);
	return cookie;
}

int state_remove_same(uint32_t id, uint64_t cookie)
{
	return remove_id(id, &cookie);
}

int state_exists(uint32_t id)
{
	char name[32];
	struct stat st;
	int root = state_dir_open(false), ret;

	if (root < 0)
		return 0;
	entry_name(id, name, sizeof(name));
	ret = !fstatat(root, name, &st, AT_SYMLINK_NOFOLLOW) && S_ISDIR(st.st_mode);
	close(root);
	return ret;
}

/* Keys format 2 renamed (docs/state-dir.md, Versioning). */
static const char *format1_name(const char *key)
{
	static const char *renamed[][2] = {
		{ "e2b", "e2b_root" }, { "build", "e2b_build" }, { "device_size", "size" },
	};
	for (size_t i = 0; i < sizeof(renamed) / sizeof(renamed[0]); i++)
		if (!strcmp(key, renamed[i][0]))
			return renamed[i][1];
	return NULL;
}

static int take_line(const char *key, const char *value, void *arg)
{
	struct state_config *c = arg;

	if (c->n == c->cap) {
		int cap = c->cap ? 2 * c->cap : 32;
		void *line = realloc(c->line, (size_t)cap * sizeof(*c->line));
		if (!line)
			return -ENOMEM;
		c->line = line;
		c->cap = cap;
	}
	c->line[c->n].key = key;
	c->line[c->n++].value = value;
	return 0;
}

int state_config_load(uint32_t id, struct state_config *c)
{
	int n;

	memset(c, 0, sizeof(*c));
	c->text = malloc(STATE_CONFIG_MAX + 1);
	if (!c->text)
		return -ENOMEM;
	n = state_read(id, "config", c->text, STATE_CONFIG_MAX + 1);
	if (n < 0)
		return -ENOENT;
	/* a config that fills the buffer may go on: better none than half */
	if ((size_t)n >= STATE_CONFIG_MAX)
		return -EFBIG;
	/* a malformed config is not read at all; devconfig_read names the line */
	int ret = cfgline_parse(c->text, (size_t)n, take_line, c, NULL);
	if (ret)
		c->n = 0;
	return ret;
}

static int values_of(const struct state_config *c, const char *key, const char **values, int max)
{
	int n = 0;

	for (int i = 0; i < c->n; i++)
		if (!strcmp(c->line[i].key, key)) {
			if (n < max)
				values[n] = c->line[i].value;
			n++;
		}
	return n;
}

int state_config_values(const struct state_config *c, const char *key, const char **values, int max)
{
	int n = values_of(c, key, values, max);
	const char *old = format1_name(key);

	/* the key itself wins over its old name */
	return n || !old ? n : values_of(c, old, values, max);
}

const char *state_config_value(const struct state_config *c, const char *key)
{
	const char *v;

	return state_config_values(c, key, &v, 1) ? v : NULL;
}

void state_config_free(struct state_config *c)
{
	free(c->text);
	free(c->line);
	memset(c, 0, sizeof(*c));
}

int state_config_get(uint32_t id, const char *key, char *buf, size_t len)
{
	struct state_config c;
	const char *v;
	int ret = state_config_load(id, &c);

	if (!ret && !(v = state_config_value(&c, key)))
		ret = -ENOENT;
	if (!ret)
		snprintf(buf, len, "%s", v);
	state_config_free(&c);
	return ret;
}

/* How much an entry counts among several with the same name: one whose
 * device the kernel has, and more one whose server runs, before a stale
 * one a crash left. */
static int entry_weight(uint32_t id)
{
	return (state_server_pid(id) ? 2 : 0) + ctrl_has_device(id);
}

int state_entry_held_by(uint32_t id, pid_t pid)
{
	int fd = state_entry_open(id), ret;
	struct stat st;

	if (fd < 0)
		return fd;
	ret = fstat(fd, &st) ? -errno : 0;
	close(fd);   /* before the scan, which may be of this process */
	return ret ? ret : process_has_open(pid, st.st_dev, st.st_ino);
}

pid_t state_server_pid(uint32_t id)
{
	char v[32] = "";
	pid_t pid;

	if (state_read(id, "pid", v, sizeof(v)) <= 0 || !pid_alive(pid = atoi(v)))
		return 0;
	/* where it cannot be told, the pid stands */
	return state_entry_held_by(id, pid) == 0 ? 0 : pid;
}

int state_find(const char *key, const char *want, uint32_t *id)
{
	return state_find_other(key, want, UINT32_MAX, id);
}

int state_find_other(const char *key, const char *want, uint32_t self, uint32_t *id)
{
	/* one check of the path for the whole scan */
	int root = state_dir_hold();
	struct dirent *e;
	int ret = -ENOENT, best = -1;
	DIR *d;

	if (root < 0)
		return root;
	root = state_dir_open(false);
	if (root < 0 || !(d = fdopendir(root))) {
		ret = root < 0 ? root : -errno;
		if (root >= 0)
			close(root);
		state_dir_release();
		return ret;
	}
	while ((e = readdir(d))) {
		char value[4096];
		uint32_t v;
		int w;
		if (strncmp(e->d_name, "ublkb", 5) || parse_dev_id(e->d_name, &v) || v == self)
			continue;
		if (state_config_get(v, key, value, sizeof(value)) || strcmp(value, want))
			continue;
		if ((w = entry_weight(v)) > best || (w == best && v < *id)) {
			*id = v;
			best = w;
			ret = 0;
		}
	}
	closedir(d);
	state_dir_release();
	return ret;
}
