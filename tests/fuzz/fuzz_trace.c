/*
 * Access traces (docs/access-trace.md), which may come from a URL or
 * another host: trace_parse of the input, whose end line first gets the
 * checksum of the bytes before it (checksums.c), so mutations reach past
 * it. A refused input leaves the trace empty and says why. An accepted
 * one keeps the format's limits (trace_check agrees), and a trace has one
 * text: trace_format gives back the input byte for byte, which parses to
 * the same entries. Merged with itself it keeps every chunk at its own
 * time and kind, ordered by time, image, chunk.
 */
#include "image/access_trace.h"
#include "checksums.h"
#include "fuzz.h"

#define FZ_MAX_INPUT (256u << 10)

static bool same_entry(const struct trace_entry *a, const struct trace_entry *b)
{
	return a->t_ms == b->t_ms && a->image == b->image && a->chunk == b->chunk && a->write == b->write;
}

static int by_time_image_chunk(const void *x, const void *y)
{
	const struct trace_entry *a = x, *b = y;
	if (a->t_ms != b->t_ms)
		return a->t_ms < b->t_ms ? -1 : 1;
	if (a->image != b->image)
		return a->image < b->image ? -1 : 1;
	return a->chunk < b->chunk ? -1 : a->chunk > b->chunk;
}

static void check_accepted(const struct access_trace *t, const char *text, size_t size)
{
	struct access_trace u, pair[2] = { *t, *t }, m;
	char why[1024] = "", *out = NULL;
	uint64_t seen = 0;
	size_t len = 0;

	FZ_ASSERT(t->nimages <= TRACE_MAX_IMAGES && t->n <= TRACE_MAX_ENTRIES, "%u images, %zu entries",
		  t->nimages, t->n);
	for (size_t i = 0; i < t->n; i++) {
		const struct trace_entry *e = &t->entries[i];
		FZ_ASSERT(e->image < t->nimages && e->chunk < trace_image_chunks(&t->images[e->image]) &&
			  e->t_ms <= TRACE_MAX_MS && (!i || e->t_ms >= e[-1].t_ms), "entry %zu out of bounds", i);
	}
	FZ_ASSERT(!trace_check(t, why, sizeof(why)), "accepted, but trace_check says: %s", why);
	FZ_ASSERT(!trace_format(t, &out, &len), "accepted, but trace_format refuses it");
	FZ_ASSERT(len == size && !memcmp(out, text, size), "the text of the trace is not the input "
		  "(%zu bytes against %zu)", len, size);
	FZ_ASSERT(!trace_parse(out, len, &u, why, sizeof(why)), "its own text is refused: %s", why);
	FZ_ASSERT(u.n == t->n && u.nimages == t->nimages && u.start_ms == t->start_ms &&
		  !strcmp(u.label, t->label), "parsed again, another trace");
	for (size_t i = 0; i < t->n; i++)
		FZ_ASSERT(same_entry(&u.entries[i], &t->entries[i]), "entry %zu parsed again differs", i);
	trace_free(&u);
	free(out);

	FZ_ASSERT(!trace_merge_seen(pair, 2, &m, &seen, why, sizeof(why)), "merge with itself: %s", why);
	FZ_ASSERT(m.n == t->n && seen == t->n && m.start_ms == t->start_ms, "merge with itself: %zu of "
		  "%zu entries, %llu seen", m.n, t->n, (unsigned long long)seen);
	struct trace_entry *sorted = malloc((t->n ? t->n : 1) * sizeof(*sorted));
	FZ_ASSERT(sorted, "out of memory");
	if (t->n)
		memcpy(sorted, t->entries, t->n * sizeof(*sorted));
	qsort(sorted, t->n, sizeof(*sorted), by_time_image_chunk);
	for (size_t i = 0; i < t->n; i++)
		FZ_ASSERT(same_entry(&m.entries[i], &sorted[i]), "merged entry %zu differs", i);
	free(sorted);
	trace_free(&m);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct access_trace t;
	char why[1024];

	if (size > FZ_MAX_INPUT)
		return -1;
	char *text = malloc(size ? size : 1);
	FZ_ASSERT(text, "out of memory");
	if (size)
		memcpy(text, data, size);
	fz_fix_trace((uint8_t *)text, size);
	memset(why, 'x', sizeof(why));
	int ret = trace_parse(text, size, &t, why, sizeof(why));
	FZ_ASSERT(memchr(why, 0, sizeof(why)), "why is not NUL-terminated");
	if (ret) {
		FZ_ASSERT(ret == -EINVAL || ret == -ENOMEM, "returned %d", ret);
		FZ_ASSERT(!t.n && !t.entries && !t.nimages, "refused, but the trace is not empty");
		FZ_ASSERT(why[0], "refused without a reason");
		for (const char *c = why; *c; c++)
			FZ_ASSERT(*c >= 0x20 && *c < 0x7f, "a byte 0x%02x in the reason", (unsigned char)*c);
	} else {
		fz_accepted();
		check_accepted(&t, text, size);
		trace_free(&t);
	}
	free(text);
	return 0;
}
