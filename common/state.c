#include "state.h"
#include "parse.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

static const char *dir_override;

void state_set_dir(const char *dir) { dir_override = dir; }

const char *state_dir(void)
{
	const char *env = getenv("UBLK_STATE_DIR");
	if (dir_override)
		return dir_override;
	return env && *env ? env : "/run/ublk-tools";
}

static void entry_path(uint32_t id, char *buf, size_t len)
{
	snprintf(buf, len, "%s/ublkb%u", state_dir(), id);
}

/* Path of file name (with prefix, e.g. "." for temporaries) in the entry. */
static int file_path(uint32_t id, const char *prefix, const char *name, const char *suffix,
		     char *buf, size_t len)
{
	int n = snprintf(buf, len, "%s/ublkb%u/%s%s%s", state_dir(), id, prefix, name, suffix);
	return n < 0 || (size_t)n >= len ? -ENAMETOOLONG : 0;
}

/* mkdir -p with mode 0700, refusing symlinks and directories we do not own. */
static int make_private_dir(const char *path)
{
	char tmp[4096];
	struct stat st;

	if (strlen(path) >= sizeof(tmp))
		return -ENAMETOOLONG;
	strcpy(tmp, path);
	for (char *p = tmp + 1;; p++) {
		if (*p && *p != '/')
			continue;
		char c = *p;
		*p = 0;
		if (mkdir(tmp, 0700) && errno != EEXIST)
			return -errno;
		if (lstat(tmp, &st))
			return -errno;
		if (S_ISLNK(st.st_mode) && c == 0)
			return -ELOOP;
		*p = c;
		if (!c)
			break;
	}
	if (!S_ISDIR(st.st_mode))
		return -ENOTDIR;
	if (st.st_uid != geteuid())
		return -EPERM;
	return 0;
}

static int remove_entry_files(const char *path)
{
	DIR *d = opendir(path);
	struct dirent *e;

	if (!d)
		return errno == ENOENT ? 0 : -errno;
	while ((e = readdir(d))) {
		if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
			continue;
		unlinkat(dirfd(d), e->d_name, 0);
	}
	closedir(d);
	if (rmdir(path) && errno != ENOENT)
		return -errno;
	return 0;
}

int state_create(uint32_t id)
{
	char path[4096];
	char v[16];
	int ret = make_private_dir(state_dir());

	if (ret)
		return ret;
	entry_path(id, path, sizeof(path));
	ret = remove_entry_files(path);
	if (ret)
		return ret;
	if (mkdir(path, 0700))
		return -errno;
	snprintf(v, sizeof(v), "%d\n", STATE_FORMAT_VERSION);
	return state_write(id, "version", v);
}

int state_write(uint32_t id, const char *name, const char *content)
{
	char path[4096], tmp[4096];
	size_t len = strlen(content);
	int fd, ret;

	if ((ret = file_path(id, "", name, "", path, sizeof(path))) ||
	    (ret = file_path(id, ".", name, ".tmp", tmp, sizeof(tmp))))
		return ret;
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (fd < 0)
		return -errno;
	if (write(fd, content, len) != (ssize_t)len)
		ret = errno ? -errno : -EIO;
	else if (fsync(fd))
		ret = -errno;
	close(fd);
	if (!ret && rename(tmp, path))
		ret = -errno;
	if (ret)
		unlink(tmp);
	return ret;
}

int state_read(uint32_t id, const char *name, char *buf, size_t len)
{
	char path[4096];
	ssize_t n;
	int fd;

	if (file_path(id, "", name, "", path, sizeof(path)))
		return -ENAMETOOLONG;
	fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	n = read(fd, buf, len - 1);
	close(fd);
	if (n < 0)
		return -errno;
	buf[n] = 0;
	return (int)n;
}

int state_open_log(uint32_t id)
{
	char path[4096];
	int fd;

	if (file_path(id, "", "log", "", path, sizeof(path)))
		return -ENAMETOOLONG;
	fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_NOFOLLOW | O_CLOEXEC, 0600);
	return fd < 0 ? -errno : fd;
}

int state_lock(uint32_t id)
{
	char path[4096];
	int fd;

	entry_path(id, path, sizeof(path));
	fd = open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	if (flock(fd, LOCK_EX | LOCK_NB)) {
		int err = errno == EWOULDBLOCK ? -EBUSY : -errno;
		close(fd);
		return err;
	}
	return fd;
}

int state_remove(uint32_t id)
{
	char path[4096];
	entry_path(id, path, sizeof(path));
	return remove_entry_files(path);
}

int state_exists(uint32_t id)
{
	char path[4096];
	struct stat st;
	entry_path(id, path, sizeof(path));
	return lstat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

int state_config_all(uint32_t id, const char *key, char *buf, size_t len, char **values, int max)
{
	size_t klen = strlen(key);
	int n = 0;

	if (state_read(id, "config", buf, len) < 0)
		return -ENOENT;
	for (char *line = buf; line && *line;) {
		char *nl = strchr(line, '\n');
		if (nl)
			*nl = 0;
		if (!strncmp(line, key, klen) && line[klen] == '=' && n < max)
			values[n++] = line + klen + 1;
		line = nl ? nl + 1 : NULL;
	}
	return n;
}

int state_config_get(uint32_t id, const char *key, char *buf, size_t len)
{
	char cfg[16384], *value;

	if (state_config_all(id, key, cfg, sizeof(cfg), &value, 1) < 1)
		return -ENOENT;
	snprintf(buf, len, "%s", value);
	return 0;
}

int state_find(const char *key, const char *want, uint32_t *id)
{
	DIR *d = opendir(state_dir());
	struct dirent *e;
	int ret = -ENOENT;

	if (!d)
		return -ENOENT;
	while ((e = readdir(d)) && ret) {
		char value[4096];
		uint32_t v;
		if (strncmp(e->d_name, "ublkb", 5) || parse_dev_id(e->d_name, &v))
			continue;
		if (!state_config_get(v, key, value, sizeof(value)) && !strcmp(value, want)) {
			*id = v;
			ret = 0;
		}
	}
	closedir(d);
	return ret;
}
