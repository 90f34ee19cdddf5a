/* ublk-pool: see and clean up every ublk device of the host. */
#include "util/atomic_file.h"
#include "image/cache.h"
#include "util/cli.h"
#include "kernel/ctrl.h"
#include "host/device.h"
#include "devopts.h"
#include "util/exitcodes.h"
#include "util/json.h"
#include "util/log.h"
#include "util/parse.h"
#include "host/pool.h"
#include "spawn.h"
#include "host/state.h"
#include "util/timeutil.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

enum { KEY_JSON = 'j', KEY_CACHES = 0x400, KEY_GRACE, KEY_TEXTFILE, KEY_RECOVER, KEY_INTERVAL, KEY_HANG };

/* seconds a kernel device without a state entry is left alone */
static uint64_t grace_s = POOL_GRACE_S;

static const struct cli_option options[] = {
	{ "json", 'j', NULL, "machine-readable output" },
	{ "recover", KEY_RECOVER, NULL, "reclaim: attach a new server to recoverable devices instead of deleting them" },
	{ "caches", KEY_CACHES, NULL, "reclaim: also remove the caches of the devices it deletes" },
	{ "interval", KEY_INTERVAL, "SEC", "watch: seconds between passes (default 1)" },
	{ "timeout", 't', "SEC", "reclaim, watch, shutdown: deadline per device (default 10)" },
	{ "textfile", KEY_TEXTFILE, "DIR", "metrics: write ublk.prom atomically into DIR (node-exporter)" },
	{ "grace", KEY_GRACE, "SEC", "reclaim, watch: leave devices without a state entry younger than this (default 30)" },
	{ "hang-timeout", KEY_HANG, "SEC", "reclaim --recover, watch: kill and recover a server hung this long (default 120; 0: never)" },
	STATE_DIR_OPTION,
	{ "verbose", 'v', NULL, "more log output" },
	{ 0 },
};

static const struct cli_tool tool = {
	.name = "ublk-pool",
	.synopsis = "list|status|reclaim|watch|shutdown|metrics [OPTIONS]",
	.summary = "Every ublk device of this host, from the kernel and the state directory.\n"
		   "  list     one line per device: id, state, server, name, base\n"
		   "  status   list with IO statistics and cache usage\n"
		   "  reclaim  delete devices whose server died or that no state entry knows, and\n"
		   "           remove stale state entries (--caches: and their caches); idempotent.\n"
		   "           --recover: start a new server for devices whose server died instead\n"
		   "           (their IO waits meanwhile); deletes only what cannot be recovered\n"
		   "  watch    reclaim --recover every --interval until SIGTERM/SIGINT\n"
		   "  shutdown stop every device in parallel within --timeout; adds meanwhile are\n"
		   "           refused\n"
		   "  metrics  Prometheus text format on stdout, or into a node-exporter --textfile DIR",
	.options = options,
	.footer = "Exit codes: 0 ok, 1 failure (some device could not be reclaimed), 2 usage,\n"
		  "4 permission. See ublk-pool(8).\n",
};

static void print_json(const struct pool_dev *devs, int n, bool with_stats)
{
	struct json j;
	json_begin(&j, stdout);
	json_arr_begin(&j, "devices");
	for (int i = 0; i < n; i++) {
		const struct pool_dev *d = &devs[i];
		char path[32];
		snprintf(path, sizeof(path), "/dev/ublkb%u", d->id);
		json_obj_begin(&j, NULL);
		json_u64(&j, "id", d->id);
		json_str(&j, "path", path);
		json_bool(&j, "in_kernel", d->in_kernel);
		json_str(&j, "kernel_state", ctrl_state_name(d->kernel_state));
		json_bool(&j, "has_state", d->has_state);
		json_str(&j, "state", d->has_state ? d->state : NULL);
		json_i64(&j, "pid", d->pid);
		json_bool(&j, "recoverable", d->recoverable);
		json_bool(&j, "server_alive", d->alive);
		json_str(&j, "name", d->name[0] ? d->name : NULL);
		json_str(&j, "base", d->base[0] ? d->base : NULL);
		json_str(&j, "e2b_root", d->e2b_root[0] ? d->e2b_root : NULL);
		json_str(&j, "build", d->e2b_build[0] ? d->e2b_build : NULL);
		json_arr_begin(&j, "layers");
		for (const char *l = d->layers; *l; l += strcspn(l, "\n") + 1) {
			char one[PATH_MAX];
			snprintf(one, sizeof(one), "%.*s", (int)strcspn(l, "\n"), l);
			json_str(&j, NULL, one);
		}
		json_arr_end(&j);
		json_str(&j, "cache", d->cache[0] ? d->cache : NULL);
		json_u64(&j, "size", d->size);
		json_u64(&j, "queues", d->queues);
		json_u64(&j, "depth", d->depth);
		json_u64(&j, "uptime_s", d->uptime_s);
		json_u64(&j, "cache_bytes", d->cache_bytes);
		json_str(&j, "problem", pool_problem(d, grace_s));
		if (with_stats) {
			json_raw(&j, "stats", d->stats[0] ? d->stats : "null");
			json_str(&j, "kernel_features", d->kernel_features[0] ? d->kernel_features : NULL);
			json_str(&j, "device_flags", d->device_flags[0] ? d->device_flags : NULL);
			json_str(&j, "commands", d->commands[0] ? d->commands : NULL);
		}
		json_obj_end(&j);
	}
	json_arr_end(&j);
	json_end(&j);
}

