/* Option values, the state entry's config encoding and the credentials
 * that travel apart from argv (issue 11: findings 6, 10, 11, 13). */
#include "util/cfgline.h"
#include "devconfig.h"
#include "devopts.h"
#include "host/pool.h"
#include "host/state.h"
#include "pool_admin.h"
#include "util/exitcodes.h"
#include "kernel/ctrl.h"
#include "util/json.h"
#include "util/json_read.h"
#include "util/log.h"
#include "util/parallel.h"
#include "util/parse.h"
#include "util/progress.h"
#include "util/timeutil.h"
#include "check.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

struct seen {
	char keys[8][64];
	char values[8][256];
	int n;
};

static int collect(const char *key, const char *value, void *arg)
{
	struct seen *s = arg;
	if (s->n == 8)
		return -E2BIG;
	snprintf(s->keys[s->n], sizeof(s->keys[0]), "%s", key);
	snprintf(s->values[s->n], sizeof(s->values[0]), "%s", value);
	s->n++;
	return 0;
}

static int parse_text(const char *text, struct seen *s, unsigned *bad)
{
	char buf[1024];
	size_t len = strlen(text);
	memcpy(buf, text, len + 1);
	memset(s, 0, sizeof(*s));
	return cfgline_parse(buf, len, collect, s, bad);
}

static void test_encoder(void)
{
	char buf[64];
	size_t used = 0;

	CHECK(!cfgline_append(buf, sizeof(buf), &used, "base", "/img"), "plain value");
	CHECK(!cfgline_append(buf, sizeof(buf), &used, "cache", ""), "empty value");
	CHECK(!strcmp(buf, "base=/img\ncache=\n"), "encoded: %s", buf);
	/* the finding: a newline in a --cache path became a serve_arg line */
	CHECK(cfgline_append(buf, sizeof(buf), &used, "cache", "/c\nserve_arg=/dev/sda") == -EINVAL,
	      "a newline is refused");
	CHECK(cfgline_append(buf, sizeof(buf), &used, "cache", "/c\r") == -EINVAL, "CR is refused");
	CHECK(cfgline_append(buf, sizeof(buf), &used, "cache", "/c\x7f") == -EINVAL, "DEL is refused");
	CHECK(cfgline_append(buf, sizeof(buf), &used, "cache", "/c\t") == -EINVAL, "TAB is refused");
	CHECK(cfgline_append(buf, sizeof(buf), &used, "a=b", "x") == -EINVAL, "'=' in a key");
	CHECK(cfgline_append(buf, sizeof(buf), &used, "", "x") == -EINVAL, "empty key");
	CHECK(cfgline_append(buf, sizeof(buf), &used, "k", "01234567890123456789012345678901234567890123456789")
	      == -ENOSPC, "no room");
	CHECK(!strcmp(buf, "base=/img\ncache=\n"), "refusals leave the buffer: %s", buf);
	CHECK(used == strlen(buf), "used %zu", used);
	CHECK(cfgline_has_control("caf\xc3\xa9", NULL) == false, "UTF-8 is no control character");
}

/* The lines a reader compares: its keys, in order; a prefix of a key, a
 * line without '=' and a last line without its newline as they come. */
static void test_select(void)
{
	static const char *const keys[] = { "size", "file", NULL };
	char out[64];

	cfgline_select("size=1\nremote=2 x\nfile=3 4\nfiles=5\nsize\nfile=6", keys, out, sizeof(out));
	CHECK(!strcmp(out, "size=1\nfile=3 4\nfile=6\n"), "selected: '%s'", out);
	cfgline_select("remote=1\n", keys, out, sizeof(out));
	CHECK(!strcmp(out, ""), "none: '%s'", out);
	cfgline_select("size=123456789\nfile=123456789\n", keys, out, 20);
	CHECK(!strcmp(out, "size=123456789\n"), "a line that does not fit is left out: '%s'", out);
}

