#include "host/pool.h"
#include "util/cfgline.h"
#include "util/exitcodes.h"
#include "kernel/ctrl.h"
#include "host/holders.h"
#include "host/state.h"
#include "util/fileio.h"
#include "util/parse.h"
#include "util/json_read.h"
#include "util/log.h"
#include "util/timeutil.h"

#include <dirent.h>
#include <stdarg.h>
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <poll.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>
#include <time.h>

static struct pool_dev *find_or_add(struct pool_dev **devs, int *n, int *cap, uint32_t id)
{
	for (int i = 0; i < *n; i++)
		if ((*devs)[i].id == id)
			return &(*devs)[i];
	if (*n == *cap) {
		*cap = *cap ? *cap * 2 : 16;
		struct pool_dev *grown = realloc(*devs, (size_t)*cap * sizeof(**devs));
		if (!grown)
			return NULL;
		*devs = grown;
	}
	struct pool_dev *d = &(*devs)[(*n)++];
	memset(d, 0, sizeof(*d));
	d->id = id;
	d->kernel_state = -1;
	return d;
}

static int take_feature(const char *key, const char *value, void *arg)
{
	struct pool_dev *d = arg;

	if (!strcmp(key, "kernel_features"))
		snprintf(d->kernel_features, sizeof(d->kernel_features), "%s", value);
	else if (!strcmp(key, "device_flags"))
		snprintf(d->device_flags, sizeof(d->device_flags), "%s", value);
	else if (!strcmp(key, "commands"))
		snprintf(d->commands, sizeof(d->commands), "%s", value);
	return 0;
}

static void copy_value(const struct state_config *cfg, const char *key, char *buf, size_t len)
{
	const char *v = state_config_value(cfg, key);

	if (v)
		snprintf(buf, len, "%s", v);
}

static void load_entry(struct pool_dev *d)
{
	char v[PATH_MAX];
	struct stat st;

	d->has_state = true;
	d->cookie = state_entry_cookie(d->id);
	if (state_read(d->id, "state", d->state, sizeof(d->state)) > 0)
		d->state[strcspn(d->state, "\n")] = 0;
	/* A server attaching for recovery is in the entry before the kernel
	 * knows it. */
	if (state_read(d->id, "pid", v, sizeof(v)) > 0 &&
	    (!d->pid || (atoi(v) != d->pid && pid_alive(atoi(v)))))
		d->pid = atoi(v);
	else if (!d->pid)       /* made, its pid not written yet: its cookie's */
		d->pid = ctrl_cookie_pid(d->cookie);
	char features[1024];
	int n = state_read(d->id, "features", features, sizeof(features));
	if (n > 0)
		cfgline_parse(features, (size_t)n, take_feature, d, NULL);
	/* one read of the config for every key: list and watch load every
	 * entry of the host at each pass */
	struct state_config cfg;
	const char *val, *layers[64];
	state_config_load(d->id, &cfg);
	copy_value(&cfg, "base", d->base, sizeof(d->base));
	copy_value(&cfg, "e2b", d->e2b_root, sizeof(d->e2b_root));
	copy_value(&cfg, "build", d->e2b_build, sizeof(d->e2b_build));
	copy_value(&cfg, "cache", d->cache, sizeof(d->cache));
	copy_value(&cfg, "name", d->name, sizeof(d->name));
	d->read_only = (val = state_config_value(&cfg, "read_only")) && !strcmp(val, "1");
	n = state_config_values(&cfg, "layer", layers, 64);
	d->n_layers = (unsigned)n;
	d->layers[0] = 0;
	for (int i = 0; i < n && i < 64; i++) {
		size_t used = strlen(d->layers), len = strlen(layers[i]);
		if (used + len + 2 < sizeof(d->layers))
			snprintf(d->layers + used, sizeof(d->layers) - used, "%s\n", layers[i]);
	}
	if ((val = state_config_value(&cfg, "device_size")))
		d->size = strtoull(val, NULL, 10);
	/* what a new server needs to attach: any config of format 2, and one
	 * of format 1 with its serve_arg lines (the first ones lacked them) */
	d->restartable = state_entry_version(d->id) >= 2 || state_config_value(&cfg, "serve_arg");
	if (!d->queues && (val = state_config_value(&cfg, "queues")))
		d->queues = (unsigned)atoi(val);
	if (!d->depth && (val = state_config_value(&cfg, "depth")))
		d->depth = (unsigned)atoi(val);
	state_config_free(&cfg);
	/* shown as it is by ublk-pool status --json: only when it is JSON */
	if (state_read(d->id, "stats", d->stats, sizeof(d->stats)) > 0)
		d->stats[strcspn(d->stats, "\n")] = 0;   /* one line, as the server writes it */
	if (pool_read_stats(d->stats, &d->stat))
		d->stats[0] = 0;
	d->heartbeat_age_ms = UINT64_MAX;
	if (!state_stat(d->id, "stats", &st)) {
		uint64_t when = (uint64_t)st.st_mtim.tv_sec * 1000 + (uint64_t)st.st_mtim.tv_nsec / 1000000;
		uint64_t now = wall_ms();
		d->heartbeat_age_ms = now > when ? now - when : 0;
	}
	if ((d->has_uptime = !state_stat(d->id, "version", &st)))
		d->uptime_s = time(NULL) > st.st_mtime ? (uint64_t)(time(NULL) - st.st_mtime) : 0;
}

