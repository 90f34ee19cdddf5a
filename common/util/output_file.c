#include "util/output_file.h"
#include "util/fileio.h"

#include <fcntl.h>
#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdatomic.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* The named temporaries to remove if SIGINT, SIGTERM or SIGHUP ends us. */
#define MAX_OUTPUTS 2
static struct atomic_file *volatile pending[MAX_OUTPUTS];
static struct sigaction saved[3];
static const int caught[3] = { SIGINT, SIGTERM, SIGHUP };
static volatile int pending_dirfd = -1;
static char pending_folder[64];
static int n_pending;

static void on_fatal_signal(int sig)
{
	for (int i = 0; i < MAX_OUTPUTS; i++)
		if (pending[i])
			atomic_file_abort(pending[i]);
	if (pending_dirfd >= 0)   /* after its files: empty unless it holds others' */
		unlinkat(pending_dirfd, pending_folder, AT_REMOVEDIR);
	signal(sig, SIG_DFL);
	raise(sig);
}

static void count_pending(bool on)
{
	struct sigaction sa = { .sa_handler = on_fatal_signal };

	if (on && n_pending++ == 0)
		for (int i = 0; i < 3; i++) {
			sigaction(caught[i], NULL, &saved[i]);
			/* one ignored (nohup) does not end us: nothing to clean */
			if (saved[i].sa_handler != SIG_IGN)
				sigaction(caught[i], &sa, NULL);
		}
	if (!on && --n_pending == 0)
		for (int i = 0; i < 3; i++)
			sigaction(caught[i], &saved[i], NULL);
}

void output_file_track(struct atomic_file *af, bool on)
{
	for (int i = 0; i < MAX_OUTPUTS; i++)
		if (on ? !pending[i] : pending[i] == af) {
			pending[i] = on ? af : NULL;
			break;
		}
	count_pending(on);
}

void output_file_track_folder(int dirfd, const char *name, bool on)
{
	if (on == (pending_dirfd >= 0) || (on && strlen(name) >= sizeof(pending_folder)))
		return;
	if (on)
		snprintf(pending_folder, sizeof(pending_folder), "%s", name);
	/* the name complete before the handler can see the fd */
	atomic_signal_fence(memory_order_seq_cst);
	pending_dirfd = on ? dirfd : -1;
	count_pending(on);
}

void output_file_hold_signals(sigset_t *before)
{
	sigset_t fatal;

	sigemptyset(&fatal);
	for (int i = 0; i < 3; i++)
		sigaddset(&fatal, caught[i]);
	pthread_sigmask(SIG_BLOCK, &fatal, before);
}

void output_file_release_signals(const sigset_t *before)
{
	pthread_sigmask(SIG_SETMASK, before, NULL);
}

int output_file_refuse_special(const char *path, char *why, size_t whylen)
{
	struct stat st;
	mode_t m;

	if (lstat(path, &st) || S_ISREG(st.st_mode))
		return 0;
	if (S_ISDIR(st.st_mode))
		return snprintf(why, whylen, "%s: is a folder: give a file name", path), -EISDIR;
	m = st.st_mode;
	snprintf(why, whylen, "%s: is a %s, which the output would replace rather than write %s: "
		 "give the name of a regular file, or a new one", path,
		 S_ISLNK(m) ? "symbolic link" : S_ISCHR(m) ? "character device" :
		 S_ISBLK(m) ? "block device" : S_ISFIFO(m) ? "named pipe" :
		 S_ISSOCK(m) ? "socket" : "special file", S_ISLNK(m) ? "through" : "to");
	return -EEXIST;
}

int output_file_canonical(const char *path, char *buf, size_t len)
{
	char dir[PATH_MAX], real[PATH_MAX];
	const char *slash = strrchr(path, '/'), *base = slash ? slash + 1 : path;

	if (path_folder(path, dir, sizeof(dir)))
		return -ENAMETOOLONG;
	if (!realpath(dir, real))
		return -errno;
	return snprintf(buf, len, "%s/%s", strcmp(real, "/") ? real : "", base) < (int)len ?
	       0 : -ENAMETOOLONG;
}

/* Whether a and b name the same file: by inode when both exist, else by
 * their canonical names (a file a server makes later, a cache). */
static bool same_file(const char *a, const char *b)
{
	struct stat sa, sb;
	char ca[PATH_MAX], cb[PATH_MAX];
	bool ea = !stat(a, &sa), eb = !stat(b, &sb);

	if (ea && eb)
		return sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino;
	return !output_file_canonical(a, ca, sizeof(ca)) && !output_file_canonical(b, cb, sizeof(cb)) &&
	       !strcmp(ca, cb);
}

int output_file_refuse_input(const char *path, const struct output_input *in, size_t n,
			     char *why, size_t whylen)
{
	if (!path)
		return 0;
	for (size_t i = 0; i < n; i++)
		if (in[i].path && same_file(path, in[i].path))
			return snprintf(why, whylen, "%s: is %s (%s), which it would replace: give "
					"another file", path, in[i].what, in[i].path), -EINVAL;
	return 0;
}

