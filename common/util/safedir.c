#include "util/safedir.h"
#include "util/fileio.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define WHY(...) snprintf(why, whylen, __VA_ARGS__)

/* Only root and we may be able to change what a folder holds: its owner is
 * one of us, and nobody else may write to it unless the sticky bit keeps
 * them from renaming or removing what is not theirs (like /tmp). */
static bool owner_ok(const struct stat *st)
{
	return st->st_uid == 0 || st->st_uid == geteuid();
}

static bool others_write(const struct stat *st)
{
	return (st->st_mode & (S_IWGRP | S_IWOTH)) && !(st->st_mode & S_ISVTX);
}

/* Every folder above path must be one only root and we can change: else
 * someone could swap what follows. given: lstat (links allowed if ours),
 * else the resolved path with stat. */
static int check_folders_on_way(const struct safedir *sd, const char *dir, char *path, bool given,
				char *why, size_t whylen)
{
	struct stat st;

	for (char *p = path + 1; (p = strchr(p, '/')); p++) {
		*p = 0;
		int bad = (given ? lstat(path, &st) : stat(path, &st)) ? -errno : 0;
		if (!bad && (!owner_ok(&st) || (!(given && S_ISLNK(st.st_mode)) && others_write(&st)))) {
			WHY("%s %s: the folder %s on its way is %s (owner uid %u, mode %04o), so another "
			    "user could replace what follows; use a folder (%s) whose parents only root "
			    "can change", sd->what, dir, path,
			    owner_ok(&st) ? "writable by other users" : "owned by another user",
			    (unsigned)st.st_uid, (unsigned)(st.st_mode & 07777), sd->option);
			bad = -EPERM;
		}
		*p = '/';
		if (bad)
			return bad;
	}
	return 0;
}

/* Before anything is made: the part of path that exists (its length in
 * *have), and every folder above it, as check_folders_on_way checks them
 * (as given and resolved), so that no folder is made where another user
 * points the path. Nothing to check when all of it exists. */
static int check_before_making(const struct safedir *sd, const char *dir, const char *path,
			       size_t *have_len, char *why, size_t whylen)
{
	char have[PATH_MAX], real[PATH_MAX + 2];
	struct stat st;
	size_t n = strlen(path);
	int ret;

	if (n + 3 > sizeof(have))
		return -ENAMETOOLONG;
	memcpy(have, path, n + 1);
	while (n > 1 && lstat(have, &st) && errno == ENOENT) {
		while (n > 1 && have[n - 1] != '/')
			n--;
		have[n > 1 ? --n : n] = 0;
	}
	*have_len = n;
	if (n == 1 || n == strlen(path))
		return 0;   /* only "/" exists, or all of it */
	/* "/x" after it: the folders above x, the existing part included */
	strcpy(have + n, "/x");
	if ((ret = check_folders_on_way(sd, dir, have, true, why, whylen)))
		return ret;
	have[n] = 0;
	if (!realpath(have, real))
		return errno == ENOENT ? 0 : -errno;   /* a link to nothing: made below, refused */
	if (strlen(real) + 3 > sizeof(real))
		return -ENAMETOOLONG;
	strcat(real, strcmp(real, "/") ? "/x" : "x");
	return check_folders_on_way(sd, dir, real, false, why, whylen);
}

/* mkdir -p of what follows the checked part (its first have bytes), new
 * folders 0700, each made and entered below the last without following a
 * link: one planted meanwhile is refused (ELOOP), never made through. */
