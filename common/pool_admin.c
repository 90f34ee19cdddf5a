/* What ublk-pool does to the pool: shutdown, reclaim (delete what is
 * dead, recover what can be), kill hung servers, watch. */
#include "pool_admin.h"
#include "host/ctlsock.h"
#include "host/device.h"
#include "host/holders.h"
#include "host/state.h"
#include "image/cache.h"
#include "kernel/ctrl.h"
#include "spawn.h"
#include "util/exitcodes.h"
#include "util/fileio.h"
#include "util/log.h"
#include "util/notify.h"
#include "util/parallel.h"
#include "util/timeutil.h"

#include <errno.h>
#include <poll.h>
#include <stdarg.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

const char *pool_action_name(enum pool_action_kind kind)
{
	static const char *names[] = { "stop", "recover", "delete", "remove-entry", "remove-cache",
				       "wait" };
	return (unsigned)kind < sizeof(names) / sizeof(names[0]) ? names[kind] : "?";
}

void pool_report_free(struct pool_report *r)
{
	free(r->actions);
	*r = (struct pool_report){ 0 };
}

/* A new action of r (zeroed but for id and kind), or NULL out of memory. */
static struct pool_action *report_add(struct pool_report *r, uint32_t id, enum pool_action_kind kind)
{
	if (r->n == r->cap) {
		int cap = r->cap ? 2 * r->cap : 16;
		struct pool_action *a = realloc(r->actions, (size_t)cap * sizeof(*a));
		if (!a) {
			log_err("ublkb%u: out of memory: the %s is not reported", id, pool_action_name(kind));
			return NULL;
		}
		r->actions = a;
		r->cap = cap;
	}
	struct pool_action *a = &r->actions[r->n++];
	memset(a, 0, sizeof(*a));
	a->id = id;
	a->kind = kind;
	return a;
}

