/* Who holds a device open. A sandbox's mount is often in a mount
 * namespace of its own, where no process keeps an fd of the device and
 * this process's mount table does not show it: the one pass over /proc
 * that finds the fds also reads the mount table of every namespace a
 * process is in. A holder is known by the device numbers it holds, never
 * by a node's name: a container opens the device through a node of its
 * own /dev, and ublk's disks share the block major (259) with NVMe and
 * each other, taking its minors in turn, so that neither a name nor a
 * range of minors tells one disk, or a partition, from another. */
#include "host/holders.h"
#include "util/timeutil.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

struct scan {
	dev_t *devs;            /* the disk's number and its partitions' */
	size_t n_devs;
	char *desc;
	size_t len;
	int found;
	bool mounted;           /* a mount was named: other namespaces are not read */
	char superblock[160];   /* a file system's folder in /sys/fs, if one is alive */
	struct stat *ns;        /* mount namespaces read already (dev, ino) */
	size_t n_ns, cap_ns;
};

/* Pieces carry names a sandbox chooses (a process's comm, a mountpoint,
 * in which the kernel escapes only blanks and backslashes): a control
 * byte becomes '?', so no message rewrites the operator's terminal. */
static void append(struct scan *s, const char *piece)
{
	size_t used = strlen(s->desc);
	snprintf(s->desc + used, s->len - used, "%s%s", used ? ", " : "", piece);
	for (unsigned char *c = (unsigned char *)s->desc + used; *c; c++)
		if (*c < 0x20 || *c == 0x7f)
			*c = '?';
	s->found++;
}

static bool is_device(const struct scan *s, dev_t dev)
{
	for (size_t i = 0; i < s->n_devs; i++)
		if (s->devs[i] == dev)
			return true;
	return false;
}

/* The number in sysfs folder dir/name's "dev": 1, 0 when there is none
 * (not, or no longer, a device), or -errno. */
