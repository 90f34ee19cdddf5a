/* --inspect of E2B build headers (docs/e2b.md). */
#ifndef UBLK_E2B_INSPECT_H
#define UBLK_E2B_INSPECT_H

#include <stdbool.h>
#include <stddef.h>

/* Print path if it is an E2B header or a ublk-tools v3 export beside its
 * data (*done set; the tool's exit code returned), else leave it to the
 * diff reader (*done clear, EXIT_OK; note then says why the file is not
 * an E2B header either, for that reader's error). remote: a URL's
 * options, NULL for the defaults. */
struct layer_http_opts;
int e2b_inspect_file(const char *path, const struct layer_http_opts *remote, bool json, bool *done,
		     char *note, size_t notelen);

/* --inspect --e2b ROOT --build ID: the build's header as above, and the
 * data of every build it names checked (e2b_store_verify): verified only
 * when every build's frames decompressed to their sizes or its SHA-256
 * matched. Returns the tool's exit code (5 when data is bad or missing). */
struct layer_http_opts;
int e2b_inspect_store(const char *root, const char *build, const char *name,
		      const struct layer_http_opts *remote, bool json, bool progress);

#endif