/* The message of a (NULL: not reported, said already). */
static void say(struct pool_action *a, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void say(struct pool_action *a, const char *fmt, ...)
{
	va_list ap;

	if (!a)
		return;
	va_start(ap, fmt);
	vsnprintf(a->message, sizeof(a->message), fmt, ap);
	va_end(ap);
}

struct stopper {
	struct parallel_job job;
	uint32_t id;
	uint64_t cookie;        /* of the device the scan saw */
	uint64_t deadline;      /* now_ms() clock, the same for every device */
	uint64_t min_ms;        /* at least this long, even past the deadline */
	int ret;
	char why[700];
};

/* Stops running at once, bounded by the file descriptors each holds. */
#define STOP_WAVE 256
/* What a stop started late still gets (or the whole timeout, if
 * shorter): its server's clean stop persists the cache. */
#define STOP_MIN_MS 5000

static void *stop_one(void *arg)
{
	struct stopper *s = arg;
	uint64_t left = ms_left(s->deadline);
	s->ret = device_delete_own(s->id, s->cookie, left > s->min_ms ? left : s->min_ms, true,
				   s->why, sizeof(s->why));
	if (s->ret == -ENODEV)
		s->ret = 0;
	return NULL;
}

/* Stop every device of the pool in parallel within the deadline and clean
 * up stale entries; each stop goes into r. */
static int stop_all(uint64_t timeout_ms, struct pool_report *r)
{
	struct pool_dev *devs = NULL;
	struct stopper *st = NULL;
	int n, code = EXIT_OK;

	n = pool_scan(&devs, 0);
	st = calloc(n > 0 ? (size_t)n : 1, sizeof(*st));
	if (n < 0 || !st) {
		if (n != -EIO)   /* -EIO was said */
			log_err("scanning devices: %s", strerror(n < 0 ? -n : ENOMEM));
		code = EXIT_FAIL;
		goto out;
	}
	uint64_t deadline = deadline_ms(timeout_ms);
	for (int i = 0; i < n; i++) {
		st[i].id = devs[i].id;
		st[i].cookie = devs[i].kernel_cookie;
		st[i].deadline = deadline;
		st[i].min_ms = timeout_ms < STOP_MIN_MS ? timeout_ms : STOP_MIN_MS;
		st[i].job.on = devs[i].in_kernel;
		/* a server still running has its device on the way in or out */
		if (!devs[i].in_kernel && !devs[i].alive)
			pool_remove_entry(&devs[i]);
	}
	/* STOP_WAVE at a time, each holding the control device, a ring and a
	 * pidfd meanwhile, all within the one deadline */
	fd_limit_raise();
	parallel_run(st, sizeof(*st), n, STOP_WAVE, stop_one);
	for (int i = 0; i < n; i++) {
		struct pool_action *a;
		if (!st[i].job.on)
			continue;
		if (st[i].ret) {
			log_err("%s", st[i].why);
			code = EXIT_FAIL;
		}
		if ((a = report_add(r, st[i].id, POOL_STOP))) {
			a->ok = !st[i].ret;
			if (a->ok)
				snprintf(a->message, sizeof(a->message), "stopped ublkb%u", st[i].id);
			else
				snprintf(a->message, sizeof(a->message), "%s", st[i].why);
		}
	}
out:
	free(st);
	free(devs);
	return code;
}

/* Close the pool to new devices and stop every device. The mark comes
 * first, without the pool lock: adds hold that lock while their device
 * starts, and a busy host always has one in flight, so waiting for it
 * first could starve the shutdown. Adds that see the mark when they are
 * done delete their device; once the lock is ours no add is in flight,
 * and a second pass stops what the first could not see yet. */
int pool_shutdown(uint64_t timeout_ms, struct pool_report *r)
{
	uint64_t deadline = now_ms() + timeout_ms;
	int lock, code, mark = pool_close();

	/* stopping the devices matters more than the mark */
	if (mark == -ETIMEDOUT)
		log_err("the pool in %s is not marked closed: its .shutdown stayed locked by "
			 "a shutdown that is ending; adds may start while this one stops devices",
			 state_dir());
	else if (mark < 0) {
		log_err("marking the pool closed in %s: %s", state_dir(), strerror(-mark));
		return EXIT_FAIL;
	}
	code = stop_all(timeout_ms, r);
	/* one deadline for all: an add still under way then deletes its own
	 * device once it is up (it sees the mark) */
	lock = pool_lock(true, ms_left(deadline));
	if (lock < 0) {
		log_err("adds still in progress after %llu ms (pool lock in %s: %s): they delete "
			"their devices once up", (unsigned long long)(now_ms() - deadline + timeout_ms),
			state_dir(), strerror(-lock));
		code = lock == -ETIMEDOUT ? EXIT_TIMEOUT : EXIT_FAIL;
	} else {
		/* what the adds made meanwhile: a stop started late gets its minimum */
		uint64_t left = ms_left(deadline), least = timeout_ms < STOP_MIN_MS ? timeout_ms : STOP_MIN_MS;
		int again = stop_all(left > least ? left : least, r);
		if (!code)
			code = again;
		close(lock);
	}
	pool_reopen(mark);
	return code;
}


/* The mtime of device id's heartbeat (its stats file), in ns; 0 if none. */
static uint64_t heartbeat_mtime(uint32_t id)
{
	struct stat st;

	if (state_stat(id, "stats", &st))
		return 0;
	return (uint64_t)st.st_mtim.tv_sec * 1000000000u + (uint64_t)st.st_mtim.tv_nsec;
}

/* Which servers hang (pool_hung), in hung[] (0: not). A heartbeat is
 * aged by the wall clock: one that only looks old, as after the clock
 * stepped forward, is rewritten within a period; a hung server's is not. */
static void find_hung(const struct pool_dev *devs, int n, const struct reclaim_opts *o, int *hung,
		      char (*why)[160])
{
	uint64_t *seen = calloc(n > 0 ? (size_t)n : 1, sizeof(*seen));
	bool confirm = false;

	for (int i = 0; i < n; i++) {
		hung[i] = o->recover ? pool_hung(&devs[i], o->hang_ms, why[i], sizeof(why[i])) : 0;
		if (hung[i] == POOL_HUNG_HEARTBEAT && seen) {
			seen[i] = heartbeat_mtime(devs[i].id);
			confirm = true;
		}
	}
	if (confirm)
		sleep_ms(2 * STATE_STATS_PERIOD_MS + 500);
	for (int i = 0; confirm && i < n; i++)
		if (hung[i] == POOL_HUNG_HEARTBEAT && heartbeat_mtime(devs[i].id) != seen[i]) {
			log_err("ublkb%u: its heartbeat looked %llu s old, but it goes on (did the clock "
				"step?): not a hang", devs[i].id,
				(unsigned long long)(devs[i].heartbeat_age_ms / 1000));
			hung[i] = 0;
		}
	free(seen);
}

/* Kill the servers that hang (find_hung), so that the recovery that
 * follows attaches a new one; the requests they held are reissued to it.
 * All are killed first, then waited for within one timeout. Returns how
 * many it killed. */
static int kill_hung(const struct pool_dev *devs, int n, const struct reclaim_opts *o)
{
	size_t slots = n > 0 ? (size_t)n : 1;
	int *killed = malloc(slots * sizeof(*killed)), *hung = malloc(slots * sizeof(*hung));
	char (*why)[160] = malloc(slots * sizeof(*why));
	int count = 0;

	if (!killed || !hung || !why) {
		log_err("looking for hung servers: %s", strerror(ENOMEM));
		n = 0;
	}
	find_hung(devs, n, o, hung, why);
	/* a pidfd per server killed until all are waited for: one backend
	 * that hangs can hang a thousand servers */
	fd_limit_raise();
	uint64_t start = now_ms(), deadline = deadline_ms(o->timeout_ms);
	for (int i = 0; i < n; i++) {
		const struct pool_dev *d = &devs[i];
		killed[i] = -1;
		if (!hung[i])
			continue;
		/* killed, it would be a dead server's device, which reclaim
		 * deletes: a stall would cost the sandbox its device and cache */
		if (!d->can_recover) {
			log_err("ublkb%u: %s: not killed, as it could not be recovered (made with "
				"--no-recovery, or its entry cannot start a server): delete it with "
				"ublk-del if it stays so", d->id, why[i]);
			continue;
		}
		/* the pidfd of the process that serves the device, not of one
		 * that took a dead server's pid */
		int pidfd = device_server_pidfd(d->id, d->pid);
		if (pidfd < 0) {
			if (pidfd != -ESRCH)
				log_err("ublkb%u: %s: server %d: %s", d->id, why[i], (int)d->pid,
					strerror(-pidfd));
			continue;
		}
		log_err("ublkb%u: %s: killing server %d to recover the device", d->id, why[i],
			(int)d->pid);
		int ret = pidfd_signal(pidfd, SIGKILL);
		if (ret && ret != -ESRCH) {
			log_err("ublkb%u: killing server %d: %s", d->id, (int)d->pid, strerror(-ret));
			close(pidfd);
			continue;
		}
		uint64_t stalled = d->stat.stalled_ms;
		pool_record("hang", stalled > d->heartbeat_age_ms ? stalled : d->heartbeat_age_ms);
		killed[i] = pidfd;
		count++;
	}
	for (int i = 0; i < n; i++) {
		if (killed[i] < 0)
			continue;
		if (wait_pidfd(killed[i], ms_left(deadline)))
			log_err("ublkb%u: server %d still there %llu ms after SIGKILL", devs[i].id,
				(int)devs[i].pid, (unsigned long long)(now_ms() - start));
		close(killed[i]);
	}
	free(killed);
	free(hung);
	free(why);
	return count;
}

/* Whether devs (n) had id, of this kernel cookie, as a device without a
 * state entry. */
static bool was_orphan(const struct pool_dev *devs, int n, uint32_t id, uint64_t cookie,
		       uint64_t grace_s)
{
	for (int i = 0; i < n; i++)
		if (devs[i].id == id)
			return devs[i].kernel_cookie == cookie && pool_orphan(&devs[i], grace_s);
	return false;
}

/* A device being deleted is, for a moment, in the kernel with no entry and
 * no server (its server removed the entry and ended; the deleter's DEL_DEV
 * is on its way): one without an entry counts only if it had none
 * ORPHAN_SETTLE_MS before too. On 6.1 a second DEL_DEV would wait, with a
 * reference to the device, for the control lock the first holds while it
 * waits for every reference to go. */
#define ORPHAN_SETTLE_MS 2000

static int confirm_orphans(struct pool_dev **devs, int n, const struct reclaim_opts *o)
{
	struct pool_dev *before = *devs;
	int had = 0;

	for (int i = 0; i < n; i++)
		had += pool_orphan(&before[i], o->grace_s);
	if (!had)
		return n;
	sleep_ms(ORPHAN_SETTLE_MS);
	*devs = NULL;
	int now = pool_scan(devs, PID_EXIT_WAIT_MS);
	for (int i = 0; i < now; i++)
		if (pool_orphan(&(*devs)[i], o->grace_s))
			(*devs)[i].unconfirmed = !was_orphan(before, n, (*devs)[i].id,
							     (*devs)[i].kernel_cookie, o->grace_s);
	free(before);
	return now;
}

int pool_scan_unhung(struct pool_dev **devs, const struct reclaim_opts *o)
{
	/* a server killed a moment before must not be taken for a running one */
	int n = pool_scan(devs, PID_EXIT_WAIT_MS);

	if (n > 0 && kill_hung(*devs, n, o)) {
		free(*devs);
		*devs = NULL;
		n = pool_scan(devs, PID_EXIT_WAIT_MS);
	}
	return n > 0 ? confirm_orphans(devs, n, o) : n;
}

/* Whether a server holds device id's entry locked now (one recovering
 * it takes the lock before anything else). */
static bool entry_taken(uint32_t id)
{
	int lock = state_lock(id);

	if (lock >= 0)
		close(lock);
	return lock == -EBUSY;
}

/* Attach a new server to d. 0, or 1 with msg saying why it failed; the
 * device is then left waiting for the next attempt. */
static int recover_one(const struct pool_dev *d, const char *why, uint64_t timeout_ms,
		       char *msg, size_t len)
{
	struct ready_result res;
	pid_t pid;
	int code = spawn_recover(d->id, timeout_ms, &res, &pid);

	if (!code)
		snprintf(msg, len, "recovered ublkb%u (%s): new server pid %d", d->id, why, (int)pid);
	else if (code == EXIT_BUSY)   /* a concurrent recovery won */
		snprintf(msg, len, "%s", res.msg);
	else if (code == EXIT_NO_DEVICE && !ctrl_has_device(d->id))   /* deleted meanwhile (ublk-del) */
		snprintf(msg, len, "ublkb%u (%s): deleted while it was being recovered: %s", d->id,
			 why, res.msg);
	else
		snprintf(msg, len, "ublkb%u (%s): recovery failed, left waiting: %s", d->id, why,
			 res.msg);
	return code && code != EXIT_BUSY && (code != EXIT_NO_DEVICE || ctrl_has_device(d->id));
}

struct recovery {
	struct parallel_job job;
	const struct pool_dev *d;
	uint64_t timeout_ms, grace_s;
	int ret;
	char msg[1200];
};

static void *recover_thread(void *arg)
{
	struct recovery *r = arg;
	r->ret = recover_one(r->d, pool_problem(r->d, r->grace_s), r->timeout_ms, r->msg,
			     sizeof(r->msg));
	return NULL;
}

/* Servers that died together (the OOM killer) come back together: the
 * recoveries run in parallel, RECOVERY_WAVE at a time. */
#define RECOVERY_WAVE 32
static struct recovery *recover_all(const struct pool_dev *devs, int n, uint64_t timeout_ms,
				    uint64_t grace_s)
{
	struct recovery *rec = calloc((size_t)n + 1, sizeof(*rec));

	if (!rec)
		return NULL;
	for (int i = 0; i < n; i++)
		rec[i] = (struct recovery){ .job.on = devs[i].recoverable && !devs[i].exiting,
					    .d = &devs[i], .timeout_ms = timeout_ms,
					    .grace_s = grace_s };
	fd_limit_raise();
	parallel_run(rec, sizeof(*rec), n, RECOVERY_WAVE, recover_thread);
	return rec;
}

int pool_reclaim(const struct pool_dev *devs, int n, const struct reclaim_opts *o,
		 struct pool_report *r)
{
	struct recovery *rec = o->recover ? recover_all(devs, n, o->timeout_ms, o->grace_s) : NULL;
	int code = EXIT_OK;

	for (int i = 0; i < n; i++) {
		const struct pool_dev *d = &devs[i];
		const char *why = pool_problem(d, o->grace_s);
		struct pool_action *a;
		char err[700];
		int ret = 0;
		bool left = false;
		if (!why)
			continue;
		if (d->exiting) {
			/* acted on now, a recovery would lose to its lock, a delete
			 * would race its last IO: the next pass finds it gone */
			ret = 1;
			if ((a = report_add(r, d->id, POOL_WAIT)))
				snprintf(a->message, sizeof(a->message), "ublkb%u (%s): server %d has "
					 "not ended within the wait (a thread still finishing in the "
					 "kernel): left alone; reclaim again once it has", d->id, why,
					 (int)d->pid);
		} else if (o->recover && d->recoverable) {
			ret = rec ? rec[i].ret : 1;
			if ((a = report_add(r, d->id, POOL_RECOVER)))
				snprintf(a->message, sizeof(a->message), "%s",
					 rec ? rec[i].msg : "out of memory: nothing recovered");
		} else if (d->in_kernel && !pool_earlier_entry(why)) {
			/* a recovery (watch, by hand) may have begun since the scan,
			 * seconds ago: a served device, or one whose entry a
			 * recovering server holds, is no dead one */
			int served = entry_taken(d->id) ? 1 : device_is_served(d->id);
			ret = served ? 0 : device_delete_own(d->id, d->kernel_cookie, o->timeout_ms, true,
							     err, sizeof(err));
			if (served < 0) {
				ret = served;
				snprintf(err, sizeof(err), "telling whether a server serves it now: %s",
					 strerror(-served));
			}
			/* deleted by another tool since the scan (its cache is that one's) */
			if ((left = served > 0 || ret == -ENODEV))
				ret = 0;
			a = report_add(r, d->id, left ? POOL_WAIT : POOL_DELETE);
			if (served > 0)
				say(a, "ublkb%u (%s): a server serves it, or recovers it, since it was "
				    "looked at: left alone", d->id, why);
			else if (left)
				say(a, "ublkb%u (%s): gone since it was looked at", d->id, why);
			else if (ret)
				say(a, "ublkb%u (%s): delete failed: %s", d->id, why, err);
			else
				say(a, "deleted ublkb%u (%s)", d->id, why);
		} else if ((ret = pool_remove_entry(d)) == -EBUSY || ret == -ENOENT) {
			/* a server took it since the scan, or it went: the next
			 * pass sees it as it is */
			say(a = report_add(r, d->id, POOL_WAIT), "ublkb%u (%s): its entry is %s since it "
			    "was looked at: left alone", d->id, why,
			    ret == -EBUSY ? "locked by a server" : "gone");
			ret = 0;
			left = true;
		} else {
			a = report_add(r, d->id, POOL_REMOVE_ENTRY);
			if (ret)
				say(a, "ublkb%u (%s): removing its state entry: %s", d->id, why,
				    strerror(-ret));
			else
				say(a, "removed the state entry of ublkb%u (%s)", d->id, why);
		}
		if (ret)
			code = EXIT_FAIL;
		if (a) {
			a->ok = !ret;
			a->problem = why;
		}
		if (!ret && !left && o->caches && d->cache[0] && !d->alive &&
		    !(o->recover && d->recoverable)) {
			char sub[600];
			ret = cache_remove(d->cache, sub, sizeof(sub));
			if ((a = report_add(r, d->id, POOL_REMOVE_CACHE))) {
				a->ok = !ret;
				snprintf(a->cache, sizeof(a->cache), "%s", d->cache);
				snprintf(a->message, sizeof(a->message), ret ? "removing orphaned cache %s: %s" :
					 "removed orphaned cache %s%s", d->cache,
					 !ret ? "" : sub[0] ? sub : strerror(-ret));
			}
		}
	}
	state_sweep_unfinished(o->grace_s);
	free(rec);
	return code;
}

static volatile sig_atomic_t stop_watch;

static void on_stop(int sig)
{
	(void)sig;
	stop_watch = 1;
}

/* Recoveries that failed, tried again after a wait that doubles up to a
 * minute: one refused for good (its image changed, its cache's disk is
 * gone) would otherwise start a server, and say so, every pass. */
struct retry {
	uint32_t id;
	uint64_t cookie;        /* the kernel's: a new device of the id starts afresh */
	unsigned fails;
	uint64_t next_ms;
};
#define RETRIES_KEPT 256
#define RETRY_MAX_MS 60000

static struct retry *retry_of(struct retry *t, const struct pool_dev *d)
{
	for (int i = 0; i < RETRIES_KEPT; i++)
		if (t[i].fails && t[i].id == d->id && t[i].cookie == d->kernel_cookie)
			return &t[i];
	return NULL;
}

/* Leave out of devs (n) the devices whose recovery waits for its retry. */
static int hold_back_retries(struct retry *t, struct pool_dev *devs, int n)
{
	uint64_t now = now_ms();

	for (int i = 0; i < n; i++) {
		struct retry *w = devs[i].recoverable ? retry_of(t, &devs[i]) : NULL;
		if (w && now < w->next_ms)
			devs[i--] = devs[--n];
	}
	return n;
}

static void note_retries(struct retry *t, const struct pool_dev *devs, int n,
			 const struct pool_report *r)
{
	for (int k = 0; k < r->n; k++) {
		const struct pool_action *a = &r->actions[k];
		const struct pool_dev *d = NULL;
		for (int i = 0; i < n && !d; i++)
			d = devs[i].id == a->id ? &devs[i] : NULL;
		if (a->kind != POOL_RECOVER || !d)
			continue;
		struct retry *w = retry_of(t, d);
		if (a->ok) {
			if (w)
				w->fails = 0;
			continue;
		}
		for (int i = 0; i < RETRIES_KEPT && !w; i++)
			w = t[i].fails ? NULL : &t[i];
		if (!w)
			continue;   /* so many failing: tried every pass */
		if (!w->fails)
			*w = (struct retry){ .id = d->id, .cookie = d->kernel_cookie };
		w->fails++;
		uint64_t wait = w->fails > 6 ? RETRY_MAX_MS : 1000ull << (w->fails - 1);
		w->next_ms = now_ms() + (wait < RETRY_MAX_MS ? wait : RETRY_MAX_MS);
	}
}

int pool_watch(struct reclaim_opts *o, uint64_t interval_ms,
	       void (*done)(const struct pool_report *r, void *arg), void *arg)
{
	static struct retry retries[RETRIES_KEPT];
	struct sigaction sa = { .sa_handler = on_stop };   /* no SA_RESTART: wake the sleep */
	bool ready = false;
	int failed = 0;   /* the last pass's scan error, said once while it lasts */

	sigset_t stop, unblocked;

	static const int stop_signals[] = { SIGTERM, SIGINT, SIGHUP };

	sigemptyset(&stop);
	for (size_t i = 0; i < sizeof(stop_signals) / sizeof(stop_signals[0]); i++) {
		struct sigaction was;
		/* a hangup ignored by who started it (nohup) stays so */
		if (stop_signals[i] == SIGHUP && !sigaction(SIGHUP, NULL, &was) && was.sa_handler == SIG_IGN)
			continue;
		sigaction(stop_signals[i], &sa, NULL);
		sigaddset(&stop, stop_signals[i]);
	}
	o->recover = true;
	while (!stop_watch) {
		struct pool_dev *devs = NULL;
		/* the servers it started are its children: reap those that ended */
		while (waitpid(-1, NULL, WNOHANG) > 0)
			;
		int n = pool_scan_unhung(&devs, o), act = 0;
		if (n > 0)
			n = hold_back_retries(retries, devs, n);
		for (int i = 0; i < n; i++)
			act |= pool_problem(&devs[i], o->grace_s) != NULL;
		if (act) {
			struct pool_report r = { 0 };
			pool_reclaim(devs, n, o, &r);
			note_retries(retries, devs, n, &r);
			done(&r, arg);
			pool_report_free(&r);
		} else if (n < 0 && n != -EIO && n != failed) {
			log_err("scanning devices: %s", strerror(-n));
		}
		failed = n < 0 ? n : 0;
		free(devs);
		/* a service manager (Type=notify) learns that watch is up once the
		 * first pass has looked after what a crash left */
		if (!ready)
			ready = notify_service("READY=1") >= 0;
		/* a signal between the check and the sleep would wait a whole
		 * interval: blocked until ppoll lets it in (only here: the
		 * servers it starts must not inherit the mask) */
		pthread_sigmask(SIG_BLOCK, &stop, &unblocked);
		if (!stop_watch) {
			struct timespec ts = { .tv_sec = (time_t)(interval_ms / 1000),
					       .tv_nsec = (long)(interval_ms % 1000) * 1000000 };
			ppoll(NULL, 0, &ts, &unblocked);
		}
		pthread_sigmask(SIG_SETMASK, &unblocked, NULL);
	}
	notify_service("STOPPING=1");
	return EXIT_OK;
}

int pool_save_trace(const char *dev, uint64_t timeout_ms, char *why, size_t whylen)
{
	char line[700];
	uint32_t id;
	int code, fd, ret;

	if ((code = device_resolve(dev, &id, why, whylen)))
		return code;
	uint64_t deadline = deadline_ms(timeout_ms);   /* one, for the connection and the answer */
	fd = ctlsock_connect_why(id, timeout_ms, why, whylen);
	if (fd < 0)
		return exit_code_for(fd);
	ret = ms_left(deadline) ? ctlsock_ask(fd, "save-trace\n", line, sizeof(line), ms_left(deadline)) :
				  -ETIMEDOUT;
	close(fd);
	if (ret > 0 && !strcmp(line, "saved"))
		return 0;
	if (ret > 0 && !strncmp(line, "error ", 6))
		snprintf(why, whylen, "ublkb%u: %s", id, line + 6);
	else if (ret == -ETIMEDOUT)
		snprintf(why, whylen, "ublkb%u: its server did not answer save-trace within %llu ms: "
			 "is it stopped or hung?", id, (unsigned long long)timeout_ms);
	else
		snprintf(why, whylen, "ublkb%u: save-trace: %s", id, ret > 0 ? line :
			 ret ? strerror(-ret) : "the server closed the connection (a server older than "
			 "access traces?)");
	return ret == -ETIMEDOUT ? EXIT_TIMEOUT : EXIT_FAIL;
}
