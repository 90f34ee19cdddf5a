/* ublk-export-diff --inspect of an E2B build header (docs/e2b.md), or of
 * a ublk-tools v3 export beside its data, in text or JSON. */
#include "image/e2b_inspect.h"
#include "image/diff.h"
#include "image/e2b_header.h"
#include "image/e2b_store.h"
#include "util/exitcodes.h"
#include "util/json.h"
#include "image/layer.h"
#include "util/log.h"
#include "image/layer_http.h"
#include "image/http.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static void print_uuid(struct json *j, const char *key, const uint8_t id[16])
{
	char s[37];
	e2b_uuid_str(id, s);
	json_str(j, key, s);
}

static const char *sha_hex(const uint8_t sha[32], char out[65])
{
	static const uint8_t unknown[32];
	if (!memcmp(sha, unknown, 32))
		return NULL;
	for (int i = 0; i < 32; i++)
		sprintf(out + 2 * i, "%02x", sha[i]);
	return out;
}

static const char *check_name(enum e2b_check r)
{
	return r == E2B_CHECK_SHA ? "sha256" : r == E2B_CHECK_FRAMES ? "frames" :
	       r == E2B_CHECK_BAD ? "bad" : "unchecked";
}

/* One build: how much of the device it holds here, its record, and what
 * its data's check found (c; NULL when only the header was read). */
static void e2b_build_report(const struct e2b_header *h, const uint8_t id[16],
			     const struct e2b_build *b, uint64_t ranges, uint64_t bytes,
			     const struct e2b_build_check *c, struct json *j)
{
	bool self = !memcmp(id, h->build_id, 16), root = !memcmp(id, h->base_build_id, 16);
	char s[37], sha[65];
	const char *hex = b ? sha_hex(b->sha256, sha) : NULL;

	e2b_uuid_str(id, s);
	if (j) {
		json_obj_begin(j, NULL);
		json_str(j, "build_id", s);
		json_bool(j, "self", self);
		json_bool(j, "root", root);
		json_u64(j, "ranges", ranges);
		json_u64(j, "bytes", bytes);
		json_bool(j, "recorded", b);
		if (b) {
			json_u64(j, "size", b->size);
			json_str(j, "sha256", hex);
			json_str(j, "codec", e2b_codec_name(b->codec));
			json_u64(j, "frames", b->n_frames);
		}
		if (c) {
			json_str(j, "data", check_name(c->result));
			json_u64(j, "frames_checked", c->frames);
			json_u64(j, "bytes_checked", c->bytes);
			json_str(j, "data_error", c->result == E2B_CHECK_BAD ? c->why : NULL);
		}
		json_obj_end(j);
		return;
	}
	printf("  %s%s%s: %llu ranges, %llu bytes", s, self ? " (this build)" : "",
	       root ? " (root)" : "", (unsigned long long)ranges, (unsigned long long)bytes);
	if (b)
		printf("; recorded size %llu, %s, %u frames, sha256 %s", (unsigned long long)b->size,
		       b->n_frames ? e2b_codec_name(b->codec) : "uncompressed", b->n_frames,
		       hex ? hex : "unknown");
	printf("\n");
	if (!c)
		return;
	if (c->result == E2B_CHECK_SHA)
		printf("    data: SHA-256 matches (%llu bytes%s)\n", (unsigned long long)c->bytes,
		       c->frames ? ", every frame decompressed" : "");
	else if (c->result == E2B_CHECK_FRAMES)
		printf("    data: %llu frames decompressed to their sizes (%llu bytes)%s\n",
		       (unsigned long long)c->frames, (unsigned long long)c->bytes,
		       c->sha_recorded ? "; SHA-256 not checkable: the frame table does not hold "
		       "the whole data" : "");
	else if (c->result == E2B_CHECK_NONE)
		printf("    data: not checkable (uncompressed, no SHA-256 recorded); its file "
		       "holds every range read from it\n");
	else
		printf("    data: BAD: %s\n", c->why);
}

/* Report h (read from path), with the checks of its builds' data (per
 * id) when given. */
