/* --inspect of E2B build headers (docs/e2b.md). */
#ifndef UBLK_E2B_INSPECT_H
#define UBLK_E2B_INSPECT_H

#include <stdbool.h>
#include <stddef.h>

/* Print path if it is an E2B header or a ublk-tools v3 export beside its
 * data (*done set; the tool's exit code returned), else leave it to the
 * diff reader (*done clear, EXIT_OK; note then says why the file is not
 * an E2B header either, for that reader's error). */
int e2b_inspect_file(const char *path, bool json, bool *done, char *note, size_t notelen);

#endif