static int sysfs_number(int dir, const char *name, dev_t *dev)
{
	char path[300], text[32];
	unsigned maj, min;
	int fd;
	ssize_t n;

	snprintf(path, sizeof(path), "%s/dev", name);
	fd = openat(dir, path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return errno == ENOENT ? 0 : -errno;
	n = read(fd, text, sizeof(text) - 1);
	close(fd);
	if (n < 0)
		return -errno;
	text[n] = 0;
	if (sscanf(text, "%u:%u", &maj, &min) != 2)
		return 0;
	*dev = makedev(maj, min);
	return 1;
}

/* A file system that lives on the disk or partition name keeps a folder
 * in /sys/fs until its last user is gone, mounted or not: after a lazy
 * umount with files still open, or in a mount namespace that no process
 * is in (held by a bind mount of its nsfs file), where no mount table
 * shows it. */
static void note_superblock(struct scan *s, const char *name)
{
	static const char *const folders[] = { "/sys/fs/ext4", "/sys/fs/xfs", "/sys/fs/f2fs" };
	char path[160];
	struct dirent *e;
	DIR *d;

	for (size_t i = 0; i < sizeof(folders) / sizeof(folders[0]) && !s->superblock[0]; i++) {
		snprintf(path, sizeof(path), "%s/%s", folders[i], name);
		if (!access(path, F_OK))
			snprintf(s->superblock, sizeof(s->superblock), "%s", path);
	}
	/* btrfs: /sys/fs/btrfs/FSID/devices/NAME */
	d = s->superblock[0] ? NULL : opendir("/sys/fs/btrfs");
	while (d && (e = readdir(d)) && !s->superblock[0]) {
		snprintf(path, sizeof(path), "%.36s/devices/%.40s", e->d_name, name);
		if (e->d_name[0] != '.' && !faccessat(dirfd(d), path, F_OK, 0))
			snprintf(s->superblock, sizeof(s->superblock), "/sys/fs/btrfs/%.36s", e->d_name);
	}
	if (d)
		closedir(d);
}

static int add_number(struct scan *s, int dir, const char *name)
{
	dev_t dev;
	int ret = sysfs_number(dir, name, &dev);

	if (ret <= 0)
		return ret;
	note_superblock(s, name);
	dev_t *grown = realloc(s->devs, (s->n_devs + 1) * sizeof(*grown));
	if (!grown)
		return -ENOMEM;
	s->devs = grown;
	s->devs[s->n_devs++] = dev;
	return 0;
}

/* The numbers of /sys/block/ublkbID and of its partitions (ublkbIDpK):
 * none when the kernel has no such disk. 0 or -errno. */
static int device_numbers(struct scan *s, uint32_t id)
{
	char disk[32], part[40];
	struct dirent *e;
	int dir, sub, ret;
	DIR *d;

	snprintf(disk, sizeof(disk), "ublkb%u", id);
	snprintf(part, sizeof(part), "ublkb%up", id);
	dir = open("/sys/block", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dir < 0)
		return -errno;
	ret = add_number(s, dir, disk);
	if (ret || !s->n_devs)
		goto out;
	sub = openat(dir, disk, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	d = sub < 0 ? NULL : fdopendir(sub);
	if (!d) {
		ret = errno == ENOENT ? 0 : -errno;
		if (sub >= 0)
			close(sub);
		goto out;
	}
	while (!ret && (e = readdir(d)))
		if (!strncmp(e->d_name, part, strlen(part)))
			ret = add_number(s, dirfd(d), e->d_name);
	closedir(d);
out:
	close(dir);
	return ret;
}

static void comm_of(int pid_dir, char *comm, size_t len)
{
	int fd = openat(pid_dir, "comm", O_RDONLY | O_CLOEXEC);
	ssize_t n = fd < 0 ? -1 : read(fd, comm, len - 1);

	if (fd >= 0)
		close(fd);
	if (n <= 0)
		n = snprintf(comm, len, "?");
	comm[n] = 0;
	comm[strcspn(comm, "\n")] = 0;
}

/* The mounts of the device or a partition in one mount table; where is
 * appended to each ("" for this process's own namespace). */
static void mounts_in(struct scan *s, FILE *f, const char *where)
{
	char token[16], *line = NULL;
	size_t cap = 0;

	/* a host of sandboxes has thousands of tables: parse only the lines
	 * of the disk's major (a partition's may differ: then parse all) */
	snprintf(token, sizeof(token), " %u:", major(s->devs[0]));
	for (size_t i = 1; i < s->n_devs; i++)
		if (major(s->devs[i]) != major(s->devs[0]))
			token[0] = 0;
	/* whole lines, however long (a deep bind mount's root): a line read
	 * in pieces could hide the mount */
	while (getline(&line, &cap, f) > 0) {
		unsigned maj, min;
		int at = -1;
		char piece[300];
		/* id parent maj:min root mountpoint ... */
		if (!strstr(line, token) ||
		    sscanf(line, "%*d %*d %u:%u %*s %n", &maj, &min, &at) != 2 || at < 0 ||
		    !is_device(s, makedev(maj, min)))
			continue;
		/* the mountpoint (escaped by the kernel), cut to fit */
		snprintf(piece, sizeof(piece), "mounted on %.*s%s", (int)strcspn(line + at, " \n"),
			 line + at, where);
		append(s, piece);
		s->mounted = true;
	}
	free(line);
}

/* Whether the namespace of pid_dir was not read yet; remembers it. One
 * that cannot be told (its link refused) is read: it may be any. */
static bool ns_new(struct scan *s, int pid_dir)
{
	struct stat st;

	if (fstatat(pid_dir, "ns/mnt", &st, 0))
		return true;
	for (size_t i = 0; i < s->n_ns; i++)
		if (s->ns[i].st_dev == st.st_dev && s->ns[i].st_ino == st.st_ino)
			return false;
	if (s->n_ns == s->cap_ns) {
		size_t cap = s->cap_ns ? s->cap_ns * 2 : 16;
		struct stat *grown = realloc(s->ns, cap * sizeof(*grown));
		if (!grown)
			return true;   /* read, not remembered */
		s->ns = grown;
		s->cap_ns = cap;
	}
	s->ns[s->n_ns++] = st;
	return true;
}

static void mounts_of_pid(struct scan *s, int pid_dir, long pid)
{
	char comm[64], where[128];
	int fd;
	FILE *f;

	if (s->mounted || !ns_new(s, pid_dir))
		return;
	fd = openat(pid_dir, "mountinfo", O_RDONLY | O_CLOEXEC);
	f = fd < 0 ? NULL : fdopen(fd, "r");
	if (!f) {
		if (fd >= 0)
			close(fd);
		return;
	}
	comm_of(pid_dir, comm, sizeof(comm));
	snprintf(where, sizeof(where), " (mount namespace of pid %ld (%s))", pid, comm);
	mounts_in(s, f, where);
	fclose(f);
}

/* What an fd must be to count: a device of type (S_IFBLK, S_IFCHR) whose
 * number is one of devs, or (type 0) the file dev, ino. */
struct wanted {
	mode_t type;
	const dev_t *devs;
	size_t n_devs;
	dev_t dev;
	ino_t ino;
};

static bool matches(const struct statx *st, const struct wanted *w)
{
	if (!w->type)
		return makedev(st->stx_dev_major, st->stx_dev_minor) == w->dev && st->stx_ino == w->ino;
	if ((st->stx_mode & S_IFMT) != w->type)
		return false;
	for (size_t i = 0; i < w->n_devs; i++)
		if (w->devs[i] == makedev(st->stx_rdev_major, st->stx_rdev_minor))
			return true;
	return false;
}

/* Whether the process of pid_dir has an fd that is what w wants: 1, 0,
 * or -errno when its fds cannot be read: -EACCES for another user's, or
 * one that holds a capability this one lacks (without CAP_SYS_PTRACE the
 * fds may be listed, but not looked at). */
static int has_open(int pid_dir, const struct wanted *w)
{
	int fd = openat(pid_dir, "fd", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	DIR *fds = fd < 0 ? NULL : fdopendir(fd);
	struct dirent *f;
	int found = 0, denied = 0;

	if (!fds) {
		int err = -errno;
		if (fd >= 0)
			close(fd);
		return err;
	}
	while (!found && (f = readdir(fds))) {
		struct statx st;
		if (f->d_name[0] == '.')
			continue;
		/* what the fd is, as the file system has it cached: a file of a
		 * hung NFS or FUSE mount must not stop the scan */
		if (statx(dirfd(fds), f->d_name, AT_STATX_DONT_SYNC, STATX_TYPE | STATX_INO, &st))
			denied = errno == EACCES || errno == EPERM ? -errno : denied;
		else
			found = matches(&st, w);
	}
	closedir(fds);
	return found ? 1 : denied;
}

static void fds_of_pid(struct scan *s, int pid_dir, long pid)
{
	char comm[64], piece[128];

	struct wanted w = { .type = S_IFBLK, .devs = s->devs, .n_devs = s->n_devs };

	if (has_open(pid_dir, &w) != 1)
		return;
	comm_of(pid_dir, comm, sizeof(comm));
	snprintf(piece, sizeof(piece), "pid %ld (%s)", pid, comm);
	append(s, piece);
}

static void procs(struct scan *s)
{
	DIR *proc = opendir("/proc");
	struct dirent *p;
	pid_t self = getpid();

	if (!proc)
		return;
	while ((p = readdir(proc))) {
		char *end;
		long pid = strtol(p->d_name, &end, 10);
		if (*end || pid <= 0 || pid == self)
			continue;
		int pid_dir = openat(dirfd(proc), p->d_name, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		if (pid_dir < 0)
			continue;
		fds_of_pid(s, pid_dir, pid);
		mounts_of_pid(s, pid_dir, pid);
		close(pid_dir);
	}
	closedir(proc);
}

static void stacked(struct scan *s, uint32_t id)
{
	char path[128], piece[300];
	struct dirent *e;
	DIR *d;

	snprintf(path, sizeof(path), "/sys/block/ublkb%u/holders", id);
	d = opendir(path);
	if (!d)
		return;
	while ((e = readdir(d))) {
		if (e->d_name[0] == '.')
			continue;
		snprintf(piece, sizeof(piece), "used by %s", e->d_name);
		append(s, piece);
	}
	closedir(d);
}

/* The holders of the numbers in s, and the devices stacked on id. */
static int scan_holders(struct scan *s, uint32_t id)
{
	FILE *own;

	if (!s->n_devs)   /* not a disk (yet, or any more): only stacked ones */
		goto stacked;
	/* this process's namespace first: its mounts are named without one */
	own = fopen("/proc/self/mountinfo", "re");
	if (own) {
		int self_dir = open("/proc/self", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		if (self_dir >= 0) {
			ns_new(s, self_dir);
			close(self_dir);
		}
		mounts_in(s, own, "");
		fclose(own);
	}
	procs(s);
	if (!s->mounted && s->superblock[0]) {
		char piece[300];
		snprintf(piece, sizeof(piece), "a file system on it still in use, mounted where no "
			 "process sees it (%s: a lazy umount with files open?)", s->superblock);
		append(s, piece);
	}
stacked:
	stacked(s, id);
	free(s->devs);
	free(s->ns);
	return s->found;
}

int device_holders(uint32_t id, char *desc, size_t len)
{
	struct scan s = { .desc = desc, .len = len };

	desc[0] = 0;
	int ret = device_numbers(&s, id);
	if (ret) {
		/* better a device kept than one stopped under its users */
		char piece[160];
		snprintf(piece, sizeof(piece), "who holds it is unknown (/sys/block/ublkb%u: %s)", id,
			 strerror(-ret));
		append(&s, piece);
		free(s.devs);
		return s.found;
	}
	return scan_holders(&s, id);
}

int mount_table_holders(FILE *table, const dev_t *devs, size_t n, char *desc, size_t len)
{
	struct scan s = { .devs = (dev_t *)devs, .n_devs = n, .desc = desc, .len = len };

	desc[0] = 0;
	if (n)
		mounts_in(&s, table, "");
	return s.found;
}

int device_numbers_of(uint32_t id, dev_t **devs)
{
	struct scan s = { 0 };
	int ret = device_numbers(&s, id);

	if (ret) {
		free(s.devs);
		return ret;
	}
	*devs = s.devs;
	return (int)s.n_devs;
}

int device_holders_of(uint32_t id, const dev_t *devs, size_t n, char *desc, size_t len)
{
	struct scan s = { .desc = desc, .len = len, .n_devs = n };
	char disk[32];

	desc[0] = 0;
	s.devs = malloc((n ? n : 1) * sizeof(*s.devs));
	if (!s.devs)
		return 0;
	memcpy(s.devs, devs, n * sizeof(*devs));
	snprintf(disk, sizeof(disk), "ublkb%u", id);
	note_superblock(&s, disk);
	return scan_holders(&s, id);
}

/* has_open of process pid: 0 also when there is no such process. */
static int pid_has_open(pid_t pid, const struct wanted *w)
{
	char path[32];
	int dir, ret;

	snprintf(path, sizeof(path), "/proc/%d", (int)pid);
	dir = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dir < 0)
		return errno == ENOENT ? 0 : -errno;
	ret = has_open(dir, w);
	close(dir);
	return ret == -ENOENT ? 0 : ret;
}

int device_server_pidfd(uint32_t id, pid_t pid)
{
	char name[32];
	dev_t dev;
	int pidfd, dir, ret;

	if (pid <= 0)
		return -ESRCH;
	/* the pidfd first: what /proc then shows is this process's, or
	 * nothing (then signals to the pidfd go nowhere) */
	pidfd = pidfd_of(pid);
	if (pidfd < 0)
		return pidfd;
	snprintf(name, sizeof(name), "ublkc%u", id);
	dir = open("/sys/class/ublk-char", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	ret = dir < 0 ? -errno : sysfs_number(dir, name, &dev);
	if (dir >= 0)
		close(dir);
	if (ret == 1) {
		struct wanted w = { .type = S_IFCHR, .devs = &dev, .n_devs = 1 };
		ret = pid_has_open(pid, &w);
		/* not its server, or (-EACCES) not ours to tell */
		ret = ret == 1 ? 0 : ret == 0 ? -ESRCH : ret;
		/* what /proc showed was of the pidfd's process only if it still
		 * runs: one that took the pid since may be a recovery's server */
		if (!ret && pidfd_signal(pidfd, 0))
			ret = -ESRCH;
	} else if (ret == 0) {
		ret = -ESRCH;   /* no such device: no server of it either */
	}
	if (ret) {
		close(pidfd);
		return ret;
	}
	return pidfd;
}

int process_has_open(pid_t pid, dev_t dev, ino_t ino)
{
	struct wanted w = { .dev = dev, .ino = ino };

	return pid_has_open(pid, &w);
}
