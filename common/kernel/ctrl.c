/*
 * Control commands. Every command is one IORING_OP_URING_CMD on a ring
 * created with SQE128 (the 32-byte ublksrv_ctrl_cmd does not fit a normal
 * SQE). Kernels before 6.4 only know the legacy opcode numbers and kernels
 * built without CONFIG_BLKDEV_UBLK_LEGACY_OPCODES only know the
 * ioctl-encoded ones, so the first command tries the encoded form and falls
 * back; the answer is remembered for the life of the handle.
 *
 * A control command can block in the kernel (START_DEV waits for every tag
 * to be fetched, DEL_DEV for every reference to go), so each one waits at
 * most timeout_ms. A command that timed out keeps its user_data; its late
 * completion is recognised by sequence number and dropped. The kernel may
 * still read or write a late command's buffer (an io-wq worker runs it
 * when one is free), so a command's buffer is the handle's own, never the
 * caller's (stack) memory: copied back when the command completed in
 * time, and abandoned when it did not, freed once its completion is seen.
 */
#include "kernel/ctrl.h"
#include "util/parse.h"
#include "util/ublk_limits.h"
#include "util/timeutil.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/random.h>
#include <unistd.h>

#define ENOTSUPP_KERNEL 524  /* what old kernels answer to unknown commands */

/* The ioctl-encoded form of legacy command nr, as the uapi defines it:
 * the kernel dispatches on the number alone today, but the uapi's value
 * is the one a stricter kernel will compare against. */
static unsigned ctrl_encoded(unsigned nr)
{
	switch (nr) {
	case UBLK_CMD_GET_QUEUE_AFFINITY:
	case UBLK_CMD_GET_DEV_INFO:
	case UBLK_CMD_GET_PARAMS:
		return _IOR('u', nr, struct ublksrv_ctrl_cmd);
	default:
		return _IOWR('u', nr, struct ublksrv_ctrl_cmd);
	}
}

const char *ctrl_path(void)
{
	const char *p = getenv("UBLK_CONTROL_PATH");
	return p && *p ? p : "/dev/ublk-control";
}

int ctrl_open(struct ublk_ctrl *c, uint64_t timeout_ms)
{
	int ret;

	memset(c, 0, sizeof(*c));
	c->legacy = -1;
	c->del_async = -1;
	c->timeout_ms = timeout_ms ? timeout_ms : CTRL_DEFAULT_TIMEOUT_MS;
	c->fd = open(ctrl_path(), O_RDWR | O_CLOEXEC);
	if (c->fd < 0)
		return -errno;
	ret = io_uring_queue_init(4, &c->ring, IORING_SETUP_SQE128);
	if (ret) {
		close(c->fd);
		c->fd = -1;
		return ret;
	}
	return 0;
}

void ctrl_close(struct ublk_ctrl *c)
{
	if (c->fd < 0)
		return;
	/* abandoned buffers stay: the ring's end does not wait for a command
	 * an io-wq worker runs */
	io_uring_queue_exit(&c->ring);
	close(c->fd);
	c->fd = -1;
}

const char *ctrl_open_hint(int err)
{
	switch (-err) {
	case ENOENT:
		return "no ublk support in this kernel: load ublk_drv (modprobe ublk_drv) "
		       "or use a kernel with CONFIG_BLK_DEV_UBLK";
	case EACCES:
	case EPERM:
		return "permission denied: ublk devices need root (CAP_SYS_ADMIN)";
	case ENOSYS:
		return "io_uring is not available: the kernel needs CONFIG_IO_URING "
		       "and io_uring must not be disabled by sysctl";
	default:
		return NULL;
	}
}

/* A late completion of an abandoned buffer's command: it is free now. */
static void free_abandoned(struct ublk_ctrl *c, uint64_t ud)
{
	for (unsigned i = 0; i < CTRL_ABANDONED; i++)
		if (c->abandoned[i].buf && c->abandoned[i].seq == ud) {
			free(c->abandoned[i].buf);
			c->abandoned[i].buf = NULL;
		}
}

/* Command seq did not complete: the kernel may still use buf. Kept until
 * its completion is seen; past CTRL_ABANDONED of them, left for ever (a
 * few bytes each, after as many timeouts). */