static void test_decoder(void)
{
	struct seen s;
	unsigned bad = 0;

	CHECK(!parse_text("base=/img\nserve_arg=--base\nserve_arg=/a=b\nempty=\n", &s, &bad), "good file");
	CHECK(s.n == 4 && !strcmp(s.keys[2], "serve_arg") && !strcmp(s.values[2], "/a=b") &&
	      !strcmp(s.values[3], ""), "values split at the first '='");
	CHECK(!parse_text("", &s, &bad) && s.n == 0, "empty file");
	CHECK(parse_text("base=/img\ngarbage\n", &s, &bad) == -EINVAL && bad == 2, "line without '='");
	CHECK(s.n == 0, "nothing is taken from a malformed file");
	CHECK(parse_text("base=/img\nserve_arg=/x", &s, &bad) == -EINVAL && bad == 2,
	      "a file cut short (no final newline)");
	CHECK(parse_text("base=/img\x01\n", &s, &bad) == -EINVAL && bad == 1, "control character");
	CHECK(parse_text("Base=/img\n", &s, &bad) == -EINVAL, "key outside a-z0-9_.");
	CHECK(parse_text("=/img\n", &s, &bad) == -EINVAL, "empty key");
	CHECK(parse_text("a\r=b\n", &s, &bad) == -EINVAL, "CR in a key");
	char nul[] = "a=b\0c\n";
	memset(&s, 0, sizeof(s));
	CHECK(cfgline_parse(nul, sizeof(nul) - 1, collect, &s, &bad) == -EINVAL, "NUL inside a value");

	/* round trip through the encoder */
	char buf[256];
	size_t used = 0;
	cfgline_append(buf, sizeof(buf), &used, "serve_arg", "--cache");
	cfgline_append(buf, sizeof(buf), &used, "serve_arg", "/dir with space/c=1");
	CHECK(!parse_text(buf, &s, &bad) && s.n == 2 && !strcmp(s.values[1], "/dir with space/c=1"),
	      "round trip");
}

static void test_limits(void)
{
	uint64_t ms;

	CHECK(poll_timeout(0) == 0, "0");
	CHECK(poll_timeout(1500) == 1500, "small");
	/* the finding: 4294967.346 s became 50 ms, 30 days became -1 (forever) */
	CHECK(poll_timeout(4294967346ull) == INT_MAX, "2^32 ms + 50 is capped, not wrapped");
	CHECK(poll_timeout(30ull * 86400 * 1000) == INT_MAX, "30 days is capped, not negative");
	CHECK(poll_timeout(UINT64_MAX) == INT_MAX, "max");
	CHECK(deadline_ms(UINT64_MAX) == UINT64_MAX, "a deadline saturates");
	CHECK(deadline_ms(1000) >= now_ms() + 999, "a deadline");
	CHECK(!parse_seconds("4294967.346", &ms) && ms == 4294967346ull, "parsed in full");
	CHECK(!parse_seconds("2.5", &ms) && ms == 2500, "fraction");
	CHECK(!parse_seconds(".5", &ms) && ms == 500, "a fraction alone");
	CHECK(!parse_seconds("7", &ms) && ms == 7000, "whole seconds");
	CHECK(!parse_seconds("0.0015", &ms) && ms == 2, "rounded to a millisecond");
	CHECK(!parse_seconds("1.23449999", &ms) && ms == 1234, "digits past a tenth of a ms ignored");
	CHECK(!parse_seconds("31536000", &ms) && ms == 31536000000ull, "a year");
	CHECK(parse_seconds("31536001", &ms) == -EINVAL, "past a year");
	CHECK(parse_seconds("0x10", &ms) == -EINVAL, "hex");
	CHECK(parse_seconds("1e3", &ms) == -EINVAL, "exponent");
	CHECK(parse_seconds(".", &ms) == -EINVAL, "a dot alone");
	CHECK(parse_seconds("", &ms) == -EINVAL, "nothing");
	CHECK(parse_seconds("-1", &ms) == -EINVAL, "negative");
	CHECK(parse_seconds("1.5s", &ms) == -EINVAL, "a unit");
}

