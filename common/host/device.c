#include "host/device.h"
#include "util/cfgline.h"
#include "util/exitcodes.h"
#include "kernel/ctrl.h"
#include "util/parse.h"
#include "host/pool.h"
#include "host/state.h"
#include "util/timeutil.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <unistd.h>

static void append(char *desc, size_t len, const char *piece)
{
	size_t used = strlen(desc);
	snprintf(desc + used, len - used, "%s%s", used ? ", " : "", piece);
}

/* Does link target name the device or one of its partitions? */
static bool names_device(const char *target, const char *node)
{
	size_t n = strlen(node);
	if (strncmp(target, node, n))
		return false;
	return target[n] == 0 || target[n] == 'p';
}

static int fd_holders(const char *node, char *desc, size_t len)
{
	DIR *proc = opendir("/proc");
	struct dirent *p;
	pid_t self = getpid();
	int found = 0;

	if (!proc)
		return 0;
	while ((p = readdir(proc))) {
		char path[300], target[300], comm[64] = "?";
		char *end;
		long pid = strtol(p->d_name, &end, 10);
		if (*end || pid <= 0 || pid == self)
			continue;
		snprintf(path, sizeof(path), "/proc/%ld/fd", pid);
		DIR *fds = opendir(path);
		if (!fds)
			continue;
		struct dirent *f;
		while ((f = readdir(fds))) {
			char link[600];
			snprintf(link, sizeof(link), "%s/%s", path, f->d_name);
			ssize_t n = readlink(link, target, sizeof(target) - 1);
			if (n <= 0)
				continue;
			target[n] = 0;
			if (!names_device(target, node))
				continue;
			snprintf(path, sizeof(path), "/proc/%ld/comm", pid);
			FILE *c = fopen(path, "r");
			if (c) {
				if (fgets(comm, sizeof(comm), c))
					comm[strcspn(comm, "\n")] = 0;
				fclose(c);
			}
			char piece[128];
			snprintf(piece, sizeof(piece), "pid %ld (%s)", pid, comm);
			append(desc, len, piece);
			found++;
			break;
		}
		closedir(fds);
	}
	closedir(proc);
	return found;
}

static int mount_holders(const char *node, char *desc, size_t len)
{
	struct stat st;
	FILE *f;
	char line[4096];
	int found = 0;

	if (stat(node, &st) || !S_ISBLK(st.st_mode))
		return 0;
	f = fopen("/proc/self/mountinfo", "r");
	if (!f)
		return 0;
	while (fgets(line, sizeof(line), f)) {
		unsigned maj, min;
		char mnt[2048];
		/* id parent maj:min root mountpoint ... */
		if (sscanf(line, "%*d %*d %u:%u %*s %2047s", &maj, &min, mnt) != 3)
			continue;
		if (maj != major(st.st_rdev))
			continue;
		/* partitions share the major and follow the disk's minor */
		if (min < minor(st.st_rdev) || min > minor(st.st_rdev) + 255)
			continue;
		char piece[2100];
		snprintf(piece, sizeof(piece), "mounted on %s", mnt);
		append(desc, len, piece);
		found++;
	}
	fclose(f);
	return found;
}

static int stacked_holders(uint32_t id, char *desc, size_t len)
{
	char path[128];
	DIR *d;
	struct dirent *e;
	int found = 0;

	snprintf(path, sizeof(path), "/sys/block/ublkb%u/holders", id);
	d = opendir(path);
	if (!d)
		return 0;
	while ((e = readdir(d))) {
		if (e->d_name[0] == '.')
			continue;
		char piece[300];
		snprintf(piece, sizeof(piece), "used by %s", e->d_name);
		append(desc, len, piece);
		found++;
	}
	closedir(d);
	return found;
}

int device_holders(uint32_t id, char *desc, size_t len)
{
	char node[64];

	dev_block_path(id, node, sizeof(node));
	desc[0] = 0;
	return fd_holders(node, desc, len) + mount_holders(node, desc, len) +
	       stacked_holders(id, desc, len);
}

