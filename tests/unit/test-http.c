/* Host unit tests of what a server or another local user can feed the
 * remote-image code: header parsers, URL redaction, the chunk cache's
 * limits, key and links (issue #11). With UBLK_HOSTILE_PORT set (the port
 * of tests/hostile_http.py, its second origin one above), also whole
 * requests against a misbehaving server. */
#include "layer_run.h"
#include "image/access_log.h"
#include "image/blob.h"
#include "image/chunkcache.h"
#include "image/fetch_pool.h"
#include "image/http.h"
#include "image/layer_http.h"
#include "util/timeutil.h"

#include <errno.h>
#include <fcntl.h>
#include <stddef.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static int cr(const char *s, uint64_t *a, uint64_t *b, uint64_t *t)
{
	/* a copy without the NUL: the parser must stop at len */
	size_t n = strlen(s);
	char *copy = malloc(n ? n : 1);
	memcpy(copy, s, n);
	int ret = http_parse_content_range(copy, n, a, b, t);
	free(copy);
	return ret;
}

static void test_content_range(void)
{
	uint64_t a = 7, b = 7, t = 7;
	static const char *bad[] = {
		"bytes 0-65535/18446744073709551615", "bytes 0-0/18446744073709551616",
		"bytes 0-0/99999999999999999999999999", "bytes 5-4/100", "bytes 0-100/100",
		"bytes 0-0/*", "bytes */100", "bytes 0-0/", "bytes -0/10", "bytes 0-/10",
		"bytes 0-0/1x", "bytes 0 - 0/10", "bytes 0-0 /10", "bytes +0-0/10", "bytes 0-0/-1",
		"bits 0-0/10", "bytes0-0/10", "", "bytes ", "bytes 0-0/17592186044417",
		"bytes 0x0-0/10", "bytes 1-2/3/4", "bytes 0-0/10\r\nX: y",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		CHECK(cr(bad[i], &a, &b, &t) == -EINVAL, "Content-Range '%s' accepted", bad[i]);
	CHECK(a == 7 && b == 7 && t == 7, "a refused header changed the outputs");
	CHECK(!cr(" bytes 0-65535/4194304\r\n", &a, &b, &t) && a == 0 && b == 65535 && t == 4194304,
	      "a good Content-Range refused");
	CHECK(!cr("bytes 17592186044415-17592186044415/17592186044416", &a, &b, &t) &&
	      t == HTTP_MAX_IMAGE_SIZE, "the largest image refused");
	/* len stops the parser: the digits after it are not read */
	CHECK(!http_parse_content_range("bytes 0-0/10999", 12, &a, &b, &t) && t == 10,
	      "parser read past len");
	uint64_t v;
	CHECK(!http_parse_content_length(" 65536\r\n", 8, &v) && v == 65536, "Content-Length");
	CHECK(http_parse_content_length("-1", 2, &v) == -EINVAL, "negative Content-Length");
	CHECK(http_parse_content_length("18446744073709551617", 20, &v) == -EINVAL, "wrapped length");
	CHECK(http_parse_content_length("", 0, &v) == -EINVAL, "empty Content-Length");
	CHECK(http_parse_content_length("1 2", 3, &v) == -EINVAL, "two numbers");
}

static void test_etag(void)
{
	char out[300], longtag[400];
	CHECK(!http_parse_etag(" \"abc\"\r\n", 8, out, sizeof(out)) && !strcmp(out, "\"abc\""), "etag");
	CHECK(!http_parse_etag("W/\"x-1\"", 7, out, sizeof(out)) && !strcmp(out, "W/\"x-1\""), "weak");
	CHECK(!http_parse_etag("abc123", 6, out, sizeof(out)), "a bare token");
	CHECK(http_parse_etag("\"a\nb\"", 5, out, sizeof(out)) == -EINVAL, "newline in etag");
	CHECK(http_parse_etag("\"a b\"", 5, out, sizeof(out)) == -EINVAL, "space in etag");
	CHECK(http_parse_etag("\"abc", 4, out, sizeof(out)) == -EINVAL, "unterminated etag");
	CHECK(http_parse_etag("W/abc", 5, out, sizeof(out)) == -EINVAL, "weak without quotes");
	CHECK(http_parse_etag("\"\xff\"", 3, out, sizeof(out)) == -EINVAL, "non-ASCII etag");
	CHECK(http_parse_etag("\"abc\"", 5, out, 4) == -EINVAL, "etag longer than out");
	memset(longtag, 'a', sizeof(longtag));
	CHECK(http_parse_etag(longtag, 256, out, sizeof(out)) == -EINVAL, "etag over 255 bytes");
	CHECK(!http_parse_etag(longtag, 255, out, sizeof(out)), "etag of 255 bytes");
}

static void test_url_for_log(void)
{
	static const struct { const char *in, *out; } cases[] = {
		{ "https://user:pass@host/p", "https://host/p" },
		{ "https://u:p@ss@host:8443/a/b?X-Amz-Signature=abc#frag", "https://host:8443/a/b?..." },
		{ "http://host/p#secret", "http://host/p" },
		{ "http://host/p@x?y", "http://host/p@x?..." },
		{ "http://user:pa/ss@host/", "(unparsable URL)" },
		{ "http://user:pa?ss@host/", "(unparsable URL)" },
		{ "http://ho st/", "(unparsable URL)" },
		{ "http://host/a\nb", "(unparsable URL)" },
		{ "ftp://u:p@host/", "(unparsable URL)" },
		{ "HTTP://[::1]:80/x", "http://[::1]/x" },
	};
	char buf[200], id[200];
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		http_url_for_log(cases[i].in, buf, sizeof(buf));
		CHECK(!strcmp(buf, cases[i].out), "url_for_log(%s) = %s", cases[i].out, buf);
	}
	CHECK(!http_url_identity("HTTPS://u:p@Host.Example:443/A?sig=1#f", id, sizeof(id)) &&
	      !strcmp(id, "https://host.example:443/A"), "identity: %s", id);
	/* a host past a DNS name's 253 bytes is no host: two such origins,
	 * cut short, could compare equal and share credentials */
	char url[300], long_id[400];
	snprintf(url, sizeof(url), "http://%0253d/x", 0);
	CHECK(!http_url_identity(url, long_id, sizeof(long_id)), "a host of 253 bytes");
	snprintf(url, sizeof(url), "http://%0254d/x", 0);
	CHECK(http_url_identity(url, long_id, sizeof(long_id)) == -EINVAL, "a host of 254 bytes refused");
}

static char root[256];

static int open_ci(struct chunk_image *ci, const char *url, uint64_t size, char *why)
{
	return chunk_image_open(ci, root, url, "\"v1\"", size, 65536, 1 << 20, why, 300);
}

