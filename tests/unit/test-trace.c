/* Access trace files (docs/access-trace.md): the text round trip, one
 * refusal of each kind with the line and the reason, the size limits at
 * their boundary, loading (no symlink, no FIFO), saving, and merging. */
#include "image/access_trace.h"
#include "util/crc32c.h"
#include "util/sha256.h"
#include "check.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define ID_A "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
#define ID_B "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
/* image 0: 5 GiB in 4 MiB chunks (1280), image 1: 1 MiB in 64 KiB chunks (16) */
#define IMG0 "image 0 base " ID_A " 5368709120 4194304\n"
#define IMG1 "image 1 layer " ID_B " 1048576 65536\n"
#define HEAD "ublk-access-trace 1\n" IMG0 IMG1 "start 1764687600123 boot\n"

static char dir[] = "/tmp/test-trace.XXXXXX";

static char *tmp(const char *name)
{
	static char paths[4][300];
	static int next;
	char *p = paths[next++ % 4];
	snprintf(p, sizeof(paths[0]), "%s/%s", dir, name);
	return p;
}

/* body with its end line: the entry lines after "start" counted (count < 0)
 * or as given, and the CRC-32C of body. Static buffer. */
static const char *sealed(const char *body, long count)
{
	static char buf[8192];
	const char *s = strstr(body, "\nstart ");
	if (count < 0) {
		count = 0;
		for (s = s ? strchr(s + 1, '\n') : NULL; s && s[1]; s = strchr(s + 1, '\n'))
			count++;
	}
	snprintf(buf, sizeof(buf), "%send %ld %08x\n", body, count, crc32c(0, body, strlen(body)));
	return buf;
}

static int parse_str(const char *text, struct access_trace *t, char *why, size_t whylen)
{
	return trace_parse(text, strlen(text), t, why, whylen);
}

/* text is refused with -EINVAL, why holds want, and t is left empty. */
static void refused(const char *text, size_t len, const char *want, int line)
{
	struct access_trace t;
	char why[512] = "";
	int ret = trace_parse(text, len, &t, why, sizeof(why));
	CHECK(ret == -EINVAL && strstr(why, want) && !t.n && !t.entries && !t.nimages,
	      "case at line %d: expected -EINVAL '%s', got %d '%s'", line, want, ret, why);
}
#define REFUSED(text, want) refused(text, strlen(text), want, __LINE__)
#define REFUSED_SEALED(body, want) REFUSED(sealed(body, -1), want)

/* The entries of t as "T IMAGE CHUNK KIND" lines. */
static const char *entries_of(const struct access_trace *t)
{
	static char buf[2048];
	size_t n = 0;
	buf[0] = 0;
	for (size_t i = 0; i < t->n && n < sizeof(buf); i++)
		n += (size_t)snprintf(buf + n, sizeof(buf) - n, "%llu %u %llu %c\n",
				      (unsigned long long)t->entries[i].t_ms, t->entries[i].image,
				      (unsigned long long)t->entries[i].chunk, t->entries[i].write ? 'w' : 'r');
	return buf;
}

static void test_crc_convention(void)
{
	/* the common CRC-32C (iSCSI, ext4): its check value */
	CHECK(crc32c(0, "123456789", 9) == 0xe3069283u, "crc32c check value %08x",
	      crc32c(0, "123456789", 9));
}

static void sha256_of(const void *data, size_t len, size_t piece, uint8_t out[SHA256_LEN])
{
	struct sha256 s;
	sha256_init(&s);
	for (size_t at = 0; at < len; at += piece)
		sha256_update(&s, (const uint8_t *)data + at, len - at < piece ? len - at : piece);
	sha256_final(&s, out);
}

/* FIPS 180-4's examples, and the portable code and the SHA extensions (where
 * this CPU has them) agreeing on every length and way of feeding the data. */
