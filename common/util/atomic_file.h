/* Replacing a file atomically and durably: readers see the old content or
 * the new one whole, never a mix, and a planted symlink or file never gets
 * written through (docs/security.md, Files other users can prepare).
 *
 *   struct atomic_file af;
 *   if (atomic_file_open(&af, AT_FDCWD, "out.img", 0644)) ...  (fd in af.fd)
 *   write(af.fd, ...) ...
 *   ret = ok ? atomic_file_commit(&af, ATOMIC_DURABLE) : (atomic_file_abort(&af), err);
 *
 * The content goes to a file without a name (O_TMPFILE) in the target's
 * folder, or where the filesystem lacks that, to a new file with a random
 * name (getrandom) created O_EXCL|O_NOFOLLOW. Commit renames it over the
 * target name: a target that is a symlink is replaced itself, its target is
 * never touched. A failed or abandoned write leaves nothing behind. */
#ifndef UBLK_ATOMIC_FILE_H
#define UBLK_ATOMIC_FILE_H

#include <stddef.h>
#include <sys/types.h>

#define ATOMIC_FSYNC     1u     /* fsync the content before it gets the name */
#define ATOMIC_FSYNC_DIR 2u     /* fsync the folder after: the name survives a crash */
#define ATOMIC_DURABLE   (ATOMIC_FSYNC | ATOMIC_FSYNC_DIR)
#define ATOMIC_NOREPLACE 4u     /* fail with -EEXIST if the name exists (a new
				 * file appears complete or not at all) */

struct atomic_file {
	int fd;                 /* write (or mmap) the content here */
	int dirfd;              /* the target's folder, held open: the name is
				 * given in the folder that was checked, even if
				 * the path is changed meanwhile */
	mode_t mode;
	char name[256];         /* target name in dirfd */
	char tmp[256];          /* temporary name while one exists, else "" */
};

#define ATOMIC_FILE_INIT { .fd = -1, .dirfd = -1 }

/* Start replacing path (relative to dirfd, or AT_FDCWD; the folders of the
 * path are followed as given, the last component never is). The file gets
 * exactly mode (fchmod: the umask does not apply; pass 0666 & ~umask to
 * honour it). 0 or -errno; af can be given to atomic_file_abort either way. */
int atomic_file_open(struct atomic_file *af, int dirfd, const char *path, mode_t mode);

/* Give the content the target name; flags ATOMIC_*. Closes af->fd (an
 * mmap of it stays valid). 0 or -errno. On a failure before the rename
 * nothing is left behind and the old target is intact; only a failed
 * fsync of the folder (ATOMIC_FSYNC_DIR) comes after it: then the new
 * content has the name but may not survive a crash. */
int atomic_file_commit(struct atomic_file *af, unsigned flags);

/* Discard the content and release af. Idempotent, safe after commit, and
 * async-signal-safe (a SIGINT handler may call it). */
void atomic_file_abort(struct atomic_file *af);

/* All three for a buffer. 0 or -errno. */
int atomic_write_file(int dirfd, const char *path, const void *buf, size_t len, mode_t mode,
		      unsigned flags);

#endif
