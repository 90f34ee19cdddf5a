/* Host unit tests of files and folders other users could prepare
 * (docs/security.md): atomic replacement, the live map's file, the state
 * directory and its entries, the control socket's peer check. Run as root
 * (the peer tests switch a child to uid 65534). */
#include "util/atomic_file.h"
#include "image/cache_live.h"
#include "check.h"
#include "host/ctlsock.h"
#include "host/pool.h"
#include "host/state.h"
#include "util/exitcodes.h"
#include "util/log.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sched.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

static char top[256];

static void put(const char *path, const char *text, mode_t mode)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, mode);
	if (fd < 0 || write(fd, text, strlen(text)) != (ssize_t)strlen(text))
		perror(path), exit(2);
	close(fd);
}

static const char *get(const char *path)
{
	static char buf[256];
	int fd = open(path, O_RDONLY), n = -1;
	if (fd >= 0) {
		n = (int)read(fd, buf, sizeof(buf) - 1);
		close(fd);
	}
	buf[n > 0 ? n : 0] = 0;
	return buf;
}

/* Names in dir other than . and .. */
static int count(const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	int n = 0;

	while (d && (e = readdir(d)))
		n += strcmp(e->d_name, ".") && strcmp(e->d_name, "..");
	if (d)
		closedir(d);
	return n;
}

static void path(char *buf, size_t len, const char *name)
{
	snprintf(buf, len, "%s/%s", top, name);
}

static void test_atomic_file(void)
{
	char dir[300], t[400], victim[300];
	struct atomic_file af;
	struct stat st;

	path(dir, sizeof(dir), "af");
	mkdir(dir, 0700);
	snprintf(t, sizeof(t), "%s/target", dir);
	path(victim, sizeof(victim), "victim");
	put(victim, "secret", 0600);

	/* exactly the mode asked, whatever the umask */
	mode_t old = umask(077);
	CHECK(atomic_write_file(AT_FDCWD, t, "one", 3, 0640, ATOMIC_DURABLE) == 0, "write");
	umask(old);
	CHECK(!strcmp(get(t), "one"), "content %s", get(t));
	CHECK(!stat(t, &st) && (st.st_mode & 07777) == 0640, "mode %o", st.st_mode & 07777);
	CHECK(count(dir) == 1, "temporaries left: %d names", count(dir));

	/* a planted symlink at the name is replaced, its target untouched */
	unlink(t);
	CHECK(symlink(victim, t) == 0, "symlink");
	CHECK(atomic_write_file(AT_FDCWD, t, "two", 3, 0600, 0) == 0, "write over link");
	CHECK(!lstat(t, &st) && S_ISREG(st.st_mode), "target still a link");
	CHECK(!strcmp(get(t), "two"), "content %s", get(t));
	CHECK(!strcmp(get(victim), "secret"), "victim written through: %s", get(victim));

	/* relative to a folder fd */
	int dfd = open(dir, O_RDONLY | O_DIRECTORY);
	CHECK(atomic_write_file(dfd, "rel", "r", 1, 0600, ATOMIC_FSYNC) == 0, "write at dirfd");
	close(dfd);
	snprintf(t, sizeof(t), "%s/rel", dir);
	CHECK(!strcmp(get(t), "r"), "relative content %s", get(t));

	/* abort leaves nothing; abort after commit and twice is harmless */
	int before = count(dir);
	CHECK(atomic_file_open(&af, AT_FDCWD, t, 0600) == 0, "open");
	CHECK(write(af.fd, "xx", 2) == 2, "write");
	atomic_file_abort(&af);
	atomic_file_abort(&af);
	CHECK(count(dir) == before, "abort left a file");
	CHECK(!strcmp(get(t), "r"), "abort changed the target: %s", get(t));
	CHECK(atomic_file_commit(&af, 0) == -EBADF, "commit after abort");
	CHECK(atomic_file_open(&af, AT_FDCWD, t, 0600) == 0, "open");
	CHECK(atomic_file_commit(&af, 0) == 0, "commit");
	atomic_file_abort(&af);
	CHECK(!stat(t, &st) && st.st_size == 0, "commit of an empty file");

	/* NOREPLACE: a new name only; an existing one (even a link) stays */
	snprintf(t, sizeof(t), "%s/new", dir);
	CHECK(atomic_write_file(AT_FDCWD, t, "n", 1, 0600, ATOMIC_NOREPLACE) == 0, "noreplace");
	CHECK(!strcmp(get(t), "n"), "noreplace content %s", get(t));
	before = count(dir);
	CHECK(atomic_write_file(AT_FDCWD, t, "m", 1, 0600, ATOMIC_NOREPLACE) == -EEXIST,
	      "noreplace replaced");
	CHECK(!strcmp(get(t), "n"), "noreplace changed it: %s", get(t));
	unlink(t);
	CHECK(symlink(victim, t) == 0, "symlink");
	CHECK(atomic_write_file(AT_FDCWD, t, "m", 1, 0600, ATOMIC_NOREPLACE) == -EEXIST,
	      "noreplace over a link");
	CHECK(!strcmp(get(victim), "secret"), "victim written through: %s", get(victim));
	CHECK(count(dir) == before, "noreplace left a temporary");

	/* a folder at the name is not replaced */
	snprintf(t, sizeof(t), "%s/sub", dir);
	mkdir(t, 0700);
	CHECK(atomic_write_file(AT_FDCWD, t, "x", 1, 0600, 0) < 0, "replaced a folder");
	CHECK(atomic_write_file(AT_FDCWD, "/", "x", 1, 0600, 0) == -EISDIR, "root");
}

