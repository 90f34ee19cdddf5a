/* Access trace files, format 1 (docs/access-trace.md):
 *
 *   ublk-access-trace 1
 *   image INDEX ROLE IDENTITY SIZE CHUNK_SIZE   0 to 64 lines, INDEX 0, 1, 2 ...
 *   start UNIX_MS LABEL
 *   T_MS IMAGE CHUNK KIND                       entries: T_MS never decreases,
 *                                               each (IMAGE, CHUNK) once
 *   end COUNT CRC                               CRC-32C of every byte before it
 *
 * Every line ends in '\n' and holds at most TRACE_MAX_LINE bytes before it;
 * fields are separated by one space; numbers are decimal digits without a
 * leading zero, hex digits lowercase. So a trace has exactly one text, and
 * trace_format gives back the very bytes trace_parse accepted.
 *
 * The bytes come from outside (a URL, another host): the reader bounds the
 * file, the line, every number and every count before using it, and finds
 * a repeated chunk with a hash set. The checks of values are shared by the
 * parser, which names the line, and trace_check (what the writer and the
 * merge rely on), which names the image or entry. */
#include "image/access_trace.h"
#include "image/chunkcache.h"
#include "image/http.h"
#include "util/atomic_file.h"
#include "util/output_file.h"
#include "util/crc32c.h"
#include "util/fileio.h"
#include "util/parse.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define MAGIC "ublk-access-trace"
#define MAX_FIELDS 6
#define MIN_ENTRY_LINE 8        /* "0 0 0 r\n" */
#define LABEL_CHARS "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-"

static const char *const role_names[] = { "base", "layer", "e2b" };

const char *trace_role_name(enum trace_role role)
{
	return (unsigned)role <= TRACE_E2B ? role_names[role] : "?";
}

uint64_t trace_image_chunks(const struct trace_image *img)
{
	if (!img->chunk_size)
		return 0;
	return img->size / img->chunk_size + (img->size % img->chunk_size != 0);
}

