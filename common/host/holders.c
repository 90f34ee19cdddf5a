/* Who holds a device open. A sandbox's mount is often in a mount
 * namespace of its own, where no process keeps an fd of the device and
 * this process's mount table does not show it: the one pass over /proc
 * that finds the fds also reads the mount table of every namespace a
 * process is in. */
#include "host/holders.h"
#include "kernel/ctrl.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

struct scan {
	const char *node;       /* /dev/ublkbN */
	dev_t rdev;             /* its number; 0 when the node is missing */
	char *desc;
	size_t len;
	int found;
	bool mounted;           /* a mount was named: other namespaces are not read */
	struct stat *ns;        /* mount namespaces read already (dev, ino) */
	size_t n_ns, cap_ns;
};

static void append(struct scan *s, const char *piece)
{
	size_t used = strlen(s->desc);
	snprintf(s->desc + used, s->len - used, "%s%s", used ? ", " : "", piece);
	s->found++;
}

/* Does link target name the device or one of its partitions? */
static bool names_device(const char *target, const char *node)
{
	size_t n = strlen(node);
	if (strncmp(target, node, n))
		return false;
	return target[n] == 0 || target[n] == 'p';
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

/* The mounts of the device (or a partition: partitions share the major
 * and follow the disk's minor) in one mount table; where is appended to
 * each ("" for this process's own namespace). */
static void mounts_in(struct scan *s, FILE *f, const char *where)
{
	char line[4096], token[16];

	/* a host of sandboxes has thousands of tables: parse only the lines
	 * that can be of the device's major */
	snprintf(token, sizeof(token), " %u:", major(s->rdev));
	while (fgets(line, sizeof(line), f)) {
		unsigned maj, min;
		char mnt[2048], piece[2300];
		/* id parent maj:min root mountpoint ... */
		if (!strstr(line, token) ||
		    sscanf(line, "%*d %*d %u:%u %*s %2047s", &maj, &min, mnt) != 3)
			continue;
		if (maj != major(s->rdev) || min < minor(s->rdev) || min > minor(s->rdev) + 255)
			continue;
		snprintf(piece, sizeof(piece), "mounted on %s%s", mnt, where);
		append(s, piece);
		s->mounted = true;
	}
}

/* Whether the namespace of pid_dir was not read yet; remembers it. */
static bool ns_new(struct scan *s, int pid_dir)
{
	struct stat st;

	if (fstatat(pid_dir, "ns/mnt", &st, 0))
		return false;
	for (size_t i = 0; i < s->n_ns; i++)
		if (s->ns[i].st_dev == st.st_dev && s->ns[i].st_ino == st.st_ino)
			return false;
	if (s->n_ns == s->cap_ns) {
		size_t cap = s->cap_ns ? s->cap_ns * 2 : 16;
		struct stat *grown = realloc(s->ns, cap * sizeof(*grown));
		if (!grown)
			return false;
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

	if (s->mounted || !s->rdev || !ns_new(s, pid_dir))
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

static void fds_of_pid(struct scan *s, int pid_dir, long pid)
{
	char target[300], comm[64], piece[128];
	int fd = openat(pid_dir, "fd", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	DIR *fds = fd < 0 ? NULL : fdopendir(fd);
	struct dirent *f;

	if (!fds) {
		if (fd >= 0)
			close(fd);
		return;
	}
	while ((f = readdir(fds))) {
		ssize_t n = readlinkat(dirfd(fds), f->d_name, target, sizeof(target) - 1);
		if (n <= 0)
			continue;
		target[n] = 0;
		if (!names_device(target, s->node))
			continue;
		comm_of(pid_dir, comm, sizeof(comm));
		snprintf(piece, sizeof(piece), "pid %ld (%s)", pid, comm);
		append(s, piece);
		break;
	}
	closedir(fds);
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

int device_holders(uint32_t id, char *desc, size_t len)
{
	char node[64];
	struct scan s = { .node = node, .desc = desc, .len = len };
	struct stat st;
	FILE *own;

	dev_block_path(id, node, sizeof(node));
	desc[0] = 0;
	if (!stat(node, &st) && S_ISBLK(st.st_mode))
		s.rdev = st.st_rdev;
	/* this process's namespace first: its mounts are named without one */
	own = s.rdev ? fopen("/proc/self/mountinfo", "re") : NULL;
	if (own) {
		int self_dir = open("/proc/self", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		if (self_dir >= 0) {
			ns_new(&s, self_dir);
			close(self_dir);
		}
		mounts_in(&s, own, "");
		fclose(own);
	}
	procs(&s);
	stacked(&s, id);
	free(s.ns);
	return s.found;
}