/* FILE.live.tmp was opened O_CREAT|O_TRUNC following links: a planted link
 * there made root overwrite the file it pointed to. */
static void test_live_map(void)
{
	char cache[300], tmp[400], live[400], victim[300], why[300];
	uint8_t id[16] = { 1 }, map[100] = { 0 }, *states;
	struct cache_live lv = { 0 };
	struct stat st;

	path(cache, sizeof(cache), "c.cache");
	path(victim, sizeof(victim), "victim2");
	put(victim, "root only", 0600);
	snprintf(tmp, sizeof(tmp), "%s.live.tmp", cache);
	snprintf(live, sizeof(live), "%s.live", cache);
	CHECK(symlink(victim, tmp) == 0, "symlink");
	CHECK(cache_live_map(&lv, cache, id, 1, map, sizeof(map), &states) == 0, "live map");
	cache_live_unmap(&lv);
	CHECK(!strcmp(get(victim), "root only"), "victim written through .live.tmp");
	CHECK(!lstat(live, &st) && S_ISREG(st.st_mode) && (st.st_mode & 07777) == 0600,
	      "live map not a 0600 file");
	unlink(tmp);

	/* a link at FILE.live itself: replaced, not followed; not read either */
	unlink(live);
	CHECK(symlink(victim, live) == 0, "symlink");
	CHECK(cache_live_load(cache, id, 1, map, sizeof(map), why, sizeof(why)) == 0 && why[0],
	      "live map read through a link");
	CHECK(cache_live_map(&lv, cache, id, 1, map, sizeof(map), &states) == 0, "live map");
	cache_live_unmap(&lv);
	CHECK(!strcmp(get(victim), "root only"), "victim written through .live");
	CHECK(!lstat(live, &st) && S_ISREG(st.st_mode), "live map is no file");
	CHECK(cache_live_load(cache, id, 1, map, sizeof(map), why, sizeof(why)) == 1, "load: %s", why);
}

static int rotate_entry_log(void *id)
{
	return state_rotate_log((uint32_t)(uintptr_t)id);
}

static void *log_lines(void *arg)
{
	for (int i = 0; i < 400; i++)
		log_err("thread %d line %d: a failing backend, said again and again", (int)(intptr_t)arg, i);
	return NULL;
}

