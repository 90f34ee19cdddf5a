/* The server's side of its control socket (docs/state-dir.md, ctl): a live
 * export freezes the device's cache through it. It runs inside the
 * server's event loop and never waits itself, so signals, statistics and
 * the end of the queues are handled while an export holds writes, and a
 * silent or second client holds up nobody. */
#ifndef UBLK_CTL_SERVER_H
#define UBLK_CTL_SERVER_H

#include <poll.h>
#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct layer;

#define CTL_MAX_CLIENTS 4
/* A client has this long to send its request after connecting. */
#define CTL_REQUEST_MS 2000
/* A freeze waits this long at most for the writes in flight. */
#define CTL_FREEZE_WAIT_MS 2000

struct ctl_client {
	int fd;                 /* -1: a free slot */
	bool freezing;          /* asked to freeze; the freeze runs (freezer) */
	bool holding;           /* froze the stack and was told "frozen" */
	char line[128];
	size_t used;
	uint64_t deadline_ms;   /* monotonic: its request by then, or its hold ends */
};

struct ctl_server {
	int dev_id;
	int listen_fd;
	struct layer *stack;
	struct layer *frozen;   /* the layer a client holds, or NULL */
	uint64_t held_until_ms; /* wall clock: writes are held until then; 0 */
	struct ctl_client clients[CTL_MAX_CLIENTS];
	/* A freeze runs on a thread of its own: its sync of the cache may
	 * take long, and the loop goes on meanwhile. */
	pthread_t freezer;
	int freeze_efd;         /* written when it ends; -1 while none runs */
	uint64_t freeze_wait_ms;
	int freeze_ret;
	struct layer *freeze_got;
};

/* ctl_server_handle's answer: what changed for the server. */
enum { CTL_HOLD_STARTED = 1, CTL_HOLD_ENDED = 2 };

void ctl_server_init(struct ctl_server *cs, int dev_id, int listen_fd, struct layer *stack);
/* The fds to poll, into p (room for 2 + CTL_MAX_CLIENTS): their count. */
unsigned ctl_server_poll_fds(const struct ctl_server *cs, struct pollfd *p);
/* Milliseconds until the nearest client deadline, at most cap_ms. */
int ctl_server_timeout(const struct ctl_server *cs, int cap_ms);
/* Serve what poll reported on the fds of ctl_server_poll_fds (unchanged
 * since), and every deadline that passed: CTL_HOLD_* bits. */
int ctl_server_handle(struct ctl_server *cs, const struct pollfd *p, unsigned n);
/* Resume held writes and drop every client (not the listening socket):
 * before the device stops. Waits for a freeze under way to end. */
void ctl_server_close(struct ctl_server *cs);

#endif