static void print_table(const struct pool_dev *devs, int n, bool with_stats)
{
	printf("%-12s %-9s %-9s %8s %7s %-16s %s\n", "DEVICE", "KERNEL", "STATE", "PID", "UP",
	       "NAME", with_stats ? "READS/WRITES/ERRORS  CACHE  BASE" : "BASE");
	for (int i = 0; i < n; i++) {
		const struct pool_dev *d = &devs[i];
		const char *problem = pool_problem(d, grace_s);
		char dev[24], up[16], pid[24], extra[96] = "", e2b[PATH_MAX + 48];
		snprintf(dev, sizeof(dev), "/dev/ublkb%u", d->id);
		snprintf(up, sizeof(up), d->uptime_s >= 3600 ? "%lluh" : d->uptime_s >= 60 ? "%llum" : "%llus",
			 (unsigned long long)(d->uptime_s >= 3600 ? d->uptime_s / 3600 :
					      d->uptime_s >= 60 ? d->uptime_s / 60 : d->uptime_s));
		snprintf(pid, sizeof(pid), "%d%s", (int)d->pid, d->alive ? "" : "!");
		if (with_stats)
			snprintf(extra, sizeof(extra), "%llu/%llu/%llu  %lluM  ",
				 (unsigned long long)pool_stat(d->stats, "reads"),
				 (unsigned long long)pool_stat(d->stats, "writes"),
				 (unsigned long long)pool_stat(d->stats, "errors"),
				 (unsigned long long)(d->cache_bytes >> 20));
		snprintf(e2b, sizeof(e2b), "%s build %s", d->e2b_root, d->e2b_build);
		printf("%-12s %-9s %-9s %8s %7s %-16s %s%s%s%s\n", dev, ctrl_state_name(d->kernel_state),
		       d->has_state ? d->state : "(none)", pid, d->has_state ? up : "-",
		       d->name[0] ? d->name : "-", extra,
		       d->base[0] ? d->base : d->e2b_root[0] ? e2b : "-",
		       problem ? "  <- " : "", problem ? problem : "");
	}
}

/* Label value: Prometheus escapes backslash, quote and newline. */
static void label(FILE *f, const char *v)
{
	for (; *v; v++) {
		if (*v == '\\' || *v == '"')
			fputc('\\', f);
		if (*v == '\n')
			fputs("\\n", f);
		else
			fputc(*v, f);
	}
}

#define EVENT_BUCKETS 8
static const double event_bounds[EVENT_BUCKETS] = { 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10 };

/* What .events says of one kind of event (add, del, recover). */
struct event_stats {
	const char *name;
	uint64_t count, buckets[EVENT_BUCKETS + 1];   /* the last: past every bound */
	double sum_s;
};