/* Lines of file that are whole ("<stamp> test-files: thread ..."): how
 * many, or -1 when one is torn. */
static int whole_lines(const char *file, off_t *size)
{
	char line[256];
	int n = 0;
	FILE *f = fopen(file, "r");
	struct stat st;

	if (!f)
		return -1;
	*size = fstat(fileno(f), &st) ? -1 : st.st_size;
	while (fgets(line, sizeof(line), f)) {
		int a, b;
		if (sscanf(line, "%*4d-%*2d-%*2dT%*2d:%*2d:%*2dZ test-files: thread %d line %d: a failing",
			   &a, &b) != 2 || !strchr(line, '\n'))
			n = -1;
		else if (n >= 0)
			n++;
	}
	fclose(f);
	return n;
}

/* A server's log is bounded: rotated to log.1 at its limit, by any of its
 * threads, no line torn or lost to the rotation itself. */
static void test_log_rotation(void)
{
	char sd[320], log[400], old[400];
	pthread_t t[4];
	off_t size, old_size;
	int saved = dup(STDERR_FILENO), null = open("/dev/null", O_WRONLY);

	path(sd, sizeof(sd), "logstate");
	state_set_dir(sd);
	CHECK(state_create(9, 0) == 0, "create");
	int fd = state_open_log(9);
	CHECK(fd >= 0, "open log");
	log_init("test-files");
	log_set_file(fd, 8192, rotate_entry_log, (void *)(uintptr_t)9);
	dup2(null, STDERR_FILENO);   /* the same lines go to stderr */
	for (int i = 0; i < 4; i++)
		pthread_create(&t[i], NULL, log_lines, (void *)(intptr_t)i);
	for (int i = 0; i < 4; i++)
		pthread_join(t[i], NULL);
	dup2(saved, STDERR_FILENO);
	close(saved);
	close(null);
	log_set_file(-1, 0, NULL, NULL);
	snprintf(log, sizeof(log), "%s/ublkb9/log", sd);
	snprintf(old, sizeof(old), "%s/ublkb9/log.1", sd);
	int lines = whole_lines(log, &size), old_lines = whole_lines(old, &old_size);
	CHECK(lines > 0 && old_lines > 0, "a torn line or no rotation: %d and %d lines", lines, old_lines);
	/* 1600 lines of about 95 bytes were written: rotated many times, each
	 * file at most the limit and a few lines that raced the rotation */
	CHECK(size < 8192 + 4 * 200 && old_size < 8192 + 4 * 200, "sizes %lld, %lld",
	      (long long)size, (long long)old_size);
	CHECK(old_size >= 8192 - 200, "log.1 of %lld bytes: rotated early", (long long)old_size);
	CHECK(count(sd) == 1 && state_remove(9) == 0 && count(sd) == 0, "entry with its logs removed");
}

/* An entry's pid counts as its server only while that process keeps the
 * entry open (its lock): a dead server's pid is soon another process's. */
static void test_server_pid(void)
{
	char sd[320], pid[32];
	int status;

	path(sd, sizeof(sd), "pidstate");
	state_set_dir(sd);
	CHECK(state_create(5, 0) == 0, "create");
	snprintf(pid, sizeof(pid), "%d\n", (int)getpid());
	CHECK(state_write(5, "pid", pid) == 0, "write pid");
	int lock = state_lock(5);
	CHECK(lock >= 0, "lock");
	CHECK(state_server_pid(5) == getpid(), "the entry's holder not taken for its server");
	CHECK(state_entry_held_by(5, getpid()) == 1, "held");
	close(lock);
	/* this process runs, but no longer has the entry: another's pid */
	CHECK(state_server_pid(5) == 0, "a process without the entry taken for its server");
	CHECK(state_entry_held_by(5, getpid()) == 0, "still held");
	pid_t child = fork();
	if (!child)
		_exit(0);
	waitpid(child, &status, 0);
	snprintf(pid, sizeof(pid), "%d\n", (int)child);
	CHECK(state_write(5, "pid", pid) == 0, "write pid");
	CHECK(state_server_pid(5) == 0, "a dead process taken for the server");
	CHECK(state_entry_held_by(6, getpid()) == -ENOENT, "no entry: %d", state_entry_held_by(6, getpid()));
	CHECK(state_remove(5) == 0, "remove");
}

