#include "ctl_server.h"
#include "host/ctlsock.h"
#include "image/access_log.h"
#include "image/layer.h"
#include "util/log.h"
#include "util/timeutil.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

void ctl_server_init(struct ctl_server *cs, int dev_id, int listen_fd, struct layer *stack)
{
	memset(cs, 0, sizeof(*cs));
	cs->dev_id = dev_id;
	cs->listen_fd = listen_fd;
	cs->stack = stack;
	cs->freeze_efd = -1;
	for (unsigned i = 0; i < CTL_MAX_CLIENTS; i++)
		cs->clients[i].fd = -1;
	/* a client gone between poll and accept must not block the loop */
	if (listen_fd >= 0)
		fcntl(listen_fd, F_SETFL, fcntl(listen_fd, F_GETFL) | O_NONBLOCK);
}

unsigned ctl_server_poll_fds(const struct ctl_server *cs, struct pollfd *p)
{
	unsigned n = 0;

	if (cs->listen_fd >= 0)
		p[n++] = (struct pollfd){ .fd = cs->listen_fd, .events = POLLIN };
	for (unsigned i = 0; i < CTL_MAX_CLIENTS; i++)
		if (cs->clients[i].fd >= 0)
			p[n++] = (struct pollfd){ .fd = cs->clients[i].fd, .events = POLLIN };
	if (cs->freeze_efd >= 0)
		p[n++] = (struct pollfd){ .fd = cs->freeze_efd, .events = POLLIN };
	return n;
}

int ctl_server_timeout(const struct ctl_server *cs, int cap_ms)
{
	uint64_t now = now_ms(), wait = (uint64_t)cap_ms;

	for (unsigned i = 0; i < CTL_MAX_CLIENTS; i++) {
		const struct ctl_client *c = &cs->clients[i];
		if (c->fd >= 0)
			wait = c->deadline_ms <= now ? 0 : c->deadline_ms - now < wait ? c->deadline_ms - now : wait;
	}
	return (int)wait;
}

/* Resume writes if this client holds them; close it. Returns CTL_HOLD_ENDED
 * when a hold ended. */
static int drop(struct ctl_server *cs, struct ctl_client *c, const char *reply)
{
	int changed = 0;

	if (reply)
		ctlsock_send(c->fd, reply);
	if (c->holding) {
		layer_thaw(cs->frozen);
		cs->frozen = NULL;
		cs->held_until_ms = 0;
		changed = CTL_HOLD_ENDED;
	}
	close(c->fd);
	*c = (struct ctl_client){ .fd = -1 };
	return changed;
}

static void *freezer_main(void *arg)
{
	struct ctl_server *cs = arg;
	uint64_t one = 1;

	cs->freeze_ret = layer_stack_freeze(cs->stack, cs->freeze_wait_ms, &cs->freeze_got);
	if (write(cs->freeze_efd, &one, sizeof(one)) < 0) { }
	return NULL;
}

/* "freeze MS": hold writes at a consistent point for at most MS, counted
 * from the request. The hold is announced at once (held writes are no
 * hang); the client is told "frozen" when the freeze has ended. */
static int start_hold(struct ctl_server *cs, struct ctl_client *c)
{
	char reply[160];
	uint64_t hold;
	int ret;

	if (ctlsock_parse_freeze(c->line, &hold))
		return drop(cs, c, "error expected 'freeze MS', MS from 1 to 600000\n");
	if (cs->frozen || cs->freeze_efd >= 0)
		return drop(cs, c, "error busy: another live export holds this device's writes\n");
	/* the writes in flight end in moments on a healthy cache: the freeze
	 * waits that long at most, whatever the hold */
	cs->freeze_wait_ms = hold < CTL_FREEZE_WAIT_MS ? hold : CTL_FREEZE_WAIT_MS;
	cs->freeze_got = NULL;
	cs->freeze_efd = eventfd(0, EFD_CLOEXEC);
	ret = cs->freeze_efd < 0 ? -errno : -pthread_create(&cs->freezer, NULL, freezer_main, cs);
	if (ret) {
		if (cs->freeze_efd >= 0)
			close(cs->freeze_efd);
		cs->freeze_efd = -1;
		snprintf(reply, sizeof(reply), "error %s\n", strerror(-ret));
		return drop(cs, c, reply);
	}
	c->freezing = true;
	c->used = 0;
	c->deadline_ms = now_ms() + hold;
	cs->held_until_ms = wall_ms() + hold;
	return CTL_HOLD_STARTED;
}

/* The freezer's end: its client is told "frozen", or why not; one that
 * went, or whose deadline passed, meanwhile has its writes let go. */