static int make_dirs(const char *path, size_t have)
{
	char tmp[PATH_MAX];
	int dir;

	if (snprintf(tmp, sizeof(tmp), "%s", path) >= (int)sizeof(tmp))
		return -ENAMETOOLONG;
	if (have >= strlen(tmp))
		return 0;
	tmp[have] = 0;
	if ((dir = open(have > 1 ? tmp : "/", O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0)
		return -errno;
	for (char *name = tmp + have + 1, *end; *name; name = end) {
		end = name + strcspn(name, "/");
		if (*end)
			*end++ = 0;
		if (!*name)
			continue;
		int next = -1, ret = 0;
		if ((mkdirat(dir, name, 0700) && errno != EEXIST) ||
		    (next = openat(dir, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)) < 0)
			ret = -errno;
		close(dir);
		if (ret)
			return ret;
		dir = next;
	}
	close(dir);
	return 0;
}

int safedir_open(const struct safedir *sd, const char *dir, bool create, bool writer, char *why,
		 size_t whylen)
{
	char given[PATH_MAX], real[PATH_MAX], cwd[PATH_MAX];
	struct stat st, fst;
	int fd, n;

	why[0] = 0;
	if (dir[0] == '/')
		n = snprintf(given, sizeof(given), "%s", dir);
	else if (getcwd(cwd, sizeof(cwd)))
		n = snprintf(given, sizeof(given), "%s/%s", cwd, dir);
	else
		return -errno;
	if (n < 0 || (size_t)n >= sizeof(given))
		return WHY("%s %s: path too long", sd->what, dir), -ENAMETOOLONG;
	while (n > 1 && given[n - 1] == '/')
		given[--n] = 0;
	size_t have = 0;
	if (create && (n = check_before_making(sd, dir, given, &have, why, whylen)))
		return why[0] ? n : (WHY("%s %s: %s", sd->what, dir, strerror(-n)), n);
	if (create && (n = make_dirs(given, have)))
		return WHY("%s %s: %s", sd->what, dir, strerror(-n)), n;
	if (lstat(given, &st))
		return errno == ENOENT ? -ENOENT : (WHY("%s %s: %s", sd->what, dir, strerror(errno)), -errno);
	if (S_ISLNK(st.st_mode) && (!sd->link_ok || !owner_ok(&st)))
		return WHY("%s %s is a symbolic link%s: give the folder it points to with %s", sd->what,
			   given, sd->link_ok ? " of another user's" : "", sd->option), -ELOOP;
	/* The path as given: a folder or symlink on the way that someone else
	 * controls could point us elsewhere next time. */
	if ((n = check_folders_on_way(sd, dir, given, true, why, whylen)))
		return n;
	if (!realpath(given, real))
		return WHY("%s %s: %s", sd->what, dir, strerror(errno)), -errno;
	if ((n = check_folders_on_way(sd, dir, real, false, why, whylen)))
		return n;
	fd = open(real, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0) {
		n = -errno;
		if (n == -ENOTDIR)
			WHY("%s %s is not a directory: remove it or use %s", sd->what, dir, sd->option);
		else
			WHY("%s %s: %s", sd->what, dir, strerror(-n));
		return n;
	}
	/* The folder itself, as opened: what every later *at() call works in. */
	if (fstat(fd, &fst)) {
		n = -errno;
		WHY("%s %s: %s", sd->what, dir, strerror(-n));
	} else if (writer ? fst.st_uid != geteuid() : !owner_ok(&fst)) {
		WHY("%s %s is owned by uid %u, not by this user (uid %u): chown it or use %s",
		    sd->what, dir, (unsigned)fst.st_uid, (unsigned)geteuid(), sd->option);
		n = -EPERM;
	} else if ((fst.st_mode & (S_IWGRP | S_IWOTH)) && !(sd->sticky_ok && (fst.st_mode & S_ISVTX))) {
		WHY("%s %s is writable by other users (mode %04o): chmod 0700 it or use %s", sd->what,
		    dir, (unsigned)(fst.st_mode & 07777), sd->option);
		n = -EPERM;
	} else {
		return fd;
	}
	close(fd);
	return n;
}

int safedir_check_folder_of(const struct safedir *sd, const char *path, char *why, size_t whylen)
{
	char dir[PATH_MAX];
	int fd;

	if (path_folder(path, dir, sizeof(dir)))
		return WHY("%s: path too long", path), -ENAMETOOLONG;
	fd = safedir_open(sd, dir, false, false, why, whylen);
	if (fd >= 0)
		close(fd);
	return fd == -ENOENT && !why[0] ? 0 : fd < 0 ? fd : 0;
}