/* After a device is deleted its id, and then its entry, may be a new
 * device's: the deleter removes the entry only if it is the one it saw. */
static void test_remove_same(void)
{
	char sd[320];

	path(sd, sizeof(sd), "samestate");
	state_set_dir(sd);
	CHECK(state_create(3, 0x1234) == 0, "create");
	CHECK(state_entry_cookie(3) == 0x1234, "cookie %llx", (unsigned long long)state_entry_cookie(3));
	CHECK(state_create(3, 0xabcdef0011223344ull) == 0, "create the new device's entry");
	CHECK(state_write(3, "pid", "1\n") == 0, "write");
	CHECK(state_remove_same(3, 0x1234) == 0 && state_exists(3), "the new device's entry removed");
	CHECK(state_remove_same(3, 0) == 0 && state_exists(3), "removed as an entry without cookie");
	CHECK(state_remove_same(3, 0xabcdef0011223344ull) == 0 && !state_exists(3), "its own entry kept");
	CHECK(state_remove_same(3, 7) == 0, "no entry: not an error");
	CHECK(state_entry_cookie(3) == 0, "cookie of no entry");
	/* an entry of an older version has none: removed as before */
	CHECK(state_create(3, 0) == 0 && state_remove(3) == 0, "create");
	CHECK(state_create(3, 5) == 0 && state_write(3, "cookie", "5\n") == 0, "damaged cookie");
	CHECK(state_entry_cookie(3) == 0, "a damaged cookie read");
	CHECK(state_remove_same(3, 0) == 0 && !state_exists(3), "entry with a damaged cookie kept");
	/* an entry is locked from before it has its name: reclaim, whose scan
	 * may be a moment old, leaves a running server's entry alone */
	int lock = state_create_locked(3, 0x77);
	struct pool_dev pd = { .id = 3, .has_state = true, .cookie = 0x77 };
	CHECK(lock >= 0 && state_lock(3) == -EBUSY, "a new entry is locked: %d", lock);
	CHECK(pool_remove_entry(&pd) == -EBUSY && state_exists(3), "a locked entry removed");
	close(lock);
	CHECK(pool_remove_entry(&pd) == 0 && !state_exists(3), "an entry let go of is removed");
	CHECK(pool_remove_entry(&pd) == -ENOENT, "no entry");
	/* no leftover of the entry's making */
	DIR *d = opendir(sd);
	struct dirent *e;
	int others = 0;
	while (d && (e = readdir(d)))
		others += e->d_name[0] != '.' || strstr(e->d_name, ".new") != NULL;
	if (d)
		closedir(d);
	CHECK(others == 0, "%d files left in the state directory", others);
}

