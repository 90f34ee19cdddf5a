/* The ublk control device (/dev/ublk-control): one io_uring command per
 * control operation, each bounded by a deadline. */
#ifndef UBLK_CTRL_H
#define UBLK_CTRL_H

#include "kernel/ublk_uapi.h"

#include <liburing.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#define CTRL_DEFAULT_TIMEOUT_MS 10000

struct ublk_ctrl {
	int fd;
	struct io_uring ring;
	uint64_t seq;       /* user_data of the next command, to skip stale CQEs */
	uint64_t late;      /* the last command that timed out (ctrl_wait_late), or 0 */
	int legacy;         /* -1 unknown, 0 ioctl-encoded opcodes, 1 legacy numbers */
	int del_async;      /* DEL_DEV_ASYNC: -1 untried, 0 refused, 1 taken */
	uint64_t timeout_ms;
	/* buffers of commands that timed out, which the kernel may still use */
#define CTRL_ABANDONED 8
	struct { uint64_t seq; void *buf; } abandoned[CTRL_ABANDONED];
};

/* Path of the control device: $UBLK_CONTROL_PATH or /dev/ublk-control. */
const char *ctrl_path(void);

/* 0, or -ENOENT (no ublk in kernel), -EACCES/-EPERM, other -errno. */
int ctrl_open(struct ublk_ctrl *c, uint64_t timeout_ms);
void ctrl_close(struct ublk_ctrl *c);

/* Wait up to timeout_ms more for the command that last timed out, which
 * the kernel may still be running: its result, -ETIMEDOUT again, or
 * -ENOENT when the last command did not time out. */
int ctrl_wait_late(struct ublk_ctrl *c, uint64_t timeout_ms);

int ctrl_add_dev(struct ublk_ctrl *c, struct ublksrv_ctrl_dev_info *info);
/* The identity a server gives its device at ADD_DEV, in ublksrv_flags
 * (which the kernel keeps and reports, never uses; docs/kernels.md): its
 * pid, to be found before START_DEV tells the kernel, and 32 random bits,
 * so that a new device that took a deleted one's id is not taken for it.
 * nonce: those bits, chosen by whoever started the server (ctrl_cookie_nonce)
 * so it can find the device of a server it killed before it told the id;
 * 0: drawn here. 0, or -errno from getrandom. */
int ctrl_owner_cookie(pid_t pid, uint32_t nonce, uint64_t *cookie);
/* Random bits for ctrl_owner_cookie, never 0. 0, or -errno. */
int ctrl_cookie_nonce(uint32_t *nonce);
/* Whether device id is still the one with this cookie: 1, 0 (no such
 * device, or another that took the id), or -errno. */
int ctrl_device_is(struct ublk_ctrl *c, uint32_t id, uint64_t cookie);
/* The pid in a cookie; 0 if none (another program's device). */
pid_t ctrl_cookie_pid(uint64_t cookie);
int ctrl_set_params(struct ublk_ctrl *c, uint32_t id, struct ublk_params *p);
int ctrl_start_dev(struct ublk_ctrl *c, uint32_t id, pid_t pid);
int ctrl_stop_dev(struct ublk_ctrl *c, uint32_t id);
/* DEL_DEV_ASYNC where the kernel has it (6.9): the device goes at once
 * and its id is freed when the last reference to it goes, instead of
 * DEL_DEV waiting for that. */
int ctrl_del_dev(struct ublk_ctrl *c, uint32_t id);
/* Recovery of a device whose server died (created with UBLK_F_USER_RECOVERY):
 * START fails with -EBUSY until the kernel saw the death and released the
 * old server's /dev/ublkcN; END (after every tag was fetched again) makes
 * the device live with the new server pid. */
int ctrl_start_recovery(struct ublk_ctrl *c, uint32_t id);
int ctrl_end_recovery(struct ublk_ctrl *c, uint32_t id, pid_t pid);
int ctrl_get_info(struct ublk_ctrl *c, uint32_t id, struct ublksrv_ctrl_dev_info *info);

/* What the kernel's ublk supports (GET_FEATURES, 6.5+) into *features.
 * 0, or -errno on kernels without it (6.1: -ENODEV or -EOPNOTSUPP): then
 * the flags ADD_DEV echoes are all there is to know. */
int ctrl_get_features(struct ublk_ctrl *c, uint64_t *features);
/* Names of UBLK_F_* flags, comma-separated ("CMD_IOCTL_ENCODE,..."; an
 * unknown bit as "bitN"); "" for none. */
void ctrl_flag_names(uint64_t flags, char *buf, size_t len);

/* One-line explanation of a ctrl_open() failure, with what to do. */
const char *ctrl_open_hint(int err);

/* Paths of a device's nodes. */
void dev_block_path(uint32_t id, char *buf, size_t len);
void dev_char_path(uint32_t id, char *buf, size_t len);

/* Ids of every ublk device the kernel has (from /sys/class/ublk-char),
 * ascending, into *ids (malloc'd; NULL when there are none). Returns the
 * count, 0 without ublk, or -errno. */
int ctrl_list_ids(uint32_t **ids);

/* Whether the kernel has device id (its /sys/class/ublk-char entry). */
bool ctrl_has_device(uint32_t id);

/* The name of a device state GET_DEV_INFO gives: live, quiesced, dead, or "-". */
const char *ctrl_state_name(int s);

#endif