/* One pass over .events for every kind. */
static void read_events(struct event_stats *ev, int kinds)
{
	char line[64], name[16];
	unsigned long long ms;
	int fd = pool_file_open(".events", O_RDONLY, false);
	FILE *f;

	if (fd < 0)
		return;
	if (!(f = fdopen(fd, "r"))) {
		close(fd);
		return;
	}
	while (fgets(line, sizeof(line), f)) {
		if (sscanf(line, "%15s %llu", name, &ms) != 2)
			continue;
		for (struct event_stats *e = ev; e < ev + kinds; e++) {
			if (strcmp(name, e->name))
				continue;
			double s = (double)ms / 1000.0;
			int b = 0;
			while (b < EVENT_BUCKETS && s > event_bounds[b])
				b++;
			e->buckets[b]++;
			e->sum_s += s;
			e->count++;
		}
	}
	fclose(f);
}

static void histogram(FILE *f, const char *metric, const char *help, const struct event_stats *e)
{
	uint64_t cum = 0;

	fprintf(f, "# HELP %s %s\n# TYPE %s histogram\n", metric, help, metric);
	for (int b = 0; b < EVENT_BUCKETS; b++) {
		cum += e->buckets[b];
		fprintf(f, "%s_bucket{le=\"%g\"} %llu\n", metric, event_bounds[b], (unsigned long long)cum);
	}
	fprintf(f, "%s_bucket{le=\"+Inf\"} %llu\n%s_sum %.3f\n%s_count %llu\n", metric,
		(unsigned long long)e->count, metric, e->sum_s, metric, (unsigned long long)e->count);
}

static void counter(FILE *f, const char *metric, const char *help, uint64_t value)
{
	fprintf(f, "# HELP %s %s\n# TYPE %s counter\n%s %llu\n", metric, help, metric, metric,
		(unsigned long long)value);
}

static void device_counter(FILE *f, const struct pool_dev *devs, int n, const char *metric,
			   const char *help, const char *key, bool remote)
{
	fprintf(f, "# HELP %s %s\n# TYPE %s counter\n", metric, help, metric);
	for (int i = 0; i < n; i++) {
		const char *s = devs[i].stats;
		if (!s[0] || (remote && !strstr(s, "\"remote\":")))
			continue;
		fprintf(f, "%s{device=\"ublkb%u\",name=\"", metric, devs[i].id);
		label(f, devs[i].name);
		fprintf(f, "\"} %llu\n", (unsigned long long)pool_stat(s, key));
	}
}

/* Prometheus text exposition format, on stdout or atomically into a
 * node-exporter textfile folder. */