static void test_state_dir(void)
{
	char sd[320], parent[300], entry[400], victim[300], f[500], buf[64];
	struct stat st;

	path(parent, sizeof(parent), "p");
	snprintf(sd, sizeof(sd), "%s/state", parent);
	mkdir(parent, 0755);
	state_set_dir(sd);
	CHECK(state_create(7, 0) == 0, "create");
	CHECK(state_write(7, "pid", "1\n") == 0, "write");
	CHECK(state_read(7, "pid", buf, sizeof(buf)) == 2, "read");

	/* writable by others: refused, whoever owns it */
	chmod(sd, 0777);
	CHECK(state_write(7, "pid", "2\n") == -EPERM, "0777 state dir accepted for writing");
	CHECK(state_read(7, "pid", buf, sizeof(buf)) == -EPERM, "0777 state dir accepted for reading");
	CHECK(state_create(8, 0) == -EPERM, "0777 state dir accepted for create");
	CHECK(state_check_dir(false) == EXIT_FAIL, "check");
	chmod(sd, 0720);
	CHECK(state_check_dir(false) == EXIT_FAIL, "group-writable state dir accepted");
	chmod(sd, 0700);
	CHECK(state_check_dir(false) == 0, "0700 refused");
	/* owned by another user */
	CHECK(chown(sd, 65534, 65534) == 0, "chown");
	CHECK(state_create(8, 0) == -EPERM, "state dir of another user accepted");
	CHECK(chown(sd, 0, 0) == 0, "chown");
	/* a folder on the way that others can write (without sticky bit) */
	chmod(parent, 0777);
	CHECK(state_write(7, "pid", "3\n") == -EPERM, "parent 0777 accepted");
	chmod(parent, 01777);
	CHECK(state_write(7, "pid", "3\n") == 0, "sticky parent refused");
	chmod(parent, 0755);
	/* the state dir itself a symlink */
	char link[300];
	path(link, sizeof(link), "statelink");
	CHECK(symlink(sd, link) == 0, "symlink");
	state_set_dir(link);
	CHECK(state_check_dir(false) == EXIT_FAIL, "symlinked state dir accepted");
	state_set_dir(sd);

	/* readers: a link or a FIFO in the entry is not read (nor hangs) */
	snprintf(entry, sizeof(entry), "%s/ublkb7", sd);
	path(victim, sizeof(victim), "victim3");
	put(victim, "secret", 0600);
	snprintf(f, sizeof(f), "%s/state", entry);
	CHECK(symlink(victim, f) == 0, "symlink");
	CHECK(state_read(7, "state", buf, sizeof(buf)) < 0, "read through a link");
	unlink(f);
	CHECK(mkfifo(f, 0600) == 0, "fifo");
	CHECK(state_read(7, "state", buf, sizeof(buf)) == -EINVAL, "read a FIFO");
	unlink(f);
	/* writing over a planted link replaces the link */
	CHECK(symlink(victim, f) == 0, "symlink");
	CHECK(state_write(7, "state", "live\n") == 0, "write");
	CHECK(!strcmp(get(victim), "secret"), "state written through a link");
	CHECK(!lstat(f, &st) && S_ISREG(st.st_mode), "state not a file");
	unlink(f);
	CHECK(symlink(victim, f) == 0, "symlink");
	CHECK(state_write_volatile(7, "state", "live\n") == 0 && !strcmp(get(victim), "secret") &&
	      !lstat(f, &st) && S_ISREG(st.st_mode) && state_read(7, "state", buf, sizeof(buf)) == 5,
	      "volatile write through a link, or not written");

	/* an entry that is a link to a victim folder: removed itself, the
	 * victim's files stay; readers do not follow it */
	char vdir[300], vfile[400], e9[400];
	path(vdir, sizeof(vdir), "victimdir");
	mkdir(vdir, 0700);
	snprintf(vfile, sizeof(vfile), "%s/precious", vdir);
	put(vfile, "data", 0600);
	snprintf(e9, sizeof(e9), "%s/ublkb9", sd);
	CHECK(symlink(vdir, e9) == 0, "symlink");
	CHECK(state_exists(9) == 0, "link counted as an entry");
	CHECK(state_write(9, "pid", "1\n") < 0, "wrote through a linked entry");
	CHECK(count(vdir) == 1, "a file written into the victim folder");
	CHECK(state_remove(9) == 0, "remove");
	CHECK(!strcmp(get(vfile), "data"), "victim's file removed through a linked entry");
	CHECK(lstat(e9, &st) && errno == ENOENT, "linked entry left");
	/* state_create over a linked entry: the link goes, a folder comes */
	CHECK(symlink(vdir, e9) == 0, "symlink");
	CHECK(state_create(9, 0) == 0, "create over link");
	CHECK(!strcmp(get(vfile), "data"), "victim's file removed by create");
	CHECK(!lstat(e9, &st) && S_ISDIR(st.st_mode), "entry not a folder");
	/* a folder planted inside an entry is not recursed into */
	char sub[500], subf[600];
	snprintf(sub, sizeof(sub), "%s/ublkb9/d", sd);
	mkdir(sub, 0700);
	snprintf(subf, sizeof(subf), "%s/keep", sub);
	put(subf, "k", 0600);
	state_remove(9);
	CHECK(!strcmp(get(subf), "k"), "recursed into a folder of an entry");
	state_remove(7);
	CHECK(!state_exists(7), "entry 7 left");
}

