/* The ublk uapi as the newest kernel we serve speaks it. The build host's
 * <linux/ublk_cmd.h> may be older (Debian 12's is 6.1's): what it lacks is
 * defined here with the kernel's own values, so one binary speaks to 6.1
 * and to newer kernels alike and picks at run time (docs/kernels.md). */
#ifndef UBLK_UAPI_H
#define UBLK_UAPI_H

#include <linux/ublk_cmd.h>
#include <sys/ioctl.h>

/* 6.4: ioctl-encoded command numbers; ADD_DEV echoes this flag when the
 * kernel takes them. */
#ifndef UBLK_F_CMD_IOCTL_ENCODE
#define UBLK_F_CMD_IOCTL_ENCODE (1UL << 6)
#endif
#ifndef UBLK_U_IO_FETCH_REQ
#define UBLK_U_IO_FETCH_REQ _IOWR('u', UBLK_IO_FETCH_REQ, struct ublksrv_io_cmd)
#endif
#ifndef UBLK_U_IO_COMMIT_AND_FETCH_REQ
#define UBLK_U_IO_COMMIT_AND_FETCH_REQ _IOWR('u', UBLK_IO_COMMIT_AND_FETCH_REQ, struct ublksrv_io_cmd)
#endif
#ifndef UBLK_U_IO_NEED_GET_DATA
#define UBLK_U_IO_NEED_GET_DATA _IOWR('u', UBLK_IO_NEED_GET_DATA, struct ublksrv_io_cmd)
#endif
/* 6.5: GET_FEATURES (encoded only, needs no device) and USER_COPY. */
#ifndef UBLK_U_CMD_GET_FEATURES
#define UBLK_U_CMD_GET_FEATURES _IOR('u', 0x13, struct ublksrv_ctrl_cmd)
#endif
#ifndef UBLK_FEATURES_LEN
#define UBLK_FEATURES_LEN 8
#endif
#ifndef UBLK_F_USER_COPY
#define UBLK_F_USER_COPY (1UL << 7)
#endif
/* With USER_COPY, tag t of queue q is at this offset of /dev/ublkcN. */
#ifndef UBLK_TAG_OFF
#define UBLK_TAG_OFF 25
#define UBLK_QID_OFF (UBLK_TAG_OFF + 16)
#endif
/* 6.6 */
#ifndef UBLK_F_UNPRIVILEGED_DEV
#define UBLK_F_UNPRIVILEGED_DEV (1UL << 5)
#endif
#ifndef UBLK_F_ZONED
#define UBLK_F_ZONED (1ULL << 8)
#endif
/* 6.9: delete without waiting for the last reference to the device. */
#ifndef UBLK_U_CMD_DEL_DEV_ASYNC
#define UBLK_U_CMD_DEL_DEV_ASYNC _IOR('u', 0x14, struct ublksrv_ctrl_cmd)
#endif

#endif
