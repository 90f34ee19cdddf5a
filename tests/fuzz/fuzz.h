/*
 * Shared pieces of the libFuzzer harnesses (tests/fuzz/README.md).
 *
 * The code under test reads real file descriptors, so every harness hands
 * it its bytes through a file: a memfd where the code takes an fd (or
 * through a symlink to /proc/self/fd/N where it opens a name), or a plain
 * file in a private folder where it refuses symlinks (cache, state
 * directory). Files are rewritten in place each
 * run.
 *
 * Inputs made of several files are one byte string cut at FZ_SEP; seeds
 * and dictionaries use the same token.
 */
#ifndef UBLK_FUZZ_H
#define UBLK_FUZZ_H

#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define FZ_SEP "\n--part--\n"
#define FZ_SEP_LEN (sizeof(FZ_SEP) - 1)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

/* A harness that cannot set itself up is useless: say why and stop. */
#define FZ_DIE(...) (dprintf(fz_err, "fuzz setup: " __VA_ARGS__), dprintf(fz_err, "\n"), exit(2))

/* An invariant of the code under test does not hold: a finding. abort()
 * makes libFuzzer save the input as a crash. */
#define FZ_ASSERT(cond, ...)                                                              \
	do {                                                                              \
		if (!(cond)) {                                                            \
			dprintf(fz_err, "fuzz invariant failed: %s: ", #cond);            \
			dprintf(fz_err, __VA_ARGS__);                                     \
			dprintf(fz_err, "\n");                                            \
			abort();                                                          \
		}                                                                         \
	} while (0)

/* stderr as it was at start: libFuzzer's -close_fd_mask=2 silences the
 * code under test's messages, not the harness's findings. */
static int fz_err = 2;
__attribute__((constructor)) static void fz_keep_stderr(void)
{
	int fd = fcntl(2, F_DUPFD_CLOEXEC, 10);
	if (fd >= 0)
		fz_err = fd;
}

/* Up to max parts of data cut at FZ_SEP; returns the count (at least 1). */
struct fz_part {
	const uint8_t *p;
	size_t len;
};

static inline int fz_split(const uint8_t *data, size_t size, struct fz_part *parts, int max)
{
	int n = 0;
	const uint8_t *p = data, *end = data + size;

	while (n < max - 1) {
		const uint8_t *hit = memmem(p, (size_t)(end - p), FZ_SEP, FZ_SEP_LEN);
		if (!hit)
			break;
		parts[n++] = (struct fz_part){ p, (size_t)(hit - p) };
		p = hit + FZ_SEP_LEN;
	}
	parts[n++] = (struct fz_part){ p, (size_t)(end - p) };
	for (int i = n; i < max; i++)
		parts[i] = (struct fz_part){ NULL, 0 };
	return n;
}

/* A NUL-terminated copy (the parsers take C strings); free() it. */
static inline char *fz_strndup(const uint8_t *p, size_t len)
{
	char *s = malloc(len + 1);
	if (!s)
		FZ_DIE("out of memory");
	if (len)
		memcpy(s, p, len);
	s[len] = 0;
	return s;
}

/* Replace the whole content of fd by data (or by a sparse file of size
 * bytes when data is NULL). A size the file system cannot hold (ext4
 * stops 4 KiB short of 16 TiB) returns -EFBIG: the input cannot be
 * tried here. */
static inline int fz_fill(int fd, const void *data, size_t len)
{
	if (ftruncate(fd, 0) || ftruncate(fd, (off_t)len)) {
		if (errno == EFBIG)
			return -EFBIG;
		FZ_DIE("ftruncate: %s", strerror(errno));
	}
	if (data && len && pwrite(fd, data, len, 0) != (ssize_t)len)
		FZ_DIE("pwrite: %s", strerror(errno));
	return 0;
}

static inline int fz_memfd(const char *name)
{
	int fd = memfd_create(name, MFD_CLOEXEC);
	if (fd < 0)
		FZ_DIE("memfd_create: %s", strerror(errno));
	return fd;
}

/* A private folder for the run, removed at exit (best effort: after a
 * crash it stays, which is what a later look needs anyway). In $TMPDIR if
 * set, else in /dev/shm: files are rewritten every run, and on a disk
 * file system that is journal traffic, not fuzzing. */
static char fz_dir_path[256];

static inline void fz_dir_cleanup(void)
{
	char cmd[300];
	if (fz_dir_path[0] && snprintf(cmd, sizeof(cmd), "rm -rf '%s'", fz_dir_path) < (int)sizeof(cmd))
		if (system(cmd)) {
			/* nothing to do: a leftover temp folder */
		}
}

static inline int fz_remove_one(const char *path, const struct stat *st, int type, struct FTW *f)
{
	(void)st, (void)f;
	if ((type == FTW_DP ? rmdir(path) : unlink(path)) && errno != ENOENT)
		FZ_DIE("removing %s: %s", path, strerror(errno));
	return 0;
}

/* rm -rf, without following links, in this process (a fork per run is
 * most of the run's time) */
static inline void fz_remove_tree(const char *path)
{
	if (nftw(path, fz_remove_one, 16, FTW_DEPTH | FTW_PHYS) && errno != ENOENT)
		FZ_DIE("removing %s: %s", path, strerror(errno));
}

static inline const char *fz_dir(void)
{
	if (!fz_dir_path[0]) {
		const char *tmp = getenv("TMPDIR");
		if (!tmp || !*tmp)
			tmp = access("/dev/shm", W_OK) ? "/tmp" : "/dev/shm";
		snprintf(fz_dir_path, sizeof(fz_dir_path), "%s/ublk-fuzz.XXXXXX", tmp);
		if (!mkdtemp(fz_dir_path))
			FZ_DIE("mkdtemp %s: %s", fz_dir_path, strerror(errno));
		atexit(fz_dir_cleanup);
	}
	return fz_dir_path;
}

/* name in the private folder as a symlink to memfd fd, for code that
 * finds files by name (the v3 pair: DATA.header names DATA). */
static inline void fz_link(int fd, const char *name, char *path, size_t len)
{
	char target[64];
	snprintf(target, sizeof(target), "/proc/self/fd/%d", fd);
	snprintf(path, len, "%s/%s", fz_dir(), name);
	unlink(path);
	if (symlink(target, path))
		FZ_DIE("symlink %s: %s", path, strerror(errno));
}

/* A plain file in the private folder, opened read-write. */
static inline int fz_file(const char *name, char *path, size_t len)
{
	snprintf(path, len, "%s/%s", fz_dir(), name);
	int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (fd < 0)
		FZ_DIE("open %s: %s", path, strerror(errno));
	return fd;
}

/* Inputs the code under test accepted: with FUZZ_SELFTEST=1 the count is
 * printed at exit, so a test can check that the seeds get past every
 * check (checksums, sizes) and the harness is not just knocking on the
 * door. */
static unsigned long fz_accepted_count;

/* A live map (docs/cache-format.md) whose boot id field starts with
 * "BOOT" gets this boot's id there, so inputs reach past the boot check. */
static inline void fz_live_boot_fixup(uint8_t *live, size_t len)
{
	static char boot[40];
	if (!boot[0]) {
		FILE *f = fopen("/proc/sys/kernel/random/boot_id", "re");
		if (f) {
			if (fgets(boot, sizeof(boot), f))
				boot[strcspn(boot, "\n")] = 0;
			fclose(f);
		}
	}
	if (len >= 72 && !memcmp(live + 32, "BOOT", 4))
		strncpy((char *)live + 32, boot, 40);
}

static inline void fz_report_accepted(void)
{
	dprintf(fz_err, "fuzz selftest: accepted %lu\n", fz_accepted_count);
}

static inline void fz_accepted(void)
{
	if (!fz_accepted_count++ && getenv("FUZZ_SELFTEST"))
		atexit(fz_report_accepted);
}

static inline uint32_t fz_get32(const uint8_t *p) { uint32_t v; memcpy(&v, p, 4); return le32toh(v); }
static inline uint64_t fz_get64(const uint8_t *p) { uint64_t v; memcpy(&v, p, 8); return le64toh(v); }
static inline void fz_put32(uint8_t *p, uint32_t v) { v = htole32(v); memcpy(p, &v, 4); }
static inline void fz_put64(uint8_t *p, uint64_t v) { v = htole64(v); memcpy(p, &v, 8); }

#endif
