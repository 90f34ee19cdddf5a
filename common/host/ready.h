/* Readiness handshake between ublk-add and the ublk-serve it starts: the
 * server writes lines on an inherited pipe,
 *   "id N"            the kernel assigned id N (the device exists)
 *   "ready N"         /dev/ublkbN is live
 *   "error CODE MSG"  setup failed with exit code CODE; nothing is left
 * and the front end returns only once it read "ready" or "error", or the
 * deadline passed. */
#ifndef UBLK_READY_H
#define UBLK_READY_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* One line to the front end: 0, or -errno (-EPIPE: it is gone, when the
 * writer ignores SIGPIPE). */
int ready_send(int fd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

struct ready_result {
	int id;                 /* -1 until known */
	uint64_t cookie;        /* the device's (ctrl_owner_cookie), 0 until known */
	int live;               /* 1 once "ready" arrived */
	int started;            /* 1 once "started" arrived: the kernel began the
				   recovery, which must not be cut short */
	int code;               /* exit code from "error", else 0 */
	char msg[512];
};

/* Start argv[0] (a server that recovers a device) detached in its own
 * session with the pipe as fd 3, its stdio on /dev/null, and wait at most
 * timeout_ms for it to be live (timeout_ms again from its "started"). On
 * timeout or early death the server is killed. Returns 0 when live, else
 * an exit code with res->msg explaining. */
int ready_spawn(char *const argv[], uint64_t timeout_ms, struct ready_result *res, pid_t *pid);

/* The same for a server that makes its device, also passing secrets_fd
 * (if >= 0) as fd READY_SECRETS_FD (for ublk-serve --secrets-fd:
 * credentials stay out of argv), and closing *release_on_id (if not NULL
 * and >= 0; then set to -1) once the server reports its device's id: a
 * lock held until the kernel has the device. A server that dies or is
 * killed before it is live has the device it told the id of deleted, or
 * before it told the id, the device whose cookie is its pid and
 * owner_nonce (0: none; what argv passes as --owner-nonce). */
#define READY_SECRETS_FD 4
int ready_spawn_fd(char *const argv[], int secrets_fd, int *release_on_id, uint32_t owner_nonce,
		   uint64_t timeout_ms, struct ready_result *res, pid_t *pid);

#endif