static void abandon(struct ublk_ctrl *c, uint64_t seq, void *buf)
{
	for (unsigned i = 0; i < CTRL_ABANDONED; i++)
		if (!c->abandoned[i].buf) {
			c->abandoned[i].buf = buf;
			c->abandoned[i].seq = seq;
			return;
		}
}

/* The result of command me within timeout_ms (later CQEs of earlier
 * commands are dropped), with *seen; -ETIMEDOUT, remembered for
 * ctrl_wait_late, or the ring's error, with *seen false. */
static int wait_for(struct ublk_ctrl *c, uint64_t me, uint64_t timeout_ms, bool *seen)
{
	uint64_t deadline = deadline_ms(timeout_ms);
	int ret;

	c->late = 0;
	*seen = false;
	for (;;) {
		struct io_uring_cqe *cqe;
		uint64_t left = ms_left(deadline);
		struct __kernel_timespec ts = { .tv_sec = left / 1000, .tv_nsec = (left % 1000) * 1000000 };

		if (!left) {
			c->late = me;
			return -ETIMEDOUT;
		}
		ret = io_uring_wait_cqe_timeout(&c->ring, &cqe, &ts);
		if (ret == -ETIME || ret == -EINTR)
			continue;
		if (ret)
			return ret;
		uint64_t ud = cqe->user_data;
		int res = cqe->res;
		io_uring_cqe_seen(&c->ring, cqe);
		if (ud == me) {
			*seen = true;
			return res;
		}
		free_abandoned(c, ud);
	}
}

static int submit_wait(struct ublk_ctrl *c, unsigned op, const struct ublksrv_ctrl_cmd *cmd)
{
	struct ublksrv_ctrl_cmd sent = *cmd;
	struct io_uring_sqe *sqe;
	uint64_t me = ++c->seq;
	void *buf = NULL;
	bool seen = false;
	int ret;

	if (cmd->addr && cmd->len) {
		if (!(buf = malloc(cmd->len)))
			return -ENOMEM;
		memcpy(buf, (void *)(uintptr_t)cmd->addr, cmd->len);
		sent.addr = (uintptr_t)buf;
	}
	if (!(sqe = io_uring_get_sqe(&c->ring))) {
		free(buf);
		return -EBUSY;
	}
	memset(sqe, 0, 2 * sizeof(*sqe));
	sqe->opcode = IORING_OP_URING_CMD;
	sqe->fd = c->fd;
	sqe->cmd_op = op;
	sqe->user_data = me;
	memcpy(sqe->cmd, &sent, sizeof(sent));
	/* a submit that failed leaves the SQE in the ring, for the next */
	ret = io_uring_submit(&c->ring);
	if (ret >= 0)
		ret = wait_for(c, me, c->timeout_ms, &seen);
	if (buf && seen)
		memcpy((void *)(uintptr_t)cmd->addr, buf, cmd->len);
	if (buf && !seen)
		abandon(c, me, buf);
	else
		free(buf);
	return ret;
}

int ctrl_wait_late(struct ublk_ctrl *c, uint64_t timeout_ms)
{
	bool seen;

	return c->late ? wait_for(c, c->late, timeout_ms, &seen) : -ENOENT;
}

static bool not_understood(int ret)
{
	return ret == -EINVAL || ret == -EOPNOTSUPP || ret == -ENOTSUPP_KERNEL;
}

static int ctrl_cmd(struct ublk_ctrl *c, unsigned nr, struct ublksrv_ctrl_cmd *cmd)
{
	int ret, legacy_ret;

	if (c->legacy == 1)
		ret = submit_wait(c, nr, cmd);
	else
		ret = submit_wait(c, ctrl_encoded(nr), cmd);
	if (c->legacy == -1 && (not_understood(ret) || ret == -ENODEV)) {
		/* Kernels before 6.4 look the device up before checking the
		 * opcode, so an encoded command can fail with ENODEV there. */
		legacy_ret = submit_wait(c, nr, cmd);
		if (!not_understood(legacy_ret)) {
			c->legacy = 1;
			ret = legacy_ret;
		}
	} else if (c->legacy == -1 && ret != -ETIMEDOUT) {
		c->legacy = 0;
	}
	return ret == -ENOTSUPP_KERNEL ? -EOPNOTSUPP : ret;
}