static void test_names(void)
{
	CHECK(!devopts_name_problem("sandbox-17"), "plain name");
	CHECK(!devopts_name_problem("ublkb3x"), "not a device");
	CHECK(!devopts_name_problem("ublk"), "not a device");
	CHECK(devopts_name_problem("ublkb3"), "ublkb3 reads as device 3");
	CHECK(devopts_name_problem("ublkc12"), "ublkc12 reads as device 12");
	CHECK(devopts_name_problem("3"), "an id");
	CHECK(devopts_name_problem(""), "empty");
	CHECK(devopts_name_problem("a/b"), "slash");
	CHECK(devopts_name_problem("/dev/ublkb3"), "a device path");
	CHECK(devopts_name_problem("-x"), "an option");
	CHECK(devopts_name_problem(".x"), "hidden");
	CHECK(devopts_name_problem("a\nb"), "newline");
	char longname[66];
	memset(longname, 'a', 65);
	longname[65] = 0;
	CHECK(devopts_name_problem(longname), "65 bytes");
	longname[64] = 0;
	CHECK(!devopts_name_problem(longname), "64 bytes");
}

static void test_secrets(void)
{
	const char *url = "https://user:pass@example.com/img.raw?X-Amz-Signature=secret";
	const char *layer = "http://example.com/d1.diff?sig=s2";
	struct server_config cfg, back;
	char text[4096], why[300];
	char *red;
	int n;

	unsetenv("UBLK_HTTP_AUTH");
	devopts_defaults(&cfg);
	cfg.stack.base = url;
	cfg.stack.layers[0] = "/local/d0.diff";
	cfg.stack.layers[1] = layer;
	cfg.stack.n_layers = 2;
	setenv("UBLK_HTTP_AUTH", "Bearer tok", 1);
	n = devopts_secrets(&cfg, text, sizeof(text));
	CHECK(n > 0 && strstr(text, "base=https://user:pass@example.com/img.raw?X-Amz-Signature=secret\n")
	      && strstr(text, "layer.1=http://example.com/d1.diff?sig=s2\n") && !strstr(text, "layer.0")
	      && strstr(text, "auth=Bearer tok\n"), "secrets: %s", text);

	/* argv and config carry the redacted forms only */
	char *argv[DEVOPTS_MAX_ARGS + 1];
	int argc = 0;
	devopts_to_argv(&cfg, argv, &argc);
	for (int i = 0; i < argc; i++)
		CHECK(!strstr(argv[i], "pass") && !strstr(argv[i], "secret") && !strstr(argv[i], "s2"),
		      "argv %d: %s", i, argv[i]);

	/* the other side: redacted options plus the secrets give the full URLs */
	unsetenv("UBLK_HTTP_AUTH");
	devopts_defaults(&back);
	red = devopts_redacted(url);
	back.stack.base = red;
	back.stack.layers[0] = "/local/d0.diff";
	back.stack.layers[1] = "http://example.com/d1.diff?...";
	back.stack.n_layers = 2;
	CHECK(!devopts_apply_secrets(&back, text, (size_t)n, why, sizeof(why)), "apply: %s", why);
	CHECK(!strcmp(back.stack.base, url), "base %s", back.stack.base);
	CHECK(!strcmp(back.stack.layers[1], layer), "layer %s", back.stack.layers[1]);
	CHECK(getenv("UBLK_HTTP_AUTH") && !strcmp(getenv("UBLK_HTTP_AUTH"), "Bearer tok"), "auth");

	/* secrets of another URL are refused */
	char other[] = "base=https://u:p@evil.example/img\n";
	devopts_defaults(&back);
	back.stack.base = red;
	CHECK(devopts_apply_secrets(&back, other, strlen(other), why, sizeof(why)) == 2 &&
	      strstr(why, "another URL"), "mismatch: %s", why);
	char oob[] = "layer.5=http://x/y?z\n";
	CHECK(devopts_apply_secrets(&back, oob, strlen(oob), why, sizeof(why)) == 2, "no such layer");
	char bad[] = "base\n";
	CHECK(devopts_apply_secrets(&back, bad, strlen(bad), why, sizeof(why)) == 2, "malformed");
	free(red);

	/* no credentials: no secrets */
	devopts_defaults(&cfg);
	cfg.stack.base = "/img";
	unsetenv("UBLK_HTTP_AUTH");
	CHECK(devopts_secrets(&cfg, text, sizeof(text)) == 0, "none");
	/* with --auth-file, the file is read again: the environment is not kept */
	setenv("UBLK_HTTP_AUTH", "tok", 1);
	cfg.stack.auth_file = "/etc/token";
	CHECK(devopts_secrets(&cfg, text, sizeof(text)) == 0, "auth-file wins");
	unsetenv("UBLK_HTTP_AUTH");
}

