#include "host/device.h"
#include "host/ctlsock.h"
#include "host/holders.h"
#include "util/cfgline.h"
#include "util/exitcodes.h"
#include "util/log.h"
#include "kernel/ctrl.h"
#include "util/parse.h"
#include "host/pool.h"
#include "host/state.h"
#include "util/timeutil.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

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

/* A pidfd of the server of the device (device_server_pidfd): the kernel
 * knows it once the device started, the state entry once the server made
 * it, and the device's cookie from ADD_DEV on. */
static int find_server(uint32_t id, const struct ublksrv_ctrl_dev_info *info)
{
	pid_t pids[] = { info->ublksrv_pid, state_server_pid(id), ctrl_cookie_pid(info->ublksrv_flags) };
	int fd = -ESRCH;

	for (size_t i = 0; i < sizeof(pids) / sizeof(pids[0]) && fd == -ESRCH; i++)
		if (pids[i] > 0)
			fd = device_server_pidfd(id, pids[i]);
	return fd;
}

int device_find_own(uint64_t cookie, uint32_t *id)
{
	struct ublksrv_ctrl_dev_info info;
	struct ublk_ctrl c;
	uint32_t *ids;
	int n, ret = ctrl_open(&c, 3000);

	if (ret)
		return ret;
	n = ctrl_list_ids(&ids);
	ret = n < 0 ? n : -ENODEV;
	for (int i = 0; i < n && ret == -ENODEV; i++)
		if (!ctrl_get_info(&c, ids[i], &info) && info.ublksrv_flags == cookie) {
			*id = ids[i];
			ret = 0;
		}
	free(ids);
	ctrl_close(&c);
	return ret;
}

#define SET_WHY(...) do { if (why) snprintf(why, len, __VA_ARGS__); } while (0)

/* Whether device id's server holds its writes for a live export now (its
 * statistics, written at once when a hold starts, say until when). */
static bool holds_writes(uint32_t id)
{
	char text[4096];        /* a stats file is under 2 KiB (pool.h) */
	struct pool_stats st;

	return state_read(id, "stats", text, sizeof(text)) > 0 && !pool_read_stats(text, &st) &&
	       st.held_until_ms > wall_ms();
}

/* Ask device id's server to fail the reads its image's backend holds (a
 * stalled remote image, however long its deadlines): the stop waits for
 * them. Best effort, in moments; an older server refuses the request. */
static void cancel_backend(uint32_t id)
{
	char line[128];
	int fd = ctlsock_connect(id, 2000);

	if (fd < 0)
		return;
	if (ctlsock_ask(fd, "cancel\n", line, sizeof(line), 2000) > 0)
		log_dbg("ublkb%u: its server, told to give up on its backend: %s", id, line);
	close(fd);
}

/* How long a stop may wait for the requests in flight before the server
 * is told to give up on those its backend holds (at most half the
 * delete's time). */
#define STOP_PATIENCE_MS 2000

int device_delete(uint32_t id, uint64_t timeout_ms, bool force, char *why, size_t len)
{
	return device_delete_own(id, 0, timeout_ms, force, why, len);
}

int device_delete_of_entry(uint32_t id, uint64_t cookie, uint64_t timeout_ms, bool force,
			   char *why, size_t len)
{
	int ret;

	if (!cookie)
		return device_delete(id, timeout_ms, force, why, len);
	/* deleted by another tool, and its id maybe taken by a new device */
	uint64_t now = state_entry_cookie(id);
	if (now != cookie)
		return snprintf(why, len, "ublkb%u: the device of that name is gone (deleted by "
				"another tool meanwhile)%s", id, now ? "; the id is another device's "
				"now" : ""), -ENODEV;
	ret = device_delete_own(id, cookie, timeout_ms, force, why, len);
	/* its device is gone (its id maybe another's): only the entry is left */
	if (ret == -ENODEV) {
		state_remove_same(id, cookie);
		ret = 0;
	}
	return ret;
}

int device_is_served(uint32_t id)
{
	struct ublksrv_ctrl_dev_info info;
	struct ublk_ctrl c;
	int ret = ctrl_open(&c, 5000), fd;

	if (ret)
		return ret;
	ret = ctrl_get_info(&c, id, &info);
	ctrl_close(&c);
	if (ret)
		return ret == -ENODEV ? 0 : ret;
	if ((fd = find_server(id, &info)) < 0)
		return fd == -ESRCH ? 0 : fd;
	close(fd);
	return 1;
}