static int metrics(const struct pool_dev *devs, int n, const char *textfile)
{
	static const char *states[] = { "live", "quiesced", "dead", "stale", "orphaned" };
	struct event_stats ev[] = { { .name = "add" }, { .name = "del" }, { .name = "recover" },
				    { .name = "hang" } };
	uint64_t by_state[5] = { 0 };
	char *text = NULL, path[PATH_MAX + 16];
	size_t size = 0;
	FILE *f = open_memstream(&text, &size);

	if (!f)
		return EXIT_FAIL;
	for (int i = 0; i < n; i++) {
		const struct pool_dev *d = &devs[i];
		/* quiesced: IO waits for a recovery */
		int s = !d->in_kernel ? 3 : d->recoverable ? 1 : pool_problem(d, grace_s) ? 4 :
			d->kernel_state == UBLK_S_DEV_LIVE ? 0 :
			d->kernel_state == UBLK_S_DEV_QUIESCED ? 1 : 2;
		by_state[s]++;
	}
	fprintf(f, "# HELP ublk_devices Devices of this host by state.\n# TYPE ublk_devices gauge\n");
	for (int s = 0; s < 5; s++)
		fprintf(f, "ublk_devices{state=\"%s\"} %llu\n", states[s], (unsigned long long)by_state[s]);
	read_events(ev, 4);
	counter(f, "ublk_acquired_total", "Devices added.", ev[0].count);
	counter(f, "ublk_released_total", "Devices deleted.", ev[1].count);
	counter(f, "ublk_recovered_total", "Devices a new server attached to after their server died.",
		ev[2].count);
	counter(f, "ublk_hung_total", "Servers killed by watch or reclaim --recover because they hung.",
		ev[3].count);
	histogram(f, "ublk_add_duration_seconds", "ublk-add until the device is live.", &ev[0]);
	histogram(f, "ublk_recover_duration_seconds", "ublk-serve --recover until the device is live again.",
		  &ev[2]);
	histogram(f, "ublk_delete_duration_seconds", "Deleting a device.", &ev[1]);
	device_counter(f, devs, n, "ublk_device_reads_total", "Read requests.", "reads", false);
	device_counter(f, devs, n, "ublk_device_writes_total", "Write requests.", "writes", false);
	device_counter(f, devs, n, "ublk_device_flushes_total", "Flush requests.", "flushes", false);
	device_counter(f, devs, n, "ublk_device_discards_total", "Discard and write-zeroes requests.",
		       "discards", false);
	device_counter(f, devs, n, "ublk_device_errors_total", "Requests that failed.", "errors", false);
	device_counter(f, devs, n, "ublk_device_read_bytes_total", "Bytes read.", "bytes_read", false);
	device_counter(f, devs, n, "ublk_device_written_bytes_total", "Bytes written.", "bytes_written",
		       false);
	device_counter(f, devs, n, "ublk_remote_chunks_fetched_total", "Chunks fetched from the remote base.",
		       "chunks_fetched", true);
	device_counter(f, devs, n, "ublk_remote_fetched_bytes_total", "Bytes fetched from the remote base.",
		       "bytes_fetched", true);
	device_counter(f, devs, n, "ublk_remote_fetch_errors_total", "Chunk fetches that failed.",
		       "fetch_errors", true);
	device_counter(f, devs, n, "ublk_remote_chunk_cache_hits_total", "Reads served by the chunk cache.",
		       "chunk_cache_hits", true);
	fclose(f);
	if (!textfile) {
		fputs(text, stdout);
		free(text);
		return EXIT_OK;
	}
	/* node-exporter must never read half a file; 0644 because it usually
	 * runs as a user of its own. atomic_write_file never writes through a
	 * name someone planted in DIR, so any folder is safe to write in. */
	snprintf(path, sizeof(path), "%s/ublk.prom", textfile);
	int ret = atomic_write_file(AT_FDCWD, path, text, size, 0644, ATOMIC_FSYNC);
	free(text);
	if (ret) {
		log_err("%s: %s", path, strerror(-ret));
		return EXIT_FAIL;
	}
	return EXIT_OK;
}

/* One piece of work per device, run by run_parallel(). */
struct job {
	pthread_t thread;
	bool on;                /* to run */
	bool threaded;          /* runs in thread (else it ran in line) */
};

/* Run fn on every job that is on, at most max at a time; jobs are size
 * bytes apart and start with their struct job. */
static void run_parallel(void *jobs, size_t size, int n, int max, void *(*fn)(void *))
{
#define JOB(i) ((struct job *)((char *)jobs + (size_t)(i) * size))
	for (int start = 0; start < n; start += max) {
		int end = n - start > max ? start + max : n;
		for (int i = start; i < end; i++) {
			if (!JOB(i)->on)
				continue;
			JOB(i)->threaded = !pthread_create(&JOB(i)->thread, NULL, fn, JOB(i));
			if (!JOB(i)->threaded)
				fn(JOB(i));   /* no thread: in line */
		}
		for (int i = start; i < end; i++)
			if (JOB(i)->threaded)
				pthread_join(JOB(i)->thread, NULL);
	}
#undef JOB
}

struct stopper {
	struct job job;
	uint32_t id;
	uint64_t timeout_ms;
	int ret;
	char why[700];
};

static void *stop_one(void *arg)
{
	struct stopper *s = arg;
	s->ret = device_delete(s->id, s->timeout_ms, true, s->why, sizeof(s->why));
	if (s->ret == -ENODEV)
		s->ret = 0;
	return NULL;
}

/* Stop every device of the pool in parallel within the deadline and clean
 * up stale entries; each stop is reported into j, or on stdout. */