static void test_sha256(void)
{
	static const struct { const char *msg; size_t repeat; const char *hex; } vec[] = {
		{ "", 1, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855" },
		{ "abc", 1, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad" },
		{ "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq", 1,
		  "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1" },
		{ "a", 1000000, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0" },
	};
	uint8_t *buf = malloc(1000000), want[SHA256_LEN], got[SHA256_LEN];
	bool has_ext = sha256_use_portable(false);

	for (int portable = 0; portable < 2; portable++) {
		sha256_use_portable(portable);
		for (size_t v = 0; v < sizeof(vec) / sizeof(vec[0]); v++) {
			size_t n = strlen(vec[v].msg), len = n * vec[v].repeat;
			char hex[2 * SHA256_LEN + 1];
			for (size_t i = 0; i < vec[v].repeat; i++)
				memcpy(buf + i * n, vec[v].msg, n);
			sha256_hex(buf, len, hex);
			CHECK(!strcmp(hex, vec[v].hex), "sha256 vector %zu, portable %d: %s", v, portable, hex);
		}
	}
	for (size_t i = 0; i < 1000; i++)
		buf[i] = (uint8_t)(i * 151 + 3);
	for (size_t len = 0; len < 1000; len += 1 + len / 8) {
		sha256_use_portable(true);
		sha256_of(buf, len, len ? len : 1, want);
		sha256_use_portable(false);
		for (size_t piece = 1; piece <= 130; piece += 43) {
			sha256_of(buf, len, piece, got);
			CHECK(!memcmp(got, want, SHA256_LEN), "sha256 of %zu bytes in %zu-byte pieces "
			      "(extensions %d)", len, piece, has_ext);
		}
	}
	free(buf);
}

/* crc32c() picks the table or the instruction by timing them: both must give
 * the same answer for every length, alignment and continuation. */
static void test_crc_ways_agree(void)
{
	unsigned char buf[600];
	uint32_t table, insn;
	int has_insn = crc32c_by(CRC32C_SSE42, 0, "", 0, &insn) == 0;

	for (size_t i = 0; i < sizeof(buf); i++)
		buf[i] = (unsigned char)(i * 131 + 7);
	CHECK(crc32c_by(CRC32C_TABLE, 0, "123456789", 9, &table) == 0 && table == 0xe3069283u,
	      "table check value %08x", table);
	for (size_t len = 0; len < 300; len += 1 + len / 16) {
		for (size_t at = 0; at < 8; at++) {
			uint32_t whole = crc32c(0, buf + at, len);
			uint32_t split = crc32c(crc32c(0, buf + at, len / 3), buf + at + len / 3, len - len / 3);
			crc32c_by(CRC32C_TABLE, 0, buf + at, len, &table);
			CHECK(whole == split && whole == table, "len %zu at %zu: %08x %08x %08x", len, at,
			      whole, split, table);
			if (has_insn) {
				crc32c_by(CRC32C_SSE42, 0, buf + at, len, &insn);
				CHECK(insn == table, "len %zu at %zu: instruction %08x table %08x", len, at, insn,
				      table);
			}
		}
	}
	enum crc32c_way way = crc32c_chosen();
	CHECK(way == CRC32C_TABLE || (has_insn && way == CRC32C_SSE42), "chosen way %d", way);
}

static void test_round_trip(void)
{
	const char *text = sealed(HEAD "12 0 0 r\n15 0 1 r\n40 1 15 r\n41 0 1279 w\n", -1);
	struct access_trace t, u;
	char why[512] = "", *out = NULL, *again = NULL;
	size_t len = 0, len2 = 0;

	CHECK(parse_str(text, &t, why, sizeof(why)) == 0, "parse: %s", why);
	CHECK(t.nimages == 2 && t.images[0].role == TRACE_BASE && t.images[1].role == TRACE_LAYER &&
	      !strcmp(t.images[1].identity, ID_B) && t.images[0].size == 5368709120ull &&
	      t.images[1].chunk_size == 65536 && trace_image_chunks(&t.images[0]) == 1280 &&
	      trace_image_chunks(&t.images[1]) == 16, "images");
	CHECK(t.start_ms == 1764687600123ull && !strcmp(t.label, "boot") && t.n == 4, "start, label, count");
	CHECK(t.entries[2].t_ms == 40 && t.entries[2].image == 1 && t.entries[2].chunk == 15 &&
	      !t.entries[2].write && t.entries[3].write && t.entries[3].chunk == 1279, "entries");
	CHECK(trace_format(&t, &out, &len) == 0 && len == strlen(text) && !memcmp(out, text, len),
	      "format gives back the same bytes:\n%.*s", (int)len, out ? out : "");
	CHECK(trace_parse(out, len, &u, why, sizeof(why)) == 0 && u.n == t.n &&
	      !strcmp(entries_of(&u), "12 0 0 r\n15 0 1 r\n40 1 15 r\n41 0 1279 w\n"), "parse of format: %s", why);
	CHECK(trace_format(&u, &again, &len2) == 0 && len2 == len && !memcmp(again, out, len), "stable");
	CHECK(!strcmp(trace_role_name(TRACE_E2B), "e2b") && !strcmp(trace_role_name(TRACE_BASE), "base"),
	      "role names");
	trace_free(&t);
	trace_free(&u);
	free(out);
	free(again);

	/* no images, no entries: a trace of a stack without remote images */
	const char *empty = sealed("ublk-access-trace 1\nstart 0 -\n", -1);
	CHECK(parse_str(empty, &t, why, sizeof(why)) == 0 && !t.nimages && !t.n, "empty trace: %s", why);
	CHECK(trace_format(&t, &out, &len) == 0 && len == strlen(empty) && !memcmp(out, empty, len),
	      "empty trace round trip");
	trace_free(&t);
	free(out);
}

static void test_refusals(void)
{
	char big[1024];

	REFUSED("", "empty: not an access trace");
	REFUSED("ublk-access-tracer 1\n", "line 1: not an access trace (expected 'ublk-access-trace 1')");
	REFUSED("ublk-access-trace 2\n", "line 1: format version 2: this reader knows 1");
	REFUSED_SEALED("ublk-access-trace 1\n\nstart 0 -\n", "line 2: an empty line");
	REFUSED_SEALED("ublk-access-trace 1\nstart  0 -\n", "line 2: an empty field");
	REFUSED_SEALED("ublk-access-trace 1\nstart 0 - \n", "line 2: an empty field");
	static const char nul[] = "ublk-access-trace 1\nstart 0 -\0\nend 0 00000000\n";
	refused(nul, sizeof(nul) - 1, "line 2: a NUL byte", __LINE__);
	memset(big, 'x', sizeof(big));
	memcpy(big, "ublk-access-trace 1\nstart 0 ", 28);
	big[28 + 600] = '\n';
	big[28 + 601] = 0;
	REFUSED(big, "line 2: longer than 512 bytes");
	/* image lines */
	REFUSED_SEALED("ublk-access-trace 1\nimage 0 base " ID_A " 4096\nstart 0 -\n",
		       "line 2: expected 'image INDEX ROLE IDENTITY SIZE CHUNK_SIZE' (6 fields), got 5 fields");
	REFUSED_SEALED("ublk-access-trace 1\n" IMG0 "image 2 layer " ID_B " 4096 4096\nstart 0 -\n",
		       "line 3: image index 2, expected 1");
	REFUSED_SEALED("ublk-access-trace 1\nimage 0 root " ID_A " 4096 4096\nstart 0 -\n",
		       "line 2: role 'root': expected base, layer or e2b");
	REFUSED_SEALED("ublk-access-trace 1\nimage 0 base AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
		       "AAAAAAAA 4096 4096\nstart 0 -\n", "line 2: identity is not 64 lowercase hex digits");
	REFUSED_SEALED("ublk-access-trace 1\nimage 0 base abc 4096 4096\nstart 0 -\n",
		       "line 2: identity is not 64 lowercase hex digits");
	REFUSED_SEALED("ublk-access-trace 1\nimage 0 base " ID_A " 0 4096\nstart 0 -\n",
		       "line 2: size 0: expected 1 to 17592186044416");
	REFUSED_SEALED("ublk-access-trace 1\nimage 0 base " ID_A " 17592186044417 4096\nstart 0 -\n",
		       "line 2: size 17592186044417: expected 1 to 17592186044416");
	REFUSED_SEALED("ublk-access-trace 1\nimage 0 base " ID_A " 5G 4096\nstart 0 -\n",
		       "line 2: size '5G': expected a decimal number (digits, no leading zero)");
	REFUSED_SEALED("ublk-access-trace 1\nimage 0 base " ID_A " 04096 4096\nstart 0 -\n",
		       "line 2: size '04096': expected a decimal number");
	REFUSED_SEALED("ublk-access-trace 1\nimage 0 base " ID_A " 4096 -4096\nstart 0 -\n",
		       "line 2: chunk size '-4096': expected a decimal number");
	REFUSED_SEALED("ublk-access-trace 1\nimage 0 base " ID_A " 99999999999999999999999 4096\nstart 0 -\n",
		       "line 2: size 99999999999999999999999: too large");
	REFUSED_SEALED("ublk-access-trace 1\nimage 0 base " ID_A " 4096 6144\nstart 0 -\n",
		       "line 2: chunk size 6144: expected a multiple of 4096 from 4096 to 67108864");
	REFUSED_SEALED("ublk-access-trace 1\nimage 0 base " ID_A " 4096 134217728\nstart 0 -\n",
		       "line 2: chunk size 134217728: expected a multiple of 4096");
	REFUSED_SEALED("ublk-access-trace 1\nimage 0 base " ID_A " 4096 4294971392\nstart 0 -\n",
		       "line 2: chunk size 4294971392: expected a multiple of 4096");
	REFUSED_SEALED("ublk-access-trace 1\n" IMG0 "0 0 0 r\nstart 0 -\n", "line 3: an entry before the start line");
	REFUSED_SEALED("ublk-access-trace 1\n" IMG0 "images 1\nstart 0 -\n",
		       "line 3: 'images': expected an image or the start line");
	REFUSED("ublk-access-trace 1\n" IMG0 "end 0 00000000\n", "line 3: 'end': expected an image or the start line");
	/* the start line */
	REFUSED_SEALED("ublk-access-trace 1\nstart 0\n", "line 2: expected 'start UNIX_MS LABEL' (3 fields), got 2");
	REFUSED_SEALED("ublk-access-trace 1\nstart 17592186044417 -\n",
		       "line 2: start 17592186044417 ms: expected at most 17592186044416");
	REFUSED_SEALED("ublk-access-trace 1\nstart 0 a/b\n", "line 2: label: expected 1 to 64 of A-Z a-z 0-9 . _ -");
	REFUSED_SEALED("ublk-access-trace 1\nstart 0 "
		       "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\n", "line 2: label: expected");
	/* entries */
	REFUSED_SEALED(HEAD "0 0 0 r\nstart 5 -\n", "line 6: a second start line after the start line");
	REFUSED_SEALED(HEAD "image 2 base " ID_A " 4096 4096\n", "line 5: an image line after the start line");
	REFUSED_SEALED(HEAD "ends 0 0\n", "line 5: 'ends': expected an entry 'T_MS IMAGE CHUNK KIND' or the end line");
	REFUSED_SEALED(HEAD "0 0 0\n", "line 5: expected 'T_MS IMAGE CHUNK KIND' (4 fields), got 3 fields");
	REFUSED_SEALED(HEAD "0 0 0 r x\n", "line 5: expected 'T_MS IMAGE CHUNK KIND' (4 fields), got 5 fields");
	REFUSED_SEALED(HEAD "0 0 0 r 1 2 3\n", "line 5: more than 6 fields");
	REFUSED_SEALED(HEAD "1099511627777 0 0 r\n", "line 5: time 1099511627777 ms: expected at most 1099511627776");
	REFUSED_SEALED(HEAD "5 0 0 r\n4 0 1 r\n", "line 6: time 4 ms is before the previous entry's 5 ms");
	REFUSED_SEALED(HEAD "0 2 0 r\n", "line 5: image 2, but the trace has 2 images");
	REFUSED_SEALED(HEAD "0 0 0 r\n1 1 0 r\n2 0 5000 r\n", "line 7: chunk 5000 is past image 0's 1280 chunks");
	REFUSED_SEALED(HEAD "0 1 16 r\n", "line 5: chunk 16 is past image 1's 16 chunks");
	REFUSED_SEALED(HEAD "0 0 0 x\n", "line 5: kind 'x': expected r or w");
	REFUSED_SEALED(HEAD "0 0 0 r\r\n", "line 5: kind 'r?': expected r or w");
	REFUSED_SEALED(HEAD "0 0 1 r\n1 1 1 r\n2 0 1 w\n", "line 7: chunk 1 of image 0 appears twice (first on line 5)");
	REFUSED_SEALED(HEAD "0 00 1 r\n", "line 5: image '00': expected a decimal number");
	/* the end line */
	REFUSED(sealed(HEAD "0 0 1 r\n", 2), "line 6: count 2, but the trace has 1 entries");
	REFUSED(HEAD "0 0 1 r\nend 1\n", "line 6: expected 'end COUNT CRC' (3 fields), got 2 fields");
	REFUSED(HEAD "0 0 1 r\nend 1 ABCDEF12\n", "line 6: checksum 'ABCDEF12': expected 8 lowercase hex digits");
	REFUSED(HEAD "0 0 1 r\nend 1 abcdef1\n", "line 6: checksum 'abcdef1': expected 8 lowercase hex digits");
	REFUSED(HEAD "end 0 00000000\n", "line 5: checksum 00000000, but the bytes before this line have ");

	/* a CRC mismatch: one byte changed anywhere before the end line */
	char text[1024];
	snprintf(text, sizeof(text), "%s", sealed(HEAD "12 0 0 r\n15 0 1 r\n", -1));
	strstr(text, "15 0 1 r")[1] = '6';
	REFUSED(text, "line 7: checksum ");
	REFUSED(text, "the trace was damaged or edited");

	/* nothing after the end line, not even an empty line */
	snprintf(text, sizeof(text), "%s\n", sealed(HEAD "12 0 0 r\n", -1));
	REFUSED(text, "line 7: text after the end line");
	snprintf(text, sizeof(text), "%send 0 00000000\n", sealed(HEAD, -1));
	REFUSED(text, "line 6: text after the end line");

	/* cut short: every proper prefix of a trace is refused */
	snprintf(text, sizeof(text), "%s", sealed(HEAD "12 0 0 r\n15 0 1 r\n40 1 15 w\n", -1));
	size_t len = strlen(text), refused_all = 1;
	for (size_t n = 0; n < len; n++) {
		struct access_trace t;
		char why[512];
		if (trace_parse(text, n, &t, why, sizeof(why)) != -EINVAL || t.n)
			refused_all = 0;
	}
	CHECK(refused_all, "every prefix of a trace is refused");
	refused(text, len - 1, "line 8: no newline at its end: the trace was cut short", __LINE__);
	refused(text, len - 15, "the file ends after line 7 without its end line: the trace was cut short",
		__LINE__);
}

/* The limits: 64 images, TRACE_MAX_BYTES, TRACE_MAX_ENTRIES. */
static void test_limits(void)
{
	static char text[TRACE_MAX_IMAGES * 120 + 256];
	struct access_trace t = { 0 }, u;
	char why[512] = "", *out = NULL;
	size_t len = 0, n = 0;
	int ret;

	n += (size_t)snprintf(text + n, sizeof(text) - n, "ublk-access-trace 1\n");
	for (int i = 0; i < TRACE_MAX_IMAGES; i++)
		n += (size_t)snprintf(text + n, sizeof(text) - n, "image %d e2b %s 4096 4096\n", i, ID_A);
	snprintf(text + n, sizeof(text) - n, "start 0 -\n");
	CHECK(parse_str(sealed(text, -1), &u, why, sizeof(why)) == 0 && u.nimages == TRACE_MAX_IMAGES,
	      "64 images: %s", why);
	trace_free(&u);
	snprintf(text + n, sizeof(text) - n, "image 64 e2b %s 4096 4096\nstart 0 -\n", ID_A);
	REFUSED_SEALED(text, "line 66: more than 64 image lines");

	/* exactly TRACE_MAX_BYTES is read, one more byte is refused: short
	 * entries "0 0 C r", then a byte more for each of the last k entries
	 * whose time becomes 10 */
	t.nimages = 1;
	t.images[0] = (struct trace_image){ TRACE_BASE, ID_A, 1ull << 44, 4096 };
	snprintf(t.label, sizeof(t.label), "limit");
	for (uint64_t c = 0; c < 330000; c++)
		trace_add(&t, 0, c, 0, false);
	CHECK(trace_format(&t, &out, &len) == 0 && len < TRACE_MAX_BYTES, "330000 short entries: %zu", len);
	free(out);
	size_t k = TRACE_MAX_BYTES - len;
	CHECK(k < t.n, "%zu bytes to add", k);
	if (k >= t.n)
		return trace_free(&t);
	for (size_t i = t.n - k; i < t.n; i++)
		t.entries[i].t_ms = 10;
	CHECK(trace_format(&t, &out, &len) == 0 && len == TRACE_MAX_BYTES, "exactly the limit: %zu", len);
	ret = trace_parse(out, len, &u, why, sizeof(why));
	CHECK(ret == 0 && u.n == t.n, "a trace of TRACE_MAX_BYTES is read: %d %s", ret, why);
	trace_free(&u);
	char *more = realloc(out, len + 1);
	CHECK(more, "realloc");
	if (more) {
		more[len] = '\n';
		refused(more, len + 1, "4194305 bytes, more than the 4194304 a trace may have", __LINE__);
		free(more);
	}
	t.entries[t.n - k - 1].t_ms = 10;
	out = (char *)1;
	ret = trace_format(&t, &out, &len);
	CHECK(ret == -EINVAL && !out, "one byte over the limit is not written: %d", ret);
	ret = trace_save(tmp("big.trace"), &t, why, sizeof(why));
	CHECK(ret == -EINVAL && strstr(why, "330000 entries make more than the 4194304 bytes a trace may have") &&
	      access(tmp("big.trace"), F_OK), "save says why: %s", why);

	/* TRACE_MAX_ENTRIES entries can be held, not one more */
	trace_free(&t);
	t.nimages = 1;
	t.images[0] = (struct trace_image){ TRACE_BASE, ID_A, 1ull << 44, 4096 };
	snprintf(t.label, sizeof(t.label), "-");
	ret = 0;
	for (uint64_t c = 0; c < TRACE_MAX_ENTRIES && !ret; c++)
		ret = trace_add(&t, 0, c, c, false);
	CHECK(ret == 0 && t.n == TRACE_MAX_ENTRIES, "TRACE_MAX_ENTRIES added: %d", ret);
	CHECK(trace_check(&t, why, sizeof(why)) == 0, "TRACE_MAX_ENTRIES pass the check: %s", why);
	CHECK(trace_add(&t, 0, TRACE_MAX_ENTRIES, TRACE_MAX_ENTRIES, false) == -ENOSPC && t.n == TRACE_MAX_ENTRIES,
	      "one more is refused");
	t.n++;  /* as a writer might build it by hand (cap is TRACE_MAX_ENTRIES: not read) */
	CHECK(trace_check(&t, why, sizeof(why)) == -EINVAL && strstr(why, "1048577 entries, more than 1048576"),
	      "too many entries: %s", why);
	t.n--;
	CHECK(trace_format(&t, &out, &len) == -EINVAL, "1M entries do not fit 4 MiB of text");
	trace_free(&t);
}

static void test_check(void)
{
	struct access_trace t = { .nimages = 1 };
	char why[512] = "", *out;
	size_t len;

	t.images[0] = (struct trace_image){ TRACE_LAYER, ID_B, 1048576, 65536 };
	snprintf(t.label, sizeof(t.label), "x");
	trace_add(&t, 0, 1, 5, false);
	trace_add(&t, 0, 2, 6, true);
	CHECK(trace_check(&t, why, sizeof(why)) == 0, "valid: %s", why);
	trace_add(&t, 0, 1, 7, false);
	CHECK(trace_check(&t, why, sizeof(why)) == -EINVAL && !strcmp(why, "entry 2: chunk 1 of image 0 is entry 0 already"),
	      "duplicate: %s", why);
	CHECK(trace_format(&t, &out, &len) == -EINVAL, "format refuses it");
	t.entries[2].chunk = 3;
	t.entries[2].t_ms = 4;
	CHECK(trace_check(&t, why, sizeof(why)) == -EINVAL && strstr(why, "entry 2: time 4 ms is before"), "%s", why);
	t.entries[2].t_ms = 7;
	t.images[0].identity[3] = 'G';
	CHECK(trace_check(&t, why, sizeof(why)) == -EINVAL && !strcmp(why, "image 0: identity is not 64 lowercase hex digits"),
	      "%s", why);
	t.images[0].identity[3] = '3';
	t.label[0] = 0;
	CHECK(trace_check(&t, why, sizeof(why)) == -EINVAL && strstr(why, "label"), "%s", why);
	trace_free(&t);
}

static void test_files(void)
{
	const char *text = sealed(HEAD "12 0 0 r\n15 0 1 w\n", -1);
	struct access_trace t;
	char why[700];
	struct stat st;
	int fd, ret;

	fd = open(tmp("a.trace"), O_WRONLY | O_CREAT | O_TRUNC, 0600);
	CHECK(fd >= 0 && write(fd, text, strlen(text)) == (ssize_t)strlen(text), "write a.trace");
	close(fd);
	CHECK(trace_load(tmp("a.trace"), &t, why, sizeof(why)) == 0 && t.n == 2, "load: %s", why);

	/* a symlink in its place is refused, not followed nor replaced */
	CHECK(symlink(tmp("target"), tmp("b.trace")) == 0, "symlink");
	ret = trace_save(tmp("b.trace"), &t, why, sizeof(why));
	CHECK(ret == -EEXIST && strstr(why, "b.trace: is a symbolic link"), "symlink: %d %s", ret, why);
	CHECK(lstat(tmp("b.trace"), &st) == 0 && S_ISLNK(st.st_mode), "the link is left");
	CHECK(access(tmp("target"), F_OK) != 0, "the link's target was not written");
	/* saved atomically, mode 0644 */
	CHECK(unlink(tmp("b.trace")) == 0, "unlink");
	CHECK(trace_save(tmp("b.trace"), &t, why, sizeof(why)) == 0, "save: %s", why);
	CHECK(lstat(tmp("b.trace"), &st) == 0 && S_ISREG(st.st_mode) && (st.st_mode & 07777) == 0644 &&
	      (size_t)st.st_size == strlen(text), "saved as a file of its own, 0644");
	trace_free(&t);

	CHECK(symlink(tmp("a.trace"), tmp("link.trace")) == 0, "symlink");
	ret = trace_load(tmp("link.trace"), &t, why, sizeof(why));
	CHECK(ret == -ELOOP && strstr(why, "link.trace: a symbolic link: not followed"), "symlink: %d %s", ret, why);
	CHECK(mkfifo(tmp("fifo.trace"), 0600) == 0, "mkfifo");
	ret = trace_load(tmp("fifo.trace"), &t, why, sizeof(why));
	CHECK(ret == -EINVAL && strstr(why, "fifo.trace: not a regular file"), "fifo: %d %s", ret, why);
	ret = trace_load(tmp("none.trace"), &t, why, sizeof(why));
	CHECK(ret == -ENOENT && strstr(why, "none.trace: No such file"), "missing: %d %s", ret, why);
	fd = open(tmp("huge.trace"), O_WRONLY | O_CREAT | O_TRUNC, 0600);
	CHECK(fd >= 0 && ftruncate(fd, TRACE_MAX_BYTES + 1) == 0, "huge.trace");
	close(fd);
	ret = trace_load(tmp("huge.trace"), &t, why, sizeof(why));
	CHECK(ret == -EINVAL && strstr(why, "huge.trace: 4194305 bytes, more than the 4194304"), "huge: %s", why);
	fd = open(tmp("bad.trace"), O_WRONLY | O_CREAT | O_TRUNC, 0600);
	CHECK(fd >= 0 && write(fd, text, strlen(text) - 1) == (ssize_t)strlen(text) - 1, "bad.trace");
	close(fd);
	ret = trace_load(tmp("bad.trace"), &t, why, sizeof(why));
	CHECK(ret == -EINVAL && strstr(why, "bad.trace: line 7: no newline at its end"), "bad: %s", why);
}

/* A trace of HEAD's images from "T IMAGE CHUNK KIND" lines. */
static struct access_trace make(uint64_t start, const char *entries)
{
	char body[2048], why[512] = "";
	struct access_trace t;

	snprintf(body, sizeof(body), "ublk-access-trace 1\n" IMG0 IMG1 "start %llu x\n%s",
		 (unsigned long long)start, entries);
	if (parse_str(sealed(body, -1), &t, why, sizeof(why)))
		fprintf(stderr, "test trace refused: %s\n", why), exit(2);
	return t;
}

static void test_merge(void)
{
	struct access_trace in[4], out;
	char why[512] = "";
	uint64_t seen = 0;
	int ret;

	/* three starts: kept what two of them touched, at the lower median */
	in[0] = make(1000, "0 0 0 r\n5 0 1 r\n9 0 2 w\n9 1 4 r\n12 0 3 r\n");
	in[1] = make(3000, "1 0 1 r\n3 0 0 r\n8 1 4 r\n8 0 2 r\n20 0 7 r\n");
	in[2] = make(2000, "2 0 0 w\n4 0 2 w\n30 0 9 r\n");
	ret = trace_merge_seen(in, 3, &out, &seen, why, sizeof(why));
	CHECK(ret == 0, "merge: %s", why);
	CHECK(!strcmp(entries_of(&out), "1 0 1 r\n2 0 0 r\n8 0 2 w\n8 1 4 r\n"), "merged entries:\n%s",
	      entries_of(&out));
	CHECK(seen == 7 && out.start_ms == 3000 && !strcmp(out.label, "merged") && out.nimages == 2 &&
	      !memcmp(out.images, in[0].images, sizeof(out.images)), "seen %llu, start, label, images",
	      (unsigned long long)seen);
	char *text;
	size_t len;
	struct access_trace back;
	CHECK(trace_format(&out, &text, &len) == 0 && trace_parse(text, len, &back, why, sizeof(why)) == 0 &&
	      back.n == 4, "the merged trace is a valid trace: %s", why);
	free(text);
	trace_free(&back);
	trace_free(&out);
	for (int i = 0; i < 3; i++)
		trace_free(&in[i]);

	/* four: in two of them is enough; medians; a write in most */
	in[0] = make(1, "10 0 0 r\n11 0 1 w\n12 0 2 w\n13 0 3 r\n");
	in[1] = make(2, "20 0 0 w\n21 0 1 w\n22 0 2 w\n");
	in[2] = make(3, "30 0 0 w\n31 0 1 r\n32 0 2 w\n");
	in[3] = make(4, "40 0 0 r\n41 0 1 r\n");
	CHECK(trace_merge(in, 4, &out, why, sizeof(why)) == 0, "merge 4: %s", why);
	/* chunk 0: 10 20 30 40 -> 20, w in 2 of 4: r; chunk 1: 11 21 31 41 -> 21,
	 * w in 2 of 4: r; chunk 2: 12 22 32 -> 22, w in 3: w; chunk 3: in one of 4 */
	CHECK(!strcmp(entries_of(&out), "20 0 0 r\n21 0 1 r\n22 0 2 w\n"), "merged 4:\n%s", entries_of(&out));
	CHECK(out.start_ms == 4, "the newest start");
	trace_free(&out);
	/* two: in one of them is half */
	CHECK(trace_merge(in + 2, 2, &out, why, sizeof(why)) == 0 &&
	      !strcmp(entries_of(&out), "30 0 0 r\n31 0 1 r\n32 0 2 w\n"), "merged 2:\n%s", entries_of(&out));
	trace_free(&out);

	/* one: the same trace, labelled merged */
	char one[2048];
	snprintf(one, sizeof(one), "%s", entries_of(&in[0]));
	CHECK(trace_merge(in, 1, &out, why, sizeof(why)) == 0 && !strcmp(entries_of(&out), one) && out.start_ms == 1 &&
	      !strcmp(out.label, "merged"), "merge of one is the identity");
	trace_free(&out);

	/* ties in time: image, then chunk */
	trace_free(&in[3]);
	in[3] = make(4, "5 1 9 r\n5 0 7 r\n5 1 2 r\n5 0 8 w\n");
	CHECK(trace_merge(in + 3, 1, &out, why, sizeof(why)) == 0 &&
	      !strcmp(entries_of(&out), "5 0 7 r\n5 0 8 w\n5 1 2 r\n5 1 9 r\n"), "ties:\n%s", entries_of(&out));
	trace_free(&out);

	/* traces of other images are refused, naming the input and the difference */
	in[1].images[1].size = 2097152;
	ret = trace_merge(in, 3, &out, why, sizeof(why));
	CHECK(ret == -EINVAL && !strcmp(why, "trace 1 is of other images than trace 0: image 1: size 2097152 against 1048576")
	      && !out.n && !out.entries, "other images: %s", why);
	in[1].images[1].size = 1048576;
	in[2].nimages = 1;
	ret = trace_merge(in, 3, &out, why, sizeof(why));
	CHECK(ret == -EINVAL && !strcmp(why, "trace 2 is of other images than trace 0: 1 image lines against 2"),
	      "image count: %s", why);
	in[2].nimages = 2;
	CHECK(trace_merge(in, 0, &out, why, sizeof(why)) == -EINVAL && strstr(why, "no trace"), "none");
	in[2].entries[0].chunk = 99999;
	ret = trace_merge(in, 3, &out, why, sizeof(why));
	CHECK(ret == -EINVAL && !strcmp(why, "trace 2: entry 0: chunk 99999 is past image 0's 1280 chunks"),
	      "a broken input: %s", why);
	for (int i = 0; i < 4; i++)
		trace_free(&in[i]);
}

static void test_images_match(void)
{
	struct access_trace a = make(1, ""), b = make(2, "");
	char why[512] = "";

	CHECK(trace_images_match(&a, &b, why, sizeof(why)), "same images");
	b.images[0].role = TRACE_E2B;
	CHECK(!trace_images_match(&a, &b, why, sizeof(why)) && !strcmp(why, "image 0: role base against e2b"), "%s", why);
	b.images[0].role = TRACE_BASE;
	b.images[1].identity[63] = 'e';
	CHECK(!trace_images_match(&a, &b, why, sizeof(why)) &&
	      !strcmp(why, "image 1: identity " ID_B " against 0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdee"),
	      "%s", why);
	b.images[1].identity[63] = 'f';
	b.images[1].chunk_size = 4096;
	CHECK(!trace_images_match(&a, &b, why, sizeof(why)) && !strcmp(why, "image 1: chunk size 65536 against 4096"),
	      "%s", why);
	trace_free(&a);
	trace_free(&b);
}

int main(void)
{
	if (!mkdtemp(dir))
		return perror("mkdtemp"), 2;
	test_crc_convention();
	test_crc_ways_agree();
	test_sha256();
	test_round_trip();
	test_refusals();
	test_limits();
	test_check();
	test_files();
	test_merge();
	test_images_match();
	char cmd[400];
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	CHECK(system(cmd) == 0, "cleanup");
	return check_summary();
}