int device_delete_own(uint32_t id, uint64_t cookie, uint64_t timeout_ms, bool force, char *why,
		      size_t len)
{
	uint64_t deadline = deadline_ms(timeout_ms);
	struct ublksrv_ctrl_dev_info info;
	struct ublk_ctrl c;
	char holders[512];
	int ret, server = -1, n_numbers = 0;
	dev_t *numbers = NULL;

	ret = ctrl_open(&c, timeout_ms);
	if (ret) {
		const char *hint = ctrl_open_hint(ret);
		SET_WHY("%s", hint ? hint : strerror(-ret));
		return ret;
	}
	uint64_t entry = state_entry_cookie(id);
	ret = ctrl_get_info(&c, id, &info);
	if (!ret && cookie && info.ublksrv_flags != cookie)
		ret = -ENODEV;   /* ours is gone: the id is another device's */
	if (ret == -ENODEV) {
		if (!cookie && state_exists(id)) {
			state_remove_same(id, entry);
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
	/* a scan reads every process's fds and mount tables: on a host of
	 * thousands of processes, looked at less often the longer it waits */
	for (uint64_t pause = 50; !force && device_holders(id, holders, sizeof(holders));
	     pause = pause < 800 ? pause * 2 : 1000) {
		if (!ms_left(deadline)) {
			SET_WHY("ublkb%u: still in use after %llu ms: %s; close it or unmount, "
				"or use a longer --timeout", id, (unsigned long long)timeout_ms, holders);
			ret = -EBUSY;
			goto out;
		}
		sleep_ms(pause < ms_left(deadline) ? pause : ms_left(deadline));
	}
	/* who to wait for, and kill at the deadline: only the process that
	 * serves the device, known before the stop lets it close the device */
	server = find_server(id, &info);
	/* to say who keeps a forced stop from ending: sysfs forgets them */
	n_numbers = force ? device_numbers_of(id, &numbers) : 0;
	c.timeout_ms = ms_left(deadline) + 1000;
	/* each step acts by id: on the device this began with, or on none */
	if ((ret = ctrl_device_is(&c, id, info.ublksrv_flags)) < 0) {
		SET_WHY("ublkb%u: GET_DEV_INFO: %s", id, strerror(-ret));
		goto out;
	}
	if (!ret)
		goto gone;
	/* A server holding writes for a live export lets them go only when
	 * told to stop, and the stop would wait for them: it is told, and
	 * left to delete the device itself. Nothing here acts on the id
	 * until it has gone: it frees the id, which may be another device's
	 * a moment later. */
	if (server >= 0 && info.ublksrv_pid > 0 && holds_writes(id)) {
		pidfd_signal(server, SIGTERM);
		wait_pidfd(server, ms_left(deadline));
		if ((ret = ctrl_device_is(&c, id, info.ublksrv_flags)) < 0) {
			SET_WHY("ublkb%u: GET_DEV_INFO: %s", id, strerror(-ret));
			goto out;
		}
		if (!ret)
			goto gone;
	}
	/* the stop waits for the requests in flight: some the image's
	 * backend may hold for long (a stalled remote server) */
	c.timeout_ms = ms_left(deadline) / 2 < STOP_PATIENCE_MS ? ms_left(deadline) / 2 + 1 :
								 STOP_PATIENCE_MS;
	ret = ctrl_stop_dev(&c, id);
	if (ret == -ETIMEDOUT) {
		if (server >= 0)
			cancel_backend(id);
		ret = ctrl_wait_late(&c, ms_left(deadline) + 1000);
	}
	c.timeout_ms = ms_left(deadline) + 1000;
	if (ret == -ETIMEDOUT) {
		SET_WHY("ublkb%u: its stop did not end within %llu ms: the kernel waits for the "
			"requests in flight, which its server's backend holds (a slow remote image?); "
			"retry with a longer --timeout", id, (unsigned long long)timeout_ms);
		goto out;
	}
	if (ret && ret != -ENODEV) {
		SET_WHY("ublkb%u: STOP_DEV: %s", id, strerror(-ret));
		goto out;
	}
	/* a server still starting the device does not see the stop: it ends
	 * once it is up */
	if (server >= 0 && info.ublksrv_pid <= 0)
		pidfd_signal(server, SIGTERM);
	/* The server sees its queues aborted, deletes the device and exits. */
	if (server >= 0 && wait_pidfd(server, ms_left(deadline)) == -ETIMEDOUT) {
		log_err("ublkb%u: its server did not end by the deadline (%llu ms from the start of "
			"the delete): killed it", id, (unsigned long long)timeout_ms);
		pidfd_signal(server, SIGKILL);
		wait_pidfd(server, 2000);
	}
	c.timeout_ms = ms_left(deadline) + 2000;
	/* its server deletes it too, and the id may be a new device's since */
	ret = ctrl_device_is(&c, id, info.ublksrv_flags);
	if (ret > 0)
		ret = ctrl_del_dev(&c, id);
gone:
	if (ret == -ENODEV)
		ret = 0;
	if (ret && n_numbers > 0 && device_holders_of(id, numbers, (size_t)n_numbers, holders,
						      sizeof(holders))) {
		/* stopped under --force: the kernel frees the device with its
		 * last holder, and not before (a mount does not let go) */
		SET_WHY("ublkb%u: stopped, but the kernel deletes it only once its last holder lets "
			"go: %s; unmount or close it: the kernel then deletes it, and ublk-pool reclaim "
			"its state entry", id, holders);
		ret = -EBUSY;
	} else if (ret) {
		SET_WHY("ublkb%u: DEL_DEV: %s", id, strerror(-ret));
	} else {
		/* this device's entry, not one of a device that took the id since */
		state_remove_same(id, info.ublksrv_flags);
		pool_record("del", now_ms() - (deadline - timeout_ms));
	}
out:
	free(numbers);
	if (server >= 0)
		close(server);
	ctrl_close(&c);
	return ret;
}

void device_nudge(uint32_t id)
{
	char path[64];

	/* the reader must hold nothing of ours (locks, the control device) */
	if (fork_orphan(-1) != 0)
		return;
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
