#ifndef UBLK_OUTPUT_FILE_H
#define UBLK_OUTPUT_FILE_H

#include "util/atomic_file.h"

#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Output to a new file that replaces path only once complete
 * (atomic_file: unnamed where the filesystem can, else a random name that
 * a signal handler removes), so a failed or killed export leaves nothing
 * behind; or stdout. The file gets 0666 less the umask, as cp would give
 * it: sandbox data is no more readable than the operator's other files. */
struct output_file {
	struct atomic_file af;
	int fd;
	const char *path;
};

/* 0 if path names a regular file or nothing; else -EEXIST (-EISDIR for a
 * folder) with why saying what it is. An output is renamed over its
 * target: a device, pipe or link there (-o /dev/null, -o /dev/stdout)
 * would be replaced, not written to. */
int output_file_refuse_special(const char *path, char *why, size_t whylen);
/* A file an output is made from, or that the tool reads meanwhile. */
struct output_input {
	const char *what;       /* "the base image", "--layer" */
	const char *path;       /* NULL: none */
};
/* path's folder resolved (realpath) and its last name, into buf: how a
 * file that may not exist yet is compared. 0 or -errno. */
int output_file_canonical(const char *path, char *buf, size_t len);
/* 0 unless path is one of the n inputs (the same file, by any name, or
 * the same name of one not made yet): the output would replace it. Then
 * -EINVAL with why naming it. */
int output_file_refuse_input(const char *path, const struct output_input *in, size_t n,
			     char *why, size_t whylen);
/* path, or stdout for NULL or "-". 0 or -errno with why set (a path that
 * is no regular file: output_file_refuse_special; stdout as
 * output_file_check refuses it). */
int output_file_open(struct output_file *o, const char *path, char *why, size_t whylen);
/* Whether path (NULL or "-": stdout, unless it is a regular file that is
 * not empty or is open for appending) can be written, before
 * anything is stopped for it: its folder exists and takes new files, path
 * is no folder, and the filesystem has need bytes free. 0, or -errno with
 * why saying what to fix (-ENOSPC: not enough space). */
int output_file_check(const char *path, uint64_t need, char *why, size_t whylen);
/* Give the file its name if ok, else discard it; stdout, if ok and a
 * file or block device, is synced. 0 or -errno with why set. */
int output_file_close(struct output_file *o, bool ok, char *why, size_t whylen);
/* While on, af's named temporary is removed if SIGINT, SIGTERM or SIGHUP
 * ends the process (for outputs opened with atomic_file_open directly). */
void output_file_track(struct atomic_file *af, bool on);
/* While on, folder name in dirfd (one at a time; name at most 63 bytes)
 * is removed if one of those signals ends the process and it is empty by
 * then (a folder made for outputs that are tracked too). */
void output_file_track_folder(int dirfd, const char *name, bool on);
/* Hold those three signals off this thread until output_file_release_signals,
 * for steps that must end together (two names given one after the
 * other). *before is the mask to give back. */
void output_file_hold_signals(sigset_t *before);
void output_file_release_signals(const sigset_t *before);

#endif
