/* Folders a root daemon keeps private files in (the state directory, the
 * chunk cache), checked so that another local user can neither prepare
 * them nor swap them (docs/security.md). */
#ifndef UBLK_SAFEDIR_H
#define UBLK_SAFEDIR_H

#include <stdbool.h>
#include <stddef.h>

struct safedir {
	const char *what;     /* "state directory": the start of every message */
	const char *option;   /* "--state-dir": what to give instead */
	/* The folder itself may be others' to write in if it is sticky and
	 * root's (as /tmp): what is in it is checked one by one. */
	bool sticky_ok;
	/* The folder itself may be given as a symbolic link of root's or
	 * ours (a cache folder moved to a bigger disk). */
	bool link_ok;
};

/* Open dir (O_DIRECTORY, never through a link at its end) after checking
 * every folder on the way, as given and as resolved: owned by root or us,
 * writable by nobody else unless sticky (like /tmp). The folder itself
 * must be ours (writer) or ours or root's (reader), and writable by nobody
 * else. create: make missing folders first, mode 0700. fd, or -errno with
 * why (empty for -ENOENT of a folder not created). */
int safedir_open(const struct safedir *sd, const char *dir, bool create, bool writer, char *why,
		 size_t whylen);
/* The folder that holds file path, checked as safedir_open checks a
 * reader's: 0 (also when it is missing: whoever opens the file says so),
 * or -errno with why. */
int safedir_check_folder_of(const struct safedir *sd, const char *path, char *why, size_t whylen);

#endif