static void test_chunk_cache(void)
{
	struct chunk_image ci, cj;
	char why[300] = "", path[4200], buf[65536] = { 0 };
	int ret;

	snprintf(root, sizeof(root), "/tmp/test-http.%d/chunks", (int)getpid());
	/* sizes whose chunk count would wrap, or past the limit */
	CHECK(open_ci(&ci, "http://h/x", UINT64_MAX, why) == -EFBIG, "2^64-1 bytes accepted");
	chunk_image_close(&ci);
	CHECK(open_ci(&ci, "http://h/x", HTTP_MAX_IMAGE_SIZE + 1, why) == -EFBIG, "over the limit");
	chunk_image_close(&ci);
	CHECK(open_ci(&ci, "http://h/x", 0, why) == -EFBIG, "0 bytes accepted");
	chunk_image_close(&ci);

	/* idx bounds: 3 chunks, the last one 100 bytes */
	ret = open_ci(&ci, "http://h/x", 2 * 65536 + 100, why);
	CHECK(!ret, "open: %s", why);
	CHECK(ci.nchunks == 3, "nchunks %llu", (unsigned long long)ci.nchunks);
	CHECK(chunk_store(&ci, 3, buf, 65536) == -EINVAL, "store past the end");
	CHECK(chunk_store(&ci, UINT64_MAX / 8, buf, 100) == -EINVAL, "store far past the end");
	CHECK(chunk_store(&ci, 2, buf, 65536) == -EINVAL, "last chunk stored with a wrong length");
	CHECK(!chunk_store(&ci, 2, buf, 100), "store the last chunk");
	CHECK(chunk_present(&ci, 2) == 1 && chunk_present(&ci, 3) == 0, "present");
	CHECK(chunk_read(&ci, 3, 0, 1, buf) == -EINVAL, "read past the end");
	CHECK(chunk_read(&ci, UINT64_MAX, 0, 1, buf) == -EINVAL, "read idx 2^64-1");
	CHECK(chunk_read(&ci, 2, 50, 51, buf) == -EINVAL, "read past the chunk");
	CHECK(!chunk_read(&ci, 2, 50, 50, buf), "read within the chunk");
	CHECK(chunk_read(&ci, 1, 0, 1, buf) == -ENOENT, "absent chunk");
	/* chunks read are held open: one evicted (unlinked) still reads from
	 * its open file; one truncated is as good as none until stored again */
	memset(buf, 0x3c, 65536);
	CHECK(!chunk_store(&ci, 0, buf, 65536), "store chunk 0");
	CHECK(!chunk_read(&ci, 0, 0, 4096, buf) && buf[0] == 0x3c, "read chunk 0");
	snprintf(path, sizeof(path), "%s/0", ci.dir);
	CHECK(truncate(path, 100) == 0, "truncate chunk 0");
	CHECK(chunk_read(&ci, 0, 0, 4096, buf) == -ENOENT, "a truncated held chunk reads as absent");
	memset(buf, 0x3c, 65536);
	CHECK(!chunk_store(&ci, 0, buf, 65536) && !chunk_read(&ci, 0, 4096, 4096, buf), "stored again, read");
	CHECK(!unlink(path) && !chunk_read(&ci, 0, 0, 4096, buf) && buf[0] == 0x3c,
	      "an evicted held chunk still reads");

	/* key file: mode 0600, the identity without credentials */
	snprintf(path, sizeof(path), "%s/key", ci.dir);
	struct stat st;
	CHECK(!stat(path, &st) && (st.st_mode & 0777) == 0600, "key file mode %o", st.st_mode & 0777);
	chunk_image_close(&ci);
	ret = open_ci(&ci, "http://user:secret@h/y?X-Amz-Signature=secret2", 4096, why);
	CHECK(!ret, "open: %s", why);
	snprintf(path, sizeof(path), "%s/key", ci.dir);
	char key[2000] = "";
	FILE *f = fopen(path, "r");
	if (f) {
		key[fread(key, 1, sizeof(key) - 1, f)] = 0;
		fclose(f);
	}
	CHECK(strstr(key, "http://h:80/y") && !strstr(key, "secret"), "key file: %s", key);
	chunk_image_close(&ci);

	/* without a validator or a query nothing tells versions apart: each
	 * opener has a folder of its own; a query without one is shared */
	CHECK(!chunk_image_open(&ci, root, "http://h/nv", "", 4096, 65536, 1 << 20, why, 300) &&
	      !chunk_image_open(&cj, root, "http://h/nv", "", 4096, 65536, 1 << 20, why, 300),
	      "open without a validator: %s", why);
	CHECK(strcmp(ci.dir, cj.dir), "two openers without a validator share %s", ci.dir);
	memset(buf, 4, 4096);
	CHECK(!chunk_store(&ci, 0, buf, 4096), "store without a validator");
	snprintf(path, sizeof(path), "%s", ci.dir);
	chunk_image_close(&ci);
	CHECK(access(path, F_OK) && errno == ENOENT, "%s left after its close", path);
	chunk_image_close(&cj);
	CHECK(!chunk_image_open(&ci, root, "http://h/nv?versionId=3", "", 4096, 65536, 1 << 20, why, 300) &&
	      !chunk_image_open(&cj, root, "http://h/nv?versionId=3", "", 4096, 65536, 1 << 20, why, 300),
	      "open with a query: %s", why);
	CHECK(!strcmp(ci.dir, cj.dir), "one version by its query in %s and %s", ci.dir, cj.dir);
	chunk_image_close(&ci);
	chunk_image_close(&cj);

	/* with a validator, the query's signatures are left out (presigned
	 * URLs of one object share), what picks the object is not */
	static const struct { const char *a, *b; bool same; } q[] = {
		{ "http://h/get?name=a", "http://h/get?name=b", false },
		{ "http://h/o?X-Amz-Date=1&X-Amz-Signature=aa&versionId=7",
		  "http://h/o?versionId=7&X-Amz-Date=2&X-Amz-Signature=bb", true },
		{ "http://h/o?versionId=7&X-Amz-Signature=aa", "http://h/o?versionId=8&X-Amz-Signature=aa", false },
		{ "http://h/o?sv=2022&se=1&sig=x&sp=r", "http://h/o?sv=2022&se=2&sig=y&sp=r#frag", true },
		{ "http://h/o?Expires=1&Signature=a&Key-Pair-Id=k", "http://h/o", true },
		{ "http://h/o?GoogleAccessId=a&Expires=1&Signature=s", "http://h/o?x-goog-signature=t", true },
		{ "http://h/o?name=a&", "http://h/o?name=a", true },
		{ "http://h/o?q-sign-time=1&q-signature=a", "http://h/o?q-sign-time=2&q-signature=b", true },
		{ "http://h/o?OSSAccessKeyId=k&x-oss-date=1", "http://h/o?x-oss-signature=s", true },
	};
	for (size_t i = 0; i < sizeof(q) / sizeof(q[0]); i++) {
		CHECK(!open_ci(&ci, q[i].a, 4096, why) && !open_ci(&cj, q[i].b, 4096, why), "open: %s", why);
		CHECK(!strcmp(ci.dir, cj.dir) == q[i].same, "%s and %s: %s folder", q[i].a, q[i].b,
		      q[i].same ? "not one" : "one");
		/* a trace names the version, whatever the query: one that
		 * applied before queries were in the folder's identity, or under
		 * an unknown signature's next token, still applies */
		CHECK(!strcmp(ci.identity, cj.identity), "%s and %s: two trace identities", q[i].a,
		      q[i].b);
		chunk_image_close(&ci);
		chunk_image_close(&cj);
	}

	/* long URLs differing at the end: two folders */
	char u1[700], u2[700];
	memset(u1, 'a', sizeof(u1));
	memcpy(u1, "http://h/", 9);
	u1[600] = 0;
	memcpy(u2, u1, sizeof(u2));
	u1[599] = '1';
	u2[599] = '2';
	CHECK(!open_ci(&ci, u1, 4096, why), "open u1: %s", why);
	CHECK(!open_ci(&cj, u2, 4096, why), "open u2: %s", why);
	CHECK(strcmp(ci.dir, cj.dir), "two long URLs share %s", ci.dir);
	memset(buf, 1, 4096);
	chunk_store(&ci, 0, buf, 4096);
	CHECK(chunk_read(&cj, 0, 0, 1, buf) == -ENOENT, "u2 reads u1's chunk");
	chunk_image_close(&cj);
	/* a key file that says another identity is a collision */
	snprintf(path, sizeof(path), "%s/key", ci.dir);
	f = fopen(path, "w");
	fputs("ublk-tools chunk cache 2\nurl http://other\n", f);
	fclose(f);
	CHECK(open_ci(&cj, u1, 4096, why) == -EEXIST, "a foreign key accepted");
	chunk_image_close(&cj);
	/* a symlinked key file */
	unlink(path);
	CHECK(!symlink("/etc/passwd", path), "symlink");
	CHECK(open_ci(&cj, u1, 4096, why) != 0, "a symlinked key accepted");
	chunk_image_close(&cj);
	unlink(path);
	/* a symlinked chunk is no chunk: never served */
	CHECK(!open_ci(&cj, u1, 4096, why), "reopen: %s", why);
	snprintf(path, sizeof(path), "%s/0", cj.dir);
	unlink(path);
	CHECK(!symlink("/etc/passwd", path), "symlink");
	CHECK(chunk_read(&cj, 0, 0, 1, buf) == -ENOENT, "a symlinked chunk served");
	CHECK(chunk_present(&cj, 0) == 0, "a symlinked chunk counts as present");
	memset(buf, 2, 4096);
	CHECK(!chunk_store(&cj, 0, buf, 4096), "store over a symlink");
	CHECK(!lstat(path, &st) && S_ISREG(st.st_mode), "the link was not replaced");
	chunk_image_close(&cj);
	chunk_image_close(&ci);

	/* eviction: a link to a victim folder's files is neither followed nor
	 * emptied through */
	char victim[300], vfile[400], link[700];
	snprintf(victim, sizeof(victim), "/tmp/test-http.%d/victim", (int)getpid());
	mkdir(victim, 0700);
	snprintf(vfile, sizeof(vfile), "%s/1", victim);
	f = fopen(vfile, "w");
	fputs("precious", f);
	fclose(f);
	snprintf(link, sizeof(link), "%s/zzlink", root);
	CHECK(!symlink(victim, link), "symlink");
	snprintf(vfile, sizeof(vfile), "%s/0", victim);   /* also a linked chunk file */
	f = fopen(vfile, "w");
	fputs("precious", f);
	fclose(f);
	/* the unshared folder of a server that died (no lock, an hour old)
	 * goes with the next eviction; one in use stays */
	char dead[400], dfile[500], used[4200];
	snprintf(dead, sizeof(dead), "%s/u%064d", root, 7);
	CHECK(!mkdir(dead, 0700), "mkdir %s", dead);
	snprintf(dfile, sizeof(dfile), "%s/0", dead);
	f = fopen(dfile, "w");
	fputs("left", f);
	fclose(f);
	struct timespec old_times[2] = { { .tv_sec = time(NULL) - 3600 }, { .tv_sec = time(NULL) - 3600 } };
	CHECK(!utimensat(AT_FDCWD, dead, old_times, 0), "age %s", dead);
	CHECK(!chunk_image_open(&cj, root, "http://h/inuse", "", 4096, 65536, 1 << 20, why, 300),
	      "open in use: %s", why);
	snprintf(used, sizeof(used), "%s", cj.dir);
	/* its folder is its opener's, but a trace names the version: two
	 * opens of it have one identity, 64 hex digits (docs/access-trace.md) */
	struct chunk_image twin;
	CHECK(!chunk_image_open(&twin, root, "http://h/inuse", "", 4096, 65536, 1 << 20, why, 300),
	      "open again: %s", why);
	CHECK(strcmp(twin.dir, cj.dir), "two openers of an unshared image share a folder");
	CHECK(!strcmp(twin.identity, cj.identity) && strlen(cj.identity) == 64 &&
	      strspn(cj.identity, "0123456789abcdef") == 64, "identities %s and %s", cj.identity,
	      twin.identity);
	chunk_image_close(&twin);
	CHECK(!utimensat(AT_FDCWD, used, old_times, 0), "age %s", used);
	/* a limit of 1 MiB: storing 20 chunks of 64 KiB evicts */
	CHECK(!open_ci(&ci, "http://h/evict", 20 * 65536, why), "open: %s", why);
	snprintf(path, sizeof(path), "%s/0", ci.dir);
	memset(buf, 3, sizeof(buf));
	for (uint64_t i = 0; i < 20; i++)
		chunk_store(&ci, i, buf, 65536);
	chunk_image_close(&ci);
	snprintf(vfile, sizeof(vfile), "%s/1", victim);
	CHECK(!access(vfile, F_OK), "eviction deleted through a symlinked folder");
	CHECK(!lstat(link, &st) && S_ISLNK(st.st_mode), "eviction removed the link");
	CHECK(access(dead, F_OK) && errno == ENOENT, "a dead opener's unshared folder is left");
	CHECK(!access(used, F_OK), "an unshared folder in use was removed");
	chunk_image_close(&cj);

	/* least recently used first: ten chunks stored long ago, the first
	 * of them read since; ten more pass the limit, and take the place of
	 * the old ones not read, oldest first */
	char lru[300];
	snprintf(lru, sizeof(lru), "/tmp/test-http.%d/lru", (int)getpid());
	CHECK(!chunk_image_open(&ci, lru, "http://h/lru", "\"v1\"", 20 * 65536, 65536, 1 << 20, why,
				sizeof(why)), "open: %s", why);
	for (uint64_t i = 0; i < 10; i++) {
		struct timespec t[2] = { { .tv_sec = time(NULL) - 1000 + (time_t)i },
					 { .tv_sec = time(NULL) - 1000 + (time_t)i } };
		CHECK(!chunk_store(&ci, i, buf, 65536), "store %llu", (unsigned long long)i);
		snprintf(path, sizeof(path), "%s/%llu", ci.dir, (unsigned long long)i);
		CHECK(!utimensat(AT_FDCWD, path, t, 0), "age %s", path);
	}
	CHECK(!chunk_read(&ci, 0, 0, 4096, buf), "read chunk 0");
	for (uint64_t i = 10; i < 20; i++)
		CHECK(!chunk_store(&ci, i, buf, 65536), "store %llu", (unsigned long long)i);
	CHECK(chunk_present(&ci, 0) == 1, "the chunk read since was evicted");
	CHECK(chunk_present(&ci, 1) == 0, "the oldest chunk not read was kept");
	CHECK(chunk_present(&ci, 19) == 1, "the newest chunk was evicted");
	chunk_image_close(&ci);

	/* a limit below one chunk (the options refuse it; another caller
	 * might not): each store evicts the others, never itself */
	snprintf(lru, sizeof(lru), "/tmp/test-http.%d/tiny", (int)getpid());
	CHECK(!chunk_image_open(&ci, lru, "http://h/tiny", "\"v1\"", 4 * 65536, 65536, 4096, why,
				sizeof(why)), "open: %s", why);
	for (uint64_t i = 0; i < 4; i++) {
		CHECK(!chunk_store(&ci, i, buf, 65536), "store %llu", (unsigned long long)i);
		CHECK(chunk_present(&ci, i) == 1, "chunk %llu evicted by its own store", (unsigned long long)i);
		CHECK(!i || chunk_present(&ci, i - 1) == 0, "chunk %llu kept past the limit",
		      (unsigned long long)(i - 1));
	}
	chunk_image_close(&ci);

	/* many servers storing a little each (less than the 5% of the limit a
	 * scan waits for) keep the limit all the same: 100 images of 12 chunks
	 * of 4 KiB under 1 MiB */
	char shared[300];
	uint64_t kept = 0;
	snprintf(shared, sizeof(shared), "/tmp/test-http.%d/shared", (int)getpid());
	for (int k = 0; k < 100; k++) {
		char url[64];
		snprintf(url, sizeof(url), "http://h/short-lived/%d", k);
		CHECK(!chunk_image_open(&ci, shared, url, "\"v1\"", 12 * 4096, 4096, 1 << 20, why, sizeof(why)),
		      "open: %s", why);
		for (uint64_t i = 0; i < 12; i++)
			CHECK(!chunk_store(&ci, i, buf, 4096), "store");
		chunk_image_close(&ci);
	}
	char line[600];
	snprintf(line, sizeof(line), "find %s -type f -name '[0-9]*' -printf '%%s\\n'", shared);
	FILE *sizes = popen(line, "r");
	while (sizes && fgets(line, sizeof(line), sizes))
		kept += strtoull(line, NULL, 10);
	CHECK(sizes && !pclose(sizes), "find");
	CHECK(kept > 0 && kept <= (1 << 20) + (1 << 20) / 20, "%llu bytes of chunks kept, limit 1 MiB",
	      (unsigned long long)kept);

	/* the root: a symlink, group-writable, someone else's */
	char lroot[300];
	snprintf(lroot, sizeof(lroot), "/tmp/test-http.%d/linkroot", (int)getpid());
	CHECK(!symlink(root, lroot), "symlink");
	CHECK(chunk_image_open(&ci, lroot, "http://h/x", "", 4096, 65536, 0, why, sizeof(why)) ==
	      -ELOOP, "a symlinked root accepted");
	CHECK(strstr(why, "symbolic link") != NULL, "why: %s", why);
	chunk_image_close(&ci);
	chmod(root, 0770);
	CHECK(open_ci(&ci, "http://h/x", 4096, why) == -EPERM, "a group-writable root accepted");
	CHECK(strstr(why, "writable by other users") != NULL, "why: %s", why);
	chunk_image_close(&ci);
	chmod(root, 0700);
	if (geteuid() == 0) {
		CHECK(!chown(root, 65534, 65534), "chown");
		CHECK(open_ci(&ci, "http://h/x", 4096, why) == -EPERM, "someone else's root accepted");
		chunk_image_close(&ci);
		CHECK(!chown(root, 0, 0), "chown");
	}
	/* a new root is created 0700 */
	char fresh[300];
	snprintf(fresh, sizeof(fresh), "/tmp/test-http.%d/new/chunks", (int)getpid());
	CHECK(!chunk_image_open(&ci, fresh, "http://h/x", "", 4096, 65536, 0, why, sizeof(why)),
	      "new root: %s", why);
	CHECK(!stat(fresh, &st) && (st.st_mode & 0777) == 0700, "new root mode %o", st.st_mode & 0777);
	chunk_image_close(&ci);
	char cmd[400];
	snprintf(cmd, sizeof(cmd), "rm -rf /tmp/test-http.%d", (int)getpid());
	CHECK(!system(cmd), "cleanup");
}