/* One cache's size, as the stat process sends it. */
struct cache_size_record {
	uint32_t i;
	uint64_t bytes;
};

/* The stats run in a process of their own that holds nothing of ours but
 * the pipe it answers on: a stat stuck for good (a FUSE server that took
 * the request and hangs, a hard NFS mount) can neither be interrupted nor
 * end, and a thread stuck so would keep this process, and the pipe of a
 * caller's $(ublk-pool list), from ending. Records are smaller than
 * PIPE_BUF: each arrives whole. */
static void cache_stats_child(const struct pool_dev *devs, int n)
{
	struct stat st;

	for (int i = 0; i < n; i++) {
		struct cache_size_record r = { .i = (uint32_t)i, .bytes = UINT64_MAX };
		if (!devs[i].cache[0])
			continue;
		if (!stat(devs[i].cache, &st))
			r.bytes = (uint64_t)st.st_blocks * 512;
		if (write(3, &r, sizeof(r)) != (ssize_t)sizeof(r))
			_exit(1);
	}
	_exit(0);
}

void pool_cache_sizes(struct pool_dev *devs, int n)
{
	struct cache_size_record r;
	size_t got = 0;
	int fds[2], next = 0;   /* next: where the stat process is */
	bool any = false, all_said = false;
	pid_t pid;

	for (int i = 0; i < n; i++) {
		devs[i].has_cache_bytes = false;
		any |= devs[i].cache[0] != 0;
	}
	if (!any)
		return;
	if (pipe2(fds, O_CLOEXEC)) {
		log_err("cache sizes left out: pipe: %s", strerror(errno));
		return;
	}
	pid = fork_orphan(fds[1]);
	if (pid == 0)
		cache_stats_child(devs, n);
	close(fds[1]);
	if (pid < 0) {
		log_err("cache sizes left out: fork: %s", strerror(-pid));
		close(fds[0]);
		return;
	}
	uint64_t deadline = now_ms() + POOL_CACHE_STAT_S * 1000;
	for (;;) {
		struct pollfd p = { .fd = fds[0], .events = POLLIN };
		uint64_t left = ms_left(deadline);
		if (!left || poll(&p, 1, poll_timeout(left)) <= 0)
			break;
		ssize_t k = read(fds[0], (char *)&r + got, sizeof(r) - got);
		if (k <= 0) {
			all_said = !k;
			break;
		}
		if ((got += (size_t)k) < sizeof(r))
			continue;
		got = 0;
		if (r.i >= (uint32_t)n || (int)r.i < next)
			break;          /* not what it sends: believe no more of it */
		next = (int)r.i + 1;
		devs[r.i].has_cache_bytes = r.bytes != UINT64_MAX;
		devs[r.i].cache_bytes = r.bytes;
	}
	close(fds[0]);
	while (!all_said && next < n && !devs[next].cache[0])
		next++;
	if (!all_said && next < n)
		log_err("ublkb%u: its cache %s did not answer (stat) within %d s: its size is left "
			"out, and those of the devices after it; check the storage it is on",
			devs[next].id, devs[next].cache, POOL_CACHE_STAT_S);
}