int device_resolve(const char *arg, uint32_t *id, char *why, size_t len)
{
	if (access(ctrl_path(), F_OK))
		return snprintf(why, len, "%s", ctrl_open_hint(-ENOENT)), EXIT_NO_UBLK;
	if (!parse_dev_id(arg, id))
		return 0;
	/* an unnamed device's config has "name=": "" must not find it; a
	 * control character would break the message into forged lines. Names
	 * older versions allowed (say "_x") are still looked up. */
	if (*arg && !cfgline_has_control(arg, NULL) && !state_find("name", arg, id))
		return 0;
	snprintf(why, len, "'%s' is neither a ublk device (/dev/ublkbN or N) nor the name of one",
		 cfgline_has_control(arg, NULL) ? "(control characters)" : arg);
	return EXIT_NO_DEVICE;
}

#define SET_WHY(...) do { if (why) snprintf(why, len, __VA_ARGS__); } while (0)

int device_delete(uint32_t id, uint64_t timeout_ms, bool force, char *why, size_t len)
{
	uint64_t deadline = deadline_ms(timeout_ms);
	struct ublksrv_ctrl_dev_info info;
	struct ublk_ctrl c;
	char holders[512];
	int ret;

	ret = ctrl_open(&c, timeout_ms);
	if (ret) {
		const char *hint = ctrl_open_hint(ret);
		SET_WHY("%s", hint ? hint : strerror(-ret));
		return ret;
	}
	ret = ctrl_get_info(&c, id, &info);
	if (ret == -ENODEV) {
		if (state_exists(id)) {
			state_remove(id);
			ret = 0;
		} else {
			SET_WHY("ublkb%u: no such device", id);
		}
		goto out;
	}
	if (ret) {
		SET_WHY("ublkb%u: GET_DEV_INFO: %s", id, strerror(-ret));
		goto out;
	}
	while (!force && device_holders(id, holders, sizeof(holders))) {
		if (!ms_left(deadline)) {
			SET_WHY("ublkb%u: still in use after %llu ms: %s; close it or unmount, "
				"or use a longer --timeout", id, (unsigned long long)timeout_ms, holders);
			ret = -EBUSY;
			goto out;
		}
		sleep_ms(50);
	}
	c.timeout_ms = ms_left(deadline) + 1000;
	ret = ctrl_stop_dev(&c, id);
	if (ret && ret != -ENODEV) {
		SET_WHY("ublkb%u: STOP_DEV: %s", id, strerror(-ret));
		goto out;
	}
	/* The server sees its queues aborted, deletes the device and exits. */
	if (info.ublksrv_pid > 0 && pid_alive(info.ublksrv_pid) &&
	    wait_pid_gone(info.ublksrv_pid, ms_left(deadline)) == -ETIMEDOUT) {
		kill(info.ublksrv_pid, SIGKILL);
		wait_pid_gone(info.ublksrv_pid, 2000);
	}
	c.timeout_ms = ms_left(deadline) + 2000;
	ret = ctrl_del_dev(&c, id);
	if (ret == -ENODEV)
		ret = 0;
	if (ret) {
		SET_WHY("ublkb%u: DEL_DEV: %s", id, strerror(-ret));
	} else {
		state_remove(id);
		pool_record("del", now_ms() - (deadline - timeout_ms));
	}
out:
	ctrl_close(&c);
	return ret;
}

void device_nudge(uint32_t id)
{
	char path[64];
	pid_t pid = fork();

	if (pid < 0)
		return;
	if (pid > 0) {   /* the child only forks the reader: reap it at once */
		waitpid(pid, NULL, 0);
		return;
	}
	if (fork() != 0)
		_exit(0);
	/* the reader must hold nothing of ours (locks, the control device) */
	for (int fd = 0; fd < 1024; fd++)
		close(fd);
	setsid();
	dev_block_path(id, path, sizeof(path));
	/* no malloc: the caller may have threads */
	static char buf[4096] __attribute__((aligned(4096)));
	int fd = open(path, O_RDONLY | O_DIRECT | O_CLOEXEC);
	if (fd >= 0)
		(void)!pread(fd, buf, sizeof(buf), 0);
	_exit(0);
}

int device_set_scheduler(uint32_t id, const char *name)
{
	char path[96];
	int ret = 0;

	snprintf(path, sizeof(path), "/sys/block/ublkb%u/queue/scheduler", id);
	int fd = open(path, O_WRONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0)
		return -errno;
	if (write(fd, name, strlen(name)) < 0)
		ret = -errno;
	close(fd);
	return ret;
}