/* Output goes from its first byte: standard output redirected with >>
 * (O_APPEND, or a file's middle) would append a diff no reader finds. */
static int refuse_stdout_midway(char *why, size_t whylen)
{
	struct stat st;
	int flags = fcntl(STDOUT_FILENO, F_GETFL);

	if (fstat(STDOUT_FILENO, &st) || !S_ISREG(st.st_mode))
		return 0;
	if ((flags >= 0 && (flags & O_APPEND)) || st.st_size || lseek(STDOUT_FILENO, 0, SEEK_CUR) > 0)
		return snprintf(why, whylen, "standard output is a file that is not empty, or open "
				"for appending (>>): the output must start at its first byte; redirect "
				"it with > or give --output FILE"), -EINVAL;
	return 0;
}

int output_file_open(struct output_file *o, const char *path, char *why, size_t whylen)
{
	mode_t mask = umask(0);
	int ret;

	umask(mask);
	o->path = path && strcmp(path, "-") ? path : NULL;
	o->af = (struct atomic_file)ATOMIC_FILE_INIT;
	if (!o->path) {
		o->fd = STDOUT_FILENO;
		return refuse_stdout_midway(why, whylen);
	}
	ret = output_file_refuse_special(path, why, whylen);
	if (ret) {
		o->fd = -1;
		return ret;
	}
	ret = atomic_file_open(&o->af, AT_FDCWD, path, 0666 & ~mask);
	if (ret) {
		o->fd = -1;
		return snprintf(why, whylen, "%s: cannot create: %s", path, strerror(-ret)), ret;
	}
	o->fd = o->af.fd;
	output_file_track(&o->af, true);
	return 0;
}

int output_file_check(const char *path, uint64_t need, char *why, size_t whylen)
{
	char dir[PATH_MAX];
	struct statvfs fs;
	struct stat st;

	if (!path || !strcmp(path, "-"))
		return refuse_stdout_midway(why, whylen);
	int ret = output_file_refuse_special(path, why, whylen);
	if (ret)
		return ret;
	if (path_folder(path, dir, sizeof(dir)))
		return snprintf(why, whylen, "%s: path too long", path), -ENAMETOOLONG;
	if (stat(dir, &st) || !S_ISDIR(st.st_mode))
		return snprintf(why, whylen, "%s: folder %s does not exist", path, dir), -ENOENT;
	if (access(dir, W_OK | X_OK))
		return snprintf(why, whylen, "%s: cannot create files in %s: %s", path, dir,
				strerror(errno)), -errno;
	if (!statvfs(dir, &fs) && fs.f_flag & ST_RDONLY)
		return snprintf(why, whylen, "%s: %s is on a read-only filesystem", path, dir), -EROFS;
	if (!statvfs(dir, &fs) && fs.f_frsize && fs.f_bavail < (need + fs.f_frsize - 1) / fs.f_frsize)
		return snprintf(why, whylen, "%s: %llu MiB free in %s, the output may need up to %llu MiB: "
				"free space or write elsewhere", path,
				(unsigned long long)(fs.f_bavail * fs.f_frsize >> 20), dir,
				(unsigned long long)((need + (1 << 20) - 1) >> 20)), -ENOSPC;
	return 0;
}

/* The shell made the file a > redirection names, a moment ago: its name
 * is made durable too (its folder synced), where the name still leads to
 * it. Best effort: it may have been renamed or removed since. */
static void sync_name_of_stdout(int fd)
{
	char link[64], path[PATH_MAX];
	ssize_t n;

	snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
	n = readlink(link, path, sizeof(path) - 1);
	if (n <= 0 || path[0] != '/')
		return;
	path[n] = 0;
	if (fd_is_named(fd, AT_FDCWD, path, 0))
		fsync_folder_of(path);
}

int output_file_close(struct output_file *o, bool ok, char *why, size_t whylen)
{
	struct stat st;
	int ret = 0;

	/* stdout redirected to a file: synced, as the export's source (a
	 * device's cache) may be removed next */
	if (!o->path) {
		if (o->fd < 0 || !ok || fstat(o->fd, &st) ||
		    !(S_ISREG(st.st_mode) || S_ISBLK(st.st_mode)))
			return 0;
		if (fsync(o->fd)) {
			ret = -errno;
			snprintf(why, whylen, "standard output: syncing it: %s", strerror(-ret));
			return ret;
		}
		if (S_ISREG(st.st_mode))
			sync_name_of_stdout(o->fd);
		return 0;
	}
	if (o->fd < 0)
		return 0;
	if (ok && (ret = atomic_file_commit(&o->af, ATOMIC_DURABLE)))
		snprintf(why, whylen, "%s: %s", o->path, strerror(-ret));
	atomic_file_abort(&o->af);
	output_file_track(&o->af, false);
	o->fd = -1;
	return ret;
}