int pool_remove_entry(const struct pool_dev *d)
{
	/* a server holds its entry locked from the moment it has a name, until
	 * it removes it: locked, it is no dead one's (a scan can be stale) */
	int lock = state_lock(d->id), ret;

	if (lock == -EBUSY || lock == -ENOENT)
		return lock;
	ret = state_remove_same(d->id, d->cookie);
	if (lock >= 0)
		close(lock);
	return ret;
}

/* An entry left by an earlier device of the id (ids are reused at once, and
 * a delete removes the entry after the device): it says nothing of the
 * kernel's device, which may be a starting one of ours or another
 * program's (cookie 0). */
static bool entry_is_earlier(const struct pool_dev *d)
{
	return d->in_kernel && d->has_state && d->cookie && d->cookie != d->kernel_cookie;
}

/* The process to judge d's server by: the kernel's where the entry is an
 * earlier device's. */
static pid_t server_pid(const struct pool_dev *d)
{
	return entry_is_earlier(d) ? d->kernel_pid : d->pid;
}

/* Whether d's pid is its server's, and not another process's that took
 * the pid after the server died: a server keeps its state entry open, and
 * the device's /dev/ublkcN. Where it cannot be told, the pid stands. */
static bool server_has_device(const struct pool_dev *d)
{
	if (d->has_state && !entry_is_earlier(d))
		return state_entry_held_by(d->id, d->pid) != 0;
	if (!d->in_kernel)
		return true;
	int fd = device_server_pidfd(d->id, server_pid(d));
	if (fd >= 0)
		close(fd);
	return fd != -ESRCH;
}

/* How long device id (listed in sysfs, its server or starter pid) has been
 * there: its /dev/ublkcN's age. The kernel lists a device a moment before
 * that node is made (device_add) and after it is gone (device_del): a node
 * missing is looked for again. One that stays missing (a slow udev, a /dev
 * of its own) takes the age of a process still running for the device, as
 * a starting server is; with none, it is as old as can be. */
static uint64_t device_age_s(uint32_t id, pid_t pid)
{
	char node[64], listed[64];
	struct stat st;

	dev_char_path(id, node, sizeof(node));
	snprintf(listed, sizeof(listed), "/sys/class/ublk-char/ublkc%u", id);
	for (int tries = 0; tries < 3; tries++) {
		if (!stat(node, &st))
			return time(NULL) > st.st_ctime ? (uint64_t)(time(NULL) - st.st_ctime) : 0;
		if (access(listed, F_OK))
			return 0;       /* being deleted: nothing to do about it */
		if (tries < 2)
			sleep_ms(100);
	}
	return pid_alive(pid) ? pid_age_s(pid) : UINT64_MAX;
}

static int cmp_id(const void *a, const void *b)
{
	const struct pool_dev *x = a, *y = b;
	return x->id < y->id ? -1 : x->id > y->id;
}

/* Why a scan failed, said once while it keeps failing the same way
 * (ublk-pool watch scans every interval). */
static char scan_failure[400];