/* Whole requests against tests/hostile_http.py. */
static void test_hostile(int port)
{
	static const struct { const char *path; int ret; const char *why; } cases[] = {
		{ "/ok/img", 0, "" },
		{ "/wrap/img", -EIO, "malformed Content-Range" },
		{ "/huge/img", -EIO, "malformed Content-Range" },
		{ "/star/img", -EIO, "malformed Content-Range" },
		{ "/junk/img", -EIO, "malformed Content-Range" },
		{ "/norange/img", -EIO, "HTTP 200 (the server ignores range requests)" },
		{ "/otherstart/img", -EIO, "the server sent range 4096-4096 instead" },
		{ "/tofile/img", -EIO, "redirect to another scheme refused" },
		{ "/toftp/img", -EIO, "redirect to another scheme refused" },
		{ "/loop/img", -EIO, "more than 5 redirects" },
		{ "/chain/0/img", -EIO, "more than 5 redirects" },
		{ "/chain/4/img", 0, "" },
		{ "/private/img", 0, "" },
		{ "/toother/img", -EACCES, "HTTP 403" },
	};
	struct http_opts o;
	struct http_source s;
	char url[200], why[700];
	uint8_t buf[65536];

	CHECK(!http_opts_init(&o, NULL, why, sizeof(why)), "opts");
	/* a custom header: libcurl would pass it on to any redirect target */
	o.auth_header = "X-Api-Key: s3cret";
	o.timeout_ms = 3000;
	o.retries = 1;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		snprintf(url, sizeof(url), "http://127.0.0.1:%d%s", port, cases[i].path);
		why[0] = 0;
		int ret = http_source_open(&s, url, &o, why, sizeof(why));
		CHECK(ret == cases[i].ret, "%s: %d, expected %d (%s)", cases[i].path, ret, cases[i].ret,
		      why);
		CHECK(strstr(why, cases[i].why) != NULL, "%s: '%s' lacks '%s'", cases[i].path, why,
		      cases[i].why);
		CHECK(!strstr(why, "s3cret"), "credentials in a message");
		if (!ret) {
			CHECK(s.size == 4 << 20, "size %llu", (unsigned long long)s.size);
			http_source_close(&s);
		}
	}
	/* https never goes down to http */
	const char *tls = getenv("UBLK_HOSTILE_TLS_PORT");
	if (tls) {
		snprintf(url, sizeof(url), "https://127.0.0.1:%s/tohttp/img", tls);
		o.insecure = true;
		int ret = http_source_open(&s, url, &o, why, sizeof(why));
		CHECK(ret == -EIO, "https to http: %d (%s)", ret, why);
		CHECK(strstr(why, "redirect to http://127.0.0.1:") && strstr(why, "/ok/img refused"),
		      "https to http: %s", why);
		snprintf(url, sizeof(url), "https://127.0.0.1:%s/ok/img", tls);
		CHECK(!http_source_open(&s, url, &o, why, sizeof(why)), "https: %s", why);
		http_source_close(&s);
		o.insecure = false;
	}
	/* errors after the probe: the read fails within its deadline */
	static const struct { const char *path; int ret; const char *why; } reads[] = {
		{ "/short/img", -EIO, "32768 bytes remaining" },
		{ "/badlength/img", -EIO, "Content-Length" },
		{ "/etag/img", -ESTALE, "changed on the server" },
		{ "/drip/img", -ETIMEDOUT, "" },
		{ "/etagdrip/img", -ESTALE, "changed on the server" },
	};
	struct http_conn *c = http_conn_new();
	for (size_t i = 0; i < sizeof(reads) / sizeof(reads[0]); i++) {
		snprintf(url, sizeof(url), "http://127.0.0.1:%d%s", port, reads[i].path);
		int ret = http_source_open(&s, url, &o, why, sizeof(why));
		CHECK(!ret, "%s: probe: %s", reads[i].path, why);
		if (ret)
			continue;
		uint64_t start = now_ms();
		ret = http_read(c, &s, 65536, 65536, buf, NULL, why, sizeof(why));
		uint64_t took = now_ms() - start;
		CHECK(ret == reads[i].ret, "%s: %d, expected %d (%s)", reads[i].path, ret, reads[i].ret,
		      why);
		CHECK(strstr(why, reads[i].why) != NULL, "%s: '%s' lacks '%s'", reads[i].path, why,
		      reads[i].why);
		/* deadline: timeout * (retries + 1), plus scheduling slack */
		CHECK(took < 2 * 3000 + 5000, "%s took %llu ms", reads[i].path, (unsigned long long)took);
		/* another version's body is not waited for: refused at its first byte */
		if (strstr(reads[i].path, "etagdrip"))
			CHECK(took < 3000, "%s: waited %llu ms for a body of another version",
			      reads[i].path, (unsigned long long)took);
		http_source_close(&s);
	}
	/* a long retry chain is bounded by the deadline, not 2^20 * 200 ms */
	snprintf(url, sizeof(url), "http://127.0.0.1:%d/ok/img", port);
	CHECK(!http_source_open(&s, url, &o, why, sizeof(why)), "probe: %s", why);
	/* only the read is short: the probe must not depend on how busy the host is */
	s.opts.retries = 20;
	s.opts.timeout_ms = 100;
	free(s.url);
	s.url = strdup("http://127.0.0.1:1/x");   /* connection refused: retried */
	uint64_t start = now_ms();
	int ret = http_read(c, &s, 0, 100, buf, NULL, why, sizeof(why));
	CHECK(ret == -EIO || ret == -ETIMEDOUT, "dead server: %d", ret);
	CHECK(now_ms() - start < 21 * 100 + 5000, "20 retries took %llu ms",
	      (unsigned long long)(now_ms() - start));
	http_source_close(&s);
	http_conn_free(c);
}