struct numbers {
	char seen[512];
};

static int note_number(const char *path, uint64_t v, void *arg)
{
	struct numbers *n = arg;
	size_t used = strlen(n->seen);
	snprintf(n->seen + used, sizeof(n->seen) - used, "%s=%llu ", path, (unsigned long long)v);
	return 0;
}

static void test_human_bytes(void)
{
	static const struct { uint64_t v; const char *want; } cases[] = {
		{ 0, "0 B" }, { 1023, "1023 B" }, { 1536, "1.5 KiB" }, { 27ull << 20, "27.0 MiB" },
		{ 3ull << 30, "3.0 GiB" }, { UINT64_MAX, "16.0 EiB" },
	};
	char buf[24];
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		progress_bytes(cases[i].v, buf, sizeof(buf));
		CHECK(!strcmp(buf, cases[i].want), "%llu: %s", (unsigned long long)cases[i].v, buf);
	}
}

/* Strings are bytes (paths): what is not UTF-8 shows as U+FFFD, so the
 * document stays JSON; UTF-8 passes as it is. */
static void test_json_utf8(void)
{
	static const struct { const char *in, *want; } cases[] = {
		{ "caf\xc3\xa9", "{\"p\":\"caf\xc3\xa9\"}\n" },
		{ "caf\xe9", "{\"p\":\"caf\\ufffd\"}\n" },
		{ "\xe2\x82", "{\"p\":\"\\ufffd\\ufffd\"}\n" },           /* cut short */
		{ "\xc0\xaf", "{\"p\":\"\\ufffd\\ufffd\"}\n" },           /* overlong */
		{ "\xed\xa0\x80", "{\"p\":\"\\ufffd\\ufffd\\ufffd\"}\n" }, /* a surrogate */
		{ "\xf4\x90\x80\x80", "{\"p\":\"\\ufffd\\ufffd\\ufffd\\ufffd\"}\n" }, /* past U+10FFFF */
		{ "\xf0\x9f\x98\x80!", "{\"p\":\"\xf0\x9f\x98\x80!\"}\n" },
		{ "a\"\x01", "{\"p\":\"a\\\"\\u0001\"}\n" },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char *text = NULL;
		size_t len = 0;
		FILE *f = open_memstream(&text, &len);
		struct json j;

		json_begin(&j, f);
		json_str(&j, "p", cases[i].in);
		json_end(&j);
		fclose(f);
		CHECK(!strcmp(text, cases[i].want), "case %zu: %s", i, text);
		free(text);
	}
}