static void scan_failed(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void scan_failed(const char *fmt, ...)
{
	char msg[sizeof(scan_failure)];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (strcmp(msg, scan_failure))
		log_err("%s", msg);
	memcpy(scan_failure, msg, sizeof(msg));
}

int pool_scan(struct pool_dev **out, uint64_t settle_ms)
{
	struct pool_dev *devs = NULL;
	int n = 0, cap = 0, ret = 0;
	uint32_t *ids = NULL;
	struct ublk_ctrl c;
	DIR *dir;
	struct dirent *e;

	/* Devices the kernel has but that cannot be read must not look like
	 * none: reclaim would take their entries for stale. */
	int k = ctrl_list_ids(&ids);
	if (k < 0) {
		scan_failed("listing the kernel's ublk devices (/sys/class/ublk-char): %s; nothing is "
			"listed or changed", strerror(-k));
		return -EIO;
	}
	if (k > 0 && (ret = ctrl_open(&c, 3000))) {
		free(ids);
		/* devices whose state nobody may see: an error, not an empty pool */
		if (ret == -EACCES || ret == -EPERM)
			return -EPERM;
		scan_failed("the kernel has %d ublk devices, but its control device %s cannot be "
			"opened: %s; nothing is listed or changed (is UBLK_CONTROL_PATH right? "
			"is /dev complete?)", k, ctrl_path(), strerror(-ret));
		return -EIO;
	}
	for (int i = 0; i < k && !ret; i++) {
		struct ublksrv_ctrl_dev_info info;
		ret = ctrl_get_info(&c, ids[i], &info);
		if (ret == -ENODEV) {   /* deleted since it was listed */
			ret = 0;
			continue;
		}
		if (ret == -EACCES || ret == -EPERM)
			break;   /* the caller says it: not ours to see */
		if (ret) {
			scan_failed("ublkb%u: reading its state from the kernel: %s; nothing is listed or "
				"changed", ids[i], strerror(-ret));
			break;
		}
		struct pool_dev *d = find_or_add(&devs, &n, &cap, ids[i]);
		if (!d) {
			ret = -ENOMEM;
			break;
		}
		d->in_kernel = true;
		d->kernel_state = info.state;
		/* before START_DEV the kernel knows no server: its cookie does */
		d->pid = info.ublksrv_pid > 0 ? info.ublksrv_pid : ctrl_cookie_pid(info.ublksrv_flags);
		d->kernel_pid = d->pid;
		d->node_age_s = device_age_s(ids[i], d->pid);
		d->kernel_cookie = info.ublksrv_flags;
		d->queues = info.nr_hw_queues;
		d->depth = info.queue_depth;
		d->recoverable = (info.flags & UBLK_F_USER_RECOVERY) && info.state != UBLK_S_DEV_DEAD;
	}
	if (k > 0)
		ctrl_close(&c);
	free(ids);
	if (ret) {
		free(devs);
		return ret == -ENOMEM ? ret : ret == -EACCES || ret == -EPERM ? -EPERM : -EIO;
	}
	scan_failure[0] = 0;
	/* checked once for the whole scan: a path check per file read would
	 * cost hundreds of syscalls a device */
	int root = state_dir_hold();
	root = root ? root : state_dir_open(false);
	/* missing: no entries; not ours to read, or refused (writable by
	 * others...): an error, said by state_dir_open */
	if (root < 0 && root != -ENOENT) {
		state_dir_release();
		free(devs);
		return root;
	}
	if (root >= 0 && !(dir = fdopendir(root)))
		close(root);
	else if (root >= 0) {
		while ((e = readdir(dir))) {
			uint32_t id;
			if (strncmp(e->d_name, "ublkb", 5) || parse_dev_id(e->d_name, &id))
				continue;
			struct pool_dev *d = find_or_add(&devs, &n, &cap, id);
			if (!d) {
				closedir(dir);
				goto oom;
			}
			load_entry(d);
		}
		closedir(dir);
	}
	uint64_t settle = deadline_ms(settle_ms);
	for (int i = 0; i < n; i++) {
		int alive = pid_alive_settled(server_pid(&devs[i]), ms_left(settle));
		if (alive == 1 && !server_has_device(&devs[i]))
			alive = 0;
		devs[i].alive = alive != 0;
		devs[i].exiting = alive == PID_EXITING;
		/* an earlier device's entry would restart that device's server;
		 * one never said live was never handed to anyone (its ublk-add
		 * and server were killed together): brought back, nobody would
		 * know of it */
		devs[i].can_recover = devs[i].recoverable && devs[i].restartable &&
				      !entry_is_earlier(&devs[i]) && strcmp(devs[i].state, "starting");
		devs[i].recoverable = devs[i].can_recover && !devs[i].alive;
	}
	state_dir_release();
	if (n)
		qsort(devs, (size_t)n, sizeof(*devs), cmp_id);
	*out = devs;
	return n;
oom:
	state_dir_release();
	free(devs);
	return -ENOMEM;
}

#define ORPHAN "not in the state directory"

bool pool_earlier_entry(const char *problem)
{
	return problem && !strcmp(problem, POOL_EARLIER_ENTRY);
}

bool pool_orphan(const struct pool_dev *d, uint64_t grace_s)
{
	const char *why = pool_problem(d, grace_s);
	return why && !strcmp(why, ORPHAN);
}

const char *pool_problem(const struct pool_dev *d, uint64_t grace_s)
{
	if (d->exiting)
		return "server is exiting";
	if (d->in_kernel && !d->has_state)
		return d->node_age_s >= grace_s && !d->alive && !d->unconfirmed ? ORPHAN : NULL;
	/* the kernel's device has no entry yet (it may be starting), or is
	 * another program's: one with no server is an orphan as above, one
	 * with a server has only the entry wrong */
	if (entry_is_earlier(d))
		return d->node_age_s < grace_s || d->unconfirmed ? NULL : d->alive ? POOL_EARLIER_ENTRY :
		       ORPHAN;
	if (d->in_kernel && !d->alive)
		return d->recoverable ? "server is dead; recoverable, IO waits" :
		       "server is dead";
	if (!d->in_kernel && d->has_state)
		return d->alive ? NULL : "stale state: the kernel has no such device";
	return NULL;
}

static int take_stat(const char *path, uint64_t v, void *arg)
{
	static const struct { const char *path; size_t off; } fields[] = {
#define F(path, field) { path, offsetof(struct pool_stats, field) }
		F("reads", reads), F("writes", writes), F("flushes", flushes), F("discards", discards),
		F("errors", errors), F("bytes_read", bytes_read), F("bytes_written", bytes_written),
		F("stalled_ms", stalled_ms), F("held_until_ms", held_until_ms),
		F("remote.chunks_fetched", chunks_fetched), F("remote.bytes_fetched", bytes_fetched),
		F("remote.fetch_errors", fetch_errors), F("remote.chunk_cache_hits", chunk_cache_hits),
		F("remote.prefetch_chunks_done", prefetch_done), F("remote.prefetch_chunks", prefetch_total),
		F("remote.trace_chunks_done", trace_done), F("remote.trace_chunks", trace_total),
		F("remote.trace_reads", trace_reads), F("remote.trace_hits", trace_hits),
#undef F
	};
	struct pool_stats *st = arg;

	if (!strncmp(path, "remote.", 7))
		st->remote = true;
	for (size_t i = 0; i < sizeof(fields) / sizeof(fields[0]); i++)
		if (!strcmp(path, fields[i].path))
			*(uint64_t *)((char *)st + fields[i].off) = v;
	return 0;
}

int pool_read_stats(const char *text, struct pool_stats *st)
{
	memset(st, 0, sizeof(*st));
	if (json_read_numbers(text, take_stat, st)) {
		memset(st, 0, sizeof(*st));
		return -EINVAL;
	}
	st->valid = true;
	return 0;
}

int pool_hung(const struct pool_dev *d, uint64_t hang_ms, char *why, size_t len)
{
	uint64_t stalled = d->stat.stalled_ms;

	/* only a server that made its device live and keeps serving it; an
	 * earlier device's entry says nothing of the kernel's device's */
	if (!hang_ms || !d->in_kernel || !d->alive || d->exiting || entry_is_earlier(d) ||
	    d->kernel_state != UBLK_S_DEV_LIVE || strcmp(d->state, "live") || !d->stat.valid)
		return 0;
	uint64_t now = wall_ms();
	if (d->stat.held_until_ms > now || now - d->stat.held_until_ms < hang_ms)
		return 0;
	/* a heartbeat a little late on a busy host is no hang: one is missed
	 * only after three periods, whatever a shorter hang_ms says */
	uint64_t beat_ms = hang_ms > 3 * STATE_STATS_PERIOD_MS ? hang_ms : 3 * STATE_STATS_PERIOD_MS;
	if (d->heartbeat_age_ms > beat_ms) {
		snprintf(why, len, "server hung: no heartbeat for %llu s (stopped, or its main "
			 "thread is stuck)", (unsigned long long)(d->heartbeat_age_ms / 1000));
		return POOL_HUNG_HEARTBEAT;
	}
	if (stalled > hang_ms) {
		snprintf(why, len, "server hung: IO pending and none completed for %llu s",
			 (unsigned long long)(stalled / 1000));
		return POOL_HUNG_STALLED;
	}
	return 0;
}

/* File name of the checked state directory (created when create), never
 * through a link and only a regular file. fd or -errno. */
int pool_file_open(const char *name, int flags, bool create)
{
	int root = state_dir_open(create), fd;

	if (root < 0)
		return root;
	fd = state_open_regular_at(root, name, flags);
	close(root);
	return fd;
}

static int lock_file(const char *name, bool exclusive, uint64_t timeout_ms)
{
	uint64_t deadline = now_ms() + timeout_ms;
	int fd = pool_file_open(name, O_RDWR | O_CREAT, true);

	if (fd < 0)
		return fd;
	while (flock(fd, (exclusive ? LOCK_EX : LOCK_SH) | LOCK_NB)) {
		if (errno != EWOULDBLOCK || !ms_left(deadline)) {
			int ret = errno == EWOULDBLOCK ? -ETIMEDOUT : -errno;
			close(fd);
			return ret;
		}
		sleep_ms(5);
	}
	return fd;
}

int pool_lock(bool exclusive, uint64_t timeout_ms)
{
	return lock_file(".pool.lock", exclusive, timeout_ms);
}

int pool_names_lock(uint64_t timeout_ms)
{
	return lock_file(".names.lock", true, timeout_ms);
}

/* .shutdown closes the pool while a shutdown holds a read lock on it.
 * The locks are open file description locks: each of several shutdowns
 * at once holds its own, and an add tests for them without taking one,
 * so a stream of adds never keeps a shutdown from its mark. A file nobody
 * holds (its shutdown was killed) closes nothing. */
static int shutdown_lock(int fd, short type)
{
	struct flock fl = { .l_type = type, .l_whence = SEEK_SET };

	return fcntl(fd, F_OFD_SETLK, &fl) ? -errno : 0;
}

int pool_closed(void)
{
	int fd = pool_file_open(".shutdown", O_RDONLY, false), ret;
	struct flock fl = { .l_type = F_WRLCK, .l_whence = SEEK_SET };

	if (fd < 0)
		return 0;
	ret = !fcntl(fd, F_OFD_GETLK, &fl) && fl.l_type != F_UNLCK;
	close(fd);
	return ret;
}

/* true if fd is still the file .shutdown names */
static bool shutdown_named(int fd)
{
	int root = state_dir_open(false);
	bool same = root >= 0 && fd_is_named(fd, root, ".shutdown", AT_SYMLINK_NOFOLLOW);

	if (root >= 0)
		close(root);
	return same;
}

int pool_close(void)
{
	uint64_t deadline = now_ms() + 1000;

	for (;;) {
		int fd = pool_file_open(".shutdown", O_RDWR | O_CREAT, true), ret;

		if (fd < 0)
			return fd;
		/* only a shutdown that is ending locks it for writing, to
		 * remove it: then the file is not ours to hold */
		while ((ret = shutdown_lock(fd, F_RDLCK)) == -EAGAIN && ms_left(deadline))
			sleep_ms(5);
		if (!ret && shutdown_named(fd))
			return fd;
		close(fd);
		if (ret)
			return ret == -EAGAIN ? -ETIMEDOUT : ret;
	}
}

void pool_reopen(int mark)
{
	int root;

	if (mark < 0)
		return;
	/* The last shutdown to end removes the mark: the write lock is only
	 * granted when no other holds it. Each lets go of its own lock first:
	 * two ending at once would otherwise each see the other's and both
	 * leave the mark; this way the later one to try finds none. unlinkat
	 * removes a planted link itself, never its target. */
	shutdown_lock(mark, F_UNLCK);
	if (!shutdown_lock(mark, F_WRLCK) && (root = state_dir_open(false)) >= 0) {
		if (fd_is_named(mark, root, ".shutdown", AT_SYMLINK_NOFOLLOW))
			unlinkat(root, ".shutdown", 0);
		close(root);
	}
	close(mark);
}

int pool_max_devices(uint64_t opt, uint64_t *max, char *why, size_t len)
{
	const char *env = getenv("UBLK_POOL_MAX");

	*max = opt;
	if (opt || !env || !*env)
		return 0;
	if (!parse_uint(env, 1, POOL_MAX_LIMIT, max))
		return 0;
	snprintf(why, len, "UBLK_POOL_MAX '%s': expected a number from 1 to %u (unset: no limit)",
		 cfgline_has_control(env, NULL) ? "(control characters)" : env, POOL_MAX_LIMIT);
	return -EINVAL;
}

void pool_record(const char *event, uint64_t ms)
{
	char line[64];
	int n, fd;

	fd = pool_file_open(".events", O_WRONLY | O_CREAT | O_APPEND, false);
	if (fd < 0)
		return;
	/* shared with other appenders, never while metrics folds the file;
	 * a fold that does not end in a moment costs the event, not the add
	 * or delete (or a recovering server's first heartbeat) waiting on it */
	for (int tries = 0; flock(fd, LOCK_SH | LOCK_NB); tries++) {
		if ((errno != EWOULDBLOCK && errno != EINTR) || tries == 100) {
			close(fd);
			return;
		}
		sleep_ms(10);
	}
	/* one write per line: concurrent tools never interleave */
	n = snprintf(line, sizeof(line), "%s %llu\n", event, (unsigned long long)ms);
	if (write(fd, line, (size_t)n) < 0) { /* metrics are best effort */ }
	close(fd);
}

int pool_admit(uint64_t max, uint64_t timeout_ms, struct pool_admission *a, char *why, size_t len)
{
	uint64_t deadline = now_ms() + timeout_ms;
	uint32_t *ids = NULL;
	int code = 0, n;

	/* Under a limit, adds count and add one at a time (.admit.lock) until
	 * the kernel has the device, so that the count stays true; each keeps
	 * the pool lock shared until its device is live, for a shutdown. The
	 * kernel's own limit (ublks_max) it enforces at ADD_DEV, where the
	 * server says "pool full"; since a 2025 change (6.15, and stable
	 * kernels that took it) it counts only unprivileged devices, so it is
	 * no limit of root's. */
	a->admit = -1;
	a->lock = -1;
	if (pool_max_devices(max, &max, why, len))
		return EXIT_USAGE;
	a->lock = pool_lock(false, timeout_ms);
	/* held exclusive: a shutdown waits for the adds before it, and says so */
	if (a->lock == -ETIMEDOUT && pool_closed()) {
		snprintf(why, len, "the pool is shutting down (ublk-pool shutdown): no new devices");
		return EXIT_BUSY;
	}
	if (a->lock < 0) {
		snprintf(why, len, "pool lock in %s: %s%s", state_dir(), strerror(-a->lock),
			 a->lock == -ETIMEDOUT ? " (a ublk-pool shutdown held it)" : "");
		return a->lock == -ETIMEDOUT ? EXIT_TIMEOUT : EXIT_FAIL;
	}
	if (max && (a->admit = lock_file(".admit.lock", true, ms_left(deadline))) < 0) {
		snprintf(why, len, "admission lock in %s: %s", state_dir(), strerror(-a->admit));
		code = a->admit == -ETIMEDOUT ? EXIT_TIMEOUT : EXIT_FAIL;
		goto out;
	}
	/* after any wait in line: a shutdown that began meanwhile waits for us */
	if (pool_closed()) {
		snprintf(why, len, "the pool is shutting down (ublk-pool shutdown): no new devices");
		code = EXIT_BUSY;
		goto out;
	}
	if (!max)
		return 0;
	n = ctrl_list_ids(&ids);
	free(ids);
	if (n < 0) {
		snprintf(why, len, "counting the devices for the limit of %llu (/sys/class/ublk-char): %s",
			 (unsigned long long)max, strerror(-n));
		code = EXIT_FAIL;
	} else if ((uint64_t)n >= max) {
		snprintf(why, len, "pool full: %d devices of at most %llu (--max-devices or "
			 "UBLK_POOL_MAX); delete some or raise the limit", n, (unsigned long long)max);
		code = EXIT_BUSY;
	}
out:
	if (code)
		pool_admit_end(a);
	return code;
}

void pool_admit_end(struct pool_admission *a)
{
	if (a->admit >= 0)
		close(a->admit);
	if (a->lock >= 0)
		close(a->lock);
	a->admit = a->lock = -1;
}
