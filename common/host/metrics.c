/* ublk-pool metrics: the pool's devices, events (.events) and each
 * device's counters in Prometheus' text exposition format. */
#include "host/metrics.h"
#include "kernel/ctrl.h"
#include "util/atomic_file.h"
#include "util/fileio.h"
#include "host/state.h"
#include "util/exitcodes.h"
#include "util/log.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <stddef.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

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

/* Add event name's ms to the kind it belongs to. */
static void count_event(struct event_stats *ev, int kinds, const char *name, uint64_t ms)
{
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

/* The next whole line of f into line (len bytes): false at the end. A
 * line too long for it is skipped whole (its tail is no line of its own),
 * as is one with a '-' (counts only: %llu would take "-1" as a huge one),
 * and a last one without its newline: a tool may be writing it ("add 3"
 * of "add 3000"), and counted now it would be counted again, otherwise. */
static bool next_count_line(FILE *f, char *line, int len)
{
	while (fgets(line, len, f)) {
		bool whole = strchr(line, '\n');
		if (!whole && feof(f))
			return false;
		if (!whole) {
			int c;
			while ((c = getc(f)) != EOF && c != '\n')
				;
		}
		if (whole && !strchr(line, '-'))
			return true;
	}
	return false;
}

/* .events.totals: what earlier folds took out of .events, one line per
 * kind: "NAME COUNT SUM_MS B0 .. B8" (docs/state-dir.md, Pool files). */
static void read_totals(struct event_stats *ev, int kinds)
{
	char line[512], name[16];
	unsigned long long n[2 + EVENT_BUCKETS + 1];
	int fd = pool_file_open(".events.totals", O_RDONLY, false);
	FILE *f = fd >= 0 ? fdopen(fd, "r") : NULL;

	if (!f) {
		if (fd >= 0)
			close(fd);
		return;
	}
	while (next_count_line(f, line, sizeof(line))) {
		if (sscanf(line, "%15s %llu %llu %llu %llu %llu %llu %llu %llu %llu %llu %llu", name,
			   &n[0], &n[1], &n[2], &n[3], &n[4], &n[5], &n[6], &n[7], &n[8], &n[9], &n[10]) != 12)
			continue;
		for (struct event_stats *e = ev; e < ev + kinds; e++) {
			if (strcmp(name, e->name))
				continue;
			e->count += n[0];
			e->sum_s += (double)n[1] / 1000.0;
			for (int b = 0; b <= EVENT_BUCKETS; b++)
				e->buckets[b] += n[2 + b];
		}
	}
	fclose(f);
}

/* One pass over the lines of fd (.events) for every kind. */
static void read_event_lines(int fd, struct event_stats *ev, int kinds)
{
	char line[64], name[16];
	unsigned long long ms;
	int copy = dup(fd);
	FILE *f = copy >= 0 ? fdopen(copy, "r") : NULL;

	if (!f) {
		if (copy >= 0)
			close(copy);
		return;
	}
	rewind(f);
	while (next_count_line(f, line, sizeof(line)))
		if (sscanf(line, "%15s %llu", name, &ms) == 2)
			count_event(ev, kinds, name, ms);
	fclose(f);
}

/* .events grows by a line per add, delete and recovery; past this it is
 * folded into .events.totals, so a year of events reads as fast as a day. */
#define EVENTS_FOLD_BYTES (256 * 1024)

static int write_totals(const struct event_stats *ev, int kinds)
{
	struct atomic_file af = ATOMIC_FILE_INIT;
	int root = state_dir_open(false), ret;

	if (root < 0)
		return root;
	ret = atomic_file_open(&af, root, ".events.totals", 0600);
	for (const struct event_stats *e = ev; !ret && e < ev + kinds; e++) {
		char line[512];
		double ms = e->sum_s * 1000.0 + 0.5;
		int len = snprintf(line, sizeof(line), "%s %llu %llu", e->name, (unsigned long long)e->count,
				   ms < 1.8e19 ? (unsigned long long)ms : 18000000000000000000ull);
		for (int b = 0; b <= EVENT_BUCKETS; b++)
			len += snprintf(line + len, sizeof(line) - (size_t)len, " %llu",
					(unsigned long long)e->buckets[b]);
		line[len++] = '\n';
		ret = write_full(af.fd, line, (size_t)len);
	}
	ret = ret ? (atomic_file_abort(&af), ret) : atomic_file_commit(&af, ATOMIC_DURABLE);
	close(root);
	return ret;
}

/* The events of every kind: the totals and .events, folded first when
 * .events is long. Appenders (pool_record) hold .events shared while they
 * write; the fold holds it exclusive from its reading to its truncation,
 * so no line is lost. A crash between the new totals and the truncation
 * counts that fold's lines twice: metrics are best effort. */
static void read_events(struct event_stats *ev, int kinds)
{
	int fd = pool_file_open(".events", O_RDWR, false);
	struct stat st;

	if (fd >= 0 && !fstat(fd, &st) && st.st_size > EVENTS_FOLD_BYTES && !flock(fd, LOCK_EX)) {
		read_totals(ev, kinds);
		read_event_lines(fd, ev, kinds);
		if (!write_totals(ev, kinds) && ftruncate(fd, 0))
			log_err("folding .events into .events.totals: %s", strerror(errno));
		close(fd);   /* unlocks */
		return;
	}
	read_totals(ev, kinds);
	if (fd >= 0) {
		read_event_lines(fd, ev, kinds);
		close(fd);
	}
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

#define STAT(field) offsetof(struct pool_stats, field)

/* field: STAT(a counter of struct pool_stats) */
static void device_counter(FILE *f, const struct pool_dev *devs, int n, const char *metric,
			   const char *help, size_t field, bool remote)
{
	fprintf(f, "# HELP %s %s\n# TYPE %s counter\n", metric, help, metric);
	for (int i = 0; i < n; i++) {
		const struct pool_stats *st = &devs[i].stat;
		if (!st->valid || (remote && !st->remote))
			continue;
		fprintf(f, "%s{device=\"ublkb%u\",name=\"", metric, devs[i].id);
		label(f, devs[i].name);
		fprintf(f, "\"} %llu\n", (unsigned long long)*(const uint64_t *)((const char *)st + field));
	}
}

int pool_metrics(const struct pool_dev *devs, int n, uint64_t grace_s, const char *textfile)
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
		/* quiesced: IO waits for a recovery; a device whose server is
		 * still exiting counts by its state in the kernel */
		int s = !d->in_kernel ? 3 : d->recoverable ? 1 :
			pool_problem(d, grace_s) && !d->exiting ? 4 :
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
	device_counter(f, devs, n, "ublk_device_reads_total", "Read requests.", STAT(reads), false);
	device_counter(f, devs, n, "ublk_device_writes_total", "Write requests.", STAT(writes), false);
	device_counter(f, devs, n, "ublk_device_flushes_total", "Flush requests.", STAT(flushes), false);
	device_counter(f, devs, n, "ublk_device_discards_total", "Discard and write-zeroes requests.",
		       STAT(discards), false);
	device_counter(f, devs, n, "ublk_device_errors_total", "Requests that failed.", STAT(errors), false);
	device_counter(f, devs, n, "ublk_device_read_bytes_total", "Bytes read.", STAT(bytes_read), false);
	device_counter(f, devs, n, "ublk_device_written_bytes_total", "Bytes written.",
		       STAT(bytes_written), false);
	device_counter(f, devs, n, "ublk_remote_chunks_fetched_total", "Chunks fetched from the remote base.",
		       STAT(chunks_fetched), true);
	device_counter(f, devs, n, "ublk_remote_fetched_bytes_total", "Bytes fetched from the remote base.",
		       STAT(bytes_fetched), true);
	device_counter(f, devs, n, "ublk_remote_fetch_errors_total", "Chunk fetches that failed.",
		       STAT(fetch_errors), true);
	device_counter(f, devs, n, "ublk_remote_chunk_cache_hits_total", "Reads served by the chunk cache.",
		       STAT(chunk_cache_hits), true);
	device_counter(f, devs, n, "ublk_remote_trace_reads_total",
		       "Reads of remote chunks while a --prefetch-trace is replayed.", STAT(trace_reads), true);
	device_counter(f, devs, n, "ublk_remote_trace_hits_total",
		       "Of those, reads of chunks the trace's prefetch brought.", STAT(trace_hits), true);
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
	if (ret == -ENOTDIR || ret == -ENOENT)
		log_err("--textfile %s: %s: give the folder node-exporter's textfile collector reads",
			textfile, ret == -ENOTDIR ? "not a folder" : "no such folder");
	else if (ret)
		log_err("%s: cannot write it: %s", path, strerror(-ret));
	return ret ? EXIT_FAIL : EXIT_OK;
}
