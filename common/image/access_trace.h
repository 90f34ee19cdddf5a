/* Access trace files (docs/access-trace.md, format 1): which chunks of a
 * stack's remote images one start touched first, and when. Parsed from
 * outside bytes (a trace may come from a URL or a sandbox's host), so the
 * reader bounds and checks everything and refuses the whole file naming
 * the line. */
#ifndef UBLK_ACCESS_TRACE_H
#define UBLK_ACCESS_TRACE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define TRACE_VERSION      1
#define TRACE_MAX_BYTES    (4u << 20)
#define TRACE_MAX_LINE     512
#define TRACE_MAX_IMAGES   64
#define TRACE_MAX_ENTRIES  (1u << 20)
#define TRACE_MAX_LABEL    64
#define TRACE_MAX_MS       (1ull << 40)     /* T_MS bound: ~35 years of ms */
#define TRACE_MAX_START_MS (1ull << 44)     /* start bound (unix ms): the year 2527 */

enum trace_role { TRACE_BASE, TRACE_LAYER, TRACE_E2B };

struct trace_image {
	enum trace_role role;
	char identity[65];      /* 64 lowercase hex digits */
	uint64_t size;          /* bytes, 1 .. HTTP_MAX_IMAGE_SIZE */
	uint32_t chunk_size;    /* CHUNK_CACHE_MIN_CHUNK .. CHUNK_CACHE_MAX_CHUNK, a
				 * multiple of 4096 (what --chunk-size takes) */
};

struct trace_entry {
	uint64_t t_ms;          /* since start */
	uint64_t chunk;         /* below the image's chunk count */
	uint16_t image;         /* below nimages */
	bool write;             /* KIND w */
};

struct access_trace {
	struct trace_image images[TRACE_MAX_IMAGES];
	unsigned nimages;
	uint64_t start_ms;      /* unix ms */
	char label[TRACE_MAX_LABEL + 1];
	struct trace_entry *entries;    /* malloc'd */
	size_t n, cap;
};

const char *trace_role_name(enum trace_role role);     /* "base", "layer", "e2b" */
/* Chunks of an image: ceil(size / chunk_size). */
uint64_t trace_image_chunks(const struct trace_image *img);

/* Parse len bytes (need not end in a NUL) into t (its old content is not
 * freed). 0, or -EINVAL (-ENOMEM) with why naming the line and what is
 * wrong; t is then empty. A trace has one text: what it accepts,
 * trace_format gives back byte for byte. */
int trace_parse(const char *buf, size_t len, struct access_trace *t, char *why, size_t whylen);
/* Read path (a regular file, not followed if a symlink, at most
 * TRACE_MAX_BYTES) and parse it; why starts with the path. */
int trace_load(const char *path, struct access_trace *t, char *why, size_t whylen);
/* Does t keep every rule trace_parse checks (but the size of its text)?
 * 0, or -EINVAL with why naming the image or entry (-ENOMEM). */
int trace_check(const struct access_trace *t, char *why, size_t whylen);
/* The file's text, with its end line: malloc'd into *out, length *len.
 * -EINVAL if t breaks a rule trace_parse checks, the text's size
 * (TRACE_MAX_BYTES) included. */
int trace_format(const struct access_trace *t, char **out, size_t *len);
/* trace_format, written atomically and durably (atomic_file.h), mode 0644. */
int trace_save(const char *path, const struct access_trace *t, char *why, size_t whylen);
/* The same for text trace_format made. */
int trace_write_text(const char *path, const char *text, size_t len, char *why, size_t whylen);
/* Append one entry, growing the array: 0, -ENOMEM, or -ENOSPC when t
 * already holds TRACE_MAX_ENTRIES. Nothing is checked here (trace_check). */
int trace_add(struct access_trace *t, uint16_t image, uint64_t chunk, uint64_t t_ms, bool write);
/* Same images (role, identity, size, chunk size, order)? If not, why
 * names the first difference (a's line against b's). */
bool trace_images_match(const struct access_trace *a, const struct access_trace *b, char *why,
			size_t whylen);
/* Combine n >= 1 traces of the same images: a chunk is kept if it is in
 * at least half of them (rounded up), with the median of its T_MS values
 * (the lower of the two middle ones), written if it was a write in more
 * than half of the traces that hold it; entries ordered by that median,
 * then image, then chunk. start is the newest input's, the label
 * "merged". -EINVAL with why if the images differ or an input breaks a
 * rule (naming the input by its index in in[]), or if the result would
 * hold more than TRACE_MAX_ENTRIES; -ENOMEM. */
int trace_merge(const struct access_trace *in, size_t n, struct access_trace *out, char *why,
		size_t whylen);
/* trace_merge, and *seen: how many distinct chunks the inputs hold. */
int trace_merge_seen(const struct access_trace *in, size_t n, struct access_trace *out,
		     uint64_t *seen, char *why, size_t whylen);
void trace_free(struct access_trace *t);

#endif
