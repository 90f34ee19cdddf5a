#include "server.h"
#include "util/cfgline.h"
#include "host/cgroup.h"
#include "host/ctlsock.h"
#include "ctl_server.h"
#include "kernel/ctrl.h"
#include "host/device.h"
#include "devconfig.h"
#include "devopts.h"
#include "util/exitcodes.h"
#include "image/layer.h"
#include "image/image.h"
#include "util/fileio.h"
#include "util/log.h"
#include "util/output_file.h"
#include "host/pool.h"
#include "kernel/queue.h"
#include "host/ready.h"
#include "image/stack.h"
#include "host/state.h"
#include "stack_target.h"
#include "util/timeutil.h"
#include "image/layer_http.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <unistd.h>

struct server {
	const struct server_config *cfg;
	struct ublk_ctrl ctrl;
	struct layer *layer;
	struct ublksrv_ctrl_dev_info info;
	int dev_id;             /* -1 until ADD_DEV */
	int char_fd;
	int sig_fd;
	int exit_efd;           /* queue threads signal their end */
	int ready_efd;
	int ctl_fd;             /* control socket (live export) */
	int lock_fd;            /* flock of the state entry, held for life */
	uint64_t start_ns;      /* for the start-up step timings (-v) */
	struct ublk_queue *queues;
	unsigned started;       /* queue threads running */
	bool live;
	bool lost;              /* the device was deleted by another before it was open */
	struct ctl_server ctl;  /* live exports, on ctl_fd */
	uint64_t stats_due_ms;  /* monotonic: when the stats (heartbeat) are next written */
	bool stats_failing;     /* the last write of the stats failed (said once) */
	int io_flusher_err;     /* PR_SET_IO_FLUSHER's -errno */
	bool released;          /* the queues were let on to fetch (or end) */
	int fd_reserve;         /* a recovery's fd for /dev/ublkcN, kept from before its START */
	char image[2048];       /* the stack's version: the entry's image file */
};

/* How long a server whose device never went live waits for its queue
 * threads to end: they have only fetches in flight. */
#define QUEUE_END_WAIT_MS 2000

/* With -v: how long start-up took up to each step (docs/warm-pool.md). */
static void step_done(const struct server *s, const char *what)
{
	log_dbg("ublkb%d: start-up: %s done at %.1f ms", s->dev_id, what,
		(double)(now_ns() - s->start_ns) / 1e6);
}

/* A new device whose ublk-add died (killed, or its deadline) before it
 * could print the device: nobody would ever know of it, or delete it. A
 * recovery goes on: its device is in use. */
#define FRONT_END_GONE "the ublk-add that started this server is gone before the device was " \
	"live: nobody knows of the device; deleting it"