/* Chunks fetched straight into the cache file: a cut try is overwritten by
 * the next, a failed fetch leaves neither the chunk nor a temporary file. */
static void test_chunk_fetch(int port)
{
	struct http_opts o;
	struct http_source s;
	struct chunk_image ci;
	struct http_conn *c = http_conn_new();
	char url[200], why[700], dir[300], cmd[400];
	uint8_t buf[65536];
	unsigned attempts;
	int ret;

	snprintf(dir, sizeof(dir), "/tmp/test-http.%d/fetch", (int)getpid());
	CHECK(!http_opts_init(&o, NULL, why, sizeof(why)), "opts");
	o.timeout_ms = 3000;
	o.retries = 1;
	for (int k = 0; k < 2; k++) {
		snprintf(url, sizeof(url), "http://127.0.0.1:%d/%s/img", port, k ? "short" : "flaky");
		CHECK(!http_source_open(&s, url, &o, why, sizeof(why)), "%s: probe: %s", url, why);
		CHECK(!chunk_image_open(&ci, dir, url, s.validator, s.size, 65536, 1 << 30, why, sizeof(why)),
		      "%s: cache: %s", url, why);
		ret = chunk_fetch(&ci, c, &s, 5, &attempts, why, sizeof(why));
		if (!k) {
			CHECK(!ret && attempts == 2, "flaky: %d after %u tries (%s)", ret, attempts, why);
			CHECK(!chunk_read(&ci, 5, 0, sizeof(buf), buf), "flaky: chunk 5 not stored");
			bool same = true;
			for (size_t i = 0; i < sizeof(buf); i++)
				same &= buf[i] == (5 * 65536 + i) % 251;
			CHECK(same, "flaky: chunk 5 does not hold the image's bytes");
		} else {
			CHECK(ret == -EIO && attempts == 2, "short: %d after %u tries", ret, attempts);
			CHECK(strstr(why, "32768 bytes remaining") != NULL, "short: '%s'", why);
			CHECK(chunk_present(&ci, 5) == 0, "short: a cut chunk was stored");
		}
		CHECK(chunk_fetch(&ci, c, &s, ci.nchunks, NULL, why, sizeof(why)) == -EINVAL,
		      "a chunk past the end fetched");
		/* the folders hold their keys and what was stored, no temporary file */
		snprintf(cmd, sizeof(cmd), "test $(find %s -type f ! -name .stored | wc -l) -eq %d", dir, 2 + k);
		CHECK(!system(cmd), "%s: files left in %s", url, dir);
		chunk_image_close(&ci);
		http_source_close(&s);
	}
	http_conn_free(c);
	snprintf(cmd, sizeof(cmd), "rm -rf /tmp/test-http.%d", (int)getpid());
	CHECK(!system(cmd), "cleanup");
}