static int freeze_done(struct ctl_server *cs)
{
	struct ctl_client *c = NULL;
	char reply[160];
	int ret;

	pthread_join(cs->freezer, NULL);
	close(cs->freeze_efd);
	cs->freeze_efd = -1;
	ret = cs->freeze_ret;
	for (unsigned i = 0; i < CTL_MAX_CLIENTS; i++)
		if (cs->clients[i].fd >= 0 && cs->clients[i].freezing)
			c = &cs->clients[i];
	if (!ret && c) {
		log_dbg("ublkb%d: frozen for a live export", cs->dev_id);
		cs->frozen = cs->freeze_got;
		c->freezing = false;
		c->holding = true;
		ctlsock_send(c->fd, "frozen\n");
		return 0;
	}
	if (!ret)
		layer_thaw(cs->freeze_got);
	cs->held_until_ms = 0;
	if (c && ret) {
		c->freezing = false;
		snprintf(reply, sizeof(reply), "error %s\n", ret == -EOPNOTSUPP ?
			 "the device has no cache" : strerror(-ret));
		drop(cs, c, reply);
	}
	return CTL_HOLD_ENDED;
}

/* "save-trace": write the access trace recorded so far (a few KiB). */
static int save_trace(struct ctl_server *cs, struct ctl_client *c)
{
	char why[600], reply[640];
	int ret = access_log_save_now(cs->stack, why, sizeof(why));

	if (ret)
		snprintf(reply, sizeof(reply), "error %s\n", why);
	else
		snprintf(reply, sizeof(reply), "saved\n");
	return drop(cs, c, reply);
}

static int serve_client(struct ctl_server *cs, struct ctl_client *c, bool readable)
{
	int ret = readable ? ctlsock_take_line(c->fd, c->line, sizeof(c->line), &c->used) : -EAGAIN;

	if (ret == -EAGAIN && now_ms() < c->deadline_ms)
		return 0;
	/* its freeze still runs: once it ends, the writes are let go */
	if (c->freezing && ret == -EAGAIN)
		log_err("ublkb%d: a live export's freeze (the sync of the cache) did not end "
			"within its deadline; told it expired", cs->dev_id);
	if (c->freezing)
		return drop(cs, c, ret == -EAGAIN ? "expired\n" : NULL);
	if (ret == -EAGAIN && c->holding) {
		/* Past the deadline the export is no longer a point in time:
		 * say so before resuming, so that the client discards it. */
		log_err("ublkb%d: a live export held writes past its deadline; resumed them",
			cs->dev_id);
		return drop(cs, c, "expired\n");
	}
	if (ret == -EAGAIN)
		return drop(cs, c, "error expected 'freeze MS' within 2 s of connecting\n");
	if (ret <= 0)   /* gone, or a line too long: writes resume */
		return drop(cs, c, ret < 0 && !c->holding ? "error expected 'freeze MS'\n" : NULL);
	if (c->holding)
		return drop(cs, c, "thawed\n");
	if (!strcmp(c->line, "cancel")) {
		/* a delete whose stop waits for reads a stalled remote image holds */
		log_info("ublkb%d: the device is being deleted: reads that wait for the image's "
			 "server fail now", cs->dev_id);
		layer_stack_cancel(cs->stack);
		return drop(cs, c, "cancelled\n");
	}
	return strcmp(c->line, "save-trace") ? start_hold(cs, c) : save_trace(cs, c);
}

static void accept_clients(struct ctl_server *cs)
{
	for (;;) {
		int fd = ctlsock_accept(cs->listen_fd);
		unsigned i = 0;

		if (fd == -EPERM) {
			log_err("ublkb%d: control socket: refused a client that is neither root nor uid %u",
				cs->dev_id, (unsigned)geteuid());
			continue;
		}
		if (fd < 0)
			return;   /* -EAGAIN: no more waiting */
		while (i < CTL_MAX_CLIENTS && cs->clients[i].fd >= 0)
			i++;
		if (i == CTL_MAX_CLIENTS) {
			ctlsock_send(fd, "error busy: too many control clients\n");
			close(fd);
			continue;
		}
		cs->clients[i] = (struct ctl_client){ .fd = fd, .deadline_ms = now_ms() + CTL_REQUEST_MS };
	}
}

int ctl_server_handle(struct ctl_server *cs, const struct pollfd *p, unsigned n)
{
	unsigned k = cs->listen_fd >= 0 ? 1 : 0;
	bool accept_now = k && (p[0].revents & POLLIN);
	int changed = 0;

	/* clients in the order ctl_server_poll_fds listed them */
	for (unsigned i = 0; i < CTL_MAX_CLIENTS; i++) {
		struct ctl_client *c = &cs->clients[i];
		if (c->fd < 0)
			continue;
		bool readable = k < n && p[k].fd == c->fd && (p[k].revents & (POLLIN | POLLHUP | POLLERR));
		if (k < n && p[k].fd == c->fd)
			k++;
		changed |= serve_client(cs, c, readable);
	}
	if (cs->freeze_efd >= 0 && k < n && p[k].fd == cs->freeze_efd && (p[k].revents & POLLIN))
		changed |= freeze_done(cs);
	if (accept_now)
		accept_clients(cs);
	return changed;
}

void ctl_server_close(struct ctl_server *cs)
{
	for (unsigned i = 0; i < CTL_MAX_CLIENTS; i++)
		if (cs->clients[i].fd >= 0)
			drop(cs, &cs->clients[i], cs->clients[i].holding || cs->clients[i].freezing ?
			     "expired\n" : NULL);
	if (cs->freeze_efd >= 0)
		freeze_done(cs);
}