/* Statistics files are read back strictly: one object, numbers by path. */
static void test_json_read(void)
{
	static const char *bad[] = {
		"", "[]", "1", "{", "{\"a\":1", "{\"a\":1}x", "{\"a\":1,}", "{\"a\" 1}", "{a:1}",
		"{\"a\":01}", "{\"a\":-}", "{\"a\":1.}", "{\"a\":1e}", "{\"a\":\"x}", "{\"a\":\"\x01\"}",
		"{\"a\":\"\\q\"}", "{\"a\":\"\\u12g4\"}", "{\"a\":tru}", "{\"a\":[1,]}", "{\"a\":1}{}",
		"{\"a\":[[[[[[[[[1]]]]]]]]]}",
	};
	struct numbers n = { "" };

	CHECK(!json_read_numbers(" {\"reads\":12,\"lat\":{\"p99\":7,\"avg\":1.5},\"q\":[{\"x\":3}],"
				 "\"neg\":-4,\"big\":18446744073709551616,\"max\":18446744073709551615,"
				 "\"s\":\"a\\\"b\\u00e9\",\"t\":true,\"n\":null,\"e\":{}}\n", note_number, &n),
	      "valid object");
	CHECK(!strcmp(n.seen, "reads=12 lat.p99=7 max=18446744073709551615 "), "numbers: %s", n.seen);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		CHECK(json_read_numbers(bad[i], note_number, &n) == -EINVAL, "refused: %s", bad[i]);
}

/* Every option a device can have survives its state entry: written as
 * format 2, and as format 1's serve_arg lines, both read back equal. */
static void check_same(const struct server_config *a, const struct server_config *b, const char *what)
{
#define SAME_STR(f) CHECK((!a->f && !b->f) || (a->f && b->f && !strcmp(a->f, b->f)), "%s: " #f, what)
#define SAME(f) CHECK(a->f == b->f, "%s: " #f, what)
	SAME_STR(stack.base); SAME_STR(stack.cache); SAME_STR(stack.inject); SAME_STR(name);
	SAME_STR(stack.chunk_cache); SAME_STR(stack.auth_file);
	SAME_STR(stack.record_access); SAME_STR(stack.prefetch_trace);
	SAME(stack.record_ms); SAME(stack.record_bytes); SAME(stack.prefetch_connections);
	SAME(stack.n_layers); SAME(stack.read_only); SAME(no_recovery); SAME(queues); SAME(depth);
	SAME(timeout_ms); SAME(stack.size); SAME(stack.chunk_size); SAME(stack.chunk_cache_limit);
	SAME(stack.http_timeout_ms); SAME(stack.http_retries); SAME(stack.insecure);
	SAME(stack.prefetch); SAME(stack.readahead); SAME(want_id); SAME(stack.no_frame_cache);
	for (unsigned i = 0; i < a->stack.n_layers && i < b->stack.n_layers; i++)
		SAME_STR(stack.layers[i]);
#undef SAME
#undef SAME_STR
}