/* Three reads of /kase/img on c, each checked against the image's bytes;
 * when refused names a message, a read may instead be refused with -EIO
 * and that message. */
static void reads_on(struct http_conn *c, const struct http_opts *o, int port, const char *kase,
		     unsigned k, const char *refused)
{
	struct http_source s;
	char url[200], why[700];
	uint8_t buf[4096];

	snprintf(url, sizeof(url), "http://127.0.0.1:%d/%s/img", port, kase);
	CHECK(!http_source_open(&s, url, o, why, sizeof(why)), "%s: probe: %s", url, why);
	for (uint64_t i = 0; i < 3; i++) {
		uint64_t off = (k * 3 + i) * 65536 + 512;
		int ret = http_read(c, &s, off, sizeof(buf), buf, NULL, why, sizeof(why));
		if (refused && ret == -EIO) {
			CHECK(strstr(why, refused), "%s: read at %llu: %s", url, (unsigned long long)off, why);
			continue;
		}
		CHECK(!ret, "%s: read at %llu: %d %s", url, (unsigned long long)off, ret, why);
		bool same = true;
		for (size_t b = 0; b < sizeof(buf); b++)
			same &= buf[b] == (off + b) % 251;
		CHECK(same, "%s: read at %llu: not the image's bytes", url, (unsigned long long)off);
	}
	http_source_close(&s);
}

/* One connection for every read from one server, redirects included; a
 * folded first header line after earlier answers on that connection
 * (libcurl 7.88's use-after-free when a handle is reused) does no harm:
 * refused before curl 8.3, read after; the reads after it work. */