int ctrl_add_dev(struct ublk_ctrl *c, struct ublksrv_ctrl_dev_info *info)
{
	struct ublksrv_ctrl_cmd cmd = {
		.dev_id = info->dev_id,
		.queue_id = (uint16_t)-1,
		.addr = (uintptr_t)info,
		.len = sizeof(*info),
	};
	return ctrl_cmd(c, UBLK_CMD_ADD_DEV, &cmd);
}

int ctrl_cookie_nonce(uint32_t *nonce)
{
	do {
		if (getrandom(nonce, sizeof(*nonce), 0) != sizeof(*nonce))
			return -errno;
	} while (!*nonce);
	return 0;
}

int ctrl_owner_cookie(pid_t pid, uint32_t nonce, uint64_t *cookie)
{
	int ret = nonce ? 0 : ctrl_cookie_nonce(&nonce);

	*cookie = (uint64_t)nonce << 32 | (uint32_t)pid;
	return ret;
}

int ctrl_device_is(struct ublk_ctrl *c, uint32_t id, uint64_t cookie)
{
	struct ublksrv_ctrl_dev_info now;
	int ret = ctrl_get_info(c, id, &now);

	if (ret == -ENODEV)
		return 0;
	return ret ? ret : now.ublksrv_flags == cookie;
}

pid_t ctrl_cookie_pid(uint64_t cookie)
{
	uint32_t pid = (uint32_t)cookie;

	return pid <= INT32_MAX ? (pid_t)pid : 0;
}

int ctrl_set_params(struct ublk_ctrl *c, uint32_t id, struct ublk_params *p)
{
	struct ublksrv_ctrl_cmd cmd = {
		.dev_id = id, .queue_id = (uint16_t)-1,
		.addr = (uintptr_t)p, .len = sizeof(*p),
	};
	p->len = sizeof(*p);
	return ctrl_cmd(c, UBLK_CMD_SET_PARAMS, &cmd);
}

int ctrl_start_dev(struct ublk_ctrl *c, uint32_t id, pid_t pid)
{
	struct ublksrv_ctrl_cmd cmd = { .dev_id = id, .queue_id = (uint16_t)-1 };
	cmd.data[0] = (uint64_t)pid;
	return ctrl_cmd(c, UBLK_CMD_START_DEV, &cmd);
}

int ctrl_stop_dev(struct ublk_ctrl *c, uint32_t id)
{
	struct ublksrv_ctrl_cmd cmd = { .dev_id = id, .queue_id = (uint16_t)-1 };
	return ctrl_cmd(c, UBLK_CMD_STOP_DEV, &cmd);
}

int ctrl_del_dev(struct ublk_ctrl *c, uint32_t id)
{
	struct ublksrv_ctrl_cmd cmd = { .dev_id = id, .queue_id = (uint16_t)-1 };
	int ret;

	/* DEL_DEV waits for every reference to the device (an fd of
	 * /dev/ublkcN someone leaked, a ring still being torn down): with no
	 * bound of its own. DEL_DEV_ASYNC exists only as an encoded command,
	 * so only a kernel that took one can have it. */
	if (c->legacy == 0 && c->del_async != 0) {
		ret = submit_wait(c, UBLK_U_CMD_DEL_DEV_ASYNC, &cmd);
		if (!not_understood(ret)) {
			if (!ret)
				c->del_async = 1;
			return ret;
		}
		c->del_async = 0;
	}
	return ctrl_cmd(c, UBLK_CMD_DEL_DEV, &cmd);
}

int ctrl_get_features(struct ublk_ctrl *c, uint64_t *features)
{
	/* No device: 6.1 looks one up for any command but ADD_DEV and
	 * answers -ENODEV, which is as good a "no" as -EOPNOTSUPP. */
	struct ublksrv_ctrl_cmd cmd = {
		.dev_id = (uint32_t)-1, .queue_id = (uint16_t)-1,
		.addr = (uintptr_t)features, .len = UBLK_FEATURES_LEN,
	};
	int ret;

	*features = 0;
	ret = submit_wait(c, UBLK_U_CMD_GET_FEATURES, &cmd);
	if (!ret && c->legacy == -1)
		c->legacy = 0;   /* it answered an encoded command */
	return ret == -ENOTSUPP_KERNEL ? -EOPNOTSUPP : ret;
}