static int inspect_e2b(const char *path, const struct e2b_header *h, bool json,
		       const struct e2b_build_check *checks)
{
	uint64_t *ranges = NULL, *bytes = NULL;
	bool *listed = NULL;
	struct json j, *jp = json ? &j : NULL;
	char s[37];
	int code = EXIT_OK;

	if (!(ranges = calloc(h->n_ids + 1ull, sizeof(*ranges))) ||
	    !(bytes = calloc(h->n_ids + 1ull, sizeof(*bytes))) ||
	    !(listed = calloc(h->n_builds + 1ull, sizeof(*listed)))) {
		log_err("out of memory");
		code = EXIT_FAIL;
		goto out;
	}
	e2b_header_usage(h, ranges, bytes);
	if (json) {
		json_begin(&j, stdout);
		json_str(&j, "path", path);
		json_str(&j, "format", "e2b");
		json_bool(&j, "e2b_valid", true);
		json_u64(&j, "version", h->version);
		json_u64(&j, "layout", h->format);
		json_u64(&j, "block_size", h->block_size);
		json_u64(&j, "size", h->size);
		json_u64(&j, "generation", h->generation);
		print_uuid(&j, "build_id", h->build_id);
		print_uuid(&j, "base_build_id", h->base_build_id);
		json_bool(&j, "incomplete", h->flags & E2B_FLAG_INCOMPLETE);
		json_bool(&j, "implicit_mapping", h->implicit);
		json_arr_begin(&j, "builds");
	} else {
		printf("E2B header %s\nversion %llu (layout %u), block size %llu, size %llu\n", path,
		       (unsigned long long)h->version, h->format, (unsigned long long)h->block_size,
		       (unsigned long long)h->size);
		e2b_uuid_str(h->build_id, s);
		printf("build %s, generation %llu\n", s, (unsigned long long)h->generation);
		e2b_uuid_str(h->base_build_id, s);
		printf("base (root) build %s\n", s);
		if (h->format >= 4)
			printf("flags: %s\n", h->flags & E2B_FLAG_INCOMPLETE ?
			       "incomplete (the build's upload was not finalized)" : "none");
		if (h->implicit)
			printf("mapping: empty in the file, so %s\n", h->format == 5 ?
			       "the whole device is zeros" : "the whole device is this build's own data");
		printf("builds:\n");
	}
	/* the builds the mapping names, then records it does not use */
	for (uint32_t k = 0; k < h->n_ids; k++) {
		const struct e2b_build *b = e2b_header_id_build(h, k);
		if (b)
			listed[b - h->builds] = true;
		e2b_build_report(h, h->ids[k], b, ranges[k], bytes[k], checks ? &checks[k] : NULL, jp);
	}
	for (uint32_t i = 0; i < h->n_builds; i++)
		if (!listed[i])
			e2b_build_report(h, h->builds[i].id, &h->builds[i], 0, 0, NULL, jp);
	/* verified: every build's data checked, and nothing bad */
	bool verified = checks != NULL;
	for (uint32_t k = 0; checks && k < h->n_ids; k++)
		verified &= checks[k].result == E2B_CHECK_SHA || checks[k].result == E2B_CHECK_FRAMES;
	if (json) {
		json_arr_end(&j);
		json_u64(&j, "nil_ranges", ranges[h->n_ids]);
		json_u64(&j, "nil_bytes", bytes[h->n_ids]);
		json_arr_begin(&j, "ranges");
		for (uint64_t i = 0; i < h->n_entries; i++) {
			const struct e2b_entry *e = &h->entries[i];
			json_obj_begin(&j, NULL);
			json_u64(&j, "offset", e->offset);
			json_u64(&j, "length", e->length);
			if (e->id == E2B_NIL)
				json_str(&j, "build_id", NULL);
			else
				print_uuid(&j, "build_id", h->ids[e->id]);
			json_u64(&j, "storage_offset", e->storage);
			json_obj_end(&j);
		}
		json_arr_end(&j);
		/* a header alone has no data whose checksums could be checked */
		json_bool(&j, "verified", verified);
		json_end(&j);
	} else {
		printf("  nil (zeros): %llu ranges, %llu bytes\nranges:\n",
		       (unsigned long long)ranges[h->n_ids], (unsigned long long)bytes[h->n_ids]);
		for (uint64_t i = 0; i < h->n_entries; i++) {
			const struct e2b_entry *e = &h->entries[i];
			if (e->id == E2B_NIL)
				snprintf(s, sizeof(s), "nil");
			else
				e2b_uuid_str(h->ids[e->id], s);
			printf("  %14llu +%-14llu %s @%llu\n", (unsigned long long)e->offset,
			       (unsigned long long)e->length, s, (unsigned long long)e->storage);
		}
		if (!checks)
			printf("verified: no (a header alone has no data to check)\n");
		else
			printf("verified: %s\n", verified ? "yes (every build's data checked)" :
			       "no (some builds' data could not be checked, or is bad)");
	}
out:
	free(ranges);
	free(bytes);
	free(listed);
	return code;
}