static void test_saved_config(void)
{
	char dir[] = "/tmp/test-parse.XXXXXX", path[64], why[512] = "", cmd[128];
	struct server_config cfg, back;
	char *args[DEVOPTS_MAX_ARGS + 1];
	int argc = 0;

	CHECK(mkdtemp(dir) != NULL, "mkdtemp");
	snprintf(path, sizeof(path), "%s/state", dir);
	state_set_dir(path);
	devopts_defaults(&cfg);
	cfg.stack.base = "/srv/base.img";
	cfg.stack.layers[cfg.stack.n_layers++] = "/srv/d1.diff";
	cfg.stack.layers[cfg.stack.n_layers++] = "/srv/d 2=x.diff";
	cfg.stack.cache = "/var/lib/c.cache";
	cfg.stack.inject = "delay-read=3000@0-4K";
	cfg.name = "sb-17";
	cfg.stack.read_only = true;
	cfg.no_recovery = true;
	cfg.queues = 3;
	cfg.depth = 64;
	cfg.timeout_ms = 12500;
	cfg.stack.size = 1 << 20;
	cfg.stack.chunk_size = 1 << 20;
	cfg.stack.chunk_cache = "/var/cache/chunks";
	cfg.stack.chunk_cache_limit = 1 << 30;
	cfg.stack.http_timeout_ms = 1500;
	cfg.stack.http_retries = 0;
	cfg.stack.auth_file = "/etc/token";
	cfg.stack.insecure = true;
	cfg.stack.prefetch = true;
	cfg.stack.no_frame_cache = true;
	cfg.stack.readahead = 4;
	cfg.stack.record_access = "/var/lib/boot.trace";
	cfg.stack.record_ms = 30000;
	cfg.stack.record_bytes = 1 << 28;
	cfg.stack.prefetch_trace = "/srv/earlier.trace";
	cfg.stack.prefetch_connections = 3;
	cfg.want_id = 7;
	CHECK(!state_create(5, 0) && !devconfig_write(5, &cfg, 1 << 20), "write format 2");
	devopts_defaults(&back);
	CHECK(!devconfig_read(5, &back, why, sizeof(why)), "read format 2: %s", why);
	check_same(&cfg, &back, "format 2");

	/* what a server of format 1 wrote */
	char v1[8192];
	size_t used = 0;
	v1[0] = 0;
	cfgline_append(v1, sizeof(v1), &used, "base", "/srv/base.img");
	cfgline_append(v1, sizeof(v1), &used, "size", "1048576");
	devopts_to_argv(&cfg, args, &argc);
	for (int i = 0; i < argc; i++)
		cfgline_append(v1, sizeof(v1), &used, "serve_arg", args[i]);
	CHECK(!state_write(5, "version", "1\n") && !state_write(5, "config", v1), "write format 1");
	devopts_defaults(&back);
	CHECK(!devconfig_read(5, &back, why, sizeof(why)), "read format 1: %s", why);
	check_same(&cfg, &back, "format 1");
	/* the renamed keys are found under their old names */
	char size[32];
	CHECK(!state_config_get(5, "device_size", size, sizeof(size)) && !strcmp(size, "1048576"),
	      "device_size from format 1's size");
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	CHECK(system(cmd) == 0, "cleanup");
}

/* A heartbeat is missed only after three of its periods, whatever a
 * shorter hang timeout says; a stall counts at the timeout itself. */
static void test_hang_deadline(void)
{
	static struct pool_dev d = {
		.in_kernel = true, .alive = true, .kernel_state = UBLK_S_DEV_LIVE,
		.state = "live", .stat.valid = true,
	};
	char why[160] = "";

	d.heartbeat_age_ms = 1500;
	CHECK(!pool_hung(&d, 1000, why, sizeof(why)), "a heartbeat 1.5 s old is late, not missed");
	d.heartbeat_age_ms = 3 * STATE_STATS_PERIOD_MS + 1;
	CHECK(pool_hung(&d, 1000, why, sizeof(why)) == POOL_HUNG_HEARTBEAT, "three periods without one are a hang");
	CHECK(strstr(why, "no heartbeat for 3 s"), "said: %s", why);
	CHECK(!pool_hung(&d, 10000, why, sizeof(why)), "a longer timeout is kept");
	CHECK(!pool_hung(&d, 0, why, sizeof(why)), "timeout 0 turns the check off");
	d.heartbeat_age_ms = 200;
	d.stat.stalled_ms = 1001;
	CHECK(pool_hung(&d, 1000, why, sizeof(why)) == POOL_HUNG_STALLED, "a stall counts at the timeout");
	CHECK(strstr(why, "IO pending and none completed for 1 s"), "said: %s", why);
	/* a live export declared a hold that has not ended: no hang */
	d.stat.held_until_ms = wall_ms() + 60000;
	CHECK(!pool_hung(&d, 1000, why, sizeof(why)), "a declared hold is no stall");
}

static void *sleep_then_end(void *arg)
{
	(void)arg;
	sleep_ms(3000);
	return NULL;
}

