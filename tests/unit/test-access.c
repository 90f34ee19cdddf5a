/* Host unit tests of the access log (docs/access-trace.md): what a stack
 * records (first touches only, in order, writes told apart), the window
 * by bytes and by time, the trace written on demand and at close, and a
 * replayed trace of other images refused. The prefetch itself needs a
 * server: tests/vm/trace.bats. */
#include "layer_run.h"
#include "image/access_log.h"
#include "image/chunkcache.h"
#include "image/http.h"
#include "image/layer_file.h"
#include "util/timeutil.h"

#include <fcntl.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#define CHUNK 65536u
#define SIZE (16u * CHUNK)

static char dir[] = "/tmp/test-access.XXXXXX";
static char path[4096], base_path[4096], root[4096];
static struct http_source src;      /* the prefetch's only: unused here */

static double cpu_seconds(void)
{
	struct rusage ru;
	getrusage(RUSAGE_SELF, &ru);
	return ru.ru_utime.tv_sec + ru.ru_stime.tv_sec + (ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

static struct layer *open_base(void)
{
	struct layer *base = NULL;
	int fd = open(base_path, O_RDWR | O_CREAT | O_TRUNC, 0600);
	CHECK(fd >= 0 && !ftruncate(fd, SIZE), "base file");
	if (fd >= 0)
		close(fd);
	CHECK(!layer_file_open(base_path, false, &base), "open base");
	return base;
}

/* A log recording to path over a base file, with one registered image. */
static struct layer *recording(struct chunk_image *ci, uint64_t ms, uint64_t bytes)
{
	struct access_log_opts o = { .record_path = path, .record_ms = ms, .record_bytes = bytes,
				     .label = "unit" };
	struct access_log *a = NULL;
	struct layer *top = NULL;
	char why[600] = "";

	CHECK(!chunk_image_open(ci, root, "http://h.invalid/img", "\"v1\"", SIZE, CHUNK, 1 << 20, why,
				sizeof(why)), "chunk image: %s", why);
	CHECK(!access_log_new(&o, &a, why, sizeof(why)), "new: %s", why);
	CHECK(access_log_image(a, TRACE_BASE, &src, ci) == 0, "first image is 0");
	CHECK(!access_log_attach(a, open_base(), &top, why, sizeof(why)), "attach: %s", why);
	return top;
}

static struct access_log *log_of(struct layer *top)
{
	return (struct access_log *)top;        /* the log is its layer */
}

static void test_record(void)
{
	struct chunk_image ci;
	struct layer *top = recording(&ci, 60000, 0);
	struct access_trace t;
	char why[600], stats[1024];
	static char block[4096];

	access_note(log_of(top), 0, 5, false);
	access_note(log_of(top), 0, 2, false);
	access_note(log_of(top), 0, 5, false);          /* not a first touch */
	access_note(log_of(top), 0, SIZE / CHUNK, false);       /* past the image: ignored */
	access_note(log_of(top), 3, 1, false);          /* no such image: ignored */
	CHECK(run(top, LAYER_WRITE, 9 * CHUNK + 4096, 4096, block) == 4096, "write through the log");
	CHECK(run(top, LAYER_WRITE, 2 * CHUNK, 4096, block) == 4096, "write to a read chunk");
	CHECK(run(top, LAYER_READ, 2 * CHUNK, 4096, block) == 4096, "read through the log");
	CHECK(layer_stack_stats(top, stats, sizeof(stats)) > 0 &&
	      strstr(stats, "\"trace_recording\":true,\"trace_recorded\":3"), "stats: %s", stats);

	CHECK(!access_log_save_now(top, why, sizeof(why)), "save now: %s", why);
	CHECK(!trace_load(path, &t, why, sizeof(why)), "load: %s", why);
	CHECK(t.n == 3, "%zu entries, expected 3", t.n);
	if (t.n == 3) {
		CHECK(t.entries[0].chunk == 5 && !t.entries[0].write, "first: chunk 5 read");
		CHECK(t.entries[1].chunk == 2 && !t.entries[1].write, "second: chunk 2 read");
		CHECK(t.entries[2].chunk == 9 && t.entries[2].write, "third: chunk 9 written");
	}
	CHECK(t.nimages == 1 && t.images[0].role == TRACE_BASE && t.images[0].size == SIZE &&
	      t.images[0].chunk_size == CHUNK, "image line");
	CHECK(!strcmp(t.images[0].identity, strrchr(ci.dir, '/') + 1), "identity is the cache key");
	CHECK(!strcmp(t.label, "unit"), "label %s", t.label);
	trace_free(&t);

	/* recorded after the save: the close writes it too */
	access_note(log_of(top), 0, 7, false);
	layer_close(top);
	CHECK(!trace_load(path, &t, why, sizeof(why)) && t.n == 4, "trace at close: %s", why);
	trace_free(&t);
	chunk_image_close(&ci);
}

static void test_windows(void)
{
	struct chunk_image ci;
	struct access_trace t;
	char why[600];

	unlink(path);
	/* two chunks' bytes: the third touch ends the window */
	struct layer *top = recording(&ci, 60000, 2 * CHUNK);
	for (uint64_t c = 0; c < 4; c++)
		access_note(log_of(top), 0, c, false);
	/* the window's end writes the trace while the device lives on */
	uint64_t end = now_ms() + 10000;
	while (access(path, F_OK) && now_ms() < end)
		sleep_ms(10);
	CHECK(!trace_load(path, &t, why, sizeof(why)) && t.n == 2, "byte window: %s", why);
	trace_free(&t);
	layer_close(top);
	chunk_image_close(&ci);
	unlink(path);

	/* an open window costs no CPU while nothing happens: the thread
	 * that ends it sleeps until then */
	top = recording(&ci, 60000, 0);
	double before = cpu_seconds();
	sleep_ms(300);
	double used = cpu_seconds() - before;
	CHECK(used < 0.1, "%.3f s of CPU in 300 ms of an idle recording", used);
	layer_close(top);
	chunk_image_close(&ci);
	unlink(path);

	/* 50 ms: a touch after it is not recorded */
	top = recording(&ci, 50, 0);
	access_note(log_of(top), 0, 1, false);
	sleep_ms(120);
	access_note(log_of(top), 0, 2, false);
	end = now_ms() + 10000;
	while (access(path, F_OK) && now_ms() < end)
		sleep_ms(10);
	CHECK(!trace_load(path, &t, why, sizeof(why)) && t.n == 1, "time window: %s", why);
	trace_free(&t);
	layer_close(top);
	chunk_image_close(&ci);
}

static void test_refusals(void)
{
	struct chunk_image ci, other;
	struct access_log *a = NULL;
	struct layer *top, *base;
	char why[600] = "", trace2[4200];

	/* a trace of this image, then a stack of another version */
	top = recording(&ci, 60000, 0);
	access_note(log_of(top), 0, 1, false);
	layer_close(top);
	CHECK(!chunk_image_open(&other, root, "http://h.invalid/img", "\"v2\"", SIZE, CHUNK, 1 << 20,
				why, sizeof(why)), "other version: %s", why);
	struct access_log_opts o = { .replay = path };
	CHECK(!access_log_new(&o, &a, why, sizeof(why)), "replay log: %s", why);
	CHECK(access_log_image(a, TRACE_BASE, &src, &other) == 0, "register");
	base = open_base();
	CHECK(access_log_attach(a, base, &top, why, sizeof(why)) == -EINVAL, "other version accepted");
	CHECK(strstr(why, "a trace of other images") != NULL, "why: %s", why);
	layer_close(base);
	access_log_free(a);

	/* the same version replays (its fetches fail at once: src has no
	 * size, so every range is outside it) */
	CHECK(!access_log_new(&o, &a, why, sizeof(why)), "replay log: %s", why);
	CHECK(access_log_image(a, TRACE_BASE, &src, &ci) == 0, "register");
	CHECK(!access_log_attach(a, open_base(), &top, why, sizeof(why)), "replay: %s", why);
	CHECK(access_log_save_now(top, why, sizeof(why)) == -ENOENT, "save without recording");
	layer_close(top);

	/* a missing trace file is named */
	snprintf(trace2, sizeof(trace2), "%s/none", dir);
	o.replay = trace2;
	CHECK(access_log_new(&o, &a, why, sizeof(why)) == -ENOENT && strstr(why, trace2), "why: %s", why);
	chunk_image_close(&ci);
	chunk_image_close(&other);
}

int main(void)
{
	if (!mkdtemp(dir) || io_uring_queue_init(16, &ring, 0)) {
		fprintf(stderr, "setup failed\n");
		return 2;
	}
	snprintf(path, sizeof(path), "%s/trace", dir);
	snprintf(base_path, sizeof(base_path), "%s/base", dir);
	snprintf(root, sizeof(root), "%s/chunks", dir);
	src.url = (char *)"http://h.invalid/img";
	test_record();
	test_windows();
	test_refusals();
	io_uring_queue_exit(&ring);
	char cmd[4200];
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	if (system(cmd))
		fprintf(stderr, "could not remove %s\n", dir);
	return check_summary();
}