/* A listener whose peer is another user, or not the entry's server. */
static void test_ctlsock(void)
{
	char sd[300], entry[400], sock[500], buf[32];
	struct sockaddr_un a = { .sun_family = AF_UNIX };
	int lfd, fd, st;
	pid_t child;

	path(sd, sizeof(sd), "ctlstate");
	state_set_dir(sd);
	CHECK(state_create(3, 0) == 0, "create");
	snprintf(entry, sizeof(entry), "%s/ublkb3", sd);
	snprintf(sock, sizeof(sock), "%s/ctl", entry);

	/* server side: a client of another uid is refused */
	lfd = ctlsock_listen(3);
	CHECK(lfd >= 0, "listen: %d", lfd);
	/* let uid 65534 reach the socket, as a folder made wrong would */
	chmod(top, 0711);
	chmod(sd, 0711);
	chmod(entry, 0711);
	chmod(sock, 0666);
	if (snprintf(a.sun_path, sizeof(a.sun_path), "%.100s", sock) >= (int)sizeof(a.sun_path))
		return;
	child = fork();
	if (!child) {
		if (setresgid(65534, 65534, 65534) || setresuid(65534, 65534, 65534))
			_exit(3);
		int c = socket(AF_UNIX, SOCK_STREAM, 0);
		if (connect(c, (struct sockaddr *)&a, sizeof(a)))
			_exit(4);
		char b;
		_exit(read(c, &b, 1) == 0 ? 0 : 5);   /* the server closes on us */
	}
	struct timeval tv = { 5, 0 };
	fd_set set;
	FD_ZERO(&set);
	FD_SET(lfd, &set);
	select(lfd + 1, &set, NULL, NULL, &tv);
	CHECK(ctlsock_accept(lfd) == -EPERM, "a client of uid 65534 accepted");
	waitpid(child, &st, 0);
	CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0, "client: %d", WEXITSTATUS(st));

	/* a client of our own uid is accepted */
	CHECK(state_write(3, "pid", "") == 0, "pid");
	fd = ctlsock_connect(3, 5000);
	CHECK(fd >= 0, "connect: %d", fd);
	int sfd = ctlsock_accept(lfd);
	CHECK(sfd >= 0, "own client refused: %d", sfd);
	close(fd);
	close(sfd);

	/* client side: the entry names another server pid */
	CHECK(state_write(3, "pid", "1\n") == 0, "pid");
	CHECK(ctlsock_connect(3, 5000) == -EPERM, "a server of another pid trusted");
	snprintf(buf, sizeof(buf), "%d\n", (int)getpid());
	CHECK(state_write(3, "pid", buf) == 0, "pid");
	fd = ctlsock_connect(3, 5000);
	CHECK(fd >= 0, "own server refused: %d", fd);
	close(fd);
	close(lfd);

	/* client side: a listener of uid 65534 at the entry's socket */
	unlink(sock);
	int s = socket(AF_UNIX, SOCK_STREAM, 0);
	CHECK(bind(s, (struct sockaddr *)&a, sizeof(a)) == 0, "bind");
	int go[2];
	CHECK(pipe(go) == 0, "pipe");
	child = fork();
	if (!child) {
		close(go[0]);
		if (setresgid(65534, 65534, 65534) || setresuid(65534, 65534, 65534))
			_exit(3);
		/* SO_PEERCRED tells the credentials of whoever called listen */
		if (listen(s, 1))
			_exit(4);
		if (write(go[1], "x", 1) != 1)
			_exit(5);
		pause();   /* until the parent is done */
		_exit(0);
	}
	close(go[1]);
	if (read(go[0], buf, 1) != 1) {
		waitpid(child, &st, 0);
		CHECK(0, "child listening: exit %d", WEXITSTATUS(st));
	}
	CHECK(state_write(3, "pid", "") == 0, "pid");
	CHECK(ctlsock_connect(3, 5000) == -EPERM, "a server of uid 65534 trusted");
	close(go[0]);
	kill(child, SIGKILL);
	waitpid(child, &st, 0);
	close(s);
	chmod(top, 0700);
	state_remove(3);
}