/* Report a setup failure on stderr and the readiness channel. */
static int fail(struct server *s, int code, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static int fail(struct server *s, int code, const char *fmt, ...)
{
	char msg[600];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	log_err("%s", msg);
	if (s->cfg->ready_fd >= 0)
		ready_send(s->cfg->ready_fd, "error %d %s", code, msg);
	return code;
}

/* Whether the device is still the one this server made or attaches to
 * (ctrl_device_is): ids are reused at once, and a device deleted by
 * another tool before its server opened it would otherwise be replaced,
 * unseen, by someone else's. */
static int device_still_ours(struct server *s)
{
	return ctrl_device_is(&s->ctrl, (uint32_t)s->dev_id, s->info.ublksrv_flags);
}

/* Whether an open of /dev/ublkcN that failed with err is tried again: the
 * node not made yet, or the old server's still open; in a recovery, a slot
 * a thread of the stack holds for a moment (the recovery has started: it
 * must not fail now). */
static bool open_again(const struct server *s, int err)
{
	return err == ENOENT || err == EBUSY ||
	       (s->cfg->recover_id >= 0 && (err == EMFILE || err == ENFILE));
}

/* Open /dev/ublkcN, and make sure it is this server's device: once it is
 * open the kernel keeps the id for it, whoever deletes the device. */
static int open_char_dev(struct server *s)
{
	char path[64];
	uint64_t deadline = deadline_ms(s->cfg->timeout_ms);
	int fd = -1, ours = 0;

	/* The node appears asynchronously after ADD_DEV (devtmpfs/udev); a
	 * recovery waits for the old server to let go of it. */
	dev_char_path((uint32_t)s->dev_id, path, sizeof(path));
	/* the slot a recovery kept from before its start (a thread of the
	 * stack, a prefetch, may take it first: open_again) */
	if (s->fd_reserve >= 0) {
		close(s->fd_reserve);
		s->fd_reserve = -1;
	}
	for (unsigned tries = 0;; tries++) {
		fd = open(path, O_RDWR | O_CLOEXEC);
		if (fd >= 0 || !open_again(s, errno) || !ms_left(deadline))
			break;
		/* every 100 ms: a device deleted meanwhile ends the wait */
		if (tries % 20 == 19 && (ours = device_still_ours(s)) <= 0)
			goto lost;
		sleep_ms(5);
	}
	if (fd < 0 && open_again(s, errno))
		return fail(s, EXIT_TIMEOUT, "ublkb%d: %s still could not be opened after %llu ms: "
			    "%s (%s)", s->dev_id, path, (unsigned long long)s->cfg->timeout_ms,
			    strerror(errno), errno == ENOENT ? "no node: is udev or devtmpfs slow?" :
			    errno == EBUSY ? "another process has it open: an old server still exiting?" :
			    "too many open files");
	if (fd < 0)
		return fail(s, EXIT_FAIL, "ublkb%d: open %s: %s", s->dev_id, path, strerror(errno));
	if ((ours = device_still_ours(s)) > 0)
		return s->char_fd = fd, 0;
	close(fd);
lost:
	if (ours < 0)
		return fail(s, EXIT_FAIL, "ublkb%d: GET_DEV_INFO: %s", s->dev_id, strerror(-ours));
	s->lost = true;
	return fail(s, EXIT_FAIL, "ublkb%d: deleted by another tool (ublk-del, ublk-pool) while its "
		    "server started, before it could open %s; nothing is served", s->dev_id, path);
}

static void set_params(const struct server *s, struct ublk_params *p)
{
	uint64_t size = s->layer->size;

	memset(p, 0, sizeof(*p));
	p->types = UBLK_PARAM_TYPE_BASIC | UBLK_PARAM_TYPE_DISCARD;
	/* read-only by request, or because nothing in the stack takes writes
	 * (layers without a cache) */
	bool ro = s->layer->read_only;

	p->basic.attrs = UBLK_ATTR_VOLATILE_CACHE | (ro ? UBLK_ATTR_READ_ONLY : 0);
	p->basic.logical_bs_shift = 12;
	p->basic.physical_bs_shift = 12;
	p->basic.io_min_shift = 12;
	p->basic.io_opt_shift = 12;
	p->basic.max_sectors = s->info.max_io_buf_bytes >> 9;
	p->basic.dev_sectors = size >> 9;
	p->discard.discard_granularity = LAYER_BLOCK_SIZE;
	/* whole blocks: 6.1 cuts a long zero-out at exactly this many sectors */
	p->discard.max_discard_sectors = (UINT32_MAX >> 9) & ~7u;
	p->discard.max_write_zeroes_sectors = (UINT32_MAX >> 9) & ~7u;
	p->discard.max_discard_segments = 1;
	if (ro || s->layer->no_discard)
		p->types &= ~UBLK_PARAM_TYPE_DISCARD;
}

/* Statistics of all queues, as the state entry's "stats" (JSON). Written
 * every second, the file is also the server's heartbeat, which ublk-pool
 * watch checks (docs/recovery.md, Hung servers). */
static void write_stats(struct server *s)
{
	struct queue_heartbeat hb = { .held_until_ms = s->ctl.held_until_ms };
	uint64_t now = now_ms();
	char remote[1024];

	for (unsigned i = 0; i < s->started; i++) {
		uint64_t stalled = queue_stalled_ms(&s->queues[i], now);
		if (stalled > hb.stalled_ms)
			hb.stalled_ms = stalled;
	}
	char *text = queue_stats_json(s->queues, s->started, &hb,
				      layer_stack_stats(s->layer, remote, sizeof(remote)) > 0 ? remote : NULL);
	int ret = text ? state_write_volatile(s->dev_id, "stats", text) : -ENOMEM;
	free(text);
	if (!ret) {
		if (s->stats_failing)
			log_info("ublkb%d: statistics written again", s->dev_id);
		s->stats_failing = false;
		return;
	}
	/* A full /run must not stop the heartbeat: ublk-pool watch would
	 * take this server for a hung one, kill it, and fail to recover the
	 * device on the same full file system. A new time needs no space. */
	int touched = state_touch(s->dev_id, "stats");
	if (!s->stats_failing)
		log_err("ublkb%d: statistics not written: %s; %s", s->dev_id, strerror(-ret),
			touched ? "nor the heartbeat: ublk-pool watch will take the server for a hung one" :
			"the heartbeat goes on (the file's time), with the statistics as they were");
	s->stats_failing = true;
}

/* A recovery serves the image its device was made over, or nothing: the
 * guest's page cache, its mounted file system and the cache's writes all
 * hold the old version (docs/state-dir.md, image). */
static int same_image(struct server *s)
{
	char was[sizeof(s->image)];
	int id = s->cfg->recover_id;
	int n = state_read((uint32_t)id, "image", was, sizeof(was));

	if (n == -ENOENT)   /* an entry of before the file */
		return 0;
	if (n < 0)
		return fail(s, EXIT_FAIL, "ublkb%d: reading the version of the image it was made "
			    "over (image in its state entry): %s", id, strerror(-n));
	/* file= lines came later: an entry without one compares as before */
	static const char *const file[] = { "file", NULL };
	static const char *const all[] = { "size", "remote", "file", NULL };
	static const char *const before_file[] = { "size", "remote", NULL };
	char known_was[sizeof(was)], known_now[sizeof(was)];
	cfgline_select(was, file, known_was, sizeof(known_was));
	const char *const *keys = known_was[0] ? all : before_file;
	cfgline_select(was, keys, known_was, sizeof(known_was));
	cfgline_select(s->image, keys, known_now, sizeof(known_now));
	if (!strcmp(known_was, known_now))
		return 0;
	bool resized = strncmp(known_was, known_now, strcspn(known_now, "\n") + 1);
	return fail(s, EXIT_BAD_IMAGE, "ublkb%d: the image is not the one the device was made over "
		    "(%s): its guest and cache hold data of the old one, which cannot be read any "
		    "more; nothing was recovered: delete the device (ublk-del %d) and add it again "
		    "over a new cache", id, resized ? "its size changed" :
		    "a remote image changed on its server (another ETag, Last-Modified or size), "
		    "or a local one was written or replaced (another modification time)", id);
}

static int build_stack(struct server *s)
{
	struct stack_config sc = s->cfg->stack;
	char why[700];

	sc.trace_label = s->cfg->name;
	sc.keep_frames = !sc.no_frame_cache;
	/* a recovery is no start: its first reads say nothing of a boot, and
	 * the trace of the start it continues stays as it was written */
	if (s->cfg->recover_id >= 0 && sc.record_access) {
		log_info("ublkb%d: recovering: --record-access %s is left as it is", s->cfg->recover_id,
			 sc.record_access);
		sc.record_access = NULL;
	}
	int code = stack_open(&sc, &s->layer, why, sizeof(why));
	if (code)
		return fail(s, code, "%s", why);
	if (stack_image_text(s->layer, s->image, sizeof(s->image)))
		return fail(s, EXIT_FAIL, "the image's version: too many remote images to name");
	return s->cfg->recover_id >= 0 ? same_image(s) : 0;
}

/* Wait for each of the n queues' signal of a step, then for its result. */
static int wait_queues(struct server *s, unsigned n)
{
	uint64_t deadline = deadline_ms(s->cfg->timeout_ms);

	for (unsigned done = 0; done < n;) {
		struct pollfd p = { .fd = s->ready_efd, .events = POLLIN };
		uint64_t cnt, left = ms_left(deadline);
		int r = left ? poll(&p, 1, poll_timeout(left)) : 0;
		if ((r < 0 && errno == EINTR) || (r == 0 && ms_left(deadline)))
			continue;
		if (r < 0)
			return -errno;
		if (r == 0)
			return -ETIMEDOUT;
		if (read(s->ready_efd, &cnt, sizeof(cnt)) == sizeof(cnt))
			done += (unsigned)cnt;
	}
	for (unsigned i = 0; i < n; i++)
		if (s->queues[i].setup_err)
			return s->queues[i].setup_err;
	return 0;
}

/* The queue threads, each with its ring and buffers, waiting for the
 * device (fetch_queues): all a recovery can fail at is done before
 * START_USER_RECOVERY, after which the kernel takes no other recovery
 * until every queue has fetched. 0, or the exit code of the failure,
 * said (fail). */
static int prepare_queues(struct server *s)
{
	unsigned n = s->info.nr_hw_queues;
	int ret = 0;

	s->queues = calloc(n, sizeof(*s->queues));
	if (!s->queues)
		ret = -ENOMEM;
	for (unsigned i = 0; !ret && i < n; i++) {
		struct ublk_queue *q = &s->queues[i];
		q->dev_id = s->dev_id;
		q->qid = i;
		q->depth = s->info.queue_depth;
		q->buf_bytes = s->info.max_io_buf_bytes;
		q->char_fd = -1;
		q->ioctl_encode = (s->info.flags & UBLK_F_CMD_IOCTL_ENCODE) != 0;
		q->user_copy = (s->info.flags & UBLK_F_USER_COPY) != 0;
		q->get_data = !q->user_copy && (s->info.flags & UBLK_F_NEED_GET_DATA);
		q->target = stack_target(s->layer);
		q->ready_efd = s->ready_efd;
		q->exit_efd = s->exit_efd;
		if (!(ret = queue_start(q)))
			s->started++;
	}
	if (!ret)
		ret = wait_queues(s, n);
	if (ret)
		return fail(s, EXIT_FAIL, "ublkb%d: preparing queues: %s", s->dev_id, strerror(-ret));
	step_done(s, "queue threads");
	return 0;
}

/* Let every queue map its descriptors and fetch (or, with -1, end). */
static void release_queues(struct server *s, int char_fd)
{
	for (unsigned i = 0; i < s->started; i++)
		queue_release(&s->queues[i], char_fd);
	s->released = true;
}

static int fetch_queues(struct server *s)
{
	release_queues(s, s->char_fd);
	return wait_queues(s, s->started);
}

/* A recovery that failed because its device was stopped under it (a
 * ublk-del between START_USER_RECOVERY and END_USER_RECOVERY): the kernel
 * keeps the fetches made after the stop until another stop cancels them,
 * which on a stopped device is all STOP_DEV does (6.1 and 6.12). */
static void cancel_fetches(struct server *s)
{
	struct ublksrv_ctrl_dev_info now;

	if (!ctrl_get_info(&s->ctrl, (uint32_t)s->dev_id, &now) &&
	    now.ublksrv_flags == s->info.ublksrv_flags && now.state == UBLK_S_DEV_DEAD)
		ctrl_stop_dev(&s->ctrl, (uint32_t)s->dev_id);
}

/* How long a stop may wait for requests held by the backend, past
 * --timeout: remote fetches are cancelled then, and local files answer
 * within their own (disk) time. */
#define STOP_LATE_MS 300000

/* Stop and delete the device and free everything; safe at any stage.
 * 0, or the exit code of a device this server should have deleted and
 * did not (its log says why). */
static int teardown(struct server *s)
{
	/* A failed recovery leaves the device waiting for the next one. */
	bool owned = s->dev_id >= 0 && !s->lost && (s->live || s->cfg->recover_id < 0);
	bool joined = true, stopped = true;
	uint64_t stop_start = 0;
	int ret, code = 0;

	/* without /dev/ublkcN open the id is ours only while the device is */
	if (owned && s->char_fd < 0)
		owned = device_still_ours(s) > 0;

	/* held writes must complete for the queues to stop */
	ctl_server_close(&s->ctl);
	if (owned) {
		state_write(s->dev_id, "state", "stopping\n");
		stop_start = now_ms();
		ret = ctrl_stop_dev(&s->ctrl, s->dev_id);
		/* The kernel's stop waits for the requests the device has in
		 * flight; those held by the backend (a slow remote server) end
		 * with its own deadlines, while the queues keep serving. Exiting
		 * before would leave them to the kernel: on 6.12 the exit then
		 * waits for the stop for ever, and 6.1 fails them. */
		if (ret == -ETIMEDOUT) {
			log_info("ublkb%d: the stop waits for requests the backend holds: reads that wait "
				 "for a remote image's server fail now; waiting up to %d s more", s->dev_id,
				 STOP_LATE_MS / 1000);
			layer_stack_cancel(s->layer);
			ret = ctrl_wait_late(&s->ctrl, STOP_LATE_MS);
		}
		if (ret && ret != -ENODEV) {
			log_err("ublkb%d: STOP_DEV: %s", s->dev_id, strerror(-ret));
			stopped = false;
		}
	}
	if (!s->released)
		release_queues(s, -1);
	else if (!owned && !s->live && s->char_fd >= 0)
		cancel_fetches(s);
	/* A device never live under this server has nothing in flight; its
	 * fetches end with a stop, which a failed recovery does not send. */
	uint64_t join_ms = s->live ? s->cfg->timeout_ms : QUEUE_END_WAIT_MS;
	uint64_t join_by = deadline_ms(join_ms);
	for (unsigned i = 0; i < s->started; i++) {
		ret = queue_join(&s->queues[i], ms_left(join_by));
		if (ret == -ETIMEDOUT)
			log_err("ublkb%d: queue %u did not stop within %llu ms; exiting anyway",
				s->dev_id, i, (unsigned long long)join_ms);
		else if (ret)
			log_err("ublkb%d: queue %u ended with requests in flight; exiting anyway",
				s->dev_id, i);
		joined &= !ret;
	}
	/* A stop that has not ended (a request held in the backend) keeps the
	 * device's mutex, which DEL_DEV would wait for holding the mutex of
	 * every device's control (every add and delete of the host), and a
	 * queue not stopped keeps /dev/ublkcN, which 6.1's DEL_DEV waits for
	 * the same way: left to ublk-del (or reclaim), once the request has
	 * ended, with its entry and the log that says so. */
	if (owned && (!stopped || !joined)) {
		char what[64];
		if (!stopped)
			snprintf(what, sizeof(what), "its stop did not end within %llu ms",
				 (unsigned long long)(now_ms() - stop_start));
		else
			snprintf(what, sizeof(what), "its queues did not end");
		log_err("ublkb%d: not deleted: %s (a request held by the image's backend?); "
			"delete it with ublk-del %d once that has ended", s->dev_id, what, s->dev_id);
		owned = false;
		code = EXIT_FAIL;
	}
	/* While /dev/ublkcN is open the id stays this device's; once the
	 * device is deleted a new one may take the id, and its entry, at once. */
	if (owned)
		state_remove_same((uint32_t)s->dev_id, s->info.ublksrv_flags);
	if (s->char_fd >= 0)
		close(s->char_fd);
	if (owned) {
		ret = ctrl_del_dev(&s->ctrl, s->dev_id);
		if (ret && ret != -ENODEV) {
			log_err("ublkb%d: DEL_DEV: %s", s->dev_id, strerror(-ret));
			/* a DEL_DEV that waits for the last holder (before 6.9)
			 * deletes the device once that one lets go */
			if (ret != -ETIMEDOUT)
				code = EXIT_FAIL;
		} else if (!ret)
			log_dbg("ublkb%d: deleted with %s", s->dev_id,
				s->ctrl.del_async == 1 ? "DEL_DEV_ASYNC" : "DEL_DEV");
	}
	/* a queue thread still running may use both */
	if (joined) {
		free(s->queues);
		layer_close(s->layer);
	}
	ctrl_close(&s->ctrl);
	if (s->sig_fd >= 0)
		close(s->sig_fd);
	if (s->exit_efd >= 0)
		close(s->exit_efd);
	if (s->ready_efd >= 0)
		close(s->ready_efd);
	if (s->ctl_fd >= 0)
		close(s->ctl_fd);
	if (s->lock_fd >= 0)
		close(s->lock_fd);
	if (s->fd_reserve >= 0)
		close(s->fd_reserve);
	return code;
}

int server_preflight(const struct server_config *cfg, char *why, size_t len)
{
	uint64_t size;
	int ret;

	if (access(ctrl_path(), F_OK)) {
		snprintf(why, len, "%s", ctrl_open_hint(-ENOENT));
		return EXIT_NO_UBLK;
	}
	if (geteuid() != 0) {
		snprintf(why, len, "%s", ctrl_open_hint(-EPERM));
		return EXIT_PERM;
	}
	/* under a cache the base is only read */
	if (cfg->stack.base && !http_is_url(cfg->stack.base) &&
	    (ret = image_check(cfg->stack.base, cfg->stack.read_only || cfg->stack.cache, &size, why,
			       len)))
		return exit_code_for_image(ret);
	/* found now, not when the trace is saved after the boot it records */
	if (cfg->stack.record_access && cfg->recover_id < 0 &&
	    (output_file_check(cfg->stack.record_access, 0, why, len) ||
	     stack_refuse_output(&cfg->stack, cfg->stack.record_access, why, len)))
		return EXIT_USAGE;
	if (cfg->cgroup && cgroup_enter(cfg->cgroup, false, why, len))
		return EXIT_FAIL;
	return 0;
}

static int write_pid(const struct server *s)
{
	char pid[32];
	snprintf(pid, sizeof(pid), "%d\n", (int)getpid());
	return state_write(s->dev_id, "pid", pid);
}

static int rotate_log(void *id)
{
	return state_rotate_log((uint32_t)(uintptr_t)id);
}

/* Messages into the entry's log too, bounded (STATE_LOG_MAX). */
static void log_to_entry(struct server *s)
{
	int fd = state_open_log(s->dev_id);

	if (fd >= 0)
		log_set_file(fd, STATE_LOG_MAX, rotate_log, (void *)(uintptr_t)s->dev_id);
}

/* Recovery: the state entry, locked so that no second server attaches. */
static int lock_entry(struct server *s)
{
	char pid[32] = "?\n";
	int old = 0;

	s->lock_fd = state_lock(s->dev_id);
	if (s->lock_fd == -EBUSY) {
		/* the old server may have been killed a moment ago */
		state_read(s->dev_id, "pid", pid, sizeof(pid));
		/* one still exiting may have let go of the lock already */
		if ((old = pid_alive_settled(atoi(pid), PID_EXIT_WAIT_MS)) != 1)
			s->lock_fd = state_lock(s->dev_id);
	}
	if (s->lock_fd == -EBUSY && old == PID_EXITING) {
		pid[strcspn(pid, "\n")] = 0;
		return fail(s, EXIT_TIMEOUT, "ublkb%d: the old server (pid %s) is still exiting after "
			    "%d s: recover again once it has ended", s->dev_id, pid,
			    PID_EXIT_WAIT_MS / 1000);
	}
	if (s->lock_fd == -EBUSY) {
		/* a recovery that won the race has written its own */
		state_read(s->dev_id, "pid", pid, sizeof(pid));
		pid[strcspn(pid, "\n")] = 0;
		return fail(s, EXIT_BUSY, "ublkb%d: a server is running (pid %s): nothing to recover",
			    s->dev_id, pid);
	}
	if (s->lock_fd < 0)
		return fail(s, s->lock_fd == -ENOENT ? EXIT_NO_DEVICE : EXIT_FAIL,
			    "ublkb%d: state entry: %s", s->dev_id, strerror(-s->lock_fd));
	log_to_entry(s);
	/* tools now see a live server for the device, not a recoverable one */
	write_pid(s);
	return 0;
}

/* Whether entry id's device was made with --no-recovery. */
static bool made_without_recovery(uint32_t id)
{
	char v[32] = "";

	return !state_config_get(id, "no_recovery", v, sizeof(v)) && !strcmp(v, "1");
}

/* Whether entry id's own device still exists: found by the entry's
 * cookie, not by the id, which a new device may have taken since; by the
 * id for an entry of before cookies. Unknown (the control device does not
 * answer) counts as there: refusing a cache or a name wrongly is a retry,
 * taking one wrongly forks a device's data. */
static bool entry_device_exists(uint32_t id)
{
	uint64_t cookie = state_entry_cookie(id);
	uint32_t found;

	if (!cookie)
		return ctrl_has_device(id);
	int ret = device_find_own(cookie, &found);
	return ret ? ret != -ENODEV : found == id;
}

/* Whether the cache belongs to a device whose server died but which still
 * exists: a new device over it would fork the data the waiting one has. */
static bool cache_awaits_recovery(struct server *s)
{
	uint32_t other;

	if (state_find("cache", s->cfg->stack.cache, &other))
		return false;
	if (state_server_pid(other) || !entry_device_exists(other))
		return false;   /* in use (the cache's lock says so), or gone */
	if (!made_without_recovery(other))
		fail(s, EXIT_BUSY, "%s: the cache of /dev/ublkb%u, whose server died: recover that "
		     "device (ublk-serve --recover %u) or delete it (ublk-del %u) first",
		     s->cfg->stack.cache, other, other, other);
	else
		fail(s, EXIT_BUSY, "%s: the cache of /dev/ublkb%u, whose server died: delete that "
		     "device (ublk-del %u) first", s->cfg->stack.cache, other, other);
	return true;
}

/* Whether a device other than self has the name (failing with why): a
 * live one, or one whose server died and that waits for a recovery (it
 * would come back with the name: two devices of one name, and ublk-del
 * NAME the lower id's). */
static bool name_taken(struct server *s, uint32_t self)
{
	uint32_t other;
	char state[16] = "";

	if (state_find_other("name", s->cfg->name, self, &other))
		return false;
	if (state_server_pid(other)) {
		fail(s, EXIT_BUSY, "name '%s' is already used by /dev/ublkb%u", s->cfg->name, other);
		return true;
	}
	/* gone, or never coming back (made without recovery, or never live:
	 * reclaim deletes it) */
	if (!entry_device_exists(other) || made_without_recovery(other) ||
	    (state_read(other, "state", state, sizeof(state)) > 0 && !strcmp(state, "starting\n")))
		return false;
	fail(s, EXIT_BUSY, "name '%s' is the name of /dev/ublkb%u, whose server died: recover that "
	     "device (ublk-serve --recover %u) or delete it (ublk-del %u) first", s->cfg->name,
	     other, other, other);
	return true;
}

/* Checks, the layer stack and the control device: everything that can
 * fail before the kernel is asked for anything. */
static int prepare(struct server *s)
{
	const struct server_config *cfg = s->cfg;
	char why[600];
	int ret;

	if (cfg->recover_id >= 0 && (ret = lock_entry(s)))
		return ret;

	ret = server_preflight(cfg, why, sizeof(why));
	if (ret)
		return fail(s, ret, "%s", why);
	/* before any thread: the caller's group may be stopped, with all in it */
	if (cfg->cgroup && cgroup_enter(cfg->cgroup, true, why, sizeof(why)))
		return fail(s, EXIT_FAIL, "%s", why);
	if (cfg->name && cfg->recover_id < 0 && name_taken(s, UINT32_MAX))
		return EXIT_BUSY;
	if (cfg->stack.cache && cfg->recover_id < 0 && cache_awaits_recovery(s))
		return EXIT_BUSY;
	/* a stack of remote layers holds CHUNK_OPEN_FILES chunk files per image */
	fd_limit_raise();
	ret = build_stack(s);
	if (ret)
		return ret;
	step_done(s, "checks and layer stack");

	ret = ctrl_open(&s->ctrl, cfg->timeout_ms);
	if (ret) {
		const char *hint = ctrl_open_hint(ret);
		if (hint)
			return fail(s, ret == -ENOENT ? EXIT_NO_UBLK : EXIT_PERM, "%s", hint);
		return fail(s, EXIT_FAIL, "%s: %s", ctrl_path(), strerror(-ret));
	}
	return 0;
}

/* The state entry's pid, state and control socket for this server. */
static int claim_state(struct server *s, const char *state)
{
	int ret;

	/* a recovery's entry has its dead predecessor's statistics, stall and
	 * all: judged as this server's until its first own, they could get it
	 * killed for a hang */
	state_write_volatile(s->dev_id, "stats", "{}\n");
	if ((ret = write_pid(s)) || (ret = state_write(s->dev_id, "state", state)) ||
	    (s->cfg->recover_id < 0 && (ret = state_write(s->dev_id, "image", s->image))))
		return fail(s, EXIT_FAIL, "ublkb%d: writing state: %s", s->dev_id, strerror(-ret));
	s->ctl_fd = ctlsock_listen(s->dev_id);
	if (s->ctl_fd < 0)
		return fail(s, EXIT_FAIL, "ublkb%d: control socket: %s", s->dev_id, strerror(-s->ctl_fd));
	return 0;
}

/* A new device: ADD_DEV, /dev/ublkcN, its state entry, SET_PARAMS. */
static int create_device(struct server *s)
{
	const struct server_config *cfg = s->cfg;
	struct ublk_params params;
	int ret;

	s->info.nr_hw_queues = cfg->queues;
	s->info.queue_depth = cfg->depth;
	s->info.max_io_buf_bytes = SERVER_IO_BUF_BYTES;
	s->info.dev_id = cfg->want_id >= 0 ? (uint32_t)cfg->want_id : (uint32_t)-1;
	/* The kernel keeps only the flags it knows (6.0 has no recovery). */
	if (!cfg->no_recovery)
		s->info.flags = UBLK_F_USER_RECOVERY | UBLK_F_USER_RECOVERY_REISSUE;
	/* 6.4+ grants it (and the echo then says so), 6.1 clears it */
	s->info.flags |= UBLK_F_CMD_IOCTL_ENCODE;
	/* A stack of mapped files has the kernel copy reads from the page
	 * cache straight into the request: one copy, where a read into the
	 * tag's buffer and ublk's commit make two. Any other stack would pay
	 * a syscall more a request for nothing. Without user copy (before
	 * 6.5), NEED_GET_DATA lets a read be committed from the map: its
	 * writes then pay a round trip each (docs/kernels.md). */
	uint64_t kernel;
	if (s->layer->maps) {
		if (ctrl_get_features(&s->ctrl, &kernel) == 0 && (kernel & UBLK_F_USER_COPY))
			s->info.flags |= UBLK_F_USER_COPY;
		else
			s->info.flags |= UBLK_F_NEED_GET_DATA;
	}
	uint64_t cookie;
	if ((ret = ctrl_owner_cookie(getpid(), cfg->owner_nonce, &cookie)))
		return fail(s, EXIT_FAIL, "getrandom: %s", strerror(-ret));
	s->info.ublksrv_flags = cookie;
	ret = ctrl_add_dev(&s->ctrl, &s->info);
	if (ret) {
		if (ret == -EACCES || ret == -ENOSPC)
			return fail(s, EXIT_BUSY, "pool full: the kernel refused a new device at ADD_DEV "
				    "(%s): its device limit (ublk_drv's ublks_max, where it counts root's) is "
				    "likely reached; delete unused devices with ublk-del, or raise "
				    "ublks_max", strerror(-ret));
		if (ret == -EEXIST && cfg->want_id >= 0)
			return fail(s, EXIT_BUSY, "ublkb%d exists already: choose another --id, or leave "
				    "it out", cfg->want_id);
		return fail(s, exit_code_for(ret), "ADD_DEV: %s", strerror(-ret));
	}
	s->dev_id = (int)s->info.dev_id;
	step_done(s, "ADD_DEV");
	if ((ret = open_char_dev(s)))
		return ret;
	step_done(s, "open /dev/ublkcN");
	/* once open: from here tools find this server by its /dev/ublkcN (a
	 * front end that kills it before knows the device by its cookie) */
	if (cfg->ready_fd >= 0 &&
	    ready_send(cfg->ready_fd, "id %d %016llx", s->dev_id,
		       (unsigned long long)s->info.ublksrv_flags) == -EPIPE &&
	    cfg->recover_id < 0)
		return fail(s, EXIT_FAIL, "ublkb%d: %s", s->dev_id, FRONT_END_GONE);

	/* the lock held, and the entry open, are what tell tools this server
	 * runs (a pid alone may be another process's) */
	s->lock_fd = state_create_locked(s->dev_id, s->info.ublksrv_flags);
	if (s->lock_fd < 0)
		return fail(s, EXIT_FAIL, "ublkb%d: state directory %s: %s", s->dev_id,
			    state_dir(), strerror(-s->lock_fd));
	log_to_entry(s);
	if (!cfg->no_recovery && !(s->info.flags & UBLK_F_USER_RECOVERY))
		log_info("ublkb%d: this kernel has no user recovery: IO fails if the server dies",
			 s->dev_id);
	/* The name was checked before, but two adds of it may both have
	 * passed: checked again, and published, one server at a time. */
	int names = cfg->name ? pool_names_lock(cfg->timeout_ms) : -1;
	if (cfg->name && names < 0)
		return fail(s, names == -ETIMEDOUT ? EXIT_TIMEOUT : EXIT_FAIL, "ublkb%d: the lock on "
			    "names in %s: %s", s->dev_id, state_dir(), strerror(-names));
	if (cfg->name && name_taken(s, (uint32_t)s->dev_id))
		ret = EXIT_BUSY;
	else if ((ret = devconfig_write((uint32_t)s->dev_id, s->cfg, s->layer->size)))
		ret = fail(s, EXIT_FAIL, "ublkb%d: writing state: %s", s->dev_id, strerror(-ret));
	else
		ret = claim_state(s, "starting\n");
	if (names >= 0)
		close(names);
	if (ret)
		return ret;
	step_done(s, "state entry and control socket");

	set_params(s, &params);
	ret = ctrl_set_params(&s->ctrl, s->dev_id, &params);
	if (ret)
		return fail(s, EXIT_FAIL, "ublkb%d: SET_PARAMS: %s", s->dev_id, strerror(-ret));
	step_done(s, "SET_PARAMS");
	return 0;
}

/* START_USER_RECOVERY, retried while the kernel has not yet released the
 * device, until the deadline. */
static int start_recovery(struct server *s, uint64_t deadline)
{
	const struct server_config *cfg = s->cfg;
	int ret, ours = 1;

	/* Each try checks first that the id is still this device's: deleted
	 * meanwhile, it may be a new device's, which this must not take for
	 * its own once that one's server dies. None once the deadline is past:
	 * the kill of whoever started this server would come after the start. */
	ret = -EBUSY;
	for (unsigned tries = 0; ms_left(deadline) && (ours = device_still_ours(s)) > 0; tries++) {
		ret = ctrl_start_recovery(&s->ctrl, s->dev_id);
		if (ret != -EBUSY)
			break;
		if (!tries && s->info.state == UBLK_S_DEV_LIVE)
			device_nudge((uint32_t)s->dev_id);   /* the kernel has not noticed yet */
		sleep_ms(20);
	}
	/* refused: by this device, or by one that took the id since the check */
	if (ret && ret != -EBUSY && ours > 0)
		ours = device_still_ours(s);
	if (ours < 0)
		return fail(s, EXIT_FAIL, "ublkb%d: GET_DEV_INFO: %s", s->dev_id, strerror(-ours));
	if (!ours || ret == -ENODEV) {
		s->lost = true;
		return fail(s, EXIT_NO_DEVICE, "ublkb%d: deleted (ublk-del, ublk-pool) while this "
			    "server waited to recover it; nothing is served", s->dev_id);
	}
	if (ret == -EBUSY) {
		ret = ctrl_get_info(&s->ctrl, s->dev_id, &s->info);
		return fail(s, EXIT_TIMEOUT, "ublkb%d: the kernel did not release the device for "
			    "recovery within %llu ms (state %s): is its old server still exiting?",
			    s->dev_id, (unsigned long long)cfg->timeout_ms,
			    ret ? "unknown" : ctrl_state_name(s->info.state));
	}
	if (ret == -EINVAL)
		return fail(s, EXIT_FAIL, "ublkb%d: START_USER_RECOVERY: the kernel takes no new "
			    "recovery of this device (an earlier one ended after the kernel started it, "
			    "before its queues fetched): delete it (ublk-del %d)", s->dev_id, s->dev_id);
	if (ret)
		return fail(s, EXIT_FAIL, "ublkb%d: START_USER_RECOVERY: %s", s->dev_id, strerror(-ret));
	step_done(s, "START_USER_RECOVERY");
	if (cfg->ready_fd >= 0)
		ready_send(cfg->ready_fd, "started");
	log_info("ublkb%d: recovering: new server pid %d", s->dev_id, (int)getpid());
	return 0;
}

/* An existing device whose server died: take its state entry and start
 * the kernel's recovery, which waits until the kernel has noticed the
 * death and released the old server's /dev/ublkcN. */
static int attach_device(struct server *s)
{
	const struct server_config *cfg = s->cfg;
	/* one deadline from the server's start, which takes in the wait for
	 * the old server's lock: whoever started this gives it twice that, and
	 * must not kill it between START_USER_RECOVERY and its fetches */
	uint64_t deadline = s->start_ns / 1000000 + cfg->timeout_ms;
	char before[32];
	int ret;

	ret = ctrl_get_info(&s->ctrl, s->dev_id, &s->info);
	if (ret == -ENODEV)
		return fail(s, EXIT_NO_DEVICE, "ublkb%d: no such device", s->dev_id);
	if (ret)
		return fail(s, EXIT_FAIL, "ublkb%d: GET_DEV_INFO: %s", s->dev_id, strerror(-ret));
	if (!(s->info.flags & UBLK_F_USER_RECOVERY))
		return fail(s, EXIT_FAIL, "ublkb%d: created without user recovery (--no-recovery or "
			    "an old kernel): it cannot be recovered; delete it with ublk-del", s->dev_id);
	/* an entry left by a device deleted before this one took its id (the
	 * entry locked, whose config the layer stack was made from) */
	uint64_t cookie = state_cookie_at(s->lock_fd);
	if (cookie && cookie != s->info.ublksrv_flags)
		return fail(s, EXIT_FAIL, "ublkb%d: its state entry is of an earlier device of that id, "
			    "not of this one: nothing to recover it with; delete it with ublk-del",
			    s->dev_id);
	/* What can fail is done before START_USER_RECOVERY: after it the
	 * kernel takes no other recovery of the device until every queue has
	 * fetched (on 6.12, one where some queues had, it crashes). So the
	 * queues are made, the fd of /dev/ublkcN is kept, the entry claimed. */
	if ((ret = prepare_queues(s)))
		return ret;
	if ((s->fd_reserve = open("/dev/null", O_RDONLY | O_CLOEXEC)) < 0)
		return fail(s, EXIT_FAIL, "ublkb%d: %s", s->dev_id, strerror(errno));
	if (state_read(s->dev_id, "state", before, sizeof(before)) <= 0)
		before[0] = 0;
	if (!(ret = claim_state(s, "recovering\n")))
		ret = start_recovery(s, deadline);
	/* a recovery that never started (or could not listen) leaves the
	 * state as it found it: the dead server's, not a recovery's */
	if (ret && !s->lost && before[0])
		state_write(s->dev_id, "state", before);
	return ret;
}

/* What the kernel supports and what this device got (docs/kernels.md):
 * logged with -v and kept in the entry's "features" file. */
static void note_features(struct server *s)
{
	uint64_t kernel = 0, dev = s->info.flags;
	char kn[320], dn[320], text[1024], hex[2][24];
	size_t used = 0;
	int ret = ctrl_get_features(&s->ctrl, &kernel);
	/* before 6.5 what the device was granted is all there is to know */
	const char *from = ret ? "device flags; GET_FEATURES: " : "GET_FEATURES";
	const char *cmds = dev & UBLK_F_CMD_IOCTL_ENCODE ? "ioctl-encoded" : "legacy";

	if (ret)
		kernel = dev;
	ctrl_flag_names(kernel, kn, sizeof(kn));
	ctrl_flag_names(dev, dn, sizeof(dn));
	log_dbg("ublkb%d: kernel ublk features from %s%s: 0x%llx %s", s->dev_id, from,
		ret ? strerror(-ret) : "", (unsigned long long)kernel, kn);
	log_dbg("ublkb%d: device flags 0x%llx %s: %s commands", s->dev_id,
		(unsigned long long)dev, dn, cmds);
	snprintf(hex[0], sizeof(hex[0]), "0x%llx", (unsigned long long)kernel);
	snprintf(hex[1], sizeof(hex[1]), "0x%llx", (unsigned long long)dev);
	text[0] = 0;
	if (cfgline_append(text, sizeof(text), &used, "kernel_features_from", ret ? "device" : "get_features") ||
	    cfgline_append(text, sizeof(text), &used, "kernel_features", hex[0]) ||
	    cfgline_append(text, sizeof(text), &used, "kernel_feature_names", kn) ||
	    cfgline_append(text, sizeof(text), &used, "device_flags", hex[1]) ||
	    cfgline_append(text, sizeof(text), &used, "device_flag_names", dn) ||
	    cfgline_append(text, sizeof(text), &used, "commands", cmds))
		return;
	ret = state_write(s->dev_id, "features", text);
	if (ret)
		log_err("ublkb%d: writing state file features: %s", s->dev_id, strerror(-ret));
}

static int setup(struct server *s)
{
	const struct server_config *cfg = s->cfg;
	bool recover = cfg->recover_id >= 0;
	int ret;

	if ((ret = prepare(s)) || (ret = recover ? attach_device(s) : create_device(s)))
		return ret;
	if (recover) {
		if ((ret = open_char_dev(s)))
			return ret;
		step_done(s, "open /dev/ublkcN");
	} else if ((ret = prepare_queues(s))) {
		return ret;
	}
	ret = fetch_queues(s);
	if (ret == -ETIMEDOUT)
		return fail(s, EXIT_TIMEOUT, "ublkb%d: starting queues: not all were ready within "
			    "%llu ms", s->dev_id, (unsigned long long)s->cfg->timeout_ms);
	if (ret)
		return fail(s, EXIT_FAIL, "ublkb%d: starting queues: %s", s->dev_id, strerror(-ret));
	step_done(s, "fetches");
	ret = recover ? ctrl_end_recovery(&s->ctrl, s->dev_id, getpid()) :
			ctrl_start_dev(&s->ctrl, s->dev_id, getpid());
	if (ret)
		return fail(s, exit_code_for(ret) == EXIT_TIMEOUT ? EXIT_TIMEOUT : EXIT_FAIL,
			    "ublkb%d: %s: %s", s->dev_id, recover ? "END_USER_RECOVERY" : "START_DEV",
			    strerror(-ret));
	step_done(s, recover ? "END_USER_RECOVERY" : "START_DEV");
	/* The kernel gives a 1-queue disk mq-deadline, which serializes the
	 * dispatch of every request and halves 4 KiB reads at depth 32; the
	 * server orders nothing, so like loop the device gets none, before
	 * it is said live. A recovered device keeps what it had. */
	if (!recover) {
		ret = device_set_scheduler((uint32_t)s->dev_id, "none");
		if (ret)
			log_info("ublkb%d: IO scheduler left as the kernel chose: setting none: %s",
				 s->dev_id, strerror(-ret));
		else
			step_done(s, "IO scheduler none");
	}
	s->live = true;
	/* an entry not said live is not recovered if its server dies: a new
	 * device is deleted again rather than handed out so; a recovered one
	 * still says "recovering", which a later recovery takes */
	ret = state_write(s->dev_id, "state", "live\n");
	if (ret && !recover)
		return fail(s, EXIT_FAIL, "ublkb%d: writing its state entry: %s; the device is "
			    "deleted again (check %s)", s->dev_id, strerror(-ret), state_dir());
	if (ret)
		log_err("ublkb%d: writing its state entry: %s; it serves, but its entry still says "
			"recovering (check %s)", s->dev_id, strerror(-ret), state_dir());
	if (recover) {
		log_info("ublkb%d: recovered, live again", s->dev_id);
		pool_record("recover", (now_ns() - s->start_ns) / 1000000);
	}
	/* once live: it must not lengthen start-up or recovery */
	note_features(s);
	if (s->io_flusher_err)
		log_info("ublkb%d: the server is not marked as in the device's IO path "
			 "(PR_SET_IO_FLUSHER: %s; it needs CAP_SYS_RESOURCE): on a host short of "
			 "memory, IO to the device may stall", s->dev_id, strerror(-s->io_flusher_err));
	char *shown = devopts_redacted(cfg->stack.base ? cfg->stack.base : cfg->stack.e2b_root);
	log_dbg("ublkb%d: live, %u queue(s) of depth %u over %s", s->dev_id, s->info.nr_hw_queues,
		s->info.queue_depth, shown ? shown : "?");
	free(shown);
	return 0;
}

/* Wait for a stop signal or for the queues to end (device stopped),
 * serving the control socket and refreshing the statistics every second
 * meanwhile. */
static void wait_for_stop(struct server *s)
{
	ctl_server_init(&s->ctl, s->dev_id, s->ctl_fd, s->layer);
	for (;;) {
		struct pollfd p[3 + 1 + CTL_MAX_CLIENTS] = {
			{ .fd = s->sig_fd, .events = POLLIN },
			{ .fd = s->exit_efd, .events = POLLIN },
		};
		unsigned n = 2 + ctl_server_poll_fds(&s->ctl, p + 2);
		uint64_t now = now_ms();

		if (now >= s->stats_due_ms) {
			write_stats(s);
			s->stats_due_ms = now + STATE_STATS_PERIOD_MS;
		}
		int r = poll(p, n, ctl_server_timeout(&s->ctl, (int)(s->stats_due_ms - now)));
		if (r < 0 && errno != EINTR)
			return;
		if (r < 0)
			continue;
		if (p[0].revents & POLLIN) {
			struct signalfd_siginfo si;
			bool got = read(s->sig_fd, &si, sizeof(si)) == sizeof(si);
			/* SIGUSR1: the statistics now, for whoever just did IO */
			if (got && si.ssi_signo == SIGUSR1) {
				s->stats_due_ms = 0;
				continue;
			}
			if (got)
				log_dbg("ublkb%d: signal %u, stopping", s->dev_id, si.ssi_signo);
			return;
		}
		if (p[1].revents & POLLIN) {
			log_dbg("ublkb%d: queues ended, device stopped", s->dev_id);
			return;
		}
		int changed = ctl_server_handle(&s->ctl, p + 2, n - 2);
		if (changed & CTL_HOLD_ENDED)
			for (unsigned i = 0; i < s->started; i++)
				s->queues[i].stall_since_ms = 0;   /* the hold was no stall */
		/* held writes are no hang, and no heartbeat comes meanwhile: say
		 * until when at once */
		if (changed)
			s->stats_due_ms = 0;
	}
}

/* Whether a stop signal came while the device started: then it is not
 * said to be live (ublk-del and shutdown stop a device still starting
 * so, and delete it at once). */
static bool stop_pending(struct server *s)
{
	struct pollfd p = { .fd = s->sig_fd, .events = POLLIN };
	struct signalfd_siginfo si;

	while (poll(&p, 1, 0) == 1 && read(s->sig_fd, &si, sizeof(si)) == sizeof(si))
		if (si.ssi_signo != SIGUSR1)
			return true;
	return false;
}

/* The server is in its device's IO path, as the loop driver's workers
 * are, and is marked as they mark themselves: its allocations do not wait
 * for reclaim to write pages back, which may be its own device's
 * (PF_MEMALLOC_NOIO), and its writes to the cache file are throttled by
 * that file's disk alone, not by the dirty pages of every disk, its own
 * device's among them (PF_LOCAL_THROTTLE). Without it, a host short of
 * memory can stall or deadlock the device. Every thread made after this
 * inherits it, io_uring's workers too; said once the device is live. */
static int mark_io_flusher(void)
{
	return prctl(PR_SET_IO_FLUSHER, 1, 0, 0, 0) ? -errno : 0;
}

int server_run(const struct server_config *cfg)
{
	struct server s = {
		.cfg = cfg, .char_fd = -1, .sig_fd = -1,
		.exit_efd = -1, .ready_efd = -1, .ctl_fd = -1, .lock_fd = -1, .fd_reserve = -1,
		.start_ns = now_ns(),
	};

	s.dev_id = cfg->recover_id;
	sigset_t mask;
	int code, deleted;

	s.ctrl.fd = -1;
	ctl_server_init(&s.ctl, -1, -1, NULL);
	s.io_flusher_err = mark_io_flusher();
	/* Signals go to the signalfd only; queue threads inherit the mask. */
	sigemptyset(&mask);
	sigaddset(&mask, SIGTERM);
	sigaddset(&mask, SIGINT);
	sigaddset(&mask, SIGHUP);
	sigaddset(&mask, SIGUSR1);
	pthread_sigmask(SIG_BLOCK, &mask, NULL);
	signal(SIGPIPE, SIG_IGN);
	s.sig_fd = signalfd(-1, &mask, SFD_CLOEXEC);
	s.exit_efd = eventfd(0, EFD_CLOEXEC);
	s.ready_efd = eventfd(0, EFD_CLOEXEC);
	if (s.sig_fd < 0 || s.exit_efd < 0 || s.ready_efd < 0) {
		code = fail(&s, EXIT_FAIL, "signalfd/eventfd: %s", strerror(errno));
		goto out;
	}
	code = setup(&s);
	if (!code && stop_pending(&s))
		code = fail(&s, EXIT_FAIL, "ublkb%d: stopped while it started (ublk-del, ublk-pool "
			    "shutdown, or a signal)", s.dev_id);
	if (code)
		goto out;
	if (cfg->ready_fd >= 0) {
		int sent = ready_send(cfg->ready_fd, "ready %d", s.dev_id);
		close(cfg->ready_fd);
		if (sent == -EPIPE && cfg->recover_id < 0) {
			code = EXIT_FAIL;
			log_err("ublkb%d: %s", s.dev_id, FRONT_END_GONE);
			goto out;
		}
	} else {
		printf("/dev/ublkb%d\n", s.dev_id);
		fflush(stdout);
	}
	wait_for_stop(&s);
out:
	deleted = teardown(&s);
	return code ? code : deleted;
}