static int say(char *why, size_t whylen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int say(char *why, size_t whylen, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(why, whylen, fmt, ap);
	va_end(ap);
	return -EINVAL;
}

/* ---- the checks of values, shared by the parser and trace_check ---- */

static int bad_chunk_size(uint64_t cs, char *why, size_t whylen)
{
	return say(why, whylen, "chunk size %llu: expected a multiple of 4096 from %u to %u",
		   (unsigned long long)cs, CHUNK_CACHE_MIN_CHUNK, CHUNK_CACHE_MAX_CHUNK);
}

static int check_image(const struct trace_image *img, char *why, size_t whylen)
{
	uint64_t cs = img->chunk_size;

	if ((unsigned)img->role > TRACE_E2B)
		return say(why, whylen, "role %d is not base, layer or e2b", (int)img->role);
	if (strnlen(img->identity, sizeof(img->identity)) != 64 ||
	    strspn(img->identity, "0123456789abcdef") != 64)
		return say(why, whylen, "identity is not 64 lowercase hex digits");
	if (!img->size || img->size > HTTP_MAX_IMAGE_SIZE)
		return say(why, whylen, "size %llu: expected 1 to %llu", (unsigned long long)img->size,
			   (unsigned long long)HTTP_MAX_IMAGE_SIZE);
	if (cs < CHUNK_CACHE_MIN_CHUNK || cs > CHUNK_CACHE_MAX_CHUNK || cs % 4096)
		return bad_chunk_size(cs, why, whylen);
	return 0;
}

static int check_start(uint64_t ms, const char *label, char *why, size_t whylen)
{
	size_t n = strnlen(label, TRACE_MAX_LABEL + 1);

	if (ms > TRACE_MAX_START_MS)
		return say(why, whylen, "start %llu ms: expected at most %llu", (unsigned long long)ms,
			   (unsigned long long)TRACE_MAX_START_MS);
	if (!n || n > TRACE_MAX_LABEL || strspn(label, LABEL_CHARS) != n)
		return say(why, whylen, "label: expected 1 to %d of A-Z a-z 0-9 . _ -", TRACE_MAX_LABEL);
	return 0;
}

/* An entry of t (image and chunk not yet narrowed to the entry's fields). */
static int check_entry(const struct access_trace *t, uint64_t ms, uint64_t prev_ms, uint64_t image,
		       uint64_t chunk, char *why, size_t whylen)
{
	if (ms > TRACE_MAX_MS)
		return say(why, whylen, "time %llu ms: expected at most %llu", (unsigned long long)ms,
			   (unsigned long long)TRACE_MAX_MS);
	if (ms < prev_ms)
		return say(why, whylen, "time %llu ms is before the previous entry's %llu ms",
			   (unsigned long long)ms, (unsigned long long)prev_ms);
	if (image >= t->nimages)
		return say(why, whylen, "image %llu, but the trace has %u image%s",
			   (unsigned long long)image, t->nimages, t->nimages == 1 ? "" : "s");
	uint64_t chunks = trace_image_chunks(&t->images[image]);
	if (chunk >= chunks)
		return say(why, whylen, "chunk %llu is past image %llu's %llu chunks",
			   (unsigned long long)chunk, (unsigned long long)image, (unsigned long long)chunks);
	return 0;
}

/* The entries seen so far, by (image, chunk): open addressing over entry
 * indices + 1 (0: empty), sized for the most entries there can be. */
struct chunk_set {
	uint32_t *slot;
	size_t mask;
};

static int set_init(struct chunk_set *s, size_t max_entries)
{
	size_t n = 16;
	while (n < 2 * max_entries)
		n *= 2;
	s->mask = n - 1;
	s->slot = calloc(n, sizeof(*s->slot));
	return s->slot ? 0 : -ENOMEM;
}

static uint64_t entry_key(const struct trace_entry *e)
{
	return e->chunk << 6 | e->image;      /* chunk < 2^32, image < 64 */
}

/* Add entry i of e; the index of an earlier entry of the same chunk, or -1. */
static long set_add(struct chunk_set *s, const struct trace_entry *e, size_t i)
{
	uint64_t key = entry_key(&e[i]), h = key * 0x9e3779b97f4a7c15ull;
	size_t k = (size_t)(h ^ h >> 32) & s->mask;

	for (; s->slot[k]; k = (k + 1) & s->mask)
		if (entry_key(&e[s->slot[k] - 1]) == key)
			return (long)s->slot[k] - 1;
	s->slot[k] = (uint32_t)i + 1;
	return -1;
}

int trace_check(const struct access_trace *t, char *why, size_t whylen)
{
	struct chunk_set set = { 0 };
	char sub[256];
	uint64_t prev = 0;
	int ret = 0;

	if (t->nimages > TRACE_MAX_IMAGES)
		return say(why, whylen, "%u images, more than %d", t->nimages, TRACE_MAX_IMAGES);
	for (unsigned i = 0; i < t->nimages; i++)
		if (check_image(&t->images[i], sub, sizeof(sub)))
			return say(why, whylen, "image %u: %s", i, sub);
	if (check_start(t->start_ms, t->label, sub, sizeof(sub)))
		return say(why, whylen, "%s", sub);
	if (t->n > TRACE_MAX_ENTRIES)
		return say(why, whylen, "%zu entries, more than %u", t->n, TRACE_MAX_ENTRIES);
	if ((ret = set_init(&set, t->n)))
		return say(why, whylen, "out of memory"), ret;
	for (size_t i = 0; i < t->n && !ret; i++) {
		const struct trace_entry *e = &t->entries[i];
		long first;
		if (check_entry(t, e->t_ms, prev, e->image, e->chunk, sub, sizeof(sub)))
			ret = say(why, whylen, "entry %zu: %s", i, sub);
		else if ((first = set_add(&set, t->entries, i)) >= 0)
			ret = say(why, whylen, "entry %zu: chunk %llu of image %u is entry %ld already", i,
				  (unsigned long long)e->chunk, e->image, first);
		prev = e->t_ms;
	}
	free(set.slot);
	return ret;
}

/* ---- the reader ---- */

struct parser {
	const char *buf;
	size_t len, pos, line_start;
	unsigned line;
	char text[TRACE_MAX_LINE + 1];
	char *f[MAX_FIELDS];
	int nf;
	char shown[48];
	char *why;
	size_t whylen;
};

static int fail(struct parser *p, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int fail(struct parser *p, const char *fmt, ...)
{
	char msg[400];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	return say(p->why, p->whylen, "line %u: %s", p->line, msg);
}

/* A field quoted in a message: printable ASCII only, cut short. */
static const char *shown(struct parser *p, const char *s)
{
	size_t n = 0;
	for (; s[n] && n < sizeof(p->shown) - 4; n++)
		p->shown[n] = s[n] >= 0x20 && s[n] < 0x7f ? s[n] : '?';
	snprintf(p->shown + n, sizeof(p->shown) - n, "%s", s[n] ? "..." : "");
	return p->shown;
}

/* Decimal digits without a leading zero: 0, -EINVAL, -ERANGE (> 2^64). */
static int dec(const char *s, uint64_t *v)
{
	if (s[0] == '0' && s[1])
		return -EINVAL;
	return parse_uint(s, 0, UINT64_MAX, v);
}

static int number(struct parser *p, const char *what, const char *s, uint64_t *v)
{
	int ret = dec(s, v);
	if (ret == -ERANGE)
		return fail(p, "%s %s: too large", what, shown(p, s));
	if (ret)
		return fail(p, "%s '%s': expected a decimal number (digits, no leading zero)", what,
			    shown(p, s));
	return 0;
}

static int fields(struct parser *p, int want, const char *form)
{
	if (p->nf != want)
		return fail(p, "expected '%s' (%d fields), got %d field%s", form, want, p->nf,
			    p->nf == 1 ? "" : "s");
	return 0;
}

/* The next line into p->text, cut into fields at single spaces. */
static int next_line(struct parser *p)
{
	const char *s = p->buf + p->pos, *nl = memchr(s, '\n', p->len - p->pos);
	size_t n = nl ? (size_t)(nl - s) : p->len - p->pos;

	p->line++;
	if (n > TRACE_MAX_LINE)
		return fail(p, "longer than %d bytes", TRACE_MAX_LINE);
	if (!nl)
		return fail(p, "no newline at its end: the trace was cut short");
	if (memchr(s, 0, n))
		return fail(p, "a NUL byte");
	if (!n)
		return fail(p, "an empty line");
	memcpy(p->text, s, n);
	p->text[n] = 0;
	p->line_start = p->pos;
	p->pos += n + 1;
	p->nf = 0;
	for (char *f = p->text; f; p->nf++) {
		if (p->nf == MAX_FIELDS)
			return fail(p, "more than %d fields", MAX_FIELDS);
		p->f[p->nf] = f;
		if ((f = strchr(f, ' ')))
			*f++ = 0;
		if (!*p->f[p->nf])
			return fail(p, "an empty field (fields are separated by one space)");
	}
	return 0;
}

static int magic_line(struct parser *p)
{
	uint64_t v;

	if (p->nf != 2 || strcmp(p->f[0], MAGIC))
		return fail(p, "not an access trace (expected '" MAGIC " %d')", TRACE_VERSION);
	if (dec(p->f[1], &v) || v != TRACE_VERSION)
		return fail(p, "format version %s: this reader knows %d", shown(p, p->f[1]), TRACE_VERSION);
	return 0;
}

static int image_line(struct parser *p, struct access_trace *t)
{
	struct trace_image *img = &t->images[t->nimages];
	uint64_t index, size, cs;
	char sub[256];
	int ret, role = 0;

	if ((ret = fields(p, 6, "image INDEX ROLE IDENTITY SIZE CHUNK_SIZE")))
		return ret;
	if (t->nimages == TRACE_MAX_IMAGES)
		return fail(p, "more than %d image lines", TRACE_MAX_IMAGES);
	if ((ret = number(p, "index", p->f[1], &index)))
		return ret;
	if (index != t->nimages)
		return fail(p, "image index %llu, expected %u (image lines count from 0, in order)",
			    (unsigned long long)index, t->nimages);
	while (role <= TRACE_E2B && strcmp(p->f[2], role_names[role]))
		role++;
	if (role > TRACE_E2B)
		return fail(p, "role '%s': expected base, layer or e2b", shown(p, p->f[2]));
	if ((ret = number(p, "size", p->f[4], &size)) || (ret = number(p, "chunk size", p->f[5], &cs)))
		return ret;
	if (strlen(p->f[3]) != 64)
		return fail(p, "identity is not 64 lowercase hex digits");
	img->role = (enum trace_role)role;
	memcpy(img->identity, p->f[3], 65);
	img->size = size;
	img->chunk_size = (uint32_t)cs;
	if (cs > UINT32_MAX ? bad_chunk_size(cs, sub, sizeof(sub)) : check_image(img, sub, sizeof(sub)))
		return fail(p, "%s", sub);
	t->nimages++;
	return 0;
}

static int start_line(struct parser *p, struct access_trace *t)
{
	char sub[256];
	int ret;

	if ((ret = fields(p, 3, "start UNIX_MS LABEL")) || (ret = number(p, "start", p->f[1], &t->start_ms)))
		return ret;
	if (check_start(t->start_ms, p->f[2], sub, sizeof(sub)))
		return fail(p, "%s", sub);
	memcpy(t->label, p->f[2], strlen(p->f[2]) + 1);
	return 0;
}

static int entry_line(struct parser *p, struct access_trace *t, struct chunk_set *set,
		      unsigned first_line)
{
	uint64_t ms, image, chunk;
	char sub[256];
	long first;
	int ret;

	if (p->f[0][0] < '0' || p->f[0][0] > '9') {
		if (!strcmp(p->f[0], "start") || !strcmp(p->f[0], "image"))
			return fail(p, "%s line after the start line",
				    p->f[0][0] == 's' ? "a second start" : "an image");
		return fail(p, "'%s': expected an entry 'T_MS IMAGE CHUNK KIND' or the end line",
			    shown(p, p->f[0]));
	}
	if ((ret = fields(p, 4, "T_MS IMAGE CHUNK KIND")) || (ret = number(p, "time", p->f[0], &ms)) ||
	    (ret = number(p, "image", p->f[1], &image)) || (ret = number(p, "chunk", p->f[2], &chunk)))
		return ret;
	if (check_entry(t, ms, t->n ? t->entries[t->n - 1].t_ms : 0, image, chunk, sub, sizeof(sub)))
		return fail(p, "%s", sub);
	if (strcmp(p->f[3], "r") && strcmp(p->f[3], "w"))
		return fail(p, "kind '%s': expected r or w", shown(p, p->f[3]));
	if ((ret = trace_add(t, (uint16_t)image, chunk, ms, p->f[3][0] == 'w')))
		return ret == -ENOSPC ? fail(p, "more than %u entries", TRACE_MAX_ENTRIES) :
		       (say(p->why, p->whylen, "out of memory"), ret);
	if ((first = set_add(set, t->entries, t->n - 1)) >= 0)
		return fail(p, "chunk %llu of image %llu appears twice (first on line %lu)",
			    (unsigned long long)chunk, (unsigned long long)image, first_line + (unsigned long)first);
	return 0;
}

static int end_line(struct parser *p, struct access_trace *t)
{
	uint64_t count;
	int ret;

	if ((ret = fields(p, 3, "end COUNT CRC")) || (ret = number(p, "count", p->f[1], &count)))
		return ret;
	if (count != t->n)
		return fail(p, "count %llu, but the trace has %zu entries", (unsigned long long)count, t->n);
	if (strlen(p->f[2]) != 8 || strspn(p->f[2], "0123456789abcdef") != 8)
		return fail(p, "checksum '%s': expected 8 lowercase hex digits", shown(p, p->f[2]));
	uint32_t want = (uint32_t)strtoul(p->f[2], NULL, 16), got = crc32c(0, p->buf, p->line_start);
	if (want != got)
		return fail(p, "checksum %08x, but the bytes before this line have %08x: the trace was "
			    "damaged or edited", want, got);
	return 0;
}

/* A line between the magic and the start line: an image or the start. */
static int header_line(struct parser *p, struct access_trace *t, bool *started)
{
	if (!strcmp(p->f[0], "image"))
		return image_line(p, t);
	if (!strcmp(p->f[0], "start")) {
		*started = true;
		return start_line(p, t);
	}
	if (p->f[0][0] >= '0' && p->f[0][0] <= '9')
		return fail(p, "an entry before the start line");
	return fail(p, "'%s': expected an image or the start line", shown(p, p->f[0]));
}

int trace_parse(const char *buf, size_t len, struct access_trace *t, char *why, size_t whylen)
{
	struct parser p = { .buf = buf, .len = len, .why = why, .whylen = whylen };
	struct chunk_set set = { 0 };
	bool started = false, ended = false;
	unsigned first_entry_line = 0;
	int ret = 0;

	memset(t, 0, sizeof(*t));
	why[0] = 0;
	if (len > TRACE_MAX_BYTES)
		ret = say(why, whylen, "%zu bytes, more than the %u a trace may have", len, TRACE_MAX_BYTES);
	else if (!len)
		ret = say(why, whylen, "empty: not an access trace");
	while (!ret && p.pos < len) {
		if (ended) {
			p.line++;
			ret = fail(&p, "text after the end line");
		} else if ((ret = next_line(&p))) {
			break;
		} else if (p.line == 1) {
			ret = magic_line(&p);
		} else if (!started) {
			ret = header_line(&p, t, &started);
			if (!ret && started) {
				/* entry lines take 8 bytes or more: the most the rest holds */
				size_t most = (len - p.pos) / MIN_ENTRY_LINE;
				first_entry_line = p.line + 1;
				if ((ret = set_init(&set, most < TRACE_MAX_ENTRIES ? most : TRACE_MAX_ENTRIES)))
					say(why, whylen, "out of memory");
			}
		} else if (!strcmp(p.f[0], "end")) {
			ret = end_line(&p, t);
			ended = true;
		} else {
			ret = entry_line(&p, t, &set, first_entry_line);
		}
	}
	if (!ret && !ended)
		ret = say(why, whylen, "the file ends after line %u without its end line: the trace was "
			  "cut short", p.line);
	free(set.slot);
	if (ret)
		trace_free(t);
	return ret;
}

int trace_load(const char *path, struct access_trace *t, char *why, size_t whylen)
{
	char sub[512];
	char *buf = NULL;
	struct stat st;
	int ret = 0;
	int fd;

	memset(t, 0, sizeof(*t));
	/* a trace file is local (--prefetch-trace reads a URL itself) */
	if ((ret = http_refuse_url("", path, why, whylen)))
		return ret;
	fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK);
	if (fd < 0) {
		ret = -errno;
		snprintf(why, whylen, "%s: %s", path, errno == ELOOP ? "a symbolic link: not followed" :
			 strerror(errno));
	} else if (fstat(fd, &st)) {
		ret = -errno;
		snprintf(why, whylen, "%s: %s", path, strerror(errno));
	} else if (!S_ISREG(st.st_mode)) {
		ret = say(why, whylen, "%s: not a regular file", path);
	} else if ((uint64_t)st.st_size > TRACE_MAX_BYTES) {
		ret = say(why, whylen, "%s: %lld bytes, more than the %u a trace may have", path,
			  (long long)st.st_size, TRACE_MAX_BYTES);
	} else if (!(buf = malloc((size_t)st.st_size + 1))) {
		ret = -ENOMEM;
		snprintf(why, whylen, "%s: out of memory", path);
	} else if ((ret = pread_full(fd, buf, (size_t)st.st_size, 0))) {
		snprintf(why, whylen, "%s: %s", path, ret == -ENODATA ? "changed while being read" :
			 strerror(-ret));
		ret = ret == -ENODATA ? -EINVAL : ret;
	} else if ((ret = trace_parse(buf, (size_t)st.st_size, t, sub, sizeof(sub)))) {
		snprintf(why, whylen, "%s: %s", path, sub);
	}
	if (fd >= 0)
		close(fd);
	free(buf);
	return ret;
}

/* ---- the writer ---- */

struct text {
	char *p;
	size_t len, cap;
	bool full;
};

static void put(struct text *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void put(struct text *b, const char *fmt, ...)
{
	va_list ap;
	int n;

	if (b->full)
		return;
	va_start(ap, fmt);
	n = vsnprintf(b->p + b->len, b->cap - b->len, fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= b->cap - b->len || b->len + (size_t)n > TRACE_MAX_BYTES)
		b->full = true;
	else
		b->len += (size_t)n;
}

static int format_text(const struct access_trace *t, char **out, size_t *len, char *why, size_t whylen)
{
	struct text b = { 0 };
	int ret;

	*out = NULL;
	*len = 0;
	if ((ret = trace_check(t, why, whylen)))
		return ret;
	/* the longest lines: image 104 bytes, start 86, entry 30, end 21 */
	size_t most = 32 + (size_t)t->nimages * 128 + 96 + t->n * 40 + 32;
	b.cap = (most < TRACE_MAX_BYTES ? most : TRACE_MAX_BYTES) + 1;
	if (!(b.p = malloc(b.cap)))
		return say(why, whylen, "out of memory"), -ENOMEM;
	put(&b, "%s %d\n", MAGIC, TRACE_VERSION);
	for (unsigned i = 0; i < t->nimages; i++) {
		const struct trace_image *img = &t->images[i];
		put(&b, "image %u %s %s %llu %u\n", i, trace_role_name(img->role), img->identity,
		    (unsigned long long)img->size, img->chunk_size);
	}
	put(&b, "start %llu %s\n", (unsigned long long)t->start_ms, t->label);
	for (size_t i = 0; i < t->n; i++) {
		const struct trace_entry *e = &t->entries[i];
		put(&b, "%llu %u %llu %c\n", (unsigned long long)e->t_ms, e->image,
		    (unsigned long long)e->chunk, e->write ? 'w' : 'r');
	}
	if (!b.full)
		put(&b, "end %zu %08x\n", t->n, crc32c(0, b.p, b.len));
	if (b.full) {
		free(b.p);
		return say(why, whylen, "%zu entries make more than the %u bytes a trace may have", t->n,
			   TRACE_MAX_BYTES);
	}
	*out = b.p;
	*len = b.len;
	return 0;
}

int trace_format(const struct access_trace *t, char **out, size_t *len)
{
	char why[256];
	return format_text(t, out, len, why, sizeof(why));
}

int trace_save(const char *path, const struct access_trace *t, char *why, size_t whylen)
{
	char sub[400], *text;
	size_t len;
	int ret = format_text(t, &text, &len, sub, sizeof(sub));

	if (ret) {
		snprintf(why, whylen, "%s: %s", path, sub);
		return ret;
	}
	ret = trace_write_text(path, text, len, why, whylen);
	free(text);
	return ret;
}

int trace_write_text(const char *path, const char *text, size_t len, char *why, size_t whylen)
{
	int ret = http_refuse_url("", path, why, whylen);

	if (!ret)
		ret = output_file_refuse_special(path, why, whylen);
	if (!ret && (ret = atomic_write_file(AT_FDCWD, path, text, len, 0644, ATOMIC_DURABLE)))
		snprintf(why, whylen, "%s: cannot create: %s", path, strerror(-ret));
	return ret;
}

int trace_add(struct access_trace *t, uint16_t image, uint64_t chunk, uint64_t t_ms, bool write)
{
	if (t->n == TRACE_MAX_ENTRIES)
		return -ENOSPC;
	if (t->n == t->cap) {
		size_t cap = t->cap ? t->cap * 2 : 256;
		if (cap > TRACE_MAX_ENTRIES)
			cap = TRACE_MAX_ENTRIES;
		struct trace_entry *e = realloc(t->entries, cap * sizeof(*e));
		if (!e)
			return -ENOMEM;
		t->entries = e;
		t->cap = cap;
	}
	t->entries[t->n++] = (struct trace_entry){ .t_ms = t_ms, .chunk = chunk, .image = image,
						   .write = write };
	return 0;
}

void trace_free(struct access_trace *t)
{
	free(t->entries);
	memset(t, 0, sizeof(*t));
}

/* ---- merging ---- */

bool trace_images_match(const struct access_trace *a, const struct access_trace *b, char *why,
			size_t whylen)
{
	if (a->nimages != b->nimages) {
		snprintf(why, whylen, "%u image lines against %u", a->nimages, b->nimages);
		return false;
	}
	for (unsigned i = 0; i < a->nimages; i++) {
		const struct trace_image *x = &a->images[i], *y = &b->images[i];
		if (x->role != y->role)
			snprintf(why, whylen, "image %u: role %s against %s", i, trace_role_name(x->role),
				 trace_role_name(y->role));
		else if (strcmp(x->identity, y->identity))
			snprintf(why, whylen, "image %u: identity %s against %s", i, x->identity, y->identity);
		else if (x->size != y->size)
			snprintf(why, whylen, "image %u: size %llu against %llu", i,
				 (unsigned long long)x->size, (unsigned long long)y->size);
		else if (x->chunk_size != y->chunk_size)
			snprintf(why, whylen, "image %u: chunk size %u against %u", i, x->chunk_size,
				 y->chunk_size);
		else
			continue;
		return false;
	}
	return true;
}

/* One entry of one input: (image, chunk), then time and kind, to sort by. */
struct sighting {
	uint64_t key;           /* image << 32 | chunk */
	uint64_t tw;            /* t_ms << 1 | write */
};

static int cmp_sighting(const void *a, const void *b)
{
	const struct sighting *x = a, *y = b;
	if (x->key != y->key)
		return x->key < y->key ? -1 : 1;
	return x->tw < y->tw ? -1 : x->tw > y->tw;
}

static int cmp_entry(const void *a, const void *b)
{
	const struct trace_entry *x = a, *y = b;
	if (x->t_ms != y->t_ms)
		return x->t_ms < y->t_ms ? -1 : 1;
	if (x->image != y->image)
		return x->image < y->image ? -1 : 1;
	return x->chunk < y->chunk ? -1 : x->chunk > y->chunk;
}

int trace_merge_seen(const struct access_trace *in, size_t n, struct access_trace *out,
		     uint64_t *seen, char *why, size_t whylen)
{
	struct sighting *s = NULL;
	size_t total = 0, k = 0, need = (n + 1) / 2;
	uint64_t distinct = 0;
	char sub[400];
	int ret = 0;

	memset(out, 0, sizeof(*out));
	if (!n)
		return say(why, whylen, "no trace to merge");
	for (size_t i = 0; i < n && !ret; i++) {
		if (trace_check(&in[i], sub, sizeof(sub)))
			ret = say(why, whylen, "trace %zu: %s", i, sub);
		else if (i && !trace_images_match(&in[i], &in[0], sub, sizeof(sub)))
			ret = say(why, whylen, "trace %zu is of other images than trace 0: %s", i, sub);
		total += in[i].n;
	}
	if (!ret && (total > SIZE_MAX / sizeof(*s) || !(s = malloc((total ? total : 1) * sizeof(*s)))))
		ret = -ENOMEM;
	for (size_t i = 0; i < n && !ret; i++)
		for (size_t j = 0; j < in[i].n; j++) {
			const struct trace_entry *e = &in[i].entries[j];
			s[k++] = (struct sighting){ (uint64_t)e->image << 32 | e->chunk, e->t_ms << 1 | e->write };
		}
	if (!ret)
		qsort(s, total, sizeof(*s), cmp_sighting);
	for (size_t g = 0, end; g < total && !ret; g = end) {
		size_t writes = 0;
		for (end = g; end < total && s[end].key == s[g].key; end++)
			writes += s[end].tw & 1;
		distinct++;
		if (end - g < need)
			continue;
		ret = trace_add(out, (uint16_t)(s[g].key >> 32), s[g].key & 0xffffffffu,
				s[g + (end - g - 1) / 2].tw >> 1, 2 * writes > end - g);
		if (ret == -ENOSPC)
			ret = say(why, whylen, "the merged trace would hold more than %u entries",
				  TRACE_MAX_ENTRIES);
	}
	if (!ret) {
		if (out->n)
			qsort(out->entries, out->n, sizeof(*out->entries), cmp_entry);
		memcpy(out->images, in[0].images, sizeof(out->images));
		out->nimages = in[0].nimages;
		for (size_t i = 0; i < n; i++)
			if (in[i].start_ms > out->start_ms)
				out->start_ms = in[i].start_ms;
		snprintf(out->label, sizeof(out->label), "merged");
		if (seen)
			*seen = distinct;
	}
	if (ret == -ENOMEM)
		snprintf(why, whylen, "out of memory");
	if (ret)
		trace_free(out);
	free(s);
	return ret;
}

int trace_merge(const struct access_trace *in, size_t n, struct access_trace *out, char *why,
		size_t whylen)
{
	return trace_merge_seen(in, n, out, NULL, why, whylen);
}