/* Without /proc the unnamed file could not get a name: the named
 * temporary is used. Hide /proc in a private mount namespace to see it. */
static void test_named_fallback(void)
{
	char dir[300], t[400], victim[300];
	struct atomic_file af;
	struct stat st;
	int status;
	pid_t child = fork();

	if (!child) {
		if (unshare(CLONE_NEWNS) || mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) ||
		    mount("none", "/proc", "tmpfs", 0, NULL))
			_exit(77);
		path(dir, sizeof(dir), "named");
		mkdir(dir, 0700);
		snprintf(t, sizeof(t), "%s/target", dir);
		path(victim, sizeof(victim), "victim");
		put(victim, "secret", 0600);
		CHECK(atomic_file_open(&af, AT_FDCWD, t, 0640) == 0, "open");
		CHECK(af.tmp[0] == '.', "no named temporary: '%s'", af.tmp);
		CHECK(!fstatat(af.dirfd, af.tmp, &st, AT_SYMLINK_NOFOLLOW) && S_ISREG(st.st_mode) &&
		      (st.st_mode & 07777) == 0640, "temporary not a 0640 file");
		CHECK(write(af.fd, "named", 5) == 5, "write");
		CHECK(atomic_file_commit(&af, ATOMIC_DURABLE) == 0, "commit");
		CHECK(!strcmp(get(t), "named"), "content %s", get(t));
		CHECK(count(dir) == 1, "temporary left after commit");
		CHECK(atomic_file_open(&af, AT_FDCWD, t, 0600) == 0, "open");
		atomic_file_abort(&af);
		CHECK(count(dir) == 1, "temporary left after abort");
		unlink(t);
		CHECK(symlink(victim, t) == 0, "symlink");
		CHECK(atomic_write_file(AT_FDCWD, t, "x", 1, 0600, 0) == 0, "write over a link");
		CHECK(!strcmp(get(victim), "secret"), "victim written through");
		CHECK(atomic_write_file(AT_FDCWD, t, "y", 1, 0600, ATOMIC_NOREPLACE) == -EEXIST,
		      "noreplace replaced");
		CHECK(count(dir) == 1, "temporary left after a refused commit");
		_exit(failures ? 1 : 0);
	}
	waitpid(child, &status, 0);
	if (WIFEXITED(status) && WEXITSTATUS(status) == 77)
		printf("no mount namespace: named temporaries not tested\n");
	else
		CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0, "named temporaries (see above)");
}

int main(void)
{
	snprintf(top, sizeof(top), "/tmp/test-files.XXXXXX");
	if (!mkdtemp(top))
		return perror("mkdtemp"), 2;
	test_atomic_file();
	test_live_map();
	if (geteuid() == 0) {
		test_named_fallback();
		test_state_dir();
		test_log_rotation();
		test_server_pid();
		test_remove_same();
		test_ctlsock();
	} else {
		printf("not root: state directory and control socket tests skipped\n");
	}
	char cmd[300];
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", top);
	if (system(cmd)) { /* a temp folder left behind */ }
	return check_summary();
}