void ctrl_flag_names(uint64_t flags, char *buf, size_t len)
{
	/* bit i of UBLK_F_* (6.12's uapi) */
	static const char *const names[] = {
		"SUPPORT_ZERO_COPY", "URING_CMD_COMP_IN_TASK", "NEED_GET_DATA", "USER_RECOVERY",
		"USER_RECOVERY_REISSUE", "UNPRIVILEGED_DEV", "CMD_IOCTL_ENCODE", "USER_COPY", "ZONED",
	};
	size_t used = 0;

	if (len)
		buf[0] = 0;
	for (unsigned bit = 0; bit < 64 && used < len; bit++) {
		if (!(flags & (1ULL << bit)))
			continue;
		int n = bit < sizeof(names) / sizeof(names[0]) ?
			snprintf(buf + used, len - used, "%s%s", used ? "," : "", names[bit]) :
			snprintf(buf + used, len - used, "%sbit%u", used ? "," : "", bit);
		if (n < 0)
			break;
		used += (size_t)n;
	}
}

int ctrl_start_recovery(struct ublk_ctrl *c, uint32_t id)
{
	struct ublksrv_ctrl_cmd cmd = { .dev_id = id, .queue_id = (uint16_t)-1 };
	return ctrl_cmd(c, UBLK_CMD_START_USER_RECOVERY, &cmd);
}

int ctrl_end_recovery(struct ublk_ctrl *c, uint32_t id, pid_t pid)
{
	struct ublksrv_ctrl_cmd cmd = { .dev_id = id, .queue_id = (uint16_t)-1 };
	cmd.data[0] = (uint64_t)pid;
	return ctrl_cmd(c, UBLK_CMD_END_USER_RECOVERY, &cmd);
}

int ctrl_get_info(struct ublk_ctrl *c, uint32_t id, struct ublksrv_ctrl_dev_info *info)
{
	struct ublksrv_ctrl_cmd cmd = {
		.dev_id = id, .queue_id = (uint16_t)-1,
		.addr = (uintptr_t)info, .len = sizeof(*info),
	};
	memset(info, 0, sizeof(*info));
	return ctrl_cmd(c, UBLK_CMD_GET_DEV_INFO, &cmd);
}

void dev_block_path(uint32_t id, char *buf, size_t len)
{
	snprintf(buf, len, "/dev/ublkb%u", id);
}

void dev_char_path(uint32_t id, char *buf, size_t len)
{
	snprintf(buf, len, "/dev/ublkc%u", id);
}

static int cmp_u32(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
	return x < y ? -1 : x > y;
}

int ctrl_list_ids(uint32_t **out)
{
	DIR *d = opendir("/sys/class/ublk-char");
	uint32_t *ids = NULL;
	size_t n = 0, cap = 0;
	struct dirent *e;
	int ret = 0;

	*out = NULL;
	if (!d)
		return errno == ENOENT ? 0 : -errno;
	while ((e = readdir(d))) {
		uint32_t id;
		if (strncmp(e->d_name, "ublkc", 5) || parse_dev_id(e->d_name, &id))
			continue;
		/* ids are unique and at most UBLK_MAX_DEV_ID + 1 of them */
		if (n == cap) {
			size_t more = cap ? cap * 2 : 64;
			uint32_t *grown = n <= UBLK_MAX_DEV_ID ? reallocarray(ids, more, sizeof(*ids)) : NULL;
			if (!grown) {
				ret = -ENOMEM;
				break;
			}
			ids = grown;
			cap = more;
		}
		ids[n++] = id;
	}
	closedir(d);
	if (ret) {
		free(ids);
		return ret;
	}
	if (n)
		qsort(ids, n, sizeof(*ids), cmp_u32);
	*out = ids;
	return (int)n;
}

bool ctrl_has_device(uint32_t id)
{
	char node[64];

	snprintf(node, sizeof(node), "/sys/class/ublk-char/ublkc%u", id);
	return !access(node, F_OK);
}

const char *ctrl_state_name(int s)
{
	switch (s) {
	case UBLK_S_DEV_DEAD: return "dead";
	case UBLK_S_DEV_LIVE: return "live";
	case UBLK_S_DEV_QUIESCED: return "quiesced";
	default: return "-";
	}
}