static void test_conn_reuse(int port)
{
	struct http_opts o;
	struct http_conn *c = http_conn_new();
	char why[700];

	CHECK(c && !http_opts_init(&o, NULL, why, sizeof(why)), "conn, opts");
	o.timeout_ms = 5000;
	o.retries = 1;
	reads_on(c, &o, port, "ok", 0, NULL);
	reads_on(c, &o, port, "chain/5", 1, NULL);
	reads_on(c, &o, port, "ok", 2, NULL);
	CHECK(http_conn_connects(c) == 1, "%lu connections for reads from one server",
	      http_conn_connects(c));
	reads_on(c, &o, port, "folded", 3, "a malformed header line");
	reads_on(c, &o, port, "ok", 4, NULL);
	http_conn_free(c);
}

static unsigned open_fds(void)
{
	unsigned n = 0;
	DIR *d = opendir("/proc/self/fd");

	for (struct dirent *e; d && (e = readdir(d));)
		n += e->d_name[0] != '.';
	if (d)
		closedir(d);
	return n;
}

/* Two images read whole hold CHUNK_OPEN_FILES chunk files each, but all
 * images of a process together no more than a quarter of the soft fd
 * limit when the first image opens (so this runs before any other);
 * closing them lets every one go. */
/* A mapped chunk stays mapped, whatever else is read, until unpinned. */
static void test_chunk_map(void)
{
	struct chunk_image ci;
	char why[300] = "", buf[65536];
	const uint64_t n = CHUNK_OPEN_FILES + 2;
	const void *p;
	struct chunk_open *pin;
	unsigned before;

	snprintf(root, sizeof(root), "/tmp/test-http.%d/map", (int)getpid());
	before = open_fds();
	CHECK(!chunk_image_open(&ci, root, "http://h/m", "", (n - 1) * 65536 + 100, 65536, 0, why,
				sizeof(why)), "open: %s", why);
	CHECK(chunk_map(&ci, 0, 0, 4096, &p, &pin) == -ENOENT, "an absent chunk is not mapped");
	CHECK(chunk_map(&ci, n, 0, 1, &p, &pin) == -EINVAL, "nor one past the end");
	CHECK(chunk_map(&ci, n - 1, 50, 51, &p, &pin) == -EINVAL, "nor past a chunk's end");
	for (uint64_t i = 0; i < n; i++) {
		memset(buf, (int)i + 1, sizeof(buf));
		CHECK(!chunk_store(&ci, i, buf, i == n - 1 ? 100 : 65536), "store %llu", (unsigned long long)i);
	}
	CHECK(!chunk_map(&ci, 0, 4096, 8192, &p, &pin), "map chunk 0");
	memset(buf, 1, 8192);
	CHECK(!memcmp(p, buf, 8192), "its bytes");
	const void *again;
	struct chunk_open *pin2;
	CHECK(!chunk_map(&ci, 0, 0, 4096, &again, &pin2), "map chunk 0 again");
	CHECK((const char *)again + 4096 == p, "the same mapping");
	chunk_unpin(pin2);
	/* every other chunk read twice: each slot but the pinned one replaced */
	for (int round = 0; round < 2; round++)
		for (uint64_t i = 1; i < n; i++)
			CHECK(!chunk_read(&ci, i, 0, 100, buf), "read %llu", (unsigned long long)i);
	memset(buf, 1, 8192);
	CHECK(!memcmp(p, buf, 8192), "still mapped while pinned");
	chunk_unpin(pin);
	CHECK(!chunk_map(&ci, n - 1, 0, 100, &p, &pin), "map the short last chunk");
	memset(buf, (int)n, 100);
	CHECK(!memcmp(p, buf, 100), "its bytes");
	chunk_unpin(pin);
	chunk_image_close(&ci);
	CHECK(open_fds() == before, "%u fds left open", open_fds() - before);
}

static void test_held_budget(void)
{
	struct chunk_image ci[2];
	struct rlimit old, low;
	char why[300] = "", buf[65536] = { 0 };
	unsigned before;

	CHECK(!getrlimit(RLIMIT_NOFILE, &old), "getrlimit");
	low = old;
	low.rlim_cur = 4 * 80;
	CHECK(!setrlimit(RLIMIT_NOFILE, &low), "setrlimit");
	snprintf(root, sizeof(root), "/tmp/test-http.%d/held", (int)getpid());
	before = open_fds();
	for (int k = 0; k < 2; k++) {
		CHECK(!chunk_image_open(&ci[k], root, k ? "http://h/b" : "http://h/a", "", CHUNK_OPEN_FILES * 65536,
					65536, 0, why, sizeof(why)), "open: %s", why);
		for (uint64_t i = 0; i < CHUNK_OPEN_FILES; i++)
			CHECK(!chunk_store(&ci[k], i, buf, 65536) && !chunk_read(&ci[k], i, 0, 4096, buf),
			      "chunk %llu", (unsigned long long)i);
		/* again: the held ones are hits, the others reopened */
		for (uint64_t i = 0; i < CHUNK_OPEN_FILES; i++)
			CHECK(!chunk_read(&ci[k], i, 4096, 4096, buf), "chunk %llu again", (unsigned long long)i);
	}
	unsigned held = open_fds() - before - 4;   /* each image's root and folder */
	CHECK(held == 80, "%u chunk files held, budget 80 of 2 x %u", held, CHUNK_OPEN_FILES);
	chunk_image_close(&ci[0]);
	chunk_image_close(&ci[1]);
	CHECK(open_fds() == before, "%u fds left open", open_fds() - before);
	CHECK(!setrlimit(RLIMIT_NOFILE, &old), "setrlimit back");
	char cmd[400];
	snprintf(cmd, sizeof(cmd), "rm -rf /tmp/test-http.%d", (int)getpid());
	CHECK(!system(cmd), "cleanup");
}

/* A remote base over the hostile server's CASE: its layer, its chunks
 * 64 KiB in a cache folder of the test's. */
static struct layer *open_remote(int port, const char *kase, struct layer_http_opts *ho)
{
	static char url[200], dir[300];
	char why[700] = "";
	struct layer *l = NULL;

	if (!ring.ring_fd)
		CHECK(!io_uring_queue_init(64, &ring, 0), "io_uring");
	snprintf(url, sizeof(url), "http://127.0.0.1:%d/%s/img", port, kase);
	snprintf(dir, sizeof(dir), "/tmp/test-http.%d/remote", (int)getpid());
	ho->chunk_size = 65536;
	ho->cache_limit = 1ull << 30;
	ho->cache_dir = dir;
	CHECK(!http_opts_init(&ho->http, NULL, why, sizeof(why)), "opts: %s", why);
	ho->http.timeout_ms = 10000;
	CHECK(!layer_http_open(url, ho, &l, why, sizeof(why)), "%s: %s", url, why);
	return l;
}

/* A cached chunk whose file cannot be opened (no fd left) fails its read
 * (EIO) at once: fetching it again would leave it as unreadable. */