static int stop_all(uint64_t timeout_ms, struct json *j)
{
	struct pool_dev *devs = NULL;
	struct stopper *st = NULL;
	int n, code = EXIT_OK;

	n = pool_scan(&devs);
	st = calloc(n > 0 ? (size_t)n : 1, sizeof(*st));
	if (n < 0 || !st) {
		log_err("scanning devices: %s", strerror(n < 0 ? -n : ENOMEM));
		code = EXIT_FAIL;
		goto out;
	}
	for (int i = 0; i < n; i++) {
		st[i].id = devs[i].id;
		st[i].timeout_ms = timeout_ms;
		st[i].job.on = devs[i].in_kernel;
		if (!devs[i].in_kernel)
			state_remove(devs[i].id);
	}
	/* all at once: each must stop within the one deadline */
	run_parallel(st, sizeof(*st), n, n, stop_one);
	for (int i = 0; i < n; i++) {
		if (!st[i].job.on)
			continue;
		if (st[i].ret) {
			log_err("%s", st[i].why);
			code = EXIT_FAIL;
		}
		if (j) {
			json_obj_begin(j, NULL);
			json_u64(j, "id", st[i].id);
			json_bool(j, "ok", !st[i].ret);
			json_obj_end(j);
		} else if (!st[i].ret) {
			printf("stopped ublkb%u\n", st[i].id);
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
static int shutdown_all(uint64_t timeout_ms, bool json)
{
	uint64_t deadline = now_ms() + timeout_ms;
	struct json j;
	int lock, code, ret;

	ret = pool_set_closed(true);
	if (ret) {
		log_err("marking the pool closed in %s: %s", state_dir(), strerror(-ret));
		return EXIT_FAIL;
	}
	if (json) {
		json_begin(&j, stdout);
		json_arr_begin(&j, "stopped");
	}
	code = stop_all(timeout_ms, json ? &j : NULL);
	lock = pool_lock(true, ms_left(deadline) + timeout_ms);
	if (lock < 0) {
		log_err("adds still in progress after %llu ms (pool lock in %s: %s)",
			(unsigned long long)(now_ms() - deadline + timeout_ms), state_dir(),
			strerror(-lock));
		code = lock == -ETIMEDOUT ? EXIT_TIMEOUT : EXIT_FAIL;
	} else {
		int again = stop_all(timeout_ms, json ? &j : NULL);
		if (!code)
			code = again;
		close(lock);
	}
	if (json) {
		json_arr_end(&j);
		json_end(&j);
	}
	pool_set_closed(false);
	return code;
}

struct reclaim_opts {
	bool caches, recover, json;
	uint64_t timeout_ms;
	uint64_t hang_ms;       /* kill a server hung this long (with recover); 0: never */
};

/* Kill the servers that hang (pool_hung), so that the recovery that
 * follows attaches a new one; the requests they held are reissued to it.
 * Returns how many it killed. */
static int kill_hung(const struct pool_dev *devs, int n, const struct reclaim_opts *o)
{
	int killed = 0;

	for (int i = 0; i < n && o->recover; i++) {
		const struct pool_dev *d = &devs[i];
		char why[160];
		if (!pool_hung(d, o->hang_ms, why, sizeof(why)))
			continue;
		log_err("ublkb%u: %s: killing server %d to recover the device", d->id, why, (int)d->pid);
		if (kill(d->pid, SIGKILL) && errno != ESRCH) {
			log_err("ublkb%u: killing server %d: %s", d->id, (int)d->pid, strerror(errno));
			continue;
		}
		if (wait_pid_gone(d->pid, o->timeout_ms))
			log_err("ublkb%u: server %d still there %llu ms after SIGKILL", d->id, (int)d->pid,
				(unsigned long long)o->timeout_ms);
		uint64_t stalled = pool_stat(d->stats, "stalled_ms");
		pool_record("hang", stalled > d->heartbeat_age_ms ? stalled : d->heartbeat_age_ms);
		killed++;
	}
	return killed;
}

/* The pool now, after killing its hung servers: count, or -errno. */
static int scan_unhung(struct pool_dev **devs, const struct reclaim_opts *o)
{
	int n = pool_scan(devs);

	if (n > 0 && kill_hung(*devs, n, o)) {
		free(*devs);
		*devs = NULL;
		n = pool_scan(devs);
	}
	return n;
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
	else
		snprintf(msg, len, "ublkb%u (%s): recovery failed, left waiting: %s", d->id, why,
			 res.msg);
	return code && code != EXIT_BUSY;
}

struct recovery {
	struct job job;
	const struct pool_dev *d;
	uint64_t timeout_ms;
	int ret;
	char msg[1200];
};

static void *recover_thread(void *arg)
{
	struct recovery *r = arg;
	r->ret = recover_one(r->d, pool_problem(r->d, grace_s), r->timeout_ms, r->msg,
			     sizeof(r->msg));
	return NULL;
}

/* Servers that died together (the OOM killer) come back together: the
 * recoveries run in parallel, RECOVERY_WAVE at a time. */
#define RECOVERY_WAVE 32
static struct recovery *recover_all(const struct pool_dev *devs, int n, uint64_t timeout_ms)
{
	struct recovery *rec = calloc((size_t)n + 1, sizeof(*rec));

	if (!rec)
		return NULL;
	for (int i = 0; i < n; i++)
		rec[i] = (struct recovery){ .job.on = devs[i].recoverable, .d = &devs[i],
					    .timeout_ms = timeout_ms };
	run_parallel(rec, sizeof(*rec), n, RECOVERY_WAVE, recover_thread);
	return rec;
}

static int reclaim(const struct pool_dev *devs, int n, const struct reclaim_opts *o)
{
	struct recovery *rec = o->recover ? recover_all(devs, n, o->timeout_ms) : NULL;
	struct json j;
	int code = EXIT_OK;

	if (o->json) {
		json_begin(&j, stdout);
		json_arr_begin(&j, "actions");
	}
	for (int i = 0; i < n; i++) {
		const struct pool_dev *d = &devs[i];
		const char *why = pool_problem(d, grace_s);
		const char *action = "delete";
		char msg[1200], err[700];
		int ret = 0;
		if (!why)
			continue;
		if (o->recover && d->recoverable) {
			action = "recover";
			ret = rec ? rec[i].ret : 1;
			snprintf(msg, sizeof(msg), "%s", rec ? rec[i].msg : "out of memory: nothing recovered");
		} else if (d->in_kernel) {
			ret = device_delete(d->id, o->timeout_ms, true, err, sizeof(err));
			if (ret == -ENODEV)
				ret = 0;
			snprintf(msg, sizeof(msg), ret ? "ublkb%u (%s): delete failed: %s" :
				 "deleted ublkb%u (%s)", d->id, why, err);
		} else {
			action = "remove-entry";
			state_remove(d->id);
			snprintf(msg, sizeof(msg), "removed the state entry of ublkb%u (%s)", d->id, why);
		}
		if (ret)
			code = EXIT_FAIL;
		if (o->json) {
			json_obj_begin(&j, NULL);
			json_u64(&j, "id", d->id);
			json_str(&j, "problem", why);
			json_str(&j, "action", action);
			json_bool(&j, "ok", !ret);
			json_str(&j, "message", msg);
			json_obj_end(&j);
		} else {
			printf("%s\n", msg);
		}
		if (!ret && o->caches && d->cache[0] && !d->alive && strcmp(action, "recover")) {
			ret = cache_remove(d->cache);
			snprintf(msg, sizeof(msg), ret ? "removing orphaned cache %s: %s" :
				 "removed orphaned cache %s%s", d->cache, ret ? strerror(-ret) : "");
			if (o->json) {
				json_obj_begin(&j, NULL);
				json_u64(&j, "id", d->id);
				json_str(&j, "cache", d->cache);
				json_bool(&j, "ok", !ret);
				json_obj_end(&j);
			} else {
				printf("%s\n", msg);
			}
		}
	}
	if (o->json) {
		json_arr_end(&j);
		json_end(&j);
	}
	fflush(stdout);
	free(rec);
	return code;
}

static volatile sig_atomic_t stop_watch;

static void on_stop(int sig)
{
	(void)sig;
	stop_watch = 1;
}

/* reclaim --recover every interval; a pass prints only when it acts. */
static int watch(struct reclaim_opts *o, uint64_t interval_ms)
{
	struct sigaction sa = { .sa_handler = on_stop };   /* no SA_RESTART: wake the sleep */

	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	o->recover = true;
	while (!stop_watch) {
		struct pool_dev *devs = NULL;
		/* the servers it started are its children: reap those that ended */
		while (waitpid(-1, NULL, WNOHANG) > 0)
			;
		int n = scan_unhung(&devs, o), act = 0;
		for (int i = 0; i < n; i++)
			act |= pool_problem(&devs[i], grace_s) != NULL;
		if (act)
			reclaim(devs, n, o);
		else if (n < 0)
			log_err("scanning devices: %s", strerror(-n));
		free(devs);
		if (!stop_watch)
			poll(NULL, 0, poll_timeout(interval_ms));
	}
	return EXIT_OK;
}

int main(int argc, char **argv)
{
	struct server_config cfg;   /* for the shared --timeout and --state-dir */
	struct pool_dev *devs = NULL;
	struct reclaim_opts ro = { .hang_ms = 120000 };
	uint64_t interval_ms = 1000;
	const char *textfile = NULL;
	struct cli c;
	int key, n, code;

	log_init(argv[0]);
	devopts_defaults(&cfg);
	cli_init(&c, &tool);
	/* "ublk-pool COMMAND [OPTIONS]": options are parsed after the command */
	const char *cmd = argc > 1 && argv[1][0] != '-' ? argv[1] : NULL;
	if (cmd) {
		argc--;
		argv++;
	}
	while ((key = cli_next(&c, argc, argv)) != -1) {
		if (key == CLI_DONE)
			return c.exit_code;
		if (key == KEY_JSON)
			ro.json = true;
		else if (key == KEY_CACHES)
			ro.caches = true;
		else if (key == KEY_RECOVER)
			ro.recover = true;
		else if (key == KEY_INTERVAL) {
			if (parse_seconds(optarg, &interval_ms) || interval_ms < 10 || interval_ms > 3600000)
				return cli_usage_error(&c, "--interval '%s': expected seconds, 0.01 to 3600",
						       optarg);
		}
		else if (key == KEY_HANG) {
			if (parse_seconds(optarg, &ro.hang_ms) || ro.hang_ms > 86400000)
				return cli_usage_error(&c, "--hang-timeout '%s': expected seconds, at most "
						       "86400 (0: never)", optarg);
		}
		else if (key == KEY_TEXTFILE)
			textfile = optarg;
		else if (key == KEY_GRACE) {
			uint64_t ms;
			if (parse_seconds(optarg, &ms) || ms > 86400000)
				return cli_usage_error(&c, "--grace '%s': expected seconds, at most 86400",
						       optarg);
			grace_s = ms / 1000;
		}
		else if (devopts_apply(&c, &cfg, key, optarg) == CLI_DONE)
			return c.exit_code;
	}
	if (!cmd)
		return cli_usage_error(&c, "no command given (list, status, reclaim, watch, shutdown, metrics)");
	if (optind < argc)
		return cli_usage_error(&c, "unexpected argument '%s'", argv[optind]);
	bool is_list = !strcmp(cmd, "list"), is_status = !strcmp(cmd, "status");
	bool is_metrics = !strcmp(cmd, "metrics"), is_watch = !strcmp(cmd, "watch");
	if (!is_list && !is_status && !is_metrics && !is_watch && strcmp(cmd, "reclaim") &&
	    strcmp(cmd, "shutdown"))
		return cli_usage_error(&c, "unknown command '%s' (list, status, reclaim, watch, shutdown, "
				       "metrics)", cmd);
	if (textfile && !is_metrics)
		return cli_usage_error(&c, "--textfile goes with metrics");
	/* a state directory others could have prepared is refused before use */
	if (state_check_dir())
		return EXIT_FAIL;
	if (!strcmp(cmd, "shutdown")) {
		if (geteuid() != 0) {
			log_err("permission denied: shutdown needs root (CAP_SYS_ADMIN)");
			return EXIT_PERM;
		}
		return shutdown_all(cfg.timeout_ms, ro.json);
	}
	is_list |= is_metrics;   /* reads like list */
	if (!is_list && !is_status && geteuid() != 0) {
		log_err("permission denied: %s needs root (CAP_SYS_ADMIN)", cmd);
		return EXIT_PERM;
	}
	ro.timeout_ms = cfg.timeout_ms;
	if (is_watch)
		return watch(&ro, interval_ms);
	n = is_list || is_status ? pool_scan(&devs) : scan_unhung(&devs, &ro);
	if (n < 0) {
		log_err("scanning devices: %s", strerror(-n));
		return EXIT_FAIL;
	}
	if (is_metrics) {
		code = metrics(devs, n, textfile);
	} else if (is_list || is_status) {
		if (ro.json)
			print_json(devs, n, is_status);
		else
			print_table(devs, n, is_status);
		code = EXIT_OK;
	} else {
		code = reclaim(devs, n, &ro);
	}
	free(devs);
	return code;
}