/* A layout-3 header that is not a complete E2B build but has its data file
 * beside it: a ublk-tools v3 export (docs/diff-format.md, Interop), which
 * lists only its own ranges. Shown as the layer it is, with the reason it
 * is not an E2B build yet. */
static int inspect_v3_layer(const char *path, bool json, const char *e2b_why)
{
	size_t plen = strlen(path);
	struct diff_file *d;
	char why[700], id[37];
	const char *reason = e2b_why;

	if (!strncmp(reason, path, plen) && !strncmp(reason + plen, ": ", 2))
		reason += plen + 2;
	if (diff_open(path, NULL, &d, why, sizeof(why))) {
		const char *sub = why;
		if (!strncmp(sub, path, plen) && !strncmp(sub + plen, ": ", 2))
			sub += plen + 2;
		log_err("%s (as a ublk-tools v3 layer: %s)", e2b_why, sub);
		return EXIT_BAD_IMAGE;
	}
	if (json) {
		struct json j;
		json_begin(&j, stdout);
		json_str(&j, "path", path);
		json_str(&j, "format", "e2b");
		json_bool(&j, "e2b_valid", false);
		json_str(&j, "e2b_error", reason);
		json_str(&j, "layer", "v3");
		json_u64(&j, "version", 3);
		json_u64(&j, "layout", 3);
		json_u64(&j, "block_size", 4096);
		json_u64(&j, "size", d->meta.dev_size);
		json_u64(&j, "generation", d->meta.generation);
		print_uuid(&j, "build_id", d->meta.id);
		print_uuid(&j, "base_build_id", d->meta.parent);
		json_u64(&j, "extents", d->meta.n_extents);
		json_u64(&j, "data_blocks", d->meta.data_blocks);
		json_u64(&j, "zero_blocks", d->meta.zero_blocks);
		diff_extents_json(&j, d);
		json_bool(&j, "verified", false);
		json_end(&j);
	} else {
		printf("v3 layer %s (a ublk-tools export)\nnot a complete E2B build: %s\n"
		       "version 3, block size 4096, size %llu\n", path, reason,
		       (unsigned long long)d->meta.dev_size);
		e2b_uuid_str(d->meta.id, id);
		printf("build %s, generation %llu\n", id, (unsigned long long)d->meta.generation);
		e2b_uuid_str(d->meta.parent, id);
		printf("base build %s\n%llu extents: %llu data blocks, %llu zero blocks "
		       "(the rest reads from the layer below)\n", id,
		       (unsigned long long)d->meta.n_extents, (unsigned long long)d->meta.data_blocks,
		       (unsigned long long)d->meta.zero_blocks);
		for (uint64_t i = 0; i < d->meta.n_extents; i++)
			printf("  %12llu +%-10u %s\n", (unsigned long long)d->ext[i].start, d->ext[i].count,
			       d->ext[i].kind == DIFF_DATA ? "data" : "zero");
		printf("verified: no (a v3 pair has no checksums)\n");
	}
	diff_close(d);
	return EXIT_OK;
}