/* A process whose main thread has ended while another thread lives on
 * (as a killed server's may, its io_uring thread still being torn down)
 * holds its files until that thread ends: it is waited for, not taken for
 * dead, and is still there if the wait runs out. A live one is alive at
 * once. */
static void test_pid_settled(void)
{
	uint64_t t0 = now_ms();
	int st;

	CHECK(pid_alive_settled(getpid(), 5000) == 1 && now_ms() - t0 < 1000, "a live process at once");
	pid_t pid = fork();
	if (pid == 0) {
		pthread_t t;
		if (pthread_create(&t, NULL, sleep_then_end, NULL))
			_exit(1);
		syscall(SYS_exit, 0);   /* this thread only */
	}
	CHECK(pid > 0, "fork");
	if (pid <= 0)
		return;
	uint64_t deadline = deadline_ms(10000);
	while (pid_alive(pid) && ms_left(deadline))
		sleep_ms(10);
	CHECK(!pid_alive(pid), "the main thread is a zombie");
	CHECK(pid_alive_settled(pid, 0) == PID_EXITING,
	      "with its other thread alive, it is still there, on its way out");
	CHECK(pid_alive_settled(pid, 20000) == 0, "then gone");
	CHECK(waitpid(pid, &st, WNOHANG) == pid, "and its last thread had ended: it is reaped at once");
	CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0, "its thread ran (status %d)", st);
	CHECK(pid_alive_settled(pid, 5000) == 0, "a reaped pid is not alive");
}

/* A device whose killed server has not ended: reclaim must neither
 * recover it (the old server holds its lock) nor delete it, and must say
 * so and fail, not report nothing and succeed. */
static void test_exiting_left_alone(void)
{
	/* recoverable as well, so that a reclaim that tried would: and if it
	 * did, it would reach no kernel and start no server */
	struct pool_dev d = { .id = 7, .in_kernel = true, .has_state = true, .restartable = true,
			      .recoverable = true, .pid = 4242, .alive = true, .exiting = true };
	struct reclaim_opts o = { .recover = true, .caches = true, .timeout_ms = 1000 };
	struct pool_report r = { 0 };
	const char *why = pool_problem(&d, POOL_GRACE_S);

	setenv("UBLK_CONTROL_PATH", "/nonexistent/ublk-control", 1);
	setenv("UBLK_SERVE", "/bin/false", 1);

	CHECK(why && !strcmp(why, "server is exiting"), "its problem (%s)", why ? why : "none");
	CHECK(pool_reclaim(&d, 1, &o, &r) == EXIT_FAIL, "reclaim fails");
	CHECK(r.n == 1, "one action (%d)", r.n);
	if (r.n == 1) {
		const struct pool_action *a = &r.actions[0];
		CHECK(a->kind == POOL_WAIT && !a->ok && !strcmp(pool_action_name(a->kind), "wait"),
		      "a wait, not ok");
		CHECK(!strncmp(a->message, "ublkb7 (server is exiting): server 4242 has not ended", 53),
		      "it says so: %s", a->message);
	}
	pool_report_free(&r);
	d.exiting = d.recoverable = false;
	CHECK(!pool_problem(&d, POOL_GRACE_S), "once running, healthy");
	unsetenv("UBLK_CONTROL_PATH");
	unsetenv("UBLK_SERVE");
}

struct timed_job {
	struct parallel_job job;
	unsigned ms;
	bool ran;
};

static atomic_int running, most_running, finished;

static void *timed_job_run(void *arg)
{
	struct timed_job *t = arg;
	int now = atomic_fetch_add(&running, 1) + 1;
	for (int most = atomic_load(&most_running); now > most &&
	     !atomic_compare_exchange_weak(&most_running, &most, now);)
		;
	sleep_ms(t->ms);
	t->ran = true;
	/* the slow job notes how many had finished when it did */
	if (t->ms > 1000)
		t->ms = (unsigned)atomic_load(&finished);
	atomic_fetch_add(&finished, 1);
	atomic_fetch_sub(&running, 1);
	return NULL;
}