static void test_remote_unreadable(int port)
{
	struct layer_http_opts ho = { 0 };
	static char buf[4096];
	struct rlimit old, low;
	int fillers[256], n = 0, top_fd = 0;
	struct layer *l = open_remote(port, "ok", &ho);

	CHECK(l && run(l, LAYER_READ, 65536, 4096, buf) == 4096, "fetch chunk 1");
	layer_close(l);         /* on disk, no longer held open */
	l = open_remote(port, "ok", &ho);
	CHECK(l && run(l, LAYER_READ, 0, 4096, buf) == 4096, "chunk 0");
	CHECK(!getrlimit(RLIMIT_NOFILE, &old), "getrlimit");
	DIR *d = opendir("/proc/self/fd");
	for (struct dirent *e; d && (e = readdir(d));)
		top_fd = atoi(e->d_name) > top_fd ? atoi(e->d_name) : top_fd;
	if (d)
		closedir(d);
	low = old;
	low.rlim_cur = (rlim_t)top_fd + 16;
	CHECK(!setrlimit(RLIMIT_NOFILE, &low), "setrlimit");
	while (n < 256 && (fillers[n] = open("/dev/null", O_RDONLY)) >= 0)
		n++;
	CHECK(n < 256, "no fd limit reached");
	alarm(60);      /* the read once spun on the queue thread for ever */
	CHECK(run(l, LAYER_READ, 65536, 4096, buf) == -EIO, "a chunk that cannot be opened");
	alarm(0);
	while (n--)
		close(fillers[n]);
	CHECK(!setrlimit(RLIMIT_NOFILE, &old), "setrlimit back");
	CHECK(run(l, LAYER_READ, 65536, 4096, buf) == 4096 && buf[0] == (char)(65536 % 251),
	      "read once fds are back");
	layer_close(l);
}

/* Closing a remote base cuts its fetches short, and what readahead queued
 * is not fetched: the server answers each read after 2 s. The access log
 * on top is freed after the layer whose fetch threads look at it. */
static void test_remote_close(int port)
{
	struct layer_http_opts ho = { .readahead = 32 };
	struct access_log_opts ao = { .label = "close" };
	char why[700] = "", trace[300];
	static char buf[4096];
	struct layer *l, *top = NULL;

	snprintf(trace, sizeof(trace), "/tmp/test-http.%d/close.trace", (int)getpid());
	ao.record_path = trace;
	CHECK(!access_log_new(&ao, &ho.access, why, sizeof(why)), "log: %s", why);
	l = open_remote(port, "slow", &ho);
	CHECK(l && !access_log_attach(ho.access, l, &top, why, sizeof(why)), "attach: %s", why);
	CHECK(run(top, LAYER_READ, 0, 4096, buf) == 4096, "a read");
	uint64_t start = now_ms();
	layer_close(top);
	/* 31 chunks left to read ahead on 4 connections took 16 s */
	CHECK(now_ms() - start < 8000, "the close took %llu ms",
	      (unsigned long long)(now_ms() - start));
	CHECK(!access(trace, F_OK), "the trace written");
}

/* --auth-file's links, followed hop by hop: a Kubernetes secret's two
 * links are taken; a hop through another user's folder or link is not,
 * as that user could point it at any file of root's. In folder dir. */
static void test_auth_links(const char *dir)
{
	struct http_opts o;
	char p[8][400], why[700] = "";
	FILE *f;

	const char *names[] = { "..2026_12_07", "..2026_12_07/token", "..data", "token", "user",
				"user/token", "via-user", "shadow" };
	for (int i = 0; i < 8; i++)
		snprintf(p[i], sizeof(p[i]), "%s/%s", dir, names[i]);
	CHECK(!mkdir(p[0], 0700), "mkdir %s", p[0]);
	f = fopen(p[1], "w");
	fputs("s3cret\n", f);
	fclose(f);
	chmod(p[1], 0600);
	CHECK(!symlink("..2026_12_07", p[2]) && !symlink("..data/token", p[3]), "secret links");
	CHECK(!http_opts_init(&o, p[3], why, sizeof(why)) && o.auth_header &&
	      !strcmp(o.auth_header, "Authorization: Bearer s3cret"), "a Kubernetes secret: %s", why);
	/* a folder of another user's on the way: refused, whatever it points at */
	f = fopen(p[7], "w");
	fputs("root:HASH:19000::::::\n", f);
	fclose(f);
	chmod(p[7], 0640);
	CHECK(!mkdir(p[4], 0755) && !chown(p[4], 65534, 65534), "another user's folder");
	CHECK(!symlink(p[7], p[5]) && !lchown(p[5], 65534, 65534), "their link to root's file");
	CHECK(!symlink("user/token", p[6]), "our link into their folder");
	CHECK(http_opts_init(&o, p[6], why, sizeof(why)) == -EPERM && strstr(why, "/user/token: its folder") &&
	      strstr(why, ": through ") && strstr(why, "uid 65534"), "a hop through their folder: %s", why);
	/* a second name (a hard link another user could make to a file of
	 * root's, where protected_hardlinks is off) */
	char hard[420];
	snprintf(hard, sizeof(hard), "%s/hard", dir);
	CHECK(!link(p[1], hard), "link");
	CHECK(http_opts_init(&o, hard, why, sizeof(why)) == -EMLINK && strstr(why, "hard links"),
	      "a file with two names: %s", why);
	CHECK(!unlink(hard), "unlink");
	/* their link in a sticky folder (as /tmp): the link's owner decides */
	CHECK(!chown(p[4], 0, 0) && !chmod(p[4], 01777), "a sticky folder of root's");
	CHECK(http_opts_init(&o, p[6], why, sizeof(why)) == -EPERM &&
	      strstr(why, "is another user's (uid 65534)"), "their link in a sticky folder: %s", why);
	for (int i = 7; i >= 0; i--)
		CHECK(!remove(p[i]) || errno == ENOENT, "remove %s", p[i]);
}

/* --auth-file: a regular file only its owner may change, one line of at
 * most HTTP_MAX_AUTH_LEN bytes, whole in the header */
static void test_auth_file(void)
{
	struct http_opts o;
	char path[300], why[700] = "";
	static char big[HTTP_MAX_AUTH_LEN + 2];
	FILE *f;

	unsetenv("UBLK_HTTP_AUTH");
	snprintf(path, sizeof(path), "/tmp/test-http.%d", (int)getpid());
	mkdir(path, 0700);
	snprintf(path, sizeof(path), "/tmp/test-http.%d/auth", (int)getpid());
	memset(big, 'a', HTTP_MAX_AUTH_LEN);
	f = fopen(path, "w");
	CHECK(f != NULL, "%s: %s", path, strerror(errno));
	if (!f)
		return;
	fprintf(f, "%s\nsecond line\n", big);
	fclose(f);
	chmod(path, 0600);
	CHECK(!http_opts_init(&o, path, why, sizeof(why)), "%d-byte token: %s", HTTP_MAX_AUTH_LEN, why);
	CHECK(o.auth_header && strlen(o.auth_header) == strlen("Authorization: Bearer ") + HTTP_MAX_AUTH_LEN,
	      "the token cut: %zu bytes", o.auth_header ? strlen(o.auth_header) : 0);
	f = fopen(path, "w");
	fprintf(f, "%sa\n", big);
	fclose(f);
	CHECK(http_opts_init(&o, path, why, sizeof(why)) == -E2BIG && strstr(why, "longer than 8192"),
	      "a longer line: %s", why);
	chmod(path, 0620);
	CHECK(http_opts_init(&o, path, why, sizeof(why)) == -EPERM && strstr(why, "chmod go-w"),
	      "a file others may write: %s", why);
	unlink(path);
	CHECK(!mkfifo(path, 0600), "mkfifo");
	CHECK(http_opts_init(&o, path, why, sizeof(why)) == -EINVAL && strstr(why, "not a regular file"),
	      "a fifo: %s", why);
	unlink(path);
	f = fopen(path, "w");
	fputs("tok\x7f" "en\n", f);
	fclose(f);
	chmod(path, 0600);
	CHECK(http_opts_init(&o, path, why, sizeof(why)) == -EINVAL && strstr(why, "control character"),
	      "DEL: %s", why);
	unlink(path);
	*strrchr(path, '/') = 0;
	test_auth_links(path);
	rmdir(path);
}