int e2b_inspect_file(const char *path, const struct layer_http_opts *remote, bool json, bool *done,
		     char *note, size_t notelen)
{
	uint8_t meta[E2B_META_SIZE];
	struct e2b_header *h;
	char why[1200], data[4096];
	size_t got, plen = strlen(path);
	int ret;

	*done = false;
	note[0] = 0;
	if (e2b_header_sniff(path, remote, meta, &got, why, sizeof(why)))
		return EXIT_OK;   /* the diff reader says what is wrong */
	/* E2B names its headers *.header: such a name with an E2B layout goes
	 * to the E2B reader even when the rest looks wrong, so that it says
	 * what is wrong */
	unsigned layout = got >= 8 ? (unsigned)(meta[0] | meta[1] << 8) : 0;
	bool named = plen > 7 && !strcmp(path + plen - 7, ".header");
	if (!(named && layout >= 1 && layout <= 5) && !e2b_header_plausible(meta, got)) {
		/* the metadata alone says why it is not an E2B header */
		if (got >= 8 && memcmp(meta, "UBLKDIFF", 8)) {
			if (e2b_header_parse(meta, got, &h, why, sizeof(why)))
				snprintf(note, notelen, "; nor an E2B header: %s", why);
			else
				e2b_header_free(h);
		}
		return EXIT_OK;
	}
	*done = true;
	ret = e2b_header_load(path, remote, &h, why, sizeof(why));
	if (!ret) {
		char shown[4200];
		http_name_for_log(path, shown, sizeof(shown));  /* a URL may carry credentials */
		ret = inspect_e2b(shown, h, json, NULL);
		e2b_header_free(h);
		return ret;
	}
	/* our own v3 exports: a data file DATA beside DATA.header */
	if (ret == -EINVAL && layout == 3 && named && !http_is_url(path) && plen - 7 < sizeof(data)) {
		memcpy(data, path, plen - 7);
		data[plen - 7] = 0;
		if (!access(data, F_OK))
			return inspect_v3_layer(path, json, why);
	}
	log_err("%s", why);
	return ret == -ENOMEM ? EXIT_FAIL : EXIT_BAD_IMAGE;
}

struct inspect_progress {
	bool on;
	uint64_t last_ms;
};

static void verify_progress(void *ctx, uint64_t done, uint64_t total)
{
	struct inspect_progress *p = ctx;
	struct timespec ts;
	uint64_t now;

	if (!p->on)
		return;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	now = (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
	if (done < total && now - p->last_ms < 100)
		return;
	p->last_ms = now;
	fprintf(stderr, "\rverify: %3llu%% (%llu of %llu)%s",
		(unsigned long long)(total ? done * 100 / total : 100), (unsigned long long)done,
		(unsigned long long)total, done >= total ? "\n" : "");
}

int e2b_inspect_store(const char *root, const char *build, const char *name,
		      const struct layer_http_opts *remote, bool json, bool progress)
{
	struct inspect_progress p = { .on = progress };
	struct e2b_build_check *checks = NULL;
	struct e2b_store *s;
	char why[2000], path[1200], shown[1024];
	int ret, code;

	if (!name)
		name = E2B_ROOTFS;
	ret = e2b_store_open(root, build, name, remote, &s, why, sizeof(why));
	if (ret) {
		log_err("%s", why);
		return exit_code_for_image(ret);
	}
	const struct e2b_header *h = e2b_store_header(s);
	if (!(checks = calloc(h->n_ids + 1ull, sizeof(*checks)))) {
		log_err("out of memory");
		e2b_store_close(s);
		return EXIT_FAIL;
	}
	ret = e2b_store_verify(s, checks, verify_progress, &p);
	http_name_for_log(root, shown, sizeof(shown));
	size_t rl = strlen(shown);
	snprintf(path, sizeof(path), "%s%s%s/%s.header", shown, rl && shown[rl - 1] == '/' ? "" : "/",
		 build, name);
	if (ret == -ENOMEM) {
		log_err("out of memory");
		code = EXIT_FAIL;
	} else {
		code = inspect_e2b(path, h, json, checks);
		for (uint32_t k = 0; k < h->n_ids; k++)
			if (checks[k].result == E2B_CHECK_BAD) {
				char id[37];
				e2b_uuid_str(h->ids[k], id);
				log_err("build %s: %s", id, checks[k].why);
			}
		if (!code && ret)
			code = EXIT_BAD_IMAGE;
	}
	free(checks);
	e2b_store_close(s);
	return code;
}