/* Every job that is on runs once, at most max at a time, and one slow job
 * holds up only its own thread: the others all finish while it runs (in
 * waves of 4, those after its wave would wait for it). */
static void test_parallel_window(void)
{
	struct timed_job jobs[40] = { { .job.on = true, .ms = 2000 } };
	int ran = 0, off = 0;

	for (int i = 1; i < 40; i++)
		jobs[i] = (struct timed_job){ .job.on = i % 5 != 0, .ms = 10 };
	parallel_run(jobs, sizeof(jobs[0]), 40, 4, timed_job_run);
	for (int i = 0; i < 40; i++) {
		ran += jobs[i].ran;
		off += !jobs[i].job.on && jobs[i].ran;
	}
	CHECK(ran == 33 && off == 0, "ran %d of the 33 jobs on, %d that were off", ran, off);
	CHECK(atomic_load(&most_running) <= 4 && atomic_load(&most_running) >= 2,
	      "at most 4 at once (saw %d)", atomic_load(&most_running));
	CHECK(jobs[0].ms == 32, "the other 32 finished while the slow one ran (%u did)", jobs[0].ms);
	parallel_run(jobs, sizeof(jobs[0]), 0, 4, timed_job_run);
}

/* ublk-serve --owner-nonce: the cookie's random half, as ublk-add writes it */
static void test_hex(void)
{
	uint64_t v = 0;
	uint64_t cookie;

	CHECK(!parse_hex("0a1B2c3D", 1, UINT32_MAX, &v) && v == 0x0a1b2c3d, "8 digits, either case");
	CHECK(!parse_hex("00000000ffffffff", 1, UINT32_MAX, &v) && v == UINT32_MAX, "leading zeros");
	CHECK(parse_hex("0", 1, UINT32_MAX, &v) == -ERANGE, "zero refused");
	CHECK(parse_hex("100000000", 1, UINT32_MAX, &v) == -ERANGE, "33 bits refused");
	CHECK(parse_hex("1ffffffffffffffff", 0, UINT64_MAX, &v) == -ERANGE, "65 bits refused");
	CHECK(parse_hex("0x1f", 1, UINT32_MAX, &v) == -EINVAL, "0x prefix");
	CHECK(parse_hex("", 1, UINT32_MAX, &v) == -EINVAL, "empty");
	CHECK(parse_hex("12 ", 1, UINT32_MAX, &v) == -EINVAL, "trailing space");
	CHECK(parse_hex("-1", 1, UINT32_MAX, &v) == -EINVAL, "sign");
	CHECK(!ctrl_owner_cookie(4242, 0x0a1b2c3d, &cookie) && cookie == 0x0a1b2c3d00001092ull &&
	      ctrl_cookie_pid(cookie) == 4242, "cookie from a given nonce");
}

/* Said once a period, with the count of those not said. */
static void test_log_limit(void)
{
	struct log_limit l = { 0 };
	unsigned unsaid = 99;

	CHECK(log_limit_due(&l, 1000, 0, &unsaid) && unsaid == 0, "the first is said (at 0 too)");
	CHECK(!log_limit_due(&l, 1000, 10, &unsaid) && !log_limit_due(&l, 1000, 999, &unsaid),
	      "said again within its period");
	CHECK(log_limit_due(&l, 1000, 1000, &unsaid) && unsaid == 2, "after it: %u not said", unsaid);
	CHECK(log_limit_due(&l, 1000, 5000, &unsaid) && unsaid == 0, "then none: %u", unsaid);
}

int main(void)
{
	test_log_limit();
	test_hex();
	test_encoder();
	test_decoder();
	test_select();
	test_limits();
	test_names();
	test_secrets();
	test_saved_config();
	test_json_read();
	test_json_utf8();
	test_human_bytes();
	test_hang_deadline();
	test_pid_settled();
	test_exiting_left_alone();
	test_parallel_window();
	return check_summary();
}