/* A remote diff's data over the hostile server's CASE: 64 KiB chunks in a
 * cache folder of the test's (SUB), no retries, timeout_ms a transfer. */
static struct blob *open_blob(int port, const char *kase, const char *sub, uint64_t timeout_ms)
{
	struct layer_http_opts ho = { .chunk_size = 65536, .cache_limit = 1ull << 30 };
	static char dir[300];
	char url[200], why[700] = "";
	struct blob *b = NULL;

	snprintf(url, sizeof(url), "http://127.0.0.1:%d/%s/img", port, kase);
	snprintf(dir, sizeof(dir), "/tmp/test-http.%d/%s", (int)getpid(), sub);
	ho.cache_dir = dir;
	CHECK(!http_opts_init(&ho.http, NULL, why, sizeof(why)), "opts: %s", why);
	ho.http.timeout_ms = timeout_ms;
	ho.http.retries = 0;
	CHECK(!blob_open(url, &ho, &b, why, sizeof(why)), "%s: %s", url, why);
	return b;
}

struct stall_reader {
	struct blob *b;
	pthread_t thread;
	int ret[3];
	uint64_t ms;
};

/* Three reads of the stalled chunk one after another, as a fetch thread
 * takes the reads queued for it. */
static void *stall_read(void *arg)
{
	struct stall_reader *r = arg;
	char buf[4096];
	uint64_t start = now_ms();

	for (int i = 0; i < 3; i++) {
		r->ret[i] = blob_read(r->b, buf, sizeof(buf), 16 * 65536);
		usleep(2000);
	}
	r->ms = now_ms() - start;
	return NULL;
}

/* Reads of one chunk of a remote diff or E2B data file whose server
 * stalls (a read budget of 1 s), queued for two fetch threads: each takes
 * the error of the fetch it waited behind, or that failed a moment
 * before, not a budget of its own (3 s a thread, or 6 s in turns). */
static void test_blob_stall(int port)
{
	struct stall_reader r[2];
	uint64_t slowest = 0;
	struct blob *b = open_blob(port, "stall", "blob", 1000);

	for (int i = 0; i < 2; i++) {
		r[i] = (struct stall_reader){ .b = b };
		CHECK(!pthread_create(&r[i].thread, NULL, stall_read, &r[i]), "thread");
	}
	for (int i = 0; i < 2; i++) {
		pthread_join(r[i].thread, NULL);
		for (int k = 0; k < 3; k++)
			CHECK(r[i].ret[k] == -ETIMEDOUT, "thread %d read %d: %d", i, k, r[i].ret[k]);
		slowest = r[i].ms > slowest ? r[i].ms : slowest;
	}
	/* one budget, and room for a loaded machine: not 3 s or more */
	CHECK(slowest < 2800, "the slower thread's 3 reads took %llu ms", (unsigned long long)slowest);
	blob_close(b);
}

struct pooled_read {
	struct layer_io io;
	struct fetch_job job;
	char buf[4096];
	int res;
	uint64_t ms;
};

static uint64_t pool_test_start;

static int pooled_run(void *ctx, void *mine, struct fetch_job *job)
{
	(void)mine;
	return blob_read(ctx, job->io->buf, job->io->len, job->io->off);
}

static void pooled_done(struct aio_req *req, int res)
{
	struct pooled_read *r = (struct pooled_read *)((char *)req - offsetof(struct pooled_read, io.areq));

	r->res = res;
	r->ms = now_ms() - pool_test_start;
}

/* Three reads of three chunks of a remote diff whose server answers each
 * in 2 s, through a fetch pool of two threads, read budget 3 s: the third
 * waits 2 s for a thread, then (or the second, which waited for the lock
 * from the start) 2 s for the other's fetch. That wait, 4 s, is past the
 * budget: the read fails then, instead of fetching on to 6 s, or, with a
 * 2.9 s budget, past twice it. */
static void test_pool_wait_counts(int port)
{
	static const struct fetch_pool_ops ops = { .run = pooled_run };
	struct pooled_read r[3];
	struct fetch_pool *pool;
	struct blob *b = open_blob(port, "slow", "pooled", 3000);

	CHECK(!fetch_pool_start(&pool, 2, &ops, b, blob_budget_ms(b)), "fetch pool");
	if (!ring.ring_fd)
		CHECK(!io_uring_queue_init(64, &ring, 0), "io_uring");
	pool_test_start = now_ms();
	for (int i = 0; i < 3; i++) {
		r[i] = (struct pooled_read){ .res = 1 };
		r[i].io = (struct layer_io){ .off = (uint64_t)(i + 1) * 65536, .len = sizeof(r[i].buf),
					     .buf = r[i].buf, .aio = &aio };
		r[i].job.io = &r[i].io;
		fetch_pool_queue(pool, &r[i].job, pooled_done);
	}
	CHECK(!aio_drain(&aio), "drain");
	/* The reads take the lock in any order (a mutex is not a queue, and
	 * the first two threads start together): the one that takes it
	 * third has waited 4 s, past its budget, and fails then; the others
	 * fetch. */
	int timed_out = 0;
	for (int i = 0; i < 3; i++) {
		CHECK(r[i].res == 0 || r[i].res == -ETIMEDOUT, "read %d: %d", i, r[i].res);
		timed_out += r[i].res == -ETIMEDOUT;
	}
	/* (two, on a host too busy to end the first fetch within 1 s of its 2 s) */
	CHECK(timed_out >= 1 && timed_out <= 2, "a read whose budget went in waiting fails, and the "
	      "first fetches: %d after %llu ms, %d after %llu ms, %d after %llu ms", r[0].res,
	      (unsigned long long)r[0].ms, r[1].res, (unsigned long long)r[1].ms, r[2].res,
	      (unsigned long long)r[2].ms);
	for (int i = 0; i < 3; i++)
		CHECK(r[i].ms < 2 * 3000, "read %d ended after %llu ms", i, (unsigned long long)r[i].ms);
	fetch_pool_stop(pool);
	blob_close(b);
}

int main(void)
{
	const char *port = getenv("UBLK_HOSTILE_PORT");

	test_held_budget();
	test_chunk_map();
	test_content_range();
	test_etag();
	test_url_for_log();
	test_chunk_cache();
	test_auth_file();
	if (port) {
		test_hostile(atoi(port));
		test_chunk_fetch(atoi(port));
		test_conn_reuse(atoi(port));
		test_remote_unreadable(atoi(port));
		test_remote_close(atoi(port));
		test_blob_stall(atoi(port));
		test_pool_wait_counts(atoi(port));
	} else
		printf("UBLK_HOSTILE_PORT not set: no requests to a hostile server\n");
	return check_summary();
}
